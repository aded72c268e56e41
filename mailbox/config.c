/*
 * mailbox/config.c -- the mailbox.yaml tables and their cross-field rules.
 *
 * Each key is declared exactly once below (name, type, default, bounds,
 * help); shared/conf.c turns the tables into parsing, defaults, bounds and
 * the printed effective config.  What a table cannot say runs in the
 * validate hooks, in two levels:
 *
 *   listener_validate  one listener on its own: name, binds are literals,
 *                      role vs TLS mode, certificate presence, trusted
 *                      networks, role-dependent timeout defaults;
 *   root_validate      across listeners and with top-level keys: unique
 *                      names and binds, and the bind guard (which needs
 *                      allow_public_bind and private_networks).
 *
 * Values that depend on the role (TLS mode, timeouts) are written back
 * resolved, so `tailpost-mailbox check` prints what will actually run.
 */
#include "mailbox/config.h"

#include "mailbox/outbound/retry.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define LISTENER_NAME_MAX 48

static const char *const role_names[] = {"mx",    "submission", "submissions", "imap",
                                         "imaps", "http",       "test",        NULL};
static const char *const tls_mode_names[] = {"auto", "none", "starttls", "implicit", NULL};
static const char *const untrusted_names[] = {"refuse", "direct", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};

/* --- listeners[].tls ---------------------------------------------------- */

#define TK(field) CONF_OFF(struct mailbox_tls_conf, field)
static const struct conf_key tls_keys[] = {
        {.name = "mode",
         .type = CONF_ENUM,
         .offset = TK(mode),
         .def = "auto",
         .enum_names = tls_mode_names,
         .help = "none, starttls or implicit; auto: from the role (submissions, imaps, http: "
                 "implicit; others: starttls)"},
        {.name = "cert",
         .type = CONF_STR,
         .offset = TK(cert),
         .help = "PEM certificate chain, leaf first; re-read when it changes"},
        {.name = "key",
         .type = CONF_STR,
         .offset = TK(key),
         .help = "PEM private key (unencrypted), readable by the daemon's user"},
};

static const struct conf_table tls_table = {
        .name = "tls",
        .size = sizeof(struct mailbox_tls_conf),
        .keys = tls_keys,
        .nkeys = ARRAY_SIZE(tls_keys),
};

/* --- listeners[].proxy -------------------------------------------------- */

#define PK(field) CONF_OFF(struct mailbox_proxy_conf, field)
static const struct conf_key proxy_keys[] = {
        {.name = "trusted",
         .type = CONF_CIDRS,
         .offset = PK(trusted),
         .flags = CONF_F_REQUIRED,
         .help = "peers that must send a PROXY header (v1 or v2): the edge's tailnet address"},
        {.name = "header_timeout",
         .type = CONF_DURATION,
         .offset = PK(header_timeout_ms),
         .def = "3s",
         .min = 100,
         .max = 60000,
         .help = "a trusted peer's header must arrive within this time"},
        {.name = "untrusted",
         .type = CONF_ENUM,
         .offset = PK(untrusted),
         .def = "refuse",
         .enum_names = untrusted_names,
         .help = "peers outside trusted: refuse (close at once) or direct (served as the "
                 "client; a PROXY header from them is dropped as a spoof)"},
        {.name = "max_header",
         .type = CONF_SIZE,
         .offset = PK(max_header),
         .def = "1KB",
         .min = 232,
         .max = 65551,
         .help = "cap on a v2 header with its TLVs (v1 is 107 bytes)"},
};

static int proxy_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_proxy_conf *p = obj;

	if (p->trusted.n == 0) {
		conf_error(ctx, line, col, path,
		           "trusted: name the proxy's networks (remove proxy: for a plain "
		           "listener)");
		return -1;
	}
	for (size_t i = 0; i < p->trusted.n; i++) {
		if (p->trusted.v[i].bits == 0) {
			conf_error(ctx, line, col, path,
			           "trusted: a /0 prefix would let every peer forge its client "
			           "address");
			return -1;
		}
	}
	return 0;
}

static const struct conf_table proxy_table = {
        .name = "proxy",
        .size = sizeof(struct mailbox_proxy_conf),
        .keys = proxy_keys,
        .nkeys = ARRAY_SIZE(proxy_keys),
        .validate = proxy_validate,
};

/* --- listeners[].timeouts ----------------------------------------------- */

#define OK_(field) CONF_OFF(struct mailbox_timeouts_conf, field)
static const struct conf_key timeout_keys[] = {
        {.name = "handshake",
         .type = CONF_DURATION,
         .offset = OK_(handshake_ms),
         .def = "30s",
         .min = 100,
         .max = 600000,
         .help = "a TLS handshake must finish within this time"},
        {.name = "idle",
         .type = CONF_DURATION,
         .offset = OK_(idle_ms),
         .def = "0",
         .min = 0,
         .max = 86400000,
         .help = "close after this long without input; 0: the role's default (SMTP 5m, "
                 "RFC 5321 4.5.3.2.7; IMAP 30m, RFC 9051 5.4; HTTP 60s)"},
        {.name = "command",
         .type = CONF_DURATION,
         .offset = OK_(command_ms),
         .def = "0",
         .min = 0,
         .max = 86400000,
         .help = "a command whose first bytes arrived must be complete within this time; 0: "
                 "the role's default (SMTP 10m, IMAP 30m, HTTP 30s)"},
};

static const struct conf_table timeouts_table = {
        .name = "timeouts",
        .size = sizeof(struct mailbox_timeouts_conf),
        .keys = timeout_keys,
        .nkeys = ARRAY_SIZE(timeout_keys),
};

/* --- listeners[] -------------------------------------------------------- */

#define LK(field) CONF_OFF(struct mailbox_listener_conf, field)
static const struct conf_key listener_keys[] = {
        {.name = "name",
         .type = CONF_STR,
         .offset = LK(name),
         .flags = CONF_F_REQUIRED,
         .help = "label for logs and metrics: [a-z0-9_.-], at most 48 bytes"},
        {.name = "role",
         .type = CONF_ENUM,
         .offset = LK(role),
         .flags = CONF_F_REQUIRED,
         .enum_names = role_names,
         .help = "mx, submission, submissions, imap, imaps or http (test: an echo protocol)"},
        {.name = "bind",
         .type = CONF_HOSTPORTS,
         .offset = LK(bind),
         .flags = CONF_F_REQUIRED,
         .help = "IP literals with ports: \"100.64.0.2:25\", \"[fd7a:115c:a1e0::2]:25\""},
        {.name = "tls",
         .type = CONF_SECTION,
         .offset = LK(tls),
         .sub = &tls_table,
         .present_offset = LK(tls_present),
         .help = "absent: no TLS on this listener"},
        {.name = "proxy",
         .type = CONF_SECTION,
         .offset = LK(proxy),
         .sub = &proxy_table,
         .present_offset = LK(proxy_present),
         .help = "PROXY protocol trust for this listener; absent: every peer is the client"},
        {.name = "max_connections",
         .type = CONF_INT,
         .offset = LK(max_connections),
         .def = "1000",
         .min = 1,
         .max = 1000000,
         .help = "concurrent connections; more are closed at accept"},
        {.name = "timeouts",
         .type = CONF_SECTION,
         .offset = LK(timeouts),
         .sub = &timeouts_table,
         .help = "per-connection timeouts"},
        {.name = "allow_plaintext_auth",
         .type = CONF_BOOL,
         .offset = LK(allow_plaintext_auth),
         .def = "false",
         .help = "submission/imap without TLS (tests, or a tunnel that already encrypts)"},
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

static int role_default_tls(int role)
{
	switch (role) {
	case MAILBOX_ROLE_SUBMISSIONS:
	case MAILBOX_ROLE_IMAPS:
	case MAILBOX_ROLE_HTTP:
		return MAILBOX_TLS_IMPLICIT;
	default:
		return MAILBOX_TLS_STARTTLS;
	}
}

static bool role_is_smtp(int role)
{
	return role == MAILBOX_ROLE_MX || role == MAILBOX_ROLE_SUBMISSION ||
	       role == MAILBOX_ROLE_SUBMISSIONS || role == MAILBOX_ROLE_TEST;
}

static void role_timeouts(int role, uint64_t *idle_ms, uint64_t *command_ms)
{
	if (role_is_smtp(role)) {
		*idle_ms = 5 * 60000;     /* RFC 5321 4.5.3.2.7: server timeout 5 min */
		*command_ms = 10 * 60000; /* RFC 5321 4.5.3.2.6: DATA termination 10 min */
	} else if (role == MAILBOX_ROLE_HTTP) {
		*idle_ms = 60000;
		*command_ms = 30000;
	} else {
		*idle_ms = 30 * 60000; /* RFC 9051 5.4: autologout at least 30 min */
		*command_ms = 30 * 60000;
	}
}

/* Which TLS modes a role may use, and why not. */
static const char *role_tls_problem(const struct mailbox_listener_conf *l)
{
	int m = l->tls.mode;

	switch (l->role) {
	case MAILBOX_ROLE_SUBMISSIONS:
	case MAILBOX_ROLE_IMAPS:
		if (m != MAILBOX_TLS_IMPLICIT)
			return "this role is implicit TLS (RFC 8314): add tls: { cert: ..., key: "
			       "... } with mode implicit";
		break;
	case MAILBOX_ROLE_SUBMISSION:
	case MAILBOX_ROLE_IMAP:
		if (m == MAILBOX_TLS_IMPLICIT)
			return "implicit TLS on this role: use role submissions or imaps";
		if (m == MAILBOX_TLS_NONE && !l->allow_plaintext_auth)
			return "this role needs STARTTLS (tls: { cert: ..., key: ... }) so that "
			       "passwords never cross in clear; set allow_plaintext_auth: true to "
			       "run it without TLS";
		break;
	case MAILBOX_ROLE_MX:
		if (m == MAILBOX_TLS_IMPLICIT)
			return "SMTP between MTAs has no implicit TLS (RFC 3207): use mode "
			       "starttls";
		break;
	case MAILBOX_ROLE_HTTP:
		if (m == MAILBOX_TLS_STARTTLS)
			return "HTTP has no STARTTLS: use mode implicit";
		break;
	default:
		break;
	}
	return NULL;
}

static int listener_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_listener_conf *l = obj;
	const char *why;
	uint64_t idle, command;
	int rc = 0;

	l->line = line;
	l->col = col;
	if (!name_ok(l->name)) {
		conf_error(ctx, line, col, path,
		           "name '%s' must be 1..%d bytes of [a-z0-9_.-] (it is a metric label)",
		           l->name, LISTENER_NAME_MAX);
		rc = -1;
	}
	if (l->bind.n == 0) {
		conf_error(ctx, line, col, path, "bind: at least one address is required");
		rc = -1;
	}
	for (size_t i = 0; i < l->bind.n; i++) {
		struct net_addr a;
		const char *err = NULL;

		/* We never resolve a name to decide where to listen. */
		if (net_addr_parse_hostport(l->bind.v[i], &a, &err) < 0) {
			conf_error(ctx, line, col, path,
			           "bind[%zu] '%s' must be an IP literal with a port (%s)", i,
			           l->bind.v[i], err != NULL ? err : "invalid");
			rc = -1;
		}
	}
	if (!l->tls_present)
		l->tls.mode = MAILBOX_TLS_NONE;
	else if (l->tls.mode == MAILBOX_TLS_AUTO)
		l->tls.mode = role_default_tls(l->role);
	if (l->tls.mode != MAILBOX_TLS_NONE && (l->tls.cert == NULL || l->tls.key == NULL)) {
		conf_error(ctx, line, col, path, "tls mode %s needs both tls.cert and tls.key",
		           tls_mode_names[l->tls.mode]);
		rc = -1;
	}
	why = role_tls_problem(l);
	if (why != NULL) {
		conf_error(ctx, line, col, path, "role %s with tls mode %s: %s",
		           role_names[l->role], tls_mode_names[l->tls.mode], why);
		rc = -1;
	}
	if (l->allow_plaintext_auth && l->role != MAILBOX_ROLE_SUBMISSION &&
	    l->role != MAILBOX_ROLE_IMAP && l->role != MAILBOX_ROLE_TEST) {
		conf_error(ctx, line, col, path,
		           "allow_plaintext_auth only applies to roles submission and imap");
		rc = -1;
	}
	role_timeouts(l->role, &idle, &command);
	if (l->timeouts.idle_ms == 0)
		l->timeouts.idle_ms = idle;
	if (l->timeouts.command_ms == 0)
		l->timeouts.command_ms = command;
	return rc;
}

static const struct conf_table listener_table = {
        .name = "listener",
        .size = sizeof(struct mailbox_listener_conf),
        .keys = listener_keys,
        .nkeys = ARRAY_SIZE(listener_keys),
        .validate = listener_validate,
};

/* --- limits ------------------------------------------------------------- */

#define MK(field) CONF_OFF(struct mailbox_limits_conf, field)
static const struct conf_key limits_keys[] = {
        {.name = "input_buffer",
         .type = CONF_SIZE,
         .offset = MK(input_buffer),
         .def = "64KB",
         .min = 4096,
         .max = 64 << 20,
         .help = "unconsumed input kept per connection; reading stops above it"},
        {.name = "output_buffer",
         .type = CONF_SIZE,
         .offset = MK(output_buffer),
         .def = "1MB",
         .min = 4096,
         .max = 256 << 20,
         .help = "unsent output per connection; input is not processed above half of it"},
        {.name = "http_max_header",
         .type = CONF_SIZE,
         .offset = MK(http_max_header),
         .def = "16KB",
         .min = 1024,
         .max = 1 << 20,
         .help = "HTTP request line and headers together"},
        {.name = "http_max_body",
         .type = CONF_SIZE,
         .offset = MK(http_max_body),
         .def = "1MB",
         .min = 0,
         .max = 64 << 20,
         .help = "HTTP request body (admin API JSON)"},
};

static int limits_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_limits_conf *m = obj;

	if (m->http_max_header > m->input_buffer) {
		conf_error(ctx, line, col, path,
		           "http_max_header (%llu) larger than input_buffer (%llu)",
		           (unsigned long long)m->http_max_header,
		           (unsigned long long)m->input_buffer);
		return -1;
	}
	return 0;
}

static const struct conf_table limits_table = {
        .name = "limits",
        .size = sizeof(struct mailbox_limits_conf),
        .keys = limits_keys,
        .nkeys = ARRAY_SIZE(limits_keys),
        .validate = limits_validate,
};

/* --- abuse -------------------------------------------------------------- */

#define AK(field) CONF_OFF(struct mailbox_abuse_conf, field)
static const struct conf_key abuse_keys[] = {
        {.name = "auth_failures",
         .type = CONF_INT,
         .offset = AK(auth_failures),
         .def = "10",
         .min = 0,
         .max = 1000000,
         .help = "authentication failures from one client address within window that ban "
                 "it; 0: never ban"},
        {.name = "rcpt_failures",
         .type = CONF_INT,
         .offset = AK(rcpt_failures),
         .def = "30",
         .min = 0,
         .max = 1000000,
         .help = "SMTP recipients refused (unknown user, relay denied) or sessions ended "
                 "for too many errors, from one client address within window, that ban it; "
                 "0: never ban"},
        {.name = "window",
         .type = CONF_DURATION,
         .offset = AK(window_ms),
         .def = "10m",
         .min = 1000,
         .max = 7 * 86400000LL,
         .help = "the counting window of auth_failures"},
        {.name = "ban",
         .type = CONF_DURATION,
         .offset = AK(ban_ms),
         .def = "1h",
         .min = 1000,
         .max = 365 * 86400000LL,
         .help = "how long a ban lasts"},
        {.name = "allowlist",
         .type = CONF_CIDRS,
         .offset = AK(allowlist),
         .help = "client networks never banned (beats every ban); loopback and trusted "
                 "proxy peers never are either"},
};

static const struct conf_table abuse_table = {
        .name = "abuse",
        .size = sizeof(struct mailbox_abuse_conf),
        .keys = abuse_keys,
        .nkeys = ARRAY_SIZE(abuse_keys),
};

/* --- smtp --------------------------------------------------------------- */

#define SK(field) CONF_OFF(struct mailbox_smtp_conf, field)
static const struct conf_key smtp_keys[] = {
        {.name = "spool_dir",
         .type = CONF_STR,
         .offset = SK(spool_dir),
         .def = "/var/lib/tailpost/spool",
         .help = "local directory where messages are received before they are stored "
                 "(never fsynced: the blob store makes them durable); leftovers of a crash "
                 "are removed at start"},
        {.name = "max_message_size",
         .type = CONF_SIZE,
         .offset = SK(max_message_size),
         .def = "50MB",
         .min = 64 * 1024,
         .max = 2LL << 30,
         .help = "largest message accepted (EHLO SIZE, RFC 1870)"},
        {.name = "max_recipients",
         .type = CONF_INT,
         .offset = SK(max_recipients),
         .def = "100",
         .min = 100,
         .max = 100000,
         .help = "recipients per message (RFC 5321 4.5.3.1.8: at least 100)"},
        {.name = "max_errors",
         .type = CONF_INT,
         .offset = SK(max_errors),
         .def = "20",
         .min = 1,
         .max = 1000,
         .help = "5xx replies in one session before it is closed with 421"},
        {.name = "mx_auth",
         .type = CONF_BOOL,
         .offset = SK(mx_auth),
         .def = "false",
         .help = "offer AUTH on mx listeners too (only under TLS); authenticated clients "
                 "may relay"},
};

static const struct conf_table smtp_table = {
        .name = "smtp",
        .size = sizeof(struct mailbox_smtp_conf),
        .keys = smtp_keys,
        .nkeys = ARRAY_SIZE(smtp_keys),
};

/* --- admin -------------------------------------------------------------- */

static const struct conf_key admin_keys[] = {
        {.name = "recovery",
         .type = CONF_BOOL,
         .offset = CONF_OFF(struct mailbox_admin_conf, recovery),
         .def = "true",
         .help = "honour TAILPOST_RECOVERY_ADMIN=user:password (Basic auth on http "
                 "listeners, for lock-outs; logged loudly)"},
};

static const struct conf_table admin_table = {
        .name = "admin",
        .size = sizeof(struct mailbox_admin_conf),
        .keys = admin_keys,
        .nkeys = ARRAY_SIZE(admin_keys),
};

/* --- imap --------------------------------------------------------------- */

#define IK(field) CONF_OFF(struct mailbox_imap_conf, field)
static const struct conf_key imap_keys[] = {
        {.name = "master_users",
         .type = CONF_STRLIST,
         .offset = IK(master_users),
         .help = "account logins that may log in as any user: LOGIN \"user*master\" with "
                 "master's password, or AUTHENTICATE PLAIN with authzid user and authcid "
                 "master (Dovecot's master-user pattern)"},
        {.name = "master_separator",
         .type = CONF_STR,
         .offset = IK(master_separator),
         .def = "*",
         .help = "the character between user and master in a LOGIN name (quote it in "
                 "YAML: \"*\"); \"\" turns the LOGIN form off (PLAIN authzid still works)"},
        {.name = "max_connections_per_account",
         .type = CONF_INT,
         .offset = IK(max_connections_per_account),
         .def = "100",
         .min = 0,
         .max = 100000,
         .help = "logged-in IMAP sessions of one account on this instance; a LOGIN beyond "
                 "it gets NO [LIMIT]; 0: no limit"},
        {.name = "command_rate",
         .type = CONF_INT,
         .offset = IK(command_rate),
         .def = "1000",
         .min = 0,
         .max = 1000000,
         .help = "commands per second one session may sustain (a token bucket); above it "
                 "commands are delayed, not refused; 0: no limit"},
        {.name = "command_burst",
         .type = CONF_INT,
         .offset = IK(command_burst),
         .def = "2000",
         .min = 1,
         .max = 1000000,
         .help = "commands a session may send at once before command_rate applies"},
        {.name = "blob_cache_size",
         .type = CONF_SIZE,
         .offset = IK(blob_cache_size),
         .def = "64MB",
         .min = 0,
         .max = 16LL << 30,
         .help = "bytes of message bodies and stored message metadata kept in memory (LRU, "
                 "shared by every IMAP session) so repeated fetches skip the blob store and "
                 "Postgres; 0: off"},
        {.name = "sync_interval",
         .type = CONF_DURATION,
         .offset = IK(sync_interval_ms),
         .def = "30s",
         .min = 0,
         .max = 3600000,
         .help = "NOOP and CHECK ask Postgres for changes only when a change notification "
                 "came, the subscription was not in place throughout, or the last look is "
                 "older than this; 0: every time"},
};

/* A separator must not occur in logins and addresses. */
static bool master_separator_ok(const char *s)
{
	if (s[0] == '\0')
		return true;
	if (s[1] != '\0' || (unsigned char)s[0] <= ' ' || (unsigned char)s[0] >= 0x7f)
		return false;
	return strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@.-_+\"\\",
	              s[0]) == NULL;
}

static int imap_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_imap_conf *m = obj;
	const char *sep = m->master_separator != NULL ? m->master_separator : "";
	int rc = 0;

	if (!master_separator_ok(sep)) {
		conf_error(ctx, line, col, path,
		           "master_separator '%s' must be one printable ASCII character that "
		           "cannot occur in a login (not a letter, digit, '@', '.', '-', '_', "
		           "'+'), or \"\" for none",
		           sep);
		rc = -1;
	}
	for (size_t i = 0; i < m->master_users.n; i++) {
		char *u = m->master_users.v[i];

		for (char *q = u; *q != '\0'; q++)
			*q = (char)tolower((unsigned char)*q);
		if (u[0] == '\0' || strpbrk(u, " \t\r\n\"\\") != NULL ||
		    (sep[0] != '\0' && strchr(u, sep[0]) != NULL)) {
			conf_error(ctx, line, col, path,
			           "master_users[%zu] '%s' is not a login (empty, blank, quote or "
			           "the master_separator in it)",
			           i, u);
			rc = -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(m->master_users.v[j], u) == 0) {
				conf_error(ctx, line, col, path, "master_users[%zu] '%s' repeated",
				           i, u);
				rc = -1;
			}
	}
	return rc;
}

static const struct conf_table imap_table = {
        .name = "imap",
        .size = sizeof(struct mailbox_imap_conf),
        .keys = imap_keys,
        .nkeys = ARRAY_SIZE(imap_keys),
        .validate = imap_validate,
};

/* --- outbound ----------------------------------------------------------- */

static const char *const route_type_names[] = {"local", "relay", "mx", NULL};
static const char *const outbound_tls_names[] = {"none",     "opportunistic", "starttls",
                                                 "implicit", "auto",          NULL};

/*
 * `auth: { user, password }`, `timeouts: { connect }` and `dns: { servers }`
 * are nested mappings over fields of the enclosing struct: the section's
 * offset is its first field and the keys' offsets are relative to it.
 */
#define RAUTH(field)                                                                               \
	(CONF_OFF(struct mailbox_route_conf, field) -                                              \
	 CONF_OFF(struct mailbox_route_conf, auth_user))
static const struct conf_key route_auth_keys[] = {
        {.name = "user",
         .type = CONF_STR,
         .offset = RAUTH(auth_user),
         .help = "SASL user name (AUTH PLAIN, or LOGIN)"},
        {.name = "password",
         .type = CONF_SECRET,
         .offset = RAUTH(auth_password),
         .help = "its password; write \"${ENV_VAR}\" or \"file:/path\" to keep it out of "
                 "the file"},
};

static const struct conf_table route_auth_table = {
        .name = "auth",
        .keys = route_auth_keys,
        .nkeys = ARRAY_SIZE(route_auth_keys),
};

#define RTK(field) CONF_OFF(struct mailbox_route_conf, field)
static const struct conf_key route_keys[] = {
        {.name = "name",
         .type = CONF_STR,
         .offset = RTK(name),
         .flags = CONF_F_REQUIRED,
         .help = "label for logs and metrics: [a-z0-9_.-], at most 48 bytes"},
        {.name = "domains",
         .type = CONF_STRLIST,
         .offset = RTK(domains),
         .flags = CONF_F_REQUIRED,
         .help = "recipient domains: \"example.net\" exact, \".example.net\" its subdomains, "
                 "\"*\" every other domain"},
        {.name = "type",
         .type = CONF_ENUM,
         .offset = RTK(type),
         .flags = CONF_F_REQUIRED,
         .enum_names = route_type_names,
         .help = "local (deliver here, unknown users bounce), relay (a smarthost) or mx (DNS)"},
        {.name = "host",
         .type = CONF_STR,
         .offset = RTK(host),
         .help = "relay: IPv4/IPv6 literal or host name (all its AAAA and A addresses are "
                 "tried)"},
        {.name = "port",
         .type = CONF_INT,
         .offset = RTK(port),
         .def = "0",
         .min = 0,
         .max = 65535,
         .help = "0: relay 465 with tls implicit, else 587; mx 25"},
        {.name = "tls",
         .type = CONF_ENUM,
         .offset = RTK(tls),
         .def = "auto",
         .enum_names = outbound_tls_names,
         .help = "implicit, starttls (required), opportunistic (when offered, unverified) or "
                 "none; auto: relay starttls, mx opportunistic"},
        {.name = "verify",
         .type = CONF_BOOL,
         .offset = RTK(verify),
         .def = "true",
         .help = "starttls/implicit: verify the certificate chain and that it names host "
                 "(mx: the MX host name); other modes never verify"},
        {.name = "ca_file",
         .type = CONF_STR,
         .offset = RTK(ca_file),
         .help = "PEM CA certificates to verify against; default: the system store"},
        {.name = "auth",
         .type = CONF_SECTION,
         .offset = RTK(auth_user),
         .sub = &route_auth_table,
         .help = "relay: SMTP AUTH credentials (needs tls starttls or implicit, or an explicit "
                 "tls: none)"},
};

static bool route_domain_ok(char *d)
{
	size_t n = strlen(d);
	size_t i = 0, label = 0;

	for (size_t j = 0; j < n; j++)
		if (d[j] >= 'A' && d[j] <= 'Z')
			d[j] = (char)(d[j] - 'A' + 'a');
	if (strcmp(d, "*") == 0)
		return true;
	if (n > 0 && d[0] == '.')
		i = 1;
	if (n - i == 0 || n > 253 || d[n - 1] == '.')
		return false;
	for (; i < n; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

static bool host_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '/' || c == '@' || c == '[' || c == ']')
			return false;
	}
	return true;
}

static bool ip_literal_ok(const char *s)
{
	struct net_addr a;

	return net_addr_parse(s, 0, &a) == 0;
}

static int route_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_route_conf *r = obj;
	bool tls_auto = r->tls == OUTBOUND_TLS_AUTO;
	bool has_auth = r->auth_user != NULL || r->auth_password != NULL;
	const char *tname;
	int rc = 0;

	r->line = line;
	r->col = col;
	if (!name_ok(r->name)) {
		conf_error(ctx, line, col, path,
		           "name '%s' must be 1..%d bytes of [a-z0-9_.-] (it is a metric label)",
		           r->name, LISTENER_NAME_MAX);
		rc = -1;
	}
	if (r->domains.n == 0) {
		conf_error(ctx, line, col, path, "domains: at least one domain (or \"*\")");
		rc = -1;
	}
	for (size_t i = 0; i < r->domains.n; i++) {
		if (!route_domain_ok(r->domains.v[i])) {
			conf_error(ctx, line, col, path,
			           "domains[%zu] '%s' must be a domain name \"example.net\", a "
			           "suffix \".example.net\" or \"*\"",
			           i, r->domains.v[i]);
			rc = -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(r->domains.v[i], r->domains.v[j]) == 0) {
				conf_error(ctx, line, col, path, "domains[%zu] '%s' listed twice",
				           i, r->domains.v[i]);
				rc = -1;
			}
	}
	if (tls_auto)
		r->tls = r->type == OUTBOUND_ROUTE_MX ? OUTBOUND_TLS_OPPORTUNISTIC
		                                      : OUTBOUND_TLS_STARTTLS;
	tname = outbound_tls_names[r->tls];
	switch (r->type) {
	case OUTBOUND_ROUTE_LOCAL:
		if (r->host != NULL || r->port != 0 || (!tls_auto && r->tls != OUTBOUND_TLS_NONE) ||
		    r->ca_file != NULL || has_auth) {
			conf_error(ctx, line, col, path,
			           "type local delivers here: host, port, tls, ca_file and auth do "
			           "not apply");
			rc = -1;
		}
		r->tls = OUTBOUND_TLS_NONE;
		r->verify = false;
		return rc;
	case OUTBOUND_ROUTE_RELAY:
		if (r->host == NULL) {
			conf_error(ctx, line, col, path, "type relay needs host");
			rc = -1;
		} else if (!host_name_ok(r->host) ||
		           (strchr(r->host, ':') != NULL && !ip_literal_ok(r->host))) {
			conf_error(ctx, line, col, path,
			           "host '%s' must be an IP literal or a host name (no port: use "
			           "port:)",
			           r->host);
			rc = -1;
		}
		if (r->port == 0)
			r->port = r->tls == OUTBOUND_TLS_IMPLICIT ? 465 : 587;
		break;
	case OUTBOUND_ROUTE_MX:
		if (r->host != NULL) {
			conf_error(
			        ctx, line, col, path,
			        "type mx finds hosts in DNS: host does not apply (use type relay "
			        "for a fixed host)");
			rc = -1;
		}
		if (r->tls == OUTBOUND_TLS_IMPLICIT) {
			conf_error(
			        ctx, line, col, path,
			        "type mx with tls implicit: SMTP between MTAs has no implicit TLS "
			        "(RFC 3207); use starttls or opportunistic");
			rc = -1;
		}
		if (has_auth) {
			conf_error(ctx, line, col, path,
			           "type mx with auth: credentials are for a relay (type relay)");
			rc = -1;
		}
		if (r->port == 0)
			r->port = 25;
		break;
	default:
		break;
	}
	if (r->port < 1 || r->port > 65535) {
		conf_error(ctx, line, col, path, "port %lld out of range 1..65535",
		           (long long)r->port);
		rc = -1;
	}
	if (has_auth) {
		if (r->auth_user == NULL || r->auth_user[0] == '\0' || r->auth_password == NULL ||
		    r->auth_password[0] == '\0') {
			conf_error(ctx, line, col, path, "auth needs both user and password");
			rc = -1;
		}
		if (r->tls == OUTBOUND_TLS_OPPORTUNISTIC ||
		    (r->tls == OUTBOUND_TLS_NONE && tls_auto)) {
			conf_error(ctx, line, col, path,
			           "auth with tls %s could send the password in clear: use tls "
			           "starttls or implicit (or write tls: none for a tunnel that "
			           "already encrypts)",
			           tname);
			rc = -1;
		}
	}
	if (r->tls == OUTBOUND_TLS_NONE || r->tls == OUTBOUND_TLS_OPPORTUNISTIC) {
		if (r->ca_file != NULL) {
			conf_error(ctx, line, col, path, "ca_file with tls %s: nothing is verified",
			           tname);
			rc = -1;
		}
		r->verify = false;
	} else if (r->ca_file != NULL && !r->verify) {
		conf_error(ctx, line, col, path, "ca_file with verify: false is never used");
		rc = -1;
	}
	return rc;
}

static const struct conf_table route_table = {
        .name = "route",
        .size = sizeof(struct mailbox_route_conf),
        .keys = route_keys,
        .nkeys = ARRAY_SIZE(route_keys),
        .validate = route_validate,
};

#define OTK(field)                                                                                 \
	(CONF_OFF(struct mailbox_outbound_conf, field) -                                           \
	 CONF_OFF(struct mailbox_outbound_conf, connect_timeout_ms))
static const struct conf_key outbound_timeout_keys[] = {
        {.name = "connect",
         .type = CONF_DURATION,
         .offset = OTK(connect_timeout_ms),
         .def = "30s",
         .min = 100,
         .max = 600000,
         .help = "TCP connect per address, and a TLS handshake; SMTP commands follow RFC 5321 "
                 "4.5.3.2"},
};

static const struct conf_table outbound_timeouts_table = {
        .name = "timeouts",
        .keys = outbound_timeout_keys,
        .nkeys = ARRAY_SIZE(outbound_timeout_keys),
};

static const struct conf_key outbound_dns_keys[] = {
        {.name = "servers",
         .type = CONF_STRLIST,
         .offset = 0, /* dns_servers itself */
         .help = "resolvers as \"IP\" or \"IP:port\" (\"[v6]:port\"); empty: /etc/resolv.conf"},
};

static const struct conf_table outbound_dns_table = {
        .name = "dns",
        .keys = outbound_dns_keys,
        .nkeys = ARRAY_SIZE(outbound_dns_keys),
};

#define OBK(field) CONF_OFF(struct mailbox_outbound_conf, field)
static const struct conf_key outbound_keys[] = {
        {.name = "enabled",
         .type = CONF_BOOL,
         .offset = OBK(enabled),
         .def = "true",
         .help = "this instance runs delivery workers"},
        {.name = "concurrency",
         .type = CONF_INT,
         .offset = OBK(concurrency),
         .def = "8",
         .min = 1,
         .max = 10000,
         .help = "messages in flight per instance"},
        {.name = "poll",
         .type = CONF_DURATION,
         .offset = OBK(poll_ms),
         .def = "5s",
         .min = 100,
         .max = 3600000,
         .help = "how often to look for due work (plus a kick on enqueue)"},
        {.name = "lease",
         .type = CONF_DURATION,
         .offset = OBK(lease_ms),
         .def = "10m",
         .min = 10000,
         .max = 86400000,
         .help = "a claim expires after this; a crashed worker's claim is retried"},
        {.name = "retry",
         .type = CONF_STR,
         .offset = OBK(retry),
         .def = "1m, 5m, 15m, 30m, 1h, 2h, 4h",
         .help = "intervals after each failed attempt, counted from the first; the last "
                 "repeats"},
        {.name = "expire",
         .type = CONF_DURATION,
         .offset = OBK(expire_ms),
         .def = "5d",
         .min = 60000,
         .max = 365 * 86400000LL,
         .help = "undelivered recipients bounce this long after the first attempt"},
        {.name = "delay_notice",
         .type = CONF_DURATION,
         .offset = OBK(delay_notice_ms),
         .def = "0",
         .min = 0,
         .max = 365 * 86400000LL,
         .help = "one \"delayed\" DSN after this long undelivered; 0: off"},
        {.name = "max_per_destination",
         .type = CONF_INT,
         .offset = OBK(max_per_destination),
         .def = "4",
         .min = 1,
         .max = 1000,
         .help = "concurrent connections per destination (relay route or recipient domain)"},
        {.name = "connection_reuse",
         .type = CONF_DURATION,
         .offset = OBK(connection_reuse_ms),
         .def = "30s",
         .min = 0,
         .max = 600000,
         .help = "keep an idle connection this long for the next message; 0: close"},
        {.name = "timeouts",
         .type = CONF_SECTION,
         .offset = OBK(connect_timeout_ms),
         .sub = &outbound_timeouts_table,
         .help = "outbound connection timeouts"},
        {.name = "helo",
         .type = CONF_STR,
         .offset = OBK(helo),
         .help = "EHLO name; default: hostname"},
        {.name = "dns",
         .type = CONF_SECTION,
         .offset = OBK(dns_servers),
         .sub = &outbound_dns_table,
         .help = "the resolver for MX and address lookups"},
        {.name = "routes",
         .type = CONF_LIST,
         .offset = OBK(routes),
         .sub = &route_table,
         .help = "how mail leaves, by recipient domain; no match: mx"},
};

static bool dns_server_ok(const char *s)
{
	struct net_addr a;
	const char *err = NULL;

	if (net_addr_parse(s, 53, &a) == 0)
		return true;
	return net_addr_parse_hostport(s, &a, &err) == 0;
}

static int outbound_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_outbound_conf *o = obj;
	struct retry_schedule sched;
	const char *err = NULL;
	int rc = 0;

	if (retry_schedule_parse(o->retry, &sched, &err) < 0) {
		conf_error(ctx, line, col, path, "retry '%s': %s", o->retry,
		           err != NULL ? err : "invalid");
		rc = -1;
	}
	if (o->helo != NULL && !host_name_ok(o->helo)) {
		conf_error(ctx, line, col, path, "helo '%s' must be a host name", o->helo);
		rc = -1;
	}
	if (o->delay_notice_ms != 0 && o->delay_notice_ms >= o->expire_ms) {
		conf_error(ctx, line, col, path,
		           "delay_notice must be shorter than expire (or 0 for none)");
		rc = -1;
	}
	for (size_t i = 0; i < o->dns_servers.n; i++) {
		if (!dns_server_ok(o->dns_servers.v[i])) {
			conf_error(ctx, line, col, path,
			           "dns.servers[%zu] '%s' must be an IP literal, optionally with a "
			           "port (\"127.0.0.1:5353\", \"[::1]:53\")",
			           i, o->dns_servers.v[i]);
			rc = -1;
		}
	}
	/* One domain, one route: a later duplicate would never match. */
	for (size_t i = 0; i < o->routes.n; i++) {
		const struct mailbox_route_conf *a = &((struct mailbox_route_conf *)o->routes.v)[i];
		char p[96];

		snprintf(p, sizeof(p), "%s%sroutes[%zu]", path, path[0] ? "." : "", i);
		for (size_t j = 0; j < i; j++) {
			const struct mailbox_route_conf *b =
			        &((struct mailbox_route_conf *)o->routes.v)[j];
			if (a->name != NULL && b->name != NULL && strcmp(a->name, b->name) == 0) {
				conf_error(ctx, a->line, a->col, p,
				           "duplicate route name '%s' (first at %d:%d)", a->name,
				           b->line, b->col);
				rc = -1;
			}
			for (size_t x = 0; x < a->domains.n; x++)
				for (size_t y = 0; y < b->domains.n; y++)
					if (strcmp(a->domains.v[x], b->domains.v[y]) == 0) {
						conf_error(ctx, a->line, a->col, p,
						           "domain '%s' is already routed by '%s'",
						           a->domains.v[x], b->name);
						rc = -1;
					}
		}
	}
	return rc;
}

static const struct conf_table outbound_table = {
        .name = "outbound",
        .size = sizeof(struct mailbox_outbound_conf),
        .keys = outbound_keys,
        .nkeys = ARRAY_SIZE(outbound_keys),
        .validate = outbound_validate,
};

/* --- root --------------------------------------------------------------- */

#define RK(field) CONF_OFF(struct mailbox_config, field)
static const struct conf_key root_keys[] = {
        {.name = "hostname",
         .type = CONF_STR,
         .offset = RK(hostname),
         .flags = CONF_F_REQUIRED,
         .help = "this server's name: SMTP greeting, EHLO, Received: by"},
        {.name = "log_level",
         .type = CONF_ENUM,
         .offset = RK(log_level),
         .def = "info",
         .enum_names = level_names,
         .help = "debug, info, warn or error"},
        {.name = "user",
         .type = CONF_STR,
         .offset = RK(user),
         .help = "user to switch to after binding (when started as root)"},
        {.name = "group",
         .type = CONF_STR,
         .offset = RK(group),
         .help = "group to switch to; default: the user's primary group"},
        {.name = "pidfile",
         .type = CONF_STR,
         .offset = RK(pidfile),
         .help = "write and lock a pid file (not needed under systemd)"},
        {.name = "allow_public_bind",
         .type = CONF_BOOL,
         .offset = RK(allow_public_bind),
         .def = "false",
         .help = "allow binds outside loopback, the Tailscale ranges and private_networks"},
        {.name = "private_networks",
         .type = CONF_CIDRS,
         .offset = RK(private_networks),
         .help = "more networks the bind guard accepts besides loopback, 100.64.0.0/10 and "
                 "fd7a:115c:a1e0::/48"},
        {.name = "shutdown_grace",
         .type = CONF_DURATION,
         .offset = RK(shutdown_grace_ms),
         .def = "30s",
         .min = 0,
         .max = 3600000,
         .help = "on SIGTERM, how long sessions may finish before they are closed"},
        {.name = "tls_check_interval",
         .type = CONF_DURATION,
         .offset = RK(tls_check_interval_ms),
         .def = "30s",
         .min = 0,
         .max = 86400000,
         .help = "how often certificate files are checked for changes; 0: only on SIGHUP"},
        {.name = "listeners",
         .type = CONF_LIST,
         .offset = RK(listeners),
         .sub = &listener_table,
         .flags = CONF_F_REQUIRED,
         .help = "sockets and their roles"},
        {.name = "stores",
         .type = CONF_SECTION,
         .offset = RK(stores),
         .sub = &stores_conf_table,
         .help = "Postgres (data), blob (s3 or fs) and memory (redis or in-process)"},
        {.name = "limits",
         .type = CONF_SECTION,
         .offset = RK(limits),
         .sub = &limits_table,
         .help = "per-connection buffer bounds"},
        {.name = "abuse",
         .type = CONF_SECTION,
         .offset = RK(abuse),
         .sub = &abuse_table,
         .help = "auth-failure bans, keyed on the proxied client address"},
        {.name = "smtp",
         .type = CONF_SECTION,
         .offset = RK(smtp),
         .sub = &smtp_table,
         .help = "SMTP receiving: spool, size and recipient limits"},
        {.name = "admin",
         .type = CONF_SECTION,
         .offset = RK(admin),
         .sub = &admin_table,
         .help = "admin API settings"},
        {.name = "imap",
         .type = CONF_SECTION,
         .offset = RK(imap),
         .sub = &imap_table,
         .help = "IMAP: master users, per-account and per-session limits, body cache"},
        {.name = "outbound",
         .type = CONF_SECTION,
         .offset = RK(outbound),
         .sub = &outbound_table,
         .help = "outbound delivery: queue workers, retries and routes"},
};

bool mailbox_config_bind_allowed(const struct net_cidr_set *private_networks,
                                 const struct net_addr *a)
{
	static const char *const tailnet[] = {"100.64.0.0/10", "fd7a:115c:a1e0::/48"};
	struct net_cidr c;
	const char *err;

	if (net_addr_is_loopback(a))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(tailnet); i++) {
		struct net_cidr_set one = {.v = &c, .n = 1, .cap = 1};
		if (net_cidr_parse(tailnet[i], &c, &err) == 0 && net_cidr_set_contains(&one, a))
			return true;
	}
	return private_networks != NULL && net_cidr_set_contains(private_networks, a);
}

static int root_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct mailbox_config *cfg = obj;
	int rc = 0;

	(void)path;
	if (cfg->listeners.n == 0) {
		conf_error(ctx, line, col, "listeners", "at least one listener is required");
		return -1;
	}
	if (cfg->group != NULL && cfg->user == NULL) {
		conf_error(ctx, line, col, "group", "group needs user");
		rc = -1;
	}
	for (size_t i = 0; i < cfg->listeners.n; i++) {
		const struct mailbox_listener_conf *a = mailbox_config_listener(cfg, i);
		char p[80];

		for (size_t j = 0; j < i; j++) {
			const struct mailbox_listener_conf *b = mailbox_config_listener(cfg, j);
			if (strcmp(a->name, b->name) == 0) {
				snprintf(p, sizeof(p), "listeners[%zu].name", i);
				conf_error(ctx, a->line, a->col, p,
				           "duplicate listener name '%s' (first at %d:%d)", a->name,
				           b->line, b->col);
				rc = -1;
			}
		}
		for (size_t k = 0; k < a->bind.n; k++) {
			struct net_addr x;

			if (net_addr_parse_hostport(a->bind.v[k], &x, NULL) < 0)
				continue;
			snprintf(p, sizeof(p), "listeners[%zu].bind[%zu]", i, k);
			if (!cfg->allow_public_bind &&
			    !mailbox_config_bind_allowed(&cfg->private_networks, &x)) {
				conf_error(
				        ctx, a->line, a->col, p,
				        "refusing to bind '%s' (listener '%s'): it is outside "
				        "loopback, the Tailscale ranges 100.64.0.0/10 and "
				        "fd7a:115c:a1e0::/48 and private_networks; the mailbox is "
				        "tailnet-only (set allow_public_bind: true to override)",
				        a->bind.v[k], a->name);
				rc = -1;
			}
			/* Two listeners on one address would share its connections. */
			for (size_t j = 0; j <= i; j++) {
				const struct mailbox_listener_conf *b =
				        mailbox_config_listener(cfg, j);
				size_t lim = j == i ? k : b->bind.n;
				for (size_t m = 0; m < lim; m++) {
					struct net_addr y;
					if (net_addr_parse_hostport(b->bind.v[m], &y, NULL) < 0)
						continue;
					if (net_addr_ip_equal(&x, &y) &&
					    net_addr_port(&x) == net_addr_port(&y)) {
						conf_error(ctx, a->line, a->col, p,
						           "'%s' is already bound by listener '%s'",
						           a->bind.v[k], b->name);
						rc = -1;
					}
				}
			}
		}
	}
	return rc;
}

const struct conf_table mailbox_config_table = {
        .name = "mailbox",
        .size = sizeof(struct mailbox_config),
        .keys = root_keys,
        .nkeys = ARRAY_SIZE(root_keys),
        .validate = root_validate,
};

int mailbox_config_load(const char *path, struct mailbox_config *cfg, struct conf_ctx *ctx)
{
	memset(cfg, 0, sizeof(*cfg));
	return conf_load_file(path, &mailbox_config_table, cfg, ctx);
}

int mailbox_config_load_buffer(const char *name, const char *text, size_t len,
                               struct mailbox_config *cfg, struct conf_ctx *ctx)
{
	memset(cfg, 0, sizeof(*cfg));
	return conf_load_buffer(name, text, len, &mailbox_config_table, cfg, ctx);
}

void mailbox_config_print(FILE *out, const struct mailbox_config *cfg)
{
	conf_print(out, &mailbox_config_table, cfg);
}

void mailbox_config_free(struct mailbox_config *cfg)
{
	conf_free(&mailbox_config_table, cfg);
	memset(cfg, 0, sizeof(*cfg));
}

const char *mailbox_role_name(int role)
{
	if (role < 0 || role >= MAILBOX_ROLE_COUNT)
		return "?";
	return role_names[role];
}

const char *mailbox_tls_mode_name(int mode)
{
	if (mode < 0 || mode >= (int)ARRAY_SIZE(tls_mode_names) - 1)
		return "?";
	return tls_mode_names[mode];
}

const char *outbound_route_type_name(int type)
{
	if (type < 0 || type >= (int)ARRAY_SIZE(route_type_names) - 1)
		return "?";
	return route_type_names[type];
}

const char *outbound_tls_name(int tls)
{
	if (tls < 0 || tls >= (int)ARRAY_SIZE(outbound_tls_names) - 1)
		return "?";
	return outbound_tls_names[tls];
}

const struct mailbox_route_conf *mailbox_route_match(const struct mailbox_route_conf *routes,
                                                     size_t n, const char *domain)
{
	const struct mailbox_route_conf *suffix = NULL, *star = NULL;
	size_t dlen = strlen(domain), best = 0;

	for (size_t i = 0; i < n; i++) {
		const struct mailbox_route_conf *r = &routes[i];
		for (size_t j = 0; j < r->domains.n; j++) {
			const char *d = r->domains.v[j];
			size_t len = strlen(d);

			if (strcmp(d, "*") == 0) {
				if (star == NULL)
					star = r;
			} else if (d[0] == '.') {
				/* ".example.net" matches a.example.net, not example.net */
				if (dlen > len && strcmp(domain + dlen - len, d) == 0 &&
				    len > best) {
					suffix = r;
					best = len;
				}
			} else if (strcmp(d, domain) == 0) {
				return r;
			}
		}
	}
	return suffix != NULL ? suffix : star;
}

const struct mailbox_route_conf *mailbox_route_for(const struct mailbox_config *cfg,
                                                   const char *domain)
{
	return mailbox_route_match(cfg->outbound.routes.v, cfg->outbound.routes.n, domain);
}
