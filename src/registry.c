/*
 * registry.c - routes registered at runtime (registry.h): the list, and
 * the generation built from the file's routes and it.
 */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "explain.h"
#include "log.h"
#include "routes.h"
#include "stats.h"
#include "via.h"

/* Main thread only; ids are never reused in a process's life. */
static struct registration *regs;
static uint64_t last_id;

/* The file's generation under g (a registry-built one holds it). */
static struct generation *
file_gen(struct generation *g)
{
	return g->base != NULL ? g->base : g;
}

/*
 * Add reg's route to t (a clone of the file's table).  Returns
 * CTL_E_COUNT_, or an ERR code with why.
 */
static enum ctl_code
add_route(struct route_table *t, const struct registration *reg, char *why,
    size_t len)
{
	static struct via v;       /* 9 KiB: not on the stack */
	static const struct addr none;
	struct backend_list l = { 0 };
	const struct route *policy;
	const char *bad;
	int ri, other = -1, rc;

	if (via_parse(reg->prefix, strlen(reg->prefix), VIA_ALLOW_WILDCARD, &v,
	    &bad) < 0) {
		snprintf(why, len, "bad via prefix: %s", bad);
		return CTL_E_VIA;
	}
	policy = routes_covering(t, &v);
	if (policy != NULL && policy->reg_id != 0)
		policy = NULL;  /* only a static route's policy is inherited */
	if (reg->sink != NULL && policy != NULL && policy->tls_ctx != NULL) {
		snprintf(why, len, "handoff refused: the covering route [%s] "
		    "terminates TLS", policy->name);
		return CTL_E_TLS;
	}
	/* A handoff route has no member to dial: its clients leave. */
	if (reg->sink == NULL && backend_list_parse(reg->backend, &l, why,
	    len) < 0)
		return CTL_E_BACKEND;
	if ((ri = routes_add_route(t, reg->name, reg->sink != NULL ? &none :
	    &l.m[0].addr, reg->backend)) < 0)
		goto oom;
	if (reg->sink != NULL)
		routes_set_handoff(t, ri, reg->sink);
	else
		routes_set_backends(t, ri, &l);
	if (routes_set_registered(t, ri, reg->id, policy) < 0)
		goto oom;
	rc = routes_add_prefix(t, ri, &v, &other);
	if (rc == -2) {
		const struct route *o = routes_get(t, (size_t)other);

		snprintf(why, len, "%s is held by %s route [%s]", reg->prefix,
		    o->reg_id != 0 ? "registered" : "static", o->name);
		return CTL_E_CONFLICT;
	}
	if (rc < 0)
		goto oom;
	return CTL_E_COUNT_;
oom:
	backend_list_free(&l);
	snprintf(why, len, "out of memory");
	return CTL_E_LIMIT;
}

/*
 * The table of base's routes and every registration (cand too, if not
 * NULL).  A registration that does not fit is reported through why/code
 * when it is cand; any other (a reload's static route took its prefix) is
 * passed to drop(), which may remove it.  NULL with *code set on failure.
 */
static struct route_table *
build(struct generation *base, const struct registration *cand,
    enum ctl_code *code, char *why, size_t len,
    void (*drop)(struct registration *r, const char *why))
{
	struct route_table *t = routes_clone(base->cfg->routes);
	struct registration *r, *next;
	char reason[256];

	*code = CTL_E_LIMIT;
	if (t == NULL) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	for (r = regs; r != NULL; r = next) {
		enum ctl_code c;

		next = r->next;
		/* a route that failed leaves no prefix, only an unused route */
		if ((c = add_route(t, r, reason, sizeof(reason))) ==
		    CTL_E_COUNT_)
			continue;
		if (drop == NULL) {
			/* every listed one went in before: only memory fails */
			snprintf(why, len, "%s", reason);
			*code = c;
			routes_unref(t);
			return NULL;
		}
		drop(r, reason);
	}
	if (cand != NULL && (*code = add_route(t, cand, why, len)) !=
	    CTL_E_COUNT_) {
		routes_unref(t);
		return NULL;
	}
	*code = CTL_E_COUNT_;
	return t;
}

/* Make t the routes of the next generation and hand it to every worker. */
static int
publish(struct daemon *d, struct route_table *t)
{
	struct generation *g = generation_derive(file_gen(d->gen), t,
	    d->gen->number + 1);

	if (g == NULL) {
		routes_unref(t);
		return -1;
	}
	generation_unref(d->gen);
	d->gen = g;
	stats_bind_routes(t);
	daemon_count_generation(d, 0);
	for (unsigned i = 0; i < d->nworkers; i++)
		worker_publish(&d->workers[i], g, d->socks, d->nsocks);
	return 0;
}

/* A handoff registration's sink takes no client from here on; those sent
 * wait for their TAKEN (handoff.h). */
static void
reg_free(struct registration *r)
{
	if (r == NULL)
		return;
	if (r->sink != NULL)
		handoff_sink_close(r->sink);
	free(r->prefix);
	free(r->name);
	free(r->backend);
	free(r);
}

/*
 * A registered route's name: "reg:" and its prefix as nettcpctl list shows
 * it.  Named by the prefix, not by the registration, a service that
 * registers again after a restart counts on under the same name in
 * /metrics and the access log, and the names a process ever holds are as
 * many as the prefixes ever registered, not as the registrations (a fleet
 * restarting its instances all day would otherwise grow every worker's
 * per-route counters and /metrics without end).  Two live registrations
 * never share a prefix, so never a name.
 */
static enum ctl_code
reg_name(struct registration *r, char *why, size_t len)
{
	struct via *v = malloc(sizeof(*v));
	char *text = malloc(VIA_HOST_MAX + VIA_PATH_MAX + 32);
	const char *bad;
	enum ctl_code code = CTL_E_COUNT_;

	if (v == NULL || text == NULL) {
		snprintf(why, len, "out of memory");
		code = CTL_E_LIMIT;
	} else if (via_parse(r->prefix, strlen(r->prefix), VIA_ALLOW_WILDCARD,
	    v, &bad) < 0) {
		snprintf(why, len, "bad via prefix: %s", bad);
		code = CTL_E_VIA;
	} else {
		struct route_prefix rp = { .host_class = v->host_class,
		    .host = v->host, .port = v->port, .path = v->path };

		explain_prefix_text(&rp, text, VIA_HOST_MAX + VIA_PATH_MAX + 32);
		if (asprintf(&r->name, "reg:%s", text) < 0) {
			r->name = NULL;
			snprintf(why, len, "out of memory");
			code = CTL_E_LIMIT;
		}
	}
	free(text);
	free(v);
	return code;
}

enum ctl_code
registry_add(struct daemon *d, void *owner, struct handoff_peer *hpeer,
    uint32_t uid, int32_t pid, const char *prefix, const char *backend,
    uint64_t *id, char *why, size_t len)
{
	*id = last_id + 1;
	return registry_restore(d, owner, hpeer, uid, pid, prefix, backend, *id,
	    why, len);
}

enum ctl_code
registry_restore(struct daemon *d, void *owner, struct handoff_peer *hpeer,
    uint32_t uid, int32_t pid, const char *prefix, const char *backend,
    uint64_t id, char *why, size_t len)
{
	struct registration *r = calloc(1, sizeof(*r));
	struct route_table *t;
	enum ctl_code code = CTL_E_LIMIT;

	if (r == NULL || (r->prefix = strdup(prefix)) == NULL ||
	    (r->backend = strdup(backend != NULL ? backend : "handoff")) ==
	    NULL) {
		snprintf(why, len, "out of memory");
		goto fail;
	}
	r->id = id;
	r->mode = backend != NULL ? CTL_MODE_PROXY : CTL_MODE_HANDOFF;
	if ((code = reg_name(r, why, len)) != CTL_E_COUNT_)
		goto fail;
	code = CTL_E_LIMIT;
	if (backend == NULL &&
	    (r->sink = handoff_sink_new(hpeer, r->id, r->name)) == NULL) {
		snprintf(why, len, "out of memory");
		goto fail;
	}
	r->uid = uid;
	r->pid = pid;
	r->owner = owner;
	if ((t = build(file_gen(d->gen), r, &code, why, len, NULL)) == NULL)
		goto fail;
	if (publish(d, t) < 0) {
		snprintf(why, len, "out of memory");
		code = CTL_E_LIMIT;
		goto fail;
	}
	if (r->id > last_id)
		last_id = r->id;
	r->next = regs;
	regs = r;
	log_notice("registered %s for uid %u pid %d: route [%s] (id %llu) to "
	    "%s, generation %u", prefix, uid, (int)pid, r->name,
	    (unsigned long long)r->id, r->backend, d->gen->number);
	return CTL_E_COUNT_;
fail:
	reg_free(r);
	return code;
}

/* Unlink every registration of owner (any id, or only id); how many. */
static size_t
unlink_regs(const void *owner, uint64_t id)
{
	struct registration **pp = &regs, *r;
	size_t n = 0;

	while ((r = *pp) != NULL) {
		if (r->owner == owner && (id == 0 || r->id == id)) {
			*pp = r->next;
			log_notice("unregistered %s (route [%s], id %llu, uid %u "
			    "pid %d)", r->prefix, r->name,
			    (unsigned long long)r->id, r->uid, (int)r->pid);
			reg_free(r);
			n++;
		} else
			pp = &r->next;
	}
	return n;
}

/* The registrations changed: publish what is left. */
static void
republish(struct daemon *d)
{
	enum ctl_code code;
	char why[256];
	struct route_table *t = build(file_gen(d->gen), NULL, &code, why,
	    sizeof(why), NULL);

	if (t == NULL || publish(d, t) < 0)
		log_err("registrations changed but cannot publish them: %s; "
		    "generation %u goes on serving", t == NULL ? why :
		    "out of memory", d->gen->number);
}

int
registry_remove(struct daemon *d, void *owner, uint64_t id)
{
	if (id == 0 || unlink_regs(owner, id) == 0)
		return -1;
	republish(d);
	return 0;
}

void
registry_remove_owner(struct daemon *d, void *owner)
{
	if (unlink_regs(owner, 0) > 0)
		republish(d);
}

size_t
registry_count_owner(const void *owner)
{
	size_t n = 0;

	for (const struct registration *r = regs; r != NULL; r = r->next)
		n += r->owner == owner;
	return n;
}

size_t
registry_count(enum ctl_mode mode)
{
	size_t n = 0;

	for (const struct registration *r = regs; r != NULL; r = r->next)
		n += r->mode == mode;
	return n;
}

const struct registration *
registry_of(uint64_t reg_id)
{
	for (const struct registration *r = regs; r != NULL; r = r->next)
		if (r->id == reg_id)
			return r;
	return NULL;
}

/* A reload's static route holds r's prefix: the file wins, once the
 * reload is published (registry_commit). */
static void
mark_revoked(struct registration *r, const char *why)
{
	r->revoked = 1;
	snprintf(r->why, sizeof(r->why), "%s", why);
}

struct generation *
registry_apply(struct generation *next)
{
	struct route_table *t;
	struct generation *g;
	enum ctl_code code;
	char why[256];

	if (regs == NULL)
		return next;
	for (struct registration *r = regs; r != NULL; r = r->next)
		r->revoked = 0;
	if ((t = build(next, NULL, &code, why, sizeof(why), mark_revoked)) ==
	    NULL)
		return NULL;
	if ((g = generation_derive(next, t, next->number)) == NULL) {
		routes_unref(t);
		return NULL;
	}
	generation_unref(next);
	return g;
}

void
registry_commit(registry_revoke_fn *revoke)
{
	struct registration **pp = &regs, *r;

	while ((r = *pp) != NULL) {
		if (!r->revoked) {
			pp = &r->next;
			continue;
		}
		log_warn("reload: registration %llu of uid %u pid %d (%s) "
		    "revoked: %s", (unsigned long long)r->id, r->uid, (int)r->pid,
		    r->prefix, r->why);
		revoke(r->owner, r->id, r->why);
		*pp = r->next;
		reg_free(r);
	}
}

void
registry_free(void)
{
	while (regs != NULL) {
		struct registration *r = regs;

		regs = r->next;
		reg_free(r);
	}
}

void
registry_each(void (*fn)(void *arg, const struct registration *r), void *arg)
{
	for (const struct registration *r = regs; r != NULL; r = r->next)
		fn(arg, r);
}

uint64_t
registry_next_id(void)
{
	return last_id + 1;
}

void
registry_set_next_id(uint64_t id)
{
	if (id > last_id + 1)
		last_id = id - 1;
}
