/*
 * mailbox/imap/headers.c -- picking header fields by name.
 *
 * One pass over the lines: a line that does not start with white space
 * opens a field and decides, by its name, whether this field is kept;
 * continuation lines follow that decision.  Line ends are LF or CRLF,
 * copied as they are.
 */
#include "mailbox/imap/headers.h"

#include <string.h>
#include <strings.h>

static bool wanted(const char *name, size_t nlen, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(names[i]) == nlen && strncasecmp(names[i], name, nlen) == 0)
			return true;
	return false;
}

void imap_headers_filter(const char *header, size_t len, const char *const *names, size_t n,
                         bool exclude, struct buf *out)
{
	size_t off = 0;
	bool keep = false;

	while (off < len) {
		const char *line = header + off;
		const char *lf = memchr(line, '\n', len - off);
		size_t llen = lf != NULL ? (size_t)(lf - line) + 1 : len - off;
		size_t content = llen;

		if (content > 0 && line[content - 1] == '\n')
			content--;
		if (content > 0 && line[content - 1] == '\r')
			content--;
		if (content == 0)
			break; /* the empty line ends the header */
		if (line[0] == ' ' || line[0] == '\t') {
			if (keep)
				buf_append(out, line, llen);
		} else {
			const char *colon = memchr(line, ':', content);

			if (colon == NULL) {
				keep = false;
			} else {
				size_t nlen = (size_t)(colon - line);

				/* "Subject :" (obsolete syntax, RFC 5322 4.5) */
				while (nlen > 0 &&
				       (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
					nlen--;
				keep = wanted(line, nlen, names, n) != exclude;
			}
			if (keep)
				buf_append(out, line, llen);
		}
		off += llen;
	}
	/* a last field without a line end still needs one before the blank */
	if (buf_len(out) > 0 && buf_ptr(out)[buf_len(out) - 1] != '\n')
		buf_puts(out, "\r\n");
	buf_puts(out, "\r\n");
}
