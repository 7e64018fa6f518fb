/*
 * check_handoff.c - unit tests for the main thread's side of a handoff,
 * over socket pairs: the registrant's end of a SOCK_SEQPACKET pair, and a
 * stream pair standing for the client's connection.  The HANDOFF record
 * byte for byte with its descriptor; TAKEN closes nettcpd's copy and
 * nothing else; every way of not being taken (handoff_timeout,
 * handoff_max_pending, a full queue, a registration or a control
 * connection gone) gives the client the EndpointUnavailable fault and a
 * FIN, and each is counted by its result.  (Each test runs in a process
 * of its own: the hub is the process's.)
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "handoff.h"
#include "nmf.h"
#include "stats.h"

/* What the tests share: the loop, a registrant and its registration. */
struct rig {
	struct ev_loop *loop;
	int ctl[2];              /* [0] nettcpd's end, [1] the registrant's */
	struct handoff_peer *peer;
	struct handoff_sink *sink;
	struct sockaddr_in client;
};

static void
rig_up(struct rig *r, const char *route)
{
	r->loop = ev_loop_new(EVFLAG_AUTO);
	ck_assert_ptr_nonnull(r->loop);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, r->ctl), 0);
	handoff_init(r->loop);
	r->peer = handoff_peer_new(r->ctl[0]);
	ck_assert_ptr_nonnull(r->peer);
	r->sink = handoff_sink_new(r->peer, 7, route);
	ck_assert_ptr_nonnull(r->sink);
	memset(&r->client, 0, sizeof(r->client));
	r->client.sin_family = AF_INET;
	r->client.sin_addr.s_addr = htonl(0x7f000001);
	r->client.sin_port = htons(40000);
}

/* A client connection: [0] the socket nettcpd hands off, [1] the client. */
static void
client_pair(int sp[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
}

/* A worker submits sp[0] (as a duplicate, which the hub owns) and closes
 * its own, as preamble_handoff does. */
static void
submit(struct rig *r, int sp[2], const void *bytes, size_t len)
{
	int fd = fcntl(sp[0], F_DUPFD_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(handoff_submit(r->sink, fd, bytes, len,
	    (const struct sockaddr *)&r->client), 0);
	close(sp[0]);
	sp[0] = -1;
}

/* Run the loop until nothing is left to do now. */
static void
turn(struct rig *r)
{
	for (int i = 0; i < 4; i++)
		ev_run(r->loop, EVRUN_NOWAIT);
}

/* The registrant reads one HANDOFF: its line into line, its bytes into
 * bytes (*len), its descriptor returned. */
static int
recv_handoff(struct rig *r, char *line, size_t linecap, uint8_t *bytes,
    size_t *len)
{
	char buf[8192];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = c.b, .msg_controllen = sizeof(c.b) };
	ssize_t n = recvmsg(r->ctl[1], &m, MSG_DONTWAIT);
	char *nl;
	int fd;

	ck_assert_int_gt(n, 0);
	ck_assert(!(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)));
	ck_assert_ptr_nonnull(CMSG_FIRSTHDR(&m));
	ck_assert_int_eq(CMSG_FIRSTHDR(&m)->cmsg_type, SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fd));
	nl = memchr(buf, '\n', (size_t)n);
	ck_assert_ptr_nonnull(nl);
	ck_assert_uint_lt((size_t)(nl - buf), linecap);
	memcpy(line, buf, (size_t)(nl - buf));
	line[nl - buf] = '\0';
	*len = (size_t)n - (size_t)(nl + 1 - buf);
	memcpy(bytes, nl + 1, *len);
	return fd;
}

static uint64_t
counted(const char *route, enum handoff_result res)
{
	const struct route_stats *rs =
	    route_stats_peek(handoff_stats(), stats_route_slot(route));

	return rs != NULL ? stat_read(&rs->handoffs[res]) : 0;
}

/* The client reads the EndpointUnavailable fault, then the end of the
 * stream (the loop runs meanwhile: the hub drains). */
static void
client_gets_fault(struct rig *r, int client)
{
	size_t flen;
	const uint8_t *fault = nmf_fault_record(NMF_FAULT_ENDPOINT_UNAVAILABLE,
	    &flen);
	uint8_t buf[512];
	size_t got = 0;
	ssize_t n = 1;

	for (int i = 0; i < 200 && n != 0; i++) {
		struct pollfd p = { client, POLLIN, 0 };

		turn(r);
		if (poll(&p, 1, 10) <= 0)
			continue;
		n = recv(client, buf + got, sizeof(buf) - got, 0);
		ck_assert_int_ge(n, 0);
		got += (size_t)n;
	}
	ck_assert_int_eq(n, 0);
	ck_assert_uint_eq(got, flen);
	ck_assert(memcmp(buf, fault, flen) == 0);
}

START_TEST(test_handoff_taken)
{
	static const uint8_t pre[] = { 0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x03,
	    'a', '/', 'b', 0x03, 0x08, 0x0c, 0x06, 0xff, 0x00 };
	struct rig r;
	char line[128];
	uint8_t bytes[8192];
	size_t len;
	int sp[2], fd;
	char c;

	rig_up(&r, "reg");
	client_pair(sp);
	submit(&r, sp, pre, sizeof(pre));
	turn(&r);
	fd = recv_handoff(&r, line, sizeof(line), bytes, &len);
	ck_assert_str_eq(line, "HANDOFF 1 7 16");
	ck_assert_uint_eq(len, sizeof(pre));
	ck_assert(memcmp(bytes, pre, len) == 0);
	/* The descriptor is the client's connection. */
	ck_assert_int_eq(write(fd, "x", 1), 1);
	ck_assert_int_eq(read(sp[1], &c, 1), 1);
	ck_assert_int_eq(handoff_taken(r.peer, 1), 0);
	ck_assert_uint_eq(counted("reg", HANDOFF_TAKEN), 1);
	/* Taken once: a second TAKEN, or one for an id never sent, is
	 * ignored. */
	ck_assert_int_eq(handoff_taken(r.peer, 1), -1);
	ck_assert_int_eq(handoff_taken(r.peer, 99), -1);
	/* nettcpd's copy is closed: the registrant's close ends the
	 * connection for the client. */
	close(fd);
	ck_assert_int_eq(read(sp[1], &c, 1), 0);
	ck_assert_uint_eq(counted("reg", HANDOFF_TIMEOUT) +
	    counted("reg", HANDOFF_LOST) + counted("reg", HANDOFF_REFUSED), 0);
	handoff_sink_close(r.sink);
	handoff_peer_close(r.peer);
	handoff_shutdown();
}
END_TEST

START_TEST(test_ids_in_order)
{
	struct rig r;
	char line[128], want[64];
	uint8_t bytes[8192];
	size_t len;
	int sp[3][2];

	rig_up(&r, "reg");
	for (int i = 0; i < 3; i++) {
		client_pair(sp[i]);
		submit(&r, sp[i], "abc", 3);
	}
	turn(&r);
	for (int i = 0; i < 3; i++) {
		int fd = recv_handoff(&r, line, sizeof(line), bytes, &len);

		snprintf(want, sizeof(want), "HANDOFF %d 7 3", i + 1);
		ck_assert_str_eq(line, want);
		close(fd);
	}
	/* Out of order is fine. */
	ck_assert_int_eq(handoff_taken(r.peer, 3), 0);
	ck_assert_int_eq(handoff_taken(r.peer, 1), 0);
	ck_assert_int_eq(handoff_taken(r.peer, 2), 0);
	ck_assert_uint_eq(counted("reg", HANDOFF_TAKEN), 3);
	handoff_shutdown();
}
END_TEST

START_TEST(test_timeout)
{
	struct rig r;
	char line[128];
	uint8_t bytes[8192];
	size_t len;
	int sp[2], fd;

	rig_up(&r, "slow");
	handoff_set_limits(0.05, 128, 0);
	client_pair(sp);
	submit(&r, sp, "abc", 3);
	turn(&r);
	/* The registrant holds the socket and never says TAKEN. */
	fd = recv_handoff(&r, line, sizeof(line), bytes, &len);
	ev_run(r.loop, EVRUN_ONCE);   /* the timer */
	client_gets_fault(&r, sp[1]);
	ck_assert_uint_eq(counted("slow", HANDOFF_TIMEOUT), 1);
	/* A TAKEN after the deadline finds nothing. */
	ck_assert_int_eq(handoff_taken(r.peer, 1), -1);
	close(fd);
	handoff_shutdown();
}
END_TEST

START_TEST(test_max_pending)
{
	struct rig r;
	int sp[3][2];

	rig_up(&r, "capped");
	handoff_set_limits(60, 2, 0);
	for (int i = 0; i < 3; i++) {
		client_pair(sp[i]);
		submit(&r, sp[i], "abc", 3);
	}
	turn(&r);
	/* The third is refused at once; the first two wait. */
	client_gets_fault(&r, sp[2][1]);
	ck_assert_uint_eq(counted("capped", HANDOFF_REFUSED), 1);
	ck_assert_int_eq(handoff_taken(r.peer, 1), 0);
	ck_assert_int_eq(handoff_taken(r.peer, 2), 0);
	ck_assert_int_eq(handoff_taken(r.peer, 3), -1);
	handoff_shutdown();
}
END_TEST

/* A registrant that never reads: its queue fills, and each client past
 * that gets the fault at once, without the main loop waiting. */
START_TEST(test_queue_full)
{
	enum { N = 64 };
	static int sp[N][2];
	struct rig r;
	int refused, small = 4096;

	rig_up(&r, "deaf");
	/* A queue of a few records (the default holds a few hundred). */
	ck_assert_int_eq(setsockopt(r.ctl[0], SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof(small)), 0);
	handoff_set_limits(60, 100000, 2);
	for (int i = 0; i < N; i++) {
		client_pair(sp[i]);
		submit(&r, sp[i], "abc", 3);
	}
	turn(&r);
	refused = (int)counted("deaf", HANDOFF_REFUSED);
	ck_assert_int_gt(refused, 0);
	ck_assert_int_lt(refused, N);
	client_gets_fault(&r, sp[N - 1][1]);
	handoff_shutdown();
}
END_TEST

/* The control connection closes with handoffs not taken: each client gets
 * the fault; a sink closed before is refused what a worker still sends. */
START_TEST(test_peer_gone)
{
	struct rig r;
	int sp[3][2];

	rig_up(&r, "gone");
	for (int i = 0; i < 2; i++) {
		client_pair(sp[i]);
		submit(&r, sp[i], "abc", 3);
	}
	turn(&r);
	handoff_sink_ref(r.sink);              /* a route still holds it */
	handoff_sink_close(r.sink);
	client_pair(sp[2]);
	submit(&r, sp[2], "abc", 3);
	turn(&r);
	client_gets_fault(&r, sp[2][1]);
	ck_assert_uint_eq(counted("gone", HANDOFF_LOST), 1);
	/* The two sent still wait for their TAKEN, until the connection
	 * goes. */
	handoff_peer_close(r.peer);
	client_gets_fault(&r, sp[0][1]);
	client_gets_fault(&r, sp[1][1]);
	ck_assert_uint_eq(counted("gone", HANDOFF_LOST), 3);
	handoff_sink_unref(r.sink);
	handoff_shutdown();
}
END_TEST

/* What handoff_each_pending() lists. */
static struct { int fd; uint64_t id, reg; double left; } seen[4];
static int n;

static void
each(void *arg, int f, uint64_t id, uint64_t reg, double left)
{
	(void)arg;
	ck_assert_int_lt(n, 4);
	seen[n].fd = f;
	seen[n].id = id;
	seen[n].reg = reg;
	seen[n++].left = left;
}

/* A binary upgrade: the old process's pending handoffs and ids go to the
 * new one, which honours their TAKEN and their deadline; the old one
 * closes its copies without a word to the client, and what it still
 * hands off on the connection it forgets once sent. */
START_TEST(test_upgrade_hands_over)
{
	struct rig r;
	char line[128];
	uint8_t bytes[8192];
	size_t len;
	int sp[3][2], fd[3];
	char c;

	rig_up(&r, "up");
	handoff_set_limits(30, 128, 0);
	for (int i = 0; i < 2; i++) {
		client_pair(sp[i]);
		submit(&r, sp[i], "abc", 3);
	}
	turn(&r);
	for (int i = 0; i < 2; i++)
		fd[i] = recv_handoff(&r, line, sizeof(line), bytes, &len);
	handoff_each_pending(r.peer, each, NULL);
	ck_assert_int_eq(n, 2);
	ck_assert(seen[0].id == 1 && seen[1].id == 2 && seen[0].reg == 7);
	ck_assert(seen[0].left > 29 && seen[0].left <= 30);
	ck_assert_uint_eq(handoff_next_id(), 3);
	/* What exec gives the new process: its own copy of each socket. */
	for (int i = 0; i < 2; i++)
		seen[i].fd = dup(seen[i].fd);

	handoff_peer_handed_over(r.peer);
	/* The old copies are closed and the clients told nothing: the
	 * registrant's copy and the new process's hold them. */
	ck_assert_int_eq(write(fd[0], "y", 1), 1);
	ck_assert_int_eq(read(sp[0][1], &c, 1), 1);
	ck_assert_int_eq(c, 'y');
	ck_assert_int_eq(handoff_taken(r.peer, 1), -1);
	/* A client this process still hands off is sent and forgotten. */
	client_pair(sp[2]);
	submit(&r, sp[2], "abc", 3);
	turn(&r);
	fd[2] = recv_handoff(&r, line, sizeof(line), bytes, &len);
	ck_assert_str_eq(line, "HANDOFF 3 7 3");
	ck_assert_int_eq(handoff_taken(r.peer, 3), -1);
	ck_assert_uint_eq(counted("up", HANDOFF_TAKEN), 1);

	/* The new process (this one again, for the test): the two adopted,
	 * one taken, one left to time out. */
	handoff_set_next_id(handoff_next_id());
	handoff_adopt(r.peer, r.sink, seen[0].fd, seen[0].id, 30);
	handoff_adopt(r.peer, r.sink, seen[1].fd, seen[1].id, 0.05);
	ck_assert_int_eq(handoff_taken(r.peer, 1), 0);
	close(fd[1]);
	ev_run(r.loop, EVRUN_ONCE);   /* the timer of the second */
	client_gets_fault(&r, sp[1][1]);
	ck_assert_uint_eq(counted("up", HANDOFF_TIMEOUT), 1);
	close(fd[0]);
	close(fd[2]);
	handoff_shutdown();
}
END_TEST

static Suite *
handoff_suite(void)
{
	Suite *s = suite_create("handoff");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_handoff_taken);
	tcase_add_test(tc, test_ids_in_order);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_max_pending);
	tcase_add_test(tc, test_queue_full);
	tcase_add_test(tc, test_peer_gone);
	tcase_add_test(tc, test_upgrade_hands_over);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(handoff_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
