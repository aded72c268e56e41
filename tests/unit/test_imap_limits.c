/*
 * tests/unit/test_imap_limits.c -- the pure parts behind the IMAP
 * server's limits and cache: the per-account session table
 * (mailbox/imap/account_conns.h), the body cache's LRU and byte bound
 * (mailbox/imap/blob_cache.h), and the imap: config section
 * (mailbox/config.c: defaults, lower-cased master users, FILE:LINE:COL
 * errors).
 */
#include "tests/unit/unit.h"

#include "mailbox/config.h"
#include "mailbox/imap/account_conns.h"
#include "mailbox/imap/blob_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- account_conns ------------------------------------------------------- */

UNIT_TEST(imap_account_conns_limit_and_release)
{
	struct imap_account_conns *t = imap_account_conns_new();

	CHECK(imap_account_conns_acquire(t, 7, 2));
	CHECK(imap_account_conns_acquire(t, 7, 2));
	CHECK(!imap_account_conns_acquire(t, 7, 2)); /* the third is refused */
	CHECK_INT(imap_account_conns_count(t, 7), 2);
	CHECK(imap_account_conns_acquire(t, 8, 2)); /* another account is not */
	CHECK_INT(imap_account_conns_accounts(t), 2);
	imap_account_conns_release(t, 7);
	CHECK(imap_account_conns_acquire(t, 7, 2)); /* a slot came back */
	imap_account_conns_release(t, 7);
	imap_account_conns_release(t, 7);
	CHECK_INT(imap_account_conns_count(t, 7), 0);
	CHECK_INT(imap_account_conns_accounts(t), 1); /* the empty entry is gone */
	/* max 0: no limit, but still counted */
	for (int i = 0; i < 1000; i++)
		CHECK(imap_account_conns_acquire(t, 9, 0));
	CHECK_INT(imap_account_conns_count(t, 9), 1000);
	imap_account_conns_free(&t);
	CHECK(t == NULL);
	imap_account_conns_free(&t);
}

UNIT_TEST(imap_account_conns_many_accounts_any_order)
{
	struct imap_account_conns *t = imap_account_conns_new();
	/* a permutation of 0..499 inserted, then released in another order */
	for (int i = 0; i < 500; i++)
		CHECK(imap_account_conns_acquire(t, (i * 211) % 500, 3));
	CHECK_INT(imap_account_conns_accounts(t), 500);
	for (int i = 0; i < 500; i++)
		CHECK_INT(imap_account_conns_count(t, i), 1);
	CHECK_INT(imap_account_conns_count(t, 500), 0);
	CHECK_INT(imap_account_conns_count(t, -1), 0);
	for (int i = 0; i < 500; i++)
		imap_account_conns_release(t, (i * 307) % 500);
	CHECK_INT(imap_account_conns_accounts(t), 0);
	imap_account_conns_free(&t);
}

/* --- blob_cache ------------------------------------------------------------ */

static const char K1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char K2[] = "2222222222222222222222222222222222222222222222222222222222222222";

UNIT_TEST(imap_blob_cache_hit_miss_and_ranges)
{
	struct imap_blob_cache *c = imap_blob_cache_new(1 << 20);
	struct imap_blob_cache_stats st;
	const uint8_t *p;
	size_t n = 99;

	CHECK(imap_blob_cache_get(c, K1, 0, 10, &n) == NULL);
	imap_blob_cache_put(c, K1, 0, 10, (const uint8_t *)"0123456789", 10);
	imap_blob_cache_put(c, K1, 10, 10, (const uint8_t *)"abc", 3); /* clipped at the end */
	p = imap_blob_cache_get(c, K1, 0, 10, &n);
	CHECK(p != NULL && n == 10 && memcmp(p, "0123456789", 10) == 0);
	p = imap_blob_cache_get(c, K1, 10, 10, &n);
	CHECK(p != NULL && n == 3 && memcmp(p, "abc", 3) == 0);
	/* same blob, another range; same range, another blob: misses */
	CHECK(imap_blob_cache_get(c, K1, 0, 11, &n) == NULL);
	CHECK(imap_blob_cache_get(c, K1, 1, 10, &n) == NULL);
	CHECK(imap_blob_cache_get(c, K2, 0, 10, &n) == NULL);
	/* an empty answer is cached too */
	imap_blob_cache_put(c, K2, 50, 10, NULL, 0);
	p = imap_blob_cache_get(c, K2, 50, 10, &n);
	CHECK(p != NULL && n == 0);
	/* replacing an entry keeps one copy */
	imap_blob_cache_put(c, K1, 0, 10, (const uint8_t *)"ABCDEFGHIJ", 10);
	p = imap_blob_cache_get(c, K1, 0, 10, &n);
	CHECK(p != NULL && memcmp(p, "ABCDEFGHIJ", 10) == 0);
	imap_blob_cache_stats(c, &st);
	CHECK_INT(st.hits, 4);
	CHECK_INT(st.misses, 4);
	CHECK_INT(st.entries, 3);
	CHECK_INT(st.stores, 4);
	CHECK_INT(st.limit, 1 << 20);
	CHECK(st.bytes >= 13 && st.bytes <= st.limit);
	imap_blob_cache_free(&c);
	CHECK(c == NULL);
}

UNIT_TEST(imap_blob_cache_lru_eviction)
{
	/* room for four 1000-octet entries (plus bookkeeping), not five */
	struct imap_blob_cache *c = imap_blob_cache_new(4 * 1200);
	struct imap_blob_cache_stats st;
	uint8_t data[1000];
	size_t n;

	memset(data, 'x', sizeof(data));
	for (uint64_t i = 0; i < 4; i++)
		imap_blob_cache_put(c, K1, i * 1000, 1000, data, 1000);
	imap_blob_cache_stats(c, &st);
	CHECK_INT(st.entries, 4);
	/* use the oldest: the second becomes the least recently used */
	CHECK(imap_blob_cache_get(c, K1, 0, 1000, &n) != NULL);
	imap_blob_cache_put(c, K1, 4000, 1000, data, 1000);
	CHECK(imap_blob_cache_get(c, K1, 1000, 1000, &n) == NULL);
	for (uint64_t off = 0; off <= 4000; off += 1000)
		if (off != 1000)
			CHECK(imap_blob_cache_get(c, K1, off, 1000, &n) != NULL);
	imap_blob_cache_stats(c, &st);
	CHECK_INT(st.evicts, 1);
	CHECK_INT(st.entries, 4);
	CHECK(st.bytes <= 4 * 1200);
	/* larger than a quarter of the bound: not kept, nothing evicted */
	imap_blob_cache_put(c, K2, 0, 1200, data, 1100);
	CHECK(imap_blob_cache_get(c, K2, 0, 1200, &n) == NULL);
	imap_blob_cache_stats(c, &st);
	CHECK_INT(st.entries, 4);
	/* a smaller bound evicts at once; the most recently used stays */
	imap_blob_cache_set_limit(c, 1300);
	imap_blob_cache_stats(c, &st);
	CHECK_INT(st.entries, 1);
	CHECK(imap_blob_cache_get(c, K1, 4000, 1000, &n) != NULL);
	imap_blob_cache_set_limit(c, 0);
	imap_blob_cache_stats(c, &st);
	CHECK_INT(st.entries, 0);
	CHECK_INT(st.bytes, 0);
	imap_blob_cache_put(c, K1, 0, 1, data, 1); /* a bound of 0 keeps nothing */
	CHECK(imap_blob_cache_get(c, K1, 0, 1, &n) == NULL);
	imap_blob_cache_free(&c);
}

UNIT_TEST(imap_blob_cache_bound_holds_under_random_use)
{
	struct imap_blob_cache *c = imap_blob_cache_new(64 * 1024);
	struct imap_blob_cache_stats st;
	static uint8_t data[8192];
	unsigned seed = 12345;
	char key[65];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	for (int i = 0; i < 20000; i++) {
		size_t n;
		const uint8_t *p;
		uint64_t off;
		size_t len;

		seed = seed * 1103515245 + 12345;
		snprintf(key, sizeof(key), "%064u", (seed >> 8) % 5);
		off = ((seed >> 4) % 16) * 512;
		len = ((seed >> 12) % 9) * 1000;
		p = imap_blob_cache_get(c, key, off, len, &n);
		if (p != NULL) {
			/* what comes back is what was put for that range */
			CHECK_INT(n, len);
			CHECK(n == 0 || memcmp(p, data, n) == 0);
		} else {
			imap_blob_cache_put(c, key, off, len, data, len);
		}
		imap_blob_cache_stats(c, &st);
		CHECK(st.bytes <= 64 * 1024);
	}
	imap_blob_cache_stats(c, &st);
	CHECK(st.hits > 0 && st.evicts > 0);
	CHECK_INT(st.hits + st.misses, 20000);
	imap_blob_cache_free(&c);
}

/* --- the imap: config section ---------------------------------------------- */

#define BASE                                                                                       \
	"hostname: mail.example.org\n"                                                             \
	"listeners:\n"                                                                             \
	"  - { name: imap, role: imap, bind: [\"127.0.0.1:143\"], allow_plaintext_auth: true }\n"  \
	"stores:\n"                                                                                \
	"  data: { postgres: \"postgres://tailpost@127.0.0.1:5432/tailpost\" }\n"                  \
	"  blob: { fs: { path: /var/lib/tailpost/blobs } }\n"

UNIT_TEST(imap_config_defaults_and_values)
{
	static const char none[] = BASE;
	static const char some[] = BASE "imap:\n"
	                                "  master_users: [Gateway@Example.org, backup]\n"
	                                "  master_separator: \"%\"\n"
	                                "  max_connections_per_account: 3\n"
	                                "  command_rate: 20\n"
	                                "  command_burst: 5\n"
	                                "  blob_cache_size: 1MB\n";
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	int rc = mailbox_config_load_buffer("mailbox.yaml", none, sizeof(none) - 1, &cfg, &ctx);

	if (rc != 0)
		conf_errors_print(&ctx, stderr);
	CHECK_INT(rc, 0);
	CHECK_INT(cfg.imap.master_users.n, 0);
	CHECK_STR(cfg.imap.master_separator, "*");
	CHECK_INT(cfg.imap.max_connections_per_account, 100);
	CHECK_INT(cfg.imap.command_rate, 1000);
	CHECK_INT(cfg.imap.command_burst, 2000);
	CHECK_INT(cfg.imap.blob_cache_size, 64 << 20);
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);

	rc = mailbox_config_load_buffer("mailbox.yaml", some, sizeof(some) - 1, &cfg, &ctx);
	if (rc != 0)
		conf_errors_print(&ctx, stderr);
	CHECK_INT(rc, 0);
	CHECK_INT(cfg.imap.master_users.n, 2);
	CHECK_STR(cfg.imap.master_users.v[0], "gateway@example.org"); /* lower-cased */
	CHECK_STR(cfg.imap.master_users.v[1], "backup");
	CHECK_STR(cfg.imap.master_separator, "%");
	CHECK_INT(cfg.imap.max_connections_per_account, 3);
	CHECK_INT(cfg.imap.command_rate, 20);
	CHECK_INT(cfg.imap.command_burst, 5);
	CHECK_INT(cfg.imap.blob_cache_size, 1 << 20);
	mailbox_config_free(&cfg);
	conf_ctx_free(&ctx);
}

UNIT_TEST(imap_config_errors_name_the_place)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
	        {BASE "imap:\n  master_separator: \"@\"\n", "mailbox.yaml:8:3: key 'imap'"},
	        {BASE "imap:\n  master_separator: \"**\"\n", "master_separator '**'"},
	        {BASE "imap:\n  master_separator: \"a\"\n", "must be one printable ASCII"},
	        {BASE "imap:\n  master_users: [\"a*b\"]\n", "master_users[0] 'a*b'"},
	        {BASE "imap:\n  master_users: [x, X]\n", "master_users[1] 'x' repeated"},
	        {BASE "imap:\n  max_connections_per_account: -1\n", "mailbox.yaml:8:"},
	        {BASE "imap:\n  command_burst: 0\n", "command_burst"},
	        {BASE "imap:\n  blob_cache_size: lots\n", "blob_cache_size"},
	        {BASE "imap:\n  master_user: [x]\n", "master_user"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mailbox_config cfg;
		struct conf_ctx ctx = {0};
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		int rc = mailbox_config_load_buffer("mailbox.yaml", bad[i].text,
		                                    strlen(bad[i].text), &cfg, &ctx);

		conf_errors_print(&ctx, f);
		fclose(f);
		mailbox_config_free(&cfg);
		conf_ctx_free(&ctx);
		CHECK_MSG(rc != 0, "case %zu loaded", i);
		CHECK_MSG(strstr(buf, bad[i].want) != NULL, "case %zu: want \"%s\" in \"%s\"", i,
		          bad[i].want, buf);
		free(buf);
	}
}
