/*
 * shared/net.h -- IP addresses, host:port strings and CIDR sets.
 *
 * Pure helpers, no I/O and no DNS: parsing and printing of IPv4/IPv6
 * literals, "host:port" and "[v6]:port", IPv4-mapped IPv6 normalised to
 * IPv4 (so ::ffff:192.0.2.1 and 192.0.2.1 are the same client everywhere:
 * logs, bans, rate limits), and CIDR sets with fast membership tests.
 */
#ifndef SHARED_NET_H
#define SHARED_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Big enough for "[ffff:...:255.255.255.255%ifname]:65535". */
#define NET_ADDRSTRLEN 80
/* Longest host part accepted in host:port (a DNS name is at most 253). */
#define NET_HOSTLEN 256

struct net_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_storage ss;
	} u;
	socklen_t len; /* 0: no address (AF_UNSPEC) */
};

/* Parse an IP literal (no port, no brackets) into out with the given port.
 * IPv6 may carry a numeric zone ("fe80::1%2"; names are not resolved).
 * IPv4-mapped IPv6 is normalised to IPv4.  0 or -1. */
int net_addr_parse(const char *ip, uint16_t port, struct net_addr *out);

/*
 * Split "host:port", "[v6]:port" or "v4:port" into host (NUL-terminated,
 * brackets removed, at most hostsz-1 bytes) and port (1..65535).  The host
 * may be a name (letters, digits, '-', '.', '_'); brackets must hold an IPv6
 * literal, and an unbracketed IPv6 literal is refused as ambiguous.  0, or
 * -1 with *errstr_r set to a static message (missing port, port 0 or over
 * 65535, unbalanced brackets, empty host, ...).
 */
int net_hostport_split(const char *s, char *host, size_t hostsz, uint16_t *port,
                       const char **errstr_r);

/* "ip:port" where ip must be a literal.  0 or -1 with *errstr_r. */
int net_addr_parse_hostport(const char *s, struct net_addr *out, const char **errstr_r);

/* From a sockaddr (accept(2), getpeername(2)); normalises v4-mapped. */
void net_addr_from_sockaddr(struct net_addr *out, const struct sockaddr *sa, socklen_t len);
/* Fill from raw bytes: family AF_INET (4 bytes) or AF_INET6 (16 bytes). */
void net_addr_from_bytes(struct net_addr *out, int family, const void *ip, uint16_t port);

int net_addr_family(const struct net_addr *a); /* AF_INET, AF_INET6 or AF_UNSPEC */
uint16_t net_addr_port(const struct net_addr *a);
void net_addr_set_port(struct net_addr *a, uint16_t port);
/* The raw address bytes (4 or 16) and their length; NULL for AF_UNSPEC. */
const uint8_t *net_addr_bytes(const struct net_addr *a, size_t *len_r);
bool net_addr_is_loopback(const struct net_addr *a);
/* Same family, same IP (ports ignored). */
bool net_addr_ip_equal(const struct net_addr *a, const struct net_addr *b);

/* "192.0.2.1" / "2001:db8::1"; "-" for AF_UNSPEC.  Returns buf. */
const char *net_addr_ip_str(const struct net_addr *a, char *buf, size_t bufsz);
/* "192.0.2.1:25" / "[2001:db8::1]:25"; "-" for AF_UNSPEC.  Returns buf. */
const char *net_addr_str(const struct net_addr *a, char *buf, size_t bufsz);

/* --- CIDR sets ---------------------------------------------------------- */

struct net_cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bits;   /* prefix length */
	uint8_t addr[16];
};

/* An ordered set of prefixes.  Membership is a binary search per prefix
 * length present in the set, so it is fast for thousands of entries. */
struct net_cidr_set {
	struct net_cidr *v; /* owned; kept sorted by (family, bits, addr) */
	size_t n, cap;
};

/* Parse "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128).
 * Host bits beyond the prefix are an error ("100.64.0.1/10" is rejected
 * with a message naming the network, since it is almost always a typo);
 * that message lives in a thread-local buffer valid until the next call in
 * the same thread, every other *errstr_r is static.  ::ffff:a.b.c.d/N with
 * N >= 96 becomes the IPv4 prefix a.b.c.d/(N-96). */
int net_cidr_parse(const char *s, struct net_cidr *out, const char **errstr_r);
const char *net_cidr_str(const struct net_cidr *c, char *buf, size_t bufsz);

void net_cidr_set_init(struct net_cidr_set *set);
void net_cidr_set_free(struct net_cidr_set *set);
/* Insert c (host bits masked off); a duplicate is ignored. */
void net_cidr_set_add(struct net_cidr_set *set, const struct net_cidr *c);
/* Parse and add; 0 or -1 with *errstr_r. */
int net_cidr_set_add_str(struct net_cidr_set *set, const char *s, const char **errstr_r);
/* True if a is inside any prefix.  An IPv4 address also matches IPv6
 * prefixes that cover its mapped form (::/0, ::ffff:0:0/96). */
bool net_cidr_set_contains(const struct net_cidr_set *set, const struct net_addr *a);
/* dst (uninitialised or freed) becomes an independent copy of src. */
void net_cidr_set_copy(struct net_cidr_set *dst, const struct net_cidr_set *src);

#endif
