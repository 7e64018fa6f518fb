/*
 * acl.c - CIDR lists: parsed, compiled to sorted disjoint ranges, matched.
 */
#include "acl.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest entry: a full IPv6 address with an IPv4 tail, "/128". */
#define ENTRY_MAX (INET6_ADDRSTRLEN + 4)

static const char space[] = " \t";

static int
u128_cmp(struct acl_u128 a, struct acl_u128 b)
{
	if (a.hi != b.hi)
		return a.hi < b.hi ? -1 : 1;
	return (a.lo > b.lo) - (a.lo < b.lo);
}

static struct acl_u128
u128_from_bytes(const uint8_t b[16])
{
	struct acl_u128 v = { 0, 0 };

	for (int i = 0; i < 8; i++) {
		v.hi = v.hi << 8 | b[i];
		v.lo = v.lo << 8 | b[i + 8];
	}
	return v;
}

/* The host part of a /bits prefix: its low 128 - bits bits set. */
static struct acl_u128
u128_host_mask(unsigned bits)
{
	struct acl_u128 m;

	m.hi = bits >= 64 ? 0 : bits == 0 ? UINT64_MAX : UINT64_MAX >> bits;
	m.lo = bits <= 64 ? UINT64_MAX : bits == 128 ? 0 : UINT64_MAX >> (bits - 64);
	return m;
}

/* An address as 128 bits, IPv4 as ::ffff:a.b.c.d; -1 for another family. */
static int
u128_from_sockaddr(const struct sockaddr *sa, struct acl_u128 *out)
{
	uint8_t b[16];

	if (sa->sa_family == AF_INET) {
		memset(b, 0, 10);
		b[10] = b[11] = 0xff;
		memcpy(b + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
	} else {
		return -1;
	}
	*out = u128_from_bytes(b);
	return 0;
}

/* Strict decimal bits, 0 to max: digits only, at most three. */
static int
parse_bits(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 3 || strspn(s, "0123456789") != n)
		return -1;
	for (; *s != '\0'; s++)
		v = v * 10 + (unsigned)(*s - '0');
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* One entry, already trimmed and NUL-terminated, into a range. */
static int
parse_entry(char *entry, struct acl_range *r, char *err, size_t errlen)
{
	char *slash = strchr(entry, '/');
	int v6 = strchr(entry, ':') != NULL;
	unsigned max = v6 ? 128 : 32, bits = max;
	uint8_t b[16];
	struct acl_u128 addr, host;

	if (slash != NULL) {
		*slash = '\0';
		if (parse_bits(slash + 1, max, &bits) < 0) {
			snprintf(err, errlen, "'%s/%s': the prefix length must be "
			    "0 to %u", entry, slash + 1, max);
			return -1;
		}
	}
	if (v6) {
		if (inet_pton(AF_INET6, entry, b) != 1)
			goto bad_address;
	} else {
		memset(b, 0, 10);
		b[10] = b[11] = 0xff;
		if (inet_pton(AF_INET, entry, b + 12) != 1)
			goto bad_address;
	}
	if (slash != NULL)
		*slash = '/';
	addr = u128_from_bytes(b);
	host = u128_host_mask(v6 ? bits : bits + 96);
	if ((addr.hi & host.hi) != 0 || (addr.lo & host.lo) != 0) {
		snprintf(err, errlen, "'%s': address bits set past the /%u prefix",
		    entry, bits);
		return -1;
	}
	r->first = addr;
	r->last.hi = addr.hi | host.hi;
	r->last.lo = addr.lo | host.lo;
	return 0;
bad_address:
	snprintf(err, errlen, "'%s': not an IPv%c address", entry, v6 ? '6' : '4');
	return -1;
}

struct acl *
acl_new(void)
{
	return calloc(1, sizeof(struct acl));
}

int
acl_add(struct acl *a, const char *text, char *err, size_t errlen)
{
	struct acl_range *grown;
	size_t start = a->n, count = 1;
	const char *s;

	for (s = text; (s = strchr(s, ',')) != NULL; s++)
		count++;
	if (a->cap - a->n < count) {
		size_t cap = a->n + count;

		if (cap < a->n || (grown = realloc(a->ranges, cap * sizeof(*grown)))
		    == NULL)
			return -2;
		a->ranges = grown;
		a->cap = cap;
	}
	for (s = text;; s++) {
		char entry[ENTRY_MAX + 1];
		size_t len;

		s += strspn(s, space);
		len = strcspn(s, ",");
		while (len > 0 && strchr(space, s[len - 1]) != NULL)
			len--;
		if (len == 0) {
			snprintf(err, errlen, "empty entry in the list");
			goto fail;
		}
		if (len > ENTRY_MAX) {
			snprintf(err, errlen, "'%.*s...': not an address", ENTRY_MAX,
			    s);
			goto fail;
		}
		memcpy(entry, s, len);
		entry[len] = '\0';
		if (parse_entry(entry, &a->ranges[a->n], err, errlen) < 0)
			goto fail;
		a->n++;
		s = strchr(s, ',');
		if (s == NULL)
			break;
	}
	a->compiled = 0;
	return 0;
fail:
	a->n = start;
	return -1;
}

static int
range_cmp(const void *x, const void *y)
{
	const struct acl_range *a = x, *b = y;

	return u128_cmp(a->first, b->first);
}

void
acl_compile(struct acl *a)
{
	size_t i, out = 0;

	if (a->n > 1)
		qsort(a->ranges, a->n, sizeof(*a->ranges), range_cmp);
	/* Merge overlapping and adjacent ranges: last + 1 >= first. */
	for (i = 0; i < a->n; i++) {
		struct acl_range *prev = out > 0 ? &a->ranges[out - 1] : NULL;
		struct acl_u128 next;

		if (prev != NULL) {
			next = prev->last;
			if (++next.lo == 0)
				next.hi++;
			/* prev->last all ones: it already covers the rest */
			if ((prev->last.hi == UINT64_MAX && prev->last.lo == UINT64_MAX)
			    || u128_cmp(a->ranges[i].first, next) <= 0) {
				if (u128_cmp(a->ranges[i].last, prev->last) > 0)
					prev->last = a->ranges[i].last;
				continue;
			}
		}
		a->ranges[out++] = a->ranges[i];
	}
	a->n = out;
	a->compiled = 1;
}

int
acl_match(const struct acl *a, const struct sockaddr *sa)
{
	struct acl_u128 v;
	size_t lo = 0, hi = a->n;

	assert(a->compiled);
	if (u128_from_sockaddr(sa, &v) < 0)
		return 0;
	/* The last range that starts at or before v is the only candidate. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (u128_cmp(a->ranges[mid].first, v) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && u128_cmp(v, a->ranges[lo - 1].last) <= 0;
}

int
acl_equal(const struct acl *a, const struct acl *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (u128_cmp(a->ranges[i].first, b->ranges[i].first) != 0 ||
		    u128_cmp(a->ranges[i].last, b->ranges[i].last) != 0)
			return 0;
	return 1;
}

struct acl *
acl_copy(const struct acl *a)
{
	struct acl *c;

	if (a == NULL || (c = acl_new()) == NULL)
		return NULL;
	if (a->n > 0 && (c->ranges = malloc(a->n * sizeof(*c->ranges))) == NULL) {
		free(c);
		return NULL;
	}
	if (a->n > 0)
		memcpy(c->ranges, a->ranges, a->n * sizeof(*c->ranges));
	c->n = c->cap = a->n;
	c->compiled = a->compiled;
	return c;
}

void
acl_free(struct acl *a)
{
	if (a == NULL)
		return;
	free(a->ranges);
	free(a);
}

enum acl_verdict
acl_check(const struct acl_rules *r, const struct sockaddr *sa)
{
	if (r->deny != NULL && acl_match(r->deny, sa))
		return ACL_DENIED;
	if (r->allow != NULL && !acl_match(r->allow, sa))
		return ACL_NOT_ALLOWED;
	return ACL_PASS;
}
