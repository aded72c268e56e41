/*
 * tests/unit/test_tls_fallback.c -- mailbox/outbound/tls_fallback: which
 * policies may fall back to plain text, and the "TLS broken" memory.
 */
#include "mailbox/config.h"
#include "mailbox/outbound/tls_fallback.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <string.h>

UNIT_TEST(tls_fallback_only_opportunistic_unverified)
{
	CHECK(tls_fallback_allowed(OUTBOUND_TLS_OPPORTUNISTIC, false));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_OPPORTUNISTIC, true));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_STARTTLS, false));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_STARTTLS, true));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_IMPLICIT, false));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_IMPLICIT, true));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_NONE, false));
	CHECK(!tls_fallback_allowed(OUTBOUND_TLS_AUTO, false));
}

UNIT_TEST(tls_fallback_key_format)
{
	char buf[TLS_FALLBACK_KEY_MAX], small[8];

	CHECK_STR(tls_fallback_key(buf, sizeof(buf), "127.0.0.1", 25), "[127.0.0.1]:25");
	CHECK_STR(tls_fallback_key(buf, sizeof(buf), "2001:db8::1", 2525), "[2001:db8::1]:2525");
	/* the longest IPv6 text form fits */
	CHECK_STR(tls_fallback_key(buf, sizeof(buf),
	                           "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535),
	          "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535");
	/* the port is part of the key */
	CHECK(strcmp(tls_fallback_key(buf, sizeof(buf), "10.0.0.1", 25),
	             tls_fallback_key(small, sizeof(small), "10.0.0.1", 587)) != 0);
	CHECK_STR(small, "[10.0.0");
}

UNIT_TEST(tls_fallback_cache_expiry)
{
	struct tls_fallback_cache *c = tls_fallback_cache_new(0);
	uint64_t until = 0;

	CHECK(!tls_fallback_cache_has(c, "[10.0.0.1]:25", 1000, NULL));
	tls_fallback_cache_add(c, "[10.0.0.1]:25", 1000, 3600000);
	CHECK(tls_fallback_cache_has(c, "[10.0.0.1]:25", 1000, &until));
	CHECK(until == 3601000);
	CHECK(tls_fallback_cache_has(c, "[10.0.0.1]:25", 3600999, NULL));
	CHECK(!tls_fallback_cache_has(c, "[10.0.0.1]:25", 3601000, NULL));
	CHECK(!tls_fallback_cache_has(c, "[10.0.0.1]:587", 2000, NULL));
	CHECK(!tls_fallback_cache_has(c, "[10.0.0.2]:25", 2000, NULL));

	/* a later failure extends; an earlier expiry never shortens */
	tls_fallback_cache_add(c, "[10.0.0.1]:25", 5000, 3600000);
	CHECK(tls_fallback_cache_has(c, "[10.0.0.1]:25", 3602000, &until) && until == 3605000);
	tls_fallback_cache_add(c, "[10.0.0.1]:25", 6000, 10);
	CHECK(tls_fallback_cache_has(c, "[10.0.0.1]:25", 7000, &until) && until == 3605000);
	CHECK_INT(tls_fallback_cache_size(c), 1);

	/* expired entries are dropped when something is added */
	tls_fallback_cache_add(c, "[10.0.0.3]:25", 4000000, 1000);
	CHECK_INT(tls_fallback_cache_size(c), 1);
	CHECK(tls_fallback_cache_has(c, "[10.0.0.3]:25", 4000500, NULL));

	/* no overflow at the end of time */
	tls_fallback_cache_add(c, "[10.0.0.4]:25", UINT64_MAX - 5, 3600000);
	CHECK(tls_fallback_cache_has(c, "[10.0.0.4]:25", UINT64_MAX - 1, &until) &&
	      until == UINT64_MAX);
	tls_fallback_cache_free(&c);
	CHECK(c == NULL);
	tls_fallback_cache_free(&c);
}

UNIT_TEST(tls_fallback_cache_bounded)
{
	struct tls_fallback_cache *c = tls_fallback_cache_new(3);
	char key[TLS_FALLBACK_KEY_MAX];

	/* a expires at 100+500, b at 100+100, c at 100+300 */
	tls_fallback_cache_add(c, "a", 100, 500);
	tls_fallback_cache_add(c, "b", 100, 100);
	tls_fallback_cache_add(c, "c", 100, 300);
	CHECK_INT(tls_fallback_cache_size(c), 3);
	/* full: the one expiring first (b) makes room */
	tls_fallback_cache_add(c, "d", 150, 1000);
	CHECK_INT(tls_fallback_cache_size(c), 3);
	CHECK(tls_fallback_cache_has(c, "a", 150, NULL));
	CHECK(!tls_fallback_cache_has(c, "b", 150, NULL));
	CHECK(tls_fallback_cache_has(c, "c", 150, NULL));
	CHECK(tls_fallback_cache_has(c, "d", 150, NULL));
	/* re-adding a present key does not evict anything */
	tls_fallback_cache_add(c, "a", 160, 500);
	CHECK_INT(tls_fallback_cache_size(c), 3);
	CHECK(tls_fallback_cache_has(c, "c", 160, NULL));
	/* many more: never above the bound, the newest always present */
	for (unsigned i = 0; i < 50; i++) {
		tls_fallback_cache_add(c, tls_fallback_key(key, sizeof(key), "192.0.2.1", i),
		                       200 + i, 1000);
		CHECK(tls_fallback_cache_size(c) <= 3);
		CHECK(tls_fallback_cache_has(c, key, 200 + i, NULL));
	}
	tls_fallback_cache_free(&c);
}
