/*
 * mailbox/imap/flags.c -- flag lists and STORE (RFC 3501 6.4.6, RFC 7162
 * 3.1.3 UNCHANGEDSINCE).
 *
 * Flags are normalised once, where they enter: system flags get their
 * canonical spelling ("\seen" -> "\Seen", RFC 3501 2.3.2 makes flags
 * case-insensitive), unknown system flags and \Recent (which only the
 * server sets) are refused, keywords must be atoms, duplicates go.  The
 * store then compares flags byte for byte.
 */
#include "mailbox/imap/session_private.h"

#include "mailbox/imap/string.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FLAG_MAX_LEN 128
#define FLAGS_MAX    64

static const char *const system_flags[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
                                           "\\Draft"};

void imap_flags_free(char **flags, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(flags[i]);
	free(flags);
}

int imap_flags_parse(const struct imap_arg *a, bool allow_recent, char ***flags_r, size_t *n_r,
                     const char **errstr_r)
{
	const struct imap_arg *v = a;
	size_t nv = 1, n = 0;
	char **out;

	*flags_r = NULL;
	*n_r = 0;
	if (a->type == IMAP_ARG_LIST) {
		v = a->list;
		nv = a->nlist;
	}
	if (nv > FLAGS_MAX) {
		*errstr_r = "Too many flags";
		return -1;
	}
	out = xcalloc(nv ? nv : 1, sizeof(*out));
	for (size_t i = 0; i < nv; i++) {
		const char *f = v[i].str;
		const char *canon = NULL;

		if (v[i].type != IMAP_ARG_ATOM || v[i].len == 0 || v[i].len > FLAG_MAX_LEN) {
			*errstr_r = "Invalid flag";
			goto fail;
		}
		if (f[0] == '\\') {
			for (size_t k = 0; k < sizeof(system_flags) / sizeof(system_flags[0]); k++)
				if (strcasecmp(f, system_flags[k]) == 0)
					canon = system_flags[k];
			if (canon == NULL && strcasecmp(f, "\\Recent") == 0) {
				if (!allow_recent) {
					*errstr_r = "\\Recent cannot be changed";
					goto fail;
				}
				continue;
			}
			if (canon == NULL) {
				*errstr_r = "Invalid system flag";
				goto fail;
			}
		} else if (!imap_string_is_atom(f, v[i].len)) {
			*errstr_r = "Invalid keyword";
			goto fail;
		}
		if (imap_flags_has((const char *const *)out, n, canon != NULL ? canon : f))
			continue;
		out[n++] = xstrdup(canon != NULL ? canon : f);
	}
	*flags_r = out;
	*n_r = n;
	return 0;
fail:
	imap_flags_free(out, n);
	return -1;
}

/* --- STORE ------------------------------------------------------------------------ */

static void store_done(struct imap_session *s, enum imap_store_status st,
                       const struct imap_flag_update *v, size_t n)
{
	bool silent = s->store_silent;
	uint32_t *modified;
	size_t nmod = 0;
	bool accounted = true;

	if (st != IMAP_STORE_OK) {
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	modified = xcalloc(n ? n : 1, sizeof(*modified));
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_msgmap_seq(&s->sel.map, v[i].uid);

		if (seq == 0) {
			accounted = false;
			continue;
		}
		if (v[i].failed) {
			modified[nmod++] = s->cmd_uid ? v[i].uid : seq;
			continue;
		}
		imap_sync_keywords(s, v[i].flags, v[i].nflags);
		if (!silent) {
			struct buf b;

			buf_init(&b, 0);
			imap_write_flags(&b, v[i].flags, v[i].nflags);
			imap_printf(s, "* %" PRIu32 " FETCH (", seq);
			if (s->cmd_uid)
				imap_printf(s, "UID %" PRIu32 " ", v[i].uid);
			imap_printf(s, "FLAGS %.*s", (int)buf_len(&b), (const char *)buf_ptr(&b));
			buf_free(&b);
			if (s->enabled & IMAP_EN_CONDSTORE)
				imap_printf(s, " MODSEQ (%" PRIu64 ")", v[i].modseq);
			imap_puts(s, ")\r\n");
		} else if ((s->enabled & IMAP_EN_CONDSTORE) && v[i].modseq > s->sel.modseq) {
			/* RFC 7162 3.1.3: .SILENT still reports the new MODSEQ */
			imap_printf(s, "* %" PRIu32 " FETCH (", seq);
			if (s->cmd_uid)
				imap_printf(s, "UID %" PRIu32 " ", v[i].uid);
			imap_printf(s, "MODSEQ (%" PRIu64 "))\r\n", v[i].modseq);
		}
		imap_sync_reported(s, v[i].uid, v[i].modseq);
	}
	/* our own change is known now: no sync for it */
	imap_sync_own_write(s, accounted);
	if (nmod > 0) {
		struct buf b;

		/* RFC 7162 3.1.3: MODIFIED lists what was not changed */
		buf_init(&b, 0);
		buf_puts(&b, "[MODIFIED ");
		for (size_t i = 0; i < nmod; i++)
			buf_printf(&b, "%s%" PRIu32, i ? "," : "", modified[i]);
		buf_puts(&b, "]");
		buf_append(&b, "", 1);
		imap_cmd_finish(s, "OK", (const char *)buf_ptr(&b), "Conditional STORE failed");
		buf_free(&b);
	} else {
		imap_cmd_finish(s, "OK", NULL, "Store completed");
	}
	free(modified);
}

void imap_cmd_store(struct imap_session *s, const struct imap_command *c, size_t argi)
{
	/* no arguments: args is NULL, and NULL + 0 is undefined */
	const struct imap_arg *a = c->nargs > argi ? c->args + argi : NULL;
	size_t n = c->nargs - argi;
	const struct imap_arg *item, *value;
	enum imap_flags_mode mode;
	uint64_t unchangedsince = 0;
	bool has_unchanged = false, silent = false;
	char **flags = NULL;
	size_t nflags = 0, nuids = 0;
	uint32_t *uids = NULL;
	const char *why, *name;
	size_t i = 1;

	if (n < 3 || a[0].type != IMAP_ARG_ATOM) {
		imap_cmd_bad(s, "STORE needs a set, an item and flags");
		return;
	}
	if (a[1].type == IMAP_ARG_LIST) {
		/* RFC 7162 3.1.3: (UNCHANGEDSINCE n) */
		const struct imap_arg *m = &a[1];
		char *end;

		if (m->nlist != 2 || !imap_arg_atom_is(&m->list[0], "UNCHANGEDSINCE") ||
		    m->list[1].type != IMAP_ARG_ATOM || m->list[1].str[0] == '-') {
			imap_cmd_bad(s, "Invalid STORE modifier");
			return;
		}
		unchangedsince = strtoull(m->list[1].str, &end, 10);
		if (*end != '\0' || m->list[1].str[0] == '\0') {
			imap_cmd_bad(s, "Invalid UNCHANGEDSINCE");
			return;
		}
		has_unchanged = true;
		s->enabled |= IMAP_EN_CONDSTORE;
		i = 2;
	}
	if (n != i + 2 || a[i].type != IMAP_ARG_ATOM) {
		imap_cmd_bad(s, "Invalid STORE arguments");
		return;
	}
	item = &a[i];
	value = &a[i + 1];
	name = item->str;
	if (name[0] == '+') {
		mode = IMAP_FLAGS_ADD;
		name++;
	} else if (name[0] == '-') {
		mode = IMAP_FLAGS_REMOVE;
		name++;
	} else {
		mode = IMAP_FLAGS_SET;
	}
	if (strcasecmp(name, "FLAGS.SILENT") == 0)
		silent = true;
	else if (strcasecmp(name, "FLAGS") != 0) {
		imap_cmd_bad(s, "Invalid STORE item");
		return;
	}
	if (imap_flags_parse(value, false, &flags, &nflags, &why) < 0) {
		imap_cmd_bad(s, why);
		return;
	}
	if (imap_msgmap_resolve(&s->sel.map, a[0].str, s->cmd_uid, &uids, &nuids, &why) < 0) {
		imap_flags_free(flags, nflags);
		imap_cmd_bad(s, why);
		return;
	}
	if (s->sel.readonly) {
		imap_flags_free(flags, nflags);
		free(uids);
		imap_cmd_finish(s, "NO", "[READ-ONLY]", "Mailbox is read-only");
		return;
	}
	if (nuids == 0 || (mode != IMAP_FLAGS_SET && nflags == 0 && !has_unchanged)) {
		imap_flags_free(flags, nflags);
		free(uids);
		imap_cmd_finish(s, "OK", NULL, "Store completed");
		return;
	}
	s->store_silent = silent;
	s->k_store = store_done;
	imap_op_begin(s, IMAP_OP_STORE);
	s->ops->store(s->ctx, uids, nuids, mode, (const char *const *)flags, nflags,
	              has_unchanged ? &unchangedsince : NULL);
	imap_flags_free(flags, nflags);
	free(uids);
}
