/*
 * mailbox/outbound/retry.c -- the retry schedule.
 *
 * Everything here is arithmetic on seconds; the queue (another module)
 * stores the first-attempt time and the attempt count per message and
 * asks retry_next() when to try again.  Sums saturate at INT64_MAX rather
 * than overflow, and are clamped to the expiry anyway.
 */
#include "mailbox/outbound/retry.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const struct {
	char unit;
	int64_t secs;
} units[] = {
        {'w', 7 * 86400}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1},
};

/* Parse one duration from [p, end); 0 or -1. */
static int parse_one(const char *p, const char *end, int64_t *secs_r, const char **errstr_r)
{
	int64_t v = 0;
	size_t i;

	while (p < end && isspace((unsigned char)*p))
		p++;
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	if (p == end) {
		*errstr_r = "empty duration";
		return -1;
	}
	if (!isdigit((unsigned char)*p)) {
		*errstr_r = "a duration starts with a number";
		return -1;
	}
	while (p < end && isdigit((unsigned char)*p)) {
		if (v > (INT64_MAX - 9) / 10) {
			*errstr_r = "duration too large";
			return -1;
		}
		v = v * 10 + (*p - '0');
		p++;
	}
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p != 1) {
		*errstr_r = "a duration needs one unit: s, m, h, d or w";
		return -1;
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (tolower((unsigned char)*p) != units[i].unit)
			continue;
		if (v > RETRY_EXPIRY_MAX / units[i].secs) {
			*errstr_r = "duration too large";
			return -1;
		}
		*secs_r = v * units[i].secs;
		return 0;
	}
	*errstr_r = "a duration needs one unit: s, m, h, d or w";
	return -1;
}

int retry_duration_parse(const char *s, int64_t *secs_r, const char **errstr_r)
{
	return parse_one(s, s + strlen(s), secs_r, errstr_r);
}

int retry_schedule_parse(const char *s, struct retry_schedule *out, const char **errstr_r)
{
	struct retry_schedule tmp = {.n = 0, .expiry = RETRY_DEFAULT_EXPIRY};
	const char *p = s;

	for (;;) {
		const char *start, *end;
		int64_t v;

		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		/* an item: digits, optional spaces, a unit letter */
		while (isdigit((unsigned char)*p))
			p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (isalpha((unsigned char)*p))
			p++;
		end = p;
		if (*p != '\0' && *p != ',' && !isspace((unsigned char)*p)) {
			*errstr_r = "a duration needs one unit: s, m, h, d or w";
			return -1;
		}
		if (parse_one(start, end, &v, errstr_r) < 0)
			return -1;
		if (v <= 0) {
			*errstr_r = "a retry interval must be at least 1s";
			return -1;
		}
		if (v > RETRY_INTERVAL_MAX) {
			*errstr_r = "a retry interval must be at most 30d";
			return -1;
		}
		if (tmp.n == RETRY_MAX_INTERVALS) {
			*errstr_r = "too many retry intervals (at most 64)";
			return -1;
		}
		tmp.intervals[tmp.n++] = (uint32_t)v;
	}
	if (tmp.n == 0) {
		*errstr_r = "empty retry schedule";
		return -1;
	}
	*out = tmp;
	return 0;
}

int retry_schedule_set_expiry(struct retry_schedule *s, const char *expiry, const char **errstr_r)
{
	int64_t v;

	if (retry_duration_parse(expiry, &v, errstr_r) < 0)
		return -1;
	if (v <= 0 || v > RETRY_EXPIRY_MAX) {
		*errstr_r = "the expiry must be between 1s and 365d";
		return -1;
	}
	s->expiry = v;
	return 0;
}

void retry_schedule_default(struct retry_schedule *out)
{
	const char *err;
	int rc = retry_schedule_parse(RETRY_DEFAULT, out, &err);

	(void)rc; /* the constant parses; the unit test proves it */
	out->expiry = RETRY_DEFAULT_EXPIRY;
}

static int64_t sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

int64_t retry_next(const struct retry_schedule *s, int64_t first_attempt, uint64_t attempts)
{
	int64_t wait = 0, limit = s->expiry;
	uint64_t listed, i;

	if (attempts == 0)
		return first_attempt;
	listed = attempts < s->n ? attempts : s->n;
	for (i = 0; i < listed; i++)
		wait += s->intervals[i];
	if (attempts > s->n) {
		uint64_t more = attempts - s->n, last = s->intervals[s->n - 1];
		/* past the expiry either way: no need to multiply further */
		if (more > (uint64_t)limit / last + 1)
			wait = limit;
		else
			wait = sat_add(wait, (int64_t)(more * last));
	}
	if (wait > limit)
		wait = limit;
	return sat_add(first_attempt, wait);
}

bool retry_expired(const struct retry_schedule *s, int64_t first_attempt, int64_t now)
{
	return now >= sat_add(first_attempt, s->expiry);
}

void retry_schedule_format(const struct retry_schedule *s, char *out, size_t outsz)
{
	size_t i, u, used = 0;

	if (outsz == 0)
		return;
	out[0] = '\0';
	for (i = 0; i < s->n; i++) {
		int64_t v = s->intervals[i];
		for (u = 0; u < sizeof(units) / sizeof(units[0]); u++)
			if (v % units[u].secs == 0)
				break;
		int n = snprintf(out + used, outsz - used, "%s%" PRId64 "%c", i ? ", " : "",
		                 v / units[u].secs, units[u].unit);
		if (n < 0 || (size_t)n >= outsz - used)
			return; /* truncated, still NUL-terminated */
		used += (size_t)n;
	}
}
