/*
 * metrics_http.c - /metrics over HTTP/1.x: a server of its own on a libev
 * loop in one thread, in place of libmicrohttpd, whose only deadline is an
 * idle timeout that restarts on every byte and which refuses a newcomer
 * when its slots are full, so that 20 clients sending a header byte every
 * 3 s shut every scrape out.  Here each connection has one request and a
 * deadline for all of it (METRICS_HTTP_REQUEST_SECONDS from the accept),
 * one source address holds at most METRICS_HTTP_PER_ADDR of the
 * METRICS_HTTP_SLOTS connections, and a newcomer takes the slot of the
 * oldest unfinished request (of its own address when that is full, else of
 * the address holding the most; answered ones after), so a scraper always
 * gets in and is read before any later connection can take its slot.  Every answer is
 * "Connection: close": nothing idles in a slot between scrapes.
 */
#include "metrics_http.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "metrics.h"

/* After the answer, what the client still sends is read and dropped for
 * this long and up to this much, so that closing with unread bytes does
 * not reset the connection before the client has read the answer. */
#define LINGER_SECONDS 2.0
#define LINGER_MAX 65536

/* Out of descriptors, accepting waits this long: the connection stays in
 * the backlog, and polling again at once would spin. */
#define ACCEPT_BACKOFF_SECONDS 0.1

enum metrics_http_req
metrics_http_parse(const char *buf, size_t len)
{
	const char *end, *sp, *target, *tend, *path;
	size_t mlen, plen;

	if ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL &&
	    (end = memmem(buf, len, "\n\n", 2)) == NULL)
		return len >= METRICS_HTTP_REQUEST_MAX ? METRICS_HTTP_TOO_LONG :
		    METRICS_HTTP_NEED_MORE;
	end = memchr(buf, '\n', len);   /* there is one: the blank line's */
	if (end > buf && end[-1] == '\r')
		end--;
	/* METHOD SP TARGET SP HTTP/1.x */
	if ((sp = memchr(buf, ' ', (size_t)(end - buf))) == NULL || sp == buf)
		return METRICS_HTTP_BAD;
	mlen = (size_t)(sp - buf);
	target = sp + 1;
	if ((tend = memchr(target, ' ', (size_t)(end - target))) == NULL ||
	    tend == target || (size_t)(end - tend) != 9 ||
	    memcmp(tend, " HTTP/1.", 8) != 0 || tend[8] < '0' || tend[8] > '9')
		return METRICS_HTTP_BAD;
	for (const char *c = buf; c < end; c++)
		if ((unsigned char)*c < 0x21 && *c != ' ')
			return METRICS_HTTP_BAD;
	if (!(mlen == 3 && memcmp(buf, "GET", 3) == 0) &&
	    !(mlen == 4 && memcmp(buf, "HEAD", 4) == 0))
		return METRICS_HTTP_NOT_ALLOWED;
	/* absolute-form: the path after the authority ("" is "/") */
	path = target;
	if ((size_t)(tend - target) >= 7 && strncasecmp(target, "http://", 7) == 0)
		path = target + 7;
	else if ((size_t)(tend - target) >= 8 &&
	    strncasecmp(target, "https://", 8) == 0)
		path = target + 8;
	else if (*target != '/')
		return METRICS_HTTP_BAD;
	if (path != target)
		while (path < tend && *path != '/' && *path != '?')
			path++;
	for (plen = 0; path + plen < tend && path[plen] != '?'; plen++)
		;
	if (plen == 8 && memcmp(path, "/metrics", 8) == 0)
		return METRICS_HTTP_METRICS;
	return METRICS_HTTP_NOT_FOUND;
}

/* ------------------------------------------------ the server */

enum mh_state {
	MH_FREE = 0,      /* the slot holds no connection */
	MH_READING,       /* its request is not whole yet */
	MH_WRITING,       /* the answer is on its way */
	MH_LINGERING,     /* answered and shut down: reading what is left */
};

/* A source address, as far as the per-address limit tells them apart. */
struct mh_addr {
	sa_family_t family;
	unsigned char a[16];
};

struct mh_conn {
	enum mh_state state;
	int head_only;            /* HEAD: the headers of the answer only */
	struct mh_addr from;
	ev_tstamp accepted;
	ev_io io;
	ev_timer deadline;
	struct metrics_server *m;
	size_t got;               /* request bytes, then bytes dropped */
	char req[METRICS_HTTP_REQUEST_MAX];
	char head[256];           /* the answer's status line and headers */
	size_t head_len;
	char *body;               /* malloc'ed, or NULL */
	size_t body_len, sent;    /* sent counts head and body */
};

struct metrics_server {
	int fd;
	const struct metrics_view *view;
	struct ev_loop *loop;
	ev_io accept_io;
	ev_timer accept_backoff;
	int backing_off;          /* said so once; cleared by the next accept */
	ev_async stop;
	pthread_t thread;
	struct mh_conn conns[METRICS_HTTP_SLOTS];
};

static void
mh_close(struct mh_conn *c)
{
	ev_io_stop(c->m->loop, &c->io);
	ev_timer_stop(c->m->loop, &c->deadline);
	close(c->io.fd);
	free(c->body);
	c->body = NULL;
	c->state = MH_FREE;
}

static int
mh_addr_equal(const struct mh_addr *a, const struct mh_addr *b)
{
	return a->family == b->family && memcmp(a->a, b->a, sizeof(a->a)) == 0;
}

static void
mh_addr_of(const struct sockaddr_storage *ss, struct mh_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->family = ss->ss_family;
	if (ss->ss_family == AF_INET)
		memcpy(out->a, &((const struct sockaddr_in *)(const void *)ss)->
		    sin_addr, 4);
	else if (ss->ss_family == AF_INET6)
		memcpy(out->a, &((const struct sockaddr_in6 *)(const void *)ss)->
		    sin6_addr, 16);
}

/* Connections held from addr. */
static unsigned
mh_count(const struct metrics_server *m, const struct mh_addr *addr)
{
	unsigned n = 0;

	for (unsigned i = 0; i < METRICS_HTTP_SLOTS; i++)
		n += m->conns[i].state != MH_FREE &&
		    mh_addr_equal(&m->conns[i].from, addr);
	return n;
}

/* Which connection goes first when a slot is needed: an unfinished
 * request, then one lingering after its answer, then one being answered
 * (a scraper's is, briefly, and it is the newest). */
static unsigned
mh_rank(enum mh_state state)
{
	return state == MH_READING ? 0 : state == MH_LINGERING ? 1 : 2;
}

/*
 * The slot for a newcomer from addr: a free one; or, when addr holds its
 * limit, that of addr's connection that goes first, oldest first; or,
 * when every slot is taken, that of the connection that goes first of the
 * address that holds the most.  Never NULL: a newcomer always gets in, so
 * nothing a client holds, finished or not, can shut a scraper out.
 */
static struct mh_conn *
mh_slot(struct metrics_server *m, const struct mh_addr *addr)
{
	struct mh_conn *free_slot = NULL, *victim = NULL;
	unsigned victim_count = 0, mine = mh_count(m, addr);

	for (unsigned i = 0; i < METRICS_HTTP_SLOTS; i++) {
		struct mh_conn *c = &m->conns[i];
		unsigned count;

		if (c->state == MH_FREE) {
			free_slot = c;
			continue;
		}
		if (mine >= METRICS_HTTP_PER_ADDR && !mh_addr_equal(&c->from, addr))
			continue;
		count = mh_count(m, &c->from);
		if (victim == NULL || count > victim_count ||
		    (count == victim_count && (mh_rank(c->state) <
		    mh_rank(victim->state) || (mh_rank(c->state) ==
		    mh_rank(victim->state) && c->accepted < victim->accepted)))) {
			victim = c;
			victim_count = count;
		}
	}
	if (mine < METRICS_HTTP_PER_ADDR && free_slot != NULL)
		return free_slot;
	mh_close(victim);
	return victim;
}

/* Give c the deadline of its state, seconds from now. */
static void
mh_deadline(struct mh_conn *c, ev_tstamp seconds)
{
	ev_timer_stop(c->m->loop, &c->deadline);
	ev_timer_set(&c->deadline, seconds, 0.);
	ev_timer_start(c->m->loop, &c->deadline);
}

/* Everything is sent: shut the sending side and read what is left. */
static void
mh_linger(struct mh_conn *c)
{
	shutdown(c->io.fd, SHUT_WR);
	c->state = MH_LINGERING;
	c->got = 0;
	ev_io_stop(c->m->loop, &c->io);
	ev_io_set(&c->io, c->io.fd, EV_READ);
	ev_io_start(c->m->loop, &c->io);
	mh_deadline(c, LINGER_SECONDS);
}

static void
mh_write(struct mh_conn *c)
{
	size_t total = c->head_len + (c->head_only ? 0 : c->body_len);

	while (c->sent < total) {
		struct iovec iov[2];
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 0 };
		ssize_t n;

		if (c->sent < c->head_len) {
			iov[msg.msg_iovlen].iov_base = c->head + c->sent;
			iov[msg.msg_iovlen++].iov_len = c->head_len - c->sent;
		}
		if (total > c->head_len) {
			size_t off = c->sent > c->head_len ? c->sent - c->head_len : 0;

			iov[msg.msg_iovlen].iov_base = c->body + off;
			iov[msg.msg_iovlen++].iov_len = c->body_len - off;
		}
		n = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0) {
			mh_close(c);
			return;
		}
		c->sent += (size_t)n;
	}
	mh_linger(c);
}

/* Answer the whole request c holds. */
static void
mh_answer(struct mh_conn *c, enum metrics_http_req req)
{
	static const char *const texts[] = {
		[METRICS_HTTP_NOT_FOUND] = "404 Not Found\r\nContent-Type: text/plain",
		[METRICS_HTTP_NOT_ALLOWED] = "405 Method Not Allowed\r\n"
		    "Allow: GET, HEAD\r\nContent-Type: text/plain",
		[METRICS_HTTP_BAD] = "400 Bad Request\r\nContent-Type: text/plain",
		[METRICS_HTTP_TOO_LONG] = "431 Request Header Fields Too Large\r\n"
		    "Content-Type: text/plain",
	};
	static const char *const bodies[] = {
		[METRICS_HTTP_NOT_FOUND] = "nettcpd serves /metrics only\n",
		[METRICS_HTTP_NOT_ALLOWED] = "GET or HEAD\n",
		[METRICS_HTTP_BAD] = "not an HTTP/1.x request\n",
		[METRICS_HTTP_TOO_LONG] = "request headers over 8192 bytes\n",
	};
	const char *status;
	int n;

	/* A HEAD gets the headers of whatever a GET would get. */
	c->head_only = c->got >= 5 && memcmp(c->req, "HEAD ", 5) == 0;
	if (req == METRICS_HTTP_METRICS) {
		status = "200 OK\r\nContent-Type: text/plain; version=0.0.4; "
		    "charset=utf-8";
		c->body = metrics_format(c->m->view, &c->body_len);
		if (c->body == NULL) {
			log_err("metrics: out of memory for a scrape");
			mh_close(c);
			return;
		}
	} else {
		status = texts[req];
		if ((c->body = strdup(bodies[req])) == NULL) {
			mh_close(c);
			return;
		}
		c->body_len = strlen(c->body);
	}
	n = snprintf(c->head, sizeof(c->head), "HTTP/1.1 %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status,
	    c->body_len);
	c->head_len = (size_t)n;
	c->sent = 0;
	c->state = MH_WRITING;
	ev_io_stop(c->m->loop, &c->io);
	ev_io_set(&c->io, c->io.fd, EV_WRITE);
	ev_io_start(c->m->loop, &c->io);
	mh_deadline(c, METRICS_HTTP_REPLY_SECONDS);
	mh_write(c);
}

/* Read what the client sent: the request, or, lingering, what is left. */
static void
mh_read(struct mh_conn *c)
{
	enum metrics_http_req req;
	char drop[4096];
	ssize_t n;

	if (c->state == MH_LINGERING) {
		while ((n = recv(c->io.fd, drop, sizeof(drop), 0)) > 0)
			if ((c->got += (size_t)n) > LINGER_MAX)
				break;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		mh_close(c);
		return;
	}
	n = recv(c->io.fd, c->req + c->got, sizeof(c->req) - c->got, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mh_close(c);
		return;
	}
	c->got += (size_t)n;
	if ((req = metrics_http_parse(c->req, c->got)) != METRICS_HTTP_NEED_MORE)
		mh_answer(c, req);
}

static void
mh_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct mh_conn *c = io->data;

	(void)loop;
	if (c->state == MH_WRITING && (revents & EV_WRITE))
		mh_write(c);
	else if (revents & EV_READ)
		mh_read(c);
}

static void
mh_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct mh_conn *c = t->data;

	(void)loop;
	(void)revents;
	if (c->state == MH_READING)
		log_debug("metrics: a request not whole after %g s closed",
		    METRICS_HTTP_REQUEST_SECONDS);
	mh_close(c);
}

/*
 * One connection per call: the loop runs again before the next accept, so
 * a request that arrived with its connection is read before a later
 * connection from the same address could take its slot.
 */
static void
mh_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct metrics_server *m = io->data;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct mh_addr from;
	struct mh_conn *c;
	int fd;

	(void)revents;
	fd = accept4(m->fd, (struct sockaddr *)&ss, &sslen,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		switch (errno) {
		case EAGAIN:
		case EINTR:
		case ECONNABORTED:
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			if (!m->backing_off)
				log_warn("metrics: accept: %s; pausing accepts for "
				    "%g s at a time", strerror(errno),
				    ACCEPT_BACKOFF_SECONDS);
			m->backing_off = 1;
			ev_io_stop(loop, &m->accept_io);
			/* set again: a one-shot timer that fired keeps what was
			 * left of its time, 0 or less */
			ev_timer_set(&m->accept_backoff, ACCEPT_BACKOFF_SECONDS, 0.);
			ev_timer_start(loop, &m->accept_backoff);
			return;
		default:
			log_warn("metrics: accept: %s", strerror(errno));
			return;
		}
	}
	m->backing_off = 0;
	mh_addr_of(&ss, &from);
	c = mh_slot(m, &from);
	c->state = MH_READING;
	c->from = from;
	c->accepted = ev_now(loop);
	c->got = 0;
	ev_io_init(&c->io, mh_on_io, fd, EV_READ);
	c->io.data = c;
	ev_io_start(loop, &c->io);
	ev_timer_init(&c->deadline, mh_on_deadline, METRICS_HTTP_REQUEST_SECONDS,
	    0.);
	c->deadline.data = c;
	ev_timer_start(loop, &c->deadline);
	mh_read(c);
}

static void
mh_on_backoff_over(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct metrics_server *m = t->data;

	(void)revents;
	ev_io_start(loop, &m->accept_io);
}

static void
mh_on_stop(struct ev_loop *loop, ev_async *a, int revents)
{
	(void)a;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *
mh_main(void *arg)
{
	struct metrics_server *m = arg;

	ev_run(m->loop, 0);
	return NULL;
}

struct metrics_server *
metrics_start(int fd, const char *text, const struct metrics_view *v)
{
	struct metrics_server *m = calloc(1, sizeof(*m));
	int err;

	if (m == NULL || (m->loop = ev_loop_new(EVFLAG_AUTO)) == NULL) {
		log_err("metrics: cannot serve on %s: out of memory", text);
		goto fail;
	}
	m->fd = fd;
	m->view = v;
	for (unsigned i = 0; i < METRICS_HTTP_SLOTS; i++)
		m->conns[i].m = m;
	ev_io_init(&m->accept_io, mh_on_accept, fd, EV_READ);
	m->accept_io.data = m;
	ev_io_start(m->loop, &m->accept_io);
	ev_timer_init(&m->accept_backoff, mh_on_backoff_over, 0., 0.);
	m->accept_backoff.data = m;
	ev_async_init(&m->stop, mh_on_stop);
	ev_async_start(m->loop, &m->stop);
	if ((err = pthread_create(&m->thread, NULL, mh_main, m)) != 0) {
		log_err("metrics: cannot start its thread: %s", strerror(err));
		goto fail;
	}
	log_info("metrics: serving /metrics on %s", text);
	return m;
fail:
	if (m != NULL && m->loop != NULL)
		ev_loop_destroy(m->loop);
	free(m);
	close(fd);
	return NULL;
}

void
metrics_stop(struct metrics_server *m)
{
	if (m == NULL)
		return;
	ev_async_send(m->loop, &m->stop);
	pthread_join(m->thread, NULL);
	for (unsigned i = 0; i < METRICS_HTTP_SLOTS; i++)
		if (m->conns[i].state != MH_FREE)
			mh_close(&m->conns[i]);
	ev_io_stop(m->loop, &m->accept_io);
	ev_timer_stop(m->loop, &m->accept_backoff);
	ev_async_stop(m->loop, &m->stop);
	ev_loop_destroy(m->loop);
	/* Closed, not shut down: after a binary upgrade the new process
	 * listens on the same socket. */
	close(m->fd);
	free(m);
}
