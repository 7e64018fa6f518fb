/*
 * health.h - active health checks: a real net.tcp probe of each member of
 * the routes with check_interval, on the main thread's loop.
 *
 * A check connects (TCP or unix), sends a preamble for the route's
 * check_via, and wants the service's ack (0B); it then sends End and waits
 * for the service's End.  A framing Fault means the process is up but does
 * not serve that Via.  rise checks in a row that pass bring a member up,
 * fall that fail take it down (backend_mark), each change logged once.
 */
#ifndef NETTCPD_HEALTH_H
#define NETTCPD_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "routes.h"

#define HEALTH_DEFAULT_TIMEOUT 2.0
#define HEALTH_DEFAULT_RISE 2u
#define HEALTH_DEFAULT_FALL 3u
#define HEALTH_FAULT_MAX 256u   /* a longer Fault URI is garbage */

/* ------------------------------------------------ the answer, pure */

enum health_answer_status {
	HEALTH_MORE = 0,    /* a byte more, please */
	HEALTH_ACK,         /* 0B: send End, then feed on */
	HEALTH_END,         /* the service's End after ours: passed */
	HEALTH_FAULT,       /* a whole Fault record: its URI in uri */
	HEALTH_GARBAGE,     /* anything else */
};

struct health_answer {
	uint8_t stage;      /* first byte, End, Fault size, Fault URI, done */
	uint8_t size_bytes;
	const char *why;    /* GARBAGE: what was wrong */
	uint32_t size;
	size_t got;
	char uri[HEALTH_FAULT_MAX + 1];
};

void health_answer_init(struct health_answer *a);

/* Feed the service's next byte; returns enum health_answer_status.  Any
 * byte after a final status (END, FAULT, GARBAGE) is GARBAGE.  Never holds
 * more than HEALTH_FAULT_MAX bytes of the answer. */
int health_answer_byte(struct health_answer *a, uint8_t b);

/* The fault's name (the URI after NMF_FAULT_URI_PREFIX, or the whole URI),
 * printable (log_printable), into out of outlen >= HEALTH_FAULT_MAX * 4 + 8. */
const char *health_answer_fault(const struct health_answer *a, char *out,
    size_t outlen);

/* ------------------------------------------------ the checkers */

struct health;

/* The checks of no route yet, on loop; NULL when no memory. */
struct health *health_new(struct ev_loop *loop);

/*
 * Check the members of t's routes that have check_interval from now on:
 * checkers of members that stay keep their counts, the others go (a
 * member no longer checked that a check held down is let go).  Returns 0,
 * or -1 (no memory; logged, the checks that could be made run).
 */
int health_apply(struct health *h, const struct route_table *t);

/* Stop every check and free h (NULL: nothing). */
void health_free(struct health *h);

#endif
