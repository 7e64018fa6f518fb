/*
 * stats.c - histograms, the per-worker route counts, and the route names
 * behind their slots.
 */
#include "stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "tls.h"

const double stat_hist_bounds[STAT_HIST_BUCKETS] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0,
};

static unsigned
bucket_of(double seconds)
{
	unsigned i = 0;

	while (i < STAT_HIST_BUCKETS && seconds > stat_hist_bounds[i])
		i++;
	return i;
}

void
stat_observe(struct stat_hist *h, double seconds)
{
	if (seconds < 0)
		seconds = 0;
	stat_add(&h->bucket[bucket_of(seconds)], 1);
	stat_add(&h->sum_ns, (uint64_t)(seconds * 1e9));
	stat_add(&h->count, 1);
}

void
stat_observe_shared(struct stat_hist *h, double seconds)
{
	if (seconds < 0)
		seconds = 0;
	atomic_fetch_add_explicit(&h->bucket[bucket_of(seconds)], 1,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(seconds * 1e9),
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

const char *
preamble_error_name(enum preamble_error e)
{
	static const char *const names[PREAMBLE_ERR_COUNT] = {
		[PREAMBLE_ERR_NONE] = "none",
		[PREAMBLE_ERR_RECORD] = "record_type",
		[PREAMBLE_ERR_VERSION] = "version",
		[PREAMBLE_ERR_MODE] = "mode",
		[PREAMBLE_ERR_SIZE] = "size_field",
		[PREAMBLE_ERR_TOO_LONG] = "too_long",
		[PREAMBLE_ERR_ENCODING] = "encoding",
		[PREAMBLE_ERR_VIA] = "via",
		[PREAMBLE_ERR_UPGRADE] = "upgrade",
		[PREAMBLE_ERR_TIMEOUT] = "timeout",
		[PREAMBLE_ERR_PROXY] = "proxy_header",
		[PREAMBLE_ERR_UNTRUSTED] = "proxy_untrusted",
	};

	return (unsigned)e < PREAMBLE_ERR_COUNT ? names[e] : "none";
}

/* ------------------------------------------------ per-worker route counts */

struct route_stats *
route_stats_get(struct route_stats_table *t, unsigned slot)
{
	unsigned ci = slot / STATS_CHUNK;
	struct route_stats *chunk;

	if (ci >= STATS_MAX_CHUNKS)
		return &t->overflow;
	chunk = atomic_load_explicit(&t->chunk[ci], memory_order_relaxed);
	if (chunk == NULL) {
		if ((chunk = calloc(STATS_CHUNK, sizeof(*chunk))) == NULL)
			return &t->overflow;
		/* Release: the scrape thread sees the zeroed counters. */
		atomic_store_explicit(&t->chunk[ci], chunk, memory_order_release);
	}
	return &chunk[slot % STATS_CHUNK];
}

const struct route_stats *
route_stats_peek(const struct route_stats_table *t, unsigned slot)
{
	unsigned ci = slot / STATS_CHUNK;
	const struct route_stats *chunk;

	if (ci >= STATS_MAX_CHUNKS)
		return NULL;
	chunk = atomic_load_explicit(&t->chunk[ci], memory_order_acquire);
	return chunk != NULL ? &chunk[slot % STATS_CHUNK] : NULL;
}

void
route_stats_free(struct route_stats_table *t)
{
	for (unsigned i = 0; i < STATS_MAX_CHUNKS; i++) {
		free(atomic_load_explicit(&t->chunk[i], memory_order_relaxed));
		atomic_store_explicit(&t->chunk[i], NULL, memory_order_relaxed);
	}
}

/* ------------------------------------------------ route names to slots */

/*
 * Every route name loaded since the start, in slot order, with an open
 * hash from name to slot.  A reload that drops a route keeps its slot, so
 * its counters neither vanish nor restart when the route comes back.
 */
static struct {
	pthread_mutex_t lock;
	char **names;                 /* by slot */
	double *not_after;            /* by slot: its certificate's expiry in
	                               * the newest generation; 0: no TLS */
	uint32_t count, cap;
	uint32_t *hash;               /* slot + 1; 0: empty */
	uint32_t hash_size;           /* a power of two, > 2 * count */
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint32_t
name_hash(const char *s)
{
	uint32_t h = 2166136261u;     /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* Put slot into the hash (which has room). */
static void
hash_insert(uint32_t slot)
{
	uint32_t i = name_hash(reg.names[slot]) & (reg.hash_size - 1);

	while (reg.hash[i] != 0)
		i = (i + 1) & (reg.hash_size - 1);
	reg.hash[i] = slot + 1;
}

/* Make room for one more name: 0, or -1 out of memory. */
static int
reg_grow(void)
{
	uint32_t size = reg.hash_size > 0 ? reg.hash_size * 2 : 64, *hash;
	char **names;

	double *not_after;

	if (reg.count == reg.cap) {
		if ((names = realloc(reg.names, (reg.cap + 64) * 2 *
		    sizeof(*names))) == NULL)
			return -1;
		reg.names = names;
		if ((not_after = realloc(reg.not_after, (reg.cap + 64) * 2 *
		    sizeof(*not_after))) == NULL)
			return -1;
		reg.not_after = not_after;
		reg.cap = (reg.cap + 64) * 2;
	}
	if (2 * (reg.count + 1) < reg.hash_size)
		return 0;
	if ((hash = calloc(size, sizeof(*hash))) == NULL)
		return -1;
	free(reg.hash);
	reg.hash = hash;
	reg.hash_size = size;
	for (uint32_t s = 0; s < reg.count; s++)
		hash_insert(s);
	return 0;
}

uint32_t
stats_route_slot(const char *name)
{
	uint32_t slot = UINT32_MAX, i;
	char *copy;

	pthread_mutex_lock(&reg.lock);
	if (reg.hash_size > 0) {
		i = name_hash(name) & (reg.hash_size - 1);
		for (; reg.hash[i] != 0; i = (i + 1) & (reg.hash_size - 1))
			if (strcmp(reg.names[reg.hash[i] - 1], name) == 0) {
				slot = reg.hash[i] - 1;
				goto out;
			}
	}
	if (reg_grow() < 0 || (copy = strdup(name)) == NULL)
		goto out;
	slot = reg.count++;
	reg.names[slot] = copy;
	reg.not_after[slot] = 0;
	hash_insert(slot);
out:
	pthread_mutex_unlock(&reg.lock);
	return slot;
}

void
stats_bind_routes(struct route_table *t)
{
	double *not_after = calloc(routes_count(t) + 1, sizeof(*not_after));

	backend_epoch();
	for (size_t i = 0; i < routes_count(t); i++) {
		const struct route *r = routes_get(t, i);

		routes_set_stats_slot(t, i, stats_route_slot(r->name));
		/* Without its record a member is always up and not counted. */
		(void)backend_bind(&r->backends, r->name);
		if (not_after != NULL && r->tls_ctx != NULL)
			not_after[i] = tls_ctx_not_after(r->tls_ctx);
	}
	/* The expiries of t's routes replace all others at once, so a scrape
	 * sees one generation's, and a dropped route's series goes. */
	pthread_mutex_lock(&reg.lock);
	for (uint32_t s = 0; s < reg.count; s++)
		reg.not_after[s] = 0;
	for (size_t i = 0; not_after != NULL && i < routes_count(t); i++)
		if (routes_get(t, i)->stats_slot < reg.count)
			reg.not_after[routes_get(t, i)->stats_slot] = not_after[i];
	pthread_mutex_unlock(&reg.lock);
	free(not_after);
}

unsigned
stats_route_names(void (*fn)(void *arg, unsigned slot, const char *name),
    void *arg)
{
	unsigned n;

	pthread_mutex_lock(&reg.lock);
	for (n = 0; n < reg.count; n++)
		fn(arg, n, reg.names[n]);
	pthread_mutex_unlock(&reg.lock);
	return n;
}

unsigned
stats_route_certs(void (*fn)(void *arg, const char *name, double not_after),
    void *arg)
{
	unsigned n = 0;

	pthread_mutex_lock(&reg.lock);
	for (uint32_t s = 0; s < reg.count; s++)
		if (reg.not_after[s] > 0) {
			fn(arg, reg.names[s], reg.not_after[s]);
			n++;
		}
	pthread_mutex_unlock(&reg.lock);
	return n;
}

void
stats_route_names_free(void)
{
	pthread_mutex_lock(&reg.lock);
	for (uint32_t s = 0; s < reg.count; s++)
		free(reg.names[s]);
	free(reg.names);
	free(reg.not_after);
	free(reg.hash);
	reg.names = NULL;
	reg.not_after = NULL;
	reg.hash = NULL;
	reg.count = reg.cap = reg.hash_size = 0;
	pthread_mutex_unlock(&reg.lock);
}
