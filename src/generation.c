/*
 * generation.c - loaded configurations, shared by the connections that
 * started under them.
 */
#include "generation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

struct generation *
generation_load(const char *path, unsigned number, char *err, size_t errlen)
{
	struct generation *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		snprintf(err, errlen, "%s: out of memory\n", path);
		return NULL;
	}
	g->cfg = config_load(path, err, errlen);
	if (g->cfg == NULL) {
		free(g);
		return NULL;
	}
	atomic_init(&g->refs, 1);
	g->number = number;
	g->loaded = time(NULL);
	return g;
}

struct generation *
generation_derive(struct generation *base, struct route_table *routes,
    unsigned number)
{
	struct generation *g = calloc(1, sizeof(*g));

	if (g == NULL || (g->cfg = malloc(sizeof(*g->cfg))) == NULL) {
		free(g);
		return NULL;
	}
	/* Every pointer in it is base's, which g holds; routes alone is g's. */
	*g->cfg = *base->cfg;
	g->cfg->routes = routes;
	g->base = generation_ref(base->base != NULL ? base->base : base);
	atomic_init(&g->refs, 1);
	g->number = number;
	g->loaded = time(NULL);
	return g;
}

struct generation *
generation_ref(struct generation *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void
generation_unref(struct generation *g)
{
	/* acq_rel: the last owner, on any thread, sees the others' writes. */
	if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1,
	    memory_order_acq_rel) > 1)
		return;
	if (g->base != NULL) {
		routes_unref(g->cfg->routes);
		free(g->cfg);
		generation_unref(g->base);
	} else
		config_free(g->cfg);
	free(g);
}

/* Two optional strings differ; NULL stands for absent. */
static int
differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

const char *
generation_needs_restart(const struct generation *cur,
    const struct generation *next)
{
	const struct config *a = cur->cfg, *b = next->cfg;

	if (a->workers != b->workers)
		return "workers";
	if (a->max_connections != b->max_connections)
		return "max_connections";
	if (a->max_pending != b->max_pending)
		return "max_pending";
	if (a->pipe_size != b->pipe_size)
		return "pipe_size";
	if (a->follow_sessions != b->follow_sessions)
		return "follow_sessions";
	if (a->backend_pool != b->backend_pool)
		return "backend_pool";
	if (a->backend_pool_timeout != b->backend_pool_timeout)
		return "backend_pool_timeout";
	if (a->backend_pool_settle != b->backend_pool_settle)
		return "backend_pool_settle";
	if (a->log_target != b->log_target)
		return "log";
	if (strcmp(a->access_log ? a->access_log : "off",
	    b->access_log ? b->access_log : "off") != 0)
		return "access_log";
	if (a->metrics != b->metrics ||
	    (a->metrics && !addr_equal(&a->metrics_addr, &b->metrics_addr)))
		return "metrics";
	/* The process dropped root for good at its start: it cannot become
	 * another user, and its pid file is the one it wrote then. */
	if (differs(a->user, b->user))
		return "user";
	if (differs(a->group, b->group))
		return "group";
	if (differs(a->pidfile, b->pidfile))
		return "pidfile";
	/* The socket is made before the privilege drop. */
	if (differs(a->control.path, b->control.path))
		return "control";
	if (a->control.mode != b->control.mode)
		return "control_mode";
	if (differs(a->control.group, b->control.group))
		return "control_group";
	return NULL;
}

/* The same certificate, or both without TLS. */
static int
same_tls(SSL_CTX *a, SSL_CTX *b)
{
	X509 *ca, *cb;

	if (a == NULL || b == NULL)
		return a == b;
	ca = SSL_CTX_get0_certificate(a);
	cb = SSL_CTX_get0_certificate(b);
	return ca != NULL && cb != NULL && X509_cmp(ca, cb) == 0;
}

/* next's route named as r is, or NULL.  By name, one pass per connection
 * pinned at a reload (routes_lookup finds Vias, not names): once per
 * reload, not per byte.  A registered route is the same only under the
 * same registration: its name is its prefix's, which the next instance of
 * a restarted service registers again, to another backend, and the old
 * instance's sessions run on (nettcpd(8) REGISTRATION). */
static const struct route *
same_route(const struct route *r, const struct generation *next)
{
	const struct route_table *t = next->cfg->routes;

	for (size_t i = 0; i < routes_count(t); i++) {
		const struct route *n = routes_get(t, i);

		if (n->reg_id == r->reg_id && strcmp(n->name, r->name) == 0)
			return n;
	}
	return NULL;
}

int
generation_policy_changed(const struct route *r, const struct generation *next)
{
	const struct route *n = same_route(r, next);

	if (n != NULL)
		return !backend_list_equal(&n->backends, &r->backends) ||
		    !same_tls(n->tls_ctx, r->tls_ctx);
	return r->reg_id == 0;
}

int
generation_refuses(const struct route *r, const struct generation *next,
    const struct sockaddr *client)
{
	const struct route *n = same_route(r, next);

	return acl_check(&next->cfg->acl, client) != ACL_PASS ||
	    (n != NULL && acl_check(&n->acl, client) != ACL_PASS);
}
