/*
 * log.c - one line per event, to stderr, syslog or the journal.
 *
 * Each stderr line is formatted into one buffer and written with a single
 * write(2), so lines from a busy daemon never interleave and no stdio buffer
 * holds a line back.  When stderr is the journal's stream, a line starts
 * with its priority, "<N>", which journald reads as the line's PRIORITY=
 * and strips; the journal stamps the time and the pid itself.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-journal.h>
#endif

static enum log_target log_target = LOG_TARGET_STDERR;
static enum log_level log_threshold = LOG_LEVEL_INFO;
/* stderr lines carry "<N>" instead of a timestamp, pid and level name. */
static int log_stderr_prefixed;
/* log = journal, and journald listens: lines go by sd_journal_send. */
static int log_journal_send;

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_NOTICE] = "notice",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const int syslog_priorities[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARNING] = LOG_WARNING,
	[LOG_LEVEL_NOTICE] = LOG_NOTICE,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/*
 * Whether stderr is the journal: systemd sets $JOURNAL_STREAM to the
 * "DEVICE:INODE" of the stream it connects to stderr (systemd.exec(5)); a
 * process whose stderr was redirected since inherits the variable, so
 * only the same device and inode count.
 */
static int
stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int used = 0;

	if (env == NULL || sscanf(env, "%llu:%llu%n", &dev, &ino, &used) != 2 ||
	    env[used] != '\0' || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/*
 * Whether journald listens.  sd_journal_send drops a line silently when
 * it does not (a container, a host without systemd), so ask for a stream
 * the way a service's stderr gets one, and close it.
 */
#ifdef HAVE_LIBSYSTEMD
#define JOURNAL_ABSENT "no journald listens"
static int
journal_listens(void)
{
	int fd = sd_journal_stream_fd("nettcpd", LOG_INFO, 0);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}
#else
#define JOURNAL_ABSENT "built without libsystemd"
static int
journal_listens(void)
{
	return 0;
}
#endif

void
log_open(enum log_target target, enum log_level level)
{
	log_target = target;
	log_threshold = level;
	if (target == LOG_TARGET_SYSLOG)
		openlog("nettcpd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	/* log = journal goes to stderr when sd_journal_send cannot: built
	 * without libsystemd, or no journald listening. */
	log_stderr_prefixed = target == LOG_TARGET_JOURNAL ||
	    (target == LOG_TARGET_STDERR && stderr_is_journal());
	log_journal_send = target == LOG_TARGET_JOURNAL && journal_listens();
	if (target == LOG_TARGET_JOURNAL && !log_journal_send)
		log_warn("log = journal: %s: logging to stderr, each line with "
		    "its priority", JOURNAL_ABSENT);
}

const char *
log_on_stderr(void)
{
	if (log_target == LOG_TARGET_STDERR)
		return "log = stderr";
	if (log_target == LOG_TARGET_JOURNAL && !log_journal_send)
		return "log = journal, " JOURNAL_ABSENT;
	return NULL;
}

void
log_close(void)
{
	if (log_target == LOG_TARGET_SYSLOG)
		closelog();
	log_target = LOG_TARGET_STDERR;
}

int
log_level_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

int
log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

/* One line to stderr: "<N>message", or "TIME nettcpd[PID]: LEVEL: message". */
static void
log_stderr(enum log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t used;
	int n;

	if (log_stderr_prefixed) {
		n = snprintf(line, sizeof(line), "<%d>", syslog_priorities[level]);
	} else {
		struct timespec now;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		used = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line + used, sizeof(line) - used, ".%03ldZ nettcpd[%ld]: %s: ",
		    now.tv_nsec / 1000000, (long)getpid(), level_names[level]);
		n += (int)used;
	}
	used = (size_t)n;
	n = vsnprintf(line + used, sizeof(line) - used - 1, fmt, ap);
	/* A truncated message still ends in a newline. */
	if (n < 0 || (size_t)n >= sizeof(line) - used - 1)
		used = sizeof(line) - 2;
	else
		used += (size_t)n;
	line[used++] = '\n';
	/* Nothing useful can be done when stderr fails. */
	if (write(STDERR_FILENO, line, used) < 0)
		(void)0;
}

/* One line to the log's target; client and route: journal fields or NULL. */
static void
log_vwrite(enum log_level level, const char *client, const char *route,
    const char *fmt, va_list ap)
{
	char line[1024];

	if (log_target == LOG_TARGET_SYSLOG) {
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(syslog_priorities[level], "%s", line);
		return;
	}
#ifdef HAVE_LIBSYSTEMD
	if (log_journal_send) {
		va_list copy;

		va_copy(copy, ap);
		vsnprintf(line, sizeof(line), fmt, copy);
		va_end(copy);
		/* The fields after a NULL one are left out. */
		if (sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d",
		    syslog_priorities[level], "SYSLOG_IDENTIFIER=nettcpd",
		    client != NULL ? "NETTCPD_CLIENT=%s" : NULL, client,
		    route != NULL ? "NETTCPD_ROUTE=%s" : NULL, route, NULL) >= 0)
			return;
	}
#else
	(void)client;
	(void)route;
#endif
	log_stderr(level, fmt, ap);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vwrite(level, NULL, NULL, fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

void
log_client(enum log_level level, const char *client, const char *route,
    const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vwrite(level, client, route, fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

char *
log_printable(const uint8_t *text, size_t len, size_t max, char *out,
    size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len && o + 8 < outlen; i++) {
		uint8_t ch = text[i];

		if (i == max) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
	return out;
}
