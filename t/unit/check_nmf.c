/*
 * check_nmf.c - unit tests for the [MC-NMF] preamble parser and fault records.
 *
 * Every preamble is fed whole, split in two at every point, split in three
 * at every pair of points and byte by byte, and must give the same records.
 * The byte streams are real: the Mono client capture and the examples of
 * docs/nmf-protocol.md section 8, written out here so the test reads no file.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nmf.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* Version 1.0, duplex, then the Via record type. */
#define HEAD "\x00\x01\x00\x01\x02\x02"
#define MAX_RECORDS 8
/* Overwrites bytes the parser has consumed, to catch it reading them again. */
#define POISON 0xEE

struct stream {
	uint8_t bytes[NMF_PREAMBLE_MAX + 64];
	size_t len;
};

struct want {
	struct nmf_record rec;
	const char *text; /* the string of a Via, content type or upgrade */
};

#define W_VERSION(maj, min) { .rec = { .type = NMF_REC_VERSION, .major = (maj), .minor = (min) } }
#define W_MODE(m) { .rec = { .type = NMF_REC_MODE, .mode = (m) } }
#define W_KNOWN(e) { .rec = { .type = NMF_REC_KNOWN_ENCODING, .encoding = (e) } }
#define W_STRING(t, off, s) { .rec = { .type = (t), .str_off = (off), .str_len = sizeof(s) - 1 }, .text = (s) }
#define W_END { .rec = { .type = NMF_REC_PREAMBLE_END } }

struct sample {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	struct want want[MAX_RECORDS];
	size_t nwant;
	int final;  /* what nmf_parse returns once the records are out */
	size_t end; /* p.pos then */
};

struct outcome {
	struct nmf_record records[MAX_RECORDS];
	size_t nrecords;
	int status; /* the status that ended the last call */
	size_t pos;
};

static const struct sample samples[] = {
	{
		/* captures/buffered-echo.hex, the Mono 6.8 client's first read */
		.name = "Mono capture",
		.bytes = LIT(HEAD "\x1e" "net.tcp://127.0.0.1:37221/Echo" "\x03\x08\x0c"
		    "\x06\xcf\x01\x05\x04"),
		.want = {
			W_VERSION(1, 0), W_MODE(2),
			W_STRING(NMF_REC_VIA, 7, "net.tcp://127.0.0.1:37221/Echo"),
			W_KNOWN(8), W_END,
		},
		.nwant = 5, .final = NMF_ERR_DONE, .end = 40,
	},
	{
		.name = "Mono capture, Via size as non-minimal 3-byte mbint",
		.bytes = LIT(HEAD "\x9e\x80\x00" "net.tcp://127.0.0.1:37221/Echo" "\x03\x08\x0c"),
		.want = {
			W_VERSION(1, 0), W_MODE(2),
			W_STRING(NMF_REC_VIA, 9, "net.tcp://127.0.0.1:37221/Echo"),
			W_KNOWN(8), W_END,
		},
		.nwant = 5, .final = NMF_ERR_DONE, .end = 42,
	},
	{
		.name = "Ex 1 duplex",
		.bytes = LIT(HEAD "\x17" "net.tcp://host/Service1" "\x03\x08\x0c"),
		.want = {
			W_VERSION(1, 0), W_MODE(2),
			W_STRING(NMF_REC_VIA, 7, "net.tcp://host/Service1"),
			W_KNOWN(8), W_END,
		},
		.nwant = 5, .final = NMF_ERR_DONE, .end = 33,
	},
	{
		/* The ClientHello after the upgrade must be left unread. */
		.name = "Ex 2 ssl-tls upgrade",
		.bytes = LIT(HEAD "\x1c" "net.tcp://host:8080/Service1" "\x03\x08"
		    "\x09\x13" "application/ssl-tls"
		    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
		.want = {
			W_VERSION(1, 0), W_MODE(2),
			W_STRING(NMF_REC_VIA, 7, "net.tcp://host:8080/Service1"),
			W_KNOWN(8),
			W_STRING(NMF_REC_UPGRADE_REQUEST, 39, "application/ssl-tls"),
		},
		.nwant = 5, .final = NMF_ERR_DONE, .end = 58,
	},
	{
		.name = "Ex 4 singleton",
		.bytes = LIT("\x00\x01\x00\x01\x01\x02\x1b" "net.tcp://host:8080/Stream1" "\x03\x07\x0c"),
		.want = {
			W_VERSION(1, 0), W_MODE(1),
			W_STRING(NMF_REC_VIA, 7, "net.tcp://host:8080/Stream1"),
			W_KNOWN(7), W_END,
		},
		.nwant = 5, .final = NMF_ERR_DONE, .end = 37,
	},
	{
		.name = "Ex 7 extensible encoding",
		.bytes = LIT(HEAD "\x17" "net.tcp://host/Service1"
		    "\x04\x23" "application/soap+msbinsession1+gzip" "\x0c"),
		.want = {
			W_VERSION(1, 0), W_MODE(2),
			W_STRING(NMF_REC_VIA, 7, "net.tcp://host/Service1"),
			W_STRING(NMF_REC_EXTENSIBLE_ENCODING, 32, "application/soap+msbinsession1+gzip"),
			W_END,
		},
		.nwant = 5, .final = NMF_ERR_DONE, .end = 68,
	},
};

#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

static void
put(struct stream *s, const void *bytes, size_t n)
{
	ck_assert_uint_le(s->len + n, sizeof(s->bytes));
	memcpy(s->bytes + s->len, bytes, n);
	s->len += n;
}

static void
put_byte(struct stream *s, uint8_t byte)
{
	put(s, &byte, 1);
}

static void
put_fill(struct stream *s, uint8_t byte, size_t n)
{
	ck_assert_uint_le(s->len + n, sizeof(s->bytes));
	memset(s->bytes + s->len, byte, n);
	s->len += n;
}

static void
put_mbint(struct stream *s, uint32_t value)
{
	uint8_t encoded[NMF_MBINT_MAX_BYTES];

	put(s, encoded, nmf_mbint_encode(value, encoded));
}

/* The longest legal form of a size: 5 bytes, padded with continuation bits. */
static void
put_mbint5(struct stream *s, uint32_t value)
{
	for (unsigned i = 0; i < NMF_MBINT_MAX_BYTES - 1; i++)
		put_byte(s, (uint8_t)(((value >> (7 * i)) & 0x7F) | 0x80));
	put_byte(s, (uint8_t)(value >> 28));
}

/*
 * Show the parser bytes[0..cuts[0]), then bytes[0..cuts[1]) and so on, then
 * all of bytes, calling nmf_parse each time until it stops giving records.
 * Each call sees a fresh allocation of exactly the visible bytes, with the
 * consumed ones overwritten: reading past len or back over consumed bytes
 * shows up as wrong records or a valgrind error.
 */
static void
feed(struct nmf_parser *p, const uint8_t *bytes, size_t len,
    const size_t *cuts, size_t ncuts, struct outcome *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t step = 0; step <= ncuts; step++) {
		size_t visible = step < ncuts ? cuts[step] : len;
		uint8_t *copy = malloc(visible > 0 ? visible : 1);

		ck_assert_ptr_nonnull(copy);
		memcpy(copy, bytes, visible);
		do {
			struct nmf_record rec;

			memset(copy, POISON, p->pos < visible ? p->pos : visible);
			out->status = nmf_parse(p, copy, visible, &rec);
			if (out->status == NMF_RECORD) {
				ck_assert_uint_lt(out->nrecords, MAX_RECORDS);
				out->records[out->nrecords++] = rec;
			}
			ck_assert_uint_le(p->pos, visible);
		} while (out->status == NMF_RECORD);
		free(copy);
	}
	out->pos = p->pos;
}

static void
feed_fresh(const uint8_t *bytes, size_t len, const size_t *cuts,
    size_t ncuts, struct outcome *out)
{
	struct nmf_parser p;

	nmf_parser_init(&p);
	feed(&p, bytes, len, cuts, ncuts, out);
}

static void
check_outcome(const struct sample *s, const struct outcome *got,
    const char *how)
{
	ck_assert_msg(got->nrecords == s->nwant, "%s, %s: %zu records, want %zu",
	    s->name, how, got->nrecords, s->nwant);
	for (size_t i = 0; i < s->nwant; i++) {
		const struct nmf_record *g = &got->records[i];
		const struct nmf_record *w = &s->want[i].rec;

		ck_assert_msg(g->type == w->type && g->major == w->major &&
		    g->minor == w->minor && g->mode == w->mode &&
		    g->encoding == w->encoding && g->str_off == w->str_off &&
		    g->str_len == w->str_len,
		    "%s, %s: record %zu is type %d off %zu len %zu, want type %d off %zu len %zu",
		    s->name, how, i, (int)g->type, g->str_off, g->str_len,
		    (int)w->type, w->str_off, w->str_len);
		if (s->want[i].text != NULL)
			ck_assert_mem_eq(s->bytes + g->str_off, s->want[i].text,
			    g->str_len);
	}
	ck_assert_msg(got->status == s->final, "%s, %s: ends with %s, want %s",
	    s->name, how, nmf_strerror(got->status), nmf_strerror(s->final));
	ck_assert_msg(got->pos == s->end, "%s, %s: pos %zu, want %zu",
	    s->name, how, got->pos, s->end);
}

/* Parse a whole buffer, expecting nrecords records and then status. */
static struct nmf_parser
parse_expect(const uint8_t *bytes, size_t len, size_t nrecords, int status)
{
	struct nmf_parser p;
	struct outcome out;

	nmf_parser_init(&p);
	feed(&p, bytes, len, NULL, 0, &out);
	ck_assert_uint_eq(out.nrecords, nrecords);
	ck_assert_msg(out.status == status, "got %s, want %s",
	    nmf_strerror(out.status), nmf_strerror(status));
	return p;
}

/* ------------------------------------------------------------- mbint */

static const struct {
	uint32_t value;
	const char *encoded;
	size_t len;
} mbint_table[] = {
	{ 0, "\x00", 1 },
	{ 127, "\x7f", 1 },
	{ 128, "\x80\x01", 2 },
	{ 300, "\xac\x02", 2 },
	{ 16383, "\xff\x7f", 2 },
	{ 16384, "\x80\x80\x01", 3 },
	{ 1u << 28, "\x80\x80\x80\x80\x01", 5 },
	{ 0x7FFFFFFFu, "\xff\xff\xff\xff\x07", 5 },
};

START_TEST(test_mbint_table)
{
	for (size_t i = 0; i < sizeof(mbint_table) / sizeof(mbint_table[0]); i++) {
		const uint8_t *encoded = (const uint8_t *)mbint_table[i].encoded;
		uint8_t out[NMF_MBINT_MAX_BYTES];
		uint32_t value = 0xDEADBEEF;

		ck_assert_int_eq(nmf_mbint_decode(encoded, mbint_table[i].len, &value),
		    (int)mbint_table[i].len);
		ck_assert_uint_eq(value, mbint_table[i].value);
		ck_assert_uint_eq(nmf_mbint_encode(mbint_table[i].value, out),
		    mbint_table[i].len);
		ck_assert_mem_eq(out, encoded, mbint_table[i].len);
		/* every proper prefix is an mbint still arriving */
		for (size_t cut = 0; cut < mbint_table[i].len; cut++)
			ck_assert_int_eq(nmf_mbint_decode(encoded, cut, &value), 0);
	}
}
END_TEST

START_TEST(test_mbint_stops_at_its_last_byte)
{
	uint32_t value = 0;

	ck_assert_int_eq(nmf_mbint_decode(LIT("\xac\x02\xff\xff"), &value), 2);
	ck_assert_uint_eq(value, 300);
}
END_TEST

START_TEST(test_mbint_non_minimal)
{
	uint32_t value = 1;

	ck_assert_int_eq(nmf_mbint_decode(LIT("\x80\x00"), &value), 2);
	ck_assert_uint_eq(value, 0);
	value = 1;
	ck_assert_int_eq(nmf_mbint_decode(LIT("\x80\x80\x80\x80\x00"), &value), 5);
	ck_assert_uint_eq(value, 0);
	ck_assert_int_eq(nmf_mbint_decode(LIT("\xff\x80\x00"), &value), 3);
	ck_assert_uint_eq(value, 127);
}
END_TEST

START_TEST(test_mbint_invalid)
{
	static const char *const invalid[] = {
		"\xff\xff\xff\xff\x08",     /* 2^31 */
		"\x80\x80\x80\x80\x10",
		"\xff\xff\xff\xff\x0f",     /* 2^32-1 */
		"\xff\xff\xff\xff\x80",     /* a 6th byte would follow */
		"\xff\xff\xff\xff\xff\x01", /* 6 bytes */
	};
	uint32_t value = 42;

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		ck_assert_int_eq(nmf_mbint_decode((const uint8_t *)invalid[i],
		    strlen(invalid[i]), &value), -1);
		ck_assert_uint_eq(value, 42);
	}
}
END_TEST

START_TEST(test_mbint_round_trip)
{
	uint8_t out[NMF_MBINT_MAX_BYTES];
	uint32_t value;

	/* both sides of every byte-count boundary, then a sweep of the range */
	for (unsigned bits = 0; bits <= 31; bits++) {
		uint32_t edges[] = { (1u << bits) - 1, bits < 31 ? 1u << bits : 0 };

		for (size_t e = 0; e < 2; e++) {
			size_t n = nmf_mbint_encode(edges[e], out);
			size_t want_len = 1;

			while (want_len < NMF_MBINT_MAX_BYTES &&
			    (edges[e] >> (7 * want_len)) != 0)
				want_len++;
			ck_assert_uint_eq(n, want_len);
			ck_assert_int_eq(nmf_mbint_decode(out, n, &value), (int)n);
			ck_assert_uint_eq(value, edges[e]);
		}
	}
	for (uint32_t v = 0; v < 0x7FFFFFFFu - 104729u; v += 104729u) {
		size_t n = nmf_mbint_encode(v, out);

		ck_assert_int_eq(nmf_mbint_decode(out, n, &value), (int)n);
		ck_assert_uint_eq(value, v);
	}
}
END_TEST

/* ------------------------------------------------------- real preambles */

START_TEST(test_sample_whole)
{
	const struct sample *s = &samples[_i];
	struct outcome out;

	feed_fresh(s->bytes, s->len, NULL, 0, &out);
	check_outcome(s, &out, "whole");
}
END_TEST

START_TEST(test_sample_every_split)
{
	const struct sample *s = &samples[_i];
	struct outcome out;
	char how[64];

	for (size_t cut = 0; cut <= s->len; cut++) {
		snprintf(how, sizeof(how), "split at %zu", cut);
		feed_fresh(s->bytes, s->len, &cut, 1, &out);
		check_outcome(s, &out, how);
	}
}
END_TEST

START_TEST(test_sample_every_three_part_split)
{
	const struct sample *s = &samples[_i];
	struct outcome out;
	char how[64];

	for (size_t a = 0; a <= s->len; a++) {
		for (size_t b = a; b <= s->len; b++) {
			size_t cuts[] = { a, b };

			snprintf(how, sizeof(how), "split at %zu and %zu", a, b);
			feed_fresh(s->bytes, s->len, cuts, 2, &out);
			check_outcome(s, &out, how);
		}
	}
}
END_TEST

START_TEST(test_sample_byte_by_byte)
{
	const struct sample *s = &samples[_i];
	size_t *cuts = malloc(s->len * sizeof(*cuts));
	struct outcome out;

	ck_assert_ptr_nonnull(cuts);
	for (size_t i = 0; i < s->len; i++)
		cuts[i] = i;
	feed_fresh(s->bytes, s->len, cuts, s->len, &out);
	check_outcome(s, &out, "byte by byte");
	free(cuts);
}
END_TEST

/* ------------------------------------------- record types by position */

static const struct {
	const char *name;
	const uint8_t *prefix;
	size_t prefix_len;
	size_t prefix_records;
	int upgraded; /* start with nmf_parser_init_upgraded() */
	uint8_t allowed[2];
} positions[] = {
	{ "first byte", LIT(""), 0, 0, { NMF_REC_VERSION, NMF_REC_VERSION } },
	{ "after Version", LIT("\x00\x01\x00"), 1, 0, { NMF_REC_MODE, NMF_REC_MODE } },
	{ "after Mode", LIT("\x00\x01\x00\x01\x02"), 2, 0, { NMF_REC_VIA, NMF_REC_VIA } },
	{ "after Via", LIT(HEAD "\x01" "a"), 3, 0,
	    { NMF_REC_KNOWN_ENCODING, NMF_REC_EXTENSIBLE_ENCODING } },
	{ "after Known Encoding", LIT(HEAD "\x01" "a" "\x03\x08"), 4, 0,
	    { NMF_REC_UPGRADE_REQUEST, NMF_REC_PREAMBLE_END } },
	{ "after Extensible Encoding", LIT(HEAD "\x01" "a" "\x04\x01" "b"), 4, 0,
	    { NMF_REC_UPGRADE_REQUEST, NMF_REC_PREAMBLE_END } },
	{ "singleton, after Known Encoding",
	    LIT("\x00\x01\x00\x01\x01\x02\x01" "a" "\x03\x07"), 4, 0,
	    { NMF_REC_UPGRADE_REQUEST, NMF_REC_PREAMBLE_END } },
	{ "upgraded stream", LIT(""), 0, 1,
	    { NMF_REC_UPGRADE_REQUEST, NMF_REC_PREAMBLE_END } },
};

START_TEST(test_record_type_in_position)
{
	uint8_t buf[64];

	ck_assert_uint_lt(positions[_i].prefix_len, sizeof(buf));
	memcpy(buf, positions[_i].prefix, positions[_i].prefix_len);
	for (unsigned type = 0; type <= 0xFF; type++) {
		int allowed = type == positions[_i].allowed[0] ||
		    type == positions[_i].allowed[1];
		struct nmf_parser p;
		struct nmf_record rec;
		struct outcome out;
		int status;

		if (positions[_i].upgraded)
			nmf_parser_init_upgraded(&p, NMF_MODE_DUPLEX);
		else
			nmf_parser_init(&p);
		feed(&p, buf, positions[_i].prefix_len, NULL, 0, &out);
		ck_assert_uint_eq(out.nrecords, positions[_i].prefix_records);
		ck_assert_int_eq(out.status, NMF_NEED_MORE);

		buf[positions[_i].prefix_len] = (uint8_t)type;
		status = nmf_parse(&p, buf, positions[_i].prefix_len + 1, &rec);
		if (!allowed) {
			ck_assert_msg(status == NMF_ERR_RECORD_TYPE,
			    "%s: type 0x%02x gave %s", positions[_i].name, type,
			    nmf_strerror(status));
		} else if (type == NMF_REC_PREAMBLE_END) {
			ck_assert_int_eq(status, NMF_RECORD);
			ck_assert_int_eq(rec.type, NMF_REC_PREAMBLE_END);
		} else {
			ck_assert_msg(status == NMF_NEED_MORE,
			    "%s: type 0x%02x gave %s", positions[_i].name, type,
			    nmf_strerror(status));
		}
		if (allowed)
			ck_assert_uint_eq(p.pos, positions[_i].prefix_len + 1);
	}
}
END_TEST

START_TEST(test_any_byte_after_the_end_is_done)
{
	static const struct {
		const uint8_t *bytes;
		size_t len;
		enum nmf_stage stage;
	} finished[] = {
		{ LIT(HEAD "\x01" "a" "\x03\x08\x0c"), NMF_STAGE_END },
		{ LIT(HEAD "\x01" "a" "\x03\x08\x09\x01" "x"), NMF_STAGE_UPGRADED },
	};

	for (size_t f = 0; f < sizeof(finished) / sizeof(finished[0]); f++) {
		size_t len = finished[f].len;
		uint8_t buf[16];

		ck_assert_uint_lt(len, sizeof(buf));
		memcpy(buf, finished[f].bytes, len);
		for (unsigned byte = 0; byte <= 0xFF; byte++) {
			struct nmf_parser p = parse_expect(buf, len, 5, NMF_ERR_DONE);
			struct nmf_record rec;

			buf[len] = (uint8_t)byte;
			ck_assert_int_eq(nmf_parse(&p, buf, len + 1, &rec), NMF_ERR_DONE);
			ck_assert_int_eq(p.stage, finished[f].stage);
			ck_assert_uint_eq(p.pos, len);
		}
	}
}
END_TEST

/* ------------------------------------------------- versions and modes */

START_TEST(test_versions)
{
	static const struct {
		const char *bytes;
		int status;
	} versions[] = {
		{ "\x00\x00\x00", NMF_ERR_VERSION },
		{ "\x00\x02\x00", NMF_ERR_VERSION },
		{ "\x00\xff\x00", NMF_ERR_VERSION },
		{ "\x00\x01\x00", NMF_RECORD },
		{ "\x00\x01\x05", NMF_RECORD },
		{ "\x00\x01\xff", NMF_RECORD },
	};

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		const uint8_t *bytes = (const uint8_t *)versions[i].bytes;
		struct nmf_parser p;
		struct nmf_record rec;

		nmf_parser_init(&p);
		/* the verdict waits for the minor byte */
		ck_assert_int_eq(nmf_parse(&p, bytes, 2, &rec), NMF_NEED_MORE);
		ck_assert_int_eq(nmf_parse(&p, bytes, 3, &rec), versions[i].status);
		if (versions[i].status == NMF_RECORD) {
			ck_assert_int_eq(rec.type, NMF_REC_VERSION);
			ck_assert_uint_eq(rec.major, 1);
			ck_assert_uint_eq(rec.minor, bytes[2]);
		}
	}
}
END_TEST

START_TEST(test_modes)
{
	for (unsigned mode = 0; mode <= 0xFF; mode++) {
		uint8_t bytes[] = { 0x00, 0x01, 0x00, 0x01, (uint8_t)mode };
		int ok = mode == NMF_MODE_SINGLETON_UNSIZED || mode == NMF_MODE_DUPLEX;
		struct nmf_parser p = parse_expect(bytes, sizeof(bytes), ok ? 2 : 1,
		    ok ? NMF_NEED_MORE : NMF_ERR_MODE);

		ck_assert_uint_eq(p.mode, ok ? mode : 0);
	}
}
END_TEST

START_TEST(test_mode_record)
{
	struct nmf_parser p;
	struct nmf_record rec;

	nmf_parser_init(&p);
	ck_assert_int_eq(nmf_parse(&p, LIT("\x00\x01\x00\x01\x01"), &rec), NMF_RECORD);
	ck_assert_int_eq(rec.type, NMF_REC_VERSION);
	ck_assert_int_eq(nmf_parse(&p, LIT("\x00\x01\x00\x01\x01"), &rec), NMF_RECORD);
	ck_assert_int_eq(rec.type, NMF_REC_MODE);
	ck_assert_uint_eq(rec.mode, NMF_MODE_SINGLETON_UNSIZED);
	ck_assert_uint_eq(p.mode, NMF_MODE_SINGLETON_UNSIZED);
}
END_TEST

START_TEST(test_known_encodings)
{
	for (unsigned encoding = 0; encoding <= 0xFF; encoding++) {
		uint8_t bytes[] = { 0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x01, 'a',
		    0x03, (uint8_t)encoding };
		int ok = encoding <= 0x08;
		struct nmf_parser p;
		struct outcome out;

		nmf_parser_init(&p);
		feed(&p, bytes, sizeof(bytes), NULL, 0, &out);
		ck_assert_uint_eq(out.nrecords, ok ? 4 : 3);
		ck_assert_int_eq(out.status, ok ? NMF_NEED_MORE : NMF_ERR_ENCODING);
		if (ok)
			ck_assert_uint_eq(out.records[3].encoding, encoding);
	}
}
END_TEST

START_TEST(test_garbage)
{
	struct nmf_parser p = parse_expect(LIT("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	    0, NMF_ERR_RECORD_TYPE);

	ck_assert_uint_eq(p.pos, 0);
}
END_TEST

/* ------------------------------------------------------------- limits */

enum limited { LIMITED_VIA, LIMITED_CONTENT_TYPE, LIMITED_UPGRADE };

/* Everything before the record whose size is tested, and that record's type. */
static size_t
put_limited_prefix(struct stream *s, enum limited which)
{
	put(s, LIT(HEAD));
	if (which == LIMITED_VIA)
		return 2;
	put(s, LIT("\x01" "a"));
	if (which == LIMITED_CONTENT_TYPE) {
		put_byte(s, NMF_REC_EXTENSIBLE_ENCODING);
		return 3;
	}
	put(s, LIT("\x03\x08"));
	put_byte(s, NMF_REC_UPGRADE_REQUEST);
	return 4;
}

START_TEST(test_limit_accepted)
{
	static const uint32_t limits[] = { NMF_MAX_VIA, NMF_MAX_CONTENT_TYPE, NMF_MAX_UPGRADE };
	struct stream s = { .len = 0 };
	size_t records = put_limited_prefix(&s, (enum limited)_i);
	size_t size_end, str_end;
	struct nmf_parser p;
	struct nmf_record rec;

	put_mbint(&s, limits[_i]);
	size_end = s.len;
	put_fill(&s, 'x', limits[_i]);
	str_end = s.len;

	nmf_parser_init(&p);
	for (size_t r = 0; r < records; r++)
		ck_assert_int_eq(nmf_parse(&p, s.bytes, size_end, &rec), NMF_RECORD);
	ck_assert_int_eq(nmf_parse(&p, s.bytes, size_end, &rec), NMF_NEED_MORE);
	ck_assert_int_eq(nmf_parse(&p, s.bytes, str_end - 1, &rec), NMF_NEED_MORE);
	ck_assert_int_eq(nmf_parse(&p, s.bytes, str_end, &rec), NMF_RECORD);
	ck_assert_uint_eq(rec.str_off, size_end);
	ck_assert_uint_eq(rec.str_len, limits[_i]);
	ck_assert_uint_eq(p.pos, str_end);
}
END_TEST

START_TEST(test_limit_exceeded_before_the_bytes)
{
	static const uint32_t limits[] = { NMF_MAX_VIA, NMF_MAX_CONTENT_TYPE, NMF_MAX_UPGRADE };
	struct stream s = { .len = 0 };
	size_t records = put_limited_prefix(&s, (enum limited)_i);

	put_mbint(&s, limits[_i] + 1);
	parse_expect(s.bytes, s.len, records, NMF_ERR_TOO_LONG);
}
END_TEST

START_TEST(test_hostile_size_refused_at_once)
{
	struct stream s = { .len = 0 };
	size_t records = put_limited_prefix(&s, (enum limited)_i);
	size_t size_start = s.len;
	struct nmf_parser p;
	struct outcome out;

	put(&s, LIT("\xff\xff\xff\xff\x07"));
	nmf_parser_init(&p);
	feed(&p, s.bytes, s.len - 1, NULL, 0, &out);
	ck_assert_int_eq(out.status, NMF_NEED_MORE);
	parse_expect(s.bytes, s.len, records, NMF_ERR_TOO_LONG);

	s.len = size_start;
	put(&s, LIT("\xff\xff\xff\xff\x08"));
	parse_expect(s.bytes, s.len, records, NMF_ERR_MBINT);
	s.len = size_start;
	put(&s, LIT("\xff\xff\xff\xff\xff\x01"));
	parse_expect(s.bytes, s.len, records, NMF_ERR_MBINT);
}
END_TEST

START_TEST(test_empty_strings)
{
	struct stream s = { .len = 0 };
	size_t records = put_limited_prefix(&s, (enum limited)_i);
	struct nmf_parser p;
	struct outcome out;

	put_byte(&s, 0x00);
	nmf_parser_init(&p);
	feed(&p, s.bytes, s.len, NULL, 0, &out);
	ck_assert_uint_eq(out.nrecords, records + 1);
	ck_assert_uint_eq(out.records[records].str_off, s.len);
	ck_assert_uint_eq(out.records[records].str_len, 0);

	/* the non-minimal zero 80 80 80 80 00 is still zero */
	s.len--;
	put(&s, LIT("\x80\x80\x80\x80\x00"));
	nmf_parser_init(&p);
	feed(&p, s.bytes, s.len, NULL, 0, &out);
	ck_assert_uint_eq(out.nrecords, records + 1);
	ck_assert_uint_eq(out.records[records].str_off, s.len);
	ck_assert_uint_eq(out.records[records].str_len, 0);
}
END_TEST

/*
 * Every record at its limit with a 5-byte size: the most a client sends
 * before it waits for the server, which is what NMF_PREAMBLE_MAX counts
 * (its Preamble End goes inside the upgrade).
 */
START_TEST(test_largest_preamble)
{
	struct stream s = { .len = 0 };
	size_t *cuts = malloc(sizeof(s.bytes) * sizeof(*cuts));
	struct outcome out;

	put(&s, LIT("\x00\x01\x00\x01\x02\x02"));
	put_mbint5(&s, NMF_MAX_VIA);
	put_fill(&s, 'v', NMF_MAX_VIA);
	put_byte(&s, NMF_REC_EXTENSIBLE_ENCODING);
	put_mbint5(&s, NMF_MAX_CONTENT_TYPE);
	put_fill(&s, 'c', NMF_MAX_CONTENT_TYPE);
	put_byte(&s, NMF_REC_UPGRADE_REQUEST);
	put_mbint5(&s, NMF_MAX_UPGRADE);
	put_fill(&s, 'u', NMF_MAX_UPGRADE);
	ck_assert_uint_eq(s.len, NMF_PREAMBLE_MAX);

	ck_assert_ptr_nonnull(cuts);
	for (size_t i = 0; i < s.len; i++)
		cuts[i] = i;
	feed_fresh(s.bytes, s.len, cuts, s.len, &out);
	ck_assert_uint_eq(out.nrecords, 5);
	ck_assert_int_eq(out.status, NMF_ERR_DONE);
	ck_assert_uint_eq(out.records[2].str_off, 11);
	ck_assert_uint_eq(out.records[2].str_len, NMF_MAX_VIA);
	ck_assert_uint_eq(out.records[3].str_len, NMF_MAX_CONTENT_TYPE);
	ck_assert_uint_eq(out.records[4].str_len, NMF_MAX_UPGRADE);
	ck_assert_uint_eq(out.pos, s.len);
	free(cuts);
}
END_TEST

/* ------------------------------------------------------ sticky errors */

static const struct {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	size_t records;
	int status;
} broken[] = {
	{ "garbage", LIT("GET / HTTP/1.1\r\n"), 0, NMF_ERR_RECORD_TYPE },
	{ "major 0", LIT("\x00\x00\x00"), 0, NMF_ERR_VERSION },
	{ "mode 3", LIT("\x00\x01\x00\x01\x03"), 1, NMF_ERR_MODE },
	{ "mode 4", LIT("\x00\x01\x00\x01\x04"), 1, NMF_ERR_MODE },
	{ "6-byte Via size", LIT(HEAD "\x80\x80\x80\x80\x80\x01"), 2, NMF_ERR_MBINT },
	{ "Via 2049", LIT(HEAD "\x81\x10"), 2, NMF_ERR_TOO_LONG },
	{ "Via 2 GiB", LIT(HEAD "\xff\xff\xff\xff\x07"), 2, NMF_ERR_TOO_LONG },
	{ "encoding 9", LIT(HEAD "\x01" "a" "\x03\x09"), 3, NMF_ERR_ENCODING },
	{ "Version twice", LIT("\x00\x01\x00\x00\x01\x00"), 1, NMF_ERR_RECORD_TYPE },
	{ "envelope before 0C", LIT(HEAD "\x01" "a" "\x03\x08\x06\x01" "e"), 4,
	    NMF_ERR_RECORD_TYPE },
};

START_TEST(test_errors_are_sticky)
{
	static const uint8_t more[] = HEAD "\x01" "a" "\x03\x08\x0c";
	size_t len = broken[_i].len;
	size_t more_len = sizeof(more) - 1;
	uint8_t *longer = malloc(len + more_len);
	struct nmf_parser p = parse_expect(broken[_i].bytes, len,
	    broken[_i].records, broken[_i].status);
	size_t error_pos = p.pos;
	size_t *cuts = malloc(len * sizeof(*cuts));
	struct nmf_record rec;
	struct outcome out;

	ck_assert_ptr_nonnull(longer);
	ck_assert_ptr_nonnull(cuts);
	ck_assert_int_eq(nmf_parse(&p, broken[_i].bytes, len, &rec), broken[_i].status);
	ck_assert_int_eq(nmf_parse(&p, broken[_i].bytes, len, &rec), broken[_i].status);
	memcpy(longer, broken[_i].bytes, len);
	memcpy(longer + len, more, more_len);
	ck_assert_int_eq(nmf_parse(&p, longer, len + more_len, &rec),
	    broken[_i].status);
	ck_assert_uint_eq(p.pos, error_pos);

	for (size_t i = 0; i < len; i++)
		cuts[i] = i;
	feed_fresh(broken[_i].bytes, len, cuts, len, &out);
	ck_assert_uint_eq(out.nrecords, broken[_i].records);
	ck_assert_int_eq(out.status, broken[_i].status);
	free(cuts);
	free(longer);
}
END_TEST

/* ---------------------------------------------------- end and upgrade */

START_TEST(test_done_after_preamble_end)
{
	struct nmf_parser p = parse_expect(LIT(HEAD "\x01" "a" "\x03\x08\x0c" "\x06\x01" "e"),
	    5, NMF_ERR_DONE);
	struct nmf_record rec;

	ck_assert_int_eq(p.stage, NMF_STAGE_END);
	ck_assert_uint_eq(p.pos, 11);
	ck_assert_int_eq(nmf_parse(&p, LIT(HEAD "\x01" "a" "\x03\x08\x0c"), &rec),
	    NMF_ERR_DONE);
	ck_assert_uint_eq(p.pos, 11);
}
END_TEST

START_TEST(test_done_after_upgrade_request)
{
	struct nmf_parser p = parse_expect(LIT(HEAD "\x01" "a" "\x03\x08"
	    "\x09\x15" "application/negotiate" "\x16\x01\x00\x00\x20"), 5, NMF_ERR_DONE);

	ck_assert_int_eq(p.stage, NMF_STAGE_UPGRADED);
	ck_assert_uint_eq(p.mode, NMF_MODE_DUPLEX);
	ck_assert_uint_eq(p.pos, 33);
}
END_TEST

START_TEST(test_upgraded_parser_preamble_end)
{
	struct nmf_parser p;
	struct outcome out;

	nmf_parser_init_upgraded(&p, NMF_MODE_SINGLETON_UNSIZED);
	ck_assert_uint_eq(p.mode, NMF_MODE_SINGLETON_UNSIZED);
	ck_assert_int_eq(p.stage, NMF_STAGE_RECORD);
	ck_assert_uint_eq(p.pos, 0);
	feed(&p, LIT("\x0c\x05\x01"), NULL, 0, &out);
	ck_assert_uint_eq(out.nrecords, 1);
	ck_assert_int_eq(out.records[0].type, NMF_REC_PREAMBLE_END);
	ck_assert_int_eq(out.status, NMF_ERR_DONE);
	ck_assert_int_eq(p.stage, NMF_STAGE_END);
	ck_assert_uint_eq(p.pos, 1);
	ck_assert_uint_eq(p.mode, NMF_MODE_SINGLETON_UNSIZED);
}
END_TEST

START_TEST(test_upgraded_parser_nested_upgrade)
{
	static const uint8_t stream[] = "\x09\x13" "application/ssl-tls" "\x16\x03\x01";
	size_t cuts[sizeof(stream) - 1];
	struct nmf_parser p;
	struct outcome out;

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
		cuts[i] = i;
	nmf_parser_init_upgraded(&p, NMF_MODE_DUPLEX);
	feed(&p, stream, sizeof(stream) - 1, cuts, sizeof(cuts) / sizeof(cuts[0]), &out);
	ck_assert_uint_eq(out.nrecords, 1);
	ck_assert_int_eq(out.records[0].type, NMF_REC_UPGRADE_REQUEST);
	ck_assert_uint_eq(out.records[0].str_off, 2);
	ck_assert_uint_eq(out.records[0].str_len, 19);
	ck_assert_int_eq(out.status, NMF_ERR_DONE);
	ck_assert_int_eq(p.stage, NMF_STAGE_UPGRADED);
	ck_assert_uint_eq(p.pos, 21);
}
END_TEST

START_TEST(test_upgraded_parser_refuses_a_new_preamble)
{
	struct nmf_parser p;
	struct nmf_record rec;

	nmf_parser_init_upgraded(&p, NMF_MODE_DUPLEX);
	ck_assert_int_eq(nmf_parse(&p, LIT(HEAD "\x01" "a" "\x03\x08\x0c"), &rec),
	    NMF_ERR_RECORD_TYPE);
	ck_assert_uint_eq(p.pos, 0);
}
END_TEST

/* -------------------------------------------------- strerror, faults */

START_TEST(test_strerror)
{
	ck_assert_str_eq(nmf_strerror(NMF_NEED_MORE), "need more bytes");
	ck_assert_str_eq(nmf_strerror(NMF_RECORD), "record");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_RECORD_TYPE), "unexpected record type");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_VERSION), "unsupported version");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_MODE), "unsupported mode");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_MBINT), "invalid size field");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_TOO_LONG), "field too long");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_DONE), "parser finished");
	ck_assert_str_eq(nmf_strerror(NMF_ERR_ENCODING), "invalid known encoding");
	ck_assert_ptr_nonnull(nmf_strerror(42));
	ck_assert_ptr_nonnull(nmf_strerror(-42));
}
END_TEST

/* The URIs are spelled out in full, not built from a shared prefix. */
static const struct {
	enum nmf_fault fault;
	const char *name;
	const char *uri;
	size_t uri_len; /* nmf-protocol.md section 5 */
} fault_table[] = {
	{ NMF_FAULT_ENDPOINT_NOT_FOUND, "EndpointNotFound",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound", 71 },
	{ NMF_FAULT_ENDPOINT_UNAVAILABLE, "EndpointUnavailable",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointUnavailable", 74 },
	{ NMF_FAULT_UNSUPPORTED_VERSION, "UnsupportedVersion",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/UnsupportedVersion", 73 },
	{ NMF_FAULT_UNSUPPORTED_MODE, "UnsupportedMode",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/UnsupportedMode", 70 },
	{ NMF_FAULT_UPGRADE_INVALID, "UpgradeInvalid",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/UpgradeInvalid", 69 },
	{ NMF_FAULT_CONTENT_TYPE_INVALID, "ContentTypeInvalid",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/ContentTypeInvalid", 73 },
	{ NMF_FAULT_SERVER_TOO_BUSY, "ServerTooBusy",
	    "http://schemas.microsoft.com/ws/2006/05/framing/faults/ServerTooBusy", 68 },
};

START_TEST(test_fault_record)
{
	size_t len = 0;
	const uint8_t *record = nmf_fault_record(fault_table[_i].fault, &len);

	ck_assert_uint_eq(strlen(fault_table[_i].uri), fault_table[_i].uri_len);
	ck_assert_ptr_nonnull(record);
	ck_assert_uint_eq(len, 2 + fault_table[_i].uri_len);
	ck_assert_uint_eq(record[0], NMF_REC_FAULT);
	ck_assert_uint_eq(record[1], fault_table[_i].uri_len);
	ck_assert_mem_eq(record + 2, fault_table[_i].uri, fault_table[_i].uri_len);
	ck_assert_str_eq(nmf_fault_name(fault_table[_i].fault), fault_table[_i].name);
}
END_TEST

START_TEST(test_fault_ex6)
{
	static const uint8_t ex6[] = {
		0x08, 0x47, 0x68, 0x74, 0x74, 0x70, 0x3A, 0x2F, 0x2F, 0x73, 0x63, 0x68,
		0x65, 0x6D, 0x61, 0x73, 0x2E, 0x6D, 0x69, 0x63, 0x72, 0x6F, 0x73, 0x6F,
		0x66, 0x74, 0x2E, 0x63, 0x6F, 0x6D, 0x2F, 0x77, 0x73, 0x2F, 0x32, 0x30,
		0x30, 0x36, 0x2F, 0x30, 0x35, 0x2F, 0x66, 0x72, 0x61, 0x6D, 0x69, 0x6E,
		0x67, 0x2F, 0x66, 0x61, 0x75, 0x6C, 0x74, 0x73, 0x2F, 0x45, 0x6E, 0x64,
		0x70, 0x6F, 0x69, 0x6E, 0x74, 0x4E, 0x6F, 0x74, 0x46, 0x6F, 0x75, 0x6E,
		0x64,
	};
	size_t len = 0;
	const uint8_t *record = nmf_fault_record(NMF_FAULT_ENDPOINT_NOT_FOUND, &len);

	ck_assert_uint_eq(sizeof(ex6), 73);
	ck_assert_uint_eq(len, sizeof(ex6));
	ck_assert_mem_eq(record, ex6, sizeof(ex6));
}
END_TEST

START_TEST(test_fault_table_covers_every_fault)
{
	ck_assert_uint_eq(sizeof(fault_table) / sizeof(fault_table[0]), NMF_FAULT_COUNT);
	for (size_t i = 0; i < NMF_FAULT_COUNT; i++)
		ck_assert_int_eq(fault_table[i].fault, (int)i);
}
END_TEST

static Suite *
nmf_suite(void)
{
	Suite *suite = suite_create("nmf");
	TCase *mbint = tcase_create("mbint");
	TCase *preambles = tcase_create("preambles");
	TCase *grammar = tcase_create("grammar");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");
	TCase *upgrade = tcase_create("upgrade");
	TCase *faults = tcase_create("faults");
	int nbroken = (int)(sizeof(broken) / sizeof(broken[0]));
	int npositions = (int)(sizeof(positions) / sizeof(positions[0]));

	tcase_add_test(mbint, test_mbint_table);
	tcase_add_test(mbint, test_mbint_stops_at_its_last_byte);
	tcase_add_test(mbint, test_mbint_non_minimal);
	tcase_add_test(mbint, test_mbint_invalid);
	tcase_add_test(mbint, test_mbint_round_trip);
	suite_add_tcase(suite, mbint);

	tcase_add_loop_test(preambles, test_sample_whole, 0, (int)NSAMPLES);
	tcase_add_loop_test(preambles, test_sample_every_split, 0, (int)NSAMPLES);
	tcase_add_loop_test(preambles, test_sample_every_three_part_split, 0, (int)NSAMPLES);
	tcase_add_loop_test(preambles, test_sample_byte_by_byte, 0, (int)NSAMPLES);
	suite_add_tcase(suite, preambles);

	tcase_add_loop_test(grammar, test_record_type_in_position, 0, npositions);
	tcase_add_test(grammar, test_any_byte_after_the_end_is_done);
	tcase_add_test(grammar, test_versions);
	tcase_add_test(grammar, test_modes);
	tcase_add_test(grammar, test_mode_record);
	tcase_add_test(grammar, test_known_encodings);
	tcase_add_test(grammar, test_garbage);
	suite_add_tcase(suite, grammar);

	tcase_add_loop_test(limits, test_limit_accepted, LIMITED_VIA, LIMITED_UPGRADE + 1);
	tcase_add_loop_test(limits, test_limit_exceeded_before_the_bytes, LIMITED_VIA,
	    LIMITED_UPGRADE + 1);
	tcase_add_loop_test(limits, test_hostile_size_refused_at_once, LIMITED_VIA,
	    LIMITED_UPGRADE + 1);
	tcase_add_loop_test(limits, test_empty_strings, LIMITED_VIA, LIMITED_UPGRADE + 1);
	tcase_add_test(limits, test_largest_preamble);
	suite_add_tcase(suite, limits);

	tcase_add_loop_test(errors, test_errors_are_sticky, 0, nbroken);
	suite_add_tcase(suite, errors);

	tcase_add_test(upgrade, test_done_after_preamble_end);
	tcase_add_test(upgrade, test_done_after_upgrade_request);
	tcase_add_test(upgrade, test_upgraded_parser_preamble_end);
	tcase_add_test(upgrade, test_upgraded_parser_nested_upgrade);
	tcase_add_test(upgrade, test_upgraded_parser_refuses_a_new_preamble);
	suite_add_tcase(suite, upgrade);

	tcase_add_test(faults, test_strerror);
	tcase_add_loop_test(faults, test_fault_record, 0, (int)NMF_FAULT_COUNT);
	tcase_add_test(faults, test_fault_ex6);
	tcase_add_test(faults, test_fault_table_covers_every_fault);
	suite_add_tcase(suite, faults);

	return suite;
}

int
main(void)
{
	SRunner *runner = srunner_create(nmf_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
