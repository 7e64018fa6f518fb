/*
 * cidr.c - address prefixes and matching a client address against a list
 * of them.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "decimal.h"

int
cidr_parse(const char *text, struct cidr *out, char *why, size_t whylen)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned long bits;
	unsigned max, i;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(addr)) {
		snprintf(why, whylen, "not an IPv4 or IPv6 address");
		return -1;
	}
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		snprintf(why, whylen, "not an IPv4 or IPv6 address");
		return -1;
	}
	out->prefix = max;
	if (slash != NULL) {
		const char *s = slash + 1;

		if (decimal_parse(&s, max, &bits) < 0 || *s != '\0') {
			snprintf(why, whylen, "the prefix length is 0 to %u", max);
			return -1;
		}
		out->prefix = (unsigned)bits;
	}
	for (i = out->prefix; i < max; i++)
		if (out->addr[i / 8] & (0x80u >> (i % 8))) {
			snprintf(why, whylen, "bits set past the /%u prefix",
			    out->prefix);
			return -1;
		}
	return 0;
}

static int
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	uint8_t mask = (uint8_t)(0xFFu << (8 - rest));

	return memcmp(a, b, whole) == 0 &&
	    (rest == 0 || ((a[whole] ^ b[whole]) & mask) == 0);
}

int
cidr_match(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	const uint8_t *addr;
	int family = sa->sa_family;

	if (family == AF_INET) {
		addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		addr = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			addr += 12;
		}
	} else {
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (list[i].family == family &&
		    prefix_equal(list[i].addr, addr, list[i].prefix))
			return 1;
	return 0;
}
