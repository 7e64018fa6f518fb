/*
 * tls.c - terminating the net.tcp TLS upgrade with OpenSSL.
 *
 * Only the server side is here: nettcpd answers the client's
 * application/ssl-tls upgrade and talks clear text to the backend.
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <ev.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

/* Plaintext bytes per direction in flight: one full TLS record. */
#define TLS_PUMP_BUFSZ 16384u

int
tls_parse_min_version(const char *text)
{
	if (strcmp(text, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(text, "1.3") == 0)
		return TLS1_3_VERSION;
	return -1;
}

const char *
tls_error(char *buf, size_t len)
{
	unsigned long e, last = 0;

	/* The last error is the most specific; drain the rest. */
	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last == 0)
		snprintf(buf, len, "%s", errno != 0 ? strerror(errno) : "unknown error");
	else
		ERR_error_string_n(last, buf, len);
	return buf;
}

/* ------------------------------------------------------------ session tickets */

/*
 * Resumption is by session ticket only: the session lives in the ticket,
 * encrypted under a key of nettcpd's, so the server keeps nothing per
 * session and every worker thread can resume every ticket.  One key ring
 * serves every context.  The current key seals new tickets until it is a
 * session timeout old; then it is replaced, and opens tickets for one more
 * timeout, which covers every ticket OpenSSL would still accept (it
 * refuses a session older than the timeout itself); no key lives longer
 * than two timeouts.  Keys are random and never leave memory: after a
 * restart each client makes one full handshake.
 */
struct ticket_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
	double born;      /* CLOCK_MONOTONIC seconds */
	int valid;
};

static struct {
	pthread_mutex_t lock;
	struct ticket_key current, previous;
} tickets = { .lock = PTHREAD_MUTEX_INITIALIZER };

static double
now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
ticket_key_wipe(struct ticket_key *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

/* Under the lock: retire keys too old for their job.  -1 if no random
 * bytes could be had for a new one. */
static int
tickets_rotate(double now, double period)
{
	struct ticket_key *cur = &tickets.current, *prev = &tickets.previous;

	if (prev->valid && now - prev->born >= 2 * period)
		ticket_key_wipe(prev);
	if (cur->valid && now - cur->born < period)
		return 0;
	ticket_key_wipe(prev);
	if (cur->valid && now - cur->born < 2 * period)
		*prev = *cur;
	ticket_key_wipe(cur);
	if (RAND_bytes(cur->name, sizeof(cur->name)) != 1 ||
	    RAND_bytes(cur->aes, sizeof(cur->aes)) != 1 ||
	    RAND_bytes(cur->hmac, sizeof(cur->hmac)) != 1) {
		ticket_key_wipe(cur);
		return -1;
	}
	cur->born = now;
	cur->valid = 1;
	return 0;
}

/*
 * OpenSSL's ticket key callback: 1 sealed, 2 opened, 0 unknown key (a full
 * handshake follows), -1 failure.  An opened ticket is always answered
 * with a fresh one (2: renew), sealed by the current key: a TLS 1.3 ticket
 * is for one use (RFC 8446, C.4), and without the renewal OpenSSL issues
 * none on a resumed connection, so a client that redials would do a full
 * handshake every other time.  The session inside keeps the time of its
 * full handshake, so the timeout still bounds it.
 */
static int
ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc)
{
	/* The rotation period is the context's session timeout. */
	double period = (double)SSL_CTX_get_timeout(SSL_get_SSL_CTX(ssl));
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	struct ticket_key k;
	int ret = 0;

	pthread_mutex_lock(&tickets.lock);
	if (tickets_rotate(now_monotonic(), period) < 0) {
		ret = -1;
	} else if (enc) {
		k = tickets.current;
		memcpy(name, k.name, sizeof(k.name));
		ret = 1;
	} else if (memcmp(name, tickets.current.name, sizeof(k.name)) == 0) {
		k = tickets.current;
		ret = 2;
	} else if (tickets.previous.valid &&
	    memcmp(name, tickets.previous.name, sizeof(k.name)) == 0) {
		k = tickets.previous;
		ret = 2;
	}
	pthread_mutex_unlock(&tickets.lock);
	if (ret <= 0)
		return ret;
	if (enc && RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
		ret = -1;
	else if (!(enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv) :
	    EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv)) ||
	    !EVP_MAC_init(mac, k.hmac, sizeof(k.hmac), params))
		ret = -1;
	ticket_key_wipe(&k);
	return ret;
}

/*
 * Resume sessions for timeout seconds (0: never).  The session id context
 * is the certificate's digest: a ticket from one route's certificate is
 * not resumed on a route with another, whose client never checked it.
 */
static int
tls_setup_resumption(SSL_CTX *ctx, double timeout)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	X509 *cert = SSL_CTX_get0_certificate(ctx);

	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (timeout <= 0) {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		return SSL_CTX_set_num_tickets(ctx, 0);
	}
	if (cert == NULL || !X509_digest(cert, EVP_sha256(), md, &mdlen))
		return 0;
	if (mdlen > SSL_MAX_SID_CTX_LENGTH)
		mdlen = SSL_MAX_SID_CTX_LENGTH;
	SSL_CTX_set_timeout(ctx, (long)timeout);
	return SSL_CTX_set_session_id_context(ctx, md, mdlen) &&
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
}

static void
check_validity(SSL_CTX *ctx, char *warn, size_t warnlen)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);

	if (cert == NULL)
		return;
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
		snprintf(warn, warnlen, "certificate has expired; clients will refuse it");
	else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
		snprintf(warn, warnlen, "certificate is not valid yet; clients will refuse it");
}

double
tls_ctx_not_after(SSL_CTX *ctx)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	struct tm tm;

	if (cert == NULL || !ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
		return 0;
	return (double)timegm(&tm);
}

SSL_CTX *
tls_ctx_new(const struct tls_settings *s, enum tls_setting *bad, char *err,
    size_t errlen, char *warn, size_t warnlen)
{
	char why[256];
	SSL_CTX *ctx;

	err[0] = '\0';
	warn[0] = '\0';
	ERR_clear_error();
	*bad = TLS_SETTING_CERT;
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context: %s",
		    tls_error(why, sizeof(why)));
		goto fail;
	}
	/*
	 * WCF pools the raw socket and abandons the TLS stream without
	 * close_notify, so a plain FIN is a normal end here.  Renegotiation
	 * is a client-driven CPU sink nothing in net.tcp needs.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	*bad = TLS_SETTING_MIN_VERSION;
	if (!SSL_CTX_set_min_proto_version(ctx, s->min_version)) {
		snprintf(err, errlen, "cannot set the minimum TLS version: %s",
		    tls_error(why, sizeof(why)));
		goto fail;
	}
	*bad = TLS_SETTING_CIPHERS;
	if (s->ciphers != NULL && !SSL_CTX_set_cipher_list(ctx, s->ciphers)) {
		snprintf(err, errlen, "tls_ciphers '%s': no usable cipher", s->ciphers);
		goto fail;
	}
	*bad = TLS_SETTING_CIPHERSUITES;
	if (s->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, s->ciphersuites)) {
		snprintf(err, errlen, "tls_ciphersuites '%s': no usable suite",
		    s->ciphersuites);
		goto fail;
	}
	*bad = TLS_SETTING_CERT;
	if (!SSL_CTX_use_certificate_chain_file(ctx, s->cert)) {
		snprintf(err, errlen, "tls_cert '%s': %s", s->cert,
		    tls_error(why, sizeof(why)));
		goto fail;
	}
	*bad = TLS_SETTING_KEY;
	if (!SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM)) {
		/* OpenSSL checks the pair while loading the key. */
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(err, errlen, "tls_key '%s' does not match tls_cert '%s'",
			    s->key, s->cert);
		else
			snprintf(err, errlen, "tls_key '%s': %s", s->key,
			    tls_error(why, sizeof(why)));
		goto fail;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		snprintf(err, errlen, "tls_key '%s' does not match tls_cert '%s'",
		    s->key, s->cert);
		goto fail;
	}
	*bad = TLS_SETTING_CERT;
	if (!tls_setup_resumption(ctx, s->session_timeout)) {
		snprintf(err, errlen, "cannot set up session resumption: %s",
		    tls_error(why, sizeof(why)));
		goto fail;
	}
	check_validity(ctx, warn, warnlen);
	ERR_clear_error();
	return ctx;

fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

/* Map an OpenSSL result to a step; ret is what the call returned. */
static enum tls_step
tls_step_of(SSL *ssl, int ret)
{
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_STEP_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_STEP_WANT_WRITE;
	default:
		return TLS_STEP_ERROR;
	}
}

enum tls_step
tls_accept(SSL *ssl)
{
	int ret;

	errno = 0;
	ERR_clear_error();
	ret = SSL_accept(ssl);
	return ret == 1 ? TLS_STEP_DONE : tls_step_of(ssl, ret);
}

enum tls_step
tls_read(SSL *ssl, void *buf, size_t len, size_t *got)
{
	int ret;

	*got = 0;
	errno = 0;
	ERR_clear_error();
	ret = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (ret > 0) {
		*got = (size_t)ret;
		return TLS_STEP_DONE;
	}
	if (SSL_get_error(ssl, ret) == SSL_ERROR_ZERO_RETURN)
		return TLS_STEP_DONE;
	return tls_step_of(ssl, ret);
}

enum tls_step
tls_write(SSL *ssl, const void *buf, size_t len, size_t *put)
{
	int ret;

	*put = 0;
	errno = 0;
	ERR_clear_error();
	ret = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (ret > 0) {
		*put = (size_t)ret;
		return TLS_STEP_DONE;
	}
	return tls_step_of(ssl, ret);
}

void
tls_close_notify(SSL *ssl)
{
	ERR_clear_error();
	if (!(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
		(void)SSL_shutdown(ssl);
	ERR_clear_error();
}

static int
wants_of(enum tls_step step)
{
	return step == TLS_STEP_WANT_WRITE ? EV_WRITE : EV_READ;
}

/* Following a session, this direction has stopped: its End went by, or a
 * byte the follower cannot place. */
static int
flow_stopped(const struct nmf_flow *flow)
{
	return flow != NULL && (flow->state == NMF_FLOW_ENDED ||
	    flow->state == NMF_FLOW_OPAQUE);
}

/*
 * got bytes were just read into the buffer: with a flow only those up to
 * the session's End (or before a byte it cannot place) are to be sent; the
 * rest stay held after them, as pump.c keeps them.
 */
static void
take_read(struct pump *p, struct nmf_flow *flow, size_t got)
{
	p->buf_off = 0;
	p->pending = flow != NULL ? nmf_flow_feed(flow, p->buf, got) : got;
	p->held = got - p->pending;
}

/* The direction stopped with nothing in flight: keep the buffer only for
 * held bytes. */
static enum pump_status
pump_ended(struct pump *p)
{
	if (p->held == 0) {
		free(p->buf);
		p->buf = NULL;
	}
	return PUMP_ENDED;
}

/*
 * Decrypted client bytes to the backend.  Following a session, nothing is
 * read from the TLS stream after the client's End: WCF abandons that stream
 * there and sends its next preamble in clear on the raw socket, which
 * OpenSSL (read_ahead off) has not touched.
 */
enum pump_status
tls_pump_up(struct pump *p, SSL *ssl, int backend, struct nmf_flow *flow,
    struct tls_wants *wants)
{
	uint64_t start = p->total;
	int drained = 0;

	wants->client = wants->backend = 0;
	if (p->dst_shut)
		return PUMP_DONE;
	for (;;) {
		if (p->pending == 0 && flow_stopped(flow))
			return pump_ended(p);
		/* Over budget, or a message delivered, yield; but not while
		 * OpenSSL still holds bytes, which no socket event would
		 * announce. */
		if (p->pending == 0 && !p->src_eof &&
		    (drained || p->total - start >= PUMP_BUDGET) &&
		    SSL_has_pending(ssl) == 0) {
			free(p->buf);
			p->buf = NULL;
			wants->client = EV_READ;
			return PUMP_WANT_READ;
		}
		if (p->pending == 0 && !p->src_eof) {
			enum tls_step step;
			size_t got;

			if (p->buf == NULL && (p->buf = malloc(TLS_PUMP_BUFSZ)) == NULL)
				return PUMP_ERROR;
			step = tls_read(ssl, p->buf, TLS_PUMP_BUFSZ, &got);
			if (step == TLS_STEP_ERROR)
				return PUMP_ERROR;
			if (step != TLS_STEP_DONE) {
				/* Idle: hold no buffer. */
				free(p->buf);
				p->buf = NULL;
				wants->client = wants_of(step);
				return PUMP_WANT_READ;
			}
			if (got == 0)
				p->src_eof = 1;
			/* A wakeup whose first record is short is a message,
			 * not a stream: the client waits for the answer, and
			 * another read would find the socket empty.  (Without
			 * read_ahead OpenSSL cannot tell; if more comes, the
			 * watcher says so.) */
			drained = got < TLS_PUMP_BUFSZ && p->total == start;
			take_read(p, flow, got);
		}
		while (p->pending > 0) {
			ssize_t n = send(backend, p->buf + p->buf_off, p->pending,
			    MSG_NOSIGNAL);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				wants->backend = EV_WRITE;
				return PUMP_WANT_WRITE;
			}
			if (n < 0)
				return PUMP_ERROR;
			p->pending -= (size_t)n;
			p->buf_off += (size_t)n;
			p->total += (uint64_t)n;
		}
		if (p->src_eof) {
			free(p->buf);
			p->buf = NULL;
			if (shutdown(backend, SHUT_WR) < 0)
				return PUMP_ERROR;
			p->dst_shut = 1;
			return PUMP_DONE;
		}
	}
}

/* Backend bytes encrypted to the client; following a session, nothing is
 * read from the backend after the service's End. */
enum pump_status
tls_pump_down(struct pump *p, SSL *ssl, int client, int backend,
    struct nmf_flow *flow, struct tls_wants *wants)
{
	uint64_t start = p->total;
	int drained = 0;

	wants->client = wants->backend = 0;
	if (p->dst_shut)
		return PUMP_DONE;
	for (;;) {
		if (p->pending == 0 && flow_stopped(flow))
			return pump_ended(p);
		/* A read that returned less than asked found the socket
		 * drained (as pump.c concludes): the next would say EAGAIN. */
		if (p->pending == 0 && !p->src_eof &&
		    (drained || p->total - start >= PUMP_BUDGET)) {
			free(p->buf);
			p->buf = NULL;
			wants->backend = EV_READ;
			return PUMP_WANT_READ;
		}
		if (p->pending == 0 && !p->src_eof) {
			ssize_t n;

			if (p->buf == NULL && (p->buf = malloc(TLS_PUMP_BUFSZ)) == NULL)
				return PUMP_ERROR;
			n = recv(backend, p->buf, TLS_PUMP_BUFSZ, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				free(p->buf);
				p->buf = NULL;
				wants->backend = EV_READ;
				return PUMP_WANT_READ;
			}
			if (n < 0)
				return PUMP_ERROR;
			if (n == 0)
				p->src_eof = 1;
			drained = (size_t)n < TLS_PUMP_BUFSZ;
			take_read(p, flow, (size_t)n);
		}
		while (p->pending > 0) {
			enum tls_step step;
			size_t put;

			step = tls_write(ssl, p->buf + p->buf_off, p->pending, &put);
			if (step == TLS_STEP_ERROR)
				return PUMP_ERROR;
			if (step != TLS_STEP_DONE) {
				wants->client = wants_of(step);
				return PUMP_WANT_WRITE;
			}
			p->pending -= put;
			p->buf_off += put;
			p->total += (uint64_t)put;
		}
		if (p->src_eof) {
			free(p->buf);
			p->buf = NULL;
			tls_close_notify(ssl);
			if (shutdown(client, SHUT_WR) < 0)
				return PUMP_ERROR;
			p->dst_shut = 1;
			return PUMP_DONE;
		}
	}
}
