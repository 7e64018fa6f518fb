/*
 * cidr.h - address prefixes ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7")
 * and whether a client address falls in a list of them: proxy_trusted.
 */
#ifndef NETTCPD_CIDR_H
#define NETTCPD_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t addr[16];    /* network order; 4 bytes for AF_INET */
	unsigned prefix;     /* bits that must match */
};

/*
 * Parse "ADDR" (a host) or "ADDR/BITS", IPv4 or IPv6 (no brackets); bits
 * past the prefix must be zero, so a typo cannot widen it.  Returns 0, or
 * -1 with a reason in why (whylen bytes).
 */
int cidr_parse(const char *text, struct cidr *out, char *why, size_t whylen);

/* Whether sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address as its
 * IPv4 address) is in one of the n prefixes. */
int cidr_match(const struct cidr *list, size_t n, const struct sockaddr *sa);

#endif
