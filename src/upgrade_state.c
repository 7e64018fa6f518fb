/*
 * upgrade_state.c - the control state a binary upgrade hands over, as
 * text (upgrade_state.h).
 */
#include "upgrade_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "textbuf.h"

#define HEADER "nettcpd-upgrade-state 1"
#define FD_MAX 0x7fffffffUL
/* Tokens per record, at most: "pending" and its five fields. */
#define TOKENS_MAX 6
/* A handoff_timeout is at most a day. */
#define MS_MAX (24UL * 3600UL * 1000UL)

void
upgrade_state_init(struct upgrade_state *st)
{
	memset(st, 0, sizeof(*st));
	st->listener = -1;
}

void
upgrade_state_free(struct upgrade_state *st)
{
	for (size_t i = 0; i < st->nregs; i++) {
		free(st->regs[i].prefix);
		free(st->regs[i].backend);
	}
	free(st->regs);
	free(st->conns);
	free(st->pending);
	upgrade_state_init(st);
}

/* A control protocol token: what a prefix or a backend was on the wire. */
static int
is_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (*s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

/* Room for one more element of an array of *n of size each. */
static void *
grow(void *array, size_t n, size_t size)
{
	return realloc(array, (n + 1) * size);
}

int
upgrade_state_add_conn(struct upgrade_state *st, int fd)
{
	int *c;

	if (fd < 0 || (c = grow(st->conns, st->nconns, sizeof(*c))) == NULL)
		return -1;
	st->conns = c;
	st->conns[st->nconns++] = fd;
	return 0;
}

int
upgrade_state_add_reg(struct upgrade_state *st, size_t conn, uint64_t id,
    enum ctl_mode mode, const char *prefix, const char *backend)
{
	struct upgrade_reg *r;
	int handoff = mode == CTL_MODE_HANDOFF;

	if (conn >= st->nconns || id == 0 || id > CTL_ID_MAX ||
	    !is_token(prefix) || (!handoff && !is_token(backend)) ||
	    (r = grow(st->regs, st->nregs, sizeof(*r))) == NULL)
		return -1;
	st->regs = r;
	r = &st->regs[st->nregs];
	r->conn = conn;
	r->id = id;
	r->mode = mode;
	r->prefix = strdup(prefix);
	r->backend = handoff ? NULL : strdup(backend);
	if (r->prefix == NULL || (!handoff && r->backend == NULL)) {
		free(r->prefix);
		free(r->backend);
		return -1;
	}
	st->nregs++;
	return 0;
}

int
upgrade_state_add_pending(struct upgrade_state *st, size_t conn, uint64_t id,
    uint64_t reg_id, int fd, double left)
{
	struct upgrade_pending *p;

	if (conn >= st->nconns || id == 0 || id > CTL_ID_MAX || reg_id == 0 ||
	    reg_id > CTL_ID_MAX || fd < 0 ||
	    (p = grow(st->pending, st->npending, sizeof(*p))) == NULL)
		return -1;
	st->pending = p;
	st->pending[st->npending++] = (struct upgrade_pending){ .conn = conn,
	    .id = id, .reg_id = reg_id, .fd = fd,
	    .left = left < 0 ? 0 : left > MS_MAX / 1000.0 ? MS_MAX / 1000.0 : left };
	return 0;
}

char *
upgrade_state_format(const struct upgrade_state *st, size_t *len)
{
	struct textbuf o = { 0 };
	size_t i;

	textbuf_printf(&o, HEADER "\nids %llu %llu\n",
	    (unsigned long long)st->next_reg_id,
	    (unsigned long long)st->next_handoff_id);
	if (st->listener >= 0)
		textbuf_printf(&o, "listener %d\n", st->listener);
	for (i = 0; i < st->nconns; i++)
		textbuf_printf(&o, "conn %d\n", st->conns[i]);
	for (i = 0; i < st->nregs; i++) {
		const struct upgrade_reg *r = &st->regs[i];

		textbuf_printf(&o, "reg %zu %llu %s %s%s%s\n", r->conn,
		    (unsigned long long)r->id, ctl_mode_name(r->mode), r->prefix,
		    r->backend != NULL ? " " : "",
		    r->backend != NULL ? r->backend : "");
	}
	for (i = 0; i < st->npending; i++) {
		const struct upgrade_pending *p = &st->pending[i];

		textbuf_printf(&o, "pending %zu %llu %llu %d %lu\n", p->conn,
		    (unsigned long long)p->id, (unsigned long long)p->reg_id,
		    p->fd, (unsigned long)(p->left * 1000.0 + 0.5));
	}
	textbuf_printf(&o, "end\n");
	return textbuf_take(&o, len);
}

/* One decimal field of at most max (at least min). */
static int
number(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	return decimal_parse(&s, max, out) < 0 || *s != '\0' || *out < min ?
	    -1 : 0;
}

/* Whether fd is already named by a record of st. */
static int
fd_named(const struct upgrade_state *st, int fd)
{
	if (st->listener == fd)
		return 1;
	for (size_t i = 0; i < st->nconns; i++)
		if (st->conns[i] == fd)
			return 1;
	for (size_t i = 0; i < st->npending; i++)
		if (st->pending[i].fd == fd)
			return 1;
	return 0;
}

/* One record, its tokens in t[0..n): NULL, or what is wrong with it. */
static const char *
record(struct upgrade_state *st, char **t, size_t n, int *ids_seen)
{
	unsigned long a, b, c, d, e;

	if (strcmp(t[0], "ids") == 0) {
		if (n != 3 || *ids_seen || number(t[1], 1, CTL_ID_MAX, &a) < 0 ||
		    number(t[2], 1, CTL_ID_MAX, &b) < 0)
			return "bad ids";
		*ids_seen = 1;
		st->next_reg_id = a;
		st->next_handoff_id = b;
		return NULL;
	}
	if (strcmp(t[0], "listener") == 0 || strcmp(t[0], "conn") == 0) {
		if (n != 2 || number(t[1], 0, FD_MAX, &a) < 0 ||
		    fd_named(st, (int)a))
			return "bad descriptor";
		if (t[0][0] == 'c')
			return upgrade_state_add_conn(st, (int)a) < 0 ?
			    "out of memory" : NULL;
		if (st->listener >= 0)
			return "a second listener";
		st->listener = (int)a;
		return NULL;
	}
	if (strcmp(t[0], "reg") == 0) {
		int handoff = n == 5 && strcmp(t[3], "handoff") == 0;

		if ((!handoff && (n != 6 || strcmp(t[3], "proxy") != 0)) ||
		    number(t[1], 0, st->nconns ? st->nconns - 1 : 0, &a) < 0 ||
		    st->nconns == 0 || number(t[2], 1, CTL_ID_MAX, &b) < 0)
			return "bad reg";
		return upgrade_state_add_reg(st, a, b, handoff ? CTL_MODE_HANDOFF :
		    CTL_MODE_PROXY, t[4], handoff ? NULL : t[5]) < 0 ?
		    "bad reg" : NULL;
	}
	if (strcmp(t[0], "pending") == 0) {
		if (n != 6 || st->nconns == 0 ||
		    number(t[1], 0, st->nconns - 1, &a) < 0 ||
		    number(t[2], 1, CTL_ID_MAX, &b) < 0 ||
		    number(t[3], 1, CTL_ID_MAX, &c) < 0 ||
		    number(t[4], 0, FD_MAX, &d) < 0 || fd_named(st, (int)d) ||
		    number(t[5], 0, MS_MAX, &e) < 0)
			return "bad pending";
		return upgrade_state_add_pending(st, a, b, c, (int)d,
		    (double)e / 1000.0) < 0 ? "out of memory" : NULL;
	}
	return "unknown record";
}

int
upgrade_state_parse(const char *buf, size_t len, struct upgrade_state *st,
    char *err, size_t errlen)
{
	char *text = malloc(len + 1), *line, *next, *t[TOKENS_MAX + 1];
	const char *why = NULL;
	unsigned lineno = 0;
	int ids_seen = 0, ended = 0;

	upgrade_state_init(st);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(text, buf, len);
	text[len] = '\0';
	if (strlen(text) != len)
		why = "a NUL byte";
	for (line = text; why == NULL && *line != '\0'; line = next) {
		size_t n = 0;

		lineno++;
		if ((next = strchr(line, '\n')) == NULL) {
			why = "a line without its newline";
			break;
		}
		*next++ = '\0';
		if (ended) {
			why = "bytes after end";
			break;
		}
		if (lineno == 1) {
			if (strcmp(line, HEADER) != 0)
				why = "not a version 1 upgrade state";
			continue;
		}
		for (char *s = line; n <= TOKENS_MAX; n++) {
			t[n] = s;
			if ((s = strchr(s, ' ')) == NULL) {
				n++;
				break;
			}
			*s++ = '\0';
		}
		if (n > TOKENS_MAX)
			why = "too many fields";
		else if (strcmp(t[0], "end") == 0)
			ended = n == 1 && ids_seen ? 1 : (why = "end out of place",
			    0);
		else
			why = record(st, t, n, &ids_seen);
	}
	if (why == NULL && !ended) {
		why = "no end";
		lineno++;
	}
	free(text);
	if (why == NULL)
		return 0;
	snprintf(err, errlen, "line %u: %s", lineno, why);
	upgrade_state_free(st);
	return -1;
}
