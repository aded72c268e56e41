/*
 * mailbox/config.h -- the mailbox.yaml schema: tables, load, validate, print.
 *
 * The file holds infrastructure only (DESIGN.md "one source of truth"):
 * the host name, listeners with their role, TLS and per-listener PROXY
 * trust, the stores (the `stores:` section is the storage layer's table,
 * mailbox/store/config.h), limits, abuse policy and admin settings.  Every
 * key is declared once in a shared/conf.h table; cross-field rules run in
 * validate hooks so their errors carry FILE:LINE:COL:
 *
 *   - a role fixes which TLS modes make sense (submissions/imaps: implicit;
 *     submission/imap: starttls unless allow_plaintext_auth; mx: none or
 *     starttls; http: none or implicit); `tls.mode` defaults from the role
 *     and the printed config shows the resolved mode;
 *   - every mode but none needs a certificate and a key;
 *   - `proxy:` is per listener (there is no global trust key): when present
 *     it names its trusted networks, never all addresses;
 *   - listener names are unique metric labels, bind addresses are IP
 *     literals bound by one listener only;
 *   - the bind guard: an address outside loopback, the Tailscale ranges
 *     (100.64.0.0/10, fd7a:115c:a1e0::/48) and private_networks is refused
 *     unless allow_public_bind is true (the mailbox is tailnet-only).
 *
 * Pure: no DNS, no sockets, no environment beyond what shared/conf expands.
 */
#ifndef MAILBOX_CONFIG_H
#define MAILBOX_CONFIG_H

#include "mailbox/store/config.h"
#include "shared/conf.h"
#include "shared/net.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum mailbox_role {
	MAILBOX_ROLE_MX = 0,
	MAILBOX_ROLE_SUBMISSION,
	MAILBOX_ROLE_SUBMISSIONS,
	MAILBOX_ROLE_IMAP,
	MAILBOX_ROLE_IMAPS,
	MAILBOX_ROLE_HTTP,
	MAILBOX_ROLE_TEST, /* a line echo protocol for tests and diagnostics */
	MAILBOX_ROLE_COUNT,
};

enum mailbox_tls_mode {
	MAILBOX_TLS_AUTO = 0, /* only before validation: replaced by the role's default */
	MAILBOX_TLS_NONE,
	MAILBOX_TLS_STARTTLS,
	MAILBOX_TLS_IMPLICIT,
};

enum mailbox_untrusted {
	MAILBOX_UNTRUSTED_REFUSE = 0,
	MAILBOX_UNTRUSTED_DIRECT,
};

struct mailbox_tls_conf {
	int mode; /* enum mailbox_tls_mode */
	char *cert;
	char *key;
};

struct mailbox_proxy_conf {
	struct net_cidr_set trusted;
	uint64_t header_timeout_ms;
	int untrusted; /* enum mailbox_untrusted */
	uint64_t max_header;
};

struct mailbox_timeouts_conf {
	uint64_t handshake_ms; /* TLS handshake */
	uint64_t idle_ms;      /* waiting for the next command; 0 in the file: role default */
	uint64_t command_ms;   /* a started command must complete; 0: role default */
};

struct mailbox_listener_conf {
	char *name;
	int role; /* enum mailbox_role */
	struct conf_strlist bind;
	bool tls_present;
	struct mailbox_tls_conf tls;
	bool proxy_present;
	struct mailbox_proxy_conf proxy;
	int64_t max_connections;
	struct mailbox_timeouts_conf timeouts;
	bool allow_plaintext_auth;
	/* Not keys: where the listener's mapping starts, for later messages. */
	int line, col;
};

struct mailbox_limits_conf {
	uint64_t input_buffer;  /* bound on unconsumed input per connection */
	uint64_t output_buffer; /* bound on unsent output per connection */
	uint64_t http_max_header;
	uint64_t http_max_body;
};

struct mailbox_abuse_conf {
	int64_t auth_failures; /* failures within window that ban; 0: never ban */
	int64_t rcpt_failures; /* SMTP recipients refused within window that ban; 0: never */
	uint64_t window_ms;
	uint64_t ban_ms;
	struct net_cidr_set allowlist;
};

/* SMTP (mx, submission, submissions; mailbox/smtp/server.h). */
struct mailbox_smtp_conf {
	char *spool_dir;           /* local directory for messages being received */
	uint64_t max_message_size; /* SIZE (RFC 1870) and the enforced bound */
	int64_t max_recipients;    /* per message */
	int64_t max_errors;        /* 5xx replies before the session is closed */
	bool mx_auth;              /* offer AUTH on mx listeners (under TLS) */
};

struct mailbox_admin_conf {
	bool recovery; /* honour TAILPOST_RECOVERY_ADMIN */
};

/* IMAP (imap, imaps; mailbox/imap/server.h). */
struct mailbox_imap_conf {
	struct conf_strlist master_users;    /* account logins, lower-case */
	char *master_separator;              /* one character; "" disables "user*master" */
	int64_t max_connections_per_account; /* logged-in sessions per instance; 0: no limit */
	int64_t command_rate;                /* commands/s per session; 0: no limit */
	int64_t command_burst;               /* commands without delay */
	uint64_t blob_cache_size;            /* body-fetch cache bytes; 0: off */
	int64_t sync_interval_ms;            /* NOOP trusts pub/sub this long; 0: never */
};

/*
 * Outbound delivery (mailbox/outbound/): the queue engine's settings and
 * the routes.  A route says how mail for some recipient domains leaves:
 * `local` (forced local delivery), `relay` (a smarthost, optionally with
 * AUTH) or `mx` (DNS MX lookup, RFC 5321 5.1).  Route domains are stored
 * lower-case: "example.net" (exact), ".example.net" (subdomains only) or
 * "*" (everything else).  Validation resolves `tls: auto` and `port: 0`
 * (relay: implicit 465, else 587; mx: 25) and clears `verify` for modes
 * that never verify (none, opportunistic), so the printed config shows
 * what runs.
 */
enum outbound_route_type {
	OUTBOUND_ROUTE_LOCAL = 0,
	OUTBOUND_ROUTE_RELAY,
	OUTBOUND_ROUTE_MX,
};

enum outbound_tls {
	OUTBOUND_TLS_NONE = 0,      /* plain SMTP, never STARTTLS */
	OUTBOUND_TLS_OPPORTUNISTIC, /* STARTTLS when offered, no verification, else plain */
	OUTBOUND_TLS_STARTTLS,      /* STARTTLS required (tempfail without it) */
	OUTBOUND_TLS_IMPLICIT,      /* TLS from the first byte (RFC 8314) */
	OUTBOUND_TLS_AUTO,          /* only before validation: relay starttls, mx opportunistic */
};

struct mailbox_route_conf {
	char *name;
	struct conf_strlist domains; /* lower-case */
	int type;                    /* enum outbound_route_type */
	char *host;                  /* relay: IP literal or host name */
	int64_t port;                /* resolved: never 0 for relay and mx */
	int tls;                     /* enum outbound_tls, resolved */
	bool verify;                 /* certificate check (hostname = host); starttls/implicit */
	char *ca_file;               /* NULL: the system store */
	char *auth_user;             /* auth: { user, password }; both or neither */
	char *auth_password;
	/* Not keys: where the route's mapping starts, for later messages. */
	int line, col;
};

struct mailbox_outbound_conf {
	bool enabled;
	int64_t concurrency;
	uint64_t poll_ms;
	uint64_t lease_ms;
	char *retry; /* retry.h syntax, validated */
	uint64_t expire_ms;
	uint64_t delay_notice_ms; /* 0: off */
	int64_t max_per_destination;
	uint64_t connection_reuse_ms;    /* 0: close after each message */
	uint64_t connect_timeout_ms;     /* timeouts: { connect } */
	char *helo;                      /* NULL: the hostname */
	struct conf_strlist dns_servers; /* dns: { servers }; "IP" or "IP:port", "[v6]:port" */
	struct conf_list routes;         /* of struct mailbox_route_conf */
};

struct mailbox_config {
	char *hostname;
	int log_level; /* enum log_level */
	char *user;
	char *group;
	char *pidfile;
	bool allow_public_bind;
	struct net_cidr_set private_networks;
	uint64_t shutdown_grace_ms;
	uint64_t tls_check_interval_ms;
	struct conf_list listeners; /* of struct mailbox_listener_conf */
	struct stores_config stores;
	struct mailbox_limits_conf limits;
	struct mailbox_abuse_conf abuse;
	struct mailbox_smtp_conf smtp;
	struct mailbox_admin_conf admin;
	struct mailbox_imap_conf imap;
	struct mailbox_outbound_conf outbound;
};

/* The root table, for conf_print and tests. */
extern const struct conf_table mailbox_config_table;

/*
 * Load and validate path into *cfg (zeroed here).  0, or -1 with every
 * error in ctx (conf_errors_print).  Either way release cfg with
 * mailbox_config_free() and ctx with conf_ctx_free().
 */
int mailbox_config_load(const char *path, struct mailbox_config *cfg, struct conf_ctx *ctx);
/* Same from memory; name stands for FILE in messages. */
int mailbox_config_load_buffer(const char *name, const char *text, size_t len,
                               struct mailbox_config *cfg, struct conf_ctx *ctx);
/* Print the effective configuration (secrets redacted) as YAML. */
void mailbox_config_print(FILE *out, const struct mailbox_config *cfg);
/* Release everything inside cfg (not cfg itself); safe twice. */
void mailbox_config_free(struct mailbox_config *cfg);

static inline struct mailbox_listener_conf *
mailbox_config_listener(const struct mailbox_config *cfg, size_t i)
{
	return &((struct mailbox_listener_conf *)cfg->listeners.v)[i];
}

/*
 * The bind guard: true if a may be bound without allow_public_bind, i.e.
 * it is loopback, inside 100.64.0.0/10 or fd7a:115c:a1e0::/48, or inside
 * private_networks.  The wildcard addresses are not (they include every
 * public interface).  Pure.
 */
bool mailbox_config_bind_allowed(const struct net_cidr_set *private_networks,
                                 const struct net_addr *a);

static inline const struct mailbox_route_conf *
mailbox_config_route(const struct mailbox_config *cfg, size_t i)
{
	return &((const struct mailbox_route_conf *)cfg->outbound.routes.v)[i];
}

/*
 * The route for a recipient domain (lower-case, no trailing dot): an exact
 * domain first, then the longest ".suffix" that ends it, then "*"; NULL
 * when none matches (the default is mx).  Pure.
 */
const struct mailbox_route_conf *mailbox_route_for(const struct mailbox_config *cfg,
                                                   const char *domain);
/* Same over a bare list of routes (tests, reconfigure). */
const struct mailbox_route_conf *mailbox_route_match(const struct mailbox_route_conf *routes,
                                                     size_t n, const char *domain);
/* "local", "relay", "mx"; "none", "opportunistic", "starttls", "implicit". */
const char *outbound_route_type_name(int type);
const char *outbound_tls_name(int tls);

/* "mx", "submission", ... ; "?" when out of range. */
const char *mailbox_role_name(int role);
/* "none", "starttls", "implicit". */
const char *mailbox_tls_mode_name(int mode);

#endif
