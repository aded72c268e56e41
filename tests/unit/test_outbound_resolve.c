/*
 * tests/unit/test_outbound_resolve.c -- the pure parts of
 * mailbox/outbound/resolve.c: MX ordering (by preference, shuffled among
 * equal preferences) and the classification of c-ares statuses.
 */
#include "tests/unit/unit.h"

#include "mailbox/outbound/resolve.h"

#include <ares.h>

/* Always the last slot: Fisher-Yates then keeps the order. */
static uint32_t rnd_last(void *arg, uint32_t bound)
{
	(void)arg;
	return bound - 1;
}

/* Always the first slot: a deterministic rotation. */
static uint32_t rnd_first(void *arg, uint32_t bound)
{
	(void)arg;
	(void)bound;
	return 0;
}

UNIT_TEST(resolve_mx_sort_by_preference)
{
	struct resolve_mx v[] = {
	        {"c", 30}, {"a", 10}, {"d", 40}, {"b", 20}, {"e", 5},
	};

	resolve_mx_sort(v, 5, rnd_last, NULL);
	CHECK_STR(v[0].host, "e");
	CHECK_STR(v[1].host, "a");
	CHECK_STR(v[2].host, "b");
	CHECK_STR(v[3].host, "c");
	CHECK_STR(v[4].host, "d");
	resolve_mx_sort(v, 0, NULL, NULL); /* nothing to do, no crash */
}

UNIT_TEST(resolve_mx_sort_shuffles_only_equal_preferences)
{
	struct resolve_mx v[] = {
	        {"x1", 10}, {"low", 5}, {"x2", 10}, {"x3", 10}, {"high", 20},
	};

	resolve_mx_sort(v, 5, rnd_first, NULL);
	CHECK_STR(v[0].host, "low");
	CHECK_STR(v[4].host, "high");
	/* the three at 10 stay in 1..3, permuted by the rnd */
	for (int i = 1; i <= 3; i++)
		CHECK_INT(v[i].pref, 10);
	CHECK(strcmp(v[1].host, "x1") != 0 || strcmp(v[2].host, "x2") != 0);
}

/* With random(3), every host of an equal-preference pair comes first
 * sometimes (RFC 5321 5.1: spread the load). */
UNIT_TEST(resolve_mx_sort_random_spreads)
{
	int first_a = 0;

	for (int i = 0; i < 200; i++) {
		struct resolve_mx v[] = {{"a", 10}, {"b", 10}, {"z", 50}};
		resolve_mx_sort(v, 3, NULL, NULL);
		CHECK_STR(v[2].host, "z");
		if (strcmp(v[0].host, "a") == 0)
			first_a++;
	}
	CHECK(first_a > 20 && first_a < 180);
}

UNIT_TEST(resolve_ares_classes)
{
	CHECK_INT(resolve_ares_class(ARES_SUCCESS), RESOLVE_OK);
	CHECK_INT(resolve_ares_class(ARES_ENOTFOUND), RESOLVE_PERM); /* NXDOMAIN */
	CHECK_INT(resolve_ares_class(ARES_ENODATA), RESOLVE_PERM);
	CHECK_INT(resolve_ares_class(ARES_ESERVFAIL), RESOLVE_TEMP);
	CHECK_INT(resolve_ares_class(ARES_ETIMEOUT), RESOLVE_TEMP);
	CHECK_INT(resolve_ares_class(ARES_EREFUSED), RESOLVE_TEMP);
	CHECK_INT(resolve_ares_class(ARES_ECONNREFUSED), RESOLVE_TEMP);
	CHECK_INT(resolve_ares_class(ARES_EBADRESP), RESOLVE_TEMP);
}
