/*
 * conn_limits.c - the process-wide limits as one worker meets them:
 * accepting while max_connections allows it, and the preambles that give
 * way at max_pending (pending.c chooses them, fairly by source; the worker
 * holding one resets it here).
 */
#include "conn_int.h"

#include <stdatomic.h>
#include <stddef.h>

#include "listener.h"

/* Accept while the process is below max_connections, or while one of this
 * worker's connections idle between sessions can give way to the newcomer. */
void
conn_accept_limit_update(struct worker *w)
{
	struct limits *l = w->limits;

	if (atomic_load(&l->nconns) >= l->max_connections && w->nidle == 0)
		listeners_pause(w, ACCEPT_PAUSE_LIMIT);
	else
		listeners_resume(w, ACCEPT_PAUSE_LIMIT);
}

void
conn_limits_changed(struct worker *w)
{
	conn_accept_limit_update(w);
	conn_shed(w);
}

/* A preamble chosen to give way does (read once first: a whole preamble
 * may be waiting in its socket); returns once it left. */
static void
shed_one(struct worker *w, struct conn *c)
{
	unsigned before = w->npending;

	conn_client_io(c, EV_READ);
	if (w->npending < before)
		return; /* routed, faulted or closed: no longer pending */
	conn_finish(c, OUTCOME_EVICTED, CLOSE_RESET, LOG_LEVEL_NOTICE,
	    "max_pending (%u) reached, oldest preamble reset: its source "
	    "holds the most", w->limits->max_pending);
}

/* Shed this worker's preambles chosen to give way, whichever worker chose
 * them; 1 if newcomer (or NULL) was one of them: it may be gone. */
int
conn_shed_chosen(struct worker *w, const struct conn *newcomer)
{
	struct pending_entry *e;
	int took = 0;

	while ((e = pending_next_doomed(&w->limits->pending, &w->pending)) != NULL) {
		struct conn *c = (struct conn *)((char *)e - offsetof(struct conn, pend));

		if (newcomer != NULL && c == newcomer) {
			took = 1;
			newcomer = NULL;
		}
		shed_one(w, c);
	}
	return took;
}

void
conn_shed(struct worker *w)
{
	(void)conn_shed_chosen(w, NULL);
}

