/*
 * relay.bpf.c - nmf-relay's sockmap mode (bench/relay.c loads it): an
 * sk_skb verdict that sends every segment to the peer socket, parsing
 * nothing: the kernel path alone, what any sockmap fast path for a proxy
 * costs before it parses a byte (nettcpd had one, which walked the MC-NMF
 * records first; it is gone, for what these figures show: README).
 *
 * One sockhash, keyed by socket cookie, holds each socket under its PEER's
 * cookie: the verdict looks up its own socket's cookie and finds the socket
 * to send to, with no second map.  No stream parser: on 6.18 strparser
 * hands its verdict the whole segment, not the message at its offset.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Sockets in the relay at once (two per connection). */
#define RELAY_SOCKS_MAX 65536

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, RELAY_SOCKS_MAX);
	__type(key, __u64);             /* the peer's cookie */
	__type(value, __u64);
} relay_socks SEC(".maps");

SEC("sk_skb")
int
relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);

	/* An empty segment is a FIN: to user space, which forwards the
	 * half-close once the bytes before it have reached the peer. */
	if (skb->len == 0)
		return SK_PASS;
	/* Egress: sent out of the peer socket (by its psock's backlog worker). */
	return bpf_sk_redirect_hash(skb, &relay_socks, &cookie, 0);
}

char LICENSE[] SEC("license") = "GPL";
