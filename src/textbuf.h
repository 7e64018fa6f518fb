/*
 * textbuf.h - a text buffer that grows as printf-style text is added: the
 * /metrics exposition and the upgrade state are built in one.
 */
#ifndef NETTCPD_TEXTBUF_H
#define NETTCPD_TEXTBUF_H

#include <stddef.h>

/* Start with { 0 }.  After a failed append it stays failed. */
struct textbuf {
	char *buf;
	size_t len, cap;
	int failed;
};

/* Append the formatted text (NUL-terminated in buf); on failure, set failed. */
void textbuf_printf(struct textbuf *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The text, NUL-terminated, for the caller to free, its length in *len
 * (when len is not NULL); NULL, the buffer freed, if an append failed
 * (or if nothing was ever added).
 */
char *textbuf_take(struct textbuf *t, size_t *len);

#endif
