/*
 * conn_tls.c - a route that terminates TLS: the Upgrade Response, the
 * server handshake, the rest of the preamble inside TLS, forwarding
 * through OpenSSL, and how the client leaves its TLS stream after a
 * session.
 */
#include "conn_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "routes.h"

/* Client bytes that are not framing, logged as the reason for a close. */
static void
tls_fail(struct conn *c, const char *what)
{
	char why[256];

	conn_finish(c, OUTCOME_ABORTED, CLOSE_FIN, LOG_LEVEL_NOTICE,
	    "%s: %s, closed", what, tls_error(why, sizeof(why)));
}

/*
 * Read the decrypted preamble up to Preamble End.  It is appended to the
 * clear-text Version, Mode, Via and Encoding records (the Upgrade Request
 * was dropped), so the buffer ends up holding exactly what the backend, which
 * runs without transport security, must be sent.
 */
void
tls_preamble_read(struct conn *c)
{
	struct nmf_record rec;
	enum tls_step step;
	size_t got;
	int status;

	for (;;) {
		if (c->preamble_len == NMF_PREAMBLE_MAX) {
			conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
			    "no Preamble End inside TLS, reset");
			return;
		}
		if (preamble_reserve(c, c->preamble_len + 1) < 0) {
			conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_WARNING,
			    "out of memory, reset");
			return;
		}
		step = tls_read(c->ssl, c->preamble + c->preamble_len,
		    c->preamble_cap - c->preamble_len, &got);
		if (step == TLS_STEP_ERROR) {
			tls_fail(c, "TLS read failed in the preamble");
			return;
		}
		if (step != TLS_STEP_DONE) {
			conn_wait(c, events_of(step), 0);
			return;
		}
		if (got == 0) {
			conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_NOTICE,
			    "end of stream inside TLS before "
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
			conn_fault(c, NMF_FAULT_UPGRADE_INVALID, LOG_LEVEL_NOTICE,
			    "second upgrade inside TLS");
			return;
		}
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "malformed preamble inside TLS (%s), reset",
		    nmf_strerror(status));
		return;
	}
}

void
tls_handshake(struct conn *c)
{
	enum tls_step step = tls_accept(c->ssl);

	switch (step) {
	case TLS_STEP_DONE:
		stat_add(&c->w->stats.tls_handshakes, 1);
		c->tp = &transport_tls;   /* faults go inside TLS from here on */
		conn_set_state(c, CONN_TLS_PREAMBLE);
		conn_log(c, LOG_LEVEL_DEBUG, "TLS handshake done (%s, %s)",
		    SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
		tls_preamble_read(c);
		break;
	case TLS_STEP_ERROR:
		stat_add(&c->w->stats.tls_failures, 1);
		tls_fail(c, "TLS handshake failed");
		break;
	default:
		conn_wait(c, events_of(step), 0);
		break;
	}
}

/* Answer the Upgrade Request and start the server side of TLS. */
void
tls_start(struct conn *c)
{
	static const uint8_t upgrade_response = NMF_REC_UPGRADE_RESPONSE;
	uint8_t mode = c->pre.parser.mode;

	/* The client sends nothing more until it has the response, so bytes
	 * already here are not a ClientHello we could hand to OpenSSL. */
	if (c->pre.parser.pos != c->preamble_len) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "bytes after the Upgrade Request "
		    "before its response, reset");
		return;
	}
	/* One byte fits: the socket is new, or the client read the last
	 * session's End before it sent this preamble. */
	if (send(c->client_fd, &upgrade_response, 1, MSG_NOSIGNAL) != 1) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "cannot send the Upgrade Response (%s), "
		    "closed", strerror(errno));
		return;
	}
	c->ssl = SSL_new(c->pre.route->tls_ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->client_fd)) {
		stat_add(&c->w->stats.tls_failures, 1);
		tls_fail(c, "cannot start TLS");
		return;
	}
	SSL_set_accept_state(c->ssl);
	c->preamble_len = c->pre.clear_end;
	nmf_parser_init_upgraded(&c->pre.parser, mode);
	conn_set_state(c, CONN_TLS_HANDSHAKE);
	tls_handshake(c);
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
int
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
		conn_wait(c, events_of(step), 0);
		return 0;
	}
	if (step == TLS_STEP_ERROR) {
		tls_fail(c, "TLS read failed after End");
		return -1;
	}
	if (got > 0) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "client sent bytes inside TLS after "
		    "the session's End; reset");
		return -1;
	}
	conn_log(c, LOG_LEVEL_DEBUG, "the client closed its TLS stream after End "
	    "(close_notify), closed");
	c->tp = &transport_tls;   /* so that ours goes out too */
	stop_watchers(c);
	deadline_start(c, FAULT_DRAIN_SECONDS);
	conn_shutdown(c);
	return -1;
}

/*
 * A terminated connection shares one SSL between the two directions, and
 * either may need the client socket readable or writable (a read can have
 * to write, a write to read).  An event runs the direction it is for, and
 * the other one only when that waits for the same event (its SSL call may
 * be what the event answers): running a direction for nothing is a read
 * that finds its socket empty.  The watchers are set to what the two need
 * together.  A followed session ends inside TLS as it does in clear; after
 * both Ends the client's next preamble comes in clear on the raw socket
 * (session_end).
 */
static void
forward_tls(struct conn *c, int run_up, int run_down)
{
	struct tls_wants *up = &c->up_wants, *down = &c->down_wants;
	enum pump_status up_status = c->up_wait, down_status = c->down_wait;
	struct nmf_flow *up_flow = c->following ? &c->up_flow : NULL;
	struct nmf_flow *down_flow = c->following &&
	    c->down_flow.state != NMF_FLOW_OPAQUE ? &c->down_flow : NULL;
	char why[256];
	uint64_t before = c->up.total + c->down.total;

	if (run_up)
		up_status = tls_pump_up(&c->up, c->ssl, c->backend_fd, up_flow, up);
	backend_client_spoke(c);
	if (up_status == PUMP_ERROR)
		down_status = PUMP_ERROR;
	else if (run_down)
		down_status = tls_pump_down(&c->down, c->ssl, c->client_fd,
		    c->backend_fd, down_flow, down);
	c->up_wait = up_status;
	c->down_wait = down_status;
	if (up_status == PUMP_ERROR || down_status == PUMP_ERROR) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_INFO,
		    "aborted (%s) after %llu bytes up, %llu down",
		    tls_error(why, sizeof(why)), (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		return;
	}
	if (up_status == PUMP_DONE && down_status == PUMP_DONE) {
		conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_DEBUG,
		    "closed, %llu bytes up, %llu down",
		    (unsigned long long)c->up.total, (unsigned long long)c->down.total);
		return;
	}
	if (up_status == PUMP_ENDED && c->up_flow.state == NMF_FLOW_OPAQUE) {
		client_out_of_place(c);
		return;
	}
	if (up_status == PUMP_ENDED && (c->up.held > 0 || SSL_pending(c->ssl) > 0)) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "client sent bytes after its End "
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
	conn_wait(c, up->client | down->client, up->backend | down->backend);
	session_check(c);
}

/* Forwarding begins (OpenSSL may hold decrypted bytes already). */
static void
forward_tls_start(struct conn *c)
{
	forward_tls(c, 1, 1);
}

/* A direction still in the session that waits for nothing has not run
 * since forwarding began (the service answered first): it must. */
static int
not_run(const struct tls_wants *w, enum pump_status status)
{
	return w->client == 0 && w->backend == 0 &&
	    (status == PUMP_WANT_READ || status == PUMP_WANT_WRITE);
}

/* The client readable or the backend writable: up's events, and down's
 * when its SSL_write waits to read. */
static void
forward_tls_up(struct conn *c)
{
	forward_tls(c, 1, (c->down_wants.client & EV_READ) ||
	    not_run(&c->down_wants, c->down_wait));
}

/* The backend readable or the client writable: down's events, and up's
 * when its SSL_read waits to write. */
static void
forward_tls_down(struct conn *c)
{
	forward_tls(c, (c->up_wants.client & EV_WRITE) ||
	    not_run(&c->up_wants, c->up_wait), 1);
}


/* ------------------------------------------------ the TLS transport */

static ssize_t
tls_send(struct conn *c, const void *buf, size_t len, int *events)
{
	char why[256];
	size_t put;
	enum tls_step step = tls_write(c->ssl, buf, len, &put);

	*events = 0;
	if (step == TLS_STEP_ERROR) {
		conn_log(c, LOG_LEVEL_DEBUG, "cannot write to the client inside "
		    "TLS: %s", tls_error(why, sizeof(why)));
		return -1;
	}
	if (step != TLS_STEP_DONE)
		*events = events_of(step);
	return (ssize_t)put;
}

static int
tls_shutdown(struct conn *c)
{
	tls_close_notify(c->ssl);
	return shutdown(c->client_fd, SHUT_WR);
}

/*
 * No close_notify: it would land where the client's next preamble is
 * read, and WCF sends none either.  The SSL is kept until the client's
 * next byte says how it left (tls_after_end); a fault for its next
 * preamble goes out in clear.
 */
static void
tls_session_over(struct conn *c)
{
	c->tp = &transport_clear;
	c->pre.clear_end = 0;
	c->tls_left = 1;
}

const struct transport transport_tls = {
	.forward_start = forward_tls_start,
	.forward_up = forward_tls_up,
	.forward_down = forward_tls_down,
	.send = tls_send,
	.shutdown = tls_shutdown,
	.session_over = tls_session_over,
	.next_preamble_follows = 0,
};
