/*
 * whoami_handoff.c - nettcp-whoami behind nettcpd: register a Via prefix
 * for handoff with libnettcpshare and serve each client socket nettcpd
 * passes over, starting from the preamble bytes nettcpd read from it.
 *
 * A struct nts is for one thread at a time, and both the accept loop and
 * the connections (VALIDATE for a pooled connection's next session) use
 * it: a mutex guards it.  The accept loop holds it only while it takes
 * what is there (the control socket is non-blocking) and waits outside
 * it; a connection that asked VALIDATE wakes the loop, since the handoffs
 * that came before the answer are queued inside the library, where poll()
 * cannot see them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <nettcpshare.h>

#include "whoami.h"

static struct nts *nts;
static uint64_t reg_id;
static pthread_mutex_t nts_lock = PTHREAD_MUTEX_INITIALIZER;
static int wake[2] = { -1, -1 };  /* a connection that used nts -> the accept loop */

/* whoami_validate_fn for handed-off connections. */
static int
handoff_validate(const char *via)
{
	int rc;

	pthread_mutex_lock(&nts_lock);
	rc = nts ? nts_validate(nts, reg_id, via) : -1;
	if (rc < 0 && nts)
		fprintf(stderr, "%s: VALIDATE %s: %s\n", whoami_name, via, nts_error(nts));
	pthread_mutex_unlock(&nts_lock);
	(void)!write(wake[1], "", 1);  /* full pipe: the loop is awake already */
	return rc;
}

/* Take every client queued now, while there is room for them.  Returns 0
 * when there are no more (or no room), or the exit status when the
 * registration ended. */
static int
handoff_take(void)
{
	while (whoami_slot_free()) {
		size_t cap = NTS_PREAMBLE_MAX, n = 0;
		uint8_t *buf = malloc(cap);
		uint64_t matched;
		int fd, rc;

		if (buf == NULL)
			return 1;
		rc = nts_accept(nts, &fd, buf, cap, &n, &matched);
		if (rc < 0 && errno == EMSGSIZE) {  /* still queued: room, then again */
			uint8_t *grown = realloc(buf, n);

			rc = grown ? nts_accept(nts, &fd, grown, n, &n, &matched) : -1;
			buf = grown ? grown : buf;
		}
		if (rc == 0) {
			/* nettcpd's copy was non-blocking; this service blocks */
			(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
			whoami_start(fd, buf, n, handoff_validate);
			continue;
		}
		free(buf);
		if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (rc == NTS_REVOKED)
			fprintf(stderr, "%s: nettcpd revoked registration %" PRIu64 "\n", whoami_name, reg_id);
		else
			fprintf(stderr, "%s: control connection: %s\n", whoami_name, nts_error(nts));
		return 1;
	}
	return 0;
}

int
whoami_handoff_run(const char *control, const char *via)
{
	char err[256];
	int rc = 1;

	nts = nts_open(control, err, sizeof(err));
	if (nts == NULL) {
		fprintf(stderr, "%s: %s: %s\n", whoami_name, control, err);
		return 1;
	}
	if (nts_register_handoff(nts, via, &reg_id) < 0) {
		fprintf(stderr, "%s: register %s: %s\n", whoami_name, via, nts_error(nts));
		goto out;
	}
	if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) < 0 ||
	    fcntl(nts_fd(nts), F_SETFL, fcntl(nts_fd(nts), F_GETFL) | O_NONBLOCK) < 0) {
		perror(whoami_name);
		goto out;
	}
	printf("LISTENING handoff %s registration %" PRIu64 "\n", via, reg_id);
	fflush(stdout);
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = nts_fd(nts), .events = POLLIN },
			{ .fd = wake[0], .events = POLLIN },
		};
		char drain[64];

		/* full: the clients wait in nettcpd, which gives them
		 * EndpointUnavailable past its handoff limits */
		whoami_wait_slot();
		pthread_mutex_lock(&nts_lock);
		rc = handoff_take();
		pthread_mutex_unlock(&nts_lock);
		if (rc != 0)
			break;
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			perror(whoami_name);
			rc = 1;
			break;
		}
		while (read(wake[0], drain, sizeof(drain)) > 0)
			;
	}
out:
	/* The connections being served end with the process. */
	pthread_mutex_lock(&nts_lock);
	nts_close(nts);
	nts = NULL;
	pthread_mutex_unlock(&nts_lock);
	return rc;
}
