/*
 * mailbox/imap/search_sql.c -- search keys to SQL text plus parameters.
 *
 * A recursive walk that appends to one buffer.  Numbers go inline with
 * PRIu64 formatting (they are ours); strings become "$n" and are pushed
 * on the parameter list, so no quoting or escaping of client input ever
 * happens in SQL text.  The only escaping is of regular-expression
 * metacharacters inside the HEADER parameter, where a client's "." or
 * "(" must stay literal.
 */
#include "mailbox/imap/search_sql.h"

#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECONDS_PER_DAY 86400

struct builder {
	const struct imap_search_sql_columns *c;
	struct buf sql;
	struct imap_search_sql *out;
	int next;
	const char *err;
};

void imap_search_sql_columns_default(struct imap_search_sql_columns *c)
{
	c->uid = "m.uid";
	c->modseq = "m.modseq";
	c->flags = "m.flags";
	c->internaldate = "m.internaldate";
	c->size = "m.size";
	c->sent_date = "m.hdr_date";
	c->from = "m.hdr_from";
	c->to = "m.hdr_to";
	c->cc = "m.hdr_cc";
	c->bcc = NULL;
	c->subject = "m.hdr_subject";
	c->message_id = "m.hdr_message_id";
	c->header_text = "m.search_text";
	c->body_text = "m.search_text";
	c->text = "m.search_text";
}

void imap_search_sql_free(struct imap_search_sql *out)
{
	free(out->where);
	free(out->order_by);
	for (size_t i = 0; i < out->nparams; i++)
		free(out->params[i]);
	free(out->params);
	memset(out, 0, sizeof(*out));
}

/* Push a parameter and write its placeholder. */
static void param(struct builder *b, char *value)
{
	struct imap_search_sql *o = b->out;

	o->params = xreallocarray(o->params, o->nparams + 1, sizeof(*o->params));
	o->params[o->nparams++] = value;
	buf_printf(&b->sql, "$%d", b->next++);
}

static bool need(struct builder *b, const char *col, const char *what)
{
	if (col == NULL) {
		b->err = what;
		return false;
	}
	return true;
}

/* coalesce(strpos(lower(col), lower($n)) > 0, false) */
static void substring(struct builder *b, const char *col, const char *value, bool empty_is_present)
{
	if (value[0] == '\0') {
		/* RFC 3501 6.4.4: the empty string matches when the field is
		 * there at all */
		if (empty_is_present)
			buf_printf(&b->sql, "(%s IS NOT NULL)", col);
		else
			buf_puts(&b->sql, "true");
		return;
	}
	buf_printf(&b->sql, "coalesce(strpos(lower(%s), lower(", col);
	param(b, xstrdup(value));
	buf_puts(&b->sql, ")) > 0, false)");
}

/* ASCII punctuation escaped for a Postgres ARE; other octets as they are
 * (a backslash before a letter or digit would start an escape class). */
static void regex_escape(struct buf *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x80 && !isalnum(c) && c != ' ')
			buf_puts(out, "\\");
		buf_append(out, s, 1);
	}
}

static const char *header_column(const struct imap_search_sql_columns *c, const char *field)
{
	if (strcmp(field, "from") == 0)
		return c->from;
	if (strcmp(field, "to") == 0)
		return c->to;
	if (strcmp(field, "cc") == 0)
		return c->cc;
	if (strcmp(field, "bcc") == 0)
		return c->bcc;
	if (strcmp(field, "subject") == 0)
		return c->subject;
	if (strcmp(field, "message-id") == 0)
		return c->message_id;
	return NULL;
}

static void header_key(struct builder *b, const struct imap_search_key *k)
{
	const char *col = header_column(b->c, k->field);
	struct buf re;

	if (col != NULL) {
		substring(b, col, k->str, true);
		return;
	}
	if (b->c->header_text == NULL) {
		/* a field we keep nowhere matches no message */
		buf_puts(&b->sql, "false");
		return;
	}
	/* (?n): newline-sensitive, so ^ is a line start and . stops at the
	 * line end (Postgres ARE embedded options) */
	buf_init(&re, 0);
	buf_puts(&re, "(?n)^");
	regex_escape(&re, k->field);
	buf_puts(&re, "[ \t]*:");
	if (k->str[0] != '\0') {
		buf_puts(&re, ".*");
		regex_escape(&re, k->str);
	}
	buf_append(&re, "", 1);
	buf_printf(&b->sql, "coalesce(%s ~* ", b->c->header_text);
	param(b, xstrdup((const char *)buf_ptr(&re)));
	buf_puts(&b->sql, ", false)");
	buf_free(&re);
}

static void date_key(struct builder *b, const char *col, const char *op, uint64_t day)
{
	buf_printf(&b->sql, "(%s %s to_timestamp(%" PRIu64 "))", col, op, day);
}

static void on_key(struct builder *b, const char *col, uint64_t day)
{
	buf_printf(&b->sql, "(%s >= to_timestamp(%" PRIu64 ") AND %s < to_timestamp(%" PRIu64 "))",
	           col, day, col, day + SECONDS_PER_DAY);
}

static void uid_key(struct builder *b, const struct imap_search_key *k)
{
	bool first = true;
	size_t singles = 0;

	buf_puts(&b->sql, "(");
	for (size_t i = 0; i < k->nranges; i++) {
		if (k->ranges[i].lo == k->ranges[i].hi) {
			singles++;
			continue;
		}
		buf_printf(&b->sql, "%s%s BETWEEN %" PRIu32 " AND %" PRIu32, first ? "" : " OR ",
		           b->c->uid, k->ranges[i].lo, k->ranges[i].hi);
		first = false;
	}
	if (singles > 0) {
		bool f = true;

		buf_printf(&b->sql, "%s%s = ANY(ARRAY[", first ? "" : " OR ", b->c->uid);
		for (size_t i = 0; i < k->nranges; i++) {
			if (k->ranges[i].lo != k->ranges[i].hi)
				continue;
			buf_printf(&b->sql, "%s%" PRIu32, f ? "" : ",", k->ranges[i].lo);
			f = false;
		}
		buf_puts(&b->sql, "]::bigint[])");
		first = false;
	}
	if (first)
		buf_puts(&b->sql, "false");
	buf_puts(&b->sql, ")");
}

static void key(struct builder *b, const struct imap_search_key *k)
{
	const struct imap_search_sql_columns *c = b->c;
	char sent[256];

	if (b->err != NULL)
		return;
	switch (k->type) {
	case IMAP_SK_ALL:
		buf_puts(&b->sql, "true");
		return;
	case IMAP_SK_NONE:
		buf_puts(&b->sql, "false");
		return;
	case IMAP_SK_AND:
	case IMAP_SK_OR:
		if (k->nkids == 0) {
			buf_puts(&b->sql, k->type == IMAP_SK_AND ? "true" : "false");
			return;
		}
		buf_puts(&b->sql, "(");
		for (size_t i = 0; i < k->nkids; i++) {
			if (i > 0)
				buf_puts(&b->sql, k->type == IMAP_SK_AND ? " AND " : " OR ");
			key(b, &k->kids[i]);
		}
		buf_puts(&b->sql, ")");
		return;
	case IMAP_SK_NOT:
		buf_puts(&b->sql, "(NOT ");
		key(b, &k->kids[0]);
		buf_puts(&b->sql, ")");
		return;
	case IMAP_SK_UID:
		if (need(b, c->uid, "no uid column"))
			uid_key(b, k);
		return;
	case IMAP_SK_FLAG:
		if (!need(b, c->flags, "no flags column"))
			return;
		buf_puts(&b->sql, "(");
		param(b, xstrdup(k->str));
		buf_printf(&b->sql, " = ANY(%s))", c->flags);
		return;
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
		if (!need(b, c->internaldate, "no internaldate column"))
			return;
		if (k->type == IMAP_SK_ON)
			on_key(b, c->internaldate, k->num);
		else
			date_key(b, c->internaldate,
			         k->type == IMAP_SK_BEFORE ? "<" : ">=", k->num);
		return;
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		if (!need(b, c->internaldate, "no internaldate column"))
			return;
		if (c->sent_date != NULL)
			snprintf(sent, sizeof(sent), "coalesce(%s, %s)", c->sent_date,
			         c->internaldate);
		else
			snprintf(sent, sizeof(sent), "%s", c->internaldate);
		if (k->type == IMAP_SK_SENTON)
			on_key(b, sent, k->num);
		else
			date_key(b, sent, k->type == IMAP_SK_SENTBEFORE ? "<" : ">=", k->num);
		return;
	case IMAP_SK_LARGER:
	case IMAP_SK_SMALLER:
		if (need(b, c->size, "no size column"))
			buf_printf(&b->sql, "(%s %s %" PRIu64 ")", c->size,
			           k->type == IMAP_SK_LARGER ? ">" : "<", k->num);
		return;
	case IMAP_SK_MODSEQ:
		if (need(b, c->modseq, "no modseq column"))
			buf_printf(&b->sql, "(%s >= %" PRIu64 ")", c->modseq, k->num);
		return;
	case IMAP_SK_HEADER:
		header_key(b, k);
		return;
	case IMAP_SK_BODY:
		if (need(b, c->body_text, "no body text column"))
			substring(b, c->body_text, k->str, false);
		return;
	case IMAP_SK_TEXT:
		if (need(b, c->text, "no text column"))
			substring(b, c->text, k->str, false);
		return;
	}
}

static void sort_expr(struct builder *b, struct buf *o, const struct imap_sort_key *k)
{
	const struct imap_search_sql_columns *c = b->c;
	const char *addr = NULL;

	switch (k->type) {
	case IMAP_SORT_ARRIVAL:
		buf_puts(o, c->internaldate);
		break;
	case IMAP_SORT_DATE:
		if (c->sent_date != NULL)
			buf_printf(o, "coalesce(%s, %s)", c->sent_date, c->internaldate);
		else
			buf_puts(o, c->internaldate);
		break;
	case IMAP_SORT_SIZE:
		buf_puts(o, c->size);
		break;
	case IMAP_SORT_SUBJECT:
		/* RFC 5256 2.1 base subject, approximately: white space runs
		 * to one space, leading "Re:"/"Fw:"/"Fwd:" (with a [tag])
		 * and "[tag]" and a trailing "(fwd)" removed, trimmed */
		buf_printf(o,
		           "lower(btrim(regexp_replace(regexp_replace(regexp_replace("
		           "coalesce(%s, ''), '[[:space:]]+', ' ', 'g'), "
		           "'^( *((re|fwd?) *(\\[[^]]*\\])? *:|\\[[^]]*\\]) *)+', '', 'i'), "
		           "' *\\(fwd\\) *$', '', 'i')))",
		           c->subject != NULL ? c->subject : "NULL::text");
		break;
	case IMAP_SORT_FROM:
		addr = c->from;
		break;
	case IMAP_SORT_TO:
		addr = c->to;
		break;
	case IMAP_SORT_CC:
		addr = c->cc;
		break;
	}
	if (k->type == IMAP_SORT_FROM || k->type == IMAP_SORT_TO || k->type == IMAP_SORT_CC)
		/* RFC 5256 3: the addr-mailbox of the first address */
		buf_printf(o,
		           "coalesce(lower(substring(coalesce(%s, '') from "
		           "'([^<>[:space:],\"]+)@')), '')",
		           addr != NULL ? addr : "NULL::text");
	buf_puts(o, k->reverse ? " DESC" : " ASC");
}

int imap_search_sql_build(const struct imap_search_query *q,
                          const struct imap_search_sql_columns *cols, int first_param,
                          struct imap_search_sql *out, const char **errstr_r)
{
	struct builder b = {.c = cols, .out = out, .next = first_param};

	memset(out, 0, sizeof(*out));
	buf_init(&b.sql, 0);
	key(&b, q->key);
	if (b.err != NULL)
		goto fail;
	buf_append(&b.sql, "", 1);
	out->where = xstrdup((const char *)buf_ptr(&b.sql));
	if (q->nsort > 0) {
		struct buf o;

		if (cols->internaldate == NULL || cols->size == NULL || cols->uid == NULL) {
			b.err = "sorting needs the uid, internaldate and size columns";
			goto fail;
		}
		buf_init(&o, 0);
		for (size_t i = 0; i < q->nsort; i++) {
			sort_expr(&b, &o, &q->sort[i]);
			buf_puts(&o, ", ");
		}
		/* RFC 5256 3: ties in mailbox order */
		buf_printf(&o, "%s ASC", cols->uid);
		buf_append(&o, "", 1);
		out->order_by = xstrdup((const char *)buf_ptr(&o));
		buf_free(&o);
	}
	buf_free(&b.sql);
	return 0;
fail:
	*errstr_r = b.err;
	buf_free(&b.sql);
	return -1;
}
