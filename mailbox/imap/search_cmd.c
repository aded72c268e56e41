/*
 * mailbox/imap/search_cmd.c -- SEARCH, UID SEARCH, SORT, UID SORT and
 * their results: SEARCH, ESEARCH (RFC 4731, and always under IMAP4rev2,
 * RFC 9051 7.3.4) and SORT (RFC 5256), with MODSEQ (RFC 7162 3.1.5).
 *
 * The program (search.c) goes to the store whole; the store answers with
 * UIDs.  UIDs the client has not been told about yet (mail that arrived
 * after the last EXISTS) are dropped here: a result must only name
 * messages the client can address.
 */
#include "mailbox/imap/search.h"
#include "mailbox/imap/session_private.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct imap_search_job {
	struct imap_search_program prog;
	bool sort;
};

void imap_search_job_free(struct imap_session *s)
{
	if (s->search == NULL)
		return;
	imap_search_program_free(&s->search->prog);
	free(s->search);
	s->search = NULL;
}

void imap_cmd_search(struct imap_session *s, const struct imap_command *c, size_t argi, bool sort)
{
	struct imap_search_job *j = xcalloc(1, sizeof(*j));
	struct imap_search_query q;
	const char *why = NULL;
	bool bad_charset;

	j->sort = sort;
	s->search = j;
	if (imap_search_parse(c->nargs > argi ? c->args + argi : NULL, c->nargs - argi, sort,
	                      s->sel.map.uids, s->sel.map.n, &j->prog, &bad_charset, &why) < 0) {
		imap_search_job_free(s);
		if (bad_charset)
			imap_cmd_finish(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)]", why);
		else
			imap_cmd_bad(s, why);
		return;
	}
	if (sort && j->prog.esearch) {
		imap_search_job_free(s);
		imap_cmd_bad(s, "SORT RETURN (ESORT) is not supported");
		return;
	}
	if (j->prog.modseq)
		s->enabled |= IMAP_EN_CONDSTORE; /* RFC 7162 3.1 */
	q.key = &j->prog.root;
	q.sort = j->prog.sort;
	q.nsort = j->prog.nsort;
	imap_op_begin(s, IMAP_OP_SEARCH);
	s->ops->search(s->ctx, &q);
}

/* "1:3,7" from ascending numbers. */
static void write_set(struct imap_session *s, const uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = i;

		while (k + 1 < n && v[k + 1] == v[k] + 1)
			k++;
		imap_printf(s, i ? ",%" PRIu32 : "%" PRIu32, v[i]);
		if (k > i)
			imap_printf(s, ":%" PRIu32, v[k]);
		i = k + 1;
	}
}

void imap_session_search_done(struct imap_session *s, enum imap_store_status st,
                              const uint32_t *uids, size_t n, uint64_t highestmodseq)
{
	struct imap_search_job *j;
	uint32_t *out;
	size_t nout = 0;
	bool esearch;

	if (!imap_session_complete(s, IMAP_OP_SEARCH))
		return;
	j = s->search;
	if (st != IMAP_STORE_OK) {
		imap_search_job_free(s);
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	/* the store saw a change the session has not synced: sync at the next
	 * chance, and answer FETCH from the store until then (the flags the
	 * session knows are older than what this search matched) */
	if (highestmodseq > s->sel.modseq)
		s->sel.dirty = true;
	out = xcalloc(n ? n : 1, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_msgmap_seq(&s->sel.map, uids[i]);

		if (seq != 0)
			out[nout++] = s->cmd_uid ? uids[i] : seq;
	}
	esearch = !j->sort && (j->prog.esearch || (s->enabled & IMAP_EN_REV2));
	if (esearch) {
		unsigned ret = j->prog.ret ? j->prog.ret : IMAP_SEARCH_RET_ALL;

		imap_printf(s, "* ESEARCH (TAG \"%s\")", s->tag);
		if (s->cmd_uid)
			imap_puts(s, " UID");
		if (nout > 0 && (ret & IMAP_SEARCH_RET_MIN))
			imap_printf(s, " MIN %" PRIu32, out[0]);
		if (nout > 0 && (ret & IMAP_SEARCH_RET_MAX))
			imap_printf(s, " MAX %" PRIu32, out[nout - 1]);
		if (ret & IMAP_SEARCH_RET_COUNT)
			imap_printf(s, " COUNT %zu", nout);
		if (nout > 0 && (ret & IMAP_SEARCH_RET_ALL)) {
			imap_puts(s, " ALL ");
			write_set(s, out, nout);
		}
		if (nout > 0 && j->prog.modseq)
			imap_printf(s, " MODSEQ %" PRIu64, highestmodseq);
		imap_puts(s, "\r\n");
	} else {
		imap_puts(s, j->sort ? "* SORT" : "* SEARCH");
		for (size_t i = 0; i < nout; i++)
			imap_printf(s, " %" PRIu32, out[i]);
		if (nout > 0 && j->prog.modseq)
			imap_printf(s, " (MODSEQ %" PRIu64 ")", highestmodseq);
		imap_puts(s, "\r\n");
	}
	free(out);
	{
		bool sort = j->sort;

		imap_search_job_free(s);
		imap_cmd_finish(s, "OK", NULL, sort ? "Sort completed" : "Search completed");
	}
}
