/*
 * check_decide.c - unit tests for the routing decision: preamble bytes in,
 * and out comes read more, forward to a route, answer the TLS upgrade, a
 * fault, or a reset; no socket anywhere.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "decide.h"
#include "via.h"

static struct route_table *table;
static struct via parsed;     /* several KiB: off check's stack */
static SSL_CTX *tls_ctx;
static const struct acl_rules open_rules;   /* no allow, no deny */

/* The client every test but the access ones is: 127.0.0.1. */
static const struct sockaddr *client_at(const char *ip)
{
	static struct sockaddr_in sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return (const struct sockaddr *)&sin;
}

static const struct sockaddr *client(void)
{
	return client_at("127.0.0.1");
}

static struct acl *list(const char *text)
{
	struct acl *a = acl_new();
	char err[128];

	ck_assert_ptr_nonnull(a);
	ck_assert_msg(acl_add(a, text, err, sizeof err) == 0, "%s", err);
	acl_compile(a);
	return a;
}

/* Route name, backend port, prefix; terminate: the route runs TLS. */
static void add(const char *name, const char *prefix, int terminate)
{
	struct addr backend;
	const char *why = NULL;
	int ri;

	memset(&backend, 0, sizeof backend);
	ri = routes_add_route(table, name, &backend, "127.0.0.1:9000");
	ck_assert_int_ge(ri, 0);
	ck_assert_msg(via_parse(prefix, strlen(prefix), VIA_ALLOW_WILDCARD,
	    &parsed, &why) == 0, "%s: %s", prefix, why);
	ck_assert_int_eq(routes_add_prefix(table, ri, &parsed, NULL), 0);
	if (terminate)
		routes_set_tls(table, ri, tls_ctx);
}

static void setup(void)
{
	tls_ctx = SSL_CTX_new(TLS_server_method());
	ck_assert_ptr_nonnull(tls_ctx);
	table = routes_new();
	ck_assert_ptr_nonnull(table);
	add("a", "net.tcp://+/A", 0);
	add("ported", "net.tcp://+:808/P", 0);
	add("secure", "net.tcp://+/Secure", 1);
}

static void teardown(void)
{
	routes_unref(table);
	SSL_CTX_free(tls_ctx);
}

/* A preamble: version major.minor, mode, Via, known encoding 8, then
 * Preamble End or an Upgrade Request for upgrade. */
static size_t build(uint8_t *out, uint8_t major, uint8_t mode, const char *via,
    const char *upgrade)
{
	size_t n = 0, len = strlen(via);

	out[n++] = 0x00;
	out[n++] = major;
	out[n++] = 0x00;
	out[n++] = 0x01;
	out[n++] = mode;
	out[n++] = 0x02;
	out[n++] = (uint8_t)len;   /* the tests' Vias are under 128 bytes */
	memcpy(out + n, via, len);
	n += len;
	out[n++] = 0x03;
	out[n++] = 0x08;
	if (upgrade != NULL) {
		out[n++] = 0x09;
		out[n++] = (uint8_t)strlen(upgrade);
		memcpy(out + n, upgrade, strlen(upgrade));
		n += strlen(upgrade);
	} else {
		out[n++] = 0x0C;
	}
	return n;
}

/* Decide on the whole of buf at once. */
static enum decision whole(const uint8_t *buf, size_t len, uint16_t port,
    struct preamble *p, struct verdict *v)
{
	preamble_start(p);
	return preamble_decide(p, table, &open_rules, client(), port, buf, len, v);
}

START_TEST(test_forward_at_preamble_end)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/A/Calc", NULL);
	struct preamble p;
	struct verdict v;

	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FORWARD);
	ck_assert_pstr_eq(p.route->name, "a");
	ck_assert_uint_eq(p.via_len, strlen("net.tcp://host/A/Calc"));
	ck_assert_int_eq(memcmp(buf + p.via_off, "net.tcp://host/A/Calc", p.via_len), 0);
	ck_assert_uint_eq(p.parser.pos, len);
	/* singleton sessions too */
	len = build(buf, 1, 1, "net.tcp://host/A", NULL);
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FORWARD);
}
END_TEST

START_TEST(test_every_split_waits_then_decides_the_same)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/A", NULL), cut;
	struct preamble p;
	struct verdict v;

	/* The bytes arrive one at a time: nothing is decided before the last. */
	for (cut = 1; cut <= len; cut++) {
		size_t at;

		preamble_start(&p);
		for (at = cut; at < len; at += cut)
			ck_assert_int_eq(preamble_decide(&p, table, &open_rules, client(), 808, buf, at, &v),
			    DECIDE_MORE);
		ck_assert_int_eq(preamble_decide(&p, table, &open_rules, client(), 808, buf, len, &v),
		    DECIDE_FORWARD);
		ck_assert_pstr_eq(p.route->name, "a");
	}
}
END_TEST

START_TEST(test_no_route_faults_at_the_via)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/Admin", NULL);
	struct preamble p;
	struct verdict v;

	/* decided as soon as the Via is in: the rest need not come */
	ck_assert_int_eq(whole(buf, len - 3, 808, &p, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_ENDPOINT_NOT_FOUND);
	ck_assert_str_eq(v.why, "no route");
	ck_assert_ptr_null(p.route);
	ck_assert_uint_gt(p.via_len, 0);   /* the log line names the Via */
	/* the port is the one the client connected to */
	len = build(buf, 1, 2, "net.tcp://host:808/P", NULL);
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FORWARD);
	ck_assert_int_eq(whole(buf, len, 8808, &p, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_ENDPOINT_NOT_FOUND);
}
END_TEST

START_TEST(test_version_and_mode_faults)
{
	uint8_t buf[256];
	size_t len = build(buf, 2, 2, "net.tcp://host/A", NULL);
	struct preamble p;
	struct verdict v;

	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_UNSUPPORTED_VERSION);
	ck_assert_str_eq(v.why, "unsupported framing version");
	len = build(buf, 1, 5, "net.tcp://host/A", NULL);
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_UNSUPPORTED_MODE);
}
END_TEST

START_TEST(test_malformed_resets)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://ho st/A", NULL);
	struct preamble p;
	struct verdict v;

	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_RESET);
	ck_assert_msg(strncmp(v.why, "malformed Via (", 15) == 0, "%s", v.why);
	/* a record type no preamble has, at byte 0 */
	buf[0] = 0x42;
	ck_assert_int_eq(whole(buf, 1, 808, &p, &v), DECIDE_RESET);
	ck_assert_msg(strstr(v.why, "malformed preamble (") == v.why &&
	    strstr(v.why, "at byte 0") != NULL, "%s", v.why);
	/* a Via whose size claims more than a Via may hold */
	memcpy(buf, "\x00\x01\x00\x01\x02\x02\xff\xff\x7f", 9);
	ck_assert_int_eq(whole(buf, 9, 808, &p, &v), DECIDE_RESET);
}
END_TEST

START_TEST(test_terminating_route)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/Secure/x", "application/ssl-tls");
	struct preamble p;
	struct verdict v;

	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_UPGRADE);
	ck_assert_pstr_eq(p.route->name, "secure");
	/* the decrypted records go right after the Encoding record */
	ck_assert_uint_eq(p.clear_end, len - 2 - strlen("application/ssl-tls"));
	/* another upgrade cannot be served here */
	len = build(buf, 1, 2, "net.tcp://host/Secure", "application/negotiate");
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_UPGRADE_INVALID);
	ck_assert_str_eq(v.why, "upgrade 'application/negotiate' cannot be served "
	    "by a tls = terminate route");
	/* nor a clear session: no upgrade at all */
	len = build(buf, 1, 2, "net.tcp://host/Secure", NULL);
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_UPGRADE_INVALID);
	ck_assert_str_eq(v.why, "client did not ask for the TLS upgrade this "
	    "route requires");
	/* a name that would forge a log line is escaped */
	len = build(buf, 1, 2, "net.tcp://host/Secure", "x\n' forged");
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FAULT);
	ck_assert_ptr_null(strchr(v.why, '\n'));
	ck_assert_ptr_nonnull(strstr(v.why, "x\\x0a\\x27 forged"));
}
END_TEST

START_TEST(test_passthrough_upgrade_is_the_services)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/A", "application/ssl-tls");
	struct preamble p;
	struct verdict v;

	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FORWARD);
	ck_assert_pstr_eq(p.route->name, "a");
	ck_assert_int_eq(p.parser.stage, NMF_STAGE_UPGRADED);
}
END_TEST

/* Route "a" denies 10.0.0.2; "secure" admits 10.0.0.0/8 only. */
static void deny_some(void)
{
	routes_set_acl(table, 0, list("10.0.0.2"), NULL);
	routes_set_acl(table, 2, NULL, list("10.0.0.0/8"));
}

START_TEST(test_refused_client_at_the_via)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/A/x", NULL), via_end;
	struct preamble p;
	struct verdict v;

	deny_some();
	via_end = len - 3;   /* the Via is in; the Encoding and End are not */
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &open_rules,
	    client_at("10.0.0.2"), 808, buf, via_end, &v), DECIDE_DENY);
	ck_assert_int_eq(v.fault, NMF_FAULT_ENDPOINT_NOT_FOUND);
	ck_assert_str_eq(v.why, "refused by the route's deny");
	ck_assert_pstr_eq(p.route->name, "a");
	/* anyone else, and an IPv4-mapped address is the IPv4 one */
	ck_assert_int_eq(whole(buf, len, 808, &p, &v), DECIDE_FORWARD);
	{
		struct sockaddr_in6 six;

		memset(&six, 0, sizeof six);
		six.sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, "::ffff:10.0.0.2",
		    &six.sin6_addr), 1);
		preamble_start(&p);
		ck_assert_int_eq(preamble_decide(&p, table, &open_rules,
		    (const struct sockaddr *)&six, 808, buf, len, &v), DECIDE_DENY);
	}
}
END_TEST

START_TEST(test_refused_before_the_tls_upgrade)
{
	uint8_t buf[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/Secure", "application/ssl-tls");
	struct preamble p;
	struct verdict v;

	deny_some();
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &open_rules, client(), 808,
	    buf, len, &v), DECIDE_DENY);
	ck_assert_str_eq(v.why, "not in the route's allow");
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &open_rules,
	    client_at("10.9.9.9"), 808, buf, len, &v), DECIDE_UPGRADE);
}
END_TEST

START_TEST(test_global_rules_come_first_and_cover_unrouted_vias)
{
	uint8_t buf[256], none[256];
	size_t len = build(buf, 1, 2, "net.tcp://host/A", NULL);
	size_t nlen = build(none, 1, 2, "net.tcp://host/Nowhere", NULL);
	struct acl_rules global = { list("192.0.2.0/24"), list("192.0.2.0/23") };
	struct preamble p;
	struct verdict v;

	deny_some();
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &global,
	    client_at("192.0.2.1"), 808, buf, len, &v), DECIDE_DENY);
	ck_assert_str_eq(v.why, "refused by [global] deny");
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &global,
	    client_at("10.0.0.1"), 808, buf, len, &v), DECIDE_DENY);
	ck_assert_str_eq(v.why, "not in [global] allow");
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &global,
	    client_at("192.0.3.1"), 808, buf, len, &v), DECIDE_FORWARD);
	/* a Via without a route: refused by [global], or not found, the
	 * same fault either way */
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &global,
	    client_at("192.0.2.1"), 808, none, nlen, &v), DECIDE_DENY);
	ck_assert_int_eq(v.fault, NMF_FAULT_ENDPOINT_NOT_FOUND);
	preamble_start(&p);
	ck_assert_int_eq(preamble_decide(&p, table, &global,
	    client_at("192.0.3.1"), 808, none, nlen, &v), DECIDE_FAULT);
	ck_assert_int_eq(v.fault, NMF_FAULT_ENDPOINT_NOT_FOUND);
	acl_free(global.deny);
	acl_free(global.allow);
}
END_TEST

static Suite *decide_suite(void)
{
	Suite *s = suite_create("decide");
	TCase *tc = tcase_create("decide");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_forward_at_preamble_end);
	tcase_add_test(tc, test_every_split_waits_then_decides_the_same);
	tcase_add_test(tc, test_no_route_faults_at_the_via);
	tcase_add_test(tc, test_version_and_mode_faults);
	tcase_add_test(tc, test_malformed_resets);
	tcase_add_test(tc, test_terminating_route);
	tcase_add_test(tc, test_passthrough_upgrade_is_the_services);
	tcase_add_test(tc, test_refused_client_at_the_via);
	tcase_add_test(tc, test_refused_before_the_tls_upgrade);
	tcase_add_test(tc, test_global_rules_come_first_and_cover_unrouted_vias);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(decide_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
