/*
 * mailbox/smtp/session.h -- the SMTP server state machine.
 *
 * A session takes the client's bytes, parses them (mailbox/smtp/parser.h),
 * decides, and writes replies into an output buffer; it does no I/O, keeps
 * no clock of its own and never logs.  Everything with a side effect goes
 * through struct smtp_session_ops, a narrow interface the server glue
 * implements (directory lookups, password checks, the message store, the
 * TLS handshake, abuse counting).
 *
 * Asynchronous operations.  auth_check, mail_check, rcpt_check and
 * message_commit are requests: the glue answers later by calling the
 * matching smtp_session_*_done() (it may also answer from inside the
 * request).  While one is outstanding the session processes no further
 * input: pipelined commands wait in the input buffer, so replies always
 * come out in command order (RFC 2920 3).  String arguments of every ops
 * call are valid only during that call.  An ops call must not free the
 * session or feed it input; a completion that arrives after
 * smtp_session_shutdown() is accepted and ignored.
 *
 * How the glue drives it:
 *   s = smtp_session_new(&cfg, &ops, ctx);
 *   smtp_session_set_client(s, ip); [smtp_session_set_tls(s, ...) for
 *   implicit TLS]; smtp_session_greet(s);
 *   on readable: read into smtp_session_inbuf(s) (buf_reserve/buf_commit;
 *     stop reading while buf_reserve() returns NULL, and try again after
 *     any later call into the session, which may have consumed input),
 *     then smtp_session_process(s);
 *   whenever smtp_session_outbuf(s) is non-empty: write it, buf_consume()
 *     what was written, then call smtp_session_process(s) again (the
 *     session stops consuming input while more than SMTP_OUT_HIGH bytes of
 *     replies are unsent, so a client that never reads cannot grow it);
 *   after ops.starttls() returned 0: flush the output in clear, run the
 *     handshake, then smtp_session_tls_done();
 *   when smtp_session_closing(s): flush the output, then close.
 *   timeouts (RFC 5321 4.5.3.2, longer while smtp_session_in_data()):
 *     smtp_session_shutdown(s, SMTP_CLOSE_TIMEOUT).
 *
 * Policy by listener role (DESIGN.md: never by port):
 *   mx           AUTH not offered unless cfg.mx_auth (then only under TLS);
 *                recipients must be local unless the client authenticated;
 *                rejected recipients are reported to ops.abuse.
 *   submission   STARTTLS before anything but EHLO/HELO/NOOP/QUIT/STARTTLS
 *                (530 5.7.0, RFC 3207 4), then AUTH before MAIL; with
 *                cfg.plaintext_auth neither TLS nor STARTTLS is needed.
 *   submissions  implicit TLS (the glue calls smtp_session_set_tls() before
 *                the greeting), AUTH before MAIL.
 *
 * Security notes: input buffered after a STARTTLS line is discarded, and
 * again when the handshake completes (no command injection: CVE-2011-0411);
 * every command and SASL line is wiped from the input buffer once handled,
 * decoded credentials are wiped right after ops.auth_check returns, and the
 * session never logs (so it cannot log AUTH data).
 */
#ifndef MAILBOX_SMTP_SESSION_H
#define MAILBOX_SMTP_SESSION_H

#include "mailbox/smtp/parser.h"
#include "mailbox/smtp/reply.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Queued reply bytes above which the session stops taking input. */
#define SMTP_OUT_HIGH 8192
/* Input buffer bound on top of the line bound (pipelined commands). */
#define SMTP_IN_SLACK 65536

enum smtp_role {
	SMTP_ROLE_MX = 0,
	SMTP_ROLE_SUBMISSION,
	SMTP_ROLE_SUBMISSIONS,
};

struct smtp_session_config {
	enum smtp_role role;
	const char *hostname;      /* greeting, EHLO, Received "by" (copied) */
	const char *listener;      /* listener name for Received (copied; may be NULL) */
	const char *session_id;    /* prefix of transaction ids (copied) */
	uint64_t max_message_size; /* SIZE (RFC 1870) and the enforced bound; > 0 */
	unsigned max_recipients;   /* per message; > 0 (RFC 5321 4.5.3.1.8: >= 100) */
	unsigned max_errors;       /* 5xx replies before "421 4.7.0"; > 0 */
	size_t max_line;           /* command line bound; 0: SMTP_LINE_MAX */
	bool starttls_available;   /* a certificate is loaded: offer STARTTLS */
	bool mx_auth;              /* mx only: offer AUTH (under TLS) */
	/* The listener's allow_plaintext_auth: submission without TLS (a
	 * tunnel that already encrypts, tests): neither STARTTLS nor TLS is
	 * then required before AUTH and MAIL. */
	bool plaintext_auth;
};

/* Outcomes of the asynchronous checks. */
enum smtp_auth_result {
	SMTP_AUTH_OK = 0,
	SMTP_AUTH_FAIL,     /* 535 5.7.8 */
	SMTP_AUTH_TEMPFAIL, /* 454 4.7.0: directory or hashing unavailable */
};

enum smtp_mail_result {
	SMTP_MAIL_OK = 0,
	SMTP_MAIL_DENIED,   /* 553 5.7.1: e.g. not an address of the account */
	SMTP_MAIL_TEMPFAIL, /* 451 4.3.0 */
};

enum smtp_rcpt_result {
	SMTP_RCPT_LOCAL = 0, /* an existing local recipient (account, alias,
	                        catch-all, user+tag) */
	SMTP_RCPT_RELAY_OK,  /* not local, and the glue allows relaying for this
	                        client whatever its authentication */
	SMTP_RCPT_REMOTE,    /* not local: accepted (queued for relay) only if
	                        the client authenticated, else 554 5.7.1 */
	SMTP_RCPT_UNKNOWN,   /* a local domain without such a user: 550 5.1.1 */
	SMTP_RCPT_TEMPFAIL,  /* 451 4.3.0 */
	SMTP_RCPT_FULL,      /* every account it reaches is at its quota: 552 5.2.2
	                        (as Dovecot's LMTP; not abuse) */
};

/* Reported through ops.abuse; the core turns them into rate limits/bans
 * keyed on the proxied client address. */
enum smtp_abuse {
	SMTP_ABUSE_RCPT_UNKNOWN = 0,
	SMTP_ABUSE_RELAY_DENIED,
	SMTP_ABUSE_AUTH_FAILED,
	SMTP_ABUSE_TOO_MANY_ERRORS,
};

enum smtp_close_reason {
	SMTP_CLOSE_TIMEOUT = 0, /* 421 4.4.2 */
	SMTP_CLOSE_SHUTDOWN,    /* 421 4.3.2 */
};

struct smtp_rcpt {
	char *addr;      /* as given in RCPT TO (no brackets); "postmaster" for
	                    a bare <Postmaster> */
	bool local;      /* SMTP_RCPT_LOCAL; otherwise it goes to the queue */
	unsigned notify; /* SMTP_NOTIFY_* (RFC 3461 4.1), 0: not given */
	char *orcpt;     /* ORCPT "addr-type;xtext" as received, or NULL */
};

/* One transaction, handed to ops.message_begin.  It and everything it
 * points to stay valid until the message ends (commit completion or
 * ops.message_abort). */
struct smtp_envelope {
	const char *id;        /* transaction id, also in Received: */
	const char *mail_from; /* "" for the null sender */
	bool smtputf8;         /* RFC 6531 */
	enum smtp_body body;
	uint64_t size_declared; /* SIZE=, 0 if not given */
	enum smtp_ret ret;      /* DSN (RFC 3461), for the outbound side */
	const char *envid;      /* ENVID xtext, or NULL */
	const struct smtp_rcpt *rcpts;
	size_t nrcpts;
	const char *auth_user; /* authenticated account, or NULL */
	const char *helo;
	const char *client_ip; /* NULL if unknown */
	bool tls;
};

struct smtp_session_ops {
	/*
	 * Check credentials (PLAIN or LOGIN; the session hides which).  authzid
	 * is "" unless the client asked to act as someone else.  The strings
	 * are valid only during the call and are wiped after it: copy what is
	 * needed (and wipe the copy).  Answer with smtp_session_auth_done().
	 */
	void (*auth_check)(void *ctx, const char *authzid, const char *user, const char *password);
	/* Optional (NULL: every sender is fine).  sender is "" for <>;
	 * auth_user NULL when not authenticated.  Answer with
	 * smtp_session_mail_done(). */
	void (*mail_check)(void *ctx, const char *sender, const char *auth_user);
	/* Classify a recipient.  Answer with smtp_session_rcpt_done(). */
	void (*rcpt_check)(void *ctx, const char *rcpt);
	/* Open a message for env.  0, or -1 if the store cannot take one now
	 * (451 4.3.0). */
	int (*message_begin)(void *ctx, const struct smtp_envelope *env);
	/* Append content (first our Received: header, then the body with CRLF
	 * line ends, dot-unstuffed).  0, or -1 on failure (the rest of the
	 * body is then read and dropped, and the client gets 451 4.3.0).
	 * Back-pressure is the glue's: stop reading the socket while the
	 * store's pending output is above its high-water mark. */
	int (*message_write)(void *ctx, const uint8_t *p, size_t n);
	/* All content written: make it durable, then call
	 * smtp_session_commit_done().  After this call the store owns the
	 * message; message_abort is not called for it. */
	void (*message_commit)(void *ctx);
	/* Drop the open message (oversize, write failure, RSET between BDAT
	 * chunks, QUIT, session freed). */
	void (*message_abort)(void *ctx);
	/* STARTTLS accepted: return 0 and start the handshake once the output
	 * buffer (ending in "220 2.0.0") is flushed, or -1 if TLS cannot be
	 * started now (454 4.7.0). */
	int (*starttls)(void *ctx);
	/* Optional: abuse events for bans and rate limits. */
	void (*abuse)(void *ctx, enum smtp_abuse kind);
	/* Optional: every reply, by id (metrics, per-reply logging). */
	void (*replied)(void *ctx, enum smtp_reply r);
	/* Optional: the time for Received:; NULL uses time(NULL). */
	time_t (*now)(void *ctx);
};

struct smtp_session;

/* A new session; cfg is copied, ops must outlive it.  No I/O happens. */
struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
                                      const struct smtp_session_ops *ops, void *ctx);
/* Free a session (NULL is fine); aborts an open, uncommitted message.  An
 * outstanding request must have been cancelled by the glue: its
 * completion must never arrive. */
void smtp_session_free(struct smtp_session **s);

/* The proxied client address ("192.0.2.1", "2001:db8::1"), or NULL for no
 * client (PROXY LOCAL); copied.  Call before the greeting. */
void smtp_session_set_client(struct smtp_session *s, const char *ip);
/* TLS is active (implicit TLS, before the greeting); version and cipher
 * (may be NULL) are copied for Received:. */
void smtp_session_set_tls(struct smtp_session *s, const char *version, const char *cipher);
/* Queue the 220 greeting. */
void smtp_session_greet(struct smtp_session *s);

/* Where the glue puts received bytes (bounded: max_line + SMTP_IN_SLACK). */
struct buf *smtp_session_inbuf(struct smtp_session *s);
/* Where replies accumulate; the glue writes and consumes them. */
struct buf *smtp_session_outbuf(struct smtp_session *s);
/* Consume as much buffered input as possible. */
void smtp_session_process(struct smtp_session *s);
/* Append n bytes to the input and process them: 0, or -1 (nothing
 * appended) if the input buffer is full (tests, fuzzing). */
int smtp_session_input(struct smtp_session *s, const uint8_t *p, size_t n);

/* Completions of the requests in struct smtp_session_ops.  Calling one
 * while that request is not outstanding is a broken invariant (fatal).
 * account: the canonical account name on SMTP_AUTH_OK (NULL: the login
 * name as given); copied. */
void smtp_session_auth_done(struct smtp_session *s, enum smtp_auth_result r, const char *account);
void smtp_session_mail_done(struct smtp_session *s, enum smtp_mail_result r);
void smtp_session_rcpt_done(struct smtp_session *s, enum smtp_rcpt_result r);
/* ok: the message is durable (250); otherwise 451 4.3.0. */
void smtp_session_commit_done(struct smtp_session *s, bool ok);
/* The handshake after STARTTLS finished.  ok: the session restarts as
 * RFC 3207 4.2 requires (the client must EHLO again; any input read in
 * the meantime is dropped).  !ok: the session is closing. */
void smtp_session_tls_done(struct smtp_session *s, bool ok, const char *version,
                           const char *cipher);

/* Queue a 421 for reason and close (idle timeout, daemon shutdown). */
void smtp_session_shutdown(struct smtp_session *s, enum smtp_close_reason reason);

/* Flush the output, then close the connection. */
bool smtp_session_closing(const struct smtp_session *s);
/* A request is outstanding (input is not being processed). */
bool smtp_session_pending(const struct smtp_session *s);
/* Receiving message content (DATA or a BDAT chunk): use the data timeout. */
bool smtp_session_in_data(const struct smtp_session *s);
/* Waiting for the TLS handshake after "220 2.0.0 Ready to start TLS". */
bool smtp_session_tls_wait(const struct smtp_session *s);
bool smtp_session_tls_active(const struct smtp_session *s);
/* The authenticated account, or NULL. */
const char *smtp_session_auth_user(const struct smtp_session *s);

#endif
