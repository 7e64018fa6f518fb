/*
 * conn_backend.c - the backend side of a session: a connection from the
 * pool or a new one, the replay of the preamble, and a redial when a
 * pooled connection turns out dead or stale before it answers.
 */
#include "conn_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bpool.h"
#include "proxy_send.h"
#include "rewrite.h"
#include "routes.h"

/* The preamble has gone and been answered: neither it nor the replay
 * made of it will be sent again. */
static void
replay_done(struct conn *c)
{
	free(c->preamble);
	c->preamble = NULL;
	c->preamble_cap = 0;
	free(c->replay);
	c->replay = NULL;
}

static void backend_connect(struct conn *c);

static int64_t
now_ms(const struct conn *c)
{
	return (int64_t)(ev_now(c->w->loop) * 1000.0);
}

const char *
backend_member_text(const struct conn *c)
{
	if (c->pre.route == NULL)
		return NULL;
	return c->member >= 0 ? c->pre.route->backends.m[c->member].text :
	    c->pre.route->backend_text;
}

/* The session's next member, held for it: 0, or -1 when every member of
 * the route was tried. */
static int
member_next(struct conn *c)
{
	const struct backend_list *l = &c->pre.route->backends;
	int i = backend_pick(l, c->tried, now_ms(c));

	if (i < 0)
		return -1;
	c->member = i;
	c->tried |= UINT64_C(1) << i;
	backend_hold(l, i);
	c->member_held = 1;
	return 0;
}

void
backend_let_go(struct conn *c)
{
	if (!c->member_held)
		return;
	backend_release(&c->pre.route->backends, c->member);
	c->member_held = 0;
}

/* The member took the session: a new connection established after seconds
 * (< 0: a pooled one).  The route's session count is of sessions a backend
 * served. */
static void
backend_served(struct conn *c, double seconds)
{
	backend_connected(&c->pre.route->backends, c->member, seconds);
	/* Once, though a pooled connection found dead is redialled. */
	if (c->rstats != NULL && !c->served)
		stat_add(&c->rstats->sessions, 1);
	c->served = 1;
}

static void
forward_start(struct conn *c)
{
	c->up.total = c->preamble_len; /* the replay counts as forwarded */
	c->up_wait = c->down_wait = PUMP_WANT_READ;
	c->up_end_woke = c->down_end_woke = 0;
	c->down_unfollowed = 0;
	c->up_wants.client = c->up_wants.backend = 0;
	c->down_wants.client = c->down_wants.backend = 0;
	conn_set_state(c, CONN_FORWARDING);
	conn_log(c, LOG_LEVEL_DEBUG, "forwarding to %s%s", backend_member_text(c),
	    c->reused ? " on a pooled connection" : "");
	if (c->unanswered) {
		/* Keep the preamble for a redial, and the client's further
		 * bytes in its socket, until the service answers. */
		deadline_start(c, c->gen->cfg->connect_timeout);
		conn_wait(c, 0, EV_READ);
		return;
	}
	replay_done(c);
	idle_start(c);
	c->tp->forward_start(c);
}

/*
 * What the operator can do about a failed connect to a unix socket, after
 * the system's words: its errors name a file, not a host.  Empty for TCP.
 */
static const char *
connect_hint(const struct addr *backend, int err)
{
	if (backend->ss.ss_family != AF_UNIX)
		return "";
	switch (err) {
	case ENOENT:
		return " (no socket file: is the service running?)";
	case ECONNREFUSED:
		return " (no service listens on the socket file)";
	case EACCES:
	case EPERM:
		return " (the user nettcpd runs as must have write permission "
		    "on the socket file and search permission on each directory "
		    "above it)";
	case EAGAIN:
		return " (the service's listen backlog is full: it is not "
		    "accepting connections)";
	default:
		return "";
	}
}

void
backend_fail(struct conn *c, const char *why)
{
	const struct backend_list *l = &c->pre.route->backends;
	const char *failed = backend_member_text(c);

	backend_failed(l, c->member, now_ms(c));
	backend_let_go(c);
	close_backend(c);
	c->replay_off = 0;
	c->unanswered = 0;
	if (member_next(c) == 0) {
		conn_log(c, LOG_LEVEL_NOTICE, "backend %s: %s; trying the next "
		    "member, %s", failed, why, backend_member_text(c));
		backend_connect(c);
		return;
	}
	conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_NOTICE,
	    "backend %s: %s%s", failed, why, l->n > 1 ?
	    "; every backend of the route failed" : "");
}

/* The connect (or the first send on it) failed: the client has seen
 * nothing, so the next member may serve it (backend_fail). */
static void
connect_failed(struct conn *c, const char *what, int err)
{
	char why[256];

	snprintf(why, sizeof(why), "%s: %s%s", what, strerror(err),
	    connect_hint(&c->pre.route->backends.m[c->member].addr, err));
	backend_fail(c, why);
}

/* The service's direction as it was before its connection: nothing of
 * that connection is read, and the next one starts the session afresh. */
static void
down_reset(struct conn *c)
{
	pump_release(&c->down, &c->w->pipes);
	pump_init(&c->down);
	nmf_flow_init_mode(&c->down_flow, NMF_FLOW_DOWN, c->pre.parser.mode);
}

/*
 * A pooled connection failed before the service said a word: the service
 * closed it while it was idle, and the close crossed our preamble.  Only
 * the preamble went out on it, and the client waits for the answer, so a
 * new connection given the same bytes serves the client just the same.
 */
void
backend_redial(struct conn *c, const char *why)
{
	conn_log(c, LOG_LEVEL_DEBUG, "pooled connection to %s %s, redialling",
	    backend_member_text(c), why);
	stat_add(&c->w->stats.pool_redials, 1);
	close_backend(c);
	down_reset(c);
	c->unanswered = 0;
	c->replay_off = 0;
	backend_connect(c);
}

/* The client's bytes after its Preamble End went out with the replay:
 * the service has been asked something already. */
static int
replay_holds_session_bytes(const struct conn *c)
{
	return c->preamble_len > c->pre.clear_end + c->pre.parser.pos;
}

/*
 * A new connection that fails before the service said a word is a member
 * going away (a restart resets the connections in its accept backlog):
 * only the preamble went out on it, so the next member is given the same
 * bytes and the client sees nothing of it.
 */
void
backend_unanswered_failed(struct conn *c, const char *why)
{
	if (c->reused) {
		backend_redial(c, why);
		return;
	}
	down_reset(c);
	backend_fail(c, why);
}

/*
 * Before forwarding the first answer of a pooled connection, look whether
 * it is one: 1 if bytes wait, 0 if nothing yet, -1 if the connection had
 * died or was dirty and was redialled.
 *
 * A service answers a preamble with its Ack and then waits for the
 * client's first envelope (WCF creates the service instance on that
 * message), so on a connection that carried another session the Ack
 * alone is an answer; with bytes behind it, or bytes after it before the
 * client spoke (the follower's ack_alone), it may be the stray 0B of the
 * last session, with that session's envelope.  Here the Ack has not
 * reached the client, so a new connection serves it cleanly.
 */
int
backend_answered(struct conn *c)
{
	uint8_t peek[2];
	ssize_t n = recv(c->backend_fd, peek, sizeof(peek), MSG_PEEK);
	char why[64];

	/* A new connection's answer is the service's own: the follower reads
	 * it.  Only a pooled one may hold the last session's stray bytes. */
	if (n > 0 && !c->reused) {
		c->unanswered = 0;
		replay_done(c);
		idle_start(c);
		return 1;
	}
	if (n > 0 && peek[0] != NMF_REC_PREAMBLE_ACK && peek[0] != NMF_REC_FAULT) {
		/* Not an answer to this preamble: bytes the service sent after
		 * the last session's End.  They are nobody's to read. */
		snprintf(why, sizeof(why), "sent 0x%02x before answering", peek[0]);
		backend_redial(c, why);
		return -1;
	}
	/* Only the preamble went out on it (backend_start): the service
	 * was asked nothing else. */
	if (n > 1 && peek[0] == NMF_REC_PREAMBLE_ACK) {
		backend_redial(c, "sent bytes behind its Ack");
		return -1;
	}
	if (n > 0) {
		c->down_flow.ack_alone = peek[0] == NMF_REC_PREAMBLE_ACK;
		c->unanswered = 0;
		replay_done(c);
		idle_start(c);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		backend_unanswered_failed(c, strerror(errno));
	else
		backend_unanswered_failed(c, c->reused ? "was closed" :
		    "closed the connection before answering");
	return -1;
}

/*
 * Before the service's bytes are read: once the client's first bytes after
 * the preamble have gone to the service (the replay is counted in up.total),
 * the service may answer them.
 */
void
backend_client_spoke(struct conn *c)
{
	if (c->down_flow.ack_alone && c->up.total > c->preamble_len)
		c->down_flow.ack_alone = 0;
}

const struct addr *
backend_pool_client(const struct conn *c, struct addr *key)
{
	if (c->pre.route->send_proxy == PROXY_SEND_OFF)
		return NULL;
	proxy_send_client_key(&c->client_addr.sa, key);
	return key;
}

/* The PROXY header for this client into out (PROXY_SEND_MAX bytes): from
 * the client's address to the one it connected to (UNKNOWN, or LOCAL, if
 * the socket cannot say which).  Behind a balancer that is the address the
 * balancer's header names, as HAProxy passes it on, not our listen_proxy
 * socket, which the client never saw. */
static size_t
replay_header(struct conn *c, uint8_t *out)
{
	const union conn_sockaddr *dst = proxy_client_dst(c);
	union conn_sockaddr local;
	socklen_t len = sizeof(local);
	int known = 1;

	if (dst != NULL)
		local = *dst;
	else
		known = getsockname(c->client_fd, &local.sa, &len) == 0;
	return proxy_send_header((enum proxy_send_version)c->pre.route->send_proxy,
	    &c->client_addr.sa, known ? &local.sa : NULL, out);
}

/*
 * What the backend is sent before the client's further bytes: the PROXY
 * header, on a new connection of a send_proxy route (a pooled one had it
 * when it was opened), then the preamble, with its Via naming the backend
 * on a rewrite_via route.  Without either, the preamble as read is sent
 * and c->replay stays NULL.  Returns 0, or -1 when the connection was
 * closed.
 */
_Static_assert(PROXY_SEND_MAX + NMF_PREAMBLE_MAX + REWRITE_GROWTH <= UINT16_MAX,
    "struct conn's replay_len and replay_off are 16 bits");

static int
replay_build(struct conn *c, int new_connection)
{
	const struct route *r = c->pre.route;
	int header = new_connection && r->send_proxy != PROXY_SEND_OFF;
	size_t cap = PROXY_SEND_MAX + c->preamble_len + REWRITE_GROWTH, off = 0;
	ssize_t n;

	free(c->replay);
	c->replay = NULL;
	if (!header && !r->rewrite_via)
		return 0;
	if ((c->replay = malloc(cap)) == NULL) {
		conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_WARNING,
		    "out of memory, reset");
		return -1;
	}
	if (header)
		off = replay_header(c, c->replay);
	if (!r->rewrite_via) {
		memcpy(c->replay + off, c->preamble, c->preamble_len);
		c->replay_len = off + c->preamble_len;
		return 0;
	}
	n = rewrite_via_preamble(c->preamble, c->preamble_len, c->pre.via_off,
	    c->pre.via_len, backend_member_text(c), c->replay + off, cap - off);
	if (n < 0) {
		/* Routed, so the Via has its "net.tcp://": only a backend
		 * address longer than the client's can make it too long. */
		conn_fault(c, NMF_FAULT_ENDPOINT_NOT_FOUND, LOG_LEVEL_NOTICE,
		    "rewrite_via: the Via naming %s would be over %u bytes",
		    backend_member_text(c), NMF_MAX_VIA);
		return -1;
	}
	c->replay_len = off + (size_t)n;
	return 0;
}

/* Write the client's bytes to the backend, exactly as they were read (or
 * as replay_build made them), before any other byte: splice() must not
 * overtake them. */
void
replay_write(struct conn *c)
{
	const uint8_t *replay = c->replay != NULL ? c->replay : c->preamble;
	size_t len = c->replay != NULL ? c->replay_len : c->preamble_len;
	ssize_t n;

	while (c->replay_off < len) {
		n = send(c->backend_fd, replay + c->replay_off,
		    len - c->replay_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				conn_wait(c, 0, EV_WRITE);
				return;
			}
			if (c->unanswered && c->reused) {
				backend_redial(c, strerror(errno));
				return;
			}
			/* Before the first byte went out, a send error is
			 * the connect's own (ECONNREFUSED, ...); the client
			 * has seen nothing, so the next member may serve it. */
			connect_failed(c, c->state == CONN_CONNECTING ?
			    "connect" : "replay", errno);
			return;
		}
		c->replay_off += (size_t)n;
		/* The first byte out on a new connection: it is established. */
		if (c->state == CONN_CONNECTING)
			backend_served(c, ev_time() - c->session_start -
			    c->connect_began);
		conn_set_state(c, CONN_REPLAY);
	}
	forward_start(c);
}

void
connect_done(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->backend_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		connect_failed(c, "connect", err);
		return;
	}
	replay_write(c);
}

/* Make fd the backend socket (c->reused: one from the pool, which this
 * loop watches already); the client's further bytes stay in its socket
 * until the replay is out. */
static void
backend_attach(struct conn *c, int fd, enum conn_state state)
{
	c->backend_fd = fd;
	if (c->reused) {
		bpool_io_set(&c->backend_rd, fd, EV_READ);
		bpool_io_set(&c->backend_wr, fd, EV_WRITE);
	} else {
		ev_io_set(&c->backend_rd, fd, EV_READ);
		ev_io_set(&c->backend_wr, fd, EV_WRITE);
	}
	conn_wait(c, 0, 0);
	conn_set_state(c, state);
	deadline_start(c, c->gen->cfg->connect_timeout);
}

static void
backend_connect(struct conn *c)
{
	const struct addr *backend = &c->pre.route->backends.m[c->member].addr;
	int one = 1;
	int fd;

	if (replay_build(c, 1) < 0)
		return;
	/* Until the service answers, a failure is this member's, and the
	 * next one is given the preamble (backend_unanswered_failed) --
	 * unless the client's first envelopes went with it: the service may
	 * have acted on them. */
	c->reused = 0;
	c->unanswered = c->following && !replay_holds_session_bytes(c);
	fd = socket(backend->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_WARNING,
		    "cannot create backend socket: %s", strerror(errno));
		return;
	}
	/* WCF sets NoDelay on its own sockets; Nagle here would hold back the
	 * small framing records it writes.  A unix socket has no Nagle. */
	if (backend->ss.ss_family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	backend_attach(c, fd, CONN_CONNECTING);
	c->connect_began = (float)(ev_time() - c->session_start);
	/*
	 * On loopback the handshake is usually over before connect() returns
	 * EINPROGRESS, so the replay is tried at once; while the connect is
	 * still under way send() says EAGAIN and the writable socket resumes
	 * it (connect_done).  A unix socket connects at once or fails: its
	 * EAGAIN is a full listen backlog, not a connect under way, and
	 * waiting for it would only hold the client until connect_timeout.
	 */
	if (connect(fd, (const struct sockaddr *)&backend->ss, backend->len) == 0 ||
	    errno == EINPROGRESS)
		replay_write(c);
	else
		connect_failed(c, "connect", errno);
}

/*
 * Bytes the client sent after Preamble End without waiting for the Ack
 * (legal framing) are the session's first: the follower reads them, the
 * replay carries those that belong to the session, and anything after the
 * client's End is held for the next preamble.  Inside TLS nothing may
 * follow the End: the next preamble comes in clear.  Returns 0, or -1 when
 * the connection was closed.
 */
static int
follow_early_bytes(struct conn *c)
{
	/* Inside TLS the parser read from clear_end on (0 on other routes). */
	size_t end = c->pre.clear_end + c->pre.parser.pos;
	size_t extra = c->preamble_len - end, used, held;

	if (extra == 0)
		return 0;
	used = nmf_flow_feed(&c->up_flow, c->preamble + end, extra);
	if (c->up_flow.state == NMF_FLOW_OPAQUE) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "client sent record 0x%02x, which "
		    "has no place in the session, with its preamble; reset",
		    c->up_flow.bad);
		return -1;
	}
	held = extra - used;
	if (held > 0 && !c->tp->next_preamble_follows) {
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "client sent %zu bytes after its End "
		    "inside TLS, with its preamble; reset", held);
		return -1;
	}
	if (held > 0) {
		if (pump_buffer(&c->up) == NULL) {
			conn_finish(c, OUTCOME_ABORTED, CLOSE_RESET, LOG_LEVEL_WARNING,
			    "out of memory, reset");
			return -1;
		}
		memcpy(c->up.buf, c->preamble + end + used, held);
		c->up.buf_off = 0;
		c->up.held = held;
	}
	c->preamble_len = end + used;
	return 0;
}

/*
 * The preamble is complete.  A session nettcpd can read, duplex or
 * singleton (the parser admits no other mode), in clear or inside the TLS
 * it terminates, is followed from its first byte (its framing stays
 * readable to the end) and may take a pooled connection; an upgrade passed
 * to the service is piped as it comes.
 */
void
backend_start(struct conn *c)
{
	struct addr client;
	int fd = -1;

	c->following = c->gen->cfg->follow_sessions &&
	    c->pre.parser.stage == NMF_STAGE_END;
	if (c->following) {
		nmf_flow_init_mode(&c->up_flow, NMF_FLOW_UP, c->pre.parser.mode);
		nmf_flow_init_mode(&c->down_flow, NMF_FLOW_DOWN, c->pre.parser.mode);
		if (follow_early_bytes(c) < 0)
			return;
	}
	c->tried = 0;
	c->served = 0;
	if (member_next(c) < 0) {
		/* Cannot be: a route has a member, and none was tried yet. */
		conn_fault(c, NMF_FAULT_ENDPOINT_UNAVAILABLE, LOG_LEVEL_WARNING,
		    "route has no backend");
		return;
	}
	/* A client that sent its first envelope with its preamble takes a
	 * new connection: its service may answer with the Ack and the reply
	 * at once, and on a pooled connection that cannot be told from the
	 * last session's stray Ack and envelope (backend_answered), which
	 * would reach this client. */
	if (c->following && !c->pre.route->pool_off &&
	    !replay_holds_session_bytes(c)) {
		fd = bpool_take(&c->w->backends,
		    &c->pre.route->backends.m[c->member].addr,
		    backend_pool_client(c, &client));
		stat_add(fd >= 0 ? &c->w->stats.pool_hits :
		    &c->w->stats.pool_misses, 1);
		stat_add(fd >= 0 ? &c->rstats->pool_hits :
		    &c->rstats->pool_misses, 1);
	}
	if (fd < 0) {
		backend_connect(c);
		return;
	}
	if (replay_build(c, 0) < 0) {
		close(fd);
		return;
	}
	/* A pooled connection is a connect to its member that succeeded. */
	backend_served(c, -1);
	c->reused = 1;
	c->unanswered = 1;
	backend_attach(c, fd, CONN_REPLAY);
	replay_write(c);
}

