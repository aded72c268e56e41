/*
 * mailbox/outbound/bounce.c -- deliver a DSN to a queued message's sender
 * (see bounce.h).
 *
 * Three steps, at most one request in flight, its handle kept so that
 * bounce_free() can cancel it: build the report into memory (synchronous,
 * bounded by BOUNCE_FULL_MAX plus the header block); lookup_rcpt(sender);
 * delivery_begin/write/commit with the null sender.  The first step's
 * failure is reported from the loop through a zero-row query, like
 * delivery.c does, so the callback never runs inside bounce_start().
 */
#include "mailbox/outbound/bounce.h"

#include "mailbox/directory/lookup.h"
#include "mailbox/store/pg.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BOUNCE_READ (64 * 1024)

struct bounce {
	struct delivery_stores st;
	char *spool_dir;
	char *id;
	char *sender;
	char *hostname;
	struct buf dsn;
	char err[256];
	struct pg_req *pgr;
	struct delivery *dlv;
	bounce_done_cb *cb;
	void *arg;
};

static void finish(struct bounce *b, bool ok, const char *error)
{
	bounce_done_cb *cb = b->cb;

	b->cb = NULL;
	if (cb != NULL)
		cb(b->arg, ok, error);
}

static void random_hex(char *out, size_t nbytes)
{
	uint8_t r[32];

	ASSERT(nbytes <= sizeof(r));
	if (RAND_bytes(r, (int)nbytes) != 1)
		fatal("msg=\"RAND_bytes failed\"");
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* The report into b->dsn; 0, or -1 with b->err. */
static int build(struct bounce *b, const struct bounce_params *p)
{
	struct dsn_report r = p->report;
	struct dsn_writer w;
	char boundary[40], msgid[400], hex[33];
	const char *why = NULL;
	uint8_t *chunk = NULL;
	uint64_t off = 0;

	random_hex(hex, 16);
	if (r.boundary == NULL) {
		snprintf(boundary, sizeof(boundary), "tp-%s", hex);
		r.boundary = boundary;
	}
	if (r.message_id == NULL) {
		snprintf(msgid, sizeof(msgid), "<dsn.%s@%s>", hex, r.reporting_mta);
		r.message_id = msgid;
	}
	if (r.now == 0)
		r.now = (int64_t)time(NULL);
	r.original_size = p->original_fd >= 0 ? p->original_len : 0;
	if (r.full_max == 0)
		r.full_max = BOUNCE_FULL_MAX;
	if (dsn_begin(&r, &w, &b->dsn, &why) < 0) {
		snprintf(b->err, sizeof(b->err), "report refused: %s", why);
		return -1;
	}
	if (p->original_fd >= 0) {
		chunk = xmalloc(BOUNCE_READ);
		while (off < p->original_len) {
			size_t want = p->original_len - off < BOUNCE_READ
			                      ? (size_t)(p->original_len - off)
			                      : BOUNCE_READ;
			ssize_t n = pread(p->original_fd, chunk, want, (off_t)off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* the report matters more than the copy: send what we have */
				log_warn("msg=\"outbound bounce: the original is cut short\" id=%s "
				         "error=\"%s\"",
				         b->id, n < 0 ? strerror(errno) : "short file");
				break;
			}
			off += (uint64_t)n;
			if (!dsn_original(&w, chunk, (size_t)n, &b->dsn))
				break;
		}
	}
	dsn_end(&w, &r, &b->dsn);
	free(chunk);
	return 0;
}

static void on_committed(void *arg, bool ok, const struct delivery_result *r)
{
	struct bounce *b = arg;
	char err[300];

	if (!ok) {
		snprintf(err, sizeof(err), "%s: %s", r->step != NULL ? r->step : "?",
		         r->error != NULL ? r->error : "?");
		delivery_free(&b->dlv);
		finish(b, false, err);
		return;
	}
	delivery_free(&b->dlv);
	finish(b, true, NULL);
}

static void deliver(struct bounce *b, const int64_t *accounts, size_t naccounts,
                    const struct delivery_sql_remote *remote, size_t nremote)
{
	struct delivery_params p = {
	        .id = b->id,
	        .spool_dir = b->spool_dir,
	        .hostname = b->hostname,
	        .sender = "", /* RFC 3464 2: the null reverse-path */
	        .accounts = accounts,
	        .naccounts = naccounts,
	        .remote = remote,
	        .nremote = nremote,
	        .now = time(NULL),
	};
	char err[300];

	b->dlv = delivery_begin(&b->st, &p, err, sizeof(err));
	if (b->dlv == NULL) {
		finish(b, false, err);
		return;
	}
	if (delivery_write(b->dlv, buf_ptr(&b->dsn), buf_len(&b->dsn), err, sizeof(err)) < 0) {
		delivery_free(&b->dlv);
		finish(b, false, err);
		return;
	}
	delivery_commit(b->dlv, on_committed, b);
}

static void on_lookup(void *arg, const struct lookup_rcpt_result *r)
{
	struct bounce *b = arg;
	struct delivery_sql_remote *rem = NULL;
	size_t nrem = 0;
	char q[300];

	b->pgr = NULL;
	switch (r->status) {
	case LOOKUP_RCPT_TEMPFAIL:
		snprintf(b->err, sizeof(b->err), "sender lookup: %s",
		         r->errstr != NULL ? r->errstr : "?");
		finish(b, false, b->err);
		return;
	case LOOKUP_RCPT_UNKNOWN:
		log_warn("msg=\"outbound bounce dropped: the sender is no local user\" id=%s "
		         "sender=%s",
		         b->id, log_quote(q, sizeof(q), b->sender));
		finish(b, true, NULL);
		return;
	case LOOKUP_RCPT_NOT_LOCAL: {
		struct delivery_sql_remote one = {b->sender, NULL, NULL};

		deliver(b, NULL, 0, &one, 1);
		return;
	}
	case LOOKUP_RCPT_LOCAL:
		break;
	}
	if (r->nforwards > 0) {
		rem = xcalloc(r->nforwards, sizeof(*rem));
		for (size_t i = 0; i < r->nforwards; i++)
			rem[nrem++] = (struct delivery_sql_remote){r->forwards[i], NULL, NULL};
	}
	if (r->naccounts + nrem == 0) {
		log_warn("msg=\"outbound bounce dropped: the sender's address leads nowhere\" "
		         "id=%s sender=%s",
		         b->id, log_quote(q, sizeof(q), b->sender));
		free(rem);
		finish(b, true, NULL);
		return;
	}
	deliver(b, r->accounts, r->naccounts, rem, nrem);
	free(rem);
}

/* A report that cannot be built never will be (dsn_begin refused the
 * addresses): logged and dropped, so the recipient does not wait for it. */
static void on_early_fail(void *arg, const PGresult *res, const char *errstr)
{
	struct bounce *b = arg;
	char q[300];

	(void)res;
	(void)errstr;
	b->pgr = NULL;
	log_error("msg=\"outbound bounce dropped: the report cannot be built\" id=%s error=%s",
	          b->id, log_quote(q, sizeof(q), b->err));
	finish(b, true, NULL);
}

struct bounce *bounce_start(const struct bounce_params *p, bounce_done_cb *cb, void *arg)
{
	struct bounce *b = xcalloc(1, sizeof(*b));

	b->st = *p->st;
	b->spool_dir = xstrdup(p->spool_dir);
	b->id = xstrdup(p->id != NULL ? p->id : "-");
	b->sender = xstrdup(p->report.sender != NULL ? p->report.sender : "");
	b->hostname =
	        xstrdup(p->report.reporting_mta != NULL ? p->report.reporting_mta : "localhost");
	b->cb = cb;
	b->arg = arg;
	buf_init(&b->dsn, 0);
	if (build(b, p) < 0) {
		b->pgr = pg_query(b->st.pg, "SELECT 1 WHERE false", 0, NULL, on_early_fail, b);
		return b;
	}
	b->pgr = lookup_rcpt(b->st.pg, b->sender, on_lookup, b);
	return b;
}

void bounce_free(struct bounce **bp)
{
	struct bounce *b = *bp;

	if (b == NULL)
		return;
	pg_req_cancel(&b->pgr);
	delivery_free(&b->dlv);
	buf_free(&b->dsn);
	free(b->spool_dir);
	free(b->id);
	free(b->sender);
	free(b->hostname);
	free(b);
	*bp = NULL;
}
