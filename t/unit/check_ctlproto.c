/*
 * check_ctlproto.c - unit tests for the control protocol's parser and
 * formatter (src/ctlproto.c).
 *
 * Every verb of either side is parsed from the bytes the protocol text
 * (nettcpd(8), REGISTRATION) writes, field by field, and written back
 * byte for byte by ctl_format; every malformed message fails with its own
 * error; the limits (message size, tag and id ranges, HANDOFF's preamble)
 * are tried on both sides of the line.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ctlproto.h"
#include "nmf.h"

_Static_assert(CTL_PREAMBLE_MAX == NMF_PREAMBLE_MAX,
    "HANDOFF carries at most one whole preamble");

static int
span_is(struct ctl_span sp, const char *s)
{
	return sp.len == strlen(s) && memcmp(sp.p, s, sp.len) == 0;
}

/* Parse s (from side), expect verb, and check it formats back to s. */
static struct ctl_msg
good_len(const char *s, size_t len, enum ctl_side side, int verb)
{
	struct ctl_msg m;
	char out[CTL_MSG_MAX];
	int rc = ctl_parse(s, len, side, &m), n;

	ck_assert_msg(rc == verb, "%s: %d (%s)", s, rc, ctl_parse_error_text(rc));
	n = ctl_format(&m, out, sizeof(out));
	ck_assert_msg(n == (int)len && memcmp(out, s, len) == 0,
	    "%s: formatted back as %.*s", s, n < 0 ? 0 : n, out);
	return m;
}

static struct ctl_msg
good(const char *s, enum ctl_side side, int verb)
{
	return good_len(s, strlen(s), side, verb);
}

static void
bad_len(const char *s, size_t len, enum ctl_side side, int error)
{
	struct ctl_msg m;
	int rc = ctl_parse(s, len, side, &m);

	ck_assert_msg(rc == error, "%.*s: %d (%s), expected %d (%s)", (int)len, s,
	    rc, ctl_parse_error_text(rc), error, ctl_parse_error_text(error));
}

static void
bad(const char *s, enum ctl_side side, int error)
{
	bad_len(s, strlen(s), side, error);
}

START_TEST(client_verbs)
{
	struct ctl_msg m;

	m = good("HELLO 1 1", CTL_FROM_CLIENT, CTL_HELLO);
	ck_assert_uint_eq(m.tag, 1);
	ck_assert_uint_eq(m.version, 1);
	m = good("HELLO 4294967295 7", CTL_FROM_CLIENT, CTL_HELLO);
	ck_assert_uint_eq(m.tag, 4294967295u);
	ck_assert_uint_eq(m.version, 7); /* the daemon answers ERR version */

	m = good("REGISTER 2 net.tcp://+/svc/ proxy 127.0.0.1:9000",
	    CTL_FROM_CLIENT, CTL_REGISTER);
	ck_assert_uint_eq(m.tag, 2);
	ck_assert(span_is(m.via, "net.tcp://+/svc/"));
	ck_assert_int_eq(m.mode, CTL_MODE_PROXY);
	ck_assert(span_is(m.addr, "127.0.0.1:9000"));
	m = good("REGISTER 3 net.tcp://h/a proxy unix:/run/s.sock",
	    CTL_FROM_CLIENT, CTL_REGISTER);
	ck_assert(span_is(m.addr, "unix:/run/s.sock"));
	m = good("REGISTER 4 net.tcp://*/b handoff", CTL_FROM_CLIENT,
	    CTL_REGISTER);
	ck_assert_int_eq(m.mode, CTL_MODE_HANDOFF);
	ck_assert_uint_eq(m.addr.len, 0);

	m = good("UNREGISTER 5 9223372036854775807", CTL_FROM_CLIENT,
	    CTL_UNREGISTER);
	ck_assert_uint_eq(m.reg_id, 9223372036854775807u);
	m = good("VALIDATE 6 12 net.tcp://h:808/b/c", CTL_FROM_CLIENT,
	    CTL_VALIDATE);
	ck_assert_uint_eq(m.reg_id, 12);
	ck_assert(span_is(m.via, "net.tcp://h:808/b/c"));
	m = good("TAKEN 77", CTL_FROM_CLIENT, CTL_TAKEN);
	ck_assert_uint_eq(m.handoff_id, 77);
	ck_assert_uint_eq(m.tag, 0);
	m = good("LIST 8", CTL_FROM_CLIENT, CTL_LIST);
	ck_assert_uint_eq(m.tag, 8);
	m = good("STATS 9", CTL_FROM_CLIENT, CTL_STATS);
	ck_assert_uint_eq(m.tag, 9);
}
END_TEST

START_TEST(daemon_verbs)
{
	struct ctl_msg m;

	m = good("OK 1 1 nettcpd/1.2.3", CTL_FROM_DAEMON, CTL_OK);
	ck_assert_int_eq(m.ok, CTL_OK_HELLO);
	ck_assert_uint_eq(m.version, 1);
	ck_assert(span_is(m.name, "nettcpd/1.2.3"));
	m = good("OK 2 17", CTL_FROM_DAEMON, CTL_OK);
	ck_assert_int_eq(m.ok, CTL_OK_VALUE);
	ck_assert_uint_eq(m.value, 17);
	m = good("OK 3 0", CTL_FROM_DAEMON, CTL_OK); /* LIST of nothing */
	ck_assert_int_eq(m.ok, CTL_OK_VALUE);
	ck_assert_uint_eq(m.value, 0);
	m = good("OK 4", CTL_FROM_DAEMON, CTL_OK);
	ck_assert_int_eq(m.ok, CTL_OK_PLAIN);
	m = good("OK 5 yes", CTL_FROM_DAEMON, CTL_OK);
	ck_assert_int_eq(m.ok, CTL_OK_YES);
	m = good("OK 6 no", CTL_FROM_DAEMON, CTL_OK);
	ck_assert_int_eq(m.ok, CTL_OK_NO);

	m = good("ROUTE 7 static calc net.tcp://+/calc/ 10.0.0.1:1,10.0.0.2:2 - - 3",
	    CTL_FROM_DAEMON, CTL_ROUTE);
	ck_assert_int_eq(m.kind, CTL_KIND_STATIC);
	ck_assert(span_is(m.name, "calc"));
	ck_assert(span_is(m.via, "net.tcp://+/calc/"));
	ck_assert(span_is(m.addr, "10.0.0.1:1,10.0.0.2:2"));
	ck_assert_int_eq(m.uid, -1);
	ck_assert_int_eq(m.pid, -1);
	ck_assert_uint_eq(m.value, 3);
	m = good("ROUTE 7 proxy reg:4 net.tcp://+/r/ unix:/s 0 4242 0",
	    CTL_FROM_DAEMON, CTL_ROUTE);
	ck_assert_int_eq(m.kind, CTL_KIND_PROXY);
	ck_assert_int_eq(m.uid, 0);
	ck_assert_int_eq(m.pid, 4242);
	m = good("ROUTE 7 handoff reg:5 net.tcp://+/h/ handoff 4294967295 2147483647 18446744073709551615",
	    CTL_FROM_DAEMON, CTL_ROUTE);
	ck_assert_int_eq(m.kind, CTL_KIND_HANDOFF);
	ck_assert_int_eq(m.uid, 4294967295);
	ck_assert_uint_eq(m.value, UINT64_MAX);

	m = good("STAT 8 registrations 2", CTL_FROM_DAEMON, CTL_STAT);
	ck_assert(span_is(m.name, "registrations"));
	ck_assert_uint_eq(m.value, 2);

	m = good("ERR 9 denied uid 1000 is not allowed", CTL_FROM_DAEMON,
	    CTL_ERR);
	ck_assert_uint_eq(m.tag, 9);
	ck_assert_int_eq(m.code, CTL_E_DENIED);
	ck_assert(span_is(m.text, "uid 1000 is not allowed"));
	m = good("ERR 0 syntax  two spaces, kept ", CTL_FROM_DAEMON, CTL_ERR);
	ck_assert_uint_eq(m.tag, 0);
	ck_assert(span_is(m.text, " two spaces, kept "));

	m = good("REVOKED 3 conflict static route calc took net.tcp://+/x/",
	    CTL_FROM_DAEMON, CTL_REVOKED);
	ck_assert_uint_eq(m.reg_id, 3);
	ck_assert_int_eq(m.code, CTL_E_CONFLICT);
}
END_TEST

/* Each code by name, both ways. */
START_TEST(codes)
{
	for (unsigned c = 0; c < CTL_E_COUNT_; c++) {
		char s[64];
		struct ctl_msg m;

		snprintf(s, sizeof(s), "ERR 1 %s text", ctl_code_name(c));
		m = good(s, CTL_FROM_DAEMON, CTL_ERR);
		ck_assert_uint_eq(m.code, c);
	}
	ck_assert_ptr_null(ctl_code_name(CTL_E_COUNT_));
	ck_assert_str_eq(ctl_code_name(CTL_E_TLS), "tls");
	ck_assert_str_eq(ctl_verb_name(CTL_VALIDATE), "VALIDATE");
	ck_assert_str_eq(ctl_mode_name(CTL_MODE_HANDOFF), "handoff");
	ck_assert_str_eq(ctl_kind_name(CTL_KIND_STATIC), "static");
	ck_assert_int_eq(ctl_parse_error_code(CTL_PE_SIZE), CTL_E_SIZE);
	ck_assert_int_eq(ctl_parse_error_code(CTL_PE_BYTE), CTL_E_SYNTAX);
	for (int e = CTL_PE_ROUTE; e <= CTL_PE_EMPTY; e++)
		for (int f = e + 1; f <= CTL_PE_EMPTY; f++)
			ck_assert_str_ne(ctl_parse_error_text(e),
			    ctl_parse_error_text(f));
}
END_TEST

START_TEST(malformed)
{
	const enum ctl_side C = CTL_FROM_CLIENT, D = CTL_FROM_DAEMON;

	bad("", C, CTL_PE_EMPTY);
	bad(" HELLO 1 1", C, CTL_PE_SPACE);
	bad("HELLO 1 1 ", C, CTL_PE_SPACE);
	bad("HELLO  1 1", C, CTL_PE_SPACE);
	bad("HELLO 1 1\n", C, CTL_PE_BYTE);
	bad("HELLO\t1 1", C, CTL_PE_BYTE);
	bad_len("HELLO 1\0 1", 9, C, CTL_PE_BYTE);
	bad("HELLO 1 \x7f", C, CTL_PE_BYTE);
	bad("HELLO 1 \xc3\xa9", C, CTL_PE_BYTE);
	bad("hello 1 1", C, CTL_PE_VERB);
	bad("BYE 1", C, CTL_PE_VERB);
	bad("OK 1", C, CTL_PE_VERB);        /* a daemon's verb from a client */
	bad("HANDOFF 1 1 1\nx", C, CTL_PE_VERB);
	bad("LIST 1", D, CTL_PE_VERB);      /* and the other way round */
	bad("HELLO", C, CTL_PE_ARITY);
	bad("HELLO 1", C, CTL_PE_ARITY);
	bad("HELLO 1 1 1", C, CTL_PE_ARITY);
	bad("LIST 1 x", C, CTL_PE_ARITY);
	bad("REGISTER 1 net.tcp://h/a handoff 1.2.3.4:5", C, CTL_PE_ARITY);
	bad("REGISTER 1 net.tcp://h/a proxy", C, CTL_PE_ARITY);
	bad("REGISTER 1 net.tcp://h/a", C, CTL_PE_ARITY);
	bad("REGISTER 1 net.tcp://h/a forward 1.2.3.4:5", C, CTL_PE_MODE);
	bad("REGISTER 1 net.tcp://h/a PROXY 1.2.3.4:5", C, CTL_PE_MODE);
	bad("HELLO 0 1", C, CTL_PE_TAG);
	bad("HELLO 4294967296 1", C, CTL_PE_TAG);
	bad("HELLO 01 1", C, CTL_PE_TAG);
	bad("HELLO -1 1", C, CTL_PE_TAG);
	bad("HELLO +1 1", C, CTL_PE_TAG);
	bad("HELLO x 1", C, CTL_PE_TAG);
	bad("HELLO 1 0", C, CTL_PE_NUMBER);
	bad("HELLO 1 v1", C, CTL_PE_NUMBER);
	bad("HELLO 1 4294967296", C, CTL_PE_NUMBER);
	bad("UNREGISTER 1 0", C, CTL_PE_ID);
	bad("UNREGISTER 1 9223372036854775808", C, CTL_PE_ID);
	bad("UNREGISTER 1 99999999999999999999999", C, CTL_PE_ID);
	bad("TAKEN 0", C, CTL_PE_ID);
	bad("TAKEN 1 2", C, CTL_PE_ARITY);
	bad("VALIDATE 1 x net.tcp://h/", C, CTL_PE_ID);
	bad("VALIDATE 1 2", C, CTL_PE_ARITY);

	bad("OK 0", D, CTL_PE_TAG);
	bad("OK 1 maybe", D, CTL_PE_ANSWER);
	bad("OK 1 yes no", D, CTL_PE_ARITY);
	bad("OK 1 0 nettcpd/1", D, CTL_PE_NUMBER);
	bad("OK 1 1 nettcpd/1 x", D, CTL_PE_ARITY);
	bad("ROUTE 1 dynamic r net.tcp://h/ a:1 - - 0", D, CTL_PE_KIND);
	bad("ROUTE 1 static r net.tcp://h/ a:1 - - ", D, CTL_PE_SPACE);
	bad("ROUTE 1 static r net.tcp://h/ a:1 0 1 0", D, CTL_PE_ROUTE);
	bad("ROUTE 1 proxy r net.tcp://h/ a:1 - - 0", D, CTL_PE_ROUTE);
	bad("ROUTE 1 proxy r net.tcp://h/ a:1 0 - 0", D, CTL_PE_ROUTE);
	bad("ROUTE 1 proxy r net.tcp://h/ handoff 0 1 0", D, CTL_PE_ROUTE);
	bad("ROUTE 1 handoff r net.tcp://h/ a:1 0 1 0", D, CTL_PE_ROUTE);
	bad("ROUTE 1 proxy r net.tcp://h/ a:1 4294967296 1 0", D, CTL_PE_NUMBER);
	bad("ROUTE 1 proxy r net.tcp://h/ a:1 0 2147483648 0", D, CTL_PE_NUMBER);
	bad("ROUTE 1 proxy r net.tcp://h/ a:1 0 1 18446744073709551616", D,
	    CTL_PE_NUMBER);
	bad("STAT 1 x", D, CTL_PE_ARITY);
	bad("STAT 1 x -1", D, CTL_PE_NUMBER);
	bad("ERR 1 nope text", D, CTL_PE_CODE);
	bad("ERR 1 syntax", D, CTL_PE_TEXT);
	bad("ERR 1 syntax ", D, CTL_PE_SPACE);
	bad("ERR 1 syntax a\tb", D, CTL_PE_TEXT);
	bad("ERR 1 syntax a\nb", D, CTL_PE_TEXT);
	bad("REVOKED 0 conflict x", D, CTL_PE_ID);
	bad("REVOKED 1 conflict", D, CTL_PE_TEXT);
	bad("HANDOFF", D, CTL_PE_ARITY);
	bad("HANDOFF 1 2 3", D, CTL_PE_LENGTH);    /* no newline */
	bad("HANDOFF 1 2 3\nab", D, CTL_PE_LENGTH);
	bad("HANDOFF 1 2 3\nabcd", D, CTL_PE_LENGTH);
	bad("HANDOFF 1 2 0\n", D, CTL_PE_NUMBER);
	bad("HANDOFF 1 2\nab", D, CTL_PE_ARITY);
	bad("HANDOFF 1 2 2 x\nab", D, CTL_PE_ARITY);
	bad("HANDOFF 0 2 2\nab", D, CTL_PE_ID);
	bad("HANDOFF 1  2 2\nab", D, CTL_PE_SPACE);
	bad("HANDOFF 1 2 2 \nab", D, CTL_PE_SPACE);
}
END_TEST

/* On an error the tag, once read, is there for the ERR answer. */
START_TEST(tag_on_error)
{
	struct ctl_msg m;

	ck_assert_int_eq(ctl_parse("REGISTER 42 net.tcp://h/ bogus", 30,
	    CTL_FROM_CLIENT, &m), CTL_PE_MODE);
	ck_assert_uint_eq(m.tag, 42);
	ck_assert_int_eq(ctl_parse("REGISTER x", 10, CTL_FROM_CLIENT, &m),
	    CTL_PE_TAG);
	ck_assert_uint_eq(m.tag, 0);
}
END_TEST

START_TEST(size_limit)
{
	static char s[CTL_MSG_MAX + 200];
	const char *head = "ERR 1 syntax ";
	struct ctl_msg m;
	char out[CTL_MSG_MAX + 100];
	int n;

	memset(s, 'x', sizeof(s));
	memcpy(s, head, strlen(head));
	ck_assert_int_eq(ctl_parse(s, CTL_MSG_MAX, CTL_FROM_DAEMON, &m), CTL_ERR);
	ck_assert_uint_eq(m.text.len, CTL_MSG_MAX - strlen(head));
	ck_assert_int_eq(ctl_parse(s, CTL_MSG_MAX + 1, CTL_FROM_DAEMON, &m),
	    CTL_PE_SIZE);
	/* oversized from a client: size, whatever the bytes */
	ck_assert_int_eq(ctl_parse(s, CTL_MSG_MAX + 1, CTL_FROM_CLIENT, &m),
	    CTL_PE_SIZE);
	ck_assert_uint_eq(m.tag, 0);
	ck_assert_int_eq(ctl_parse_error_code(CTL_PE_SIZE), CTL_E_SIZE);

	/* a text too long is cut to fit, never refused */
	ck_assert_int_eq(ctl_parse(s, CTL_MSG_MAX, CTL_FROM_DAEMON, &m), CTL_ERR);
	m.text.len = CTL_MSG_MAX + 50;
	n = ctl_format(&m, out, sizeof(out));
	ck_assert_int_eq(n, CTL_MSG_MAX);
	/* but a token too long makes the message unsendable */
	memset(&m, 0, sizeof(m));
	m.verb = CTL_VALIDATE;
	m.tag = 1;
	m.reg_id = 1;
	m.via.p = s + 20;
	m.via.len = CTL_MSG_MAX;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);
}
END_TEST

START_TEST(handoff)
{
	static char s[CTL_HANDOFF_MAX + 1];
	char line[CTL_HANDOFF_LINE_MAX];
	struct ctl_msg m;
	int n;

	/* The preamble is raw: NULs, newlines, spaces, anything. */
	m = good_len("HANDOFF 5 3 6\n\x00\x01\n \xff\x0c", 20, CTL_FROM_DAEMON,
	    CTL_HANDOFF);
	ck_assert_uint_eq(m.handoff_id, 5);
	ck_assert_uint_eq(m.reg_id, 3);
	ck_assert_uint_eq(m.preamble.len, 6);
	ck_assert_int_eq(memcmp(m.preamble.p, "\x00\x01\n \xff\x0c", 6), 0);

	/* the largest: a whole preamble of NMF_PREAMBLE_MAX bytes */
	n = ctl_format_handoff_line(line, sizeof(line), CTL_ID_MAX, CTL_ID_MAX,
	    CTL_PREAMBLE_MAX);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(line[n - 1], '\n');
	memcpy(s, line, (size_t)n);
	memset(s + n, 0, CTL_PREAMBLE_MAX);
	ck_assert_int_eq(ctl_parse(s, (size_t)n + CTL_PREAMBLE_MAX,
	    CTL_FROM_DAEMON, &m), CTL_HANDOFF);
	ck_assert_uint_eq(m.preamble.len, CTL_PREAMBLE_MAX);
	ck_assert_ptr_eq(m.preamble.p, s + n);
	n = ctl_format_handoff_line(line, sizeof(line), 1, 1, 2);
	memcpy(s, line, (size_t)n);
	ck_assert_int_eq(ctl_parse(s, (size_t)n + CTL_PREAMBLE_MAX + 1,
	    CTL_FROM_DAEMON, &m), CTL_PE_LENGTH);
	ck_assert_int_eq(ctl_format_handoff_line(line, sizeof(line), 1, 1,
	    CTL_PREAMBLE_MAX + 1), -1);
	ck_assert_int_eq(ctl_format_handoff_line(line, sizeof(line), 0, 1, 1), -1);
	ck_assert_int_eq(ctl_format_handoff_line(line, 10, 1, 1, 1), -1);
	memcpy(s, "HANDOFF ", 8);
	ck_assert_int_eq(ctl_parse(s, sizeof(s), CTL_FROM_DAEMON, &m),
	    CTL_PE_SIZE);
}
END_TEST

/* The formatters refuse what would not parse, and never overrun. */
START_TEST(format_refusals)
{
	struct ctl_msg m;
	char out[256];
	char small[8];

	memset(&m, 0, sizeof(m));
	m.verb = CTL_HELLO;
	m.tag = 0;
	m.version = 1;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);
	m.tag = 1;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), 9);
	ck_assert_int_eq(ctl_format(&m, small, sizeof(small)), -1);
	ck_assert_int_eq(ctl_format(&m, small, 0), -1);

	m.verb = CTL_REGISTER;
	m.via = ctl_span_str("net.tcp://h/a b");
	m.mode = CTL_MODE_HANDOFF;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);
	m.via = ctl_span_str("");
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);
	m.via = ctl_span_str("net.tcp://h/a");
	m.mode = (enum ctl_mode)7;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);

	memset(&m, 0, sizeof(m));
	m.verb = CTL_UNREGISTER;
	m.tag = 1;
	m.reg_id = CTL_ID_MAX + 1u;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);
	m.verb = (enum ctl_verb)99;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);

	/* ERR: text made printable, empty text a dash */
	memset(&m, 0, sizeof(m));
	m.verb = CTL_ERR;
	m.code = CTL_E_VIA;
	m.text.p = "bad\n\x01via";
	m.text.len = 8;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), 18);
	ck_assert_int_eq(memcmp(out, "ERR 0 via bad??via", 18), 0);
	m.text = ctl_span_str(NULL);
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), 11);
	ck_assert_int_eq(memcmp(out, "ERR 0 via -", 11), 0);
	m.code = CTL_E_COUNT_;
	ck_assert_int_eq(ctl_format(&m, out, sizeof(out)), -1);
}
END_TEST

static Suite *
ctlproto_suite(void)
{
	Suite *s = suite_create("ctlproto");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, client_verbs);
	tcase_add_test(tc, daemon_verbs);
	tcase_add_test(tc, codes);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, tag_on_error);
	tcase_add_test(tc, size_limit);
	tcase_add_test(tc, handoff);
	tcase_add_test(tc, format_refusals);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ctlproto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
