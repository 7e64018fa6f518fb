/*
 * nettcpshare.c - libnettcpshare: the client side of nettcpd's control
 * protocol (nettcpd(8) REGISTRATION, libnettcpshare(3)).
 *
 * One SOCK_SEQPACKET connection per struct nts; one record is one
 * message.  Requests go one at a time, each with a tag of its own; the
 * daemon's HANDOFF and REVOKED messages may arrive before a reply, so
 * they wait in a queue for nts_accept() and nts_revoked().  The library
 * never logs: a failure's reason is kept for nts_error().
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlproto.h"
#include "nettcpshare.h"

/* A HANDOFF's bytes are the daemon's preamble bound: the public constant
 * must hold any. */
_Static_assert(NTS_PREAMBLE_MAX >= CTL_PREAMBLE_MAX,
    "NTS_PREAMBLE_MAX below the protocol's preamble bound");
_Static_assert(NTS_PROTOCOL_VERSION == CTL_VERSION,
    "nettcpshare.h and ctlproto.h disagree on the version");

/* How long a request waits for its reply: a daemon that does not answer
 * must not hang a service's start for ever. */
#define NTS_REPLY_TIMEOUT_MS 10000
#define NTS_ERR_MAX 512u

/* A message from the daemon, parsed; HANDOFF and REVOKED are kept in a
 * queue until the caller asks for them. */
struct nts_msg {
	struct nts_msg *next;
	int fd;                  /* the client's socket (HANDOFF), or -1 */
	struct ctl_msg m;        /* its spans point into data */
	size_t len;
	char data[];             /* as received, NUL after len */
};

struct nts {
	int fd;
	uint32_t tag;                       /* the last request's */
	struct nts_msg *head, **tail;       /* HANDOFF and REVOKED, in order */
	char server[128];
	char err[NTS_ERR_MAX];
};

static int nts_fail(struct nts *nts, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
nts_fail(struct nts *nts, int e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(nts->err, sizeof(nts->err), fmt, ap);
	va_end(ap);
	errno = e;
	return -1;
}

/* A span of a message as a C string: the byte after it (a space, a
 * newline or the final NUL) is cut, which the parse no longer needs. */
static const char *
nts_str(struct nts_msg *nm, struct ctl_span sp)
{
	char *p = nm->data + (sp.p - nm->data);

	p[sp.len] = '\0';
	return p;
}

static void
nts_msg_free(struct nts_msg *nm)
{
	if (nm == NULL)
		return;
	if (nm->fd >= 0)
		close(nm->fd);
	free(nm);
}

/* Send *m (a request, or TAKEN), formatted by ctlproto. */
static int
nts_send(struct nts *nts, const struct ctl_msg *m)
{
	char buf[CTL_MSG_MAX];
	int len;
	ssize_t n;

	len = ctl_format(m, buf, sizeof(buf));
	if (len < 0)
		return nts_fail(nts, EINVAL, "%s: an argument is not what the "
		    "protocol allows (a space or control byte, or too long)",
		    ctl_verb_name(m->verb));
	do
		n = send(nts->fd, buf, (size_t)len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		/* A non-blocking socket with a full queue: wait for room,
		 * within the reply's bound. */
		struct pollfd p = { .fd = nts->fd, .events = POLLOUT };

		if (poll(&p, 1, NTS_REPLY_TIMEOUT_MS) == 1)
			n = send(nts->fd, buf, (size_t)len, MSG_NOSIGNAL);
	}
	if (n != len)
		return nts_fail(nts, n < 0 ? errno : EIO, "sending to nettcpd: "
		    "%s", strerror(n < 0 ? errno : EIO));
	return 0;
}

/*
 * Receive one message.  wait_ms: how long to wait when there is none
 * (-1: as the socket's mode says; a non-blocking socket gives EAGAIN).
 * Returns the message, parsed, with the descriptor it carried; or NULL:
 * ECONNRESET when the daemon closed, EPROTO for a message that does not
 * parse or carries a descriptor it may not, ETIMEDOUT.
 */
static struct nts_msg *
nts_recv(struct nts *nts, int wait_ms)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	char buf[CTL_HANDOFF_MAX + 1];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	struct nts_msg *nm = NULL;
	int fds[4], nfds = 0, i, verb;
	ssize_t n;

	for (;;) {
		struct pollfd p = { .fd = nts->fd, .events = POLLIN };
		int r;

		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(nts->fd, &mh, MSG_CMSG_CLOEXEC |
		    (wait_ms >= 0 ? MSG_DONTWAIT : 0));
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (wait_ms < 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			nts_fail(nts, errno, "receiving from nettcpd: %s",
			    strerror(errno));
			return NULL;
		}
		do
			r = poll(&p, 1, wait_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			nts_fail(nts, ETIMEDOUT, "nettcpd did not answer within "
			    "%d s", wait_ms / 1000);
			return NULL;
		}
		if (r < 0) {
			nts_fail(nts, errno, "poll: %s", strerror(errno));
			return NULL;
		}
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) &&
		    nfds < 4; k++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + k * sizeof(int),
			    sizeof(int));
	}
	if (n == 0) {
		nts_fail(nts, ECONNRESET, "nettcpd closed the control "
		    "connection");
		goto out;
	}
	nm = malloc(sizeof(*nm) + (size_t)n + 1);
	if (nm == NULL) {
		nts_fail(nts, ENOMEM, "out of memory");
		goto out;
	}
	nm->next = NULL;
	nm->len = (size_t)n;
	memcpy(nm->data, buf, (size_t)n);
	nm->data[n] = '\0';
	nm->fd = -1;
	verb = ctl_parse(nm->data, nm->len, CTL_FROM_DAEMON, &nm->m);
	/* Only a HANDOFF carries a descriptor, and exactly one. */
	if (verb < 0 || (mh.msg_flags & MSG_CTRUNC) != 0 ||
	    nfds != (verb == CTL_HANDOFF)) {
		nts_fail(nts, EPROTO, "nettcpd sent a message this library "
		    "cannot read (%s, %d descriptors)", verb < 0 ?
		    ctl_parse_error_text(verb) : ctl_verb_name(nm->m.verb),
		    nfds);
		free(nm);
		nm = NULL;
		goto out;
	}
	if (nfds == 1) {
		nm->fd = fds[0];
		nfds = 0;
	}
out:
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	return nm;
}

static int
nts_is_event(const struct nts_msg *nm)
{
	return nm->m.verb == CTL_HANDOFF || nm->m.verb == CTL_REVOKED;
}

static void
nts_queue(struct nts *nts, struct nts_msg *nm)
{
	*nts->tail = nm;
	nts->tail = &nm->next;
}

static struct nts_msg *
nts_dequeue(struct nts *nts, struct nts_msg **prev)
{
	struct nts_msg *nm = *prev;

	*prev = nm->next;
	if (nts->tail == &nm->next)
		nts->tail = prev;
	nm->next = NULL;
	return nm;
}

/* errno for an ERR code, as nettcpshare.h lists them. */
static int
nts_errno(enum ctl_code code)
{
	switch (code) {
	case CTL_E_DENIED: return EACCES;
	case CTL_E_CONFLICT: return EEXIST;
	case CTL_E_TLS: return ENOTSUP;
	case CTL_E_LIMIT: return ENOSPC;
	case CTL_E_UNKNOWN: return ENOENT;
	case CTL_E_VERSION: return EPROTONOSUPPORT;
	case CTL_E_SIZE: return EMSGSIZE;
	default: return EINVAL;
	}
}

/* Send *req under a new tag; nts_reply() then returns its answers. */
static int
nts_request(struct nts *nts, struct ctl_msg *req)
{
	nts->tag = nts->tag == CTL_TAG_MAX ? 1 : nts->tag + 1;
	req->tag = nts->tag;
	return nts_send(nts, req);
}

/*
 * The next message that answers the last request (OK, ROUTE, STAT);
 * HANDOFF and REVOKED messages that come first are queued.  An ERR fails
 * with its code's errno and its words in nts_error().  Returns the
 * message (the caller frees it), or NULL.
 */
static struct nts_msg *
nts_reply(struct nts *nts)
{
	struct nts_msg *nm;

	for (;;) {
		nm = nts_recv(nts, NTS_REPLY_TIMEOUT_MS);
		if (nm == NULL)
			return NULL;
		if (!nts_is_event(nm))
			break;
		nts_queue(nts, nm);
	}
	/* ERR 0: the daemon could not read the request far enough to know
	 * its tag; it answers the request just sent all the same. */
	if (nm->m.verb == CTL_ERR && (nm->m.tag == nts->tag ||
	    nm->m.tag == 0))
		nts_fail(nts, nts_errno(nm->m.code), "%s: %.*s",
		    ctl_code_name(nm->m.code), (int)nm->m.text.len,
		    nm->m.text.p);
	else if (nm->m.tag != nts->tag)
		nts_fail(nts, EPROTO, "nettcpd answered tag %u, not %u",
		    nm->m.tag, nts->tag);
	else
		return nm;
	nts_msg_free(nm);
	return NULL;
}

/* A request answered by one OK of the form want (its fields in *ok). */
static int
nts_call(struct nts *nts, struct ctl_msg *req, enum ctl_ok want,
    struct ctl_msg *ok)
{
	struct nts_msg *nm;
	int r = -1;

	if (nts_request(nts, req) < 0)
		return -1;
	nm = nts_reply(nts);
	if (nm == NULL)
		return -1;
	if (nm->m.verb != CTL_OK || (nm->m.ok != want && !(want ==
	    CTL_OK_YES && nm->m.ok == CTL_OK_NO))) {
		nts_fail(nts, EPROTO, "nettcpd answered %s with %s",
		    ctl_verb_name(req->verb), ctl_verb_name(nm->m.verb));
	} else {
		*ok = nm->m;
		/* The spans are not kept: only numbers are read from ok,
		 * except HELLO's software, copied here. */
		if (nm->m.ok == CTL_OK_HELLO)
			snprintf(nts->server, sizeof(nts->server), "%.*s",
			    (int)nm->m.name.len, nm->m.name.p);
		r = 0;
	}
	nts_msg_free(nm);
	return r;
}

struct nts *
nts_open(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct ctl_msg req = { .verb = CTL_HELLO, .version = CTL_VERSION };
	struct ctl_msg ok;
	struct nts *nts;
	int e;

	if (path == NULL)
		path = NTS_DEFAULT_CONTROL;
	nts = calloc(1, sizeof(*nts));
	if (nts == NULL) {
		if (errlen > 0)
			snprintf(err, errlen, "out of memory");
		return NULL;
	}
	nts->tail = &nts->head;
	nts->fd = -1;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		nts_fail(nts, ENAMETOOLONG, "%s: path too long for a socket",
		    path);
		goto fail;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	nts->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (nts->fd < 0 || connect(nts->fd, (struct sockaddr *)&sun,
	    sizeof(sun)) < 0) {
		nts_fail(nts, errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (nts_call(nts, &req, CTL_OK_HELLO, &ok) < 0)
		goto fail;
	if (ok.version != CTL_VERSION) {
		nts_fail(nts, EPROTONOSUPPORT, "nettcpd speaks protocol "
		    "version %u, this library %u", ok.version, CTL_VERSION);
		goto fail;
	}
	return nts;
fail:
	e = errno;
	if (errlen > 0)
		snprintf(err, errlen, "%s", nts->err);
	nts_close(nts);
	errno = e;
	return NULL;
}

const char *
nts_error(const struct nts *nts)
{
	return nts->err;
}

const char *
nts_server(const struct nts *nts)
{
	return nts->server;
}

static int
nts_register(struct nts *nts, const char *via, const char *backend,
    uint64_t *reg_id)
{
	struct ctl_msg req = {
		.verb = CTL_REGISTER, .via = ctl_span_str(via),
		.mode = backend != NULL ? CTL_MODE_PROXY : CTL_MODE_HANDOFF,
		.addr = ctl_span_str(backend),
	};
	struct ctl_msg ok;

	if (nts_call(nts, &req, CTL_OK_VALUE, &ok) < 0)
		return -1;
	if (ok.value < 1 || ok.value > CTL_ID_MAX)
		return nts_fail(nts, EPROTO, "nettcpd answered REGISTER with "
		    "the id %llu", (unsigned long long)ok.value);
	*reg_id = ok.value;
	return 0;
}

int
nts_register_proxy(struct nts *nts, const char *via, const char *backend,
    uint64_t *reg_id)
{
	if (backend == NULL)
		return nts_fail(nts, EINVAL, "no backend given");
	return nts_register(nts, via, backend, reg_id);
}

int
nts_register_handoff(struct nts *nts, const char *via, uint64_t *reg_id)
{
	return nts_register(nts, via, NULL, reg_id);
}

int
nts_unregister(struct nts *nts, uint64_t reg_id)
{
	struct ctl_msg req = { .verb = CTL_UNREGISTER, .reg_id = reg_id };
	struct ctl_msg ok;

	return nts_call(nts, &req, CTL_OK_PLAIN, &ok);
}

int
nts_validate(struct nts *nts, uint64_t reg_id, const char *via)
{
	struct ctl_msg req = {
		.verb = CTL_VALIDATE, .reg_id = reg_id,
		.via = ctl_span_str(via),
	};
	struct ctl_msg ok;

	if (nts_call(nts, &req, CTL_OK_YES, &ok) < 0)
		return -1;
	return ok.ok == CTL_OK_YES;
}

int
nts_accept(struct nts *nts, int *client_fd, void *buf, size_t buflen,
    size_t *nbytes, uint64_t *reg_id)
{
	struct ctl_msg taken = { .verb = CTL_TAKEN };
	struct nts_msg *nm;
	int r;

	/* In the order the daemon sent them: a revocation ahead of a client
	 * is reported first, and again until nts_revoked() takes it. */
	while (nts->head == NULL) {
		nm = nts_recv(nts, -1);
		if (nm == NULL)
			return -1;
		if (!nts_is_event(nm)) {
			nts_msg_free(nm);
			return nts_fail(nts, EPROTO, "nettcpd sent a reply "
			    "nobody asked for");
		}
		nts_queue(nts, nm);
	}
	if (nts->head->m.verb == CTL_REVOKED)
		return NTS_REVOKED;
	nm = nts->head;
	*nbytes = nm->m.preamble.len;
	if (nm->m.preamble.len > buflen)
		return nts_fail(nts, EMSGSIZE, "the client's %zu bytes do not "
		    "fit in %zu", nm->m.preamble.len, buflen);
	nts_dequeue(nts, &nts->head);
	taken.handoff_id = nm->m.handoff_id;
	r = nts_send(nts, &taken);
	if (r == 0) {
		memcpy(buf, nm->m.preamble.p, nm->m.preamble.len);
		*reg_id = nm->m.reg_id;
		*client_fd = nm->fd;
		nm->fd = -1;
	}
	nts_msg_free(nm);
	return r;
}

int
nts_revoked(struct nts *nts, uint64_t *reg_id, char *why, size_t whylen)
{
	struct nts_msg **prev, *nm;

	for (prev = &nts->head; *prev != NULL; prev = &(*prev)->next) {
		if ((*prev)->m.verb != CTL_REVOKED)
			continue;
		nm = nts_dequeue(nts, prev);
		*reg_id = nm->m.reg_id;
		if (whylen > 0)
			snprintf(why, whylen, "%s: %.*s",
			    ctl_code_name(nm->m.code), (int)nm->m.text.len,
			    nm->m.text.p);
		nts_msg_free(nm);
		return 1;
	}
	return 0;
}

/* Where nts_walk() hands each line of LIST or STATS. */
struct nts_walker {
	enum ctl_verb line;     /* CTL_ROUTE or CTL_STAT */
	int (*route)(const struct nts_route *, void *);
	int (*stat)(const char *name, const char *value, void *);
	void *arg;
};

/* One ROUTE or STAT line, to the caller's callback. */
static int
nts_walk_line(const struct nts_walker *w, struct nts_msg *nm)
{
	struct nts_route r;
	char value[24];

	if (w->line == CTL_STAT) {
		snprintf(value, sizeof(value), "%llu",
		    (unsigned long long)nm->m.value);
		return w->stat(nts_str(nm, nm->m.name), value, w->arg);
	}
	r = (struct nts_route){
		.kind = ctl_kind_name(nm->m.kind),
		.name = nts_str(nm, nm->m.name), .via = nts_str(nm, nm->m.via),
		.target = nts_str(nm, nm->m.addr), .uid = nm->m.uid,
		.pid = nm->m.pid, .sessions = nm->m.value,
	};
	return w->route(&r, w->arg);
}

/*
 * LIST and STATS: lines of w->line, then "OK <tag> <count>".  Returns the
 * count, or -1.
 */
static int
nts_walk(struct nts *nts, enum ctl_verb verb, const struct nts_walker *w)
{
	struct ctl_msg req = { .verb = verb };
	struct nts_msg *nm;
	int lines = 0, stop = 0;

	if (nts_request(nts, &req) < 0)
		return -1;
	for (;;) {
		nm = nts_reply(nts);
		if (nm == NULL)
			return -1;
		if (nm->m.verb == w->line) {
			lines++;
			/* After a stop the lines are still read: they answer
			 * this request and must not be taken for the next's. */
			if (!stop && nts_walk_line(w, nm) != 0)
				stop = 1;
			nts_msg_free(nm);
			continue;
		}
		if (nm->m.verb == CTL_OK && nm->m.ok == CTL_OK_VALUE &&
		    nm->m.value == (uint64_t)lines)
			break;
		nts_fail(nts, EPROTO, "nettcpd answered %s with %s after %d "
		    "lines", ctl_verb_name(verb), ctl_verb_name(nm->m.verb),
		    lines);
		nts_msg_free(nm);
		return -1;
	}
	nts_msg_free(nm);
	return lines;
}

int
nts_list(struct nts *nts, int (*fn)(const struct nts_route *, void *),
    void *arg)
{
	struct nts_walker w = { .line = CTL_ROUTE, .route = fn, .arg = arg };

	return nts_walk(nts, CTL_LIST, &w);
}

int
nts_stats(struct nts *nts, int (*fn)(const char *name, const char *value,
    void *), void *arg)
{
	struct nts_walker w = { .line = CTL_STAT, .stat = fn, .arg = arg };

	return nts_walk(nts, CTL_STATS, &w);
}

int
nts_fd(const struct nts *nts)
{
	return nts->fd;
}

void
nts_close(struct nts *nts)
{
	struct nts_msg *nm, *next;

	if (nts == NULL)
		return;
	for (nm = nts->head; nm != NULL; nm = next) {
		next = nm->next;
		nts_msg_free(nm);
	}
	if (nts->fd >= 0)
		close(nts->fd);
	free(nts);
}
