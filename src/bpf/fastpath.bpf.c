/*
 * fastpath.bpf.c - the kernel side of the fast path (src/fastpath.c loads
 * it): an sk_skb verdict that follows a session's MC-NMF records across
 * the segments of its stream, as nmf.c's nmf_flow does, and sends a
 * segment made of Sized Envelope bytes alone straight to the peer socket,
 * without waking nettcpd.  A segment with any other byte at a record
 * boundary -- End, any other record, a size field that is not an mbint --
 * goes to nettcpd whole (SK_PASS), with the follower's state at its first
 * byte, and so does everything after it until nettcpd arms the socket
 * again: user space makes every decision it makes without the fast path.
 *
 * No stream parser: strparser hands its parser and verdict the whole
 * segment, not the message at its offset, so two records in one segment
 * are framed wrong (seen on 6.18; see fastpath.c).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "fastpath_maps.h"

/* The record type the fast path carries ([MC-NMF] 2.2.3.5). */
#define REC_SIZED_ENVELOPE 0x06

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, FP_SOCKS_MAX);
	__type(key, __u64);             /* the socket's cookie */
	__type(value, __u64);
} fp_socks SEC(".maps");

/* Written by user space only: whether and where a socket's envelopes go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_SOCKS_MAX);
	__type(key, __u64);
	__type(value, struct fp_ctl);
} fp_ctl SEC(".maps");

/* Written by the verdict only (user space deletes a closed socket's). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_SOCKS_MAX);
	__type(key, __u64);
	__type(value, struct fp_stat);
} fp_stat SEC(".maps");

/* Walking one segment: the follower's state as it goes. */
struct walk {
	struct __sk_buff *skb;
	__u32 off;
	__u32 state, size, size_bytes, remaining;
	int stop;        /* a byte at a boundary the fast path does not carry */
};

/* One step: a run of payload, or one framing byte. */
static long
walk_step(__u32 index, void *data)
{
	struct walk *w = data;
	__u8 b;

	(void)index;
	if (w->off >= w->skb->len)
		return 1;
	if (w->state == FP_FLOW_PAYLOAD) {
		__u32 left = w->skb->len - w->off;
		__u32 take = left < w->remaining ? left : w->remaining;

		w->off += take;
		w->remaining -= take;
		if (w->remaining == 0)
			w->state = FP_FLOW_RECORD;
		return 0;
	}
	if (bpf_skb_load_bytes(w->skb, w->off, &b, 1) < 0) {
		w->stop = 1;
		return 1;
	}
	if (w->state != FP_FLOW_SIZE) {     /* at a record boundary */
		if (b != REC_SIZED_ENVELOPE) {
			w->stop = 1;
			return 1;
		}
		w->state = FP_FLOW_SIZE;
		w->size = 0;
		w->size_bytes = 0;
		w->off++;
		return 0;
	}
	/* FP_FLOW_SIZE: an mbint of at most 5 bytes, the 5th at most 0x07
	 * (nmf.c's mbint_step). */
	if (w->size_bytes == FP_MBINT_MAX - 1 && b > 0x07) {
		w->stop = 1;
		return 1;
	}
	w->size |= (__u32)(b & 0x7f) << (7 * (w->size_bytes & 7));
	w->size_bytes++;
	w->off++;
	if (!(b & 0x80)) {
		w->remaining = w->size;
		w->state = w->size > 0 ? FP_FLOW_PAYLOAD : FP_FLOW_RECORD;
	}
	return 0;
}

SEC("sk_skb")
int
fp_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct fp_stat *st = bpf_map_lookup_elem(&fp_stat, &cookie);
	struct fp_ctl *ctl = bpf_map_lookup_elem(&fp_ctl, &cookie);
	struct walk w = { .skb = skb };

	if (st == NULL) {
		struct fp_stat fresh = {0};

		bpf_map_update_elem(&fp_stat, &cookie, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&fp_stat, &cookie);
		if (st == NULL)
			return SK_PASS;
	}
	/* Armed, not stopped since, and every byte passed before read by
	 * user space: otherwise this segment would overtake those. */
	if (ctl == NULL || ctl->arm == 0 || st->stopped == ctl->arm ||
	    st->passed != ctl->passed)
		goto pass;
	if (st->armed != ctl->arm) {
		/* A new arming starts where user space's follower stands:
		 * at a boundary, in a size or in a payload. */
		st->armed = ctl->arm;
		st->state = ctl->state;
		st->size = ctl->size;
		st->size_bytes = ctl->size_bytes;
		st->remaining = ctl->remaining;
	}
	w.state = st->state;
	w.size = st->size;
	w.size_bytes = st->size_bytes;
	w.remaining = st->remaining;
	bpf_loop(FP_WALK_MAX, walk_step, &w, 0);
	/* An empty segment is a FIN: user space passes it on, after the
	 * bytes before it. */
	if (skb->len == 0 || w.stop || w.off < skb->len ||
	    bpf_sk_redirect_hash(skb, &fp_socks, &ctl->peer, 0) != SK_PASS) {
		/* The follower's state stays as at this segment's first
		 * byte: user space goes on from there. */
		st->stopped = ctl->arm;
		goto pass;
	}
	st->state = w.state;
	st->size = w.size;
	st->size_bytes = w.size_bytes;
	st->remaining = w.remaining;
	st->redirected += skb->len;
	st->segments++;
	return SK_PASS;
pass:
	st->passed += skb->len;
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
