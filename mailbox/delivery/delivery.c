/*
 * mailbox/delivery/delivery.c -- receive, then commit (see delivery.h).
 *
 * One struct per message.  Receiving is synchronous (spool writes to the
 * page cache, the MIME parser, the hash); committing is a chain of three
 * asynchronous requests, each started from the previous one's callback,
 * with at most one in flight, whose handle is kept so delivery_free()
 * can cancel it.  The callback to the caller is the last thing the chain
 * does, so the caller may free the delivery from inside it.
 */
#include "mailbox/delivery/delivery.h"

#include "mailbox/delivery/hdrfix.h"
#include "mailbox/delivery/spool.h"
#include "mailbox/smtp/received.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct delivery {
	struct delivery_stores st;
	char *id;
	char *sender;
	int64_t *accounts;
	size_t naccounts;
	struct delivery_sql_remote *remote; /* strings owned */
	size_t nremote;
	int64_t account_id;
	char *dsn_ret, *envid;
	bool submission;

	/* receiving */
	struct spool *spool;
	struct mime_parser *mime;
	struct hdrfix fix;
	char date[64];
	char msgid[320];
	bool failed;
	char err[256]; /* first write failure */

	/* committing */
	char key[BLOB_KEY_LEN + 1];
	uint64_t size;
	struct mime_result *res;
	struct pg_req *pgr;
	struct blob_req *br;
	delivery_done_cb *cb;
	void *arg;
	struct timespec t0;
};

/* --- receiving ------------------------------------------------------------ */

/* Every stored byte: into the spool file (hashed) and the MIME parser. */
static int sink(void *arg, const uint8_t *p, size_t n)
{
	struct delivery *d = arg;

	if (d->failed)
		return -1;
	if (spool_write(d->spool, p, n, d->err, sizeof(d->err)) < 0) {
		d->failed = true;
		return -1;
	}
	mime_parser_feed(d->mime, p, n);
	return 0;
}

/* RFC 5322 3.6.4: "<" id-left "@" id-right ">"; 128 random bits make the
 * left side unique without any state. */
static void make_msgid(char *out, size_t outsz, const char *hostname)
{
	uint8_t r[16];
	char hex[33];

	if (RAND_bytes(r, sizeof(r)) != 1)
		fatal("msg=\"RAND_bytes failed\"");
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	snprintf(out, outsz, "<%s@%s>", hex, hostname);
}

struct delivery *delivery_begin(const struct delivery_stores *st, const struct delivery_params *p,
                                char *err, size_t errsz)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	struct buf date;

	d->st = *st;
	d->id = xstrdup(p->id != NULL ? p->id : "-");
	d->sender = xstrdup(p->sender != NULL ? p->sender : "");
	if (p->naccounts > 0)
		d->accounts = xmemdup(p->accounts, p->naccounts * sizeof(*p->accounts));
	d->naccounts = p->naccounts;
	if (p->nremote > 0) {
		d->remote = xcalloc(p->nremote, sizeof(*d->remote));
		for (size_t i = 0; i < p->nremote; i++) {
			d->remote[i].addr = xstrdup(p->remote[i].addr);
			d->remote[i].notify =
			        p->remote[i].notify != NULL ? xstrdup(p->remote[i].notify) : NULL;
			d->remote[i].orcpt =
			        p->remote[i].orcpt != NULL ? xstrdup(p->remote[i].orcpt) : NULL;
		}
	}
	d->nremote = p->nremote;
	d->account_id = p->account_id;
	d->dsn_ret = p->dsn_ret != NULL ? xstrdup(p->dsn_ret) : NULL;
	d->envid = p->envid != NULL ? xstrdup(p->envid) : NULL;
	d->submission = p->submission;

	d->spool = spool_open(p->spool_dir, err, errsz);
	if (d->spool == NULL)
		goto fail;
	d->mime = mime_parser_new(NULL);
	if (d->submission) {
		buf_init(&date, 0);
		smtp_received_date(&date, p->now);
		snprintf(d->date, sizeof(d->date), "%.*s", (int)buf_len(&date),
		         (const char *)buf_ptr(&date));
		buf_free(&date);
		make_msgid(d->msgid, sizeof(d->msgid),
		           p->hostname != NULL ? p->hostname : "localhost");
		hdrfix_init(&d->fix, d->date, d->msgid, sink, d);
	}
	if (d->naccounts > 0) {
		/* RFC 5321 4.4: the final delivery adds the reverse-path first */
		char *rp = xasprintf("Return-Path: <%s>\r\n", d->sender);
		int rc = sink(d, (const uint8_t *)rp, strlen(rp));

		free(rp);
		if (rc < 0) {
			snprintf(err, errsz, "%s", d->err);
			goto fail;
		}
	}
	return d;
fail:
	delivery_free(&d);
	return NULL;
}

int delivery_write(struct delivery *d, const uint8_t *p, size_t n, char *err, size_t errsz)
{
	int rc = d->submission ? hdrfix_feed(&d->fix, p, n) : sink(d, p, n);

	if (rc < 0 || d->failed) {
		snprintf(err, errsz, "%s", d->err);
		return -1;
	}
	return 0;
}

/* --- committing ------------------------------------------------------------ */

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1000.0 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The last thing a commit does: d may be freed by the callback. */
static void finish(struct delivery *d, bool ok, const char *step, const char *error,
                   size_t mailboxes, int64_t queue_id)
{
	struct delivery_result r = {
	        .key = d->key,
	        .size = d->size,
	        .mailboxes = mailboxes,
	        .queue_id = queue_id,
	        .step = step,
	        .error = error,
	        .ms = ms_since(&d->t0),
	};
	delivery_done_cb *cb = d->cb;

	d->cb = NULL;
	/* the spool file has done its job either way */
	spool_free(&d->spool);
	if (cb != NULL)
		cb(d->arg, ok, &r);
}

static void notify(struct delivery *d, const char *mailbox_id, const char *uid, const char *modseq)
{
	char chan[64], msg[80];
	int n;

	if (d->st.mem == NULL)
		return;
	snprintf(chan, sizeof(chan), DELIVERY_CHANNEL_PREFIX "%s", mailbox_id);
	n = snprintf(msg, sizeof(msg), "EXISTS %s %s", uid, modseq);
	mem_publish(d->st.mem, chan, msg, (size_t)n, NULL, NULL);
}

static void on_delivered(void *arg, const PGresult *res, const char *errstr)
{
	struct delivery *d = arg;
	size_t mailboxes = 0;
	int64_t queue_id = 0;

	d->pgr = NULL;
	if (errstr != NULL) {
		finish(d, false, "deliver", errstr, 0, 0);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (!PQgetisnull(res, i, 3))
			queue_id = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		if (PQgetisnull(res, i, 0))
			continue;
		mailboxes++;
		notify(d, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
	}
	if (queue_id > 0 && d->st.mem != NULL) {
		char msg[24];
		int n = snprintf(msg, sizeof(msg), "%" PRId64, queue_id);

		mem_publish(d->st.mem, DELIVERY_QUEUE_CHANNEL, msg, (size_t)n, NULL, NULL);
	}
	finish(d, true, NULL, NULL, mailboxes, queue_id);
}

static void on_put(void *arg, enum blob_status st, const char *errstr)
{
	struct delivery *d = arg;
	struct delivery_sql q;
	struct delivery_sql_in in = {
	        .key = d->key,
	        .size = d->size,
	        .accounts = d->accounts,
	        .naccounts = d->naccounts,
	        .mime = d->res,
	        .remote = d->remote,
	        .nremote = d->nremote,
	        .sender = d->sender,
	        .account_id = d->account_id,
	        .dsn_ret = d->dsn_ret,
	        .envid = d->envid,
	};

	d->br = NULL;
	if (st != BLOB_OK) {
		finish(d, false, "blob", errstr != NULL ? errstr : "put failed", 0, 0);
		return;
	}
	delivery_sql_build(&in, &q);
	d->pgr = pg_query(d->st.pg, q.sql, q.nparams, (const char *const *)q.params, on_delivered,
	                  d);
	delivery_sql_free(&q);
}

static void on_reserved(void *arg, const PGresult *res, const char *errstr)
{
	struct delivery *d = arg;

	(void)res;
	d->pgr = NULL;
	if (errstr != NULL) {
		finish(d, false, "reserve", errstr, 0, 0);
		return;
	}
	d->br = blob_put(d->st.blob, d->key, spool_path(d->spool), d->size, on_put, d);
}

/* Report a failure found before any request, from the loop like the
 * others: a zero-row statement gives the loop turn. */
static void on_early_fail(void *arg, const PGresult *res, const char *errstr)
{
	struct delivery *d = arg;

	(void)res;
	(void)errstr;
	d->pgr = NULL;
	finish(d, false, "spool", d->err, 0, 0);
}

void delivery_commit(struct delivery *d, delivery_done_cb *cb, void *arg)
{
	char size[24];
	const char *params[2];

	ASSERT(d->cb == NULL && d->pgr == NULL && d->br == NULL);
	d->cb = cb;
	d->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &d->t0);
	if (!d->failed && d->submission && hdrfix_finish(&d->fix) < 0)
		d->failed = true;
	if (d->failed || spool_finish(d->spool, d->key, &d->size, d->err, sizeof(d->err)) < 0) {
		d->failed = true;
		d->pgr = pg_query(d->st.pg, "SELECT 1 WHERE false", 0, NULL, on_early_fail, d);
		return;
	}
	d->res = mime_parser_finish(&d->mime);
	snprintf(size, sizeof(size), "%" PRIu64, d->size);
	params[0] = d->key;
	params[1] = size;
	d->pgr = pg_query(d->st.pg, "SELECT tp_blob_reserve($1::text, $2::bigint)", 2, params,
	                  on_reserved, d);
}

void delivery_free(struct delivery **dp)
{
	struct delivery *d = *dp;

	if (d == NULL)
		return;
	pg_req_cancel(&d->pgr);
	blob_req_cancel(&d->br);
	spool_free(&d->spool);
	mime_parser_free(&d->mime);
	mime_result_free(&d->res);
	for (size_t i = 0; i < d->nremote; i++) {
		free((char *)(uintptr_t)d->remote[i].addr);
		free((char *)(uintptr_t)d->remote[i].notify);
		free((char *)(uintptr_t)d->remote[i].orcpt);
	}
	free(d->remote);
	free(d->accounts);
	free(d->id);
	free(d->sender);
	free(d->dsn_ret);
	free(d->envid);
	free(d);
	*dp = NULL;
}
