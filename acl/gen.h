/*
 * acl/gen.h -- the mail policy snippet, generated from the deployment's
 * settings.
 *
 * tailpost's split needs exactly these flows and nothing more:
 *
 *   edge (TAILPOST_EDGE_TAG)      -> mailbox on 25, 465, 587, 143, 993
 *                                    (and 80 when TAILPOST_ACME is on)
 *   mailbox (TAILPOST_MAILBOX_TAG) -> smarthost (TAILPOST_SMARTHOST_TAG)
 *                                    on TAILPOST_SMARTHOST_PORT
 *   TAILPOST_ADMIN_SRC            -> mailbox on TAILPOST_ADMIN_PORT
 *
 * Settings (defaults in brackets): TAILPOST_EDGE_TAG [tag:reverse-proxy],
 * TAILPOST_MAILBOX_TAG [tag:mailbox], TAILPOST_SMARTHOST_TAG [tag:mail],
 * TAILPOST_SMARTHOST_PORT [587; empty: no smarthost rule],
 * TAILPOST_ADMIN_SRC [autogroup:admin; empty: no admin rule],
 * TAILPOST_ADMIN_PORT [8080], TAILPOST_ACME [true],
 * TAILPOST_MAIL_PORTS [25,465,587,143,993], TAILPOST_TAG_OWNER
 * [autogroup:admin].  With tests, the snippet asserts both what must be
 * reachable and what must not (other mailbox ports from the edge, UDP,
 * the reverse directions), so a later broad rule anywhere in the policy
 * fails its tests.
 */
#ifndef ACL_GEN_H
#define ACL_GEN_H

#include "acl/diag.h"

#include <stdbool.h>
#include <stddef.h>

struct acl_gen_opts {
	bool grants;     /* grants (default) or acls */
	bool with_tests; /* add the tests block */
};

/* A KEY=VALUE lookup: the .env file's entries, or the environment. */
struct acl_env {
	char **keys, **vals;
	size_t n;
	bool use_environ; /* fall back to getenv() */
};

/*
 * Parse a .env file (KEY=VALUE lines, "export " prefix, '#' comments,
 * single or double quotes).  Returns ACL_EXIT_OK, or ACL_EXIT_IO /
 * ACL_EXIT_INVALID with a diagnostic.
 */
int acl_env_load(struct acl_env *env, const char *path, struct acl_diags *d);
int acl_env_parse(struct acl_env *env, const char *name, const char *text, size_t len,
                  struct acl_diags *d);
void acl_env_free(struct acl_env *env);
const char *acl_env_get(const struct acl_env *env, const char *key);

/*
 * Generate the snippet (formatted HuJSON) into a fresh string.  Returns
 * ACL_EXIT_OK or ACL_EXIT_INVALID with diagnostics naming the variable.
 */
int acl_gen(const struct acl_env *env, const struct acl_gen_opts *o, char **out_r,
            struct acl_diags *d);

#endif
