/*
 * config_route.c - route sections: their keys as they are read, then, at
 * the end of the file, the checks across routes and the route table itself,
 * with the TLS contexts of the routes that terminate TLS.
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>

#include "proxy_send.h"
#include "decimal.h"
#include "health.h"

static const char *const tls_keys[TLS_KEY_COUNT] = {
	[TK_CERT] = "tls_cert",
	[TK_KEY] = "tls_key",
	[TK_MIN_VERSION] = "tls_min_version",
	[TK_CIPHERS] = "tls_ciphers",
	[TK_CIPHERSUITES] = "tls_ciphersuites",
};

/* Which key a failed TLS setting was written with. */
static const enum tls_key tls_key_of_setting[] = {
	[TLS_SETTING_CERT] = TK_CERT,
	[TLS_SETTING_KEY] = TK_KEY,
	[TLS_SETTING_MIN_VERSION] = TK_MIN_VERSION,
	[TLS_SETTING_CIPHERS] = TK_CIPHERS,
	[TLS_SETTING_CIPHERSUITES] = TK_CIPHERSUITES,
};

#define TLS_DEFAULT_MIN_VERSION "1.2"

/* Whether name is one of the keys of a route's balance and health: balance,
 * fail_threshold, fail_timeout (1, read or in error), or another (0). */
static int
balance_key(struct parser *p, struct route_sect *r, const char *name,
    const char *value)
{
	const char *d = value;
	unsigned long n;
	int *line;

	if (strcmp(name, "balance") == 0)
		line = &r->balance_line;
	else if (strcmp(name, "fail_threshold") == 0)
		line = &r->fail_threshold_line;
	else if (strcmp(name, "fail_timeout") == 0)
		line = &r->fail_timeout_line;
	else
		return 0;
	if (*line != 0) {
		add_error(p, p->lineno, "duplicate key '%s' (first at line %d)",
		    name, *line);
		return 1;
	}
	*line = p->lineno;
	if (line == &r->balance_line) {
		if (balance_parse(value, &r->balance) < 0)
			add_error(p, p->lineno, "unknown balance '%s' (roundrobin, "
			    "leastconn or first)", value);
	} else if (line == &r->fail_threshold_line) {
		if (decimal_parse(&d, 1000000, &n) < 0 || *d != '\0' || n < 1)
			add_error(p, p->lineno, "bad fail_threshold '%s' (1 to "
			    "1000000 connects)", value);
		else
			r->fail_threshold = (unsigned)n;
	} else if (config_parse_duration(value, &r->fail_timeout) < 0 ||
	    r->fail_timeout <= 0) {
		add_error(p, p->lineno, "bad fail_timeout '%s' (a duration over 0, "
		    "e.g. 10s)", value);
	}
	return 1;
}

/* The keys of active checks, in route_sect's check_line order. */
static const char *const check_keys[] = {
	"check_interval", "check_timeout", "check_via", "rise", "fall",
};

/* Whether name is one of the keys of a route's active health checks (1,
 * read or in error), or another (0). */
static int
health_key(struct parser *p, struct route_sect *r, const char *name,
    const char *value)
{
	const char *d = value;
	unsigned long n;
	size_t k;

	/* Spelled out, as every other key, for t/test_docs.py to read. */
	if (strcmp(name, "check_interval") == 0)
		k = 0;
	else if (strcmp(name, "check_timeout") == 0)
		k = 1;
	else if (strcmp(name, "check_via") == 0)
		k = 2;
	else if (strcmp(name, "rise") == 0)
		k = 3;
	else if (strcmp(name, "fall") == 0)
		k = 4;
	else
		return 0;
	if (r->check_line[k] != 0) {
		add_error(p, p->lineno, "duplicate key '%s' (first at line %d)",
		    name, r->check_line[k]);
		return 1;
	}
	r->check_line[k] = p->lineno;
	switch (k) {
	case 0:
		/* off, or a duration: a check at most every 10 ms. */
		if (strcmp(value, "off") == 0)
			r->check_interval = 0;
		else if (config_parse_duration(value, &r->check_interval) < 0 ||
		    r->check_interval < 0.01)
			add_error(p, p->lineno, "bad check_interval '%s' (off, or "
			    "a duration of 10ms or more, e.g. 5s)", value);
		break;
	case 1:
		if (config_parse_duration(value, &r->check_timeout) < 0 ||
		    r->check_timeout < 0.01)
			add_error(p, p->lineno, "bad check_timeout '%s' (a "
			    "duration of 10ms or more, e.g. 2s)", value);
		break;
	case 2:
		if ((r->check_via = strdup(value)) == NULL)
			p->oom = 1;
		break;
	default:
		if (decimal_parse(&d, 1000, &n) < 0 || *d != '\0' || n < 1)
			add_error(p, p->lineno, "bad %s '%s' (1 to 1000 checks)",
			    name, value);
		else if (k == 3)
			r->rise = (unsigned)n;
		else
			r->fall = (unsigned)n;
		break;
	}
	return 1;
}

/* The Via a route's checks ask for when check_via is not set: its first
 * via, with a wildcard host (+ or *) named localhost. */
static char *
default_check_via(const struct route_sect *r)
{
	const char *text = r->vias[0].text, *host = strstr(text, "://");
	char *out;

	if (host == NULL || (host[3] != '+' && host[3] != '*') ||
	    (host[4] != '\0' && host[4] != ':' && host[4] != '/'))
		return strdup(text);
	host += 3;
	if ((out = malloc(strlen(text) + sizeof("localhost"))) == NULL)
		return NULL;
	sprintf(out, "%.*slocalhost%s", (int)(host - text), text, host + 1);
	return out;
}

/* A route's check settings into its list l, before the list goes into the
 * table. */
static void
build_route_checks(struct parser *p, struct route_sect *r,
    struct backend_list *l)
{
	for (size_t k = 1; k < sizeof(check_keys) / sizeof(*check_keys); k++)
		if (r->check_line[k] != 0 && r->check_interval <= 0)
			add_error(p, r->check_line[k], "%s without check_interval: "
			    "active checks are off in route [%s]", check_keys[k],
			    r->name);
	if (r->check_interval <= 0 || r->nvias == 0)
		return;
	l->check_interval = r->check_interval;
	l->check_timeout = r->check_line[1] ? r->check_timeout :
	    HEALTH_DEFAULT_TIMEOUT;
	l->rise = r->check_line[3] ? r->rise : HEALTH_DEFAULT_RISE;
	l->fall = r->check_line[4] ? r->fall : HEALTH_DEFAULT_FALL;
	if (r->check_via != NULL) {
		l->check_via = r->check_via;
		r->check_via = NULL;
	} else if ((l->check_via = default_check_via(r)) == NULL) {
		p->oom = 1;
	}
}

/* Once the table holds every prefix: check_via must route to route ri
 * (else its checks would judge another route's service). */
static void
check_route_via(struct parser *p, const struct route_sect *r,
    const struct route_table *t, size_t ri)
{
	const struct route *self = routes_get(t, ri), *to;
	const char *via = self->backends.check_via, *why;
	int line = r->check_line[2] ? r->check_line[2] : r->check_line[0];
	struct via v;

	if (via == NULL)
		return;
	if (strlen(via) > NMF_MAX_VIA) {
		add_error(p, line, "check_via is longer than %u bytes", NMF_MAX_VIA);
		return;
	}
	if (via_parse(via, strlen(via), 0, &v, &why) < 0) {
		add_error(p, line, "bad check_via '%s': %s", via, why);
		return;
	}
	to = routes_lookup(t, &v, v.port);
	if (to != self)
		add_error(p, line, "check_via '%s' %s%s%s, not to route [%s]",
		    via, to ? "routes to [" : "routes nowhere",
		    to ? to->name : "", to ? "]" : "", r->name);
}

void
route_key(struct parser *p, const char *name, const char *value)
{
	struct route_sect *r = &p->routes[p->cur_route];
	char why[256];

	if (strcmp(name, "via") == 0) {
		struct via_line *v;
		char *text = strdup(value);

		if (text == NULL) {
			p->oom = 1;
			return;
		}
		v = realloc(r->vias, (r->nvias + 1) * sizeof(*v));
		if (v == NULL) {
			free(text);
			p->oom = 1;
			return;
		}
		r->vias = v;
		v[r->nvias].text = text;
		v[r->nvias].line = p->lineno;
		r->nvias++;
	} else if (strcmp(name, "backend") == 0) {
		if (r->backend_line != 0) {
			add_error(p, p->lineno,
			    "duplicate key 'backend' (first at line %d)",
			    r->backend_line);
			return;
		}
		r->backend_line = p->lineno;
		r->backend_text = strdup(value);
		if (r->backend_text == NULL)
			p->oom = 1;
		else if (backend_list_parse(value, &r->backends, why,
		    sizeof(why)) < 0)
			add_error(p, p->lineno, "bad backend '%s': %s", value, why);
	} else if (balance_key(p, r, name, value) ||
	    health_key(p, r, name, value)) {
		return;
	} else if (strcmp(name, "tls") == 0) {
		if (r->tls_line != 0) {
			add_error(p, p->lineno,
			    "duplicate key 'tls' (first at line %d)", r->tls_line);
			return;
		}
		r->tls_line = p->lineno;
		if (strcmp(value, "terminate") == 0)
			r->tls_terminate = 1;
		else if (strcmp(value, "passthrough") != 0)
			add_error(p, p->lineno, "unknown tls '%s' (passthrough or "
			    "terminate)", value);
	} else if (strcmp(name, "allow") == 0) {
		config_acl_key(p, &r->allow, name, value);
	} else if (strcmp(name, "deny") == 0) {
		config_acl_key(p, &r->deny, name, value);
	} else if (strcmp(name, "pool") == 0) {
		if (r->pool_line != 0) {
			add_error(p, p->lineno,
			    "duplicate key 'pool' (first at line %d)", r->pool_line);
			return;
		}
		r->pool_line = p->lineno;
		if (strcmp(value, "off") == 0)
			r->pool_off = 1;
		else if (strcmp(value, "on") != 0)
			add_error(p, p->lineno, "bad pool '%s' (on or off)", value);
	} else if (strcmp(name, "send_proxy") == 0) {
		if (r->send_proxy_line != 0) {
			add_error(p, p->lineno, "duplicate key 'send_proxy' "
			    "(first at line %d)", r->send_proxy_line);
			return;
		}
		r->send_proxy_line = p->lineno;
		if (strcmp(value, "v1") == 0)
			r->send_proxy = PROXY_SEND_V1;
		else if (strcmp(value, "v2") == 0)
			r->send_proxy = PROXY_SEND_V2;
		else if (strcmp(value, "off") != 0)
			add_error(p, p->lineno, "bad send_proxy '%s' (off, v1 or "
			    "v2)", value);
	} else if (strcmp(name, "rewrite_via") == 0) {
		if (r->rewrite_via_line != 0) {
			add_error(p, p->lineno, "duplicate key 'rewrite_via' "
			    "(first at line %d)", r->rewrite_via_line);
			return;
		}
		r->rewrite_via_line = p->lineno;
		if (strcmp(value, "on") == 0)
			r->rewrite_via = 1;
		else if (strcmp(value, "off") != 0)
			add_error(p, p->lineno, "bad rewrite_via '%s' (on or off)",
			    value);
	} else {
		for (int k = 0; k < TLS_KEY_COUNT; k++) {
			if (strcmp(name, tls_keys[k]) != 0)
				continue;
			if (r->tls_value_line[k] != 0) {
				add_error(p, p->lineno, "duplicate key '%s' (first at "
				    "line %d)", name, r->tls_value_line[k]);
				return;
			}
			r->tls_value_line[k] = p->lineno;
			if (k == TK_CERT || k == TK_KEY)
				r->tls_value[k] = config_file_name(p, value);
			else if ((r->tls_value[k] = strdup(value)) == NULL)
				p->oom = 1;
			return;
		}
		add_error(p, p->lineno, "unknown key '%s' in route [%s]", name,
		    r->name);
	}
}

static int
route_name_cmp(const void *a, const void *b)
{
	const struct route_sect *x = *(const struct route_sect *const *)a;
	const struct route_sect *y = *(const struct route_sect *const *)b;
	int c = strcmp(x->name, y->name);

	return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/* Report every route section whose name an earlier section already took;
 * sorting keeps this fast with thousands of routes. */
void
check_route_names(struct parser *p)
{
	struct route_sect **sorted;
	size_t i;

	if (p->nroutes < 2)
		return;
	sorted = malloc(p->nroutes * sizeof(*sorted));
	if (sorted == NULL) {
		p->oom = 1;
		return;
	}
	for (i = 0; i < p->nroutes; i++)
		sorted[i] = &p->routes[i];
	qsort(sorted, p->nroutes, sizeof(*sorted), route_name_cmp);
	for (i = 1; i < p->nroutes; i++) {
		const struct route_sect *first = sorted[i - 1];

		while (i < p->nroutes && strcmp(sorted[i]->name, first->name) == 0) {
			add_error(p, sorted[i]->line, "duplicate route [%s] (first "
			    "at line %d)", sorted[i]->name, first->line);
			i++;
		}
	}
	free(sorted);
}

/* An existing context with exactly these settings, or a new one. */
static SSL_CTX *
tls_context(struct parser *p, struct route_sect *r)
{
	struct tls_settings ts;
	struct tls_cache_entry *e;
	enum tls_setting bad;
	char err[512], warn[256];
	const char *minv = r->tls_value[TK_MIN_VERSION];
	SSL_CTX *ctx;
	size_t i;
	int k;

	for (i = 0; i < p->ntls_cache; i++) {
		for (k = 0; k < TLS_KEY_COUNT; k++) {
			const char *a = p->tls_cache[i].value[k];
			const char *b = r->tls_value[k];

			if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
				break;
		}
		if (k == TLS_KEY_COUNT)
			return p->tls_cache[i].ctx;
	}

	ts.cert = r->tls_value[TK_CERT];
	ts.key = r->tls_value[TK_KEY];
	ts.min_version = tls_parse_min_version(minv ? minv : TLS_DEFAULT_MIN_VERSION);
	ts.ciphers = r->tls_value[TK_CIPHERS];
	ts.ciphersuites = r->tls_value[TK_CIPHERSUITES];
	ts.session_timeout = p->cfg->tls_session_timeout;
	if (ts.min_version < 0) {
		add_error(p, r->tls_value_line[TK_MIN_VERSION],
		    "unknown tls_min_version '%s' (1.2 or 1.3)", minv);
		return NULL;
	}
	ctx = tls_ctx_new(&ts, &bad, err, sizeof(err), warn, sizeof(warn));
	if (ctx == NULL) {
		int line = r->tls_value_line[tls_key_of_setting[bad]];

		add_error(p, line ? line : r->line, "%s", err);
		return NULL;
	}
	if (warn[0] != '\0')
		add_warning(p, r->tls_value_line[TK_CERT], "tls_cert '%s': %s",
		    ts.cert, warn);
	e = realloc(p->tls_cache, (p->ntls_cache + 1) * sizeof(*e));
	if (e == NULL) {
		SSL_CTX_free(ctx);
		p->oom = 1;
		return NULL;
	}
	p->tls_cache = e;
	e += p->ntls_cache++;
	e->ctx = ctx;
	for (k = 0; k < TLS_KEY_COUNT; k++)
		e->value[k] = r->tls_value[k];  /* owned by the route section */
	return ctx;
}

/* Check a section's TLS keys; give the route its context if it terminates. */
static void
build_route_tls(struct parser *p, struct route_sect *r, int ri)
{
	SSL_CTX *ctx;

	if (!r->tls_terminate) {
		for (int k = 0; k < TLS_KEY_COUNT; k++)
			if (r->tls_value_line[k] != 0)
				add_error(p, r->tls_value_line[k],
				    "'%s' needs tls = terminate", tls_keys[k]);
		return;
	}
	if (r->tls_value[TK_CERT] == NULL || r->tls_value[TK_KEY] == NULL) {
		add_error(p, r->line, "route [%s] has tls = terminate but no %s",
		    r->name, r->tls_value[TK_CERT] == NULL ? "tls_cert" : "tls_key");
		return;
	}
	ctx = tls_context(p, r);
	if (ctx != NULL)
		routes_set_tls(p->cfg->routes, ri, ctx);
}

/* The Via names a host and a port: a member without them (a unix socket)
 * has nothing to put there.  Returns 1 when every member has them. */
static int
rewrite_via_checked(struct parser *p, const struct route_sect *r,
    const struct route *route)
{
	for (size_t i = 0; i < route->backends.n; i++) {
		const struct backend_member *m = &route->backends.m[i];

		if (m->addr.ss.ss_family != AF_INET &&
		    m->addr.ss.ss_family != AF_INET6) {
			add_error(p, r->rewrite_via_line, "rewrite_via needs "
			    "host:port backends, not '%s'", m->text);
			return 0;
		}
	}
	return 1;
}

/*
 * Sections that are already in error still go into the table (with an
 * empty backend), so that a via they share with another route is reported
 * as well; a config with any error is thrown away.
 */
void
build_routes(struct parser *p)
{
	static const struct addr none;
	struct route_table *t = p->cfg->routes;
	struct via v;
	size_t i, j;

	for (i = 0; i < p->nroutes; i++) {
		struct route_sect *r = &p->routes[i];
		int ri;

		if (r->nvias == 0)
			add_error(p, r->line, "route [%s] has no via", r->name);
		if (r->backend_line == 0)
			add_error(p, r->line, "route [%s] has no backend",
			    r->name);
		ri = routes_add_route(t, r->name,
		    r->backends.n > 0 ? &r->backends.m[0].addr : &none,
		    r->backend_text != NULL ? r->backend_text : "");
		if (ri < 0) {
			p->oom = 1;
			return;
		}
		if (r->backends.n > 0) {
			r->backends.balance = r->balance;
			if (r->fail_threshold_line != 0)
				r->backends.fail_threshold = r->fail_threshold;
			if (r->fail_timeout_line != 0)
				r->backends.fail_timeout = r->fail_timeout;
			build_route_checks(p, r, &r->backends);
			routes_set_backends(t, ri, &r->backends);
		}
		build_route_tls(p, r, ri);
		if (r->pool_off)
			routes_set_pool_off(t, ri);
		if (r->deny != NULL)
			acl_compile(r->deny);
		if (r->allow != NULL)
			acl_compile(r->allow);
		routes_set_acl(t, ri, r->deny, r->allow);
		r->deny = r->allow = NULL;
		routes_set_send_proxy(t, ri, r->send_proxy);
		if (r->rewrite_via && rewrite_via_checked(p, r, routes_get(t,
		    (size_t)ri)))
			routes_set_rewrite_via(t, ri);
		for (j = 0; j < r->nvias; j++) {
			const struct via_line *vl = &r->vias[j];
			const char *why;
			int other = -1, rc;

			if (via_parse(vl->text, strlen(vl->text),
			    VIA_ALLOW_WILDCARD, &v, &why) < 0) {
				add_error(p, vl->line, "bad via '%s': %s",
				    vl->text, why);
				continue;
			}
			rc = routes_add_prefix(t, ri, &v, &other);
			if (rc == -2) {
				add_error(p, vl->line,
				    "via '%s' is already routed by [%s]", vl->text,
				    routes_get(t, (size_t)other)->name);
			} else if (rc < 0) {
				p->oom = 1;
				return;
			}
		}
	}
	for (i = 0; i < p->nroutes && i < routes_count(t); i++)
		check_route_via(p, &p->routes[i], t, i);
}
