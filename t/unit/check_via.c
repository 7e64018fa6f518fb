/*
 * check_via.c - unit tests for via_parse(): every normalisation rule, with
 * inputs that must be accepted and inputs that must be refused.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "via.h"

/* struct via is several KiB: keep it off check's stack. */
static struct via v;
static const char *why;

static int parse_n(const char *uri, size_t len, int flags)
{
	why = NULL;
	return via_parse(uri, len, flags, &v, &why);
}

static int parse(const char *uri, int flags)
{
	return parse_n(uri, strlen(uri), flags);
}

/* A string literal that holds a NUL. */
#define parse_lit(literal, flags) parse_n((literal), sizeof(literal) - 1, (flags))

/* Parse a client Via that must be accepted, and check its path. */
#define ck_path(uri, expected)                                              \
	do {                                                                \
		ck_assert_msg(parse((uri), 0) == 0, "%s refused: %s", (uri), \
		    why);                                                   \
		ck_assert_str_eq(v.path, (expected));                       \
		ck_assert_uint_eq(v.path_len, strlen(expected));            \
	} while (0)

/* Parse a URI that must be refused with the given reason. */
#define ck_refused(uri, flags, reason)                                      \
	do {                                                                \
		ck_assert_msg(parse((uri), (flags)) == -1, "%s accepted",   \
		    (uri));                                                 \
		ck_assert_ptr_nonnull(why);                                 \
		ck_assert_str_eq(why, (reason));                            \
	} while (0)

START_TEST(test_scheme_and_host_case)
{
	ck_assert_int_eq(parse("NET.TCP://Example.COM/Svc", 0), 0);
	ck_assert_int_eq(v.host_class, VIA_HOST_EXACT);
	ck_assert_str_eq(v.host, "example.com");
	ck_assert_uint_eq(v.port, 0);
	ck_assert_str_eq(v.path, "/svc");
	ck_assert_uint_eq(v.nsegments, 1);

	ck_assert_int_eq(parse("net.tcp://host_1-a.example./x", 0), 0);
	ck_assert_str_eq(v.host, "host_1-a.example.");
	ck_assert_int_eq(parse("net.tcp://10.0.0.1/x", 0), 0);
	ck_assert_str_eq(v.host, "10.0.0.1");
}
END_TEST

START_TEST(test_path_lower_case)
{
	ck_path("net.tcp://h/Service1/MyEndPoint", "/service1/myendpoint");
}
END_TEST

START_TEST(test_ports)
{
	ck_assert_int_eq(parse("net.tcp://h/x", 0), 0);
	ck_assert_uint_eq(v.port, 0);
	ck_assert_int_eq(parse("net.tcp://h:808/x", 0), 0);
	ck_assert_uint_eq(v.port, 808);
	ck_assert_int_eq(parse("net.tcp://h:65535/x", 0), 0);
	ck_assert_uint_eq(v.port, 65535);
	ck_assert_int_eq(parse("net.tcp://h:00809", 0), 0);
	ck_assert_uint_eq(v.port, 809);
	ck_assert_str_eq(v.path, "");
	ck_assert_int_eq(parse("net.tcp://h:1?q", 0), 0);
	ck_assert_uint_eq(v.port, 1);

	ck_refused("net.tcp://h:65536/x", 0, "bad port");
	ck_refused("net.tcp://h:99999999999999999999/x", 0, "bad port");
	ck_refused("net.tcp://h:80a/x", 0, "bad port");
	ck_refused("net.tcp://h:-1/x", 0, "bad port");
	ck_refused("net.tcp://h:+80/x", 0, "bad port");
	ck_refused("net.tcp://h:/x", 0, "bad port");
	ck_refused("net.tcp://h:0/x", 0, "bad port");
	ck_refused("net.tcp://h:80:81/x", 0, "bad port");
}
END_TEST

START_TEST(test_ipv6)
{
	ck_assert_int_eq(parse("net.tcp://[::1]/x", 0), 0);
	ck_assert_int_eq(v.host_class, VIA_HOST_EXACT);
	ck_assert_str_eq(v.host, "[::1]");
	ck_assert_uint_eq(v.port, 0);

	ck_assert_int_eq(parse("net.tcp://[0:0:0:0:0:0:0:1]:9000/x", 0), 0);
	ck_assert_str_eq(v.host, "[::1]");
	ck_assert_uint_eq(v.port, 9000);
	ck_assert_str_eq(v.path, "/x");

	ck_assert_int_eq(parse("net.tcp://[FE80::ABCD]", 0), 0);
	ck_assert_str_eq(v.host, "[fe80::abcd]");
	ck_assert_int_eq(parse("net.tcp://[::ffff:192.0.2.1]/", 0), 0);
	ck_assert_str_eq(v.host, "[::ffff:192.0.2.1]");

	ck_refused("net.tcp://[::1/x", 0, "bad IPv6 address");
	ck_refused("net.tcp://[]/x", 0, "bad IPv6 address");
	ck_refused("net.tcp://[::g]/x", 0, "bad IPv6 address");
	ck_refused("net.tcp://[1:2:3:4:5:6:7:8:9]/x", 0, "bad IPv6 address");
	ck_refused("net.tcp://[fe80::1%25eth0]/x", 0, "bad IPv6 address");
	ck_refused("net.tcp://[::1]x/y", 0, "bad IPv6 address");
	ck_refused("net.tcp://[::1]:70000/x", 0, "bad port");
	ck_refused("net.tcp://::1/x", 0, "empty host");
}
END_TEST

START_TEST(test_bad_hosts)
{
	char uri[400];

	ck_refused("net.tcp:///x", 0, "empty host");
	ck_refused("net.tcp://:808/x", 0, "empty host");
	ck_refused("net.tcp://", 0, "empty host");
	ck_refused("net.tcp://a,b/x", 0, "bad host");
	ck_refused("net.tcp://a%41/x", 0, "bad host");
	ck_refused("net.tcp://++/x", VIA_ALLOW_WILDCARD, "bad host");
	ck_refused("net.tcp://a b/x", 0, "bad host");
	ck_assert_int_eq(parse_lit("net.tcp://a\0b/x", 0), -1);
	ck_assert_str_eq(why, "bad host");

	strcpy(uri, "net.tcp://");
	memset(uri + 10, 'h', VIA_HOST_MAX - 1);
	strcpy(uri + 10 + VIA_HOST_MAX - 1, "/x");
	ck_assert_int_eq(parse(uri, 0), 0);
	ck_assert_uint_eq(strlen(v.host), VIA_HOST_MAX - 1);
	memset(uri + 10, 'h', VIA_HOST_MAX);
	strcpy(uri + 10 + VIA_HOST_MAX, "/x");
	ck_refused(uri, 0, "host too long");
}
END_TEST

START_TEST(test_userinfo)
{
	ck_refused("net.tcp://user@host/x", 0, "userinfo not allowed");
	ck_refused("net.tcp://user:pw@host:808/x", 0, "userinfo not allowed");
	ck_refused("net.tcp://@host/x", 0, "userinfo not allowed");
	/* '@' in the path is data. */
	ck_path("net.tcp://host/a@b", "/a@b");
}
END_TEST

START_TEST(test_not_absolute)
{
	const char *reason = "not an absolute net.tcp URI";

	ck_refused("/Service1", 0, reason);
	ck_refused("host/Service1", 0, reason);
	ck_refused("Service1", 0, reason);
	ck_refused("http://host/Service1", 0, reason);
	ck_refused("net.pipe://host/Service1", 0, reason);
	ck_refused("net.tcpx://host/Service1", 0, reason);
	ck_refused("net.tcp:/host/Service1", 0, reason);
	ck_refused("net.tcp:host/Service1", 0, reason);
	ck_refused("net.tcp:", 0, reason);
	ck_refused(" x net.tcp://h/", 0, reason);
}
END_TEST

START_TEST(test_empty_and_whitespace)
{
	ck_refused("", 0, "empty URI");
	ck_refused(" \t\r\n", 0, "empty URI");
	/* Uri trims leading and trailing whitespace, not inner. */
	ck_path(" \tnet.tcp://h/Admin \r\n", "/admin");
	ck_path("net.tcp://h/a b", "/a%20b");
}
END_TEST

START_TEST(test_query_and_fragment)
{
	ck_path("net.tcp://h/a/b?x=1#f", "/a/b");
	ck_path("net.tcp://h/a?x/y", "/a");
	ck_path("net.tcp://h/a#f/g?q", "/a");
	ck_path("net.tcp://h/a/%3F%23", "/a/%3F%23");

	ck_assert_int_eq(parse("net.tcp://h?x", 0), 0);
	ck_assert_str_eq(v.host, "h");
	ck_assert_str_eq(v.path, "");
	ck_assert_int_eq(parse("net.tcp://h:81#f", 0), 0);
	ck_assert_uint_eq(v.port, 81);
	ck_assert_str_eq(v.path, "");
}
END_TEST

START_TEST(test_unreserved_escapes_decoded)
{
	ck_path("net.tcp://h/%41bc", "/abc");
	ck_path("net.tcp://h/%61%62%63", "/abc");
	ck_path("net.tcp://h/%2D%2e%5f%7E%30", "/-._~0");
}
END_TEST

START_TEST(test_other_escapes_upper_case)
{
	ck_path("net.tcp://h/a%3ab", "/a%3Ab");
	ck_path("net.tcp://h/a%3Ab", "/a%3Ab");
	ck_path("net.tcp://h/%c3%a9", "/%C3%A9");
	ck_path("net.tcp://h/%00%7f%25", "/%00%7F%25");
	/* Reserved characters are not decoded: ':' and %3A differ. */
	ck_path("net.tcp://h/a:b", "/a:b");
}
END_TEST

START_TEST(test_escaped_slashes_separate)
{
	/* Uri unescapes %2F and %5C in net.tcp paths before compressing. */
	ck_path("net.tcp://h/a%2fb", "/a/b");
	ck_assert_uint_eq(v.nsegments, 2);
	ck_path("net.tcp://h/a%2Fb%5cc", "/a/b/c");
	ck_assert_uint_eq(v.nsegments, 3);
	ck_path("net.tcp://h/Public%2F..%2FAdmin", "/admin");
	ck_path("net.tcp://h/Public%5c%2e%2e%5cAdmin", "/admin");
}
END_TEST

START_TEST(test_raw_utf8_escaped)
{
	ck_path("net.tcp://h/caf\xc3\xa9", "/caf%C3%A9");
	ck_path("net.tcp://h/caf%C3%A9", "/caf%C3%A9");
	ck_path("net.tcp://h/caf%c3%a9", "/caf%C3%A9");
	/* Non-ASCII letters are not case-folded: WCF compares escaped text. */
	ck_path("net.tcp://h/caf\xc3\x89", "/caf%C3%89");
}
END_TEST

START_TEST(test_disallowed_chars_escaped)
{
	ck_path("net.tcp://h/a\"<>^`{|}", "/a%22%3C%3E%5E%60%7B%7C%7D");
	ck_path("net.tcp://h/a\tb\x7f", "/a%09b%7F");
	ck_assert_int_eq(parse_lit("net.tcp://h/a\0b", 0), 0);
	ck_assert_str_eq(v.path, "/a%00b");
	/* What Uri leaves alone stays alone. */
	ck_path("net.tcp://h/a!$&'()*+,;=:@[]~", "/a!$&'()*+,;=:@[]~");
}
END_TEST

START_TEST(test_stray_percent)
{
	ck_path("net.tcp://h/100%", "/100%25");
	ck_path("net.tcp://h/a%zz", "/a%25zz");
	ck_path("net.tcp://h/a%4", "/a%254");
	ck_path("net.tcp://h/a%4/b", "/a%254/b");
	ck_path("net.tcp://h/a%%41", "/a%25a");
}
END_TEST

START_TEST(test_backslash)
{
	ck_path("net.tcp://h\\a\\B", "/a/b");
	ck_path("net.tcp://h/a\\..\\c", "/c");
	ck_assert_int_eq(parse("net.tcp:\\\\h\\a", 0), 0);
	ck_assert_str_eq(v.host, "h");
	ck_assert_str_eq(v.path, "/a");
}
END_TEST

START_TEST(test_dot_segments)
{
	ck_path("net.tcp://h/a/./b", "/a/b");
	ck_path("net.tcp://h/Public/../Admin", "/admin");
	ck_path("net.tcp://h/a/b/../../c", "/c");
	ck_path("net.tcp://h/../a", "/a");
	ck_path("net.tcp://h/a/b/../../..", "");
	ck_path("net.tcp://h/a/..", "");
	ck_path("net.tcp://h/a/.", "/a");
	ck_path("net.tcp://h/%2e%2E/x", "/x");
	ck_path("net.tcp://h/a/.%2e/b", "/b");
	/* Only "." and ".." are special; Uri keeps trailing dots since 4.5. */
	ck_path("net.tcp://h/a/.../b", "/a/.../b");
	ck_path("net.tcp://h/a./b..", "/a./b..");
	ck_path("net.tcp://h/.a/..b", "/.a/..b");
	/* The query is not part of the path being resolved. */
	ck_path("net.tcp://h/a/b?/../..", "/a/b");
}
END_TEST

START_TEST(test_dot_dot_removes_empty_segment)
{
	/* Uri's Compress() keeps empty segments while it resolves "..". */
	ck_path("net.tcp://h/a//../b", "/a/b");
	ck_path("net.tcp://h/a/b//..", "/a/b");
	ck_path("net.tcp://h/a/b///../..", "/a/b");
	ck_path("net.tcp://h/a///../..", "/a");
	ck_path("net.tcp://h/a///../../..", "");
	ck_path("net.tcp://h//../a", "/a");
}
END_TEST

START_TEST(test_slashes_collapse)
{
	ck_path("net.tcp://h//a///b/", "/a/b");
	ck_assert_uint_eq(v.nsegments, 2);
	ck_assert_uint_eq(v.seg_end[0], 2);
	ck_assert_uint_eq(v.seg_end[1], 4);

	ck_path("net.tcp://h/Service1/", "/service1");
	ck_assert_uint_eq(v.nsegments, 1);
}
END_TEST

START_TEST(test_segment_ends)
{
	ck_path("net.tcp://h/ab/c%3A/%C3%A9\xc3\xa9", "/ab/c%3A/%C3%A9%C3%A9");
	ck_assert_uint_eq(v.nsegments, 3);
	ck_assert_uint_eq(v.seg_end[0], 3);
	ck_assert_uint_eq(v.seg_end[1], 8);
	ck_assert_uint_eq(v.seg_end[2], v.path_len);
}
END_TEST

START_TEST(test_root)
{
	ck_path("net.tcp://h", "");
	ck_assert_uint_eq(v.nsegments, 0);
	ck_path("net.tcp://h/", "");
	ck_path("net.tcp://h///", "");
	ck_assert_uint_eq(v.nsegments, 0);
}
END_TEST

START_TEST(test_length_limit)
{
	static char uri[NMF_MAX_VIA + 2];
	size_t head = strlen("net.tcp://h/");

	memcpy(uri, "net.tcp://h/", head);
	memset(uri + head, 'A', NMF_MAX_VIA - head);
	ck_assert_int_eq(parse_n(uri, NMF_MAX_VIA, 0), 0);
	ck_assert_uint_eq(v.path_len, NMF_MAX_VIA - head + 1);
	ck_assert_int_eq(v.path[1], 'a');

	/* The worst case for the output buffer: every byte escaped. */
	memset(uri + head, 0xff, NMF_MAX_VIA - head);
	ck_assert_int_eq(parse_n(uri, NMF_MAX_VIA, 0), 0);
	ck_assert_uint_eq(v.path_len, 3 * (NMF_MAX_VIA - head) + 1);

	uri[NMF_MAX_VIA] = 'a';
	ck_assert_int_eq(parse_n(uri, NMF_MAX_VIA + 1, 0), -1);
	ck_assert_str_eq(why, "URI too long");
}
END_TEST

START_TEST(test_segment_limit)
{
	static char uri[NMF_MAX_VIA + 1];
	size_t i, len = strlen("net.tcp://h");

	memcpy(uri, "net.tcp://h", len);
	for (i = 0; i < VIA_MAX_SEGMENTS; i++) {
		uri[len++] = '/';
		uri[len++] = 'a';
	}
	ck_assert_int_eq(parse_n(uri, len, 0), 0);
	ck_assert_uint_eq(v.nsegments, VIA_MAX_SEGMENTS);
	ck_assert_uint_eq(v.seg_end[VIA_MAX_SEGMENTS - 1], 2 * VIA_MAX_SEGMENTS);

	uri[len++] = '/';
	uri[len++] = 'a';
	ck_assert_int_eq(parse_n(uri, len, 0), -1);
	ck_assert_str_eq(why, "too many path segments");

	/* The cap is on depth: ".." makes room again, "." and "" take none. */
	memcpy(uri + len - 2, "/./..//b", 8);
	len += 6;
	ck_assert_int_eq(parse_n(uri, len, 0), 0);
	ck_assert_uint_eq(v.nsegments, VIA_MAX_SEGMENTS);
	ck_assert_int_eq(v.path[v.path_len - 1], 'b');
}
END_TEST

START_TEST(test_wildcards)
{
	ck_assert_int_eq(parse("net.tcp://+/Svc", VIA_ALLOW_WILDCARD), 0);
	ck_assert_int_eq(v.host_class, VIA_HOST_STRONG);
	ck_assert_str_eq(v.host, "");
	ck_assert_str_eq(v.path, "/svc");

	ck_assert_int_eq(parse("net.tcp://*:9000/", VIA_ALLOW_WILDCARD), 0);
	ck_assert_int_eq(v.host_class, VIA_HOST_WEAK);
	ck_assert_str_eq(v.host, "");
	ck_assert_uint_eq(v.port, 9000);
	ck_assert_str_eq(v.path, "");

	ck_assert_int_eq(parse("net.tcp://+", VIA_ALLOW_WILDCARD), 0);
	ck_assert_int_eq(v.host_class, VIA_HOST_STRONG);
	ck_assert_uint_eq(v.nsegments, 0);

	ck_assert_int_eq(parse("net.tcp://Host/A", VIA_ALLOW_WILDCARD), 0);
	ck_assert_int_eq(v.host_class, VIA_HOST_EXACT);
	ck_assert_str_eq(v.host, "host");

	ck_refused("net.tcp://+/Svc", 0, "wildcard host not allowed");
	ck_refused("net.tcp://*/Svc", 0, "wildcard host not allowed");
	ck_refused("net.tcp://+:808/Svc", 0, "wildcard host not allowed");
	ck_refused("net.tcp://:808/Svc", VIA_ALLOW_WILDCARD, "empty host");
	ck_refused("net.tcp://[+]/Svc", VIA_ALLOW_WILDCARD, "bad IPv6 address");
}
END_TEST

static Suite *via_suite(void)
{
	Suite *s = suite_create("via");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_scheme_and_host_case);
	tcase_add_test(tc, test_path_lower_case);
	tcase_add_test(tc, test_ports);
	tcase_add_test(tc, test_ipv6);
	tcase_add_test(tc, test_bad_hosts);
	tcase_add_test(tc, test_userinfo);
	tcase_add_test(tc, test_not_absolute);
	tcase_add_test(tc, test_empty_and_whitespace);
	tcase_add_test(tc, test_query_and_fragment);
	tcase_add_test(tc, test_unreserved_escapes_decoded);
	tcase_add_test(tc, test_other_escapes_upper_case);
	tcase_add_test(tc, test_escaped_slashes_separate);
	tcase_add_test(tc, test_raw_utf8_escaped);
	tcase_add_test(tc, test_disallowed_chars_escaped);
	tcase_add_test(tc, test_stray_percent);
	tcase_add_test(tc, test_backslash);
	tcase_add_test(tc, test_dot_segments);
	tcase_add_test(tc, test_dot_dot_removes_empty_segment);
	tcase_add_test(tc, test_slashes_collapse);
	tcase_add_test(tc, test_segment_ends);
	tcase_add_test(tc, test_root);
	tcase_add_test(tc, test_length_limit);
	tcase_add_test(tc, test_segment_limit);
	tcase_add_test(tc, test_wildcards);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(via_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
