/*
 * mailbox/server/proxy.c -- the PROXY trust gate (see proxy.h).
 *
 * The gate is deliberately tiny: a state, the socket peer, and the result.
 * It never buffers; the glue keeps the bytes and passes them again on
 * PROXY_V_NEED_MORE, which is cheap because a header is at most a few
 * hundred bytes and the decoder is linear.
 */
#include "mailbox/server/proxy.h"

#include <string.h>

enum proxy_verdict proxy_gate_start(struct proxy_gate *g, const struct proxy_policy *pol,
                                    const struct net_addr *peer)
{
	memset(g, 0, sizeof(*g));
	g->peer = *peer;
	g->client = *peer;
	if (!pol->enabled) {
		g->state = PROXY_S_DIRECT_CHECK;
		return PROXY_V_SERVE;
	}
	g->peer_trusted = net_cidr_set_contains(&pol->trusted, peer);
	if (g->peer_trusted) {
		g->state = PROXY_S_WAIT_HEADER;
		return PROXY_V_NEED_MORE;
	}
	if (pol->untrusted == PROXY_UNTRUSTED_REFUSE) {
		g->state = PROXY_S_DONE;
		return PROXY_V_REFUSE;
	}
	g->state = PROXY_S_DIRECT_CHECK;
	return PROXY_V_SERVE;
}

static enum proxy_verdict gate_header(struct proxy_gate *g, const struct proxy_policy *pol,
                                      const uint8_t *buf, size_t len, size_t *consumed_r)
{
	struct pp_info info;
	size_t used = 0;
	enum pp_status st;

	st = pp_decode(buf, len, pol->max_header, &info, &used);
	if (st == PP_NEED_MORE)
		return PROXY_V_NEED_MORE;
	g->state = PROXY_S_DONE;
	if (st != PP_OK) {
		g->pp_status = st;
		return PROXY_V_BAD_HEADER;
	}
	*consumed_r = used;
	g->via_proxy = true;
	g->pp_version = info.version;
	/* Only IP sources name a client; LOCAL, UNKNOWN, AF_UNIX and UNSPEC
	 * keep the socket peer and count as no client (health checks). */
	if (info.local || (info.family != AF_INET && info.family != AF_INET6)) {
		g->no_client = true;
		g->via_proxy = false;
		return PROXY_V_SERVE;
	}
	g->client = info.src;
	g->local = info.dst;
	return PROXY_V_SERVE;
}

enum proxy_verdict proxy_gate_input(struct proxy_gate *g, const struct proxy_policy *pol,
                                    const uint8_t *buf, size_t len, size_t *consumed_r)
{
	*consumed_r = 0;
	switch (g->state) {
	case PROXY_S_WAIT_HEADER:
		return gate_header(g, pol, buf, len, consumed_r);
	case PROXY_S_DIRECT_CHECK:
		if (len == 0)
			return PROXY_V_SERVE;
		/* Compare only the signature prefix: the bytes of an
		 * untrusted peer are never decoded as a header. */
		if (pp_looks_like_header(buf, len)) {
			/* A prefix of a signature is not yet proof ("P" may
			 * start a bogus command): wait for the whole v1
			 * "PROXY " or the 12-byte v2 signature. */
			size_t full = buf[0] == 'P' ? 6 : 12;
			if (len < full)
				return PROXY_V_NEED_MORE;
			g->state = PROXY_S_DONE;
			return PROXY_V_SPOOF;
		}
		g->state = PROXY_S_DONE;
		return PROXY_V_SERVE;
	case PROXY_S_ACCEPTED:
	case PROXY_S_DONE:
		break;
	}
	return PROXY_V_SERVE;
}

bool proxy_gate_done(const struct proxy_gate *g)
{
	return g->state == PROXY_S_DONE;
}

const char *proxy_verdict_name(enum proxy_verdict v)
{
	switch (v) {
	case PROXY_V_NEED_MORE:
		return "need_more";
	case PROXY_V_SERVE:
		return "serve";
	case PROXY_V_REFUSE:
		return "refused_untrusted";
	case PROXY_V_SPOOF:
		return "spoof";
	case PROXY_V_BAD_HEADER:
		return "bad_header";
	}
	return "unknown";
}

void proxy_policy_free(struct proxy_policy *pol)
{
	net_cidr_set_free(&pol->trusted);
}
