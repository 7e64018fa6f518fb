/*
 * relay_uring.c - nmf-relay -m uring: copy mode's relay (forward both
 * ways, a half-close as shutdown(SHUT_WR), close when both sides are
 * done, TCP_NODELAY) on one io_uring, built for the fewest user/kernel
 * transitions per message that io_uring allows:
 *
 *  - one io_uring_enter per pass of the loop: io_uring_submit_and_wait
 *    submits what the last completions asked for (sends, shutdowns,
 *    closes) and reaps the next ones in the same call;
 *  - multishot accept on the listener and multishot recv on every
 *    socket: armed once, each posts a completion per arrival, with no
 *    SQE to re-arm it (mode uring1: single-shot receives, below);
 *  - the bytes land in a provided-buffer ring shared by every socket
 *    (64 KiB buffers, copy mode's size), and all that one direction has
 *    queued goes out in one sendmsg (MSG_WAITALL: the kernel finishes a
 *    short send itself);
 *  - IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN: one thread
 *    submits, and the kernel's completion work (the recv into a buffer
 *    when a segment arrives) waits for that thread's next io_uring_enter
 *    instead of interrupting it, so one enter runs a batch of them.
 *    COOP_TASKRUN only softens that interruption (no signal-like
 *    notification; the work still runs at any return to user space);
 *    measured, the two are alike (request/response, 64 clients, three
 *    alternated runs: 58,200-59,800 against 59,000-60,700 requests/s, the
 *    same CPU), and a ring with neither reaches 0.64-0.82x the rate at
 *    1.3-1.7x the CPU per request.  DEFER_TASKRUN is kept: it runs the
 *    work only where the loop asks for it.  The ring's fd is registered:
 *    io_uring_enter skips its fd look-up.  Not SQPOLL: its kernel thread
 *    spins on one of this machine's two CPUs.
 *
 * Back pressure: a multishot recv ends with ENOBUFS when the ring has no
 * free buffer; the direction is armed again once sends have given some
 * back.  A slow reader's direction can hold every buffer and the others
 * then wait for it: a bench relay's shortcut (copy mode holds 64 KiB per
 * direction) that a daemon would have to bound per connection.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "relay_uring.h"

#ifdef HAVE_LIBURING
#include <liburing.h>

#define URING_ENTRIES 1024
/* Multishot recvs post a completion per arrival, more than one per SQE. */
#define URING_CQ_ENTRIES 16384
#define URING_BUFS 1024            /* a power of two: the buffer ring's mask */
#define URING_BUF_SIZE 65536
#define URING_BGID 0
#define URING_IOV 16               /* queued buffers sent by one sendmsg */

/* What a completion is for: user_data is the pair's address (16-byte
 * aligned by malloc) with the operation and direction in its low bits. */
enum uring_op { URING_ACCEPT, URING_RECV, URING_SEND, URING_SHUT, URING_CLOSE };

/* One direction: what arrived from fd[d] and is not yet sent to fd[!d]. */
struct uring_dir {
	int head, tail;             /* queued buffer ids, oldest first; -1: none */
	size_t off;                 /* bytes of head already sent */
	int armed;                  /* a multishot recv is on fd[d] */
	int sending;                /* a sendmsg of the queue is under way */
	int eof, shut;              /* fd[d] ended; fd[!d] was shut for writing */
	struct msghdr msg;          /* the sendmsg's, valid until it completes */
	struct iovec iov[URING_IOV];
};

struct uring_pair {
	int fd[2];                  /* the client, the backend */
	struct uring_dir dir[2];    /* dir[d]: from fd[d] to fd[!d] */
	int inflight;               /* operations whose last completion is due */
	int failed;                 /* both sockets shut down; closes when idle */
	int listed;                 /* on uring_starved */
	struct uring_pair *next;
};

static struct io_uring uring;
static struct io_uring_buf_ring *uring_bufring;
static char *uring_bufs;
static uint32_t uring_buf_len[URING_BUFS];
static int uring_buf_next[URING_BUFS];  /* the next buffer of its queue */
static int uring_bufs_free;             /* in the ring, as far as we know */
/* Pairs with a direction to arm again when buffers come back. */
static struct uring_pair *uring_starved;
static int uring_lfd;
static struct sockaddr_in uring_backend;

static uint64_t
uring_tag(struct uring_pair *p, enum uring_op op, int d)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)op << 1 | (uint64_t)d;
}

/* An SQE; a full submission queue is submitted first.  Without one the
 * ring is broken and the relay cannot go on. */
static struct io_uring_sqe *
uring_sqe(struct uring_pair *p, enum uring_op op, int d)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&uring);

	if (sqe == NULL && io_uring_submit(&uring) >= 0)
		sqe = io_uring_get_sqe(&uring);
	if (sqe == NULL) {
		fprintf(stderr, "nmf-relay: the io_uring's submission queue is stuck\n");
		exit(1);
	}
	io_uring_sqe_set_data64(sqe, uring_tag(p, op, d));
	if (p != NULL)
		p->inflight++;
	return sqe;
}

static void
uring_buf_give(int bid)
{
	io_uring_buf_ring_add(uring_bufring, uring_bufs + (size_t)bid * URING_BUF_SIZE,
	    URING_BUF_SIZE, (unsigned short)bid, io_uring_buf_ring_mask(URING_BUFS), 0);
	io_uring_buf_ring_advance(uring_bufring, 1);
	uring_bufs_free++;
}

static void
uring_arm_accept(void)
{
	struct io_uring_sqe *sqe = uring_sqe(NULL, URING_ACCEPT, 0);

	io_uring_prep_multishot_accept(sqe, uring_lfd, NULL, NULL, SOCK_CLOEXEC);
}

/*
 * Mode uring1 (uring_single): one single-shot receive per direction,
 * armed again as soon as it completes.  A proxy that must see each record
 * boundary before it reads past it (nettcpd's follower: the next
 * session's bytes are not its to take) cannot keep an unlimited multishot
 * receive armed, which reads on past any boundary; a single-shot receive
 * is the simplest it has (the README's Performance section also measures
 * one limited to the bytes before the next boundary).
 */
static int uring_single;

static void
uring_arm_recv(struct uring_pair *p, int d)
{
	struct io_uring_sqe *sqe = uring_sqe(p, URING_RECV, d);

	if (uring_single)
		io_uring_prep_recv(sqe, p->fd[d], NULL, URING_BUF_SIZE, 0);
	else
		io_uring_prep_recv_multishot(sqe, p->fd[d], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = URING_BGID;
	p->dir[d].armed = 1;
}

/* One sendmsg of (up to URING_IOV of) dir[d]'s queued buffers. */
static void
uring_send(struct uring_pair *p, int d)
{
	struct uring_dir *dir = &p->dir[d];
	struct io_uring_sqe *sqe;
	size_t n = 0;

	for (int bid = dir->head; bid >= 0 && n < URING_IOV; bid = uring_buf_next[bid]) {
		size_t skip = n == 0 ? dir->off : 0;

		dir->iov[n].iov_base = uring_bufs + (size_t)bid * URING_BUF_SIZE + skip;
		dir->iov[n].iov_len = uring_buf_len[bid] - skip;
		n++;
	}
	dir->msg = (struct msghdr){ .msg_iov = dir->iov, .msg_iovlen = n };
	sqe = uring_sqe(p, URING_SEND, d);
	io_uring_prep_sendmsg(sqe, p->fd[!d], &dir->msg, MSG_NOSIGNAL | MSG_WAITALL);
	dir->sending = 1;
}

/* n bytes of dir[d]'s queue were sent: its spent buffers go back. */
static void
uring_sent(struct uring_dir *dir, size_t n)
{
	while (n > 0 && dir->head >= 0) {
		int bid = dir->head;
		size_t left = uring_buf_len[bid] - dir->off;

		if (n < left) {
			dir->off += n;
			return;
		}
		n -= left;
		dir->off = 0;
		dir->head = uring_buf_next[bid];
		if (dir->head < 0)
			dir->tail = -1;
		uring_buf_give(bid);
	}
}

/* After any completion: arm, send, forward an end, close a finished pair.
 * The pair may be freed. */
static void
uring_settle(struct uring_pair *p)
{
	for (int d = 0; d < 2 && !p->failed; d++) {
		struct uring_dir *dir = &p->dir[d];

		if (!dir->armed && !dir->eof) {
			if (uring_bufs_free > 0)
				uring_arm_recv(p, d);
			else if (!p->listed) {
				p->listed = 1;
				p->next = uring_starved;
				uring_starved = p;
			}
		}
		if (dir->head >= 0 && !dir->sending) {
			uring_send(p, d);
		} else if (dir->eof && dir->head < 0 && !dir->sending && !dir->shut) {
			io_uring_prep_shutdown(uring_sqe(p, URING_SHUT, d), p->fd[!d], SHUT_WR);
			dir->shut = 1;
		}
	}
	if (p->inflight > 0 || p->listed ||
	    (!p->failed && !(p->dir[0].shut && p->dir[1].shut)))
		return;
	for (int i = 0; i < 2; i++) {
		while (p->dir[i].head >= 0)
			uring_sent(&p->dir[i], uring_buf_len[p->dir[i].head]);
		/* No operation of the pair is left to name it: no tag. */
		io_uring_prep_close(uring_sqe(NULL, URING_CLOSE, 0), p->fd[i]);
	}
	free(p);
}

/* A socket's error ends the pair: both sockets are shut down both ways,
 * which ends their multishot recvs (0) and their sends (EPIPE); the pair
 * closes once the last of its operations has completed. */
static void
uring_fail(struct uring_pair *p, int side, int err)
{
	if (p->failed)
		return;
	fprintf(stderr, "nmf-relay: the %s's socket: %s; connection closed\n",
	    side ? "backend" : "client", strerror(err));
	p->failed = 1;
	shutdown(p->fd[0], SHUT_RDWR);
	shutdown(p->fd[1], SHUT_RDWR);
}

static void
uring_open(int cfd)
{
	struct uring_pair *p = calloc(1, sizeof(*p));
	int one = 1;

	if (p == NULL) {
		close(cfd);
		return;
	}
	p->fd[0] = cfd;
	p->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd[1] < 0 || connect(p->fd[1], (struct sockaddr *)&uring_backend,
	    sizeof(uring_backend)) < 0) {
		perror("nmf-relay: connect to the backend");
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		p->dir[i].head = p->dir[i].tail = -1;
		if (setsockopt(p->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
			perror("nmf-relay: a new connection");
			goto fail;
		}
	}
	uring_settle(p);   /* arms both recvs */
	return;
fail:
	close(p->fd[0]);
	if (p->fd[1] >= 0)
		close(p->fd[1]);
	free(p);
}

static void
uring_recv(struct uring_pair *p, int d, const struct io_uring_cqe *cqe)
{
	struct uring_dir *dir = &p->dir[d];

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		dir->armed = 0;
		p->inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

		uring_bufs_free--;
		if (cqe->res <= 0) {   /* a buffer with nothing in it */
			uring_buf_give(bid);
		} else {
			uring_buf_len[bid] = (uint32_t)cqe->res;
			uring_buf_next[bid] = -1;
			if (dir->tail >= 0)
				uring_buf_next[dir->tail] = bid;
			else
				dir->head = bid;
			dir->tail = bid;
		}
	}
	if (cqe->res == 0)
		dir->eof = 1;
	else if (cqe->res < 0 && cqe->res != -ENOBUFS)
		uring_fail(p, d, -cqe->res);
}

static void
uring_complete(const struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	struct uring_pair *p = (struct uring_pair *)(uintptr_t)(tag & ~(uint64_t)15);
	enum uring_op op = (enum uring_op)(tag >> 1 & 7);
	int d = (int)(tag & 1);

	switch (op) {
	case URING_ACCEPT:
		if (cqe->res >= 0)
			uring_open(cqe->res);
		else
			fprintf(stderr, "nmf-relay: accept: %s\n", strerror(-cqe->res));
		if (!(cqe->flags & IORING_CQE_F_MORE))
			uring_arm_accept();
		return;
	case URING_CLOSE:
		return;
	case URING_RECV:
		uring_recv(p, d, cqe);
		break;
	case URING_SEND:
		p->inflight--;
		p->dir[d].sending = 0;
		if (cqe->res >= 0)
			uring_sent(&p->dir[d], (size_t)cqe->res);
		else
			uring_fail(p, !d, -cqe->res);
		break;
	case URING_SHUT:
		p->inflight--;   /* a peer already gone: its error is the recv's */
		break;
	}
	uring_settle(p);
}

/* After each pass: the pairs with a direction starved of buffers, armed
 * again if some came back, listed again if not.  Every pass, not only when
 * buffers are free: a pair that failed meanwhile closes here and gives
 * back the buffers the others wait for. */
static void
uring_wake_starved(void)
{
	struct uring_pair *list = uring_starved;

	uring_starved = NULL;
	while (list != NULL) {
		struct uring_pair *p = list;

		list = p->next;
		p->listed = 0;
		uring_settle(p);
	}
}

int
relay_uring_setup(int single)
{
	struct io_uring_params params = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		    IORING_SETUP_CQSIZE,
		.cq_entries = URING_CQ_ENTRIES,
	};
	struct io_uring_buf_reg reg = { .ring_entries = URING_BUFS, .bgid = URING_BGID };
	size_t ringsize = URING_BUFS * sizeof(struct io_uring_buf);
	int r = io_uring_queue_init_params(URING_ENTRIES, &uring, &params);

	uring_single = single;
	if (r < 0) {
		fprintf(stderr, "nmf-relay: no io_uring here (%s)%s\n", strerror(-r),
		    r == -EPERM ? ": see sysctl kernel.io_uring_disabled" : "");
		return -1;
	}
	/* Only a saving (the fd look-up of every io_uring_enter): without it
	 * the relay still runs. */
	(void)io_uring_register_ring_fd(&uring);
	uring_bufs = mmap(NULL, (size_t)URING_BUFS * URING_BUF_SIZE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uring_bufring = mmap(NULL, ringsize, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (uring_bufs == MAP_FAILED || uring_bufring == MAP_FAILED) {
		perror("nmf-relay: the io_uring's buffers");
		return -1;
	}
	reg.ring_addr = (uint64_t)(uintptr_t)uring_bufring;
	if ((r = io_uring_register_buf_ring(&uring, &reg, 0)) < 0) {
		fprintf(stderr, "nmf-relay: no provided-buffer ring here (%s)\n",
		    strerror(-r));
		return -1;
	}
	io_uring_buf_ring_init(uring_bufring);
	for (int bid = 0; bid < URING_BUFS; bid++)
		uring_buf_give(bid);
	return 0;   /* the ring lives as long as the process */
}

int
relay_uring_run(int lfd, const struct sockaddr_in *backend)
{
	uring_lfd = lfd;
	uring_backend = *backend;
	uring_arm_accept();
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int r = io_uring_submit_and_wait(&uring, 1);

		/* EBUSY: the completion queue must be reaped first. */
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			fprintf(stderr, "nmf-relay: io_uring_enter: %s\n", strerror(-r));
			return 1;
		}
		io_uring_for_each_cqe(&uring, head, cqe) {
			uring_complete(cqe);
			n++;
		}
		io_uring_cq_advance(&uring, n);
		uring_wake_starved();
	}
}

#else

int
relay_uring_setup(int single)
{
	(void)single;
	fprintf(stderr, "nmf-relay: no uring mode: built without liburing "
	    "(configure --with-liburing)\n");
	return -1;
}

int
relay_uring_run(int lfd, const struct sockaddr_in *backend)
{
	(void)lfd;
	(void)backend;
	return 1;   /* relay_uring_setup let no uring mode start */
}

#endif
