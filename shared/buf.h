/*
 * shared/buf.h -- a growable byte buffer with a hard bound.
 *
 * Every buffer has a configured maximum (a line, a literal, a message
 * chunk): appending past it fails with -1 and leaves the buffer unchanged,
 * so a peer can never make us allocate without limit.  Data is consumed
 * from the front with buf_consume(); the read offset is compacted lazily.
 */
#ifndef SHARED_BUF_H
#define SHARED_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data; /* owned; NULL until the first append */
	size_t off;    /* start of unread data */
	size_t len;    /* end of data (data + off .. data + len is unread) */
	size_t cap;
	size_t max; /* bound on unread bytes; 0 means SIZE_MAX */
};

void buf_init(struct buf *b, size_t max);
/* Free the storage; the buffer may be reused after buf_init(). */
void buf_free(struct buf *b);
/* Unread bytes and their start. */
static inline size_t buf_len(const struct buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *buf_ptr(const struct buf *b)
{
	return b->data + b->off;
}
/* Append n bytes; -1 (nothing appended) if the bound would be exceeded. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop n unread bytes from the front (n <= buf_len). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/*
 * Make room for at least n more bytes and return where to write them; after
 * writing k bytes call buf_commit(b, k).  NULL if the bound forbids it.
 */
uint8_t *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Free the storage if empty (idle connections hold no buffer). */
void buf_shrink_if_empty(struct buf *b);

#endif
