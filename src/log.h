/*
 * log.h - one line per event, to stderr (with a timestamp, or with the
 * journal's "<N>" priority prefix when stderr is the journal), syslog, or
 * the journal.
 */
#ifndef NETTCPD_LOG_H
#define NETTCPD_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_NOTICE,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum log_target {
	LOG_TARGET_STDERR = 0,
	LOG_TARGET_SYSLOG,
	LOG_TARGET_JOURNAL,     /* sd_journal_send with fields; "<N>" on */
	                        /* stderr without libsystemd or journald */
};

void log_open(enum log_target target, enum log_level level);

/* Why lines go to stderr ("log = stderr", or log = journal's fallback and
 * its reason), or NULL when they go elsewhere: -d, which puts stderr on
 * /dev/null, warns with it. */
const char *log_on_stderr(void);
void log_close(void);

/* Level name ("error" ... "debug") to level; -1 if unknown. */
int log_level_from_name(const char *name);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A line about one client: the journal also gets its address and route
 * (NULL: none yet) as the fields NETTCPD_CLIENT and NETTCPD_ROUTE. */
void log_client(enum log_level level, const char *client, const char *route,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_err(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

int log_enabled(enum log_level level);

/* The word for n things: "%zu %s", n, log_plural(n, "route", "routes"). */
static inline const char *
log_plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/*
 * A printable copy of client bytes (a Via, an upgrade name) for a log
 * line: control and non-ASCII bytes, quote and backslash are escaped (\xHH),
 * so a client cannot forge log lines; past max bytes "..." ends it.  outlen
 * of max * 4 + 8 holds all of it.  Returns out.
 */
char *log_printable(const uint8_t *text, size_t len, size_t max, char *out,
    size_t outlen);

#endif
