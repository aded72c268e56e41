/*
 * mailbox/directory/domain.c -- domains: add, delete, list (blocking, for
 * the CLI; see directory.h).
 *
 * The database's constraints are the authority (UNIQUE, foreign keys);
 * we translate their SQLSTATEs into sentences for the operator instead of
 * checking first and racing another admin.
 */
#include "mailbox/directory/directory.h"

#include "mailbox/store/pg.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dir_domain_add(PGconn *c, const char *name, char *err, size_t errsz)
{
	char d[256], why[512], state[6];
	const char *e = NULL, *params[1];
	PGresult *res;

	if (dir_domain_normalize(name, d, sizeof(d), &e) < 0) {
		snprintf(err, errsz, "domain '%s': %s", name != NULL ? name : "", e);
		return -1;
	}
	params[0] = d;
	res = pg_exec(c, "INSERT INTO domains(name) VALUES ($1)", 1, params, why, sizeof(why),
	              state);
	if (res == NULL) {
		if (strcmp(state, "23505") == 0)
			snprintf(err, errsz, "domain '%s' already exists", d);
		else
			snprintf(err, errsz, "domain '%s': %s", d, why);
		return -1;
	}
	PQclear(res);
	return 0;
}

int dir_domain_del(PGconn *c, const char *name, bool force, char *err, size_t errsz)
{
	char d[256], why[512];
	const char *e = NULL, *params[1];
	PGresult *res;
	long used;

	if (dir_domain_normalize(name, d, sizeof(d), &e) < 0) {
		snprintf(err, errsz, "domain '%s': %s", name != NULL ? name : "", e);
		return -1;
	}
	params[0] = d;
	res = pg_exec(
	        c,
	        "SELECT count(a.id) FROM domains d LEFT JOIN addresses a ON a.domain_id = d.id"
	        " WHERE d.name = $1 GROUP BY d.id",
	        1, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "domain '%s': %s", d, why);
		return -1;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		snprintf(err, errsz, "domain '%s' does not exist", d);
		return -1;
	}
	used = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (used > 0 && !force) {
		snprintf(err, errsz,
		         "domain '%s' still has %ld addresses or aliases (delete them, or force)",
		         d, used);
		return -1;
	}
	/* ON DELETE CASCADE removes the addresses and DKIM keys */
	res = pg_exec(c, "DELETE FROM domains WHERE name = $1", 1, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "domain '%s': %s", d, why);
		return -1;
	}
	PQclear(res);
	return 0;
}

int dir_domain_list(PGconn *c, struct dir_domain **v_r, size_t *n_r, char *err, size_t errsz)
{
	char why[512];
	PGresult *res;
	struct dir_domain *v;
	int n;

	*v_r = NULL;
	*n_r = 0;
	res = pg_exec(c,
	              "SELECT d.id, d.name, count(a.id) FROM domains d"
	              " LEFT JOIN addresses a ON a.domain_id = d.id GROUP BY d.id ORDER BY d.name",
	              0, NULL, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "domains: %s", why);
		return -1;
	}
	n = PQntuples(res);
	v = xcalloc((size_t)n + 1, sizeof(*v));
	for (int i = 0; i < n; i++) {
		v[i].id = atoll(PQgetvalue(res, i, 0));
		v[i].name = xstrdup(PQgetvalue(res, i, 1));
		v[i].addresses = atoll(PQgetvalue(res, i, 2));
	}
	PQclear(res);
	*v_r = v;
	*n_r = (size_t)n;
	return 0;
}

void dir_domains_free(struct dir_domain **vp, size_t n)
{
	if (vp == NULL || *vp == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*vp)[i].name);
	free(*vp);
	*vp = NULL;
}
