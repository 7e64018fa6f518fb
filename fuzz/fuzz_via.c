/*
 * fuzz_via.c - Via normalisation and route matching on arbitrary URIs.
 *
 * The input is the URI.  It is parsed as a client's Via (no wildcard) and
 * as a route prefix (VIA_ALLOW_WILDCARD).  Checked:
 *  - the normal form is well formed (lower case but for escapes, segments
 *    non-empty and neither "." nor "..", seg_end consistent, NULs in place);
 *  - both parses agree wherever both succeed, and the prefix parse adds
 *    only wildcard hosts;
 *  - normalising the normal form changes nothing;
 *  - routes_lookup() in a fixed table of several classes and ports gives
 *    what a plain linear reading of WCF's rules gives, for several local
 *    ports;
 *  - a prefix, put in a table of its own, routes itself;
 *  - a client's Via rewritten (rewrite_via) is a well-formed preamble
 *    whose Via parses to the backend's host and port and the same path,
 *    with the bytes after it kept.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "rewrite.h"
#include "routes.h"
#include "via.h"

static const char *const table_prefixes[] = {
	"net.tcp://+/Calc",
	"net.tcp://+/Calc/Sub",
	"net.tcp://+:808/Calc/Sub",
	"net.tcp://+:9000/Calc/Sub/Deep",
	"net.tcp://+/a%20b/%7Ec",
	"net.tcp://host.example/",
	"net.tcp://host.example/Svc",
	"net.tcp://host.example:808/Svc",
	"net.tcp://HOST.example:9000/svc/x/y",
	"net.tcp://[::1]/V6",
	"net.tcp://[0:0::1]:808/V6/deeper",
	"net.tcp://10.0.0.1:9000/A/B",
	"net.tcp://xn--bcher-kva.example/%E4%B8%AD",
	"net.tcp://*/",
	"net.tcp://*/Weak/Path%20With%20Space",
	"net.tcp://*:808/Weak",
	"net.tcp://*/Calc/Sub/Deep/Deeper",
};
#define NPREFIXES (sizeof(table_prefixes) / sizeof(table_prefixes[0]))

static const uint16_t local_ports[] = { 0, 808, 9000, 8808 };

static struct route_table *table;
static struct via prefixes[NPREFIXES];

static void
table_build(void)
{
	struct addr backend;

	memset(&backend, 0, sizeof(backend));
	table = routes_new();
	FUZZ_CHECK(table != NULL);
	for (size_t i = 0; i < NPREFIXES; i++) {
		const char *why;
		char name[16];

		snprintf(name, sizeof(name), "r%zu", i);
		FUZZ_CHECK(routes_add_route(table, name, &backend, name) == (int)i);
		FUZZ_CHECK(via_parse(table_prefixes[i], strlen(table_prefixes[i]),
		    VIA_ALLOW_WILDCARD, &prefixes[i], &why) == 0);
		FUZZ_CHECK(routes_add_prefix(table, (int)i, &prefixes[i], NULL) == 0);
	}
}

/* WCF's rules read plainly: strong, exact, weak; deepest; port beats none. */
static int
reference_lookup(const struct via *v, uint16_t local_port)
{
	for (int c = VIA_HOST_STRONG; c <= VIA_HOST_WEAK; c++) {
		int best = -1;
		size_t best_depth = 0;
		int best_ported = 0;

		for (size_t i = 0; i < NPREFIXES; i++) {
			const struct via *p = &prefixes[i];
			size_t depth = p->nsegments;
			int ported = p->port != 0;

			if ((int)p->host_class != c)
				continue;
			if (c == VIA_HOST_EXACT && strcmp(p->host, v->host) != 0)
				continue;
			if (ported && p->port != local_port)
				continue;
			if (depth > v->nsegments)
				continue;
			if (p->path_len != (depth ? v->seg_end[depth - 1] : 0u) ||
			    memcmp(p->path, v->path, p->path_len) != 0)
				continue;
			if (best < 0 || depth > best_depth ||
			    (depth == best_depth && ported && !best_ported)) {
				best = (int)i;
				best_depth = depth;
				best_ported = ported;
			}
		}
		if (best >= 0)
			return best;
	}
	return -1;
}

static int
is_upper_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static void
check_normal_form(const struct via *v)
{
	size_t start = 0;

	FUZZ_CHECK(v->host_class <= VIA_HOST_WEAK);
	FUZZ_CHECK(strlen(v->host) < VIA_HOST_MAX);
	if (v->host_class != VIA_HOST_EXACT)
		FUZZ_CHECK(v->host[0] == '\0');
	else
		FUZZ_CHECK(v->host[0] != '\0');
	for (const char *h = v->host; *h != '\0'; h++)
		FUZZ_CHECK(!(*h >= 'A' && *h <= 'Z'));

	FUZZ_CHECK(v->path_len < VIA_PATH_MAX);
	FUZZ_CHECK(v->path[v->path_len] == '\0');
	FUZZ_CHECK(strlen(v->path) == v->path_len);
	FUZZ_CHECK(v->nsegments <= VIA_MAX_SEGMENTS);
	FUZZ_CHECK((v->nsegments == 0) == (v->path_len == 0));
	for (size_t i = 0; i < v->path_len; i++) {
		char c = v->path[i];

		FUZZ_CHECK(c > 0x20 && c < 0x7F && c != '?' && c != '#' && c != '\\');
		if (c == '%') {
			FUZZ_CHECK(i + 2 < v->path_len);
			FUZZ_CHECK(is_upper_hex(v->path[i + 1]) &&
			    is_upper_hex(v->path[i + 2]));
			/* %2F and %5C are separators, never kept */
			FUZZ_CHECK(!(v->path[i + 1] == '2' && v->path[i + 2] == 'F'));
			FUZZ_CHECK(!(v->path[i + 1] == '5' && v->path[i + 2] == 'C'));
			i += 2;
		} else {
			FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
		}
	}
	for (size_t k = 0; k < v->nsegments; k++) {
		size_t end = v->seg_end[k], n;

		FUZZ_CHECK(end > start + 1 && end <= v->path_len);
		FUZZ_CHECK(v->path[start] == '/');
		n = end - start - 1;
		FUZZ_CHECK(memchr(v->path + start + 1, '/', n) == NULL);
		FUZZ_CHECK(!(n == 1 && v->path[start + 1] == '.'));
		FUZZ_CHECK(!(n == 2 && v->path[start + 1] == '.' &&
		    v->path[start + 2] == '.'));
		start = end;
	}
	FUZZ_CHECK(start == v->path_len);
}

static int
same_via(const struct via *a, const struct via *b)
{
	return a->host_class == b->host_class && strcmp(a->host, b->host) == 0 &&
	    a->port == b->port && a->path_len == b->path_len &&
	    memcmp(a->path, b->path, a->path_len) == 0 &&
	    a->nsegments == b->nsegments &&
	    memcmp(a->seg_end, b->seg_end, a->nsegments * sizeof(a->seg_end[0])) == 0;
}

/* Write v back as a URI and parse that: the normal form is a fixed point. */
static void
check_idempotent(const struct via *v)
{
	static char text[NMF_MAX_VIA + 64];
	static struct via again;
	const char *host = v->host_class == VIA_HOST_STRONG ? "+" :
	    v->host_class == VIA_HOST_WEAK ? "*" : v->host;
	const char *why;
	int n;

	if (v->port != 0)
		n = snprintf(text, sizeof(text), "net.tcp://%s:%u%s", host,
		    (unsigned)v->port, v->path);
	else
		n = snprintf(text, sizeof(text), "net.tcp://%s%s", host, v->path);
	if (n < 0 || (size_t)n > NMF_MAX_VIA)
		return; /* escaping made it longer than any Via may be */
	FUZZ_CHECK(via_parse(text, (size_t)n, VIA_ALLOW_WILDCARD, &again, &why) == 0);
	FUZZ_CHECK(same_via(v, &again));
}

/* A prefix alone in a table routes itself, on its own port or any. */
static void
check_routes_itself(const struct via *prefix)
{
	struct route_table *t = routes_new();
	struct addr backend;
	int other = -1;

	FUZZ_CHECK(t != NULL);
	memset(&backend, 0, sizeof(backend));
	FUZZ_CHECK(routes_add_route(t, "self", &backend, "self") == 0);
	FUZZ_CHECK(routes_add_prefix(t, 0, prefix, NULL) == 0);
	FUZZ_CHECK(routes_add_prefix(t, 0, prefix, &other) == -2 && other == 0);
	FUZZ_CHECK(routes_lookup(t, prefix, prefix->port ? prefix->port : 808) ==
	    routes_get(t, 0));
	routes_unref(t);
}

/* The client's Via in a preamble, rewritten to name 10.0.0.5:9001. */
static void
check_rewrite(const char *uri, size_t size, const struct via *client)
{
	static const uint8_t head[] = { 0x00, 0x01, 0x00, 0x01, 0x02, NMF_REC_VIA };
	static const uint8_t tail[] = { NMF_REC_KNOWN_ENCODING, 0x08,
	    NMF_REC_PREAMBLE_END };
	static const char backend[] = "10.0.0.5:9001";
	static uint8_t in[NMF_PREAMBLE_MAX], out[NMF_PREAMBLE_MAX + REWRITE_GROWTH];
	static struct via again;
	struct nmf_parser p;
	struct nmf_record rec;
	size_t len = sizeof(head), via_off, via_len = 0, new_off = 0;
	const char *why;
	ssize_t n;
	int st;

	memcpy(in, head, sizeof(head));
	len += nmf_mbint_encode((uint32_t)size, in + len);
	via_off = len;
	memcpy(in + len, uri, size);
	len += size;
	memcpy(in + len, tail, sizeof(tail));
	len += sizeof(tail);
	n = rewrite_via_preamble(in, len, via_off, size, backend, out, sizeof(out));
	if (n == REWRITE_TOO_LONG) {
		FUZZ_CHECK(size + strlen(backend) > NMF_MAX_VIA);
		return;
	}
	FUZZ_CHECK(n > 0 && (size_t)n <= sizeof(out));
	nmf_parser_init(&p);
	while ((st = nmf_parse(&p, out, (size_t)n, &rec)) == NMF_RECORD &&
	    rec.type != NMF_REC_PREAMBLE_END) {
		if (rec.type == NMF_REC_VIA) {
			new_off = rec.str_off;
			via_len = rec.str_len;
		}
	}
	FUZZ_CHECK(st == NMF_RECORD && p.pos == (size_t)n && via_len > 0);
	FUZZ_CHECK(memcmp(out, in, 5) == 0);
	FUZZ_CHECK(memcmp(out + n - sizeof(tail), tail, sizeof(tail)) == 0);
	FUZZ_CHECK(via_parse((const char *)out + new_off, via_len, 0, &again,
	    &why) == 0);
	FUZZ_CHECK(strcmp(again.host, "10.0.0.5") == 0 && again.port == 9001);
	FUZZ_CHECK(again.path_len == client->path_len &&
	    memcmp(again.path, client->path, client->path_len) == 0 &&
	    again.nsegments == client->nsegments);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* struct via is 14 KiB: keep it off the stack */
	static struct via client, prefix;
	const char *uri = (const char *)data;
	const char *why = NULL;
	int rc_client, rc_prefix;

	if (table == NULL)
		table_build();

	rc_client = via_parse(uri, size, 0, &client, &why);
	FUZZ_CHECK(rc_client == 0 || (rc_client == -1 && why != NULL));
	why = NULL;
	rc_prefix = via_parse(uri, size, VIA_ALLOW_WILDCARD, &prefix, &why);
	FUZZ_CHECK(rc_prefix == 0 || (rc_prefix == -1 && why != NULL));
	if (size > NMF_MAX_VIA)
		FUZZ_CHECK(rc_client < 0 && rc_prefix < 0);

	if (rc_client == 0) {
		FUZZ_CHECK(client.host_class == VIA_HOST_EXACT);
		check_normal_form(&client);
		FUZZ_CHECK(rc_prefix == 0 && same_via(&client, &prefix));
		check_idempotent(&client);
		check_rewrite(uri, size, &client);
		for (size_t i = 0; i < sizeof(local_ports) / sizeof(local_ports[0]); i++) {
			const struct route *got = routes_lookup(table, &client,
			    local_ports[i]);
			int want = reference_lookup(&client, local_ports[i]);

			FUZZ_CHECK(got == (want < 0 ? NULL :
			    routes_get(table, (size_t)want)));
		}
	}
	if (rc_prefix == 0) {
		if (rc_client != 0)
			FUZZ_CHECK(prefix.host_class != VIA_HOST_EXACT);
		check_normal_form(&prefix);
		check_idempotent(&prefix);
		check_routes_itself(&prefix);
	}
	return 0;
}
