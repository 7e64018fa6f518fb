/*
 * bpool.h - idle backend connections kept between sessions.
 *
 * A WCF service keeps a connection after a duplex session's End/End
 * exchange and reads the next preamble from it (ConnectionDemuxer.
 * ReuseConnection); a proxy that hands it the next session saves a TCP
 * handshake and a teardown on both sides.  Each worker keeps its own pool:
 * no locks.  An idle connection that becomes readable was closed by the
 * service (or sent something out of turn) and is dropped at once; one idle
 * for the pool's timeout is closed.  A connection settles before it is
 * handed out again: a service that sends bytes shortly after its End (a
 * stray Ack and envelope, say) has them land while the connection is
 * still in the pool, which closes it, rather than on the next session.
 *
 * A connection that began with a PROXY header (send_proxy) told the
 * service who its client is, for every session it will carry: it is kept
 * for that client's address (proxy_send_client_key) and handed out only
 * to a session from the same address, never to a session that sends no
 * header.
 */
#ifndef NETTCPD_BPOOL_H
#define NETTCPD_BPOOL_H

#include <ev.h>

#include "addr.h"

struct bpool_entry;

struct bpool {
	struct ev_loop *loop;
	struct bpool_entry *newest, *oldest;
	unsigned count;
	unsigned max;      /* idle connections kept; 0: none */
	double timeout;    /* seconds an idle connection is kept */
	double settle;     /* seconds one must stay quiet before reuse */
};

void bpool_init(struct bpool *pool, struct ev_loop *loop, unsigned max,
    double timeout, double settle);

/* An idle connection to backend that has been quiet for the settle period,
 * most recently used first; -1 if none.  client: the key of the client
 * whose PROXY header it must have carried, or NULL for one opened without
 * a header.  One with anything to read (bytes, end of stream) is closed,
 * never handed out; one still settling stays. */
int bpool_take(struct bpool *pool, const struct addr *backend,
    const struct addr *client);

/*
 * Keep fd, a connection to backend between sessions, opened with the
 * PROXY header of client (a key), or without a header (NULL).  The pool owns fd
 * from here on: it closes it at once if the pool keeps nothing or fd has
 * anything to read (and returns 0), and closes the oldest idle connection
 * to make room.  Returns
 * 1 when fd is kept.
 */
int bpool_put(struct bpool *pool, const struct addr *backend,
    const struct addr *client, int fd);

/* Close every idle connection. */
void bpool_drain(struct bpool *pool);

/*
 * Point the stopped watcher w at fd, a connection going into the pool or
 * coming out of it, which this loop has watched all along (the session's
 * watchers, then the pool's, then the next session's) and which stayed
 * open.  ev_io_set would tell libev the descriptor may be a new file, and
 * libev would register it with epoll again (EPOLL_CTL_ADD), which the
 * kernel refuses as EEXIST: a system call per session for nothing.  A
 * connection opened since needs ev_io_set.
 */
static inline void
bpool_io_set(ev_io *w, int fd, int events)
{
	w->fd = fd;
	w->events = events;
}

#endif
