/*
 * control.h - the control socket ([global] control): a SOCK_SEQPACKET unix
 * socket on the main thread's loop where local processes register Via
 * prefixes (registry.h) in the protocol of ctlproto.h.  Peers are known by
 * SO_PEERCRED; a peer that misbehaves (garbage, an oversized message, no
 * HELLO in control_timeout, replies it does not read) is answered ERR and
 * closed, and the loop never blocks on it.
 */
#ifndef NETTCPD_CONTROL_H
#define NETTCPD_CONTROL_H

#include <ev.h>

#include "daemon.h"

/*
 * Create the socket of cfg's control key, before the privilege drop, with
 * control_mode and control_group.  Returns 0 (also without a control
 * key), or -1 after logging why.
 */
int control_open(const struct config *cfg);

/* Serve it on loop (the main thread's), for d's routes. */
void control_start(struct ev_loop *loop, struct daemon *d);

/* A reload's static route took registration id of owner: tell it. */
void control_revoked(void *owner, uint64_t id, const char *why);

/* Close every control connection and the socket, and remove its file. */
void control_close(void);

#endif
