/*
 * mailbox/outbound/tls_fallback.c -- see tls_fallback.h.
 */
#include "mailbox/outbound/tls_fallback.h"

#include "mailbox/config.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	char *key;
	uint64_t until_ms;
};

struct tls_fallback_cache {
	struct entry *e;
	size_t n, max;
};

bool tls_fallback_allowed(int outbound_tls, bool verify)
{
	return outbound_tls == OUTBOUND_TLS_OPPORTUNISTIC && !verify;
}

const char *tls_fallback_key(char *buf, size_t size, const char *addr, unsigned port)
{
	if (size == 0)
		return buf;
	snprintf(buf, size, "[%s]:%u", addr != NULL ? addr : "", port);
	return buf;
}

struct tls_fallback_cache *tls_fallback_cache_new(size_t max)
{
	struct tls_fallback_cache *c = xcalloc(1, sizeof(*c));

	c->max = max > 0 ? max : TLS_FALLBACK_MAX;
	return c;
}

void tls_fallback_cache_free(struct tls_fallback_cache **cp)
{
	struct tls_fallback_cache *c = *cp;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->e[i].key);
	free(c->e);
	free(c);
	*cp = NULL;
}

static void drop(struct tls_fallback_cache *c, size_t i)
{
	free(c->e[i].key);
	c->e[i] = c->e[c->n - 1];
	c->n--;
}

void tls_fallback_cache_add(struct tls_fallback_cache *c, const char *key, uint64_t now_ms,
                            uint64_t ttl_ms)
{
	uint64_t until = now_ms + ttl_ms < now_ms ? UINT64_MAX : now_ms + ttl_ms;
	size_t i = 0;

	while (i < c->n) {
		if (strcmp(c->e[i].key, key) == 0) {
			if (until > c->e[i].until_ms)
				c->e[i].until_ms = until;
			return;
		}
		if (c->e[i].until_ms <= now_ms) {
			drop(c, i);
			continue;
		}
		i++;
	}
	if (c->n >= c->max) {
		size_t first = 0;
		for (i = 1; i < c->n; i++)
			if (c->e[i].until_ms < c->e[first].until_ms)
				first = i;
		drop(c, first);
	}
	c->e = xreallocarray(c->e, c->n + 1, sizeof(*c->e));
	c->e[c->n].key = xstrdup(key);
	c->e[c->n].until_ms = until;
	c->n++;
}

bool tls_fallback_cache_has(const struct tls_fallback_cache *c, const char *key, uint64_t now_ms,
                            uint64_t *until_ms_r)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->e[i].key, key) == 0) {
			if (c->e[i].until_ms <= now_ms)
				return false;
			if (until_ms_r != NULL)
				*until_ms_r = c->e[i].until_ms;
			return true;
		}
	return false;
}

size_t tls_fallback_cache_size(const struct tls_fallback_cache *c)
{
	return c->n;
}
