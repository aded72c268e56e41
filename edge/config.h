/*
 * edge/config.h -- the edge.yaml schema: tables, load, validate, print.
 *
 * The file is described once by conf tables (shared/conf.h) that drive
 * parsing, defaults, bounds and the printed effective config.  Cross-field
 * rules (unique listener names, IP-literal binds, TLVs only with v2) run in
 * validate hooks so their errors carry FILE:LINE:COL like any other.  This
 * module is pure: no DNS, no sockets; hostnames in `upstreams` are resolved
 * later by edge/upstream.c.
 */
#ifndef EDGE_CONFIG_H
#define EDGE_CONFIG_H

#include "shared/conf.h"
#include "shared/net.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum edge_pp_mode {
	EDGE_PP_V2 = 0,
	EDGE_PP_V1,
	EDGE_PP_OFF,
};

enum edge_balance {
	EDGE_BAL_ROUND_ROBIN = 0,
	EDGE_BAL_FIRST_AVAILABLE,
};

struct edge_health_conf {
	bool enabled;
	uint64_t interval_ms;
	uint64_t timeout_ms;
	int64_t rise;
	int64_t fall;
};

struct edge_listener_conf {
	char *name;
	struct conf_strlist bind;      /* "ip:port" / "[v6]:port" literals */
	struct conf_strlist upstreams; /* "host:port" */
	int proxy_protocol;            /* enum edge_pp_mode */
	bool tlv_unique_id;
	bool tlv_authority_from_sni;
	uint64_t sni_timeout_ms;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;
	int64_t max_connections;            /* 0: unlimited */
	int64_t per_source_max_connections; /* 0: unlimited */
	int64_t per_source_rate;            /* new connections per second; 0: unlimited */
	int64_t per_source_burst;           /* bucket size; 0: same as the rate */
	struct net_cidr_set allow;
	struct net_cidr_set deny;
	int balance; /* enum edge_balance */
	struct edge_health_conf health_check;
};

struct edge_admin_conf {
	char *bind;
};

struct edge_config {
	int64_t workers; /* -1: auto (one per online CPU) */
	char *user;
	char *group;
	bool admin_present;
	struct edge_admin_conf admin;
	uint64_t shutdown_grace_ms;
	int log_level; /* enum log_level */
	bool log_connections;
	bool splice;
	uint64_t pipe_size;
	int64_t pipe_pool;
	int64_t backlog;
	struct conf_list listeners; /* of struct edge_listener_conf */
};

/* The root table, exposed for tests and for conf_print. */
extern const struct conf_table edge_config_table;

/*
 * Load and validate path into *cfg (zeroed by this function).  Returns 0, or
 * -1 with every error in ctx (print with conf_errors_print).  Either way the
 * caller releases cfg with edge_config_free() and ctx with conf_ctx_free().
 */
int edge_config_load(const char *path, struct edge_config *cfg, struct conf_ctx *ctx);
/* Same from memory; name stands for FILE in messages. */
int edge_config_load_buffer(const char *name, const char *text, size_t len, struct edge_config *cfg,
                            struct conf_ctx *ctx);

/* The listener at index i (i < cfg->listeners.n). */
static inline struct edge_listener_conf *edge_config_listener(const struct edge_config *cfg,
                                                              size_t i)
{
	return &((struct edge_listener_conf *)cfg->listeners.v)[i];
}

/* Print the effective configuration as YAML. */
void edge_config_print(FILE *out, const struct edge_config *cfg);
/* Release everything inside cfg; cfg itself is the caller's. */
void edge_config_free(struct edge_config *cfg);

/* Names for enum values (for logs). */
const char *edge_config_pp_name(int mode);
const char *edge_config_balance_name(int balance);

#endif
