/*
 * mailbox/directory/password.c -- password hash verification and creation
 * (see password.h), plus the thread pool that keeps them off the loop.
 *
 * argon2 hashes go to libargon2, which parses the PHC string itself
 * ($argon2id$v=19$m=,t=,p=$salt$tag, RFC 9106 and the PHC string format)
 * and compares in constant time.  The crypt(3) family goes to libxcrypt's
 * crypt_rn(), which recomputes the hash with the stored setting; we compare
 * the result with CRYPTO_memcmp so the comparison leaks no prefix length.
 * A hash we cannot use is PASSWORD_BAD_HASH, never a match.
 */
#include "mailbox/directory/password.h"

#include "mailbox/store/workpool.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

/* RFC 9106 4: the second recommended option (memory-constrained). */
#define PW_T_COST   3
#define PW_M_COST   (64 * 1024) /* KiB */
#define PW_PARALLEL 1
#define PW_SALT_LEN 16
#define PW_TAG_LEN  32

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

static bool is_crypt_family(const char *hash)
{
	return has_prefix(hash, "$y$") || has_prefix(hash, "$6$") || has_prefix(hash, "$2b$") ||
	       has_prefix(hash, "$2y$") || has_prefix(hash, "$2a$");
}

static void wipe_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

enum password_result password_verify(const char *hash, const char *pw)
{
	if (hash == NULL || pw == NULL)
		return PASSWORD_BAD_HASH;
	if (has_prefix(hash, "$argon2id$") || has_prefix(hash, "$argon2i$")) {
		int rc = has_prefix(hash, "$argon2id$") ? argon2id_verify(hash, pw, strlen(pw))
		                                        : argon2i_verify(hash, pw, strlen(pw));
		if (rc == ARGON2_OK)
			return PASSWORD_MATCH;
		return rc == ARGON2_VERIFY_MISMATCH ? PASSWORD_MISMATCH : PASSWORD_BAD_HASH;
	}
	if (is_crypt_family(hash)) {
		struct crypt_data *cd = xcalloc(1, sizeof(*cd));
		const char *out = crypt_rn(pw, hash, cd, (int)sizeof(*cd));
		enum password_result r = PASSWORD_BAD_HASH;
		size_t n = strlen(hash);

		/* a complete hash recomputes to a string of its own length; a
		 * bare setting ("$6$salt") or a truncated hash does not */
		if (out != NULL && out[0] != '*' && strlen(out) == n)
			r = CRYPTO_memcmp(out, hash, n) == 0 ? PASSWORD_MATCH : PASSWORD_MISMATCH;
		OPENSSL_cleanse(cd, sizeof(*cd));
		free(cd);
		return r;
	}
	return PASSWORD_BAD_HASH;
}

char *password_hash(const char *pw, const char **errstr_r)
{
	uint8_t salt[PW_SALT_LEN];
	size_t len = argon2_encodedlen(PW_T_COST, PW_M_COST, PW_PARALLEL, PW_SALT_LEN, PW_TAG_LEN,
	                               Argon2_id);
	char *out = xmalloc(len + 1);
	int rc;

	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		*errstr_r = "no random bytes for the salt";
		free(out);
		return NULL;
	}
	rc = argon2id_hash_encoded(PW_T_COST, PW_M_COST, PW_PARALLEL, pw, strlen(pw), salt,
	                           sizeof(salt), PW_TAG_LEN, out, len);
	if (rc != ARGON2_OK) {
		*errstr_r = argon2_error_message(rc);
		free(out);
		return NULL;
	}
	return out;
}

bool password_hash_supported(const char *hash)
{
	if (hash == NULL)
		return false;
	if (has_prefix(hash, "$argon2id$") || has_prefix(hash, "$argon2i$")) {
		/* a well-formed hash decodes and fails to match a throwaway password */
		return password_verify(hash, "\x01tailpost-probe\x01") == PASSWORD_MISMATCH;
	}
	if (is_crypt_family(hash)) {
		struct crypt_data *cd = xcalloc(1, sizeof(*cd));
		const char *out = crypt_rn("probe", hash, cd, (int)sizeof(*cd));
		bool ok = out != NULL && out[0] != '*' && strlen(out) == strlen(hash);
		free(cd);
		return ok;
	}
	return false;
}

/* --- thread pool --------------------------------------------------------------- */

struct password_req {
	struct password_pool *pp;
	struct password_req *prev, *next;
	char *hash, *pw;
	enum password_result result;
	password_cb *cb;
	void *arg;
	bool cancelled;
};

struct password_pool {
	struct workpool *wp;
	struct password_req *reqs;
};

static void req_unlink_free(struct password_req *r)
{
	struct password_pool *pp = r->pp;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		pp->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	free(r->hash);
	wipe_free(r->pw);
	free(r);
}

static void verify_work(void *arg)
{
	struct password_req *r = arg;

	r->result = password_verify(r->hash, r->pw);
	/* the password is not needed any more */
	OPENSSL_cleanse(r->pw, strlen(r->pw));
}

static void verify_done(void *arg)
{
	struct password_req *r = arg;
	password_cb *cb = r->cancelled ? NULL : r->cb;
	void *cbarg = r->arg;
	enum password_result res = r->result;

	req_unlink_free(r);
	if (cb != NULL)
		cb(cbarg, res);
}

struct password_pool *password_pool_new(struct ev_loop *loop, int nthreads)
{
	struct password_pool *pp = xcalloc(1, sizeof(*pp));

	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > 16)
		nthreads = 16;
	pp->wp = workpool_new(loop, nthreads);
	return pp;
}

void password_pool_free(struct password_pool **ppp)
{
	struct password_pool *pp;

	if (ppp == NULL || *ppp == NULL)
		return;
	pp = *ppp;
	*ppp = NULL;
	/* joins the workers; no done callback runs after this */
	workpool_free(&pp->wp);
	while (pp->reqs != NULL)
		req_unlink_free(pp->reqs);
	free(pp);
}

struct password_req *password_pool_verify(struct password_pool *pp, const char *hash,
                                          const char *pw, password_cb *cb, void *arg)
{
	struct password_req *r = xcalloc(1, sizeof(*r));

	r->pp = pp;
	r->hash = xstrdup(hash != NULL ? hash : "");
	r->pw = xstrdup(pw != NULL ? pw : "");
	r->cb = cb;
	r->arg = arg;
	r->next = pp->reqs;
	if (pp->reqs != NULL)
		pp->reqs->prev = r;
	pp->reqs = r;
	workpool_submit(pp->wp, verify_work, verify_done, r);
	return r;
}

void password_req_cancel(struct password_req **rp)
{
	if (rp == NULL || *rp == NULL)
		return;
	(*rp)->cancelled = true;
	*rp = NULL;
}
