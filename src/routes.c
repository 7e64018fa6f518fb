/*
 * routes.c - the route table.
 *
 * Every prefix is one entry of an open-addressing hash keyed by (host class,
 * port or 0, host for the exact class, normalised path).  A lookup walks
 * the Via's path prefixes from the deepest a class holds up to the root,
 * and probes each with the local port and then without, so it costs at most
 * 2 x 3 x (segments + 1) probes, whatever the number of routes.
 */
#include "routes.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"

#define HOST_CLASSES 3
#define INITIAL_SLOTS 64u
#define INITIAL_ROUTES 16u

#define FNV_OFFSET 0xcbf29ce484222325u
#define FNV_PRIME 0x100000001b3u

/* What a prefix is stored and found by. */
struct prefix_key {
	uint64_t hash;
	const char *path;
	size_t path_len;
	const char *host;          /* the exact class only, else NULL */
	uint16_t port;             /* 0: the prefix applies on every listener */
	enum via_host_class host_class;
};

struct prefix_slot {
	struct prefix_key key;     /* key.path NULL: the slot is free */
	int route;
};

struct route_table {
	atomic_uint refs;          /* every worker's connections share a table */
	struct route **routes;     /* pointers, so routes_get() survives growth */
	size_t nroutes, routes_cap;
	struct prefix_slot *slots;
	size_t nslots;             /* a power of two, kept at most half full */
	size_t nprefixes;
	size_t class_prefixes[HOST_CLASSES];
	size_t class_depth[HOST_CLASSES]; /* deepest prefix: where lookups start */
};

static uint64_t
fnv_add(uint64_t hash, const char *bytes, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		hash ^= (unsigned char)bytes[i];
		hash *= FNV_PRIME;
	}
	return hash;
}

/*
 * The path is hashed on its own so that a lookup can hash every prefix of
 * the Via in one pass; the other fields are mixed in afterwards.  The
 * finaliser matters: the slot index takes the low bits, where FNV is weak.
 */
static uint64_t
key_hash(uint64_t path_hash, uint64_t host_hash,
    enum via_host_class host_class, uint16_t port)
{
	uint64_t h = path_hash;

	h ^= host_hash * 0x9e3779b97f4a7c15u;
	h ^= ((uint64_t)host_class << 16 | port) * 0xc2b2ae3d27d4eb4fu;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9u;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebu;
	h ^= h >> 31;
	return h;
}

static int
key_equal(const struct prefix_key *a, const struct prefix_key *b)
{
	return a->hash == b->hash && a->host_class == b->host_class &&
	    a->port == b->port && a->path_len == b->path_len &&
	    memcmp(a->path, b->path, a->path_len) == 0 &&
	    (a->host_class != VIA_HOST_EXACT || strcmp(a->host, b->host) == 0);
}

/* The slot holding key, or the free slot where it would go. */
static size_t
probe(const struct prefix_slot *slots, size_t nslots,
    const struct prefix_key *key)
{
	size_t mask = nslots - 1, i = (size_t)key->hash & mask;

	while (slots[i].key.path && !key_equal(&slots[i].key, key))
		i = (i + 1) & mask;
	return i;
}

static int
grow_slots(struct route_table *t)
{
	size_t i, nslots = t->nslots * 2;
	struct prefix_slot *slots = calloc(nslots, sizeof *slots);

	if (!slots)
		return -1;
	for (i = 0; i < t->nslots; i++)
		if (t->slots[i].key.path)
			slots[probe(slots, nslots, &t->slots[i].key)] = t->slots[i];
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
	return 0;
}

/* Drop a table's hold on r (routes_clone shares them). */
static void
route_free(struct route *r)
{
	if (!r || atomic_fetch_sub_explicit(&r->refs, 1,
	    memory_order_acq_rel) > 1)
		return;
	free(r->name);
	free(r->backend_text);
	backend_list_free(&r->backends);
	SSL_CTX_free(r->tls_ctx);
	acl_free(r->acl.deny);
	acl_free(r->acl.allow);
	handoff_sink_unref(r->handoff);
	free(r);
}

struct route_table *
routes_new(void)
{
	struct route_table *t = calloc(1, sizeof *t);

	if (!t)
		goto fail;
	t->slots = calloc(INITIAL_SLOTS, sizeof *t->slots);
	if (!t->slots)
		goto fail;
	t->nslots = INITIAL_SLOTS;
	atomic_init(&t->refs, 1);
	return t;

fail:
	free(t);
	return NULL;
}

int
routes_add_route(struct route_table *t, const char *name,
    const struct addr *backend, const char *backend_text)
{
	struct route *r = NULL, **routes;
	size_t cap;

	if (t->nroutes == t->routes_cap) {
		cap = t->routes_cap ? t->routes_cap * 2 : INITIAL_ROUTES;
		routes = realloc(t->routes, cap * sizeof *routes);
		if (!routes)
			goto fail;
		t->routes = routes;
		t->routes_cap = cap;
	}
	r = calloc(1, sizeof *r);
	if (!r)
		goto fail;
	atomic_init(&r->refs, 1);
	r->name = strdup(name);
	r->backend_text = strdup(backend_text);
	if (!r->name || !r->backend_text ||
	    backend_list_single(&r->backends, backend, backend_text) < 0)
		goto fail;
	t->routes[t->nroutes] = r;
	return (int)t->nroutes++;

fail:
	route_free(r);
	return -1;
}

void
routes_set_tls(struct route_table *t, int ri, SSL_CTX *ctx)
{
	struct route *r = t->routes[ri];

	SSL_CTX_up_ref(ctx);
	SSL_CTX_free(r->tls_ctx);
	r->tls_ctx = ctx;
}

void
routes_set_backends(struct route_table *t, int ri, struct backend_list *l)
{
	struct route *r = t->routes[ri];

	backend_list_free(&r->backends);
	r->backends = *l;
	memset(l, 0, sizeof(*l));
}

void
routes_set_pool_off(struct route_table *t, int ri)
{
	t->routes[ri]->pool_off = 1;
}

void
routes_set_acl(struct route_table *t, int ri, struct acl *deny,
    struct acl *allow)
{
	t->routes[ri]->acl.deny = deny;
	t->routes[ri]->acl.allow = allow;
}

void
routes_set_send_proxy(struct route_table *t, int ri, int version)
{
	t->routes[ri]->send_proxy = (uint8_t)version;
}

void
routes_set_rewrite_via(struct route_table *t, int ri)
{
	t->routes[ri]->rewrite_via = 1;
}

struct route_table *
routes_clone(const struct route_table *t)
{
	struct route_table *c = routes_new();
	size_t i;

	if (c == NULL)
		return NULL;
	free(c->slots);
	c->slots = calloc(t->nslots, sizeof(*c->slots));
	c->routes = calloc(t->routes_cap > 0 ? t->routes_cap : 1,
	    sizeof(*c->routes));
	if (c->slots == NULL || c->routes == NULL)
		goto fail;
	c->nslots = t->nslots;
	c->routes_cap = t->routes_cap > 0 ? t->routes_cap : 1;
	for (i = 0; i < t->nroutes; i++) {
		atomic_fetch_add_explicit(&t->routes[i]->refs, 1,
		    memory_order_relaxed);
		c->routes[c->nroutes++] = t->routes[i];
	}
	for (i = 0; i < t->nslots; i++) {
		const struct prefix_key *k = &t->slots[i].key;
		size_t host_len = k->host ? strlen(k->host) + 1 : 0;
		char *copy;

		if (k->path == NULL)
			continue;
		/* as routes_add_prefix keeps them: path, NUL, host */
		if ((copy = malloc(k->path_len + 1 + host_len)) == NULL)
			goto fail;
		memcpy(copy, k->path, k->path_len + 1 + host_len);
		c->slots[i] = t->slots[i];
		c->slots[i].key.path = copy;
		if (k->host)
			c->slots[i].key.host = copy + k->path_len + 1;
	}
	c->nprefixes = t->nprefixes;
	memcpy(c->class_prefixes, t->class_prefixes, sizeof(c->class_prefixes));
	memcpy(c->class_depth, t->class_depth, sizeof(c->class_depth));
	return c;

fail:
	routes_unref(c);
	return NULL;
}

int
routes_set_registered(struct route_table *t, int ri, uint64_t reg_id,
    const struct route *policy)
{
	struct route *r = t->routes[ri];

	r->reg_id = reg_id;
	if (policy == NULL)
		return 0;
	if (policy->tls_ctx != NULL)
		routes_set_tls(t, ri, policy->tls_ctx);
	r->pool_off = policy->pool_off;
	r->send_proxy = policy->send_proxy;
	r->rewrite_via = policy->rewrite_via;
	r->acl.deny = acl_copy(policy->acl.deny);
	r->acl.allow = acl_copy(policy->acl.allow);
	return (policy->acl.deny != NULL && r->acl.deny == NULL) ||
	    (policy->acl.allow != NULL && r->acl.allow == NULL) ? -1 : 0;
}

const struct route *
routes_covering(const struct route_table *t, const struct via *prefix)
{
	struct prefix_key key = {
		.path = prefix->path,
		.host = prefix->host_class == VIA_HOST_EXACT ? prefix->host : NULL,
		.host_class = prefix->host_class,
	};
	uint64_t host_hash = key.host ?
	    fnv_add(FNV_OFFSET, key.host, strlen(key.host)) : 0;
	uint16_t ports[2] = { prefix->port, 0 };
	size_t k = prefix->nsegments;

	while (k-- > 0) {
		key.path_len = k ? prefix->seg_end[k - 1] : 0;
		for (unsigned i = prefix->port ? 0 : 1; i < 2; i++) {
			const struct prefix_slot *slot;

			key.port = ports[i];
			key.hash = key_hash(fnv_add(FNV_OFFSET, key.path,
			    key.path_len), host_hash, key.host_class, key.port);
			slot = &t->slots[probe(t->slots, t->nslots, &key)];
			if (slot->key.path != NULL)
				return t->routes[slot->route];
		}
	}
	return NULL;
}

void
routes_set_handoff(struct route_table *t, int ri, struct handoff_sink *sink)
{
	t->routes[ri]->handoff = handoff_sink_ref(sink);
}

void
routes_set_stats_slot(struct route_table *t, size_t i, uint32_t slot)
{
	t->routes[i]->stats_slot = slot;
}

int
routes_add_prefix(struct route_table *t, int ri, const struct via *prefix,
    int *other_route)
{
	struct prefix_key key = {
		.path = prefix->path,
		.path_len = prefix->path_len,
		.host = prefix->host_class == VIA_HOST_EXACT ? prefix->host : NULL,
		.port = prefix->port,
		.host_class = prefix->host_class,
	};
	size_t host_len = key.host ? strlen(key.host) + 1 : 0;
	size_t i;
	char *copy;

	assert(ri >= 0 && (size_t)ri < t->nroutes);
	key.hash = key_hash(fnv_add(FNV_OFFSET, key.path, key.path_len),
	    key.host ? fnv_add(FNV_OFFSET, key.host, host_len - 1) : 0,
	    key.host_class, key.port);

	i = probe(t->slots, t->nslots, &key);
	if (t->slots[i].key.path) {
		if (other_route)
			*other_route = t->slots[i].route;
		return -2;
	}
	if ((t->nprefixes + 1) * 2 > t->nslots) {
		if (grow_slots(t) < 0)
			return -1;
		i = probe(t->slots, t->nslots, &key);
	}

	/* Path, NUL and host in one block, so a slot is freed with one free(). */
	copy = malloc(key.path_len + 1 + host_len);
	if (!copy)
		return -1;
	memcpy(copy, key.path, key.path_len);
	copy[key.path_len] = '\0';
	if (key.host) {
		memcpy(copy + key.path_len + 1, key.host, host_len);
		key.host = copy + key.path_len + 1;
	}
	key.path = copy;

	t->slots[i].key = key;
	t->slots[i].route = ri;
	t->nprefixes++;
	t->class_prefixes[key.host_class]++;
	if (prefix->nsegments > t->class_depth[key.host_class])
		t->class_depth[key.host_class] = prefix->nsegments;
	return 0;
}

/*
 * Inside a class, deeper beats shallower; at equal depth a prefix with the
 * local port beats one without: the operator who named the port meant that
 * listener.  The port written in the Via plays no part: SMSvcHost ignores it
 * too, and behind NAT or a load balancer it need not be ours.
 */
static void
prefix_of(const struct route_table *t, const struct prefix_slot *slot,
    struct route_prefix *out)
{
	out->host_class = slot->key.host_class;
	out->host = slot->key.host != NULL ? slot->key.host : "";
	out->port = slot->key.port;
	out->path = slot->key.path;
	out->route = t->routes[slot->route];
}

size_t
routes_nprefixes(const struct route_table *t)
{
	return t->nprefixes;
}

void
routes_prefix(const struct route_table *t, size_t i, struct route_prefix *out)
{
	size_t s;

	for (s = 0; s < t->nslots; s++)
		if (t->slots[s].key.path != NULL && i-- == 0)
			break;
	prefix_of(t, &t->slots[s], out);
}

const struct route *
routes_lookup(const struct route_table *t,
    const struct via *via, uint16_t local_port)
{
	return routes_explain(t, via, local_port, NULL);
}

const struct route *
routes_explain(const struct route_table *t,
    const struct via *via, uint16_t local_port, struct route_prefix *why)
{
	uint64_t path_hash[VIA_MAX_SEGMENTS + 1];
	uint64_t host_hash = fnv_add(FNV_OFFSET, via->host, strlen(via->host));
	size_t depth = 0, k, pos = 0, i;
	unsigned c;
	struct prefix_key key = { .path = via->path, .host = via->host };
	uint16_t ports[2] = { local_port, 0 };

	for (c = 0; c < HOST_CLASSES; c++)
		if (t->class_depth[c] > depth)
			depth = t->class_depth[c];
	if (depth > via->nsegments)
		depth = via->nsegments;

	path_hash[0] = FNV_OFFSET;
	for (k = 1; k <= depth; k++) {
		path_hash[k] = fnv_add(path_hash[k - 1], via->path + pos,
		    via->seg_end[k - 1] - pos);
		pos = via->seg_end[k - 1];
	}

	for (c = 0; c < HOST_CLASSES; c++) {
		if (!t->class_prefixes[c])
			continue;
		key.host_class = (enum via_host_class)c;
		k = t->class_depth[c] < via->nsegments ? t->class_depth[c] :
		    via->nsegments;
		for (;;) {
			key.path_len = k ? via->seg_end[k - 1] : 0;
			/* A local port of 0 would only repeat the portless probe. */
			for (i = local_port ? 0 : 1; i < 2; i++) {
				const struct prefix_slot *slot;

				key.port = ports[i];
				key.hash = key_hash(path_hash[k],
				    c == VIA_HOST_EXACT ? host_hash : 0,
				    key.host_class, key.port);
				slot = &t->slots[probe(t->slots, t->nslots, &key)];
				if (slot->key.path == NULL)
					continue;
				if (why != NULL)
					prefix_of(t, slot, why);
				return t->routes[slot->route];
			}
			if (k-- == 0)
				break;
		}
	}
	return NULL;
}

size_t
routes_count(const struct route_table *t)
{
	return t->nroutes;
}

const struct route *
routes_get(const struct route_table *t, size_t i)
{
	return i < t->nroutes ? t->routes[i] : NULL;
}

struct route_table *
routes_ref(struct route_table *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void
routes_unref(struct route_table *t)
{
	size_t i;

	/* acq_rel: the last owner must see every other owner's writes. */
	if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) > 1)
		return;
	for (i = 0; i < t->nslots; i++)
		free((char *)t->slots[i].key.path);
	free(t->slots);
	for (i = 0; i < t->nroutes; i++)
		route_free(t->routes[i]);
	free(t->routes);
	free(t);
}
