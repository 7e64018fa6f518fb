/*
 * uring.h - a worker's io_uring (forward = uring): the receives and sends
 * of clear forwarding are queued on it instead of waiting for epoll and
 * calling recv() and send(), so that however many messages a loop pass
 * moves, it costs an io_uring_enter or two (README, Performance).
 *
 * A direction that wants to read queues one receive on its source
 * (uring_read); the kernel does it into a buffer of the worker's
 * provided-buffer ring when bytes arrive; the completion queues the
 * connection as ready; serving it copies them into the pump's own buffer
 * (uring_take), and the pump takes them as if its recv() had returned
 * them.  A direction with bytes to write queues one send of them
 * (uring_write), whose result the pump takes as send()'s.  From a large
 * envelope's payload on, a followed session is read ahead by a multishot
 * receive into 64 KiB buffers, which the follower reads before any byte
 * goes on, up to the session's End (uring_stream.c; where the kernel
 * cannot, the payload is spliced as forward = splice does).  A stream
 * nettcpd does not follow is spliced once what the ring received of it is
 * out (pump.c), the pipe written out when its watcher says so: copying it
 * through the ring one buffer at a time costs more than the calls it
 * saves (make bench, bulk: a third to a half of splice's rate).
 * Everything else -- the session's end, half-closes, faults -- is the
 * epoll path's, unchanged.
 */
#ifndef NETTCPD_URING_H
#define NETTCPD_URING_H

#include "nmf.h"
#include "pump.h"

struct worker;
struct conn;

/*
 * The worker's ring, opened by worker_init (or on first use, after a
 * reload that turned forward = uring on); NULL where io_uring is
 * unavailable (a build without liburing, a kernel or seccomp filter that
 * refuses it), said once in the log: then the worker forwards by splice.
 */
struct uring *uring_get(struct worker *w);

/*
 * Queue a receive on fd for the pump p of c, unless one is queued or its
 * result waits; or a send of its pending bytes to fd, unless one is queued
 * or its result waits.  Its completion queues c as ready, and the pump
 * takes the result as if it had called recv() or send() itself.  From
 * then on the pump calls neither (pump.ring).
 */
void uring_read(struct worker *w, struct conn *c, struct pump *p, int fd);
void uring_write(struct worker *w, struct conn *c, struct pump *p, int fd);

/* Before the pump p of c runs: the bytes of a receive done for it go from
 * the ring's buffer to the pump's own, and the ring's buffer goes back. */
void uring_take(struct worker *w, struct pump *p);

/*
 * Before c's sockets close, its backend socket goes to the pool or its
 * buffers are freed: cancel its queued receives and sends and take their
 * completions, so that no completion names a freed connection and no
 * receive takes the next owner's bytes; and give back the ring's buffers
 * it holds.
 */
void uring_cancel(struct conn *c);

/*
 * A large payload (uring_stream.c): the pump stopped at it (PUMP_STREAM)
 * and the ring reads the session ahead from there, -1 where it cannot
 * (then the pump splices it: pump.nostream).  While the stream runs,
 * uring_stream_run takes its completions before the pump would run (1,
 * with what to wait for in *status), and uring_stream_wait queues its
 * receive and send; once the follower has stopped or the stream has
 * ended (0) the pump goes on, holding what was read past the stop.
 */
int uring_stream_start(struct worker *w, struct pump *p);
int uring_stream_run(struct worker *w, struct pump *p, struct nmf_flow *flow,
    enum pump_status *status);
void uring_stream_wait(struct worker *w, struct conn *c, struct pump *p,
    const struct nmf_flow *flow, int src, int dst);

/* Take the completions there are (uring.c: on the ring's watcher too). */
void uring_reap(struct worker *w);

/* Submit what the loop pass queued, before it waits; with and_reap, take
 * the completions already there.  1 if that queued connections as ready. */
int uring_submit(struct worker *w, int and_reap);

/* Once the worker's loop has returned: close the ring (which cancels what
 * is queued) and forget every queued receive and send. */
void uring_close(struct worker *w);

#endif
