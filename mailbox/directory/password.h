/*
 * mailbox/directory/password.h -- password hashes: verify, create, and a
 * thread pool that keeps both off the event loop.
 *
 * Accepted hash formats (what operators bring from other servers):
 *   $argon2id$v=19$m=..,t=..,p=..$salt$hash   libargon2 (argon2id_verify)
 *   $y$...                                     yescrypt   (libcrypt)
 *   $6$...                                     SHA-512-crypt (libcrypt)
 *   $2b$NN$...                                 bcrypt     (libcrypt)
 * New hashes are argon2id, m = 64 MiB, t = 3, p = 1 (RFC 9106 4, the
 * second recommended option), 16-byte random salt, 32-byte tag.
 *
 * Verification costs tens of milliseconds by design, so the daemon never
 * runs it on the loop: struct password_pool runs it on a few pthreads and
 * reports back through an ev_async.  Copies of passwords are wiped
 * (OPENSSL_cleanse) as soon as they are no longer needed.
 */
#ifndef MAILBOX_DIRECTORY_PASSWORD_H
#define MAILBOX_DIRECTORY_PASSWORD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

enum password_result {
	PASSWORD_MATCH = 0,
	PASSWORD_MISMATCH,
	PASSWORD_BAD_HASH, /* unknown format or malformed hash: treat as mismatch, log */
};

/* Blocking.  Constant-time comparison for the formats we compare
 * ourselves; never logs pw. */
enum password_result password_verify(const char *hash, const char *pw);

/* A new argon2id hash of pw (malloc'd, caller frees), or NULL with
 * *errstr_r.  Blocking (~0.1 s). */
char *password_hash(const char *pw, const char **errstr_r);

/* True if hash starts with one of the accepted prefixes and looks well
 * formed (for "account add --hash"). */
bool password_hash_supported(const char *hash);

struct password_pool;
struct password_req;
typedef void password_cb(void *arg, enum password_result r);

/* nthreads worker threads (1..16) reporting to loop. */
struct password_pool *password_pool_new(struct ev_loop *loop, int nthreads);
/* Joins the threads; pending requests are dropped without callbacks.
 * NULL-safe; sets *pp to NULL. */
void password_pool_free(struct password_pool **pp);

/*
 * Verify pw against hash on a worker thread; cb runs on the loop.  Both
 * strings are copied (the copy of pw is wiped after use), so the caller
 * may wipe its own at once.  Never NULL.
 */
struct password_req *password_pool_verify(struct password_pool *pp, const char *hash,
                                          const char *pw, password_cb *cb, void *arg);
/* The callback will not run.  NULL-safe; *r = NULL; not from the cb. */
void password_req_cancel(struct password_req **r);

#endif
