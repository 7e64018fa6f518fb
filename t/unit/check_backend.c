/*
 * check_backend.c - unit tests for backend lists: the syntax and its
 * errors, the balance (weights over 1,000 picks, backups, leastconn,
 * first), failover order, and passive health on a fake clock.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

static struct backend_list
parse_ok(const char *text, const char *route)
{
	struct backend_list l;
	char err[256];

	if (backend_list_parse(text, &l, err, sizeof(err)) < 0)
		ck_abort_msg("'%s': %s", text, err);
	ck_assert_int_eq(backend_bind(&l, route), 0);
	return l;
}

static void
parse_bad(const char *text, const char *want)
{
	struct backend_list l;
	char err[256];

	ck_assert_msg(backend_list_parse(text, &l, err, sizeof(err)) < 0,
	    "'%s' was accepted", text);
	ck_assert_msg(strstr(err, want) != NULL, "'%s': '%s' lacks '%s'", text,
	    err, want);
	ck_assert_uint_eq(l.n, 0);
}

START_TEST(test_syntax)
{
	struct backend_list l = parse_ok(" 10.0.0.5:9001 ,[::1]:9002 weight=2,"
	    "10.0.0.7:9001  backup   weight=3 ", "syntax");

	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.m[0].text, "10.0.0.5:9001");
	ck_assert_uint_eq(l.m[0].weight, 1);
	ck_assert_str_eq(l.m[1].text, "[::1]:9002");
	ck_assert_uint_eq(l.m[1].weight, 2);
	ck_assert(!l.m[1].backup);
	ck_assert(l.m[2].backup);
	ck_assert_uint_eq(l.m[2].weight, 3);
	ck_assert_uint_eq(l.fail_threshold, BACKEND_DEFAULT_FAIL_THRESHOLD);
	ck_assert_int_eq(l.balance, BALANCE_ROUNDROBIN);
	backend_list_free(&l);

	parse_bad("", "empty member");
	parse_bad("10.0.0.5:1,", "empty member");
	parse_bad(",10.0.0.5:1", "empty member");
	parse_bad("10.0.0.5", "bad backend member '10.0.0.5'");
	parse_bad("10.0.0.5:1 weight=0", "bad weight '0'");
	parse_bad("10.0.0.5:1 weight=257", "bad weight '257'");
	parse_bad("10.0.0.5:1 weight=", "unknown option 'weight='");
	parse_bad("10.0.0.5:1 weight=2x", "bad weight '2x'");
	parse_bad("10.0.0.5:1 weight=-1", "bad weight '-1'");
	parse_bad("10.0.0.5:1 weight=99999999999999999999", "bad weight");
	parse_bad("10.0.0.5:1 Backup", "unknown option 'Backup'");
	parse_bad("10.0.0.5:1 backup", "every member is a backup");
	parse_bad("10.0.0.5:1, 10.0.0.5:1 backup", "duplicate member '10.0.0.5:1'");
	parse_bad("10.0.0.5:1, [::ffff:10.0.0.5]:1, 10.0.0.5:01",
	    "duplicate member '10.0.0.5:01'");
}
END_TEST

START_TEST(test_too_many_members)
{
	char text[64 * 24];
	size_t len = 0;
	struct backend_list l;
	char err[256];

	for (unsigned i = 0; i < BACKEND_MAX_MEMBERS; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
		    "%s10.0.0.1:%u", i ? "," : "", 1000 + i);
	l = parse_ok(text, "many");
	ck_assert_uint_eq(l.n, BACKEND_MAX_MEMBERS);
	backend_list_free(&l);
	snprintf(text + len, sizeof(text) - len, ",10.0.0.1:9");
	ck_assert_int_lt(backend_list_parse(text, &l, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "more than 64 members"));
}
END_TEST

/* Weights 1, 2, 5 over 1,000 picks: each share within 5 %, and the order
 * smooth (no member twice in a row but the heaviest). */
START_TEST(test_weights_over_1000_picks)
{
	struct backend_list l = parse_ok("10.0.0.1:1 weight=1, 10.0.0.2:1 "
	    "weight=2, 10.0.0.3:1 weight=5, 10.0.0.4:1 backup", "weights");
	unsigned count[4] = { 0 };
	int last = -1;

	for (int k = 0; k < 1000; k++) {
		int i = backend_pick(&l, 0, 0);

		ck_assert_int_ge(i, 0);
		ck_assert_int_lt(i, 3);
		if (i == last)
			ck_assert_int_eq(i, 2);
		last = i;
		count[i]++;
	}
	ck_assert_uint_eq(count[3], 0);
	ck_assert_uint_le(abs((int)count[0] - 125), 50);
	ck_assert_uint_le(abs((int)count[1] - 250), 50);
	ck_assert_uint_le(abs((int)count[2] - 625), 50);
	backend_list_free(&l);
}
END_TEST

/* Passive health on a fake clock (milliseconds): down after
 * fail_threshold failures in a row, skipped for fail_timeout, tried again
 * after it, up on a success, down again at once if the retry fails. */
START_TEST(test_passive_health)
{
	struct backend_list l = parse_ok("10.0.0.1:1, 10.0.0.2:1", "passive");
	struct backend_health *h = l.m[0].health;
	int64_t now = 1000000;
	int k;

	l.fail_threshold = 2;
	l.fail_timeout = 10.0;
	backend_failed(&l, 0, now);
	ck_assert_uint_eq(h->down, 0);
	backend_connected(&l, 0, 0.001);     /* a success resets the count */
	backend_failed(&l, 0, now);
	ck_assert_uint_eq(h->down, 0);
	backend_failed(&l, 0, now);
	ck_assert_uint_eq(h->down, 1);
	ck_assert_uint_eq(h->connect_failures, 3);
	for (k = 0; k < 10; k++)
		ck_assert_int_eq(backend_pick(&l, 0, now + 9999), 1);
	/* after fail_timeout the next client tries it */
	for (k = 0; k < 4 && backend_pick(&l, 0, now + 10000) != 0; k++)
		;
	ck_assert_int_lt(k, 4);
	backend_failed(&l, 0, now + 10000);  /* the retry fails: skipped anew */
	ck_assert_uint_eq(h->down, 1);
	for (k = 0; k < 10; k++)
		ck_assert_int_eq(backend_pick(&l, 0, now + 19999), 1);
	backend_connected(&l, 0, -1);        /* a pooled one counts */
	ck_assert_uint_eq(h->down, 0);
	ck_assert_uint_eq(h->fails, 0);
	ck_assert_uint_eq(h->connect_seconds.count, 1);
	backend_list_free(&l);
}
END_TEST

/* Failover order: each member once, then -1; every member skipped: the
 * one that comes back first is tried all the same. */
START_TEST(test_failover_and_all_down)
{
	struct backend_list l = parse_ok("10.0.0.1:1, 10.0.0.2:1, "
	    "10.0.0.3:1 backup", "failover");
	uint64_t tried = 0;
	int i, k;

	for (k = 0; k < 3; k++) {
		i = backend_pick(&l, tried, 0);
		ck_assert_int_ge(i, 0);
		ck_assert(!(tried >> i & 1));
		if (k < 2)
			ck_assert(!l.m[i].backup);  /* primaries first */
		tried |= UINT64_C(1) << i;
	}
	ck_assert_int_eq(backend_pick(&l, tried, 0), -1);

	l.fail_threshold = 1;
	backend_failed(&l, 1, 100);
	backend_failed(&l, 0, 200);
	/* primaries down: the backup serves */
	for (k = 0; k < 5; k++)
		ck_assert_int_eq(backend_pick(&l, 0, 300), 2);
	backend_failed(&l, 2, 50);
	/* all down: the one whose fail_timeout ends first */
	ck_assert_int_eq(backend_pick(&l, 0, 300), 2);
	ck_assert_int_eq(backend_pick(&l, UINT64_C(1) << 2, 300), 1);
	backend_list_free(&l);
}
END_TEST

START_TEST(test_leastconn_and_first)
{
	struct backend_list l = parse_ok("10.0.0.1:1, 10.0.0.2:1 weight=2, "
	    "10.0.0.3:1", "leastconn");
	int k;

	l.balance = BALANCE_LEASTCONN;
	backend_hold(&l, 0);
	backend_hold(&l, 1);
	backend_hold(&l, 1);
	for (k = 0; k < 5; k++)
		ck_assert_int_eq(backend_pick(&l, 0, 0), 2);
	backend_hold(&l, 2);
	backend_hold(&l, 2);
	/* 1 session per weight on the first two, 2 on the third */
	for (k = 0; k < 6; k++)
		ck_assert_int_ne(backend_pick(&l, 0, 0), 2);
	backend_release(&l, 2);
	backend_release(&l, 2);
	ck_assert_uint_eq(l.m[2].health->active, 0);
	l.balance = BALANCE_FIRST;
	for (k = 0; k < 5; k++)
		ck_assert_int_eq(backend_pick(&l, 0, 0), 0);
	ck_assert_int_eq(backend_pick(&l, 1, 0), 1);
	backend_mark(l.m[0].health, 0, "checked");
	ck_assert_int_eq(backend_pick(&l, 0, INT64_MAX - 1), 1);
	backend_mark(l.m[0].health, 1, "checked");
	ck_assert_int_eq(backend_pick(&l, 0, 0), 0);
	backend_list_free(&l);
}
END_TEST

/* The same route and member share one record across reloads; another
 * route's is its own. */
START_TEST(test_records_by_route_and_member)
{
	struct backend_list a = parse_ok("10.0.0.1:1", "orders");
	struct backend_list b = parse_ok("10.0.0.2:1, 10.0.0.1:1", "orders");
	struct backend_list c = parse_ok("10.0.0.1:1", "billing");

	ck_assert_ptr_eq(a.m[0].health, b.m[1].health);
	ck_assert_ptr_ne(a.m[0].health, c.m[0].health);
	ck_assert(!backend_list_equal(&a, &b));
	ck_assert(backend_list_equal(&a, &c));
	backend_list_free(&a);
	backend_list_free(&b);
	backend_list_free(&c);
	backend_registry_free();
}
END_TEST

static Suite *backend_suite(void)
{
	Suite *s = suite_create("backend");
	TCase *tc = tcase_create("backend");

	tcase_add_test(tc, test_syntax);
	tcase_add_test(tc, test_too_many_members);
	tcase_add_test(tc, test_weights_over_1000_picks);
	tcase_add_test(tc, test_passive_health);
	tcase_add_test(tc, test_failover_and_all_down);
	tcase_add_test(tc, test_leastconn_and_first);
	tcase_add_test(tc, test_records_by_route_and_member);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(backend_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
