/*
 * acl/diff.c -- a small unified diff.
 *
 * Policy edits are local, so after cutting the common prefix and suffix
 * the middle is small and a quadratic LCS table is cheap.  The table is
 * capped (ACL_DIFF_MAX_CELLS) so a pathological input costs bounded memory.
 */
#include "acl/diff.h"
#include "shared/xmalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ACL_DIFF_MAX_CELLS (4u * 1024 * 1024)
#define CONTEXT            3

struct line {
	const char *p;
	size_t n; /* without the newline */
	bool nl;  /* ended by '\n' */
};

static struct line *split(const char *s, size_t len, size_t *n_r)
{
	struct line *v = NULL;
	size_t n = 0, cap = 0, i = 0;

	while (i < len) {
		const char *nl = memchr(s + i, '\n', len - i);
		size_t l = nl ? (size_t)(nl - (s + i)) : len - i;

		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].p = s + i;
		v[n].n = l;
		v[n].nl = nl != NULL;
		n++;
		i += l + (nl ? 1 : 0);
	}
	*n_r = n;
	return v;
}

static bool eq(const struct line *a, const struct line *b)
{
	return a->n == b->n && a->nl == b->nl && memcmp(a->p, b->p, a->n) == 0;
}

enum op {
	OP_SAME,
	OP_DEL,
	OP_ADD,
};

struct edit {
	enum op op;
	size_t ai, bi; /* line indexes */
};

static void emit_line(FILE *out, char c, const struct line *l)
{
	fputc(c, out);
	fwrite(l->p, 1, l->n, out);
	fputc('\n', out);
	if (!l->nl)
		fputs("\\ No newline at end of file\n", out);
}

bool acl_diff_unified(FILE *out, const char *aname, const char *a, size_t alen, const char *bname,
                      const char *b, size_t blen)
{
	size_t na, nb, pre = 0, suf = 0, ma, mb, ne = 0;
	struct line *la, *lb;
	struct edit *ed;

	if (alen == blen && memcmp(a, b, alen) == 0)
		return false;
	la = split(a, alen, &na);
	lb = split(b, blen, &nb);
	while (pre < na && pre < nb && eq(&la[pre], &lb[pre]))
		pre++;
	while (suf < na - pre && suf < nb - pre && eq(&la[na - 1 - suf], &lb[nb - 1 - suf]))
		suf++;
	ma = na - pre - suf;
	mb = nb - pre - suf;
	ed = xcalloc(na + nb + 1, sizeof(*ed));
	for (size_t i = 0; i < pre; i++)
		ed[ne++] = (struct edit){OP_SAME, i, i};
	if (ma > 0 && mb > 0 && (ma + 1) * (mb + 1) <= ACL_DIFF_MAX_CELLS) {
		uint32_t *t = xcalloc((ma + 1) * (mb + 1), sizeof(*t));
		size_t i = 0, j = 0;

#define T(x, y) t[(x) * (mb + 1) + (y)]
		for (size_t x = ma; x-- > 0;)
			for (size_t y = mb; y-- > 0;)
				T(x, y) = eq(&la[pre + x], &lb[pre + y])
				                  ? T(x + 1, y + 1) + 1
				                  : (T(x + 1, y) > T(x, y + 1) ? T(x + 1, y)
				                                               : T(x, y + 1));
		while (i < ma || j < mb) {
			if (i < ma && j < mb && eq(&la[pre + i], &lb[pre + j])) {
				ed[ne++] = (struct edit){OP_SAME, pre + i, pre + j};
				i++;
				j++;
			} else if (i < ma && (j == mb || T(i + 1, j) >= T(i, j + 1))) {
				ed[ne++] = (struct edit){OP_DEL, pre + i, pre + j};
				i++;
			} else {
				ed[ne++] = (struct edit){OP_ADD, pre + i, pre + j};
				j++;
			}
		}
#undef T
		free(t);
	} else {
		for (size_t i = 0; i < ma; i++)
			ed[ne++] = (struct edit){OP_DEL, pre + i, pre};
		for (size_t j = 0; j < mb; j++)
			ed[ne++] = (struct edit){OP_ADD, pre + ma, pre + j};
	}
	for (size_t i = 0; i < suf; i++)
		ed[ne++] = (struct edit){OP_SAME, na - suf + i, nb - suf + i};

	fprintf(out, "--- %s\n+++ %s\n", aname, bname);
	for (size_t k = 0; k < ne;) {
		size_t start, end, last_change, aline, bline, acount = 0, bcount = 0;

		if (ed[k].op == OP_SAME) {
			k++;
			continue;
		}
		start = k >= CONTEXT ? k - CONTEXT : 0;
		while (start < k && ed[start].op != OP_SAME)
			start++;
		/* Extend the hunk while changes are within 2*CONTEXT. */
		last_change = k;
		end = k;
		while (end < ne) {
			if (ed[end].op != OP_SAME)
				last_change = end;
			else if (end - last_change > 2 * CONTEXT)
				break;
			end++;
		}
		end = last_change + CONTEXT + 1 < ne ? last_change + CONTEXT + 1 : ne;
		for (size_t x = start; x < end; x++) {
			if (ed[x].op != OP_ADD)
				acount++;
			if (ed[x].op != OP_DEL)
				bcount++;
		}
		aline = ed[start].ai + (acount ? 1 : 0);
		bline = ed[start].bi + (bcount ? 1 : 0);
		fprintf(out, "@@ -%zu,%zu +%zu,%zu @@\n", aline, acount, bline, bcount);
		for (size_t x = start; x < end; x++) {
			if (ed[x].op == OP_SAME)
				emit_line(out, ' ', &la[ed[x].ai]);
			else if (ed[x].op == OP_DEL)
				emit_line(out, '-', &la[ed[x].ai]);
			else
				emit_line(out, '+', &lb[ed[x].bi]);
		}
		k = end;
	}
	free(ed);
	free(la);
	free(lb);
	return true;
}
