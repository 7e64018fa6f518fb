/*
 * metrics.h - /metrics in the Prometheus text format, on a listener of its
 * own (metrics = ADDR:PORT), served on its own thread (metrics_http.c).
 */
#ifndef NETTCPD_METRICS_H
#define NETTCPD_METRICS_H

#include <stddef.h>

#include "stats.h"
#include "worker.h"

/* What the main thread counts (it alone writes them). */
struct process_stats {
	stat_t reloads_ok, reloads_failed;
	stat_t last_reload_ok;         /* 1: the last load (or the start) took */
	stat_t generation;             /* the number of the newest */
	stat_t generation_loaded_ms;   /* when it was loaded: Unix time, ms */
	stat_t generation_load_us;     /* how long building it took */
	double start_time;             /* Unix time */
	stat_t control_connections;    /* open now (control.c) */
	stat_t registrations[2];       /* live, by enum ctl_mode */
	stat_t control_requests[8][2]; /* by enum ctl_verb (0: unreadable), */
	                               /* answered OK [0] or ERR [1] */
};

/* Everything a scrape reads; it outlives the server. */
struct metrics_view {
	const struct worker *workers;
	unsigned nworkers;
	const struct limits *limits;
	const struct process_stats *process;
};

/* The exposition, in a buffer the caller frees (*len bytes), or NULL when
 * out of memory. */
char *metrics_format(const struct metrics_view *v, size_t *len);

struct metrics_server;

/*
 * Serve /metrics on the listening socket fd (the server owns it from
 * here).  Start it after the privilege drop: its thread is one more that
 * must not keep root.  Returns NULL after logging why; fd is closed then.
 */
struct metrics_server *metrics_start(int fd, const char *text,
    const struct metrics_view *v);

/* Stop serving, join the thread, close the socket.  NULL is fine. */
void metrics_stop(struct metrics_server *m);

#endif
