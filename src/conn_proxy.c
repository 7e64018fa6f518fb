/*
 * conn_proxy.c - a connection on a listen_proxy listener, before its
 * preamble: the peer must be a trusted balancer (proxy_trusted), and its
 * first bytes a PROXY header (proxy.c) naming the client, whole within
 * proxy_timeout of the accept.
 *
 * The header is read into the preamble's buffer: a balancer writes it and
 * the client's first bytes together, so what follows it in a read is the
 * preamble's beginning, moved to the front, and nothing is read twice or
 * left waiting in the socket.  Once the header is read, the client it
 * names is the connection's client for everything after: the routing, the
 * log lines (which name the balancer too), the access log, the preamble
 * table's fairness by source; a LOCAL (or UNKNOWN) header leaves the
 * balancer as the client.
 */
#include "conn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "acl.h"
#include "proxy.h"

/* What only a connection on a listen_proxy listener keeps, apart from
 * struct conn so that the others do not carry it. */
struct conn_proxy {
	struct proxy_parser parser;    /* CONN_PROXY_HEADER: so far */
	union conn_sockaddr proxy_addr; /* the balancer that sent the header; */
	                               /* AF_UNSPEC: none yet, or LOCAL */
	union conn_sockaddr client_dst; /* what the client dialled, the */
	                               /* header's destination (the */
	                               /* balancer's); AF_UNSPEC: none */
};

int
proxy_attach(struct conn *c)
{
	if ((c->proxy = calloc(1, sizeof(*c->proxy))) == NULL)
		return -1;
	proxy_parser_init(&c->proxy->parser);
	return 0;
}

int
proxy_admit(struct conn *c)
{
	const struct config *cfg = c->gen->cfg;

	if (acl_match(cfg->proxy_trusted, &c->client_addr.sa))
		return 1;
	stat_add(&c->w->stats.preamble_errors[PREAMBLE_ERR_UNTRUSTED], 1);
	conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
	    "not in proxy_trusted, so no PROXY header is taken from it: reset");
	return 0;
}

const char *
proxy_who(const struct conn *c, const char *peer, char *buf, size_t buflen)
{
	char proxy[ADDR_TEXT_MAX];

	if (c->proxy == NULL || c->proxy->proxy_addr.sa.sa_family == AF_UNSPEC)
		return peer;
	snprintf(buf, buflen, "%s (proxy %s)", peer,
	    addr_format(&c->proxy->proxy_addr.sa, proxy, sizeof(proxy)));
	return buf;
}

const union conn_sockaddr *
proxy_client_dst(const struct conn *c)
{
	if (c->proxy == NULL || c->proxy->client_dst.sa.sa_family == AF_UNSPEC)
		return NULL;
	return &c->proxy->client_dst;
}

/* The header is read: the client is the one it names, and the bytes after
 * it begin the preamble, read under the newest generation. */
static void
proxy_done(struct conn *c, const struct proxy_header *h)
{
	struct worker *w = c->w;
	size_t rest = c->preamble_len - h->len;

	memmove(c->preamble, c->preamble + h->len, rest);
	c->preamble_len = rest;
	if (!h->local) {
		c->proxy->proxy_addr = c->client_addr;
		/* Counted by the client's source from here on, not the
		 * balancer's, which all its clients share. */
		pending_remove(&w->limits->pending, &c->pend);
		memset(&c->client_addr, 0, sizeof(c->client_addr));
		memcpy(&c->client_addr, &h->src, h->src.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		memcpy(&c->proxy->client_dst, &h->dst, h->dst.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		pending_add(&w->limits->pending, &c->pend, &w->pending,
		    &c->client_addr.sa);
	}
	generation_unref(c->gen);
	c->gen = generation_ref(w->gen);
	conn_set_state(c, CONN_PREAMBLE);
	deadline_start(c, c->gen->cfg->preamble_timeout);
	conn_log(c, LOG_LEVEL_DEBUG, "PROXY v%u header%s, %zu preamble bytes "
	    "after it", h->version, h->local ? " (LOCAL: the balancer's own)" :
	    "", rest);
	if (rest > 0)
		preamble_parse(c);
}

void
proxy_read(struct conn *c)
{
	struct proxy_header h;
	int status;

	if (preamble_recv(c, "PROXY header") <= 0)
		return;
	status = proxy_parse(&c->proxy->parser, c->preamble, c->preamble_len, &h);
	if (status == PROXY_DONE) {
		proxy_done(c, &h);
	} else if (status != PROXY_NEED_MORE) {
		stat_add(&c->w->stats.preamble_errors[PREAMBLE_ERR_PROXY], 1);
		conn_finish(c, OUTCOME_MALFORMED, CLOSE_RESET, LOG_LEVEL_NOTICE,
		    "PROXY header: %s, reset", proxy_status_text(status));
	}
}

void
proxy_expired(struct conn *c)
{
	stat_add(&c->w->stats.preamble_errors[PREAMBLE_ERR_PROXY], 1);
	conn_finish(c, OUTCOME_TIMEOUT, CLOSE_RESET, LOG_LEVEL_NOTICE,
	    "proxy_timeout expired after %u bytes of PROXY header, reset",
	    c->preamble_len);
}
