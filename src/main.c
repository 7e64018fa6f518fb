/*
 * main.c - command line, signals, and the event loop.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "worker.h"

#ifndef NETTCPD_DEFAULT_CONFIG
#define NETTCPD_DEFAULT_CONFIG "/etc/nettcpd/nettcpd.ini"
#endif

/* Room for every error a broken config file can report. */
#define CONFIG_ERR_MAX 8192

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: nettcpd [-t] [-c FILE]\n"
	    "       nettcpd -V | -h\n"
	    "  -c FILE  configuration (default %s)\n"
	    "  -t       check the configuration and exit\n"
	    "  -V       print the version and exit\n"
	    "  -h       print this help and exit\n",
	    NETTCPD_DEFAULT_CONFIG);
}

static void
on_stop_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	(void)revents;
	log_info("%s received, shutting down", strsignal(sig->signum));
	ev_break(loop, EVBREAK_ALL);
}

static void
on_hup(struct ev_loop *loop, ev_signal *sig, int revents)
{
	(void)loop;
	(void)sig;
	(void)revents;
	log_notice("SIGHUP received: configuration reload is not implemented yet, ignored");
}

/* Say once how terminated TLS is carried, so an operator knows the cost. */
static void
log_tls_path(const struct config *cfg)
{
	size_t i, terminating = 0;

	for (i = 0; i < routes_count(cfg->routes); i++)
		if (routes_get(cfg->routes, i)->tls_ctx != NULL)
			terminating++;
	if (terminating == 0)
		return;
	log_info("TLS: %zu terminating routes; records are handled by OpenSSL "
	    "(SSL_read/SSL_write; kernel TLS offload is not used)", terminating);
}

static int
run(const struct config *cfg)
{
	struct worker w;
	ev_signal sigterm, sigint, sighup;
	int status = EXIT_FAILURE;

	memset(&w, 0, sizeof(w));
	w.loop = ev_default_loop(EVFLAG_AUTO);
	if (w.loop == NULL) {
		log_err("cannot initialise the event loop");
		return EXIT_FAILURE;
	}
	w.cfg = cfg;
	w.routes = cfg->routes;
	pipe_pool_init(&w.pipes);

	/* splice() into a socket the peer has closed raises SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&sigint, on_stop_signal, SIGINT);
	ev_signal_init(&sighup, on_hup, SIGHUP);
	ev_signal_start(w.loop, &sigterm);
	ev_signal_start(w.loop, &sigint);
	ev_signal_start(w.loop, &sighup);

	if (listeners_open(&w) < 0)
		goto out;
	if (routes_count(cfg->routes) == 0)
		log_warn("%s defines no routes: every client will get EndpointNotFound",
		    cfg->path);
	log_tls_path(cfg);
	log_info("nettcpd %s started: %zu routes, forward = %s", PACKAGE_VERSION,
	    routes_count(cfg->routes),
	    cfg->forward == FORWARD_SPLICE ? "splice" : "copy");

	ev_run(w.loop, 0);

	listeners_close(&w);
	conn_close_all(&w);
	log_info("stopped");
	status = EXIT_SUCCESS;
out:
	pipe_pool_drain(&w.pipes);
	ev_signal_stop(w.loop, &sigterm);
	ev_signal_stop(w.loop, &sigint);
	ev_signal_stop(w.loop, &sighup);
	ev_loop_destroy(w.loop);
	return status;
}

int
main(int argc, char **argv)
{
	const char *path = NETTCPD_DEFAULT_CONFIG;
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	int check_only = 0;
	int opt, status;

	while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check_only = 1;
			break;
		case 'V':
			printf("nettcpd %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	cfg = config_load(path, err, sizeof(err));
	/* Errors, or on success the warnings, one "FILE:LINE: ..." per line. */
	fputs(err, stderr);
	if (cfg == NULL)
		return EXIT_FAILURE;
	if (check_only) {
		printf("%s: configuration OK\n", path);
		config_free(cfg);
		return EXIT_SUCCESS;
	}

	log_open(cfg->log_target, cfg->log_level);
	status = run(cfg);
	log_close();
	config_free(cfg);
	return status;
}
