/*
 * access.c - the access log, JSON lines.
 *
 * Each record is formatted into one buffer and written with one write(2)
 * on an O_APPEND descriptor shared by every worker, so records never
 * interleave and nothing is locked.  A reopen swaps the descriptor with
 * dup2(), so a worker writing meanwhile writes to the old file or the new
 * one, never to a closed descriptor.
 */
#include "access.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"

enum target { TARGET_OFF, TARGET_FD, TARGET_SYSLOG };

static enum target target = TARGET_OFF;
static atomic_int fd = -1;
static char path[4096];

int
access_open(const char *name, char *err, size_t errlen)
{
	int f;

	access_close();
	if (strcmp(name, "off") == 0)
		return 0;
	if (strcmp(name, "syslog") == 0) {
		target = TARGET_SYSLOG;
		return 0;
	}
	if (strcmp(name, "stderr") == 0) {
		atomic_store(&fd, STDERR_FILENO);
		target = TARGET_FD;
		return 0;
	}
	f = open(name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (f < 0) {
		snprintf(err, errlen, "access_log '%s': %s", name, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s", name);
	atomic_store(&fd, f);
	target = TARGET_FD;
	return 0;
}

int
access_enabled(void)
{
	return target != TARGET_OFF;
}

void
access_reopen(void)
{
	int f, cur = atomic_load(&fd);

	if (target != TARGET_FD || path[0] == '\0')
		return;
	f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (f < 0)
		return;
	/* The number stays: a record being written lands in one file. */
	if (dup3(f, cur, O_CLOEXEC) < 0) {
		close(f);
		return;
	}
	close(f);
}

void
access_close(void)
{
	int cur = atomic_exchange(&fd, -1);

	if (cur > STDERR_FILENO)
		close(cur);
	target = TARGET_OFF;
	path[0] = '\0';
}

/* Append s as a JSON string: quote, backslash and every byte outside
 * printable ASCII escaped, so no client text can break the line. */
static size_t
json_string(char *out, size_t room, const uint8_t *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (room < 3)
		return 0;
	out[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < room; i++) {
		uint8_t ch = s[i];

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch >= 0x20 && ch < 0x7f) {
			out[o++] = (char)ch;
		} else {
			memcpy(out + o, "\\u00", 4);
			o += 4;
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o++] = '"';
	return o;
}

/* The line being built: what does not fit is cut, never overrun. */
struct line {
	char buf[16384];
	size_t len;
};

static void __attribute__((format(printf, 2, 3)))
put(struct line *l, const char *fmt, ...)
{
	size_t room = sizeof(l->buf) - l->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len += (size_t)n < room ? (size_t)n : room - 1;
}

static void
put_string(struct line *l, const uint8_t *s, size_t len)
{
	l->len += json_string(l->buf + l->len, sizeof(l->buf) - l->len, s, len);
}

static void
put_text(struct line *l, const char *s)
{
	if (s == NULL)
		put(l, "null");
	else
		put_string(l, (const uint8_t *)s, strlen(s));
}

void
access_record(const struct access_rec *r)
{
	static __thread struct line l;  /* 16 KiB: off the worker's stack */
	char peer[ADDR_TEXT_MAX], stamp[40];
	struct timeval now;
	struct tm tm;

	if (target == TARGET_OFF)
		return;
	gettimeofday(&now, NULL);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	addr_format(r->client, peer, sizeof(peer));
	l.len = 0;
	put(&l, "{\"time\":\"%s.%03ldZ\",\"client\":\"%s\",\"port\":%u,"
	    "\"session\":%u,\"via\":", stamp, (long)(now.tv_usec / 1000), peer,
	    r->port, r->session);
	if (r->via != NULL)
		put_string(&l, r->via, r->via_len);
	else
		put(&l, "null");
	put(&l, ",\"route\":");
	put_text(&l, r->route);
	put(&l, ",\"backend\":");
	put_text(&l, r->backend);
	put(&l, ",\"outcome\":\"%s\",\"bytes_up\":%llu,\"bytes_down\":%llu,"
	    "\"duration_ms\":%.3f,\"route_ms\":", r->outcome,
	    (unsigned long long)r->bytes_up, (unsigned long long)r->bytes_down,
	    r->duration * 1000.0);
	if (r->route_time >= 0)
		put(&l, "%.3f}", r->route_time * 1000.0);
	else
		put(&l, "null}");
	if (target == TARGET_SYSLOG) {
		syslog(LOG_INFO, "%.*s", (int)l.len, l.buf);
		return;
	}
	/* The buffer holds the longest record (a 2,048-byte Via escaped
	 * six-fold): nothing is ever cut, and the newline fits. */
	put(&l, "\n");
	(void)!write(atomic_load(&fd), l.buf, l.len);
}
