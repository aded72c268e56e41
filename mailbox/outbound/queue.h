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

#include <ev.h>
#include <stdbool.h>

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

#endif
