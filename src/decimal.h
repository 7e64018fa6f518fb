/*
 * decimal.h - the one strict decimal reader the config values share, and
 * the one writer of a number in decimal (no printf: the access log and the
 * control protocol format their own lines, a forked child may not call it).
 */
#ifndef NETTCPD_DECIMAL_H
#define NETTCPD_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* The digits of the largest uint64_t. */
#define DECIMAL_MAX 20

/*
 * Read the digits at *s (at least one; no sign, no spaces) as a number of
 * at most max, and move *s past them.  Returns 0, or -1 when there is no
 * digit or the number exceeds max.
 */
static inline int
decimal_parse(const char **s, unsigned long max, unsigned long *out)
{
	const char *d = *s;
	unsigned long v = 0;

	if (*d < '0' || *d > '9')
		return -1;
	for (; *d >= '0' && *d <= '9'; d++) {
		v = v * 10 + (unsigned long)(*d - '0');
		if (v > max)
			return -1;
	}
	*s = d;
	*out = v;
	return 0;
}

/*
 * Write v in decimal at the end of d; returns the index of its first digit
 * (its length is DECIMAL_MAX less that).
 */
static inline size_t
decimal_format(uint64_t v, char d[DECIMAL_MAX])
{
	size_t i = DECIMAL_MAX;

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return i;
}

#endif
