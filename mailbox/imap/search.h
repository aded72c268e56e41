/*
 * mailbox/imap/search.h -- SEARCH and SORT criteria as a program the store
 * runs.
 *
 * RFC 3501 6.4.4 (and RFC 9051 6.4.4, RFC 7162 3.1.5 MODSEQ, RFC 5256
 * SORT, RFC 4731 ESEARCH) search keys are parsed here, once, into a small
 * tree.  Everything that depends on the session is resolved while
 * parsing: message sequence numbers become UID ranges (the caller passes
 * the mailbox's UID list), so the store only ever sees UIDs; SEARCH keys
 * with a fixed meaning in our model are folded (RECENT and NEW match
 * nothing, OLD everything: we keep no \Recent, RFC 9051 dropped it).
 * The tree is what struct imap_store_ops.search receives; the Postgres
 * store turns it into SQL with mailbox/imap/search_sql.h, the test store
 * evaluates it directly.
 *
 * Semantics the store must implement (RFC 3501 6.4.4):
 *   - string keys match a case-insensitive substring; the empty string
 *     matches every message that has the field at all;
 *   - HEADER field names are lower-cased here; FROM/TO/CC/BCC/SUBJECT are
 *     HEADER keys on those fields;
 *   - BODY matches the decoded body text, TEXT header and body text;
 *   - dates compare the UTC day of INTERNALDATE (BEFORE/ON/SINCE) or of
 *     the Date: header, falling back to INTERNALDATE (SENT*).
 */
#ifndef MAILBOX_IMAP_SEARCH_H
#define MAILBOX_IMAP_SEARCH_H

#include "mailbox/imap/parser.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_sk_type {
	IMAP_SK_ALL = 0, /* every message */
	IMAP_SK_NONE,    /* no message */
	IMAP_SK_AND,     /* every kid matches */
	IMAP_SK_OR,      /* either of the two kids matches */
	IMAP_SK_NOT,     /* the one kid does not match */
	IMAP_SK_UID,     /* uid within ranges */
	IMAP_SK_FLAG,    /* str is among the flags ("\\Seen", "$Label1") */
	IMAP_SK_BEFORE,  /* internaldate < num (a UTC day start) */
	IMAP_SK_ON,      /* num <= internaldate < num + 1 day */
	IMAP_SK_SINCE,   /* internaldate >= num */
	IMAP_SK_SENTBEFORE,
	IMAP_SK_SENTON,
	IMAP_SK_SENTSINCE,
	IMAP_SK_LARGER,  /* size > num */
	IMAP_SK_SMALLER, /* size < num */
	IMAP_SK_HEADER,  /* header field (lower-case) contains str */
	IMAP_SK_BODY,    /* body text contains str */
	IMAP_SK_TEXT,    /* header or body text contains str */
	IMAP_SK_MODSEQ,  /* modseq >= num (RFC 7162) */
};

struct imap_uid_range {
	uint32_t lo, hi; /* lo <= hi, both real UIDs */
};

struct imap_search_key {
	enum imap_sk_type type;
	struct imap_search_key *kids; /* AND: nkids; OR: 2; NOT: 1 */
	size_t nkids;
	char *field; /* HEADER */
	char *str;   /* FLAG, HEADER, BODY, TEXT (UTF-8) */
	uint64_t num;
	struct imap_uid_range *ranges; /* UID: sorted, disjoint, merged */
	size_t nranges;
};

enum imap_sort_type {
	IMAP_SORT_ARRIVAL = 0,
	IMAP_SORT_CC,
	IMAP_SORT_DATE,
	IMAP_SORT_FROM,
	IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT,
	IMAP_SORT_TO,
};

struct imap_sort_key {
	enum imap_sort_type type;
	bool reverse;
};

/* What ops.search receives. */
struct imap_search_query {
	const struct imap_search_key *key;
	const struct imap_sort_key *sort; /* SORT: ties are broken by UID */
	size_t nsort;
};

/* ESEARCH RETURN options (RFC 4731). */
enum imap_search_return {
	IMAP_SEARCH_RET_MIN = 1 << 0,
	IMAP_SEARCH_RET_MAX = 1 << 1,
	IMAP_SEARCH_RET_ALL = 1 << 2,
	IMAP_SEARCH_RET_COUNT = 1 << 3,
};

/* A parsed SEARCH/SORT command. */
struct imap_search_program {
	struct imap_search_key root; /* an AND of the keys given */
	bool esearch;                /* RETURN (...) was given */
	unsigned ret;                /* enum imap_search_return; 0 with esearch: ALL */
	bool modseq;                 /* a MODSEQ key was used (RFC 7162 3.1.5) */
	struct imap_sort_key *sort;  /* SORT only */
	size_t nsort;
};

/*
 * Parse SEARCH arguments args[0..n) ("[RETURN (...)] [CHARSET x] keys...")
 * or, with sort true, SORT arguments ("[RETURN (...)] (criteria) charset
 * keys...").  uids[0..nuids) is the selected mailbox's UID list
 * (sequence number i+1 is uids[i]) for sequence-set keys and "*".
 * Returns 0, or -1 with *errstr_r (static text) and *bad_charset_r true
 * when the only problem is an unsupported charset (NO [BADCHARSET]
 * rather than BAD).  The program is freed with imap_search_program_free
 * either way.
 */
int imap_search_parse(const struct imap_arg *args, size_t n, bool sort, const uint32_t *uids,
                      size_t nuids, struct imap_search_program *out, bool *bad_charset_r,
                      const char **errstr_r);
void imap_search_program_free(struct imap_search_program *p);

/* Free a key's contents (not the key itself). */
void imap_search_key_clear(struct imap_search_key *k);

#endif
