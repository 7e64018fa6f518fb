/*
 * fuzz_proxy.c - the PROXY header parser (src/proxy.c) on arbitrary bytes,
 * split arbitrarily.
 *
 * Input: one control byte, then up to 15 split bytes, then the stream.
 *
 *   control bits 0-3  how many split bytes follow
 *
 * The stream is parsed three ways: whole, byte by byte, and in chunks whose
 * sizes the split bytes give in turn (0 = call again with nothing new),
 * each time from a copy of exactly the bytes given so far (so a read past
 * them is a sanitizer report).  Every way must end the same, with the same
 * header.  Checked along the way: errors are sticky; a finished parser
 * says PROXY_ERR_DONE; more is never asked for once PROXY_HEADER_MAX bytes
 * are in (a hostile length is refused, never awaited); a header read is
 * within its version's limit and what a plain reading of the bytes says
 * (v1: "PROXY " up to the first CRLF; v2: the signature, version 2 and 16
 * + its length field), and its addresses are both IPv4 or both IPv6
 * unless LOCAL.
 */
#include <string.h>
#include <netinet/in.h>

#include "fuzz.h"
#include "proxy.h"

#define CONTROL_NSPLIT 0x0Fu

static const uint8_t v2_signature[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

struct outcome {
	int status;
	struct proxy_header h;
};

/* One call on a copy of exactly buf[0 .. len). */
static int
parse_exact(struct proxy_parser *p, const uint8_t *buf, size_t len,
    struct proxy_header *h)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	int status;

	FUZZ_CHECK(copy != NULL);
	memcpy(copy, buf, len);
	status = proxy_parse(p, copy, len, h);
	free(copy);
	return status;
}

/* Feed len bytes in steps (NULL: all at once; nsteps 0: byte by byte). */
static void
run(const uint8_t *buf, size_t len, const uint8_t *steps, size_t nsteps,
    struct outcome *o)
{
	struct proxy_parser p;
	size_t given = 0, k = 0, zeros = 0;

	proxy_parser_init(&p);
	memset(o, 0, sizeof(*o));
	o->status = PROXY_NEED_MORE;
	for (;;) {
		size_t step = steps == NULL ? len : nsteps == 0 ? 1 :
		    steps[k++ % nsteps];

		/* Steps of 0 call again with nothing new, but a whole
		 * round of them moves on by one byte. */
		if (step == 0 && ++zeros > nsteps)
			step = 1;
		if (step != 0)
			zeros = 0;
		if (given + step > len)
			step = len - given;
		given += step;
		o->status = parse_exact(&p, buf, given, &o->h);
		if (o->status != PROXY_NEED_MORE)
			break;
		FUZZ_CHECK(given < PROXY_HEADER_MAX);
		if (given == len)
			return;
	}
	/* Sticky. */
	if (o->status == PROXY_DONE)
		FUZZ_CHECK(parse_exact(&p, buf, given, &o->h) == PROXY_ERR_DONE);
	else
		FUZZ_CHECK(parse_exact(&p, buf, len, &o->h) == o->status);
}

static void
check_header(const uint8_t *buf, size_t len, const struct proxy_header *h)
{
	FUZZ_CHECK(h->len <= len && h->len <= PROXY_HEADER_MAX);
	if (h->version == 1) {
		const uint8_t *cr = memchr(buf, '\r', h->len);

		FUZZ_CHECK(h->len <= PROXY_V1_MAX);
		FUZZ_CHECK(memcmp(buf, "PROXY ", 6) == 0);
		FUZZ_CHECK(cr != NULL && (size_t)(cr - buf) == h->len - 2);
		FUZZ_CHECK(buf[h->len - 1] == '\n');
		FUZZ_CHECK(memchr(buf, '\n', h->len - 1) == NULL);
	} else {
		FUZZ_CHECK(h->version == 2);
		FUZZ_CHECK(h->len >= PROXY_V2_FIXED);
		FUZZ_CHECK(memcmp(buf, v2_signature, 12) == 0);
		FUZZ_CHECK(buf[12] >> 4 == 2);
		FUZZ_CHECK(h->len == PROXY_V2_FIXED + ((size_t)buf[14] << 8 | buf[15]));
		FUZZ_CHECK(h->local == ((buf[12] & 0x0F) == 0));
	}
	if (!h->local) {
		FUZZ_CHECK(h->src.ss_family == AF_INET || h->src.ss_family == AF_INET6);
		FUZZ_CHECK(h->dst.ss_family == h->src.ss_family);
	}
}

static void
same(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->status == b->status);
	if (a->status != PROXY_DONE)
		return;
	FUZZ_CHECK(a->h.len == b->h.len && a->h.version == b->h.version &&
	    a->h.local == b->h.local);
	if (!a->h.local)
		FUZZ_CHECK(memcmp(&a->h.src, &b->h.src, sizeof(a->h.src)) == 0 &&
		    memcmp(&a->h.dst, &b->h.dst, sizeof(a->h.dst)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, bytes, chunks;
	size_t nsplit;

	if (size < 1)
		return 0;
	nsplit = data[0] & CONTROL_NSPLIT;
	if (size < 1 + nsplit)
		return 0;
	run(data + 1 + nsplit, size - 1 - nsplit, NULL, 0, &whole);
	run(data + 1 + nsplit, size - 1 - nsplit, data, 0, &bytes);
	run(data + 1 + nsplit, size - 1 - nsplit, data + 1, nsplit, &chunks);
	if (whole.status == PROXY_DONE)
		check_header(data + 1 + nsplit, size - 1 - nsplit, &whole.h);
	same(&whole, &bytes);
	same(&whole, &chunks);
	return 0;
}
