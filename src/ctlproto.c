/*
 * ctlproto.c - the control protocol's parser and formatter (ctlproto.h).
 *
 * A message is tokens separated by exactly one space, each of bytes
 * 0x21..0x7e; ERR and REVOKED end with free text (0x20..0x7e); HANDOFF is
 * a line, a newline, then raw bytes.  The parser walks the tokens once,
 * left to right, and stops at the first that is wrong.  The formatter
 * parses what it wrote before it returns, so the two cannot disagree.
 */
#include <string.h>

#include "ctlproto.h"
#include "decimal.h"

static const char *const verb_names[] = {
	[CTL_HELLO] = "HELLO", [CTL_REGISTER] = "REGISTER",
	[CTL_UNREGISTER] = "UNREGISTER", [CTL_VALIDATE] = "VALIDATE",
	[CTL_TAKEN] = "TAKEN", [CTL_LIST] = "LIST", [CTL_STATS] = "STATS",
	[CTL_OK] = "OK", [CTL_ROUTE] = "ROUTE", [CTL_STAT] = "STAT",
	[CTL_ERR] = "ERR", [CTL_HANDOFF] = "HANDOFF", [CTL_REVOKED] = "REVOKED",
};

static const char *const code_names[] = {
	[CTL_E_SYNTAX] = "syntax", [CTL_E_VERSION] = "version",
	[CTL_E_STATE] = "state", [CTL_E_SIZE] = "size",
	[CTL_E_DENIED] = "denied", [CTL_E_CONFLICT] = "conflict",
	[CTL_E_LIMIT] = "limit", [CTL_E_VIA] = "via",
	[CTL_E_BACKEND] = "backend", [CTL_E_TLS] = "tls",
	[CTL_E_UNKNOWN] = "unknown",
};

static const char *const mode_names[] = {
	[CTL_MODE_PROXY] = "proxy", [CTL_MODE_HANDOFF] = "handoff",
};

static const char *const kind_names[] = {
	[CTL_KIND_STATIC] = "static", [CTL_KIND_PROXY] = "proxy",
	[CTL_KIND_HANDOFF] = "handoff",
};

#define NAME_OF(table, i) \
	((unsigned)(i) < sizeof(table) / sizeof(table[0]) ? table[i] : NULL)

const char *
ctl_verb_name(enum ctl_verb verb)
{
	return NAME_OF(verb_names, verb);
}

const char *
ctl_code_name(enum ctl_code code)
{
	return NAME_OF(code_names, code);
}

const char *
ctl_mode_name(enum ctl_mode mode)
{
	return NAME_OF(mode_names, mode);
}

const char *
ctl_kind_name(enum ctl_kind kind)
{
	return NAME_OF(kind_names, kind);
}

const char *
ctl_parse_error_text(int error)
{
	switch (error) {
	case CTL_PE_EMPTY: return "empty message";
	case CTL_PE_SIZE: return "message too long";
	case CTL_PE_BYTE: return "byte not printable ASCII in a token";
	case CTL_PE_SPACE: return "leading, trailing or doubled space";
	case CTL_PE_VERB: return "unknown verb";
	case CTL_PE_ARITY: return "wrong number of tokens";
	case CTL_PE_TAG: return "bad tag";
	case CTL_PE_ID: return "bad id";
	case CTL_PE_NUMBER: return "bad number";
	case CTL_PE_MODE: return "mode neither proxy nor handoff";
	case CTL_PE_KIND: return "bad route kind";
	case CTL_PE_CODE: return "unknown error code";
	case CTL_PE_ANSWER: return "bad OK answer";
	case CTL_PE_TEXT: return "free text empty or not printable";
	case CTL_PE_LENGTH: return "HANDOFF length does not match";
	case CTL_PE_ROUTE: return "inconsistent ROUTE";
	default: return "not a parse error";
	}
}

enum ctl_code
ctl_parse_error_code(int error)
{
	return error == CTL_PE_SIZE ? CTL_E_SIZE : CTL_E_SYNTAX;
}

struct ctl_span
ctl_span_str(const char *s)
{
	struct ctl_span sp = { s != NULL ? s : "", s != NULL ? strlen(s) : 0 };

	return sp;
}

/* ------------------------------------------------------------ parsing */

/* The bytes still to read. */
struct cursor {
	const char *p;
	size_t len, pos;
};

static int
at_end(const struct cursor *c)
{
	return c->pos == c->len;
}

/* The next token into *t: 0, or CTL_PE_ARITY at the end, CTL_PE_BYTE,
 * CTL_PE_SPACE. */
static int
next(struct cursor *c, struct ctl_span *t)
{
	size_t i = c->pos;

	if (at_end(c))
		return CTL_PE_ARITY;
	for (; i < c->len && c->p[i] != ' '; i++)
		if ((unsigned char)c->p[i] < 0x21 || (unsigned char)c->p[i] > 0x7e)
			return CTL_PE_BYTE;
	if (i == c->pos)
		return CTL_PE_SPACE;
	t->p = c->p + c->pos;
	t->len = i - c->pos;
	if (i < c->len) {
		/* a space: another token must follow it */
		if (i + 1 == c->len)
			return CTL_PE_SPACE;
		i++;
	}
	c->pos = i;
	return 0;
}

static int
is(const struct ctl_span *t, const char *word)
{
	return t->len == strlen(word) && memcmp(t->p, word, t->len) == 0;
}

/* A canonical decimal (no sign, no leading zero) in min..max: 0 or -1. */
static int
number(const struct ctl_span *t, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (t->len == 0 || (t->p[0] == '0' && t->len > 1))
		return -1;
	for (size_t i = 0; i < t->len; i++) {
		unsigned d = (unsigned char)t->p[i] - '0';

		if (d > 9 || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

/* The next token as a number in min..max; bad is the error if it is not. */
static int
next_number(struct cursor *c, uint64_t min, uint64_t max, int bad,
    uint64_t *out)
{
	struct ctl_span t;
	int rc = next(c, &t);

	if (rc != 0)
		return rc;
	return number(&t, min, max, out) == 0 ? 0 : bad;
}

static int
next_tag(struct cursor *c, uint64_t min, struct ctl_msg *m)
{
	uint64_t v;
	int rc = next_number(c, min, CTL_TAG_MAX, CTL_PE_TAG, &v);

	if (rc == 0)
		m->tag = (uint32_t)v;
	return rc;
}

static int
next_id(struct cursor *c, uint64_t *out)
{
	return next_number(c, 1, CTL_ID_MAX, CTL_PE_ID, out);
}

/* uid or pid: "-" (-1) or a number up to max. */
static int
next_owner(struct cursor *c, uint64_t max, int64_t *out)
{
	struct ctl_span t;
	uint64_t v;
	int rc = next(c, &t);

	if (rc != 0)
		return rc;
	if (is(&t, "-")) {
		*out = -1;
		return 0;
	}
	if (number(&t, 0, max, &v) != 0)
		return CTL_PE_NUMBER;
	*out = (int64_t)v;
	return 0;
}

/* A name from table (of n) into *out, else bad. */
static int
next_name(struct cursor *c, const char *const *table, size_t n, int bad,
    unsigned *out)
{
	struct ctl_span t;
	int rc = next(c, &t);

	if (rc != 0)
		return rc;
	for (unsigned i = 0; i < n; i++)
		if (table[i] != NULL && is(&t, table[i])) {
			*out = i;
			return 0;
		}
	return bad;
}

#define NEXT_NAME(c, table, bad, out) \
	next_name(c, table, sizeof(table) / sizeof(table[0]), bad, out)

/* The rest of the message as free text: at least one byte, 0x20..0x7e. */
static int
rest_text(struct cursor *c, struct ctl_span *t)
{
	if (at_end(c))
		return CTL_PE_TEXT;
	for (size_t i = c->pos; i < c->len; i++)
		if ((unsigned char)c->p[i] < 0x20 || (unsigned char)c->p[i] > 0x7e)
			return CTL_PE_TEXT;
	t->p = c->p + c->pos;
	t->len = c->len - c->pos;
	c->pos = c->len;
	return 0;
}

static int
parse_ok(struct cursor *c, struct ctl_msg *m)
{
	struct ctl_span a;
	uint64_t v;
	int rc;

	m->ok = CTL_OK_PLAIN;
	if (at_end(c))
		return 0;
	if ((rc = next(c, &a)) != 0)
		return rc;
	if (is(&a, "yes") || is(&a, "no")) {
		m->ok = is(&a, "yes") ? CTL_OK_YES : CTL_OK_NO;
		return 0;
	}
	if (number(&a, 0, UINT64_MAX, &v) != 0)
		return CTL_PE_ANSWER;
	m->ok = CTL_OK_VALUE;
	m->value = v;
	if (at_end(c))
		return 0;
	/* OK <tag> <version> <software>: the answer to HELLO */
	if (v < 1 || v > UINT32_MAX)
		return CTL_PE_NUMBER;
	m->ok = CTL_OK_HELLO;
	m->version = (uint32_t)v;
	m->value = 0;
	return next(c, &m->name);
}

static int
parse_route(struct cursor *c, struct ctl_msg *m)
{
	unsigned kind;
	int rc;

	if ((rc = NEXT_NAME(c, kind_names, CTL_PE_KIND, &kind)) != 0 ||
	    (rc = next(c, &m->name)) != 0 || (rc = next(c, &m->via)) != 0 ||
	    (rc = next(c, &m->addr)) != 0 ||
	    (rc = next_owner(c, UINT32_MAX, &m->uid)) != 0 ||
	    (rc = next_owner(c, INT32_MAX, &m->pid)) != 0 ||
	    (rc = next_number(c, 0, UINT64_MAX, CTL_PE_NUMBER, &m->value)) != 0)
		return rc;
	m->kind = (enum ctl_kind)kind;
	if ((m->uid < 0) != (kind == CTL_KIND_STATIC) ||
	    (m->pid < 0) != (kind == CTL_KIND_STATIC) ||
	    is(&m->addr, "handoff") != (kind == CTL_KIND_HANDOFF))
		return CTL_PE_ROUTE;
	return 0;
}

/* HANDOFF <handoff-id> <reg-id> <nbytes>\n<nbytes bytes> */
static int
parse_handoff(const char *p, size_t len, struct ctl_msg *m)
{
	const char *nl = memchr(p, '\n',
	    len < CTL_HANDOFF_LINE_MAX ? len : CTL_HANDOFF_LINE_MAX);
	struct cursor c = { p, 0, sizeof("HANDOFF ") - 1 };
	uint64_t nbytes;
	int rc;

	if (nl == NULL)
		return CTL_PE_LENGTH;
	c.len = (size_t)(nl - p);
	if ((rc = next_id(&c, &m->handoff_id)) != 0 ||
	    (rc = next_id(&c, &m->reg_id)) != 0 ||
	    (rc = next_number(&c, 1, CTL_PREAMBLE_MAX, CTL_PE_NUMBER,
	    &nbytes)) != 0)
		return rc;
	if (!at_end(&c))
		return CTL_PE_ARITY;
	if (nbytes != len - c.len - 1)
		return CTL_PE_LENGTH;
	m->preamble.p = nl + 1;
	m->preamble.len = (size_t)nbytes;
	return 0;
}

static int
parse_client(struct cursor *c, struct ctl_msg *m)
{
	uint64_t v = 0;
	unsigned mode;
	int rc;

	if (m->verb == CTL_TAKEN)
		return next_id(c, &m->handoff_id);
	if ((rc = next_tag(c, 1, m)) != 0)
		return rc;
	switch (m->verb) {
	case CTL_HELLO:
		rc = next_number(c, 1, UINT32_MAX, CTL_PE_NUMBER, &v);
		m->version = (uint32_t)v;
		return rc;
	case CTL_REGISTER:
		if ((rc = next(c, &m->via)) != 0 ||
		    (rc = NEXT_NAME(c, mode_names, CTL_PE_MODE, &mode)) != 0)
			return rc;
		m->mode = (enum ctl_mode)mode;
		return mode == CTL_MODE_PROXY ? next(c, &m->addr) : 0;
	case CTL_UNREGISTER:
		return next_id(c, &m->reg_id);
	case CTL_VALIDATE:
		if ((rc = next_id(c, &m->reg_id)) != 0)
			return rc;
		return next(c, &m->via);
	default: /* LIST, STATS: the tag alone */
		return 0;
	}
}

static int
parse_daemon(struct cursor *c, struct ctl_msg *m)
{
	unsigned code;
	int rc;

	if (m->verb == CTL_REVOKED) {
		if ((rc = next_id(c, &m->reg_id)) != 0)
			return rc;
	} else if ((rc = next_tag(c, m->verb == CTL_ERR ? 0 : 1, m)) != 0)
		return rc;
	switch (m->verb) {
	case CTL_OK:
		return parse_ok(c, m);
	case CTL_ROUTE:
		return parse_route(c, m);
	case CTL_STAT:
		if ((rc = next(c, &m->name)) != 0)
			return rc;
		return next_number(c, 0, UINT64_MAX, CTL_PE_NUMBER, &m->value);
	default: /* ERR, REVOKED */
		if ((rc = NEXT_NAME(c, code_names, CTL_PE_CODE, &code)) != 0)
			return rc;
		m->code = (enum ctl_code)code;
		return rest_text(c, &m->text);
	}
}

int
ctl_parse(const void *buf, size_t len, enum ctl_side from, struct ctl_msg *m)
{
	struct cursor c = { buf, len, 0 };
	unsigned v;
	int rc;

	memset(m, 0, sizeof(*m));
	m->uid = m->pid = -1;
	if (len == 0)
		return CTL_PE_EMPTY;
	if (from == CTL_FROM_DAEMON && len > sizeof("HANDOFF ") - 1 &&
	    memcmp(buf, "HANDOFF ", sizeof("HANDOFF ") - 1) == 0) {
		m->verb = CTL_HANDOFF;
		if (len > CTL_HANDOFF_MAX)
			return CTL_PE_SIZE;
		rc = parse_handoff(buf, len, m);
		return rc != 0 ? rc : CTL_HANDOFF;
	}
	if (len > CTL_MSG_MAX)
		return CTL_PE_SIZE;
	if ((rc = NEXT_NAME(&c, verb_names, CTL_PE_VERB, &v)) != 0)
		return rc;
	m->verb = (enum ctl_verb)v;
	if ((m->verb <= CTL_STATS) != (from == CTL_FROM_CLIENT))
		return CTL_PE_VERB;
	if (m->verb == CTL_HANDOFF) /* "HANDOFF" and nothing after it */
		return CTL_PE_ARITY;
	rc = from == CTL_FROM_CLIENT ? parse_client(&c, m) : parse_daemon(&c, m);
	if (rc == 0 && !at_end(&c))
		rc = CTL_PE_ARITY;
	return rc != 0 ? rc : (int)m->verb;
}

/* ------------------------------------------------------------ formatting */

/* What is written so far; bad once something did not fit. */
struct out {
	char *buf;
	size_t cap, len;
	int bad;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->bad || n > o->cap - o->len) {
		o->bad = 1;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

/* A token, after a space unless it is the first. */
static void
put_token(struct out *o, const char *s, size_t n)
{
	if (o->len > 0)
		put(o, " ", 1);
	if (s == NULL)
		o->bad = 1;
	else
		put(o, s, n);
}

static void
put_word(struct out *o, const char *s)
{
	put_token(o, s, s != NULL ? strlen(s) : 0);
}

static void
put_span(struct out *o, struct ctl_span sp)
{
	put_token(o, sp.p, sp.len);
}

static void
put_number(struct out *o, uint64_t v)
{
	char d[DECIMAL_MAX];
	size_t i = decimal_format(v, d);

	put_token(o, d + i, sizeof(d) - i);
}

static void
put_owner(struct out *o, int64_t v)
{
	if (v < 0)
		put_word(o, "-");
	else
		put_number(o, (uint64_t)v);
}

/* Free text: made printable, "-" if empty, cut to fit (one byte at least). */
static void
put_text(struct out *o, struct ctl_span t)
{
	size_t room, n;

	put(o, " ", 1);
	if (t.len == 0)
		t = ctl_span_str("-");
	room = o->cap < CTL_MSG_MAX ? o->cap : CTL_MSG_MAX;
	if (o->bad || o->len >= room) {
		o->bad = 1;
		return;
	}
	room -= o->len;
	n = t.len < room ? t.len : room;
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)t.p[i];

		o->buf[o->len++] = b >= 0x20 && b <= 0x7e ? (char)b : '?';
	}
}

static void
format_body(const struct ctl_msg *m, struct out *o)
{
	put_word(o, ctl_verb_name(m->verb));
	if (m->verb == CTL_TAKEN) {
		put_number(o, m->handoff_id);
		return;
	}
	if (m->verb == CTL_REVOKED)
		put_number(o, m->reg_id);
	else
		put_number(o, m->tag);
	switch (m->verb) {
	case CTL_HELLO:
		put_number(o, m->version);
		break;
	case CTL_REGISTER:
		put_span(o, m->via);
		put_word(o, ctl_mode_name(m->mode));
		if (m->mode == CTL_MODE_PROXY)
			put_span(o, m->addr);
		break;
	case CTL_UNREGISTER:
		put_number(o, m->reg_id);
		break;
	case CTL_VALIDATE:
		put_number(o, m->reg_id);
		put_span(o, m->via);
		break;
	case CTL_OK:
		if (m->ok == CTL_OK_YES || m->ok == CTL_OK_NO)
			put_word(o, m->ok == CTL_OK_YES ? "yes" : "no");
		else if (m->ok == CTL_OK_VALUE)
			put_number(o, m->value);
		else if (m->ok == CTL_OK_HELLO) {
			put_number(o, m->version);
			put_span(o, m->name);
		} else if (m->ok != CTL_OK_PLAIN)
			o->bad = 1;
		break;
	case CTL_ROUTE:
		put_word(o, ctl_kind_name(m->kind));
		put_span(o, m->name);
		put_span(o, m->via);
		put_span(o, m->addr);
		put_owner(o, m->uid);
		put_owner(o, m->pid);
		put_number(o, m->value);
		break;
	case CTL_STAT:
		put_span(o, m->name);
		put_number(o, m->value);
		break;
	case CTL_ERR:
	case CTL_REVOKED:
		put_word(o, ctl_code_name(m->code));
		put_text(o, m->text);
		break;
	default: /* LIST, STATS: the tag alone; HANDOFF: below */
		break;
	}
}

int
ctl_format_handoff_line(char *buf, size_t cap, uint64_t handoff_id,
    uint64_t reg_id, size_t nbytes)
{
	struct out o = { buf, cap, 0, 0 };

	if (handoff_id < 1 || handoff_id > CTL_ID_MAX || reg_id < 1 ||
	    reg_id > CTL_ID_MAX || nbytes < 1 || nbytes > CTL_PREAMBLE_MAX)
		return -1;
	put_word(&o, "HANDOFF");
	put_number(&o, handoff_id);
	put_number(&o, reg_id);
	put_number(&o, nbytes);
	put(&o, "\n", 1);
	return o.bad ? -1 : (int)o.len;
}

int
ctl_format(const struct ctl_msg *m, char *buf, size_t cap)
{
	struct out o = { buf, cap, 0, 0 };
	struct ctl_msg back;
	enum ctl_side side = m->verb <= CTL_STATS ? CTL_FROM_CLIENT :
	    CTL_FROM_DAEMON;
	int n;

	if (m->verb == CTL_HANDOFF) {
		n = ctl_format_handoff_line(buf, cap, m->handoff_id, m->reg_id,
		    m->preamble.len);
		if (n < 0)
			return -1;
		o.len = (size_t)n;
		put(&o, m->preamble.p, m->preamble.len);
	} else
		format_body(m, &o);
	/* What does not read back (a space in a token, a number out of
	 * range, a text too long for CTL_MSG_MAX) is never sent. */
	if (o.bad || ctl_parse(buf, o.len, side, &back) != (int)m->verb)
		return -1;
	return (int)o.len;
}
