/*
 * mailbox/imap/section.c -- section-spec to part numbers and a kind.
 *
 * Part numbers come first (nz-number, no leading zero, bounded count),
 * then at most one text specifier.  The grammar is small enough that one
 * left-to-right pass with a fixed table of specifiers is the whole parser.
 */
#include "mailbox/imap/section.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int imap_section_parse(const char *spec, bool has_list, struct imap_section *out,
                       const char **errstr_r)
{
	static const struct {
		const char *name;
		enum imap_section_kind kind;
	} texts[] = {
	        {"HEADER", IMAP_SECTION_HEADER},
	        {"HEADER.FIELDS", IMAP_SECTION_FIELDS},
	        {"HEADER.FIELDS.NOT", IMAP_SECTION_FIELDS_NOT},
	        {"TEXT", IMAP_SECTION_TEXT},
	        {"MIME", IMAP_SECTION_MIME},
	};
	const char *s = spec;
	bool found = false;

	memset(out, 0, sizeof(*out));
	out->kind = IMAP_SECTION_ALL;
	while (*s >= '0' && *s <= '9') {
		uint64_t v = 0;

		if (*s == '0')
			goto bad;
		while (*s >= '0' && *s <= '9') {
			v = v * 10 + (uint64_t)(*s - '0');
			if (v > UINT32_MAX)
				goto bad;
			s++;
		}
		if (out->nparts == IMAP_SECTION_MAX_PARTS) {
			*errstr_r = "Section nested too deeply";
			return -1;
		}
		out->part[out->nparts++] = (uint32_t)v;
		if (*s == '\0')
			break;
		if (*s != '.')
			goto bad;
		s++;
		if (*s == '\0')
			goto bad;
	}
	if (*s != '\0') {
		for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
			if (strcasecmp(s, texts[i].name) == 0) {
				out->kind = texts[i].kind;
				found = true;
			}
		if (!found)
			goto bad;
		/* RFC 3501 9: MIME only with a part number */
		if (out->kind == IMAP_SECTION_MIME && out->nparts == 0)
			goto bad;
	}
	if (has_list !=
	    (out->kind == IMAP_SECTION_FIELDS || out->kind == IMAP_SECTION_FIELDS_NOT)) {
		*errstr_r = has_list ? "Header list not allowed here" : "Missing header list";
		return -1;
	}
	return 0;
bad:
	*errstr_r = "Invalid section";
	return -1;
}

void imap_section_part_string(const struct imap_section *s, char *out, unsigned outlen)
{
	size_t off = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (unsigned i = 0; i < s->nparts && off < outlen; i++) {
		int n = snprintf(out + off, outlen - off, i ? ".%u" : "%u", (unsigned)s->part[i]);

		if (n < 0 || (size_t)n >= outlen - off)
			break;
		off += (size_t)n;
	}
}
