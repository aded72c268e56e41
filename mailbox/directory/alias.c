/*
 * mailbox/directory/alias.c -- aliases: an address (or a domain's
 * catch-all "@domain") that expands to a list of targets (blocking, for
 * the CLI; see directory.h).  Expansion happens at lookup time, in SQL
 * (tp_rcpt_lookup), so changing an account never leaves a stale alias.
 */
#include "mailbox/directory/directory.h"

#include "mailbox/store/pg.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A Postgres text[] literal of already validated, quote-free strings. */
static char *array_literal(char **v, size_t n)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	buf_puts(&b, "{");
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s\"%s\"", i > 0 ? "," : "", v[i]);
	buf_puts(&b, "}");
	s = xstrndup((const char *)buf_ptr(&b), buf_len(&b));
	buf_free(&b);
	return s;
}

int dir_alias_add(PGconn *c, const char *address, const char *const *targets, size_t n, char *err,
                  size_t errsz)
{
	char a[300], why[512];
	char **norm = NULL, *arr = NULL;
	const char *e = NULL, *params[2];
	PGresult *res;
	int rc = -1;

	if (dir_address_normalize(address, true, a, sizeof(a), &e) < 0) {
		snprintf(err, errsz, "alias '%s': %s", address != NULL ? address : "", e);
		return -1;
	}
	if (n == 0 || n > 1000) {
		snprintf(err, errsz, "alias '%s': 1..1000 targets required", a);
		return -1;
	}
	norm = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		char t[300];
		/* a target is an address, or an account login */
		if (targets[i] != NULL && strchr(targets[i], '@') != NULL) {
			if (dir_address_normalize(targets[i], false, t, sizeof(t), &e) < 0) {
				snprintf(err, errsz, "alias '%s': target '%s': %s", a, targets[i],
				         e);
				goto fail;
			}
		} else {
			struct dir_account acc;
			char why2[256];
			if (dir_account_get(c, targets[i], &acc, why2, sizeof(why2)) < 0) {
				snprintf(err, errsz, "alias '%s': target '%s': %s", a,
				         targets[i] != NULL ? targets[i] : "", why2);
				goto fail;
			}
			snprintf(t, sizeof(t), "%s", acc.login);
			dir_account_clear(&acc);
		}
		norm[i] = xstrdup(t);
	}
	arr = array_literal(norm, n);
	params[0] = a;
	params[1] = arr;
	res = pg_exec(c,
	              "INSERT INTO addresses(address, domain_id, targets)"
	              " SELECT $1, d.id, $2::text[] FROM domains d"
	              " WHERE d.name = substr($1, strpos($1, '@') + 1)"
	              " ON CONFLICT (address) DO UPDATE SET targets = excluded.targets,"
	              "   account_id = NULL",
	              2, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "alias '%s': %s", a, why);
		goto fail;
	}
	if (atoi(PQcmdTuples(res)) == 0) {
		PQclear(res);
		snprintf(err, errsz, "alias '%s': domain '%s' does not exist", a,
		         strchr(a, '@') + 1);
		goto fail;
	}
	PQclear(res);
	rc = 0;
fail:
	for (size_t i = 0; i < n && norm != NULL; i++)
		free(norm[i]);
	free(norm);
	free(arr);
	return rc;
}

int dir_alias_del(PGconn *c, const char *address, char *err, size_t errsz)
{
	char a[300], why[512];
	const char *e = NULL, *params[1];
	PGresult *res;

	if (dir_address_normalize(address, true, a, sizeof(a), &e) < 0) {
		snprintf(err, errsz, "alias '%s': %s", address != NULL ? address : "", e);
		return -1;
	}
	params[0] = a;
	res = pg_exec(c, "DELETE FROM addresses WHERE address = $1", 1, params, why, sizeof(why),
	              NULL);
	if (res == NULL) {
		snprintf(err, errsz, "alias '%s': %s", a, why);
		return -1;
	}
	if (atoi(PQcmdTuples(res)) == 0) {
		PQclear(res);
		snprintf(err, errsz, "no alias or address '%s'", a);
		return -1;
	}
	PQclear(res);
	return 0;
}

int dir_alias_list(PGconn *c, const char *domain, struct dir_alias **v_r, size_t *n_r, char *err,
                   size_t errsz)
{
	char why[512], d[256];
	const char *e = NULL, *params[1];
	PGresult *res;
	struct dir_alias *v;
	int n;

	*v_r = NULL;
	*n_r = 0;
	if (domain != NULL && dir_domain_normalize(domain, d, sizeof(d), &e) < 0) {
		snprintf(err, errsz, "domain '%s': %s", domain, e);
		return -1;
	}
	params[0] = domain != NULL ? d : NULL;
	res = pg_exec(c,
	              "SELECT ad.address, ac.login, array_to_string(ad.targets, ' ')"
	              " FROM addresses ad JOIN domains dm ON dm.id = ad.domain_id"
	              " LEFT JOIN accounts ac ON ac.id = ad.account_id"
	              " WHERE $1::text IS NULL OR dm.name = $1 ORDER BY ad.address",
	              1, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "aliases: %s", why);
		return -1;
	}
	n = PQntuples(res);
	v = xcalloc((size_t)n + 1, sizeof(*v));
	for (int i = 0; i < n; i++) {
		v[i].address = xstrdup(PQgetvalue(res, i, 0));
		if (!PQgetisnull(res, i, 1))
			v[i].account = xstrdup(PQgetvalue(res, i, 1));
		if (!PQgetisnull(res, i, 2)) {
			const char *t = PQgetvalue(res, i, 2);
			while (*t != '\0') {
				size_t k = strcspn(t, " ");
				v[i].targets = xreallocarray(v[i].targets, v[i].ntargets + 1,
				                             sizeof(char *));
				v[i].targets[v[i].ntargets++] = xstrndup(t, k);
				t += k;
				while (*t == ' ')
					t++;
			}
		}
	}
	PQclear(res);
	*v_r = v;
	*n_r = (size_t)n;
	return 0;
}

void dir_aliases_free(struct dir_alias **vp, size_t n)
{
	if (vp == NULL || *vp == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free((*vp)[i].address);
		free((*vp)[i].account);
		for (size_t j = 0; j < (*vp)[i].ntargets; j++)
			free((*vp)[i].targets[j]);
		free((*vp)[i].targets);
	}
	free(*vp);
	*vp = NULL;
}
