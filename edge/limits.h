/*
 * edge/limits.h -- per-source caps: concurrent connections and a token
 * bucket on the connect rate.
 *
 * SO_REUSEPORT spreads one client's connections over every worker, so the
 * table is shared by all workers of a listener (one mutex, held for a hash
 * lookup).  It lives in the listener's persistent state, so a reload keeps
 * the counts of connections that are already established.  Entries go away
 * once a source has no connection and a full bucket (edge_limits_sweep).
 */
#ifndef EDGE_LIMITS_H
#define EDGE_LIMITS_H

#include "shared/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token bucket in thousandths of a token, refilled lazily on use. */
struct edge_bucket {
	int64_t milli;    /* tokens * 1000 */
	uint64_t last_ms; /* time of the last refill */
};

/* A full bucket (burst tokens) at now_ms. */
void edge_bucket_init(struct edge_bucket *b, int64_t burst, uint64_t now_ms);
/*
 * Refill at rate tokens per second up to burst, then take one token if
 * there is one.  True if taken.  Time going backwards refills nothing.
 */
bool edge_bucket_take(struct edge_bucket *b, int64_t rate, int64_t burst, uint64_t now_ms);
/* True if the bucket would be full at now_ms (so its state can be dropped). */
bool edge_bucket_full(const struct edge_bucket *b, int64_t rate, int64_t burst, uint64_t now_ms);

enum edge_limit_result {
	EDGE_LIMIT_OK = 0,
	EDGE_LIMIT_CONNECTIONS, /* per-source concurrent cap reached */
	EDGE_LIMIT_RATE,        /* bucket empty */
};

struct edge_limits;

struct edge_limits *edge_limits_new(void);
/* Free the table; NULL is fine; *t becomes NULL. */
void edge_limits_free(struct edge_limits **t);

/*
 * Admit one new connection from src: below max_conc concurrent (0: no cap)
 * and a token from a bucket of rate/s and burst (rate 0: no bucket).  On
 * EDGE_LIMIT_OK the source's count is raised and the caller must call
 * edge_limits_release() exactly once when the connection ends.  Thread-safe.
 */
enum edge_limit_result edge_limits_acquire(struct edge_limits *t, const struct net_addr *src,
                                           int64_t max_conc, int64_t rate, int64_t burst,
                                           uint64_t now_ms);
/* Lower src's count (after an EDGE_LIMIT_OK acquire).  Thread-safe. */
void edge_limits_release(struct edge_limits *t, const struct net_addr *src);
/* Drop entries with no connection and a bucket full again.  Thread-safe. */
void edge_limits_sweep(struct edge_limits *t, int64_t rate, int64_t burst, uint64_t now_ms);
/* Number of sources tracked, and the concurrent count of one (tests, metrics). */
size_t edge_limits_size(struct edge_limits *t);
int64_t edge_limits_count(struct edge_limits *t, const struct net_addr *src);

const char *edge_limit_result_name(enum edge_limit_result r);

#endif
