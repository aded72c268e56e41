/*
 * shared/xmalloc.h -- allocation that never returns NULL.
 *
 * Allocation failure is not a condition a mail daemon can recover from in
 * the middle of a protocol exchange, so every allocator here aborts with a
 * message instead of returning NULL (house style: "allocation failure
 * aborts").
 */
#ifndef SHARED_XMALLOC_H
#define SHARED_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Grow an array of nmemb elements of size bytes; aborts on overflow. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* printf into a fresh string the caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Recover the struct that embeds member (libev watchers in their owner). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
