/*
 * shared/tls.c -- server and client SSL_CTX setup, and hot reload.
 *
 * The server context is rebuilt from scratch on every reload rather than
 * patched in place: SSL_CTX_use_certificate on a live context would change
 * the certificate under handshakes in progress, and a half-applied update
 * (new certificate, old key) must never be visible.  Building a second
 * context and swapping one pointer gives "all or nothing" for free, and
 * OpenSSL's own reference counting (each SSL holds a reference to the
 * SSL_CTX it was made from) keeps the old context alive exactly as long as
 * connections still use it.
 *
 * Change detection keeps the stat(2) identity of both files as of the last
 * attempt, failed or not.  Comparing against the last *attempt* (not the
 * last success) means a broken file is reported once and then ignored
 * until it changes again, instead of on every periodic check.
 */
#include "shared/tls.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * TLS 1.2 suites: ECDHE/DHE key exchange (forward secrecy) with AEAD
 * ciphers only, ECDSA before RSA; this is the common "intermediate"
 * server profile.  TLS 1.3 suites stay at OpenSSL's defaults, which are
 * all AEAD.
 */
#define TLS_CIPHERS_12                                                                             \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                               \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/* OpenSSL security level 2: keys of at least 112-bit strength (RSA 2048,
 * P-256), no SHA-1 signatures.  Raised to it if the system sets less. */
#define TLS_SECURITY_LEVEL 2

/* Server-side session cache (TLS 1.2 session IDs): bounded, 5 minutes. */
#define TLS_SESSION_CACHE_SIZE 8192
#define TLS_SESSION_TIMEOUT_S  300
#define TLS_SESSION_ID_CONTEXT "tailpost"

struct tls_file_id {
	int err; /* errno of a failed stat(2), else 0 */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
};

struct tls_ctx {
	char *cert_file, *key_file;
	SSL_CTX *ssl_ctx;                   /* current; we own one reference */
	struct tls_file_id cert_id, key_id; /* as of the last load attempt */
	unsigned generation;
};

static _Thread_local char tls_errbuf[768];

static const char *tls_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *tls_errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tls_errbuf, sizeof(tls_errbuf), fmt, ap);
	va_end(ap);
	return tls_errbuf;
}

/*
 * The reason of the earliest queued OpenSSL error (the root cause: later
 * entries are wrappers such as "PEM lib"), then clear the queue so that it
 * never leaks into an unrelated later call.
 */
static const char *tls_ossl_reason(char *buf, size_t bufsz)
{
	unsigned long e = ERR_peek_error();
	const char *r;

	if (e == 0) {
		snprintf(buf, bufsz, "unknown OpenSSL error");
	} else if ((r = ERR_reason_error_string(e)) != NULL) {
		snprintf(buf, bufsz, "%s", r);
	} else {
		ERR_error_string_n(e, buf, bufsz);
	}
	ERR_clear_error();
	return buf;
}

static void tls_file_stat(const char *path, struct tls_file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (stat(path, &st) < 0) {
		id->err = errno != 0 ? errno : EIO;
		return;
	}
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtim = st.st_mtim;
	id->ctim = st.st_ctim;
}

static bool tls_file_id_equal(const struct tls_file_id *a, const struct tls_file_id *b)
{
	return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
	       a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* A daemon has no terminal to ask for a passphrase: an encrypted key must
 * fail to load instead of blocking on /dev/tty (OpenSSL's default). */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static bool tls_key_mismatch(unsigned long e)
{
	return ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
	                                          ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
}

/* Settings shared by server and client contexts. */
static int tls_ctx_common(SSL_CTX *c)
{
	/* RFC 8996: TLS 1.0 and 1.1 are deprecated; never negotiate them. */
	if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
		return -1;
	/* Renegotiation buys nothing for mail and has been a DoS vector. */
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* Idle IMAP connections are the common case: give their read/write
	 * buffers back; our output buffers may move between SSL_write retries. */
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_default_passwd_cb(c, tls_no_passphrase);
	if (SSL_CTX_get_security_level(c) < TLS_SECURITY_LEVEL)
		SSL_CTX_set_security_level(c, TLS_SECURITY_LEVEL);
	return 0;
}

/* A complete new server SSL_CTX, or NULL with *errstr_r. */
static SSL_CTX *tls_server_ctx_load(const char *cert_file, const char *key_file,
                                    const char **errstr_r)
{
	char reason[256];
	SSL_CTX *c;

	ERR_clear_error();
	c = SSL_CTX_new(TLS_server_method());
	if (c == NULL) {
		*errstr_r = tls_errf("tls: cannot create a server context: %s",
		                     tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	if (SSL_CTX_set_cipher_list(c, TLS_CIPHERS_12) != 1 || tls_ctx_common(c) < 0) {
		*errstr_r = tls_errf("tls: cannot configure the server context: %s",
		                     tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	/* Parameters for the DHE suites, sized to the certificate's key. */
	SSL_CTX_set_dh_auto(c, 1);
	if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
		*errstr_r = tls_errf("tls: certificate chain %s: %s", cert_file,
		                     tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL checks the key against the certificate here already;
		 * say so plainly, it is the usual mid-renewal mistake. */
		if (tls_key_mismatch(ERR_peek_error()))
			*errstr_r = tls_errf(
			        "tls: private key %s does not match certificate %s: %s", key_file,
			        cert_file, tls_ossl_reason(reason, sizeof(reason)));
		else
			*errstr_r = tls_errf("tls: private key %s: %s", key_file,
			                     tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		*errstr_r = tls_errf("tls: private key %s does not match certificate %s: %s",
		                     key_file, cert_file, tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(c, TLS_SESSION_CACHE_SIZE);
	SSL_CTX_set_timeout(c, TLS_SESSION_TIMEOUT_S);
	SSL_CTX_set_session_id_context(c, (const unsigned char *)TLS_SESSION_ID_CONTEXT,
	                               sizeof(TLS_SESSION_ID_CONTEXT) - 1);
	return c;
fail:
	SSL_CTX_free(c);
	return NULL;
}

int tls_ctx_reload(struct tls_ctx *ctx, const char **errstr_r)
{
	SSL_CTX *c;

	/* Stat before reading, so a change racing with the read is seen by
	 * the next check rather than lost. */
	tls_file_stat(ctx->cert_file, &ctx->cert_id);
	tls_file_stat(ctx->key_file, &ctx->key_id);
	if (ctx->cert_id.err != 0) {
		*errstr_r = tls_errf("tls: certificate chain %s: %s", ctx->cert_file,
		                     strerror(ctx->cert_id.err));
		return -1;
	}
	if (ctx->key_id.err != 0) {
		*errstr_r = tls_errf("tls: private key %s: %s", ctx->key_file,
		                     strerror(ctx->key_id.err));
		return -1;
	}
	c = tls_server_ctx_load(ctx->cert_file, ctx->key_file, errstr_r);
	if (c == NULL)
		return -1;
	/* Drop only our reference: SSLs made from the old context keep it. */
	SSL_CTX_free(ctx->ssl_ctx);
	ctx->ssl_ctx = c;
	ctx->generation++;
	return 0;
}

int tls_ctx_maybe_reload(struct tls_ctx *ctx, const char **errstr_r)
{
	struct tls_file_id cert_id, key_id;

	tls_file_stat(ctx->cert_file, &cert_id);
	tls_file_stat(ctx->key_file, &key_id);
	if (tls_file_id_equal(&cert_id, &ctx->cert_id) && tls_file_id_equal(&key_id, &ctx->key_id))
		return 0;
	return tls_ctx_reload(ctx, errstr_r) == 0 ? 1 : -1;
}

struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, const char **errstr_r)
{
	struct tls_ctx *ctx = xcalloc(1, sizeof(*ctx));

	ctx->cert_file = xstrdup(cert_file);
	ctx->key_file = xstrdup(key_file);
	if (tls_ctx_reload(ctx, errstr_r) < 0)
		goto fail;
	return ctx;
fail:
	tls_ctx_free(&ctx);
	return NULL;
}

SSL *tls_ctx_ssl_new(struct tls_ctx *ctx)
{
	/* SSL_new takes its own reference on ctx->ssl_ctx. */
	SSL *ssl = SSL_new(ctx->ssl_ctx);

	if (ssl == NULL)
		fatal("msg=\"SSL_new failed\" reason=out-of-memory");
	SSL_set_accept_state(ssl);
	return ssl;
}

unsigned tls_ctx_generation(const struct tls_ctx *ctx)
{
	return ctx->generation;
}

void tls_ctx_free(struct tls_ctx **ctxp)
{
	struct tls_ctx *ctx = *ctxp;

	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx->cert_file);
	free(ctx->key_file);
	free(ctx);
	*ctxp = NULL;
}

int tls_ssl_info(const SSL *ssl, struct tls_info *info)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	const char *iana;

	if (c == NULL) {
		info->version = info->cipher = info->iana = "unknown";
		info->bits = 0;
		return -1;
	}
	info->version = SSL_get_version(ssl);
	info->cipher = SSL_CIPHER_get_name(c);
	iana = SSL_CIPHER_standard_name(c);
	info->iana = iana != NULL ? iana : info->cipher;
	info->bits = SSL_CIPHER_get_bits(c, NULL);
	return 0;
}

SSL_CTX *tls_client_ctx_new(bool verify, const char *ca_file, const char **errstr_r)
{
	char reason[256];
	SSL_CTX *c;

	ERR_clear_error();
	c = SSL_CTX_new(TLS_client_method());
	if (c == NULL || tls_ctx_common(c) < 0) {
		*errstr_r = tls_errf("tls: cannot create a client context: %s",
		                     tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	if (!verify) {
		SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
		return c;
	}
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1) {
			*errstr_r = tls_errf("tls: CA file %s: %s", ca_file,
			                     tls_ossl_reason(reason, sizeof(reason)));
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(c) != 1) {
		*errstr_r = tls_errf("tls: system trust store: %s",
		                     tls_ossl_reason(reason, sizeof(reason)));
		goto fail;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	return c;
fail:
	SSL_CTX_free(c);
	return NULL;
}

static bool tls_is_ip_literal(const char *host)
{
	unsigned char tmp[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

SSL *tls_client_ssl_new(SSL_CTX *cctx, const char *host)
{
	SSL *ssl = SSL_new(cctx);
	bool ip;

	if (ssl == NULL)
		fatal("msg=\"SSL_new failed\" reason=out-of-memory");
	SSL_set_connect_state(ssl);
	if (host == NULL)
		return ssl;
	ip = tls_is_ip_literal(host);
	/* RFC 6066 3: HostName is a DNS name; IP literals are not sent. */
	/* The macro takes void * but OpenSSL copies the name; the integer
	 * round trip only hides the const from -Wcast-qual. */
	if (!ip && SSL_set_tlsext_host_name(ssl, (char *)(uintptr_t)host) != 1)
		goto fail;
	if ((SSL_CTX_get_verify_mode(cctx) & SSL_VERIFY_PEER) == 0)
		return ssl;
	if (ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
			goto fail;
	} else {
		/* RFC 6125 6.4.3: a wildcard is the whole left-most label only. */
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, host) != 1)
			goto fail;
	}
	return ssl;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}
