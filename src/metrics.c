/*
 * metrics.c - the Prometheus text exposition (format 0.0.4) of what the
 * workers and the main thread count, and the HTTP listener that serves it.
 *
 * A scrape sums every worker's counters with relaxed loads (stats.h): the
 * workers never wait for it.  The sum of a counter is read while workers
 * add to it, so a scrape is a moment of each counter, not one moment of
 * all of them; Prometheus' rate() expects no more.
 */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "conn.h"
#include "ctlproto.h"
#include "handoff.h"
#include "procstat.h"
#include "textbuf.h"

static void
out_head(struct textbuf *o, const char *name, const char *type, const char *help)
{
	textbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format asks: \\, \" and \n. */
static void
out_label(struct textbuf *o, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			textbuf_printf(o, "\\%c", *s);
		else if (*s == '\n')
			textbuf_printf(o, "\\n");
		else
			textbuf_printf(o, "%c", *s);
	}
}

/* The sum over the workers of the counter at offset off of worker_stats. */
static uint64_t
sum(const struct metrics_view *v, size_t off)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < v->nworkers; i++)
		total += stat_read((const stat_t *)(const void *)
		    ((const char *)&v->workers[i].stats + off));
	return total;
}

#define SUM(v, field) sum((v), offsetof(struct worker_stats, field))

static void
out_counter(struct textbuf *o, const char *name, const char *help, uint64_t value)
{
	out_head(o, name, "counter", help);
	textbuf_printf(o, "%s %llu\n", name, (unsigned long long)value);
}

static void
out_gauge(struct textbuf *o, const char *name, const char *help, double value)
{
	out_head(o, name, "gauge", help);
	textbuf_printf(o, "%s %.17g\n", name, value);
}

/* The process_* family, as the client libraries write it; what /proc does
 * not say is left out, not written as 0. */
static void
out_process(struct textbuf *o)
{
	struct procstat ps;

	if (procstat_read(&ps) < 0)
		return;
	out_head(o, "process_cpu_seconds_total", "counter",
	    "Total user and system CPU time spent in seconds.");
	textbuf_printf(o, "process_cpu_seconds_total %.17g\n", ps.cpu_seconds);
	if (ps.open_fds >= 0)
		out_gauge(o, "process_open_fds", "Number of open file descriptors.",
		    ps.open_fds);
	if (ps.max_fds >= 0)
		out_gauge(o, "process_max_fds", "Maximum number of open file "
		    "descriptors.", ps.max_fds);
	out_gauge(o, "process_virtual_memory_bytes", "Virtual memory size in "
	    "bytes.", ps.virtual_bytes);
	out_gauge(o, "process_resident_memory_bytes", "Resident memory size in "
	    "bytes.", ps.resident_bytes);
	out_gauge(o, "process_start_time_seconds", "Start time of the process "
	    "since unix epoch in seconds.", ps.start_time);
}

/* One histogram's samples: hs[0..nh-1] summed, each line with labels
 * ("" or 'k="v",'), already escaped. */
static void
out_hist_samples(struct textbuf *o, const struct stat_hist *const *hs, unsigned nh,
    const char *name, const char *labels)
{
	uint64_t cumulative = 0, count = 0, sum_ns = 0;
	size_t ll = strlen(labels);

	for (unsigned b = 0; b <= STAT_HIST_BUCKETS; b++) {
		uint64_t n = 0;

		for (unsigned i = 0; i < nh; i++) {
			n += stat_read(&hs[i]->bucket[b]);
			if (b == 0) {
				count += stat_read(&hs[i]->count);
				sum_ns += stat_read(&hs[i]->sum_ns);
			}
		}
		cumulative += n;
		if (b < STAT_HIST_BUCKETS)
			textbuf_printf(o, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
			    stat_hist_bounds[b], (unsigned long long)cumulative);
	}
	/* Counted apart from the buckets, so a scrape that races an
	 * observation could show +Inf below the last bucket: use the
	 * larger, which the format requires. */
	if (count < cumulative)
		count = cumulative;
	/* The labels without their trailing comma, in braces, or nothing. */
	textbuf_printf(o, "%s_bucket{%sle=\"+Inf\"} %llu\n"
	    "%s_sum%s%.*s%s %.9f\n%s_count%s%.*s%s %llu\n",
	    name, labels, (unsigned long long)count,
	    name, ll ? "{" : "", (int)(ll ? ll - 1 : 0), labels, ll ? "}" : "",
	    (double)sum_ns / 1e9,
	    name, ll ? "{" : "", (int)(ll ? ll - 1 : 0), labels, ll ? "}" : "",
	    (unsigned long long)count);
}

static void
out_hist(struct textbuf *o, const struct metrics_view *v, size_t off,
    const char *name, const char *help)
{
	const struct stat_hist *hs[CONFIG_MAX_WORKERS];

	out_head(o, name, "histogram", help);
	for (unsigned i = 0; i < v->nworkers; i++)
		hs[i] = (const void *)((const char *)&v->workers[i].stats + off);
	out_hist_samples(o, hs, v->nworkers, name, "");
}

/* ------------------------------------------------ per route and member */

/* The labels of a member's samples, escaped: route="...",backend="...", */
static char *
backend_labels(const struct backend_health *h)
{
	struct textbuf l = { 0 };

	textbuf_printf(&l, "route=\"");
	out_label(&l, h->route);
	textbuf_printf(&l, "\",backend=\"");
	out_label(&l, h->backend);
	textbuf_printf(&l, "\",");
	return textbuf_take(&l, NULL);
}

struct backend_pass {
	struct textbuf *o;
	int which;            /* 0 up, 1 connect failures, 2 connect seconds, */
	                      /* 3 health checks */
};

static void
backend_line(void *arg, const struct backend_health *h)
{
	struct backend_pass *bp = arg;
	const struct stat_hist *hist = &h->connect_seconds;
	char *labels = backend_labels(h);
	size_t ll;

	if (labels == NULL) {
		bp->o->failed = 1;
		return;
	}
	ll = strlen(labels) - 1;   /* without the comma */
	switch (bp->which) {
	case 0:
		textbuf_printf(bp->o, "nettcpd_backend_up{%.*s} %u\n", (int)ll, labels,
		    !atomic_load_explicit(&h->down, memory_order_relaxed));
		break;
	case 1:
		textbuf_printf(bp->o, "nettcpd_backend_connect_failures_total{%.*s} "
		    "%llu\n", (int)ll, labels,
		    (unsigned long long)stat_read(&h->connect_failures));
		break;
	case 2:
		out_hist_samples(bp->o, &hist, 1,
		    "nettcpd_backend_connect_duration_seconds", labels);
		break;
	default:
		for (int r = 0; r < BACKEND_CHECK_COUNT; r++)
			textbuf_printf(bp->o, "nettcpd_backend_checks_total{%sresult="
			    "\"%s\"} %llu\n", labels, backend_check_name(r),
			    (unsigned long long)stat_read(&h->checks[r]));
		break;
	}
	free(labels);
}

static void
out_backends(struct textbuf *o)
{
	struct backend_pass bp = { .o = o };

	out_head(o, "nettcpd_backend_up", "gauge", "1 while a route's member "
	    "takes sessions, 0 while it is skipped (fail_threshold connects "
	    "in a row failed) or checked down.");
	backend_each(backend_line, &bp);
	bp.which = 1;
	out_head(o, "nettcpd_backend_connect_failures_total", "counter",
	    "Connects to a route's member that failed or timed out (the next "
	    "member was tried).");
	backend_each(backend_line, &bp);
	bp.which = 2;
	out_head(o, "nettcpd_backend_connect_duration_seconds", "histogram",
	    "From connect() to the first preamble byte sent on a new "
	    "connection to a route's member.");
	backend_each(backend_line, &bp);
	bp.which = 3;
	out_head(o, "nettcpd_backend_checks_total", "counter",
	    "Active health checks of a route's member (check_interval), by "
	    "result: ok, fault (the Via is not served), timeout, refused, error.");
	backend_each(backend_line, &bp);
}

/* The per-route families, one route name (slot) at a time. */
struct route_pass {
	struct textbuf *o;
	const struct metrics_view *v;
	int which;            /* 0 sessions, 1 active, 2 bytes, 3 unavailable, */
	                      /* 4 pool hits, 5 pool misses, 6 denied, */
	                      /* 7 handoffs */
};

/* One sample of a per-route counter. */
static void
route_sample(struct textbuf *o, const char *family, const char *name, uint64_t n)
{
	textbuf_printf(o, "%s{route=\"", family);
	out_label(o, name);
	textbuf_printf(o, "\"} %llu\n", (unsigned long long)n);
}

/* The main thread's handoff counts of one route, by result; none for a
 * route that never handed a client off. */
static void
handoff_lines(struct textbuf *o, unsigned slot, const char *name)
{
	const struct route_stats *rs = route_stats_peek(handoff_stats(), slot);

	if (rs == NULL)
		return;
	for (unsigned r = 0; r < HANDOFF_RESULTS; r++) {
		textbuf_printf(o, "nettcpd_handoffs_total{route=\"");
		out_label(o, name);
		textbuf_printf(o, "\",result=\"%s\"} %llu\n", handoff_result_name(r),
		    (unsigned long long)stat_read(&rs->handoffs[r]));
	}
}

static void
route_line(void *arg, unsigned slot, const char *name)
{
	struct route_pass *rp = arg;
	uint64_t sessions = 0, active = 0, up = 0, down = 0, unavailable = 0;
	uint64_t hits = 0, misses = 0, denied = 0;

	if (rp->which == 7) {
		handoff_lines(rp->o, slot, name);
		return;
	}
	for (unsigned i = 0; i < rp->v->nworkers; i++) {
		const struct route_stats *rs =
		    route_stats_peek(&rp->v->workers[i].route_stats, slot);

		if (rs == NULL)
			continue;
		sessions += stat_read(&rs->sessions);
		active += stat_read(&rs->active);
		up += stat_read(&rs->bytes_up);
		down += stat_read(&rs->bytes_down);
		denied += stat_read(&rs->denied);
		unavailable += stat_read(&rs->unavailable);
		hits += stat_read(&rs->pool_hits);
		misses += stat_read(&rs->pool_misses);
	}
	switch (rp->which) {
	case 3:
		route_sample(rp->o, "nettcpd_route_unavailable_total", name,
		    unavailable);
		return;
	case 4:
		route_sample(rp->o, "nettcpd_route_pool_hits_total", name, hits);
		return;
	case 5:
		route_sample(rp->o, "nettcpd_route_pool_misses_total", name, misses);
		return;
	case 0:
		textbuf_printf(rp->o, "nettcpd_route_sessions_total{route=\"");
		out_label(rp->o, name);
		textbuf_printf(rp->o, "\"} %llu\n", (unsigned long long)sessions);
		break;
	case 1:
		textbuf_printf(rp->o, "nettcpd_route_sessions_active{route=\"");
		out_label(rp->o, name);
		textbuf_printf(rp->o, "\"} %llu\n", (unsigned long long)active);
		break;
	case 6:
		route_sample(rp->o, "nettcpd_route_denied_total", name, denied);
		return;
	default:
		textbuf_printf(rp->o, "nettcpd_route_bytes_total{route=\"");
		out_label(rp->o, name);
		textbuf_printf(rp->o, "\",direction=\"up\"} %llu\n"
		    "nettcpd_route_bytes_total{route=\"", (unsigned long long)up);
		out_label(rp->o, name);
		textbuf_printf(rp->o, "\",direction=\"down\"} %llu\n",
		    (unsigned long long)down);
		break;
	}
}

static void
cert_line(void *arg, const char *name, double not_after)
{
	struct textbuf *o = arg;

	textbuf_printf(o, "nettcpd_tls_certificate_expiry_timestamp_seconds{route=\"");
	out_label(o, name);
	textbuf_printf(o, "\"} %.17g\n", not_after);
}

static void
out_routes(struct textbuf *o, const struct metrics_view *v)
{
	struct route_pass rp = { .o = o, .v = v };

	out_head(o, "nettcpd_route_sessions_total", "counter",
	    "Sessions a member of the route served, by route (a route's counts "
	    "live on across reloads).");
	stats_route_names(route_line, &rp);
	rp.which = 1;
	out_head(o, "nettcpd_route_sessions_active", "gauge",
	    "Sessions under way, by route.");
	stats_route_names(route_line, &rp);
	rp.which = 2;
	out_head(o, "nettcpd_route_bytes_total", "counter",
	    "Bytes forwarded, by route; up: client to service.");
	stats_route_names(route_line, &rp);
	rp.which = 3;
	out_head(o, "nettcpd_route_unavailable_total", "counter",
	    "Sessions refused with EndpointUnavailable: every member of the "
	    "route failed.");
	stats_route_names(route_line, &rp);
	rp.which = 4;
	out_head(o, "nettcpd_route_pool_hits_total", "counter", "Followed "
	    "sessions of the route that took a pooled backend connection.");
	stats_route_names(route_line, &rp);
	rp.which = 5;
	out_head(o, "nettcpd_route_pool_misses_total", "counter", "Followed "
	    "sessions of the route that dialled: none pooled, or the client "
	    "sent envelopes with its preamble.");
	stats_route_names(route_line, &rp);
	rp.which = 6;
	out_head(o, "nettcpd_route_denied_total", "counter",
	    "Clients refused at a Via of the route by its allow and deny, or "
	    "by [global]'s.");
	stats_route_names(route_line, &rp);
	rp.which = 7;
	out_head(o, "nettcpd_handoffs_total", "counter", "Clients of a handoff "
	    "registration's route passed to the registrant, by result: taken, "
	    "refused (its queue full, or handoff_max_pending), timeout (no "
	    "TAKEN within handoff_timeout), lost (the registration went "
	    "first); all but taken got EndpointUnavailable.");
	stats_route_names(route_line, &rp);
	out_head(o, "nettcpd_tls_certificate_expiry_timestamp_seconds", "gauge",
	    "When the certificate of each terminating route expires (its "
	    "notAfter), Unix time.");
	stats_route_certs(cert_line, o);
}

/* The control socket (control.c): connections, registrations, requests. */
static void
out_control(struct textbuf *o, const struct process_stats *p)
{
	out_gauge(o, "nettcpd_control_connections", "Control connections open.",
	    (double)stat_read(&p->control_connections));
	out_head(o, "nettcpd_registrations", "gauge",
	    "Live registrations, by kind.");
	for (unsigned k = 0; k < 2; k++)
		textbuf_printf(o, "nettcpd_registrations{kind=\"%s\"} %llu\n",
		    ctl_mode_name((enum ctl_mode)k),
		    (unsigned long long)stat_read(&p->registrations[k]));
	out_head(o, "nettcpd_control_requests_total", "counter",
	    "Control requests answered, by verb (invalid: unreadable) and result.");
	for (unsigned k = 0; k <= CTL_STATS; k++)
		for (unsigned r = 0; r < 2; r++)
			textbuf_printf(o, "nettcpd_control_requests_total{verb=\"%s\","
			    "result=\"%s\"} %llu\n", k == 0 ? "invalid" :
			    ctl_verb_name((enum ctl_verb)k), r == 0 ? "ok" : "err",
			    (unsigned long long)stat_read(
			    &p->control_requests[k][r]));
}

char *
metrics_format(const struct metrics_view *v, size_t *len)
{
	const struct process_stats *p = v->process;
	struct textbuf o = { 0 };
	uint64_t accepted = SUM(v, accepted), finished = 0, pipes = 0;
	unsigned i;

	out_head(&o, "nettcpd_build_info", "gauge", "The running version.");
	textbuf_printf(&o, "nettcpd_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	out_gauge(&o, "nettcpd_start_time_seconds", "When nettcpd started, "
	    "Unix time.", p->start_time);
	out_gauge(&o, "nettcpd_workers", "Worker threads.", v->nworkers);

	out_counter(&o, "nettcpd_connections_accepted_total",
	    "Client connections accepted.", accepted);
	out_counter(&o, "nettcpd_connections_refused_total", "Client connections "
	    "reset at once: max_connections reached, or no memory.",
	    SUM(v, refused));
	out_head(&o, "nettcpd_connections_finished_total", "counter",
	    "Client connections closed, by how they ended.");
	for (i = 0; i < STAT_OUTCOMES; i++) {
		uint64_t n = sum(v, offsetof(struct worker_stats, finished) +
		    i * sizeof(stat_t));

		finished += n;
		textbuf_printf(&o, "nettcpd_connections_finished_total{outcome=\"%s\"} "
		    "%llu\n", conn_outcome_name(i), (unsigned long long)n);
	}
	out_gauge(&o, "nettcpd_connections_active", "Client connections open.",
	    (double)(accepted >= finished ? accepted - finished : 0));
	out_gauge(&o, "nettcpd_connections_max", "max_connections.",
	    v->limits->max_connections);
	out_counter(&o, "nettcpd_sessions_total", "Sessions routed to a backend "
	    "(a pooled client connection carries several).", SUM(v, sessions));

	out_head(&o, "nettcpd_faults_total", "counter",
	    "Framing Fault records sent to clients, by fault.");
	for (i = 0; i < NMF_FAULT_COUNT; i++)
		textbuf_printf(&o, "nettcpd_faults_total{fault=\"%s\"} %llu\n",
		    nmf_fault_name((enum nmf_fault)i), (unsigned long long)sum(v,
		    offsetof(struct worker_stats, faults) + i * sizeof(stat_t)));
	out_head(&o, "nettcpd_preamble_errors_total", "counter",
	    "Preambles refused, by what was wrong with them.");
	for (i = PREAMBLE_ERR_NONE + 1; i < PREAMBLE_ERR_COUNT; i++)
		textbuf_printf(&o, "nettcpd_preamble_errors_total{kind=\"%s\"} %llu\n",
		    preamble_error_name((enum preamble_error)i),
		    (unsigned long long)sum(v, offsetof(struct worker_stats,
		    preamble_errors) + i * sizeof(stat_t)));

	out_backends(&o);
	out_hist(&o, v, offsetof(struct worker_stats, route_seconds),
	    "nettcpd_route_duration_seconds",
	    "From a session's first byte (or the accept) to its route.");
	out_counter(&o, "nettcpd_backend_pool_hits_total", "Followed sessions "
	    "that took a pooled backend connection.", SUM(v, pool_hits));
	out_counter(&o, "nettcpd_backend_pool_misses_total", "Followed sessions "
	    "that dialled: none pooled, or the client sent envelopes with its "
	    "preamble.", SUM(v, pool_misses));
	out_counter(&o, "nettcpd_backend_pool_redials_total", "Pooled backend "
	    "connections found dead before they answered, and dialled anew.",
	    SUM(v, pool_redials));
	for (i = 0; i < v->nworkers; i++)
		pipes += stat_read(&v->workers[i].pipes.in_use);
	out_gauge(&o, "nettcpd_pipes_in_use", "splice() pipes held by "
	    "connections.", (double)pipes);
	out_counter(&o, "nettcpd_tls_handshakes_total", "TLS handshakes "
	    "completed on terminating routes.", SUM(v, tls_handshakes));
	out_counter(&o, "nettcpd_tls_handshake_failures_total", "TLS handshakes "
	    "that failed or timed out.", SUM(v, tls_failures));

	out_head(&o, "nettcpd_reloads_total", "counter",
	    "SIGHUP reloads, by result (failed: the running generation serves on).");
	textbuf_printf(&o, "nettcpd_reloads_total{result=\"ok\"} %llu\n"
	    "nettcpd_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)stat_read(&p->reloads_ok),
	    (unsigned long long)stat_read(&p->reloads_failed));
	out_gauge(&o, "nettcpd_config_last_reload_successful", "Whether the "
	    "last reload took (1 at start; 0 from a failed one to the next good "
	    "one).", (double)stat_read(&p->last_reload_ok));
	out_gauge(&o, "nettcpd_generation", "The configuration generation new "
	    "connections start under (1 at start, one more per reload).",
	    (double)stat_read(&p->generation));
	out_gauge(&o, "nettcpd_generation_loaded_timestamp_seconds", "When that "
	    "generation was loaded, Unix time.",
	    (double)stat_read(&p->generation_loaded_ms) / 1e3);
	out_gauge(&o, "nettcpd_generation_load_duration_seconds", "How long "
	    "loading it took (file, routes, certificates).",
	    (double)stat_read(&p->generation_load_us) / 1e6);
	out_control(&o, p);
	out_routes(&o, v);
	out_process(&o);

	return textbuf_take(&o, len);
}
