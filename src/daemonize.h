/*
 * daemonize.h - for hosts without systemd: nettcpd -d goes into the
 * background, and 'pidfile' says where it runs.
 */
#ifndef NETTCPD_DAEMONIZE_H
#define NETTCPD_DAEMONIZE_H

/*
 * Fork; before any thread starts.  The parent waits until the child calls
 * daemonize_ready() and exits 0, or exits 1 once the child ended without
 * (its errors are on the same stderr), so whoever started nettcpd -d sees
 * whether it serves.  The child, which returns 0, leads a session of its
 * own with stdin and stdout on /dev/null and / as its directory.  -1 after
 * logging when there is no child.
 */
int daemonize(void);

/*
 * The child serves: let the parent exit 0, and put stderr on /dev/null
 * (saying so first when log_to_stderr, log_on_stderr()'s reason, is not
 * NULL: the log would then go nowhere).
 * Nothing when this process was not started by daemonize().
 */
void daemonize_ready(const char *log_to_stderr);

/* Write this process's pid to path, opened by safefile_open's rules and
 * held open.  0, or -1 after logging. */
int pidfile_write(const char *path);

/* Remove path if it is still the file pidfile_write wrote (not a link or
 * another file put in its place) and holds this process's pid (a binary
 * upgrade's new process rewrites it, and then it is the new one's to
 * remove); close it. */
void pidfile_remove(const char *path);

#endif
