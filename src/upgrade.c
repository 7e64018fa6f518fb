/*
 * upgrade.c - starting the new binary on the running one's sockets.
 */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "decimal.h"

extern char **environ;

#define LISTEN_PID_MAX 32

#ifdef HAVE_LIBSYSTEMD
/* systemd's own reading of its protocol; it unsets the variables too. */
size_t
upgrade_inherited(void)
{
	int n = sd_listen_fds(1);

	return n > 0 ? (size_t)n : 0;
}
#else
/* Without libsystemd, the same protocol read by hand: a binary upgrade
 * hands the sockets over this way whether systemd is there or not. */
size_t
upgrade_inherited(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char *end;
	long n;

	if (pid == NULL || fds == NULL || strtol(pid, &end, 10) != (long)getpid() ||
	    *end != '\0')
		return 0;
	n = strtol(fds, &end, 10);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (*end != '\0' || n < 0 || n > 1024)
		return 0;
	return (size_t)n;
}
#endif

/* "LISTEN_PID=" and the decimal pid, with nothing but arithmetic: the
 * child of a threaded process may not call printf. */
static void
format_pid(char *out, pid_t pid)
{
	static const char key[] = "LISTEN_PID=";
	char digits[DECIMAL_MAX];
	size_t i = decimal_format((uint64_t)pid, digits);

	memcpy(out, key, sizeof(key) - 1);
	memcpy(out + sizeof(key) - 1, digits + i, sizeof(digits) - i);
	out[sizeof(key) - 1 + sizeof(digits) - i] = '\0';
}

pid_t
upgrade_start(const char *exe, char *const argv[], const int *fds, size_t n,
    size_t nlisten, const char *env)
{
	static char listen_pid[LISTEN_PID_MAX];
	char listen_fds[32];
	size_t nenv = 0, i, e = 0;
	char **envp;
	int *high;
	pid_t pid;

	while (environ[nenv] != NULL)
		nenv++;
	envp = calloc(nenv + 4, sizeof(*envp));
	high = calloc(n > 0 ? n : 1, sizeof(*high));
	if (envp == NULL || high == NULL) {
		free(envp);
		free(high);
		errno = ENOMEM;
		return -1;
	}
	/* Everything the child needs is made here, before the fork. */
	snprintf(listen_fds, sizeof(listen_fds), "LISTEN_FDS=%zu", nlisten);
	for (i = 0; i < nenv; i++)
		if (strncmp(environ[i], "LISTEN_", 7) != 0 && (env == NULL ||
		    strncmp(environ[i], env, strcspn(env, "=") + 1) != 0))
			envp[e++] = environ[i];
	envp[e++] = listen_fds;
	envp[e++] = listen_pid;
	if (env != NULL)
		envp[e++] = (char *)env;
	envp[e] = NULL;

	pid = fork();
	if (pid != 0) {
		free(envp);
		free(high);
		return pid;
	}
	/* The child: move the sockets to 3.. (through descriptors above
	 * every target, so that none is overwritten before it is moved); the
	 * targets lose close-on-exec, everything else keeps it. */
	for (i = 0; i < n; i++)
		if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC,
		    UPGRADE_FDS_START + (int)n)) < 0)
			_exit(127);
	for (i = 0; i < n; i++)
		if (dup2(high[i], UPGRADE_FDS_START + (int)i) < 0)
			_exit(127);
	format_pid(listen_pid, getpid());
	execve(exe, argv, envp);
	_exit(127);
}

int
upgrade_memfd(const char *text, size_t len)
{
	int fd = memfd_create("nettcpd-upgrade-state", MFD_CLOEXEC);
	size_t off = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	for (; off < len; off += (size_t)n)
		if ((n = write(fd, text + off, len - off)) < 0 && errno != EINTR)
			break;
		else if (n < 0)
			n = 0;
	if (off < len || lseek(fd, 0, SEEK_SET) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

char *
upgrade_memfd_take(const char *name, size_t *len)
{
	const char *v = getenv(name);
	char *buf = NULL, *end;
	size_t cap = 0, off = 0;
	ssize_t n = 1;
	long fd;

	*len = 0;
	if (v == NULL)
		return NULL;
	fd = strtol(v, &end, 10);
	unsetenv(name);
	*len = (size_t)-1;
	if (*end != '\0' || fd < UPGRADE_FDS_START || fd > 65535)
		return NULL;
	while (n > 0) {
		if (off + 4096 > cap) {
			char *b = realloc(buf, cap = cap * 2 + 4096 + 1);

			if (b == NULL)
				break;
			buf = b;
		}
		if ((n = read((int)fd, buf + off, cap - off - 1)) > 0)
			off += (size_t)n;
	}
	close((int)fd);
	if (n != 0) {
		free(buf);
		return NULL;
	}
	buf[off] = '\0';
	*len = off;
	return buf;
}
