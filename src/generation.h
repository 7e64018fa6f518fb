/*
 * generation.h - one loaded configuration, as connections use it: the
 * settings, the route table and its TLS contexts, built and checked
 * together (config_load) and shared, reference-counted, by every
 * connection that started under it.  A reload builds a new generation
 * beside the old one; the old one lives on while a connection holds it.
 */
#ifndef NETTCPD_GENERATION_H
#define NETTCPD_GENERATION_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "config.h"
#include "routes.h"

struct generation {
	atomic_uint refs;
	struct config *cfg;
	unsigned number;     /* 1 for the configuration nettcpd started with */
	time_t loaded;       /* when it was built */
	struct generation *base; /* built by registry.c: the file's generation */
	                     /* whose settings cfg copies; NULL: from a file */
};

/*
 * Load path into a new generation numbered number, holding one reference.
 * NULL on failure with every problem in err, as config_load() writes them.
 */
struct generation *generation_load(const char *path, unsigned number,
    char *err, size_t errlen);

/*
 * A generation numbered number with base's settings and the route table
 * routes (whose reference it takes), for the registrations of the moment
 * (registry.c); it holds base.  NULL on allocation failure (routes is
 * still the caller's).
 */
struct generation *generation_derive(struct generation *base,
    struct route_table *routes, unsigned number);

struct generation *generation_ref(struct generation *g);
void generation_unref(struct generation *g);

/*
 * The first setting of next that a reload cannot apply to a running
 * process (its listeners, its threads, its pools are sized from it), by
 * its key name; NULL when next can replace cur.
 */
const char *generation_needs_restart(const struct generation *cur,
    const struct generation *next);

/*
 * Whether next changes the policy of route r (of an older generation) for
 * the connections already on it: 1 when next has no route of r's name (the
 * config section), or forwards it to another backend address, or changes
 * whether it terminates TLS or the certificate it presents; else 0.  A
 * registration's route that next no longer has is 0: its registrant left,
 * and the promise is that no stream in flight is cut.  Which
 * Via prefixes lead to a route is not part of it: that decides new
 * sessions, which are routed under the newest generation anyway.
 */
int generation_policy_changed(const struct route *r,
    const struct generation *next);

/*
 * Whether next's rules refuse client on route r (of an older generation):
 * [global]'s allow and deny, then those of next's route of r's name (none
 * when next has no such route: generation_policy_changed says that).
 */
int generation_refuses(const struct route *r, const struct generation *next,
    const struct sockaddr *client);

#endif
