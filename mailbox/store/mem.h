/*
 * mailbox/store/mem.h -- the in-memory store: counters, bans, pub/sub.
 *
 * Two backends behind struct mem_ops (mailbox/store/mem_private.h):
 *
 *   redis  hiredis async on the loop (redisLibevAttach), one connection
 *          for commands and a second one for SUBSCRIBE (a subscribed
 *          connection can issue nothing else).  redis://host:port/N selects
 *          logical DB N; every key and channel starts with cfg->prefix.
 *          A lost connection is re-established with backoff (250 ms
 *          doubling to 10 s) and the subscriptions are renewed.  Shared by
 *          every instance: DESIGN.md "Several instances, one store".
 *   local  the same interface inside the process, for a single instance
 *          (no memory.redis configured): counters and bans in hash tables,
 *          publish delivers to this process's subscribers.
 *
 * Keys are the caller's (e.g. "auth:192.0.2.7"); the store adds the prefix
 * and its own namespaces ("cnt:", "ban:") so counters and bans never mix.
 * Bans are published on channel MEM_CHANNEL_BANS ("add <what>" or
 * "del <what>") by mem_ban_set/mem_ban_remove, so other instances can drop
 * a banned client's sessions and refresh caches.
 *
 * Callbacks run from the loop, never inside the starting call, and never
 * after mem_req_cancel() or mem_store_free().  A request returns a handle
 * valid until its callback has returned; with cb NULL the request is
 * fire-and-forget and the return value is NULL.  While the store is down
 * requests fail at once (asynchronously) with an error, never queue up.
 */
#ifndef MAILBOX_STORE_MEM_H
#define MAILBOX_STORE_MEM_H

#include "mailbox/store/config.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEM_CHANNEL_BANS "bans"
#define MEM_KEY_MAX      512 /* bytes of a caller's key or channel */

struct mem_store;
struct mem_req;
struct mem_sub;

/* errstr NULL on success (valid only during the call). */
typedef void mem_done_cb(void *arg, const char *errstr);
/* A counter's value after the increment. */
typedef void mem_count_cb(void *arg, int64_t value, const char *errstr);
/* banned: present now; ttl_ms: time left (> 0 when banned); reason may be
 * "" and is valid only during the call. */
typedef void mem_ban_cb(void *arg, bool banned, int64_t ttl_ms, const char *reason,
                        const char *errstr);

struct mem_ban {
	const char *what; /* the banned key, e.g. an IP address */
	int64_t ttl_ms;   /* time left */
	const char *reason;
};
/* The current bans (any order); the array lives during the call only. */
typedef void mem_ban_list_cb(void *arg, const struct mem_ban *v, size_t n, const char *errstr);
/* A message on a subscribed channel (channel without the prefix). */
typedef void mem_msg_cb(void *arg, const char *channel, const char *msg, size_t len);

/*
 * The store for cfg on loop: redis when cfg->redis is set, else local.
 * cfg must outlive the store.  Connects in the background (redis); NULL
 * with *errstr_r only for a URL it cannot parse.
 */
struct mem_store *mem_store_new(struct ev_loop *loop, const struct stores_memory_config *cfg,
                                const char **errstr_r);
/* Close and free; no callback runs afterwards.  NULL-safe; *ms = NULL. */
void mem_store_free(struct mem_store **ms);

const char *mem_store_kind(const struct mem_store *ms); /* "redis" or "local" */
/* The endpoint without a password ("redis://h:6379/3"), or "local". */
const char *mem_store_endpoint(const struct mem_store *ms);
/* For /readyz: the command connection is up (always true for local). */
bool mem_store_healthy(const struct mem_store *ms);

/*
 * Increment counter key by 1 and return the new value.  The first
 * increment of a window starts it: the counter vanishes window_ms later
 * (Redis INCR + PEXPIRE NX semantics: later increments do not extend it).
 * A fixed window, enough for "N failures per 10 minutes".
 */
struct mem_req *mem_incr(struct mem_store *ms, const char *key, uint64_t window_ms,
                         mem_count_cb *cb, void *arg);
/* Read a counter without changing it (0 when absent). */
struct mem_req *mem_count_get(struct mem_store *ms, const char *key, mem_count_cb *cb, void *arg);
/* Drop a counter (e.g. after a successful login). */
struct mem_req *mem_count_reset(struct mem_store *ms, const char *key, mem_done_cb *cb, void *arg);

/* Ban what for ttl_ms (> 0) with a short reason; replaces an earlier ban
 * of the same key.  Publishes "add <what>" on MEM_CHANNEL_BANS. */
struct mem_req *mem_ban_set(struct mem_store *ms, const char *what, uint64_t ttl_ms,
                            const char *reason, mem_done_cb *cb, void *arg);
struct mem_req *mem_ban_check(struct mem_store *ms, const char *what, mem_ban_cb *cb, void *arg);
struct mem_req *mem_ban_list(struct mem_store *ms, mem_ban_list_cb *cb, void *arg);
/* Lift a ban (absent is fine).  Publishes "del <what>". */
struct mem_req *mem_ban_remove(struct mem_store *ms, const char *what, mem_done_cb *cb, void *arg);

/* Publish msg on channel to every subscriber of every instance (local:
 * this process only, delivered from the loop). */
struct mem_req *mem_publish(struct mem_store *ms, const char *channel, const char *msg, size_t len,
                            mem_done_cb *cb, void *arg);
/*
 * Call cb for each message on channel until mem_unsubscribe.  Messages
 * published while the subscription connection was down are lost (pub/sub
 * is a hint; state lives in Postgres/Redis keys).  Never NULL.
 */
struct mem_sub *mem_subscribe(struct mem_store *ms, const char *channel, mem_msg_cb *cb, void *arg);
/* NULL-safe; sets *s to NULL; may be called from the sub's own callback. */
void mem_unsubscribe(struct mem_sub **s);
/*
 * Whether s now receives every message published on its channel: its
 * subscription is in place (Redis: confirmed on the connected
 * subscription connection; local: always).  *epoch_r names that
 * connection and changes whenever it is replaced, so "live with the same
 * epoch" at two moments means nothing published in between was missed.
 */
bool mem_sub_live(struct mem_sub *s, uint64_t *epoch_r);

/* Forget a request: its callback will never run.  NULL-safe; *r = NULL. */
void mem_req_cancel(struct mem_req **r);

struct mem_stats {
	uint64_t commands, errors, reconnects, messages;
	uint64_t latency_us_sum;
};
void mem_store_stats(const struct mem_store *ms, struct mem_stats *out);

/*
 * Start-up check: run the loop until a PING answers (or timeout_ms
 * passes).  0, or -1 with err naming the store and endpoint:
 *   "memory store redis://127.0.0.1:6390/0: Connection refused"
 */
int mem_store_check_sync(struct mem_store *ms, char *err, size_t errsz);

#endif
