/*
 * handoff.h - socket handoff: a client whose preamble routes to a
 * `handoff` registration leaves nettcpd as a descriptor, passed with
 * SCM_RIGHTS over the registrant's control connection together with every
 * byte nettcpd read from it (nettcpd(8), HANDOFF).
 *
 * A worker that decides such a preamble gives the socket away
 * (handoff_submit) and forgets it; from there on the main thread alone
 * holds the client: it sends HANDOFF, keeps its copy of the socket until
 * the registrant's TAKEN, and answers the client itself (the
 * EndpointUnavailable fault, then a close) when the registrant cannot take
 * it.  The table of handoffs waiting for TAKEN is the main thread's, so
 * nothing in it is shared.
 *
 * The control connection (control.c) is a peer; each handoff registration
 * on it a sink, which its route holds.  A route lives in generations that
 * workers may still hold after the registration is gone, so a sink is
 * reference-counted and outlives its peer; what it sends then is refused.
 */
#ifndef NETTCPD_HANDOFF_H
#define NETTCPD_HANDOFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "stats.h"

/* Defaults, documented in nettcpd.ini(5). */
#define HANDOFF_DEFAULT_TIMEOUT 5.0
#define HANDOFF_DEFAULT_MAX_PENDING 128u

/* How a handoff ended: nettcpd_handoffs_total{result}. */
enum handoff_result {
	HANDOFF_TAKEN,    /* the registrant said TAKEN */
	HANDOFF_REFUSED,  /* its queue was full, or handoff_max_pending */
	HANDOFF_TIMEOUT,  /* no TAKEN within handoff_timeout */
	HANDOFF_LOST,     /* its registration or connection went first */
	HANDOFF_RESULTS
};

/* "taken", "refused", "timeout", "lost". */
const char *handoff_result_name(enum handoff_result r);

struct handoff_peer;
struct handoff_sink;

/*
 * Main thread: start taking handoffs on main_loop.  handoff_set_limits()
 * applies a generation's handoff_timeout, handoff_max_pending and
 * log_client_lines (at start and on each reload; a handoff already sent
 * keeps its deadline).
 */
void handoff_init(struct ev_loop *main_loop);
void handoff_set_limits(double timeout, unsigned max_pending,
    unsigned log_lines);

/*
 * Main thread, at exit, once the workers have stopped: every handoff not
 * yet taken is answered (the fault, then a close), every peer closed.
 */
void handoff_shutdown(void);

/* The counts of nettcpd_handoffs_total, by route name's slot (stats.h),
 * handoffs[] of each; written by the main thread alone. */
const struct route_stats_table *handoff_stats(void);

/* Main thread: a control connection on descriptor ctl_fd (which the
 * caller keeps and closes) may register handoff routes.  NULL: no memory. */
struct handoff_peer *handoff_peer_new(int ctl_fd);

/*
 * Main thread: the control connection is gone, or about to be closed: its
 * sinks take nothing more, each handoff it has not taken is answered
 * (result lost), and p is freed.  Call it before closing ctl_fd.
 */
void handoff_peer_close(struct handoff_peer *p);

/*
 * Main thread: TAKEN id arrived on p's connection: nettcpd closes its copy
 * of that client's socket and holds nothing for it.  0, or -1 when p has
 * no such handoff waiting (a late or a made-up TAKEN; said at debug).
 */
int handoff_taken(struct handoff_peer *p, uint64_t id);

/*
 * Main thread: registration reg_id on p's connection, whose route is
 * named route_name (its counts and log lines), takes handoffs.  Returns
 * the sink holding one reference, the caller's, or NULL when out of
 * memory.
 */
struct handoff_sink *handoff_sink_new(struct handoff_peer *p, uint64_t reg_id,
    const char *route_name);

/*
 * Main thread: the registration ended (UNREGISTER, or a reload's static
 * route took its prefix): from now on a client a worker still submits to
 * it is answered with the fault (result lost); handoffs already sent wait
 * for their TAKEN as before.  Drops the caller's reference.
 */
void handoff_sink_close(struct handoff_sink *s);

/* Any thread: a route table holds the sink while a generation has it. */
struct handoff_sink *handoff_sink_ref(struct handoff_sink *s);
void handoff_sink_unref(struct handoff_sink *s);

/*
 * Binary upgrade (upgrade_state.h): what the new process takes over.
 * handoff_next_id() is the id the next handoff gets; the new process
 * starts from the old one's, so ids stay unique across the two.
 */
uint64_t handoff_next_id(void);
void handoff_set_next_id(uint64_t id);

/* Call fn for each handoff p waits for: its socket, its id, its sink's
 * registration and the seconds left of its handoff_timeout. */
void handoff_each_pending(const struct handoff_peer *p,
    void (*fn)(void *arg, int fd, uint64_t id, uint64_t reg_id, double left),
    void *arg);

/*
 * The old process handed p's connection to the new one, which reads its
 * TAKENs from now on: the handoffs p waited for are the new process's
 * (our copies closed, counted as nothing here), and each client this
 * process still hands off on it is sent and forgotten at once (its
 * TAKEN goes to the new process, which ignores it).
 */
void handoff_peer_handed_over(struct handoff_peer *p);

/* The new process: a handoff the old one sent on p's connection waits
 * for its TAKEN here, with left seconds of its handoff_timeout; s is its
 * registration's sink and fd the client's socket, ours from now on. */
void handoff_adopt(struct handoff_peer *p, struct handoff_sink *s, int fd,
    uint64_t id, double left);

/*
 * A worker: hand client socket fd to the sink's registrant, with the len
 * bytes read from it (copied); client names it in the log lines.  The
 * worker passes a duplicate of its own descriptor, which the main thread
 * owns from the call on (the worker then closes its own as it closes any
 * connection's).  Returns 0, or -1 when out of memory (fd is still the
 * caller's).  Call it only while the main loop runs (handoff_shutdown
 * comes after the workers have stopped).
 */
int handoff_submit(struct handoff_sink *s, int fd, const uint8_t *bytes,
    size_t len, const struct sockaddr *client);

#endif
