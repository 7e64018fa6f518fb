/*
 * nbfx.h - the SOAP messages of a net.tcp session in WCF's binary session
 * encoding: [MC-NBFSE] (a table of new session strings before each
 * message) over [MC-NBFX] binary XML with the [MC-NBFS] static dictionary.
 *
 * Just enough for a request/reply service: the reader takes one message
 * (the payload of a Sized Envelope record) and finds its WS-Addressing
 * Action and MessageID, the operation element in the body and the text of
 * the operation's first argument; the writer makes the reply envelope.
 * Both are pure: no socket, no allocation.  The reader keeps the session's
 * strings in the caller's struct nbfx_session, which lives as long as the
 * framing session (from one preamble to its End).
 */
#ifndef NBFX_H
#define NBFX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * Session strings kept per session.  .NET's sender adds at most
 * BinaryMessageEncodingBindingElement.MaxSessionSize (2048 by default)
 * bytes of them; more than these limits is refused (NBFX_ERR_SESSION).
 */
#define NBFX_SESSION_BYTES 16384u
#define NBFX_SESSION_STRINGS 1024u
#define NBFX_MAX_DEPTH 64u        /* element nesting a message may have */
#define NBFX_DICT_TEXTS 4u        /* dictionary texts a message's fields may hold */

struct nbfx_session {
	uint32_t count;                        /* strings so far */
	uint32_t used;                         /* bytes of them so far */
	uint32_t off[NBFX_SESSION_STRINGS];    /* string i is bytes[off[i]..+len[i]) */
	uint32_t len[NBFX_SESSION_STRINGS];
	uint8_t bytes[NBFX_SESSION_BYTES];
};

/* What kind of text a field holds. */
enum nbfx_kind {
	NBFX_NONE = 0,   /* absent (or an element without text) */
	NBFX_CHARS,      /* UTF-8 characters */
	NBFX_BYTES,      /* base64Binary, as the raw bytes */
	NBFX_UNIQUEID,   /* a UniqueId record: the 16 bytes of the GUID */
};

/* A field of a request: bytes [off, off+len) of the caller's scratch. */
struct nbfx_field {
	enum nbfx_kind kind;
	size_t off, len;
};

struct nbfx_request {
	struct nbfx_field action;     /* s:Header/a:Action */
	struct nbfx_field message_id; /* s:Header/a:MessageID */
	struct nbfx_field op;         /* local name of s:Body's first child */
	struct nbfx_field arg;        /* text of that element's first child */
};

enum nbfx_status {
	NBFX_OK = 0,
	NBFX_ERR_TRUNCATED = -1,   /* the message ends inside a record */
	NBFX_ERR_RECORD = -2,      /* a record type that cannot appear there */
	NBFX_ERR_MBINT = -3,       /* a bad multi-byte integer */
	NBFX_ERR_SESSION = -4,     /* session strings over the limits */
	NBFX_ERR_DICTIONARY = -5,  /* a session string id never defined */
	NBFX_ERR_DEPTH = -6,       /* nesting deeper than NBFX_MAX_DEPTH */
	NBFX_ERR_ENVELOPE = -7,    /* not a SOAP Envelope, or text after it */
	NBFX_ERR_TEXT = -8,        /* a field's text of a kind not supported */
	NBFX_ERR_SCRATCH = -9,     /* the caller's scratch is too small */
};

void nbfx_session_init(struct nbfx_session *s);

/*
 * The scratch a message of len bytes may need at most: UTF-16 text grows
 * by half as UTF-8, and a few strings may come from the session's.
 */
size_t nbfx_scratch_size(size_t len);

/*
 * Read one message msg[0..len): add its session strings to *s, then find
 * the request's fields, copied into scratch[0..cap).  Returns NBFX_OK or a
 * negative NBFX_ERR_*; after an error the session is unusable.
 */
int nbfx_read_request(struct nbfx_session *s, const uint8_t *msg, size_t len,
    uint8_t *scratch, size_t cap, struct nbfx_request *req);

/* A reply: the envelope <Action> and <RelatesTo> (a request's MessageID),
 * and the body <element xmlns=ns><result>value</result></element>, where
 * value is the pieces of value[] one after the other, of kind value_kind
 * (NBFX_CHARS or NBFX_BYTES). */
struct nbfx_reply {
	const char *action;
	enum nbfx_kind relates_kind;   /* NBFX_UNIQUEID or NBFX_CHARS */
	const uint8_t *relates_to;
	size_t relates_len;
	const char *ns, *element, *result;
	enum nbfx_kind value_kind;
	const struct iovec *value;
	size_t nvalue;
};

/*
 * Write the reply message (an empty table of session strings, then the
 * envelope) into out[0..cap).  Returns its length; when that is above cap
 * nothing useful was written and the caller tries again with that much.
 */
size_t nbfx_write_reply(uint8_t *out, size_t cap, const struct nbfx_reply *r);

/* A short English name for a status, for log lines. */
const char *nbfx_strerror(int status);

#endif
