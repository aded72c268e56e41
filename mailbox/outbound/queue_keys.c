/*
 * mailbox/outbound/queue_keys.c -- the DKIM key cache (see queue_keys.h).
 *
 * A short array searched linearly: a deployment has a handful of domains,
 * and an entry is dropped when it is replaced, so the array stays as long
 * as the number of domains that sent mail within the TTL.
 */
#include "mailbox/outbound/queue_keys.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

struct queue_keys {
	struct queue_keyset **v;
	size_t n, cap;
};

struct queue_keys *queue_keys_new(void)
{
	return xcalloc(1, sizeof(struct queue_keys));
}

void queue_keyset_unref(struct queue_keyset **ksp)
{
	struct queue_keyset *ks = *ksp;

	if (ks == NULL)
		return;
	*ksp = NULL;
	ASSERT(ks->refs > 0);
	if (--ks->refs > 0)
		return;
	for (size_t i = 0; i < ks->n; i++) {
		dkim_key_free(&ks->keys[i]);
		free(ks->selectors[i]);
	}
	free(ks->domain);
	free(ks);
}

void queue_keys_free(struct queue_keys **kcp)
{
	struct queue_keys *kc = *kcp;

	if (kc == NULL)
		return;
	for (size_t i = 0; i < kc->n; i++)
		queue_keyset_unref(&kc->v[i]);
	free(kc->v);
	free(kc);
	*kcp = NULL;
}

static size_t find(const struct queue_keys *kc, const char *domain)
{
	for (size_t i = 0; i < kc->n; i++)
		if (strcmp(kc->v[i]->domain, domain) == 0)
			return i;
	return kc->n;
}

struct queue_keyset *queue_keys_get(struct queue_keys *kc, const char *domain, int64_t now)
{
	size_t i = find(kc, domain);
	struct queue_keyset *ks;

	if (i == kc->n)
		return NULL;
	ks = kc->v[i];
	if (now - ks->loaded >= QUEUE_KEYS_TTL || now < ks->loaded)
		return NULL;
	ks->refs++;
	return ks;
}

void queue_keys_store(struct queue_keys *kc, const char *const *domains, size_t n,
                      const PGresult *res, int64_t now)
{
	for (size_t d = 0; d < n; d++) {
		struct queue_keyset *ks = xcalloc(1, sizeof(*ks));
		size_t i = find(kc, domains[d]);

		ks->refs = 1;
		ks->domain = xstrdup(domains[d]);
		ks->loaded = now;
		for (int r = 0; res != NULL && r < PQntuples(res); r++) {
			const char *why = NULL;
			const char *pem = PQgetvalue(res, r, 2);
			struct dkim_key *k;

			if (strcmp(PQgetvalue(res, r, 0), domains[d]) != 0)
				continue;
			if (ks->n == DKIM_SIGN_MAX) {
				log_warn(
				        "msg=\"dkim: too many active keys, the rest are not used\" "
				        "domain=%s max=%d",
				        domains[d], DKIM_SIGN_MAX);
				break;
			}
			k = dkim_key_load_pem(pem, strlen(pem), &why);
			if (k == NULL) {
				log_error("msg=\"dkim: cannot load a key\" domain=%s selector=%s "
				          "error=\"%s\"",
				          domains[d], PQgetvalue(res, r, 1),
				          why != NULL ? why : "?");
				continue;
			}
			ks->keys[ks->n] = k;
			ks->selectors[ks->n] = xstrdup(PQgetvalue(res, r, 1));
			ks->n++;
		}
		if (i < kc->n) {
			queue_keyset_unref(&kc->v[i]);
			kc->v[i] = ks;
			continue;
		}
		/* drop stale sets first, so the cache holds only the domains
		 * seen within QUEUE_KEYS_TTL (they are our own domains: the
		 * envelope sender's, which submission checked) */
		for (size_t j = 0; j < kc->n;) {
			if (now - kc->v[j]->loaded >= QUEUE_KEYS_TTL || now < kc->v[j]->loaded) {
				queue_keyset_unref(&kc->v[j]);
				kc->v[j] = kc->v[--kc->n];
			} else {
				j++;
			}
		}
		if (kc->n == kc->cap) {
			kc->cap = kc->cap ? kc->cap * 2 : 8;
			kc->v = xreallocarray(kc->v, kc->cap, sizeof(*kc->v));
		}
		kc->v[kc->n++] = ks;
	}
}
