/*
 * check_rewrite.c - unit tests for rewrite_via: the authority replaced and
 * nothing else, the size field recomputed when it grows or shrinks a byte,
 * a non-minimal size field, the bytes after the Via record (Encoding,
 * Preamble End, a TLS route's inner records, early session bytes) kept,
 * the NMF_MAX_VIA edge, and the refusals.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"

#define BUFSZ (NMF_PREAMBLE_MAX + REWRITE_GROWTH + 64)

/* Version 1.0, duplex, then the Via record with its size field in size
 * (size_len bytes, NULL: the shortest encoding), then tail. */
static size_t
preamble(uint8_t *out, const char *via, const uint8_t *size, size_t size_len,
    const uint8_t *tail, size_t tail_len, size_t *via_off)
{
	static const uint8_t head[] = { 0x00, 0x01, 0x00, 0x01, 0x02, 0x02 };
	size_t n = sizeof(head), vlen = strlen(via);

	memcpy(out, head, n);
	if (size != NULL) {
		memcpy(out + n, size, size_len);
		n += size_len;
	} else {
		n += nmf_mbint_encode((uint32_t)vlen, out + n);
	}
	*via_off = n;
	memcpy(out + n, via, vlen);
	n += vlen;
	memcpy(out + n, tail, tail_len);
	return n + tail_len;
}

static const uint8_t plain_tail[] = { 0x03, 0x08, 0x0C };

/* Rewrite via to authority and compare with the preamble of want. */
static void
check(const char *via, const char *authority, const char *want,
    const uint8_t *tail, size_t tail_len)
{
	static uint8_t in[BUFSZ], out[BUFSZ], exp[BUFSZ];
	size_t via_off, exp_off, len, exp_len;
	ssize_t n;

	len = preamble(in, via, NULL, 0, tail, tail_len, &via_off);
	exp_len = preamble(exp, want, NULL, 0, tail, tail_len, &exp_off);
	n = rewrite_via_preamble(in, len, via_off, strlen(via), authority, out,
	    sizeof(out));
	ck_assert_int_eq(n, (ssize_t)exp_len);
	ck_assert_mem_eq(out, exp, exp_len);
}

START_TEST(test_authority_replaced)
{
	check("net.tcp://front.example.com:808/Calc/Service.svc", "10.0.0.5:9001",
	    "net.tcp://10.0.0.5:9001/Calc/Service.svc", plain_tail,
	    sizeof(plain_tail));
	/* No port in the client's Via; an IPv6 backend. */
	check("net.tcp://front/calc", "[::1]:9001", "net.tcp://[::1]:9001/calc",
	    plain_tail, sizeof(plain_tail));
	/* An IPv6 literal in the client's Via. */
	check("net.tcp://[fe80::1%25eth0]:808/calc", "calc01.internal:9001",
	    "net.tcp://calc01.internal:9001/calc", plain_tail, sizeof(plain_tail));
	/* No path at all. */
	check("net.tcp://front:808", "10.0.0.5:9001", "net.tcp://10.0.0.5:9001",
	    plain_tail, sizeof(plain_tail));
}
END_TEST

/* The path, its case, its escapes, a backslash, a query and fragment are
 * the client's bytes, untouched; so is the scheme as written. */
START_TEST(test_other_bytes_exact)
{
	check("NET.TCP://front:808\\Calc/%41b/./x?q=1#f", "10.0.0.5:9001",
	    "NET.TCP://10.0.0.5:9001\\Calc/%41b/./x?q=1#f", plain_tail,
	    sizeof(plain_tail));
	check("net.tcp://front:808?q", "b:1", "net.tcp://b:1?q", plain_tail,
	    sizeof(plain_tail));
}
END_TEST

/* The authority is where the router (via_parse) reads it: after white
 * space it trims and a scheme whose slashes are backslashes, so a "://"
 * later in the path is path. */
START_TEST(test_authority_as_routed)
{
	check("net.tcp:\\\\front\\calc", "b:1", "net.tcp:\\\\b:1\\calc",
	    plain_tail, sizeof(plain_tail));
	check("net.tcp:\\\\front/x://y", "b:1", "net.tcp:\\\\b:1/x://y",
	    plain_tail, sizeof(plain_tail));
	check("net.tcp:/\\front/x", "b:1", "net.tcp:/\\b:1/x", plain_tail,
	    sizeof(plain_tail));
	check(" \tnet.tcp://front/calc ", "b:1", " \tnet.tcp://b:1/calc ",
	    plain_tail, sizeof(plain_tail));
}
END_TEST

/* What follows the Via record: an Extensible Encoding, a TLS route's
 * records from inside TLS, the session's first bytes. */
START_TEST(test_tail_kept)
{
	static const uint8_t tail[] = {
		0x04, 0x08, 'a', 'p', 'p', 'l', '/', 's', 'o', 'a',
		0x0C, 0x06, 0x03, 'x', 'y', 'z', 0x07,
	};

	check("net.tcp://front:808/calc", "10.0.0.5:9001",
	    "net.tcp://10.0.0.5:9001/calc", tail, sizeof(tail));
}
END_TEST

/* 127 bytes take one size byte, 128 two: both ways across the edge. */
START_TEST(test_size_field_recomputed)
{
	static uint8_t in[BUFSZ], out[BUFSZ];
	char via[256], want[256];
	size_t via_off, len;
	ssize_t n;

	/* "net.tcp://h:1/" is 14 bytes: a path making 127 in all. */
	snprintf(via, sizeof(via), "net.tcp://h:1/%0113d", 0);
	ck_assert_uint_eq(strlen(via), 127);
	snprintf(want, sizeof(want), "net.tcp://hh:1/%0113d", 0);
	check(via, "hh:1", want, plain_tail, sizeof(plain_tail));
	len = preamble(in, via, NULL, 0, plain_tail, sizeof(plain_tail), &via_off);
	n = rewrite_via_preamble(in, len, via_off, strlen(via), "hh:1", out,
	    sizeof(out));
	ck_assert_int_eq(n, (ssize_t)len + 2);
	ck_assert_uint_eq(out[6], 0x80);  /* 128 = 0x80 0x01 */
	ck_assert_uint_eq(out[7], 0x01);
	/* and back down to one byte */
	check(want, "h:1", via, plain_tail, sizeof(plain_tail));
}
END_TEST

/* A size field .NET reads but does not write (0x8A 0x00 = 10) comes out
 * in the shortest form. */
START_TEST(test_non_minimal_size)
{
	static const uint8_t size[] = { 0x8A, 0x00 };
	static uint8_t in[BUFSZ], out[BUFSZ];
	size_t via_off, len;
	ssize_t n;

	len = preamble(in, "net.tcp://a", size, sizeof(size), plain_tail,
	    sizeof(plain_tail), &via_off);
	n = rewrite_via_preamble(in, len, via_off, 11, "bb", out, sizeof(out));
	ck_assert_int_eq(n, 6 + 1 + 12 + 3);
	ck_assert_uint_eq(out[6], 12);
	ck_assert_mem_eq(out + 7, "net.tcp://bb", 12);
	ck_assert_mem_eq(out + 19, plain_tail, sizeof(plain_tail));
}
END_TEST

/* The new Via may be NMF_MAX_VIA bytes, not one more. */
START_TEST(test_max_via)
{
	static uint8_t in[BUFSZ], out[BUFSZ];
	static char via[NMF_MAX_VIA + 1];
	size_t via_off, len;
	ssize_t n;

	memset(via, 'p', sizeof(via) - 1);
	memcpy(via, "net.tcp://h/", 12);
	via[NMF_MAX_VIA - 1] = '\0';          /* 2047 bytes */
	len = preamble(in, via, NULL, 0, plain_tail, sizeof(plain_tail), &via_off);
	n = rewrite_via_preamble(in, len, via_off, strlen(via), "hh", out,
	    sizeof(out));
	ck_assert_int_eq(n, (ssize_t)len + 1);  /* 2048: the limit itself */
	n = rewrite_via_preamble(in, len, via_off, strlen(via), "hhh", out,
	    sizeof(out));
	ck_assert_int_eq(n, REWRITE_TOO_LONG);
}
END_TEST

START_TEST(test_refusals)
{
	static uint8_t in[BUFSZ], out[BUFSZ];
	size_t via_off, len;

	len = preamble(in, "net.tcp:/front/calc", NULL, 0, plain_tail,
	    sizeof(plain_tail), &via_off);
	ck_assert_int_eq(rewrite_via_preamble(in, len, via_off, 19, "b:1", out,
	    sizeof(out)), REWRITE_NO_AUTHORITY);
	len = preamble(in, "http://front/x://calc", NULL, 0, plain_tail,
	    sizeof(plain_tail), &via_off);
	ck_assert_int_eq(rewrite_via_preamble(in, len, via_off, 21, "b:1", out,
	    sizeof(out)), REWRITE_NO_AUTHORITY);
	len = preamble(in, "net.tcp://front/calc", NULL, 0, plain_tail,
	    sizeof(plain_tail), &via_off);
	ck_assert_int_eq(rewrite_via_preamble(in, len, via_off, 20, "b:1", out,
	    len + REWRITE_GROWTH - 1), REWRITE_NO_ROOM);
	/* A Via that is not where the grammar puts it. */
	in[5] = 0x03;
	ck_assert_int_eq(rewrite_via_preamble(in, len, via_off, 20, "b:1", out,
	    sizeof(out)), REWRITE_NO_AUTHORITY);
	in[5] = 0x02;
	ck_assert_int_eq(rewrite_via_preamble(in, len, via_off, len, "b:1", out,
	    sizeof(out)), REWRITE_NO_AUTHORITY);
}
END_TEST

static Suite *rewrite_suite(void)
{
	Suite *s = suite_create("rewrite");
	TCase *tc = tcase_create("rewrite");

	tcase_add_test(tc, test_authority_replaced);
	tcase_add_test(tc, test_other_bytes_exact);
	tcase_add_test(tc, test_authority_as_routed);
	tcase_add_test(tc, test_tail_kept);
	tcase_add_test(tc, test_size_field_recomputed);
	tcase_add_test(tc, test_non_minimal_size);
	tcase_add_test(tc, test_max_via);
	tcase_add_test(tc, test_refusals);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rewrite_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
