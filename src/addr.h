/*
 * addr.h - socket addresses as the configuration writes them.
 */
#ifndef NETTCPD_ADDR_H
#define NETTCPD_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Longest text addr_format() writes: "[" v6 "]:" port, NUL. */
#define ADDR_TEXT_MAX 64

/*
 * Parse "IPv4:port", "[IPv6]:port" or, when resolve is non-zero,
 * "hostname:port" (resolved now with getaddrinfo, first address wins).
 * Returns 0, or -1 with a reason in err (errlen bytes).
 */
int addr_parse(const char *text, int resolve, struct addr *out, char *err,
    size_t errlen);

/* Write "1.2.3.4:80" or "[::1]:80" into buf (ADDR_TEXT_MAX bytes). */
const char *addr_format(const struct sockaddr *sa, char *buf, size_t buflen);

/* Write the address alone, "1.2.3.4" or "::1" (no brackets, no port), into
 * buf (ADDR_TEXT_MAX bytes): what a log shipper parses as an IP. */
const char *addr_format_ip(const struct sockaddr *sa, char *buf, size_t buflen);

/* Whether a and b are the same AF_INET or AF_INET6 address and port. */
int addr_equal(const struct addr *a, const struct addr *b);

/* The port of an AF_INET or AF_INET6 address, host order. */
uint16_t addr_port(const struct sockaddr *sa);

#endif
