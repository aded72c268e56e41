/*
 * acl/eval.h -- what a policy allows, over a topology.
 *
 * The evaluator compiles acls and grants into packet-filter-like rules
 * (source address set, protocols, destination address sets with ports),
 * the way Tailscale's control plane does before it sends filters to nodes,
 * and answers reachability questions over them:
 *
 *   - an access is allowed when every address of the source is covered by
 *     the union of the sources of the rules that match the destination,
 *     port and protocol (so a user with an IPv4 and an IPv6 address passes
 *     only if both are allowed);
 *   - an access is denied (for "deny" tests) when no address of the source
 *     reaches any address of the destination;
 *   - with neither acls nor grants, everything is allowed (Tailscale's
 *     default policy); an empty acls list allows nothing.
 *
 * Tests follow Tailscale's rules as captured in the verdict corpus: a
 * destination is "host:port" with one port (no lists, ranges or "*"), an
 * address rather than a prefix, and no autogroup:internet; the source must
 * resolve to at least one address; an entry needs accept or deny.
 */
#ifndef ACL_EVAL_H
#define ACL_EVAL_H

#include "acl/diag.h"
#include "acl/ipset.h"
#include "acl/policy.h"
#include "acl/topo.h"

struct acl_cdst {
	struct acl_ipset ips;
	bool self; /* autogroup:self: the source user's own devices */
	struct acl_portrange *ports;
	size_t nports;
	size_t dst_index; /* which dst string of the rule */
};

struct acl_crule {
	size_t rule;     /* index into policy->rules */
	size_t ip_index; /* grants: which "ip" entry */
	struct acl_ipset src;
	uint8_t protos[32];
	struct acl_cdst *dsts;
	size_t ndsts;
};

struct acl_eval {
	const struct acl_policy *p;
	const struct acl_topo *t;
	struct acl_crule *rules;
	size_t nrules;
	bool allow_all;
};

/* Compile p over t (both must outlive e).  Selectors that do not resolve
 * (possible only in snippets) are skipped. */
void acl_eval_init(struct acl_eval *e, const struct acl_policy *p, const struct acl_topo *t);
void acl_eval_free(struct acl_eval *e);

enum acl_use {
	ACL_USE_SRC,
	ACL_USE_DST,
	ACL_USE_TEST_SRC,
	ACL_USE_TEST_DST,
};

/*
 * Resolve a selector to addresses.  Returns 0, or -1 with a fresh message
 * in *err_r.  *self_r (may be NULL) is set for autogroup:self.
 */
int acl_eval_resolve(const struct acl_eval *e, const char *alias, enum acl_use use,
                     struct acl_ipset *out, bool *self_r, char **err_r);

struct acl_verdict {
	bool all;     /* every source address reaches every destination address */
	bool none;    /* no source address reaches any destination address */
	size_t *hits; /* compiled rules that allowed something, by index */
	size_t nhits;
};

/*
 * Evaluate src -> dst on port with a protocol in protos.  self_user, when
 * not NULL, restricts an autogroup:self destination to that user's nodes.
 * v must be released with acl_verdict_free().
 */
void acl_eval_check(const struct acl_eval *e, const struct acl_ipset *src,
                    const struct acl_ipset *dst, uint16_t port, const uint8_t protos[32],
                    struct acl_verdict *v);
void acl_verdict_free(struct acl_verdict *v);

/* Where a compiled rule came from: "acls[2]" / "grants[0]" and offset. */
void acl_eval_rule_name(const struct acl_eval *e, size_t crule, char *buf, size_t bufsz,
                        size_t *off_r);

/*
 * Run the policy's tests block.  Each failure is a diagnostic at the
 * test's (or destination's) position; *npass_r and *nfail_r count entries.
 * Returns ACL_EXIT_OK or ACL_EXIT_FAIL.
 */
int acl_eval_tests(const struct acl_eval *e, struct acl_diags *d, size_t *npass_r, size_t *nfail_r);

/*
 * Parse a test destination "host:port" the way Tailscale's tests accept
 * it.  On success *alias_r is a fresh string and *port_r the port.
 */
int acl_test_dst_parse(const char *s, char **alias_r, uint16_t *port_r, char **err_r);

#endif
