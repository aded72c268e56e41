/*
 * mailbox/imap/string.h -- writing IMAP strings into responses.
 *
 * Every string a server sends (ENVELOPE fields, BODYSTRUCTURE parameters,
 * mailbox names, header fields) must be one of the RFC 3501 section 4.3
 * forms: an atom, a quoted string, or a literal.  A quoted string can only
 * carry 7-bit TEXT-CHARs (no CR, LF or NUL) and, before UTF8=ACCEPT
 * (RFC 6855), no 8-bit bytes; anything else goes out as a literal {n}.
 * These helpers pick the smallest legal form, so callers never hand-quote.
 */
#ifndef MAILBOX_IMAP_STRING_H
#define MAILBOX_IMAP_STRING_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/buf.h"

enum imap_string_flags {
	/* Use an atom when every byte is an ATOM-CHAR (mailbox names, flags). */
	IMAP_STR_ATOM_OK = 1 << 0,
	/* The client enabled UTF8=ACCEPT: valid UTF-8 may be quoted. */
	IMAP_STR_UTF8 = 1 << 1,
};

/*
 * Append s[0..len) to b as an atom, quoted string or literal (in that order
 * of preference, as flags allow).  NUL bytes cannot be sent in any of these
 * forms (RFC 3501 CHAR8 excludes NUL), so they are written as U+FFFD, as
 * Dovecot does.  Returns -1 if b's bound is reached (b may then
 * hold a partial string; callers discard the response).
 */
int imap_string_write(struct buf *b, const char *s, size_t len, unsigned flags);
/* As imap_string_write() for a NUL-terminated string; NULL writes NIL. */
int imap_nstring_write(struct buf *b, const char *s, unsigned flags);
/* True if s[0..len) may be sent as a quoted string under flags. */
bool imap_string_quotable(const char *s, size_t len, unsigned flags);
/* True if s[0..len) is a non-empty run of RFC 3501 ATOM-CHARs. */
bool imap_string_is_atom(const char *s, size_t len);

#endif
