/*
 * mailbox/smtp/sender.h -- may this account use this envelope sender?
 *
 * Submission (RFC 6409 6.1) lets the MSA refuse a sender the submitter
 * may not use: the envelope sender must be an address of the
 * authenticated account.  It is when, after the normalisation of
 * mailbox/directory (lower case), one of these holds:
 *   - the address points at the account (directory "addresses");
 *   - the address is the account's login;
 *   - it is "user+tag@d" and "user@d" points at the account (RFC 5233);
 *   - the account owns the catch-all "@d" of the address's domain.
 * The null sender <> is always allowed (RFC 8098 3: MDNs go out with it)
 * and admins may use any sender; both are the caller's decisions, so this
 * module only answers the ownership question, with one statement.
 */
#ifndef MAILBOX_SMTP_SENDER_H
#define MAILBOX_SMTP_SENDER_H

#include "mailbox/store/pg.h"

#include <stdint.h>

enum smtp_sender_status {
	SMTP_SENDER_OWNED = 0,
	SMTP_SENDER_NOT_OWNED, /* including a sender that is no address at all */
	SMTP_SENDER_TEMPFAIL,  /* store error */
};

/* errstr: TEMPFAIL's reason (valid during the call). */
typedef void smtp_sender_cb(void *arg, enum smtp_sender_status st, const char *errstr);

/* Ask whether account_id owns sender; cb runs from the loop.  Cancel with
 * pg_req_cancel (the callback then never runs). */
struct pg_req *smtp_sender_check(struct pg_pool *pg, int64_t account_id, const char *sender,
                                 smtp_sender_cb *cb, void *arg);

#endif
