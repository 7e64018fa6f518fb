/*
 * handoff.c - passing client sockets to registrants (handoff.h), on the
 * main thread's loop.
 *
 * A handoff goes through three places, each owned by the main thread
 * once the worker has queued it:
 *   the queue     workers append, the main loop takes all on its wake-up
 *   a peer's      sent, our copy of the socket kept until TAKEN or
 *   pending list  handoff_timeout (oldest first: TAKENs come in order)
 *   the faulting  not taken: the EndpointUnavailable fault written, our
 *   list          FIN sent, the client's bytes read until its FIN, as a
 *                 worker drains after a fault, so it reads the fault
 *                 instead of a reset
 */
#include "handoff.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "ctlproto.h"
#include "log.h"
#include "nmf.h"
#include "ratelimit.h"

/* After the fault, read and discard at most this much for at most this
 * long: what a worker allows a client after its own faults (conn_int.h). */
#define DRAIN_MAX (64u * 1024u)
#define DRAIN_SECONDS 2.0

struct handoff_item {
	struct handoff_item *prev, *next;  /* in the queue, a pending list */
	                                   /* or the faulting list */
	struct handoff_sink *sink;         /* a reference */
	int fd;                            /* the client's socket, ours */
	uint64_t id;                       /* once sent */
	struct handoff_peer *peer;         /* sent: on its pending list */
	ev_timer timer;                    /* handoff_timeout; then the drain */
	ev_io drain;
	size_t drained;
	struct sockaddr_storage client;
	size_t len;                        /* the client's bytes, to send */
	uint8_t bytes[];
};

struct list {
	struct handoff_item *head, *tail;
};

struct handoff_peer {
	struct handoff_peer *prev, *next;  /* every open peer */
	int fd;                            /* the control connection */
	struct handoff_sink *sinks;        /* its open sinks */
	struct list pending;               /* sent, waiting for TAKEN */
	unsigned handed_over : 1;          /* a binary upgrade gave it to */
	                                   /* the new process, which reads */
	                                   /* its TAKENs */
};

struct handoff_sink {
	atomic_uint refs;
	/* Set once: */
	uint64_t reg_id;
	char *name;                        /* its route's */
	uint32_t slot;                     /* that name's counts */
	/* The main thread's: */
	struct handoff_peer *peer;         /* NULL once closed */
	struct handoff_sink *pnext;        /* in peer->sinks */
	unsigned pending;                  /* sent, not taken nor failed */
};

static struct {
	struct ev_loop *loop;
	ev_async wake;
	pthread_mutex_t lock;              /* guards queue, for the workers */
	struct list queue;
	struct list faulting;
	struct handoff_peer *peers;
	double timeout;
	unsigned max_pending;
	struct ratelimit lines;            /* log_client_lines, as a worker's */
	uint64_t next_id;
	struct route_stats_table stats;
} hub = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.timeout = HANDOFF_DEFAULT_TIMEOUT,
	.max_pending = HANDOFF_DEFAULT_MAX_PENDING,
};

const char *
handoff_result_name(enum handoff_result r)
{
	static const char *const names[HANDOFF_RESULTS] = {
		[HANDOFF_TAKEN] = "taken", [HANDOFF_REFUSED] = "refused",
		[HANDOFF_TIMEOUT] = "timeout", [HANDOFF_LOST] = "lost",
	};

	return names[r];
}

const struct route_stats_table *
handoff_stats(void)
{
	return &hub.stats;
}

static void
list_append(struct list *l, struct handoff_item *it)
{
	it->prev = l->tail;
	it->next = NULL;
	if (l->tail != NULL)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
}

static void
list_unlink(struct list *l, struct handoff_item *it)
{
	if (it->prev != NULL)
		it->prev->next = it->next;
	else
		l->head = it->next;
	if (it->next != NULL)
		it->next->prev = it->prev;
	else
		l->tail = it->prev;
	it->prev = it->next = NULL;
}

static void
item_free(struct handoff_item *it)
{
	if (it->fd >= 0)
		close(it->fd);
	handoff_sink_unref(it->sink);
	free(it);
}

static void
count(const struct handoff_item *it, enum handoff_result r)
{
	stat_add(&route_stats_get(&hub.stats, it->sink->slot)->handoffs[r], 1);
}

/* One line about a handoff: the client, its route, the registration. */
static void __attribute__((format(printf, 3, 4)))
item_log(const struct handoff_item *it, enum log_level level,
    const char *fmt, ...)
{
	char peer[ADDR_TEXT_MAX], what[256];
	unsigned held;
	va_list ap;

	if (!log_enabled(level))
		return;
	/* A client flood at a registrant that takes nothing is a line per
	 * client: as many a second as a worker writes about clients. */
	if (level == LOG_LEVEL_NOTICE && hub.lines.burst > 0) {
		int pass = ratelimit_pass(&hub.lines, ev_now(hub.loop), &held);

		if (held > 0)
			log_notice("%u similar lines about handoffs suppressed",
			    held);
		if (!pass)
			return;
	}
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	addr_format((const struct sockaddr *)&it->client, peer, sizeof(peer));
	log_client(level, peer, it->sink->name, "client %s route [%s]: handoff "
	    "%llu to registration %llu: %s", peer, it->sink->name,
	    (unsigned long long)it->id, (unsigned long long)it->sink->reg_id,
	    what);
}

static void
drain_end(struct handoff_item *it)
{
	ev_io_stop(hub.loop, &it->drain);
	ev_timer_stop(hub.loop, &it->timer);
	list_unlink(&hub.faulting, it);
	item_free(it);
}

static void
on_drain(struct ev_loop *loop, ev_io *io, int revents)
{
	struct handoff_item *it = io->data;
	char sink[4096];
	ssize_t n;

	(void)loop;
	(void)revents;
	n = recv(it->fd, sink, sizeof(sink), 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && (it->drained += (size_t)n) <= DRAIN_MAX)
		return;
	drain_end(it);      /* the client's FIN, an error, or too much */
}

static void
on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	drain_end(t->data);
}

/*
 * The registrant cannot take it (why, for the log): the client gets the
 * EndpointUnavailable fault and our FIN, and is drained.  The registrant
 * may hold the socket too (a late TAKEN): the FIN ends it for both.
 */
static void
item_fail(struct handoff_item *it, enum handoff_result r, const char *why)
{
	size_t len;
	const uint8_t *rec = nmf_fault_record(NMF_FAULT_ENDPOINT_UNAVAILABLE, &len);

	count(it, r);
	item_log(it, LOG_LEVEL_NOTICE, "%s, sent %s", why,
	    nmf_fault_name(NMF_FAULT_ENDPOINT_UNAVAILABLE));
	/* A few dozen bytes into a socket nothing was written to since the
	 * preamble: they fit, or the client is past helping. */
	if (send(it->fd, rec, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len ||
	    shutdown(it->fd, SHUT_WR) < 0) {
		item_free(it);
		return;
	}
	list_append(&hub.faulting, it);
	ev_io_init(&it->drain, on_drain, it->fd, EV_READ);
	it->drain.data = it;
	ev_io_start(hub.loop, &it->drain);
	ev_timer_init(&it->timer, on_drain_timeout, DRAIN_SECONDS, 0.);
	it->timer.data = it;
	ev_timer_start(hub.loop, &it->timer);
}

/* Sent, and no longer waiting: off its peer's list, uncounted. */
static void
pending_end(struct handoff_item *it)
{
	ev_timer_stop(hub.loop, &it->timer);
	list_unlink(&it->peer->pending, it);
	it->peer = NULL;
	it->sink->pending--;
}

static void
on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct handoff_item *it = t->data;
	char why[96];

	(void)loop;
	(void)revents;
	pending_end(it);
	snprintf(why, sizeof(why), "no TAKEN within handoff_timeout (%.3g s)",
	    hub.timeout);
	item_fail(it, HANDOFF_TIMEOUT, why);
}

/* Sent: wait for its TAKEN for at most seconds. */
static void
pending_start(struct handoff_peer *p, struct handoff_item *it, double seconds)
{
	it->peer = p;
	list_append(&p->pending, it);
	it->sink->pending++;
	ev_timer_init(&it->timer, on_timeout, seconds, 0.);
	it->timer.data = it;
	ev_timer_start(hub.loop, &it->timer);
}

/*
 * Send HANDOFF with the socket to the registrant, never waiting: its
 * queue full is a refusal, not a reason to hold the main loop.
 */
static void
dispatch(struct handoff_item *it)
{
	struct handoff_sink *s = it->sink;
	struct handoff_peer *p = s->peer;
	char line[CTL_HANDOFF_LINE_MAX], why[96];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov[2];
	struct msghdr msg = { 0 };
	int n;

	it->id = hub.next_id++;   /* each attempt: the log lines name it */
	if (p == NULL) {
		item_fail(it, HANDOFF_LOST, "the registration is gone");
		return;
	}
	if (s->pending >= hub.max_pending) {
		snprintf(why, sizeof(why), "handoff_max_pending (%u) reached",
		    hub.max_pending);
		item_fail(it, HANDOFF_REFUSED, why);
		return;
	}
	n = ctl_format_handoff_line(line, sizeof(line), it->id, s->reg_id,
	    it->len);
	iov[0].iov_base = line;
	iov[0].iov_len = n > 0 ? (size_t)n : 0;
	iov[1].iov_base = it->bytes;
	iov[1].iov_len = it->len;
	memset(&ctl, 0, sizeof(ctl));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	ctl.h.cmsg_level = SOL_SOCKET;
	ctl.h.cmsg_type = SCM_RIGHTS;
	ctl.h.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&ctl.h), &it->fd, sizeof(int));
	/* A SOCK_SEQPACKET record goes whole or not at all. */
	if (n <= 0 || sendmsg(p->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		int full = n > 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ENOBUFS || errno == ETOOMANYREFS);

		snprintf(why, sizeof(why), "cannot send HANDOFF (%s)", n <= 0 ?
		    "bad length" : full ? "the registrant's queue is full" :
		    strerror(errno));
		item_fail(it, full ? HANDOFF_REFUSED : HANDOFF_LOST, why);
		return;
	}
	item_log(it, LOG_LEVEL_DEBUG, "sent %zu bytes and the socket", it->len);
	if (p->handed_over) {
		/* Its TAKEN goes to the new process: this one's part is done. */
		count(it, HANDOFF_TAKEN);
		item_free(it);
		return;
	}
	pending_start(p, it, hub.timeout);
}

/* The workers queued handoffs: send each. */
static void
on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
	struct handoff_item *it, *next;

	(void)loop;
	(void)a;
	(void)revents;
	pthread_mutex_lock(&hub.lock);
	it = hub.queue.head;
	hub.queue.head = hub.queue.tail = NULL;
	pthread_mutex_unlock(&hub.lock);
	for (; it != NULL; it = next) {
		next = it->next;
		it->prev = it->next = NULL;
		dispatch(it);
	}
}

int
handoff_submit(struct handoff_sink *s, int fd, const uint8_t *bytes,
    size_t len, const struct sockaddr *client)
{
	struct handoff_item *it = calloc(1, sizeof(*it) + len);

	if (it == NULL)
		return -1;
	it->sink = handoff_sink_ref(s);
	it->fd = fd;
	it->len = len;
	memcpy(it->bytes, bytes, len);
	memcpy(&it->client, client, client->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : client->sa_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr));
	pthread_mutex_lock(&hub.lock);
	list_append(&hub.queue, it);
	pthread_mutex_unlock(&hub.lock);
	ev_async_send(hub.loop, &hub.wake);
	return 0;
}

int
handoff_taken(struct handoff_peer *p, uint64_t id)
{
	struct handoff_item *it;

	for (it = p->pending.head; it != NULL; it = it->next)
		if (it->id == id)
			break;
	if (it == NULL) {
		log_debug("control connection %d: TAKEN %llu: no such handoff "
		    "waiting, ignored", p->fd, (unsigned long long)id);
		return -1;
	}
	pending_end(it);
	count(it, HANDOFF_TAKEN);
	item_log(it, LOG_LEVEL_DEBUG, "taken");
	item_free(it);      /* our copy: nettcpd holds nothing for it now */
	return 0;
}

struct handoff_peer *
handoff_peer_new(int ctl_fd)
{
	struct handoff_peer *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->fd = ctl_fd;
	p->next = hub.peers;
	if (hub.peers != NULL)
		hub.peers->prev = p;
	hub.peers = p;
	return p;
}

/* Off its peer's list of open sinks: it takes nothing more. */
static void
sink_detach(struct handoff_sink *s)
{
	struct handoff_sink **pp;

	if (s->peer == NULL)
		return;
	for (pp = &s->peer->sinks; *pp != s; pp = &(*pp)->pnext)
		;
	*pp = s->pnext;
	s->pnext = NULL;
	s->peer = NULL;
}

void
handoff_peer_close(struct handoff_peer *p)
{
	struct handoff_item *it;

	while (p->sinks != NULL)
		sink_detach(p->sinks);
	while ((it = p->pending.head) != NULL) {
		pending_end(it);
		item_fail(it, HANDOFF_LOST, "the registrant's control "
		    "connection closed before TAKEN");
	}
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		hub.peers = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	free(p);
}

struct handoff_sink *
handoff_sink_new(struct handoff_peer *p, uint64_t reg_id, const char *route_name)
{
	struct handoff_sink *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->name = strdup(route_name)) == NULL) {
		free(s);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->reg_id = reg_id;
	s->slot = stats_route_slot(route_name);
	s->peer = p;
	s->pnext = p->sinks;
	p->sinks = s;
	return s;
}

void
handoff_sink_close(struct handoff_sink *s)
{
	sink_detach(s);
	handoff_sink_unref(s);
}

struct handoff_sink *
handoff_sink_ref(struct handoff_sink *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void
handoff_sink_unref(struct handoff_sink *s)
{
	/* acq_rel: the last owner must see every other owner's writes. */
	if (s == NULL ||
	    atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) > 1)
		return;
	free(s->name);
	free(s);
}

void
handoff_init(struct ev_loop *main_loop)
{
	hub.loop = main_loop;
	hub.next_id = 1;
	ratelimit_init(&hub.lines, CONFIG_DEFAULT_LOG_CLIENT_LINES, 1.0);
	ev_async_init(&hub.wake, on_wake);
	ev_async_start(main_loop, &hub.wake);
}

void
handoff_set_limits(double timeout, unsigned max_pending, unsigned log_lines)
{
	hub.timeout = timeout;
	hub.max_pending = max_pending;
	hub.lines.burst = log_lines;
}

uint64_t
handoff_next_id(void)
{
	return hub.next_id;
}

void
handoff_set_next_id(uint64_t id)
{
	hub.next_id = id;
}

void
handoff_each_pending(const struct handoff_peer *p,
    void (*fn)(void *arg, int fd, uint64_t id, uint64_t reg_id, double left),
    void *arg)
{
	for (const struct handoff_item *it = p->pending.head; it != NULL;
	    it = it->next)
		fn(arg, it->fd, it->id, it->sink->reg_id,
		    ev_timer_remaining(hub.loop, (ev_timer *)&it->timer));
}

void
handoff_peer_handed_over(struct handoff_peer *p)
{
	struct handoff_item *it;

	p->handed_over = 1;
	while ((it = p->pending.head) != NULL) {
		pending_end(it);
		item_free(it);   /* the new process holds the client now */
	}
}

void
handoff_adopt(struct handoff_peer *p, struct handoff_sink *s, int fd,
    uint64_t id, double left)
{
	struct handoff_item *it = calloc(1, sizeof(*it));

	if (it == NULL) {
		/* The client then only gets our close, and the registrant's. */
		log_warn("out of memory taking over handoff %llu: its socket "
		    "closed", (unsigned long long)id);
		close(fd);
		return;
	}
	it->sink = handoff_sink_ref(s);
	it->fd = fd;
	it->id = id;
	pending_start(p, it, left > 0.001 ? left : 0.001);
}

void
handoff_shutdown(void)
{
	struct handoff_item *it;

	if (hub.loop == NULL)
		return;
	on_wake(hub.loop, &hub.wake, 0);    /* the last ones queued */
	/* Each gets the fault and a FIN; no loop is left to drain on. */
	while (hub.peers != NULL)
		handoff_peer_close(hub.peers);
	while ((it = hub.faulting.head) != NULL)
		drain_end(it);
	ev_async_stop(hub.loop, &hub.wake);
	hub.loop = NULL;
	route_stats_free(&hub.stats);
}
