/*
 * wire.c - framing records, a streaming record reader, clocks and limits
 * for the benchmark tools.
 */
#include "wire.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum reader_stage {
	STAGE_TYPE = 0, /* expecting a record type byte */
	STAGE_SIZE,     /* reading the mbint length of a string or envelope */
	STAGE_BODY,     /* reading (skipping) r->left body bytes */
};

size_t
wire_mbint(uint32_t v, uint8_t *out)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* Version, Mode, Via and Known Encoding; 0 if the Via is too long. */
static size_t
preamble_head(const char *via, uint8_t *out)
{
	size_t vlen = strlen(via);
	size_t n = 0;

	if (vlen > WIRE_VIA_MAX)
		return 0;
	out[n++] = 0x00; /* Version 1.0 */
	out[n++] = 0x01;
	out[n++] = 0x00;
	out[n++] = 0x01; /* Mode: duplex */
	out[n++] = 0x02;
	out[n++] = 0x02; /* Via */
	n += wire_mbint((uint32_t)vlen, out + n);
	memcpy(out + n, via, vlen);
	n += vlen;
	out[n++] = 0x03; /* Known Encoding: binary session */
	out[n++] = 0x08;
	return n;
}

size_t
wire_preamble(const char *via, uint8_t *out)
{
	size_t n = preamble_head(via, out);

	if (n == 0)
		return 0;
	out[n++] = WIRE_REC_PREAMBLE_END;
	return n;
}

size_t
wire_preamble_upgrade(const char *via, uint8_t *out)
{
	static const char name[] = WIRE_UPGRADE_TLS;
	size_t n = preamble_head(via, out);

	if (n == 0)
		return 0;
	out[n++] = WIRE_REC_UPGRADE_REQUEST;
	n += wire_mbint((uint32_t)(sizeof(name) - 1), out + n);
	memcpy(out + n, name, sizeof(name) - 1);
	return n + sizeof(name) - 1;
}

size_t
wire_envelope(enum wire_op op, uint32_t arg, uint32_t size, uint8_t *out)
{
	size_t n = 0;

	out[n++] = WIRE_REC_SIZED_ENVELOPE;
	n += wire_mbint(size, out + n);
	out[n] = (uint8_t)op;
	out[n + 1] = (uint8_t)arg;
	out[n + 2] = (uint8_t)(arg >> 8);
	out[n + 3] = (uint8_t)(arg >> 16);
	out[n + 4] = (uint8_t)(arg >> 24);
	for (uint32_t i = WIRE_OP_HEAD; i < size; i++)
		out[n + i] = (uint8_t)('a' + i % 26);
	return n + size;
}

void
wire_reader_init(struct wire_reader *r)
{
	memset(r, 0, sizeof(*r));
}

int
wire_read(struct wire_reader *r, const uint8_t *buf, size_t len, size_t *used)
{
	size_t i = 0;

	for (;;) {
		switch (r->stage) {
		case STAGE_TYPE:
			if (i == len)
				goto more;
			r->type = buf[i++];
			r->size = 0;
			r->size_bytes = 0;
			r->head_got = 0;
			switch (r->type) {
			case 0x00:         /* Version: major, minor */
				r->left = 2;
				r->stage = STAGE_BODY;
				break;
			case 0x01:         /* Mode */
			case 0x03:         /* Known Encoding */
				r->left = 1;
				r->stage = STAGE_BODY;
				break;
			case 0x02:         /* Via */
			case 0x04:         /* Extensible Encoding */
			case WIRE_REC_SIZED_ENVELOPE:
			case WIRE_REC_FAULT:
			case WIRE_REC_UPGRADE_REQUEST:
				r->stage = STAGE_SIZE;
				break;
			case WIRE_REC_END:
			case WIRE_REC_UPGRADE_RESPONSE:
			case WIRE_REC_PREAMBLE_ACK:
			case WIRE_REC_PREAMBLE_END:
				goto record;
			default:           /* 0x05 unsized envelopes are not used here */
				goto bad;
			}
			break;
		case STAGE_SIZE: {
			uint8_t b;

			if (i == len)
				goto more;
			b = buf[i++];
			if (r->size_bytes == 4 && b > 0x07)
				goto bad;
			r->size |= (uint32_t)(b & 0x7f) << (7 * r->size_bytes);
			r->size_bytes++;
			if (b & 0x80)
				break;
			if (r->size > WIRE_BODY_MAX)
				goto bad;
			r->left = r->size;
			r->stage = STAGE_BODY;
			break;
		}
		case STAGE_BODY: {
			size_t n;

			if (r->left == 0)
				goto record;
			if (i == len)
				goto more;
			n = len - i < r->left ? len - i : r->left;
			for (size_t k = 0; k < n && r->head_got < WIRE_OP_HEAD; k++)
				r->head[r->head_got++] = buf[i + k];
			i += n;
			r->left -= (uint32_t)n;
			break;
		}
		default:
			goto bad;
		}
	}
record:
	r->stage = STAGE_TYPE;
	*used = i;
	return WIRE_RECORD;
more:
	*used = i;
	return WIRE_MORE;
bad:
	*used = i;
	return WIRE_BAD;
}

uint32_t
wire_head_arg(const struct wire_reader *r)
{
	if (r->head_got < WIRE_OP_HEAD)
		return 0;
	return (uint32_t)r->head[1] | (uint32_t)r->head[2] << 8 |
	    (uint32_t)r->head[3] << 16 | (uint32_t)r->head[4] << 24;
}

uint64_t
wire_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double
wire_cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0.;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

long
wire_raise_nofile(long want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (rlim_t)want)
		return (long)rl.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) {
		struct rlimit more = { (rlim_t)want, (rlim_t)want };

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return want;
	}
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want ?
	    (rlim_t)want : rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	return (long)rl.rlim_cur;
}

int
wire_parse_loopback(const char *text, struct sockaddr_in *out)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(text, ':');
	char *end;
	unsigned long port;
	size_t hlen;

	if (colon == NULL)
		return -1;
	hlen = (size_t)(colon - text);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port == 0 || port > 65535)
		return -1;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return -1;
	if ((ntohl(out->sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "%s: not a loopback address; the benchmark only "
		    "talks to 127.0.0.0/8\n", text);
		return -1;
	}
	return 0;
}
