/*
 * conn.c - the connection state machine, from accept to close.
 *
 *   PREAMBLE --Via routed--> CONNECTING --> REPLAY --> FORWARDING --> closed
 *      |                         |            |
 *      +--fault--+   +-----------+------------+  (backend refused/timed out)
 *                v   v
 *              FAULTING --> DRAINING --> closed
 *
 * A connection is in the worker's preamble list exactly while its state is
 * PREAMBLE, which is what max_pending counts.
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
#include "listener.h"
#include "log.h"
#include "routes.h"
#include "via.h"

/* After a fault, read and discard at most this much, for at most this long
 * (SMSvcHost drains 64 KiB for a minute; a proxy need not wait that long). */
#define FAULT_DRAIN_MAX (64u * 1024u)
#define FAULT_DRAIN_SECONDS 2.0

/* How much of a Via a log line shows. */
#define LOG_VIA_MAX 256u

enum close_how {
	CLOSE_FIN,   /* orderly close */
	CLOSE_RESET, /* abort: RST, as SMSvcHost does on a bad preamble */
};

static void conn_close(struct conn *c, enum close_how how);
static void conn_fault(struct conn *c, enum nmf_fault fault);
static void forward_up(struct conn *c);
static void forward_down(struct conn *c);

/* Printable copy of a Via for a log line: control and non-ASCII bytes are
 * escaped, so a hostile Via cannot forge log lines. */
static const char *
via_for_log(const uint8_t *via, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len && o + 8 < outlen; i++) {
		uint8_t ch = via[i];
		if (i == LOG_VIA_MAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
	return out;
}

/* One log line about this connection: who, which Via or route, then what. */
static void __attribute__((format(printf, 3, 4)))
conn_log(struct conn *c, enum log_level level, const char *fmt, ...)
{
	char peer[ADDR_TEXT_MAX], via[LOG_VIA_MAX * 4 + 8], what[512];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	addr_format(&c->client_addr.sa, peer, sizeof(peer));
	if (c->route != NULL)
		log_msg(level, "client %s route [%s]: %s", peer, c->route->name, what);
	else if (c->preamble != NULL && c->via_len > 0)
		log_msg(level, "client %s via '%s': %s", peer,
		    via_for_log(c->preamble + c->via_off, c->via_len, via, sizeof(via)),
		    what);
	else
		log_msg(level, "client %s: %s", peer, what);
}

static void
deadline_start(struct conn *c, double seconds)
{
	ev_timer_stop(c->w->loop, &c->deadline);
	ev_timer_set(&c->deadline, seconds, 0.);
	ev_timer_start(c->w->loop, &c->deadline);
}

static void
pending_unlink(struct conn *c)
{
	struct worker *w = c->w;

	if (c->pending_prev != NULL)
		c->pending_prev->pending_next = c->pending_next;
	else
		w->pending_oldest = c->pending_next;
	if (c->pending_next != NULL)
		c->pending_next->pending_prev = c->pending_prev;
	else
		w->pending_newest = c->pending_prev;
	c->pending_prev = c->pending_next = NULL;
	w->npending--;
}

static void
pending_append(struct conn *c)
{
	struct worker *w = c->w;

	c->pending_prev = w->pending_newest;
	c->pending_next = NULL;
	if (w->pending_newest != NULL)
		w->pending_newest->pending_next = c;
	else
		w->pending_oldest = c;
	w->pending_newest = c;
	w->npending++;
}

/* Every state change goes through here, so the preamble list always holds
 * exactly the connections in PREAMBLE. */
static void
conn_set_state(struct conn *c, enum conn_state state)
{
	if (c->state == CONN_PREAMBLE && state != CONN_PREAMBLE)
		pending_unlink(c);
	c->state = state;
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

static void
conn_close(struct conn *c, enum close_how how)
{
	struct worker *w = c->w;

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
	free(c->preamble);
	if (c->routes != NULL)
		routes_unref(c->routes);
	free(c);

	if (w->nconns < w->cfg->max_connections)
		listeners_resume(w, ACCEPT_PAUSE_LIMIT);
}

/* ------------------------------------------------------------ faults */

static void
fault_write(struct conn *c)
{
	ssize_t n;

	n = send(c->client_fd, c->fault + c->fault_off, c->fault_len - c->fault_off,
	    MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			ev_io_start(c->w->loop, &c->client_wr);
			return;
		}
		conn_log(c, LOG_LEVEL_DEBUG, "fault not delivered: %s", strerror(errno));
		conn_close(c, CLOSE_RESET);
		return;
	}
	c->fault_off += (size_t)n;
	if (c->fault_off < c->fault_len) {
		ev_io_start(c->w->loop, &c->client_wr);
		return;
	}
	/* The fault is out: half-close, then drain so the client reads the
	 * fault instead of a reset that would discard it. */
	ev_io_stop(c->w->loop, &c->client_wr);
	if (shutdown(c->client_fd, SHUT_WR) < 0) {
		conn_close(c, CLOSE_RESET);
		return;
	}
	conn_set_state(c, CONN_DRAINING);
	ev_io_start(c->w->loop, &c->client_rd);
}

static void
drain_read(struct conn *c)
{
	char sink[4096];
	ssize_t n;

	n = recv(c->client_fd, sink, sizeof(sink), 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_close(c, CLOSE_RESET);
		return;
	}
	if (n == 0) {
		conn_close(c, CLOSE_FIN);
		return;
	}
	c->drained += (size_t)n;
	if (c->drained > FAULT_DRAIN_MAX) {
		conn_log(c, LOG_LEVEL_DEBUG, "still sending after the fault, reset");
		conn_close(c, CLOSE_RESET);
	}
}

/* Send a Fault record, then FIN, drain, close. */
static void
conn_fault(struct conn *c, enum nmf_fault fault)
{
	stop_watchers(c);
	close_backend(c);
	conn_set_state(c, CONN_FAULTING);
	c->fault = nmf_fault_record(fault, &c->fault_len);
	c->fault_off = 0;
	deadline_start(c, FAULT_DRAIN_SECONDS);
	fault_write(c);
}

/* ------------------------------------------------------------ backend */

static void
forward_start(struct conn *c)
{
	c->up.total = c->preamble_len; /* the replay counts as forwarded */
	free(c->preamble);
	c->preamble = NULL;
	ev_timer_stop(c->w->loop, &c->deadline);
	ev_io_stop(c->w->loop, &c->backend_wr);
	conn_set_state(c, CONN_FORWARDING);
	conn_log(c, LOG_LEVEL_DEBUG, "forwarding to %s", c->route->backend_text);
	ev_io_start(c->w->loop, &c->client_rd);
	ev_io_start(c->w->loop, &c->backend_rd);
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
			conn_log(c, LOG_LEVEL_NOTICE,
			    "backend %s failed during replay (%s), sent EndpointUnavailable",
			    c->route->backend_text, strerror(errno));
			conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE);
			return;
		}
		c->replay_off += (size_t)n;
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
		conn_log(c, LOG_LEVEL_NOTICE,
		    "backend %s: connect: %s, sent EndpointUnavailable",
		    c->route->backend_text, strerror(err));
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE);
		return;
	}
	conn_set_state(c, CONN_REPLAY);
	replay_write(c);
}

static void
backend_connect(struct conn *c)
{
	const struct addr *backend = &c->route->backend;
	int one = 1;
	int fd;

	fd = socket(backend->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_log(c, LOG_LEVEL_WARNING, "cannot create backend socket: %s, "
		    "sent EndpointUnavailable", strerror(errno));
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE);
		return;
	}
	/* WCF sets NoDelay on its own sockets; Nagle here would hold back the
	 * small framing records it writes. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->backend_fd = fd;
	ev_io_set(&c->backend_rd, fd, EV_READ);
	ev_io_set(&c->backend_wr, fd, EV_WRITE);

	/* Hold the client's further bytes in its socket until the replay is
	 * out; they follow by splice. */
	ev_io_stop(c->w->loop, &c->client_rd);
	conn_set_state(c, CONN_CONNECTING);
	deadline_start(c, c->w->cfg->connect_timeout);
	if (connect(fd, (const struct sockaddr *)&backend->ss, backend->len) == 0) {
		conn_set_state(c, CONN_REPLAY);
		replay_write(c);
	} else if (errno == EINPROGRESS) {
		ev_io_start(c->w->loop, &c->backend_wr);
	} else {
		conn_log(c, LOG_LEVEL_NOTICE,
		    "backend %s: connect: %s, sent EndpointUnavailable",
		    c->route->backend_text, strerror(errno));
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE);
	}
}

/* ------------------------------------------------------------ preamble */

static void
route_via(struct conn *c)
{
	struct via via;
	const char *why;
	const struct route *route;

	if (via_parse((const char *)c->preamble + c->via_off, c->via_len, 0, &via,
	    &why) < 0) {
		conn_log(c, LOG_LEVEL_NOTICE, "malformed Via (%s), reset", why);
		conn_close(c, CLOSE_RESET);
		return;
	}
	route = routes_lookup(c->w->routes, &via, c->local_port);
	if (route == NULL) {
		conn_log(c, LOG_LEVEL_NOTICE, "no route, sent EndpointNotFound");
		conn_fault(c, NMF_FAULT_ENDPOINT_NOT_FOUND);
		return;
	}
	c->routes = routes_ref(c->w->routes);
	c->route = route;
	backend_connect(c);
}

static void
preamble_read(struct conn *c)
{
	struct nmf_record rec;
	ssize_t n;
	int status;

	if (c->preamble == NULL && (c->preamble = malloc(NMF_PREAMBLE_MAX)) == NULL) {
		conn_log(c, LOG_LEVEL_WARNING, "out of memory, reset");
		conn_close(c, CLOSE_RESET);
		return;
	}
	n = recv(c->client_fd, c->preamble + c->preamble_len,
	    NMF_PREAMBLE_MAX - c->preamble_len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_log(c, LOG_LEVEL_NOTICE, "read error in preamble (%s), closed",
		    strerror(errno));
		conn_close(c, CLOSE_RESET);
		return;
	}
	if (n == 0) {
		/* A port probe that sends nothing is not worth a notice. */
		conn_log(c, c->preamble_len == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_NOTICE,
		    "end of stream after %zu preamble bytes, closed", c->preamble_len);
		conn_close(c, CLOSE_FIN);
		return;
	}
	c->preamble_len += (size_t)n;

	for (;;) {
		status = nmf_parse(&c->parser, c->preamble, c->preamble_len, &rec);
		if (status == NMF_RECORD && rec.type == NMF_REC_VIA) {
			c->via_off = rec.str_off;
			c->via_len = rec.str_len;
			route_via(c);
			return;
		}
		if (status != NMF_RECORD)
			break;
	}
	switch (status) {
	case NMF_NEED_MORE:
		/* The Via ends well inside NMF_PREAMBLE_MAX, so a full buffer
		 * cannot be waiting for it. */
		break;
	case NMF_ERR_VERSION:
		conn_log(c, LOG_LEVEL_NOTICE, "unsupported framing version, sent UnsupportedVersion");
		conn_fault(c, NMF_FAULT_UNSUPPORTED_VERSION);
		break;
	case NMF_ERR_MODE:
		conn_log(c, LOG_LEVEL_NOTICE, "unsupported framing mode, sent UnsupportedMode");
		conn_fault(c, NMF_FAULT_UNSUPPORTED_MODE);
		break;
	default:
		conn_log(c, LOG_LEVEL_NOTICE, "malformed preamble (%s) at byte %zu, reset",
		    nmf_strerror(status), c->parser.pos);
		conn_close(c, CLOSE_RESET);
		break;
	}
}

/* ------------------------------------------------------------ forwarding */

/* Run one direction and wait for what it needs; close once both are done. */
static void
forward(struct conn *c, struct pump *p, int src, int dst, ev_io *src_rd,
    ev_io *dst_wr)
{
	struct ev_loop *loop = c->w->loop;

	switch (pump_run(p, src, dst, c->w->cfg->forward, &c->w->pipes)) {
	case PUMP_WANT_READ:
		ev_io_stop(loop, dst_wr);
		ev_io_start(loop, src_rd);
		break;
	case PUMP_WANT_WRITE:
		ev_io_stop(loop, src_rd);
		ev_io_start(loop, dst_wr);
		break;
	case PUMP_DONE:
		ev_io_stop(loop, src_rd);
		ev_io_stop(loop, dst_wr);
		if (c->up.dst_shut && c->down.dst_shut) {
			conn_log(c, LOG_LEVEL_DEBUG, "closed, %llu bytes up, %llu down",
			    (unsigned long long)c->up.total,
			    (unsigned long long)c->down.total);
			conn_close(c, CLOSE_FIN);
		}
		break;
	case PUMP_ERROR:
		conn_log(c, LOG_LEVEL_INFO, "aborted (%s) after %llu bytes up, %llu down",
		    strerror(errno), (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		conn_close(c, CLOSE_RESET);
		break;
	}
}

static void
forward_up(struct conn *c)
{
	forward(c, &c->up, c->client_fd, c->backend_fd, &c->client_rd, &c->backend_wr);
}

static void
forward_down(struct conn *c)
{
	forward(c, &c->down, c->backend_fd, c->client_fd, &c->backend_rd, &c->client_wr);
}

/* ------------------------------------------------------------ callbacks */

static void
on_client_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
	(void)revents;
	switch (c->state) {
	case CONN_PREAMBLE:
		preamble_read(c);
		break;
	case CONN_FORWARDING:
		forward_up(c);
		break;
	case CONN_DRAINING:
		drain_read(c);
		break;
	default:
		break;
	}
}

static void
on_client_writable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
	(void)revents;
	if (c->state == CONN_FAULTING)
		fault_write(c);
	else if (c->state == CONN_FORWARDING)
		forward_down(c);
}

static void
on_backend_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
	(void)revents;
	if (c->state == CONN_FORWARDING)
		forward_down(c);
}

static void
on_backend_writable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
	(void)revents;
	switch (c->state) {
	case CONN_CONNECTING:
		connect_done(c);
		break;
	case CONN_REPLAY:
		replay_write(c);
		break;
	case CONN_FORWARDING:
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
		conn_log(c, LOG_LEVEL_NOTICE,
		    "preamble_timeout expired after %zu bytes, reset", c->preamble_len);
		conn_close(c, CLOSE_RESET);
		break;
	case CONN_CONNECTING:
	case CONN_REPLAY:
		conn_log(c, LOG_LEVEL_NOTICE,
		    "backend %s: connect_timeout expired, sent EndpointUnavailable",
		    c->route->backend_text);
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE);
		break;
	default:
		/* The client neither took the fault nor closed in time. */
		conn_close(c, CLOSE_RESET);
		break;
	}
}

/* ------------------------------------------------------------ lifecycle */

void
conn_accept(struct worker *w, int fd, const struct sockaddr *peer,
    socklen_t peerlen, uint16_t local_port)
{
	struct conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warn("out of memory accepting a connection, reset");
		set_linger_reset(fd);
		close(fd);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->client_fd = fd;
	c->backend_fd = -1;
	if (peerlen > sizeof(c->client_addr))
		peerlen = sizeof(c->client_addr);
	memcpy(&c->client_addr, peer, peerlen);
	c->local_port = local_port;
	nmf_parser_init(&c->parser);
	pump_init(&c->up);
	pump_init(&c->down);
	ev_io_init(&c->client_rd, on_client_readable, fd, EV_READ);
	ev_io_init(&c->client_wr, on_client_writable, fd, EV_WRITE);
	ev_io_init(&c->backend_rd, on_backend_readable, -1, EV_READ);
	ev_io_init(&c->backend_wr, on_backend_writable, -1, EV_WRITE);
	ev_init(&c->deadline, on_deadline);
	c->client_rd.data = c->client_wr.data = c;
	c->backend_rd.data = c->backend_wr.data = c;
	c->deadline.data = c;

	/* A full preamble set gives way to the newcomer: the oldest is the
	 * one most likely to be a slow or silent client. */
	if (w->npending >= w->cfg->max_pending && w->pending_oldest != NULL) {
		conn_log(w->pending_oldest, LOG_LEVEL_NOTICE,
		    "max_pending (%u) reached, oldest preamble reset", w->cfg->max_pending);
		conn_close(w->pending_oldest, CLOSE_RESET);
	}

	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	c->state = CONN_PREAMBLE;
	pending_append(c);

	deadline_start(c, w->cfg->preamble_timeout);
	ev_io_start(w->loop, &c->client_rd);
	if (w->nconns >= w->cfg->max_connections)
		listeners_pause(w, ACCEPT_PAUSE_LIMIT);
}

void
conn_close_all(struct worker *w)
{
	while (w->conns != NULL)
		conn_close(w->conns, CLOSE_FIN);
}
