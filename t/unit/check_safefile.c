/*
 * check_safefile.c - unit tests for safefile_open: what it refuses (a
 * symbolic link, a hard link, a FIFO, a directory, and as root a directory
 * others may write) and that it opens an existing file without truncating
 * it.  Each test works in a directory of its own, as root or not.
 */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safefile.h"

static char dir[1024];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "%s/nettcpd-safefile-XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* dir/name, in a buffer the next call reuses */
static const char *
in_dir(const char *name)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* safefile_open(path) is refused, and err says why. */
static void
refused(const char *path, const char *why)
{
	char err[SAFEFILE_ERR_MAX] = "";

	ck_assert_int_eq(safefile_open(path, O_WRONLY | O_APPEND, 0640, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, why) != NULL, "'%s' lacks '%s'", err, why);
	ck_assert_msg(strstr(err, path) != NULL, "'%s' lacks the path", err);
}

START_TEST(test_creates_with_its_mode_and_appends_without_truncating)
{
	char err[SAFEFILE_ERR_MAX], buf[16];
	const char *path = in_dir("log");
	struct stat st;
	int fd, rfd;

	umask(022);
	fd = safefile_open(path, O_WRONLY | O_APPEND, 0640, err, sizeof(err));
	ck_assert_msg(fd >= 0, "%s", err);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0640);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(write(fd, "one\n", 4), 4);
	close(fd);
	fd = safefile_open(path, O_WRONLY | O_APPEND, 0640, err, sizeof(err));
	ck_assert_msg(fd >= 0, "%s", err);
	ck_assert_int_eq(write(fd, "two\n", 4), 4);
	close(fd);
	rfd = open(path, O_RDONLY);
	ck_assert_int_eq(read(rfd, buf, sizeof(buf)), 8);
	ck_assert_int_eq(memcmp(buf, "one\ntwo\n", 8), 0);
	close(rfd);
}
END_TEST

START_TEST(test_a_symbolic_link_is_refused_and_its_target_not_made)
{
	char *target = strdup(in_dir("target"));

	ck_assert_int_eq(symlink(target, in_dir("log")), 0);
	refused(in_dir("log"), "refused: a symbolic link");
	ck_assert_int_eq(access(target, F_OK), -1);
	free(target);
}
END_TEST

START_TEST(test_a_hard_link_is_refused_and_left_as_it_was)
{
	char *other = strdup(in_dir("other")), buf[16];
	int fd;

	write_file(other, "kept\n");
	ck_assert_int_eq(link(other, in_dir("log")), 0);
	refused(in_dir("log"), "refused: a file with 2 hard links");
	fd = open(other, O_RDONLY);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 5);
	close(fd);
	free(other);
}
END_TEST

START_TEST(test_a_fifo_or_a_directory_is_refused_without_blocking)
{
	char err[SAFEFILE_ERR_MAX] = "";

	ck_assert_int_eq(mkfifo(in_dir("fifo"), 0600), 0);
	/* no reader: the open fails at once instead of waiting for one */
	refused(in_dir("fifo"), "No such device or address");
	/* read and write: it opens, and is not a regular file */
	ck_assert_int_eq(safefile_open(in_dir("fifo"), O_RDWR, 0600, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "refused: not a regular file") != NULL, "%s", err);
	ck_assert_int_eq(mkdir(in_dir("sub"), 0700), 0);
	refused(in_dir("sub"), "Is a directory");
}
END_TEST

START_TEST(test_root_refuses_a_directory_others_may_write)
{
	char err[SAFEFILE_ERR_MAX];
	int fd;

	ck_assert_int_eq(chmod(dir, 01777), 0);
	if (geteuid() == 0) {
		refused(in_dir("log"), "refused: its directory is writable by every user");
		ck_assert_int_eq(chmod(dir, 0770), 0);
		refused(in_dir("log"), "refused: its directory is writable by its group");
		ck_assert_int_eq(access(in_dir("log"), F_OK), -1);
	} else {
		/* not root: nothing to escalate to, the directory is not asked */
		fd = safefile_open(in_dir("log"), O_WRONLY, 0600, err, sizeof(err));
		ck_assert_msg(fd >= 0, "%s", err);
		close(fd);
	}
}
END_TEST

START_TEST(test_a_name_without_a_directory_is_taken_from_the_current_one)
{
	char err[SAFEFILE_ERR_MAX], cwd[PATH_MAX];
	int fd;

	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(dir), 0);
	fd = safefile_open("log", O_WRONLY, 0600, err, sizeof(err));
	ck_assert_msg(fd >= 0, "%s", err);
	close(fd);
	ck_assert_int_eq(chdir(cwd), 0);
	ck_assert_int_eq(access(in_dir("log"), F_OK), 0);
}
END_TEST

static Suite *
safefile_suite(void)
{
	Suite *s = suite_create("safefile");
	TCase *tc = tcase_create("safefile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_creates_with_its_mode_and_appends_without_truncating);
	tcase_add_test(tc, test_a_symbolic_link_is_refused_and_its_target_not_made);
	tcase_add_test(tc, test_a_hard_link_is_refused_and_left_as_it_was);
	tcase_add_test(tc, test_a_fifo_or_a_directory_is_refused_without_blocking);
	tcase_add_test(tc, test_root_refuses_a_directory_others_may_write);
	tcase_add_test(tc, test_a_name_without_a_directory_is_taken_from_the_current_one);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(safefile_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
