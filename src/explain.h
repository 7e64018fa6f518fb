/*
 * explain.h - what a configuration does, in words, for nettcpd -t: its
 * route table, and which route a given Via takes and why.
 */
#ifndef NETTCPD_EXPLAIN_H
#define NETTCPD_EXPLAIN_H

#include <stdio.h>

#include "config.h"

/* Every prefix, a line each, sorted by route: class, host, port, path,
 * route, backend. */
void explain_table(FILE *out, const struct config *cfg);

/* A prefix as a configuration would write it, net.tcp://+:808/path, into
 * out (len bytes); nettcpctl list shows them so too (control.c). */
struct route_prefix;
void explain_prefix_text(const struct route_prefix *p, char *out, size_t len);

/*
 * Which route via takes on each listening port of cfg, and by which
 * prefix, or the fault a client would get.  Returns 0 when every port
 * routes it, 1 when some port does not (EndpointNotFound or a Via nettcpd
 * would reset).
 */
int explain_via(FILE *out, const struct config *cfg, const char *via);

#endif
