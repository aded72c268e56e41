/*
 * tests/unit/test_edge_limits.c -- token buckets, the per-source table and
 * the allow/deny matcher.
 */
#include "tests/unit/unit.h"

#include "edge/access.h"
#include "edge/limits.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* A script of takes at given times against one bucket. */
UNIT_TEST(edge_limits_bucket)
{
	static const struct {
		int64_t rate, burst;
		struct {
			uint64_t t_ms;
			bool want;
		} steps[12];
		size_t n;
	} cases[] = {
	        /* burst 3 at rate 1/s: three at once, then one per second */
	        {1,
	         3,
	         {{0, true},
	          {0, true},
	          {0, true},
	          {0, false},
	          {999, false},
	          {1000, true},
	          {1000, false},
	          {2500, true},
	          {2999, false},
	          {3000, true}},
	         10},
	        /* rate 10/s, burst 1: 100 ms apart is fine, 50 ms is not */
	        {10, 1, {{0, true}, {50, false}, {100, true}, {199, false}, {200, true}}, 5},
	        /* a long sleep refills only up to the burst */
	        {5,
	         2,
	         {{0, true},
	          {0, true},
	          {0, false},
	          {3600000, true},
	          {3600000, true},
	          {3600000, false}},
	         6},
	        /* time going backwards refills nothing */
	        {1, 1, {{5000, true}, {1000, false}, {1500, false}, {2000, true}}, 4},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct edge_bucket b;

		edge_bucket_init(&b, cases[i].burst, cases[i].steps[0].t_ms);
		for (size_t k = 0; k < cases[i].n; k++) {
			bool got = edge_bucket_take(&b, cases[i].rate, cases[i].burst,
			                            cases[i].steps[k].t_ms);
			CHECK_MSG(got == cases[i].steps[k].want, "case %zu step %zu (t=%llu)", i, k,
			          (unsigned long long)cases[i].steps[k].t_ms);
		}
	}
}

UNIT_TEST(edge_limits_bucket_full)
{
	struct edge_bucket b;

	edge_bucket_init(&b, 4, 0);
	CHECK(edge_bucket_full(&b, 2, 4, 0));
	CHECK(edge_bucket_take(&b, 2, 4, 0));
	CHECK(!edge_bucket_full(&b, 2, 4, 100));
	CHECK(edge_bucket_full(&b, 2, 4, 500));
}

static struct net_addr ip(const char *s)
{
	struct net_addr a;

	if (net_addr_parse(s, 1234, &a) < 0)
		memset(&a, 0, sizeof(a));
	return a;
}

UNIT_TEST(edge_limits_concurrent)
{
	struct edge_limits *t = edge_limits_new();
	struct net_addr a = ip("192.0.2.1"), b = ip("2001:db8::1"), m = ip("::ffff:192.0.2.1");

	CHECK_INT(edge_limits_acquire(t, &a, 2, 0, 0, 0), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_acquire(t, &a, 2, 0, 0, 0), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_acquire(t, &a, 2, 0, 0, 0), EDGE_LIMIT_CONNECTIONS);
	/* the v4-mapped form is the same client */
	CHECK_INT(edge_limits_acquire(t, &m, 2, 0, 0, 0), EDGE_LIMIT_CONNECTIONS);
	CHECK_INT(edge_limits_acquire(t, &b, 2, 0, 0, 0), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_count(t, &a), 2);
	CHECK_INT(edge_limits_size(t), 2);
	edge_limits_release(t, &a);
	CHECK_INT(edge_limits_acquire(t, &a, 2, 0, 0, 0), EDGE_LIMIT_OK);
	edge_limits_release(t, &a);
	edge_limits_release(t, &a);
	edge_limits_release(t, &b);
	/* without a bucket, a source with no connection is forgotten at once */
	CHECK_INT(edge_limits_size(t), 0);
	/* releasing an unknown source is harmless */
	edge_limits_release(t, &a);
	CHECK_INT(edge_limits_size(t), 0);
	edge_limits_free(&t);
	CHECK(t == NULL);
}

UNIT_TEST(edge_limits_rate_and_sweep)
{
	struct edge_limits *t = edge_limits_new();
	struct net_addr a = ip("198.51.100.7"), b = ip("198.51.100.8");

	/* rate 1/s, burst 2, no concurrency cap */
	CHECK_INT(edge_limits_acquire(t, &a, 0, 1, 2, 1000), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_acquire(t, &a, 0, 1, 2, 1000), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_acquire(t, &a, 0, 1, 2, 1000), EDGE_LIMIT_RATE);
	CHECK_INT(edge_limits_acquire(t, &b, 0, 1, 2, 1000), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_acquire(t, &a, 0, 1, 2, 2000), EDGE_LIMIT_OK);
	edge_limits_release(t, &a);
	edge_limits_release(t, &a);
	edge_limits_release(t, &a);
	edge_limits_release(t, &b);
	/* entries with a bucket stay until the bucket is full again */
	CHECK_INT(edge_limits_size(t), 2);
	edge_limits_sweep(t, 1, 2, 2500);
	CHECK_INT(edge_limits_size(t), 1); /* b refilled (1 token used at t=1000) */
	edge_limits_sweep(t, 1, 2, 4000);
	CHECK_INT(edge_limits_size(t), 0);
	/* a concurrency refusal keeps counting right */
	CHECK_INT(edge_limits_acquire(t, &a, 1, 1, 5, 5000), EDGE_LIMIT_OK);
	CHECK_INT(edge_limits_acquire(t, &a, 1, 1, 5, 5000), EDGE_LIMIT_CONNECTIONS);
	CHECK_INT(edge_limits_count(t, &a), 1);
	edge_limits_free(&t);
}

UNIT_TEST(edge_limits_many_sources)
{
	struct edge_limits *t = edge_limits_new();
	char s[64];

	/* enough sources to make the table grow several times */
	for (int i = 0; i < 5000; i++) {
		struct net_addr a;
		snprintf(s, sizeof(s), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		a = ip(s);
		CHECK_INT(edge_limits_acquire(t, &a, 1, 0, 0, 0), EDGE_LIMIT_OK);
	}
	CHECK_INT(edge_limits_size(t), 5000);
	for (int i = 0; i < 5000; i++) {
		struct net_addr a;
		snprintf(s, sizeof(s), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		a = ip(s);
		CHECK_INT(edge_limits_acquire(t, &a, 1, 0, 0, 0), EDGE_LIMIT_CONNECTIONS);
		edge_limits_release(t, &a);
	}
	CHECK_INT(edge_limits_size(t), 0);
	edge_limits_free(&t);
}

static void set_of(struct net_cidr_set *set, const char *const *v)
{
	net_cidr_set_init(set);
	for (; *v != NULL; v++) {
		const char *err = NULL;
		if (net_cidr_set_add_str(set, *v, &err) < 0)
			abort();
	}
}

UNIT_TEST(edge_access_rules)
{
	static const struct {
		const char *allow[4], *deny[4];
		const char *client;
		bool want;
	} cases[] = {
	        {{NULL}, {NULL}, "203.0.113.9", true},
	        {{NULL}, {"203.0.113.0/24", NULL}, "203.0.113.9", false},
	        {{NULL}, {"203.0.113.0/24", NULL}, "203.0.114.9", true},
	        {{"192.0.2.0/24", NULL}, {NULL}, "192.0.2.1", true},
	        {{"192.0.2.0/24", NULL}, {NULL}, "198.51.100.1", false},
	        /* longest prefix wins: a hole in an allowed network */
	        {{"10.0.0.0/8", NULL}, {"10.9.0.0/16", NULL}, "10.9.1.1", false},
	        {{"10.0.0.0/8", NULL}, {"10.9.0.0/16", NULL}, "10.8.1.1", true},
	        /* and an allowed network inside a denied one */
	        {{"192.0.2.0/24", NULL}, {"0.0.0.0/0", NULL}, "192.0.2.77", true},
	        {{"192.0.2.0/24", NULL}, {"0.0.0.0/0", NULL}, "192.0.3.77", false},
	        /* the same prefix in both: allow wins */
	        {{"198.51.100.0/24", NULL}, {"198.51.100.0/24", NULL}, "198.51.100.5", true},
	        /* families do not mix */
	        {{NULL}, {"0.0.0.0/0", NULL}, "2001:db8::1", true},
	        {{NULL}, {"2001:db8::/32", NULL}, "2001:db8:1::1", false},
	        {{"2001:db8::/32", NULL}, {NULL}, "192.0.2.1", false},
	        /* v4-mapped clients match IPv4 rules */
	        {{NULL}, {"192.0.2.0/24", NULL}, "::ffff:192.0.2.4", false},
	        /* host routes */
	        {{NULL}, {"192.0.2.1", "192.0.2.3", NULL}, "192.0.2.3", false},
	        {{NULL}, {"192.0.2.1", "192.0.2.3", NULL}, "192.0.2.2", true},
	        /* odd prefix lengths */
	        {{NULL}, {"100.64.0.0/10", NULL}, "100.127.255.255", false},
	        {{NULL}, {"100.64.0.0/10", NULL}, "100.128.0.0", true},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct net_cidr_set allow, deny;
		struct edge_access acc;
		struct net_addr a = ip(cases[i].client);
		bool got;

		set_of(&allow, cases[i].allow);
		set_of(&deny, cases[i].deny);
		edge_access_init(&acc, &allow, &deny);
		got = edge_access_permits(&acc, &a);
		edge_access_free(&acc);
		net_cidr_set_free(&allow);
		net_cidr_set_free(&deny);
		CHECK_MSG(got == cases[i].want, "case %zu: %s -> %d", i, cases[i].client, got);
	}
}
