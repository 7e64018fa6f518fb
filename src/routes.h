/*
 * routes.h - the route table: Via prefixes to backends.
 *
 * A table is built once from the configuration and never changes; a reload
 * builds a new one and swaps the pointer.  Connections hold a reference, so
 * a table lives until its last connection is gone.
 *
 * Matching follows WCF's UriPrefixTable as SMSvcHost uses it: host classes
 * are tried strong (+), exact, weak (*), and the first class with any match
 * decides; inside a class the longest prefix by whole path segments wins;
 * a route's port, when it has one, is compared with the local port the
 * connection arrived on, never with the port in the Via.  At equal depth a
 * route with a port beats one without.  Lookups are hash probes, one per
 * (class, port, prefix length), so cost grows with the Via's depth, not
 * with the number of routes.
 */
#ifndef NETTCPD_ROUTES_H
#define NETTCPD_ROUTES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "acl.h"
#include "addr.h"
#include "backend.h"
#include "via.h"

struct handoff_sink;

/* One route: a named backend, reached by one or more prefixes.  The
 * tables built for registrations (registry.c) share the routes of the
 * table they were cloned from. */
struct route {
	atomic_uint refs;          /* the tables holding it */
	uint64_t reg_id;           /* a registration's (registry.h); 0: static */
	char *name;                /* the config section */
	struct backend_list backends; /* its members, their balance and health */
	char *backend_text;        /* as written in the config, for logs */
	SSL_CTX *tls_ctx;          /* terminate the ssl-tls upgrade; NULL: pass it through */
	uint32_t stats_slot;       /* its counters (stats.h), by name */
	uint8_t pool_off;          /* pool = off: a new backend connection */
	                           /* per session, closed at its end */
	struct acl_rules acl;      /* allow and deny; a NULL list: none */
	uint8_t send_proxy;        /* enum proxy_send_version: a PROXY header */
	                           /* on each new backend connection */
	uint8_t rewrite_via;       /* the replayed Via names the backend */
	struct handoff_sink *handoff; /* a handoff registration's: its */
	                           /* clients go to the registrant */
	                           /* (handoff.h); NULL: proxied */
};

struct route_table;

/* Build an empty table; NULL on allocation failure. */
struct route_table *routes_new(void);

/*
 * Add a route (copied; the table owns the copy), with backend its one
 * member, and return its index, or -1 on allocation failure.
 */
int routes_add_route(struct route_table *t, const char *name,
    const struct addr *backend, const char *backend_text);

/* Make route ri terminate TLS with ctx (the table takes its own reference). */
void routes_set_tls(struct route_table *t, int ri, SSL_CTX *ctx);

/* Give route ri the members of l (moved: l is left empty). */
void routes_set_backends(struct route_table *t, int ri, struct backend_list *l);

/* pool = off for route ri: its sessions neither take nor leave pooled
 * backend connections. */
void routes_set_pool_off(struct route_table *t, int ri);

/* Route ri's allow and deny lists, compiled (the table takes them; NULL:
 * none). */
void routes_set_acl(struct route_table *t, int ri, struct acl *deny,
    struct acl *allow);

/* send_proxy = v1 | v2 (enum proxy_send_version) for route ri. */
void routes_set_send_proxy(struct route_table *t, int ri, int version);

/* rewrite_via = on for route ri. */
void routes_set_rewrite_via(struct route_table *t, int ri);

/*
 * A new table holding t's routes (shared) and prefixes, for a registration
 * to be added to; NULL on allocation failure.
 */
struct route_table *routes_clone(const struct route_table *t);

/* Route ri is registration reg_id's, with the policy of route policy
 * (NULL: none): its TLS, pool, allow and deny, send_proxy, rewrite_via.
 * Returns 0, or -1 on allocation failure. */
int routes_set_registered(struct route_table *t, int ri, uint64_t reg_id,
    const struct route *policy);

/* The route of the deepest prefix of t that covers prefix (same host
 * class and host, its port or none, a path of whole leading segments),
 * the prefix itself excepted; NULL for none. */
const struct route *routes_covering(const struct route_table *t,
    const struct via *prefix);
/* Route ri hands its clients to sink's registrant (the table takes its
 * own reference). */
void routes_set_handoff(struct route_table *t, int ri, struct handoff_sink *sink);

/* Count route i under slot (stats_route_slot of its name). */
void routes_set_stats_slot(struct route_table *t, size_t i, uint32_t slot);

/*
 * Add a prefix for route index ri.  prefix is a parsed VIA_ALLOW_WILDCARD URI.
 * Returns 0, -1 on allocation failure, or -2 when the same prefix (class,
 * host, port, path) is already in the table; then *other_route, if not NULL,
 * is set to the index of the route that holds it.
 */
int routes_add_prefix(struct route_table *t, int ri, const struct via *prefix,
    int *other_route);

/*
 * Find the route for a parsed Via that arrived on local_port.  Allocates
 * nothing.  Returns NULL when no prefix matches.
 */
const struct route *routes_lookup(const struct route_table *t,
    const struct via *via, uint16_t local_port);

size_t routes_count(const struct route_table *t);
const struct route *routes_get(const struct route_table *t, size_t i);

/* One prefix of the table, as routes_prefix() and routes_explain() tell it. */
struct route_prefix {
	enum via_host_class host_class;
	const char *host;            /* the exact class only, else "" */
	uint16_t port;               /* 0: every listener */
	const char *path;            /* normalised, "" for the root */
	const struct route *route;
};

/* The table's prefixes, i from 0 to routes_nprefixes() - 1, in no order. */
size_t routes_nprefixes(const struct route_table *t);
void routes_prefix(const struct route_table *t, size_t i, struct route_prefix *out);

/* routes_lookup(), saying which prefix matched in *why; NULL for none. */
const struct route *routes_explain(const struct route_table *t,
    const struct via *via, uint16_t local_port, struct route_prefix *why);

/* Reference counting; routes_new() returns a table holding one reference. */
struct route_table *routes_ref(struct route_table *t);
void routes_unref(struct route_table *t);

#endif
