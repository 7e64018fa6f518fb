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

/* Longest text addr_format() writes: "unix:" and a path of sizeof(sun_path)
 * - 1 bytes, NUL ("[" v6 "]:" port is shorter). */
#define ADDR_TEXT_MAX 128

/* What addr_parse() accepts beside "IPv4:port" and "[IPv6]:port". */
#define ADDR_RESOLVE 1	/* "hostname:port", resolved now with getaddrinfo
			 * (first address wins) */
#define ADDR_UNIX 2	/* "unix:/absolute/path", an AF_UNIX stream socket */

/*
 * Parse an address as the configuration writes it, with what flags
 * (ADDR_RESOLVE, ADDR_UNIX) allow.  Returns 0, or -1 with a reason in err
 * (errlen bytes).
 */
int addr_parse(const char *text, int flags, struct addr *out, char *err,
    size_t errlen);

/* Write "1.2.3.4:80", "[::1]:80" or "unix:/run/x.sock" into buf
 * (ADDR_TEXT_MAX bytes). */
const char *addr_format(const struct sockaddr *sa, char *buf, size_t buflen);

/* Write the address alone, "1.2.3.4" or "::1" (no brackets, no port), into
 * buf (ADDR_TEXT_MAX bytes): what a log shipper parses as an IP. */
const char *addr_format_ip(const struct sockaddr *sa, char *buf, size_t buflen);

/* Whether a and b are the same AF_INET or AF_INET6 address and port, or
 * the same AF_UNIX path. */
int addr_equal(const struct addr *a, const struct addr *b);

/* The port of an AF_INET or AF_INET6 address, host order; 0 for AF_UNIX. */
uint16_t addr_port(const struct sockaddr *sa);

#endif
