/*
 * mailbox/imap/parser.c -- the byte-driven IMAP command state machine.
 *
 * One state per grammar position (tag, name, between arguments, inside an
 * atom, a quoted string, a literal header, literal data, a section spec, a
 * partial); every octet moves the machine once, so feeding a command one
 * byte at a time costs the same as feeding it whole.  Literal data is the
 * exception: it is copied (or handed out) in runs.  Finished arguments are
 * appended to the open list on a small stack of builders; a closed list
 * becomes one LIST argument of its parent, so no pointer into a growing
 * array is ever kept.  Bounds are checked as octets arrive: line length
 * (literals excluded, RFC 9051 4: servers should accept at least 8192
 * octets), the announced literal size before its data, the total command
 * size, list depth and argument count.
 */
#include "mailbox/imap/parser.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/buf.h"
#include "shared/xmalloc.h"

enum state {
	S_START,
	S_TAG,
	S_NAME,
	S_ARGS,
	S_ATOM,
	S_QUOTED,
	S_QUOTED_ESC,
	S_LIT_TILDE,
	S_LIT_LEN,
	S_LIT_CLOSE,
	S_LIT_CR,
	S_LIT_LF,
	S_LIT_DATA,
	S_SEC_SPEC,
	S_SEC_SP,
	S_SEC_LIST,
	S_SEC_ATOM,
	S_SEC_QUOTED,
	S_SEC_QUOTED_ESC,
	S_SEC_END,
	S_SEC_AFTER,
	S_PARTIAL,
	S_CR,
	S_SKIP,
	S_SKIP_LIT,
	S_DEAD,
};

struct builder {
	struct imap_arg *v;
	size_t n, cap;
};

struct imap_parser {
	struct imap_parser_limits lim;
	enum state state;
	bool need_sep;
	size_t line_len;
	uint64_t cmd_len;
	size_t nargs_total;

	struct buf tok; /* the token being read */
	char *tag;      /* tag of the command being read */
	char *name;

	struct builder *stack; /* [0] top level, [depth] innermost list */
	unsigned depth;

	/* literal being read */
	uint64_t lit_size, lit_left;
	unsigned lit_digits;
	bool lit_overflow, lit_nonsync, lit_binary, lit_streamed;

	/* section being read */
	struct imap_arg sec;
	struct buf sec_spec, sec_raw;
	struct builder fields;
	bool partial_dot;
	unsigned partial_digits;

	/* skipping a bad line: its last octets, to spot "{n+}" at the end */
	char tail[32];
	size_t ntail;
	uint64_t skip_left;

	/* results of the last call */
	struct imap_command *cmd;
	char *err_tag;
	const char *err;
	const uint8_t *chunk;
	size_t chunk_len;
	bool chunk_last;

	struct buf line; /* imap_parser_line() */
};

void imap_parser_limits_default(struct imap_parser_limits *lim)
{
	lim->max_line = 64 * 1024;
	lim->max_literal = 64ULL * 1024 * 1024;
	lim->max_command = 80ULL * 1024 * 1024;
	lim->stream_literal_min = 0;
	lim->max_depth = 32;
	lim->max_args = 100000;
}

struct imap_parser *imap_parser_new(const struct imap_parser_limits *lim)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));

	if (lim != NULL)
		p->lim = *lim;
	else
		imap_parser_limits_default(&p->lim);
	if (p->lim.max_line < 64)
		p->lim.max_line = 64;
	if (p->lim.max_depth == 0)
		p->lim.max_depth = 1;
	p->stack = xcalloc(p->lim.max_depth + 1, sizeof(*p->stack));
	buf_init(&p->tok, 0);
	buf_init(&p->sec_spec, 0);
	buf_init(&p->sec_raw, 0);
	buf_init(&p->line, 0);
	p->state = S_START;
	return p;
}

static void arg_free(struct imap_arg *a)
{
	free(a->str);
	free(a->section);
	free(a->raw);
	for (size_t i = 0; i < a->nlist; i++)
		arg_free(&a->list[i]);
	free(a->list);
	memset(a, 0, sizeof(*a));
}

static void builder_free(struct builder *b)
{
	for (size_t i = 0; i < b->n; i++)
		arg_free(&b->v[i]);
	free(b->v);
	memset(b, 0, sizeof(*b));
}

static void command_free(struct imap_command **cp)
{
	struct imap_command *c = *cp;

	if (c == NULL)
		return;
	free(c->tag);
	free(c->name);
	for (size_t i = 0; i < c->nargs; i++)
		arg_free(&c->args[i]);
	free(c->args);
	free(c);
	*cp = NULL;
}

/* Drop everything of the command being read (not the last results). */
static void clear_current(struct imap_parser *p)
{
	for (unsigned i = 0; i <= p->depth; i++)
		builder_free(&p->stack[i]);
	p->depth = 0;
	builder_free(&p->fields);
	arg_free(&p->sec);
	free(p->tag);
	free(p->name);
	p->tag = p->name = NULL;
	buf_reset(&p->tok);
	p->line_len = 0;
	p->cmd_len = 0;
	p->nargs_total = 0;
	p->need_sep = false;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	clear_current(p);
	free(p->stack);
	command_free(&p->cmd);
	free(p->err_tag);
	buf_free(&p->tok);
	buf_free(&p->sec_spec);
	buf_free(&p->sec_raw);
	buf_free(&p->line);
	free(p);
	*pp = NULL;
}

const struct imap_command *imap_parser_command(const struct imap_parser *p)
{
	return p->cmd;
}

uint64_t imap_parser_literal_size(const struct imap_parser *p)
{
	return p->lit_size;
}

void imap_parser_chunk(const struct imap_parser *p, const uint8_t **data_r, size_t *len_r,
                       bool *last_r)
{
	*data_r = p->chunk;
	*len_r = p->chunk_len;
	*last_r = p->chunk_last;
}

const char *imap_parser_error(const struct imap_parser *p)
{
	return p->err;
}

const char *imap_parser_tag(const struct imap_parser *p)
{
	return p->err_tag;
}

bool imap_arg_atom_is(const struct imap_arg *a, const char *s)
{
	return (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL) && strcasecmp(a->str, s) == 0;
}

bool imap_arg_is_astring(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL || a->type == IMAP_ARG_STRING ||
	       a->type == IMAP_ARG_LITERAL;
}

/* ---- character classes (RFC 3501 9) ---- */

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool is_tag_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\+", c) == NULL;
}

/* What we accept inside an atom argument: ATOM-CHAR plus list-wildcards,
 * resp-specials and "\" (flags), so that sequence sets ("1:*"), LIST
 * patterns and "\Seen" are single atoms. */
static bool is_arg_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* ---- building ---- */

static enum imap_parse_status fail(struct imap_parser *p, unsigned char c, const char *why,
                                   bool fatal)
{
	p->err = why;
	free(p->err_tag);
	p->err_tag = p->tag;
	p->tag = NULL;
	clear_current(p);
	p->ntail = 0;
	if (fatal)
		p->state = S_DEAD;
	else if (c == '\n')
		p->state = S_START;
	else
		p->state = S_SKIP;
	return fatal ? IMAP_PARSE_FATAL : IMAP_PARSE_BAD;
}

static bool builder_add(struct imap_parser *p, struct builder *b, struct imap_arg *a)
{
	if (++p->nargs_total > p->lim.max_args) {
		arg_free(a);
		return false;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 4;
		b->v = xreallocarray(b->v, b->cap, sizeof(*b->v));
	}
	b->v[b->n++] = *a;
	memset(a, 0, sizeof(*a));
	return true;
}

static char *tok_take(struct imap_parser *p, size_t *len_r)
{
	size_t n = buf_len(&p->tok);
	char *s = xmalloc(n + 1);

	if (n)
		memcpy(s, buf_ptr(&p->tok), n);
	s[n] = '\0';
	if (len_r)
		*len_r = n;
	buf_reset(&p->tok);
	return s;
}

static bool add_token_arg(struct imap_parser *p, enum imap_arg_type type, struct builder *b)
{
	struct imap_arg a = {.type = type};

	a.str = tok_take(p, &a.len);
	if (type == IMAP_ARG_ATOM && strcasecmp(a.str, "NIL") == 0)
		a.type = IMAP_ARG_NIL;
	for (size_t i = 0; i < a.len && !a.eight_bit; i++)
		a.eight_bit = (unsigned char)a.str[i] >= 0x80;
	if (type == IMAP_ARG_LITERAL) {
		a.literal_size = a.len;
		a.nonsync = p->lit_nonsync;
		a.binary = p->lit_binary;
		a.has_nul = memchr(a.str, 0, a.len) != NULL;
	}
	p->need_sep = true;
	return builder_add(p, b, &a);
}

static bool is_section_name(const char *s, size_t n)
{
	static const char *const names[] = {"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK",
	                                    "BINARY.SIZE"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0)
			return true;
	return false;
}

static char *buf_take_str(struct buf *b)
{
	size_t n = buf_len(b);
	char *s = xmalloc(n + 1);

	if (n)
		memcpy(s, buf_ptr(b), n);
	s[n] = '\0';
	buf_reset(b);
	return s;
}

static bool finish_section(struct imap_parser *p)
{
	p->sec.type = IMAP_ARG_SECTION;
	p->sec.section = buf_take_str(&p->sec_spec);
	p->sec.raw = buf_take_str(&p->sec_raw);
	p->sec.list = p->fields.v;
	p->sec.nlist = p->fields.n;
	memset(&p->fields, 0, sizeof(p->fields));
	p->need_sep = true;
	return builder_add(p, &p->stack[p->depth], &p->sec);
}

static enum imap_parse_status finish_command(struct imap_parser *p)
{
	struct imap_command *c = xcalloc(1, sizeof(*c));

	c->tag = p->tag;
	c->name = p->name;
	p->tag = p->name = NULL;
	for (char *s = c->name; *s; s++)
		*s = (char)toupper((unsigned char)*s);
	c->args = p->stack[0].v;
	c->nargs = p->stack[0].n;
	memset(&p->stack[0], 0, sizeof(p->stack[0]));
	p->cmd = c;
	clear_current(p);
	p->state = S_START;
	return IMAP_PARSE_COMMAND;
}

/* "{n}" or "{n+}" at the end of a skipped line: size of what follows */
static bool tail_literal(struct imap_parser *p, uint64_t *n_r, bool *nonsync_r)
{
	size_t n = p->ntail, i;
	uint64_t v = 0;

	if (n > 0 && p->tail[n - 1] == '\r')
		n--;
	if (n < 3 || p->tail[n - 1] != '}')
		return false;
	n--;
	*nonsync_r = p->tail[n - 1] == '+';
	if (*nonsync_r)
		n--;
	for (i = n; i > 0 && isdigit((unsigned char)p->tail[i - 1]); i--)
		;
	if (i == n || i == 0 || p->tail[i - 1] != '{' || n - i > 18)
		return false;
	for (size_t k = i; k < n; k++)
		v = v * 10 + (uint64_t)(p->tail[k] - '0');
	*n_r = v;
	return true;
}

/* ---- the machine ---- */

/* Run one octet through the token states; returns NEED_MORE to go on. */
static enum imap_parse_status step(struct imap_parser *p, unsigned char c)
{
	struct builder *top = &p->stack[p->depth];

again:
	switch (p->state) {
	case S_START:
		if (c == '\r' || c == '\n')
			return IMAP_PARSE_NEED_MORE; /* tolerate empty lines */
		/* the first octet of a command counts towards its bounds */
		p->line_len = 1;
		p->cmd_len = 1;
		p->state = S_TAG;
		goto again;
	case S_TAG:
		if (c == ' ') {
			if (buf_len(&p->tok) == 0)
				return fail(p, c, "Missing tag", false);
			p->tag = tok_take(p, NULL);
			p->state = S_NAME;
			return IMAP_PARSE_NEED_MORE;
		}
		if (c == '\r' || c == '\n') {
			p->tag = tok_take(p, NULL);
			return fail(p, c, "Missing command", false);
		}
		if (!is_tag_char(c))
			return fail(p, c, "Invalid character in tag", false);
		buf_append(&p->tok, &c, 1);
		return IMAP_PARSE_NEED_MORE;
	case S_NAME:
		if (c == ' ' || c == '\r' || c == '\n') {
			if (buf_len(&p->tok) == 0)
				return fail(p, c, "Missing command", false);
			p->name = tok_take(p, NULL);
			p->state = S_ARGS;
			p->need_sep = false;
			if (c == ' ')
				return IMAP_PARSE_NEED_MORE;
			goto again;
		}
		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return fail(p, c, "Invalid character in command name", false);
		buf_append(&p->tok, &c, 1);
		return IMAP_PARSE_NEED_MORE;
	case S_ARGS:
		switch (c) {
		case ' ':
			if (!p->need_sep)
				return fail(p, c, "Unexpected space", false);
			p->need_sep = false;
			return IMAP_PARSE_NEED_MORE;
		case '\r':
			p->state = S_CR;
			return IMAP_PARSE_NEED_MORE;
		case '\n':
			if (p->depth > 0)
				return fail(p, c, "Missing ')'", false);
			return finish_command(p);
		case ')': {
			struct imap_arg a = {.type = IMAP_ARG_LIST};

			if (p->depth == 0)
				return fail(p, c, "Unexpected ')'", false);
			a.list = top->v;
			a.nlist = top->n;
			memset(top, 0, sizeof(*top));
			p->depth--;
			p->need_sep = true;
			if (!builder_add(p, &p->stack[p->depth], &a))
				return fail(p, c, "Too many arguments", false);
			return IMAP_PARSE_NEED_MORE;
		}
		default:
			break;
		}
		if (p->need_sep)
			return fail(p, c, "Missing space between arguments", false);
		switch (c) {
		case '(':
			if (p->depth >= p->lim.max_depth)
				return fail(p, c, "Lists nested too deeply", false);
			p->depth++;
			return IMAP_PARSE_NEED_MORE;
		case '"':
			p->state = S_QUOTED;
			return IMAP_PARSE_NEED_MORE;
		case '~':
			p->state = S_LIT_TILDE;
			return IMAP_PARSE_NEED_MORE;
		case '{':
			p->lit_binary = false;
			p->state = S_LIT_LEN;
			p->lit_size = 0;
			p->lit_digits = 0;
			p->lit_overflow = false;
			p->lit_nonsync = false;
			return IMAP_PARSE_NEED_MORE;
		default:
			if (!is_arg_atom_char(c))
				return fail(p, c,
				            c >= 0x80 ? "8-bit octet outside a string"
				                      : "Invalid character",
				            false);
			p->state = S_ATOM;
			goto again;
		}
	case S_ATOM:
		if (is_arg_atom_char(c)) {
			if (c == '[' && buf_len(&p->tok) > 0 &&
			    is_section_name((const char *)buf_ptr(&p->tok), buf_len(&p->tok))) {
				memset(&p->sec, 0, sizeof(p->sec));
				p->sec.str = tok_take(p, &p->sec.len);
				buf_reset(&p->sec_spec);
				buf_reset(&p->sec_raw);
				buf_puts(&p->sec_raw, p->sec.str);
				buf_puts(&p->sec_raw, "[");
				p->state = S_SEC_SPEC;
				return IMAP_PARSE_NEED_MORE;
			}
			buf_append(&p->tok, &c, 1);
			return IMAP_PARSE_NEED_MORE;
		}
		if (!add_token_arg(p, IMAP_ARG_ATOM, top))
			return fail(p, c, "Too many arguments", false);
		p->state = S_ARGS;
		goto again;
	case S_QUOTED:
	case S_SEC_QUOTED:
		if (p->state == S_SEC_QUOTED)
			buf_append(&p->sec_raw, &c, 1);
		if (c == '"') {
			bool sec = p->state == S_SEC_QUOTED;

			if (!add_token_arg(p, IMAP_ARG_STRING, sec ? &p->fields : top))
				return fail(p, c, "Too many arguments", false);
			p->state = sec ? S_SEC_LIST : S_ARGS;
			return IMAP_PARSE_NEED_MORE;
		}
		if (c == '\\') {
			p->state = p->state == S_QUOTED ? S_QUOTED_ESC : S_SEC_QUOTED_ESC;
			return IMAP_PARSE_NEED_MORE;
		}
		if (c == '\r' || c == '\n')
			return fail(p, c, "Unterminated quoted string", false);
		if (c == '\0')
			return fail(p, c, "NUL in quoted string", false);
		buf_append(&p->tok, &c, 1);
		return IMAP_PARSE_NEED_MORE;
	case S_QUOTED_ESC:
	case S_SEC_QUOTED_ESC:
		if (p->state == S_SEC_QUOTED_ESC)
			buf_append(&p->sec_raw, &c, 1);
		/* RFC 3501 9: quoted-specials are the only escapes */
		if (c != '"' && c != '\\')
			return fail(p, c, "Invalid escape in quoted string", false);
		buf_append(&p->tok, &c, 1);
		p->state = p->state == S_QUOTED_ESC ? S_QUOTED : S_SEC_QUOTED;
		return IMAP_PARSE_NEED_MORE;
	case S_LIT_TILDE:
		if (c != '{') {
			/* not literal8: an atom that starts with '~' ("~peter/mail") */
			buf_append(&p->tok, "~", 1);
			p->state = S_ATOM;
			goto again;
		}
		p->lit_binary = true;
		p->state = S_LIT_LEN;
		p->lit_size = 0;
		p->lit_digits = 0;
		p->lit_overflow = false;
		p->lit_nonsync = false;
		return IMAP_PARSE_NEED_MORE;
	case S_LIT_LEN:
		if (isdigit(c)) {
			if (p->lit_size > (UINT64_MAX - 9) / 10)
				p->lit_overflow = true;
			else
				p->lit_size = p->lit_size * 10 + (uint64_t)(c - '0');
			p->lit_digits++;
			return IMAP_PARSE_NEED_MORE;
		}
		if (p->lit_digits == 0 || (c != '+' && c != '}'))
			return fail(p, c, "Invalid literal size", false);
		if (c == '+') {
			p->lit_nonsync = true;
			p->state = S_LIT_CLOSE;
			return IMAP_PARSE_NEED_MORE;
		}
		/* fall through: c == '}' */
		p->state = S_LIT_CLOSE;
		goto again;
	case S_LIT_CLOSE:
		if (c != '}')
			return fail(p, c, "Invalid literal size", false);
		if (p->lit_overflow || p->lit_size > p->lim.max_literal ||
		    p->cmd_len + p->lit_size > p->lim.max_command)
			/* RFC 7888 4: a non-synchronising literal is coming
			 * anyway; we cannot find the next command safely */
			return fail(p, c, "Literal too big", p->lit_nonsync);
		p->state = S_LIT_CR;
		return IMAP_PARSE_NEED_MORE;
	case S_LIT_CR:
		if (c == '\r') {
			p->state = S_LIT_LF;
			return IMAP_PARSE_NEED_MORE;
		}
		/* fall through */
	case S_LIT_LF:
		if (c != '\n')
			return fail(p, c, "Literal must end the line", p->lit_nonsync);
		p->line_len = 0;
		p->lit_left = p->lit_size;
		p->lit_streamed = p->lim.stream_literal_min > 0 && p->lit_size > 0 &&
		                  p->lit_size >= p->lim.stream_literal_min;
		buf_reset(&p->tok);
		if (p->lit_streamed) {
			struct imap_arg a = {.type = IMAP_ARG_LITERAL_STREAMED,
			                     .literal_size = p->lit_size,
			                     .nonsync = p->lit_nonsync,
			                     .binary = p->lit_binary};

			a.str = xstrdup("");
			if (!builder_add(p, top, &a))
				return fail(p, c, "Too many arguments", p->lit_nonsync);
		}
		p->state = S_LIT_DATA;
		return p->lit_nonsync ? IMAP_PARSE_NEED_MORE : IMAP_PARSE_CONTINUATION;
	case S_SEC_SPEC:
		buf_append(&p->sec_raw, &c, 1);
		if (c == ']') {
			p->state = S_SEC_AFTER;
			return IMAP_PARSE_NEED_MORE;
		}
		if (c == ' ') {
			p->state = S_SEC_SP;
			return IMAP_PARSE_NEED_MORE;
		}
		if (!isalnum(c) && c != '.' && c != '-')
			return fail(p, c, "Invalid section", false);
		buf_append(&p->sec_spec, &c, 1);
		return IMAP_PARSE_NEED_MORE;
	case S_SEC_SP:
		buf_append(&p->sec_raw, &c, 1);
		if (c != '(')
			return fail(p, c, "Expected '(' in section", false);
		p->sec.has_list = true;
		p->state = S_SEC_LIST;
		p->need_sep = false;
		return IMAP_PARSE_NEED_MORE;
	case S_SEC_LIST:
		buf_append(&p->sec_raw, &c, 1);
		if (c == ')') {
			if (p->fields.n == 0)
				return fail(p, c, "Empty header list in section", false);
			p->state = S_SEC_END;
			return IMAP_PARSE_NEED_MORE;
		}
		if (c == ' ') {
			if (!p->need_sep)
				return fail(p, c, "Unexpected space in section", false);
			p->need_sep = false;
			return IMAP_PARSE_NEED_MORE;
		}
		if (p->need_sep)
			return fail(p, c, "Missing space in section", false);
		if (c == '"') {
			p->state = S_SEC_QUOTED;
			return IMAP_PARSE_NEED_MORE;
		}
		if (!is_arg_atom_char(c) || c == '[' || c == ']')
			return fail(p, c, "Invalid header field name", false);
		buf_append(&p->tok, &c, 1);
		p->state = S_SEC_ATOM;
		return IMAP_PARSE_NEED_MORE;
	case S_SEC_ATOM:
		if (is_arg_atom_char(c) && c != '[' && c != ']') {
			buf_append(&p->sec_raw, &c, 1);
			buf_append(&p->tok, &c, 1);
			return IMAP_PARSE_NEED_MORE;
		}
		if (!add_token_arg(p, IMAP_ARG_ATOM, &p->fields))
			return fail(p, c, "Too many arguments", false);
		p->state = S_SEC_LIST;
		goto again;
	case S_SEC_END:
		buf_append(&p->sec_raw, &c, 1);
		if (c != ']')
			return fail(p, c, "Expected ']' after header list", false);
		p->state = S_SEC_AFTER;
		return IMAP_PARSE_NEED_MORE;
	case S_SEC_AFTER:
		if (c == '<') {
			buf_append(&p->sec_raw, &c, 1);
			p->sec.has_partial = true;
			p->partial_dot = false;
			p->partial_digits = 0;
			p->state = S_PARTIAL;
			return IMAP_PARSE_NEED_MORE;
		}
		if (!finish_section(p))
			return fail(p, c, "Too many arguments", false);
		p->state = S_ARGS;
		goto again;
	case S_PARTIAL: {
		uint64_t *v = p->partial_dot ? &p->sec.partial_count : &p->sec.partial_offset;

		buf_append(&p->sec_raw, &c, 1);
		if (isdigit(c)) {
			/* RFC 9051 9: number64 */
			if (*v > (UINT64_C(1) << 62))
				return fail(p, c, "Partial out of range", false);
			*v = *v * 10 + (uint64_t)(c - '0');
			p->partial_digits++;
			return IMAP_PARSE_NEED_MORE;
		}
		if (p->partial_digits == 0)
			return fail(p, c, "Invalid partial", false);
		if (c == '.' && !p->partial_dot) {
			p->partial_dot = true;
			p->sec.partial_has_count = true;
			p->partial_digits = 0;
			return IMAP_PARSE_NEED_MORE;
		}
		if (c != '>')
			return fail(p, c, "Invalid partial", false);
		if (p->partial_dot && p->sec.partial_count == 0)
			return fail(p, c, "Partial length must be non-zero", false);
		if (!finish_section(p))
			return fail(p, c, "Too many arguments", false);
		p->state = S_ARGS;
		return IMAP_PARSE_NEED_MORE;
	}
	case S_CR:
		if (c != '\n')
			return fail(p, c, "CR without LF", false);
		if (p->depth > 0)
			return fail(p, c, "Missing ')'", false);
		return finish_command(p);
	case S_SKIP:
		if (c == '\n') {
			uint64_t n;
			bool nonsync;

			if (tail_literal(p, &n, &nonsync) && nonsync && n > 0) {
				if (n > p->lim.max_literal)
					return fail(p, c, "Literal too big", true);
				p->skip_left = n;
				p->state = S_SKIP_LIT;
			} else {
				p->state = S_START;
			}
			p->ntail = 0;
			return IMAP_PARSE_NEED_MORE;
		}
		if (p->ntail == sizeof(p->tail)) {
			memmove(p->tail, p->tail + 1, sizeof(p->tail) - 1);
			p->ntail--;
		}
		p->tail[p->ntail++] = (char)c;
		return IMAP_PARSE_NEED_MORE;
	case S_LIT_DATA:
	case S_SKIP_LIT:
	case S_DEAD:
		break;
	}
	return IMAP_PARSE_NEED_MORE;
}

static bool counts_line(enum state s)
{
	return s != S_SKIP && s != S_START && s != S_DEAD;
}

enum imap_parse_status imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
                                        size_t *consumed_r)
{
	const uint8_t *d = data;
	size_t i = 0;
	enum imap_parse_status st = IMAP_PARSE_NEED_MORE;

	command_free(&p->cmd);
	free(p->err_tag);
	p->err_tag = NULL;
	p->err = NULL;
	p->chunk = NULL;
	p->chunk_len = 0;
	p->chunk_last = false;
	if (p->state == S_DEAD) {
		p->err = "Connection must be closed";
		*consumed_r = len;
		return IMAP_PARSE_FATAL;
	}
	while (i < len) {
		if (p->state == S_LIT_DATA) {
			uint64_t take = len - i < p->lit_left ? len - i : p->lit_left;

			p->cmd_len += take;
			p->lit_left -= take;
			if (p->lit_streamed) {
				p->chunk = d + i;
				p->chunk_len = (size_t)take;
				p->chunk_last = p->lit_left == 0;
				i += (size_t)take;
				if (p->lit_left == 0) {
					p->state = S_ARGS;
					p->need_sep = true;
				}
				st = IMAP_PARSE_LITERAL_CHUNK;
				break;
			}
			buf_append(&p->tok, d + i, (size_t)take);
			i += (size_t)take;
			if (p->lit_left == 0) {
				if (!add_token_arg(p, IMAP_ARG_LITERAL, &p->stack[p->depth])) {
					st = fail(p, 0, "Too many arguments", p->lit_nonsync);
					break;
				}
				p->state = S_ARGS;
			}
			continue;
		}
		if (p->state == S_SKIP_LIT) {
			uint64_t take = len - i < p->skip_left ? len - i : p->skip_left;

			i += (size_t)take;
			p->skip_left -= take;
			if (p->skip_left == 0)
				p->state = S_SKIP;
			continue;
		}
		if (counts_line(p->state)) {
			if (++p->line_len > p->lim.max_line) {
				st = fail(p, d[i], "Line too long", false);
				i++;
				break;
			}
			if (++p->cmd_len > p->lim.max_command) {
				st = fail(p, d[i], "Command too long", false);
				i++;
				break;
			}
		}
		st = step(p, d[i]);
		i++;
		if (st != IMAP_PARSE_NEED_MORE)
			break;
	}
	/* a literal of size 0 is complete without any data */
	if (st == IMAP_PARSE_NEED_MORE && p->state == S_LIT_DATA && p->lit_left == 0 &&
	    !p->lit_streamed) {
		if (!add_token_arg(p, IMAP_ARG_LITERAL, &p->stack[p->depth]))
			st = fail(p, 0, "Too many arguments", p->lit_nonsync);
		else
			p->state = S_ARGS;
	}
	*consumed_r = i;
	return st;
}

enum imap_parse_status imap_parser_line(struct imap_parser *p, const void *data, size_t len,
                                        size_t *consumed_r, const char **line_r)
{
	const uint8_t *d = data;
	const uint8_t *lf = memchr(d, '\n', len);
	size_t n = lf ? (size_t)(lf - d) + 1 : len;
	size_t keep = lf ? n - 1 : n;

	command_free(&p->cmd);
	p->err = NULL;
	*line_r = NULL;
	if (buf_len(&p->line) + keep > p->lim.max_line) {
		buf_reset(&p->line);
		p->err = "Line too long";
		p->state = lf ? S_START : S_SKIP;
		p->ntail = 0;
		*consumed_r = n;
		return IMAP_PARSE_BAD;
	}
	buf_append(&p->line, d, keep);
	*consumed_r = n;
	if (!lf)
		return IMAP_PARSE_NEED_MORE;
	if (buf_len(&p->line) > 0 && buf_ptr(&p->line)[buf_len(&p->line) - 1] == '\r')
		p->line.len--;
	buf_append(&p->line, "", 1);
	p->line.len--;
	*line_r = (const char *)buf_ptr(&p->line);
	/* the next call starts a new line */
	p->line.off = p->line.len = 0;
	return IMAP_PARSE_COMMAND;
}
