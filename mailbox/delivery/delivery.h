/*
 * mailbox/delivery/delivery.h -- the message sink behind SMTP: receive a
 * message into the spool, then make it durable and visible, or nothing.
 *
 * While the message arrives (delivery_write) every byte goes, in order,
 * through
 *   - for submission, the Date:/Message-ID: filter (hdrfix.h),
 *   - into the spool file, which hashes it (spool.h),
 *   - and into the streaming MIME parser (mailbox/mime/parser.h),
 * so memory stays bounded for any size.  The stored message is exactly:
 *   "Return-Path: <sender>" (when there is a local recipient; RFC 5321
 *   4.4: added at final delivery), then what the caller writes (the SMTP
 *   session writes its Received: first, then the body with CRLF line
 *   ends, dot-unstuffed), with Date:/Message-ID: added for submission.
 *
 * delivery_commit() then runs three steps on the stores, each answered on
 * the loop:
 *   1. tp_blob_reserve(key, size) in Postgres, so the blob collector
 *      (mailbox/store/blob_gc.h) leaves a blob of that key alone;
 *   2. blob_put of the spool file: BLOB_OK means durable (fs: fsync and
 *      rename; s3: PUT acknowledged and a HEAD confirming the size);
 *   3. ONE statement (delivery_sql.h): tp_deliver into the INBOX of every
 *      local account, and the queue_messages/queue_rcpts rows for the
 *      remote recipients with their DSN parameters.
 * Only after step 3 committed does the callback say ok (the SMTP 250).  A
 * failure at any step says !ok (451 4.3.0): no row was written, so no
 * message is visible.  A blob stored by step 2 without the rows of step
 * 3 is unreferenced and removed later by blob_gc (after its grace
 * period): a blob without rows is acceptable, rows without a blob never
 * happen.  One message to several local recipients is one blob and one
 * statement.
 *
 * After the commit, for each mailbox that got the message, a notification
 * is published on the memory store (pub/sub; Redis across instances) on
 * channel DELIVERY_CHANNEL_PREFIX + mailbox id, message
 * "EXISTS <uid> <modseq>", so IMAP sessions (IDLE, NOOP) learn about it.
 * Pub/sub is a hint: a lost notification delays, never loses, a message.
 * When the commit queued remote recipients, "<queue id>" is published on
 * DELIVERY_QUEUE_CHANNEL, which wakes the outbound queue engines
 * (mailbox/outbound/queue.h) of every instance.
 *
 * Outbound copies share the blob, which starts with our Return-Path: line
 * when the message also had local recipients: the outbound sender must
 * skip a first header field named Return-Path (RFC 5321 4.4: a relay must
 * not send one).
 */
#ifndef MAILBOX_DELIVERY_DELIVERY_H
#define MAILBOX_DELIVERY_DELIVERY_H

#include "mailbox/delivery/delivery_sql.h"
#include "mailbox/store/blob.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DELIVERY_CHANNEL_PREFIX "mailbox:"
#define DELIVERY_QUEUE_CHANNEL  "outbound:queued"

struct blob_store;
struct mem_store;
struct pg_pool;

struct delivery_stores {
	struct pg_pool *pg;
	struct blob_store *blob;
	struct mem_store *mem; /* may be NULL: no notifications */
};

struct delivery_params {
	const char *id;        /* transaction id, for logs */
	const char *spool_dir; /* where the spool file goes */
	const char *hostname;  /* right-hand side of an added Message-ID */
	const char *sender;    /* envelope sender, "" for <> */
	/* local recipients: account ids (duplicates are fine) */
	const int64_t *accounts;
	size_t naccounts;
	/* remote recipients for the outbound queue */
	const struct delivery_sql_remote *remote;
	size_t nremote;
	int64_t account_id;  /* submitting account; 0: none */
	const char *dsn_ret; /* "FULL", "HDRS" or NULL */
	const char *envid;   /* DSN ENVID xtext or NULL */
	bool submission;     /* add Date:/Message-ID: when missing */
	time_t now;          /* for an added Date: */
};

/* What a commit did, for the caller's log line (valid during the call). */
struct delivery_result {
	const char *key; /* blob key */
	uint64_t size;
	size_t mailboxes;  /* local mailboxes that got the message */
	int64_t queue_id;  /* queue_messages.id, 0 if nothing was queued */
	const char *step;  /* failure: "spool", "reserve", "blob", "deliver" */
	const char *error; /* failure: the store's message */
	double ms;         /* commit duration */
};

/* ok: durable and visible.  The callback may free the delivery. */
typedef void delivery_done_cb(void *arg, bool ok, const struct delivery_result *r);

struct delivery;

/*
 * Open a message for p (everything is copied) on the stores st (which must
 * outlive it).  Creates the spool file and writes the Return-Path line.
 * NULL with err filled when the spool cannot be written (451).
 */
struct delivery *delivery_begin(const struct delivery_stores *st, const struct delivery_params *p,
                                char *err, size_t errsz);

/* Append content.  0, or -1 with err (spool write failure); after a
 * failure the message can only be freed. */
int delivery_write(struct delivery *d, const uint8_t *p, size_t n, char *err, size_t errsz);

/*
 * All content written: make it durable and visible (see above); cb runs
 * from the loop exactly once, unless the delivery is freed first.
 */
void delivery_commit(struct delivery *d, delivery_done_cb *cb, void *arg);

/* Cancel whatever is in flight (no callback), remove the spool file and
 * free.  A commit already sent to Postgres may still complete there.
 * NULL-safe; sets *d to NULL. */
void delivery_free(struct delivery **d);

#endif
