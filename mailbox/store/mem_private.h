/*
 * mailbox/store/mem_private.h -- what mem.c shares with its backends
 * (mem_redis.c, mem_local.c).
 *
 * mem.c owns requests, subscriptions and callbacks.  A backend receives a
 * started request, fills its result fields and calls mem_req_finish()
 * from the loop; incoming pub/sub messages go to mem_deliver().  Entries
 * from libev or hiredis are bracketed with mem_enter()/mem_leave() so a
 * callback may free the store (the real free then happens in the
 * outermost mem_leave(), which returns true).
 */
#ifndef MAILBOX_STORE_MEM_PRIVATE_H
#define MAILBOX_STORE_MEM_PRIVATE_H

#include "mailbox/store/mem.h"

enum mem_op {
	MEM_OP_INCR,
	MEM_OP_COUNT_GET,
	MEM_OP_COUNT_RESET,
	MEM_OP_BAN_SET,
	MEM_OP_BAN_CHECK,
	MEM_OP_BAN_LIST,
	MEM_OP_BAN_REMOVE,
	MEM_OP_PUBLISH,
	MEM_OP_PING,
};

struct mem_req {
	struct mem_store *ms;        /* NULL once orphaned (store freed, backend still owns it) */
	struct mem_req *prev, *next; /* the store's list */
	struct mem_req *pnext;       /* not-yet-started queue */
	bool started, cancelled;
	enum mem_op op;
	char *key;  /* counter key or ban subject, without prefix; publish: channel */
	char *text; /* ban reason; publish: message */
	size_t textlen;
	uint64_t ms_arg; /* window or ttl */
	union {
		mem_done_cb *done;
		mem_count_cb *count;
		mem_ban_cb *ban;
		mem_ban_list_cb *list;
	} cb;
	void *arg;
	ev_tstamp start;
	/* results */
	char *err;
	int64_t value;
	bool banned;
	char *reason;
	struct mem_ban *bans;
	size_t nbans;
};

struct mem_sub {
	struct mem_store *ms;
	struct mem_sub *prev, *next;
	char *channel;
	mem_msg_cb *cb;
	void *arg;
	bool dead;
	void *impl; /* the backend's, for sub_live (Redis: its channel) */
};

struct mem_ops {
	const char *kind;
	void (*start)(struct mem_store *ms, struct mem_req *r);
	/* a channel got its first live subscriber */
	void (*subscribe)(struct mem_store *ms, const char *channel);
	bool (*healthy)(const struct mem_store *ms);
	/* mem_sub_live for a live subscriber */
	bool (*sub_live)(const struct mem_store *ms, struct mem_sub *s, uint64_t *epoch_r);
	/* free the backend; unfinished started requests: set r->ms = NULL
	 * and free them later itself, or free them now with mem_req_free */
	void (*free)(struct mem_store *ms);
};

struct mem_store {
	const struct mem_ops *ops;
	struct ev_loop *loop;
	const struct stores_memory_config *cfg;
	char endpoint[300];
	struct mem_req *reqs;
	struct mem_req *pend_head, *pend_tail;
	ev_timer starter;
	struct mem_sub *subs;
	struct mem_stats st;
	unsigned depth;
	bool dying;
	void *impl;
};

extern const struct mem_ops mem_redis_ops;
extern const struct mem_ops mem_local_ops;

int mem_redis_init(struct mem_store *ms, const char **errstr_r);
int mem_local_init(struct mem_store *ms, const char **errstr_r);

/* r done (fields filled, r->err set on failure): callback, free. */
void mem_req_finish(struct mem_req *r);
/* Free a request without any callback (orphans). */
void mem_req_free(struct mem_req *r);
/* Deliver a message on channel (without prefix) to local subscribers. */
void mem_deliver(struct mem_store *ms, const char *channel, const char *msg, size_t len);
/* True if some live subscriber wants channel. */
bool mem_has_subscriber(const struct mem_store *ms, const char *channel);

void mem_enter(struct mem_store *ms);
bool mem_leave(struct mem_store *ms);

#endif
