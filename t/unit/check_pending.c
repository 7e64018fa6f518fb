/*
 * check_pending.c - unit tests for the choice of the preamble that gives
 * way at max_pending: by source (IPv4 /32, IPv6 /64, mapped IPv4 as IPv4),
 * the oldest of the source holding the most, ties to the source holding
 * that many longest; owners' queues; many distinct sources.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pending.h"

#define MANY 20000

static struct pending_table table;
static struct pending_owner owner_a, owner_b;
static struct pending_entry *entries;   /* MANY of them: off check's stack */

static void setup(void)
{
	ck_assert_int_eq(pending_init(&table), 0);
	memset(&owner_a, 0, sizeof(owner_a));
	memset(&owner_b, 0, sizeof(owner_b));
	entries = calloc(MANY, sizeof(*entries));
	ck_assert_ptr_nonnull(entries);
}

static void teardown(void)
{
	pending_destroy(&table);
	free(entries);
}

/* Count entries[i] under the address text (IPv4 or IPv6). */
static void add(int i, struct pending_owner *o, const char *text)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, text, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		pending_add(&table, &entries[i], o, (struct sockaddr *)&sin);
		return;
	}
	ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
	sin6.sin6_family = AF_INET6;
	pending_add(&table, &entries[i], o, (struct sockaddr *)&sin6);
}

/* The index of the entry chosen at limit, taken from its owner's queue. */
static int choose(unsigned limit)
{
	struct pending_owner *o = pending_choose(&table, limit);
	struct pending_entry *e;

	if (o == NULL)
		return -1;
	e = pending_next_doomed(&table, o);
	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_null(pending_next_doomed(&table, o));
	return (int)(e - entries);
}

START_TEST(test_under_the_limit_nothing_gives_way)
{
	add(0, &owner_a, "192.0.2.1");
	add(1, &owner_a, "192.0.2.2");
	ck_assert_uint_eq(pending_counted(&table), 2);
	ck_assert_ptr_null(pending_choose(&table, 2));
	ck_assert_int_eq(choose(1), 0);
	ck_assert_uint_eq(pending_counted(&table), 1);
}
END_TEST

START_TEST(test_one_source_gives_way_oldest_first)
{
	for (int i = 0; i < 5; i++)
		add(i, &owner_a, "192.0.2.7");
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(choose(0), i);
	ck_assert_int_eq(choose(0), -1);
}
END_TEST

/* Today's flood: good clients' preambles are the oldest, yet the
 * flooder's give way, its oldest first. */
START_TEST(test_the_source_holding_most_gives_way)
{
	char text[32];

	for (int i = 0; i < 8; i++) {
		snprintf(text, sizeof(text), "198.51.100.%d", i + 1);
		add(i, &owner_a, text);
	}
	for (int i = 8; i < 20; i++)
		add(i, &owner_a, "203.0.113.9");
	for (int i = 8; i < 19; i++)
		ck_assert_int_eq(choose(8), i);
	/* then each holds one: the one holding one longest, entry 0 */
	ck_assert_int_eq(choose(8), 0);
}
END_TEST

START_TEST(test_ties_go_to_the_source_holding_that_many_longest)
{
	add(0, &owner_a, "192.0.2.1");
	add(1, &owner_a, "192.0.2.2");
	add(2, &owner_a, "192.0.2.2");   /* .2 holds 2 */
	add(3, &owner_a, "192.0.2.1");   /* .1 holds 2 since now */
	ck_assert_int_eq(choose(3), 1);  /* .2 held 2 longest */
	/* .2 holds 1 (since now), .1 holds 2 */
	ck_assert_int_eq(choose(2), 0);
	/* both hold 1: .2 since before .1 */
	ck_assert_int_eq(choose(1), 2);
	ck_assert_int_eq(choose(0), 3);
}
END_TEST

START_TEST(test_ipv4_is_per_address)
{
	add(0, &owner_a, "192.0.2.1");
	add(1, &owner_a, "192.0.2.2");
	add(2, &owner_a, "192.0.2.2");
	ck_assert_int_eq(choose(2), 1);   /* .2 holds more: not one /24 */
}
END_TEST

START_TEST(test_ipv6_is_per_slash64)
{
	add(0, &owner_a, "2001:db8:0:1::1");
	add(1, &owner_a, "2001:db8:0:2::1");
	add(2, &owner_a, "2001:db8:0:1::2");
	add(3, &owner_a, "2001:db8:0:1:ffff:ffff:ffff:ffff");
	/* 2001:db8:0:1::/64 holds three, whatever their /128s */
	ck_assert_int_eq(choose(3), 0);
	ck_assert_int_eq(choose(2), 2);
	/* both hold one: 2001:db8:0:2::/64 since before */
	ck_assert_int_eq(choose(1), 1);
	ck_assert_int_eq(choose(0), 3);
}
END_TEST

START_TEST(test_mapped_ipv4_is_its_ipv4_address)
{
	add(0, &owner_a, "192.0.2.1");
	add(1, &owner_a, "::ffff:192.0.2.2");
	add(2, &owner_a, "192.0.2.2");
	add(3, &owner_a, "::ffff:192.0.2.3");
	add(4, &owner_a, "::ffff:192.0.2.4");  /* its own, not one /64 */
	ck_assert_int_eq(choose(4), 1);        /* 192.0.2.2 holds two */
	ck_assert_int_eq(choose(3), 0);
}
END_TEST

START_TEST(test_chosen_for_its_owner)
{
	struct pending_owner *o;

	add(0, &owner_a, "192.0.2.1");
	add(1, &owner_b, "192.0.2.1");
	add(2, &owner_b, "192.0.2.1");
	add(3, &owner_a, "192.0.2.9");
	ck_assert_ptr_eq(pending_choose(&table, 2), &owner_a);
	ck_assert_ptr_eq(pending_choose(&table, 2), &owner_b);
	ck_assert_ptr_null(pending_choose(&table, 2));
	ck_assert_ptr_eq(pending_next_doomed(&table, &owner_a), &entries[0]);
	ck_assert_ptr_null(pending_next_doomed(&table, &owner_a));
	/* a queued one that ends before its owner takes it leaves the queue */
	pending_remove(&table, &entries[1]);
	ck_assert_ptr_null(pending_next_doomed(&table, &owner_b));
	/* taken, then over: removing it again changes nothing */
	pending_remove(&table, &entries[0]);
	ck_assert_uint_eq(pending_counted(&table), 2);
	/* both hold one: 192.0.2.9 since before 192.0.2.1 */
	o = pending_choose(&table, 1);
	ck_assert_ptr_eq(o, &owner_a);
	ck_assert_ptr_eq(pending_next_doomed(&table, o), &entries[3]);
}
END_TEST

START_TEST(test_removed_ones_no_longer_count)
{
	for (int i = 0; i < 4; i++)
		add(i, &owner_a, "192.0.2.1");
	add(4, &owner_a, "192.0.2.2");
	add(5, &owner_a, "192.0.2.2");
	pending_remove(&table, &entries[0]);   /* routed */
	pending_remove(&table, &entries[2]);
	ck_assert_uint_eq(pending_counted(&table), 4);
	/* both hold two; .2 has held two longest */
	ck_assert_int_eq(choose(3), 4);
	ck_assert_int_eq(choose(2), 1);
}
END_TEST

/* Many distinct sources, then one flooder among them: the table grows,
 * the flooder still gives way first, and everything empties; the second
 * round reuses the sources freed by the first. */
START_TEST(test_many_sources)
{
	char text[64];

	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < MANY / 2; i++) {
			snprintf(text, sizeof(text), "2001:db8:%x:%x::1", i >> 8, i & 0xff);
			add(i, &owner_a, text);
		}
		for (int i = MANY / 2; i < MANY; i++)
			add(i, &owner_b, "10.0.0.1");
		for (int i = MANY / 2; i < MANY - 1; i++)
			ck_assert_int_eq(choose(MANY / 2), i);
		/* the flooder holds one now, since after all the others */
		for (int i = 0; i < MANY / 2; i++)
			ck_assert_int_eq(choose(0), i);
		ck_assert_int_eq(choose(0), MANY - 1);
		ck_assert_uint_eq(pending_counted(&table), 0);
		ck_assert_uint_eq(table.nsources, 0);
		ck_assert_uint_eq(table.max, 0);
	}
}
END_TEST

static Suite *pending_suite(void)
{
	Suite *s = suite_create("pending");
	TCase *tc = tcase_create("pending");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_under_the_limit_nothing_gives_way);
	tcase_add_test(tc, test_one_source_gives_way_oldest_first);
	tcase_add_test(tc, test_the_source_holding_most_gives_way);
	tcase_add_test(tc, test_ties_go_to_the_source_holding_that_many_longest);
	tcase_add_test(tc, test_ipv4_is_per_address);
	tcase_add_test(tc, test_ipv6_is_per_slash64);
	tcase_add_test(tc, test_mapped_ipv4_is_its_ipv4_address);
	tcase_add_test(tc, test_chosen_for_its_owner);
	tcase_add_test(tc, test_removed_ones_no_longer_count);
	tcase_add_test(tc, test_many_sources);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pending_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
