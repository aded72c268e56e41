/*
 * mailbox/imap/seqset.c -- parsing and testing sequence sets.
 *
 * The set is kept as written (unsorted, possibly overlapping ranges) and
 * membership is tested per range; a session that needs to enumerate walks
 * its message list once and asks imap_seqset_contains(), which keeps the
 * cost linear in the mailbox and immune to "1:4294967295".
 */
#include "mailbox/imap/seqset.h"

#include <stdlib.h>

#include "shared/xmalloc.h"

static int read_seq(const char **sp, uint32_t *v_r)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s == '*') {
		*v_r = IMAP_SEQ_STAR;
		*sp = s + 1;
		return 0;
	}
	if (*s < '1' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
		s++;
	}
	*v_r = (uint32_t)v;
	*sp = s;
	return 0;
}

int imap_seqset_parse(const char *s, struct imap_seqset *out, const char **errstr_r)
{
	size_t cap = 0;

	out->v = NULL;
	out->n = 0;
	out->saved = false;
	if (s[0] == '$' && s[1] == '\0') {
		out->saved = true;
		return 0;
	}
	for (;;) {
		struct imap_seq_range r;

		if (read_seq(&s, &r.lo) < 0)
			goto fail;
		r.hi = r.lo;
		if (*s == ':') {
			s++;
			if (read_seq(&s, &r.hi) < 0)
				goto fail;
		}
		if (out->n == cap) {
			cap = cap ? cap * 2 : 4;
			out->v = xreallocarray(out->v, cap, sizeof(*out->v));
		}
		out->v[out->n++] = r;
		if (*s == '\0')
			return 0;
		if (*s != ',')
			goto fail;
		s++;
	}
fail:
	*errstr_r = "Invalid sequence set";
	imap_seqset_free(out);
	return -1;
}

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->v);
	set->v = NULL;
	set->n = 0;
	set->saved = false;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		uint32_t lo = set->v[i].lo == IMAP_SEQ_STAR ? star : set->v[i].lo;
		uint32_t hi = set->v[i].hi == IMAP_SEQ_STAR ? star : set->v[i].hi;

		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (n >= lo && n <= hi)
			return true;
	}
	return false;
}
