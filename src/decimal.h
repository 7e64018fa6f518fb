/*
 * decimal.h - the one strict decimal reader the config values share.
 */
#ifndef NETTCPD_DECIMAL_H
#define NETTCPD_DECIMAL_H

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

#endif
