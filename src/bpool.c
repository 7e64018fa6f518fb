/*
 * bpool.c - idle backend connections kept between sessions.
 */
#include "bpool.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct bpool_entry {
	struct bpool *pool;
	struct bpool_entry *newer, *older;
	struct addr backend;
	struct addr client;     /* whose header it carried, if proxied */
	int proxied;
	int fd;
	ev_io readable;
	ev_timer expiry;
	ev_tstamp settled;  /* when it may be handed out */
};

void
bpool_init(struct bpool *pool, struct ev_loop *loop, unsigned max,
    double timeout, double settle)
{
	pool->loop = loop;
	pool->newest = pool->oldest = NULL;
	pool->count = 0;
	pool->max = max;
	pool->timeout = timeout;
	pool->settle = settle;
}

/* Unlink e and free it; returns its descriptor, still open. */
static int
entry_remove(struct bpool_entry *e)
{
	struct bpool *pool = e->pool;
	int fd = e->fd;

	ev_io_stop(pool->loop, &e->readable);
	ev_timer_stop(pool->loop, &e->expiry);
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		pool->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		pool->oldest = e->newer;
	pool->count--;
	free(e);
	return fd;
}

/* Readable while idle: the service closed it, or is out of turn.  Either
 * way it cannot carry a session. */
static void
on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	close(entry_remove(io->data));
}

static void
on_expiry(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	close(entry_remove(t->data));
}

/*
 * 1 if nothing waits to be read on fd: no byte, no end of stream, no
 * error.  A byte there was sent after the last session's End, and must
 * reach no client; the watcher sees it only on the loop's next turn.
 */
static int
is_quiet(int fd)
{
	char byte;
	ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* e may serve a session of client (NULL: one that sends no header). */
static int
same_client(const struct bpool_entry *e, const struct addr *client)
{
	if (client == NULL)
		return !e->proxied;
	return e->proxied && addr_equal(&e->client, client);
}

int
bpool_take(struct bpool *pool, const struct addr *backend,
    const struct addr *client)
{
	struct bpool_entry *e, *older;
	/* The clock, not the loop's cached time: that may be a whole
	 * iteration old, and the settle period is short. */
	ev_tstamp now = ev_time();

	for (e = pool->newest; e != NULL; e = older) {
		older = e->older;
		if (!addr_equal(&e->backend, backend) ||
		    !same_client(e, client) || now < e->settled)
			continue;
		if (is_quiet(e->fd))
			return entry_remove(e);
		close(entry_remove(e));
	}
	return -1;
}

int
bpool_put(struct bpool *pool, const struct addr *backend,
    const struct addr *client, int fd)
{
	struct bpool_entry *e = NULL;

	/* A connection the service closed at its End is readable: the watcher
	 * drops it on the loop's next turn, and one taken before that fails
	 * under the preamble and is redialled. */
	if (pool->max > 0 && is_quiet(fd))
		e = malloc(sizeof(*e));
	if (e == NULL) {
		close(fd);
		return 0;
	}
	if (pool->count >= pool->max)
		close(entry_remove(pool->oldest));
	e->pool = pool;
	e->backend = *backend;
	e->proxied = client != NULL;
	if (client != NULL)
		e->client = *client;
	e->fd = fd;
	e->settled = ev_time() + pool->settle;
	e->newer = NULL;
	e->older = pool->newest;
	if (pool->newest != NULL)
		pool->newest->newer = e;
	else
		pool->oldest = e;
	pool->newest = e;
	pool->count++;
	ev_init(&e->readable, on_readable);
	bpool_io_set(&e->readable, fd, EV_READ);
	e->readable.data = e;
	ev_io_start(pool->loop, &e->readable);
	ev_timer_init(&e->expiry, on_expiry, pool->timeout, 0.);
	e->expiry.data = e;
	ev_timer_start(pool->loop, &e->expiry);
	return 1;
}

void
bpool_drain(struct bpool *pool)
{
	while (pool->newest != NULL)
		close(entry_remove(pool->newest));
}
