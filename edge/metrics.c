/*
 * edge/metrics.c -- the /metrics page.
 *
 * Rendered on the main thread from the current generation: listener
 * counters come from the persistent listener states (relaxed atomic
 * loads), upstream gauges from the current pools.  Label values are
 * listener names (restricted to [a-z0-9_.-] by the config) and "ip:port"
 * strings, so no escaping is needed.
 */
#include "edge/metrics.h"

#include "edge/gen.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

const char *edge_refuse_name(enum edge_refuse r)
{
	static const char *const names[EDGE_REFUSE__N] = {
	        [EDGE_REFUSE_DENY] = "deny",
	        [EDGE_REFUSE_MAX_CONNECTIONS] = "max_connections",
	        [EDGE_REFUSE_SOURCE_CONNECTIONS] = "per_source_connections",
	        [EDGE_REFUSE_SOURCE_RATE] = "per_source_rate",
	        [EDGE_REFUSE_NO_UPSTREAM] = "no_upstream",
	        [EDGE_REFUSE_UNREACHABLE] = "upstream_unreachable",
	        [EDGE_REFUSE_CLIENT_GONE] = "client_gone",
	        [EDGE_REFUSE_RESOURCES] = "resources",
	};
	return (unsigned)r < EDGE_REFUSE__N ? names[r] : "?";
}

const char *edge_close_name(enum edge_close c)
{
	static const char *const names[EDGE_CLOSE__N] = {
	        [EDGE_CLOSE_EOF] = "eof",
	        [EDGE_CLOSE_CLIENT_RESET] = "client_reset",
	        [EDGE_CLOSE_UPSTREAM_RESET] = "upstream_reset",
	        [EDGE_CLOSE_CLIENT_ERROR] = "client_error",
	        [EDGE_CLOSE_UPSTREAM_ERROR] = "upstream_error",
	        [EDGE_CLOSE_IDLE] = "idle_timeout",
	        [EDGE_CLOSE_SHUTDOWN] = "shutdown",
	};
	return (unsigned)c < EDGE_CLOSE__N ? names[c] : "?";
}

static void head(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Run the statement(s) in __VA_ARGS__ with l bound to each listener. */
#define PER_LISTENER(b, g, ...)                                                                    \
	for (size_t i_ = 0; i_ < (g)->n; i_++) {                                                   \
		const struct edge_listener *l = &(g)->l[i_];                                       \
		__VA_ARGS__;                                                                       \
	}

void edge_metrics_render(struct buf *b, const struct edge_gen *g,
                         const struct edge_process_stats *ps)
{
	head(b, "tailpost_edge_info", "gauge", "Version of the running edge.");
	buf_printf(b, "tailpost_edge_info{version=\"%s\"} 1\n", TAILPOST_VERSION);
	head(b, "tailpost_edge_workers", "gauge", "Worker threads (event loops).");
	buf_printf(b, "tailpost_edge_workers %d\n", ps->workers);
	head(b, "tailpost_edge_config_generation", "gauge",
	     "Configuration generation in use (1 at start, +1 per successful reload).");
	buf_printf(b, "tailpost_edge_config_generation %" PRIu64 "\n", ps->generation);
	head(b, "tailpost_edge_reloads_total", "counter", "SIGHUP reloads by result.");
	buf_printf(b, "tailpost_edge_reloads_total{result=\"ok\"} %" PRIu64 "\n", ps->reloads_ok);
	buf_printf(b, "tailpost_edge_reloads_total{result=\"failed\"} %" PRIu64 "\n",
	           ps->reloads_failed);
	head(b, "tailpost_edge_draining", "gauge", "1 after SIGTERM while connections drain.");
	buf_printf(b, "tailpost_edge_draining %d\n", ps->draining ? 1 : 0);
	head(b, "tailpost_edge_worker_connections", "gauge",
	     "Connections held by workers, all listeners and generations.");
	buf_printf(b, "tailpost_edge_worker_connections %" PRId64 "\n", ps->worker_conns);
	head(b, "process_resident_memory_bytes", "gauge", "Resident set size in bytes.");
	buf_printf(b, "process_resident_memory_bytes %" PRIu64 "\n", rss_bytes());

	head(b, "tailpost_edge_connections_active", "gauge",
	     "Open connections (connecting or forwarding) per listener.");
	PER_LISTENER(b, g,
	             buf_printf(b,
	                        "tailpost_edge_connections_active{listener=\"%s\"} %" PRId64 "\n",
	                        l->st->name, (int64_t)atomic_load(&l->st->active)));
	head(b, "tailpost_edge_connections_accepted_total", "counter",
	     "Connections accepted from clients.");
	PER_LISTENER(b, g,
	             buf_printf(b,
	                        "tailpost_edge_connections_accepted_total{listener=\"%s\"} %" PRIu64
	                        "\n",
	                        l->st->name, edge_counter(&l->st->m.accepted)));
	head(b, "tailpost_edge_connections_forwarded_total", "counter",
	     "Connections that reached an upstream (header sent).");
	PER_LISTENER(
	        b, g,
	        buf_printf(b,
	                   "tailpost_edge_connections_forwarded_total{listener=\"%s\"} %" PRIu64
	                   "\n",
	                   l->st->name, edge_counter(&l->st->m.forwarded)));
	head(b, "tailpost_edge_connections_refused_total", "counter",
	     "Connections closed without being forwarded, by reason.");
	PER_LISTENER(b, g,
	             for (int r = 0; r < EDGE_REFUSE__N; r++)
	                     buf_printf(b,
	                                "tailpost_edge_connections_refused_total{listener=\"%s\","
	                                "reason=\"%s\"} %" PRIu64 "\n",
	                                l->st->name, edge_refuse_name((enum edge_refuse)r),
	                                edge_counter(&l->st->m.refused[r])));
	head(b, "tailpost_edge_connections_closed_total", "counter",
	     "Forwarded connections that ended, by reason.");
	PER_LISTENER(b, g,
	             for (int r = 0; r < EDGE_CLOSE__N; r++)
	                     buf_printf(b,
	                                "tailpost_edge_connections_closed_total{listener=\"%s\","
	                                "reason=\"%s\"} %" PRIu64 "\n",
	                                l->st->name, edge_close_name((enum edge_close)r),
	                                edge_counter(&l->st->m.closed[r])));
	head(b, "tailpost_edge_bytes_total", "counter", "Bytes forwarded, by direction.");
	PER_LISTENER(b, g, {
		buf_printf(b,
		           "tailpost_edge_bytes_total{listener=\"%s\",direction=\"client_to_"
		           "upstream\"}"
		           " %" PRIu64 "\n",
		           l->st->name, edge_counter(&l->st->m.bytes_c2u));
		buf_printf(b,
		           "tailpost_edge_bytes_total{listener=\"%s\",direction=\"upstream_to_"
		           "client\"}"
		           " %" PRIu64 "\n",
		           l->st->name, edge_counter(&l->st->m.bytes_u2c));
	});
	head(b, "tailpost_edge_sni_total", "counter",
	     "SNI peeks on listeners with tlv_authority_from_sni, by result.");
	PER_LISTENER(b, g, {
		buf_printf(b,
		           "tailpost_edge_sni_total{listener=\"%s\",result=\"found\"} %" PRIu64
		           "\n",
		           l->st->name, edge_counter(&l->st->m.sni_found));
		buf_printf(b,
		           "tailpost_edge_sni_total{listener=\"%s\",result=\"absent\"} %" PRIu64
		           "\n",
		           l->st->name, edge_counter(&l->st->m.sni_absent));
	});
	head(b, "tailpost_edge_source_addresses", "gauge",
	     "Client addresses tracked by per-source limits.");
	PER_LISTENER(b, g,
	             buf_printf(b, "tailpost_edge_source_addresses{listener=\"%s\"} %zu\n",
	                        l->st->name, edge_limits_size(l->st->limits)));

	head(b, "tailpost_edge_upstream_up", "gauge", "1 if health checks consider it up.");
	PER_LISTENER(b, g,
	             for (size_t u = 0; u < l->pool->n; u++) buf_printf(
	                     b, "tailpost_edge_upstream_up{listener=\"%s\",upstream=\"%s\"} %d\n",
	                     l->st->name, l->pool->v[u].name,
	                     atomic_load(&l->pool->v[u].up) ? 1 : 0));
	head(b, "tailpost_edge_upstream_connections_total", "counter",
	     "Connections forwarded to this upstream.");
	PER_LISTENER(b, g,
	             for (size_t u = 0; u < l->pool->n; u++)
	                     buf_printf(b,
	                                "tailpost_edge_upstream_connections_total{listener=\"%s\","
	                                "upstream=\"%s\"} %" PRIu64 "\n",
	                                l->st->name, l->pool->v[u].name,
	                                edge_counter(&l->pool->v[u].connects)));
	head(b, "tailpost_edge_upstream_connect_failures_total", "counter",
	     "Failed connection attempts (refused, reset, timed out) to this upstream.");
	PER_LISTENER(b, g,
	             for (size_t u = 0; u < l->pool->n; u++) buf_printf(
	                     b,
	                     "tailpost_edge_upstream_connect_failures_total{listener=\"%s\","
	                     "upstream=\"%s\"} %" PRIu64 "\n",
	                     l->st->name, l->pool->v[u].name,
	                     edge_counter(&l->pool->v[u].failures)));
	head(b, "tailpost_edge_upstream_checks_total", "counter", "Health probes by result.");
	PER_LISTENER(
	        b, g, for (size_t u = 0; u < l->pool->n; u++) {
		        buf_printf(b,
		                   "tailpost_edge_upstream_checks_total{listener=\"%s\",upstream="
		                   "\"%s\","
		                   "result=\"ok\"} %" PRIu64 "\n",
		                   l->st->name, l->pool->v[u].name, l->pool->v[u].checks_ok);
		        buf_printf(b,
		                   "tailpost_edge_upstream_checks_total{listener=\"%s\",upstream="
		                   "\"%s\","
		                   "result=\"failed\"} %" PRIu64 "\n",
		                   l->st->name, l->pool->v[u].name, l->pool->v[u].checks_failed);
	        });
}
