/*
 * conn.c - the connection state machine, from accept to close.
 *
 *          +--------------------------- IDLE <-----------------+
 *          v                     (pooled backend)               | End both ways
 *   PREAMBLE --Preamble End--> CONNECTING --> REPLAY --> FORWARDING --> closed
 *      |    \                     ^  |          |
 *      |     UPGRADE --> TLS_HANDSHAKE --> TLS_PREAMBLE   (tls = terminate)
 *      |        |                    |  |          |
 *      +--fault-+--+   +-------------+--+----------+  (backend refused/timed out)
 *                  v   v
 *                FAULTING --> DRAINING --> closed
 *
 * The Via picks the route (or the EndpointNotFound fault) as soon as it
 * arrives; the backend is dialled once the preamble is complete, so the
 * replay is the whole preamble.  A session without an upgrade, or inside
 * the TLS a route terminates (duplex or singleton), is followed from its
 * first byte to its End records: then the backend connection goes to the
 * worker's pool for the next session to that backend, and the client
 * connection waits (IDLE) for its own next preamble, in clear, routed
 * afresh.  No byte of the client's that the follower
 * cannot place reaches a service.
 *
 * A connection is in the worker's preamble list exactly while it is in one
 * of the states before CONNECTING: that is what max_pending counts, and what
 * preamble_timeout limits.  It is in the idle list exactly while IDLE: the
 * oldest gives way at max_connections.
 */
#include "conn.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "bpool.h"
#include "decide.h"
#include "listener.h"
#include "log.h"
#include "routes.h"
#include "tls.h"

/* After a fault, read and discard at most this much, for at most this long
 * (SMSvcHost drains 64 KiB for a minute; a proxy need not wait that long). */
#define FAULT_DRAIN_MAX (64u * 1024u)
#define FAULT_DRAIN_SECONDS 2.0

/* How much of a Via or other client text a log line shows. */
#define LOG_TEXT_MAX 256u

enum close_how {
	CLOSE_FIN,   /* orderly close */
	CLOSE_RESET, /* abort: RST, as SMSvcHost does on a bad preamble */
};

static void conn_finish(struct conn *c, enum conn_outcome outcome,
    enum close_how how, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void conn_fault(struct conn *c, enum nmf_fault fault, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void forward_tls(struct conn *c);

/* One log line about this connection: who, which Via or route, then what. */
static void
conn_vlog(struct conn *c, enum log_level level, const char *fmt, va_list ap)
{
	char peer[ADDR_TEXT_MAX], via[LOG_TEXT_MAX * 4 + 8], what[512];

	if (!log_enabled(level))
		return;
	vsnprintf(what, sizeof(what), fmt, ap);
	addr_format(&c->client_addr.sa, peer, sizeof(peer));
	if (c->pre.route != NULL && c->preamble != NULL && c->pre.via_len > 0)
		log_msg(level, "client %s via '%s' route [%s]: %s", peer,
		    log_printable(c->preamble + c->pre.via_off, c->pre.via_len,
		    LOG_TEXT_MAX, via, sizeof(via)), c->pre.route->name, what);
	else if (c->pre.route != NULL)
		log_msg(level, "client %s route [%s]: %s", peer, c->pre.route->name, what);
	else if (c->preamble != NULL && c->pre.via_len > 0)
		log_msg(level, "client %s via '%s': %s", peer,
		    log_printable(c->preamble + c->pre.via_off, c->pre.via_len,
		    LOG_TEXT_MAX, via, sizeof(via)),
		    what);
	else
		log_msg(level, "client %s: %s", peer, what);
}

static void __attribute__((format(printf, 3, 4)))
conn_log(struct conn *c, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_vlog(c, level, fmt, ap);
	va_end(ap);
}

static void
deadline_start(struct conn *c, double seconds)
{
	ev_timer_stop(c->w->loop, &c->deadline);
	ev_timer_set(&c->deadline, seconds, 0.);
	ev_timer_start(c->w->loop, &c->deadline);
}

/* The worker keeps two lists of its connections, oldest first: those in
 * their preamble (max_pending) and those between sessions (max_connections
 * closes the oldest of these to serve a newcomer). */
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

/* Accept while below max_connections, or while a connection idle between
 * sessions can give way to the newcomer. */
static void
accept_limit_update(struct worker *w)
{
	if (w->nconns >= w->max_connections && w->nidle == 0)
		listeners_pause(w, ACCEPT_PAUSE_LIMIT);
	else
		listeners_resume(w, ACCEPT_PAUSE_LIMIT);
}

static int
in_preamble(enum conn_state state)
{
	return state == CONN_PREAMBLE || state == CONN_TLS_HANDSHAKE ||
	    state == CONN_TLS_PREAMBLE;
}

/* Every state change goes through here, so the preamble list always holds
 * exactly the connections still in their preamble. */
static void
conn_set_state(struct conn *c, enum conn_state state)
{
	struct worker *w = c->w;

	if (in_preamble(c->state) && !in_preamble(state))
		LIST_UNLINK(c, w, pending_prev, pending_next, pending_oldest,
		    pending_newest, npending);
	else if (!in_preamble(c->state) && in_preamble(state))
		LIST_APPEND(c, w, pending_prev, pending_next, pending_oldest,
		    pending_newest, npending);
	if (c->state == CONN_IDLE && state != CONN_IDLE) {
		LIST_UNLINK(c, w, idle_prev, idle_next, idle_oldest, idle_newest,
		    nidle);
		accept_limit_update(w);
	} else if (c->state != CONN_IDLE && state == CONN_IDLE) {
		LIST_APPEND(c, w, idle_prev, idle_next, idle_oldest, idle_newest,
		    nidle);
		accept_limit_update(w);
	}
	c->state = state;
}

/* Wait for exactly these events on the client socket. */
static void
watch_client(struct conn *c, int events)
{
	struct ev_loop *loop = c->w->loop;

	if (events & EV_READ)
		ev_io_start(loop, &c->client_rd);
	else
		ev_io_stop(loop, &c->client_rd);
	if (events & EV_WRITE)
		ev_io_start(loop, &c->client_wr);
	else
		ev_io_stop(loop, &c->client_wr);
}

static int
events_of(enum tls_step step)
{
	return step == TLS_STEP_WANT_WRITE ? EV_WRITE : EV_READ;
}

static void
stop_watchers(struct conn *c)
{
	struct ev_loop *loop = c->w->loop;

	ev_io_stop(loop, &c->client_rd);
	ev_io_stop(loop, &c->client_wr);
	ev_io_stop(loop, &c->backend_rd);
	ev_io_stop(loop, &c->backend_wr);
	ev_timer_stop(loop, &c->deadline);
}

static void
set_linger_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void
close_backend(struct conn *c)
{
	if (c->backend_fd < 0)
		return;
	ev_io_stop(c->w->loop, &c->backend_rd);
	ev_io_stop(c->w->loop, &c->backend_wr);
	close(c->backend_fd);
	c->backend_fd = -1;
}

/*
 * The one way out of a connection: say why (fmt NULL: it was said when the
 * outcome was decided, as for a fault), then close both sides and give
 * back what the connection holds.
 */
static void __attribute__((format(printf, 5, 6)))
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
	stop_watchers(c);
	conn_set_state(c, CONN_DRAINING); /* leaves the preamble list */
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	w->nconns--;

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
	if (c->routes != NULL)
		routes_unref(c->routes);
	free(c);

	accept_limit_update(w);
}

/* ------------------------------------------------------------ faults */

/* Write some of the fault, in clear or inside TLS; -1 on failure, else 0
 * with *events set to what to wait for (0 once all of it is out). */
static int
fault_send(struct conn *c, int *events)
{
	const uint8_t *rest = c->fault + c->fault_off;
	size_t len = c->fault_len - c->fault_off;
	char why[256];

	*events = 0;
	if (c->tls_ready) {
		size_t put;
		enum tls_step step = tls_write(c->ssl, rest, len, &put);

		if (step == TLS_STEP_ERROR) {
			conn_log(c, LOG_LEVEL_DEBUG, "fault not delivered: %s",
			    tls_error(why, sizeof(why)));
			return -1;
		}
		c->fault_off += put;
		if (step != TLS_STEP_DONE)
			*events = events_of(step);
	} else {
		ssize_t n = send(c->client_fd, rest, len, MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_log(c, LOG_LEVEL_DEBUG, "fault not delivered: %s",
			    strerror(errno));
			return -1;
		}
		if (n > 0)
			c->fault_off += (size_t)n;
		if (n < 0)
			*events = EV_WRITE;
	}
	if (*events == 0 && c->fault_off < c->fault_len)
		*events = EV_WRITE;
	return 0;
}

/*
 * Half-close, then drain until the client's FIN (for at most the deadline
 * and FAULT_DRAIN_MAX bytes): closing with unread bytes would reset the
 * connection and discard what the client has yet to read.
 */
static void
conn_shutdown(struct conn *c)
{
	if (c->tls_ready)
		tls_close_notify(c->ssl);
	ev_io_stop(c->w->loop, &c->client_wr);
	if (shutdown(c->client_fd, SHUT_WR) < 0) {
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	conn_set_state(c, CONN_DRAINING);
	ev_io_start(c->w->loop, &c->client_rd);
}

static void
fault_write(struct conn *c)
{
	int events;

	if (fault_send(c, &events) < 0) {
		conn_finish(c, OUTCOME_FAULTED, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	if (events != 0) {
		watch_client(c, events);
		return;
	}
	/* The fault is out: the client reads it instead of a reset that
	 * would discard it. */
	conn_shutdown(c);
}

static void
drain_read(struct conn *c)
{
	char sink[4096];
	ssize_t n;

	n = recv(c->client_fd, sink, sizeof(sink), 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	if (n == 0) {
		conn_finish(c, c->outcome, CLOSE_FIN, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	c->drained += (size_t)n;
	if (c->drained > FAULT_DRAIN_MAX) {
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG,
		    "still sending after our FIN, reset");
	}
}

/* Say why, send a Fault record, then FIN, drain, close. */
static void
conn_fault(struct conn *c, enum nmf_fault fault, enum log_level level,
    const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	conn_log(c, level, "%s, sent %s", why, nmf_fault_name(fault));
	c->outcome = OUTCOME_FAULTED;
	stop_watchers(c);
	close_backend(c);
	conn_set_state(c, CONN_FAULTING);
	c->fault = nmf_fault_record(fault, &c->fault_len);
	c->fault_off = 0;
	deadline_start(c, FAULT_DRAIN_SECONDS);
	fault_write(c);
}

/* ------------------------------------------------------------ backend */

/* Forwarding made progress: push the idle deadline back, if there is one. */
static void
idle_touch(struct conn *c)
{
	if (c->w->cfg->idle_timeout > 0)
		ev_timer_again(c->w->loop, &c->deadline);
}

/* From here on the deadline is the idle timer (ev_timer_again). */
static void
idle_start(struct conn *c)
{
	ev_timer_stop(c->w->loop, &c->deadline);
	c->deadline.repeat = c->w->cfg->idle_timeout;
	idle_touch(c);
}

static void
forward_start(struct conn *c)
{
	c->up.total = c->preamble_len; /* the replay counts as forwarded */
	ev_io_stop(c->w->loop, &c->backend_wr);
	conn_set_state(c, CONN_FORWARDING);
	conn_log(c, LOG_LEVEL_DEBUG, "forwarding to %s%s", c->pre.route->backend_text,
	    c->unanswered ? " on a pooled connection" : "");
	if (c->unanswered) {
		/* Keep the preamble for a redial, and the client's further
		 * bytes in its socket, until the service answers. */
		deadline_start(c, c->w->cfg->connect_timeout);
		ev_io_start(c->w->loop, &c->backend_rd);
		return;
	}
	free(c->preamble);
	c->preamble = NULL;
	idle_start(c);
	if (c->ssl != NULL) {
		/* OpenSSL may already hold decrypted bytes the socket will
		 * never signal again. */
		forward_tls(c);
		return;
	}
	ev_io_start(c->w->loop, &c->client_rd);
	ev_io_start(c->w->loop, &c->backend_rd);
}

static void backend_connect(struct conn *c);

/*
 * A pooled connection failed before the service said a word: the service
 * closed it while it was idle, and the close crossed our preamble.  Only
 * the preamble went out on it, and the client waits for the answer, so a
 * new connection given the same bytes serves the client just the same.
 */
static void
backend_redial(struct conn *c, const char *why)
{
	conn_log(c, LOG_LEVEL_DEBUG, "pooled connection to %s %s, redialling",
	    c->pre.route->backend_text, why);
	close_backend(c);
	pump_release(&c->down, &c->w->pipes);
	pump_init(&c->down);
	nmf_flow_init(&c->down_flow, NMF_FLOW_DOWN);
	c->unanswered = 0;
	c->replay_off = 0;
	backend_connect(c);
}

/*
 * Before forwarding the first answer of a pooled connection, look whether
 * it is one: 1 if bytes wait, 0 if nothing yet, -1 if the connection had
 * died and was redialled.
 */
static int
backend_answered(struct conn *c)
{
	uint8_t byte;
	ssize_t n = recv(c->backend_fd, &byte, 1, MSG_PEEK);
	char why[64];

	if (n > 0 && byte != NMF_REC_PREAMBLE_ACK && byte != NMF_REC_FAULT) {
		/* Not an answer to this preamble: bytes the service sent after
		 * the last session's End.  They are nobody's to read. */
		snprintf(why, sizeof(why), "sent 0x%02x before answering", byte);
		backend_redial(c, why);
		return -1;
	}
	if (n > 0) {
		c->unanswered = 0;
		free(c->preamble);
		c->preamble = NULL;
		idle_start(c);
		ev_io_start(c->w->loop, &c->client_rd);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	backend_redial(c, n == 0 ? "was closed" : strerror(errno));
	return -1;
}

/* Write the client's bytes to the backend, exactly as they were read,
 * before any other byte: splice() must not overtake them. */
static void
replay_write(struct conn *c)
{
	ssize_t n;

	while (c->replay_off < c->preamble_len) {
		n = send(c->backend_fd, c->preamble + c->replay_off,
		    c->preamble_len - c->replay_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				ev_io_start(c->w->loop, &c->backend_wr);
				return;
			}
			if (c->unanswered) {
				backend_redial(c, strerror(errno));
				return;
			}
			/* Before the first byte went out, a send error is
			 * the connect's own (ECONNREFUSED, ...). */
			conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_NOTICE,
			    "backend %s: %s: %s", c->pre.route->backend_text,
			    c->state == CONN_CONNECTING ? "connect" : "replay",
			    strerror(errno));
			return;
		}
		c->replay_off += (size_t)n;
		conn_set_state(c, CONN_REPLAY);
	}
	forward_start(c);
}

static void
connect_done(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->backend_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_NOTICE,
		    "backend %s: connect: %s",
		    c->pre.route->backend_text, strerror(err));
		return;
	}
	replay_write(c);
}

/* Make fd the backend socket; the client's further bytes stay in its
 * socket until the replay is out. */
static void
backend_attach(struct conn *c, int fd, enum conn_state state)
{
	c->backend_fd = fd;
	ev_io_set(&c->backend_rd, fd, EV_READ);
	ev_io_set(&c->backend_wr, fd, EV_WRITE);
	watch_client(c, 0);
	conn_set_state(c, state);
	deadline_start(c, c->w->cfg->connect_timeout);
}

static void
backend_connect(struct conn *c)
{
	const struct addr *backend = &c->pre.route->backend;
	int one = 1;
	int fd;

	fd = socket(backend->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_WARNING, "cannot create backend socket: %s", strerror(errno));
		return;
	}
	/* WCF sets NoDelay on its own sockets; Nagle here would hold back the
	 * small framing records it writes. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	backend_attach(c, fd, CONN_CONNECTING);
	/*
	 * On loopback the handshake is usually over before connect() returns
	 * EINPROGRESS, so the replay is tried at once; while the connect is
	 * still under way send() says EAGAIN and the writable socket resumes
	 * it (connect_done).
	 */
	if (connect(fd, (const struct sockaddr *)&backend->ss, backend->len) == 0 ||
	    errno == EINPROGRESS) {
		replay_write(c);
	} else {
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_NOTICE,
		    "backend %s: connect: %s",
		    c->pre.route->backend_text, strerror(errno));
	}
}

/*
 * Bytes the client sent after Preamble End without waiting for the Ack
 * (legal framing) are the session's first: the follower reads them, the
 * replay carries those that belong to the session, and anything after the
 * client's End is held for the next preamble.  Inside TLS the parser read
 * from clear_end on, and nothing may follow the End there: the next
 * preamble comes in clear.  Returns 0, or -1 when the connection was closed.
 */
static int
follow_early_bytes(struct conn *c)
{
	size_t end = (c->ssl != NULL ? c->pre.clear_end : 0) + c->pre.parser.pos;
	size_t extra = c->preamble_len - end, used, held;

	if (extra == 0)
		return 0;
	used = nmf_flow_feed(&c->up_flow, c->preamble + end, extra);
	if (c->up_flow.state == NMF_FLOW_OPAQUE) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "client sent record 0x%02x, which "
		    "has no place in the session, with its preamble; reset",
		    c->up_flow.bad);
		return -1;
	}
	held = extra - used;
	if (held > 0 && c->ssl != NULL) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "client sent %zu bytes after its End "
		    "inside TLS, with its preamble; reset", held);
		return -1;
	}
	if (held > 0) {
		if ((c->up.buf = malloc(PUMP_COPY_BUFSZ)) == NULL) {
			conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_WARNING, "out of memory, reset");
			return -1;
		}
		memcpy(c->up.buf, c->preamble + end + used, held);
		c->up.buf_off = 0;
		c->up.held = held;
	}
	c->preamble_len = end + used;
	return 0;
}

/*
 * The preamble is complete.  A session nettcpd can read, duplex or
 * singleton (the parser admits no other mode), in clear or inside the TLS
 * it terminates, is followed from its first byte (its framing stays
 * readable to the end) and may take a pooled connection; an upgrade passed
 * to the service is piped as it comes.
 */
static void
backend_start(struct conn *c)
{
	int fd = -1;

	c->following = c->w->cfg->follow_sessions &&
	    c->pre.parser.stage == NMF_STAGE_END;
	if (c->following && c->pre.parser.mode == NMF_MODE_DUPLEX) {
		nmf_flow_init(&c->up_flow, NMF_FLOW_UP);
		nmf_flow_init(&c->down_flow, NMF_FLOW_DOWN);
	} else if (c->following) {
		nmf_flow_init_singleton(&c->up_flow, NMF_FLOW_UP);
		nmf_flow_init_singleton(&c->down_flow, NMF_FLOW_DOWN);
	}
	if (c->following) {
		if (follow_early_bytes(c) < 0)
			return;
		fd = bpool_take(&c->w->backends, &c->pre.route->backend);
	}
	if (fd < 0) {
		backend_connect(c);
		return;
	}
	c->unanswered = 1;
	backend_attach(c, fd, CONN_REPLAY);
	replay_write(c);
}

/* ------------------------------------------------------------ TLS termination */

/* Client bytes that are not framing, logged as the reason for a close. */
static void
tls_fail(struct conn *c, const char *what)
{
	char why[256];

	conn_finish(c, OUTCOME_ABORTED, CLOSE_FIN, LOG_LEVEL_NOTICE, "%s: %s, closed", what, tls_error(why, sizeof(why)));
}

/*
 * Read the decrypted preamble up to Preamble End.  It is appended to the
 * clear-text Version, Mode, Via and Encoding records (the Upgrade Request
 * was dropped), so the buffer ends up holding exactly what the backend, which
 * runs without transport security, must be sent.
 */
static void
tls_preamble_read(struct conn *c)
{
	struct nmf_record rec;
	enum tls_step step;
	size_t got;
	int status;

	for (;;) {
		if (c->preamble_len == NMF_PREAMBLE_MAX) {
			conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "no Preamble End inside TLS, reset");
			return;
		}
		step = tls_read(c->ssl, c->preamble + c->preamble_len,
		    NMF_PREAMBLE_MAX - c->preamble_len, &got);
		if (step == TLS_STEP_ERROR) {
			tls_fail(c, "TLS read failed in the preamble");
			return;
		}
		if (step != TLS_STEP_DONE) {
			watch_client(c, events_of(step));
			return;
		}
		if (got == 0) {
			conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_NOTICE, "end of stream inside TLS before "
			    "Preamble End, closed");
			return;
		}
		c->preamble_len += got;
		status = nmf_parse(&c->pre.parser, c->preamble + c->pre.clear_end,
		    c->preamble_len - c->pre.clear_end, &rec);
		if (status == NMF_NEED_MORE)
			continue;
		if (status == NMF_RECORD && rec.type == NMF_REC_PREAMBLE_END) {
			backend_start(c);
			return;
		}
		if (status == NMF_RECORD) {
			/* A second upgrade inside TLS: nothing to serve it. */
			conn_fault(c, NMF_FAULT_UPGRADE_INVALID, LOG_LEVEL_NOTICE, "second upgrade inside TLS");
			return;
		}
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "malformed preamble inside TLS (%s), reset",
		    nmf_strerror(status));
		return;
	}
}

static void
tls_handshake(struct conn *c)
{
	enum tls_step step = tls_accept(c->ssl);

	switch (step) {
	case TLS_STEP_DONE:
		c->tls_ready = 1;
		conn_set_state(c, CONN_TLS_PREAMBLE);
		conn_log(c, LOG_LEVEL_DEBUG, "TLS handshake done (%s, %s)",
		    SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
		tls_preamble_read(c);
		break;
	case TLS_STEP_ERROR:
		tls_fail(c, "TLS handshake failed");
		break;
	default:
		watch_client(c, events_of(step));
		break;
	}
}

/* Answer the Upgrade Request and start the server side of TLS. */
static void
tls_start(struct conn *c)
{
	static const uint8_t upgrade_response = NMF_REC_UPGRADE_RESPONSE;
	uint8_t mode = c->pre.parser.mode;

	/* The client sends nothing more until it has the response, so bytes
	 * already here are not a ClientHello we could hand to OpenSSL. */
	if (c->pre.parser.pos != c->preamble_len) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "bytes after the Upgrade Request "
		    "before its response, reset");
		return;
	}
	/* One byte fits: the socket is new, or the client read the last
	 * session's End before it sent this preamble. */
	if (send(c->client_fd, &upgrade_response, 1, MSG_NOSIGNAL) != 1) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_NOTICE, "cannot send the Upgrade Response (%s), "
		    "closed", strerror(errno));
		return;
	}
	c->ssl = SSL_new(c->pre.route->tls_ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->client_fd)) {
		tls_fail(c, "cannot start TLS");
		return;
	}
	SSL_set_accept_state(c->ssl);
	c->preamble_len = c->pre.clear_end;
	nmf_parser_init_upgraded(&c->pre.parser, mode);
	conn_set_state(c, CONN_TLS_HANDSHAKE);
	tls_handshake(c);
}

/* ------------------------------------------------------------ preamble */

/* Act on what the preamble read so far decides (decide.c). */
static void
preamble_parse(struct conn *c)
{
	struct verdict v;

	switch (preamble_decide(&c->pre, c->routes, c->local_port, c->preamble,
	    c->preamble_len, &v)) {
	case DECIDE_MORE:
		break;
	case DECIDE_FORWARD:
		backend_start(c);
		break;
	case DECIDE_UPGRADE:
		tls_start(c);
		break;
	case DECIDE_FAULT:
		conn_fault(c, v.fault, LOG_LEVEL_NOTICE, "%s", v.why);
		break;
	case DECIDE_RESET:
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "%s, reset", v.why);
		break;
	}
}

/*
 * The first byte after a session inside TLS says how the client left its
 * TLS stream: a preamble in clear (WCF, pooling the connection), or a TLS
 * record, which must be its close_notify (TLS 1.3 encrypts the alert's
 * type, so the record is read to tell), when it ends the connection the
 * TLS way; that gets ours and a FIN.  Anything else inside TLS after End
 * is refused.  Returns 1 to read a clear preamble, 0 to wait, -1 when the
 * connection is closing.
 */
static int
tls_after_end(struct conn *c)
{
	enum tls_step step;
	uint8_t byte;
	size_t got;

	if (!c->tls_closing) {
		if (recv(c->client_fd, &byte, 1, MSG_PEEK) != 1)
			return 1; /* nothing yet, or the end: recv() says which */
		if (byte < TLS_RECORD_FIRST || byte > TLS_RECORD_LAST) {
			SSL_free(c->ssl);
			c->ssl = NULL;
			c->tls_left = 0;
			conn_log(c, LOG_LEVEL_DEBUG, "the client left its TLS stream "
			    "after End, as WCF does when it pools a connection");
			return 1;
		}
		c->tls_closing = 1;
	}
	step = tls_read(c->ssl, &byte, 1, &got);
	if (step == TLS_STEP_WANT_READ || step == TLS_STEP_WANT_WRITE) {
		watch_client(c, events_of(step));
		return 0;
	}
	if (step == TLS_STEP_ERROR) {
		tls_fail(c, "TLS read failed after End");
		return -1;
	}
	if (got > 0) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "client sent bytes inside TLS after "
		    "the session's End; reset");
		return -1;
	}
	conn_log(c, LOG_LEVEL_DEBUG, "the client closed its TLS stream after End "
	    "(close_notify), closed");
	c->tls_ready = 1; /* so that ours goes out too */
	stop_watchers(c);
	deadline_start(c, FAULT_DRAIN_SECONDS);
	conn_shutdown(c);
	return -1;
}

static void
preamble_read(struct conn *c)
{
	ssize_t n;

	if (c->tls_left && tls_after_end(c) <= 0)
		return;
	if (c->preamble == NULL && (c->preamble = malloc(NMF_PREAMBLE_MAX)) == NULL) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_WARNING, "out of memory, reset");
		return;
	}
	n = recv(c->client_fd, c->preamble + c->preamble_len,
	    NMF_PREAMBLE_MAX - c->preamble_len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		/* A reset before any byte (a scan, a client dropping its
		 * pooled connection) is as unremarkable as a FIN. */
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, c->preamble_len == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_NOTICE,
		    "read error in preamble (%s), closed", strerror(errno));
		return;
	}
	if (n == 0) {
		/* A port probe that sends nothing, or a client closing its
		 * connection between sessions, is not worth a notice. */
		conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, c->preamble_len == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_NOTICE,
		    "end of stream after %zu preamble bytes, closed", c->preamble_len);
		return;
	}
	c->preamble_len += (size_t)n;
	preamble_parse(c);
}

/* ------------------------------------------------------------ forwarding */

/* Wait on whatever a direction that is not done needs next. */
static void
resume(struct conn *c, const struct pump *p, ev_io *src_rd, ev_io *dst_wr)
{
	if (p->dst_shut)
		return;
	ev_io_start(c->w->loop, p->pending > 0 ? dst_wr : src_rd);
}

/* This direction can carry no more of the session: its End is delivered,
 * or its end of stream passed on. */
static int
side_over(const struct pump *p, const struct nmf_flow *flow)
{
	return p->dst_shut || (flow->state == NMF_FLOW_ENDED && p->pending == 0);
}

/*
 * The service left the protocol (a Fault, or a record no session holds):
 * what it sends is its own business and goes to the client unread; the
 * client's side stays followed, so nothing the client sends after its End
 * ever reaches this service.
 */
static void
unfollow_down(struct conn *c)
{
	conn_log(c, LOG_LEVEL_DEBUG, "service sent record 0x%02x out of the "
	    "session; its bytes are passed on unread until the connection closes",
	    c->down_flow.bad);
	pump_unhold(&c->down);
	if (c->ssl != NULL)
		forward_tls(c);
	else
		resume(c, &c->down, &c->backend_rd, &c->client_wr);
}

/*
 * The session is over: both Ends are delivered, or (ended_by_service) the
 * client's End is and the service closed without End, after which the
 * client had already sent its next preamble.  The backend connection goes
 * to the pool, unless the service sent something after its End or ended
 * that way; the client connection waits for its next preamble, of which
 * the bytes it sent after its End are the start.
 */
static void
session_end(struct conn *c, int ended_by_service)
{
	struct worker *w = c->w;
	int fd = c->backend_fd, kept = 0;
	size_t next = c->up.held;

	stop_watchers(c);
	c->backend_fd = -1;
	if (c->down.held == 0 && !ended_by_service)
		kept = bpool_put(&w->backends, &c->pre.route->backend, fd);
	else
		close(fd);
	c->sessions++;
	c->fin_held = 0;
	if (c->ssl != NULL) {
		/* No close_notify: it would land where the client's next
		 * preamble is read, and WCF sends none either.  The SSL is kept
		 * until the client's next byte says how it left (a fault for
		 * its next preamble goes out in clear). */
		c->tls_ready = 0;
		c->pre.clear_end = 0;
		c->tls_left = 1;
	}
	conn_log(c, LOG_LEVEL_DEBUG, "session %u ended after %llu bytes up, %llu "
	    "down; backend connection %s", c->sessions,
	    (unsigned long long)c->up.total, (unsigned long long)c->down.total,
	    kept ? "pooled" : ended_by_service ? "closed (the service ended "
	    "without End; the client's next preamble is routed)" :
	    c->down.held > 0 ? "closed (bytes after its End)" : "closed");
	if (next > NMF_PREAMBLE_MAX ||
	    (next > 0 && (c->preamble = malloc(NMF_PREAMBLE_MAX)) == NULL)) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "%zu bytes after End without waiting "
		    "for the service, reset", next);
		return;
	}
	if (next > 0)
		memcpy(c->preamble, c->up.buf + c->up.buf_off, next);
	c->preamble_len = next;
	pump_release(&c->up, &w->pipes);
	pump_release(&c->down, &w->pipes);
	pump_init(&c->up);
	pump_init(&c->down);
	/* The next session routes with the table new connections get. */
	routes_unref(c->routes);
	c->routes = routes_ref(w->routes);
	preamble_start(&c->pre);
	c->replay_off = 0;
	c->following = 0;
	if (next == 0) {
		/* Between sessions the client's connection is idle, not a
		 * preamble in progress: keepalive_timeout applies, not
		 * max_pending. */
		conn_set_state(c, CONN_IDLE);
		if (w->cfg->keepalive_timeout > 0)
			deadline_start(c, w->cfg->keepalive_timeout);
		ev_io_start(w->loop, &c->client_rd);
		return;
	}
	conn_set_state(c, CONN_PREAMBLE);
	deadline_start(c, w->cfg->preamble_timeout);
	ev_io_start(w->loop, &c->client_rd);
	preamble_parse(c);
}

/* Nothing from here on may reach the service: it is not a session any
 * route let through. */
static void
client_out_of_place(struct conn *c)
{
	conn_finish(c, OUTCOME_CLOSED, CLOSE_RESET, LOG_LEVEL_NOTICE, "client sent record 0x%02x, which has no "
	    "place in the session, after %llu bytes up; reset", c->up_flow.bad,
	    (unsigned long long)c->up.total);
}

/*
 * After either direction of a followed session moved: once both sides are
 * over, the session ends and the connection waits for the next one, or,
 * when a side ended without End, the connection closes.
 */
static void
session_check(struct conn *c)
{
	if (!c->following || !side_over(&c->up, &c->up_flow) ||
	    !side_over(&c->down, &c->down_flow))
		return;
	if (!c->up.dst_shut && !c->down.dst_shut &&
	    c->down_flow.state == NMF_FLOW_ENDED) {
		session_end(c, 0);
		return;
	}
	if (c->fin_held) {
		session_end(c, 1);
		return;
	}
	/* A side ended without End (a FIN, or a service out of the
	 * protocol): the session is over and so is the connection.  What the
	 * client sent after its End is not this service's to see. */
	conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_DEBUG, "session ended by %s after %llu bytes up, "
	    "%llu down; closed%s", c->down.dst_shut ? "the service's end of stream" :
	    c->up.dst_shut ? "the client's end of stream" : "the service",
	    (unsigned long long)c->up.total, (unsigned long long)c->down.total,
	    c->up.held > 0 ? ", the client's next bytes dropped" : "");
}

/* Run one direction and wait for what it needs; close once both are done. */
static void
forward(struct conn *c, struct pump *p, int src, int dst, ev_io *src_rd,
    ev_io *dst_wr)
{
	struct ev_loop *loop = c->w->loop;
	const struct pump *other = p == &c->up ? &c->down : &c->up;
	struct nmf_flow *flow = !c->following ? NULL : p == &c->up ? &c->up_flow :
	    c->down_flow.state == NMF_FLOW_OPAQUE ? NULL : &c->down_flow;
	uint64_t before = p->total;
	/* The client has ended its session and sent its next preamble: the
	 * service's FIN ends this session, not the client's connection, so it
	 * is not passed on. */
	int hold_fin = p == &c->down && c->following &&
	    c->up_flow.state == NMF_FLOW_ENDED && c->up.pending == 0 &&
	    c->up.held > 0 && !c->up.dst_shut &&
	    (c->down_flow.state == NMF_FLOW_RECORD ||
	    c->down_flow.state == NMF_FLOW_OPAQUE);
	enum pump_status status = pump_run(p, src, dst, c->w->cfg->forward,
	    &c->w->pipes, other->dst_shut || hold_fin, flow);

	if (p->total != before)
		idle_touch(c);
	if (status == PUMP_DONE && hold_fin)
		c->fin_held = 1;
	switch (status) {
	case PUMP_WANT_READ:
		ev_io_stop(loop, dst_wr);
		ev_io_start(loop, src_rd);
		break;
	case PUMP_WANT_WRITE:
		ev_io_stop(loop, src_rd);
		ev_io_start(loop, dst_wr);
		break;
	case PUMP_ENDED:
		ev_io_stop(loop, src_rd);
		ev_io_stop(loop, dst_wr);
		if (flow == &c->up_flow && flow->state == NMF_FLOW_OPAQUE) {
			client_out_of_place(c);
			return;
		}
		if (flow == &c->down_flow && flow->state == NMF_FLOW_OPAQUE) {
			unfollow_down(c);
			return;
		}
		break;
	case PUMP_DONE:
		ev_io_stop(loop, src_rd);
		ev_io_stop(loop, dst_wr);
		if (c->up.dst_shut && c->down.dst_shut) {
			conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_DEBUG, "closed, %llu bytes up, %llu down",
			    (unsigned long long)c->up.total,
			    (unsigned long long)c->down.total);
			return;
		}
		break;
	case PUMP_ERROR:
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_INFO, "aborted (%s) after %llu bytes up, %llu down",
		    strerror(errno), (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		return;
	}
	session_check(c);
}

/*
 * A terminated connection shares one SSL between the two directions, and
 * either may need the client socket readable or writable (a read can have
 * to write, a write to read), so any event runs both and the watchers are
 * set to what the two need together.  A followed session ends inside TLS
 * as it does in clear; after both Ends the client's next preamble comes
 * in clear on the raw socket (session_end).
 */
static void
forward_tls(struct conn *c)
{
	struct ev_loop *loop = c->w->loop;
	struct tls_wants up, down;
	enum pump_status up_status, down_status;
	struct nmf_flow *up_flow = c->following ? &c->up_flow : NULL;
	struct nmf_flow *down_flow = c->following &&
	    c->down_flow.state != NMF_FLOW_OPAQUE ? &c->down_flow : NULL;
	char why[256];
	int backend_events;
	uint64_t before = c->up.total + c->down.total;

	up_status = tls_pump_up(&c->up, c->ssl, c->backend_fd, up_flow, &up);
	down_status = up_status == PUMP_ERROR ? PUMP_ERROR :
	    tls_pump_down(&c->down, c->ssl, c->client_fd, c->backend_fd, down_flow,
	    &down);
	if (up_status == PUMP_ERROR || down_status == PUMP_ERROR) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_INFO, "aborted (%s) after %llu bytes up, %llu down",
		    tls_error(why, sizeof(why)), (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		return;
	}
	if (up_status == PUMP_DONE && down_status == PUMP_DONE) {
		conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_DEBUG, "closed, %llu bytes up, %llu down",
		    (unsigned long long)c->up.total, (unsigned long long)c->down.total);
		return;
	}
	if (up_status == PUMP_ENDED && c->up_flow.state == NMF_FLOW_OPAQUE) {
		client_out_of_place(c);
		return;
	}
	if (up_status == PUMP_ENDED && (c->up.held > 0 || SSL_pending(c->ssl) > 0)) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE, "client sent bytes after its End "
		    "inside TLS, after %llu bytes up; reset",
		    (unsigned long long)c->up.total);
		return;
	}
	if (down_status == PUMP_ENDED && c->down_flow.state == NMF_FLOW_OPAQUE) {
		unfollow_down(c);
		return;
	}
	if (c->up.total + c->down.total != before)
		idle_touch(c);
	watch_client(c, up.client | down.client);
	backend_events = up.backend | down.backend;
	if (backend_events & EV_READ)
		ev_io_start(loop, &c->backend_rd);
	else
		ev_io_stop(loop, &c->backend_rd);
	if (backend_events & EV_WRITE)
		ev_io_start(loop, &c->backend_wr);
	else
		ev_io_stop(loop, &c->backend_wr);
	session_check(c);
}

static void
forward_up(struct conn *c)
{
	if (c->ssl != NULL)
		forward_tls(c);
	else
		forward(c, &c->up, c->client_fd, c->backend_fd, &c->client_rd,
		    &c->backend_wr);
}

static void
forward_down(struct conn *c)
{
	if (c->unanswered && backend_answered(c) <= 0)
		return;
	if (c->ssl != NULL)
		forward_tls(c);
	else
		forward(c, &c->down, c->backend_fd, c->client_fd, &c->backend_rd,
		    &c->client_wr);
}

/* ------------------------------------------------------------ callbacks */

/* Both client watchers: what an event means depends on the state. */
static void
on_client_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
	switch (c->state) {
	case CONN_IDLE:
		/* The next session begins: it has a preamble's time. */
		conn_set_state(c, CONN_PREAMBLE);
		deadline_start(c, c->w->cfg->preamble_timeout);
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

/* Both backend watchers. */
static void
on_backend_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
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
	case CONN_PREAMBLE:
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "preamble_timeout expired after %zu bytes, reset", c->preamble_len);
		break;
	case CONN_TLS_HANDSHAKE:
	case CONN_TLS_PREAMBLE:
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_FIN, LOG_LEVEL_NOTICE, "preamble_timeout expired %s, closed",
		    c->state == CONN_TLS_HANDSHAKE ? "in the TLS handshake" :
		    "before Preamble End inside TLS");
		break;
	case CONN_CONNECTING:
	case CONN_REPLAY:
		if (c->unanswered) {
			backend_redial(c, "took no preamble");
			break;
		}
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_NOTICE,
		    "backend %s: connect_timeout expired",
		    c->pre.route->backend_text);
		break;
	case CONN_FORWARDING:
		if (c->unanswered) {
			backend_redial(c, "did not answer the preamble");
			break;
		}
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_FIN, LOG_LEVEL_INFO, "idle_timeout expired after %llu bytes up, "
		    "%llu down, closed", (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		break;
	case CONN_IDLE:
		conn_finish(c, OUTCOME_TIMEOUT, CLOSE_FIN, LOG_LEVEL_INFO, "keepalive_timeout expired after %u "
		    "sessions, closed", c->sessions);
		break;
	default:
		/* The client neither took the fault nor closed in time. */
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		break;
	}
}

/* ------------------------------------------------------------ lifecycle */

void
conn_accept(struct worker *w, int fd, const struct sockaddr *peer,
    socklen_t peerlen, uint16_t local_port)
{
	struct conn *c;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warn("out of memory accepting a connection, reset");
		set_linger_reset(fd);
		close(fd);
		return;
	}
	c->w = w;
	c->client_fd = fd;
	c->backend_fd = -1;
	if (peerlen > sizeof(c->client_addr))
		peerlen = sizeof(c->client_addr);
	memcpy(&c->client_addr, peer, peerlen);
	c->local_port = local_port;
	preamble_start(&c->pre);
	c->routes = routes_ref(w->routes);
	pump_init(&c->up);
	pump_init(&c->down);
	ev_io_init(&c->client_rd, on_client_io, fd, EV_READ);
	ev_io_init(&c->client_wr, on_client_io, fd, EV_WRITE);
	ev_io_init(&c->backend_rd, on_backend_io, -1, EV_READ);
	ev_io_init(&c->backend_wr, on_backend_io, -1, EV_WRITE);
	ev_init(&c->deadline, on_deadline);
	c->client_rd.data = c->client_wr.data = c;
	c->backend_rd.data = c->backend_wr.data = c;
	c->deadline.data = c;

	/*
	 * A full preamble set gives way to the newcomer: the oldest is the
	 * one most likely to be a slow or silent client.  Read it once first:
	 * in a burst of accepts the oldest may be a client whose whole
	 * preamble already waits, unread, in its socket.
	 */
	while (w->npending >= w->max_pending && w->pending_oldest != NULL) {
		struct conn *oldest = w->pending_oldest;
		unsigned before = w->npending;

		on_client_io(w->loop, &oldest->client_rd, EV_READ);
		if (w->npending < before)
			continue; /* routed, faulted or closed: no longer pending */
		conn_finish(oldest, OUTCOME_EVICTED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "max_pending (%u) reached, oldest preamble reset", w->max_pending);
	}

	/* At the limit, the connection idle longest between sessions makes
	 * room: its client, a WCF connection pool, simply dials again. */
	if (w->nconns >= w->max_connections && w->idle_oldest != NULL) {
		conn_finish(w->idle_oldest, OUTCOME_EVICTED, CLOSE_FIN, LOG_LEVEL_INFO, "max_connections (%u) "
		    "reached, closed the connection idle longest between "
		    "sessions", w->max_connections);
	}

	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	c->state = CONN_DRAINING; /* in no list yet */
	conn_set_state(c, CONN_PREAMBLE);

	deadline_start(c, w->cfg->preamble_timeout);
	ev_io_start(w->loop, &c->client_rd);
	accept_limit_update(w);
	/* With TCP_DEFER_ACCEPT the preamble is usually here already. */
	preamble_read(c);
}

void
conn_close_all(struct worker *w)
{
	while (w->conns != NULL)
		conn_finish(w->conns, OUTCOME_DRAINED, CLOSE_FIN, LOG_LEVEL_DEBUG, NULL);
}
