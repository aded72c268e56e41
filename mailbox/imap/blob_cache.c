/*
 * mailbox/imap/blob_cache.c -- the LRU of blob read answers (see
 * blob_cache.h).
 *
 * A chained hash table (FNV-1a over key, offset and length; doubled when
 * the entries outnumber the buckets) finds an entry; a doubly linked
 * list orders entries by use, the head the most recent.  An entry's
 * accounted size is its data plus a fixed overhead, so a flood of tiny
 * entries is bounded too.
 */
#include "mailbox/imap/blob_cache.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Bookkeeping octets charged per entry besides its data. */
#define ENTRY_OVERHEAD 128

struct entry {
	struct entry *hnext;       /* bucket chain */
	struct entry *prev, *next; /* LRU list */
	uint64_t hash, off, len;
	char *blob;
	uint8_t *data;
	size_t n;
};

struct imap_blob_cache {
	struct entry **buckets;
	size_t nbuckets; /* a power of two */
	struct entry *head, *tail;
	uint64_t limit;
	struct imap_blob_cache_stats st;
};

static uint64_t hash_of(const char *blob, uint64_t off, uint64_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (const unsigned char *p = (const unsigned char *)blob; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ULL;
	for (int i = 0; i < 8; i++)
		h = (h ^ ((off >> (8 * i)) & 0xff)) * 1099511628211ULL;
	for (int i = 0; i < 8; i++)
		h = (h ^ ((len >> (8 * i)) & 0xff)) * 1099511628211ULL;
	return h;
}

static uint64_t cost(const struct entry *e)
{
	return (uint64_t)e->n + ENTRY_OVERHEAD;
}

struct imap_blob_cache *imap_blob_cache_new(uint64_t limit)
{
	struct imap_blob_cache *c = xcalloc(1, sizeof(*c));

	c->nbuckets = 64;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	c->limit = limit;
	c->st.limit = limit;
	return c;
}

static void lru_unlink(struct imap_blob_cache *c, struct entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct imap_blob_cache *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head != NULL)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

static struct entry **slot_of(struct imap_blob_cache *c, const struct entry *e)
{
	struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	return pp;
}

static void entry_drop(struct imap_blob_cache *c, struct entry *e)
{
	struct entry **pp = slot_of(c, e);

	*pp = e->hnext;
	lru_unlink(c, e);
	ASSERT(c->st.bytes >= cost(e) && c->st.entries > 0);
	c->st.bytes -= cost(e);
	c->st.entries--;
	free(e->blob);
	free(e->data);
	free(e);
}

static void evict_to(struct imap_blob_cache *c, uint64_t limit)
{
	while (c->tail != NULL && c->st.bytes > limit) {
		entry_drop(c, c->tail);
		c->st.evicts++;
	}
}

void imap_blob_cache_free(struct imap_blob_cache **c)
{
	if (c == NULL || *c == NULL)
		return;
	while ((*c)->head != NULL)
		entry_drop(*c, (*c)->head);
	free((*c)->buckets);
	free(*c);
	*c = NULL;
}

void imap_blob_cache_set_limit(struct imap_blob_cache *c, uint64_t limit)
{
	c->limit = limit;
	c->st.limit = limit;
	evict_to(c, limit);
}

static struct entry *lookup(struct imap_blob_cache *c, uint64_t h, const char *blob, uint64_t off,
                            uint64_t len)
{
	for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->off == off && e->len == len && strcmp(e->blob, blob) == 0)
			return e;
	return NULL;
}

const uint8_t *imap_blob_cache_get(struct imap_blob_cache *c, const char *blob, uint64_t off,
                                   uint64_t len, size_t *n_r)
{
	struct entry *e = lookup(c, hash_of(blob, off, len), blob, off, len);

	if (e == NULL) {
		c->st.misses++;
		return NULL;
	}
	c->st.hits++;
	lru_unlink(c, e);
	lru_push_front(c, e);
	*n_r = e->n;
	/* data is never NULL: an empty answer is a 1-octet allocation */
	return e->data;
}

static void grow(struct imap_blob_cache *c)
{
	size_t nb = c->nbuckets * 2;
	struct entry **b = xcalloc(nb, sizeof(*b));

	for (size_t i = 0; i < c->nbuckets; i++) {
		struct entry *e = c->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = nb;
}

void imap_blob_cache_put(struct imap_blob_cache *c, const char *blob, uint64_t off, uint64_t len,
                         const uint8_t *data, size_t n)
{
	uint64_t h = hash_of(blob, off, len);
	struct entry *e = lookup(c, h, blob, off, len);

	if (e != NULL)
		entry_drop(c, e);
	if ((uint64_t)n + ENTRY_OVERHEAD > c->limit / 4)
		return;
	evict_to(c, c->limit - ((uint64_t)n + ENTRY_OVERHEAD));
	e = xcalloc(1, sizeof(*e));
	e->hash = h;
	e->off = off;
	e->len = len;
	e->blob = xstrdup(blob);
	e->data = xmalloc(n > 0 ? n : 1);
	if (n > 0)
		memcpy(e->data, data, n);
	e->n = n;
	if (c->st.entries >= c->nbuckets)
		grow(c);
	e->hnext = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	lru_push_front(c, e);
	c->st.bytes += cost(e);
	c->st.entries++;
	c->st.stores++;
}

void imap_blob_cache_stats(const struct imap_blob_cache *c, struct imap_blob_cache_stats *out)
{
	*out = c->st;
}
