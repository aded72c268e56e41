/*
 * tests/unit/test_outbound_config.c -- the `outbound:` section of
 * mailbox.yaml (mailbox/config.c): resolved defaults, route matching, the
 * redacted print and its round trip, and a table of bad files that must
 * fail with FILE:LINE:COL and the expected text.
 */
#include "tests/unit/unit.h"

#include "mailbox/config.h"

#include <stdio.h>
#include <stdlib.h>

#define BASE                                                                                       \
	"hostname: mail.example.org\n"                                                             \
	"listeners:\n"                                                                             \
	"  - name: mx\n"                                                                           \
	"    role: mx\n"                                                                           \
	"    bind: [\"127.0.0.1:25\"]\n"                                                           \
	"stores:\n"                                                                                \
	"  data: { postgres: \"postgres://tailpost@127.0.0.1:5432/tailpost\" }\n"                  \
	"  blob: { fs: { path: /var/lib/tailpost/blobs } }\n"

static const char good[] =
        BASE "outbound:\n"                                         /* line 9 */
             "  concurrency: 3\n"                                  /* 10 */
             "  retry: \"2m, 1h\"\n"                               /* 11 */
             "  timeouts: { connect: 5s }\n"                       /* 12 */
             "  dns: { servers: [\"127.0.0.1:5353\", \"::1\"] }\n" /* 13 */
             "  routes:\n"                                         /* 14 */
             "    - name: relay\n"
             "      domains: [\"*\"]\n"
             "      type: relay\n"
             "      host: Relay.Example.NET\n"
             "      auth: { user: u, password: sekrit }\n"
             "    - name: direct\n"
             "      domains: [\"Example.COM\", \".example.com\", \".b.example.com\"]\n"
             "      type: mx\n"
             "    - name: inner\n"
             "      domains: [\"a.b.example.com\"]\n"
             "      type: local\n"
             "    - name: wrapped\n"
             "      domains: [\"wrapped.test\"]\n"
             "      type: relay\n"
             "      host: \"::1\"\n"
             "      tls: implicit\n"
             "      verify: false\n"
             "    - name: tunnel\n"
             "      domains: [\".c.example.com\"]\n"
             "      type: relay\n"
             "      host: 10.0.0.1\n"
             "      tls: none\n"
             "      auth: { user: u, password: p }\n";

static int load(const char *text, struct mailbox_config *cfg, struct conf_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	return mailbox_config_load_buffer("mailbox.yaml", text, strlen(text), cfg, ctx);
}

UNIT_TEST(outbound_config_defaults)
{
	struct mailbox_config cfg;
	struct conf_ctx ctx;

	CHECK_INT(load(BASE, &cfg, &ctx), 0);
	CHECK(cfg.outbound.enabled);
	CHECK_INT(cfg.outbound.concurrency, 8);
	CHECK_INT(cfg.outbound.poll_ms, 5000);
	CHECK_INT(cfg.outbound.lease_ms, 600000);
	CHECK_STR(cfg.outbound.retry, "1m, 5m, 15m, 30m, 1h, 2h, 4h");
	CHECK_INT(cfg.outbound.expire_ms, 5 * 86400000LL);
	CHECK_INT(cfg.outbound.delay_notice_ms, 0);
	CHECK_INT(cfg.outbound.max_per_destination, 4);
	CHECK_INT(cfg.outbound.connection_reuse_ms, 30000);
	CHECK_INT(cfg.outbound.connect_timeout_ms, 30000);
	CHECK(cfg.outbound.helo == NULL);
	CHECK_INT(cfg.outbound.dns_servers.n, 0);
	CHECK_INT(cfg.outbound.routes.n, 0);
	CHECK(mailbox_route_for(&cfg, "example.net") == NULL);
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}

UNIT_TEST(outbound_config_routes_resolve_and_match)
{
	struct mailbox_config cfg;
	struct conf_ctx ctx;
	const struct mailbox_route_conf *r;
	int rc = load(good, &cfg, &ctx);

	if (rc != 0)
		conf_errors_print(&ctx, stderr);
	CHECK_INT(rc, 0);
	CHECK_INT(cfg.outbound.concurrency, 3);
	CHECK_INT(cfg.outbound.connect_timeout_ms, 5000);
	CHECK_INT(cfg.outbound.dns_servers.n, 2);
	CHECK_STR(cfg.outbound.dns_servers.v[0], "127.0.0.1:5353");
	CHECK_INT(cfg.outbound.routes.n, 5);
	r = mailbox_config_route(&cfg, 0);
	CHECK_INT(r->type, OUTBOUND_ROUTE_RELAY);
	CHECK_INT(r->tls, OUTBOUND_TLS_STARTTLS); /* auto for a relay */
	CHECK_INT(r->port, 587);
	CHECK(r->verify);
	CHECK_STR(r->auth_user, "u");
	CHECK_STR(r->auth_password, "sekrit");
	r = mailbox_config_route(&cfg, 1);
	CHECK_STR(r->domains.v[0], "example.com"); /* lower-cased */
	CHECK_INT(r->tls, OUTBOUND_TLS_OPPORTUNISTIC);
	CHECK_INT(r->port, 25);
	CHECK(!r->verify); /* opportunistic never verifies */
	r = mailbox_config_route(&cfg, 3);
	CHECK_INT(r->tls, OUTBOUND_TLS_IMPLICIT);
	CHECK_INT(r->port, 465);
	CHECK(!r->verify);
	r = mailbox_config_route(&cfg, 4);
	CHECK_INT(r->tls, OUTBOUND_TLS_NONE);

	/* exact, then the longest suffix, then "*" */
	CHECK_STR(mailbox_route_for(&cfg, "example.com")->name, "direct");
	CHECK_STR(mailbox_route_for(&cfg, "x.example.com")->name, "direct");
	CHECK_STR(mailbox_route_for(&cfg, "x.b.example.com")->name, "direct");
	CHECK_STR(mailbox_route_for(&cfg, "a.b.example.com")->name, "inner");
	CHECK_STR(mailbox_route_for(&cfg, "z.c.example.com")->name, "tunnel");
	CHECK_STR(mailbox_route_for(&cfg, "c.example.com")->name, "direct");
	CHECK_STR(mailbox_route_for(&cfg, "wrapped.test")->name, "wrapped");
	CHECK_STR(mailbox_route_for(&cfg, "notexample.com")->name, "relay");
	CHECK_STR(mailbox_route_for(&cfg, "other.org")->name, "relay");
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}

UNIT_TEST(outbound_route_match_without_star)
{
	char *d1[] = {"example.net"}, *d2[] = {".sub.example.net"};
	struct mailbox_route_conf r[2] = {
	        {.name = "a", .domains = {d1, 1}},
	        {.name = "b", .domains = {d2, 1}},
	};

	CHECK(mailbox_route_match(r, 2, "example.net") == &r[0]);
	CHECK(mailbox_route_match(r, 2, "x.sub.example.net") == &r[1]);
	CHECK(mailbox_route_match(r, 2, "sub.example.net") == NULL);
	CHECK(mailbox_route_match(r, 2, "x.example.net") == NULL);
	CHECK(mailbox_route_match(r, 0, "example.net") == NULL);
}

/* The password never appears in the printed config, which loads back. */
UNIT_TEST(outbound_config_print_redacts_and_roundtrips)
{
	struct mailbox_config a, b;
	struct conf_ctx ctx;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	CHECK_INT(load(good, &a, &ctx), 0);
	conf_ctx_free(&ctx);
	f = open_memstream(&text, &len);
	CHECK(f != NULL);
	mailbox_config_print(f, &a);
	fclose(f);
	CHECK(strstr(text, "sekrit") == NULL);
	CHECK(strstr(text, "<redacted>") != NULL);
	CHECK(strstr(text, "opportunistic") != NULL);
	/* the redacted password is a valid (non-empty) value, so it loads back */
	memset(&ctx, 0, sizeof(ctx));
	if (mailbox_config_load_buffer("printed.yaml", text, len, &b, &ctx) != 0) {
		conf_errors_print(&ctx, stderr);
		fprintf(stderr, "%s\n", text);
	}
	CHECK_INT(ctx.nerrs, 0);
	CHECK_INT(b.outbound.routes.n, a.outbound.routes.n);
	for (size_t i = 0; i < a.outbound.routes.n; i++) {
		const struct mailbox_route_conf *x = mailbox_config_route(&a, i);
		const struct mailbox_route_conf *y = mailbox_config_route(&b, i);
		CHECK_STR(x->name, y->name);
		CHECK_INT(x->type, y->type);
		CHECK_INT(x->tls, y->tls);
		CHECK_INT(x->port, y->port);
		CHECK_INT(x->verify, y->verify);
	}
	CHECK_INT(b.outbound.connect_timeout_ms, 5000);
	CHECK_INT(b.outbound.dns_servers.n, 2);
	free(text);
	mailbox_config_free(&a);
	mailbox_config_free(&b);
	conf_ctx_free(&ctx);
}

#define R1 BASE "outbound:\n  routes:\n    - name: r\n      domains: [\"*\"]\n" /* r at 11:7 */

UNIT_TEST(outbound_config_bad_cases)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	        {BASE "outbound:\n  retry: \"1m, 0s\"\n",
	         "mailbox.yaml:10:3: key 'outbound': retry"},
	        {BASE "outbound:\n  retry: \"soon\"\n", "key 'outbound': retry 'soon'"},
	        {BASE "outbound:\n  concurrency: 0\n",
	         "mailbox.yaml:10:16: key 'outbound.concurrency'"},
	        {BASE "outbound:\n  dns: { servers: [\"dns.example\"] }\n",
	         "dns.servers[0] 'dns.example' must be an IP literal"},
	        {BASE "outbound:\n  delay_notice: 6d\n",
	         "delay_notice must be shorter than expire"},
	        {R1 "      type: relay\n",
	         "mailbox.yaml:11:7: key 'outbound.routes[0]': type relay "
	         "needs host"},
	        {R1 "      type: relay\n      host: h\n      port: 70000\n",
	         "key 'outbound.routes[0].port'"},
	        {R1 "      type: relay\n      host: \"h:25\"\n",
	         "host 'h:25' must be an IP literal"},
	        {R1 "      type: relay\n      host: h\n      auth: { user: u }\n",
	         "auth needs both user and password"},
	        {R1
	         "      type: relay\n      host: h\n      tls: opportunistic\n      auth: { user: "
	         "u, password: p }\n",
	         "auth with tls opportunistic could send the password in clear"},
	        {R1 "      type: relay\n      host: h\n      tls: none\n      ca_file: /ca.pem\n",
	         "ca_file with tls none"},
	        {R1
	         "      type: relay\n      host: h\n      verify: false\n      ca_file: /ca.pem\n",
	         "ca_file with verify: false"},
	        {R1 "      type: relay\n      host: h\n      tls: sometimes\n",
	         "key 'outbound.routes[0].tls'"},
	        {R1 "      type: mx\n      tls: implicit\n",
	         "SMTP between MTAs has no implicit TLS"},
	        {R1 "      type: mx\n      host: h\n", "type mx finds hosts in DNS"},
	        {R1 "      type: mx\n      auth: { user: u, password: p }\n",
	         "type mx with auth: credentials are for a relay"},
	        {R1 "      type: local\n      host: h\n", "type local delivers here"},
	        {R1 "      type: teleport\n", "key 'outbound.routes[0].type'"},
	        {BASE "outbound:\n  routes:\n    - name: r\n      domains: [\"a..b\"]\n      type: "
	              "mx\n",
	         "domains[0] 'a..b' must be a domain name"},
	        {BASE "outbound:\n  routes:\n    - name: r\n      domains: []\n      type: mx\n",
	         "domains: at least one domain"},
	        {BASE "outbound:\n  routes:\n    - name: Bad Name\n      domains: [x]\n      type: "
	              "mx\n",
	         "name 'Bad Name' must be"},
	        {R1 "      type: mx\n    - name: s\n      domains: [\"*\"]\n      type: mx\n",
	         "mailbox.yaml:14:7: key 'outbound.routes[1]': domain '*' is already routed by "
	         "'r'"},
	        {R1 "      type: mx\n    - name: r\n      domains: [a.test]\n      type: mx\n",
	         "duplicate route name 'r' (first at 11:7)"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mailbox_config cfg;
		struct conf_ctx ctx;
		bool found = false;

		CHECK_MSG(load(cases[i].text, &cfg, &ctx) == -1, "case %zu loaded: %s", i,
		          cases[i].want);
		for (size_t e = 0; e < ctx.nerrs; e++)
			if (strstr(ctx.errs[e].msg, cases[i].want) != NULL)
				found = true;
		if (!found)
			conf_errors_print(&ctx, stderr);
		CHECK_MSG(found, "case %zu: no error containing '%s'", i, cases[i].want);
		mailbox_config_free(&cfg);
		conf_ctx_free(&ctx);
	}
}

/* The documented example routes everything through the relay. */
UNIT_TEST(outbound_config_example_file)
{
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	const struct mailbox_route_conf *r;
	int rc;

	setenv("TAILPOST_DB_PASSWORD", "x", 1);
	setenv("TAILPOST_S3_ACCESS_KEY", "x", 1);
	setenv("TAILPOST_S3_SECRET_KEY", "x", 1);
	setenv("TAILPOST_RELAY_PASSWORD", "relay-secret", 1);
	rc = mailbox_config_load("mailbox/mailbox.example.yaml", &cfg, &ctx);
	if (rc != 0)
		conf_errors_print(&ctx, stderr);
	CHECK_INT(rc, 0);
	CHECK_INT(cfg.outbound.routes.n, 1);
	r = mailbox_route_for(&cfg, "anything.example");
	CHECK(r != NULL);
	CHECK_STR(r->name, "tailnet-relay");
	CHECK_INT(r->type, OUTBOUND_ROUTE_RELAY);
	CHECK_INT(r->tls, OUTBOUND_TLS_STARTTLS);
	CHECK_INT(r->port, 587);
	CHECK_STR(r->auth_password, "relay-secret");
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}
