/*
 * mailbox/mime/bodystructure.c -- BODY and BODYSTRUCTURE from the part tree.
 *
 * RFC 3501 7.4.2 (body, body-type-1part, body-type-mpart, body-ext-*).
 * BODYSTRUCTURE always carries the full extension data (md5, disposition,
 * language, location for a leaf; parameters, disposition, language,
 * location for a multipart), as Dovecot does, so clients never have to
 * guess which optional fields are present.  Type, subtype, parameter names
 * and disposition keep the case they were sent in.  A multipart without any
 * part (no boundary, or the boundary never seen) is given one empty
 * text/plain part, since the grammar requires at least one ("1*body").
 */
#include "mailbox/mime/mime_private.h"

#include <inttypes.h>
#include <string.h>

#include "mailbox/imap/string.h"

#define EMPTY_TEXT     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"
#define EMPTY_ENVELOPE "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"

static void sp(struct buf *b)
{
	buf_append(b, " ", 1);
}

static void str(struct buf *b, const char *s)
{
	imap_nstring_write(b, s, 0);
}

static void write_params(struct buf *b, const struct mime_params *p)
{
	if (p->n == 0) {
		buf_puts(b, "NIL");
		return;
	}
	buf_puts(b, "(");
	for (size_t i = 0; i < p->n; i++) {
		if (i > 0)
			sp(b);
		str(b, p->v[i].name);
		sp(b);
		str(b, p->v[i].value);
	}
	buf_puts(b, ")");
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void write_dsp_lang_loc(struct buf *b, const struct mime_content *c)
{
	if (c->disposition == NULL) {
		buf_puts(b, "NIL");
	} else {
		buf_puts(b, "(");
		str(b, c->disposition);
		sp(b);
		write_params(b, &c->disp_params);
		buf_puts(b, ")");
	}
	sp(b);
	if (c->nlang == 0) {
		buf_puts(b, "NIL");
	} else {
		buf_puts(b, "(");
		for (size_t i = 0; i < c->nlang; i++) {
			if (i > 0)
				sp(b);
			str(b, c->lang[i]);
		}
		buf_puts(b, ")");
	}
	sp(b);
	str(b, c->location);
}

void mime_bodystructure_write(struct buf *b, const struct mime_entity *e, bool ext)
{
	const struct mime_content *c = &e->ct;

	buf_puts(b, "(");
	if (e->kind == MIME_K_MULTIPART) {
		if (e->first == NULL) {
			buf_puts(b, EMPTY_TEXT);
			buf_puts(b, ext ? " NIL NIL NIL NIL)" : ")");
		}
		for (const struct mime_entity *ch = e->first; ch != NULL; ch = ch->next)
			mime_bodystructure_write(b, ch, ext);
		sp(b);
		str(b, c->subtype);
		if (ext) {
			sp(b);
			write_params(b, &c->params);
			sp(b);
			write_dsp_lang_loc(b, c);
		}
		buf_puts(b, ")");
		return;
	}
	str(b, c->type);
	sp(b);
	str(b, c->subtype);
	sp(b);
	write_params(b, &c->params);
	sp(b);
	str(b, c->id);
	sp(b);
	str(b, c->description);
	sp(b);
	str(b, c->encoding ? c->encoding : "7bit");
	buf_printf(b, " %" PRIu64, e->body_end - e->body_start);
	if (e->kind == MIME_K_MESSAGE) {
		/* body-type-msg: envelope SP body SP body-fld-lines */
		sp(b);
		if (e->first != NULL && e->first->envelope != NULL)
			buf_puts(b, e->first->envelope);
		else
			buf_puts(b, EMPTY_ENVELOPE);
		sp(b);
		if (e->first != NULL) {
			mime_bodystructure_write(b, e->first, ext);
		} else {
			buf_puts(b, EMPTY_TEXT);
			buf_puts(b, ext ? " NIL NIL NIL NIL)" : ")");
		}
		buf_printf(b, " %" PRIu64, e->lines);
	} else if (e->is_text) {
		buf_printf(b, " %" PRIu64, e->lines);
	}
	if (ext) {
		sp(b);
		str(b, c->md5);
		sp(b);
		write_dsp_lang_loc(b, c);
	}
	buf_puts(b, ")");
}
