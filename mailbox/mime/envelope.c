/*
 * mailbox/mime/envelope.c -- the IMAP ENVELOPE of a message header.
 *
 * RFC 3501 7.4.2 / RFC 9051 7.5.2: date, subject, from, sender, reply-to,
 * to, cc, bcc, in-reply-to, message-id.  Unstructured fields are sent as
 * they appear in the header, unfolded and trimmed (encoded-words stay
 * encoded: the client decodes them); an absent field is NIL, an empty one
 * "".  Address fields are lists of (name adl mailbox host); a field that
 * yields no address is NIL.  Sender and Reply-To default to From when they
 * are absent or empty ("the server sets the corresponding member of the
 * envelope to be the same value as the from member").
 */
#include "mailbox/mime/mime_private.h"

#include <stdlib.h>
#include <string.h>

#include "mailbox/imap/string.h"
#include "shared/xmalloc.h"

static void write_addrs(struct buf *b, const struct mime_addresses *a)
{
	if (a->n == 0) {
		buf_puts(b, "NIL");
		return;
	}
	buf_puts(b, "(");
	for (size_t i = 0; i < a->n; i++) {
		const struct mime_address *x = &a->v[i];

		buf_puts(b, "(");
		imap_nstring_write(b, x->name, 0);
		buf_puts(b, " ");
		imap_nstring_write(b, x->adl, 0);
		buf_puts(b, " ");
		imap_nstring_write(b, x->mailbox, 0);
		buf_puts(b, " ");
		imap_nstring_write(b, x->host, 0);
		buf_puts(b, ")");
	}
	buf_puts(b, ")");
}

static void parse_field(const struct mime_fields *f, const char *name, struct mime_addresses *a)
{
	const char *v = mime_header_get(f, name);

	if (v != NULL)
		mime_address_parse(v, a);
	else
		*a = (struct mime_addresses){0};
}

char *mime_envelope_write(const struct mime_fields *f)
{
	static const char *const addr_fields[] = {"From", "Sender", "Reply-To", "To", "Cc", "Bcc"};
	struct mime_addresses a[ARRAY_SIZE(addr_fields)];
	struct buf b;
	char *r;

	buf_init(&b, 0);
	buf_puts(&b, "(");
	imap_nstring_write(&b, mime_header_get(f, "Date"), 0);
	buf_puts(&b, " ");
	imap_nstring_write(&b, mime_header_get(f, "Subject"), 0);
	for (size_t i = 0; i < ARRAY_SIZE(addr_fields); i++)
		parse_field(f, addr_fields[i], &a[i]);
	for (size_t i = 0; i < ARRAY_SIZE(addr_fields); i++) {
		buf_puts(&b, " ");
		/* Sender (1) and Reply-To (2) default to From (0) */
		write_addrs(&b, (i == 1 || i == 2) && a[i].n == 0 ? &a[0] : &a[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(addr_fields); i++)
		mime_address_free(&a[i]);
	buf_puts(&b, " ");
	imap_nstring_write(&b, mime_header_get(f, "In-Reply-To"), 0);
	buf_puts(&b, " ");
	imap_nstring_write(&b, mime_header_get(f, "Message-ID"), 0);
	buf_puts(&b, ")");
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	buf_free(&b);
	return r;
}
