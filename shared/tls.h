/*
 * shared/tls.h -- OpenSSL 3 contexts: a reloadable server context and a
 * client context for outbound SMTP.
 *
 * A struct tls_ctx owns one reference to the current SSL_CTX, built from a
 * PEM certificate chain file and a PEM key file.  TLS 1.2 is the minimum
 * (TLS 1.0 and 1.1 are refused, RFC 8996); TLS 1.2 offers only forward
 * secret AEAD suites; the session cache is OpenSSL's internal server cache.
 *
 * Reload without dropping sessions: tls_ctx_reload() builds a complete new
 * SSL_CTX and only then swaps it in and releases our reference to the old
 * one.  SSL_new() takes its own reference on the SSL_CTX it is made from
 * (OpenSSL counts SSL_CTX references, SSL_CTX_up_ref), so an SSL created
 * before a reload keeps the old certificate and context alive until
 * SSL_free(); connections made after it use the new files (TLS 1.2
 * sessions cached by the old context are not resumed by the new one: those
 * clients do one full handshake).  A reload that fails (missing file, bad
 * PEM, key not matching the certificate) changes nothing: the old context
 * stays in service.
 *
 * tls_ctx_maybe_reload() is the cheap check for SIGHUP or a periodic timer:
 * two stat(2) calls compared on device, inode, size, mtime and ctime, so a
 * rename into place (certbot's symlink swap, "mv new cert.pem") and an
 * in-place rewrite are both noticed.  The files are re-read by the process
 * as it runs then, usually after dropping privileges: the key file must be
 * readable by the daemon's user (e.g. through the ssl-cert group).
 *
 * Errors that name a file are formatted into a per-thread buffer: a
 * *errstr_r stays valid until the next tls_* call in the same thread.
 * Not thread-safe per struct tls_ctx: one loop owns it (each worker loop
 * may hold its own).
 */
#ifndef SHARED_TLS_H
#define SHARED_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct tls_ctx;

/*
 * Load cert_file (the leaf certificate first, then intermediates, PEM) and
 * key_file (PEM, unencrypted) into a new server context.  Returns the
 * context (free with tls_ctx_free), or NULL with *errstr_r naming the file
 * and OpenSSL's reason, e.g.
 *   "tls: certificate chain /etc/tp/cert.pem: no start line".
 * The paths are copied.
 */
struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, const char **errstr_r);

/*
 * A new server-mode SSL (accept state) made from the current context; the
 * caller attaches a fd or BIOs and owns it (SSL_free).  It holds its own
 * reference to that context, so it keeps working across reloads and even
 * after tls_ctx_free().  Aborts on allocation failure; never NULL.
 */
SSL *tls_ctx_ssl_new(struct tls_ctx *ctx);

/*
 * Re-read both files unconditionally into a new SSL_CTX and swap it in.
 * 0 on success; -1 with *errstr_r (as for tls_ctx_new) when the new files
 * are unusable, in which case the old context stays current.
 */
int tls_ctx_reload(struct tls_ctx *ctx, const char **errstr_r);

/*
 * Reload only if either file changed (device, inode, size, mtime or ctime)
 * since the last successful load or the last failed attempt.  Returns 1
 * when a new context was loaded, 0 when nothing changed (including "the
 * same broken files as the last failed attempt", so a periodic check logs
 * a bad file once, not on every tick), -1 with *errstr_r on a failed
 * reload or when a file cannot be stat'ed (the old context stays).
 */
int tls_ctx_maybe_reload(struct tls_ctx *ctx, const char **errstr_r);

/* How many successful loads so far (1 after tls_ctx_new); for logs/tests. */
unsigned tls_ctx_generation(const struct tls_ctx *ctx);

/* Release our reference to the SSL_CTX and free *ctx; NULL-safe; sets
 * *ctx to NULL.  SSLs already created stay valid. */
void tls_ctx_free(struct tls_ctx **ctx);

/*
 * Details of an established session, for logs and the Received: header
 * (RFC 8314 registers a Received: "tls" clause carrying the cipher suite
 * name from the IANA TLS registry, which is what `iana` holds).
 */
struct tls_info {
	const char *version; /* "TLSv1.3", "TLSv1.2" */
	const char *
	        cipher; /* OpenSSL name, "TLS_AES_256_GCM_SHA384" / "ECDHE-RSA-AES128-GCM-SHA256" */
	const char *iana; /* RFC name, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" */
	int bits;         /* symmetric strength in bits */
};

/*
 * Fill *info from ssl after the handshake.  The strings are static in
 * OpenSSL (valid for the life of the process).  Returns -1 (and "unknown"
 * strings, bits 0) if no cipher was negotiated yet.
 */
int tls_ssl_info(const SSL *ssl, struct tls_info *info);

/*
 * A client SSL_CTX for outbound SMTP (TLS 1.2 minimum, like the server).
 * verify: check the server's chain against ca_file (PEM bundle) or, when
 * ca_file is NULL, the system's default trust store; with verify false the
 * handshake accepts any certificate (RFC 7435 opportunistic encryption, as
 * plain STARTTLS to an MX is).  Returns an SSL_CTX the caller frees with
 * SSL_CTX_free, or NULL with *errstr_r naming ca_file.
 */
SSL_CTX *tls_client_ctx_new(bool verify, const char *ca_file, const char **errstr_r);

/*
 * A client-mode SSL (connect state) from cctx for a server named host:
 * sends host as SNI (RFC 6066 3; not for IP literals) and, when cctx
 * verifies, also requires the certificate to match host (RFC 6125; an IP
 * literal is matched against IP SANs).  host may be NULL (no SNI, no name
 * check).  Returns NULL if OpenSSL rejects host as a name to check; aborts
 * on allocation failure.
 */
SSL *tls_client_ssl_new(SSL_CTX *cctx, const char *host);

#endif
