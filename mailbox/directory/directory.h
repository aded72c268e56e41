/*
 * mailbox/directory/directory.h -- domains, accounts, addresses, aliases
 * and API tokens: blocking administration on one PGconn (the CLI), shared
 * types, and name normalisation.
 *
 * Everything is stored lower-case (RFC 5321 2.4 lets a server treat the
 * local part case-insensitively, and every mail server operators meet
 * does).  An address is "local@domain"; "@domain" is the domain's
 * catch-all.  An address points either at an account (it delivers there
 * and can be used to log in) or, as an alias, at a list of targets, each
 * an account login or another address, local or remote (expanded at
 * lookup, depth-limited).  Sub-addressing: "user+tag@d" falls back to
 * "user@d" when no exact entry exists (RFC 5233).
 *
 * The functions here block; they are for `tailpost-mailbox domain|
 * account|alias|token ...` and the tests.  The daemon's asynchronous
 * lookups are in mailbox/directory/lookup.h.  Each returns 0, or -1 with
 * err filled ("domain 'x' does not exist", "account 'bob' already
 * exists").
 */
#ifndef MAILBOX_DIRECTORY_DIRECTORY_H
#define MAILBOX_DIRECTORY_DIRECTORY_H

#include <postgresql/libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dir_role {
	DIR_ROLE_USER = 0,
	DIR_ROLE_ADMIN,
};

/* "user"/"admin" and back (-1 if unknown). */
const char *dir_role_name(enum dir_role r);
int dir_role_parse(const char *s);

/*
 * Normalise an address into out: trims nothing, lower-cases, checks the
 * shape "local@domain" (or "@domain" when allow_catchall), local part and
 * domain non-empty, at most 254 bytes in all (RFC 5321 4.5.3.1.3), no
 * spaces or control bytes.  0, or -1 with *errstr_r (static).  Pure.
 */
int dir_address_normalize(const char *in, bool allow_catchall, char *out, size_t outsz,
                          const char **errstr_r);
/* A domain name: lower-cased, LDH labels separated by dots, <= 253
 * bytes.  0 or -1 with *errstr_r.  Pure. */
int dir_domain_normalize(const char *in, char *out, size_t outsz, const char **errstr_r);

/* --- domains ------------------------------------------------------------ */

int dir_domain_add(PGconn *c, const char *name, char *err, size_t errsz);
/* Refuses while accounts' addresses or aliases use it unless force, which
 * deletes those addresses too (accounts stay). */
int dir_domain_del(PGconn *c, const char *name, bool force, char *err, size_t errsz);

struct dir_domain {
	int64_t id;
	char *name;
	int64_t addresses; /* addresses and aliases in it */
};
/* All domains by name; *v_r malloc'd (free with dir_domains_free). */
int dir_domain_list(PGconn *c, struct dir_domain **v_r, size_t *n_r, char *err, size_t errsz);
void dir_domains_free(struct dir_domain **v, size_t n);

/* --- accounts ----------------------------------------------------------- */

struct dir_account {
	int64_t id;
	char *login;
	enum dir_role role;
	int64_t quota_bytes; /* 0: unlimited */
	bool disabled;
	char **addresses; /* addresses pointing at this account */
	size_t naddresses;
};

/*
 * Create an account with an already computed hash (password_hash() or an
 * imported one; see password_hash_supported).  When login looks like an
 * address in a known domain, that address is added for the account.  An
 * INBOX mailbox is created.  *id_r (may be NULL) receives the id.
 */
int dir_account_add(PGconn *c, const char *login, const char *hash, enum dir_role role,
                    int64_t quota_bytes, int64_t *id_r, char *err, size_t errsz);
/* Deletes the account, its addresses, mailboxes and messages (the blobs
 * are collected later by blob_gc). */
int dir_account_del(PGconn *c, const char *login, char *err, size_t errsz);
int dir_account_set_hash(PGconn *c, const char *login, const char *hash, char *err, size_t errsz);
int dir_account_set(PGconn *c, const char *login, const enum dir_role *role,
                    const int64_t *quota_bytes, const bool *disabled, char *err, size_t errsz);
/* One account by login; -1 with "no account 'x'" when absent. */
int dir_account_get(PGconn *c, const char *login, struct dir_account *out, char *err, size_t errsz);
int dir_account_list(PGconn *c, struct dir_account **v_r, size_t *n_r, char *err, size_t errsz);
void dir_account_clear(struct dir_account *a);
void dir_accounts_free(struct dir_account **v, size_t n);

/* Point address (its domain must exist) at account login. */
int dir_address_add(PGconn *c, const char *address, const char *login, char *err, size_t errsz);

/* --- aliases ------------------------------------------------------------ */

/* address ("x@d" or "@d") expands to targets (logins or addresses; at
 * least one).  Replaces an existing alias of that address. */
int dir_alias_add(PGconn *c, const char *address, const char *const *targets, size_t n, char *err,
                  size_t errsz);
/* Delete an alias or an account address. */
int dir_alias_del(PGconn *c, const char *address, char *err, size_t errsz);

struct dir_alias {
	char *address;
	char *account;  /* login when the address points at an account, else NULL */
	char **targets; /* alias targets, else NULL */
	size_t ntargets;
};
/* Every address and alias, by address; domain NULL for all. */
int dir_alias_list(PGconn *c, const char *domain, struct dir_alias **v_r, size_t *n_r, char *err,
                   size_t errsz);
void dir_aliases_free(struct dir_alias **v, size_t n);

/* --- API tokens --------------------------------------------------------- */

/*
 * Create a bearer token named name (unique): *token_r gets the secret
 * ("tp_" + 43 base64url chars, shown once; caller frees and should wipe
 * it); only its SHA-256 is stored.
 */
int dir_token_add(PGconn *c, const char *name, char **token_r, char *err, size_t errsz);
int dir_token_del(PGconn *c, const char *name, char *err, size_t errsz);
struct dir_token {
	char *name;
	char *created;   /* ISO 8601 */
	char *last_used; /* or NULL */
};
int dir_token_list(PGconn *c, struct dir_token **v_r, size_t *n_r, char *err, size_t errsz);
void dir_tokens_free(struct dir_token **v, size_t n);
/* The stored form of a token: SHA-256 hex.  Pure. */
void dir_token_hash(const char *token, char hex[65]);

#endif
