/*
 * backend.h - a route's backend members: the list as the configuration
 * writes it, which member serves the next session (balance), and each
 * member's health as every worker sees it.
 *
 * A list is part of a route table and never changes; the health of a
 * member lives beside it in a record that all workers share through
 * atomics and that outlives reloads: it is keyed by route name and member
 * address, so a reload that keeps a member keeps what is known of it.
 * The same address in two routes has two records: a member can be down
 * for one route (its health check's Via is not served) and up for another.
 */
#ifndef NETTCPD_BACKEND_H
#define NETTCPD_BACKEND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "stats.h"

#define BACKEND_MAX_MEMBERS 64u    /* a session's tried set is a 64-bit mask */
#define BACKEND_MAX_WEIGHT 256u
#define BACKEND_DEFAULT_FAIL_THRESHOLD 3u
#define BACKEND_DEFAULT_FAIL_TIMEOUT 10.0

/* What an active health check found (health.c), for the counts below. */
enum backend_check {
	BACKEND_CHECK_OK = 0,      /* 0B, then End both ways */
	BACKEND_CHECK_FAULT,       /* a framing Fault: the Via is not served */
	BACKEND_CHECK_TIMEOUT,     /* no whole answer within check_timeout */
	BACKEND_CHECK_REFUSED,     /* the connect was refused */
	BACKEND_CHECK_ERROR,       /* anything else: garbage, a close, errno */
	BACKEND_CHECK_COUNT
};

enum balance {
	BALANCE_ROUNDROBIN = 0, /* smooth weighted round robin, as nginx's */
	BALANCE_LEASTCONN,      /* fewest sessions under way, by weight */
	BALANCE_FIRST,          /* the first member in the list that is up */
};

/* One member's health and counts, shared by every worker for the life of
 * the process (backend_bind). */
struct backend_health {
	_Atomic unsigned down;         /* 1 while skipped or checked down */
	_Atomic unsigned fails;        /* consecutive failed connects */
	_Atomic int64_t retry_ms;      /* down: tried again from then (ms) */
	_Atomic unsigned active;       /* sessions on it now (leastconn) */
	stat_t connect_failures;       /* written with backend_count() */
	struct stat_hist connect_seconds;
	stat_t checks[BACKEND_CHECK_COUNT]; /* active checks, by result */
	_Atomic unsigned held;         /* checked down: only a check brings */
	                               /* it up (health.c) */
	char *route, *backend;         /* the labels: route name, member text */
	unsigned epoch;                /* the last generation that bound it */
};

struct backend_member {
	struct addr addr;
	char *text;                    /* the address as written */
	unsigned weight;               /* 1 to BACKEND_MAX_WEIGHT */
	unsigned backup : 1;           /* serves only when no primary is up */
	struct backend_health *health; /* NULL until bound */
};

struct backend_list {
	struct backend_member *m;
	size_t n;
	enum balance balance;
	unsigned fail_threshold;       /* consecutive failures that skip one */
	double fail_timeout;           /* seconds it is skipped */
	double check_interval;         /* active checks every so often; 0: off */
	double check_timeout;          /* for a whole check */
	unsigned rise, fall;           /* checks in a row that change the state */
	char *check_via;               /* the Via a check asks for */
	uint8_t *seq[2];               /* smooth round-robin order of primaries */
	size_t nseq[2];                /* [0] and backups [1], one weight each */
	_Atomic uint64_t *turn;        /* the next turn: the one field that */
	                               /* changes, shared by the workers */
};

/*
 * Parse "ADDR [weight=N] [backup], ..." into l (balance and the health
 * settings at their defaults).  Returns 0, or -1 with the reason in err,
 * l then empty.
 */
int backend_list_parse(const char *text, struct backend_list *l, char *err,
    size_t errlen);

/* A list of the one member addr (text as written): 0, or -1 (no memory). */
int backend_list_single(struct backend_list *l, const struct addr *addr,
    const char *text);

void backend_list_free(struct backend_list *l);

/* Same members, in the same order, with the same weights and backups: a
 * pinned stream's backend did not change (generation_policy_changed). */
int backend_list_equal(const struct backend_list *a, const struct backend_list *b);

/*
 * Give each member its shared health record for route (main thread, before
 * the table is published).  Returns 0, or -1 when no memory (the members
 * without one are always up and not counted).  backend_epoch() comes
 * first, once per generation: the records it does not bind again are no
 * longer shown (backend_each).
 */
void backend_epoch(void);
int backend_bind(const struct backend_list *l, const char *route);
void backend_registry_free(void);

/*
 * The member for the next session: not in tried (a mask of member indexes),
 * not skipped at now_ms, primaries before backups.  When every member left
 * is skipped, the one skipped longest ago is tried all the same, so that a
 * route is never refused without a connect.  -1 when every member was tried.
 */
int backend_pick(const struct backend_list *l, uint64_t tried, int64_t now_ms);

/* The session on member i: counted for leastconn until backend_release. */
void backend_hold(const struct backend_list *l, int i);
void backend_release(const struct backend_list *l, int i);

/* A connect to member i succeeded (a pooled connection taken counts) after
 * seconds (< 0: none measured), or failed; these move its passive health and
 * log a change once, at notice. */
void backend_connected(const struct backend_list *l, int i, double seconds);
void backend_failed(const struct backend_list *l, int i, int64_t now_ms);

/*
 * Mark a member up or down from outside the passive counts (an active
 * health check): logs the change once, at notice, with why.  A member
 * marked down is held down: no client is sent to it, and neither a
 * connect that succeeds nor one that fails changes that, until it is
 * marked up (a connect that works says nothing of the Via).
 */
void backend_mark(struct backend_health *h, int up, const char *why);

/* For the scrape thread: call fn for every record the newest generation
 * bound, in order. */
void backend_each(void (*fn)(void *arg, const struct backend_health *h),
    void *arg);

const char *backend_check_name(enum backend_check r);
const char *balance_name(enum balance b);
int balance_parse(const char *text, enum balance *out);

#endif
