/*
 * check_metrics_http.c - unit tests for the /metrics request parser: every
 * split of a request, the forms of its target, its method and version,
 * and the size limit at, below and above it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_http.h"

static enum metrics_http_req
parse(const char *s)
{
	return metrics_http_parse(s, strlen(s));
}

START_TEST(test_every_split_needs_more_until_the_blank_line)
{
	static const char *const reqs[] = {
		"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
		"GET /metrics HTTP/1.0\n\n",
	};

	for (size_t r = 0; r < sizeof(reqs) / sizeof(reqs[0]); r++) {
		size_t len = strlen(reqs[r]);

		for (size_t i = 0; i < len; i++)
			ck_assert_int_eq(metrics_http_parse(reqs[r], i),
			    METRICS_HTTP_NEED_MORE);
		ck_assert_int_eq(metrics_http_parse(reqs[r], len),
		    METRICS_HTTP_METRICS);
	}
}
END_TEST

START_TEST(test_targets)
{
	ck_assert_int_eq(parse("HEAD /metrics HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_METRICS);
	ck_assert_int_eq(parse("HEAD /x HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_METRICS);
	ck_assert_int_eq(parse("GET http://127.0.0.1:9808/metrics HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_METRICS);
	ck_assert_int_eq(parse("GET HTTPS://[::1]:9808/metrics?a HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_METRICS);
	ck_assert_int_eq(parse("GET http://h/metrics/x HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET http://h HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET http://h?metrics HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\n\r\n"), METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET /metricsx HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET /metric HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_FOUND);
	ck_assert_int_eq(parse("GET metrics HTTP/1.1\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("GET ftp://h/metrics HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_BAD);
}
END_TEST

START_TEST(test_methods_and_request_lines)
{
	ck_assert_int_eq(parse("POST /metrics HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_ALLOWED);
	ck_assert_int_eq(parse("get /metrics HTTP/1.1\r\n\r\n"),
	    METRICS_HTTP_NOT_ALLOWED);
	ck_assert_int_eq(parse("GET /metrics HTTP/2.0\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("GET /metrics HTTP/1.\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("GET /metrics HTTP/1.1x\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("GET /metrics\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("GET  /metrics HTTP/1.1\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse(" GET /metrics HTTP/1.1\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("GET /met\trics HTTP/1.1\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(parse("\r\n\r\n"), METRICS_HTTP_BAD);
	ck_assert_int_eq(metrics_http_parse("GET /metrics\0 HTTP/1.1\r\n\r\n", 26),
	    METRICS_HTTP_BAD);
}
END_TEST

START_TEST(test_the_size_limit)
{
	char *buf = malloc(METRICS_HTTP_REQUEST_MAX + 1);
	size_t head = strlen("GET /metrics HTTP/1.1\r\nX: ");

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, "GET /metrics HTTP/1.1\r\nX: ", head);
	memset(buf + head, 'x', METRICS_HTTP_REQUEST_MAX - head);
	/* the blank line ends on the last byte allowed: served */
	memcpy(buf + METRICS_HTTP_REQUEST_MAX - 4, "\r\n\r\n", 4);
	ck_assert_int_eq(metrics_http_parse(buf, METRICS_HTTP_REQUEST_MAX),
	    METRICS_HTTP_METRICS);
	/* no blank line in the limit: refused, not awaited */
	memset(buf + head, 'x', METRICS_HTTP_REQUEST_MAX - head);
	ck_assert_int_eq(metrics_http_parse(buf, METRICS_HTTP_REQUEST_MAX - 1),
	    METRICS_HTTP_NEED_MORE);
	ck_assert_int_eq(metrics_http_parse(buf, METRICS_HTTP_REQUEST_MAX),
	    METRICS_HTTP_TOO_LONG);
	free(buf);
}
END_TEST

static Suite *metrics_http_suite(void)
{
	Suite *s = suite_create("metrics_http");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_every_split_needs_more_until_the_blank_line);
	tcase_add_test(tc, test_targets);
	tcase_add_test(tc, test_methods_and_request_lines);
	tcase_add_test(tc, test_the_size_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(metrics_http_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
