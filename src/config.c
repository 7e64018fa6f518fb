/*
 * config.c - the INI file, read with inih, checked whole, turned into an
 * immutable struct config: the reader, the errors it collects, and
 * config_load() itself.  The keys of [global] are config_global.c's, those
 * of route sections config_route.c's.
 *
 * The inih we build against calls its handler without a line number and
 * splits lines longer than its buffer into pieces it then parses as lines of
 * their own.  So the file is read here, a whole line at a time, and handed to
 * ini_parse_stream() through read_line(): it counts lines, refuses long ones,
 * and tracks the section itself (inih truncates section names), so every
 * message can name FILE:LINE.  inih's buffer is fixed when the library is
 * built (Debian's: 200 bytes; its ini_max_line variable changes nothing), so
 * a line longer than that reaches inih as its key alone and the value is
 * taken here (long_line()), up to CONFIG_MAX_LINE characters.
 *
 * Nothing stops at the first problem: every error is collected with its line,
 * and the caller gets them all, in line order.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"

struct err_item {
	int line;               /* 0 for the file as a whole */
	int warning;            /* reported, but the file is still usable */
	size_t seq;             /* keeps errors on one line in the order found */
	char *msg;
};

/* Where relative file names are taken from; NULL: the current directory. */
static char *base_dir;

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

void
add_error(struct parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_item(p, line, 0, fmt, ap);
	va_end(ap);
}

void
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
	/* "reg:" names the routes services register (nettcpd(8)
	 * REGISTRATION): a section so named would count as one of them. */
	if (strncmp(copy, "reg:", 4) == 0)
		add_error(p, p->lineno, "route [%s]: names beginning with "
		    "'reg:' are the registered routes'", copy);
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
 * A line longer than inih's buffer (num bytes): a header or a comment
 * reaches inih as a blank line (enter_section() has read the header, and
 * check_syntax() reports a broken one); a key line as "key=", its value
 * kept in p->long_value for handle_key().  The key ends where inih ends
 * it: at the first '=' or ':', unless a ';' after a space comes first.
 */
static char *
long_line(struct parser *p, char *s, char *str, int num)
{
	size_t k;
	int was_space = 0;

	str[0] = '\0';
	if (!p->needs_key || p->bracket)
		return str;
	for (k = 0; s[k] != '\0' && s[k] != '=' && s[k] != ':' &&
	    !(was_space && s[k] == ';'); k++)
		was_space = isspace((unsigned char)s[k]);
	if ((s[k] != '=' && s[k] != ':') || k + 2 > (size_t)num)
		return str;  /* no key inih would find: a syntax error */
	memcpy(str, s, k + 1);
	str[k + 1] = '\0';
	p->long_value = s + k + 1;
	return str;
}

/* The value of a long line as inih would give it: from a ';' after a
 * space on cut off, then the spaces around it. */
static const char *
long_value(struct parser *p)
{
	char *v = p->long_value, *end;
	int was_space = 0;

	while (isspace((unsigned char)*v))
		v++;
	for (end = v; *end != '\0' && !(was_space && *end == ';'); end++)
		was_space = isspace((unsigned char)*end);
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	return v;
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
	p->long_value = NULL;
	if (len > CONFIG_MAX_LINE) {
		add_error(p, p->lineno, "line too long (at most %d characters)",
		    CONFIG_MAX_LINE);
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
	if (strlen(s) > (size_t)num - 1)
		return long_line(p, s, str, num);
	memcpy(str, s, strlen(s) + 1);
	return str;
}

void
config_set_dir(const char *dir)
{
	free(base_dir);
	base_dir = dir != NULL ? strdup(dir) : NULL;
}

/* A file name as written, or taken from base_dir when it is relative, so
 * that it names the same file whatever directory the daemon moved to. */
char *
config_file_name(struct parser *p, const char *value)
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

void
config_acl_key(struct parser *p, struct acl **list, const char *name,
    const char *value)
{
	char why[256];
	int rc;

	if (*list == NULL && (*list = acl_new()) == NULL) {
		p->oom = 1;
		return;
	}
	rc = acl_add(*list, value, why, sizeof(why));
	if (rc == -2)
		p->oom = 1;
	else if (rc < 0)
		add_error(p, p->lineno, "bad %s: %s", name, why);
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
	if (p->long_value != NULL)
		value = long_value(p);
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
		free(p->routes[i].check_via);
		backend_list_free(&p->routes[i].backends);
		for (j = 0; j < TLS_KEY_COUNT; j++)
			free(p->routes[i].tls_value[j]);
		acl_free(p->routes[i].deny);
		acl_free(p->routes[i].allow);
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
	cfg->proxy_timeout = CONFIG_DEFAULT_PROXY_TIMEOUT;
	cfg->connect_timeout = CONFIG_DEFAULT_CONNECT_TIMEOUT;
	cfg->shutdown_timeout = CONFIG_DEFAULT_SHUTDOWN_TIMEOUT;
	cfg->max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
	cfg->max_pending = CONFIG_DEFAULT_MAX_PENDING;
	cfg->handoff_timeout = HANDOFF_DEFAULT_TIMEOUT;
	cfg->handoff_max_pending = HANDOFF_DEFAULT_MAX_PENDING;
	cfg->forward = FORWARD_SPLICE;
	cfg->pipe_size = CONFIG_DEFAULT_PIPE_SIZE;
	cfg->follow_sessions = 1;
	cfg->backend_pool = CONFIG_DEFAULT_BACKEND_POOL;
	cfg->backend_pool_timeout = CONFIG_DEFAULT_BACKEND_POOL_TIMEOUT;
	cfg->backend_pool_settle = CONFIG_DEFAULT_BACKEND_POOL_SETTLE;
	cfg->keepalive_timeout = CONFIG_DEFAULT_KEEPALIVE_TIMEOUT;
	cfg->pinned_timeout = CONFIG_DEFAULT_PINNED_TIMEOUT;
	cfg->tls_session_timeout = CONFIG_DEFAULT_TLS_SESSION_TIMEOUT;
	cfg->log_target = LOG_TARGET_STDERR;
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->log_client_lines = CONFIG_DEFAULT_LOG_CLIENT_LINES;
	control_cfg_defaults(&cfg->control);
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
	/* A file with only listen_proxy opens no plain listener. */
	if (p.key_line[GK_LISTEN] == 0 && p.key_line[GK_LISTEN_PROXY] == 0)
		add_listens(&p, CONFIG_DEFAULT_LISTEN, 0);
	if (p.key_line[GK_PROXY_TRUSTED] == 0)
		config_acl_key(&p, &cfg->proxy_trusted, "proxy_trusted",
		    CONFIG_DEFAULT_PROXY_TRUSTED);
	if (cfg->proxy_trusted != NULL)
		acl_compile(cfg->proxy_trusted);
	check_proxy_trusted(&p);
	check_metrics(&p);
	resolve_accounts(&p);
	if (cfg->acl.deny != NULL)
		acl_compile(cfg->acl.deny);
	if (cfg->acl.allow != NULL)
		acl_compile(cfg->acl.allow);
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
	acl_free(cfg->proxy_trusted);
	if (cfg->routes != NULL)
		routes_unref(cfg->routes);
	free(cfg->access_log);
	free(cfg->user);
	free(cfg->group);
	free(cfg->pidfile);
	acl_free(cfg->acl.deny);
	acl_free(cfg->acl.allow);
	control_cfg_free(&cfg->control);
	free(cfg->path);
	free(cfg);
}
