/*
 * service.c - nmf-service, the benchmark's net.tcp test service.
 *
 * Accepts duplex connections on loopback, reads the preamble (Version 1.x,
 * Mode duplex, Via, Encoding), answers Preamble End with Preamble Ack (0B),
 * then serves the benchmark operations of wire.h in sized envelopes (06):
 * REPLY answers one envelope, STREAM sends envelopes until the client's
 * End, DATA is consumed.  The client's End (07) is answered with End, and
 * then, as a WCF server does (System.ServiceModel's and CoreWCF's
 * ConnectionDemuxer.ReuseConnection), the connection is kept and the next
 * bytes on it are read as a fresh preamble, answered with 0B again, and so
 * on: a client or a proxy that pools connections runs session after
 * session on one socket.  So the service never closes first: a connection
 * closes at the client's FIN (close() sends ours), on a reset, or on a
 * protocol error.  One thread, one level-triggered epoll loop; runs until
 * SIGTERM or SIGINT, or for -t seconds at most.
 *
 * With --control PATH --via PREFIX it also registers PREFIX with nettcpd
 * for handoff (libnettcpshare) and serves each client socket nettcpd
 * passes over exactly as an accepted one, starting from the preamble bytes
 * nettcpd read from it, so make bench can set a handed-off route beside a
 * proxied one and a direct connection to the same process.  A next session
 * on a handed-off connection is served without asking nettcpd VALIDATE:
 * this service serves every Via alike, directly or behind nettcpd, so the
 * answer would change nothing it does (a real service must ask; see
 * libnettcpshare(3)).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <nettcpshare.h>

#include "wire.h"

#define MAX_LISTENERS 8
#define ACCEPT_BATCH 256      /* accepts per wakeup */
#define READS_PER_WAKEUP 16   /* recv() calls per readable event */
#define WRITES_PER_WAKEUP 16  /* send() calls per writable event */
#define STREAM_IOV 16         /* envelopes per sendmsg() while streaming */
#define FRAME_CACHE 8         /* distinct envelope sizes kept prebuilt */
#define SCRATCH_SIZE (256u * 1024u)
#define DEFAULT_LIFETIME 3600 /* seconds */

enum kind { KIND_LISTENER, KIND_CONN, KIND_CONTROL };

struct listener {
	enum kind kind;
	int fd;
	int is_unix;          /* a unix stream socket: no TCP options */
};

/* The handoff registration's control connection (--control). */
struct control {
	enum kind kind;
	struct nts *nts;
};

/* A prebuilt envelope (06 + mbint + payload) of one size. */
struct frame {
	uint32_t size;
	size_t len;
	uint8_t *buf;
};

/* What the next record from the client must be: a session is a preamble
 * (Version, Mode, Via, Encoding, Preamble End), then envelopes up to End,
 * and after End the next session's preamble starts. */
enum phase {
	PH_VERSION = 0,
	PH_MODE,
	PH_VIA,
	PH_ENCODING,     /* Known or Extensible Encoding */
	PH_PREAMBLE_END, /* an Upgrade Request here is refused */
	PH_SESSION,      /* acked: envelopes, or the client's End */
};

struct sconn {
	enum kind kind;
	int fd;
	uint32_t events;            /* epoll interest now registered */
	struct wire_reader rd;
	uint8_t *out;               /* queued records (ack, replies, End) */
	size_t out_len, out_off, out_cap;
	const struct frame *stream; /* streaming envelopes, NULL otherwise */
	size_t stream_off;          /* bytes of the current stream envelope sent */
	enum phase phase;
	unsigned reused : 1;        /* a session has ended on this connection */
	unsigned handed_off : 1;    /* nettcpd passed it over (--control) */
	struct sconn *prev, *next;  /* in open_conns */
};

static volatile sig_atomic_t stopping;
static int epfd = -1;
static struct frame frames[FRAME_CACHE];
static size_t nframes;
static uint8_t scratch[SCRATCH_SIZE];
static struct sconn *open_conns; /* every connection open, to close at exit */
static unsigned long nconns, accepted, handed_off, bad_records;
static unsigned long sessions, reuses; /* acked; acked on a kept connection */

static void
on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

/* The prebuilt envelope of size payload bytes; NULL if out of memory. */
static const struct frame *
frame_get(uint32_t size)
{
	struct frame *f;

	for (size_t i = 0; i < nframes; i++)
		if (frames[i].size == size)
			return &frames[i];
	f = &frames[nframes < FRAME_CACHE ? nframes : FRAME_CACHE - 1];
	free(f->buf);
	f->buf = malloc((size_t)size + WIRE_ENVELOPE_HEAD_MAX);
	if (f->buf == NULL) {
		f->size = 0;
		return NULL;
	}
	f->size = size;
	f->len = wire_envelope(WIRE_OP_DATA, 0, size, f->buf);
	if (nframes < FRAME_CACHE)
		nframes++;
	return f;
}

static void
set_events(struct sconn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

static void
conn_close(struct sconn *c)
{
	/* close() takes a socket out of epoll only once every descriptor of
	 * its open file is closed, and nettcpd holds one of a handed-off
	 * client until it has read our TAKEN: without this its events would
	 * keep coming, for c freed. */
	if (c->handed_off)
		(void)epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		open_conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->out);
	free(c);
	nconns--;
}

/* Room for len more bytes after out_len. */
static int
out_reserve(struct sconn *c, size_t len)
{
	size_t cap;
	uint8_t *p;

	if (c->out_len + len <= c->out_cap)
		return 0;
	cap = c->out_cap ? c->out_cap : 512;
	while (cap < c->out_len + len)
		cap *= 2;
	if ((p = realloc(c->out, cap)) == NULL)
		return -1;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static int
out_append(struct sconn *c, const uint8_t *bytes, size_t len)
{
	if (out_reserve(c, len) < 0)
		return -1;
	memcpy(c->out + c->out_len, bytes, len);
	c->out_len += len;
	return 0;
}

/* Queue bytes ahead of everything already queued. */
static int
out_prepend(struct sconn *c, const uint8_t *bytes, size_t len)
{
	size_t queued = c->out_len - c->out_off;

	if (len == 0)
		return 0;
	if (c->out_off < len) {
		if (out_reserve(c, len) < 0)
			return -1;
		memmove(c->out + len, c->out + c->out_off, queued);
		c->out_off = len;
		c->out_len = len + queued;
	}
	c->out_off -= len;
	memcpy(c->out + c->out_off, bytes, len);
	return 0;
}

/* Send the rest of the current stream envelope and more whole envelopes
 * (a stream lasts until the client's End: session_end() stops it).
 * Returns bytes sent, or -1 with errno. */
static ssize_t
stream_send(struct sconn *c)
{
	const struct frame *f = c->stream;
	struct iovec iov[STREAM_IOV];
	struct msghdr msg;
	int n = 0;
	ssize_t sent;

	iov[n].iov_base = f->buf + c->stream_off;
	iov[n++].iov_len = f->len - c->stream_off;
	while (n < STREAM_IOV) {
		iov[n].iov_base = f->buf;
		iov[n++].iov_len = f->len;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)n;
	sent = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	if (sent > 0)
		c->stream_off = (c->stream_off + (size_t)sent) % f->len;
	return sent;
}

/*
 * Write what is queued: finish a started stream envelope first, then queued
 * records, then more stream envelopes.  No FIN: after End the connection
 * waits for the next session.  Returns 0, or -1 when the connection must
 * close.
 */
static int
conn_flush(struct sconn *c)
{
	for (int i = 0; i < WRITES_PER_WAKEUP; i++) {
		ssize_t n;

		if (c->stream != NULL && (c->stream_off != 0 || c->out_off == c->out_len)) {
			n = stream_send(c);
		} else if (c->out_off < c->out_len) {
			n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			    MSG_NOSIGNAL);
			if (n > 0) {
				c->out_off += (size_t)n;
				if (c->out_off == c->out_len) {
					/* Drained: an idle connection keeps no buffer. */
					free(c->out);
					c->out = NULL;
					c->out_len = c->out_off = c->out_cap = 0;
				}
			}
		} else {
			set_events(c, EPOLLIN);
			return 0;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
	}
	set_events(c, EPOLLIN | EPOLLOUT);
	return 0;
}

/* A request envelope: the first payload bytes are the operation. */
static int
on_envelope(struct sconn *c)
{
	const struct frame *f;
	uint32_t arg;

	if (c->rd.head_got < WIRE_OP_HEAD)
		return 0;
	arg = wire_head_arg(&c->rd);
	if (c->rd.head[0] == WIRE_OP_DATA)
		return 0;
	if (arg < WIRE_OP_HEAD || arg > WIRE_BODY_MAX)
		return -1;
	if ((f = frame_get(arg)) == NULL)
		return -1;
	if (c->rd.head[0] == WIRE_OP_REPLY)
		return out_append(c, f->buf, f->len);
	if (c->rd.head[0] == WIRE_OP_STREAM && c->stream == NULL) {
		c->stream = f;
		c->stream_off = 0;
	}
	return 0;
}

/*
 * The client's End: the stream, if any, stops after the envelope under
 * way (its rest is queued ahead of everything else, so the records stay in
 * order), our End is queued, and the connection starts over at a preamble.
 * WCF's server does the same after the End exchange: it keeps the socket
 * and reads the next session's preamble from it, so whatever the client
 * sent after its End, already read here or not, is that preamble.
 */
static int
session_end(struct sconn *c)
{
	static const uint8_t end = WIRE_REC_END;
	const struct frame *f = c->stream;

	if (f != NULL) {
		if (c->stream_off != 0 && out_prepend(c, f->buf + c->stream_off,
		    f->len - c->stream_off) < 0)
			return -1;
		c->stream = NULL;
		c->stream_off = 0;
	}
	if (out_append(c, &end, 1) < 0)
		return -1;
	/* The reader is at a record boundary (End has no body); start it
	 * afresh all the same, as a new connection's. */
	wire_reader_init(&c->rd);
	c->phase = PH_VERSION;
	c->reused = 1;
	return 0;
}

/*
 * Act on one complete record from the client.  Records out of their
 * place (an envelope before the Ack, a preamble record inside a session,
 * a Mode other than duplex) are protocol errors, counted as bad.  Returns
 * 0, or -1 when the connection must close.
 */
static int
on_record(struct sconn *c)
{
	static const uint8_t ack = WIRE_REC_PREAMBLE_ACK;
	uint8_t type = c->rd.type;

	switch (c->phase) {
	case PH_VERSION:
		if (type != WIRE_REC_VERSION || c->rd.head_got < 1 ||
		    c->rd.head[0] != WIRE_VERSION_MAJOR)
			break;
		c->phase = PH_MODE;
		return 0;
	case PH_MODE:
		if (type != WIRE_REC_MODE || c->rd.head_got < 1 ||
		    c->rd.head[0] != WIRE_MODE_DUPLEX)
			break;
		c->phase = PH_VIA;
		return 0;
	case PH_VIA:
		if (type != WIRE_REC_VIA)
			break;
		c->phase = PH_ENCODING;
		return 0;
	case PH_ENCODING:
		if (type != WIRE_REC_KNOWN_ENCODING &&
		    type != WIRE_REC_EXTENSIBLE_ENCODING)
			break;
		c->phase = PH_PREAMBLE_END;
		return 0;
	case PH_PREAMBLE_END:
		if (type == WIRE_REC_UPGRADE_REQUEST)
			return -1;      /* no transport security here */
		if (type != WIRE_REC_PREAMBLE_END)
			break;
		c->phase = PH_SESSION;
		sessions++;
		if (c->reused)
			reuses++;
		return out_append(c, &ack, 1);
	case PH_SESSION:
		if (type == WIRE_REC_SIZED_ENVELOPE)
			return on_envelope(c);
		if (type == WIRE_REC_END)
			return session_end(c);
		break;
	}
	bad_records++;
	return -1;
}

/* Act on every record in buf[0..len) from the client.  Returns 0, or -1
 * when the connection must close. */
static int
conn_feed(struct sconn *c, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t used;
		int st = wire_read(&c->rd, buf + off, len - off, &used);

		off += used;
		if (st == WIRE_BAD) {
			bad_records++;
			return -1;
		}
		if (st == WIRE_RECORD && on_record(c) < 0)
			return -1;
	}
	return 0;
}

static void
conn_readable(struct sconn *c)
{
	for (int i = 0; i < READS_PER_WAKEUP; i++) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);

		if (n == 0) {
			conn_close(c);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			conn_close(c);
			return;
		}
		if (conn_feed(c, scratch, (size_t)n) < 0) {
			conn_close(c);
			return;
		}
		if ((size_t)n < sizeof(scratch))
			break;
	}
	if (conn_flush(c) < 0)
		conn_close(c);
}

/* A connection on the client socket fd (non-blocking), in the loop;
 * NULL (fd closed) when there is no room for it. */
static struct sconn *
conn_new(int fd, int is_unix)
{
	struct epoll_event ev;
	struct sconn *c;
	int one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	if (!is_unix)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->kind = KIND_CONN;
	c->fd = fd;
	c->events = EPOLLIN;
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		free(c);
		return NULL;
	}
	c->next = open_conns;
	if (open_conns != NULL)
		open_conns->prev = c;
	open_conns = c;
	nconns++;
	return c;
}

static void
on_acceptable(struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				perror("nmf-service: accept");
			return;
		}
		if (conn_new(fd, l->is_unix) != NULL)
			accepted++;
	}
}

/*
 * Take the clients nettcpd handed off (the control socket is non-blocking)
 * and serve each from the preamble bytes nettcpd read: they are answered
 * here as if this process had read them, the Preamble Ack included.  A
 * revocation or a lost control connection stops the service: its handoff
 * route is gone.
 */
static void
on_handoff(struct control *ctl)
{
	static uint8_t pre[NTS_PREAMBLE_MAX];

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sconn *c;
		size_t n = 0;
		uint64_t reg_id;
		int fd, rc = nts_accept(ctl->nts, &fd, pre, sizeof(pre), &n, &reg_id);

		if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (rc != 0) {
			fprintf(stderr, "nmf-service: handoff: %s\n", rc == NTS_REVOKED ?
			    "nettcpd revoked the registration" : nts_error(ctl->nts));
			stopping = 1;
			return;
		}
		handed_off++;
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
			close(fd);
			continue;
		}
		if ((c = conn_new(fd, 0)) == NULL)
			continue;
		c->handed_off = 1;
		if (conn_feed(c, pre, n) < 0 || conn_flush(c) < 0)
			conn_close(c);
	}
}

/* --control PATH --via PREFIX: register PREFIX for handoff and watch the
 * control socket in the loop.  Returns 0, or -1 said on stderr. */
static int
handoff_register(struct control *ctl, const char *path, const char *via)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = ctl };
	char err[256];
	uint64_t reg_id;
	int fd;

	ctl->kind = KIND_CONTROL;
	if ((ctl->nts = nts_open(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "nmf-service: %s: %s\n", path, err);
		return -1;
	}
	if (nts_register_handoff(ctl->nts, via, &reg_id) < 0) {
		fprintf(stderr, "nmf-service: register %s: %s\n", via, nts_error(ctl->nts));
		return -1;
	}
	fd = nts_fd(ctl->nts);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		perror("nmf-service: control socket");
		return -1;
	}
	printf("registered %s for handoff: registration %llu\n", via,
	    (unsigned long long)reg_id);
	return 0;
}

/* "unix:/path": a unix stream socket, for nettcpd's unix backends.  The
 * file must not exist yet (the runner gives a fresh directory). */
static int
listen_unix(const char *path, struct listener *l)
{
	struct sockaddr_un un;

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	if (path[0] != '/' || strlen(path) >= sizeof(un.sun_path)) {
		fprintf(stderr, "nmf-service: bad unix socket path %s\n", path);
		return -1;
	}
	strcpy(un.sun_path, path);
	l->is_unix = 1;
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return -1;
	return bind(l->fd, (struct sockaddr *)&un, sizeof(un));
}

static int
listen_on(const char *text, struct listener *l)
{
	struct sockaddr_in sin;
	struct epoll_event ev;
	int one = 1;

	l->kind = KIND_LISTENER;
	if (strncmp(text, "unix:", 5) == 0) {
		if (listen_unix(text + 5, l) < 0 || listen(l->fd, 4096) < 0) {
			fprintf(stderr, "nmf-service: listen on %s: %s\n", text,
			    strerror(errno));
			return -1;
		}
	} else if (wire_parse_loopback(text, &sin) < 0) {
		fprintf(stderr, "nmf-service: bad address %s (want 127.x.y.z:PORT "
		    "or unix:/path)\n", text);
		return -1;
	} else if ((l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(l->fd, 4096) < 0) {
		fprintf(stderr, "nmf-service: listen on %s: %s\n", text, strerror(errno));
		return -1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = l;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0)
		return -1;
	return 0;
}

static void
usage(FILE *out)
{
	fputs("usage: nmf-service [-l 127.0.0.1:PORT ...] [--control PATH --via PREFIX]\n"
	    "                   [-t SECONDS]\n"
	    "  -l ADDR:PORT  listen here (loopback only; up to 8)\n"
	    "  -l unix:/PATH listen on a new unix socket file (removed at exit)\n"
	    "  --control PATH --via PREFIX\n"
	    "                register PREFIX with the nettcpd whose control socket\n"
	    "                is PATH and serve the clients it hands off\n"
	    "  -t SECONDS    exit after this long at most (default 3600)\n"
	    "At least one -l or --control.  Exits on SIGTERM or SIGINT, or when\n"
	    "nettcpd ends the registration.\n", out);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'C' },
		{ "via", required_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct listener listeners[MAX_LISTENERS];
	struct control ctl = { KIND_CONTROL, NULL };
	const char *control = NULL, *via = NULL;
	struct epoll_event evs[256];
	struct sigaction sa;
	const char *addrs[MAX_LISTENERS];
	size_t naddrs = 0, nlistening = 0;
	double lifetime = DEFAULT_LIFETIME;
	uint64_t deadline;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "l:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (naddrs == MAX_LISTENERS) {
				fputs("nmf-service: too many -l\n", stderr);
				return 2;
			}
			addrs[naddrs++] = optarg;
			break;
		case 't':
			lifetime = atof(optarg);
			break;
		case 'C':
			control = optarg;
			break;
		case 'V':
			via = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if ((naddrs == 0 && control == NULL) || (control == NULL) != (via == NULL) ||
	    optind != argc || lifetime <= 0) {
		usage(stderr);
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	(void)wire_raise_nofile(65536);

	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		perror("nmf-service: epoll_create1");
		return 1;
	}
	for (; nlistening < naddrs; nlistening++)
		if (listen_on(addrs[nlistening], &listeners[nlistening]) < 0)
			goto out;
	if (control != NULL && handoff_register(&ctl, control, via) < 0)
		goto out;
	printf("ready\n");
	fflush(stdout);

	deadline = wire_now_ns() + (uint64_t)(lifetime * 1e9);
	while (!stopping && wire_now_ns() < deadline) {
		int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), 500);

		if (n < 0 && errno != EINTR) {
			perror("nmf-service: epoll_wait");
			goto out;
		}
		for (int i = 0; i < n; i++) {
			enum kind *k = evs[i].data.ptr;

			if (*k == KIND_LISTENER) {
				on_acceptable((struct listener *)(void *)k);
				continue;
			}
			if (*k == KIND_CONTROL) {
				on_handoff((struct control *)(void *)k);
				continue;
			}
			struct sconn *c = (struct sconn *)(void *)k;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(c);     /* may close c; flushes too */
			else if (evs[i].events & EPOLLOUT && conn_flush(c) < 0)
				conn_close(c);
		}
	}
	fprintf(stderr, "nmf-service: %lu connections served (%lu accepted, %lu handed "
	    "off), %lu open, %lu sessions (%lu on a kept connection), %lu bad, %.2f "
	    "CPU-seconds\n", accepted + handed_off, accepted, handed_off, nconns, sessions,
	    reuses, bad_records, wire_cpu_seconds());
	rc = 0;
out:
	while (open_conns != NULL)
		conn_close(open_conns);
	nts_close(ctl.nts);
	/* only the socket files this process made */
	for (size_t i = 0; i < nlistening; i++)
		if (listeners[i].is_unix)
			(void)unlink(addrs[i] + 5);
	return rc;
}
