/*
 * whoami.c - nettcp-whoami, an example net.tcp service in C: it serves the
 * IWhoAmI contract of nettcpd's interop tests (Hello, RoundTrip) to the
 * real WCF client, NetTcpBinding without security.
 *
 *   nettcp-whoami [OPTIONS] --listen HOST:PORT
 *       accepts its clients itself, like any net.tcp service;
 *   nettcp-whoami [OPTIONS] --control PATH --via PREFIX
 *       registers PREFIX with nettcpd's control socket for handoff and
 *       serves each client connection nettcpd passes it (whoami_handoff.c).
 *
 * OPTIONS: --name NAME (in every Hello reply), --max-connections N (served
 * at once; the next client waits for one to end), --verbose.
 *
 * One thread per connection (whoami_conn.c).  Prints "LISTENING ..." on
 * stdout once clients can come; runs until killed.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "whoami.h"

const char *whoami_name = "whoami";
int whoami_verbose;

/* Connections being served, at most max_connections: past that, no client
 * is taken until one ends (the kernel's backlog, or nettcpd's handoff
 * limits, which answer EndpointUnavailable, hold the rest). */
static unsigned active, max_connections = 1024;
static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t active_fell = PTHREAD_COND_INITIALIZER;

static _Noreturn void
usage(void)
{
	fprintf(stderr, "usage: nettcp-whoami [OPTIONS] --listen HOST:PORT\n"
	    "       nettcp-whoami [OPTIONS] --control PATH --via PREFIX\n"
	    "options: --name NAME (whoami), --max-connections N (1024), --verbose\n");
	exit(2);
}

int
whoami_slot_free(void)
{
	int free_slot;

	pthread_mutex_lock(&active_lock);
	free_slot = active < max_connections;
	pthread_mutex_unlock(&active_lock);
	return free_slot;
}

void
whoami_wait_slot(void)
{
	pthread_mutex_lock(&active_lock);
	while (active >= max_connections)
		pthread_cond_wait(&active_fell, &active_lock);
	pthread_mutex_unlock(&active_lock);
}

static void
count_connection(int delta)
{
	pthread_mutex_lock(&active_lock);
	active += (unsigned)delta;
	pthread_cond_signal(&active_fell);
	pthread_mutex_unlock(&active_lock);
}

static void *
conn_thread(void *a)
{
	whoami_conn_serve(a);
	count_connection(-1);
	return NULL;
}

int
whoami_start(int fd, uint8_t *bytes, size_t nbytes, whoami_validate_fn validate)
{
	struct whoami_conn_args *a = malloc(sizeof(*a));
	pthread_attr_t attr;
	pthread_t t;
	int rc = -1;

	if (a == NULL)
		goto fail;
	*a = (struct whoami_conn_args){ fd, bytes, nbytes, validate };
	if (pthread_attr_init(&attr) != 0)
		goto fail;
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	count_connection(1);
	rc = pthread_create(&t, &attr, conn_thread, a);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	count_connection(-1);
fail:
	fprintf(stderr, "%s: no thread for a connection, closing it\n", whoami_name);
	close(fd);
	free(bytes);
	free(a);
	return -1;
}

static int
run_listen(const char *where)
{
	struct addr a;
	char err[256], text[ADDR_TEXT_MAX];
	int one = 1, fd;

	if (addr_parse(where, ADDR_RESOLVE, &a, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: --listen %s: %s\n", whoami_name, where, err);
		return 2;
	}
	fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 || listen(fd, SOMAXCONN) < 0) {
		fprintf(stderr, "%s: --listen %s: %s\n", whoami_name, where, strerror(errno));
		return 1;
	}
	printf("LISTENING %s\n", addr_format((struct sockaddr *)&a.ss, text, sizeof(text)));
	fflush(stdout);
	for (;;) {
		int c;

		whoami_wait_slot();
		c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

		if (c >= 0)
			whoami_start(c, NULL, 0, NULL);
		else if (errno != EINTR && errno != ECONNABORTED)
			sleep(1);  /* EMFILE and the like: let connections end */
	}
}

int
main(int argc, char **argv)
{
	const char *listen_at = NULL, *control = NULL, *via = NULL;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--verbose") == 0) {
			whoami_verbose = 1;
			continue;
		}
		if (i + 1 == argc)
			usage();
		if (strcmp(argv[i], "--name") == 0)
			whoami_name = argv[++i];
		else if (strcmp(argv[i], "--listen") == 0)
			listen_at = argv[++i];
		else if (strcmp(argv[i], "--control") == 0)
			control = argv[++i];
		else if (strcmp(argv[i], "--via") == 0)
			via = argv[++i];
		else if (strcmp(argv[i], "--max-connections") == 0)
			max_connections = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			usage();
	}
	if (max_connections == 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (listen_at != NULL && control == NULL && via == NULL)
		return run_listen(listen_at);
	if (listen_at == NULL && control != NULL && via != NULL)
		return whoami_handoff_run(control, via);
	usage();
}
