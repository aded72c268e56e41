/*
 * Unit tests for the per-listener PROXY trust gate (mailbox/server/proxy.c):
 * the trust matrix of DESIGN.md, each header also fed split at every offset.
 */
#include "tests/unit/unit.h"
#include "mailbox/server/proxy.h"
#include "shared/pp.h"

#include <stdlib.h>

static void policy(struct proxy_policy *p, bool enabled, const char *cidr, enum proxy_untrusted u)
{
	const char *err = NULL;
	memset(p, 0, sizeof(*p));
	net_cidr_set_init(&p->trusted);
	p->enabled = enabled;
	p->untrusted = u;
	p->max_header = 512;
	if (cidr != NULL && net_cidr_set_add_str(&p->trusted, cidr, &err) != 0)
		abort();
}

static struct net_addr addr(const char *ip, uint16_t port)
{
	struct net_addr a;
	if (net_addr_parse(ip, port, &a) != 0)
		abort();
	return a;
}

static size_t v2_header(uint8_t *out, size_t outsz, const char *src, const char *dst, bool local)
{
	struct net_addr s, d;
	struct pp_encode e = {.local = local};
	if (!local) {
		s = addr(src, 40000);
		d = addr(dst, 25);
		e.src = &s;
		e.dst = &d;
	}
	return pp_encode_v2(out, outsz, &e);
}

UNIT_TEST(proxy_plain_listener_serves_directly)
{
	struct proxy_policy p;
	struct proxy_gate g;
	struct net_addr peer = addr("100.64.0.1", 5555);
	size_t used;
	char ip[NET_ADDRSTRLEN];

	policy(&p, false, NULL, PROXY_UNTRUSTED_REFUSE);
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_SERVE);
	CHECK_INT(proxy_gate_input(&g, &p, (const uint8_t *)"EHLO x\r\n", 8, &used), PROXY_V_SERVE);
	CHECK_INT(used, 0);
	CHECK(proxy_gate_done(&g));
	CHECK_STR(net_addr_ip_str(&g.client, ip, sizeof(ip)), "100.64.0.1");
	CHECK(!g.via_proxy);
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_trusted_header_every_split)
{
	struct proxy_policy p;
	uint8_t msg[256];
	size_t hl = v2_header(msg, sizeof(msg), "203.0.113.7", "100.64.0.2", false);
	struct net_addr peer = addr("100.64.0.1", 5555);
	char ip[NET_ADDRSTRLEN];

	CHECK(hl > 0);
	memcpy(msg + hl, "EHLO", 4);
	policy(&p, true, "100.64.0.1/32", PROXY_UNTRUSTED_REFUSE);
	for (size_t cut = 0; cut <= hl + 4; cut++) {
		struct proxy_gate g;
		size_t used = 99;
		CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_NEED_MORE);
		enum proxy_verdict v = proxy_gate_input(&g, &p, msg, cut, &used);
		if (cut < hl) {
			CHECK_MSG(v == PROXY_V_NEED_MORE, "cut %zu: verdict %d", cut, v);
			v = proxy_gate_input(&g, &p, msg, hl + 4, &used);
		}
		CHECK_INT(v, PROXY_V_SERVE);
		CHECK_INT(used, hl);
		CHECK(g.via_proxy);
		CHECK(!g.no_client);
		CHECK_STR(net_addr_ip_str(&g.client, ip, sizeof(ip)), "203.0.113.7");
		CHECK_STR(net_addr_ip_str(&g.peer, ip, sizeof(ip)), "100.64.0.1");
	}
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_trusted_local_is_no_client)
{
	struct proxy_policy p;
	struct proxy_gate g;
	uint8_t msg[64];
	size_t used, hl = v2_header(msg, sizeof(msg), NULL, NULL, true);
	struct net_addr peer = addr("100.64.0.1", 5555);
	char ip[NET_ADDRSTRLEN];

	policy(&p, true, "100.64.0.0/10", PROXY_UNTRUSTED_REFUSE);
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_NEED_MORE);
	CHECK_INT(proxy_gate_input(&g, &p, msg, hl, &used), PROXY_V_SERVE);
	CHECK_INT(used, hl);
	CHECK(g.no_client);
	CHECK(!g.via_proxy);
	CHECK_STR(net_addr_ip_str(&g.client, ip, sizeof(ip)), "100.64.0.1");
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_trusted_without_header_is_bad)
{
	struct proxy_policy p;
	struct proxy_gate g;
	size_t used;
	struct net_addr peer = addr("100.64.0.1", 5555);

	policy(&p, true, "100.64.0.1", PROXY_UNTRUSTED_REFUSE);
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_NEED_MORE);
	CHECK_INT(proxy_gate_input(&g, &p, (const uint8_t *)"EHLO x\r\n", 8, &used),
	          PROXY_V_BAD_HEADER);
	CHECK_INT(g.pp_status, PP_ERR_SIGNATURE);
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_trusted_malformed_v1_is_bad)
{
	struct proxy_policy p;
	struct proxy_gate g;
	size_t used;
	struct net_addr peer = addr("::1", 5555);
	const char *bad = "PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n";

	policy(&p, true, "::1/128", PROXY_UNTRUSTED_REFUSE);
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_NEED_MORE);
	CHECK_INT(proxy_gate_input(&g, &p, (const uint8_t *)bad, strlen(bad), &used),
	          PROXY_V_BAD_HEADER);
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_untrusted_refused)
{
	struct proxy_policy p;
	struct proxy_gate g;
	struct net_addr peer = addr("198.51.100.9", 5555);

	policy(&p, true, "100.64.0.1/32", PROXY_UNTRUSTED_REFUSE);
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_REFUSE);
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_untrusted_direct_spoof_dropped)
{
	struct proxy_policy p;
	uint8_t msg[256];
	size_t hl = v2_header(msg, sizeof(msg), "203.0.113.7", "100.64.0.2", false);
	struct net_addr peer = addr("198.51.100.9", 5555);
	const char *v1 = "PROXY TCP4 203.0.113.7 100.64.0.2 1234 25\r\n";

	policy(&p, true, "100.64.0.1/32", PROXY_UNTRUSTED_DIRECT);
	for (size_t cut = 1; cut <= hl; cut++) {
		struct proxy_gate g;
		size_t used;
		CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_SERVE);
		enum proxy_verdict v = proxy_gate_input(&g, &p, msg, cut, &used);
		if (cut < 12)
			CHECK_MSG(v == PROXY_V_NEED_MORE, "v2 cut %zu: %d", cut, v);
		else
			CHECK_MSG(v == PROXY_V_SPOOF, "v2 cut %zu: %d", cut, v);
		CHECK_INT(used, 0);
	}
	for (size_t cut = 1; cut <= strlen(v1); cut++) {
		struct proxy_gate g;
		size_t used;
		CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_SERVE);
		enum proxy_verdict v = proxy_gate_input(&g, &p, (const uint8_t *)v1, cut, &used);
		CHECK_MSG(v == (cut < 6 ? PROXY_V_NEED_MORE : PROXY_V_SPOOF), "v1 cut %zu: %d", cut,
		          v);
	}
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_untrusted_direct_served_as_itself)
{
	struct proxy_policy p;
	struct proxy_gate g;
	size_t used;
	struct net_addr peer = addr("198.51.100.9", 5555);
	char ip[NET_ADDRSTRLEN];

	policy(&p, true, "100.64.0.1/32", PROXY_UNTRUSTED_DIRECT);
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_SERVE);
	CHECK_INT(proxy_gate_input(&g, &p, (const uint8_t *)"PING", 4, &used), PROXY_V_SERVE);
	CHECK(proxy_gate_done(&g));
	CHECK_STR(net_addr_ip_str(&g.client, ip, sizeof(ip)), "198.51.100.9");
	CHECK(!g.via_proxy);
	proxy_policy_free(&p);
}

UNIT_TEST(proxy_header_over_cap_is_bad)
{
	struct proxy_policy p;
	struct proxy_gate g;
	uint8_t msg[1024];
	size_t used;
	struct net_addr s = addr("203.0.113.7", 1), d = addr("100.64.0.2", 25);
	uint8_t uid[128];
	memset(uid, 'u', sizeof(uid));
	struct pp_encode e = {.src = &s,
	                      .dst = &d,
	                      .unique_id = uid,
	                      .unique_id_len = 128,
	                      .authority = "mail.example.org"};
	size_t hl = pp_encode_v2(msg, sizeof(msg), &e);
	struct net_addr peer = addr("100.64.0.1", 5555);

	CHECK(hl > 64);
	policy(&p, true, "100.64.0.1/32", PROXY_UNTRUSTED_REFUSE);
	p.max_header = 64;
	CHECK_INT(proxy_gate_start(&g, &p, &peer), PROXY_V_NEED_MORE);
	CHECK_INT(proxy_gate_input(&g, &p, msg, hl, &used), PROXY_V_BAD_HEADER);
	CHECK_INT(g.pp_status, PP_ERR_TOO_BIG);
	proxy_policy_free(&p);
}
