/*
 * worker.h - one event loop and everything it owns: its listeners, its
 * connections, its pipe pool.  Nothing here is shared with another thread,
 * so the forwarding path takes no locks.
 */
#ifndef NETTCPD_WORKER_H
#define NETTCPD_WORKER_H

#include <ev.h>

#include "config.h"
#include "pump.h"

struct conn;
struct listener;

/* Why accepting is paused; accepting resumes when no reason is left. */
enum accept_pause {
	ACCEPT_PAUSE_LIMIT = 1 << 0,   /* max_connections reached */
	ACCEPT_PAUSE_BACKOFF = 1 << 1, /* out of file descriptors, waiting */
};

struct worker {
	struct ev_loop *loop;
	const struct config *cfg;
	struct route_table *routes;     /* the table new connections route with */

	struct listener *listeners;
	size_t nlisteners;
	unsigned accept_paused;         /* bit set of enum accept_pause */
	ev_timer accept_backoff;
	ev_tstamp backoff_logged_at;    /* last "out of descriptors" line, 0: never */
	unsigned backoffs_unlogged;     /* backoffs since that line */

	struct conn *conns;             /* every open client connection */
	unsigned nconns;
	struct conn *pending_oldest;    /* connections in their preamble, */
	struct conn *pending_newest;    /* oldest first */
	unsigned npending;

	struct pipe_pool pipes;
};

#endif
