/*
 * check_routes.c - unit tests for the route table: which route a Via
 * reaches, as WCF's UriPrefixTable under SMSvcHost would decide it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

static struct route_table *table;
/* struct via is several KiB: keep it off check's stack. */
static struct via parsed;

static void setup(void)
{
	table = routes_new();
	ck_assert_ptr_nonnull(table);
}

static void teardown(void)
{
	routes_unref(table);
	table = NULL;
}

static int add_route(const char *name)
{
	struct addr backend;
	int ri;

	memset(&backend, 0, sizeof backend);
	ri = routes_add_route(table, name, &backend, "127.0.0.1:9000");
	ck_assert_int_ge(ri, 0);
	return ri;
}

/* Add prefix to route ri; returns routes_add_prefix()'s answer. */
static int add_prefix(int ri, const char *prefix, int *other_route)
{
	const char *why = NULL;

	ck_assert_msg(via_parse(prefix, strlen(prefix), VIA_ALLOW_WILDCARD,
	    &parsed, &why) == 0, "%s: %s", prefix, why);
	return routes_add_prefix(table, ri, &parsed, other_route);
}

/* A route with one prefix, named after the prefix. */
static void add(const char *prefix)
{
	ck_assert_int_eq(add_prefix(add_route(prefix), prefix, NULL), 0);
}

/* The name of the route a Via arriving on local_port reaches, or NULL. */
static const char *lookup(const char *via, uint16_t local_port)
{
	const char *why = NULL;
	const struct route *r;

	ck_assert_msg(via_parse(via, strlen(via), 0, &parsed, &why) == 0,
	    "%s: %s", via, why);
	r = routes_lookup(table, &parsed, local_port);
	return r ? r->name : NULL;
}

#define ck_route(via, local_port, expected) \
	ck_assert_pstr_eq(lookup((via), (local_port)), (expected))

START_TEST(test_longest_prefix)
{
	add("net.tcp://+/A");
	add("net.tcp://+/A/B");
	add("net.tcp://+/A/B/C/D");

	ck_route("net.tcp://h/A", 808, "net.tcp://+/A");
	ck_route("net.tcp://h/A/x", 808, "net.tcp://+/A");
	ck_route("net.tcp://h/A/B", 808, "net.tcp://+/A/B");
	ck_route("net.tcp://h/A/B/C", 808, "net.tcp://+/A/B");
	ck_route("net.tcp://h/A/B/C/D/E/F", 808, "net.tcp://+/A/B/C/D");
	ck_route("net.tcp://h/B/A", 808, NULL);
	ck_route("net.tcp://h/", 808, NULL);
}
END_TEST

START_TEST(test_whole_segments)
{
	add("net.tcp://+/Service1");

	ck_route("net.tcp://h/Service1", 808, "net.tcp://+/Service1");
	ck_route("net.tcp://h/Service1/x", 808, "net.tcp://+/Service1");
	ck_route("net.tcp://h/service1/", 808, "net.tcp://+/Service1");
	ck_route("net.tcp://h/Service10", 808, NULL);
	ck_route("net.tcp://h/Service", 808, NULL);

	add("net.tcp://+/Service10");
	ck_route("net.tcp://h/Service10/y", 808, "net.tcp://+/Service10");
	ck_route("net.tcp://h/Service1/y", 808, "net.tcp://+/Service1");
}
END_TEST

START_TEST(test_case_insensitive)
{
	add("net.tcp://+/MyApp/Svc");

	ck_route("net.tcp://HOST/myapp/SVC", 808, "net.tcp://+/MyApp/Svc");
	ck_route("NET.TCP://host/MYAPP/svc/Op", 808, "net.tcp://+/MyApp/Svc");
	ck_route("net.tcp://host/%4dyApp/Svc", 808, "net.tcp://+/MyApp/Svc");
}
END_TEST

START_TEST(test_trailing_and_doubled_slashes)
{
	add("net.tcp://+/MyApp/Svc/");

	ck_route("net.tcp://h//MyApp//Svc//", 808, "net.tcp://+/MyApp/Svc/");
	ck_route("net.tcp://h/MyApp/Svc", 808, "net.tcp://+/MyApp/Svc/");
	ck_route("net.tcp://h/MyApp\\Svc\\", 808, "net.tcp://+/MyApp/Svc/");
	/* A doubled slash is no segment: "//Svc" does not sit under MyApp. */
	ck_route("net.tcp://h/MyApp/Other//Svc", 808, NULL);
}
END_TEST

START_TEST(test_class_order)
{
	add("net.tcp://*/A/B/C");
	add("net.tcp://host/A/B");
	add("net.tcp://+/A");

	/* The first class with a match decides, however shallow its match. */
	ck_route("net.tcp://host/A/B/C", 808, "net.tcp://+/A");
	ck_route("net.tcp://other/A/B/C/D", 808, "net.tcp://+/A");
	ck_route("net.tcp://host/X", 808, NULL);
}
END_TEST

START_TEST(test_exact_before_weak)
{
	add("net.tcp://*/A/B/C");
	add("net.tcp://host/A/B");

	ck_route("net.tcp://host/A/B/C", 808, "net.tcp://host/A/B");
	ck_route("net.tcp://HOST/a/b/c", 808, "net.tcp://host/A/B");
	/* Another host misses the exact class and falls to the weak one. */
	ck_route("net.tcp://other/A/B/C", 808, "net.tcp://*/A/B/C");
	ck_route("net.tcp://other/A/B", 808, NULL);
	ck_route("net.tcp://host.example/A/B", 808, NULL);
}
END_TEST

START_TEST(test_strong_shallow_beats_exact_deep)
{
	add("net.tcp://host/A/B");
	add("net.tcp://+/A");

	ck_route("net.tcp://host/A/B", 808, "net.tcp://+/A");
	ck_route("net.tcp://host/A/B/C", 808, "net.tcp://+/A");
}
END_TEST

START_TEST(test_exact_host)
{
	add("net.tcp://Backend.Example.COM/A");
	add("net.tcp://[::1]/A");
	add("net.tcp://10.0.0.1/A");
	add("net.tcp://*/");

	ck_route("net.tcp://backend.example.com/a", 808,
	    "net.tcp://Backend.Example.COM/A");
	ck_route("net.tcp://BACKEND.example.com:808/A/x", 808,
	    "net.tcp://Backend.Example.COM/A");
	ck_route("net.tcp://[0:0::1]:9000/A", 808, "net.tcp://[::1]/A");
	ck_route("net.tcp://10.0.0.1/A", 808, "net.tcp://10.0.0.1/A");
	ck_route("net.tcp://10.0.0.2/A", 808, "net.tcp://*/");
	ck_route("net.tcp://backend/A", 808, "net.tcp://*/");
	ck_route("net.tcp://backend.example.com/B", 808, "net.tcp://*/");
}
END_TEST

START_TEST(test_port_is_local_port)
{
	add("net.tcp://+:9000/A");

	ck_route("net.tcp://h:808/A", 9000, "net.tcp://+:9000/A");
	ck_route("net.tcp://h/A", 9000, "net.tcp://+:9000/A");
	ck_route("net.tcp://h:12345/A/b", 9000, "net.tcp://+:9000/A");
	/* The Via names port 9000, but the connection came in on 808. */
	ck_route("net.tcp://h:9000/A", 808, NULL);
}
END_TEST

START_TEST(test_port_in_every_class)
{
	add("net.tcp://host:9000/A");
	add("net.tcp://*:9001/A");

	ck_route("net.tcp://host:808/A", 9000, "net.tcp://host:9000/A");
	ck_route("net.tcp://host:9000/A", 808, NULL);
	ck_route("net.tcp://other/A", 9001, "net.tcp://*:9001/A");
	ck_route("net.tcp://other:9001/A", 9000, NULL);
	/* The exact host misses on 9001 and the weak route takes it. */
	ck_route("net.tcp://host/A", 9001, "net.tcp://*:9001/A");
}
END_TEST

START_TEST(test_portless_applies_everywhere)
{
	add("net.tcp://+/A");

	ck_route("net.tcp://h/A", 808, "net.tcp://+/A");
	ck_route("net.tcp://h/A", 9000, "net.tcp://+/A");
	ck_route("net.tcp://h:1/A", 65535, "net.tcp://+/A");
}
END_TEST

START_TEST(test_port_beats_portless_at_equal_depth)
{
	add("net.tcp://+/A");
	add("net.tcp://+:9000/A");

	ck_route("net.tcp://h/A", 9000, "net.tcp://+:9000/A");
	ck_route("net.tcp://h/A/x", 9000, "net.tcp://+:9000/A");
	ck_route("net.tcp://h/A", 808, "net.tcp://+/A");
	ck_route("net.tcp://h:9000/A", 808, "net.tcp://+/A");
}
END_TEST

START_TEST(test_deeper_portless_beats_shallower_ported)
{
	add("net.tcp://+:9000/A");
	add("net.tcp://+/A/B");

	ck_route("net.tcp://h/A/B", 9000, "net.tcp://+/A/B");
	ck_route("net.tcp://h/A/B/C", 9000, "net.tcp://+/A/B");
	ck_route("net.tcp://h/A/C", 9000, "net.tcp://+:9000/A");
	ck_route("net.tcp://h/A/C", 808, NULL);
}
END_TEST

START_TEST(test_root_prefix)
{
	add("net.tcp://+/");

	ck_route("net.tcp://h", 808, "net.tcp://+/");
	ck_route("net.tcp://h/", 808, "net.tcp://+/");
	ck_route("net.tcp://h/anything/at/all", 9000, "net.tcp://+/");

	add("net.tcp://+/A");
	ck_route("net.tcp://h/A/x", 808, "net.tcp://+/A");
	ck_route("net.tcp://h/B/x", 808, "net.tcp://+/");
}
END_TEST

START_TEST(test_root_prefix_per_class)
{
	add("net.tcp://host");
	add("net.tcp://*:9000");

	ck_route("net.tcp://host/x/y", 808, "net.tcp://host");
	ck_route("net.tcp://other/x/y", 808, NULL);
	ck_route("net.tcp://other/x/y", 9000, "net.tcp://*:9000");
	ck_route("net.tcp://host/x/y", 9000, "net.tcp://host");
}
END_TEST

START_TEST(test_duplicates)
{
	int r1 = add_route("one"), r2 = add_route("two"), other = -1;

	ck_assert_int_eq(add_prefix(r1, "net.tcp://+/A", NULL), 0);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://+/a/", &other), -2);
	ck_assert_int_eq(other, r1);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://+/A/../A", NULL), -2);
	ck_assert_int_eq(add_prefix(r1, "net.tcp://+/A", &other), -2);
	ck_assert_int_eq(other, r1);

	/* Another port, class, host or depth is another prefix. */
	ck_assert_int_eq(add_prefix(r2, "net.tcp://+:9000/A", NULL), 0);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://*/A", NULL), 0);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://host/A", NULL), 0);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://other/A", NULL), 0);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://+/A/B", NULL), 0);
	ck_assert_int_eq(add_prefix(r2, "net.tcp://+", NULL), 0);

	ck_assert_int_eq(add_prefix(r1, "net.tcp://HOST/a", &other), -2);
	ck_assert_int_eq(other, r2);
	ck_assert_int_eq(add_prefix(r1, "net.tcp://+:9000/A/", &other), -2);
	ck_assert_int_eq(other, r2);
	ck_assert_int_eq(add_prefix(r1, "net.tcp://+/", &other), -2);
	ck_assert_int_eq(other, r2);
	/* The port in a route is compared as a number. */
	ck_assert_int_eq(add_prefix(r1, "net.tcp://+:09000/A", &other), -2);

	/* The first holder keeps the prefix. */
	ck_route("net.tcp://h/A", 808, "one");
}
END_TEST

START_TEST(test_no_match)
{
	ck_route("net.tcp://h/A", 808, NULL);
	ck_route("net.tcp://h", 808, NULL);

	add("net.tcp://+/A/B");
	add("net.tcp://host/C");
	ck_route("net.tcp://h/A", 808, NULL);
	ck_route("net.tcp://h/C", 808, NULL);
	ck_route("net.tcp://h/AB", 808, NULL);
}
END_TEST

START_TEST(test_several_prefixes_per_route)
{
	int ri = add_route("multi");

	ck_assert_int_eq(add_prefix(ri, "net.tcp://+/A", NULL), 0);
	ck_assert_int_eq(add_prefix(ri, "net.tcp://*/B/C", NULL), 0);
	ck_route("net.tcp://h/A/x", 808, "multi");
	ck_route("net.tcp://h/B/C", 808, "multi");
	ck_route("net.tcp://h/B", 808, NULL);
}
END_TEST

START_TEST(test_deep_via)
{
	static char via[NMF_MAX_VIA + 1];
	size_t i, len = strlen("net.tcp://h");

	add("net.tcp://+/a/a/a");
	memcpy(via, "net.tcp://h", len);
	for (i = 0; i < VIA_MAX_SEGMENTS; i++) {
		via[len++] = '/';
		via[len++] = 'a';
	}
	via[len] = '\0';
	ck_route(via, 808, "net.tcp://+/a/a/a");
}
END_TEST

START_TEST(test_routes_kept)
{
	struct addr backend;
	const struct route *r;
	int ri;

	memset(&backend, 0, sizeof backend);
	backend.len = sizeof backend.ss;
	backend.ss.ss_family = AF_INET;
	ri = routes_add_route(table, "svc", &backend, "10.0.0.9:9000");
	ck_assert_int_eq(ri, 0);
	ck_assert_int_eq(add_route("other"), 1);
	ck_assert_uint_eq(routes_count(table), 2);

	r = routes_get(table, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "svc");
	ck_assert_str_eq(r->backend_text, "10.0.0.9:9000");
	ck_assert_uint_eq(r->backends.m[0].addr.len, sizeof backend.ss);
	ck_assert_int_eq(r->backends.m[0].addr.ss.ss_family, AF_INET);
	ck_assert_ptr_null(routes_get(table, 2));
}
END_TEST

START_TEST(test_refcount)
{
	struct route_table *t = routes_new();

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(routes_ref(t), t);
	routes_unref(t);
	/* Still alive: one reference left. */
	ck_assert_uint_eq(routes_count(t), 0);
	routes_unref(t);
	routes_unref(NULL);
}
END_TEST

#define MANY_ROUTES 10000

START_TEST(test_many_routes)
{
	char name[64], uri[128];
	int i, ri;

	for (i = 0; i < MANY_ROUTES; i++) {
		snprintf(name, sizeof name, "r%d", i);
		ri = add_route(name);
		ck_assert_int_eq(ri, i);
		snprintf(uri, sizeof uri, "net.tcp://+/Tenant%d/Svc%d", i / 100, i);
		ck_assert_int_eq(add_prefix(ri, uri, NULL), 0);
		if (i % 10 == 0) {
			snprintf(uri, sizeof uri, "net.tcp://host%d:9000/Tenant%d",
			    i / 10 % 10, i / 100);
			ck_assert_int_eq(add_prefix(ri, uri, NULL), 0);
		}
	}
	ck_assert_uint_eq(routes_count(table), MANY_ROUTES);

	for (i = 0; i < MANY_ROUTES; i++) {
		snprintf(name, sizeof name, "r%d", i);
		snprintf(uri, sizeof uri, "net.tcp://x/tenant%d/SVC%d/op", i / 100, i);
		ck_route(uri, 808, name);
		snprintf(uri, sizeof uri, "net.tcp://x/Tenant%d/Svc%dx", i / 100, i);
		ck_route(uri, 808, NULL);
		snprintf(uri, sizeof uri, "net.tcp://x/Tenant%d/Svc%d",
		    (i / 100 + 1) % (MANY_ROUTES / 100), i);
		ck_route(uri, 808, NULL);
	}

	/* The exact-host prefixes answer only when no strong one does. */
	ck_route("net.tcp://host0:1/Tenant0/Other", 9000, "r0");
	ck_route("net.tcp://host3:1/Tenant0/Other", 9000, "r30");
	ck_route("net.tcp://host10/Tenant0/Other", 9000, NULL);
	ck_route("net.tcp://host6/Tenant99/Other", 9000, "r9960");
	ck_route("net.tcp://host6/Tenant99/Svc9999", 9000, "r9999");
	ck_route("net.tcp://host6/Tenant99/Other", 808, NULL);
}
END_TEST

/* A registration's table (registry.c): a clone shares the routes and has
 * the prefixes; what is added to it is not in the original; the deepest
 * covering prefix gives the policy, of the same class, host and port. */
START_TEST(test_clone_and_covering)
{
	struct route_table *clone;
	const struct route *r, *cover;
	struct acl *deny = acl_new();
	char err[64];
	int ri, other = -1;

	add("net.tcp://+/A");
	add("net.tcp://+/A/B");
	add("net.tcp://h:9/A");
	ck_assert_ptr_nonnull(deny);
	ck_assert_int_eq(acl_add(deny, "10.0.0.0/8", err, sizeof(err)), 0);
	acl_compile(deny);
	routes_set_acl(table, 1, deny, NULL);

	clone = routes_clone(table);
	ck_assert_ptr_nonnull(clone);
	ck_assert_uint_eq(routes_count(clone), 3);
	ck_assert_uint_eq(routes_nprefixes(clone), 3);
	ck_assert_ptr_eq(routes_get(clone, 1), routes_get(table, 1));

	ck_assert(via_parse("net.tcp://+/a/b/c/", 18, VIA_ALLOW_WILDCARD,
	    &parsed, NULL) == 0);
	cover = routes_covering(clone, &parsed);
	ck_assert_pstr_eq(cover ? cover->name : NULL, "net.tcp://+/A/B");
	ri = routes_add_route(clone, "reg:1", &routes_get(table, 0)->backends.m[0].addr,
	    "127.0.0.1:9001");
	ck_assert_int_ge(ri, 0);
	ck_assert_int_eq(routes_set_registered(clone, ri, 1, cover), 0);
	ck_assert_int_eq(routes_add_prefix(clone, ri, &parsed, &other), 0);
	r = routes_get(clone, (size_t)ri);
	ck_assert_uint_eq(r->reg_id, 1);
	ck_assert(acl_equal(r->acl.deny, deny) && r->acl.deny != deny);

	/* the same prefix again is a conflict, naming the holder */
	ck_assert_int_eq(routes_add_prefix(clone, 0, &parsed, &other), -2);
	ck_assert_int_eq(other, ri);

	/* the clone routes the new prefix; the original does not */
	ck_assert(via_parse("net.tcp://x/A/B/C/d", 19, 0, &parsed, NULL) == 0);
	r = routes_lookup(clone, &parsed, 808);
	ck_assert_pstr_eq(r ? r->name : NULL, "reg:1");
	ck_route("net.tcp://x/A/B/C/d", 808, "net.tcp://+/A/B");

	/* covering needs the same class and host; a port-less route covers a
	 * prefix with a port, not the reverse */
	ck_assert(via_parse("net.tcp://h/A/x", 15, VIA_ALLOW_WILDCARD, &parsed,
	    NULL) == 0);
	ck_assert_ptr_null(routes_covering(clone, &parsed));
	ck_assert(via_parse("net.tcp://h:9/A/x", 17, VIA_ALLOW_WILDCARD, &parsed,
	    NULL) == 0);
	cover = routes_covering(clone, &parsed);
	ck_assert_pstr_eq(cover ? cover->name : NULL, "net.tcp://h:9/A");
	ck_assert(via_parse("net.tcp://+:9/A/B/x", 19, VIA_ALLOW_WILDCARD,
	    &parsed, NULL) == 0);
	cover = routes_covering(clone, &parsed);
	ck_assert_pstr_eq(cover ? cover->name : NULL, "net.tcp://+/A/B");
	/* the prefix itself is not its own cover */
	ck_assert(via_parse("net.tcp://+/A", 13, VIA_ALLOW_WILDCARD, &parsed,
	    NULL) == 0);
	ck_assert_ptr_null(routes_covering(clone, &parsed));

	/* the shared routes outlive either table */
	routes_unref(table);
	table = clone;
	ck_assert_str_eq(routes_get(table, 1)->name, "net.tcp://+/A/B");
}
END_TEST

static Suite *routes_suite(void)
{
	Suite *s = suite_create("routes");
	TCase *tc = tcase_create("lookup");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_longest_prefix);
	tcase_add_test(tc, test_whole_segments);
	tcase_add_test(tc, test_case_insensitive);
	tcase_add_test(tc, test_trailing_and_doubled_slashes);
	tcase_add_test(tc, test_class_order);
	tcase_add_test(tc, test_exact_before_weak);
	tcase_add_test(tc, test_strong_shallow_beats_exact_deep);
	tcase_add_test(tc, test_exact_host);
	tcase_add_test(tc, test_port_is_local_port);
	tcase_add_test(tc, test_port_in_every_class);
	tcase_add_test(tc, test_portless_applies_everywhere);
	tcase_add_test(tc, test_port_beats_portless_at_equal_depth);
	tcase_add_test(tc, test_deeper_portless_beats_shallower_ported);
	tcase_add_test(tc, test_root_prefix);
	tcase_add_test(tc, test_root_prefix_per_class);
	tcase_add_test(tc, test_duplicates);
	tcase_add_test(tc, test_no_match);
	tcase_add_test(tc, test_several_prefixes_per_route);
	tcase_add_test(tc, test_deep_via);
	tcase_add_test(tc, test_routes_kept);
	tcase_add_test(tc, test_refcount);
	tcase_add_test(tc, test_many_routes);
	tcase_add_test(tc, test_clone_and_covering);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(routes_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
