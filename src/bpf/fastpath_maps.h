/*
 * fastpath_maps.h - what the fast path's BPF program (fastpath.bpf.c) and
 * its loader (fastpath.c) share: the values of its maps, keyed by socket
 * cookie (SO_COOKIE).
 */
#ifndef NETTCPD_FASTPATH_MAPS_H
#define NETTCPD_FASTPATH_MAPS_H

#include <linux/types.h>

/* Sockets in the fast path at once (two per session). */
#define FP_SOCKS_MAX 65536
/* An mbint takes at most 5 bytes. */
#define FP_MBINT_MAX 5
/* Steps walking one segment: a segment with more records than this goes
 * to user space (a step is a framing byte or a run of payload). */
#define FP_WALK_MAX 65536

/* Where the follower stands, as enum nmf_flow_state's first three. */
#define FP_FLOW_RECORD 0
#define FP_FLOW_SIZE 1
#define FP_FLOW_PAYLOAD 2

/* Set by user space. */
struct fp_ctl {
	__u64 peer;     /* where envelopes go: the peer socket's cookie */
	__u64 passed;   /* fp_stat.passed when user space armed it: it had */
	                /* read every byte passed to it */
	__u32 arm;      /* which arming (0: not armed) */
	/* The follower where user space left it: the kernel's starts here. */
	__u32 state, size, size_bytes, remaining;
};

/* Set by the verdict. */
struct fp_stat {
	__u64 passed;     /* bytes handed to user space */
	__u64 redirected; /* bytes sent to the peer */
	__u64 segments;   /* segments sent to the peer */
	__u32 armed;      /* the arming the follower below belongs to */
	__u32 stopped;    /* the arming a segment not for the fast path ended */
	/* The follower, at the first byte not sent to the peer. */
	__u32 state, size, size_bytes, remaining;
};

#endif
