/*
 * probe.c - nettcp-probe: one empty net.tcp session against any endpoint
 * (nettcpd, a WCF service, Windows' port sharing service), to see what a
 * client of a Via gets.
 *
 * It connects, sends a preamble (Version 1.0, the mode, the Via, the binary
 * session encoding, Preamble End) and reads the answer: a Preamble Ack
 * means the Via was routed and the service took the session, which the
 * probe then ends as WCF does (End, the service's End, FIN, the service's
 * close); a Fault record is printed by its name.  Every step prints its
 * time, and the exit status says which outcome it was (nettcp-probe(1)).
 * The framing comes from nmf.c and the address from addr.c, as in the
 * daemon; nothing here is shared with it beyond those.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "nmf.h"

/* Exit statuses, one per outcome (nettcp-probe(1) lists them). */
enum probe_exit {
	PROBE_ACKED = 0,        /* routed and acknowledged, session ended */
	PROBE_USAGE = 1,
	PROBE_FAULT = 2,        /* a Fault record instead of the Ack */
	PROBE_CONNECT = 3,      /* no connection: refused, unreachable, ... */
	PROBE_TIMEOUT = 4,      /* no answer, or no End or close, in time */
	PROBE_PROTOCOL = 5,     /* bytes that are no answer, a close or a reset */
};

#define PROBE_DEFAULT_PORT "808"         /* net.tcp's, when a URI names none */
#define PROBE_DEFAULT_TIMEOUT 10.0
#define PROBE_TIMEOUT_MAX 3600.0
/* A fault URI longer than this is not one: real ones are under 128 bytes. */
#define PROBE_FAULT_URI_MAX 2048u
#define PROBE_HOSTPORT_MAX 300u

struct probe {
	struct addr addr;
	char where[ADDR_TEXT_MAX];       /* the address, as printed */
	const char *via;
	char via_buf[NMF_MAX_VIA + 1];   /* the Via a host:port target implies */
	uint8_t mode;
	double timeout;                  /* seconds, for the whole probe */
	double deadline;                 /* monotonic seconds */
	int fd;
	uint8_t in[4096];                /* bytes read and not yet looked at */
	size_t in_len, in_off;
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
ms_since(double start)
{
	return (now() - start) * 1000.0;
}

/*
 * Split a target into the address to connect to and, for a URI, the Via:
 * "HOST:PORT", "[V6]:PORT", "unix:/PATH" (with -v), or
 * "net.tcp://HOST[:PORT]/PATH" (port 808 if none).  Returns 0, or -1 with a reason in err.
 */
static int
probe_target(struct probe *p, const char *text, char *err, size_t errlen)
{
	static const char scheme[] = "net.tcp://";
	char hostport[PROBE_HOSTPORT_MAX];
	const char *authority, *end, *bracket;
	size_t len;
	int has_port;

	if (strncasecmp(text, scheme, sizeof(scheme) - 1) != 0) {
		if (addr_parse(text, ADDR_RESOLVE | ADDR_UNIX, &p->addr, err,
		    errlen) < 0)
			return -1;
		/* A socket file implies no host a Via could name. */
		if (p->via == NULL && p->addr.ss.ss_family == AF_UNIX) {
			snprintf(err, errlen, "a unix: target needs -v VIA");
			return -1;
		}
		if (p->via == NULL) {
			snprintf(p->via_buf, sizeof(p->via_buf), "net.tcp://%s/", text);
			p->via = p->via_buf;
		}
		return 0;
	}
	authority = text + sizeof(scheme) - 1;
	end = authority + strcspn(authority, "/?#");
	len = (size_t)(end - authority);
	bracket = memchr(authority, ']', len);
	has_port = authority[0] == '[' ? bracket != NULL && bracket + 1 < end && bracket[1] == ':'
	    : memchr(authority, ':', len) != NULL;
	if (len == 0 || len + sizeof(":" PROBE_DEFAULT_PORT) > sizeof(hostport)) {
		snprintf(err, errlen, "no host, or a host too long, in '%s'", text);
		return -1;
	}
	snprintf(hostport, sizeof(hostport), "%.*s%s", (int)len, authority,
	    has_port ? "" : ":" PROBE_DEFAULT_PORT);
	if (addr_parse(hostport, ADDR_RESOLVE, &p->addr, err, errlen) < 0)
		return -1;
	if (p->via == NULL)
		p->via = text;
	return 0;
}

/* Wait until fd is ready for events or the deadline passes: 1 ready,
 * 0 timed out, -1 with errno. */
static int
probe_wait(struct probe *p, short events)
{
	struct pollfd pfd = { .fd = p->fd, .events = events };
	int rc;

	do {
		double left = p->deadline - now();

		if (left <= 0)
			return 0;
		rc = poll(&pfd, 1, (int)(left * 1000.0) + 1);
	} while (rc < 0 && errno == EINTR);
	return rc;
}

/* Connect before the deadline; returns 0 (PROBE_ACKED) when connected. */
static enum probe_exit
probe_connect(struct probe *p)
{
	double start = now();
	socklen_t len = sizeof(int);
	int rc, soerr = 0;

	p->fd = socket(p->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		printf("cannot connect to %s: socket: %s\n", p->where, strerror(errno));
		return PROBE_CONNECT;
	}
	if (connect(p->fd, (struct sockaddr *)&p->addr.ss, p->addr.len) < 0) {
		if (errno != EINPROGRESS) {
			printf("cannot connect to %s: %s\n", p->where, strerror(errno));
			return PROBE_CONNECT;
		}
		rc = probe_wait(p, POLLOUT);
		if (rc == 0) {
			printf("cannot connect to %s: no answer within %g s (timeout)\n",
			    p->where, p->timeout);
			return PROBE_TIMEOUT;
		}
		if (rc < 0 || getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr != 0) {
			printf("cannot connect to %s: %s\n", p->where, strerror(soerr));
			return PROBE_CONNECT;
		}
	}
	printf("connected to %s in %.2f ms\n", p->where, ms_since(start));
	return PROBE_ACKED;
}

/* Send all of buf before the deadline.  Returns 0, or -1 with errno
 * (ETIMEDOUT when the deadline passed). */
static int
probe_send(struct probe *p, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		int rc;

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if ((rc = probe_wait(p, POLLOUT)) <= 0) {
			if (rc == 0)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

/*
 * The next byte from the server.  Returns 1 with *b, 0 at the server's
 * close, -1 with errno on a reset or another error, and -1 with ETIMEDOUT
 * when the deadline passed.
 */
static int
probe_byte(struct probe *p, uint8_t *b)
{
	while (p->in_off == p->in_len) {
		ssize_t n = recv(p->fd, p->in, sizeof(p->in), 0);
		int rc;

		if (n > 0) {
			p->in_len = (size_t)n;
			p->in_off = 0;
			break;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if ((rc = probe_wait(p, POLLIN)) <= 0) {
			if (rc == 0)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	*b = p->in[p->in_off++];
	return 1;
}

/* Say why probe_byte() gave no byte while `what` was awaited, and which
 * outcome that is. */
static enum probe_exit
probe_no_byte(struct probe *p, int rc, const char *what)
{
	if (rc == 0) {
		printf("protocol error: the server closed the connection instead of sending %s\n",
		    what);
		return PROBE_PROTOCOL;
	}
	if (errno == ETIMEDOUT) {
		printf("timeout: no %s within %g s\n", what, p->timeout);
		return PROBE_TIMEOUT;
	}
	printf("protocol error: %s instead of %s\n",
	    errno == ECONNRESET ? "a reset" : strerror(errno), what);
	return PROBE_PROTOCOL;
}

/* Say why what could not be sent, and which outcome that is. */
static enum probe_exit
probe_not_sent(struct probe *p, const char *what)
{
	if (errno == ETIMEDOUT) {
		printf("timeout: %s not sent within %g s\n", what, p->timeout);
		return PROBE_TIMEOUT;
	}
	printf("protocol error: sending %s: %s\n", what, strerror(errno));
	return PROBE_PROTOCOL;
}

/* Print a server's text with everything but printable ASCII escaped. */
static void
print_escaped(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
			putchar(s[i]);
		else
			printf("\\x%02x", s[i]);
	}
}

/* A Fault record's size and URI, its type byte read; prints the fault's
 * name, the last segment of a framing fault URI, or the whole URI. */
static enum probe_exit
probe_fault(struct probe *p, double start)
{
	static const char prefix[] = NMF_FAULT_URI_PREFIX;
	uint8_t size[NMF_MBINT_MAX_BYTES];
	uint8_t uri[PROBE_FAULT_URI_MAX];
	uint32_t uri_len = 0;
	size_t got = 0;
	int used = 0, rc;

	while (used == 0) {
		if ((rc = probe_byte(p, &size[got])) <= 0)
			return probe_no_byte(p, rc, "the rest of the Fault record");
		got++;
		used = nmf_mbint_decode(size, got, &uri_len);
		if (used < 0) {
			printf("protocol error: a Fault record with an invalid size\n");
			return PROBE_PROTOCOL;
		}
	}
	if (uri_len > sizeof(uri)) {
		printf("protocol error: a Fault record of %u bytes (at most %u expected)\n",
		    uri_len, PROBE_FAULT_URI_MAX);
		return PROBE_PROTOCOL;
	}
	for (got = 0; got < uri_len; got++)
		if ((rc = probe_byte(p, &uri[got])) <= 0)
			return probe_no_byte(p, rc, "the rest of the Fault record");
	fputs("fault: ", stdout);
	if (uri_len > sizeof(prefix) - 1 && memcmp(uri, prefix, sizeof(prefix) - 1) == 0)
		print_escaped(uri + sizeof(prefix) - 1, uri_len - (sizeof(prefix) - 1));
	else
		print_escaped(uri, uri_len);
	printf(" in %.2f ms\n", ms_since(start));
	return PROBE_FAULT;
}

/* End the acknowledged session as WCF does: End, the service's End, then
 * our FIN and its close. */
static enum probe_exit
probe_end(struct probe *p)
{
	static const uint8_t end = NMF_REC_END;
	double start = now(), answered;
	uint8_t b;
	int rc;

	if (probe_send(p, &end, 1) < 0)
		return probe_not_sent(p, "End");
	if ((rc = probe_byte(p, &b)) <= 0)
		return probe_no_byte(p, rc, "End from the service");
	if (b != NMF_REC_END) {
		printf("protocol error: 0x%02x from the service where its End was expected\n", b);
		return PROBE_PROTOCOL;
	}
	answered = ms_since(start);
	start = now();
	shutdown(p->fd, SHUT_WR);
	if ((rc = probe_byte(p, &b)) != 0) {
		if (rc > 0) {
			printf("protocol error: 0x%02x from the service after its End\n", b);
			return PROBE_PROTOCOL;
		}
		return probe_no_byte(p, rc, "close from the service after its End");
	}
	printf("session ended: End answered in %.2f ms, connection closed in %.2f ms\n",
	    answered, ms_since(start));
	return PROBE_ACKED;
}

static enum probe_exit
probe_run(struct probe *p)
{
	uint8_t preamble[NMF_PREAMBLE_MAX];
	enum probe_exit rc;
	double start;
	uint8_t b;
	int got;

	p->deadline = now() + p->timeout;
	if ((rc = probe_connect(p)) != PROBE_ACKED)
		return rc;
	start = now();
	if (probe_send(p, preamble, nmf_preamble_write(preamble, p->mode,
	    p->via, strlen(p->via))) < 0)
		return probe_not_sent(p, "the preamble");
	printf("sent a preamble for %s\n", p->via);
	if ((got = probe_byte(p, &b)) <= 0)
		return probe_no_byte(p, got, "answer to the preamble");
	if (b == NMF_REC_FAULT)
		return probe_fault(p, start);
	if (b != NMF_REC_PREAMBLE_ACK) {
		printf("protocol error: 0x%02x where a Preamble Ack or a Fault was expected\n", b);
		return PROBE_PROTOCOL;
	}
	printf("routed and acknowledged in %.2f ms\n", ms_since(start));
	/* Only a duplex session is ended by an End exchange with nothing in
	 * it; for other modes the Ack is all the probe asks. */
	if (p->mode != NMF_MODE_DUPLEX)
		return PROBE_ACKED;
	return probe_end(p);
}

static int
parse_mode(const char *text, uint8_t *mode)
{
	static const struct {
		const char *name;
		uint8_t mode;
	} modes[] = {
		{ "singleton", NMF_MODE_SINGLETON_UNSIZED },
		{ "duplex", NMF_MODE_DUPLEX },
		{ "simplex", NMF_MODE_SIMPLEX },
		{ "singleton-sized", NMF_MODE_SINGLETON_SIZED },
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(text, modes[i].name) == 0) {
			*mode = modes[i].mode;
			return 0;
		}
	}
	return -1;
}

static void
usage(FILE *out)
{
	fputs("usage: nettcp-probe [-v VIA] [-m MODE] [-t SECONDS] TARGET\n"
	    "  TARGET          net.tcp://HOST[:PORT]/PATH (also the Via), or HOST:PORT\n"
	    "  -v, --via VIA   the Via to send (default: the URI, or net.tcp://HOST:PORT/)\n"
	    "  -m, --mode MODE duplex (default), singleton, simplex or singleton-sized\n"
	    "  -t, --timeout S seconds for the whole probe (default 10)\n"
	    "Exit status: 0 acknowledged, 1 usage, 2 fault, 3 connect failure,\n"
	    "4 timeout, 5 protocol error.\n", out);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "via", required_argument, NULL, 'v' },
		{ "mode", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct probe p = { .mode = NMF_MODE_DUPLEX, .timeout = PROBE_DEFAULT_TIMEOUT,
	    .fd = -1 };
	char err[256], *end;
	enum probe_exit rc;
	int opt;

	while ((opt = getopt_long(argc, argv, "v:m:t:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			p.via = optarg;
			break;
		case 'm':
			if (parse_mode(optarg, &p.mode) < 0) {
				fprintf(stderr, "nettcp-probe: unknown mode '%s'\n", optarg);
				return PROBE_USAGE;
			}
			break;
		case 't':
			p.timeout = strtod(optarg, &end);
			if (end == optarg || *end != '\0' ||
			    !(p.timeout > 0 && p.timeout <= PROBE_TIMEOUT_MAX)) {
				fprintf(stderr, "nettcp-probe: bad timeout '%s' (seconds, "
				    "above 0, at most %g)\n", optarg, PROBE_TIMEOUT_MAX);
				return PROBE_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return PROBE_ACKED;
		case 'V':
			printf("nettcp-probe %s\n", PACKAGE_VERSION);
			return PROBE_ACKED;
		default:
			usage(stderr);
			return PROBE_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return PROBE_USAGE;
	}
	if (probe_target(&p, argv[optind], err, sizeof(err)) < 0) {
		fprintf(stderr, "nettcp-probe: %s: %s\n", argv[optind], err);
		return PROBE_USAGE;
	}
	if (p.via[0] == '\0' || strlen(p.via) > NMF_MAX_VIA) {
		fprintf(stderr, "nettcp-probe: the Via must have 1 to %u bytes\n", NMF_MAX_VIA);
		return PROBE_USAGE;
	}
	addr_format((struct sockaddr *)&p.addr.ss, p.where, sizeof(p.where));
	rc = probe_run(&p);
	if (p.fd >= 0)
		close(p.fd);
	return rc;
}
