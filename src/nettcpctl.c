/*
 * nettcpctl.c - nettcpctl: register Via prefixes with a running nettcpd
 * for as long as a command runs, and show its routes and counters
 * (nettcpctl(1)).  Everything it says to the daemon goes through
 * libnettcpshare, as a service's own code would.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ini.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nettcpshare.h"

/* Exit statuses of nettcpctl itself (nettcpctl(1)); register otherwise
 * exits with its command's. */
enum ctl_exit {
	CTL_OK = 0,
	CTL_REFUSED = 1,        /* the daemon refused a request */
	CTL_USAGE = 2,
	CTL_UNREACHABLE = 3,    /* no control socket, no answer, bad config */
	CTL_EXEC = 127,         /* the command could not be run */
};

#define CTL_MAX_PAIRS 64        /* as control_max_registrations' default */
#define CTL_PATH_MAX 4096

struct ctl_pair {
	const char *via, *backend;
	uint64_t reg_id;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: nettcpctl [-s SOCKET | -c CONFIG] register --via URI "
	    "--backend ADDR\n"
	    "                 [--via URI --backend ADDR ...] -- COMMAND "
	    "[ARG...]\n"
	    "       nettcpctl [-s SOCKET | -c CONFIG] list | stats\n"
	    "       nettcpctl --version | -h | --help\n"
	    "  -s SOCKET  the control socket\n"
	    "  -c CONFIG  read it from CONFIG's [global] control key\n"
	    "  (neither: %s)\n"
	    "  register   hold the registrations while COMMAND runs; exit "
	    "with its status\n"
	    "  list       routes, static and registered\n"
	    "  stats      the daemon's counters\n",
	    NTS_DEFAULT_CONTROL);
}

struct ctl_ini {
	char control[CTL_PATH_MAX];
	int found;
};

static int
ctl_ini_key(void *user, const char *section, const char *name,
    const char *value)
{
	struct ctl_ini *ci = user;

	if (strcmp(section, "global") == 0 && strcmp(name, "control") == 0) {
		snprintf(ci->control, sizeof(ci->control), "%s", value);
		ci->found = 1;
	}
	return 1;
}

/*
 * The control socket: -s, else CONFIG's [global] control, else the
 * default.  Returns 0, or -1 after saying why (a CONFIG that cannot be
 * read, or sets no control socket).
 */
static int
ctl_socket_path(const char *sock, const char *config, char *out,
    size_t outlen)
{
	struct ctl_ini ci = { .found = 0 };
	int line;

	if (sock != NULL) {
		snprintf(out, outlen, "%s", sock);
		return 0;
	}
	if (config == NULL) {
		snprintf(out, outlen, "%s", NTS_DEFAULT_CONTROL);
		return 0;
	}
	line = ini_parse(config, ctl_ini_key, &ci);
	if (line < 0) {
		fprintf(stderr, "nettcpctl: %s: %s\n", config, strerror(errno));
		return -1;
	}
	if (line > 0) {
		fprintf(stderr, "nettcpctl: %s:%d: cannot parse this line\n",
		    config, line);
		return -1;
	}
	if (!ci.found || ci.control[0] == '\0') {
		fprintf(stderr, "nettcpctl: %s: no control socket ([global] "
		    "control is not set)\n", config);
		return -1;
	}
	snprintf(out, outlen, "%s", ci.control);
	return 0;
}

static int
ctl_print_route(const struct nts_route *r, void *arg)
{
	char uid[24] = "-", pid[24] = "-";

	(void)arg;
	if (r->uid >= 0)
		snprintf(uid, sizeof(uid), "%lld", r->uid);
	if (r->pid >= 0)
		snprintf(pid, sizeof(pid), "%lld", r->pid);
	printf("%-7s  %-16s  %-40s  %-24s  %6s  %7s  %8llu\n", r->kind, r->name,
	    r->via, r->target, uid, pid, r->sessions);
	return 0;
}

static int
ctl_print_stat(const char *name, const char *value, void *arg)
{
	(void)arg;
	printf("%s %s\n", name, value);
	return 0;
}

static int
ctl_list(struct nts *nts, int stats)
{
	int n;

	if (!stats)
		printf("%-7s  %-16s  %-40s  %-24s  %6s  %7s  %8s\n", "KIND",
		    "NAME", "VIA", "TARGET", "UID", "PID", "SESSIONS");
	n = stats ? nts_stats(nts, ctl_print_stat, NULL) :
	    nts_list(nts, ctl_print_route, NULL);
	if (n < 0) {
		fprintf(stderr, "nettcpctl: %s: %s\n", stats ? "stats" : "list",
		    nts_error(nts));
		return errno == ECONNRESET || errno == ETIMEDOUT ||
		    errno == EPROTO ? CTL_UNREACHABLE : CTL_REFUSED;
	}
	return CTL_OK;
}

/* The signals nettcpctl passes on to its command. */
static const int ctl_forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT,
	SIGUSR1, SIGUSR2 };

/*
 * Run argv with the registrations held: forward signals to it, report a
 * revocation or the daemon's close on stderr (the command keeps running:
 * what it serves is up to it), and return its status (128 + the signal
 * that killed it).
 */
static int
ctl_run(struct nts *nts, char **argv)
{
	sigset_t mask, old;
	struct pollfd p[2];
	pid_t child;
	size_t i;
	int status = CTL_EXEC, sfd = -1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	for (i = 0; i < sizeof(ctl_forwarded) / sizeof(ctl_forwarded[0]); i++)
		sigaddset(&mask, ctl_forwarded[i]);
	if (sigprocmask(SIG_BLOCK, &mask, &old) < 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		fprintf(stderr, "nettcpctl: signalfd: %s\n", strerror(errno));
		goto out;
	}
	child = fork();
	if (child < 0) {
		fprintf(stderr, "nettcpctl: fork: %s\n", strerror(errno));
		goto out;
	}
	if (child == 0) {
		/* The control socket and the signalfd are close-on-exec:
		 * the command holds neither. */
		sigprocmask(SIG_SETMASK, &old, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "nettcpctl: %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? CTL_EXEC : 126);
	}
	fcntl(nts_fd(nts), F_SETFL, fcntl(nts_fd(nts), F_GETFL) | O_NONBLOCK);
	p[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = nts_fd(nts), .events = POLLIN };
	for (;;) {
		struct signalfd_siginfo si;
		int wstatus;

		if (poll(p, p[1].fd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "nettcpctl: poll: %s\n", strerror(errno));
			break;
		}
		if (p[1].fd >= 0 && p[1].revents != 0) {
			uint64_t reg_id;
			char why[512];
			size_t n;
			int fd, r;

			r = nts_accept(nts, &fd, why, sizeof(why), &n, &reg_id);
			if (r == NTS_REVOKED) {
				while (nts_revoked(nts, &reg_id, why, sizeof(why)) == 1)
					fprintf(stderr, "nettcpctl: nettcpd revoked "
					    "registration %llu: %s\n",
					    (unsigned long long)reg_id, why);
			} else if (r == 0) {
				/* Only a handoff registration gets clients,
				 * and nettcpctl makes none. */
				close(fd);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				fprintf(stderr, "nettcpctl: %s; the registrations "
				    "are gone, %s keeps running\n",
				    nts_error(nts), argv[0]);
				p[1].fd = -1;
			}
		}
		if ((p[0].revents & POLLIN) == 0 ||
		    read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD) {
			kill(child, (int)si.ssi_signo);
			continue;
		}
		if (waitpid(child, &wstatus, WNOHANG) != child)
			continue;
		status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) :
		    128 + WTERMSIG(wstatus);
		break;
	}
out:
	if (sfd >= 0)
		close(sfd);
	return status;
}

static int
ctl_register(struct nts *nts, struct ctl_pair *pairs, size_t npairs,
    char **argv)
{
	size_t i;

	for (i = 0; i < npairs; i++) {
		if (nts_register_proxy(nts, pairs[i].via, pairs[i].backend,
		    &pairs[i].reg_id) < 0) {
			fprintf(stderr, "nettcpctl: register %s: %s\n",
			    pairs[i].via, nts_error(nts));
			return errno == ECONNRESET || errno == ETIMEDOUT ||
			    errno == EPROTO ? CTL_UNREACHABLE : CTL_REFUSED;
		}
	}
	return ctl_run(nts, argv);
}

int
main(int argc, char **argv)
{
	enum { OPT_VERSION = 256, OPT_VIA, OPT_BACKEND };
	static const struct option longopts[] = {
		{ "via", required_argument, NULL, OPT_VIA },
		{ "backend", required_argument, NULL, OPT_BACKEND },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_pair pairs[CTL_MAX_PAIRS];
	size_t nvia = 0, nbackend = 0;
	const char *sock = NULL, *config = NULL, *cmd;
	char path[CTL_PATH_MAX], err[512];
	struct nts *nts;
	int opt, status;

	/* Options stop at the command word; register's own follow it. */
	while ((opt = getopt_long(argc, argv, "+s:c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'h':
			usage(stdout);
			return CTL_OK;
		case OPT_VERSION:
			printf("nettcpctl %s\n", PACKAGE_VERSION);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_USAGE;
		}
	}
	if (optind >= argc || (sock != NULL && config != NULL)) {
		usage(stderr);
		return CTL_USAGE;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "register") == 0) {
		optind++;
		while ((opt = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
			if (opt == OPT_VIA && nvia < CTL_MAX_PAIRS &&
			    nvia == nbackend) {
				pairs[nvia++].via = optarg;
			} else if (opt == OPT_BACKEND && nbackend + 1 == nvia) {
				pairs[nbackend++].backend = optarg;
			} else {
				fprintf(stderr, "nettcpctl: register: each --via "
				    "is followed by its --backend (at most %d)\n",
				    CTL_MAX_PAIRS);
				return CTL_USAGE;
			}
		}
		/* getopt stops at "--" and steps over it. */
		if (nvia == 0 || nvia != nbackend || optind >= argc ||
		    strcmp(argv[optind - 1], "--") != 0) {
			usage(stderr);
			return CTL_USAGE;
		}
	} else if ((strcmp(cmd, "list") != 0 && strcmp(cmd, "stats") != 0) ||
	    optind + 1 != argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	if (ctl_socket_path(sock, config, path, sizeof(path)) < 0)
		return CTL_UNREACHABLE;
	nts = nts_open(path, err, sizeof(err));
	if (nts == NULL) {
		fprintf(stderr, "nettcpctl: %s\n", err);
		return CTL_UNREACHABLE;
	}
	if (strcmp(cmd, "register") == 0)
		status = ctl_register(nts, pairs, nvia, argv + optind);
	else
		status = ctl_list(nts, strcmp(cmd, "stats") == 0);
	nts_close(nts);
	return status;
}
