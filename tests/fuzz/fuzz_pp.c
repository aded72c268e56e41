/*
 * tests/fuzz/fuzz_pp.c -- libFuzzer target for the PROXY protocol codec.
 *
 * Two properties per input.  First, decoding arbitrary bytes never crashes
 * and, when it succeeds, is self-consistent: the header fits in the input,
 * decoding exactly the header gives the same result, one byte less needs
 * more, a cap one byte short is too small, and the result re-encoded as v2
 * and v1 decodes to the same client.  Second, the same bytes are read as an
 * encoder input (flags, addresses, ports, TLV values, sometimes invalid on
 * purpose): the encoders must refuse exactly the invalid ones, and for the
 * rest decode(encode(x)) must equal x, or we abort().
 */
#include "shared/net.h"
#include "shared/pp.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static bool addr_same(const struct net_addr *a, const struct net_addr *b)
{
	size_t na = 0, nb = 0;
	const uint8_t *pa, *pb;

	if (net_addr_family(a) != net_addr_family(b))
		return false;
	if (net_addr_family(a) == AF_UNSPEC)
		return true;
	pa = net_addr_bytes(a, &na);
	pb = net_addr_bytes(b, &nb);
	return na == nb && memcmp(pa, pb, na) == 0 && net_addr_port(a) == net_addr_port(b);
}

static bool str_same(const struct pp_str *a, const struct pp_str *b)
{
	return a->present == b->present && a->len == b->len && memcmp(a->v, b->v, a->len) == 0;
}

static bool info_same(const struct pp_info *a, const struct pp_info *b)
{
	return a->version == b->version && a->local == b->local && a->family == b->family &&
	       a->socktype == b->socktype && addr_same(&a->src, &b->src) &&
	       addr_same(&a->dst, &b->dst) && strcmp(a->unix_src, b->unix_src) == 0 &&
	       strcmp(a->unix_dst, b->unix_dst) == 0 && str_same(&a->alpn, &b->alpn) &&
	       str_same(&a->authority, &b->authority) && str_same(&a->netns, &b->netns) &&
	       a->has_unique_id == b->has_unique_id && a->unique_id_len == b->unique_id_len &&
	       memcmp(a->unique_id, b->unique_id, a->unique_id_len) == 0 &&
	       a->has_crc32c == b->has_crc32c && a->ssl.present == b->ssl.present &&
	       a->ssl.client == b->ssl.client && a->ssl.verify == b->ssl.verify &&
	       str_same(&a->ssl.version, &b->ssl.version) && str_same(&a->ssl.cn, &b->ssl.cn) &&
	       str_same(&a->ssl.cipher, &b->ssl.cipher) &&
	       str_same(&a->ssl.sig_alg, &b->ssl.sig_alg) &&
	       str_same(&a->ssl.key_alg, &b->ssl.key_alg);
}

/* The decoded form of an encoder input, compared field by field. */
static void check_decoded(const struct pp_encode *e, const struct pp_info *got, int version)
{
	REQUIRE(got->version == version);
	REQUIRE(got->local == e->local);
	if (!e->local) {
		REQUIRE(addr_same(&got->src, e->src) && addr_same(&got->dst, e->dst));
		REQUIRE(got->socktype == SOCK_STREAM);
	} else {
		REQUIRE(got->family == AF_UNSPEC && net_addr_family(&got->src) == AF_UNSPEC);
	}
	REQUIRE(!got->ssl.present && !got->netns.present);
	if (version == 1) {
		REQUIRE(!got->has_unique_id && !got->authority.present && !got->alpn.present &&
		        !got->has_crc32c);
		return;
	}
	REQUIRE(got->has_unique_id == (e->unique_id != NULL));
	if (e->unique_id != NULL)
		REQUIRE(got->unique_id_len == e->unique_id_len &&
		        memcmp(got->unique_id, e->unique_id, e->unique_id_len) == 0);
	REQUIRE(got->authority.present == (e->authority != NULL));
	if (e->authority != NULL)
		REQUIRE(got->authority.len == strlen(e->authority) &&
		        strcmp(got->authority.v, e->authority) == 0);
	REQUIRE(got->alpn.present == (e->alpn != NULL));
	if (e->alpn != NULL)
		REQUIRE(got->alpn.len == strlen(e->alpn) && strcmp(got->alpn.v, e->alpn) == 0);
	REQUIRE(got->has_crc32c == e->crc32c);
}

/* Encode e as v2 and v1; valid2/valid1 say whether the encoders must
 * accept it; what they accept must decode back to e. */
static void round_trip(const struct pp_encode *e, bool valid2, bool valid1)
{
	uint8_t out[PP_DEFAULT_MAX_SIZE];
	char line[PP_V1_MAX + 1];
	struct pp_info info;
	size_t n, consumed;

	n = pp_encode_v2(out, sizeof(out), e);
	REQUIRE((n > 0) == valid2);
	if (n > 0) {
		REQUIRE(pp_decode(out, n, 0, &info, &consumed) == PP_OK && consumed == n);
		check_decoded(e, &info, 2);
		REQUIRE(pp_decode(out, n - 1, 0, &info, &consumed) == PP_NEED_MORE);
		REQUIRE(pp_decode(out, n / 2, 0, &info, &consumed) == PP_NEED_MORE);
	}
	n = pp_encode_v1(line, sizeof(line), e);
	REQUIRE((n > 0) == valid1);
	if (n > 0) {
		REQUIRE(n <= PP_V1_MAX && strlen(line) == n);
		REQUIRE(pp_decode((const uint8_t *)line, n, 0, &info, &consumed) == PP_OK &&
		        consumed == n);
		check_decoded(e, &info, 1);
		REQUIRE(pp_decode((const uint8_t *)line, n - 1, 0, &info, &consumed) ==
		        PP_NEED_MORE);
	}
}

/* Property 1: arbitrary bytes. */
static void fuzz_decode(const uint8_t *data, size_t size)
{
	struct pp_info info, again;
	size_t consumed, c2;
	enum pp_status st;

	st = pp_decode(data, size, 0, &info, &consumed);
	REQUIRE(pp_status_name(st) != NULL && pp_strerror(st) != NULL);
	if (st != PP_OK) {
		REQUIRE(consumed == 0);
		return;
	}
	REQUIRE(consumed >= 15 && consumed <= size && consumed <= PP_DEFAULT_MAX_SIZE);
	REQUIRE(pp_looks_like_header(data, size));
	/* never looks past the header */
	REQUIRE(pp_decode(data, consumed, 0, &again, &c2) == PP_OK && c2 == consumed);
	REQUIRE(info_same(&info, &again));
	REQUIRE(pp_decode(data, consumed - 1, 0, &again, &c2) == PP_NEED_MORE);
	/* the caller's cap is exact */
	REQUIRE(pp_decode(data, size, consumed, &again, &c2) == PP_OK);
	REQUIRE(pp_decode(data, size, consumed - 1, &again, &c2) == PP_ERR_TOO_BIG);
	if (info.version == 1)
		REQUIRE(consumed <= PP_V1_MAX);

	/* re-encode what was decoded */
	struct pp_encode e = {.local = info.local || info.family == AF_UNIX};
	if (!e.local) {
		e.src = &info.src;
		e.dst = &info.dst;
	}
	if (info.has_unique_id) {
		e.unique_id = info.unique_id;
		e.unique_id_len = info.unique_id_len;
	}
	/* a string TLV with a NUL inside cannot be passed as a C string */
	if (info.authority.present && strlen(info.authority.v) == info.authority.len)
		e.authority = info.authority.v;
	if (info.alpn.present && strlen(info.alpn.v) == info.alpn.len)
		e.alpn = info.alpn.v;
	e.crc32c = info.has_crc32c;
	/* an IPv6 header may carry one IPv4-mapped address (normalised to
	 * IPv4) and one plain IPv6 one: that mix cannot be re-encoded */
	bool same = e.local || net_addr_family(&info.src) == net_addr_family(&info.dst);
	round_trip(&e, same, same);
}

/* A cursor that yields zeros once the input runs out. */
struct cur {
	const uint8_t *p;
	size_t n;
};

static uint8_t take(struct cur *c)
{
	if (c->n == 0)
		return 0;
	c->n--;
	return *c->p++;
}

static void take_n(struct cur *c, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = take(c);
}

/* A C string of n bytes (NULs replaced: the encoder takes strings). */
static void take_str(struct cur *c, char *out, size_t n)
{
	take_n(c, (uint8_t *)out, n);
	for (size_t i = 0; i < n; i++)
		if (out[i] == '\0')
			out[i] = 'x';
	out[n] = '\0';
}

/* Property 2: the bytes as an encoder input. */
static void fuzz_round_trip(const uint8_t *data, size_t size)
{
	struct cur c = {data, size};
	struct net_addr src, dst;
	uint8_t sip[16], dip[16], uid[150];
	char auth[300], alpn[300];
	uint8_t flags = take(&c);
	uint16_t sport, dport;
	size_t uid_len, auth_len, alpn_len;

	int sfam = flags & 0x02 ? AF_INET6 : AF_INET;
	int dfam = flags & 0x04 ? AF_INET6 : AF_INET;
	take_n(&c, sip, sfam == AF_INET ? 4 : 16);
	sport = (uint16_t)(take(&c) << 8 | take(&c));
	take_n(&c, dip, dfam == AF_INET ? 4 : 16);
	dport = (uint16_t)(take(&c) << 8 | take(&c));
	/* net_addr normalises IPv4-mapped IPv6, as it does for accept(2) */
	net_addr_from_bytes(&src, sfam, sip, sport);
	net_addr_from_bytes(&dst, dfam, dip, dport);

	/* lengths a little past the limits, so refusals are exercised */
	uid_len = take(&c) % (PP_UNIQUE_ID_MAX + 8);
	take_n(&c, uid, uid_len);
	auth_len = (size_t)(take(&c) << 8 | take(&c)) % (PP_TLV_STR_MAX + 8);
	take_str(&c, auth, auth_len);
	alpn_len = take(&c) % 16;
	take_str(&c, alpn, alpn_len);

	struct pp_encode e = {.local = flags & 0x01};
	if (!e.local) {
		e.src = &src;
		e.dst = &dst;
	}
	if (flags & 0x08) {
		e.unique_id = uid;
		e.unique_id_len = uid_len;
	}
	if (flags & 0x10)
		e.authority = auth;
	if (flags & 0x20)
		e.alpn = alpn;
	e.crc32c = flags & 0x40;

	bool families = e.local || net_addr_family(&src) == net_addr_family(&dst);
	bool tlvs = (!(flags & 0x08) || uid_len <= PP_UNIQUE_ID_MAX) &&
	            (!(flags & 0x10) || auth_len <= PP_TLV_STR_MAX);
	round_trip(&e, families && tlvs, families);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_decode(data, size);
	fuzz_round_trip(data, size);
	return 0;
}
