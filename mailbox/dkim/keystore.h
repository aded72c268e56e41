/*
 * mailbox/dkim/keystore.h -- DKIM keys in the dkim_keys table: generate,
 * list, (de)activate, delete.  Blocking, on one PGconn: for
 * `tailpost-mailbox dkim ...` and the admin API's worker thread (as the
 * directory's administration functions, mailbox/directory/directory.h).
 *
 * A row holds the private key as PEM (PKCS#8, mailbox/dkim/key.h) and, as
 * its public part, the DNS TXT value to publish at
 * SELECTOR._domainkey.DOMAIN ("v=DKIM1; k=ed25519; p=...").  A domain may
 * have several keys (an RSA and an Ed25519 one side by side, RFC 8463 6,
 * or an old and a new one during a rotation); the signer uses the active
 * ones.  Selectors are unique per domain.
 *
 * Every function returns 0, or -1 with err filled with a sentence for the
 * operator ("domain 'x' does not exist", "selector 'ed202605' already
 * exists for example.org").
 */
#ifndef MAILBOX_DKIM_KEYSTORE_H
#define MAILBOX_DKIM_KEYSTORE_H

#include "mailbox/dkim/key.h"

#include <jansson.h>
#include <postgresql/libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DKIM_SELECTOR_MAX 63

struct dkim_keystore_entry {
	int64_t id;
	char *domain;
	char *selector;
	enum dkim_alg alg;
	char *txt; /* the DNS TXT value (the stored public part) */
	bool active;
	char *created; /* ISO 8601, UTC */
};

/*
 * Check and lower-case a selector into out (DKIM_SELECTOR_MAX + 1 bytes):
 * dot-separated labels of letters, digits, '-' and '_' (RFC 6376 3.1
 * sub-domains), each 1..63 bytes, at most DKIM_SELECTOR_MAX in all.
 * 0, or -1 with *errstr_r (static).  Pure.
 */
int dkim_keystore_selector_normalize(const char *in, char *out, size_t outsz,
                                     const char **errstr_r);

/*
 * Generate a key of alg for domain (which must be one of ours) and store
 * it, active.  selector NULL: "ed<YYYYMM>" or "rsa<YYYYMM>" of the
 * current UTC month, with a letter appended ("ed202605b") when that one is
 * taken; a given selector that exists already is refused.  *out (may be
 * NULL) receives the new row; release it with dkim_keystore_entry_clear.
 */
int dkim_keystore_generate(PGconn *c, const char *domain, enum dkim_alg alg, const char *selector,
                           struct dkim_keystore_entry *out, char *err, size_t errsz);

/* The keys of domain (NULL: of every domain), by domain then selector;
 * an unknown domain is an error.  *v_r for dkim_keystore_entries_free. */
int dkim_keystore_list(PGconn *c, const char *domain, struct dkim_keystore_entry **v_r, size_t *n_r,
                       char *err, size_t errsz);

/* Mark a key (in)active: an inactive key stays published but no longer
 * signs (the first step of a rotation). */
int dkim_keystore_set_active(PGconn *c, const char *domain, const char *selector, bool active,
                             char *err, size_t errsz);

/* Delete a key; its TXT record may then be withdrawn from DNS. */
int dkim_keystore_delete(PGconn *c, const char *domain, const char *selector, char *err,
                         size_t errsz);

/* {"domain", "selector", "algorithm", "active", "created", "dns_name",
 *  "txt"}: a new reference. */
json_t *dkim_keystore_entry_json(const struct dkim_keystore_entry *e);

void dkim_keystore_entry_clear(struct dkim_keystore_entry *e);
void dkim_keystore_entries_free(struct dkim_keystore_entry **v, size_t n);

#endif
