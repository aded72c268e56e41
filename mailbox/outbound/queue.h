/*
 * mailbox/outbound/queue.h -- the outbound queue engine inside `serve`:
 * drains queue_messages/queue_rcpts (filled by SMTP submission and by
 * bounces, mailbox/delivery/delivery_sql.h) through the transport
 * (mailbox/outbound/transport.h) or into the store (route type local).
 *
 * Life of a claimed message (one struct per message, at most
 * outbound.concurrency in flight per instance):
 *   1. claim: tp_queue_claim(owner, lease, limit) (mailbox/store/schema.c,
 *      migration 2) leases the due recipients of up to `limit` messages
 *      with SELECT ... FOR UPDATE SKIP LOCKED, so instances sharing the
 *      database never take the same recipient; the lease ends after
 *      outbound.lease, and the claim counts as an attempt;
 *   2. the blob is read in chunks into a spool file (mailbox/delivery/
 *      spool.h), a leading Return-Path field stripped (queue_plan.h), and
 *      fed to the DKIM signer when the message came from an authenticated
 *      sender (every active key of the From: domain, else of the envelope
 *      sender's domain; queue_keys.h);
 *   3. the recipients are grouped by destination (one relay route, one MX
 *      domain, or local) and each group is one transport send, or one
 *      local delivery through mailbox/delivery/delivery.h;
 *   4. per recipient: delivered -> sent; temporary failure -> the next
 *      time of the retry schedule (outbound.retry, counted from the time
 *      the message was queued); permanent failure, or a temporary one at
 *      or past outbound.expire -> failed, with a DSN to the envelope
 *      sender (bounce.h; never for the null sender, nor with NOTIFY=NEVER);
 *      optionally one "delayed" DSN after outbound.delay_notice;
 *   5. tp_queue_record(owner, ...) writes the results, but only for the
 *      recipients whose lease is still this claim's, and deletes the
 *      message once every recipient is final (the blob collector then
 *      removes an unreferenced blob).
 *
 * Exactly once, and its one exception: a recipient is claimed by one
 * instance at a time; its result is recorded only under the same claim.
 * A worker that dies (SIGKILL, crash, power) between the remote server's
 * 250 and step 5 leaves the lease to expire, and the recipient is sent
 * again: at most one duplicate per crash, the same trade every MTA makes
 * (RFC 5321 6.1).  A send that outlives its lease can likewise be sent
 * twice (keep outbound.lease well above the SMTP timeouts).
 *
 * Wake-ups: a timer every outbound.poll, and a kick on the memory store
 * channel DELIVERY_QUEUE_CHANNEL, which delivery.c publishes after queuing
 * (Redis carries it to every instance).
 *
 * Shutdown: outbound_queue_stop() stops claiming; sends in flight finish
 * (outbound_queue_idle() says when); outbound_queue_free() cancels what
 * is left and gives its leases back (tp_queue_release, blocking: the loop
 * is gone by then).  SIGHUP: outbound_queue_reconfigure().  All functions
 * but outbound_queue_new accept a NULL queue.
 */
#ifndef MAILBOX_OUTBOUND_QUEUE_H
#define MAILBOX_OUTBOUND_QUEUE_H

#include "mailbox/config.h"
#include "mailbox/delivery/delivery.h"
#include "mailbox/outbound/transport.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

struct outbound_queue;

/*
 * The engine for cfg->outbound on loop, with the daemon's stores (which
 * must outlive it).  cfg need not outlive the call (the settings and
 * routes are copied), but cfg->stores.data must: the release at exit
 * connects with it.  NULL with a logged error when the transport or the
 * retry schedule cannot be set up.
 */
struct outbound_queue *outbound_queue_new(struct ev_loop *loop, const struct mailbox_config *cfg,
                                          const struct delivery_stores *st);
/* New settings and routes (SIGHUP); messages in flight keep the ones they
 * started with. */
void outbound_queue_reconfigure(struct outbound_queue *q, const struct mailbox_config *cfg);
/* Look for due work soon (coalesced). */
void outbound_queue_kick(struct outbound_queue *q);
/* Stop claiming (SIGTERM); work in flight goes on. */
void outbound_queue_stop(struct outbound_queue *q);
/* Nothing in flight. */
bool outbound_queue_idle(const struct outbound_queue *q);
/* Cancel everything, release the leases of unfinished work, free.
 * NULL-safe; sets *q to NULL. */
void outbound_queue_free(struct outbound_queue **q);

/*
 * Counters for /metrics (mailbox/server/metrics.c), monotonic for the life
 * of the engine (SIGHUP keeps them).  An attempt is one recipient of one
 * claimed message, counted when its result is written: delivered (sent),
 * deferred (retried later, also when a DSN could not be stored yet),
 * bounced (failed or expired, with a DSN to the sender) or failed (no DSN:
 * null sender or NOTIFY=NEVER).  The queue depth comes from a count query
 * run on the loop every OUTBOUND_QUEUE_DEPTH_MS (never while one is still
 * out); depth_known is false until the first answer.
 */
#define OUTBOUND_QUEUE_DEPTH_MS 10000

enum outbound_attempt_result {
	OUTBOUND_ATTEMPT_DELIVERED,
	OUTBOUND_ATTEMPT_DEFERRED,
	OUTBOUND_ATTEMPT_BOUNCED,
	OUTBOUND_ATTEMPT_FAILED,
	OUTBOUND_ATTEMPT_RESULTS,
};

struct outbound_queue_stats {
	uint64_t claims;        /* claim queries answered */
	uint64_t claim_errors;  /* claim queries that failed */
	uint64_t claimed_msgs;  /* messages taken by the claims */
	uint64_t claimed_rcpts; /* recipients leased by the claims */
	uint64_t attempts[OUTBOUND_ATTEMPT_RESULTS];
	uint64_t unrecorded;   /* results not written (lease gone, write failed) */
	uint64_t dsn_stored;   /* DSNs delivered or queued to the sender */
	uint64_t dsn_failed;   /* DSNs that could not be stored (retried) */
	uint64_t in_flight;    /* messages being worked on now */
	bool depth_known;      /* the fields below hold a count */
	uint64_t depth_msgs;   /* queue_messages rows */
	uint64_t depth_rcpts;  /* pending recipients */
	uint64_t depth_due;    /* of those, due now */
	uint64_t depth_leased; /* of those, under a live lease (any instance) */
	double depth_oldest_s; /* age of the oldest queued message */
	struct outbound_transport_stats transport;
};
/* All zero for a NULL queue. */
void outbound_queue_stats(const struct outbound_queue *q, struct outbound_queue_stats *out);

#endif
