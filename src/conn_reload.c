/*
 * conn_reload.c - what a generation a worker takes does to the connections
 * it already holds (conn.h, conn_reload).
 */
#include "conn_int.h"

/* A preamble not yet decided: decide it under the worker's generation,
 * from its first byte (the route the Via found is the old generation's).
 * Its preamble_timeout still runs from the accept. */
static void
redecide(struct conn *c)
{
	generation_unref(c->gen);
	c->gen = generation_ref(c->w->gen);
	preamble_start(&c->pre);
	if (c->preamble_len > 0)
		preamble_parse(c);
}

/* Bound to its route's backend or TLS outside a followed session: what a
 * reload cannot re-decide in place.  A stream being dialled or replayed
 * is one too unless it will be followed (then it keeps its generation to
 * its End, as a session under way does). */
static const char *
pinned(const struct conn *c)
{
	switch (c->state) {
	case CONN_TLS_HANDSHAKE:
		return "TLS handshake";
	case CONN_TLS_PREAMBLE:
		return "preamble inside TLS";
	case CONN_CONNECTING:
	case CONN_REPLAY:
	case CONN_FORWARDING:
		return c->following ? NULL : "stream not followed";
	default:
		return NULL;
	}
}

void
conn_reload(struct worker *w)
{
	struct conn *c, *next;
	unsigned closed = 0, number = w->gen->number;
	const char *what;

	/* Deciding a preamble frees no connection but its own. */
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (c->gen == w->gen)
			continue;
		if (c->state == CONN_PREAMBLE) {
			redecide(c);
		} else if ((what = pinned(c)) != NULL &&
		    (generation_policy_changed(c->pre.route, w->gen) ||
		    generation_refuses(c->pre.route, w->gen,
		    &c->client_addr.sa))) {
			/* A reset, not a FIN: in the middle of a stream an
			 * end of stream could pass for its orderly end. */
			closed++;
			conn_finish(c, OUTCOME_RELOADED, CLOSE_RESET,
			    LOG_LEVEL_INFO, "generation %u changed the route's "
			    "policy: %s reset", number, what);
		}
	}
	if (closed > 0)
		log_notice("worker %u took generation %u: closed %u connection%s "
		    "pinned to routes whose policy changed", w->index, number,
		    closed, closed == 1 ? "" : "s");
	else
		log_debug("worker %u took generation %u", w->index, number);
}
