/*
 * config.c - the INI file, read with inih, checked whole, turned into an
 * immutable struct config.
 *
 * The inih we build against calls its handler without a line number and
 * splits lines longer than its buffer into pieces it then parses as lines of
 * their own.  So the file is read here, a whole line at a time, and handed to
 * ini_parse_stream() through read_line(): it counts lines, refuses long ones,
 * and tracks the section itself (inih truncates section names), so every
 * message can name FILE:LINE.
 *
 * Nothing stops at the first problem: every error is collected with its line,
 * and the caller gets them all, in line order.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "decimal.h"
#include "tls.h"

#define DURATION_MAX (24.0 * 3600.0)
#define COUNT_MAX 1000000u

enum section_kind {
	SECT_NONE = 0, /* before the first header */
	SECT_SKIP,     /* under a header that was itself an error */
	SECT_GLOBAL,
	SECT_ROUTE,
};

enum global_key {
	GK_LISTEN = 0,
	GK_PREAMBLE_TIMEOUT,
	GK_CONNECT_TIMEOUT,
	GK_IDLE_TIMEOUT,
	GK_KEEPALIVE_TIMEOUT,
	GK_MAX_CONNECTIONS,
	GK_MAX_PENDING,
	GK_FORWARD,
	GK_LOG,
	GK_LOG_LEVEL,
	GK_WORKERS,
	GK_PIPE_SIZE,
	GK_FOLLOW_SESSIONS,
	GK_BACKEND_POOL,
	GK_BACKEND_POOL_TIMEOUT,
	GK_TLS_SESSION_TIMEOUT,
	GK_SHUTDOWN_TIMEOUT,
	GK_ACCESS_LOG,
	GK_METRICS,
	GK_USER,
	GK_GROUP,
	GK_PIDFILE,
	GK_COUNT
};

static const char *const global_keys[GK_COUNT] = {
	[GK_LISTEN] = "listen",
	[GK_PREAMBLE_TIMEOUT] = "preamble_timeout",
	[GK_CONNECT_TIMEOUT] = "connect_timeout",
	[GK_IDLE_TIMEOUT] = "idle_timeout",
	[GK_KEEPALIVE_TIMEOUT] = "keepalive_timeout",
	[GK_MAX_CONNECTIONS] = "max_connections",
	[GK_MAX_PENDING] = "max_pending",
	[GK_FORWARD] = "forward",
	[GK_LOG] = "log",
	[GK_LOG_LEVEL] = "log_level",
	[GK_WORKERS] = "workers",
	[GK_PIPE_SIZE] = "pipe_size",
	[GK_FOLLOW_SESSIONS] = "follow_sessions",
	[GK_BACKEND_POOL] = "backend_pool",
	[GK_BACKEND_POOL_TIMEOUT] = "backend_pool_timeout",
	[GK_TLS_SESSION_TIMEOUT] = "tls_session_timeout",
	[GK_SHUTDOWN_TIMEOUT] = "shutdown_timeout",
	[GK_ACCESS_LOG] = "access_log",
	[GK_METRICS] = "metrics",
	[GK_USER] = "user",
	[GK_GROUP] = "group",
	[GK_PIDFILE] = "pidfile",
};

/* Route keys that configure TLS termination, besides tls itself. */
enum tls_key {
	TK_CERT = 0,
	TK_KEY,
	TK_MIN_VERSION,
	TK_CIPHERS,
	TK_CIPHERSUITES,
	TLS_KEY_COUNT
};

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

struct via_line {
	char *text;
	int line;
};

/*
 * A route section as written.  The table is built only at the end of the
 * file, because a section may name its backend after its via lines.
 */
struct route_sect {
	char *name;
	int line;               /* of the header */
	struct via_line *vias;
	size_t nvias;
	char *backend_text;
	int backend_line;       /* 0 while the section has no backend key */
	struct addr backend;
	int tls_line;           /* of the tls key, 0 if absent */
	int tls_terminate;
	char *tls_value[TLS_KEY_COUNT];  /* tls_cert ... tls_ciphersuites */
	int tls_value_line[TLS_KEY_COUNT];
};

/* A TLS context already built, shared by routes with the same settings. */
struct tls_cache_entry {
	char *value[TLS_KEY_COUNT];
	SSL_CTX *ctx;
};

struct err_item {
	int line;               /* 0 for the file as a whole */
	int warning;            /* reported, but the file is still usable */
	size_t seq;             /* keeps errors on one line in the order found */
	char *msg;
};

/* State shared by read_line() and handle_key(). */
struct parser {
	const char *path;
	FILE *f;
	char *buf;
	size_t bufcap;
	int read_errno;
	int lineno;
	/*
	 * The current line is neither blank, a comment nor a header, so inih
	 * either calls handle_key() for it or has found a syntax error.
	 */
	int needs_key;
	int got_key;
	int bracket;            /* the line is a '[' without its ']' */
	int first_syntax_line;
	enum section_kind kind;
	size_t cur_route;       /* index into routes while kind is SECT_ROUTE */
	int global_line;
	int key_line[GK_COUNT]; /* first line of each [global] key, 0 if absent */
	struct route_sect *routes;
	size_t nroutes, routes_cap;
	int *listen_lines;      /* parallel to cfg->listens */
	struct config *cfg;
	struct err_item *errs;
	size_t nerrs;
	size_t nwarnings;
	struct tls_cache_entry *tls_cache;
	size_t ntls_cache;
	int oom;
};

/* Where relative file names are taken from; NULL: the current directory. */
static char *base_dir;

static void add_error(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_warning(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void __attribute__((format(printf, 4, 0)))
add_item(struct parser *p, int line, int warning, const char *fmt, va_list ap)
{
	struct err_item *e;
	char *msg;
	int n;

	n = vasprintf(&msg, fmt, ap);
	if (n < 0) {
		p->oom = 1;
		return;
	}
	e = realloc(p->errs, (p->nerrs + 1) * sizeof(*e));
	if (e == NULL) {
		free(msg);
		p->oom = 1;
		return;
	}
	p->errs = e;
	e[p->nerrs].line = line;
	e[p->nerrs].warning = warning;
	e[p->nerrs].seq = p->nerrs;
	e[p->nerrs].msg = msg;
	p->nerrs++;
	if (warning)
		p->nwarnings++;
}

static void
add_error(struct parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_item(p, line, 0, fmt, ap);
	va_end(ap);
}

static void
add_warning(struct parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_item(p, line, 1, fmt, ap);
	va_end(ap);
}

static int
err_cmp(const void *a, const void *b)
{
	const struct err_item *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Append one line to err; 0 if it fitted, -1 once err is full.  A line
 * that does not fit is cut but still ends in a newline, so that the caller
 * can print err as it is.
 */
static int
put_line(char *err, size_t errlen, size_t *used, const char *path,
    int line, int warning, const char *msg)
{
	const char *kind = warning ? "warning: " : "";
	int n;

	if (line > 0)
		n = snprintf(err + *used, errlen - *used, "%s:%d: %s%s\n", path,
		    line, kind, msg);
	else
		n = snprintf(err + *used, errlen - *used, "%s: %s%s\n", path,
		    kind, msg);
	if (n < 0 || (size_t)n >= errlen - *used) {
		if (errlen >= 2) {
			err[errlen - 2] = '\n';
			err[errlen - 1] = '\0';
		}
		return -1;
	}
	*used += (size_t)n;
	return 0;
}

static void
write_errors(struct parser *p, char *err, size_t errlen)
{
	size_t used = 0, i;

	if (err == NULL || errlen == 0)
		return;
	err[0] = '\0';
	if (p->nerrs > 0)  /* qsort() must not be given a NULL array */
		qsort(p->errs, p->nerrs, sizeof(*p->errs), err_cmp);
	for (i = 0; i < p->nerrs; i++)
		if (put_line(err, errlen, &used, p->path, p->errs[i].line,
		    p->errs[i].warning, p->errs[i].msg) < 0)
			return;
	if (p->oom)
		put_line(err, errlen, &used, p->path, 0, 0, "out of memory");
}

static void
check_syntax(struct parser *p)
{
	if (p->needs_key && !p->got_key) {
		add_error(p, p->lineno, "syntax error (%s)", p->bracket ?
		    "no ']' to close the section name" : "expected 'key = value'");
		if (p->first_syntax_line == 0)
			p->first_syntax_line = p->lineno;
	}
	p->needs_key = 0;
	p->got_key = 0;
	p->bracket = 0;
}

/* Where inih ends a section name: at ']', or at a ';' comment after a space. */
static const char *
header_end(const char *s)
{
	int was_space = 0;

	while (*s != '\0' && *s != ']' && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static void
enter_section(struct parser *p, const char *name, size_t len)
{
	struct route_sect *r;
	char *copy;

	while (len > 0 && isspace((unsigned char)*name)) {
		name++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)name[len - 1]))
		len--;
	p->kind = SECT_SKIP;
	if (len == 0) {
		add_error(p, p->lineno, "empty section name");
		return;
	}
	copy = strndup(name, len);
	if (copy == NULL) {
		p->oom = 1;
		return;
	}
	if (strcmp(copy, "global") == 0) {
		if (p->global_line != 0)
			add_error(p, p->lineno,
			    "duplicate section [global] (first at line %d)",
			    p->global_line);
		else
			p->global_line = p->lineno;
		free(copy);
		p->kind = SECT_GLOBAL;
		return;
	}
	/*
	 * A duplicate name still gets a section of its own, so that its keys
	 * are checked too; check_route_names() reports it at the end.  The
	 * array grows by doubling: files with thousands of routes are normal.
	 */
	if (p->nroutes == p->routes_cap) {
		size_t cap = p->routes_cap ? 2 * p->routes_cap : 16;

		r = realloc(p->routes, cap * sizeof(*r));
		if (r == NULL) {
			free(copy);
			p->oom = 1;
			return;
		}
		p->routes = r;
		p->routes_cap = cap;
	}
	r = &p->routes[p->nroutes];
	memset(r, 0, sizeof(*r));
	r->name = copy;
	r->line = p->lineno;
	p->cur_route = p->nroutes++;
	p->kind = SECT_ROUTE;
}

/*
 * The ini_reader.  Leading whitespace is dropped before inih sees the line:
 * inih would read an indented line as the continuation of the previous
 * value, so an indented "backend = ..." under "via = ..." would become part
 * of the via.  Indentation therefore means nothing in this format.
 */
static char *
read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	ssize_t n;
	size_t len;
	char *s;

	/* inih is done with the previous line, the last one included */
	check_syntax(p);
	errno = 0;
	n = getline(&p->buf, &p->bufcap, p->f);
	if (n < 0) {
		if (!feof(p->f))
			p->read_errno = errno != 0 ? errno : EIO;
		return NULL;
	}
	p->lineno++;
	len = (size_t)n;
	while (len > 0 && (p->buf[len - 1] == '\n' || p->buf[len - 1] == '\r'))
		len--;
	p->buf[len] = '\0';
	if (len > (size_t)num - 1) {
		add_error(p, p->lineno, "line too long (at most %d characters)",
		    num - 1);
		str[0] = '\0';
		return str;
	}
	s = p->buf;
	/* A UTF-8 byte order mark would hide a leading '[' from the checks below. */
	if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '[') {
		const char *end = header_end(s + 1);

		if (*end == ']')
			enter_section(p, s + 1, (size_t)(end - s - 1));
		else
			p->needs_key = p->bracket = 1;
	} else if (*s != '\0' && *s != ';' && *s != '#') {
		p->needs_key = 1;
	}
	memcpy(str, s, strlen(s) + 1);
	return str;
}

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
add_listen(struct parser *p, char *text, int line)
{
	struct config *cfg = p->cfg;
	struct listen_cfg *l;
	struct addr a;
	char why[256];
	int *lines;
	size_t i;

	if (addr_parse(text, 0, &a, why, sizeof(why)) < 0) {
		add_error(p, line, "bad listen address '%s': %s", text, why);
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
	lines[cfg->nlistens] = line;
	cfg->nlistens++;
	return;
oom:
	p->oom = 1;
fail:
	free(text);
}

/* A listen value is a comma-separated list; whitespace around items is not part of them. */
static void
add_listens(struct parser *p, const char *value, int line)
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
			add_error(p, line, "empty address in listen '%s'", value);
		} else {
			char *item = strndup(s, (size_t)(end - s));

			if (item == NULL)
				p->oom = 1;
			else
				add_listen(p, item, line);
		}
		if (comma == NULL)
			break;
		s = comma + 1;
	}
}

/* metrics = off | ADDR:PORT: its own listener, never a shared port. */
static void
metrics_key(struct parser *p, const char *value)
{
	struct config *cfg = p->cfg;

	cfg->metrics = 0;
	if (strcmp(value, "off") == 0)
		return;
#ifndef HAVE_LIBMICROHTTPD
	add_error(p, p->lineno, "metrics '%s': this nettcpd was built without "
	    "libmicrohttpd (configure --with-microhttpd)", value);
#else
	char why[128];

	if (addr_parse(value, 0, &cfg->metrics_addr, why, sizeof(why)) < 0) {
		add_error(p, p->lineno, "bad metrics '%s' (off, or IPv4:port or "
		    "[IPv6]:port): %s", value, why);
		return;
	}
	cfg->metrics = 1;
#endif
}

/* The metrics listener may share no address with the NMF listeners. */
static void
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

void
config_set_dir(const char *dir)
{
	free(base_dir);
	base_dir = dir != NULL ? strdup(dir) : NULL;
}

/* A file name as written, or taken from base_dir when it is relative, so
 * that it names the same file whatever directory the daemon moved to. */
static char *
file_name(struct parser *p, const char *value)
{
	char *name;

	if (base_dir == NULL || value[0] == '/')
		name = strdup(value);
	else if (asprintf(&name, "%s/%s", base_dir, value) < 0)
		name = NULL;
	if (name == NULL)
		p->oom = 1;
	return name;
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
static void
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

static void
global_key(struct parser *p, const char *name, const char *value)
{
	struct config *cfg = p->cfg;
	int k, level;

	for (k = 0; k < GK_COUNT; k++)
		if (strcmp(name, global_keys[k]) == 0)
			break;
	if (k == GK_COUNT) {
		add_error(p, p->lineno, "unknown key '%s' in [global]", name);
		return;
	}
	if (k != GK_LISTEN && p->key_line[k] != 0) {
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
	case GK_PREAMBLE_TIMEOUT:
	case GK_CONNECT_TIMEOUT:
	case GK_SHUTDOWN_TIMEOUT:
		if (config_parse_duration(value, k == GK_PREAMBLE_TIMEOUT ?
		    &cfg->preamble_timeout : k == GK_CONNECT_TIMEOUT ?
		    &cfg->connect_timeout : &cfg->shutdown_timeout) < 0)
			add_error(p, p->lineno, "bad %s '%s' (a duration above 0 "
			    "and at most 24h: 30, 1.5, 500ms, 30s, 2m, 1h)",
			    name, value);
		break;
	case GK_IDLE_TIMEOUT:
	case GK_KEEPALIVE_TIMEOUT:
	case GK_TLS_SESSION_TIMEOUT: {
		double *to = k == GK_IDLE_TIMEOUT ? &cfg->idle_timeout :
		    k == GK_KEEPALIVE_TIMEOUT ? &cfg->keepalive_timeout :
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
		if (parse_count(value, k == GK_MAX_CONNECTIONS ?
		    &cfg->max_connections : &cfg->max_pending) < 0)
			add_error(p, p->lineno,
			    "bad %s '%s' (an integer from 1 to %u)", name, value,
			    COUNT_MAX);
		break;
	case GK_FORWARD:
		if (strcmp(value, "splice") == 0)
			cfg->forward = FORWARD_SPLICE;
		else if (strcmp(value, "copy") == 0)
			cfg->forward = FORWARD_COPY;
		else
			add_error(p, p->lineno,
			    "unknown forward '%s' (splice or copy)", value);
		break;
	case GK_ACCESS_LOG:
		free(cfg->access_log);
		if (value[0] == '\0')
			add_error(p, p->lineno, "empty access_log (off, stderr, "
			    "syslog or a file)");
		else if (strcmp(value, "off") != 0 && strcmp(value, "stderr") != 0 &&
		    strcmp(value, "syslog") != 0)
			cfg->access_log = file_name(p, value);
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
			cfg->pidfile = file_name(p, value);
		break;
	case GK_LOG:
		if (strcmp(value, "stderr") == 0)
			cfg->log_target = LOG_TARGET_STDERR;
		else if (strcmp(value, "syslog") == 0)
			cfg->log_target = LOG_TARGET_SYSLOG;
		else
			add_error(p, p->lineno,
			    "unknown log '%s' (stderr or syslog)", value);
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

static void
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
		else if (addr_parse(value, 1, &r->backend, why, sizeof(why)) < 0)
			add_error(p, p->lineno, "bad backend '%s': %s", value, why);
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
				r->tls_value[k] = file_name(p, value);
			else if ((r->tls_value[k] = strdup(value)) == NULL)
				p->oom = 1;
			return;
		}
		add_error(p, p->lineno, "unknown key '%s' in route [%s]", name,
		    r->name);
	}
}

/* The ini_handler: always "success", so a non-zero inih result is syntax. */
static int
handle_key(void *user, const char *section, const char *name,
    const char *value)
{
	struct parser *p = user;

	/* inih's copy of the section name is truncated; the reader's is not */
	(void)section;
	p->got_key = 1;
	switch (p->kind) {
	case SECT_NONE:
		add_error(p, p->lineno, "key '%s' before any section", name);
		break;
	case SECT_SKIP:
		break;
	case SECT_GLOBAL:
		global_key(p, name, value);
		break;
	case SECT_ROUTE:
		route_key(p, name, value);
		break;
	}
	return 1;
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
static void
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

/*
 * Sections that are already in error still go into the table (with an
 * empty backend), so that a via they share with another route is reported
 * as well; a config with any error is thrown away.
 */
static void
build_routes(struct parser *p)
{
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
		ri = routes_add_route(t, r->name, &r->backend,
		    r->backend_text != NULL ? r->backend_text : "");
		if (ri < 0) {
			p->oom = 1;
			return;
		}
		build_route_tls(p, r, ri);
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
}

static void
parser_free(struct parser *p)
{
	size_t i, j;

	if (p->f != NULL)
		fclose(p->f);
	free(p->buf);
	for (i = 0; i < p->nroutes; i++) {
		for (j = 0; j < p->routes[i].nvias; j++)
			free(p->routes[i].vias[j].text);
		free(p->routes[i].vias);
		free(p->routes[i].name);
		free(p->routes[i].backend_text);
		for (j = 0; j < TLS_KEY_COUNT; j++)
			free(p->routes[i].tls_value[j]);
	}
	for (i = 0; i < p->ntls_cache; i++)
		SSL_CTX_free(p->tls_cache[i].ctx);
	free(p->tls_cache);
	free(p->routes);
	free(p->listen_lines);
	for (i = 0; i < p->nerrs; i++)
		free(p->errs[i].msg);
	free(p->errs);
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct parser p;
	struct config *cfg, *result = NULL;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	memset(&p, 0, sizeof(p));
	p.path = path;
	p.f = fopen(path, "r");
	if (p.f == NULL) {
		if (err != NULL && errlen > 0) {
			char why[256];
			size_t used = 0;

			snprintf(why, sizeof(why), "cannot open: %s",
			    strerror(errno));
			put_line(err, errlen, &used, path, 0, 0, why);
		}
		return NULL;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL) {
		p.oom = 1;
		goto out;
	}
	p.cfg = cfg;
	cfg->preamble_timeout = CONFIG_DEFAULT_PREAMBLE_TIMEOUT;
	cfg->connect_timeout = CONFIG_DEFAULT_CONNECT_TIMEOUT;
	cfg->shutdown_timeout = CONFIG_DEFAULT_SHUTDOWN_TIMEOUT;
	cfg->max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
	cfg->max_pending = CONFIG_DEFAULT_MAX_PENDING;
	cfg->forward = FORWARD_SPLICE;
	cfg->pipe_size = CONFIG_DEFAULT_PIPE_SIZE;
	cfg->follow_sessions = 1;
	cfg->backend_pool = CONFIG_DEFAULT_BACKEND_POOL;
	cfg->backend_pool_timeout = CONFIG_DEFAULT_BACKEND_POOL_TIMEOUT;
	cfg->keepalive_timeout = CONFIG_DEFAULT_KEEPALIVE_TIMEOUT;
	cfg->tls_session_timeout = CONFIG_DEFAULT_TLS_SESSION_TIMEOUT;
	cfg->log_target = LOG_TARGET_STDERR;
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->path = strdup(path);
	cfg->routes = routes_new();
	if (cfg->path == NULL || cfg->routes == NULL) {
		p.oom = 1;
		goto out;
	}

	rc = ini_parse_stream(read_line, &p, handle_key, &p);
	if (rc < 0)
		p.oom = 1;
	else if (rc > 0 && rc != p.first_syntax_line)
		/* the reader and inih disagree on what a line is: trust inih */
		add_error(&p, rc, "syntax error");
	if (p.read_errno != 0)
		add_error(&p, 0, "cannot read: %s", strerror(p.read_errno));
	if (p.key_line[GK_LISTEN] == 0)
		add_listens(&p, CONFIG_DEFAULT_LISTEN, 0);
	check_metrics(&p);
	resolve_accounts(&p);
	check_route_names(&p);
	build_routes(&p);
	if (p.nerrs == p.nwarnings && !p.oom) {
		result = cfg;
		cfg = NULL;
	}
out:
	/* On success only warnings are left to report. */
	write_errors(&p, err, errlen);
	parser_free(&p);
	config_free(cfg);
	return result;
}

void
config_free(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nlistens; i++)
		free(cfg->listens[i].text);
	free(cfg->listens);
	if (cfg->routes != NULL)
		routes_unref(cfg->routes);
	free(cfg->access_log);
	free(cfg->user);
	free(cfg->group);
	free(cfg->pidfile);
	free(cfg->path);
	free(cfg);
}
