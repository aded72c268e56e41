/*
 * mailbox/server/proxy.h -- per-listener PROXY trust, as a pure gate.
 *
 * DESIGN.md: "PROXY trust is per listener, never global."  A listener
 * either has no PROXY settings (plain) or names its trusted networks.
 *
 *   peer trusted    -> a v1 or v2 header is mandatory, within the header
 *                      timeout (enforced by the server glue) and the size
 *                      cap; anything else drops the connection.
 *   peer untrusted  -> its bytes are never parsed as a header.  With
 *                      untrusted: refuse it is dropped at accept; with
 *                      untrusted: direct it is served as the client itself.
 *   plain listener  -> every peer is served directly.
 *
 * A directly served peer whose first bytes look like a PROXY header is
 * dropped as a spoof: only a misconfigured or hostile peer sends one.
 * A v2 LOCAL header (health checks) or v1 UNKNOWN keeps the socket peer as
 * the address and marks the connection as "no client".
 *
 * No I/O, no clock, no logging: the glue feeds bytes and acts on verdicts.
 */
#ifndef MAILBOX_SERVER_PROXY_H
#define MAILBOX_SERVER_PROXY_H

#include "shared/net.h"
#include "shared/pp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum proxy_untrusted {
	PROXY_UNTRUSTED_REFUSE = 0,
	PROXY_UNTRUSTED_DIRECT,
};

struct proxy_policy {
	bool enabled;                /* false: plain listener */
	struct net_cidr_set trusted; /* peers whose header we parse */
	enum proxy_untrusted untrusted;
	size_t max_header; /* total header cap (v2); v1 is 107 */
};

enum proxy_verdict {
	PROXY_V_NEED_MORE = 0, /* keep reading (trusted peer, header incomplete) */
	PROXY_V_SERVE,         /* serve the connection; see proxy_gate fields */
	PROXY_V_REFUSE,        /* untrusted peer on a refuse listener */
	PROXY_V_SPOOF,         /* a direct peer sent a PROXY header */
	PROXY_V_BAD_HEADER,    /* a trusted peer sent a malformed header */
};

enum proxy_state {
	PROXY_S_ACCEPTED = 0,
	PROXY_S_WAIT_HEADER,  /* trusted peer: header required */
	PROXY_S_DIRECT_CHECK, /* direct peer: first bytes checked for a spoof */
	PROXY_S_DONE,
};

struct proxy_gate {
	enum proxy_state state;
	struct net_addr peer;   /* the socket peer */
	struct net_addr client; /* the client: proxied source, or the peer */
	struct net_addr local;  /* proxied destination, if any */
	bool via_proxy;         /* client came from a PROXY header */
	bool no_client;         /* v2 LOCAL / v1 UNKNOWN: a health check */
	bool peer_trusted;
	uint8_t pp_version;
	enum pp_status pp_status; /* the decoder's status for BAD_HEADER */
};

/*
 * Start the gate for a new connection from peer.  Returns PROXY_V_REFUSE
 * for an untrusted peer on a refuse listener, PROXY_V_NEED_MORE when a
 * header is required (the glue must not speak first and must arm the
 * header timeout), or PROXY_V_SERVE when the connection is served directly
 * (the glue may send its greeting; the first client bytes still go through
 * proxy_gate_input for the spoof check).
 */
enum proxy_verdict proxy_gate_start(struct proxy_gate *g, const struct proxy_policy *pol,
                                    const struct net_addr *peer);

/*
 * Feed the bytes received so far (from the start of the stream, or the
 * unconsumed rest).  *consumed_r is set to the number of header bytes to
 * drop from the front; the rest belongs to the protocol.  Once the gate
 * returned PROXY_V_SERVE after a header or after the direct check, it is
 * done and returns PROXY_V_SERVE with nothing consumed.
 */
enum proxy_verdict proxy_gate_input(struct proxy_gate *g, const struct proxy_policy *pol,
                                    const uint8_t *buf, size_t len, size_t *consumed_r);

/* True once no more input needs to pass through the gate. */
bool proxy_gate_done(const struct proxy_gate *g);

/* Stable token for logs and metrics: "refused", "spoof", "bad_header", ... */
const char *proxy_verdict_name(enum proxy_verdict v);

void proxy_policy_free(struct proxy_policy *pol);

#endif
