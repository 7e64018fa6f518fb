/*
 * stats.h - what each worker counts for /metrics (metrics.c sums them).
 *
 * Every counter is written by one thread only, its worker's, so a count is
 * a relaxed load and store (a plain add on x86 and arm64, no lock prefix,
 * no shared cache line); the scrape thread reads them with relaxed loads
 * and sums the workers.  A gauge is a pair a worker raises and lowers
 * itself.  Nothing on the forwarding path takes a lock.
 */
#ifndef NETTCPD_STATS_H
#define NETTCPD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "nmf.h"

typedef _Atomic uint64_t stat_t;

static inline void
stat_add(stat_t *s, uint64_t n)
{
	atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + n,
	    memory_order_relaxed);
}

static inline void
stat_sub(stat_t *s, uint64_t n)
{
	atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) - n,
	    memory_order_relaxed);
}

static inline uint64_t
stat_read(const stat_t *s)
{
	return atomic_load_explicit(s, memory_order_relaxed);
}

/* Latency buckets, in seconds, shared by every histogram: from 50 us (a
 * loopback connect) to 10 s (a slow preamble). */
#define STAT_HIST_BUCKETS 14
extern const double stat_hist_bounds[STAT_HIST_BUCKETS];

struct stat_hist {
	stat_t bucket[STAT_HIST_BUCKETS + 1]; /* not cumulative; the last: +Inf */
	stat_t sum_ns;
	stat_t count;
};

void stat_observe(struct stat_hist *h, double seconds);
/* The same for a histogram that several threads write (backend.h's). */
void stat_observe_shared(struct stat_hist *h, double seconds);

/* How a connection ended, as conn.h's enum conn_outcome counts them. */
#define STAT_OUTCOMES 10

/* What the parser or the routing decision refused in a preamble. */
enum preamble_error {
	PREAMBLE_ERR_NONE = 0,
	PREAMBLE_ERR_RECORD,     /* a record type that has no place there */
	PREAMBLE_ERR_VERSION,    /* framing major version is not 1 */
	PREAMBLE_ERR_MODE,       /* a mode other than duplex or singleton */
	PREAMBLE_ERR_SIZE,       /* a size field too long or too large */
	PREAMBLE_ERR_TOO_LONG,   /* Via, content type or upgrade over its limit */
	PREAMBLE_ERR_ENCODING,   /* an unknown Known Encoding value */
	PREAMBLE_ERR_VIA,        /* a Via that is not a net.tcp URI */
	PREAMBLE_ERR_UPGRADE,    /* a terminating route without its upgrade */
	PREAMBLE_ERR_TIMEOUT,    /* preamble_timeout expired */
	PREAMBLE_ERR_PROXY,      /* listen_proxy: a bad, cut or late PROXY header */
	PREAMBLE_ERR_UNTRUSTED,  /* listen_proxy: a peer not in proxy_trusted */
	PREAMBLE_ERR_COUNT
};

const char *preamble_error_name(enum preamble_error e);

/* One worker's counts. */
struct worker_stats {
	stat_t accepted;                    /* client connections taken */
	stat_t refused;                     /* reset at once: max_connections */
	stat_t finished[STAT_OUTCOMES];     /* by enum conn_outcome */
	stat_t faults[NMF_FAULT_COUNT];     /* Fault records sent, by fault */
	stat_t preamble_errors[PREAMBLE_ERR_COUNT];
	stat_t sessions;                    /* routed */
	stat_t pool_hits, pool_misses;      /* followed sessions: pooled or new */
	stat_t pool_redials;                /* a pooled one was dead: dialled anew */
	stat_t tls_handshakes, tls_failures;
	stat_t pipes;                       /* pipes held by connections (gauge) */
	struct stat_hist route_seconds;     /* session start to its route */
};

/* How a handoff ended, as handoff.h's enum handoff_result counts them. */
#define STAT_HANDOFF_RESULTS 4

/* One route's counts in one worker. */
struct route_stats {
	stat_t sessions;                    /* a backend served */
	stat_t unavailable;                 /* every member failed */
	stat_t pool_hits, pool_misses;      /* followed sessions */
	stat_t denied;                      /* clients its rules or [global]'s */
	                                    /* refused at its Via */
	stat_t active;                      /* sessions under way (gauge) */
	stat_t bytes_up, bytes_down;
	stat_t handoffs[STAT_HANDOFF_RESULTS]; /* the main thread's table */
	                                    /* only (handoff.c) */
};

/*
 * Routes are counted by name, so that a route's counts run on across
 * reloads: each name ever loaded gets a slot (stats_route_slot, main
 * thread); each worker keeps its route counts in chunks of slots, which it
 * allocates itself on first use and never frees or moves, so the scrape
 * thread reads them while the worker writes.
 */
#define STATS_CHUNK 256u
#define STATS_MAX_CHUNKS 4096u      /* 1,048,576 route names */

struct route_stats_table {
	struct route_stats *_Atomic chunk[STATS_MAX_CHUNKS];
	struct route_stats overflow;    /* past the last chunk, or out of memory */
};

/* This worker's counts for slot (allocating its chunk on first use). */
struct route_stats *route_stats_get(struct route_stats_table *t, unsigned slot);

/* For the scrape thread: slot's counts, or NULL if never used. */
const struct route_stats *route_stats_peek(const struct route_stats_table *t,
    unsigned slot);

void route_stats_free(struct route_stats_table *t);

/*
 * The slot of a route name, the same for the life of the process (main
 * thread); UINT32_MAX when no memory.  Also serves the scrape thread,
 * which lists the names under the same lock.
 */
uint32_t stats_route_slot(const char *name);
struct route_table;

/* Count each route of t under its name's slot, and make the certificate
 * expiries of its terminating routes the ones stats_route_certs() lists
 * (main thread, before the table is published). */
void stats_bind_routes(struct route_table *t);

/* Call fn for each terminating route of the newest generation bound, with
 * its certificate's notAfter (Unix time), under the lock; returns the
 * count. */
unsigned stats_route_certs(void (*fn)(void *arg, const char *name,
    double not_after), void *arg);

/* Call fn for each slot in order, under the lock; returns the count. */
unsigned stats_route_names(void (*fn)(void *arg, unsigned slot, const char *name),
    void *arg);
void stats_route_names_free(void);

#endif
