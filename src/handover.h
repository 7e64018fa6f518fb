/*
 * handover.h - a binary upgrade's control state (nettcpd(8), SIGNALS):
 * the old process passes the new one the control listener, every control
 * connection, their registrations (with their ids) and the handoffs
 * waiting for TAKEN (with their deadlines), as upgrade_state.h writes
 * them; the new process takes them over, so that registrants notice
 * nothing.  Main thread only.
 */
#ifndef NETTCPD_HANDOVER_H
#define NETTCPD_HANDOVER_H

#include <stddef.h>

#include "config.h"
#include "daemon.h"

/*
 * The old process, on SIGUSR2: append the descriptors to pass to *fds (*n
 * of them; the array is reallocated) and write the variable that names
 * the state in env.  Returns the state's memfd, the last descriptor added
 * (the caller closes it once the new process is started), or -1 after
 * logging why (then nothing is added).
 */
int handover_prepare(int **fds, size_t *n, char *env, size_t envlen);

/* The new process started (1): it reads the control socket and the
 * connections from now on; or it exited (0): this one reads them again. */
void handover_done(int started);

/*
 * The new process, before it opens any descriptor: read the state the old
 * one passed, if any.  Returns 0, or -1 after logging why (a state that
 * cannot be read: its descriptors are closed, and the registrants see
 * their connections close).
 */
int handover_read(void);

/* Open the control socket of cfg, or take over the old process's. */
int handover_control_open(const struct config *cfg);

/* After control_start: take over the connections, the registrations
 * and the handoffs waiting, and say so in the log. */
void handover_restore(struct daemon *d);

#endif
