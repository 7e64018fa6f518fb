/*
 * whoami_conn.c - one client connection of nettcp-whoami, as a WCF
 * net.tcp server runs it: the preamble ([MC-NMF], parsed by nettcpd's own
 * src/nmf.c), Preamble Ack, then each request in a Sized Envelope answered
 * with its reply, End answered with End; then, as a WCF server reuses a
 * connection, the next bytes are read as a new session's preamble.
 *
 * Blocking I/O on a thread of its own: the code reads top to bottom like
 * the protocol.  On a handed-off connection the first session's preamble
 * is the bytes nettcpd read, given in whoami_conn_args; a later session's
 * Via is checked with the daemon (whoami_validate_fn) before it is served.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "nbfx.h"
#include "nmf.h"
#include "whoami.h"

#define READ_CHUNK 65536u
#define IDLE_TIMEOUT_S 120   /* a silent client is dropped (WCF's receive timeout is 10 min, its idle pool 2) */
#define NMF_ENCODING_BINARY_SESSION 0x08

struct conn {
	int fd;
	uint8_t *buf;          /* bytes read and not yet consumed: buf[pos..len) */
	size_t pos, len, cap;
	whoami_validate_fn validate;
	unsigned sessions;     /* sessions begun on this connection */
	char via[NMF_MAX_VIA + 1];
	struct nbfx_session dict;
	uint8_t *scratch, *out;
	size_t scratch_cap, out_cap;
};

/* A log line on stderr; detail (the client's text, e.g. a Via) with every
 * byte outside printable ASCII written as \xNN. */
static void
conn_log(const struct conn *c, const char *what, const char *detail)
{
	char shown[4 * NMF_MAX_VIA + 1];
	size_t n = 0;

	for (; detail && *detail && n + 5 < sizeof(shown); detail++) {
		unsigned char b = (unsigned char)*detail;

		if (b >= 0x20 && b < 0x7f && b != '\\')
			shown[n++] = (char)b;
		else
			n += (size_t)snprintf(shown + n, 5, "\\x%02x", b);
	}
	shown[n] = '\0';
	fprintf(stderr, "%s: fd %d session %u: %s%s%s\n", whoami_name, c->fd,
	    c->sessions, what, n ? ": " : "", shown);
}

/* Read more bytes; the consumed ones make room first.  Returns the count,
 * 0 at the client's end of stream, -1 on an error or above the limit. */
static ssize_t
conn_read(struct conn *c)
{
	ssize_t n;

	if (c->pos > 0) {
		memmove(c->buf, c->buf + c->pos, c->len - c->pos);
		c->len -= c->pos;
		c->pos = 0;
	}
	if (c->cap - c->len < READ_CHUNK) {
		/* doubling, up to a whole largest envelope and a bit */
		size_t cap = c->cap * 2 > c->len + READ_CHUNK ? c->cap * 2 : c->len + READ_CHUNK;
		uint8_t *grown;

		if (cap > WHOAMI_MESSAGE_MAX + 2 * READ_CHUNK)
			cap = WHOAMI_MESSAGE_MAX + 2 * READ_CHUNK;
		if (cap <= c->len)
			return -1;
		grown = realloc(c->buf, cap);
		if (grown == NULL)
			return -1;
		c->buf = grown;
		c->cap = cap;
	}
	do
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		c->len += (size_t)n;
	return n;
}

/* Make n unconsumed bytes available; 0, or -1 if the stream ends first. */
static int
conn_fill(struct conn *c, size_t n)
{
	while (c->len - c->pos < n)
		if (conn_read(c) <= 0)
			return -1;
	return 0;
}

static int
conn_write(struct conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void
conn_fault(struct conn *c, enum nmf_fault fault)
{
	size_t len;
	const uint8_t *rec = nmf_fault_record(fault, &len);

	conn_log(c, "refused with fault", nmf_fault_name(fault));
	(void)conn_write(c, rec, len);
}

/*
 * The preamble of a session, up to its Preamble End, answered with the
 * Ack.  Returns 1 to serve the session, 0 when the client closed before
 * it (a pooled connection it let go), -1 to drop the connection.
 */
static int
conn_preamble(struct conn *c)
{
	struct nmf_parser p;
	struct nmf_record rec;
	int rc;

	nmf_parser_init(&p);
	if (c->len == c->pos && conn_read(c) <= 0)
		return 0;
	c->sessions++;
	for (;;) {
		rc = nmf_parse(&p, c->buf + c->pos, c->len - c->pos, &rec);
		if (rc == NMF_NEED_MORE) {
			if (c->len - c->pos > NMF_PREAMBLE_MAX || conn_read(c) <= 0) {
				conn_log(c, "preamble incomplete", NULL);
				return -1;
			}
			continue;
		}
		if (rc < 0) {
			conn_log(c, "bad preamble", nmf_strerror(rc));
			if (rc == NMF_ERR_VERSION || rc == NMF_ERR_MODE)
				conn_fault(c, rc == NMF_ERR_VERSION ? NMF_FAULT_UNSUPPORTED_VERSION
				    : NMF_FAULT_UNSUPPORTED_MODE);
			return -1;
		}
		switch (rec.type) {
		case NMF_REC_MODE:
			if (rec.mode != NMF_MODE_DUPLEX) {
				conn_fault(c, NMF_FAULT_UNSUPPORTED_MODE);
				return -1;
			}
			break;
		case NMF_REC_VIA:
			memcpy(c->via, c->buf + c->pos + rec.str_off, rec.str_len);
			c->via[rec.str_len] = '\0';
			if (strlen(c->via) != rec.str_len) {
				conn_log(c, "a NUL in the Via, closing", c->via);
				return -1;
			}
			/* A later session on a handed-off connection may be for
			 * another service: ask nettcpd, as WCF's worker asks SMSvcHost
			 * (ValidateUriRoute), and let the client redial on "no". */
			if (c->validate && c->sessions > 1 && c->validate(c->via) != 1) {
				conn_log(c, "no longer routed here, closing", c->via);
				return -1;
			}
			break;
		case NMF_REC_KNOWN_ENCODING:
			if (rec.encoding != NMF_ENCODING_BINARY_SESSION) {
				conn_fault(c, NMF_FAULT_CONTENT_TYPE_INVALID);
				return -1;
			}
			break;
		case NMF_REC_EXTENSIBLE_ENCODING:
			conn_fault(c, NMF_FAULT_CONTENT_TYPE_INVALID);
			return -1;
		case NMF_REC_UPGRADE_REQUEST:
			conn_fault(c, NMF_FAULT_UPGRADE_INVALID);
			return -1;
		case NMF_REC_PREAMBLE_END:
			if (whoami_verbose)
				conn_log(c, "session for", c->via);
			c->pos += p.pos;
			nbfx_session_init(&c->dict);
			return conn_write(c, (const uint8_t[]){ NMF_REC_PREAMBLE_ACK }, 1) == 0 ? 1 : -1;
		default:
			break;
		}
	}
}

/* Make room for n bytes in one of the connection's buffers. */
static int
conn_room(uint8_t **buf, size_t *cap, size_t n)
{
	uint8_t *grown;

	if (*cap >= n)
		return 0;
	grown = realloc(*buf, n);
	if (grown == NULL)
		return -1;
	*buf = grown;
	*cap = n;
	return 0;
}

/* Is field f of the request the text lit? */
static int
field_is(const struct conn *c, const struct nbfx_field *f, const char *lit)
{
	return f->kind == NBFX_CHARS && f->len == strlen(lit) &&
	    memcmp(c->scratch + f->off, lit, f->len) == 0;
}

/*
 * Answer one request (the payload of a Sized Envelope): Hello returns
 * "<name>: <text>", RoundTrip its bytes.  Returns 0, or -1 to drop the
 * connection (an operation this contract has not: a WCF service would send
 * a SOAP fault; this example logs and closes).
 */
static int
conn_request(struct conn *c, const uint8_t *msg, size_t len)
{
	struct nbfx_request req;
	struct nbfx_reply reply = { .ns = WHOAMI_NS };
	struct iovec value[3];
	uint8_t head[1 + NMF_MBINT_MAX_BYTES];
	size_t need, hlen;
	int rc;

	if (conn_room(&c->scratch, &c->scratch_cap, nbfx_scratch_size(len)) < 0)
		return -1;
	rc = nbfx_read_request(&c->dict, msg, len, c->scratch, c->scratch_cap, &req);
	if (rc != NBFX_OK) {
		conn_log(c, "bad message", nbfx_strerror(rc));
		return -1;
	}
	if (req.message_id.kind == NBFX_NONE || req.message_id.kind == NBFX_BYTES ||
	    req.message_id.len == 0) {
		conn_log(c, "request without a MessageID", NULL);
		return -1;
	}
	reply.relates_kind = req.message_id.kind;
	reply.relates_to = c->scratch + req.message_id.off;
	reply.relates_len = req.message_id.len;
	reply.value = value;
	if (field_is(c, &req.action, WHOAMI_ACTION_PREFIX "Hello") && field_is(c, &req.op, "Hello") &&
	    req.arg.kind != NBFX_BYTES && req.arg.kind != NBFX_UNIQUEID) {
		reply.action = WHOAMI_ACTION_PREFIX "HelloResponse";
		reply.element = "HelloResponse";
		reply.result = "HelloResult";
		reply.value_kind = NBFX_CHARS;
		value[0] = (struct iovec){ (void *)whoami_name, strlen(whoami_name) };
		value[1] = (struct iovec){ (void *)": ", 2 };
		value[2] = (struct iovec){ c->scratch + req.arg.off, req.arg.len };
		reply.nvalue = 3;
	} else if (field_is(c, &req.action, WHOAMI_ACTION_PREFIX "RoundTrip") &&
	    field_is(c, &req.op, "RoundTrip") &&
	    (req.arg.kind == NBFX_BYTES || req.arg.len == 0)) {
		reply.action = WHOAMI_ACTION_PREFIX "RoundTripResponse";
		reply.element = "RoundTripResponse";
		reply.result = "RoundTripResult";
		reply.value_kind = NBFX_BYTES;
		value[0] = (struct iovec){ c->scratch + req.arg.off, req.arg.len };
		reply.nvalue = 1;
	} else {
		char action[257] = "";

		if (req.action.kind == NBFX_CHARS) {
			size_t n = req.action.len < sizeof(action) - 1 ? req.action.len : sizeof(action) - 1;

			memcpy(action, c->scratch + req.action.off, n);
			action[n] = '\0';
		}
		conn_log(c, "no operation for this Action, closing", action);
		return -1;
	}
	/* The Sized Envelope's head goes just before the reply, so the
	 * whole record leaves in one send. */
	need = nbfx_write_reply(NULL, 0, &reply);
	if (need > WHOAMI_MESSAGE_MAX || conn_room(&c->out, &c->out_cap, sizeof(head) + need) < 0)
		return -1;
	nbfx_write_reply(c->out + sizeof(head), need, &reply);
	head[0] = NMF_REC_SIZED_ENVELOPE;
	hlen = 1 + nmf_mbint_encode((uint32_t)need, head + 1);
	memcpy(c->out + sizeof(head) - hlen, head, hlen);
	return conn_write(c, c->out + sizeof(head) - hlen, hlen + need);
}

/*
 * The records of a session after its preamble.  Returns 1 after the
 * client's End (answered with End: the connection may carry another
 * session), -1 to drop the connection.
 */
static int
conn_session(struct conn *c)
{
	for (;;) {
		uint32_t size = 0;
		uint8_t type;
		int used;

		if (conn_fill(c, 1) < 0) {
			conn_log(c, "client left in the middle of a session", NULL);
			return -1;
		}
		type = c->buf[c->pos++];
		if (type == NMF_REC_END)
			return conn_write(c, (const uint8_t[]){ NMF_REC_END }, 1) == 0 ? 1 : -1;
		if (type != NMF_REC_SIZED_ENVELOPE) {
			conn_log(c, "unexpected record in a session", NULL);
			return -1;
		}
		while ((used = nmf_mbint_decode(c->buf + c->pos, c->len - c->pos, &size)) == 0)
			if (conn_read(c) <= 0)
				break;
		if (used <= 0 || size > WHOAMI_MESSAGE_MAX || conn_fill(c, (size_t)used + size) < 0) {
			conn_log(c, "bad or truncated envelope", NULL);
			return -1;
		}
		c->pos += (size_t)used;
		if (conn_request(c, c->buf + c->pos, size) < 0)
			return -1;
		c->pos += size;
	}
}

void *
whoami_conn_serve(void *arg)
{
	struct whoami_conn_args *a = arg;
	struct timeval idle = { .tv_sec = IDLE_TIMEOUT_S };
	struct conn *c = calloc(1, sizeof(*c));
	int rc = -1;

	if (c == NULL)
		goto out;
	c->fd = a->fd;
	c->buf = a->bytes;
	c->len = c->cap = a->nbytes;
	a->bytes = NULL;
	c->validate = a->validate;
	/* a client that stops sending or reading ends after IDLE_TIMEOUT_S */
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof(idle));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &idle, sizeof(idle));
	while ((rc = conn_preamble(c)) == 1 && (rc = conn_session(c)) == 1)
		;
	free(c->buf);
	free(c->scratch);
	free(c->out);
	free(c);
out:
	close(a->fd);
	free(a->bytes);
	free(a);
	return NULL;
}
