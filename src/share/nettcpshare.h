/*
 * nettcpshare.h - libnettcpshare: register Via prefixes with nettcpd at run
 * time and take the client connections it hands off (libnettcpshare(3)).
 *
 * A process opens the daemon's control socket, registers prefixes (each
 * either proxied to a backend address or handed off to this process), and,
 * for handoff, accepts each client's socket with the framing bytes nettcpd
 * already read from it.  A registration lives exactly as long as the
 * struct nts it was made on: nts_close(), exit or kill -9 ends it.
 *
 * Every function returns -1 and sets errno on failure; nts_error() then
 * says why in words (the daemon's own reason when it refused).  A struct
 * nts is not thread-safe: use it from one thread at a time.
 */
#ifndef NETTCPSHARE_H
#define NETTCPSHARE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The control protocol version this library speaks. */
#define NTS_PROTOCOL_VERSION 1
/* Where nettcpd's packaged configuration puts its control socket. */
#define NTS_DEFAULT_CONTROL "/run/nettcpd/control.sock"
/*
 * Enough for the bytes of any handoff: nettcpd reads at most one
 * preamble (Via, content type and upgrade at their limits) before it
 * hands a client off.
 */
#define NTS_PREAMBLE_MAX 8192u

/* nts_accept's result when a registration was revoked, not a client. */
#define NTS_REVOKED 1

struct nts;

/* One route of nts_list(): the daemon's LIST line, parsed. */
struct nts_route {
	const char *kind;        /* "static", "proxy" or "handoff" */
	const char *name;        /* the route's section, or a registration's */
	const char *via;         /* the Via prefix */
	const char *target;      /* backend list, or "handoff" */
	long long uid, pid;      /* the registrant's; -1 for a static route */
	unsigned long long sessions;    /* sessions in progress on it now */
};

/*
 * Connect to the control socket at path (NULL: NTS_DEFAULT_CONTROL) and
 * say HELLO.  Returns the handle, or NULL with errno set and the reason
 * in err (errlen bytes, may be 0).  The socket is close-on-exec.
 */
struct nts *nts_open(const char *path, char *err, size_t errlen);

/* The reason for the last failure on nts, as text (never NULL). */
const char *nts_error(const struct nts *nts);

/* The daemon's version, from its answer to HELLO ("nettcpd/0.1.0"). */
const char *nts_server(const struct nts *nts);

/*
 * Register via with the daemon: clients whose Via it matches are proxied
 * to backend ("host:port", "[v6]:port", "unix:/path", or a comma-separated
 * list), or handed off to this process (nts_accept).  Returns 0 and the
 * registration's id in *reg_id.  errno: EACCES (this uid may not
 * register), EEXIST (a static route or another registrant holds the
 * prefix), ENOTSUP (handoff under a route that terminates TLS), ENOSPC (a
 * limit), EINVAL (a bad Via or backend), and the socket's own errors.
 */
int nts_register_proxy(struct nts *nts, const char *via, const char *backend,
    uint64_t *reg_id);
int nts_register_handoff(struct nts *nts, const char *via, uint64_t *reg_id);

/* Drop one registration of this handle.  ENOENT: no such reg_id here. */
int nts_unregister(struct nts *nts, uint64_t reg_id);

/*
 * Does a client that names via reach reg_id now?  1 yes, 0 no, -1 error.
 * A handed-off connection that carries a next session (the client's
 * pooled connection, with a new preamble) must ask this, and close the
 * connection on 0: the client then dials again and is routed afresh
 * (WCF's ValidateUriRoute).
 */
int nts_validate(struct nts *nts, uint64_t reg_id, const char *via);

/*
 * The next client handed off to this process: its socket in *client_fd
 * (close-on-exec, blocking mode as nettcpd had it: set what you need),
 * the bytes nettcpd read from it (its preamble, byte-exact) in buf, their
 * count in *nbytes, the registration it matched in *reg_id.  Tells the
 * daemon the socket is taken.  Returns 0 for a client; NTS_REVOKED when
 * the daemon's next message is a revocation instead: take it with
 * nts_revoked() (nts_accept returns NTS_REVOKED until you do); -1 on
 * error: EAGAIN when nts_fd() is non-blocking and nothing came, EMSGSIZE
 * when buflen is too small (*nbytes says what is needed; the client stays
 * queued), ECONNRESET when the daemon closed the connection.
 */
int nts_accept(struct nts *nts, int *client_fd, void *buf, size_t buflen,
    size_t *nbytes, uint64_t *reg_id);

/*
 * The oldest registration the daemon revoked (a reloaded static route
 * took its prefix): 1 and its id in *reg_id, the reason in why; 0 if
 * there is none.
 */
int nts_revoked(struct nts *nts, uint64_t *reg_id, char *why, size_t whylen);

/*
 * Every route, static and registered: fn is called once per route, and
 * a non-zero return stops the walk.  nts_stats likewise for each counter.
 * Return the number of routes (counters), or -1.
 */
int nts_list(struct nts *nts, int (*fn)(const struct nts_route *, void *),
    void *arg);
int nts_stats(struct nts *nts, int (*fn)(const char *name, const char *value,
    void *), void *arg);

/* The control socket, to poll for readability before nts_accept. */
int nts_fd(const struct nts *nts);

/* Close the control connection (ending its registrations), and any
 * client handed off and not yet accepted.  NULL is allowed. */
void nts_close(struct nts *nts);

#ifdef __cplusplus
}
#endif

#endif
