/*
 * check_stats.c - unit tests for what /metrics is built from: histogram
 * buckets at their bounds, route names keeping their slots, per-worker
 * route counters in chunks, and the exposition of summed workers.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "metrics.h"
#include "stats.h"

START_TEST(test_histogram_buckets_at_their_bounds)
{
	struct stat_hist h;

	memset(&h, 0, sizeof(h));
	stat_observe(&h, 0.00005);      /* on the first bound: le="5e-05" */
	stat_observe(&h, 0.00006);      /* above it: the next */
	stat_observe(&h, 10.0);         /* the last bound */
	stat_observe(&h, 11.0);         /* +Inf */
	stat_observe(&h, -1.0);         /* a clock step back counts as 0 */
	ck_assert_uint_eq(stat_read(&h.bucket[0]), 2);
	ck_assert_uint_eq(stat_read(&h.bucket[1]), 1);
	ck_assert_uint_eq(stat_read(&h.bucket[STAT_HIST_BUCKETS - 1]), 1);
	ck_assert_uint_eq(stat_read(&h.bucket[STAT_HIST_BUCKETS]), 1);
	ck_assert_uint_eq(stat_read(&h.count), 5);
	ck_assert_uint_eq(stat_read(&h.sum_ns), 50000 + 60000 + 10000000000ull +
	    11000000000ull);
}
END_TEST

START_TEST(test_route_names_keep_their_slots)
{
	char name[32];
	uint32_t first = stats_route_slot("orders"), slot;

	ck_assert_uint_ne(first, UINT32_MAX);
	/* 10,000 more names: the table grows, and no slot moves */
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "route%u", i);
		slot = stats_route_slot(name);
		ck_assert_uint_eq(slot, first + 1 + i);
	}
	ck_assert_uint_eq(stats_route_slot("orders"), first);
	ck_assert_uint_eq(stats_route_slot("route9999"), first + 10000);
	stats_route_names_free();
	ck_assert_uint_eq(stats_route_slot("route9999"), 0);
	stats_route_names_free();
}
END_TEST

START_TEST(test_route_counters_in_chunks)
{
	struct route_stats_table *t = calloc(1, sizeof(*t));
	struct route_stats *a, *b;

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_null(route_stats_peek(t, 5));
	a = route_stats_get(t, 5);
	b = route_stats_get(t, STATS_CHUNK * 3 + 1);
	stat_add(&a->sessions, 2);
	stat_add(&b->bytes_up, 7);
	ck_assert_ptr_eq(route_stats_get(t, 5), a);
	ck_assert_uint_eq(stat_read(&route_stats_peek(t, 5)->sessions), 2);
	ck_assert_uint_eq(stat_read(&route_stats_peek(t, STATS_CHUNK * 3 + 1)->bytes_up), 7);
	ck_assert_ptr_null(route_stats_peek(t, STATS_CHUNK));   /* chunk 1: never used */
	/* past the last chunk: one shared overflow slot, never a crash */
	ck_assert_ptr_eq(route_stats_get(t, STATS_CHUNK * STATS_MAX_CHUNKS), &t->overflow);
	route_stats_free(t);
	free(t);
}
END_TEST

/* The value of the sample line that starts with prefix, or -1. */
static double
sample(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while ((p = strstr(p, prefix)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

START_TEST(test_exposition_sums_the_workers)
{
	static struct worker w[2];      /* big: off the stack */
	struct limits limits = { .max_connections = 100 };
	struct process_stats ps = { .start_time = 1.5 };
	struct metrics_view v = { w, 2, &limits, &ps };
	uint32_t slot = stats_route_slot("we\"ird\\name");
	char *text;
	size_t len;

	memset(w, 0, sizeof(w));
	stat_add(&w[0].stats.accepted, 3);
	stat_add(&w[1].stats.accepted, 4);
	stat_add(&w[0].stats.finished[OUTCOME_FAULTED], 2);
	stat_add(&w[1].stats.faults[NMF_FAULT_ENDPOINT_NOT_FOUND], 5);
	stat_observe(&w[0].stats.route_seconds, 0.0002);
	stat_observe(&w[1].stats.route_seconds, 0.02);
	stat_add(&route_stats_get(&w[1].route_stats, slot)->bytes_down, 9);
	stat_add(&ps.reloads_failed, 1);
	text = metrics_format(&v, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(strlen(text), len);
	ck_assert(sample(text, "nettcpd_connections_accepted_total") == 7);
	ck_assert(sample(text, "nettcpd_connections_active") == 5);
	ck_assert(sample(text, "nettcpd_connections_finished_total{outcome=\"faulted\"}") == 2);
	ck_assert(sample(text, "nettcpd_faults_total{fault=\"EndpointNotFound\"}") == 5);
	ck_assert(sample(text, "nettcpd_route_duration_seconds_bucket{le=\"0.00025\"}") == 1);
	ck_assert(sample(text, "nettcpd_route_duration_seconds_bucket{le=\"0.025\"}") == 2);
	ck_assert(sample(text, "nettcpd_route_duration_seconds_bucket{le=\"+Inf\"}") == 2);
	ck_assert(sample(text, "nettcpd_route_duration_seconds_count") == 2);
	ck_assert(sample(text, "nettcpd_reloads_total{result=\"failed\"}") == 1);
	/* a label value is escaped as the format says */
	ck_assert(sample(text, "nettcpd_route_bytes_total{route=\"we\\\"ird\\\\name\","
	    "direction=\"down\"}") == 9);
	free(text);
	route_stats_free(&w[1].route_stats);
	stats_route_names_free();
}
END_TEST

static Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("stats");

	tcase_add_test(tc, test_histogram_buckets_at_their_bounds);
	tcase_add_test(tc, test_route_names_keep_their_slots);
	tcase_add_test(tc, test_route_counters_in_chunks);
	tcase_add_test(tc, test_exposition_sums_the_workers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stats_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
