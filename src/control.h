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

#include <stdint.h>

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

/* A worker took a generation: send the answers that waited for it (an OK
 * to REGISTER or UNREGISTER means every worker routes by it). */
void control_generation_taken(void);

/* A reload's static route took registration id of owner: tell it. */
void control_revoked(void *owner, uint64_t id, const char *why);

/* Close every control connection and the socket, and remove its file. */
void control_close(void);

/* ---- binary upgrade (handover.c) */

struct handoff_peer;

/* The control listener, -1: none. */
int control_listener(void);

/* Call fn for each control connection past its HELLO: its descriptor, its
 * owner token (the registry's) and its handoffs. */
void control_each(void (*fn)(void *arg, int fd, void *owner,
    struct handoff_peer *hp), void *arg);

/* yes: a new process reads the listener and the connections from now on
 * (this one stops, and leaves the socket file at exit); no: it failed,
 * this one reads them again. */
void control_handed_over(int yes);

/* The new process: the listener the old one handed over, if the file
 * still names it (else it is closed and control_open() runs); 0 or -1. */
int control_adopt_listener(const struct config *cfg, int fd);

/* The new process, after control_start: a connection the old one handed
 * over, past its HELLO.  Returns its owner token, with its handoffs in
 * *hp and its peer's credentials in *uid and *pid, or NULL (fd closed,
 * logged). */
void *control_adopt(int fd, struct handoff_peer **hp, uint32_t *uid,
    int32_t *pid);

#endif
