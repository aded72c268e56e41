/*
 * mailbox/directory/token.c -- bearer tokens for the admin API (blocking
 * administration; the daemon's check is lookup_token in lookup.c).
 *
 * A token is 32 random bytes, base64url without padding (RFC 4648 5),
 * behind a "tp_" prefix that makes a leaked token easy to grep for.  Only
 * its SHA-256 is stored: the token has 256 bits of entropy, so a plain
 * hash is enough (no slow KDF needed) and lets a lookup be one indexed
 * equality match.
 */
#include "mailbox/directory/directory.h"

#include "mailbox/store/pg.h"
#include "mailbox/store/sigv4.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_BYTES 32

void dir_token_hash(const char *token, char hex[65])
{
	sigv4_sha256_hex(token, strlen(token), hex);
}

static bool name_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

int dir_token_add(PGconn *c, const char *name, char **token_r, char *err, size_t errsz)
{
	static const char b64url[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char rnd[TOKEN_BYTES + 1] = {0};
	char tok[3 + 44 + 1], hex[65], why[512], state[6];
	const char *params[2];
	PGresult *res;
	size_t o = 0;

	*token_r = NULL;
	if (!name_ok(name)) {
		snprintf(err, errsz, "token name must be 1..64 bytes of [A-Za-z0-9._-]");
		return -1;
	}
	if (RAND_bytes(rnd, TOKEN_BYTES) != 1) {
		snprintf(err, errsz, "token: no random bytes");
		return -1;
	}
	memcpy(tok, "tp_", 3);
	o = 3;
	/* 32 bytes = 10 groups of 3 + 2 bytes: 43 characters without padding */
	for (size_t i = 0; i < TOKEN_BYTES; i += 3) {
		unsigned v = (unsigned)rnd[i] << 16 | (unsigned)rnd[i + 1] << 8 |
		             (i + 2 < TOKEN_BYTES ? rnd[i + 2] : 0);
		size_t chars = i + 2 < TOKEN_BYTES ? 4 : 3;
		for (size_t k = 0; k < chars; k++)
			tok[o++] = b64url[(v >> (18 - 6 * k)) & 63];
	}
	tok[o] = '\0';
	OPENSSL_cleanse(rnd, sizeof(rnd));
	dir_token_hash(tok, hex);
	params[0] = name;
	params[1] = hex;
	res = pg_exec(c, "INSERT INTO api_tokens(name, hash) VALUES ($1, $2)", 2, params, why,
	              sizeof(why), state);
	if (res == NULL) {
		OPENSSL_cleanse(tok, sizeof(tok));
		if (strcmp(state, "23505") == 0)
			snprintf(err, errsz, "token '%s' already exists", name);
		else
			snprintf(err, errsz, "token '%s': %s", name, why);
		return -1;
	}
	PQclear(res);
	*token_r = xstrdup(tok);
	OPENSSL_cleanse(tok, sizeof(tok));
	return 0;
}

int dir_token_del(PGconn *c, const char *name, char *err, size_t errsz)
{
	char why[512];
	const char *params[1] = {name};
	PGresult *res = pg_exec(c, "DELETE FROM api_tokens WHERE name = $1", 1, params, why,
	                        sizeof(why), NULL);

	if (res == NULL) {
		snprintf(err, errsz, "token '%s': %s", name, why);
		return -1;
	}
	if (atoi(PQcmdTuples(res)) == 0) {
		PQclear(res);
		snprintf(err, errsz, "no token '%s'", name);
		return -1;
	}
	PQclear(res);
	return 0;
}

int dir_token_list(PGconn *c, struct dir_token **v_r, size_t *n_r, char *err, size_t errsz)
{
	char why[512];
	PGresult *res;
	int n;

	*v_r = NULL;
	*n_r = 0;
	res = pg_exec(c,
	              "SELECT name, to_char(created AT TIME ZONE 'UTC', "
	              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	              " to_char(last_used AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
	              " FROM api_tokens ORDER BY name",
	              0, NULL, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "tokens: %s", why);
		return -1;
	}
	n = PQntuples(res);
	*v_r = xcalloc((size_t)n + 1, sizeof(**v_r));
	for (int i = 0; i < n; i++) {
		(*v_r)[i].name = xstrdup(PQgetvalue(res, i, 0));
		(*v_r)[i].created = xstrdup(PQgetvalue(res, i, 1));
		if (!PQgetisnull(res, i, 2))
			(*v_r)[i].last_used = xstrdup(PQgetvalue(res, i, 2));
	}
	*n_r = (size_t)n;
	PQclear(res);
	return 0;
}

void dir_tokens_free(struct dir_token **vp, size_t n)
{
	if (vp == NULL || *vp == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free((*vp)[i].name);
		free((*vp)[i].created);
		free((*vp)[i].last_used);
	}
	free(*vp);
	*vp = NULL;
}
