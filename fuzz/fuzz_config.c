/*
 * fuzz_config.c - the INI loader on arbitrary files.
 *
 * The input is the file.  It goes into one memfd, made once, and
 * config_load() reads it through /proc/self/fd/N, as it would any path.
 * Checked: a config that loads is complete and within its documented
 * bounds; one that does not comes with errors, each on its own line and
 * each naming the file, cut to the caller's buffer (exactly sized on the
 * heap, so AddressSanitizer sees one byte too many) and always ending in a
 * newline; one that loads leaves nothing there but warnings.  An odd-sized
 * input is loaded with a tiny error buffer, to exercise the cutting.
 *
 * Backends may be host names; getaddrinfo() is replaced below so that the
 * fuzzer never asks a resolver anything: "localhost" is 127.0.0.1 and every
 * other name is unknown.  A route's tls_cert and tls_key name files the
 * loader reads; an input naming anything under /dev, /proc, /sys or /run is
 * skipped, so that no run blocks on a FIFO or reads an endless device.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define ERR_BIG 8192
#define ERR_TINY 48
#define INPUT_MAX (256u * 1024u)

static int memfd = -1;
static char path[64];

int
getaddrinfo(const char *restrict node, const char *restrict service,
    const struct addrinfo *restrict hints, struct addrinfo **restrict res)
{
	struct {
		struct addrinfo ai;
		struct sockaddr_in sin;
	} *r;

	(void)service;
	(void)hints;
	if (node == NULL || strcmp(node, "localhost") != 0)
		return EAI_NONAME;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return EAI_MEMORY;
	r->sin.sin_family = AF_INET;
	r->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->ai.ai_family = AF_INET;
	r->ai.ai_socktype = SOCK_STREAM;
	r->ai.ai_addr = (struct sockaddr *)&r->sin;
	r->ai.ai_addrlen = sizeof(r->sin);
	*res = &r->ai;
	return 0;
}

void
freeaddrinfo(struct addrinfo *res)
{
	free(res);
}

static void
check_loaded(const struct config *cfg)
{
	FUZZ_CHECK(cfg->path != NULL && strcmp(cfg->path, path) == 0);
	FUZZ_CHECK(cfg->nlistens >= 1 && cfg->listens != NULL);
	for (size_t i = 0; i < cfg->nlistens; i++) {
		int family = cfg->listens[i].addr.ss.ss_family;

		FUZZ_CHECK(cfg->listens[i].text != NULL);
		FUZZ_CHECK(family == AF_INET || family == AF_INET6);
		FUZZ_CHECK(addr_port((const struct sockaddr *)&cfg->listens[i].addr.ss) != 0);
	}
	FUZZ_CHECK(cfg->preamble_timeout > 0.0 && cfg->preamble_timeout <= 86400.0);
	FUZZ_CHECK(cfg->connect_timeout > 0.0 && cfg->connect_timeout <= 86400.0);
	FUZZ_CHECK(cfg->max_connections >= 1 && cfg->max_connections <= 1000000u);
	FUZZ_CHECK(cfg->max_pending >= 1 && cfg->max_pending <= 1000000u);
	FUZZ_CHECK(cfg->forward == FORWARD_SPLICE || cfg->forward == FORWARD_COPY);
	FUZZ_CHECK(cfg->routes != NULL);
	for (size_t i = 0; i < routes_count(cfg->routes); i++) {
		const struct route *r = routes_get(cfg->routes, i);

		FUZZ_CHECK(r != NULL && r->name != NULL && r->name[0] != '\0');
		const struct backend_list *l = &r->backends;
		size_t primaries = 0;

		FUZZ_CHECK(r->backend_text != NULL);
		FUZZ_CHECK(l->n >= 1 && l->n <= BACKEND_MAX_MEMBERS);
		FUZZ_CHECK(l->fail_threshold >= 1 && l->fail_timeout > 0.0);
		for (size_t j = 0; j < l->n; j++) {
			FUZZ_CHECK(l->m[j].addr.ss.ss_family == AF_INET ||
			    l->m[j].addr.ss.ss_family == AF_INET6);
			FUZZ_CHECK(l->m[j].weight >= 1 &&
			    l->m[j].weight <= BACKEND_MAX_WEIGHT);
			primaries += !l->m[j].backup;
		}
		FUZZ_CHECK(primaries >= 1);
	}
}

/* Lines of "PATH:LINE: text" or "PATH: text"; only warnings if loaded. */
static void
check_messages(const char *err, size_t errlen, int loaded)
{
	size_t len = strlen(err), plen = strlen(path);

	FUZZ_CHECK(len < errlen);
	if (len == 0) {
		FUZZ_CHECK(loaded);
		return;
	}
	FUZZ_CHECK(err[len - 1] == '\n');
	if (errlen < ERR_BIG)
		return;
	for (const char *line = err; *line != '\0'; line = strchr(line, '\n') + 1) {
		const char *text;

		/* a full buffer ends in a cut line, which may cut the path too */
		if (len == errlen - 1 && strchr(line, '\n') == err + len - 1)
			break;
		FUZZ_CHECK(strncmp(line, path, plen) == 0 && line[plen] == ':');
		text = line + plen + 1;
		while (*text >= '0' && *text <= '9')
			text++;
		if (*text == ':')
			text++;
		if (loaded)
			FUZZ_CHECK(strncmp(text, " warning: ", 10) == 0);
	}
}

static int
names_special_files(const uint8_t *data, size_t size)
{
	static const char *const dirs[] = { "/dev", "/proc", "/sys", "/run" };

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (memmem(data, size, dirs[i], strlen(dirs[i])) != NULL)
			return 1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg;
	size_t errlen = (size & 1) ? ERR_TINY : ERR_BIG;
	char *err;

	if (size > INPUT_MAX || names_special_files(data, size))
		return 0;
	if (memfd < 0) {
		memfd = memfd_create("fuzz_config.ini", MFD_CLOEXEC);
		FUZZ_CHECK(memfd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	FUZZ_CHECK(ftruncate(memfd, 0) == 0);
	FUZZ_CHECK(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);

	err = malloc(errlen);
	FUZZ_CHECK(err != NULL);
	cfg = config_load(path, err, errlen);
	check_messages(err, errlen, cfg != NULL);
	if (cfg != NULL) {
		check_loaded(cfg);
		config_free(cfg);
	}
	free(err);
	return 0;
}
