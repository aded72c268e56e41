/*
 * mailbox/outbound/queue_admin.h -- the operator's view of the outbound
 * queue: list, show, retry, delete.  Blocking, on one PGconn: for
 * `tailpost-mailbox queue ...` and the admin API's worker thread.
 *
 * The queue is queue_messages (one row per accepted message) and
 * queue_rcpts (one row per recipient: pending, sent, failed, bounced;
 * mailbox/store/schema.c).  Only the columns of schema migration 1 are
 * read, so the queue engine may add its own without breaking this.
 *
 * retry makes pending recipients due now (next_attempt = now()); the
 * delivery workers pick them up at their next poll.  A recipient under a
 * live lease (being delivered right now) keeps its lease.  delete removes
 * a message and its recipients without any bounce; a delivery already in
 * progress may still complete.  The message's blob stays until the blob
 * collector finds it unreferenced.
 *
 * Every function returns 0, or -1 with err filled ("queue message 42 does
 * not exist").
 */
#ifndef MAILBOX_OUTBOUND_QUEUE_ADMIN_H
#define MAILBOX_OUTBOUND_QUEUE_ADMIN_H

#include <jansson.h>
#include <postgresql/libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue_admin_rcpt {
	int64_t id;
	char *rcpt;
	char *status; /* "pending", "sent", "failed", "bounced" */
	int64_t attempts;
	char *next_attempt; /* ISO 8601 UTC */
	char *last_error;   /* or NULL */
	char *lease_until;  /* or NULL */
	char *lease_owner;  /* or NULL */
	char *dsn_notify;   /* or NULL */
	char *dsn_orcpt;    /* or NULL */
	char *updated;
};

struct queue_admin_msg {
	int64_t id;
	char *account; /* the submitting account's login, or NULL */
	char *sender;  /* "" for the null reverse-path */
	char *blob_key;
	int64_t size;
	char *dsn_ret;   /* or NULL */
	char *dsn_envid; /* or NULL */
	char *created;
	struct queue_admin_rcpt *rcpts; /* by id */
	size_t nrcpts;
};

/* Parse a queue id (decimal, 1..INT64_MAX).  0, or -1.  Pure. */
int queue_admin_parse_id(const char *s, int64_t *id_r);

/* The messages by id, each with its recipients; limit 0: all. */
int queue_admin_list(PGconn *c, int64_t limit, struct queue_admin_msg **v_r, size_t *n_r, char *err,
                     size_t errsz);
/* One message; -1 with "queue message N does not exist" when absent.
 * Release *out with queue_admin_msg_clear. */
int queue_admin_show(PGconn *c, int64_t id, struct queue_admin_msg *out, char *err, size_t errsz);
/* Make the pending recipients of message id (0: of every message) due
 * now; *n_r (may be NULL) gets how many recipients that concerned.  An
 * unknown id is an error; a message without pending recipients is not. */
int queue_admin_retry(PGconn *c, int64_t id, int64_t *n_r, char *err, size_t errsz);
/* Delete message id and its recipients (no bounce); *nrcpts_r (may be
 * NULL) gets how many recipients it had. */
int queue_admin_delete(PGconn *c, int64_t id, int64_t *nrcpts_r, char *err, size_t errsz);

/* {"id", "account", "sender", "blob_key", "size", "dsn_ret", "dsn_envid",
 *  "created", "recipients": [{"id", "rcpt", "status", "attempts",
 *  "next_attempt", "last_error", "lease_until", "lease_owner",
 *  "dsn_notify", "dsn_orcpt", "updated"}...]}; NULL fields are JSON null.
 * A new reference. */
json_t *queue_admin_msg_json(const struct queue_admin_msg *m);

void queue_admin_msg_clear(struct queue_admin_msg *m);
void queue_admin_msgs_free(struct queue_admin_msg **v, size_t n);

#endif
