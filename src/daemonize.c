/*
 * daemonize.c - nettcpd -d and the pid file.
 */
#include "daemonize.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

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

int
pidfile_write(const char *path)
{
	char text[32];
	int fd, len;

	/* O_NOFOLLOW: written as root, it must not follow a planted link. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	len = snprintf(text, sizeof(text), "%d\n", (int)getpid());
	if (fd < 0 || write(fd, text, (size_t)len) != len) {
		log_err("pidfile '%s': %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		return -1;
	}
	close(fd);
	return 0;
}

void
pidfile_remove(const char *path)
{
	char text[32];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return;
	text[n] = '\0';
	if (strtol(text, NULL, 10) != (long)getpid())
		return;
	if (unlink(path) < 0)
		log_warn("pidfile '%s' not removed: %s", path, strerror(errno));
}
