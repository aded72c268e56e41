/*
 * mailbox/mime/date.c -- Date: header to seconds since the epoch.
 *
 * RFC 5322 3.3 date-time, with the obsolete forms of 4.3 that real mail
 * still carries: optional day name, two- and three-digit years, alphabetic
 * zones (UT, GMT, EST ...; military letters count as -0000), comments and
 * missing seconds.  Used for SORT DATE and SENTBEFORE/SENTON/SENTSINCE;
 * anything we cannot read reports false and the caller stores no date.
 */
#include "mailbox/mime/mime_private.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *skip(const char *s)
{
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == ',')
			s++;
		if (*s != '(')
			return s;
		int depth = 0;
		do {
			if (*s == '\\' && s[1] != '\0')
				s++;
			else if (*s == '(')
				depth++;
			else if (*s == ')')
				depth--;
			s++;
		} while (depth > 0 && *s != '\0');
	}
}

static int read_num(const char **sp, int maxdigits, int *ndigits)
{
	const char *s = *sp;
	int v = 0, n = 0;

	while (n < maxdigits && isdigit((unsigned char)*s)) {
		v = v * 10 + (*s - '0');
		s++;
		n++;
	}
	*sp = s;
	*ndigits = n;
	return v;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
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

static bool read_zone(const char *s, int *off_min)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = {
	        {"UT", 0},   {"UTC", 0},  {"GMT", 0},  {"Z", 0},    {"EST", -5}, {"EDT", -4},
	        {"CST", -6}, {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7},
	};
	size_t n = 0;

	*off_min = 0;
	if (*s == '+' || *s == '-') {
		int sign = *s == '-' ? -1 : 1, nd, v;

		s++;
		v = read_num(&s, 4, &nd);
		if (nd != 4 || v % 100 > 59)
			return false;
		*off_min = sign * (v / 100 * 60 + v % 100);
		return true;
	}
	while (isalpha((unsigned char)s[n]))
		n++;
	if (n == 0)
		return true; /* no zone: take it as UTC */
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
		if (strlen(zones[i].name) == n && strncasecmp(s, zones[i].name, n) == 0) {
			*off_min = zones[i].hours * 60;
			return true;
		}
	/* RFC 5322 4.3: other (military) zones are to be taken as -0000 */
	return true;
}

bool mime_date_parse(const char *s, int64_t *t_r)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	int day, year, hour, min, sec = 0, nd, off;
	unsigned mon = 0;

	s = skip(s);
	if (isalpha((unsigned char)*s)) {
		/* day-of-week */
		while (isalpha((unsigned char)*s))
			s++;
		s = skip(s);
	}
	day = read_num(&s, 2, &nd);
	if (nd == 0 || day < 1 || day > 31)
		return false;
	s = skip(s);
	if (*s == '-')
		s++;
	for (unsigned i = 0; i < 12; i++)
		if (strncasecmp(s, months + i * 3, 3) == 0)
			mon = i + 1;
	if (mon == 0)
		return false;
	while (isalpha((unsigned char)*s))
		s++;
	s = skip(s);
	if (*s == '-')
		s++;
	year = read_num(&s, 4, &nd);
	if (nd < 2)
		return false;
	/* RFC 5322 4.3: 2-digit years < 50 are 20xx, others and 3-digit 19xx */
	if (nd == 2)
		year += year < 50 ? 2000 : 1900;
	else if (nd == 3)
		year += 1900;
	s = skip(s);
	hour = read_num(&s, 2, &nd);
	if (nd == 0 || *s != ':')
		return false;
	s++;
	min = read_num(&s, 2, &nd);
	if (nd == 0)
		return false;
	if (*s == ':') {
		s++;
		sec = read_num(&s, 2, &nd);
		if (nd == 0)
			return false;
	}
	if (hour > 23 || min > 59 || sec > 60)
		return false;
	s = skip(s);
	if (!read_zone(s, &off))
		return false;
	*t_r = days_from_civil(year, mon, (unsigned)day) * 86400 + hour * 3600 + min * 60 + sec -
	       (int64_t)off * 60;
	return true;
}
