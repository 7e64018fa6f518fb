/*
 * ctlproto.h - the control protocol, version 1 (nettcpd(8), REGISTRATION):
 * a pure parser and the formatters of its messages, one message per
 * SOCK_SEQPACKET record.  No I/O, no allocation and no daemon header, so
 * the daemon, libnettcpshare and nettcpctl share this one reading of it.
 */
#ifndef NETTCPD_CTLPROTO_H
#define NETTCPD_CTLPROTO_H

#include <stddef.h>
#include <stdint.h>

#define CTL_VERSION 1u
/* The longest message either side sends, HANDOFF excepted. */
#define CTL_MSG_MAX 4096u
/* HANDOFF: its text line (with the newline) at most, then the preamble
 * bytes, at most nmf.h's NMF_PREAMBLE_MAX (kept equal: check_ctlproto). */
#define CTL_HANDOFF_LINE_MAX 512u
#define CTL_PREAMBLE_MAX 2583u
#define CTL_HANDOFF_MAX (CTL_HANDOFF_LINE_MAX + CTL_PREAMBLE_MAX)
/* Tags are the client's, 1..CTL_TAG_MAX (0 only in ERR: "no tag read");
 * reg-ids and handoff-ids the daemon's, 1..CTL_ID_MAX. */
#define CTL_TAG_MAX 4294967295u
#define CTL_ID_MAX 9223372036854775807u

/* Who sent a message: each side has its own verbs. */
enum ctl_side {
	CTL_FROM_CLIENT,
	CTL_FROM_DAEMON,
};

enum ctl_verb {
	/* client -> daemon */
	CTL_HELLO = 1,
	CTL_REGISTER,
	CTL_UNREGISTER,
	CTL_VALIDATE,
	CTL_TAKEN,
	CTL_LIST,
	CTL_STATS,
	/* daemon -> client */
	CTL_OK,
	CTL_ROUTE,
	CTL_STAT,
	CTL_ERR,
	CTL_HANDOFF,
	CTL_REVOKED,
};

/* The error codes of ERR and REVOKED. */
enum ctl_code {
	CTL_E_SYNTAX,
	CTL_E_VERSION,
	CTL_E_STATE,
	CTL_E_SIZE,
	CTL_E_DENIED,
	CTL_E_CONFLICT,
	CTL_E_LIMIT,
	CTL_E_VIA,
	CTL_E_BACKEND,
	CTL_E_TLS,
	CTL_E_UNKNOWN,
	CTL_E_COUNT_
};

/* REGISTER's mode. */
enum ctl_mode {
	CTL_MODE_PROXY,
	CTL_MODE_HANDOFF,
};

/* ROUTE's kind. */
enum ctl_kind {
	CTL_KIND_STATIC,
	CTL_KIND_PROXY,
	CTL_KIND_HANDOFF,
};

/* Which form of OK (the parser cannot know which request it answers). */
enum ctl_ok {
	CTL_OK_PLAIN,   /* OK <tag>: UNREGISTER */
	CTL_OK_VALUE,   /* OK <tag> <n>: REGISTER's reg-id, LIST's/STATS' count */
	CTL_OK_YES,     /* OK <tag> yes: VALIDATE */
	CTL_OK_NO,      /* OK <tag> no */
	CTL_OK_HELLO,   /* OK <tag> <version> <software>: HELLO */
};

/* What ctl_parse() returns when a message is malformed: each a reason of
 * its own, so a test and a log line can tell them apart. */
enum ctl_parse_error {
	CTL_PE_EMPTY = -1,    /* no bytes at all */
	CTL_PE_SIZE = -2,     /* over CTL_MSG_MAX (HANDOFF: CTL_HANDOFF_MAX) */
	CTL_PE_BYTE = -3,     /* a byte outside 0x21..0x7e in a token */
	CTL_PE_SPACE = -4,    /* a leading, trailing or doubled space */
	CTL_PE_VERB = -5,     /* no such verb from this side */
	CTL_PE_ARITY = -6,    /* too few or too many tokens for the verb */
	CTL_PE_TAG = -7,      /* a tag not decimal 1..CTL_TAG_MAX */
	CTL_PE_ID = -8,       /* a reg-id or handoff-id not decimal 1..CTL_ID_MAX */
	CTL_PE_NUMBER = -9,   /* another number not decimal or out of range */
	CTL_PE_MODE = -10,    /* REGISTER's mode neither proxy nor handoff */
	CTL_PE_KIND = -11,    /* ROUTE's kind not static, proxy or handoff */
	CTL_PE_CODE = -12,    /* ERR's or REVOKED's code not in the list */
	CTL_PE_ANSWER = -13,  /* OK's argument neither a number nor yes/no */
	CTL_PE_TEXT = -14,    /* free text empty or not printable ASCII */
	CTL_PE_LENGTH = -15,  /* HANDOFF: no newline in its line, or nbytes */
	                      /* not the count of bytes after it */
	CTL_PE_ROUTE = -16,   /* ROUTE: uid/pid "-" not exactly for static, */
	                      /* or target "handoff" not exactly for handoff */
};

/* Bytes inside the message given to ctl_parse (not NUL-terminated). */
struct ctl_span {
	const char *p;
	size_t len;
};

/* One message.  Which fields a verb uses is written beside each. */
struct ctl_msg {
	enum ctl_verb verb;
	uint32_t tag;           /* all but TAKEN, HANDOFF, REVOKED (ERR: may be 0) */
	uint32_t version;       /* HELLO; OK hello */
	enum ctl_ok ok;         /* OK */
	enum ctl_mode mode;     /* REGISTER */
	enum ctl_kind kind;     /* ROUTE */
	enum ctl_code code;     /* ERR, REVOKED */
	uint64_t reg_id;        /* UNREGISTER, VALIDATE, HANDOFF, REVOKED */
	uint64_t handoff_id;    /* TAKEN, HANDOFF */
	uint64_t value;         /* OK value (reg-id or count), STAT, ROUTE's */
	                        /* sessions in progress */
	int64_t uid, pid;       /* ROUTE: -1 where the message says "-" */
	struct ctl_span via;    /* REGISTER, VALIDATE, ROUTE (its prefix) */
	struct ctl_span addr;   /* REGISTER proxy's backend, ROUTE's target */
	struct ctl_span name;   /* ROUTE's and STAT's name; OK hello's software */
	struct ctl_span text;   /* ERR, REVOKED: free text */
	struct ctl_span preamble; /* HANDOFF: the client's bytes */
};

/*
 * Parse one whole message of len bytes sent by side from.  Returns its
 * verb (> 0) with *m filled, or a negative CTL_PE_*; on an error m->tag
 * holds the tag if one was read that far (else 0), for the ERR answer.
 * Never reads past buf[len - 1]; the spans in *m point into buf.
 */
int ctl_parse(const void *buf, size_t len, enum ctl_side from,
    struct ctl_msg *m);

/* A static, lower-case reason for a CTL_PE_* ("doubled space"). */
const char *ctl_parse_error_text(int error);
/* The ERR code that answers a CTL_PE_*: size for CTL_PE_SIZE, else syntax. */
enum ctl_code ctl_parse_error_code(int error);

/* The wire names: "REGISTER", "conflict", "proxy", "static".  NULL for a
 * value out of range. */
const char *ctl_verb_name(enum ctl_verb verb);
const char *ctl_code_name(enum ctl_code code);
const char *ctl_mode_name(enum ctl_mode mode);
const char *ctl_kind_name(enum ctl_kind kind);

/*
 * Write *m as its side sends it into buf (cap bytes; no NUL added).
 * Returns the length, or -1 when it does not fit or a field is not what
 * ctl_parse accepts (a token with a space, a number out of range, a verb
 * unknown).  Free text (ERR, REVOKED) is the exception: bytes outside
 * 0x20..0x7e become '?', empty text becomes "-", and it is cut short to
 * fit CTL_MSG_MAX, so a reason quoting a client's bytes is always sent.
 * What ctl_format writes, ctl_parse reads back as the same message.
 */
int ctl_format(const struct ctl_msg *m, char *buf, size_t cap);

/*
 * The HANDOFF line alone, "HANDOFF <handoff-id> <reg-id> <nbytes>\n", for
 * a sender that gives the preamble as a second iovec.  Returns its length
 * or -1 (ids or nbytes out of range, cap too small).
 */
int ctl_format_handoff_line(char *buf, size_t cap, uint64_t handoff_id,
    uint64_t reg_id, size_t nbytes);

/* A span over a C string (NULL: empty), for filling a ctl_msg. */
struct ctl_span ctl_span_str(const char *s);

#endif
