/*
 * check_ratelimit.c - unit tests for the limiter of per-client log lines:
 * the burst at its bound, the count held back reported once, the next
 * window, and events passed plus events counted adding up.
 */
#include <check.h>
#include <stdlib.h>

#include "ratelimit.h"

START_TEST(test_burst_then_held_back)
{
	struct ratelimit rl;
	unsigned ended = 99;

	ratelimit_init(&rl, 3, 1.0);
	ck_assert_int_eq(ratelimit_end(&rl, 100.0), 0);      /* no window yet */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(ratelimit_pass(&rl, 100.0 + i * 0.1, &ended), 1);
		ck_assert_uint_eq(ended, 0);
	}
	ck_assert_int_eq(ratelimit_pass(&rl, 100.5, &ended), 0);
	ck_assert_int_eq(ratelimit_pass(&rl, 100.999, &ended), 0);
	ck_assert_double_eq(ratelimit_window_end(&rl), 101.0);
	/* before the window's end nothing is reported */
	ck_assert_uint_eq(ratelimit_end(&rl, 100.9999), 0);
	/* at its end, the count once */
	ck_assert_uint_eq(ratelimit_end(&rl, 101.0), 2);
	ck_assert_uint_eq(ratelimit_end(&rl, 101.5), 0);
	/* a new window passes a burst again */
	ck_assert_int_eq(ratelimit_pass(&rl, 102.0, &ended), 1);
	ck_assert_uint_eq(ended, 0);
}
END_TEST

START_TEST(test_next_event_reports_the_window_before)
{
	struct ratelimit rl;
	unsigned ended;

	ratelimit_init(&rl, 1, 1.0);
	ck_assert_int_eq(ratelimit_pass(&rl, 10.0, &ended), 1);
	ck_assert_int_eq(ratelimit_pass(&rl, 10.2, &ended), 0);
	ck_assert_int_eq(ratelimit_pass(&rl, 10.4, &ended), 0);
	/* the timer has not run yet: the next event reports the old window */
	ck_assert_int_eq(ratelimit_pass(&rl, 11.3, &ended), 1);
	ck_assert_uint_eq(ended, 2);
	ck_assert_double_eq(ratelimit_window_end(&rl), 12.3);
	ck_assert_uint_eq(ratelimit_end(&rl, 12.3), 0);   /* nothing held */
}
END_TEST

START_TEST(test_passed_plus_held_is_every_event)
{
	struct ratelimit rl;
	unsigned ended, passed = 0, counted = 0;
	double t = 0;

	ratelimit_init(&rl, 20, 1.0);
	for (int i = 0; i < 100000; i++) {
		t += 0.0001 * (i % 7);
		passed += (unsigned)ratelimit_pass(&rl, t, &ended);
		counted += ended;
		if (i % 1000 == 0)
			counted += ratelimit_end(&rl, t);
	}
	counted += ratelimit_end(&rl, t + 1.0);
	ck_assert_uint_eq(passed + counted, 100000);
	/* about 20 a second over about 30 s */
	ck_assert_uint_le(passed, 20 * ((unsigned)t + 2));
}
END_TEST

static Suite *ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("ratelimit");

	tcase_add_test(tc, test_burst_then_held_back);
	tcase_add_test(tc, test_next_event_reports_the_window_before);
	tcase_add_test(tc, test_passed_plus_held_is_every_event);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ratelimit_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
