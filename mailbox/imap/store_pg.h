/*
 * mailbox/imap/store_pg.h -- struct imap_store_ops on the real stores:
 * the async Postgres pool (mailbox/store/pg.h), the blob store, the
 * directory's login check and the memory store's pub/sub.
 *
 * One struct imap_pg per IMAP connection, embedded first in the glue's
 * own state (mailbox/imap/server.c) so the session's ctx points at both.
 * At most one request is outstanding (the session's rule), so one handle
 * of each kind is enough and imap_pg_cleanup() cancels it.
 *
 * Change notifications: after each change to a mailbox a message is
 * published on channel IMAP_PG_CHANNEL_FMT (the mailbox id); a session
 * subscribes to the channel of its selected mailbox, on every instance,
 * and hands the hint to imap_session_notify().  Local delivery publishes
 * on the same channel.  While the subscription stays live, the absence of
 * notifications also answers a poll (ops.changes_known, for at most
 * sync_interval after the last look).
 */
#ifndef MAILBOX_IMAP_STORE_PG_H
#define MAILBOX_IMAP_STORE_PG_H

#include "mailbox/delivery/delivery.h"
#include "mailbox/imap/session.h"
#include "mailbox/imap/store_ops.h"

#include <stdbool.h>
#include <stdint.h>

/* printf format of the pub/sub channel of one mailbox (its id): the
 * channel local delivery publishes on (DELIVERY_CHANNEL_PREFIX in
 * mailbox/delivery/delivery.h), so new mail reaches IDLE at once.  The
 * message text is a hint only; the session asks Postgres what changed. */
#define IMAP_PG_CHANNEL_FMT DELIVERY_CHANNEL_PREFIX "%lld"

struct pg_pool;
struct pg_req;
struct blob_store;
struct blob_req;
struct mem_store;
struct mem_sub;
struct password_pool;
struct auth_req;
struct imap_pg_append;
struct imap_account_conns;
struct imap_blob_cache;

struct imap_pg {
	struct pg_pool *pg;
	struct blob_store *blob;
	struct mem_store *mem;
	struct password_pool *pw;
	struct imap_session *session; /* set by the glue after imap_session_new */
	/* Called after every completion handed to the session (and every
	 * notification), so the glue writes the output and offers input. */
	void (*kick)(struct imap_pg *p);
	/* Optional: a login attempt ended (for the log); login is the
	 * canonical account on IMAP_AUTH_OK (p->master is set after a master
	 * login), reason says why otherwise. */
	void (*on_auth)(struct imap_pg *p, enum imap_auth_result r, const char *login,
	                const char *reason);

	/* Set by the glue from the imap: config (all optional). */
	char **masters; /* master user logins (owned: imap_pg_cleanup frees) */
	size_t nmasters;
	struct imap_account_conns *conns; /* per-account session counts */
	unsigned max_per_account;         /* 0: no limit */
	double sync_interval;             /* seconds (changes_known); 0: always ask */
	struct imap_blob_cache *cache;    /* body reads and stored metadata */
	/* With a cache: run imap_pg_deferred(p) soon from the loop (not
	 * from inside this call). */
	void (*defer)(struct imap_pg *p);

	int64_t account;
	char *login;
	char *master;    /* the master's login after a master login */
	char *authzid;   /* during a master login: the user to act as */
	bool counted;    /* holds a slot in conns */
	char *read_blob; /* the read in flight */
	uint64_t read_off, read_len;
	bool read_deferred;  /* waiting for imap_pg_deferred() */
	int64_t mbox;        /* selected mailbox id, 0: none */
	unsigned fetch_want; /* of the fetch in flight */
	/* the part tables ops.fetch_cached parsed, kept until its next call */
	struct imap_pg_parts {
		struct mime_part *parts;
		size_t n;
		char **secs;
	} * cached;
	size_t ncached;
	struct mem_sub *sub;
	/* changes_known: the subscription's epoch when the changes request
	 * in flight was sent (0: not live) and when; of the last one that
	 * completed: the same */
	uint64_t sync_epoch, known_epoch;
	double sync_at, known_at;

	struct pg_req *req;
	struct blob_req *breq;
	struct auth_req *areq;
	struct imap_pg_append *app; /* an APPEND in progress */
	/* names this session in its own notifications ("changed <origin>"),
	 * which it then ignores: it reports its writes to the session itself
	 * (imap_session_write_modseq) */
	char origin[40];
};

/* Set up p on the stores (no I/O). */
void imap_pg_init(struct imap_pg *p, struct pg_pool *pg, struct blob_store *blob,
                  struct mem_store *mem, struct password_pool *pw);
/* Cancel what is outstanding (no completion will arrive) and free. */
void imap_pg_cleanup(struct imap_pg *p);
/* The deferred part of a body read (see defer above); nothing when none
 * is waiting. */
void imap_pg_deferred(struct imap_pg *p);
/* Fill the store requests of ops (starttls, abuse, now_ms, throttle and
 * client_id are left for the glue). */
void imap_pg_ops_fill(struct imap_store_ops *ops);

#endif
