/*
 * edge/config.c -- the edge.yaml tables and their cross-field rules.
 *
 * Every key is declared exactly once below (name, type, default, bounds,
 * help); shared/conf.c turns the tables into parsing, defaults, the bounds
 * checks and the printed effective config.  What a table cannot say is
 * checked in the validate hooks: listener names usable as metric labels,
 * binds that are IP literals (we never resolve a name to decide where to
 * listen), TLVs only where the header format can carry them, and no two
 * listeners sharing a name or a bind address.
 */
#include "edge/config.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

#define LISTENER_NAME_MAX 48

static const char *const pp_names[] = {"v2", "v1", "off", NULL};
static const char *const balance_names[] = {"round-robin", "first-available", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};

/* --- health_check ------------------------------------------------------- */

#define HK(field) CONF_OFF(struct edge_health_conf, field)
static const struct conf_key health_keys[] = {
        {.name = "enabled",
         .type = CONF_BOOL,
         .offset = HK(enabled),
         .def = "true",
         .help = "probe every upstream of this listener"},
        {.name = "interval",
         .type = CONF_DURATION,
         .offset = HK(interval_ms),
         .def = "5s",
         .min = 100,
         .max = 3600000,
         .help = "time between two probes of one upstream"},
        {.name = "timeout",
         .type = CONF_DURATION,
         .offset = HK(timeout_ms),
         .def = "2s",
         .min = 10,
         .max = 600000,
         .help = "a probe that has not connected by then failed"},
        {.name = "rise",
         .type = CONF_INT,
         .offset = HK(rise),
         .def = "2",
         .min = 1,
         .max = 1000,
         .help = "consecutive good probes that mark a down upstream up"},
        {.name = "fall",
         .type = CONF_INT,
         .offset = HK(fall),
         .def = "3",
         .min = 1,
         .max = 1000,
         .help = "consecutive failed probes that mark an up upstream down"},
};

static int health_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct edge_health_conf *h = obj;

	if (h->timeout_ms > h->interval_ms) {
		conf_error(ctx, line, col, path, "timeout (%llums) longer than interval (%llums)",
		           (unsigned long long)h->timeout_ms, (unsigned long long)h->interval_ms);
		return -1;
	}
	return 0;
}

static const struct conf_table health_table = {
        .name = "health_check",
        .size = sizeof(struct edge_health_conf),
        .keys = health_keys,
        .nkeys = ARRAY_SIZE(health_keys),
        .validate = health_validate,
};

/* --- listeners[] -------------------------------------------------------- */

#define LK(field) CONF_OFF(struct edge_listener_conf, field)
static const struct conf_key listener_keys[] = {
        {.name = "name",
         .type = CONF_STR,
         .offset = LK(name),
         .flags = CONF_F_REQUIRED,
         .help = "label for logs and metrics: [a-z0-9_.-], at most 48 bytes"},
        {.name = "bind",
         .type = CONF_HOSTPORTS,
         .offset = LK(bind),
         .flags = CONF_F_REQUIRED,
         .help = "addresses to listen on, IP literals: \"0.0.0.0:25\", \"[::]:25\""},
        {.name = "upstreams",
         .type = CONF_HOSTPORTS,
         .offset = LK(upstreams),
         .flags = CONF_F_REQUIRED,
         .help = "where to forward, host:port; names resolve at start and reload"},
        {.name = "proxy_protocol",
         .type = CONF_ENUM,
         .offset = LK(proxy_protocol),
         .def = "v2",
         .enum_names = pp_names,
         .help = "header sent to the upstream: v2, v1 or off"},
        {.name = "tlv_unique_id",
         .type = CONF_BOOL,
         .offset = LK(tlv_unique_id),
         .def = "false",
         .help = "send PP2_TYPE_UNIQUE_ID (the connection id in our logs)"},
        {.name = "tlv_authority_from_sni",
         .type = CONF_BOOL,
         .offset = LK(tlv_authority_from_sni),
         .def = "false",
         .help = "send PP2_TYPE_AUTHORITY from the client's TLS SNI (implicit TLS only)"},
        {.name = "sni_timeout",
         .type = CONF_DURATION,
         .offset = LK(sni_timeout_ms),
         .def = "1s",
         .min = 10,
         .max = 10000,
         .help = "longest wait for the ClientHello when peeking the SNI"},
        {.name = "connect_timeout",
         .type = CONF_DURATION,
         .offset = LK(connect_timeout_ms),
         .def = "5s",
         .min = 10,
         .max = 120000,
         .help = "budget for reaching an upstream, all attempts together"},
        {.name = "idle_timeout",
         .type = CONF_DURATION,
         .offset = LK(idle_timeout_ms),
         .def = "10m",
         .min = 1000,
         .max = 604800000LL,
         .help = "close a connection with no byte in either direction for this long"},
        {.name = "max_connections",
         .type = CONF_INT,
         .offset = LK(max_connections),
         .def = "10000",
         .min = 0,
         .max = 10000000,
         .help = "concurrent connections; 0: unlimited"},
        {.name = "per_source_max_connections",
         .type = CONF_INT,
         .offset = LK(per_source_max_connections),
         .def = "0",
         .min = 0,
         .max = 1000000,
         .help = "concurrent connections from one client address; 0: unlimited"},
        {.name = "per_source_rate",
         .type = CONF_INT,
         .offset = LK(per_source_rate),
         .def = "0",
         .min = 0,
         .max = 1000000,
         .help = "new connections per second from one client address (token bucket); 0: unlimited"},
        {.name = "per_source_burst",
         .type = CONF_INT,
         .offset = LK(per_source_burst),
         .def = "0",
         .min = 0,
         .max = 1000000,
         .help = "token bucket size; 0: equal to per_source_rate"},
        {.name = "allow",
         .type = CONF_CIDRS,
         .offset = LK(allow),
         .help = "if not empty, only these client networks (the longest matching prefix "
                 "of allow and deny decides)"},
        {.name = "deny", .type = CONF_CIDRS, .offset = LK(deny), .help = "client networks refused"},
        {.name = "balance",
         .type = CONF_ENUM,
         .offset = LK(balance),
         .def = "round-robin",
         .enum_names = balance_names,
         .help = "round-robin or first-available"},
        {.name = "health_check",
         .type = CONF_SECTION,
         .offset = LK(health_check),
         .sub = &health_table,
         .help = "probes of each upstream"},
};

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > LISTENER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int listener_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct edge_listener_conf *l = obj;
	int rc = 0;

	if (l->name != NULL && !name_ok(l->name)) {
		conf_error(ctx, line, col, path,
		           "name '%s' must be 1..%d bytes of [a-z0-9_.-] (it is a metric label)",
		           l->name, LISTENER_NAME_MAX);
		rc = -1;
	}
	for (size_t i = 0; i < l->bind.n; i++) {
		struct net_addr a;
		const char *err = NULL;

		if (net_addr_parse_hostport(l->bind.v[i], &a, &err) < 0) {
			conf_error(ctx, line, col, path,
			           "bind[%zu] '%s' must be an IP literal with a port (%s)", i,
			           l->bind.v[i], err != NULL ? err : "invalid");
			rc = -1;
		}
	}
	if (l->bind.n == 0) {
		conf_error(ctx, line, col, path, "bind: at least one address is required");
		rc = -1;
	}
	if (l->upstreams.n == 0) {
		conf_error(ctx, line, col, path, "upstreams: at least one upstream is required");
		rc = -1;
	}
	if (l->proxy_protocol != EDGE_PP_V2 && (l->tlv_unique_id || l->tlv_authority_from_sni)) {
		conf_error(ctx, line, col, path,
		           "tlv_unique_id and tlv_authority_from_sni need proxy_protocol: v2");
		rc = -1;
	}
	if (l->per_source_burst != 0 && l->per_source_rate == 0) {
		conf_error(ctx, line, col, path, "per_source_burst set without per_source_rate");
		rc = -1;
	}
	if (l->per_source_burst == 0)
		l->per_source_burst = l->per_source_rate;
	if (l->per_source_burst < l->per_source_rate) {
		conf_error(ctx, line, col, path,
		           "per_source_burst (%lld) smaller than per_source_rate (%lld)",
		           (long long)l->per_source_burst, (long long)l->per_source_rate);
		rc = -1;
	}
	return rc;
}

static const struct conf_table listener_table = {
        .name = "listener",
        .size = sizeof(struct edge_listener_conf),
        .keys = listener_keys,
        .nkeys = ARRAY_SIZE(listener_keys),
        .validate = listener_validate,
};

/* --- admin -------------------------------------------------------------- */

static const struct conf_key admin_keys[] = {
        {.name = "bind",
         .type = CONF_STR,
         .offset = CONF_OFF(struct edge_admin_conf, bind),
         .flags = CONF_F_REQUIRED,
         .help = "ip:port of the metrics endpoint (/metrics, /healthz); keep it private"},
};

static int admin_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct edge_admin_conf *a = obj;
	struct net_addr addr;
	const char *err = NULL;

	if (a->bind != NULL && net_addr_parse_hostport(a->bind, &addr, &err) < 0) {
		conf_error(ctx, line, col, path, "bind '%s' must be an IP literal with a port (%s)",
		           a->bind, err != NULL ? err : "invalid");
		return -1;
	}
	return 0;
}

static const struct conf_table admin_table = {
        .name = "admin",
        .size = sizeof(struct edge_admin_conf),
        .keys = admin_keys,
        .nkeys = ARRAY_SIZE(admin_keys),
        .validate = admin_validate,
};

/* --- root --------------------------------------------------------------- */

#define RK(field) CONF_OFF(struct edge_config, field)
static const struct conf_key root_keys[] = {
        {.name = "workers",
         .type = CONF_INT,
         .offset = RK(workers),
         .flags = CONF_F_AUTO,
         .def = "auto",
         .min = 1,
         .max = 256,
         .help = "event loops (threads), each with its own SO_REUSEPORT sockets; auto: one per "
                 "CPU"},
        {.name = "user",
         .type = CONF_STR,
         .offset = RK(user),
         .help = "user to switch to after binding (when started as root)"},
        {.name = "group",
         .type = CONF_STR,
         .offset = RK(group),
         .help = "group to switch to after binding; default: the user's group"},
        {.name = "admin",
         .type = CONF_SECTION,
         .offset = RK(admin),
         .sub = &admin_table,
         .present_offset = RK(admin_present),
         .help = "metrics endpoint; absent: none"},
        {.name = "shutdown_grace",
         .type = CONF_DURATION,
         .offset = RK(shutdown_grace_ms),
         .def = "30s",
         .min = 0,
         .max = 86400000,
         .help = "on SIGTERM, how long established connections may drain"},
        {.name = "log_level",
         .type = CONF_ENUM,
         .offset = RK(log_level),
         .def = "info",
         .enum_names = level_names,
         .help = "debug, info, warn or error"},
        {.name = "log_connections",
         .type = CONF_BOOL,
         .offset = RK(log_connections),
         .def = "true",
         .help = "one line per finished connection"},
        {.name = "splice",
         .type = CONF_BOOL,
         .offset = RK(splice),
         .def = "true",
         .help = "forward with splice(2) through pipes; false: read/write"},
        {.name = "pipe_size",
         .type = CONF_SIZE,
         .offset = RK(pipe_size),
         .def = "256KB",
         .min = 4096,
         .max = 1048576,
         .help = "capacity asked for each pooled pipe"},
        {.name = "pipe_pool",
         .type = CONF_INT,
         .offset = RK(pipe_pool),
         .def = "64",
         .min = 0,
         .max = 65536,
         .help = "empty pipes kept per worker for reuse"},
        {.name = "backlog",
         .type = CONF_INT,
         .offset = RK(backlog),
         .def = "4096",
         .min = 16,
         .max = 65535,
         .help = "listen(2) backlog of each listening socket"},
        {.name = "listeners",
         .type = CONF_LIST,
         .offset = RK(listeners),
         .sub = &listener_table,
         .flags = CONF_F_REQUIRED,
         .help = "the forwarded ports"},
};

static int root_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct edge_config *cfg = obj;
	int rc = 0;

	if (cfg->listeners.n == 0) {
		conf_error(ctx, line, col, "listeners", "at least one listener is required");
		return -1;
	}
	if (cfg->group != NULL && cfg->user == NULL) {
		conf_error(ctx, line, col, "group", "group needs user");
		rc = -1;
	}
	for (size_t i = 0; i < cfg->listeners.n; i++) {
		const struct edge_listener_conf *a = edge_config_listener(cfg, i);

		for (size_t j = 0; j < i; j++) {
			const struct edge_listener_conf *b = edge_config_listener(cfg, j);
			if (a->name != NULL && b->name != NULL && strcmp(a->name, b->name) == 0) {
				char p[64];
				snprintf(p, sizeof(p), "listeners[%zu].name", i);
				conf_error(ctx, line, col, p, "duplicate listener name '%s'",
				           a->name);
				rc = -1;
			}
		}
		/* The same address twice would be bound twice with SO_REUSEPORT and
		 * silently share its connections between two listeners. */
		for (size_t k = 0; k < a->bind.n; k++) {
			struct net_addr x;
			if (net_addr_parse_hostport(a->bind.v[k], &x, NULL) < 0)
				continue;
			for (size_t j = 0; j <= i; j++) {
				const struct edge_listener_conf *b = edge_config_listener(cfg, j);
				size_t lim = j == i ? k : b->bind.n;
				for (size_t m = 0; m < lim; m++) {
					struct net_addr y;
					if (net_addr_parse_hostport(b->bind.v[m], &y, NULL) < 0)
						continue;
					if (net_addr_ip_equal(&x, &y) &&
					    net_addr_port(&x) == net_addr_port(&y)) {
						char p[64];
						snprintf(p, sizeof(p), "listeners[%zu].bind[%zu]",
						         i, k);
						conf_error(ctx, line, col, p,
						           "'%s' is already bound by listener '%s'",
						           a->bind.v[k], b->name ? b->name : "?");
						rc = -1;
					}
				}
			}
		}
	}
	(void)path;
	return rc;
}

const struct conf_table edge_config_table = {
        .name = "edge",
        .size = sizeof(struct edge_config),
        .keys = root_keys,
        .nkeys = ARRAY_SIZE(root_keys),
        .validate = root_validate,
};

int edge_config_load(const char *path, struct edge_config *cfg, struct conf_ctx *ctx)
{
	memset(cfg, 0, sizeof(*cfg));
	return conf_load_file(path, &edge_config_table, cfg, ctx);
}

int edge_config_load_buffer(const char *name, const char *text, size_t len, struct edge_config *cfg,
                            struct conf_ctx *ctx)
{
	memset(cfg, 0, sizeof(*cfg));
	return conf_load_buffer(name, text, len, &edge_config_table, cfg, ctx);
}

void edge_config_print(FILE *out, const struct edge_config *cfg)
{
	conf_print(out, &edge_config_table, cfg);
}

void edge_config_free(struct edge_config *cfg)
{
	conf_free(&edge_config_table, cfg);
	memset(cfg, 0, sizeof(*cfg));
}

const char *edge_config_pp_name(int mode)
{
	if (mode < 0 || mode >= (int)ARRAY_SIZE(pp_names) - 1)
		return "?";
	return pp_names[mode];
}

const char *edge_config_balance_name(int balance)
{
	if (balance < 0 || balance >= (int)ARRAY_SIZE(balance_names) - 1)
		return "?";
	return balance_names[balance];
}
