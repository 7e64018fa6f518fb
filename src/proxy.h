/*
 * proxy.h - the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) that an L4 balancer in front of a listen_proxy
 * listener sends before the client's first byte: a pure, resumable parser
 * over bytes, like nmf.h's.
 */
#ifndef NETTCPD_PROXY_H
#define NETTCPD_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* v1: "PROXY TCP6 " + two IPv6 addresses + two ports, spaces and CRLF. */
#define PROXY_V1_MAX 107u
/* v2: the fixed part (signature, version and command, family, length). */
#define PROXY_V2_FIXED 16u
/*
 * v2: the most bytes after the fixed part nettcpd reads (addresses and
 * TLVs).  The addresses take 36 at most; balancers add a few short TLVs
 * (AWS a VPC endpoint id, Azure a link id, HAProxy a unique id of up to
 * 128 bytes).  A longer header is refused before any of it is awaited.
 */
#define PROXY_V2_LEN_MAX 1024u
#define PROXY_HEADER_MAX (PROXY_V2_FIXED + PROXY_V2_LEN_MAX)

/* What proxy_parse() returns. */
enum proxy_status {
	PROXY_NEED_MORE = 0,       /* a header so far: call again with more */
	PROXY_DONE = 1,            /* a whole header, see struct proxy_header */
	PROXY_ERR_SIGNATURE = -1,  /* neither "PROXY " nor the v2 signature */
	PROXY_ERR_VERSION = -2,    /* v2: a version other than 2 */
	PROXY_ERR_COMMAND = -3,    /* v2: a command other than LOCAL or PROXY */
	PROXY_ERR_FAMILY = -4,     /* not TCP over IPv4 or IPv6 (UNIX, UDP, */
	                           /* UNSPEC with PROXY) */
	PROXY_ERR_LENGTH = -5,     /* v2: a length over PROXY_V2_LEN_MAX or */
	                           /* too short for its addresses */
	PROXY_ERR_TLV = -6,        /* v2: a TLV that overruns the header */
	PROXY_ERR_SYNTAX = -7,     /* v1: a line not as the spec writes it */
	PROXY_ERR_TOO_LONG = -8,   /* v1: no CRLF within PROXY_V1_MAX bytes */
	PROXY_ERR_ADDRESS = -9,    /* v1: an address or port that does not read */
	PROXY_ERR_DONE = -10,      /* called again after the header was read */
};

struct proxy_parser {
	int status;     /* sticky once an error or PROXY_DONE */
	size_t scanned; /* v1: bytes searched for the CR so far */
};

/* A header read.  Unless local, src is the client and dst the address it
 * connected to (AF_INET or AF_INET6, ports in network order). */
struct proxy_header {
	unsigned version;           /* 1 or 2 */
	int local;                  /* v2 LOCAL or v1 UNKNOWN: the balancer's */
	                            /* own connection (a health check); the */
	                            /* socket's addresses stand */
	struct sockaddr_storage src, dst;
	size_t len;                 /* header bytes: the stream goes on after */
};

void proxy_parser_init(struct proxy_parser *p);

/*
 * Read a header from buf, which holds the stream from its first byte (len
 * may grow between calls; bytes past the header are not looked at).
 * Returns PROXY_NEED_MORE, PROXY_DONE with *out filled, or a negative
 * PROXY_ERR_* as soon as the bytes so far cannot begin a valid header;
 * errors are sticky.  Never reads past buf[len - 1], never allocates.
 */
int proxy_parse(struct proxy_parser *p, const uint8_t *buf, size_t len,
    struct proxy_header *out);

/* A static, lower-case reason for a PROXY_ERR_* ("bad v2 signature"). */
const char *proxy_status_text(int status);

#endif
