/*
 * acl/merge.c -- inserting, replacing and removing managed entries.
 *
 * New entries are rendered the way the formatter would write them at
 * their depth (formatted standalone, then indented), so a merged file
 * stays "fmt"-clean where it was; the rest of the file is never
 * re-formatted.
 */
#include "acl/merge.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const array_sections[] = {"acls",     "grants",    "tests", "ssh",
                                             "sshTests", "nodeAttrs", NULL};
static const char *const map_sections[] = {"tagOwners", "groups",   "hosts",
                                           "ipsets",    "postures", NULL};

int acl_conflict_mode_parse(const char *s)
{
	if (strcmp(s, "error") == 0)
		return ACL_CONFLICT_ERROR;
	if (strcmp(s, "union") == 0)
		return ACL_CONFLICT_UNION;
	if (strcmp(s, "ours") == 0)
		return ACL_CONFLICT_OURS;
	if (strcmp(s, "theirs") == 0)
		return ACL_CONFLICT_THEIRS;
	return -1;
}

static char *marker(const char *id)
{
	return xasprintf("// tailpost-acl id=%s: managed entry, replaced by merge\n", id);
}

bool acl_merge_is_managed(struct hujson_value *comp, size_t i, const char *id)
{
	const char *p;
	size_t n;
	char *tag = xasprintf("tailpost-acl id=%s:", id);
	bool found;

	hujson_leading_comments(comp, i, &p, &n);
	found = n > 0 && memmem(p, n, tag, strlen(tag)) != NULL;
	free(tag);
	return found;
}

static const char *section_kind(const char *name, bool *is_array)
{
	for (size_t i = 0; array_sections[i] != NULL; i++)
		if (strcasecmp(name, array_sections[i]) == 0) {
			*is_array = true;
			return array_sections[i];
		}
	for (size_t i = 0; map_sections[i] != NULL; i++)
		if (strcasecmp(name, map_sections[i]) == 0) {
			*is_array = false;
			return map_sections[i];
		}
	return NULL;
}

/*
 * Render v (a trimmed value) as the formatter would at depth: format it
 * alone, indent its continuation lines, parse it back.
 */
static void render(struct hujson_value *out, const struct hujson_value *v, int depth)
{
	struct hujson_value tmp;
	struct hujson_error err;
	struct buf b, ind;
	char *text;
	size_t len;

	hujson_clone(&tmp, v);
	hujson_extra_clear(&tmp.before);
	hujson_extra_clear(&tmp.after);
	hujson_format(&tmp);
	text = hujson_pack_str(&tmp, &len);
	hujson_free(&tmp);
	while (len > 0 && text[len - 1] == '\n')
		len--;
	buf_init(&ind, 0);
	for (size_t i = 0; i < len; i++) {
		(void)buf_append(&ind, &text[i], 1);
		if (text[i] == '\n')
			for (int k = 0; k < depth; k++)
				(void)buf_append(&ind, "\t", 1);
	}
	buf_init(&b, 0);
	(void)buf_append(&b, hujson_buf_bytes(&ind), buf_len(&ind));
	/* Re-parse cannot fail: the text came from a valid tree. */
	if (hujson_parse(hujson_buf_bytes(&b), buf_len(&b), out, &err) != HUJSON_OK)
		hujson_clone(out, v);
	buf_free(&b);
	buf_free(&ind);
	free(text);
}

/* Render v with the marker and v's own leading comments before it. */
static void marked_value(struct hujson_value *out, const struct hujson_value *v,
                         const struct hujson_extra *comments, const char *id, int depth)
{
	char *m = marker(id);
	struct buf b;

	render(out, v, depth);
	buf_init(&b, 0);
	(void)buf_append(&b, m, strlen(m));
	if (comments != NULL && hujson_extra_has_comment(comments))
		(void)buf_append(&b, comments->p, comments->n);
	hujson_extra_set(&out->before, hujson_buf_bytes(&b), buf_len(&b));
	buf_free(&b);
	free(m);
}

static void pos(const struct acl_merge_src *s, size_t off, int *line, int *col)
{
	hujson_line_col(s->text, s->len, off, line, col);
}

/* Find or create the top-level section; NULL if it has the wrong type. */
static struct hujson_value *section(struct hujson_value *base, const char *name, bool is_array,
                                    const char *id)
{
	long i = hujson_find(base, name, true);
	struct hujson_value nm, val;
	char *m;

	if (i >= 0) {
		struct hujson_value *v = hujson_member_value(base, (size_t)i);

		if (v->kind != (is_array ? HUJSON_ARRAY : HUJSON_OBJECT))
			return NULL;
		return v;
	}
	hujson_new_string(&nm, name);
	hujson_new_composite(&val, is_array ? HUJSON_ARRAY : HUJSON_OBJECT);
	m = marker(id);
	hujson_extra_set(&val.before, m, strlen(m));
	free(m);
	hujson_insert(base, hujson_len(base), &nm, &val, 1);
	return hujson_member_value(base, hujson_len(base) - 1);
}

static void merge_array(struct hujson_value *dst, const struct hujson_value *src, const char *id)
{
	size_t *mine = xcalloc(hujson_len(dst) + 1, sizeof(*mine));
	size_t nmine = 0, nsrc = hujson_len(src);

	for (size_t i = 0; i < hujson_len(dst); i++)
		if (acl_merge_is_managed(dst, i, id))
			mine[nmine++] = i;
	/* Surplus entries of ours go first (from the end, so indexes hold). */
	while (nmine > nsrc) {
		hujson_remove(dst, mine[--nmine]);
	}
	for (size_t j = 0; j < nsrc; j++) {
		const struct hujson_value *want = &src->items[j];

		if (j < nmine) {
			struct hujson_value r;

			if (hujson_equal(hujson_elem(dst, mine[j]), want))
				continue;
			render(&r, want, 2);
			hujson_replace(dst, mine[j], &r);
		} else {
			struct hujson_value r;
			size_t at = nmine > 0 ? mine[nmine - 1] + 1 + (j - nmine) : hujson_len(dst);

			marked_value(&r, want, &want->before, id, 2);
			hujson_insert(dst, at, NULL, &r, 2);
		}
	}
	free(mine);
}

/* Union of two string lists: a's items, then b's that a lacks. */
static bool list_union(struct hujson_value *out, const struct hujson_value *a,
                       const struct hujson_value *b)
{
	if (a->kind != HUJSON_ARRAY || b->kind != HUJSON_ARRAY)
		return false;
	hujson_clone(out, a);
	hujson_extra_clear(&out->before);
	hujson_extra_clear(&out->after);
	for (size_t i = 0; i < hujson_len(b); i++) {
		bool have = false;

		for (size_t k = 0; k < hujson_len(out) && !have; k++)
			have = hujson_equal(&out->items[k], &b->items[i]);
		if (!have) {
			struct hujson_value c;

			hujson_clone(&c, &b->items[i]);
			hujson_extra_clear(&c.before);
			hujson_extra_clear(&c.after);
			hujson_insert(out, hujson_len(out), NULL, &c, 3);
		}
	}
	return true;
}

static int merge_map(struct hujson_value *dst, const struct hujson_value *src, const char *secname,
                     const struct acl_merge_src *bsrc, const struct acl_merge_src *ssrc,
                     const char *id, enum acl_conflict_mode mode, struct acl_diags *d)
{
	int rc = ACL_EXIT_OK;

	for (size_t j = 0; j < hujson_len(src); j++) {
		const struct hujson_value *sname = &src->items[2 * j],
		                          *sval = &src->items[2 * j + 1];
		char *key = hujson_string(sname, NULL);
		long i = hujson_find(dst, key, false);
		struct hujson_value r;

		if (i < 0) {
			struct hujson_value nm;

			hujson_new_string(&nm, key);
			marked_value(&r, sval, &sname->before, id, 2);
			hujson_insert(dst, hujson_len(dst), &nm, &r, 2);
		} else if (hujson_equal(hujson_member_value(dst, (size_t)i), sval)) {
			/* Already what we want: leave its bytes alone. */
		} else if (acl_merge_is_managed(dst, (size_t)i, id) ||
		           mode == ACL_CONFLICT_THEIRS) {
			render(&r, sval, 2);
			hujson_replace(dst, (size_t)i, &r);
		} else if (mode == ACL_CONFLICT_OURS) {
			/* Keep the base's value. */
		} else if (mode == ACL_CONFLICT_UNION &&
		           list_union(&r, hujson_member_value(dst, (size_t)i), sval)) {
			struct hujson_value rr;

			render(&rr, &r, 2);
			hujson_free(&r);
			hujson_replace(dst, (size_t)i, &rr);
		} else {
			int bl = 0, bc = 0, sl = 0, sc = 0;

			pos(bsrc, hujson_member_name(dst, (size_t)i)->start, &bl, &bc);
			pos(ssrc, sname->start, &sl, &sc);
			acl_diag_add(d, ACL_SEV_ERROR, bsrc->name, bl, bc,
			             "merge conflict: %s[\"%s\"] differs from %s:%d:%d (use "
			             "--on-conflict=union|ours|theirs)",
			             secname, key, ssrc->name, sl, sc);
			rc = ACL_EXIT_CONFLICT;
		}
		free(key);
	}
	return rc;
}

int acl_merge(struct hujson_value *base, const struct acl_merge_src *bsrc,
              const struct hujson_value *snippet, const struct acl_merge_src *ssrc, const char *id,
              enum acl_conflict_mode mode, struct acl_diags *d)
{
	int rc = ACL_EXIT_OK;

	if (base->kind != HUJSON_OBJECT || snippet->kind != HUJSON_OBJECT) {
		acl_diag_add(d, ACL_SEV_ERROR,
		             base->kind != HUJSON_OBJECT ? bsrc->name : ssrc->name, 1, 1,
		             "merge: the policy must be a JSON object");
		return ACL_EXIT_INVALID;
	}
	for (size_t s = 0; s < hujson_len(snippet); s++) {
		const struct hujson_value *sname = &snippet->items[2 * s];
		const struct hujson_value *sval = &snippet->items[2 * s + 1];
		char *name = hujson_string(sname, NULL);
		bool is_array = false;
		const char *canon = section_kind(name, &is_array);
		struct hujson_value *dst;
		int line, col;

		pos(ssrc, sname->start, &line, &col);
		if (canon == NULL || sval->kind != (is_array ? HUJSON_ARRAY : HUJSON_OBJECT)) {
			acl_diag_add(d, ACL_SEV_ERROR, ssrc->name, line, col,
			             "merge: section \"%s\" cannot be merged (want one of acls, "
			             "grants, tests, ssh, sshTests, nodeAttrs, tagOwners, groups, "
			             "hosts, ipsets, postures with the right type)",
			             name);
			rc = ACL_EXIT_INVALID;
			free(name);
			continue;
		}
		dst = section(base, canon, is_array, id);
		if (dst == NULL) {
			long bi = hujson_find(base, canon, true);

			pos(bsrc, hujson_member_name(base, (size_t)bi)->start, &line, &col);
			acl_diag_add(d, ACL_SEV_ERROR, bsrc->name, line, col,
			             "merge: section \"%s\" has the wrong type", canon);
			rc = ACL_EXIT_INVALID;
		} else if (is_array) {
			merge_array(dst, sval, id);
		} else {
			int r = merge_map(dst, sval, canon, bsrc, ssrc, id, mode, d);

			if (r != ACL_EXIT_OK && rc == ACL_EXIT_OK)
				rc = r;
		}
		free(name);
	}
	hujson_update_offsets(base);
	return rc;
}

size_t acl_merge_remove(struct hujson_value *base, const char *id)
{
	size_t removed = 0;

	if (base->kind != HUJSON_OBJECT)
		return 0;
	for (size_t s = hujson_len(base); s-- > 0;) {
		struct hujson_value *v = hujson_member_value(base, s);
		char *name = hujson_string(hujson_member_name(base, s), NULL);
		bool is_array;
		bool ours = section_kind(name, &is_array) != NULL;

		free(name);
		if (!ours || (v->kind != HUJSON_ARRAY && v->kind != HUJSON_OBJECT))
			continue;
		for (size_t i = hujson_len(v); i-- > 0;) {
			if (acl_merge_is_managed(v, i, id)) {
				hujson_remove(v, i);
				removed++;
			}
		}
		if (hujson_len(v) == 0 && acl_merge_is_managed(base, s, id))
			hujson_remove(base, s);
	}
	hujson_update_offsets(base);
	return removed;
}
