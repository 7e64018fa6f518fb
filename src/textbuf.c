/*
 * textbuf.c - a text buffer that grows as text is added (textbuf.h).
 */
#include "textbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void
textbuf_printf(struct textbuf *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (t->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		/* At least room for this text; doubled, so n appends cost
		 * log n reallocations. */
		size_t cap = t->cap * 2 + (size_t)n + 1;
		char *buf = realloc(t->buf, cap);

		if (buf == NULL) {
			t->failed = 1;
			return;
		}
		t->buf = buf;
		t->cap = cap;
	}
}

char *
textbuf_take(struct textbuf *t, size_t *len)
{
	char *buf = t->buf;

	if (t->failed) {
		free(buf);
		buf = NULL;
	} else if (len != NULL) {
		*len = t->len;
	}
	*t = (struct textbuf){ 0 };
	return buf;
}
