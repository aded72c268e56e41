/*
 * mailbox/server/metrics.h -- the daemon's counters and their Prometheus
 * text rendering (GET /metrics on an http listener).
 *
 * Counters live for the whole process and are keyed by listener name, so
 * they stay monotonic across SIGHUP reloads (a listener that is removed
 * and added back continues its series).  Everything runs on the one loop:
 * plain integers, no atomics.  The number of listeners and of reasons is
 * bounded by the config and by fixed tables, so label cardinality is too.
 *
 * Exposition format: Prometheus "text-based format" 0.0.4 (one HELP and
 * TYPE per family, label values escaped).
 */
#ifndef MAILBOX_SERVER_METRICS_H
#define MAILBOX_SERVER_METRICS_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stdint.h>

struct pg_pool;
struct blob_store;
struct mem_store;
struct outbound_queue;

/* PROXY gate outcomes that drop a connection, as metric label values:
 * our own reasons, then one per decoder error (pp_status_name). */
#define METRICS_PROXY_REASONS 16

/* Why an SMTP RCPT was refused (label values in metrics.c). */
enum metrics_rcpt_reason {
	METRICS_RCPT_UNKNOWN,      /* 550 5.1.1 */
	METRICS_RCPT_RELAY_DENIED, /* 554 5.7.1 */
	METRICS_RCPT_TOO_MANY,     /* 452 4.5.3 */
	METRICS_RCPT_UTF8,         /* 553 5.6.7 */
	METRICS_RCPT_SYNTAX,       /* 501 5.1.3 */
	METRICS_RCPT_TEMPFAIL,     /* 451 4.3.0: lookup failed */
	METRICS_RCPT_FULL,         /* 552 5.2.2: over quota */
	METRICS_RCPT_REASONS,
};

/* SMTP counters of a listener, filled by mailbox/smtp/server.c. */
struct metrics_smtp {
	bool enabled;              /* the listener has (had) an SMTP role */
	uint64_t sessions;         /* sessions that reached the greeting */
	uint64_t messages_ok;      /* answered 250 after the commit */
	uint64_t messages_failed;  /* answered 451: spool or store failure */
	uint64_t messages_too_big; /* 552 at MAIL (SIZE) or while receiving */
	uint64_t message_bytes;    /* stored bytes of the accepted messages */
	uint64_t rcpt_ok;
	uint64_t rcpt_refused[METRICS_RCPT_REASONS];
	uint64_t replies[6]; /* by code / 100 (index 2..5 used) */
	uint64_t auth_ok, auth_failed, auth_tempfail;
};

struct metrics_listener {
	char name[64];
	uint64_t accepted;
	uint64_t active;          /* gauge */
	uint64_t rejected_full;   /* max_connections reached */
	uint64_t rejected_banned; /* client banned at accept */
	uint64_t tls_failures;    /* handshakes that failed */
	uint64_t tls_handshakes;  /* handshakes that succeeded (implicit and STARTTLS) */
	uint64_t auth_failures;   /* reported by the protocols */
	uint64_t proxy_errors[METRICS_PROXY_REASONS];
	struct metrics_smtp smtp;
};

/* The counters of listener name, created on first use.  Never NULL; the
 * pointer stays valid for the life of the process. */
struct metrics_listener *metrics_listener(const char *name);

/* Count one dropped connection for reason: "timeout", "refused_untrusted",
 * "spoof", "closed" (peer left before the header ended), or a
 * pp_status_name() token for a malformed header. */
void metrics_proxy_error(struct metrics_listener *m, const char *reason);

/* Process-wide counters. */
void metrics_ban(void);                 /* a ban was set by this instance */
void metrics_http_response(int status); /* admin API / health responses */
/* One blob collection run (mailbox/server/gc_timer.c) ended, ok or not. */
void metrics_blob_gc(bool ok, uint64_t deleted, uint64_t failed, uint64_t bytes, double seconds);

/* Append the whole exposition to out; store pointers may be NULL, and so
 * may outq (then the outbound families are left out).  The IMAP body
 * cache counters come from imap_server_cache_stats() (process-wide). */
void metrics_render(struct buf *out, struct pg_pool *pg, struct blob_store *blob,
                    struct mem_store *mem, const struct outbound_queue *outq);

/* Free the registry (end of process; for leak checkers). */
void metrics_free(void);

#endif
