/*
 * pending.c - preambles in progress by source, and which one gives way.
 *
 * Why by source: evicting simply the oldest preamble lets one client that
 * opens connections faster than max_pending allows make every preamble
 * but its own the oldest, so that a client whose preamble takes more than
 * one round trip (a preamble in pieces, a TLS handshake) is never served.
 * Taking from the source holding the most, a flooding source gives way
 * first, whatever the age of the others' preambles.
 *
 * Why IPv4 /32 but IPv6 /64: one IPv6 host is usually given a /64 and may
 * pick any address in it, so a /128 would let it pose as endless sources;
 * an IPv4 address is what one host holds, and a /24 would put unrelated
 * clients (a provider's, a NAT pool's, a flooder's neighbours) in one
 * source, where the oldest of them, not the flooder's, gives way.
 */
#include "pending.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define PENDING_KEY_LEN 16
#define PENDING_HASH_MIN 64u
#define PENDING_BUCKETS_MIN 64u

struct pending_source {
	uint8_t key[PENDING_KEY_LEN];   /* IPv4 as ::ffff:a.b.c.d, IPv6 /64 */
	unsigned count;                 /* its preambles counted */
	unsigned bucket;                /* by_count[bucket] holds it */
	struct pending_entry *oldest, *newest;
	struct pending_source *hnext;   /* hash chain, or the free list */
	struct pending_source *bprev, *bnext; /* its bucket */
};

/* The source's key: an IPv4 address, or the /64 of an IPv6 one. */
static void
source_key(const struct sockaddr *sa, uint8_t key[PENDING_KEY_LEN])
{
	memset(key, 0, PENDING_KEY_LEN);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		/* A mapped IPv4 address is already in the IPv4 form. */
		memcpy(key, &sin6->sin6_addr, IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) ?
		    PENDING_KEY_LEN : 8);
	}
}

/* MurmurHash3's finaliser: a bijection that spreads every bit. */
static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static unsigned
source_hash(const struct pending_table *t, const uint8_t key[PENDING_KEY_LEN])
{
	uint64_t k[2];

	memcpy(k, key, sizeof(k));
	return (unsigned)mix64(mix64(k[0] ^ t->seed[0]) ^ k[1] ^ t->seed[1]) &
	    (t->hash_size - 1);
}

/* Twice the chains when there are more sources than chains; without the
 * memory, the chains only grow longer. */
static void
hash_grow(struct pending_table *t)
{
	unsigned old_size = t->hash_size, size = old_size * 2;
	struct pending_source **old = t->hash, **hash;

	hash = calloc(size, sizeof(*hash));
	if (hash == NULL)
		return;
	t->hash = hash;
	t->hash_size = size;
	for (unsigned i = 0; i < old_size; i++) {
		struct pending_source *s = old[i], *next;

		for (; s != NULL; s = next) {
			unsigned h = source_hash(t, s->key);

			next = s->hnext;
			s->hnext = hash[h];
			hash[h] = s;
		}
	}
	free(old);
}

static void
bucket_unlink(struct pending_table *t, struct pending_source *s)
{
	struct pending_bucket *b = &t->by_count[s->bucket];

	if (s->bprev != NULL)
		s->bprev->bnext = s->bnext;
	else
		b->first = s->bnext;
	if (s->bnext != NULL)
		s->bnext->bprev = s->bprev;
	else
		b->last = s->bprev;
	s->bprev = s->bnext = NULL;
}

static void
bucket_append(struct pending_table *t, struct pending_source *s)
{
	struct pending_bucket *b;

	/* Without the memory for a bucket of its own, a source holding more
	 * than the buckets count shares the last one. */
	s->bucket = s->count < t->by_count_size ? s->count : t->by_count_size - 1;
	b = &t->by_count[s->bucket];
	s->bprev = b->last;
	s->bnext = NULL;
	if (b->last != NULL)
		b->last->bnext = s;
	else
		b->first = s;
	b->last = s;
	if (s->bucket > t->max)
		t->max = s->bucket;
}

/* Twice the buckets; the sources that shared the last one take their
 * own, in the order they had. */
static void
buckets_grow(struct pending_table *t)
{
	unsigned top = t->by_count_size - 1, size = t->by_count_size * 2;
	struct pending_bucket *b;
	struct pending_source *s, *next;

	b = realloc(t->by_count, size * sizeof(*b));
	if (b == NULL)
		return;
	memset(b + t->by_count_size, 0, (size - t->by_count_size) * sizeof(*b));
	t->by_count = b;
	t->by_count_size = size;
	s = b[top].first;
	b[top].first = b[top].last = NULL;
	for (; s != NULL; s = next) {
		next = s->bnext;
		bucket_append(t, s);
	}
}

/* The source now holds count preambles: it moves to that bucket's end. */
static void
source_set_count(struct pending_table *t, struct pending_source *s,
    unsigned count)
{
	if (count >= t->by_count_size)
		buckets_grow(t);
	if (s->count > 0)
		bucket_unlink(t, s);
	s->count = count;
	if (count > 0)
		bucket_append(t, s);
	/* Counts move by one: the most is where it was, or one below. */
	while (t->max > 0 && t->by_count[t->max].first == NULL)
		t->max--;
}

/* The source of key, made (or taken from the free list) if it holds
 * nothing yet; the stand-in when there is no memory for it. */
static struct pending_source *
source_get(struct pending_table *t, const uint8_t key[PENDING_KEY_LEN])
{
	unsigned h = source_hash(t, key);
	struct pending_source *s;

	for (s = t->hash[h]; s != NULL; s = s->hnext)
		if (memcmp(s->key, key, PENDING_KEY_LEN) == 0)
			return s;
	if (t->free != NULL) {
		s = t->free;
		t->free = s->hnext;
	} else if ((s = malloc(sizeof(*s))) == NULL) {
		return t->spare;
	}
	memset(s, 0, sizeof(*s));
	memcpy(s->key, key, PENDING_KEY_LEN);
	s->hnext = t->hash[h];
	t->hash[h] = s;
	if (++t->nsources > t->hash_size)
		hash_grow(t);
	return s;
}

/* The source holds nothing now: out of the hash, onto the free list. */
static void
source_put(struct pending_table *t, struct pending_source *s)
{
	struct pending_source **p;

	if (s == t->spare)
		return;
	p = &t->hash[source_hash(t, s->key)];
	while (*p != s)
		p = &(*p)->hnext;
	*p = s->hnext;
	t->nsources--;
	s->hnext = t->free;
	t->free = s;
}

int
pending_init(struct pending_table *t)
{
	memset(t, 0, sizeof(*t));
	t->hash_size = PENDING_HASH_MIN;
	t->by_count_size = PENDING_BUCKETS_MIN;
	t->hash = calloc(t->hash_size, sizeof(*t->hash));
	t->by_count = calloc(t->by_count_size, sizeof(*t->by_count));
	t->spare = calloc(1, sizeof(*t->spare));
	if (t->hash == NULL || t->by_count == NULL || t->spare == NULL)
		goto fail;
	/* Without the kernel's randomness, the clock still keeps the key
	 * from being known in advance. */
	if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		t->seed[0] = mix64((uint64_t)ts.tv_nsec ^ (uintptr_t)t);
		t->seed[1] = mix64((uint64_t)ts.tv_sec ^ t->seed[0]);
	}
	pthread_mutex_init(&t->lock, NULL);
	return 0;
fail:
	free(t->spare);
	free(t->by_count);
	free(t->hash);
	memset(t, 0, sizeof(*t));
	return -1;
}

void
pending_destroy(struct pending_table *t)
{
	struct pending_source *s, *next;

	if (t->hash == NULL)
		return;   /* never set up */
	/* Sources still holding preambles are in the hash; the others are
	 * on the free list. */
	for (unsigned i = 0; i < t->hash_size; i++)
		for (s = t->hash[i]; s != NULL; s = next) {
			next = s->hnext;
			free(s);
		}
	for (s = t->free; s != NULL; s = next) {
		next = s->hnext;
		free(s);
	}
	free(t->spare);
	free(t->by_count);
	free(t->hash);
	pthread_mutex_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

void
pending_add(struct pending_table *t, struct pending_entry *e,
    struct pending_owner *o, const struct sockaddr *sa)
{
	uint8_t key[PENDING_KEY_LEN];
	struct pending_source *s;

	source_key(sa, key);
	pthread_mutex_lock(&t->lock);
	s = source_get(t, key);
	e->source = s;
	e->owner = o;
	e->doomed = 0;
	e->next = NULL;
	e->prev = s->newest;
	if (s->newest != NULL)
		s->newest->next = e;
	else
		s->oldest = e;
	s->newest = e;
	source_set_count(t, s, s->count + 1);
	t->counted++;
	pthread_mutex_unlock(&t->lock);
}

/* Under the lock: e leaves its source's list and count. */
static void
entry_uncount(struct pending_table *t, struct pending_entry *e)
{
	struct pending_source *s = e->source;

	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		s->oldest = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		s->newest = e->prev;
	e->prev = e->next = NULL;
	e->source = NULL;
	source_set_count(t, s, s->count - 1);
	if (s->count == 0)
		source_put(t, s);
	t->counted--;
}

/* Under the lock: e leaves its owner's doomed queue. */
static void
entry_undoom(struct pending_entry *e)
{
	struct pending_owner *o = e->owner;

	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		o->doomed_first = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		o->doomed_last = e->prev;
	e->prev = e->next = NULL;
	e->doomed = 0;
}

void
pending_remove(struct pending_table *t, struct pending_entry *e)
{
	pthread_mutex_lock(&t->lock);
	if (e->source != NULL)
		entry_uncount(t, e);
	else if (e->doomed)
		entry_undoom(e);
	pthread_mutex_unlock(&t->lock);
}

struct pending_owner *
pending_choose(struct pending_table *t, unsigned limit)
{
	struct pending_owner *o = NULL;
	struct pending_entry *e;

	pthread_mutex_lock(&t->lock);
	if (t->counted > limit && t->max > 0) {
		e = t->by_count[t->max].first->oldest;
		o = e->owner;
		entry_uncount(t, e);
		e->doomed = 1;
		e->prev = o->doomed_last;
		if (o->doomed_last != NULL)
			o->doomed_last->next = e;
		else
			o->doomed_first = e;
		o->doomed_last = e;
	}
	pthread_mutex_unlock(&t->lock);
	return o;
}

struct pending_entry *
pending_next_doomed(struct pending_table *t, struct pending_owner *o)
{
	struct pending_entry *e;

	pthread_mutex_lock(&t->lock);
	e = o->doomed_first;
	if (e != NULL)
		entry_undoom(e);
	pthread_mutex_unlock(&t->lock);
	return e;
}

unsigned
pending_counted(struct pending_table *t)
{
	unsigned n;

	pthread_mutex_lock(&t->lock);
	n = t->counted;
	pthread_mutex_unlock(&t->lock);
	return n;
}
