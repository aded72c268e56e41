/*
 * acl/merge.h -- put our managed entries into someone else's policy.
 *
 * A tailnet policy belongs to its admins; we only own the entries we add.
 * Ownership is marked the only way HuJSON allows without inventing policy
 * keys (which Tailscale would reject): a comment line right before each
 * entry,
 *
 *     // tailpost-acl id=tailpost: managed entry, regenerate with gen | merge
 *
 * Array sections (acls, grants, tests, ssh, sshTests, nodeAttrs): our
 * entries are replaced in place, extra ones appended after the last of
 * ours, surplus ones removed.  Map sections (tagOwners, groups, hosts,
 * ipsets, postures): a missing name is added (marked); a marked one is
 * replaced; an unmarked one with a different value is a conflict, settled
 * by the policy: error (nothing written), union (lists merged, base order
 * first), ours (keep the base value), theirs (take the snippet's).  A
 * section we had to create is marked too and goes away with --remove.
 *
 * Entries equal in value to what is there are left alone, byte for byte,
 * so a second merge changes nothing, whatever formatting the admin gave
 * them.  Every byte outside touched entries is kept.
 */
#ifndef ACL_MERGE_H
#define ACL_MERGE_H

#include "acl/diag.h"
#include "acl/hujson.h"

enum acl_conflict_mode {
	ACL_CONFLICT_ERROR = 0,
	ACL_CONFLICT_UNION,
	ACL_CONFLICT_OURS,
	ACL_CONFLICT_THEIRS,
};

/* Parse "error|union|ours|theirs"; -1 if unknown. */
int acl_conflict_mode_parse(const char *s);

struct acl_merge_src {
	const char *name; /* file name for messages */
	const char *text; /* its bytes, for line numbers */
	size_t len;
};

/*
 * Merge snippet (an object of sections) into base in place.  Findings go
 * to d.  Returns ACL_EXIT_OK, ACL_EXIT_CONFLICT (base possibly half
 * edited: discard it) or ACL_EXIT_INVALID (snippet not mergeable).
 */
int acl_merge(struct hujson_value *base, const struct acl_merge_src *bsrc,
              const struct hujson_value *snippet, const struct acl_merge_src *ssrc, const char *id,
              enum acl_conflict_mode mode, struct acl_diags *d);

/* Remove every entry (and section) marked with id.  Returns the number of
 * entries removed. */
size_t acl_merge_remove(struct hujson_value *base, const char *id);

/* True if the comments before item i of comp carry the marker for id. */
bool acl_merge_is_managed(struct hujson_value *comp, size_t i, const char *id);

#endif
