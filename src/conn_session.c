/*
 * conn_session.c - forwarding in clear, each direction following the
 * session to its End; the session's end (the backend connection to the
 * pool, the client's to IDLE) and the routing of the next preamble; and
 * each session's access-log record.
 */
#include "conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "bpool.h"
#include "routes.h"
#include "uring.h"

/* Add what the pumps moved since the last call to the route's counters. */
static void
route_bytes_sync(struct conn *c)
{
	uint32_t up = (uint32_t)c->up.total, down = (uint32_t)c->down.total;

	if (c->rstats == NULL)
		return;
	/* Unsigned: the difference is right across a wrap of the low bits.
	 * A session's totals only grow (a redial happens before the service
	 * sent a byte, and the replay is counted once however often it is
	 * sent). */
	stat_add(&c->rstats->bytes_up, (uint32_t)(up - c->up_counted));
	stat_add(&c->rstats->bytes_down, (uint32_t)(down - c->down_counted));
	c->up_counted = up;
	c->down_counted = down;
}

double
pinned_left(const struct conn *c)
{
	return c->session_start + c->gen->cfg->pinned_timeout - ev_now(c->w->loop);
}

/* Forwarding made progress: push the idle deadline back, if there is one;
 * and count it.  A stream nettcpd does not follow has pinned_timeout from
 * its session's start too, which progress does not push back. */
void
idle_touch(struct conn *c)
{
	const struct config *cfg = c->gen->cfg;
	double left;

	route_bytes_sync(c);
	if (!c->following && cfg->pinned_timeout > 0) {
		left = pinned_left(c);
		if (cfg->idle_timeout > 0 && cfg->idle_timeout < left)
			left = cfg->idle_timeout;
		/* 0 would stop the timer: past the limit, expire at once. */
		c->deadline.repeat = left > 1e-3 ? left : 1e-3;
		ev_timer_again(c->w->loop, &c->deadline);
	} else if (cfg->idle_timeout > 0) {
		ev_timer_again(c->w->loop, &c->deadline);
	}
}

/* From here on the deadline is the idle timer (ev_timer_again). */
void
idle_start(struct conn *c)
{
	ev_timer_stop(c->w->loop, &c->deadline);
	c->deadline.repeat = c->gen->cfg->idle_timeout;
	idle_touch(c);
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
void
unfollow_down(struct conn *c)
{
	/* Except an Ack mid-session, which answers a preamble this session
	 * never sent, and, on a pooled connection, bytes after the Ack before
	 * the client spoke, which answer nothing it asked: both are what a
	 * service sent after an earlier session's End.  The client has had its
	 * Ack and cannot be given a clean connection any more. */
	if (c->down_flow.bad == NMF_REC_PREAMBLE_ACK || c->down_flow.ack_alone) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "service sent %s after %llu bytes down; another session's "
		    "bytes, reset", c->down_flow.ack_alone ? "bytes after its "
		    "Ack before the client's first envelope" : "a second Ack",
		    (unsigned long long)c->down.total);
		return;
	}
	conn_log(c, LOG_LEVEL_DEBUG, "service sent record 0x%02x out of the "
	    "session; its bytes are passed on unread until the connection closes",
	    c->down_flow.bad);
	c->down_unfollowed = 1;
	pump_unhold(&c->down);
	c->tp->forward_down(c);
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
	struct addr client;

	stop_watchers(c);
	/* Both directions stopped reading at their End, so nothing is queued
	 * on the ring; a receive left would take the next owner's bytes. */
	uring_cancel(c);
	c->backend_fd = -1;
	if (c->down.held == 0 && !ended_by_service && !c->pre.route->pool_off)
		kept = bpool_put(&w->backends,
		    &c->pre.route->backends.m[c->member].addr,
		    backend_pool_client(c, &client), fd);
	else
		close(fd);
	conn_session_record(c, OUTCOME_CLOSED);   /* "routed" */
	c->sessions++;
	c->fin_held = 0;
	c->tp->session_over(c);
	conn_log(c, LOG_LEVEL_DEBUG, "session %u ended after %llu bytes up, %llu "
	    "down; backend connection %s", c->sessions,
	    (unsigned long long)c->up.total, (unsigned long long)c->down.total,
	    kept ? "pooled" : ended_by_service ? "closed (the service ended "
	    "without End; the client's next preamble is routed)" :
	    c->down.held > 0 ? "closed (bytes after its End)" : "closed");
	if (next > NMF_PREAMBLE_MAX || (next > 0 && preamble_reserve(c, next) < 0)) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "%zu bytes after End without waiting "
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
	preamble_start(&c->pre);
	c->replay_off = 0;
	c->following = 0;
	if (w->draining) {
		/* The shutdown waited for this session's end. */
		conn_finish(c, OUTCOME_DRAINED, CLOSE_FIN, LOG_LEVEL_DEBUG,
		    "session over, closed by the shutdown");
		return;
	}
	if (next == 0) {
		/* Between sessions the client's connection is idle, not a
		 * preamble in progress: keepalive_timeout applies, not
		 * max_pending. */
		conn_set_state(c, CONN_IDLE);
		if (c->gen->cfg->keepalive_timeout > 0)
			deadline_start(c, c->gen->cfg->keepalive_timeout);
		conn_wait(c, EV_READ, 0);
		return;
	}
	conn_next_session(c);
	conn_wait(c, EV_READ, 0);
	preamble_parse(c);
}

/* Nothing from here on may reach the service: it is not a session any
 * route let through. */
void
client_out_of_place(struct conn *c)
{
	conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
	    "client sent record 0x%02x, which has no "
	    "place in the session, after %llu bytes up; reset", c->up_flow.bad,
	    (unsigned long long)c->up.total);
}

/*
 * After either direction of a followed session moved: once both sides are
 * over, the session ends and the connection waits for the next one, or,
 * when a side ended without End, the connection closes.
 */
void
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
	conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_DEBUG,
	    "session ended by %s after %llu bytes up, "
	    "%llu down; closed%s", c->down.dst_shut ? "the service's end of stream" :
	    c->up.dst_shut ? "the client's end of stream" : "the service",
	    (unsigned long long)c->up.total, (unsigned long long)c->down.total,
	    c->up.held > 0 ? ", the client's next bytes dropped" : "");
}

/*
 * Whether a direction reads its source.  One whose End is delivered reads
 * no more of the session, but keeps its watcher until a wakeup finds
 * bytes there (the next session's, or the end of stream) for it to leave
 * alone (end_woke): usually the session ends first and the watcher goes
 * on unchanged.  A watcher stopped across a poll and started again costs
 * an epoll_ctl that the kernel refuses (libev registers it anew, EEXIST).
 */
static int
reads(enum pump_status wait, const struct nmf_flow *flow, int end_woke)
{
	return wait == PUMP_WANT_READ || (wait == PUMP_ENDED &&
	    flow->state == NMF_FLOW_ENDED && !end_woke) ? EV_READ : 0;
}

/* The forward method in force: forward = uring where the worker has no
 * ring is splice (uring_get said why). */
static enum forward_method
forward_method(struct conn *c)
{
	enum forward_method method = c->gen->cfg->forward;

	return method == FORWARD_URING && uring_get(c->w) == NULL ?
	    FORWARD_SPLICE : method;
}

/* Whether c's receives go through the worker's ring: forward = uring on
 * a clear connection (inside TLS, OpenSSL reads the client's socket and
 * the TLS pump the service's). */
static int
conn_uring(struct conn *c)
{
	return c->tp == &transport_clear && forward_method(c) == FORWARD_URING;
}

/*
 * forward = uring: what a direction needs goes to the ring instead of a
 * watcher: a receive while it wants to read (only then: after its End
 * there is no wakeup to leave alone, reads(), and none is queued), a send
 * while its buffer has bytes to write.  A pipe's bytes (a large envelope
 * is spliced, as splice does) wait for the destination's watcher:
 * EV_WRITE is returned for it.
 */
static int
ring_wait(struct conn *c, struct pump *p, enum pump_status wait,
    const struct nmf_flow *flow, int src, int dst)
{
	/* Never past an End: a session's first wait is for reading even when
	 * the client's End went out with the replay, and what a receive would
	 * take then is the next preamble, not this session's. */
	if (p->stream != NULL)
		uring_stream_wait(c->w, c, p, flow, src, dst);
	else if (wait == PUMP_WANT_READ && !(c->following && flow->state == NMF_FLOW_ENDED))
		uring_read(c->w, c, p, src);
	else if (wait == PUMP_WANT_WRITE && p->pipe[0] >= 0)
		return EV_WRITE;
	else if (wait == PUMP_WANT_WRITE)
		uring_write(c->w, c, p, dst);
	return 0;
}

/*
 * Clear forwarding waits for what the two directions need, from what each
 * last asked for: up reads the client and writes the backend, down the
 * other way round.
 */
static void
forward_wait(struct conn *c)
{
	if (conn_uring(c)) {
		int backend = ring_wait(c, &c->up, c->up_wait, &c->up_flow,
		    c->client_fd, c->backend_fd);
		int client = ring_wait(c, &c->down, c->down_wait, &c->down_flow,
		    c->backend_fd, c->client_fd);

		conn_wait(c, client, backend);
		return;
	}
	conn_wait(c, reads(c->up_wait, &c->up_flow, c->up_end_woke) |
	    (c->down_wait == PUMP_WANT_WRITE ? EV_WRITE : 0),
	    reads(c->down_wait, &c->down_flow, c->down_end_woke) |
	    (c->up_wait == PUMP_WANT_WRITE ? EV_WRITE : 0));
}

/* Run one direction and wait for what it needs; close once both are done. */
static void
forward(struct conn *c, struct pump *p, int src, int dst)
{
	const struct pump *other = p == &c->up ? &c->down : &c->up;
	enum pump_status *wait = p == &c->up ? &c->up_wait : &c->down_wait;
	/* Down stays followed until unfollow_down: with io_uring the bytes
	 * before the record out of place may still be on their way out when
	 * the follower has stopped at it (PUMP_ENDED comes after them). */
	struct nmf_flow *flow = !c->following ? NULL : p == &c->up ? &c->up_flow :
	    c->down_unfollowed ? NULL : &c->down_flow;
	uint64_t before = p->total;
	/* Its End was delivered before this wakeup (reads()). */
	int ended = flow != NULL && flow->state == NMF_FLOW_ENDED && p->pending == 0;
	/* The client has ended its session and sent its next preamble: the
	 * service's FIN ends this session, not the client's connection, so it
	 * is not passed on. */
	int hold_fin = p == &c->down && c->following &&
	    c->up_flow.state == NMF_FLOW_ENDED && c->up.pending == 0 &&
	    c->up.held > 0 && !c->up.dst_shut &&
	    (c->down_flow.state == NMF_FLOW_RECORD ||
	    c->down_flow.state == NMF_FLOW_OPAQUE);
	enum pump_status status;

	uring_take(c->w, p);
	if (!uring_stream_run(c->w, p, flow, &status)) {
		status = pump_run(p, src, dst, forward_method(c), &c->w->pipes,
		    other->dst_shut || hold_fin, flow);
		/* A large payload begins: the ring reads the session ahead
		 * from here where it can, else the pump splices it. */
		if (status == PUMP_STREAM && uring_stream_start(c->w, p) == 0) {
			status = PUMP_WANT_READ;
		} else if (status == PUMP_STREAM) {
			p->nostream = 1;
			status = pump_run(p, src, dst, forward_method(c),
			    &c->w->pipes, other->dst_shut || hold_fin, flow);
		}
	}

	if (p->total != before)
		idle_touch(c);
	if (status == PUMP_DONE && hold_fin)
		c->fin_held = 1;
	/* Woken when its End was delivered already: what waits in the source
	 * is not this session's, so stop watching it (reads()). */
	if (status == PUMP_ENDED && ended) {
		if (p == &c->up)
			c->up_end_woke = 1;
		else
			c->down_end_woke = 1;
	}
	*wait = status;
	switch (status) {
	case PUMP_WANT_READ:
	case PUMP_WANT_WRITE:
	case PUMP_STREAM:   /* (taken over above) */
		break;
	case PUMP_ENDED:
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
		if (c->up.dst_shut && c->down.dst_shut) {
			conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN, LOG_LEVEL_DEBUG,
			    "closed, %llu bytes up, %llu down",
			    (unsigned long long)c->up.total,
			    (unsigned long long)c->down.total);
			return;
		}
		break;
	case PUMP_ERROR:
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_INFO,
		    "aborted (%s) after %llu bytes up, %llu down",
		    strerror(errno), (unsigned long long)c->up.total,
		    (unsigned long long)c->down.total);
		return;
	}
	forward_wait(c);
	session_check(c);
}

void
forward_up(struct conn *c)
{
	c->tp->forward_up(c);
}

void
forward_down(struct conn *c)
{
	if (c->unanswered && backend_answered(c) <= 0)
		return;
	backend_client_spoke(c);
	c->tp->forward_down(c);
}

/* ------------------------------------------------ the clear transport */

static void
clear_forward_start(struct conn *c)
{
	forward_wait(c);
}

static void
clear_forward_up(struct conn *c)
{
	forward(c, &c->up, c->client_fd, c->backend_fd);
}

static void
clear_forward_down(struct conn *c)
{
	forward(c, &c->down, c->backend_fd, c->client_fd);
}

static ssize_t
clear_send(struct conn *c, const void *buf, size_t len, int *events)
{
	ssize_t n = send(c->client_fd, buf, len, MSG_NOSIGNAL);

	*events = 0;
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EINTR) {
		*events = EV_WRITE;
		return 0;
	}
	conn_log(c, LOG_LEVEL_DEBUG, "cannot write to the client: %s",
	    strerror(errno));
	return -1;
}

static int
clear_shutdown(struct conn *c)
{
	return shutdown(c->client_fd, SHUT_WR);
}

static void
clear_session_over(struct conn *c)
{
	(void)c;
}

const struct transport transport_clear = {
	.forward_start = clear_forward_start,
	.forward_up = clear_forward_up,
	.forward_down = clear_forward_down,
	.send = clear_send,
	.shutdown = clear_shutdown,
	.session_over = clear_session_over,
	.next_preamble_follows = 1,
};

/* ------------------------------------------------ the access log */

void
conn_session_begin(struct conn *c)
{
	c->in_session = 1;
	c->member = -1;
	c->session_start = ev_time();
	c->route_time = -1;
}

/* Routed: when, and the Via, which outlives the preamble buffer only in a
 * copy, made only when the access log wants it. */
void
conn_session_routed(struct conn *c)
{
	struct worker *w = c->w;

	c->route_time = ev_time() - c->session_start;
	stat_add(&w->stats.sessions, 1);
	stat_observe(&w->stats.route_seconds, c->route_time);
	c->rstats = route_stats_get(&w->route_stats, c->pre.route->stats_slot);
	stat_add(&c->rstats->active, 1);
	c->up_counted = c->down_counted = 0;
	if (!access_enabled() || c->pre.via_len == 0)
		return;
	free(c->via_copy);
	if ((c->via_copy = malloc(c->pre.via_len)) == NULL)
		return;
	memcpy(c->via_copy, c->preamble + c->pre.via_off, c->pre.via_len);
	c->via_copy_len = c->pre.via_len;
}

void
conn_session_record(struct conn *c, enum conn_outcome outcome)
{
	struct access_rec r;

	backend_let_go(c);
	if (!c->in_session)
		return;
	c->in_session = 0;
	if (c->rstats != NULL) {
		route_bytes_sync(c);
		stat_sub(&c->rstats->active, 1);
		c->rstats = NULL;
	}
	/* A client closing its connection between sessions began none. */
	if (!access_enabled() || (c->sessions > 0 && c->preamble_len == 0 &&
	    c->route_time < 0))
		return;
	r.client = &c->client_addr.sa;
	r.listen_port = c->local_port;
	if (c->via_copy != NULL) {
		r.via = c->via_copy;
		r.via_len = c->via_copy_len;
	} else if (c->preamble != NULL && c->pre.via_len > 0) {
		r.via = c->preamble + c->pre.via_off;
		r.via_len = c->pre.via_len;
	} else {
		r.via = NULL;
		r.via_len = 0;
	}
	r.route = c->pre.route != NULL ? c->pre.route->name : NULL;
	r.backend = outcome == OUTCOME_HANDOFF ? "handoff" :
	    c->pre.route != NULL && c->route_time >= 0 ?
	    backend_member_text(c) : NULL;
	r.outcome = conn_outcome_name(outcome);
	r.fault = outcome == OUTCOME_FAULTED || outcome == OUTCOME_DENIED ?
	    nmf_fault_name(c->fault_sent) : NULL;
	r.session = c->sessions + 1;
	/* A handoff passed on what was read: the preamble, and whatever came
	 * with it. */
	r.bytes_up = outcome == OUTCOME_HANDOFF ? c->preamble_len : c->up.total;
	r.bytes_down = c->down.total;
	r.duration = ev_time() - c->session_start;
	r.route_time = c->route_time;
	access_record(&r);
	free(c->via_copy);
	c->via_copy = NULL;
}
