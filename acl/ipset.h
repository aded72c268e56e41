/*
 * acl/ipset.h -- sets of IP addresses as sorted, merged ranges.
 *
 * Policy evaluation asks set questions: is every address of a source
 * covered by the union of the sources of the rules that reach a
 * destination?  Prefixes do not compose under union and difference, ranges
 * do, so IPv4 and IPv6 share one 128-bit space (IPv4 as ::ffff:a.b.c.d,
 * RFC 4291 2.5.5.2) and a set is a sorted list of disjoint inclusive
 * ranges.
 */
#ifndef ACL_IPSET_H
#define ACL_IPSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACL_U128 unsigned __int128

struct acl_iprange {
	ACL_U128 lo, hi; /* inclusive */
};

struct acl_ipset {
	struct acl_iprange *v; /* owned, sorted, disjoint, non-adjacent */
	size_t n, cap;
};

void acl_ipset_init(struct acl_ipset *s);
void acl_ipset_free(struct acl_ipset *s);
void acl_ipset_copy(struct acl_ipset *dst, const struct acl_ipset *src);
void acl_ipset_clear(struct acl_ipset *s);

void acl_ipset_add_range(struct acl_ipset *s, ACL_U128 lo, ACL_U128 hi);
void acl_ipset_add_set(struct acl_ipset *s, const struct acl_ipset *o);
/* s := s minus o. */
void acl_ipset_subtract(struct acl_ipset *s, const struct acl_ipset *o);
/* s := s intersect o. */
void acl_ipset_intersect(struct acl_ipset *s, const struct acl_ipset *o);

bool acl_ipset_empty(const struct acl_ipset *s);
bool acl_ipset_contains(const struct acl_ipset *s, ACL_U128 a);
/* Every address of a is in b. */
bool acl_ipset_subset(const struct acl_ipset *a, const struct acl_ipset *b);
bool acl_ipset_overlaps(const struct acl_ipset *a, const struct acl_ipset *b);
/* Number of addresses, saturated at UINT64_MAX. */
uint64_t acl_ipset_count(const struct acl_ipset *s);

/*
 * Parse "1.2.3.4", "fd7a::1", "10.0.0.0/8" or "fd7a::/48" (host bits are
 * masked off, as Go's netip.Prefix.Masked does).  Returns 0, or -1 with
 * *errstr_r set.  *is_prefix_r (may be NULL) tells whether a "/len" was
 * written.
 */
int acl_ip_parse(const char *s, ACL_U128 *lo_r, ACL_U128 *hi_r, bool *is_prefix_r,
                 const char **errstr_r);
/* Add a parsed address or prefix string to s; 0 or -1 with *errstr_r. */
int acl_ipset_add_str(struct acl_ipset *s, const char *str, const char **errstr_r);

/* Format an address ("100.64.0.1", "fd7a:115c:a1e0::1") into buf. */
const char *acl_ip_str(ACL_U128 a, char *buf, size_t bufsz);
/* Format a set as a comma-separated list of prefixes/ranges into a fresh
 * string the caller frees. */
char *acl_ipset_str(const struct acl_ipset *s);

bool acl_ip_is_v4(ACL_U128 a);

#endif
