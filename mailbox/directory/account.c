/*
 * mailbox/directory/account.c -- accounts and their addresses (blocking,
 * for the CLI; see directory.h).
 *
 * An account is created in one transaction with its INBOX (RFC 9051
 * 5.1: INBOX always exists) and, when the login is an address in one of
 * our domains, that address; so a half-created account never exists.
 */
#include "mailbox/directory/directory.h"

#include "mailbox/directory/password.h"
#include "mailbox/store/pg.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tx(PGconn *c, const char *what)
{
	PGresult *res = PQexec(c, what);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;

	PQclear(res);
	return rc;
}

/* Login names: an address, or a plain name of [a-z0-9._-]. */
static int login_normalize(const char *in, char *out, size_t outsz, const char **errstr_r)
{
	size_t n;

	if (in != NULL && strchr(in, '@') != NULL)
		return dir_address_normalize(in, false, out, outsz, errstr_r);
	n = in != NULL ? strlen(in) : 0;
	if (n == 0 || n > 64 || n >= outsz) {
		*errstr_r = "login must be 1..64 bytes";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == '-')) {
			*errstr_r = "login must be an address or [a-z0-9._-]";
			return -1;
		}
		out[i] = ch;
	}
	out[n] = '\0';
	return 0;
}

int dir_account_add(PGconn *c, const char *login, const char *hash, enum dir_role role,
                    int64_t quota_bytes, int64_t *id_r, char *err, size_t errsz)
{
	char l[300], why[512], state[6], quota[32], idbuf[32];
	const char *e = NULL, *params[4];
	PGresult *res = NULL;

	if (login_normalize(login, l, sizeof(l), &e) < 0) {
		snprintf(err, errsz, "login '%s': %s", login != NULL ? login : "", e);
		return -1;
	}
	if (hash == NULL || !password_hash_supported(hash)) {
		snprintf(err, errsz, "account '%s': unsupported password hash", l);
		return -1;
	}
	if (quota_bytes < 0) {
		snprintf(err, errsz, "account '%s': negative quota", l);
		return -1;
	}
	snprintf(quota, sizeof(quota), "%lld", (long long)quota_bytes);
	if (tx(c, "BEGIN") < 0) {
		snprintf(err, errsz, "account '%s': %s", l, PQerrorMessage(c));
		return -1;
	}
	params[0] = l;
	params[1] = dir_role_name(role);
	params[2] = hash;
	params[3] = quota;
	res = pg_exec(c,
	              "INSERT INTO accounts(login, role, password_hash, quota_bytes)"
	              " VALUES ($1, $2, $3, $4) RETURNING id",
	              4, params, why, sizeof(why), state);
	if (res == NULL) {
		if (strcmp(state, "23505") == 0)
			snprintf(err, errsz, "account '%s' already exists", l);
		else
			snprintf(err, errsz, "account '%s': %s", l, why);
		goto fail;
	}
	snprintf(idbuf, sizeof(idbuf), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	params[0] = idbuf;
	res = pg_exec(c, "SELECT tp_mailbox_create($1, 'INBOX', NULL)", 1, params, why, sizeof(why),
	              NULL);
	if (res == NULL) {
		snprintf(err, errsz, "account '%s': INBOX: %s", l, why);
		goto fail;
	}
	PQclear(res);
	if (strchr(l, '@') != NULL) {
		/* the login is an address: deliver it here if the domain is ours */
		params[0] = l;
		params[1] = idbuf;
		res = pg_exec(c,
		              "INSERT INTO addresses(address, domain_id, account_id)"
		              " SELECT $1, d.id, $2 FROM domains d"
		              " WHERE d.name = split_part($1, '@', 2)"
		              " ON CONFLICT (address) DO NOTHING",
		              2, params, why, sizeof(why), NULL);
		if (res == NULL) {
			snprintf(err, errsz, "account '%s': address: %s", l, why);
			goto fail;
		}
		PQclear(res);
	}
	res = NULL;
	if (tx(c, "COMMIT") < 0) {
		snprintf(err, errsz, "account '%s': commit: %s", l, PQerrorMessage(c));
		goto fail;
	}
	if (id_r != NULL)
		*id_r = atoll(idbuf);
	return 0;
fail:
	tx(c, "ROLLBACK");
	return -1;
}

static int exec_one(PGconn *c, const char *sql, int n, const char *const *params, const char *login,
                    char *err, size_t errsz)
{
	char why[512];
	PGresult *res = pg_exec(c, sql, n, params, why, sizeof(why), NULL);

	if (res == NULL) {
		snprintf(err, errsz, "account '%s': %s", login, why);
		return -1;
	}
	if (atoi(PQcmdTuples(res)) == 0) {
		PQclear(res);
		snprintf(err, errsz, "no account '%s'", login);
		return -1;
	}
	PQclear(res);
	return 0;
}

int dir_account_del(PGconn *c, const char *login, char *err, size_t errsz)
{
	char l[300];
	const char *e = NULL, *params[1];

	if (login_normalize(login, l, sizeof(l), &e) < 0) {
		snprintf(err, errsz, "login '%s': %s", login != NULL ? login : "", e);
		return -1;
	}
	params[0] = l;
	/* cascades to addresses, mailboxes and messages */
	return exec_one(c, "DELETE FROM accounts WHERE login = $1", 1, params, l, err, errsz);
}

int dir_account_set_hash(PGconn *c, const char *login, const char *hash, char *err, size_t errsz)
{
	char l[300];
	const char *e = NULL, *params[2];

	if (login_normalize(login, l, sizeof(l), &e) < 0) {
		snprintf(err, errsz, "login '%s': %s", login != NULL ? login : "", e);
		return -1;
	}
	if (hash == NULL || !password_hash_supported(hash)) {
		snprintf(err, errsz, "account '%s': unsupported password hash", l);
		return -1;
	}
	params[0] = l;
	params[1] = hash;
	return exec_one(c, "UPDATE accounts SET password_hash = $2 WHERE login = $1", 2, params, l,
	                err, errsz);
}

int dir_account_set(PGconn *c, const char *login, const enum dir_role *role,
                    const int64_t *quota_bytes, const bool *disabled, char *err, size_t errsz)
{
	char l[300], q[32];
	const char *e = NULL, *params[4];

	if (login_normalize(login, l, sizeof(l), &e) < 0) {
		snprintf(err, errsz, "login '%s': %s", login != NULL ? login : "", e);
		return -1;
	}
	if (quota_bytes != NULL && *quota_bytes < 0) {
		snprintf(err, errsz, "account '%s': negative quota", l);
		return -1;
	}
	params[0] = l;
	params[1] = role != NULL ? dir_role_name(*role) : NULL;
	if (quota_bytes != NULL)
		snprintf(q, sizeof(q), "%lld", (long long)*quota_bytes);
	params[2] = quota_bytes != NULL ? q : NULL;
	params[3] = disabled != NULL ? (*disabled ? "t" : "f") : NULL;
	return exec_one(c,
	                "UPDATE accounts SET role = coalesce($2, role),"
	                " quota_bytes = coalesce($3::bigint, quota_bytes),"
	                " disabled = coalesce($4::boolean, disabled) WHERE login = $1",
	                4, params, l, err, errsz);
}

static const char account_select[] =
        "SELECT ac.id, ac.login, ac.role, ac.quota_bytes, ac.disabled,"
        " coalesce(array_to_string(array_agg(ad.address ORDER BY ad.address)"
        "   FILTER (WHERE ad.address IS NOT NULL), ' '), '')"
        " FROM accounts ac LEFT JOIN addresses ad ON ad.account_id = ac.id";

static void account_from_row(const PGresult *res, int i, struct dir_account *a)
{
	const char *addrs = PQgetvalue(res, i, 5);

	memset(a, 0, sizeof(*a));
	a->id = atoll(PQgetvalue(res, i, 0));
	a->login = xstrdup(PQgetvalue(res, i, 1));
	a->role = strcmp(PQgetvalue(res, i, 2), "admin") == 0 ? DIR_ROLE_ADMIN : DIR_ROLE_USER;
	a->quota_bytes = atoll(PQgetvalue(res, i, 3));
	a->disabled = strcmp(PQgetvalue(res, i, 4), "t") == 0;
	/* addresses hold no spaces (dir_address_normalize), so ' ' separates */
	while (*addrs != '\0') {
		size_t n = strcspn(addrs, " ");
		a->addresses = xreallocarray(a->addresses, a->naddresses + 1, sizeof(char *));
		a->addresses[a->naddresses++] = xstrndup(addrs, n);
		addrs += n;
		while (*addrs == ' ')
			addrs++;
	}
}

int dir_account_get(PGconn *c, const char *login, struct dir_account *out, char *err, size_t errsz)
{
	char l[300], why[512], *sql;
	const char *e = NULL, *params[1];
	PGresult *res;

	memset(out, 0, sizeof(*out));
	if (login_normalize(login, l, sizeof(l), &e) < 0) {
		snprintf(err, errsz, "login '%s': %s", login != NULL ? login : "", e);
		return -1;
	}
	params[0] = l;
	sql = xasprintf("%s WHERE ac.login = $1 GROUP BY ac.id", account_select);
	res = pg_exec(c, sql, 1, params, why, sizeof(why), NULL);
	free(sql);
	if (res == NULL) {
		snprintf(err, errsz, "account '%s': %s", l, why);
		return -1;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		snprintf(err, errsz, "no account '%s'", l);
		return -1;
	}
	account_from_row(res, 0, out);
	PQclear(res);
	return 0;
}

int dir_account_list(PGconn *c, struct dir_account **v_r, size_t *n_r, char *err, size_t errsz)
{
	char why[512], *sql;
	PGresult *res;
	int n;

	*v_r = NULL;
	*n_r = 0;
	sql = xasprintf("%s GROUP BY ac.id ORDER BY ac.login", account_select);
	res = pg_exec(c, sql, 0, NULL, why, sizeof(why), NULL);
	free(sql);
	if (res == NULL) {
		snprintf(err, errsz, "accounts: %s", why);
		return -1;
	}
	n = PQntuples(res);
	*v_r = xcalloc((size_t)n + 1, sizeof(**v_r));
	for (int i = 0; i < n; i++)
		account_from_row(res, i, &(*v_r)[i]);
	*n_r = (size_t)n;
	PQclear(res);
	return 0;
}

void dir_account_clear(struct dir_account *a)
{
	if (a == NULL)
		return;
	free(a->login);
	for (size_t i = 0; i < a->naddresses; i++)
		free(a->addresses[i]);
	free(a->addresses);
	memset(a, 0, sizeof(*a));
}

void dir_accounts_free(struct dir_account **vp, size_t n)
{
	if (vp == NULL || *vp == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		dir_account_clear(&(*vp)[i]);
	free(*vp);
	*vp = NULL;
}

int dir_address_add(PGconn *c, const char *address, const char *login, char *err, size_t errsz)
{
	char a[300], l[300], why[512], state[6];
	const char *e = NULL, *params[2];
	PGresult *res;

	if (dir_address_normalize(address, true, a, sizeof(a), &e) < 0) {
		snprintf(err, errsz, "address '%s': %s", address != NULL ? address : "", e);
		return -1;
	}
	if (login_normalize(login, l, sizeof(l), &e) < 0) {
		snprintf(err, errsz, "login '%s': %s", login != NULL ? login : "", e);
		return -1;
	}
	params[0] = a;
	params[1] = l;
	res = pg_exec(c,
	              "INSERT INTO addresses(address, domain_id, account_id)"
	              " SELECT $1, d.id, ac.id FROM domains d, accounts ac"
	              " WHERE d.name = split_part($1, '@', 2) AND ac.login = $2",
	              2, params, why, sizeof(why), state);
	if (res == NULL) {
		if (strcmp(state, "23505") == 0)
			snprintf(err, errsz, "address '%s' is already in use", a);
		else
			snprintf(err, errsz, "address '%s': %s", a, why);
		return -1;
	}
	if (atoi(PQcmdTuples(res)) == 0) {
		PQclear(res);
		snprintf(err, errsz, "address '%s': unknown domain or no account '%s'", a, l);
		return -1;
	}
	PQclear(res);
	return 0;
}
