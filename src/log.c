/*
 * log.c - one line per event, to stderr or syslog.
 *
 * Each stderr line is formatted into one buffer and written with a single
 * write(2), so lines from a busy daemon never interleave and no stdio buffer
 * holds a line back.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum log_target log_target = LOG_TARGET_STDERR;
static enum log_level log_threshold = LOG_LEVEL_INFO;

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

void
log_open(enum log_target target, enum log_level level)
{
	log_target = target;
	log_threshold = level;
	if (target == LOG_TARGET_SYSLOG)
		openlog("nettcpd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
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

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char line[1024];
	int saved_errno = errno;
	va_list ap;

	if (!log_enabled(level))
		return;

	if (log_target == LOG_TARGET_SYSLOG) {
		va_start(ap, fmt);
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		syslog(syslog_priorities[level], "%s", line);
	} else {
		struct timespec now;
		struct tm tm;
		size_t used;
		int n;

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		used = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line + used, sizeof(line) - used, ".%03ldZ nettcpd[%ld]: %s: ",
		    now.tv_nsec / 1000000, (long)getpid(), level_names[level]);
		used += (size_t)n;
		va_start(ap, fmt);
		n = vsnprintf(line + used, sizeof(line) - used - 1, fmt, ap);
		va_end(ap);
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
