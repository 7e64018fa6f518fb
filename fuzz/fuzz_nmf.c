/*
 * fuzz_nmf.c - the preamble parser on arbitrary bytes, split arbitrarily.
 *
 * Input: one control byte, then up to 15 split bytes, then the stream.
 *
 *   control bits 0-3  how many split bytes follow
 *   control bit 4     start as nmf_parser_init_upgraded() (inside an upgrade)
 *   control bit 5     ... with mode 2 (duplex) instead of 1
 *
 * The stream is parsed three ways: whole, byte by byte, and in chunks whose
 * sizes the split bytes give in turn (0 = call again with nothing new).
 * Every way must give the same records and end the same way; along the way:
 * pos never goes back and never passes the bytes given, NEED_MORE means
 * every byte was consumed (or a string is still arriving, and then its size
 * is within its limit: a hostile size is refused, never waited for),
 * str_off + str_len stays inside the buffer, errors are sticky, and the
 * records follow the grammar.  The whole parse is also checked against a
 * reading of the bytes done here independently.
 */
#include <string.h>

#include "fuzz.h"
#include "nmf.h"

#define MAX_RECORDS 8
#define CONTROL_NSPLIT 0x0Fu
#define CONTROL_UPGRADED 0x10u
#define CONTROL_DUPLEX 0x20u

struct outcome {
	struct nmf_record recs[MAX_RECORDS];
	size_t nrecs;
	int status;   /* what ended the parse: NMF_NEED_MORE or an error */
	size_t pos;
};

struct schedule {
	const uint8_t *steps; /* NULL: feed everything at once */
	size_t nsteps;        /* 0 with steps != NULL: byte by byte */
};

static uint32_t
string_limit(enum nmf_record_type type)
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

static int
is_string_record(enum nmf_record_type type)
{
	return type == NMF_REC_VIA || type == NMF_REC_EXTENSIBLE_ENCODING ||
	    type == NMF_REC_UPGRADE_REQUEST;
}

static int
same_parser(const struct nmf_parser *a, const struct nmf_parser *b)
{
	return a->stage == b->stage && a->pos == b->pos &&
	    a->record == b->record && a->expect == b->expect &&
	    a->mode == b->mode && a->fixed_got == b->fixed_got &&
	    a->size_bytes == b->size_bytes && a->size == b->size;
}

static int
same_record(const struct nmf_record *a, const struct nmf_record *b)
{
	return a->type == b->type && a->major == b->major &&
	    a->minor == b->minor && a->mode == b->mode &&
	    a->encoding == b->encoding && a->str_off == b->str_off &&
	    a->str_len == b->str_len;
}

/* Record i may come next: the grammar, from the first byte or inside an upgrade. */
static void
check_grammar(const struct nmf_record *rec, size_t i, int upgraded)
{
	static const enum nmf_record_type order[] = {
		NMF_REC_VERSION, NMF_REC_MODE, NMF_REC_VIA,
		NMF_REC_KNOWN_ENCODING, NMF_REC_PREAMBLE_END,
	};

	if (upgraded)
		i += 4;
	FUZZ_CHECK(i < sizeof(order) / sizeof(order[0]));
	switch (order[i]) {
	case NMF_REC_VERSION:
		FUZZ_CHECK(rec->type == NMF_REC_VERSION && rec->major == 1);
		break;
	case NMF_REC_MODE:
		FUZZ_CHECK(rec->type == NMF_REC_MODE);
		FUZZ_CHECK(rec->mode == NMF_MODE_SINGLETON_UNSIZED ||
		    rec->mode == NMF_MODE_DUPLEX);
		break;
	case NMF_REC_VIA:
		FUZZ_CHECK(rec->type == NMF_REC_VIA);
		break;
	case NMF_REC_KNOWN_ENCODING:
		FUZZ_CHECK(rec->type == NMF_REC_EXTENSIBLE_ENCODING ||
		    (rec->type == NMF_REC_KNOWN_ENCODING && rec->encoding <= 8));
		break;
	default:
		FUZZ_CHECK(rec->type == NMF_REC_UPGRADE_REQUEST ||
		    rec->type == NMF_REC_PREAMBLE_END);
		break;
	}
}

/*
 * After an error, the same call and a call with every byte must both give
 * the same error and leave the parser as it was.
 */
static void
check_sticky(struct nmf_parser *p, const uint8_t *buf, size_t have,
    size_t len, int status)
{
	struct nmf_parser before = *p;
	struct nmf_record rec;

	FUZZ_CHECK(nmf_parse(p, buf, have, &rec) == status);
	FUZZ_CHECK(same_parser(p, &before));
	FUZZ_CHECK(nmf_parse(p, buf, len, &rec) == status);
	FUZZ_CHECK(same_parser(p, &before));
}

static void
run(const uint8_t *buf, size_t len, int upgraded, uint8_t mode,
    const struct schedule *sched, struct outcome *out)
{
	struct nmf_parser p;
	size_t have, k = 0;
	int last_step_empty = 0;

	if (upgraded)
		nmf_parser_init_upgraded(&p, mode);
	else
		nmf_parser_init(&p);
	memset(out, 0, sizeof(*out));
	have = sched->steps == NULL ? len : 0;
	for (;;) {
		for (;;) {
			struct nmf_record rec;
			size_t before = p.pos;
			int status = nmf_parse(&p, buf, have, &rec);

			FUZZ_CHECK(p.pos >= before);
			FUZZ_CHECK(p.pos <= have);
			if (status == NMF_RECORD) {
				FUZZ_CHECK(out->nrecs < MAX_RECORDS);
				check_grammar(&rec, out->nrecs, upgraded);
				if (is_string_record(rec.type)) {
					FUZZ_CHECK(rec.str_len <= string_limit(rec.type));
					FUZZ_CHECK(rec.str_off <= have &&
					    rec.str_len <= have - rec.str_off);
					FUZZ_CHECK(rec.str_off + rec.str_len == p.pos);
				} else {
					FUZZ_CHECK(rec.str_off == 0 && rec.str_len == 0);
				}
				out->recs[out->nrecs++] = rec;
				continue;
			}
			if (status == NMF_NEED_MORE) {
				if (p.stage == NMF_STAGE_STRING) {
					/* a size the parser waits for is one it accepted */
					FUZZ_CHECK(p.size <= string_limit(p.record));
					FUZZ_CHECK(have - p.pos < p.size);
				} else {
					FUZZ_CHECK(p.pos == have);
				}
				FUZZ_CHECK(p.pos <= NMF_PREAMBLE_MAX);
				break;
			}
			FUZZ_CHECK(status < 0);
			FUZZ_CHECK(status != NMF_ERR_DONE ||
			    p.stage == NMF_STAGE_UPGRADED || p.stage == NMF_STAGE_END);
			check_sticky(&p, buf, have, len, status);
			out->status = status;
			out->pos = p.pos;
			return;
		}
		if (have == len) {
			out->status = NMF_NEED_MORE;
			out->pos = p.pos;
			return;
		}
		if (sched->nsteps == 0) {
			have++;
		} else {
			size_t step = sched->steps[k++ % sched->nsteps];

			/* one empty call in a row tests idempotence; more would loop */
			if (step == 0 && last_step_empty)
				step = 1;
			last_step_empty = step == 0;
			have += step < len - have ? step : len - have;
		}
	}
}

/* Read the records again from the bytes, without the parser. */
static void
check_against_bytes(const uint8_t *buf, size_t len, const struct outcome *o)
{
	size_t at = 0;

	for (size_t i = 0; i < o->nrecs; i++) {
		const struct nmf_record *r = &o->recs[i];
		uint32_t size;
		int n;

		FUZZ_CHECK(at < len && buf[at] == (uint8_t)r->type);
		switch (r->type) {
		case NMF_REC_VERSION:
			FUZZ_CHECK(len - at >= 3 && buf[at + 1] == r->major &&
			    buf[at + 2] == r->minor);
			at += 3;
			break;
		case NMF_REC_MODE:
			FUZZ_CHECK(len - at >= 2 && buf[at + 1] == r->mode);
			at += 2;
			break;
		case NMF_REC_KNOWN_ENCODING:
			FUZZ_CHECK(len - at >= 2 && buf[at + 1] == r->encoding);
			at += 2;
			break;
		case NMF_REC_PREAMBLE_END:
			at += 1;
			break;
		default:
			FUZZ_CHECK(is_string_record(r->type));
			n = nmf_mbint_decode(buf + at + 1, len - at - 1, &size);
			FUZZ_CHECK(n > 0);
			FUZZ_CHECK(size == r->str_len);
			FUZZ_CHECK(r->str_off == at + 1 + (size_t)n);
			at = r->str_off + r->str_len;
			break;
		}
	}
	FUZZ_CHECK(o->status != NMF_NEED_MORE || o->pos <= len);
}

/* mbint decoding on the raw bytes: a value is at most 2^31-1 and re-encodes. */
static void
check_mbint(const uint8_t *buf, size_t len)
{
	uint8_t enc[NMF_MBINT_MAX_BYTES];
	uint32_t value = 0, again = 0;
	int n = nmf_mbint_decode(buf, len, &value);
	size_t m;

	FUZZ_CHECK(n >= -1 && n <= (int)NMF_MBINT_MAX_BYTES);
	if (n <= 0)
		return;
	FUZZ_CHECK(value <= 0x7FFFFFFFu);
	m = nmf_mbint_encode(value, enc);
	FUZZ_CHECK(m >= 1 && m <= (size_t)n);
	FUZZ_CHECK(nmf_mbint_decode(enc, m, &again) == (int)m && again == value);
}

/*
 * Fixed checks, run once: every string record whose size claims 2 GiB
 * (one past the largest mbint) or 2 GiB - 1 is refused on the size byte
 * itself, without waiting for the string.
 */
static void
self_test(void)
{
	static const uint8_t head[] = { 0x00, 0x01, 0x00, 0x01, 0x02 };
	static const uint8_t size_2g[] = { 0x80, 0x80, 0x80, 0x80, 0x08 };
	static const uint8_t size_2g_1[] = { 0xFF, 0xFF, 0xFF, 0xFF, 0x07 };
	static const uint8_t via[] = { 0x02, 0x01, 'x' };
	static const uint8_t types[] = {
		NMF_REC_VIA, NMF_REC_EXTENSIBLE_ENCODING, NMF_REC_UPGRADE_REQUEST,
	};
	uint8_t buf[64];

	for (size_t t = 0; t < sizeof(types); t++) {
		for (int which = 0; which < 2; which++) {
			struct nmf_parser p;
			struct nmf_record rec;
			size_t len = 0;
			int status;

			memcpy(buf, head, sizeof(head));
			len = sizeof(head);
			if (types[t] != NMF_REC_VIA) {
				memcpy(buf + len, via, sizeof(via));
				len += sizeof(via);
			}
			if (types[t] == NMF_REC_UPGRADE_REQUEST) {
				buf[len++] = NMF_REC_KNOWN_ENCODING;
				buf[len++] = 0x08;
			}
			buf[len++] = types[t];
			memcpy(buf + len, which ? size_2g_1 : size_2g, 5);
			len += 5;
			nmf_parser_init(&p);
			do
				status = nmf_parse(&p, buf, len, &rec);
			while (status == NMF_RECORD);
			FUZZ_CHECK(status == (which ? NMF_ERR_TOO_LONG : NMF_ERR_MBINT));
			FUZZ_CHECK(p.pos == len - 1);
		}
	}

	/* the fault records are what they say: 08, a size, the URI */
	for (int f = 0; f < NMF_FAULT_COUNT; f++) {
		size_t len;
		const uint8_t *rec = nmf_fault_record((enum nmf_fault)f, &len);
		const char *name = nmf_fault_name((enum nmf_fault)f);
		size_t nlen = strlen(name);

		FUZZ_CHECK(len > 2 && rec[0] == NMF_REC_FAULT && rec[1] == len - 2);
		FUZZ_CHECK(len - 2 > nlen && memcmp(rec + len - nlen, name, nlen) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int tested;
	struct outcome whole, bytewise, chunked;
	struct schedule all = { NULL, 0 }, one = { data, 0 }, split;
	const uint8_t *buf;
	size_t nsplit, len;
	int upgraded;
	uint8_t mode;

	if (!tested) {
		self_test();
		tested = 1;
	}
	if (size == 0)
		return 0;
	nsplit = data[0] & CONTROL_NSPLIT;
	upgraded = (data[0] & CONTROL_UPGRADED) != 0;
	mode = (data[0] & CONTROL_DUPLEX) ? NMF_MODE_DUPLEX :
	    NMF_MODE_SINGLETON_UNSIZED;
	if (size < 1 + nsplit)
		return 0;
	buf = data + 1 + nsplit;
	len = size - 1 - nsplit;

	run(buf, len, upgraded, mode, &all, &whole);
	check_against_bytes(buf, len, &whole);
	check_mbint(buf, len);

	run(buf, len, upgraded, mode, &one, &bytewise);
	FUZZ_CHECK(bytewise.nrecs == whole.nrecs);
	for (size_t i = 0; i < whole.nrecs; i++)
		FUZZ_CHECK(same_record(&bytewise.recs[i], &whole.recs[i]));
	FUZZ_CHECK(bytewise.status == whole.status && bytewise.pos == whole.pos);

	if (nsplit > 0) {
		split.steps = data + 1;
		split.nsteps = nsplit;
		run(buf, len, upgraded, mode, &split, &chunked);
		FUZZ_CHECK(chunked.nrecs == whole.nrecs);
		for (size_t i = 0; i < whole.nrecs; i++)
			FUZZ_CHECK(same_record(&chunked.recs[i], &whole.recs[i]));
		FUZZ_CHECK(chunked.status == whole.status &&
		    chunked.pos == whole.pos);
	}
	return 0;
}
