/*
 * tests/unit/test_imap_search_sql.c -- SEARCH/SORT arguments through the
 * search parser (mailbox/imap/search.c) and the SQL builder
 * (mailbox/imap/search_sql.c): the exact WHERE text, parameters and
 * ORDER BY for a table of programs, client strings never in the SQL
 * text, and parser errors.  The SQL is also run on a real PostgreSQL by
 * tests/integration/test_imap_search_sql.py.
 */
#include "tests/unit/unit.h"

#include "mailbox/imap/parser.h"
#include "mailbox/imap/search.h"
#include "mailbox/imap/search_sql.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* A mailbox of 5 messages with these UIDs (sequence number i+1). */
static const uint32_t uids[] = {3, 7, 8, 9, 20};

struct built {
	int rc;
	bool bad_charset;
	const char *err;
	struct imap_search_sql sql;
};

/* Parse "tag SEARCH <args>" (or SORT) and build its SQL. */
static void build(const char *args, bool sort, struct built *out)
{
	struct imap_parser *p = imap_parser_new(NULL);
	char *line = xasprintf("t %s %s\r\n", sort ? "SORT" : "SEARCH", args);
	size_t used;
	enum imap_parse_status st;
	const struct imap_command *c;
	struct imap_search_program prog;
	struct imap_search_sql_columns cols;
	struct imap_search_query q;

	memset(out, 0, sizeof(*out));
	st = imap_parser_feed(p, line, strlen(line), &used);
	if (st != IMAP_PARSE_COMMAND) {
		out->rc = -2;
		goto done;
	}
	c = imap_parser_command(p);
	out->rc = imap_search_parse(c->args, c->nargs, sort, uids, sizeof(uids) / sizeof(uids[0]),
	                            &prog, &out->bad_charset, &out->err);
	if (out->rc == 0) {
		imap_search_sql_columns_default(&cols);
		q.key = &prog.root;
		q.sort = prog.sort;
		q.nsort = prog.nsort;
		out->rc = imap_search_sql_build(&q, &cols, 2, &out->sql, &out->err);
	}
	imap_search_program_free(&prog);
done:
	free(line);
	imap_parser_free(&p);
}

static const struct {
	const char *args;
	const char *where;
	const char *params; /* joined with '|' */
} where_table[] = {
        {"ALL", "(true)", ""},
        {"SEEN", "(($2 = ANY(m.flags)))", "\\Seen"},
        {"unseen", "((NOT ($2 = ANY(m.flags))))", "\\Seen"},
        {"KEYWORD $Junk UNKEYWORD $Label1", "(($2 = ANY(m.flags)) AND (NOT ($3 = ANY(m.flags))))",
         "$Junk|$Label1"},
        {"NEW", "(false)", ""},
        {"OLD", "(true)", ""},
        {"1:2", "((m.uid BETWEEN 3 AND 7))", ""},
        {"2,4", "((m.uid = ANY(ARRAY[7,9]::bigint[])))", ""},
        {"2,4:*", "((m.uid BETWEEN 9 AND 20 OR m.uid = ANY(ARRAY[7]::bigint[])))", ""},
        {"9", "(false)", ""},
        {"UID 5:8", "((m.uid BETWEEN 5 AND 8))", ""},
        {"UID 4:2,6,*", "((m.uid BETWEEN 2 AND 4 OR m.uid = ANY(ARRAY[6,20]::bigint[])))", ""},
        {"UID 30:*", "((m.uid BETWEEN 20 AND 30))", ""},
        {"FROM alice", "(coalesce(strpos(lower(m.hdr_from), lower($2)) > 0, false))", "alice"},
        {"SUBJECT \"\"", "((m.hdr_subject IS NOT NULL))", ""},
        {"TO \"50%_off\"", "(coalesce(strpos(lower(m.hdr_to), lower($2)) > 0, false))", "50%_off"},
        {"BCC x", "(coalesce(m.search_text ~* $2, false))", "(?n)^bcc[ \t]*:.*x"},
        {"HEADER List-Id \"<a.b>\"", "(coalesce(m.search_text ~* $2, false))",
         "(?n)^list\\-id[ \t]*:.*\\<a\\.b\\>"},
        {"HEADER X-Spam \"\"", "(coalesce(m.search_text ~* $2, false))", "(?n)^x\\-spam[ \t]*:"},
        {"HEADER Message-ID abc",
         "(coalesce(strpos(lower(m.hdr_message_id), lower($2)) > 0, false))", "abc"},
        {"BODY \"it's\"", "(coalesce(strpos(lower(m.search_text), lower($2)) > 0, false))", "it's"},
        {"TEXT \"\"", "(true)", ""},
        {"BEFORE 1-Feb-1994", "((m.internaldate < to_timestamp(760060800)))", ""},
        {"ON 1-Feb-1994",
         "((m.internaldate >= to_timestamp(760060800) AND m.internaldate < "
         "to_timestamp(760147200)))",
         ""},
        {"SINCE \"1-Feb-1994\"", "((m.internaldate >= to_timestamp(760060800)))", ""},
        {"SENTBEFORE 1-Feb-1994",
         "((coalesce(m.hdr_date, m.internaldate) < to_timestamp(760060800)))", ""},
        {"LARGER 100 SMALLER 2000", "((m.size > 100) AND (m.size < 2000))", ""},
        {"MODSEQ 620162338", "((m.modseq >= 620162338))", ""},
        {"MODSEQ \"/flags/\\\\draft\" all 620162338", "((m.modseq >= 620162338))", ""},
        {"NOT (FROM a OR TO b CC c)",
         "((NOT (coalesce(strpos(lower(m.hdr_from), lower($2)) > 0, false) AND "
         "(coalesce(strpos(lower(m.hdr_to), lower($3)) > 0, false) OR "
         "coalesce(strpos(lower(m.hdr_cc), lower($4)) > 0, false)))))",
         "a|b|c"},
        {"CHARSET UTF-8 SUBJECT \"caf\xc3\xa9\"",
         "(coalesce(strpos(lower(m.hdr_subject), lower($2)) > 0, false))", "caf\xc3\xa9"},
        {"RETURN (MIN COUNT) DELETED", "(($2 = ANY(m.flags)))", "\\Deleted"},
        /* an injection attempt is only ever a parameter */
        {"SUBJECT \"x') OR true; --\"",
         "(coalesce(strpos(lower(m.hdr_subject), lower($2)) > 0, false))", "x') OR true; --"},
};

UNIT_TEST(imap_search_sql_where)
{
	for (size_t i = 0; i < sizeof(where_table) / sizeof(where_table[0]); i++) {
		struct built b;
		char params[512] = "";
		size_t off = 0;

		build(where_table[i].args, false, &b);
		CHECK_MSG(b.rc == 0, "%s: rc %d (%s)", where_table[i].args, b.rc,
		          b.err ? b.err : "");
		CHECK_MSG(strcmp(b.sql.where, where_table[i].where) == 0, "%s:\n got %s\nwant %s",
		          where_table[i].args, b.sql.where, where_table[i].where);
		for (size_t k = 0; k < b.sql.nparams; k++)
			off += (size_t)snprintf(params + off, sizeof(params) - off, "%s%s",
			                        k ? "|" : "", b.sql.params[k]);
		CHECK_MSG(strcmp(params, where_table[i].params) == 0, "%s: params %s, want %s",
		          where_table[i].args, params, where_table[i].params);
		CHECK(b.sql.order_by == NULL);
		imap_search_sql_free(&b.sql);
	}
}

UNIT_TEST(imap_search_sql_sort)
{
	static const struct {
		const char *args;
		const char *order;
	} t[] = {
	        {"(ARRIVAL) UTF-8 ALL", "m.internaldate ASC, m.uid ASC"},
	        {"(REVERSE DATE SIZE) US-ASCII ALL",
	         "coalesce(m.hdr_date, m.internaldate) DESC, m.size ASC, m.uid ASC"},
	        {"(FROM) UTF-8 ALL", "coalesce(lower(substring(coalesce(m.hdr_from, '') from "
	                             "'([^<>[:space:],\"]+)@')), '') ASC, m.uid ASC"},
	        {"(REVERSE SUBJECT) UTF-8 ALL",
	         "lower(btrim(regexp_replace(regexp_replace(regexp_replace(coalesce(m.hdr_subject, "
	         "''), '[[:space:]]+', ' ', 'g'), '^( *((re|fwd?) *(\\[[^]]*\\])? *:|\\[[^]]*\\]) "
	         "*)+', '', 'i'), ' *\\(fwd\\) *$', '', 'i'))) DESC, m.uid ASC"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct built b;

		build(t[i].args, true, &b);
		CHECK_MSG(b.rc == 0, "%s: rc %d (%s)", t[i].args, b.rc, b.err ? b.err : "");
		CHECK_MSG(b.sql.order_by != NULL && strcmp(b.sql.order_by, t[i].order) == 0,
		          "%s:\n got %s\nwant %s", t[i].args,
		          b.sql.order_by ? b.sql.order_by : "(null)", t[i].order);
		imap_search_sql_free(&b.sql);
	}
}

UNIT_TEST(imap_search_parse_errors)
{
	static const struct {
		const char *args;
		bool sort;
		bool bad_charset;
	} t[] = {
	        {"", false, false},
	        {"BOGUS", false, false},
	        {"FROM", false, false},
	        {"BEFORE 32-Jan-2024", false, false},
	        {"LARGER -1", false, false},
	        {"LARGER x", false, false},
	        {"UID x", false, false},
	        {"KEYWORD \\Seen", false, false},
	        {"HEADER \"\" x", false, false},
	        {"HEADER \"a:b\" x", false, false},
	        {"OR SEEN", false, false},
	        {"NOT", false, false},
	        {"$", false, false},
	        {"1:x", false, false},
	        {"RETURN (SAVE) ALL", false, false},
	        {"RETURN ALL", false, false},
	        {"CHARSET KOI8-R ALL", false, true},
	        {"CHARSET", false, false},
	        {"MODSEQ \"/flags/x\" bogus 5", false, false},
	        {"() ALL", false, false},
	        {"(ARRIVAL) ALL", true, true}, /* "ALL" read as the charset */
	        {"(ARRIVAL) KOI8-R ALL", true, true},
	        {"(BOGUS) UTF-8 ALL", true, false},
	        {"(REVERSE) UTF-8 ALL", true, false},
	        {"ARRIVAL UTF-8 ALL", true, false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct built b;

		build(t[i].args, t[i].sort, &b);
		CHECK_MSG(b.rc == -1, "%s: rc %d", t[i].args, b.rc);
		CHECK_MSG(b.bad_charset == t[i].bad_charset, "%s", t[i].args);
		CHECK(b.err != NULL);
		imap_search_sql_free(&b.sql);
	}
}

/* "NOT NOT ... ALL" deeper than the bound is refused, not a stack
 * overflow. */
UNIT_TEST(imap_search_parse_depth)
{
	struct buf a;
	struct built b;

	buf_init(&a, 0);
	for (int i = 0; i < 1000; i++)
		buf_puts(&a, "NOT ");
	buf_puts(&a, "ALL");
	buf_append(&a, "", 1);
	build((const char *)buf_ptr(&a), false, &b);
	CHECK_INT(b.rc, -1);
	imap_search_sql_free(&b.sql);
	buf_free(&a);
}

/* A column left NULL in the table is an error, not bad SQL. */
UNIT_TEST(imap_search_sql_missing_column)
{
	struct imap_search_sql_columns cols;
	struct imap_search_key k = {.type = IMAP_SK_BODY, .str = (char *)"x"};
	struct imap_search_query q = {.key = &k};
	struct imap_search_sql out;
	const char *err = NULL;

	imap_search_sql_columns_default(&cols);
	cols.body_text = NULL;
	CHECK_INT(imap_search_sql_build(&q, &cols, 1, &out, &err), -1);
	CHECK(err != NULL);
	imap_search_sql_free(&out);
	/* a HEADER field with no column and no header text matches nothing */
	imap_search_sql_columns_default(&cols);
	cols.header_text = NULL;
	k.type = IMAP_SK_HEADER;
	k.field = (char *)"x-foo";
	CHECK_INT(imap_search_sql_build(&q, &cols, 1, &out, &err), 0);
	CHECK_STR(out.where, "false");
	CHECK_INT(out.nparams, 0);
	imap_search_sql_free(&out);
}
