/*
 * mailbox/directory/auth.c -- credentials check: lookup_auth, then the
 * password hash on the password thread pool (see auth.h).
 *
 * Unknown logins are verified against a fixed argon2id hash with our own
 * parameters, so "no such user" costs what "wrong password" costs and a
 * client cannot enumerate accounts by timing (the result is thrown away).
 */
#include "mailbox/directory/auth.h"

#include "mailbox/directory/lookup.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* argon2id, m=64 MiB, t=3, p=1 of a random password nobody knows. */
static const char dummy_hash[] = "$argon2id$v=19$m=65536,t=3,p=1$dGFpbHBvc3QtZHVtbXk$"
                                 "MaA73dqbGDUnsYYEuVaAIwR0tCuZyQnwUL/eLtJL+N8";

struct auth_req {
	struct pg_pool *pg;
	struct password_pool *pw;
	struct pg_req *lookup;
	struct password_req *verify;
	char *password;
	char *login;
	int64_t account_id;
	enum dir_role role;
	const char *reason; /* static */
	bool found, disabled;
	auth_cb *cb;
	void *arg;
};

static void req_free(struct auth_req *r)
{
	if (r->password != NULL) {
		OPENSSL_cleanse(r->password, strlen(r->password));
		free(r->password);
	}
	free(r->login);
	free(r);
}

static void finish(struct auth_req *r, enum auth_status st, const char *reason)
{
	struct auth_result res = {0};
	auth_cb *cb = r->cb;
	void *arg = r->arg;

	res.status = st;
	res.reason = reason;
	if (st == AUTH_OK) {
		res.account_id = r->account_id;
		res.login = r->login;
		res.role = r->role;
	}
	cb(arg, &res);
	req_free(r);
}

static void verified(void *arg, enum password_result pr)
{
	struct auth_req *r = arg;

	r->verify = NULL;
	if (!r->found)
		finish(r, AUTH_FAIL, "unknown user");
	else if (pr == PASSWORD_BAD_HASH)
		finish(r, AUTH_FAIL, "unsupported hash");
	else if (pr != PASSWORD_MATCH)
		finish(r, AUTH_FAIL, "bad password");
	else if (r->disabled)
		finish(r, AUTH_FAIL, "disabled");
	else
		finish(r, AUTH_OK, NULL);
}

static void looked_up(void *arg, const struct lookup_auth_result *lr)
{
	struct auth_req *r = arg;
	const char *hash = dummy_hash;

	r->lookup = NULL;
	if (lr->status == LOOKUP_AUTH_TEMPFAIL) {
		finish(r, AUTH_TEMPFAIL, "data store unavailable");
		return;
	}
	if (lr->status == LOOKUP_AUTH_FOUND) {
		r->found = true;
		r->account_id = lr->account_id;
		r->login = xstrdup(lr->login);
		r->role = lr->role;
		r->disabled = lr->disabled;
		hash = lr->password_hash;
	}
	r->verify = password_pool_verify(r->pw, hash, r->password, verified, r);
	/* the pool has its own copy now */
	OPENSSL_cleanse(r->password, strlen(r->password));
}

struct auth_req *auth_check(struct pg_pool *pg, struct password_pool *pw, const char *name,
                            const char *password, auth_cb *cb, void *arg)
{
	struct auth_req *r = xcalloc(1, sizeof(*r));

	r->pg = pg;
	r->pw = pw;
	r->cb = cb;
	r->arg = arg;
	r->password = xstrdup(password != NULL ? password : "");
	r->lookup = lookup_auth(pg, name, looked_up, r);
	return r;
}

void auth_req_cancel(struct auth_req **rp)
{
	struct auth_req *r;

	if (rp == NULL || *rp == NULL)
		return;
	r = *rp;
	*rp = NULL;
	pg_req_cancel(&r->lookup);
	password_req_cancel(&r->verify);
	req_free(r);
}
