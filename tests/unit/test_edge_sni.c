/*
 * tests/unit/test_edge_sni.c -- the ClientHello SNI peek parser.
 *
 * Inputs are a real ClientHello (captured from OpenSSL 3 via Python's ssl
 * module, SNI "Mail.Example.org", ALPN "imap") and hellos built here field
 * by field, fragmented over records of various sizes.  Every input is also
 * fed at every split point: a prefix must answer NEED_MORE (with a need
 * larger than the prefix) or the same result as the whole input, and
 * feeding "need" bytes must make progress.
 */
#include "tests/unit/unit.h"

#include "edge/sni.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

static const char real_hello_hex[] =
        "1603010200010001fc0303124df28b1c29e32efbb0c61fbb099056106e1f8d212a8eaeaaba5ced385e638e20b4"
        "7ad4a7"
        "35ac59b503f0557a494ca693764869b37afeac52fc7af30d4382e27b0024130213031301c02cc030c02bc02fcc"
        "a9cca8"
        "c024c028c023c027009f009e006b006700ff0100018f0000001500130000104d61696c2e4578616d706c652e6f"
        "726700"
        "0b000403000102000a00160014001d0017001e0019001801000101010201030104002300000010000700050469"
        "6d6170"
        "0016000000170000000d002a0028040305030603080708080809080a080b080408050806040105010601030303"
        "010302"
        "040205020602002b00050403040303002d00020101003300260024001d00201971b9d3335ad34cfa2c24264247"
        "b8e050"
        "286be077eeefa0e732f2922beafb41001500d20000000000000000000000000000000000000000000000000000"
        "000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000";

static size_t unhex(const char *s, uint8_t *out, size_t outsz)
{
	size_t n = 0;

	for (; s[0] != '\0' && s[1] != '\0' && n < outsz; s += 2) {
		unsigned v;
		sscanf(s, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* --- a ClientHello builder -------------------------------------------- */

struct hb {
	uint8_t b[20000];
	size_t n;
};

static void put(struct hb *h, const void *p, size_t n)
{
	memcpy(h->b + h->n, p, n);
	h->n += n;
}
static void u8(struct hb *h, unsigned v)
{
	h->b[h->n++] = (uint8_t)v;
}
static void u16(struct hb *h, unsigned v)
{
	u8(h, v >> 8);
	u8(h, v & 0xff);
}
static void u24(struct hb *h, unsigned v)
{
	u8(h, (v >> 16) & 0xff);
	u16(h, v & 0xffff);
}

struct hello_spec {
	unsigned hs_type;     /* 1 = ClientHello */
	unsigned sid_len;     /* session id length */
	unsigned ciphers_len; /* bytes of cipher suites */
	unsigned comp_len;
	bool no_extensions;
	bool grease_first; /* an unrelated extension before server_name */
	bool sni;
	unsigned name_type;
	const char *name;
	int ext_len_delta;  /* corrupt the extensions block length */
	size_t frag;        /* record payload size; 0: one record */
	unsigned rec_type2; /* content type of records after the first (0: 22) */
};

/* Build the handshake message body, then wrap it into records. */
static size_t build(const struct hello_spec *s, uint8_t *out, size_t outsz)
{
	struct hb body = {.n = 0}, ext = {.n = 0}, msg = {.n = 0};
	size_t off = 0, o = 0;

	u16(&body, 0x0303);
	for (int i = 0; i < 32; i++)
		u8(&body, (unsigned)i);
	u8(&body, s->sid_len);
	for (unsigned i = 0; i < s->sid_len; i++)
		u8(&body, 0xaa);
	u16(&body, s->ciphers_len);
	for (unsigned i = 0; i < s->ciphers_len; i++)
		u8(&body, 0x13);
	u8(&body, s->comp_len);
	for (unsigned i = 0; i < s->comp_len; i++)
		u8(&body, 0);
	if (!s->no_extensions) {
		if (s->grease_first) {
			u16(&ext, 0x0a0a); /* GREASE, RFC 8701 */
			u16(&ext, 3);
			u8(&ext, 1);
			u8(&ext, 2);
			u8(&ext, 3);
			u16(&ext, 0x000a); /* supported_groups */
			u16(&ext, 4);
			u16(&ext, 2);
			u16(&ext, 0x001d);
		}
		if (s->sni) {
			size_t nl = strlen(s->name);
			u16(&ext, 0);
			u16(&ext, (unsigned)(nl + 5));
			u16(&ext, (unsigned)(nl + 3));
			u8(&ext, s->name_type);
			u16(&ext, (unsigned)nl);
			put(&ext, s->name, nl);
		}
		u16(&ext, 0x002b); /* supported_versions, after */
		u16(&ext, 3);
		u8(&ext, 2);
		u16(&ext, 0x0304);
		u16(&body, (unsigned)((int)ext.n + s->ext_len_delta));
		put(&body, ext.b, ext.n);
	}
	u8(&msg, s->hs_type);
	u24(&msg, (unsigned)body.n);
	put(&msg, body.b, body.n);
	while (off < msg.n) {
		size_t k = s->frag != 0 ? s->frag : msg.n;
		if (k > msg.n - off)
			k = msg.n - off;
		if (o + 5 + k > outsz)
			abort();
		out[o++] = (uint8_t)(off == 0 || s->rec_type2 == 0 ? 22 : s->rec_type2);
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)(k & 0xff);
		memcpy(out + o, msg.b + off, k);
		o += k;
		off += k;
	}
	return o;
}

/* Parse buf whole and at every split point; check the invariants. */
static bool check_splits(const uint8_t *buf, size_t len, enum edge_sni_status want,
                         const char *want_name)
{
	char name[EDGE_SNI_NAME_MAX + 1];
	size_t need = 0;
	enum edge_sni_status full = edge_sni_parse(buf, len, name, sizeof(name), &need);

	if (full != want) {
		printf("    whole input: %s, want %s\n", edge_sni_status_name(full),
		       edge_sni_status_name(want));
		return false;
	}
	if (want == EDGE_SNI_OK && strcmp(name, want_name) != 0) {
		printf("    name '%s', want '%s'\n", name, want_name);
		return false;
	}
	for (size_t k = 0; k < len; k++) {
		char n2[EDGE_SNI_NAME_MAX + 1];
		size_t need2 = 0;
		enum edge_sni_status st = edge_sni_parse(buf, k, n2, sizeof(n2), &need2);

		if (st == EDGE_SNI_NEED_MORE) {
			if (need2 <= k) {
				printf("    prefix %zu: need %zu not beyond it\n", k, need2);
				return false;
			}
			if (need2 <= len) {
				size_t need3 = 0;
				enum edge_sni_status st3 =
				        edge_sni_parse(buf, need2, n2, sizeof(n2), &need3);
				if (st3 == EDGE_SNI_NEED_MORE && need3 <= need2) {
					printf("    prefix %zu: feeding need %zu made no "
					       "progress\n",
					       k, need2);
					return false;
				}
			}
			continue;
		}
		if (st != full) {
			printf("    prefix %zu: %s, whole: %s\n", k, edge_sni_status_name(st),
			       edge_sni_status_name(full));
			return false;
		}
		if (st == EDGE_SNI_OK && strcmp(n2, want_name) != 0) {
			printf("    prefix %zu: name '%s'\n", k, n2);
			return false;
		}
	}
	return true;
}

UNIT_TEST(edge_sni_real_hello)
{
	uint8_t buf[1024];
	size_t n = unhex(real_hello_hex, buf, sizeof(buf));

	CHECK_INT(n, 517);
	CHECK(check_splits(buf, n, EDGE_SNI_OK, "mail.example.org"));
}

UNIT_TEST(edge_sni_built_hellos)
{
	static const struct {
		struct hello_spec s;
		enum edge_sni_status want;
		const char *name;
	} cases[] = {
	        {{1, 32, 4, 1, false, false, true, 0, "mx.example.net", 0, 0, 0},
	         EDGE_SNI_OK,
	         "mx.example.net"},
	        {{1, 0, 2, 1, false, true, true, 0, "IMAP.Example.NET", 0, 0, 0},
	         EDGE_SNI_OK,
	         "imap.example.net"},
	        /* fragmented: 1-byte, 7-byte and 100-byte records */
	        {{1, 32, 8, 1, false, true, true, 0, "a.b", 0, 1, 0}, EDGE_SNI_OK, "a.b"},
	        {{1, 32, 8, 1, false, true, true, 0, "host-1.example", 0, 7, 0},
	         EDGE_SNI_OK,
	         "host-1.example"},
	        {{1, 32, 64, 1, false, true, true, 0, "x.example", 0, 100, 0},
	         EDGE_SNI_OK,
	         "x.example"},
	        /* no SNI */
	        {{1, 0, 2, 1, true, false, false, 0, NULL, 0, 0, 0}, EDGE_SNI_ABSENT, NULL},
	        {{1, 0, 2, 1, false, true, false, 0, NULL, 0, 0, 0}, EDGE_SNI_ABSENT, NULL},
	        {{1, 0, 2, 1, false, true, true, 1, "x.example", 0, 0, 0}, EDGE_SNI_ABSENT, NULL},
	        /* not a ClientHello */
	        {{2, 0, 2, 1, false, false, true, 0, "x.example", 0, 0, 0},
	         EDGE_SNI_NOT_HELLO,
	         NULL},
	        /* malformed */
	        {{1, 33, 2, 1, false, false, true, 0, "x.example", 0, 0, 0},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        {{1, 0, 3, 1, false, false, true, 0, "x.example", 0, 0, 0},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        {{1, 0, 0, 1, false, false, true, 0, "x.example", 0, 0, 0},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        {{1, 0, 2, 0, false, false, true, 0, "x.example", 0, 0, 0},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "x.example", 1, 0, 0},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "x.example", -1, 0, 0},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "x.example", 0, 10, 23},
	         EDGE_SNI_MALFORMED,
	         NULL},
	        /* bad names */
	        {{1, 0, 2, 1, false, false, true, 0, "bad_name.example", 0, 0, 0},
	         EDGE_SNI_BAD_NAME,
	         NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "a..b", 0, 0, 0}, EDGE_SNI_BAD_NAME, NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "example.org.", 0, 0, 0},
	         EDGE_SNI_BAD_NAME,
	         NULL},
	        {{1, 0, 2, 1, false, false, true, 0, ".example.org", 0, 0, 0},
	         EDGE_SNI_BAD_NAME,
	         NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "", 0, 0, 0}, EDGE_SNI_BAD_NAME, NULL},
	        {{1, 0, 2, 1, false, false, true, 0, "sp ace.example", 0, 0, 0},
	         EDGE_SNI_BAD_NAME,
	         NULL},
	};
	uint8_t buf[30000];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t n = build(&cases[i].s, buf, sizeof(buf));
		CHECK_MSG(check_splits(buf, n, cases[i].want, cases[i].name), "case %zu", i);
	}
}

UNIT_TEST(edge_sni_long_names)
{
	struct hello_spec s = {1, 0, 2, 1, false, false, true, 0, NULL, 0, 0, 0};
	char name[300];
	uint8_t buf[2000];
	size_t n;

	/* a 63-byte label is fine, 64 is not (RFC 1035 2.3.4) */
	memset(name, 'a', 63);
	memcpy(name + 63, ".org", 5);
	s.name = name;
	n = build(&s, buf, sizeof(buf));
	CHECK(check_splits(buf, n, EDGE_SNI_OK, name));
	memset(name, 'a', 64);
	memcpy(name + 64, ".org", 5);
	n = build(&s, buf, sizeof(buf));
	CHECK(check_splits(buf, n, EDGE_SNI_BAD_NAME, NULL));
	/* 253 bytes in total is the maximum */
	for (int i = 0; i < 253; i++)
		name[i] = (i % 10 == 9) ? '.' : 'b';
	name[253] = '\0';
	n = build(&s, buf, sizeof(buf));
	CHECK(check_splits(buf, n, EDGE_SNI_OK, name));
	name[253] = 'c';
	name[254] = '\0';
	n = build(&s, buf, sizeof(buf));
	CHECK(check_splits(buf, n, EDGE_SNI_BAD_NAME, NULL));
}

UNIT_TEST(edge_sni_not_tls)
{
	static const struct {
		const char *in;
		size_t len;
		enum edge_sni_status want;
	} cases[] = {
	        {"EHLO example.org\r\n", 18, EDGE_SNI_NOT_TLS},
	        {"\x16\x04\x00\x00\x10", 5, EDGE_SNI_NOT_TLS},
	        {"\x17\x03\x03\x00\x10", 5, EDGE_SNI_NOT_TLS},
	        {"\x80\x2e\x01\x03\x01", 5, EDGE_SNI_NOT_TLS},   /* SSLv2-style hello */
	        {"\x16\x03\x01\x00\x00", 5, EDGE_SNI_MALFORMED}, /* empty record */
	        {"\x16\x03\x01\x40\x01", 5, EDGE_SNI_MALFORMED}, /* record > 2^14 */
	        {"", 0, EDGE_SNI_NEED_MORE},
	        {"\x16", 1, EDGE_SNI_NEED_MORE},
	        {"\x16\x03\x01\x02\x00\x01", 6, EDGE_SNI_NEED_MORE},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char name[EDGE_SNI_NAME_MAX + 1];
		size_t need = 0;
		enum edge_sni_status st = edge_sni_parse((const uint8_t *)cases[i].in, cases[i].len,
		                                         name, sizeof(name), &need);
		CHECK_MSG(st == cases[i].want, "case %zu: %s", i, edge_sni_status_name(st));
		if (st == EDGE_SNI_NEED_MORE)
			CHECK_MSG(need > cases[i].len, "case %zu: need %zu", i, need);
	}
}

UNIT_TEST(edge_sni_need_hint)
{
	uint8_t buf[1024];
	size_t n = unhex(real_hello_hex, buf, sizeof(buf)), need = 0;
	char name[EDGE_SNI_NAME_MAX + 1];

	/* Before the record header: 5; after it: the end of the record. */
	CHECK_INT(edge_sni_parse(buf, 3, name, sizeof(name), &need), EDGE_SNI_NEED_MORE);
	CHECK_INT(need, 5);
	CHECK_INT(edge_sni_parse(buf, 5, name, sizeof(name), &need), EDGE_SNI_NEED_MORE);
	CHECK_INT(need, n);
	/* the output buffer must hold the name */
	CHECK_INT(edge_sni_parse(buf, n, name, 5, &need), EDGE_SNI_BAD_NAME);
}
