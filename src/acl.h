/*
 * acl.h - client access lists: CIDR lists, compiled once, matched against
 * a client's address.  Pure: no I/O, no logging.
 *
 * Every address is compared as 128 bits: an IPv4 address, in a list or a
 * client's, as its IPv4-mapped IPv6 form ::ffff:a.b.c.d (an IPv4 /n is a
 * /96+n).  So an IPv4 client reaching a dual-stack [::] listener, whose
 * address the kernel gives as ::ffff:a.b.c.d, matches the IPv4 rules; and
 * ::/0 covers every client, IPv4 ones included.  A list compiles to
 * disjoint ranges, sorted, so a match is a binary search whatever the
 * number of entries.
 */
#ifndef NETTCPD_ACL_H
#define NETTCPD_ACL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address as a 128-bit number, high half first. */
struct acl_u128 {
	uint64_t hi, lo;
};

struct acl_range {
	struct acl_u128 first, last;   /* inclusive */
};

/* One CIDR list (allow or deny): the entries as added, then compiled. */
struct acl {
	struct acl_range *ranges;
	size_t n, cap;
	int compiled;                  /* acl_compile() since the last acl_add() */
};

/* A place's rules: either list may be absent (NULL). */
struct acl_rules {
	struct acl *deny;
	struct acl *allow;
};

/* What the rules make of a client. */
enum acl_verdict {
	ACL_PASS = 0,     /* no deny matched; no allow list, or it matched */
	ACL_DENIED,       /* an entry of the deny list matched */
	ACL_NOT_ALLOWED,  /* there is an allow list, and no entry matched */
};

/* A new empty list; NULL on allocation failure. */
struct acl *acl_new(void);

/*
 * Add the entries of text, "CIDR, CIDR, ...", to a: each an IPv4 or IPv6
 * address, with "/bits" or without (a single address).  An entry whose
 * address has bits set past its prefix (10.0.0.1/8) is an error, not
 * masked: it is a typo as often as not, and either reading would let in
 * clients the writer did not mean.  Returns 0; or -1 with the reason in
 * err (errlen bytes) and a unchanged; or -2 on allocation failure.
 */
int acl_add(struct acl *a, const char *text, char *err, size_t errlen);

/* Sort and merge the entries added so far; acl_match() needs it. */
void acl_compile(struct acl *a);

/* Whether a (compiled) holds the address of sa.  An address of another
 * family than AF_INET or AF_INET6 matches nothing. */
int acl_match(const struct acl *a, const struct sockaddr *sa);

/* Two compiled lists cover the same addresses (NULL: absent). */
int acl_equal(const struct acl *a, const struct acl *b);

/* A copy of a, compiled as a is; NULL for a NULL a or out of memory. */
struct acl *acl_copy(const struct acl *a);

void acl_free(struct acl *a);

/* Deny first, then allow: an allow list present refuses everyone it does
 * not hold. */
enum acl_verdict acl_check(const struct acl_rules *r, const struct sockaddr *sa);

#endif
