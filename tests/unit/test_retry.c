/*
 * tests/unit/test_retry.c -- mailbox/outbound/retry: parsing the schedule,
 * attempt times, expiry.
 */
#include "mailbox/outbound/retry.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <stdio.h>

UNIT_TEST(retry_duration_table)
{
	static const struct {
		const char *in;
		int64_t secs; /* -1: refused */
	} t[] = {
	        {"1s", 1},      {"90s", 90},
	        {"1m", 60},     {"15m", 900},
	        {"4h", 14400},  {"5d", 432000},
	        {"1w", 604800}, {" 2H ", 7200},
	        {"3 m", 180},   {"0s", 0},
	        {"", -1},       {"m", -1},
	        {"10", -1},     {"1x", -1},
	        {"1mm", -1},    {"-1m", -1},
	        {"1.5h", -1},   {"999999999999999999999s", -1},
	        {"366d", -1},   {"365d", 365 * 86400},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		int64_t v = -7;
		const char *err = NULL;
		int rc = retry_duration_parse(t[i].in, &v, &err);
		if (t[i].secs < 0) {
			CHECK_MSG(rc < 0 && err != NULL, "\"%s\" accepted", t[i].in);
		} else {
			CHECK_MSG(rc == 0 && v == t[i].secs, "\"%s\": %lld", t[i].in, (long long)v);
		}
	}
}

UNIT_TEST(retry_schedule_parse_table)
{
	static const struct {
		const char *in;
		size_t n; /* 0: refused */
		uint32_t first, last;
	} t[] = {
	        {"1m, 5m, 15m, 30m, 1h, 2h, 4h", 7, 60, 14400},
	        {"1m,5m", 2, 60, 300},
	        {"  30s  ", 1, 30, 30},
	        {"1m 5m\t10m", 3, 60, 600},
	        {",1m,,2m,", 2, 60, 120},
	        {"", 0, 0, 0},
	        {" , ", 0, 0, 0},
	        {"0s", 0, 0, 0},
	        {"1m, 31d", 0, 0, 0},
	        {"1m, 5", 0, 0, 0},
	        {"1m;5m", 0, 0, 0},
	        {"1m5m", 0, 0, 0},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		struct retry_schedule s = {.n = 99};
		const char *err = NULL;
		int rc = retry_schedule_parse(t[i].in, &s, &err);
		if (t[i].n == 0) {
			CHECK_MSG(rc < 0 && err != NULL && s.n == 99, "\"%s\" accepted", t[i].in);
			continue;
		}
		CHECK_MSG(rc == 0, "\"%s\": %s", t[i].in, err);
		CHECK_INT(s.n, t[i].n);
		CHECK_INT(s.intervals[0], t[i].first);
		CHECK_INT(s.intervals[s.n - 1], t[i].last);
		CHECK_INT(s.expiry, RETRY_DEFAULT_EXPIRY);
	}
	/* the list bound */
	char many[64 * 4 + 16] = "";
	for (i = 0; i < 65; i++)
		strcat(many, "1m,");
	struct retry_schedule s;
	const char *err = NULL;
	CHECK(retry_schedule_parse(many, &s, &err) < 0);
	many[strlen(many) - 4] = '\0';
	CHECK(retry_schedule_parse(many, &s, &err) == 0);
	CHECK_INT(s.n, 64);
}

UNIT_TEST(retry_next_default_schedule)
{
	struct retry_schedule s;
	const int64_t t0 = 1700000000;
	/* cumulative: 1m, 6m, 21m, 51m, 1h51m, 3h51m, 7h51m, then +4h each */
	static const int64_t want[] = {0, 60, 360, 1260, 3060, 6660, 13860, 28260, 42660, 57060};
	size_t k;

	retry_schedule_default(&s);
	CHECK_INT(s.n, 7);
	CHECK_INT(s.expiry, 5 * 86400);
	for (k = 0; k < ARRAY_SIZE(want); k++)
		CHECK_MSG(retry_next(&s, t0, k) == t0 + want[k], "attempt %zu: %lld", k,
		          (long long)(retry_next(&s, t0, k) - t0));
	/* every 4h until the expiry, which caps the last attempt */
	CHECK_INT(retry_next(&s, t0, 7 + 28), t0 + 28260 + 28 * 14400); /* 4d 15h51m */
	CHECK_INT(retry_next(&s, t0, 7 + 29), t0 + 5 * 86400);          /* 5d 3h51m: capped */
	CHECK_INT(retry_next(&s, t0, 1000000), t0 + 5 * 86400);
	CHECK_INT(retry_next(&s, t0, UINT64_MAX), t0 + 5 * 86400);
	/* monotonic */
	for (k = 1; k < 100; k++)
		CHECK(retry_next(&s, t0, k) >= retry_next(&s, t0, k - 1));
}

UNIT_TEST(retry_expiry)
{
	struct retry_schedule s;
	const char *err = NULL;
	const int64_t t0 = 1000;

	CHECK(retry_schedule_parse("10s, 20s", &s, &err) == 0);
	CHECK(retry_schedule_set_expiry(&s, "1m", &err) == 0);
	CHECK_INT(s.expiry, 60);
	CHECK(!retry_expired(&s, t0, t0));
	CHECK(!retry_expired(&s, t0, t0 + 59));
	CHECK(retry_expired(&s, t0, t0 + 60));
	CHECK(retry_expired(&s, t0, t0 + 6000));
	CHECK_INT(retry_next(&s, t0, 1), t0 + 10);
	CHECK_INT(retry_next(&s, t0, 2), t0 + 30);
	CHECK_INT(retry_next(&s, t0, 3), t0 + 50);
	CHECK_INT(retry_next(&s, t0, 4), t0 + 60); /* the last attempt, at expiry */
	CHECK(retry_expired(&s, t0, retry_next(&s, t0, 4)));
	CHECK(retry_schedule_set_expiry(&s, "0s", &err) < 0);
	CHECK(retry_schedule_set_expiry(&s, "400d", &err) < 0);
	CHECK(retry_schedule_set_expiry(&s, "soon", &err) < 0);
	CHECK_INT(s.expiry, 60);
	/* no overflow near the end of time */
	CHECK(!retry_expired(&s, INT64_MAX - 10, INT64_MAX - 1));
	CHECK_INT(retry_next(&s, INT64_MAX - 10, 5), INT64_MAX);
}

UNIT_TEST(retry_schedule_format_roundtrip)
{
	struct retry_schedule s, back;
	const char *err = NULL;
	char out[256];

	CHECK(retry_schedule_parse("30s, 90s, 1m, 120m, 1d, 7d, 2w", &s, &err) == 0);
	retry_schedule_format(&s, out, sizeof(out));
	CHECK_STR(out, "30s, 90s, 1m, 2h, 1d, 1w, 2w");
	CHECK(retry_schedule_parse(out, &back, &err) == 0);
	CHECK_INT(back.n, s.n);
	CHECK_MEM(back.intervals, s.intervals, s.n * sizeof(s.intervals[0]));
	retry_schedule_default(&s);
	retry_schedule_format(&s, out, sizeof(out));
	CHECK_STR(out, RETRY_DEFAULT);
	retry_schedule_format(&s, out, 8); /* truncated but terminated */
	CHECK(strlen(out) < 8);
}
