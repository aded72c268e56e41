/*
 * mailbox/imap/listmatch.h -- LIST/LSUB wildcard patterns.
 *
 * RFC 3501 6.3.8: "*" matches zero or more characters, "%" the same but
 * not the hierarchy delimiter.  Matching is a dynamic programme over
 * pattern and name (O(pattern x name) time, O(name) space), so a hostile
 * pattern like "*%*%*%..." cannot make it exponential.  Names and
 * patterns are compared octet for octet, so the caller passes both in one
 * encoding (the wire form, modified UTF-7 or UTF-8).
 */
#ifndef MAILBOX_IMAP_LISTMATCH_H
#define MAILBOX_IMAP_LISTMATCH_H

#include <stdbool.h>

/* Does name match pattern, with delim the hierarchy delimiter? */
bool imap_listmatch(const char *pattern, const char *name, char delim);

#endif
