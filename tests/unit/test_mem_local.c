/*
 * tests/unit/test_mem_local.c -- the in-process in-memory store (the
 * single-instance backend behind mailbox/store/mem.h): counters and their
 * windows, bans with TTL, pub/sub, and the callback contract (never inside
 * the call, never after cancel or free, free from inside a callback).
 */
#include "tests/unit/unit.h"

#include "mailbox/store/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct stores_memory_config local_cfg = {
        .redis = NULL,
        .prefix = (char *)(uintptr_t) "t:",
        .timeout_ms = 1000,
};

struct ctx {
	struct ev_loop *loop;
	struct mem_store *ms;
	int calls;
	int64_t value;
	bool banned;
	int64_t ttl;
	char reason[64];
	char err[256];
	size_t nbans;
	char msgs[8][64];
	int nmsgs;
	struct mem_sub *sub;
};

static void count_cb(void *arg, int64_t v, const char *err)
{
	struct ctx *c = arg;

	c->calls++;
	c->value = v;
	snprintf(c->err, sizeof(c->err), "%s", err != NULL ? err : "");
}

static void done_cb(void *arg, const char *err)
{
	struct ctx *c = arg;

	c->calls++;
	snprintf(c->err, sizeof(c->err), "%s", err != NULL ? err : "");
}

static void ban_cb(void *arg, bool banned, int64_t ttl, const char *reason, const char *err)
{
	struct ctx *c = arg;

	c->calls++;
	c->banned = banned;
	c->ttl = ttl;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	snprintf(c->err, sizeof(c->err), "%s", err != NULL ? err : "");
}

static void list_cb(void *arg, const struct mem_ban *v, size_t n, const char *err)
{
	struct ctx *c = arg;

	(void)v;
	(void)err;
	c->calls++;
	c->nbans = n;
}

static void msg_cb(void *arg, const char *channel, const char *msg, size_t len)
{
	struct ctx *c = arg;

	if (c->nmsgs < 8)
		snprintf(c->msgs[c->nmsgs++], 64, "%s|%.*s", channel, (int)len, msg);
}

static void drain(struct ctx *c)
{
	/* the starter is a zero timer: a few iterations run everything */
	for (int i = 0; i < 4; i++)
		ev_run(c->loop, EVRUN_NOWAIT);
}

static void setup(struct ctx *c)
{
	const char *err = NULL;

	memset(c, 0, sizeof(*c));
	c->loop = ev_loop_new(EVFLAG_AUTO);
	c->ms = mem_store_new(c->loop, &local_cfg, &err);
}

static void teardown(struct ctx *c)
{
	mem_store_free(&c->ms);
	ev_loop_destroy(c->loop);
}

UNIT_TEST(mem_local_counters)
{
	struct ctx c;

	setup(&c);
	CHECK(c.ms != NULL);
	CHECK_STR(mem_store_kind(c.ms), "local");
	CHECK(mem_store_healthy(c.ms));
	mem_incr(c.ms, "auth:192.0.2.1", 150, count_cb, &c);
	CHECK_INT(c.calls, 0); /* never inside the call */
	drain(&c);
	CHECK_INT(c.calls, 1);
	CHECK_INT(c.value, 1);
	mem_incr(c.ms, "auth:192.0.2.1", 150, count_cb, &c);
	mem_incr(c.ms, "auth:192.0.2.2", 150, count_cb, &c);
	drain(&c);
	CHECK_INT(c.value, 1); /* the other key */
	mem_count_get(c.ms, "auth:192.0.2.1", count_cb, &c);
	drain(&c);
	CHECK_INT(c.value, 2);
	/* the window ends; the counter starts over */
	usleep(200 * 1000);
	ev_now_update(c.loop);
	mem_count_get(c.ms, "auth:192.0.2.1", count_cb, &c);
	drain(&c);
	CHECK_INT(c.value, 0);
	mem_incr(c.ms, "auth:192.0.2.1", 150, count_cb, &c);
	drain(&c);
	CHECK_INT(c.value, 1);
	mem_count_reset(c.ms, "auth:192.0.2.1", done_cb, &c);
	mem_count_get(c.ms, "auth:192.0.2.1", count_cb, &c);
	drain(&c);
	CHECK_INT(c.value, 0);
	/* keys are bounded */
	{
		char big[MEM_KEY_MAX + 2];
		memset(big, 'k', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		mem_incr(c.ms, big, 1000, count_cb, &c);
		drain(&c);
		CHECK(strstr(c.err, "key of") != NULL);
	}
	teardown(&c);
}

UNIT_TEST(mem_local_bans_and_pubsub)
{
	struct ctx c;

	setup(&c);
	c.sub = mem_subscribe(c.ms, MEM_CHANNEL_BANS, msg_cb, &c);
	mem_ban_set(c.ms, "192.0.2.9", 10000, "auth failures", done_cb, &c);
	mem_ban_set(c.ms, "192.0.2.10", 100, "short", NULL, NULL); /* fire and forget */
	drain(&c);
	mem_ban_check(c.ms, "192.0.2.9", ban_cb, &c);
	drain(&c);
	CHECK(c.banned);
	CHECK(c.ttl > 9000 && c.ttl <= 10000);
	CHECK_STR(c.reason, "auth failures");
	mem_ban_list(c.ms, list_cb, &c);
	drain(&c);
	CHECK_INT(c.nbans, 2);
	usleep(150 * 1000);
	ev_now_update(c.loop);
	mem_ban_check(c.ms, "192.0.2.10", ban_cb, &c);
	mem_ban_list(c.ms, list_cb, &c);
	drain(&c);
	CHECK(!c.banned);
	CHECK_INT(c.nbans, 1);
	mem_ban_remove(c.ms, "192.0.2.9", done_cb, &c);
	mem_ban_check(c.ms, "192.0.2.9", ban_cb, &c);
	drain(&c);
	CHECK(!c.banned);
	CHECK_INT(c.nmsgs, 3);
	CHECK_STR(c.msgs[0], "bans|add 192.0.2.9");
	CHECK_STR(c.msgs[1], "bans|add 192.0.2.10");
	CHECK_STR(c.msgs[2], "bans|del 192.0.2.9");
	/* other channels do not reach this subscriber; unsubscribed: nothing */
	mem_publish(c.ms, "idle:1", "x", 1, NULL, NULL);
	drain(&c);
	CHECK_INT(c.nmsgs, 3);
	mem_unsubscribe(&c.sub);
	CHECK(c.sub == NULL);
	mem_ban_set(c.ms, "192.0.2.11", 1000, "", NULL, NULL);
	drain(&c);
	CHECK_INT(c.nmsgs, 3);
	teardown(&c);
}

static void unsub_in_cb(void *arg, const char *channel, const char *msg, size_t len)
{
	struct ctx *c = arg;

	msg_cb(arg, channel, msg, len);
	mem_unsubscribe(&c->sub);
}

static void free_in_cb(void *arg, int64_t v, const char *err)
{
	struct ctx *c = arg;

	count_cb(arg, v, err);
	mem_store_free(&c->ms);
}

UNIT_TEST(mem_local_callback_contract)
{
	struct ctx c;
	struct mem_req *r;

	setup(&c);
	/* cancelled: never called */
	r = mem_incr(c.ms, "k", 1000, count_cb, &c);
	mem_req_cancel(&r);
	CHECK(r == NULL);
	drain(&c);
	CHECK_INT(c.calls, 0);
	/* unsubscribing from inside the callback stops further messages */
	c.sub = mem_subscribe(c.ms, "chan", unsub_in_cb, &c);
	mem_publish(c.ms, "chan", "one", 3, NULL, NULL);
	mem_publish(c.ms, "chan", "two", 3, NULL, NULL);
	drain(&c);
	CHECK_INT(c.nmsgs, 1);
	CHECK_STR(c.msgs[0], "chan|one");
	/* freeing the store from a callback: the rest never run */
	mem_incr(c.ms, "k", 1000, free_in_cb, &c);
	mem_incr(c.ms, "k", 1000, count_cb, &c);
	drain(&c);
	CHECK(c.ms == NULL);
	CHECK_INT(c.calls, 1);
	ev_loop_destroy(c.loop);
	/* freeing with requests pending runs none of them */
	setup(&c);
	mem_incr(c.ms, "k", 1000, count_cb, &c);
	mem_store_free(&c.ms);
	drain(&c);
	CHECK_INT(c.calls, 0);
	ev_loop_destroy(c.loop);
}
