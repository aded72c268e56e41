/*
 * acl/hujson_format.c -- canonical HuJSON layout, like `go fmt` for policy
 * files.
 *
 * Admins diff and review policy files, so "fmt" must give the same bytes
 * Tailscale's own formatter (hujson's Value.Format) gives, or every save in
 * the admin console would fight with every run of our tool.  The passes
 * follow that formatter's observable rules:
 *
 *   1. normalize: strings holding escapes are re-encoded the RFC 8785 way,
 *      whitespace-only extras between a name and its colon or a value and
 *      its comma are dropped, empty composites become {} / [];
 *   2. expand: a composite is written one item per line if any extra inside
 *      it holds a newline, or a line would pass 80 columns;
 *   3. whitespace: extras are re-indented with tabs (comments kept, at most
 *      one blank line, CRs dropped), trailing commas added to expanded
 *      composites (unless the input was standard JSON) and removed from
 *      inline ones;
 *   4. align: runs of single-line members of an object get their values
 *      aligned to one column; a comment or blank line ends a run.
 *
 * Formatting is idempotent (the unit tables check format(format(x))).
 */
#include "acl/hujson.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

#define PUNCH_CARD_WIDTH 80

struct line_stats {
	size_t first, last;
	bool multiline;
};

struct fmt_opts {
	bool ensure_leading_newline;
	bool ensure_trailing_newline;
	bool remove_leading_empty_lines;
	bool remove_trailing_empty_lines;
	bool unindent_last_line;
	bool append_space_if_empty;
};

static bool is_comp(const struct hujson_value *v)
{
	return v->kind == HUJSON_OBJECT || v->kind == HUJSON_ARRAY;
}

static size_t ws(const char *b, size_t n)
{
	size_t i = 0;

	while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
		i++;
	return i;
}

static bool has_nl(const char *b, size_t n)
{
	return n > 0 && memchr(b, '\n', n) != NULL;
}

static size_t count_nl(const char *b, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		if (b[i] == '\n')
			c++;
	return c;
}

static long comment_len(const char *b, size_t n)
{
	const char *end;

	if (n >= 2 && b[0] == '/' && b[1] == '/') {
		end = memchr(b + 2, '\n', n - 2);
		return end ? end - b + 1 : -1;
	}
	if (n >= 2 && b[0] == '/' && b[1] == '*') {
		end = memmem(b + 2, n - 2, "*/", 2);
		return end ? end - b + 2 : -1;
	}
	return 0;
}

/* Bytes of trailing Unicode white space (Go's unicode.IsSpace) at the end
 * of b[0..n). */
static size_t trailing_space(const unsigned char *b, size_t n)
{
	size_t end = n;

	for (;;) {
		if (end == 0)
			break;
		unsigned char c = b[end - 1];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') {
			end--;
			continue;
		}
		if (end >= 2 && b[end - 2] == 0xc2 && (c == 0x85 || c == 0xa0)) {
			end -= 2;
			continue;
		}
		if (end >= 3) {
			unsigned char a = b[end - 3], m = b[end - 2];
			if ((a == 0xe1 && m == 0x9a && c == 0x80) ||
			    (a == 0xe2 && m == 0x80 &&
			     (c <= 0x8a || c == 0xa8 || c == 0xa9 || c == 0xaf)) ||
			    (a == 0xe2 && m == 0x81 && c == 0x9f) ||
			    (a == 0xe3 && m == 0x80 && c == 0x80)) {
				end -= 3;
				continue;
			}
		}
		break;
	}
	return n - end;
}

static void put(struct buf *b, const void *p, size_t n)
{
	/* Unbounded scratch buffers: append cannot fail. */
	(void)buf_append(b, p, n);
}

static void put_indent(struct buf *b, int depth)
{
	for (int i = 0; i < depth; i++)
		put(b, "\t", 1);
}

static bool ends_nl(const struct buf *b)
{
	return buf_len(b) > 0 && hujson_buf_bytes(b)[buf_len(b) - 1] == '\n';
}

/* Replace "\r\n" and "\n\r" by "\n" and a lone "\r" by " ", in place. */
static void drop_cr(struct hujson_extra *e)
{
	size_t w = 0;
	char *p = e->p;

	if (e->n == 0 || memchr(p, '\r', e->n) == NULL)
		return;
	/* Pass 1: "\r\n" -> "\n". */
	for (size_t r = 0; r < e->n; r++) {
		if (p[r] == '\r' && r + 1 < e->n && p[r + 1] == '\n')
			continue;
		p[w++] = p[r];
	}
	e->n = w;
	/* Pass 2: "\n\r" -> "\n". */
	w = 0;
	for (size_t r = 0; r < e->n; r++) {
		p[w++] = p[r];
		if (p[r] == '\n' && r + 1 < e->n && p[r + 1] == '\r')
			r++;
	}
	e->n = w;
	/* Pass 3: lone "\r" -> " ". */
	for (size_t r = 0; r < e->n; r++)
		if (p[r] == '\r')
			p[r] = ' ';
}

struct span {
	const char *p;
	size_t n;
};

/* Format a multi-line block comment c (n bytes) into out at depth. */
static void format_block(struct buf *out, const char *c, size_t n, int depth)
{
	struct span *lines = NULL;
	size_t nlines = 0, cap = 0, start = 0;
	struct span first = {"", 0}, prefix;
	bool has_empty = false, star_aligned;
	char *last_override = NULL;
	size_t plen;

	for (size_t i = 0; i <= n; i++) {
		if (i == n || c[i] == '\n') {
			if (nlines == cap) {
				cap = cap ? cap * 2 : 8;
				lines = xreallocarray(lines, cap, sizeof(*lines));
			}
			lines[nlines].p = c + start;
			lines[nlines].n = i - start;
			lines[nlines].n -= trailing_space((const unsigned char *)lines[nlines].p,
			                                  lines[nlines].n);
			if (first.n == 0 && lines[nlines].n > 0 && nlines > 0)
				first = lines[nlines];
			if (lines[nlines].n == 0)
				has_empty = true;
			nlines++;
			start = i + 1;
		}
	}
	prefix = first;
	for (size_t i = 1; i < nlines; i++) {
		struct span l = lines[i];

		if (l.n == 0)
			continue;
		if (l.n >= 2 && memcmp(l.p + l.n - 2, "*/", 2) == 0 && ws(l.p, l.n) + 2 == l.n) {
			size_t pl = ws(prefix.p, prefix.n);

			last_override = xmalloc(pl + 2);
			memcpy(last_override, prefix.p, pl);
			memcpy(last_override + pl, "*/", 2);
			lines[i].p = last_override;
			lines[i].n = pl + 2;
			break;
		}
		for (size_t j = 0; j < l.n && j < prefix.n; j++) {
			if (l.p[j] != prefix.p[j]) {
				prefix.n = j;
				break;
			}
		}
	}
	plen = ws(prefix.p, prefix.n);
	star_aligned = !has_empty && prefix.n > plen && prefix.p[plen] == '*';
	put(out, lines[0].p, lines[0].n);
	put(out, "\n", 1);
	for (size_t i = 1; i < nlines; i++) {
		if (lines[i].n > 0) {
			put_indent(out, depth);
			if (star_aligned)
				put(out, " ", 1);
			put(out, lines[i].p + plen, lines[i].n - plen);
		}
		put(out, "\n", 1);
	}
	while (ends_nl(out))
		out->len--;
	free(last_override);
	free(lines);
}

static void extra_format(struct hujson_extra *b, int depth, struct fmt_opts o)
{
	struct buf out;
	const char *in;
	size_t n;

	drop_cr(b);
	in = hujson_extra_ptr(b);
	n = b->n;
	buf_init(&out, 0);
	if (o.ensure_leading_newline && !has_nl(in, n))
		put(&out, "\n", 1);
	while (n > 0) {
		size_t w = ws(in, n);
		long nc;

		if (w > 0) {
			size_t nl = count_nl(in, w);

			if (nl > 2)
				nl = 2; /* never more than one blank line */
			for (size_t i = 0; i < nl; i++)
				put(&out, "\n", 1);
			in += w;
			n -= w;
			continue;
		}
		nc = comment_len(in, n);
		if (nc <= 0) {
			buf_free(&out);
			return; /* not reached for parsed input */
		}
		if (ends_nl(&out))
			put_indent(&out, depth);
		else
			put(&out, " ", 1);
		if ((in[0] == '/' && in[1] == '/') || !has_nl(in, (size_t)nc)) {
			size_t len = (size_t)nc;
			size_t take = len - trailing_space((const unsigned char *)in, len);

			if (in[1] == '/')
				nc--; /* the newline is left for the next round */
			put(&out, in, take);
			in += nc;
			n -= (size_t)nc;
			continue;
		}
		format_block(&out, in, (size_t)nc, depth);
		in += nc;
		n -= (size_t)nc;
	}
	if (o.ensure_trailing_newline && !ends_nl(&out))
		put(&out, "\n", 1);
	while (o.remove_leading_empty_lines && buf_len(&out) >= 2 &&
	       hujson_buf_bytes(&out)[0] == '\n' && hujson_buf_bytes(&out)[1] == '\n')
		buf_consume(&out, 1);
	while (o.remove_trailing_empty_lines && buf_len(&out) >= 2 &&
	       hujson_buf_bytes(&out)[buf_len(&out) - 1] == '\n' &&
	       hujson_buf_bytes(&out)[buf_len(&out) - 2] == '\n')
		out.len--;
	if (ends_nl(&out))
		put_indent(&out, o.unindent_last_line ? depth - 1 : depth);
	else if (buf_len(&out) > 0)
		put(&out, " ", 1);
	if (o.append_space_if_empty && buf_len(&out) == 0)
		put(&out, " ", 1);
	if (b->n != buf_len(&out) ||
	    (b->n > 0 && memcmp(b->p, hujson_buf_bytes(&out), b->n) != 0)) {
		/* An absent extra stays absent when it stays empty. */
		if (buf_len(&out) > 0 || b->set)
			hujson_extra_set(b, hujson_buf_bytes(&out), buf_len(&out));
	}
	buf_free(&out);
}

/* --- pass 1: normalize ---------------------------------------------------- */

static void normalize(struct hujson_value *v)
{
	if (v->kind == HUJSON_STRING) {
		if (memchr(v->lit, '\\', v->litlen) != NULL) {
			size_t n;
			char *s = hujson_string(v, &n);
			struct buf b;

			buf_init(&b, 0);
			hujson_quote(&b, s, n);
			free(v->lit);
			v->litlen = buf_len(&b);
			v->lit = xmemdup(hujson_buf_bytes(&b), buf_len(&b));
			buf_free(&b);
			free(s);
		}
		return;
	}
	if (!is_comp(v))
		return;
	if (v->nitems == 0) {
		if (!hujson_extra_has_comment(&v->inner))
			hujson_extra_clear(&v->inner);
		return;
	}
	for (size_t i = 0; i < v->nitems; i++)
		if (!hujson_extra_has_comment(&v->items[i].after))
			hujson_extra_clear(&v->items[i].after);
	for (size_t i = 0; i < v->nitems; i++)
		normalize(&v->items[i]);
}

/* --- pass 2: decide which composites expand -------------------------------- */

static size_t comment_width(const char *b, size_t n)
{
	size_t w = 0;

	for (;;) {
		size_t k = ws(b, n);
		long nc;

		b += k;
		n -= k;
		if (n >= 2 && b[0] == '/' && b[1] == '/')
			return w + 1 + n;
		if (n >= 2 && b[0] == '/' && b[1] == '*') {
			nc = comment_len(b, n);
			if (nc <= 0)
				return w + 1 + n;
			w += 1 + (size_t)nc;
			b += nc;
			n -= (size_t)nc;
			continue;
		}
		if (w > 0)
			w++; /* padding after a block comment */
		return w;
	}
}

static struct line_stats extra_stats(const struct hujson_extra *e)
{
	struct line_stats s;
	const char *nl1, *nl2;

	if (!has_nl(hujson_extra_ptr(e), e->n)) {
		s.first = s.last = comment_width(hujson_extra_ptr(e), e->n);
		s.multiline = false;
		return s;
	}
	nl1 = memchr(hujson_extra_ptr(e), '\n', e->n);
	nl2 = memrchr(hujson_extra_ptr(e), '\n', e->n);
	s.first = comment_width(hujson_extra_ptr(e), (size_t)(nl1 - hujson_extra_ptr(e)));
	s.last = comment_width(nl2 + 1, e->n - (size_t)(nl2 + 1 - hujson_extra_ptr(e)));
	s.multiline = true;
	return s;
}

struct stats_acc {
	size_t line;
	size_t *lines;
	size_t nlines, cap;
};

static void acc_update(struct stats_acc *a, struct line_stats s)
{
	a->line += s.first;
	if (s.multiline) {
		if (a->nlines == a->cap) {
			a->cap = a->cap ? a->cap * 2 : 8;
			a->lines = xreallocarray(a->lines, a->cap, sizeof(*a->lines));
		}
		a->lines[a->nlines++] = a->line;
		a->line = s.last;
	}
}

static struct hujson_extra *before_at(struct hujson_value *comp, size_t i)
{
	size_t step = comp->kind == HUJSON_OBJECT ? 2 : 1;

	if (i * step < comp->nitems)
		return &comp->items[i * step].before;
	return &comp->inner;
}

static struct hujson_value *last_value(struct hujson_value *comp)
{
	return comp->nitems > 0 ? &comp->items[comp->nitems - 1] : NULL;
}

static struct line_stats expand_composites(struct hujson_value *v)
{
	struct line_stats s = {0, 0, false};
	struct stats_acc a = {0, NULL, 0, 0};
	bool expand = false;
	struct hujson_value *last;

	v->fmt_expand = false;
	if (!is_comp(v)) {
		s.first = s.last = v->litlen;
		return s;
	}
	a.line = 1;
	if (v->kind == HUJSON_OBJECT) {
		for (size_t i = 0; i + 1 < v->nitems; i += 2) {
			struct hujson_value *name = &v->items[i], *val = &v->items[i + 1];

			expand = expand || hujson_extra_has_newline(&name->before);
			acc_update(&a, extra_stats(&name->before));
			acc_update(&a, expand_composites(name));
			acc_update(&a, extra_stats(&name->after));
			a.line += 2;
			acc_update(&a, extra_stats(&val->before));
			acc_update(&a, expand_composites(val));
			acc_update(&a, extra_stats(&val->after));
			a.line += 2;
		}
	} else {
		for (size_t i = 0; i < v->nitems; i++) {
			struct hujson_value *el = &v->items[i];

			expand = expand || hujson_extra_has_newline(&el->before);
			acc_update(&a, extra_stats(&el->before));
			acc_update(&a, expand_composites(el));
			acc_update(&a, extra_stats(&el->after));
			a.line += 2;
		}
	}
	a.line += 1;
	last = last_value(v);
	if (last != NULL)
		expand = expand || hujson_extra_has_newline(&last->after);
	expand = expand || hujson_extra_has_newline(&v->inner);
	acc_update(&a, (struct line_stats){0, 0, true});
	/* acc_update pushed the running line; the trailing "last" reset is
	 * irrelevant because nothing follows. */
	s.first = a.lines[0];
	s.last = a.lines[a.nlines - 1];
	s.multiline = a.nlines > 1;
	for (size_t i = 0; !expand && i < a.nlines; i++)
		expand = a.lines[i] > PUNCH_CARD_WIDTH;
	free(a.lines);
	if (expand) {
		s.first = 1 + extra_stats(before_at(v, 0)).first;
		s.last = 1;
		s.multiline = true;
		v->fmt_expand = true;
	}
	return s;
}

/* --- pass 3: whitespace ---------------------------------------------------- */

static void set_trailing_comma(struct hujson_value *comp, bool on)
{
	struct hujson_value *last = last_value(comp);

	if (last == NULL)
		return;
	if (on && !last->after.set) {
		last->after.set = true;
	} else if (!on && last->after.set) {
		size_t n = last->after.n + comp->inner.n;
		char *p = xmalloc(n ? n : 1);

		if (last->after.n)
			memcpy(p, hujson_extra_ptr(&last->after), last->after.n);
		if (comp->inner.n)
			memcpy(p + last->after.n, hujson_extra_ptr(&comp->inner), comp->inner.n);
		hujson_extra_set(&comp->inner, p, n);
		free(p);
		hujson_extra_clear(&last->after);
	}
}

static void format_whitespace(struct hujson_value *v, int depth, bool standardize)
{
	bool expand = v->fmt_expand;
	struct hujson_value *last;
	bool surrounded;

	if (!is_comp(v))
		return;
	if (v->kind == HUJSON_OBJECT) {
		for (size_t i = 0; i + 1 < v->nitems; i += 2) {
			struct hujson_value *name = &v->items[i], *val = &v->items[i + 1];
			int off = 0;

			extra_format(&name->before, depth + 1,
			             (struct fmt_opts){.ensure_leading_newline = expand,
			                               .remove_leading_empty_lines = i == 0,
			                               .append_space_if_empty = i != 0});
			extra_format(&name->after, depth + 2,
			             (struct fmt_opts){.remove_leading_empty_lines = true,
			                               .remove_trailing_empty_lines = true});
			extra_format(&val->before, depth + 2,
			             (struct fmt_opts){.remove_leading_empty_lines = true,
			                               .remove_trailing_empty_lines = true,
			                               .append_space_if_empty = true});
			if (expand)
				off++;
			if (hujson_extra_has_newline(&name->after) ||
			    hujson_extra_has_newline(&val->before))
				off++;
			format_whitespace(val, depth + off, standardize);
			extra_format(&val->after, depth + 2,
			             (struct fmt_opts){.remove_leading_empty_lines = true,
			                               .remove_trailing_empty_lines = true});
		}
	} else {
		for (size_t i = 0; i < v->nitems; i++) {
			struct hujson_value *el = &v->items[i];

			extra_format(&el->before, depth + 1,
			             (struct fmt_opts){.ensure_leading_newline = expand,
			                               .remove_leading_empty_lines = i == 0,
			                               .append_space_if_empty = i != 0});
			format_whitespace(el, depth + (expand ? 1 : 0), standardize);
			extra_format(&el->after, depth + 2,
			             (struct fmt_opts){.remove_leading_empty_lines = true,
			                               .remove_trailing_empty_lines = true});
		}
	}
	extra_format(&v->inner, depth + 1,
	             (struct fmt_opts){.ensure_trailing_newline = expand,
	                               .remove_leading_empty_lines = v->nitems == 0,
	                               .remove_trailing_empty_lines = true,
	                               .unindent_last_line = true});
	last = last_value(v);
	surrounded = last != NULL && last->after.n > 0 && v->inner.n > 0;
	if (!expand && !surrounded)
		set_trailing_comma(v, false);
	else if (expand && !standardize)
		set_trailing_comma(v, true);
}

/* --- pass 4: align object values ------------------------------------------ */

static bool value_has_newline(const struct hujson_value *v, bool top)
{
	if (top && (hujson_extra_has_newline(&v->before) || hujson_extra_has_newline(&v->after)))
		return true;
	if (is_comp(v))
		for (size_t i = 0; i < v->nitems; i++)
			if (value_has_newline(&v->items[i], true))
				return true;
	return false;
}

struct align_row {
	struct hujson_extra *extra;
	size_t length;
};

static void align_rows(struct align_row *rows, size_t *nrows)
{
	size_t max = 0;

	for (size_t i = 0; i < *nrows; i++)
		if (rows[i].length > max)
			max = rows[i].length;
	for (size_t i = 0; i < *nrows; i++) {
		size_t pad = max - rows[i].length;

		if (pad > 0) {
			struct hujson_extra *e = rows[i].extra;
			char *p = xmalloc(e->n + pad);

			if (e->n)
				memcpy(p, hujson_extra_ptr(e), e->n);
			memset(p + e->n, ' ', pad);
			hujson_extra_set(e, p, e->n + pad);
			free(p);
		}
	}
	*nrows = 0;
}

static void align_object_values(struct hujson_value *v)
{
	if (v->kind == HUJSON_OBJECT && v->nitems > 0) {
		struct align_row *rows = xcalloc(v->nitems / 2 + 1, sizeof(*rows));
		size_t nrows = 0;

		for (size_t i = 0; i + 1 < v->nitems; i += 2) {
			struct hujson_value *name = &v->items[i], *val = &v->items[i + 1];

			if (!hujson_extra_has_newline(&name->before) ||
			    hujson_extra_has_newline(&name->after) ||
			    hujson_extra_has_newline(&val->before) ||
			    value_has_newline(val, false) ||
			    hujson_extra_has_newline(&val->after)) {
				align_rows(rows, &nrows);
				continue;
			}
			if (count_nl(hujson_extra_ptr(&name->before), name->before.n) > 1)
				align_rows(rows, &nrows);
			rows[nrows].extra = &val->before;
			rows[nrows].length = name->litlen + name->after.n + 1 + val->before.n;
			nrows++;
		}
		align_rows(rows, &nrows);
		free(rows);
	}
	if (is_comp(v))
		for (size_t i = 0; i < v->nitems; i++)
			align_object_values(&v->items[i]);
}

void hujson_format(struct hujson_value *v)
{
	bool standard;
	size_t w, trail;

	extra_format(&v->before, 0, (struct fmt_opts){0});
	w = ws(hujson_extra_ptr(&v->before), v->before.n);
	if (w > 0) {
		if (w == v->before.n)
			hujson_extra_clear(&v->before);
		else
			hujson_extra_set(&v->before, hujson_extra_ptr(&v->before) + w,
			                 v->before.n - w);
	}
	standard = hujson_is_standard(v);
	normalize(v);
	(void)expand_composites(v);
	format_whitespace(v, 0, standard);
	align_object_values(v);
	extra_format(&v->after, 0, (struct fmt_opts){0});
	trail = trailing_space((const unsigned char *)hujson_extra_ptr(&v->after), v->after.n);
	{
		size_t keep = v->after.n - trail;
		char *p = xmalloc(keep + 1);

		if (keep)
			memcpy(p, hujson_extra_ptr(&v->after), keep);
		p[keep] = '\n';
		hujson_extra_set(&v->after, p, keep + 1);
		free(p);
	}
	hujson_update_offsets(v);
}
