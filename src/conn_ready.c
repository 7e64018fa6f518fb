/*
 * conn_ready.c - the order a worker serves its ready sockets in: the
 * kernel's.  libev invokes one loop iteration's ready watchers newest
 * first, so the socket epoll reported first waited for every other one,
 * which doubled the tail latency of request/response (README,
 * Performance).  A connection's watchers only queue it, with the events
 * that fired; before the loop waits again (the worker's ev_prepare), the
 * queue is served oldest first.  Stopping a watcher drops its queued
 * event, as libev drops a stopped watcher's pending one: it may concern a
 * socket closed since.  With forward = uring the ring's completions are
 * queued the same way (uring.c), and the pass submits what serving asked
 * of the ring.
 */
#include "conn_int.h"

#include <stdlib.h>

#include "uring.h"

/* Rounds of serving and submitting in one pass (conn_run_ready). */
#define READY_ROUNDS 16u

/* Which of the connection's watchers io is, as a bit of ready_ev. */
static unsigned
ready_bit(const struct conn *c, const ev_io *io)
{
	if (io == &c->client_rd)
		return READY_CLIENT_RD;
	if (io == &c->client_wr)
		return READY_CLIENT_WR;
	if (io == &c->backend_rd)
		return READY_BACKEND_RD;
	return READY_BACKEND_WR;
}

void
ready_unwatch(struct conn *c, ev_io *io)
{
	ev_io_stop(c->w->loop, io);
	c->ready_ev &= ~ready_bit(c, io);
}

static void
serve(struct conn *c, unsigned bit)
{
	switch (bit) {
	case READY_CLIENT_RD:
		conn_client_io(c, EV_READ);
		break;
	case READY_CLIENT_WR:
		conn_client_io(c, EV_WRITE);
		break;
	case READY_BACKEND_RD:
		conn_backend_io(c, EV_READ);
		break;
	case READY_BACKEND_WR:
		conn_backend_io(c, EV_WRITE);
		break;
	default:
		/* A receive or send io_uring did for a direction (uring.c),
		 * which only forwarding queues. */
		if (c->state == CONN_FORWARDING) {
			if (bit == READY_UP_RING)
				forward_up(c);
			else
				forward_down(c);
		}
		break;
	}
}

void
ready_queue(struct conn *c, unsigned bit)
{
	struct worker *w = c->w;

	if (c->ready_at == 0) {
		if (w->nready == w->ready_cap) {
			size_t cap = w->ready_cap ? 2 * w->ready_cap : 64;
			struct conn **r = reallocarray(w->ready, cap, sizeof(*r));

			if (r == NULL) {
				serve(c, bit); /* no room to queue: serve at once */
				return;
			}
			w->ready = r;
			w->ready_cap = cap;
		}
		w->ready[w->nready++] = c;
		c->ready_at = (unsigned)w->nready;
	}
	c->ready_ev |= bit;
}

void
ready_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	(void)loop;
	(void)revents;
	ready_queue(c, ready_bit(c, io));
}

/*
 * Queued newest first: the last one queued is the one the kernel
 * reported first.  A connection stays in its slot while its events are
 * served, so that one of them closing it (ready_forget) ends the rest.
 * Serving can queue more (a teardown takes the ring's completions,
 * uring_cancel): those are served after the batch.
 */
static void
serve_queue(struct worker *w)
{
	size_t done = 0;

	while (done < w->nready) {
		size_t batch = w->nready;

		for (size_t i = batch; i-- > done;) {
			struct conn *c;

			while ((c = w->ready[i]) != NULL && c->ready_ev != 0) {
				unsigned bit = c->ready_ev & -c->ready_ev;

				c->ready_ev &= ~bit;
				serve(c, bit);
			}
			if (c != NULL)
				c->ready_at = 0;
		}
		done = batch;
	}
	w->nready = 0;
}

/*
 * Before the loop waits: serve the queue, then submit what that asked of
 * the ring (forward = uring).  The ring's completions that came since the
 * loop polled are queued first, with the sockets epoll reported: the
 * kernel finished their work when the worker woke (COOP_TASKRUN), and
 * left to the next poll they would be served a pass after them (a client
 * closing would free its descriptors after the next accept).  A send the
 * kernel finished at once is served in the same pass, as the epoll path's
 * send() returns at once: a session whose End went out ends, and its
 * backend connection is in the pool, before the loop accepts the next
 * client.  A few rounds at most; what is left waits for the ring's
 * watcher.
 */
void
conn_run_ready(struct ev_loop *loop, ev_prepare *prep, int revents)
{
	struct worker *w = prep->data;

	(void)loop;
	(void)revents;
	uring_reap(w);
	for (unsigned round = 1;; round++) {
		serve_queue(w);
		if (!uring_submit(w, round < READY_ROUNDS))
			break;
	}
}

void
ready_forget(struct conn *c)
{
	if (c->ready_at != 0)
		c->w->ready[c->ready_at - 1] = NULL;
}
