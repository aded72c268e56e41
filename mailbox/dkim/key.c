/*
 * mailbox/dkim/key.c -- DKIM key generation, loading and DNS TXT values,
 * on OpenSSL 3's EVP interface (EVP_PKEY_ED25519 and RSA alike).
 *
 * Generated keys are written as PKCS#8 PEM; loading accepts whatever
 * PEM_read_bio_PrivateKey() understands but keeps only RSA (>= 1024 bits)
 * and Ed25519 keys.  Private key material passes through memory BIOs only
 * and the PEM copy handed to the caller is the only one we leave behind.
 */
#include "mailbox/dkim/key.h"

#include "shared/xmalloc.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dkim_key {
	EVP_PKEY *pkey;
	enum dkim_alg alg;
};

const char *dkim_alg_name(enum dkim_alg alg)
{
	return alg == DKIM_ALG_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

const char *dkim_alg_key_type(enum dkim_alg alg)
{
	return alg == DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa";
}

int dkim_alg_parse(const char *s, enum dkim_alg *alg_r)
{
	if (strcasecmp(s, "rsa") == 0 || strcasecmp(s, "rsa-sha256") == 0) {
		*alg_r = DKIM_ALG_RSA_SHA256;
		return 0;
	}
	if (strcasecmp(s, "ed25519") == 0 || strcasecmp(s, "ed25519-sha256") == 0) {
		*alg_r = DKIM_ALG_ED25519_SHA256;
		return 0;
	}
	return -1;
}

char *dkim_key_generate_pem(enum dkim_alg alg, const char **errstr_r)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *pem = NULL, *mem;
	long n;

	if (alg == DKIM_ALG_ED25519_SHA256)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)DKIM_RSA_BITS);
	if (pkey == NULL) {
		*errstr_r = "key generation failed";
		goto fail;
	}
	bio = BIO_new(BIO_s_secmem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		*errstr_r = "cannot write the key as PEM";
		goto fail;
	}
	n = BIO_get_mem_data(bio, &mem);
	if (n <= 0) {
		*errstr_r = "cannot write the key as PEM";
		goto fail;
	}
	pem = xstrndup(mem, (size_t)n);
fail:
	BIO_free(bio); /* a secure-memory BIO is wiped on free */
	EVP_PKEY_free(pkey);
	return pem;
}

struct dkim_key *dkim_key_load_pem(const char *pem, size_t len, const char **errstr_r)
{
	struct dkim_key *k = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;

	if (len > INT32_MAX) {
		*errstr_r = "key too large";
		goto fail;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		*errstr_r = "out of memory";
		goto fail;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (pkey == NULL) {
		*errstr_r = "not a PEM private key";
		goto fail;
	}
	k = xcalloc(1, sizeof(*k));
	if (EVP_PKEY_is_a(pkey, "ED25519")) {
		k->alg = DKIM_ALG_ED25519_SHA256;
	} else if (EVP_PKEY_is_a(pkey, "RSA")) {
		/* RFC 8301 3.2: keys under 1024 bits must not be used */
		if (EVP_PKEY_get_bits(pkey) < 1024) {
			*errstr_r = "RSA key shorter than 1024 bits";
			goto fail;
		}
		k->alg = DKIM_ALG_RSA_SHA256;
	} else {
		*errstr_r = "key is neither RSA nor Ed25519";
		goto fail;
	}
	k->pkey = pkey;
	BIO_free(bio);
	return k;
fail:
	free(k);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return NULL;
}

void dkim_key_free(struct dkim_key **kp)
{
	if (*kp == NULL)
		return;
	EVP_PKEY_free((*kp)->pkey);
	free(*kp);
	*kp = NULL;
}

enum dkim_alg dkim_key_alg(const struct dkim_key *k)
{
	return k->alg;
}

void *dkim_key_evp(const struct dkim_key *k)
{
	return k->pkey;
}

/* base64 (RFC 4648 4) of n bytes, NUL-terminated, caller frees. */
static char *b64(const unsigned char *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

char *dkim_key_dns_txt(const struct dkim_key *k)
{
	unsigned char raw[32], *der = NULL;
	char *p64, *txt;
	size_t rawlen = sizeof(raw);
	int n;

	if (k->alg == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463 4: p= is the base64 of the raw 32-byte public key */
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &rawlen) != 1 || rawlen != 32)
			return NULL;
		p64 = b64(raw, rawlen);
	} else {
		/* RFC 6376 3.6.1: p= is the DER SubjectPublicKeyInfo, base64 */
		n = i2d_PUBKEY(k->pkey, &der);
		if (n <= 0)
			return NULL;
		p64 = b64(der, (size_t)n);
		OPENSSL_free(der);
	}
	txt = xasprintf("v=DKIM1; k=%s; p=%s", dkim_alg_key_type(k->alg), p64);
	free(p64);
	return txt;
}

char *dkim_key_dns_txt_pem(const char *pem, size_t len, const char **errstr_r)
{
	struct dkim_key *k = dkim_key_load_pem(pem, len, errstr_r);
	char *txt;

	if (k == NULL)
		return NULL;
	txt = dkim_key_dns_txt(k);
	if (txt == NULL)
		*errstr_r = "cannot encode the public key";
	dkim_key_free(&k);
	return txt;
}
