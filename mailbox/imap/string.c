/*
 * mailbox/imap/string.c -- choosing between atom, quoted and literal.
 *
 * The choice is made by one scan of the value: a quoted string is used
 * whenever the bytes allow it (it is what every client parses best), a
 * literal otherwise.  Quoted strings escape only '"' and '\\' (RFC 3501
 * quoted-specials); Dovecot sends a literal instead, both are legal.  Very
 * long values go out as literals too, so that no response line grows past
 * what a client's line reader accepts.
 */
#include "mailbox/imap/string.h"

#include <string.h>

/* Longest value we put on one line as a quoted string. */
#define IMAP_STRING_QUOTED_MAX 4096

static bool is_atom_char(unsigned char c)
{
	/* RFC 3501 ATOM-CHAR: any CHAR except atom-specials. */
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

bool imap_string_is_atom(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_atom_char((unsigned char)s[i]))
			return false;
	/* "NIL" as an atom would read back as NIL, not the string. */
	return !(len == 3 && strncasecmp(s, "NIL", 3) == 0);
}

/* Length of the valid UTF-8 sequence at s[0..n), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned cp;

	if (c < 0x80)
		return 1;
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
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool imap_string_quotable(const char *s, size_t len, unsigned flags)
{
	const unsigned char *u = (const unsigned char *)s;

	if (len > IMAP_STRING_QUOTED_MAX)
		return false;
	for (size_t i = 0; i < len;) {
		if (u[i] == 0 || u[i] == '\r' || u[i] == '\n')
			return false;
		if (u[i] >= 0x80) {
			size_t n;

			if (!(flags & IMAP_STR_UTF8))
				return false;
			n = utf8_seq(u + i, len - i);
			if (n == 0)
				return false;
			i += n;
			continue;
		}
		i++;
	}
	return true;
}

static size_t nul_count(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += s[i] == '\0';
	return n;
}

int imap_string_write(struct buf *b, const char *s, size_t len, unsigned flags)
{
	if ((flags & IMAP_STR_ATOM_OK) && imap_string_is_atom(s, len))
		return buf_append(b, s, len);
	if (imap_string_quotable(s, len, flags)) {
		size_t start = 0;

		if (buf_append(b, "\"", 1) < 0)
			return -1;
		for (size_t i = 0; i < len; i++) {
			if (s[i] != '"' && s[i] != '\\')
				continue;
			if (buf_append(b, s + start, i - start) < 0 || buf_append(b, "\\", 1) < 0)
				return -1;
			start = i;
		}
		if (buf_append(b, s + start, len - start) < 0 || buf_append(b, "\"", 1) < 0)
			return -1;
		return 0;
	}
	if (buf_printf(b, "{%zu}\r\n", len + 2 * nul_count(s, len)) < 0)
		return -1;
	for (size_t i = 0; i < len;) {
		const char *nul = memchr(s + i, 0, len - i);
		size_t run = nul ? (size_t)(nul - (s + i)) : len - i;

		if (buf_append(b, s + i, run) < 0)
			return -1;
		i += run;
		if (nul) {
			if (buf_append(b, "\xef\xbf\xbd", 3) < 0)
				return -1;
			i++;
		}
	}
	return 0;
}

int imap_nstring_write(struct buf *b, const char *s, unsigned flags)
{
	if (s == NULL)
		return buf_append(b, "NIL", 3);
	return imap_string_write(b, s, strlen(s), flags);
}
