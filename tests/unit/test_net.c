/*
 * tests/unit/test_net.c -- addresses, host:port splitting and CIDR sets.
 *
 * Table-driven: each table row is an input and what must come out of it
 * (the printed form, or the exact error message).
 */
#include "shared/net.h"
#include "tests/unit/unit.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

UNIT_TEST(net_addr_parse_table)
{
	static const struct {
		const char *in;
		int family; /* AF_UNSPEC: must fail */
		const char *ip;
		const char *full; /* with port 25 */
	} t[] = {
	        {"192.0.2.1", AF_INET, "192.0.2.1", "192.0.2.1:25"},
	        {"0.0.0.0", AF_INET, "0.0.0.0", "0.0.0.0:25"},
	        {"2001:db8::1", AF_INET6, "2001:db8::1", "[2001:db8::1]:25"},
	        {"2001:DB8:0:0:0:0:0:1", AF_INET6, "2001:db8::1", "[2001:db8::1]:25"},
	        {"::", AF_INET6, "::", "[::]:25"},
	        {"::1", AF_INET6, "::1", "[::1]:25"},
	        {"::ffff:192.0.2.1", AF_INET, "192.0.2.1", "192.0.2.1:25"},
	        {"::FFFF:c000:0201", AF_INET, "192.0.2.1", "192.0.2.1:25"},
	        {"fe80::1%3", AF_INET6, "fe80::1%3", "[fe80::1%3]:25"},
	        {"", AF_UNSPEC, NULL, NULL},
	        {"192.0.2", AF_UNSPEC, NULL, NULL},
	        {"192.0.2.256", AF_UNSPEC, NULL, NULL},
	        {"192.0.2.1 ", AF_UNSPEC, NULL, NULL},
	        {"[::1]", AF_UNSPEC, NULL, NULL},
	        {"2001:db8::1::2", AF_UNSPEC, NULL, NULL},
	        {"fe80::1%", AF_UNSPEC, NULL, NULL},
	        {"fe80::1%eth0", AF_UNSPEC, NULL, NULL},
	        {"192.0.2.1%1", AF_UNSPEC, NULL, NULL},
	        {"example.com", AF_UNSPEC, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct net_addr a;
		char buf[NET_ADDRSTRLEN];
		int rc = net_addr_parse(t[i].in, 25, &a);
		if (t[i].family == AF_UNSPEC) {
			CHECK_MSG(rc == -1, "'%s' should fail", t[i].in);
			continue;
		}
		CHECK_MSG(rc == 0, "'%s' should parse", t[i].in);
		CHECK_INT(net_addr_family(&a), t[i].family);
		CHECK_INT(net_addr_port(&a), 25);
		CHECK_STR(net_addr_ip_str(&a, buf, sizeof(buf)), t[i].ip);
		CHECK_STR(net_addr_str(&a, buf, sizeof(buf)), t[i].full);
		CHECK_INT(a.len, t[i].family == AF_INET ? sizeof(struct sockaddr_in)
		                                        : sizeof(struct sockaddr_in6));
	}
}

UNIT_TEST(net_hostport_split_table)
{
	static const struct {
		const char *in;
		const char *host; /* NULL: must fail with err */
		unsigned port;
		const char *err;
	} t[] = {
	        {"192.0.2.1:25", "192.0.2.1", 25, NULL},
	        {"[2001:db8::1]:587", "2001:db8::1", 587, NULL},
	        {"[::ffff:192.0.2.1]:1", "::ffff:192.0.2.1", 1, NULL},
	        {"mail.example.com:65535", "mail.example.com", 65535, NULL},
	        {"redis_1:6379", "redis_1", 6379, NULL},
	        {"localhost:025", "localhost", 25, NULL},
	        {"", NULL, 0, "empty address"},
	        {"host", NULL, 0, "missing port"},
	        {"host:", NULL, 0, "missing port"},
	        {"[::1]", NULL, 0, "missing port"},
	        {"[::1]:", NULL, 0, "missing port"},
	        {":25", NULL, 0, "empty host"},
	        {"[]:25", NULL, 0, "empty host"},
	        {"host:0", NULL, 0, "port out of range (1-65535)"},
	        {"host:65536", NULL, 0, "port out of range (1-65535)"},
	        {"host:99999999999999999999", NULL, 0, "port out of range (1-65535)"},
	        {"host:-1", NULL, 0, "port is not a number"},
	        {"host:2 5", NULL, 0, "port is not a number"},
	        {"host:0x19", NULL, 0, "port is not a number"},
	        {"[::1:25", NULL, 0, "unbalanced '[' in address"},
	        {"::1]:25", NULL, 0, "unbalanced brackets in address"},
	        {"[::1]]:25", NULL, 0, "unbalanced brackets in address"},
	        {"[[::1]:25", NULL, 0, "unbalanced brackets in address"},
	        {"[::1]x25", NULL, 0, "expected ':port' after ']'"},
	        {"[host]:25", NULL, 0, "brackets must hold an IPv6 address"},
	        {"[192.0.2.1]:25", NULL, 0, "brackets must hold an IPv6 address"},
	        {"2001:db8::1:25", NULL, 0,
	         "an IPv6 address with a port must be written [addr]:port"},
	        {"ho st:25", NULL, 0, "invalid character in host"},
	        {"host/x:25", NULL, 0, "invalid character in host"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char host[NET_HOSTLEN];
		uint16_t port = 0;
		const char *err = NULL;
		int rc = net_hostport_split(t[i].in, host, sizeof(host), &port, &err);
		if (t[i].host == NULL) {
			CHECK_MSG(rc == -1, "'%s' should fail", t[i].in);
			CHECK_STR(err, t[i].err);
			continue;
		}
		CHECK_MSG(rc == 0, "'%s' should split: %s", t[i].in, err ? err : "");
		CHECK_STR(host, t[i].host);
		CHECK_INT(port, t[i].port);
	}
}

UNIT_TEST(net_hostport_split_host_too_long)
{
	char in[NET_HOSTLEN + 16], host[16];
	uint16_t port;
	const char *err = NULL;

	memset(in, 'a', NET_HOSTLEN);
	strcpy(in + NET_HOSTLEN, ":25");
	char big[NET_HOSTLEN];
	CHECK(net_hostport_split(in, big, sizeof(big), &port, &err) == -1);
	CHECK_STR(err, "host too long");
	/* The caller's smaller buffer is respected too. */
	CHECK(net_hostport_split("abcdefghijklmnop:25", host, sizeof(host), &port, &err) == -1);
	CHECK_STR(err, "host too long");
	CHECK(net_hostport_split("abcdefghijklmno:25", host, sizeof(host), &port, &err) == 0);
	CHECK_STR(host, "abcdefghijklmno");
}

UNIT_TEST(net_addr_parse_hostport_table)
{
	struct net_addr a;
	const char *err = NULL;
	char buf[NET_ADDRSTRLEN];

	CHECK(net_addr_parse_hostport("[::ffff:10.1.2.3]:993", &a, &err) == 0);
	CHECK_INT(net_addr_family(&a), AF_INET);
	CHECK_STR(net_addr_str(&a, buf, sizeof(buf)), "10.1.2.3:993");
	CHECK(net_addr_parse_hostport("[2001:db8::5]:143", &a, &err) == 0);
	CHECK_STR(net_addr_str(&a, buf, sizeof(buf)), "[2001:db8::5]:143");
	CHECK(net_addr_parse_hostport("mail.example:25", &a, &err) == -1);
	CHECK_STR(err, "host is not an IP address");
	CHECK(net_addr_parse_hostport("10.0.0.1:0", &a, &err) == -1);
	CHECK_STR(err, "port out of range (1-65535)");
}

UNIT_TEST(net_addr_sockaddr_and_bytes)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	struct net_addr a, b;
	char buf[NET_ADDRSTRLEN];
	size_t n;
	const uint8_t *p;

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(2525);
	inet_pton(AF_INET6, "::ffff:198.51.100.7", &s6.sin6_addr);
	net_addr_from_sockaddr(&a, (struct sockaddr *)&s6, sizeof(s6));
	CHECK_INT(net_addr_family(&a), AF_INET);
	CHECK_STR(net_addr_str(&a, buf, sizeof(buf)), "198.51.100.7:2525");

	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = htons(1);
	inet_pton(AF_INET, "198.51.100.7", &s4.sin_addr);
	net_addr_from_sockaddr(&b, (struct sockaddr *)&s4, sizeof(s4));
	CHECK(net_addr_ip_equal(&a, &b));
	CHECK_INT(net_addr_port(&b), 1);
	net_addr_set_port(&b, 80);
	CHECK_INT(net_addr_port(&b), 80);

	/* Too short a length is no address. */
	net_addr_from_sockaddr(&b, (struct sockaddr *)&s6, sizeof(struct sockaddr_in));
	CHECK_INT(net_addr_family(&b), AF_UNSPEC);
	CHECK_STR(net_addr_str(&b, buf, sizeof(buf)), "-");
	CHECK_STR(net_addr_ip_str(&b, buf, sizeof(buf)), "-");
	CHECK(net_addr_bytes(&b, &n) == NULL);
	CHECK_INT(n, 0);
	CHECK(!net_addr_ip_equal(&b, &b));
	CHECK(!net_addr_is_loopback(&b));

	static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 9};
	net_addr_from_bytes(&a, AF_INET6, mapped, 143);
	CHECK_INT(net_addr_family(&a), AF_INET);
	p = net_addr_bytes(&a, &n);
	CHECK_INT(n, 4);
	CHECK_MEM(p, mapped + 12, 4);
	CHECK(net_addr_is_loopback(&a));
	CHECK_STR(net_addr_str(&a, buf, sizeof(buf)), "127.0.0.9:143");

	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	net_addr_from_bytes(&a, AF_INET6, v6, 0);
	CHECK_INT(net_addr_family(&a), AF_INET6);
	p = net_addr_bytes(&a, &n);
	CHECK_INT(n, 16);
	CHECK_MEM(p, v6, 16);
	net_addr_from_bytes(&a, AF_UNIX, v6, 0);
	CHECK_INT(net_addr_family(&a), AF_UNSPEC);

	/* Truncation is safe and NUL-terminated. */
	net_addr_parse("2001:db8::1", 25, &a);
	char small[6];
	CHECK_STR(net_addr_str(&a, small, sizeof(small)), "[2001");
}

UNIT_TEST(net_addr_loopback_and_equal)
{
	static const struct {
		const char *ip;
		bool loop;
	} t[] = {
	        {"127.0.0.1", true},  {"127.255.1.2", true},
	        {"::1", true},        {"::ffff:127.0.0.1", true},
	        {"128.0.0.1", false}, {"::2", false},
	        {"::", false},        {"10.0.0.1", false},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct net_addr a;
		CHECK(net_addr_parse(t[i].ip, 0, &a) == 0);
		CHECK_MSG(net_addr_is_loopback(&a) == t[i].loop, "loopback(%s)", t[i].ip);
	}
	struct net_addr a, b;
	CHECK(net_addr_parse("::ffff:10.0.0.1", 1, &a) == 0);
	CHECK(net_addr_parse("10.0.0.1", 2, &b) == 0);
	CHECK(net_addr_ip_equal(&a, &b));
	CHECK(net_addr_parse("fe80::1%1", 0, &a) == 0);
	CHECK(net_addr_parse("fe80::1%2", 0, &b) == 0);
	CHECK(!net_addr_ip_equal(&a, &b));
	CHECK(net_addr_parse("10.0.0.2", 0, &b) == 0);
	CHECK(!net_addr_ip_equal(&a, &b));
}

UNIT_TEST(net_cidr_parse_table)
{
	static const struct {
		const char *in;
		const char *out; /* NULL: must fail with err */
		const char *err;
	} t[] = {
	        {"10.0.0.0/8", "10.0.0.0/8", NULL},
	        {"0.0.0.0/0", "0.0.0.0/0", NULL},
	        {"192.0.2.1", "192.0.2.1/32", NULL},
	        {"192.0.2.1/32", "192.0.2.1/32", NULL},
	        {"2001:db8::/32", "2001:db8::/32", NULL},
	        {"::/0", "::/0", NULL},
	        {"2001:db8::1", "2001:db8::1/128", NULL},
	        {"::ffff:10.0.0.0/104", "10.0.0.0/8", NULL},
	        {"::ffff:10.1.2.3", "10.1.2.3/32", NULL},
	        {"::ffff:0:0/96", "0.0.0.0/0", NULL},
	        {"100.64.0.1/10", NULL,
	         "host bits set beyond the /10 prefix (network is 100.64.0.0/10)"},
	        {"2001:db8::1/64", NULL,
	         "host bits set beyond the /64 prefix (network is 2001:db8::/64)"},
	        {"10.0.0.0/33", NULL, "prefix length over 32 for IPv4"},
	        {"2001:db8::/129", NULL, "prefix length over 128 for IPv6"},
	        {"10.0.0.0/999999999999", NULL, "prefix length over 32 for IPv4"},
	        {"10.0.0.0/", NULL, "missing prefix length after '/'"},
	        {"10.0.0.0/8/8", NULL, "prefix length is not a number"},
	        {"10.0.0.0/-8", NULL, "prefix length is not a number"},
	        {"10.0.0.0/ 8", NULL, "prefix length is not a number"},
	        {"/8", NULL, "empty network address"},
	        {"", NULL, "empty network address"},
	        {"10.0.0/8", NULL, "invalid network address"},
	        {"example.com/8", NULL, "invalid network address"},
	        {"fe80::1%1/128", NULL, "invalid network address"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct net_cidr c;
		const char *err = NULL;
		char buf[NET_ADDRSTRLEN];
		int rc = net_cidr_parse(t[i].in, &c, &err);
		if (t[i].out == NULL) {
			CHECK_MSG(rc == -1, "'%s' should fail", t[i].in);
			CHECK_STR(err, t[i].err);
			continue;
		}
		CHECK_MSG(rc == 0, "'%s' should parse: %s", t[i].in, err ? err : "");
		CHECK_STR(net_cidr_str(&c, buf, sizeof(buf)), t[i].out);
	}
}

UNIT_TEST(net_cidr_set_membership_table)
{
	static const char *const nets[] = {
	        "10.0.0.0/8",    "192.168.1.0/24", "192.168.1.0/24", /* duplicate */
	        "100.64.0.0/10", "203.0.113.7",    "2001:db8::/32",  "fd7a:115c:a1e0::/48", "::1",
	};
	static const struct {
		const char *ip;
		bool in;
	} t[] = {
	        {"10.0.0.0", true},
	        {"10.255.255.255", true},
	        {"11.0.0.0", false},
	        {"9.255.255.255", false},
	        {"192.168.1.77", true},
	        {"192.168.2.1", false},
	        {"100.64.0.1", true},
	        {"100.127.255.255", true},
	        {"100.128.0.0", false},
	        {"203.0.113.7", true},
	        {"203.0.113.8", false},
	        {"2001:db8:ffff::1", true},
	        {"2001:db9::1", false},
	        {"fd7a:115c:a1e0::5", true},
	        {"fd7a:115c:a1e1::5", false},
	        {"::1", true},
	        {"::2", false},
	        {"::ffff:10.9.9.9", true},
	        {"::ffff:11.9.9.9", false},
	        {"0.0.0.0", false},
	};
	struct net_cidr_set set, copy;
	const char *err;

	net_cidr_set_init(&set);
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
		CHECK(net_cidr_set_add_str(&set, nets[i], &err) == 0);
	CHECK_INT(set.n, 7);
	CHECK(net_cidr_set_add_str(&set, "10.0.0.1/8", &err) == -1);
	CHECK_INT(set.n, 7);
	net_cidr_set_copy(&copy, &set);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct net_addr a;
		CHECK(net_addr_parse(t[i].ip, 0, &a) == 0);
		CHECK_MSG(net_cidr_set_contains(&set, &a) == t[i].in, "contains(%s)", t[i].ip);
		CHECK_MSG(net_cidr_set_contains(&copy, &a) == t[i].in, "copy contains(%s)",
		          t[i].ip);
	}
	/* The copy is independent. */
	net_cidr_set_free(&set);
	CHECK(set.v == NULL && set.n == 0);
	struct net_addr a;
	net_addr_parse("10.1.1.1", 0, &a);
	CHECK(net_cidr_set_contains(&copy, &a));
	CHECK(!net_cidr_set_contains(&set, &a));
	net_cidr_set_free(&copy);
}

UNIT_TEST(net_cidr_set_v6_any_covers_mapped_v4)
{
	struct net_cidr_set set;
	struct net_addr a;
	const char *err;

	net_cidr_set_init(&set);
	CHECK(net_cidr_set_add_str(&set, "::/0", &err) == 0);
	net_addr_parse("198.51.100.1", 0, &a);
	CHECK(net_cidr_set_contains(&set, &a));
	net_addr_parse("2001:db8::1", 0, &a);
	CHECK(net_cidr_set_contains(&set, &a));
	net_cidr_set_free(&set);

	net_cidr_set_init(&set);
	CHECK(net_cidr_set_add_str(&set, "2001:db8::/32", &err) == 0);
	net_addr_parse("198.51.100.1", 0, &a);
	CHECK(!net_cidr_set_contains(&set, &a));
	net_cidr_set_free(&set);
}

UNIT_TEST(net_cidr_set_add_masks_host_bits)
{
	struct net_cidr_set set;
	struct net_cidr c;
	struct net_addr a;

	memset(&c, 0, sizeof(c));
	c.family = AF_INET;
	c.bits = 16;
	c.addr[0] = 172;
	c.addr[1] = 16;
	c.addr[2] = 9; /* host bits: masked on insert */
	net_cidr_set_init(&set);
	net_cidr_set_add(&set, &c);
	CHECK_INT(set.n, 1);
	CHECK_INT(set.v[0].addr[2], 0);
	net_addr_parse("172.16.200.1", 0, &a);
	CHECK(net_cidr_set_contains(&set, &a));
	net_cidr_set_free(&set);
}

/* Every prefix length on a random-ish set agrees with a linear scan. */
static bool linear_contains(const struct net_cidr *v, size_t n, const uint8_t *ip, int fam)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].family != fam)
			continue;
		unsigned bits = v[i].bits, k = 0;
		bool ok = true;
		for (; bits >= 8 && ok; bits -= 8, k++)
			ok = v[i].addr[k] == ip[k];
		if (ok && bits > 0)
			ok = ((v[i].addr[k] ^ ip[k]) & (0xff00u >> bits)) == 0;
		if (ok)
			return true;
	}
	return false;
}

UNIT_TEST(net_cidr_set_matches_linear_scan)
{
	struct net_cidr_set set;
	struct net_cidr all[600];
	size_t nall = 0;
	uint32_t seed = 12345;

	net_cidr_set_init(&set);
	for (int i = 0; i < 600; i++) {
		struct net_cidr c;
		memset(&c, 0, sizeof(c));
		seed = seed * 1103515245u + 12345u;
		c.family = (seed >> 8) % 3 == 0 ? AF_INET6 : AF_INET;
		unsigned max = c.family == AF_INET ? 32 : 128;
		c.bits = (uint8_t)((seed >> 16) % (max + 1));
		for (unsigned k = 0; k < (c.family == AF_INET ? 4u : 16u); k++) {
			seed = seed * 1103515245u + 12345u;
			/* Few distinct values, so random probes often hit. */
			c.addr[k] = (uint8_t)((seed >> 16) % 4);
		}
		net_cidr_set_add(&set, &c);
		all[nall++] = c;
	}
	/* Mask the reference copies the same way the set does. */
	for (size_t i = 0; i < nall; i++) {
		unsigned nb = all[i].family == AF_INET ? 4 : 16, bits = all[i].bits;
		for (unsigned k = 0; k < nb; k++) {
			if (bits >= 8)
				bits -= 8;
			else {
				all[i].addr[k] &= (uint8_t)(0xff00u >> bits);
				bits = 0;
			}
		}
	}
	for (size_t i = 1; i < set.n; i++) {
		const struct net_cidr *p = &set.v[i - 1], *q = &set.v[i];
		CHECK(p->family < q->family || (p->family == q->family && p->bits <= q->bits));
	}
	for (int i = 0; i < 5000; i++) {
		uint8_t ip[16];
		int fam;
		seed = seed * 1103515245u + 12345u;
		fam = (seed >> 8) % 2 ? AF_INET6 : AF_INET;
		for (unsigned k = 0; k < 16; k++) {
			seed = seed * 1103515245u + 12345u;
			ip[k] = (uint8_t)((seed >> 16) % 4);
		}
		struct net_addr a;
		net_addr_from_bytes(&a, fam, ip, 0);
		bool want = linear_contains(all, nall, ip, fam);
		if (fam == AF_INET && !want) {
			/* An IPv4 address also matches IPv6 prefixes covering
			 * its mapped form ::ffff:a.b.c.d. */
			uint8_t m[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
			memcpy(m + 12, ip, 4);
			want = linear_contains(all, nall, m, AF_INET6);
		}
		CHECK_MSG(net_cidr_set_contains(&set, &a) == want, "probe %d", i);
	}
	net_cidr_set_free(&set);
}
