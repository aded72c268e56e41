/*
 * mailbox/imap/search_sql.h -- a search program (search.h) as a Postgres
 * WHERE clause and ORDER BY list, with the strings as parameters.
 *
 * Pure: no libpq, no I/O.  The Postgres store composes
 *
 *   SELECT m.uid, m.modseq FROM messages m
 *    WHERE m.mailbox_id = $1 AND NOT m.expunged AND (<where>)
 *    ORDER BY <order_by>
 *
 * passing its own parameters first and ours from first_param on.  Every
 * client string travels as a parameter ($n), never inside the SQL text;
 * only numbers the session produced (UIDs, sizes, dates, MODSEQs) are
 * written inline.  Every leaf is NULL-safe (coalesce), so NOT and OR
 * keep their two-valued IMAP meaning.
 *
 * Semantics (RFC 3501 6.4.4):
 *   - substrings: strpos(lower(column), lower($n)) > 0, which has no
 *     wildcard characters to escape (unlike LIKE); case folding is
 *     Postgres lower() on the database's UTF-8 locale;
 *   - HEADER on a field with its own column (From, To, Cc, Bcc, Subject,
 *     Message-ID) searches that column; any other field, a case-
 *     insensitive newline-sensitive regular expression on the header
 *     text, anchored at a line start: "(?n)^field[ \t]*:.*value" with
 *     every ASCII punctuation character of field and value escaped;
 *   - an empty string matches every message that has the field;
 *   - dates are UTC days ("internaldate >= to_timestamp(day)"), SENT*
 *     use the Date: header and fall back to INTERNALDATE;
 *   - SORT (RFC 5256): ARRIVAL internaldate, DATE the Date: header (or
 *     INTERNALDATE), SIZE, SUBJECT an approximation of the base subject
 *     (leading "Re:", "Fw:", "Fwd:" and "[tag]" and a trailing "(fwd)"
 *     removed, lower-cased), FROM/TO/CC the lower-cased local part of
 *     the first address; ties by UID ascending.
 */
#ifndef MAILBOX_IMAP_SEARCH_SQL_H
#define MAILBOX_IMAP_SEARCH_SQL_H

#include "mailbox/imap/search.h"

#include <stddef.h>

/* SQL expressions for the columns searched; NULL means "not stored". */
struct imap_search_sql_columns {
	const char *uid, *modseq, *flags, *internaldate, *size;
	const char *sent_date; /* Date: as timestamptz */
	const char *from, *to, *cc, *bcc, *subject, *message_id;
	const char *header_text; /* decoded header, "Name: value\n" per field */
	const char *body_text;   /* decoded body text */
	const char *text;        /* header and body text together */
};

/*
 * The columns of mailbox/store/schema.c's messages table (alias m):
 * hdr_from/hdr_to/hdr_cc/hdr_subject/hdr_date/hdr_message_id, and the one
 * search_text column for header text, body text and TEXT alike (the
 * schema has no separate body column, so BODY also matches header text
 * until it gets one: point body_text at it then).
 */
void imap_search_sql_columns_default(struct imap_search_sql_columns *c);

struct imap_search_sql {
	char *where;    /* a boolean expression */
	char *order_by; /* "expr ASC, ..., uid ASC"; NULL without sort keys */
	char **params;  /* text parameters, $first_param.. in order */
	size_t nparams;
};

/*
 * Build q into *out (freed with imap_search_sql_free, also after an
 * error).  Parameters are numbered from first_param (>= 1).  0, or -1
 * with *errstr_r when a needed column is NULL in cols.
 */
int imap_search_sql_build(const struct imap_search_query *q,
                          const struct imap_search_sql_columns *cols, int first_param,
                          struct imap_search_sql *out, const char **errstr_r);
void imap_search_sql_free(struct imap_search_sql *out);

#endif
