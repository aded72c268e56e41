/*
 * mailbox/imap/session.h -- the IMAP server state machine.
 *
 * A session takes the client's bytes, runs them through the command
 * parser (mailbox/imap/parser.h), decides, and writes responses into an
 * output buffer.  It does no I/O, keeps no timers and never logs; every
 * side effect is a request through struct imap_store_ops
 * (mailbox/imap/store_ops.h), answered later (or at once) by one of the
 * imap_session_*_done() completions below.  While a request is
 * outstanding no input is consumed: pipelined commands stay with the
 * caller, and responses come out in command order.
 *
 * States (RFC 3501 3): not authenticated -> authenticated -> selected,
 * and logout.  Extensions: IDLE, UIDPLUS, MOVE, SPECIAL-USE, NAMESPACE,
 * ENABLE, ID, UNSELECT, CHILDREN, LIST-EXTENDED, LIST-STATUS, LITERAL+,
 * SASL-IR, CONDSTORE, QRESYNC, ESEARCH, SORT, STATUS=SIZE, QUOTA,
 * UTF8=ACCEPT, and IMAP4rev2 when configured.
 *
 * How the glue drives it:
 *   s = imap_session_new(&cfg, &ops, ctx);  [imap_session_set_tls(s) for
 *   implicit TLS]; imap_session_greet(s);
 *   on input: used = imap_session_input(s, p, n); the caller keeps the
 *     n - used bytes it was not able to hand over and offers them again
 *     (with whatever arrived since) after the next completion, after
 *     imap_session_writable() and after a throttle delay;
 *   whenever imap_session_outbuf(s) is non-empty: write it and
 *     buf_consume() what went out; once it drained below IMAP_OUT_HIGH
 *     call imap_session_writable(s) (a large FETCH is produced in pieces);
 *   after ops.starttls() returned 0: flush the output in clear, drop the
 *     unconsumed input, run the handshake, imap_session_tls_done();
 *   selected mailbox changed elsewhere (pub/sub): imap_session_notify();
 *   every minute or so while imap_session_idling(): imap_session_idle_tick()
 *     (RFC 2177 keepalive: at least every 2 minutes, "* OK Still here");
 *   idle/autologout timeouts (RFC 3501 5.4: at least 30 minutes, IDLE
 *     too): imap_session_shutdown(s, IMAP_CLOSE_TIMEOUT);
 *   when imap_session_closing(s): flush the output, then close.
 *
 * Security: LOGIN and AUTHENTICATE are refused before TLS unless
 * cfg.allow_plaintext_auth (LOGINDISABLED, RFC 3501 6.2.3); input after
 * STARTTLS is dropped by the session and the glue (no command
 * injection); SASL lines and passwords are wiped once handled; failed
 * logins go to ops.abuse and, past cfg.max_auth_failures, end the session.
 */
#ifndef MAILBOX_IMAP_SESSION_H
#define MAILBOX_IMAP_SESSION_H

#include "mailbox/imap/store_ops.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Queued response bytes above which the session stops producing. */
#define IMAP_OUT_HIGH (256 * 1024)
/* Octets of a message body read per ops.read request. */
#define IMAP_READ_CHUNK (128 * 1024)
/* Messages per ops.fetch request. */
#define IMAP_FETCH_BATCH 256

struct imap_session_config {
	const char *hostname;       /* greeting (copied) */
	bool starttls_available;    /* a certificate is loaded: offer STARTTLS */
	bool allow_plaintext_auth;  /* LOGIN/AUTHENTICATE without TLS */
	bool imap4rev2;             /* advertise IMAP4rev2 (RFC 9051) */
	char master_separator;      /* "user*master" logins: '*'; 0: off */
	size_t max_line;            /* command line bound; 0: 64 KiB */
	uint64_t max_message;       /* APPEND literal bound; 0: 64 MiB */
	unsigned max_bad;           /* BAD responses before BYE; 0: 20 */
	unsigned max_auth_failures; /* failed logins before BYE; 0: 3 */
	unsigned rate_burst;        /* commands without delay; 0: no limit */
	unsigned rate_per_sec;      /* refill of the bucket (needs ops.now_ms
	                               and ops.throttle) */
};

enum imap_state {
	IMAP_STATE_NOAUTH = 0,
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};

enum imap_close_reason {
	IMAP_CLOSE_TIMEOUT = 0, /* "* BYE Autologout; idle for too long" */
	IMAP_CLOSE_SHUTDOWN,    /* "* BYE Server shutting down" */
	IMAP_CLOSE_KICKED,      /* "* BYE Session terminated" (ban, account gone) */
};

struct imap_session;

/* A new session; cfg is copied, ops must outlive it.  No I/O happens. */
struct imap_session *imap_session_new(const struct imap_session_config *cfg,
                                      const struct imap_store_ops *ops, void *ctx);
/* Free a session (NULL is fine; *s set to NULL).  Open spools are
 * aborted through ops.spool_abort.  An outstanding request must have
 * been cancelled by the glue: its completion must never arrive. */
void imap_session_free(struct imap_session **s);

/* TLS is active (implicit TLS): call before the greeting. */
void imap_session_set_tls(struct imap_session *s);
/* Queue the greeting "* OK [CAPABILITY ...] ..." */
void imap_session_greet(struct imap_session *s);

/*
 * Offer n input bytes.  Returns how many were consumed (0..n); the
 * caller offers the rest again later (see above).  Consumes nothing
 * while a request is outstanding, the output is above IMAP_OUT_HIGH, or
 * the session is closing (then everything is "consumed" and dropped).
 */
size_t imap_session_input(struct imap_session *s, const uint8_t *p, size_t n);
/* Where responses accumulate; the glue writes and consumes them. */
struct buf *imap_session_outbuf(struct imap_session *s);
/* The output drained: continue a response produced in pieces. */
void imap_session_writable(struct imap_session *s);

/* --- completions of struct imap_store_ops requests ------------------------ */
/* Calling one while its request is not outstanding is a broken invariant.
 * Arrays are read during the call only. */

/* account: the canonical account name on IMAP_AUTH_OK (NULL: as given). */
void imap_session_auth_done(struct imap_session *s, enum imap_auth_result r, const char *account);
void imap_session_list_done(struct imap_session *s, enum imap_store_status st,
                            const struct imap_mbox_entry *v, size_t n);
/* create, delete_mailbox, rename, subscribe */
void imap_session_op_done(struct imap_session *s, enum imap_store_status st);
void imap_session_status_done(struct imap_session *s, enum imap_store_status st,
                              const struct imap_status_info *info);
void imap_session_select_done(struct imap_session *s, enum imap_store_status st,
                              const struct imap_select_info *info);
void imap_session_fetch_done(struct imap_session *s, enum imap_store_status st,
                             const struct imap_msg_meta *rows, size_t n);
void imap_session_read_done(struct imap_session *s, enum imap_store_status st, const uint8_t *data,
                            size_t len);
void imap_session_store_done(struct imap_session *s, enum imap_store_status st,
                             const struct imap_flag_update *v, size_t n);
/* uids: the messages expunged; modseq: the mailbox's new HIGHESTMODSEQ. */
void imap_session_expunge_done(struct imap_session *s, enum imap_store_status st,
                               const uint32_t *uids, size_t n, uint64_t modseq);
/* src[i] was copied to dst[i] in a mailbox with dst_uidvalidity. */
void imap_session_copy_done(struct imap_session *s, enum imap_store_status st,
                            uint32_t dst_uidvalidity, const uint32_t *src, const uint32_t *dst,
                            size_t n);
void imap_session_append_done(struct imap_session *s, enum imap_store_status st,
                              uint32_t uidvalidity, const uint32_t *uids, size_t n);
/* highestmodseq: the highest MODSEQ among the matches (0 if none). */
void imap_session_search_done(struct imap_session *s, enum imap_store_status st,
                              const uint32_t *uids, size_t n, uint64_t highestmodseq);
/*
 * Optional, just before the answer to a store, expunge or append into the
 * selected mailbox: the mailbox's HIGHESTMODSEQ before and after this
 * session's write, which was the only change in between (the store held
 * the mailbox row lock).  before == after: the write changed nothing.
 * When before is what the session already knew, it takes after as known
 * and needs no sync for its own change; otherwise it syncs.  A store that
 * calls this must not notify the session of that write itself.
 */
void imap_session_write_modseq(struct imap_session *s, uint64_t before, uint64_t after);
/* The mailbox's state at the time of the query; a different uidvalidity
 * means it was deleted and recreated (the session says BYE). */
void imap_session_changes_done(struct imap_session *s, enum imap_store_status st,
                               const struct imap_change *v, size_t n, uint64_t highestmodseq,
                               uint32_t uidvalidity);
/* limit 0: no quota. */
void imap_session_quota_done(struct imap_session *s, enum imap_store_status st, uint64_t used,
                             uint64_t limit);
/* The handshake after STARTTLS ended; !ok: the session is closing. */
void imap_session_tls_done(struct imap_session *s, bool ok);

/* --- events from the glue ------------------------------------------------- */

/* The selected mailbox changed (another session, another instance): the
 * changes are announced at the next point RFC 3501 5.2 allows (at once
 * during IDLE). */
void imap_session_notify(struct imap_session *s);
/* IDLE keepalive; does nothing outside IDLE. */
void imap_session_idle_tick(struct imap_session *s);
/* Queue "* BYE ..." for reason and close. */
void imap_session_shutdown(struct imap_session *s, enum imap_close_reason reason);

/* --- predicates ------------------------------------------------------------ */

/* Flush the output, then close the connection. */
bool imap_session_closing(const struct imap_session *s);
/* A request is outstanding. */
bool imap_session_pending(const struct imap_session *s);
/* In IDLE: use the long idle timeout and send keepalives. */
bool imap_session_idling(const struct imap_session *s);
/* Waiting for the STARTTLS handshake. */
bool imap_session_tls_wait(const struct imap_session *s);
enum imap_state imap_session_state(const struct imap_session *s);
/* The authenticated account, or NULL. */
const char *imap_session_user(const struct imap_session *s);

#endif
