/*
 * pump.c - move bytes one way between two non-blocking sockets, with
 * splice() through a pipe or with recv()/send() through a small buffer.
 */
#include "pump.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a pipe holds unless F_SETPIPE_SZ changed it. */
#define PIPE_DEFAULT_SIZE 65536u

void
pipe_pool_init(struct pipe_pool *pool, unsigned pipe_size)
{
	pool->count = 0;
	pool->want_size = (int)pipe_size;
	pool->size = PIPE_DEFAULT_SIZE;
	atomic_store_explicit(&pool->in_use, 0, memory_order_relaxed);
}

void
pipe_pool_drain(struct pipe_pool *pool)
{
	while (pool->count > 0) {
		pool->count--;
		close(pool->fds[pool->count][0]);
		close(pool->fds[pool->count][1]);
	}
}

static int
pipe_take(struct pipe_pool *pool, int fds[2])
{
	if (pool->count > 0) {
		pool->count--;
		fds[0] = pool->fds[pool->count][0];
		fds[1] = pool->fds[pool->count][1];
		stat_add(&pool->in_use, 1);
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	stat_add(&pool->in_use, 1);
	/*
	 * A bigger pipe moves more per splice() pair: with 1 MiB a bulk
	 * transfer takes a fraction of the calls of the 64 KiB default.  A
	 * user over fs.pipe-user-pages-soft is refused; the default size
	 * still works, so that is not an error.
	 */
	if (pool->want_size > 0) {
		int granted = fcntl(fds[1], F_SETPIPE_SZ, pool->want_size);

		if (granted > 0)
			pool->size = (size_t)granted;
	}
	return 0;
}

/* Only an empty pipe may go back to the pool: stale bytes would leak into
 * another connection. */
static void
pipe_give(struct pipe_pool *pool, int fds[2], int empty)
{
	stat_sub(&pool->in_use, 1);
	if (empty && pool->count < PIPE_POOL_MAX) {
		pool->fds[pool->count][0] = fds[0];
		pool->fds[pool->count][1] = fds[1];
		pool->count++;
	} else {
		close(fds[0]);
		close(fds[1]);
	}
	fds[0] = fds[1] = -1;
}

void
pump_init(struct pump *p)
{
	p->pipe[0] = p->pipe[1] = -1;
	p->buf = NULL;
	p->buf_off = 0;
	p->pending = 0;
	p->held = 0;
	p->total = 0;
	p->src_eof = 0;
	p->dst_shut = 0;
	p->large = 0;
	p->ring = 0;
	p->armed = 0;
	p->ahead = 0;
	p->ahead_buf = 0;
	p->sending = 0;
	p->sent = 0;
	p->nostream = 0;
	p->ahead_res = 0;
	p->sent_res = 0;
	p->stream = NULL;
}

/*
 * Copy buffers given back lately, for the next pump that needs one; per
 * thread, as a worker's pumps all run on its thread.  With io_uring a loop
 * pass holds many at once (their sends under way) and gives them all back
 * after: malloc would return that memory to the system and fault it in
 * again pass after pass (sysmalloc, madvise and copies from fresh pages:
 * 12 % of the daemon's samples under request/response, measured).  Only
 * as many are kept as were in use at once, at most SPARE_MAX.
 */
#define SPARE_MAX 64u
static _Thread_local uint8_t *spare[SPARE_MAX];
static _Thread_local unsigned nspare;

uint8_t *
pump_buffer(struct pump *p)
{
	if (p->buf == NULL)
		p->buf = nspare > 0 ? spare[--nspare] : malloc(PUMP_COPY_BUFSZ);
	return p->buf;
}

/* Nothing in flight: the pump holds no buffer. */
static void
buffer_drop(struct pump *p)
{
	if (p->buf != NULL && nspare < SPARE_MAX)
		spare[nspare++] = p->buf;
	else
		free(p->buf);
	p->buf = NULL;
}

void
pump_spares_free(void)
{
	while (nspare > 0)
		free(spare[--nspare]);
}

/* A result the ring left for the pump, as recv() or send() returns it. */
static ssize_t
ring_result(int32_t res)
{
	if (res >= 0)
		return res;
	errno = -res;
	return -1;
}

/*
 * Read from src into the pump's buffer.  When the worker's io_uring
 * receives for the pump, it hands over its result instead (its bytes are
 * at the buffer's start already), and without one the source counts as
 * empty: a recv() of our own would take bytes from under a queued one.
 * The ring out of buffers said to read it ourselves.
 */
static ssize_t
pump_recv(struct pump *p, int src)
{
	if (p->ahead) {
		p->ahead = 0;
		if (p->ahead_res != -ENOBUFS)
			return ring_result(p->ahead_res);
	} else if (p->ring) {
		errno = EAGAIN;
		return -1;
	}
	return recv(src, p->buf, PUMP_COPY_BUFSZ, 0);
}

void
pump_release(struct pump *p, struct pipe_pool *pool)
{
	if (p->pipe[0] >= 0)
		pipe_give(pool, p->pipe, p->pending == 0);
	buffer_drop(p);
	p->pending = 0;
	p->held = 0;
	p->ahead = 0;
}

void
pump_unhold(struct pump *p)
{
	p->pending += p->held;
	p->held = 0;
}

/* Write some of what is in flight, from the pipe or the buffer; returns
 * what send() or splice() did. */
static ssize_t
flush_some(struct pump *p, int dst)
{
	ssize_t n;

	if (p->ring && p->sent) {
		/* The ring's send of the buffer's pending bytes is done. */
		p->sent = 0;
		n = ring_result(p->sent_res);
	} else if (p->ring && p->pipe[0] < 0) {
		/* Queued, or to be queued once the pump returns (forward_wait). */
		errno = EAGAIN;
		n = -1;
	} else if (p->pipe[0] >= 0) {
		n = splice(p->pipe[0], NULL, dst, NULL, p->pending,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	} else {
		n = send(dst, p->buf + p->buf_off, p->pending, MSG_NOSIGNAL);
	}
	if (n > 0) {
		p->pending -= (size_t)n;
		p->total += (uint64_t)n;
		if (p->pipe[0] < 0)
			p->buf_off += (size_t)n;
	}
	return n;
}

/*
 * splice() from a socket into a pipe returns EAGAIN both when the socket is
 * empty and when the pipe is full.  The loop below only concludes "socket
 * empty" when the pipe was just emptied: with bytes left in the pipe it
 * writes them out first and tries again.  A read that returned less than
 * the pipe had room for found the socket drained; the loop then stops
 * without the extra splice() that would only say EAGAIN (if more arrived
 * meanwhile, the level-triggered watcher says so).
 */
static enum pump_status
pump_splice(struct pump *p, int src, int dst, struct pipe_pool *pool)
{
	uint64_t start = p->total;

	for (;;) {
		int moved = 0, drained = 0;
		ssize_t n;

		if (!p->src_eof) {
			size_t room;

			if (p->pipe[0] < 0 && pipe_take(pool, p->pipe) < 0)
				return PUMP_ERROR;
			room = pool->size > p->pending ? pool->size - p->pending : 1;
			n = splice(src, NULL, p->pipe[1], NULL, room,
			    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				p->pending += (size_t)n;
				moved = 1;
				drained = (size_t)n < room;
			} else if (n == 0) {
				p->src_eof = 1;
			} else if (errno == EINTR) {
				continue;
			} else if (errno != EAGAIN) {
				return PUMP_ERROR;
			}
		}
		if (p->pending > 0) {
			n = flush_some(p, dst);
			if (n > 0) {
				moved = 1;
			} else if (n < 0 && errno == EINTR) {
				continue;
			} else if (n < 0 && errno == EAGAIN) {
				return PUMP_WANT_WRITE;
			} else {
				return PUMP_ERROR;
			}
		}
		if (p->pending == 0 && p->pipe[0] >= 0)
			pipe_give(pool, p->pipe, 1);
		if (!moved || (p->pending == 0 &&
		    (drained || p->total - start >= PUMP_BUDGET)))
			return PUMP_WANT_READ;
	}
}

static enum pump_status
pump_copy(struct pump *p, int src, int dst)
{
	uint64_t start = p->total;

	for (;;) {
		int moved = 0, drained = 0;
		ssize_t n;

		if (!p->src_eof && p->pending == 0) {
			if (pump_buffer(p) == NULL)
				return PUMP_ERROR;
			n = pump_recv(p, src);
			if (n > 0) {
				p->pending = (size_t)n;
				p->buf_off = 0;
				moved = 1;
				drained = (size_t)n < PUMP_COPY_BUFSZ;
			} else if (n == 0) {
				p->src_eof = 1;
			} else if (errno == EINTR) {
				continue;
			} else if (errno != EAGAIN) {
				return PUMP_ERROR;
			}
		}
		if (p->pending > 0) {
			n = flush_some(p, dst);
			if (n > 0) {
				moved = 1;
			} else if (n < 0 && errno == EINTR) {
				continue;
			} else if (n < 0 && errno == EAGAIN) {
				return PUMP_WANT_WRITE;
			} else {
				return PUMP_ERROR;
			}
		}
		if (!moved || (p->pending == 0 &&
		    (drained || p->total - start >= PUMP_BUDGET))) {
			/* Nothing in flight: an idle connection holds no buffer. */
			buffer_drop(p);
			return PUMP_WANT_READ;
		}
	}
}

/* framed_read(): what is in flight must be written out before this read. */
#define FRAMED_FLUSH (-2)
/* framed_read(): a large payload begins, for the ring (uring_stream.c). */
#define FRAMED_STREAM (-3)
/* The most a Sized Envelope's header takes: type and a 5-byte size. */
#define ENVELOPE_HEAD_MAX (1u + NMF_MBINT_MAX_BYTES)

/*
 * How many bytes from here may go by splice: the rest of a large payload,
 * or, after a spliced envelope, the whole next envelope when a peek at its
 * header shows it large too (its header bytes are left in head, *headlen
 * of them, for the follower).  0: read into the buffer instead; -1: the
 * peek failed (errno).
 */
static ssize_t
splice_span(struct pump *p, int src, const struct nmf_flow *flow,
    uint8_t *head, size_t *headlen)
{
	struct nmf_flow probe = *flow;
	ssize_t n;
	size_t i;

	*headlen = 0;
	if (flow->state == NMF_FLOW_PAYLOAD)
		return flow->remaining >= PUMP_SPLICE_MIN ? (ssize_t)flow->remaining : 0;
	if (flow->state != NMF_FLOW_RECORD || !p->large)
		return 0;
	n = recv(src, head, ENVELOPE_HEAD_MAX, MSG_PEEK);
	if (n <= 0)
		return n; /* end of stream: the buffer read sees it too */
	for (i = 0; i < (size_t)n && probe.state != NMF_FLOW_PAYLOAD; i++)
		(void)nmf_flow_feed(&probe, head + i, 1);
	if (probe.state != NMF_FLOW_PAYLOAD || probe.remaining < PUMP_SPLICE_MIN) {
		p->large = 0;
		return 0;
	}
	*headlen = i;
	return (ssize_t)(i + probe.remaining);
}

/* Following a session, read what the follower allows into the pipe or the
 * buffer.  Sets *drained when the source gave less than asked. */
static ssize_t
framed_read(struct pump *p, int src, enum forward_method method,
    struct pipe_pool *pool, struct nmf_flow *flow, int *drained)
{
	uint8_t head[ENVELOPE_HEAD_MAX];
	size_t headlen = 0;
	ssize_t n, span = 0;

	/* Bytes waiting in the buffer go out before anything else is read:
	 * the pipe would overtake them. */
	if (p->pending > 0 && p->pipe[0] < 0)
		return FRAMED_FLUSH;
	/* On the ring, a large payload is the ring's to move, unless it could
	 * not take it. */
	if (flow->state != NMF_FLOW_PAYLOAD)
		p->nostream = 0;
	else if (p->ring && !p->nostream && !p->ahead && p->pipe[0] < 0 &&
	    flow->remaining >= PUMP_SPLICE_MIN)
		return FRAMED_STREAM;
	/* uring splices large envelopes too (uring.h), once the ring's
	 * receive is taken: its bytes come first. */
	if ((method == FORWARD_SPLICE || (method == FORWARD_URING && !p->ahead)) &&
	    (span = splice_span(p, src, flow, head, &headlen)) < 0)
		return -1;
	/* (Without a pipe, as on EMFILE, the payload is copied instead.) */
	if (span > 0 && (p->pipe[0] >= 0 || pipe_take(pool, p->pipe) == 0)) {
		size_t room = pool->size - p->pending;
		size_t want = (size_t)span < room ? (size_t)span : room;
		size_t h;

		/* Write out what the pipe holds before a smaller piece; an
		 * empty pipe takes what it can, however small it was made. */
		if (p->pending > 0 && (want < headlen || want < PUMP_SPLICE_MIN))
			return FRAMED_FLUSH;
		n = splice(src, NULL, p->pipe[1], NULL, want,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			/* The peeked header went first, as splice moves bytes
			 * in order. */
			h = (size_t)n < headlen ? (size_t)n : headlen;
			(void)nmf_flow_feed(flow, head, h);
			nmf_flow_skip(flow, (size_t)n - h);
			p->pending += (size_t)n;
			p->large = 1;
			*drained = (size_t)n < want;
		}
		return n;
	}
	if (p->pending > 0)
		return FRAMED_FLUSH;
	if (pump_buffer(p) == NULL)
		return -1;
	n = pump_recv(p, src);
	if (n > 0) {
		size_t used = nmf_flow_feed(flow, p->buf, (size_t)n);

		p->buf_off = 0;
		p->pending = used;
		p->held = (size_t)n - used;
		*drained = (size_t)n < PUMP_COPY_BUFSZ;
	}
	return n;
}

/*
 * Follow the session record by record: only bytes up to its End become
 * pending, so the End is the last byte this direction forwards; the pump
 * then stops reading, and what it read past the End stays held.  The pipe
 * is filled with as many large envelopes as it takes before it is written
 * out; the buffer takes one read at a time.
 */
static enum pump_status
pump_framed(struct pump *p, int src, int dst, enum forward_method method,
    struct pipe_pool *pool, struct nmf_flow *flow)
{
	uint64_t start = p->total;

	for (;;) {
		int moved = 0, drained = 0;
		ssize_t n;

		while (!p->src_eof && !drained && flow->state != NMF_FLOW_ENDED &&
		    flow->state != NMF_FLOW_OPAQUE) {
			n = framed_read(p, src, method, pool, flow, &drained);
			if (n == FRAMED_FLUSH)
				break;
			if (n == FRAMED_STREAM) {
				buffer_drop(p);
				return PUMP_STREAM;
			}
			if (n == 0) {
				p->src_eof = 1;
			} else if (n < 0 && errno == EINTR) {
				continue;
			} else if (n < 0 && errno == EAGAIN) {
				drained = 1;
			} else if (n < 0) {
				return PUMP_ERROR;
			} else {
				moved = 1;
				if (p->pipe[0] < 0)
					break;
			}
		}
		if (p->pending > 0) {
			n = flush_some(p, dst);
			if (n > 0) {
				moved = 1;
			} else if (n < 0 && errno == EINTR) {
				continue;
			} else if (n < 0 && errno == EAGAIN) {
				return PUMP_WANT_WRITE;
			} else {
				return PUMP_ERROR;
			}
		}
		if (p->pending > 0)
			continue;
		if (p->pipe[0] >= 0)
			pipe_give(pool, p->pipe, 1);
		if (flow->state == NMF_FLOW_ENDED || !moved || drained ||
		    flow->state == NMF_FLOW_OPAQUE || p->total - start >= PUMP_BUDGET) {
			/* Nothing in flight: keep the buffer only for held bytes. */
			if (p->held == 0) {
				buffer_drop(p);
			}
			return flow->state == NMF_FLOW_ENDED ||
			    flow->state == NMF_FLOW_OPAQUE ? PUMP_ENDED : PUMP_WANT_READ;
		}
	}
}

enum pump_status
pump_run(struct pump *p, int src, int dst, enum forward_method method,
    struct pipe_pool *pool, int other_done, struct nmf_flow *flow)
{
	enum pump_status status = PUMP_WANT_READ;
	int plain = flow == NULL;

	if (p->dst_shut)
		return PUMP_DONE;
	if (!plain)
		status = pump_framed(p, src, dst, method, pool, flow);
	/* Bytes in flight go out the way they came in: from the pipe by
	 * splice, from the buffer by copy. */
	if (plain && (p->pipe[0] >= 0 ||
	    (method == FORWARD_SPLICE && p->buf == NULL))) {
		status = pump_splice(p, src, dst, pool);
		/* No descriptor left for a pipe: copy this transfer instead
		 * of failing the connection. */
		if (status == PUMP_ERROR && p->pipe[0] < 0 &&
		    (errno == EMFILE || errno == ENFILE))
			status = pump_copy(p, src, dst);
	} else if (plain) {
		status = pump_copy(p, src, dst);
		/* uring: once what the ring received is out, a stream nettcpd
		 * does not follow is spliced, as a large envelope is (uring.h);
		 * the ring's next receive waits for it to drain the socket. */
		if (status == PUMP_WANT_READ && method == FORWARD_URING &&
		    p->buf == NULL && !p->ahead && !p->src_eof)
			status = pump_splice(p, src, dst, pool);
	}
	/* Pass the FIN on only once every byte before it is delivered. */
	if (status == PUMP_WANT_READ && p->src_eof) {
		if (!other_done && shutdown(dst, SHUT_WR) < 0)
			return PUMP_ERROR;
		p->dst_shut = 1;
		status = PUMP_DONE;
	}
	return status;
}
