/*
 * mailbox/server/metrics.c -- counters and the Prometheus exposition.
 *
 * The listener registry is a small array searched by name: a config has a
 * handful of listeners and lookups happen at reload and accept time only
 * (a connection keeps its pointer).  Proxy error reasons map to fixed
 * slots through one table, so an unexpected token lands in "other" rather
 * than growing the label set.
 */
#include "mailbox/server/metrics.h"

#include "mailbox/imap/blob_cache.h"
#include "mailbox/imap/server.h"
#include "mailbox/outbound/queue.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "shared/pp.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const proxy_reasons[METRICS_PROXY_REASONS] = {
        "timeout",   "refused_untrusted", "spoof",   "closed",
        "signature", "version",           "command", "family",
        "length",    "too_big",           "tlv",     "crc",
        "v1_syntax", "v1_address",        "other",   NULL,
};

static const char *const rcpt_reasons[METRICS_RCPT_REASONS] = {
        [METRICS_RCPT_UNKNOWN] = "unknown",   [METRICS_RCPT_RELAY_DENIED] = "relay_denied",
        [METRICS_RCPT_TOO_MANY] = "too_many", [METRICS_RCPT_UTF8] = "utf8",
        [METRICS_RCPT_SYNTAX] = "syntax",     [METRICS_RCPT_TEMPFAIL] = "tempfail",
        [METRICS_RCPT_FULL] = "mailbox_full",
};

static struct metrics_listener **listeners;
static size_t nlisteners;
static uint64_t bans_total;
static uint64_t http_by_class[6]; /* index status / 100 */
static struct {
	uint64_t runs_ok, runs_failed, deleted, failed, bytes;
	double seconds;
} blob_gc;

struct metrics_listener *metrics_listener(const char *name)
{
	struct metrics_listener *m;

	for (size_t i = 0; i < nlisteners; i++) {
		if (strcmp(listeners[i]->name, name) == 0)
			return listeners[i];
	}
	m = xcalloc(1, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	listeners = xreallocarray(listeners, nlisteners + 1, sizeof(*listeners));
	listeners[nlisteners++] = m;
	return m;
}

void metrics_proxy_error(struct metrics_listener *m, const char *reason)
{
	size_t other = 0;

	for (size_t i = 0; i < METRICS_PROXY_REASONS && proxy_reasons[i] != NULL; i++) {
		if (strcmp(proxy_reasons[i], reason) == 0) {
			m->proxy_errors[i]++;
			return;
		}
		if (strcmp(proxy_reasons[i], "other") == 0)
			other = i;
	}
	m->proxy_errors[other]++;
}

void metrics_ban(void)
{
	bans_total++;
}

void metrics_http_response(int status)
{
	if (status >= 100 && status < 600)
		http_by_class[status / 100]++;
}

void metrics_blob_gc(bool ok, uint64_t deleted, uint64_t failed, uint64_t bytes, double seconds)
{
	if (ok)
		blob_gc.runs_ok++;
	else
		blob_gc.runs_failed++;
	blob_gc.deleted += deleted;
	blob_gc.failed += failed;
	blob_gc.bytes += bytes;
	blob_gc.seconds += seconds;
}

static void family(struct buf *o, const char *name, const char *type, const char *help)
{
	buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per-listener counter: one line per listener. */
static void per_listener(struct buf *o, const char *name, const char *type, const char *help,
                         size_t off)
{
	family(o, name, type, help);
	for (size_t i = 0; i < nlisteners; i++) {
		const uint64_t *v =
		        (const uint64_t *)(const void *)((const char *)listeners[i] + off);
		buf_printf(o, "%s{listener=\"%s\"} %" PRIu64 "\n", name, listeners[i]->name, *v);
	}
}

/* The SMTP families, for the listeners with an SMTP role only. */
static void smtp_families(struct buf *o)
{
#define SOFF(f) offsetof(struct metrics_listener, smtp.f)
	static const struct {
		const char *name, *help;
		size_t off;
	} simple[] = {
	        {"tailpost_mailbox_smtp_sessions_total", "SMTP sessions greeted, per listener.",
	         SOFF(sessions)},
	        {"tailpost_mailbox_smtp_message_bytes_total",
	         "Bytes of the messages stored (with our added header fields).",
	         SOFF(message_bytes)},
	        {"tailpost_mailbox_smtp_recipients_accepted_total", "RCPT answered 250.",
	         SOFF(rcpt_ok)},
	};
	static const struct {
		const char *label;
		size_t off;
	} msgs[] =
	        {
	                {"accepted", SOFF(messages_ok)},
	                {"store_failed", SOFF(messages_failed)},
	                {"too_big", SOFF(messages_too_big)},
	        },
	  auth[] = {
	          {"success", SOFF(auth_ok)},
	          {"failure", SOFF(auth_failed)},
	          {"tempfail", SOFF(auth_tempfail)},
	  };
#undef SOFF
#define V(l, off) (*(const uint64_t *)(const void *)((const char *)(l) + (off)))

	for (size_t k = 0; k < ARRAY_SIZE(simple); k++) {
		family(o, simple[k].name, "counter", simple[k].help);
		for (size_t i = 0; i < nlisteners; i++)
			if (listeners[i]->smtp.enabled)
				buf_printf(o, "%s{listener=\"%s\"} %" PRIu64 "\n", simple[k].name,
				           listeners[i]->name, V(listeners[i], simple[k].off));
	}
	family(o, "tailpost_mailbox_smtp_messages_total", "counter",
	       "SMTP messages by outcome: accepted (250 after the commit), store_failed (451), "
	       "too_big (552).");
	for (size_t i = 0; i < nlisteners; i++)
		for (size_t k = 0; k < ARRAY_SIZE(msgs) && listeners[i]->smtp.enabled; k++)
			buf_printf(o,
			           "tailpost_mailbox_smtp_messages_total{listener=\"%s\","
			           "result=\"%s\"} %" PRIu64 "\n",
			           listeners[i]->name, msgs[k].label, V(listeners[i], msgs[k].off));
	family(o, "tailpost_mailbox_smtp_recipients_refused_total", "counter",
	       "RCPT refused, by reason.");
	for (size_t i = 0; i < nlisteners; i++)
		for (size_t r = 0; r < METRICS_RCPT_REASONS && listeners[i]->smtp.enabled; r++)
			buf_printf(o,
			           "tailpost_mailbox_smtp_recipients_refused_total{listener=\"%s\","
			           "reason=\"%s\"} %" PRIu64 "\n",
			           listeners[i]->name, rcpt_reasons[r],
			           listeners[i]->smtp.rcpt_refused[r]);
	family(o, "tailpost_mailbox_smtp_replies_total", "counter",
	       "SMTP replies sent, by class (a multi-line reply counts once).");
	for (size_t i = 0; i < nlisteners; i++)
		for (int c = 2; c <= 5 && listeners[i]->smtp.enabled; c++)
			buf_printf(o,
			           "tailpost_mailbox_smtp_replies_total{listener=\"%s\","
			           "class=\"%dxx\"} %" PRIu64 "\n",
			           listeners[i]->name, c, listeners[i]->smtp.replies[c]);
	family(o, "tailpost_mailbox_smtp_auth_total", "counter", "SMTP AUTH outcomes.");
	for (size_t i = 0; i < nlisteners; i++)
		for (size_t k = 0; k < ARRAY_SIZE(auth) && listeners[i]->smtp.enabled; k++)
			buf_printf(o,
			           "tailpost_mailbox_smtp_auth_total{listener=\"%s\","
			           "result=\"%s\"} %" PRIu64 "\n",
			           listeners[i]->name, auth[k].label, V(listeners[i], auth[k].off));
#undef V
}

struct store_row {
	const char *store, *kind;
	bool up;
	uint64_t requests, errors, lat_us;
};

/* One family across the stores: the format wants a family's samples
 * together under its TYPE line. */
static void store_family(struct buf *o, const struct store_row *rows, size_t n, int which)
{
	static const char *const names[] = {"tailpost_mailbox_store_up",
	                                    "tailpost_mailbox_store_requests_total",
	                                    "tailpost_mailbox_store_errors_total",
	                                    "tailpost_mailbox_store_latency_seconds_sum"};
	static const char *const types[] = {"gauge", "counter", "counter", "counter"};
	static const char *const helps[] = {
	        "1 if the store is reachable.", "Store requests completed.",
	        "Store requests that failed.", "Total time of completed store requests."};

	family(o, names[which], types[which], helps[which]);
	for (size_t i = 0; i < n; i++) {
		const struct store_row *r = &rows[i];
		switch (which) {
		case 0:
			buf_printf(o, "%s{store=\"%s\",kind=\"%s\"} %d\n", names[which], r->store,
			           r->kind, r->up ? 1 : 0);
			break;
		case 1:
			buf_printf(o, "%s{store=\"%s\"} %" PRIu64 "\n", names[which], r->store,
			           r->requests);
			break;
		case 2:
			buf_printf(o, "%s{store=\"%s\"} %" PRIu64 "\n", names[which], r->store,
			           r->errors);
			break;
		default:
			buf_printf(o, "%s{store=\"%s\"} %.6f\n", names[which], r->store,
			           (double)r->lat_us / 1e6);
			break;
		}
	}
}

/* One sample without labels under its own family. */
static void single(struct buf *o, const char *name, const char *type, const char *help, uint64_t v)
{
	family(o, name, type, help);
	buf_printf(o, "%s %" PRIu64 "\n", name, v);
}

/* The outbound queue engine and its SMTP transport (mailbox/outbound/). */
static void outbound_families(struct buf *o, const struct outbound_queue *q)
{
	static const char *const attempt_labels[OUTBOUND_ATTEMPT_RESULTS] = {
	        [OUTBOUND_ATTEMPT_DELIVERED] = "delivered",
	        [OUTBOUND_ATTEMPT_DEFERRED] = "deferred",
	        [OUTBOUND_ATTEMPT_BOUNCED] = "bounced",
	        [OUTBOUND_ATTEMPT_FAILED] = "failed",
	};
	struct outbound_queue_stats st;
	const struct outbound_transport_stats *tr = &st.transport;

	outbound_queue_stats(q, &st);
	family(o, "tailpost_mailbox_outbound_attempts_total", "counter",
	       "Delivery attempts per recipient, by result: delivered, deferred (retried "
	       "later), bounced (failed with a DSN to the sender), failed (no DSN wanted).");
	for (size_t i = 0; i < OUTBOUND_ATTEMPT_RESULTS; i++)
		buf_printf(o,
		           "tailpost_mailbox_outbound_attempts_total{result=\"%s\"} %" PRIu64 "\n",
		           attempt_labels[i], st.attempts[i]);
	single(o, "tailpost_mailbox_outbound_results_unrecorded_total", "counter",
	       "Attempt results not written (the lease had expired or the write failed): the "
	       "recipient is tried again.",
	       st.unrecorded);
	family(o, "tailpost_mailbox_outbound_dsn_total", "counter",
	       "DSNs (bounces and delay notices) for senders, by outcome: stored (delivered "
	       "locally or queued) or error (retried with the recipient).");
	buf_printf(o, "tailpost_mailbox_outbound_dsn_total{result=\"stored\"} %" PRIu64 "\n",
	           st.dsn_stored);
	buf_printf(o, "tailpost_mailbox_outbound_dsn_total{result=\"error\"} %" PRIu64 "\n",
	           st.dsn_failed);
	family(o, "tailpost_mailbox_outbound_claims_total", "counter",
	       "Claim queries of the delivery workers, by outcome.");
	buf_printf(o, "tailpost_mailbox_outbound_claims_total{result=\"ok\"} %" PRIu64 "\n",
	           st.claims);
	buf_printf(o, "tailpost_mailbox_outbound_claims_total{result=\"error\"} %" PRIu64 "\n",
	           st.claim_errors);
	single(o, "tailpost_mailbox_outbound_claimed_messages_total", "counter",
	       "Messages taken from the queue by this instance.", st.claimed_msgs);
	single(o, "tailpost_mailbox_outbound_claimed_recipients_total", "counter",
	       "Recipients leased by this instance.", st.claimed_rcpts);
	single(o, "tailpost_mailbox_outbound_in_flight", "gauge",
	       "Messages this instance is delivering now.", st.in_flight);
	if (st.depth_known) {
		single(o, "tailpost_mailbox_outbound_queue_messages", "gauge",
		       "Messages in the shared queue with work left (counted every 10 s).",
		       st.depth_msgs);
		single(o, "tailpost_mailbox_outbound_queue_recipients_pending", "gauge",
		       "Pending recipients in the shared queue (counted every 10 s).",
		       st.depth_rcpts);
		single(o, "tailpost_mailbox_outbound_queue_recipients_due", "gauge",
		       "Pending recipients whose next attempt is due (counted every 10 s).",
		       st.depth_due);
		single(o, "tailpost_mailbox_outbound_queue_recipients_leased", "gauge",
		       "Pending recipients under a live lease of any instance (counted every 10 "
		       "s).",
		       st.depth_leased);
		family(o, "tailpost_mailbox_outbound_queue_oldest_seconds", "gauge",
		       "Age of the oldest message in the queue (counted every 10 s).");
		buf_printf(o, "tailpost_mailbox_outbound_queue_oldest_seconds %.3f\n",
		           st.depth_oldest_s);
	}
	single(o, "tailpost_mailbox_outbound_connections_total", "counter",
	       "Outbound SMTP connections established.", tr->connections);
	single(o, "tailpost_mailbox_outbound_connection_reuses_total", "counter",
	       "Messages sent on an already used outbound connection.", tr->reused);
	single(o, "tailpost_mailbox_outbound_tls_sessions_total", "counter",
	       "Outbound TLS sessions established (implicit TLS and STARTTLS).", tr->tls);
	family(o, "tailpost_mailbox_outbound_transport_recipients_total", "counter",
	       "Recipient results of the SMTP transport: delivered, tempfail, permfail.");
	buf_printf(o,
	           "tailpost_mailbox_outbound_transport_recipients_total{result=\"delivered\"} "
	           "%" PRIu64 "\n",
	           tr->delivered);
	buf_printf(o,
	           "tailpost_mailbox_outbound_transport_recipients_total{result=\"tempfail\"} "
	           "%" PRIu64 "\n",
	           tr->tempfail);
	buf_printf(o,
	           "tailpost_mailbox_outbound_transport_recipients_total{result=\"permfail\"} "
	           "%" PRIu64 "\n",
	           tr->permfail);
	single(o, "tailpost_mailbox_outbound_sends_active", "gauge",
	       "Transport sends not yet finished (waiting for a connection or in the dialogue).",
	       tr->active);
}

/* The IMAP body cache (mailbox/imap/blob_cache.h), process-wide. */
static void imap_cache_families(struct buf *o)
{
	struct imap_blob_cache_stats st;

	imap_server_cache_stats(&st);
	family(o, "tailpost_mailbox_imap_body_cache_lookups_total", "counter",
	       "IMAP body cache lookups, by result.");
	buf_printf(o,
	           "tailpost_mailbox_imap_body_cache_lookups_total{result=\"hit\"} %" PRIu64 "\n",
	           st.hits);
	buf_printf(o,
	           "tailpost_mailbox_imap_body_cache_lookups_total{result=\"miss\"} %" PRIu64 "\n",
	           st.misses);
	single(o, "tailpost_mailbox_imap_body_cache_stores_total", "counter",
	       "Entries added to the IMAP body cache.", st.stores);
	single(o, "tailpost_mailbox_imap_body_cache_evictions_total", "counter",
	       "Entries dropped from the IMAP body cache to make room.", st.evicts);
	single(o, "tailpost_mailbox_imap_body_cache_bytes", "gauge",
	       "Message octets held by the IMAP body cache.", st.bytes);
	single(o, "tailpost_mailbox_imap_body_cache_entries", "gauge",
	       "Entries held by the IMAP body cache.", st.entries);
	single(o, "tailpost_mailbox_imap_body_cache_limit_bytes", "gauge",
	       "The IMAP body cache bound (imap.blob_cache_size; 0 before the first IMAP "
	       "connection).",
	       st.limit);
}

void metrics_render(struct buf *o, struct pg_pool *pg, struct blob_store *blob,
                    struct mem_store *mem, const struct outbound_queue *outq)
{
#define OFF(f) offsetof(struct metrics_listener, f)
	per_listener(o, "tailpost_mailbox_connections_total", "counter",
	             "Connections accepted, per listener.", OFF(accepted));
	per_listener(o, "tailpost_mailbox_connections_active", "gauge",
	             "Connections open now, per listener.", OFF(active));
	family(o, "tailpost_mailbox_connections_rejected_total", "counter",
	       "Connections closed at accept: listener full or client banned.");
	for (size_t i = 0; i < nlisteners; i++) {
		buf_printf(o,
		           "tailpost_mailbox_connections_rejected_total{listener=\"%s\","
		           "reason=\"max_connections\"} %" PRIu64 "\n",
		           listeners[i]->name, listeners[i]->rejected_full);
		buf_printf(o,
		           "tailpost_mailbox_connections_rejected_total{listener=\"%s\","
		           "reason=\"banned\"} %" PRIu64 "\n",
		           listeners[i]->name, listeners[i]->rejected_banned);
	}
	family(o, "tailpost_mailbox_proxy_header_errors_total", "counter",
	       "Connections dropped by the PROXY gate, by reason.");
	for (size_t i = 0; i < nlisteners; i++) {
		for (size_t r = 0; r < METRICS_PROXY_REASONS && proxy_reasons[r] != NULL; r++) {
			buf_printf(o,
			           "tailpost_mailbox_proxy_header_errors_total{listener=\"%s\","
			           "reason=\"%s\"} %" PRIu64 "\n",
			           listeners[i]->name, proxy_reasons[r],
			           listeners[i]->proxy_errors[r]);
		}
	}
	per_listener(o, "tailpost_mailbox_tls_handshakes_total", "counter",
	             "TLS handshakes that succeeded (implicit TLS and STARTTLS), per listener.",
	             OFF(tls_handshakes));
	per_listener(o, "tailpost_mailbox_tls_handshake_failures_total", "counter",
	             "TLS handshakes that failed, per listener.", OFF(tls_failures));
	per_listener(o, "tailpost_mailbox_auth_failures_total", "counter",
	             "Failed authentications, per listener.", OFF(auth_failures));
#undef OFF
	smtp_families(o);
	family(o, "tailpost_mailbox_bans_total", "counter", "Bans set by this instance.");
	buf_printf(o, "tailpost_mailbox_bans_total %" PRIu64 "\n", bans_total);
	family(o, "tailpost_mailbox_http_responses_total", "counter",
	       "Responses of the http listeners, by status class.");
	for (int c = 1; c <= 5; c++)
		buf_printf(o, "tailpost_mailbox_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n",
		           c, http_by_class[c]);

	if (outq != NULL)
		outbound_families(o, outq);
	imap_cache_families(o);

	family(o, "tailpost_mailbox_blob_gc_runs_total", "counter",
	       "Blob collection runs of this instance, by outcome.");
	buf_printf(o, "tailpost_mailbox_blob_gc_runs_total{result=\"ok\"} %" PRIu64 "\n",
	           blob_gc.runs_ok);
	buf_printf(o, "tailpost_mailbox_blob_gc_runs_total{result=\"error\"} %" PRIu64 "\n",
	           blob_gc.runs_failed);
	family(o, "tailpost_mailbox_blob_gc_deleted_total", "counter",
	       "Unreferenced blobs removed from the blob store.");
	buf_printf(o, "tailpost_mailbox_blob_gc_deleted_total %" PRIu64 "\n", blob_gc.deleted);
	family(o, "tailpost_mailbox_blob_gc_delete_failures_total", "counter",
	       "Unreferenced blobs the blob store would not delete (retried next run).");
	buf_printf(o, "tailpost_mailbox_blob_gc_delete_failures_total %" PRIu64 "\n",
	           blob_gc.failed);
	family(o, "tailpost_mailbox_blob_gc_deleted_bytes_total", "counter",
	       "Bytes of the blobs removed.");
	buf_printf(o, "tailpost_mailbox_blob_gc_deleted_bytes_total %" PRIu64 "\n", blob_gc.bytes);
	family(o, "tailpost_mailbox_blob_gc_seconds_total", "counter",
	       "Time spent collecting (on the collector thread).");
	buf_printf(o, "tailpost_mailbox_blob_gc_seconds_total %.6f\n", blob_gc.seconds);

	{
		struct store_row rows[3];
		size_t n = 0;

		if (pg != NULL) {
			struct pg_pool_stats st;
			pg_pool_stats(pg, &st);
			rows[n++] = (struct store_row){"data",     "postgres", pg_pool_healthy(pg),
			                               st.queries, st.errors,  st.latency_us_sum};
		}
		if (blob != NULL) {
			struct blob_stats st;
			blob_store_stats(blob, &st);
			rows[n++] = (struct store_row){"blob",
			                               blob_store_kind(blob),
			                               blob_store_healthy(blob),
			                               st.puts + st.gets + st.heads + st.deletes,
			                               st.errors,
			                               st.latency_us_sum};
		}
		if (mem != NULL) {
			struct mem_stats st;
			mem_store_stats(mem, &st);
			rows[n++] = (struct store_row){
			        "memory",    mem_store_kind(mem), mem_store_healthy(mem),
			        st.commands, st.errors,           st.latency_us_sum};
		}
		for (int w = 0; w < 4; w++)
			store_family(o, rows, n, w);
	}
	if (pg != NULL) {
		struct pg_pool_stats st;
		uint64_t count = 0;

		pg_pool_stats(pg, &st);
		family(o, "tailpost_mailbox_pg_latency_seconds", "histogram",
		       "Postgres request latency (queue and run).");
		for (size_t i = 0; i < 8; i++) {
			count = st.latency_le[i];
			if (pg_latency_buckets_ms[i] == 0)
				buf_printf(
				        o,
				        "tailpost_mailbox_pg_latency_seconds_bucket{le=\"+Inf\"} "
				        "%" PRIu64 "\n",
				        count);
			else
				buf_printf(o,
				           "tailpost_mailbox_pg_latency_seconds_bucket{le=\"%g\"} "
				           "%" PRIu64 "\n",
				           pg_latency_buckets_ms[i] / 1000.0, count);
		}
		buf_printf(o, "tailpost_mailbox_pg_latency_seconds_sum %.6f\n",
		           (double)st.latency_us_sum / 1e6);
		buf_printf(o, "tailpost_mailbox_pg_latency_seconds_count %" PRIu64 "\n", count);
		family(o, "tailpost_mailbox_pg_connections", "gauge", "Postgres connections up.");
		buf_printf(o, "tailpost_mailbox_pg_connections %u\n", st.conns_up);
	}
}

void metrics_free(void)
{
	for (size_t i = 0; i < nlisteners; i++)
		free(listeners[i]);
	free(listeners);
	listeners = NULL;
	nlisteners = 0;
}
