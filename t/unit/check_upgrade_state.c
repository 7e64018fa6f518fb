/*
 * check_upgrade_state.c - unit tests for the control state a binary
 * upgrade hands over: what is formatted is parsed back the same, and
 * every malformed line (another version, a record unknown, a field out of
 * range, a connection not listed, a descriptor named twice, no end, bytes
 * after it, a NUL) is refused with its line number.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upgrade_state.h"

START_TEST(test_round_trip)
{
	struct upgrade_state a, b;
	char err[128];
	size_t len;
	char *text;

	upgrade_state_init(&a);
	a.next_reg_id = 12;
	a.next_handoff_id = 9223372036854775807ULL;
	a.listener = 5;
	ck_assert_int_eq(upgrade_state_add_conn(&a, 6), 0);
	ck_assert_int_eq(upgrade_state_add_conn(&a, 7), 0);
	ck_assert_int_eq(upgrade_state_add_reg(&a, 0, 3, CTL_MODE_HANDOFF,
	    "net.tcp://+/a/", NULL), 0);
	ck_assert_int_eq(upgrade_state_add_reg(&a, 1, 11, CTL_MODE_PROXY,
	    "net.tcp://host/b/", "unix:/run/b.sock,[::1]:9000"), 0);
	ck_assert_int_eq(upgrade_state_add_pending(&a, 0, 40, 3, 8, 4.25), 0);
	text = upgrade_state_format(&a, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "nettcpd-upgrade-state 1\n"
	    "ids 12 9223372036854775807\n"
	    "listener 5\nconn 6\nconn 7\n"
	    "reg 0 3 handoff net.tcp://+/a/\n"
	    "reg 1 11 proxy net.tcp://host/b/ unix:/run/b.sock,[::1]:9000\n"
	    "pending 0 40 3 8 4250\nend\n");
	ck_assert_int_eq(upgrade_state_parse(text, len, &b, err, sizeof(err)), 0);
	ck_assert(b.next_reg_id == 12 && b.next_handoff_id == a.next_handoff_id);
	ck_assert_int_eq(b.listener, 5);
	ck_assert_uint_eq(b.nconns, 2);
	ck_assert_int_eq(b.conns[1], 7);
	ck_assert_uint_eq(b.nregs, 2);
	ck_assert_int_eq(b.regs[0].mode, CTL_MODE_HANDOFF);
	ck_assert_ptr_null(b.regs[0].backend);
	ck_assert_str_eq(b.regs[1].backend, "unix:/run/b.sock,[::1]:9000");
	ck_assert(b.regs[1].conn == 1 && b.regs[1].id == 11);
	ck_assert_uint_eq(b.npending, 1);
	ck_assert(b.pending[0].id == 40 && b.pending[0].reg_id == 3 &&
	    b.pending[0].fd == 8);
	ck_assert_double_eq_tol(b.pending[0].left, 4.25, 1e-9);
	free(text);
	upgrade_state_free(&a);
	upgrade_state_free(&b);
}
END_TEST

START_TEST(test_nothing_to_hand_over)
{
	struct upgrade_state st;
	char err[128];
	const char *text = "nettcpd-upgrade-state 1\nids 1 1\nend\n";

	ck_assert_int_eq(upgrade_state_parse(text, strlen(text), &st, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(st.listener, -1);
	ck_assert(st.nconns == 0 && st.nregs == 0 && st.npending == 0);
	upgrade_state_free(&st);
}
END_TEST

/* Each text is refused, naming the line. */
START_TEST(test_refused)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
		{ "nettcpd-upgrade-state 2\nids 1 1\nend\n", "line 1: not a version 1" },
		{ "", "line 1: no end" },
		{ "nettcpd-upgrade-state 1\nids 1 1\n", "line 3: no end" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nend", "line 3: a line without" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nend\nconn 4\n", "line 4: bytes after end" },
		{ "nettcpd-upgrade-state 1\nend\n", "line 2: end out of place" },
		{ "nettcpd-upgrade-state 1\nids 0 1\nend\n", "line 2: bad ids" },
		{ "nettcpd-upgrade-state 1\nids 1 9223372036854775808\nend\n",
		  "line 2: bad ids" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nids 2 2\nend\n", "line 3: bad ids" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nfoo 1\nend\n", "line 3: unknown record" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn -4\nend\n", "line 3: bad descriptor" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\nconn 4\nend\n",
		  "line 4: bad descriptor" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nlistener 4\nlistener 5\nend\n",
		  "line 4: a second listener" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nreg 0 1 handoff net.tcp://h/\nend\n",
		  "line 3: bad reg" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\nreg 1 1 handoff net.tcp://h/\nend\n",
		  "line 4: bad reg" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\nreg 0 1 proxy net.tcp://h/\nend\n",
		  "line 4: bad reg" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\nreg 0 1 handoff  x\nend\n",
		  "line 4: bad reg" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\nreg 0 1 handoff\nend\n",
		  "line 4: bad reg" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\npending 0 1 1 4 10\nend\n",
		  "line 4: bad pending" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\npending 0 1 1 5 86400001\nend\n",
		  "line 4: bad pending" },
		{ "nettcpd-upgrade-state 1\nids 1 1\nconn 4\npending 0 1 1 5 1 2\nend\n",
		  "line 4: too many fields" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct upgrade_state st;
		char err[128];

		ck_assert_msg(upgrade_state_parse(cases[i].text,
		    strlen(cases[i].text), &st, err, sizeof(err)) == -1,
		    "case %zu taken", i);
		ck_assert_msg(strncmp(err, cases[i].err, strlen(cases[i].err)) == 0,
		    "case %zu: '%s', not '%s'", i, err, cases[i].err);
		ck_assert(st.nconns == 0 && st.nregs == 0 && st.listener == -1);
	}
}
END_TEST

START_TEST(test_nul_refused)
{
	static const char text[] = "nettcpd-upgrade-state 1\nids 1 1\0\nend\n";
	struct upgrade_state st;
	char err[128];

	ck_assert_int_eq(upgrade_state_parse(text, sizeof(text) - 1, &st, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "line 0: a NUL byte");
}
END_TEST

START_TEST(test_add_checks)
{
	struct upgrade_state st;

	upgrade_state_init(&st);
	ck_assert_int_eq(upgrade_state_add_conn(&st, -1), -1);
	ck_assert_int_eq(upgrade_state_add_reg(&st, 0, 1, CTL_MODE_HANDOFF,
	    "net.tcp://h/", NULL), -1);     /* no connection 0 */
	ck_assert_int_eq(upgrade_state_add_conn(&st, 3), 0);
	ck_assert_int_eq(upgrade_state_add_reg(&st, 0, 1, CTL_MODE_HANDOFF,
	    "net.tcp://h/ x", NULL), -1);   /* a space */
	ck_assert_int_eq(upgrade_state_add_reg(&st, 0, 0, CTL_MODE_HANDOFF,
	    "net.tcp://h/", NULL), -1);     /* id 0 */
	ck_assert_int_eq(upgrade_state_add_reg(&st, 0, 1, CTL_MODE_PROXY,
	    "net.tcp://h/", ""), -1);       /* no backend */
	ck_assert_int_eq(upgrade_state_add_pending(&st, 1, 1, 1, 4, 1), -1);
	ck_assert_uint_eq(st.nregs + st.npending, 0);
	upgrade_state_free(&st);
}
END_TEST

static Suite *
upgrade_state_suite(void)
{
	Suite *s = suite_create("upgrade_state");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_nothing_to_hand_over);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_nul_refused);
	tcase_add_test(tc, test_add_checks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(upgrade_state_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
