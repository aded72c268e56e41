/*
 * shared/buf.c -- bounded growable buffers.
 */
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->off = b->len = b->cap = 0;
	b->max = max ? max : SIZE_MAX;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->off = b->len = 0;
}

uint8_t *buf_reserve(struct buf *b, size_t n)
{
	size_t unread = b->len - b->off;

	if (n > b->max - unread)
		return NULL;
	if (b->cap - b->len >= n)
		return b->data + b->len;
	/* Compact first: consumed bytes at the front are free space. */
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, unread);
		b->off = 0;
		b->len = unread;
		if (b->cap - b->len >= n)
			return b->data + b->len;
	}
	size_t want = b->cap ? b->cap : 256;
	while (want - b->len < n)
		want = want > SIZE_MAX / 2 ? SIZE_MAX : want * 2;
	b->data = xrealloc(b->data, want);
	b->cap = want;
	return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	ASSERT(b->cap - b->len >= n);
	b->len += n;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	uint8_t *dst;

	if (n == 0)
		return 0;
	dst = buf_reserve(b, n);
	if (dst == NULL)
		return -1;
	memcpy(dst, p, n);
	b->len += n;
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	uint8_t *dst = buf_reserve(b, (size_t)n + 1);
	if (dst == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)dst, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	ASSERT(n <= b->len - b->off);
	b->off += n;
	if (b->off == b->len)
		b->off = b->len = 0;
}

void buf_shrink_if_empty(struct buf *b)
{
	if (b->len == b->off) {
		free(b->data);
		b->data = NULL;
		b->off = b->len = b->cap = 0;
	}
}
