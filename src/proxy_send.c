/*
 * proxy_send.c - the PROXY protocol header towards a backend (proxy_send.h).
 */
#include "proxy_send.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* The v2 signature, then version 2 with the PROXY or LOCAL command. */
static const uint8_t v2_sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};
#define V2_CMD_LOCAL 0x20
#define V2_CMD_PROXY 0x21
#define V2_FAM_UNSPEC 0x00
#define V2_FAM_TCP4 0x11
#define V2_FAM_TCP6 0x21

/* One end of the connection, as the header writes it. */
struct end {
	int family;              /* AF_INET, AF_INET6, or 0: neither */
	uint8_t addr[16];        /* 4 bytes for AF_INET */
	uint16_t port;           /* host order */
};

/* sa as an end: a mapped IPv6 address becomes the IPv4 one it holds. */
static void
end_of(const struct sockaddr *sa, struct end *e)
{
	memset(e, 0, sizeof(*e));
	if (sa != NULL && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		e->family = AF_INET;
		memcpy(e->addr, &in->sin_addr, 4);
		e->port = ntohs(in->sin_port);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		e->port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			e->family = AF_INET;
			memcpy(e->addr, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			e->family = AF_INET6;
			memcpy(e->addr, &in6->sin6_addr, 16);
		}
	}
}

/* An IPv4 end beside an IPv6 one: written as its mapped IPv6 address. */
static void
end_to_v6(struct end *e)
{
	if (e->family != AF_INET)
		return;
	memmove(e->addr + 12, e->addr, 4);
	memset(e->addr, 0, 10);
	e->addr[10] = e->addr[11] = 0xFF;
	e->family = AF_INET6;
}

static size_t
header_v1(const struct end *s, const struct end *d, uint8_t *out)
{
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	int n;

	if (s->family == 0) {
		memcpy(out, "PROXY UNKNOWN\r\n", 15);
		return 15;
	}
	inet_ntop(s->family, s->addr, sa, sizeof(sa));
	inet_ntop(d->family, d->addr, da, sizeof(da));
	n = snprintf((char *)out, PROXY_SEND_MAX, "PROXY %s %s %s %u %u\r\n",
	    s->family == AF_INET ? "TCP4" : "TCP6", sa, da, s->port, d->port);
	return (size_t)n;
}

static size_t
header_v2(const struct end *s, const struct end *d, uint8_t *out)
{
	size_t alen = s->family == AF_INET ? 4 : 16, len;

	memcpy(out, v2_sig, sizeof(v2_sig));
	if (s->family == 0) {
		out[12] = V2_CMD_LOCAL;
		out[13] = V2_FAM_UNSPEC;
		out[14] = out[15] = 0;
		return 16;
	}
	out[12] = V2_CMD_PROXY;
	out[13] = s->family == AF_INET ? V2_FAM_TCP4 : V2_FAM_TCP6;
	len = 2 * alen + 4;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	memcpy(out + 16, s->addr, alen);
	memcpy(out + 16 + alen, d->addr, alen);
	out[16 + 2 * alen] = (uint8_t)(s->port >> 8);
	out[17 + 2 * alen] = (uint8_t)s->port;
	out[18 + 2 * alen] = (uint8_t)(d->port >> 8);
	out[19 + 2 * alen] = (uint8_t)d->port;
	return 16 + len;
}

size_t
proxy_send_header(enum proxy_send_version v, const struct sockaddr *src,
    const struct sockaddr *dst, uint8_t *out)
{
	struct end s, d;

	end_of(src, &s);
	end_of(dst, &d);
	if (s.family == 0 || d.family == 0) {
		s.family = d.family = 0;
	} else if (s.family != d.family) {
		end_to_v6(&s);
		end_to_v6(&d);
	}
	return v == PROXY_SEND_V1 ? header_v1(&s, &d, out) : header_v2(&s, &d, out);
}

void
proxy_send_client_key(const struct sockaddr *client, struct addr *key)
{
	struct end e;

	end_of(client, &e);
	memset(key, 0, sizeof(*key));
	if (e.family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&key->ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, e.addr, 4);
		key->len = sizeof(*in);
	} else if (e.family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&key->ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, e.addr, 16);
		key->len = sizeof(*in6);
	}
}
