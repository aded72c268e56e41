/*
 * mailbox/imap/store_ops.h -- everything the IMAP session asks of the
 * outside world, as one narrow asynchronous interface.
 *
 * The session (mailbox/imap/session.h) never touches Postgres, the blob
 * store, Redis or the directory itself.  Each side effect is a request
 * through struct imap_store_ops; the implementation (the server glue on
 * the real stores, a fake in the unit tests) answers by calling the
 * matching imap_session_*_done() function, either later from the event
 * loop or from inside the request itself.  At most one request is
 * outstanding per session, and while one is, the session consumes no
 * input, so pipelined commands wait and responses stay in command order.
 *
 * Conventions for every request and completion:
 *   - strings and arrays passed to a request are valid only during the
 *     call; the implementation copies what it keeps;
 *   - arrays passed to a completion are valid only during that call; the
 *     session copies what it keeps;
 *   - mailbox names are UTF-8, hierarchy delimiter '/', and "INBOX" is
 *     always spelled in upper case (the session normalises);
 *   - flags are strings: the system flags exactly as "\Seen", "\Answered",
 *     "\Flagged", "\Deleted", "\Draft" (canonical case), keywords as sent;
 *   - "the selected mailbox" is the one of the last successful select;
 *     the implementation remembers it (ops.unselect tells when it ends);
 *   - a request must neither free the session nor feed it input.
 *
 * The account is the implementation's business too: after a successful
 * auth, every request acts for that account.
 */
#ifndef MAILBOX_IMAP_STORE_OPS_H
#define MAILBOX_IMAP_STORE_OPS_H

#include "mailbox/imap/search.h"
#include "mailbox/mime/parser.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Outcome of a store request; each maps to one RFC 5530 response code. */
enum imap_store_status {
	IMAP_STORE_OK = 0,
	IMAP_STORE_NONEXISTENT, /* no such mailbox: [NONEXISTENT], [TRYCREATE]
	                           for COPY/MOVE/APPEND (RFC 3501 6.3.11) */
	IMAP_STORE_EXISTS,      /* [ALREADYEXISTS] */
	IMAP_STORE_OVERQUOTA,   /* [OVERQUOTA] */
	IMAP_STORE_LIMIT,       /* [LIMIT]: too many mailboxes, too big */
	IMAP_STORE_CANNOT,      /* [CANNOT]: not allowed (delete INBOX) */
	IMAP_STORE_HASCHILDREN, /* [HASCHILDREN]: DELETE of a \Noselect name
	                           with children (RFC 3501 6.3.4) */
	IMAP_STORE_TEMPFAIL,    /* [UNAVAILABLE]: a store is down, try later */
	IMAP_STORE_FAIL,        /* [SERVERBUG]: anything else */
};

enum imap_auth_result {
	IMAP_AUTH_OK = 0,
	IMAP_AUTH_FAIL,     /* NO [AUTHENTICATIONFAILED] */
	IMAP_AUTH_TEMPFAIL, /* NO [UNAVAILABLE] */
	IMAP_AUTH_LIMIT,    /* NO [LIMIT]: good credentials, too many sessions */
};

/* Reported through ops.abuse; the core turns them into bans keyed on the
 * proxied client address. */
enum imap_abuse {
	IMAP_ABUSE_AUTH_FAILED = 0, /* one failed LOGIN/AUTHENTICATE */
	IMAP_ABUSE_TOO_MANY_ERRORS, /* BAD limit reached, session closed */
	IMAP_ABUSE_RATE,            /* command rate limit hit */
};

/* Mailbox attributes: the RFC 6154 special uses and the structure. */
enum imap_mbox_attr {
	IMAP_MBOX_NOSELECT = 1 << 0,    /* exists only as a parent */
	IMAP_MBOX_NOINFERIORS = 1 << 1, /* cannot have children */
	IMAP_MBOX_ALL = 1 << 2,         /* \All */
	IMAP_MBOX_ARCHIVE = 1 << 3,     /* \Archive */
	IMAP_MBOX_DRAFTS = 1 << 4,      /* \Drafts */
	IMAP_MBOX_FLAGGED = 1 << 5,     /* \Flagged */
	IMAP_MBOX_JUNK = 1 << 6,        /* \Junk */
	IMAP_MBOX_SENT = 1 << 7,        /* \Sent */
	IMAP_MBOX_TRASH = 1 << 8,       /* \Trash */
};
#define IMAP_MBOX_SPECIAL_MASK                                                                     \
	(IMAP_MBOX_ALL | IMAP_MBOX_ARCHIVE | IMAP_MBOX_DRAFTS | IMAP_MBOX_FLAGGED |                \
	 IMAP_MBOX_JUNK | IMAP_MBOX_SENT | IMAP_MBOX_TRASH)

struct imap_mbox_entry {
	const char *name; /* UTF-8, '/'-separated */
	unsigned attrs;   /* enum imap_mbox_attr */
	bool subscribed;
};

struct imap_status_info {
	uint32_t messages, unseen, deleted;
	uint32_t uidnext, uidvalidity;
	uint64_t highestmodseq;
	uint64_t size; /* octets of all messages (RFC 8438 STATUS=SIZE) */
};

struct imap_select_info {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	/* every message, UIDs ascending */
	const uint32_t *uids;
	size_t nuids;
	uint32_t first_unseen_uid; /* 0: none */
	/* keywords in use (for the FLAGS response) */
	const char *const *keywords;
	size_t nkeywords;
	bool readonly; /* the store only allows reading (EXAMINE-like) */
};

/* What a fetch request must fill in (flags, UID and MODSEQ always). */
enum imap_meta_want {
	IMAP_META_INTERNALDATE = 1 << 0,
	IMAP_META_SIZE = 1 << 1,
	IMAP_META_ENVELOPE = 1 << 2,
	IMAP_META_BODYSTRUCTURE = 1 << 3,
	IMAP_META_BODY = 1 << 4,
	IMAP_META_HEADER = 1 << 5, /* the raw top-level header, if stored */
	IMAP_META_PARTS = 1 << 6,  /* part table and blob key: body fetches */
};

/* One message's stored metadata (computed at delivery by mailbox/mime). */
struct imap_msg_meta {
	uint32_t uid;
	uint64_t modseq;
	const char *const *flags;
	size_t nflags;
	int64_t internaldate;                        /* seconds since the epoch */
	int internaldate_tz;                         /* zone offset in minutes, for display */
	uint64_t size;                               /* RFC822.SIZE: octets of the stored message */
	const char *envelope, *bodystructure, *body; /* ready-to-send IMAP text */
	/* The top-level header including its empty line, when the store keeps
	 * it; NULL: the session reads it from the blob. */
	const char *header;
	size_t header_len;
	const struct mime_part *parts; /* see mailbox/mime/parser.h */
	size_t nparts;
	const char *blob; /* opaque key handed back to ops.read */
};

enum imap_flags_mode {
	IMAP_FLAGS_SET = 0,
	IMAP_FLAGS_ADD,
	IMAP_FLAGS_REMOVE,
};

struct imap_flag_update {
	uint32_t uid;
	uint64_t modseq;
	const char *const *flags; /* the message's flags now */
	size_t nflags;
	bool failed; /* UNCHANGEDSINCE refused it (RFC 7162 3.1.3) */
};

/* A change in the selected mailbox since some MODSEQ. */
struct imap_change {
	uint32_t uid;
	uint64_t modseq;
	const char *const *flags;
	size_t nflags;
	bool expunged;
};

struct imap_append_msg {
	void *spool; /* from ops.spool_open, written completely */
	uint64_t size;
	const char *const *flags;
	size_t nflags;
	bool has_date;
	int64_t date; /* INTERNALDATE, seconds since the epoch */
	int date_tz;  /* minutes east of UTC */
};

struct imap_store_ops {
	/*
	 * Check credentials.  authcid and password are what the client sent;
	 * authzid is "" or the user to act as (SASL PLAIN's authzid, or the
	 * "user" of a master login "user*master"): allow it only if authcid
	 * is a master account.  Answer with imap_session_auth_done().  The
	 * password is wiped by the session right after the call returns.
	 */
	void (*auth)(void *ctx, const char *authzid, const char *authcid, const char *password);

	/* Every mailbox of the account (any order).  Answer with
	 * imap_session_list_done(). */
	void (*list)(void *ctx);
	/* Answer each with imap_session_op_done(). special: one
	 * IMAP_MBOX_* special use, or 0 (RFC 6154 CREATE-SPECIAL-USE). */
	void (*create)(void *ctx, const char *name, unsigned special);
	void (*delete_mailbox)(void *ctx, const char *name);
	/* RFC 3501 6.3.5: renaming INBOX moves its messages to a new mailbox
	 * and leaves INBOX empty; renaming a parent renames its children. */
	void (*rename)(void *ctx, const char *from, const char *to);
	void (*subscribe)(void *ctx, const char *name, bool on);

	/* Counters of one mailbox.  Answer with imap_session_status_done(). */
	void (*status)(void *ctx, const char *name);

	/* Open name as the selected mailbox.  Answer with
	 * imap_session_select_done(). */
	void (*select)(void *ctx, const char *name, bool readonly);
	/* Optional, synchronous: the selected mailbox was closed. */
	void (*unselect)(void *ctx);

	/* Metadata of the given messages of the selected mailbox (UIDs
	 * ascending; an expunged one is left out).  Answer with
	 * imap_session_fetch_done(). */
	void (*fetch)(void *ctx, const uint32_t *uids, size_t n, unsigned want);
	/*
	 * Optional, synchronous: the same metadata from what the
	 * implementation has at hand (everything but flags and MODSEQ is
	 * written once, at delivery), without a request.  true: rows[0..n)
	 * filled for uids (flags and modseq left alone), to be copied before
	 * the caller returns to the loop (they may point into a cache that
	 * any session's next fetch changes); false: not all of it is at hand,
	 * ask fetch.
	 */
	bool (*fetch_cached)(void *ctx, const uint32_t *uids, size_t n, unsigned want,
	                     struct imap_msg_meta *rows);
	/* len octets at offset of a message's blob (blob as in the metadata
	 * row).  Answer with imap_session_read_done() and exactly len
	 * octets. */
	void (*read)(void *ctx, uint32_t uid, const char *blob, uint64_t offset, uint64_t len);

	/* Change flags of the given messages; unchangedsince NULL: no
	 * condition.  Answer with imap_session_store_done(), one row per
	 * message still present. */
	void (*store)(void *ctx, const uint32_t *uids, size_t n, enum imap_flags_mode mode,
	              const char *const *flags, size_t nflags, const uint64_t *unchangedsince);
	/* Expunge the \Deleted messages among uids (uids NULL: all of them).
	 * Answer with imap_session_expunge_done(). */
	void (*expunge)(void *ctx, const uint32_t *uids, size_t n);
	/* Copy (or move) messages of the selected mailbox into dst.  Answer
	 * with imap_session_copy_done(). */
	void (*copy)(void *ctx, const uint32_t *uids, size_t n, const char *dst, bool move);

	/* Appending: open a spool for one message's octets, write to it (0,
	 * or -1: the spool failed and will be aborted), then either hand the
	 * spools to append (which owns them from then on) or abort them. */
	void *(*spool_open)(void *ctx);
	int (*spool_write)(void *ctx, void *spool, const uint8_t *p, size_t n);
	void (*spool_abort)(void *ctx, void *spool);
	/* Store the messages in mailbox (all or none; RFC 3502).  Answer with
	 * imap_session_append_done(). */
	void (*append)(void *ctx, const char *mailbox, const struct imap_append_msg *v, size_t n);

	/* Run a search program on the selected mailbox (see search.h and
	 * search_sql.h).  Answer with imap_session_search_done(): matching
	 * UIDs ascending, or in sort order when q->nsort > 0. */
	void (*search)(void *ctx, const struct imap_search_query *q);

	/* Every change to the selected mailbox with modseq > since (new
	 * messages, flag changes, expunges).  Answer with
	 * imap_session_changes_done(). */
	void (*changes)(void *ctx, uint64_t since);
	/* Optional.  True when a poll (NOOP, CHECK) need not call changes:
	 * every change since the last completed changes request would have
	 * been announced with imap_session_notify, and none was. */
	bool (*changes_known)(void *ctx);

	/* Storage used and allowed for the account (RFC 9208).  Answer with
	 * imap_session_quota_done(). */
	void (*quota)(void *ctx);

	/*
	 * STARTTLS accepted: return 0 and start the handshake once the output
	 * (ending in "OK Begin TLS") is flushed, dropping every input byte
	 * buffered after the command; answer with imap_session_tls_done().
	 * -1: TLS cannot start now (NO).
	 */
	int (*starttls)(void *ctx);

	/* Optional: abuse events. */
	void (*abuse)(void *ctx, enum imap_abuse kind);
	/* Optional: the command rate limit needs a clock (milliseconds). */
	uint64_t (*now_ms)(void *ctx);
	/* Optional: the rate limit was hit; offer input again after ms. */
	void (*throttle)(void *ctx, uint64_t ms);
	/* Optional: the client's ID (RFC 2971) fields, key/value pairs
	 * (values may be NULL), for the log. */
	void (*client_id)(void *ctx, const char *const *kv, size_t n);
};

#endif
