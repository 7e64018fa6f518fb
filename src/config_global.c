/*
 * config_global.c - the keys of [global], each parsed into struct config as
 * it is read, with the value parsers they use (counts, sizes, durations,
 * listen addresses), and the checks that wait for the whole section: the
 * default listen, metrics against the listen addresses, user and group.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "decimal.h"

#define DURATION_MAX (24.0 * 3600.0)
#define COUNT_MAX 1000000u

static const char *const global_keys[GK_COUNT] = {
	[GK_LISTEN] = "listen",
	[GK_LISTEN_PROXY] = "listen_proxy",
	[GK_PROXY_TRUSTED] = "proxy_trusted",
	[GK_PROXY_TIMEOUT] = "proxy_timeout",
	[GK_PREAMBLE_TIMEOUT] = "preamble_timeout",
	[GK_CONNECT_TIMEOUT] = "connect_timeout",
	[GK_IDLE_TIMEOUT] = "idle_timeout",
	[GK_KEEPALIVE_TIMEOUT] = "keepalive_timeout",
	[GK_PINNED_TIMEOUT] = "pinned_timeout",
	[GK_MAX_CONNECTIONS] = "max_connections",
	[GK_MAX_PENDING] = "max_pending",
	[GK_HANDOFF_TIMEOUT] = "handoff_timeout",
	[GK_HANDOFF_MAX_PENDING] = "handoff_max_pending",
	[GK_FORWARD] = "forward",
	[GK_LOG] = "log",
	[GK_LOG_LEVEL] = "log_level",
	[GK_LOG_CLIENT_LINES] = "log_client_lines",
	[GK_WORKERS] = "workers",
	[GK_PIPE_SIZE] = "pipe_size",
	[GK_FOLLOW_SESSIONS] = "follow_sessions",
	[GK_BACKEND_POOL] = "backend_pool",
	[GK_BACKEND_POOL_TIMEOUT] = "backend_pool_timeout",
	[GK_BACKEND_POOL_SETTLE] = "backend_pool_settle",
	[GK_TLS_SESSION_TIMEOUT] = "tls_session_timeout",
	[GK_SHUTDOWN_TIMEOUT] = "shutdown_timeout",
	[GK_ACCESS_LOG] = "access_log",
	[GK_METRICS] = "metrics",
	[GK_USER] = "user",
	[GK_GROUP] = "group",
	[GK_PIDFILE] = "pidfile",
	[GK_ALLOW] = "allow",
	[GK_DENY] = "deny",
};

/* Strict decimal min..COUNT_MAX: no sign, no spaces, no suffix. */
static int
parse_count_from(const char *s, unsigned long min, unsigned *out)
{
	unsigned long v;

	if (decimal_parse(&s, COUNT_MAX, &v) < 0 || *s != '\0' || v < min)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int
parse_count(const char *s, unsigned *out)
{
	return parse_count_from(s, 1, out);
}

/* A byte count: digits, optionally k or m; 0, or 4 KiB to 64 MiB. */
static int
parse_size(const char *s, unsigned *out)
{
	unsigned long v, unit = 1;

	if (decimal_parse(&s, CONFIG_MAX_PIPE_SIZE, &v) < 0)
		return -1;
	if (*s == 'k' || *s == 'm')
		unit = *s++ == 'k' ? 1024 : 1024 * 1024;
	if (*s != '\0' || v > CONFIG_MAX_PIPE_SIZE / unit)
		return -1;
	v *= unit;
	if (v != 0 && v < 4096)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int
config_parse_duration(const char *text, double *out)
{
	/* value = digits / 10^decimals * mul / div, rounded once at the end */
	static const struct {
		const char *suffix;
		double mul, div;
	} units[] = {
		{ "", 1.0, 1.0 },
		{ "ms", 1.0, 1000.0 },
		{ "s", 1.0, 1.0 },
		{ "m", 60.0, 1.0 },
		{ "h", 3600.0, 1.0 },
	};
	const char *s = text;
	double mant = 0.0, div = 1.0, v;
	size_t i;

	if (*s < '0' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9')
		mant = mant * 10.0 + (*s++ - '0');
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -1;
		while (*s >= '0' && *s <= '9') {
			mant = mant * 10.0 + (*s++ - '0');
			div *= 10.0;
		}
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(s, units[i].suffix) == 0)
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		return -1;
	v = mant * units[i].mul / (div * units[i].div);
	/* written so that a NaN from absurdly many digits fails too */
	if (!(v > 0.0 && v <= DURATION_MAX))
		return -1;
	*out = v;
	return 0;
}

static int
same_addr(const struct addr *a, const struct addr *b)
{
	/* addr_parse() zeroes the padding, so the bytes compare */
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static void
add_listen(struct parser *p, char *text, int line, int proxy)
{
	struct config *cfg = p->cfg;
	struct listen_cfg *l;
	struct addr a;
	char why[256];
	int *lines;
	size_t i;

	if (addr_parse(text, 0, &a, why, sizeof(why)) < 0) {
		add_error(p, line, "bad %s address '%s': %s",
		    proxy ? "listen_proxy" : "listen", text, why);
		goto fail;
	}
	for (i = 0; i < cfg->nlistens; i++)
		if (same_addr(&a, &cfg->listens[i].addr)) {
			add_error(p, line,
			    "duplicate listen address '%s' (first at line %d)",
			    text, p->listen_lines[i]);
			goto fail;
		}
	l = realloc(cfg->listens, (cfg->nlistens + 1) * sizeof(*l));
	if (l == NULL)
		goto oom;
	cfg->listens = l;
	lines = realloc(p->listen_lines, (cfg->nlistens + 1) * sizeof(*lines));
	if (lines == NULL)
		goto oom;
	p->listen_lines = lines;
	l[cfg->nlistens].addr = a;
	l[cfg->nlistens].text = text;
	l[cfg->nlistens].proxy = proxy;
	lines[cfg->nlistens] = line;
	cfg->nlistens++;
	return;
oom:
	p->oom = 1;
fail:
	free(text);
}

static void
add_plain_listen(struct parser *p, char *text, int line)
{
	add_listen(p, text, line, 0);
}

static void
add_proxy_listen(struct parser *p, char *text, int line)
{
	add_listen(p, text, line, 1);
}

/* A list value (listen, listen_proxy) is comma-separated;
 * whitespace around items is not part of them.  Each item, a copy, goes
 * to add, which owns it. */
static void
add_items(struct parser *p, const char *key, const char *value, int line,
    void (*add)(struct parser *, char *, int))
{
	const char *s = value;

	for (;;) {
		const char *comma = strchr(s, ',');
		const char *end = comma != NULL ? comma : s + strlen(s);

		while (s < end && isspace((unsigned char)*s))
			s++;
		while (end > s && isspace((unsigned char)end[-1]))
			end--;
		if (s == end) {
			add_error(p, line, "empty address in %s '%s'", key, value);
		} else {
			char *item = strndup(s, (size_t)(end - s));

			if (item == NULL)
				p->oom = 1;
			else
				add(p, item, line);
		}
		if (comma == NULL)
			break;
		s = comma + 1;
	}
}

void
add_listens(struct parser *p, const char *value, int line)
{
	add_items(p, "listen", value, line, add_plain_listen);
}

/*
 * A listen_proxy address a balancer on another host would dial, with
 * proxy_trusted left at its default (this host only): every connection
 * from that balancer would be reset.  Said by -t, not refused: the
 * balancer may run on this host and dial a public address.
 */
void
check_proxy_trusted(struct parser *p)
{
	const struct config *cfg = p->cfg;

	if (p->key_line[GK_PROXY_TRUSTED] != 0)
		return;
	for (size_t i = 0; i < cfg->nlistens; i++)
		if (cfg->listens[i].proxy && !acl_match(cfg->proxy_trusted,
		    (const struct sockaddr *)&cfg->listens[i].addr.ss))
			add_warning(p, p->listen_lines[i], "listen_proxy %s is not a "
			    "loopback address, but proxy_trusted is left at its "
			    "default (%s): a balancer on another host is reset; "
			    "list its addresses in proxy_trusted",
			    cfg->listens[i].text, CONFIG_DEFAULT_PROXY_TRUSTED);
}

/* metrics = off | ADDR:PORT: its own listener, never a shared port. */
static void
metrics_key(struct parser *p, const char *value)
{
	struct config *cfg = p->cfg;
	char why[128];

	cfg->metrics = 0;
	if (strcmp(value, "off") == 0)
		return;

	if (addr_parse(value, 0, &cfg->metrics_addr, why, sizeof(why)) < 0) {
		add_error(p, p->lineno, "bad metrics '%s' (off, or IPv4:port or "
		    "[IPv6]:port): %s", value, why);
		return;
	}
	cfg->metrics = 1;
}

/* The metrics listener may share no address with the NMF listeners. */
void
check_metrics(struct parser *p)
{
	const struct config *cfg = p->cfg;

	if (!cfg->metrics)
		return;
	for (size_t i = 0; i < cfg->nlistens; i++)
		if (addr_equal(&cfg->listens[i].addr, &cfg->metrics_addr))
			add_error(p, p->key_line[GK_METRICS], "metrics address is "
			    "also a listen address (%s): it needs its own port",
			    cfg->listens[i].text);
}

/* A user or group name, checked by resolve_accounts(); a second one is
 * refused as a duplicate key before it gets here. */
static void
set_account(struct parser *p, char **out, const char *name, const char *value)
{
	if (value[0] == '\0')
		add_error(p, p->lineno, "empty %s", name);
	else if ((*out = strdup(value)) == NULL)
		p->oom = 1;
}

/*
 * user and group to ids, once the whole [global] is read (group may come
 * first): an account that does not exist is an error at its line, so
 * that nettcpd -t finds it before a start does.
 */
void
resolve_accounts(struct parser *p)
{
	struct config *cfg = p->cfg;
	const struct passwd *pw;
	const struct group *gr;

	if (cfg->group != NULL && cfg->user == NULL)
		add_error(p, p->key_line[GK_GROUP], "'group' needs 'user'");
	if (cfg->user == NULL)
		return;
	errno = 0;
	if ((pw = getpwnam(cfg->user)) == NULL) {
		add_error(p, p->key_line[GK_USER], "unknown user '%s'%s%s",
		    cfg->user, errno != 0 ? ": " : "",
		    errno != 0 ? strerror(errno) : "");
		return;
	}
	cfg->uid = pw->pw_uid;
	cfg->gid = pw->pw_gid;
	if (cfg->group == NULL)
		return;
	errno = 0;
	if ((gr = getgrnam(cfg->group)) == NULL)
		add_error(p, p->key_line[GK_GROUP], "unknown group '%s'%s%s",
		    cfg->group, errno != 0 ? ": " : "",
		    errno != 0 ? strerror(errno) : "");
	else
		cfg->gid = gr->gr_gid;
}

void
global_key(struct parser *p, const char *name, const char *value)
{
	struct config *cfg = p->cfg;
	int k, level;

	if (control_key(p, name, value))
		return;
	for (k = 0; k < GK_COUNT; k++)
		if (strcmp(name, global_keys[k]) == 0)
			break;
	if (k == GK_COUNT) {
		add_error(p, p->lineno, "unknown key '%s' in [global]", name);
		return;
	}
	/* Lists may take several lines, each adding to the one list. */
	if (k != GK_LISTEN && k != GK_LISTEN_PROXY && k != GK_ALLOW &&
	    k != GK_DENY && p->key_line[k] != 0) {
		add_error(p, p->lineno, "duplicate key '%s' (first at line %d)",
		    name, p->key_line[k]);
		return;
	}
	if (p->key_line[k] == 0)
		p->key_line[k] = p->lineno;

	switch (k) {
	case GK_LISTEN:
		add_listens(p, value, p->lineno);
		break;
	case GK_LISTEN_PROXY:
		add_items(p, name, value, p->lineno, add_proxy_listen);
		break;
	case GK_PROXY_TRUSTED:
		config_acl_key(p, &cfg->proxy_trusted, name, value);
		break;
	case GK_PROXY_TIMEOUT:
		if (config_parse_duration(value, &cfg->proxy_timeout) < 0)
			add_error(p, p->lineno, "bad proxy_timeout '%s' (a "
			    "duration above 0 and at most 24h)", value);
		break;
	case GK_PREAMBLE_TIMEOUT:
	case GK_CONNECT_TIMEOUT:
	case GK_SHUTDOWN_TIMEOUT:
	case GK_HANDOFF_TIMEOUT:
		if (config_parse_duration(value, k == GK_PREAMBLE_TIMEOUT ?
		    &cfg->preamble_timeout : k == GK_CONNECT_TIMEOUT ?
		    &cfg->connect_timeout : k == GK_HANDOFF_TIMEOUT ?
		    &cfg->handoff_timeout : &cfg->shutdown_timeout) < 0)
			add_error(p, p->lineno, "bad %s '%s' (a duration above 0 "
			    "and at most 24h: 30, 1.5, 500ms, 30s, 2m, 1h)",
			    name, value);
		break;
	case GK_IDLE_TIMEOUT:
	case GK_KEEPALIVE_TIMEOUT:
	case GK_PINNED_TIMEOUT:
	case GK_TLS_SESSION_TIMEOUT: {
		double *to = k == GK_IDLE_TIMEOUT ? &cfg->idle_timeout :
		    k == GK_KEEPALIVE_TIMEOUT ? &cfg->keepalive_timeout :
		    k == GK_PINNED_TIMEOUT ? &cfg->pinned_timeout :
		    &cfg->tls_session_timeout;

		if (strcmp(value, "off") == 0)
			*to = 0;
		else if (config_parse_duration(value, to) < 0)
			add_error(p, p->lineno, "bad %s '%s' (off, or a "
			    "duration above 0 and at most 24h)", name, value);
		break;
	}
	case GK_MAX_CONNECTIONS:
	case GK_MAX_PENDING:
	case GK_HANDOFF_MAX_PENDING:
		if (parse_count(value, k == GK_MAX_CONNECTIONS ?
		    &cfg->max_connections : k == GK_MAX_PENDING ?
		    &cfg->max_pending : &cfg->handoff_max_pending) < 0)
			add_error(p, p->lineno,
			    "bad %s '%s' (an integer from 1 to %u)", name, value,
			    COUNT_MAX);
		break;
	case GK_LOG_CLIENT_LINES:
		if (parse_count_from(value, 0, &cfg->log_client_lines) < 0)
			add_error(p, p->lineno, "bad log_client_lines '%s' (lines "
			    "a second per worker, 0 to %u; 0: no limit)", value,
			    COUNT_MAX);
		break;
	case GK_FORWARD:
		if (strcmp(value, "splice") == 0)
			cfg->forward = FORWARD_SPLICE;
		else if (strcmp(value, "copy") == 0)
			cfg->forward = FORWARD_COPY;
		else if (strcmp(value, "uring") == 0)
			cfg->forward = FORWARD_URING;
		else
			add_error(p, p->lineno,
			    "unknown forward '%s' (splice, copy or uring)", value);
		break;
	case GK_ACCESS_LOG:
		free(cfg->access_log);
		if (value[0] == '\0')
			add_error(p, p->lineno, "empty access_log (off, stderr, "
			    "syslog or a file)");
		else if (strcmp(value, "off") != 0 && strcmp(value, "stderr") != 0 &&
		    strcmp(value, "syslog") != 0)
			cfg->access_log = config_file_name(p, value);
		else if ((cfg->access_log = strdup(value)) == NULL)
			p->oom = 1;
		break;
	case GK_METRICS:
		metrics_key(p, value);
		break;
	case GK_USER:
		set_account(p, &cfg->user, name, value);
		break;
	case GK_GROUP:
		set_account(p, &cfg->group, name, value);
		break;
	case GK_PIDFILE:
		if (value[0] == '\0')
			add_error(p, p->lineno, "empty pidfile");
		else
			cfg->pidfile = config_file_name(p, value);
		break;
	case GK_LOG:
		if (strcmp(value, "stderr") == 0)
			cfg->log_target = LOG_TARGET_STDERR;
		else if (strcmp(value, "syslog") == 0)
			cfg->log_target = LOG_TARGET_SYSLOG;
		else if (strcmp(value, "journal") == 0)
			cfg->log_target = LOG_TARGET_JOURNAL;
		else
			add_error(p, p->lineno,
			    "unknown log '%s' (stderr, syslog or journal)", value);
		break;
	case GK_PIPE_SIZE:
		if (parse_size(value, &cfg->pipe_size) < 0)
			add_error(p, p->lineno, "bad pipe_size '%s' (0 for the "
			    "kernel's default, or 4k to 64m: a number of bytes "
			    "with k or m)", value);
		break;
	case GK_WORKERS:
		if (strcmp(value, "auto") == 0)
			cfg->workers = 0;
		else if (parse_count(value, &cfg->workers) < 0 ||
		    cfg->workers > CONFIG_MAX_WORKERS)
			add_error(p, p->lineno, "bad workers '%s' (auto, or an "
			    "integer from 1 to %u)", value, CONFIG_MAX_WORKERS);
		break;
	case GK_FOLLOW_SESSIONS:
		if (strcmp(value, "on") == 0)
			cfg->follow_sessions = 1;
		else if (strcmp(value, "off") == 0)
			cfg->follow_sessions = 0;
		else
			add_error(p, p->lineno,
			    "bad follow_sessions '%s' (on or off)", value);
		break;
	case GK_BACKEND_POOL:
		if (parse_count_from(value, 0, &cfg->backend_pool) < 0)
			add_error(p, p->lineno, "bad backend_pool '%s' (an "
			    "integer from 0 to %u)", value, COUNT_MAX);
		break;
	case GK_BACKEND_POOL_TIMEOUT:
		if (config_parse_duration(value, &cfg->backend_pool_timeout) < 0)
			add_error(p, p->lineno, "bad backend_pool_timeout '%s' (a "
			    "duration above 0 and at most 24h)", value);
		break;
	case GK_BACKEND_POOL_SETTLE:
		if (strcmp(value, "0") == 0)
			cfg->backend_pool_settle = 0.0;
		else if (config_parse_duration(value, &cfg->backend_pool_settle) < 0 ||
		    cfg->backend_pool_settle > CONFIG_MAX_BACKEND_POOL_SETTLE)
			add_error(p, p->lineno, "bad backend_pool_settle '%s' (0, "
			    "or a duration of at most 10s)", value);
		break;
	case GK_ALLOW:
		config_acl_key(p, &cfg->acl.allow, name, value);
		break;
	case GK_DENY:
		config_acl_key(p, &cfg->acl.deny, name, value);
		break;
	case GK_LOG_LEVEL:
		level = log_level_from_name(value);
		if (level < 0)
			add_error(p, p->lineno, "unknown log_level '%s' (error, "
			    "warning, notice, info or debug)", value);
		else
			cfg->log_level = (enum log_level)level;
		break;
	}
}
