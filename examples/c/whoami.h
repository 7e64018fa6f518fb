/*
 * whoami.h - nettcp-whoami, the example net.tcp service: its connection
 * server (whoami_conn.c) and what it needs from the main program.
 */
#ifndef WHOAMI_H
#define WHOAMI_H

#include <stddef.h>
#include <stdint.h>

/* The contract of t/interop/mono/Contracts.cs (IWhoAmI). */
#define WHOAMI_NS "urn:nettcpd-interop"
#define WHOAMI_ACTION_PREFIX WHOAMI_NS "/IWhoAmI/"

/* Largest message accepted: the interop binding's MaxReceivedMessageSize. */
#define WHOAMI_MESSAGE_MAX (16u * 1024u * 1024u)

/*
 * Asks whether a next session on a handed-off connection, for via, still
 * routes to this process (nettcpd's VALIDATE).  Returns 1 yes, 0 no, -1
 * error.  NULL for a connection this process accepted itself.
 */
typedef int (*whoami_validate_fn)(const char *via);

struct whoami_conn_args {
	int fd;                      /* the client's socket, blocking */
	uint8_t *bytes;              /* bytes already read from it (malloc'd, */
	size_t nbytes;               /* owned by the server from now on) */
	whoami_validate_fn validate;
};

/* The service's name, put in front of every Hello reply. */
extern const char *whoami_name;
/* --verbose: a log line for every session a connection begins. */
extern int whoami_verbose;

/*
 * Serve client connection fd (bytes: what was already read from it,
 * malloc'd or NULL) on a thread of its own.  Takes fd and bytes whatever
 * happens; returns 0, or -1 when no thread could start (fd closed).
 */
int whoami_start(int fd, uint8_t *bytes, size_t nbytes,
    whoami_validate_fn validate);

/* Is there room for one more connection?  Wait until there is. */
int whoami_slot_free(void);
void whoami_wait_slot(void);

/*
 * Register via for handoff on nettcpd's control socket at control, then
 * serve every client connection it hands over.  Returns the exit status
 * when the registration fails or ends.
 */
int whoami_handoff_run(const char *control, const char *via);

/*
 * Serve one client connection, session after session, until the client
 * closes it or breaks the protocol; then close it and free a.  Runs as a
 * thread's start routine.
 */
void *whoami_conn_serve(void *a);

#endif
