/*
 * check_config.c - the configuration loader (config.c) and the address
 * parser it uses (addr.c).
 *
 * Every test writes its INI text to a file in a fresh mkdtemp() directory,
 * because config_load() takes a path and the errors must name it.
 */
#include "config.h"
#include "proxy_send.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "routes.h"
#include "via.h"

#define MAX_FILES 8

static char tmpdir[1024];
static char *files[MAX_FILES];
static size_t nfiles;
static const char *last_path;
static char errbuf[8192];

static void setup(void)
{
	const char *base = getenv("TMPDIR");

	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/check_config.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	nfiles = 0;
	errbuf[0] = '\0';
}

static void teardown(void)
{
	size_t i;

	for (i = 0; i < nfiles; i++) {
		unlink(files[i]);
		free(files[i]);
	}
	nfiles = 0;
	rmdir(tmpdir);
}

static const char *write_ini(const char *text)
{
	char *path;
	FILE *f;

	ck_assert_uint_lt(nfiles, MAX_FILES);
	ck_assert_int_ge(asprintf(&path, "%s/%zu.ini", tmpdir, nfiles), 0);
	files[nfiles++] = path;
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

static struct config *load(const char *text)
{
	last_path = write_ini(text);
	return config_load(last_path, errbuf, sizeof(errbuf));
}

/* Load text that must be refused; errbuf then holds the messages. */
static void load_bad(const char *text)
{
	struct config *cfg = load(text);

	ck_assert_msg(cfg == NULL, "accepted:\n%s", text);
	ck_assert_msg(errbuf[0] != '\0', "refused without a message");
}

static struct config *load_ok(const char *text)
{
	struct config *cfg = load(text);

	ck_assert_msg(cfg != NULL, "refused:\n%s", errbuf);
	return cfg;
}

/*
 * Whether errbuf has a line that starts "PATH:LINE: " (PATH: when line is
 * 0) and contains every word of the NULL-terminated list.
 */
static int has_error(int line, ...)
{
	char prefix[1200];
	const char *s = errbuf;

	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", last_path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", last_path);
	while (*s != '\0') {
		const char *nl = strchr(s, '\n');
		size_t len = nl != NULL ? (size_t)(nl - s) : strlen(s);

		if (strncmp(s, prefix, strlen(prefix)) == 0) {
			char *msg = strndup(s, len);
			const char *word;
			int all = 1;
			va_list ap;

			ck_assert_ptr_nonnull(msg);
			va_start(ap, line);
			while ((word = va_arg(ap, const char *)) != NULL)
				if (strstr(msg, word) == NULL)
					all = 0;
			va_end(ap);
			free(msg);
			if (all)
				return 1;
		}
		if (nl == NULL)
			break;
		s = nl + 1;
	}
	return 0;
}

#define ck_error(line, ...) \
	ck_assert_msg(has_error((line), __VA_ARGS__, (const char *)NULL), \
	    "no error at line %d with the words " #__VA_ARGS__ " in:\n%s", \
	    (line), errbuf)

/* Whether the first error on line a comes before the first on line b. */
static int reported_before(int a, int b)
{
	char ka[16], kb[16];
	const char *pa, *pb;

	snprintf(ka, sizeof(ka), ":%d: ", a);
	snprintf(kb, sizeof(kb), ":%d: ", b);
	pa = strstr(errbuf, ka);
	pb = strstr(errbuf, kb);
	return pa != NULL && pb != NULL && pa < pb;
}

static int error_count(void)
{
	int n = 0;
	const char *s;

	for (s = errbuf; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static const char *fmt(const struct addr *a)
{
	static char buf[ADDR_TEXT_MAX];

	return addr_format((const struct sockaddr *)&a->ss, buf, sizeof(buf));
}

static const struct route *lookup(const struct config *cfg, const char *uri,
    uint16_t port)
{
	static struct via v;
	const char *why;

	ck_assert_msg(via_parse(uri, strlen(uri), 0, &v, &why) == 0,
	    "via_parse(%s): %s", uri, why);
	return routes_lookup(cfg->routes, &v, port);
}

/* ---------------------------------------------------------- valid files */

START_TEST(test_full_config)
{
	struct config *cfg = load_ok(
	    "[global]\n"
	    "listen = 127.0.0.1:8808, [::1]:8808\n"
	    "listen = 0.0.0.0:9808\n"
	    "preamble_timeout = 1.5\n"
	    "connect_timeout = 500ms\n"
	    "max_connections = 20\n"
	    "max_pending = 7\n"
	    "forward = copy\n"
	    "log = syslog\n"
	    "log_level = debug\n"
	    "\n"
	    "[calculator]\n"
	    "via = net.tcp://+/Calculator\n"
	    "via = net.tcp://+/Calc2\n"
	    "backend = 127.0.0.1:9001\n"
	    "\n"
	    "[orders]\n"
	    "backend = [::1]:9002\n"
	    "via = net.tcp://*/Orders/\n");
	const struct route *r;

	ck_assert_str_eq(cfg->path, last_path);
	ck_assert_uint_eq(cfg->nlistens, 3);
	ck_assert_str_eq(cfg->listens[0].text, "127.0.0.1:8808");
	ck_assert_str_eq(fmt(&cfg->listens[0].addr), "127.0.0.1:8808");
	ck_assert_str_eq(cfg->listens[1].text, "[::1]:8808");
	ck_assert_str_eq(fmt(&cfg->listens[1].addr), "[::1]:8808");
	ck_assert_str_eq(cfg->listens[2].text, "0.0.0.0:9808");
	ck_assert_uint_eq(cfg->listens[2].addr.len, sizeof(struct sockaddr_in));
	ck_assert_double_eq(cfg->preamble_timeout, 1.5);
	ck_assert_double_eq(cfg->connect_timeout, 0.5);
	ck_assert_uint_eq(cfg->max_connections, 20);
	ck_assert_uint_eq(cfg->max_pending, 7);
	ck_assert_int_eq(cfg->forward, FORWARD_COPY);
	ck_assert_int_eq(cfg->log_target, LOG_TARGET_SYSLOG);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);

	ck_assert_uint_eq(routes_count(cfg->routes), 2);
	r = routes_get(cfg->routes, 0);
	ck_assert_str_eq(r->name, "calculator");
	ck_assert_str_eq(r->backend_text, "127.0.0.1:9001");
	ck_assert_str_eq(fmt(&r->backends.m[0].addr), "127.0.0.1:9001");
	r = routes_get(cfg->routes, 1);
	ck_assert_str_eq(r->name, "orders");
	ck_assert_str_eq(r->backend_text, "[::1]:9002");
	ck_assert_str_eq(fmt(&r->backends.m[0].addr), "[::1]:9002");
	config_free(cfg);
}
END_TEST

/* The example of the documentation, comments and all. */
START_TEST(test_documented_example)
{
	struct config *cfg = load_ok(
	    "[global]\n"
	    "listen = 0.0.0.0:808, [::]:808\n"
	    "preamble_timeout = 30s     ; time to receive the preamble\n"
	    "connect_timeout = 5s\n"
	    "max_connections = 10000\n"
	    "max_pending = 100          ; connections still in their preamble\n"
	    "forward = splice           ; or copy\n"
	    "log = stderr               ; or syslog\n"
	    "log_level = info           ; error, warning, notice, info, debug\n"
	    "\n"
	    "[calculator]               ; every section but [global] is a route\n"
	    "via = net.tcp://+/Calculator\n"
	    "via = net.tcp://+/Calc2    ; repeatable\n"
	    "backend = 127.0.0.1:9001\n");

	ck_assert_uint_eq(cfg->nlistens, 2);
	ck_assert_double_eq(cfg->preamble_timeout, 30.0);
	ck_assert_uint_eq(cfg->max_pending, 100);
	ck_assert_int_eq(cfg->forward, FORWARD_SPLICE);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
	ck_assert_uint_eq(routes_count(cfg->routes), 1);
	ck_assert_str_eq(routes_get(cfg->routes, 0)->name, "calculator");
	ck_assert_ptr_nonnull(lookup(cfg, "net.tcp://h/calc2/svc", 808));
	config_free(cfg);
}
END_TEST

static void assert_defaults(const struct config *cfg)
{
	ck_assert_uint_eq(cfg->nlistens, 2);
	ck_assert_str_eq(cfg->listens[0].text, "0.0.0.0:808");
	ck_assert_str_eq(fmt(&cfg->listens[0].addr), "0.0.0.0:808");
	ck_assert_str_eq(cfg->listens[1].text, "[::]:808");
	ck_assert_str_eq(fmt(&cfg->listens[1].addr), "[::]:808");
	ck_assert_double_eq(cfg->preamble_timeout,
	    CONFIG_DEFAULT_PREAMBLE_TIMEOUT);
	ck_assert_double_eq(cfg->connect_timeout, CONFIG_DEFAULT_CONNECT_TIMEOUT);
	ck_assert_uint_eq(cfg->max_connections, CONFIG_DEFAULT_MAX_CONNECTIONS);
	ck_assert_uint_eq(cfg->max_pending, CONFIG_DEFAULT_MAX_PENDING);
	ck_assert_int_eq(cfg->forward, FORWARD_SPLICE);
	ck_assert_int_eq(cfg->log_target, LOG_TARGET_STDERR);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
}

START_TEST(test_defaults_without_global)
{
	struct config *cfg = load_ok(
	    "[calculator]\n"
	    "via = net.tcp://+/Calculator\n"
	    "backend = 127.0.0.1:9001\n");

	assert_defaults(cfg);
	ck_assert_uint_eq(routes_count(cfg->routes), 1);
	config_free(cfg);
}
END_TEST

START_TEST(test_defaults_empty_global)
{
	struct config *cfg = load_ok("[global]\n");

	assert_defaults(cfg);
	ck_assert_uint_eq(routes_count(cfg->routes), 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_empty_file_has_no_routes)
{
	struct config *cfg = load_ok("");

	assert_defaults(cfg);
	ck_assert_uint_eq(routes_count(cfg->routes), 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_comments)
{
	struct config *cfg = load_ok(
	    "# a comment\n"
	    "; another\n"
	    "   # indented\n"
	    "[global]   ; after a header\n"
	    "forward = copy ; after a value\n"
	    "log_level = debug\t; after a tab\n"
	    "#listen = 1.2.3.4:5\n"
	    ";listen = 1.2.3.4:6\n"
	    "[a]\n"
	    "via = net.tcp://+/a;b   ; a ';' inside a value stays\n"
	    "backend = 127.0.0.1:9001\n");

	ck_assert_int_eq(cfg->forward, FORWARD_COPY);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
	ck_assert_uint_eq(cfg->nlistens, 2); /* the defaults */
	ck_assert_ptr_nonnull(lookup(cfg, "net.tcp://h/a;b/svc", 808));
	ck_assert_ptr_null(lookup(cfg, "net.tcp://h/a/svc", 808));
	config_free(cfg);
}
END_TEST

START_TEST(test_comment_needs_space_or_semicolon)
{
	/* only ';' after whitespace starts an inline comment, never '#' */
	load_bad(
	    "[global]\n"
	    "forward = copy # no\n"
	    "log = stderr;no\n");
	ck_error(2, "unknown forward", "'copy # no'");
	ck_error(3, "unknown log", "'stderr;no'");
	ck_assert_int_eq(error_count(), 2);
}
END_TEST

/* Indentation means nothing: inih would read it as a continuation line. */
START_TEST(test_indented_lines)
{
	struct config *cfg = load_ok(
	    "  [global]\n"
	    "    forward = copy\n"
	    "    log = syslog\n"
	    "[calculator]\n"
	    "\tvia = net.tcp://+/Calculator\n"
	    "\tbackend = 127.0.0.1:9001\n");

	ck_assert_int_eq(cfg->forward, FORWARD_COPY);
	ck_assert_int_eq(cfg->log_target, LOG_TARGET_SYSLOG);
	ck_assert_str_eq(routes_get(cfg->routes, 0)->backend_text,
	    "127.0.0.1:9001");
	config_free(cfg);
}
END_TEST

START_TEST(test_crlf_and_bom)
{
	struct config *cfg = load_ok(
	    "\xEF\xBB\xBF[global]\r\n"
	    "forward = copy\r\n"
	    "[a]\r\n"
	    "via = net.tcp://+/a\r\n"
	    "backend = 127.0.0.1:9001");  /* no newline at the end */

	ck_assert_int_eq(cfg->forward, FORWARD_COPY);
	ck_assert_str_eq(routes_get(cfg->routes, 0)->backend_text,
	    "127.0.0.1:9001");
	config_free(cfg);
}
END_TEST

START_TEST(test_section_names)
{
	/* inih keeps 49 bytes of a section name; the route keeps it whole */
	static const char name[] =
	    "a-route-name-well-beyond-fifty-characters-of-inih-own-buffer";
	char text[512];
	struct config *cfg;

	snprintf(text, sizeof(text),
	    "[ %s ]\nvia = net.tcp://+/a\nbackend = 127.0.0.1:9001\n", name);
	cfg = load_ok(text);
	ck_assert_str_eq(routes_get(cfg->routes, 0)->name, name);
	config_free(cfg);

	load_bad("[]\n[  ]\n");
	ck_error(1, "empty section name");
	ck_error(2, "empty section name");
	ck_assert_int_eq(error_count(), 2);
}
END_TEST

/* ------------------------------------------------------------- durations */

START_TEST(test_duration_valid)
{
	static const struct {
		const char *text;
		double seconds;
	} cases[] = {
		{ "1", 1.0 },
		{ "30", 30.0 },
		{ "1.5", 1.5 },
		{ "0.3", 0.3 },
		{ "007", 7.0 },
		{ "500ms", 0.5 },
		{ "1ms", 0.001 },
		{ "2.5ms", 0.0025 },
		{ "30s", 30.0 },
		{ "0.25s", 0.25 },
		{ "2m", 120.0 },
		{ "1.5m", 90.0 },
		{ "1h", 3600.0 },
		{ "24h", 86400.0 },
		{ "1440m", 86400.0 },
		{ "86400", 86400.0 },
		{ "86400000ms", 86400.0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double d = -1.0;

		ck_assert_msg(config_parse_duration(cases[i].text, &d) == 0,
		    "'%s' refused", cases[i].text);
		ck_assert_msg(d == cases[i].seconds, "'%s' gave %.17g",
		    cases[i].text, d);
	}
}
END_TEST

START_TEST(test_duration_invalid)
{
	static const char *const cases[] = {
		"", "10x", "-1", "+1", "s", "ms", "1e9", "1E3", "0", "0s",
		"0.0", "0ms", "25h", "86401", "86400.001", "1441m", "1.",
		".5", " 1", "1 ", "1 s", "1S", "1MS", "1.5.2", "1,5", "0x10",
		"inf", "nan", "1d", "1sec", "1hm", "1mss",
		"99999999999999999999999999999999999999999999999999999h",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double d = 42.0;

		ck_assert_msg(config_parse_duration(cases[i], &d) == -1,
		    "'%s' accepted", cases[i]);
		ck_assert_msg(d == 42.0, "'%s' wrote the output", cases[i]);
	}
}
END_TEST

START_TEST(test_duration_keys)
{
	load_bad(
	    "[global]\n"
	    "preamble_timeout = 10x\n"
	    "connect_timeout = -1\n");
	ck_error(2, "bad preamble_timeout", "'10x'");
	ck_error(3, "bad connect_timeout", "'-1'");
	ck_assert_int_eq(error_count(), 2);

	load_bad("[global]\nconnect_timeout =\n");
	ck_error(2, "bad connect_timeout", "''");
}
END_TEST

START_TEST(test_workers)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_uint_eq(cfg->workers, 0);   /* auto */
	config_free(cfg);
	cfg = load_ok("[global]\nworkers = 4\n");
	ck_assert_uint_eq(cfg->workers, 4);
	config_free(cfg);
	cfg = load_ok("[global]\nworkers = auto\n");
	ck_assert_uint_eq(cfg->workers, 0);
	config_free(cfg);
	load_bad("[global]\nworkers = 0\n");
	ck_error(2, "bad workers", "'0'");
	load_bad("[global]\nworkers = 257\n");
	ck_error(2, "bad workers", "'257'");
}
END_TEST

START_TEST(test_pipe_size)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_uint_eq(cfg->pipe_size, 1024 * 1024);
	config_free(cfg);
	cfg = load_ok("[global]\npipe_size = 256k\n");
	ck_assert_uint_eq(cfg->pipe_size, 256 * 1024);
	config_free(cfg);
	cfg = load_ok("[global]\npipe_size = 0\n");
	ck_assert_uint_eq(cfg->pipe_size, 0);
	config_free(cfg);
	cfg = load_ok("[global]\npipe_size = 65536\n");
	ck_assert_uint_eq(cfg->pipe_size, 65536);
	config_free(cfg);
	load_bad("[global]\npipe_size = 100\n");
	ck_error(2, "bad pipe_size", "'100'");
	load_bad("[global]\npipe_size = 65m\n");
	ck_error(2, "bad pipe_size", "'65m'");
	load_bad("[global]\npipe_size = 1g\n");
	ck_error(2, "bad pipe_size", "'1g'");
	load_bad("[global]\npipe_size = 99999999999999999999\n");
	ck_error(2, "bad pipe_size", "'99999999999999999999'");
}
END_TEST

START_TEST(test_idle_timeout)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->idle_timeout, 0);   /* off by default */
	config_free(cfg);
	cfg = load_ok("[global]\nidle_timeout = 2m\n");
	ck_assert_double_eq(cfg->idle_timeout, 120);
	config_free(cfg);
	cfg = load_ok("[global]\nidle_timeout = off\n");
	ck_assert_double_eq(cfg->idle_timeout, 0);
	config_free(cfg);
	load_bad("[global]\nidle_timeout = 0\n");
	ck_error(2, "bad idle_timeout", "'0'");
	load_bad("[global]\nidle_timeout = never\n");
	ck_error(2, "bad idle_timeout", "'never'");
}
END_TEST

START_TEST(test_pinned_timeout)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->pinned_timeout, 3600);
	config_free(cfg);
	cfg = load_ok("[global]\npinned_timeout = 90s\n");
	ck_assert_double_eq(cfg->pinned_timeout, 90);
	config_free(cfg);
	cfg = load_ok("[global]\npinned_timeout = off\n");
	ck_assert_double_eq(cfg->pinned_timeout, 0);
	config_free(cfg);
	load_bad("[global]\n\npinned_timeout = 25h\n");
	ck_error(3, "bad pinned_timeout", "'25h'");
}
END_TEST

START_TEST(test_keepalive_timeout)
{
	/* 2 minutes by default, as a WCF service waits on a kept connection */
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->keepalive_timeout, 120);
	config_free(cfg);
	cfg = load_ok("[global]\nkeepalive_timeout = 500ms\n");
	ck_assert_double_eq(cfg->keepalive_timeout, 0.5);
	config_free(cfg);
	cfg = load_ok("[global]\nkeepalive_timeout = off\n");
	ck_assert_double_eq(cfg->keepalive_timeout, 0);
	config_free(cfg);
	load_bad("[global]\n\nkeepalive_timeout = soon\n");
	ck_error(3, "bad keepalive_timeout", "'soon'");
}
END_TEST

/* A registrant has 5 s to say TAKEN, and 128 handoffs may wait for it. */
START_TEST(test_handoff_keys)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->handoff_timeout, 5);
	ck_assert_uint_eq(cfg->handoff_max_pending, 128);
	config_free(cfg);
	cfg = load_ok("[global]\nhandoff_timeout = 250ms\nhandoff_max_pending = 1\n");
	ck_assert_double_eq(cfg->handoff_timeout, 0.25);
	ck_assert_uint_eq(cfg->handoff_max_pending, 1);
	config_free(cfg);
	load_bad("[global]\n\nhandoff_timeout = off\n");
	ck_error(3, "bad handoff_timeout", "'off'");
	load_bad("[global]\nhandoff_timeout = 0\n");
	ck_error(2, "bad handoff_timeout", "'0'");
	load_bad("[global]\nhandoff_max_pending = 0\n");
	ck_error(2, "bad handoff_max_pending", "'0'");
	load_bad("[global]\n\n\nhandoff_max_pending = 1000001\n");
	ck_error(4, "bad handoff_max_pending", "'1000001'");
}
END_TEST

START_TEST(test_shutdown_timeout)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->shutdown_timeout, 30);
	config_free(cfg);
	cfg = load_ok("[global]\nshutdown_timeout = 2m\n");
	ck_assert_double_eq(cfg->shutdown_timeout, 120);
	config_free(cfg);
	load_bad("[global]\nshutdown_timeout = off\n");
	ck_error(2, "bad shutdown_timeout", "'off'");
}
END_TEST

START_TEST(test_tls_session_timeout)
{
	/* an hour by default; off issues no tickets */
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->tls_session_timeout, 3600);
	config_free(cfg);
	cfg = load_ok("[global]\ntls_session_timeout = 5m\n");
	ck_assert_double_eq(cfg->tls_session_timeout, 300);
	config_free(cfg);
	cfg = load_ok("[global]\ntls_session_timeout = off\n");
	ck_assert_double_eq(cfg->tls_session_timeout, 0);
	config_free(cfg);
	load_bad("[global]\n\ntls_session_timeout = 2d\n");
	ck_error(3, "bad tls_session_timeout", "'2d'");
}
END_TEST

START_TEST(test_user_group_pidfile)
{
	/* root and its group exist on every Linux system */
	struct config *cfg = load_ok("[global]\n");

	ck_assert_ptr_null(cfg->user);
	ck_assert_ptr_null(cfg->pidfile);
	config_free(cfg);
	cfg = load_ok("[global]\nuser = root\npidfile = /run/nettcpd.pid\n");
	ck_assert_pstr_eq(cfg->user, "root");
	ck_assert_uint_eq(cfg->uid, 0);
	ck_assert_uint_eq(cfg->gid, 0);
	ck_assert_pstr_eq(cfg->pidfile, "/run/nettcpd.pid");
	config_free(cfg);
	/* group may come first; it names the group the user's own would be */
	cfg = load_ok("[global]\ngroup = root\nuser = root\n");
	ck_assert_pstr_eq(cfg->group, "root");
	ck_assert_uint_eq(cfg->gid, 0);
	config_free(cfg);
	load_bad("[global]\n\nuser = no-such-user-nettcpd\n");
	ck_error(3, "unknown user", "'no-such-user-nettcpd'");
	load_bad("[global]\nuser = root\ngroup = no-such-group-nettcpd\n");
	ck_error(3, "unknown group", "'no-such-group-nettcpd'");
	load_bad("[global]\ngroup = root\n");
	ck_error(2, "'group' needs 'user'");
	load_bad("[global]\nuser =\npidfile =\n");
	ck_error(2, "empty user");
	ck_error(3, "empty pidfile");
}
END_TEST

START_TEST(test_relative_file_names)
{
	struct config *cfg;

	/* without a directory set, a relative name stays as written */
	cfg = load_ok("[global]\npidfile = run/n.pid\naccess_log = a.log\n");
	ck_assert_pstr_eq(cfg->pidfile, "run/n.pid");
	ck_assert_pstr_eq(cfg->access_log, "a.log");
	config_free(cfg);
	config_set_dir("/srv/x");
	cfg = load_ok("[global]\npidfile = run/n.pid\naccess_log = a.log\n");
	ck_assert_pstr_eq(cfg->pidfile, "/srv/x/run/n.pid");
	ck_assert_pstr_eq(cfg->access_log, "/srv/x/a.log");
	config_free(cfg);
	/* absolute names and the access log's keywords are left alone */
	cfg = load_ok("[global]\npidfile = /run/n.pid\naccess_log = syslog\n");
	ck_assert_pstr_eq(cfg->pidfile, "/run/n.pid");
	ck_assert_pstr_eq(cfg->access_log, "syslog");
	config_free(cfg);
	load_bad("[t]\nvia = net.tcp://+/T\nbackend = 127.0.0.1:1\n"
	    "tls = terminate\ntls_cert = c.pem\ntls_key = k.pem\n");
	ck_error(5, "tls_cert '/srv/x/c.pem'");
	config_set_dir(NULL);
}
END_TEST

START_TEST(test_sessions_and_backend_pool)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_int_eq(cfg->follow_sessions, 1);
	ck_assert_uint_eq(cfg->backend_pool, 256);
	ck_assert_double_eq(cfg->backend_pool_timeout, 30);
	config_free(cfg);
	cfg = load_ok("[global]\nfollow_sessions = off\nbackend_pool = 0\n"
	    "backend_pool_timeout = 1500ms\n");
	ck_assert_int_eq(cfg->follow_sessions, 0);
	ck_assert_uint_eq(cfg->backend_pool, 0);
	ck_assert_double_eq(cfg->backend_pool_timeout, 1.5);
	config_free(cfg);
	cfg = load_ok("[global]\nfollow_sessions = on\nbackend_pool = 1000000\n");
	ck_assert_int_eq(cfg->follow_sessions, 1);
	ck_assert_uint_eq(cfg->backend_pool, 1000000);
	config_free(cfg);
	load_bad("[global]\nfollow_sessions = yes\n");
	ck_error(2, "bad follow_sessions", "'yes'");
	load_bad("[global]\nbackend_pool = -1\n");
	ck_error(2, "bad backend_pool", "'-1'");
	load_bad("[global]\nbackend_pool = 1000001\n");
	ck_error(2, "bad backend_pool", "'1000001'");
	load_bad("[global]\nbackend_pool_timeout = 0\n");
	ck_error(2, "bad backend_pool_timeout", "'0'");
}
END_TEST

START_TEST(test_backend_pool_settle)
{
	struct config *cfg = load_ok("[global]\n");

	ck_assert_double_eq(cfg->backend_pool_settle, 0.010);
	config_free(cfg);
	cfg = load_ok("[global]\nbackend_pool_settle = 0\n");
	ck_assert_double_eq(cfg->backend_pool_settle, 0);
	config_free(cfg);
	cfg = load_ok("[global]\nbackend_pool_settle = 10s\n");
	ck_assert_double_eq(cfg->backend_pool_settle, 10);
	config_free(cfg);
	load_bad("[global]\nbackend_pool_settle = 10001ms\n");
	ck_error(2, "bad backend_pool_settle", "'10001ms'");
	load_bad("[global]\n\nbackend_pool_settle = -1\n");
	ck_error(3, "bad backend_pool_settle", "'-1'");
}
END_TEST

START_TEST(test_route_pool)
{
	struct config *cfg = load_ok(
	    "[a]\nvia = net.tcp://+/a\nbackend = 127.0.0.1:9001\n"
	    "[b]\nvia = net.tcp://+/b\nbackend = 127.0.0.1:9001\npool = off\n"
	    "[c]\nvia = net.tcp://+/c\nbackend = 127.0.0.1:9001\npool = on\n");

	ck_assert_int_eq(routes_get(cfg->routes, 0)->pool_off, 0);
	ck_assert_int_eq(routes_get(cfg->routes, 1)->pool_off, 1);
	ck_assert_int_eq(routes_get(cfg->routes, 2)->pool_off, 0);
	config_free(cfg);
	load_bad("[a]\nvia = net.tcp://+/a\nbackend = 127.0.0.1:9001\n"
	    "pool = no\npool = off\n");
	ck_error(4, "bad pool", "'no'", "on or off");
	ck_error(5, "duplicate key", "'pool'", "first at line 4");
	ck_assert_int_eq(error_count(), 2);
}
END_TEST

START_TEST(test_route_send_proxy_rewrite_via)
{
	struct config *cfg = load_ok(
	    "[a]\nvia = net.tcp://+/a\nbackend = 127.0.0.1:9001\n"
	    "[b]\nvia = net.tcp://+/b\nbackend = 127.0.0.1:9001\n"
	    "send_proxy = v1\nrewrite_via = on\n"
	    "[c]\nvia = net.tcp://+/c\nbackend = [::1]:9001\n"
	    "send_proxy = v2\nrewrite_via = off\n"
	    "[d]\nvia = net.tcp://+/d\nbackend = 127.0.0.1:9001\n"
	    "send_proxy = off\n");

	ck_assert_int_eq(routes_get(cfg->routes, 0)->send_proxy, PROXY_SEND_OFF);
	ck_assert_int_eq(routes_get(cfg->routes, 0)->rewrite_via, 0);
	ck_assert_int_eq(routes_get(cfg->routes, 1)->send_proxy, PROXY_SEND_V1);
	ck_assert_int_eq(routes_get(cfg->routes, 1)->rewrite_via, 1);
	ck_assert_int_eq(routes_get(cfg->routes, 2)->send_proxy, PROXY_SEND_V2);
	ck_assert_int_eq(routes_get(cfg->routes, 2)->rewrite_via, 0);
	ck_assert_int_eq(routes_get(cfg->routes, 3)->send_proxy, PROXY_SEND_OFF);
	config_free(cfg);
	load_bad("[a]\nvia = net.tcp://+/a\nbackend = 127.0.0.1:9001\n"
	    "send_proxy = V1\nsend_proxy = v2\nrewrite_via = 1\n"
	    "rewrite_via = on\n");
	ck_error(4, "bad send_proxy", "'V1'", "off, v1 or v2");
	ck_error(5, "duplicate key", "'send_proxy'", "first at line 4");
	ck_error(6, "bad rewrite_via", "'1'", "on or off");
	ck_error(7, "duplicate key", "'rewrite_via'", "first at line 6");
	ck_assert_int_eq(error_count(), 4);
}
END_TEST

/* -------------------------------------------------------------- integers */

START_TEST(test_counts)
{
	struct config *cfg = load_ok(
	    "[global]\nmax_connections = 1000000\nmax_pending = 1\n");

	ck_assert_uint_eq(cfg->max_connections, 1000000);
	ck_assert_uint_eq(cfg->max_pending, 1);
	config_free(cfg);

	load_bad(
	    "[global]\n"
	    "max_connections = 0\n"
	    "max_pending = 1000001\n");
	ck_error(2, "bad max_connections", "'0'");
	ck_error(3, "bad max_pending", "'1000001'");

	load_bad("[global]\nmax_connections = +5\nmax_pending = 10k\n");
	ck_error(2, "bad max_connections", "'+5'");
	ck_error(3, "bad max_pending", "'10k'");

	load_bad("[global]\nmax_connections = -1\nmax_pending = 1.0\n");
	ck_error(2, "bad max_connections", "'-1'");
	ck_error(3, "bad max_pending", "'1.0'");

	load_bad("[global]\nmax_connections = 99999999999999999999999\n"
	    "max_pending =\n");
	ck_error(2, "bad max_connections");
	ck_error(3, "bad max_pending", "''");
}
END_TEST

/* ------------------------------------------------------ keys and values */

START_TEST(test_unknown_key)
{
	load_bad(
	    "[global]\n"
	    "listen_port = 808\n"
	    "[calculator]\n"
	    "via = net.tcp://+/Calculator\n"
	    "backend = 127.0.0.1:9001\n"
	    "timeout = 5s\n");
	ck_error(2, "unknown key", "'listen_port'", "[global]");
	ck_error(6, "unknown key", "'timeout'", "[calculator]");
	ck_assert_int_eq(error_count(), 2);
}
END_TEST

START_TEST(test_upper_case_key)
{
	load_bad(
	    "[global]\n"
	    "Forward = copy\n"
	    "[calculator]\n"
	    "VIA = net.tcp://+/Calculator\n"
	    "backend = 127.0.0.1:9001\n");
	ck_error(2, "unknown key", "'Forward'");
	ck_error(4, "unknown key", "'VIA'");
	ck_error(3, "[calculator]", "no via");
}
END_TEST

START_TEST(test_key_before_section)
{
	load_bad(
	    "; a comment first\n"
	    "listen = 127.0.0.1:808\n"
	    "[global]\n");
	ck_error(2, "'listen'", "before any section");
	ck_assert_int_eq(error_count(), 1);
}
END_TEST

START_TEST(test_unknown_values)
{
	load_bad(
	    "[global]\n"
	    "forward = zero-copy\n"
	    "log = file\n"
	    "log_level = verbose\n");
	ck_error(2, "unknown forward", "'zero-copy'");
	ck_error(3, "unknown log", "'file'");
	ck_error(3, "(stderr, syslog or journal)");
	ck_error(4, "unknown log_level", "'verbose'");

	/* values are as case-sensitive as keys */
	load_bad("[global]\nforward = Splice\nlog = SYSLOG\nlog_level = Info\n");
	ck_error(2, "'Splice'");
	ck_error(3, "'SYSLOG'");
	ck_error(4, "'Info'");
}
END_TEST

START_TEST(test_log_journal)
{
	struct config *cfg = load_ok("[global]\nlog = journal\n");

	ck_assert_int_eq(cfg->log_target, LOG_TARGET_JOURNAL);
	ck_assert_uint_eq(cfg->log_client_lines, 20);
	config_free(cfg);
	cfg = load_ok("[global]\nlog_client_lines = 0\n");
	ck_assert_uint_eq(cfg->log_client_lines, 0);
	config_free(cfg);
	load_bad("[global]\nlog_client_lines = 1000001\n");
	ck_error(2, "bad log_client_lines", "'1000001'");
	load_bad("[global]\n\nlog_client_lines = -1\n");
	ck_error(3, "bad log_client_lines", "'-1'");
}
END_TEST

START_TEST(test_log_levels)
{
	static const struct {
		const char *name;
		enum log_level level;
	} cases[] = {
		{ "error", LOG_LEVEL_ERROR },
		{ "warning", LOG_LEVEL_WARNING },
		{ "notice", LOG_LEVEL_NOTICE },
		{ "info", LOG_LEVEL_INFO },
		{ "debug", LOG_LEVEL_DEBUG },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[64];
		struct config *cfg;

		snprintf(text, sizeof(text), "[global]\nlog_level = %s\n",
		    cases[i].name);
		cfg = load_ok(text);
		ck_assert_int_eq(cfg->log_level, cases[i].level);
		config_free(cfg);
	}
}
END_TEST

START_TEST(test_duplicate_key)
{
	load_bad(
	    "[global]\n"
	    "connect_timeout = 5s\n"
	    "connect_timeout = 6s\n"
	    "forward = copy\n"
	    "[a]\n"
	    "backend = 127.0.0.1:9001\n"
	    "via = net.tcp://+/a\n"
	    "backend = 127.0.0.1:9002\n");
	ck_error(3, "duplicate key", "'connect_timeout'", "first at line 2");
	ck_error(8, "duplicate key", "'backend'", "first at line 6");
	ck_assert_int_eq(error_count(), 2);
}
END_TEST

START_TEST(test_second_global)
{
	load_bad(
	    "[global]\n"
	    "forward = copy\n"
	    "[a]\n"
	    "via = net.tcp://+/a\n"
	    "backend = 127.0.0.1:9001\n"
	    "[global]\n"
	    "log = syslog\n");
	ck_error(6, "duplicate section", "[global]", "first at line 1");
	ck_assert_int_eq(error_count(), 1);
}
END_TEST

START_TEST(test_syntax_errors)
{
	load_bad(
	    "[global]\n"
	    "forward = copy\n"
	    "just some words\n"
	    "[a ;]\n"
	    "log = syslog\n"
	    "[b\n");
	ck_error(3, "syntax error");
	ck_error(4, "syntax error");
	ck_error(6, "syntax error");
	/* a broken header leaves the section as it was */
	ck_assert_int_eq(error_count(), 3);

	load_bad("[global\nforward = copy\n");
	ck_error(1, "syntax error");
	ck_error(2, "'forward'", "before any section");
}
END_TEST

START_TEST(test_line_too_long)
{
	size_t cap = 3 * CONFIG_MAX_LINE;
	char *text = malloc(cap), *pad = malloc(CONFIG_MAX_LINE + 2);
	struct config *cfg;
	const struct route *r;

	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(pad);
	/* CONFIG_MAX_LINE characters is the longest line, past inih's own
	 * buffer: a comment, and a key whose value is cut as inih cuts one
	 * (the ';' after a space begins a comment, ':' separates too) */
	memset(pad, 'x', CONFIG_MAX_LINE + 1);
	pad[CONFIG_MAX_LINE - 1] = '\0';
	snprintf(text, cap, "[global]\n;%s\nforward = copy\n[a]\n"
	    "via: net.tcp://+/%.*s ; %s\nbackend = 127.0.0.1:9001\n", pad,
	    2000, pad, pad + 3000);
	cfg = load_ok(text);
	ck_assert_int_eq(cfg->forward, FORWARD_COPY);
	ck_assert_uint_eq(routes_count(cfg->routes), 1);
	r = routes_get(cfg->routes, 0);
	ck_assert_uint_eq(routes_nprefixes(cfg->routes), 1);
	{
		struct route_prefix rp;

		routes_prefix(cfg->routes, 0, &rp);
		ck_assert_uint_eq(strlen(rp.path), 1 + 2000); /* "/xx..." */
	}
	ck_assert_str_eq(r->name, "a");
	config_free(cfg);

	/* one more is refused, and nothing of the line is read as keys */
	pad[CONFIG_MAX_LINE - 1] = 'x';
	pad[CONFIG_MAX_LINE] = '\0';
	snprintf(text, cap,
	    "[global]\n;%s\nforward = copy\n[a]\nvia = net.tcp://+/%s\n"
	    "backend = 127.0.0.1:9001\nlog = file\n", pad, pad);
	load_bad(text);
	ck_error(2, "line too long", "at most 8192 characters");
	ck_error(5, "line too long");
	ck_error(4, "[a]", "no via");
	ck_error(7, "unknown key", "'log'");
	ck_assert_int_eq(error_count(), 4);

	/* a long line with no key inih would find is a syntax error */
	snprintf(text, cap, "[global]\n%.*s\n", 500, pad);
	load_bad(text);
	ck_error(2, "syntax error");
	free(text);
	free(pad);
}
END_TEST

START_TEST(test_multiple_errors)
{
	load_bad(
	    "[global]\n"
	    "listen = 127.0.0.1:0\n"
	    "preamble_timeout = forever\n"
	    "forward = copy\n"
	    "forward = splice\n"
	    "[a]\n"
	    "via = net.tcp://+/a\n"
	    "[b]\n"
	    "via = net.tcp://+/a\n"
	    "backend = 127.0.0.1\n"
	    "bogus\n");
	ck_error(2, "bad listen address", "'127.0.0.1:0'", "bad port");
	ck_error(3, "bad preamble_timeout", "'forever'");
	ck_error(5, "duplicate key", "'forward'", "first at line 4");
	ck_error(6, "[a]", "no backend");
	ck_error(9, "'net.tcp://+/a'", "already routed by [a]");
	ck_error(10, "bad backend", "missing port");
	ck_error(11, "syntax error");
	ck_assert_int_eq(error_count(), 7);

	/* in line order, although routes are checked at the end of the file */
	ck_assert(reported_before(2, 3));
	ck_assert(reported_before(6, 9));
	ck_assert(reported_before(9, 11));
}
END_TEST

START_TEST(test_cannot_open)
{
	char path[1100];

	snprintf(path, sizeof(path), "%s/missing.ini", tmpdir);
	ck_assert_ptr_null(config_load(path, errbuf, sizeof(errbuf)));
	last_path = path;
	ck_error(0, "cannot open", strerror(ENOENT));
	ck_assert_int_eq(error_count(), 1);

	/* a directory opens but cannot be read */
	ck_assert_ptr_null(config_load(tmpdir, errbuf, sizeof(errbuf)));
	last_path = tmpdir;
	ck_error(0, "cannot");
}
END_TEST

START_TEST(test_error_buffer_fills)
{
	static const char text[] =
	    "[global]\nfoo = 1\nbar = 2\nbaz = 3\nqux = 4\n";
	char small[64];
	size_t i;

	last_path = write_ini(text);
	memset(small, '#', sizeof(small));
	ck_assert_ptr_null(config_load(last_path, small, sizeof(small)));
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(small[sizeof(small) - 2], '\n');

	/* every size, down to none at all, stays inside the buffer */
	for (i = 0; i < sizeof(small); i++) {
		memset(small, '#', sizeof(small));
		ck_assert_ptr_null(config_load(last_path, small, i));
		if (i > 0)
			ck_assert_uint_lt(strlen(small), i);
		ck_assert_int_eq(small[i], '#');
	}
	ck_assert_ptr_null(config_load(last_path, NULL, 0));
}
END_TEST

/* --------------------------------------------------------------- listen */

START_TEST(test_listen_lists)
{
	struct config *cfg = load_ok(
	    "[global]\n"
	    "listen =   127.0.0.1:1 ,127.0.0.1:2,\t[::1]:3  \n"
	    "listen = 127.0.0.2:4\n"
	    "listen = 127.0.0.1:5, 127.0.0.1:6 ; and a comment\n");
	static const char *const want[] = {
		"127.0.0.1:1", "127.0.0.1:2", "[::1]:3", "127.0.0.2:4",
		"127.0.0.1:5", "127.0.0.1:6",
	};
	size_t i;

	ck_assert_uint_eq(cfg->nlistens, 6);
	for (i = 0; i < 6; i++) {
		ck_assert_str_eq(cfg->listens[i].text, want[i]);
		ck_assert_str_eq(fmt(&cfg->listens[i].addr), want[i]);
		ck_assert_uint_eq(addr_port((const struct sockaddr *)
		    &cfg->listens[i].addr.ss), i + 1);
	}
	config_free(cfg);
}
END_TEST

START_TEST(test_listen_ipv6)
{
	struct config *cfg = load_ok(
	    "[global]\nlisten = [::]:808, [fe80::1]:809, [::ffff:10.0.0.1]:810\n");
	const struct sockaddr_in6 *sin6;

	ck_assert_uint_eq(cfg->nlistens, 3);
	sin6 = (const struct sockaddr_in6 *)&cfg->listens[0].addr.ss;
	ck_assert_int_eq(sin6->sin6_family, AF_INET6);
	ck_assert_uint_eq(cfg->listens[0].addr.len, sizeof(*sin6));
	ck_assert_str_eq(fmt(&cfg->listens[0].addr), "[::]:808");
	ck_assert_str_eq(fmt(&cfg->listens[1].addr), "[fe80::1]:809");
	ck_assert_str_eq(fmt(&cfg->listens[2].addr), "[::ffff:10.0.0.1]:810");
	config_free(cfg);
}
END_TEST

START_TEST(test_listen_duplicate)
{
	load_bad(
	    "[global]\n"
	    "listen = 127.0.0.1:808, [::]:808\n"
	    "listen = 127.0.0.1:0808\n"
	    "listen = [0:0::0]:808\n"
	    "listen = 127.0.0.1:809, 127.0.0.1:809\n");
	ck_error(3, "duplicate listen address", "'127.0.0.1:0808'",
	    "first at line 2");
	ck_error(4, "duplicate listen address", "'[0:0::0]:808'",
	    "first at line 2");
	ck_error(5, "duplicate listen address", "'127.0.0.1:809'",
	    "first at line 5");
	ck_assert_int_eq(error_count(), 3);
}
END_TEST

START_TEST(test_listen_bad)
{
	load_bad(
	    "[global]\n"
	    "listen = localhost:808\n"
	    "listen = 127.0.0.1\n"
	    "listen = 127.0.0.1:65536\n"
	    "listen = [::1:808\n"
	    "listen = 127.0.0.1:1,,127.0.0.1:2\n"
	    "listen =\n"
	    "listen = ::1:808\n"
	    "listen = [::1]808\n");
	ck_error(2, "bad listen address", "'localhost:808'", "not an IP address");
	ck_error(3, "bad listen address", "'127.0.0.1'", "missing port");
	ck_error(4, "bad listen address", "bad port");
	ck_error(5, "bad listen address", "bad IPv6 literal");
	ck_error(6, "empty address", "listen");
	ck_error(7, "empty address", "listen");
	ck_error(8, "bad listen address", "bad IPv6 literal");
	ck_error(9, "bad listen address", "bad port");
	ck_assert_int_eq(error_count(), 8);
}
END_TEST

/* --------------------------------------------------------------- routes */

START_TEST(test_route_without_via_or_backend)
{
	load_bad(
	    "[global]\n"
	    "\n"
	    "[nothing]\n"
	    "\n"
	    "[novia]\n"
	    "backend = 127.0.0.1:9001\n"
	    "[nobackend]\n"
	    "via = net.tcp://+/x\n");
	ck_error(3, "route [nothing]", "no via");
	ck_error(3, "route [nothing]", "no backend");
	ck_error(5, "route [novia]", "no via");
	ck_error(7, "route [nobackend]", "no backend");
	ck_assert_int_eq(error_count(), 4);
}
END_TEST

START_TEST(test_duplicate_route)
{
	load_bad(
	    "[calc]\n"
	    "via = net.tcp://+/a\n"
	    "backend = 127.0.0.1:9001\n"
	    "[other]\n"
	    "via = net.tcp://+/b\n"
	    "backend = 127.0.0.1:9002\n"
	    "[calc]\n"
	    "via = net.tcp://+/c\n"
	    "backend = 127.0.0.1:9003\n");
	ck_error(7, "duplicate route", "[calc]", "first at line 1");
	ck_assert_int_eq(error_count(), 1);
}
END_TEST

/* "reg:" is the registered routes' (registry.c): a section of that name
 * would be counted as one. */
START_TEST(test_reserved_route_name)
{
	load_bad(
	    "[calc]\n"
	    "via = net.tcp://+/a\n"
	    "backend = 127.0.0.1:9001\n"
	    "[reg:net.tcp://+/b]\n"
	    "via = net.tcp://+/b\n"
	    "backend = 127.0.0.1:9002\n");
	ck_error(4, "route [reg:net.tcp://+/b]", "registered");
	ck_assert_int_eq(error_count(), 1);
}
END_TEST

START_TEST(test_duplicate_via)
{
	load_bad(
	    "[calc]\n"
	    "via = net.tcp://+/Calculator\n"
	    "via = net.tcp://+/Calculator\n"
	    "backend = 127.0.0.1:9001\n"
	    "[other]\n"
	    "backend = 127.0.0.1:9002\n"
	    "via = net.tcp://+/calculator/\n"
	    "via = net.tcp://*/Calculator\n");
	ck_error(3, "via 'net.tcp://+/Calculator'", "already routed by [calc]");
	ck_error(7, "via 'net.tcp://+/calculator/'",
	    "already routed by [calc]");
	/* another host class is another prefix */
	ck_assert_int_eq(error_count(), 2);
}
END_TEST

START_TEST(test_bad_via)
{
	load_bad(
	    "[a]\n"
	    "via = http://+/a\n"
	    "via = net.tcp://user@host/a\n"
	    "via =\n"
	    "backend = 127.0.0.1:9001\n");
	ck_error(2, "bad via", "'http://+/a'");
	ck_error(3, "bad via", "'net.tcp://user@host/a'");
	ck_error(4, "bad via", "''");
	ck_assert_int_eq(error_count(), 3);
}
END_TEST

START_TEST(test_bad_backend)
{
	load_bad(
	    "[a]\nvia = net.tcp://+/a\nbackend = 127.0.0.1\n"
	    "[b]\nvia = net.tcp://+/b\nbackend = 127.0.0.1:x\n"
	    "[c]\nvia = net.tcp://+/c\nbackend = no-such-host.invalid:9001\n"
	    "[d]\nvia = net.tcp://+/d\nbackend = [::1:9001\n"
	    "[e]\nvia = net.tcp://+/e\nbackend =\n");
	ck_error(3, "bad backend", "'127.0.0.1'", "missing port");
	ck_error(6, "bad backend", "'127.0.0.1:x'", "bad port");
	ck_error(9, "bad backend", "cannot resolve", "'no-such-host.invalid'");
	ck_error(12, "bad backend", "bad IPv6 literal");
	ck_error(15, "bad backend", "''");
	/* a bad backend is not also a missing one */
	ck_assert_int_eq(error_count(), 5);
}
END_TEST

START_TEST(test_backend_localhost)
{
	struct config *cfg = load_ok(
	    "[a]\nvia = net.tcp://+/a\nbackend = localhost:9001\n");
	const struct route *r = routes_get(cfg->routes, 0);
	const struct sockaddr *sa = (const struct sockaddr *)&r->backends.m[0].addr.ss;

	ck_assert_str_eq(r->backend_text, "localhost:9001");
	ck_assert_uint_eq(addr_port(sa), 9001);
	if (sa->sa_family == AF_INET)
		ck_assert_str_eq(fmt(&r->backends.m[0].addr), "127.0.0.1:9001");
	else
		ck_assert_str_eq(fmt(&r->backends.m[0].addr), "[::1]:9001");
	config_free(cfg);
}
END_TEST

START_TEST(test_routes_lookup)
{
	struct config *cfg = load_ok(
	    "[global]\n"
	    "listen = 127.0.0.1:808\n"
	    "[calculator]\n"
	    "via = net.tcp://+/Calculator\n"
	    "via = net.tcp://+/Calc2\n"
	    "backend = 127.0.0.1:9001\n"
	    "[orders]\n"
	    "via = net.tcp://+/Orders\n"
	    "backend = 127.0.0.1:9002\n"
	    "[deep]\n"
	    "via = net.tcp://+/Orders/Archive\n"
	    "backend = 127.0.0.1:9003\n");
	const struct route *r;

	r = lookup(cfg, "net.tcp://server:808/Calculator/Service.svc", 808);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "calculator");
	ck_assert_uint_eq(addr_port((const struct sockaddr *)&r->backends.m[0].addr.ss),
	    9001);
	r = lookup(cfg, "net.tcp://server/CALC2", 808);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "calculator");
	r = lookup(cfg, "net.tcp://server:808/orders/new", 808);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "orders");
	ck_assert_str_eq(r->backend_text, "127.0.0.1:9002");
	r = lookup(cfg, "net.tcp://server:808/orders/archive/2020", 808);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "deep");
	ck_assert_ptr_null(lookup(cfg, "net.tcp://server:808/Nothing", 808));
	ck_assert_ptr_null(lookup(cfg, "net.tcp://server:808/Calculators", 808));
	config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------- addr */

START_TEST(test_addr_parse_literals)
{
	struct addr a;
	char err[128];
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;

	ck_assert_int_eq(addr_parse("127.0.0.1:9001", 0, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(sin->sin_family, AF_INET);
	ck_assert_uint_eq(a.len, sizeof(*sin));
	ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	ck_assert_uint_eq(ntohs(sin->sin_port), 9001);
	ck_assert_str_eq(fmt(&a), "127.0.0.1:9001");

	ck_assert_int_eq(addr_parse("[::1]:9001", 0, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(sin6->sin6_family, AF_INET6);
	ck_assert_uint_eq(a.len, sizeof(*sin6));
	ck_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	ck_assert_uint_eq(addr_port((const struct sockaddr *)&a.ss), 9001);
	ck_assert_str_eq(fmt(&a), "[::1]:9001");

	ck_assert_int_eq(addr_parse("[2001:DB8::A]:65535", 1, &a, err,
	    sizeof(err)), 0);
	ck_assert_str_eq(fmt(&a), "[2001:db8::a]:65535");
	ck_assert_int_eq(addr_parse("10.1.2.3:1", 1, &a, err, sizeof(err)), 0);
	ck_assert_str_eq(fmt(&a), "10.1.2.3:1");
}
END_TEST

START_TEST(test_addr_parse_errors)
{
	static const struct {
		const char *text;
		int resolve;
		const char *why;
	} cases[] = {
		{ "", 1, "missing port" },
		{ "127.0.0.1", 1, "missing port" },
		{ "127.0.0.1:", 1, "missing port" },
		{ "[::1]", 1, "missing port" },
		{ "[::1]:", 1, "missing port" },
		{ "127.0.0.1:0", 1, "bad port" },
		{ "127.0.0.1:65536", 1, "bad port" },
		{ "127.0.0.1:99999999999999999999", 1, "bad port" },
		{ "127.0.0.1:-1", 1, "bad port" },
		{ "127.0.0.1:+80", 1, "bad port" },
		{ "127.0.0.1:80x", 1, "bad port" },
		{ "127.0.0.1: 80", 1, "bad port" },
		{ "[::1]80", 1, "bad port" },
		{ ":80", 1, "missing host" },
		{ "[]:80", 1, "missing host" },
		{ "[::1:80", 1, "bad IPv6 literal" },
		{ "[::g]:80", 1, "bad IPv6 literal" },
		{ "[127.0.0.1]:80", 1, "bad IPv6 literal" },
		{ "::1:80", 1, "bad IPv6 literal" },
		{ "localhost:80", 0, "not an IP address" },
		{ "1.2.3.4 x:80", 1, "bad host name" },
		{ "no-such-host.invalid:80", 1, "cannot resolve 'no-such-host.invalid'" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct addr a;
		char err[256] = "";

		memset(&a, 0xA5, sizeof(a));
		ck_assert_msg(addr_parse(cases[i].text, cases[i].resolve, &a,
		    err, sizeof(err)) == -1, "'%s' accepted", cases[i].text);
		ck_assert_msg(strstr(err, cases[i].why) != NULL,
		    "'%s': '%s' lacks '%s'", cases[i].text, err, cases[i].why);
		ck_assert_uint_eq(a.len, 0xA5A5A5A5u);
	}
}
END_TEST

START_TEST(test_addr_resolve_localhost)
{
	struct addr a;
	char err[256] = "";
	const struct sockaddr *sa = (const struct sockaddr *)&a.ss;

	ck_assert_msg(addr_parse("localhost:9001", 1, &a, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_uint_eq(addr_port(sa), 9001);
	if (sa->sa_family == AF_INET) {
		ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));
		ck_assert_str_eq(fmt(&a), "127.0.0.1:9001");
	} else {
		ck_assert_int_eq(sa->sa_family, AF_INET6);
		ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));
		ck_assert_str_eq(fmt(&a), "[::1]:9001");
	}
}
END_TEST

START_TEST(test_addr_format_other_family)
{
	struct sockaddr_storage ss;
	char buf[ADDR_TEXT_MAX];

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_NETLINK;
	ck_assert_uint_eq(addr_port((const struct sockaddr *)&ss), 0);
	addr_format((const struct sockaddr *)&ss, buf, sizeof(buf));
	ck_assert_uint_gt(strlen(buf), 0);
}
END_TEST

/* The longest address addr_format() writes fits ADDR_TEXT_MAX. */
START_TEST(test_addr_format_longest)
{
	struct addr a;
	char err[128], buf[ADDR_TEXT_MAX];
	static const char text[] = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535";

	ck_assert_int_eq(addr_parse(text, 0, &a, err, sizeof(err)), 0);
	addr_format((const struct sockaddr *)&a.ss, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}
END_TEST

/* unix:/path, only where ADDR_UNIX allows it; the longest path sun_path
 * holds, formatted whole; equal by path alone. */
START_TEST(test_addr_unix)
{
	struct addr a, b;
	char err[160], text[8 + sizeof(((struct sockaddr_un *)0)->sun_path)];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const struct sockaddr_un *un = (const struct sockaddr_un *)&a.ss;

	ck_assert_int_eq(addr_parse("unix:/run/calc.sock", ADDR_UNIX, &a, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(un->sun_family, AF_UNIX);
	ck_assert_str_eq(un->sun_path, "/run/calc.sock");
	ck_assert_uint_eq(a.len, offsetof(struct sockaddr_un, sun_path) + 15);
	ck_assert_uint_eq(addr_port((const struct sockaddr *)&a.ss), 0);
	ck_assert_str_eq(fmt(&a), "unix:/run/calc.sock");
	ck_assert_int_eq(addr_parse("unix:/run/calc.sock", ADDR_UNIX, &b, err,
	    sizeof(err)), 0);
	ck_assert(addr_equal(&a, &b));
	ck_assert_int_eq(addr_parse("unix:/run/calc.sock2", ADDR_UNIX, &b, err,
	    sizeof(err)), 0);
	ck_assert(!addr_equal(&a, &b));
	ck_assert(!addr_equal(&b, &a));

	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	snprintf(text, sizeof(text), "unix:%s", path);
	ck_assert_int_eq(addr_parse(text, ADDR_UNIX, &a, err, sizeof(err)), 0);
	ck_assert_str_eq(fmt(&a), text);
	snprintf(text, sizeof(text), "unix:%sp", path);
	ck_assert_int_eq(addr_parse(text, ADDR_UNIX, &a, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "longer than the system's") != NULL, "%s", err);

	ck_assert_int_eq(addr_parse("unix:/run/calc.sock", ADDR_RESOLVE, &a, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "only as a backend") != NULL, "%s", err);
	ck_assert_int_eq(addr_parse("unix:", ADDR_UNIX, &a, err, sizeof(err)), -1);
	ck_assert_int_eq(addr_parse("unix:calc.sock", ADDR_UNIX, &a, err,
	    sizeof(err)), -1);
	ck_assert_int_eq(addr_parse("unix:@calc", ADDR_UNIX, &a, err,
	    sizeof(err)), -1);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("valid");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_config);
	tcase_add_test(tc, test_documented_example);
	tcase_add_test(tc, test_defaults_without_global);
	tcase_add_test(tc, test_defaults_empty_global);
	tcase_add_test(tc, test_empty_file_has_no_routes);
	tcase_add_test(tc, test_comments);
	tcase_add_test(tc, test_indented_lines);
	tcase_add_test(tc, test_crlf_and_bom);
	tcase_add_test(tc, test_section_names);
	tcase_add_test(tc, test_log_levels);
	suite_add_tcase(s, tc);

	tc = tcase_create("durations");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_duration_valid);
	tcase_add_test(tc, test_duration_invalid);
	tcase_add_test(tc, test_duration_keys);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_keepalive_timeout);
	tcase_add_test(tc, test_handoff_keys);
	tcase_add_test(tc, test_pinned_timeout);
	tcase_add_test(tc, test_tls_session_timeout);
	tcase_add_test(tc, test_user_group_pidfile);
	tcase_add_test(tc, test_relative_file_names);
	tcase_add_test(tc, test_shutdown_timeout);
	tcase_add_test(tc, test_workers);
	tcase_add_test(tc, test_pipe_size);
	tcase_add_test(tc, test_sessions_and_backend_pool);
	tcase_add_test(tc, test_backend_pool_settle);
	tcase_add_test(tc, test_route_pool);
	tcase_add_test(tc, test_route_send_proxy_rewrite_via);
	tcase_add_test(tc, test_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_comment_needs_space_or_semicolon);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_upper_case_key);
	tcase_add_test(tc, test_key_before_section);
	tcase_add_test(tc, test_unknown_values);
	tcase_add_test(tc, test_log_journal);
	tcase_add_test(tc, test_duplicate_key);
	tcase_add_test(tc, test_second_global);
	tcase_add_test(tc, test_syntax_errors);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_multiple_errors);
	tcase_add_test(tc, test_cannot_open);
	tcase_add_test(tc, test_error_buffer_fills);
	suite_add_tcase(s, tc);

	tc = tcase_create("listen");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_listen_lists);
	tcase_add_test(tc, test_listen_ipv6);
	tcase_add_test(tc, test_listen_duplicate);
	tcase_add_test(tc, test_listen_bad);
	suite_add_tcase(s, tc);

	tc = tcase_create("routes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_route_without_via_or_backend);
	tcase_add_test(tc, test_duplicate_route);
	tcase_add_test(tc, test_reserved_route_name);
	tcase_add_test(tc, test_duplicate_via);
	tcase_add_test(tc, test_bad_via);
	tcase_add_test(tc, test_bad_backend);
	tcase_add_test(tc, test_backend_localhost);
	tcase_add_test(tc, test_routes_lookup);
	suite_add_tcase(s, tc);

	tc = tcase_create("addr");
	tcase_add_test(tc, test_addr_parse_literals);
	tcase_add_test(tc, test_addr_parse_errors);
	tcase_add_test(tc, test_addr_resolve_localhost);
	tcase_add_test(tc, test_addr_format_other_family);
	tcase_add_test(tc, test_addr_format_longest);
	tcase_add_test(tc, test_addr_unix);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
