/*
 * fuzz_ctlproto.c - the control protocol's parser and formatter
 * (src/ctlproto.c) on arbitrary messages.
 *
 * Input: one control byte, then the message.
 *
 *   control bit 0   the sending side: 0 a client, 1 the daemon
 *
 * The message is parsed from a copy of exactly its bytes (a read past them
 * is a sanitizer report).  Invariants: the answer is a verb of that side
 * or one of the CTL_PE_* errors, each with a text of its own; more than
 * CTL_MSG_MAX bytes (HANDOFF: CTL_HANDOFF_MAX) is CTL_PE_SIZE whatever
 * they hold; every span of a message read lies inside the message; a
 * message read is plain: no byte below 0x20 or above 0x7e before
 * HANDOFF's newline, no leading or trailing space (but free text's own);
 * and ctl_format writes
 * it back byte for byte (the wire form is canonical), also into a buffer
 * of exactly its length, while one byte less is refused without a write
 * past it (ERR and REVOKED: their text is cut by that byte instead).
 */
#include <string.h>

#include "ctlproto.h"
#include "fuzz.h"

/* A span is empty or inside buf[0 .. len). */
static void
check_span(struct ctl_span sp, const char *buf, size_t len)
{
	FUZZ_CHECK(sp.len == 0 ||
	    (sp.p >= buf && sp.len <= len && sp.p - buf <= (long)(len - sp.len)));
}

static void
check_read(const struct ctl_msg *m, int rc, enum ctl_side side,
    const char *buf, size_t len)
{
	size_t line = len;
	char *out;
	int n;

	FUZZ_CHECK(m->verb == (enum ctl_verb)rc);
	FUZZ_CHECK((rc <= CTL_STATS) == (side == CTL_FROM_CLIENT));
	check_span(m->via, buf, len);
	check_span(m->addr, buf, len);
	check_span(m->name, buf, len);
	check_span(m->text, buf, len);
	check_span(m->preamble, buf, len);
	if (rc == CTL_HANDOFF) {
		const char *nl = memchr(buf, '\n', len);

		FUZZ_CHECK(nl != NULL);
		line = (size_t)(nl - buf);
		FUZZ_CHECK(line < CTL_HANDOFF_LINE_MAX);
		FUZZ_CHECK(m->preamble.p == nl + 1);
		FUZZ_CHECK(m->preamble.len == len - line - 1);
		FUZZ_CHECK(m->preamble.len >= 1 &&
		    m->preamble.len <= CTL_PREAMBLE_MAX);
	} else
		FUZZ_CHECK(len <= CTL_MSG_MAX);
	/* (free text may end in a space: it is the reason's own) */
	FUZZ_CHECK(buf[0] != ' ');
	FUZZ_CHECK(buf[line - 1] != ' ' || rc == CTL_ERR || rc == CTL_REVOKED);
	for (size_t i = 0; i < line; i++)
		FUZZ_CHECK((unsigned char)buf[i] >= 0x20 &&
		    (unsigned char)buf[i] <= 0x7e);
	if (rc != CTL_TAKEN && rc != CTL_HANDOFF && rc != CTL_REVOKED)
		FUZZ_CHECK(m->tag >= (rc == CTL_ERR ? 0u : 1u));
	FUZZ_CHECK(m->reg_id <= CTL_ID_MAX && m->handoff_id <= CTL_ID_MAX);

	/* Written back: the same bytes, into exactly their room. */
	out = malloc(len);
	FUZZ_CHECK(out != NULL);
	n = ctl_format(m, out, len);
	FUZZ_CHECK(n == (int)len);
	FUZZ_CHECK(memcmp(out, buf, len) == 0);
	free(out);
	out = malloc(len - 1 > 0 ? len - 1 : 1);
	FUZZ_CHECK(out != NULL);
	n = ctl_format(m, out, len - 1);
	if ((rc == CTL_ERR || rc == CTL_REVOKED) && m->text.len > 1)
		FUZZ_CHECK(n == (int)len - 1 && memcmp(out, buf, len - 1) == 0);
	else
		FUZZ_CHECK(n == -1);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum ctl_side side;
	struct ctl_msg m;
	size_t len;
	char *buf;
	int rc;

	if (size < 1)
		return 0;
	side = (data[0] & 1) ? CTL_FROM_DAEMON : CTL_FROM_CLIENT;
	len = size - 1;
	buf = malloc(len > 0 ? len : 1);
	FUZZ_CHECK(buf != NULL);
	memcpy(buf, data + 1, len);
	rc = ctl_parse(buf, len, side, &m);
	if (rc > 0)
		check_read(&m, rc, side, buf, len);
	else {
		FUZZ_CHECK(rc >= CTL_PE_ROUTE && rc <= CTL_PE_EMPTY);
		FUZZ_CHECK(strcmp(ctl_parse_error_text(rc), "not a parse error"));
		FUZZ_CHECK(m.tag <= CTL_TAG_MAX);
		if (side == CTL_FROM_DAEMON && len > 8 &&
		    memcmp(buf, "HANDOFF ", 8) == 0) {
			if (len > CTL_HANDOFF_MAX)
				FUZZ_CHECK(rc == CTL_PE_SIZE);
		} else if (len > CTL_MSG_MAX)
			FUZZ_CHECK(rc == CTL_PE_SIZE);
		FUZZ_CHECK(len > 0 || rc == CTL_PE_EMPTY);
	}
	free(buf);
	return 0;
}
