/*
 * acl/policy.h -- a Tailscale policy file, read and checked.
 *
 * The loader turns the HuJSON tree into plain lists of strings, each with
 * the byte offset it came from so every later finding (an undefined tag, a
 * failing test) can name FILE:LINE:COL.  It checks what Tailscale's control
 * plane checks when a policy is saved (tailscale.com/kb/1337/policy-syntax):
 *
 *   - the top level is an object of known sections, names matched
 *     case-insensitively (Tailscale decodes with case-insensitive names and
 *     rejects unknown members: `json: unknown field "acl"`), no duplicates;
 *   - each section has its shape (acls: action/src/proto/dst; grants:
 *     src/dst/ip/app/...; groups, hosts, tagOwners, ipsets, postures,
 *     tests, ssh, sshTests, nodeAttrs, autoApprovers, network options);
 *   - selectors parse and what they name is defined: tags in tagOwners,
 *     groups in groups, hosts in hosts, ipsets in ipsets, known autogroups,
 *     ports "*", "N", "N-M" and lists, protocols by name or number.
 *
 * The tests block is kept as written: its shape problems are test
 * failures, as they are for Tailscale ("test(s) failed"), reported by the
 * evaluator.
 */
#ifndef ACL_POLICY_H
#define ACL_POLICY_H

#include "acl/diag.h"
#include "acl/hujson.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A string taken from the file and where it was (offset of its quote). */
struct acl_str {
	char *s; /* owned, NUL-terminated */
	size_t off;
};

struct acl_strlist {
	struct acl_str *v;
	size_t n;
};

/* groups, tagOwners, ipsets, postures: name -> list. */
struct acl_named {
	struct acl_str name;
	struct acl_strlist items;
};

struct acl_host {
	struct acl_str name;
	struct acl_str value;
};

enum acl_rule_kind {
	ACL_RULE_ACL,
	ACL_RULE_GRANT,
};

struct acl_rule {
	enum acl_rule_kind kind;
	size_t index; /* position within acls[] or grants[] */
	size_t off;   /* offset of the rule's '{' */
	struct acl_strlist src;
	struct acl_strlist dst; /* acls: "alias:ports"; grants: aliases */
	struct acl_str proto;   /* acls only; s == NULL when absent */
	struct acl_strlist ip;  /* grants only */
};

struct acl_test {
	size_t off;
	bool has_src, has_accept, has_deny;
	struct acl_str src;   /* s may be "" */
	struct acl_str proto; /* s == NULL when absent */
	struct acl_strlist accept, deny;
};

struct acl_policy {
	char *file; /* name used in messages */
	char *text; /* the source bytes (owned) */
	size_t len;
	struct hujson_value root;

	struct acl_named *groups, *tag_owners, *ipsets, *postures;
	size_t ngroups, ntag_owners, nipsets, npostures;
	struct acl_host *hosts;
	size_t nhosts;
	struct acl_rule *rules; /* acls first, then grants, in file order */
	size_t nrules;
	struct acl_test *tests;
	size_t ntests;
	bool has_acls, has_grants, has_tests;
	bool snippet; /* references may point outside the file */
};

/* Flags for acl_policy_load. */
#define ACL_LOAD_SNIPPET 0x01 /* a fragment: undefined references are warnings */

/*
 * Parse and check a policy from text (copied).  Findings go to d with file
 * as FILE.  Returns ACL_EXIT_OK, ACL_EXIT_SYNTAX (HuJSON error; nothing else
 * checked) or ACL_EXIT_INVALID.  p must be released with acl_policy_free()
 * whatever the result.
 */
int acl_policy_load(struct acl_policy *p, const char *file, const char *text, size_t len,
                    unsigned flags, struct acl_diags *d);
void acl_policy_free(struct acl_policy *p);

/* Line and column of byte offset off in the policy source. */
void acl_policy_pos(const struct acl_policy *p, size_t off, int *line_r, int *col_r);

/* Lookups (exact names). */
const struct acl_named *acl_policy_group(const struct acl_policy *p, const char *name);
const struct acl_named *acl_policy_tag_owner(const struct acl_policy *p, const char *name);
const struct acl_named *acl_policy_ipset(const struct acl_policy *p, const char *name);
const struct acl_host *acl_policy_host(const struct acl_policy *p, const char *name);

/* --- selectors, shared with the evaluator ------------------------------- */

enum acl_alias_kind {
	ACL_ALIAS_BAD = 0,
	ACL_ALIAS_ANY,       /* "*" */
	ACL_ALIAS_USER,      /* "alice@example.com" */
	ACL_ALIAS_DOMAIN,    /* "user:*@example.com" */
	ACL_ALIAS_GROUP,     /* "group:x" */
	ACL_ALIAS_TAG,       /* "tag:x" */
	ACL_ALIAS_AUTOGROUP, /* "autogroup:x" */
	ACL_ALIAS_IPSET,     /* "ipset:x" */
	ACL_ALIAS_IP,        /* "100.64.0.1", "fd7a::1" */
	ACL_ALIAS_PREFIX,    /* "10.0.0.0/8" */
	ACL_ALIAS_HOST,      /* a name from hosts */
};

/* Classify an alias by its syntax (no lookups). */
enum acl_alias_kind acl_alias_kind(const char *s);

/* The autogroups Tailscale knows; true if name ("autogroup:x") is one. */
bool acl_autogroup_known(const char *name);

/*
 * Split an ACL destination "alias:ports" ("tag:web:80,443", "[fd7a::1]:22",
 * "10.0.0.0/8:*") into a fresh alias string and a pointer to the ports.
 * Returns 0 or -1 with *errstr_r.
 */
int acl_split_dst(const char *s, char **alias_r, const char **ports_r, const char **errstr_r);

struct acl_portrange {
	uint16_t lo, hi;
};

/* Parse "*", "22", "80-90", "22,80,8000-8100"; 0 or -1 with *errstr_r.
 * *out_r is a fresh array of *n_r ranges. */
int acl_ports_parse(const char *s, struct acl_portrange **out_r, size_t *n_r,
                    const char **errstr_r);

/*
 * Parse a protocol name or number ("tcp", "udp", "icmp", "6", "") into a
 * 256-bit set (bitmap of IANA numbers).  Empty means Tailscale's default:
 * TCP, UDP, ICMP and ICMPv6.  0 or -1 with *errstr_r.
 */
int acl_proto_parse(const char *s, uint8_t set[32], const char **errstr_r);

/* True if the protocol carries ports (TCP, UDP, SCTP). */
bool acl_proto_has_ports(int proto);

#endif
