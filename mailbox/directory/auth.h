/*
 * mailbox/directory/auth.h -- one call for "are these credentials good":
 * lookup_auth on the Postgres pool, then the password check on the
 * password thread pool, never blocking the loop.
 *
 * The password is copied once into the request and wiped when the check
 * ends.  An unknown login still costs a verification against a fixed
 * dummy hash, so a client cannot tell unknown users from wrong passwords
 * by timing.  Failure counting and bans are the caller's (it knows the
 * client address and the mem store).
 */
#ifndef MAILBOX_DIRECTORY_AUTH_H
#define MAILBOX_DIRECTORY_AUTH_H

#include "mailbox/directory/directory.h"
#include "mailbox/directory/password.h"
#include "mailbox/store/pg.h"

#include <stdint.h>

enum auth_status {
	AUTH_OK = 0,
	AUTH_FAIL,     /* unknown login, wrong password, disabled account */
	AUTH_TEMPFAIL, /* a store is down: answer 4xx / [UNAVAILABLE] */
};

struct auth_result {
	enum auth_status status;
	int64_t account_id; /* AUTH_OK */
	const char *login;  /* AUTH_OK: canonical login (valid during the call) */
	enum dir_role role; /* AUTH_OK */
	const char *reason; /* for the log: "unknown user", "bad password",
	                       "disabled", "unsupported hash", store error */
};
typedef void auth_cb(void *arg, const struct auth_result *r);

struct auth_req;
/* Check name (login or any address of the account) and password. */
struct auth_req *auth_check(struct pg_pool *pg, struct password_pool *pw, const char *name,
                            const char *password, auth_cb *cb, void *arg);
/* The callback will not run.  NULL-safe; *r = NULL; not from the cb. */
void auth_req_cancel(struct auth_req **r);

#endif
