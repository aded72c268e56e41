/*
 * mailbox/smtp/reply.h -- every reply the SMTP session can send, declared once.
 *
 * The session writes replies only through smtp_reply_format(), by id, so
 * this list is the complete set of reply code paths: the transcript tests
 * walk it and fail if any entry was never produced, and the glue can count
 * replies by id for metrics (smtp_session_ops.replied).
 *
 * Enhanced status codes (RFC 3463, RFC 2034) are on every reply except the
 * 220 greeting, the EHLO/HELO replies (RFC 2034 excludes them), and the
 * 334/354 intermediate replies, whose text is protocol data.
 *
 * Each text holds at most one "%s", filled from the argument.
 */
#ifndef MAILBOX_SMTP_REPLY_H
#define MAILBOX_SMTP_REPLY_H

#include "shared/buf.h"

#include <stdbool.h>

/* X(id, code, enhanced code or NULL, text) */
#define SMTP_REPLY_LIST(X)                                                                         \
	X(GREETING, 220, NULL, "%s ESMTP tailpost")                                                \
	X(CLOSE_TIMEOUT, 421, "4.4.2", "%s Error: timeout exceeded")                               \
	X(CLOSE_SHUTDOWN, 421, "4.3.2", "%s Service shutting down")                                \
	X(CLOSE_ERRORS, 421, "4.7.0", "%s Error: too many errors")                                 \
	X(QUIT, 221, "2.0.0", "Bye")                                                               \
	X(HELO, 250, NULL, "%s")                                                                   \
	X(EHLO, 250, NULL, "%s")                                                                   \
	X(OK, 250, "2.0.0", "Ok")                                                                  \
	X(HELP, 214, "2.0.0",                                                                      \
	  "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH")        \
	X(VRFY, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")    \
	X(EXPN, 502, "5.5.1", "Error: EXPN not available")                                         \
	X(LINE_TOO_LONG, 500, "5.5.2", "Error: line too long")                                     \
	X(SYNTAX, 500, "5.5.2", "Error: bad syntax")                                               \
	X(UNRECOGNIZED, 500, "5.5.1", "Error: command not recognized")                             \
	X(ARGS, 501, "5.5.4", "Syntax: %s")                                                        \
	X(BDAT_SYNTAX, 501, "5.5.4", "Syntax: BDAT size [LAST]; closing connection")               \
	X(PARAM, 501, "5.5.4", "Error: bad parameter value")                                       \
	X(PARAM_UNKNOWN, 555, "5.5.4", "Error: unsupported parameter")                             \
	X(SENDER_SYNTAX, 501, "5.1.7", "Error: bad sender address syntax")                         \
	X(RCPT_SYNTAX, 501, "5.1.3", "Error: bad recipient address syntax")                        \
	X(NEED_HELO, 503, "5.5.1", "Error: send HELO/EHLO first")                                  \
	X(NEED_EHLO, 503, "5.5.1", "Error: send EHLO first")                                       \
	X(NESTED_MAIL, 503, "5.5.1", "Error: nested MAIL command")                                 \
	X(NEED_MAIL, 503, "5.5.1", "Error: need MAIL command")                                     \
	X(NEED_RCPT, 554, "5.5.1", "Error: no valid recipients")                                   \
	X(DATA_AFTER_BDAT, 503, "5.5.1", "Error: DATA cannot follow BDAT, transaction reset")      \
	X(STARTTLS_READY, 220, "2.0.0", "Ready to start TLS")                                      \
	X(STARTTLS_UNAVAILABLE, 502, "5.5.1", "Error: STARTTLS not available")                     \
	X(STARTTLS_ACTIVE, 503, "5.5.1", "Error: TLS already active")                              \
	X(STARTTLS_TEMPFAIL, 454, "4.7.0", "TLS not available due to temporary reason")            \
	X(NEED_TLS, 530, "5.7.0", "Must issue a STARTTLS command first")                           \
	X(AUTH_DISABLED, 503, "5.5.1", "Error: authentication not enabled")                        \
	X(AUTH_NEED_TLS, 538, "5.7.11",                                                            \
	  "Encryption required for requested authentication mechanism")                            \
	X(AUTH_ALREADY, 503, "5.5.1", "Error: already authenticated")                              \
	X(AUTH_IN_TXN, 503, "5.5.1", "Error: MAIL transaction in progress")                        \
	X(AUTH_MECH, 504, "5.5.4", "Unrecognized authentication type")                             \
	X(AUTH_CHALLENGE, 334, NULL, "%s")                                                         \
	X(AUTH_CANCELLED, 501, "5.7.0", "Authentication cancelled")                                \
	X(AUTH_BAD_B64, 501, "5.5.2", "Cannot decode response")                                    \
	X(AUTH_BAD_PLAIN, 501, "5.5.2", "Malformed PLAIN response")                                \
	X(AUTH_TOO_LONG, 500, "5.5.6", "Authentication Exchange line is too long")                 \
	X(AUTH_OK, 235, "2.7.0", "Authentication successful")                                      \
	X(AUTH_FAILED, 535, "5.7.8", "Authentication credentials invalid")                         \
	X(AUTH_TEMPFAIL, 454, "4.7.0", "Temporary authentication failure")                         \
	X(AUTH_REQUIRED, 530, "5.7.0", "Authentication required")                                  \
	X(MAIL_OK, 250, "2.1.0", "Ok")                                                             \
	X(MAIL_TOO_BIG, 552, "5.3.4", "Message size exceeds fixed maximum message size")           \
	X(MAIL_UTF8, 553, "5.6.7", "Error: non-ASCII sender needs SMTPUTF8")                       \
	X(MAIL_DENIED, 553, "5.7.1", "Sender address rejected: not owned by user")                 \
	X(MAIL_TEMPFAIL, 451, "4.3.0", "Temporary sender lookup failure")                          \
	X(RCPT_OK, 250, "2.1.5", "Ok")                                                             \
	X(RCPT_TOO_MANY, 452, "4.5.3", "Error: too many recipients")                               \
	X(RCPT_UTF8, 553, "5.6.7", "Error: non-ASCII recipient needs SMTPUTF8")                    \
	X(RCPT_UNKNOWN, 550, "5.1.1", "Recipient address rejected: user unknown")                  \
	X(RELAY_DENIED, 554, "5.7.1", "Relay access denied")                                       \
	X(RCPT_TEMPFAIL, 451, "4.3.0", "Temporary recipient lookup failure")                       \
	X(RCPT_FULL, 552, "5.2.2", "Mailbox full")                                                 \
	X(DATA_GO, 354, NULL, "End data with <CR><LF>.<CR><LF>")                                   \
	X(STORE_BEGIN_FAIL, 451, "4.3.0", "Error: cannot store messages now, try again later")     \
	X(STORE_WRITE_FAIL, 451, "4.3.0", "Error: message store write failed, try again later")    \
	X(STORE_COMMIT_FAIL, 451, "4.3.0", "Error: message not stored, try again later")           \
	X(MSG_TOO_BIG, 552, "5.3.4", "Error: message exceeds fixed maximum message size")          \
	X(QUEUED, 250, "2.0.0", "Ok: queued as %s")                                                \
	X(BDAT_OK, 250, "2.0.0", "%s octets received")

#define SMTP_REPLY_ENUM(id, code, esc, text) SMTP_R_##id,
enum smtp_reply { SMTP_REPLY_LIST(SMTP_REPLY_ENUM) SMTP_R_COUNT };
#undef SMTP_REPLY_ENUM

struct smtp_reply_info {
	const char *name; /* "RCPT_UNKNOWN" */
	int code;
	const char *esc; /* enhanced status code, or NULL */
	const char *text;
};

/* The table row for r (r < SMTP_R_COUNT). */
const struct smtp_reply_info *smtp_reply_info(enum smtp_reply r);

/*
 * Append reply r as one line to out: "code SP [esc SP] text CRLF", or with
 * "-" after the code when more lines follow (RFC 5321 4.2.1).  arg fills
 * the "%s" ("" if NULL).  out must be unbounded (max 0): replies are
 * small and the caller limits how many it queues.
 */
void smtp_reply_format(struct buf *out, enum smtp_reply r, bool more, const char *arg);

#endif
