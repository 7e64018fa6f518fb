/*
 * via.c - net.tcp URI normalisation.
 *
 * The backend re-parses the Via with System.Uri and matches its services on
 * the result, so the proxy must route on the very path the backend will see.
 * The rules below follow .NET Framework 4.8 for the net.tcp scheme
 * (referencesource System/net/System/URI.cs and _UriSyntax.cs, where
 * NetTcpSyntaxFlags holds ConvertPathSlashes, CompressPath and
 * UnEscapeDotsAndSlashes), and the comparison rules of WCF's UriPrefixTable.
 */
#include "via.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const char scheme_name[] = "net.tcp:";

/* <ctype.h> answers by locale; URI syntax is plain ASCII. */
static int
is_alpha(unsigned c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(unsigned c)
{
	return c >= '0' && c <= '9';
}

static unsigned
to_lower(unsigned c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int
hex_value(unsigned c)
{
	if (is_digit(c))
		return (int)(c - '0');
	c = to_lower(c);
	if (c >= 'a' && c <= 'f')
		return (int)(c - 'a' + 10);
	return -1;
}

/* RFC 3986 unreserved: the only escapes every normaliser may decode. */
static int
is_unreserved(unsigned c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' ||
	    c == '~';
}

/*
 * What System.Uri (RFC 3986 mode, .NET 4.5 and later) leaves unescaped in a
 * path: unreserved and reserved characters.  '/', '?' and '#' never get here.
 */
static int
is_path_literal(unsigned c)
{
	return is_unreserved(c) || (c != 0 && strchr(":@[]!$&'()*+,;=", (int)c));
}

/* Uri trims these (UriHelper.IsLWS) before parsing. */
static int
is_lws(unsigned c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* DNS labels, and non-ASCII bytes of an internationalised name. */
static int
is_host_char(unsigned c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' ||
	    c >= 0x80;
}

static int
is_slash(unsigned c)
{
	return c == '/' || c == '\\';
}

/*
 * Bytes of the path separator at p, 0 if there is none.  %2F and %5C
 * separate too: Uri unescapes them before compressing a net.tcp path, so
 * "/Public%2F..%2FAdmin" reaches the backend as "/Admin".
 */
static size_t
separator_len(const unsigned char *p, const unsigned char *end)
{
	int hi, lo;

	if (is_slash(*p))
		return 1;
	if (*p != '%' || end - p < 3)
		return 0;
	hi = hex_value(p[1]);
	lo = hex_value(p[2]);
	if (hi < 0 || lo < 0 || !is_slash((unsigned)(hi * 16 + lo)))
		return 0;
	return 3;
}

static size_t
write_escape(unsigned c, char *dst)
{
	static const char hex[] = "0123456789ABCDEF";

	dst[0] = '%';
	dst[1] = hex[c >> 4];
	dst[2] = hex[c & 15];
	return 3;
}

/*
 * Copy one path character from *pp to dst in normal form and advance *pp.
 * Returns the bytes written (1 or 3).
 */
static size_t
copy_path_char(const unsigned char **pp,
    const unsigned char *end, char *dst)
{
	const unsigned char *p = *pp;
	int hi = -1, lo = -1;
	unsigned c = *p;

	if (c == '%' && end - p >= 3) {
		hi = hex_value(p[1]);
		lo = hex_value(p[2]);
	}
	if (hi >= 0 && lo >= 0) {
		c = (unsigned)(hi * 16 + lo);
		*pp = p + 3;
		if (is_unreserved(c)) {
			dst[0] = (char)to_lower(c);
			return 1;
		}
		return write_escape(c, dst);
	}
	/* A '%' that starts no escape is data, and Uri writes it as %25. */
	*pp = p + 1;
	if (c != '%' && is_path_literal(c)) {
		dst[0] = (char)to_lower(c);
		return 1;
	}
	return write_escape(c, dst);
}

/* Consume "net.tcp:" and the two slashes of the authority. */
static int
parse_scheme(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char *p = *pp;
	size_t i, n = sizeof scheme_name - 1;

	if ((size_t)(end - p) < n + 2)
		return -1;
	for (i = 0; i < n; i++)
		if (to_lower(p[i]) != (unsigned char)scheme_name[i])
			return -1;
	if (!is_slash(p[n]) || !is_slash(p[n + 1]))
		return -1;
	*pp = p + n + 2;
	return 0;
}

/* Hosts compare as text, so the literal is written in inet_ntop's form. */
static int
parse_ipv6(const unsigned char *p, const unsigned char *end,
    struct via *out)
{
	char text[INET6_ADDRSTRLEN];
	struct in6_addr addr;
	size_t i, n = (size_t)(end - p);

	/* Zone ids ("%25eth0") are refused with everything not hex, ':' or '.'. */
	if (n >= sizeof text)
		return -1;
	for (i = 0; i < n; i++) {
		if (hex_value(p[i]) < 0 && p[i] != ':' && p[i] != '.')
			return -1;
		text[i] = (char)p[i];
	}
	text[n] = '\0';
	if (inet_pton(AF_INET6, text, &addr) != 1)
		return -1;
	out->host[0] = '[';
	inet_ntop(AF_INET6, &addr, out->host + 1, VIA_HOST_MAX - 2);
	strcat(out->host, "]");
	out->host_class = VIA_HOST_EXACT;
	return 0;
}

static int
parse_host_name(const unsigned char *p, const unsigned char *end,
    int flags, struct via *out, const char **why)
{
	size_t i, n = (size_t)(end - p);

	if (n == 0) {
		*why = "empty host";
		return -1;
	}
	if (n == 1 && (*p == '+' || *p == '*')) {
		if (!(flags & VIA_ALLOW_WILDCARD)) {
			*why = "wildcard host not allowed";
			return -1;
		}
		out->host_class = *p == '+' ? VIA_HOST_STRONG : VIA_HOST_WEAK;
		out->host[0] = '\0';
		return 0;
	}
	if (n >= VIA_HOST_MAX) {
		*why = "host too long";
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!is_host_char(p[i])) {
			*why = "bad host";
			return -1;
		}
		out->host[i] = (char)to_lower(p[i]);
	}
	out->host[n] = '\0';
	out->host_class = VIA_HOST_EXACT;
	return 0;
}

/* p is just past the host: nothing, or ':' and 1..65535. */
static int
parse_port(const unsigned char *p, const unsigned char *end,
    uint16_t *port)
{
	unsigned long value = 0;

	*port = 0;
	if (p == end)
		return 0;
	if (*p++ != ':' || p == end)
		return -1;
	for (; p < end; p++) {
		if (!is_digit(*p))
			return -1;
		value = value * 10 + (*p - '0');
		if (value > 65535)
			return -1;
	}
	/* 0 would read as "no port", which a route means differently. */
	if (value == 0)
		return -1;
	*port = (uint16_t)value;
	return 0;
}

/* The end of the authority that begins at p: the path, query or fragment. */
static const unsigned char *
authority_end(const unsigned char *p, const unsigned char *end)
{
	while (p < end && !is_slash(*p) && *p != '?' && *p != '#')
		p++;
	return p;
}

static int
parse_authority(const unsigned char **pp, const unsigned char *end,
    int flags, struct via *out, const char **why)
{
	const unsigned char *p = *pp, *auth_end = authority_end(p, end), *host_end;

	if (memchr(p, '@', (size_t)(auth_end - p))) {
		*why = "userinfo not allowed";
		return -1;
	}
	if (p < auth_end && *p == '[') {
		host_end = memchr(p, ']', (size_t)(auth_end - p));
		if (!host_end || parse_ipv6(p + 1, host_end, out) < 0 ||
		    (host_end + 1 < auth_end && host_end[1] != ':')) {
			*why = "bad IPv6 address";
			return -1;
		}
		host_end++;
	} else {
		host_end = memchr(p, ':', (size_t)(auth_end - p));
		if (!host_end)
			host_end = auth_end;
		if (parse_host_name(p, host_end, flags, out, why) < 0)
			return -1;
	}
	if (parse_port(host_end, auth_end, &out->port) < 0) {
		*why = "bad port";
		return -1;
	}
	*pp = auth_end;
	return 0;
}

/*
 * Build out->path from the path component p..end (which starts with a
 * separator, or is empty).  "." and ".." are resolved as Uri's Compress()
 * does: empty segments still count while they are resolved, so "/a//../b" is
 * "/a/b"; only then are they dropped, as UriPrefixTable skips them.
 *
 * The output fits: the input is at most NMF_MAX_VIA bytes and no byte turns
 * into more than three.
 */
static int
parse_path(const unsigned char *p, const unsigned char *end,
    struct via *out, const char **why)
{
	/* empties[i]: empty segments standing after the first i real ones */
	uint16_t empties[VIA_MAX_SEGMENTS + 1];
	size_t len = 0, nsegments = 0, seg_start, seg_len;
	const char *seg;

	empties[0] = 0;
	while (p < end && *p != '?' && *p != '#') {
		p += separator_len(p, end);
		out->path[len] = '/';
		seg_start = len + 1;
		len = seg_start;
		while (p < end && *p != '?' && *p != '#' &&
		    separator_len(p, end) == 0)
			len += copy_path_char(&p, end, out->path + len);

		seg = out->path + seg_start;
		seg_len = len - seg_start;
		if (seg_len == 0) {
			len = seg_start - 1;
			empties[nsegments]++;
		} else if (seg_len == 1 && seg[0] == '.') {
			len = seg_start - 1;
		} else if (seg_len == 2 && seg[0] == '.' && seg[1] == '.') {
			len = seg_start - 1;
			if (empties[nsegments] > 0) {
				empties[nsegments]--;
			} else if (nsegments > 0) {
				nsegments--;
				len = nsegments ? out->seg_end[nsegments - 1] : 0;
			}
		} else {
			if (nsegments == VIA_MAX_SEGMENTS) {
				*why = "too many path segments";
				return -1;
			}
			out->seg_end[nsegments++] = (uint16_t)len;
			empties[nsegments] = 0;
		}
	}
	out->path[len] = '\0';
	out->path_len = len;
	out->nsegments = nsegments;
	return 0;
}

int
via_parse(const char *uri, size_t len, int flags, struct via *out,
    const char **why)
{
	const unsigned char *p = (const unsigned char *)uri;
	const unsigned char *end = p + len;

	if (len > NMF_MAX_VIA) {
		*why = "URI too long";
		return -1;
	}
	while (p < end && is_lws(*p))
		p++;
	while (end > p && is_lws(end[-1]))
		end--;
	if (p == end) {
		*why = "empty URI";
		return -1;
	}
	if (parse_scheme(&p, end) < 0) {
		*why = "not an absolute net.tcp URI";
		return -1;
	}
	if (parse_authority(&p, end, flags, out, why) < 0)
		return -1;
	return parse_path(p, end, out, why);
}

int
via_authority(const char *uri, size_t len, size_t *begin, size_t *end)
{
	const unsigned char *start = (const unsigned char *)uri, *p = start;
	const unsigned char *e = start + len;

	while (p < e && is_lws(*p))
		p++;
	if (parse_scheme(&p, e) < 0)
		return -1;
	*begin = (size_t)(p - start);
	*end = (size_t)(authority_end(p, e) - start);
	return 0;
}
