/*
 * procstat.h - what /proc says of this process, for the process_* family
 * of /metrics (named as Prometheus' client libraries name them).
 */
#ifndef NETTCPD_PROCSTAT_H
#define NETTCPD_PROCSTAT_H

struct procstat {
	double cpu_seconds;        /* user + system */
	double virtual_bytes;
	double resident_bytes;
	double start_time;         /* Unix time */
	double max_fds;            /* RLIMIT_NOFILE, soft */
	double open_fds;           /* -1: /proc/self/fd unreadable */
};

/* Read them now.  Returns 0, or -1 when /proc/self/stat cannot be read
 * (no /proc); open_fds alone may be missing (-1) when /proc/self/fd
 * cannot be listed, max_fds (-1) when there is no limit. */
int procstat_read(struct procstat *out);

#endif
