/*
 * mailbox/outbound/queue_admin.c -- list, show, retry and delete queued
 * messages (see queue_admin.h).
 *
 * A listing is one statement (messages LEFT JOIN recipients, grouped here
 * by message id) so that it is one consistent snapshot while the delivery
 * workers change rows underneath.  retry and delete are single statements
 * too; their CTEs tell "no such message" apart from "nothing to do".
 */
#include "mailbox/outbound/queue_admin.h"

#include "mailbox/store/pg.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

int queue_admin_parse_id(const char *s, int64_t *id_r)
{
	char *end = NULL;
	long long v;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v <= 0)
		return -1;
	*id_r = (int64_t)v;
	return 0;
}

static char *opt_str(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

/* Messages (and their recipients) of a result of the SELECT below. */
static size_t rows_to_msgs(PGresult *res, struct queue_admin_msg **v_r)
{
	int rows = PQntuples(res);
	struct queue_admin_msg *v = xcalloc((size_t)rows + 1, sizeof(*v));
	size_t n = 0;

	for (int i = 0; i < rows; i++) {
		int64_t id = atoll(PQgetvalue(res, i, 0));
		struct queue_admin_msg *m;
		struct queue_admin_rcpt *r;

		if (n == 0 || v[n - 1].id != id) {
			m = &v[n++];
			m->id = id;
			m->account = opt_str(res, i, 1);
			m->sender = xstrdup(PQgetvalue(res, i, 2));
			m->blob_key = xstrdup(PQgetvalue(res, i, 3));
			m->size = atoll(PQgetvalue(res, i, 4));
			m->dsn_ret = opt_str(res, i, 5);
			m->dsn_envid = opt_str(res, i, 6);
			m->created = xstrdup(PQgetvalue(res, i, 7));
		}
		m = &v[n - 1];
		if (PQgetisnull(res, i, 8))
			continue; /* a message without recipients */
		m->rcpts = xrealloc(m->rcpts, (m->nrcpts + 1) * sizeof(*m->rcpts));
		r = &m->rcpts[m->nrcpts++];
		memset(r, 0, sizeof(*r));
		r->id = atoll(PQgetvalue(res, i, 8));
		r->rcpt = xstrdup(PQgetvalue(res, i, 9));
		r->status = xstrdup(PQgetvalue(res, i, 10));
		r->attempts = atoll(PQgetvalue(res, i, 11));
		r->next_attempt = xstrdup(PQgetvalue(res, i, 12));
		r->last_error = opt_str(res, i, 13);
		r->lease_until = opt_str(res, i, 14);
		r->lease_owner = opt_str(res, i, 15);
		r->dsn_notify = opt_str(res, i, 16);
		r->dsn_orcpt = opt_str(res, i, 17);
		r->updated = xstrdup(PQgetvalue(res, i, 18));
	}
	*v_r = v;
	return n;
}

static const char select_msgs[] =
        "SELECT m.id, a.login, m.sender, m.blob_key, m.size, m.dsn_ret, "
        "m.dsn_envid, " ISO_UTC(
                "m.created") ", r.id, r.rcpt, r.status, "
                             "r.attempts, " ISO_UTC("r.next_attempt") ", r.last_error, " ISO_UTC(
                                     "r.lease_until") ", "
                                                      "r.lease_owner, "
                                                      "r.dsn_notify,"
                                                      " r.dsn_orcpt,"
                                                      " " ISO_UTC("r."
                                                                  "update"
                                                                  "d") " F"
                                                                       "RO"
                                                                       "M "
                                                                       "(S"
                                                                       "EL"
                                                                       "EC"
                                                                       "T "
                                                                       "* "
                                                                       "FR"
                                                                       "OM"
                                                                       " q"
                                                                       "ue"
                                                                       "ue"
                                                                       "_m"
                                                                       "es"
                                                                       "sa"
                                                                       "ge"
                                                                       "s "
                                                                       "WH"
                                                                       "ER"
                                                                       "E "
                                                                       "$1"
                                                                       "::"
                                                                       "bi"
                                                                       "gi"
                                                                       "nt"
                                                                       " I"
                                                                       "S "
                                                                       "NU"
                                                                       "LL"
                                                                       " O"
                                                                       "R "
                                                                       "id"
                                                                       " ="
                                                                       " $"
                                                                       "1:"
                                                                       ":b"
                                                                       "ig"
                                                                       "in"
                                                                       "t"
                                                                       "  "
                                                                       "  "
                                                                       "  "
                                                                       " O"
                                                                       "RD"
                                                                       "ER"
                                                                       " B"
                                                                       "Y "
                                                                       "id"
                                                                       " L"
                                                                       "IM"
                                                                       "IT"
                                                                       " $"
                                                                       "2:"
                                                                       ":b"
                                                                       "ig"
                                                                       "in"
                                                                       "t)"
                                                                       " m"
                                                                       " L"
                                                                       "EF"
                                                                       "T "
                                                                       "JO"
                                                                       "IN"
                                                                       " a"
                                                                       "cc"
                                                                       "ou"
                                                                       "nt"
                                                                       "s "
                                                                       "a "
                                                                       "ON"
                                                                       " a"
                                                                       ".i"
                                                                       "d "
                                                                       "= "
                                                                       "m."
                                                                       "ac"
                                                                       "co"
                                                                       "un"
                                                                       "t_"
                                                                       "id"
                                                                       " L"
                                                                       "EF"
                                                                       "T "
                                                                       "JO"
                                                                       "IN"
                                                                       " q"
                                                                       "ue"
                                                                       "ue"
                                                                       "_r"
                                                                       "cp"
                                                                       "ts"
                                                                       " r"
                                                                       " O"
                                                                       "N "
                                                                       "r."
                                                                       "me"
                                                                       "ss"
                                                                       "ag"
                                                                       "e_"
                                                                       "id"
                                                                       " ="
                                                                       " m"
                                                                       ".i"
                                                                       "d"
                                                                       " O"
                                                                       "RD"
                                                                       "ER"
                                                                       " B"
                                                                       "Y "
                                                                       "m."
                                                                       "id"
                                                                       ", "
                                                                       "r."
                                                                       "i"
                                                                       "d";

static int query_msgs(PGconn *c, int64_t id, int64_t limit, struct queue_admin_msg **v_r,
                      size_t *n_r, char *err, size_t errsz)
{
	char why[512], idbuf[32], limbuf[32];
	const char *params[2];
	PGresult *res;

	*v_r = NULL;
	*n_r = 0;
	snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
	snprintf(limbuf, sizeof(limbuf), "%" PRId64, limit);
	params[0] = id > 0 ? idbuf : NULL;
	params[1] = limit > 0 ? limbuf : NULL; /* LIMIT NULL: no limit */
	res = pg_exec(c, select_msgs, 2, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "queue: %s", why);
		return -1;
	}
	*n_r = rows_to_msgs(res, v_r);
	PQclear(res);
	return 0;
}

int queue_admin_list(PGconn *c, int64_t limit, struct queue_admin_msg **v_r, size_t *n_r, char *err,
                     size_t errsz)
{
	return query_msgs(c, 0, limit, v_r, n_r, err, errsz);
}

int queue_admin_show(PGconn *c, int64_t id, struct queue_admin_msg *out, char *err, size_t errsz)
{
	struct queue_admin_msg *v = NULL;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	if (id <= 0) {
		snprintf(err, errsz, "invalid queue id");
		return -1;
	}
	if (query_msgs(c, id, 1, &v, &n, err, errsz) < 0)
		return -1;
	if (n == 0) {
		free(v);
		snprintf(err, errsz, "queue message %" PRId64 " does not exist", id);
		return -1;
	}
	*out = v[0];
	free(v);
	return 0;
}

int queue_admin_retry(PGconn *c, int64_t id, int64_t *n_r, char *err, size_t errsz)
{
	char why[512], idbuf[32];
	const char *params[1];
	PGresult *res;
	int64_t found, n;

	if (n_r != NULL)
		*n_r = 0;
	if (id < 0) {
		snprintf(err, errsz, "invalid queue id");
		return -1;
	}
	snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
	params[0] = id > 0 ? idbuf : NULL;
	/* a recipient under a live lease is being delivered: leave it */
	res = pg_exec(c,
	              "WITH m AS (SELECT id FROM queue_messages"
	              "           WHERE $1::bigint IS NULL OR id = $1::bigint),"
	              " u AS (UPDATE queue_rcpts r SET next_attempt = now(), updated = now()"
	              "       FROM m WHERE r.message_id = m.id AND r.status = 'pending'"
	              "       AND (r.lease_until IS NULL OR r.lease_until < now()) RETURNING 1)"
	              " SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM u)",
	              1, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "queue retry: %s", why);
		return -1;
	}
	found = atoll(PQgetvalue(res, 0, 0));
	n = atoll(PQgetvalue(res, 0, 1));
	PQclear(res);
	if (id > 0 && found == 0) {
		snprintf(err, errsz, "queue message %" PRId64 " does not exist", id);
		return -1;
	}
	if (n_r != NULL)
		*n_r = n;
	return 0;
}

int queue_admin_delete(PGconn *c, int64_t id, int64_t *nrcpts_r, char *err, size_t errsz)
{
	char why[512], idbuf[32];
	const char *params[1] = {idbuf};
	PGresult *res;
	int64_t found, n;

	if (nrcpts_r != NULL)
		*nrcpts_r = 0;
	if (id <= 0) {
		snprintf(err, errsz, "invalid queue id");
		return -1;
	}
	snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
	/* the outer SELECT sees the recipients as they were before the
	 * cascade: every part of the statement shares one snapshot */
	res = pg_exec(c,
	              "WITH d AS (DELETE FROM queue_messages WHERE id = $1::bigint RETURNING id)"
	              " SELECT (SELECT count(*) FROM d),"
	              " (SELECT count(*) FROM queue_rcpts WHERE message_id = $1::bigint)",
	              1, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "queue delete: %s", why);
		return -1;
	}
	found = atoll(PQgetvalue(res, 0, 0));
	n = atoll(PQgetvalue(res, 0, 1));
	PQclear(res);
	if (found == 0) {
		snprintf(err, errsz, "queue message %" PRId64 " does not exist", id);
		return -1;
	}
	if (nrcpts_r != NULL)
		*nrcpts_r = n;
	return 0;
}

json_t *queue_admin_msg_json(const struct queue_admin_msg *m)
{
	json_t *rc = json_array();

	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct queue_admin_rcpt *r = &m->rcpts[i];

		json_array_append_new(
		        rc,
		        json_pack("{s:I, s:s, s:s, s:I, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s}",
		                  "id", (json_int_t)r->id, "rcpt", r->rcpt, "status", r->status,
		                  "attempts", (json_int_t)r->attempts, "next_attempt",
		                  r->next_attempt, "last_error", r->last_error, "lease_until",
		                  r->lease_until, "lease_owner", r->lease_owner, "dsn_notify",
		                  r->dsn_notify, "dsn_orcpt", r->dsn_orcpt, "updated", r->updated));
	}
	return json_pack("{s:I, s:s?, s:s, s:s, s:I, s:s?, s:s?, s:s, s:o}", "id",
	                 (json_int_t)m->id, "account", m->account, "sender", m->sender, "blob_key",
	                 m->blob_key, "size", (json_int_t)m->size, "dsn_ret", m->dsn_ret,
	                 "dsn_envid", m->dsn_envid, "created", m->created, "recipients", rc);
}

void queue_admin_msg_clear(struct queue_admin_msg *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nrcpts; i++) {
		struct queue_admin_rcpt *r = &m->rcpts[i];

		free(r->rcpt);
		free(r->status);
		free(r->next_attempt);
		free(r->last_error);
		free(r->lease_until);
		free(r->lease_owner);
		free(r->dsn_notify);
		free(r->dsn_orcpt);
		free(r->updated);
	}
	free(m->rcpts);
	free(m->account);
	free(m->sender);
	free(m->blob_key);
	free(m->dsn_ret);
	free(m->dsn_envid);
	free(m->created);
	memset(m, 0, sizeof(*m));
}

void queue_admin_msgs_free(struct queue_admin_msg **vp, size_t n)
{
	if (vp == NULL || *vp == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		queue_admin_msg_clear(&(*vp)[i]);
	free(*vp);
	*vp = NULL;
}
