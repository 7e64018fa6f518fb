/*
 * proxy_send.h - the PROXY protocol header nettcpd sends a backend
 * (send_proxy), so that the service sees the client's address and not
 * nettcpd's.  Pure: addresses in, bytes out, no socket.  (The header nettcpd
 * reads on its own listeners is another file's job.)
 *
 * The spec is HAProxy's doc/proxy-protocol.txt.  Version 1 is one text
 * line, version 2 a binary block; both carry the source (the client) and
 * the destination (the address the client connected to).  An IPv4-mapped
 * IPv6 address is the IPv4 client it stands for: with both ends IPv4 (or
 * mapped) the header is TCP4, so a backend reads 192.0.2.1 and not
 * ::ffff:192.0.2.1, as nettcpd's own ACLs and logs do.  One IPv4 end and
 * one IPv6 end: TCP6, the IPv4 one written mapped (the spec wants one
 * family for both).  An end that is neither (a unix socket): version 1
 * says UNKNOWN, version 2 sends the LOCAL command without addresses, and
 * the backend uses the connection's own addresses, as the spec says.
 */
#ifndef NETTCPD_PROXY_SEND_H
#define NETTCPD_PROXY_SEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

enum proxy_send_version {
	PROXY_SEND_OFF = 0,
	PROXY_SEND_V1 = 1,
	PROXY_SEND_V2 = 2,
};

/* The longest header written: a TCP6 line of version 1 is at most 104
 * bytes with its CRLF (the spec's 107 leaves room for a NUL). */
#define PROXY_SEND_MAX 108u

/*
 * Write the header of version v (V1 or V2) for a connection from src to
 * dst into out (PROXY_SEND_MAX bytes).  Returns its length.
 */
size_t proxy_send_header(enum proxy_send_version v, const struct sockaddr *src,
    const struct sockaddr *dst, uint8_t *out);

/*
 * The client as a header names it, for comparing two clients: the address
 * alone (port 0), an IPv4-mapped one as IPv4.  A backend connection that
 * carries a header is pooled for this key only (bpool.h).
 */
void proxy_send_client_key(const struct sockaddr *client, struct addr *key);

#endif
