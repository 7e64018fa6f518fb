/*
 * loadgen.c - nmf-loadgen, the benchmark's net.tcp load generator.
 *
 * Speaks the client side of [MC-NMF] duplex sessions to one address on
 * loopback (nmf-service directly, or a proxy in front of it) and measures
 * one scenario per run:
 *
 *   cps   -c clients, each in a loop: connect, preamble, wait 0B, one
 *         request/reply (06), End (07), wait End, close;
 *   rr    -c long-lived connections, each with one request in flight;
 *   up    -c connections sending -e byte envelopes as fast as they can;
 *   down  -c connections receiving -e byte envelopes as fast as they can;
 *   idle  -n connections opened (-c at a time) up to their Preamble Ack,
 *         then held until standard input ends (or -d seconds), then reset.
 *
 * With -T CAFILE every connection asks for the in-band TLS upgrade, as a
 * WCF client with SecurityMode.Transport does: the clear-text preamble ends
 * with the Upgrade Request for application/ssl-tls instead of Preamble End;
 * after the Upgrade Response (0A) the client runs a TLS 1.3 handshake
 * (OpenSSL, non-blocking, in the same loop; a fresh session each time,
 * or with -R a resumption of the newest session ticket the server sent
 * to that client slot, as a client that redials resumes its own session),
 * verifying the server's chain against CAFILE alone and its
 * name against -N; then Preamble End, the Ack and everything after it go
 * inside TLS.
 *
 * Every session ends as a WCF client's does when it does not pool the
 * connection: End, wait for the far side's End, close the socket.  It does
 * not wait for a FIN first: a WCF server (and nmf-service) keeps the
 * connection after the End exchange for another session, so none would
 * come; a FIN before the End is an error.  With TLS the client then sends
 * close_notify and closes at the server's (or at its FIN): nettcpd sends
 * one as it closes in answer to ours, and closing before it arrives would
 * reset every TLS connection.
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "wire.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; glibc names it under _GNU_SOURCE */
#endif

#define READS_PER_WAKEUP 16
#define WRITES_PER_WAKEUP 16
#define UPLOAD_IOV 16
/* TLS reads and writes move at most one record (16 KiB) each. */
#define TLS_READS_PER_WAKEUP 64
#define TLS_WRITES_PER_WAKEUP 64
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
	LS_UPGRADE,    /* TLS: clear preamble + Upgrade Request sent, waiting 0A */
	LS_HANDSHAKE,  /* TLS: client handshake under way */
	LS_ACK,        /* preamble sent: waiting for Preamble Ack */
	LS_READY,      /* acked, waiting for the measured phase (rr, up, down, idle) */
	LS_REPLY,      /* request sent: waiting for the reply envelope */
	LS_UPLOAD,     /* sending envelopes */
	LS_DOWNLOAD,   /* receiving envelopes */
	LS_END,        /* End sent (or queued): waiting for the service's End */
	LS_CLOSING,    /* TLS, End both ways: our close_notify sent (or due),
	                  waiting for the server's */
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
	SSL *ssl;               /* TLS mode, once the upgrade is answered */
	unsigned end_sent : 1;
	unsigned wpend : 1;     /* an SSL_write must be retried as it was */
	unsigned rd_wants_write : 1; /* an SSL_read waits for writability */
	unsigned notify_due : 1; /* our close_notify waits for writability */
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
static const char *via_stem = "svc";
static const char *tls_ca;      /* -T: TLS mode, trusting this CA file only */
static const char *tls_name = "localhost";
static int tls_resume;          /* -R: offer the newest ticket on each connection */

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
static const uint8_t preamble_end_byte = WIRE_REC_PREAMBLE_END;
static SSL_CTX *tls_ctx;
static uint64_t handshakes, resumed;
static SSL_SESSION **tls_tickets; /* -R: each slot's newest session ticket */
static char tls_version[24], tls_cipher[64], tls_group[32];
static char tls_why[160];       /* the last TLS failure, for first_error */
static uint32_t next_route;

static int running;             /* the measured phase has started */
static int finishing;           /* its time is up */
static uint64_t t_start, t_window, t_end, t_hard;
static unsigned nready, nopen, nopening;
static uint64_t completed, bytes, attempts;
static uint64_t rx_bytes;       /* down: every byte received, drain included */
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

/* Remember why OpenSSL failed (its most specific error), for first_error. */
static void
tls_note_error(const char *fallback)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last != 0)
		ERR_error_string_n(last, tls_why, sizeof(tls_why));
	else
		snprintf(tls_why, sizeof(tls_why), "%s", fallback);
}

/* Close c; reset != 0 sends RST (idle teardown, failures).  A clean TLS
 * close has exchanged close_notify already (LS_CLOSING). */
static void
conn_close(struct lconn *c, int reset)
{
	if (c->state == LS_FREE)
		return;
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
	if (c->state == LS_CONNECTING || c->state == LS_UPGRADE ||
	    c->state == LS_HANDSHAKE || c->state == LS_ACK)
		nopening--;
	c->state = LS_FREE;
	nopen--;
}

/* err EPROTO: a TLS failure, described by tls_why. */
static void
conn_error(struct lconn *c, const char *what, int err)
{
	if (err == EPROTO && tls_why[0] != '\0')
		fail(c, "%s: TLS: %s", what, tls_why);
	else
		fail(c, "%s: %s", what, err ? strerror(err) : "protocol");
	conn_close(c, 1);
}

/*
 * A failed SSL_read or SSL_write as a recv or send result: -1 with errno
 * EAGAIN when it must be retried (the same way, for a write) once the
 * socket is ready, 0 for the peer's close_notify (reads), -1 with EPROTO
 * (reason in tls_why) or the socket's errno otherwise.
 */
static ssize_t
tls_failed(struct lconn *c, int ret, int reading)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			c->rd_wants_write = 1;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		if (reading)
			return 0;
		tls_note_error("write after close_notify");
		break;
	case SSL_ERROR_SYSCALL:
		if (errno != 0 && ERR_peek_error() == 0)
			return -1;
		tls_note_error("unexpected end of stream");
		break;
	default:
		tls_note_error("TLS failure");
		break;
	}
	errno = EPROTO;
	return -1;
}

/* recv(), or SSL_read() once TLS is up. */
static ssize_t
io_recv(struct lconn *c, void *buf, size_t len)
{
	int ret;

	if (c->ssl == NULL)
		return recv(c->fd, buf, len, 0);
	c->rd_wants_write = 0;
	ERR_clear_error();
	errno = 0;
	ret = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	return ret > 0 ? ret : tls_failed(c, ret, 1);
}

/* send(), or SSL_write() once TLS is up (partial writes: one record or
 * more per call). */
static ssize_t
io_send(struct lconn *c, const void *buf, size_t len)
{
	int ret;

	if (c->ssl == NULL)
		return send(c->fd, buf, len, MSG_NOSIGNAL);
	ERR_clear_error();
	errno = 0;
	ret = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (ret > 0) {
		c->wpend = 0;
		return ret;
	}
	ret = (int)tls_failed(c, ret, 0);
	if (errno == EAGAIN)
		c->wpend = 1;
	return ret;
}

/*
 * Write what is queued.  Returns 1 when it is all out, 0 when the socket is
 * full (EPOLLOUT is then armed), -1 on error (c is closed).
 */
static int
conn_write(struct lconn *c)
{
	for (int i = 0; i < WRITES_PER_WAKEUP && c->out_off < c->out_len; i++) {
		ssize_t n = io_send(c, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_error(c, c->ssl ? "SSL_write" : "send", errno);
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

/* Upload over TLS: one record per SSL_write (partial writes); a write
 * that could not finish is retried as it was before anything else. */
static void
upload_tls(struct lconn *c)
{
	for (int i = 0; i < TLS_WRITES_PER_WAKEUP; i++) {
		ssize_t n;

		if (c->out_off == 0 && finishing && !c->wpend) {
			send_end(c);
			return;
		}
		n = io_send(c, upload_env + c->out_off, upload_env_len - c->out_off);
		if (n < 0) {
			if (errno == EAGAIN)
				break;
			conn_error(c, "SSL_write", errno);
			return;
		}
		bytes += (uint64_t)n;
		c->out_off = (c->out_off + (size_t)n) % upload_env_len;
	}
	set_events(c, EPOLLIN | EPOLLOUT);
}

/* Upload: stream envelopes; at the end of the phase, finish the envelope
 * under way and send End. */
static void
upload(struct lconn *c)
{
	if (c->ssl != NULL) {
		upload_tls(c);
		return;
	}
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
	c->state = tls_ctx != NULL ? LS_UPGRADE : LS_ACK;
	(void)conn_send(c, preambles[c->route], preamble_lens[c->route]);
}

/* Drive the client handshake; once it is done, send Preamble End inside
 * TLS and wait for the Ack. */
static void
tls_handshake(struct lconn *c)
{
	int ret;

	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		if (SSL_version(c->ssl) != TLS1_3_VERSION) {
			snprintf(tls_why, sizeof(tls_why), "negotiated %s, not TLSv1.3",
			    SSL_get_version(c->ssl));
			conn_error(c, "handshake", EPROTO);
			return;
		}
		handshakes++;
		if (SSL_session_reused(c->ssl))
			resumed++;
		if (tls_version[0] == '\0') {
			const char *group = SSL_group_to_name(c->ssl,
			    SSL_get_negotiated_group(c->ssl));

			snprintf(tls_version, sizeof(tls_version), "%s",
			    SSL_get_version(c->ssl));
			snprintf(tls_cipher, sizeof(tls_cipher), "%s",
			    SSL_get_cipher_name(c->ssl));
			snprintf(tls_group, sizeof(tls_group), "%s",
			    group != NULL ? group : "?");
		}
		c->state = LS_ACK;
		wire_reader_init(&c->rd);
		(void)conn_send(c, &preamble_end_byte, 1);
		return;
	}
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		set_events(c, EPOLLIN);
		return;
	case SSL_ERROR_WANT_WRITE:
		set_events(c, EPOLLIN | EPOLLOUT);
		return;
	default:
		break;
	}
	if (SSL_get_verify_result(c->ssl) != X509_V_OK) {
		snprintf(tls_why, sizeof(tls_why), "certificate verification: %s",
		    X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
		ERR_clear_error();
	} else if (SSL_get_error(c->ssl, ret) == SSL_ERROR_SYSCALL &&
	    ERR_peek_error() == 0) {
		snprintf(tls_why, sizeof(tls_why), "%s", errno ? strerror(errno) :
		    "end of stream in the handshake");
	} else {
		tls_note_error("handshake failed");
	}
	conn_error(c, "handshake", EPROTO);
}

/* The Upgrade Response arrived: start the client side of TLS, verifying
 * the chain against the CA file and the name against tls_name. */
static void
tls_begin(struct lconn *c)
{
	ERR_clear_error();
	c->ssl = SSL_new(tls_ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) ||
	    !SSL_set_tlsext_host_name(c->ssl, tls_name) ||
	    !SSL_set1_host(c->ssl, tls_name)) {
		tls_note_error("cannot set up TLS");
		conn_error(c, "SSL_new", EPROTO);
		return;
	}
	SSL_set_app_data(c->ssl, c);
	if (tls_resume && tls_tickets[c - conns] != NULL &&
	    !SSL_set_session(c->ssl, tls_tickets[c - conns])) {
		tls_note_error("cannot offer the session ticket");
		conn_error(c, "SSL_set_session", EPROTO);
		return;
	}
	SSL_set_connect_state(c->ssl);
	c->state = LS_HANDSHAKE;
	tls_handshake(c);
}

/*
 * TLS, End both ways: send our close_notify (again once the socket is
 * writable if it could not go out).  Closes c if that fails; returns -1
 * then, 0 otherwise.
 */
static int
tls_notify(struct lconn *c)
{
	int ret;

	ERR_clear_error();
	errno = 0;
	ret = SSL_shutdown(c->ssl);
	c->notify_due = 0;
	if (ret >= 0) {
		set_events(c, EPOLLIN);
		return 0;
	}
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_WRITE:
		c->notify_due = 1;
		set_events(c, EPOLLIN | EPOLLOUT);
		return 0;
	case SSL_ERROR_WANT_READ:
		set_events(c, EPOLLIN);
		return 0;
	default:
		tls_note_error("cannot send close_notify");
		conn_error(c, "SSL_shutdown", EPROTO);
		return -1;
	}
}

/*
 * The session finished cleanly (End both ways): count it, then close at
 * once, without waiting for a FIN that a server keeping the connection
 * never sends.  With TLS, close once our close_notify has been answered
 * (LS_CLOSING); the server's FIN without one is accepted too, as WCF's own
 * peers abandon the TLS stream without close_notify.  Returns -1 if c was
 * closed.
 */
static int
on_done(struct lconn *c)
{
	uint64_t now = wire_now_ns();

	if (mode == MODE_CPS && now <= t_end) {
		completed++;
		hist_add(now - c->t0);
	}
	last_close_ns = now;
	if (c->ssl != NULL) {
		c->state = LS_CLOSING;
		SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		return tls_notify(c);
	}
	conn_close(c, 0);      /* run_cps() opens the next one in this slot */
	return -1;
}

/* One complete record from the far side.  Returns -1 if c was closed, 1
 * for the Upgrade Response (TLS starts), 0 otherwise. */
static int
on_record(struct lconn *c)
{
	uint64_t now;

	switch (c->rd.type) {
	case WIRE_REC_UPGRADE_RESPONSE:
		if (c->state != LS_UPGRADE)
			break;
		return 1;       /* on_readable() starts TLS */
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
		if (c->state == LS_END || (c->state == LS_DOWNLOAD && c->end_sent))
			return on_done(c);
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
	int reads = c->ssl != NULL ? TLS_READS_PER_WAKEUP : READS_PER_WAKEUP;

	for (int i = 0; i < reads; i++) {
		ssize_t n = io_recv(c, scratch, sizeof(scratch));
		size_t off = 0;

		if (n == 0) {
			/* TLS after the End exchange: the server's
			 * close_notify, or its FIN.  Before the service's End,
			 * a FIN or close_notify is an error (a bare FIN inside
			 * TLS is unexpected EOF there). */
			if (c->state == LS_CLOSING)
				conn_close(c, 0); /* run_cps() refills the slot */
			else
				conn_error(c, "early end of stream", ECONNRESET);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				if (c->rd_wants_write)
					set_events(c, c->events | EPOLLOUT);
				return;
			}
			conn_error(c, c->ssl ? "SSL_read" : "recv", errno);
			return;
		}
		if (c->state == LS_DOWNLOAD) {
			rx_bytes += (uint64_t)n;
			if (running && wire_now_ns() <= t_end)
				bytes += (uint64_t)n;
		}
		while (off < (size_t)n) {
			size_t used;
			int st = wire_read(&c->rd, scratch + off, (size_t)n - off, &used);

			off += used;
			if (st == WIRE_BAD) {
				conn_error(c, "malformed record", 0);
				return;
			}
			if (st != WIRE_RECORD)
				continue;
			st = on_record(c);
			if (st < 0)
				return;
			if (st > 0) {
				/* The server sends nothing after 0A before the
				 * ClientHello. */
				if (off != (size_t)n) {
					conn_error(c, "bytes after the Upgrade Response", 0);
					return;
				}
				tls_begin(c);
				return;
			}
		}
		if (c->ssl == NULL && (size_t)n < sizeof(scratch))
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
	case LS_CLOSING:
		if (c->notify_due)
			(void)tls_notify(c);
		else
			set_events(c, EPOLLIN);
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
	if (c->state == LS_HANDSHAKE) {
		tls_handshake(c);
		return;
	}
	if ((ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ||
	    (c->rd_wants_write && (ev->events & EPOLLOUT)))
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
	    "cpu=%.3f rx_bytes=%llu",
	    mode == MODE_CPS ? "cps" : mode == MODE_RR ? "rr" : mode == MODE_UP ? "up" :
	    mode == MODE_DOWN ? "down" : "idle", mode == MODE_IDLE ? nready : conc,
	    secs, (unsigned long long)completed, errors, rate,
	    hist_quantile(0.50), hist_quantile(0.99), hist_quantile(0.999),
	    hist.n ? hist.sum_us / (double)hist.n : 0.,
	    (unsigned long long)bytes, mbps, wire_cpu_seconds(),
	    (unsigned long long)rx_bytes);
	if (tls_ctx != NULL)
		printf(" handshakes=%llu resumed=%llu tls_version=%s tls_cipher=%s "
		    "tls_group=%s", (unsigned long long)handshakes,
		    (unsigned long long)resumed, tls_version[0] ? tls_version : "-",
		    tls_cipher[0] ? tls_cipher : "-", tls_group[0] ? tls_group : "-");
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
		int n = snprintf(via, sizeof(via), "net.tcp://%s/%s%u", via_host,
		    via_stem, i);

		if (n < 0 || (size_t)n >= sizeof(via))
			return -1;
		if ((preambles[i] = malloc(WIRE_PREAMBLE_UPGRADE_MAX)) == NULL)
			return -1;
		preamble_lens[i] = tls_ca != NULL ?
		    wire_preamble_upgrade(via, preambles[i]) :
		    wire_preamble(via, preambles[i]);
		if (preamble_lens[i] == 0)
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

/* -R: keep the slot's newest ticket (OpenSSL hands over its reference). */
static int
keep_ticket(SSL *ssl, SSL_SESSION *sess)
{
	struct lconn *c = SSL_get_app_data(ssl);

	SSL_SESSION_free(tls_tickets[c - conns]);
	tls_tickets[c - conns] = sess;
	return 1;
}

/*
 * The client context of -T: TLS 1.3 only, OpenSSL's default groups and
 * suites, the peer verified against the CA file alone (not the system's
 * store), no session cache (every connection a full handshake) unless -R
 * asks to resume.
 */
static int
setup_tls(size_t slots)
{
	char why[160];

	tls_ctx = SSL_CTX_new(TLS_client_method());
	if (tls_ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_load_verify_locations(tls_ctx, tls_ca, NULL)) {
		ERR_error_string_n(ERR_get_error(), why, sizeof(why));
		fprintf(stderr, "nmf-loadgen: -T %s: %s\n", tls_ca, why);
		return -1;
	}
	SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
	if (tls_resume) {
		if ((tls_tickets = calloc(slots, sizeof(*tls_tickets))) == NULL)
			return -1;
		SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(tls_ctx, keep_ticket);
	} else {
		SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	}
	SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
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
	    "  -P STEM   Via path stem: net.tcp://HOST/STEMi          [svc]\n"
	    "  -T FILE   TLS upgrade (application/ssl-tls), TLS 1.3, trusting\n"
	    "            the CA certificates in FILE only\n"
	    "  -N NAME   TLS: the name the server's certificate must have [localhost]\n"
	    "  -R        TLS: resume, offering the newest session ticket\n"
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

	while ((opt = getopt(argc, argv, "a:m:c:d:w:n:r:H:P:T:N:Rq:p:e:s:h")) != -1) {
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
		case 'P': via_stem = optarg; break;
		case 'T': tls_ca = optarg; break;
		case 'N': tls_name = optarg; break;
		case 'R': tls_resume = 1; break;
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
	if (tls_ca != NULL && setup_tls(slots) < 0)
		return 1;
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
