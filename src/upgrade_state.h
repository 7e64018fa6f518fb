/*
 * upgrade_state.h - what a binary upgrade hands the new process besides
 * its listening sockets: the control listener, every control connection,
 * their registrations and the handoffs waiting for TAKEN, so that
 * registrants notice nothing.
 *
 * It travels as text in a memfd the new process finds by
 * NETTCPD_UPGRADE_STATE (its descriptor number), one record a line,
 * versioned by the first; each descriptor a record names is one the old
 * process passed at that number.  Formatting and parsing are pure (no
 * I/O), so a unit test sees every line the new process may be given:
 *
 *     nettcpd-upgrade-state 1
 *     ids NEXT-REG-ID NEXT-HANDOFF-ID
 *     listener FD                              (at most one)
 *     conn FD                                  (numbered 0, 1, ... in order)
 *     reg CONN REG-ID proxy PREFIX BACKEND
 *     reg CONN REG-ID handoff PREFIX
 *     pending CONN HANDOFF-ID REG-ID FD MS-LEFT
 *     end
 *
 * PREFIX and BACKEND are control protocol tokens (bytes 0x21..0x7e), as
 * the registrant sent them.
 */
#ifndef NETTCPD_UPGRADE_STATE_H
#define NETTCPD_UPGRADE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "ctlproto.h"

#define UPGRADE_STATE_ENV "NETTCPD_UPGRADE_STATE"

struct upgrade_reg {
	size_t conn;               /* index into conns */
	uint64_t id;
	enum ctl_mode mode;
	char *prefix;
	char *backend;             /* proxy only; NULL for handoff */
};

struct upgrade_pending {
	size_t conn;
	uint64_t id, reg_id;
	int fd;
	double left;               /* seconds of its handoff_timeout */
};

struct upgrade_state {
	uint64_t next_reg_id, next_handoff_id;
	int listener;              /* -1: none */
	int *conns;
	size_t nconns;
	struct upgrade_reg *regs;
	size_t nregs;
	struct upgrade_pending *pending;
	size_t npending;
};

/* An empty state: no listener, nothing listed. */
void upgrade_state_init(struct upgrade_state *st);

/*
 * Add a record (strings copied).  0, or -1 when out of memory or when the
 * record is not one upgrade_state_parse() takes back (a descriptor < 0, a
 * connection index not listed, a token empty or with a byte outside
 * 0x21..0x7e, an id 0).
 */
int upgrade_state_add_conn(struct upgrade_state *st, int fd);
int upgrade_state_add_reg(struct upgrade_state *st, size_t conn, uint64_t id,
    enum ctl_mode mode, const char *prefix, const char *backend);
int upgrade_state_add_pending(struct upgrade_state *st, size_t conn,
    uint64_t id, uint64_t reg_id, int fd, double left);

/* The text of st, in a buffer the caller frees (*len bytes, no NUL
 * counted), or NULL when out of memory. */
char *upgrade_state_format(const struct upgrade_state *st, size_t *len);

/*
 * Read len bytes of text into st.  Returns 0, or -1 with the line number
 * and the reason in err: another version, a record unknown or out of
 * place, a number out of range, a connection not listed before its
 * records, a descriptor named twice, no "end" or bytes after it.  st is
 * left empty after a failure.
 */
int upgrade_state_parse(const char *buf, size_t len, struct upgrade_state *st,
    char *err, size_t errlen);

void upgrade_state_free(struct upgrade_state *st);

#endif
