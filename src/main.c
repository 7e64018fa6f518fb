/*
 * main.c - command line, signals, and the event loop (a reload: reload.c).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "access.h"
#include "conn.h"
#include "control.h"
#include "daemon.h"
#include "daemonize.h"
#include "explain.h"
#include "generation.h"
#include "handoff.h"
#include "handover.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "privs.h"
#include "routes.h"
#include "upgrade.h"
#include "worker.h"

/* Long options without a short one: past every char. */
enum { OPT_VERSION = 0x100 };

#ifndef NETTCPD_DEFAULT_CONFIG
#define NETTCPD_DEFAULT_CONFIG "/etc/nettcpd/nettcpd.ini"
#endif

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: nettcpd [-d | -t [-v] [--route VIA]] [-c FILE]\n"
	    "       nettcpd -V | --version | -h | --help\n"
	    "  -c FILE  configuration (default %s)\n"
	    "  -d       run in the background once serving (hosts without systemd)\n"
	    "  -t       check the configuration and exit\n"
	    "  -v       with -t: print the route table\n"
	    "  --route VIA  with -t: which route VIA takes on each port, and why\n"
	    "  -V       print the version and the build's features, and exit\n"
	    "  --version  print the version and exit\n"
	    "  -h, --help  print this help and exit\n",
	    NETTCPD_DEFAULT_CONFIG);
}

/* -V: what this binary was built with, for a bug report or a check that
 * the package has what the configuration asks for. */
static void
print_features(void)
{
	printf("nettcpd %s\n", PACKAGE_VERSION);
	printf("features: %clibsystemd (sd_notify, socket activation, log = "
	    "journal)\n",
#ifdef HAVE_LIBSYSTEMD
	    '+'
#else
	    '-'
#endif
	    );
	printf("forward: splice copy\n");
	printf("%s (built with %s), libev %d.%d\n", OpenSSL_version(OPENSSL_VERSION),
	    OPENSSL_VERSION_TEXT, ev_version_major(), ev_version_minor());
}


/*
 * The first SIGTERM (or SIGINT) drains: every worker stops accepting,
 * closes its connections idle between sessions and each other one as its
 * session ends; nettcpd exits once none is left, or at shutdown_timeout.
 * A second one exits at once.  Either way the exit status is 0.
 */
static void
on_stop_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct daemon *d = sig->data;
	double timeout = d->gen->cfg->shutdown_timeout;

	(void)revents;
	if (d->draining) {
		log_info("%s received again, shutting down at once",
		    strsignal(sig->signum));
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	d->draining = 1;
	/* A draining nettcpd takes no new sessions: nothing to check for. */
	health_free(d->health);
	d->health = NULL;
	log_info("%s received, draining: no new connections; sessions in "
	    "progress have %.0f s to end", strsignal(sig->signum), timeout);
	notify_state("STOPPING=1", "draining: sessions in progress have %.0f s "
	    "to end", timeout);
	ev_timer_set(&d->shutdown_timer, timeout, 0.);
	ev_timer_start(loop, &d->shutdown_timer);
	for (unsigned i = 0; i < d->nworkers; i++)
		worker_drain(&d->workers[i]);
}

static void
on_shutdown_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)t;
	(void)revents;
	log_info("shutdown_timeout expired: closing the sessions still in progress");
	ev_break(loop, EVBREAK_ALL);
}

/* A SIGHUP, or (deferred) one that came while the last reload was handed
 * over: stay RELOADING for systemd until the newest file is read, saying
 * so once. */
static void
hup_reload(struct daemon *d, int deferred)
{
	int status;

	if (!deferred && !d->reload_pending)
		notify_state("RELOADING=1", "reloading %s", d->path);
	if ((status = daemon_reload(d)) == 0)
		notify_state("READY=1", "serving generation %u, %zu %s",
		    d->gen->number, routes_count(d->gen->cfg->routes),
		    log_plural(routes_count(d->gen->cfg->routes), "route", "routes"));
	else if (status < 0)
		notify_state("READY=1", "reload failed (see the log); serving "
		    "generation %u", d->gen->number);
}

static void
on_hup(struct ev_loop *loop, ev_signal *sig, int revents)
{
	(void)loop;
	(void)revents;
	hup_reload(sig->data, 0);
}

/* A worker took a generation (a SIGHUP deferred meanwhile reloads now),
 * let go of the listeners or drained. */
static void
on_worker_notify(struct ev_loop *loop, ev_async *async, int revents)
{
	struct daemon *d = async->data;

	(void)revents;
	control_generation_taken();
	daemon_retire_listeners(d);
	if (d->reload_pending && d->retired == NULL) {
		d->reload_pending = 0;
		hup_reload(d, 1);
	}
	if (!d->draining)
		return;
	/* Once no worker watches them, close the listening sockets: from here
	 * on a new client is refused instead of waiting in a backlog. */
	for (unsigned i = 0; i < d->nworkers; i++)
		if (!atomic_load(&d->workers[i].released))
			return;
	if (d->socks != NULL) {
		listen_socks_close(d->socks, d->nsocks, 0);
		d->socks = NULL;
	}
	for (unsigned i = 0; i < d->nworkers; i++)
		if (!atomic_load(&d->workers[i].drained))
			return;
	log_info("every session has ended");
	ev_break(loop, EVBREAK_ALL);
}

/* SIGUSR1: logrotate moved the access log; write a new one by its name. */
static void
on_usr1(struct ev_loop *loop, ev_signal *sig, int revents)
{
	char err[ACCESS_ERR_MAX];

	(void)loop;
	(void)sig;
	(void)revents;
	if (access_reopen(err, sizeof(err)) < 0)
		log_err("SIGUSR1 received: %s; records go on to the file open "
		    "before", err);
	else
		log_info("SIGUSR1 received: access log reopened");
}

/* The new binary ended: while it runs on, it shares the sockets. */
static void
on_upgrade_exit(struct ev_loop *loop, ev_child *child, int revents)
{
	struct daemon *d = child->data;

	(void)revents;
	ev_child_stop(loop, child);
	if (d->detach && WIFEXITED(child->rstatus) &&
	    WEXITSTATUS(child->rstatus) == 0) {
		log_notice("binary upgrade: the new nettcpd serves in the "
		    "background (-d); send SIGTERM to pid %d to drain this one",
		    (int)getpid());
		return;
	}
	handover_done(0);     /* this one reads the control socket again */
	if (WIFEXITED(child->rstatus))
		log_warn("binary upgrade: the new nettcpd (pid %d) exited with status "
		    "%d; this one (pid %d) goes on serving", child->rpid,
		    WEXITSTATUS(child->rstatus), (int)getpid());
	else
		log_warn("binary upgrade: the new nettcpd (pid %d) was killed by "
		    "signal %d; this one (pid %d) goes on serving", child->rpid,
		    WTERMSIG(child->rstatus), (int)getpid());
}

/*
 * SIGUSR2: start the binary at this one's path (as replaced by a package
 * upgrade, say) with the same arguments, on the same listening sockets.
 * Both serve until the operator sends this one SIGTERM, which drains it;
 * if the new one fails, this one never stopped.
 */
static void
on_usr2(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct daemon *d = sig->data;
	size_t nfds = d->nsocks + (d->metrics_fd >= 0), n = nfds;
	char env[64];
	int *fds, memfd;
	pid_t pid;

	(void)revents;
	if (ev_is_active(&d->upgrade) || d->draining || d->socks == NULL) {
		log_err("SIGUSR2 received: binary upgrade refused: %s",
		    d->draining ? "shutting down" : "one is already running");
		return;
	}
	if ((fds = calloc(d->nsocks + 1, sizeof(*fds))) == NULL) {
		log_err("SIGUSR2 received: binary upgrade failed: out of memory");
		return;
	}
	for (size_t i = 0; i < d->nsocks; i++)
		fds[i] = d->socks[i].fd;
	/* The metrics listener too: the new binary finds it by its address. */
	if (d->metrics_fd >= 0)
		fds[d->nsocks] = d->metrics_fd;
	/* The control state after them, and the memfd that names it. */
	if ((memfd = handover_prepare(&fds, &n, env, sizeof(env))) < 0) {
		free(fds);
		return;
	}
	pid = upgrade_start(d->exe, d->argv, fds, n, nfds, env);
	free(fds);
	close(memfd);
	if (pid > 0)
		handover_done(1);
	if (pid < 0) {
		log_err("SIGUSR2 received: binary upgrade failed: cannot start %s: %s",
		    d->exe, strerror(errno));
		return;
	}
	ev_child_set(&d->upgrade, pid, 0);
	ev_child_start(loop, &d->upgrade);
	/* What the new process gets as LISTEN_FDS, the metrics one included. */
	log_notice("SIGUSR2 received: binary upgrade: started %s as pid %d on "
	    "this one's %zu listening %s (%zu listen %s%s); once it serves, "
	    "send SIGTERM to pid %d to drain this one", d->exe, (int)pid,
	    nfds, log_plural(nfds, "socket", "sockets"), d->nsocks,
	    log_plural(d->nsocks, "address", "addresses"), d->metrics_fd >= 0 ?
	    " and the metrics listener" : "", (int)getpid());
}

/*
 * The main thread only waits for signals; the workers do all the I/O.
 * Every worker is set up (and has bound its sockets) before any starts, so
 * a bind error stops nettcpd before it serves anyone.
 */
static int
run(struct daemon *d)
{
	const struct config *cfg = d->gen->cfg;
	struct ev_loop *loop;
	struct worker *workers;
	ev_signal sigterm, sigint, sighup, sigusr1, sigusr2;
	unsigned n = worker_count(cfg), ready = 0, started = 0, i;
	int status = EXIT_FAILURE;
	char err[ACCESS_ERR_MAX];

	/* splice() into a socket the peer has closed raises SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	loop = ev_default_loop(EVFLAG_AUTO);
	workers = calloc(n, sizeof(*workers));
	if (loop == NULL || workers == NULL) {
		log_err("cannot initialise the event loop");
		free(workers);
		return EXIT_FAILURE;
	}
	d->workers = workers;
	ev_signal_init(&sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&sigint, on_stop_signal, SIGINT);
	ev_signal_init(&sighup, on_hup, SIGHUP);
	ev_signal_init(&sigusr2, on_usr2, SIGUSR2);
	ev_signal_init(&sigusr1, on_usr1, SIGUSR1);
	sigterm.data = sigint.data = sighup.data = sigusr2.data = d;
	ev_child_init(&d->upgrade, on_upgrade_exit, 0, 0);
	d->upgrade.data = d;
	ev_init(&d->shutdown_timer, on_shutdown_timeout);
	ev_async_init(&d->notify, on_worker_notify);
	d->notify.data = d;
	ev_async_start(loop, &d->notify);
	ev_signal_start(loop, &sigterm);
	ev_signal_start(loop, &sigint);
	handoff_init(loop);
	handoff_configure(cfg);

	d->limits.max_connections = cfg->max_connections;
	d->limits.max_pending = cfg->max_pending;
	d->limits.workers = workers;
	d->limits.nworkers = n;
	if (pending_init(&d->limits.pending) < 0) {
		log_err("out of memory for the preamble table");
		goto out;
	}
	d->nsocks = cfg->nlistens;
	if ((d->socks = listen_socks_open(cfg, d->ninherited)) == NULL)
		goto out;
	if (cfg->metrics) {
		addr_format((const struct sockaddr *)&cfg->metrics_addr.ss,
		    d->metrics_text, sizeof(d->metrics_text));
		if ((d->metrics_fd = listen_fd_open(&cfg->metrics_addr,
		    d->metrics_text, d->ninherited)) < 0)
			goto out;
	}
	/* The control socket is made by root, with its owner and mode. */
	if (handover_control_open(cfg) < 0)
		goto out;
	/* Root is dropped before any thread starts, so that every thread runs
	 * as the user, and before the pid file and the access log are opened:
	 * the user may own their directories (SIGUSR1 reopens the log there),
	 * and root must not write where the user can plant a link. */
	if (privs_drop(cfg) < 0)
		goto out;
	if (cfg->pidfile != NULL) {
		if (pidfile_write(cfg->pidfile) < 0)
			goto out;
		d->pidfile_written = 1;
	}
	if (access_open(cfg->access_log ? cfg->access_log : "off", err,
	    sizeof(err)) < 0) {
		log_err("%s", err);
		goto out;
	}
	for (ready = 0; ready < n; ready++) {
		if (worker_init(&workers[ready], d->gen, &d->limits, d->socks,
		    d->nsocks, ready, n) < 0)
			goto out;
		workers[ready].main_loop = loop;
		workers[ready].main_notify = &d->notify;
	}
	if (routes_count(cfg->routes) == 0)
		log_warn("%s defines no routes: every client will get EndpointNotFound",
		    cfg->path);
	daemon_log_tls_path(cfg);
	for (started = 0; started < n; started++)
		if (worker_start(&workers[started]) < 0)
			goto out;
	/* Reloads publish to the started workers only. */
	d->nworkers = n;
	d->view.workers = workers;
	d->view.nworkers = n;
	d->view.limits = &d->limits;
	d->view.process = &d->stats;
	if (d->metrics_fd >= 0 &&
	    (d->metrics = metrics_start(d->metrics_fd, d->metrics_text,
	    &d->view)) == NULL) {
		d->metrics_fd = -1;   /* closed */
		goto out;
	}
	/* The checks run as the user, on this loop, from now on. */
	if ((d->health = health_new(loop)) == NULL)
		log_err("out of memory for the health checks: none run");
	else
		(void)health_apply(d->health, cfg->routes);
	control_start(loop, d);
	handover_restore(d);
	ev_signal_start(loop, &sighup);
	ev_signal_start(loop, &sigusr2);
	ev_signal_start(loop, &sigusr1);
	log_info("nettcpd %s started: %zu %s, %u %s, forward = %s%s",
	    PACKAGE_VERSION, routes_count(cfg->routes),
	    log_plural(routes_count(cfg->routes), "route", "routes"), n,
	    log_plural(n, "worker", "workers"),
	    cfg->forward == FORWARD_SPLICE ? "splice" :
	    cfg->forward == FORWARD_COPY ? "copy" : "uring",
	    d->ninherited > 0 ? ", on listening sockets handed over" : "");
	notify_state("READY=1", "serving generation %u, %zu %s",
	    d->gen->number, routes_count(cfg->routes),
	    log_plural(routes_count(cfg->routes), "route", "routes"));
	daemonize_ready(log_on_stderr());

	ev_run(loop, 0);
	status = EXIT_SUCCESS;
out:
	health_free(d->health);
	d->health = NULL;
	/* The scrapes read the workers: they stop first. */
	metrics_stop(d->metrics);
	if (d->metrics == NULL && d->metrics_fd >= 0)
		close(d->metrics_fd);
	d->metrics = NULL;
	d->metrics_fd = -1;
	for (i = 0; i < started; i++)
		worker_stop(&workers[i]);
	for (i = 0; i < ready; i++)
		worker_finish(&workers[i], i < started);
	/* Each control connection answers its own handoffs as it closes. */
	control_close();
	handoff_shutdown();
	pending_destroy(&d->limits.pending);
	if (d->socks != NULL)
		listen_socks_close(d->socks, d->nsocks, 0);
	if (d->retired != NULL)
		listen_socks_close(d->retired, d->nretired, 0);
	if (status == EXIT_SUCCESS)
		log_info("stopped");
	free(workers);
	ev_signal_stop(loop, &sigterm);
	ev_signal_stop(loop, &sigint);
	ev_signal_stop(loop, &sighup);
	ev_signal_stop(loop, &sigusr2);
	ev_signal_stop(loop, &sigusr1);
	ev_child_stop(loop, &d->upgrade);
	ev_timer_stop(loop, &d->shutdown_timer);
	ev_async_stop(loop, &d->notify);
	ev_loop_destroy(loop);
	return status;
}

int
main(int argc, char **argv)
{
	const char *path = NETTCPD_DEFAULT_CONFIG;
	char err[CONFIG_ERR_MAX];
	struct daemon d = { 0 };
	static const struct option longopts[] = {
		{ "route", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	const char *route_via = NULL;
	char abspath[PATH_MAX], cwd[PATH_MAX];
	int check_only = 0, verbose = 0;
	int opt, status;
	ssize_t len;

	/* Before anything opens a descriptor: those from 3 on may be the
	 * listening sockets of the nettcpd this one upgrades. */
	d.ninherited = upgrade_inherited();
	/* The control connections and handoffs come after them. */
	(void)handover_read();
	/* The path it was started by, as nginx keeps it: what a package
	 * upgrade replaces (and, under valgrind, the program, not the tool). */
	d.argv = argv;
	if (strchr(argv[0], '/') != NULL && realpath(argv[0], d.exe) != NULL)
		len = (ssize_t)strlen(d.exe);
	else if ((len = readlink("/proc/self/exe", d.exe, sizeof(d.exe) - 1)) >= 0)
		d.exe[len] = '\0';
	else
		snprintf(d.exe, sizeof(d.exe), "%s", argv[0]);

	while ((opt = getopt_long(argc, argv, "c:dtvVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			d.detach = 1;
			break;
		case 't':
			check_only = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'r':
			route_via = optarg;
			break;
		case OPT_VERSION:
			printf("nettcpd %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		case 'V':
			print_features();
			return EXIT_SUCCESS;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || ((verbose || route_via != NULL) && !check_only) ||
	    (d.detach && check_only)) {
		usage(stderr);
		return 2;
	}
	/* -d moves to /, and a reload reads the file again from there: its
	 * path, and the relative file names in it, are taken from where
	 * nettcpd was started. */
	if (d.detach) {
		errno = 0;
		if (getcwd(cwd, sizeof(cwd)) == NULL || (path[0] != '/' &&
		    snprintf(abspath, sizeof(abspath), "%s/%s", cwd, path) >=
		    (int)sizeof(abspath))) {
			fprintf(stderr, "nettcpd: -d: cannot make %s an absolute "
			    "path: %s\n", path, strerror(errno != 0 ? errno :
			    ENAMETOOLONG));
			return EXIT_FAILURE;
		}
		if (path[0] != '/')
			path = abspath;
		config_set_dir(cwd);
	}

	/* -t builds the generation a start or a reload would, then stops. */
	d.path = path;
	d.metrics_fd = -1;
	d.stats.start_time = ev_time();
	d.gen = generation_load(path, 1, err, sizeof(err));
	/* Errors, or on success the warnings, one "FILE:LINE: ..." per line. */
	fputs(err, stderr);
	if (d.gen == NULL)
		return EXIT_FAILURE;
	if (check_only) {
		printf("%s: configuration OK\n", path);
		if (verbose)
			explain_table(stdout, d.gen->cfg);
		status = route_via != NULL ? explain_via(stdout, d.gen->cfg,
		    route_via) : 0;
		generation_unref(d.gen);
		return status == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	}

	stats_bind_routes(d.gen->cfg->routes);
	daemon_count_generation(&d, ev_time() - d.stats.start_time);
	log_open(d.gen->cfg->log_target, d.gen->cfg->log_level);
	/* Before run() starts any thread; from here on only the child. */
	if (d.detach && daemonize() < 0)
		status = EXIT_FAILURE;
	else
		status = run(&d);
	if (d.pidfile_written)
		pidfile_remove(d.gen->cfg->pidfile);
	stats_route_names_free();
	backend_registry_free();
	access_close();
	log_close();
	generation_unref(d.gen);
	config_set_dir(NULL);
	return status;
}
