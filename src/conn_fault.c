/*
 * conn_fault.c - a framing Fault record for the client (in clear, or inside
 * TLS once it is up), then the half-close and the drain that let the client
 * read it instead of a reset.
 */
#include "conn_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

/* Write some of the fault, in clear or inside TLS; -1 on failure, else 0
 * with *events set to what to wait for (0 once all of it is out). */
static int
fault_send(struct conn *c, int *events)
{
	ssize_t n = c->tp->send(c, c->fault + c->fault_off,
	    c->fault_len - c->fault_off, events);

	if (n < 0)
		return -1;
	c->fault_off += (size_t)n;
	if (*events == 0 && c->fault_off < c->fault_len)
		*events = EV_WRITE;
	return 0;
}

/*
 * Half-close, then drain until the client's FIN (for at most the deadline
 * and FAULT_DRAIN_MAX bytes): closing with unread bytes would reset the
 * connection and discard what the client has yet to read.
 */
void
conn_shutdown(struct conn *c)
{
	conn_wait(c, 0, 0);
	if (c->tp->shutdown(c) < 0) {
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	conn_set_state(c, CONN_DRAINING);
	conn_wait(c, EV_READ, 0);
}

void
fault_write(struct conn *c)
{
	int events;

	if (fault_send(c, &events) < 0) {
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	if (events != 0) {
		conn_wait(c, events, 0);
		return;
	}
	/* The fault is out: the client reads it instead of a reset that
	 * would discard it. */
	conn_shutdown(c);
}

void
drain_read(struct conn *c)
{
	char sink[4096];
	ssize_t n;

	n = recv(c->client_fd, sink, sizeof(sink), 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	if (n == 0) {
		conn_finish(c, c->outcome, CLOSE_FIN, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	c->drained += (size_t)n;
	if (c->drained > FAULT_DRAIN_MAX) {
		conn_finish(c, c->outcome, CLOSE_RESET, LOG_LEVEL_DEBUG,
		    "still sending after our FIN, reset");
	}
}

_Static_assert(NMF_FAULT_COUNT <= UINT8_MAX + 1,
    "struct conn's fault_sent is 8 bits");

/* Say why, send a Fault record, then FIN, drain, close; the connection
 * ends with outcome. */
static void
fault_start(struct conn *c, enum conn_outcome outcome, enum nmf_fault fault,
    enum log_level level, const char *why)
{
	size_t len;

	conn_log(c, level, "%s, sent %s", why, nmf_fault_name(fault));
	c->outcome = outcome;
	c->fault_sent = (uint8_t)fault;
	stat_add(&c->w->stats.faults[fault], 1);
	/* An EndpointUnavailable is a route none of whose members could be
	 * reached (each failed connect is counted by backend_fail). */
	if (fault == NMF_FAULT_ENDPOINT_UNAVAILABLE && c->rstats != NULL)
		stat_add(&c->rstats->unavailable, 1);
	stop_watchers(c);
	close_backend(c);
	conn_set_state(c, CONN_FAULTING);
	c->fault = nmf_fault_record(fault, &len);
	c->fault_len = (uint16_t)len; /* its URI's length is one byte */
	c->fault_off = 0;
	deadline_start(c, FAULT_DRAIN_SECONDS);
	fault_write(c);
}

void
conn_fault(struct conn *c, enum nmf_fault fault, enum log_level level,
    const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fault_start(c, OUTCOME_FAULTED, fault, level, why);
}

void
conn_deny(struct conn *c, enum nmf_fault fault, const char *why)
{
	if (c->pre.route != NULL)
		stat_add(&route_stats_get(&c->w->route_stats,
		    c->pre.route->stats_slot)->denied, 1);
	fault_start(c, OUTCOME_DENIED, fault, LOG_LEVEL_NOTICE, why);
}
