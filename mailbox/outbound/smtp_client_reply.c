/*
 * mailbox/outbound/smtp_client_reply.c -- incremental SMTP reply parsing.
 *
 * A byte-at-a-time state machine over one line at a time (code, separator,
 * text, line end); only the text is stored, straight into the reply, so
 * the parser holds no line buffer and any split of the input gives the
 * same result.
 */
#include "mailbox/outbound/smtp_client_reply.h"

#include <stdio.h>
#include <string.h>

enum {
	RS_CODE0 = 0, /* expecting the first digit of a line */
	RS_CODE1,
	RS_CODE2,
	RS_SEP,  /* after the three digits */
	RS_TEXT, /* in the text */
	RS_CR,   /* after a CR */
};

void smtp_client_reply_init(struct smtp_client_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static void reset_reply(struct smtp_client_reply_parser *p)
{
	p->state = RS_CODE0;
	p->line_code = 0;
	p->linelen = 0;
	p->last = false;
	p->done = false;
	p->reply.code = 0;
	p->reply.esc[0] = '\0';
	p->reply.nlines = 0;
	p->reply.truncated = false;
	p->reply.textlen = 0;
	p->reply.text[0] = '\0';
}

static void text_put(struct smtp_client_reply *r, char c)
{
	if (r->textlen >= SMTP_CLIENT_TEXT_MAX) {
		r->truncated = true;
		return;
	}
	r->text[r->textlen++] = c;
	r->text[r->textlen] = '\0';
}

/* RFC 2034 4 / RFC 3463 2: the first line's text may start with
 * class.subject.detail, class matching the reply code's first digit */
static void find_esc(struct smtp_client_reply *r)
{
	const char *t = r->text;
	int a, b, c, n = 0;

	if (sscanf(t, "%1d.%3d.%3d%n", &a, &b, &c, &n) != 3)
		return;
	if (a != r->code / 100 || (t[n] != ' ' && t[n] != '\n' && t[n] != '\0'))
		return;
	for (int i = 0; i < n; i++)
		if (!(t[i] == '.' || (t[i] >= '0' && t[i] <= '9')))
			return;
	memcpy(r->esc, t, (size_t)n);
	r->esc[n] = '\0';
}

/* A line ended; true when it was the reply's last. */
static bool line_end(struct smtp_client_reply_parser *p)
{
	p->reply.nlines++;
	if (p->reply.nlines == 1)
		p->reply.code = p->line_code;
	if (p->last) {
		find_esc(&p->reply);
		return true;
	}
	p->state = RS_CODE0;
	p->linelen = 0;
	return false;
}

enum smtp_client_reply_status smtp_client_reply_parse(struct smtp_client_reply_parser *p,
                                                      const uint8_t *data, size_t len,
                                                      size_t *consumed_r)
{
	enum smtp_client_reply_status err = SMTP_CLIENT_REPLY_ERR_SYNTAX;
	size_t i;

	*consumed_r = 0;
	if (p->error)
		return p->state == -1 ? SMTP_CLIENT_REPLY_ERR_TOO_LONG
		                      : SMTP_CLIENT_REPLY_ERR_SYNTAX;
	if (p->done || (p->state == RS_CODE0 && p->reply.nlines == 0 && p->linelen == 0))
		reset_reply(p);
	for (i = 0; i < len; i++) {
		uint8_t c = data[i];
		if (++p->linelen > SMTP_CLIENT_LINE_MAX) {
			err = SMTP_CLIENT_REPLY_ERR_TOO_LONG;
			goto fail;
		}
		switch (p->state) {
		case RS_CODE0:
			if (p->reply.nlines >= SMTP_CLIENT_REPLY_LINES) {
				err = SMTP_CLIENT_REPLY_ERR_TOO_LONG;
				goto fail;
			}
			if (c < '2' || c > '5')
				goto fail;
			p->line_code = (c - '0') * 100;
			p->state = RS_CODE1;
			break;
		case RS_CODE1:
		case RS_CODE2:
			if (c < '0' || c > '9')
				goto fail;
			p->line_code += (c - '0') * (p->state == RS_CODE1 ? 10 : 1);
			p->state++;
			break;
		case RS_SEP:
			/* RFC 5321 4.2: every line of a reply has the same code */
			if (p->reply.nlines > 0 && p->line_code != p->reply.code)
				goto fail;
			if (p->reply.nlines > 0)
				text_put(&p->reply, '\n');
			if (c == ' ' || c == '-') {
				p->last = c == ' ';
				p->state = RS_TEXT;
			} else if (c == '\r') {
				p->last = true; /* "250\r\n": a last line without text */
				p->state = RS_CR;
			} else if (c == '\n') {
				p->last = true;
				if (line_end(p))
					goto ok;
			} else {
				goto fail;
			}
			break;
		case RS_CR:
			if (c == '\n') {
				if (line_end(p))
					goto ok;
				break;
			}
			text_put(&p->reply, ' '); /* the CR was text */
			p->state = RS_TEXT;
			/* fall through: c is text too */
			/* FALLTHROUGH */
		case RS_TEXT:
			if (c == '\r') {
				p->state = RS_CR;
			} else if (c == '\n') {
				if (line_end(p))
					goto ok;
			} else {
				text_put(&p->reply, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
			}
			break;
		}
	}
	*consumed_r = len;
	return SMTP_CLIENT_REPLY_NEED_MORE;
ok:
	p->done = true;
	*consumed_r = i + 1;
	return SMTP_CLIENT_REPLY_OK;
fail:
	p->error = true;
	if (err == SMTP_CLIENT_REPLY_ERR_TOO_LONG)
		p->state = -1;
	*consumed_r = i;
	return err;
}

const char *smtp_client_reply_status_name(enum smtp_client_reply_status st)
{
	switch (st) {
	case SMTP_CLIENT_REPLY_OK:
		return "ok";
	case SMTP_CLIENT_REPLY_NEED_MORE:
		return "need-more";
	case SMTP_CLIENT_REPLY_ERR_SYNTAX:
		return "syntax";
	case SMTP_CLIENT_REPLY_ERR_TOO_LONG:
		return "too-long";
	}
	return "?";
}
