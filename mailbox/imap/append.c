/*
 * mailbox/imap/append.c -- APPEND (RFC 3501 6.3.11, LITERAL+ RFC 7888,
 * several messages as in MULTIAPPEND RFC 3502, APPENDUID RFC 4315).
 *
 * A message arrives as a literal before the command it belongs to is
 * complete, so the session cannot know yet that it is an APPEND.  Large
 * literals come from the parser in chunks (IMAP_PARSE_LITERAL_CHUNK) and
 * go straight into a spool the store opens (ops.spool_open/spool_write);
 * small ones are held by the parser and spooled when the command is
 * complete.  When the command turns out to be an APPEND the spools are
 * handed to ops.append, which owns them from then on; anything else (a
 * BAD command, another command with a big literal, the end of the
 * session) aborts them.  Before authentication nothing is spooled: the
 * octets are dropped as they come.
 */
#include "mailbox/imap/date.h"
#include "mailbox/imap/session_private.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct append_one {
	void *spool;
	uint64_t size;
	char **flags;
	size_t nflags;
	bool has_date;
	int64_t date;
	int tz;
};

struct imap_append_job {
	char *mailbox;
	struct append_one *msgs;
	size_t n;
};

void imap_append_job_free(struct imap_session *s)
{
	struct imap_append_job *j = s->append;

	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n; i++) {
		if (j->msgs[i].spool != NULL && s->ops->spool_abort != NULL)
			s->ops->spool_abort(s->ctx, j->msgs[i].spool);
		imap_flags_free(j->msgs[i].flags, j->msgs[i].nflags);
	}
	free(j->msgs);
	free(j->mailbox);
	free(j);
	s->append = NULL;
}

void imap_append_spools_abort(struct imap_session *s)
{
	for (size_t i = 0; i < s->nspools; i++)
		if (s->spools[i] != NULL && s->ops->spool_abort != NULL)
			s->ops->spool_abort(s->ctx, s->spools[i]);
	s->nspools = 0;
	s->spool_open = false;
}

void imap_append_chunk(struct imap_session *s, const uint8_t *p, size_t n, bool last)
{
	size_t k;

	if (s->state != IMAP_STATE_AUTH && s->state != IMAP_STATE_SELECTED)
		return; /* no APPEND before login: drop */
	if (!s->spool_open) {
		if (s->nspools == s->capspools) {
			s->capspools = s->capspools ? s->capspools * 2 : 4;
			s->spools = xreallocarray(s->spools, s->capspools, sizeof(*s->spools));
			s->spool_sizes = xreallocarray(s->spool_sizes, s->capspools,
			                               sizeof(*s->spool_sizes));
			s->spool_failed = xreallocarray(s->spool_failed, s->capspools,
			                                sizeof(*s->spool_failed));
		}
		k = s->nspools++;
		s->spools[k] = s->ops->spool_open != NULL ? s->ops->spool_open(s->ctx) : NULL;
		s->spool_sizes[k] = 0;
		s->spool_failed[k] = s->spools[k] == NULL;
		s->spool_open = true;
	}
	k = s->nspools - 1;
	if (!s->spool_failed[k] && n > 0 && s->ops->spool_write(s->ctx, s->spools[k], p, n) < 0)
		s->spool_failed[k] = true;
	s->spool_sizes[k] += n;
	if (last)
		s->spool_open = false;
}

/*
 * Appended to the selected mailbox: RFC 3501 6.3.11, EXISTS follows.  When
 * the store says the append was the only change since the session's last
 * sync, the new UIDs join the map here (EXISTS goes out before the tagged
 * OK); otherwise a sync finds them.
 */
static void append_selected(struct imap_session *s, const struct imap_append_job *j,
                            uint32_t uidvalidity, const uint32_t *uids, size_t n)
{
	struct imap_selected *sel = &s->sel;
	bool fits = s->wm_set && s->wm_before == sel->modseq && uidvalidity == sel->uidvalidity &&
	            n == j->n && n > 0;

	for (size_t i = 0; fits && i < n; i++)
		fits = uids[i] > (i > 0 ? uids[i - 1] : imap_msgmap_max_uid(&sel->map));
	if (!fits) {
		s->wm_set = false;
		sel->dirty = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		imap_msgmap_append(&sel->map, uids[i]);
		imap_sync_keywords(s, (const char *const *)j->msgs[i].flags, j->msgs[i].nflags);
	}
	if (!imap_sync_own_write(s, true))
		sel->dirty = true;
}

static void append_done_k(struct imap_session *s, enum imap_store_status st, uint32_t uidvalidity,
                          const uint32_t *uids, size_t n)
{
	struct imap_append_job *j = s->append;
	struct buf code;

	if (st != IMAP_STORE_OK) {
		imap_append_job_free(s);
		imap_cmd_finish(s, "NO", imap_store_status_code(st, true),
		                st == IMAP_STORE_NONEXISTENT ? "Mailbox doesn't exist"
		                : st == IMAP_STORE_OVERQUOTA
		                        ? "Quota exceeded (mailbox for user is full)"
		                : st == IMAP_STORE_LIMIT ? "Message too large"
		                : st == IMAP_STORE_TEMPFAIL
		                        ? "Service temporarily unavailable, try again later"
		                        : "Append failed");
		return;
	}
	if (s->state == IMAP_STATE_SELECTED && strcmp(j->mailbox, s->sel.name) == 0)
		append_selected(s, j, uidvalidity, uids, n);
	imap_append_job_free(s);
	if (n == 0) {
		imap_cmd_finish(s, "OK", NULL, "Append completed");
		return;
	}
	/* RFC 4315 3: APPENDUID uidvalidity uid-set */
	buf_init(&code, 0);
	buf_printf(&code, "[APPENDUID %" PRIu32 " ", uidvalidity);
	for (size_t i = 0; i < n;) {
		size_t k = i;

		while (k + 1 < n && uids[k + 1] == uids[k] + 1)
			k++;
		buf_printf(&code, i ? ",%" PRIu32 : "%" PRIu32, uids[i]);
		if (k > i)
			buf_printf(&code, ":%" PRIu32, uids[k]);
		i = k + 1;
	}
	buf_puts(&code, "]");
	buf_append(&code, "", 1);
	imap_cmd_finish(s, "OK", (const char *)buf_ptr(&code), "Append completed");
	buf_free(&code);
}

void imap_session_append_done(struct imap_session *s, enum imap_store_status st,
                              uint32_t uidvalidity, const uint32_t *uids, size_t n)
{
	if (!imap_session_complete(s, IMAP_OP_APPEND))
		return;
	append_done_k(s, st, uidvalidity, uids, n);
}

/* Parse "[flags] [date] literal" groups into the job; -1 with *why and
 * *bad (BAD rather than NO). */
static int parse_messages(struct imap_session *s, const struct imap_command *c,
                          struct imap_append_job *j, const char **why, bool *bad, const char **code)
{
	size_t i = 1, streamed = 0;

	*bad = true;
	*code = NULL;
	if (i >= c->nargs) {
		*why = "APPEND needs a message";
		return -1;
	}
	while (i < c->nargs) {
		struct append_one m = {0};
		const struct imap_arg *lit;

		if (c->args[i].type == IMAP_ARG_LIST) {
			if (imap_flags_parse(&c->args[i], true, &m.flags, &m.nflags, why) < 0)
				return -1;
			i++;
		}
		if (i < c->nargs && c->args[i].type == IMAP_ARG_STRING) {
			if (!imap_datetime_parse(c->args[i].str, &m.date, &m.tz)) {
				imap_flags_free(m.flags, m.nflags);
				*why = "Invalid date-time";
				return -1;
			}
			m.has_date = true;
			i++;
		}
		if (i >= c->nargs || (c->args[i].type != IMAP_ARG_LITERAL &&
		                      c->args[i].type != IMAP_ARG_LITERAL_STREAMED)) {
			imap_flags_free(m.flags, m.nflags);
			*why = "APPEND needs a literal message";
			return -1;
		}
		lit = &c->args[i++];
		j->msgs = xreallocarray(j->msgs, j->n + 1, sizeof(*j->msgs));
		j->msgs[j->n++] = m;
		if (lit->binary) {
			*why = "BINARY literals are not supported";
			return -1;
		}
		if (lit->type == IMAP_ARG_LITERAL_STREAMED) {
			if (streamed >= s->nspools || s->spool_open) {
				*why = "Literal out of order";
				return -1;
			}
			j->msgs[j->n - 1].spool = s->spools[streamed];
			j->msgs[j->n - 1].size = s->spool_sizes[streamed];
			s->spools[streamed] = NULL; /* the job owns it now */
			if (s->spool_failed[streamed]) {
				*bad = false;
				*code = "[UNAVAILABLE]";
				*why = "Failed to store the message";
				return -1;
			}
			streamed++;
		} else {
			void *sp = s->ops->spool_open != NULL ? s->ops->spool_open(s->ctx) : NULL;

			j->msgs[j->n - 1].spool = sp;
			j->msgs[j->n - 1].size = lit->len;
			if (sp == NULL ||
			    (lit->len > 0 &&
			     s->ops->spool_write(s->ctx, sp, (const uint8_t *)lit->str, lit->len) <
			             0)) {
				*bad = false;
				*code = "[UNAVAILABLE]";
				*why = "Failed to store the message";
				return -1;
			}
		}
		if (j->msgs[j->n - 1].size == 0) {
			*bad = false;
			*why = "Can't save a zero byte message";
			return -1;
		}
	}
	return 0;
}

void imap_cmd_append(struct imap_session *s, const struct imap_command *c)
{
	struct imap_append_job *j;
	struct imap_append_msg *v;
	const char *why, *code;
	bool bad;

	if (c->nargs < 2) {
		imap_append_spools_abort(s);
		imap_cmd_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	s->append = j;
	j->mailbox = imap_mbox_arg(s, &c->args[0], &why);
	if (j->mailbox == NULL) {
		imap_append_spools_abort(s);
		imap_append_job_free(s);
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	if (parse_messages(s, c, j, &why, &bad, &code) < 0) {
		imap_append_spools_abort(s);
		imap_append_job_free(s);
		if (bad)
			imap_cmd_bad(s, why);
		else
			imap_cmd_finish(s, "NO", code, why);
		return;
	}
	/* every streamed literal was claimed */
	imap_append_spools_abort(s);
	v = xcalloc(j->n, sizeof(*v));
	for (size_t i = 0; i < j->n; i++) {
		v[i].spool = j->msgs[i].spool;
		v[i].size = j->msgs[i].size;
		v[i].flags = (const char *const *)j->msgs[i].flags;
		v[i].nflags = j->msgs[i].nflags;
		v[i].has_date = j->msgs[i].has_date;
		v[i].date = j->msgs[i].date;
		v[i].date_tz = j->msgs[i].tz;
		/* the store owns the spool from the call on, even if the
		 * session is freed before the completion */
		j->msgs[i].spool = NULL;
	}
	imap_op_begin(s, IMAP_OP_APPEND);
	s->ops->append(s->ctx, j->mailbox, v, j->n);
	free(v);
}
