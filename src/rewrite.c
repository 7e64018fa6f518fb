/*
 * rewrite.c - the Via of a replayed preamble, naming the backend
 * (rewrite.h).
 */
#include "rewrite.h"

#include <string.h>

#include "via.h"

/*
 * Version (3 bytes) and Mode (2) come first: the parser admits no other
 * order, so the Via record always starts here.
 */
#define VIA_RECORD_OFF 5u

ssize_t
rewrite_via_preamble(const uint8_t *buf, size_t len, size_t via_off,
    size_t via_len, const char *authority, uint8_t *out, size_t outcap)
{
	const uint8_t *via = buf + via_off;
	size_t begin, end, alen = strlen(authority), new_len, o;

	if (via_off <= VIA_RECORD_OFF || via_off + via_len > len ||
	    buf[VIA_RECORD_OFF] != NMF_REC_VIA ||
	    via_authority((const char *)via, via_len, &begin, &end) < 0)
		return REWRITE_NO_AUTHORITY;
	new_len = begin + alen + (via_len - end);
	if (new_len > NMF_MAX_VIA)
		return REWRITE_TOO_LONG;
	if (outcap < len + REWRITE_GROWTH)
		return REWRITE_NO_ROOM;
	memcpy(out, buf, VIA_RECORD_OFF);
	o = VIA_RECORD_OFF;
	out[o++] = NMF_REC_VIA;
	o += nmf_mbint_encode((uint32_t)new_len, out + o);
	memcpy(out + o, via, begin);
	o += begin;
	memcpy(out + o, authority, alen);
	o += alen;
	memcpy(out + o, via + end, via_len - end);
	o += via_len - end;
	memcpy(out + o, via + via_len, len - via_off - via_len);
	o += len - via_off - via_len;
	return (ssize_t)o;
}
