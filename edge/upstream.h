/*
 * edge/upstream.h -- a listener's upstreams: addresses, health, balancing.
 *
 * A pool is built per configuration generation from the listener's
 * `upstreams`: IP literals as they are, host names resolved (all A and
 * AAAA records, each one a separate upstream tried in turn, so a dead
 * IPv6 path never blocks IPv4).  Health state and counters carry over
 * from the previous generation's pool for the same address, so a reload
 * neither resurrects a dead upstream nor resets metrics.
 *
 * Workers only read: the `up` flag and the round-robin cursor are atomics.
 * Health checks run on the main loop: per upstream, every interval, a
 * non-blocking connect that must complete within the timeout and accept
 * the header a real connection would get, as a LOCAL one (PROXY v2 LOCAL,
 * v1 "PROXY UNKNOWN"), so the mailbox never counts a probe as a client;
 * then a half-close and a short drain so the server sees a clean close.
 * `rise` good probes in a row mark an upstream up, `fall` bad ones down.
 */
#ifndef EDGE_UPSTREAM_H
#define EDGE_UPSTREAM_H

#include "edge/config.h"
#include "shared/net.h"

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct edge_pool;

struct edge_upstream {
	struct net_addr addr;
	char name[NET_ADDRSTRLEN]; /* "ip:port" for logs and labels */
	char *origin;              /* the configured "host:port" (owned) */
	atomic_bool up;
	atomic_uint_fast64_t connects, failures; /* forwarded / failed attempts */
	/* health check state: main thread only */
	struct edge_pool *pool;
	int ok_streak, fail_streak;
	int check_fd;
	int check_phase; /* 0 idle, 1 connecting, 2 draining */
	ev_io check_io;
	ev_timer check_timer; /* next probe */
	ev_timer check_tmo;   /* deadline of the probe in flight */
	uint64_t checks_ok, checks_failed;
	char last_error[64];
};

struct edge_pool {
	struct edge_upstream *v; /* owned array */
	size_t n;
	int balance; /* enum edge_balance */
	atomic_uint rr;
	struct edge_health_conf health;
	int proxy_protocol;   /* what a probe sends */
	char *listener;       /* name, for logs (owned) */
	struct ev_loop *loop; /* checks run here when started */
	bool checking;
};

/*
 * Build the pool for listener conf lc, taking health state and counters
 * from prev (may be NULL) for addresses it also has.  Resolves host names
 * with getaddrinfo (blocking: call from the main thread at start or
 * reload).  Returns NULL with *errmsg_r (owned by the caller) if a name
 * does not resolve or yields no address.
 */
struct edge_pool *edge_pool_new(const struct edge_listener_conf *lc, const struct edge_pool *prev,
                                char **errmsg_r);
/* Stop checks and free; NULL is fine; *p becomes NULL.  Main thread. */
void edge_pool_free(struct edge_pool **p);

/* Start / stop the health checks on loop (main thread). */
void edge_pool_checks_start(struct edge_pool *p, struct ev_loop *loop);
void edge_pool_checks_stop(struct edge_pool *p);

/* True if at least one upstream is marked up. */
bool edge_pool_any_up(const struct edge_pool *p);
/* Where a new connection starts its walk: the round-robin cursor, or 0
 * for first-available. */
size_t edge_pool_start(struct edge_pool *p);
/*
 * The next upstream to try for a connection that started at start and has
 * made *tried attempts (0 at first): the first one marked up at or after
 * position start + *tried, in ring order.  Advances *tried past it.  NULL
 * when the ring is exhausted.
 */
struct edge_upstream *edge_pool_next(struct edge_pool *p, size_t start, size_t *tried);

#endif
