/*
 * mailbox/imap/mailboxes.c -- the mailbox commands: LIST (with
 * LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, CHILDREN), LSUB, STATUS,
 * CREATE (with CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE.
 *
 * LIST asks the store once for every mailbox of the account and does
 * the rest here: the hierarchy is completed with parents that do not
 * exist as mailboxes (shown \Noselect, or \NonExistent under the
 * extended syntax, RFC 5258 3), children are found by sorting, patterns
 * are matched in the client's encoding (listmatch.c), and LIST-STATUS
 * (RFC 5819) issues one status request per selectable match, in order,
 * after its LIST line.  The hierarchy delimiter is "/"; one personal
 * namespace with an empty prefix (NAMESPACE in session.c).
 */
#include "mailbox/imap/listmatch.h"
#include "mailbox/imap/mutf7.h"
#include "mailbox/imap/session_private.h"
#include "mailbox/imap/string.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum status_item {
	SI_MESSAGES = 0,
	SI_RECENT,
	SI_UIDNEXT,
	SI_UIDVALIDITY,
	SI_UNSEEN,
	SI_HIGHESTMODSEQ,
	SI_SIZE,
	SI_DELETED,
	SI_COUNT,
};

static const char *const status_names[SI_COUNT] = {
        "MESSAGES", "RECENT",        "UIDNEXT", "UIDVALIDITY",
        "UNSEEN",   "HIGHESTMODSEQ", "SIZE",    "DELETED",
};

struct entry {
	char *name; /* UTF-8 */
	char *wire; /* as the client sees it */
	unsigned attrs;
	bool exists, subscribed, children, sub_children;
};

struct imap_list_job {
	bool lsub, extended;
	bool sel_subscribed, sel_special, recursive;
	bool ret_subscribed, ret_children, ret_special;
	enum status_item status[SI_COUNT];
	size_t nstatus;
	char **patterns;
	size_t npatterns;
	struct entry *v;
	size_t n, next;
	bool root_only; /* LIST "" "": the delimiter */
};

static const struct {
	const char *name;
	unsigned attr;
} special_names[] = {
        {"\\All", IMAP_MBOX_ALL},       {"\\Archive", IMAP_MBOX_ARCHIVE},
        {"\\Drafts", IMAP_MBOX_DRAFTS}, {"\\Flagged", IMAP_MBOX_FLAGGED},
        {"\\Junk", IMAP_MBOX_JUNK},     {"\\Sent", IMAP_MBOX_SENT},
        {"\\Trash", IMAP_MBOX_TRASH},
};

void imap_list_job_free(struct imap_session *s)
{
	struct imap_list_job *j = s->list;

	if (j == NULL)
		return;
	for (size_t i = 0; i < j->npatterns; i++)
		free(j->patterns[i]);
	free(j->patterns);
	for (size_t i = 0; i < j->n; i++) {
		free(j->v[i].name);
		free(j->v[i].wire);
	}
	free(j->v);
	free(j);
	s->list = NULL;
}

/* --- STATUS ------------------------------------------------------------------ */

static int status_items_parse(const struct imap_arg *a, enum status_item *out, size_t *n_r)
{
	*n_r = 0;
	if (a->type != IMAP_ARG_LIST || a->nlist == 0)
		return -1;
	for (size_t i = 0; i < a->nlist; i++) {
		size_t k;

		for (k = 0; k < SI_COUNT; k++)
			if (imap_arg_atom_is(&a->list[i], status_names[k]))
				break;
		if (k == SI_COUNT || *n_r == SI_COUNT)
			return -1;
		out[(*n_r)++] = (enum status_item)k;
	}
	return 0;
}

static void status_write(struct imap_session *s, const char *name, const enum status_item *items,
                         size_t n, const struct imap_status_info *info)
{
	imap_puts(s, "* STATUS ");
	imap_write_mbox(s, name);
	imap_puts(s, " (");
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0;

		switch (items[i]) {
		case SI_MESSAGES:
			v = info->messages;
			break;
		case SI_RECENT:
			v = 0;
			break;
		case SI_UIDNEXT:
			v = info->uidnext;
			break;
		case SI_UIDVALIDITY:
			v = info->uidvalidity;
			break;
		case SI_UNSEEN:
			v = info->unseen;
			break;
		case SI_HIGHESTMODSEQ:
			v = info->highestmodseq;
			break;
		case SI_SIZE:
			v = info->size;
			break;
		case SI_DELETED:
			v = info->deleted;
			break;
		case SI_COUNT:
			break;
		}
		imap_printf(s, "%s%s %llu", i ? " " : "", status_names[items[i]],
		            (unsigned long long)v);
	}
	imap_puts(s, ")\r\n");
}

static void status_done(struct imap_session *s, enum imap_store_status st,
                        const struct imap_status_info *info)
{
	struct imap_list_job *j = s->list;

	if (st != IMAP_STORE_OK) {
		imap_list_job_free(s);
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	status_write(s, s->pending_name, j->status, j->nstatus, info);
	imap_list_job_free(s);
	imap_cmd_finish(s, "OK", NULL, "Status completed");
}

void imap_cmd_status(struct imap_session *s, const struct imap_command *c)
{
	const char *why;
	char *name;
	struct imap_list_job *j;

	if (c->nargs != 2) {
		imap_cmd_bad(s, "STATUS needs a mailbox and a list of items");
		return;
	}
	name = imap_mbox_arg(s, &c->args[0], &why);
	if (name == NULL) {
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	if (status_items_parse(&c->args[1], j->status, &j->nstatus) < 0) {
		free(j);
		free(name);
		imap_cmd_bad(s, "Invalid STATUS items");
		return;
	}
	for (size_t i = 0; i < j->nstatus; i++)
		if (j->status[i] == SI_HIGHESTMODSEQ)
			s->enabled |= IMAP_EN_CONDSTORE; /* RFC 7162 3.1 */
	s->list = j;
	free(s->pending_name);
	s->pending_name = name;
	s->k_status = status_done;
	imap_op_begin(s, IMAP_OP_STATUS);
	s->ops->status(s->ctx, name);
}

/* --- LIST ------------------------------------------------------------------------ */

static int name_cmp(const char *x, const char *y)
{
	bool xi = strcmp(x, "INBOX") == 0, yi = strcmp(y, "INBOX") == 0;

	/* INBOX first: what every client shows first anyway */
	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x, y);
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	return name_cmp(x->name, y->name);
}

/* Binary search among the first n (sorted) entries. */
static struct entry *find_in(struct imap_list_job *j, size_t n, const char *name)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = name_cmp(j->v[mid].name, name);

		if (c == 0)
			return &j->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct entry *find(struct imap_list_job *j, const char *name)
{
	return find_in(j, j->n, name);
}

static void entry_add(struct imap_list_job *j, size_t *cap, const char *name, unsigned attrs,
                      bool exists, bool subscribed)
{
	if (j->n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		j->v = xreallocarray(j->v, *cap, sizeof(*j->v));
	}
	j->v[j->n] = (struct entry){
	        .name = xstrdup(name), .attrs = attrs, .exists = exists, .subscribed = subscribed};
	j->n++;
}

/* Copy the store's list, add missing parents, sort, mark children. */
static void build_tree(struct imap_session *s, struct imap_list_job *j,
                       const struct imap_mbox_entry *v, size_t n)
{
	size_t cap = 0, orig;

	for (size_t i = 0; i < n; i++)
		entry_add(j, &cap, v[i].name, v[i].attrs, true, v[i].subscribed);
	if (j->n > 1)
		qsort(j->v, j->n, sizeof(*j->v), entry_cmp);
	/* parents that are not mailboxes themselves */
	orig = j->n;
	for (size_t i = 0; i < orig; i++) {
		char *p = xstrdup(j->v[i].name);
		char *slash;

		while ((slash = strrchr(p, '/')) != NULL) {
			*slash = '\0';
			if (p[0] == '\0')
				break;
			if (find_in(j, orig, p) == NULL) {
				bool found = false;

				for (size_t k = orig; k < j->n; k++)
					if (strcmp(j->v[k].name, p) == 0)
						found = true;
				if (!found)
					entry_add(j, &cap, p, IMAP_MBOX_NOSELECT, false, false);
			}
		}
		free(p);
	}
	if (j->n > 1)
		qsort(j->v, j->n, sizeof(*j->v), entry_cmp);
	for (size_t i = 0; i < j->n; i++) {
		char *p = xstrdup(j->v[i].name);
		char *slash = strrchr(p, '/');

		if (slash != NULL && slash != p) {
			struct entry *parent;

			*slash = '\0';
			parent = find(j, p);
			if (parent != NULL) {
				parent->children = true;
				if (j->v[i].subscribed || j->v[i].sub_children)
					parent->sub_children = true;
			}
		}
		free(p);
	}
	/* sub_children must reach every ancestor: walk deepest first */
	for (size_t i = j->n; i-- > 0;) {
		if (!j->v[i].sub_children)
			continue;
		char *p = xstrdup(j->v[i].name);
		char *slash;

		while ((slash = strrchr(p, '/')) != NULL && slash != p) {
			struct entry *parent;

			*slash = '\0';
			parent = find(j, p);
			if (parent != NULL)
				parent->sub_children = true;
		}
		free(p);
	}
	for (size_t i = 0; i < j->n; i++) {
		if (s->enabled & IMAP_EN_UTF8) {
			j->v[i].wire = xstrdup(j->v[i].name);
		} else {
			j->v[i].wire = imap_mutf7_encode(j->v[i].name);
			if (j->v[i].wire == NULL)
				j->v[i].wire = xstrdup(j->v[i].name);
		}
	}
}

static bool matches(const struct imap_list_job *j, const char *wire)
{
	for (size_t i = 0; i < j->npatterns; i++)
		if (imap_listmatch(j->patterns[i], wire, '/'))
			return true;
	return false;
}

static void write_attrs(struct imap_session *s, const struct imap_list_job *j,
                        const struct entry *e, bool childinfo_only)
{
	bool first = true;

#define ATTR(text)                                                                                 \
	do {                                                                                       \
		imap_puts(s, first ? "" : " ");                                                    \
		imap_puts(s, text);                                                                \
		first = false;                                                                     \
	} while (0)

	imap_puts(s, "(");
	if (j->lsub) {
		if (!e->exists || !e->subscribed)
			ATTR("\\Noselect");
		imap_puts(s, ")");
		return;
	}
	if (!e->exists)
		ATTR(j->extended ? "\\NonExistent" : "\\Noselect");
	else if (e->attrs & IMAP_MBOX_NOSELECT)
		ATTR("\\Noselect");
	if (!childinfo_only || j->ret_children) {
		if (e->attrs & IMAP_MBOX_NOINFERIORS)
			ATTR("\\NoInferiors");
		else
			ATTR(e->children ? "\\HasChildren" : "\\HasNoChildren");
	}
	for (size_t k = 0; k < sizeof(special_names) / sizeof(special_names[0]); k++)
		if (e->attrs & special_names[k].attr)
			ATTR(special_names[k].name);
	if ((j->ret_subscribed || j->sel_subscribed) && e->subscribed)
		ATTR("\\Subscribed");
	imap_puts(s, ")");
#undef ATTR
}

static void list_next(struct imap_session *s);

static void list_status_done(struct imap_session *s, enum imap_store_status st,
                             const struct imap_status_info *info)
{
	struct imap_list_job *j = s->list;

	/* RFC 5819 2: a mailbox that fails STATUS is just left without */
	if (st == IMAP_STORE_OK)
		status_write(s, j->v[j->next - 1].name, j->status, j->nstatus, info);
	list_next(s);
}

static void list_next(struct imap_session *s)
{
	struct imap_list_job *j = s->list;

	while (j->next < j->n) {
		struct entry *e = &j->v[j->next++];
		bool shown, childinfo = false;

		if (!matches(j, e->wire))
			continue;
		if (j->lsub || j->sel_subscribed) {
			shown = e->subscribed;
			/* RFC 5258 3.5: RECURSIVEMATCH reports parents of
			 * subscribed mailboxes with CHILDINFO */
			if (!shown && j->recursive && e->sub_children) {
				shown = true;
				childinfo = true;
			}
		} else {
			shown = true;
		}
		if (shown && j->sel_special && !(e->attrs & IMAP_MBOX_SPECIAL_MASK))
			shown = false;
		if (!shown)
			continue;
		imap_puts(s, j->lsub ? "* LSUB " : "* LIST ");
		write_attrs(s, j, e, j->extended);
		imap_puts(s, " \"/\" ");
		imap_write_mbox(s, e->name);
		if (childinfo)
			imap_puts(s, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
		imap_puts(s, "\r\n");
		if (j->nstatus > 0 && e->exists && !(e->attrs & IMAP_MBOX_NOSELECT) && !childinfo) {
			s->k_status = list_status_done;
			imap_op_begin(s, IMAP_OP_STATUS);
			s->ops->status(s->ctx, e->name);
			return;
		}
	}
	imap_list_job_free(s);
	imap_cmd_finish(s, "OK", NULL,
	                s->cmd_name[0] == 'L' && s->cmd_name[1] == 'S' ? "Lsub completed"
	                                                               : "List completed");
}

static void list_done(struct imap_session *s, enum imap_store_status st,
                      const struct imap_mbox_entry *v, size_t n)
{
	if (st != IMAP_STORE_OK) {
		imap_list_job_free(s);
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	build_tree(s, s->list, v, n);
	list_next(s);
}

static void pattern_add(struct imap_list_job *j, const char *ref, const char *pat)
{
	char *p = xasprintf("%s%s", ref, pat);

	/* RFC 3501 5.1: INBOX is case-insensitive */
	if (strncasecmp(p, "INBOX", 5) == 0 && (p[5] == '\0' || p[5] == '/'))
		memcpy(p, "INBOX", 5);
	j->patterns = xreallocarray(j->patterns, j->npatterns + 1, sizeof(*j->patterns));
	j->patterns[j->npatterns++] = p;
}

static bool pattern_arg(const struct imap_arg *a)
{
	return imap_arg_is_astring(a) && !a->has_nul;
}

/* RFC 5258 3: LIST [(select-opts)] reference patterns [RETURN (opts)] */
static const char *list_parse(struct imap_session *s, const struct imap_command *c,
                              struct imap_list_job *j)
{
	size_t i = 0;
	const struct imap_arg *ref, *pats;

	if (!j->lsub && i < c->nargs && c->args[i].type == IMAP_ARG_LIST) {
		const struct imap_arg *o = &c->args[i++];

		j->extended = true;
		for (size_t k = 0; k < o->nlist; k++) {
			const struct imap_arg *x = &o->list[k];

			if (imap_arg_atom_is(x, "SUBSCRIBED"))
				j->sel_subscribed = true;
			else if (imap_arg_atom_is(x, "SPECIAL-USE"))
				j->sel_special = true;
			else if (imap_arg_atom_is(x, "RECURSIVEMATCH"))
				j->recursive = true;
			else if (imap_arg_atom_is(x, "REMOTE"))
				; /* no remote mailboxes here */
			else
				return "Unknown LIST selection option";
		}
		/* RFC 5258 3.1: RECURSIVEMATCH needs another option */
		if (j->recursive && !j->sel_subscribed && !j->sel_special)
			return "RECURSIVEMATCH needs SUBSCRIBED";
	}
	if (c->nargs - i < 2)
		return "LIST needs a reference and a pattern";
	ref = &c->args[i++];
	pats = &c->args[i++];
	if (!pattern_arg(ref))
		return "Invalid reference";
	if (pats->type == IMAP_ARG_LIST && !j->lsub) {
		j->extended = true;
		if (pats->nlist == 0)
			return "Empty pattern list";
		for (size_t k = 0; k < pats->nlist; k++) {
			if (!pattern_arg(&pats->list[k]))
				return "Invalid pattern";
			pattern_add(j, ref->str, pats->list[k].str);
		}
	} else {
		if (!pattern_arg(pats))
			return "Invalid pattern";
		if (pats->str[0] == '\0' && !j->lsub)
			j->root_only = true;
		pattern_add(j, ref->str, pats->str);
	}
	if (i < c->nargs && !j->lsub) {
		const struct imap_arg *r;

		if (!imap_arg_atom_is(&c->args[i], "RETURN") || i + 2 != c->nargs ||
		    c->args[i + 1].type != IMAP_ARG_LIST)
			return "Invalid LIST return options";
		r = &c->args[i + 1];
		j->extended = true;
		for (size_t k = 0; k < r->nlist; k++) {
			const struct imap_arg *x = &r->list[k];

			if (imap_arg_atom_is(x, "SUBSCRIBED"))
				j->ret_subscribed = true;
			else if (imap_arg_atom_is(x, "CHILDREN"))
				j->ret_children = true;
			else if (imap_arg_atom_is(x, "SPECIAL-USE"))
				j->ret_special = true;
			else if (imap_arg_atom_is(x, "STATUS") && k + 1 < r->nlist) {
				if (status_items_parse(&r->list[++k], j->status, &j->nstatus) < 0)
					return "Invalid STATUS return option";
			} else
				return "Unknown LIST return option";
		}
		i += 2;
	}
	if (i != c->nargs)
		return "Too many LIST arguments";
	return NULL;
}

void imap_cmd_list(struct imap_session *s, const struct imap_command *c, bool lsub)
{
	struct imap_list_job *j = xcalloc(1, sizeof(*j));
	const char *why;

	j->lsub = lsub;
	s->list = j;
	why = list_parse(s, c, j);
	if (why != NULL) {
		imap_list_job_free(s);
		imap_cmd_bad(s, why);
		return;
	}
	if (j->root_only) {
		/* RFC 3501 6.3.8: the delimiter and the root */
		imap_puts(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
		imap_list_job_free(s);
		imap_cmd_finish(s, "OK", NULL, "List completed");
		return;
	}
	s->k_list = list_done;
	imap_op_begin(s, IMAP_OP_LIST);
	s->ops->list(s->ctx);
}

/* --- CREATE, DELETE, RENAME, SUBSCRIBE -------------------------------------------- */

/* A name a mailbox may be created with: no empty level, no wildcard. */
static const char *name_creatable(const char *name)
{
	size_t len = strlen(name);

	if (len == 0)
		return "Empty mailbox name";
	if (name[0] == '/' || strstr(name, "//") != NULL || name[len - 1] == '/')
		return "Invalid hierarchy in mailbox name";
	if (strpbrk(name, "%*") != NULL)
		return "Wildcards are not allowed in mailbox names";
	return NULL;
}

static void mbox_done(struct imap_session *s, enum imap_store_status st)
{
	const char *done = "Completed";

	if (st != IMAP_STORE_OK) {
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	if (strcmp(s->cmd_name, "CREATE") == 0)
		done = "Create completed";
	else if (strcmp(s->cmd_name, "DELETE") == 0)
		done = "Delete completed";
	else if (strcmp(s->cmd_name, "RENAME") == 0)
		done = "Rename completed";
	else if (strcmp(s->cmd_name, "SUBSCRIBE") == 0)
		done = "Subscribe completed";
	else if (strcmp(s->cmd_name, "UNSUBSCRIBE") == 0)
		done = "Unsubscribe completed";
	if (strcmp(s->cmd_name, "DELETE") == 0 && s->state == IMAP_STATE_SELECTED &&
	    strcmp(s->pending_name, s->sel.name) == 0) {
		/* the selected mailbox is gone: leave the selected state
		 * (RFC 7162 3.2.11 [CLOSED]) */
		imap_selected_clear(s, true);
		s->state = IMAP_STATE_AUTH;
		imap_puts(s, "* OK [CLOSED] Selected mailbox was deleted\r\n");
	}
	imap_cmd_finish(s, "OK", NULL, done);
}

static void mbox_request(struct imap_session *s, char *name)
{
	free(s->pending_name);
	s->pending_name = name;
	s->k_op = mbox_done;
	imap_op_begin(s, IMAP_OP_MBOX);
}

void imap_cmd_create(struct imap_session *s, const struct imap_command *c)
{
	const char *why;
	char *name;
	unsigned special = 0;
	size_t len;

	if (c->nargs != 1 && c->nargs != 2) {
		imap_cmd_bad(s, "CREATE needs a mailbox name");
		return;
	}
	if (c->nargs == 2) {
		/* RFC 6154 3: CREATE name (USE (\Drafts)) */
		const struct imap_arg *o = &c->args[1];

		if (o->type != IMAP_ARG_LIST || o->nlist != 2 ||
		    !imap_arg_atom_is(&o->list[0], "USE") || o->list[1].type != IMAP_ARG_LIST) {
			imap_cmd_bad(s, "Invalid CREATE parameters");
			return;
		}
		for (size_t i = 0; i < o->list[1].nlist; i++) {
			size_t k;

			for (k = 0; k < sizeof(special_names) / sizeof(special_names[0]); k++)
				if (imap_arg_atom_is(&o->list[1].list[i], special_names[k].name))
					break;
			if (k == sizeof(special_names) / sizeof(special_names[0]) || special != 0) {
				imap_cmd_finish(s, "NO", "[USEATTR]",
				                "Unsupported special-use attribute");
				return;
			}
			special = special_names[k].attr;
		}
	}
	name = imap_mbox_arg(s, &c->args[0], &why);
	if (name == NULL) {
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	/* RFC 3501 6.3.3: a trailing delimiter only declares the intent to
	 * create children */
	len = strlen(name);
	if (len > 1 && name[len - 1] == '/')
		name[len - 1] = '\0';
	if ((why = name_creatable(name)) != NULL) {
		free(name);
		imap_cmd_finish(s, "NO", "[CANNOT]", why);
		return;
	}
	if (strcmp(name, "INBOX") == 0) {
		free(name);
		imap_cmd_finish(s, "NO", "[ALREADYEXISTS]", "Mailbox already exists");
		return;
	}
	mbox_request(s, name);
	s->ops->create(s->ctx, s->pending_name, special);
}

void imap_cmd_delete(struct imap_session *s, const struct imap_command *c)
{
	const char *why;
	char *name;

	if (c->nargs != 1) {
		imap_cmd_bad(s, "DELETE needs a mailbox name");
		return;
	}
	name = imap_mbox_arg(s, &c->args[0], &why);
	if (name == NULL) {
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	if (strcmp(name, "INBOX") == 0) {
		free(name);
		/* RFC 3501 6.3.4: deleting INBOX is an error */
		imap_cmd_finish(s, "NO", "[CANNOT]", "INBOX cannot be deleted");
		return;
	}
	mbox_request(s, name);
	s->ops->delete_mailbox(s->ctx, s->pending_name);
}

static void rename_done(struct imap_session *s, enum imap_store_status st)
{
	if (st == IMAP_STORE_OK && s->state == IMAP_STATE_SELECTED && s->sel.name != NULL) {
		/* the selected mailbox (or a parent of it) got a new name */
		const char *from = s->pending_name, *to = from + strlen(from) + 1;
		size_t fl = strlen(from);

		if (strcmp(from, "INBOX") != 0 && strncmp(s->sel.name, from, fl) == 0 &&
		    (s->sel.name[fl] == '\0' || s->sel.name[fl] == '/')) {
			char *n = xasprintf("%s%s", to, s->sel.name + fl);

			free(s->sel.name);
			s->sel.name = n;
		}
	}
	mbox_done(s, st);
}

void imap_cmd_rename(struct imap_session *s, const struct imap_command *c)
{
	const char *why;
	char *from, *to, *both;
	size_t fl, tl;

	if (c->nargs != 2) {
		imap_cmd_bad(s, "RENAME needs two mailbox names");
		return;
	}
	from = imap_mbox_arg(s, &c->args[0], &why);
	if (from == NULL) {
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	to = imap_mbox_arg(s, &c->args[1], &why);
	if (to == NULL) {
		free(from);
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	if ((why = name_creatable(to)) != NULL) {
		free(from);
		free(to);
		imap_cmd_finish(s, "NO", "[CANNOT]", why);
		return;
	}
	if (strcmp(to, "INBOX") == 0 || strcmp(from, to) == 0) {
		free(from);
		free(to);
		imap_cmd_finish(s, "NO", "[ALREADYEXISTS]", "Target mailbox already exists");
		return;
	}
	fl = strlen(from);
	tl = strlen(to);
	if (strncmp(to, from, fl) == 0 && to[fl] == '/') {
		free(from);
		free(to);
		imap_cmd_finish(s, "NO", "[CANNOT]", "Cannot rename a mailbox into itself");
		return;
	}
	/* both names in pending_name: "from\0to" */
	both = xmalloc(fl + tl + 2);
	memcpy(both, from, fl + 1);
	memcpy(both + fl + 1, to, tl + 1);
	free(from);
	free(to);
	mbox_request(s, both);
	s->k_op = rename_done;
	s->ops->rename(s->ctx, s->pending_name, s->pending_name + fl + 1);
}

void imap_cmd_subscribe(struct imap_session *s, const struct imap_command *c, bool on)
{
	const char *why;
	char *name;

	if (c->nargs != 1) {
		imap_cmd_bad(s, "Command needs a mailbox name");
		return;
	}
	name = imap_mbox_arg(s, &c->args[0], &why);
	if (name == NULL) {
		imap_cmd_finish(s, "NO", NULL, why);
		return;
	}
	mbox_request(s, name);
	s->ops->subscribe(s->ctx, s->pending_name, on);
}
