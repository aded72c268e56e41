/*
 * mailbox/store/mem_redis.c -- the Redis backend of the in-memory store:
 * hiredis 0.14 async on the libev loop (<hiredis/adapters/libev.h>).
 *
 * Two connections: one for commands, one in subscribed mode (Redis allows
 * nothing but (UN)SUBSCRIBE/PING on a subscribed connection).  Both are
 * opened at start and re-opened after a failure with exponential backoff
 * (250 ms doubling to 10 s); the subscription connection re-subscribes
 * every channel on reconnect.  hiredis 0.14 has no timeouts, so we keep
 * two: a connect timer per connection and a 250 ms tick that drops the
 * command connection when a command waited longer than cfg timeout (a
 * hung server must become 4xx answers, not a hung daemon).
 *
 * Multi-key operations are Lua scripts (EVAL), so each is atomic on the
 * server and one round trip: a counter's INCR and its PEXPIRE, a ban's
 * key, index and notification.  Bans live in <prefix>ban:<what> (value =
 * reason, PX ttl) plus a sorted set <prefix>bans scored by expiry time,
 * so listing needs no SCAN.  Redis pub/sub ignores the database number,
 * which is why channels carry the prefix too.
 *
 * Lifetime: a request is the privdata of its command; when the store is
 * freed with commands in flight they are orphaned (r->ms = NULL) and
 * freed by their callback, which hiredis runs (with a NULL reply) while
 * it frees the connection.  Channel records follow the same rule.
 * hiredis exports sds* symbols: nothing here is named so.
 *
 * Host names: redisAsyncConnect resolves with a blocking getaddrinfo on
 * the loop, so a name (not a numeric address) is looked up first on the
 * store's resolver thread (mailbox/store/resolve.h), once for both
 * connections, and hiredis is given an address (no TLS in hiredis 0.14,
 * so nothing needs the name afterwards).  The addresses are reused for
 * RD_DNS_TTL_S; a failed attempt moves to the next address and, after the
 * last one, looks the name up again.
 */
#include "mailbox/store/mem_private.h"

#include "mailbox/store/resolve.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RD_BACKOFF_MIN_MS 250
#define RD_BACKOFF_MAX_MS 10000
#define RD_TICK_S         0.25
#define RD_DNS_TTL_S      60.0

enum rd_kind {
	RD_CMD,
	RD_SUB,
};

struct rd_store;

struct rd_conn {
	struct rd_store *rs;
	enum rd_kind kind;
	redisAsyncContext *ac; /* NULL while down */
	bool connected;
	bool resolving; /* waiting for the store's host name lookup */
	bool failed;    /* the last attempt failed (fail fast until it works) */
	unsigned backoff_ms;
	ev_timer connect_timer, retry;
	char last_err[200];
};

struct rd_chan {
	struct rd_chan *next;
	struct rd_store *rs;           /* NULL: orphaned, freed by its NULL callback */
	char *name;                    /* without prefix */
	redisAsyncContext *registered; /* the connection it is subscribed on */
	redisAsyncContext *confirmed;  /* ... and Redis said so (SUBSCRIBE's answer) */
};

struct rd_store {
	struct mem_store *ms;
	char host[256];
	uint16_t port;
	int db;
	char *password; /* from the URL (refused by the config) or cfg->password */
	struct rd_conn cmd, sub;
	uint64_t sub_epoch; /* counts subscription connections made */
	struct rd_chan *chans;
	/* host name lookups (dns: the host is a name) */
	bool dns;
	struct resolver *resolver;
	struct resolve_req *rq;
	struct resolve_result addrs;
	size_t next_addr;         /* the address the next attempt uses */
	struct mem_req **waiting; /* commands made while the lookup runs */
	size_t nwaiting;
	bool addrs_fresh;
	ev_tstamp resolved_at;
	ev_timer tick;
	char abort_reason[128];
};

static void conn_start(struct rd_conn *c);

/* --- errors ------------------------------------------------------------------ */

static void req_error(struct mem_req *r, const char *fmt, const char *detail)
{
	struct mem_store *ms = r->ms;

	free(r->err);
	r->err =
	        xasprintf("memory store %s: %s%s", ms->endpoint, fmt, detail != NULL ? detail : "");
}

/* --- replies ------------------------------------------------------------------- */

static int64_t reply_int(const redisReply *rep)
{
	if (rep->type == REDIS_REPLY_INTEGER)
		return (int64_t)rep->integer;
	if (rep->type == REDIS_REPLY_STRING)
		return strtoll(rep->str, NULL, 10);
	return 0;
}

static char *reply_str(const redisReply *rep)
{
	if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
		return xstrndup(rep->str, (size_t)rep->len);
	if (rep->type == REDIS_REPLY_INTEGER)
		return xasprintf("%lld", (long long)rep->integer);
	return xstrdup("");
}

static void cmd_reply_cb(redisAsyncContext *ac, void *reply_, void *privdata)
{
	struct mem_req *r = privdata;
	const redisReply *rep = reply_;
	struct mem_store *ms = r->ms;
	struct rd_store *rs;

	if (ms == NULL) {
		/* orphaned by mem_store_free */
		mem_req_free(r);
		return;
	}
	rs = ms->impl;
	mem_enter(ms);
	if (rep == NULL) {
		const char *why = ac->err != 0                  ? ac->errstr
		                  : rs->abort_reason[0] != '\0' ? rs->abort_reason
		                                                : "connection lost";
		req_error(r, "", why);
	} else if (rep->type == REDIS_REPLY_ERROR) {
		req_error(r, "", rep->str);
	} else {
		switch (r->op) {
		case MEM_OP_INCR:
		case MEM_OP_COUNT_GET:
			r->value = rep->type == REDIS_REPLY_NIL ? 0 : reply_int(rep);
			break;
		case MEM_OP_BAN_CHECK:
			if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
				r->banned = true;
				r->reason = reply_str(rep->element[0]);
				r->value = reply_int(rep->element[1]);
				if (r->value <= 0)
					r->value = 1;
			}
			break;
		case MEM_OP_BAN_LIST:
			if (rep->type == REDIS_REPLY_ARRAY) {
				r->bans = xcalloc(rep->elements + 1, sizeof(*r->bans));
				for (size_t i = 0; i < rep->elements; i++) {
					const redisReply *e = rep->element[i];
					struct mem_ban *b;
					if (e->type != REDIS_REPLY_ARRAY || e->elements != 3)
						continue;
					b = &r->bans[r->nbans++];
					b->what = reply_str(e->element[0]);
					b->ttl_ms = reply_int(e->element[1]);
					b->reason = reply_str(e->element[2]);
				}
			}
			break;
		case MEM_OP_PING:
			if (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "PONG") != 0)
				req_error(r, "unexpected PING answer", NULL);
			break;
		default:
			break;
		}
	}
	mem_req_finish(r);
	mem_leave(ms);
}

/* --- scripts ----------------------------------------------------------------------- */

/* KEYS[1] counter; ARGV[1] window ms.  PTTL < 0 also repairs a key that
 * lost its expiry (it cannot, being set in the same script, but a counter
 * without expiry would ban forever). */
static const char lua_incr[] = "local v = redis.call('INCR', KEYS[1]) "
                               "if redis.call('PTTL', KEYS[1]) < 0 then "
                               "  redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
                               "return v";

/* KEYS[1] ban key, KEYS[2] index; ARGV what, ttl ms, reason, channel */
static const char lua_ban_set[] =
        "local t = redis.call('TIME') "
        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
        "redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2]) "
        "redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1]) "
        "redis.call('PUBLISH', ARGV[4], 'add ' .. ARGV[1]) "
        "return 1";

static const char lua_ban_check[] = "local r = redis.call('GET', KEYS[1]) "
                                    "if not r then return nil end "
                                    "return {r, redis.call('PTTL', KEYS[1])}";

/* KEYS[1] index; ARGV[1] ban key prefix */
static const char lua_ban_list[] =
        "local t = redis.call('TIME') "
        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
        "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
        "local out = {} "
        "for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do "
        "  local k = ARGV[1] .. m "
        "  local r = redis.call('GET', k) "
        "  if r then table.insert(out, {m, redis.call('PTTL', k), r}) "
        "  else redis.call('ZREM', KEYS[1], m) end "
        "end "
        "return out";

/* KEYS[1] ban key, KEYS[2] index; ARGV what, channel */
static const char lua_ban_remove[] = "redis.call('DEL', KEYS[1]) "
                                     "redis.call('ZREM', KEYS[2], ARGV[1]) "
                                     "redis.call('PUBLISH', ARGV[2], 'del ' .. ARGV[1]) "
                                     "return 1";

static void rd_start(struct mem_store *ms, struct mem_req *r)
{
	struct rd_store *rs = ms->impl;
	const char *pfx = ms->cfg->prefix != NULL ? ms->cfg->prefix : "";
	const char *argv[12];
	size_t lens[12];
	int argc = 0;
	char *k1 = NULL, *k2 = NULL, *a1 = NULL, *a2 = NULL, ttl[32];

	if (rs->cmd.ac == NULL && rs->cmd.resolving) {
		/* hiredis would queue it until connected: so do we, until the
		 * lookup ends (wait_flush) */
		rs->waiting = xreallocarray(rs->waiting, rs->nwaiting + 1, sizeof(*rs->waiting));
		rs->waiting[rs->nwaiting++] = r;
		return;
	}
	if (rs->cmd.ac == NULL) {
		req_error(r, "", rs->cmd.last_err[0] != '\0' ? rs->cmd.last_err : "not connected");
		mem_req_finish(r);
		return;
	}
#define ARG(s, n)                                                                                  \
	do {                                                                                       \
		argv[argc] = (s);                                                                  \
		lens[argc++] = (n);                                                                \
	} while (0)
#define ARGS(s) ARG((s), strlen(s))
	switch (r->op) {
	case MEM_OP_INCR:
		k1 = xasprintf("%scnt:%s", pfx, r->key);
		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)r->ms_arg);
		ARGS("EVAL");
		ARGS(lua_incr);
		ARGS("1");
		ARGS(k1);
		ARGS(ttl);
		break;
	case MEM_OP_COUNT_GET:
		k1 = xasprintf("%scnt:%s", pfx, r->key);
		ARGS("GET");
		ARGS(k1);
		break;
	case MEM_OP_COUNT_RESET:
		k1 = xasprintf("%scnt:%s", pfx, r->key);
		ARGS("DEL");
		ARGS(k1);
		break;
	case MEM_OP_BAN_SET:
		k1 = xasprintf("%sban:%s", pfx, r->key);
		k2 = xasprintf("%sbans", pfx);
		a1 = xasprintf("%s%s", pfx, MEM_CHANNEL_BANS);
		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)r->ms_arg);
		ARGS("EVAL");
		ARGS(lua_ban_set);
		ARGS("2");
		ARGS(k1);
		ARGS(k2);
		ARGS(r->key);
		ARGS(ttl);
		ARG(r->text, r->textlen);
		break;
	case MEM_OP_BAN_CHECK:
		k1 = xasprintf("%sban:%s", pfx, r->key);
		ARGS("EVAL");
		ARGS(lua_ban_check);
		ARGS("1");
		ARGS(k1);
		break;
	case MEM_OP_BAN_LIST:
		k1 = xasprintf("%sbans", pfx);
		a2 = xasprintf("%sban:", pfx);
		ARGS("EVAL");
		ARGS(lua_ban_list);
		ARGS("1");
		ARGS(k1);
		ARGS(a2);
		break;
	case MEM_OP_BAN_REMOVE:
		k1 = xasprintf("%sban:%s", pfx, r->key);
		k2 = xasprintf("%sbans", pfx);
		a1 = xasprintf("%s%s", pfx, MEM_CHANNEL_BANS);
		ARGS("EVAL");
		ARGS(lua_ban_remove);
		ARGS("2");
		ARGS(k1);
		ARGS(k2);
		ARGS(r->key);
		break;
	case MEM_OP_PUBLISH:
		k1 = xasprintf("%s%s", pfx, r->key);
		ARGS("PUBLISH");
		ARGS(k1);
		ARG(r->text, r->textlen);
		break;
	case MEM_OP_PING:
		ARGS("PING");
		break;
	}
	if (a1 != NULL)
		ARGS(a1); /* the channel comes last for ban set/remove */
#undef ARG
#undef ARGS
	ASSERT(argc <= (int)ARRAY_SIZE(argv));
	if (redisAsyncCommandArgv(rs->cmd.ac, cmd_reply_cb, r, argc, argv, lens) != REDIS_OK) {
		req_error(r, "cannot send command", NULL);
		mem_req_finish(r);
	}
	free(k1);
	free(k2);
	free(a1);
	free(a2);
}

/* --- subscriptions -------------------------------------------------------------- */

static void sub_reply_cb(redisAsyncContext *ac, void *reply_, void *privdata)
{
	struct rd_chan *ch = privdata;
	const redisReply *rep = reply_;
	struct rd_store *rs = ch->rs;
	const char *pfx;
	size_t plen;

	if (rep == NULL) {
		/* the connection is going away */
		if (ch->registered == ac)
			ch->registered = NULL;
		if (ch->confirmed == ac)
			ch->confirmed = NULL;
		if (rs == NULL) {
			free(ch->name);
			free(ch);
		}
		return;
	}
	if (rs != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
	    rep->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(rep->element[0]->str, "subscribe") == 0 && ch->registered == ac) {
		/* from here on every message on the channel reaches us */
		ch->confirmed = ac;
		return;
	}
	if (rs == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(rep->element[0]->str, "message") != 0 ||
	    rep->element[2]->type != REDIS_REPLY_STRING)
		return;
	pfx = rs->ms->cfg->prefix != NULL ? rs->ms->cfg->prefix : "";
	plen = strlen(pfx);
	if (rep->element[1]->type != REDIS_REPLY_STRING || (size_t)rep->element[1]->len < plen ||
	    strncmp(rep->element[1]->str, pfx, plen) != 0)
		return;
	mem_deliver(rs->ms, rep->element[1]->str + plen, rep->element[2]->str,
	            (size_t)rep->element[2]->len);
}

static void chan_register(struct rd_store *rs, struct rd_chan *ch)
{
	const char *pfx = rs->ms->cfg->prefix != NULL ? rs->ms->cfg->prefix : "";
	char *full;
	const char *argv[2];
	size_t lens[2];

	if (rs->sub.ac == NULL || ch->registered == rs->sub.ac)
		return;
	full = xasprintf("%s%s", pfx, ch->name);
	argv[0] = "SUBSCRIBE";
	lens[0] = 9;
	argv[1] = full;
	lens[1] = strlen(full);
	if (redisAsyncCommandArgv(rs->sub.ac, sub_reply_cb, ch, 2, argv, lens) == REDIS_OK)
		ch->registered = rs->sub.ac;
	free(full);
}

static void rd_subscribe(struct mem_store *ms, const char *channel)
{
	struct rd_store *rs = ms->impl;
	struct rd_chan *ch;

	for (ch = rs->chans; ch != NULL; ch = ch->next)
		if (strcmp(ch->name, channel) == 0)
			break;
	if (ch == NULL) {
		ch = xcalloc(1, sizeof(*ch));
		ch->rs = rs;
		ch->name = xstrdup(channel);
		ch->next = rs->chans;
		rs->chans = ch;
	}
	chan_register(rs, ch);
}

static bool rd_sub_live(const struct mem_store *ms, struct mem_sub *s, uint64_t *epoch_r)
{
	const struct rd_store *rs = ms->impl;
	struct rd_chan *ch = s->impl;

	*epoch_r = rs->sub_epoch;
	if (rs->sub.ac == NULL || !rs->sub.connected)
		return false;
	/* a channel lives as long as the store (never unsubscribed): look
	 * it up once per subscriber */
	if (ch == NULL) {
		for (ch = rs->chans; ch != NULL; ch = ch->next)
			if (strcmp(ch->name, s->channel) == 0)
				break;
		s->impl = ch;
	}
	return ch != NULL && ch->confirmed == rs->sub.ac;
}

/* --- connections ------------------------------------------------------------------- */

static void rd_start(struct mem_store *ms, struct mem_req *r);

/* The command connection exists now (or failed): hand over, or fail, the
 * commands that waited for its lookup, in order. */
static void wait_flush(struct rd_store *rs)
{
	struct mem_req **v = rs->waiting;
	size_t n = rs->nwaiting;

	rs->waiting = NULL;
	rs->nwaiting = 0;
	for (size_t i = 0; i < n; i++)
		rd_start(rs->ms, v[i]);
	free(v);
}

static void schedule_retry(struct rd_conn *c)
{
	ev_timer_stop(c->rs->ms->loop, &c->retry);
	ev_timer_set(&c->retry, c->backoff_ms / 1000.0, 0.);
	ev_timer_start(c->rs->ms->loop, &c->retry);
	c->backoff_ms *= 2;
	if (c->backoff_ms > RD_BACKOFF_MAX_MS)
		c->backoff_ms = RD_BACKOFF_MAX_MS;
}

static void conn_lost(struct rd_conn *c, const char *why)
{
	struct mem_store *ms = c->rs->ms;

	if (why != NULL && why[0] != '\0')
		snprintf(c->last_err, sizeof(c->last_err), "%s", why);
	if (c->connected || !c->failed)
		log_warn("msg=\"memory store connection %s\" store=redis endpoint=%s conn=%s "
		         "reason=\"%s\"",
		         c->connected ? "lost" : "failed", ms->endpoint,
		         c->kind == RD_CMD ? "command" : "subscribe", c->last_err);
	if (c->connected)
		c->backoff_ms = RD_BACKOFF_MIN_MS;
	else if (c->rs->dns && !c->resolving && c->rs->addrs_fresh &&
	         ++c->rs->next_addr >= c->rs->addrs.naddrs)
		c->rs->addrs_fresh = false; /* every address failed: look again */
	c->connected = false;
	c->resolving = false;
	c->failed = true;
	c->ac = NULL;
	ev_timer_stop(ms->loop, &c->connect_timer);
	ms->st.reconnects++;
	schedule_retry(c);
	if (c->kind == RD_CMD && c->rs->nwaiting > 0)
		wait_flush(c->rs); /* they fail with last_err */
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rd_conn *c = ac->data;
	struct rd_store *rs;

	if (c == NULL)
		return;
	rs = c->rs;
	mem_enter(rs->ms);
	if (status != REDIS_OK) {
		/* hiredis frees ac after we return */
		conn_lost(c, ac->errstr);
	} else {
		ev_timer_stop(rs->ms->loop, &c->connect_timer);
		if (c->failed)
			log_info("msg=\"memory store connection restored\" store=redis endpoint=%s "
			         "conn=%s",
			         rs->ms->endpoint, c->kind == RD_CMD ? "command" : "subscribe");
		c->connected = true;
		c->failed = false;
		c->backoff_ms = RD_BACKOFF_MIN_MS;
		c->last_err[0] = '\0';
	}
	mem_leave(rs->ms);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rd_conn *c = ac->data;

	if (c == NULL || c->ac != ac)
		return;
	mem_enter(c->rs->ms);
	conn_lost(c, status == REDIS_OK ? "disconnected" : ac->errstr);
	mem_leave(c->rs->ms);
}

static void auth_reply_cb(redisAsyncContext *ac, void *reply_, void *privdata)
{
	const redisReply *rep = reply_;
	struct rd_conn *c = privdata;

	(void)ac;
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && c->ac != NULL && ac->data == c) {
		/* wrong password or db: every later command fails with the server's
		 * reason; keep it for requests made while we reconnect */
		snprintf(c->last_err, sizeof(c->last_err), "%s", rep->str);
		log_warn("msg=\"memory store setup failed\" store=redis endpoint=%s reason=\"%s\"",
		         c->rs->ms->endpoint, rep->str);
	}
}

static void conn_abort(struct rd_conn *c, const char *why)
{
	redisAsyncContext *ac = c->ac;
	struct rd_store *rs = c->rs;

	if (ac == NULL)
		return;
	snprintf(rs->abort_reason, sizeof(rs->abort_reason), "%s", why);
	c->ac = NULL;
	/* on_disconnect must not act: we handle the loss here */
	ac->data = NULL;
	redisAsyncFree(ac);
	rs->abort_reason[0] = '\0';
	conn_lost(c, why);
}

static void connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rd_conn *c = container_of(w, struct rd_conn, connect_timer);
	struct mem_store *ms = c->rs->ms;
	char why[64];

	(void)loop;
	(void)revents;
	if (c->connected)
		return;
	snprintf(why, sizeof(why), "%s timeout after %llu ms",
	         c->resolving ? "host name lookup" : "connect",
	         (unsigned long long)ms->cfg->timeout_ms);
	mem_enter(ms);
	if (c->resolving)
		conn_lost(c, why); /* the lookup goes on; its result is kept */
	else
		conn_abort(c, why);
	mem_leave(ms);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rd_conn *c = container_of(w, struct rd_conn, retry);
	struct mem_store *ms = c->rs->ms;

	(void)loop;
	(void)revents;
	mem_enter(ms);
	conn_start(c);
	mem_leave(ms);
}

static void on_resolved(void *arg, const char *host, const struct resolve_result *res)
{
	struct rd_store *rs = arg;
	struct mem_store *ms = rs->ms;
	struct rd_conn *conns[2] = {&rs->cmd, &rs->sub};
	char why[300];

	rs->rq = NULL;
	rs->addrs = *res;
	rs->next_addr = 0;
	rs->addrs_fresh = res->error == 0;
	rs->resolved_at = ev_now(ms->loop);
	if (res->error != 0)
		snprintf(why, sizeof(why), "could not resolve host '%s': %s", host,
		         res->why != NULL ? res->why : "no address");
	else
		log_debug("msg=\"memory store host name resolved\" store=redis endpoint=%s "
		          "host=%s addrs=%zu first=%s",
		          ms->endpoint, host, res->naddrs, res->addrs[0]);
	mem_enter(ms);
	for (int i = 0; i < 2 && !ms->dying; i++) {
		if (!conns[i]->resolving)
			continue;
		if (res->error != 0) {
			conn_lost(conns[i], why);
		} else {
			conns[i]->resolving = false;
			conn_start(conns[i]);
		}
	}
	mem_leave(ms);
}

static void conn_start(struct rd_conn *c)
{
	struct rd_store *rs = c->rs;
	struct mem_store *ms = rs->ms;
	redisAsyncContext *ac;
	const char *addr = rs->host;

	if (rs->dns) {
		if (!rs->addrs_fresh || ev_now(ms->loop) - rs->resolved_at >= RD_DNS_TTL_S) {
			/* the connect timer bounds the lookup too */
			c->resolving = true;
			ev_timer_set(&c->connect_timer, (double)ms->cfg->timeout_ms / 1000.0, 0.);
			ev_timer_start(ms->loop, &c->connect_timer);
			if (rs->rq == NULL) {
				if (rs->resolver == NULL)
					rs->resolver = resolver_new(ms->loop);
				rs->rq = resolve_start(rs->resolver, rs->host, on_resolved, rs);
			}
			return;
		}
		addr = rs->addrs.addrs[rs->next_addr % rs->addrs.naddrs];
	}
	ac = redisAsyncConnect(addr, rs->port);
	if (ac == NULL || ac->err != 0) {
		char why[200];
		snprintf(why, sizeof(why), "%s", ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		conn_lost(c, why);
		return;
	}
	ac->data = c;
	c->ac = ac;
	redisLibevAttach(ms->loop, ac);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* queued by hiredis until connected, answered in order before ours */
	if (rs->password != NULL) {
		const char *argv[2] = {"AUTH", rs->password};
		size_t lens[2] = {4, strlen(rs->password)};
		redisAsyncCommandArgv(ac, auth_reply_cb, c, 2, argv, lens);
	}
	if (c->kind == RD_CMD && rs->db != 0) {
		char db[16];
		const char *argv[2] = {"SELECT", db};
		size_t lens[2];
		snprintf(db, sizeof(db), "%d", rs->db);
		lens[0] = 6;
		lens[1] = strlen(db);
		redisAsyncCommandArgv(ac, auth_reply_cb, c, 2, argv, lens);
	}
	ev_timer_set(&c->connect_timer, (double)ms->cfg->timeout_ms / 1000.0, 0.);
	ev_timer_start(ms->loop, &c->connect_timer);
	if (c->kind == RD_SUB) {
		rs->sub_epoch++;
		for (struct rd_chan *ch = rs->chans; ch != NULL; ch = ch->next)
			chan_register(rs, ch);
	}
	if (c->kind == RD_CMD && rs->nwaiting > 0)
		wait_flush(rs); /* after AUTH and SELECT, in their order */
}

/* A command waiting longer than the timeout means a hung server. */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rd_store *rs = container_of(w, struct rd_store, tick);
	struct mem_store *ms = rs->ms;
	double limit = (double)ms->cfg->timeout_ms / 1000.0;
	ev_tstamp now = ev_now(loop);

	(void)revents;
	if (rs->cmd.ac == NULL || !rs->cmd.connected)
		return;
	for (struct mem_req *r = ms->reqs; r != NULL; r = r->next) {
		if (r->started && now - r->start > limit) {
			char why[64];
			snprintf(why, sizeof(why), "command timeout after %llu ms",
			         (unsigned long long)ms->cfg->timeout_ms);
			mem_enter(ms);
			conn_abort(&rs->cmd, why);
			mem_leave(ms);
			return;
		}
	}
}

static bool rd_healthy(const struct mem_store *ms)
{
	const struct rd_store *rs = ms->impl;

	return rs->cmd.connected || (rs->cmd.ac != NULL && !rs->cmd.failed);
}

static void rd_free(struct mem_store *ms)
{
	struct rd_store *rs = ms->impl;
	struct rd_conn *conns[2] = {&rs->cmd, &rs->sub};

	/* first: waits for a lookup in flight, then no callback comes */
	resolver_free(&rs->resolver);
	/* commands that waited for it: orphaned by mem.c, ours to free */
	for (size_t i = 0; i < rs->nwaiting; i++)
		mem_req_free(rs->waiting[i]);
	free(rs->waiting);
	ev_ref(ms->loop);
	ev_timer_stop(ms->loop, &rs->tick);
	/* channels still registered are freed by their NULL callback */
	for (struct rd_chan *ch = rs->chans, *next; ch != NULL; ch = next) {
		next = ch->next;
		ch->rs = NULL;
		if (ch->registered == NULL) {
			free(ch->name);
			free(ch);
		}
	}
	for (int i = 0; i < 2; i++) {
		struct rd_conn *c = conns[i];
		ev_timer_stop(ms->loop, &c->connect_timer);
		ev_timer_stop(ms->loop, &c->retry);
		if (c->ac != NULL) {
			redisAsyncContext *ac = c->ac;
			c->ac = NULL;
			ac->data = NULL;
			redisAsyncFree(ac);
		}
	}
	if (rs->password != NULL) {
		OPENSSL_cleanse(rs->password, strlen(rs->password));
		free(rs->password);
	}
	free(rs);
	ms->impl = NULL;
}

const struct mem_ops mem_redis_ops = {
        .kind = "redis",
        .start = rd_start,
        .subscribe = rd_subscribe,
        .sub_live = rd_sub_live,
        .healthy = rd_healthy,
        .free = rd_free,
};

int mem_redis_init(struct mem_store *ms, const char **errstr_r)
{
	struct rd_store *rs = xcalloc(1, sizeof(*rs));
	struct rd_conn *conns[2] = {&rs->cmd, &rs->sub};

	if (stores_redis_url_parse(ms->cfg->redis, rs->host, sizeof(rs->host), &rs->port, &rs->db,
	                           &rs->password, errstr_r) < 0) {
		free(rs);
		return -1;
	}
	if (ms->cfg->password != NULL) {
		if (rs->password != NULL)
			OPENSSL_cleanse(rs->password, strlen(rs->password));
		free(rs->password);
		rs->password = xstrdup(ms->cfg->password);
	}
	stores_endpoint_redact(ms->cfg->redis, ms->endpoint, sizeof(ms->endpoint));
	rs->dns = resolve_needed(rs->host);
	rs->ms = ms;
	ms->impl = rs;
	rs->cmd.kind = RD_CMD;
	rs->sub.kind = RD_SUB;
	for (int i = 0; i < 2; i++) {
		conns[i]->rs = rs;
		conns[i]->backoff_ms = RD_BACKOFF_MIN_MS;
		ev_timer_init(&conns[i]->connect_timer, connect_timeout_cb, 0., 0.);
		ev_timer_init(&conns[i]->retry, retry_cb, 0., 0.);
	}
	ev_timer_init(&rs->tick, tick_cb, RD_TICK_S, RD_TICK_S);
	ev_timer_start(ms->loop, &rs->tick);
	ev_unref(ms->loop);
	conn_start(&rs->cmd);
	conn_start(&rs->sub);
	return 0;
}
