/*
 * fuzz_nbfx.c - the example service's binary SOAP reader and writer
 * (examples/c/nbfx.c) on arbitrary bytes.
 *
 * Input: the messages of one session, each a 2-byte little-endian length
 * and that many bytes (the last one takes what is left).  Each is read on
 * a copy of exactly its bytes (a read past them is a sanitizer report),
 * with the session's strings carried from one to the next as the service
 * does; the session ends at the first error, as the service's connection
 * does.  Checked: every field of a request read lies in the scratch bytes
 * used, of a kind the reader gives; and the reply the service would write
 * from it (Action, RelatesTo from the MessageID, the argument as the
 * value) has the length the writer first said, and reads back with the
 * same value.
 */
#include <string.h>

#include "fuzz.h"
#include "nbfx.h"

static struct nbfx_session session, check_session;

static void
check_field(const struct nbfx_field *f, size_t used)
{
	FUZZ_CHECK(f->kind >= NBFX_NONE && f->kind <= NBFX_UNIQUEID);
	FUZZ_CHECK(f->kind != NBFX_NONE || f->len == 0);
	FUZZ_CHECK(f->off <= used && f->len <= used - f->off);
	FUZZ_CHECK(f->kind != NBFX_UNIQUEID || f->len == 16);
}

static void
check_reply(const uint8_t *scratch, const struct nbfx_request *req)
{
	struct iovec value = { (void *)(scratch + req->arg.off), req->arg.len };
	struct nbfx_reply r = {
		.action = "urn:a", .ns = "urn:n", .element = "E", .result = "R",
		.relates_kind = req->message_id.kind == NBFX_UNIQUEID ? NBFX_UNIQUEID : NBFX_CHARS,
		.relates_to = scratch + req->message_id.off, .relates_len = req->message_id.len,
		.value_kind = req->arg.kind == NBFX_BYTES ? NBFX_BYTES : NBFX_CHARS,
		.value = &value, .nvalue = 1,
	};
	size_t need = nbfx_write_reply(NULL, 0, &r);
	uint8_t *out = malloc(need), *back = malloc(nbfx_scratch_size(need));
	struct nbfx_request got;

	FUZZ_CHECK(out != NULL && back != NULL);
	FUZZ_CHECK(nbfx_write_reply(out, need, &r) == need);
	nbfx_session_init(&check_session);
	FUZZ_CHECK(nbfx_read_request(&check_session, out, need, back,
	    nbfx_scratch_size(need), &got) == NBFX_OK);
	FUZZ_CHECK(got.arg.len == req->arg.len);
	FUZZ_CHECK(memcmp(back + got.arg.off, scratch + req->arg.off, got.arg.len) == 0);
	free(out);
	free(back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nbfx_session_init(&session);
	while (size > 0) {
		size_t len = size, used;
		uint8_t *copy, *scratch;
		struct nbfx_request req;
		int rc;

		if (size >= 2) {
			len = (size_t)data[0] | (size_t)data[1] << 8;
			data += 2;
			size -= 2;
			if (len > size)
				len = size;
		}
		copy = malloc(len ? len : 1);
		scratch = malloc(nbfx_scratch_size(len));
		FUZZ_CHECK(copy != NULL && scratch != NULL);
		memcpy(copy, data, len);
		rc = nbfx_read_request(&session, copy, len, scratch, nbfx_scratch_size(len), &req);
		FUZZ_CHECK(rc <= NBFX_OK && rc >= NBFX_ERR_SCRATCH);
		FUZZ_CHECK(rc != NBFX_ERR_SCRATCH);  /* nbfx_scratch_size() is enough */
		if (rc == NBFX_OK) {
			used = nbfx_scratch_size(len);
			check_field(&req.action, used);
			check_field(&req.message_id, used);
			check_field(&req.arg, used);
			check_field(&req.op, used);
			FUZZ_CHECK(req.op.kind == NBFX_CHARS);
			check_reply(scratch, &req);
		}
		free(copy);
		free(scratch);
		data += len;
		size -= len;
		if (rc != NBFX_OK)
			break;
	}
	return 0;
}
