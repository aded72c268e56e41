/*
 * tests/unit/imap_fake_store.h -- an in-memory implementation of
 * struct imap_store_ops for the IMAP session's tests and fuzzer.
 *
 * Accounts, mailboxes and messages live in plain arrays.  Messages are
 * real RFC 5322 octets; their ENVELOPE, BODYSTRUCTURE, part table and
 * search text come from mailbox/mime at insertion, exactly as delivery
 * computes them.  The semantics follow mailbox/store/schema.c (UIDs and
 * MODSEQs from the mailbox, tp_store_flags, tp_expunge, tp_copy), and
 * SEARCH/SORT are evaluated directly on the key tree with the meaning
 * mailbox/imap/search_sql.h documents.
 *
 * Each request computes its result at once.  In immediate mode the
 * completion is called from inside the request; in deferred mode it is
 * kept until fake_store_deliver() (the harness calls it between input
 * offers), which is how the real stores answer from the event loop.
 * "Other sessions" are simulated by the fake_store_other_* functions,
 * which change the store behind the session's back.
 */
#ifndef TESTS_UNIT_IMAP_FAKE_STORE_H
#define TESTS_UNIT_IMAP_FAKE_STORE_H

#include "mailbox/imap/session.h"
#include "mailbox/mime/parser.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fake_msg {
	uint32_t uid;
	uint64_t modseq;
	char **flags;
	size_t nflags;
	int64_t internaldate;
	char *data;
	size_t size;
	struct mime_result *mime;
	char *blob;
	bool expunged;
};

struct fake_mbox {
	char *name;
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
	bool subscribed;
	unsigned attrs;
	struct fake_msg *msgs;
	size_t n, cap;
};

struct fake_account {
	char *login, *password;
	bool master;
	uint64_t quota;
	struct fake_mbox *mboxes;
	size_t n;
};

struct fake_spool {
	struct buf data;
	bool used;
};

struct fake_result;

struct fake_store {
	struct fake_account *accounts;
	size_t naccounts;
	struct imap_session *s;
	int account;    /* logged in, -1 none */
	char *selected; /* name of the selected mailbox, NULL none */
	bool deferred;
	bool hold;          /* keep the next completion until released */
	bool header_column; /* fetch rows carry the raw header */
	bool meta_cached;   /* ops.fetch_cached answers (from the messages) */
	bool changes_known; /* ops.changes_known says yes */
	unsigned cached_answers;
	uint32_t next_uidvalidity;
	struct fake_result *pending;
	/* failure injection: the next request of this kind answers fail_st */
	char fail_op[32];
	int fail_st;
	/* spools */
	struct fake_spool *spools[64];
	size_t nspools_open;
	bool spool_write_fail;
	/* TLS */
	bool starttls_fail;
	bool tls_started;
	/* clock and rate limit */
	uint64_t now_ms;
	uint64_t throttled_for;
	/* what the session reported */
	char abuse_log[512];
	char id_log[512];
	unsigned requests;
};

void fake_store_init(struct fake_store *f);
void fake_store_free(struct fake_store *f);
/* The ops table; ctx is the struct fake_store. */
const struct imap_store_ops *fake_store_ops(void);

struct fake_account *fake_store_account(struct fake_store *f, const char *login);
void fake_store_account_add(struct fake_store *f, const char *login, const char *password,
                            bool master, uint64_t quota);
struct fake_mbox *fake_store_mbox(struct fake_account *a, const char *name);
struct fake_mbox *fake_store_mbox_add(struct fake_store *f, struct fake_account *a,
                                      const char *name, unsigned attrs, bool subscribed);
/* Add a message (octets copied); flags comma-separated or NULL. */
struct fake_msg *fake_store_msg_add(struct fake_store *f, struct fake_mbox *m, const char *data,
                                    size_t len, const char *flags, int64_t internaldate);

/* Changes by another session (no completion involved). */
void fake_store_other_flags(struct fake_store *f, struct fake_mbox *m, uint32_t uid,
                            const char *flags);
void fake_store_other_expunge(struct fake_store *f, struct fake_mbox *m, uint32_t uid);

/* Deferred mode: deliver the kept completion; false if there is none
 * (or it is held). */
bool fake_store_deliver(struct fake_store *f);
bool fake_store_pending(const struct fake_store *f);
/* Drop a kept completion without delivering it (session shut down). */
void fake_store_cancel(struct fake_store *f);

#endif
