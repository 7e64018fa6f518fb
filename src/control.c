/*
 * control.c - the control socket (control.h): accept, credentials, one
 * message per record, the answers.
 */
#include "control.h"

#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlproto.h"
#include "explain.h"
#include "handoff.h"
#include "log.h"
#include "registry.h"
#include "routes.h"
#include "via.h"

struct peer {
	int fd;
	ev_io io;
	ev_timer hello;            /* control_timeout: HELLO by then */
	int said_hello;
	struct handoff_peer *hp;   /* its side in handoff.c */
	/* An OK held until every worker has generation wait_gen, so that a
	 * registration answered routes the next client (reading stops
	 * meanwhile, so answers keep the order of the requests). */
	unsigned wait_gen;         /* 0: none held */
	unsigned wait_verb;
	uint32_t wait_tag;
	enum ctl_ok ok;
	uint64_t value;
	uint32_t uid, gid;
	int32_t pid;
	struct peer *next;
};

static struct {
	int fd;
	char *path;
	dev_t dev;                 /* the socket file bound, so that exit */
	ino_t ino;                 /* removes it only if it is still ours */
	struct ev_loop *loop;
	struct daemon *d;
	ev_io io;
	struct peer *peers;
	int handed_over;           /* a binary upgrade's new process reads */
	                           /* the socket and the connections */
	unsigned verb;             /* of the message being answered; 0: none */
} ctl = { .fd = -1 };

/* The gauges of /metrics, after anything that changes them. */
static void
count(void)
{
	atomic_store(&ctl.d->stats.registrations[CTL_MODE_PROXY],
	    registry_count(CTL_MODE_PROXY));
	atomic_store(&ctl.d->stats.registrations[CTL_MODE_HANDOFF],
	    registry_count(CTL_MODE_HANDOFF));
}

int
control_open(const struct config *cfg)
{
	const struct control_cfg *c = &cfg->control;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (c->path == NULL)
		return 0;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", c->path);
	/* A socket file left by a nettcpd killed without its exit (or the
	 * one a binary upgrade's old process serves: the path is the new
	 * one's from now on).  Anything else there is an error of bind. */
	if (lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)unlink(c->path);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(c->path, c->mode) < 0 ||
	    (c->group != NULL && chown(c->path, (uid_t)-1, c->gid) < 0) ||
	    lstat(c->path, &st) < 0 || listen(fd, 64) < 0) {
		log_err("control %s: %s", c->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((ctl.path = strdup(c->path)) == NULL) {
		close(fd);
		log_err("control %s: out of memory", c->path);
		return -1;
	}
	ctl.fd = fd;
	ctl.dev = st.st_dev;
	ctl.ino = st.st_ino;
	return 0;
}

/* Send one message without waiting; a peer whose queue is full does not
 * read its answers.  0, or -1 (then close the peer). */
static int
send_msg(struct peer *p, const struct ctl_msg *m)
{
	char buf[CTL_MSG_MAX];
	int n = ctl_format(m, buf, sizeof(buf));

	if (n < 0 || send(p->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) !=
	    n) {
		log_notice("control: uid %u pid %d: %s; closed", p->uid,
		    (int)p->pid, n < 0 ? "an answer that cannot be written" :
		    errno == EAGAIN ? "does not read its answers" :
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
send_err(struct peer *p, uint32_t tag, enum ctl_code code, const char *text)
{
	struct ctl_msg m = { .verb = CTL_ERR, .tag = tag, .code = code,
	    .text = ctl_span_str(text) };

	stat_add(&ctl.d->stats.control_requests[ctl.verb][1], 1);
	return send_msg(p, &m);
}

static int
send_ok(struct peer *p, uint32_t tag, enum ctl_ok ok, uint64_t value)
{
	struct ctl_msg m = { .verb = CTL_OK, .tag = tag, .ok = ok,
	    .value = value };

	stat_add(&ctl.d->stats.control_requests[ctl.verb][0], 1);
	return send_msg(p, &m);
}

/* Every worker has taken generation number (or a later one). */
static int
workers_have(unsigned number)
{
	for (unsigned i = 0; i < ctl.d->nworkers; i++)
		if (atomic_load(&ctl.d->workers[i].gen_number) < number)
			return 0;
	return 1;
}

/* OK to a request that published a generation: now, or once every worker
 * has it (control_generation_taken). */
static int
send_ok_published(struct peer *p, uint32_t tag, enum ctl_ok ok, uint64_t value)
{
	if (workers_have(ctl.d->gen->number))
		return send_ok(p, tag, ok, value);
	p->wait_gen = ctl.d->gen->number;
	p->wait_verb = ctl.verb;
	p->wait_tag = tag;
	p->value = value;
	p->ok = ok;
	ev_io_stop(ctl.loop, &p->io);
	return 0;
}

static void
peer_close(struct peer *p)
{
	struct peer **pp = &ctl.peers;

	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	ev_io_stop(ctl.loop, &p->io);
	ev_timer_stop(ctl.loop, &p->hello);
	/* Its routes go at once; sessions on them run to their end, and the
	 * clients handed to it but not TAKEN are answered. */
	registry_remove_owner(ctl.d, p);
	handoff_peer_close(p->hp);
	close(p->fd);
	stat_sub(&ctl.d->stats.control_connections, 1);
	free(p);
	count();
}

/* Root, a uid of allow_users, or a member of a group of allow_groups. */
static int
may_register(const struct control_cfg *c, const struct peer *p)
{
	gid_t groups[256];
	int ngroups = 256;
	const struct passwd *pw;

	if (p->uid == 0)
		return 1;
	for (size_t i = 0; i < c->nallow_uids; i++)
		if (c->allow_uids[i] == p->uid)
			return 1;
	if (c->nallow_gids == 0)
		return 0;
	groups[0] = p->gid;
	if ((pw = getpwuid(p->uid)) == NULL ||
	    getgrouplist(pw->pw_name, p->gid, groups, &ngroups) < 0)
		ngroups = 1;
	for (int g = 0; g < ngroups; g++)
		for (size_t i = 0; i < c->nallow_gids; i++)
			if (c->allow_gids[i] == groups[g])
				return 1;
	return 0;
}

/* A span as a C string (tokens are at most CTL_MSG_MAX bytes). */
static const char *
cstr(struct ctl_span s, char *buf)
{
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	return buf;
}

static int
do_register(struct peer *p, const struct ctl_msg *m)
{
	const struct control_cfg *c = &ctl.d->gen->cfg->control;
	static char prefix[CTL_MSG_MAX + 1], backend[CTL_MSG_MAX + 1];
	char why[512];
	uint64_t id;
	enum ctl_code code;

	if (!may_register(c, p)) {
		snprintf(why, sizeof(why), "uid %u may not register "
		    "(allow_users, allow_groups)", p->uid);
		log_notice("control: pid %d: %s", (int)p->pid, why);
		return send_err(p, m->tag, CTL_E_DENIED, why);
	}
	if (registry_count_owner(p) >= c->max_registrations)
		return send_err(p, m->tag, CTL_E_LIMIT, "control_max_registrations "
		    "reached on this connection");
	/* No client's Via is longer (the framing's limit). */
	if (m->via.len > NMF_MAX_VIA)
		return send_err(p, m->tag, CTL_E_VIA, "via prefix too long");
	cstr(m->via, prefix);
	code = registry_add(ctl.d, p, p->hp, p->uid, p->pid, prefix,
	    m->mode == CTL_MODE_PROXY ? cstr(m->addr, backend) : NULL, &id, why,
	    sizeof(why));
	if (code != CTL_E_COUNT_) {
		log_notice("control: uid %u pid %d: REGISTER %s refused: %s",
		    p->uid, (int)p->pid, prefix, why);
		return send_err(p, m->tag, code, why);
	}
	return send_ok_published(p, m->tag, CTL_OK_VALUE, id);
}

static int
do_validate(struct peer *p, const struct ctl_msg *m)
{
	static char text[CTL_MSG_MAX + 1];
	static struct via v;
	const struct route *r;
	const char *bad;

	cstr(m->via, text);
	if (via_parse(text, m->via.len, 0, &v, &bad) < 0)
		return send_err(p, m->tag, CTL_E_VIA, bad);
	/* The listener's port is the client's business: the Via's stands. */
	r = routes_lookup(ctl.d->gen->cfg->routes, &v, v.port);
	return send_ok(p, m->tag, r != NULL && r->reg_id == m->reg_id ?
	    CTL_OK_YES : CTL_OK_NO, 0);
}

/* Sessions in progress on route r, over every worker. */
static uint64_t
route_active(const struct route *r)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < ctl.d->nworkers; i++) {
		const struct route_stats *rs = route_stats_peek(
		    &ctl.d->workers[i].route_stats, r->stats_slot);

		if (rs != NULL)
			n += stat_read(&rs->active);
	}
	return n;
}

static int
do_list(struct peer *p, const struct ctl_msg *m)
{
	const struct route_table *t = ctl.d->gen->cfg->routes;
	static char text[VIA_HOST_MAX + VIA_PATH_MAX + 32];
	size_t n = routes_nprefixes(t);

	for (size_t i = 0; i < n; i++) {
		struct route_prefix rp;
		const struct registration *reg;
		struct ctl_msg r = { .verb = CTL_ROUTE, .tag = m->tag,
		    .uid = -1, .pid = -1 };

		routes_prefix(t, i, &rp);
		reg = rp.route->reg_id != 0 ? registry_of(rp.route->reg_id) :
		    NULL;
		explain_prefix_text(&rp, text, sizeof(text));
		r.kind = reg == NULL ? CTL_KIND_STATIC : reg->mode ==
		    CTL_MODE_PROXY ? CTL_KIND_PROXY : CTL_KIND_HANDOFF;
		r.name = ctl_span_str(rp.route->name);
		r.via = ctl_span_str(text);
		r.addr = ctl_span_str(r.kind == CTL_KIND_HANDOFF ? "handoff" :
		    rp.route->backend_text);
		if (reg != NULL) {
			r.uid = reg->uid;
			r.pid = reg->pid;
		}
		r.value = route_active(rp.route);
		if (send_msg(p, &r) < 0)
			return -1;
	}
	return send_ok(p, m->tag, CTL_OK_VALUE, n);
}

static int
do_stats(struct peer *p, const struct ctl_msg *m)
{
	uint64_t accepted = 0, sessions = 0;
	const struct daemon *d = ctl.d;

	for (unsigned i = 0; i < d->nworkers; i++) {
		accepted += stat_read(&d->workers[i].stats.accepted);
		sessions += stat_read(&d->workers[i].stats.sessions);
	}
	const struct { const char *name; uint64_t value; } s[] = {
		{ "connections_accepted", accepted },
		{ "sessions", sessions },
		{ "generation", d->gen->number },
		{ "control_connections", stat_read(&d->stats.control_connections) },
		{ "registrations_proxy", registry_count(CTL_MODE_PROXY) },
		{ "registrations_handoff", registry_count(CTL_MODE_HANDOFF) },
	};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		struct ctl_msg r = { .verb = CTL_STAT, .tag = m->tag,
		    .name = ctl_span_str(s[i].name), .value = s[i].value };

		if (send_msg(p, &r) < 0)
			return -1;
	}
	return send_ok(p, m->tag, CTL_OK_VALUE, sizeof(s) / sizeof(s[0]));
}

/* Answer one message: 0, or -1 when the peer is to be closed. */
static int
dispatch(struct peer *p, const struct ctl_msg *m)
{
	struct ctl_msg hello = { .verb = CTL_OK, .tag = m->tag,
	    .ok = CTL_OK_HELLO, .version = CTL_VERSION,
	    .name = ctl_span_str("nettcpd/" PACKAGE_VERSION) };

	if (m->verb == CTL_HELLO) {
		if (p->said_hello)
			return send_err(p, m->tag, CTL_E_STATE, "HELLO repeated");
		if (m->version != CTL_VERSION) {
			(void)send_err(p, m->tag, CTL_E_VERSION, "this nettcpd "
			    "speaks version 1");
			return -1;
		}
		p->said_hello = 1;
		ev_timer_stop(ctl.loop, &p->hello);
		stat_add(&ctl.d->stats.control_requests[ctl.verb][0], 1);
		return send_msg(p, &hello);
	}
	if (!p->said_hello) {
		(void)send_err(p, m->tag, CTL_E_STATE, "HELLO first");
		return -1;
	}
	switch (m->verb) {
	case CTL_REGISTER:
		return do_register(p, m);
	case CTL_UNREGISTER:
		if (registry_remove(ctl.d, p, m->reg_id) < 0)
			return send_err(p, m->tag, CTL_E_UNKNOWN, "no such "
			    "registration on this connection");
		return send_ok_published(p, m->tag, CTL_OK_PLAIN, 0);
	case CTL_VALIDATE:
		return do_validate(p, m);
	case CTL_LIST:
		return do_list(p, m);
	case CTL_STATS:
		return do_stats(p, m);
	default: /* TAKEN, which has no answer: counted as if it had one */
		stat_add(&ctl.d->stats.control_requests[ctl.verb]
		    [handoff_taken(p->hp, m->handoff_id) < 0], 1);
		return 0;
	}
}

static void
on_peer(struct ev_loop *loop, ev_io *io, int revents)
{
	struct peer *p = io->data;
	static char buf[CTL_MSG_MAX + 1];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct ctl_msg m;
	ssize_t n;
	int rc;

	(void)loop;
	(void)revents;
	n = recvmsg(p->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* closed, or exited: kill -9 included */
		peer_close(p);
		return;
	}
	if (mh.msg_flags & MSG_TRUNC)
		n = CTL_MSG_MAX + 1;   /* too long, whatever its length */
	rc = ctl_parse(buf, (size_t)n, CTL_FROM_CLIENT, &m);
	ctl.verb = rc > 0 ? (unsigned)rc : 0;
	if (rc < 0) {
		log_notice("control: uid %u pid %d: %s; closed", p->uid,
		    (int)p->pid, ctl_parse_error_text(rc));
		(void)send_err(p, m.tag, ctl_parse_error_code(rc),
		    ctl_parse_error_text(rc));
		peer_close(p);
		return;
	}
	if (dispatch(p, &m) < 0)
		peer_close(p);
	count();
}

static void
on_hello_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct peer *p = t->data;

	(void)loop;
	(void)revents;
	log_notice("control: uid %u pid %d: no HELLO within control_timeout; "
	    "closed", p->uid, (int)p->pid);
	ctl.verb = 0;
	(void)send_err(p, 0, CTL_E_STATE, "no HELLO within control_timeout");
	peer_close(p);
}

/* A connection (accepted, or handed over by a binary upgrade), its
 * peer's credentials read; NULL after logging why, fd closed. */
static struct peer *
peer_new(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct peer *p = NULL;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (p = calloc(1, sizeof(*p))) == NULL ||
	    (p->hp = handoff_peer_new(fd)) == NULL) {
		log_err("control: cannot take a connection: %s", strerror(errno));
		free(p);
		close(fd);
		return NULL;
	}
	p->fd = fd;
	p->uid = cred.uid;
	p->gid = cred.gid;
	p->pid = cred.pid;
	p->next = ctl.peers;
	ctl.peers = p;
	stat_add(&ctl.d->stats.control_connections, 1);
	ev_io_init(&p->io, on_peer, fd, EV_READ);
	p->io.data = p;
	ev_init(&p->hello, on_hello_timeout);
	p->hello.data = p;
	return p;
}

static void
on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	const struct control_cfg *c = &ctl.d->gen->cfg->control;
	struct peer *p, *q;
	unsigned same = 0;
	int fd;

	(void)io;
	(void)revents;
	if ((fd = accept4(ctl.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
		return;
	if ((p = peer_new(fd)) == NULL)
		return;
	for (q = p->next; q != NULL; q = q->next)
		same += q->uid == p->uid;
	ev_timer_set(&p->hello, c->timeout, 0.);
	ctl.verb = 0;
	if (same >= c->max_connections) {
		log_notice("control: uid %u pid %d: control_max_connections (%u) "
		    "reached; closed", p->uid, (int)p->pid, c->max_connections);
		(void)send_err(p, 0, CTL_E_LIMIT, "control_max_connections "
		    "reached for this uid");
		peer_close(p);
		return;
	}
	ev_io_start(loop, &p->io);
	ev_timer_start(loop, &p->hello);
}

void
control_start(struct ev_loop *loop, struct daemon *d)
{
	ctl.loop = loop;
	ctl.d = d;
	if (ctl.fd < 0)
		return;
	ev_io_init(&ctl.io, on_accept, ctl.fd, EV_READ);
	ev_io_start(loop, &ctl.io);
	log_info("control socket %s: registrations open", ctl.path);
}

void
control_generation_taken(void)
{
	struct peer *p, *next;

	for (p = ctl.peers; p != NULL; p = next) {
		next = p->next;
		if (p->wait_gen == 0 || !workers_have(p->wait_gen))
			continue;
		p->wait_gen = 0;
		ctl.verb = p->wait_verb;
		if (send_ok(p, p->wait_tag, p->ok, p->value) < 0)
			peer_close(p);
		else if (!ctl.handed_over)   /* else the new process reads it */
			ev_io_start(ctl.loop, &p->io);
	}
}

void
control_revoked(void *owner, uint64_t id, const char *why)
{
	struct peer *p = owner;
	struct ctl_msg m = { .verb = CTL_REVOKED, .reg_id = id,
	    .code = CTL_E_CONFLICT, .text = ctl_span_str(why) };

	/* A peer that cannot take it is closed at its next message. */
	ctl.verb = 0;
	(void)send_msg(p, &m);
	count();
}

void
control_close(void)
{
	struct stat st;

	/* The workers are gone: nothing is published any more. */
	registry_free();
	while (ctl.peers != NULL)
		peer_close(ctl.peers);
	if (ctl.fd >= 0) {
		if (ctl.loop != NULL)
			ev_io_stop(ctl.loop, &ctl.io);
		close(ctl.fd);
		ctl.fd = -1;
	}
	/* After a binary upgrade the path is the new process's socket. */
	if (ctl.path != NULL && !ctl.handed_over && lstat(ctl.path, &st) == 0 &&
	    st.st_dev == ctl.dev && st.st_ino == ctl.ino)
		(void)unlink(ctl.path);
	free(ctl.path);
	ctl.path = NULL;
}

/* ---- binary upgrade (handover.c) */

int
control_listener(void)
{
	return ctl.fd;
}

void
control_each(void (*fn)(void *arg, int fd, void *owner,
    struct handoff_peer *hp), void *arg)
{
	for (struct peer *p = ctl.peers; p != NULL; p = p->next)
		if (p->said_hello)
			fn(arg, p->fd, p, p->hp);
}

void
control_handed_over(int yes)
{
	void (*watch)(struct ev_loop *, ev_io *) = yes ? ev_io_stop : ev_io_start;
	struct peer *p, *next;

	ctl.handed_over = yes;
	if (ctl.fd >= 0)
		watch(ctl.loop, &ctl.io);
	for (p = ctl.peers; p != NULL; p = next) {
		next = p->next;
		if (p->said_hello) {
			/* One holding an OK is read again once it is sent
			 * (control_generation_taken). */
			if (p->wait_gen == 0)
				watch(ctl.loop, &p->io);
		} else if (yes) {
			/* Not handed over: it connects again, to the new one. */
			log_info("control: uid %u pid %d: closed by the binary "
			    "upgrade before its HELLO", p->uid, (int)p->pid);
			peer_close(p);
		}
	}
}

int
control_adopt_listener(const struct config *cfg, int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	struct stat st;

	if (cfg->control.path == NULL ||
	    getsockname(fd, (struct sockaddr *)&sun, &len) < 0 ||
	    len <= offsetof(struct sockaddr_un, sun_path) ||
	    strncmp(sun.sun_path, cfg->control.path, sizeof(sun.sun_path)) != 0 ||
	    lstat(cfg->control.path, &st) < 0 ||
	    (ctl.path = strdup(cfg->control.path)) == NULL) {
		/* The file names another socket now: that one is opened. */
		close(fd);
		return control_open(cfg);
	}
	ctl.fd = fd;
	ctl.dev = st.st_dev;
	ctl.ino = st.st_ino;
	return 0;
}

void *
control_adopt(int fd, struct handoff_peer **hp, uint32_t *uid, int32_t *pid)
{
	struct peer *p = peer_new(fd);

	if (p == NULL)
		return NULL;
	p->said_hello = 1;
	ev_io_start(ctl.loop, &p->io);
	*hp = p->hp;
	*uid = p->uid;
	*pid = p->pid;
	return p;
}
