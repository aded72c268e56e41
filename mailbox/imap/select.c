/*
 * mailbox/imap/select.c -- SELECT, EXAMINE (with CONDSTORE and QRESYNC
 * parameters), CLOSE and UNSELECT.
 *
 * A select asks the store for the mailbox's counters and its UID list;
 * the list becomes the session's sequence-number map (msgmap.h), the
 * only per-message state the session keeps (4 octets a message).  With
 * QRESYNC (RFC 7162 3.2.5) a second request fetches the changes since
 * the client's MODSEQ and answers them as VANISHED (EARLIER) and FETCH
 * before the tagged OK.
 */
#include "mailbox/imap/session_private.h"

#include "mailbox/imap/seqset.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void imap_selected_clear(struct imap_session *s, bool notify)
{
	struct imap_selected *sel = &s->sel;

	if (notify && sel->name != NULL && s->ops->unselect != NULL)
		s->ops->unselect(s->ctx);
	free(sel->name);
	imap_msgmap_free(&sel->map);
	free(sel->gone);
	free(sel->reported);
	for (size_t i = 0; i < sel->nkeywords; i++)
		free(sel->keywords[i]);
	free(sel->keywords);
	memset(sel, 0, sizeof(*sel));
	free(s->qresync_known);
	s->qresync_known = NULL;
	s->nqresync_known = 0;
	s->qresync_since = 0;
}

static void qresync_changes(struct imap_session *s, enum imap_store_status st,
                            const struct imap_change *v, size_t n, uint64_t highestmodseq,
                            uint32_t uidvalidity);

static void select_finish(struct imap_session *s)
{
	if (s->sel.readonly)
		imap_cmd_finish(s, "OK", "[READ-ONLY]",
		                strcmp(s->cmd_name, "EXAMINE") == 0 ? "Examine completed"
		                                                    : "Select completed");
	else
		imap_cmd_finish(s, "OK", "[READ-WRITE]", "Select completed");
}

static void select_done(struct imap_session *s, enum imap_store_status st,
                        const struct imap_select_info *info)
{
	struct imap_selected *sel = &s->sel;
	bool rev2 = (s->enabled & IMAP_EN_REV2) != 0;

	if (st != IMAP_STORE_OK) {
		free(s->qresync_known);
		s->qresync_known = NULL;
		s->nqresync_known = 0;
		s->qresync_since = 0;
		s->sel.readonly = false;
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	sel->name = s->pending_name;
	s->pending_name = NULL;
	sel->readonly = sel->readonly || info->readonly;
	sel->uidvalidity = info->uidvalidity;
	sel->modseq = info->highestmodseq;
	imap_msgmap_set(&sel->map, info->uids, info->nuids);
	sel->exists = info->nuids;
	sel->keywords = xcalloc(info->nkeywords ? info->nkeywords : 1, sizeof(*sel->keywords));
	for (size_t i = 0; i < info->nkeywords; i++)
		sel->keywords[i] = xstrdup(info->keywords[i]);
	sel->nkeywords = info->nkeywords;
	s->state = IMAP_STATE_SELECTED;

	/* RFC 3501 6.3.1 responses, RFC 9051 6.3.2 without RECENT/UNSEEN */
	imap_sync_write_flags(s);
	imap_printf(s, "* %zu EXISTS\r\n", sel->map.n);
	if (!rev2) {
		uint32_t unseen = info->first_unseen_uid
		                          ? imap_msgmap_seq(&sel->map, info->first_unseen_uid)
		                          : 0;

		imap_puts(s, "* 0 RECENT\r\n");
		if (unseen)
			imap_printf(s, "* OK [UNSEEN %" PRIu32 "] First unseen\r\n", unseen);
	}
	imap_printf(s, "* OK [UIDVALIDITY %" PRIu32 "] UIDs valid\r\n", info->uidvalidity);
	imap_printf(s, "* OK [UIDNEXT %" PRIu32 "] Predicted next UID\r\n", info->uidnext);
	imap_printf(s, "* OK [HIGHESTMODSEQ %" PRIu64 "] Highest\r\n", info->highestmodseq);
	if (s->qresync_since != 0) {
		if (s->qresync_since >= info->highestmodseq) {
			select_finish(s);
			return;
		}
		s->k_changes = qresync_changes;
		imap_op_begin(s, IMAP_OP_CHANGES);
		s->ops->changes(s->ctx, s->qresync_since);
		return;
	}
	select_finish(s);
}

static bool known(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->nqresync_known;

	if (s->qresync_known == NULL)
		return true;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->qresync_known[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nqresync_known && s->qresync_known[lo] == uid;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* RFC 7162 3.2.5.2: what changed while the client was away. */
static void qresync_changes(struct imap_session *s, enum imap_store_status st,
                            const struct imap_change *v, size_t n, uint64_t highestmodseq,
                            uint32_t uidvalidity)
{
	uint32_t *gone;
	size_t ngone = 0;

	if (st != IMAP_STORE_OK || uidvalidity != s->sel.uidvalidity) {
		/* the client resynchronises fully next time; the select stands */
		select_finish(s);
		return;
	}
	gone = xcalloc(n ? n : 1, sizeof(*gone));
	for (size_t i = 0; i < n; i++) {
		if (v[i].expunged) {
			if (imap_msgmap_seq(&s->sel.map, v[i].uid) == 0 && known(s, v[i].uid))
				gone[ngone++] = v[i].uid;
			continue;
		}
	}
	if (ngone > 0) {
		qsort(gone, ngone, sizeof(*gone), u32_cmp);
		imap_puts(s, "* VANISHED (EARLIER) ");
		for (size_t i = 0; i < ngone;) {
			size_t k = i;

			while (k + 1 < ngone && gone[k + 1] == gone[k] + 1)
				k++;
			if (i > 0)
				imap_puts(s, ",");
			if (k == i)
				imap_printf(s, "%" PRIu32, gone[i]);
			else
				imap_printf(s, "%" PRIu32 ":%" PRIu32, gone[i], gone[k]);
			i = k + 1;
		}
		imap_puts(s, "\r\n");
	}
	free(gone);
	for (size_t i = 0; i < n; i++) {
		uint32_t seq;
		struct buf b;

		if (v[i].expunged)
			continue;
		seq = imap_msgmap_seq(&s->sel.map, v[i].uid);
		if (seq == 0)
			continue; /* arrived after the select: the next sync says so */
		buf_init(&b, 0);
		imap_write_flags(&b, v[i].flags, v[i].nflags);
		imap_printf(
		        s,
		        "* %" PRIu32 " FETCH (UID %" PRIu32 " FLAGS %.*s MODSEQ (%" PRIu64 "))\r\n",
		        seq, v[i].uid, (int)buf_len(&b), (const char *)buf_ptr(&b), v[i].modseq);
		buf_free(&b);
		if (v[i].modseq > s->sel.modseq)
			imap_sync_reported(s, v[i].uid, v[i].modseq);
	}
	(void)highestmodseq;
	select_finish(s);
}

/* (QRESYNC (uidvalidity modseq [known-uids [seq-match]])) */
static const char *qresync_parse(struct imap_session *s, const struct imap_arg *q,
                                 uint32_t *uidvalidity_r)
{
	const struct imap_arg *a = q->list;
	uint64_t mod = 0, uv = 0;
	char *end;

	if (q->nlist < 2 || q->nlist > 4 || a[0].type != IMAP_ARG_ATOM ||
	    a[1].type != IMAP_ARG_ATOM)
		return "Invalid QRESYNC parameters";
	uv = strtoull(a[0].str, &end, 10);
	if (*end != '\0' || uv == 0 || uv > UINT32_MAX || a[0].str[0] == '-')
		return "Invalid QRESYNC UIDVALIDITY";
	mod = strtoull(a[1].str, &end, 10);
	if (*end != '\0' || mod == 0 || a[1].str[0] == '-')
		return "Invalid QRESYNC MODSEQ";
	if (q->nlist >= 3) {
		struct imap_seqset set;
		const char *why;
		size_t cap = 0;

		if (a[2].type != IMAP_ARG_ATOM || imap_seqset_parse(a[2].str, &set, &why) < 0)
			return "Invalid QRESYNC known UIDs";
		for (size_t i = 0; i < set.n; i++) {
			uint32_t lo = set.v[i].lo, hi = set.v[i].hi;

			if (lo == IMAP_SEQ_STAR || hi == IMAP_SEQ_STAR) {
				imap_seqset_free(&set);
				free(s->qresync_known);
				s->qresync_known = NULL;
				s->nqresync_known = 0;
				return "Invalid QRESYNC known UIDs";
			}
			if (lo > hi) {
				uint32_t t = lo;
				lo = hi;
				hi = t;
			}
			/* bounded by the line length: at most 64 K ranges, but
			 * a range may be wide; cap the expansion */
			for (uint64_t u = lo; u <= hi && s->nqresync_known < 1000000; u++) {
				if (s->nqresync_known == cap) {
					cap = cap ? cap * 2 : 64;
					s->qresync_known = xreallocarray(s->qresync_known, cap,
					                                 sizeof(*s->qresync_known));
				}
				s->qresync_known[s->nqresync_known++] = (uint32_t)u;
			}
		}
		imap_seqset_free(&set);
		if (s->qresync_known == NULL)
			s->qresync_known = xcalloc(1, sizeof(*s->qresync_known));
		qsort(s->qresync_known, s->nqresync_known, sizeof(*s->qresync_known), u32_cmp);
	}
	/* a fourth element, the sequence match data, only helps servers that
	 * forget expunges; we answer from the store's records */
	*uidvalidity_r = (uint32_t)uv;
	s->qresync_since = mod;
	return NULL;
}

static void select_k(struct imap_session *s, enum imap_store_status st,
                     const struct imap_select_info *info);

void imap_cmd_select(struct imap_session *s, const struct imap_command *c, bool readonly)
{
	const char *why;
	char *name;
	uint32_t qr_uidvalidity = 0;
	bool qresync = false;

	free(s->qresync_known);
	s->qresync_known = NULL;
	s->nqresync_known = 0;
	s->qresync_since = 0;
	if (c->nargs != 1 && c->nargs != 2) {
		imap_cmd_bad(s, "SELECT needs a mailbox name");
		return;
	}
	/* RFC 3501 6.3.1: a SELECT first leaves the selected state, with no
	 * EXPUNGE of \Deleted messages */
	if (s->state == IMAP_STATE_SELECTED) {
		imap_selected_clear(s, true);
		s->state = IMAP_STATE_AUTH;
		if (s->enabled & IMAP_EN_QRESYNC)
			imap_puts(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	if (c->nargs == 2) {
		const struct imap_arg *p = &c->args[1];

		if (p->type != IMAP_ARG_LIST) {
			imap_cmd_bad(s, "Invalid SELECT parameters");
			return;
		}
		for (size_t i = 0; i < p->nlist; i++) {
			if (imap_arg_atom_is(&p->list[i], "CONDSTORE")) {
				s->enabled |= IMAP_EN_CONDSTORE;
			} else if (imap_arg_atom_is(&p->list[i], "QRESYNC") && i + 1 < p->nlist &&
			           p->list[i + 1].type == IMAP_ARG_LIST) {
				/* RFC 7162 3.2.5: only after ENABLE QRESYNC */
				if (!(s->enabled & IMAP_EN_QRESYNC) || qresync) {
					imap_cmd_bad(s, "QRESYNC is not enabled");
					return;
				}
				why = qresync_parse(s, &p->list[++i], &qr_uidvalidity);
				if (why != NULL) {
					imap_cmd_bad(s, why);
					return;
				}
				qresync = true;
			} else {
				imap_cmd_bad(s, "Invalid SELECT parameters");
				return;
			}
		}
	}
	name = imap_mbox_arg(s, &c->args[0], &why);
	if (name == NULL) {
		imap_selected_clear(s, false);
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	free(s->pending_name);
	s->pending_name = name;
	s->sel.readonly = readonly;
	s->sel.uidvalidity = qr_uidvalidity; /* compared in select_k */
	s->k_changes = NULL;
	imap_op_begin(s, IMAP_OP_SELECT);
	s->ops->select(s->ctx, name, readonly);
}

static void select_k(struct imap_session *s, enum imap_store_status st,
                     const struct imap_select_info *info)
{
	/* QRESYNC only applies when the UIDVALIDITY still matches
	 * (RFC 7162 3.2.5.1) */
	if (st == IMAP_STORE_OK && s->qresync_since != 0 && s->sel.uidvalidity != info->uidvalidity)
		s->qresync_since = 0;
	s->sel.uidvalidity = 0;
	select_done(s, st, info);
}

void imap_session_select_done(struct imap_session *s, enum imap_store_status st,
                              const struct imap_select_info *info)
{
	if (!imap_session_complete(s, IMAP_OP_SELECT))
		return;
	select_k(s, st, info);
}

static void close_expunged(struct imap_session *s, enum imap_store_status st)
{
	imap_selected_clear(s, true);
	s->state = IMAP_STATE_AUTH;
	if (st != IMAP_STORE_OK) {
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	imap_cmd_finish(s, "OK", NULL, "Close completed");
}

static void close_expunge_k(struct imap_session *s, enum imap_store_status st, const uint32_t *uids,
                            size_t n, uint64_t modseq)
{
	close_expunged(s, st);
}

void imap_cmd_close(struct imap_session *s, const struct imap_command *c, bool expunge)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "Command takes no arguments");
		return;
	}
	/* RFC 3501 6.4.2: CLOSE expunges silently, unless read-only */
	if (expunge && !s->sel.readonly) {
		s->k_expunge = close_expunge_k;
		imap_op_begin(s, IMAP_OP_EXPUNGE);
		s->ops->expunge(s->ctx, NULL, 0);
		return;
	}
	imap_selected_clear(s, true);
	s->state = IMAP_STATE_AUTH;
	imap_cmd_finish(s, "OK", NULL, expunge ? "Close completed" : "Unselect completed");
}
