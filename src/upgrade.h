/*
 * upgrade.h - binary upgrade: the running nettcpd starts the binary at its
 * own path anew and hands it its listening sockets the way systemd hands a
 * service its sockets (LISTEN_FDS descriptors from 3 on, LISTEN_PID its
 * pid), so the new process serves on the very same sockets and the port
 * never stops listening; the old one then drains on SIGTERM.
 */
#ifndef NETTCPD_UPGRADE_H
#define NETTCPD_UPGRADE_H

#include <stddef.h>
#include <sys/types.h>

/* The first descriptor passed (sd_listen_fds(3)'s SD_LISTEN_FDS_START). */
#define UPGRADE_FDS_START 3

/*
 * How many listening sockets were handed to this process (LISTEN_PID is
 * its pid), by a binary upgrade or by systemd's socket activation:
 * descriptors UPGRADE_FDS_START on.  The variables are removed, so that
 * nothing started later takes them for its own.  0 when none.  Built with
 * libsystemd, this is sd_listen_fds(3).
 */
size_t upgrade_inherited(void);

/*
 * Start exe with argv (the running one's) in a child that gets the n
 * descriptors fds at UPGRADE_FDS_START on, the first nlisten of them, the
 * listening sockets, as LISTEN_FDS; env, if not NULL, is one more
 * "NAME=value" of its environment (the control state, upgrade_state.h).
 * Returns the child's pid, or -1 with errno set.  Safe in a threaded
 * process: the child only calls async-signal-safe functions before execve.
 */
pid_t upgrade_start(const char *exe, char *const argv[], const int *fds,
    size_t n, size_t nlisten, const char *env);

/* A memfd holding the len bytes of text, at its start: its descriptor
 * (close-on-exec; upgrade_start passes it on), or -1 with errno set. */
int upgrade_memfd(const char *text, size_t len);

/*
 * The text of the memfd whose descriptor number the environment variable
 * name holds (the variable is removed and the descriptor closed), in a
 * buffer the caller frees, NUL-terminated, *len bytes; NULL when there is
 * none, or with *len (size_t)-1 when it cannot be read.
 */
char *upgrade_memfd_take(const char *name, size_t *len);

#endif
