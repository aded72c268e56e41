/*
 * mailbox/imap/date.h -- IMAP date and date-time strings.
 *
 * RFC 3501 9: date (SEARCH BEFORE/ON/SINCE, "1-Feb-1994") and date-time
 * (APPEND and INTERNALDATE, "17-Jul-1996 02:44:25 -0700").  The parser hands
 * over atoms and strings already unquoted, so these take the bare text.
 */
#ifndef MAILBOX_IMAP_DATE_H
#define MAILBOX_IMAP_DATE_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/buf.h"

/* "d-Mon-yyyy" -> seconds since the epoch of that day's 00:00 UTC. */
bool imap_date_parse(const char *s, int64_t *day_r);
/* "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d") -> UTC seconds and the
 * zone offset in minutes. */
bool imap_datetime_parse(const char *s, int64_t *t_r, int *tz_min_r);
/* Append "\"dd-Mon-yyyy hh:mm:ss +zzzz\"" for t shown in zone tz_min. */
int imap_datetime_write(struct buf *b, int64_t t, int tz_min);

#endif
