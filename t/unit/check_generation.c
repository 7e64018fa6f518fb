/*
 * check_generation.c - unit tests for a generation's life cycle: loaded
 * from a file (the one path -t and a reload share), shared by reference,
 * freed by its last owner, and what a reload may and may not change.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "generation.h"
#include "routes.h"

static char path[] = "/tmp/check_generation.XXXXXX";

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void teardown(void)
{
	unlink(path);
	strcpy(path, "/tmp/check_generation.XXXXXX");
}

static struct generation *load(const char *text, unsigned number)
{
	char err[4096];
	struct generation *g;

	write_file(text);
	g = generation_load(path, number, err, sizeof(err));
	ck_assert_msg(g != NULL, "%s", err);
	return g;
}

#define BASE "[global]\nlisten = 127.0.0.1:1\n"

START_TEST(test_load_number_and_refs)
{
	struct generation *g = load(BASE "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:2\n", 7);
	struct generation *same;

	ck_assert_uint_eq(g->number, 7);
	ck_assert_uint_eq(routes_count(g->cfg->routes), 1);
	ck_assert(g->loaded > 0);
	same = generation_ref(g);
	ck_assert_ptr_eq(same, g);
	ck_assert_uint_eq(atomic_load(&g->refs), 2);
	generation_unref(same);
	ck_assert_uint_eq(atomic_load(&g->refs), 1);
	/* the last owner frees it (ASan and valgrind see any leak) */
	generation_unref(g);
	generation_unref(NULL);
}
END_TEST

START_TEST(test_broken_file_gives_no_generation)
{
	char err[4096];

	write_file(BASE "[a]\nvia = net.tcp://+/A\n");
	ck_assert_ptr_null(generation_load(path, 2, err, sizeof(err)));
	ck_assert_msg(strstr(err, path) != NULL && strstr(err, ":3:") != NULL, "%s", err);
}
END_TEST

START_TEST(test_what_a_reload_may_change)
{
	struct generation *cur = load(BASE "workers = 2\n[a]\nvia = net.tcp://+/A\n"
	    "backend = 127.0.0.1:2\n", 1);
	struct generation *next;

	/* routes, timeouts, log level, and listen addresses: a reload's */
	next = load("[global]\nlisten = 127.0.0.1:1, 127.0.0.1:3\nworkers = 2\n"
	    "preamble_timeout = 5s\nlog_level = debug\n"
	    "[b]\nvia = net.tcp://+/B\nbackend = 127.0.0.1:4\n", 2);
	ck_assert_ptr_null(generation_needs_restart(cur, next));
	generation_unref(next);
	/* what sizes the process: a restart's */
	next = load(BASE "workers = 3\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "workers");
	generation_unref(next);
	next = load(BASE "workers = 2\nmax_connections = 5\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "max_connections");
	generation_unref(next);
	next = load(BASE "workers = 2\nbackend_pool = 1\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "backend_pool");
	generation_unref(next);
	next = load(BASE "workers = 2\nlog = syslog\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "log");
	generation_unref(next);
	next = load(BASE "workers = 2\nmetrics = 127.0.0.1:9808\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "metrics");
	generation_unref(next);
	/* who the process runs as, and the pid file it wrote at its start */
	next = load(BASE "workers = 2\nuser = root\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "user");
	generation_unref(next);
	next = load(BASE "workers = 2\npidfile = /run/n.pid\n", 2);
	ck_assert_pstr_eq(generation_needs_restart(cur, next), "pidfile");
	generation_unref(next);
	generation_unref(cur);
}
END_TEST

/* What closes the connections pinned to a route at a reload: its backend
 * or its TLS, or its removal; not its prefixes, nor other routes. */
START_TEST(test_policy_change_by_route)
{
	struct generation *cur = load(BASE
	    "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:2\n"
	    "[b]\nvia = net.tcp://+/B\nbackend = 127.0.0.1:3\n", 1);
	const struct route *a = routes_get(cur->cfg->routes, 0);
	const struct route *b = routes_get(cur->cfg->routes, 1);
	struct generation *next;

	next = load(BASE "[b]\nvia = net.tcp://+/B\nvia = net.tcp://+/C\n"
	    "backend = 127.0.0.1:3\n[n]\nvia = net.tcp://+/N\nbackend = "
	    "127.0.0.1:2\n[a]\nvia = net.tcp://+/A2\nbackend = 127.0.0.1:2\n", 2);
	ck_assert_int_eq(generation_policy_changed(a, next), 0);
	ck_assert_int_eq(generation_policy_changed(b, next), 0);
	generation_unref(next);

	next = load(BASE "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:4\n"
	    "[renamed]\nvia = net.tcp://+/B\nbackend = 127.0.0.1:3\n", 2);
	ck_assert_int_eq(generation_policy_changed(a, next), 1);
	ck_assert_int_eq(generation_policy_changed(b, next), 1);
	generation_unref(next);
	generation_unref(cur);
}
END_TEST

static const struct sockaddr *ipv4(const char *text)
{
	static struct sockaddr_in sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	ck_assert_int_eq(inet_pton(AF_INET, text, &sin.sin_addr), 1);
	return (const struct sockaddr *)&sin;
}

/* Whom the next generation's rules refuse on a route already in use:
 * [global]'s rules, then those of the route of the same name. */
START_TEST(test_refused_by_the_next_rules)
{
	struct generation *cur = load(BASE
	    "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:2\n"
	    "[b]\nvia = net.tcp://+/B\nbackend = 127.0.0.1:3\n", 1);
	const struct route *a = routes_get(cur->cfg->routes, 0);
	const struct route *b = routes_get(cur->cfg->routes, 1);
	struct generation *next;

	ck_assert_int_eq(generation_refuses(a, cur, ipv4("10.0.0.1")), 0);
	next = load(BASE "deny = 10.0.0.9\n"
	    "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:2\nallow = 10.0.0.0/8\n"
	    "[b]\nvia = net.tcp://+/B\nbackend = 127.0.0.1:3\ndeny = 10.0.0.1\n", 2);
	/* the rules are not a backend or TLS change */
	ck_assert_int_eq(generation_policy_changed(a, next), 0);
	ck_assert_int_eq(generation_refuses(a, next, ipv4("10.0.0.1")), 0);
	ck_assert_int_eq(generation_refuses(a, next, ipv4("11.0.0.1")), 1);
	ck_assert_int_eq(generation_refuses(a, next, ipv4("10.0.0.9")), 1);
	ck_assert_int_eq(generation_refuses(b, next, ipv4("10.0.0.1")), 1);
	ck_assert_int_eq(generation_refuses(b, next, ipv4("11.0.0.1")), 0);
	ck_assert_int_eq(generation_refuses(b, next, ipv4("10.0.0.9")), 1);
	generation_unref(next);
	generation_unref(cur);
}
END_TEST

/* A backend list is policy for a pinned stream: its members, their order,
 * weights and backups; not how they are written, nor the balance or the
 * health settings. */
START_TEST(test_policy_change_by_backend_list)
{
	static const struct {
		const char *keys;
		int changed;
	} next_keys[] = {
		{ "backend = 127.0.0.1:2,127.0.0.1:3   weight=2", 0 },
		{ "backend = 127.0.0.1:2, 127.0.0.1:3 weight=2\nbalance = first\n"
		    "fail_threshold = 1\nfail_timeout = 1s", 0 },
		{ "backend = 127.0.0.1:2, 127.0.0.1:3", 1 },
		{ "backend = 127.0.0.1:3 weight=2, 127.0.0.1:2", 1 },
		{ "backend = 127.0.0.1:2, 127.0.0.1:3 weight=2 backup", 1 },
		{ "backend = 127.0.0.1:2, 127.0.0.1:3 weight=2, 127.0.0.1:4", 1 },
		{ "backend = 127.0.0.1:2", 1 },
	};
	struct generation *cur = load(BASE "[a]\nvia = net.tcp://+/A\n"
	    "backend = 127.0.0.1:2, 127.0.0.1:3 weight=2\n", 1);
	const struct route *a = routes_get(cur->cfg->routes, 0);
	char text[512];

	for (size_t i = 0; i < sizeof(next_keys) / sizeof(*next_keys); i++) {
		struct generation *next;

		snprintf(text, sizeof(text), BASE "[a]\nvia = net.tcp://+/A\n%s\n",
		    next_keys[i].keys);
		next = load(text, 2);
		ck_assert_msg(generation_policy_changed(a, next) ==
		    next_keys[i].changed, "%s", next_keys[i].keys);
		generation_unref(next);
	}
	generation_unref(cur);
}
END_TEST

static Suite *generation_suite(void)
{
	Suite *s = suite_create("generation");
	TCase *tc = tcase_create("generation");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_load_number_and_refs);
	tcase_add_test(tc, test_broken_file_gives_no_generation);
	tcase_add_test(tc, test_what_a_reload_may_change);
	tcase_add_test(tc, test_policy_change_by_route);
	tcase_add_test(tc, test_refused_by_the_next_rules);
	tcase_add_test(tc, test_policy_change_by_backend_list);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(generation_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
