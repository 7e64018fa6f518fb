/*
 * conn_int.h - what the conn*.c files share about a connection; nothing
 * outside them includes it (conn.h is the interface).
 */
#ifndef NETTCPD_CONN_INT_H
#define NETTCPD_CONN_INT_H

#include <stdarg.h>

#include "conn.h"
#include "log.h"
#include "tls.h"

/* After a fault, read and discard at most this much, for at most this long
 * (SMSvcHost drains 64 KiB for a minute; a proxy need not wait that long). */
#define FAULT_DRAIN_MAX (64u * 1024u)
#define FAULT_DRAIN_SECONDS 2.0

/* How much of a Via or other client text a log line shows. */
#define LOG_TEXT_MAX 256u

enum close_how {
	CLOSE_FIN,   /* orderly close */
	CLOSE_RESET, /* abort: RST, as SMSvcHost does on a bad preamble */
};

/*
 * How the client's bytes travel: in clear on its socket, or inside the TLS
 * a route terminates (conn_tls.c).  A connection's transport is the clear
 * one until its TLS handshake is done, and the clear one again once the
 * session inside TLS is over (the next preamble comes in clear).
 */
struct transport {
	/* Forwarding begins: wait for the sockets, or run at once. */
	void (*forward_start)(struct conn *c);
	/* A socket event while forwarding (the service has answered). */
	void (*forward_up)(struct conn *c);
	void (*forward_down)(struct conn *c);
	/* Write some of buf to the client: the bytes written, with *events
	 * what to wait for before the rest (0: nothing), or -1 on failure
	 * (said at debug). */
	ssize_t (*send)(struct conn *c, const void *buf, size_t len, int *events);
	/* Half-close towards the client: 0, or -1. */
	int (*shutdown)(struct conn *c);
	/* The session is over: leave what carried it. */
	void (*session_over)(struct conn *c);
	/* Bytes after the client's End may be its next preamble. */
	int next_preamble_follows;
};

extern const struct transport transport_clear; /* conn_session.c */
extern const struct transport transport_tls;   /* conn_tls.c */

/* ---- conn.c: states, watchers, log lines, the one way out */

/* One log line about this connection: who, which Via or route, then what. */
void conn_log(struct conn *c, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The one way out of a connection: say why (fmt NULL: it was said when the
 * outcome was decided, as for a fault), then close both sides and give
 * back what the connection holds.  c is freed.
 */
void conn_finish(struct conn *c, enum conn_outcome outcome, enum close_how how,
    enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Every state change goes through here (the worker's lists follow it). */
void conn_set_state(struct conn *c, enum conn_state state);

/* The client's next session begins, under the newest generation. */
void conn_next_session(struct conn *c);

/* The access log (conn_session.c): a session, or an attempt at one,
 * begins, is routed, and ends with an outcome (OUTCOME_CLOSED once routed
 * is "routed"). */
void conn_session_begin(struct conn *c);
void conn_session_routed(struct conn *c);
void conn_session_record(struct conn *c, enum conn_outcome outcome);

void deadline_start(struct conn *c, double seconds);
/* Wait for exactly these events on each socket (0, EV_READ, EV_WRITE or
 * both), as the connection's state needs them. */
void conn_wait(struct conn *c, int client, int backend);
int events_of(enum tls_step step);              /* what a TLS step waits for */
void stop_watchers(struct conn *c);
void close_backend(struct conn *c);

/* ---- conn_proxy.c */
/* Accepted on a listen_proxy listener: room for its PROXY header and what
 * it names (c->proxy), 0, or -1 when out of memory. */
int proxy_attach(struct conn *c);
/* Accepted on a listen_proxy listener: 1 if its peer is in proxy_trusted,
 * else 0 once c is reset (and freed). */
int proxy_admit(struct conn *c);
void proxy_read(struct conn *c);      /* CONN_PROXY_HEADER: read the header */
void proxy_expired(struct conn *c);   /* proxy_timeout */
/* How a log line names the client: peer (its text), and the balancer a
 * PROXY header came through, " (proxy ADDR)", written into buf. */
const char *proxy_who(const struct conn *c, const char *peer, char *buf,
    size_t buflen);
/* The address the client dialled, as a PROXY header named it; NULL when
 * none did (another listener, a LOCAL header, none read yet). */
const union conn_sockaddr *proxy_client_dst(const struct conn *c);

/* A socket is ready (conn.c): read or write as the state needs. */
void conn_client_io(struct conn *c, int revents);
void conn_backend_io(struct conn *c, int revents);

/* ---- conn_ready.c: ready sockets served in the kernel's order */
/* Queue c with bit (READY_*) for the pass's end, in the kernel's order. */
void ready_queue(struct conn *c, unsigned bit);
/* The callback of every watcher of a connection: queues it. */
void ready_on_io(struct ev_loop *loop, ev_io *io, int revents);
/* Stop one of c's watchers; an event of it still queued is dropped. */
void ready_unwatch(struct conn *c, ev_io *io);
/* c is being freed: out of the queue. */
void ready_forget(struct conn *c);

/* ---- conn_limits.c */
/* Accept while the process is below max_connections, or while one of this
 * worker's idle connections can give way. */
void conn_accept_limit_update(struct worker *w);
/* Shed this worker's preambles chosen to give way at max_pending; 1 if
 * newcomer (or NULL) was one of them: it may be gone. */
int conn_shed_chosen(struct worker *w, const struct conn *newcomer);

/* ---- conn_preamble.c */
/* Read what the client sent into the preamble buffer (what: "preamble" or
 * "PROXY header", for the log): the bytes read (> 0), 0 to wait, or -1
 * once the connection was closed. */
ssize_t preamble_recv(struct conn *c, const char *what);
/* Room for need bytes (at most NMF_PREAMBLE_MAX) in c->preamble: 0, or -1
 * when out of memory. */
int preamble_reserve(struct conn *c, size_t need);
void preamble_read(struct conn *c);
void preamble_parse(struct conn *c);

/* ---- conn_backend.c */
void backend_start(struct conn *c);   /* the preamble is complete: dial */
/* The member dialled failed (why): the next one, or EndpointUnavailable
 * once every member failed. */
void backend_fail(struct conn *c, const char *why);
void backend_let_go(struct conn *c);  /* the session leaves its member */
const char *backend_member_text(const struct conn *c); /* NULL: none yet */
void backend_redial(struct conn *c, const char *why);
int backend_answered(struct conn *c); /* 1 bytes wait, 0 not yet, -1 redialled */
/* The connection failed before the service answered the preamble: a
 * pooled one is redialled, a new one fails over to the next member. */
void backend_unanswered_failed(struct conn *c, const char *why);
void backend_client_spoke(struct conn *c); /* before reading the service */
void replay_write(struct conn *c);
void connect_done(struct conn *c);
/* The client a backend connection of this session is pooled for: the key
 * in *key on a send_proxy route, whose connections carry its header; NULL
 * on others. */
const struct addr *backend_pool_client(const struct conn *c, struct addr *key);

/* ---- conn_tls.c */
void tls_start(struct conn *c);
void tls_handshake(struct conn *c);
void tls_preamble_read(struct conn *c);
int tls_after_end(struct conn *c);    /* 1 read a clear preamble, 0 wait, -1 closing */

/* ---- conn_session.c */
void idle_touch(struct conn *c);      /* forwarding moved: push idle_timeout back */
double pinned_left(const struct conn *c); /* seconds of pinned_timeout left */
void idle_start(struct conn *c);
void forward_up(struct conn *c);      /* the transport's, once answered */
void forward_down(struct conn *c);
void session_check(struct conn *c);   /* both sides over: end the session */
void unfollow_down(struct conn *c);
void client_out_of_place(struct conn *c);

/* ---- conn_fault.c */
/* Say why (", sent FAULT" is added), send a Fault record, then FIN, drain,
 * close. */
void conn_fault(struct conn *c, enum nmf_fault fault, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The client's address is refused (why says by which rule): the fault,
 * outcome denied, counted for the route if the Via found one. */
void conn_deny(struct conn *c, enum nmf_fault fault, const char *why);
void fault_write(struct conn *c);
void drain_read(struct conn *c);
void conn_shutdown(struct conn *c);   /* half-close, then drain */

#endif
