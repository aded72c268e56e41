/*
 * mailbox/imap/session_private.h -- what the files of the IMAP session
 * share: the session struct, the command context and the helpers every
 * command handler uses.  Not for use outside mailbox/imap/.
 *
 * Division of labour:
 *   session.c     input loop, dispatch, states, tagged completion,
 *                 small commands (CAPABILITY, NOOP, LOGOUT, ENABLE, ID,
 *                 NAMESPACE, CHECK), the completion entry points
 *   capability.c  the CAPABILITY list for the current state
 *   auth.c        LOGIN, AUTHENTICATE, STARTTLS
 *   mailboxes.c   LIST, LSUB, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, STATUS
 *   listmatch.c   LIST patterns (pure)
 *   select.c      SELECT, EXAMINE, CLOSE, UNSELECT, QRESYNC select
 *   sync.c        announcing changes: EXISTS, EXPUNGE/VANISHED, FETCH
 *   fetch.c       FETCH and UID FETCH
 *   headers.c     HEADER.FIELDS[.NOT] filtering (pure)
 *   flags.c       STORE, flag lists
 *   search_cmd.c  SEARCH, SORT (the program itself: search.c)
 *   expunge.c     EXPUNGE, UID EXPUNGE, COPY, MOVE
 *   append.c      APPEND and literal spooling
 *   idle.c        IDLE
 *   quota.c       GETQUOTA, GETQUOTAROOT
 *   msgmap.c      sequence numbers <-> UIDs (pure)
 *   search_sql.c  a search program as SQL for the Postgres store (pure)
 *
 * A command runs from dispatch until imap_cmd_finish(); in between it may
 * issue store requests one at a time (imap_op_begin + the ops call, always
 * the last thing the handler does, because the completion may run inside
 * the call).  The completion hands the result to the continuation the
 * handler registered.
 */
#ifndef MAILBOX_IMAP_SESSION_PRIVATE_H
#define MAILBOX_IMAP_SESSION_PRIVATE_H

#include "mailbox/imap/msgmap.h"
#include "mailbox/imap/parser.h"
#include "mailbox/imap/session.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_mode {
	IMAP_MODE_COMMAND = 0,
	IMAP_MODE_AUTH,     /* waiting for a SASL response line */
	IMAP_MODE_IDLE,     /* IDLE: waiting for DONE */
	IMAP_MODE_TLS_WAIT, /* STARTTLS accepted: input dropped */
	IMAP_MODE_CLOSED,
};

enum imap_op {
	IMAP_OP_NONE = 0,
	IMAP_OP_AUTH,
	IMAP_OP_LIST,
	IMAP_OP_MBOX, /* create, delete, rename, subscribe */
	IMAP_OP_STATUS,
	IMAP_OP_SELECT,
	IMAP_OP_FETCH,
	IMAP_OP_READ,
	IMAP_OP_STORE,
	IMAP_OP_EXPUNGE,
	IMAP_OP_COPY,
	IMAP_OP_APPEND,
	IMAP_OP_SEARCH,
	IMAP_OP_CHANGES,
	IMAP_OP_QUOTA,
	IMAP_OP_TLS,
};

/* ENABLEd extensions (RFC 5161). */
enum imap_enabled {
	IMAP_EN_CONDSTORE = 1 << 0,
	IMAP_EN_QRESYNC = 1 << 1,
	IMAP_EN_UTF8 = 1 << 2,
	IMAP_EN_REV2 = 1 << 3,
};

struct imap_reported {
	uint32_t uid;
	uint64_t modseq;
};

/* The selected mailbox. */
struct imap_selected {
	char *name;
	bool readonly;
	uint32_t uidvalidity;
	uint64_t modseq; /* changes up to here are known to the session */
	struct imap_msgmap map;
	/* expunged in the store, not yet announced (still numbered) */
	uint32_t *gone;
	size_t ngone, capgone;
	/* FETCH responses already sent for (uid, modseq): not again */
	struct imap_reported *reported;
	size_t nreported, capreported;
	/* keywords announced in FLAGS */
	char **keywords;
	size_t nkeywords;
	size_t exists; /* the count the client was last told */
	bool dirty;    /* a notification arrived: sync at the next chance */
};

typedef void imap_k_op(struct imap_session *s, enum imap_store_status st);
typedef void imap_k_status(struct imap_session *s, enum imap_store_status st,
                           const struct imap_status_info *info);
typedef void imap_k_fetch(struct imap_session *s, enum imap_store_status st,
                          const struct imap_msg_meta *rows, size_t n);
typedef void imap_k_store(struct imap_session *s, enum imap_store_status st,
                          const struct imap_flag_update *v, size_t n);
typedef void imap_k_changes(struct imap_session *s, enum imap_store_status st,
                            const struct imap_change *v, size_t n, uint64_t highestmodseq,
                            uint32_t uidvalidity);
typedef void imap_k_expunge(struct imap_session *s, enum imap_store_status st, const uint32_t *uids,
                            size_t n, uint64_t modseq);
typedef void imap_k_list(struct imap_session *s, enum imap_store_status st,
                         const struct imap_mbox_entry *v, size_t n);

struct imap_fetch_job;
struct imap_list_job;
struct imap_append_job;
struct imap_search_job;
struct imap_copy_job;

struct imap_session {
	struct imap_session_config cfg; /* hostname points at ours */
	char *hostname;
	const struct imap_store_ops *ops;
	void *ctx;
	struct imap_parser *parser;
	struct buf out;

	enum imap_state state;
	enum imap_mode mode;
	bool tls, closing, greeted;
	char *user;
	unsigned enabled; /* enum imap_enabled */
	unsigned bad_count, auth_failures;
	/* a rate limit bucket (tokens scaled by 1000) */
	uint64_t tokens, tokens_at;
	bool throttled;

	/* the command in progress */
	bool busy;
	char *tag;
	char cmd_name[32]; /* for messages: "UID FETCH" */
	bool cmd_uid;      /* a UID command: responses carry UID */
	bool expunge_ok;   /* EXPUNGE may be sent before the tagged reply */
	char *final;       /* tagged line waiting for the sync to finish */
	bool final_tagged; /* final ends the command (else: IDLE or notify) */

	/* the outstanding request */
	enum imap_op op;
	imap_k_op *k_op;
	imap_k_status *k_status;
	imap_k_fetch *k_fetch;
	imap_k_store *k_store;
	imap_k_changes *k_changes;
	imap_k_list *k_list;
	imap_k_expunge *k_expunge;

	/* AUTHENTICATE waiting for its response line */
	char *sasl_tag;

	/* selected mailbox (state SELECTED) */
	struct imap_selected sel;

	/* literals streamed (APPEND) while the command is read */
	void **spools;
	uint64_t *spool_sizes;
	bool *spool_failed;
	size_t nspools, capspools;
	bool spool_open; /* the last spool is still being written */

	/* per-command jobs */
	struct imap_fetch_job *fetch;
	struct imap_list_job *list;
	struct imap_append_job *append;
	struct imap_search_job *search;
	struct imap_copy_job *copy;
	char *pending_name; /* mailbox name of a request in flight */
	bool store_silent;  /* STORE ...FLAGS.SILENT */
	/* imap_session_write_modseq of the outstanding write */
	bool wm_set;
	uint64_t wm_before, wm_after;
	uint64_t qresync_since;
	uint32_t *qresync_known;
	size_t nqresync_known;
};

/* --- output ------------------------------------------------------------------ */

void imap_printf(struct imap_session *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void imap_puts(struct imap_session *s, const char *str);
/* "tag STATUS [code] text\r\n" for the current command, now. */
void imap_tagged(struct imap_session *s, const char *status, const char *code, const char *text);
/*
 * End the current command: write the tagged line (after announcing
 * pending mailbox changes when the command allows it, which may take a
 * request), then let input flow again.
 */
void imap_cmd_finish(struct imap_session *s, const char *status, const char *code,
                     const char *text);
/* Write the tagged line imap_cmd_finish() kept and end the command
 * (nothing when there is none). */
void imap_cmd_final(struct imap_session *s);
/* BAD for the current command (counts towards max_bad). */
void imap_cmd_bad(struct imap_session *s, const char *text);
/* NO with the response code of a failed store request. */
void imap_cmd_store_fail(struct imap_session *s, enum imap_store_status st, const char *text);
/* The RFC 5530 code for st ("[UNAVAILABLE]"), or NULL for OK. */
const char *imap_store_status_code(enum imap_store_status st, bool trycreate);
/* Close after the output: "* BYE text" is written first when text. */
void imap_close(struct imap_session *s, const char *text);
/* Send a mailbox name in the client's encoding (modified UTF-7 unless
 * UTF8=ACCEPT). */
void imap_write_mbox(struct imap_session *s, const char *utf8);
/* A flag list "(\Seen foo)". */
void imap_write_flags(struct buf *b, const char *const *flags, size_t n);
/* Flags are case-insensitive (RFC 3501 2.3.2): is f among flags? */
bool imap_flags_has(const char *const *flags, size_t n, const char *f);

/*
 * A mailbox name argument to UTF-8 (decoding modified UTF-7 unless
 * UTF8=ACCEPT), INBOX normalised.  NULL with *errstr_r when invalid.
 */
char *imap_mbox_arg(struct imap_session *s, const struct imap_arg *a, const char **errstr_r);

/* --- requests ------------------------------------------------------------------ */

/* Mark op outstanding; the caller calls the ops function next, last. */
void imap_op_begin(struct imap_session *s, enum imap_op op);
/* In a completion: op must be the outstanding request; false when the
 * result is to be ignored (the session closed meanwhile). */
bool imap_session_complete(struct imap_session *s, enum imap_op op);

/* --- shared by the command files ----------------------------------------------- */

void imap_capability_write(struct imap_session *s, struct buf *b);
bool imap_auth_allowed(const struct imap_session *s);

void imap_cmd_login(struct imap_session *s, const struct imap_command *c);
void imap_cmd_authenticate(struct imap_session *s, const struct imap_command *c);
void imap_auth_line(struct imap_session *s, const char *line);
void imap_cmd_starttls(struct imap_session *s, const struct imap_command *c);

void imap_cmd_list(struct imap_session *s, const struct imap_command *c, bool lsub);
void imap_cmd_create(struct imap_session *s, const struct imap_command *c);
void imap_cmd_delete(struct imap_session *s, const struct imap_command *c);
void imap_cmd_rename(struct imap_session *s, const struct imap_command *c);
void imap_cmd_subscribe(struct imap_session *s, const struct imap_command *c, bool on);
void imap_cmd_status(struct imap_session *s, const struct imap_command *c);
void imap_list_job_free(struct imap_session *s);

void imap_cmd_select(struct imap_session *s, const struct imap_command *c, bool readonly);
void imap_cmd_close(struct imap_session *s, const struct imap_command *c, bool expunge);
/* Forget the selected mailbox; notify: tell the store (ops.unselect). */
void imap_selected_clear(struct imap_session *s, bool notify);

/* Announce what is pending, then, if final was set, write it. */
void imap_sync_start(struct imap_session *s);
/* Reconcile the result of ops.changes with the session's view and
 * announce it (then imap_sync_flush); false when the mailbox is gone
 * and the session is closing. */
bool imap_sync_apply(struct imap_session *s, enum imap_store_status st, const struct imap_change *v,
                     size_t n, uint64_t highestmodseq, uint32_t uidvalidity);
/* Flush announced-later state without a request (EXPUNGEs now allowed,
 * EXISTS changed); used before a tagged reply when no sync is needed. */
void imap_sync_flush(struct imap_session *s);
/* Remember that FETCH (uid, modseq) was sent (no repeat at the next sync). */
void imap_sync_reported(struct imap_session *s, uint32_t uid, uint64_t modseq);
/* Write EXPUNGE/VANISHED for the UIDs now (they must be in the map) and
 * drop them from it. */
void imap_sync_expunged(struct imap_session *s, const uint32_t *uids, size_t n);
/* After the session's own write answered with imap_session_write_modseq:
 * accounted says every change it made is in the client's view (responses
 * sent, map updated).  Returns true when sel.modseq now includes the write
 * (nothing else changed since the last sync); otherwise, if the write
 * changed something, sel.dirty is set.  Without a report: false, no
 * change (notifications then do the work, as for any other write). */
bool imap_sync_own_write(struct imap_session *s, bool accounted);
/* A keyword may be new: announce FLAGS/PERMANENTFLAGS if so. */
void imap_sync_keywords(struct imap_session *s, const char *const *flags, size_t n);
/* Write "* FLAGS (...)" and "* OK [PERMANENTFLAGS (...)]". */
void imap_sync_write_flags(struct imap_session *s);

void imap_cmd_fetch(struct imap_session *s, const struct imap_command *c, size_t argi);
void imap_fetch_job_free(struct imap_session *s);
void imap_fetch_resume(struct imap_session *s);

void imap_cmd_store(struct imap_session *s, const struct imap_command *c, size_t argi);
/* Parse a flag list argument (list or single atom) into canonical flag
 * strings; -1 with *errstr_r for an invalid flag. */
int imap_flags_parse(const struct imap_arg *a, bool allow_recent, char ***flags_r, size_t *n_r,
                     const char **errstr_r);
void imap_flags_free(char **flags, size_t n);

void imap_cmd_search(struct imap_session *s, const struct imap_command *c, size_t argi, bool sort);
void imap_search_job_free(struct imap_session *s);

void imap_cmd_expunge(struct imap_session *s, const struct imap_command *c, size_t argi);
void imap_cmd_copy(struct imap_session *s, const struct imap_command *c, size_t argi, bool move);
void imap_copy_job_free(struct imap_session *s);

void imap_cmd_append(struct imap_session *s, const struct imap_command *c);
void imap_append_chunk(struct imap_session *s, const uint8_t *p, size_t n, bool last);
void imap_append_spools_abort(struct imap_session *s);
void imap_append_job_free(struct imap_session *s);

void imap_cmd_idle(struct imap_session *s, const struct imap_command *c);
void imap_idle_line(struct imap_session *s, const char *line);
void imap_idle_notify(struct imap_session *s);

void imap_cmd_getquota(struct imap_session *s, const struct imap_command *c, bool root);

#endif
