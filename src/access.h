/*
 * access.h - the access log: one JSON line per session, and per connection
 * that never reached one, written at its end (access_log = off | stderr |
 * syslog | PATH).  The format is in nettcpd(8), ACCESS LOG.
 */
#ifndef NETTCPD_ACCESS_H
#define NETTCPD_ACCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One record. */
struct access_rec {
	const struct sockaddr *client;
	uint16_t listen_port;       /* the listening port it came in on */
	const uint8_t *via;         /* as the client sent it; NULL: none yet */
	size_t via_len;
	const char *route;          /* NULL: not routed */
	const char *backend;
	const char *outcome;        /* conn_outcome_name(): as the metrics say */
	const char *fault;          /* the Fault's name when "faulted", or NULL */
	unsigned session;           /* 1 for a connection's first */
	uint64_t bytes_up, bytes_down;
	double duration;            /* seconds, from the preamble's first byte */
	double route_time;          /* seconds to the routing decision; < 0: none */
};

/* Room for the reason access_open or access_reopen gives. */
#define ACCESS_ERR_MAX 4400

/* Open the target named in the configuration; -1 with the reason in err.
 * A file is opened by safefile_open's rules. */
int access_open(const char *target, char *err, size_t errlen);

/* Whether records are written (callers skip building them otherwise). */
int access_enabled(void);

/* Add one record to the calling thread's buffer, which is written (whole
 * records in one write(2): lines never interleave) when it is full and at
 * access_flush. */
void access_record(const struct access_rec *r);

/* Write the calling thread's buffered records; every worker does once a
 * second and when it stops. */
void access_flush(void);

/* SIGUSR1: open the file again by its name (after logrotate moved it).
 * -1 with the reason in err, and records go on to the file open before. */
int access_reopen(char *err, size_t errlen);

/* Write this thread's records, then close. */
void access_close(void);

#endif
