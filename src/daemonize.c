/*
 * daemonize.c - nettcpd -d and the pid file.
 */
#include "daemonize.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "safefile.h"

/* The child's end of the pipe its parent waits on; -1 once told. */
static int ready_fd = -1;

/* Point fd at /dev/null. */
static int
to_dev_null(int fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	int rc;

	if (null < 0)
		return -1;
	rc = dup2(null, fd);
	close(null);
	return rc < 0 ? -1 : 0;
}

int
daemonize(void)
{
	int pipefd[2];
	ssize_t n;
	pid_t pid;
	char byte;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		log_err("-d: cannot make a pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		log_err("-d: cannot fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid > 0) {
		/* A byte: the child serves.  End of file: it ended first,
		 * after writing why to stderr. */
		close(pipefd[1]);
		do
			n = read(pipefd[0], &byte, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1)
			_exit(EXIT_SUCCESS);
		waitpid(pid, NULL, 0);
		_exit(EXIT_FAILURE);
	}
	close(pipefd[0]);
	ready_fd = pipefd[1];
	if (setsid() < 0 || to_dev_null(STDIN_FILENO) < 0 ||
	    to_dev_null(STDOUT_FILENO) < 0 || chdir("/") < 0) {
		log_err("-d: cannot detach: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void
daemonize_ready(const char *log_to_stderr)
{
	if (ready_fd < 0)
		return;
	if (log_to_stderr != NULL)
		log_warn("-d: %s: from here on the log goes to /dev/null; set "
		    "log = syslog to keep it", log_to_stderr);
	if (write(ready_fd, "", 1) < 0)
		log_warn("-d: cannot tell the parent: %s", strerror(errno));
	close(ready_fd);
	ready_fd = -1;
	/* Whoever started nettcpd -d (a terminal, an init script reading
	 * its output) is let go. */
	if (to_dev_null(STDERR_FILENO) < 0)
		log_warn("-d: cannot put stderr on /dev/null: %s", strerror(errno));
}

/* The file pidfile_write wrote, held open until pidfile_remove: while it
 * is, no other file can take its inode number, so a file put in its place
 * is told apart by it. */
static int pid_fd = -1;

int
pidfile_write(const char *path)
{
	char text[32], err[SAFEFILE_ERR_MAX];
	int fd, len;

	/* Not O_TRUNC, which would truncate a planted hard link before
	 * safefile's checks: ftruncate once the file has passed them. */
	if ((fd = safefile_open(path, O_RDWR, 0644, err, sizeof(err))) < 0) {
		log_err("pidfile %s", err);
		return -1;
	}
	len = snprintf(text, sizeof(text), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, text, (size_t)len) != len) {
		log_err("pidfile '%s': %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	pid_fd = fd;
	return 0;
}

void
pidfile_remove(const char *path)
{
	struct stat held, named;
	char text[32];
	ssize_t n;

	if (pid_fd < 0)
		return;
	/* lstat: a link in its place is not followed, and is not ours. */
	if (fstat(pid_fd, &held) < 0 || lstat(path, &named) < 0 ||
	    held.st_dev != named.st_dev || held.st_ino != named.st_ino)
		goto out;
	if ((n = pread(pid_fd, text, sizeof(text) - 1, 0)) <= 0)
		goto out;
	text[n] = '\0';
	/* A binary upgrade's new process rewrote it: the new one's to remove. */
	if (strtol(text, NULL, 10) != (long)getpid())
		goto out;
	if (unlink(path) < 0)
		log_warn("pidfile '%s' not removed: %s", path, strerror(errno));
out:
	close(pid_fd);
	pid_fd = -1;
}
