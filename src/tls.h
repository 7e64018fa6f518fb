/*
 * tls.h - terminating the net.tcp TLS upgrade (application/ssl-tls) with
 * OpenSSL: one SSL_CTX per distinct certificate setting, a non-blocking
 * server handshake, and the two forwarding directions of a terminated
 * connection (decrypt to the backend, encrypt to the client).
 */
#ifndef NETTCPD_TLS_H
#define NETTCPD_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "nmf.h"
#include "pump.h"

/* The upgrade protocol name nettcpd can terminate. */
#define TLS_UPGRADE_NAME "application/ssl-tls"
/* The TLS record types (change_cipher_spec .. application_data): the
 * first byte of any record. */
#define TLS_RECORD_FIRST 0x14
#define TLS_RECORD_LAST 0x17

struct tls_settings {
	const char *cert;          /* PEM: the certificate, then its chain */
	const char *key;           /* PEM private key */
	int min_version;           /* TLS1_2_VERSION or TLS1_3_VERSION */
	const char *ciphers;       /* TLS 1.2 cipher list, NULL for OpenSSL's default */
	const char *ciphersuites;  /* TLS 1.3 suites, NULL for OpenSSL's default */
	double session_timeout;    /* seconds a session ticket resumes; 0: none */
};

/* "1.2" or "1.3" to an OpenSSL version; -1 for anything else. */
int tls_parse_min_version(const char *text);

/* Which setting a context failed on, so a config error names its line. */
enum tls_setting {
	TLS_SETTING_CERT,
	TLS_SETTING_KEY,
	TLS_SETTING_MIN_VERSION,
	TLS_SETTING_CIPHERS,
	TLS_SETTING_CIPHERSUITES,
};

/*
 * Build a server context.  Returns NULL with the reason in err and the
 * setting at fault in *bad; a usable certificate that has expired or is not
 * yet valid still gives a context, with the reason in warn.  Both buffers
 * are set to "" first.
 */
SSL_CTX *tls_ctx_new(const struct tls_settings *s, enum tls_setting *bad,
    char *err, size_t errlen, char *warn, size_t warnlen);

/* When the certificate of ctx expires (its notAfter), Unix time; 0 when
 * it has none. */
double tls_ctx_not_after(SSL_CTX *ctx);

/* What a TLS step needs before it can go on. */
enum tls_step {
	TLS_STEP_DONE,       /* finished */
	TLS_STEP_WANT_READ,  /* wait until the client socket is readable */
	TLS_STEP_WANT_WRITE, /* wait until the client socket is writable */
	TLS_STEP_ERROR,      /* failed; tls_error() says why */
};

/* Advance the server handshake on a non-blocking socket. */
enum tls_step tls_accept(SSL *ssl);

/*
 * Read decrypted bytes.  Returns TLS_STEP_DONE with *got > 0, or with
 * *got == 0 at the end of the stream (close_notify, or a plain FIN: WCF
 * abandons the TLS stream without close_notify when it pools a socket).
 */
enum tls_step tls_read(SSL *ssl, void *buf, size_t len, size_t *got);

/* Write all of buf or part of it; *put says how much went out. */
enum tls_step tls_write(SSL *ssl, const void *buf, size_t len, size_t *put);

/* Send close_notify (once); errors are ignored, the socket closes next. */
void tls_close_notify(SSL *ssl);

/* Why the last step failed, from OpenSSL's error queue (which it empties). */
const char *tls_error(char *buf, size_t len);

/* The events a TLS forwarding direction waits for, per socket. */
struct tls_wants {
	int client;  /* 0, EV_READ or EV_WRITE */
	int backend; /* 0, EV_READ or EV_WRITE */
};

/*
 * One direction of a terminated connection.  up: decrypted client bytes to
 * the backend; down: backend bytes encrypted to the client.  Each passes the
 * end of its stream on (shutdown(SHUT_WR) to the backend, close_notify and
 * shutdown(SHUT_WR) to the client) and returns PUMP_DONE after that, or
 * PUMP_ERROR (errno or OpenSSL's queue says why), or PUMP_WANT_READ with
 * *wants saying which socket events to wait for.  With a flow, as pump_run()
 * does, the direction follows the session and returns PUMP_ENDED once its
 * End (or the byte before one the follower cannot place) is delivered,
 * holding in p->buf (p->held) what it read past that point; nothing more
 * is read from its source.
 */
enum pump_status tls_pump_up(struct pump *p, SSL *ssl, int backend,
    struct nmf_flow *flow, struct tls_wants *wants);
enum pump_status tls_pump_down(struct pump *p, SSL *ssl, int client,
    int backend, struct nmf_flow *flow, struct tls_wants *wants);

#endif
