/*
 * conn_ready.c - the order a worker serves its ready sockets in: the
 * kernel's.  libev invokes one loop iteration's ready watchers newest
 * first, so the socket epoll reported first waited for every other one,
 * which doubled the tail latency of request/response (README,
 * Performance).  A connection's watchers only queue it, with the events
 * that fired; before the loop waits again (the worker's ev_prepare), the
 * queue is served oldest first.  Stopping a watcher drops its queued
 * event, as libev drops a stopped watcher's pending one: it may concern a
 * socket closed since.
 */
#include "conn_int.h"

#include <stdlib.h>

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
	default:
		conn_backend_io(c, EV_WRITE);
		break;
	}
}

void
ready_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;
	struct worker *w = c->w;
	unsigned bit = ready_bit(c, io);

	(void)loop;
	(void)revents;
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

/* Queued newest first: the last one queued is the one the kernel
 * reported first.  A connection stays in its slot while its events are
 * served, so that one of them closing it (ready_forget) ends the rest. */
void
conn_run_ready(struct ev_loop *loop, ev_prepare *prep, int revents)
{
	struct worker *w = prep->data;

	(void)loop;
	(void)revents;
	for (size_t i = w->nready; i-- > 0;) {
		struct conn *c;

		while ((c = w->ready[i]) != NULL && c->ready_ev != 0) {
			unsigned bit = c->ready_ev & -c->ready_ev;

			c->ready_ev &= ~bit;
			serve(c, bit);
		}
		if (c != NULL)
			c->ready_at = 0;
	}
	w->nready = 0;
}

void
ready_forget(struct conn *c)
{
	if (c->ready_at != 0)
		c->w->ready[c->ready_at - 1] = NULL;
}
