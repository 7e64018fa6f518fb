/*
 * pump.h - move bytes one way between two non-blocking sockets.
 *
 * Splice mode moves them through a pipe without copying them to user space;
 * copy mode moves them with recv()/send() through a small buffer.  Either
 * store (pipe or buffer) is taken only while bytes are in flight and given
 * back as soon as it is empty, so an idle connection holds neither.  A pipe
 * that still holds bytes is closed, never reused.
 */
#ifndef NETTCPD_PUMP_H
#define NETTCPD_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "nmf.h"
#include "stats.h"

/* Idle pipes kept for reuse; more than this are closed when returned. */
#define PIPE_POOL_MAX 8
/* Size of the copy-mode buffer. */
#define PUMP_COPY_BUFSZ 16384u
/*
 * Bytes one direction may move per wakeup.  A fast stream must not keep
 * the worker from its other connections: past this the pump stops with its
 * buffer empty, and the level-triggered watcher brings it back on the
 * loop's next turn.
 */
#define PUMP_BUDGET (1024u * 1024u)
/*
 * Following a session, a Sized Envelope moves by splice when at least this
 * much of it is left: the rest of its payload after a read into the copy
 * buffer, or, once envelopes come this large, the whole envelope, its
 * header peeked at first, several to a pipe.  Smaller records are read
 * into the copy buffer together, which costs the same two calls as a
 * splice pair.
 */
#define PUMP_SPLICE_MIN 16384u

struct pipe_pool {
	int fds[PIPE_POOL_MAX][2];
	size_t count;
	int want_size;      /* F_SETPIPE_SZ for new pipes; 0: the kernel's default */
	size_t size;        /* what new pipes hold, as the kernel granted it */
	stat_t in_use;      /* pipes connections hold now (for /metrics) */
};

/* One direction of a connection. */
struct pump {
	int pipe[2];        /* splice mode: -1 when no pipe is held */
	uint8_t *buf;       /* copy mode: NULL when no buffer is held */
	size_t buf_off;     /* copy mode: first unsent byte in buf */
	size_t pending;     /* bytes read from the source, not yet written */
	size_t held;        /* following: bytes read after the End record, kept */
	                    /* in buf (after the pending ones) for what follows */
	uint64_t total;     /* bytes delivered to the destination */
	unsigned src_eof : 1;  /* the source sent FIN */
	unsigned dst_shut : 1; /* FIN passed on with shutdown(SHUT_WR) */
	unsigned large : 1;    /* following: the last envelope was spliced, so */
	                       /* the next one's header is peeked at first */
	/* forward = uring (uring.h): the worker's ring receives and sends. */
	unsigned ring : 1;     /* for this pump, which calls neither itself */
	unsigned armed : 1;    /* a receive is queued on the source */
	unsigned ahead : 1;    /* one completed: ahead_res is its result */
	unsigned ahead_buf : 1; /* its bytes are still in the ring's buffer */
	unsigned sending : 1;  /* a send of the pending bytes is queued */
	unsigned sent : 1;     /* one completed: sent_res is its result */
	unsigned nostream : 1; /* this payload is spliced: the ring could not */
	                       /* take it (uring_stream_start) */
	uint16_t ahead_bid;    /* ahead_buf: which (uring_take copies them */
	                       /* to buf's start before the pump runs) */
	int32_t ahead_res;     /* bytes; 0: the end of stream; < 0: -errno; */
	                       /* -ENOBUFS: no buffer, recv() it */
	int32_t sent_res;      /* bytes, or -errno */
	/* forward = uring: the session read ahead from a large payload on */
	/* (uring_stream.c); pending counts what the follower let through */
	struct ring_stream *stream;
};

enum pump_status {
	PUMP_WANT_READ,  /* wait until the source is readable */
	PUMP_WANT_WRITE, /* wait until the destination is writable (ring: */
	                 /* send the pending bytes, or wait for that send) */
	PUMP_DONE,       /* source ended and the FIN was passed on */
	PUMP_ERROR,      /* a socket failed (errno says why); tear both down */
	PUMP_STREAM,     /* following on the ring: a large payload begins; */
	                 /* the ring reads ahead from here (uring.h, */
	                 /* uring_stream_start) */
	PUMP_ENDED,      /* following: the follower stopped (End delivered, or */
	                 /* a byte that does not fit held back); the source */
	                 /* is not read further */
};

void pump_init(struct pump *p);

/* The copy buffer (a receive done by io_uring is copied into it,
 * uring_take), taken if the pump holds none: NULL when out of memory. */
uint8_t *pump_buffer(struct pump *p);

/* On a thread's way out: free the buffers kept for its pumps. */
void pump_spares_free(void);

/*
 * Move what can be moved now from src to dst.  Returns what to wait for.
 * On PUMP_ERROR errno holds the cause.  When other_done is set the other
 * direction has ended and the caller closes both sockets once this one
 * is done, so the FIN needs no shutdown() of its own.  With a flow the
 * pump follows the session and stops right after its End record, or right
 * before a byte the follower cannot place (PUMP_ENDED either way), holding
 * any bytes read past that point: they are never forwarded by this pump
 * unless the caller asks for it (pump_unhold).
 */
enum pump_status pump_run(struct pump *p, int src, int dst,
    enum forward_method method, struct pipe_pool *pool, int other_done,
    struct nmf_flow *flow);

/* Stop following: the held bytes are forwarded like any others. */
void pump_unhold(struct pump *p);

/* Give back whatever the pump holds (bytes in flight are lost). */
void pump_release(struct pump *p, struct pipe_pool *pool);

/* pipe_size: bytes each pipe should hold, 0 for the kernel's default. */
void pipe_pool_init(struct pipe_pool *pool, unsigned pipe_size);
void pipe_pool_drain(struct pipe_pool *pool);

#endif
