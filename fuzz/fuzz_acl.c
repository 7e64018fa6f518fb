/*
 * fuzz_acl.c - the CIDR-list parser and matcher of allow and deny
 * (src/acl.c) on arbitrary text.
 *
 * The input, up to its first NUL, is one allow or deny value.  Checked:
 *  - acl_add() accepts it, or refuses it with a reason and leaves the list
 *    as it was (a good line added before stays, alone);
 *  - each entry of an accepted list is accepted alone, and compiles to one
 *    aligned power-of-two range (a CIDR block, nothing else);
 *  - the compiled list holds the first and last address of every entry,
 *    and its ranges are sorted, disjoint and not adjacent;
 *  - adding the entries one line at a time compiles to the same list;
 *  - an address just outside an entry alone is outside it; an AF_UNIX
 *    address matches nothing.
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "acl.h"
#include "fuzz.h"

#define TEXT_MAX 4096

static const char space[] = " \t";

static struct sockaddr_in6
sockaddr_of(struct acl_u128 v)
{
	struct sockaddr_in6 s;

	memset(&s, 0, sizeof(s));
	s.sin6_family = AF_INET6;
	for (int i = 0; i < 8; i++) {
		s.sin6_addr.s6_addr[7 - i] = (uint8_t)(v.hi >> (8 * i));
		s.sin6_addr.s6_addr[15 - i] = (uint8_t)(v.lo >> (8 * i));
	}
	return s;
}

static int
holds(const struct acl *a, struct acl_u128 v)
{
	struct sockaddr_in6 s = sockaddr_of(v);

	return acl_match(a, (const struct sockaddr *)&s);
}

static struct acl_u128
plus(struct acl_u128 v, int d)
{
	if (d > 0 && ++v.lo == 0)
		v.hi++;
	else if (d < 0 && v.lo-- == 0)
		v.hi--;
	return v;
}

static int
less(struct acl_u128 a, struct acl_u128 b)
{
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

/* One entry alone: one CIDR block; the whole list holds its ends. */
static void
check_entry(const char *entry, const struct acl *whole, struct acl *lines)
{
	struct acl *one = acl_new();
	struct acl_range r;
	struct acl_u128 x;
	char err[256];

	FUZZ_CHECK(one != NULL);
	FUZZ_CHECK(acl_add(one, entry, err, sizeof(err)) == 0);
	FUZZ_CHECK(acl_add(lines, entry, err, sizeof(err)) == 0);
	acl_compile(one);
	FUZZ_CHECK(one->n == 1);
	r = one->ranges[0];
	x.hi = r.first.hi ^ r.last.hi;
	x.lo = r.first.lo ^ r.last.lo;
	/* x is 2^k - 1, and first has none of its bits */
	FUZZ_CHECK(x.hi == 0 || x.lo == UINT64_MAX);
	FUZZ_CHECK((x.hi & (x.hi + 1)) == 0 && (x.lo & (x.lo + 1)) == 0);
	FUZZ_CHECK((r.first.hi & x.hi) == 0 && (r.first.lo & x.lo) == 0);
	FUZZ_CHECK(holds(whole, r.first) && holds(whole, r.last));
	FUZZ_CHECK(holds(one, r.first) && holds(one, r.last));
	if (r.first.hi != 0 || r.first.lo != 0)
		FUZZ_CHECK(!holds(one, plus(r.first, -1)));
	if (r.last.hi != UINT64_MAX || r.last.lo != UINT64_MAX)
		FUZZ_CHECK(!holds(one, plus(r.last, 1)));
	acl_free(one);
}

static void
check_compiled(const struct acl *a)
{
	FUZZ_CHECK(a->compiled);
	for (size_t i = 0; i < a->n; i++) {
		FUZZ_CHECK(!less(a->ranges[i].last, a->ranges[i].first));
		if (i > 0)
			FUZZ_CHECK(less(plus(a->ranges[i - 1].last, 1),
			    a->ranges[i].first));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[TEXT_MAX + 1], entry[TEXT_MAX + 1];
	struct acl *a = acl_new(), *lines = acl_new();
	struct sockaddr_un un;
	char err[256];
	int rc;

	FUZZ_CHECK(a != NULL && lines != NULL);
	if (size > TEXT_MAX)
		size = TEXT_MAX;
	memcpy(text, data, size);
	text[size] = '\0';

	FUZZ_CHECK(acl_add(a, "192.0.2.0/24", err, sizeof(err)) == 0);
	err[0] = '\0';
	rc = acl_add(a, text, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || (rc == -1 && err[0] != '\0'));
	if (rc < 0) {
		FUZZ_CHECK(a->n == 1);
		goto out;
	}
	acl_compile(a);
	check_compiled(a);
	FUZZ_CHECK(acl_add(lines, "192.0.2.0/24", err, sizeof(err)) == 0);
	for (const char *s = text;; s++) {
		size_t len;

		s += strspn(s, space);
		len = strcspn(s, ",");
		memcpy(entry, s, len);
		entry[len] = '\0';
		check_entry(entry, a, lines);
		if ((s = strchr(s, ',')) == NULL)
			break;
	}
	acl_compile(lines);
	FUZZ_CHECK(acl_equal(a, lines));
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	FUZZ_CHECK(!acl_match(a, (const struct sockaddr *)&un));
out:
	acl_free(a);
	acl_free(lines);
	return 0;
}
