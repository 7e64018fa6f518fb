/*
 * check_proxy.c - unit tests for the PROXY protocol header parser.
 *
 * Every good header is fed whole, with the stream's next bytes after it,
 * split in two at every point and byte by byte; each prefix must ask for
 * more and the whole must give the same header.  Every bad one must fail
 * with its error no later than the byte that makes it bad, and the error
 * must stick.  The v2 headers are HAProxy's layout (proxy-protocol.txt
 * section 2.2), written out here byte by byte.  Last, proxy_trusted's
 * prefixes (an acl.c list): who may send a header at all.
 */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "proxy.h"

#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
/* The first bytes of a net.tcp preamble: what follows a header. */
#define NEXT "\x00\x01\x00\x01\x02"

struct good {
	const char *name;
	const char *bytes;
	size_t len;        /* of the header alone */
	unsigned version;
	int local;
	int af;
	const char *src, *dst;
	uint16_t sport, dport;
};

#define G(name, b, v, local, af, s, d, sp, dp) \
	{ name, b, sizeof(b) - 1, v, local, af, s, d, sp, dp }

static const struct good goods[] = {
	G("v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 808\r\n",
	    1, 0, AF_INET, "192.0.2.1", "198.51.100.2", 56324, 808),
	G("v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n",
	    1, 0, AF_INET6, "2001:db8::1", "::1", 65535, 0),
	G("v1 unknown", "PROXY UNKNOWN\r\n", 1, 1, 0, NULL, NULL, 0, 0),
	G("v1 unknown with addresses",
	    "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
	    1, 1, 0, NULL, NULL, 0, 0),
	/* The longest v1 line: 107 bytes (the spec's worst case). */
	G("v1 longest", "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	    1, 1, 0, NULL, NULL, 0, 0),
	G("v1 longest tcp6", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	    1, 0, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535),
	G("v2 tcp4", SIG "\x21\x11\x00\x0C" "\xC0\x00\x02\x01" "\xC6\x33\x64\x02"
	    "\xDC\x04" "\x03\x28", 2, 0, AF_INET, "192.0.2.1", "198.51.100.2",
	    56324, 808),
	G("v2 tcp6", SIG "\x21\x21\x00\x24"
	    "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
	    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
	    "\x00\x01" "\xFF\xFF", 2, 0, AF_INET6, "2001:db8::1", "::1", 1, 65535),
	G("v2 tcp4 with TLVs", SIG "\x21\x11\x00\x1B" "\x0A\x00\x00\x05"
	    "\x0A\x00\x00\x06" "\x00\x50" "\x01\xBB"
	    "\x04\x00\x00"                   /* a NOOP TLV, empty */
	    "\xEA\x00\x09" "vpce-0123",      /* AWS's VPC endpoint id, cut */
	    2, 0, AF_INET, "10.0.0.5", "10.0.0.6", 80, 443),
	G("v2 local", SIG "\x20\x00\x00\x00", 2, 1, 0, NULL, NULL, 0, 0),
	G("v2 local with addresses skipped", SIG "\x20\x11\x00\x0C"
	    "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0A\x0B\x0C",
	    2, 1, 0, NULL, NULL, 0, 0),
};
#define NGOODS (int)(sizeof(goods) / sizeof(goods[0]))

static void
check_addr(const struct sockaddr_storage *ss, int af, const char *ip,
    uint16_t port)
{
	char text[INET6_ADDRSTRLEN];

	ck_assert_int_eq(ss->ss_family, af);
	if (af == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sin->sin_addr, text,
		    sizeof(text)));
		ck_assert_uint_eq(ntohs(sin->sin_port), port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &sin6->sin6_addr, text,
		    sizeof(text)));
		ck_assert_uint_eq(ntohs(sin6->sin6_port), port);
	}
	ck_assert_str_eq(text, ip);
}

static void
check_header(const struct good *g, const struct proxy_header *h)
{
	ck_assert_uint_eq(h->len, g->len);
	ck_assert_uint_eq(h->version, g->version);
	ck_assert_int_eq(h->local, g->local);
	if (g->local)
		return;
	check_addr(&h->src, g->af, g->src, g->sport);
	check_addr(&h->dst, g->af, g->dst, g->dport);
}

/* The header and the stream's next bytes, in a buffer of exactly their
 * size, so that a read past them is caught by ASan and valgrind. */
static uint8_t *
with_next(const struct good *g, size_t *len)
{
	uint8_t *buf;

	*len = g->len + sizeof(NEXT) - 1;
	buf = malloc(*len);
	ck_assert_ptr_nonnull(buf);
	memcpy(buf, g->bytes, g->len);
	memcpy(buf + g->len, NEXT, sizeof(NEXT) - 1);
	return buf;
}

START_TEST(test_good_whole)
{
	const struct good *g = &goods[_i];
	struct proxy_parser p;
	struct proxy_header h;
	size_t len;
	uint8_t *buf = with_next(g, &len);

	proxy_parser_init(&p);
	ck_assert_int_eq(proxy_parse(&p, buf, len, &h), PROXY_DONE);
	check_header(g, &h);
	/* Sticky: the parser has finished. */
	ck_assert_int_eq(proxy_parse(&p, buf, len, &h), PROXY_ERR_DONE);
	free(buf);
}
END_TEST

/* Split in two at every point: the first part asks for more (or, past the
 * header, is already done), and the whole gives the same header. */
START_TEST(test_good_every_split)
{
	const struct good *g = &goods[_i];
	size_t len;
	uint8_t *buf = with_next(g, &len);

	for (size_t cut = 0; cut <= len; cut++) {
		struct proxy_parser p;
		struct proxy_header h;
		int first;

		proxy_parser_init(&p);
		first = proxy_parse(&p, buf, cut, &h);
		if (cut < g->len) {
			ck_assert_msg(first == PROXY_NEED_MORE, "%s: cut at %zu: %d",
			    g->name, cut, first);
			ck_assert_int_eq(proxy_parse(&p, buf, len, &h), PROXY_DONE);
		} else {
			ck_assert_int_eq(first, PROXY_DONE);
		}
		check_header(g, &h);
	}
	free(buf);
}
END_TEST

/* One byte at a time, each call with the buffer grown by one. */
START_TEST(test_good_byte_by_byte)
{
	const struct good *g = &goods[_i];
	struct proxy_parser p;
	struct proxy_header h;
	size_t len, n;
	uint8_t *buf = with_next(g, &len);
	int status = PROXY_NEED_MORE;

	proxy_parser_init(&p);
	for (n = 1; n <= len && status == PROXY_NEED_MORE; n++)
		status = proxy_parse(&p, buf, n, &h);
	ck_assert_int_eq(status, PROXY_DONE);
	ck_assert_uint_eq(n - 1, g->len);
	check_header(g, &h);
	free(buf);
}
END_TEST

struct bad {
	const char *name;
	const char *bytes;
	size_t len;
	int error;
	size_t at;         /* the error is known once this many bytes are in */
};

#define B(name, b, err, at) { name, b, sizeof(b) - 1, err, at }

static const struct bad bads[] = {
	/* No header at all: a net.tcp preamble straight away. */
	B("preamble", NEXT "\x0A", PROXY_ERR_SIGNATURE, 1),
	B("http", "GET / HTTP/1.1\r\n", PROXY_ERR_SIGNATURE, 1),
	B("v1 lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	    PROXY_ERR_SIGNATURE, 1),
	B("v1 prefix broken", "PROXX TCP4", PROXY_ERR_SIGNATURE, 5),
	B("v2 signature broken", "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0B"
	    "\x21\x11\x00\x0C", PROXY_ERR_SIGNATURE, 12),
	B("v2 version 1", SIG "\x11\x11\x00\x0C", PROXY_ERR_VERSION, 13),
	B("v2 version 3", SIG "\x31\x11\x00\x0C", PROXY_ERR_VERSION, 13),
	B("v2 command 2", SIG "\x22\x11\x00\x0C", PROXY_ERR_COMMAND, 13),
	B("v2 udp4", SIG "\x21\x12\x00\x0C", PROXY_ERR_FAMILY, 14),
	B("v2 unix", SIG "\x21\x31\x00\xD8", PROXY_ERR_FAMILY, 14),
	B("v2 unspec with PROXY", SIG "\x21\x00\x00\x00", PROXY_ERR_FAMILY, 14),
	B("v2 tcp4 too short", SIG "\x21\x11\x00\x0B" "\x01\x02\x03\x04\x05\x06"
	    "\x07\x08\x09\x0A\x0B", PROXY_ERR_LENGTH, 16),
	B("v2 tcp6 too short", SIG "\x21\x21\x00\x0C", PROXY_ERR_LENGTH, 16),
	/* Refused at the length, before any of it is awaited. */
	B("v2 length limit + 1", SIG "\x21\x11\x04\x01", PROXY_ERR_LENGTH, 16),
	B("v2 length 65535", SIG "\x20\x00\xFF\xFF", PROXY_ERR_LENGTH, 16),
	B("v2 TLV overruns", SIG "\x21\x11\x00\x10" "\x01\x02\x03\x04\x05\x06"
	    "\x07\x08\x09\x0A\x0B\x0C" "\x04\x00\x02\x00", PROXY_ERR_TLV, 32),
	B("v2 TLV head cut", SIG "\x21\x11\x00\x0E" "\x01\x02\x03\x04\x05\x06"
	    "\x07\x08\x09\x0A\x0B\x0C" "\x04\x00", PROXY_ERR_TLV, 30),
	B("v1 no CRLF in 107", "PROXY UNKNOWN "
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	    PROXY_ERR_TOO_LONG, 106),
	B("v1 108 bytes", "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n",
	    PROXY_ERR_TOO_LONG, 106),
	B("v1 LF alone", "PROXY UNKNOWN\n", PROXY_ERR_SYNTAX, 14),
	B("v1 CR alone", "PROXY UNKNOWN\rx", PROXY_ERR_SYNTAX, 15),
	B("v1 udp", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERR_FAMILY, 32),
	B("v1 empty", "PROXY \r\n", PROXY_ERR_FAMILY, 8),
	B("v1 unknownx", "PROXY UNKNOWNX\r\n", PROXY_ERR_FAMILY, 16),
	B("v1 two spaces", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
	    PROXY_ERR_SYNTAX, 33),
	B("v1 three fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
	    PROXY_ERR_SYNTAX, 30),
	B("v1 five fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
	    PROXY_ERR_SYNTAX, 34),
	B("v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
	    PROXY_ERR_SYNTAX, 33),
	B("v1 v6 in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", PROXY_ERR_ADDRESS, 24),
	B("v1 v4 in TCP6", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
	    PROXY_ERR_ADDRESS, 32),
	B("v1 leading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
	    PROXY_ERR_ADDRESS, 33),
	B("v1 port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
	    PROXY_ERR_ADDRESS, 36),
	B("v1 port 08", "PROXY TCP4 1.2.3.4 5.6.7.8 08 2\r\n",
	    PROXY_ERR_ADDRESS, 33),
	B("v1 port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +8 2\r\n",
	    PROXY_ERR_ADDRESS, 33),
	B("v1 host name", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
	    PROXY_ERR_ADDRESS, 34),
	B("v1 NUL in address", "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n",
	    PROXY_ERR_ADDRESS, 33),
};
#define NBADS (int)(sizeof(bads) / sizeof(bads[0]))

/* Fed byte by byte: more is asked for until exactly the byte that makes it
 * bad, then the error, which sticks. */
START_TEST(test_bad)
{
	const struct bad *b = &bads[_i];
	struct proxy_parser p;
	struct proxy_header h;
	uint8_t *buf = malloc(b->len);
	size_t n;
	int status = PROXY_NEED_MORE;

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, b->bytes, b->len);
	proxy_parser_init(&p);
	for (n = 1; n <= b->len && status == PROXY_NEED_MORE; n++)
		status = proxy_parse(&p, buf, n, &h);
	ck_assert_msg(status == b->error, "%s: %d, not %d", b->name, status,
	    b->error);
	ck_assert_msg(n - 1 == b->at, "%s: known at %zu, not %zu", b->name,
	    n - 1, b->at);
	ck_assert_int_eq(proxy_parse(&p, buf, b->len, &h), b->error);
	/* Whole, in one call, the same error. */
	proxy_parser_init(&p);
	ck_assert_int_eq(proxy_parse(&p, buf, b->len, &h), b->error);
	ck_assert_str_ne(proxy_status_text(b->error), "unknown PROXY status");
	free(buf);
}
END_TEST

/* The v2 length field at 0, 1, the limit and the limit + 1, with a LOCAL
 * header (which carries anything) and a PROXY one (TLVs after 12). */
START_TEST(test_v2_lengths)
{
	static uint8_t buf[PROXY_HEADER_MAX + 8];
	static const size_t lens[] = { 0, 1, 12, 13, 15, PROXY_V2_LEN_MAX,
	    PROXY_V2_LEN_MAX + 1 };
	struct proxy_parser p;
	struct proxy_header h;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int cmd = 0; cmd <= 1; cmd++) {
			size_t n = lens[i];
			int want;

			memset(buf, 0, sizeof(buf));
			memcpy(buf, SIG, 12);
			buf[12] = (uint8_t)(0x20 | cmd);
			buf[13] = 0x11;
			buf[14] = (uint8_t)(n >> 8);
			buf[15] = (uint8_t)n;
			if (n >= 15) {
				/* One TLV filling the rest after the addresses. */
				buf[28] = 0x04;
				buf[29] = (uint8_t)((n - 15) >> 8);
				buf[30] = (uint8_t)(n - 15);
			}
			if (n > PROXY_V2_LEN_MAX)
				want = PROXY_ERR_LENGTH;
			else if (cmd == 0)
				want = PROXY_DONE;
			else if (n < 12)
				want = PROXY_ERR_LENGTH;
			else if (n == 13)
				want = PROXY_ERR_TLV;
			else
				want = PROXY_DONE;
			proxy_parser_init(&p);
			ck_assert_msg(proxy_parse(&p, buf,
			    n > PROXY_V2_LEN_MAX ? sizeof(buf) : 16 + n, &h) == want,
			    "length %zu command %d", n, cmd);
			if (want == PROXY_DONE)
				ck_assert_uint_eq(h.len, 16 + n);
			/* One byte short of a good one asks for more. */
			if (want == PROXY_DONE && n > 0) {
				proxy_parser_init(&p);
				ck_assert_int_eq(proxy_parse(&p, buf, 15 + n, &h),
				    PROXY_NEED_MORE);
			}
		}
	}
}
END_TEST

START_TEST(test_empty_asks_for_more)
{
	struct proxy_parser p;
	struct proxy_header h;

	proxy_parser_init(&p);
	ck_assert_int_eq(proxy_parse(&p, (const uint8_t *)"", 0, &h),
	    PROXY_NEED_MORE);
}
END_TEST

/* proxy_trusted, an acl.h list: who may send a header. */
static struct sockaddr_storage
sockaddr_of(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		ss.ss_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip,
		    &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
	} else {
		ss.ss_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip,
		    &((struct sockaddr_in *)&ss)->sin_addr), 1);
	}
	return ss;
}

START_TEST(test_trusted_prefixes)
{
	static const char *const list[] = { "10.0.0.0/8", "192.0.2.7",
	    "2001:db8::/32", "::1", "198.51.100.128/25" };
	static const struct {
		const char *ip;
		int in;
	} cases[] = {
		{ "10.0.0.1", 1 }, { "10.255.255.255", 1 }, { "11.0.0.0", 0 },
		{ "9.255.255.255", 0 }, { "192.0.2.7", 1 }, { "192.0.2.8", 0 },
		{ "198.51.100.128", 1 }, { "198.51.100.127", 0 },
		{ "198.51.100.255", 1 }, { "2001:db8::1", 1 },
		{ "2001:db8:ffff::", 1 }, { "2001:db9::", 0 }, { "::1", 1 },
		{ "::2", 0 },
		/* An IPv4-mapped IPv6 peer is its IPv4 address. */
		{ "::ffff:10.1.2.3", 1 }, { "::ffff:192.0.2.8", 0 },
		/* IPv4 rules do not match IPv6 that merely ends alike. */
		{ "::10.1.2.3", 0 },
	};
	struct acl *a = acl_new();
	char why[128];

	ck_assert_ptr_nonnull(a);
	for (size_t i = 0; i < 5; i++)
		ck_assert_msg(acl_add(a, list[i], why, sizeof(why)) == 0,
		    "%s: %s", list[i], why);
	acl_compile(a);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(cases[i].ip);

		ck_assert_msg(acl_match(a, (struct sockaddr *)&ss) ==
		    cases[i].in, "%s", cases[i].ip);
	}
	acl_free(a);
}
END_TEST

START_TEST(test_trusted_everything_and_nothing)
{
	struct sockaddr_storage v4 = sockaddr_of("203.0.113.1");
	struct sockaddr_storage v6 = sockaddr_of("2001:db8::1");
	struct acl *all4 = acl_new(), *none = acl_new();
	char why[128];

	ck_assert_int_eq(acl_add(all4, "0.0.0.0/0", why, sizeof(why)), 0);
	acl_compile(all4);
	acl_compile(none);
	ck_assert_int_eq(acl_match(all4, (struct sockaddr *)&v4), 1);
	ck_assert_int_eq(acl_match(all4, (struct sockaddr *)&v6), 0);
	ck_assert_int_eq(acl_match(none, (struct sockaddr *)&v4), 0);
	acl_free(all4);
	acl_free(none);
}
END_TEST

START_TEST(test_trusted_bad)
{
	static const char *const bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33",
	    "10.0.0.1/8", "10.0.0.0/8x", "10.0.0.0/+8", "10.0.0.0/-1",
	    "::1/129", "2001:db8::1/32", "[::1]", "[::1]/128", "localhost",
	    "10.0.0", "010.0.0.1", "10.0.0.0/99999999999999999999",
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255x" };
	struct acl *a = acl_new();
	char why[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		ck_assert_msg(acl_add(a, bad[i], why, sizeof(why)) < 0, "%s",
		    bad[i]);
		ck_assert_msg(why[0] != '\0', "%s: no reason", bad[i]);
	}
	acl_free(a);
}
END_TEST

static Suite *
proxy_suite(void)
{
	Suite *suite = suite_create("proxy");
	TCase *good = tcase_create("good");
	TCase *bad = tcase_create("bad");
	TCase *trusted = tcase_create("trusted");

	tcase_add_loop_test(good, test_good_whole, 0, NGOODS);
	tcase_add_loop_test(good, test_good_every_split, 0, NGOODS);
	tcase_add_loop_test(good, test_good_byte_by_byte, 0, NGOODS);
	tcase_add_test(good, test_empty_asks_for_more);
	suite_add_tcase(suite, good);

	tcase_add_loop_test(bad, test_bad, 0, NBADS);
	tcase_add_test(bad, test_v2_lengths);
	suite_add_tcase(suite, bad);

	tcase_add_test(trusted, test_trusted_prefixes);
	tcase_add_test(trusted, test_trusted_everything_and_nothing);
	tcase_add_test(trusted, test_trusted_bad);
	suite_add_tcase(suite, trusted);
	return suite;
}

int
main(void)
{
	SRunner *runner = srunner_create(proxy_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
