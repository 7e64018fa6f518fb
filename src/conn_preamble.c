/*
 * conn_preamble.c - reading a preamble from the client and acting on what
 * the routing decision (decide.c) makes of it.
 */
#include "conn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handoff.h"

/*
 * The route is a handoff registration's: the client's socket and every
 * byte read from it go to the main thread (handoff.c), which passes them
 * to the registrant and answers the client if it does not take them.  A
 * duplicate goes, so that this worker closes its own descriptor as it
 * closes any connection's, its watchers gone first.
 */
static void
preamble_handoff(struct conn *c)
{
	int fd;

	/* A registrant cannot carry on a TLS session nettcpd holds (a
	 * registration under a terminating route is refused; this is a
	 * next session inside that TLS, routed elsewhere). */
	if (c->ssl != NULL) {
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_NOTICE,
		    "a session inside TLS cannot be handed off");
		return;
	}
	if ((fd = fcntl(c->client_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    handoff_submit(c->pre.route->handoff, fd, c->preamble,
	    c->preamble_len, &c->client_addr.sa) < 0) {
		if (fd >= 0)
			close(fd);
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_WARNING,
		    "cannot hand off (%s)", fd < 0 ? strerror(errno) :
		    "out of memory");
		return;
	}
	conn_finish(c, OUTCOME_HANDOFF, CLOSE_FIN, LOG_LEVEL_DEBUG,
	    "handed off with %u bytes", c->preamble_len);
}

/* Act on what the preamble read so far decides (decide.c). */
void
preamble_parse(struct conn *c)
{
	struct verdict v;

	/* client_addr: the address the rules judge, whoever set it */
	switch (preamble_decide(&c->pre, c->gen->cfg->routes, &c->gen->cfg->acl,
	    &c->client_addr.sa, c->local_port, c->preamble, c->preamble_len,
	    &v)) {
	case DECIDE_MORE:
		break;
	case DECIDE_FORWARD:
		conn_session_routed(c);
		if (c->pre.route->handoff != NULL)
			preamble_handoff(c);
		else
			backend_start(c);
		break;
	case DECIDE_UPGRADE:
		conn_session_routed(c);
		tls_start(c);
		break;
	case DECIDE_FAULT:
		stat_add(&c->w->stats.preamble_errors[v.error], 1);
		conn_fault(c, v.fault, LOG_LEVEL_NOTICE, "%s", v.why);
		break;
	case DECIDE_DENY:
		conn_deny(c, v.fault, v.why);
		break;
	case DECIDE_RESET:
		stat_add(&c->w->stats.preamble_errors[v.error], 1);
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "%s, reset", v.why);
		break;
	}
}

/* Most preambles are short (a Via of a few dozen bytes), so the buffer
 * starts at this and grows to NMF_PREAMBLE_MAX only for a long one.  A
 * buffer of NMF_PREAMBLE_MAX for every connection, held until its service
 * answers, left holes in the heap between the connections that stay:
 * make bench's idle connections took 1.19 KiB each instead of 0.77. */
#define PREAMBLE_FIRST 256u

_Static_assert(NMF_PREAMBLE_MAX <= UINT16_MAX,
    "struct conn's preamble_len and preamble_cap are 16 bits");

int
preamble_reserve(struct conn *c, size_t need)
{
	size_t cap;
	uint8_t *grown;

	if (need > NMF_PREAMBLE_MAX)
		need = NMF_PREAMBLE_MAX;
	if (c->preamble != NULL && c->preamble_cap >= need)
		return 0;
	cap = need <= PREAMBLE_FIRST ? PREAMBLE_FIRST : NMF_PREAMBLE_MAX;
	if ((grown = realloc(c->preamble, cap)) == NULL)
		return -1;
	c->preamble = grown;
	c->preamble_cap = cap;
	return 0;
}

ssize_t
preamble_recv(struct conn *c, const char *what)
{
	ssize_t n;

	if (preamble_reserve(c, c->preamble_len + 1) < 0) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_WARNING,
		    "out of memory, reset");
		return -1;
	}
	n = recv(c->client_fd, c->preamble + c->preamble_len,
	    c->preamble_cap - c->preamble_len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		/* A reset before any byte (a scan, a client dropping its
		 * pooled connection) is as unremarkable as a FIN. */
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET,
		    c->preamble_len == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_NOTICE,
		    "read error in %s (%s), closed", what, strerror(errno));
		return -1;
	}
	if (n == 0) {
		/* A port probe that sends nothing, a balancer's TCP check, or
		 * a client closing its connection between sessions, is not
		 * worth a notice. */
		conn_finish(c, OUTCOME_CLOSED, CLOSE_FIN,
		    c->preamble_len == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_NOTICE,
		    "end of stream after %u %s bytes, closed", c->preamble_len,
		    what);
		return -1;
	}
	c->preamble_len += (size_t)n;
	return n;
}

void
preamble_read(struct conn *c)
{
	if (c->tls_left && tls_after_end(c) <= 0)
		return;
	if (preamble_recv(c, "preamble") > 0)
		preamble_parse(c);
}

