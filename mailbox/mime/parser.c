/*
 * mailbox/mime/parser.c -- the streaming MIME state machine.
 *
 * The message is read line by line without ever holding a line: bytes are
 * handed on as they arrive, except the first few octets of a line that
 * starts with "--" while a multipart is open, which are held (at most
 * LINE_PREFIX octets) until we know whether the line is a boundary
 * delimiter (RFC 2046 5.1.1).  The open entities form a stack (cur and its
 * parents); a delimiter of any open multipart closes every entity above it,
 * which is how a missing inner close-delimiter is survived.  The CRLF in
 * front of a delimiter belongs to the delimiter, so a part's body ends
 * before it; offsets and LF counts are taken at line starts so this needs
 * no look-back.  Headers are collected (bounded) and parsed when their
 * blank line arrives; only then is the entity's kind known.  Matching of
 * boundaries is exact first (RFC 2046) and then by prefix, the way Dovecot
 * and common clients accept delimiters followed by junk.
 */
#include "mailbox/mime/parser.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailbox/mime/mime_private.h"
#include "shared/xmalloc.h"

#define BOUNDARY_MAX 200 /* RFC 2046 says 70; leave room for abuse */
#define LINE_PREFIX  (2 + BOUNDARY_MAX + 2 + 4)

enum line_mode { L_CONTENT, L_PREFIX, L_BOUNDARY };

struct mime_parser {
	struct mime_limits lim;
	uint64_t pos; /* octets consumed */
	uint64_t lf;  /* LFs consumed */
	struct mime_entity *root, *cur;
	unsigned nentities;

	/* the current line */
	bool line_start;
	uint64_t line_pos, line_lf;
	size_t line_len;
	bool last_cr;
	unsigned prev_eol; /* octets of the EOL ending the previous line */
	enum line_mode lmode;
	unsigned char prefix[LINE_PREFIX];
	size_t nprefix;
	struct mime_entity *bnd_owner;
	bool bnd_close;

	struct buf hdr; /* header of cur while cur->in_header */
	bool hdr_full;

	/* body search text of the text/plain part being read */
	struct mime_entity *decoding;
	struct mime_decoder dec;
	struct mime_charset cs;
	struct mime_text sh, sb;

	struct mime_result *res;
};

void mime_limits_default(struct mime_limits *lim)
{
	lim->max_header = 64 * 1024;
	lim->max_search_body = 512 * 1024;
	lim->max_search_header = 64 * 1024;
	lim->max_depth = 32;
	lim->max_parts = 10000;
}

static struct mime_entity *entity_new(struct mime_parser *p, struct mime_entity *parent,
                                      uint64_t start)
{
	struct mime_entity *e = xcalloc(1, sizeof(*e));

	e->parent = parent;
	e->depth = parent ? parent->depth + 1 : 0;
	e->in_header = true;
	e->hdr_start = start;
	e->body_start = e->body_end = start;
	if (parent != NULL) {
		if (parent->last)
			parent->last->next = e;
		else
			parent->first = e;
		parent->last = e;
		parent->nchildren++;
	}
	p->nentities++;
	p->cur = e;
	p->prev_eol = 0;
	buf_reset(&p->hdr);
	p->hdr_full = false;
	return e;
}

static void entity_free(struct mime_entity *e)
{
	while (e != NULL) {
		struct mime_entity *next = e->next;

		entity_free(e->first);
		mime_header_content_free(&e->ct);
		free(e->envelope);
		free(e->boundary);
		free(e);
		e = next;
	}
}

struct mime_parser *mime_parser_new(const struct mime_limits *lim)
{
	struct mime_parser *p = xcalloc(1, sizeof(*p));

	if (lim != NULL)
		p->lim = *lim;
	else
		mime_limits_default(&p->lim);
	if (p->lim.max_depth == 0)
		p->lim.max_depth = 1;
	if (p->lim.max_parts < 2)
		p->lim.max_parts = 2;
	buf_init(&p->hdr, 0);
	mime_text_init(&p->sh, p->lim.max_search_header);
	mime_text_init(&p->sb, p->lim.max_search_body);
	p->res = xcalloc(1, sizeof(*p->res));
	p->line_start = true;
	p->root = entity_new(p, NULL, 0);
	return p;
}

void mime_parser_free(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;

	if (p == NULL)
		return;
	if (p->decoding != NULL)
		mime_charset_close(&p->cs);
	entity_free(p->root);
	buf_free(&p->hdr);
	mime_text_free(&p->sh);
	mime_text_free(&p->sb);
	mime_result_free(&p->res);
	free(p);
	*pp = NULL;
}

/* ---- root header fields for storage and search ---- */

static char *normalize_ws(const char *s)
{
	char *r = xmalloc(strlen(s) + 1), *o = r;
	bool sp = false;

	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') {
			sp = o != r;
			continue;
		}
		if (sp)
			*o++ = ' ';
		sp = false;
		*o++ = *s;
	}
	*o = '\0';
	return r;
}

static char *first_addr(const struct mime_addresses *a)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct mime_address *x = &a->v[i];
		char *r;

		if (x->is_group_start || x->is_group_end)
			continue;
		r = xasprintf("%s@%s", x->mailbox, x->host);
		for (char *c = r; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		return r;
	}
	return NULL;
}

static char *decoded_addrs(const char *v, char **first_r)
{
	struct mime_addresses a;
	struct buf b;
	char *r;

	mime_address_parse(v, &a);
	buf_init(&b, 0);
	mime_address_display(&a, &b);
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	if (first_r != NULL)
		*first_r = first_addr(&a);
	buf_free(&b);
	mime_address_free(&a);
	return r;
}

static void root_fields(struct mime_parser *p, const struct mime_fields *f)
{
	struct mime_result *r = p->res;
	const char *v;
	struct buf b;

	if ((v = mime_header_get(f, "From")) != NULL)
		r->from = decoded_addrs(v, &r->from_addr);
	if ((v = mime_header_get(f, "To")) != NULL)
		r->to = decoded_addrs(v, &r->to_addr);
	if ((v = mime_header_get(f, "Cc")) != NULL)
		r->cc = decoded_addrs(v, &r->cc_addr);
	if ((v = mime_header_get(f, "Bcc")) != NULL)
		r->bcc = decoded_addrs(v, NULL);
	if ((v = mime_header_get(f, "Reply-To")) != NULL)
		r->reply_to = decoded_addrs(v, NULL);
	if ((v = mime_header_get(f, "Subject")) != NULL)
		r->subject = mime_rfc2047_decode_str(v);
	if ((v = mime_header_get(f, "Message-ID")) != NULL)
		r->message_id = normalize_ws(v);
	if ((v = mime_header_get(f, "In-Reply-To")) != NULL)
		r->in_reply_to = normalize_ws(v);
	if ((v = mime_header_get(f, "References")) != NULL)
		r->references = normalize_ws(v);
	if ((v = mime_header_get(f, "Date")) != NULL)
		r->has_date = mime_date_parse(v, &r->date);

	/* every field, decoded, for SEARCH TEXT and SEARCH HEADER */
	buf_init(&b, 0);
	for (size_t i = 0; i < f->n && !mime_text_full(&p->sh); i++) {
		buf_reset(&b);
		mime_charset_utf8_or_latin1(f->v[i].name, strlen(f->v[i].name), &b);
		buf_puts(&b, ": ");
		mime_rfc2047_decode(f->v[i].value, strlen(f->v[i].value), &b);
		buf_puts(&b, "\n");
		mime_text_sink(&p->sh, (const char *)buf_ptr(&b), buf_len(&b));
	}
	buf_free(&b);
}

/* ---- entities ---- */

static void decode_sink(void *ctx, const char *s, size_t n)
{
	struct mime_parser *p = ctx;

	mime_charset_feed(&p->cs, s, n, false, mime_text_sink, &p->sb);
}

static void decoding_end(struct mime_parser *p)
{
	if (p->decoding == NULL)
		return;
	mime_decode_end(&p->dec, decode_sink, p);
	mime_charset_feed(&p->cs, "", 0, true, mime_text_sink, &p->sb);
	mime_charset_close(&p->cs);
	/* separate parts so words do not run together */
	if (buf_len(&p->sb.b) > 0 && buf_ptr(&p->sb.b)[buf_len(&p->sb.b) - 1] != '\n')
		mime_text_sink(&p->sb, "\n", 1);
	p->decoding = NULL;
}

static bool identity_cte(const char *enc)
{
	return enc == NULL || strcasecmp(enc, "7bit") == 0 || strcasecmp(enc, "8bit") == 0 ||
	       strcasecmp(enc, "binary") == 0;
}

/* The header of e ends; its body starts at body_start. */
static void finish_header(struct mime_parser *p, struct mime_entity *e, uint64_t body_start,
                          uint64_t lf_at)
{
	struct mime_fields f;
	const struct mime_entity *par = e->parent;
	bool digest = par != NULL && par->kind == MIME_K_MULTIPART &&
	              strcasecmp(par->ct.subtype, "digest") == 0;

	e->in_header = false;
	e->body_start = e->body_end = body_start;
	e->lf_body_start = lf_at;
	/* an empty buf has no storage: never form a pointer from NULL */
	mime_header_split(buf_len(&p->hdr) ? (const char *)buf_ptr(&p->hdr) : "", buf_len(&p->hdr),
	                  &f);
	buf_reset(&p->hdr);
	mime_header_content(&f, digest, &e->ct);
	if (par == NULL || par->kind == MIME_K_MESSAGE)
		e->envelope = mime_envelope_write(&f);
	if (par == NULL)
		root_fields(p, &f);
	mime_header_fields_free(&f);
	p->prev_eol = 0;

	if (strcasecmp(e->ct.type, "multipart") == 0) {
		const char *bnd = mime_header_param(&e->ct.params, "boundary");

		e->kind = MIME_K_MULTIPART;
		/* past the depth bound a multipart keeps no parts */
		if (bnd != NULL && *bnd != '\0' && strlen(bnd) <= BOUNDARY_MAX &&
		    e->depth < p->lim.max_depth) {
			e->boundary = xstrdup(bnd);
			e->blen = strlen(bnd);
		}
		return;
	}
	if (strcasecmp(e->ct.type, "message") == 0 && strcasecmp(e->ct.subtype, "rfc822") == 0) {
		e->kind = MIME_K_MESSAGE;
		e->is_text = false;
		/* RFC 2046 5.2.1: only 7bit, 8bit or binary; an encoded one,
		 * or one past the bounds, is described as an empty message */
		if (identity_cte(e->ct.encoding) && e->depth < p->lim.max_depth &&
		    p->nentities < p->lim.max_parts)
			entity_new(p, e, body_start);
		return;
	}
	e->kind = MIME_K_BASIC;
	e->is_text = strcasecmp(e->ct.type, "text") == 0;
	if (e->is_text && strcasecmp(e->ct.subtype, "plain") == 0 && !mime_text_full(&p->sb)) {
		p->decoding = e;
		mime_decode_init(&p->dec, mime_decode_enc(e->ct.encoding));
		mime_charset_open(&p->cs, mime_header_param(&e->ct.params, "charset"));
	}
}

/*
 * Close entities from cur up to (not including) stop; their bodies end at
 * end, where lf_end LFs have been seen.
 */
static void close_until(struct mime_parser *p, struct mime_entity *stop, uint64_t end,
                        uint64_t lf_end)
{
	while (p->cur != NULL && p->cur != stop) {
		struct mime_entity *e = p->cur;

		if (e->in_header) {
			finish_header(p, e, end < e->hdr_start ? e->hdr_start : end, lf_end);
			if (p->cur != e)
				continue; /* a message/rfc822 child to close first */
		}
		if (p->decoding == e)
			decoding_end(p);
		if (end > e->body_start) {
			e->body_end = end;
			e->lines = lf_end - e->lf_body_start;
		} else {
			e->body_end = e->body_start;
			e->lines = 0;
		}
		p->cur = e->parent;
	}
}

static bool open_boundaries(const struct mime_parser *p)
{
	for (const struct mime_entity *e = p->cur; e != NULL; e = e->parent)
		if (e->boundary != NULL && !e->closed)
			return true;
	return false;
}

static bool blank_rest(const unsigned char *s, size_t n, bool eol)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return eol || n > 0;
}

/* RFC 2046 5.1.1 bcharsnospace */
static bool is_bchar(unsigned char c)
{
	return c != 0 && (isalnum(c) || strchr("'()+_,-./:=?", c) != NULL);
}

/* Which open multipart is the held line a delimiter of?  at_eof: the line
 * is complete though it has no LF. */
static struct mime_entity *match_boundary(struct mime_parser *p, bool at_eof, bool *close_r)
{
	const unsigned char *s = p->prefix;
	size_t n = p->nprefix;
	bool complete = at_eof || (n > 0 && s[n - 1] == '\n');

	if (n < 3 || s[0] != '-' || s[1] != '-')
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		for (struct mime_entity *e = p->cur; e != NULL; e = e->parent) {
			size_t rest;
			bool close;

			if (e->boundary == NULL || e->closed || n < 2 + e->blen ||
			    memcmp(s + 2, e->boundary, e->blen) != 0)
				continue;
			rest = 2 + e->blen;
			close = n >= rest + 2 && s[rest] == '-' && s[rest + 1] == '-';
			if (pass == 0 && !blank_rest(s + rest + (close ? 2 : 0),
			                             n - rest - (close ? 2 : 0), complete))
				continue;
			/* junk may follow, but not what would make it a
			 * longer boundary ("--b1" is no delimiter of "b10") */
			if (pass == 1 && !close && n > rest && is_bchar(s[rest]))
				continue;
			if (!close && p->nentities >= p->lim.max_parts)
				continue;
			*close_r = close;
			return e;
		}
	}
	return NULL;
}

/* Octets of the current line that are content (not a delimiter). */
static void content(struct mime_parser *p, const unsigned char *d, size_t n)
{
	struct mime_entity *e = p->cur;
	bool eol = n > 0 && d[n - 1] == '\n';

	p->pos += n;
	if (eol)
		p->lf++;
	if (e->in_header) {
		size_t room = p->lim.max_header - buf_len(&p->hdr);

		if (!p->hdr_full)
			buf_append(&p->hdr, d, n < room ? n : room);
		if (n > room)
			p->hdr_full = true;
	} else if (p->decoding == e && !mime_text_full(&p->sb)) {
		mime_decode_feed(&p->dec, d, n, decode_sink, p);
	}
	if (!eol) {
		p->line_len += n;
		if (n > 0)
			p->last_cr = d[n - 1] == '\r';
		return;
	}
	p->line_len += n - 1;
	if (n > 1)
		p->last_cr = d[n - 2] == '\r';
	p->line_start = true;
	if (e->in_header && p->line_len - (p->last_cr ? 1 : 0) == 0) {
		/* the blank line ending the header (RFC 5322 2.1) */
		finish_header(p, e, p->pos, p->lf);
		return;
	}
	p->prev_eol = p->last_cr ? 2 : 1;
}

static void boundary_found(struct mime_parser *p, struct mime_entity *m, bool close)
{
	uint64_t end = p->line_pos, lf_end = p->line_lf;

	if (p->prev_eol > 0 && end >= p->prev_eol) {
		/* RFC 2046 5.1.1: the CRLF before "--" is the delimiter's */
		end -= p->prev_eol;
		lf_end--;
	}
	close_until(p, m, end, lf_end);
	p->bnd_owner = m;
	p->bnd_close = close;
	if (close)
		m->closed = true;
	p->lmode = L_BOUNDARY;
}

/* The delimiter line (already counted in pos) ended with its LF. */
static void boundary_line_end(struct mime_parser *p, bool cr)
{
	p->line_start = true;
	if (p->bnd_close)
		p->prev_eol = cr ? 2 : 1;
	else
		entity_new(p, p->bnd_owner, p->pos);
}

static void decide_prefix(struct mime_parser *p, bool at_eof)
{
	bool close = false;
	struct mime_entity *m = match_boundary(p, at_eof, &close);
	size_t n = p->nprefix;

	p->nprefix = 0;
	if (m == NULL) {
		p->lmode = L_CONTENT;
		content(p, p->prefix, n);
		return;
	}
	boundary_found(p, m, close);
	p->pos += n;
	if (p->prefix[n - 1] == '\n') {
		p->lf++;
		boundary_line_end(p, n > 1 && p->prefix[n - 2] == '\r');
	} else {
		p->last_cr = p->prefix[n - 1] == '\r';
	}
}

void mime_parser_feed(struct mime_parser *p, const void *data, size_t len)
{
	const unsigned char *d = data;

	while (len > 0) {
		const unsigned char *lf;
		size_t n = len;

		if (p->line_start) {
			p->line_start = false;
			p->line_pos = p->pos;
			p->line_lf = p->lf;
			p->line_len = 0;
			p->last_cr = false;
			p->nprefix = 0;
			p->lmode = open_boundaries(p) ? L_PREFIX : L_CONTENT;
		}
		switch (p->lmode) {
		case L_CONTENT:
			lf = memchr(d, '\n', len);
			n = lf ? (size_t)(lf - d) + 1 : len;
			content(p, d, n);
			break;
		case L_PREFIX:
			n = sizeof(p->prefix) - p->nprefix;
			if (n > len)
				n = len;
			lf = memchr(d, '\n', n);
			if (lf)
				n = (size_t)(lf - d) + 1;
			memcpy(p->prefix + p->nprefix, d, n);
			p->nprefix += n;
			if (lf || p->nprefix == sizeof(p->prefix) || p->prefix[0] != '-' ||
			    (p->nprefix >= 2 && p->prefix[1] != '-'))
				decide_prefix(p, false);
			break;
		case L_BOUNDARY:
			lf = memchr(d, '\n', len);
			n = lf ? (size_t)(lf - d) + 1 : len;
			p->pos += n;
			if (lf) {
				p->lf++;
				boundary_line_end(p, n > 1 ? d[n - 2] == '\r' : p->last_cr);
			} else {
				p->last_cr = d[n - 1] == '\r';
			}
			break;
		}
		d += n;
		len -= n;
	}
}

/* ---- the result ---- */

static void part_add(struct mime_result *r, const char *section, const struct mime_entity *e,
                     size_t *cap)
{
	struct mime_part *x;

	if (r->nparts == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		r->parts = xreallocarray(r->parts, *cap, sizeof(*r->parts));
	}
	x = &r->parts[r->nparts++];
	memset(x, 0, sizeof(*x));
	x->section = xstrdup(section);
	x->hdr_start = e->hdr_start;
	x->body_start = e->body_start;
	x->body_end = e->body_end;
	x->lines = e->lines;
	x->is_multipart = e->kind == MIME_K_MULTIPART;
	x->is_message = e->kind == MIME_K_MESSAGE;
	if (x->is_message)
		x->msg_body_start = e->first != NULL ? e->first->body_start : e->body_start;
}

static void number_children(struct mime_result *r, const struct mime_entity *e, const char *section,
                            size_t *cap);

/* e is part number section; add it and number what it contains */
static void number(struct mime_result *r, const struct mime_entity *e, const char *section,
                   size_t *cap)
{
	part_add(r, section, e, cap);
	if (e->kind == MIME_K_MULTIPART) {
		number_children(r, e, section, cap);
	} else if (e->kind == MIME_K_MESSAGE && e->first != NULL) {
		const struct mime_entity *c = e->first;

		/* RFC 3501 6.4.5: the parts of an encapsulated message */
		if (c->kind == MIME_K_MULTIPART) {
			number_children(r, c, section, cap);
		} else {
			char *s = xasprintf("%s.1", section);

			number(r, c, s, cap);
			free(s);
		}
	}
}

static void number_children(struct mime_result *r, const struct mime_entity *e, const char *section,
                            size_t *cap)
{
	unsigned i = 1;

	for (const struct mime_entity *ch = e->first; ch != NULL; ch = ch->next, i++) {
		char *s = *section ? xasprintf("%s.%u", section, i) : xasprintf("%u", i);

		number(r, ch, s, cap);
		free(s);
	}
}

static char *take_buf(struct buf *b)
{
	char *r;

	buf_append(b, "", 1);
	r = xstrdup((const char *)buf_ptr(b));
	buf_reset(b);
	return r;
}

struct mime_result *mime_parser_finish(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;
	struct mime_result *r;
	struct buf b;
	size_t cap = 0;

	if (!p->line_start && p->lmode == L_PREFIX && p->nprefix > 0)
		decide_prefix(p, true);
	close_until(p, NULL, p->pos, p->lf);
	r = p->res;
	p->res = NULL;
	r->size = p->pos;
	r->envelope = xstrdup(p->root->envelope);
	buf_init(&b, 0);
	mime_bodystructure_write(&b, p->root, true);
	r->bodystructure = take_buf(&b);
	mime_bodystructure_write(&b, p->root, false);
	r->body = take_buf(&b);
	buf_free(&b);

	/* the whole message: HEADER and TEXT are the root's */
	part_add(r, "", p->root, &cap);
	r->parts[0].hdr_start = 0;
	r->parts[0].body_start = 0;
	r->parts[0].body_end = p->pos;
	r->parts[0].msg_body_start = p->root->body_start;
	r->parts[0].is_message = true;
	r->parts[0].lines = p->lf;
	if (p->root->kind == MIME_K_MULTIPART)
		number_children(r, p->root, "", &cap);
	else
		number(r, p->root, "1", &cap);

	r->search_truncated = p->sb.truncated || p->sh.truncated;
	r->search_header = mime_text_take(&p->sh, &r->search_header_len);
	r->search_body = mime_text_take(&p->sb, &r->search_body_len);
	mime_parser_free(pp);
	return r;
}

void mime_result_free(struct mime_result **rp)
{
	struct mime_result *r = *rp;

	if (r == NULL)
		return;
	free(r->envelope);
	free(r->bodystructure);
	free(r->body);
	for (size_t i = 0; i < r->nparts; i++)
		free(r->parts[i].section);
	free(r->parts);
	free(r->from);
	free(r->to);
	free(r->cc);
	free(r->bcc);
	free(r->reply_to);
	free(r->subject);
	free(r->message_id);
	free(r->in_reply_to);
	free(r->references);
	free(r->from_addr);
	free(r->to_addr);
	free(r->cc_addr);
	free(r->search_header);
	free(r->search_body);
	free(r);
	*rp = NULL;
}

struct mime_result *mime_parse(const void *data, size_t len, const struct mime_limits *lim)
{
	struct mime_parser *p = mime_parser_new(lim);

	mime_parser_feed(p, data, len);
	return mime_parser_finish(&p);
}
