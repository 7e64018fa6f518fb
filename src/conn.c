/*
 * conn.c - one client connection: its states, its lists, its watchers,
 * the way in (conn_accept) and the one way out (conn_finish).
 *
 *          +--------------------------- IDLE <-----------------+
 *          v                     (pooled backend)               | End both ways
 *   PREAMBLE --Preamble End--> CONNECTING --> REPLAY --> FORWARDING --> closed
 *      |    \                     ^  |          |
 *      |     \--> TLS_HANDSHAKE --> TLS_PREAMBLE   (tls = terminate)
 *      |                |          |  |          |
 *      +--fault--+  +---+----------+--+----------+  (backend refused/timed out)
 *                v  v
 *              FAULTING --> DRAINING --> closed
 *
 * Where each behaviour lives:
 *   conn_proxy.c     listen_proxy: the trusted balancer's PROXY header,
 *                    before the preamble (state PROXY_HEADER)
 *   conn_preamble.c  reading the preamble and acting on the routing
 *                    decision (decide.c)
 *   conn_backend.c   dialling the backend, or taking a pooled connection;
 *                    the replay; a redial when a pooled one fails
 *   conn_tls.c       terminating TLS: the upgrade, the handshake, the rest
 *                    of the preamble inside TLS, forwarding through OpenSSL
 *   conn_session.c   forwarding in clear, following each session to its
 *                    End, the session's end and the wait for the next one,
 *                    its access-log record
 *   conn_fault.c     Fault records, and the half-close and drain after one
 *   conn_limits.c    max_connections and the preambles max_pending resets
 *   conn_reload.c    what a generation a reload publishes does to the
 *                    connections already open
 *
 * The Via picks the route (or the EndpointNotFound fault) as soon as it
 * arrives; the backend is dialled once the preamble is complete, so the
 * replay is the whole preamble.  A session without an upgrade, or inside
 * the TLS a route terminates (duplex or singleton), is followed from its
 * first byte to its End records: then the backend connection goes to the
 * worker's pool for the next session to that backend, and the client
 * connection waits (IDLE) for its own next preamble, in clear, routed
 * afresh.  No byte of the client's that the follower cannot place reaches
 * a service.
 *
 * A connection is counted by its source in the process's preamble table
 * (pending.c) exactly while it is in one of the states before CONNECTING:
 * that is what max_pending counts, and what preamble_timeout limits.  It is
 * in the worker's idle list exactly while IDLE: the oldest gives way at
 * max_connections.
 */
#include "conn_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "listener.h"
#include "routes.h"
#include "uring.h"


const char *
conn_outcome_name(enum conn_outcome outcome)
{
	static const char *const names[] = {
		[OUTCOME_CLOSED] = "closed", [OUTCOME_FAULTED] = "faulted",
		[OUTCOME_TIMEOUT] = "timeout", [OUTCOME_MALFORMED] = "malformed",
		[OUTCOME_ABORTED] = "reset", [OUTCOME_EVICTED] = "evicted",
		[OUTCOME_DRAINED] = "drained", [OUTCOME_RELOADED] = "reloaded",
		[OUTCOME_DENIED] = "denied", [OUTCOME_HANDOFF] = "handoff",
	};

	return names[outcome];
}

/* One log line about this connection: who, which Via or route, then what. */
static void
conn_vlog(struct conn *c, enum log_level level, const char *fmt, va_list ap)
{
	char peer[ADDR_TEXT_MAX], via[LOG_TEXT_MAX * 4 + 8], what[512];
	char whobuf[2 * ADDR_TEXT_MAX + 16];
	const char *route, *who;

	if (!worker_log_client(c->w, level))
		return;
	vsnprintf(what, sizeof(what), fmt, ap);
	addr_format(&c->client_addr.sa, peer, sizeof(peer));
	who = proxy_who(c, peer, whobuf, sizeof(whobuf));
	route = c->pre.route != NULL ? c->pre.route->name : NULL;
	if (route != NULL && c->preamble != NULL && c->pre.via_len > 0)
		log_client(level, peer, route, "client %s via '%s' route [%s]: %s",
		    who, log_printable(c->preamble + c->pre.via_off,
		    c->pre.via_len, LOG_TEXT_MAX, via, sizeof(via)), route, what);
	else if (route != NULL)
		log_client(level, peer, route, "client %s route [%s]: %s", who,
		    route, what);
	else if (c->preamble != NULL && c->pre.via_len > 0)
		log_client(level, peer, NULL, "client %s via '%s': %s", who,
		    log_printable(c->preamble + c->pre.via_off, c->pre.via_len,
		    LOG_TEXT_MAX, via, sizeof(via)),
		    what);
	else
		log_client(level, peer, NULL, "client %s: %s", who, what);
}

void __attribute__((format(printf, 3, 4)))
conn_log(struct conn *c, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_vlog(c, level, fmt, ap);
	va_end(ap);
}

void
deadline_start(struct conn *c, double seconds)
{
	ev_timer_stop(c->w->loop, &c->deadline);
	ev_timer_set(&c->deadline, seconds, 0.);
	ev_timer_start(c->w->loop, &c->deadline);
}

/* The worker keeps its connections between sessions in a list, oldest
 * first: max_connections closes the oldest of these to serve a newcomer. */
#define LIST_UNLINK(c, w, prev, next, oldest, newest, n) do {		\
	if ((c)->prev != NULL)						\
		(c)->prev->next = (c)->next;				\
	else								\
		(w)->oldest = (c)->next;				\
	if ((c)->next != NULL)						\
		(c)->next->prev = (c)->prev;				\
	else								\
		(w)->newest = (c)->prev;				\
	(c)->prev = (c)->next = NULL;					\
	(w)->n--;							\
} while (0)

#define LIST_APPEND(c, w, prev, next, oldest, newest, n) do {		\
	(c)->prev = (w)->newest;					\
	(c)->next = NULL;						\
	if ((w)->newest != NULL)					\
		(w)->newest->next = (c);				\
	else								\
		(w)->oldest = (c);					\
	(w)->newest = (c);						\
	(w)->n++;							\
} while (0)

static int
in_preamble(enum conn_state state)
{
	return state == CONN_PROXY_HEADER || state == CONN_PREAMBLE ||
	    state == CONN_TLS_HANDSHAKE || state == CONN_TLS_PREAMBLE;
}

/* Every state change goes through here, so the preamble list always holds
 * exactly the connections still in their preamble. */
void
conn_set_state(struct conn *c, enum conn_state state)
{
	struct worker *w = c->w;

	if (in_preamble(c->state) && !in_preamble(state)) {
		pending_remove(&w->limits->pending, &c->pend);
		w->npending--;
	} else if (!in_preamble(c->state) && in_preamble(state)) {
		pending_add(&w->limits->pending, &c->pend, &w->pending,
		    &c->client_addr.sa);
		w->npending++;
	}
	if (c->state == CONN_IDLE && state != CONN_IDLE) {
		LIST_UNLINK(c, w, idle_prev, idle_next, idle_oldest, idle_newest,
		    nidle);
		conn_accept_limit_update(w);
	} else if (c->state != CONN_IDLE && state == CONN_IDLE) {
		LIST_APPEND(c, w, idle_prev, idle_next, idle_oldest, idle_newest,
		    nidle);
		conn_accept_limit_update(w);
	}
	c->state = state;
}

static void
set_watch(struct conn *c, ev_io *io, int on)
{
	if (on && io->fd >= 0)
		ev_io_start(c->w->loop, io);
	else
		ready_unwatch(c, io);
}

/* Every change of what a connection waits for goes through here. */
void
conn_wait(struct conn *c, int client, int backend)
{
	set_watch(c, &c->client_rd, client & EV_READ);
	set_watch(c, &c->client_wr, client & EV_WRITE);
	set_watch(c, &c->backend_rd, backend & EV_READ);
	set_watch(c, &c->backend_wr, backend & EV_WRITE);
}

int
events_of(enum tls_step step)
{
	return step == TLS_STEP_WANT_WRITE ? EV_WRITE : EV_READ;
}

void
stop_watchers(struct conn *c)
{
	conn_wait(c, 0, 0);
	ev_timer_stop(c->w->loop, &c->deadline);
}

static void
set_linger_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void
close_backend(struct conn *c)
{
	if (c->backend_fd < 0)
		return;
	uring_cancel(c);
	ready_unwatch(c, &c->backend_rd);
	ready_unwatch(c, &c->backend_wr);
	close(c->backend_fd);
	c->backend_fd = -1;
}

/*
 * The one way out of a connection: say why (fmt NULL: it was said when the
 * outcome was decided, as for a fault), then close both sides and give
 * back what the connection holds.
 */
void __attribute__((format(printf, 5, 6)))
conn_finish(struct conn *c, enum conn_outcome outcome, enum close_how how,
    enum log_level level, const char *fmt, ...)
{
	struct worker *w = c->w;
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		conn_vlog(c, level, fmt, ap);
		va_end(ap);
	}
	c->outcome = outcome;
	stat_add(&w->stats.finished[outcome], 1);
	conn_session_record(c, outcome);
	stop_watchers(c);
	conn_set_state(c, CONN_DRAINING); /* leaves the preamble list */
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	w->nconns--;
	if (w->keep_slot)
		w->keep_slot = 0;   /* the newcomer takes it over */
	else
		limits_give(w->limits, w);

	uring_cancel(c);
	if (how == CLOSE_RESET) {
		set_linger_reset(c->client_fd);
		if (c->backend_fd >= 0)
			set_linger_reset(c->backend_fd);
	}
	close(c->client_fd);
	close_backend(c);
	pump_release(&c->up, &w->pipes);
	pump_release(&c->down, &w->pipes);
	SSL_free(c->ssl);
	free(c->preamble);
	free(c->replay);
	free(c->via_copy);
	free(c->proxy);
	generation_unref(c->gen);
	ready_forget(c);
	free(c);

	conn_accept_limit_update(w);
	worker_check_drained(w);
}

/*
 * The client's next session begins: it starts under the generation new
 * connections get (so a reload applies to it) and has a preamble's time.
 */
void
conn_next_session(struct conn *c)
{
	generation_unref(c->gen);
	c->gen = generation_ref(c->w->gen);
	conn_set_state(c, CONN_PREAMBLE);
	deadline_start(c, c->gen->cfg->preamble_timeout);
	conn_session_begin(c);
}

/* The client's socket is ready: what that means depends on the state. */
void
conn_client_io(struct conn *c, int revents)
{
	switch (c->state) {
	case CONN_PROXY_HEADER:
		proxy_read(c);
		break;
	case CONN_IDLE:
		conn_next_session(c);
		preamble_read(c);
		break;
	case CONN_PREAMBLE:
		preamble_read(c);
		break;
	case CONN_TLS_HANDSHAKE:
		tls_handshake(c);
		break;
	case CONN_TLS_PREAMBLE:
		tls_preamble_read(c);
		break;
	case CONN_FAULTING:
		fault_write(c); /* a TLS write can also wait for a read */
		break;
	case CONN_DRAINING:
		drain_read(c);
		break;
	case CONN_FORWARDING:
		if (revents & EV_READ)
			forward_up(c);
		else
			forward_down(c);
		break;
	default:
		break;
	}
}

/* The backend's socket is ready. */
void
conn_backend_io(struct conn *c, int revents)
{
	switch (c->state) {
	case CONN_CONNECTING:
		connect_done(c);
		break;
	case CONN_REPLAY:
		replay_write(c);
		break;
	case CONN_FORWARDING:
		if (revents & EV_READ)
			forward_down(c);
		else
			forward_up(c);
		break;
	default:
		break;
	}
}

static void
on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct conn *c = t->data;

	(void)loop;
	(void)revents;
	switch (c->state) {
	case CONN_PROXY_HEADER:
		proxy_expired(c);
		break;
	case CONN_PREAMBLE:
		stat_add(&c->w->stats.preamble_errors[PREAMBLE_ERR_TIMEOUT], 1);
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "preamble_timeout expired after %u bytes, reset", c->preamble_len);
		break;
	case CONN_TLS_HANDSHAKE:
	case CONN_TLS_PREAMBLE:
		if (c->state == CONN_TLS_HANDSHAKE)
			stat_add(&c->w->stats.tls_failures, 1);
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_FIN, LOG_LEVEL_NOTICE,
		    "preamble_timeout expired %s, closed",
		    c->state == CONN_TLS_HANDSHAKE ? "in the TLS handshake" :
		    "before Preamble End inside TLS");
		break;
	case CONN_CONNECTING:
	case CONN_REPLAY:
		if (c->unanswered && c->reused) {
			backend_redial(c, "took no preamble");
			break;
		}
		backend_fail(c, "connect_timeout expired");
		break;
	case CONN_FORWARDING:
		if (c->unanswered) {
			backend_unanswered_failed(c, "did not answer the preamble");
			break;
		}
		/* Within a millisecond: idle_touch's floor. */
		if (!c->following && c->gen->cfg->pinned_timeout > 0 &&
		    pinned_left(c) < 2e-3) {
			conn_finish(c, OUTCOME_TIMEOUT, CLOSE_RESET, LOG_LEVEL_INFO,
			    "pinned_timeout (%.0f s) expired for a stream nettcpd "
			    "does not follow, after %llu bytes up, %llu down; reset",
			    c->gen->cfg->pinned_timeout,
			    (unsigned long long)c->up.total,
			    (unsigned long long)c->down.total);
			break;
		}
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_FIN, LOG_LEVEL_INFO,
		    "idle_timeout expired after %llu bytes up, "
		    "%llu down, closed", (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		break;
	case CONN_IDLE:
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_FIN, LOG_LEVEL_INFO,
		    "keepalive_timeout expired after %u "
		    "sessions, closed", c->sessions);
		break;
	default:
		/* The client neither took the fault nor closed in time. */
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		break;
	}
}

void
conn_accept(struct worker *w, int fd, const struct sockaddr *peer,
    socklen_t peerlen, uint16_t local_port, int proxy)
{
	struct limits *l = w->limits;
	struct conn *c;

	/*
	 * At the limit, the connection idle longest between sessions makes
	 * room (its client, a WCF connection pool, simply dials again) and
	 * hands the newcomer its slot.  Without one, another worker took the
	 * last slot between this one's check and its accept: the newcomer is
	 * refused, and this worker pauses.
	 */
	if (!limits_take(l, w)) {
		if (w->idle_oldest == NULL) {
			if (worker_log_client(w, LOG_LEVEL_INFO))
				log_info("max_connections (%u) reached, new "
				    "connection reset", l->max_connections);
			stat_add(&w->stats.refused, 1);
			set_linger_reset(fd);
			close(fd);
			conn_accept_limit_update(w);
			return;
		}
		w->keep_slot = 1;
		conn_finish(w->idle_oldest, OUTCOME_EVICTED, CLOSE_FIN, LOG_LEVEL_INFO,
		    "max_connections (%u) reached, closed the connection idle "
		    "longest between sessions", l->max_connections);
	}
	c = calloc(1, sizeof(*c));
	if (c != NULL && proxy && proxy_attach(c) < 0) {
		free(c);
		c = NULL;
	}
	if (c == NULL) {
		log_warn("out of memory accepting a connection, reset");
		stat_add(&w->stats.refused, 1);
		set_linger_reset(fd);
		close(fd);
		limits_give(l, w);
		return;
	}
	stat_add(&w->stats.accepted, 1);
	c->w = w;
	c->client_fd = fd;
	c->backend_fd = -1;
	c->member = -1;
	if (peerlen > sizeof(c->client_addr))
		peerlen = sizeof(c->client_addr);
	memcpy(&c->client_addr, peer, peerlen);
	c->local_port = local_port;
	preamble_start(&c->pre);
	c->gen = generation_ref(w->gen);
	c->tp = &transport_clear;
	pump_init(&c->up);
	pump_init(&c->down);
	ev_io_init(&c->client_rd, ready_on_io, fd, EV_READ);
	ev_io_init(&c->client_wr, ready_on_io, fd, EV_WRITE);
	ev_io_init(&c->backend_rd, ready_on_io, -1, EV_READ);
	ev_io_init(&c->backend_wr, ready_on_io, -1, EV_WRITE);
	ev_init(&c->deadline, on_deadline);
	c->client_rd.data = c->client_wr.data = c;
	c->backend_rd.data = c->backend_wr.data = c;
	c->deadline.data = c;

	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	c->state = CONN_DRAINING; /* in no list yet */
	conn_set_state(c, proxy ? CONN_PROXY_HEADER : CONN_PREAMBLE);
	conn_session_begin(c);
	deadline_start(c, proxy ? c->gen->cfg->proxy_timeout :
	    c->gen->cfg->preamble_timeout);
	conn_wait(c, EV_READ, 0);
	conn_accept_limit_update(w);
	if (proxy && !proxy_admit(c))
		return; /* not a trusted balancer: reset before any read */

	/*
	 * A full preamble set gives way to the newcomer, counted with it:
	 * the oldest preamble of the source holding the most, so that a
	 * source opening connections faster than the others cannot make
	 * theirs the oldest (pending.c).  The set is the process's: the
	 * worker holding each one chosen sheds it (on its wake, conn_shed).
	 * Each is read once first: in a burst of accepts it may be a client
	 * whose whole preamble already waits, unread, in its socket.
	 */
	limits_over(l, w);
	if (conn_shed_chosen(w, c))
		return; /* the newcomer itself, read once and shed */
	/* With TCP_DEFER_ACCEPT the preamble is usually here already. */
	if (proxy)
		proxy_read(c);
	else
		preamble_read(c);
}

void
conn_close_all(struct worker *w)
{
	while (w->conns != NULL)
		conn_finish(w->conns, OUTCOME_DRAINED, CLOSE_FIN, LOG_LEVEL_DEBUG,
		    "closed by the shutdown");
}

/* A WCF client whose pooled connection closes between sessions dials
 * again for its next one: closing it loses nothing. */
void
conn_close_idle(struct worker *w)
{
	while (w->idle_oldest != NULL)
		conn_finish(w->idle_oldest, OUTCOME_DRAINED, CLOSE_FIN,
		    LOG_LEVEL_DEBUG, "closed between sessions by the shutdown");
}

