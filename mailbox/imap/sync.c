/*
 * mailbox/imap/sync.c -- telling the client what changed in the selected
 * mailbox: FETCH for flag changes, EXPUNGE (or VANISHED under QRESYNC)
 * and EXISTS.
 *
 * The session knows the mailbox as of sel.modseq.  A sync asks the store
 * for every change above it (ops.changes) and reconciles: new UIDs join
 * the sequence map, changed flags are sent as FETCH, expunged UIDs are
 * put on the "gone" list.  RFC 3501 5.2/7.4.1 forbid EXPUNGE while no
 * command runs and during FETCH, STORE and SEARCH (they would shift the
 * numbers the client is using), so gone messages keep their numbers
 * until a command that allows EXPUNGE ends (s->expunge_ok); EXISTS can
 * always be sent, as it never renumbers anything.  Responses go out in
 * that order: FETCH (current numbers), EXPUNGE in descending order (each
 * leaves lower numbers unchanged), EXISTS.
 *
 * Our own changes come back through the same query; FETCH responses the
 * session already sent (STORE, the implicit \Seen of FETCH) are noted in
 * sel.reported and not repeated.
 */
#include "mailbox/imap/session_private.h"

#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Beyond this many remembered FETCHes a repeat is cheaper than memory. */
#define SYNC_REPORTED_MAX 100000

void imap_sync_write_flags(struct imap_session *s)
{
	struct imap_selected *sel = &s->sel;

	imap_puts(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (size_t i = 0; i < sel->nkeywords; i++)
		imap_printf(s, " %s", sel->keywords[i]);
	imap_puts(s, ")\r\n");
	if (sel->readonly) {
		imap_puts(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
		return;
	}
	imap_puts(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (size_t i = 0; i < sel->nkeywords; i++)
		imap_printf(s, " %s", sel->keywords[i]);
	/* RFC 3501 7.1: \* means new keywords may be created */
	imap_puts(s, " \\*)] Flags permitted\r\n");
}

void imap_sync_keywords(struct imap_session *s, const char *const *flags, size_t n)
{
	struct imap_selected *sel = &s->sel;
	bool changed = false;

	for (size_t i = 0; i < n; i++) {
		if (flags[i][0] == '\\')
			continue;
		if (imap_flags_has((const char *const *)sel->keywords, sel->nkeywords, flags[i]))
			continue;
		sel->keywords =
		        xreallocarray(sel->keywords, sel->nkeywords + 1, sizeof(*sel->keywords));
		sel->keywords[sel->nkeywords++] = xstrdup(flags[i]);
		changed = true;
	}
	/* RFC 3501 7.2.6: the FLAGS response follows the defined flags */
	if (changed)
		imap_sync_write_flags(s);
}

void imap_sync_reported(struct imap_session *s, uint32_t uid, uint64_t modseq)
{
	struct imap_selected *sel = &s->sel;

	if (sel->nreported >= SYNC_REPORTED_MAX)
		return;
	if (sel->nreported == sel->capreported) {
		sel->capreported = sel->capreported ? sel->capreported * 2 : 32;
		sel->reported =
		        xreallocarray(sel->reported, sel->capreported, sizeof(*sel->reported));
	}
	sel->reported[sel->nreported].uid = uid;
	sel->reported[sel->nreported].modseq = modseq;
	sel->nreported++;
}

static int reported_cmp(const void *a, const void *b)
{
	const struct imap_reported *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->modseq < y->modseq ? -1 : x->modseq > y->modseq;
}

static bool was_reported(const struct imap_selected *sel, uint32_t uid, uint64_t modseq)
{
	struct imap_reported key = {.uid = uid, .modseq = modseq};

	return sel->nreported > 0 &&
	       bsearch(&key, sel->reported, sel->nreported, sizeof(key), reported_cmp) != NULL;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool is_gone(const struct imap_selected *sel, uint32_t uid)
{
	return sel->ngone > 0 && bsearch(&uid, sel->gone, sel->ngone, sizeof(uid), u32_cmp) != NULL;
}

static void gone_add(struct imap_selected *sel, uint32_t uid)
{
	if (is_gone(sel, uid))
		return;
	if (sel->ngone == sel->capgone) {
		sel->capgone = sel->capgone ? sel->capgone * 2 : 16;
		sel->gone = xreallocarray(sel->gone, sel->capgone, sizeof(*sel->gone));
	}
	sel->gone[sel->ngone++] = uid;
	qsort(sel->gone, sel->ngone, sizeof(*sel->gone), u32_cmp);
}

/* "* VANISHED 3:5,9" (RFC 7162 3.2.10) for sorted uids. */
static void write_uid_set(struct imap_session *s, const uint32_t *u, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = i;

		while (k + 1 < n && u[k + 1] == u[k] + 1)
			k++;
		if (i > 0)
			imap_puts(s, ",");
		if (k == i)
			imap_printf(s, "%" PRIu32, u[i]);
		else
			imap_printf(s, "%" PRIu32 ":%" PRIu32, u[i], u[k]);
		i = k + 1;
	}
}

void imap_sync_expunged(struct imap_session *s, const uint32_t *uids, size_t n)
{
	struct imap_selected *sel = &s->sel;
	uint32_t *seqs = xcalloc(n ? n : 1, sizeof(*seqs));
	uint32_t *sorted = xcalloc(n ? n : 1, sizeof(*sorted));
	size_t ns = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_msgmap_seq(&sel->map, uids[i]);
		bool dup = false;

		for (size_t k = 0; k < ns && !dup; k++)
			dup = sorted[k] == uids[i];
		if (seq == 0 || dup)
			continue;
		sorted[ns] = uids[i];
		seqs[ns++] = seq;
	}
	qsort(seqs, ns, sizeof(*seqs), u32_cmp);
	qsort(sorted, ns, sizeof(*sorted), u32_cmp);
	if (ns > 0 && (s->enabled & IMAP_EN_QRESYNC)) {
		imap_puts(s, "* VANISHED ");
		write_uid_set(s, sorted, ns);
		imap_puts(s, "\r\n");
	}
	/* highest number first: each EXPUNGE leaves the lower ones valid */
	for (size_t i = ns; i-- > 0;) {
		if (!(s->enabled & IMAP_EN_QRESYNC))
			imap_printf(s, "* %" PRIu32 " EXPUNGE\r\n", seqs[i]);
		imap_msgmap_remove(&sel->map, seqs[i]);
		if (sel->exists > 0)
			sel->exists--;
	}
	/* whatever was waiting to be announced is announced now */
	if (sel->ngone > 0) {
		size_t out = 0;

		for (size_t i = 0; i < sel->ngone; i++)
			if (bsearch(&sel->gone[i], sorted, ns, sizeof(*sorted), u32_cmp) == NULL)
				sel->gone[out++] = sel->gone[i];
		sel->ngone = out;
	}
	free(seqs);
	free(sorted);
}

void imap_sync_flush(struct imap_session *s)
{
	struct imap_selected *sel = &s->sel;

	if (s->state != IMAP_STATE_SELECTED)
		return;
	if (s->expunge_ok && sel->ngone > 0) {
		uint32_t *g = xmemdup(sel->gone, sel->ngone * sizeof(*sel->gone));
		size_t n = sel->ngone;

		imap_sync_expunged(s, g, n);
		free(g);
		sel->ngone = 0;
	}
	if (sel->map.n != sel->exists) {
		imap_printf(s, "* %zu EXISTS\r\n", sel->map.n);
		sel->exists = sel->map.n;
	}
}

void imap_session_write_modseq(struct imap_session *s, uint64_t before, uint64_t after)
{
	s->wm_set = true;
	s->wm_before = before;
	s->wm_after = after;
}

bool imap_sync_own_write(struct imap_session *s, bool accounted)
{
	struct imap_selected *sel = &s->sel;

	if (!s->wm_set)
		return false;
	s->wm_set = false;
	if (s->state != IMAP_STATE_SELECTED)
		return false;
	if (s->wm_before == s->wm_after)
		return s->wm_before == sel->modseq;
	if (accounted && s->wm_before == sel->modseq && s->wm_after > sel->modseq) {
		/* everything up to wm_after is known: the reported (uid, modseq)
		 * pairs are all at or below it, and a sync never returns those */
		sel->modseq = s->wm_after;
		sel->nreported = 0;
		return true;
	}
	sel->dirty = true;
	return false;
}

static int change_cmp(const void *a, const void *b)
{
	const struct imap_change *x = *(const struct imap_change *const *)a;
	const struct imap_change *y = *(const struct imap_change *const *)b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static void apply(struct imap_session *s, const struct imap_change *v, size_t n,
                  uint64_t highestmodseq)
{
	struct imap_selected *sel = &s->sel;
	const struct imap_change **order = xcalloc(n ? n : 1, sizeof(*order));

	for (size_t i = 0; i < n; i++)
		order[i] = &v[i];
	qsort(order, n, sizeof(*order), change_cmp);
	if (sel->nreported > 1)
		qsort(sel->reported, sel->nreported, sizeof(*sel->reported), reported_cmp);
	for (size_t i = 0; i < n; i++) {
		const struct imap_change *c = order[i];
		uint32_t seq = imap_msgmap_seq(&sel->map, c->uid);
		struct buf b;

		if (c->expunged) {
			if (seq != 0)
				gone_add(sel, c->uid);
			continue;
		}
		if (seq == 0) {
			/* UIDs only grow (RFC 3501 2.3.1.1): a UID we do not
			 * know above the last one is new mail */
			if (c->uid > imap_msgmap_max_uid(&sel->map))
				imap_msgmap_append(&sel->map, c->uid);
			imap_sync_keywords(s, c->flags, c->nflags);
			continue;
		}
		if (is_gone(sel, c->uid) || was_reported(sel, c->uid, c->modseq))
			continue;
		imap_sync_keywords(s, c->flags, c->nflags);
		buf_init(&b, 0);
		imap_write_flags(&b, c->flags, c->nflags);
		imap_printf(s, "* %" PRIu32 " FETCH (UID %" PRIu32 " FLAGS %.*s", seq, c->uid,
		            (int)buf_len(&b), (const char *)buf_ptr(&b));
		buf_free(&b);
		/* RFC 7162 3.2: once CONDSTORE is on, unsolicited FETCH
		 * carries MODSEQ */
		if (s->enabled & IMAP_EN_CONDSTORE)
			imap_printf(s, " MODSEQ (%" PRIu64 ")", c->modseq);
		imap_puts(s, ")\r\n");
	}
	free(order);
	if (highestmodseq > sel->modseq)
		sel->modseq = highestmodseq;
	sel->nreported = 0;
}

bool imap_sync_apply(struct imap_session *s, enum imap_store_status st, const struct imap_change *v,
                     size_t n, uint64_t highestmodseq, uint32_t uidvalidity)
{
	if (st == IMAP_STORE_NONEXISTENT ||
	    (st == IMAP_STORE_OK && uidvalidity != s->sel.uidvalidity)) {
		/* deleted or recreated under us: the numbers mean nothing now */
		imap_close(s, "Selected mailbox was deleted, have to disconnect");
		return false;
	}
	if (st == IMAP_STORE_OK)
		apply(s, v, n, highestmodseq);
	else
		s->sel.dirty = true; /* try again at the next chance */
	imap_sync_flush(s);
	return true;
}

static void sync_changes(struct imap_session *s, enum imap_store_status st,
                         const struct imap_change *v, size_t n, uint64_t highestmodseq,
                         uint32_t uidvalidity)
{
	bool ok = imap_sync_apply(s, st, v, n, highestmodseq, uidvalidity);

	if (s->final != NULL) {
		imap_cmd_final(s);
		return;
	}
	/* IDLE: a notification that came during the request */
	if (ok && s->mode == IMAP_MODE_IDLE && s->sel.dirty && st == IMAP_STORE_OK)
		imap_sync_start(s);
}

void imap_sync_start(struct imap_session *s)
{
	s->sel.dirty = false;
	s->k_changes = sync_changes;
	imap_op_begin(s, IMAP_OP_CHANGES);
	s->ops->changes(s->ctx, s->sel.modseq);
}
