/*
 * config_int.h - what config.c, config_global.c and config_route.c share:
 * the parser's state and the calls between them.  Nothing outside them
 * includes it (config.h is the interface).
 */
#ifndef NETTCPD_CONFIG_INT_H
#define NETTCPD_CONFIG_INT_H

#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "config.h"
#include "tls.h"

enum section_kind {
	SECT_NONE = 0, /* before the first header */
	SECT_SKIP,     /* under a header that was itself an error */
	SECT_GLOBAL,
	SECT_ROUTE,
};

enum global_key {
	GK_LISTEN = 0,
	GK_LISTEN_PROXY,
	GK_PROXY_TRUSTED,
	GK_PROXY_TIMEOUT,
	GK_PREAMBLE_TIMEOUT,
	GK_CONNECT_TIMEOUT,
	GK_IDLE_TIMEOUT,
	GK_KEEPALIVE_TIMEOUT,
	GK_PINNED_TIMEOUT,
	GK_MAX_CONNECTIONS,
	GK_MAX_PENDING,
	GK_HANDOFF_TIMEOUT,
	GK_HANDOFF_MAX_PENDING,
	GK_FORWARD,
	GK_LOG,
	GK_LOG_LEVEL,
	GK_LOG_CLIENT_LINES,
	GK_WORKERS,
	GK_PIPE_SIZE,
	GK_FOLLOW_SESSIONS,
	GK_BACKEND_POOL,
	GK_BACKEND_POOL_TIMEOUT,
	GK_BACKEND_POOL_SETTLE,
	GK_TLS_SESSION_TIMEOUT,
	GK_SHUTDOWN_TIMEOUT,
	GK_ACCESS_LOG,
	GK_METRICS,
	GK_USER,
	GK_GROUP,
	GK_PIDFILE,
	GK_ALLOW,
	GK_DENY,
	GK_COUNT
};

/* Route keys that configure TLS termination, besides tls itself. */
enum tls_key {
	TK_CERT = 0,
	TK_KEY,
	TK_MIN_VERSION,
	TK_CIPHERS,
	TK_CIPHERSUITES,
	TLS_KEY_COUNT
};

struct via_line {
	char *text;
	int line;
};

/*
 * A route section as written.  The table is built only at the end of the
 * file, because a section may name its backend after its via lines.
 */
struct route_sect {
	char *name;
	int line;               /* of the header */
	struct via_line *vias;
	size_t nvias;
	char *backend_text;
	int backend_line;       /* 0 while the section has no backend key */
	struct backend_list backends;
	int balance_line, fail_threshold_line, fail_timeout_line; /* 0: absent */
	enum balance balance;
	unsigned fail_threshold;
	double fail_timeout;
	int check_line[5];      /* check_interval, check_timeout, check_via, */
	                        /* rise, fall; 0: absent */
	double check_interval, check_timeout;
	char *check_via;
	unsigned rise, fall;
	int tls_line;           /* of the tls key, 0 if absent */
	int tls_terminate;
	int pool_line;          /* of the pool key, 0 if absent */
	int pool_off;
	int send_proxy_line;    /* of the send_proxy key, 0 if absent */
	int send_proxy;         /* enum proxy_send_version */
	int rewrite_via_line;   /* of the rewrite_via key, 0 if absent */
	int rewrite_via;
	char *tls_value[TLS_KEY_COUNT];  /* tls_cert ... tls_ciphersuites */
	int tls_value_line[TLS_KEY_COUNT];
	struct acl *deny, *allow;        /* NULL: no such key; moved to the table */
};

/* A TLS context already built, shared by routes with the same settings. */
struct tls_cache_entry {
	char *value[TLS_KEY_COUNT];
	SSL_CTX *ctx;
};

/* An error or a warning; only config.c looks inside one. */
struct err_item;

/* The control socket's keys (config_control.c). */
enum control_key {
	CK_CONTROL = 0,
	CK_CONTROL_MODE,
	CK_CONTROL_GROUP,
	CK_ALLOW_USERS,
	CK_ALLOW_GROUPS,
	CK_CONTROL_TIMEOUT,
	CK_CONTROL_MAX_REGISTRATIONS,
	CK_CONTROL_MAX_CONNECTIONS,
	CK_COUNT
};

/* State shared by read_line(), handle_key() and the key handlers. */
struct parser {
	const char *path;
	FILE *f;
	char *buf;
	size_t bufcap;
	int read_errno;
	int lineno;
	/*
	 * The current line is neither blank, a comment nor a header, so inih
	 * either calls handle_key() for it or has found a syntax error.
	 */
	int needs_key;
	int got_key;
	/* A key line longer than inih's buffer: inih was given its key with an
	 * empty value, and this is the value as written (handle_key). */
	char *long_value;
	int bracket;            /* the line is a '[' without its ']' */
	int first_syntax_line;
	enum section_kind kind;
	size_t cur_route;       /* index into routes while kind is SECT_ROUTE */
	int global_line;
	int key_line[GK_COUNT]; /* first line of each [global] key, 0 if absent */
	int control_line[CK_COUNT]; /* the same for the control keys */
	struct route_sect *routes;
	size_t nroutes, routes_cap;
	int *listen_lines;      /* parallel to cfg->listens */
	struct config *cfg;
	struct err_item *errs;
	size_t nerrs;
	size_t nwarnings;
	struct tls_cache_entry *tls_cache;
	size_t ntls_cache;
	int oom;
};

/* config.c: the errors, every one with its line */
void add_error(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void add_warning(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
char *config_file_name(struct parser *p, const char *value);
/* An allow or deny line: its entries added to *list (made on the first). */
void config_acl_key(struct parser *p, struct acl **list, const char *name,
    const char *value);

/* config_global.c: [global], and its checks once the file is read */
void global_key(struct parser *p, const char *name, const char *value);
void add_listens(struct parser *p, const char *value, int line);
void check_proxy_trusted(struct parser *p);
void check_metrics(struct parser *p);
void resolve_accounts(struct parser *p);

/* config_control.c: the control socket's keys of [global] */
void control_cfg_defaults(struct control_cfg *c);
int control_key(struct parser *p, const char *name, const char *value);
void control_cfg_free(struct control_cfg *c);

/* config_route.c: route sections, and the table built from them at the end */
void route_key(struct parser *p, const char *name, const char *value);
void check_route_names(struct parser *p);
void build_routes(struct parser *p);

#endif
