/*
 * fastpath.c - load the fast path's BPF program (fastpath.bpf.c) through
 * its libbpf skeleton, and put sockets in its sockmap.
 *
 * The program is an sk_skb verdict without a stream parser.  The stream
 * parser (strparser) would cut the stream into records for it, but on
 * this kernel (6.18) it hands both the parser and the verdict the whole
 * segment from its first byte, not the message at its offset: two
 * records in one segment are framed as the first twice (seen with
 * bpf_printk: parser len=13 b0=06, twice, for 06 02 'ab' 06 03 'xyz' 07
 * 06 01 'Z').  The verdict follows the records across segments itself.
 */
#include "fastpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#ifdef HAVE_BPF

#include <stdlib.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <linux/tcp.h>   /* tcp_info with bytes_sent (glibc's lacks it) */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "fastpath_maps.h"
#include "fastpath.skel.h"

/* fastpath_flow_resume takes the kernel's state as nmf.c's. */
_Static_assert(FP_FLOW_RECORD == NMF_FLOW_RECORD &&
    FP_FLOW_SIZE == NMF_FLOW_SIZE && FP_FLOW_PAYLOAD == NMF_FLOW_PAYLOAD,
    "the kernel's follower states are nmf_flow's");
_Static_assert(FP_MBINT_MAX == NMF_MBINT_MAX_BYTES, "an mbint's length");

struct fastpath {
	struct fastpath_bpf *skel;
	int socks, ctl, stat;   /* the maps' descriptors */
};

/* libbpf's own messages would go to stderr, after the daemon's log has
 * moved elsewhere; the one line about the outcome is fastpath_open's. */
static int
quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

struct fastpath *
fastpath_open(char *why, size_t whylen)
{
	struct fastpath *fp = calloc(1, sizeof(*fp));
	int err;

	if (fp == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	libbpf_set_print(quiet);
	if ((fp->skel = fastpath_bpf__open_and_load()) == NULL) {
		err = errno;
		snprintf(why, whylen, "the BPF program does not load (%s%s)",
		    strerror(err), err == EPERM ? ": no privilege (CAP_BPF "
		    "and CAP_NET_ADMIN)" : ": a kernel without sockmap or "
		    "bpf_loop?");
		goto fail;
	}
	fp->socks = bpf_map__fd(fp->skel->maps.fp_socks);
	fp->ctl = bpf_map__fd(fp->skel->maps.fp_ctl);
	fp->stat = bpf_map__fd(fp->skel->maps.fp_stat);
	if (bpf_prog_attach(bpf_program__fd(fp->skel->progs.fp_verdict),
	    fp->socks, BPF_SK_SKB_VERDICT, 0) < 0) {
		snprintf(why, whylen, "the BPF verdict does not attach to its "
		    "sockmap (%s)", strerror(errno));
		goto fail;
	}
	return fp;
fail:
	fastpath_close(fp);
	return NULL;
}

void
fastpath_close(struct fastpath *fp)
{
	if (fp == NULL)
		return;
	fastpath_bpf__destroy(fp->skel);
	free(fp);
}

int
fastpath_add(struct fastpath *fp, int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);
	__u64 value = (__u64)fd;
	int unread = 0;

	/* The verdict is handed the socket's queued segments whole
	 * (tcp_read_skb), also one user space has read part of: those bytes
	 * would go twice.  An empty queue holds no such segment, and what
	 * arrives after this is whole. */
	if (ioctl(fd, SIOCINQ, &unread) < 0)
		return -1;
	if (unread > 0) {
		errno = EAGAIN;
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) < 0)
		return -1;
	/* A socket closed before its cookie was reused left nothing. */
	fastpath_forget(fp, *cookie);
	return bpf_map_update_elem(fp->socks, cookie, &value, BPF_ANY);
}

int
fastpath_arm(struct fastpath *fp, uint64_t cookie, uint64_t peer,
    uint64_t read, uint32_t arm, const struct nmf_flow *flow)
{
	struct fp_ctl ctl = { .peer = peer, .passed = read, .arm = arm };

	if (flow != NULL) {
		ctl.state = flow->state;
		ctl.size = flow->size;
		ctl.size_bytes = flow->size_bytes;
		ctl.remaining = flow->remaining;
	}

	/* One update replaces the whole value: the verdict sees the old
	 * arming or the new one, never half of each. */
	return bpf_map_update_elem(fp->ctl, &cookie, &ctl, BPF_ANY);
}

int
fastpath_stat(struct fastpath *fp, uint64_t cookie, struct fastpath_stat *st)
{
	struct fp_stat v;

	if (bpf_map_lookup_elem(fp->stat, &cookie, &v) < 0)
		return -1;
	st->passed = v.passed;
	st->redirected = v.redirected;
	st->segments = v.segments;
	st->stopped = v.stopped;
	st->state = v.state;
	st->size = v.size;
	st->size_bytes = v.size_bytes;
	st->remaining = v.remaining;
	return 0;
}

void
fastpath_forget(struct fastpath *fp, uint64_t cookie)
{
	(void)bpf_map_delete_elem(fp->ctl, &cookie);
	(void)bpf_map_delete_elem(fp->stat, &cookie);
}

int
fastpath_remove(struct fastpath *fp, uint64_t cookie)
{
	return bpf_map_delete_elem(fp->socks, &cookie);
}

int
fastpath_written(int fd, uint64_t *total)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	/* Sent once (a retransmission counts twice in bytes_sent), and
	 * queued but not sent: up to the send queue's last byte. */
	*total = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans +
	    ti.tcpi_notsent_bytes;
	return 0;
}

#else /* !HAVE_BPF */

struct fastpath {
	int unused;
};

struct fastpath *
fastpath_open(char *why, size_t whylen)
{
	snprintf(why, whylen, "built without libbpf (configure --with-bpf)");
	return NULL;
}

void
fastpath_close(struct fastpath *fp)
{
	(void)fp;
}

int
fastpath_add(struct fastpath *fp, int fd, uint64_t *cookie)
{
	(void)fp;
	(void)fd;
	(void)cookie;
	errno = ENOSYS;
	return -1;
}

int
fastpath_arm(struct fastpath *fp, uint64_t cookie, uint64_t peer,
    uint64_t read, uint32_t arm, const struct nmf_flow *flow)
{
	(void)flow;
	(void)fp;
	(void)cookie;
	(void)peer;
	(void)read;
	(void)arm;
	errno = ENOSYS;
	return -1;
}

int
fastpath_stat(struct fastpath *fp, uint64_t cookie, struct fastpath_stat *st)
{
	(void)fp;
	(void)cookie;
	(void)st;
	errno = ENOSYS;
	return -1;
}

void
fastpath_forget(struct fastpath *fp, uint64_t cookie)
{
	(void)fp;
	(void)cookie;
}

int
fastpath_remove(struct fastpath *fp, uint64_t cookie)
{
	(void)fp;
	(void)cookie;
	errno = ENOSYS;
	return -1;
}

int
fastpath_written(int fd, uint64_t *total)
{
	(void)fd;
	(void)total;
	errno = ENOSYS;
	return -1;
}

#endif /* HAVE_BPF */

void
fastpath_flow_resume(const struct fastpath_stat *st, struct nmf_flow *flow)
{
	/* The kernel's follower is a duplex one past the Ack: only where it
	 * stood is to be taken. */
	flow->state = (enum nmf_flow_state)st->state;
	flow->size = st->size;
	flow->size_bytes = (uint8_t)st->size_bytes;
	flow->remaining = st->remaining;
}
