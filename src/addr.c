/*
 * addr.c - socket addresses as the configuration writes them.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "decimal.h"

/* Room for any host part we accept: a DNS name is at most 253 characters. */
#define ADDR_HOST_MAX 256

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Strict decimal 1..65535: no sign, no spaces, nothing after the digits. */
static int
parse_port(const char *s, uint16_t *out)
{
	unsigned long v;

	if (decimal_parse(&s, 65535, &v) < 0 || *s != '\0' || v == 0)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/*
 * getaddrinfo() hands odd strings to inet_aton(), which accepts "1.2.3.4 junk";
 * keeping host names to DNS characters stops such text from resolving.
 */
static int
is_host_name(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
			return 0;
	}
	return 1;
}

static int
resolve_host(const char *host, uint16_t port, struct addr *out,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	/*
	 * No AI_ADDRCONFIG: it ignores loopback, so "localhost" would not
	 * resolve on a host whose only interface is lo.
	 */
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		set_err(err, errlen, "cannot resolve '%s': %s", host,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	if (res->ai_family == AF_INET)
		((struct sockaddr_in *)&out->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&out->ss)->sin6_port = htons(port);
	freeaddrinfo(res);
	return 0;
}

static const char unix_prefix[] = "unix:";

/*
 * "unix:/absolute/path".  Absolute only: nettcpd's working directory is not
 * the file's, and a relative path would name another file after a chdir.
 * No abstract names ("unix:@name"): they have no file permissions, so any
 * local user could bind the name before the service and be its backend.
 */
static int
parse_unix(const char *path, struct addr *out, char *err, size_t errlen)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
	size_t len = strlen(path);

	if (len == 0) {
		set_err(err, errlen, "no path after 'unix:'");
		return -1;
	}
	if (path[0] == '@') {
		set_err(err, errlen, "abstract unix socket names are not "
		    "supported: they have no file permissions to say who may "
		    "be the backend");
		return -1;
	}
	if (path[0] != '/') {
		set_err(err, errlen, "unix socket path must be absolute "
		    "(start with '/')");
		return -1;
	}
	if (len >= sizeof(un->sun_path)) {
		set_err(err, errlen, "unix socket path is %zu bytes long, "
		    "longer than the system's %zu", len, sizeof(un->sun_path) - 1);
		return -1;
	}
	memset(out, 0, sizeof(*out));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, len + 1);
	out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	return 0;
}

int
addr_parse(const char *text, int flags, struct addr *out, char *err,
    size_t errlen)
{
	char host[ADDR_HOST_MAX];
	const char *port_text, *colon;
	size_t hostlen;
	uint16_t port;
	int v6 = 0;
	struct in_addr a4;
	struct in6_addr a6;

	if (strncmp(text, unix_prefix, sizeof(unix_prefix) - 1) == 0) {
		if (!(flags & ADDR_UNIX)) {
			set_err(err, errlen, "a unix socket is not accepted here, "
			    "only as a backend");
			return -1;
		}
		return parse_unix(text + sizeof(unix_prefix) - 1, out, err, errlen);
	}
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL) {
			set_err(err, errlen, "bad IPv6 literal: no ']'");
			return -1;
		}
		hostlen = (size_t)(close - text - 1);
		if (hostlen >= sizeof(host)) {
			set_err(err, errlen, "bad IPv6 literal");
			return -1;
		}
		memcpy(host, text + 1, hostlen);
		host[hostlen] = '\0';
		if (close[1] == '\0') {
			set_err(err, errlen, "missing port");
			return -1;
		}
		if (close[1] != ':') {
			set_err(err, errlen, "bad port: expected ':' after ']'");
			return -1;
		}
		port_text = close + 2;
		v6 = 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) {
			set_err(err, errlen, "missing port");
			return -1;
		}
		hostlen = (size_t)(colon - text);
		if (memchr(text, ':', hostlen) != NULL) {
			set_err(err, errlen,
			    "bad IPv6 literal: write it in brackets, [addr]:port");
			return -1;
		}
		if (hostlen >= sizeof(host)) {
			set_err(err, errlen, "host name too long");
			return -1;
		}
		memcpy(host, text, hostlen);
		host[hostlen] = '\0';
		port_text = colon + 1;
	}

	if (*port_text == '\0') {
		set_err(err, errlen, "missing port");
		return -1;
	}
	if (parse_port(port_text, &port) < 0) {
		set_err(err, errlen, "bad port '%s' (1 to 65535)", port_text);
		return -1;
	}
	if (host[0] == '\0') {
		set_err(err, errlen, "missing host");
		return -1;
	}

	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

		if (inet_pton(AF_INET6, host, &a6) != 1) {
			set_err(err, errlen, "bad IPv6 literal '%s'", host);
			return -1;
		}
		memset(out, 0, sizeof(*out));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = a6;
		sin6->sin6_port = htons(port);
		out->len = sizeof(*sin6);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a4) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;

		memset(out, 0, sizeof(*out));
		sin->sin_family = AF_INET;
		sin->sin_addr = a4;
		sin->sin_port = htons(port);
		out->len = sizeof(*sin);
		return 0;
	}
	if (!(flags & ADDR_RESOLVE)) {
		set_err(err, errlen, "'%s' is not an IP address", host);
		return -1;
	}
	if (!is_host_name(host)) {
		set_err(err, errlen, "bad host name '%s'", host);
		return -1;
	}
	return resolve_host(host, port, out, err, errlen);
}

const char *
addr_format_ip(const struct sockaddr *sa, char *buf, size_t buflen)
{
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		    buf, (socklen_t)buflen);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
		    buf, (socklen_t)buflen);
	else
		snprintf(buf, buflen, "(address family %d)", (int)sa->sa_family);
	return buf;
}

const char *
addr_format(const struct sockaddr *sa, char *buf, size_t buflen)
{
	char ip[ADDR_TEXT_MAX];

	if (sa->sa_family == AF_UNIX) {
		snprintf(buf, buflen, "%s%s", unix_prefix,
		    ((const struct sockaddr_un *)sa)->sun_path);
		return buf;
	}
	addr_format_ip(sa, ip, sizeof(ip));
	if (sa->sa_family == AF_INET)
		snprintf(buf, buflen, "%s:%u", ip, (unsigned)addr_port(sa));
	else if (sa->sa_family == AF_INET6)
		snprintf(buf, buflen, "[%s]:%u", ip, (unsigned)addr_port(sa));
	else
		snprintf(buf, buflen, "%s", ip);
	return buf;
}

uint16_t
addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

int
addr_equal(const struct addr *a, const struct addr *b)
{
	const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
	const struct sockaddr *sb = (const struct sockaddr *)&b->ss;

	if (sa->sa_family != sb->sa_family)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *ia = (const struct sockaddr_in *)sa;
		const struct sockaddr_in *ib = (const struct sockaddr_in *)sb;

		return ia->sin_port == ib->sin_port &&
		    ia->sin_addr.s_addr == ib->sin_addr.s_addr;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *ia = (const struct sockaddr_in6 *)sa;
		const struct sockaddr_in6 *ib = (const struct sockaddr_in6 *)sb;

		return ia->sin6_port == ib->sin6_port &&
		    ia->sin6_scope_id == ib->sin6_scope_id &&
		    memcmp(&ia->sin6_addr, &ib->sin6_addr, sizeof(ia->sin6_addr)) == 0;
	}
	if (sa->sa_family == AF_UNIX)
		return strcmp(((const struct sockaddr_un *)sa)->sun_path,
		    ((const struct sockaddr_un *)sb)->sun_path) == 0;
	return 0;
}
