/*
 * acl/hujson_edit.c -- insert, remove and replace items without losing the
 * comments around them.
 *
 * Which comment belongs to which item is a matter of taste; we follow the
 * rules of Tailscale's hujson Patch so that a policy edited by us and by
 * Tailscale's tools moves comments the same way.  For the extra between
 * item i-1 and item i:
 *
 *   - a blank line is a divider: comments above the first divider belong
 *     to item i-1, comments below the last one belong to item i;
 *   - without a divider, a line comment that starts on item i-1's line
 *     ("a, // about a") belongs to item i-1 and everything else to item i.
 *
 * Removing item i takes its own leading comments and the trailing comments
 * after it; inserting keeps item i-1's trailing comments with item i-1.
 * Whitespace is not Patch's business (it expects a Format afterwards), but
 * merge must keep every untouched byte, so here the new item takes the
 * indentation of its siblings instead.
 */
#include "acl/hujson.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

static size_t ws(const char *b, size_t n)
{
	size_t i = 0;

	while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
		i++;
	return i;
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

static size_t count_nl(const char *b, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		if (b[i] == '\n')
			c++;
	return c;
}

/*
 * Split extra b into the part owned by the previous item (b[0..*prev_end))
 * and the part owned by the next one (b[*cur_start..n)).
 */
static void classify(const char *b, size_t n, size_t *prev_end, size_t *cur_start)
{
	size_t first_div = 0, last_div = 0, ndiv = 0, i = 0, prev_nl = 0;

	while (i < n) {
		size_t nw = ws(b + i, n - i);
		long nc;

		if (prev_nl + count_nl(b + i, nw) >= 2) {
			if (ndiv == 0)
				first_div = i;
			last_div = i;
			ndiv++;
		}
		i += nw;
		nc = comment_len(b + i, n - i);
		if (nc <= 0)
			break;
		prev_nl = b[i + (size_t)nc - 1] == '\n' ? 1 : 0;
		i += (size_t)nc;
	}
	if (ndiv == 0) {
		size_t nw = ws(b, n);
		long nc = comment_len(b + nw, n - nw);
		size_t k = nw + (nc > 0 ? (size_t)nc : 0);

		if (count_nl(b, k) == 1 && k > 0 && b[k - 1] == '\n') {
			*prev_end = *cur_start = k;
			return;
		}
		*prev_end = *cur_start = 0;
		return;
	}
	*prev_end = first_div;
	*cur_start = last_div;
}

static struct hujson_extra *slot(struct hujson_value *comp, size_t i)
{
	size_t step = comp->kind == HUJSON_OBJECT ? 2 : 1;

	if (i * step < comp->nitems)
		return &comp->items[i * step].before;
	return &comp->inner;
}

void hujson_leading_comments(struct hujson_value *comp, size_t i, const char **p_r, size_t *n_r)
{
	struct hujson_extra *e = slot(comp, i);
	size_t prev_end, cur;

	classify(hujson_extra_ptr(e), e->n, &prev_end, &cur);
	cur += ws(hujson_extra_ptr(e) + cur, e->n - cur);
	*p_r = hujson_extra_ptr(e) ? hujson_extra_ptr(e) + cur : "";
	*n_r = e->n - cur;
}

/* Replace e by the concatenation of up to three byte ranges. */
static void extra_join(struct hujson_extra *e, const char *a, size_t na, const char *b, size_t nb,
                       const char *c, size_t nc)
{
	size_t n = na + nb + nc;
	char *p = xmalloc(n ? n : 1);

	if (na)
		memcpy(p, a, na);
	if (nb)
		memcpy(p + na, b, nb);
	if (nc)
		memcpy(p + na + nb, c, nc);
	if (n > 0 || e->set)
		hujson_extra_set(e, p, n);
	else
		hujson_extra_clear(e);
	free(p);
}

/* The whitespace after the last newline of e, if that tail is blank. */
static bool indent_of(const struct hujson_extra *e, const char **p_r, size_t *n_r)
{
	const char *nl;
	size_t tail;

	if (e->n == 0)
		return false;
	nl = memrchr(hujson_extra_ptr(e), '\n', e->n);
	if (nl == NULL)
		return false;
	tail = e->n - (size_t)(nl + 1 - hujson_extra_ptr(e));
	if (ws(nl + 1, tail) != tail)
		return false;
	*p_r = nl + 1;
	*n_r = tail;
	return true;
}

static char *tabs(int depth)
{
	char *t = xmalloc((size_t)(depth > 0 ? depth : 0) + 1);
	int i;

	for (i = 0; i < depth; i++)
		t[i] = '\t';
	t[i > 0 ? i : 0] = '\0';
	return t;
}

/* Comments of e, each on its own line and followed by newline + indent. */
/*
 * The comments of e for a new item: in an expanded composite each on its
 * own line followed by newline + indent; in an inline one as block
 * comments followed by a space (a line comment would end the line; one
 * that holds a star-slash cannot be converted and stays a line comment).
 */
static void comments_block(struct buf *out, const struct hujson_extra *e, const char *ind,
                           size_t nind, bool inline_)
{
	const char *p = hujson_extra_ptr(e);
	size_t i = 0;

	while (i < e->n) {
		long nc;

		i += ws(p + i, e->n - i);
		nc = comment_len(p + i, e->n - i);
		if (nc <= 0)
			break;
		if (inline_ && p[i + 1] == '/' && memmem(p + i, (size_t)nc, "*/", 2) == NULL) {
			size_t body = (size_t)nc - 3; /* without "//" and "\n" */

			while (body > 0 &&
			       (p[i + 2 + body - 1] == ' ' || p[i + 2 + body - 1] == '\r'))
				body--;
			(void)buf_append(out, "/*", 2);
			(void)buf_append(out, p + i + 2, body);
			(void)buf_append(out, " */ ", 4);
		} else {
			(void)buf_append(out, p + i, (size_t)nc);
			if (inline_ && p[i + (size_t)nc - 1] != '\n') {
				(void)buf_append(out, " ", 1);
			} else {
				if (p[i + (size_t)nc - 1] != '\n')
					(void)buf_append(out, "\n", 1);
				(void)buf_append(out, ind, nind);
			}
		}
		i += (size_t)nc;
	}
}

void hujson_insert(struct hujson_value *comp, size_t i, struct hujson_value *name,
                   struct hujson_value *v, int depth)
{
	bool obj = comp->kind == HUJSON_OBJECT;
	size_t step = obj ? 2 : 1, len = comp->nitems / step;
	struct hujson_extra *x, newbefore = {0};
	struct hujson_value *item;
	const char *ind = NULL;
	size_t nind = 0;
	bool expanded;
	char *own_ind = NULL;
	struct buf b;

	if (!obj && name != NULL)
		hujson_free(name); /* arrays have no names; the caller gave it up */
	if (i > len)
		i = len;
	x = slot(comp, i);
	expanded = hujson_extra_has_newline(x) ||
	           (i > 0 && hujson_extra_has_newline(slot(comp, i - 1))) || len == 0;
	if (len == 0 && !hujson_extra_has_newline(&comp->inner) &&
	    hujson_extra_has_comment(&comp->inner))
		expanded = true;
	/* Indentation: the sibling before, the one after, or depth tabs. */
	if (i > 0 && indent_of(slot(comp, i - 1), &ind, &nind)) {
	} else if (i < len && indent_of(x, &ind, &nind)) {
	} else {
		own_ind = tabs(depth);
		ind = own_ind;
		nind = strlen(own_ind);
	}
	buf_init(&b, 0);
	if (expanded) {
		size_t prev_end, cur;
		struct hujson_extra rest = {0};

		classify(hujson_extra_ptr(x), x->n, &prev_end, &cur);
		/* Item i-1's trailing comments stay on its line. */
		(void)buf_append(&b, hujson_extra_ptr(x) ? hujson_extra_ptr(x) : "", prev_end);
		if (prev_end == 0 || hujson_extra_ptr(x)[prev_end - 1] != '\n')
			(void)buf_append(&b, "\n", 1);
		(void)buf_append(&b, ind, nind);
		comments_block(&b, &v->before, ind, nind, false);
		hujson_extra_set(&newbefore, hujson_buf_bytes(&b), buf_len(&b));
		/* What stays before the old item i (or the closing bracket)
		 * must still start on a new line. */
		if (len == 0) {
			char *close = tabs(depth - 1);

			extra_join(&rest, "\n", 1, close, strlen(close), NULL, 0);
			free(close);
			if (hujson_extra_has_comment(x))
				extra_join(&rest, hujson_extra_ptr(x), x->n, rest.p, rest.n, NULL,
				           0);
		} else if (ws(hujson_extra_ptr(x) + prev_end, x->n - prev_end) == 0 ||
		           count_nl(hujson_extra_ptr(x) + prev_end,
		                    ws(hujson_extra_ptr(x) + prev_end, x->n - prev_end)) == 0) {
			extra_join(&rest, "\n", 1, hujson_extra_ptr(x) + prev_end, x->n - prev_end,
			           NULL, 0);
		} else {
			extra_join(&rest, hujson_extra_ptr(x) + prev_end, x->n - prev_end, NULL, 0,
			           NULL, 0);
		}
		hujson_extra_clear(x);
		*x = rest;
	} else {
		if (i > 0)
			(void)buf_append(&b, " ", 1);
		comments_block(&b, &v->before, " ", 1, true);
		if (buf_len(&b) > 0)
			hujson_extra_set(&newbefore, hujson_buf_bytes(&b), buf_len(&b));
		if (i == 0 && i < len && x->n == 0)
			hujson_extra_set(x, " ", 1);
	}
	buf_free(&b);
	free(own_ind);

	/* Make room for the new item (x may move: do not use it below). */
	if (comp->nitems + step > comp->capitems) {
		comp->capitems = (comp->nitems + step) * 2;
		comp->items = xreallocarray(comp->items, comp->capitems, sizeof(*comp->items));
	}
	memmove(&comp->items[(i + 1) * step], &comp->items[i * step],
	        (comp->nitems - i * step) * sizeof(*comp->items));
	comp->nitems += step;
	item = &comp->items[i * step];
	if (obj) {
		item[0] = *name;
		memset(name, 0, sizeof(*name));
		hujson_extra_clear(&item[0].before);
		hujson_extra_clear(&item[0].after);
		item[0].before = newbefore;
		item[1] = *v;
		hujson_extra_clear(&item[1].before);
		hujson_extra_set(&item[1].before, " ", 1);
		hujson_extra_clear(&item[1].after);
		item = &item[1];
	} else {
		item[0] = *v;
		hujson_extra_clear(&item[0].before);
		hujson_extra_clear(&item[0].after);
		item[0].before = newbefore;
	}
	memset(v, 0, sizeof(*v));
	/* Appended: inherit the old last item's trailing comma. */
	if (i == len && len > 0) {
		struct hujson_value *old_last = &comp->items[i * step - 1];

		if (old_last->after.set)
			item->after.set = true;
	} else if (len == 0 && expanded) {
		item->after.set = true;
	}
}

void hujson_remove(struct hujson_value *comp, size_t i)
{
	bool obj = comp->kind == HUJSON_OBJECT;
	size_t step = obj ? 2 : 1, len = comp->nitems / step;
	struct hujson_extra *x, *y;
	size_t prev_end, cur, keep, xprev;
	bool was_last = i + 1 == len, had_comma;

	if (i >= len)
		return;
	had_comma = comp->items[(i + 1) * step - 1].after.set;
	x = slot(comp, i);
	y = slot(comp, i + 1);
	/* Item i's leading comments go with it. */
	classify(hujson_extra_ptr(x), x->n, &xprev, &cur);
	keep = cur + ws(hujson_extra_ptr(x) + cur, x->n - cur);
	/* So do the trailing comments after it (but not their newline). */
	classify(hujson_extra_ptr(y), y->n, &prev_end, &cur);
	if (prev_end > 0) {
		size_t cut = hujson_extra_ptr(y)[prev_end - 1] == '\n' ? prev_end - 1 : prev_end;
		struct hujson_extra t = {0};

		extra_join(&t, hujson_extra_ptr(y) + cut, y->n - cut, NULL, 0, NULL, 0);
		t.set = y->set;
		hujson_extra_clear(y);
		*y = t;
	}
	/* Comments of item i-1 that sat in x move in front of what follows:
	 * its line stays as it was, the rest keeps y's indentation. */
	if (keep > 0 && ws(hujson_extra_ptr(x), keep) < keep) {
		size_t lead = ws(hujson_extra_ptr(y), y->n);
		const char *nl = lead > 0 ? memchr(hujson_extra_ptr(y), '\n', lead) : NULL;
		struct hujson_extra t = {0};

		if (xprev > 0 && hujson_extra_ptr(x)[xprev - 1] == '\n' && nl != NULL) {
			size_t skip = (size_t)(nl - hujson_extra_ptr(y)) + 1;

			extra_join(&t, hujson_extra_ptr(x), xprev, hujson_extra_ptr(y) + skip,
			           y->n - skip, NULL, 0);
		} else {
			extra_join(&t, hujson_extra_ptr(x), keep, hujson_extra_ptr(y) + lead,
			           y->n - lead, NULL, 0);
		}
		t.set = true;
		hujson_extra_clear(y);
		*y = t;
	} else if (i == 0 && !was_last) {
		/* The new first item takes the old first item's spacing. */
		size_t lead = ws(hujson_extra_ptr(y), y->n);
		struct hujson_extra t = {0};

		extra_join(&t, hujson_extra_ptr(x), keep, hujson_extra_ptr(y) + lead, y->n - lead,
		           NULL, 0);
		t.set = y->set;
		hujson_extra_clear(y);
		*y = t;
	}
	for (size_t k = 0; k < step; k++)
		hujson_free(&comp->items[i * step + k]);
	memmove(&comp->items[i * step], &comp->items[(i + 1) * step],
	        (comp->nitems - (i + 1) * step) * sizeof(*comp->items));
	comp->nitems -= step;
	/* The new last item keeps the list's trailing-comma style. */
	if (was_last && comp->nitems > 0 && had_comma)
		comp->items[comp->nitems - 1].after.set = true;
	if (comp->nitems == 0 && !hujson_extra_has_comment(&comp->inner))
		hujson_extra_clear(&comp->inner);
}

void hujson_replace(struct hujson_value *comp, size_t i, struct hujson_value *v)
{
	bool obj = comp->kind == HUJSON_OBJECT;
	struct hujson_value *dst = obj ? &comp->items[2 * i + 1] : &comp->items[i];
	struct hujson_extra before = dst->before, after = dst->after;

	memset(&dst->before, 0, sizeof(dst->before));
	memset(&dst->after, 0, sizeof(dst->after));
	hujson_free(dst);
	*dst = *v;
	hujson_extra_clear(&dst->before);
	hujson_extra_clear(&dst->after);
	dst->before = before;
	dst->after = after;
	memset(v, 0, sizeof(*v));
}
