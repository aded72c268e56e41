/*
 * tests/unit/imap_fake_store.c -- the in-memory store behind the IMAP
 * session tests (see imap_fake_store.h).
 *
 * Every request builds a struct fake_result (arrays owned by it, strings
 * pointing into the store, which does not change until the result is
 * delivered: the harness delivers before it runs any directive), then
 * either delivers it at once or keeps it.
 */
#include "tests/unit/imap_fake_store.h"

#include "mailbox/imap/search.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum fk {
	FK_AUTH = 0,
	FK_LIST,
	FK_OP,
	FK_STATUS,
	FK_SELECT,
	FK_FETCH,
	FK_READ,
	FK_STORE,
	FK_EXPUNGE,
	FK_COPY,
	FK_APPEND,
	FK_SEARCH,
	FK_CHANGES,
	FK_QUOTA,
};

struct fake_result {
	enum fk kind;
	enum imap_store_status st;
	enum imap_auth_result auth;
	char *account;
	struct imap_mbox_entry *entries;
	size_t nentries;
	struct imap_status_info status;
	struct imap_select_info sel;
	uint32_t *sel_uids;
	const char **sel_kw;
	struct imap_msg_meta *rows;
	size_t nrows;
	const uint8_t *data;
	size_t len;
	struct imap_flag_update *upd;
	size_t nupd;
	uint32_t *u1, *u2;
	size_t n;
	uint32_t uidvalidity;
	uint64_t modseq;
	struct imap_change *changes;
	size_t nchanges;
	uint64_t used, limit;
};

/* --- store ---------------------------------------------------------------------------- */

void fake_store_init(struct fake_store *f)
{
	memset(f, 0, sizeof(*f));
	f->account = -1;
	f->header_column = true;
	f->next_uidvalidity = 1000;
	f->now_ms = 1712000000000ULL; /* 1-Apr-2024 19:33:20 UTC */
}

static void flags_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void msg_free(struct fake_msg *m)
{
	flags_free(m->flags, m->nflags);
	free(m->data);
	free(m->blob);
	mime_result_free(&m->mime);
}

static void mbox_free(struct fake_mbox *m)
{
	for (size_t i = 0; i < m->n; i++)
		msg_free(&m->msgs[i]);
	free(m->msgs);
	free(m->name);
}

static void result_free(struct fake_result *r)
{
	if (r == NULL)
		return;
	free(r->account);
	free(r->entries);
	free(r->sel_uids);
	free(r->sel_kw);
	free(r->rows);
	free(r->upd);
	free(r->u1);
	free(r->u2);
	free(r->changes);
	free(r);
}

void fake_store_free(struct fake_store *f)
{
	for (size_t i = 0; i < f->naccounts; i++) {
		struct fake_account *a = &f->accounts[i];

		for (size_t k = 0; k < a->n; k++)
			mbox_free(&a->mboxes[k]);
		free(a->mboxes);
		free(a->login);
		free(a->password);
	}
	free(f->accounts);
	free(f->selected);
	result_free(f->pending);
	for (size_t i = 0; i < sizeof(f->spools) / sizeof(f->spools[0]); i++) {
		if (f->spools[i] != NULL) {
			buf_free(&f->spools[i]->data);
			free(f->spools[i]);
		}
	}
	memset(f, 0, sizeof(*f));
}

struct fake_account *fake_store_account(struct fake_store *f, const char *login)
{
	for (size_t i = 0; i < f->naccounts; i++)
		if (strcasecmp(f->accounts[i].login, login) == 0)
			return &f->accounts[i];
	return NULL;
}

void fake_store_account_add(struct fake_store *f, const char *login, const char *password,
                            bool master, uint64_t quota)
{
	struct fake_account *a;

	f->accounts = xreallocarray(f->accounts, f->naccounts + 1, sizeof(*f->accounts));
	a = &f->accounts[f->naccounts++];
	memset(a, 0, sizeof(*a));
	a->login = xstrdup(login);
	a->password = xstrdup(password);
	a->master = master;
	a->quota = quota;
	if (!master)
		fake_store_mbox_add(f, a, "INBOX", 0, true);
}

struct fake_mbox *fake_store_mbox(struct fake_account *a, const char *name)
{
	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->mboxes[i].name, name) == 0)
			return &a->mboxes[i];
	return NULL;
}

struct fake_mbox *fake_store_mbox_add(struct fake_store *f, struct fake_account *a,
                                      const char *name, unsigned attrs, bool subscribed)
{
	struct fake_mbox *m;

	a->mboxes = xreallocarray(a->mboxes, a->n + 1, sizeof(*a->mboxes));
	m = &a->mboxes[a->n++];
	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	m->uidvalidity = f->next_uidvalidity++;
	m->uidnext = 1;
	m->modseq = 1;
	m->attrs = attrs;
	m->subscribed = subscribed;
	return m;
}

static int flag_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_flag(char *const *v, size_t n, const char *f)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], f) == 0)
			return true;
	return false;
}

/* Flags kept sorted and distinct, as tp_store_flags does. */
static void flags_set(char ***v, size_t *n, const char *const *in, size_t nin)
{
	char **out = xcalloc(nin ? nin : 1, sizeof(*out));
	size_t k = 0;

	for (size_t i = 0; i < nin; i++)
		if (!has_flag(out, k, in[i]))
			out[k++] = xstrdup(in[i]);
	qsort(out, k, sizeof(*out), flag_cmp);
	flags_free(*v, *n);
	*v = out;
	*n = k;
}

static void flags_parse_list(const char *list, char ***v, size_t *n)
{
	char *copy, *tok, *save = NULL;
	const char *tmp[64] = {0};
	size_t k = 0;

	*v = NULL;
	*n = 0;
	if (list == NULL || list[0] == '\0') {
		flags_set(v, n, tmp, 0);
		return;
	}
	copy = xstrdup(list);
	for (tok = strtok_r(copy, ",", &save); tok != NULL && k < 64;
	     tok = strtok_r(NULL, ",", &save))
		tmp[k++] = tok;
	flags_set(v, n, tmp, k);
	free(copy);
}

struct fake_msg *fake_store_msg_add(struct fake_store *f, struct fake_mbox *m, const char *data,
                                    size_t len, const char *flags, int64_t internaldate)
{
	struct fake_msg *msg;

	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 8;
		m->msgs = xreallocarray(m->msgs, m->cap, sizeof(*m->msgs));
	}
	msg = &m->msgs[m->n++];
	memset(msg, 0, sizeof(*msg));
	msg->uid = m->uidnext++;
	msg->modseq = ++m->modseq;
	flags_parse_list(flags, &msg->flags, &msg->nflags);
	msg->internaldate = internaldate;
	msg->data = xmemdup(data, len + 1);
	msg->data[len] = '\0';
	msg->size = len;
	msg->mime = mime_parse(data, len, NULL);
	msg->blob = xasprintf("%s/%u", m->name, (unsigned)msg->uid);
	return msg;
}

static struct fake_msg *msg_find(struct fake_mbox *m, uint32_t uid)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->msgs[i].uid == uid)
			return &m->msgs[i];
	return NULL;
}

void fake_store_other_flags(struct fake_store *f, struct fake_mbox *m, uint32_t uid,
                            const char *flags)
{
	struct fake_msg *msg = msg_find(m, uid);

	if (msg == NULL || msg->expunged)
		return;
	flags_free(msg->flags, msg->nflags);
	flags_parse_list(flags, &msg->flags, &msg->nflags);
	msg->modseq = ++m->modseq;
}

void fake_store_other_expunge(struct fake_store *f, struct fake_mbox *m, uint32_t uid)
{
	struct fake_msg *msg = msg_find(m, uid);

	if (msg == NULL || msg->expunged)
		return;
	msg->expunged = true;
	msg->modseq = ++m->modseq;
}

/* --- requests ---------------------------------------------------------------------------- */

static struct fake_account *me(struct fake_store *f)
{
	return f->account >= 0 ? &f->accounts[f->account] : NULL;
}

static struct fake_mbox *selected(struct fake_store *f)
{
	return f->selected != NULL ? fake_store_mbox(me(f), f->selected) : NULL;
}

static struct fake_result *result_new(struct fake_store *f, enum fk kind, const char *opname)
{
	struct fake_result *r = xcalloc(1, sizeof(*r));

	r->kind = kind;
	r->st = IMAP_STORE_OK;
	f->requests++;
	if (f->fail_op[0] != '\0' && strcmp(f->fail_op, opname) == 0) {
		r->st = (enum imap_store_status)f->fail_st;
		f->fail_op[0] = '\0';
	}
	return r;
}

static void deliver(struct fake_store *f, struct fake_result *r)
{
	struct imap_session *s = f->s;

	switch (r->kind) {
	case FK_AUTH:
		imap_session_auth_done(s, r->auth, r->account);
		break;
	case FK_LIST:
		imap_session_list_done(s, r->st, r->entries, r->nentries);
		break;
	case FK_OP:
		imap_session_op_done(s, r->st);
		break;
	case FK_STATUS:
		imap_session_status_done(s, r->st, &r->status);
		break;
	case FK_SELECT:
		imap_session_select_done(s, r->st, &r->sel);
		break;
	case FK_FETCH:
		imap_session_fetch_done(s, r->st, r->rows, r->nrows);
		break;
	case FK_READ:
		imap_session_read_done(s, r->st, r->data, r->len);
		break;
	case FK_STORE:
		imap_session_store_done(s, r->st, r->upd, r->nupd);
		break;
	case FK_EXPUNGE:
		imap_session_expunge_done(s, r->st, r->u1, r->n, r->modseq);
		break;
	case FK_COPY:
		imap_session_copy_done(s, r->st, r->uidvalidity, r->u1, r->u2, r->n);
		break;
	case FK_APPEND:
		imap_session_append_done(s, r->st, r->uidvalidity, r->u1, r->n);
		break;
	case FK_SEARCH:
		imap_session_search_done(s, r->st, r->u1, r->n, r->modseq);
		break;
	case FK_CHANGES:
		imap_session_changes_done(s, r->st, r->changes, r->nchanges, r->modseq,
		                          r->uidvalidity);
		break;
	case FK_QUOTA:
		imap_session_quota_done(s, r->st, r->used, r->limit);
		break;
	}
	result_free(r);
}

static void answer(struct fake_store *f, struct fake_result *r)
{
	if (f->pending != NULL) {
		fprintf(stderr, "fake store: a second request while one is outstanding\n");
		abort();
	}
	if (f->deferred || f->hold) {
		f->pending = r;
		return;
	}
	deliver(f, r);
}

bool fake_store_deliver(struct fake_store *f)
{
	struct fake_result *r = f->pending;

	if (r == NULL || f->hold)
		return false;
	f->pending = NULL;
	deliver(f, r);
	return true;
}

bool fake_store_pending(const struct fake_store *f)
{
	return f->pending != NULL;
}

void fake_store_cancel(struct fake_store *f)
{
	result_free(f->pending);
	f->pending = NULL;
}

/* --- ops ---------------------------------------------------------------------------------- */

static void op_auth(void *ctx, const char *authzid, const char *authcid, const char *password)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_AUTH, "auth");
	struct fake_account *a = fake_store_account(f, authcid);

	r->auth = IMAP_AUTH_FAIL;
	if (r->st == IMAP_STORE_TEMPFAIL) {
		r->auth = IMAP_AUTH_TEMPFAIL;
	} else if (r->st == IMAP_STORE_LIMIT) {
		/* "# fail auth limit": good credentials, too many sessions */
		r->auth = IMAP_AUTH_LIMIT;
	} else if (a != NULL && strcmp(a->password, password) == 0) {
		if (authzid[0] == '\0' && !a->master) {
			r->auth = IMAP_AUTH_OK;
			f->account = (int)(a - f->accounts);
		} else if (authzid[0] != '\0' && a->master) {
			struct fake_account *u = fake_store_account(f, authzid);

			if (u != NULL && !u->master) {
				r->auth = IMAP_AUTH_OK;
				f->account = (int)(u - f->accounts);
			}
		}
	}
	if (r->auth == IMAP_AUTH_OK)
		r->account = xstrdup(f->accounts[f->account].login);
	answer(f, r);
}

static void op_list(void *ctx)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_LIST, "list");
	struct fake_account *a = me(f);

	r->entries = xcalloc(a->n ? a->n : 1, sizeof(*r->entries));
	for (size_t i = 0; i < a->n; i++) {
		r->entries[i].name = a->mboxes[i].name;
		r->entries[i].attrs = a->mboxes[i].attrs;
		r->entries[i].subscribed = a->mboxes[i].subscribed;
	}
	r->nentries = a->n;
	answer(f, r);
}

static void op_create(void *ctx, const char *name, unsigned special)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_OP, "create");

	if (r->st == IMAP_STORE_OK) {
		if (fake_store_mbox(me(f), name) != NULL)
			r->st = IMAP_STORE_EXISTS;
		else
			fake_store_mbox_add(f, me(f), name, special, false);
	}
	answer(f, r);
}

static void op_delete(void *ctx, const char *name)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_OP, "delete");
	struct fake_account *a = me(f);
	struct fake_mbox *m = fake_store_mbox(a, name);

	if (r->st == IMAP_STORE_OK) {
		if (m == NULL) {
			r->st = IMAP_STORE_NONEXISTENT;
		} else {
			size_t i = (size_t)(m - a->mboxes);

			mbox_free(m);
			memmove(a->mboxes + i, a->mboxes + i + 1,
			        (a->n - i - 1) * sizeof(*a->mboxes));
			a->n--;
		}
	}
	answer(f, r);
}

static void op_rename(void *ctx, const char *from, const char *to)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_OP, "rename");
	struct fake_account *a = me(f);
	struct fake_mbox *m = fake_store_mbox(a, from);
	size_t fl = strlen(from);

	if (r->st != IMAP_STORE_OK)
		goto out;
	if (m == NULL) {
		r->st = IMAP_STORE_NONEXISTENT;
		goto out;
	}
	if (fake_store_mbox(a, to) != NULL) {
		r->st = IMAP_STORE_EXISTS;
		goto out;
	}
	if (strcmp(from, "INBOX") == 0) {
		/* RFC 3501 6.3.5: the messages move, INBOX stays */
		struct fake_mbox *dst = fake_store_mbox_add(f, a, to, 0, false);

		m = fake_store_mbox(a, "INBOX");
		for (size_t i = 0; i < m->n; i++) {
			if (m->msgs[i].expunged)
				continue;
			fake_store_msg_add(f, dst, m->msgs[i].data, m->msgs[i].size, NULL,
			                   m->msgs[i].internaldate);
			m->msgs[i].expunged = true;
			m->msgs[i].modseq = ++m->modseq;
		}
		goto out;
	}
	for (size_t i = 0; i < a->n; i++) {
		char *n = a->mboxes[i].name;

		if (strncmp(n, from, fl) == 0 && (n[fl] == '\0' || n[fl] == '/')) {
			a->mboxes[i].name = xasprintf("%s%s", to, n + fl);
			if (f->selected != NULL && strcmp(f->selected, n) == 0) {
				free(f->selected);
				f->selected = xstrdup(a->mboxes[i].name);
			}
			free(n);
		}
	}
out:
	answer(f, r);
}

static void op_subscribe(void *ctx, const char *name, bool on)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_OP, "subscribe");
	struct fake_mbox *m = fake_store_mbox(me(f), name);

	if (r->st == IMAP_STORE_OK) {
		if (m == NULL)
			r->st = IMAP_STORE_NONEXISTENT;
		else
			m->subscribed = on;
	}
	answer(f, r);
}

static void op_status(void *ctx, const char *name)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_STATUS, "status");
	struct fake_mbox *m = fake_store_mbox(me(f), name);

	if (r->st == IMAP_STORE_OK && m == NULL)
		r->st = IMAP_STORE_NONEXISTENT;
	if (r->st == IMAP_STORE_OK) {
		r->status.uidnext = m->uidnext;
		r->status.uidvalidity = m->uidvalidity;
		r->status.highestmodseq = m->modseq;
		for (size_t i = 0; i < m->n; i++) {
			const struct fake_msg *x = &m->msgs[i];

			if (x->expunged)
				continue;
			r->status.messages++;
			r->status.size += x->size;
			if (!has_flag(x->flags, x->nflags, "\\Seen"))
				r->status.unseen++;
			if (has_flag(x->flags, x->nflags, "\\Deleted"))
				r->status.deleted++;
		}
	}
	answer(f, r);
}

static void op_select(void *ctx, const char *name, bool readonly)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_SELECT, "select");
	struct fake_mbox *m = fake_store_mbox(me(f), name);
	size_t nkw = 0;

	if (r->st == IMAP_STORE_OK && m == NULL)
		r->st = IMAP_STORE_NONEXISTENT;
	if (r->st == IMAP_STORE_OK) {
		free(f->selected);
		f->selected = xstrdup(name);
		r->sel.uidvalidity = m->uidvalidity;
		r->sel.uidnext = m->uidnext;
		r->sel.highestmodseq = m->modseq;
		r->sel_uids = xcalloc(m->n ? m->n : 1, sizeof(*r->sel_uids));
		r->sel_kw = xcalloc(64, sizeof(*r->sel_kw));
		for (size_t i = 0; i < m->n; i++) {
			const struct fake_msg *x = &m->msgs[i];

			if (x->expunged)
				continue;
			r->sel_uids[r->sel.nuids++] = x->uid;
			if (r->sel.first_unseen_uid == 0 &&
			    !has_flag(x->flags, x->nflags, "\\Seen"))
				r->sel.first_unseen_uid = x->uid;
			for (size_t k = 0; k < x->nflags; k++) {
				bool dup = false;

				if (x->flags[k][0] == '\\')
					continue;
				for (size_t j = 0; j < nkw; j++)
					dup = dup || strcmp(r->sel_kw[j], x->flags[k]) == 0;
				if (!dup && nkw < 64)
					r->sel_kw[nkw++] = x->flags[k];
			}
		}
		r->sel.uids = r->sel_uids;
		r->sel.keywords = r->sel_kw;
		r->sel.nkeywords = nkw;
	}
	answer(f, r);
}

static void op_unselect(void *ctx)
{
	struct fake_store *f = ctx;

	free(f->selected);
	f->selected = NULL;
}

static void op_fetch(void *ctx, const uint32_t *uids, size_t n, unsigned want)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_FETCH, "fetch");
	struct fake_mbox *m = selected(f);

	r->rows = xcalloc(n ? n : 1, sizeof(*r->rows));
	for (size_t i = 0; r->st == IMAP_STORE_OK && i < n; i++) {
		struct fake_msg *x = msg_find(m, uids[i]);
		struct imap_msg_meta *row;

		if (x == NULL || x->expunged)
			continue;
		row = &r->rows[r->nrows++];
		row->uid = x->uid;
		row->modseq = x->modseq;
		row->flags = (const char *const *)x->flags;
		row->nflags = x->nflags;
		row->internaldate = x->internaldate;
		row->internaldate_tz = 0;
		row->size = x->size;
		row->envelope = x->mime->envelope;
		row->bodystructure = x->mime->bodystructure;
		row->body = x->mime->body;
		row->parts = x->mime->parts;
		row->nparts = x->mime->nparts;
		row->blob = x->blob;
		if (f->header_column && (want & IMAP_META_HEADER)) {
			for (size_t k = 0; k < x->mime->nparts; k++) {
				if (x->mime->parts[k].section[0] == '\0') {
					row->header = x->data;
					row->header_len = (size_t)x->mime->parts[k].msg_body_start;
				}
			}
		}
	}
	answer(f, r);
}

/* Whether a poll may skip the changes request: as the directive says. */
static bool op_changes_known(void *ctx)
{
	struct fake_store *f = ctx;

	return f->changes_known;
}

/* The metadata every row of op_fetch carries, when meta_cached is on: the
 * messages' own (a real store answers from a cache of earlier fetches). */
static bool op_fetch_cached(void *ctx, const uint32_t *uids, size_t n, unsigned want,
                            struct imap_msg_meta *rows)
{
	struct fake_store *f = ctx;
	struct fake_mbox *m = selected(f);

	(void)want;
	if (!f->meta_cached || m == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		struct fake_msg *x = msg_find(m, uids[i]);

		if (x == NULL)
			return false;
		rows[i].internaldate = x->internaldate;
		rows[i].size = x->size;
		rows[i].envelope = x->mime->envelope;
		rows[i].bodystructure = x->mime->bodystructure;
		rows[i].body = x->mime->body;
		rows[i].parts = x->mime->parts;
		rows[i].nparts = x->mime->nparts;
		rows[i].blob = x->blob;
	}
	f->cached_answers++;
	return true;
}

static void op_read(void *ctx, uint32_t uid, const char *blob, uint64_t offset, uint64_t len)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_READ, "read");
	struct fake_msg *x = msg_find(selected(f), uid);

	if (r->st == IMAP_STORE_OK && (x == NULL || strcmp(blob, x->blob) != 0))
		r->st = IMAP_STORE_FAIL;
	if (r->st == IMAP_STORE_OK) {
		if (offset > x->size)
			offset = x->size;
		if (len > x->size - offset)
			len = x->size - offset;
		r->data = (const uint8_t *)x->data + offset;
		r->len = (size_t)len;
	}
	answer(f, r);
}

static void op_store(void *ctx, const uint32_t *uids, size_t n, enum imap_flags_mode mode,
                     const char *const *flags, size_t nflags, const uint64_t *unchangedsince)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_STORE, "store");
	struct fake_mbox *m = selected(f);

	r->upd = xcalloc(n ? n : 1, sizeof(*r->upd));
	for (size_t i = 0; r->st == IMAP_STORE_OK && i < n; i++) {
		struct fake_msg *x = msg_find(m, uids[i]);
		struct imap_flag_update *u;
		const char *next[160];
		size_t k = 0;
		bool same;

		if (x == NULL || x->expunged)
			continue;
		u = &r->upd[r->nupd++];
		u->uid = x->uid;
		if (unchangedsince != NULL && x->modseq > *unchangedsince) {
			u->failed = true;
		} else {
			if (mode == IMAP_FLAGS_SET) {
				for (size_t j = 0; j < nflags && k < 160; j++)
					next[k++] = flags[j];
			} else if (mode == IMAP_FLAGS_ADD) {
				for (size_t j = 0; j < x->nflags && k < 160; j++)
					next[k++] = x->flags[j];
				for (size_t j = 0; j < nflags && k < 160; j++)
					next[k++] = flags[j];
			} else {
				for (size_t j = 0; j < x->nflags && k < 160; j++) {
					bool drop = false;

					for (size_t q = 0; q < nflags; q++)
						drop = drop || strcmp(x->flags[j], flags[q]) == 0;
					if (!drop)
						next[k++] = x->flags[j];
				}
			}
			{
				char **nv = NULL;
				size_t nn = 0;

				flags_set(&nv, &nn, next, k);
				same = nn == x->nflags;
				for (size_t j = 0; same && j < nn; j++)
					same = strcmp(nv[j], x->flags[j]) == 0;
				if (same) {
					flags_free(nv, nn);
				} else {
					flags_free(x->flags, x->nflags);
					x->flags = nv;
					x->nflags = nn;
					x->modseq = ++m->modseq;
				}
			}
		}
		u->modseq = x->modseq;
		u->flags = (const char *const *)x->flags;
		u->nflags = x->nflags;
	}
	answer(f, r);
}

static void op_expunge(void *ctx, const uint32_t *uids, size_t n)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_EXPUNGE, "expunge");
	struct fake_mbox *m = selected(f);

	if (r->st == IMAP_STORE_OK) {
		uint64_t modseq = ++m->modseq;

		r->u1 = xcalloc(m->n ? m->n : 1, sizeof(*r->u1));
		for (size_t i = 0; i < m->n; i++) {
			struct fake_msg *x = &m->msgs[i];
			bool in = uids == NULL;

			for (size_t k = 0; !in && k < n; k++)
				in = uids[k] == x->uid;
			if (!in || x->expunged || !has_flag(x->flags, x->nflags, "\\Deleted"))
				continue;
			x->expunged = true;
			x->modseq = modseq;
			r->u1[r->n++] = x->uid;
		}
		r->modseq = m->modseq;
	}
	answer(f, r);
}

static uint64_t account_used(struct fake_account *a)
{
	uint64_t used = 0;

	for (size_t i = 0; i < a->n; i++)
		for (size_t k = 0; k < a->mboxes[i].n; k++)
			if (!a->mboxes[i].msgs[k].expunged)
				used += a->mboxes[i].msgs[k].size;
	return used;
}

static void op_copy(void *ctx, const uint32_t *uids, size_t n, const char *dst, bool move)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_COPY, move ? "move" : "copy");
	struct fake_mbox *src = selected(f), *d = fake_store_mbox(me(f), dst);
	uint64_t add = 0;

	if (r->st == IMAP_STORE_OK && d == NULL)
		r->st = IMAP_STORE_NONEXISTENT;
	if (r->st != IMAP_STORE_OK)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct fake_msg *x = msg_find(src, uids[i]);

		if (x != NULL && !x->expunged)
			add += x->size;
	}
	if (!move && me(f)->quota > 0 && account_used(me(f)) + add > me(f)->quota) {
		r->st = IMAP_STORE_OVERQUOTA;
		goto out;
	}
	r->u1 = xcalloc(n ? n : 1, sizeof(*r->u1));
	r->u2 = xcalloc(n ? n : 1, sizeof(*r->u2));
	r->uidvalidity = d->uidvalidity;
	for (size_t i = 0; i < n; i++) {
		struct fake_msg *x;
		struct fake_msg *y;
		size_t xi;

		x = msg_find(src, uids[i]);
		if (x == NULL || x->expunged)
			continue;
		xi = (size_t)(x - src->msgs);
		/* msgs may move when d == src grows */
		y = fake_store_msg_add(f, d, src->msgs[xi].data, src->msgs[xi].size, NULL,
		                       src->msgs[xi].internaldate);
		x = &src->msgs[xi];
		{
			const char *tmp[160];
			size_t k = 0;

			for (size_t j = 0; j < x->nflags && k < 160; j++)
				tmp[k++] = x->flags[j];
			flags_set(&y->flags, &y->nflags, tmp, k);
		}
		r->u1[r->n] = x->uid;
		r->u2[r->n] = y->uid;
		r->n++;
	}
	if (move) {
		uint64_t modseq = ++src->modseq;

		for (size_t i = 0; i < r->n; i++) {
			struct fake_msg *x = msg_find(src, r->u1[i]);

			x->expunged = true;
			x->modseq = modseq;
		}
	}
out:
	answer(f, r);
}

static void *op_spool_open(void *ctx)
{
	struct fake_store *f = ctx;

	for (size_t i = 0; i < sizeof(f->spools) / sizeof(f->spools[0]); i++) {
		if (f->spools[i] == NULL) {
			f->spools[i] = xcalloc(1, sizeof(*f->spools[i]));
			buf_init(&f->spools[i]->data, 0);
			f->nspools_open++;
			return f->spools[i];
		}
	}
	return NULL;
}

static void spool_close(struct fake_store *f, struct fake_spool *sp)
{
	for (size_t i = 0; i < sizeof(f->spools) / sizeof(f->spools[0]); i++) {
		if (f->spools[i] == sp) {
			buf_free(&sp->data);
			free(sp);
			f->spools[i] = NULL;
			f->nspools_open--;
			return;
		}
	}
	fprintf(stderr, "fake store: unknown spool\n");
	abort();
}

static int op_spool_write(void *ctx, void *spool, const uint8_t *p, size_t n)
{
	struct fake_store *f = ctx;
	struct fake_spool *sp = spool;

	if (f->spool_write_fail)
		return -1;
	buf_append(&sp->data, p, n);
	return 0;
}

static void op_spool_abort(void *ctx, void *spool)
{
	spool_close(ctx, spool);
}

static void op_append(void *ctx, const char *mailbox, const struct imap_append_msg *v, size_t n)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_APPEND, "append");
	struct fake_mbox *m = fake_store_mbox(me(f), mailbox);
	uint64_t add = 0;

	if (r->st == IMAP_STORE_OK && m == NULL)
		r->st = IMAP_STORE_NONEXISTENT;
	for (size_t i = 0; i < n; i++) {
		struct fake_spool *sp = v[i].spool;

		if (buf_len(&sp->data) != v[i].size) {
			fprintf(stderr, "fake store: spool holds %zu octets, append says %llu\n",
			        buf_len(&sp->data), (unsigned long long)v[i].size);
			abort();
		}
		add += v[i].size;
	}
	if (r->st == IMAP_STORE_OK && me(f)->quota > 0 && account_used(me(f)) + add > me(f)->quota)
		r->st = IMAP_STORE_OVERQUOTA;
	if (r->st == IMAP_STORE_OK) {
		r->u1 = xcalloc(n, sizeof(*r->u1));
		r->uidvalidity = m->uidvalidity;
		for (size_t i = 0; i < n; i++) {
			struct fake_spool *sp = v[i].spool;
			struct fake_msg *x;
			const char *tmp[160];
			size_t k = 0;

			x = fake_store_msg_add(
			        f, m, (const char *)buf_ptr(&sp->data), buf_len(&sp->data), NULL,
			        v[i].has_date ? v[i].date : (int64_t)(f->now_ms / 1000));
			for (size_t j = 0; j < v[i].nflags && k < 160; j++)
				tmp[k++] = v[i].flags[j];
			flags_set(&x->flags, &x->nflags, tmp, k);
			r->u1[r->n++] = x->uid;
		}
	}
	for (size_t i = 0; i < n; i++)
		spool_close(f, v[i].spool);
	answer(f, r);
}

/* --- search --------------------------------------------------------------------------------- */

static bool contains_ci(const char *hay, const char *needle)
{
	size_t hn, nn = strlen(needle);

	if (hay == NULL)
		return false;
	hn = strlen(hay);
	for (size_t i = 0; i + nn <= hn; i++) {
		size_t k = 0;

		while (k < nn &&
		       tolower((unsigned char)hay[i + k]) == tolower((unsigned char)needle[k]))
			k++;
		if (k == nn)
			return true;
	}
	return false;
}

/* HEADER on a field without its own column: "Name: value" lines of the
 * search header text, as the SQL's anchored regular expression. */
static bool header_line_match(const char *text, const char *field, const char *value)
{
	size_t fl = strlen(field);
	const char *p = text;

	while (p != NULL && *p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > fl && strncasecmp(p, field, fl) == 0) {
			size_t k = fl;

			while (k < len && (p[k] == ' ' || p[k] == '\t'))
				k++;
			if (k < len && p[k] == ':') {
				char *rest = xstrndup(p + k + 1, len - k - 1);
				bool hit = contains_ci(rest, value);

				free(rest);
				if (hit)
					return true;
			}
		}
		p = eol ? eol + 1 : NULL;
	}
	return false;
}

static bool eval(const struct imap_search_key *k, const struct fake_msg *x)
{
	const struct mime_result *mr = x->mime;
	int64_t sent = mr->has_date ? mr->date : x->internaldate;

	switch (k->type) {
	case IMAP_SK_ALL:
		return true;
	case IMAP_SK_NONE:
		return false;
	case IMAP_SK_AND:
		for (size_t i = 0; i < k->nkids; i++)
			if (!eval(&k->kids[i], x))
				return false;
		return true;
	case IMAP_SK_OR:
		return eval(&k->kids[0], x) || eval(&k->kids[1], x);
	case IMAP_SK_NOT:
		return !eval(&k->kids[0], x);
	case IMAP_SK_UID:
		for (size_t i = 0; i < k->nranges; i++)
			if (x->uid >= k->ranges[i].lo && x->uid <= k->ranges[i].hi)
				return true;
		return false;
	case IMAP_SK_FLAG:
		return has_flag(x->flags, x->nflags, k->str);
	case IMAP_SK_BEFORE:
		return x->internaldate < (int64_t)k->num;
	case IMAP_SK_ON:
		return x->internaldate >= (int64_t)k->num &&
		       x->internaldate < (int64_t)k->num + 86400;
	case IMAP_SK_SINCE:
		return x->internaldate >= (int64_t)k->num;
	case IMAP_SK_SENTBEFORE:
		return sent < (int64_t)k->num;
	case IMAP_SK_SENTON:
		return sent >= (int64_t)k->num && sent < (int64_t)k->num + 86400;
	case IMAP_SK_SENTSINCE:
		return sent >= (int64_t)k->num;
	case IMAP_SK_LARGER:
		return x->size > k->num;
	case IMAP_SK_SMALLER:
		return x->size < k->num;
	case IMAP_SK_MODSEQ:
		return x->modseq >= k->num;
	case IMAP_SK_HEADER: {
		const char *col = NULL;
		bool has_col = true;

		if (strcmp(k->field, "from") == 0)
			col = mr->from;
		else if (strcmp(k->field, "to") == 0)
			col = mr->to;
		else if (strcmp(k->field, "cc") == 0)
			col = mr->cc;
		else if (strcmp(k->field, "subject") == 0)
			col = mr->subject;
		else if (strcmp(k->field, "message-id") == 0)
			col = mr->message_id;
		else
			has_col = false;
		if (has_col)
			return col != NULL && (k->str[0] == '\0' || contains_ci(col, k->str));
		return header_line_match(mr->search_header, k->field, k->str);
	}
	case IMAP_SK_BODY:
		return k->str[0] == '\0' || contains_ci(mr->search_body, k->str);
	case IMAP_SK_TEXT:
		return k->str[0] == '\0' || contains_ci(mr->search_header, k->str) ||
		       contains_ci(mr->search_body, k->str);
	}
	return false;
}

/* RFC 5256 base subject, the same approximation as search_sql.c. */
static char *base_subject(const char *s)
{
	char *out = xstrdup(s != NULL ? s : "");
	char *p = out;
	bool again = true;
	size_t len;

	while (again) {
		again = false;
		while (isspace((unsigned char)*p))
			p++;
		if (strncasecmp(p, "re", 2) == 0 || strncasecmp(p, "fw", 2) == 0) {
			char *q = p + 2;

			if (strncasecmp(p, "fwd", 3) == 0)
				q = p + 3;
			while (isspace((unsigned char)*q))
				q++;
			if (*q == '[') {
				char *e = strchr(q, ']');

				if (e != NULL)
					q = e + 1;
				while (isspace((unsigned char)*q))
					q++;
			}
			if (*q == ':') {
				p = q + 1;
				again = true;
				continue;
			}
		}
		if (*p == '[') {
			char *e = strchr(p, ']');

			if (e != NULL) {
				p = e + 1;
				again = true;
			}
		}
	}
	memmove(out, p, strlen(p) + 1);
	/* white space runs to one space */
	{
		char *w = out;

		for (char *r = out; *r; r++) {
			if (isspace((unsigned char)*r)) {
				if (w > out && w[-1] == ' ')
					continue;
				*w++ = ' ';
			} else {
				*w++ = *r;
			}
		}
		*w = '\0';
	}
	len = strlen(out);
	while (len > 0 && isspace((unsigned char)out[len - 1]))
		out[--len] = '\0';
	if (len >= 5 && strcasecmp(out + len - 5, "(fwd)") == 0) {
		out[len - 5] = '\0';
		len -= 5;
		while (len > 0 && isspace((unsigned char)out[len - 1]))
			out[--len] = '\0';
	}
	for (p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

static char *addr_key(const char *addr)
{
	const char *at;
	const char *start;

	if (addr == NULL || (at = strchr(addr, '@')) == NULL)
		return xstrdup("");
	start = at;
	while (start > addr && !strchr("<> \t,\"", start[-1]))
		start--;
	{
		char *k = xstrndup(start, (size_t)(at - start));

		for (char *p = k; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		return k;
	}
}

static const struct imap_sort_key *sort_keys;
static size_t nsort_keys;

static int sort_cmp(const void *a, const void *b)
{
	const struct fake_msg *x = *(const struct fake_msg *const *)a;
	const struct fake_msg *y = *(const struct fake_msg *const *)b;

	for (size_t i = 0; i < nsort_keys; i++) {
		int c = 0;
		char *sx = NULL, *sy = NULL;

		switch (sort_keys[i].type) {
		case IMAP_SORT_ARRIVAL:
			c = x->internaldate < y->internaldate ? -1
			                                      : x->internaldate > y->internaldate;
			break;
		case IMAP_SORT_DATE: {
			int64_t dx = x->mime->has_date ? x->mime->date : x->internaldate;
			int64_t dy = y->mime->has_date ? y->mime->date : y->internaldate;

			c = dx < dy ? -1 : dx > dy;
			break;
		}
		case IMAP_SORT_SIZE:
			c = x->size < y->size ? -1 : x->size > y->size;
			break;
		case IMAP_SORT_SUBJECT:
			sx = base_subject(x->mime->subject);
			sy = base_subject(y->mime->subject);
			break;
		case IMAP_SORT_FROM:
			sx = addr_key(x->mime->from);
			sy = addr_key(y->mime->from);
			break;
		case IMAP_SORT_TO:
			sx = addr_key(x->mime->to);
			sy = addr_key(y->mime->to);
			break;
		case IMAP_SORT_CC:
			sx = addr_key(x->mime->cc);
			sy = addr_key(y->mime->cc);
			break;
		}
		if (sx != NULL) {
			c = strcmp(sx, sy);
			free(sx);
			free(sy);
		}
		if (sort_keys[i].reverse)
			c = -c;
		if (c != 0)
			return c;
	}
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static void op_search(void *ctx, const struct imap_search_query *q)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_SEARCH, "search");
	struct fake_mbox *m = selected(f);
	const struct fake_msg **hits;
	size_t nhits = 0;

	if (r->st != IMAP_STORE_OK) {
		answer(f, r);
		return;
	}
	hits = xcalloc(m->n ? m->n : 1, sizeof(*hits));
	for (size_t i = 0; i < m->n; i++)
		if (!m->msgs[i].expunged && eval(q->key, &m->msgs[i]))
			hits[nhits++] = &m->msgs[i];
	if (q->nsort > 0) {
		sort_keys = q->sort;
		nsort_keys = q->nsort;
		qsort(hits, nhits, sizeof(*hits), sort_cmp);
	}
	r->u1 = xcalloc(nhits ? nhits : 1, sizeof(*r->u1));
	for (size_t i = 0; i < nhits; i++) {
		r->u1[r->n++] = hits[i]->uid;
		if (hits[i]->modseq > r->modseq)
			r->modseq = hits[i]->modseq;
	}
	free(hits);
	answer(f, r);
}

static void op_changes(void *ctx, uint64_t since)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_CHANGES, "changes");
	struct fake_mbox *m = selected(f);

	if (r->st == IMAP_STORE_OK && m == NULL)
		r->st = IMAP_STORE_NONEXISTENT;
	if (r->st == IMAP_STORE_OK) {
		r->changes = xcalloc(m->n ? m->n : 1, sizeof(*r->changes));
		/* newest first, to check that the session sorts */
		for (size_t i = m->n; i-- > 0;) {
			const struct fake_msg *x = &m->msgs[i];
			struct imap_change *c;

			if (x->modseq <= since)
				continue;
			c = &r->changes[r->nchanges++];
			c->uid = x->uid;
			c->modseq = x->modseq;
			c->flags = (const char *const *)x->flags;
			c->nflags = x->nflags;
			c->expunged = x->expunged;
		}
		r->modseq = m->modseq;
		r->uidvalidity = m->uidvalidity;
	}
	answer(f, r);
}

static void op_quota(void *ctx)
{
	struct fake_store *f = ctx;
	struct fake_result *r = result_new(f, FK_QUOTA, "quota");

	r->used = account_used(me(f));
	r->limit = me(f)->quota;
	answer(f, r);
}

static int op_starttls(void *ctx)
{
	struct fake_store *f = ctx;

	if (f->starttls_fail) {
		f->starttls_fail = false;
		return -1;
	}
	f->tls_started = true;
	return 0;
}

static void op_abuse(void *ctx, enum imap_abuse kind)
{
	struct fake_store *f = ctx;
	static const char *const names[] = {"auth_failed", "too_many_errors", "rate"};
	size_t len = strlen(f->abuse_log);

	snprintf(f->abuse_log + len, sizeof(f->abuse_log) - len, "%s%s", len ? "," : "",
	         names[kind]);
}

static uint64_t op_now_ms(void *ctx)
{
	return ((struct fake_store *)ctx)->now_ms;
}

static void op_throttle(void *ctx, uint64_t ms)
{
	((struct fake_store *)ctx)->throttled_for = ms;
}

static void op_client_id(void *ctx, const char *const *kv, size_t n)
{
	struct fake_store *f = ctx;
	size_t len = 0;

	f->id_log[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		snprintf(f->id_log + len, sizeof(f->id_log) - len, "%s%s", i ? "," : "",
		         kv[i] != NULL ? kv[i] : "NIL");
		len = strlen(f->id_log);
	}
}

static const struct imap_store_ops ops = {
        .auth = op_auth,
        .list = op_list,
        .create = op_create,
        .delete_mailbox = op_delete,
        .rename = op_rename,
        .subscribe = op_subscribe,
        .status = op_status,
        .select = op_select,
        .unselect = op_unselect,
        .fetch = op_fetch,
        .fetch_cached = op_fetch_cached,
        .changes_known = op_changes_known,
        .read = op_read,
        .store = op_store,
        .expunge = op_expunge,
        .copy = op_copy,
        .spool_open = op_spool_open,
        .spool_write = op_spool_write,
        .spool_abort = op_spool_abort,
        .append = op_append,
        .search = op_search,
        .changes = op_changes,
        .quota = op_quota,
        .starttls = op_starttls,
        .abuse = op_abuse,
        .now_ms = op_now_ms,
        .throttle = op_throttle,
        .client_id = op_client_id,
};

const struct imap_store_ops *fake_store_ops(void)
{
	return &ops;
}
