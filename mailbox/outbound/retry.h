/*
 * mailbox/outbound/retry.h -- the outbound retry schedule, as pure functions.
 *
 * A schedule is a list of intervals, written like "1m, 5m, 15m, 30m, 1h,
 * 2h, 4h": after the first failed attempt wait 1m, after the second 5m,
 * and so on; once the list runs out its last interval repeats ("then every
 * 4h").  Attempt times are counted from the FIRST attempt, not from the
 * previous one, so the schedule does not drift when attempts themselves
 * take time or a worker was down: attempt k+1 is due at
 *
 *     first + interval[0] + ... + interval[k-1]
 *
 * never later than the expiry (default 5 days after the first attempt), so
 * a last attempt happens at the expiry itself; a message that still has
 * undelivered recipients after an attempt at or past the expiry is
 * expired: its recipients fail and a DSN goes to the sender (RFC 3464).
 * An attempt that is overdue (its time already past) is simply due now.
 *
 * Durations are a number and a unit: s, m, h, d or w (seconds to weeks);
 * an interval is at least 1 second and at most RETRY_INTERVAL_MAX, an
 * expiry at most RETRY_EXPIRY_MAX, and all arithmetic saturates, so no
 * attempt count can overflow.
 */
#ifndef MAILBOX_OUTBOUND_RETRY_H
#define MAILBOX_OUTBOUND_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RETRY_MAX_INTERVALS  64
#define RETRY_INTERVAL_MAX   (30 * 86400)  /* 30 days */
#define RETRY_EXPIRY_MAX     (365 * 86400) /* a year */
#define RETRY_DEFAULT        "1m, 5m, 15m, 30m, 1h, 2h, 4h"
#define RETRY_DEFAULT_EXPIRY (5 * 86400)

struct retry_schedule {
	uint32_t intervals[RETRY_MAX_INTERVALS]; /* seconds */
	size_t n;                                /* >= 1 */
	int64_t expiry;                          /* seconds after the first attempt */
};

/*
 * Parse a duration such as "90s", "15m", "4h", "5d", "1w" (white space
 * around it and before the unit ignored; a bare number is refused, to
 * avoid guessing the unit) into seconds, at most RETRY_EXPIRY_MAX.  0, or
 * -1 with *errstr_r.
 */
int retry_duration_parse(const char *s, int64_t *secs_r, const char **errstr_r);

/*
 * Parse a list of intervals separated by commas and/or white space into
 * out->intervals; out->expiry is set to RETRY_DEFAULT_EXPIRY.  Refuses an
 * empty list, more than RETRY_MAX_INTERVALS items, a zero or oversized
 * interval.  0, or -1 with *errstr_r (out unchanged).
 */
int retry_schedule_parse(const char *s, struct retry_schedule *out, const char **errstr_r);

/* Set the expiry from a duration string; 0 or -1 with *errstr_r. */
int retry_schedule_set_expiry(struct retry_schedule *s, const char *expiry, const char **errstr_r);

/* The default schedule: RETRY_DEFAULT, expiry RETRY_DEFAULT_EXPIRY. */
void retry_schedule_default(struct retry_schedule *out);

/*
 * When the next attempt is due, given the first attempt's time and how
 * many attempts have been made so far (attempts >= 1; 0 means none yet,
 * due at first_attempt).  Never later than first_attempt + expiry.
 */
int64_t retry_next(const struct retry_schedule *s, int64_t first_attempt, uint64_t attempts);

/* True when now is at or past first_attempt + expiry. */
bool retry_expired(const struct retry_schedule *s, int64_t first_attempt, int64_t now);

/*
 * Print the schedule back as "1m, 5m, ..." into out (size outsz), using
 * the largest unit that divides each interval; for the effective config.
 */
void retry_schedule_format(const struct retry_schedule *s, char *out, size_t outsz);

#endif
