/*
 * fuzz_sessions.c - the daemon's own connection code (conn.c with its
 * follower, pumps and backend pool) on one worker's loop, between clients
 * and two services on loopback TCP, all driven by the input: what each
 * client sends and in which pieces, when the loop runs, and how each
 * service behaves.
 *
 * Invariants, checked by readers written here (not nmf.c's):
 *   - every byte a service receives belongs to a session whose Via routes
 *     to that service: a preamble (version 1, duplex or singleton, a Via,
 *     an encoding) whose Via the route table sends to it, then that
 *     session's records up to its End, then the next such preamble; or,
 *     after an Upgrade Request in such a preamble, the upgraded stream,
 *     pinned to it;
 *   - no client ever receives what a service sends outside the sessions
 *     it answers (a stray envelope after End, marked with a secret; the
 *     services' replies never carry the client's own bytes, since
 *     libFuzzer learns the secret from the comparisons it watches).
 *
 * Input: one byte of settings, then operations, one byte each (the low
 * nibble says which, the high one is its argument), some with bytes of
 * their own:
 *
 *   settings bit 0   forward = copy instead of splice
 *            bit 1   forward = uring (either way; uring.c)
 *   0  send          client (arg & 1) sends the next N bytes of the input,
 *                    N the byte after the operation (0: all that is left)
 *   1  connect       client (arg & 1) connects (again, if it was closed)
 *   2  shutdown      client (arg & 1) sends FIN
 *   3  close         client (arg & 1) closes; with arg & 2 by RST
 *   4  run           the loop and the services run until nothing moves
 *   5  behave        service (arg & 1) answers its next session as arg >> 1
 *                    says: 0 as WCF, 1 with a Fault instead of the Ack,
 *                    2 with a stray envelope right after its End, 3
 *                    closing after its End, 4 with a stray envelope after
 *                    its End once operation 6 comes, 5 with End at once,
 *                    6 and 7 as 2 and 4 with a stray Ack (0B) before the
 *                    stray envelope (a service answering a preamble twice)
 *   6  strays        services send their delayed stray envelopes
 *
 * Routes: /A and /B/A to service A, /B to service B; backend_pool 4,
 * backend_pool_settle 0: every pooled connection may meet the next session
 * at once, so the stray bytes meet it too.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "conn.h"
#include "fuzz.h"
#include "generation.h"
#include "log.h"
#include "nmf.h"
#include "routes.h"
#include "via.h"
#include "worker.h"

#define NCLIENTS 2
#define NSERVICES 2
#define MAX_SVC_CONNS 16
#define IDLE_ROUNDS 3      /* rounds without progress that end a run */
#define MAX_ROUNDS 400
#define REPLY_MAX 4096     /* a service's reply is as long as the request, to this */
#define MBINT_MAX 0x7FFFFFFFu

enum behaviour {
	BEHAVE_WCF = 0,
	BEHAVE_FAULT,
	BEHAVE_STRAY,
	BEHAVE_CLOSE,
	BEHAVE_STRAY_LATER,
	BEHAVE_END_AT_ONCE,
	BEHAVE_STRAY_ACK,
	BEHAVE_STRAY_ACK_LATER,
	BEHAVE_COUNT
};

/* What a service reads, as a WCF service reads it. */
enum rd_state {
	RD_RECORD,      /* a preamble record, or (in a session) a session record */
	RD_FIXED,       /* the fixed bytes of a preamble record */
	RD_SIZE,        /* an mbint: a string's length, an envelope's or a chunk's size */
	RD_BYTES,       /* a string's or a payload's bytes */
	RD_PINNED,      /* after an Upgrade Request: not framing any more */
};

struct reader {
	enum rd_state state;
	int in_session;         /* past Preamble End */
	uint8_t type;           /* the record being read */
	uint8_t mode;
	unsigned stage;         /* preamble: 0 version, 1 mode, 2 via, 3 encoding, 4 end */
	uint32_t size, need;
	unsigned size_bytes;
	uint8_t fixed[2];
	unsigned nfixed;
	uint8_t str[NMF_MAX_VIA + 1];
	size_t nstr;
	int singleton_done;     /* singleton: the envelope's last chunk went by */
	int in_chunks;          /* singleton: inside the Unsized Envelope */
};

struct svc_conn {
	int fd;
	int service;
	struct reader rd;
	enum behaviour now;     /* for the session under way */
	int stray_due;          /* BEHAVE_STRAY_LATER: operation 6 sends it */
	int stray_ack;          /* ... with an Ack before it */
	int close_after_flush;
	uint8_t out[1 << 16];
	size_t out_len;
	size_t payload_len;     /* of the request being read */
};

struct client {
	int fd;                 /* -1: not connected */
	uint8_t tail[16];       /* the last bytes received, for the marker */
	size_t tail_len;
};

static struct {
	int ready;
	struct generation *gen[3];
	struct limits limits;
	struct worker w[3];     /* splice, copy, uring */
	struct ev_loop *loop;
	int svc_listen[NSERVICES];
	uint16_t svc_port[NSERVICES];
	int front;              /* where the clients connect; accepted here */
	struct sockaddr_in front_addr;
	uint8_t marker[16];     /* in every stray envelope */
	size_t client_got;      /* bytes the clients received (self_test) */
} g;

static struct svc_conn svc[MAX_SVC_CONNS];
static size_t nsvc;
static enum behaviour next_behaviour[NSERVICES];
static struct client clients[NCLIENTS];
static int moved;               /* progress in this round */

static void
nonblock(int fd)
{
	FUZZ_CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
}

static int
listen_loopback(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	FUZZ_CHECK(fd >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	FUZZ_CHECK(bind(fd, (struct sockaddr *)addr, sizeof(*addr)) == 0);
	FUZZ_CHECK(listen(fd, 64) == 0);
	FUZZ_CHECK(getsockname(fd, (struct sockaddr *)addr, &len) == 0);
	nonblock(fd);
	return fd;
}

static struct generation *
load_generation(const char *forward)
{
	char path[] = "/tmp/fuzz_sessions.XXXXXX", err[4096];
	struct generation *gen;
	FILE *f;
	int fd = mkstemp(path);

	FUZZ_CHECK(fd >= 0 && (f = fdopen(fd, "w")) != NULL);
	fprintf(f, "[global]\nlisten = 127.0.0.1:1\nforward = %s\nbackend_pool = 4\n"
	    "backend_pool_settle = 0\n"
	    "[a]\nvia = net.tcp://+/A\nvia = net.tcp://+/B/A\nbackend = 127.0.0.1:%u\n"
	    "[b]\nvia = net.tcp://+/B\nbackend = 127.0.0.1:%u\n", forward,
	    g.svc_port[0], g.svc_port[1]);
	fclose(f);
	gen = generation_load(path, 1, err, sizeof(err));
	unlink(path);
	if (gen == NULL)
		fprintf(stderr, "%s", err);
	FUZZ_CHECK(gen != NULL);
	return gen;
}

static void
setup(void)
{
	struct sockaddr_in addr;
	int i;

	/* As main() does: splice() into a closed socket raises SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	log_open(LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
	g.loop = ev_loop_new(EVFLAG_AUTO);
	FUZZ_CHECK(g.loop != NULL);
	for (i = 0; i < NSERVICES; i++) {
		g.svc_listen[i] = listen_loopback(&addr);
		g.svc_port[i] = ntohs(addr.sin_port);
	}
	g.front = listen_loopback(&g.front_addr);
	g.limits.max_connections = 64;
	g.limits.max_pending = 64;
	FUZZ_CHECK(pending_init(&g.limits.pending) == 0);
	g.gen[0] = load_generation("splice");
	g.gen[1] = load_generation("copy");
	g.gen[2] = load_generation("uring");
	for (i = 0; i < 3; i++) {
		struct worker *w = &g.w[i];

		memset(w, 0, sizeof(*w));
		w->loop = g.loop;
		w->gen = g.gen[i];
		w->limits = &g.limits;
		w->pending.data = w;
		/* As worker_init: ready connections are served before the
		 * loop polls again. */
		ev_prepare_init(&w->ready_run, conn_run_ready);
		w->ready_run.data = w;
		ev_prepare_start(g.loop, &w->ready_run);
		pipe_pool_init(&w->pipes, g.gen[i]->cfg->pipe_size);
		bpool_init(&w->backends, g.loop, g.gen[i]->cfg->backend_pool,
		    g.gen[i]->cfg->backend_pool_timeout,
		    g.gen[i]->cfg->backend_pool_settle);
	}
	/* The secret of the stray envelopes: not in any input. */
	for (i = 0; i < (int)sizeof(g.marker); i++)
		g.marker[i] = (uint8_t)(0xA5 ^ (i * 37) ^ (getpid() >> (i % 16)));
	for (i = 0; i < NCLIENTS; i++)
		clients[i].fd = -1;
	g.ready = 1;
}

static void run(struct worker *w);
static void teardown(struct worker *w);
static void client_connect(struct worker *w, struct client *c);

/*
 * Once, before any input: one WCF session through each worker must reach
 * its client whole (the Ack, the reply, End).  A harness whose loop never
 * served a connection would pass every input while testing nothing.
 */
static void
self_test(void)
{
	static const uint8_t session[] = {
		0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 13,
		'n', 'e', 't', '.', 't', 'c', 'p', ':', '/', '/', 'h', '/', 'A',
		0x03, 0x08, 0x0C, 0x06, 0x03, 'a', 'b', 'c', 0x07,
	};

	for (int i = 0; i < 3; i++) {
		g.client_got = 0;
		client_connect(&g.w[i], &clients[0]);
		FUZZ_CHECK(send(clients[0].fd, session, sizeof(session), 0) ==
		    (ssize_t)sizeof(session));
		run(&g.w[i]);
		if (g.client_got < 1 + 2 + 3 + 1) {
			fprintf(stderr, "worker %d: the client got %zu bytes\n", i,
			    g.client_got);
			FUZZ_CHECK(!"a WCF session went through");
		}
		teardown(&g.w[i]);
	}
}

/* ------------------------------------------------------------ services */

/* Which service the Via routes to, as the daemon's table says; -1: none. */
static int
service_of_via(const struct worker *w, const uint8_t *text, size_t len)
{
	struct via via;
	const char *why;
	const struct route *r;

	if (via_parse((const char *)text, len, 0, &via, &why) < 0)
		return -1;
	r = routes_lookup(w->gen->cfg->routes, &via, 808);
	if (r == NULL)
		return -1;
	for (int i = 0; i < NSERVICES; i++)
		if (ntohs(((const struct sockaddr_in *)&r->backends.m[0].addr.ss)->sin_port) ==
		    g.svc_port[i])
			return i;
	return -1;
}

/* What does not fit is dropped: the clients only look for the marker. */
static void
queue(struct svc_conn *s, const void *buf, size_t len)
{
	if (s->out_len + len > sizeof(s->out))
		return;
	memcpy(s->out + s->out_len, buf, len);
	s->out_len += len;
}

static size_t
mbint_put(uint32_t v, uint8_t *out)
{
	size_t n = 0;

	do {
		out[n] = (uint8_t)(v & 0x7F);
		v >>= 7;
		if (v)
			out[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

static void
queue_envelope(struct svc_conn *s, uint8_t type, const uint8_t *p, size_t len)
{
	uint8_t head[6];
	size_t n;

	head[0] = type;
	n = 1 + mbint_put((uint32_t)len, head + 1);
	queue(s, head, n);
	queue(s, p, len);
}

/*
 * A service answers a request with as many bytes, all 'r': never the
 * client's own bytes, which libFuzzer can fill with the marker it saw
 * compared (memmem is intercepted), so that only a stray can carry it.
 */
static void
queue_reply(struct svc_conn *s, uint8_t type)
{
	static uint8_t r[REPLY_MAX];

	if (r[0] == 0)
		memset(r, 'r', sizeof(r));
	queue_envelope(s, type, r, s->payload_len < REPLY_MAX ? s->payload_len :
	    REPLY_MAX);
}

/* with_ack: a 0B first, which the next session on this connection could
 * take for the answer to its preamble. */
static void
queue_stray(struct svc_conn *s, int with_ack)
{
	if (with_ack)
		queue(s, "\x0b", 1);
	queue_envelope(s, 0x06, g.marker, sizeof(g.marker));
}

/* A whole record came in: answer as the service would. */
static void
svc_record_done(struct svc_conn *s, const struct worker *w)
{
	static const uint8_t ack = 0x0B, end = 0x07;
	static const uint8_t fault[] = "\x08\x2ahttp://schemas.microsoft.com/ws/2006/05/framing";
	struct reader *r = &s->rd;

	if (!r->in_session) {
		switch (r->type) {
		case 0x02:
			/* The heart of it: this service is where the Via goes. */
			FUZZ_CHECK(service_of_via(w, r->str, r->nstr) == s->service);
			break;
		case 0x09:
			r->state = RD_PINNED;
			return;
		case 0x0C:
			r->in_session = 1;
			r->singleton_done = 0;
			r->in_chunks = 0;
			s->now = next_behaviour[s->service];
			next_behaviour[s->service] = BEHAVE_WCF;
			if (s->now == BEHAVE_FAULT) {
				queue(s, fault, sizeof(fault) - 1);
				s->close_after_flush = 1;
			} else {
				queue(s, &ack, 1);
				if (s->now == BEHAVE_END_AT_ONCE)
					queue(s, &end, 1);
			}
			break;
		default:
			break;
		}
		r->state = RD_RECORD;
		return;
	}
	switch (r->type) {
	case 0x06:
		if (s->now != BEHAVE_END_AT_ONCE)
			queue_reply(s, 0x06);
		break;
	case 0x07:
		r->in_session = 0;
		r->stage = 0;
		if (r->mode == 1 && s->now != BEHAVE_END_AT_ONCE) {
			/* One chunk, then the 00 that ends the Unsized
			 * Envelope; a chunk of size 0 would be that 00
			 * itself, so an empty request gets 05 00 alone (a
			 * second 00 would be a record out of the session). */
			queue_reply(s, 0x05);
			if (s->payload_len > 0)
				queue(s, "\x00", 1);
		}
		if (s->now != BEHAVE_END_AT_ONCE)
			queue(s, &end, 1);
		if (s->now == BEHAVE_STRAY || s->now == BEHAVE_STRAY_ACK)
			queue_stray(s, s->now == BEHAVE_STRAY_ACK);
		if (s->now == BEHAVE_STRAY_LATER || s->now == BEHAVE_STRAY_ACK_LATER) {
			s->stray_due = 1;
			s->stray_ack = s->now == BEHAVE_STRAY_ACK_LATER;
		}
		if (s->now == BEHAVE_CLOSE)
			s->close_after_flush = 1;
		break;
	default:
		break;
	}
	r->state = RD_RECORD;
}

/* A record type at a boundary: must have a place, or the daemon let
 * through a byte it should have stopped. */
static void
svc_record_start(struct svc_conn *s, uint8_t type)
{
	struct reader *r = &s->rd;

	r->type = type;
	r->nfixed = 0;
	r->nstr = 0;
	r->size = 0;
	r->size_bytes = 0;
	if (!r->in_session) {
		static const uint8_t want[] = { 0x00, 0x01, 0x02, 0x03 };

		if (r->stage < 4) {
			/* version, mode, Via, encoding: in that order */
			FUZZ_CHECK(type == want[r->stage] ||
			    (r->stage == 3 && type == 0x04));
		} else {
			FUZZ_CHECK(type == 0x09 || type == 0x0C);
		}
		r->stage++;
		if (type == 0x00 || type == 0x01 || type == 0x03)
			r->state = RD_FIXED;
		else if (type == 0x02 || type == 0x04 || type == 0x09)
			r->state = RD_SIZE;
		return;
	}
	if (r->mode == 2) {
		FUZZ_CHECK(type == 0x06 || type == 0x07);
	} else {
		/* one Unsized Envelope, then End */
		FUZZ_CHECK((type == 0x05 && !r->singleton_done) ||
		    (type == 0x07 && r->singleton_done));
		r->in_chunks = type == 0x05;
	}
	/* Not at End: a singleton's reply, sent at its End, is as long as
	 * its request. */
	if (type == 0x06 || type == 0x05) {
		s->payload_len = 0;
		r->state = RD_SIZE;
	}
}

/* Feed what a service received, checking each byte's place. */
static void
svc_feed(struct svc_conn *s, const struct worker *w, const uint8_t *p, size_t n)
{
	struct reader *r = &s->rd;
	size_t i = 0;

	while (i < n) {
		uint8_t b = p[i];

		switch (r->state) {
		case RD_PINNED:
			return;
		case RD_RECORD:
			svc_record_start(s, b);
			if (r->state == RD_RECORD) /* 0C or 07: no body */
				svc_record_done(s, w);
			i++;
			break;
		case RD_FIXED:
			r->fixed[r->nfixed++] = b;
			i++;
			if (r->type == 0x00 && r->nfixed == 2) {
				FUZZ_CHECK(r->fixed[0] == 1); /* major version 1 */
				svc_record_done(s, w);
			} else if (r->type == 0x01) {
				FUZZ_CHECK(b == 1 || b == 2);  /* singleton or duplex */
				r->mode = b;
				svc_record_done(s, w);
			} else if (r->type == 0x03) {
				svc_record_done(s, w);
			}
			break;
		case RD_SIZE:
			/* mbint: at most 5 bytes, the fifth at most 0x07 */
			FUZZ_CHECK(r->size_bytes < 4 || b <= 0x07);
			r->size |= (uint32_t)(b & 0x7F) << (7 * r->size_bytes);
			r->size_bytes++;
			i++;
			if (b & 0x80)
				break;
			FUZZ_CHECK(r->size <= MBINT_MAX);
			r->need = r->size;
			if (r->in_chunks && r->size == 0) {
				/* the Unsized Envelope's last chunk */
				r->singleton_done = 1;
				r->in_chunks = 0;
				r->state = RD_RECORD;
				break;
			}
			if (!r->in_session && r->type == 0x02)
				FUZZ_CHECK(r->size <= NMF_MAX_VIA);
			r->state = RD_BYTES;
			if (r->need == 0 && !r->in_chunks)
				svc_record_done(s, w);
			break;
		case RD_BYTES: {
			size_t take = n - i < r->need ? n - i : r->need;

			if (!r->in_session && r->nstr + take <= NMF_MAX_VIA) {
				memcpy(r->str + r->nstr, p + i, take);
				r->nstr += take;
			}
			if (r->in_session)
				s->payload_len += take;
			r->need -= (uint32_t)take;
			i += take;
			if (r->need > 0)
				break;
			if (r->in_chunks) {
				/* the next chunk's size */
				r->state = RD_SIZE;
				r->size = 0;
				r->size_bytes = 0;
			} else {
				svc_record_done(s, w);
			}
			break;
		}
		}
	}
}

/* By RST: tens of thousands of runs must not fill the port space with
 * TIME_WAIT. */
static void
close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void
svc_close(struct svc_conn *s)
{
	close_rst(s->fd);
	*s = svc[--nsvc];
}

static void
services_run(const struct worker *w)
{
	uint8_t buf[65536];
	size_t i;

	for (int k = 0; k < NSERVICES; k++) {
		int fd;

		while ((fd = accept4(g.svc_listen[k], NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
			if (nsvc == MAX_SVC_CONNS) {
				close(fd);
				continue;
			}
			memset(&svc[nsvc], 0, sizeof(svc[nsvc]));
			svc[nsvc].fd = fd;
			svc[nsvc].service = k;
			nsvc++;
			moved = 1;
		}
	}
	for (i = 0; i < nsvc; i++) {
		struct svc_conn *s = &svc[i];
		ssize_t n;

		while ((n = recv(s->fd, buf, sizeof(buf), 0)) > 0) {
			svc_feed(s, w, buf, (size_t)n);
			moved = 1;
		}
		if (n == 0 && s->out_len == 0) {
			svc_close(s);
			i--;
			moved = 1;
			continue;
		}
		while (s->out_len > 0 &&
		    (n = send(s->fd, s->out, s->out_len, MSG_NOSIGNAL)) > 0) {
			memmove(s->out, s->out + n, s->out_len - (size_t)n);
			s->out_len -= (size_t)n;
			moved = 1;
		}
		if (s->out_len == 0 && s->close_after_flush) {
			svc_close(s);
			i--;
			moved = 1;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			svc_close(s);
			i--;
			moved = 1;
		}
	}
}

/* ------------------------------------------------------------ clients */

static void
client_recv(struct client *c)
{
	uint8_t buf[65536 + 16];
	ssize_t n;

	if (c->fd < 0)
		return;
	memcpy(buf, c->tail, c->tail_len);
	while ((n = recv(c->fd, buf + c->tail_len, sizeof(buf) - c->tail_len, 0)) > 0) {
		size_t len = c->tail_len + (size_t)n;

		/* No stray envelope ever reaches a client. */
		FUZZ_CHECK(memmem(buf, len, g.marker, sizeof(g.marker)) == NULL);
		c->tail_len = len < sizeof(c->tail) ? len : sizeof(c->tail) - 1;
		memcpy(c->tail, buf + len - c->tail_len, c->tail_len);
		memcpy(buf, c->tail, c->tail_len);
		g.client_got += (size_t)n;
		moved = 1;
	}
}

static void
client_connect(struct worker *w, struct client *c)
{
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	int fd, one = 1;

	if (c->fd >= 0)
		return;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(c->fd >= 0);
	/* From a source of 127/8 of its own: the daemon's FIN closes leave
	 * TIME_WAIT on its side, which would use up one source's ports. */
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(0x7F000000u | (uint32_t)(rand() & 0xFFFFFF) | 1u);
	FUZZ_CHECK(bind(c->fd, (struct sockaddr *)&peer, sizeof(peer)) == 0);
	/* Non-blocking, so that libFuzzer's timer signal cannot cut it short;
	 * on loopback the handshake is done once the listener is readable. */
	nonblock(c->fd);
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	FUZZ_CHECK(connect(c->fd, (struct sockaddr *)&g.front_addr,
	    sizeof(g.front_addr)) == 0 || errno == EINPROGRESS || errno == EINTR);
	c->tail_len = 0;
	for (;;) {
		struct pollfd pfd = { .fd = g.front, .events = POLLIN };
		int n = poll(&pfd, 1, 5000);

		FUZZ_CHECK(n > 0 || (n < 0 && errno == EINTR));
		len = sizeof(peer);
		fd = accept4(g.front, (struct sockaddr *)&peer, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		FUZZ_CHECK(errno == EAGAIN || errno == EINTR);
	}
	conn_accept(w, fd, (struct sockaddr *)&peer, len, 808, 0);
}

static void
client_close(struct client *c, int rst)
{
	if (c->fd < 0)
		return;
	if (rst)
		close_rst(c->fd);
	else
		close(c->fd);
	c->fd = -1;
}

/* ------------------------------------------------------------ driving */

static void
run(struct worker *w)
{
	int idle = 0;

	for (int round = 0; round < MAX_ROUNDS && idle < IDLE_ROUNDS; round++) {
		moved = 0;
		ev_run(g.loop, EVRUN_NOWAIT);
		services_run(w);
		for (int i = 0; i < NCLIENTS; i++)
			client_recv(&clients[i]);
		idle = moved ? 0 : idle + 1;
	}
}

/* Every socket of the run closes by RST from the harness's side first. */
static void
teardown(struct worker *w)
{
	for (int i = 0; i < NCLIENTS; i++)
		client_close(&clients[i], 1);
	while (nsvc > 0)
		svc_close(&svc[nsvc - 1]);
	ev_run(g.loop, EVRUN_NOWAIT);
	conn_close_all(w);
	bpool_drain(&w->backends);
	for (int k = 0; k < NSERVICES; k++) {
		int fd;

		while ((fd = accept4(g.svc_listen[k], NULL, NULL, SOCK_CLOEXEC)) >= 0)
			close_rst(fd);
		next_behaviour[k] = BEHAVE_WCF;
	}
	ev_run(g.loop, EVRUN_NOWAIT);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct worker *w;
	size_t i = 1;

	if (!g.ready) {
		setup();
		self_test();
	}
	if (size == 0)
		return 0;
	w = &g.w[data[0] & 2 ? 2 : data[0] & 1];
	while (i < size) {
		uint8_t op = data[i] & 0x0F, arg = data[i] >> 4;
		struct client *c = &clients[arg & 1];

		i++;
		switch (op) {
		case 0: {
			size_t n = i < size ? data[i++] : 0;

			if (n == 0 || n > size - i)
				n = size - i;
			client_connect(w, c);
			if (send(c->fd, data + i, n, MSG_NOSIGNAL) < 0 &&
			    errno != EPIPE && errno != ECONNRESET && errno != EAGAIN)
				FUZZ_CHECK(!"client send failed");
			i += n;
			break;
		}
		case 1:
			client_connect(w, c);
			break;
		case 2:
			if (c->fd >= 0)
				(void)shutdown(c->fd, SHUT_WR);
			break;
		case 3:
			client_close(c, arg & 2);
			break;
		case 4:
			run(w);
			break;
		case 5:
			next_behaviour[arg & 1] = (enum behaviour)((arg >> 1) % BEHAVE_COUNT);
			break;
		case 6:
			for (size_t k = 0; k < nsvc; k++) {
				if (svc[k].stray_due) {
					queue_stray(&svc[k], svc[k].stray_ack);
					svc[k].stray_due = 0;
				}
			}
			break;
		default:
			break;
		}
	}
	run(w);
	teardown(w);
	return 0;
}
