/*
 * tests/unit/test_dkim.c -- mailbox/dkim: canonicalization, keys, signing.
 *
 * The canonicalizers are checked against hand-written expected bytes, fed
 * whole, split at every offset and byte by byte, and against a second,
 * deliberately naive line-based reference on random inputs.  Signatures
 * are verified here with OpenSSL against header data written out by hand
 * (so selection order, b= removal and canonicalization are all checked);
 * the independent cross-check with dkimpy is tests/integration/
 * test_dkim_verify.py.
 */
#include "mailbox/dkim/canon.h"
#include "mailbox/dkim/key.h"
#include "mailbox/dkim/sign.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <stdio.h>
#include <stdlib.h>

/* RFC 8032 7.1 TEST 1 secret key as PKCS#8; its public key is the one
 * RFC 8463's example publishes for brisbane._domainkey.football.example.com */
static const char rfc8032_pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
        "-----END PRIVATE KEY-----\n";

/* --- header canonicalization ------------------------------------------------------ */

UNIT_TEST(dkim_canon_header_table)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	        {"Subject: Hello", "subject:Hello\r\n"},
	        {"SUBJECT:Hello", "subject:Hello\r\n"},
	        {"Subject  :  Hello  ", "subject:Hello\r\n"},
	        {"Subject:\tA \t B\t\t", "subject:A B\r\n"},
	        {"Subject: a\r\n b\r\n\tc", "subject:a b c\r\n"},
	        {"Subject: a\r\n\r\n b", "subject:a b\r\n"},
	        {"Subject:a\r\nb", "subject:ab\r\n"}, /* unfolding removes the CRLF only */
	        {"To: x,\r\n  y", "to:x, y\r\n"},
	        {"X-Empty:", "x-empty:\r\n"},
	        {"X-Empty:   \r\n  ", "x-empty:\r\n"},
	        {"X-Bare-Cr: a\rb", "x-bare-cr:a\rb\r\n"},
	        {"NoColon", "nocolon:\r\n"},
	        {"From: \"J  S\" <js@example.com>", "from:\"J S\" <js@example.com>\r\n"},
	};
	struct buf b;
	size_t i;

	buf_init(&b, 0);
	for (i = 0; i < ARRAY_SIZE(t); i++) {
		buf_reset(&b);
		CHECK(dkim_canon_header(t[i].in, strlen(t[i].in), true, &b) == 0);
		buf_append(&b, "", 1);
		CHECK_STR((const char *)buf_ptr(&b), t[i].out);
	}
	/* without the CRLF (the DKIM-Signature field itself) */
	buf_reset(&b);
	CHECK(dkim_canon_header("A: b ", 5, false, &b) == 0);
	CHECK_INT(buf_len(&b), 3);
	CHECK_MEM(buf_ptr(&b), "a:b", 3);
	/* the bound is honoured */
	struct buf small;
	buf_init(&small, 4);
	CHECK(dkim_canon_header("Subject: long value", 19, true, &small) < 0);
	buf_free(&small);
	buf_free(&b);
}

/* --- body canonicalization ----------------------------------------------------- */

static void collect(void *ctx, const uint8_t *p, size_t n)
{
	CHECK_MSG(n > 0 && n <= DKIM_CANON_CHUNK, "sink got %zu bytes", n);
	buf_append(ctx, p, n);
}

/* canonicalize in pieces of at most step bytes, and with one cut at split */
static void canon_body(const char *in, size_t len, size_t split, size_t step, struct buf *out)
{
	struct dkim_canon_body *c = xmalloc(sizeof(*c));
	size_t off = 0;

	buf_reset(out);
	dkim_canon_body_init(c, collect, out);
	if (split > len)
		split = len;
	while (off < split) {
		size_t n = split - off < step ? split - off : step;
		dkim_canon_body_feed(c, in + off, n);
		off += n;
	}
	while (off < len) {
		size_t n = len - off < step ? len - off : step;
		dkim_canon_body_feed(c, in + off, n);
		off += n;
	}
	dkim_canon_body_finish(c);
	free(c);
}

UNIT_TEST(dkim_canon_body_table)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	        {"", ""},
	        {"\r\n", ""},
	        {"\r\n\r\n\r\n", ""},
	        {"   \r\n\t\r\n", ""},
	        {"a", "a\r\n"},
	        {"a\r\n", "a\r\n"},
	        {"a\r\n\r\n\r\n", "a\r\n"},
	        {"a  \t \r\n", "a\r\n"},
	        {" a  b\t\tc \r\n", " a b c\r\n"},
	        {"\r\n\r\na\r\n", "\r\n\r\na\r\n"},
	        {"a\r\n \r\nb\r\n", "a\r\n\r\nb\r\n"},
	        {"a\nb\n\n", "a\r\nb\r\n"}, /* bare LF is a line end */
	        {"a\rb\r\n", "a\rb\r\n"},   /* bare CR is content */
	        {"a\r", "a\r\r\n"},         /* even at the very end */
	        {"a \r \r\n", "a \r\r\n"},  /* CR is not WSP: the WSP before it stays */
	        {"\r\r\n", "\r\r\n"},
	        {".\r\n..\r\n", ".\r\n..\r\n"},
	        {"x\r\n\t\r\n \r\ny", "x\r\n\r\n\r\ny\r\n"},
	};
	struct buf out;
	size_t i, split, step;

	buf_init(&out, 0);
	for (i = 0; i < ARRAY_SIZE(t); i++) {
		size_t len = strlen(t[i].in), elen = strlen(t[i].out);
		for (step = 1; step <= len + 1; step++) {
			for (split = 0; split <= len; split++) {
				canon_body(t[i].in, len, split, step, &out);
				CHECK_MSG(buf_len(&out) == elen &&
				                  (elen == 0 ||
				                   memcmp(buf_ptr(&out), t[i].out, elen) == 0),
				          "case %zu split %zu step %zu", i, split, step);
			}
		}
	}
	buf_free(&out);
}

/* A naive reference: split into lines, fix each, drop trailing empties. */
static void reference_body(const char *in, size_t len, struct buf *out)
{
	struct buf line, all;
	size_t i = 0, keep = 0;

	buf_init(&line, 0);
	buf_init(&all, 0);
	buf_reset(out);
	while (i < len) {
		size_t j = i, end, next;
		while (j < len &&
		       !(in[j] == '\n' || (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n')))
			j++;
		end = j;
		next = j < len ? (in[j] == '\n' ? j + 1 : j + 2) : len;
		/* strip trailing WSP, then collapse runs */
		while (end > i && (in[end - 1] == ' ' || in[end - 1] == '\t'))
			end--;
		buf_reset(&line);
		for (size_t k = i; k < end; k++) {
			bool w = in[k] == ' ' || in[k] == '\t';
			if (w && k > i && (in[k - 1] == ' ' || in[k - 1] == '\t'))
				continue;
			buf_append(&line, w ? " " : &in[k], 1);
		}
		buf_append(&all, buf_ptr(&line), buf_len(&line));
		buf_append(&all, "\r\n", 2);
		if (buf_len(&line) > 0)
			keep = buf_len(&all);
		i = next;
	}
	buf_append(out, buf_ptr(&all), keep);
	buf_free(&line);
	buf_free(&all);
}

UNIT_TEST(dkim_canon_body_matches_reference)
{
	static const char alphabet[] = "  \t\t\r\n\n\r\na.b";
	struct buf got, want;
	uint32_t seed = 12345;
	char in[64];
	int iter;

	buf_init(&got, 0);
	buf_init(&want, 0);
	for (iter = 0; iter < 20000; iter++) {
		size_t len, i;
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		reference_body(in, len, &want);
		canon_body(in, len, (seed >> 8) % (len + 1), 1 + (seed >> 4) % 5, &got);
		CHECK_MSG(buf_len(&got) == buf_len(&want) &&
		                  (buf_len(&got) == 0 ||
		                   memcmp(buf_ptr(&got), buf_ptr(&want), buf_len(&got)) == 0),
		          "iteration %d differs (len %zu)", iter, len);
	}
	buf_free(&got);
	buf_free(&want);
}

UNIT_TEST(dkim_canon_body_long_lines_constant_memory)
{
	/* 3 MB in one line of WSP and content, 2 MB of trailing empty lines:
	 * only counters grow */
	struct dkim_canon_body *c = xmalloc(sizeof(*c));
	struct buf out;
	char chunk[1000];
	size_t i;

	buf_init(&out, 0);
	dkim_canon_body_init(c, collect, &out);
	for (i = 0; i < sizeof(chunk); i++)
		chunk[i] = (i % 3 == 0) ? ' ' : 'x';
	for (i = 0; i < 3000; i++)
		dkim_canon_body_feed(c, chunk, sizeof(chunk));
	for (i = 0; i < 1000000; i++)
		dkim_canon_body_feed(c, "\r\n", 2);
	dkim_canon_body_finish(c);
	/* a chunk is " xx" 333 times and a trailing SP, which merges with the
	 * next chunk's leading SP (or, at the end, is dropped); one final CRLF */
	CHECK_INT(buf_len(&out), 3000 * 333 * 3 + 2);
	CHECK_MEM(buf_ptr(&out) + buf_len(&out) - 4, "xx\r\n", 4);
	buf_free(&out);
	free(c);
}

/* --- keys --------------------------------------------------------------------------- */

UNIT_TEST(dkim_key_rfc8032_txt)
{
	const char *err = NULL;
	char *txt = dkim_key_dns_txt_pem(rfc8032_pem, strlen(rfc8032_pem), &err);

	CHECK(txt != NULL);
	CHECK_STR(txt, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	free(txt);
}

UNIT_TEST(dkim_key_generate_and_load)
{
	const enum dkim_alg algs[] = {DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA256};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(algs); i++) {
		const char *err = NULL;
		char *pem = dkim_key_generate_pem(algs[i], &err);
		struct dkim_key *k;
		char *txt;
		CHECK(pem != NULL);
		CHECK(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
		k = dkim_key_load_pem(pem, strlen(pem), &err);
		CHECK(k != NULL);
		CHECK_INT(dkim_key_alg(k), algs[i]);
		txt = dkim_key_dns_txt(k);
		CHECK(txt != NULL);
		if (algs[i] == DKIM_ALG_ED25519_SHA256) {
			CHECK(strncmp(txt, "v=DKIM1; k=ed25519; p=", 22) == 0);
			CHECK_INT(strlen(txt), 22 + 44); /* 32 bytes in base64 */
		} else {
			CHECK(strncmp(txt, "v=DKIM1; k=rsa; p=MIIBIjAN", 26) == 0);
			CHECK_INT(EVP_PKEY_get_bits(dkim_key_evp(k)), 2048);
		}
		free(txt);
		dkim_key_free(&k);
		CHECK(k == NULL);
		dkim_key_free(&k); /* NULL is fine */
		free(pem);
	}
}

UNIT_TEST(dkim_key_load_refuses)
{
	const char *err = NULL;
	static const char junk[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	struct buf pem;
	BIO *bio;
	char *mem;
	long n;

	CHECK(dkim_key_load_pem(junk, strlen(junk), &err) == NULL);
	CHECK(dkim_key_load_pem("", 0, &err) == NULL);
	CHECK(ec != NULL && small != NULL);
	buf_init(&pem, 0);
	EVP_PKEY *both[2] = {ec, small};
	const char *why[2] = {"key is neither RSA nor Ed25519", "RSA key shorter than 1024 bits"};
	for (int i = 0; i < 2; i++) {
		bio = BIO_new(BIO_s_mem());
		CHECK(PEM_write_bio_PrivateKey(bio, both[i], NULL, NULL, 0, NULL, NULL) == 1);
		n = BIO_get_mem_data(bio, &mem);
		err = NULL;
		CHECK(dkim_key_load_pem(mem, (size_t)n, &err) == NULL);
		CHECK_STR(err, why[i]);
		BIO_free(bio);
	}
	buf_free(&pem);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(small);
	enum dkim_alg a;
	CHECK(dkim_alg_parse("ED25519", &a) == 0 && a == DKIM_ALG_ED25519_SHA256);
	CHECK(dkim_alg_parse("rsa-sha256", &a) == 0 && a == DKIM_ALG_RSA_SHA256);
	CHECK(dkim_alg_parse("dsa", &a) < 0);
	CHECK_STR(dkim_alg_name(DKIM_ALG_ED25519_SHA256), "ed25519-sha256");
	CHECK_STR(dkim_alg_key_type(DKIM_ALG_RSA_SHA256), "rsa");
}

/* --- signing ----------------------------------------------------------------------------- */

static char *b64(const void *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* Sign msg fed in pieces: one cut at split, then steps of step bytes. */
static int sign_msg(const struct dkim_sign_spec *specs, size_t n, const struct dkim_sign_opts *o,
                    const char *msg, size_t len, size_t split, size_t step, struct buf *out,
                    const char **err)
{
	struct dkim_sign *s = dkim_sign_new(specs, n, o, err);
	size_t off = 0;
	int rc = -1;

	if (s == NULL)
		return -1;
	if (split > len)
		split = len;
	if (split > 0 && dkim_sign_feed(s, msg, split) < 0)
		goto fail;
	off = split;
	while (off < len) {
		size_t k = len - off < step ? len - off : step;
		if (dkim_sign_feed(s, msg + off, k) < 0)
			goto fail;
		off += k;
	}
	buf_reset(out);
	rc = dkim_sign_finish(s, out, err);
fail:
	if (rc < 0 && *err == NULL)
		*err = "feed failed";
	dkim_sign_free(&s);
	return rc;
}

/* Pull the n-th (0-based) DKIM-Signature field out of out, unfolded b= value
 * into *b_r, and the field with the b= value removed into *field_r. */
static void split_sig(const struct buf *out, int which, char **field_r, char **b_r)
{
	const char *all = (const char *)buf_ptr(out), *end = all + buf_len(out), *p = all, *f;
	struct buf field, bval;
	const char *bpos;

	for (;;) {
		f = p;
		/* the field ends at a CRLF not followed by WSP */
		while (p + 1 < end && !(p[0] == '\r' && p[1] == '\n' &&
		                        (p + 2 >= end || (p[2] != ' ' && p[2] != '\t'))))
			p++;
		if (which-- == 0)
			break;
		p += 2;
	}
	buf_init(&field, 0);
	buf_init(&bval, 0);
	bpos = f;
	while ((bpos = strstr(bpos, " b=")) != NULL && bpos < p && bpos[-1] != ';')
		bpos++;
	if (bpos == NULL || bpos > p) {
		bpos = f;
		while ((bpos = strstr(bpos, "\tb=")) != NULL && bpos[-1] != '\n')
			bpos++;
	}
	buf_append(&field, f, (size_t)(bpos + 3 - f));
	for (const char *q = bpos + 3; q < p; q++)
		if (*q != '\r' && *q != '\n' && *q != ' ' && *q != '\t')
			buf_append(&bval, q, 1);
	buf_append(&field, "", 1);
	buf_append(&bval, "", 1);
	*field_r = (char *)field.data;
	*b_r = (char *)bval.data;
}

static bool verify_with(EVP_PKEY *pkey, enum dkim_alg alg, const char *data, const char *b64sig)
{
	unsigned char sig[1024], hash[SHA256_DIGEST_LENGTH];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int siglen = EVP_DecodeBlock(sig, (const unsigned char *)b64sig, (int)strlen(b64sig));
	size_t n = strlen(data);
	bool ok;

	/* EVP_DecodeBlock counts padding bytes as data */
	for (const char *q = b64sig + strlen(b64sig); q > b64sig && q[-1] == '='; q--)
		siglen--;
	if (alg == DKIM_ALG_ED25519_SHA256) {
		SHA256((const unsigned char *)data, n, hash);
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		     EVP_DigestVerify(ctx, sig, (size_t)siglen, hash, sizeof(hash)) == 1;
	} else {
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		     EVP_DigestVerify(ctx, sig, (size_t)siglen, (const unsigned char *)data, n) ==
		             1;
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

static const char sample_msg[] = "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                 "From: Joe SixPack <joe@football.example.com>\r\n"
                                 "To: Suzie Q <suzie@shopping.example.net>\r\n"
                                 "Cc: one@example.net\r\n"
                                 "Subject: Is dinner\r\n"
                                 "\tready?  \r\n"
                                 "cc:   two@example.net\r\n"
                                 "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
                                 "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
                                 "\r\n"
                                 "Hi.\r\n"
                                 "\r\n"
                                 "We lost the game.  Are you hungry yet?\r\n"
                                 "\r\n"
                                 "Joe.  \r\n"
                                 "\r\n";

/* The header data a verifier must build for sample_msg, written by hand:
 * h=from:from:to:cc:cc:subject:date:message-id, instances bottom-up. */
static const char sample_hdata[] =
        "from:Joe SixPack <joe@football.example.com>\r\n"
        "to:Suzie Q <suzie@shopping.example.net>\r\n"
        "cc:two@example.net\r\n"
        "cc:one@example.net\r\n"
        "subject:Is dinner ready?\r\n"
        "date:Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
        "message-id:<20030712040037.46341.5F8J@football.example.com>\r\n";
static const char sample_body_canon[] =
        "Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n";

UNIT_TEST(dkim_sign_verifies_against_hand_written_data)
{
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	char *rsapem = dkim_key_generate_pem(DKIM_ALG_RSA_SHA256, &err);
	struct dkim_key *rsa = dkim_key_load_pem(rsapem, strlen(rsapem), &err);
	struct dkim_sign_spec specs[2] = {
	        {.key = ed, .domain = "football.example.com", .selector = "brisbane"},
	        {.key = rsa,
	         .domain = "football.example.com",
	         .selector = "test",
	         .identity = "joe@sub.football.example.com",
	         .expire_secs = 86400},
	};
	struct dkim_sign_opts o = {.now = 1528637909};
	unsigned char bh[SHA256_DIGEST_LENGTH];
	char *bh64, *expect[2];
	struct buf out;
	int i;

	CHECK(ed != NULL && rsa != NULL);
	buf_init(&out, 0);
	SHA256((const unsigned char *)sample_body_canon, strlen(sample_body_canon), bh);
	bh64 = b64(bh, sizeof(bh));
	expect[0] = xasprintf("dkim-signature:v=1; a=ed25519-sha256; c=relaxed/relaxed; "
	                      "d=football.example.com; s=brisbane; t=1528637909; "
	                      "h=from:from:to:cc:cc:subject:date:message-id; bh=%s; b=",
	                      bh64);
	expect[1] = xasprintf("dkim-signature:v=1; a=rsa-sha256; c=relaxed/relaxed; "
	                      "d=football.example.com; s=test; i=joe@sub.football.example.com; "
	                      "t=1528637909; x=1528724309; "
	                      "h=from:from:to:cc:cc:subject:date:message-id; bh=%s; b=",
	                      bh64);
	CHECK(sign_msg(specs, 2, &o, sample_msg, strlen(sample_msg), 0, 4096, &out, &err) == 0);
	for (i = 0; i < 2; i++) {
		char *field, *bval, *data;
		struct buf canon;
		split_sig(&out, i, &field, &bval);
		/* the field, canonicalized, is what we expect; a fold inside h=
		 * (FWS after ':', RFC 6376 3.5) becomes one SP, which we drop
		 * for the comparison only */
		buf_init(&canon, 0);
		dkim_canon_header(field, strlen(field), false, &canon);
		buf_append(&canon, "", 1);
		{
			char *c = xstrdup((const char *)buf_ptr(&canon)), *q;
			while ((q = strstr(c, ": ")) != NULL)
				memmove(q + 1, q + 2, strlen(q + 2) + 1);
			CHECK_STR(c, expect[i]);
			free(c);
		}
		data = xasprintf("%s%s", sample_hdata, (const char *)buf_ptr(&canon));
		buf_free(&canon);
		CHECK_MSG(verify_with(dkim_key_evp(i == 0 ? ed : rsa),
		                      i == 0 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256, data,
		                      bval),
		          "signature %d does not verify", i);
		/* and a changed byte does not */
		data[5] = 'X';
		CHECK(!verify_with(dkim_key_evp(i == 0 ? ed : rsa),
		                   i == 0 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256, data,
		                   bval));
		free(data);
		free(field);
		free(bval);
	}
	for (i = 0; i < 2; i++)
		free(expect[i]);
	free(bh64);
	buf_free(&out);
	dkim_key_free(&ed);
	dkim_key_free(&rsa);
	free(rsapem);
}

UNIT_TEST(dkim_sign_output_is_folded)
{
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	static const char *const many[] = {"from",
	                                   "to",
	                                   "cc",
	                                   "subject",
	                                   "date",
	                                   "message-id",
	                                   "x-a-rather-long-header-name-number-one",
	                                   "x-a-rather-long-header-name-number-two",
	                                   NULL};
	struct dkim_sign_spec spec = {.key = ed, .domain = "example.com", .selector = "s1"};
	struct dkim_sign_opts o = {.now = 1, .headers = many};
	static const char m[] = "From: a@example.com\r\n"
	                        "X-A-Rather-Long-Header-Name-Number-One: 1\r\n"
	                        "X-A-Rather-Long-Header-Name-Number-Two: 2\r\n\r\nbody\r\n";
	struct buf out;
	const char *p, *e;

	buf_init(&out, 0);
	CHECK(sign_msg(&spec, 1, &o, m, strlen(m), 0, 100, &out, &err) == 0);
	p = (const char *)buf_ptr(&out);
	e = p + buf_len(&out);
	CHECK(e - p > 2 && memcmp(e - 2, "\r\n", 2) == 0);
	while (p < e) {
		const char *nl = memmem(p, (size_t)(e - p), "\r\n", 2);
		CHECK(nl != NULL);
		CHECK_MSG(nl - p <= 78, "line of %d characters", (int)(nl - p));
		p = nl + 2;
		CHECK(p == e || *p == '\t'); /* one field: every later line continues it */
	}
	buf_free(&out);
	dkim_key_free(&ed);
}

UNIT_TEST(dkim_sign_every_split_same_output)
{
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	char *rsapem = dkim_key_generate_pem(DKIM_ALG_RSA_SHA256, &err);
	struct dkim_key *rsa = dkim_key_load_pem(rsapem, strlen(rsapem), &err);
	struct dkim_sign_spec specs[2] = {
	        {.key = ed, .domain = "example.com", .selector = "e"},
	        {.key = rsa, .domain = "example.com", .selector = "r"},
	};
	struct dkim_sign_opts o = {.now = 1700000000};
	/* bare LF and CRLF mixed: the same lines either way */
	static const char lf_msg[] = "From: a@example.com\nSubject: x\n y\n\nline  \n\n";
	static const char crlf_msg[] = "From: a@example.com\r\nSubject: x\r\n y\r\n\r\nline\r\n";
	struct buf whole, part, other;
	size_t len = strlen(sample_msg), split;

	CHECK(ed != NULL && rsa != NULL);
	buf_init(&whole, 0);
	buf_init(&part, 0);
	buf_init(&other, 0);
	CHECK(sign_msg(specs, 2, &o, sample_msg, len, 0, len, &whole, &err) == 0);
	for (split = 0; split <= len; split++) {
		CHECK(sign_msg(specs, 2, &o, sample_msg, len, split, len, &part, &err) == 0);
		CHECK_MSG(buf_len(&part) == buf_len(&whole) &&
		                  memcmp(buf_ptr(&part), buf_ptr(&whole), buf_len(&part)) == 0,
		          "split at %zu changes the signature", split);
	}
	CHECK(sign_msg(specs, 2, &o, sample_msg, len, 0, 1, &part, &err) == 0);
	CHECK(buf_len(&part) == buf_len(&whole) &&
	      memcmp(buf_ptr(&part), buf_ptr(&whole), buf_len(&part)) == 0);
	/* LF-only input signs like its CRLF form */
	CHECK(sign_msg(specs, 2, &o, lf_msg, strlen(lf_msg), 3, 2, &part, &err) == 0);
	CHECK(sign_msg(specs, 2, &o, crlf_msg, strlen(crlf_msg), 0, 100, &other, &err) == 0);
	CHECK(buf_len(&part) == buf_len(&other) &&
	      memcmp(buf_ptr(&part), buf_ptr(&other), buf_len(&part)) == 0);
	buf_free(&whole);
	buf_free(&part);
	buf_free(&other);
	dkim_key_free(&ed);
	dkim_key_free(&rsa);
	free(rsapem);
}

/* h= for a message, by signing it and reading the h= tag back. */
static char *h_tag(const struct dkim_sign_opts *o, const char *msg)
{
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	struct dkim_sign_spec spec = {.key = ed, .domain = "example.com", .selector = "s"};
	struct buf out, unf;
	char *res = NULL;
	const char *h, *e;

	buf_init(&out, 0);
	buf_init(&unf, 0);
	if (sign_msg(&spec, 1, o, msg, strlen(msg), 0, 64, &out, &err) == 0) {
		for (size_t i = 0; i < buf_len(&out); i++) {
			char c = (char)buf_ptr(&out)[i];
			if (c != '\r' && c != '\n' && c != '\t')
				buf_append(&unf, &c, 1);
		}
		buf_append(&unf, "", 1);
		h = strstr((const char *)buf_ptr(&unf), " h=");
		e = h ? strchr(h, ';') : NULL;
		if (e != NULL)
			res = xstrndup(h + 3, (size_t)(e - h - 3));
	}
	buf_free(&out);
	buf_free(&unf);
	dkim_key_free(&ed);
	return res;
}

UNIT_TEST(dkim_sign_header_selection)
{
	static const char *const custom[] = {"Subject", "FROM", "x-list", NULL};
	static const char *const over[] = {"subject", "from", NULL};
	static const char *const none[] = {NULL};
	static const struct {
		const char *const *headers, *const *oversign;
		const char *msg, *h;
	} t[] = {
	        {NULL, NULL, "From: a@b.example\r\n\r\n", "from:from"},
	        {NULL, NULL, "from: a@b.example\r\nTo: x\r\nTO: y\r\nX-No: 1\r\n\r\n",
	         "from:from:to:to"},
	        {NULL, NULL, "Subject: s\r\nMIME-Version: 1.0\r\nFrom: a\r\n",
	         "from:from:subject:mime-version"},
	        {NULL, none, "From: a\r\n\r\n", "from"},
	        {NULL, NULL, "To: nobody\r\n\r\n", "from:to"}, /* From absent: still over-signed */
	        {custom, over, "X-List: 1\r\nSubject: s\r\nX-List: 2\r\n\r\n",
	         "subject:subject:from:x-list:x-list"},
	        {NULL, NULL, "From : spaced\r\nContent-Type: text/plain;\r\n charset=x\r\n\r\n",
	         "from:from:content-type"},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		struct dkim_sign_opts o = {
		        .now = 1, .headers = t[i].headers, .oversign = t[i].oversign};
		char *h = h_tag(&o, t[i].msg);
		CHECK_MSG(h != NULL && strcmp(h, t[i].h) == 0, "case %zu: h=%s, want %s", i,
		          h ? h : "(none)", t[i].h);
		free(h);
	}
}

UNIT_TEST(dkim_sign_refuses)
{
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	static const char *const nofrom[] = {"subject", NULL};
	static const char *const badname[] = {"from", "bad name", NULL};
	struct dkim_sign_opts o = {.now = 1};
	static const struct {
		const char *domain, *selector, *identity;
	} bad[] = {
	        {"", "s", NULL},
	        {"exa mple.com", "s", NULL},
	        {"example.com", "s;x", NULL},
	        {"example..com", "s", NULL},
	        {".example.com", "s", NULL},
	        {"example.com", "", NULL},
	        {"example.com", "s", "joe@other.com"},
	        {"example.com", "s", "joe@badexample.com"},
	        {"example.com", "s", "joe"},
	        {"example.com", "s", "jo e@example.com"},
	};
	struct dkim_sign_spec spec = {.key = ed, .domain = "example.com", .selector = "s"};
	struct dkim_sign *s;
	struct buf out;
	size_t i;

	CHECK(ed != NULL);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		struct dkim_sign_spec b = {.key = ed,
		                           .domain = bad[i].domain,
		                           .selector = bad[i].selector,
		                           .identity = bad[i].identity};
		err = NULL;
		CHECK_MSG(dkim_sign_new(&b, 1, &o, &err) == NULL && err != NULL, "case %zu", i);
	}
	CHECK(dkim_sign_new(&spec, 0, &o, &err) == NULL);
	o.headers = nofrom;
	CHECK(dkim_sign_new(&spec, 1, &o, &err) == NULL);
	o.headers = badname;
	CHECK(dkim_sign_new(&spec, 1, &o, &err) == NULL);
	o.headers = NULL;
	/* identity in a subdomain is fine */
	spec.identity = "@mail.example.com";
	s = dkim_sign_new(&spec, 1, &o, &err);
	CHECK(s != NULL);
	dkim_sign_free(&s);
	spec.identity = NULL;

	/* the header bound: the feed fails and so does finish */
	o.header_max = 64;
	buf_init(&out, 0);
	s = dkim_sign_new(&spec, 1, &o, &err);
	CHECK(s != NULL);
	CHECK(dkim_sign_feed(s, "From: a@example.com\r\n", 21) == 0);
	CHECK(dkim_sign_feed(s, "Subject: 0123456789012345678901234567890123456789\r\n", 51) < 0);
	CHECK(dkim_sign_feed(s, "\r\nbody\r\n", 8) < 0);
	err = NULL;
	CHECK(dkim_sign_finish(s, &out, &err) < 0 && err != NULL);
	CHECK_INT(buf_len(&out), 0);
	dkim_sign_free(&s);
	/* a header block at the bound is fine, and the body is not counted */
	s = dkim_sign_new(&spec, 1, &o, &err);
	CHECK(s != NULL);
	CHECK(dkim_sign_feed(s, "From: a@example.com\r\n\r\n", 23) == 0);
	for (i = 0; i < 1000; i++)
		CHECK(dkim_sign_feed(s, "a long body line that is not part of the header block\r\n",
		                     55) == 0);
	CHECK(dkim_sign_finish(s, &out, &err) == 0);
	/* finish runs once */
	CHECK(dkim_sign_finish(s, &out, &err) < 0);
	dkim_sign_free(&s);
	dkim_sign_free(&s);
	buf_free(&out);
	dkim_key_free(&ed);
}

UNIT_TEST(dkim_sign_empty_and_headerless)
{
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	struct dkim_sign_spec spec = {.key = ed, .domain = "example.com", .selector = "s"};
	struct dkim_sign_opts o = {.now = 1};
	static const char *const msgs[] = {"", "\r\n", "\r\nbody only\r\n", "\n\n", " folded\r\n"};
	struct buf out;

	CHECK(ed != NULL);
	buf_init(&out, 0);
	for (size_t i = 0; i < ARRAY_SIZE(msgs); i++) {
		CHECK_MSG(sign_msg(&spec, 1, &o, msgs[i], strlen(msgs[i]), 0, 3, &out, &err) == 0,
		          "case %zu: %s", i, err);
		buf_append(&out, "", 1);
		/* no From: the over-signed entry alone */
		CHECK(strstr((const char *)buf_ptr(&out), " h=from;") != NULL);
	}
	buf_free(&out);
	dkim_key_free(&ed);
}

UNIT_TEST(dkim_sign_large_body_streams)
{
	/* 50 MB through the signer in 64 kB pieces, body hash checked against
	 * the hash of the expected canonical form computed on the side */
	const char *err = NULL;
	struct dkim_key *ed = dkim_key_load_pem(rfc8032_pem, strlen(rfc8032_pem), &err);
	struct dkim_sign_spec spec = {.key = ed, .domain = "example.com", .selector = "s"};
	struct dkim_sign_opts o = {.now = 1};
	struct dkim_sign *s = dkim_sign_new(&spec, 1, &o, &err);
	static const char line[] = "0123456789  abcdef \t\r\n"; /* 22 bytes */
	static const char cline[] = "0123456789 abcdef\r\n";    /* canonical */
	EVP_MD_CTX *ref = EVP_MD_CTX_new();
	unsigned char h[SHA256_DIGEST_LENGTH];
	char *chunk = xmalloc(65536 + 22), *bh64, *want;
	size_t per = 65536 / 22 * 22, total = 0, i;
	struct buf out;

	CHECK(s != NULL && ref != NULL);
	for (i = 0; i < per / 22; i++)
		memcpy(chunk + i * 22, line, 22);
	EVP_DigestInit_ex(ref, EVP_sha256(), NULL);
	CHECK(dkim_sign_feed(s, "From: a@example.com\r\n\r\n", 23) == 0);
	while (total < 50u * 1024 * 1024) {
		CHECK(dkim_sign_feed(s, chunk, per) == 0);
		for (i = 0; i < per / 22; i++)
			EVP_DigestUpdate(ref, cline, strlen(cline));
		total += per;
	}
	EVP_DigestFinal_ex(ref, h, NULL);
	bh64 = b64(h, sizeof(h));
	want = xasprintf("bh=%s;", bh64);
	buf_init(&out, 0);
	CHECK(dkim_sign_finish(s, &out, &err) == 0);
	buf_append(&out, "", 1);
	CHECK_MSG(strstr((const char *)buf_ptr(&out), want) != NULL, "%s not in output", want);
	free(want);
	free(bh64);
	free(chunk);
	buf_free(&out);
	EVP_MD_CTX_free(ref);
	dkim_sign_free(&s);
	dkim_key_free(&ed);
}
