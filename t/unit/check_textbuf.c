/*
 * check_textbuf.c - unit tests for the growing text buffer: appends far
 * past any first size keep every byte in order, the text is always
 * NUL-terminated, and once an append fails the buffer stays failed and
 * textbuf_take gives NULL.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "textbuf.h"

START_TEST(test_grows_in_order)
{
	struct textbuf t = { 0 };
	char want[16];
	size_t len, off = 0;
	char *s;
	int i;

	for (i = 0; i < 5000; i++)
		textbuf_printf(&t, "%d,", i);
	ck_assert_uint_eq(t.len, strlen(t.buf));
	s = textbuf_take(&t, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(len, strlen(s));
	for (i = 0; i < 5000; i++) {
		snprintf(want, sizeof(want), "%d,", i);
		ck_assert_int_eq(strncmp(s + off, want, strlen(want)), 0);
		off += strlen(want);
	}
	ck_assert_uint_eq(off, len);
	ck_assert_ptr_null(t.buf);
	free(s);
}
END_TEST

START_TEST(test_one_long_append)
{
	struct textbuf t = { 0 };
	char *big = malloc(100001), *s;
	size_t len;

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', 100000);
	big[100000] = '\0';
	textbuf_printf(&t, "a");
	textbuf_printf(&t, "%s", big);
	textbuf_printf(&t, "b");
	s = textbuf_take(&t, &len);
	ck_assert_uint_eq(len, 100002);
	ck_assert_int_eq(s[0], 'a');
	ck_assert_int_eq(memcmp(s + 1, big, 100000), 0);
	ck_assert_str_eq(s + 100001, "b");
	free(s);
	free(big);
}
END_TEST

START_TEST(test_failed_stays_failed)
{
	struct textbuf t = { 0 };
	/* a euro sign, which the C locale (no setlocale here) cannot encode */
	const wchar_t euro[] = { 0x20ac, 0 };
	size_t len = 7;

	textbuf_printf(&t, "kept so far\n");
	/* vsnprintf fails (EILSEQ): an error, not a shortage of room */
	textbuf_printf(&t, "%ls", euro);
	ck_assert_int_eq(t.failed, 1);
	textbuf_printf(&t, "after\n");
	ck_assert_uint_eq(t.len, strlen("kept so far\n"));
	ck_assert_ptr_null(textbuf_take(&t, &len));
	ck_assert_uint_eq(len, 7);
	ck_assert_ptr_null(t.buf);
	ck_assert_int_eq(t.failed, 0);
}
END_TEST

static Suite *
textbuf_suite(void)
{
	Suite *s = suite_create("textbuf");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_grows_in_order);
	tcase_add_test(tc, test_one_long_append);
	tcase_add_test(tc, test_failed_stays_failed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(textbuf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
