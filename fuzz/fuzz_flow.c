/*
 * fuzz_flow.c - the duplex session follower on arbitrary bytes, split
 * arbitrarily, with payload moved unseen.
 *
 * Input: one control byte, then up to 15 split bytes, then the stream.
 *
 *   control bits 0-3  how many split bytes follow
 *   control bit 4     follow the down direction (service to client, Preamble
 *                     Ack first) instead of the up one
 *
 * The stream is followed four ways: whole, byte by byte, in chunks whose
 * sizes the split bytes give in turn (0 = call again with nothing new), and
 * as the proxy splices: whenever the follower is inside a payload, the next
 * split byte says how much of it to move with nmf_flow_skip() instead of
 * feeding it (0 = feed the next chunk after all; without split bytes, skip
 * all that can be and feed byte by byte).  Every way must take the same
 * bytes as the session's and leave the follower in the same state.  Along
 * the way, on every call: feed never takes more than it was given, takes
 * less only when the session has just ended (and then the last byte taken
 * is the End) or just left the protocol (and then the first byte not taken
 * is the one that did not fit: the record named in bad, or the fifth size
 * byte that makes the size invalid, with bad its Sized Envelope), an empty
 * feed changes nothing, ENDED and OPAQUE never change and take nothing (a
 * proxy must never forward a byte the follower could not place), PAYLOAD
 * always has bytes to come, remaining never exceeds 2^31-1, and skip moves
 * exactly what it is told.  The whole run is also checked against a
 * reading of the bytes done here independently, which says where the
 * follower stops and which record it names.
 */
#include <string.h>

#include "fuzz.h"
#include "nmf.h"

#define CONTROL_NSPLIT 0x0Fu
#define CONTROL_DOWN 0x10u

#define MBINT_MAX 0x7FFFFFFFu

struct outcome {
	size_t used;       /* bytes the follower took as the session's */
	struct nmf_flow f; /* the follower after the last byte */
};

struct schedule {
	const uint8_t *steps; /* NULL: feed everything at once */
	size_t nsteps;        /* 0 with steps != NULL: byte by byte */
	int skip;             /* move payload with nmf_flow_skip() */
};

/* What a plain reading of the bytes says the follower must end with. */
struct reference {
	size_t used;
	enum nmf_flow_state state;
	uint8_t bad;        /* NMF_FLOW_OPAQUE only; 0 otherwise */
	uint32_t remaining; /* NMF_FLOW_PAYLOAD only */
};

static int
same_flow(const struct nmf_flow *a, const struct nmf_flow *b)
{
	return a->state == b->state && a->want_ack == b->want_ack &&
	    a->bad == b->bad &&
	    a->size_bytes == b->size_bytes && a->size == b->size &&
	    a->remaining == b->remaining && a->singleton == b->singleton &&
	    a->chunks == b->chunks && a->want_end == b->want_end &&
	    a->may_end == b->may_end;
}

/* What holds after every call, whatever the call. */
static void
check_state(const struct nmf_flow *f)
{
	FUZZ_CHECK(f->state == NMF_FLOW_RECORD || f->state == NMF_FLOW_SIZE ||
	    f->state == NMF_FLOW_PAYLOAD || f->state == NMF_FLOW_ENDED ||
	    f->state == NMF_FLOW_OPAQUE);
	FUZZ_CHECK(f->remaining <= MBINT_MAX);
	FUZZ_CHECK(f->size_bytes <= NMF_MBINT_MAX_BYTES);
	/* a payload of nothing would have the caller wait for no bytes */
	FUZZ_CHECK(f->state != NMF_FLOW_PAYLOAD ||
	    (f->remaining > 0 && f->remaining <= f->size));
}

/* nmf_flow_feed() and the invariants of one call. */
static size_t
feed(struct nmf_flow *f, const uint8_t *buf, size_t len)
{
	struct nmf_flow before = *f;
	size_t got = nmf_flow_feed(f, buf, len);

	check_state(f);
	FUZZ_CHECK(got <= len);
	if (len == 0)
		FUZZ_CHECK(got == 0 && same_flow(f, &before));
	if (before.state == NMF_FLOW_ENDED)
		FUZZ_CHECK(got == 0 && same_flow(f, &before));
	if (before.state == NMF_FLOW_OPAQUE)
		FUZZ_CHECK(got == 0 && same_flow(f, &before));
	/* bytes past the End belong to whatever follows the session, and
	 * none from the byte that does not fit on is the session's */
	if (got < len)
		FUZZ_CHECK(f->state == NMF_FLOW_ENDED || f->state == NMF_FLOW_OPAQUE);
	/* the byte that did not fit is in this call, at got, and is the
	 * record named; or it is a fifth size byte above 0x07 (the four
	 * before it read), named as its Sized Envelope */
	if (before.state != NMF_FLOW_OPAQUE && f->state == NMF_FLOW_OPAQUE) {
		FUZZ_CHECK(got < len);
		FUZZ_CHECK(buf[got] == f->bad ||
		    (f->bad == NMF_REC_SIZED_ENVELOPE &&
		    f->size_bytes == NMF_MBINT_MAX_BYTES - 1 &&
		    buf[got] > 0x07));
	}
	if (before.state != NMF_FLOW_ENDED && f->state == NMF_FLOW_ENDED)
		FUZZ_CHECK(got > 0 && buf[got - 1] == NMF_REC_END);
	return got;
}

/* nmf_flow_skip() as the caller may use it, and what it must do. */
static void
skip(struct nmf_flow *f, size_t n)
{
	struct nmf_flow before = *f;

	FUZZ_CHECK(f->state == NMF_FLOW_PAYLOAD && n <= f->remaining);
	nmf_flow_skip(f, n);
	check_state(f);
	FUZZ_CHECK(f->remaining == before.remaining - n);
	FUZZ_CHECK(f->state == (f->remaining == 0 ? NMF_FLOW_RECORD :
	    NMF_FLOW_PAYLOAD));
	FUZZ_CHECK(f->size == before.size && f->want_ack == before.want_ack);
}

/* How many bytes the next feed gets under the schedule, at most left. */
static size_t
next_chunk(const struct schedule *sched, size_t *k, size_t left,
    int *last_step_empty)
{
	size_t step;

	if (sched->steps == NULL)
		return left;
	if (sched->nsteps == 0)
		return 1;
	step = sched->steps[(*k)++ % sched->nsteps];
	/* one empty call in a row tests idempotence; more would loop */
	if (step == 0 && *last_step_empty)
		step = 1;
	*last_step_empty = step == 0;
	return step < left ? step : left;
}

static void
run(const uint8_t *buf, size_t len, enum nmf_flow_dir dir,
    const struct schedule *sched, struct outcome *out)
{
	struct nmf_flow f;
	size_t at = 0, used = 0, k = 0;
	int last_step_empty = 0;

	nmf_flow_init(&f, dir);
	check_state(&f);
	FUZZ_CHECK(f.state == NMF_FLOW_RECORD);
	/* at: bytes handed over so far, fed or skipped */
	while (at < len) {
		size_t n;

		if (sched->skip && f.state == NMF_FLOW_PAYLOAD) {
			size_t want = sched->nsteps == 0 ? len - at :
			    sched->steps[k++ % sched->nsteps];

			if (want > f.remaining)
				want = f.remaining;
			if (want > len - at)
				want = len - at;
			skip(&f, want);
			at += want;
			used += want;
			if (want > 0)
				continue;
			/* skipping nothing changed nothing: feed instead */
		}
		n = next_chunk(sched, &k, len - at, &last_step_empty);
		used += feed(&f, buf + at, n);
		at += n;
	}
	/* after the last byte, an ended or opaque follower still holds */
	if (f.state == NMF_FLOW_ENDED || f.state == NMF_FLOW_OPAQUE)
		(void)feed(&f, buf, len);
	(void)feed(&f, buf + len, 0);
	out->used = used;
	out->f = f;
}

/*
 * Read the stream again, without the follower, straight from [MC-NMF]: the
 * down direction opens with the Preamble Ack; then Sized Envelopes (06, a
 * size of at most 5 bytes and at most 2^31-1, the payload) until an End
 * (07).  Anything else is a session the follower gives up on, at the byte
 * that does not fit, which is not the session's: a first byte down other
 * than 0B, a record other than 06 or 07 (bad is that byte), or the fifth
 * size byte that asks for a sixth or goes past 2^31-1 (bad is 06).
 */
static void
read_reference(const uint8_t *buf, size_t len, enum nmf_flow_dir dir,
    struct reference *r)
{
	size_t at = 0;

	r->used = len;
	r->state = NMF_FLOW_RECORD;
	r->bad = 0;
	r->remaining = 0;
	if (dir == NMF_FLOW_DOWN && len > 0) {
		if (buf[0] != NMF_REC_PREAMBLE_ACK) {
			r->state = NMF_FLOW_OPAQUE;
			r->used = 0;
			r->bad = buf[0];
			return;
		}
		at = 1;
	}
	while (at < len) {
		uint64_t size = 0;
		size_t nbytes = 0;
		int more = 1;

		if (buf[at] == NMF_REC_END) {
			r->used = at + 1;
			r->state = NMF_FLOW_ENDED;
			return;
		}
		if (buf[at] != NMF_REC_SIZED_ENVELOPE) {
			r->state = NMF_FLOW_OPAQUE;
			r->used = at;
			r->bad = buf[at];
			return;
		}
		at++;
		while (more && nbytes < NMF_MBINT_MAX_BYTES && at < len) {
			size |= (uint64_t)(buf[at] & 0x7F) << (7 * nbytes);
			more = (buf[at] & 0x80) != 0;
			nbytes++;
			at++;
		}
		if (nbytes == NMF_MBINT_MAX_BYTES && (more || size > MBINT_MAX)) {
			/* given up at the fifth size byte, which is not taken */
			r->state = NMF_FLOW_OPAQUE;
			r->used = at - 1;
			r->bad = NMF_REC_SIZED_ENVELOPE;
			return;
		}
		if (more) {
			r->state = NMF_FLOW_SIZE;
			return;
		}
		if (size > len - at) {
			r->state = NMF_FLOW_PAYLOAD;
			r->remaining = (uint32_t)(size - (len - at));
			return;
		}
		at += (size_t)size;
	}
}

static void
check_reference(const struct reference *r, const struct outcome *o)
{
	FUZZ_CHECK(o->used == r->used);
	FUZZ_CHECK(o->f.state == r->state);
	/* and bad stays 0 until the follower gives up */
	FUZZ_CHECK(o->f.bad == r->bad);
	if (r->state == NMF_FLOW_PAYLOAD)
		FUZZ_CHECK(o->f.remaining == r->remaining);
}

static void
check_same(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->used == b->used);
	FUZZ_CHECK(same_flow(&a->f, &b->f));
}

/*
 * Fixed checks, run once: the largest size is followed and skipped in one
 * call; one past it and a sixth size byte are given up on at the fifth
 * size byte, which is not taken; a stray record is not taken either, nor
 * anything once the follower has given up.
 */
static void
self_test(void)
{
	static const uint8_t largest[] = { 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x07 };
	static const uint8_t too_big[] = { 0x06, 0x80, 0x80, 0x80, 0x80, 0x08 };
	static const uint8_t six[] = { 0x06, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
	static const uint8_t end[] = { 0x07, 0x07, 0x06 };
	static const uint8_t fault[] = { 0x06, 0x00, 0x08, 0x01, 0x61 };
	struct nmf_flow f;

	nmf_flow_init(&f, NMF_FLOW_UP);
	FUZZ_CHECK(feed(&f, largest, sizeof(largest)) == sizeof(largest));
	FUZZ_CHECK(f.state == NMF_FLOW_PAYLOAD && f.remaining == MBINT_MAX);
	skip(&f, MBINT_MAX - 1);
	/* the last payload byte is an End byte, and is payload */
	FUZZ_CHECK(feed(&f, end, sizeof(end)) == 2);
	FUZZ_CHECK(f.state == NMF_FLOW_ENDED);

	nmf_flow_init(&f, NMF_FLOW_UP);
	FUZZ_CHECK(feed(&f, largest, sizeof(largest)) == sizeof(largest));
	skip(&f, MBINT_MAX);
	FUZZ_CHECK(f.state == NMF_FLOW_RECORD);

	nmf_flow_init(&f, NMF_FLOW_UP);
	FUZZ_CHECK(feed(&f, too_big, sizeof(too_big)) == 5);
	FUZZ_CHECK(f.state == NMF_FLOW_OPAQUE && f.bad == NMF_REC_SIZED_ENVELOPE);
	FUZZ_CHECK(feed(&f, end, sizeof(end)) == 0);
	FUZZ_CHECK(f.state == NMF_FLOW_OPAQUE && f.bad == NMF_REC_SIZED_ENVELOPE);
	nmf_flow_init(&f, NMF_FLOW_UP);
	FUZZ_CHECK(feed(&f, six, sizeof(six)) == 5);
	FUZZ_CHECK(f.state == NMF_FLOW_OPAQUE && f.bad == NMF_REC_SIZED_ENVELOPE);
	/* down, a Sized Envelope where the Ack was due */
	nmf_flow_init(&f, NMF_FLOW_DOWN);
	FUZZ_CHECK(feed(&f, six, sizeof(six)) == 0);
	FUZZ_CHECK(f.state == NMF_FLOW_OPAQUE && f.bad == NMF_REC_SIZED_ENVELOPE);
	/* up, a Fault after an empty envelope: the envelope only is taken */
	nmf_flow_init(&f, NMF_FLOW_UP);
	FUZZ_CHECK(feed(&f, fault, sizeof(fault)) == 2);
	FUZZ_CHECK(f.state == NMF_FLOW_OPAQUE && f.bad == NMF_REC_FAULT);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int tested;
	struct outcome whole, bytewise, chunked, skipped;
	struct schedule all = { NULL, 0, 0 }, one = { data, 0, 0 };
	struct schedule split = { data + 1, 0, 0 }, splice = { data + 1, 0, 1 };
	struct reference ref;
	enum nmf_flow_dir dir;
	const uint8_t *buf;
	size_t nsplit, len;

	if (!tested) {
		self_test();
		tested = 1;
	}
	if (size == 0)
		goto out;
	nsplit = data[0] & CONTROL_NSPLIT;
	dir = (data[0] & CONTROL_DOWN) ? NMF_FLOW_DOWN : NMF_FLOW_UP;
	if (size < 1 + nsplit)
		goto out;
	buf = data + 1 + nsplit;
	len = size - 1 - nsplit;

	run(buf, len, dir, &all, &whole);
	read_reference(buf, len, dir, &ref);
	check_reference(&ref, &whole);

	run(buf, len, dir, &one, &bytewise);
	check_same(&bytewise, &whole);

	if (nsplit > 0) {
		split.nsteps = nsplit;
		run(buf, len, dir, &split, &chunked);
		check_same(&chunked, &whole);
	}

	/* without split bytes: byte by byte, each payload skipped at once */
	splice.nsteps = nsplit;
	run(buf, len, dir, &splice, &skipped);
	check_same(&skipped, &whole);
out:
	return 0;
}
