/*
 * listener.h - the shared ports: bind, accept, pause and resume.
 */
#ifndef NETTCPD_LISTENER_H
#define NETTCPD_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "worker.h"

/*
 * A listening socket: the main thread opens one per configured address,
 * and every worker watches it; whichever accepts first serves the client.
 * It is not shared with SO_REUSEPORT, so a second nettcpd (or any other
 * program) cannot bind the port while this one listens there.
 */
struct listen_sock {
	int fd;                 /* -1 once handed to a newer set */
	uint16_t port;          /* local port, which port-qualified routes compare */
	char *text;             /* the address as configured, for logs */
	struct addr addr;
	int proxy;              /* listen_proxy: a PROXY header comes first */
};

/*
 * Open a socket for every address of cfg, in its order, taking for an
 * address the listening socket among the ninherited handed to this process
 * (descriptors UPGRADE_FDS_START on: a binary upgrade) that is bound to
 * it.  Returns an array of cfg->nlistens sockets, or NULL after logging
 * which address failed (or which handed socket matches no address), with
 * nothing left open.
 */
struct listen_sock *listen_socks_open(const struct config *cfg,
    size_t ninherited);

/*
 * One more listening socket, on addr (text for logs): the one of the
 * ninherited handed over that listens there, else a new one.  Returns the
 * descriptor, or -1 after logging why.
 */
int listen_fd_open(const struct addr *addr, const char *text, size_t ninherited);

/*
 * A reload: the sockets for cfg's addresses, in its order, taking over the
 * socket of every address that old (n of them) already listens on, so it
 * never stops listening, and opening the others.  Returns the new array,
 * or NULL after logging which address failed, with old as it was.  What
 * is left open in old is what cfg no longer listens on: close it (with
 * listen_socks_close) once no worker watches it.
 */
struct listen_sock *listen_socks_update(struct listen_sock *old, size_t n,
    const struct config *cfg);

/* Close what they hold open (no worker may be watching them any more,
 * saying at level info each address no longer listened on when retired)
 * and free the array. */
void listen_socks_close(struct listen_sock *socks, size_t n, int retired);

/* A worker's watch on one listening socket. */
struct listener {
	ev_io io;
	struct worker *w;
	const struct listen_sock *sock;
};

/* Watch these n sockets (the worker's thread, or before it starts);
 * returns 0 or -1. */
int listeners_open(struct worker *w, const struct listen_sock *socks, size_t n);

/* Stop watching them (the sockets stay open). */
void listeners_close(struct worker *w);

/* Add or remove a reason to pause accepting (enum accept_pause). */
void listeners_pause(struct worker *w, unsigned reason);
void listeners_resume(struct worker *w, unsigned reason);

#endif
