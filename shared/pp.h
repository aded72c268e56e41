/*
 * shared/pp.h -- the PROXY protocol codec (v1 text, v2 binary), pure.
 *
 * Spec: HAProxy's "The PROXY protocol" (versions 1 and 2).  No I/O, no
 * logging, no globals: bytes in, a status and the number of bytes consumed
 * out.  The decoder is incremental (PP_NEED_MORE on a partial header) and
 * never looks past the end of the header, so whatever follows it in the
 * buffer (the client's first bytes) is left untouched for the protocol.
 */
#ifndef SHARED_PP_H
#define SHARED_PP_H

#include "shared/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pp_status {
	PP_OK = 0,
	PP_NEED_MORE,      /* a valid prefix of a header: read more */
	PP_ERR_SIGNATURE,  /* neither "PROXY " nor the v2 signature */
	PP_ERR_VERSION,    /* v2 version nibble is not 2 */
	PP_ERR_COMMAND,    /* v2 command neither LOCAL nor PROXY */
	PP_ERR_FAMILY,     /* unknown address family or transport */
	PP_ERR_LENGTH,     /* v2 length too short for the address block */
	PP_ERR_TOO_BIG,    /* header longer than the caller's cap */
	PP_ERR_TLV,        /* a TLV overruns the header or is malformed */
	PP_ERR_CRC,        /* PP2_TYPE_CRC32C present and wrong */
	PP_ERR_V1_SYNTAX,  /* v1 line malformed (fields, CRLF, 107 bytes) */
	PP_ERR_V1_ADDRESS, /* v1 address or port invalid */
};

/* v2 TLV types (spec section 2.2). */
#define PP2_TYPE_ALPN           0x01
#define PP2_TYPE_AUTHORITY      0x02
#define PP2_TYPE_CRC32C         0x03
#define PP2_TYPE_NOOP           0x04
#define PP2_TYPE_UNIQUE_ID      0x05
#define PP2_TYPE_SSL            0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN      0x22
#define PP2_SUBTYPE_SSL_CIPHER  0x23
#define PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define PP2_TYPE_NETNS          0x30

#define PP_V1_MAX           107  /* spec 2.1: the longest v1 line */
#define PP_V2_HDR           16   /* signature + ver/cmd + fam + len */
#define PP_UNIQUE_ID_MAX    128  /* spec 2.2.5 */
#define PP_TLV_STR_MAX      255  /* our bound on string TLVs we keep */
#define PP_DEFAULT_MAX_SIZE 1024 /* default total header cap (v2) */

struct pp_str {
	bool present;
	uint16_t len;
	char v[PP_TLV_STR_MAX + 1]; /* NUL-terminated copy (binary-safe by len) */
};

struct pp_ssl {
	bool present;
	uint8_t client;  /* PP2_CLIENT_* bits */
	uint32_t verify; /* 0 = verified */
	struct pp_str version, cn, cipher, sig_alg, key_alg;
};

/*
 * What a header said.  family is the family on the wire; src/dst are
 * normalised by net_addr (an IPv4-mapped IPv6 address becomes AF_INET), so
 * net_addr_family(&src) can be AF_INET while family is AF_INET6.  local is
 * true for v2 LOCAL, v2 PROXY with AF_UNSPEC and v1 UNKNOWN: the caller then
 * uses the socket's own endpoints and src/dst are AF_UNSPEC.
 */
struct pp_info {
	uint8_t version;                   /* 1 or 2 */
	bool local;                        /* v2 LOCAL/UNSPEC or v1 UNKNOWN: use the socket peer */
	int family;                        /* AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC */
	int socktype;                      /* SOCK_STREAM, SOCK_DGRAM, or 0 (unspecified) */
	struct net_addr src, dst;          /* for AF_INET/AF_INET6 */
	char unix_src[109], unix_dst[109]; /* for AF_UNIX (108 bytes + NUL) */
	/* TLVs (v2 only); a known TLV type that appears twice is an error */
	struct pp_str alpn, authority, netns;
	uint8_t unique_id[PP_UNIQUE_ID_MAX];
	uint16_t unique_id_len;
	bool has_unique_id;
	bool has_crc32c;   /* present and verified */
	struct pp_ssl ssl; /* decoded for completeness; never trusted for policy */
};

/*
 * Decode one PROXY header (v1 or v2, detected by its first bytes) at the
 * start of buf.  max_size caps the total header length (0 means
 * PP_DEFAULT_MAX_SIZE; v1 is always capped at 107, and at max_size if that
 * is smaller).  Reads at most the header's own bytes, never past them.
 * On PP_OK *info is filled and *consumed is the header length; the bytes
 * after it belong to the client.  On PP_NEED_MORE (buf is a valid prefix,
 * possibly empty) nothing is consumed: call again with more bytes.  Any
 * other status is fatal for the connection; *consumed is 0 and *info is
 * unspecified.  Stateless: every call parses buf from its start.
 */
enum pp_status pp_decode(const uint8_t *buf, size_t len, size_t max_size, struct pp_info *info,
                         size_t *consumed);

/* True if buf (possibly partial, len > 0) could be the start of a PROXY
 * header: it is a prefix of, or starts with, "PROXY " or the v2 signature.
 * Used to detect a spoof from a peer whose header we must not parse.  False
 * for len == 0. */
bool pp_looks_like_header(const uint8_t *buf, size_t len);

/* A short static description of a status, e.g. "bad v2 signature";
 * never NULL, also for values outside the enum. */
const char *pp_strerror(enum pp_status st);
/* A stable token for logs and metrics, e.g. "signature", "crc". */
const char *pp_status_name(enum pp_status st);

struct pp_encode {
	bool local;                       /* v2 LOCAL (health checks); src/dst ignored */
	const struct net_addr *src, *dst; /* same family, AF_INET or AF_INET6;
	                                     ignored (may be NULL) with local */
	const uint8_t *unique_id;         /* optional, <= PP_UNIQUE_ID_MAX bytes */
	size_t unique_id_len;
	const char *authority; /* optional (e.g. TLS SNI), <= PP_TLV_STR_MAX */
	const char *alpn;      /* optional, <= PP_TLV_STR_MAX */
	bool crc32c;           /* append a CRC32C TLV */
};

/*
 * Encode a v2 header into out (outsz bytes): PROXY over TCP (0x11/0x21), or
 * LOCAL with AF_UNSPEC; then ALPN, AUTHORITY, UNIQUE_ID and CRC32C TLVs for
 * the optional fields that are set (a non-NULL empty string gives an empty
 * TLV).  Never emits PP2_TYPE_SSL.  Returns the length written, or 0 if out
 * is too small or the input is invalid (mixed or non-IP families, oversize
 * TLV); PP_V2_HDR + 36 + 3 * 4 + 2 * 255 + 128 + 4 bytes always suffice.
 */
size_t pp_encode_v2(uint8_t *out, size_t outsz, const struct pp_encode *e);
/* Encode a v1 line ("PROXY TCP4 ...\r\n" or "PROXY UNKNOWN\r\n" when
 * local or the families are not IP), NUL-terminated; TLV fields are
 * ignored.  Returns the length without the NUL, or 0 if outsz is too small
 * or the families are mixed (PP_V1_MAX + 1 bytes always suffice). */
size_t pp_encode_v1(char *out, size_t outsz, const struct pp_encode *e);

/* CRC32C (Castagnoli, RFC 4960 appendix B) as used by PP2_TYPE_CRC32C.
 * Start with crc = 0; calls chain: pp_crc32c(pp_crc32c(0, a, n), b, m) is
 * the CRC of a followed by b. */
uint32_t pp_crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif
