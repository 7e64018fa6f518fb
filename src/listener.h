/*
 * listener.h - the shared ports: bind, accept, pause and resume.
 */
#ifndef NETTCPD_LISTENER_H
#define NETTCPD_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "worker.h"

struct listener {
	ev_io io;
	struct worker *w;
	uint16_t port;          /* local port, which port-qualified routes compare */
	const char *text;       /* the address as configured, for logs */
};

/*
 * Bind and listen on every address of w->cfg; start accepting.
 * Returns 0, or -1 after logging which address failed.
 */
int listeners_open(struct worker *w);

/* Stop accepting and close every listening socket. */
void listeners_close(struct worker *w);

/* Add or remove a reason to pause accepting (enum accept_pause). */
void listeners_pause(struct worker *w, unsigned reason);
void listeners_resume(struct worker *w, unsigned reason);

#endif
