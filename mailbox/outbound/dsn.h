/*
 * mailbox/outbound/dsn.h -- delivery status notifications (RFC 3464), built
 * as a multipart/report message (RFC 6522) with three parts:
 *
 *   1. text/plain: what happened, for a person;
 *   2. message/delivery-status: Reporting-MTA, [Original-Envelope-Id],
 *      Arrival-Date, then per recipient Final-Recipient, [Original-
 *      Recipient], Action, Status, [Remote-MTA], [Diagnostic-Code],
 *      [Last-Attempt-Date], [Will-Retry-Until];
 *   3. the original: its header block as text/rfc822-headers (RET=HDRS,
 *      the default) or the whole message as message/rfc822 (RET=FULL,
 *      RFC 3461 4.3), unless it is larger than full_max, in which case the
 *      header block is returned and the text says so.
 *
 * When an address or the report has to carry UTF-8 (RFC 6533), the parts
 * become message/global-delivery-status and message/global(-headers) and
 * non-ASCII addresses are typed "utf-8" instead of "rfc822".
 *
 * The report is written in three steps so that a 50 MB original never has
 * to sit in memory: dsn_begin() writes everything up to the third part's
 * body, dsn_original() copies the original through (stopping by itself
 * after the header block for RET=HDRS), dsn_end() closes the report.
 * dsn_build() does all three for an original in memory.
 *
 * The DSN itself must be sent with a null reverse-path (MAIL FROM:<>,
 * RFC 5321 4.5.5, RFC 3464 2) so that it can never cause another one;
 * dsn_wanted() says whether one is due at all: never for a null sender.
 *
 * Pure: times, the Message-ID and the MIME boundary come from the caller
 * (the boundary should be random, e.g. 16 bytes from RAND_bytes in hex,
 * so that no original can contain it).
 */
#ifndef MAILBOX_OUTBOUND_DSN_H
#define MAILBOX_OUTBOUND_DSN_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 3464 2.3.3 */
enum dsn_action {
	DSN_ACTION_FAILED = 0,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,
	DSN_ACTION_EXPANDED,
};

/* RFC 3461 4.3 RET=; HDRS is also what we return when RET was not given */
enum dsn_ret {
	DSN_RET_HDRS = 0,
	DSN_RET_FULL,
};

/* RFC 3461 4.1 NOTIFY= as flags; 0 means NOTIFY was not given */
#define DSN_NOTIFY_NEVER   0x1u
#define DSN_NOTIFY_SUCCESS 0x2u
#define DSN_NOTIFY_FAILURE 0x4u
#define DSN_NOTIFY_DELAY   0x8u

#define DSN_DIAG_MAX 900 /* diagnostic text kept per recipient, in bytes */

struct dsn_rcpt {
	const char *final_recipient;    /* the address we tried */
	const char *original_recipient; /* ORCPT, decoded, "type;address" or a bare
	                                   address (typed rfc822), or NULL */
	enum dsn_action action;
	const char *status;     /* "5.1.1" (RFC 3463), or NULL: taken from the
	                           start of diagnostic when it holds one of the
	                           reply's class, else derived from smtp_code
	                           and action (5.0.0 / 4.0.0 / 2.0.0) */
	int smtp_code;          /* the remote reply code, 0 if none */
	const char *diagnostic; /* the remote reply text (lines joined by '\n')
	                           when smtp_code is set, else a local reason,
	                           or NULL */
	const char *remote_mta; /* the host that answered, or NULL */
	int64_t last_attempt;   /* seconds since the epoch, 0: omitted */
	int64_t retry_until;    /* for delayed: when we give up, 0: omitted */
};

struct dsn_report {
	const char *reporting_mta; /* our host name */
	const char *sender;        /* the envelope sender: who gets the DSN */
	const char *envid;         /* ENVID, decoded, or NULL */
	const char *message_id;    /* the DSN's own Message-ID, "<...>" */
	const char *boundary;      /* MIME boundary: 1-70 of [A-Za-z0-9'()+_,-./:=?] */
	int64_t arrival;           /* when we accepted the original */
	int64_t now;               /* the DSN's Date */
	enum dsn_ret ret;
	uint64_t original_size; /* bytes */
	uint64_t full_max;      /* RET=FULL only up to this size; 0: no limit */
	bool original_8bit;     /* the original has 8-bit content (BODY=8BITMIME):
	                           the DSN then needs BODY=8BITMIME too */
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
};

/*
 * Whether a DSN is due for a recipient whose outcome is action, given the
 * envelope sender and the recipient's NOTIFY flags (RFC 3461 4.1):
 * never for a null sender ("" or "<>", RFC 5321 4.5.5 / RFC 3464 2:
 * no DSN about a DSN or any other null-sender message), never with
 * NOTIFY=NEVER; failures when NOTIFY holds FAILURE or was not given;
 * delays when it holds DELAY, or was not given and delay_default (our
 * optional delay notices) is on; success (delivered, relayed, expanded)
 * only when it holds SUCCESS.
 */
bool dsn_wanted(const char *sender, enum dsn_action action, unsigned notify, bool delay_default);

/* State between dsn_begin() and dsn_end(). */
struct dsn_writer {
	bool full;       /* the whole original is copied (else its header block) */
	bool utf8;       /* RFC 6533 types */
	bool line_start; /* copy state */
	bool cr;
	bool done; /* HDRS: the header block has ended */
	bool any;  /* something was copied */
};

/*
 * Write the DSN's header, the text part, the delivery-status part and the
 * third part's MIME header to out.  Refuses (-1, *errstr_r) a null sender,
 * no recipients, a missing or invalid boundary, Message-ID or reporting
 * MTA, and addresses with CR, LF or other control bytes.
 */
int dsn_begin(const struct dsn_report *r, struct dsn_writer *w, struct buf *out,
              const char **errstr_r);

/*
 * Copy the next n bytes of the original to out (bare LF written as CRLF).
 * For a header-only return the copy stops at the blank line after the
 * header block; returns false once no more input is wanted, true while it
 * is (so the caller can stop reading the blob early).
 */
bool dsn_original(struct dsn_writer *w, const void *data, size_t n, struct buf *out);

/* Close the third part and the report. */
void dsn_end(struct dsn_writer *w, const struct dsn_report *r, struct buf *out);

/* All three with the original in memory; 0 or -1 with *errstr_r. */
int dsn_build(const struct dsn_report *r, const void *original, size_t len, struct buf *out,
              const char **errstr_r);

/*
 * An RFC 5322 date-time in UTC, "Fri, 11 Jul 2003 21:00:37 +0000", into
 * out (at least 32 bytes); locale-independent.
 */
void dsn_date(int64_t t, char out[32]);

#endif
