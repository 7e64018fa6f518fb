/*
 * privs.h - dropping root for good: nettcpd opens its listening sockets
 * and reads its keys as root, then becomes the configured user before it
 * serves anyone, keeping one capability, CAP_NET_BIND_SERVICE, so that a
 * reload can still bind a port below 1024.
 */
#ifndef NETTCPD_PRIVS_H
#define NETTCPD_PRIVS_H

#include "config.h"

/*
 * Become cfg->user (cfg->uid, cfg->gid and the user's supplementary
 * groups) with CAP_NET_BIND_SERVICE as the only capability left, and check
 * that root cannot be regained.  Call it before any thread starts: the
 * threads then inherit the same credentials.  Not root: fine when cfg->user
 * is unset or already this process's user.  Root without cfg->user: a
 * warning, and nothing changes.  Returns 0, or -1 after logging why (the
 * process must then exit: it may be half-way).
 */
int privs_drop(const struct config *cfg);

#endif
