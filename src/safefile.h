/*
 * safefile.h - opening a file nettcpd writes (the access log, the pid
 * file) so that a link planted by another user cannot redirect it.
 */
#ifndef NETTCPD_SAFEFILE_H
#define NETTCPD_SAFEFILE_H

#include <stddef.h>

/* Room for the reason: a path as long as Linux takes, and why. */
#define SAFEFILE_ERR_MAX 4200

/*
 * Open path for writing, creating it with mode if absent, never through a
 * link: flags (O_WRONLY | O_APPEND, say; never O_TRUNC, which would act
 * before the checks) get O_CREAT, O_NOFOLLOW, O_NONBLOCK and O_CLOEXEC.
 * Refused: a symbolic link, anything but a regular file, a file with more
 * than one hard link, a file owned by neither root nor the caller, and,
 * when the caller is root, a directory that anyone but root owns or that
 * its group or others may write.  Returns the descriptor, or -1 with
 * "'path': why" in err.
 */
int safefile_open(const char *path, int flags, unsigned mode, char *err,
    size_t errlen);

#endif
