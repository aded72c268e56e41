/*
 * mailbox/dkim/key.h -- DKIM keys: generate, load, and the DNS TXT value.
 *
 * Two algorithms: rsa-sha256 (RFC 6376 3.3.1) with RSA keys, generated at
 * 2048 bits (RFC 8301 4: signers MUST use at least 1024, SHOULD 2048), and
 * ed25519-sha256 (RFC 8463).  Private keys are kept as PEM (PKCS#8 "PRIVATE
 * KEY"), which is what the dkim_keys table stores and what OpenSSL and
 * dkimpy read.  The public half goes into DNS as
 *
 *   v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>      (RFC 6376 3.6.1)
 *   v=DKIM1; k=ed25519; p=<base64 of the 32-byte raw key>    (RFC 8463 4)
 *
 * A struct dkim_key wraps an OpenSSL EVP_PKEY; it is immutable after load,
 * so one loaded key may sign on several threads at once.
 */
#ifndef MAILBOX_DKIM_KEY_H
#define MAILBOX_DKIM_KEY_H

#include <stddef.h>

enum dkim_alg {
	DKIM_ALG_RSA_SHA256 = 0,
	DKIM_ALG_ED25519_SHA256,
};

#define DKIM_RSA_BITS 2048

struct dkim_key;

/* "rsa-sha256" / "ed25519-sha256": the a= value. */
const char *dkim_alg_name(enum dkim_alg alg);
/* "rsa" / "ed25519": the k= value of the DNS record. */
const char *dkim_alg_key_type(enum dkim_alg alg);
/*
 * Parse "rsa", "rsa-sha256", "ed25519" or "ed25519-sha256" (ASCII case
 * ignored) into *alg_r.  0, or -1 if unknown.
 */
int dkim_alg_parse(const char *s, enum dkim_alg *alg_r);

/*
 * Generate a new private key for alg (RSA: DKIM_RSA_BITS bits) and return
 * it as a PEM string (PKCS#8) the caller frees (and should wipe with
 * OPENSSL_cleanse before freeing).  NULL with *errstr_r on an OpenSSL
 * failure.
 */
char *dkim_key_generate_pem(enum dkim_alg alg, const char **errstr_r);

/*
 * Load a private key from PEM (PKCS#8, or the traditional "RSA PRIVATE
 * KEY" form).  The algorithm follows from the key: RSA keys sign with
 * rsa-sha256, Ed25519 keys with ed25519-sha256; any other key type, and RSA
 * keys under 1024 bits (RFC 8301 3.2), are refused.  Returns a key to free
 * with dkim_key_free(), or NULL with *errstr_r.
 */
struct dkim_key *dkim_key_load_pem(const char *pem, size_t len, const char **errstr_r);
void dkim_key_free(struct dkim_key **kp);

enum dkim_alg dkim_key_alg(const struct dkim_key *k);
/* The key's OpenSSL object (EVP_PKEY *), borrowed; for the signer. */
void *dkim_key_evp(const struct dkim_key *k);

/*
 * The DNS TXT value for k's public half: "v=DKIM1; k=rsa; p=..." or
 * "v=DKIM1; k=ed25519; p=...", one unsplit string the caller frees (zone
 * files need it cut into <=255-byte strings: mailbox/outbound/dnsrecords.h
 * does that).
 */
char *dkim_key_dns_txt(const struct dkim_key *k);

/* The same from a private key in PEM; NULL with *errstr_r. */
char *dkim_key_dns_txt_pem(const char *pem, size_t len, const char **errstr_r);

#endif
