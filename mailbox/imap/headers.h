/*
 * mailbox/imap/headers.h -- BODY[HEADER.FIELDS (...)] and
 * BODY[HEADER.FIELDS.NOT (...)] (RFC 3501 6.4.5).
 *
 * Pure: a header block in, the selected fields out.  A field is its
 * first line and every continuation line (starting with SP or HTAB);
 * names compare case-insensitively; the fields keep their order and
 * their bytes as stored; the block ends with the empty line, as RFC 3501
 * requires of the result ("the subset of the header ... followed by the
 * blank line").  A line without a colon names no field and is left out.
 */
#ifndef MAILBOX_IMAP_HEADERS_H
#define MAILBOX_IMAP_HEADERS_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* Append the fields of header[0..len) named (exclude: not named) in
 * names[0..n) to out, then "\r\n".  Stops at the header's empty line. */
void imap_headers_filter(const char *header, size_t len, const char *const *names, size_t n,
                         bool exclude, struct buf *out);

#endif
