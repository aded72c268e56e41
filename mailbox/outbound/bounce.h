/*
 * mailbox/outbound/bounce.h -- send a delivery status notification (a
 * "bounce", RFC 3464, built by mailbox/outbound/dsn.h) to the envelope
 * sender of a queued message, delivered like any other message:
 *
 *   - the sender is looked up in the directory (mailbox/directory/
 *     lookup.h): a local sender gets it in the INBOX of its account(s)
 *     through the ordinary delivery (mailbox/delivery/delivery.h), an
 *     alias's remote targets and a remote sender through the outbound
 *     queue;
 *   - always with the null reverse-path (RFC 5321 4.5.5, RFC 3464 2), so
 *     a DSN never causes another one;
 *   - an unknown local sender (our domain, no such user) gets nothing:
 *     logged, and counted as done; so does a report that cannot be built
 *     (dsn_begin refuses it: it never could be).
 *
 * The report is built in memory at once (the original's header block, or
 * the whole original for RET=FULL up to BOUNCE_FULL_MAX bytes, read from
 * a file descriptor with pread), then the lookup and the delivery run on
 * the loop; cb reports whether the DSN is durable (ok) or must be tried
 * again later (a store error).
 */
#ifndef MAILBOX_OUTBOUND_BOUNCE_H
#define MAILBOX_OUTBOUND_BOUNCE_H

#include "mailbox/delivery/delivery.h"
#include "mailbox/outbound/dsn.h"

#include <stdbool.h>
#include <stdint.h>

#define BOUNCE_FULL_MAX                                                                            \
	(1024u * 1024) /* RET=FULL only up to this size: a bounce is                               \
	                 built in memory on the loop */

struct bounce_params {
	const struct delivery_stores *st;
	const char *spool_dir;
	const char *id; /* for logs: e.g. the queue id */
	/* the report; message_id, boundary and now are filled in here when
	 * NULL/0; original_size is taken from original_len */
	struct dsn_report report;
	int original_fd; /* the original as sent (no Return-Path); -1: none */
	uint64_t original_len;
};

/* ok: the DSN is stored (or needs none: unknown local sender); error
 * says why not (valid during the call). */
typedef void bounce_done_cb(void *arg, bool ok, const char *error);

struct bounce;

/*
 * Build the report and start delivering it.  Never NULL; cb always runs
 * from the loop, once, unless the bounce is freed first.
 */
struct bounce *bounce_start(const struct bounce_params *p, bounce_done_cb *cb, void *arg);
/* Cancel (no callback) and free.  NULL-safe; sets *b to NULL. */
void bounce_free(struct bounce **b);

#endif
