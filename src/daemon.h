/*
 * daemon.h - what the main thread keeps between signals (main.c), and the
 * reload of a generation (reload.c).
 */
#ifndef NETTCPD_DAEMON_H
#define NETTCPD_DAEMON_H

#include <limits.h>
#include <stddef.h>

#include <ev.h>

#include "addr.h"
#include "config.h"
#include "generation.h"
#include "health.h"
#include "listener.h"
#include "metrics.h"
#include "worker.h"

/* Room for every error a broken config file can report. */
#define CONFIG_ERR_MAX 8192

/* What the main thread keeps between signals. */
struct daemon {
	const char *path;
	struct generation *gen;    /* the newest, published to every worker */
	struct worker *workers;
	unsigned nworkers;
	struct limits limits;      /* process-wide, counted by every worker */
	struct listen_sock *socks; /* one per listen address; the workers watch them */
	size_t nsocks;
	struct listen_sock *retired; /* a reload dropped their addresses: closed */
	size_t nretired;           /* once every worker took that generation */
	int reload_pending;        /* a SIGHUP came while the last reload was */
	                           /* being handed over: reload once it is */
	char exe[PATH_MAX];        /* this binary's path, read at start */
	char **argv;               /* as started: a binary upgrade runs it again */
	size_t ninherited;         /* listening sockets handed to this process */
	ev_child upgrade;          /* the new binary a SIGUSR2 started */
	int draining;              /* a first SIGTERM or SIGINT came */
	int detach;                /* -d: in the background */
	int pidfile_written;       /* cfg->pidfile holds this pid */
	ev_timer shutdown_timer;   /* shutdown_timeout */
	ev_async notify;           /* a worker took a generation, or drained */
	struct process_stats stats; /* for /metrics */
	struct metrics_view view;
	int metrics_fd;            /* the metrics listener, -1: none */
	char metrics_text[ADDR_TEXT_MAX];
	struct metrics_server *metrics;
	struct health *health;     /* the active checks; NULL once draining */
};

/* Say once how terminated TLS is carried, so an operator knows the cost. */
void daemon_log_tls_path(const struct config *cfg);

/* d->gen is the newest generation, loaded in load_seconds: for /metrics. */
void daemon_count_generation(struct daemon *d, double load_seconds);

/* Close the sockets of addresses a reload dropped, once every worker has
 * taken that generation. */
void daemon_retire_listeners(struct daemon *d);

/*
 * SIGHUP: load the file as the next generation, check all of it, and hand
 * it to every worker.  Returns 0 once it is published, -1 after logging
 * why not (the running generation goes on serving), 1 when the last
 * reload is still being handed to the workers: then d->reload_pending is
 * set, and the caller reloads again once daemon_retire_listeners() has
 * cleared d->retired, so the file read is the newest.
 */
int daemon_reload(struct daemon *d);

#endif
