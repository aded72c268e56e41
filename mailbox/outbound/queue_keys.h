/*
 * mailbox/outbound/queue_keys.h -- the DKIM signing keys of our domains,
 * cached briefly for the queue engine.
 *
 * The queue engine signs a message from an authenticated local sender with
 * every active key (dkim_keys.active) of the envelope sender's domain
 * (see pick_keys in queue.c for why not the From: domain).  Keys change rarely
 * (`tailpost-mailbox dkim generate`), and a key set is loaded with one
 * query for both domains, so the cache keeps each domain's set (also an
 * empty one) for QUEUE_KEYS_TTL seconds.
 *
 * A key set is reference-counted: a message being signed holds its set
 * while the signer borrows the keys, even if the cache replaces the set
 * meanwhile.
 */
#ifndef MAILBOX_OUTBOUND_QUEUE_KEYS_H
#define MAILBOX_OUTBOUND_QUEUE_KEYS_H

#include "mailbox/dkim/key.h"
#include "mailbox/dkim/sign.h"

#include <postgresql/libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_KEYS_TTL 60 /* seconds */

/* The SQL that loads the active keys of the domains in $1 (a text array
 * literal); rows of (domain, selector, private_key) that
 * queue_keys_store() reads. */
#define QUEUE_KEYS_SQL                                                                             \
	"SELECT d.name, k.selector, k.private_key FROM dkim_keys k"                                \
	" JOIN domains d ON d.id = k.domain_id"                                                    \
	" WHERE d.name = ANY($1::text[]) AND k.active ORDER BY d.name, k.id"

struct queue_keyset {
	unsigned refs;
	char *domain;
	int64_t loaded; /* time() when loaded */
	size_t n;
	struct dkim_key *keys[DKIM_SIGN_MAX];
	char *selectors[DKIM_SIGN_MAX];
};

struct queue_keys;

struct queue_keys *queue_keys_new(void);
void queue_keys_free(struct queue_keys **kc);

/* The cached set of domain if still fresh at now (a new reference the
 * caller drops with queue_keyset_unref), else NULL. */
struct queue_keyset *queue_keys_get(struct queue_keys *kc, const char *domain, int64_t now);

/*
 * Replace the sets of domains[0..n) by what res holds (a domain without
 * rows gets an empty set).  A key that does not load is logged and left
 * out; at most DKIM_SIGN_MAX keys per domain.
 */
void queue_keys_store(struct queue_keys *kc, const char *const *domains, size_t n,
                      const PGresult *res, int64_t now);

void queue_keyset_unref(struct queue_keyset **ks);

#endif
