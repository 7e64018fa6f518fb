/*
 * explain.c - the route table in words (nettcpd -t -v) and one Via's way
 * through it (nettcpd -t --route VIA).
 */
#include "explain.h"

#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "log.h"
#include "routes.h"
#include "via.h"

static const char *const class_names[] = {
	[VIA_HOST_STRONG] = "strong",
	[VIA_HOST_EXACT] = "exact",
	[VIA_HOST_WEAK] = "weak",
};

void
explain_prefix_text(const struct route_prefix *p, char *out, size_t len)
{
	char port[8] = "";

	if (p->port != 0)
		snprintf(port, sizeof(port), ":%u", p->port);
	snprintf(out, len, "net.tcp://%s%s%s", p->host_class == VIA_HOST_STRONG ?
	    "+" : p->host_class == VIA_HOST_WEAK ? "*" : p->host, port,
	    p->path[0] != '\0' ? p->path : "/");
}

static int
by_route(const void *a, const void *b)
{
	const struct route_prefix *x = a, *y = b;
	int c = strcmp(x->route->name, y->route->name);

	if (c == 0)
		c = (int)x->host_class - (int)y->host_class;
	if (c == 0)
		c = strcmp(x->host, y->host);
	if (c == 0)
		c = (int)x->port - (int)y->port;
	return c != 0 ? c : strcmp(x->path, y->path);
}

void
explain_table(FILE *out, const struct config *cfg)
{
	const struct route_table *t = cfg->routes;
	size_t n = routes_nprefixes(t), i;
	struct route_prefix *all = calloc(n > 0 ? n : 1, sizeof(*all));
	char text[VIA_HOST_MAX + VIA_PATH_MAX + 32];

	if (all == NULL) {
		fprintf(out, "out of memory\n");
		return;
	}
	for (i = 0; i < n; i++)
		routes_prefix(t, i, &all[i]);
	qsort(all, n, sizeof(*all), by_route);
	fprintf(out, "%zu %s, %zu %s (class: strong + first, then exact "
	    "hosts, then weak *; the longest prefix wins inside a class):\n",
	    routes_count(t), log_plural(routes_count(t), "route", "routes"), n,
	    log_plural(n, "prefix", "prefixes"));
	for (i = 0; i < n; i++) {
		explain_prefix_text(&all[i], text, sizeof(text));
		fprintf(out, "  %-6s  %-40s -> [%s] %s%s\n",
		    class_names[all[i].host_class], text, all[i].route->name,
		    all[i].route->backend_text,
		    all[i].route->tls_ctx != NULL ? " (tls = terminate)" : "");
	}
	free(all);
}

int
explain_via(FILE *out, const struct config *cfg, const char *text)
{
	struct via *via = malloc(sizeof(*via));
	struct route_prefix why;
	char prefix[VIA_HOST_MAX + VIA_PATH_MAX + 32];
	const char *err;
	int missed = 0;

	if (via == NULL || via_parse(text, strlen(text), 0, via, &err) < 0) {
		fprintf(out, "'%s': not a Via nettcpd routes (%s): the client's "
		    "connection would be reset\n", text, via ? err : "out of memory");
		free(via);
		return 1;
	}
	for (size_t i = 0; i < cfg->nlistens; i++) {
		uint16_t port = addr_port((const struct sockaddr *)&cfg->listens[i].addr.ss);
		const struct route *r;
		int seen = 0;

		/* Each port once: the route depends on the port, not the address. */
		for (size_t j = 0; j < i; j++)
			seen |= addr_port((const struct sockaddr *)
			    &cfg->listens[j].addr.ss) == port;
		if (seen)
			continue;
		r = routes_explain(cfg->routes, via, port, &why);
		if (r == NULL) {
			fprintf(out, "on port %u: no route, EndpointNotFound\n", port);
			missed = 1;
			continue;
		}
		explain_prefix_text(&why, prefix, sizeof(prefix));
		fprintf(out, "on port %u: route [%s] -> %s%s, by the %s prefix %s\n",
		    port, r->name, r->backend_text, r->tls_ctx != NULL ?
		    " (tls = terminate: the client must ask for TLS)" : "",
		    class_names[why.host_class], prefix);
	}
	free(via);
	return missed;
}
