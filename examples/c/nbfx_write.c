/*
 * nbfx_write.c - the reply envelope of a WCF request in the binary session
 * encoding (see nbfx.h): no new session strings, every name from the
 * [MC-NBFS] static dictionary or inline, which every WCF reader takes.
 */
#include "nbfx.h"

#include <string.h>

#include "nbfx_int.h"
#include "nmf.h"

struct writer {
	uint8_t *out;
	size_t cap, len;
};

static void
put(struct writer *w, const void *p, size_t n)
{
	if (n > 0 && w->len <= w->cap && w->cap - w->len >= n)
		memcpy(w->out + w->len, p, n);
	w->len += n;
}

static void
put_byte(struct writer *w, uint8_t b)
{
	put(w, &b, 1);
}

static void
put_mbint(struct writer *w, uint32_t v)
{
	uint8_t b[NMF_MBINT_MAX_BYTES];

	put(w, b, nmf_mbint_encode(v, b));
}

static void
put_le(struct writer *w, uint32_t v, size_t width)
{
	size_t i;

	for (i = 0; i < width; i++)
		put_byte(w, (uint8_t)(v >> (8 * i)));
}

/* An inline string: mbint length, bytes. */
static void
put_string(struct writer *w, const char *s)
{
	put_mbint(w, (uint32_t)strlen(s));
	put(w, s, strlen(s));
}

/* A text record of pieces that also ends its element: Chars or Bytes with
 * the smallest length field that holds the total. */
static void
put_text_end(struct writer *w, enum nbfx_kind kind, const struct iovec *v,
    size_t n)
{
	uint8_t base = kind == NBFX_BYTES ? REC_BYTES8_TEXT : REC_CHARS8_TEXT;
	size_t total = 0, i;

	for (i = 0; i < n; i++)
		total += v[i].iov_len;
	if (total <= UINT8_MAX) {
		put_byte(w, (uint8_t)(base | REC_WITH_END));
		put_le(w, (uint32_t)total, 1);
	} else if (total <= UINT16_MAX) {
		put_byte(w, (uint8_t)((base + 2) | REC_WITH_END));
		put_le(w, (uint32_t)total, 2);
	} else {
		put_byte(w, (uint8_t)((base + 4) | REC_WITH_END));
		put_le(w, (uint32_t)total, 4);
	}
	for (i = 0; i < n; i++)
		put(w, v[i].iov_base, v[i].iov_len);
}

size_t
nbfx_write_reply(uint8_t *out, size_t cap, const struct nbfx_reply *r)
{
	/* s:mustUnderstand="1": PrefixDictionaryAttribute 's', then One text */
	static const uint8_t must_understand[] = {
		REC_PREFIX_DICT_ATTRIBUTE_A + ('s' - 'a'), DICT_MUST_UNDERSTAND, REC_ONE_TEXT,
	};
	struct writer w = { .out = out, .cap = cap };
	struct iovec action = { (void *)r->action, strlen(r->action) };
	struct iovec relates = { (void *)r->relates_to, r->relates_len };

	put_byte(&w, 0x00);   /* no new session strings */
	put_byte(&w, REC_PREFIX_DICT_ELEMENT_A + ('s' - 'a'));
	put_byte(&w, DICT_ENVELOPE);
	put_byte(&w, REC_DICT_XMLNS);
	put_string(&w, "s");
	put_byte(&w, DICT_SOAP12_NS);
	put_byte(&w, REC_DICT_XMLNS);
	put_string(&w, "a");
	put_byte(&w, DICT_ADDRESSING_NS);
	put_byte(&w, REC_PREFIX_DICT_ELEMENT_A + ('s' - 'a'));
	put_byte(&w, DICT_HEADER);
	put_byte(&w, REC_PREFIX_DICT_ELEMENT_A + ('a' - 'a'));
	put_byte(&w, DICT_ACTION);
	put(&w, must_understand, sizeof(must_understand));
	put_text_end(&w, NBFX_CHARS, &action, 1);
	put_byte(&w, REC_PREFIX_DICT_ELEMENT_A + ('a' - 'a'));
	put_byte(&w, DICT_RELATES_TO);
	if (r->relates_kind == NBFX_UNIQUEID && r->relates_len == NBFX_UNIQUEID_LEN) {
		put_byte(&w, REC_UNIQUEID_TEXT | REC_WITH_END);
		put(&w, r->relates_to, NBFX_UNIQUEID_LEN);
	} else {
		put_text_end(&w, NBFX_CHARS, &relates, 1);
	}
	put_byte(&w, REC_END_ELEMENT);  /* s:Header */
	put_byte(&w, REC_PREFIX_DICT_ELEMENT_A + ('s' - 'a'));
	put_byte(&w, DICT_BODY);
	put_byte(&w, REC_SHORT_ELEMENT);
	put_string(&w, r->element);
	put_byte(&w, REC_SHORT_XMLNS);
	put_string(&w, r->ns);
	put_byte(&w, REC_SHORT_ELEMENT);
	put_string(&w, r->result);
	put_text_end(&w, r->value_kind, r->value, r->nvalue);
	put_byte(&w, REC_END_ELEMENT);  /* the operation's response */
	put_byte(&w, REC_END_ELEMENT);  /* s:Body */
	put_byte(&w, REC_END_ELEMENT);  /* s:Envelope */
	return w.len;
}
