/*
 * reload.c - the main thread's side of a generation: loading the next one
 * on SIGHUP and handing it to the workers, retiring the listeners it
 * dropped, and what /metrics says of it.
 */
#include "daemon.h"

#include <stdatomic.h>
#include <string.h>

#include "control.h"
#include "handoff.h"
#include "log.h"
#include "notify.h"
#include "registry.h"
#include "routes.h"
#include "stats.h"

/* Say once how terminated TLS is carried, so an operator knows the cost. */
void
daemon_log_tls_path(const struct config *cfg)
{
	size_t i, terminating = 0;

	for (i = 0; i < routes_count(cfg->routes); i++)
		if (routes_get(cfg->routes, i)->tls_ctx != NULL)
			terminating++;
	if (terminating == 0)
		return;
	log_info("TLS: %zu terminating %s; records are handled by OpenSSL "
	    "(SSL_read/SSL_write; kernel TLS offload is not used)", terminating,
	    log_plural(terminating, "route", "routes"));
}

/* gen is the newest generation, loaded in load_seconds. */
void
daemon_count_generation(struct daemon *d, double load_seconds)
{
	atomic_store(&d->stats.last_reload_ok, 1);
	atomic_store(&d->stats.generation, d->gen->number);
	atomic_store(&d->stats.generation_loaded_ms, (uint64_t)(ev_time() * 1e3));
	atomic_store(&d->stats.generation_load_us, (uint64_t)(load_seconds * 1e6));
}

/* A reload that left the running generation serving. */
static void
count_failure(struct daemon *d)
{
	stat_add(&d->stats.reloads_failed, 1);
	atomic_store(&d->stats.last_reload_ok, 0);
}

/* Close the sockets of addresses a reload dropped, once every worker has
 * taken that generation and so watches them no more. */
void
daemon_retire_listeners(struct daemon *d)
{
	if (d->retired == NULL)
		return;
	for (unsigned i = 0; i < d->nworkers; i++)
		if (atomic_load(&d->workers[i].gen_number) < d->gen->number)
			return;
	listen_socks_close(d->retired, d->nretired, 1);
	d->retired = NULL;
}

/* Log each "FILE:LINE: ..." line of a failed load at level. */
static void
log_lines(enum log_level level, const char *text)
{
	while (*text != '\0') {
		size_t n = strcspn(text, "\n");

		log_msg(level, "%.*s", (int)n, text);
		text += n;
		text += *text == '\n';
	}
}

/*
 * SIGHUP: build the new generation from the file and check all of it
 * (addresses, certificates and keys) before anything changes; then every
 * worker starts new connections, and the next session of an idle one,
 * under it; sessions under way keep theirs, but a preamble in progress is
 * decided under it and a stream pinned to a route it changed is closed
 * (conn_reload).  A file that does not load leaves the running generation
 * serving.  After a privilege drop the files are read, and new ports
 * bound, as the user (privs.h).  Returns 0 once the new generation is
 * published, -1 after logging why not, 1 when deferred until the workers
 * have the last one (d->reload_pending).
 */
int
daemon_reload(struct daemon *d)
{
	char err[CONFIG_ERR_MAX];
	struct generation *next, *reg;
	struct listen_sock *socks;
	const char *key;
	double started = ev_time();

	if (d->draining) {
		count_failure(d);
		log_err("SIGHUP received: reload of %s refused: shutting down; "
		    "generation %u goes on serving", d->path, d->gen->number);
		return -1;
	}
	/* A file changed between two SIGHUPs close together must not wait
	 * for a third: read it again once the workers have the last one. */
	if (d->retired != NULL) {
		if (!d->reload_pending)
			log_info("SIGHUP received: generation %u is still being "
			    "handed to the workers; %s is read again once they "
			    "have it", d->gen->number, d->path);
		d->reload_pending = 1;
		return 1;
	}
	next = generation_load(d->path, d->gen->number + 1, err, sizeof(err));
	if (next == NULL) {
		count_failure(d);
		log_err("SIGHUP received: reload of %s failed; generation %u goes "
		    "on serving:", d->path, d->gen->number);
		log_lines(LOG_LEVEL_ERROR, err);
		return -1;
	}
	log_lines(LOG_LEVEL_WARNING, err);
	if ((key = generation_needs_restart(d->gen, next)) != NULL) {
		count_failure(d);
		log_err("SIGHUP received: reload of %s refused: '%s' changed, which "
		    "takes a restart; generation %u goes on serving", d->path, key,
		    d->gen->number);
		generation_unref(next);
		return -1;
	}
	/* The live registrations go on, on the new static routes. */
	if ((reg = registry_apply(next)) == NULL) {
		count_failure(d);
		log_err("SIGHUP received: reload of %s failed: out of memory for "
		    "the registrations; generation %u goes on serving", d->path,
		    d->gen->number);
		generation_unref(next);
		return -1;
	}
	next = reg;
	/* The new addresses are bound before anything changes. */
	if ((socks = listen_socks_update(d->socks, d->nsocks, next->cfg)) == NULL) {
		count_failure(d);
		log_err("SIGHUP received: reload of %s failed; generation %u goes "
		    "on serving", d->path, d->gen->number);
		generation_unref(next);
		return -1;
	}
	log_open(next->cfg->log_target, next->cfg->log_level);
	handoff_configure(next->cfg);
	d->retired = d->socks;
	d->nretired = d->nsocks;
	d->socks = socks;
	d->nsocks = next->cfg->nlistens;
	generation_unref(d->gen);
	d->gen = next;
	stats_bind_routes(next->cfg->routes);
	daemon_count_generation(d, ev_time() - started);
	if (d->health != NULL)
		(void)health_apply(d->health, next->cfg->routes);
	for (unsigned i = 0; i < d->nworkers; i++)
		worker_publish(&d->workers[i], next, d->socks, d->nsocks);
	registry_commit(control_revoked);
	stat_add(&d->stats.reloads_ok, 1);
	log_notice("SIGHUP received: reloaded %s: generation %u, %zu %s",
	    d->path, next->number, routes_count(next->cfg->routes),
	    log_plural(routes_count(next->cfg->routes), "route", "routes"));
	daemon_log_tls_path(next->cfg);
	return 0;
}
