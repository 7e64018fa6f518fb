/*
 * uring.c - a worker's io_uring for forward = uring (uring.h).
 *
 * The ring is watched by libev like any socket: its fd is readable once
 * completions wait, and the worker's ev_prepare submits what a pass
 * queued (conn_run_ready), so a pass costs one epoll_wait and an
 * io_uring_enter per round of serving however many messages it moved
 * (README: 0.03 calls per message, 64 clients).  COOP_TASKRUN: the
 * kernel's completion work waits for the worker's next system call
 * instead of interrupting it.  Not DEFER_TASKRUN: that work would only
 * run inside io_uring_enter, and an epoll_wait on the ring's fd would not
 * wake for it (measured: every client hung).  Nothing in the ring
 * belongs to a thread (no SINGLE_ISSUER, no registered ring fd): the main
 * thread opens and closes it, the worker's thread alone submits, and the
 * kernel's completion work goes to the thread that submitted.
 *
 * A receive selects its buffer from a ring of provided buffers only when
 * bytes arrive, so a connection waiting for its next message holds none;
 * serving the connection copies the bytes into the pump's buffer and gives
 * the ring's back.  When the ring has no buffer free, the receive fails
 * with ENOBUFS and the pump simply reads that socket with recv().
 */
#include "uring.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "pump.h"
#include "worker.h"

#ifdef HAVE_LIBURING
#include <sys/mman.h>

#include "uring_int.h"

#define URING_SQ_ENTRIES 256
/* Completions can outnumber submissions between two passes; more than
 * this wait in the kernel's overflow list, which the reap flushes. */
#define URING_CQ_ENTRIES 4096
/* Buffers the kernel may fill before a pass serves them: a power of two.
 * Only the pages bytes land in are ever touched. */
#define URING_BUFS 256
#define URING_BGID 0
/* Completions taken from the ring at a time. */
#define URING_BATCH 64

uint64_t
uring_tag(const struct conn *c, const struct pump *p, int op)
{
	return (uint64_t)(uintptr_t)c | (uint64_t)op | (p == &c->down);
}

void
uring_buf_give(struct uring *u, unsigned bid)
{
	io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * PUMP_COPY_BUFSZ,
	    PUMP_COPY_BUFSZ, (unsigned short)bid, io_uring_buf_ring_mask(URING_BUFS), 0);
	io_uring_buf_ring_advance(u->br, 1);
}

/*
 * A receive or a send finished: its result waits in the pump (a
 * receive's bytes in the ring's buffer until uring_take); 1 if the
 * connection is to be queued as ready for it.  Only state is written
 * here, no handler runs: uring_cancel reaps from inside a connection's
 * teardown.
 */
static int
complete(struct uring *u, const struct io_uring_cqe *cqe)
{
	struct conn *c = (struct conn *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_BITS);
	int down = (int)(cqe->user_data & 1);
	struct pump *p;

	/* A cancel's own completion, or the last of the stream probe's
	 * receive (uring_stream.c): no connection. */
	if (c == NULL)
		return 0;
	p = down ? &c->down : &c->up;
	if (cqe->user_data & OP_STREAM)
		return stream_complete(u, c, p, cqe);
	if (cqe->user_data & OP_SEND) {
		p->sending = 0;
		p->sent = 1;
		p->sent_res = cqe->res;
	} else {
		p->armed = 0;
		p->ahead = 1;
		p->ahead_res = cqe->res;
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

			if (cqe->res > 0) {
				p->ahead_buf = 1;
				p->ahead_bid = (uint16_t)bid;
			} else {
				uring_buf_give(u, bid);
			}
		}
	}
	/* Cancelled: the connection is closing, nothing waits for it. */
	if (cqe->res == -ECANCELED) {
		p->sent = p->ahead = 0;
		return 0;
	}
	return 1;
}

/* Queue the connection a completion is for as ready. */
static void
wake(const struct io_uring_cqe *cqe)
{
	struct conn *c = (struct conn *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_BITS);

	ready_queue(c, cqe->user_data & 1 ? READY_DOWN_RING : READY_UP_RING);
}

/*
 * Copied here, just before the pump runs, rather than when the completion
 * is reaped: a pass reaps many, and buffers allocated for all of them at
 * once and freed after would make malloc give the memory back to the
 * system (madvise) and fault it in again, pass after pass.  One at a time,
 * each is the one the last pump freed.
 */
void
uring_take(struct worker *w, struct pump *p)
{
	struct uring *u = w->uring;
	uint8_t *dst;

	if (!p->ahead_buf)
		return;
	p->ahead_buf = 0;
	/* Asked for only once the pump was empty (forward_wait). */
	if (p->pending + p->held > 0)
		p->ahead_res = -EIO;
	else if ((dst = pump_buffer(p)) == NULL)
		p->ahead_res = -ENOMEM;
	else
		memcpy(dst, u->bufs + (size_t)p->ahead_bid * PUMP_COPY_BUFSZ,
		    (size_t)p->ahead_res);
	uring_buf_give(u, p->ahead_bid);
}

/*
 * Take every completion waiting: in the kernel's order (a stream's
 * buffers queue in the order they were filled), and the connections
 * queued as ready newest first, as ready_on_io's are: conn_run_ready
 * serves the queue from its end, so the receive that finished first is
 * served first.
 */
static void
reap(struct uring *u)
{
	struct io_uring_cqe *cqes[URING_BATCH];
	unsigned char woke[URING_BATCH];
	unsigned n;

	while ((n = io_uring_peek_batch_cqe(&u->ring, cqes, URING_BATCH)) > 0) {
		for (unsigned i = 0; i < n; i++)
			woke[i] = (unsigned char)complete(u, cqes[i]);
		for (unsigned i = n; i-- > 0;)
			if (woke[i])
				wake(cqes[i]);
		io_uring_cq_advance(&u->ring, n);
	}
}

static void
on_ring(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	reap(io->data);
}

static struct uring *
uring_open(struct worker *w)
{
	struct io_uring_params params = {
		.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
		    IORING_SETUP_CQSIZE,
		.cq_entries = URING_CQ_ENTRIES,
	};
	struct io_uring_buf_reg reg = { .ring_entries = URING_BUFS, .bgid = URING_BGID };
	size_t ringsize = URING_BUFS * sizeof(struct io_uring_buf);
	struct uring *u = calloc(1, sizeof(*u));
	const char *what = "memory", *why;
	int r = -ENOMEM;

	if (u == NULL)
		goto fail;
	what = "io_uring_setup";
	if ((r = io_uring_queue_init_params(URING_SQ_ENTRIES, &u->ring, &params)) < 0)
		goto free_u;
	what = "its buffers";
	r = -ENOMEM;
	u->bufs = mmap(NULL, (size_t)URING_BUFS * PUMP_COPY_BUFSZ,
	    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->bufs == MAP_FAILED)
		goto exit_ring;
	u->br = mmap(NULL, ringsize, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED)
		goto unmap_bufs;
	reg.ring_addr = (uint64_t)(uintptr_t)u->br;
	what = "a provided-buffer ring";
	if ((r = io_uring_register_buf_ring(&u->ring, &reg, 0)) < 0)
		goto unmap_br;
	io_uring_buf_ring_init(u->br);
	for (unsigned bid = 0; bid < URING_BUFS; bid++)
		uring_buf_give(u, bid);
	u->w = w;
	why = stream_open(u);
	ev_io_init(&u->watch, on_ring, u->ring.ring_fd, EV_READ);
	u->watch.data = u;
	ev_io_start(w->loop, &u->watch);
	if (why == NULL)
		log_info("worker %u: forward = uring: receiving and sending through "
		    "io_uring, sessions read ahead from a large payload on", w->index);
	else
		log_info("worker %u: forward = uring: receiving and sending through "
		    "io_uring; large payloads are spliced (%s)", w->index, why);
	return u;

unmap_br:
	munmap(u->br, ringsize);
unmap_bufs:
	munmap(u->bufs, (size_t)URING_BUFS * PUMP_COPY_BUFSZ);
exit_ring:
	io_uring_queue_exit(&u->ring);
free_u:
	free(u);
fail:
	log_warn("worker %u: forward = uring, but no io_uring here (%s: %s)%s; "
	    "this worker forwards by splice", w->index, what, strerror(-r),
	    r == -EPERM ? " (sysctl kernel.io_uring_disabled, or a seccomp "
	    "filter: nettcpd.ini(5), forward)" : "");
	return NULL;
}

struct uring *
uring_get(struct worker *w)
{
	if (w->uring == NULL && !w->uring_tried) {
		w->uring_tried = 1;
		w->uring = uring_open(w);
	}
	return w->uring;
}

struct io_uring_sqe *
uring_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (sqe == NULL && io_uring_submit(&u->ring) >= 0)
		sqe = io_uring_get_sqe(&u->ring);
	return sqe;
}

void
uring_sqe_failed(struct uring *u, struct conn *c, struct pump *p, int op)
{
	struct io_uring_cqe cqe = { .user_data = uring_tag(c, p, op), .res = -EIO };

	if (complete(u, &cqe))
		wake(&cqe);
}

void
uring_read(struct worker *w, struct conn *c, struct pump *p, int fd)
{
	struct uring *u = w->uring;
	struct io_uring_sqe *sqe;

	p->ring = 1;
	if (p->armed || p->ahead)
		return;
	p->armed = 1;
	if ((sqe = uring_sqe(u)) == NULL) {
		uring_sqe_failed(u, c, p, OP_RECV);
		return;
	}
	io_uring_prep_recv(sqe, fd, NULL, PUMP_COPY_BUFSZ, 0);
	/* Queued after the pump found the socket empty: wait for bytes
	 * rather than try a recv that would fail first. */
	sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = URING_BGID;
	io_uring_sqe_set_data64(sqe, uring_tag(c, p, OP_RECV));
}

/* MSG_WAITALL: the kernel finishes a short send itself, so the result is
 * all the pending bytes, or an error. */
void
uring_write(struct worker *w, struct conn *c, struct pump *p, int fd)
{
	struct uring *u = w->uring;
	struct io_uring_sqe *sqe;

	p->ring = 1;
	if (p->sending || p->sent || p->pending == 0)
		return;
	p->sending = 1;
	if ((sqe = uring_sqe(u)) == NULL) {
		uring_sqe_failed(u, c, p, OP_SEND);
		return;
	}
	io_uring_prep_send(sqe, fd, p->buf + p->buf_off, p->pending,
	    MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, uring_tag(c, p, OP_SEND));
}

/* Cancel what is queued on fd and wait until it is: its completion is
 * then in the ring (or the kernel's overflow list). */
static void
cancel_fd(struct uring *u, int fd)
{
	struct io_uring_sync_cancel_reg reg = {
		.fd = fd,
		.flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL,
		.timeout = { .tv_sec = -1, .tv_nsec = -1 },
	};

	/* Not yet submitted: submit it, so that it can be cancelled. */
	(void)io_uring_submit(&u->ring);
	(void)io_uring_register_sync_cancel(&u->ring, &reg);
}

void
uring_cancel(struct conn *c)
{
	struct uring *u = c->w->uring;
	struct pump *p[2] = { &c->up, &c->down };

	if (u == NULL)
		return;
	/* up receives from the client and sends to the backend, down the
	 * other way round. */
	if (c->up.armed || c->down.armed || c->up.sending || c->down.sending) {
		u->tearing = c;
		if (c->up.armed || c->down.sending)
			cancel_fd(u, c->client_fd);
		if (c->down.armed || c->up.sending)
			cancel_fd(u, c->backend_fd);
		/* Run the kernel's completion work and flush any overflow,
		 * then take the completions: this connection's among them. */
		(void)io_uring_get_events(&u->ring);
		reap(u);
		u->tearing = NULL;
	}
	for (int d = 0; d < 2; d++) {
		if (p[d]->ahead_buf)
			uring_buf_give(u, p[d]->ahead_bid);
		p[d]->armed = p[d]->ahead = p[d]->ahead_buf = 0;
		p[d]->sending = p[d]->sent = 0;
		stream_drop(u, p[d]);
	}
}

void
uring_reap(struct worker *w)
{
	if (w->uring != NULL)
		reap(w->uring);
}

int
uring_submit(struct worker *w, int and_reap)
{
	struct uring *u = w->uring;

	if (u == NULL || io_uring_sq_ready(&u->ring) == 0)
		return 0;
	(void)io_uring_submit(&u->ring);
	if (and_reap)
		reap(u);
	return w->nready > 0;
}

void
uring_close(struct worker *w)
{
	struct uring *u = w->uring;

	if (u == NULL)
		return;
	/* The ring's teardown cancels every receive and drops its hold on
	 * the sockets. */
	for (struct conn *c = w->conns; c != NULL; c = c->next) {
		c->up.armed = c->up.ahead = c->up.ahead_buf = 0;
		c->down.armed = c->down.ahead = c->down.ahead_buf = 0;
		c->up.sending = c->up.sent = c->down.sending = c->down.sent = 0;
		stream_drop(u, &c->up);
		stream_drop(u, &c->down);
	}
	ev_io_stop(w->loop, &u->watch);
	stream_close(u);
	io_uring_queue_exit(&u->ring);
	munmap(u->br, URING_BUFS * sizeof(struct io_uring_buf));
	munmap(u->bufs, (size_t)URING_BUFS * PUMP_COPY_BUFSZ);
	free(u);
	w->uring = NULL;
}

#else /* !HAVE_LIBURING */

struct uring *
uring_get(struct worker *w)
{
	if (!w->uring_tried) {
		w->uring_tried = 1;
		log_warn("worker %u: forward = uring, but this nettcpd was built "
		    "without liburing; this worker forwards by splice", w->index);
	}
	return NULL;
}

void
uring_read(struct worker *w, struct conn *c, struct pump *p, int fd)
{
	(void)w;
	(void)c;
	(void)p;
	(void)fd;
}

void
uring_write(struct worker *w, struct conn *c, struct pump *p, int fd)
{
	(void)w;
	(void)c;
	(void)p;
	(void)fd;
}

void
uring_take(struct worker *w, struct pump *p)
{
	(void)w;
	(void)p;
}

void
uring_cancel(struct conn *c)
{
	(void)c;
}

void
uring_reap(struct worker *w)
{
	(void)w;
}

int
uring_submit(struct worker *w, int and_reap)
{
	(void)w;
	(void)and_reap;
	return 0;
}

void
uring_close(struct worker *w)
{
	(void)w;
}

#endif
