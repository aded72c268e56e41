/*
 * mailbox/outbound/resolve.h -- MX and address lookups for outbound mail:
 * c-ares driven by libev.
 *
 * c-ares tells us which sockets it wants watched (its socket state
 * callback becomes one ev_io per socket) and when it next needs attention
 * (ares_timeout() drives one ev_timer); answers are parsed with c-ares' own
 * parsers (ares_parse_mx_reply, ares_parse_a_reply, ares_parse_aaaa_reply).
 *
 * Outcomes are classified for the queue (RFC 5321 5.1, RFC 7505):
 *   - NXDOMAIN and a null MX ("0 .") are permanent: the domain takes no
 *     mail;
 *   - a domain without MX records is its own mail host (implicit MX);
 *   - SERVFAIL, REFUSED, timeouts, unreachable servers and malformed
 *     answers are temporary.
 * For addresses: the hosts file first (/etc/hosts: "localhost", local
 * names), then DNS: a host with AAAA and/or A records resolves (AAAA first);
 * one whose lookups all failed permanently (NXDOMAIN, no records) is a
 * permanent failure, otherwise temporary.
 *
 * Callbacks never run from inside outbound_resolve_*() (an immediate
 * answer -- an IP literal, a c-ares error -- is delivered on the next loop
 * iteration).  They may start new queries; they must not free the
 * resolver.
 */
#ifndef MAILBOX_OUTBOUND_RESOLVE_H
#define MAILBOX_OUTBOUND_RESOLVE_H

#include "shared/conf.h"
#include "shared/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;

enum resolve_status {
	RESOLVE_OK = 0,
	RESOLVE_TEMP, /* try again later */
	RESOLVE_PERM, /* the name takes no mail */
};

struct resolve_mx {
	char *host; /* lower-case, no trailing dot */
	unsigned pref;
};

struct resolve_mx_result {
	enum resolve_status status;
	const char *error; /* why, when not OK: "NXDOMAIN", "null MX (RFC 7505)", ... */
	bool implicit;     /* no MX records: hosts[0] is the domain itself */
	const struct resolve_mx *hosts; /* by preference, shuffled among equals */
	size_t n;
};

struct resolve_addr_result {
	enum resolve_status status;
	const char *error;
	const struct net_addr *addrs; /* AAAA first, then A, each with the port */
	size_t n;
};

typedef void resolve_mx_cb(void *arg, const struct resolve_mx_result *res);
typedef void resolve_addr_cb(void *arg, const struct resolve_addr_result *res);

struct outbound_resolver;
struct resolve_query;

/*
 * A resolver on loop.  servers: "IP" or "IP:port" / "[v6]:port" strings
 * (config syntax), or NULL/empty for /etc/resolv.conf.  timeout_ms per
 * try (0: 2000), with 2 tries per server.  NULL with *errstr_r.
 */
struct outbound_resolver *outbound_resolver_new(struct ev_loop *loop,
                                                const struct conf_strlist *servers,
                                                unsigned timeout_ms, const char **errstr_r);
/* Pending queries are dropped without callbacks. */
void outbound_resolver_free(struct outbound_resolver **r);

/* The MX hosts of domain (result valid during the callback only). */
struct resolve_query *outbound_resolve_mx(struct outbound_resolver *r, const char *domain,
                                          resolve_mx_cb *cb, void *arg);
/* The AAAA and A addresses of host, with port; an IP literal is returned
 * as it is. */
struct resolve_query *outbound_resolve_addrs(struct outbound_resolver *r, const char *host,
                                             uint16_t port, resolve_addr_cb *cb, void *arg);
/* The callback never runs; *q set to NULL (NULL is fine). */
void outbound_resolve_cancel(struct resolve_query **q);

/* Pure parts, for tests. */

/* Sort by preference, shuffling each run of equal preferences with rnd
 * (returns a value in [0, bound)); rnd NULL: random(3). */
void resolve_mx_sort(struct resolve_mx *v, size_t n, uint32_t (*rnd)(void *arg, uint32_t bound),
                     void *arg);
/* The class of a c-ares status for an MX or address query. */
enum resolve_status resolve_ares_class(int ares_status);

#endif
