/*
 * mailbox/outbound/smtp_client.h -- the outbound SMTP client as a pure
 * protocol state machine: server replies in, commands out.  No sockets,
 * no TLS, no timers: the glue (libev) reads from the socket into
 * smtp_client_input(), writes smtp_client_output() to it, runs the TLS
 * handshake when asked, and enforces the timeouts smtp_client_timeout()
 * suggests.
 *
 * A session:
 *   greeting 220 -> EHLO (HELO if EHLO gets a 5xx, RFC 5321 4.1.4)
 *   -> STARTTLS when offered and the policy is opportunistic or required;
 *      the glue does the handshake and calls smtp_client_tls_done(); then
 *      EHLO again, forgetting what the server said before (RFC 3207 4.2)
 *   -> AUTH PLAIN (initial response, RFC 4954 4) or LOGIN when credentials
 *      are configured
 *   -> messages: MAIL FROM (SIZE=, BODY=8BITMIME, SMTPUTF8, RET=, ENVID=
 *      where offered), one RCPT TO per recipient (NOTIFY=, ORCPT= with
 *      DSN), pipelined when PIPELINING is offered (RFC 2920: MAIL and all
 *      RCPTs in one go, DATA after their replies), DATA, the body
 *      dot-stuffed from a callback, the final reply; RSET after a
 *      transaction that did not complete; the next message on the same
 *      connection
 *   -> QUIT.
 *
 * Outcomes are per recipient: delivered (2xx to the final dot), temporary
 * failure (4xx anywhere, or anything wrong with the session) or permanent
 * failure (5xx to MAIL, RCPT, DATA or the final dot), each with the reply
 * code, enhanced status code and text for the DSN.  Choices:
 *
 * - Session trouble is always temporary: a greeting other than 220, EHLO
 *   and HELO refused, STARTTLS required but not offered or refused, the
 *   handshake failing, AUTH not offered or refused (as Postfix's
 *   smtp_sasl_auth_soft_bounce: a wrong password must not bounce every
 *   queued message), 421 at any time, a malformed reply, the connection
 *   lost.  The message stays queued and is retried.
 * - Opportunistic STARTTLS answered with an error (4xx/5xx other than
 *   421) goes on in plain text on the same connection.  A failed
 *   handshake cannot (the connection is in an unknown state): the session
 *   fails, and the glue may connect again with tls NONE -- the transport
 *   does so once for opportunistic, unverified routes
 *   (mailbox/outbound/tls_fallback.h).
 * - A message larger than the server's SIZE fails permanently without
 *   being sent (RFC 1870, 552 5.3.4); one that needs SMTPUTF8 fails
 *   permanently when the server lacks it (RFC 6531 3.2, 5.6.7).  8-bit
 *   content goes out with BODY=8BITMIME when offered and as it is
 *   otherwise (no downgrade to quoted-printable: it would break DKIM, and
 *   servers without 8BITMIME accept 8-bit data in practice).
 * - The body is sent with bare LF turned into CRLF (RFC 5321 2.3.8) and
 *   a final CRLF added when missing -- the same lines mailbox/dkim signs.
 *   Lines are not wrapped.
 * - Bytes from the server after its 220 to STARTTLS and before the
 *   handshake are refused (CVE-2011-0411-style response injection).
 * - AUTH without TLS is refused unless allowed in the config.
 *
 * Callbacks run from inside smtp_client_input(), smtp_client_send(),
 * smtp_client_pump() and smtp_client_tls_done(); they may call
 * smtp_client_send() or smtp_client_quit(), but must not free the client.
 */
#ifndef MAILBOX_OUTBOUND_SMTP_CLIENT_H
#define MAILBOX_OUTBOUND_SMTP_CLIENT_H

#include "mailbox/outbound/smtp_client_ehlo.h"
#include "mailbox/outbound/smtp_client_reply.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_client_tls {
	SMTP_CLIENT_TLS_NONE = 0,      /* never STARTTLS */
	SMTP_CLIENT_TLS_OPPORTUNISTIC, /* STARTTLS when offered */
	SMTP_CLIENT_TLS_REQUIRED,      /* STARTTLS or fail (temporarily) */
};

struct smtp_client_config {
	const char *helo_name;    /* our host name for EHLO/HELO (required) */
	enum smtp_client_tls tls; /* ignored when tls_active */
	bool tls_active;          /* implicit TLS (port 465): already encrypted */
	const char *auth_user;    /* AUTH when set (with auth_pass) */
	const char *auth_pass;
	bool auth_plaintext; /* allow AUTH without TLS (loopback tests) */
	bool no_pipelining;  /* do not pipeline even when offered */
	size_t out_high;     /* stop pulling the body above this many
	                        pending output bytes; 0: 64 KiB */
};

/* RFC 3461 4.1 NOTIFY flags for a recipient (0: no NOTIFY parameter) */
#define SMTP_CLIENT_NOTIFY_NEVER   0x1u
#define SMTP_CLIENT_NOTIFY_SUCCESS 0x2u
#define SMTP_CLIENT_NOTIFY_FAILURE 0x4u
#define SMTP_CLIENT_NOTIFY_DELAY   0x8u

struct smtp_client_rcpt {
	const char *addr;  /* without angle brackets */
	unsigned notify;   /* SMTP_CLIENT_NOTIFY_*; sent only when DSN is offered */
	const char *orcpt; /* "rfc822;addr" (decoded; we xtext-encode), or NULL */
};

enum smtp_client_ret {
	SMTP_CLIENT_RET_NONE = 0,
	SMTP_CLIENT_RET_FULL,
	SMTP_CLIENT_RET_HDRS,
};

/* One message; it and its strings must stay valid until msg_done. */
struct smtp_client_msg {
	const char *from; /* reverse-path without brackets; "" for the null sender */
	const struct smtp_client_rcpt *rcpts;
	size_t nrcpts;  /* >= 1 */
	uint64_t size;  /* for SIZE=; 0: unknown, not sent */
	bool body_8bit; /* BODY=8BITMIME */
	bool smtputf8;  /* SMTPUTF8 needed */
	enum smtp_client_ret ret;
	const char *envid; /* ENVID (decoded; we xtext-encode), or NULL */
	void *user;        /* for the caller */
};

enum smtp_client_outcome {
	SMTP_CLIENT_DELIVERED = 0,
	SMTP_CLIENT_TEMPFAIL,
	SMTP_CLIENT_PERMFAIL,
};

/* Which command a result answers. */
enum smtp_client_stage {
	SMTP_CLIENT_STAGE_SESSION = 0, /* greeting, EHLO, TLS, AUTH, connection */
	SMTP_CLIENT_STAGE_MAIL,
	SMTP_CLIENT_STAGE_RCPT,
	SMTP_CLIENT_STAGE_DATA,
	SMTP_CLIENT_STAGE_DOT, /* the final reply after the body */
};

struct smtp_client_result {
	enum smtp_client_outcome outcome;
	enum smtp_client_stage stage;
	int code;         /* the reply code, 0 when the reason is local */
	const char *esc;  /* enhanced status code ("5.1.1"), or "" */
	const char *text; /* the reply text (lines joined by '\n') or a local reason */
};

enum smtp_client_body {
	SMTP_CLIENT_BODY_DATA = 0, /* *data_r, *len_r hold the next bytes (len > 0) */
	SMTP_CLIENT_BODY_END,      /* the body is complete */
	SMTP_CLIENT_BODY_AGAIN,    /* nothing yet: call smtp_client_pump() later */
	SMTP_CLIENT_BODY_ERROR,    /* the body cannot be read */
};

/* The next piece of the current message's body; the bytes stay valid until
 * the next call. */
typedef enum smtp_client_body smtp_client_body_cb(void *arg, const struct smtp_client_msg *msg,
                                                  const uint8_t **data_r, size_t *len_r);

struct smtp_client_ops {
	smtp_client_body_cb *body;
	/* STARTTLS was accepted: run the TLS handshake on the connection now
	 * (the output buffer is empty), then call smtp_client_tls_done() */
	void (*starttls)(void *arg);
	/* the session is up and no message is waiting: send one, or quit
	 * (may be NULL) */
	void (*ready)(void *arg);
	/* a message is finished: one result per recipient, in order, valid
	 * during the call only; the client is then idle (unless closed) */
	void (*msg_done)(void *arg, const struct smtp_client_msg *msg,
	                 const struct smtp_client_result *res, size_t n);
	/* the session is over: flush the output, then close the connection;
	 * reason is NULL after a clean QUIT */
	void (*closed)(void *arg, const char *reason);
};

struct smtp_client;

/* A client for one connection, starting before the greeting.  The config
 * strings are copied (the password is wiped on free).  NULL with
 * *errstr_r on a bad config (no helo_name, a name with spaces or control
 * bytes, a user without a password). */
struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg,
                                    const struct smtp_client_ops *ops, void *arg,
                                    const char **errstr_r);
void smtp_client_free(struct smtp_client **cp);

/* Bytes from the server (any split).  May write output and call back. */
void smtp_client_input(struct smtp_client *c, const void *data, size_t len);

/* What to send to the server; the glue writes and consumes it. */
struct buf *smtp_client_output(struct smtp_client *c);

/* The TLS handshake the client asked for is done (ok) or failed. */
void smtp_client_tls_done(struct smtp_client *c, bool ok);

/*
 * Send a message.  Allowed whenever no other message is in progress and
 * the session is not closed: before the greeting (it waits for the
 * session to come up; if the session fails, msg_done reports every
 * recipient as a temporary failure) or when idle.  Returns 0, or -1 with
 * *errstr_r if busy/closed or the message is malformed (no recipients,
 * an address with a space, '<', '>' or control byte, or non-ASCII without
 * smtputf8) -- nothing is sent then.
 */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg,
                     const char **errstr_r);

/* The glue drained output or a body chunk became available: go on. */
void smtp_client_pump(struct smtp_client *c);

/* End the session: QUIT when idle (closed follows the reply), or close at
 * once when the session never came up.  A message in progress is finished
 * first. */
void smtp_client_quit(struct smtp_client *c);

/*
 * The connection broke, timed out or the glue gives up: a message in
 * progress ends with every open recipient temporarily failed (reason in
 * the results); the client is closed.  No closed callback (the glue knows).
 */
void smtp_client_abort(struct smtp_client *c, const char *reason);

/* Seconds to wait for the server now (RFC 5321 4.5.3.2: 300 for the
 * greeting and commands, 120 for DATA, 600 after the final dot), 180 for
 * each block of body written, 0 when idle or in the TLS handshake (the
 * glue times those itself). */
unsigned smtp_client_timeout(const struct smtp_client *c);

bool smtp_client_idle(const struct smtp_client *c); /* up, no message */
bool smtp_client_closed(const struct smtp_client *c);
bool smtp_client_tls_active(const struct smtp_client *c);
/* What the server offered in its last EHLO reply. */
const struct smtp_client_ext *smtp_client_extensions(const struct smtp_client *c);
/* The current state's name, for logs. */
const char *smtp_client_state_name(const struct smtp_client *c);

#endif
