/*
 * access.c - the access log, JSON lines.
 *
 * Each worker formats its records into a buffer of its own and writes
 * whole records with one write(2) on an O_APPEND descriptor shared by
 * every worker, so records never interleave and nothing is locked.  The
 * buffer is written when the next record might not fit, and by the worker
 * once a second (access_flush): a write per record would cost a system
 * call per connection, several per cent of the connection rate.  A reopen
 * swaps the descriptor with dup3(), so a worker writing meanwhile writes
 * to the old file or the new one, never to a closed descriptor.
 */
#include "access.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "decimal.h"
#include "safefile.h"

enum target { TARGET_OFF, TARGET_FD, TARGET_SYSLOG };

static enum target target = TARGET_OFF;
static atomic_int fd = -1;
static char path[4096];

/* The file, by safefile's rules: a log the user's directory holds must
 * not lead a writer elsewhere. */
static int
open_file(const char *name, char *err, size_t errlen)
{
	char why[SAFEFILE_ERR_MAX];
	int f = safefile_open(name, O_WRONLY | O_APPEND, 0640, why, sizeof(why));

	if (f < 0)
		snprintf(err, errlen, "access_log %s", why);
	return f;
}

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
	if ((f = open_file(name, err, errlen)) < 0)
		return -1;
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

int
access_reopen(char *err, size_t errlen)
{
	int f, rc = 0, cur = atomic_load(&fd);

	if (target != TARGET_FD || path[0] == '\0')
		return 0;
	if ((f = open_file(path, err, errlen)) < 0)
		return -1;
	/* The number stays: a record being written lands in one file. */
	if (dup3(f, cur, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "access_log '%s': %s", path, strerror(errno));
		rc = -1;
	}
	close(f);
	return rc;
}

void
access_close(void)
{
	int cur;

	access_flush();   /* what this thread wrote: those of a worker's */
	cur = atomic_exchange(&fd, -1);   /* connections closed at exit */

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

/* The longest record: a 2,048-byte Via escaped six-fold, and the rest. */
#define RECORD_MAX 16384u

/* This thread's records not yet written; a record that does not fit is
 * cut, never overrun, but one always fits (access_record). */
struct line {
	char buf[4 * RECORD_MAX];
	size_t len;
};

static __thread struct line pending;   /* off the workers' stacks */

/*
 * Records are assembled by hand, not with printf: its format parsing and
 * %f cost more than everything else a record takes.  What does not fit
 * is cut, never overrun.
 */
static void
put_raw(struct line *l, const char *s, size_t len)
{
	size_t room = sizeof(l->buf) - l->len;

	if (len > room)
		len = room;
	memcpy(l->buf + l->len, s, len);
	l->len += len;
}

/* Text nettcpd wrote itself (a literal): nothing to escape. */
#define PUT(l, literal) put_raw((l), (literal), sizeof(literal) - 1)

static void
put_u64(struct line *l, uint64_t n)
{
	char digits[DECIMAL_MAX];
	size_t i = decimal_format(n, digits);

	put_raw(l, digits + i, sizeof(digits) - i);
}

/* Three digits: the milliseconds of a time, the microseconds of a ms. */
static void
put_3(struct line *l, unsigned n)
{
	char d[3] = { (char)('0' + n / 100 % 10), (char)('0' + n / 10 % 10),
	    (char)('0' + n % 10) };

	put_raw(l, d, sizeof(d));
}

/* Seconds as milliseconds to the microsecond: "12.345". */
static void
put_ms(struct line *l, double seconds)
{
	uint64_t us = seconds > 0 ? (uint64_t)(seconds * 1e6 + 0.5) : 0;

	put_u64(l, us / 1000);
	PUT(l, ".");
	put_3(l, (unsigned)(us % 1000));
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
		PUT(l, "null");
	else
		put_string(l, (const uint8_t *)s, strlen(s));
}

void
access_flush(void)
{
	struct line *l = &pending;

	if (l->len > 0)
		(void)!write(atomic_load(&fd), l->buf, l->len);
	l->len = 0;
}

void
access_record(const struct access_rec *r)
{
	/* The second's text, made once a second per thread. */
	static __thread char stamp[40];
	static __thread size_t stamp_len;
	static __thread time_t stamp_sec = -1;
	struct line *l = &pending;
	char ip[ADDR_TEXT_MAX];
	struct timeval now;
	struct tm tm;
	size_t start;

	if (target == TARGET_OFF)
		return;
	gettimeofday(&now, NULL);
	if (now.tv_sec != stamp_sec) {
		gmtime_r(&now.tv_sec, &tm);
		stamp_len = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		stamp_sec = now.tv_sec;
	}
	addr_format_ip(r->client, ip, sizeof(ip));
	if (sizeof(l->buf) - l->len < RECORD_MAX)
		access_flush();
	start = l->len;
	PUT(l, "{\"time\":\"");
	put_raw(l, stamp, stamp_len);
	PUT(l, ".");
	put_3(l, (unsigned)(now.tv_usec / 1000));
	PUT(l, "Z\",\"client_ip\":\"");
	put_raw(l, ip, strlen(ip));
	PUT(l, "\",\"client_port\":");
	put_u64(l, addr_port(r->client));
	PUT(l, ",\"listen_port\":");
	put_u64(l, r->listen_port);
	PUT(l, ",\"session\":");
	put_u64(l, r->session);
	PUT(l, ",\"via\":");
	if (r->via != NULL)
		put_string(l, r->via, r->via_len);
	else
		PUT(l, "null");
	PUT(l, ",\"route\":");
	put_text(l, r->route);
	PUT(l, ",\"backend\":");
	put_text(l, r->backend);
	PUT(l, ",\"outcome\":\"");
	put_raw(l, r->outcome, strlen(r->outcome));
	PUT(l, "\",\"fault\":");
	put_text(l, r->fault);
	PUT(l, ",\"bytes_up\":");
	put_u64(l, r->bytes_up);
	PUT(l, ",\"bytes_down\":");
	put_u64(l, r->bytes_down);
	PUT(l, ",\"duration_ms\":");
	put_ms(l, r->duration);
	PUT(l, ",\"route_ms\":");
	if (r->route_time >= 0)
		put_ms(l, r->route_time);
	else
		PUT(l, "null");
	PUT(l, "}");
	if (target == TARGET_SYSLOG) {
		syslog(LOG_INFO, "%.*s", (int)(l->len - start), l->buf + start);
		l->len = start;
		return;
	}
	PUT(l, "\n");
}
