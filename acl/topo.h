/*
 * acl/topo.h -- the tailnet a policy is evaluated over: users and nodes.
 *
 * A policy names users, groups and tags; whether a test passes depends on
 * which devices carry those names.  The topology comes from a file in the
 * shape of the captured-verdict corpus ({"users": [...], "nodes": {...}},
 * or a whole capture file whose "topology" member has that shape), or is
 * synthesized from the policy: one node per tag and one per user the
 * policy names, with addresses from 100.64.0.0/10 and fd7a:115c:a1e0::/48
 * like Tailscale assigns.
 */
#ifndef ACL_TOPO_H
#define ACL_TOPO_H

#include "acl/diag.h"
#include "acl/ipset.h"
#include "acl/policy.h"

struct acl_user {
	char *name;  /* login name ("odin"), may equal email */
	char *email; /* "odin@example.com" */
	char *role;  /* "admin", "owner", ... or NULL */
};

struct acl_node {
	char *name;
	char *user; /* owner's user name; NULL for tagged nodes */
	char **tags;
	size_t ntags;
	ACL_U128 addrs[2]; /* IPv4 and/or IPv6 */
	size_t naddrs;
	struct acl_ipset routes; /* approved subnet routes */
};

struct acl_topo {
	struct acl_user *users;
	size_t nusers;
	struct acl_node *nodes;
	size_t nnodes;
	bool synthesized;
};

/*
 * Load a topology file (HuJSON).  Returns ACL_EXIT_OK, ACL_EXIT_IO,
 * ACL_EXIT_SYNTAX or ACL_EXIT_INVALID with findings in d.
 */
int acl_topo_load(struct acl_topo *t, const char *path, struct acl_diags *d);
/* Same from memory (name used in messages). */
int acl_topo_load_buffer(struct acl_topo *t, const char *name, const char *text, size_t len,
                         struct acl_diags *d);

/* One node per tag and per user named anywhere in the policy. */
void acl_topo_synthesize(struct acl_topo *t, const struct acl_policy *p);

void acl_topo_free(struct acl_topo *t);

/* The user an alias ("odin@example.com") names, or NULL. */
const struct acl_user *acl_topo_user(const struct acl_topo *t, const char *alias);
bool acl_node_has_tag(const struct acl_node *n, const char *tag);

#endif
