/*
 * mailbox/imap/section.h -- the section-spec inside BODY[...] / BINARY[...].
 *
 * RFC 3501 9 (RFC 9051 9): section-spec = section-msgtext /
 * (section-part ["." section-text]).  The command parser hands over the
 * text between the brackets (IMAP_ARG_SECTION's section) and whether a
 * header-list followed; this turns it into part numbers and a kind, which
 * the session maps onto the part table stored at delivery.
 */
#ifndef MAILBOX_IMAP_SECTION_H
#define MAILBOX_IMAP_SECTION_H

#include <stdbool.h>
#include <stdint.h>

#define IMAP_SECTION_MAX_PARTS 32

enum imap_section_kind {
	IMAP_SECTION_ALL,        /* BODY[] or BODY[1.2]: the part's body */
	IMAP_SECTION_HEADER,     /* HEADER */
	IMAP_SECTION_FIELDS,     /* HEADER.FIELDS (list) */
	IMAP_SECTION_FIELDS_NOT, /* HEADER.FIELDS.NOT (list) */
	IMAP_SECTION_TEXT,       /* TEXT */
	IMAP_SECTION_MIME,       /* MIME, only after a part number */
};

struct imap_section {
	uint32_t part[IMAP_SECTION_MAX_PARTS];
	unsigned nparts;
	enum imap_section_kind kind;
};

/*
 * Parse spec ("", "1.2", "HEADER.FIELDS", "2.MIME"); has_list says a
 * header-list followed it, which HEADER.FIELDS[.NOT] require and the
 * others forbid.  Case-insensitive.  Returns 0, or -1 with *errstr_r.
 */
int imap_section_parse(const char *spec, bool has_list, struct imap_section *out,
                       const char **errstr_r);
/* Write the part numbers as the mime_part section string ("1.2", or ""
 * for none) into out (at least 12 * IMAP_SECTION_MAX_PARTS octets). */
void imap_section_part_string(const struct imap_section *s, char *out, unsigned outlen);

#endif
