/*
 * mailbox/store/schema.h -- the Postgres schema: versioned migrations and
 * the version check `serve` runs.
 *
 * Migrations are SQL kept in C (schema.c: a table of {version, sql}),
 * applied in order, each in its own transaction together with the row in
 * schema_version that records it.  schema_migrate() takes a session-level
 * advisory lock first, so two instances (or a `migrate` racing a second
 * one) never apply the same step twice: the second waits, then finds
 * nothing to do.
 *
 * What the schema provides to the rest of the daemon (SQL, not C):
 *
 *   domains(id, name)          accounts(id, login, role, password_hash,
 *                                       quota_bytes, disabled, created)
 *   addresses(id, address, domain_id, account_id | targets text[])
 *       address is lower-case "local@domain", or "@domain" (catch-all);
 *       exactly one of account_id (a mailbox) and targets (an alias) is set
 *   mailboxes(id, account_id, name, uidvalidity, uidnext, highestmodseq,
 *             subscribed, special_use)
 *   messages(id, mailbox_id, uid, modseq, flags text[], internaldate, size,
 *            blob_key, envelope, bodystructure, body, hdr_from, hdr_to,
 *            hdr_cc, hdr_subject, hdr_date, hdr_message_id, parts jsonb,
 *            search_tsv tsvector, search_text, expunged)
 *   blobs(key, size, created, last_used)
 *   queue_messages / queue_rcpts (outbound queue; claimed with FOR UPDATE
 *            SKIP LOCKED through lease_until/lease_owner)
 *   dkim_keys, api_tokens(hash = sha256 hex of the bearer token)
 *
 * Atomic operations as plpgsql functions (one statement each; row locks on
 * the mailbox rows make them correct with several daemons; mailbox ids are
 * locked in ascending order so two calls cannot deadlock):
 *
 *   tp_blob_reserve(key text, size bigint) -> void
 *       call BEFORE putting a blob: marks it in use so the collector
 *       (blob_gc) leaves it alone for a grace period.
 *   tp_append_begin(account bigint, mailbox text, keys text[], sizes bigint[])
 *       -> TABLE(id bigint, uidvalidity bigint, quota bigint, used bigint)
 *       IMAP APPEND: the mailbox (id NULL: none; no row: no account), the
 *       account's quota and usage, and, when the mailbox exists, the
 *       blobs reserved as tp_blob_reserve does (commit not waiting for
 *       the WAL flush: tp_deliver checks the reservation).
 *   tp_deliver(mailbox_ids bigint[], blob_key text, size bigint,
 *              internaldate timestamptz, flags text[], envelope text,
 *              bodystructure text, body text, hdr_from text, hdr_to text,
 *              hdr_cc text, hdr_subject text, hdr_date timestamptz,
 *              hdr_message_id text, parts jsonb, search_text text)
 *       -> TABLE(mailbox_id bigint, uid bigint, modseq bigint)
 *       inserts the message into every mailbox: uid = uidnext and a new
 *       modseq per mailbox, bumping uidnext/highestmodseq; search_text is
 *       truncated below Postgres' 1 MB tsvector limit.  The blob must be
 *       reserved (its row present; held until commit): otherwise it
 *       fails with SQLSTATE 40001 and the caller puts it again.
 *   tp_store_flags(mailbox_id bigint, uids bigint[], mode text ('set',
 *              'add', 'remove'), flags text[], unchangedsince bigint|NULL)
 *       -> TABLE(uid bigint, modseq bigint, flags text[], failed bool)
 *       RFC 7162 3.1.3: a message whose modseq > unchangedsince is left
 *       alone and returned with failed = true.
 *   tp_expunge(mailbox_id bigint, uids bigint[] | NULL (all \Deleted))
 *       -> TABLE(uid bigint, modseq bigint)
 *   tp_copy(src bigint, uids bigint[], dst bigint, move bool)
 *       -> TABLE(src_uid bigint, dst_uid bigint)   (RFC 4315 COPYUID)
 *   tp_mailbox_create(account_id bigint, name text, special_use text)
 *       -> bigint (id; uidvalidity from the clock and a sequence, so a
 *       mailbox re-created under the same name gets a new one)
 *   tp_rcpt_lookup(address text)
 *       -> TABLE(kind text, account_id bigint, target text)
 *       recipient resolution for mailbox/directory/lookup.h: no rows for a
 *       foreign domain, else one 'domain' row, then 'account' and
 *       'forward' rows (exact, user+tag, catch-all; aliases expanded).
 */
#ifndef MAILBOX_STORE_SCHEMA_H
#define MAILBOX_STORE_SCHEMA_H

#include <postgresql/libpq-fe.h>
#include <stddef.h>

/* The schema version this build needs (the last migration's number). */
int schema_latest(void);

/*
 * The version recorded in c's database: 0 when schema_version does not
 * exist yet (an empty database).  0 and *version_r, or -1 with err.
 */
int schema_version(PGconn *c, int *version_r, char *err, size_t errsz);

/*
 * Apply every missing migration, each in its own transaction, under an
 * advisory lock.  *from_r and *to_r (may be NULL) receive the versions before
 * and after.  A database newer than this build is an error (we never
 * downgrade).  Idempotent: a second call does nothing.  0 or -1 with err
 * ("migration 3: <server message>"); a failed step is rolled back whole.
 */
int schema_migrate(PGconn *c, int *from_r, int *to_r, char *err, size_t errsz);

/*
 * For `serve`: 0 if the database is at schema_latest(); -1 otherwise with
 * err = "database schema is version N, this build needs M: run
 * 'tailpost-mailbox migrate'" (or, when newer, "... is newer than this
 * build (M): upgrade tailpost-mailbox").
 */
int schema_check_version(PGconn *c, char *err, size_t errsz);

/* Characters of search text indexed in the tsvector (tp_deliver cuts
 * there; see schema.c for how that stays below the 1 MB tsvector limit). */
#define SCHEMA_SEARCH_TSV_MAX (256u * 1024)
/* Bytes of raw search text worth sending to tp_deliver: it keeps at most
 * this many characters for substring SEARCH.  Callers should cut with
 * schema_utf8_truncate(text, len, SCHEMA_SEARCH_TEXT_MAX). */
#define SCHEMA_SEARCH_TEXT_MAX (1024u * 1024)

/* The longest prefix of s[0..len) that is at most max bytes and does not
 * split a UTF-8 sequence.  Pure. */
size_t schema_utf8_truncate(const char *s, size_t len, size_t max);

#endif
