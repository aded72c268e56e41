/*
 * mailbox/directory/lookup.h -- the daemon's directory lookups on the
 * asynchronous Postgres pool: recipients (RCPT TO) and logins (AUTH,
 * IMAP LOGIN), and API bearer tokens.
 *
 * Each lookup is one statement (the expansion runs in SQL, function
 * tp_rcpt_lookup in the schema), so it costs one round trip and sees one
 * snapshot.  Recipient resolution, in order (RFC 5233 sub-addressing):
 *   1. the exact address;
 *   2. "user+tag@d" -> "user@d";
 *   3. the catch-all "@d";
 * an alias expands to its targets (account logins, local addresses, which
 * are resolved again up to depth 8, or remote addresses returned as
 * forwards).  The domain alone decides "local or not": a known domain with
 * no match is LOOKUP_RCPT_UNKNOWN (550 5.1.1), an unknown domain
 * LOOKUP_RCPT_NOT_LOCAL (relay decision belongs to the caller).
 *
 * Callbacks run on the loop; the returned pg_req may be cancelled with
 * pg_req_cancel (a closed session's callback then never fires).
 */
#ifndef MAILBOX_DIRECTORY_LOOKUP_H
#define MAILBOX_DIRECTORY_LOOKUP_H

#include "mailbox/directory/directory.h"
#include "mailbox/store/pg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lookup_rcpt_status {
	LOOKUP_RCPT_LOCAL = 0, /* deliver: accounts (and maybe forwards) below */
	LOOKUP_RCPT_UNKNOWN,   /* our domain, nobody there */
	LOOKUP_RCPT_NOT_LOCAL, /* not one of our domains */
	LOOKUP_RCPT_TEMPFAIL,  /* store error: answer 4xx */
};

struct lookup_rcpt_result {
	enum lookup_rcpt_status status;
	const int64_t *accounts; /* distinct account ids to deliver to */
	size_t naccounts;
	const char *const *forwards; /* remote addresses an alias expands to */
	size_t nforwards;
	size_t nfull;       /* how many of the accounts are at or over their quota */
	const char *errstr; /* TEMPFAIL: why */
};
/* r and everything it points to live during the call only. */
typedef void lookup_rcpt_cb(void *arg, const struct lookup_rcpt_result *r);

/* Resolve address (any case; normalised here; an invalid one is
 * LOOKUP_RCPT_UNKNOWN with errstr set). */
struct pg_req *lookup_rcpt(struct pg_pool *p, const char *address, lookup_rcpt_cb *cb, void *arg);

enum lookup_auth_status {
	LOOKUP_AUTH_FOUND = 0,
	LOOKUP_AUTH_NONE,     /* no such login or address */
	LOOKUP_AUTH_TEMPFAIL, /* store error */
};

struct lookup_auth_result {
	enum lookup_auth_status status;
	int64_t account_id;
	const char *login;         /* the account's login (canonical name) */
	const char *password_hash; /* verify with password_pool_verify */
	enum dir_role role;
	bool disabled;
	const char *errstr;
};
typedef void lookup_auth_cb(void *arg, const struct lookup_auth_result *r);

/* Find the account whose login is name, or which owns address name. */
struct pg_req *lookup_auth(struct pg_pool *p, const char *name, lookup_auth_cb *cb, void *arg);

/* A bearer token: found (true) when its hash is stored; last_used is
 * updated in the same statement. */
typedef void lookup_token_cb(void *arg, bool found, const char *name, const char *errstr);
struct pg_req *lookup_token(struct pg_pool *p, const char *token, lookup_token_cb *cb, void *arg);

#endif
