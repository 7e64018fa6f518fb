/*
 * check_pump.c - the one-way pump over real loopback TCP sockets.
 *
 * The pump's bytes must come out exactly as they went in, in order,
 * whichever store (copy buffer or pipe) holds them and however often a
 * write is cut short.  The destination here has a tiny send buffer and a
 * reader that takes a little at a time, so writes are partial all the time;
 * the source is fed a little at a time, so reads stop at every kind of
 * place.  Following a session, the pump must stop right after End and hold
 * what came after it.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nmf.h"
#include "pump.h"
#include "tcp_pair.h"

/* Sized Envelopes of the given sizes, then End, then tail bytes. */
static uint8_t *
stream_of(const size_t *sizes, size_t n, const char *tail, size_t *len,
    size_t *end_at)
{
	size_t total = 1 + strlen(tail), off = 0;
	uint8_t *s;

	for (size_t i = 0; i < n; i++)
		total += 1 + NMF_MBINT_MAX_BYTES + sizes[i];
	s = malloc(total);
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++) {
		s[off++] = NMF_REC_SIZED_ENVELOPE;
		off += nmf_mbint_encode((uint32_t)sizes[i], s + off);
		for (size_t j = 0; j < sizes[i]; j++)
			s[off++] = (uint8_t)(i * 31 + j * 7);
	}
	s[off++] = NMF_REC_END;
	*end_at = off;
	memcpy(s + off, tail, strlen(tail));
	*len = off + strlen(tail);
	return s;
}

struct run {
	enum forward_method method;
	unsigned pipe_size;
	int follow;     /* 1: follow the session; 2: follow, then stop */
	                /* following halfway, whatever is in flight */
};

/*
 * Pump stream from one socket pair to another, feeding the source and
 * draining the destination in small steps.  Returns what came out; *last
 * is the pump's last status.
 */
static uint8_t *
pump_through(const struct run *run, const uint8_t *stream, size_t len,
    size_t want_out, size_t *out_len, enum pump_status *last, struct pump *p)
{
	int src[2], dst[2], small = 4096;
	struct pipe_pool pool;
	struct nmf_flow flow;
	uint8_t *out = malloc(want_out + 1);
	size_t fed = 0, got = 0;
	unsigned idle = 0;

	ck_assert_ptr_nonnull(out);
	tcp_pair(src, 1);
	tcp_pair(dst, 1);
	/* The proxy's end of dst sends into a small buffer. */
	(void)setsockopt(dst[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	pipe_pool_init(&pool, run->pipe_size);
	pump_init(p);
	nmf_flow_init(&flow, NMF_FLOW_UP);
	*last = PUMP_WANT_READ;
	/* Give up after two seconds without progress. */
	while (idle < 20000 && *last != PUMP_ERROR && *last != PUMP_ENDED &&
	    *last != PUMP_DONE) {
		ssize_t n = 0, r;
		uint8_t sink[1500];

		if (fed < len) {
			size_t step = 1 + (fed * 7919) % 70000;

			n = send(src[0], stream + fed, step < len - fed ? step : len - fed,
			    MSG_NOSIGNAL);
			if (n > 0)
				fed += (size_t)n;
		}
		if (run->follow == 2 && fed >= len / 2) {
			/* as the connection does when it stops following */
			pump_unhold(p);
			nmf_flow_init(&flow, NMF_FLOW_UP);
			flow.state = NMF_FLOW_OPAQUE;
		}
		*last = pump_run(p, src[1], dst[0], run->method, &pool, 0,
		    run->follow && flow.state != NMF_FLOW_OPAQUE ? &flow : NULL);
		r = recv(dst[1], sink, sizeof(sink), 0);
		if (r > 0) {
			ck_assert_uint_le(got + (size_t)r, want_out);
			memcpy(out + got, sink, (size_t)r);
			got += (size_t)r;
		}
		if (n > 0 || r > 0) {
			idle = 0;
		} else {
			idle++;
			usleep(100);
		}
	}
	/* Whatever the pump wrote before it stopped is still to be read. */
	for (idle = 0; idle < 200 && got < want_out; idle++) {
		ssize_t r = recv(dst[1], out + got, want_out - got, 0);

		if (r > 0)
			got += (size_t)r;
		else
			usleep(1000);
	}
	*out_len = got;
	close(src[0]);
	close(src[1]);
	close(dst[0]);
	close(dst[1]);
	pipe_pool_drain(&pool);
	return out;
}

static const struct run runs[] = {
	{ FORWARD_SPLICE, 1024 * 1024, 1 },
	{ FORWARD_SPLICE, 4096, 1 },
	{ FORWARD_SPLICE, 0, 1 },
	{ FORWARD_COPY, 0, 1 },
	{ FORWARD_SPLICE, 1024 * 1024, 0 },
	{ FORWARD_COPY, 0, 0 },
	{ FORWARD_SPLICE, 1024 * 1024, 2 },
	{ FORWARD_SPLICE, 4096, 2 },
	{ FORWARD_COPY, 0, 2 },
};

/* Small records that leave a large payload half-read in the buffer, large
 * ones back to back, and sizes around PUMP_SPLICE_MIN. */
static const size_t sizes[] = {
	1, 200, 70000, 5000, 40000, 12000, 16384, 16383, 250000, 0, 17000,
	3, 65536, 65536, 65536, 100, 300000, 16385, 1, 1, 90000, 7,
};

START_TEST(test_pump_order_and_end)
{
	const struct run *run = &runs[_i];
	size_t len, end_at, out_len;
	uint8_t *stream = stream_of(sizes, sizeof(sizes) / sizeof(sizes[0]),
	    "\x00\x01\x00next", &len, &end_at);
	size_t want = run->follow == 1 ? end_at : len;
	enum pump_status last;
	struct pump p;
	uint8_t *out = pump_through(run, stream, len, want, &out_len, &last, &p);

	ck_assert_int_ne(last, PUMP_ERROR);
	ck_assert_uint_eq(out_len, want);
	ck_assert_mem_eq(out, stream, want);
	if (run->follow == 1) {
		/* stopped right after End, the next preamble's start held */
		ck_assert_int_eq(last, PUMP_ENDED);
		ck_assert_uint_eq(p.total, end_at);
		ck_assert_uint_eq(p.held, len - end_at);
		ck_assert_mem_eq(p.buf + p.buf_off, stream + end_at, len - end_at);
	}
	free(p.buf);
	free(out);
	free(stream);
}
END_TEST

static Suite *
pump_suite(void)
{
	Suite *s = suite_create("pump");
	TCase *tc = tcase_create("loopback");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_pump_order_and_end, 0,
	    (int)(sizeof(runs) / sizeof(runs[0])));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pump_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
