/*
 * conn.h - one client connection, from accept to close.
 */
#ifndef NETTCPD_CONN_H
#define NETTCPD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "decide.h"
#include "generation.h"
#include "nmf.h"
#include "pending.h"
#include "pump.h"
#include "tls.h"
#include "worker.h"

enum conn_state {
	CONN_PROXY_HEADER, /* listen_proxy: reading the balancer's PROXY */
	                 /* header, which names the client (conn_proxy.c) */
	CONN_PREAMBLE,   /* reading the preamble: routed at the Via, on to its */
	                 /* end (or, terminating TLS, to the Upgrade Request) */
	CONN_TLS_HANDSHAKE, /* Upgrade Response sent; TLS server handshake */
	CONN_TLS_PREAMBLE,  /* reading the rest of the preamble inside TLS, up to 0C */
	CONN_CONNECTING, /* route chosen, backend connect in flight */
	CONN_REPLAY,     /* writing the bytes read from the client to the backend */
	CONN_FORWARDING, /* pumping both directions until both have ended */
	CONN_FAULTING,   /* writing a framing Fault record to the client */
	CONN_DRAINING,   /* fault sent and FIN sent; discarding the client's bytes */
	CONN_IDLE,       /* a session ended; waiting for the client's next preamble */
};

/* How a connection ended: its log line says it, and the access log and
 * the metrics count it. */
enum conn_outcome {
	OUTCOME_CLOSED = 0, /* an orderly end: a FIN, or its sessions were over */
	OUTCOME_FAULTED,    /* a framing Fault was sent */
	OUTCOME_TIMEOUT,    /* preamble, connect, idle or keepalive timeout */
	OUTCOME_MALFORMED,  /* bytes that cannot be read, or have no place */
	OUTCOME_ABORTED,    /* a socket or TLS error, or a peer's reset */
	OUTCOME_EVICTED,    /* made room at max_pending or max_connections */
	OUTCOME_DRAINED,    /* closed by nettcpd's shutdown */
	OUTCOME_RELOADED,   /* pinned to a route a reload changed (conn_reload) */
	OUTCOME_DENIED,     /* the client's address is refused (allow, deny) */
	OUTCOME_HANDOFF,    /* its socket was handed to a registrant (handoff.h) */
};

/* The outcome's one name, the same in the access log's "outcome" and in
 * the metrics' outcome label: "closed", "faulted", "timeout", "malformed",
 * "reset", "evicted", "drained", "reloaded", "denied", "handoff". */
const char *conn_outcome_name(enum conn_outcome outcome);

union conn_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
};

/* Which of a connection's watchers fired (conn.ready_ev). */
enum {
	READY_CLIENT_RD = 1,
	READY_CLIENT_WR = 2,
	READY_BACKEND_RD = 4,
	READY_BACKEND_WR = 8,
	READY_UP_RING = 16,     /* io_uring finished a receive or a send */
	READY_DOWN_RING = 32,   /* for a direction (uring.c) */
};

struct transport;
struct conn_proxy;

struct conn {
	struct worker *w;
	enum conn_state state;
	enum conn_outcome outcome;                /* how it ends, once that is known */
	struct conn *prev, *next;                 /* worker's list of all connections */
	struct pending_entry pend;                /* in its preamble: counted by source */
	struct conn *idle_prev, *idle_next;       /* worker's IDLE list, oldest first */

	int client_fd;
	int backend_fd;                           /* -1 until connecting */
	ev_io client_rd, client_wr, backend_rd, backend_wr;
	ev_timer deadline;                        /* preamble, connect or drain deadline */

	union conn_sockaddr client_addr;          /* the client: a PROXY header's */
	                                          /* source, or the socket's peer */
	uint16_t local_port;
	struct conn_proxy *proxy;                 /* listen_proxy only: the header */
	                                          /* and the balancer (conn_proxy.c); */
	                                          /* NULL on other listeners */

	uint8_t *preamble;                        /* the preamble as read, replayed */
	uint8_t *replay;                          /* what the backend is sent instead of */
	                                          /* the preamble (send_proxy, rewrite_via); */
	                                          /* NULL: the preamble as read */
	/* 16 bits: conn_preamble.c and conn_backend.c assert the bounds. */
	uint16_t preamble_len;                    /* at most NMF_PREAMBLE_MAX */
	uint16_t preamble_cap;                    /* the room preamble has */
	uint16_t replay_len;                      /* a PROXY header and the preamble, */
	                                          /* its Via rewritten */
	uint16_t replay_off;                      /* next replay byte to send the backend */
	struct preamble pre;                      /* what the preamble decided so far; */
	                                          /* its route, the Via inside preamble */
	SSL *ssl;                                 /* TLS: the client side, once upgraded */
	const struct transport *tp;               /* clear, or inside TLS once it is up */

	struct generation *gen;                   /* what this session started under */

	const uint8_t *fault;                     /* Fault record being sent (static) */
	uint16_t fault_len, fault_off;            /* its URI's length is one byte */
	uint32_t drained;                         /* client bytes discarded after a */
	                                          /* fault: FAULT_DRAIN_MAX + a read */

	struct pump up;                           /* client to backend */
	struct pump down;                         /* backend to client */
	enum pump_status up_wait, down_wait;      /* what each asked for last */
	struct tls_wants up_wants, down_wants;    /* TLS: and on which sockets */
	struct nmf_flow up_flow, down_flow;       /* where the session stands */
	unsigned sessions;                        /* sessions ended on this connection */

	/* The flags, in one word, each named for what it belongs to. */
	unsigned tls_left : 1;                    /* TLS: the session inside it ended; the */
	                                          /* client's next byte says how it left */
	unsigned tls_closing : 1;                 /* that byte began a TLS record: */
	                                          /* it must be the client's close_notify */
	unsigned up_end_woke : 1;                 /* clear: woken with its End already */
	unsigned down_end_woke : 1;               /* delivered: stop watching its source */
	unsigned down_unfollowed : 1;             /* the service left the protocol: */
	                                          /* its bytes go on unread */
	unsigned following : 1;                   /* the session is followed to its End */
	unsigned unanswered : 1;                  /* the service has not answered the */
	                                          /* preamble: if the connection fails, */
	                                          /* replay it on another */
	unsigned reused : 1;                      /* the connection came from the pool */
	unsigned fin_held : 1;                    /* the service's FIN after the */
	                                          /* client's End and next preamble: */
	                                          /* not passed on, the session is over */
	unsigned in_session : 1;                  /* access log: a session (or attempt) */
	                                          /* is open, a record is due */
	unsigned member_held : 1;                 /* metrics: counted on its member */
	                                          /* (leastconn) */
	unsigned served : 1;                      /* metrics: a member took the session */
	uint8_t ready_ev;                         /* READY_*: its watchers that fired, */
	                                          /* waiting in w->ready (conn_ready.c) */
	uint8_t fault_sent;                       /* access log: an enum nmf_fault, */
	                                          /* which Fault OUTCOME_FAULTED sent */
	unsigned ready_at;                        /* queued in w->ready at this */
	                                          /* index + 1; 0: not queued */

	/* For the access log: the session (or attempt) under way. */
	uint32_t via_copy_len;                    /* via_copy's: at most NMF_MAX_VIA */
	double session_start;                     /* its first moment (ev_time) */
	double route_time;                        /* seconds to its route; < 0: none */
	uint8_t *via_copy;                        /* its Via, kept once the preamble */
	                                          /* buffer is gone (access log on) */

	/* For /metrics: the routed session's route counters, and the low 32
	 * bits of the pumps' totals they hold (a pump moves far less than
	 * 4 GiB between two counts, so the difference is exact). */
	struct route_stats *rstats;               /* NULL until routed */
	uint32_t up_counted, down_counted;
	float connect_began;                      /* backend connect, seconds */
	                                          /* after session_start */
	int member;                               /* of the route's backends: the */
	                                          /* one dialled or serving; -1 none */
	uint64_t tried;                           /* members this session tried */
};

/* Take ownership of an accepted, non-blocking client socket (proxy: from
 * a listen_proxy listener, a PROXY header comes first). */
void conn_accept(struct worker *w, int fd, const struct sockaddr *peer,
    socklen_t peerlen, uint16_t local_port, int proxy);

/* The worker's ev_prepare: serve the connections whose sockets the last
 * loop iteration found ready, in the order the kernel reported them. */
void conn_run_ready(struct ev_loop *loop, ev_prepare *prep, int revents);

/* Close every connection of the worker at once (shutdown). */
void conn_close_all(struct worker *w);

/* Close the worker's connections idle between sessions (the drain). */
void conn_close_idle(struct worker *w);

/*
 * The worker took a new generation (w->gen): a preamble still being read is
 * decided under it from its first byte; a connection pinned to its backend
 * outside a followed session (a TLS handshake or preamble, or a stream
 * nettcpd does not follow) on a route whose policy it changed
 * (generation_policy_changed), or whose new rules refuse its client
 * (generation_refuses), is reset, and the count logged.  Followed
 * sessions keep their generation to their End; the next one is routed
 * under the new generation.
 */
void conn_reload(struct worker *w);

/* Another worker closed a connection (this one may accept again) or
 * asked for a preamble to be shed. */
void conn_limits_changed(struct worker *w);

/* Shed this worker's preambles chosen to give way at max_pending. */
void conn_shed(struct worker *w);

#endif
