/*
 * mailbox/imap/meta_cache.h -- the stored metadata of messages, kept in
 * the process-wide IMAP cache (blob_cache.h) next to body octets.
 *
 * Everything a message row holds apart from its flags and MODSEQ is
 * written once, at delivery, and never changes: INTERNALDATE, size, blob
 * key, ENVELOPE, BODYSTRUCTURE, BODY and the part table.  A message is
 * named by its mailbox row id and UID, which are never reused (ids come
 * from a sequence, UIDs ascend within a mailbox), so an entry is never
 * stale.  An entry holds what fetches have asked for so far (have: a set
 * of IMAP_META_* bits); a later fetch of other items adds to it.
 *
 * Pure: encoding, decoding and merging of one entry; the key text.
 */
#ifndef MAILBOX_IMAP_META_CACHE_H
#define MAILBOX_IMAP_META_CACHE_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The IMAP_META_* bits an entry can hold (INTERNALDATE, SIZE and the blob
 * key are always there); IMAP_META_PARTS also stands for
 * IMAP_META_HEADER, which the Postgres store answers from the part table. */
#define IMAP_META_CACHE_BITS                                                                       \
	(IMAP_META_INTERNALDATE | IMAP_META_SIZE | IMAP_META_ENVELOPE | IMAP_META_BODYSTRUCTURE |  \
	 IMAP_META_BODY | IMAP_META_HEADER | IMAP_META_PARTS)

struct imap_meta_entry {
	unsigned have; /* IMAP_META_* bits present (NULL strings included) */
	int64_t internaldate;
	uint64_t size;
	const char *blob; /* never NULL in an entry */
	const char *envelope, *bodystructure, *body;
	const char *parts; /* the part table as stored (JSON text) */
};

/* The cache key of (mailbox row id, UID) into key (at least 48 octets). */
void imap_meta_key(char *key, size_t keysz, int64_t mailbox, uint32_t uid);

/* Append the encoding of e to out. */
void imap_meta_encode(const struct imap_meta_entry *e, struct buf *out);
/* Decode p[0..n) into e, whose strings then point into p; -1: malformed. */
int imap_meta_decode(const uint8_t *p, size_t n, struct imap_meta_entry *e);
/* Add to *into the fields of add that it lacks (or replace them); the
 * strings of both must outlive the next encode of *into. */
void imap_meta_merge(struct imap_meta_entry *into, const struct imap_meta_entry *add);

#endif
