/*
 * nts_accept.c - a test service built against libnettcpshare the way a
 * user builds one (cc $(pkg-config --cflags --libs nettcpshare)): it
 * registers a Via prefix for handoff, answers VALIDATE questions, and
 * takes COUNT clients, printing each one's bytes in hex, then acks its
 * preamble (0B) and echoes what the client sends until it closes.
 *
 *   nts_accept SOCKET VIA COUNT [VALIDATE-VIA...]
 *
 * Prints "registered ID", "validate VIA yes|no", "client ID HEX",
 * "revoked ID WHY", "refused ERROR", one line each, flushed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nettcpshare.h>

static int
echo(int fd)
{
	char buf[65536];
	ssize_t n;

	/* The socket comes in the mode nettcpd had it in (non-blocking):
	 * this service blocks. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 ||
	    write(fd, "\x0b", 1) != 1)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		ssize_t off = 0, w;

		for (; off < n; off += w)
			if ((w = write(fd, buf + off, (size_t)(n - off))) < 0)
				return -1;
	}
	return n < 0 ? -1 : 0;
}

int
main(int argc, char **argv)
{
	unsigned char pre[NTS_PREAMBLE_MAX];
	char err[512];
	struct nts *nts;
	uint64_t reg, id;
	long count, taken = 0;
	int i, fd, r, status = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: nts_accept SOCKET VIA COUNT "
		    "[VALIDATE-VIA...]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	count = strtol(argv[3], NULL, 10);
	nts = nts_open(argv[1], err, sizeof(err));
	if (nts == NULL) {
		printf("refused %s\n", err);
		return 1;
	}
	if (nts_register_handoff(nts, argv[2], &reg) < 0) {
		printf("refused %s\n", nts_error(nts));
		goto out;
	}
	printf("registered %llu\n", (unsigned long long)reg);
	for (i = 4; i < argc; i++) {
		r = nts_validate(nts, reg, argv[i]);
		if (r < 0) {
			printf("refused %s\n", nts_error(nts));
			goto out;
		}
		printf("validate %s %s\n", argv[i], r ? "yes" : "no");
	}
	while (taken < count) {
		size_t n, k;

		r = nts_accept(nts, &fd, pre, sizeof(pre), &n, &id);
		if (r == NTS_REVOKED) {
			while (nts_revoked(nts, &id, err, sizeof(err)) == 1)
				printf("revoked %llu %s\n",
				    (unsigned long long)id, err);
			continue;
		}
		if (r < 0) {
			printf("refused %s\n", nts_error(nts));
			goto out;
		}
		printf("client %llu ", (unsigned long long)id);
		for (k = 0; k < n; k++)
			printf("%02x", pre[k]);
		printf("\n");
		r = echo(fd);
		close(fd);
		if (r < 0)
			goto out;
		taken++;
	}
	status = 0;
out:
	nts_close(nts);
	return status;
}
