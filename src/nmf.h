/*
 * nmf.h - .NET Message Framing ([MC-NMF]) preamble parser, duplex session
 * follower and record writers.
 *
 * The parser is pure: it never reads a socket and owns no memory.  The caller
 * keeps every byte the client has sent so far in one contiguous buffer and
 * calls nmf_parse() again whenever the buffer grows; the parser resumes where
 * it stopped, so any split of the bytes across reads gives the same records.
 * Strings (Via, content type, upgrade protocol) are reported as an offset and
 * a length into that buffer, never copied.
 */
#ifndef NETTCPD_NMF_H
#define NETTCPD_NMF_H

#include <stddef.h>
#include <stdint.h>

/* Record types (MC-NMF 2.2.3, RS FramingFormat.cs). */
enum nmf_record_type {
	NMF_REC_VERSION = 0x00,
	NMF_REC_MODE = 0x01,
	NMF_REC_VIA = 0x02,
	NMF_REC_KNOWN_ENCODING = 0x03,
	NMF_REC_EXTENSIBLE_ENCODING = 0x04,
	NMF_REC_UNSIZED_ENVELOPE = 0x05,
	NMF_REC_SIZED_ENVELOPE = 0x06,
	NMF_REC_END = 0x07,
	NMF_REC_FAULT = 0x08,
	NMF_REC_UPGRADE_REQUEST = 0x09,
	NMF_REC_UPGRADE_RESPONSE = 0x0A,
	NMF_REC_PREAMBLE_ACK = 0x0B,
	NMF_REC_PREAMBLE_END = 0x0C,
};

enum nmf_mode {
	NMF_MODE_SINGLETON_UNSIZED = 1,
	NMF_MODE_DUPLEX = 2,
	NMF_MODE_SIMPLEX = 3,
	NMF_MODE_SINGLETON_SIZED = 4,
};

/* Limits every .NET implementation enforces (nmf-protocol.md 1.3). */
#define NMF_MAX_VIA 2048u
#define NMF_MAX_CONTENT_TYPE 256u
#define NMF_MAX_UPGRADE 256u
#define NMF_MBINT_MAX_BYTES 5u

/*
 * The most bytes a client can legitimately send before it must wait for the
 * server: Version (3) + Mode (2) + Via (1 + 5 + 2048) + Extensible Encoding
 * (1 + 5 + 256) + Upgrade Request (1 + 5 + 256).  (Without an upgrade the
 * one-byte Preamble End takes the Upgrade Request's place.)
 */
#define NMF_PREAMBLE_MAX (3u + 2u + 6u + NMF_MAX_VIA + 6u + NMF_MAX_CONTENT_TYPE + 6u + NMF_MAX_UPGRADE)

/* What nmf_parse() returns. */
enum nmf_status {
	NMF_NEED_MORE = 0,       /* every byte given was consumed; call again with more */
	NMF_RECORD = 1,          /* one record is complete, see struct nmf_record */
	NMF_ERR_RECORD_TYPE = -1, /* a record type that cannot appear here */
	NMF_ERR_VERSION = -2,    /* major version is not 1: UnsupportedVersion fault */
	NMF_ERR_MODE = -3,       /* mode is not 1 or 2: UnsupportedMode fault */
	NMF_ERR_MBINT = -4,      /* size field longer than 5 bytes or above 2^31-1 */
	NMF_ERR_TOO_LONG = -5,   /* Via, content type or upgrade name over its limit */
	NMF_ERR_DONE = -6,       /* called again after the parser has finished */
	NMF_ERR_ENCODING = -7,   /* Known Encoding value outside 0x00..0x08 */
};

/* Where in the preamble grammar the parser stands. */
enum nmf_stage {
	NMF_STAGE_RECORD = 0, /* expecting a record type byte */
	NMF_STAGE_FIXED,      /* reading the fixed-size body of the current record */
	NMF_STAGE_SIZE,       /* reading the mbint length of a string record */
	NMF_STAGE_STRING,     /* waiting for the string bytes to arrive */
	NMF_STAGE_UPGRADED,   /* an Upgrade Request was read: the next bytes are not framing */
	NMF_STAGE_END,        /* Preamble End was read */
};

struct nmf_parser {
	enum nmf_stage stage;
	uint32_t size;           /* mbint value being accumulated, then the string length */
	size_t pos;              /* bytes of the stream consumed so far */
	uint8_t record;          /* type of the record being read */
	uint8_t expect;          /* which records may come next (private to nmf.c) */
	uint8_t mode;            /* mode from the Mode record, 0 before it */
	uint8_t fixed[2];        /* body bytes of Version / Mode / Known Encoding */
	uint8_t fixed_got;
	uint8_t size_bytes;      /* mbint bytes read so far */
};

/* One decoded record.  str_off/str_len index the caller's buffer. */
struct nmf_record {
	enum nmf_record_type type;
	uint8_t major, minor;    /* NMF_REC_VERSION */
	uint8_t mode;            /* NMF_REC_MODE */
	uint8_t encoding;        /* NMF_REC_KNOWN_ENCODING */
	size_t str_off, str_len; /* NMF_REC_VIA, _EXTENSIBLE_ENCODING, _UPGRADE_REQUEST */
};

/* Start a parser at the first byte of a connection. */
void nmf_parser_init(struct nmf_parser *p);

/*
 * Start a parser on the stream inside an upgrade (e.g. the decrypted TLS
 * bytes), where only further Upgrade Requests or Preamble End may follow.
 */
void nmf_parser_init_upgraded(struct nmf_parser *p, uint8_t mode);

/*
 * Parse the next record from buf[p->pos .. len).  buf holds the whole stream
 * from its first byte; len may grow between calls.  Returns NMF_RECORD and
 * fills *rec when a record completes (p->pos is then just past it),
 * NMF_NEED_MORE when buf ends inside a record, or a negative NMF_ERR_*.
 * After an error the parser stays in error; after an Upgrade Request or
 * Preamble End it returns NMF_ERR_DONE.
 */
int nmf_parse(struct nmf_parser *p, const uint8_t *buf, size_t len,
    struct nmf_record *rec);

/*
 * Following a duplex session after its preamble, one direction at a time,
 * to find where it ends.  The follower reads only framing bytes: a Sized
 * Envelope's type and size, never its payload, which the caller may move
 * without looking at it (nmf_flow_skip).  Anything it does not expect makes
 * it stop for good (NMF_FLOW_OPAQUE) at the byte that does not fit, which
 * it does not take: the caller decides what becomes of that byte and the
 * rest (a client's never reach the service; see conn.c).
 */
enum nmf_flow_state {
	NMF_FLOW_RECORD = 0, /* at a record boundary */
	NMF_FLOW_SIZE,       /* inside a Sized Envelope's size */
	NMF_FLOW_PAYLOAD,    /* inside a Sized Envelope's payload */
	NMF_FLOW_ENDED,      /* the End record went by: this way is over */
	NMF_FLOW_OPAQUE,     /* left the protocol; bad says at which record */
};

enum nmf_flow_dir {
	NMF_FLOW_UP,         /* client to service, from just after Preamble End */
	NMF_FLOW_DOWN,       /* service to client, from its first byte */
};

struct nmf_flow {
	enum nmf_flow_state state;
	uint32_t size;        /* mbint value being accumulated */
	uint32_t remaining;   /* payload bytes still to come */
	uint8_t want_ack;     /* down: the Preamble Ack must come first */
	uint8_t size_bytes;   /* mbint bytes read so far */
	uint8_t singleton;    /* mode 1: one Unsized Envelope, then End */
	uint8_t chunks;       /* singleton: SIZE and PAYLOAD are its chunks' */
	uint8_t want_end;     /* singleton: the envelope is over, End is next */
	uint8_t may_end;      /* singleton, down: End may come without an envelope */
	uint8_t ack_alone;    /* down: no byte may follow the Ack while set */
	                      /* (the caller clears it once the client spoke) */
	uint8_t bad;          /* OPAQUE: the record type that did not fit */
	                      /* (06 for an invalid size field) */
};

void nmf_flow_init(struct nmf_flow *f, enum nmf_flow_dir dir);

/*
 * The same for a singleton session (mode 1, WCF's streamed transfer): the
 * client sends one Unsized Envelope (05, chunks of mbint size and bytes,
 * a 00 chunk size), then End; the service answers with the Ack, at most
 * one Unsized Envelope, then End (RS FramingDecoders.cs ServerSingleton-
 * Decoder, SingletonMessageDecoder, ClientSingletonDecoder).  A chunk's
 * bytes are NMF_FLOW_PAYLOAD, its size NMF_FLOW_SIZE.
 */
void nmf_flow_init_singleton(struct nmf_flow *f, enum nmf_flow_dir dir);

/* The follower a session of this mode (from its Mode record) needs: the
 * singleton one for mode 1, the duplex one otherwise.  Whatever (re)starts
 * a direction of a session starts it here, so the two never disagree. */
void nmf_flow_init_mode(struct nmf_flow *f, enum nmf_flow_dir dir,
    uint8_t mode);

/*
 * Follow buf[0..len).  Returns how many of the bytes belong to the session:
 * all of them; or, when an End record is among them, the bytes up to and
 * including it (the state is then NMF_FLOW_ENDED and the rest belongs to
 * whatever follows the session); or, when a byte does not fit, the bytes
 * before it (NMF_FLOW_OPAQUE).  Once ENDED or OPAQUE the state stays and
 * no byte is taken.
 */
size_t nmf_flow_feed(struct nmf_flow *f, const uint8_t *buf, size_t len);

/* Account for n payload bytes moved unseen: in NMF_FLOW_PAYLOAD, with
 * n <= f->remaining; in any other state it does nothing. */
void nmf_flow_skip(struct nmf_flow *f, size_t n);

/* A short English name for a status, for log lines. */
const char *nmf_strerror(int status);

/*
 * Decode one mbint from buf[0..len).  Returns the number of bytes used (1..5)
 * and stores the value, 0 if buf ends inside the mbint, or -1 if it is
 * invalid (6th byte needed, or 5th byte above 0x07).
 */
int nmf_mbint_decode(const uint8_t *buf, size_t len, uint32_t *value);

/* Encode value (<= 2^31-1) into out (>= 5 bytes); returns the bytes written. */
size_t nmf_mbint_encode(uint32_t value, uint8_t *out);

/*
 * A client's preamble for one session on via (at most NMF_MAX_VIA bytes):
 * Version 1.0, mode, Via, the binary session encoding WCF uses, Preamble
 * End, into out (NMF_PREAMBLE_MAX bytes).  Returns its length.
 */
size_t nmf_preamble_write(uint8_t *out, uint8_t mode, const char *via,
    size_t via_len);

/* Every framing fault's URI is this prefix and the fault's name. */
#define NMF_FAULT_URI_PREFIX "http://schemas.microsoft.com/ws/2006/05/framing/faults/"

/* Framing faults the proxy sends (nmf-protocol.md 5). */
enum nmf_fault {
	NMF_FAULT_ENDPOINT_NOT_FOUND,
	NMF_FAULT_ENDPOINT_UNAVAILABLE,
	NMF_FAULT_UNSUPPORTED_VERSION,
	NMF_FAULT_UNSUPPORTED_MODE,
	NMF_FAULT_UPGRADE_INVALID,
	NMF_FAULT_CONTENT_TYPE_INVALID,
	NMF_FAULT_SERVER_TOO_BUSY,
	NMF_FAULT_COUNT
};

/*
 * The complete Fault record (08 + mbint + URI) for a fault, in static
 * storage.  Stores its length in *len.
 */
const uint8_t *nmf_fault_record(enum nmf_fault fault, size_t *len);

/* The fault's short name, e.g. "EndpointNotFound". */
const char *nmf_fault_name(enum nmf_fault fault);

#endif
