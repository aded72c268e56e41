/*
 * edge/access.c -- longest-prefix-wins allow/deny matching.
 *
 * Rules are sorted by family, then prefix length descending, then network
 * bytes, then allow before deny.  A lookup walks the distinct (family,
 * length) groups from the longest prefix down, masks the client address to
 * that length and binary-searches the group: the first hit is the longest
 * match, and because allow sorts first among equal prefixes, a prefix
 * present in both lists resolves to allow.
 */
#include "edge/access.h"

#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

struct edge_access_rule {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bits;
	uint8_t allow; /* 1 allow, 0 deny */
	uint8_t addr[16];
};

static int rule_cmp(const void *pa, const void *pb)
{
	const struct edge_access_rule *a = pa, *b = pb;
	int c;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->bits != b->bits)
		return a->bits > b->bits ? -1 : 1;
	c = memcmp(a->addr, b->addr, 16);
	if (c != 0)
		return c;
	return (int)b->allow - (int)a->allow;
}

static void add_set(struct edge_access *a, const struct net_cidr_set *s, uint8_t allow)
{
	for (size_t i = 0; i < s->n; i++) {
		struct edge_access_rule *r = &a->rules[a->n++];

		r->family = s->v[i].family;
		r->bits = s->v[i].bits;
		r->allow = allow;
		memset(r->addr, 0, sizeof(r->addr));
		memcpy(r->addr, s->v[i].addr, 16);
	}
}

void edge_access_init(struct edge_access *a, const struct net_cidr_set *allow,
                      const struct net_cidr_set *deny)
{
	size_t n = (allow != NULL ? allow->n : 0) + (deny != NULL ? deny->n : 0);

	a->rules = n > 0 ? xcalloc(n, sizeof(*a->rules)) : NULL;
	a->n = 0;
	a->allow_empty = allow == NULL || allow->n == 0;
	if (allow != NULL)
		add_set(a, allow, 1);
	if (deny != NULL)
		add_set(a, deny, 0);
	if (a->n > 1)
		qsort(a->rules, a->n, sizeof(*a->rules), rule_cmp);
}

void edge_access_free(struct edge_access *a)
{
	free(a->rules);
	a->rules = NULL;
	a->n = 0;
}

static void mask(uint8_t out[16], const uint8_t *ip, size_t iplen, unsigned bits)
{
	memset(out, 0, 16);
	memcpy(out, ip, iplen);
	for (unsigned i = 0; i < 16; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		out[i] &= (uint8_t)(0xff00u >> bits);
		bits = 0;
	}
}

bool edge_access_permits(const struct edge_access *a, const struct net_addr *src)
{
	size_t iplen, i = 0;
	const uint8_t *ip = net_addr_bytes(src, &iplen);
	uint8_t family;

	if (a->n == 0)
		return true;
	if (ip == NULL)
		return a->allow_empty;
	family = iplen == 4 ? AF_INET : AF_INET6;
	while (i < a->n) {
		const struct edge_access_rule *r = &a->rules[i];
		size_t end = i, lo, hi;
		uint8_t want[16];

		while (end < a->n && a->rules[end].family == r->family &&
		       a->rules[end].bits == r->bits)
			end++;
		if (r->family != family) {
			i = end;
			continue;
		}
		mask(want, ip, iplen, r->bits);
		/* lower bound of want in [i, end) */
		lo = i;
		hi = end;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (memcmp(a->rules[mid].addr, want, 16) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < end && memcmp(a->rules[lo].addr, want, 16) == 0)
			return a->rules[lo].allow != 0;
		i = end;
	}
	return a->allow_empty;
}
