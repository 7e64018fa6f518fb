/*
 * handover.c - what a binary upgrade passes besides the listening sockets
 * (handover.h): gathered from control.c, registry.c and handoff.c in the
 * old process, given back to them in the new one.
 */
#include "handover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "handoff.h"
#include "log.h"
#include "registry.h"
#include "upgrade.h"
#include "upgrade_state.h"

/* More clients than the old process can hand off between the upgrade
 * and its exit. */
#define HANDOFF_ID_GAP (UINT64_C(1) << 32)

/* Control connections known by their owner token, in state order. */
struct gather {
	struct upgrade_state st;
	void **owners;
	struct handoff_peer **hps;
	int failed;
};

/* The new process's state, from handover_read() to handover_restore(). */
static struct upgrade_state taken;
static int have_taken;

static size_t
conn_of(const struct gather *g, const void *owner)
{
	size_t i = 0;

	while (i < g->st.nconns && g->owners[i] != owner)
		i++;
	return i;
}

static void
gather_conn(void *arg, int fd, void *owner, struct handoff_peer *hp)
{
	struct gather *g = arg;
	size_t n = g->st.nconns;
	void **o = realloc(g->owners, (n + 1) * sizeof(*o));
	struct handoff_peer **h = o == NULL ? NULL :
	    realloc(g->hps, (n + 1) * sizeof(*h));

	if (o != NULL)
		g->owners = o;
	if (h != NULL)
		g->hps = h;
	if (o == NULL || h == NULL || upgrade_state_add_conn(&g->st, fd) < 0) {
		g->failed = 1;
		return;
	}
	g->owners[n] = owner;
	g->hps[n] = hp;
}

static void
gather_reg(void *arg, const struct registration *r)
{
	struct gather *g = arg;
	size_t conn = conn_of(g, r->owner);

	/* A connection not past HELLO holds no registration. */
	if (conn == g->st.nconns || upgrade_state_add_reg(&g->st, conn, r->id,
	    r->mode, r->prefix, r->mode == CTL_MODE_PROXY ? r->backend : NULL) < 0)
		g->failed = 1;
}

/* The connection whose handoffs handoff_each_pending() lists. */
struct gather_pend {
	struct gather *g;
	size_t conn;
};

static void
gather_pending(void *arg, int fd, uint64_t id, uint64_t reg_id, double left)
{
	struct gather_pend *gc = arg;

	if (upgrade_state_add_pending(&gc->g->st, gc->conn, id, reg_id, fd,
	    left) < 0)
		gc->g->failed = 1;
}

/* Append fd to the descriptors passed; its number in the new process. */
static int
pass(int **fds, size_t *n, int fd)
{
	int *f = realloc(*fds, (*n + 1) * sizeof(*f));

	if (f == NULL)
		return -1;
	*fds = f;
	f[*n] = fd;
	return UPGRADE_FDS_START + (int)(*n)++;
}

int
handover_prepare(int **fds, size_t *n, char *env, size_t envlen)
{
	struct gather g = { .failed = 0 };
	size_t n0 = *n, len, i;
	char *text = NULL;
	int memfd = -1, at = -1;

	upgrade_state_init(&g.st);
	g.st.next_reg_id = registry_next_id();
	/* This process goes on numbering what it still hands off until it
	 * exits: the new one starts far past, so an id names one client. */
	g.st.next_handoff_id = handoff_next_id() + HANDOFF_ID_GAP;
	control_each(gather_conn, &g);
	registry_each(gather_reg, &g);
	for (i = 0; i < g.st.nconns; i++) {
		struct gather_pend gc = { &g, i };

		handoff_each_pending(g.hps[i], gather_pending, &gc);
	}
	/* Each descriptor at its place in the new process. */
	if (control_listener() >= 0 &&
	    (g.st.listener = pass(fds, n, control_listener())) < 0)
		g.failed = 1;
	for (i = 0; i < g.st.nconns && !g.failed; i++)
		if ((g.st.conns[i] = pass(fds, n, g.st.conns[i])) < 0)
			g.failed = 1;
	for (i = 0; i < g.st.npending && !g.failed; i++)
		if ((g.st.pending[i].fd = pass(fds, n, g.st.pending[i].fd)) < 0)
			g.failed = 1;
	if (!g.failed && ((text = upgrade_state_format(&g.st, &len)) == NULL ||
	    (memfd = upgrade_memfd(text, len)) < 0 ||
	    (at = pass(fds, n, memfd)) < 0))
		g.failed = 1;
	if (!g.failed)
		snprintf(env, envlen, "%s=%d", UPGRADE_STATE_ENV, at);
	else {
		if (memfd >= 0)
			close(memfd);
		memfd = -1;
		log_err("SIGUSR2 received: binary upgrade refused: cannot "
		    "write the control state: %s", strerror(errno != 0 ?
		    errno : ENOMEM));
		*n = n0;
	}
	free(text);
	free(g.owners);
	free(g.hps);
	upgrade_state_free(&g.st);
	return memfd;
}

static void
handed_over(void *arg, int fd, void *owner, struct handoff_peer *hp)
{
	(void)arg;
	(void)fd;
	(void)owner;
	handoff_peer_handed_over(hp);
}

void
handover_done(int started)
{
	if (started)
		control_each(handed_over, NULL);
	control_handed_over(started);
}

int
handover_read(void)
{
	size_t len;
	char err[128], *text = upgrade_memfd_take(UPGRADE_STATE_ENV, &len);

	if (text == NULL && len == (size_t)-1) {
		log_err("binary upgrade: cannot read the control state passed "
		    "(%s): registrants' connections are lost", UPGRADE_STATE_ENV);
		return -1;
	}
	if (text == NULL)
		return 0;
	if (upgrade_state_parse(text, len, &taken, err, sizeof(err)) < 0) {
		log_err("binary upgrade: the control state passed is not "
		    "readable: %s", err);
		free(text);
		return -1;
	}
	free(text);
	/* Passed without close-on-exec: none of them goes further. */
	if (taken.listener >= 0)
		(void)fcntl(taken.listener, F_SETFD, FD_CLOEXEC);
	for (size_t i = 0; i < taken.nconns; i++)
		(void)fcntl(taken.conns[i], F_SETFD, FD_CLOEXEC);
	for (size_t i = 0; i < taken.npending; i++)
		(void)fcntl(taken.pending[i].fd, F_SETFD, FD_CLOEXEC);
	have_taken = 1;
	return 0;
}

int
handover_control_open(const struct config *cfg)
{
	if (!have_taken || taken.listener < 0)
		return control_open(cfg);
	return control_adopt_listener(cfg, taken.listener);
}

void
handover_restore(struct daemon *d)
{
	struct handoff_peer **hps;
	struct handoff_sink *sink;
	uint32_t *uids;
	int32_t *pids;
	void **owners;
	char why[256];
	size_t i, regs = 0;

	if (!have_taken)
		return;
	owners = calloc(taken.nconns + 1, sizeof(*owners));
	hps = calloc(taken.nconns + 1, sizeof(*hps));
	uids = calloc(taken.nconns + 1, sizeof(*uids));
	pids = calloc(taken.nconns + 1, sizeof(*pids));
	if (uids == NULL || pids == NULL) {
		free(owners);
		owners = NULL;
	}
	registry_set_next_id(taken.next_reg_id);
	handoff_set_next_id(taken.next_handoff_id);
	for (i = 0; i < taken.nconns; i++)
		if (owners == NULL || hps == NULL ||
		    (owners[i] = control_adopt(taken.conns[i], &hps[i], &uids[i],
		    &pids[i])) == NULL)
			close(taken.conns[i]);
	for (i = 0; i < taken.nregs; i++) {
		const struct upgrade_reg *r = &taken.regs[i];

		if (owners == NULL || owners[r->conn] == NULL)
			continue;
		if (registry_restore(d, owners[r->conn], hps[r->conn],
		    uids[r->conn], pids[r->conn], r->prefix, r->backend, r->id,
		    why, sizeof(why)) != CTL_E_COUNT_)
			log_err("binary upgrade: registration %llu (%s) not taken "
			    "over: %s", (unsigned long long)r->id, r->prefix, why);
		else
			regs++;
	}
	for (i = 0; i < taken.npending; i++) {
		const struct upgrade_pending *p = &taken.pending[i];
		const struct registration *r = registry_of(p->reg_id);

		sink = r != NULL && owners != NULL ? r->sink : NULL;
		if (sink == NULL || hps[p->conn] == NULL) {
			close(p->fd);
			continue;
		}
		handoff_adopt(hps[p->conn], sink, p->fd, p->id, p->left);
	}
	log_notice("binary upgrade: took over %zu control %s, %zu %s and %zu "
	    "%s waiting for TAKEN", taken.nconns, log_plural(taken.nconns,
	    "connection", "connections"), regs, log_plural(regs,
	    "registration", "registrations"), taken.npending,
	    log_plural(taken.npending, "handoff", "handoffs"));
	free(owners);
	free(hps);
	free(uids);
	free(pids);
	upgrade_state_free(&taken);
	have_taken = 0;
}
