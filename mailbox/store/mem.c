/*
 * mailbox/store/mem.c -- the in-memory store front: requests, callbacks,
 * subscriptions (see mem.h).
 *
 * Requests start from a zero-delay timer so no callback ever runs inside
 * the call that made the request.  Cancelling detaches the callback; the
 * backend still completes and frees the request.  Subscriptions are a
 * list in the front; a backend only learns "channel X is wanted" and
 * hands every message back through mem_deliver(), which tolerates
 * subscribers (un)subscribing from inside their callbacks.
 */
#include "mailbox/store/mem_private.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void starter_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mem_store *ms = container_of(w, struct mem_store, starter);

	(void)loop;
	(void)revents;
	mem_enter(ms);
	while (ms->pend_head != NULL && !ms->dying) {
		struct mem_req *r = ms->pend_head;
		ms->pend_head = r->pnext;
		if (ms->pend_head == NULL)
			ms->pend_tail = NULL;
		r->pnext = NULL;
		r->started = true;
		if (r->err != NULL)
			mem_req_finish(r);
		else
			ms->ops->start(ms, r);
	}
	mem_leave(ms);
}

struct mem_store *mem_store_new(struct ev_loop *loop, const struct stores_memory_config *cfg,
                                const char **errstr_r)
{
	struct mem_store *ms = xcalloc(1, sizeof(*ms));
	int rc;

	ms->loop = loop;
	ms->cfg = cfg;
	ev_timer_init(&ms->starter, starter_cb, 0., 0.);
	if (cfg->redis != NULL) {
		ms->ops = &mem_redis_ops;
		rc = mem_redis_init(ms, errstr_r);
	} else {
		ms->ops = &mem_local_ops;
		rc = mem_local_init(ms, errstr_r);
	}
	if (rc < 0) {
		free(ms);
		return NULL;
	}
	return ms;
}

static void unlink_req(struct mem_store *ms, struct mem_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (ms->reqs == r)
		ms->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

void mem_req_free(struct mem_req *r)
{
	free(r->key);
	free(r->text);
	free(r->err);
	free(r->reason);
	for (size_t i = 0; i < r->nbans; i++) {
		free((char *)(uintptr_t)r->bans[i].what);
		free((char *)(uintptr_t)r->bans[i].reason);
	}
	free(r->bans);
	free(r);
}

static void sub_free(struct mem_sub *s)
{
	free(s->channel);
	free(s);
}

/* Remove dead subscriptions (only when no delivery is iterating). */
static void subs_sweep(struct mem_store *ms)
{
	for (struct mem_sub *s = ms->subs, *next; s != NULL; s = next) {
		next = s->next;
		if (!s->dead)
			continue;
		if (s->prev != NULL)
			s->prev->next = s->next;
		else
			ms->subs = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
		sub_free(s);
	}
}

static void store_really_free(struct mem_store *ms)
{
	ev_timer_stop(ms->loop, &ms->starter);
	/* unstarted requests are ours; started ones the backend handles */
	for (struct mem_req *r = ms->reqs, *next; r != NULL; r = next) {
		next = r->next;
		r->cancelled = true;
		if (!r->started) {
			unlink_req(ms, r);
			mem_req_free(r);
		} else {
			r->ms = NULL; /* orphan: the backend frees it when it returns */
			r->prev = r->next = NULL;
		}
	}
	ms->reqs = NULL;
	ms->ops->free(ms);
	while (ms->subs != NULL) {
		struct mem_sub *s = ms->subs;
		ms->subs = s->next;
		sub_free(s);
	}
	free(ms);
}

void mem_store_free(struct mem_store **msp)
{
	struct mem_store *ms;

	if (msp == NULL || *msp == NULL)
		return;
	ms = *msp;
	*msp = NULL;
	ms->dying = true;
	if (ms->depth > 0)
		return;
	store_really_free(ms);
}

void mem_enter(struct mem_store *ms)
{
	ms->depth++;
}

bool mem_leave(struct mem_store *ms)
{
	ASSERT(ms->depth > 0);
	if (--ms->depth > 0)
		return false;
	if (ms->dying) {
		store_really_free(ms);
		return true;
	}
	subs_sweep(ms);
	return false;
}

const char *mem_store_kind(const struct mem_store *ms)
{
	return ms->ops->kind;
}

const char *mem_store_endpoint(const struct mem_store *ms)
{
	return ms->endpoint;
}

bool mem_store_healthy(const struct mem_store *ms)
{
	return ms->ops->healthy(ms);
}

void mem_store_stats(const struct mem_store *ms, struct mem_stats *out)
{
	*out = ms->st;
}

static struct mem_req *req_new(struct mem_store *ms, enum mem_op op, const char *key, void *arg)
{
	struct mem_req *r = xcalloc(1, sizeof(*r));

	r->ms = ms;
	r->op = op;
	r->arg = arg;
	r->start = ev_now(ms->loop);
	if (key != NULL) {
		r->key = xstrdup(key);
		if (strlen(key) == 0 || strlen(key) > MEM_KEY_MAX)
			r->err = xasprintf("memory store: key of %zu bytes (1..%d allowed)",
			                   strlen(key), MEM_KEY_MAX);
	}
	r->next = ms->reqs;
	if (ms->reqs != NULL)
		ms->reqs->prev = r;
	ms->reqs = r;
	if (ms->pend_tail != NULL)
		ms->pend_tail->pnext = r;
	else
		ms->pend_head = r;
	ms->pend_tail = r;
	ev_timer_start(ms->loop, &ms->starter);
	return r;
}

void mem_req_finish(struct mem_req *r)
{
	struct mem_store *ms = r->ms;
	double us;

	if (ms == NULL) {
		mem_req_free(r);
		return;
	}
	unlink_req(ms, r);
	us = (ev_now(ms->loop) - r->start) * 1e6;
	ms->st.commands++;
	ms->st.latency_us_sum += us > 0 ? (uint64_t)us : 0;
	if (r->err != NULL)
		ms->st.errors++;
	if (!r->cancelled && !ms->dying) {
		const char *err = r->err;
		mem_enter(ms);
		switch (r->op) {
		case MEM_OP_INCR:
		case MEM_OP_COUNT_GET:
			if (r->cb.count != NULL)
				r->cb.count(r->arg, r->value, err);
			break;
		case MEM_OP_BAN_CHECK:
			if (r->cb.ban != NULL)
				r->cb.ban(r->arg, err == NULL && r->banned, r->value,
				          r->reason != NULL ? r->reason : "", err);
			break;
		case MEM_OP_BAN_LIST:
			if (r->cb.list != NULL)
				r->cb.list(r->arg, r->bans, r->nbans, err);
			break;
		default:
			if (r->cb.done != NULL)
				r->cb.done(r->arg, err);
			break;
		}
		mem_req_free(r);
		mem_leave(ms);
		return;
	}
	mem_req_free(r);
}

struct mem_req *mem_incr(struct mem_store *ms, const char *key, uint64_t window_ms,
                         mem_count_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_INCR, key, arg);

	r->cb.count = cb;
	r->ms_arg = window_ms > 0 ? window_ms : 1;
	if (cb == NULL)
		r = NULL;
	return r;
}

struct mem_req *mem_count_get(struct mem_store *ms, const char *key, mem_count_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_COUNT_GET, key, arg);

	r->cb.count = cb;
	return cb != NULL ? r : NULL;
}

struct mem_req *mem_count_reset(struct mem_store *ms, const char *key, mem_done_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_COUNT_RESET, key, arg);

	r->cb.done = cb;
	return cb != NULL ? r : NULL;
}

struct mem_req *mem_ban_set(struct mem_store *ms, const char *what, uint64_t ttl_ms,
                            const char *reason, mem_done_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_BAN_SET, what, arg);

	r->cb.done = cb;
	r->ms_arg = ttl_ms > 0 ? ttl_ms : 1;
	r->text = xstrdup(reason != NULL ? reason : "");
	r->textlen = strlen(r->text);
	return cb != NULL ? r : NULL;
}

struct mem_req *mem_ban_check(struct mem_store *ms, const char *what, mem_ban_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_BAN_CHECK, what, arg);

	r->cb.ban = cb;
	return cb != NULL ? r : NULL;
}

struct mem_req *mem_ban_list(struct mem_store *ms, mem_ban_list_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_BAN_LIST, NULL, arg);

	r->cb.list = cb;
	return cb != NULL ? r : NULL;
}

struct mem_req *mem_ban_remove(struct mem_store *ms, const char *what, mem_done_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_BAN_REMOVE, what, arg);

	r->cb.done = cb;
	return cb != NULL ? r : NULL;
}

struct mem_req *mem_publish(struct mem_store *ms, const char *channel, const char *msg, size_t len,
                            mem_done_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_PUBLISH, channel, arg);

	r->cb.done = cb;
	r->text = xmemdup(msg, len + 1);
	r->text[len] = '\0';
	r->textlen = len;
	return cb != NULL ? r : NULL;
}

static struct mem_req *mem_ping(struct mem_store *ms, mem_done_cb *cb, void *arg)
{
	struct mem_req *r = req_new(ms, MEM_OP_PING, NULL, arg);

	r->cb.done = cb;
	return r;
}

void mem_req_cancel(struct mem_req **rp)
{
	if (rp == NULL || *rp == NULL)
		return;
	(*rp)->cancelled = true;
	*rp = NULL;
}

bool mem_has_subscriber(const struct mem_store *ms, const char *channel)
{
	for (const struct mem_sub *s = ms->subs; s != NULL; s = s->next)
		if (!s->dead && strcmp(s->channel, channel) == 0)
			return true;
	return false;
}

struct mem_sub *mem_subscribe(struct mem_store *ms, const char *channel, mem_msg_cb *cb, void *arg)
{
	struct mem_sub *s = xcalloc(1, sizeof(*s));
	bool first = !mem_has_subscriber(ms, channel);

	s->ms = ms;
	s->channel = xstrdup(channel);
	s->cb = cb;
	s->arg = arg;
	s->next = ms->subs;
	if (ms->subs != NULL)
		ms->subs->prev = s;
	ms->subs = s;
	if (first)
		ms->ops->subscribe(ms, channel);
	return s;
}

void mem_unsubscribe(struct mem_sub **sp)
{
	struct mem_sub *s;

	if (sp == NULL || *sp == NULL)
		return;
	s = *sp;
	*sp = NULL;
	s->dead = true;
	/* freed by the next sweep (outside any delivery); the backend keeps
	 * its server-side subscription: cheap, and messages are dropped */
	if (s->ms->depth == 0)
		subs_sweep(s->ms);
}

bool mem_sub_live(struct mem_sub *s, uint64_t *epoch_r)
{
	*epoch_r = 0;
	if (s == NULL || s->dead || s->ms->ops->sub_live == NULL)
		return false;
	return s->ms->ops->sub_live(s->ms, s, epoch_r);
}

void mem_deliver(struct mem_store *ms, const char *channel, const char *msg, size_t len)
{
	ms->st.messages++;
	mem_enter(ms);
	for (struct mem_sub *s = ms->subs; s != NULL && !ms->dying; s = s->next)
		if (!s->dead && strcmp(s->channel, channel) == 0)
			s->cb(s->arg, channel, msg, len);
	mem_leave(ms);
}

/* --- start-up check -------------------------------------------------------- */

struct sync_ping {
	bool done;
	char err[512];
};

static void sync_ping_cb(void *arg, const char *errstr)
{
	struct sync_ping *s = arg;

	s->done = true;
	if (errstr != NULL)
		snprintf(s->err, sizeof(s->err), "%s", errstr);
}

int mem_store_check_sync(struct mem_store *ms, char *err, size_t errsz)
{
	struct sync_ping s = {0};
	struct mem_req *r = mem_ping(ms, sync_ping_cb, &s);

	(void)r;
	while (!s.done)
		ev_run(ms->loop, EVRUN_ONCE);
	if (s.err[0] != '\0') {
		snprintf(err, errsz, "%s", s.err);
		return -1;
	}
	return 0;
}
