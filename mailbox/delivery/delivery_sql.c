/*
 * mailbox/delivery/delivery_sql.c -- build the delivery statement (see
 * delivery_sql.h).
 *
 * Parameters are numbered as they are added, so a statement only names
 * the parameters it uses (PostgreSQL refuses a parameter whose type it
 * cannot infer, which an unused one would be).  Every parameter carries
 * an explicit cast for the same reason.
 */
#include "mailbox/delivery/delivery_sql.h"

#include "mailbox/store/pg.h"
#include "mailbox/store/schema.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qb {
	struct buf sql;
	char **params;
	int n, cap;
};

/* Add a parameter (value owned by the builder from now on, NULL for SQL
 * NULL) and write its "$N::type" reference into the SQL. */
static void param(struct qb *q, char *value, const char *type)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->params = xreallocarray(q->params, (size_t)q->cap, sizeof(*q->params));
	}
	q->params[q->n++] = value;
	buf_printf(&q->sql, "$%d::%s", q->n, type);
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

bool delivery_sql_utf8_valid(const char *str, size_t n)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond Unicode */
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* A copy of s (NULL stays NULL) with every byte that is not part of valid
 * UTF-8 replaced by '?': for header fields, which have no structure that
 * a replacement could break. */
static char *utf8_clean(const char *s)
{
	char *r;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s);
	r = xstrdup(s);
	for (size_t i = 0; i < n;) {
		size_t len = 1;
		uint8_t c = (uint8_t)r[i];

		if (c >= 0x80) {
			len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			if (len > n - i || !delivery_sql_utf8_valid(r + i, len)) {
				r[i] = '?';
				len = 1;
			}
		}
		i += len;
	}
	return r;
}

/* IMAP strings with byte counts inside ({n} literals): stored only when
 * valid as they are. */
static char *utf8_or_null(const char *s)
{
	if (s == NULL || !delivery_sql_utf8_valid(s, strlen(s)))
		return NULL;
	return xstrdup(s);
}

char *delivery_sql_parts_json(const struct mime_part *parts, size_t n)
{
	struct buf b;
	char *r;

	buf_init(&b, 0);
	buf_puts(&b, "[");
	for (size_t i = 0; i < n; i++) {
		const struct mime_part *m = &parts[i];

		/* sections are digits and dots ("", "1", "2.1"): no escaping */
		buf_printf(&b,
		           "%s{\"section\":\"%s\",\"hdr_start\":%" PRIu64 ",\"body_start\":%" PRIu64
		           ",\"body_end\":%" PRIu64 ",\"msg_body_start\":%" PRIu64
		           ",\"lines\":%" PRIu64 ",\"multipart\":%s,\"message\":%s}",
		           i > 0 ? "," : "", m->section != NULL ? m->section : "", m->hdr_start,
		           m->body_start, m->body_end, m->msg_body_start, m->lines,
		           m->is_multipart ? "true" : "false", m->is_message ? "true" : "false");
	}
	buf_puts(&b, "]");
	r = xstrndup((const char *)buf_ptr(&b), buf_len(&b));
	buf_free(&b);
	return r;
}

/* Header search text, a newline, body search text, cut at the bound the
 * schema keeps. */
static char *search_text(const struct mime_result *m)
{
	size_t hn = m->search_header_len, bn = m->search_body_len, n;
	char *r = xmalloc(hn + bn + 2);

	memcpy(r, m->search_header != NULL ? m->search_header : "", hn);
	r[hn] = '\n';
	memcpy(r + hn + 1, m->search_body != NULL ? m->search_body : "", bn);
	n = schema_utf8_truncate(r, hn + 1 + bn, SCHEMA_SEARCH_TEXT_MAX);
	r[n] = '\0';
	return r;
}

void delivery_sql_build(const struct delivery_sql_in *in, struct delivery_sql *out)
{
	struct qb q = {0};
	bool local = in->naccounts > 0, remote = in->nremote > 0;
	int key_param = 0, size_param = 0;

	buf_init(&q.sql, 0);
	if (remote) {
		const char **rc = xcalloc(in->nremote, sizeof(*rc));
		const char **nt = xcalloc(in->nremote, sizeof(*nt));
		const char **oc = xcalloc(in->nremote, sizeof(*oc));

		for (size_t i = 0; i < in->nremote; i++) {
			rc[i] = in->remote[i].addr;
			nt[i] = in->remote[i].notify;
			oc[i] = in->remote[i].orcpt;
		}
		buf_puts(&q.sql,
		         "WITH qm AS (INSERT INTO queue_messages(account_id, sender, blob_key,"
		         " size, dsn_ret, dsn_envid) VALUES (");
		param(&q, in->account_id > 0 ? xasprintf("%" PRId64, in->account_id) : NULL,
		      "bigint");
		buf_puts(&q.sql, ", ");
		param(&q, xstrdup(in->sender != NULL ? in->sender : ""), "text");
		buf_puts(&q.sql, ", ");
		param(&q, xstrdup(in->key), "text");
		key_param = q.n;
		buf_puts(&q.sql, ", ");
		param(&q, xasprintf("%" PRIu64, in->size), "bigint");
		size_param = q.n;
		buf_puts(&q.sql, ", ");
		param(&q, dup_or_null(in->dsn_ret), "text");
		buf_puts(&q.sql, ", ");
		param(&q, dup_or_null(in->envid), "text");
		buf_puts(&q.sql, ") RETURNING id), qr AS (INSERT INTO queue_rcpts(message_id, rcpt,"
		                 " dsn_notify, dsn_orcpt) SELECT qm.id, r.rcpt, r.notify, r.orcpt"
		                 " FROM qm, unnest(");
		param(&q, pg_array_text(rc, in->nremote), "text[]");
		buf_puts(&q.sql, ", ");
		param(&q, pg_array_text(nt, in->nremote), "text[]");
		buf_puts(&q.sql, ", ");
		param(&q, pg_array_text(oc, in->nremote), "text[]");
		buf_puts(&q.sql, ") AS r(rcpt, notify, orcpt) RETURNING message_id) ");
		free(rc);
		free(nt);
		free(oc);
	}
	if (!local) {
		buf_puts(&q.sql, "SELECT NULL::bigint, NULL::bigint, NULL::bigint,"
		                 " (SELECT min(message_id) FROM qr)");
	} else {
		const struct mime_result *m = in->mime;

		buf_printf(&q.sql,
		           "SELECT d.mailbox_id, d.uid, d.modseq, %s FROM tp_deliver("
		           "ARRAY(SELECT mb.id FROM mailboxes mb WHERE mb.account_id = ANY(",
		           remote ? "(SELECT min(message_id) FROM qr)" : "NULL::bigint");
		param(&q, pg_array_int64(in->accounts, in->naccounts), "bigint[]");
		buf_puts(&q.sql, ") AND mb.name = 'INBOX' ORDER BY mb.id), ");
		if (key_param > 0) {
			buf_printf(&q.sql, "$%d::text, $%d::bigint", key_param, size_param);
		} else {
			param(&q, xstrdup(in->key), "text");
			buf_puts(&q.sql, ", ");
			param(&q, xasprintf("%" PRIu64, in->size), "bigint");
		}
		/* internaldate now(), no flags */
		buf_puts(&q.sql, ", now(), '{}'::text[], ");
		param(&q, utf8_or_null(m->envelope), "text");
		buf_puts(&q.sql, ", ");
		param(&q, utf8_or_null(m->bodystructure), "text");
		buf_puts(&q.sql, ", ");
		param(&q, utf8_or_null(m->body), "text");
		buf_puts(&q.sql, ", ");
		param(&q, utf8_clean(m->from), "text");
		buf_puts(&q.sql, ", ");
		param(&q, utf8_clean(m->to), "text");
		buf_puts(&q.sql, ", ");
		param(&q, utf8_clean(m->cc), "text");
		buf_puts(&q.sql, ", ");
		param(&q, utf8_clean(m->subject), "text");
		buf_puts(&q.sql, ", to_timestamp(");
		param(&q, m->has_date ? xasprintf("%" PRId64, m->date) : NULL, "double precision");
		buf_puts(&q.sql, "), ");
		param(&q, utf8_clean(m->message_id), "text");
		buf_puts(&q.sql, ", ");
		param(&q, delivery_sql_parts_json(m->parts, m->nparts), "jsonb");
		buf_puts(&q.sql, ", ");
		param(&q, search_text(m), "text");
		buf_puts(&q.sql, ") d");
	}
	out->sql = xstrndup((const char *)buf_ptr(&q.sql), buf_len(&q.sql));
	out->params = q.params;
	out->nparams = q.n;
	buf_free(&q.sql);
}

void delivery_sql_free(struct delivery_sql *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	memset(q, 0, sizeof(*q));
}
