/*
 * mailbox/mime/address.c -- RFC 5322 address lists as IMAP sees them.
 *
 * The value is tokenised once (atoms, quoted strings, domain literals,
 * specials; comments are remembered on the token that follows them), then
 * read with one token of lookahead.  The reading is lenient in the ways
 * Dovecot's is, since clients compare our ENVELOPE with what they see from
 * other servers: a display name is the phrase with quoted strings unquoted
 * and runs of whitespace collapsed; without one, a comment after the
 * addr-spec ("user@host (Real Name)") becomes the name; a missing local
 * part or domain is reported as MISSING_MAILBOX / MISSING_DOMAIN rather than
 * NIL, because a NIL host would read as a group marker (RFC 3501 7.4.2).
 */
#include "mailbox/mime/mime_private.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "shared/xmalloc.h"

enum tok_type { T_END, T_ATOM, T_QUOTED, T_DLIT, T_SPECIAL };

struct tok {
	enum tok_type type;
	char ch;        /* T_SPECIAL */
	char *text;     /* T_ATOM, T_QUOTED (unquoted), T_DLIT (with brackets) */
	bool ws_before; /* whitespace or a comment precedes it */
	char *comment;  /* text of the last comment just before it */
};

struct toks {
	struct tok *v;
	size_t n, i;
};

static bool is_special(unsigned char c)
{
	return strchr("()<>[]:;@\\,.\"", c) != NULL;
}

static void tok_push(struct toks *t, enum tok_type type, char ch, char *text, bool ws, char *cm)
{
	t->v = xreallocarray(t->v, t->n + 1, sizeof(*t->v));
	t->v[t->n] = (struct tok){type, ch, text, ws, cm};
	t->n++;
}

static void tokenize(const char *s, struct toks *t)
{
	bool ws = false;
	char *comment = NULL;
	struct buf b;

	buf_init(&b, 0);
	for (;;) {
		unsigned char c = (unsigned char)*s;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			ws = true;
			s++;
			continue;
		}
		if (c == '(') {
			int depth = 0;

			buf_reset(&b);
			do {
				if (*s == '\\' && s[1] != '\0') {
					s++;
					buf_append(&b, s, 1);
				} else if (*s == '(') {
					if (depth > 0)
						buf_append(&b, s, 1);
					depth++;
				} else if (*s == ')') {
					depth--;
					if (depth > 0)
						buf_append(&b, s, 1);
				} else {
					buf_append(&b, s, 1);
				}
				s++;
			} while (depth > 0 && *s != '\0');
			free(comment);
			buf_append(&b, "", 1);
			comment = xstrdup((const char *)buf_ptr(&b));
			ws = true;
			continue;
		}
		if (c == '\0') {
			tok_push(t, T_END, 0, NULL, ws, comment);
			break;
		}
		buf_reset(&b);
		if (c == '"') {
			s++;
			while (*s != '\0' && *s != '"') {
				if (*s == '\\' && s[1] != '\0')
					s++;
				buf_append(&b, s, 1);
				s++;
			}
			if (*s == '"')
				s++;
			buf_append(&b, "", 1);
			tok_push(t, T_QUOTED, 0, xstrdup((const char *)buf_ptr(&b)), ws, comment);
		} else if (c == '[') {
			const char *e = s + 1;

			while (*e != '\0' && *e != ']') {
				if (*e == '\\' && e[1] != '\0')
					e++;
				e++;
			}
			if (*e == ']')
				e++;
			tok_push(t, T_DLIT, 0, xstrndup(s, (size_t)(e - s)), ws, comment);
			s = e;
		} else if (is_special(c) || c < 0x20 || c == 0x7f) {
			/* a lone ']' or '\' or a control is treated as a special */
			tok_push(t, T_SPECIAL, (char)c, NULL, ws, comment);
			s++;
		} else {
			const char *e = s;

			while (*e != '\0' && !is_special((unsigned char)*e) &&
			       (unsigned char)*e > 0x20 && *e != 0x7f)
				e++;
			tok_push(t, T_ATOM, 0, xstrndup(s, (size_t)(e - s)), ws, comment);
			s = e;
		}
		ws = false;
		comment = NULL;
	}
	buf_free(&b);
}

static void toks_free(struct toks *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].text);
		free(t->v[i].comment);
	}
	free(t->v);
}

static const struct tok *peek(const struct toks *t)
{
	return &t->v[t->i];
}

static bool is_sp(const struct tok *k, char c)
{
	return k->type == T_SPECIAL && k->ch == c;
}

static void advance(struct toks *t)
{
	if (t->v[t->i].type != T_END)
		t->i++;
}

static void add(struct mime_addresses *out, struct mime_address a)
{
	out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
	out->v[out->n++] = a;
}

static char *take(struct buf *b)
{
	char *r;

	buf_append(b, "", 1);
	r = xstrdup((const char *)buf_ptr(b));
	buf_reset(b);
	return r;
}

/* domain: atoms, dots and domain literals up to a delimiter */
static char *read_domain(struct toks *t, struct buf *b)
{
	bool want_word = true;

	for (;;) {
		const struct tok *k = peek(t);

		/* words and dots alternate; "host junk" ends at "host" */
		if (want_word && (k->type == T_ATOM || k->type == T_DLIT || k->type == T_QUOTED))
			buf_puts(b, k->text);
		else if (is_sp(k, '.'))
			buf_puts(b, ".");
		else
			break;
		want_word = is_sp(k, '.');
		advance(t);
	}
	return take(b);
}

static char *nonempty_or(char *s, const char *dflt)
{
	if (s != NULL && *s != '\0')
		return s;
	free(s);
	return xstrdup(dflt);
}

/* Parse one mailbox (or, when group_ok, a group) at the cursor. */
static void parse_one(struct toks *t, bool group_ok, struct mime_addresses *out)
{
	struct buf phrase, local, b;
	struct mime_address a = {0};
	const struct tok *k;
	bool any = false;

	buf_init(&phrase, 0);
	buf_init(&local, 0);
	buf_init(&b, 0);
	/* phrase (display name, group name) or local part: same tokens */
	for (;;) {
		k = peek(t);
		if (k->type == T_ATOM || k->type == T_QUOTED) {
			if (buf_len(&phrase) > 0 && k->ws_before)
				buf_puts(&phrase, " ");
			buf_puts(&phrase, k->text);
			buf_puts(&local, k->text);
		} else if (is_sp(k, '.')) {
			if (buf_len(&phrase) > 0 && k->ws_before)
				buf_puts(&phrase, " ");
			buf_puts(&phrase, ".");
			buf_puts(&local, ".");
		} else {
			break;
		}
		any = true;
		advance(t);
	}
	k = peek(t);
	if (is_sp(k, ':') && group_ok) {
		/* RFC 5322 3.4: group = display-name ":" [group-list] ";" */
		advance(t);
		a.mailbox = take(&phrase);
		a.is_group_start = true;
		add(out, a);
		for (;;) {
			k = peek(t);
			if (k->type == T_END)
				break;
			if (is_sp(k, ';')) {
				advance(t);
				break;
			}
			if (is_sp(k, ',')) {
				advance(t);
				continue;
			}
			size_t before = t->i;
			parse_one(t, false, out);
			if (t->i == before)
				advance(t);
		}
		add(out, (struct mime_address){.is_group_end = true});
		goto done;
	}
	if (is_sp(k, '<')) {
		/* name-addr = [display-name] angle-addr */
		advance(t);
		a.name = buf_len(&phrase) ? take(&phrase) : NULL;
		if (is_sp(peek(t), '@')) {
			/* RFC 5322 4.4 obs-route: "@a,@b:" */
			while ((k = peek(t))->type != T_END && !is_sp(k, ':') && !is_sp(k, '>')) {
				if (k->type == T_SPECIAL)
					buf_append(&b, &k->ch, 1);
				else
					buf_puts(&b, k->text);
				advance(t);
			}
			if (is_sp(peek(t), ':'))
				advance(t);
			a.adl = take(&b);
		}
		while ((k = peek(t))->type == T_ATOM || k->type == T_QUOTED || is_sp(k, '.')) {
			buf_puts(&b, k->type == T_SPECIAL ? "." : k->text);
			advance(t);
		}
		a.mailbox = take(&b);
		if (is_sp(peek(t), '@')) {
			advance(t);
			a.host = read_domain(t, &b);
		}
		while ((k = peek(t))->type != T_END && !is_sp(k, '>') && !is_sp(k, ',') &&
		       !is_sp(k, ';'))
			advance(t);
		if (is_sp(peek(t), '>'))
			advance(t);
	} else if (is_sp(k, '@')) {
		/* addr-spec; a comment after it may carry the name */
		advance(t);
		a.mailbox = take(&local);
		a.host = read_domain(t, &b);
		if (peek(t)->comment != NULL && *peek(t)->comment != '\0')
			a.name = xstrdup(peek(t)->comment);
	} else if (any) {
		a.mailbox = take(&local);
	} else {
		goto done;
	}
	a.mailbox = nonempty_or(a.mailbox, "MISSING_MAILBOX");
	a.host = nonempty_or(a.host, "MISSING_DOMAIN");
	add(out, a);
	/* skip junk up to the next separator */
	while ((k = peek(t))->type != T_END && !is_sp(k, ',') && !(is_sp(k, ';') && !group_ok))
		advance(t);
done:
	buf_free(&phrase);
	buf_free(&local);
	buf_free(&b);
}

void mime_address_parse(const char *s, struct mime_addresses *out)
{
	struct toks t = {0};

	out->v = NULL;
	out->n = 0;
	tokenize(s, &t);
	while (peek(&t)->type != T_END) {
		size_t before = t.i;

		if (is_sp(peek(&t), ',')) {
			advance(&t);
			continue;
		}
		parse_one(&t, true, out);
		if (t.i == before)
			advance(&t);
	}
	toks_free(&t);
}

void mime_address_free(struct mime_addresses *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i].name);
		free(a->v[i].adl);
		free(a->v[i].mailbox);
		free(a->v[i].host);
	}
	free(a->v);
	a->v = NULL;
	a->n = 0;
}

void mime_address_display(const struct mime_addresses *a, struct buf *b)
{
	bool first = true;

	for (size_t i = 0; i < a->n; i++) {
		const struct mime_address *x = &a->v[i];

		if (x->is_group_end) {
			buf_puts(b, ";");
			first = false;
			continue;
		}
		if (!first)
			buf_puts(b, a->v[i - 1].is_group_start ? " " : ", ");
		first = false;
		if (x->is_group_start) {
			mime_rfc2047_decode(x->mailbox, strlen(x->mailbox), b);
			buf_puts(b, ":");
			continue;
		}
		if (x->name != NULL && *x->name != '\0') {
			mime_rfc2047_decode(x->name, strlen(x->name), b);
			buf_puts(b, " <");
		}
		mime_charset_utf8_or_latin1(x->mailbox, strlen(x->mailbox), b);
		buf_puts(b, "@");
		mime_charset_utf8_or_latin1(x->host, strlen(x->host), b);
		if (x->name != NULL && *x->name != '\0')
			buf_puts(b, ">");
	}
}
