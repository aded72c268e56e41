/*
 * acl/hujson.c -- HuJSON parser, packer and tree helpers.
 *
 * The parser is a recursive descent over the JWCC grammar (JSON With Commas
 * and Comments) exactly as Tailscale's hujson package accepts it: every
 * value is "extra, trimmed value, extra", where extra is whitespace (space,
 * tab, CR, LF) and comments.  The extras are copied into the tree, so
 * hujson_pack(hujson_parse(x)) == x for every accepted x (the round-trip
 * fuzzer checks this).  Error messages and positions copy hujson's wording
 * (Go's %q for the offending byte, "line L, column C" in bytes) so that our
 * FILE:LINE:COL output matches what Tailscale's admin console says.
 *
 * Nesting is bounded (HUJSON_MAX_DEPTH) so hostile input cannot exhaust
 * the stack.
 */
#include "acl/hujson.h"
#include "shared/xmalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HUJSON_MAX_DEPTH 1000

struct parser {
	const char *b;
	size_t len;
	size_t n;
	int depth;
	struct hujson_error *err;
	bool failed;
};

static void perr(struct parser *p, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void perr(struct parser *p, size_t off, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	p->err->off = off;
	va_start(ap, fmt);
	vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
	va_end(ap);
}

void hujson_quote_byte(char *out, size_t outsz, unsigned char c)
{
	switch (c) {
	case '\a':
		snprintf(out, outsz, "'\\a'");
		return;
	case '\b':
		snprintf(out, outsz, "'\\b'");
		return;
	case '\f':
		snprintf(out, outsz, "'\\f'");
		return;
	case '\n':
		snprintf(out, outsz, "'\\n'");
		return;
	case '\r':
		snprintf(out, outsz, "'\\r'");
		return;
	case '\t':
		snprintf(out, outsz, "'\\t'");
		return;
	case '\v':
		snprintf(out, outsz, "'\\v'");
		return;
	case '\\':
		snprintf(out, outsz, "'\\\\'");
		return;
	case '\'':
		snprintf(out, outsz, "'\\''");
		return;
	default:
		break;
	}
	if (c < 0x20 || c == 0x7f) {
		snprintf(out, outsz, "'\\x%02x'", c);
	} else if (c < 0x80) {
		snprintf(out, outsz, "'%c'", c);
	} else if (c < 0xa1 || c == 0xad) {
		/* Go prints a byte as the rune U+0080..U+00FF; these are not
		 * graphic (unicode.IsPrint), so they are escaped. */
		snprintf(out, outsz, "'\\u%04x'", c);
	} else {
		snprintf(out, outsz, "'%c%c'", 0xc0 | (c >> 6), 0x80 | (c & 0x3f));
	}
}

void hujson_line_col(const char *text, size_t len, size_t off, int *line_r, int *col_r)
{
	int line = 1;
	size_t last_nl = 0;
	bool have_nl = false;

	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			line++;
			last_nl = i;
			have_nl = true;
		}
	}
	*line_r = line;
	*col_r = (int)(have_nl ? off - last_nl : off + 1);
}

/* --- extras --------------------------------------------------------------- */

void hujson_extra_set(struct hujson_extra *e, const char *p, size_t n)
{
	char *np = n ? xmemdup(p, n) : NULL;

	free(e->p);
	e->p = np;
	e->n = n;
	e->set = true;
}

void hujson_extra_clear(struct hujson_extra *e)
{
	free(e->p);
	e->p = NULL;
	e->n = 0;
	e->set = false;
}

static size_t ws_len(const char *b, size_t n)
{
	size_t i = 0;

	while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
		i++;
	return i;
}

bool hujson_extra_has_comment(const struct hujson_extra *e)
{
	return ws_len(e->p, e->n) < e->n;
}

bool hujson_extra_has_newline(const struct hujson_extra *e)
{
	return e->n > 0 && memchr(e->p, '\n', e->n) != NULL;
}

/* Valid UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/*
 * Length of the comment starting at b (n bytes available): 0 if b is not a
 * comment, -1 if it is unterminated.  A line comment includes its '\n'.
 */
static long comment_len(const char *b, size_t n)
{
	const char *end;

	if (n >= 2 && b[0] == '/' && b[1] == '/') {
		end = memchr(b + 2, '\n', n - 2);
		if (end == NULL)
			return -1;
		return end - b + 1;
	}
	if (n >= 2 && b[0] == '/' && b[1] == '*') {
		end = memmem(b + 2, n - 2, "*/", 2);
		if (end == NULL)
			return -1;
		return end - b + 2;
	}
	return 0;
}

/* Consume whitespace and comments from p->n; false on a bad comment. */
static bool consume_extra(struct parser *p)
{
	while (p->n < p->len) {
		char c = p->b[p->n];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			p->n += ws_len(p->b + p->n, p->len - p->n);
		} else if (c == '/') {
			long nc = comment_len(p->b + p->n, p->len - p->n);

			if (nc == 0)
				return true;
			if (nc < 0) {
				perr(p, p->n, "parsing comment: unexpected EOF");
				return false;
			}
			if (!utf8_valid((const unsigned char *)p->b + p->n, (size_t)nc)) {
				perr(p, p->n, "invalid UTF-8 in comment");
				return false;
			}
			p->n += (size_t)nc;
		} else {
			return true;
		}
	}
	return true;
}

/* --- literals ------------------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 8259 section 6 number grammar over the whole of s. */
static bool number_valid(const char *s, size_t n)
{
	size_t i = 0;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return false;
	if (s[i] == '0') {
		i++;
	} else if (s[i] >= '1' && s[i] <= '9') {
		while (i < n && is_digit(s[i]))
			i++;
	} else {
		return false;
	}
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return i == n;
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * A string literal (quotes included) as Go's json.Valid judges it: no raw
 * control characters, only the RFC 8259 escapes.  Go does not check UTF-8
 * inside strings, so neither do we.
 */
static bool string_valid(const char *s, size_t n)
{
	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return false;
	for (size_t i = 1; i < n - 1; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20)
			return false;
		if (c == '"')
			return false;
		if (c != '\\')
			continue;
		i++;
		if (i >= n - 1)
			return false;
		switch (s[i]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			break;
		case 'u':
			if (i + 4 > n - 2)
				return false;
			for (int k = 1; k <= 4; k++)
				if (!is_hex(s[i + k]))
					return false;
			i += 4;
			break;
		default:
			return false;
		}
	}
	return true;
}

static bool literal_valid(const char *s, size_t n)
{
	if (n == 0)
		return false;
	if (s[0] == '"')
		return string_valid(s, n);
	if (n == 4 && memcmp(s, "null", 4) == 0)
		return true;
	if (n == 4 && memcmp(s, "true", 4) == 0)
		return true;
	if (n == 5 && memcmp(s, "false", 5) == 0)
		return true;
	return number_valid(s, n);
}

static enum hujson_kind literal_kind(const char *s)
{
	switch (s[0]) {
	case 'n':
		return HUJSON_NULL;
	case 't':
		return HUJSON_TRUE;
	case 'f':
		return HUJSON_FALSE;
	case '"':
		return HUJSON_STRING;
	default:
		return HUJSON_NUMBER;
	}
}

/* --- parser --------------------------------------------------------------- */

/* Sentinels for a closing bracket met where a value was expected. */
enum close_kind {
	CLOSE_NONE = 0,
	CLOSE_OBJECT,
	CLOSE_ARRAY,
};

static bool parse_value(struct parser *p, struct hujson_value *v, enum close_kind *closed);

static void extra_from(struct hujson_extra *e, const char *b, size_t from, size_t to)
{
	if (to > from)
		hujson_extra_set(e, b + from, to - from);
}

static struct hujson_value *push_item(struct hujson_value *comp)
{
	if (comp->nitems == comp->capitems) {
		comp->capitems = comp->capitems ? comp->capitems * 2 : 4;
		comp->items = xreallocarray(comp->items, comp->capitems, sizeof(*comp->items));
	}
	memset(&comp->items[comp->nitems], 0, sizeof(comp->items[0]));
	return &comp->items[comp->nitems++];
}

/* Move the extra of the last value into the composite's closing extra, as
 * hujson does when a ']' or '}' directly follows a value. */
static void move_after_to_inner(struct hujson_value *comp, struct hujson_value *last)
{
	comp->inner = last->after;
	memset(&last->after, 0, sizeof(last->after));
	/* An absent closing extra stays absent; an empty one never occurs. */
}

static bool parse_trimmed(struct parser *p, struct hujson_value *v, enum close_kind *closed)
{
	const char *b = p->b;

	*closed = CLOSE_NONE;
	if (p->n == p->len) {
		perr(p, p->n, "parsing value: unexpected EOF");
		return false;
	}
	switch (b[p->n]) {
	case '{':
	case '[': {
		bool is_obj = b[p->n] == '{';
		char close = is_obj ? '}' : ']';
		enum close_kind want = is_obj ? CLOSE_OBJECT : CLOSE_ARRAY;

		if (++p->depth > HUJSON_MAX_DEPTH) {
			perr(p, p->n, "exceeded max depth");
			return false;
		}
		v->kind = is_obj ? HUJSON_OBJECT : HUJSON_ARRAY;
		p->n++;
		for (;;) {
			struct hujson_value *item;
			enum close_kind c;
			item = push_item(v);
			if (!parse_value(p, item, &c)) {
				if (c == want) {
					/* A closing bracket where a value could start: the
					 * end of the composite, after a trailing comma or
					 * at once.  Its leading extra becomes the closing
					 * extra; a present last `after` marks the comma. */
					v->inner = item->before;
					memset(&item->before, 0, sizeof(item->before));
					v->nitems--;
					if (v->nitems > 0) {
						struct hujson_value *last =
						        &v->items[v->nitems - 1];
						if (!last->after.set)
							last->after.set = true;
					}
					p->failed = false;
					p->n++;
					p->depth--;
					return true;
				}
				return false;
			}
			if (is_obj) {
				struct hujson_value *val;

				if (item->kind != HUJSON_STRING) {
					char q[16];

					hujson_quote_byte(q, sizeof(q),
					                  (unsigned char)b[item->start]);
					p->failed = false;
					perr(p, item->start,
					     "invalid character %s at start of object name", q);
					p->n = item->start;
					return false;
				}
				if (p->n == p->len) {
					perr(p, p->n, "parsing object after name: unexpected EOF");
					return false;
				}
				if (b[p->n] != ':') {
					char q[16];

					hujson_quote_byte(q, sizeof(q), (unsigned char)b[p->n]);
					perr(p, p->n, "invalid character %s after object name", q);
					return false;
				}
				p->n++;
				val = push_item(v);
				if (!parse_value(p, val, &c))
					return false;
				item = val;
			}
			if (p->n == p->len) {
				perr(p, p->n, "parsing %s after value: unexpected EOF",
				     is_obj ? "object" : "array");
				return false;
			}
			if (b[p->n] == ',') {
				p->n++;
				continue;
			}
			if (b[p->n] == close) {
				move_after_to_inner(v, item);
				p->n++;
				p->depth--;
				return true;
			}
			{
				char q[16];

				hujson_quote_byte(q, sizeof(q), (unsigned char)b[p->n]);
				perr(p, p->n,
				     "invalid character %s after %s value (expecting ',' or '%c')",
				     q, is_obj ? "object" : "array", close);
			}
			return false;
		}
	}
	case '}':
		*closed = CLOSE_OBJECT;
		perr(p, p->n, "invalid character '}' at start of value");
		return false;
	case ']':
		*closed = CLOSE_ARRAY;
		perr(p, p->n, "invalid character ']' at start of value");
		return false;
	case '"': {
		size_t n0 = p->n;
		bool esc = false;

		p->n++;
		for (;;) {
			if (p->n == p->len) {
				perr(p, p->n, "parsing string: unexpected EOF");
				return false;
			}
			if (esc) {
				esc = false;
			} else if (b[p->n] == '\\') {
				esc = true;
			} else if (b[p->n] == '"') {
				p->n++;
				break;
			}
			p->n++;
		}
		if (!string_valid(b + n0, p->n - n0)) {
			perr(p, n0, "invalid literal: %.*s",
			     (int)(p->n - n0 > 100 ? 100 : p->n - n0), b + n0);
			p->n = n0;
			return false;
		}
		v->kind = HUJSON_STRING;
		v->lit = xmemdup(b + n0, p->n - n0);
		v->litlen = p->n - n0;
		return true;
	}
	default: {
		size_t n0 = p->n;

		while (p->n < p->len) {
			char c = b[p->n];

			if (c == '-' || c == '+' || c == '.' || (c >= 'a' && c <= 'z') ||
			    (c >= 'A' && c <= 'Z') || is_digit(c))
				p->n++;
			else
				break;
		}
		if (p->n == n0) {
			char q[16];

			hujson_quote_byte(q, sizeof(q), (unsigned char)b[n0]);
			perr(p, n0, "invalid character %s at start of value", q);
			return false;
		}
		if (!literal_valid(b + n0, p->n - n0)) {
			perr(p, n0, "invalid literal: %.*s",
			     (int)(p->n - n0 > 100 ? 100 : p->n - n0), b + n0);
			p->n = n0;
			return false;
		}
		v->kind = literal_kind(b + n0);
		v->lit = xmemdup(b + n0, p->n - n0);
		v->litlen = p->n - n0;
		return true;
	}
	}
}

static bool parse_value(struct parser *p, struct hujson_value *v, enum close_kind *closed)
{
	size_t n0 = p->n;

	*closed = CLOSE_NONE;
	if (!consume_extra(p))
		return false;
	extra_from(&v->before, p->b, n0, p->n);
	v->start = p->n;
	if (!parse_trimmed(p, v, closed))
		return false;
	v->end = p->n;
	if (!consume_extra(p))
		return false;
	extra_from(&v->after, p->b, v->end, p->n);
	return true;
}

enum hujson_status hujson_parse(const char *text, size_t len, struct hujson_value *out,
                                struct hujson_error *err)
{
	struct parser p = {.b = text, .len = len, .err = err};
	enum close_kind closed;

	memset(out, 0, sizeof(*out));
	memset(err, 0, sizeof(*err));
	if (!parse_value(&p, out, &closed))
		goto fail;
	if (p.n < len) {
		char q[16];

		hujson_quote_byte(q, sizeof(q), (unsigned char)text[p.n]);
		perr(&p, p.n, "invalid character %s after top-level value", q);
		goto fail;
	}
	return HUJSON_OK;
fail:
	hujson_line_col(text, len, err->off, &err->line, &err->col);
	hujson_free(out);
	return HUJSON_ERR_SYNTAX;
}

/* --- tree ----------------------------------------------------------------- */

void hujson_free(struct hujson_value *v)
{
	if (v == NULL)
		return;
	free(v->before.p);
	free(v->after.p);
	free(v->inner.p);
	free(v->lit);
	for (size_t i = 0; i < v->nitems; i++)
		hujson_free(&v->items[i]);
	free(v->items);
	memset(v, 0, sizeof(*v));
}

static void extra_clone(struct hujson_extra *dst, const struct hujson_extra *src)
{
	dst->p = src->n ? xmemdup(src->p, src->n) : NULL;
	dst->n = src->n;
	dst->set = src->set;
}

void hujson_clone(struct hujson_value *dst, const struct hujson_value *src)
{
	*dst = *src;
	extra_clone(&dst->before, &src->before);
	extra_clone(&dst->after, &src->after);
	extra_clone(&dst->inner, &src->inner);
	dst->lit = src->lit ? xmemdup(src->lit, src->litlen) : NULL;
	dst->items = NULL;
	dst->capitems = dst->nitems = 0;
	if (src->nitems > 0) {
		dst->items = xcalloc(src->nitems, sizeof(*dst->items));
		dst->capitems = dst->nitems = src->nitems;
		for (size_t i = 0; i < src->nitems; i++)
			hujson_clone(&dst->items[i], &src->items[i]);
	}
}

static void put(struct buf *out, const void *p, size_t n)
{
	/* Packing buffers are unbounded (buf_init(b, 0)): append cannot fail. */
	(void)buf_append(out, p, n);
}

void hujson_pack_trimmed(const struct hujson_value *v, struct buf *out)
{
	bool obj = v->kind == HUJSON_OBJECT;
	size_t step = obj ? 2 : 1;

	if (v->kind != HUJSON_OBJECT && v->kind != HUJSON_ARRAY) {
		put(out, v->lit, v->litlen);
		return;
	}
	put(out, obj ? "{" : "[", 1);
	for (size_t i = 0; i < v->nitems; i += step) {
		const struct hujson_value *last;

		if (obj) {
			hujson_pack(&v->items[i], out);
			put(out, ":", 1);
			hujson_pack(&v->items[i + 1], out);
			last = &v->items[i + 1];
		} else {
			hujson_pack(&v->items[i], out);
			last = &v->items[i];
		}
		if (i + step < v->nitems || last->after.set)
			put(out, ",", 1);
	}
	put(out, v->inner.p, v->inner.n);
	put(out, obj ? "}" : "]", 1);
}

void hujson_pack(const struct hujson_value *v, struct buf *out)
{
	put(out, v->before.p, v->before.n);
	hujson_pack_trimmed(v, out);
	put(out, v->after.p, v->after.n);
}

char *hujson_pack_str(const struct hujson_value *v, size_t *len_r)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	hujson_pack(v, &b);
	s = xmalloc(buf_len(&b) + 1);
	if (buf_len(&b) > 0)
		memcpy(s, hujson_buf_bytes(&b), buf_len(&b));
	s[buf_len(&b)] = '\0';
	if (len_r != NULL)
		*len_r = buf_len(&b);
	buf_free(&b);
	return s;
}

static size_t update_offsets(struct hujson_value *v, size_t n)
{
	bool obj = v->kind == HUJSON_OBJECT;
	size_t step = obj ? 2 : 1;

	n += v->before.n;
	v->start = n;
	if (v->kind == HUJSON_OBJECT || v->kind == HUJSON_ARRAY) {
		n++;
		for (size_t i = 0; i < v->nitems; i += step) {
			const struct hujson_value *last;

			if (obj) {
				n = update_offsets(&v->items[i], n);
				n++;
				n = update_offsets(&v->items[i + 1], n);
				last = &v->items[i + 1];
			} else {
				n = update_offsets(&v->items[i], n);
				last = &v->items[i];
			}
			if (i + step < v->nitems || last->after.set)
				n++;
		}
		n += v->inner.n + 1;
	} else {
		n += v->litlen;
	}
	v->end = n;
	return n + v->after.n;
}

void hujson_update_offsets(struct hujson_value *v)
{
	(void)update_offsets(v, 0);
}

size_t hujson_len(const struct hujson_value *v)
{
	if (v->kind == HUJSON_OBJECT)
		return v->nitems / 2;
	if (v->kind == HUJSON_ARRAY)
		return v->nitems;
	return 0;
}

struct hujson_value *hujson_member_name(struct hujson_value *obj, size_t i)
{
	return &obj->items[2 * i];
}

struct hujson_value *hujson_member_value(struct hujson_value *obj, size_t i)
{
	return &obj->items[2 * i + 1];
}

struct hujson_value *hujson_elem(struct hujson_value *arr, size_t i)
{
	return &arr->items[i];
}

/* --- strings -------------------------------------------------------------- */

static void put_utf8(struct buf *out, unsigned cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | (cp >> 6));
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | (cp >> 12));
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | (cp >> 18));
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	put(out, u, n);
}

/* Length of the valid UTF-8 sequence at s (n available), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t k;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (n < k)
		return 0;
	return utf8_valid(s, k) ? k : 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return c - 'A' + 10;
}

static long getu4(const char *s, size_t n)
{
	long r = 0;

	if (n < 6 || s[0] != '\\' || s[1] != 'u')
		return -1;
	for (int i = 2; i < 6; i++) {
		if (!is_hex(s[i]))
			return -1;
		r = r * 16 + hexval(s[i]);
	}
	return r;
}

char *hujson_string(const struct hujson_value *v, size_t *len_r)
{
	struct buf out;
	const char *s;
	size_t n;
	char *res;

	if (v->kind != HUJSON_STRING)
		return NULL;
	s = v->lit + 1;
	n = v->litlen - 2;
	buf_init(&out, 0);
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\\') {
			char e = s[i + 1];

			switch (e) {
			case 'b':
				put(&out, "\b", 1);
				break;
			case 'f':
				put(&out, "\f", 1);
				break;
			case 'n':
				put(&out, "\n", 1);
				break;
			case 'r':
				put(&out, "\r", 1);
				break;
			case 't':
				put(&out, "\t", 1);
				break;
			case 'u': {
				long r = getu4(s + i, n - i);
				i += 6;
				if (r >= 0xd800 && r < 0xe000) {
					long r2 = getu4(s + i, n - i);
					if (r < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000) {
						put_utf8(&out,
						         (unsigned)(0x10000 + ((r - 0xd800) << 10) +
						                    (r2 - 0xdc00)));
						i += 6;
						continue;
					}
					r = 0xfffd;
				}
				put_utf8(&out, (unsigned)r);
				continue;
			}
			default:
				put(&out, &e, 1);
				break;
			}
			i += 2;
			continue;
		}
		if (c < 0x80) {
			put(&out, &c, 1);
			i++;
			continue;
		}
		{
			size_t k = utf8_seq((const unsigned char *)s + i, n - i);
			if (k == 0) {
				put_utf8(&out, 0xfffd);
				i++;
			} else {
				put(&out, s + i, k);
				i += k;
			}
		}
	}
	res = xmalloc(buf_len(&out) + 1);
	if (buf_len(&out))
		memcpy(res, hujson_buf_bytes(&out), buf_len(&out));
	res[buf_len(&out)] = '\0';
	if (len_r != NULL)
		*len_r = buf_len(&out);
	buf_free(&out);
	return res;
}

bool hujson_string_eq(const struct hujson_value *v, const char *s)
{
	size_t n;
	char *d = hujson_string(v, &n);
	bool eq;

	if (d == NULL)
		return false;
	eq = n == strlen(s) && memcmp(d, s, n) == 0;
	free(d);
	return eq;
}

static int fold(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

long hujson_find(const struct hujson_value *obj, const char *name, bool fold_case)
{
	size_t n = hujson_len(obj);
	long found = -1;

	if (obj->kind != HUJSON_OBJECT)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		char *k = hujson_string(&obj->items[2 * i], &len);
		bool exact = strcmp(k, name) == 0 && len == strlen(name);
		bool folded = false;

		if (!exact && fold_case && len == strlen(name)) {
			folded = true;
			for (size_t j = 0; j < len; j++)
				if (fold((unsigned char)k[j]) != fold((unsigned char)name[j]))
					folded = false;
		}
		free(k);
		if (exact)
			return (long)i;
		if (folded && found < 0)
			found = (long)i;
	}
	return found;
}

void hujson_quote(struct buf *out, const char *s, size_t len)
{
	put(out, "\"", 1);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t k;

		if (c < 0x20 || c == '\\' || c == '"') {
			char esc[8];

			switch (c) {
			case '\b':
				put(out, "\\b", 2);
				break;
			case '\t':
				put(out, "\\t", 2);
				break;
			case '\n':
				put(out, "\\n", 2);
				break;
			case '\f':
				put(out, "\\f", 2);
				break;
			case '\r':
				put(out, "\\r", 2);
				break;
			case '\\':
				put(out, "\\\\", 2);
				break;
			case '"':
				put(out, "\\\"", 2);
				break;
			default:
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				put(out, esc, 6);
				break;
			}
			i++;
			continue;
		}
		if (c < 0x80) {
			put(out, &c, 1);
			i++;
			continue;
		}
		k = utf8_seq((const unsigned char *)s + i, len - i);
		if (k == 0) {
			put_utf8(out, 0xfffd);
			i++;
		} else {
			put(out, s + i, k);
			i += k;
		}
	}
	put(out, "\"", 1);
}

/* --- construction --------------------------------------------------------- */

void hujson_new_string(struct hujson_value *v, const char *s)
{
	struct buf b;

	memset(v, 0, sizeof(*v));
	buf_init(&b, 0);
	hujson_quote(&b, s, strlen(s));
	v->kind = HUJSON_STRING;
	v->litlen = buf_len(&b);
	v->lit = xmemdup(hujson_buf_bytes(&b), buf_len(&b));
	buf_free(&b);
}

void hujson_new_literal(struct hujson_value *v, const char *raw)
{
	memset(v, 0, sizeof(*v));
	v->kind = literal_kind(raw);
	v->litlen = strlen(raw);
	v->lit = xmemdup(raw, v->litlen);
}

void hujson_new_composite(struct hujson_value *v, enum hujson_kind kind)
{
	memset(v, 0, sizeof(*v));
	v->kind = kind;
}

/* --- predicates ----------------------------------------------------------- */

bool hujson_is_standard(const struct hujson_value *v)
{
	if (hujson_extra_has_comment(&v->before) || hujson_extra_has_comment(&v->after))
		return false;
	if (v->kind == HUJSON_OBJECT || v->kind == HUJSON_ARRAY) {
		for (size_t i = 0; i < v->nitems; i++)
			if (!hujson_is_standard(&v->items[i]))
				return false;
		if (v->nitems > 0 && v->items[v->nitems - 1].after.set)
			return false;
		if (hujson_extra_has_comment(&v->inner))
			return false;
	}
	return true;
}

bool hujson_equal(const struct hujson_value *a, const struct hujson_value *b)
{
	if (a->kind != b->kind || a->nitems != b->nitems)
		return false;
	if (a->kind == HUJSON_STRING) {
		size_t na, nb;
		char *sa = hujson_string(a, &na), *sb = hujson_string(b, &nb);
		bool eq = na == nb && memcmp(sa, sb, na) == 0;

		free(sa);
		free(sb);
		return eq;
	}
	if (a->kind != HUJSON_OBJECT && a->kind != HUJSON_ARRAY)
		return a->litlen == b->litlen && memcmp(a->lit, b->lit, a->litlen) == 0;
	for (size_t i = 0; i < a->nitems; i++)
		if (!hujson_equal(&a->items[i], &b->items[i]))
			return false;
	return true;
}
