/*
 * mailbox/delivery/delivery_sql.h -- the one statement that makes a
 * received message visible: local delivery and the outbound queue rows.
 *
 * DESIGN.md "Nothing accepted is lost": after the blob is durable, ONE
 * Postgres statement (so one transaction, in autocommit) does everything
 * else, or nothing:
 *
 *   WITH qm AS (INSERT INTO queue_messages ... RETURNING id),        -- if
 *        qr AS (INSERT INTO queue_rcpts ... FROM qm, unnest(...))    -- remote
 *   SELECT mailbox_id, uid, modseq, queue_id
 *     FROM tp_deliver(ARRAY(INBOX ids of the accounts), ...)          -- if local
 *
 * Data-modifying CTEs always run to completion (PostgreSQL "WITH Queries",
 * 7.8.4) and the whole statement is atomic, so a failure anywhere leaves
 * no message row and no queue row.  tp_deliver (mailbox/store/schema.h)
 * allocates UID and MODSEQ under the mailbox row locks.  The result has
 * one row per local mailbox (mailbox_id, uid, modseq, queue_id), or, with
 * no local recipient, one row (NULL, NULL, NULL, queue_id).
 *
 * Text columns must be valid UTF-8 for the database: the IMAP strings the
 * MIME parser produced (ENVELOPE, BODYSTRUCTURE) are stored only when they
 * are (a raw 8-bit header in another charset makes them NULL, and the
 * reader then parses the blob); other header fields get invalid bytes
 * replaced by '?'.
 *
 * Pure: builds the SQL text and its parameters; no I/O.
 */
#ifndef MAILBOX_DELIVERY_DELIVERY_SQL_H
#define MAILBOX_DELIVERY_DELIVERY_SQL_H

#include "mailbox/mime/parser.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One recipient for the outbound queue. */
struct delivery_sql_remote {
	const char *addr;   /* the envelope recipient */
	const char *notify; /* DSN NOTIFY as text ("SUCCESS,FAILURE", "NEVER"), or NULL */
	const char *orcpt;  /* DSN ORCPT "addr-type;xtext", or NULL */
};

struct delivery_sql_in {
	const char *key; /* blob key (SHA-256 hex) */
	uint64_t size;   /* octets of the stored message */
	/* local delivery: the INBOX of each account (duplicates allowed) */
	const int64_t *accounts;
	size_t naccounts;
	const struct mime_result *mime; /* required when naccounts > 0 */
	/* outbound queue */
	const struct delivery_sql_remote *remote;
	size_t nremote;
	const char *sender;  /* "" for the null sender */
	int64_t account_id;  /* the submitting account; 0: none (NULL) */
	const char *dsn_ret; /* "FULL", "HDRS" or NULL */
	const char *envid;   /* DSN ENVID xtext or NULL */
};

struct delivery_sql {
	char *sql;
	char **params; /* nparams strings; a NULL element is SQL NULL */
	int nparams;
};

/* Build the statement for in (naccounts + nremote > 0) into *out.  Free
 * with delivery_sql_free. */
void delivery_sql_build(const struct delivery_sql_in *in, struct delivery_sql *out);
void delivery_sql_free(struct delivery_sql *q);

/*
 * The part table as stored in messages.parts (jsonb): an array with one
 * object per part, in the parser's order:
 *   {"section":"1.2","hdr_start":N,"body_start":N,"body_end":N,
 *    "msg_body_start":N,"lines":N,"multipart":bool,"message":bool}
 * (offsets are octets of the stored blob; see struct mime_part).  Returns
 * a malloc'd string.
 */
char *delivery_sql_parts_json(const struct mime_part *parts, size_t n);

/* True if s[0..n) is valid UTF-8 (no overlongs, surrogates or values past
 * U+10FFFF). */
bool delivery_sql_utf8_valid(const char *s, size_t n);

#endif
