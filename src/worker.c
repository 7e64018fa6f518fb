/*
 * worker.c - one thread, one event loop.
 */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "uring.h"

unsigned
worker_count(const struct config *cfg)
{
	long cpus;

	if (cfg->workers > 0)
		return cfg->workers;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		return 1;
	return cpus > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (unsigned)cpus;
}

/* An even share, rounded up so the shares cover the whole: each worker
 * keeps its own idle backend connections, backend_pool of them together. */
static unsigned
share(unsigned whole, unsigned n)
{
	return (whole + n - 1) / n;
}

/* The process reached max_connections, or left it: every other worker
 * pauses or resumes accepting. */
static void
limits_tell_others(struct limits *l, const struct worker *self)
{
	for (unsigned i = 0; i < l->nworkers; i++)
		if (&l->workers[i] != self)
			ev_async_send(l->workers[i].loop, &l->workers[i].wake);
}

int
limits_take(struct limits *l, const struct worker *self)
{
	unsigned n = atomic_load(&l->nconns);

	while (n < l->max_connections) {
		if (atomic_compare_exchange_weak(&l->nconns, &n, n + 1)) {
			if (n + 1 == l->max_connections)
				limits_tell_others(l, self);
			return 1;
		}
	}
	return 0;
}

void
limits_give(struct limits *l, const struct worker *self)
{
	if (atomic_fetch_sub(&l->nconns, 1) >= l->max_connections)
		limits_tell_others(l, self);
}

void
limits_over(struct limits *l, const struct worker *self)
{
	struct pending_owner *o;

	while ((o = pending_choose(&l->pending, l->max_pending)) != NULL) {
		struct worker *w = o->data;

		if (w != self)
			ev_async_send(w->loop, &w->wake);
	}
}

static void
on_wake(struct ev_loop *loop, ev_async *async, int revents)
{
	(void)loop;
	(void)revents;
	conn_limits_changed(async->data);
}

/* A reload published a generation: new connections start under it, and
 * what it changes reaches the connections already here (conn_reload). */
static void
on_reload(struct ev_loop *loop, ev_async *async, int revents)
{
	struct worker *w = async->data;
	const struct listen_sock *socks;
	struct generation *next;
	size_t nsocks;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&w->next_lock);
	next = w->next_gen;
	socks = w->next_socks;
	nsocks = w->next_nsocks;
	w->next_gen = NULL;
	pthread_mutex_unlock(&w->next_lock);
	if (next == NULL)
		return;
	generation_unref(w->gen);
	w->gen = next;
	/* The sockets of unchanged addresses are the same ones: they never
	 * stop listening, whatever is watched between these two calls. */
	if (!w->draining) {
		listeners_close(w);
		if (listeners_open(w, socks, nsocks) < 0)
			log_err("worker %u: cannot watch the listening sockets", w->index);
	}
	conn_reload(w);
	atomic_store(&w->gen_number, next->number);
	ev_async_send(w->main_loop, w->main_notify);
}

void
worker_publish(struct worker *w, struct generation *gen,
    const struct listen_sock *socks, size_t nsocks)
{
	struct generation *stale;

	pthread_mutex_lock(&w->next_lock);
	stale = w->next_gen;   /* two reloads before the worker woke up */
	w->next_gen = generation_ref(gen);
	w->next_socks = socks;
	w->next_nsocks = nsocks;
	pthread_mutex_unlock(&w->next_lock);
	generation_unref(stale);
	ev_async_send(w->loop, &w->reload);
}

static void
on_drain(struct ev_loop *loop, ev_async *async, int revents)
{
	struct worker *w = async->data;

	(void)loop;
	(void)revents;
	if (w->draining)
		return;
	w->draining = 1;
	listeners_close(w);
	atomic_store(&w->released, 1);
	ev_async_send(w->main_loop, w->main_notify);
	conn_close_idle(w);
	worker_check_drained(w);
}

void
worker_drain(struct worker *w)
{
	ev_async_send(w->loop, &w->drain);
}

void
worker_check_drained(struct worker *w)
{
	if (!w->draining || w->nconns > 0 || atomic_load(&w->drained))
		return;
	atomic_store(&w->drained, 1);
	ev_async_send(w->main_loop, w->main_notify);
}

static void
on_stop(struct ev_loop *loop, ev_async *async, int revents)
{
	(void)async;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* log_client_lines is per second: by default enough to see what a
 * misbehaving client does, too few for a flood of them to fill a disk or
 * drown the lines about the daemon. */
#define LOG_CLIENT_WINDOW 1.0

static void
log_held(const struct worker *w, unsigned held)
{
	log_notice("%u similar lines about clients suppressed in the last "
	    "%.0f s (log_client_lines = %u a second per worker)", held,
	    LOG_CLIENT_WINDOW, w->client_lines.burst);
}

/* A window that held lines back ended (or a later event already said so
 * and opened another one that holds some back too). */
static void
on_client_lines_end(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	unsigned held;

	(void)revents;
	if ((held = ratelimit_end(&w->client_lines, ev_now(loop))) > 0)
		log_held(w, held);
	else if (w->client_lines.held > 0) {
		/* 1 ms more: the end may round to a hair after now. */
		ev_timer_set(t, ratelimit_window_end(&w->client_lines) -
		    ev_now(loop) + 0.001, 0.);
		ev_timer_start(loop, t);
	}
}

int
worker_log_client(struct worker *w, enum log_level level)
{
	unsigned ended;
	int pass;

	if (!log_enabled(level))
		return 0;
	if (level != LOG_LEVEL_NOTICE && level != LOG_LEVEL_INFO)
		return 1;
	/* A reload may change the limit: the window under way keeps its
	 * count, and the new limit applies from the next line. */
	w->client_lines.burst = w->gen->cfg->log_client_lines;
	if (w->client_lines.burst == 0)
		return 1;   /* no limit; a count held before says so at its end */
	pass = ratelimit_pass(&w->client_lines, ev_now(w->loop), &ended);
	if (ended > 0)
		log_held(w, ended);
	if (!pass && !ev_is_active(&w->client_lines_end)) {
		ev_timer_set(&w->client_lines_end, ratelimit_window_end(
		    &w->client_lines) - ev_now(w->loop), 0.);
		ev_timer_start(w->loop, &w->client_lines_end);
	}
	return pass;
}

/* A record reaches the file at most a second after its connection ended. */
static void
on_access_flush(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	access_flush();
}

int
worker_init(struct worker *w, struct generation *gen, struct limits *limits,
    const struct listen_sock *socks, size_t nsocks, unsigned index, unsigned n)
{
	const struct config *cfg = gen->cfg;

	memset(w, 0, sizeof(*w));
	w->gen = generation_ref(gen);
	pthread_mutex_init(&w->next_lock, NULL);
	w->index = index;
	w->limits = limits;
	w->pending.data = w;
	pipe_pool_init(&w->pipes, cfg->pipe_size);
	w->loop = ev_loop_new(EVFLAG_AUTO);
	if (w->loop == NULL) {
		log_err("cannot create the event loop of worker %u", index);
		generation_unref(w->gen);
		return -1;
	}
	bpool_init(&w->backends, w->loop, cfg->follow_sessions ?
	    share(cfg->backend_pool, n) : 0, cfg->backend_pool_timeout,
	    cfg->backend_pool_settle);
	ev_prepare_init(&w->ready_run, conn_run_ready);
	w->ready_run.data = w;
	ev_prepare_start(w->loop, &w->ready_run);
	ev_unref(w->loop);   /* it keeps no loop alive */
	/* Before the daemon says it started: the log says first whether
	 * io_uring runs, and the ring's descriptor is there from the start. */
	if (cfg->forward == FORWARD_URING)
		(void)uring_get(w);
	ev_async_init(&w->stop, on_stop);
	ev_async_start(w->loop, &w->stop);
	ev_async_init(&w->reload, on_reload);
	w->reload.data = w;
	ev_async_start(w->loop, &w->reload);
	ev_async_init(&w->wake, on_wake);
	w->wake.data = w;
	ev_async_start(w->loop, &w->wake);
	ev_async_init(&w->drain, on_drain);
	w->drain.data = w;
	ev_async_start(w->loop, &w->drain);
	ev_timer_init(&w->access_flush, on_access_flush, 1., 1.);
	ratelimit_init(&w->client_lines, cfg->log_client_lines, LOG_CLIENT_WINDOW);
	ev_init(&w->client_lines_end, on_client_lines_end);
	w->client_lines_end.data = w;
	if (access_enabled()) {
		ev_timer_start(w->loop, &w->access_flush);
		ev_unref(w->loop);   /* it keeps no loop alive */
	}
	atomic_init(&w->drained, 0);
	atomic_init(&w->released, 0);
	atomic_init(&w->gen_number, gen->number);
	if (listeners_open(w, socks, nsocks) < 0) {
		ev_loop_destroy(w->loop);
		generation_unref(w->gen);
		return -1;
	}
	return 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	ev_run(w->loop, 0);
	access_flush();
	pump_spares_free();
	return NULL;
}


int
worker_start(struct worker *w)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);

	if (err != 0) {
		log_err("cannot start worker %u: %s", w->index, strerror(err));
		return -1;
	}
	return 0;
}

void
worker_stop(struct worker *w)
{
	ev_async_send(w->loop, &w->stop);
}

void
worker_finish(struct worker *w, int started)
{
	if (started)
		pthread_join(w->thread, NULL);
	uring_close(w);
	listeners_close(w);
	conn_close_all(w);
	pump_spares_free();    /* what conn_close_all gave back, here */
	bpool_drain(&w->backends);
	pipe_pool_drain(&w->pipes);
	route_stats_free(&w->route_stats);
	ev_async_stop(w->loop, &w->stop);
	ev_async_stop(w->loop, &w->reload);
	ev_async_stop(w->loop, &w->drain);
	ev_async_stop(w->loop, &w->wake);
	ev_timer_stop(w->loop, &w->client_lines_end);
	ev_ref(w->loop);
	ev_prepare_stop(w->loop, &w->ready_run);
	free(w->ready);
	if (ev_is_active(&w->access_flush)) {
		ev_ref(w->loop);
		ev_timer_stop(w->loop, &w->access_flush);
	}
	ev_loop_destroy(w->loop);
	generation_unref(w->next_gen);
	generation_unref(w->gen);
	pthread_mutex_destroy(&w->next_lock);
}
