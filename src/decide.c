/*
 * decide.c - the routing decision, from the preamble's bytes alone.
 */
#include "decide.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "tls.h"
#include "via.h"

/* How much of an upgrade name a log line shows. */
#define NAME_SHOWN 64u

void
preamble_start(struct preamble *p)
{
	nmf_parser_init(&p->parser);
	p->route = NULL;
	p->via_off = p->via_len = 0;
	p->clear_end = 0;
}

static enum decision
fault(struct verdict *v, enum nmf_fault f, const char *why)
{
	v->fault = f;
	snprintf(v->why, sizeof(v->why), "%s", why);
	return DECIDE_FAULT;
}

/*
 * The client against [global]'s rules, then its route's, if it has one: a
 * refused client gets what a Via without a route gets, so that a refusal
 * tells nothing of which routes exist.
 */
static enum decision
admit(const struct preamble *p, const struct acl_rules *global,
    const struct sockaddr *client, struct verdict *v)
{
	const char *where = "[global]";
	enum acl_verdict a = acl_check(global, client);

	if (a == ACL_PASS && p->route != NULL) {
		where = "the route's";
		a = acl_check(&p->route->acl, client);
	}
	if (a == ACL_PASS)
		return DECIDE_MORE;
	v->fault = NMF_FAULT_ENDPOINT_NOT_FOUND;
	if (a == ACL_DENIED)
		snprintf(v->why, sizeof(v->why), "refused by %s deny", where);
	else
		snprintf(v->why, sizeof(v->why), "not in %s allow", where);
	return DECIDE_DENY;
}

/* Route the Via just read; DECIDE_MORE to read on. */
static enum decision
route_via(struct preamble *p, const struct route_table *t,
    const struct acl_rules *global, const struct sockaddr *client,
    uint16_t local_port, const uint8_t *buf, struct verdict *v)
{
	struct via via;
	const char *why;
	enum decision d;

	if (via_parse((const char *)buf + p->via_off, p->via_len, 0, &via, &why) < 0) {
		v->error = PREAMBLE_ERR_VIA;
		snprintf(v->why, sizeof(v->why), "malformed Via (%s)", why);
		return DECIDE_RESET;
	}
	p->route = routes_lookup(t, &via, local_port);
	if ((d = admit(p, global, client, v)) != DECIDE_MORE)
		return d;
	if (p->route == NULL)
		return fault(v, NMF_FAULT_ENDPOINT_NOT_FOUND, "no route");
	return DECIDE_MORE;
}

/*
 * On a terminating route, the records after the Via: the Encoding, then
 * the Upgrade Request this route requires, for application/ssl-tls.
 */
static enum decision
upgrade_record(struct preamble *p, const struct nmf_record *rec,
    const uint8_t *buf, struct verdict *v)
{
	char name[NAME_SHOWN * 4 + 8], why[sizeof(name) + 64];

	switch (rec->type) {
	case NMF_REC_KNOWN_ENCODING:
	case NMF_REC_EXTENSIBLE_ENCODING:
		p->clear_end = p->parser.pos;
		return DECIDE_MORE;
	case NMF_REC_UPGRADE_REQUEST:
		if (rec->str_len == strlen(TLS_UPGRADE_NAME) &&
		    memcmp(buf + rec->str_off, TLS_UPGRADE_NAME, rec->str_len) == 0)
			return DECIDE_UPGRADE;
		v->error = PREAMBLE_ERR_UPGRADE;
		snprintf(why, sizeof(why), "upgrade '%s' cannot be served by a "
		    "tls = terminate route", log_printable(buf + rec->str_off,
		    rec->str_len, NAME_SHOWN, name, sizeof(name)));
		return fault(v, NMF_FAULT_UPGRADE_INVALID, why);
	default:
		/* Preamble End without an upgrade.  WCF itself aborts
		 * (RemoteSecurityNotNegotiatedOnStreamUpgrade); a fault tells
		 * the client why instead. */
		v->error = PREAMBLE_ERR_UPGRADE;
		return fault(v, NMF_FAULT_UPGRADE_INVALID, "client did not ask for "
		    "the TLS upgrade this route requires");
	}
}

enum decision
preamble_decide(struct preamble *p, const struct route_table *t,
    const struct acl_rules *global, const struct sockaddr *client,
    uint16_t local_port, const uint8_t *buf, size_t len, struct verdict *v)
{
	struct nmf_record rec;
	enum decision d;
	int status;

	v->error = PREAMBLE_ERR_NONE;
	while ((status = nmf_parse(&p->parser, buf, len, &rec)) == NMF_RECORD) {
		if (p->route != NULL && p->route->tls_ctx != NULL) {
			if ((d = upgrade_record(p, &rec, buf, v)) != DECIDE_MORE)
				return d;
			continue;
		}
		switch (rec.type) {
		case NMF_REC_VIA:
			p->via_off = rec.str_off;
			p->via_len = rec.str_len;
			if ((d = route_via(p, t, global, client, local_port, buf,
			    v)) != DECIDE_MORE)
				return d;
			break;
		case NMF_REC_PREAMBLE_END:
		case NMF_REC_UPGRADE_REQUEST:
			/* The upgrade is the service's to answer. */
			return DECIDE_FORWARD;
		default:
			break;
		}
	}
	switch (status) {
	case NMF_NEED_MORE:
		/* A whole preamble fits in NMF_PREAMBLE_MAX, so a full buffer
		 * cannot be waiting for more of it. */
		return DECIDE_MORE;
	case NMF_ERR_VERSION:
		v->error = PREAMBLE_ERR_VERSION;
		return fault(v, NMF_FAULT_UNSUPPORTED_VERSION,
		    "unsupported framing version");
	case NMF_ERR_MODE:
		v->error = PREAMBLE_ERR_MODE;
		return fault(v, NMF_FAULT_UNSUPPORTED_MODE, "unsupported framing mode");
	default:
		v->error = status == NMF_ERR_MBINT ? PREAMBLE_ERR_SIZE :
		    status == NMF_ERR_TOO_LONG ? PREAMBLE_ERR_TOO_LONG :
		    status == NMF_ERR_ENCODING ? PREAMBLE_ERR_ENCODING :
		    PREAMBLE_ERR_RECORD;
		snprintf(v->why, sizeof(v->why), "malformed preamble (%s) at byte %zu",
		    nmf_strerror(status), p->parser.pos);
		return DECIDE_RESET;
	}
}
