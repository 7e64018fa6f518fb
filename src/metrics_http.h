/*
 * metrics_http.h - the HTTP side of /metrics: a server of its own for GET
 * and HEAD on a libev loop in a thread of its own (metrics_start() and
 * metrics_stop() in metrics.h), and its request parser, a pure function
 * over the bytes read so far.
 */
#ifndef NETTCPD_METRICS_HTTP_H
#define NETTCPD_METRICS_HTTP_H

#include <stddef.h>

/* The limits a scraper shares with whoever else reaches the port. */
#define METRICS_HTTP_SLOTS 64          /* connections at once */
#define METRICS_HTTP_PER_ADDR 8        /* of them from one source address */
#define METRICS_HTTP_REQUEST_MAX 8192  /* request line and headers, bytes */
#define METRICS_HTTP_REQUEST_SECONDS 5.0  /* accept to the request's end */
#define METRICS_HTTP_REPLY_SECONDS 10.0   /* to take the answer */

/* What a request asks for, once its headers are whole. */
enum metrics_http_req {
	METRICS_HTTP_NEED_MORE = 0,    /* no blank line yet */
	METRICS_HTTP_METRICS,          /* GET or HEAD /metrics */
	METRICS_HTTP_NOT_FOUND,        /* GET or HEAD of another path */
	METRICS_HTTP_NOT_ALLOWED,      /* another method */
	METRICS_HTTP_BAD,              /* not an HTTP/1.x request line */
	METRICS_HTTP_TOO_LONG,         /* no blank line in REQUEST_MAX bytes */
};

/*
 * Parse the len bytes of a request read so far.  The path of an
 * origin-form target ("/metrics") or an absolute-form one
 * ("http://host:port/metrics"), its query left out, is what is served.
 */
enum metrics_http_req metrics_http_parse(const char *buf, size_t len);

#endif
