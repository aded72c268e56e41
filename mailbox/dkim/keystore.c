/*
 * mailbox/dkim/keystore.c -- DKIM keys in Postgres (see keystore.h).
 *
 * As in mailbox/directory/, the database's constraints are the authority:
 * a duplicate selector is the UNIQUE (domain_id, selector) violation,
 * translated into a sentence, not a check-then-insert race.  The domain is
 * looked up first anyway so that an unknown domain is reported before an
 * RSA key is generated for nothing.
 */
#include "mailbox/dkim/keystore.h"

#include "mailbox/directory/directory.h"
#include "mailbox/store/pg.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

int dkim_keystore_selector_normalize(const char *in, char *out, size_t outsz, const char **errstr_r)
{
	size_t n = in != NULL ? strlen(in) : 0, label = 0;

	if (n == 0) {
		*errstr_r = "empty selector";
		return -1;
	}
	if (n > DKIM_SELECTOR_MAX || n >= outsz) {
		*errstr_r = "selector longer than 63 bytes";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];

		if (ch == '.') {
			if (label == 0) {
				*errstr_r = "empty label in selector";
				return -1;
			}
			label = 0;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		           (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
			label++;
		} else {
			*errstr_r = "a selector holds only letters, digits, '-', '_' and dots";
			return -1;
		}
		out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	if (label == 0) {
		*errstr_r = "empty label in selector";
		return -1;
	}
	out[n] = '\0';
	return 0;
}

/* The id of domain d (normalised), 0 when absent, -1 on error. */
static int64_t domain_id(PGconn *c, const char *d, char *err, size_t errsz)
{
	char why[512];
	const char *params[1] = {d};
	PGresult *res;
	int64_t id = 0;

	res = pg_exec(c, "SELECT id FROM domains WHERE name = $1", 1, params, why, sizeof(why),
	              NULL);
	if (res == NULL) {
		snprintf(err, errsz, "domain '%s': %s", d, why);
		return -1;
	}
	if (PQntuples(res) == 1)
		id = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (id == 0)
		snprintf(err, errsz, "domain '%s' does not exist", d);
	return id;
}

static int norm_domain(const char *in, char *out, size_t outsz, char *err, size_t errsz)
{
	const char *why = NULL;

	if (dir_domain_normalize(in, out, outsz, &why) < 0) {
		snprintf(err, errsz, "domain '%s': %s", in != NULL ? in : "", why);
		return -1;
	}
	return 0;
}

static void default_selector(enum dkim_alg alg, char *out, size_t outsz)
{
	time_t now = time(NULL);
	struct tm tm;
	char ym[16];

	gmtime_r(&now, &tm);
	if (strftime(ym, sizeof(ym), "%Y%m", &tm) == 0)
		snprintf(ym, sizeof(ym), "0");
	snprintf(out, outsz, "%s%.6s", alg == DKIM_ALG_ED25519_SHA256 ? "ed" : "rsa", ym);
}

static void entry_from_row(PGresult *res, int i, struct dkim_keystore_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->id = atoll(PQgetvalue(res, i, 0));
	e->domain = xstrdup(PQgetvalue(res, i, 1));
	e->selector = xstrdup(PQgetvalue(res, i, 2));
	if (dkim_alg_parse(PQgetvalue(res, i, 3), &e->alg) < 0)
		e->alg = DKIM_ALG_RSA_SHA256; /* the CHECK constraint allows no other */
	e->txt = xstrdup(PQgetvalue(res, i, 4));
	e->active = strcmp(PQgetvalue(res, i, 5), "t") == 0;
	e->created = xstrdup(PQgetvalue(res, i, 6));
}

#define ENTRY_COLS                                                                                 \
	"k.id, d.name, k.selector, k.algorithm, k.public_key, k.active, " ISO_UTC("k.created")

int dkim_keystore_generate(PGconn *c, const char *domain, enum dkim_alg alg, const char *selector,
                           struct dkim_keystore_entry *out, char *err, size_t errsz)
{
	char d[256], sel[DKIM_SELECTOR_MAX + 1], base[16] = "", why[512];
	char idbuf[32], state[6] = "";
	const char *e = NULL, *params[5];
	char *pem = NULL, *txt = NULL;
	PGresult *res = NULL;
	int64_t did;
	int rc = -1;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (norm_domain(domain, d, sizeof(d), err, errsz) < 0)
		return -1;
	if (selector != NULL) {
		if (dkim_keystore_selector_normalize(selector, sel, sizeof(sel), &e) < 0) {
			snprintf(err, errsz, "selector '%s': %s", selector, e);
			return -1;
		}
	} else {
		default_selector(alg, base, sizeof(base));
		snprintf(sel, sizeof(sel), "%s", base);
	}
	did = domain_id(c, d, err, errsz);
	if (did <= 0)
		return -1;
	pem = dkim_key_generate_pem(alg, &e);
	if (pem == NULL) {
		snprintf(err, errsz, "cannot generate a %s key: %s", dkim_alg_key_type(alg),
		         e != NULL ? e : "?");
		goto out;
	}
	txt = dkim_key_dns_txt_pem(pem, strlen(pem), &e);
	if (txt == NULL) {
		snprintf(err, errsz, "cannot derive the public key: %s", e != NULL ? e : "?");
		goto out;
	}
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)did);
	params[0] = idbuf;
	params[2] = dkim_alg_name(alg);
	params[3] = pem;
	params[4] = txt;
	/* a default selector taken this month already: try "...b" to "...z" */
	for (char suffix = 'a'; suffix <= 'z'; suffix++) {
		if (suffix > 'a')
			snprintf(sel, sizeof(sel), "%s%c", base, suffix);
		params[1] = sel;
		res = pg_exec(c,
		              "WITH k AS (INSERT INTO dkim_keys(domain_id, selector, algorithm,"
		              " private_key, public_key) VALUES ($1, $2, $3, $4, $5) RETURNING *)"
		              " SELECT " ENTRY_COLS " FROM k JOIN domains d ON d.id = k.domain_id",
		              5, params, why, sizeof(why), state);
		if (res != NULL || strcmp(state, "23505") != 0 || selector != NULL)
			break;
	}
	if (res == NULL) {
		if (strcmp(state, "23505") == 0)
			snprintf(err, errsz, "selector '%s' already exists for %s", sel, d);
		else if (strcmp(state, "23503") == 0)
			snprintf(err, errsz, "domain '%s' does not exist", d);
		else
			snprintf(err, errsz, "dkim key %s for %s: %s", sel, d, why);
		goto out;
	}
	if (out != NULL && PQntuples(res) == 1)
		entry_from_row(res, 0, out);
	rc = 0;
out:
	if (res != NULL)
		PQclear(res);
	if (pem != NULL) {
		OPENSSL_cleanse(pem, strlen(pem));
		free(pem);
	}
	free(txt);
	return rc;
}

int dkim_keystore_list(PGconn *c, const char *domain, struct dkim_keystore_entry **v_r, size_t *n_r,
                       char *err, size_t errsz)
{
	char d[256], why[512];
	const char *params[1];
	PGresult *res;
	int n;

	*v_r = NULL;
	*n_r = 0;
	if (domain != NULL) {
		if (norm_domain(domain, d, sizeof(d), err, errsz) < 0)
			return -1;
		if (domain_id(c, d, err, errsz) <= 0)
			return -1;
		params[0] = d;
	}
	res = pg_exec(c,
	              domain != NULL ? "SELECT " ENTRY_COLS " FROM dkim_keys k JOIN domains d"
	                               " ON d.id = k.domain_id WHERE d.name = $1"
	                               " ORDER BY d.name, k.selector"
	                             : "SELECT " ENTRY_COLS " FROM dkim_keys k JOIN domains d"
	                               " ON d.id = k.domain_id ORDER BY d.name, k.selector",
	              domain != NULL ? 1 : 0, domain != NULL ? params : NULL, why, sizeof(why),
	              NULL);
	if (res == NULL) {
		snprintf(err, errsz, "dkim keys: %s", why);
		return -1;
	}
	n = PQntuples(res);
	*v_r = xcalloc((size_t)n + 1, sizeof(**v_r));
	for (int i = 0; i < n; i++)
		entry_from_row(res, i, &(*v_r)[i]);
	*n_r = (size_t)n;
	PQclear(res);
	return 0;
}

/* Run sql ($1 domain, $2 selector[, $3]) that must touch exactly one key. */
static int one_key(PGconn *c, const char *domain, const char *selector, const char *sql,
                   const char *extra, char *err, size_t errsz)
{
	char d[256], sel[DKIM_SELECTOR_MAX + 1], why[512];
	const char *e = NULL, *params[3];
	PGresult *res;
	long n;

	if (norm_domain(domain, d, sizeof(d), err, errsz) < 0)
		return -1;
	if (dkim_keystore_selector_normalize(selector, sel, sizeof(sel), &e) < 0) {
		snprintf(err, errsz, "selector '%s': %s", selector != NULL ? selector : "", e);
		return -1;
	}
	if (domain_id(c, d, err, errsz) <= 0)
		return -1;
	params[0] = d;
	params[1] = sel;
	params[2] = extra;
	res = pg_exec(c, sql, extra != NULL ? 3 : 2, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "dkim key %s for %s: %s", sel, d, why);
		return -1;
	}
	n = atol(PQcmdTuples(res));
	PQclear(res);
	if (n == 0) {
		snprintf(err, errsz, "dkim key '%s' does not exist for %s", sel, d);
		return -1;
	}
	return 0;
}

int dkim_keystore_set_active(PGconn *c, const char *domain, const char *selector, bool active,
                             char *err, size_t errsz)
{
	return one_key(c, domain, selector,
	               "UPDATE dkim_keys k SET active = $3::boolean FROM domains d"
	               " WHERE d.id = k.domain_id AND d.name = $1 AND k.selector = $2",
	               active ? "true" : "false", err, errsz);
}

int dkim_keystore_delete(PGconn *c, const char *domain, const char *selector, char *err,
                         size_t errsz)
{
	return one_key(c, domain, selector,
	               "DELETE FROM dkim_keys k USING domains d"
	               " WHERE d.id = k.domain_id AND d.name = $1 AND k.selector = $2",
	               NULL, err, errsz);
}

json_t *dkim_keystore_entry_json(const struct dkim_keystore_entry *e)
{
	char *name = xasprintf("%s._domainkey.%s", e->selector, e->domain);
	json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s}", "domain", e->domain,
	                      "selector", e->selector, "algorithm", dkim_alg_name(e->alg), "active",
	                      e->active, "created", e->created, "dns_name", name, "txt", e->txt);

	free(name);
	return j;
}

void dkim_keystore_entry_clear(struct dkim_keystore_entry *e)
{
	if (e == NULL)
		return;
	free(e->domain);
	free(e->selector);
	free(e->txt);
	free(e->created);
	memset(e, 0, sizeof(*e));
}

void dkim_keystore_entries_free(struct dkim_keystore_entry **vp, size_t n)
{
	if (vp == NULL || *vp == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		dkim_keystore_entry_clear(&(*vp)[i]);
	free(*vp);
	*vp = NULL;
}
