/*
 * mailbox/server/abuse.c -- ban checks and auth-failure counting (see
 * abuse.h).
 *
 * Requests to the memory store complete later, possibly after the
 * connection that caused them closed, so each owns a small record with a
 * copy of the address; records are on one list so that shutdown can
 * cancel and free them before the store goes away.
 */
#include "mailbox/server/abuse.h"

#include "mailbox/server/metrics.h"
#include "mailbox/server/server.h"
#include "mailbox/store/mem.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum abuse_kind {
	AK_CHECK,
	AK_COUNT,
	AK_BAN,
};

struct abuse_req {
	struct abuse_req *next, **pprev;
	enum abuse_kind kind;
	struct server *server;
	struct mem_req *mr;
	char ip[NET_ADDRSTRLEN];
	const char *what; /* AK_COUNT: "auth failures" or "refused recipients" */
	abuse_check_cb *cb;
	void *arg;
};

static struct abuse_req *pending;

static struct abuse_req *req_new(struct server *s, enum abuse_kind kind,
                                 const struct net_addr *client)
{
	struct abuse_req *r = xcalloc(1, sizeof(*r));

	r->kind = kind;
	r->server = s;
	net_addr_ip_str(client, r->ip, sizeof(r->ip));
	r->next = pending;
	if (pending != NULL)
		pending->pprev = &r->next;
	r->pprev = &pending;
	pending = r;
	return r;
}

static void req_free(struct abuse_req *r)
{
	*r->pprev = r->next;
	if (r->next != NULL)
		r->next->pprev = r->pprev;
	mem_req_cancel(&r->mr);
	free(r);
}

bool abuse_exempt(const struct server *s, const struct net_addr *client, bool no_client)
{
	const struct mailbox_config *cfg = server_config(s);

	if (no_client || net_addr_is_loopback(client))
		return true;
	if (net_cidr_set_contains(&cfg->abuse.allowlist, client))
		return true;
	for (size_t i = 0; i < cfg->listeners.n; i++) {
		const struct mailbox_listener_conf *l = mailbox_config_listener(cfg, i);
		if (l->proxy_present && net_cidr_set_contains(&l->proxy.trusted, client))
			return true;
	}
	return false;
}

static void on_ban_checked(void *arg, bool banned, int64_t ttl_ms, const char *reason,
                           const char *errstr)
{
	struct abuse_req *r = arg;
	abuse_check_cb *cb = r->cb;
	void *cbarg = r->arg;

	r->mr = NULL;
	if (errstr != NULL) {
		/* fail open: see abuse.h */
		log_warn("msg=\"ban check failed; letting the client in\" client=%s error=\"%s\"",
		         r->ip, errstr);
		banned = false;
	}
	(void)ttl_ms;
	req_free(r);
	cb(cbarg, banned, reason != NULL && reason[0] != '\0' ? reason : "banned");
}

struct abuse_req *abuse_check(struct server *s, const struct net_addr *client, bool no_client,
                              abuse_check_cb *cb, void *arg)
{
	struct abuse_req *r;
	struct mem_store *ms = server_mem(s);

	if (ms == NULL || abuse_exempt(s, client, no_client))
		return NULL;
	r = req_new(s, AK_CHECK, client);
	r->cb = cb;
	r->arg = arg;
	r->mr = mem_ban_check(ms, r->ip, on_ban_checked, r);
	return r;
}

void abuse_req_cancel(struct abuse_req **rp)
{
	if (*rp != NULL)
		req_free(*rp);
	*rp = NULL;
}

static void on_banned(void *arg, const char *errstr)
{
	struct abuse_req *r = arg;

	r->mr = NULL;
	if (errstr != NULL)
		log_error("msg=\"could not set a ban\" client=%s error=\"%s\"", r->ip, errstr);
	req_free(r);
}

static void on_counted(void *arg, int64_t value, const char *errstr)
{
	struct abuse_req *r = arg;
	const struct mailbox_config *cfg = server_config(r->server);
	struct mem_store *ms = server_mem(r->server);
	int64_t limit;
	bool auth = strcmp(r->what, "auth failures") == 0;

	r->mr = NULL;
	if (errstr != NULL) {
		log_warn("msg=\"%s not counted\" client=%s error=\"%s\"", r->what, r->ip, errstr);
		req_free(r);
		return;
	}
	/* the threshold of the running config (it may have been reloaded) */
	limit = auth ? cfg->abuse.auth_failures : cfg->abuse.rcpt_failures;
	if (limit > 0 && value >= limit) {
		struct abuse_req *b;
		struct net_addr a;

		log_warn("msg=\"client banned\" client=%s %s=%" PRId64 " ban_s=%" PRIu64, r->ip,
		         auth ? "auth_failures" : "rcpt_failures", value, cfg->abuse.ban_ms / 1000);
		metrics_ban();
		if (net_addr_parse(r->ip, 0, &a) == 0) {
			b = req_new(r->server, AK_BAN, &a);
			b->mr = mem_ban_set(ms, b->ip, cfg->abuse.ban_ms, r->what, on_banned, b);
		}
	}
	req_free(r);
}

void abuse_auth_failed(struct server *s, const char *listener, const struct net_addr *client,
                       bool no_client)
{
	struct mem_store *ms = server_mem(s);
	const struct mailbox_config *cfg = server_config(s);
	struct abuse_req *r;
	char key[MEM_KEY_MAX];

	metrics_listener(listener)->auth_failures++;
	if (ms == NULL || abuse_exempt(s, client, no_client) || cfg->abuse.auth_failures == 0)
		return;
	r = req_new(s, AK_COUNT, client);
	r->what = "auth failures";
	snprintf(key, sizeof(key), "auth:%s", r->ip);
	r->mr = mem_incr(ms, key, cfg->abuse.window_ms, on_counted, r);
}

void abuse_rcpt_failed(struct server *s, const struct net_addr *client, bool no_client)
{
	struct mem_store *ms = server_mem(s);
	const struct mailbox_config *cfg = server_config(s);
	struct abuse_req *r;
	char key[MEM_KEY_MAX];

	if (ms == NULL || abuse_exempt(s, client, no_client) || cfg->abuse.rcpt_failures == 0)
		return;
	r = req_new(s, AK_COUNT, client);
	r->what = "refused recipients";
	/* its own counter: a sender with a few stale addresses should not
	 * inherit the budget of password guessing, nor the reverse */
	snprintf(key, sizeof(key), "rcpt:%s", r->ip);
	r->mr = mem_incr(ms, key, cfg->abuse.window_ms, on_counted, r);
}

void abuse_auth_ok(struct server *s, const struct net_addr *client, bool no_client)
{
	struct mem_store *ms = server_mem(s);
	char ip[NET_ADDRSTRLEN], key[MEM_KEY_MAX];

	if (ms == NULL || no_client)
		return;
	net_addr_ip_str(client, ip, sizeof(ip));
	snprintf(key, sizeof(key), "auth:%s", ip);
	mem_count_reset(ms, key, NULL, NULL);
}

void abuse_shutdown(void)
{
	while (pending != NULL)
		req_free(pending);
}
