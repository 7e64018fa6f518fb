/*
 * loadgen.c - nmf-loadgen, the benchmark's net.tcp load generator.
 *
 * Speaks the client side of [MC-NMF] duplex sessions to one address on
 * loopback (nmf-service directly, or a proxy in front of it) and measures
 * one scenario per run:
 *
 *   cps   -c clients, each in a loop: connect, preamble, wait 0B, one
 *         request/reply (06), End (07), wait End and FIN, close;
 *   rr    -c long-lived connections, each with one request in flight;
 *   up    -c connections sending -e byte envelopes as fast as they can;
 *   down  -c connections receiving -e byte envelopes as fast as they can;
 *   idle  -n connections opened (-c at a time) up to their Preamble Ack,
 *         then held until standard input ends (or -d seconds), then reset.
 *
 * One thread and one level-triggered epoll loop.  Every phase has a
 * deadline; a run never lasts longer than its setup allowance plus -w, -d
 * and a drain allowance.  The last line printed is "result key=value ...".
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "wire.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; glibc names it under _GNU_SOURCE */
#endif

#define READS_PER_WAKEUP 16
#define WRITES_PER_WAKEUP 16
#define UPLOAD_IOV 16
#define SCRATCH_SIZE (256u * 1024u)
#define DRAIN_SECONDS 10.0      /* after the measured phase, to close cleanly */
#define SETUP_SECONDS 30.0      /* to open every connection (idle: plus n/500) */
#define MAX_ERRORS 1000         /* give up after this many failures */
#define MAX_SOURCES 64

/* Latency histogram: 1 us buckets up to HIST_LINEAR us, then 64 buckets
 * per power of two (1.6 % resolution) up to 2^36 us. */
#define HIST_LINEAR 4096u
#define HIST_SUB 64u
#define HIST_BUCKETS (HIST_LINEAR + (36u - 12u) * HIST_SUB)

enum mode { MODE_CPS, MODE_RR, MODE_UP, MODE_DOWN, MODE_IDLE };

enum lstate {
	LS_FREE = 0,
	LS_CONNECTING, /* connect() in flight */
	LS_ACK,        /* preamble sent: waiting for Preamble Ack */
	LS_READY,      /* acked, waiting for the measured phase (rr, up, down, idle) */
	LS_REPLY,      /* request sent: waiting for the reply envelope */
	LS_UPLOAD,     /* sending envelopes */
	LS_DOWNLOAD,   /* receiving envelopes */
	LS_END,        /* End sent (or queued): waiting for the service's End */
	LS_EOF,        /* End received: waiting for FIN */
};

struct lconn {
	int fd;
	enum lstate state;
	uint32_t events;
	uint32_t route;
	struct wire_reader rd;
	const uint8_t *out;     /* the one write in flight */
	size_t out_len, out_off;
	uint64_t t0;            /* ns: connection start (cps), request sent (rr) */
	unsigned end_sent : 1;
};

struct hist {
	uint64_t n;
	double sum_us;
	uint64_t b[HIST_BUCKETS];
};

/* Options. */
static enum mode mode = MODE_CPS;
static struct sockaddr_in target;
static unsigned conc = 64, idle_n = 9000, nroutes = 8, nsources = 1;
static double duration = 5.0, warmup = 1.0;
static uint32_t req_size = 256, reply_size = 256, env_size = 65536;
static const char *via_host = "bench.local";

/* State. */
static int epfd = -1;
static struct lconn *conns;
static size_t nconns;           /* entries in conns[] in use (idle grows it) */
static uint8_t **preambles;
static size_t *preamble_lens;
static uint8_t *request, *stream_request, *upload_env;
static size_t request_len, stream_request_len, upload_env_len;
static uint8_t scratch[SCRATCH_SIZE];
static const uint8_t end_byte = WIRE_REC_END;
static uint32_t next_route;

static int running;             /* the measured phase has started */
static int finishing;           /* its time is up */
static uint64_t t_start, t_window, t_end, t_hard;
static unsigned nready, nopen, nopening;
static uint64_t completed, bytes, attempts;
static uint64_t last_close_ns;
static unsigned long errors;
static char first_error[160];
static struct hist hist;

static void __attribute__((format(printf, 2, 3)))
fail(struct lconn *c, const char *fmt, ...)
{
	va_list ap;

	(void)c;
	if (errors++ == 0) {
		va_start(ap, fmt);
		vsnprintf(first_error, sizeof(first_error), fmt, ap);
		va_end(ap);
	}
}

static unsigned
hist_index(uint64_t us)
{
	unsigned msb;

	if (us < HIST_LINEAR)
		return (unsigned)us;
	msb = 63u - (unsigned)__builtin_clzll(us);
	if (msb >= 36)
		return HIST_BUCKETS - 1;
	return HIST_LINEAR + (msb - 12u) * HIST_SUB +
	    (unsigned)((us >> (msb - 6u)) & (HIST_SUB - 1));
}

/* Middle of bucket i, microseconds. */
static double
hist_value(unsigned i)
{
	unsigned msb, sub;

	if (i < HIST_LINEAR)
		return i + 0.5;
	msb = (i - HIST_LINEAR) / HIST_SUB + 12u;
	sub = (i - HIST_LINEAR) % HIST_SUB;
	return (double)((uint64_t)(HIST_SUB + sub) << (msb - 6u)) +
	    (double)(1ull << (msb - 6u)) / 2;
}

static void
hist_add(uint64_t ns)
{
	uint64_t us = ns / 1000u;

	hist.b[hist_index(us)]++;
	hist.n++;
	hist.sum_us += (double)ns / 1000.;
}

static double
hist_quantile(double q)
{
	uint64_t rank, seen = 0;

	if (hist.n == 0)
		return 0.;
	rank = (uint64_t)(q * (double)hist.n);
	if (rank >= hist.n)
		rank = hist.n - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += hist.b[i];
		if (seen > rank)
			return hist_value(i);
	}
	return hist_value(HIST_BUCKETS - 1);
}

static void
set_events(struct lconn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

static void conn_open(struct lconn *c);

/* Close c; reset != 0 sends RST (idle teardown, failures). */
static void
conn_close(struct lconn *c, int reset)
{
	if (c->state == LS_FREE)
		return;
	if (reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
	if (c->state == LS_CONNECTING || c->state == LS_ACK)
		nopening--;
	c->state = LS_FREE;
	nopen--;
}

static void
conn_error(struct lconn *c, const char *what, int err)
{
	fail(c, "%s: %s", what, err ? strerror(err) : "protocol");
	conn_close(c, 1);
}

/*
 * Write what is queued.  Returns 1 when it is all out, 0 when the socket is
 * full (EPOLLOUT is then armed), -1 on error (c is closed).
 */
static int
conn_write(struct lconn *c)
{
	for (int i = 0; i < WRITES_PER_WAKEUP && c->out_off < c->out_len; i++) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		    MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_error(c, "send", errno);
			return -1;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off < c->out_len) {
		set_events(c, EPOLLIN | EPOLLOUT);
		return 0;
	}
	set_events(c, EPOLLIN);
	return 1;
}

static int
conn_send(struct lconn *c, const uint8_t *buf, size_t len)
{
	c->out = buf;
	c->out_len = len;
	c->out_off = 0;
	return conn_write(c);
}

static void
send_end(struct lconn *c)
{
	c->state = LS_END;
	c->end_sent = 1;
	(void)conn_send(c, &end_byte, 1);
}

/* Upload: stream envelopes; at the end of the phase, finish the envelope
 * under way and send End. */
static void
upload(struct lconn *c)
{
	for (int i = 0; i < WRITES_PER_WAKEUP; i++) {
		struct iovec iov[UPLOAD_IOV];
		struct msghdr msg;
		size_t niov = 0;
		ssize_t n;

		if (c->out_off == 0 && finishing) {
			send_end(c);
			return;
		}
		iov[niov].iov_base = upload_env + c->out_off;
		iov[niov++].iov_len = upload_env_len - c->out_off;
		while (!finishing && niov < UPLOAD_IOV) {
			iov[niov].iov_base = upload_env;
			iov[niov++].iov_len = upload_env_len;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = niov;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_error(c, "sendmsg", errno);
			return;
		}
		bytes += (uint64_t)n;
		c->out_off = (c->out_off + (size_t)n) % upload_env_len;
	}
	set_events(c, EPOLLIN | EPOLLOUT);
}

/* Start the measured work on an acked connection. */
static void
conn_go(struct lconn *c)
{
	switch (mode) {
	case MODE_CPS:
		c->state = LS_REPLY;
		(void)conn_send(c, request, request_len);
		break;
	case MODE_RR:
		c->state = LS_REPLY;
		c->t0 = wire_now_ns();
		(void)conn_send(c, request, request_len);
		break;
	case MODE_UP:
		c->state = LS_UPLOAD;
		c->out_off = 0;
		upload(c);
		break;
	case MODE_DOWN:
		c->state = LS_DOWNLOAD;
		(void)conn_send(c, stream_request, stream_request_len);
		break;
	case MODE_IDLE:
		break;
	}
}

static void
conn_open(struct lconn *c)
{
	int one = 1;
	int fd;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	attempts++;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail(c, "socket: %s", strerror(errno));
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (nsources > 1) {
		struct sockaddr_in src;

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(attempts % nsources));
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			fail(c, "bind: %s", strerror(errno));
			close(fd);
			return;
		}
	}
	c->fd = fd;
	c->route = next_route++ % nroutes;
	c->t0 = wire_now_ns();
	c->state = LS_CONNECTING;
	c->events = EPOLLOUT;
	nopen++;
	nopening++;
	{
		struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			conn_error(c, "epoll_ctl", errno);
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
	    errno != EINPROGRESS)
		conn_error(c, "connect", errno);
}

static void
on_connected(struct lconn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		conn_error(c, "connect", err);
		return;
	}
	c->state = LS_ACK;
	(void)conn_send(c, preambles[c->route], preamble_lens[c->route]);
}

/* The connection finished cleanly (End both ways, FIN). */
static void
on_done(struct lconn *c)
{
	uint64_t now = wire_now_ns();

	if (mode == MODE_CPS && now <= t_end) {
		completed++;
		hist_add(now - c->t0);
	}
	last_close_ns = now;
	conn_close(c, 0);      /* run_cps() opens the next one in this slot */
}

/* One complete record from the far side.  Returns -1 if c was closed. */
static int
on_record(struct lconn *c)
{
	uint64_t now;

	switch (c->rd.type) {
	case WIRE_REC_PREAMBLE_ACK:
		if (c->state != LS_ACK)
			break;
		nopening--;
		if (mode == MODE_CPS) {
			conn_go(c);
		} else {
			c->state = LS_READY;
			nready++;
			if (running)
				conn_go(c);
		}
		return c->state == LS_FREE ? -1 : 0;
	case WIRE_REC_SIZED_ENVELOPE:
		if (c->state == LS_DOWNLOAD)
			return 0;
		if (c->state != LS_REPLY)
			break;
		if (mode == MODE_CPS) {
			send_end(c);
			return c->state == LS_FREE ? -1 : 0;
		}
		now = wire_now_ns();
		if (c->t0 >= t_window && now <= t_end) {
			completed++;
			hist_add(now - c->t0);
		}
		if (finishing) {
			send_end(c);
		} else {
			c->t0 = now;
			(void)conn_send(c, request, request_len);
		}
		return c->state == LS_FREE ? -1 : 0;
	case WIRE_REC_END:
		if (c->state == LS_END || (c->state == LS_DOWNLOAD && c->end_sent)) {
			c->state = LS_EOF;
			last_close_ns = wire_now_ns();
			return 0;
		}
		break;
	case WIRE_REC_FAULT:
		conn_error(c, "framing fault from the far side", 0);
		return -1;
	default:
		break;
	}
	conn_error(c, "unexpected record", 0);
	return -1;
}

static void
on_readable(struct lconn *c)
{
	for (int i = 0; i < READS_PER_WAKEUP; i++) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
		size_t off = 0;

		if (n == 0) {
			if (c->state == LS_EOF)
				on_done(c);
			else
				conn_error(c, "early end of stream", ECONNRESET);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_error(c, "recv", errno);
			return;
		}
		if (c->state == LS_DOWNLOAD && running && wire_now_ns() <= t_end)
			bytes += (uint64_t)n;
		while (off < (size_t)n) {
			size_t used;
			int st = wire_read(&c->rd, scratch + off, (size_t)n - off, &used);

			off += used;
			if (st == WIRE_BAD) {
				conn_error(c, "malformed record", 0);
				return;
			}
			if (st == WIRE_RECORD && on_record(c) < 0)
				return;
		}
		if ((size_t)n < sizeof(scratch))
			return;
	}
}

static void
on_writable(struct lconn *c)
{
	switch (c->state) {
	case LS_CONNECTING:
		on_connected(c);
		break;
	case LS_UPLOAD:
		upload(c);
		break;
	default:
		if (conn_write(c) == 1 && c->state == LS_DOWNLOAD && finishing &&
		    !c->end_sent) {
			c->end_sent = 1;
			(void)conn_send(c, &end_byte, 1);
		}
		break;
	}
}

/* The measured phase begins: every acked connection starts its work. */
static void
phase_start(void)
{
	uint64_t now = wire_now_ns();

	running = 1;
	t_start = now;
	t_window = now + (uint64_t)((mode == MODE_RR ? warmup : 0.) * 1e9);
	t_end = t_window + (uint64_t)(duration * 1e9);
	t_hard = t_end + (uint64_t)(DRAIN_SECONDS * 1e9);
	for (size_t i = 0; i < nconns; i++)
		if (conns[i].state == LS_READY)
			conn_go(&conns[i]);
}

/* Time is up: rr and up stop at their next boundary by themselves; down
 * sends End now. */
static void
phase_finish(void)
{
	finishing = 1;
	if (mode != MODE_DOWN)
		return;
	for (size_t i = 0; i < nconns; i++) {
		struct lconn *c = &conns[i];

		if (c->state == LS_DOWNLOAD && !c->end_sent && c->out_off == c->out_len) {
			c->end_sent = 1;
			(void)conn_send(c, &end_byte, 1);
		}
	}
}

static void
dispatch(struct epoll_event *ev)
{
	struct lconn *c = ev->data.ptr;

	if (c->state == LS_FREE)
		return;
	if (c->state == LS_CONNECTING) {
		if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_connected(c);
		return;
	}
	if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		on_readable(c);
	if (c->state != LS_FREE && (ev->events & EPOLLOUT))
		on_writable(c);
}

static int
poll_once(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout_ms);

	if (n < 0) {
		if (errno == EINTR)
			return 0;
		perror("nmf-loadgen: epoll_wait");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL)
			return 1;       /* standard input: idle hold is over */
		dispatch(&evs[i]);
	}
	return 0;
}

static void
print_result(void)
{
	double secs = (double)(t_end - t_window) / 1e9;
	double rate = secs > 0 ? (double)completed / secs : 0.;
	double mbps = 0.;

	if (mode == MODE_UP && last_close_ns > t_start)
		mbps = (double)bytes / ((double)(last_close_ns - t_start) / 1e9) / 1e6;
	else if (mode == MODE_DOWN && secs > 0)
		mbps = (double)bytes / secs / 1e6;
	printf("result mode=%s conns=%u seconds=%.3f ok=%llu errors=%lu rate=%.1f "
	    "p50_us=%.1f p99_us=%.1f p999_us=%.1f mean_us=%.1f bytes=%llu mbps=%.1f "
	    "cpu=%.3f",
	    mode == MODE_CPS ? "cps" : mode == MODE_RR ? "rr" : mode == MODE_UP ? "up" :
	    mode == MODE_DOWN ? "down" : "idle", mode == MODE_IDLE ? nready : conc,
	    secs, (unsigned long long)completed, errors, rate,
	    hist_quantile(0.50), hist_quantile(0.99), hist_quantile(0.999),
	    hist.n ? hist.sum_us / (double)hist.n : 0.,
	    (unsigned long long)bytes, mbps, wire_cpu_seconds());
	if (errors)
		printf(" first_error=\"%s\"", first_error);
	printf("\n");
	fflush(stdout);
}

/* cps: slots reconnect until the time is up, then drain. */
static int
run_cps(void)
{
	nconns = conc;
	running = 1;
	t_start = t_window = wire_now_ns();
	t_end = t_start + (uint64_t)(duration * 1e9);
	t_hard = t_end + (uint64_t)(DRAIN_SECONDS * 1e9);
	for (;;) {
		uint64_t now = wire_now_ns();

		if (now >= t_end)
			finishing = 1;
		/* Refill the slots whose connection ended (or failed) here,
		 * never from inside a callback that still uses the slot. */
		for (size_t i = 0; i < nconns && !finishing && errors < MAX_ERRORS; i++)
			if (conns[i].state == LS_FREE)
				conn_open(&conns[i]);
		if (nopen == 0 || now >= t_hard || errors >= MAX_ERRORS)
			break;
		if (poll_once(10) < 0)
			return -1;
	}
	return 0;
}

/* rr, up, down: open every connection, then the measured phase, then drain. */
static int
run_sessions(void)
{
	uint64_t setup_end = wire_now_ns() + (uint64_t)(SETUP_SECONDS * 1e9);

	nconns = conc;
	for (size_t i = 0; i < nconns; i++)
		conn_open(&conns[i]);
	while (nready < conc && errors == 0 && wire_now_ns() < setup_end)
		if (poll_once(10) < 0)
			return -1;
	if (nready < conc) {
		fail(NULL, "only %u of %u connections acked in time", nready, conc);
		return -1;
	}
	phase_start();
	while (nopen > 0 && errors < MAX_ERRORS) {
		uint64_t now = wire_now_ns();

		if (now >= t_hard)
			break;
		if (now >= t_end && !finishing)
			phase_finish();
		if (poll_once(10) < 0)
			return -1;
	}
	return 0;
}

/* idle: open idle_n connections, conc at a time; hold them until standard
 * input ends or says anything (or duration runs out); reset them all. */
static int
run_idle(void)
{
	uint64_t setup_end = wire_now_ns() +
	    (uint64_t)((SETUP_SECONDS + idle_n / 500.) * 1e9);
	uint64_t hold_end, t0 = wire_now_ns();
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	char line[64];

	while (nready + errors < idle_n && wire_now_ns() < setup_end &&
	    errors < MAX_ERRORS) {
		while (nopening < conc && nconns < idle_n)
			conn_open(&conns[nconns++]);
		if (poll_once(10) < 0)
			return -1;
	}
	printf("ready n=%u errors=%lu setup_s=%.3f\n", nready, errors,
	    (double)(wire_now_ns() - t0) / 1e9);
	fflush(stdout);
	t_start = t_window = t_end = wire_now_ns();
	hold_end = t_start + (uint64_t)(duration * 1e9);
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0) {
		/* Not pollable (a file, /dev/null): hold for the duration. */
		while (wire_now_ns() < hold_end)
			if (poll_once(100) < 0)
				break;
	} else {
		while (wire_now_ns() < hold_end) {
			int st = poll_once(100);

			if (st != 0) {
				if (st > 0)
					(void)!read(STDIN_FILENO, line, sizeof(line));
				break;
			}
		}
	}
	for (size_t i = 0; i < nconns; i++)
		conn_close(&conns[i], 1);
	return 0;
}

static int
setup_buffers(void)
{
	char via[WIRE_VIA_MAX + 1];

	preambles = calloc(nroutes, sizeof(*preambles));
	preamble_lens = calloc(nroutes, sizeof(*preamble_lens));
	if (preambles == NULL || preamble_lens == NULL)
		return -1;
	for (uint32_t i = 0; i < nroutes; i++) {
		int n = snprintf(via, sizeof(via), "net.tcp://%s/svc%u", via_host, i);

		if (n < 0 || (size_t)n >= sizeof(via))
			return -1;
		if ((preambles[i] = malloc(WIRE_PREAMBLE_MAX)) == NULL)
			return -1;
		if ((preamble_lens[i] = wire_preamble(via, preambles[i])) == 0)
			return -1;
	}
	request = malloc((size_t)req_size + WIRE_ENVELOPE_HEAD_MAX);
	stream_request = malloc(WIRE_OP_HEAD + WIRE_ENVELOPE_HEAD_MAX);
	upload_env = malloc((size_t)env_size + WIRE_ENVELOPE_HEAD_MAX);
	if (request == NULL || stream_request == NULL || upload_env == NULL)
		return -1;
	request_len = wire_envelope(WIRE_OP_REPLY, reply_size, req_size, request);
	stream_request_len = wire_envelope(WIRE_OP_STREAM, env_size, WIRE_OP_HEAD,
	    stream_request);
	upload_env_len = wire_envelope(WIRE_OP_DATA, 0, env_size, upload_env);
	return 0;
}

static void
usage(FILE *out)
{
	fputs("usage: nmf-loadgen -a 127.0.0.1:PORT -m cps|rr|up|down|idle [options]\n"
	    "  -c N      concurrent clients (cps, rr), connections (up, down),\n"
	    "            connections opening at once (idle)          [64]\n"
	    "  -d SEC    measured time; idle: longest hold            [5]\n"
	    "  -w SEC    rr: warm-up before measuring                 [1]\n"
	    "  -n N      idle: connections to open                    [9000]\n"
	    "  -r N      routes: Vias net.tcp://HOST/svc0 .. svcN-1, in turn [8]\n"
	    "  -H HOST   host in the Via                              [bench.local]\n"
	    "  -q BYTES  request envelope payload (cps, rr)           [256]\n"
	    "  -p BYTES  reply envelope payload (cps, rr)             [256]\n"
	    "  -e BYTES  bulk envelope payload (up, down)             [65536]\n"
	    "  -s N      source addresses 127.0.0.1 .. 127.0.0.N      [1]\n"
	    "Only loopback addresses are accepted.\n", out);
}

static int
parse_args(int argc, char **argv)
{
	int opt, have_target = 0;

	while ((opt = getopt(argc, argv, "a:m:c:d:w:n:r:H:q:p:e:s:h")) != -1) {
		switch (opt) {
		case 'a':
			if (wire_parse_loopback(optarg, &target) < 0)
				return -1;
			have_target = 1;
			break;
		case 'm':
			if (strcmp(optarg, "cps") == 0)
				mode = MODE_CPS;
			else if (strcmp(optarg, "rr") == 0)
				mode = MODE_RR;
			else if (strcmp(optarg, "up") == 0)
				mode = MODE_UP;
			else if (strcmp(optarg, "down") == 0)
				mode = MODE_DOWN;
			else if (strcmp(optarg, "idle") == 0)
				mode = MODE_IDLE;
			else
				return -1;
			break;
		case 'c': conc = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'n': idle_n = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': nroutes = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'H': via_host = optarg; break;
		case 'q': req_size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': reply_size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'e': env_size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': nsources = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (!have_target || optind != argc || conc == 0 || conc > 100000 ||
	    duration <= 0 || duration > 3600 || warmup < 0 || warmup > 600 ||
	    idle_n == 0 || idle_n > 1000000 || nroutes == 0 || nroutes > 1000000 ||
	    nsources == 0 || nsources > MAX_SOURCES ||
	    req_size < WIRE_OP_HEAD || req_size > WIRE_BODY_MAX ||
	    reply_size < WIRE_OP_HEAD || reply_size > WIRE_BODY_MAX ||
	    env_size < WIRE_OP_HEAD || env_size > WIRE_BODY_MAX)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	size_t slots;
	long want;
	int rc;

	if (parse_args(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	slots = mode == MODE_IDLE ? idle_n : conc;
	want = (long)slots + 64;
	if (wire_raise_nofile(want) < want) {
		fprintf(stderr, "nmf-loadgen: cannot raise the open-file limit to %ld\n", want);
		return 1;
	}
	if ((conns = calloc(slots, sizeof(*conns))) == NULL || setup_buffers() < 0) {
		fputs("nmf-loadgen: out of memory or bad Via\n", stderr);
		return 1;
	}
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		perror("nmf-loadgen: epoll_create1");
		return 1;
	}
	if (mode == MODE_CPS)
		rc = run_cps();
	else if (mode == MODE_IDLE)
		rc = run_idle();
	else
		rc = run_sessions();
	for (size_t i = 0; i < nconns; i++) {
		if (conns[i].state != LS_FREE) {
			fail(&conns[i], "connection still open at the deadline");
			conn_close(&conns[i], 1);
		}
	}
	print_result();
	return rc < 0 || errors > 0 ? 1 : 0;
}
