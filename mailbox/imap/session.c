/*
 * mailbox/imap/session.c -- the IMAP session core: input, dispatch,
 * states, tagged completion and the small commands.
 *
 * imap_session_input() runs the command parser over the bytes offered
 * and hands every complete command to a handler from the table below.
 * The loop stops as soon as the session cannot take more: a store
 * request is outstanding, a command is still producing its response (a
 * FETCH waiting for the output to drain), the output is above its
 * high-water mark, or the session is closing; whatever was not consumed
 * stays with the caller.  Three input modes read lines instead of
 * commands: a SASL response, IDLE's DONE, and nothing at all while a
 * STARTTLS handshake runs.
 *
 * Every command ends in imap_cmd_finish(), which first announces changes
 * to the selected mailbox (sync.c) when a notification arrived or the
 * command asks for it (NOOP, CHECK), so a client polling with NOOP sees
 * new mail even without pub/sub.
 *
 * Completions arrive through the imap_session_*_done() entry points at
 * the end of this file; each checks that its request is the outstanding
 * one and passes the result to the continuation the handler registered.
 */
#include "mailbox/imap/session_private.h"

#include "mailbox/imap/mutf7.h"
#include "mailbox/imap/string.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Literals at least this long are streamed to a spool (APPEND), never
 * held in memory. */
#define IMAP_STREAM_MIN (64 * 1024)
/* Longest mailbox name we accept, in UTF-8 octets. */
#define IMAP_MBOX_NAME_MAX 1024

/* --- output ------------------------------------------------------------------ */

void imap_printf(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_append(&s->out, small, (size_t)n);
		return;
	}
	{
		char *big = xmalloc((size_t)n + 1);

		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		buf_append(&s->out, big, (size_t)n);
		free(big);
	}
}

void imap_puts(struct imap_session *s, const char *str)
{
	buf_puts(&s->out, str);
}

void imap_tagged(struct imap_session *s, const char *status, const char *code, const char *text)
{
	imap_printf(s, "%s %s %s%s%s\r\n", s->tag != NULL ? s->tag : "*", status,
	            code != NULL ? code : "", code != NULL ? " " : "", text);
}

void imap_close(struct imap_session *s, const char *text)
{
	if (s->mode == IMAP_MODE_CLOSED)
		return;
	if (text != NULL)
		imap_printf(s, "* BYE %s\r\n", text);
	imap_append_spools_abort(s);
	s->mode = IMAP_MODE_CLOSED;
	s->closing = true;
	s->state = IMAP_STATE_LOGOUT;
}

const char *imap_store_status_code(enum imap_store_status st, bool trycreate)
{
	switch (st) {
	case IMAP_STORE_OK:
		return NULL;
	case IMAP_STORE_NONEXISTENT:
		return trycreate ? "[TRYCREATE]" : "[NONEXISTENT]";
	case IMAP_STORE_EXISTS:
		return "[ALREADYEXISTS]";
	case IMAP_STORE_OVERQUOTA:
		return "[OVERQUOTA]";
	case IMAP_STORE_LIMIT:
		return "[LIMIT]";
	case IMAP_STORE_CANNOT:
		return "[CANNOT]";
	case IMAP_STORE_HASCHILDREN:
		return "[HASCHILDREN]";
	case IMAP_STORE_TEMPFAIL:
		return "[UNAVAILABLE]";
	case IMAP_STORE_FAIL:
		break;
	}
	return "[SERVERBUG]";
}

void imap_cmd_store_fail(struct imap_session *s, enum imap_store_status st, const char *text)
{
	const char *why = text;

	if (why == NULL) {
		switch (st) {
		case IMAP_STORE_NONEXISTENT:
			why = "Mailbox doesn't exist";
			break;
		case IMAP_STORE_EXISTS:
			why = "Mailbox already exists";
			break;
		case IMAP_STORE_OVERQUOTA:
			why = "Quota exceeded";
			break;
		case IMAP_STORE_LIMIT:
			why = "Limit reached";
			break;
		case IMAP_STORE_CANNOT:
			why = "Operation not permitted";
			break;
		case IMAP_STORE_HASCHILDREN:
			why = "Mailbox has inferior hierarchical names and no messages of its own";
			break;
		case IMAP_STORE_TEMPFAIL:
			why = "Service temporarily unavailable, try again later";
			break;
		default:
			why = "Internal error";
			break;
		}
	}
	imap_cmd_finish(s, "NO", imap_store_status_code(st, false), why);
}

void imap_write_mbox(struct imap_session *s, const char *utf8)
{
	if (s->enabled & IMAP_EN_UTF8) {
		imap_string_write(&s->out, utf8, strlen(utf8), IMAP_STR_ATOM_OK | IMAP_STR_UTF8);
		return;
	}
	{
		char *m = imap_mutf7_encode(utf8);

		if (m == NULL) /* not valid UTF-8 in the store: show it raw */
			imap_string_write(&s->out, utf8, strlen(utf8), 0);
		else
			imap_string_write(&s->out, m, strlen(m), IMAP_STR_ATOM_OK);
		free(m);
	}
}

void imap_write_flags(struct buf *b, const char *const *flags, size_t n)
{
	buf_puts(b, "(");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_puts(b, " ");
		buf_puts(b, flags[i]);
	}
	buf_puts(b, ")");
}

bool imap_flags_has(const char *const *flags, size_t n, const char *f)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(flags[i], f) == 0)
			return true;
	return false;
}

static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p, len, cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (unsigned i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		p += len;
	}
	return true;
}

char *imap_mbox_arg(struct imap_session *s, const struct imap_arg *a, const char **errstr_r)
{
	char *name;
	size_t len;

	if (!imap_arg_is_astring(a) || a->has_nul) {
		*errstr_r = "Invalid mailbox name";
		return NULL;
	}
	if (s->enabled & IMAP_EN_UTF8) {
		/* RFC 6855 3: after ENABLE UTF8=ACCEPT names are UTF-8 */
		if (!utf8_valid(a->str)) {
			*errstr_r = "Mailbox name is not valid UTF-8";
			return NULL;
		}
		name = xstrdup(a->str);
	} else {
		name = imap_mutf7_decode(a->str);
		if (name == NULL) {
			*errstr_r = "Mailbox name is not valid modified UTF-7";
			return NULL;
		}
	}
	len = strlen(name);
	/* RFC 3501 5.1: INBOX is case-insensitive, also as a parent */
	if (len >= 5 && strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/'))
		memcpy(name, "INBOX", 5);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f) {
			*errstr_r = "Invalid character in mailbox name";
			goto fail;
		}
	}
	if (len > IMAP_MBOX_NAME_MAX) {
		*errstr_r = "Mailbox name too long";
		goto fail;
	}
	return name;
fail:
	free(name);
	return NULL;
}

/* --- requests -------------------------------------------------------------------- */

void imap_op_begin(struct imap_session *s, enum imap_op op)
{
	ASSERT(s->op == IMAP_OP_NONE);
	s->op = op;
	s->wm_set = false;
}

/* A completion for op arrived: false when it is to be ignored. */
static bool complete(struct imap_session *s, enum imap_op op)
{
	if (s->mode == IMAP_MODE_CLOSED && s->op == IMAP_OP_NONE)
		return false; /* after imap_session_shutdown() */
	ASSERT(s->op == op);
	s->op = IMAP_OP_NONE;
	return s->mode != IMAP_MODE_CLOSED;
}

/* --- command lifecycle ------------------------------------------------------------ */

static void cmd_end(struct imap_session *s)
{
	free(s->tag);
	s->tag = NULL;
	free(s->final);
	s->final = NULL;
	s->busy = false;
	s->cmd_uid = false;
	s->expunge_ok = false;
	s->cmd_name[0] = '\0';
	free(s->pending_name);
	s->pending_name = NULL;
}

void imap_cmd_finish(struct imap_session *s, const char *status, const char *code, const char *text)
{
	struct buf b;

	if (s->mode == IMAP_MODE_CLOSED) {
		cmd_end(s);
		return;
	}
	buf_init(&b, 0);
	buf_printf(&b, "%s %s %s%s%s\r\n", s->tag != NULL ? s->tag : "*", status,
	           code != NULL ? code : "", code != NULL ? " " : "", text);
	buf_append(&b, "", 1);
	free(s->final);
	s->final = xstrdup((const char *)buf_ptr(&b));
	s->final_tagged = true;
	buf_free(&b);
	if (s->state == IMAP_STATE_SELECTED && s->sel.dirty) {
		imap_sync_start(s);
		return;
	}
	if (s->state == IMAP_STATE_SELECTED)
		imap_sync_flush(s);
	imap_cmd_final(s);
}

void imap_cmd_final(struct imap_session *s)
{
	if (s->final == NULL)
		return;
	if (s->mode != IMAP_MODE_CLOSED)
		imap_puts(s, s->final);
	cmd_end(s);
}

void imap_cmd_bad(struct imap_session *s, const char *text)
{
	s->bad_count++;
	imap_cmd_finish(s, "BAD", NULL, text);
	if (s->bad_count >= s->cfg.max_bad && s->mode != IMAP_MODE_CLOSED) {
		if (s->ops->abuse != NULL)
			s->ops->abuse(s->ctx, IMAP_ABUSE_TOO_MANY_ERRORS);
		imap_close(s, "Too many invalid commands");
	}
}

/* An untagged BAD from the parser (no tag could be read). */
static void parse_bad(struct imap_session *s, const char *tag, const char *why)
{
	imap_append_spools_abort(s);
	s->bad_count++;
	imap_printf(s, "%s BAD %s\r\n", tag != NULL ? tag : "*", why);
	if (s->bad_count >= s->cfg.max_bad) {
		if (s->ops->abuse != NULL)
			s->ops->abuse(s->ctx, IMAP_ABUSE_TOO_MANY_ERRORS);
		imap_close(s, "Too many invalid commands");
	}
}

/* --- small commands ------------------------------------------------------------------ */

static void cmd_capability(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "CAPABILITY takes no arguments");
		return;
	}
	imap_puts(s, "* CAPABILITY ");
	imap_capability_write(s, &s->out);
	imap_puts(s, "\r\n");
	imap_cmd_finish(s, "OK", NULL, "Capability completed");
}

static void cmd_noop(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "Command takes no arguments");
		return;
	}
	/* NOOP and CHECK are how clients poll (RFC 3501 6.1.2): ask the
	 * store, unless it says its notifications cover everything since
	 * the last time (a notification already set dirty) */
	if (s->state == IMAP_STATE_SELECTED &&
	    (s->ops->changes_known == NULL || !s->ops->changes_known(s->ctx)))
		s->sel.dirty = true;
	imap_cmd_finish(s, "OK", NULL,
	                strcmp(c->name, "CHECK") == 0 ? "Check completed" : "NOOP completed");
}

static void cmd_logout(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "LOGOUT takes no arguments");
		return;
	}
	imap_puts(s, "* BYE Logging out\r\n");
	imap_tagged(s, "OK", NULL, "Logout completed");
	imap_close(s, NULL);
	cmd_end(s);
}

/* RFC 5161 ENABLE; RFC 7162 3.2.3: QRESYNC implies CONDSTORE. */
static void cmd_enable(struct imap_session *s, const struct imap_command *c)
{
	unsigned before = s->enabled, now = 0;

	if (c->nargs == 0) {
		imap_cmd_bad(s, "ENABLE needs arguments");
		return;
	}
	for (size_t i = 0; i < c->nargs; i++) {
		const struct imap_arg *a = &c->args[i];

		if (a->type != IMAP_ARG_ATOM) {
			imap_cmd_bad(s, "Invalid ENABLE argument");
			return;
		}
		if (strcasecmp(a->str, "CONDSTORE") == 0)
			now |= IMAP_EN_CONDSTORE;
		else if (strcasecmp(a->str, "QRESYNC") == 0)
			now |= IMAP_EN_QRESYNC | IMAP_EN_CONDSTORE;
		else if (strcasecmp(a->str, "UTF8=ACCEPT") == 0)
			now |= IMAP_EN_UTF8;
		else if (strcasecmp(a->str, "IMAP4rev2") == 0 && s->cfg.imap4rev2)
			now |= IMAP_EN_REV2;
		/* unknown extensions are ignored (RFC 5161 3.1) */
	}
	s->enabled |= now;
	imap_puts(s, "* ENABLED");
	if ((now & IMAP_EN_CONDSTORE) && !(before & IMAP_EN_CONDSTORE))
		imap_puts(s, " CONDSTORE");
	if ((now & IMAP_EN_QRESYNC) && !(before & IMAP_EN_QRESYNC))
		imap_puts(s, " QRESYNC");
	if ((now & IMAP_EN_UTF8) && !(before & IMAP_EN_UTF8))
		imap_puts(s, " UTF8=ACCEPT");
	if ((now & IMAP_EN_REV2) && !(before & IMAP_EN_REV2))
		imap_puts(s, " IMAP4rev2");
	imap_puts(s, "\r\n");
	imap_cmd_finish(s, "OK", NULL, "Enabled");
}

/* RFC 2971 ID: NIL or a list of up to 30 field/value pairs. */
static void cmd_id(struct imap_session *s, const struct imap_command *c)
{
	const struct imap_arg *a = c->nargs == 1 ? &c->args[0] : NULL;

	if (a == NULL || (a->type != IMAP_ARG_NIL && a->type != IMAP_ARG_LIST) ||
	    (a->type == IMAP_ARG_LIST && (a->nlist % 2 != 0 || a->nlist > 60))) {
		imap_cmd_bad(s, "Invalid ID parameters");
		return;
	}
	if (a->type == IMAP_ARG_LIST) {
		const char *kv[60];

		for (size_t i = 0; i < a->nlist; i++) {
			const struct imap_arg *e = &a->list[i];

			if (e->type == IMAP_ARG_NIL && i % 2 == 1) {
				kv[i] = NULL;
				continue;
			}
			if ((e->type != IMAP_ARG_STRING && e->type != IMAP_ARG_LITERAL) ||
			    e->has_nul || e->len > 1024) {
				imap_cmd_bad(s, "Invalid ID parameters");
				return;
			}
			kv[i] = e->str;
		}
		if (s->ops->client_id != NULL)
			s->ops->client_id(s->ctx, kv, a->nlist);
	}
	imap_puts(s, "* ID (\"name\" \"tailpost\")\r\n");
	imap_cmd_finish(s, "OK", NULL, "ID completed");
}

/* RFC 2342: one personal namespace, no others. */
static void cmd_namespace(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "NAMESPACE takes no arguments");
		return;
	}
	imap_puts(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_cmd_finish(s, "OK", NULL, "Namespace completed");
}

static void cmd_select(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_select(s, c, false);
}

static void cmd_examine(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_select(s, c, true);
}

static void cmd_close(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_close(s, c, true);
}

static void cmd_unselect(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_close(s, c, false);
}

static void cmd_list(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_list(s, c, false);
}

static void cmd_lsub(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_list(s, c, true);
}

static void cmd_subscribe(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_subscribe(s, c, true);
}

static void cmd_unsubscribe(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_subscribe(s, c, false);
}

static void cmd_fetch(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_fetch(s, c, 0);
}

static void cmd_store(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_store(s, c, 0);
}

static void cmd_search(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_search(s, c, 0, false);
}

static void cmd_sort(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_search(s, c, 0, true);
}

static void cmd_copy(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_copy(s, c, 0, false);
}

static void cmd_move(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_copy(s, c, 0, true);
}

static void cmd_expunge(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "EXPUNGE takes no arguments");
		return;
	}
	imap_cmd_expunge(s, c, 0);
}

static void cmd_getquota(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_getquota(s, c, false);
}

static void cmd_getquotaroot(struct imap_session *s, const struct imap_command *c)
{
	imap_cmd_getquota(s, c, true);
}

static void cmd_setquota(struct imap_session *s, const struct imap_command *c)
{
	/* RFC 9208 4.4.3: quotas come from the directory, not from clients */
	imap_cmd_finish(s, "NO", "[NOPERM]", "Quotas are set by the administrator");
}

/* UID FETCH/STORE/SEARCH/SORT/COPY/MOVE/EXPUNGE (RFC 3501 6.4.8, RFC 4315,
 * RFC 6851, RFC 5256). */
static void cmd_uid(struct imap_session *s, const struct imap_command *c)
{
	const struct imap_arg *sub = c->nargs > 0 ? &c->args[0] : NULL;

	if (sub == NULL || sub->type != IMAP_ARG_ATOM) {
		imap_cmd_bad(s, "UID needs a command");
		return;
	}
	s->cmd_uid = true;
	snprintf(s->cmd_name, sizeof(s->cmd_name), "UID %.20s", sub->str);
	for (char *p = s->cmd_name; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	s->expunge_ok = true; /* RFC 3501 5.5: UID commands may see EXPUNGE */
	if (strcasecmp(sub->str, "FETCH") == 0)
		imap_cmd_fetch(s, c, 1);
	else if (strcasecmp(sub->str, "STORE") == 0)
		imap_cmd_store(s, c, 1);
	else if (strcasecmp(sub->str, "SEARCH") == 0)
		imap_cmd_search(s, c, 1, false);
	else if (strcasecmp(sub->str, "SORT") == 0)
		imap_cmd_search(s, c, 1, true);
	else if (strcasecmp(sub->str, "COPY") == 0)
		imap_cmd_copy(s, c, 1, false);
	else if (strcasecmp(sub->str, "MOVE") == 0)
		imap_cmd_copy(s, c, 1, true);
	else if (strcasecmp(sub->str, "EXPUNGE") == 0)
		imap_cmd_expunge(s, c, 1);
	else
		imap_cmd_bad(s, "Unknown UID command");
}

enum {
	ST_NOAUTH = 1 << IMAP_STATE_NOAUTH,
	ST_AUTH = 1 << IMAP_STATE_AUTH,
	ST_SELECTED = 1 << IMAP_STATE_SELECTED,
	ST_ANY = ST_NOAUTH | ST_AUTH | ST_SELECTED,
	ST_LOGGED_IN = ST_AUTH | ST_SELECTED,
};

struct cmd_def {
	const char *name;
	unsigned states;
	bool expunge_ok; /* RFC 3501 5.5: not for FETCH, STORE, SEARCH ... */
	void (*fn)(struct imap_session *s, const struct imap_command *c);
};

static const struct cmd_def commands[] = {
        {"CAPABILITY", ST_ANY, true, cmd_capability},
        {"NOOP", ST_ANY, true, cmd_noop},
        {"LOGOUT", ST_ANY, true, cmd_logout},
        {"ID", ST_ANY, true, cmd_id},
        {"STARTTLS", ST_NOAUTH, true, imap_cmd_starttls},
        {"LOGIN", ST_NOAUTH, true, imap_cmd_login},
        {"AUTHENTICATE", ST_NOAUTH, true, imap_cmd_authenticate},
        {"ENABLE", ST_LOGGED_IN, true, cmd_enable},
        {"SELECT", ST_LOGGED_IN, true, cmd_select},
        {"EXAMINE", ST_LOGGED_IN, true, cmd_examine},
        {"CREATE", ST_LOGGED_IN, true, imap_cmd_create},
        {"DELETE", ST_LOGGED_IN, true, imap_cmd_delete},
        {"RENAME", ST_LOGGED_IN, true, imap_cmd_rename},
        {"SUBSCRIBE", ST_LOGGED_IN, true, cmd_subscribe},
        {"UNSUBSCRIBE", ST_LOGGED_IN, true, cmd_unsubscribe},
        {"LIST", ST_LOGGED_IN, true, cmd_list},
        {"LSUB", ST_LOGGED_IN, true, cmd_lsub},
        {"STATUS", ST_LOGGED_IN, true, imap_cmd_status},
        {"APPEND", ST_LOGGED_IN, true, imap_cmd_append},
        {"NAMESPACE", ST_LOGGED_IN, true, cmd_namespace},
        {"IDLE", ST_LOGGED_IN, true, imap_cmd_idle},
        {"GETQUOTA", ST_LOGGED_IN, true, cmd_getquota},
        {"GETQUOTAROOT", ST_LOGGED_IN, true, cmd_getquotaroot},
        {"SETQUOTA", ST_LOGGED_IN, true, cmd_setquota},
        {"CHECK", ST_SELECTED, true, cmd_noop},
        {"CLOSE", ST_SELECTED, true, cmd_close},
        {"UNSELECT", ST_SELECTED, true, cmd_unselect},
        {"EXPUNGE", ST_SELECTED, true, cmd_expunge},
        {"SEARCH", ST_SELECTED, false, cmd_search},
        {"SORT", ST_SELECTED, false, cmd_sort},
        {"FETCH", ST_SELECTED, false, cmd_fetch},
        {"STORE", ST_SELECTED, false, cmd_store},
        {"COPY", ST_SELECTED, false, cmd_copy},
        {"MOVE", ST_SELECTED, false, cmd_move},
        {"UID", ST_SELECTED, true, cmd_uid},
};

/* Command rate limit: a token bucket refilled rate_per_sec a second. */
static bool rate_ok(struct imap_session *s)
{
	uint64_t now, cap;

	if (s->cfg.rate_burst == 0 || s->ops->now_ms == NULL || s->ops->throttle == NULL)
		return true;
	now = s->ops->now_ms(s->ctx);
	cap = (uint64_t)s->cfg.rate_burst * 1000;
	if (now > s->tokens_at) {
		s->tokens += (now - s->tokens_at) * s->cfg.rate_per_sec;
		if (s->tokens > cap)
			s->tokens = cap;
	}
	s->tokens_at = now;
	if (s->tokens >= 1000) {
		s->throttled = false;
		return true;
	}
	if (!s->throttled && s->ops->abuse != NULL)
		s->ops->abuse(s->ctx, IMAP_ABUSE_RATE);
	s->throttled = true;
	s->ops->throttle(s->ctx,
	                 s->cfg.rate_per_sec ? (1000 - s->tokens) / s->cfg.rate_per_sec + 1 : 1000);
	return false;
}

static void dispatch(struct imap_session *s, const struct imap_command *c)
{
	const struct cmd_def *d = NULL;

	s->busy = true;
	s->tag = xstrdup(c->tag);
	snprintf(s->cmd_name, sizeof(s->cmd_name), "%s", c->name);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, c->name) == 0) {
			d = &commands[i];
			break;
		}
	}
	if (s->tokens >= 1000)
		s->tokens -= 1000;
	if (d == NULL) {
		imap_append_spools_abort(s);
		imap_cmd_bad(s, "Unknown command");
		return;
	}
	/* streamed literals only ever belong to APPEND */
	if (strcmp(c->name, "APPEND") != 0)
		imap_append_spools_abort(s);
	if (!(d->states & (1u << s->state))) {
		if (s->state == IMAP_STATE_NOAUTH)
			imap_cmd_bad(s, "Please authenticate first");
		else if (d->states == ST_NOAUTH)
			imap_cmd_bad(s, "Already authenticated");
		else
			imap_cmd_bad(s, "No mailbox selected");
		return;
	}
	s->expunge_ok = d->expunge_ok;
	d->fn(s, c);
}

/* --- input --------------------------------------------------------------------------- */

static bool can_take(const struct imap_session *s)
{
	if (s->op != IMAP_OP_NONE || s->closing || buf_len(&s->out) >= IMAP_OUT_HIGH)
		return false;
	switch (s->mode) {
	case IMAP_MODE_COMMAND:
		return !s->busy;
	case IMAP_MODE_AUTH:
	case IMAP_MODE_IDLE:
		return true;
	case IMAP_MODE_TLS_WAIT:
	case IMAP_MODE_CLOSED:
		break;
	}
	return false;
}

static bool parser_idle_point(const struct imap_session *s)
{
	return s->nspools == 0 && !s->spool_open;
}

size_t imap_session_input(struct imap_session *s, const uint8_t *p, size_t n)
{
	size_t used = 0;

	if (s->closing || s->mode == IMAP_MODE_CLOSED || s->mode == IMAP_MODE_TLS_WAIT)
		return n; /* dropped (RFC 3207 6 style: nothing after STARTTLS) */
	while (used < n && can_take(s)) {
		size_t c = 0;
		enum imap_parse_status st;
		const char *line;

		switch (s->mode) {
		case IMAP_MODE_AUTH:
			st = imap_parser_line(s->parser, p + used, n - used, &c, &line);
			used += c;
			if (st == IMAP_PARSE_COMMAND)
				imap_auth_line(s, line);
			else if (st == IMAP_PARSE_BAD)
				imap_auth_line(s, NULL);
			continue;
		case IMAP_MODE_IDLE:
			st = imap_parser_line(s->parser, p + used, n - used, &c, &line);
			used += c;
			if (st == IMAP_PARSE_COMMAND)
				imap_idle_line(s, line);
			else if (st == IMAP_PARSE_BAD)
				imap_idle_line(s, NULL);
			continue;
		default:
			break;
		}
		/* the rate limit applies where a new command starts */
		if (parser_idle_point(s) && !rate_ok(s))
			break;
		st = imap_parser_feed(s->parser, p + used, n - used, &c);
		used += c;
		switch (st) {
		case IMAP_PARSE_NEED_MORE:
			break;
		case IMAP_PARSE_COMMAND:
			dispatch(s, imap_parser_command(s->parser));
			break;
		case IMAP_PARSE_CONTINUATION:
			/* RFC 3501 7.5: the client waits for this before the
			 * octets of a synchronising literal */
			imap_puts(s, "+ OK\r\n");
			break;
		case IMAP_PARSE_LITERAL_CHUNK: {
			const uint8_t *d;
			size_t len;
			bool last;

			imap_parser_chunk(s->parser, &d, &len, &last);
			imap_append_chunk(s, d, len, last);
			break;
		}
		case IMAP_PARSE_BAD:
			parse_bad(s, imap_parser_tag(s->parser), imap_parser_error(s->parser));
			break;
		case IMAP_PARSE_FATAL:
			imap_close(s, imap_parser_error(s->parser));
			used = n;
			break;
		}
	}
	if (s->closing)
		return n;
	return used;
}

struct buf *imap_session_outbuf(struct imap_session *s)
{
	return &s->out;
}

void imap_session_writable(struct imap_session *s)
{
	if (s->fetch != NULL && s->op == IMAP_OP_NONE && !s->closing)
		imap_fetch_resume(s);
	/* an idle connection keeps no output buffer (a FETCH may have grown
	 * it to IMAP_OUT_HIGH) */
	buf_shrink_if_empty(&s->out);
}

/* --- life cycle ------------------------------------------------------------------------ */

struct imap_session *imap_session_new(const struct imap_session_config *cfg,
                                      const struct imap_store_ops *ops, void *ctx)
{
	struct imap_session *s = xcalloc(1, sizeof(*s));
	struct imap_parser_limits lim;

	s->cfg = *cfg;
	s->hostname = xstrdup(cfg->hostname != NULL ? cfg->hostname : "localhost");
	s->cfg.hostname = s->hostname;
	if (s->cfg.max_line == 0)
		s->cfg.max_line = 64 * 1024;
	if (s->cfg.max_message == 0)
		s->cfg.max_message = 64ULL * 1024 * 1024;
	if (s->cfg.max_bad == 0)
		s->cfg.max_bad = 20;
	if (s->cfg.max_auth_failures == 0)
		s->cfg.max_auth_failures = 3;
	s->ops = ops;
	s->ctx = ctx;
	imap_parser_limits_default(&lim);
	lim.max_line = s->cfg.max_line;
	lim.max_literal = s->cfg.max_message;
	lim.max_command = s->cfg.max_message + 4 * (uint64_t)s->cfg.max_line;
	lim.stream_literal_min = IMAP_STREAM_MIN;
	s->parser = imap_parser_new(&lim);
	buf_init(&s->out, 0);
	s->tokens = (uint64_t)s->cfg.rate_burst * 1000;
	if (ops->now_ms != NULL)
		s->tokens_at = ops->now_ms(ctx);
	return s;
}

void imap_session_free(struct imap_session **sp)
{
	struct imap_session *s = *sp;

	if (s == NULL)
		return;
	imap_append_spools_abort(s);
	imap_fetch_job_free(s);
	imap_list_job_free(s);
	imap_append_job_free(s);
	imap_search_job_free(s);
	imap_copy_job_free(s);
	imap_selected_clear(s, false);
	imap_parser_free(&s->parser);
	buf_free(&s->out);
	free(s->spools);
	free(s->spool_sizes);
	free(s->spool_failed);
	free(s->qresync_known);
	free(s->tag);
	free(s->final);
	free(s->sasl_tag);
	free(s->user);
	free(s->pending_name);
	free(s->hostname);
	free(s);
	*sp = NULL;
}

void imap_session_set_tls(struct imap_session *s)
{
	s->tls = true;
}

void imap_session_greet(struct imap_session *s)
{
	if (s->greeted)
		return;
	s->greeted = true;
	imap_puts(s, "* OK [CAPABILITY ");
	imap_capability_write(s, &s->out);
	imap_printf(s, "] %s IMAP ready\r\n", s->cfg.hostname);
}

void imap_session_shutdown(struct imap_session *s, enum imap_close_reason reason)
{
	static const char *const text[] = {
	        [IMAP_CLOSE_TIMEOUT] = "Autologout; idle for too long",
	        [IMAP_CLOSE_SHUTDOWN] = "Server shutting down",
	        [IMAP_CLOSE_KICKED] = "Session terminated",
	};

	if (s->mode == IMAP_MODE_CLOSED)
		return;
	/* an outstanding request is the glue's to cancel; if its completion
	 * still arrives it is ignored (complete()) */
	s->op = IMAP_OP_NONE;
	imap_close(s, text[reason]);
}

void imap_session_notify(struct imap_session *s)
{
	if (s->state != IMAP_STATE_SELECTED || s->mode == IMAP_MODE_CLOSED)
		return;
	s->sel.dirty = true;
	if (s->mode == IMAP_MODE_IDLE && s->op == IMAP_OP_NONE)
		imap_idle_notify(s);
}

void imap_session_idle_tick(struct imap_session *s)
{
	if (s->mode == IMAP_MODE_IDLE && !s->closing)
		imap_puts(s, "* OK Still here\r\n");
}

bool imap_session_closing(const struct imap_session *s)
{
	return s->closing;
}

bool imap_session_pending(const struct imap_session *s)
{
	return s->op != IMAP_OP_NONE;
}

bool imap_session_idling(const struct imap_session *s)
{
	return s->mode == IMAP_MODE_IDLE;
}

bool imap_session_tls_wait(const struct imap_session *s)
{
	return s->mode == IMAP_MODE_TLS_WAIT;
}

enum imap_state imap_session_state(const struct imap_session *s)
{
	return s->state;
}

const char *imap_session_user(const struct imap_session *s)
{
	return s->user;
}

/* --- completions ------------------------------------------------------------------------ */

void imap_session_list_done(struct imap_session *s, enum imap_store_status st,
                            const struct imap_mbox_entry *v, size_t n)
{
	if (!complete(s, IMAP_OP_LIST))
		return;
	s->k_list(s, st, v, n);
}

void imap_session_op_done(struct imap_session *s, enum imap_store_status st)
{
	if (!complete(s, IMAP_OP_MBOX))
		return;
	s->k_op(s, st);
}

void imap_session_status_done(struct imap_session *s, enum imap_store_status st,
                              const struct imap_status_info *info)
{
	if (!complete(s, IMAP_OP_STATUS))
		return;
	s->k_status(s, st, info);
}

void imap_session_fetch_done(struct imap_session *s, enum imap_store_status st,
                             const struct imap_msg_meta *rows, size_t n)
{
	if (!complete(s, IMAP_OP_FETCH))
		return;
	/* the store's answers are the messages' current state: remember
	 * their flags (mailbox/imap/fetch.c answers FLAGS from them); one
	 * newer than the last sync means another session wrote: sync at the
	 * next chance, and until then ask the store, so that what the client
	 * sees never goes back (RFC 7162 3.1) */
	if (st == IMAP_STORE_OK)
		for (size_t i = 0; i < n; i++) {
			imap_msgmap_note(&s->sel.map, rows[i].uid, rows[i].modseq, rows[i].flags,
			                 rows[i].nflags);
			if (rows[i].modseq > s->sel.modseq)
				s->sel.dirty = true;
		}
	s->k_fetch(s, st, rows, n);
}

void imap_session_store_done(struct imap_session *s, enum imap_store_status st,
                             const struct imap_flag_update *v, size_t n)
{
	if (!complete(s, IMAP_OP_STORE))
		return;
	if (st == IMAP_STORE_OK)
		for (size_t i = 0; i < n; i++)
			imap_msgmap_note(&s->sel.map, v[i].uid, v[i].modseq, v[i].flags,
			                 v[i].nflags);
	s->k_store(s, st, v, n);
}

void imap_session_changes_done(struct imap_session *s, enum imap_store_status st,
                               const struct imap_change *v, size_t n, uint64_t highestmodseq,
                               uint32_t uidvalidity)
{
	if (!complete(s, IMAP_OP_CHANGES))
		return;
	/* an expunged message still in the map (until it is announced) is no
	 * longer answered for from what was known */
	if (st == IMAP_STORE_OK && uidvalidity == s->sel.uidvalidity)
		for (size_t i = 0; i < n; i++) {
			if (v[i].expunged)
				imap_msgmap_unknown(&s->sel.map, v[i].uid);
			else
				imap_msgmap_note(&s->sel.map, v[i].uid, v[i].modseq, v[i].flags,
				                 v[i].nflags);
		}
	s->k_changes(s, st, v, n, highestmodseq, uidvalidity);
}

/* The other completions live with their commands: auth.c (auth, tls),
 * select.c (select), fetch.c (read), expunge.c (expunge, copy),
 * append.c (append), search_cmd.c (search), quota.c (quota). */
bool imap_session_complete(struct imap_session *s, enum imap_op op)
{
	return complete(s, op);
}
