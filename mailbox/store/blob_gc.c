/*
 * mailbox/store/blob_gc.c -- collect unreferenced blobs (see blob_gc.h for
 * the protocol that keeps it from racing deliveries).
 *
 * Blocking by design: it runs from `tailpost-mailbox gc` or on the serve
 * timer's own thread (mailbox/server/gc_timer.c), with a connection and a
 * blob store of its own, so it holds one transaction with the candidate
 * rows locked while the objects are deleted, and runs the blob store's
 * loop to wait for each delete.  A row is only dropped once its object is
 * gone (or was already gone), so a failed delete is retried by the next
 * run.  Batches stay small (config blob.gc.batch) because a delivery of
 * the same content waits on a locked row until the batch commits.
 */
#include "mailbox/store/blob_gc.h"
#include "mailbox/store/blob_private.h"

#include "mailbox/store/pg.h"
#include "shared/log.h"

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
                const atomic_bool *stop, struct blob_gc_result *out, char *err, size_t errsz)
{
	static const char select_sql[] =
	        "SELECT b.key, b.size FROM blobs b"
	        " WHERE b.last_used < now() - $1::bigint * interval '1 second'"
	        "   AND NOT EXISTS (SELECT 1 FROM messages m"
	        "                    WHERE m.blob_key = b.key AND NOT m.expunged)"
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

		if (stop != NULL && atomic_load(stop))
			break;
		out->examined++;
		blob_delete(bs, key, gc_delete_cb, &w);
		while (!w.done)
			ev_run(bs->loop, EVRUN_ONCE);
		if (w.st == BLOB_ERROR) {
			char q[600];
			log_warn("msg=\"gc: blob not deleted; kept for the next run\" key=%s "
			         "error=%s",
			         key, log_quote(q, sizeof(q), w.err));
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
		out->bytes += strtoull(PQgetvalue(res, i, 1), NULL, 10);
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

int blob_gc_run_all(PGconn *c, struct blob_store *bs, uint64_t grace_s, uint64_t batch,
                    const atomic_bool *stop, struct blob_gc_result *out, char *err, size_t errsz)
{
	memset(out, 0, sizeof(*out));
	for (;;) {
		struct blob_gc_result r;
		int rc = blob_gc_run(c, bs, grace_s, batch, stop, &r, err, errsz);

		out->examined += r.examined;
		out->deleted += r.deleted;
		out->failed += r.failed;
		out->bytes += r.bytes;
		if (rc < 0)
			return -1;
		/* a short batch: nothing more to do; a batch of only failures: the
		 * same rows would come back (ORDER BY key), so stop until next time */
		if (r.examined < batch || r.failed == r.examined ||
		    (stop != NULL && atomic_load(stop)))
			return 0;
	}
}
