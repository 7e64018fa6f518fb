/*
 * decide.h - the routing decision: what the bytes of a preamble decide,
 * without a socket.
 *
 * Bytes in (all of the preamble read so far, from its first byte), and
 * out comes one of: read more; forward to a route's backend (Preamble End,
 * or an upgrade the service answers); answer the TLS upgrade of a route
 * that terminates it; send a framing fault; or reset, as SMSvcHost does
 * on a preamble it cannot read.  The connection code acts on the answer;
 * everything it is decided on is here, and unit-tested alone.
 */
#ifndef NETTCPD_DECIDE_H
#define NETTCPD_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "nmf.h"
#include "routes.h"
#include "stats.h"

/* Where a preamble stands between calls; preamble_start() sets it up. */
struct preamble {
	struct nmf_parser parser;
	const struct route *route;  /* once the Via is routed */
	size_t via_off, via_len;    /* the Via inside the bytes; len 0: not yet */
	size_t clear_end;           /* terminating route: the end of the Encoding */
	                            /* record, where the bytes inside TLS go */
};

enum decision {
	DECIDE_MORE,      /* nothing decided yet: read more */
	DECIDE_FORWARD,   /* dial the route's backend and replay the bytes */
	DECIDE_UPGRADE,   /* answer the Upgrade Request, then run TLS */
	DECIDE_FAULT,     /* send the fault in verdict */
	DECIDE_DENY,      /* the client's address is refused: send the fault */
	                  /* in verdict (EndpointNotFound, as for no route) */
	DECIDE_RESET,     /* a preamble that cannot be read: reset */
};

/* Why: the fault to send and a phrase for the log line. */
struct verdict {
	enum nmf_fault fault;        /* DECIDE_FAULT, DECIDE_DENY */
	enum preamble_error error;   /* what in the preamble was refused, if */
	                             /* anything (a missing route is not) */
	char why[384];               /* DECIDE_FAULT, DECIDE_DENY, DECIDE_RESET */
};

void preamble_start(struct preamble *p);

/*
 * Go on deciding with buf[0..len), the whole preamble so far (the bytes of
 * earlier calls first).  local_port is the port the client connected to;
 * client its address, which global's rules ([global] allow and deny), then
 * the route's, must admit once the Via is read.
 * Once it has said anything but DECIDE_MORE the decision is made: the
 * caller acts on it and does not call again for this preamble.
 */
enum decision preamble_decide(struct preamble *p, const struct route_table *t,
    const struct acl_rules *global, const struct sockaddr *client,
    uint16_t local_port, const uint8_t *buf, size_t len, struct verdict *v);

#endif
