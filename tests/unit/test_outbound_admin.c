/*
 * tests/unit/test_outbound_admin.c -- the pure parts of the outbound
 * administration: DKIM selector checks (mailbox/dkim/keystore.h), queue id
 * parsing (mailbox/outbound/queue_admin.h) and the certificate chosen for
 * TLSA (mailbox/outbound/dnsrecords_admin.h).  The SQL is exercised on
 * real Postgres by tests/integration/test_outbound_admin.py.
 */
#include "mailbox/config.h"
#include "mailbox/dkim/keystore.h"
#include "mailbox/outbound/dnsrecords_admin.h"
#include "mailbox/outbound/queue_admin.h"
#include "tests/unit/unit.h"

#include <stdio.h>

UNIT_TEST(dkim_selector_normalize)
{
	static const struct {
		const char *in;
		const char *out; /* NULL: refused */
	} cases[] = {
	        {"ed202605", "ed202605"},
	        {"Sel-1", "sel-1"},
	        {"a_b.c2", "a_b.c2"},
	        {"2026.Q1", "2026.q1"},
	        {"", NULL},
	        {".a", NULL},
	        {"a.", NULL},
	        {"a..b", NULL},
	        {"bad sel", NULL},
	        {"sel;x", NULL},
	        {"s\"q", NULL},
	        {"\xc3\xa9t\xc3\xa9", NULL},
	        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 63 */
	         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL}, /* 64 */
	};
	char out[DKIM_SELECTOR_MAX + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *err = NULL;
		int r = dkim_keystore_selector_normalize(cases[i].in, out, sizeof(out), &err);

		if (cases[i].out == NULL) {
			CHECK_MSG(r < 0 && err != NULL, "'%s' accepted", cases[i].in);
		} else {
			CHECK_MSG(r == 0, "'%s' refused: %s", cases[i].in, err);
			CHECK_STR(out, cases[i].out);
		}
	}
	/* a short output buffer is refused, not overrun */
	{
		const char *err = NULL;
		char small[4];
		CHECK(dkim_keystore_selector_normalize("abcd", small, sizeof(small), &err) < 0);
		CHECK(dkim_keystore_selector_normalize(NULL, out, sizeof(out), &err) < 0);
	}
}

UNIT_TEST(queue_admin_parse_id)
{
	int64_t id = 0;

	CHECK(queue_admin_parse_id("1", &id) == 0);
	CHECK_INT(id, 1);
	CHECK(queue_admin_parse_id("9223372036854775807", &id) == 0);
	CHECK_INT(id, INT64_MAX);
	CHECK(queue_admin_parse_id("9223372036854775808", &id) < 0);
	CHECK(queue_admin_parse_id("0", &id) < 0);
	CHECK(queue_admin_parse_id("-1", &id) < 0);
	CHECK(queue_admin_parse_id("+1", &id) < 0);
	CHECK(queue_admin_parse_id(" 1", &id) < 0);
	CHECK(queue_admin_parse_id("1 ", &id) < 0);
	CHECK(queue_admin_parse_id("12abc", &id) < 0);
	CHECK(queue_admin_parse_id("", &id) < 0);
	CHECK(queue_admin_parse_id(NULL, &id) < 0);
	CHECK_INT(id, INT64_MAX); /* untouched by the failures */
}

UNIT_TEST(dnsrecords_admin_cert_prefers_mx)
{
	static const char text[] = "hostname: mail.test\n"
	                           "listeners:\n"
	                           "  - { name: sub, role: submissions, bind: [\"127.0.0.1:4650\"],"
	                           " tls: { cert: /c/sub.pem, key: /c/sub.key } }\n"
	                           "  - { name: mx, role: mx, bind: [\"127.0.0.1:2500\"],"
	                           " tls: { cert: /c/mx.pem, key: /c/mx.key } }\n"
	                           "stores:\n"
	                           "  data: { postgres: \"postgresql://u@127.0.0.1/db\" }\n"
	                           "  blob: { fs: { path: /tmp } }\n";
	static const char plain[] = "hostname: mail.test\n"
	                            "listeners:\n"
	                            "  - { name: mx, role: mx, bind: [\"127.0.0.1:2500\"] }\n"
	                            "stores:\n"
	                            "  data: { postgres: \"postgresql://u@127.0.0.1/db\" }\n"
	                            "  blob: { fs: { path: /tmp } }\n";
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	int r = mailbox_config_load_buffer("t.yaml", text, sizeof(text) - 1, &cfg, &ctx);

	if (r < 0)
		conf_errors_print(&ctx, stderr);
	conf_ctx_free(&ctx);
	CHECK(r == 0);
	CHECK_STR(dnsrecords_admin_cert(&cfg), "/c/mx.pem");
	mailbox_config_free(&cfg);

	memset(&ctx, 0, sizeof(ctx));
	r = mailbox_config_load_buffer("t.yaml", plain, sizeof(plain) - 1, &cfg, &ctx);
	if (r < 0)
		conf_errors_print(&ctx, stderr);
	conf_ctx_free(&ctx);
	CHECK(r == 0);
	CHECK(dnsrecords_admin_cert(&cfg) == NULL);
	mailbox_config_free(&cfg);
}
