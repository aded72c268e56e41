/*
 * acl/ipset.c -- range sets over the 128-bit address space.
 *
 * Sets are kept normalised (sorted, merged) after every operation, so
 * subset and overlap tests are linear merges.  Policies have at most a few
 * thousand ranges; no cleverer structure is needed.
 */
#include "acl/ipset.h"
#include "shared/xmalloc.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V4_BASE  (((ACL_U128)0xffff) << 32)
#define U128_MAX (~(ACL_U128)0)

void acl_ipset_init(struct acl_ipset *s)
{
	memset(s, 0, sizeof(*s));
}

void acl_ipset_free(struct acl_ipset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

void acl_ipset_clear(struct acl_ipset *s)
{
	s->n = 0;
}

void acl_ipset_copy(struct acl_ipset *dst, const struct acl_ipset *src)
{
	acl_ipset_init(dst);
	if (src->n == 0)
		return;
	dst->v = xmemdup(src->v, src->n * sizeof(*src->v));
	dst->n = dst->cap = src->n;
}

static int range_cmp(const void *a, const void *b)
{
	const struct acl_iprange *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return 0;
}

static void normalize(struct acl_ipset *s)
{
	size_t w = 0;

	if (s->n < 2)
		return;
	qsort(s->v, s->n, sizeof(*s->v), range_cmp);
	for (size_t r = 1; r < s->n; r++) {
		struct acl_iprange *cur = &s->v[w];

		if (s->v[r].lo <= cur->hi || (cur->hi != U128_MAX && s->v[r].lo == cur->hi + 1)) {
			if (s->v[r].hi > cur->hi)
				cur->hi = s->v[r].hi;
		} else {
			s->v[++w] = s->v[r];
		}
	}
	s->n = w + 1;
}

static void push(struct acl_ipset *s, ACL_U128 lo, ACL_U128 hi)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4;
		s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
	}
	s->v[s->n].lo = lo;
	s->v[s->n].hi = hi;
	s->n++;
}

void acl_ipset_add_range(struct acl_ipset *s, ACL_U128 lo, ACL_U128 hi)
{
	if (lo > hi)
		return;
	push(s, lo, hi);
	normalize(s);
}

void acl_ipset_add_set(struct acl_ipset *s, const struct acl_ipset *o)
{
	for (size_t i = 0; i < o->n; i++)
		push(s, o->v[i].lo, o->v[i].hi);
	normalize(s);
}

void acl_ipset_subtract(struct acl_ipset *s, const struct acl_ipset *o)
{
	struct acl_ipset out;

	acl_ipset_init(&out);
	for (size_t i = 0; i < s->n; i++) {
		ACL_U128 lo = s->v[i].lo, hi = s->v[i].hi;
		bool gone = false;

		for (size_t j = 0; j < o->n && !gone; j++) {
			const struct acl_iprange *r = &o->v[j];

			if (r->hi < lo || r->lo > hi)
				continue;
			if (r->lo > lo)
				push(&out, lo, r->lo - 1);
			if (r->hi >= hi)
				gone = true;
			else
				lo = r->hi + 1;
		}
		if (!gone)
			push(&out, lo, hi);
	}
	normalize(&out);
	free(s->v);
	*s = out;
}

void acl_ipset_intersect(struct acl_ipset *s, const struct acl_ipset *o)
{
	struct acl_ipset out;

	acl_ipset_init(&out);
	for (size_t i = 0; i < s->n; i++) {
		for (size_t j = 0; j < o->n; j++) {
			ACL_U128 lo = s->v[i].lo > o->v[j].lo ? s->v[i].lo : o->v[j].lo;
			ACL_U128 hi = s->v[i].hi < o->v[j].hi ? s->v[i].hi : o->v[j].hi;

			if (lo <= hi)
				push(&out, lo, hi);
		}
	}
	normalize(&out);
	free(s->v);
	*s = out;
}

bool acl_ipset_empty(const struct acl_ipset *s)
{
	return s->n == 0;
}

bool acl_ipset_contains(const struct acl_ipset *s, ACL_U128 a)
{
	for (size_t i = 0; i < s->n; i++)
		if (a >= s->v[i].lo && a <= s->v[i].hi)
			return true;
	return false;
}

bool acl_ipset_subset(const struct acl_ipset *a, const struct acl_ipset *b)
{
	/* Both normalised: each range of a must sit inside one range of b. */
	for (size_t i = 0; i < a->n; i++) {
		bool in = false;

		for (size_t j = 0; j < b->n && !in; j++)
			in = a->v[i].lo >= b->v[j].lo && a->v[i].hi <= b->v[j].hi;
		if (!in)
			return false;
	}
	return true;
}

bool acl_ipset_overlaps(const struct acl_ipset *a, const struct acl_ipset *b)
{
	for (size_t i = 0; i < a->n; i++)
		for (size_t j = 0; j < b->n; j++)
			if (a->v[i].lo <= b->v[j].hi && b->v[j].lo <= a->v[i].hi)
				return true;
	return false;
}

uint64_t acl_ipset_count(const struct acl_ipset *s)
{
	ACL_U128 total = 0;

	for (size_t i = 0; i < s->n; i++) {
		ACL_U128 c = s->v[i].hi - s->v[i].lo;

		if (c >= (ACL_U128)UINT64_MAX || total + c + 1 >= (ACL_U128)UINT64_MAX)
			return UINT64_MAX;
		total += c + 1;
	}
	return (uint64_t)total;
}

bool acl_ip_is_v4(ACL_U128 a)
{
	return a >= V4_BASE && a <= V4_BASE + 0xffffffffu;
}

int acl_ip_parse(const char *s, ACL_U128 *lo_r, ACL_U128 *hi_r, bool *is_prefix_r,
                 const char **errstr_r)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned char raw[16];
	ACL_U128 a = 0;
	int bits, maxbits;
	bool v4;

	if (alen == 0 || alen >= sizeof(buf)) {
		*errstr_r = "invalid IP address";
		return -1;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, raw) == 1) {
		v4 = true;
		a = V4_BASE | ((ACL_U128)raw[0] << 24) | ((ACL_U128)raw[1] << 16) |
		    ((ACL_U128)raw[2] << 8) | raw[3];
		maxbits = 32;
	} else if (strchr(buf, ':') != NULL && strchr(buf, '%') == NULL &&
	           inet_pton(AF_INET6, buf, raw) == 1) {
		v4 = false;
		for (int i = 0; i < 16; i++)
			a = (a << 8) | raw[i];
		maxbits = 128;
	} else {
		*errstr_r = "invalid IP address";
		return -1;
	}
	bits = maxbits;
	if (slash != NULL) {
		const char *p = slash + 1;
		char *end;
		long b;

		if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0')) {
			*errstr_r = "invalid prefix length";
			return -1;
		}
		b = strtol(p, &end, 10);
		if (*end != '\0' || b < 0 || b > maxbits) {
			*errstr_r = "prefix length out of range";
			return -1;
		}
		bits = (int)b;
	}
	{
		int host = (v4 ? 32 : 128) - bits;
		ACL_U128 mask = host >= 128 ? U128_MAX : ((((ACL_U128)1) << host) - 1);

		if (v4 && host == 32)
			mask = 0xffffffffu;
		*lo_r = a & ~mask;
		*hi_r = *lo_r | mask;
		if (v4 && host == 32) {
			*lo_r = V4_BASE;
			*hi_r = V4_BASE | 0xffffffffu;
		}
	}
	if (is_prefix_r != NULL)
		*is_prefix_r = slash != NULL;
	return 0;
}

int acl_ipset_add_str(struct acl_ipset *s, const char *str, const char **errstr_r)
{
	ACL_U128 lo, hi;

	if (acl_ip_parse(str, &lo, &hi, NULL, errstr_r) < 0)
		return -1;
	acl_ipset_add_range(s, lo, hi);
	return 0;
}

const char *acl_ip_str(ACL_U128 a, char *buf, size_t bufsz)
{
	unsigned char raw[16];

	if (acl_ip_is_v4(a)) {
		uint32_t v = (uint32_t)(a & 0xffffffffu);

		snprintf(buf, bufsz, "%u.%u.%u.%u", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff,
		         v & 0xff);
		return buf;
	}
	for (int i = 15; i >= 0; i--) {
		raw[i] = (unsigned char)(a & 0xff);
		a >>= 8;
	}
	if (inet_ntop(AF_INET6, raw, buf, (socklen_t)bufsz) == NULL)
		snprintf(buf, bufsz, "?");
	return buf;
}

/* The prefix length if [lo, hi] is exactly one prefix, else -1. */
static int range_prefix(ACL_U128 lo, ACL_U128 hi)
{
	ACL_U128 size = hi - lo;
	int host = 0;

	if (size == U128_MAX)
		return 0;
	size += 1;
	if ((size & (size - 1)) != 0)
		return -1;
	while (((ACL_U128)1 << host) != size)
		host++;
	if ((lo & (size - 1)) != 0)
		return -1;
	return 128 - host;
}

char *acl_ipset_str(const struct acl_ipset *s)
{
	size_t cap = s->n * 96 + 1, len = 0;
	char *out = xmalloc(cap);

	out[0] = '\0';
	for (size_t i = 0; i < s->n; i++) {
		char a[64], b[64];
		int plen = range_prefix(s->v[i].lo, s->v[i].hi);
		bool v4 = acl_ip_is_v4(s->v[i].lo) && acl_ip_is_v4(s->v[i].hi);

		acl_ip_str(s->v[i].lo, a, sizeof(a));
		if (plen >= 0 && (!v4 || plen >= 96)) {
			int bits = v4 ? plen - 96 : plen;

			if ((v4 && bits == 32) || (!v4 && bits == 128))
				len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "",
				                        a);
			else
				len += (size_t)snprintf(out + len, cap - len, "%s%s/%d",
				                        i ? "," : "", a, bits);
		} else {
			acl_ip_str(s->v[i].hi, b, sizeof(b));
			len += (size_t)snprintf(out + len, cap - len, "%s%s-%s", i ? "," : "", a,
			                        b);
		}
	}
	return out;
}
