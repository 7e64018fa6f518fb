/*
 * safefile.c - the one way nettcpd opens a file it writes.
 *
 * nettcpd writes its access log and pid file after dropping root (main.c),
 * as the user: that user may own their directory (SIGUSR1 reopens the log
 * there), and a file it could redirect root to would be a way back to root
 * (records hold text a client chose).  Root still opens them when no user
 * is set; then the directory must be root's alone, as logrotate requires
 * of a directory it rotates in as root.  Whoever opens, a planted link is
 * refused: O_NOFOLLOW for a symbolic one, the link count for a hard one
 * (O_CREAT on an existing file changes nothing, so the check comes in
 * time), and the file must be root's or the caller's; with O_NONBLOCK a
 * FIFO put there fails instead of blocking the start.  The directory is
 * opened first and the file relative to it, so the directory checked is
 * the one the file is in.
 */
#include "safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Why root must not create or write a file in the directory dir, into
 * why; 0 if it may. */
static int
dir_unsafe_for_root(const struct stat *dir, char *why, size_t len)
{
	if (dir->st_uid != 0)
		snprintf(why, len, "its directory is writable by its owner, "
		    "uid %u, not root", (unsigned)dir->st_uid);
	else if (dir->st_mode & S_IWOTH)
		snprintf(why, len, "its directory is writable by every user");
	else if (dir->st_mode & S_IWGRP)
		snprintf(why, len, "its directory is writable by its group, "
		    "gid %u", (unsigned)dir->st_gid);
	else
		return 0;
	return 1;
}

int
safefile_open(const char *path, int flags, unsigned mode, char *err,
    size_t errlen)
{
	char dir[SAFEFILE_ERR_MAX], why[128];
	const char *base = strrchr(path, '/');
	int dfd = -1, fd = -1;
	struct stat st;

	why[0] = '\0';
	if (base == NULL) {
		snprintf(dir, sizeof(dir), ".");
		base = path;
	} else if ((size_t)(base - path) >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		goto fail;
	} else {
		/* "/x": the root directory */
		snprintf(dir, sizeof(dir), "%.*s", base == path ? 1 :
		    (int)(base - path), path);
		base++;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fstat(dfd, &st) < 0)
		goto fail;
	if (geteuid() == 0 && dir_unsafe_for_root(&st, why, sizeof(why)))
		goto fail;
	fd = openat(dfd, base, flags | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC, (mode_t)mode);
	if (fd < 0 && errno == ELOOP) {
		snprintf(why, sizeof(why), "a symbolic link");
		goto fail;
	}
	if (fd < 0 || fstat(fd, &st) < 0)
		goto fail;
	if (!S_ISREG(st.st_mode))
		snprintf(why, sizeof(why), "not a regular file");
	else if (st.st_nlink != 1)
		snprintf(why, sizeof(why), "a file with %lu hard links",
		    (unsigned long)st.st_nlink);
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		snprintf(why, sizeof(why), "owned by uid %u, neither root nor "
		    "uid %u", (unsigned)st.st_uid, (unsigned)geteuid());
	if (why[0] != '\0')
		goto fail;
	close(dfd);
	return fd;

fail:
	if (why[0] != '\0')
		snprintf(err, errlen, "'%s': refused: %s", path, why);
	else
		snprintf(err, errlen, "'%s': %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return -1;
}
