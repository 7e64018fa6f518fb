/*
 * backend.c - backend members: the list's syntax, the balance, and the
 * passive health every worker shares (backend.h).
 */
#include "backend.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "log.h"

/* ------------------------------------------------ the list as written */

/* One option after a member's address: weight=N or backup. */
static int
member_option(struct backend_member *m, const char *opt, size_t len,
    char *err, size_t errlen)
{
	const char *d = opt + 7;
	unsigned long w;

	if (len == 6 && strncmp(opt, "backup", 6) == 0) {
		m->backup = 1;
		return 0;
	}
	if (len > 7 && strncmp(opt, "weight=", 7) == 0) {
		if (decimal_parse(&d, BACKEND_MAX_WEIGHT, &w) < 0 ||
		    d != opt + len || w < 1) {
			snprintf(err, errlen, "bad weight '%.*s' for member '%s' "
			    "(1 to %u)", (int)(len - 7), opt + 7, m->text,
			    BACKEND_MAX_WEIGHT);
			return -1;
		}
		m->weight = (unsigned)w;
		return 0;
	}
	snprintf(err, errlen, "unknown option '%.*s' for member '%s' (weight=N "
	    "or backup)", (int)len, opt, m->text);
	return -1;
}

/* "ADDR [opt]..." between two commas, trimmed, into m. */
static int
member_parse(const char *s, size_t len, struct backend_member *m, char *err,
    size_t errlen)
{
	const char *end = s + len, *w;
	char why[256];

	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	if (s == end) {
		snprintf(err, errlen, "empty member");
		return -1;
	}
	for (w = s; w < end && !isspace((unsigned char)*w); w++)
		;
	if ((m->text = strndup(s, (size_t)(w - s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m->weight = 1;
	if (addr_parse(m->text, ADDR_RESOLVE | ADDR_UNIX, &m->addr, why,
	    sizeof(why)) < 0) {
		snprintf(err, errlen, "bad backend member '%s': %s", m->text, why);
		return -1;
	}
	while (w < end) {
		const char *o;

		while (w < end && isspace((unsigned char)*w))
			w++;
		for (o = w; w < end && !isspace((unsigned char)*w); w++)
			;
		if (member_option(m, o, (size_t)(w - o), err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* The smooth weighted round-robin order (nginx's) of one tier, computed
 * once: a turn is then an index into it, taken with one atomic add. */
static int
build_seq(struct backend_list *l, int backup)
{
	int cur[BACKEND_MAX_MEMBERS] = { 0 };
	size_t total = 0, i, k;

	for (i = 0; i < l->n; i++)
		if (l->m[i].backup == (unsigned)backup)
			total += l->m[i].weight;
	l->nseq[backup] = total;
	if (total == 0)
		return 0;
	if ((l->seq[backup] = malloc(total)) == NULL)
		return -1;
	for (k = 0; k < total; k++) {
		int best = -1;

		for (i = 0; i < l->n; i++) {
			if (l->m[i].backup != (unsigned)backup)
				continue;
			cur[i] += (int)l->m[i].weight;
			if (best < 0 || cur[i] > cur[best])
				best = (int)i;
		}
		cur[best] -= (int)total;
		l->seq[backup][k] = (uint8_t)best;
	}
	return 0;
}

int
backend_list_parse(const char *text, struct backend_list *l, char *err,
    size_t errlen)
{
	const char *s = text, *comma;
	size_t primaries = 0, i;

	memset(l, 0, sizeof(*l));
	l->fail_threshold = BACKEND_DEFAULT_FAIL_THRESHOLD;
	l->fail_timeout = BACKEND_DEFAULT_FAIL_TIMEOUT;
	for (;;) {
		struct backend_member *m;

		comma = strchr(s, ',');
		if (l->n == BACKEND_MAX_MEMBERS) {
			snprintf(err, errlen, "more than %u members",
			    BACKEND_MAX_MEMBERS);
			goto fail;
		}
		if ((m = realloc(l->m, (l->n + 1) * sizeof(*m))) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		l->m = m;
		m += l->n++;
		memset(m, 0, sizeof(*m));
		if (member_parse(s, comma ? (size_t)(comma - s) : strlen(s), m,
		    err, errlen) < 0)
			goto fail;
		for (i = 0; i + 1 < l->n; i++)
			if (addr_equal(&l->m[i].addr, &m->addr) ||
			    strcmp(l->m[i].text, m->text) == 0) {
				snprintf(err, errlen, "duplicate member '%s'",
				    m->text);
				goto fail;
			}
		primaries += !m->backup;
		if (comma == NULL)
			break;
		s = comma + 1;
	}
	if (primaries == 0) {
		snprintf(err, errlen, "every member is a backup: one at least "
		    "must not be");
		goto fail;
	}
	if (build_seq(l, 0) < 0 || build_seq(l, 1) < 0 ||
	    (l->turn = calloc(1, sizeof(*l->turn))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return 0;
fail:
	backend_list_free(l);
	return -1;
}

int
backend_list_single(struct backend_list *l, const struct addr *addr,
    const char *text)
{
	memset(l, 0, sizeof(*l));
	l->fail_threshold = BACKEND_DEFAULT_FAIL_THRESHOLD;
	l->fail_timeout = BACKEND_DEFAULT_FAIL_TIMEOUT;
	if ((l->m = calloc(1, sizeof(*l->m))) == NULL ||
	    (l->m->text = strdup(text)) == NULL)
		goto fail;
	l->n = 1;
	l->m->addr = *addr;
	l->m->weight = 1;
	if (build_seq(l, 0) < 0 || (l->turn = calloc(1, sizeof(*l->turn))) == NULL)
		goto fail;
	return 0;
fail:
	if (l->m != NULL)
		l->n = 1;
	backend_list_free(l);
	return -1;
}

void
backend_list_free(struct backend_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->m[i].text);
	free(l->m);
	free(l->seq[0]);
	free(l->seq[1]);
	free(l->check_via);
	free((void *)l->turn);
	memset(l, 0, sizeof(*l));
}

int
backend_list_equal(const struct backend_list *a, const struct backend_list *b)
{
	/* The balance picks the next member; it changes nothing for a stream
	 * already on one. */
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (!addr_equal(&a->m[i].addr, &b->m[i].addr) ||
		    a->m[i].weight != b->m[i].weight ||
		    a->m[i].backup != b->m[i].backup)
			return 0;
	return 1;
}

static const char *const balance_names[] = {
	[BALANCE_ROUNDROBIN] = "roundrobin",
	[BALANCE_LEASTCONN] = "leastconn",
	[BALANCE_FIRST] = "first",
};

static const char *const check_names[BACKEND_CHECK_COUNT] = {
	[BACKEND_CHECK_OK] = "ok",
	[BACKEND_CHECK_FAULT] = "fault",
	[BACKEND_CHECK_TIMEOUT] = "timeout",
	[BACKEND_CHECK_REFUSED] = "refused",
	[BACKEND_CHECK_ERROR] = "error",
};

const char *
backend_check_name(enum backend_check r)
{
	return check_names[r];
}

const char *
balance_name(enum balance b)
{
	return balance_names[b];
}

int
balance_parse(const char *text, enum balance *out)
{
	for (size_t i = 0; i < sizeof(balance_names) / sizeof(*balance_names); i++)
		if (strcmp(text, balance_names[i]) == 0) {
			*out = (enum balance)i;
			return 0;
		}
	return -1;
}

/* ------------------------------------------------ the shared records */

/*
 * Every record ever bound, in order, with a hash from (route, member) to
 * it.  Records are never freed before the process ends: a worker still on
 * an old generation, or the scrape thread, may hold one.
 */
#define REG_BUCKETS 4096u

static struct {
	pthread_mutex_t lock;
	struct backend_health **all;
	size_t n, cap;
	size_t *chain;                /* by record: the next in its bucket + 1 */
	size_t head[REG_BUCKETS];     /* record + 1; 0: empty */
	unsigned epoch;               /* of the newest generation */
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static unsigned
reg_hash(const char *route, const char *backend)
{
	unsigned h = 2166136261u;

	for (; *route != '\0'; route++)
		h = (h ^ (unsigned char)*route) * 16777619u;
	h = (h ^ 0xffu) * 16777619u;
	for (; *backend != '\0'; backend++)
		h = (h ^ (unsigned char)*backend) * 16777619u;
	return h % REG_BUCKETS;
}

/* The record of (route, backend), made if new; NULL when no memory. */
static struct backend_health *
reg_get(const char *route, const char *backend)
{
	unsigned b = reg_hash(route, backend);
	struct backend_health *h = NULL;

	for (size_t i = reg.head[b]; i != 0; i = reg.chain[i - 1]) {
		h = reg.all[i - 1];
		if (strcmp(h->route, route) == 0 && strcmp(h->backend, backend) == 0)
			return h;
	}
	if (reg.n == reg.cap) {
		size_t cap = reg.cap ? 2 * reg.cap : 64;
		struct backend_health **all = realloc(reg.all, cap * sizeof(*all));
		size_t *chain;

		if (all == NULL)
			return NULL;
		reg.all = all;
		if ((chain = realloc(reg.chain, cap * sizeof(*chain))) == NULL)
			return NULL;
		reg.chain = chain;
		reg.cap = cap;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->route = strdup(route);
	h->backend = strdup(backend);
	if (h->route == NULL || h->backend == NULL) {
		free(h->route);
		free(h->backend);
		free(h);
		return NULL;
	}
	reg.all[reg.n] = h;
	reg.chain[reg.n] = reg.head[b];
	reg.head[b] = ++reg.n;
	return h;
}

void
backend_epoch(void)
{
	pthread_mutex_lock(&reg.lock);
	reg.epoch++;
	pthread_mutex_unlock(&reg.lock);
}

int
backend_bind(const struct backend_list *l, const char *route)
{
	int rc = 0;

	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < l->n; i++) {
		if ((l->m[i].health = reg_get(route, l->m[i].text)) == NULL)
			rc = -1;
		else
			l->m[i].health->epoch = reg.epoch;
	}
	pthread_mutex_unlock(&reg.lock);
	return rc;
}

void
backend_each(void (*fn)(void *arg, const struct backend_health *h), void *arg)
{
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < reg.n; i++)
		if (reg.all[i]->epoch == reg.epoch)
			fn(arg, reg.all[i]);
	pthread_mutex_unlock(&reg.lock);
}

void
backend_registry_free(void)
{
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < reg.n; i++) {
		free(reg.all[i]->route);
		free(reg.all[i]->backend);
		free(reg.all[i]);
	}
	free(reg.all);
	free(reg.chain);
	reg.all = NULL;
	reg.chain = NULL;
	reg.n = reg.cap = 0;
	memset(reg.head, 0, sizeof(reg.head));
	pthread_mutex_unlock(&reg.lock);
}

/* ------------------------------------------------ balance and health */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Member i may take a session at now_ms: up, or skipped long enough. */
static int
eligible(const struct backend_member *m, int64_t now_ms)
{
	return m->health == NULL || !LOAD(m->health->down) ||
	    (!LOAD(m->health->held) && now_ms >= LOAD(m->health->retry_ms));
}

static unsigned
active_of(const struct backend_member *m)
{
	return m->health != NULL ? LOAD(m->health->active) : 0;
}

/* The tier's member by the route's balance, or -1. */
static int
pick_tier(const struct backend_list *l, int backup, uint64_t tried, int64_t now_ms)
{
	uint64_t turn;
	int best = -1;
	size_t k;

	if (l->nseq[backup] == 0)
		return -1;
	switch (l->balance) {
	case BALANCE_ROUNDROBIN:
		turn = atomic_fetch_add_explicit(l->turn, 1, memory_order_relaxed);
		for (k = 0; k < l->nseq[backup]; k++) {
			int i = l->seq[backup][(turn + k) % l->nseq[backup]];

			if (!(tried >> i & 1) && eligible(&l->m[i], now_ms))
				return i;
		}
		return -1;
	case BALANCE_LEASTCONN:
		/* From a turning start, so that ties take turns. */
		turn = atomic_fetch_add_explicit(l->turn, 1, memory_order_relaxed);
		for (k = 0; k < l->n; k++) {
			int i = (int)((turn + k) % l->n);
			const struct backend_member *m = &l->m[i];

			if (m->backup != (unsigned)backup || tried >> i & 1 ||
			    !eligible(m, now_ms))
				continue;
			/* active/weight below the best's, without division */
			if (best < 0 || (uint64_t)active_of(m) * l->m[best].weight <
			    (uint64_t)active_of(&l->m[best]) * m->weight)
				best = i;
		}
		return best;
	case BALANCE_FIRST:
		for (k = 0; k < l->n; k++)
			if (l->m[k].backup == (unsigned)backup && !(tried >> k & 1) &&
			    eligible(&l->m[k], now_ms))
				return (int)k;
		return -1;
	}
	return -1;
}

int
backend_pick(const struct backend_list *l, uint64_t tried, int64_t now_ms)
{
	int i = pick_tier(l, 0, tried, now_ms), best = -1;

	if (i < 0)
		i = pick_tier(l, 1, tried, now_ms);
	if (i >= 0)
		return i;
	/* Every member left is skipped: the one that comes back first. */
	for (size_t k = 0; k < l->n; k++) {
		if (tried >> k & 1)
			continue;
		if (best < 0 || LOAD(l->m[k].health->retry_ms) <
		    LOAD(l->m[best].health->retry_ms))
			best = (int)k;
	}
	return best;
}

void
backend_hold(const struct backend_list *l, int i)
{
	if (l->m[i].health != NULL)
		atomic_fetch_add_explicit(&l->m[i].health->active, 1,
		    memory_order_relaxed);
}

void
backend_release(const struct backend_list *l, int i)
{
	if (l->m[i].health != NULL)
		atomic_fetch_sub_explicit(&l->m[i].health->active, 1,
		    memory_order_relaxed);
}

void
backend_mark(struct backend_health *h, int up, const char *why)
{
	unsigned was = up ? 1u : 0u;

	if (up) {
		atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
		atomic_store_explicit(&h->held, 0, memory_order_relaxed);
	} else {
		/* Down until marked up: not retried by clients. */
		atomic_store_explicit(&h->retry_ms, INT64_MAX, memory_order_relaxed);
		atomic_store_explicit(&h->held, 1, memory_order_relaxed);
	}
	/* Only the thread that changes the state says so. */
	if (atomic_compare_exchange_strong(&h->down, &was, (unsigned)!up))
		log_notice("backend %s of route [%s] is %s: %s", h->backend,
		    h->route, up ? "up" : "down", why);
}

void
backend_connected(const struct backend_list *l, int i, double seconds)
{
	struct backend_health *h = l->m[i].health;

	if (h == NULL)
		return;
	if (seconds >= 0)
		stat_observe_shared(&h->connect_seconds, seconds);
	if (LOAD(h->fails) != 0)
		atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
	if (LOAD(h->down) && !LOAD(h->held))
		backend_mark(h, 1, "a connect succeeded");
}

void
backend_failed(const struct backend_list *l, int i, int64_t now_ms)
{
	struct backend_health *h = l->m[i].health;
	unsigned fails, was = 0;

	if (h == NULL)
		return;
	atomic_fetch_add_explicit(&h->connect_failures, 1, memory_order_relaxed);
	fails = atomic_fetch_add_explicit(&h->fails, 1, memory_order_relaxed) + 1;
	if (fails < l->fail_threshold || LOAD(h->held))
		return;
	/* Skipped for fail_timeout from this failure on: a member that fails
	 * again when it is tried after one is skipped for another. */
	atomic_store_explicit(&h->retry_ms, now_ms + (int64_t)(l->fail_timeout *
	    1000.0), memory_order_relaxed);
	if (atomic_compare_exchange_strong(&h->down, &was, 1))
		log_notice("backend %s of route [%s] is down: %u connect%s in a "
		    "row failed; skipped for %g s", h->backend, h->route, fails,
		    fails == 1 ? "" : "s", l->fail_timeout);
}
