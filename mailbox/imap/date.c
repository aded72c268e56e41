/*
 * mailbox/imap/date.c -- IMAP date and date-time, both ways.
 *
 * Strict to the grammar (RFC 3501 9 date-day, date-month, date-year,
 * time, zone) but case-insensitive in month names, as RFC 3501 says
 * strings are.  Calendar arithmetic is done here (civil-from-days /
 * days-from-civil) so no process-wide time zone state is touched.
 */
#include "mailbox/imap/date.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char **sp, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*sp)[i] < '0' || (*sp)[i] > '9')
			return -1;
		v = v * 10 + ((*sp)[i] - '0');
	}
	*sp += n;
	return v;
}

static bool days_in_month_ok(int y, unsigned m, int d)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	if (d < 1 || d > mdays[m - 1])
		return false;
	return !(m == 2 && d == 29 && !leap);
}

/* date-day "-" date-month "-" date-year; *sp advanced past it */
static bool read_date(const char **sp, bool fixed, int64_t *days_r)
{
	const char *s = *sp;
	int day, year;
	unsigned mon = 0;

	if (fixed && *s == ' ') {
		s++;
		day = digits(&s, 1);
	} else if (s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9') {
		day = digits(&s, 2);
	} else {
		day = fixed ? -1 : digits(&s, 1);
	}
	if (day < 1 || *s != '-')
		return false;
	s++;
	for (unsigned i = 0; i < 12; i++)
		if (strncasecmp(s, months[i], 3) == 0)
			mon = i + 1;
	if (mon == 0 || s[3] != '-')
		return false;
	s += 4;
	year = digits(&s, 4);
	if (year < 0 || !days_in_month_ok(year, mon, day))
		return false;
	*days_r = days_from_civil(year, mon, (unsigned)day);
	*sp = s;
	return true;
}

bool imap_date_parse(const char *s, int64_t *day_r)
{
	int64_t days;

	if (!read_date(&s, false, &days) || *s != '\0')
		return false;
	*day_r = days * 86400;
	return true;
}

bool imap_datetime_parse(const char *s, int64_t *t_r, int *tz_min_r)
{
	int64_t days;
	int h, m, sec, zh, zm, sign;

	if (!read_date(&s, true, &days) || *s++ != ' ')
		return false;
	if ((h = digits(&s, 2)) < 0 || *s++ != ':' || (m = digits(&s, 2)) < 0 || *s++ != ':' ||
	    (sec = digits(&s, 2)) < 0 || *s++ != ' ')
		return false;
	if (h > 23 || m > 59 || sec > 60)
		return false;
	if (*s != '+' && *s != '-')
		return false;
	sign = *s++ == '-' ? -1 : 1;
	if ((zh = digits(&s, 2)) < 0 || (zm = digits(&s, 2)) < 0 || *s != '\0' || zm > 59)
		return false;
	*tz_min_r = sign * (zh * 60 + zm);
	*t_r = days * 86400 + h * 3600 + m * 60 + sec - (int64_t)*tz_min_r * 60;
	return true;
}

int imap_datetime_write(struct buf *b, int64_t t, int tz_min)
{
	int64_t local = t + (int64_t)tz_min * 60, days, y;
	int64_t secs;
	unsigned mo, d;
	int az = abs(tz_min);

	days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
	secs = local - days * 86400;
	civil_from_days(days, &y, &mo, &d);
	return buf_printf(b, "\"%02u-%s-%04lld %02d:%02d:%02d %c%02d%02d\"", d, months[mo - 1],
	                  (long long)y, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
	                  tz_min < 0 ? '-' : '+', az / 60, az % 60);
}
