/*
 * uring_int.h - what uring.c and uring_stream.c share: the worker's ring
 * and how a completion names what it is for.  Nothing else includes it
 * (uring.h is the interface), and only a build with liburing.
 */
#ifndef NETTCPD_URING_INT_H
#define NETTCPD_URING_INT_H

#include <stdint.h>

#include <ev.h>
#include <liburing.h>

struct conn;
struct pump;
struct worker;

/* A stream's buffers (uring_stream.c): a power of two of them. */
#define STREAM_BUF 65536u
#define STREAM_BUFS 128u
#define STREAM_BGID 1

struct uring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;              /* URING_BUFS of PUMP_COPY_BUFSZ */
	/* Followed sessions read ahead (uring_stream.c); sbr is NULL where
	 * the kernel cannot. */
	struct io_uring_buf_ring *sbr;
	uint8_t *sbufs;             /* STREAM_BUFS of STREAM_BUF */
	uint32_t slen[STREAM_BUFS]; /* bytes each holds, while queued */
	int16_t snext[STREAM_BUFS]; /* the next of its direction's queue; -1 */
	struct conn *tearing;       /* uring_cancel's, while it reaps */
	ev_io watch;                /* the ring's fd: completions wait */
	struct worker *w;
};

/*
 * What a completion is for: user_data is the connection's address (malloc
 * aligns it to 16) with the direction in bit 0 (0: up, 1: down), the
 * operation in bit 1 and, in bit 2, whether it is a stream's
 * (uring_stream.c).  0 names nothing: a cancel's own completion.
 */
enum { OP_RECV = 0, OP_SEND = 2, OP_STREAM = 4, OP_BITS = 7 };

uint64_t uring_tag(const struct conn *c, const struct pump *p, int op);

/* An SQE, the queue submitted first if it is full; NULL if even that
 * fails (the ring is broken). */
struct io_uring_sqe *uring_sqe(struct uring *u);

/* No SQE for an operation: it fails at once, as a completion says. */
void uring_sqe_failed(struct uring *u, struct conn *c, struct pump *p, int op);

/* Give a buffer back to the ring of small ones. */
void uring_buf_give(struct uring *u, unsigned bid);

/* uring_stream.c: its buffers and the kernel's check, at the ring's
 * opening: NULL, or why large payloads are spliced (sbr stays NULL). */
const char *stream_open(struct uring *u);
void stream_close(struct uring *u);

/* A stream's completion: only state is written (uring.c, complete());
 * 1 if the connection is to be served for it. */
int stream_complete(struct uring *u, struct conn *c, struct pump *p,
    const struct io_uring_cqe *cqe);

/* A connection's stream goes (uring_cancel, uring_close): its buffers go
 * back, once nothing is queued for it. */
void stream_drop(struct uring *u, struct pump *p);

#endif
