/*
 * via.h - parse and normalise net.tcp URIs the way System.Uri does, for
 * routing: the Via a client sends, and the prefixes routes are written with.
 */
#ifndef NETTCPD_VIA_H
#define NETTCPD_VIA_H

#include <stddef.h>
#include <stdint.h>

#include "nmf.h"

/* Room for a normalised path: percent-encoding can triple a byte. */
#define VIA_PATH_MAX (3u * NMF_MAX_VIA + 1u)
#define VIA_HOST_MAX 256u
#define VIA_MAX_SEGMENTS 512u

/* How a route prefix names its host (HTTP.SYS / WCF HostNameComparisonMode). */
enum via_host_class {
	VIA_HOST_STRONG = 0, /* "+": any host, tried first */
	VIA_HOST_EXACT = 1,  /* a name or address, compared case-insensitively */
	VIA_HOST_WEAK = 2,   /* "*": any host, tried last */
};

struct via {
	enum via_host_class host_class;
	char host[VIA_HOST_MAX];   /* lower-cased; IPv6 keeps its brackets; "" for + and * */
	uint16_t port;             /* as written, 0 if none */
	char path[VIA_PATH_MAX];   /* "/seg/seg", normalised (see via_parse), "" for the root */
	size_t path_len;
	size_t nsegments;
	/* seg_end[i] = length of path up to and including segment i */
	uint16_t seg_end[VIA_MAX_SEGMENTS];
};

enum via_flags {
	VIA_ALLOW_WILDCARD = 1, /* accept "+" and "*" as the host (route prefixes) */
};

/*
 * Parse an absolute net.tcp URI of len bytes (not NUL-terminated).
 *
 * Normalisation, so that equal URIs compare equal byte for byte:
 *  - scheme must be net.tcp (any case); userinfo, a relative URI or another
 *    scheme is refused;
 *  - host lower-cased; the port is kept but routing ignores it;
 *  - query and fragment dropped;
 *  - '\', %2F and %5C read as '/'; "." and ".." resolved (empty segments
 *    count while resolving, as in System.Uri, then are dropped);
 *  - percent-encoded unreserved characters decoded, other escapes kept with
 *    upper-case hex, bytes >= 0x80 and characters a URI may not hold escaped;
 *  - the path lower-cased (WCF compares with OrdinalIgnoreCase).
 *
 * Returns 0, or -1 with a static reason in *why.
 */
int via_parse(const char *uri, size_t len, int flags, struct via *out,
    const char **why);

/*
 * Where the authority (host and port) of uri[0..len) is, as via_parse()
 * reads it: from just after "net.tcp:" and its two slashes ('/' or '\\',
 * after any leading white space) to the path, query or fragment.  Returns
 * 0 with the span in *begin and *end, or -1 without such a scheme.
 */
int via_authority(const char *uri, size_t len, size_t *begin, size_t *end);

#endif
