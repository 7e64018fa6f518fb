/*
 * check_flow.c - unit tests for the duplex session follower (nmf_flow).
 *
 * Every stream is fed whole, split in two at every point and byte by byte;
 * the follower must stop at the same byte in the same state each time, and
 * when it leaves the protocol, name the same record.  It stops before a
 * byte that does not fit, so a proxy never forwards a byte it could not
 * place.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nmf.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

struct result {
	size_t used;  /* bytes the follower took as the session's */
	enum nmf_flow_state state;
	uint8_t bad;  /* NMF_FLOW_OPAQUE: the record that did not fit, else 0 */
};

/* Feed buf in pieces cut at the given points (sorted, < len). */
static struct result
feed_split(enum nmf_flow_dir dir, const uint8_t *buf, size_t len,
    const size_t *cuts, size_t ncuts)
{
	struct nmf_flow f;
	struct result r = { 0, NMF_FLOW_RECORD, 0 };
	size_t from = 0;

	nmf_flow_init(&f, dir);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		size_t got = nmf_flow_feed(&f, buf + from, to - from);

		ck_assert_uint_le(got, to - from);
		r.used += got;
		if (got < to - from) {
			/* the session ended, or left, inside this piece: what
			 * is left of the stream is not the session's, however
			 * it comes */
			struct nmf_flow stopped = f;

			ck_assert(f.state == NMF_FLOW_ENDED ||
			    f.state == NMF_FLOW_OPAQUE);
			ck_assert_uint_eq(nmf_flow_feed(&f, buf + from + got,
			    len - from - got), 0);
			ck_assert_int_eq(f.state, stopped.state);
			ck_assert_uint_eq(f.bad, stopped.bad);
			break;
		}
		from = to;
	}
	r.state = f.state;
	r.bad = f.state == NMF_FLOW_OPAQUE ? f.bad : 0;
	return r;
}

/* The same result whole, at every two-way split and byte by byte. */
static struct result
feed_all_ways(enum nmf_flow_dir dir, const uint8_t *buf, size_t len)
{
	struct result whole = feed_split(dir, buf, len, NULL, 0);
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));

	ck_assert_ptr_nonnull(cuts);
	for (size_t at = 1; at < len; at++) {
		struct result split = feed_split(dir, buf, len, &at, 1);

		ck_assert_uint_eq(split.used, whole.used);
		ck_assert_int_eq(split.state, whole.state);
		ck_assert_uint_eq(split.bad, whole.bad);
	}
	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	if (len > 1) {
		struct result bytes = feed_split(dir, buf, len, cuts, len - 1);

		ck_assert_uint_eq(bytes.used, whole.used);
		ck_assert_int_eq(bytes.state, whole.state);
		ck_assert_uint_eq(bytes.bad, whole.bad);
	}
	free(cuts);
	return whole;
}

START_TEST(test_up_envelopes_then_end)
{
	/* two envelopes, End, then the start of the next preamble */
	static const uint8_t s[] = "\x06\x03" "abc" "\x06\x00" "\x06\x01" "\x07"
	    "\x07" "\x00\x01\x00\x01\x02";
	struct result r = feed_all_ways(NMF_FLOW_UP, s, sizeof(s) - 1);

	ck_assert_int_eq(r.state, NMF_FLOW_ENDED);
	/* the payload byte 07 is not an End; the record after it is */
	ck_assert_uint_eq(r.used, 2 + 3 + 2 + 3 + 1);
}
END_TEST

START_TEST(test_down_ack_envelopes_end)
{
	static const uint8_t s[] = "\x0b" "\x06\x02" "hi" "\x07" "junk";
	struct result r = feed_all_ways(NMF_FLOW_DOWN, s, sizeof(s) - 1);

	ck_assert_int_eq(r.state, NMF_FLOW_ENDED);
	ck_assert_uint_eq(r.used, 1 + 4 + 1);
}
END_TEST

START_TEST(test_down_needs_the_ack_first)
{
	struct result r;

	/* the byte that does not fit is not taken, nor any after it */
	r = feed_all_ways(NMF_FLOW_DOWN, LIT("\x06\x01x\x07"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 0);
	ck_assert_uint_eq(r.bad, NMF_REC_SIZED_ENVELOPE);
	/* a Fault instead of the Ack */
	r = feed_all_ways(NMF_FLOW_DOWN, LIT("\x08\x02zz\x07"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 0);
	ck_assert_uint_eq(r.bad, NMF_REC_FAULT);
	/* text after the Ack */
	r = feed_all_ways(NMF_FLOW_DOWN, LIT("\x0b" "A\x07"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 1);
	ck_assert_uint_eq(r.bad, 'A');
	/* a Fault mid-session: the envelopes before it are the session's */
	r = feed_all_ways(NMF_FLOW_DOWN, LIT("\x0b" "\x06\x01z" "\x08\x01u"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 4);
	ck_assert_uint_eq(r.bad, NMF_REC_FAULT);
}
END_TEST

START_TEST(test_unexpected_records_give_up)
{
	/* the up direction never starts with an Ack */
	static const uint8_t types[] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
	    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x7f, 0xff };

	for (size_t i = 0; i < sizeof(types); i++) {
		uint8_t s[3] = { 0x06, 0x00, types[i] };
		struct result r = feed_all_ways(NMF_FLOW_UP, s, sizeof(s));

		/* the empty envelope is taken, the stray record is not */
		ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
		ck_assert_uint_eq(r.used, 2);
		ck_assert_uint_eq(r.bad, types[i]);
	}
}
END_TEST

START_TEST(test_sizes)
{
	static const uint32_t sizes[] = { 1, 127, 128, 16383, 16384, 65536,
	    2097152 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = 1 + NMF_MBINT_MAX_BYTES + sizes[i] + 1;
		uint8_t *s = calloc(1, len);
		size_t n;
		struct result r;

		ck_assert_ptr_nonnull(s);
		s[0] = NMF_REC_SIZED_ENVELOPE;
		n = nmf_mbint_encode(sizes[i], s + 1);
		memset(s + 1 + n, NMF_REC_END, sizes[i]); /* End bytes as payload */
		s[1 + n + sizes[i]] = NMF_REC_END;
		len = 1 + n + sizes[i] + 1;
		if (sizes[i] <= 16384) {
			r = feed_all_ways(NMF_FLOW_UP, s, len);
		} else {
			size_t cut = 1 + n + sizes[i] / 2;

			r = feed_split(NMF_FLOW_UP, s, len, &cut, 1);
		}
		ck_assert_int_eq(r.state, NMF_FLOW_ENDED);
		ck_assert_uint_eq(r.used, len);
		free(s);
	}
}
END_TEST

START_TEST(test_largest_and_invalid_sizes)
{
	struct nmf_flow f;
	struct result r;

	/* 2^31-1: accepted, payload pending */
	nmf_flow_init(&f, NMF_FLOW_UP);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x06\xff\xff\xff\xff\x07")), 6);
	ck_assert_int_eq(f.state, NMF_FLOW_PAYLOAD);
	ck_assert_uint_eq(f.remaining, 0x7fffffffu);
	/* a fifth byte above 0x07, or one asking for a sixth: not a size.
	 * The follower stops at that fifth byte (index 5), without taking
	 * it, and names the Sized Envelope whose size it is. */
	r = feed_all_ways(NMF_FLOW_UP, LIT("\x06\xff\xff\xff\xff\x08xyz"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 5);
	ck_assert_uint_eq(r.bad, NMF_REC_SIZED_ENVELOPE);
	r = feed_all_ways(NMF_FLOW_UP, LIT("\x06\x80\x80\x80\x80\x80\x01"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 5);
	ck_assert_uint_eq(r.bad, NMF_REC_SIZED_ENVELOPE);
	/* the same after a whole envelope: the index is from the start */
	r = feed_all_ways(NMF_FLOW_UP,
	    LIT("\x06\x01x" "\x06\xff\xff\xff\xff\x10"));
	ck_assert_int_eq(r.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(r.used, 3 + 5);
	ck_assert_uint_eq(r.bad, NMF_REC_SIZED_ENVELOPE);
	/* four size bytes that want a fifth are still a size */
	r = feed_all_ways(NMF_FLOW_UP, LIT("\x06\xff\xff\xff\xff"));
	ck_assert_int_eq(r.state, NMF_FLOW_SIZE);
	ck_assert_uint_eq(r.used, 5);
}
END_TEST

START_TEST(test_skip_payload_unseen)
{
	struct nmf_flow f;

	nmf_flow_init(&f, NMF_FLOW_UP);
	/* 06, size 300, and 10 bytes of payload */
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x06\xac\x02" "0123456789")), 13);
	ck_assert_int_eq(f.state, NMF_FLOW_PAYLOAD);
	ck_assert_uint_eq(f.remaining, 290);
	nmf_flow_skip(&f, 200);
	ck_assert_int_eq(f.state, NMF_FLOW_PAYLOAD);
	nmf_flow_skip(&f, 90);
	ck_assert_int_eq(f.state, NMF_FLOW_RECORD);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x07\x06")), 1);
	ck_assert_int_eq(f.state, NMF_FLOW_ENDED);
}
END_TEST

START_TEST(test_end_and_opaque_stay)
{
	struct nmf_flow f;

	nmf_flow_init(&f, NMF_FLOW_UP);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x07")), 1);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x06\x01x")), 0);
	ck_assert_int_eq(f.state, NMF_FLOW_ENDED);
	nmf_flow_init(&f, NMF_FLOW_UP);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x06\x00\x05")), 2);
	ck_assert_int_eq(f.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(f.bad, 0x05);
	/* not even the byte that did not fit, offered again, nor an End */
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x05")), 0);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x07\x06")), 0);
	ck_assert_int_eq(f.state, NMF_FLOW_OPAQUE);
	ck_assert_uint_eq(f.bad, 0x05);
	/* a skip outside a payload does not bring a follower back */
	nmf_flow_skip(&f, 0);
	ck_assert_int_eq(f.state, NMF_FLOW_OPAQUE);
	nmf_flow_init(&f, NMF_FLOW_UP);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x07")), 1);
	nmf_flow_skip(&f, 0);
	ck_assert_int_eq(f.state, NMF_FLOW_ENDED);
	/* nothing fed, nothing taken */
	nmf_flow_init(&f, NMF_FLOW_DOWN);
	ck_assert_uint_eq(nmf_flow_feed(&f, NULL, 0), 0);
	ck_assert_int_eq(f.state, NMF_FLOW_RECORD);
}
END_TEST

/* Feed a singleton session's bytes at every split. */
static struct result
singleton_split(enum nmf_flow_dir dir, const uint8_t *buf, size_t len,
    size_t cut)
{
	struct nmf_flow f;
	struct result r = { 0, NMF_FLOW_RECORD, 0 };
	size_t got;

	nmf_flow_init_singleton(&f, dir);
	got = nmf_flow_feed(&f, buf, cut);
	r.used = got;
	if (got == cut)
		r.used += nmf_flow_feed(&f, buf + cut, len - cut);
	r.state = f.state;
	return r;
}

static void
singleton_check(enum nmf_flow_dir dir, const uint8_t *buf, size_t len,
    enum nmf_flow_state state, size_t used)
{
	for (size_t cut = 0; cut <= len; cut++) {
		struct result r = singleton_split(dir, buf, len, cut);

		ck_assert_int_eq(r.state, state);
		ck_assert_uint_eq(r.used, used);
	}
}

START_TEST(test_singleton_sessions)
{
	/* up: one Unsized Envelope in two chunks, its 00, End, then more */
	static const uint8_t up[] = "\x05\x03" "abc" "\x02" "\x07\x07" "\x00" "\x07"
	    "\x00\x01";
	/* down: Ack, the reply envelope, End */
	static const uint8_t down[] = "\x0b\x05\x01" "z" "\x00\x07" "junk";

	singleton_check(NMF_FLOW_UP, up, sizeof(up) - 1, NMF_FLOW_ENDED, 10);
	singleton_check(NMF_FLOW_DOWN, down, sizeof(down) - 1, NMF_FLOW_ENDED, 6);
	/* a one-way call: the service answers End alone */
	singleton_check(NMF_FLOW_DOWN, LIT("\x0b\x07"), NMF_FLOW_ENDED, 2);
	/* the client must send its envelope before End, and only one */
	singleton_check(NMF_FLOW_UP, LIT("\x07"), NMF_FLOW_OPAQUE, 0);
	singleton_check(NMF_FLOW_UP, LIT("\x05\x00\x05"), NMF_FLOW_OPAQUE, 2);
	/* no Sized Envelope in a singleton session */
	singleton_check(NMF_FLOW_UP, LIT("\x06\x01x"), NMF_FLOW_OPAQUE, 0);
	singleton_check(NMF_FLOW_DOWN, LIT("\x0b\x05\x00\x05"), NMF_FLOW_OPAQUE, 3);
	/* a chunk's payload is skipped like an envelope's, back to a size */
	{
		struct nmf_flow f;

		nmf_flow_init_singleton(&f, NMF_FLOW_UP);
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x05\xac\x02")), 3);
		ck_assert_int_eq(f.state, NMF_FLOW_PAYLOAD);
		nmf_flow_skip(&f, 300);
		ck_assert_int_eq(f.state, NMF_FLOW_SIZE);
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x00\x07")), 2);
		ck_assert_int_eq(f.state, NMF_FLOW_ENDED);
	}
}
END_TEST

/* The follower of a session's mode: a redial must get the same one. */
START_TEST(test_init_from_mode)
{
	struct nmf_flow f, g;

	nmf_flow_init_mode(&f, NMF_FLOW_DOWN, NMF_MODE_SINGLETON_UNSIZED);
	nmf_flow_init_singleton(&g, NMF_FLOW_DOWN);
	ck_assert_mem_eq(&f, &g, sizeof(f));
	nmf_flow_init_mode(&f, NMF_FLOW_UP, NMF_MODE_DUPLEX);
	nmf_flow_init(&g, NMF_FLOW_UP);
	ck_assert_mem_eq(&f, &g, sizeof(f));
	/* the singleton reply a duplex follower would not take */
	nmf_flow_init_mode(&f, NMF_FLOW_DOWN, NMF_MODE_SINGLETON_UNSIZED);
	ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x0b\x05\x01z\x00\x07")), 6);
	ck_assert_int_eq(f.state, NMF_FLOW_ENDED);
}
END_TEST

/* ack_alone: after the Ack nothing, until the caller clears it (the
 * caller sets it only when the first byte is the Ack: a Fault leaves the
 * protocol as ever). */
START_TEST(test_ack_alone)
{
	struct nmf_flow f;

	for (uint8_t mode = 1; mode <= 2; mode++) {
		nmf_flow_init_mode(&f, NMF_FLOW_DOWN, mode);
		f.ack_alone = 1;
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x0b\x06\x01x")), 1);
		ck_assert_int_eq(f.state, NMF_FLOW_OPAQUE);
		ck_assert_uint_eq(f.bad, 0x06);
		nmf_flow_init_mode(&f, NMF_FLOW_DOWN, mode);
		f.ack_alone = 1;
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x0b")), 1);
		f.ack_alone = 0;
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x07")), 1);
		ck_assert_int_eq(f.state, NMF_FLOW_ENDED);
		/* a second Ack has no place, set or not */
		nmf_flow_init_mode(&f, NMF_FLOW_DOWN, mode);
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x0b\x0b")), 1);
		ck_assert_int_eq(f.state, NMF_FLOW_OPAQUE);
		ck_assert_uint_eq(f.bad, 0x0b);
		nmf_flow_init_mode(&f, NMF_FLOW_DOWN, mode);
		f.ack_alone = 1;
		ck_assert_uint_eq(nmf_flow_feed(&f, LIT("\x08")), 0);
		ck_assert_uint_eq(f.bad, 0x08);
	}
}
END_TEST

static Suite *
flow_suite(void)
{
	Suite *s = suite_create("nmf_flow");
	TCase *tc = tcase_create("follow");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_up_envelopes_then_end);
	tcase_add_test(tc, test_down_ack_envelopes_end);
	tcase_add_test(tc, test_down_needs_the_ack_first);
	tcase_add_test(tc, test_unexpected_records_give_up);
	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_largest_and_invalid_sizes);
	tcase_add_test(tc, test_skip_payload_unseen);
	tcase_add_test(tc, test_end_and_opaque_stay);
	tcase_add_test(tc, test_singleton_sessions);
	tcase_add_test(tc, test_init_from_mode);
	tcase_add_test(tc, test_ack_alone);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(flow_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
