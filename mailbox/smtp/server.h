/*
 * mailbox/smtp/server.h -- SMTP on the connection layer: the glue between
 * mailbox/server/conn.h and the session state machine (session.h).
 *
 * One struct conn_proto serves the roles mx, submission and submissions
 * (policy comes from the role, DESIGN.md).  The glue implements struct
 * smtp_session_ops on the daemon's stores:
 *
 *   auth_check     mailbox/directory/auth.h (lookup by login or address,
 *                  password hash verified on the password thread pool);
 *                  failures are counted for the proxied client
 *                  (abuse_auth_failed: bans), successes reset the count;
 *   mail_check     an authenticated sender must own the envelope sender
 *                  (smtp/sender.h) unless the account is an admin or the
 *                  sender is <>: otherwise 553 5.7.1;
 *   rcpt_check     mailbox/directory/lookup.h: local (accounts, aliases,
 *                  catch-all, user+tag) / not local (relay only when
 *                  authenticated: the session decides) / unknown 550 5.1.1
 *                  / tempfail 451 4.3.0 when Postgres is down; a bare
 *                  <Postmaster> is postmaster@<hostname> (refused with 550
 *                  5.1.1 and a warning when that is not local);
 *   message_*      mailbox/delivery/delivery.h: spool, blob, one Postgres
 *                  statement; 250 only after both are durable;
 *   starttls       conn_starttls();
 *   abuse          refused recipients and too-many-errors sessions count
 *                  towards abuse.rcpt_failures (abuse_rcpt_failed).
 *
 * Input: bytes the connection offers are copied into the session's own
 * bounded input buffer and processed; while a request is outstanding the
 * connection is paused (pipelined commands wait, replies stay in order).
 *
 * Timeouts (RFC 5321 4.5.3.2): waiting for a command, the listener's idle
 * timeout (5 min, 4.5.3.2.7); a partial command line, its command timeout;
 * while message content is being received, the longer of the two (10 min
 * by default: 4.5.3.2.5/4.5.3.2.6 let a client take 3 minutes per block
 * and 10 for the end of data), so a slow but live sender is not cut off.
 * A timeout answers 421 4.4.2 and closes.  On SIGTERM a session answers
 * 421 4.3.2 at once, unless a commit is in flight: that one finishes (and
 * gets its 250 or 451) first.
 */
#ifndef MAILBOX_SMTP_SERVER_H
#define MAILBOX_SMTP_SERVER_H

#include "mailbox/config.h"
#include "mailbox/server/conn.h"

extern const struct conn_proto smtp_server_proto;

/*
 * Start-up, before serving: when cfg has an mx, submission or submissions
 * listener, create the spool directory if needed, prove it writable and
 * remove leftovers of a crashed process (delivery/spool.h).  0, or -1
 * after logging one line naming the directory and the reason.
 */
int smtp_server_start(const struct mailbox_config *cfg);

#endif
