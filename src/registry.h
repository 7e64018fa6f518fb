/*
 * registry.h - the routes processes register at runtime over the control
 * socket (control.c), on top of the file's: each change builds a new
 * generation from the file's routes and the live registrations and
 * publishes it to the workers as a reload does; connections in flight keep
 * theirs.  Main thread only.
 *
 * A registered route is named "reg:<id>"; its prefix is normalised as a
 * route's via is; one exactly equal to a static route's or another
 * registration's is refused (conflict); under a static route's prefix it
 * takes that route's policy (TLS, allow and deny, pool, send_proxy,
 * rewrite_via).  The list is flat (id, prefix, mode, backend, owner's uid
 * and pid, owner), so that it can be handed to a new binary.
 */
#ifndef NETTCPD_REGISTRY_H
#define NETTCPD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "ctlproto.h"
#include "daemon.h"
#include "handoff.h"

struct registration {
	uint64_t id;
	char *prefix;              /* as registered */
	char *name;                /* its route's: "reg:" and the prefix */
	                           /* normalised (registry_add) */
	enum ctl_mode mode;
	char *backend;             /* proxy: the backend list as given */
	struct handoff_sink *sink; /* handoff: where its clients go */
	uint32_t uid;              /* the owner's, SO_PEERCRED */
	int32_t pid;
	void *owner;               /* its control connection (control.c) */
	int revoked;               /* a reload's static route took its prefix */
	char why[256];             /* how (registry_apply) */
	struct registration *next;
};

/* Called when a reload's static route took a registration's exact
 * prefix: the registration is gone; tell its owner (REVOKED). */
typedef void registry_revoke_fn(void *owner, uint64_t id, const char *why);

/*
 * Register prefix for owner: checked, built into a new generation and
 * published.  A handoff registration (backend NULL) passes its clients to
 * hpeer, owner's side in handoff.c.  Returns CTL_E_COUNT_ on success with
 * the id in *id, or the ERR code with the reason in why (len bytes).
 */
enum ctl_code registry_add(struct daemon *d, void *owner,
    struct handoff_peer *hpeer, uint32_t uid, int32_t pid, const char *prefix,
    const char *backend, uint64_t *id, char *why, size_t len);

/* The same under the id given: a binary upgrade's new process takes over
 * the old one's registrations. */
enum ctl_code registry_restore(struct daemon *d, void *owner,
    struct handoff_peer *hpeer, uint32_t uid, int32_t pid, const char *prefix,
    const char *backend, uint64_t id, char *why, size_t len);

/* Binary upgrade: each registration, and the id the next one gets (the
 * new process goes on from the old one's). */
void registry_each(void (*fn)(void *arg, const struct registration *r),
    void *arg);
uint64_t registry_next_id(void);
void registry_set_next_id(uint64_t id);

/* Remove owner's registration id and publish: 0, or -1 when owner has no
 * such registration. */
int registry_remove(struct daemon *d, void *owner, uint64_t id);

/* Remove every registration of owner (its connection is gone), publish. */
void registry_remove_owner(struct daemon *d, void *owner);

/* How many registrations owner holds. */
size_t registry_count_owner(const void *owner);

/* The registration of route r, or NULL for a static route. */
const struct registration *registry_of(uint64_t reg_id);

/* Counts by mode, for /metrics and STATS. */
size_t registry_count(enum ctl_mode mode);

/*
 * A reload loaded next from the file: the generation to publish instead,
 * with the live registrations on next's routes (next's reference passes to
 * it).  A registration whose exact prefix next's static routes now hold is
 * left out, and marked for registry_commit.  Returns next itself when
 * there is no registration, or NULL when out of memory (next is then
 * unchanged and still the caller's).
 */
struct generation *registry_apply(struct generation *next);

/* The reload is published: drop the registrations registry_apply left
 * out, telling each owner through revoke() and logging a warning. */
void registry_commit(registry_revoke_fn *revoke);

/* Free the list at exit. */
void registry_free(void);

#endif
