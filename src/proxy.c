/*
 * proxy.c - the PROXY protocol header, versions 1 and 2, read strictly:
 * TCP over IPv4 or IPv6, or the balancer's own connection (v2 LOCAL, v1
 * UNKNOWN), nothing else.  Pure: no I/O, no allocation (inet_pton only
 * reads its string).
 *
 * An error is returned as soon as the bytes so far cannot begin a valid
 * header, so a client that sends a preamble where a header must be is
 * refused at its first byte, and a v2 length over the limit is refused
 * before any of it is awaited.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_signature[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};
static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN (sizeof(v1_prefix) - 1)

/* v2: the high nibble of byte 12 is the version, the low one the command;
 * byte 13 is the address family (high) and the transport (low). */
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TCP4 0x11
#define V2_TCP6 0x21
#define V2_TCP4_ADDRS 12u  /* two IPv4 addresses, two ports */
#define V2_TCP6_ADDRS 36u  /* two IPv6 addresses, two ports */
#define V2_TLV_HEAD 3u     /* type, then a 16-bit length */

void
proxy_parser_init(struct proxy_parser *p)
{
	p->status = PROXY_NEED_MORE;
	p->scanned = V1_PREFIX_LEN;
}

const char *
proxy_status_text(int status)
{
	switch (status) {
	case PROXY_NEED_MORE: return "incomplete header";
	case PROXY_DONE: return "header read";
	case PROXY_ERR_SIGNATURE: return "no PROXY header (neither \"PROXY \" "
	    "nor the v2 signature)";
	case PROXY_ERR_VERSION: return "v2 header of another version";
	case PROXY_ERR_COMMAND: return "v2 command neither LOCAL nor PROXY";
	case PROXY_ERR_FAMILY: return "not TCP over IPv4 or IPv6";
	case PROXY_ERR_LENGTH: return "v2 length over the limit or too short "
	    "for its addresses";
	case PROXY_ERR_TLV: return "v2 TLV overruns the header";
	case PROXY_ERR_SYNTAX: return "malformed v1 line";
	case PROXY_ERR_TOO_LONG: return "v1 line without CRLF within 107 bytes";
	case PROXY_ERR_ADDRESS: return "bad v1 address or port";
	case PROXY_ERR_DONE: return "header already read";
	default: return "unknown PROXY status";
	}
}

/* Whether buf[0 .. len) begins sig (of siglen bytes) as far as it goes. */
static int
begins(const uint8_t *buf, size_t len, const uint8_t *sig, size_t siglen)
{
	return memcmp(buf, sig, len < siglen ? len : siglen) == 0;
}

/* A v1 port: decimal 0 to 65535, no sign, no leading zero. */
static int
v1_port(const uint8_t *s, size_t n, uint16_t *out)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = htons((uint16_t)v);
	return 0;
}

/* A v1 address of family af (inet_pton's strict forms) and a port. */
static int
v1_sockaddr(int af, const uint8_t *addr, size_t alen, const uint8_t *port,
    size_t plen, struct sockaddr_storage *out)
{
	char text[INET6_ADDRSTRLEN];
	uint16_t nport;

	if (alen == 0 || alen >= sizeof(text) || v1_port(port, plen, &nport) < 0)
		return -1;
	/* inet_pton would stop at a NUL and take what came before it. */
	for (size_t i = 0; i < alen; i++)
		if (!((addr[i] >= '0' && addr[i] <= '9') ||
		    (addr[i] >= 'a' && addr[i] <= 'f') ||
		    (addr[i] >= 'A' && addr[i] <= 'F') ||
		    addr[i] == '.' || addr[i] == ':'))
			return -1;
	memcpy(text, addr, alen);
	text[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (af == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_port = nport;
		return inet_pton(AF_INET, text, &sin->sin_addr) == 1 ? 0 : -1;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = nport;
		return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1 ? 0 : -1;
	}
}

/* The fields of a v1 line, line[0 .. n) after "PROXY ", before CRLF. */
static int
v1_fields(const uint8_t *line, size_t n, struct proxy_header *out)
{
	const uint8_t *f[4];
	size_t flen[4], i = 5, k;
	int af;

	/* "UNKNOWN", then anything: the receiver uses the socket's own. */
	if (n >= 7 && memcmp(line, "UNKNOWN", 7) == 0 && (n == 7 || line[7] == ' ')) {
		out->local = 1;
		return PROXY_DONE;
	}
	if (n < 5 || (memcmp(line, "TCP4 ", 5) != 0 && memcmp(line, "TCP6 ", 5) != 0))
		return PROXY_ERR_FAMILY;
	af = line[3] == '4' ? AF_INET : AF_INET6;
	/* Exactly four fields, one space between each, none after. */
	for (k = 0; k < 4; k++) {
		f[k] = line + i;
		while (i < n && line[i] != ' ')
			i++;
		flen[k] = (size_t)(line + i - f[k]);
		if (flen[k] == 0 || (k < 3 && i == n))
			return PROXY_ERR_SYNTAX;
		i++; /* past the space (or the end, k == 3) */
	}
	if (i != n + 1)
		return PROXY_ERR_SYNTAX;
	if (v1_sockaddr(af, f[0], flen[0], f[2], flen[2], &out->src) < 0 ||
	    v1_sockaddr(af, f[1], flen[1], f[3], flen[3], &out->dst) < 0)
		return PROXY_ERR_ADDRESS;
	out->local = 0;
	return PROXY_DONE;
}

static int
parse_v1(struct proxy_parser *p, const uint8_t *buf, size_t len,
    struct proxy_header *out)
{
	/* The CR may stand at PROXY_V1_MAX - 2 at most, its LF after it. */
	size_t limit = len < PROXY_V1_MAX - 1 ? len : PROXY_V1_MAX - 1;
	size_t e;
	int status;

	if (!begins(buf, len, (const uint8_t *)v1_prefix, V1_PREFIX_LEN))
		return PROXY_ERR_SIGNATURE;
	if (len <= V1_PREFIX_LEN)
		return PROXY_NEED_MORE;
	for (e = p->scanned; e < limit; e++)
		if (buf[e] == '\r' || buf[e] == '\n')
			break;
	p->scanned = e;
	if (e == limit)
		return len >= PROXY_V1_MAX - 1 ? PROXY_ERR_TOO_LONG : PROXY_NEED_MORE;
	if (buf[e] == '\n')
		return PROXY_ERR_SYNTAX;
	if (e + 1 == len)
		return PROXY_NEED_MORE;
	if (buf[e + 1] != '\n')
		return PROXY_ERR_SYNTAX;
	status = v1_fields(buf + V1_PREFIX_LEN, e - V1_PREFIX_LEN, out);
	out->version = 1;
	out->len = e + 2;
	return status;
}

static void
v2_sockaddr(int af, const uint8_t *addr, const uint8_t *port,
    struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (af == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		memcpy(&sin->sin_port, port, 2);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		memcpy(&sin6->sin6_port, port, 2);
	}
}

static int
parse_v2(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	size_t n, addrs = 0, off;
	int cmd;

	if (!begins(buf, len, v2_signature, sizeof(v2_signature)))
		return PROXY_ERR_SIGNATURE;
	if (len <= 12)
		return PROXY_NEED_MORE;
	if (buf[12] >> 4 != 2)
		return PROXY_ERR_VERSION;
	cmd = buf[12] & 0x0F;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return PROXY_ERR_COMMAND;
	if (len <= 13)
		return PROXY_NEED_MORE;
	if (cmd == V2_CMD_PROXY) {
		if (buf[13] == V2_TCP4)
			addrs = V2_TCP4_ADDRS;
		else if (buf[13] == V2_TCP6)
			addrs = V2_TCP6_ADDRS;
		else
			return PROXY_ERR_FAMILY;
	}
	if (len < PROXY_V2_FIXED)
		return PROXY_NEED_MORE;
	n = (size_t)buf[14] << 8 | buf[15];
	if (n > PROXY_V2_LEN_MAX || n < addrs)
		return PROXY_ERR_LENGTH;
	if (len < PROXY_V2_FIXED + n)
		return PROXY_NEED_MORE;
	out->version = 2;
	out->len = PROXY_V2_FIXED + n;
	/* LOCAL: whatever follows is skipped, as the spec asks. */
	out->local = cmd == V2_CMD_LOCAL;
	if (out->local)
		return PROXY_DONE;
	/* TLVs are skipped, but each must lie inside the header. */
	for (off = PROXY_V2_FIXED + addrs; off < out->len; ) {
		if (out->len - off < V2_TLV_HEAD)
			return PROXY_ERR_TLV;
		off += V2_TLV_HEAD + ((size_t)buf[off + 1] << 8 | buf[off + 2]);
		if (off > out->len)
			return PROXY_ERR_TLV;
	}
	if (addrs == V2_TCP4_ADDRS) {
		v2_sockaddr(AF_INET, buf + 16, buf + 24, &out->src);
		v2_sockaddr(AF_INET, buf + 20, buf + 26, &out->dst);
	} else {
		v2_sockaddr(AF_INET6, buf + 16, buf + 48, &out->src);
		v2_sockaddr(AF_INET6, buf + 32, buf + 50, &out->dst);
	}
	return PROXY_DONE;
}

int
proxy_parse(struct proxy_parser *p, const uint8_t *buf, size_t len,
    struct proxy_header *out)
{
	if (p->status == PROXY_DONE)
		return PROXY_ERR_DONE;
	if (p->status != PROXY_NEED_MORE)
		return p->status;
	if (len == 0)
		return PROXY_NEED_MORE;
	if (buf[0] == v1_prefix[0])
		p->status = parse_v1(p, buf, len, out);
	else if (buf[0] == v2_signature[0])
		p->status = parse_v2(buf, len, out);
	else
		p->status = PROXY_ERR_SIGNATURE;
	return p->status;
}
