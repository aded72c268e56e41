/*
 * mailbox/outbound/queue_plan.h -- the pure decisions of the outbound queue
 * engine (mailbox/outbound/queue.h), kept apart so they can be tested
 * without Postgres, a blob store or a network:
 *
 *   - stripping a leading Return-Path field from a stored message while it
 *     streams through (RFC 5321 4.4: only the final delivery adds one; the
 *     blob carries ours when the message also had local recipients);
 *   - the domain of an address, and the From: domain of a header block
 *     (which DKIM keys sign the message);
 *   - grouping a message's recipients by destination: one relay route
 *     takes all its domains in one transaction, MX delivery needs one
 *     transaction per domain, local delivery one for the lot;
 *   - what becomes of a recipient after an attempt: sent, retried at the
 *     schedule's next time (retry.h), failed, or expired;
 *   - decoding the DSN parameters as the SMTP side stored them (NOTIFY as
 *     text, ORCPT and ENVID as xtext, RFC 3461 4).
 */
#ifndef MAILBOX_OUTBOUND_QUEUE_PLAN_H
#define MAILBOX_OUTBOUND_QUEUE_PLAN_H

#include "mailbox/outbound/retry.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- Return-Path strip ----------------------------------------------------- */

/* State of the filter; zero-initialise (or queue_rpstrip_init) before use. */
struct queue_rpstrip {
	int state;
	size_t matched;
	uint8_t held[16]; /* the bytes of a partial "Return-Path:" match */
};

void queue_rpstrip_init(struct queue_rpstrip *s);
/*
 * Feed the next n bytes of the stored message (any split); what is kept
 * is appended to out.  A first field named Return-Path (any case, with its
 * continuation lines) is dropped; everything else passes unchanged.
 */
void queue_rpstrip_feed(struct queue_rpstrip *s, const void *data, size_t n, struct buf *out);
/* End of input: a held partial match (a message shorter than the field
 * name) is written out. */
void queue_rpstrip_finish(struct queue_rpstrip *s, struct buf *out);

/* --- addresses --------------------------------------------------------------- */

/*
 * The domain of addr (after its last '@'), lower-cased into out (outsz
 * bytes).  False (out = "") when there is none or it does not fit.
 */
bool queue_plan_domain(const char *addr, char *out, size_t outsz);

/*
 * The domain of the first From: field in the header block hdr[0..len)
 * (the block may be cut short: only complete fields count), lower-cased
 * into out: the address inside the last <...> of the field, or the
 * field's last word with an '@'.  False when no usable From is found.
 */
bool queue_plan_from_domain(const void *hdr, size_t len, char *out, size_t outsz);

/* --- grouping ---------------------------------------------------------------- */

enum queue_route_kind {
	QUEUE_ROUTE_LOCAL = 0, /* deliver into the store */
	QUEUE_ROUTE_RELAY,     /* one smarthost for all the route's domains */
	QUEUE_ROUTE_MX,        /* the recipient domain's MX hosts */
};

struct queue_plan_rcpt {
	enum queue_route_kind kind;
	const void *route; /* the route (identity only), NULL for the default */
	const char *domain;
	size_t group; /* out: the group index */
};

/*
 * Number the groups of r[0..n): recipients share a group when they have
 * the same kind and route, and for MX also the same domain (ASCII case
 * ignored).  Groups are numbered in the order of their first recipient.
 * Returns the number of groups.
 */
size_t queue_plan_group(struct queue_plan_rcpt *r, size_t n);

/* --- fate of a recipient after an attempt -------------------------------------- */

enum queue_fate {
	QUEUE_FATE_SENT = 0, /* delivered */
	QUEUE_FATE_RETRY,    /* temporary failure: again at *next_r */
	QUEUE_FATE_FAILED,   /* permanent failure: DSN */
	QUEUE_FATE_EXPIRED,  /* temporary failure past the expiry: DSN */
};

/*
 * outcome: 0 delivered, 1 temporary, 2 permanent (smtp_client_outcome).
 * created: when the message was queued (the first attempt's time in the
 * sense of retry.h); attempts: attempts made including this one.  For
 * RETRY *next_r is the next attempt's time (never before now + 1).
 */
enum queue_fate queue_plan_fate(int outcome, const struct retry_schedule *s, int64_t created,
                                uint64_t attempts, int64_t now, int64_t *next_r);

/* "sent", "retry", "failed", "expired": for logs. */
const char *queue_fate_name(enum queue_fate f);

/* --- DSN parameters ------------------------------------------------------------ */

/* NOTIFY as the SMTP side stores it ("SUCCESS,FAILURE", "NEVER", NULL)
 * into SMTP_CLIENT_NOTIFY_* / DSN_NOTIFY_* flags (the same values); 0 for
 * NULL or nothing known. */
unsigned queue_plan_notify(const char *text);

/*
 * Decode xtext (RFC 3461 4: "+XX" is the byte 0xXX, hex in either case)
 * into a new string, or NULL when s is NULL, malformed, or decodes to a
 * byte that is a control character.  For ORCPT ("rfc822;xtext") only the
 * part after the ';' is xtext: use queue_plan_orcpt.
 */
char *queue_plan_xtext_decode(const char *s);
/* ORCPT "type;xtext" decoded to "type;address", or NULL (also when type
 * is not an atom of letters, digits and "-"). */
char *queue_plan_orcpt(const char *s);

#endif
