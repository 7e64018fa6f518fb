/*
 * nmf.c - .NET Message Framing ([MC-NMF]) preamble parser, duplex session
 * follower and fault records.
 *
 * The parser looks at each framing byte once and never at string bytes, so
 * a preamble that trickles in byte by byte costs no more than a whole one.  A byte
 * it refuses is not consumed and the state it would have completed is not
 * committed: the next call meets the same byte in the same state and returns
 * the same error.  That keeps errors sticky without an error field, and
 * leaves p->pos on the byte that completed the refused field, for the log.
 */
#include "nmf.h"

#include <stddef.h>
#include <string.h>

/* Which records the grammar allows next; kept in p->expect. */
enum nmf_expect {
	EXPECT_VERSION,
	EXPECT_MODE,
	EXPECT_VIA,
	EXPECT_ENCODING,
	EXPECT_UPGRADE_OR_END,
};

#define SUPPORTED_MAJOR 1u
#define KNOWN_ENCODING_MAX 0x08u

#define MBINT_MORE 0x80u
#define MBINT_VALUE_BITS 0x7Fu
/*
 * The 5th byte holds bits 28..34 of the value; .NET refuses a continuation
 * bit there or any value above 2^31-1, so only its low 3 bits may be set.
 */
#define MBINT_LAST_BYTE_FORBIDDEN 0xF8u

enum mbint_progress {
	MBINT_INVALID = -1,
	MBINT_INCOMPLETE = 0,
	MBINT_COMPLETE = 1,
};

/* Every fault URI is shorter than 128 bytes, so its size is a 1-byte mbint. */
#define FAULT_URI_MAX 127u

/*
 * Built by the compiler so the size byte comes from sizeof and can never
 * disagree with the URI; the record is read as the bytes of this struct.
 */
struct fault_record {
	uint8_t type;
	uint8_t uri_len;
	char uri[FAULT_URI_MAX];
};

_Static_assert(offsetof(struct fault_record, uri) == 2,
    "a fault record must be contiguous bytes");

struct fault {
	const char *name;
	struct fault_record record;
};

#define FAULT(fault_name) { \
	.name = fault_name, \
	.record = { \
		.type = NMF_REC_FAULT, \
		.uri_len = sizeof(NMF_FAULT_URI_PREFIX fault_name) - 1, \
		.uri = NMF_FAULT_URI_PREFIX fault_name, \
	}, \
}

static const struct fault faults[NMF_FAULT_COUNT] = {
	[NMF_FAULT_ENDPOINT_NOT_FOUND] = FAULT("EndpointNotFound"),
	[NMF_FAULT_ENDPOINT_UNAVAILABLE] = FAULT("EndpointUnavailable"),
	[NMF_FAULT_UNSUPPORTED_VERSION] = FAULT("UnsupportedVersion"),
	[NMF_FAULT_UNSUPPORTED_MODE] = FAULT("UnsupportedMode"),
	[NMF_FAULT_UPGRADE_INVALID] = FAULT("UpgradeInvalid"),
	[NMF_FAULT_CONTENT_TYPE_INVALID] = FAULT("ContentTypeInvalid"),
	[NMF_FAULT_SERVER_TOO_BUSY] = FAULT("ServerTooBusy"),
};

/*
 * Fold one byte into a size field.  *value and *count change only when the
 * byte is valid, which is what lets the parser leave a refused byte unread.
 */
static int
mbint_step(uint32_t *value, uint8_t *count, uint8_t byte)
{
	if (*count == NMF_MBINT_MAX_BYTES - 1 &&
	    (byte & MBINT_LAST_BYTE_FORBIDDEN) != 0)
		return MBINT_INVALID;
	*value |= (uint32_t)(byte & MBINT_VALUE_BITS) << (7u * *count);
	(*count)++;
	return (byte & MBINT_MORE) != 0 ? MBINT_INCOMPLETE : MBINT_COMPLETE;
}

int
nmf_mbint_decode(const uint8_t *buf, size_t len, uint32_t *value)
{
	uint32_t decoded = 0;
	uint8_t count = 0;
	int step = MBINT_INCOMPLETE;

	while (step == MBINT_INCOMPLETE && count < len)
		step = mbint_step(&decoded, &count, buf[count]);
	if (step == MBINT_INVALID)
		return -1;
	if (step == MBINT_INCOMPLETE)
		return 0;
	*value = decoded;
	return count;
}

size_t
nmf_mbint_encode(uint32_t value, uint8_t *out)
{
	size_t written = 0;

	while (value > MBINT_VALUE_BITS) {
		out[written++] = (uint8_t)((value & MBINT_VALUE_BITS) | MBINT_MORE);
		value >>= 7;
	}
	out[written++] = (uint8_t)value;
	return written;
}

size_t
nmf_preamble_write(uint8_t *out, uint8_t mode, const char *via, size_t via_len)
{
	size_t n = 0;

	out[n++] = NMF_REC_VERSION;
	out[n++] = 1;
	out[n++] = 0;
	out[n++] = NMF_REC_MODE;
	out[n++] = mode;
	out[n++] = NMF_REC_VIA;
	n += nmf_mbint_encode((uint32_t)via_len, out + n);
	memcpy(out + n, via, via_len);
	n += via_len;
	out[n++] = NMF_REC_KNOWN_ENCODING;
	out[n++] = 0x08;        /* binary, with in-band dictionary: WCF's session encoding */
	out[n++] = NMF_REC_PREAMBLE_END;
	return n;
}

void
nmf_parser_init(struct nmf_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->stage = NMF_STAGE_RECORD;
	p->expect = EXPECT_VERSION;
}

void
nmf_parser_init_upgraded(struct nmf_parser *p, uint8_t mode)
{
	nmf_parser_init(p);
	p->expect = EXPECT_UPGRADE_OR_END;
	p->mode = mode;
}

static int
record_allowed(uint8_t expect, uint8_t type)
{
	switch (expect) {
	case EXPECT_VERSION:
		return type == NMF_REC_VERSION;
	case EXPECT_MODE:
		return type == NMF_REC_MODE;
	case EXPECT_VIA:
		return type == NMF_REC_VIA;
	case EXPECT_ENCODING:
		return type == NMF_REC_KNOWN_ENCODING ||
		    type == NMF_REC_EXTENSIBLE_ENCODING;
	default:
		return type == NMF_REC_UPGRADE_REQUEST ||
		    type == NMF_REC_PREAMBLE_END;
	}
}

static uint32_t
string_limit(uint8_t type)
{
	switch (type) {
	case NMF_REC_VIA:
		return NMF_MAX_VIA;
	case NMF_REC_EXTENSIBLE_ENCODING:
		return NMF_MAX_CONTENT_TYPE;
	default:
		return NMF_MAX_UPGRADE;
	}
}

/* Report the record just read (p->pos is past it) and move the grammar on. */
static int
complete_record(struct nmf_parser *p, struct nmf_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->type = (enum nmf_record_type)p->record;
	p->stage = NMF_STAGE_RECORD;
	switch (p->record) {
	case NMF_REC_VERSION:
		rec->major = p->fixed[0];
		rec->minor = p->fixed[1];
		p->expect = EXPECT_MODE;
		break;
	case NMF_REC_MODE:
		p->mode = p->fixed[0];
		rec->mode = p->mode;
		p->expect = EXPECT_VIA;
		break;
	case NMF_REC_VIA:
		p->expect = EXPECT_ENCODING;
		break;
	case NMF_REC_KNOWN_ENCODING:
		rec->encoding = p->fixed[0];
		p->expect = EXPECT_UPGRADE_OR_END;
		break;
	case NMF_REC_EXTENSIBLE_ENCODING:
		p->expect = EXPECT_UPGRADE_OR_END;
		break;
	case NMF_REC_UPGRADE_REQUEST:
		p->stage = NMF_STAGE_UPGRADED;
		break;
	default: /* NMF_REC_PREAMBLE_END */
		p->stage = NMF_STAGE_END;
		break;
	}
	return NMF_RECORD;
}

static int
read_record_type(struct nmf_parser *p, uint8_t type, struct nmf_record *rec)
{
	if (!record_allowed(p->expect, type))
		return NMF_ERR_RECORD_TYPE;
	p->record = type;
	p->pos++;
	switch (type) {
	case NMF_REC_VERSION:
	case NMF_REC_MODE:
	case NMF_REC_KNOWN_ENCODING:
		p->stage = NMF_STAGE_FIXED;
		p->fixed_got = 0;
		return NMF_NEED_MORE;
	case NMF_REC_VIA:
	case NMF_REC_EXTENSIBLE_ENCODING:
	case NMF_REC_UPGRADE_REQUEST:
		p->stage = NMF_STAGE_SIZE;
		p->size = 0;
		p->size_bytes = 0;
		return NMF_NEED_MORE;
	default: /* NMF_REC_PREAMBLE_END, the only allowed record without a body */
		return complete_record(p, rec);
	}
}

/*
 * Only fixed[0..fixed_got) is held: the byte that completes the body is
 * written after them for the check and counts for nothing if refused.
 */
static int
read_fixed(struct nmf_parser *p, uint8_t byte, struct nmf_record *rec)
{
	uint8_t body_len = p->record == NMF_REC_VERSION ? 2 : 1;

	p->fixed[p->fixed_got] = byte;
	if (p->fixed_got + 1 < body_len) {
		p->fixed_got++;
		p->pos++;
		return NMF_NEED_MORE;
	}
	switch (p->record) {
	case NMF_REC_VERSION:
		if (p->fixed[0] != SUPPORTED_MAJOR)
			return NMF_ERR_VERSION;
		break;
	case NMF_REC_MODE:
		if (p->fixed[0] != NMF_MODE_SINGLETON_UNSIZED &&
		    p->fixed[0] != NMF_MODE_DUPLEX)
			return NMF_ERR_MODE;
		break;
	default: /* NMF_REC_KNOWN_ENCODING */
		if (p->fixed[0] > KNOWN_ENCODING_MAX)
			return NMF_ERR_ENCODING;
		break;
	}
	p->pos++;
	return complete_record(p, rec);
}

/*
 * The limit is checked on the size alone, so a hostile size is refused
 * without waiting for bytes that may never come.
 */
static int
read_size(struct nmf_parser *p, uint8_t byte)
{
	uint32_t size = p->size;
	uint8_t size_bytes = p->size_bytes;
	int step = mbint_step(&size, &size_bytes, byte);

	if (step == MBINT_INVALID)
		return NMF_ERR_MBINT;
	if (step == MBINT_COMPLETE && size > string_limit(p->record))
		return NMF_ERR_TOO_LONG;
	p->size = size;
	p->size_bytes = size_bytes;
	p->pos++;
	if (step == MBINT_COMPLETE)
		p->stage = NMF_STAGE_STRING;
	return NMF_NEED_MORE;
}

/* The string bytes are never looked at: routing reads them from the buffer. */
static int
read_string(struct nmf_parser *p, struct nmf_record *rec)
{
	size_t str_off = p->pos;
	int status;

	p->pos += p->size;
	status = complete_record(p, rec);
	rec->str_off = str_off;
	rec->str_len = p->size;
	return status;
}

static int
read_byte(struct nmf_parser *p, uint8_t byte, struct nmf_record *rec)
{
	switch (p->stage) {
	case NMF_STAGE_RECORD:
		return read_record_type(p, byte, rec);
	case NMF_STAGE_FIXED:
		return read_fixed(p, byte, rec);
	default: /* NMF_STAGE_SIZE */
		return read_size(p, byte);
	}
}

int
nmf_parse(struct nmf_parser *p, const uint8_t *buf, size_t len,
    struct nmf_record *rec)
{
	int status = NMF_NEED_MORE;

	while (status == NMF_NEED_MORE) {
		switch (p->stage) {
		case NMF_STAGE_RECORD:
		case NMF_STAGE_FIXED:
		case NMF_STAGE_SIZE:
			if (p->pos >= len)
				return NMF_NEED_MORE;
			status = read_byte(p, buf[p->pos], rec);
			break;
		case NMF_STAGE_STRING:
			if (len < p->pos || len - p->pos < p->size)
				return NMF_NEED_MORE;
			status = read_string(p, rec);
			break;
		default: /* NMF_STAGE_UPGRADED, NMF_STAGE_END */
			status = NMF_ERR_DONE;
			break;
		}
	}
	return status;
}

void
nmf_flow_init(struct nmf_flow *f, enum nmf_flow_dir dir)
{
	memset(f, 0, sizeof(*f));
	f->state = NMF_FLOW_RECORD;
	f->want_ack = dir == NMF_FLOW_DOWN;
}

void
nmf_flow_init_singleton(struct nmf_flow *f, enum nmf_flow_dir dir)
{
	nmf_flow_init(f, dir);
	f->singleton = 1;
}

void
nmf_flow_init_mode(struct nmf_flow *f, enum nmf_flow_dir dir, uint8_t mode)
{
	if (mode == NMF_MODE_SINGLETON_UNSIZED)
		nmf_flow_init_singleton(f, dir);
	else
		nmf_flow_init(f, dir);
}

/* A singleton session's record at a boundary: its one envelope, then End
 * (the service may also answer with End alone). */
static void
flow_singleton_record(struct nmf_flow *f, uint8_t type)
{
	if (type == NMF_REC_END && (f->want_end || f->may_end)) {
		f->state = NMF_FLOW_ENDED;
	} else if (type == NMF_REC_UNSIZED_ENVELOPE && !f->want_end) {
		f->state = NMF_FLOW_SIZE;
		f->chunks = 1;
		f->size = 0;
		f->size_bytes = 0;
	} else {
		f->state = NMF_FLOW_OPAQUE;
	}
	f->may_end = 0;
}

/* The record type at a boundary: what the session may hold next. */
static void
flow_record(struct nmf_flow *f, uint8_t type)
{
	if (f->ack_alone && !f->want_ack) {
		/* Nothing was asked of the service since its Ack. */
		f->state = NMF_FLOW_OPAQUE;
		return;
	}
	if (f->singleton && !f->want_ack) {
		flow_singleton_record(f, type);
		return;
	}
	if (f->want_ack) {
		/* A Fault instead of the Ack ends the connection, not just
		 * the session. */
		f->want_ack = 0;
		if (type != NMF_REC_PREAMBLE_ACK)
			f->state = NMF_FLOW_OPAQUE;
		else if (f->singleton)
			f->may_end = 1; /* a one-way call: no reply envelope */
		return;
	}
	switch (type) {
	case NMF_REC_SIZED_ENVELOPE:
		f->state = NMF_FLOW_SIZE;
		f->size = 0;
		f->size_bytes = 0;
		break;
	case NMF_REC_END:
		f->state = NMF_FLOW_ENDED;
		break;
	default:
		/* A Fault mid-session is followed by a close, and no other
		 * record belongs in a duplex session. */
		f->state = NMF_FLOW_OPAQUE;
		break;
	}
}

size_t
nmf_flow_feed(struct nmf_flow *f, const uint8_t *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		switch (f->state) {
		case NMF_FLOW_RECORD:
			flow_record(f, buf[i]);
			if (f->state == NMF_FLOW_OPAQUE) {
				f->bad = buf[i];
				return i;
			}
			i++;
			if (f->state == NMF_FLOW_ENDED)
				return i;
			break;
		case NMF_FLOW_SIZE:
			switch (mbint_step(&f->size, &f->size_bytes, buf[i])) {
			case MBINT_INVALID:
				f->state = NMF_FLOW_OPAQUE;
				f->bad = NMF_REC_SIZED_ENVELOPE;
				return i;
			case MBINT_COMPLETE:
				f->remaining = f->size;
				f->state = f->size > 0 ? NMF_FLOW_PAYLOAD : NMF_FLOW_RECORD;
				if (f->chunks && f->size == 0) {
					/* the 00 chunk size ends the envelope */
					f->chunks = 0;
					f->want_end = 1;
				}
				i++;
				break;
			default:
				i++;
				break;
			}
			break;
		case NMF_FLOW_PAYLOAD: {
			size_t take = len - i < f->remaining ? len - i : f->remaining;

			nmf_flow_skip(f, take);
			i += take;
			break;
		}
		case NMF_FLOW_ENDED:
		case NMF_FLOW_OPAQUE:
			return i;
		}
	}
	return len;
}

void
nmf_flow_skip(struct nmf_flow *f, size_t n)
{
	/* Only a payload can be skipped: anywhere else this is a no-op, so a
	 * follower that has ended or given up stays so. */
	if (f->state == NMF_FLOW_PAYLOAD) {
		f->remaining -= (uint32_t)n;
		if (f->remaining == 0 && f->chunks) {
			f->state = NMF_FLOW_SIZE; /* the next chunk's size */
			f->size = 0;
			f->size_bytes = 0;
		} else if (f->remaining == 0) {
			f->state = NMF_FLOW_RECORD;
		}
	}
}

const char *
nmf_strerror(int status)
{
	switch (status) {
	case NMF_NEED_MORE:
		return "need more bytes";
	case NMF_RECORD:
		return "record";
	case NMF_ERR_RECORD_TYPE:
		return "unexpected record type";
	case NMF_ERR_VERSION:
		return "unsupported version";
	case NMF_ERR_MODE:
		return "unsupported mode";
	case NMF_ERR_MBINT:
		return "invalid size field";
	case NMF_ERR_TOO_LONG:
		return "field too long";
	case NMF_ERR_DONE:
		return "parser finished";
	case NMF_ERR_ENCODING:
		return "invalid known encoding";
	default:
		return "unknown status";
	}
}

const uint8_t *
nmf_fault_record(enum nmf_fault fault, size_t *len)
{
	const struct fault_record *record = &faults[fault].record;

	*len = offsetof(struct fault_record, uri) + record->uri_len;
	return (const uint8_t *)record;
}

const char *
nmf_fault_name(enum nmf_fault fault)
{
	return faults[fault].name;
}
