/*
 * edge/metrics.h -- counters and their Prometheus text rendering.
 *
 * Counters live in each listener's persistent state (edge/listener.h), so
 * they survive reloads, and are relaxed atomics bumped by every worker:
 * one uncontended add per event, read by the admin endpoint without a
 * lock.  The text format is Prometheus exposition format 0.0.4.
 */
#ifndef EDGE_METRICS_H
#define EDGE_METRICS_H

#include "shared/buf.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Why a connection was not forwarded (also the log's reason=). */
enum edge_refuse {
	EDGE_REFUSE_DENY = 0,           /* allow/deny lists */
	EDGE_REFUSE_MAX_CONNECTIONS,    /* listener max_connections */
	EDGE_REFUSE_SOURCE_CONNECTIONS, /* per_source_max_connections */
	EDGE_REFUSE_SOURCE_RATE,        /* per_source_rate */
	EDGE_REFUSE_NO_UPSTREAM,        /* every upstream marked down */
	EDGE_REFUSE_UNREACHABLE,        /* every attempt failed in the budget */
	EDGE_REFUSE_CLIENT_GONE,        /* client left before the upstream answered */
	EDGE_REFUSE_RESOURCES,          /* out of fds or memory */
	EDGE_REFUSE__N,
};

/* How a forwarded connection ended. */
enum edge_close {
	EDGE_CLOSE_EOF = 0,      /* both sides closed cleanly */
	EDGE_CLOSE_CLIENT_RESET, /* client reset or vanished */
	EDGE_CLOSE_UPSTREAM_RESET,
	EDGE_CLOSE_CLIENT_ERROR, /* another socket error on the client side */
	EDGE_CLOSE_UPSTREAM_ERROR,
	EDGE_CLOSE_IDLE,     /* idle_timeout */
	EDGE_CLOSE_SHUTDOWN, /* still open when the grace period ended */
	EDGE_CLOSE__N,
};

struct edge_lmetrics {
	atomic_uint_fast64_t accepted;  /* accept(2)ed */
	atomic_uint_fast64_t forwarded; /* connected to an upstream, header sent */
	atomic_uint_fast64_t refused[EDGE_REFUSE__N];
	atomic_uint_fast64_t closed[EDGE_CLOSE__N];
	atomic_uint_fast64_t bytes_c2u, bytes_u2c;
	atomic_uint_fast64_t connect_failures;
	atomic_uint_fast64_t sni_found, sni_absent;
};

static inline void edge_count(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t edge_counter(const atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Stable tokens for logs and metric labels ("per_source_rate", "eof"). */
const char *edge_refuse_name(enum edge_refuse r);
const char *edge_close_name(enum edge_close c);

/* Process-wide numbers the renderer prints besides the listeners. */
struct edge_process_stats {
	uint64_t reloads_ok, reloads_failed;
	uint64_t generation;
	int workers;
	bool draining;
	int64_t worker_conns; /* sum over workers */
};

struct edge_gen;

/* Append the whole /metrics page for gen (the current generation). */
void edge_metrics_render(struct buf *out, const struct edge_gen *gen,
                         const struct edge_process_stats *ps);

#endif
