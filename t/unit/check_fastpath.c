/*
 * check_fastpath.c - the fast path's BPF verdict on real loopback TCP
 * sockets in the real kernel: what it sends to the peer and what it
 * hands to user space, segment by segment.
 *
 * A "client" writes to the proxy's accepted socket (in the fast path);
 * the proxy's connected "backend" socket (in the fast path too) is the
 * peer, and the "service" reads what the kernel sent it.  The isolation
 * rules: only segments of envelope bytes alone go to the peer; End,
 * another record or a bad size goes to user space with all that follows,
 * and the follower's state at its first byte; nothing is sent on while
 * bytes handed to user space are unread.
 *
 * With the privilege to load it the program must load (CI runs as root
 * on kernel 6.x); without (a user, fakeroot in a package build), or
 * built without libbpf, it must not, and say why.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "fastpath.h"
#include "nmf.h"
#include "tcp_pair.h"

#ifdef HAVE_BPF
/* One proxied connection: client -> proxy_c (fast path) ... proxy_b
 * (fast path) -> service. */
struct rig {
	struct fastpath *fp;
	int client, proxy_c, proxy_b, service;
	uint64_t kc, kb;
	uint64_t read;      /* bytes the proxy read from proxy_c */
};

static void
rig_open(struct rig *r)
{
	char why[256];
	int a[2], b[2];

	r->fp = fastpath_open(why, sizeof(why));
	ck_assert_msg(r->fp != NULL, "the fast path does not load: %s", why);
	tcp_pair(a, 0);
	tcp_pair(b, 0);
	r->client = a[0];
	r->proxy_c = a[1];
	r->proxy_b = b[0];
	r->service = b[1];
	r->read = 0;
	ck_assert_int_eq(fastpath_add(r->fp, r->proxy_c, &r->kc), 0);
	ck_assert_int_eq(fastpath_add(r->fp, r->proxy_b, &r->kb), 0);
}

static void
rig_close(struct rig *r)
{
	fastpath_forget(r->fp, r->kc);
	fastpath_forget(r->fp, r->kb);
	close(r->client);
	close(r->proxy_c);
	close(r->proxy_b);
	close(r->service);
	fastpath_close(r->fp);
}

static void
put(int fd, const void *buf, size_t len)
{
	ck_assert_int_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
	/* Each put its own segment: wait until it has left. */
	for (int i = 0; i < 2000; i++) {
		int outq = 0;

		(void)ioctl(fd, SIOCOUTQ, &outq);
		if (outq == 0)
			break;
		usleep(1000);
	}
	usleep(20000);
}

/* Read exactly len bytes from fd within 5 s, into buf. */
static void
get(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		ck_assert_msg(poll(&p, 1, 5000) == 1, "%zu of %zu bytes came", got, len);
		n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
}

static void
nothing_on(int fd)
{
	uint8_t b;

	ck_assert_int_eq(recv(fd, &b, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
}

static void
proxy_get(struct rig *r, uint8_t *buf, size_t len)
{
	get(r->proxy_c, buf, len);
	r->read += len;
}

static const uint8_t hello[] = { 0x06, 0x05, 'h', 'e', 'l', 'l', 'o' };

/* Armed, an envelope goes to the service; user space sees nothing. */
START_TEST(envelope_to_peer)
{
	struct rig r;
	struct fastpath_stat st;
	uint8_t buf[16];

	rig_open(&r);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
	put(r.client, hello, sizeof(hello));
	get(r.service, buf, sizeof(hello));
	ck_assert_mem_eq(buf, hello, sizeof(hello));
	nothing_on(r.proxy_c);
	ck_assert_int_eq(fastpath_stat(r.fp, r.kc, &st), 0);
	ck_assert_uint_eq(st.redirected, sizeof(hello));
	ck_assert_uint_eq(st.passed, 0);
	rig_close(&r);
}
END_TEST

/* Not armed: everything goes to user space. */
START_TEST(unarmed_to_user)
{
	struct rig r;
	uint8_t buf[16];

	rig_open(&r);
	put(r.client, hello, sizeof(hello));
	proxy_get(&r, buf, sizeof(hello));
	ck_assert_mem_eq(buf, hello, sizeof(hello));
	nothing_on(r.service);
	rig_close(&r);
}
END_TEST

/* Envelopes, End and the next preamble's first byte in one segment: all
 * of it to user space, none to the service, the follower at a boundary;
 * and nothing after it goes to the service until user space arms again. */
START_TEST(end_stops)
{
	static const uint8_t seg[] = { 0x06, 0x02, 'a', 'b', 0x06, 0x03, 'x',
	    'y', 'z', 0x07, 0x00 };
	struct rig r;
	struct fastpath_stat st;
	uint8_t buf[16];

	rig_open(&r);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
	put(r.client, seg, sizeof(seg));
	proxy_get(&r, buf, sizeof(seg));
	ck_assert_mem_eq(buf, seg, sizeof(seg));
	nothing_on(r.service);
	ck_assert_int_eq(fastpath_stat(r.fp, r.kc, &st), 0);
	ck_assert_uint_eq(st.stopped, 1);
	ck_assert_uint_eq(st.state, NMF_FLOW_RECORD);
	put(r.client, hello, sizeof(hello));
	proxy_get(&r, buf, sizeof(hello));
	nothing_on(r.service);
	rig_close(&r);
}
END_TEST

/* An envelope whose type, size and payload come in four segments goes
 * to the service whole. */
START_TEST(split_header)
{
	static const uint8_t head[] = { 0x06, 0x81, 0x01 };  /* 129 bytes */
	uint8_t payload[129], buf[3 + 129];
	struct rig r;

	memset(payload, 'Q', sizeof(payload));
	rig_open(&r);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
	put(r.client, head, 1);
	put(r.client, head + 1, 2);
	put(r.client, payload, 100);
	put(r.client, payload + 100, 29);
	get(r.service, buf, sizeof(buf));
	ck_assert_mem_eq(buf, head, 3);
	ck_assert_mem_eq(buf + 3, payload, sizeof(payload));
	nothing_on(r.proxy_c);
	rig_close(&r);
}
END_TEST

/* A size field that is no mbint (a 6th byte, or a 5th above 07) goes to
 * user space, which faults it as today. */
START_TEST(bad_size)
{
	static const uint8_t six[] = { 0x06, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t fifth[] = { 0x06, 0xff, 0xff, 0xff, 0xff, 0x08 };
	const uint8_t *bad[] = { six, fifth };
	struct rig r;
	uint8_t buf[8];

	for (int i = 0; i < 2; i++) {
		rig_open(&r);
		ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
		put(r.client, bad[i], 6);
		proxy_get(&r, buf, 6);
		ck_assert_mem_eq(buf, bad[i], 6);
		nothing_on(r.service);
		rig_close(&r);
	}
}
END_TEST

/* Stopped inside a payload: user space's follower goes on from the
 * kernel's state and finds the End where it is. */
START_TEST(stop_mid_payload)
{
	static const uint8_t first[] = { 0x06, 0x04, 'a', 'b' };
	static const uint8_t rest[] = { 'c', 'd', 0x07, 0x06 };
	struct rig r;
	struct fastpath_stat st;
	struct nmf_flow flow;
	uint8_t buf[8];

	rig_open(&r);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
	put(r.client, first, sizeof(first));
	get(r.service, buf, sizeof(first));
	put(r.client, rest, sizeof(rest));
	proxy_get(&r, buf, sizeof(rest));
	nothing_on(r.service);
	ck_assert_int_eq(fastpath_stat(r.fp, r.kc, &st), 0);
	ck_assert_uint_eq(st.stopped, 1);
	nmf_flow_init(&flow, NMF_FLOW_UP);
	fastpath_flow_resume(&st, &flow);
	ck_assert_int_eq(flow.state, NMF_FLOW_PAYLOAD);
	ck_assert_uint_eq(flow.remaining, 2);
	/* cd and End are the session's; the 06 after End is not. */
	ck_assert_uint_eq(nmf_flow_feed(&flow, buf, sizeof(rest)), 3);
	ck_assert_int_eq(flow.state, NMF_FLOW_ENDED);
	rig_close(&r);
}
END_TEST

/* Bytes handed to user space and not yet read hold the fast path back:
 * armed with fewer bytes read than the kernel handed over, the next
 * envelope must not overtake them. */
START_TEST(unread_holds_back)
{
	static const uint8_t end[] = { 0x07 };
	struct rig r;
	uint8_t buf[16];

	rig_open(&r);
	put(r.client, end, 1);                 /* handed over, not read */
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
	put(r.client, hello, sizeof(hello));
	proxy_get(&r, buf, 1 + sizeof(hello));
	ck_assert_uint_eq(buf[0], 0x07);
	ck_assert_mem_eq(buf + 1, hello, sizeof(hello));
	nothing_on(r.service);
	/* Read up and armed again: on it goes. */
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 2, NULL), 0);
	put(r.client, hello, sizeof(hello));
	get(r.service, buf, sizeof(hello));
	nothing_on(r.proxy_c);
	rig_close(&r);
}
END_TEST

/* Armed inside a payload, the kernel's follower starts there: the
 * payload's rest and the next envelope go to the service. */
START_TEST(armed_mid_payload)
{
	static const uint8_t seg[] = { 'c', 'd', 0x06, 0x01, 'x' };
	struct rig r;
	struct nmf_flow flow;
	uint8_t buf[8];

	rig_open(&r);
	nmf_flow_init(&flow, NMF_FLOW_UP);
	ck_assert_uint_eq(nmf_flow_feed(&flow, (const uint8_t *)"\x06\x04" "ab", 4), 4);
	ck_assert_int_eq(flow.state, NMF_FLOW_PAYLOAD);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, &flow), 0);
	put(r.client, seg, sizeof(seg));
	get(r.service, buf, sizeof(seg));
	ck_assert_mem_eq(buf, seg, sizeof(seg));
	nothing_on(r.proxy_c);
	rig_close(&r);
}
END_TEST

/* The service's FIN while armed reaches user space as the end of stream,
 * and the client's socket stays the proxy's to write to. */
START_TEST(fin_to_user)
{
	struct rig r;
	uint8_t buf[16];
	struct pollfd p;

	rig_open(&r);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kc, r.kb, r.read, 1, NULL), 0);
	ck_assert_int_eq(fastpath_arm(r.fp, r.kb, r.kc, 0, 1, NULL), 0);
	put(r.client, hello, sizeof(hello));
	get(r.service, buf, sizeof(hello));
	ck_assert_int_eq(shutdown(r.service, SHUT_WR), 0);
	p.fd = r.proxy_b;
	p.events = POLLIN;
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert_int_eq(recv(r.proxy_b, buf, sizeof(buf), MSG_DONTWAIT), 0);
	ck_assert_int_eq(send(r.proxy_c, hello, sizeof(hello), MSG_NOSIGNAL),
	    (ssize_t)sizeof(hello));
	get(r.client, buf, sizeof(hello));
	ck_assert_mem_eq(buf, hello, sizeof(hello));
	rig_close(&r);
}
END_TEST

#endif /* HAVE_BPF */

/* Without root, or built without libbpf, the program must not load, and
 * say why. */
START_TEST(unprivileged_says_why)
{
	char why[256] = "";

	ck_assert_ptr_null(fastpath_open(why, sizeof(why)));
	ck_assert_msg(why[0] != '\0', "no reason given");
}
END_TEST

#ifdef HAVE_BPF
/* CAP_SYS_ADMIN, or CAP_BPF with CAP_NET_ADMIN, in the effective set
 * (geteuid() says 0 under fakeroot too). */
static int
may_load_bpf(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	unsigned long long eff = 0;
	char line[256];

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return (eff >> 21 & 1) || ((eff >> 39 & 1) && (eff >> 12 & 1));
}
#endif

int
main(void)
{
	Suite *s = suite_create("fastpath");
	TCase *tc = tcase_create("verdict");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 30);
#ifdef HAVE_BPF
	if (may_load_bpf()) {
		tcase_add_test(tc, envelope_to_peer);
		tcase_add_test(tc, unarmed_to_user);
		tcase_add_test(tc, end_stops);
		tcase_add_test(tc, split_header);
		tcase_add_test(tc, bad_size);
		tcase_add_test(tc, stop_mid_payload);
		tcase_add_test(tc, unread_holds_back);
		tcase_add_test(tc, fin_to_user);
		tcase_add_test(tc, armed_mid_payload);
	} else {
		tcase_add_test(tc, unprivileged_says_why);
	}
#else
	tcase_add_test(tc, unprivileged_says_why);
#endif
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
