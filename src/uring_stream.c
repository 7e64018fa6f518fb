/*
 * uring_stream.c - a followed session's records, read ahead through the
 * worker's ring (forward = uring, uring.h).
 *
 * Following a session, a pump on the ring moves its records one receive
 * and one send at a time through its 16 KiB buffer, and splicing a large
 * payload keeps a direction to one operation in flight as well.  Here,
 * from a large payload on, the source is read by one multishot receive
 * into 64 KiB buffers of a second provided-buffer ring, each completion
 * queued on the direction, while one sendmsg at a time writes out all
 * that is queued: the receive goes on while the send does, with no system
 * call of its own per buffer (README, Performance: bulk).
 *
 * A receive that goes on reads past record boundaries, so the follower
 * reads every buffer, in order, before any of it is sent: only the bytes
 * it lets through are forwarded.  Where it stops (at the session's End,
 * or at a byte that has no place in the session) the receive is
 * cancelled, and what it read past that point is held, as the pump holds
 * what one read took past an End (pump.h, held): up to a copy buffer's
 * worth in the pump's buffer, where its own code takes it; more stays in
 * this stream's buffers, counted in held, and is either dropped with the
 * stream by the session's policy (a client's next preamble is never that
 * long: conn_session.c resets it) or forwarded whole once the direction
 * is no longer followed (a service that left the protocol).
 *
 * What a direction may hold: past STREAM_HOLD buffers the receive is
 * cancelled until sends give some back (a multishot receive takes at once
 * what its socket already holds, so a direction can go well past that
 * before the cancel lands).  With the ring out of buffers (ENOBUFS), the
 * stream ends once its queue is out, and the pump goes on (a large
 * payload's rest is spliced, as forward = splice does).
 */
#include "uring.h"

#ifdef HAVE_LIBURING
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_int.h"
#include "pump.h"
#include "uring_int.h"
#include "worker.h"

/* Buffers a direction may hold before its receive is cancelled; a
 * sendmsg writes out at most this many. */
#define STREAM_HOLD 16u

struct ring_stream {
	int head, tail;       /* the direction's buffers, oldest first; -1 */
	int unfed;            /* the first the follower has not read; -1 */
	int stop;             /* where the follower stopped (-1: it has not): */
	uint32_t stop_off;    /* the bytes of stop from stop_off on, and of */
	                      /* every buffer after it, are held */
	unsigned count;       /* buffers queued */
	size_t off;           /* bytes of head already sent */
	size_t held;          /* bytes read past the stop */
	unsigned eof : 1;     /* the source sent FIN */
	unsigned nobufs : 1;  /* the ring had no buffer free */
	unsigned cancelling : 1; /* the receive is cancelled (STREAM_HOLD, */
	                      /* or the follower stopped) */
	unsigned unheld : 1;  /* no longer followed: everything goes */
	int err;              /* the receive failed: -errno */
	struct msghdr msg;    /* the sendmsg's, valid until it completes */
	struct iovec iov[STREAM_HOLD];
};

static uint8_t *
sbuf(struct uring *u, int bid)
{
	return u->sbufs + (size_t)bid * STREAM_BUF;
}

static void
give(struct uring *u, int bid)
{
	io_uring_buf_ring_add(u->sbr, sbuf(u, bid), STREAM_BUF, (unsigned short)bid,
	    io_uring_buf_ring_mask(STREAM_BUFS), 0);
	io_uring_buf_ring_advance(u->sbr, 1);
}

/* A multishot receive into the stream's buffers, each completion one
 * buffer, until it is cancelled, fails or the source ends. */
static void
prep_recv(struct io_uring_sqe *sqe, int fd)
{
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = STREAM_BGID;
}

/*
 * Whether this kernel has multishot receives (Linux 6.0): eight bytes
 * wait on a socket, and the receive must take them and go on.
 */
static int
probe(struct uring *u)
{
	struct __kernel_timespec wait = { .tv_sec = 1 };
	struct io_uring_sync_cancel_reg reg = {
		.flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL,
		.timeout = { .tv_sec = -1, .tv_nsec = -1 },
	};
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int sv[2], ok = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	if (write(sv[0], "12345678", 8) != 8 || (sqe = io_uring_get_sqe(&u->ring)) == NULL)
		goto out;
	prep_recv(sqe, sv[1]);
	io_uring_sqe_set_data64(sqe, 0);
	if (io_uring_submit(&u->ring) != 1 ||
	    io_uring_wait_cqe_timeout(&u->ring, &cqe, &wait) < 0)
		goto cancel;
	ok = cqe->res == 8 && (cqe->flags & IORING_CQE_F_MORE);
	if (cqe->flags & IORING_CQE_F_BUFFER)
		give(u, (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
	io_uring_cqe_seen(&u->ring, cqe);
cancel:
	/* The receive is still there: its last completion names nothing
	 * (user_data 0) and is dropped by the reap. */
	reg.fd = sv[1];
	(void)io_uring_register_sync_cancel(&u->ring, &reg);
out:
	close(sv[0]);
	close(sv[1]);
	return ok;
}

const char *
stream_open(struct uring *u)
{
	struct io_uring_buf_reg reg = { .ring_entries = STREAM_BUFS, .bgid = STREAM_BGID };
	size_t ringsize = STREAM_BUFS * sizeof(struct io_uring_buf);
	const char *why = "no memory for their buffers";

	u->sbufs = mmap(NULL, (size_t)STREAM_BUFS * STREAM_BUF, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->sbufs == MAP_FAILED)
		goto fail;
	u->sbr = mmap(NULL, ringsize, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->sbr == MAP_FAILED)
		goto unmap_bufs;
	reg.ring_addr = (uint64_t)(uintptr_t)u->sbr;
	why = "no second provided-buffer ring";
	if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0)
		goto unmap_ring;
	io_uring_buf_ring_init(u->sbr);
	for (int bid = 0; bid < (int)STREAM_BUFS; bid++)
		give(u, bid);
	why = "this kernel has no multishot receive (Linux 6.0 and later have)";
	if (!probe(u))
		goto unregister;
	return NULL;

unregister:
	(void)io_uring_unregister_buf_ring(&u->ring, STREAM_BGID);
unmap_ring:
	munmap(u->sbr, ringsize);
unmap_bufs:
	munmap(u->sbufs, (size_t)STREAM_BUFS * STREAM_BUF);
fail:
	u->sbr = NULL;
	u->sbufs = NULL;
	return why;
}

void
stream_close(struct uring *u)
{
	if (u->sbr == NULL)
		return;
	munmap(u->sbr, STREAM_BUFS * sizeof(struct io_uring_buf));
	munmap(u->sbufs, (size_t)STREAM_BUFS * STREAM_BUF);
	u->sbr = NULL;
}

int
uring_stream_start(struct worker *w, struct pump *p)
{
	struct uring *u = w->uring;
	struct ring_stream *st;

	if (u == NULL || u->sbr == NULL || (st = calloc(1, sizeof(*st))) == NULL)
		return -1;
	st->head = st->tail = st->unfed = st->stop = -1;
	p->stream = st;
	return 0;
}

int
stream_complete(struct uring *u, struct conn *c, struct pump *p,
    const struct io_uring_cqe *cqe)
{
	struct ring_stream *st = p->stream;
	int res = cqe->res, cancelled = 0;

	if (st == NULL) {   /* not after stream_drop: it reaps first */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			give(u, (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		return 0;
	}
	if (cqe->user_data & OP_SEND) {
		p->sending = 0;
		if (res == -ECANCELED)
			return 0;
		p->sent = 1;
		p->sent_res = res;
		return 1;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		/* The receive is over, whatever ended it (a cancel of it
		 * meanwhile finds nothing): the next one may be cancelled. */
		p->armed = 0;
		cancelled = st->cancelling;
		st->cancelling = 0;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

		if (res <= 0 || res > (int)STREAM_BUF) {
			give(u, bid);
		} else {
			u->slen[bid] = (uint32_t)res;
			u->snext[bid] = -1;
			if (st->tail >= 0)
				u->snext[st->tail] = (int16_t)bid;
			else
				st->head = bid;
			st->tail = bid;
			st->count++;
			if (st->unfed < 0)
				st->unfed = bid;
		}
	}
	/* Cancelled by the stream: served, so that it goes on; by the
	 * connection's teardown: nothing waits. */
	if (res == -ECANCELED)
		return cancelled && u->tearing != c;
	if (res == 0)
		st->eof = 1;
	else if (res == -ENOBUFS)
		st->nobufs = 1;
	else if (res < 0)
		st->err = res;
	else if (res > (int)STREAM_BUF)
		st->err = -EIO;   /* one buffer per completion, by its length */
	return 1;
}

/* The bytes of bid that may be sent, from its start. */
static size_t
sendable(const struct uring *u, const struct ring_stream *st, int bid)
{
	if (st->unheld || st->stop < 0)
		return u->slen[bid];
	return bid == st->stop ? st->stop_off : u->slen[bid];
}

/* Whether bid is past what may be sent: not read by the follower yet,
 * or after where it stopped. */
static int
beyond(const struct ring_stream *st, int bid)
{
	return bid == st->unfed || (!st->unheld && st->stop >= 0 && bid == st->stop &&
	    st->stop_off == 0);
}

/* n bytes were sent: the spent buffers go back. */
static void
consume(struct uring *u, struct ring_stream *st, struct pump *p, size_t n)
{
	p->pending -= n;
	p->total += n;
	st->off += n;
	while (st->head >= 0 && !beyond(st, st->head) &&
	    st->off >= u->slen[st->head]) {
		int bid = st->head;

		st->off -= u->slen[bid];
		st->head = u->snext[bid];
		if (st->head < 0)
			st->tail = -1;
		if (st->stop == bid)   /* unheld: its held bytes went too */
			st->stop = -1;
		st->count--;
		st->nobufs = 0;
		give(u, bid);
	}
}

/* The follower reads what came, in order; past where it stops, the
 * bytes are held.  No longer followed (flow NULL), all of it goes. */
static void
feed(struct uring *u, struct ring_stream *st, struct pump *p, struct nmf_flow *flow)
{
	for (int bid = st->unfed; bid >= 0; bid = u->snext[bid]) {
		size_t n = u->slen[bid], used = 0;

		if (flow == NULL) {
			p->pending += n;
			continue;
		}
		if (st->stop < 0) {
			used = nmf_flow_feed(flow, sbuf(u, bid), n);
			p->pending += used;
			if (used < n) {
				st->stop = bid;
				st->stop_off = (uint32_t)used;
			}
		}
		st->held += n - used;
	}
	st->unfed = -1;
}

/*
 * The follower has stopped and what it let through is out: the stream
 * ends, and what it read past the stop goes to the pump as held bytes:
 * into its buffer when they fit, as the pump's own read leaves them;
 * else they stay here, counted in p->held (1: the stream stays).
 */
static int
hand_over(struct uring *u, struct ring_stream *st, struct pump *p)
{
	if (st->held > PUMP_COPY_BUFSZ) {
		p->held = st->held;
		return 1;
	}
	if (st->held > 0) {
		size_t at = 0;

		if (pump_buffer(p) == NULL)
			return -1;
		for (int bid = st->stop; bid >= 0; bid = u->snext[bid]) {
			size_t from = bid == st->stop ? st->stop_off : 0;

			memcpy(p->buf + at, sbuf(u, bid) + from, u->slen[bid] - from);
			at += u->slen[bid] - from;
		}
		p->buf_off = 0;
		p->held = st->held;
	}
	return 0;
}

int
uring_stream_run(struct worker *w, struct pump *p, struct nmf_flow *flow,
    enum pump_status *status)
{
	struct ring_stream *st = p->stream;
	struct uring *u = w->uring;
	int kept, nostream;

	if (st == NULL)
		return 0;
	/* No longer followed (pump_unhold counted the held bytes as
	 * pending): everything this stream holds goes out. */
	if (flow == NULL && !st->unheld) {
		st->unheld = 1;
		st->held = 0;
	}
	feed(u, st, p, flow);
	if (p->sent) {
		p->sent = 0;
		if (p->sent_res < 0) {
			errno = -p->sent_res;
			goto fail;
		}
		consume(u, st, p, (size_t)p->sent_res);
	}
	if (st->err != 0) {
		errno = -st->err;
		goto fail;
	}
	/* A FIN past the stop is the next owner's to see: the socket says
	 * it again to the next read. */
	if (st->eof && (flow == NULL || flow->state < NMF_FLOW_ENDED))
		p->src_eof = 1;
	if (p->armed || p->sending || p->pending > 0 || (flow != NULL &&
	    flow->state < NMF_FLOW_ENDED && !p->src_eof && !st->nobufs)) {
		*status = PUMP_WANT_READ;
		return 1;
	}
	if (flow != NULL && flow->state >= NMF_FLOW_ENDED) {
		if ((kept = hand_over(u, st, p)) < 0)
			goto fail;
		if (kept) {
			*status = PUMP_ENDED;
			return 1;
		}
	}
	/* Out of buffers mid-payload: the pump splices the rest (not a new
	 * stream, which would find the ring as empty). */
	nostream = st->nobufs && flow != NULL && flow->state == NMF_FLOW_PAYLOAD;
	stream_drop(u, p);
	p->nostream = nostream;
	return 0;
fail:
	*status = PUMP_ERROR;
	return 1;
}

/* Write out every buffer the follower has let through, from where the
 * last send stopped. */
static void
send_queue(struct uring *u, struct conn *c, struct pump *p, int dst)
{
	struct ring_stream *st = p->stream;
	struct io_uring_sqe *sqe;
	size_t n = 0, skip = st->off;

	for (int bid = st->head; bid >= 0 && !beyond(st, bid) && n < STREAM_HOLD;
	    bid = u->snext[bid]) {
		size_t len = sendable(u, st, bid);

		if (len > skip) {
			st->iov[n].iov_base = sbuf(u, bid) + skip;
			st->iov[n].iov_len = len - skip;
			n++;
		}
		skip = 0;
		if (len < u->slen[bid])
			break;   /* where the follower stopped */
	}
	if (n == 0)
		return;
	st->msg = (struct msghdr){ .msg_iov = st->iov, .msg_iovlen = n };
	p->sending = 1;
	if ((sqe = uring_sqe(u)) == NULL) {
		uring_sqe_failed(u, c, p, OP_STREAM | OP_SEND);
		return;
	}
	/* MSG_WAITALL: the kernel finishes a short send itself. */
	io_uring_prep_sendmsg(sqe, dst, &st->msg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, uring_tag(c, p, OP_STREAM | OP_SEND));
}

void
uring_stream_wait(struct worker *w, struct conn *c, struct pump *p,
    const struct nmf_flow *flow, int src, int dst)
{
	struct ring_stream *st = p->stream;
	struct uring *u = w->uring;
	struct io_uring_sqe *sqe;
	int reading = flow != NULL && flow->state < NMF_FLOW_ENDED;

	/* Not before the follower has read what came (the connection is
	 * queued for that). */
	if (st->unfed >= 0)
		return;
	if (!p->armed && reading && !p->src_eof && !st->eof && !st->nobufs &&
	    st->err == 0 && st->count < STREAM_HOLD) {
		p->armed = 1;
		if ((sqe = uring_sqe(u)) == NULL) {
			uring_sqe_failed(u, c, p, OP_STREAM | OP_RECV);
		} else {
			prep_recv(sqe, src);
			io_uring_sqe_set_data64(sqe, uring_tag(c, p, OP_STREAM | OP_RECV));
		}
	} else if (p->armed && !st->cancelling && (!reading || st->count >= STREAM_HOLD) &&
	    (sqe = uring_sqe(u)) != NULL) {
		io_uring_prep_cancel64(sqe, uring_tag(c, p, OP_STREAM | OP_RECV), 0);
		io_uring_sqe_set_data64(sqe, 0);
		st->cancelling = 1;
	}
	if (!p->sending && !p->sent && p->pending > 0)
		send_queue(u, c, p, dst);
}

void
stream_drop(struct uring *u, struct pump *p)
{
	struct ring_stream *st = p->stream;

	if (st == NULL)
		return;
	for (int bid = st->head; bid >= 0; bid = u->snext[bid])
		give(u, bid);
	free(st);
	p->stream = NULL;
	p->nostream = 0;
}

#else /* !HAVE_LIBURING */

int
uring_stream_start(struct worker *w, struct pump *p)
{
	(void)w;
	(void)p;
	return -1;
}

int
uring_stream_run(struct worker *w, struct pump *p, struct nmf_flow *flow,
    enum pump_status *status)
{
	(void)w;
	(void)p;
	(void)flow;
	(void)status;
	return 0;
}

void
uring_stream_wait(struct worker *w, struct conn *c, struct pump *p,
    const struct nmf_flow *flow, int src, int dst)
{
	(void)w;
	(void)c;
	(void)p;
	(void)flow;
	(void)src;
	(void)dst;
}

#endif
