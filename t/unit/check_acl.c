/*
 * check_acl.c - unit tests for client access lists: CIDR lists parsed,
 * compiled and matched, IPv4, IPv6 and IPv4-mapped; what is refused.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "acl.h"

union sa {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_un sun;
};

/* A client address from text: IPv4 if it has no ':'. */
static const struct sockaddr *client(const char *text)
{
	static union sa u;

	memset(&u, 0, sizeof u);
	if (strchr(text, ':') == NULL) {
		u.sin.sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, text, &u.sin.sin_addr), 1);
	} else {
		u.sin6.sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, text, &u.sin6.sin6_addr), 1);
	}
	return &u.sa;
}

static struct acl *compiled(const char *text)
{
	struct acl *a = acl_new();
	char err[256];

	ck_assert_ptr_nonnull(a);
	ck_assert_msg(acl_add(a, text, err, sizeof err) == 0, "%s: %s", text, err);
	acl_compile(a);
	return a;
}

/* acl_add refuses text; the reason contains want. */
static void refused(const char *text, const char *want)
{
	struct acl *a = acl_new();
	char err[256] = "";

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(acl_add(a, "10.0.0.0/8", err, sizeof err), 0);
	ck_assert_msg(acl_add(a, text, err, sizeof err) == -1, "'%s' accepted", text);
	ck_assert_msg(strstr(err, want) != NULL, "'%s': '%s' lacks '%s'", text,
	    err, want);
	/* nothing of a refused line stays */
	ck_assert_uint_eq(a->n, 1);
	acl_free(a);
}

START_TEST(test_ipv4)
{
	struct acl *a = compiled("10.0.0.0/8, 192.168.1.7, 172.16.0.0/12");

	ck_assert(acl_match(a, client("10.0.0.0")));
	ck_assert(acl_match(a, client("10.255.255.255")));
	ck_assert(!acl_match(a, client("11.0.0.0")));
	ck_assert(!acl_match(a, client("9.255.255.255")));
	ck_assert(acl_match(a, client("192.168.1.7")));
	ck_assert(!acl_match(a, client("192.168.1.6")));
	ck_assert(!acl_match(a, client("192.168.1.8")));
	ck_assert(acl_match(a, client("172.31.255.255")));
	ck_assert(!acl_match(a, client("172.32.0.0")));
	/* an IPv6 client is none of these */
	ck_assert(!acl_match(a, client("::a00:1")));
	ck_assert(!acl_match(a, client("2001:db8::1")));
	acl_free(a);
}
END_TEST

START_TEST(test_ipv6)
{
	struct acl *a = compiled("2001:db8::/32, ::1/128, fe80::/10");

	ck_assert(acl_match(a, client("2001:db8::")));
	ck_assert(acl_match(a, client("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
	ck_assert(!acl_match(a, client("2001:db9::")));
	ck_assert(!acl_match(a, client("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
	ck_assert(acl_match(a, client("::1")));
	ck_assert(!acl_match(a, client("::2")));
	ck_assert(!acl_match(a, client("::")));
	ck_assert(acl_match(a, client("febf::1")));
	ck_assert(!acl_match(a, client("fec0::")));
	ck_assert(!acl_match(a, client("127.0.0.1")));
	acl_free(a);
}
END_TEST

START_TEST(test_mapped_matches_ipv4_rules)
{
	struct acl *a = compiled("127.0.0.2/32, 10.0.0.0/8");
	struct acl *m = compiled("::ffff:192.0.2.0/120");

	ck_assert(acl_match(a, client("::ffff:127.0.0.2")));
	ck_assert(!acl_match(a, client("::ffff:127.0.0.1")));
	ck_assert(acl_match(a, client("::ffff:10.1.2.3")));
	/* the IPv4-compatible form (deprecated) is not the mapped one */
	ck_assert(!acl_match(a, client("::10.1.2.3")));
	/* an IPv6 rule written in the mapped form holds IPv4 clients */
	ck_assert(acl_match(m, client("192.0.2.200")));
	ck_assert(acl_match(m, client("::ffff:192.0.2.1")));
	ck_assert(!acl_match(m, client("192.0.3.0")));
	acl_free(a);
	acl_free(m);
}
END_TEST

START_TEST(test_zero_and_full_prefixes)
{
	struct acl *v4all = compiled("0.0.0.0/0");
	struct acl *all = compiled("::/0");
	struct acl *host4 = compiled("203.0.113.9/32");
	struct acl *host6 = compiled("2001:db8::9/128");

	ck_assert(acl_match(v4all, client("0.0.0.0")));
	ck_assert(acl_match(v4all, client("255.255.255.255")));
	ck_assert(acl_match(v4all, client("::ffff:1.2.3.4")));
	ck_assert(!acl_match(v4all, client("::1")));
	ck_assert(!acl_match(v4all, client("ffff::")));
	/* ::/0 is every address, IPv4 compared as mapped */
	ck_assert(acl_match(all, client("::")));
	ck_assert(acl_match(all, client("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
	ck_assert(acl_match(all, client("1.2.3.4")));
	ck_assert(acl_match(host4, client("203.0.113.9")));
	ck_assert(!acl_match(host4, client("203.0.113.8")));
	ck_assert(!acl_match(host4, client("203.0.113.10")));
	ck_assert(acl_match(host6, client("2001:db8::9")));
	ck_assert(!acl_match(host6, client("2001:db8::8")));
	ck_assert(!acl_match(host6, client("2001:db8::a")));
	acl_free(v4all);
	acl_free(all);
	acl_free(host4);
	acl_free(host6);
}
END_TEST

START_TEST(test_prefix_lengths_across_the_halves)
{
	/* /63, /64 and /65 cut at the boundary of the two 64-bit halves */
	struct acl *a = compiled("2001:db8:0:2::/63, 2001:db8:0:8::/64, "
	    "2001:db8:0:10:8000::/65");

	ck_assert(acl_match(a, client("2001:db8:0:3:ffff:ffff:ffff:ffff")));
	ck_assert(!acl_match(a, client("2001:db8:0:4::")));
	ck_assert(!acl_match(a, client("2001:db8:0:1:ffff:ffff:ffff:ffff")));
	ck_assert(acl_match(a, client("2001:db8:0:8:ffff:ffff:ffff:ffff")));
	ck_assert(!acl_match(a, client("2001:db8:0:9::")));
	ck_assert(acl_match(a, client("2001:db8:0:10:8000::")));
	ck_assert(!acl_match(a, client("2001:db8:0:10:7fff:ffff:ffff:ffff")));
	acl_free(a);
}
END_TEST

START_TEST(test_bad_input)
{
	refused("", "empty entry");
	refused("   ", "empty entry");
	refused("10.0.0.0/8,", "empty entry");
	refused(",10.0.0.0/8", "empty entry");
	refused("10.0.0.0/8,,192.168.0.0/16", "empty entry");
	refused("10.0.0.1/8", "'10.0.0.1/8': address bits set past the /8 prefix");
	refused("2001:db8::1/32", "bits set past the /32");
	refused("::ffff:10.0.0.1/104", "bits set");
	refused("10.0.0.0/33", "0 to 32");
	refused("::/129", "0 to 128");
	refused("10.0.0.0/", "prefix length");
	refused("10.0.0.0/-1", "prefix length");
	refused("10.0.0.0/+8", "prefix length");
	refused("10.0.0.0/ 8", "prefix length");
	refused("10.0.0.0/0008", "prefix length");
	refused("10.0.0.0/8/8", "prefix length");
	refused("10.0.0", "not an IPv4 address");
	refused("10.0.0.256", "not an IPv4 address");
	refused("010.0.0.0/8", "not an IPv4 address");
	refused("host.example", "not an IPv4 address");
	refused("10.0.0.0 /8", "not an IPv4 address");
	refused("[::1]", "not an IPv6 address");
	refused("fe80::1%eth0", "not an IPv6 address");
	refused("1::2::3", "not an IPv6 address");
	refused("10.0.0.0/8 192.168.0.0/16", "prefix length");
	refused("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "not an address");
	/* a good entry before a bad one is not kept either */
	refused("192.168.0.0/16, 10.0.0.1/8", "bits set");
}
END_TEST

START_TEST(test_spaces_and_several_lines)
{
	struct acl *a = acl_new();
	char err[256];

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(acl_add(a, " 10.0.0.0/8 ,\t192.168.0.0/16 ", err,
	    sizeof err), 0);
	ck_assert_int_eq(acl_add(a, "::1", err, sizeof err), 0);
	acl_compile(a);
	ck_assert(acl_match(a, client("10.1.1.1")));
	ck_assert(acl_match(a, client("192.168.3.4")));
	ck_assert(acl_match(a, client("::1")));
	ck_assert(!acl_match(a, client("172.16.0.1")));
	acl_free(a);
}
END_TEST

START_TEST(test_overlaps_merge)
{
	struct acl *a = compiled("10.0.0.0/8, 10.1.0.0/16, 10.0.0.5, "
	    "11.0.0.0/8, 9.0.0.0/8, ::/0, 2001:db8::/32");
	struct acl *b = compiled("::/0");
	struct acl *c = compiled("9.0.0.0/8, 10.0.0.0/7");
	struct acl *d = compiled("9.0.0.0/8, 10.0.0.0/8, 11.0.0.0/8");

	/* ::/0 swallows everything: one range, the same as ::/0 alone */
	ck_assert_uint_eq(a->n, 1);
	ck_assert(acl_equal(a, b));
	/* adjacent ranges merge: 9/8 + 10/7 is 9.0.0.0 to 11.255.255.255 */
	ck_assert_uint_eq(c->n, 1);
	ck_assert(acl_equal(c, d));
	ck_assert(!acl_equal(b, c));
	ck_assert(!acl_equal(b, NULL));
	ck_assert(acl_equal(NULL, NULL));
	acl_free(a);
	acl_free(b);
	acl_free(c);
	acl_free(d);
}
END_TEST

START_TEST(test_many_entries)
{
	struct acl *a = acl_new();
	char line[64], err[256];
	unsigned i;

	ck_assert_ptr_nonnull(a);
	/* every other /24 of 10.0.0.0/16, and the IPv6 /64s beside them */
	for (i = 0; i < 256; i += 2) {
		snprintf(line, sizeof line, "10.0.%u.0/24, 2001:db8:0:%x::/64", i, i);
		ck_assert_int_eq(acl_add(a, line, err, sizeof err), 0);
	}
	acl_compile(a);
	ck_assert_uint_eq(a->n, 256);
	for (i = 0; i < 256; i++) {
		char addr[64];

		snprintf(addr, sizeof addr, "10.0.%u.77", i);
		ck_assert_int_eq(acl_match(a, client(addr)), i % 2 == 0);
		snprintf(addr, sizeof addr, "::ffff:10.0.%u.1", i);
		ck_assert_int_eq(acl_match(a, client(addr)), i % 2 == 0);
		snprintf(addr, sizeof addr, "2001:db8:0:%x::1", i);
		ck_assert_int_eq(acl_match(a, client(addr)), i % 2 == 0);
	}
	ck_assert(!acl_match(a, client("10.1.0.0")));
	acl_free(a);
}
END_TEST

START_TEST(test_rules_deny_first_then_allow)
{
	struct acl_rules none = { NULL, NULL };
	struct acl_rules r;
	static union sa unix_client;

	r.deny = compiled("10.0.0.66");
	r.allow = compiled("10.0.0.0/8");
	ck_assert_int_eq(acl_check(&none, client("1.2.3.4")), ACL_PASS);
	ck_assert_int_eq(acl_check(&r, client("10.0.0.1")), ACL_PASS);
	/* deny first: inside the allow list too, still refused */
	ck_assert_int_eq(acl_check(&r, client("10.0.0.66")), ACL_DENIED);
	/* an allow list refuses everyone else */
	ck_assert_int_eq(acl_check(&r, client("11.0.0.1")), ACL_NOT_ALLOWED);
	/* an address of no IP family matches no rule */
	unix_client.sun.sun_family = AF_UNIX;
	ck_assert_int_eq(acl_check(&r, &unix_client.sa), ACL_NOT_ALLOWED);
	acl_free(r.allow);
	r.allow = NULL;
	ck_assert_int_eq(acl_check(&r, &unix_client.sa), ACL_PASS);
	ck_assert_int_eq(acl_check(&r, client("11.0.0.1")), ACL_PASS);
	ck_assert_int_eq(acl_check(&r, client("::ffff:10.0.0.66")), ACL_DENIED);
	acl_free(r.deny);
}
END_TEST

static Suite *acl_suite(void)
{
	Suite *s = suite_create("acl");
	TCase *tc = tcase_create("acl");

	tcase_add_test(tc, test_ipv4);
	tcase_add_test(tc, test_ipv6);
	tcase_add_test(tc, test_mapped_matches_ipv4_rules);
	tcase_add_test(tc, test_zero_and_full_prefixes);
	tcase_add_test(tc, test_prefix_lengths_across_the_halves);
	tcase_add_test(tc, test_bad_input);
	tcase_add_test(tc, test_spaces_and_several_lines);
	tcase_add_test(tc, test_overlaps_merge);
	tcase_add_test(tc, test_many_entries);
	tcase_add_test(tc, test_rules_deny_first_then_allow);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(acl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
