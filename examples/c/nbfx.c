/*
 * nbfx.c - reading a WCF request in the binary session encoding
 * ([MC-NBFSE], [MC-NBFX], [MC-NBFS]); see nbfx.h.  The reply is written
 * by nbfx_write.c.
 *
 * The reader walks the records once, front to back, keeping for each open
 * element only what it is to the envelope (Header, Action, Body, the
 * operation...), so a field is recognised by its path and every other
 * element is skipped whatever its content.  Record types and layouts are
 * those of System.Xml's XmlBinaryNodeType and XmlBinaryReader in the .NET
 * reference source.
 */
#include "nbfx.h"

#include <string.h>

#include "nbfx_int.h"
#include "nmf.h"

/* The static dictionary strings whose names the reader matches. */
static const struct {
	uint32_t id;
	const char *s;
} static_dict[] = {
	{ DICT_MUST_UNDERSTAND, "mustUnderstand" },
	{ DICT_ENVELOPE, "Envelope" },
	{ DICT_SOAP12_NS, "http://www.w3.org/2003/05/soap-envelope" },
	{ DICT_ADDRESSING_NS, "http://www.w3.org/2005/08/addressing" },
	{ DICT_HEADER, "Header" },
	{ DICT_ACTION, "Action" },
	{ DICT_TO, "To" },
	{ DICT_BODY, "Body" },
	{ DICT_RELATES_TO, "RelatesTo" },
	{ DICT_MESSAGE_ID, "MessageID" },
};

/* What an open element is to the envelope. */
enum role {
	ROLE_OTHER = 0,
	ROLE_DOCUMENT,   /* outside every element */
	ROLE_ENVELOPE,
	ROLE_HEADER,
	ROLE_BODY,
	ROLE_ACTION,
	ROLE_MESSAGE_ID,
	ROLE_OP,
	ROLE_ARG,
};

struct reader {
	const struct nbfx_session *s;
	const uint8_t *buf;
	size_t pos, len;
	uint8_t *scratch;
	size_t cap, used;
	uint8_t role[NBFX_MAX_DEPTH + 1];  /* role[depth] is the innermost element's */
	uint8_t op_children;               /* children of the operation element so far */
	size_t depth;
	int closed;                        /* the Envelope has ended */
	unsigned dict_texts;               /* dictionary texts kept in fields */
	struct nbfx_request *req;
};

/* A string: bytes of the message, of the session, or of the static table;
 * p NULL for a static dictionary string this reader does not know. */
struct str {
	const uint8_t *p;
	size_t len;
};

static int
str_is(struct str s, const char *lit)
{
	size_t n = strlen(lit);

	return s.p != NULL && s.len == n && memcmp(s.p, lit, n) == 0;
}

void
nbfx_session_init(struct nbfx_session *s)
{
	s->count = 0;
	s->used = 0;
}

size_t
nbfx_scratch_size(size_t len)
{
	/* UTF-16 text as UTF-8, the operation's name and the dictionary
	 * texts from the session's strings, the "0" or "1" of a one-byte
	 * record, a UniqueId's 16 bytes from 17 */
	return len + len / 2 + (NBFX_DICT_TEXTS + 1) * NBFX_SESSION_BYTES + 64;
}

static int
rd_bytes(struct reader *r, size_t n, const uint8_t **p)
{
	if (r->len - r->pos < n)
		return NBFX_ERR_TRUNCATED;
	*p = r->buf + r->pos;
	r->pos += n;
	return NBFX_OK;
}

static int
rd_mbint(struct reader *r, uint32_t *v)
{
	int used = nmf_mbint_decode(r->buf + r->pos, r->len - r->pos, v);

	if (used < 0)
		return NBFX_ERR_MBINT;
	if (used == 0)
		return NBFX_ERR_TRUNCATED;
	r->pos += (size_t)used;
	return NBFX_OK;
}

/* Little-endian unsigned of n (1, 2 or 4) bytes. */
static int
rd_uint(struct reader *r, size_t n, uint32_t *v)
{
	const uint8_t *p;
	int rc = rd_bytes(r, n, &p);

	*v = 0;
	while (rc == NBFX_OK && n-- > 0)
		*v = (*v << 8) | p[n];
	return rc;
}

/* A string written inline: mbint length, then the UTF-8 bytes. */
static int
rd_string(struct reader *r, struct str *out)
{
	uint32_t n;
	int rc = rd_mbint(r, &n);

	if (rc == NBFX_OK)
		rc = rd_bytes(r, n, &out->p);
	out->len = n;
	return rc;
}

/* A dictionary string: mbint id, odd for the session's, even for static. */
static int
rd_dict(struct reader *r, struct str *out)
{
	uint32_t id;
	size_t i;
	int rc = rd_mbint(r, &id);

	if (rc != NBFX_OK)
		return rc;
	if (id & 1u) {
		id >>= 1;
		if (id >= r->s->count)
			return NBFX_ERR_DICTIONARY;
		out->p = r->s->bytes + r->s->off[id];
		out->len = r->s->len[id];
		return NBFX_OK;
	}
	out->p = NULL;
	out->len = 0;
	for (i = 0; i < sizeof(static_dict) / sizeof(static_dict[0]); i++) {
		if (static_dict[i].id == id) {
			out->p = (const uint8_t *)static_dict[i].s;
			out->len = strlen(static_dict[i].s);
		}
	}
	return NBFX_OK;
}

/* Append bytes to the field being read; a field is of one kind only. */
static int
field_add(struct reader *r, struct nbfx_field *f, enum nbfx_kind kind,
    const uint8_t *p, size_t n)
{
	if (f->kind == NBFX_NONE) {
		f->kind = kind;
		f->off = r->used;
		f->len = 0;
	} else if (f->kind != kind || kind == NBFX_UNIQUEID ||
	    f->off + f->len != r->used) {
		return NBFX_ERR_TEXT;
	}
	if (r->cap - r->used < n)
		return NBFX_ERR_SCRATCH;
	memcpy(r->scratch + r->used, p, n);
	r->used += n;
	f->len += n;
	return NBFX_OK;
}

/* UTF-16LE code units as UTF-8; a lone surrogate is refused. */
static int
field_add_utf16(struct reader *r, struct nbfx_field *f, const uint8_t *p,
    size_t n)
{
	size_t i = 0;
	int rc = (n % 2 == 0) ? NBFX_OK : NBFX_ERR_TEXT;

	while (rc == NBFX_OK && i < n) {
		uint32_t c = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8;
		uint8_t u[4];
		size_t k;

		i += 2;
		if (c >= 0xD800 && c <= 0xDBFF && i + 2 <= n) {
			uint32_t lo = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8;

			if (lo < 0xDC00 || lo > 0xDFFF)
				return NBFX_ERR_TEXT;
			c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
			i += 2;
		} else if (c >= 0xD800 && c <= 0xDFFF) {
			return NBFX_ERR_TEXT;
		}
		if (c < 0x80) {
			u[0] = (uint8_t)c;
			k = 1;
		} else if (c < 0x800) {
			u[0] = (uint8_t)(0xC0 | c >> 6);
			u[1] = (uint8_t)(0x80 | (c & 0x3F));
			k = 2;
		} else if (c < 0x10000) {
			u[0] = (uint8_t)(0xE0 | c >> 12);
			u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			u[2] = (uint8_t)(0x80 | (c & 0x3F));
			k = 3;
		} else {
			u[0] = (uint8_t)(0xF0 | c >> 18);
			u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
			u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			u[3] = (uint8_t)(0x80 | (c & 0x3F));
			k = 4;
		}
		rc = field_add(r, f, NBFX_CHARS, u, k);
	}
	return rc;
}

/* The field text of the innermost element goes to, or NULL. */
static struct nbfx_field *
text_field(struct reader *r)
{
	switch (r->role[r->depth]) {
	case ROLE_ACTION: return &r->req->action;
	case ROLE_MESSAGE_ID: return &r->req->message_id;
	case ROLE_ARG: return &r->req->arg;
	default: return NULL;
	}
}

/* What a one-byte text record says.  (True and False are not here: a
 * string is never written so, and 1 byte of "false" would outgrow the
 * scratch nbfx_scratch_size() promises.) */
static const char *
literal_text(uint8_t type)
{
	switch (type) {
	case REC_ZERO_TEXT: return "0";
	case REC_ONE_TEXT: return "1";
	default: return "";
	}
}

/*
 * One text record (its type already read, the end-element bit cleared),
 * added to field f, or skipped when f is NULL.  Text of a kind a field
 * cannot hold (numbers, dates...) is refused only where it would be kept.
 */
static int
rd_text(struct reader *r, uint8_t type, struct nbfx_field *f)
{
	static const uint8_t fixed_size[] = {
		[REC_INT8_TEXT] = 1, [REC_INT16_TEXT] = 2, [REC_INT32_TEXT] = 4,
		[REC_INT64_TEXT] = 8, [REC_FLOAT_TEXT] = 4, [REC_DOUBLE_TEXT] = 8,
		[REC_DECIMAL_TEXT] = 16, [REC_DATETIME_TEXT] = 8,
		[REC_TIMESPAN_TEXT] = 8, [REC_UUID_TEXT] = 16,
		[REC_UINT64_TEXT] = 8, [REC_BOOL_TEXT] = 1,
	};
	const uint8_t *p;
	struct str s;
	uint32_t n;
	int rc;

	switch (type) {
	case REC_FALSE_TEXT: case REC_TRUE_TEXT:
		return f ? NBFX_ERR_TEXT : NBFX_OK;
	case REC_ZERO_TEXT: case REC_ONE_TEXT: case REC_EMPTY_TEXT:
		p = (const uint8_t *)literal_text(type);
		return f ? field_add(r, f, NBFX_CHARS, p, strlen((const char *)p)) : NBFX_OK;
	case REC_CHARS8_TEXT: case REC_CHARS16_TEXT: case REC_CHARS32_TEXT:
	case REC_BYTES8_TEXT: case REC_BYTES16_TEXT: case REC_BYTES32_TEXT:
	case REC_UNICODE_CHARS8_TEXT: case REC_UNICODE_CHARS16_TEXT:
	case REC_UNICODE_CHARS32_TEXT: {
		/* 8, 16 and 32 follow each other: the length is 1, 2 or 4 bytes. */
		uint8_t base = type >= REC_UNICODE_CHARS8_TEXT ? REC_UNICODE_CHARS8_TEXT
		    : type >= REC_BYTES8_TEXT ? REC_BYTES8_TEXT : REC_CHARS8_TEXT;
		size_t width = (size_t)1 << ((type - base) / 2);

		rc = rd_uint(r, width, &n);
		if (rc == NBFX_OK && width == 4 && n > INT32_MAX)
			rc = NBFX_ERR_TEXT;
		if (rc == NBFX_OK)
			rc = rd_bytes(r, n, &p);
		if (rc != NBFX_OK || f == NULL)
			return rc;
		if (base == REC_UNICODE_CHARS8_TEXT)
			return field_add_utf16(r, f, p, n);
		return field_add(r, f, base == REC_BYTES8_TEXT ? NBFX_BYTES : NBFX_CHARS, p, n);
	}
	case REC_DICT_TEXT:
		rc = rd_dict(r, &s);
		if (rc != NBFX_OK || f == NULL)
			return rc;
		/* two bytes that stand for up to a whole session string: a few
		 * per message only, or the scratch could not be bounded */
		if (s.p == NULL || ++r->dict_texts > NBFX_DICT_TEXTS)
			return NBFX_ERR_TEXT;
		return field_add(r, f, NBFX_CHARS, s.p, s.len);
	case REC_UNIQUEID_TEXT:
		rc = rd_bytes(r, NBFX_UNIQUEID_LEN, &p);
		if (rc != NBFX_OK || f == NULL)
			return rc;
		return field_add(r, f, NBFX_UNIQUEID, p, NBFX_UNIQUEID_LEN);
	case REC_QNAME_DICT_TEXT:
		rc = rd_bytes(r, 1, &p);
		if (rc == NBFX_OK)
			rc = rd_dict(r, &s);
		return (rc == NBFX_OK && f) ? NBFX_ERR_TEXT : rc;
	case REC_START_LIST_TEXT: case REC_END_LIST_TEXT:
		return f ? NBFX_ERR_TEXT : NBFX_OK;
	default:
		if (type >= sizeof(fixed_size) || fixed_size[type] == 0)
			return NBFX_ERR_RECORD;
		rc = rd_bytes(r, fixed_size[type], &p);
		return (rc == NBFX_OK && f) ? NBFX_ERR_TEXT : rc;
	}
}

/* An attribute's value: one text record, or a list of them. */
static int
rd_attribute_value(struct reader *r)
{
	const uint8_t *t;
	int rc = rd_bytes(r, 1, &t);

	if (rc == NBFX_OK && (*t < REC_ZERO_TEXT || *t > REC_TEXT_LAST || (*t & REC_WITH_END)))
		rc = NBFX_ERR_RECORD;
	if (rc == NBFX_OK && *t == REC_START_LIST_TEXT) {
		while (rc == NBFX_OK && (rc = rd_bytes(r, 1, &t)) == NBFX_OK &&
		    *t != REC_END_LIST_TEXT) {
			if (*t < REC_ZERO_TEXT || *t > REC_TEXT_LAST ||
			    (*t & REC_WITH_END) || *t == REC_START_LIST_TEXT)
				rc = NBFX_ERR_RECORD;
			else
				rc = rd_text(r, *t, NULL);
		}
		return rc;
	}
	return rc == NBFX_OK ? rd_text(r, *t, NULL) : rc;
}

/* The attributes after an element's start: records 0x04..0x3F. */
static int
rd_attributes(struct reader *r)
{
	struct str s;
	int rc = NBFX_OK;

	while (rc == NBFX_OK && r->pos < r->len &&
	    r->buf[r->pos] >= REC_SHORT_ATTRIBUTE && r->buf[r->pos] <= REC_PREFIX_ATTRIBUTE_Z) {
		uint8_t type = r->buf[r->pos++];

		if (type == REC_ATTRIBUTE || type == REC_DICT_ATTRIBUTE ||
		    type == REC_XMLNS || type == REC_DICT_XMLNS)
			rc = rd_string(r, &s); /* the prefix */
		if (rc != NBFX_OK)
			break;
		if (type == REC_SHORT_XMLNS || type == REC_XMLNS)
			rc = rd_string(r, &s);
		else if (type == REC_SHORT_DICT_XMLNS || type == REC_DICT_XMLNS)
			rc = rd_dict(r, &s);
		else if (type == REC_SHORT_ATTRIBUTE || type == REC_ATTRIBUTE ||
		    type >= REC_PREFIX_ATTRIBUTE_A)
			rc = rd_string(r, &s);
		else
			rc = rd_dict(r, &s);
		/* the xmlns records end with their namespace; the others
		 * have a name, then their value */
		if (rc == NBFX_OK && !(type >= REC_SHORT_XMLNS && type <= REC_DICT_XMLNS))
			rc = rd_attribute_value(r);
	}
	return rc;
}

/* What a child element named name is, inside the innermost element. */
static enum role
child_role(struct reader *r, struct str name)
{
	switch (r->role[r->depth]) {
	case ROLE_DOCUMENT:
		return str_is(name, "Envelope") ? ROLE_ENVELOPE : ROLE_OTHER;
	case ROLE_ENVELOPE:
		return str_is(name, "Header") ? ROLE_HEADER
		    : str_is(name, "Body") ? ROLE_BODY : ROLE_OTHER;
	case ROLE_HEADER:
		return str_is(name, "Action") ? ROLE_ACTION
		    : str_is(name, "MessageID") ? ROLE_MESSAGE_ID : ROLE_OTHER;
	case ROLE_BODY:
		return r->req->op.kind == NBFX_NONE ? ROLE_OP : ROLE_OTHER;
	case ROLE_OP:
		return r->op_children++ == 0 ? ROLE_ARG : ROLE_OTHER;
	default:
		return ROLE_OTHER;
	}
}

/* An element's start (its type byte already read), then its attributes. */
static int
rd_element(struct reader *r, uint8_t type)
{
	struct str prefix, name;
	enum role role;
	int rc = NBFX_OK;

	if (type == REC_ELEMENT || type == REC_DICT_ELEMENT)
		rc = rd_string(r, &prefix);
	if (rc != NBFX_OK)
		return rc;
	if (type == REC_SHORT_DICT_ELEMENT || type == REC_DICT_ELEMENT ||
	    (type >= REC_PREFIX_DICT_ELEMENT_A && type <= REC_PREFIX_DICT_ELEMENT_Z))
		rc = rd_dict(r, &name);
	else
		rc = rd_string(r, &name);
	if (rc != NBFX_OK)
		return rc;
	if (r->depth == NBFX_MAX_DEPTH)
		return NBFX_ERR_DEPTH;
	role = child_role(r, name);
	if (r->role[r->depth] == ROLE_DOCUMENT && role != ROLE_ENVELOPE)
		return NBFX_ERR_ENVELOPE;
	if (role == ROLE_OP) {
		if (name.p == NULL)
			return NBFX_ERR_TEXT;
		rc = field_add(r, &r->req->op, NBFX_CHARS, name.p, name.len);
		r->op_children = 0;
	}
	r->role[++r->depth] = (uint8_t)role;
	return rc == NBFX_OK ? rd_attributes(r) : rc;
}

/* The table of new session strings before the message ([MC-NBFSE] 2.2). */
static int
rd_session_strings(struct reader *r, struct nbfx_session *s)
{
	uint32_t size;
	size_t end;
	int rc = rd_mbint(r, &size);

	if (rc != NBFX_OK)
		return rc;
	if (r->len - r->pos < size)
		return NBFX_ERR_TRUNCATED;
	end = r->pos + size;
	while (rc == NBFX_OK && r->pos < end) {
		struct str str;

		rc = rd_string(r, &str);
		if (rc == NBFX_OK && r->pos > end)
			rc = NBFX_ERR_TRUNCATED;
		if (rc == NBFX_OK && (s->count == NBFX_SESSION_STRINGS ||
		    NBFX_SESSION_BYTES - s->used < str.len))
			rc = NBFX_ERR_SESSION;
		if (rc != NBFX_OK)
			break;
		memcpy(s->bytes + s->used, str.p, str.len);
		s->off[s->count] = s->used;
		s->len[s->count] = (uint32_t)str.len;
		s->used += (uint32_t)str.len;
		s->count++;
	}
	return rc;
}

int
nbfx_read_request(struct nbfx_session *s, const uint8_t *msg, size_t len,
    uint8_t *scratch, size_t cap, struct nbfx_request *req)
{
	struct reader r = {
		.s = s, .buf = msg, .len = len, .scratch = scratch, .cap = cap,
		.req = req,
	};
	int rc;

	memset(req, 0, sizeof(*req));
	r.role[0] = ROLE_DOCUMENT;
	rc = rd_session_strings(&r, s);
	while (rc == NBFX_OK && r.pos < r.len) {
		uint8_t type = r.buf[r.pos++];

		if (r.closed)
			rc = NBFX_ERR_ENVELOPE;  /* something after the Envelope */
		else if (type == REC_END_ELEMENT)
			rc = r.depth > 0 ? NBFX_OK : NBFX_ERR_RECORD;
		else if (type == REC_COMMENT)
			rc = rd_string(&r, &(struct str){ 0 });
		else if (type >= REC_SHORT_ELEMENT && type <= REC_PREFIX_ELEMENT_Z)
			rc = rd_element(&r, type);
		else if (type >= REC_ZERO_TEXT && type <= REC_TEXT_LAST && r.depth > 0 &&
		    (type & ~REC_WITH_END) != REC_START_LIST_TEXT &&
		    (type & ~REC_WITH_END) != REC_END_LIST_TEXT) {
			rc = rd_text(&r, type & ~REC_WITH_END, text_field(&r));
		} else
			rc = NBFX_ERR_RECORD;  /* arrays too: no contract here sends one */
		if (rc == NBFX_OK && (type == REC_END_ELEMENT ||
		    (type >= REC_ZERO_TEXT && (type & REC_WITH_END))))
			r.closed = --r.depth == 0;
	}
	if (rc == NBFX_OK && !r.closed)
		rc = NBFX_ERR_TRUNCATED;
	if (rc == NBFX_OK && req->op.kind == NBFX_NONE)
		rc = NBFX_ERR_ENVELOPE;  /* no operation in the body */
	return rc;
}

const char *
nbfx_strerror(int status)
{
	switch (status) {
	case NBFX_OK: return "ok";
	case NBFX_ERR_TRUNCATED: return "message ends inside a record";
	case NBFX_ERR_RECORD: return "unexpected record type";
	case NBFX_ERR_MBINT: return "invalid multi-byte integer";
	case NBFX_ERR_SESSION: return "too many session strings";
	case NBFX_ERR_DICTIONARY: return "undefined session string";
	case NBFX_ERR_DEPTH: return "elements nested too deep";
	case NBFX_ERR_ENVELOPE: return "not one SOAP envelope";
	case NBFX_ERR_TEXT: return "text of an unsupported kind";
	case NBFX_ERR_SCRATCH: return "scratch buffer too small";
	default: return "unknown error";
	}
}
