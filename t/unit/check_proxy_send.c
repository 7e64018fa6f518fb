/*
 * check_proxy_send.c - unit tests for the PROXY header towards a backend:
 * the exact bytes of version 1 and 2 for TCP4 and TCP6 (the spec's own
 * examples where it gives them: HAProxy doc/proxy-protocol.txt), mapped
 * IPv4 written as IPv4, mixed families as TCP6, UNKNOWN and LOCAL for an
 * end that is neither, and the client key the pool compares.
 */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxy_send.h"

static const uint8_t sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

/* An address from its text and port: IPv4 if it has no ':'. */
static struct sockaddr_storage
sa(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') == NULL) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET, ip, &in->sin_addr), 1);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
	}
	return ss;
}

static size_t
header(enum proxy_send_version v, const char *sip, uint16_t sport,
    const char *dip, uint16_t dport, uint8_t *out)
{
	struct sockaddr_storage s = sa(sip, sport), d = sa(dip, dport);

	memset(out, 0xAA, PROXY_SEND_MAX);
	return proxy_send_header(v, (struct sockaddr *)&s, (struct sockaddr *)&d, out);
}

static void
assert_line(const uint8_t *out, size_t n, const char *want)
{
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_mem_eq(out, want, n);
}

START_TEST(test_v1_spec_examples)
{
	uint8_t out[PROXY_SEND_MAX];
	size_t n;

	n = header(PROXY_SEND_V1, "192.168.0.1", 56324, "192.168.0.11", 443, out);
	assert_line(out, n, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
	/* The spec's worst cases: 56 bytes for TCP4, 104 for TCP6. */
	n = header(PROXY_SEND_V1, "255.255.255.255", 65535, "255.255.255.255",
	    65535, out);
	assert_line(out, n,
	    "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
	ck_assert_uint_eq(n, 56);
	n = header(PROXY_SEND_V1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, out);
	assert_line(out, n, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");
	ck_assert_uint_eq(n, 104);
	ck_assert_uint_le(n, PROXY_SEND_MAX);
	n = header(PROXY_SEND_V1, "2001:db8::1", 1, "::1", 808, out);
	assert_line(out, n, "PROXY TCP6 2001:db8::1 ::1 1 808\r\n");
	n = header(PROXY_SEND_V1, "0.0.0.0", 0, "127.0.0.1", 808, out);
	assert_line(out, n, "PROXY TCP4 0.0.0.0 127.0.0.1 0 808\r\n");
}
END_TEST

START_TEST(test_v2_tcp4)
{
	static const uint8_t body[] = {
		0x21, 0x11, 0x00, 0x0C,
		0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0x0B,
		0xDC, 0x04, 0x01, 0xBB,
	};
	uint8_t out[PROXY_SEND_MAX];
	size_t n = header(PROXY_SEND_V2, "192.168.0.1", 56324, "192.168.0.11",
	    443, out);

	ck_assert_uint_eq(n, 28);
	ck_assert_mem_eq(out, sig, 12);
	ck_assert_mem_eq(out + 12, body, sizeof(body));
	ck_assert_uint_eq(out[28], 0xAA);  /* nothing written past it */
}
END_TEST

START_TEST(test_v2_tcp6)
{
	static const uint8_t body[] = {
		0x21, 0x21, 0x00, 0x24,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0xFF, 0xFF, 0x03, 0x28,
	};
	uint8_t out[PROXY_SEND_MAX];
	size_t n = header(PROXY_SEND_V2, "2001:db8::1", 65535, "::1", 808, out);

	ck_assert_uint_eq(n, 52);
	ck_assert_mem_eq(out, sig, 12);
	ck_assert_mem_eq(out + 12, body, sizeof(body));
}
END_TEST

/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: the header
 * names the IPv4 client. */
START_TEST(test_mapped_is_tcp4)
{
	static const uint8_t body[] = {
		0x21, 0x11, 0x00, 0x0C,
		192, 0, 2, 1, 192, 0, 2, 9, 0x30, 0x39, 0x03, 0x28,
	};
	uint8_t out[PROXY_SEND_MAX];
	size_t n;

	n = header(PROXY_SEND_V1, "::ffff:192.0.2.1", 12345, "::ffff:192.0.2.9",
	    808, out);
	assert_line(out, n, "PROXY TCP4 192.0.2.1 192.0.2.9 12345 808\r\n");
	n = header(PROXY_SEND_V2, "::ffff:192.0.2.1", 12345, "::ffff:192.0.2.9",
	    808, out);
	ck_assert_uint_eq(n, 28);
	ck_assert_mem_eq(out + 12, body, sizeof(body));
	/* A mapped client on a plain IPv4 destination: TCP4 too. */
	n = header(PROXY_SEND_V1, "::ffff:192.0.2.1", 1, "192.0.2.9", 2, out);
	assert_line(out, n, "PROXY TCP4 192.0.2.1 192.0.2.9 1 2\r\n");
}
END_TEST

/* One family per header: an IPv4 end beside an IPv6 one is mapped. */
START_TEST(test_mixed_families_are_tcp6)
{
	uint8_t out[PROXY_SEND_MAX];
	size_t n;

	n = header(PROXY_SEND_V1, "192.0.2.1", 1000, "2001:db8::9", 808, out);
	assert_line(out, n, "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::9 1000 808\r\n");
	n = header(PROXY_SEND_V2, "2001:db8::9", 1000, "192.0.2.1", 808, out);
	ck_assert_uint_eq(n, 52);
	ck_assert_uint_eq(out[13], 0x21);
	ck_assert_uint_eq(out[16 + 16 + 10], 0xFF);
	ck_assert_uint_eq(out[16 + 16 + 11], 0xFF);
	ck_assert_uint_eq(out[16 + 16 + 12], 192);
	ck_assert_uint_eq(out[16 + 16 + 15], 1);
}
END_TEST

START_TEST(test_unknown_and_local)
{
	static const uint8_t local[] = { 0x20, 0x00, 0x00, 0x00 };
	struct sockaddr_un un;
	struct sockaddr_storage d = sa("127.0.0.1", 808);
	uint8_t out[PROXY_SEND_MAX];
	size_t n;

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	n = proxy_send_header(PROXY_SEND_V1, (struct sockaddr *)&un,
	    (struct sockaddr *)&d, out);
	assert_line(out, n, "PROXY UNKNOWN\r\n");
	n = proxy_send_header(PROXY_SEND_V2, (struct sockaddr *)&d, NULL, out);
	ck_assert_uint_eq(n, 16);
	ck_assert_mem_eq(out, sig, 12);
	ck_assert_mem_eq(out + 12, local, sizeof(local));
	n = proxy_send_header(PROXY_SEND_V1, NULL, (struct sockaddr *)&d, out);
	assert_line(out, n, "PROXY UNKNOWN\r\n");
}
END_TEST

/* The pool's key: the address alone, a mapped one as IPv4. */
START_TEST(test_client_key)
{
	struct sockaddr_storage a = sa("192.0.2.1", 1000), b = sa("192.0.2.1", 2000),
	    m = sa("::ffff:192.0.2.1", 3000), o = sa("192.0.2.2", 1000),
	    v6 = sa("2001:db8::1", 1000), v6b = sa("2001:db8::1", 9);
	struct addr ka, kb, km, ko, k6, k6b;

	proxy_send_client_key((struct sockaddr *)&a, &ka);
	proxy_send_client_key((struct sockaddr *)&b, &kb);
	proxy_send_client_key((struct sockaddr *)&m, &km);
	proxy_send_client_key((struct sockaddr *)&o, &ko);
	proxy_send_client_key((struct sockaddr *)&v6, &k6);
	proxy_send_client_key((struct sockaddr *)&v6b, &k6b);
	ck_assert(addr_equal(&ka, &kb));
	ck_assert(addr_equal(&ka, &km));
	ck_assert(!addr_equal(&ka, &ko));
	ck_assert(!addr_equal(&ka, &k6));
	ck_assert(addr_equal(&k6, &k6b));
}
END_TEST

static Suite *proxy_send_suite(void)
{
	Suite *s = suite_create("proxy_send");
	TCase *tc = tcase_create("proxy_send");

	tcase_add_test(tc, test_v1_spec_examples);
	tcase_add_test(tc, test_v2_tcp4);
	tcase_add_test(tc, test_v2_tcp6);
	tcase_add_test(tc, test_mapped_is_tcp4);
	tcase_add_test(tc, test_mixed_families_are_tcp6);
	tcase_add_test(tc, test_unknown_and_local);
	tcase_add_test(tc, test_client_key);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proxy_send_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
