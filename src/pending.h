/*
 * pending.h - the process's preambles in progress, counted by source, and
 * the choice of the one that gives way at max_pending.
 *
 * A source is an IPv4 address (/32; an IPv4-mapped IPv6 address counts as
 * its IPv4 address) or an IPv6 /64.  The preamble that gives way is the
 * oldest of the source holding the most; among sources holding equally
 * many, the one that has held that many the longest.  The choice is O(1):
 * sources sit in buckets by their count, each bucket oldest first.
 *
 * The table is shared by every worker (one lock); each entry belongs to
 * the worker (its owner) whose connection it is, and only that worker may
 * close the connection: the preamble chosen leaves its source and waits
 * in its owner's queue until the owner takes it (pending_next_doomed).
 *
 * Memory: a source exists while it holds a preamble, so there are never
 * more sources than preambles counted; a source that empties goes to a
 * free list and is reused, so the table allocates only when it holds more
 * sources, or a source more preambles, than it ever did before.
 */
#ifndef NETTCPD_PENDING_H
#define NETTCPD_PENDING_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

struct pending_source;

/* A worker's queue of its preambles chosen to give way. */
struct pending_owner {
	struct pending_entry *doomed_first, *doomed_last;
	void *data;                     /* the worker */
};

/* One preamble, inside its connection. */
struct pending_entry {
	struct pending_entry *prev, *next;  /* its source's, oldest first; */
	                                    /* or its owner's doomed queue */
	struct pending_source *source;      /* NULL once chosen */
	struct pending_owner *owner;
	unsigned doomed : 1;                /* in its owner's doomed queue */
};

/* Sources with equally many preambles, the one holding that many longest
 * first. */
struct pending_bucket {
	struct pending_source *first, *last;
};

struct pending_table {
	pthread_mutex_t lock;
	unsigned counted;               /* preambles in their sources */
	struct pending_source **hash;   /* sources by key, chained */
	unsigned hash_size;             /* a power of two */
	unsigned nsources;
	struct pending_bucket *by_count; /* [n]: the sources holding n */
	unsigned by_count_size;
	unsigned max;                   /* the most any source holds */
	struct pending_source *free;    /* emptied sources, for reuse */
	uint64_t seed[2];               /* the hash's key: a client cannot */
	                                /* choose addresses that collide */
	struct pending_source *spare;   /* holds what no allocation could */
};

/* Returns 0, or -1 (out of memory). */
int pending_init(struct pending_table *t);
void pending_destroy(struct pending_table *t);

/* A preamble begins: count e under the source of sa, for owner o.  When
 * no memory is left for a new source, e is counted under one shared
 * stand-in source instead: it still counts, and still gives way. */
void pending_add(struct pending_table *t, struct pending_entry *e,
    struct pending_owner *o, const struct sockaddr *sa);

/* The preamble is over (or its connection closed): forget e, wherever it
 * is (its source, its owner's queue, or taken already). */
void pending_remove(struct pending_table *t, struct pending_entry *e);

/* While more than limit preambles are counted, choose the one that gives
 * way, stop counting it and queue it for its owner.  Returns the owner of
 * the one queued, or NULL when not over the limit. */
struct pending_owner *pending_choose(struct pending_table *t, unsigned limit);

/* Take the next preamble queued for o (NULL: none). */
struct pending_entry *pending_next_doomed(struct pending_table *t,
    struct pending_owner *o);

/* How many preambles are counted (not yet chosen to give way). */
unsigned pending_counted(struct pending_table *t);

#endif
