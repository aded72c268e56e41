/*
 * mailbox/directory/lookup.c -- the daemon's asynchronous directory
 * lookups (see lookup.h).
 *
 * Each is one statement on the pool; the small context a callback needs
 * (the caller's callback and argument) is attached to the pool request
 * (pg_req_attach), so cancelling the request also frees it and a closed
 * session leaks nothing.
 */
#include "mailbox/directory/lookup.h"

#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lookup_ctx {
	union {
		lookup_rcpt_cb *rcpt;
		lookup_auth_cb *auth;
		lookup_token_cb *token;
	} cb;
	void *arg;
	const char *invalid; /* rcpt: static reason the address was refused */
};

static struct lookup_ctx *ctx_new(void *arg)
{
	struct lookup_ctx *c = xcalloc(1, sizeof(*c));

	c->arg = arg;
	return c;
}

/* --- recipients ---------------------------------------------------------------- */

static void rcpt_done(void *arg, const PGresult *res, const char *errstr)
{
	struct lookup_ctx *c = arg;
	struct lookup_rcpt_result r = {0};
	int64_t *accs = NULL;
	const char **fwd = NULL;
	int n;

	if (errstr != NULL) {
		r.status = LOOKUP_RCPT_TEMPFAIL;
		r.errstr = errstr;
		c->cb.rcpt(c->arg, &r);
		return;
	}
	if (c->invalid != NULL) {
		r.status = LOOKUP_RCPT_UNKNOWN;
		r.errstr = c->invalid;
		c->cb.rcpt(c->arg, &r);
		return;
	}
	n = PQntuples(res);
	if (n == 0) {
		r.status = LOOKUP_RCPT_NOT_LOCAL;
		c->cb.rcpt(c->arg, &r);
		return;
	}
	accs = xcalloc((size_t)n, sizeof(*accs));
	fwd = xcalloc((size_t)n, sizeof(*fwd));
	for (int i = 0; i < n; i++) {
		const char *kind = PQgetvalue(res, i, 0);
		if (strcmp(kind, "account") == 0) {
			accs[r.naccounts++] = atoll(PQgetvalue(res, i, 1));
			if (strcmp(PQgetvalue(res, i, 3), "t") == 0)
				r.nfull++;
		} else if (strcmp(kind, "forward") == 0)
			fwd[r.nforwards++] = PQgetvalue(res, i, 2);
	}
	r.status = (r.naccounts > 0 || r.nforwards > 0) ? LOOKUP_RCPT_LOCAL : LOOKUP_RCPT_UNKNOWN;
	r.accounts = accs;
	r.forwards = fwd;
	c->cb.rcpt(c->arg, &r);
	free(accs);
	free(fwd);
}

struct pg_req *lookup_rcpt(struct pg_pool *p, const char *address, lookup_rcpt_cb *cb, void *arg)
{
	struct lookup_ctx *c = ctx_new(arg);
	char a[300];
	const char *e = NULL, *params[1];
	struct pg_req *r;

	c->cb.rcpt = cb;
	if (dir_address_normalize(address, false, a, sizeof(a), &e) < 0) {
		/* answer from the loop all the same: a statement with no rows */
		c->invalid = e;
		r = pg_query(p, "SELECT NULL WHERE false", 0, NULL, rcpt_done, c);
	} else {
		params[0] = a;
		/* quota: the account's mailboxes keep their used bytes
		 * (mailboxes.used_bytes), so this is a sum over a few rows */
		r = pg_query(
		        p,
		        "SELECT l.kind, l.account_id, l.target,"
		        " coalesce(a.quota_bytes > 0 AND (SELECT coalesce(sum(mb.used_bytes), 0)"
		        " FROM mailboxes mb WHERE mb.account_id = a.id) >= a.quota_bytes, false)"
		        " FROM tp_rcpt_lookup($1) l LEFT JOIN accounts a ON a.id = l.account_id",
		        1, params, rcpt_done, c);
	}
	pg_req_attach(r, c);
	return r;
}

/* --- logins --------------------------------------------------------------------- */

static void auth_done(void *arg, const PGresult *res, const char *errstr)
{
	struct lookup_ctx *c = arg;
	struct lookup_auth_result r = {0};

	if (errstr != NULL) {
		r.status = LOOKUP_AUTH_TEMPFAIL;
		r.errstr = errstr;
	} else if (PQntuples(res) == 0) {
		r.status = LOOKUP_AUTH_NONE;
	} else {
		r.status = LOOKUP_AUTH_FOUND;
		r.account_id = atoll(PQgetvalue(res, 0, 0));
		r.login = PQgetvalue(res, 0, 1);
		r.password_hash = PQgetvalue(res, 0, 2);
		r.role = strcmp(PQgetvalue(res, 0, 3), "admin") == 0 ? DIR_ROLE_ADMIN
		                                                     : DIR_ROLE_USER;
		r.disabled = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
	}
	c->cb.auth(c->arg, &r);
}

struct pg_req *lookup_auth(struct pg_pool *p, const char *name, lookup_auth_cb *cb, void *arg)
{
	struct lookup_ctx *c = ctx_new(arg);
	const char *params[1] = {name != NULL ? name : ""};
	struct pg_req *r;

	c->cb.auth = cb;
	/* the login first: a login that is also someone's address wins */
	r = pg_query(p,
	             "SELECT id, login, password_hash, role, disabled FROM ("
	             " SELECT ac.*, 0 AS pref FROM accounts ac WHERE ac.login = lower($1)"
	             " UNION ALL"
	             " SELECT ac.*, 1 FROM addresses ad JOIN accounts ac ON ac.id = ad.account_id"
	             "  WHERE ad.address = lower($1)) x ORDER BY pref LIMIT 1",
	             1, params, auth_done, c);
	pg_req_attach(r, c);
	return r;
}

/* --- API tokens -------------------------------------------------------------------- */

static void token_done(void *arg, const PGresult *res, const char *errstr)
{
	struct lookup_ctx *c = arg;

	if (errstr != NULL)
		c->cb.token(c->arg, false, NULL, errstr);
	else if (PQntuples(res) == 0)
		c->cb.token(c->arg, false, NULL, NULL);
	else
		c->cb.token(c->arg, true, PQgetvalue(res, 0, 0), NULL);
}

struct pg_req *lookup_token(struct pg_pool *p, const char *token, lookup_token_cb *cb, void *arg)
{
	struct lookup_ctx *c = ctx_new(arg);
	char hex[65];
	const char *params[1] = {hex};
	struct pg_req *r;

	c->cb.token = cb;
	dir_token_hash(token != NULL ? token : "", hex);
	r = pg_query(p, "UPDATE api_tokens SET last_used = now() WHERE hash = $1 RETURNING name", 1,
	             params, token_done, c);
	pg_req_attach(r, c);
	return r;
}
