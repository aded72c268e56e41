/*
 * mailbox/imap/mutf7.h -- modified UTF-7 mailbox names (RFC 3501 5.1.3).
 *
 * Clients that did not ENABLE UTF8=ACCEPT send and expect mailbox names in
 * modified UTF-7; we store UTF-8.  Decoding is strict: a name that is not
 * in the one canonical encoding (printable ASCII encoded, "&" not written
 * as "&-", base64 padding bits set, unpaired surrogates, split shifts) is
 * refused, so two different wire names never map to one mailbox.
 */
#ifndef MAILBOX_IMAP_MUTF7_H
#define MAILBOX_IMAP_MUTF7_H

#include <stdbool.h>

/* UTF-8 to modified UTF-7, a fresh string; NULL if s is not valid UTF-8
 * or holds control characters. */
char *imap_mutf7_encode(const char *utf8);
/* Modified UTF-7 to UTF-8, a fresh string; NULL if s is not canonical. */
char *imap_mutf7_decode(const char *mutf7);
/* True if s is canonical modified UTF-7. */
bool imap_mutf7_valid(const char *s);

#endif
