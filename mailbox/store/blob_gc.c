/*
 * mailbox/store/blob_gc.c -- collect unreferenced blobs (see blob_gc.h for
 * the protocol that keeps it from racing deliveries).
 *
 * Blocking by design: it is an administrative job (`tailpost-mailbox gc`,
 * a timer in one instance could run it through the CLI code path later),
 * so it holds one transaction with the candidate rows locked while the
 * objects are deleted, and runs the blob store's loop to wait for each
 * delete.  A row is only dropped once its object is gone (or was already
 * gone), so a failed delete is retried by the next run.
 */
#include "mailbox/store/blob_gc.h"
#include "mailbox/store/blob_private.h"

#include "mailbox/store/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gc_wait {
	bool done;
	enum blob_status st;
	char err[512];
};

static void gc_delete_cb(void *arg, enum blob_status st, const char *errstr)
{
	struct gc_wait *w = arg;

	w->done = true;
	w->st = st;
	if (errstr != NULL)
		snprintf(w->err, sizeof(w->err), "%s", errstr);
}

int blob_gc_run(PGconn *c, struct blob_store *bs, uint64_t grace_s, uint64_t limit,
                struct blob_gc_result *out, char *err, size_t errsz)
{
	static const char select_sql[] =
	        "SELECT b.key FROM blobs b"
	        " WHERE b.last_used < now() - $1::bigint * interval '1 second'"
	        "   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_key = b.key)"
	        "   AND NOT EXISTS (SELECT 1 FROM queue_messages q WHERE q.blob_key = b.key)"
	        " ORDER BY b.key LIMIT $2 FOR UPDATE OF b SKIP LOCKED";
	char grace[32], lim[32], why[512];
	const char *params[2];
	PGresult *res = NULL, *tmp;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	snprintf(grace, sizeof(grace), "%llu", (unsigned long long)grace_s);
	snprintf(lim, sizeof(lim), "%llu", (unsigned long long)limit);
	tmp = pg_exec(c, "BEGIN", 0, NULL, why, sizeof(why), NULL);
	if (tmp == NULL) {
		snprintf(err, errsz, "gc: %s", why);
		return -1;
	}
	PQclear(tmp);
	params[0] = grace;
	params[1] = lim;
	res = pg_exec(c, select_sql, 2, params, why, sizeof(why), NULL);
	if (res == NULL) {
		snprintf(err, errsz, "gc: %s", why);
		goto fail;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *key = PQgetvalue(res, i, 0);
		struct gc_wait w = {0};

		out->examined++;
		blob_delete(bs, key, gc_delete_cb, &w);
		while (!w.done)
			ev_run(bs->loop, EVRUN_ONCE);
		if (w.st == BLOB_ERROR) {
			fprintf(stderr, "gc: %s\n", w.err);
			out->failed++;
			continue;
		}
		params[0] = key;
		tmp = pg_exec(c, "DELETE FROM blobs WHERE key = $1", 1, params, why, sizeof(why),
		              NULL);
		if (tmp == NULL) {
			snprintf(err, errsz, "gc: %s", why);
			goto fail;
		}
		PQclear(tmp);
		out->deleted++;
	}
	tmp = pg_exec(c, "COMMIT", 0, NULL, why, sizeof(why), NULL);
	if (tmp == NULL) {
		snprintf(err, errsz, "gc: commit: %s", why);
		goto fail;
	}
	PQclear(tmp);
	rc = 0;
fail:
	if (rc < 0) {
		tmp = PQexec(c, "ROLLBACK");
		PQclear(tmp);
	}
	PQclear(res);
	return rc;
}
