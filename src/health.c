/*
 * health.c - active health checks (health.h): the service's answer read
 * byte by byte, and one small non-blocking check per (route, member) on
 * the main thread's loop, which only waits for signals otherwise.
 */
#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "nmf.h"
#include "stats.h"

/* ------------------------------------------------ the answer */

enum { ST_FIRST, ST_END, ST_SIZE, ST_URI, ST_DONE };

void
health_answer_init(struct health_answer *a)
{
	memset(a, 0, sizeof(*a));
}

/* The answer is over with status st (why: for GARBAGE): every byte after
 * it is garbage. */
static int
answer_final(struct health_answer *a, int st, const char *why)
{
	a->stage = ST_DONE;
	a->why = why;
	return st;
}

int
health_answer_byte(struct health_answer *a, uint8_t b)
{
	switch (a->stage) {
	case ST_FIRST:
		if (b == NMF_REC_PREAMBLE_ACK) {
			a->stage = ST_END;
			return HEALTH_ACK;
		}
		if (b != NMF_REC_FAULT)
			return answer_final(a, HEALTH_GARBAGE, "neither an ack nor "
			    "a Fault");
		a->stage = ST_SIZE;
		return HEALTH_MORE;
	case ST_END:
		return answer_final(a, b == NMF_REC_END ? HEALTH_END :
		    HEALTH_GARBAGE, "not End after the ack");
	case ST_SIZE:
		/* Five bytes hold any size; a URI past HEALTH_FAULT_MAX (or
		 * none) is no fault this checker reads. */
		a->size |= (uint32_t)(b & 0x7f) << (7 * a->size_bytes);
		if (++a->size_bytes == NMF_MBINT_MAX_BYTES && (b & 0x80))
			return answer_final(a, HEALTH_GARBAGE, "a Fault size of "
			    "more than 5 bytes");
		if (b & 0x80)
			return HEALTH_MORE;
		if (a->size == 0 || a->size > HEALTH_FAULT_MAX)
			return answer_final(a, HEALTH_GARBAGE, "a Fault size of 0 "
			    "or over 256 bytes");
		a->stage = ST_URI;
		return HEALTH_MORE;
	case ST_URI:
		a->uri[a->got++] = (char)b;
		if (a->got < a->size)
			return HEALTH_MORE;
		a->uri[a->got] = '\0';
		return answer_final(a, HEALTH_FAULT, NULL);
	default:
		return answer_final(a, HEALTH_GARBAGE, "a byte after the end "
		    "of the answer");
	}
}

const char *
health_answer_fault(const struct health_answer *a, char *out, size_t outlen)
{
	size_t plen = sizeof(NMF_FAULT_URI_PREFIX) - 1, skip = 0;

	if (a->got > plen && memcmp(a->uri, NMF_FAULT_URI_PREFIX, plen) == 0)
		skip = plen;
	return log_printable((const uint8_t *)a->uri + skip, a->got - skip,
	    HEALTH_FAULT_MAX, out, outlen);
}

/* ------------------------------------------------ one check */

struct checker {
	struct health *owner;
	struct backend_health *rec;    /* outlives every generation */
	struct addr addr;
	uint8_t *preamble;
	size_t plen, sent;
	char *via;                     /* check_via, for the log */
	double interval, timeout;
	unsigned rise, fall;
	unsigned oks, fails;           /* in a row */
	int up;                        /* as the checks last decided */
	int fault_said;                /* the fault of this run is logged */
	int fd;                        /* -1 between checks */
	struct health_answer ans;
	ev_timer tick, deadline;
	ev_io io;
};

struct health {
	struct ev_loop *loop;
	struct checker **c;
	size_t n;
};

static void
check_close(struct checker *c)
{
	ev_io_stop(c->owner->loop, &c->io);
	ev_timer_stop(c->owner->loop, &c->deadline);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* A check ended with result r (why: for the log). */
static void
check_done(struct checker *c, enum backend_check r, const char *why)
{
	char line[HEALTH_FAULT_MAX * 4 + 128], name[HEALTH_FAULT_MAX * 4 + 8];

	check_close(c);
	stat_add(&c->rec->checks[r], 1);
	if (r == BACKEND_CHECK_FAULT) {
		health_answer_fault(&c->ans, name, sizeof(name));
		snprintf(line, sizeof(line), "the process is up but does not "
		    "serve %s: it answered the Fault %s", c->via, name);
		why = line;
		if (!c->fault_said)
			log_notice("health check of backend %s for route [%s]: %s",
			    c->rec->backend, c->rec->route, line);
		c->fault_said = 1;
	} else {
		c->fault_said = 0;
	}
	if (r == BACKEND_CHECK_OK) {
		c->fails = 0;
		if (++c->oks >= c->rise && !c->up) {
			c->up = 1;
			snprintf(line, sizeof(line), "%u health check%s in a row "
			    "passed", c->oks, c->oks == 1 ? "" : "s");
			backend_mark(c->rec, 1, line);
		}
		return;
	}
	c->oks = 0;
	log_debug("health check of backend %s for route [%s] failed: %s",
	    c->rec->backend, c->rec->route, why);
	if (++c->fails >= c->fall && c->up) {
		char down[sizeof(line) + 64];

		c->up = 0;
		snprintf(down, sizeof(down), "%u health check%s in a row failed, "
		    "the last: %s", c->fails, c->fails == 1 ? "" : "s", why);
		backend_mark(c->rec, 0, down);
	}
}

static void
check_errno(struct checker *c, const char *what, int err)
{
	char why[256];

	snprintf(why, sizeof(why), "%s: %s", what, strerror(err));
	check_done(c, err == ECONNREFUSED || err == ENOENT ?
	    BACKEND_CHECK_REFUSED : BACKEND_CHECK_ERROR, why);
}

static void
on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct checker *c = t->data;
	char why[128];

	(void)loop;
	(void)revents;
	snprintf(why, sizeof(why), "no whole answer within check_timeout "
	    "(%g s)", c->timeout);
	check_done(c, BACKEND_CHECK_TIMEOUT, why);
}

/* The service's bytes: at most what one answer can hold is read. */
static void
check_read(struct checker *c)
{
	static const uint8_t end = NMF_REC_END;
	uint8_t buf[512];
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		check_errno(c, "reading the answer", errno);
		return;
	}
	if (n == 0) {
		check_done(c, BACKEND_CHECK_ERROR, c->ans.stage == 0 ?
		    "closed without an answer to the preamble" :
		    "closed before a whole answer");
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		switch (health_answer_byte(&c->ans, buf[i])) {
		case HEALTH_ACK:
			/* One byte into an empty send buffer. */
			if (send(c->fd, &end, 1, MSG_NOSIGNAL) != 1) {
				check_errno(c, "sending End", errno);
				return;
			}
			break;
		case HEALTH_END:
			if (i + 1 < n)
				break;    /* garbage after it: the next byte says */
			check_done(c, BACKEND_CHECK_OK, "passed");
			return;
		case HEALTH_FAULT:
			if (i + 1 < n)
				break;
			check_done(c, BACKEND_CHECK_FAULT, "");
			return;
		case HEALTH_GARBAGE: {
			char why[128];

			snprintf(why, sizeof(why), "not a net.tcp answer: %s",
			    c->ans.why);
			check_done(c, BACKEND_CHECK_ERROR, why);
			return;
		}
		default:
			break;
		}
	}
}

/* Connected or writable: the rest of the preamble. */
static void
check_write(struct checker *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	ssize_t n;

	if (c->sent == 0 && (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err,
	    &len) < 0 || err != 0)) {
		check_errno(c, "connect", err ? err : errno);
		return;
	}
	n = send(c->fd, c->preamble + c->sent, c->plen - c->sent, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		check_errno(c, "sending the preamble", errno);
		return;
	}
	c->sent += (size_t)n;
	if (c->sent < c->plen)
		return;
	ev_io_stop(c->owner->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_READ);
	ev_io_start(c->owner->loop, &c->io);
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct checker *c = w->data;

	(void)loop;
	if (revents & EV_WRITE)
		check_write(c);
	else
		check_read(c);
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct checker *c = t->data;

	(void)revents;
	if (c->fd >= 0)
		return;           /* the last check is still under way */
	c->fd = socket(c->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		check_errno(c, "socket", errno);
		return;
	}
	c->sent = 0;
	health_answer_init(&c->ans);
	ev_timer_set(&c->deadline, c->timeout, 0.);
	ev_timer_start(loop, &c->deadline);
	if (connect(c->fd, (const struct sockaddr *)&c->addr.ss, c->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		check_errno(c, "connect", errno);
		return;
	}
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(loop, &c->io);
}

static void
checker_free(struct checker *c)
{
	if (c == NULL)
		return;
	check_close(c);
	ev_timer_stop(c->owner->loop, &c->tick);
	free(c->preamble);
	free(c->via);
	free(c);
}

/* A checker for member m of route r; NULL when no memory. */
static struct checker *
checker_new(struct health *h, const struct route *r,
    const struct backend_member *m)
{
	const struct backend_list *l = &r->backends;
	size_t vlen = strlen(l->check_via);
	struct checker *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->owner = h;
	c->fd = -1;
	c->rec = m->health;
	c->addr = m->addr;
	c->interval = l->check_interval;
	c->timeout = l->check_timeout;
	c->rise = l->rise;
	c->fall = l->fall;
	c->up = !atomic_load(&m->health->held);
	ev_timer_init(&c->tick, on_tick, 0., c->interval);
	ev_timer_init(&c->deadline, on_deadline, 0., 0.);
	ev_io_init(&c->io, on_io, -1, EV_WRITE);
	c->tick.data = c->deadline.data = c->io.data = c;
	if ((c->via = strdup(l->check_via)) == NULL ||
	    (c->preamble = malloc(NMF_PREAMBLE_MAX)) == NULL) {
		checker_free(c);
		return NULL;
	}
	c->plen = nmf_preamble_write(c->preamble, NMF_MODE_DUPLEX, c->via, vlen);
	return c;
}

struct health *
health_new(struct ev_loop *loop)
{
	struct health *h = calloc(1, sizeof(*h));

	if (h != NULL)
		h->loop = loop;
	return h;
}

/* The old checker of rec, taken out of old (NULL: none). */
static struct checker *
take_old(struct checker **old, size_t n, const struct backend_health *rec)
{
	for (size_t i = 0; i < n; i++)
		if (old[i] != NULL && old[i]->rec == rec) {
			struct checker *c = old[i];

			old[i] = NULL;
			return c;
		}
	return NULL;
}

int
health_apply(struct health *h, const struct route_table *t)
{
	struct checker **old = h->c, **now = NULL, *c, *was;
	size_t nold = h->n, n = 0, want = 0, i, k;
	int rc = 0;

	for (i = 0; i < routes_count(t); i++)
		if (routes_get(t, i)->backends.check_interval > 0)
			want += routes_get(t, i)->backends.n;
	if (want > 0 && (now = calloc(want, sizeof(*now))) == NULL)
		rc = -1;
	for (i = 0; now != NULL && i < routes_count(t); i++) {
		const struct route *r = routes_get(t, i);

		if (r->backends.check_interval <= 0)
			continue;
		for (k = 0; k < r->backends.n; k++) {
			const struct backend_member *m = &r->backends.m[k];

			if (m->health == NULL || (c = checker_new(h, r, m)) == NULL) {
				rc = -1;
				continue;
			}
			/* A member that stays keeps its counts and its state. */
			if ((was = take_old(old, nold, m->health)) != NULL) {
				c->oks = was->oks;
				c->fails = was->fails;
				c->up = was->up;
				c->fault_said = was->fault_said &&
				    strcmp(was->via, c->via) == 0;
				checker_free(was);
			}
			now[n++] = c;
			ev_timer_start(h->loop, &c->tick);
		}
	}
	/* A member no longer checked is no longer held down by its checks. */
	for (i = 0; i < nold; i++) {
		if (old[i] != NULL && atomic_load(&old[i]->rec->held))
			backend_mark(old[i]->rec, 1, "no longer checked");
		checker_free(old[i]);
	}
	free(old);
	h->c = now;
	h->n = n;
	if (rc < 0)
		log_err("out of memory for the health checks: some members are "
		    "not checked");
	return rc;
}

void
health_free(struct health *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++)
		checker_free(h->c[i]);
	free(h->c);
	free(h);
}
