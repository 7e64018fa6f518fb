/*
 * worker.h - one thread running one event loop, and everything it owns: its
 * watches on the listening sockets (every worker watches the same ones),
 * its connections, its pipe pool, its backend pool.  Workers share only
 * the generations (immutable, reference-counted), so the forwarding path
 * takes no locks.
 */
#ifndef NETTCPD_WORKER_H
#define NETTCPD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include <ev.h>

#include "bpool.h"
#include "config.h"
#include "generation.h"
#include "pending.h"
#include "log.h"
#include "pump.h"
#include "ratelimit.h"
#include "stats.h"

struct conn;
struct listener;
struct listen_sock;

/* Why accepting is paused; accepting resumes when no reason is left. */
enum accept_pause {
	ACCEPT_PAUSE_LIMIT = 1 << 0,   /* max_connections reached */
	ACCEPT_PAUSE_BACKOFF = 1 << 1, /* out of file descriptors, waiting */
};

/*
 * The process-wide limits, which every worker counts against (atomics; the
 * preamble table has a lock, taken only as a preamble begins or ends), as
 * SMSvcHost's maxPendingConnections and HAProxy's maxconn count a whole
 * process.
 */
struct limits {
	atomic_uint nconns;             /* client connections open */
	struct pending_table pending;   /* of them, those in their preamble, */
	                                /* by source (max_pending) */
	unsigned max_connections, max_pending;
	struct worker *workers;         /* to wake the ones paused at the limit */
	unsigned nworkers;
};

/* Take a connection slot: 1 taken, 0 at max_connections.  The last slot
 * taken tells every other worker to pause accepting. */
int limits_take(struct limits *l, const struct worker *self);

/* Give one back; at the limit until now, tell every other worker, so that
 * a paused one accepts again. */
void limits_give(struct limits *l, const struct worker *self);

/* Over max_pending: choose the preambles that give way, the process's
 * whole set counted; the worker holding each is woken to shed it
 * (conn_shed), self after this returns. */
void limits_over(struct limits *l, const struct worker *self);

struct worker {
	struct ev_loop *loop;
	struct limits *limits;
	struct generation *gen;         /* what new connections (and the next */
	                                /* session of an idle one) start under */
	pthread_mutex_t next_lock;      /* guards next_gen and next_socks: */
	struct generation *next_gen;    /* published by a reload, not taken yet, */
	const struct listen_sock *next_socks; /* with the sockets to watch */
	size_t next_nsocks;
	ev_async reload;                /* says so */
	atomic_uint gen_number;         /* the generation it took last */
	unsigned index;                 /* 0 .. workers-1, for logs */
	ev_async wake;                  /* the process went below max_connections */
	ev_timer access_flush;          /* writes its access-log records, 1 s */
	unsigned keep_slot : 1;         /* the connection being closed hands */
	                                /* its slot to the one being accepted */

	struct listener *listeners;
	size_t nlisteners;
	unsigned accept_paused;         /* bit set of enum accept_pause */
	ev_timer accept_backoff;
	ev_tstamp backoff_logged_at;    /* last "out of descriptors" line, 0: never */
	unsigned backoffs_unlogged;     /* backoffs since that line */
	struct ratelimit client_lines;  /* notice and info lines about clients */
	ev_timer client_lines_end;      /* says how many a window held back */

	struct conn *conns;             /* every open client connection */
	unsigned nconns;
	struct conn **ready;            /* those whose sockets were found */
	size_t nready, ready_cap;       /* ready, served by ready_run */
	ev_prepare ready_run;           /* before the loop waits again */
	unsigned npending;              /* connections in their preamble */
	struct pending_owner pending;   /* of them, those chosen to give way */
	struct conn *idle_oldest;       /* connections between sessions, */
	struct conn *idle_newest;       /* oldest first: the first to give */
	unsigned nidle;                 /* way at max_connections */

	struct pipe_pool pipes;
	struct uring *uring;            /* forward = uring: its ring (uring.h); */
	unsigned uring_tried : 1;       /* tried once, NULL where it failed */
	struct bpool backends;          /* idle backend connections */
	struct worker_stats stats;      /* for /metrics: written by this */
	struct route_stats_table route_stats; /* thread only (stats.h) */

	pthread_t thread;
	ev_async stop;                  /* another thread asks this one to stop */

	/* Shutdown: accept no more, close what is idle, let sessions end. */
	ev_async drain;                 /* the main thread asks for the drain */
	unsigned draining : 1;
	atomic_int released;            /* draining: it watches no listener now */
	atomic_int drained;             /* draining, and no connection left */
	struct ev_loop *main_loop;      /* told of a step of a reload or a */
	ev_async *main_notify;          /* drain through main_notify */
};

/* How many workers cfg asks for ("auto": one per online CPU). */
unsigned worker_count(const struct config *cfg);

/*
 * Set up worker index of n under gen (it takes its own reference): its loop
 * and its watches on the nsocks listening sockets the main thread opened
 * (and keeps open while it runs).  Returns 0, or -1 after logging why, with
 * nothing left to free.
 */
int worker_init(struct worker *w, struct generation *gen, struct limits *limits,
    const struct listen_sock *socks, size_t nsocks, unsigned index, unsigned n);

/*
 * Hand a started worker a new generation (it takes its own reference) and
 * the listening sockets to watch from then on; safe from any thread.
 * Connections already under way keep theirs.  Once it has taken them it
 * sets w->gen_number and sends w->main_notify.
 */
void worker_publish(struct worker *w, struct generation *gen,
    const struct listen_sock *socks, size_t nsocks);

/* Run the worker's loop on a thread of its own.  Returns 0 or -1. */
int worker_start(struct worker *w);

/* Ask a started worker to stop; safe from any thread. */
void worker_stop(struct worker *w);

/*
 * Ask a started worker to drain, from any thread: it stops watching the
 * listening sockets (then sets w->released), closes its connections idle
 * between sessions, closes the others as their sessions end, and once it
 * holds none sets w->drained; after each step it sends w->main_notify to
 * w->main_loop.
 */
void worker_drain(struct worker *w);

/*
 * In the worker's thread: whether a line about one client (not about the
 * daemon) at level is to be written now.  A client can provoke notice and
 * info lines at will, so at most LOG_CLIENT_BURST of them a second pass;
 * the window's end says how many were held back.  Warnings, errors and
 * debug lines always pass; a level log_level hides is never counted.
 */
int worker_log_client(struct worker *w, enum log_level level);

/* In the worker's thread: tell the main thread if the drain is over. */
void worker_check_drained(struct worker *w);

/*
 * Wait for a started worker to stop, then close its listeners and every
 * connection it holds and free what it owns.  Also for a worker that was
 * initialised but never started.
 */
void worker_finish(struct worker *w, int started);

#endif
