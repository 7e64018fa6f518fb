/*
 * wire.h - what the benchmark's load generator and test service share:
 * [MC-NMF] records (nmf-protocol.md sections 2, 3 and 8), a streaming
 * record reader, clocks, and process limits.
 *
 * The request protocol inside the envelopes is the benchmark's own: the
 * first byte of a request envelope's payload is an operation (enum
 * wire_op), the next four a little-endian argument.
 */
#ifndef BENCH_WIRE_H
#define BENCH_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* Record types the tools write or act on. */
#define WIRE_REC_VERSION 0x00u
#define WIRE_REC_MODE 0x01u
#define WIRE_REC_VIA 0x02u
#define WIRE_REC_KNOWN_ENCODING 0x03u
#define WIRE_REC_EXTENSIBLE_ENCODING 0x04u
#define WIRE_REC_SIZED_ENVELOPE 0x06u
#define WIRE_REC_END 0x07u
#define WIRE_REC_FAULT 0x08u
#define WIRE_REC_UPGRADE_REQUEST 0x09u
#define WIRE_REC_UPGRADE_RESPONSE 0x0Au
#define WIRE_REC_PREAMBLE_ACK 0x0Bu
#define WIRE_REC_PREAMBLE_END 0x0Cu

/* The framing version the tools speak (major), and the Mode they use. */
#define WIRE_VERSION_MAJOR 1u
#define WIRE_MODE_DUPLEX 0x02u

/* Largest record body either tool accepts. */
#define WIRE_BODY_MAX (16u << 20)
/* Largest Via the tools write (one-byte mbint keeps HAProxy's fixed-offset
 * match valid: see bench/run.py). */
#define WIRE_VIA_MAX 127u
/* Preamble bytes for a Via of WIRE_VIA_MAX. */
#define WIRE_PREAMBLE_MAX (16u + WIRE_VIA_MAX)
/* The upgrade of a net.tcp binding with transport security (TLS). */
#define WIRE_UPGRADE_TLS "application/ssl-tls"
/* Clear-text preamble of an upgrading client, for a Via of WIRE_VIA_MAX:
 * the records of WIRE_PREAMBLE_MAX but Preamble End, then the Upgrade
 * Request (type, one-byte length, name). */
#define WIRE_PREAMBLE_UPGRADE_MAX (WIRE_PREAMBLE_MAX - 1u + 2u + \
	(sizeof(WIRE_UPGRADE_TLS) - 1u))
/* Envelope header: type byte and a mbint of at most 5 bytes. */
#define WIRE_ENVELOPE_HEAD_MAX 6u
/* Operation byte and its argument. */
#define WIRE_OP_HEAD 5u

enum wire_op {
	WIRE_OP_REPLY = 'R',  /* answer with one envelope of arg payload bytes */
	WIRE_OP_STREAM = 'D', /* send envelopes of arg bytes until the client's End */
	WIRE_OP_DATA = 'U',   /* upload data: no answer */
};

/* Encode v (< 2^31) as an mbint into out (5 bytes); returns its length. */
size_t wire_mbint(uint32_t v, uint8_t *out);

/*
 * Write a duplex preamble for via (Version 1.0, Mode 02, Via, Known
 * Encoding 08, Preamble End) into out (WIRE_PREAMBLE_MAX bytes).  Returns
 * its length, or 0 if the Via is longer than WIRE_VIA_MAX.
 */
size_t wire_preamble(const char *via, uint8_t *out);

/*
 * Write what a client asking for the TLS upgrade sends before it has the
 * Upgrade Response (0A): Version 1.0, Mode 02, Via, Known Encoding 08 and
 * the Upgrade Request for WIRE_UPGRADE_TLS, into out
 * (WIRE_PREAMBLE_UPGRADE_MAX bytes).  Its Preamble End goes inside TLS.
 * Returns the length, or 0 if the Via is longer than WIRE_VIA_MAX.
 */
size_t wire_preamble_upgrade(const char *via, uint8_t *out);

/*
 * Write a sized envelope of size payload bytes (size >= WIRE_OP_HEAD) into
 * out (size + WIRE_ENVELOPE_HEAD_MAX bytes): the operation, its argument,
 * then a filler pattern.  Returns the record's length.
 */
size_t wire_envelope(enum wire_op op, uint32_t arg, uint32_t size, uint8_t *out);

/* A streaming reader of framing records; zero it (or wire_reader_init) to
 * start at a record boundary. */
struct wire_reader {
	uint8_t stage;          /* private */
	uint8_t type;           /* the record being read, or just completed */
	uint8_t size_bytes;     /* private: mbint bytes read */
	uint8_t head_got;       /* bytes of head[] filled */
	uint32_t size;          /* body length of a string or envelope record */
	uint32_t left;          /* private: body bytes still to come */
	uint8_t head[WIRE_OP_HEAD]; /* first body bytes of the record */
};

enum wire_status {
	WIRE_BAD = -1,   /* unknown type, unsized envelope, bad mbint, too big */
	WIRE_MORE = 0,   /* every byte consumed, the record is not complete */
	WIRE_RECORD = 1, /* r->type completed */
};

void wire_reader_init(struct wire_reader *r);

/*
 * Consume buf[0..len) up to the end of at most one record; *used gets the
 * bytes consumed.  Body bytes past head[] are skipped, never copied, so a
 * bulk stream costs a few operations per record.
 */
int wire_read(struct wire_reader *r, const uint8_t *buf, size_t len, size_t *used);

/* The little-endian argument in an envelope's head (0 if too short). */
uint32_t wire_head_arg(const struct wire_reader *r);

/* CLOCK_MONOTONIC, nanoseconds. */
uint64_t wire_now_ns(void);

/* utime + stime of this process, seconds. */
double wire_cpu_seconds(void);

/*
 * Raise RLIMIT_NOFILE so that at least want descriptors can be open (the
 * hard limit too when privileged).  Returns the soft limit now in force.
 */
long wire_raise_nofile(long want);

/*
 * Parse "A.B.C.D:PORT" into out; only loopback (127.0.0.0/8) addresses are
 * accepted: the benchmark sends nothing anywhere else.  Returns 0 or -1.
 */
int wire_parse_loopback(const char *text, struct sockaddr_in *out);

#endif
