/*
 * rewrite.h - rewrite_via: the preamble a backend is sent, with the Via's
 * authority replaced by the backend's own address, for services that
 * compare the Via's host exactly (HostNameComparisonMode.Exact).  Pure:
 * bytes in, bytes out.
 */
#ifndef NETTCPD_REWRITE_H
#define NETTCPD_REWRITE_H

#include <stddef.h>
#include <sys/types.h>

#include "nmf.h"

/* What rewrite_via_preamble() refuses, beside a too small out. */
#define REWRITE_NO_AUTHORITY (-1) /* not a net.tcp URI (via_authority) */
#define REWRITE_TOO_LONG (-2)     /* the new Via is over NMF_MAX_VIA */
#define REWRITE_NO_ROOM (-3)      /* outcap is below len + REWRITE_GROWTH */

/*
 * The bytes that rewrite the preamble buf[0..len) can grow by at most:
 * the new Via's size field may be longer than the old one, and the Via
 * itself at most NMF_MAX_VIA.
 */
#define REWRITE_GROWTH (NMF_MAX_VIA + NMF_MBINT_MAX_BYTES)

/*
 * Write into out (outcap bytes, at least len + REWRITE_GROWTH) the preamble
 * buf[0..len) whose Via string is buf[via_off .. via_off + via_len), with
 * the Via's authority (via_authority: between "net.tcp://" and the path)
 * replaced by authority.
 * The Via record's size field is written anew (the shortest encoding);
 * every other byte is copied as it is, the scheme and the path and what
 * follows the Via record included.  Returns the new length, or
 * REWRITE_NO_AUTHORITY, REWRITE_TOO_LONG or REWRITE_NO_ROOM.
 */
ssize_t rewrite_via_preamble(const uint8_t *buf, size_t len, size_t via_off,
    size_t via_len, const char *authority, uint8_t *out, size_t outcap);

#endif
