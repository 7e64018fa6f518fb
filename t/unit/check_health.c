/*
 * check_health.c - unit tests for the health check's answer reader: the
 * ack and End, a Fault record and its name, and hostile answers (a size
 * past the limit or the five bytes of a size, a zero size, garbage, bytes
 * after the end).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "health.h"
#include "nmf.h"

/* Feed len bytes; returns the status of the last, and checks that every
 * byte before it asked for more (or was the ack). */
static int
feed(struct health_answer *a, const uint8_t *buf, size_t len)
{
	int st = HEALTH_MORE;

	for (size_t i = 0; i < len; i++) {
		ck_assert_msg(st == HEALTH_MORE || st == HEALTH_ACK,
		    "final status %d before byte %zu", st, i);
		st = health_answer_byte(a, buf[i]);
	}
	return st;
}

START_TEST(test_ack_then_end)
{
	struct health_answer a;

	health_answer_init(&a);
	ck_assert_int_eq(health_answer_byte(&a, NMF_REC_PREAMBLE_ACK), HEALTH_ACK);
	ck_assert_int_eq(health_answer_byte(&a, NMF_REC_END), HEALTH_END);
	/* Anything after the End is no answer a service gives. */
	ck_assert_int_eq(health_answer_byte(&a, NMF_REC_END), HEALTH_GARBAGE);

	health_answer_init(&a);
	ck_assert_int_eq(health_answer_byte(&a, NMF_REC_PREAMBLE_ACK), HEALTH_ACK);
	ck_assert_int_eq(health_answer_byte(&a, NMF_REC_SIZED_ENVELOPE),
	    HEALTH_GARBAGE);
}
END_TEST

START_TEST(test_fault_and_its_name)
{
	struct health_answer a;
	char name[HEALTH_FAULT_MAX * 4 + 8];
	size_t len;
	const uint8_t *rec = nmf_fault_record(NMF_FAULT_ENDPOINT_NOT_FOUND, &len);

	health_answer_init(&a);
	ck_assert_int_eq(feed(&a, rec, len), HEALTH_FAULT);
	ck_assert_str_eq(health_answer_fault(&a, name, sizeof(name)),
	    "EndpointNotFound");
	ck_assert_int_eq(health_answer_byte(&a, 0), HEALTH_GARBAGE);
}
END_TEST

START_TEST(test_fault_of_the_largest_size_escaped)
{
	struct health_answer a;
	char name[HEALTH_FAULT_MAX * 4 + 8];
	uint8_t rec[HEALTH_FAULT_MAX + 8];
	size_t n = 0;

	rec[n++] = NMF_REC_FAULT;
	n += nmf_mbint_encode(HEALTH_FAULT_MAX, rec + n);
	memset(rec + n, 'x', HEALTH_FAULT_MAX);
	rec[n] = '\n';          /* a forged log line stays on one */
	n += HEALTH_FAULT_MAX;
	health_answer_init(&a);
	ck_assert_int_eq(feed(&a, rec, n), HEALTH_FAULT);
	health_answer_fault(&a, name, sizeof(name));
	ck_assert_ptr_null(strchr(name, '\n'));
	ck_assert_msg(strncmp(name, "\\x0a", 4) == 0, "'%s'", name);
}
END_TEST

START_TEST(test_hostile_sizes)
{
	static const uint8_t five[] = { NMF_REC_FAULT, 0xff, 0xff, 0xff, 0xff, 0x80 };
	static const uint8_t zero[] = { NMF_REC_FAULT, 0x00 };
	uint8_t big[8];
	struct health_answer a;
	size_t n = 0;

	/* A size that never ends: refused at its fifth byte, not read on. */
	health_answer_init(&a);
	ck_assert_int_eq(feed(&a, five, sizeof(five)), HEALTH_GARBAGE);
	health_answer_init(&a);
	ck_assert_int_eq(feed(&a, zero, sizeof(zero)), HEALTH_GARBAGE);
	/* One byte past the limit, and the protocol's 2^31 - 1. */
	big[n++] = NMF_REC_FAULT;
	n += nmf_mbint_encode(HEALTH_FAULT_MAX + 1, big + n);
	health_answer_init(&a);
	ck_assert_int_eq(feed(&a, big, n), HEALTH_GARBAGE);
	n = 1;
	n += nmf_mbint_encode(0x7fffffffu, big + n);
	health_answer_init(&a);
	ck_assert_int_eq(feed(&a, big, n), HEALTH_GARBAGE);
	ck_assert_uint_eq(a.got, 0);
}
END_TEST

START_TEST(test_garbage_first)
{
	static const char http[] = "HTTP/1.1 400 Bad Request\r\n";
	struct health_answer a;

	health_answer_init(&a);
	ck_assert_int_eq(health_answer_byte(&a, (uint8_t)http[0]), HEALTH_GARBAGE);
	for (size_t i = 1; i < sizeof(http) - 1; i++)
		ck_assert_int_eq(health_answer_byte(&a, (uint8_t)http[i]),
		    HEALTH_GARBAGE);
	/* Every record type but the ack and a Fault is out of place first. */
	for (unsigned b = 0; b < 256; b++) {
		health_answer_init(&a);
		if (b == NMF_REC_PREAMBLE_ACK || b == NMF_REC_FAULT)
			continue;
		ck_assert_int_eq(health_answer_byte(&a, (uint8_t)b), HEALTH_GARBAGE);
	}
}
END_TEST

START_TEST(test_preamble_written)
{
	static const char via[] = "net.tcp://localhost/Calc";
	uint8_t out[NMF_PREAMBLE_MAX];
	struct nmf_parser p;
	struct nmf_record rec;
	size_t len = nmf_preamble_write(out, NMF_MODE_DUPLEX, via, strlen(via));
	int st, via_seen = 0;

	/* What the daemon's own parser reads as a whole preamble for via. */
	nmf_parser_init(&p);
	while ((st = nmf_parse(&p, out, len, &rec)) == NMF_RECORD) {
		if (rec.type == NMF_REC_VIA)
			via_seen = rec.str_len == strlen(via) &&
			    memcmp(out + rec.str_off, via, rec.str_len) == 0;
		if (rec.type == NMF_REC_PREAMBLE_END)
			break;
	}
	ck_assert_int_eq(st, NMF_RECORD);
	ck_assert_int_eq(rec.type, NMF_REC_PREAMBLE_END);
	ck_assert_uint_eq(p.pos, len);
	ck_assert(via_seen);
}
END_TEST

/* A member a check took down is held: clients' connects, good or bad,
 * change nothing until a check brings it up (nettcpd.ini(5)). */
START_TEST(test_checked_down_is_held)
{
	struct backend_list l;
	struct backend_health *h;
	char err[256];
	int seen = 0;

	ck_assert_int_eq(backend_list_parse("127.0.0.1:1, 127.0.0.1:2", &l, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(backend_bind(&l, "held"), 0);
	h = l.m[1].health;
	backend_mark(h, 0, "3 health checks in a row failed");
	ck_assert_uint_eq(atomic_load(&h->down), 1);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(backend_pick(&l, 0, INT64_MAX - 1), 0);
	backend_connected(&l, 1, 0.001);
	ck_assert_uint_eq(atomic_load(&h->down), 1);
	for (unsigned i = 0; i < 2 * l.fail_threshold; i++)
		backend_failed(&l, 1, 1000);
	ck_assert_int_eq(backend_pick(&l, 1, INT64_MAX - 1), 1);  /* the last */
	for (int i = 0; i < 8; i++)   /* fail_timeout over: still held */
		ck_assert_int_eq(backend_pick(&l, 0, 1000 + 60000), 0);
	backend_mark(h, 1, "2 health checks in a row passed");
	ck_assert_uint_eq(atomic_load(&h->down), 0);
	ck_assert_int_eq(backend_pick(&l, 1, 0), 1);
	/* Up for the checks, a member still goes down on passive failures. */
	for (unsigned i = 0; i < l.fail_threshold; i++)
		backend_failed(&l, 1, 1000);
	ck_assert_uint_eq(atomic_load(&h->down), 1);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(backend_pick(&l, 0, 1000 + 5000), 0);
	/* ... and is tried again after fail_timeout (10 s). */
	for (int i = 0; i < 8; i++)
		seen |= backend_pick(&l, 0, 1000 + 11000) == 1;
	ck_assert(seen);
	backend_list_free(&l);
	backend_registry_free();
}
END_TEST

static Suite *
health_suite(void)
{
	Suite *s = suite_create("health");
	TCase *tc = tcase_create("answer");

	tcase_add_test(tc, test_ack_then_end);
	tcase_add_test(tc, test_fault_and_its_name);
	tcase_add_test(tc, test_fault_of_the_largest_size_escaped);
	tcase_add_test(tc, test_hostile_sizes);
	tcase_add_test(tc, test_garbage_first);
	tcase_add_test(tc, test_preamble_written);
	tcase_add_test(tc, test_checked_down_is_held);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(health_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
