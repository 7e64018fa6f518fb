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
 * listening sockets fds as LISTEN_FDS.  Returns the child's pid, or -1
 * with errno set.  Safe in a threaded process: the child only calls
 * async-signal-safe functions before execve.
 */
pid_t upgrade_start(const char *exe, char *const argv[], const int *fds,
    size_t n);

#endif
