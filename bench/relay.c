/*
 * relay.c - nmf-relay: the smallest TCP relay, make bench's floor columns
 * (relay-copy, relay-splice, relay-sockmap, relay-uring, relay-uring1;
 * bench/README).  It parses no framing and routes nothing: it listens on
 * 127.0.0.1:PORT, connects each client to 127.0.0.1:BACKEND and forwards
 * both ways, a half-close as shutdown(SHUT_WR), until both sides are
 * closed.  What it costs is what any relay must pay on this machine, so
 * nettcpd's distance from direct can be split into the hop's share and
 * nettcpd's own.
 *
 *   copy     one recv() and one send() per direction and wake-up, through
 *            a 64 KiB buffer: the least a user-space relay does per message
 *   splice   splice() through a pipe per direction (nettcpd's bulk path)
 *   sockmap  both sockets in a BPF sockhash whose verdict (relay.bpf.c)
 *            sends every segment to the peer: user space only accepts,
 *            connects and forwards the end (the kernel path alone)
 *   uring    copy mode on one io_uring instead of epoll: multishot recv
 *            into a shared buffer ring, one io_uring_enter per pass that
 *            submits the sends and reaps what comes next (relay_uring.c)
 *   uring1   uring with a single-shot receive per direction, armed again
 *            as each completes, as a proxy that must see every record
 *            boundary before it reads past it may do (an unlimited
 *            multishot receive reads on past any boundary)
 *
 * One thread, level-triggered epoll, non-blocking sockets, TCP_NODELAY.
 * The backend connect() blocks: on loopback it completes at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <linux/tcp.h>   /* tcp_info with bytes_acked (glibc's lacks it) */

#ifdef HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "relay.skel.h"
#endif
#include "relay_uring.h"

#define RELAY_BUF 65536
#define RELAY_EVENTS 256

enum relay_mode { RELAY_COPY, RELAY_SPLICE, RELAY_SOCKMAP, RELAY_URING };

/* One direction: what was read from fd[i] and is not yet written to its
 * peer. */
struct relay_dir {
	char *buf;          /* copy: the bytes at buf[off], pend of them */
	int pipe[2];        /* splice: pend bytes in the pipe */
	size_t off, pend;
	int eof, shut;      /* the source ended; the sink was shut */
	/* sockmap: the kernel carries this direction, user space waits for
	 * its end only.  Every segment the verdict redirects wakes EPOLLIN
	 * waiters (sk_psock_data_ready), for a recv() that finds nothing. */
	int quiet;
};

struct relay_pair;
struct relay_side {
	struct relay_pair *pair;
	int i;
	uint32_t events;    /* what epoll watches now */
};

struct relay_pair {
	int fd[2];                  /* the client, the backend */
	struct relay_side side[2];
	struct relay_dir dir[2];    /* dir[i]: from fd[i] to fd[!i] */
	struct relay_pair *next;    /* on relay_waiting, or relay_dead */
	int waiting, dead;
};

static enum relay_mode relay_mode;
static int relay_ep;
static struct sockaddr_in relay_backend;
static struct relay_pair *relay_waiting;    /* sockmap: ends held back */
/* Closed in this batch of events: a later event of the batch may name it. */
static struct relay_pair *relay_dead;

static int
relay_tcp_info(int fd, struct tcp_info *ti)
{
	socklen_t len = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len);
}

/* sockmap: whether every byte the kernel took from fd[d] has been handed
 * to its peer's send queue, so a FIN sent now comes after them. */
static int
relay_flushed(struct relay_pair *p, int d)
{
	struct tcp_info src, dst;
	int outq = 0;

	/* acked first, then the queue: an ACK between the two can only make
	 * the sum short, and the end waits a little longer.  The source's
	 * bytes_received counts its FIN as one. */
	if (relay_tcp_info(p->fd[d], &src) < 0 ||
	    relay_tcp_info(p->fd[!d], &dst) < 0 ||
	    ioctl(p->fd[!d], SIOCOUTQ, &outq) < 0)
		return 1;
	return dst.tcpi_bytes_acked + (uint64_t)outq + 1 >= src.tcpi_bytes_received;
}

static void
relay_close(struct relay_pair *p)
{
	for (int i = 0; i < 2; i++) {
		close(p->fd[i]);   /* also leaves the sockhash and epoll */
		free(p->dir[i].buf);
		if (relay_mode == RELAY_SPLICE) {
			close(p->dir[i].pipe[0]);
			close(p->dir[i].pipe[1]);
		}
	}
	p->dead = 1;
	p->next = relay_dead;
	relay_dead = p;
}

/* One read from fd[d]: 0, or -1 on an error that ends the pair. */
static int
relay_fill(struct relay_pair *p, int d)
{
	struct relay_dir *dir = &p->dir[d];
	ssize_t n;

	if (relay_mode == RELAY_SPLICE)
		n = splice(p->fd[d], NULL, dir->pipe[1], NULL, RELAY_BUF,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	else
		n = recv(p->fd[d], dir->buf, RELAY_BUF, 0);
	if (n > 0) {
		dir->off = 0;
		dir->pend = (size_t)n;
	} else if (n == 0) {
		dir->eof = 1;
	} else if (errno == EAGAIN) {
		dir->quiet = relay_mode == RELAY_SOCKMAP;
	} else if (errno != EINTR) {
		return -1;
	}
	return 0;
}

/* Write what dir[d] holds to fd[!d], as much as it takes. */
static int
relay_drain(struct relay_pair *p, int d)
{
	struct relay_dir *dir = &p->dir[d];
	ssize_t n;

	if (relay_mode == RELAY_SPLICE)
		n = splice(dir->pipe[0], NULL, p->fd[!d], NULL, dir->pend,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	else
		n = send(p->fd[!d], dir->buf + dir->off, dir->pend, MSG_NOSIGNAL);
	if (n > 0) {
		dir->off += (size_t)n;
		dir->pend -= (size_t)n;
	} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
		return -1;
	}
	return 0;
}

/* After any progress: forward ends, close a finished pair, watch what is
 * needed next. */
static void
relay_settle(struct relay_pair *p)
{
	int hold = 0;

	for (int d = 0; d < 2; d++) {
		struct relay_dir *dir = &p->dir[d];

		if (!dir->eof || dir->pend || dir->shut)
			continue;
		if (relay_mode == RELAY_SOCKMAP && !relay_flushed(p, d)) {
			hold = 1;
			continue;
		}
		shutdown(p->fd[!d], SHUT_WR);
		dir->shut = 1;
	}
	if (p->dir[0].shut && p->dir[1].shut) {
		if (!p->waiting) {
			relay_close(p);
			return;
		}
		hold = 1;   /* relay_wake takes it off its list and closes it */
	}
	if (hold && !p->waiting) {
		p->waiting = 1;
		p->next = relay_waiting;
		relay_waiting = p;
	}
	for (int i = 0; i < 2; i++) {
		struct relay_side *s = &p->side[i];
		struct epoll_event ev = { .data.ptr = s };

		ev.events = (p->dir[i].pend || p->dir[i].eof ? 0 :
		    p->dir[i].quiet ? EPOLLRDHUP : EPOLLIN) |
		    (p->dir[!i].pend ? EPOLLOUT : 0);
		if (ev.events != s->events &&
		    epoll_ctl(relay_ep, EPOLL_CTL_MOD, p->fd[i], &ev) == 0)
			s->events = ev.events;
	}
}

static void
relay_event(struct relay_side *s, uint32_t events)
{
	struct relay_pair *p = s->pair;
	int i = s->i, bad = i, err;
	socklen_t errlen = sizeof(err);

	/* A pair failed while held back waits for relay_wake to close it. */
	if (p->dead || (p->dir[0].shut && p->dir[1].shut))
		return;
	if (events & EPOLLERR)
		goto fail;
	if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !p->dir[i].pend &&
	    !p->dir[i].eof) {
		if (relay_fill(p, i) < 0)
			goto fail;
		bad = !i;
		if (p->dir[i].pend && relay_drain(p, i) < 0)
			goto fail;
		bad = i;
	}
	if ((events & EPOLLOUT) && p->dir[!i].pend && relay_drain(p, !i) < 0)
		goto fail;
	relay_settle(p);
	return;
fail:
	err = errno;
	/* In sockmap mode the kernel's sends to this socket report their
	 * errors here: SO_ERROR. */
	if ((events & EPOLLERR) &&
	    getsockopt(p->fd[bad], SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
		err = errno;
	fprintf(stderr, "nmf-relay: the %s's socket: %s; connection closed\n",
	    bad ? "backend" : "client", strerror(err));
	if (p->waiting)   /* relay_wake frees it */
		p->dir[0].eof = p->dir[1].eof = p->dir[0].shut = p->dir[1].shut = 1;
	else
		relay_close(p);
}

/* After a batch of events: look again at the ends held back until the
 * kernel's bytes before them are through (sockmap), free the pairs closed. */
static void
relay_wake(void)
{
	struct relay_pair *list = relay_waiting;

	relay_waiting = NULL;
	while (list != NULL) {
		struct relay_pair *p = list;

		list = p->next;
		p->waiting = 0;
		relay_settle(p);
	}
	while (relay_dead != NULL) {
		struct relay_pair *p = relay_dead;

		relay_dead = p->next;
		free(p);
	}
}

#ifdef HAVE_BPF
static int relay_socks = -1;   /* the sockhash */

static int
relay_cookie(int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len);
}

/* sockmap: each socket goes in under its peer's cookie (relay.bpf.c).
 * The backend's first: from the moment the client's is in, the verdict
 * sends its bytes to the backend's, and a segment with no peer in the
 * map yet would be dropped (one make bench cps run lost 18 sessions
 * so).  Nothing comes from the backend before the client's bytes. */
static int
relay_map_pair(struct relay_pair *p)
{
	uint64_t cookie[2], fd[2] = { (uint64_t)p->fd[0], (uint64_t)p->fd[1] };

	if (relay_cookie(p->fd[0], &cookie[0]) < 0 ||
	    relay_cookie(p->fd[1], &cookie[1]) < 0 ||
	    bpf_map_update_elem(relay_socks, &cookie[0], &fd[1], BPF_ANY) < 0 ||
	    bpf_map_update_elem(relay_socks, &cookie[1], &fd[0], BPF_ANY) < 0)
		return -1;
	return 0;
}
#else
static int
relay_map_pair(struct relay_pair *p)
{
	(void)p;
	errno = ENOSYS;   /* relay_load let no sockmap mode start */
	return -1;
}
#endif

static void
relay_open(int cfd)
{
	struct relay_pair *p = calloc(1, sizeof(*p));
	int one = 1;

	if (p == NULL) {
		close(cfd);
		return;
	}
	p->fd[0] = cfd;
	p->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	for (int i = 0; i < 2; i++)
		p->dir[i].pipe[0] = p->dir[i].pipe[1] = -1;
	if (p->fd[1] < 0 || connect(p->fd[1], (struct sockaddr *)&relay_backend,
	    sizeof(relay_backend)) < 0) {
		perror("nmf-relay: connect to the backend");
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &p->side[i] };

		p->side[i] = (struct relay_side){ .pair = p, .i = i, .events = EPOLLIN };
		if (fcntl(p->fd[i], F_SETFL, O_NONBLOCK) < 0 ||
		    setsockopt(p->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
		    (relay_mode == RELAY_SPLICE &&
		     pipe2(p->dir[i].pipe, O_NONBLOCK | O_CLOEXEC) < 0) ||
		    (relay_mode != RELAY_SPLICE &&
		     (p->dir[i].buf = malloc(RELAY_BUF)) == NULL) ||
		    epoll_ctl(relay_ep, EPOLL_CTL_ADD, p->fd[i], &ev) < 0) {
			perror("nmf-relay: a new connection");
			goto fail;
		}
	}
	/* What the client sent before this reached user space and is
	 * relayed by the copy path; the verdict carries all that follows.
	 * (An MC-NMF client waits for its PreambleAck after its first bytes,
	 * so the two paths never carry bytes of one direction at once.) */
	if (relay_mode == RELAY_SOCKMAP) {
		if (relay_map_pair(p) < 0) {
			perror("nmf-relay: into the sockhash");
			goto fail;
		}
		/* Nothing readable now: all that comes goes by the verdict.
		 * (poll, not SIOCINQ: in the sockhash SIOCINQ counts only
		 * what the verdict passed, not bytes queued before.) */
		for (int i = 0; i < 2; i++) {
			struct pollfd pfd = { .fd = p->fd[i], .events = POLLIN };

			p->dir[i].quiet = poll(&pfd, 1, 0) == 0;
		}
		relay_settle(p);
	}
	return;
fail:
	relay_close(p);   /* what was not made yet is -1 or NULL */
}

#ifdef HAVE_BPF
static int
relay_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

/* Load and attach the verdict; on failure say why on stderr. */
static int
relay_load(void)
{
	struct relay_bpf *skel;

	libbpf_set_print(relay_quiet);
	if ((skel = relay_bpf__open_and_load()) == NULL) {
		fprintf(stderr, "nmf-relay: the BPF program does not load (%s)%s\n",
		    strerror(errno), errno == EPERM ? ": no privilege (CAP_BPF and "
		    "CAP_NET_ADMIN)" : "");
		return -1;
	}
	relay_socks = bpf_map__fd(skel->maps.relay_socks);
	if (bpf_prog_attach(bpf_program__fd(skel->progs.relay_verdict),
	    relay_socks, BPF_SK_SKB_VERDICT, 0) < 0) {
		fprintf(stderr, "nmf-relay: the verdict does not attach (%s)\n",
		    strerror(errno));
		relay_bpf__destroy(skel);
		return -1;
	}
	return 0;   /* the skeleton lives as long as the process */
}
#else
static int
relay_load(void)
{
	fprintf(stderr, "nmf-relay: no sockmap mode: built without BPF "
	    "(configure --with-bpf)\n");
	return -1;
}
#endif

static int
relay_usage(void)
{
	fprintf(stderr, "usage: nmf-relay -l PORT -b BACKEND_PORT "
	    "[-m copy|splice|sockmap|uring|uring1]\n"
	    "       nmf-relay -t -m MODE   (whether MODE can run here)\n");
	return 2;
}

static int
relay_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return (*s && !*end && v > 0 && v < 65536) ? (int)v : -1;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct epoll_event events[RELAY_EVENTS];
	int port = -1, backend = -1, test = 0, single = 0, lfd, one = 1, c;

	while ((c = getopt(argc, argv, "l:b:m:t")) != -1) {
		if (c == 'l')
			port = relay_port(optarg);
		else if (c == 'b')
			backend = relay_port(optarg);
		else if (c == 't')
			test = 1;
		else if (c == 'm' && strcmp(optarg, "copy") == 0)
			relay_mode = RELAY_COPY;
		else if (c == 'm' && strcmp(optarg, "splice") == 0)
			relay_mode = RELAY_SPLICE;
		else if (c == 'm' && strcmp(optarg, "sockmap") == 0)
			relay_mode = RELAY_SOCKMAP;
		else if (c == 'm' && strcmp(optarg, "uring") == 0)
			relay_mode = RELAY_URING;
		else if (c == 'm' && strcmp(optarg, "uring1") == 0) {
			relay_mode = RELAY_URING;
			single = 1;
		} else
			return relay_usage();
	}
	if (optind != argc || (!test && (port < 0 || backend < 0)))
		return relay_usage();
	if ((relay_mode == RELAY_SOCKMAP && relay_load() < 0) ||
	    (relay_mode == RELAY_URING && relay_uring_setup(single) < 0))
		return 1;
	/* A peer gone is a connection's error (EPIPE), not the relay's end:
	 * splice() to a socket raises SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (test) {
		printf("nmf-relay: this mode can run here\n");
		return 0;
	}
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	relay_backend = addr;
	relay_backend.sin_port = htons((uint16_t)backend);
	addr.sin_port = htons((uint16_t)port);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(lfd, 4096) < 0) {
		fprintf(stderr, "nmf-relay: listen on 127.0.0.1:%d: %s\n", port,
		    strerror(errno));
		return 1;
	}
	if (relay_mode != RELAY_URING &&
	    ((relay_ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	     epoll_ctl(relay_ep, EPOLL_CTL_ADD, lfd,
	     &(struct epoll_event){ .events = EPOLLIN, .data.ptr = NULL }) < 0)) {
		perror("nmf-relay: epoll");
		return 1;
	}
	printf("listening 127.0.0.1:%d\n", port);
	fflush(stdout);
	if (relay_mode == RELAY_URING)
		return relay_uring_run(lfd, &relay_backend);
	for (;;) {
		/* Ends held back are looked at again every millisecond. */
		int n = epoll_wait(relay_ep, events, RELAY_EVENTS,
		    relay_waiting != NULL ? 1 : -1);

		if (n < 0 && errno != EINTR) {
			perror("nmf-relay: epoll_wait");
			return 1;
		}
		for (int k = 0; k < n; k++) {
			int cfd;

			if (events[k].data.ptr != NULL) {
				relay_event(events[k].data.ptr, events[k].events);
				continue;
			}
			while ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
				relay_open(cfd);
		}
		relay_wake();
	}
}
