/*
 * conn_fastpath.c - a followed session's envelopes through the kernel
 * (fastpath.h).  Once the session is in its envelope phase, the client's
 * and the backend's sockets go into the sockmap, and each direction is
 * armed whenever user space holds nothing of it, the kernel's follower
 * starting where user space's stands.
 * The kernel then moves envelopes without waking nettcpd; nettcpd is
 * woken only when the kernel hands it something (End, another record, a
 * FIN, an error), and it takes the direction back before its pump reads
 * a byte: it disarms the socket, waits until the kernel has written all
 * it sent to the peer (nothing user space writes may overtake it), and
 * goes on following from where the kernel stopped.  Every decision stays
 * where it is without the fast path.
 *
 * The client's socket stays in the sockmap for the connection's life
 * (taking it out would drop bytes the kernel has queued for user space,
 * such as a next preamble), so it is read by recv() only; the backend's
 * is taken out at the session's end, and pooled only when nothing it
 * handed over was left unread.
 */
#include "conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* How long, at a time, user space waits for the kernel to write what it
 * sent a socket before writing there itself (it takes microseconds,
 * unless the peer is not reading). */
#define FAST_DRAIN_RETRY 0.0005

struct fast_dir {
	unsigned armed : 1;     /* the kernel follows this direction */
	unsigned waiting : 1;   /* taken back; the kernel's writes not all out */
	uint64_t redirected;    /* the kernel's count for its source when armed */
	uint64_t written;       /* its destination's written total when armed */
};

struct conn_fast {
	uint64_t kc, kb;        /* the sockets' cookies; kb 0: the backend's */
	                        /* is not in the sockmap */
	unsigned backend_off : 1; /* this session's backend is no TCP socket */
	uint64_t read_c, read_b; /* bytes user space read from each since added */
	uint32_t arm;           /* the last arming's number */
	struct fast_dir up, down;
	uint64_t carried_up, carried_down; /* by the kernel, this session */
	uint64_t seen;          /* the kernel's counts at the last idle check */
	ev_timer retry;         /* waiting for the kernel's writes */
};

static void fast_on_retry(struct ev_loop *loop, ev_timer *t, int revents);

int
fast_copy_only(const struct conn *c)
{
	return c->fast != NULL;
}

void
fast_read(struct conn *c, int from_client, uint64_t n)
{
	if (c->fast == NULL)
		return;
	if (from_client)
		c->fast->read_c += n;
	else
		c->fast->read_b += n;
}

/* The socket's counts, zero when the kernel has seen nothing of it yet. */
static int
fast_stat(struct conn *c, uint64_t cookie, struct fastpath_stat *st)
{
	if (fastpath_stat(c->w->fastpath, cookie, st) == 0)
		return 0;
	memset(st, 0, sizeof(*st));
	return errno == ENOENT ? 0 : -1;
}

/* Only TCP sockets: user space reads their send queue's progress from
 * tcp_info (a unix backend, or a unix listener's client, stays on the
 * splice path). */
static int
fast_tcp(int fd)
{
	uint64_t written;

	return fastpath_written(fd, &written) == 0;
}

/* The client's socket into the sockmap: 0 (c->fast set, or not yet:
 * bytes wait on it), or -1 (never on this connection). */
static int
fast_add(struct conn *c)
{
	struct conn_fast *f;

	if (!fast_tcp(c->client_fd) || (f = calloc(1, sizeof(*f))) == NULL)
		return -1;
	if (fastpath_add(c->w->fastpath, c->client_fd, &f->kc) < 0) {
		int waits = errno == EAGAIN;

		if (!waits)
			conn_log(c, LOG_LEVEL_DEBUG, "fast path: the client's "
			    "socket does not go into the sockmap (%s)",
			    strerror(errno));
		free(f);
		return waits ? 0 : -1;
	}
	ev_init(&f->retry, fast_on_retry);
	f->retry.data = c;
	c->fast = f;
	return 0;
}

static int
fast_add_backend(struct conn *c)
{
	struct conn_fast *f = c->fast;

	if (!fast_tcp(c->backend_fd)) {
		f->backend_off = 1;
		return -1;
	}
	if (fastpath_add(c->w->fastpath, c->backend_fd, &f->kb) < 0) {
		if (errno != EAGAIN)
			conn_log(c, LOG_LEVEL_DEBUG, "fast path: the backend's "
			    "socket does not go into the sockmap (%s)",
			    strerror(errno));
		f->kb = 0;
		return -1;
	}
	f->read_b = 0;
	return 0;
}

/* Arm one direction: src's envelopes go to dst from its next segment. */
static void
fast_arm(struct conn *c, struct fast_dir *d, uint64_t src, uint64_t dst,
    uint64_t read, int dst_fd, const struct nmf_flow *flow)
{
	struct conn_fast *f = c->fast;
	struct fastpath_stat st;

	if (fast_stat(c, src, &st) < 0 || fastpath_written(dst_fd, &d->written) < 0)
		return;
	d->redirected = st.redirected;
	if (++f->arm == 0)
		f->arm = 1;
	if (fastpath_arm(c->w->fastpath, src, dst, read, f->arm, flow) == 0)
		d->armed = 1;
}

/* The kernel's follower goes on from here: anywhere in the envelope
 * phase (a boundary, a size, a payload), not after End or out of it. */
static int
fast_followable(const struct nmf_flow *flow)
{
	return flow->state == NMF_FLOW_RECORD || flow->state == NMF_FLOW_SIZE ||
	    flow->state == NMF_FLOW_PAYLOAD;
}

/* Inside a payload pump.c would splice. */
static int
fast_large(const struct nmf_flow *flow)
{
	return flow->state == NMF_FLOW_PAYLOAD && flow->remaining >= PUMP_SPLICE_MIN;
}

void
fast_try(struct conn *c)
{
	struct conn_fast *f = c->fast;
	int up, down;

	if (c->w->fastpath == NULL || !c->gen->cfg->fastpath || !c->following ||
	    c->tp != &transport_clear || c->state != CONN_FORWARDING ||
	    c->unanswered || c->fin_held || c->up_flow.singleton ||
	    c->down_flow.want_ack || c->down_flow.ack_alone)
		return;
	/* The client's first envelope after a pooled connection's Ack goes
	 * through user space (ack_alone above): it says the client spoke. */
	up = (f == NULL || !f->up.armed) && fast_followable(&c->up_flow) &&
	    c->up.pending == 0 && c->up.held == 0 && !c->up.src_eof &&
	    !c->up.dst_shut;
	down = (f == NULL || !f->down.armed) &&
	    fast_followable(&c->down_flow) && c->down.pending == 0 &&
	    c->down.held == 0 && !c->down.src_eof && !c->down.dst_shut;
	if (!up && !down)
		return;
	/* A stream of large envelopes moves faster by splice (measured: one
	 * connection down, 850 MB/s spliced, 360 through the sockmap), and a
	 * socket in the sockmap cannot be spliced from: a connection enters
	 * the fast path once the service has answered an envelope (a
	 * request and its reply went by), and not while envelopes are
	 * large. */
	if (f == NULL && (c->down.total <= 1 || c->up.large || c->down.large ||
	    fast_large(&c->up_flow) || fast_large(&c->down_flow)))
		return;
	if (f == NULL && c->fast_tried)
		return;
	if (f == NULL && fast_add(c) < 0) {
		c->fast_tried = 1;   /* once per connection */
		return;
	}
	/* Unread bytes on the client's socket: the next time. */
	if ((f = c->fast) == NULL)
		return;
	if (f->kb == 0 && (f->backend_off || fast_add_backend(c) < 0))
		return;
	if (up)
		fast_arm(c, &f->up, f->kc, f->kb, f->read_c, c->backend_fd,
		    &c->up_flow);
	if (down)
		fast_arm(c, &f->down, f->kb, f->kc, f->read_b, c->client_fd,
		    &c->down_flow);
}

int
fast_take_back(struct conn *c, struct pump *p)
{
	struct conn_fast *f = c->fast;
	int up = p == &c->up;
	struct fast_dir *d;
	struct fastpath_stat st;
	uint64_t src, moved, written;
	int src_fd, dst_fd;

	if (f == NULL)
		return 1;
	d = up ? &f->up : &f->down;
	if (!d->armed)
		return 1;
	src = up ? f->kc : f->kb;
	src_fd = up ? c->client_fd : c->backend_fd;
	dst_fd = up ? c->backend_fd : c->client_fd;
	/* Disarmed first: from here the kernel hands user space everything,
	 * after all it sent on.  The socket's lock (taken to read its
	 * tcp_info) waits for a verdict running on it. */
	if (!d->waiting && fastpath_arm(c->w->fastpath, src, 0, 0, 0, NULL) < 0)
		return -1;
	d->waiting = 1;
	if (fastpath_written(src_fd, &written) < 0 || fast_stat(c, src, &st) < 0 ||
	    fastpath_written(dst_fd, &written) < 0)
		return -1;
	moved = st.redirected - d->redirected;
	if (written < d->written + moved) {
		/* Still on its way through the sockmap. */
		ev_timer_set(&f->retry, FAST_DRAIN_RETRY, 0.);
		ev_timer_start(c->w->loop, &f->retry);
		return 0;
	}
	/* The kernel's follower is this arming's only once it sent
	 * something on (until then it may be an earlier arming's); if it
	 * sent nothing, the follower is where user space left it. */
	if (moved > 0)
		fastpath_flow_resume(&st, up ? &c->up_flow : &c->down_flow);
	p->total += moved;
	*(up ? &f->carried_up : &f->carried_down) += moved;
	d->armed = 0;
	d->waiting = 0;
	return 1;
}

/* The kernel's writes were not all out: try the direction(s) again. */
static void
fast_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct conn *c = t->data;
	struct conn_fast *f = c->fast;

	(void)loop;
	(void)revents;
	/* One direction per turn: forwarding may close c.  The other one's
	 * turn is the next (the timer is stopped if c goes). */
	if (f->up.waiting && f->down.waiting) {
		ev_timer_set(&f->retry, FAST_DRAIN_RETRY, 0.);
		ev_timer_start(c->w->loop, &f->retry);
	}
	if (f->up.waiting)
		forward_up(c);
	else if (f->down.waiting)
		forward_down(c);
}

int
fast_progress(struct conn *c)
{
	struct conn_fast *f = c->fast;
	struct fastpath_stat a, b;
	uint64_t now;

	if (f == NULL || (!f->up.armed && !f->down.armed))
		return 0;
	if (fast_stat(c, f->kc, &a) < 0 || (f->kb != 0 && fast_stat(c, f->kb, &b) < 0))
		return 0;
	now = a.redirected + (f->kb != 0 ? b.redirected : 0);
	if (now == f->seen)
		return 0;
	f->seen = now;
	return 1;
}

int
fast_session_end(struct conn *c)
{
	struct conn_fast *f = c->fast;
	struct fastpath_stat st;
	uint64_t written;
	int clean;

	if (f == NULL)
		return 1;
	f->backend_off = 0;
	if (f->kb == 0)
		return 1;
	conn_log(c, LOG_LEVEL_DEBUG, "fast path: the kernel carried %llu bytes "
	    "up, %llu down of this session", (unsigned long long)f->carried_up,
	    (unsigned long long)f->carried_down);
	f->carried_up = f->carried_down = 0;
	f->up.armed = f->down.armed = 0;
	/* Out of the sockmap, the socket is a plain one for the pool; what
	 * the kernel had handed over and nobody read went with it, and then
	 * the connection is not clean. */
	clean = fastpath_remove(c->w->fastpath, f->kb) == 0 &&
	    fastpath_written(c->backend_fd, &written) == 0 &&
	    fast_stat(c, f->kb, &st) == 0 && st.passed == f->read_b;
	fastpath_forget(c->w->fastpath, f->kb);
	f->kb = 0;
	return clean;
}

void
fast_free(struct conn *c)
{
	struct conn_fast *f = c->fast;

	if (f == NULL)
		return;
	ev_timer_stop(c->w->loop, &f->retry);
	fastpath_forget(c->w->fastpath, f->kc);
	if (f->kb != 0)
		fastpath_forget(c->w->fastpath, f->kb);
	free(f);
	c->fast = NULL;
}
