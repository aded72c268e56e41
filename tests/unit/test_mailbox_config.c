/*
 * tests/unit/test_mailbox_config.c -- mailbox.yaml validation
 * (mailbox/config.c): the resolved defaults of a good file, then a table of
 * bad files, each of which must fail with a message containing the
 * expected FILE:LINE:COL and text.
 */
#include "tests/unit/unit.h"

#include "mailbox/config.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

#define STORES                                                                                     \
	"stores:\n"                                                                                \
	"  data: { postgres: \"postgres://tailpost@127.0.0.1:5432/tailpost\" }\n"                  \
	"  blob: { fs: { path: /var/lib/tailpost/blobs } }\n"

static const char good[] =
        "hostname: mail.example.org\n"
        "listeners:\n"
        "  - name: mx\n"
        "    role: mx\n"
        "    bind: [\"100.64.0.2:25\"]\n"
        "    proxy: { trusted: [\"100.64.0.1/32\"], header_timeout: 2s, untrusted: direct }\n"
        "  - name: imaps\n"
        "    role: imaps\n"
        "    bind: [\"[fd7a:115c:a1e0::2]:993\", \"127.0.0.1:993\"]\n"
        "    tls: { cert: /etc/tailpost/tls/fullchain.pem, key: /etc/tailpost/tls/key.pem }\n"
        "    proxy: { trusted: [\"100.64.0.1/32\"] }\n"
        "  - name: submission\n"
        "    role: submission\n"
        "    bind: [\"10.1.2.3:587\"]\n"
        "    tls: { cert: /c.pem, key: /k.pem }\n"
        "  - name: admin\n"
        "    role: http\n"
        "    bind: [\"100.64.0.2:8080\"]\n"
        "    timeouts: { idle: 10s }\n"
        "private_networks: [\"10.0.0.0/8\"]\n"
        "abuse: { auth_failures: 5, ban: 2h, allowlist: [\"192.0.2.0/24\"] }\n" STORES;

UNIT_TEST(mailbox_config_good_resolves_defaults)
{
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	const struct mailbox_listener_conf *l;
	int rc = mailbox_config_load_buffer("mailbox.yaml", good, sizeof(good) - 1, &cfg, &ctx);

	if (rc != 0)
		conf_errors_print(&ctx, stderr);
	CHECK_INT(rc, 0);
	CHECK_STR(cfg.hostname, "mail.example.org");
	CHECK(!cfg.allow_public_bind);
	CHECK_INT(cfg.listeners.n, 4);
	l = mailbox_config_listener(&cfg, 0);
	CHECK_INT(l->role, MAILBOX_ROLE_MX);
	CHECK(!l->tls_present);
	CHECK_INT(l->tls.mode, MAILBOX_TLS_NONE);
	CHECK(l->proxy_present);
	CHECK_INT(l->proxy.header_timeout_ms, 2000);
	CHECK_INT(l->proxy.untrusted, MAILBOX_UNTRUSTED_DIRECT);
	CHECK_INT(l->proxy.max_header, 1024);
	CHECK_INT(l->timeouts.idle_ms, 5 * 60000);
	CHECK_INT(l->timeouts.command_ms, 10 * 60000);
	l = mailbox_config_listener(&cfg, 1);
	CHECK_INT(l->tls.mode, MAILBOX_TLS_IMPLICIT); /* from the role */
	CHECK_INT(l->proxy.header_timeout_ms, 3000);  /* the default */
	CHECK_INT(l->proxy.untrusted, MAILBOX_UNTRUSTED_REFUSE);
	CHECK_INT(l->timeouts.idle_ms, 30 * 60000);
	l = mailbox_config_listener(&cfg, 2);
	CHECK_INT(l->tls.mode, MAILBOX_TLS_STARTTLS);
	CHECK(!l->proxy_present);
	l = mailbox_config_listener(&cfg, 3);
	CHECK_INT(l->role, MAILBOX_ROLE_HTTP);
	CHECK_INT(l->tls.mode, MAILBOX_TLS_NONE);
	CHECK_INT(l->timeouts.idle_ms, 10000);
	CHECK_INT(l->timeouts.command_ms, 30000);
	CHECK_INT(cfg.abuse.auth_failures, 5);
	CHECK_INT(cfg.abuse.ban_ms, 2 * 3600000);
	CHECK_INT(cfg.abuse.window_ms, 600000);
	CHECK(cfg.admin.recovery);
	CHECK_INT(cfg.limits.http_max_header, 16384);
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}

/* The printed effective config loads back to the same resolved values. */
UNIT_TEST(mailbox_config_print_roundtrip)
{
	struct mailbox_config a, b;
	struct conf_ctx ctx = {0};
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	CHECK_INT(mailbox_config_load_buffer("mailbox.yaml", good, sizeof(good) - 1, &a, &ctx), 0);
	conf_ctx_free(&ctx);
	f = open_memstream(&text, &len);
	CHECK(f != NULL);
	mailbox_config_print(f, &a);
	fclose(f);
	CHECK(strstr(text, "mode: \"implicit\"") != NULL || strstr(text, "mode: implicit") != NULL);
	memset(&ctx, 0, sizeof(ctx));
	if (mailbox_config_load_buffer("printed.yaml", text, len, &b, &ctx) != 0) {
		conf_errors_print(&ctx, stderr);
		fprintf(stderr, "%s\n", text);
	}
	CHECK_INT(ctx.nerrs, 0);
	CHECK_INT(b.listeners.n, a.listeners.n);
	for (size_t i = 0; i < a.listeners.n; i++) {
		const struct mailbox_listener_conf *x = mailbox_config_listener(&a, i);
		const struct mailbox_listener_conf *y = mailbox_config_listener(&b, i);
		CHECK_STR(x->name, y->name);
		CHECK_INT(x->tls.mode, y->tls.mode);
		CHECK_INT(x->timeouts.idle_ms, y->timeouts.idle_ms);
		CHECK_INT(x->proxy_present, y->proxy_present);
		CHECK_INT(x->proxy.trusted.n, y->proxy.trusted.n);
	}
	free(text);
	mailbox_config_free(&a);
	mailbox_config_free(&b);
	conf_ctx_free(&ctx);
}

#define L1 "hostname: h\nlisteners:\n  - name: a\n"

UNIT_TEST(mailbox_config_bad_cases)
{
	static const struct {
		const char *yaml;
		const char *want;
	} cases[] = {
	        /* unknown keys, and no global trust key */
	        {"hostname: h\nbogus: 1\n" L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n" STORES,
	         "mailbox.yaml:2:1: key 'bogus': unknown key"},
	        {"hostname: h\nproxy: { trusted: [\"100.64.0.1\"] }\nlisteners:\n  - name: a\n"
	         "    role: mx\n    bind: [\"127.0.0.1:25\"]\n" STORES,
	         "mailbox.yaml:2:1: key 'proxy': unknown key"},
	        {"hostname: h\nlisteners:\n  - name: a\n    role: mx\n    bind: "
	         "[\"127.0.0.1:25\"]\n"
	         "    trusted_proxies: [\"100.64.0.1\"]\n" STORES,
	         "mailbox.yaml:6:5: key 'listeners[0].trusted_proxies': unknown key"},
	        /* roles and TLS modes */
	        {L1 "    role: submissions\n    bind: [\"127.0.0.1:465\"]\n" STORES,
	         "mailbox.yaml:3:5: key 'listeners[0]': role submissions with tls mode none"},
	        {L1 "    role: imaps\n    bind: [\"127.0.0.1:993\"]\n    tls: { mode: starttls, "
	            "cert: c, "
	            "key: k }\n" STORES,
	         "role imaps with tls mode starttls"},
	        {L1 "    role: imap\n    bind: [\"127.0.0.1:143\"]\n" STORES,
	         "mailbox.yaml:3:5: key 'listeners[0]': role imap with tls mode none: this role "
	         "needs "
	         "STARTTLS"},
	        {L1
	         "    role: submission\n    bind: [\"127.0.0.1:587\"]\n    tls: { mode: implicit, "
	         "cert: c, key: k }\n" STORES,
	         "use role submissions or imaps"},
	        {L1 "    role: submission\n    bind: [\"127.0.0.1:587\"]\n    tls: { cert: c "
	            "}\n" STORES,
	         "tls mode starttls needs both tls.cert and tls.key"},
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n    tls: { mode: implicit, cert: "
	            "c, key: "
	            "k }\n" STORES,
	         "SMTP between MTAs has no implicit TLS"},
	        {L1 "    role: http\n    bind: [\"127.0.0.1:80\"]\n    tls: { mode: starttls, "
	            "cert: c, "
	            "key: k }\n" STORES,
	         "HTTP has no STARTTLS"},
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n    allow_plaintext_auth: "
	            "true\n" STORES,
	         "allow_plaintext_auth only applies"},
	        {L1 "    role: smtp\n    bind: [\"127.0.0.1:25\"]\n" STORES,
	         "mailbox.yaml:4:11: key 'listeners[0].role'"},
	        /* proxy */
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n    proxy: { header_timeout: 3s "
	            "}\n" STORES,
	         "mailbox.yaml:6:12: key 'listeners[0].proxy.trusted': required key is missing"},
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n    proxy: { trusted: "
	            "[\"0.0.0.0/0\"] "
	            "}\n" STORES,
	         "a /0 prefix would let every peer forge"},
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n    proxy: { trusted: "
	            "[\"100.64.0.1\"], "
	            "header_timeout: 10x }\n" STORES,
	         "mailbox.yaml:6:55: key 'listeners[0].proxy.header_timeout'"},
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n    proxy: { trusted: "
	            "[\"100.64.0.1\"], "
	            "untrusted: maybe }\n" STORES,
	         "key 'listeners[0].proxy.untrusted'"},
	        /* names and binds */
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n  - name: a\n    role: http\n    "
	            "bind: "
	            "[\"127.0.0.1:80\"]\n" STORES,
	         "mailbox.yaml:6:5: key 'listeners[1].name': duplicate listener name 'a' (first at "
	         "3:5)"},
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\n  - name: b\n    role: http\n    "
	            "bind: "
	            "[\"127.0.0.1:25\"]\n" STORES,
	         "key 'listeners[1].bind[0]': '127.0.0.1:25' is already bound by listener 'a'"},
	        {L1 "    role: mx\n    bind: [\"mail.example:25\"]\n" STORES,
	         "must be an IP literal"},
	        {"hostname: h\nlisteners:\n  - name: Bad Name\n    role: mx\n    bind: "
	         "[\"127.0.0.1:25\"]\n" STORES,
	         "a metric label"},
	        {"hostname: h\nlisteners: []\n" STORES, "at least one listener"},
	        {"listeners:\n  - name: a\n    role: mx\n    bind: [\"127.0.0.1:25\"]\n" STORES,
	         "key 'hostname': required key is missing"},
	        /* the bind guard */
	        {L1 "    role: mx\n    bind: [\"0.0.0.0:25\"]\n" STORES,
	         "mailbox.yaml:3:5: key 'listeners[0].bind[0]': refusing to bind '0.0.0.0:25'"},
	        {L1 "    role: mx\n    bind: [\"[::]:25\"]\n" STORES, "refusing to bind '[::]:25'"},
	        {L1 "    role: mx\n    bind: [\"203.0.113.5:25\"]\n" STORES,
	         "set allow_public_bind: true to override"},
	        {L1 "    role: mx\n    bind: [\"100.128.0.1:25\"]\n" STORES, "refusing to bind"},
	        {L1 "    role: mx\n    bind: [\"10.1.2.3:25\"]\nprivate_networks: "
	            "[\"192.168.0.0/16\"]\n" STORES,
	         "refusing to bind '10.1.2.3:25'"},
	        /* stores come from the storage layer's table */
	        {L1 "    role: mx\n    bind: [\"127.0.0.1:25\"]\nstores:\n  data: { postgres: x }\n"
	            "  blob: { fs: { path: /b } }\n  bogus: 1\n",
	         "key 'stores.bogus': unknown key"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mailbox_config cfg;
		struct conf_ctx ctx = {0};
		bool found = false;
		int rc = mailbox_config_load_buffer("mailbox.yaml", cases[i].yaml,
		                                    strlen(cases[i].yaml), &cfg, &ctx);

		for (size_t k = 0; k < ctx.nerrs; k++) {
			if (strstr(ctx.errs[k].msg, cases[i].want) != NULL)
				found = true;
		}
		if (rc == 0 || !found) {
			fprintf(stderr, "case %zu: rc %d, want '%s'; got:\n", i, rc, cases[i].want);
			conf_errors_print(&ctx, stderr);
		}
		mailbox_config_free(&cfg);
		conf_ctx_free(&ctx);
		CHECK_MSG(rc < 0 && found, "case %zu", i);
	}
}

/* What the bind guard lets through without allow_public_bind. */
UNIT_TEST(mailbox_config_bind_guard)
{
	static const struct {
		const char *ip;
		bool ok;
	} cases[] = {
	        {"127.0.0.1", true},
	        {"127.8.9.10", true},
	        {"::1", true},
	        {"100.64.0.1", true},
	        {"100.127.255.254", true},
	        {"100.128.0.1", false},
	        {"100.63.255.255", false},
	        {"fd7a:115c:a1e0::5", true},
	        {"fd7a:115c:a1e1::5", false},
	        {"0.0.0.0", false},
	        {"::", false},
	        {"192.0.2.1", false},
	        {"10.9.8.7", true}, /* private_networks below */
	        {"::ffff:100.64.1.1", true},
	};
	struct net_cidr_set priv;
	const char *err = NULL;

	net_cidr_set_init(&priv);
	CHECK_INT(net_cidr_set_add_str(&priv, "10.0.0.0/8", &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct net_addr a;
		CHECK_INT(net_addr_parse(cases[i].ip, 25, &a), 0);
		CHECK_MSG(mailbox_config_bind_allowed(&priv, &a) == cases[i].ok, "%s", cases[i].ip);
	}
	net_cidr_set_free(&priv);
}

UNIT_TEST(mailbox_config_allow_public_bind)
{
	static const char y[] = "hostname: h\nallow_public_bind: true\nlisteners:\n  - name: a\n"
	                        "    role: mx\n    bind: [\"0.0.0.0:25\"]\n" STORES;
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};

	CHECK_INT(mailbox_config_load_buffer("m.yaml", y, sizeof(y) - 1, &cfg, &ctx), 0);
	CHECK(cfg.allow_public_bind);
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}

/* The shipped example must stay valid. */
UNIT_TEST(mailbox_config_example_file_loads)
{
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	int rc;

	setenv("TAILPOST_DB_PASSWORD", "x", 1);
	setenv("TAILPOST_S3_ACCESS_KEY", "x", 1);
	setenv("TAILPOST_S3_SECRET_KEY", "x", 1);
	setenv("TAILPOST_RELAY_PASSWORD", "x", 1);
	rc = mailbox_config_load("mailbox/mailbox.example.yaml", &cfg, &ctx);
	if (rc != 0)
		conf_errors_print(&ctx, stderr);
	CHECK_INT(rc, 0);
	CHECK_INT(cfg.listeners.n, 6);
	CHECK_INT(mailbox_config_listener(&cfg, 0)->tls.mode, MAILBOX_TLS_STARTTLS);
	CHECK_INT(mailbox_config_listener(&cfg, 4)->tls.mode, MAILBOX_TLS_IMPLICIT);
	CHECK(cfg.stores.blob.has_s3);
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}
