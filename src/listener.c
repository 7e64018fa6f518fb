/*
 * listener.c - the shared ports: bind (the main thread), accept (every
 * worker), pause and resume.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "log.h"
#include "upgrade.h"

/* Accept at most this many connections per wakeup, so one busy port cannot
 * starve the connections already open. */
#define ACCEPT_BATCH 64
/* Out of file descriptors: stop accepting this long, then try again. */
#define ACCEPT_BACKOFF_SECONDS 0.1
#define ACCEPT_BACKOFF_LOG_SECONDS 10.0
#define LISTEN_BACKLOG 4096
/* TCP_DEFER_ACCEPT: how long the kernel waits for a first byte. */
#define ACCEPT_DEFER_SECONDS 1

/* One line per ACCEPT_BACKOFF_LOG_SECONDS while starved, with how many
 * backoffs it stands for, so a long shortage cannot flood the log. */
static void
backoff_log(struct worker *w, const struct listener *l, int err)
{
	ev_tstamp now = ev_now(w->loop);

	if (w->backoff_logged_at != 0 &&
	    now - w->backoff_logged_at < ACCEPT_BACKOFF_LOG_SECONDS) {
		w->backoffs_unlogged++;
		return;
	}
	log_warn("accept on %s: %s; pausing accepts for %.0f ms (%u more "
	    "pauses since the last report)", l->sock->text, strerror(err),
	    ACCEPT_BACKOFF_SECONDS * 1000, w->backoffs_unlogged);
	w->backoff_logged_at = now;
	w->backoffs_unlogged = 0;
}

static void
on_acceptable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct listener *l = io->data;
	struct worker *w = l->w;

	(void)loop;
	(void)revents;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		union conn_sockaddr peer;
		socklen_t peerlen = sizeof(peer);
		int fd;

		fd = accept4(io->fd, &peer.sa, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:    /* also: another worker took it */
			case EINTR:
			case ECONNABORTED:
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				/* The connection stays in the backlog; polling
				 * again at once would spin. */
				backoff_log(w, l, errno);
				listeners_pause(w, ACCEPT_PAUSE_BACKOFF);
				ev_timer_set(&w->accept_backoff, ACCEPT_BACKOFF_SECONDS, 0.);
				ev_timer_start(w->loop, &w->accept_backoff);
				return;
			default:
				log_warn("accept on %s: %s", l->sock->text, strerror(errno));
				return;
			}
		}
		conn_accept(w, fd, &peer.sa, peerlen, l->sock->port,
		    l->sock->proxy);
		if (w->accept_paused)
			return;
	}
}

static void
on_backoff_over(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	(void)loop;
	(void)revents;
	listeners_resume(w, ACCEPT_PAUSE_BACKOFF);
}

static int
listen_socket(const struct listen_cfg *lc)
{
	int one = 1, defer = ACCEPT_DEFER_SECONDS;
	int fd;

	fd = socket(lc->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* SO_REUSEADDR only lets a restart bind past its own TIME_WAIT; it
	 * never lets two sockets listen on one address.  No SO_REUSEPORT:
	 * the workers share this one socket, and nobody else may. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* Accepted sockets inherit it: WCF's small framing records must not
	 * wait for Nagle. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto fail;
	/* A WCF client writes its preamble as soon as it is connected: have
	 * the kernel hand a connection over with its first bytes, so accept
	 * and the first read share one wakeup (and a silent client costs
	 * nothing for a while). */
	if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer)) < 0)
		goto fail;
	/* [::]:808 must not swallow IPv4, so 0.0.0.0:808 can be bound too. */
	if (lc->addr.ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&lc->addr.ss, lc->addr.len) < 0)
		goto fail;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;

fail:
	log_err("cannot listen on %s: %s%s", lc->text, strerror(errno),
	    errno == EADDRINUSE ? " (another nettcpd, or another program, "
	    "listens there)" : "");
	if (fd >= 0)
		close(fd);
	return -1;
}

static int
listen_sock_open(struct listen_sock *sock, const struct listen_cfg *lc)
{
	sock->fd = listen_socket(lc);
	sock->text = strdup(lc->text);
	sock->port = addr_port((const struct sockaddr *)&lc->addr.ss);
	sock->addr = lc->addr;
	sock->proxy = lc->proxy;
	if (sock->fd < 0 || sock->text == NULL) {
		if (sock->fd >= 0)
			close(sock->fd);
		free(sock->text);
		sock->fd = -1;
		sock->text = NULL;
		return -1;
	}
	log_info("listening on %s%s", sock->text,
	    sock->proxy ? " (PROXY protocol)" : "");
	return 0;
}

/* Whether fd is a listening TCP socket bound to addr. */
static int
listening_on(int fd, const struct addr *addr)
{
	struct addr bound;
	int listening = 0;
	socklen_t len = sizeof(listening);

	bound.len = sizeof(bound.ss);
	if (getsockname(fd, (struct sockaddr *)&bound.ss, &bound.len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
		return 0;
	return listening && addr_equal(&bound, addr);
}

/* Take a handed socket for lc, non-blocking and close-on-exec as ours are. */
static int
listen_sock_adopt(struct listen_sock *sock, const struct listen_cfg *lc, int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
	    (sock->text = strdup(lc->text)) == NULL) {
		log_err("cannot take over the socket of %s: %s", lc->text,
		    strerror(errno));
		sock->fd = -1;
		return -1;
	}
	sock->fd = fd;
	sock->port = addr_port((const struct sockaddr *)&lc->addr.ss);
	sock->addr = lc->addr;
	/* The socket says nothing of it: the address it matched does. */
	sock->proxy = lc->proxy;
	log_info("listening on %s%s (socket handed over)", sock->text,
	    sock->proxy ? " (PROXY protocol)" : "");
	return 0;
}

/* The index of the handed socket listening on addr that none took yet,
 * or -1. */
static int
inherited_on(const struct addr *addr, const unsigned char *taken,
    size_t ninherited)
{
	for (size_t k = 0; k < ninherited; k++)
		if ((taken == NULL || !taken[k]) &&
		    listening_on(UPGRADE_FDS_START + (int)k, addr))
			return (int)k;
	return -1;
}

int
listen_fd_open(const struct addr *addr, const char *text, size_t ninherited)
{
	struct listen_cfg lc = { .addr = *addr, .text = (char *)text };
	struct listen_sock sock;
	int k = inherited_on(addr, NULL, ninherited);

	if ((k >= 0 ? listen_sock_adopt(&sock, &lc, UPGRADE_FDS_START + k) :
	    listen_sock_open(&sock, &lc)) < 0)
		return -1;
	free(sock.text);
	return sock.fd;
}

/* Name each handed socket that no address of cfg took (taken[k] is 0). */
static void
log_unmatched(const struct config *cfg, const unsigned char *taken,
    size_t ninherited)
{
	for (size_t k = 0; k < ninherited; k++) {
		int fd = UPGRADE_FDS_START + (int)k;
		char text[ADDR_TEXT_MAX];
		struct addr bound;

		if (taken[k])
			continue;
		bound.len = sizeof(bound.ss);
		if (getsockname(fd, (struct sockaddr *)&bound.ss, &bound.len) < 0)
			snprintf(text, sizeof(text), "not a socket: %s",
			    strerror(errno));
		else
			addr_format((struct sockaddr *)&bound.ss, text, sizeof(text));
		log_err("the socket handed to nettcpd as descriptor %d (%s) "
		    "matches no listen address of %s: add it to 'listen' (or "
		    "'listen_proxy'), or remove it from the socket unit", fd,
		    text, cfg->path);
	}
}

struct listen_sock *
listen_socks_open(const struct config *cfg, size_t ninherited)
{
	struct listen_sock *socks = calloc(cfg->nlistens, sizeof(*socks));
	unsigned char *taken = calloc(ninherited + 1, 1);
	size_t i, ntaken = 0;
	int status = 0, k;

	if (socks == NULL || taken == NULL) {
		log_err("out of memory");
		free(socks);
		free(taken);
		return NULL;
	}
	for (i = 0; i < cfg->nlistens && status == 0; i++) {
		k = inherited_on(&cfg->listens[i].addr, taken, ninherited);
		if (k >= 0) {
			status = listen_sock_adopt(&socks[i], &cfg->listens[i],
			    UPGRADE_FDS_START + k);
			taken[k] = status == 0;
			ntaken += status == 0;
		} else {
			status = listen_sock_open(&socks[i], &cfg->listens[i]);
		}
	}
	/* The metrics listener's, handed over by a binary upgrade, is
	 * listen_fd_open's to take. */
	if (cfg->metrics &&
	    (k = inherited_on(&cfg->metrics_addr, taken, ninherited)) >= 0) {
		taken[k] = 1;
		ntaken++;
	}
	if (status == 0 && ntaken < ninherited) {
		log_unmatched(cfg, taken, ninherited);
		status = -1;
	}
	free(taken);
	if (status < 0) {
		listen_socks_close(socks, i, 0);
		return NULL;
	}
	return socks;
}

struct listen_sock *
listen_socks_update(struct listen_sock *old, size_t n, const struct config *cfg)
{
	struct listen_sock *socks = calloc(cfg->nlistens, sizeof(*socks));
	size_t i, j;

	if (socks == NULL) {
		log_err("out of memory");
		return NULL;
	}
	for (i = 0; i < cfg->nlistens; i++) {
		const struct listen_cfg *lc = &cfg->listens[i];

		for (j = 0; j < n; j++)
			if (old[j].fd >= 0 && addr_equal(&old[j].addr, &lc->addr))
				break;
		if (j < n) {
			socks[i] = old[j];
			socks[i].proxy = lc->proxy;  /* the reload may change it */
			socks[i].text = strdup(lc->text);
			if (socks[i].text != NULL)
				continue;
			socks[i].fd = -1;   /* still old's */
		} else if (listen_sock_open(&socks[i], lc) == 0) {
			continue;
		}
		/* Give back what was taken over, close what was opened. */
		for (j = 0; j < i; j++)
			for (size_t k = 0; k < n; k++)
				if (old[k].fd == socks[j].fd)
					socks[j].fd = -1;
		listen_socks_close(socks, i, 0);
		return NULL;
	}
	for (i = 0; i < cfg->nlistens; i++)
		for (j = 0; j < n; j++)
			if (old[j].fd == socks[i].fd)
				old[j].fd = -1;   /* handed over */
	return socks;
}

void
listen_socks_close(struct listen_sock *socks, size_t n, int retired)
{
	for (size_t i = 0; i < n; i++) {
		if (socks[i].fd >= 0) {
			close(socks[i].fd);
			if (retired)
				log_info("no longer listening on %s", socks[i].text);
		}
		free(socks[i].text);
	}
	free(socks);
}

int
listeners_open(struct worker *w, const struct listen_sock *socks, size_t n)
{
	ev_init(&w->accept_backoff, on_backoff_over);
	w->accept_backoff.data = w;
	w->listeners = calloc(n, sizeof(*w->listeners));
	if (w->listeners == NULL && n > 0) {
		log_err("out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct listener *l = &w->listeners[i];

		l->w = w;
		l->sock = &socks[i];
		ev_io_init(&l->io, on_acceptable, socks[i].fd, EV_READ);
		l->io.data = l;
		if (w->accept_paused == 0)
			ev_io_start(w->loop, &l->io);
		w->nlisteners++;
	}
	return 0;
}

void
listeners_close(struct worker *w)
{
	ev_timer_stop(w->loop, &w->accept_backoff);
	for (size_t i = 0; i < w->nlisteners; i++)
		ev_io_stop(w->loop, &w->listeners[i].io);
	free(w->listeners);
	w->listeners = NULL;
	w->nlisteners = 0;
}

void
listeners_pause(struct worker *w, unsigned reason)
{
	if (w->accept_paused == 0)
		for (size_t i = 0; i < w->nlisteners; i++)
			ev_io_stop(w->loop, &w->listeners[i].io);
	w->accept_paused |= reason;
}

void
listeners_resume(struct worker *w, unsigned reason)
{
	if (!(w->accept_paused & reason))
		return;
	w->accept_paused &= ~reason;
	if (w->accept_paused == 0)
		for (size_t i = 0; i < w->nlisteners; i++)
			ev_io_start(w->loop, &w->listeners[i].io);
}
