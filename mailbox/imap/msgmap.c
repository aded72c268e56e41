/*
 * mailbox/imap/msgmap.c -- the sorted UID array behind sequence numbers.
 *
 * Resolving a set sorts and merges its ranges first, so "1:*,1:*,..."
 * costs what its distinct messages cost, never ranges times messages.
 */
#include "mailbox/imap/msgmap.h"

#include "mailbox/imap/seqset.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

void imap_msgmap_forget(struct imap_msgmap *m)
{
	free(m->modseq);
	free(m->flags);
	m->modseq = NULL;
	m->flags = NULL;
	for (size_t i = 0; i < m->nsets; i++) {
		for (size_t k = 0; k < m->sets[i].n; k++)
			free(m->sets[i].names[k]);
		free(m->sets[i].names);
	}
	free(m->sets);
	m->sets = NULL;
	m->nsets = 0;
}

void imap_msgmap_free(struct imap_msgmap *m)
{
	imap_msgmap_forget(m);
	free(m->uids);
	memset(m, 0, sizeof(*m));
}

static void reserve(struct imap_msgmap *m, size_t n)
{
	if (n <= m->cap)
		return;
	m->cap = m->cap ? m->cap : 16;
	while (m->cap < n)
		m->cap *= 2;
	m->uids = xreallocarray(m->uids, m->cap, sizeof(*m->uids));
	if (m->flags != NULL) {
		m->modseq = xreallocarray(m->modseq, m->cap, sizeof(*m->modseq));
		m->flags = xreallocarray(m->flags, m->cap, sizeof(*m->flags));
	}
}

void imap_msgmap_set(struct imap_msgmap *m, const uint32_t *uids, size_t n)
{
	imap_msgmap_forget(m);
	m->n = 0;
	reserve(m, n);
	if (n > 0)
		memcpy(m->uids, uids, n * sizeof(*uids));
	m->n = n;
}

void imap_msgmap_append(struct imap_msgmap *m, uint32_t uid)
{
	reserve(m, m->n + 1);
	if (m->flags != NULL) {
		m->flags[m->n] = IMAP_MSGMAP_UNKNOWN;
		m->modseq[m->n] = 0;
	}
	m->uids[m->n++] = uid;
}

uint32_t imap_msgmap_seq(const struct imap_msgmap *m, uint32_t uid)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->n && m->uids[lo] == uid ? (uint32_t)(lo + 1) : 0;
}

/* Index of the first UID >= uid. */
static size_t lower_bound(const struct imap_msgmap *m, uint32_t uid)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void imap_msgmap_remove(struct imap_msgmap *m, uint32_t seq)
{
	if (seq == 0 || seq > m->n)
		return;
	memmove(m->uids + seq - 1, m->uids + seq, (m->n - seq) * sizeof(*m->uids));
	if (m->flags != NULL) {
		memmove(m->flags + seq - 1, m->flags + seq, (m->n - seq) * sizeof(*m->flags));
		memmove(m->modseq + seq - 1, m->modseq + seq, (m->n - seq) * sizeof(*m->modseq));
	}
	m->n--;
}

/* The index of this flag list in m->sets, adding it; UNKNOWN: no room. */
static uint32_t flagset(struct imap_msgmap *m, const char *const *flags, size_t n)
{
	struct imap_msgmap_flagset *f;

	for (size_t i = 0; i < m->nsets; i++) {
		size_t k;

		if (m->sets[i].n != n)
			continue;
		for (k = 0; k < n && strcmp(m->sets[i].names[k], flags[k]) == 0; k++)
			;
		if (k == n)
			return (uint32_t)i;
	}
	if (m->nsets >= IMAP_MSGMAP_MAX_FLAGSETS)
		return IMAP_MSGMAP_UNKNOWN;
	m->sets = xreallocarray(m->sets, m->nsets + 1, sizeof(*m->sets));
	f = &m->sets[m->nsets];
	f->names = xcalloc(n ? n : 1, sizeof(*f->names));
	for (size_t k = 0; k < n; k++)
		f->names[k] = xstrdup(flags[k]);
	f->n = n;
	return (uint32_t)m->nsets++;
}

void imap_msgmap_note(struct imap_msgmap *m, uint32_t uid, uint64_t modseq,
                      const char *const *flags, size_t nflags)
{
	uint32_t seq = imap_msgmap_seq(m, uid);
	size_t i;

	if (seq == 0)
		return;
	if (m->flags == NULL) {
		m->modseq = xcalloc(m->cap, sizeof(*m->modseq));
		m->flags = xcalloc(m->cap, sizeof(*m->flags));
		for (i = 0; i < m->n; i++)
			m->flags[i] = IMAP_MSGMAP_UNKNOWN;
	}
	i = seq - 1;
	if (m->modseq[i] > modseq)
		return; /* an older answer than one already had (known or not) */
	m->flags[i] = flagset(m, flags, nflags);
	m->modseq[i] = modseq;
}

void imap_msgmap_unknown(struct imap_msgmap *m, uint32_t uid)
{
	uint32_t seq = imap_msgmap_seq(m, uid);

	if (seq != 0 && m->flags != NULL)
		m->flags[seq - 1] = IMAP_MSGMAP_UNKNOWN;
}

bool imap_msgmap_known(const struct imap_msgmap *m, uint32_t seq,
                       const struct imap_msgmap_flagset **set_r, uint64_t *modseq_r)
{
	if (m->flags == NULL || seq == 0 || seq > m->n || m->flags[seq - 1] == IMAP_MSGMAP_UNKNOWN)
		return false;
	*set_r = &m->sets[m->flags[seq - 1]];
	*modseq_r = m->modseq[seq - 1];
	return true;
}

uint32_t imap_msgmap_max_uid(const struct imap_msgmap *m)
{
	return m->n ? m->uids[m->n - 1] : 0;
}

struct range {
	uint32_t lo, hi;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int imap_msgmap_resolve(const struct imap_msgmap *m, const char *text, bool uid, uint32_t **uids_r,
                        size_t *n_r, const char **errstr_r)
{
	struct imap_seqset set;
	struct range *r = NULL;
	size_t nr = 0, out = 0, cap = 0;
	uint32_t star = uid ? imap_msgmap_max_uid(m) : (uint32_t)m->n;
	uint32_t *uids = NULL;
	int rc = -1;

	*uids_r = NULL;
	*n_r = 0;
	if (imap_seqset_parse(text, &set, errstr_r) < 0)
		return -1;
	if (set.saved) {
		*errstr_r = "$ (SEARCHRES) is not supported";
		goto fail;
	}
	r = xcalloc(set.n ? set.n : 1, sizeof(*r));
	for (size_t i = 0; i < set.n; i++) {
		uint32_t lo = set.v[i].lo == IMAP_SEQ_STAR ? star : set.v[i].lo;
		uint32_t hi = set.v[i].hi == IMAP_SEQ_STAR ? star : set.v[i].hi;

		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (!uid && (lo == 0 || hi > m->n)) {
			*errstr_r = "Invalid messageset";
			goto fail;
		}
		if (hi == 0)
			continue; /* UID "*" in an empty mailbox */
		if (lo == 0)
			lo = 1;
		r[nr].lo = lo;
		r[nr].hi = hi;
		nr++;
	}
	qsort(r, nr, sizeof(*r), range_cmp);
	for (size_t i = 0; i < nr; i++) {
		if (out > 0 && r[i].lo <= r[out - 1].hi) {
			if (r[i].hi > r[out - 1].hi)
				r[out - 1].hi = r[i].hi;
		} else {
			r[out++] = r[i];
		}
	}
	for (size_t i = 0; i < out; i++) {
		size_t a, b;

		if (uid) {
			a = lower_bound(m, r[i].lo);
			b = r[i].hi == UINT32_MAX ? m->n : lower_bound(m, r[i].hi + 1);
		} else {
			a = r[i].lo - 1;
			b = r[i].hi;
		}
		if (b <= a)
			continue;
		if (*n_r + (b - a) > cap) {
			cap = *n_r + (b - a);
			uids = xreallocarray(uids, cap, sizeof(*uids));
		}
		memcpy(uids + *n_r, m->uids + a, (b - a) * sizeof(*uids));
		*n_r += b - a;
	}
	*uids_r = uids;
	rc = 0;
fail:
	free(r);
	imap_seqset_free(&set);
	return rc;
}
