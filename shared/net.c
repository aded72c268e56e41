/*
 * shared/net.c -- IP addresses, host:port strings and CIDR sets.
 *
 * Everything here is pure: no DNS, no sockets, no globals except a
 * thread-local buffer for the one error message that names a network.
 * Addresses live in a sockaddr union so they can go straight to bind(2) and
 * connect(2); an IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 2.5.5.2)
 * is always stored as plain IPv4, so one client has one key in logs, bans
 * and rate limits whichever socket family it arrived on.
 *
 * A CIDR set is a sorted array of (family, bits, masked address).  Entries
 * of one prefix length are contiguous, so membership walks the prefix
 * lengths present and binary-searches each group for the address masked to
 * that length: O(lengths * log n) with no allocation.
 */
#include "shared/net.h"
#include "shared/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 4291 2.5.5.2: ::ffff:0:0/96 carries an IPv4 address. */
static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v4(struct net_addr *out, const void *ip4, uint16_t port)
{
	memset(out, 0, sizeof(*out));
	out->u.in.sin_family = AF_INET;
	memcpy(&out->u.in.sin_addr, ip4, 4);
	out->u.in.sin_port = htons(port);
	out->len = sizeof(struct sockaddr_in);
}

static void set_v6(struct net_addr *out, const uint8_t *ip6, uint16_t port, uint32_t scope)
{
	if (memcmp(ip6, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
		set_v4(out, ip6 + 12, port);
		return;
	}
	memset(out, 0, sizeof(*out));
	out->u.in6.sin6_family = AF_INET6;
	memcpy(&out->u.in6.sin6_addr, ip6, 16);
	out->u.in6.sin6_port = htons(port);
	out->u.in6.sin6_scope_id = scope;
	out->len = sizeof(struct sockaddr_in6);
}

/* A numeric zone index (RFC 4007 11.2 "fe80::1%2").  Interface names would
 * need a system call, which this file never makes. */
static int parse_scope(const char *s, uint32_t *scope_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*scope_r = (uint32_t)v;
	return 0;
}

int net_addr_parse(const char *ip, uint16_t port, struct net_addr *out)
{
	uint8_t raw[16];
	char tmp[INET6_ADDRSTRLEN];
	const char *pct;
	uint32_t scope = 0;
	size_t n;

	if (inet_pton(AF_INET, ip, raw) == 1) {
		set_v4(out, raw, port);
		return 0;
	}
	pct = strchr(ip, '%');
	n = pct != NULL ? (size_t)(pct - ip) : strlen(ip);
	if (n >= sizeof(tmp))
		return -1;
	memcpy(tmp, ip, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET6, tmp, raw) != 1)
		return -1;
	if (pct != NULL && parse_scope(pct + 1, &scope) < 0)
		return -1;
	set_v6(out, raw, port, scope);
	return 0;
}

/* Port: 1..65535, decimal digits only (no sign, no spaces). */
static int parse_port(const char *s, uint16_t *port, const char **errstr_r)
{
	uint32_t v = 0;
	size_t n = 0;

	if (*s == '\0') {
		*errstr_r = "missing port";
		return -1;
	}
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9') {
			*errstr_r = "port is not a number";
			return -1;
		}
		if (v <= 65535)
			v = v * 10 + (uint32_t)(s[n] - '0');
	}
	if (v == 0 || v > 65535) {
		*errstr_r = "port out of range (1-65535)";
		return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

/* A host that is not an IP literal must look like a DNS name (RFC 1123
 * 2.1 letters, digits, hyphens and dots; '_' is common in service names). */
static bool host_chars_ok(const char *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

int net_hostport_split(const char *s, char *host, size_t hostsz, uint16_t *port,
                       const char **errstr_r)
{
	const char *h, *p, *colon;
	size_t hlen;
	struct net_addr tmp;

	if (s == NULL || *s == '\0') {
		*errstr_r = "empty address";
		return -1;
	}
	if (s[0] == '[') {
		/* RFC 3986 3.2.2: an IPv6 literal with a port is bracketed. */
		const char *close = strchr(s, ']');
		if (close == NULL) {
			*errstr_r = "unbalanced '[' in address";
			return -1;
		}
		h = s + 1;
		hlen = (size_t)(close - h);
		if (hlen == 0) {
			*errstr_r = "empty host";
			return -1;
		}
		if (memchr(h, '[', hlen) != NULL || strchr(close + 1, ']') != NULL ||
		    strchr(close + 1, '[') != NULL) {
			*errstr_r = "unbalanced brackets in address";
			return -1;
		}
		if (close[1] == '\0') {
			*errstr_r = "missing port";
			return -1;
		}
		if (close[1] != ':') {
			*errstr_r = "expected ':port' after ']'";
			return -1;
		}
		p = close + 2;
		if (hlen >= hostsz || hlen >= NET_HOSTLEN) {
			*errstr_r = "host too long";
			return -1;
		}
		memcpy(host, h, hlen);
		host[hlen] = '\0';
		if (strchr(host, ':') == NULL || net_addr_parse(host, 0, &tmp) < 0) {
			*errstr_r = "brackets must hold an IPv6 address";
			return -1;
		}
		return parse_port(p, port, errstr_r);
	}
	if (strchr(s, ']') != NULL || strchr(s, '[') != NULL) {
		*errstr_r = "unbalanced brackets in address";
		return -1;
	}
	colon = strchr(s, ':');
	if (colon == NULL) {
		*errstr_r = "missing port";
		return -1;
	}
	if (strchr(colon + 1, ':') != NULL) {
		*errstr_r = "an IPv6 address with a port must be written [addr]:port";
		return -1;
	}
	h = s;
	hlen = (size_t)(colon - s);
	if (hlen == 0) {
		*errstr_r = "empty host";
		return -1;
	}
	if (hlen >= hostsz || hlen >= NET_HOSTLEN) {
		*errstr_r = "host too long";
		return -1;
	}
	if (!host_chars_ok(h, hlen)) {
		*errstr_r = "invalid character in host";
		return -1;
	}
	if (parse_port(colon + 1, port, errstr_r) < 0)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	return 0;
}

int net_addr_parse_hostport(const char *s, struct net_addr *out, const char **errstr_r)
{
	char host[NET_HOSTLEN];
	uint16_t port;

	if (net_hostport_split(s, host, sizeof(host), &port, errstr_r) < 0)
		return -1;
	if (net_addr_parse(host, port, out) < 0) {
		*errstr_r = "host is not an IP address";
		return -1;
	}
	return 0;
}

void net_addr_from_sockaddr(struct net_addr *out, const struct sockaddr *sa, socklen_t len)
{
	if (sa != NULL && sa->sa_family == AF_INET &&
	    len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		set_v4(out, &in->sin_addr, ntohs(in->sin_port));
		return;
	}
	if (sa != NULL && sa->sa_family == AF_INET6 &&
	    len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		set_v6(out, in6->sin6_addr.s6_addr, ntohs(in6->sin6_port), in6->sin6_scope_id);
		return;
	}
	memset(out, 0, sizeof(*out));
	out->u.sa.sa_family = AF_UNSPEC;
}

void net_addr_from_bytes(struct net_addr *out, int family, const void *ip, uint16_t port)
{
	if (family == AF_INET) {
		set_v4(out, ip, port);
	} else if (family == AF_INET6) {
		set_v6(out, ip, port, 0);
	} else {
		memset(out, 0, sizeof(*out));
		out->u.sa.sa_family = AF_UNSPEC;
	}
}

int net_addr_family(const struct net_addr *a)
{
	if (a->len == 0)
		return AF_UNSPEC;
	return a->u.sa.sa_family;
}

uint16_t net_addr_port(const struct net_addr *a)
{
	switch (net_addr_family(a)) {
	case AF_INET:
		return ntohs(a->u.in.sin_port);
	case AF_INET6:
		return ntohs(a->u.in6.sin6_port);
	default:
		return 0;
	}
}

void net_addr_set_port(struct net_addr *a, uint16_t port)
{
	switch (net_addr_family(a)) {
	case AF_INET:
		a->u.in.sin_port = htons(port);
		break;
	case AF_INET6:
		a->u.in6.sin6_port = htons(port);
		break;
	default:
		break;
	}
}

const uint8_t *net_addr_bytes(const struct net_addr *a, size_t *len_r)
{
	switch (net_addr_family(a)) {
	case AF_INET:
		*len_r = 4;
		return (const uint8_t *)&a->u.in.sin_addr;
	case AF_INET6:
		*len_r = 16;
		return a->u.in6.sin6_addr.s6_addr;
	default:
		*len_r = 0;
		return NULL;
	}
}

bool net_addr_is_loopback(const struct net_addr *a)
{
	size_t n;
	const uint8_t *b = net_addr_bytes(a, &n);
	static const uint8_t v6_loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

	if (n == 4)
		return b[0] == 127; /* RFC 1122 3.2.1.3: all of 127/8 */
	if (n == 16)
		return memcmp(b, v6_loop, 16) == 0; /* RFC 4291 2.5.3 */
	return false;
}

bool net_addr_ip_equal(const struct net_addr *a, const struct net_addr *b)
{
	size_t na, nb;
	const uint8_t *pa = net_addr_bytes(a, &na), *pb = net_addr_bytes(b, &nb);

	if (pa == NULL || pb == NULL || na != nb || memcmp(pa, pb, na) != 0)
		return false;
	/* fe80::1%1 and fe80::1%2 are different hosts. */
	return na == 4 || a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id;
}

/* Copy src into buf, truncating if needed (bufsz 0 writes nothing). */
static const char *copy_out(char *buf, size_t bufsz, const char *src)
{
	if (bufsz > 0)
		snprintf(buf, bufsz, "%s", src);
	return buf;
}

const char *net_addr_ip_str(const struct net_addr *a, char *buf, size_t bufsz)
{
	char tmp[NET_ADDRSTRLEN];
	size_t n;

	switch (net_addr_family(a)) {
	case AF_INET:
		inet_ntop(AF_INET, &a->u.in.sin_addr, tmp, sizeof(tmp));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &a->u.in6.sin6_addr, tmp, sizeof(tmp));
		if (a->u.in6.sin6_scope_id != 0) {
			n = strlen(tmp);
			snprintf(tmp + n, sizeof(tmp) - n, "%%%u",
			         (unsigned)a->u.in6.sin6_scope_id);
		}
		break;
	default:
		return copy_out(buf, bufsz, "-");
	}
	return copy_out(buf, bufsz, tmp);
}

const char *net_addr_str(const struct net_addr *a, char *buf, size_t bufsz)
{
	char ip[NET_ADDRSTRLEN], tmp[NET_ADDRSTRLEN + 8];
	int fam = net_addr_family(a);

	if (fam != AF_INET && fam != AF_INET6)
		return copy_out(buf, bufsz, "-");
	net_addr_ip_str(a, ip, sizeof(ip));
	if (fam == AF_INET6)
		snprintf(tmp, sizeof(tmp), "[%s]:%u", ip, (unsigned)net_addr_port(a));
	else
		snprintf(tmp, sizeof(tmp), "%s:%u", ip, (unsigned)net_addr_port(a));
	return copy_out(buf, bufsz, tmp);
}

/* --- CIDR --------------------------------------------------------------- */

static void mask_bytes(uint8_t *dst, const uint8_t *src, unsigned nbytes, unsigned bits)
{
	for (unsigned i = 0; i < nbytes; i++) {
		if (bits >= 8) {
			dst[i] = src[i];
			bits -= 8;
		} else {
			dst[i] = (uint8_t)(src[i] & (uint8_t)(0xff00u >> bits));
			bits = 0;
		}
	}
}

int net_cidr_parse(const char *s, struct net_cidr *out, const char **errstr_r)
{
	static __thread char msg[160];
	char ip[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t iplen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	uint8_t raw[16], masked[16];
	unsigned bits, maxbits, nbytes;
	int fam;

	if (iplen == 0) {
		*errstr_r = "empty network address";
		return -1;
	}
	if (iplen >= sizeof(ip)) {
		*errstr_r = "invalid network address";
		return -1;
	}
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, raw) == 1) {
		fam = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, ip, raw) == 1) {
		fam = AF_INET6;
		maxbits = 128;
	} else {
		*errstr_r = "invalid network address";
		return -1;
	}
	bits = maxbits;
	if (slash != NULL) {
		const char *p = slash + 1;
		if (*p == '\0') {
			*errstr_r = "missing prefix length after '/'";
			return -1;
		}
		bits = 0;
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9') {
				*errstr_r = "prefix length is not a number";
				return -1;
			}
			if (bits <= 128)
				bits = bits * 10 + (unsigned)(*p - '0');
		}
		if (bits > maxbits) {
			*errstr_r = fam == AF_INET ? "prefix length over 32 for IPv4"
			                           : "prefix length over 128 for IPv6";
			return -1;
		}
	}
	nbytes = fam == AF_INET ? 4 : 16;
	mask_bytes(masked, raw, nbytes, bits);
	if (memcmp(masked, raw, nbytes) != 0) {
		char net[INET6_ADDRSTRLEN];
		inet_ntop(fam, masked, net, sizeof(net));
		snprintf(msg, sizeof(msg), "host bits set beyond the /%u prefix (network is %s/%u)",
		         bits, net, bits);
		*errstr_r = msg;
		return -1;
	}
	memset(out, 0, sizeof(*out));
	/* ::ffff:a.b.c.d/N with N >= 96 is the IPv4 network a.b.c.d/(N-96):
	 * addresses are normalised to IPv4, so the prefix must be too. */
	if (fam == AF_INET6 && bits >= 96 &&
	    memcmp(raw, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
		out->family = AF_INET;
		out->bits = (uint8_t)(bits - 96);
		memcpy(out->addr, raw + 12, 4);
		return 0;
	}
	out->family = (uint8_t)fam;
	out->bits = (uint8_t)bits;
	memcpy(out->addr, raw, nbytes);
	return 0;
}

const char *net_cidr_str(const struct net_cidr *c, char *buf, size_t bufsz)
{
	char ip[INET6_ADDRSTRLEN], tmp[INET6_ADDRSTRLEN + 8];

	if ((c->family != AF_INET && c->family != AF_INET6) ||
	    inet_ntop(c->family, c->addr, ip, sizeof(ip)) == NULL)
		return copy_out(buf, bufsz, "-");
	snprintf(tmp, sizeof(tmp), "%s/%u", ip, (unsigned)c->bits);
	return copy_out(buf, bufsz, tmp);
}

void net_cidr_set_init(struct net_cidr_set *set)
{
	set->v = NULL;
	set->n = set->cap = 0;
}

void net_cidr_set_free(struct net_cidr_set *set)
{
	free(set->v);
	net_cidr_set_init(set);
}

static unsigned cidr_nbytes(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

/* Order: family, then bits, then address bytes. */
static int cidr_cmp(const struct net_cidr *a, const struct net_cidr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->bits != b->bits)
		return a->bits < b->bits ? -1 : 1;
	return memcmp(a->addr, b->addr, cidr_nbytes(a->family));
}

/* First index whose element is not less than key. */
static size_t lower_bound(const struct net_cidr *v, size_t lo, size_t hi,
                          const struct net_cidr *key)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cidr_cmp(&v[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void net_cidr_set_add(struct net_cidr_set *set, const struct net_cidr *c)
{
	struct net_cidr e;
	size_t pos;

	if (c->family != AF_INET && c->family != AF_INET6)
		return;
	memset(&e, 0, sizeof(e));
	e.family = c->family;
	e.bits = c->bits;
	if (e.bits > cidr_nbytes(e.family) * 8)
		e.bits = (uint8_t)(cidr_nbytes(e.family) * 8);
	/* Keep the invariant that stored addresses have no host bits. */
	mask_bytes(e.addr, c->addr, cidr_nbytes(e.family), e.bits);
	pos = lower_bound(set->v, 0, set->n, &e);
	if (pos < set->n && cidr_cmp(&set->v[pos], &e) == 0)
		return;
	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 8;
		set->v = xreallocarray(set->v, set->cap, sizeof(*set->v));
	}
	memmove(&set->v[pos + 1], &set->v[pos], (set->n - pos) * sizeof(*set->v));
	set->v[pos] = e;
	set->n++;
}

int net_cidr_set_add_str(struct net_cidr_set *set, const char *s, const char **errstr_r)
{
	struct net_cidr c;

	if (net_cidr_parse(s, &c, errstr_r) < 0)
		return -1;
	net_cidr_set_add(set, &c);
	return 0;
}

/* Is the address raw (family fam) in any prefix of that family? */
static bool set_contains_raw(const struct net_cidr_set *set, uint8_t fam, const uint8_t *raw,
                             unsigned maxbits)
{
	struct net_cidr key;
	size_t pos, end;

	memset(&key, 0, sizeof(key));
	key.family = fam;
	key.bits = 0;
	pos = lower_bound(set->v, 0, set->n, &key);
	while (pos < set->n && set->v[pos].family == fam) {
		unsigned bits = set->v[pos].bits;
		/* End of this prefix-length group: the first entry with more bits. */
		struct net_cidr next;
		memset(&next, 0, sizeof(next));
		next.family = fam;
		next.bits = (uint8_t)(bits + 1);
		end = bits + 1 > 128 ? set->n : lower_bound(set->v, pos, set->n, &next);
		if (bits <= maxbits) {
			key.bits = (uint8_t)bits;
			mask_bytes(key.addr, raw, cidr_nbytes(fam), bits);
			size_t at = lower_bound(set->v, pos, end, &key);
			if (at < end && cidr_cmp(&set->v[at], &key) == 0)
				return true;
		}
		pos = end;
	}
	return false;
}

bool net_cidr_set_contains(const struct net_cidr_set *set, const struct net_addr *a)
{
	size_t n;
	const uint8_t *b = net_addr_bytes(a, &n);

	if (b == NULL || set->n == 0)
		return false;
	if (n == 16)
		return set_contains_raw(set, AF_INET6, b, 128);
	if (set_contains_raw(set, AF_INET, b, 32))
		return true;
	/* An IPv6 prefix of /96 or shorter may cover ::ffff:0:0/96 (e.g. ::/0);
	 * the normalised IPv4 address is that mapped address. */
	uint8_t mapped[16];
	memcpy(mapped, v4mapped_prefix, 12);
	memcpy(mapped + 12, b, 4);
	return set_contains_raw(set, AF_INET6, mapped, 96);
}

void net_cidr_set_copy(struct net_cidr_set *dst, const struct net_cidr_set *src)
{
	net_cidr_set_init(dst);
	if (src->n == 0)
		return;
	dst->v = xmemdup(src->v, src->n * sizeof(*src->v));
	dst->n = dst->cap = src->n;
}
