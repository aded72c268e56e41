/*
 * mailbox/store/mem_local.c -- the in-process in-memory store, for a
 * single instance (no memory.redis configured).
 *
 * Same semantics as the Redis backend, kept in two hash tables (counters
 * and bans) keyed by the caller's key; expiry is checked on every access
 * and a sweep every 10 s drops what nobody touched.  publish delivers to
 * this process's subscribers only: with several instances the operator
 * must configure Redis, which is what DESIGN.md's "Several instances, one
 * store" asks for (mailbox/README.md says so).
 */
#include "mailbox/store/mem_private.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCAL_SWEEP_S     10.0
#define LOCAL_MIN_BUCKETS 64

struct entry {
	struct entry *next;
	char *key;
	int64_t value;
	char *reason;     /* bans */
	ev_tstamp expiry; /* absolute, ev_now() scale */
};

struct table {
	struct entry **b;
	size_t nb, n;
};

struct local_store {
	struct table counters, bans;
	ev_timer sweep;
};

/* FNV-1a: fast, and attackers choosing keys (client addresses) gain
 * nothing useful from collisions at these table sizes. */
static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free(e->reason);
	free(e);
}

static void table_grow(struct table *t)
{
	size_t nb = t->nb == 0 ? LOCAL_MIN_BUCKETS : t->nb * 2;
	struct entry **b = xcalloc(nb, sizeof(*b));

	for (size_t i = 0; i < t->nb; i++) {
		for (struct entry *e = t->b[i], *next; e != NULL; e = next) {
			size_t k = hash(e->key) & (nb - 1);
			next = e->next;
			e->next = b[k];
			b[k] = e;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

/* The live entry for key (an expired one is removed), or NULL. */
static struct entry *table_get(struct table *t, const char *key, ev_tstamp now)
{
	struct entry **pp;

	if (t->nb == 0)
		return NULL;
	for (pp = &t->b[hash(key) & (t->nb - 1)]; *pp != NULL; pp = &(*pp)->next) {
		struct entry *e = *pp;
		if (strcmp(e->key, key) != 0)
			continue;
		if (e->expiry <= now) {
			*pp = e->next;
			entry_free(e);
			t->n--;
			return NULL;
		}
		return e;
	}
	return NULL;
}

static struct entry *table_put(struct table *t, const char *key)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	size_t k;

	if (t->n + 1 > t->nb)
		table_grow(t);
	e->key = xstrdup(key);
	k = hash(key) & (t->nb - 1);
	e->next = t->b[k];
	t->b[k] = e;
	t->n++;
	return e;
}

static bool table_del(struct table *t, const char *key)
{
	if (t->nb == 0)
		return false;
	for (struct entry **pp = &t->b[hash(key) & (t->nb - 1)]; *pp != NULL; pp = &(*pp)->next) {
		struct entry *e = *pp;
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			entry_free(e);
			t->n--;
			return true;
		}
	}
	return false;
}

static void table_sweep(struct table *t, ev_tstamp now)
{
	for (size_t i = 0; i < t->nb; i++) {
		for (struct entry **pp = &t->b[i]; *pp != NULL;) {
			struct entry *e = *pp;
			if (e->expiry <= now) {
				*pp = e->next;
				entry_free(e);
				t->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nb; i++)
		for (struct entry *e = t->b[i], *next; e != NULL; e = next) {
			next = e->next;
			entry_free(e);
		}
	free(t->b);
	memset(t, 0, sizeof(*t));
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct local_store *l = container_of(w, struct local_store, sweep);

	(void)revents;
	table_sweep(&l->counters, ev_now(loop));
	table_sweep(&l->bans, ev_now(loop));
}

static int64_t ms_left(ev_tstamp expiry, ev_tstamp now)
{
	double ms = (expiry - now) * 1000.0;

	return ms < 1 ? 1 : (int64_t)ms;
}

static void local_start(struct mem_store *ms, struct mem_req *r)
{
	struct local_store *l = ms->impl;
	ev_tstamp now = ev_now(ms->loop);
	struct entry *e;
	char msg[MEM_KEY_MAX + 8];

	switch (r->op) {
	case MEM_OP_INCR:
		e = table_get(&l->counters, r->key, now);
		if (e == NULL) {
			e = table_put(&l->counters, r->key);
			e->expiry = now + (double)r->ms_arg / 1000.0;
		}
		r->value = ++e->value;
		break;
	case MEM_OP_COUNT_GET:
		e = table_get(&l->counters, r->key, now);
		r->value = e != NULL ? e->value : 0;
		break;
	case MEM_OP_COUNT_RESET:
		table_del(&l->counters, r->key);
		break;
	case MEM_OP_BAN_SET:
		table_del(&l->bans, r->key);
		e = table_put(&l->bans, r->key);
		e->expiry = now + (double)r->ms_arg / 1000.0;
		e->reason = xstrdup(r->text);
		snprintf(msg, sizeof(msg), "add %s", r->key);
		mem_deliver(ms, MEM_CHANNEL_BANS, msg, strlen(msg));
		break;
	case MEM_OP_BAN_CHECK:
		e = table_get(&l->bans, r->key, now);
		if (e != NULL) {
			r->banned = true;
			r->value = ms_left(e->expiry, now);
			r->reason = xstrdup(e->reason);
		}
		break;
	case MEM_OP_BAN_LIST:
		table_sweep(&l->bans, now);
		r->bans = xcalloc(l->bans.n + 1, sizeof(*r->bans));
		for (size_t i = 0; i < l->bans.nb; i++)
			for (e = l->bans.b[i]; e != NULL; e = e->next) {
				struct mem_ban *b = &r->bans[r->nbans++];
				b->what = xstrdup(e->key);
				b->reason = xstrdup(e->reason);
				b->ttl_ms = ms_left(e->expiry, now);
			}
		break;
	case MEM_OP_BAN_REMOVE:
		table_del(&l->bans, r->key);
		snprintf(msg, sizeof(msg), "del %s", r->key);
		mem_deliver(ms, MEM_CHANNEL_BANS, msg, strlen(msg));
		break;
	case MEM_OP_PUBLISH:
		mem_deliver(ms, r->key, r->text, r->textlen);
		break;
	case MEM_OP_PING:
		break;
	}
	if (ms->dying) {
		/* a subscriber freed the store while we delivered */
		r->cancelled = true;
	}
	mem_req_finish(r);
}

static void local_subscribe(struct mem_store *ms, const char *channel)
{
	(void)ms;
	(void)channel;
}

static bool local_healthy(const struct mem_store *ms)
{
	(void)ms;
	return true;
}

/* In-process: a subscriber gets every later message, always. */
static bool local_sub_live(const struct mem_store *ms, struct mem_sub *s, uint64_t *epoch_r)
{
	(void)ms;
	(void)s;
	*epoch_r = 1;
	return true;
}

static void local_free(struct mem_store *ms)
{
	struct local_store *l = ms->impl;

	ev_ref(ms->loop);
	ev_timer_stop(ms->loop, &l->sweep);
	table_free(&l->counters);
	table_free(&l->bans);
	free(l);
	ms->impl = NULL;
}

const struct mem_ops mem_local_ops = {
        .kind = "local",
        .start = local_start,
        .subscribe = local_subscribe,
        .healthy = local_healthy,
        .sub_live = local_sub_live,
        .free = local_free,
};

int mem_local_init(struct mem_store *ms, const char **errstr_r)
{
	struct local_store *l = xcalloc(1, sizeof(*l));

	(void)errstr_r;
	ev_timer_init(&l->sweep, sweep_cb, LOCAL_SWEEP_S, LOCAL_SWEEP_S);
	ev_timer_start(ms->loop, &l->sweep);
	ev_unref(ms->loop);
	snprintf(ms->endpoint, sizeof(ms->endpoint), "local");
	ms->impl = l;
	return 0;
}
