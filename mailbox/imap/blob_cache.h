/*
 * mailbox/imap/blob_cache.h -- a bounded in-memory cache of message
 * octets for body FETCH, so repeated BODY[] fetches of one message skip
 * the blob store.
 *
 * Entries are the answers of blob reads, keyed by (blob key, offset,
 * length): the session reads a body in a fixed pattern of chunks
 * (IMAP_READ_CHUNK from the start of the section), so fetching the same
 * section again asks for the same ranges.  Blobs are content-addressed
 * and never change, so an entry is never stale.  The total of the stored
 * octets stays at or below the limit; the least recently used entries go
 * first, and an answer larger than a quarter of the limit is not kept
 * (it would flush everything else).  One cache per process, shared by
 * every session, on the loop thread.  Pure: no I/O.  The Postgres store
 * also keeps messages' stored metadata in it, under keys that are not
 * blob keys (meta_cache.h).
 */
#ifndef MAILBOX_IMAP_BLOB_CACHE_H
#define MAILBOX_IMAP_BLOB_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct imap_blob_cache;

struct imap_blob_cache_stats {
	uint64_t hits, misses;   /* lookups */
	uint64_t stores, evicts; /* entries added, dropped for room */
	uint64_t bytes;          /* octets held now */
	uint64_t entries;        /* entries held now */
	uint64_t limit;          /* the bound on bytes */
};

/* A cache of at most limit octets (0: keeps nothing, counts misses). */
struct imap_blob_cache *imap_blob_cache_new(uint64_t limit);
/* NULL-safe; *c set to NULL. */
void imap_blob_cache_free(struct imap_blob_cache **c);
/* Change the bound (configuration reload), evicting down to it. */
void imap_blob_cache_set_limit(struct imap_blob_cache *c, uint64_t limit);

/*
 * The octets cached for (blob, off, len), or NULL (a miss).  The pointer
 * stays valid until the next put, set_limit or free.  Counts a hit or a
 * miss and makes the entry the most recently used.
 */
const uint8_t *imap_blob_cache_get(struct imap_blob_cache *c, const char *blob, uint64_t off,
                                   uint64_t len, size_t *n_r);
/* Keep data[0..n) as the answer for (blob, off, len) (copied); replaces
 * an earlier entry of the same range. */
void imap_blob_cache_put(struct imap_blob_cache *c, const char *blob, uint64_t off, uint64_t len,
                         const uint8_t *data, size_t n);
void imap_blob_cache_stats(const struct imap_blob_cache *c, struct imap_blob_cache_stats *out);

#endif
