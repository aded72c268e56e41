/*
 * edge/sni.c -- the SNI peek parser: TLS records -> ClientHello -> host_name.
 *
 * A small cursor walks the handshake byte stream across record boundaries:
 * when the current record is used up it reads the next 5-byte record header
 * (RFC 8446 5.1: type 22 = handshake, legacy version 3.x, 1..2^14 bytes) and
 * goes on, so a ClientHello fragmented over several records parses like one
 * in a single record and nothing is copied.  Every length field is checked
 * against the enclosing one (record, handshake message, extensions block,
 * extension), so a hostile length can never make us read past what was
 * peeked; running out of peeked bytes is NEED_MORE with a hint of how much
 * is required, which the caller can turn into SO_RCVLOWAT.  Decisions depend
 * only on the bytes already read, so a prefix of an input either answers
 * NEED_MORE or exactly what the whole input answers (the fuzzer checks it).
 */
#include "edge/sni.h"

#include <stdbool.h>
#include <string.h>

/* RFC 8446 5.1: TLSPlaintext.length MUST NOT exceed 2^14. */
#define TLS_RECORD_MAX      16384
#define TLS_RECORD_HDR      5
#define TLS_CT_HANDSHAKE    22
#define TLS_HS_CLIENT_HELLO 1
/* RFC 6066 3 */
#define TLS_EXT_SERVER_NAME 0
#define TLS_SNI_HOST_NAME   0

struct sni_rd {
	const uint8_t *buf;
	size_t len;
	size_t pos;      /* next unread byte of buf */
	size_t rec_left; /* payload bytes left in the current record */
	bool first;      /* no record header read yet */
	enum edge_sni_status st;
	size_t need;
};

/* Read the next record header; false with rd->st set when it cannot. */
static bool rd_record(struct sni_rd *rd)
{
	const uint8_t *h;
	size_t reclen;

	/* Decide "not TLS" from the first bytes alone, before waiting for 5. */
	if (rd->pos < rd->len && rd->buf[rd->pos] != TLS_CT_HANDSHAKE) {
		rd->st = rd->first ? EDGE_SNI_NOT_TLS : EDGE_SNI_MALFORMED;
		return false;
	}
	if (rd->pos + 1 < rd->len && rd->buf[rd->pos + 1] != 3) {
		rd->st = rd->first ? EDGE_SNI_NOT_TLS : EDGE_SNI_MALFORMED;
		return false;
	}
	if (rd->len - rd->pos < TLS_RECORD_HDR) {
		rd->st = EDGE_SNI_NEED_MORE;
		rd->need = rd->pos + TLS_RECORD_HDR;
		return false;
	}
	h = rd->buf + rd->pos;
	reclen = (size_t)h[3] << 8 | h[4];
	/* RFC 8446 5.1: no zero-length handshake fragments; at most 2^14. */
	if (reclen == 0 || reclen > TLS_RECORD_MAX) {
		rd->st = EDGE_SNI_MALFORMED;
		return false;
	}
	rd->pos += TLS_RECORD_HDR;
	rd->rec_left = reclen;
	rd->first = false;
	return true;
}

/* Take n bytes of the handshake stream into out (or skip them if out is
 * NULL).  False with rd->st set on NEED_MORE or a bad record. */
static bool rd_get(struct sni_rd *rd, size_t n, uint8_t *out)
{
	while (n > 0) {
		size_t k;

		if (rd->rec_left == 0 && !rd_record(rd))
			return false;
		if (rd->pos == rd->len) {
			rd->st = EDGE_SNI_NEED_MORE;
			/* The rest of this record is coming in any case. */
			rd->need = rd->pos + rd->rec_left;
			return false;
		}
		k = n;
		if (k > rd->rec_left)
			k = rd->rec_left;
		if (k > rd->len - rd->pos)
			k = rd->len - rd->pos;
		if (out != NULL) {
			memcpy(out, rd->buf + rd->pos, k);
			out += k;
		}
		rd->pos += k;
		rd->rec_left -= k;
		n -= k;
	}
	return true;
}

static bool rd_u8(struct sni_rd *rd, size_t *v)
{
	uint8_t b[1];

	if (!rd_get(rd, 1, b))
		return false;
	*v = b[0];
	return true;
}

static bool rd_u16(struct sni_rd *rd, size_t *v)
{
	uint8_t b[2];

	if (!rd_get(rd, 2, b))
		return false;
	*v = (size_t)b[0] << 8 | b[1];
	return true;
}

static bool rd_u24(struct sni_rd *rd, size_t *v)
{
	uint8_t b[3];

	if (!rd_get(rd, 3, b))
		return false;
	*v = (size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2];
	return true;
}

/* Consume len bytes that must fit in *budget (the enclosing structure). */
static bool take(struct sni_rd *rd, size_t *budget, size_t n, uint8_t *out)
{
	if (n > *budget) {
		rd->st = EDGE_SNI_MALFORMED;
		return false;
	}
	*budget -= n;
	return rd_get(rd, n, out);
}

static bool take_u8(struct sni_rd *rd, size_t *budget, size_t *v)
{
	if (*budget < 1) {
		rd->st = EDGE_SNI_MALFORMED;
		return false;
	}
	*budget -= 1;
	return rd_u8(rd, v);
}

static bool take_u16(struct sni_rd *rd, size_t *budget, size_t *v)
{
	if (*budget < 2) {
		rd->st = EDGE_SNI_MALFORMED;
		return false;
	}
	*budget -= 2;
	return rd_u16(rd, v);
}

/* RFC 6066 3: an ASCII host name without a trailing dot; RFC 1035 2.3.4:
 * labels of 1..63 letters, digits and hyphens. */
static bool host_name_ok(const uint8_t *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > EDGE_SNI_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/* Parse the server_name extension body (ext bytes); OK, ABSENT or error. */
static enum edge_sni_status parse_server_name(struct sni_rd *rd, size_t ext, char *name)
{
	size_t list;

	if (!take_u16(rd, &ext, &list))
		return rd->st;
	if (list != ext || list == 0)
		return EDGE_SNI_MALFORMED;
	while (list > 0) {
		size_t type, n;
		uint8_t host[EDGE_SNI_NAME_MAX];

		if (!take_u8(rd, &list, &type) || !take_u16(rd, &list, &n))
			return rd->st;
		if (n > list)
			return EDGE_SNI_MALFORMED;
		if (type != TLS_SNI_HOST_NAME) {
			if (!take(rd, &list, n, NULL))
				return rd->st;
			continue;
		}
		if (n == 0 || n > EDGE_SNI_NAME_MAX)
			return EDGE_SNI_BAD_NAME;
		if (!take(rd, &list, n, host))
			return rd->st;
		if (!host_name_ok(host, n))
			return EDGE_SNI_BAD_NAME;
		for (size_t i = 0; i < n; i++) {
			uint8_t c = host[i];
			name[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
		}
		name[n] = '\0';
		return EDGE_SNI_OK;
	}
	return EDGE_SNI_ABSENT;
}

static enum edge_sni_status parse(struct sni_rd *rd, char *name)
{
	size_t type, body, n, exts;

	if (!rd_u8(rd, &type))
		return rd->st;
	if (type != TLS_HS_CLIENT_HELLO)
		return EDGE_SNI_NOT_HELLO;
	if (!rd_u24(rd, &body))
		return rd->st;
	/* RFC 8446 4.1.2: legacy_version(2) random(32) session_id<0..32>
	 * cipher_suites<2..2^16-2> legacy_compression_methods<1..2^8-1>
	 * extensions<8..2^16-1> (absent in a pre-TLS-1.2-style hello). */
	if (!take(rd, &body, 2 + 32, NULL))
		return rd->st;
	if (!take_u8(rd, &body, &n))
		return rd->st;
	if (n > 32)
		return EDGE_SNI_MALFORMED;
	if (!take(rd, &body, n, NULL))
		return rd->st;
	if (!take_u16(rd, &body, &n))
		return rd->st;
	if (n < 2 || n % 2 != 0)
		return EDGE_SNI_MALFORMED;
	if (!take(rd, &body, n, NULL))
		return rd->st;
	if (!take_u8(rd, &body, &n))
		return rd->st;
	if (n < 1)
		return EDGE_SNI_MALFORMED;
	if (!take(rd, &body, n, NULL))
		return rd->st;
	if (body == 0)
		return EDGE_SNI_ABSENT;
	if (!take_u16(rd, &body, &exts))
		return rd->st;
	if (exts != body)
		return EDGE_SNI_MALFORMED;
	while (exts > 0) {
		size_t etype, elen;

		if (!take_u16(rd, &exts, &etype) || !take_u16(rd, &exts, &elen))
			return rd->st;
		if (elen > exts)
			return EDGE_SNI_MALFORMED;
		if (etype == TLS_EXT_SERVER_NAME) {
			exts -= elen;
			return parse_server_name(rd, elen, name);
		}
		if (!take(rd, &exts, elen, NULL))
			return rd->st;
	}
	return EDGE_SNI_ABSENT;
}

enum edge_sni_status edge_sni_parse(const uint8_t *buf, size_t len, char *name, size_t namesz,
                                    size_t *need_r)
{
	struct sni_rd rd = {.buf = buf, .len = len, .first = true, .st = EDGE_SNI_MALFORMED};
	char tmp[EDGE_SNI_NAME_MAX + 1];
	enum edge_sni_status st;

	st = parse(&rd, tmp);
	if (st == EDGE_SNI_NEED_MORE && need_r != NULL)
		*need_r = rd.need;
	if (st == EDGE_SNI_OK) {
		size_t n = strlen(tmp);
		if (namesz <= n)
			return EDGE_SNI_BAD_NAME;
		memcpy(name, tmp, n + 1);
	}
	return st;
}

const char *edge_sni_status_name(enum edge_sni_status st)
{
	switch (st) {
	case EDGE_SNI_OK:
		return "ok";
	case EDGE_SNI_NEED_MORE:
		return "need_more";
	case EDGE_SNI_ABSENT:
		return "absent";
	case EDGE_SNI_NOT_TLS:
		return "not_tls";
	case EDGE_SNI_NOT_HELLO:
		return "not_hello";
	case EDGE_SNI_MALFORMED:
		return "malformed";
	case EDGE_SNI_BAD_NAME:
		return "bad_name";
	}
	return "?";
}
