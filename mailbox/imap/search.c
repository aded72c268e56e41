/*
 * mailbox/imap/search.c -- SEARCH/SORT arguments to a key tree.
 *
 * A recursive descent over the argument list the command parser built
 * (parenthesised keys arrive as LIST arguments, so nesting is bounded by
 * the parser's max_depth).  Each key is checked and normalised as it is
 * read: flags get their canonical case, header names are lower-cased,
 * dates become UTC day starts, sequence sets become merged UID ranges.
 * Nothing here knows about SQL or the session; a key the store cannot
 * misread is the whole contract.
 */
#include "mailbox/imap/search.h"

#include "mailbox/imap/date.h"
#include "mailbox/imap/seqset.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A NOT/OR chain deeper than this is refused (the parser bounds list
 * nesting, but "NOT NOT NOT ..." is flat). */
#define SEARCH_MAX_DEPTH 64

struct cursor {
	const struct imap_arg *v;
	size_t n, i;
	const uint32_t *uids;
	size_t nuids;
	bool modseq;
	const char *err;
};

void imap_search_key_clear(struct imap_search_key *k)
{
	for (size_t i = 0; i < k->nkids; i++)
		imap_search_key_clear(&k->kids[i]);
	free(k->kids);
	free(k->field);
	free(k->str);
	free(k->ranges);
	memset(k, 0, sizeof(*k));
}

void imap_search_program_free(struct imap_search_program *p)
{
	imap_search_key_clear(&p->root);
	free(p->sort);
	memset(p, 0, sizeof(*p));
}

static const struct imap_arg *next(struct cursor *c)
{
	if (c->i >= c->n) {
		c->err = "Missing search argument";
		return NULL;
	}
	return &c->v[c->i++];
}

/* An astring argument as a NUL-terminated string, or NULL. */
static const char *astring(struct cursor *c)
{
	const struct imap_arg *a = next(c);

	if (a == NULL)
		return NULL;
	if (!imap_arg_is_astring(a) || a->has_nul) {
		c->err = "Expected a string";
		return NULL;
	}
	return a->str;
}

static bool number(struct cursor *c, uint64_t *v_r)
{
	const struct imap_arg *a = next(c);
	uint64_t v = 0;

	if (a == NULL)
		return false;
	if (a->type != IMAP_ARG_ATOM || a->len == 0 || a->len > 19)
		goto bad;
	for (size_t i = 0; i < a->len; i++) {
		if (!isdigit((unsigned char)a->str[i]))
			goto bad;
		v = v * 10 + (uint64_t)(a->str[i] - '0');
	}
	*v_r = v;
	return true;
bad:
	c->err = "Expected a number";
	return false;
}

static bool date_arg(struct cursor *c, uint64_t *day_r)
{
	const struct imap_arg *a = next(c);
	int64_t day;

	if (a == NULL)
		return false;
	if ((a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_STRING) ||
	    !imap_date_parse(a->str, &day) || day < 0) {
		c->err = "Invalid date";
		return false;
	}
	*day_r = (uint64_t)day;
	return true;
}

static int range_cmp(const void *a, const void *b)
{
	const struct imap_uid_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sort and merge overlapping or adjacent ranges in place. */
static size_t ranges_merge(struct imap_uid_range *r, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), range_cmp);
	for (size_t i = 1; i < n; i++) {
		if (r[i].lo <= r[out].hi || r[i].lo - 1 == r[out].hi) {
			if (r[i].hi > r[out].hi)
				r[out].hi = r[i].hi;
		} else {
			r[++out] = r[i];
		}
	}
	return out + 1;
}

/*
 * A sequence set (uid false) or UID set to a UID key.  Sequence numbers
 * outside the mailbox match nothing; "*" is the last message (RFC 3501
 * 6.4.4 sequence-set, 9 seq-number).
 */
static bool set_key(struct cursor *c, const char *text, bool uid, struct imap_search_key *k)
{
	struct imap_seqset set;
	const char *why;
	uint32_t star;

	if (imap_seqset_parse(text, &set, &why) < 0) {
		c->err = "Invalid sequence set";
		return false;
	}
	if (set.saved) {
		imap_seqset_free(&set);
		c->err = "$ (SEARCHRES) is not supported";
		return false;
	}
	k->type = IMAP_SK_UID;
	k->ranges = xcalloc(set.n ? set.n : 1, sizeof(*k->ranges));
	star = uid ? (c->nuids ? c->uids[c->nuids - 1] : 0) : (uint32_t)c->nuids;
	for (size_t i = 0; i < set.n; i++) {
		uint32_t lo = set.v[i].lo == IMAP_SEQ_STAR ? star : set.v[i].lo;
		uint32_t hi = set.v[i].hi == IMAP_SEQ_STAR ? star : set.v[i].hi;

		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (!uid) {
			if (lo == 0)
				lo = 1;
			if (hi > c->nuids)
				hi = (uint32_t)c->nuids;
			if (lo > hi)
				continue;
			lo = c->uids[lo - 1];
			hi = c->uids[hi - 1];
		} else if (hi == 0) {
			continue; /* "*" in an empty mailbox */
		} else if (lo == 0) {
			lo = 1;
		}
		k->ranges[k->nranges].lo = lo;
		k->ranges[k->nranges].hi = hi;
		k->nranges++;
	}
	imap_seqset_free(&set);
	k->nranges = ranges_merge(k->ranges, k->nranges);
	if (k->nranges == 0) {
		free(k->ranges);
		k->ranges = NULL;
		k->type = IMAP_SK_NONE;
	}
	return true;
}

static bool flag_key(struct imap_search_key *k, const char *flag, bool negate)
{
	struct imap_search_key f = {.type = IMAP_SK_FLAG, .str = xstrdup(flag)};

	if (!negate) {
		*k = f;
		return true;
	}
	k->type = IMAP_SK_NOT;
	k->kids = xcalloc(1, sizeof(*k->kids));
	k->nkids = 1;
	k->kids[0] = f;
	return true;
}

static bool header_key(struct cursor *c, const char *field, struct imap_search_key *k)
{
	const char *v = astring(c);

	if (v == NULL)
		return false;
	k->type = IMAP_SK_HEADER;
	k->field = xstrdup(field);
	for (char *p = k->field; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	k->str = xstrdup(v);
	return true;
}

/* A keyword for KEYWORD/UNKEYWORD: an atom, no system flag. */
static const char *keyword(struct cursor *c)
{
	const struct imap_arg *a = next(c);

	if (a == NULL)
		return NULL;
	if (a->type != IMAP_ARG_ATOM || a->str[0] == '\\' || strpbrk(a->str, "%*]") != NULL) {
		c->err = "Invalid keyword";
		return NULL;
	}
	return a->str;
}

static bool parse_key(struct cursor *c, struct imap_search_key *k, unsigned depth);

/* Keys of a parenthesised list (or the top level) into an AND node. */
static bool parse_list(struct cursor *c, struct imap_search_key *k, unsigned depth)
{
	size_t cap = 4;

	k->type = IMAP_SK_AND;
	k->kids = xcalloc(cap, sizeof(*k->kids));
	while (c->i < c->n) {
		if (k->nkids == cap) {
			cap *= 2;
			k->kids = xreallocarray(k->kids, cap, sizeof(*k->kids));
		}
		if (!parse_key(c, &k->kids[k->nkids], depth + 1)) {
			imap_search_key_clear(&k->kids[k->nkids]);
			return false;
		}
		k->nkids++;
	}
	if (k->nkids == 0) {
		c->err = "Missing search key";
		return false;
	}
	return true;
}

struct simple_flag {
	const char *name;
	const char *flag;
	bool negate;
};

static const struct simple_flag simple_flags[] = {
        {"ANSWERED", "\\Answered", false}, {"DELETED", "\\Deleted", false},
        {"DRAFT", "\\Draft", false},       {"FLAGGED", "\\Flagged", false},
        {"SEEN", "\\Seen", false},         {"UNANSWERED", "\\Answered", true},
        {"UNDELETED", "\\Deleted", true},  {"UNDRAFT", "\\Draft", true},
        {"UNFLAGGED", "\\Flagged", true},  {"UNSEEN", "\\Seen", true},
};

struct date_key {
	const char *name;
	enum imap_sk_type type;
};

static const struct date_key date_keys[] = {
        {"BEFORE", IMAP_SK_BEFORE}, {"ON", IMAP_SK_ON},
        {"SINCE", IMAP_SK_SINCE},   {"SENTBEFORE", IMAP_SK_SENTBEFORE},
        {"SENTON", IMAP_SK_SENTON}, {"SENTSINCE", IMAP_SK_SENTSINCE},
};

static const char *const header_keys[] = {"BCC", "CC", "FROM", "SUBJECT", "TO"};

static bool parse_key(struct cursor *c, struct imap_search_key *k, unsigned depth)
{
	const struct imap_arg *a;
	const char *name;
	uint64_t v;

	if (depth > SEARCH_MAX_DEPTH) {
		c->err = "Search program nested too deeply";
		return false;
	}
	a = next(c);
	if (a == NULL)
		return false;
	if (a->type == IMAP_ARG_LIST) {
		struct cursor sub = *c;

		sub.v = a->list;
		sub.n = a->nlist;
		sub.i = 0;
		if (!parse_list(&sub, k, depth)) {
			c->err = sub.err;
			return false;
		}
		c->modseq = sub.modseq;
		return true;
	}
	if (a->type != IMAP_ARG_ATOM) {
		c->err = "Invalid search key";
		return false;
	}
	name = a->str;
	if (isdigit((unsigned char)name[0]) || name[0] == '*' || name[0] == '$')
		return set_key(c, name, false, k);
	if (strcasecmp(name, "ALL") == 0 || strcasecmp(name, "OLD") == 0) {
		k->type = IMAP_SK_ALL;
		return true;
	}
	/* No \Recent in this server (RFC 9051 removed it). */
	if (strcasecmp(name, "RECENT") == 0 || strcasecmp(name, "NEW") == 0) {
		k->type = IMAP_SK_NONE;
		return true;
	}
	for (size_t i = 0; i < sizeof(simple_flags) / sizeof(simple_flags[0]); i++)
		if (strcasecmp(name, simple_flags[i].name) == 0)
			return flag_key(k, simple_flags[i].flag, simple_flags[i].negate);
	for (size_t i = 0; i < sizeof(date_keys) / sizeof(date_keys[0]); i++) {
		if (strcasecmp(name, date_keys[i].name) == 0) {
			k->type = date_keys[i].type;
			return date_arg(c, &k->num);
		}
	}
	for (size_t i = 0; i < sizeof(header_keys) / sizeof(header_keys[0]); i++)
		if (strcasecmp(name, header_keys[i]) == 0)
			return header_key(c, header_keys[i], k);
	if (strcasecmp(name, "HEADER") == 0) {
		const char *field = astring(c);

		if (field == NULL)
			return false;
		if (field[0] == '\0' || strpbrk(field, ": \t") != NULL) {
			c->err = "Invalid header field name";
			return false;
		}
		return header_key(c, field, k);
	}
	if (strcasecmp(name, "BODY") == 0 || strcasecmp(name, "TEXT") == 0) {
		const char *s = astring(c);

		if (s == NULL)
			return false;
		k->type = toupper((unsigned char)name[0]) == 'B' ? IMAP_SK_BODY : IMAP_SK_TEXT;
		k->str = xstrdup(s);
		return true;
	}
	if (strcasecmp(name, "KEYWORD") == 0 || strcasecmp(name, "UNKEYWORD") == 0) {
		const char *kw = keyword(c);

		if (kw == NULL)
			return false;
		return flag_key(k, kw, toupper((unsigned char)name[0]) == 'U');
	}
	if (strcasecmp(name, "LARGER") == 0 || strcasecmp(name, "SMALLER") == 0) {
		if (!number(c, &v))
			return false;
		k->type = toupper((unsigned char)name[0]) == 'L' ? IMAP_SK_LARGER : IMAP_SK_SMALLER;
		k->num = v;
		return true;
	}
	if (strcasecmp(name, "UID") == 0) {
		const struct imap_arg *s = next(c);

		if (s == NULL)
			return false;
		if (s->type != IMAP_ARG_ATOM) {
			c->err = "Invalid UID set";
			return false;
		}
		return set_key(c, s->str, true, k);
	}
	if (strcasecmp(name, "NOT") == 0) {
		k->type = IMAP_SK_NOT;
		k->kids = xcalloc(1, sizeof(*k->kids));
		k->nkids = 1;
		return parse_key(c, &k->kids[0], depth + 1);
	}
	if (strcasecmp(name, "OR") == 0) {
		k->type = IMAP_SK_OR;
		k->kids = xcalloc(2, sizeof(*k->kids));
		k->nkids = 2;
		return parse_key(c, &k->kids[0], depth + 1) && parse_key(c, &k->kids[1], depth + 1);
	}
	if (strcasecmp(name, "MODSEQ") == 0) {
		/* RFC 7162 3.1.5: MODSEQ [entry-name entry-type-req] value; we
		 * keep no per-flag modseq, so the entry is checked and ignored */
		if (c->i < c->n && c->v[c->i].type == IMAP_ARG_STRING) {
			const struct imap_arg *type;

			c->i++;
			type = next(c);
			if (type == NULL)
				return false;
			if (!imap_arg_atom_is(type, "priv") && !imap_arg_atom_is(type, "shared") &&
			    !imap_arg_atom_is(type, "all")) {
				c->err = "Invalid MODSEQ entry type";
				return false;
			}
		}
		if (!number(c, &v) || v > INT64_MAX)
			return false;
		k->type = IMAP_SK_MODSEQ;
		k->num = v;
		c->modseq = true;
		return true;
	}
	c->err = "Unknown search key";
	return false;
}

static bool charset_ok(const char *cs)
{
	/* RFC 3501 6.4.4: US-ASCII must be supported; RFC 9051: UTF-8 */
	return strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "US-ASCII") == 0;
}

static bool parse_return(struct cursor *c, struct imap_search_program *out)
{
	const struct imap_arg *a = next(c);

	if (a == NULL || a->type != IMAP_ARG_LIST) {
		c->err = "RETURN needs a list";
		return false;
	}
	out->esearch = true;
	for (size_t i = 0; i < a->nlist; i++) {
		const struct imap_arg *o = &a->list[i];

		if (imap_arg_atom_is(o, "MIN"))
			out->ret |= IMAP_SEARCH_RET_MIN;
		else if (imap_arg_atom_is(o, "MAX"))
			out->ret |= IMAP_SEARCH_RET_MAX;
		else if (imap_arg_atom_is(o, "ALL"))
			out->ret |= IMAP_SEARCH_RET_ALL;
		else if (imap_arg_atom_is(o, "COUNT"))
			out->ret |= IMAP_SEARCH_RET_COUNT;
		else {
			c->err = "Unsupported RETURN option";
			return false;
		}
	}
	/* RFC 4731 3.1: RETURN () means RETURN (ALL) */
	if (out->ret == 0)
		out->ret = IMAP_SEARCH_RET_ALL;
	return true;
}

static const struct {
	const char *name;
	enum imap_sort_type type;
} sort_names[] = {
        {"ARRIVAL", IMAP_SORT_ARRIVAL}, {"CC", IMAP_SORT_CC},     {"DATE", IMAP_SORT_DATE},
        {"FROM", IMAP_SORT_FROM},       {"SIZE", IMAP_SORT_SIZE}, {"SUBJECT", IMAP_SORT_SUBJECT},
        {"TO", IMAP_SORT_TO},
};

/* RFC 5256 3: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")" */
static bool parse_sort(struct cursor *c, struct imap_search_program *out)
{
	const struct imap_arg *a = next(c);
	bool reverse = false;

	if (a == NULL || a->type != IMAP_ARG_LIST || a->nlist == 0) {
		c->err = "Invalid sort criteria";
		return false;
	}
	out->sort = xcalloc(a->nlist, sizeof(*out->sort));
	for (size_t i = 0; i < a->nlist; i++) {
		const struct imap_arg *o = &a->list[i];
		size_t k;

		if (imap_arg_atom_is(o, "REVERSE") && !reverse) {
			reverse = true;
			continue;
		}
		for (k = 0; k < sizeof(sort_names) / sizeof(sort_names[0]); k++)
			if (imap_arg_atom_is(o, sort_names[k].name))
				break;
		if (k == sizeof(sort_names) / sizeof(sort_names[0])) {
			c->err = "Invalid sort criterion";
			return false;
		}
		out->sort[out->nsort].type = sort_names[k].type;
		out->sort[out->nsort].reverse = reverse;
		out->nsort++;
		reverse = false;
	}
	if (reverse || out->nsort == 0) {
		c->err = "Invalid sort criteria";
		return false;
	}
	return true;
}

int imap_search_parse(const struct imap_arg *args, size_t n, bool sort, const uint32_t *uids,
                      size_t nuids, struct imap_search_program *out, bool *bad_charset_r,
                      const char **errstr_r)
{
	struct cursor c = {.v = args, .n = n, .uids = uids, .nuids = nuids};

	memset(out, 0, sizeof(*out));
	*bad_charset_r = false;
	if (c.i < c.n && imap_arg_atom_is(&c.v[c.i], "RETURN")) {
		c.i++;
		if (!parse_return(&c, out))
			goto fail;
	}
	if (sort) {
		const char *cs;

		if (!parse_sort(&c, out))
			goto fail;
		cs = astring(&c);
		if (cs == NULL)
			goto fail;
		if (!charset_ok(cs)) {
			*bad_charset_r = true;
			c.err = "Unsupported charset";
			goto fail;
		}
	} else if (c.i < c.n && imap_arg_atom_is(&c.v[c.i], "CHARSET")) {
		const char *cs;

		c.i++;
		cs = astring(&c);
		if (cs == NULL)
			goto fail;
		if (!charset_ok(cs)) {
			*bad_charset_r = true;
			c.err = "Unsupported charset";
			goto fail;
		}
	}
	if (!parse_list(&c, &out->root, 0))
		goto fail;
	out->modseq = c.modseq;
	return 0;
fail:
	*errstr_r = c.err != NULL ? c.err : "Invalid search";
	return -1;
}
