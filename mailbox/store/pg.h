/*
 * mailbox/store/pg.h -- the data store: an asynchronous libpq pool on a
 * libev loop, plus blocking helpers for the CLI and start-up checks.
 *
 * A pool holds up to pool_size connections to one Postgres, opened
 * non-blocking (PQconnectStartParams + PQconnectPoll driven by an ev_io).
 * Each request is ONE statement sent with PQsendQueryParams (or, for
 * pg_query_prepared, PQsendQueryPrepared) in autocommit mode; work that must be atomic across rows
 * (UID/MODSEQ allocation, delivery into several mailboxes, queue claims) is a plpgsql function in
 * the schema (mailbox/store/schema.h), so one statement does it with row
 * locks and several daemons stay correct.  When every connection is busy
 * requests wait in a FIFO queue; a request that waited and ran longer than
 * query_timeout fails (its connection is then reset, since libpq cannot
 * abandon a running statement without PQcancel, which blocks).
 *
 * Failures: a broken connection is closed and reopened with exponential
 * backoff (250 ms doubling up to 10 s).  While no connection is up and the
 * last attempt failed the pool is "unhealthy" (/readyz) and new requests
 * fail at once (asynchronously) with "data store unavailable", so the
 * protocols answer 4xx instead of hanging.
 *
 * Callbacks always run from the loop, never from inside pg_query(), and
 * never after pg_req_cancel() or pg_pool_free().
 */
#ifndef MAILBOX_STORE_PG_H
#define MAILBOX_STORE_PG_H

#include "mailbox/store/config.h"

#include <ev.h>
#include <postgresql/libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct pg_pool;
struct pg_req;

/*
 * The outcome of one request.  errstr == NULL: success and res is a
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK result.  errstr != NULL: failure;
 * res is the server's error result (read PQresultErrorField(res,
 * PG_DIAG_SQLSTATE) for e.g. "23505" unique_violation) or NULL when the
 * request never got an answer (pool down, connection lost, timeout).
 * res and errstr belong to the pool and are freed when the callback
 * returns; the callback may issue new requests and may free the pool.
 */
typedef void pg_cb(void *arg, const PGresult *res, const char *errstr);

/*
 * A pool on loop for cfg (which must outlive the pool).  Starts opening
 * one connection at once and more on demand, up to cfg->pool_size.  Never
 * fails (an unreachable server shows as unhealthy); use pg_check() first
 * at start-up to fail loudly.
 */
struct pg_pool *pg_pool_new(struct ev_loop *loop, const struct stores_data_config *cfg);
/* Close every connection; pending requests are dropped without their
 * callbacks.  NULL-safe; sets *p to NULL. */
void pg_pool_free(struct pg_pool **p);

/*
 * Queue one statement with nparams text parameters ($1..$n; a NULL
 * element is SQL NULL).  sql and params are copied, so the caller's
 * strings may go away at once.  Returns a handle valid until the callback
 * has returned or pg_req_cancel() is called; a caller that does not need
 * to cancel may ignore it.
 */
struct pg_req *pg_query(struct pg_pool *p, const char *sql, int nparams, const char *const *params,
                        pg_cb *cb, void *arg);
/* Like pg_query with per-parameter lengths and formats (1 = binary, for
 * bytea); lengths/formats may be NULL (all text). */
struct pg_req *pg_query_bin(struct pg_pool *p, const char *sql, int nparams,
                            const char *const *params, const int *lengths, const int *formats,
                            pg_cb *cb, void *arg);
/*
 * Like pg_query, for a statement text run often: each connection prepares
 * it once (a named statement, so Postgres parses and plans it once and
 * may keep a generic plan) and executes it after that.  The text is the
 * key: use it for fixed texts (or few variants), never for text built
 * from input; past 64 texts per connection it runs unprepared.
 */
struct pg_req *pg_query_prepared(struct pg_pool *p, const char *sql, int nparams,
                                 const char *const *params, pg_cb *cb, void *arg);
/* Hand r the ownership of p (malloc'd): free(p) runs after r's callback
 * has returned, or when r is cancelled or dropped, whichever comes first.
 * For per-request context a callback needs; at most one per request. */
void pg_req_attach(struct pg_req *r, void *p);
/* Forget a request: its callback will never run.  A request already on
 * the wire still completes on the server (its result is discarded).
 * NULL-safe; sets *r to NULL.  Must not be called from r's own callback. */
void pg_req_cancel(struct pg_req **r);

/* True while at least one connection is up, or no attempt failed yet. */
bool pg_pool_healthy(const struct pg_pool *p);
/* The endpoint with the password removed, for logs and /readyz. */
const char *pg_pool_endpoint(const struct pg_pool *p);

struct pg_pool_stats {
	uint64_t queries;        /* requests completed (ok or not) */
	uint64_t errors;         /* requests that failed */
	uint64_t connects;       /* connections established */
	uint64_t connect_fails;  /* connection attempts that failed */
	uint64_t latency_us_sum; /* queue + run time of completed requests */
	/* completed requests by latency: <=1ms, 5, 10, 50, 100, 500, 1000, +Inf
	 * (cumulative, Prometheus histogram style) */
	uint64_t latency_le[8];
	unsigned conns_up, conns_busy, queued;
};
/* Bucket bounds of latency_le in milliseconds (the last is +Inf: 0). */
extern const unsigned pg_latency_buckets_ms[8];
void pg_pool_stats(const struct pg_pool *p, struct pg_pool_stats *out);

/* --- blocking helpers: CLI and start-up only, never on a running loop -- */

/*
 * Connect synchronously (connect_timeout from cfg), with the password from
 * cfg when set, and application_name "tailpost-mailbox".  Returns the
 * connection, or NULL with err filled as
 *   "data store postgres://tailpost@db:5432/tailpost: connection refused"
 * (the endpoint is redacted; the reason is libpq's first line, shortened
 * for the common cases).
 */
PGconn *pg_connect_blocking(const struct stores_data_config *cfg, char *err, size_t errsz);

/* Start-up check: connect, run SELECT 1, close.  0, or -1 with err as
 * for pg_connect_blocking. */
int pg_check(const struct stores_data_config *cfg, char *err, size_t errsz);

/*
 * Run one statement synchronously on c with text params.  Returns the
 * result (caller PQclear()s it) when it is TUPLES_OK or COMMAND_OK; else
 * NULL with err = the server's primary message, and *sqlstate_r (may be
 * NULL; a static or PGresult-independent copy: 6 bytes with NUL) filled
 * when the server gave one.
 */
PGresult *pg_exec(PGconn *c, const char *sql, int nparams, const char *const *params, char *err,
                  size_t errsz, char sqlstate_r[6]);

/* --- array parameters ---------------------------------------------------- */

/*
 * Postgres array literals, the text form of a text[] / bigint[] parameter
 * ("Arrays", 8.15.6 in the Postgres manual): "{" elements "," "}".  Every
 * text element is double-quoted with '"' and '\' backslash-escaped, so
 * empty strings, spaces, commas, braces, the word NULL and any UTF-8 come
 * through as they are; a NULL pointer is the unquoted NULL element.
 * Pure; the strings are malloc'd (free()).
 */
void pg_array_text_append(struct buf *out, const char *const *v, size_t n);
char *pg_array_text(const char *const *v, size_t n);
char *pg_array_int64(const int64_t *v, size_t n);
char *pg_array_uint32(const uint32_t *v, size_t n);

#endif
