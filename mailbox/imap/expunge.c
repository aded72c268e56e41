/*
 * mailbox/imap/expunge.c -- EXPUNGE, UID EXPUNGE (RFC 4315), COPY, MOVE
 * (RFC 6851) and their UID forms, with COPYUID (RFC 4315 3).
 *
 * These change which messages exist, so their responses go through
 * sync.c's imap_sync_expunged(): the sequence map and the client's view
 * change together, EXPUNGE lines in descending order, or one VANISHED
 * under QRESYNC.
 */
#include "mailbox/imap/session_private.h"

#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct imap_copy_job {
	bool move;
	char *dst;
};

void imap_copy_job_free(struct imap_session *s)
{
	if (s->copy == NULL)
		return;
	free(s->copy->dst);
	free(s->copy);
	s->copy = NULL;
}

/* --- EXPUNGE -------------------------------------------------------------------- */

/* RFC 7162 (QRESYNC, EXPUNGE and HIGHESTMODSEQ): the tagged OK of EXPUNGE
 * carries HIGHESTMODSEQ.  It may only name a MODSEQ up to which the
 * client has heard everything, so a sync runs first. */
static void expunge_synced(struct imap_session *s, enum imap_store_status st,
                           const struct imap_change *v, size_t n, uint64_t highestmodseq,
                           uint32_t uidvalidity)
{
	char code[48];

	if (!imap_sync_apply(s, st, v, n, highestmodseq, uidvalidity)) {
		imap_cmd_finish(s, "OK", NULL, "Expunge completed");
		return;
	}
	if (st != IMAP_STORE_OK) {
		imap_cmd_finish(s, "OK", NULL, "Expunge completed");
		return;
	}
	snprintf(code, sizeof(code), "[HIGHESTMODSEQ %" PRIu64 "]", s->sel.modseq);
	imap_cmd_finish(s, "OK", code, "Expunge completed");
}

static void expunge_done(struct imap_session *s, enum imap_store_status st, const uint32_t *uids,
                         size_t n, uint64_t modseq)
{
	char code[48];
	bool current;

	(void)modseq;
	if (st != IMAP_STORE_OK) {
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	imap_sync_expunged(s, uids, n);
	/* every message we expunged was announced just now */
	current = imap_sync_own_write(s, true) && !s->sel.dirty;
	if ((s->enabled & IMAP_EN_CONDSTORE) && current) {
		/* nothing else happened: HIGHESTMODSEQ is known without a sync */
		snprintf(code, sizeof(code), "[HIGHESTMODSEQ %" PRIu64 "]", s->sel.modseq);
		imap_cmd_finish(s, "OK", code, "Expunge completed");
		return;
	}
	if (s->enabled & IMAP_EN_CONDSTORE) {
		s->sel.dirty = false;
		s->k_changes = expunge_synced;
		imap_op_begin(s, IMAP_OP_CHANGES);
		s->ops->changes(s->ctx, s->sel.modseq);
		return;
	}
	imap_cmd_finish(s, "OK", NULL, "Expunge completed");
}

void imap_session_expunge_done(struct imap_session *s, enum imap_store_status st,
                               const uint32_t *uids, size_t n, uint64_t modseq)
{
	if (!imap_session_complete(s, IMAP_OP_EXPUNGE))
		return;
	s->k_expunge(s, st, uids, n, modseq);
}

void imap_cmd_expunge(struct imap_session *s, const struct imap_command *c, size_t argi)
{
	uint32_t *uids = NULL;
	size_t n = 0;
	const char *why;
	bool uid = argi > 0;

	if (uid) {
		/* UID EXPUNGE set */
		if (c->nargs != argi + 1 || c->args[argi].type != IMAP_ARG_ATOM) {
			imap_cmd_bad(s, "UID EXPUNGE needs a UID set");
			return;
		}
		if (imap_msgmap_resolve(&s->sel.map, c->args[argi].str, true, &uids, &n, &why) <
		    0) {
			imap_cmd_bad(s, why);
			return;
		}
	}
	if (s->sel.readonly) {
		free(uids);
		imap_cmd_finish(s, "NO", "[READ-ONLY]", "Mailbox is read-only");
		return;
	}
	if (uid && n == 0) {
		imap_cmd_finish(s, "OK", NULL, "Expunge completed");
		return;
	}
	s->k_expunge = expunge_done;
	imap_op_begin(s, IMAP_OP_EXPUNGE);
	s->ops->expunge(s->ctx, uids, n);
	free(uids);
}

/* --- COPY, MOVE -------------------------------------------------------------------- */

/* COPYUID's two sets, cut into runs where both sides are consecutive so
 * that they correspond element by element (RFC 4315 3). */
static void copyuid_code(struct buf *b, uint32_t uidvalidity, const uint32_t *src,
                         const uint32_t *dst, size_t n)
{
	buf_printf(b, "[COPYUID %" PRIu32 " ", uidvalidity);
	for (int side = 0; side < 2; side++) {
		const uint32_t *v = side == 0 ? src : dst;

		if (side == 1)
			buf_puts(b, " ");
		for (size_t i = 0; i < n;) {
			size_t k = i;

			while (k + 1 < n && src[k + 1] == src[k] + 1 && dst[k + 1] == dst[k] + 1)
				k++;
			buf_printf(b, i ? ",%" PRIu32 : "%" PRIu32, v[i]);
			if (k > i)
				buf_printf(b, ":%" PRIu32, v[k]);
			i = k + 1;
		}
	}
	buf_puts(b, "]");
	buf_append(b, "", 1);
}

void imap_session_copy_done(struct imap_session *s, enum imap_store_status st,
                            uint32_t dst_uidvalidity, const uint32_t *src, const uint32_t *dst,
                            size_t n)
{
	struct imap_copy_job *j;
	bool move;
	struct buf code;

	if (!imap_session_complete(s, IMAP_OP_COPY))
		return;
	j = s->copy;
	move = j->move;
	if (st != IMAP_STORE_OK) {
		imap_copy_job_free(s);
		/* RFC 3501 6.4.7: TRYCREATE when the target does not exist */
		imap_cmd_finish(s, "NO", imap_store_status_code(st, true),
		                st == IMAP_STORE_NONEXISTENT ? "Mailbox doesn't exist"
		                : st == IMAP_STORE_OVERQUOTA ? "Quota exceeded"
		                : st == IMAP_STORE_TEMPFAIL
		                        ? "Service temporarily unavailable, try again later"
		                        : "Copy failed");
		return;
	}
	if (strcmp(j->dst, s->sel.name) == 0)
		s->sel.dirty = true; /* new messages here: EXISTS */
	imap_copy_job_free(s);
	buf_init(&code, 0);
	if (n > 0)
		copyuid_code(&code, dst_uidvalidity, src, dst, n);
	if (!move) {
		imap_cmd_finish(s, "OK", n > 0 ? (const char *)buf_ptr(&code) : NULL,
		                "Copy completed");
		buf_free(&code);
		return;
	}
	/* RFC 6851 4.3: COPYUID in an untagged OK before the EXPUNGEs */
	if (n > 0)
		imap_printf(s, "* OK %s Moved UIDs.\r\n", (const char *)buf_ptr(&code));
	buf_free(&code);
	imap_sync_expunged(s, src, n);
	imap_cmd_finish(s, "OK", NULL, "Move completed");
}

void imap_cmd_copy(struct imap_session *s, const struct imap_command *c, size_t argi, bool move)
{
	uint32_t *uids = NULL;
	size_t n = 0;
	const char *why;
	char *dst;

	if (c->nargs != argi + 2 || c->args[argi].type != IMAP_ARG_ATOM) {
		imap_cmd_bad(s, move ? "MOVE needs a set and a mailbox"
		                     : "COPY needs a set and a mailbox");
		return;
	}
	if (imap_msgmap_resolve(&s->sel.map, c->args[argi].str, s->cmd_uid, &uids, &n, &why) < 0) {
		imap_cmd_bad(s, why);
		return;
	}
	dst = imap_mbox_arg(s, &c->args[argi + 1], &why);
	if (dst == NULL) {
		free(uids);
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	if (move && s->sel.readonly) {
		free(uids);
		free(dst);
		imap_cmd_finish(s, "NO", "[READ-ONLY]", "Mailbox is read-only");
		return;
	}
	if (n == 0) {
		free(uids);
		free(dst);
		imap_cmd_finish(s, "OK", NULL, move ? "No messages moved" : "No messages copied");
		return;
	}
	s->copy = xcalloc(1, sizeof(*s->copy));
	s->copy->move = move;
	s->copy->dst = dst;
	imap_op_begin(s, IMAP_OP_COPY);
	s->ops->copy(s->ctx, uids, n, dst, move);
	free(uids);
}
