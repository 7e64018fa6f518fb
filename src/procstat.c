/*
 * procstat.c - the process_* values from /proc/self, read as the
 * Prometheus client libraries read them (client_python's ProcessCollector):
 * fields 14, 15 (utime, stime), 22 (starttime), 23 (vsize) and 24 (rss)
 * of /proc/self/stat, btime of /proc/stat, the entries of /proc/self/fd.
 */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Boot time, Unix seconds, from /proc/stat; 0 when unreadable. */
static double
boot_time(void)
{
	char line[256];
	double btime = 0;
	FILE *f = fopen("/proc/stat", "re");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "btime ", 6) == 0) {
			btime = strtod(line + 6, NULL);
			break;
		}
	fclose(f);
	return btime;
}

/* Entries of /proc/self/fd but the one this count holds open; -1 when it
 * cannot be read. */
static double
open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	double n = 0;

	if (dir == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL)
		n += e->d_name[0] != '.';
	closedir(dir);
	return n - 1;
}

int
procstat_read(struct procstat *out)
{
	char buf[1024], *p;
	unsigned long long utime, stime, start, vsize;
	long long rss;
	double ticks = (double)sysconf(_SC_CLK_TCK);
	struct rlimit rl;
	size_t len;
	FILE *f = fopen("/proc/self/stat", "re");

	if (f == NULL)
		return -1;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* The command name may hold spaces and parentheses: after its last
	 * ')' come field 3 (state) and on. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1,
	    " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
	    "%*d %*d %*d %*d %llu %llu %lld", &utime, &stime, &start, &vsize,
	    &rss) != 5)
		return -1;
	out->cpu_seconds = (double)(utime + stime) / ticks;
	out->start_time = boot_time() + (double)start / ticks;
	out->virtual_bytes = (double)vsize;
	out->resident_bytes = (double)rss * (double)sysconf(_SC_PAGESIZE);
	out->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY ? (double)rl.rlim_cur : -1;
	out->open_fds = open_fds();
	return 0;
}
