/*
 * tests/unit/test_edge_config.c -- edge.yaml validation and the admin
 * request parser.
 */
#include "tests/unit/unit.h"

#include "edge/admin.h"
#include "edge/config.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

static const char good[] = "workers: auto\n"
                           "admin: { bind: \"127.0.0.1:9100\" }\n"
                           "listeners:\n"
                           "  - name: smtp\n"
                           "    bind: [\"0.0.0.0:25\", \"[::]:25\"]\n"
                           "    upstreams: [\"100.64.0.2:25\"]\n"
                           "    proxy_protocol: v2\n"
                           "    idle_timeout: 10m\n"
                           "  - name: imaps\n"
                           "    bind: [\"0.0.0.0:993\", \"[::]:993\"]\n"
                           "    upstreams: [\"100.64.0.2:993\", \"mailbox.example:993\"]\n"
                           "    idle_timeout: 35m\n"
                           "    tlv_authority_from_sni: true\n"
                           "    per_source_rate: 5\n"
                           "    deny: [\"10.0.0.0/8\"]\n"
                           "    health_check: { interval: 2s, rise: 1 }\n";

UNIT_TEST(edge_config_good)
{
	struct edge_config cfg;
	struct conf_ctx ctx = {0};
	const struct edge_listener_conf *l;

	CHECK_INT(edge_config_load_buffer("edge.yaml", good, sizeof(good) - 1, &cfg, &ctx), 0);
	CHECK_INT(cfg.workers, -1);
	CHECK(cfg.admin_present);
	CHECK_STR(cfg.admin.bind, "127.0.0.1:9100");
	CHECK_INT(cfg.listeners.n, 2);
	CHECK_INT(cfg.shutdown_grace_ms, 30000);
	CHECK(cfg.splice);
	l = edge_config_listener(&cfg, 0);
	CHECK_STR(l->name, "smtp");
	CHECK_INT(l->bind.n, 2);
	CHECK_STR(l->bind.v[1], "[::]:25");
	CHECK_INT(l->proxy_protocol, EDGE_PP_V2);
	CHECK_INT(l->idle_timeout_ms, 600000);
	CHECK_INT(l->connect_timeout_ms, 5000);
	CHECK_INT(l->max_connections, 10000);
	CHECK_INT(l->balance, EDGE_BAL_ROUND_ROBIN);
	/* an absent section gets its defaults */
	CHECK(l->health_check.enabled);
	CHECK_INT(l->health_check.interval_ms, 5000);
	CHECK_INT(l->health_check.fall, 3);
	l = edge_config_listener(&cfg, 1);
	CHECK(l->tlv_authority_from_sni);
	CHECK_INT(l->idle_timeout_ms, 35 * 60000);
	CHECK_INT(l->per_source_rate, 5);
	CHECK_INT(l->per_source_burst, 5); /* defaults to the rate */
	CHECK_INT(l->deny.n, 1);
	CHECK_INT(l->health_check.interval_ms, 2000);
	CHECK_INT(l->health_check.rise, 1);
	CHECK_INT(l->health_check.fall, 3);
	edge_config_free(&cfg);
	conf_ctx_free(&ctx);
}

/* Each bad config must fail with an error containing want (FILE:LINE:COL
 * included where given). */
UNIT_TEST(edge_config_bad)
{
	static const struct {
		const char *yaml;
		const char *want;
	} cases[] = {
	        {"listeners: []\n", "at least one listener"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n", "upstreams"},
	        {"listeners:\n  - name: a\n    bind: [\"mail.example:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n",
	         "IP literal"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4\"]\n",
	         "e.yaml:4:"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    proxy_protocol: v3\n",
	         "e.yaml:5:21: key 'listeners[0].proxy_protocol'"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    idle_timeout: 10x\n",
	         "e.yaml:5:19"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    bogus: 1\n",
	         "e.yaml:5:5: key 'listeners[0].bogus': unknown key"},
	        {"listeners:\n  - name: Bad Name\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n",
	         "metric label"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "  - name: a\n    bind: [\"0.0.0.0:26\"]\n    upstreams: [\"1.2.3.4:25\"]\n",
	         "duplicate listener name"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "  - name: b\n    bind: [\"0.0.0.0:25\"]\n    upstreams: [\"1.2.3.4:25\"]\n",
	         "already bound by listener 'a'"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    proxy_protocol: v1\n    tlv_unique_id: true\n",
	         "need proxy_protocol: v2"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    per_source_burst: 4\n",
	         "without per_source_rate"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    per_source_rate: 10\n    per_source_burst: 4\n",
	         "smaller than per_source_rate"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    health_check: { interval: 1s, timeout: 2s }\n",
	         "longer than interval"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    deny: [\"100.64.0.1/10\"]\n",
	         "e.yaml:5:"},
	        {"workers: 0\nlisteners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n",
	         "e.yaml:1:10"},
	        {"admin: { bind: \"localhost:9100\" }\nlisteners:\n  - name: a\n    bind: "
	         "[\"0.0.0.0:25\"]\n    upstreams: [\"1.2.3.4:25\"]\n",
	         "IP literal"},
	        {"group: mail\nlisteners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n",
	         "group needs user"},
	        {"listeners:\n  - name: a\n    bind: [\"0.0.0.0:25\"]\n    upstreams: "
	         "[\"1.2.3.4:25\"]\n"
	         "    connect_timeout: 1ms\n",
	         "connect_timeout"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct edge_config cfg;
		struct conf_ctx ctx = {0};
		bool found = false;
		int rc = edge_config_load_buffer("e.yaml", cases[i].yaml, strlen(cases[i].yaml),
		                                 &cfg, &ctx);

		for (size_t k = 0; k < ctx.nerrs; k++)
			if (strstr(ctx.errs[k].msg, cases[i].want) != NULL)
				found = true;
		if (!found)
			for (size_t k = 0; k < ctx.nerrs; k++)
				printf("    got: %s\n", ctx.errs[k].msg);
		edge_config_free(&cfg);
		conf_ctx_free(&ctx);
		CHECK_MSG(rc < 0, "case %zu accepted", i);
		CHECK_MSG(found, "case %zu: no error containing \"%s\"", i, cases[i].want);
	}
}

UNIT_TEST(edge_config_print_roundtrip)
{
	struct edge_config cfg, again;
	struct conf_ctx ctx = {0};
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	CHECK_INT(edge_config_load_buffer("edge.yaml", good, sizeof(good) - 1, &cfg, &ctx), 0);
	f = open_memstream(&text, &len);
	edge_config_print(f, &cfg);
	fclose(f);
	edge_config_free(&cfg);
	conf_ctx_free(&ctx);
	/* the printed effective config is itself a valid config */
	CHECK_INT(edge_config_load_buffer("printed", text, len, &again, &ctx), 0);
	CHECK_INT(again.listeners.n, 2);
	CHECK_INT(edge_config_listener(&again, 1)->per_source_burst, 5);
	CHECK_INT(again.workers, -1);
	edge_config_free(&again);
	conf_ctx_free(&ctx);
	free(text);
}

UNIT_TEST(edge_admin_request)
{
	static const struct {
		const char *in;
		enum edge_admin_parse want;
		const char *method, *path;
	} cases[] = {
	        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", EDGE_ADMIN_OK, "GET", "/metrics"},
	        {"GET /healthz?x=1 HTTP/1.0\r\n\r\n", EDGE_ADMIN_OK, "GET", "/healthz"},
	        {"HEAD / HTTP/1.1\n\n", EDGE_ADMIN_OK, "HEAD", "/"},
	        {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", EDGE_ADMIN_OK, "POST",
	         "/metrics"},
	        {"GET /metrics HTTP/1.1\r\nHost: x\r\n", EDGE_ADMIN_NEED_MORE, NULL, NULL},
	        {"GET /met", EDGE_ADMIN_NEED_MORE, NULL, NULL},
	        {"GET /metrics HTTP/2.0\r\n\r\n", EDGE_ADMIN_BAD, NULL, NULL},
	        {"GET metrics HTTP/1.1\r\n\r\n", EDGE_ADMIN_BAD, NULL, NULL},
	        {"GET  /metrics HTTP/1.1\r\n\r\n", EDGE_ADMIN_BAD, NULL, NULL},
	        {"G(T /metrics HTTP/1.1\r\n\r\n", EDGE_ADMIN_BAD, NULL, NULL},
	        {"\r\n\r\n", EDGE_ADMIN_BAD, NULL, NULL},
	        {"GET /a\x01 HTTP/1.1\r\n\r\n", EDGE_ADMIN_BAD, NULL, NULL},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len = strlen(cases[i].in);
		char m[16], p[64];

		CHECK_MSG(edge_admin_parse_request(cases[i].in, len, m, sizeof(m), p, sizeof(p)) ==
		                  cases[i].want,
		          "case %zu", i);
		if (cases[i].want == EDGE_ADMIN_OK) {
			CHECK_STR(m, cases[i].method);
			CHECK_STR(p, cases[i].path);
		}
		/* every prefix: NEED_MORE, or the same verdict (BAD found early) */
		for (size_t k = 0; k < len; k++) {
			enum edge_admin_parse st = edge_admin_parse_request(
			        cases[i].in, k, m, sizeof(m), p, sizeof(p));
			CHECK_MSG(st == EDGE_ADMIN_NEED_MORE || st == cases[i].want,
			          "case %zu prefix %zu: %d", i, k, st);
		}
	}
}
