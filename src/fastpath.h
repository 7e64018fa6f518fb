/*
 * fastpath.h - the BPF sockmap fast path for followed sessions: a socket
 * in it has what it receives followed record by record in the kernel
 * (src/bpf/fastpath.bpf.c); once armed, segments made of Sized Envelope
 * bytes alone go straight to its peer socket.  Anything else -- End, any
 * other record, a size that is not an mbint -- goes to user space with
 * everything after it, and the follower's state at its first byte, so
 * that user space goes on exactly where the kernel stopped.
 *
 * A socket in the fast path is read with recv() only: what the kernel
 * hands to user space waits in the sockmap's queue, which splice() does
 * not see.  Bytes user space writes to a socket that is also a peer must
 * wait until the kernel has written what it sent there first.
 */
#ifndef NETTCPD_FASTPATH_H
#define NETTCPD_FASTPATH_H

#include <stddef.h>
#include <stdint.h>

#include "nmf.h"

struct fastpath;

/* What the kernel did with one socket's bytes since it was added. */
struct fastpath_stat {
	uint64_t passed;      /* bytes handed to user space */
	uint64_t redirected;  /* bytes sent to the peer */
	uint64_t segments;    /* segments sent to the peer */
	uint32_t stopped;     /* the arming that a segment not for it ended */
	/* The follower at the first byte handed to user space since then. */
	uint32_t state, size, size_bytes, remaining;
};

/*
 * Load the program and its maps (as root: before the privilege drop).
 * NULL when it cannot be had, with why in why[] for the log line that
 * says which path runs: a build without libbpf, no privilege, a kernel
 * without sockmap or bpf_loop.
 */
struct fastpath *fastpath_open(char *why, size_t whylen);
void fastpath_close(struct fastpath *fp);

/* Add a connected TCP socket, not armed: everything it receives goes to
 * user space.  Its cookie (the key of every call below) in *cookie.
 * 0, or -1 with errno: EAGAIN while it holds bytes user space has not
 * read (try again once it has read them all). */
int fastpath_add(struct fastpath *fp, int fd, uint64_t *cookie);

/*
 * Arm the socket: from its next segment on, the kernel follows its
 * records from where flow stands (a duplex follower at a boundary, in a
 * size or in a payload; NULL: at a boundary) and sends envelopes to peer
 * (a socket added too), as long as user space has read every byte
 * handed to it -- read is the count it has read since fastpath_add,
 * compared with the kernel's, so that no segment overtakes bytes still
 * queued for user space.  arm names this arming (0 disarms; a new one
 * each time).
 */
int fastpath_arm(struct fastpath *fp, uint64_t cookie, uint64_t peer,
    uint64_t read, uint32_t arm, const struct nmf_flow *flow);

/* 0 and *st, or -1 (errno ENOENT: the kernel has seen no segment yet). */
int fastpath_stat(struct fastpath *fp, uint64_t cookie,
    struct fastpath_stat *st);

/* The user-space follower of a duplex session goes on where the kernel
 * stopped (st->stopped set): at a boundary, in a size or in a payload. */
void fastpath_flow_resume(const struct fastpath_stat *st, struct nmf_flow *flow);

/* Take the socket out of the sockmap: it is a plain TCP socket again.
 * What the kernel had handed to user space and it had not read is lost:
 * compare fastpath_stat's passed with what was read. */
int fastpath_remove(struct fastpath *fp, uint64_t cookie);

/*
 * The bytes ever written into fd's send queue (by user space or by the
 * kernel's redirect), in *total: user space writes to a peer only once
 * this has grown by what the kernel sent there, so that it overtakes
 * nothing still on its way through the sockmap.  It takes the socket's
 * lock, so a verdict running on it has finished when it returns.
 */
int fastpath_written(int fd, uint64_t *total);

/* The socket is closed (the kernel took it out of the sockmap): forget
 * what the maps hold about it. */
void fastpath_forget(struct fastpath *fp, uint64_t cookie);

#endif
