/*
 * config.h - the INI configuration, loaded once into an immutable struct.
 *
 * Every section but [global] is a route named by the section.  Errors name
 * FILE:LINE; the line of a section header for whole-section problems.
 */
#ifndef NETTCPD_CONFIG_H
#define NETTCPD_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

#include "acl.h"
#include "addr.h"
#include "log.h"
#include "routes.h"

/* Defaults, documented in nettcpd.ini(5). */
#define CONFIG_DEFAULT_LISTEN "0.0.0.0:808, [::]:808"
/* Who may send a PROXY header on a listen_proxy listener: this host. */
#define CONFIG_DEFAULT_PROXY_TRUSTED "127.0.0.0/8, ::1"
/* A balancer writes its header as soon as it is connected; 5 s is room
 * for a loaded one, and short for a slow client holding a slot. */
#define CONFIG_DEFAULT_PROXY_TIMEOUT 5.0
#define CONFIG_DEFAULT_PREAMBLE_TIMEOUT 30.0
#define CONFIG_DEFAULT_CONNECT_TIMEOUT 5.0
/* How long SIGTERM lets sessions in progress run to their End. */
#define CONFIG_DEFAULT_SHUTDOWN_TIMEOUT 30.0
#define CONFIG_DEFAULT_MAX_CONNECTIONS 10000u
#define CONFIG_DEFAULT_MAX_PENDING 100u
#define CONFIG_DEFAULT_LOG_CLIENT_LINES 20u
#define CONFIG_MAX_WORKERS 256u
/* The longest line: a backend list of many members, or a via of the
 * framing's 2,048-byte maximum, fits with room to spare. */
#define CONFIG_MAX_LINE 8192
#define CONFIG_DEFAULT_PIPE_SIZE (1024u * 1024u)
#define CONFIG_MAX_PIPE_SIZE (64u * 1024u * 1024u)
#define CONFIG_DEFAULT_BACKEND_POOL 256u
#define CONFIG_DEFAULT_BACKEND_POOL_TIMEOUT 30.0
/* A connection is handed out again only after it has been quiet this long
 * since its session's End: bytes a service sends late after its End (a
 * bug) close it in the pool instead of meeting the next session.  10 ms is
 * over twice the worst straggler measured (4 ms) and far under a session's
 * think time, so the pool holds a few more connections, not more dials. */
#define CONFIG_DEFAULT_BACKEND_POOL_SETTLE 0.010
#define CONFIG_MAX_BACKEND_POOL_SETTLE 10.0
/* A client connection waits this long for its next session: as long as a
 * WCF service itself waits on a connection it keeps (ConnectionDemuxer,
 * the binding's 2-minute IdleTimeout), which is also how long the WCF
 * client keeps a pooled connection, so nettcpd rarely closes one first. */
#define CONFIG_DEFAULT_KEEPALIVE_TIMEOUT 120.0
/* A stream nettcpd cannot follow (an upgrade it passes through) stays
 * pinned to the backend and the policy it was opened under; an hour bounds
 * how long a policy a reload tightened can outlive it there, and outlasts
 * a WCF channel's default 10-minute receive and send timeouts. */
#define CONFIG_DEFAULT_PINNED_TIMEOUT 3600.0
/* A session ticket resumes for an hour, and its key is replaced hourly:
 * a WCF client that redials (its pool idles connections out after 2
 * minutes) resumes, and no ticket key is older than two hours. */
#define CONFIG_DEFAULT_TLS_SESSION_TIMEOUT 3600.0

/* The control socket (nettcpd(8), REGISTRATION): [global] control keys. */
#define CONFIG_DEFAULT_CONTROL_MODE 0660u
#define CONFIG_DEFAULT_CONTROL_TIMEOUT 5.0
#define CONFIG_DEFAULT_CONTROL_MAX_REGISTRATIONS 64u
#define CONFIG_DEFAULT_CONTROL_MAX_CONNECTIONS 16u

struct control_cfg {
	char *path;                /* control: the socket; NULL: none */
	unsigned mode;             /* control_mode */
	char *group;               /* control_group as written; NULL: none */
	gid_t gid;                 /* control_group's */
	uint32_t *allow_uids;      /* allow_users, resolved at load */
	size_t nallow_uids;
	uint32_t *allow_gids;      /* allow_groups, resolved at load */
	size_t nallow_gids;
	double timeout;            /* control_timeout: seconds for HELLO */
	unsigned max_registrations; /* per control connection */
	unsigned max_connections;  /* control connections per uid */
};

enum forward_method {
	FORWARD_SPLICE = 0, /* zero-copy through a pipe */
	FORWARD_COPY,       /* recv()/send() through a small buffer */
	FORWARD_URING,      /* copy, its receives done by io_uring (uring.h) */
};

struct listen_cfg {
	struct addr addr;
	char *text;
	int proxy;                 /* listen_proxy: a PROXY header comes first */
};

struct config {
	char *path;
	struct listen_cfg *listens;
	size_t nlistens;
	double preamble_timeout;   /* seconds, from accept (or the PROXY */
	                           /* header) to the routing decision */
	double proxy_timeout;      /* seconds, from accept to a whole PROXY header */
	struct acl *proxy_trusted;   /* peers that may send one (compiled) */
	double connect_timeout;    /* seconds, for the backend connect */
	double shutdown_timeout;   /* seconds SIGTERM waits for sessions to end */
	double idle_timeout;       /* seconds without progress when forwarding; 0: off */
	double keepalive_timeout;  /* seconds a client connection may wait */
	                           /* between sessions; 0: off */
	double pinned_timeout;     /* seconds an unfollowed stream (an upgrade */
	                           /* passed through, follow_sessions off) */
	                           /* lives; 0: off */
	double tls_session_timeout; /* seconds a TLS session resumes; 0: off */
	unsigned max_connections;  /* client connections open at once */
	unsigned max_pending;      /* client connections still in their preamble */
	double handoff_timeout;    /* seconds a registrant has to say TAKEN */
	unsigned handoff_max_pending; /* handoffs waiting for TAKEN, per */
	                           /* registration */
	unsigned workers;          /* event loops, one thread each; 0: one per CPU */
	enum forward_method forward;
	unsigned pipe_size;        /* bytes per splice pipe; 0: the kernel's default */
	int follow_sessions;       /* follow duplex sessions to their End records */
	unsigned backend_pool;     /* idle backend connections kept per worker */
	double backend_pool_timeout; /* seconds one is kept idle */
	double backend_pool_settle;  /* seconds quiet before it is reused */
	char *access_log;          /* "off", "stderr", "syslog" or a file; NULL: off */
	int metrics;               /* serve /metrics on metrics_addr */
	struct addr metrics_addr;
	char *user;                /* drop root to this account; NULL: stay */
	char *group;               /* as written; NULL: the user's own group */
	uid_t uid;                 /* user's, resolved at load */
	gid_t gid;                 /* group's, or the user's primary group */
	char *pidfile;             /* NULL: none */
	enum log_target log_target;
	enum log_level log_level;
	unsigned log_client_lines; /* a second per worker about clients; 0: all */
	struct acl_rules acl;      /* [global] allow and deny, before a route's */
	struct route_table *routes;
	struct control_cfg control; /* config_control.c */
};

/*
 * Load and validate path.  Returns a config, or NULL with every problem
 * written to err (errlen bytes) as "FILE:LINE: text" lines.  Warnings
 * ("FILE:LINE: warning: text") do not make it fail; on success err holds
 * only those, or "".
 */
struct config *config_load(const char *path, char *err, size_t errlen);

void config_free(struct config *cfg);

/*
 * Take relative file names (tls_cert, tls_key, access_log, pidfile) from
 * dir in every file loaded from now on, instead of from the current
 * directory: a daemon that moves to / keeps them naming the files they
 * named where it started.  NULL goes back to the current directory.
 */
void config_set_dir(const char *dir);

/*
 * Parse a duration: a number of seconds, or a number with ms, s, m or h.
 * Returns 0 and the seconds in *out, or -1.
 */
int config_parse_duration(const char *text, double *out);

#endif
