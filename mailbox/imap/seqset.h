/*
 * mailbox/imap/seqset.h -- IMAP sequence sets ("1:4,7,9:*", "$").
 *
 * RFC 3501 9 sequence-set, RFC 5182 "$" (the saved search result).  A set
 * is parsed once into ranges; "*" stays symbolic (IMAP_SEQ_STAR) because
 * its value depends on the mailbox at the time of use.
 */
#ifndef MAILBOX_IMAP_SEQSET_H
#define MAILBOX_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "*": 0 is never a valid nz-number, so it cannot clash with one */
#define IMAP_SEQ_STAR 0

struct imap_seq_range {
	uint32_t lo, hi; /* as written; either may be IMAP_SEQ_STAR */
};

struct imap_seqset {
	struct imap_seq_range *v;
	size_t n;
	bool saved; /* "$": the caller substitutes the saved result */
};

/*
 * Parse s into *out (owned by the caller, freed with imap_seqset_free).
 * Returns 0, or -1 with *errstr_r set and *out empty.  Numbers are
 * nz-number (1..4294967295, no leading zero).
 */
int imap_seqset_parse(const char *s, struct imap_seqset *out, const char **errstr_r);
void imap_seqset_free(struct imap_seqset *set);
/*
 * Is n in the set, when "*" stands for star (the highest sequence number
 * or UID; RFC 3501 9: "3:1" is the same as "1:3", and for UIDs "*" is the
 * highest UID even when a range starts above it)?
 */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star);

#endif
