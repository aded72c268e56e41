/*
 * shared/pp.c -- the PROXY protocol codec (HAProxy's "The PROXY protocol",
 * versions 1 and 2).
 *
 * The decoder is a pure function of the bytes seen so far: it keeps no
 * state between calls, so the caller simply calls it again on a longer
 * buffer after every read.  Every call re-parses from the start, which is
 * cheap (a header is at most a few hundred bytes) and makes the decoder
 * trivially correct at every split point.  Each step checks what is already
 * there before asking for more, so a wrong byte is reported as soon as it
 * arrives (spec 2.1: "abort the connection as soon as possible") and a
 * valid prefix always answers PP_NEED_MORE.  The decoder never looks at a
 * byte past the end of the header: v2 announces its length in the fixed
 * 16-byte part, and v1 ends at the first CRLF.
 *
 * Strictness is deliberate: the header decides which address every policy
 * (logs, bans, rate limits, SPF) sees, so anything the spec does not allow
 * is an error with its own status rather than a guess.  Where the spec lets
 * a receiver choose, the choices are written next to the code.
 *
 * The encoder writes what tailpost-edge sends (TCP over IPv4/IPv6, LOCAL
 * for health checks, a few TLVs, an optional CRC32C) and the v1 line for
 * peers that only speak v1.
 */
#include "shared/pp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* spec 2.2: the 12-byte v2 signature; note the NUL at offset 4. */
static const uint8_t pp_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/* spec 2.1: "PROXY" followed by exactly one space. */
static const char pp_v1_sig[] = "PROXY ";
#define PP_V1_SIG_LEN 6

/* spec 2.2: address block sizes for INET, INET6 and UNIX. */
#define PP_V2_ADDR_INET  12
#define PP_V2_ADDR_INET6 36
#define PP_V2_ADDR_UNIX  216
#define PP_V2_UNIX_PATH  108
#define PP_V2_CMD_LOCAL  0x0
#define PP_V2_CMD_PROXY  0x1
#define PP_TLV_HDR       3

/* --- CRC32C -------------------------------------------------------------- */

/*
 * Byte-wise table for the reflected Castagnoli polynomial 0x82F63B78
 * (RFC 4960 appendix B): entry i is i shifted through eight rounds of
 * "c = c & 1 ? (c >> 1) ^ 0x82F63B78 : c >> 1".  Constant, so it needs no
 * initialisation and is safe to share between threads.
 */
static const uint32_t pp_crc32c_table[256] = {
        0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c, 0x26a1e7e8,
        0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b, 0x4d43cfd0, 0xbf284cd3,
        0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c, 0xf165b798, 0x030e349b, 0xd7c45070,
        0x25afd373, 0x36ff2087, 0xc494a384, 0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54,
        0x5d1d08bf, 0xaf768bbc, 0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29,
        0x33ed7d2a, 0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
        0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa, 0x30e349b1,
        0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad, 0x1642ae59, 0xe4292d5a,
        0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a, 0x7da08661, 0x8fcb0562, 0x9c9bf696,
        0x6ef07595, 0x417b1dbc, 0xb3109ebf, 0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0,
        0x67dafa54, 0x95b17957, 0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c,
        0xfe53516f, 0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
        0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f, 0x3ac7f2eb,
        0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7, 0x61c69362, 0x93ad1061,
        0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e, 0x4767748a, 0xb50cf789, 0xeb1fcbad,
        0x197448ae, 0x0a24bb5a, 0xf84f3859, 0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46,
        0x7198540d, 0x83f3d70e, 0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5,
        0xa55230e6, 0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
        0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c, 0x456cac67,
        0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4, 0xe9141340, 0x1b7f9043,
        0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c, 0x92a8fc17, 0x60c37f14, 0x73938ce0,
        0x81f80fe3, 0x55326b08, 0xa759e80b, 0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db,
        0xf94ad42f, 0x0b21572c, 0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6,
        0x502036a5, 0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
        0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975, 0x0e330a81,
        0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d, 0x758fe5d6, 0x87e466d5,
        0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905, 0xd9f75af1, 0x2b9cd9f2, 0xff56bd19,
        0x0d3d3e1a, 0x1e6dcdee, 0xec064eed, 0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530,
        0x0417b1db, 0xf67c32d8, 0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc,
        0x5a048dff, 0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
        0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540, 0x590ab964,
        0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78, 0x7fab5e8c, 0x8dc0dd8f,
        0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee, 0x24aa3f05, 0xd6c1bc06, 0xc5914ff2,
        0x37faccf1, 0x69e9f0d5, 0x9b8273d6, 0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9,
        0x4f48173d, 0xbd23943e, 0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a,
        0xc69f7b69, 0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
        0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t pp_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	/* Pre- and post-inverted, so a chain of calls starting from 0 gives
	 * the standard CRC32C (0xE3069283 for "123456789"). */
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = pp_crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* --- status names -------------------------------------------------------- */

struct pp_status_text {
	const char *name;
	const char *text;
};

static const struct pp_status_text pp_status_texts[] = {
        [PP_OK] = {"ok", "valid PROXY header"},
        [PP_NEED_MORE] = {"need_more", "incomplete PROXY header"},
        [PP_ERR_SIGNATURE] = {"signature", "bad PROXY signature"},
        [PP_ERR_VERSION] = {"version", "unsupported v2 version"},
        [PP_ERR_COMMAND] = {"command", "unknown v2 command"},
        [PP_ERR_FAMILY] = {"family", "unknown v2 address family or transport"},
        [PP_ERR_LENGTH] = {"length", "v2 length too short for the address block"},
        [PP_ERR_TOO_BIG] = {"too_big", "PROXY header longer than allowed"},
        [PP_ERR_TLV] = {"tlv", "malformed v2 TLV"},
        [PP_ERR_CRC] = {"crc", "v2 CRC32C mismatch"},
        [PP_ERR_V1_SYNTAX] = {"v1_syntax", "malformed v1 line"},
        [PP_ERR_V1_ADDRESS] = {"v1_address", "invalid v1 address or port"},
};

const char *pp_strerror(enum pp_status st)
{
	if ((size_t)st >= sizeof(pp_status_texts) / sizeof(pp_status_texts[0]))
		return "unknown PROXY status";
	return pp_status_texts[st].text;
}

const char *pp_status_name(enum pp_status st)
{
	if ((size_t)st >= sizeof(pp_status_texts) / sizeof(pp_status_texts[0]))
		return "unknown";
	return pp_status_texts[st].name;
}

/* --- helpers ------------------------------------------------------------- */

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

bool pp_looks_like_header(const uint8_t *buf, size_t len)
{
	if (len == 0)
		return false;
	if (memcmp(buf, pp_v1_sig, min_size(len, PP_V1_SIG_LEN)) == 0)
		return true;
	return memcmp(buf, pp_v2_sig, min_size(len, sizeof(pp_v2_sig))) == 0;
}

/* --- v2 decoder ---------------------------------------------------------- */

/*
 * spec 2.2: the 14th byte is family (high nibble) and transport (low).
 * Only the combinations the spec lists "in practice" are accepted: 0x00
 * (UNSPEC), 0x11/0x12 (INET), 0x21/0x22 (INET6), 0x31/0x32 (UNIX).  Values
 * with one nibble unspecified (0x10, 0x01, ...) are sent by nobody and
 * would leave the address block size undefined, so they are errors like
 * the unassigned nibbles that the spec says "must be rejected".
 * Returns the address block size, or -1.
 */
static int v2_addr_len(uint8_t fam, int *family, int *socktype)
{
	uint8_t af = fam >> 4, tr = fam & 0x0f;

	if (fam == 0x00) {
		*family = AF_UNSPEC;
		*socktype = 0;
		return 0;
	}
	if (tr != 1 && tr != 2)
		return -1;
	*socktype = tr == 1 ? SOCK_STREAM : SOCK_DGRAM;
	switch (af) {
	case 1:
		*family = AF_INET;
		return PP_V2_ADDR_INET;
	case 2:
		*family = AF_INET6;
		return PP_V2_ADDR_INET6;
	case 3:
		*family = AF_UNIX;
		return PP_V2_ADDR_UNIX;
	default:
		return -1;
	}
}

/* Keep a string TLV; a second one of the same type is ambiguous (which
 * would the policy see?) and longer than our bound is malformed: ALPN
 * protocol names and DNS names both fit in 255 bytes (RFC 7301 3.1,
 * RFC 1035 2.3.4). */
static enum pp_status v2_tlv_str(struct pp_str *s, const uint8_t *v, size_t n)
{
	if (s->present || n > PP_TLV_STR_MAX)
		return PP_ERR_TLV;
	s->present = true;
	s->len = (uint16_t)n;
	memcpy(s->v, v, n);
	s->v[n] = '\0';
	return PP_OK;
}

/* spec 2.2.6: PP2_TYPE_SSL is client (1 byte), verify (4 bytes), then
 * sub-TLVs that must exactly fill the rest. */
static enum pp_status v2_tlv_ssl(struct pp_ssl *ssl, const uint8_t *v, size_t n)
{
	size_t off = 5;
	enum pp_status st;

	if (ssl->present || n < 5)
		return PP_ERR_TLV;
	ssl->present = true;
	ssl->client = v[0];
	ssl->verify = get_be32(v + 1);
	while (off < n) {
		if (n - off < PP_TLV_HDR)
			return PP_ERR_TLV;
		uint8_t type = v[off];
		size_t sublen = get_be16(v + off + 1);
		const uint8_t *sv = v + off + PP_TLV_HDR;
		if (sublen > n - off - PP_TLV_HDR)
			return PP_ERR_TLV;
		switch (type) {
		case PP2_SUBTYPE_SSL_VERSION:
			st = v2_tlv_str(&ssl->version, sv, sublen);
			break;
		case PP2_SUBTYPE_SSL_CN:
			st = v2_tlv_str(&ssl->cn, sv, sublen);
			break;
		case PP2_SUBTYPE_SSL_CIPHER:
			st = v2_tlv_str(&ssl->cipher, sv, sublen);
			break;
		case PP2_SUBTYPE_SSL_SIG_ALG:
			st = v2_tlv_str(&ssl->sig_alg, sv, sublen);
			break;
		case PP2_SUBTYPE_SSL_KEY_ALG:
			st = v2_tlv_str(&ssl->key_alg, sv, sublen);
			break;
		default:
			/* Unknown sub-TLVs are skipped like unknown TLVs. */
			st = PP_OK;
			break;
		}
		if (st != PP_OK)
			return st;
		off += PP_TLV_HDR + sublen;
	}
	return PP_OK;
}

/*
 * Walk the TLVs in hdr[off..total).  They must exactly fill the header: a
 * TLV header or value running past the announced length is malformed.
 * Unknown types and NOOP (spec 2.2.4) are skipped.  The CRC is checked
 * last, once the whole header is known to be well formed.
 */
static enum pp_status v2_tlvs(const uint8_t *hdr, size_t total, size_t off, struct pp_info *info)
{
	static const uint8_t zero[4];
	size_t crc_off = 0;
	uint32_t crc_want = 0;
	bool has_crc = false;
	enum pp_status st;

	while (off < total) {
		if (total - off < PP_TLV_HDR)
			return PP_ERR_TLV;
		uint8_t type = hdr[off];
		size_t n = get_be16(hdr + off + 1);
		const uint8_t *v = hdr + off + PP_TLV_HDR;
		if (n > total - off - PP_TLV_HDR)
			return PP_ERR_TLV;
		switch (type) {
		case PP2_TYPE_ALPN:
			st = v2_tlv_str(&info->alpn, v, n);
			break;
		case PP2_TYPE_AUTHORITY:
			st = v2_tlv_str(&info->authority, v, n);
			break;
		case PP2_TYPE_NETNS:
			st = v2_tlv_str(&info->netns, v, n);
			break;
		case PP2_TYPE_CRC32C:
			/* spec 2.2.3: a 32-bit number, sent in network order */
			st = PP_OK;
			if (has_crc || n != 4) {
				st = PP_ERR_TLV;
				break;
			}
			has_crc = true;
			crc_off = off + PP_TLV_HDR;
			crc_want = get_be32(v);
			break;
		case PP2_TYPE_UNIQUE_ID:
			/* spec 2.2.5: "an opaque byte sequence of up to 128 bytes" */
			st = PP_OK;
			if (info->has_unique_id || n > PP_UNIQUE_ID_MAX) {
				st = PP_ERR_TLV;
				break;
			}
			info->has_unique_id = true;
			info->unique_id_len = (uint16_t)n;
			memcpy(info->unique_id, v, n);
			break;
		case PP2_TYPE_SSL:
			st = v2_tlv_ssl(&info->ssl, v, n);
			break;
		default:
			st = PP_OK;
			break;
		}
		if (st != PP_OK)
			return st;
		off += PP_TLV_HDR + n;
	}
	if (has_crc) {
		/* spec 2.2.3: the CRC of the whole header with the checksum
		 * field replaced by zeros; computed in three pieces because
		 * the input is read-only. */
		uint32_t crc = pp_crc32c(0, hdr, crc_off);
		crc = pp_crc32c(crc, zero, sizeof(zero));
		crc = pp_crc32c(crc, hdr + crc_off + 4, total - crc_off - 4);
		if (crc != crc_want)
			return PP_ERR_CRC;
		info->has_crc32c = true;
	}
	return PP_OK;
}

/* Copy a 108-byte AF_UNIX path; it is NUL-padded, or exactly 108 bytes
 * without a NUL (sun_path need not be terminated). */
static void v2_unix_path(char *dst, const uint8_t *src)
{
	size_t n = strnlen((const char *)src, PP_V2_UNIX_PATH);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static enum pp_status v2_decode(const uint8_t *buf, size_t len, size_t max_size,
                                struct pp_info *info, size_t *consumed)
{
	int family = AF_UNSPEC, socktype = 0, addr_len = 0;
	uint8_t cmd;
	enum pp_status st;

	if (memcmp(buf, pp_v2_sig, min_size(len, sizeof(pp_v2_sig))) != 0)
		return PP_ERR_SIGNATURE;
	/* spec 2.2: version 2 in the high nibble of byte 13, "the receiver
	 * must only accept this value"; command LOCAL or PROXY, "receivers
	 * must drop connections presenting unexpected values". */
	if (len > 12) {
		if ((buf[12] >> 4) != 2)
			return PP_ERR_VERSION;
		cmd = buf[12] & 0x0f;
		if (cmd != PP_V2_CMD_LOCAL && cmd != PP_V2_CMD_PROXY)
			return PP_ERR_COMMAND;
	}
	/* The family is validated even for LOCAL: its block size is what
	 * tells where the TLVs start. */
	if (len > 13) {
		addr_len = v2_addr_len(buf[13], &family, &socktype);
		if (addr_len < 0)
			return PP_ERR_FAMILY;
	}
	if (len < PP_V2_HDR)
		return PP_NEED_MORE;

	size_t body = get_be16(buf + 14);
	size_t total = PP_V2_HDR + body;
	if (body < (size_t)addr_len)
		return PP_ERR_LENGTH;
	/* Decided from the 16 fixed bytes, so a peer announcing 64 KiB is
	 * dropped at once instead of being waited for. */
	if (total > max_size)
		return PP_ERR_TOO_BIG;
	if (len < total)
		return PP_NEED_MORE;

	cmd = buf[12] & 0x0f;
	const uint8_t *a = buf + PP_V2_HDR;
	info->version = 2;
	if (cmd == PP_V2_CMD_LOCAL || family == AF_UNSPEC) {
		/* spec 2.2: LOCAL "must use the real connection endpoints and
		 * discard the protocol block including the family"; PROXY
		 * with UNSPEC may be accepted "using the real endpoints". */
		info->local = true;
		info->family = AF_UNSPEC;
		info->socktype = 0;
	} else {
		info->family = family;
		info->socktype = socktype;
		switch (family) {
		case AF_INET:
			net_addr_from_bytes(&info->src, AF_INET, a, get_be16(a + 8));
			net_addr_from_bytes(&info->dst, AF_INET, a + 4, get_be16(a + 10));
			break;
		case AF_INET6:
			net_addr_from_bytes(&info->src, AF_INET6, a, get_be16(a + 32));
			net_addr_from_bytes(&info->dst, AF_INET6, a + 16, get_be16(a + 34));
			break;
		default: /* AF_UNIX */
			v2_unix_path(info->unix_src, a);
			v2_unix_path(info->unix_dst, a + PP_V2_UNIX_PATH);
			break;
		}
	}
	st = v2_tlvs(buf, total, PP_V2_HDR + (size_t)addr_len, info);
	if (st != PP_OK)
		return st;
	*consumed = total;
	return PP_OK;
}

/* --- v1 decoder ---------------------------------------------------------- */

/*
 * The v1 line is read as a sequence of tokens separated by exactly one
 * space (spec 2.1).  Each token is scanned only over the bytes available
 * (at most the line limit); when they run out inside the line the answer
 * is "need more", unless the limit itself has been reached, which means
 * the CRLF is not within the allowed length.
 */
struct v1_scan {
	const uint8_t *buf;
	size_t avail;        /* bytes we may look at: min(len, limit) */
	size_t limit;        /* min(PP_V1_MAX, max_size) */
	enum pp_status over; /* status when the limit is reached */
};

static enum pp_status v1_out_of_bytes(const struct v1_scan *s)
{
	return s->avail == s->limit ? s->over : PP_NEED_MORE;
}

static bool v1_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool v1_is_v4(uint8_t c)
{
	return v1_is_digit(c) || c == '.';
}

static bool v1_is_v6(uint8_t c)
{
	/* Hex groups, colons, and the dotted tail of an IPv4-suffixed form
	 * (::ffff:192.0.2.1), which inet_ntop produces for mapped addresses
	 * and HAProxy therefore sends. */
	return v1_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
	       c == '.';
}

static bool v1_is_proto(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || v1_is_digit(c);
}

/*
 * Scan a token of bytes in class cls starting at pos.  On PP_OK *end is the
 * index of the first byte outside the class (the terminator).  A token
 * longer than maxlen gives too_long; running out of bytes gives
 * PP_NEED_MORE (mapped by the caller through v1_out_of_bytes).
 */
static enum pp_status v1_token(const struct v1_scan *s, size_t pos, bool (*cls)(uint8_t),
                               size_t maxlen, enum pp_status too_long, size_t *end)
{
	size_t i = pos;

	while (i < s->avail && cls(s->buf[i])) {
		if (i - pos == maxlen)
			return too_long;
		i++;
	}
	*end = i;
	return i == s->avail ? PP_NEED_MORE : PP_OK;
}

/* spec 2.1: "exactly 4 integers in the range [0..255] ... separated by
 * exactly one dot ... Heading zeroes are not permitted". */
static bool v1_parse_v4(const uint8_t *p, size_t n, uint8_t out[4])
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t start = i;
		if (part > 0) {
			if (i >= n || p[i] != '.')
				return false;
			start = ++i;
		}
		while (i < n && v1_is_digit(p[i]) && i - start < 3)
			v = v * 10 + (unsigned)(p[i++] - '0');
		if (i == start || v > 255 || (i - start > 1 && p[start] == '0'))
			return false;
		out[part] = (uint8_t)v;
	}
	return i == n;
}

/* spec 2.1: IPv6 in its text form; inet_pton(3) accepts exactly the
 * RFC 4291 2.2 forms (at most one "::", 128 bits, optional dotted tail). */
static bool v1_parse_v6(const uint8_t *p, size_t n, uint8_t out[16])
{
	char tmp[INET6_ADDRSTRLEN];

	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1;
}

/* spec 2.1: a port is "a decimal integer in the range [0..65535] ...
 * Heading zeroes are not permitted". */
static bool v1_parse_port(const uint8_t *p, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned long)(p[i] - '0');
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/*
 * After a field token: the terminator must be want (' ' between fields,
 * '\r' after the last).  Any other structural byte (space, CR, LF) in its
 * place is a syntax error (missing or extra field, bare CR or LF); any
 * other byte is a bad character inside the address or port.
 */
static enum pp_status v1_terminator(uint8_t got, uint8_t want)
{
	if (got == want)
		return PP_OK;
	if (got == ' ' || got == '\r' || got == '\n')
		return PP_ERR_V1_SYNTAX;
	return PP_ERR_V1_ADDRESS;
}

/* The CRLF at pos: "The receiver must not tolerate a single CR or LF". */
static enum pp_status v1_crlf(const struct v1_scan *s, size_t pos, size_t *consumed)
{
	if (pos >= s->avail)
		return v1_out_of_bytes(s);
	if (s->buf[pos] != '\r')
		return PP_ERR_V1_SYNTAX;
	if (pos + 1 >= s->avail)
		return v1_out_of_bytes(s);
	if (s->buf[pos + 1] != '\n')
		return PP_ERR_V1_SYNTAX;
	*consumed = pos + 2;
	return PP_OK;
}

/* spec 2.1: after "UNKNOWN" the receiver "must ignore anything presented
 * before the CRLF"; we still require printable US-ASCII there, since the
 * line is defined as US-ASCII text. */
static enum pp_status v1_unknown_rest(const struct v1_scan *s, size_t pos, size_t *consumed)
{
	while (pos < s->avail && s->buf[pos] >= 0x20 && s->buf[pos] <= 0x7e)
		pos++;
	return v1_crlf(s, pos, consumed);
}

static bool v1_is_prefix_of(const uint8_t *p, size_t n, const char *word)
{
	return n <= strlen(word) && memcmp(p, word, n) == 0;
}

/* One address token at *pos followed by want; parsed into raw bytes. */
static enum pp_status v1_addr_field(const struct v1_scan *s, size_t *pos, int family, uint8_t want,
                                    uint8_t ip[16])
{
	size_t end;
	bool v6 = family == AF_INET6;
	/* 15 = "255.255.255.255"; 45 = INET6_ADDRSTRLEN - 1, the longest
	 * IPv6 text form (with a dotted IPv4 tail). */
	enum pp_status st =
	        v1_token(s, *pos, v6 ? v1_is_v6 : v1_is_v4, v6 ? 45 : 15, PP_ERR_V1_ADDRESS, &end);
	if (st == PP_NEED_MORE)
		return v1_out_of_bytes(s);
	if (st != PP_OK)
		return st;
	st = v1_terminator(s->buf[end], want);
	if (st != PP_OK)
		return st;
	if (end == *pos) /* empty: two spaces in a row */
		return PP_ERR_V1_SYNTAX;
	if (!(v6 ? v1_parse_v6(s->buf + *pos, end - *pos, ip)
	         : v1_parse_v4(s->buf + *pos, end - *pos, ip)))
		return PP_ERR_V1_ADDRESS;
	*pos = end;
	return PP_OK;
}

static enum pp_status v1_port_field(const struct v1_scan *s, size_t *pos, uint8_t want,
                                    uint16_t *port)
{
	size_t end;
	enum pp_status st = v1_token(s, *pos, v1_is_digit, 5, PP_ERR_V1_ADDRESS, &end);

	if (st == PP_NEED_MORE)
		return v1_out_of_bytes(s);
	if (st != PP_OK)
		return st;
	st = v1_terminator(s->buf[end], want);
	if (st != PP_OK)
		return st;
	if (end == *pos)
		return PP_ERR_V1_SYNTAX;
	if (!v1_parse_port(s->buf + *pos, end - *pos, port))
		return PP_ERR_V1_ADDRESS;
	*pos = end;
	return PP_OK;
}

static enum pp_status v1_decode(const uint8_t *buf, size_t len, size_t max_size,
                                struct pp_info *info, size_t *consumed)
{
	struct v1_scan s;
	uint8_t sip[16], dip[16];
	uint16_t sport, dport;
	size_t pos, end;
	int family;
	enum pp_status st;

	s.buf = buf;
	s.limit = min_size(PP_V1_MAX, max_size);
	s.over = max_size < PP_V1_MAX ? PP_ERR_TOO_BIG : PP_ERR_V1_SYNTAX;
	s.avail = min_size(len, s.limit);

	if (memcmp(buf, pp_v1_sig, min_size(len, PP_V1_SIG_LEN)) != 0)
		return PP_ERR_SIGNATURE;
	if (s.avail < PP_V1_SIG_LEN)
		return v1_out_of_bytes(&s);

	/* The protocol: "TCP4", "TCP6" or "UNKNOWN"; anything else is not
	 * this protocol, and a partial token must be a prefix of one. */
	pos = PP_V1_SIG_LEN;
	st = v1_token(&s, pos, v1_is_proto, 7, PP_ERR_V1_SYNTAX, &end);
	if (st != PP_OK && st != PP_NEED_MORE)
		return st;
	const uint8_t *proto = buf + pos;
	size_t plen = end - pos;
	if (!v1_is_prefix_of(proto, plen, "TCP4") && !v1_is_prefix_of(proto, plen, "TCP6") &&
	    !v1_is_prefix_of(proto, plen, "UNKNOWN"))
		return PP_ERR_V1_SYNTAX;
	if (st == PP_NEED_MORE)
		return v1_out_of_bytes(&s);
	info->version = 1;
	if (plen == 7) { /* the prefix test above made it "UNKNOWN" */
		/* UNKNOWN: the short form ends here; the long form carries
		 * fields we ignore. */
		info->local = true;
		info->family = AF_UNSPEC;
		if (buf[end] == ' ')
			return v1_unknown_rest(&s, end + 1, consumed);
		return v1_crlf(&s, end, consumed);
	}
	if (plen == 4 && memcmp(proto, "TCP4", 4) == 0)
		family = AF_INET;
	else if (plen == 4 && memcmp(proto, "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return PP_ERR_V1_SYNTAX; /* "TCP", "UNKN", ... */
	if (buf[end] != ' ')
		return PP_ERR_V1_SYNTAX; /* "TCP4\r\n": the fields are missing */

	pos = end + 1;
	st = v1_addr_field(&s, &pos, family, ' ', sip);
	if (st != PP_OK)
		return st;
	pos++;
	st = v1_addr_field(&s, &pos, family, ' ', dip);
	if (st != PP_OK)
		return st;
	pos++;
	st = v1_port_field(&s, &pos, ' ', &sport);
	if (st != PP_OK)
		return st;
	pos++;
	st = v1_port_field(&s, &pos, '\r', &dport);
	if (st != PP_OK)
		return st;
	st = v1_crlf(&s, pos, consumed);
	if (st != PP_OK)
		return st;

	info->family = family;
	info->socktype = SOCK_STREAM;
	net_addr_from_bytes(&info->src, family, sip, sport);
	net_addr_from_bytes(&info->dst, family, dip, dport);
	return PP_OK;
}

/* --- decoder entry ------------------------------------------------------- */

enum pp_status pp_decode(const uint8_t *buf, size_t len, size_t max_size, struct pp_info *info,
                         size_t *consumed)
{
	enum pp_status st;

	*consumed = 0;
	memset(info, 0, sizeof(*info));
	if (max_size == 0)
		max_size = PP_DEFAULT_MAX_SIZE;
	if (len == 0)
		return PP_NEED_MORE;
	/* spec 2.2 "identifying the protocol version": the first byte
	 * already tells the two signatures apart ('\r' or 'P'). */
	if (buf[0] == pp_v2_sig[0])
		st = v2_decode(buf, len, max_size, info, consumed);
	else
		st = v1_decode(buf, len, max_size, info, consumed);
	if (st != PP_OK)
		*consumed = 0;
	return st;
}

/* --- encoders ------------------------------------------------------------ */

/* A bounded writer: once full it only records the overflow. */
struct pp_out {
	uint8_t *p;
	size_t cap, len;
	bool overflow;
};

static void out_put(struct pp_out *o, const void *v, size_t n)
{
	if (o->overflow || n > o->cap - o->len) {
		o->overflow = true;
		return;
	}
	if (n > 0)
		memcpy(o->p + o->len, v, n);
	o->len += n;
}

static void out_be16(struct pp_out *o, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	out_put(o, b, sizeof(b));
}

static void out_tlv(struct pp_out *o, uint8_t type, const void *v, size_t n)
{
	out_put(o, &type, 1);
	out_be16(o, (uint16_t)n);
	out_put(o, v, n);
}

/* The family both endpoints share, or AF_UNSPEC if they are missing, not
 * IP, or differ. */
static int enc_family(const struct pp_encode *e)
{
	if (e->src == NULL || e->dst == NULL)
		return AF_UNSPEC;
	int f = net_addr_family(e->src);
	if (f != net_addr_family(e->dst) || (f != AF_INET && f != AF_INET6))
		return AF_UNSPEC;
	return f;
}

size_t pp_encode_v2(uint8_t *out, size_t outsz, const struct pp_encode *e)
{
	struct pp_out o = {.p = out, .cap = outsz};
	size_t alen, ilen, crc_at = 0;
	int family = AF_UNSPEC;

	if (!e->local) {
		family = enc_family(e);
		if (family == AF_UNSPEC)
			return 0;
	}
	if (e->unique_id_len > PP_UNIQUE_ID_MAX || (e->unique_id == NULL && e->unique_id_len > 0))
		return 0;
	if ((e->authority != NULL && strlen(e->authority) > PP_TLV_STR_MAX) ||
	    (e->alpn != NULL && strlen(e->alpn) > PP_TLV_STR_MAX))
		return 0;

	out_put(&o, pp_v2_sig, sizeof(pp_v2_sig));
	if (e->local) {
		/* spec 2.2: LOCAL with UNSPEC and no address block. */
		uint8_t vc[2] = {0x20 | PP_V2_CMD_LOCAL, 0x00};
		out_put(&o, vc, sizeof(vc));
		out_be16(&o, 0); /* patched below */
	} else {
		uint8_t vc[2] = {0x20 | PP_V2_CMD_PROXY, family == AF_INET ? 0x11 : 0x21};
		const uint8_t *sip = net_addr_bytes(e->src, &alen);
		const uint8_t *dip = net_addr_bytes(e->dst, &ilen);
		out_put(&o, vc, sizeof(vc));
		out_be16(&o, 0);
		out_put(&o, sip, alen);
		out_put(&o, dip, ilen);
		out_be16(&o, net_addr_port(e->src));
		out_be16(&o, net_addr_port(e->dst));
	}
	if (e->alpn != NULL)
		out_tlv(&o, PP2_TYPE_ALPN, e->alpn, strlen(e->alpn));
	if (e->authority != NULL)
		out_tlv(&o, PP2_TYPE_AUTHORITY, e->authority, strlen(e->authority));
	if (e->unique_id != NULL)
		out_tlv(&o, PP2_TYPE_UNIQUE_ID, e->unique_id, e->unique_id_len);
	if (e->crc32c) {
		static const uint8_t zero[4];
		crc_at = o.len + PP_TLV_HDR;
		out_tlv(&o, PP2_TYPE_CRC32C, zero, sizeof(zero));
	}
	if (o.overflow)
		return 0;
	size_t body = o.len - PP_V2_HDR;
	out[14] = (uint8_t)(body >> 8);
	out[15] = (uint8_t)body;
	if (e->crc32c) {
		/* spec 2.2.3: computed over the finished header with the
		 * checksum field still zero, then stored in network order. */
		uint32_t crc = pp_crc32c(0, out, o.len);
		out[crc_at] = (uint8_t)(crc >> 24);
		out[crc_at + 1] = (uint8_t)(crc >> 16);
		out[crc_at + 2] = (uint8_t)(crc >> 8);
		out[crc_at + 3] = (uint8_t)crc;
	}
	return o.len;
}

size_t pp_encode_v1(char *out, size_t outsz, const struct pp_encode *e)
{
	char sip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
	size_t n;
	int family = AF_UNSPEC, len;

	if (!e->local) {
		family = enc_family(e);
		/* Mixed IP families cannot be written on one line; anything
		 * else without IP addresses is UNKNOWN (spec 2.1). */
		if (family == AF_UNSPEC && e->src != NULL && e->dst != NULL &&
		    net_addr_family(e->src) != AF_UNSPEC && net_addr_family(e->dst) != AF_UNSPEC)
			return 0;
	}
	if (family == AF_UNSPEC) {
		len = snprintf(out, outsz, "PROXY UNKNOWN\r\n");
	} else {
		if (inet_ntop(family, net_addr_bytes(e->src, &n), sip, sizeof(sip)) == NULL ||
		    inet_ntop(family, net_addr_bytes(e->dst, &n), dip, sizeof(dip)) == NULL)
			return 0;
		len = snprintf(out, outsz, "PROXY %s %s %s %u %u\r\n",
		               family == AF_INET ? "TCP4" : "TCP6", sip, dip,
		               (unsigned)net_addr_port(e->src), (unsigned)net_addr_port(e->dst));
	}
	if (len < 0 || (size_t)len >= outsz)
		return 0;
	return (size_t)len;
}
