/*
 * tests/unit/test_mime_parts.c -- the pieces of the MIME parser, and its
 * bounds: encoded-words, charsets, transfer decoders, addresses,
 * parameters, dates, search text limits, nesting and part-count limits.
 */
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

#include "mailbox/mime/mime_private.h"
#include "shared/xmalloc.h"

static char *decode2047(const char *s)
{
	return mime_rfc2047_decode_str(s);
}

UNIT_TEST(mime_rfc2047_table)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	        /* RFC 2047 section 8 examples */
	        {"=?ISO-8859-1?Q?a?=", "a"},
	        {"=?ISO-8859-1?Q?a?= b", "a b"},
	        {"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"},
	        {"=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=", "ab"},
	        {"=?ISO-8859-1?Q?a?=\t =?ISO-8859-1?Q?b?=", "ab"},
	        {"=?ISO-8859-1?Q?a_b?=", "a b"},
	        {"=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b"},
	        {"(=?ISO-8859-1?Q?a?=)", "(a)"},
	        {"=?utf-8?b?w6k=?=", "\xc3\xa9"},
	        {"=?UTF-8*en?Q?caf=C3=A9?=", "caf\xc3\xa9"},
	        /* a UTF-8 character split across two words */
	        {"=?utf-8?B?w4?= =?utf-8?B?qQ==?=", "\xc3\xa9"},
	        {"=?utf-8?q?=E2=82?= =?utf-8?q?=AC?=", "\xe2\x82\xac"},
	        {"=?windows-1252?Q?=80?=", "\xe2\x82\xac"},
	        {"=?iso-8859-15?Q?=A4?=", "\xe2\x82\xac"}, /* via iconv */
	        {"=?koi8-r?B?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"},
	        /* not encoded-words: left alone */
	        {"=?utf-8?Q?has space?=", "=?utf-8?Q?has space?="},
	        {"=?utf-8?X?abc?=", "=?utf-8?X?abc?="},
	        {"=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated"},
	        {"plain text", "plain text"},
	        /* raw 8-bit: UTF-8 kept, otherwise Latin-1 */
	        {"caf\xc3\xa9", "caf\xc3\xa9"},
	        {"caf\xe9", "caf\xc3\xa9"},
	        /* invalid bytes in a declared charset become U+FFFD */
	        {"=?utf-8?Q?a=FFb?=", "a\xef\xbf\xbd"
	                              "b"},
	        {"=?unknown-charset?Q?abc?=", "abc"},
	        {"=?utf-8?Q?nul=00here?=", "nul here"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char *r = decode2047(t[i].in);

		CHECK_MSG(strcmp(r, t[i].out) == 0, "%zu: %s -> %s", i, t[i].in, r);
		free(r);
	}
}

struct sinkbuf {
	struct buf b;
};

static void to_buf(void *ctx, const char *s, size_t n)
{
	buf_append(ctx, s, n);
}

/* Decode with a given encoding, input fed one octet at a time. */
static char *decode_bytewise(enum mime_enc enc, const char *in)
{
	struct mime_decoder d;
	struct buf b;
	char *r;

	buf_init(&b, 0);
	mime_decode_init(&d, enc);
	for (size_t i = 0; in[i]; i++)
		mime_decode_feed(&d, in + i, 1, to_buf, &b);
	mime_decode_end(&d, to_buf, &b);
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	buf_free(&b);
	return r;
}

UNIT_TEST(mime_decode_table)
{
	static const struct {
		enum mime_enc enc;
		const char *in, *out;
	} t[] = {
	        {MIME_ENC_QP, "a=3Db", "a=b"},
	        {MIME_ENC_QP, "soft=\r\nbreak", "softbreak"},
	        {MIME_ENC_QP, "soft=\nbreak", "softbreak"},
	        {MIME_ENC_QP, "pad=  \r\nded", "padded"},
	        {MIME_ENC_QP, "bad=ZZ", "bad=ZZ"},
	        {MIME_ENC_QP, "half=4", "half=4"},
	        {MIME_ENC_QP, "end=", "end="},
	        {MIME_ENC_QP, "lower=e9", "lower\xe9"},
	        {MIME_ENC_BASE64, "aGVsbG8=", "hello"},
	        {MIME_ENC_BASE64, "aGVs\r\nbG8=", "hello"},
	        {MIME_ENC_BASE64, "a G V s b G 8 =", "hello"},
	        {MIME_ENC_BASE64, "aGk=aGk=", "hihi"},
	        {MIME_ENC_BASE64, "!!!", ""},
	        {MIME_ENC_IDENTITY, "as is=3D", "as is=3D"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char *r = decode_bytewise(t[i].enc, t[i].in);

		CHECK_MSG(strcmp(r, t[i].out) == 0, "%zu: got %s", i, r);
		free(r);
	}
}

/* Charset conversion fed at every split point gives the same UTF-8. */
UNIT_TEST(mime_charset_split)
{
	static const struct {
		const char *cs, *in, *out;
	} t[] = {
	        {"utf-8", "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80",
	         "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80"},
	        {"utf-8", "bad \xc3 \xff end", "bad \xef\xbf\xbd \xef\xbf\xbd end"},
	        {"utf-8", "trunc \xe2\x82", "trunc \xef\xbf\xbd\xef\xbf\xbd"},
	        {"us-ascii", "plain", "plain"},
	        {"iso-8859-1", "caf\xe9 \x80", "caf\xc3\xa9 \xe2\x82\xac"},
	        {"windows-1252", "\x93q\x94 \x81", "\xe2\x80\x9cq\xe2\x80\x9d \xef\xbf\xbd"},
	        {"shift_jis", "\x93\xfa\x96\x7b", "\xe6\x97\xa5\xe6\x9c\xac"},
	        {"euc-kr", "\xc7\xd1", "\xed\x95\x9c"},
	        {"x-no-such-charset", "ascii \xc3\xa9", "ascii \xc3\xa9"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		size_t n = strlen(t[i].in);

		for (size_t cut = 0; cut <= n; cut++) {
			struct mime_charset c;
			struct buf b;
			bool ok;

			buf_init(&b, 0);
			mime_charset_open(&c, t[i].cs);
			mime_charset_feed(&c, t[i].in, cut, false, to_buf, &b);
			mime_charset_feed(&c, t[i].in + cut, n - cut, true, to_buf, &b);
			mime_charset_close(&c);
			buf_append(&b, "", 1);
			ok = strcmp((const char *)buf_ptr(&b), t[i].out) == 0;
			if (!ok)
				printf("    %s cut %zu: %s\n", t[i].cs, cut,
				       (const char *)buf_ptr(&b));
			buf_free(&b);
			CHECK_MSG(ok, "charset %s split at %zu", t[i].cs, cut);
		}
	}
	CHECK(mime_charset_known("ISO-8859-2"));
	CHECK(!mime_charset_known("x-no-such-charset"));
}

static char *render_addrs(const char *in)
{
	struct mime_addresses a;
	struct buf b;
	char *r;

	mime_address_parse(in, &a);
	buf_init(&b, 0);
	for (size_t i = 0; i < a.n; i++)
		buf_printf(&b, "[%s|%s|%s|%s]", a.v[i].name ? a.v[i].name : "NIL",
		           a.v[i].adl ? a.v[i].adl : "NIL", a.v[i].mailbox ? a.v[i].mailbox : "NIL",
		           a.v[i].host ? a.v[i].host : "NIL");
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	buf_free(&b);
	mime_address_free(&a);
	return r;
}

UNIT_TEST(mime_address_table)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	        {"user@example.com", "[NIL|NIL|user|example.com]"},
	        {"John Doe <jdoe@machine.example>", "[John Doe|NIL|jdoe|machine.example]"},
	        {"\"Joe Q. Public\" <john.q.public@example.com>",
	         "[Joe Q. Public|NIL|john.q.public|example.com]"},
	        {"Joe Q. Public <jqp@example.com>", "[Joe Q. Public|NIL|jqp|example.com]"},
	        {"\"Giant; \\\"Big\\\" Box\" <sys@example.net>",
	         "[Giant; \"Big\" Box|NIL|sys|example.net]"},
	        {"a@b, c@d", "[NIL|NIL|a|b][NIL|NIL|c|d]"},
	        {"user@host (Real Name)", "[Real Name|NIL|user|host]"},
	        {"(lead comment) user@host", "[NIL|NIL|user|host]"},
	        {"<@a.test,@b.test:x@c.test>", "[NIL|@a.test,@b.test|x|c.test]"},
	        {"A Group:Ed <ed@x>,  j@y;",
	         "[NIL|NIL|A Group|NIL][Ed|NIL|ed|x][NIL|NIL|j|y][NIL|NIL|NIL|NIL]"},
	        {"undisclosed-recipients:;",
	         "[NIL|NIL|undisclosed-recipients|NIL][NIL|NIL|NIL|NIL]"},
	        {"\"john doe\"@example.com", "[NIL|NIL|john doe|example.com]"},
	        {"user", "[NIL|NIL|user|MISSING_DOMAIN]"},
	        {"<>", "[NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN]"},
	        {"x@[192.0.2.1]", "[NIL|NIL|x|[192.0.2.1]]"},
	        {"a@b junk, c@d", "[NIL|NIL|a|b][NIL|NIL|c|d]"},
	        {"", ""},
	        {",,,", ""},
	        {"<<<>>>", "[NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN]"},
	        {"\"unterminated <a@b>", "[NIL|NIL|unterminated <a@b>|MISSING_DOMAIN]"},
	        {"a:b:c;", "[NIL|NIL|a|NIL][NIL|NIL|b|MISSING_DOMAIN][NIL|NIL|NIL|NIL]"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char *r = render_addrs(t[i].in);

		CHECK_MSG(strcmp(r, t[i].out) == 0, "%zu: %s -> %s", i, t[i].in, r);
		free(r);
	}
}

static char *render_params(const char *in)
{
	struct mime_params p;
	struct buf b;
	char *r;

	mime_header_params(in, &p);
	buf_init(&b, 0);
	for (size_t i = 0; i < p.n; i++)
		buf_printf(&b, "[%s=%s]", p.v[i].name, p.v[i].value);
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	buf_free(&b);
	mime_header_params_free(&p);
	return r;
}

UNIT_TEST(mime_params_table)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	        {"; charset=utf-8", "[charset=utf-8]"},
	        {";charset=\"utf-8\" ; format=flowed", "[charset=utf-8][format=flowed]"},
	        {"; boundary==_alt_7f3a", "[boundary==_alt_7f3a]"},
	        {"; name=\"a \\\"q\\\" b\"", "[name=a \"q\" b]"},
	        {"; (comment) a=1 (c2); b=2", "[a=1][b=2]"},
	        /* RFC 2231 3 and 4: continuations, out of order, extended */
	        {"; title*1=\" two\"; title*0=one", "[title=one two]"},
	        {"; name*0*=utf-8''%E2%82%AC; name*1*=%20x", "[name*=utf-8''%E2%82%AC%20x]"},
	        {"; filename*=utf-8''a%20b", "[filename*=utf-8''a%20b]"},
	        {"; x*1=orphan", "[x*1=orphan]"},
	        {"junk; a=1; =2; b; c=3", "[a=1][c=3]"},
	        {"", ""},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char *r = render_params(t[i].in);

		CHECK_MSG(strcmp(r, t[i].out) == 0, "%zu: %s -> %s", i, t[i].in, r);
		free(r);
	}
}

UNIT_TEST(mime_date_table)
{
	static const struct {
		const char *in;
		bool ok;
		int64_t t;
	} t[] = {
	        {"Tue, 1 Jul 2003 10:52:37 +0200", true, 1057049557},
	        {"1 Jul 2003 10:52:37 +0200", true, 1057049557},
	        {"Tue, 01 Jul 2003 08:52:37 GMT", true, 1057049557},
	        {"Tue, 1 Jul 2003 04:52:37 EDT", true, 1057049557},
	        {"Tue, 1 Jul 03 08:52:37 UT", true, 1057049557},
	        {"Tue, 1 Jul 103 08:52:37 +0000", true, 1057049557},
	        {"Tue, 1 Jul 2003 08:52 +0000", true, 1057049520},
	        {"Tue,  1 Jul 2003 08:52:37 +0000 (UTC)", true, 1057049557},
	        {"Thu, 1 Jan 1970 00:00:00 -0000", true, 0},
	        {"Tue, 29 Feb 2000 12:00:00 +0000", true, 951825600},
	        {"1 Jan 99 00:00:00 Z", true, 915148800},
	        {"Tue, 1 Jul 2003 08:52:37 A", true, 1057049557},
	        {"", false, 0},
	        {"yesterday", false, 0},
	        {"32 Jul 2003 10:52:37 +0200", false, 0},
	        {"1 Foo 2003 10:52:37 +0200", false, 0},
	        {"1 Jul 2003 25:52:37 +0200", false, 0},
	        {"1 Jul 2003 10:52:37 +02", false, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		int64_t v = -1;
		bool ok = mime_date_parse(t[i].in, &v);

		CHECK_MSG(ok == t[i].ok, "%zu: %s", i, t[i].in);
		if (ok)
			CHECK_MSG(v == t[i].t, "%zu: %s -> %lld", i, t[i].in, (long long)v);
	}
}

/* ---- whole-parser properties ---- */

static struct mime_result *parse_str(const char *s, const struct mime_limits *lim)
{
	return mime_parse(s, strlen(s), lim);
}

UNIT_TEST(mime_search_text_bound)
{
	struct mime_limits lim;
	struct buf msg;
	struct mime_result *r;

	/* 3-octet characters against a limit that is not a multiple of 3 */
	mime_limits_default(&lim);
	lim.max_search_body = 1000;
	buf_init(&msg, 0);
	buf_puts(&msg, "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	for (int i = 0; i < 1000; i++)
		buf_puts(&msg, "\xe2\x82\xac");
	r = mime_parse(buf_ptr(&msg), buf_len(&msg), &lim);
	CHECK(r->search_truncated);
	CHECK_INT(r->search_body_len, 999);
	CHECK_INT(strlen(r->search_body), 999);
	CHECK((unsigned char)r->search_body[998] == 0xac);
	mime_result_free(&r);
	buf_free(&msg);

	/* NULs never reach the search text; CRs are dropped */
	r = mime_parse("Subject: a\r\n\r\nx\0y\r\n", 19, NULL);
	CHECK_INT(r->search_body_len, 4);
	CHECK_MEM(r->search_body, "x y\n", 4);
	mime_result_free(&r);
}

/* A large message streams through in small chunks; memory is bounded by
 * the limits (checked by ASan's leak and the result sizes, not RSS). */
UNIT_TEST(mime_large_streaming)
{
	static const char head[] = "From: big@example.com\r\nSubject: big\r\n"
	                           "Content-Type: multipart/mixed; boundary=BB\r\n\r\n"
	                           "--BB\r\nContent-Type: text/plain\r\n\r\n";
	static const char mid[] = "\r\n--BB\r\nContent-Type: application/octet-stream\r\n"
	                          "Content-Transfer-Encoding: base64\r\n\r\n";
	static const char tail[] = "\r\n--BB--\r\n";
	struct mime_parser *p = mime_parser_new(NULL);
	struct mime_result *r;
	char line[78];
	uint64_t total = 0;
	const uint64_t text_lines = 20000, b64_lines = 100000;

	memset(line, 'a', sizeof(line));
	line[76] = '\r';
	line[77] = '\n';
	mime_parser_feed(p, head, strlen(head));
	for (uint64_t i = 0; i < text_lines; i++)
		mime_parser_feed(p, line, sizeof(line));
	mime_parser_feed(p, mid, strlen(mid));
	for (uint64_t i = 0; i < b64_lines; i++)
		mime_parser_feed(p, line, sizeof(line));
	mime_parser_feed(p, tail, strlen(tail));
	total = strlen(head) + strlen(mid) + strlen(tail) + (text_lines + b64_lines) * 78;
	r = mime_parser_finish(&p);
	CHECK_INT(r->size, total);
	CHECK_INT(r->nparts, 3);
	CHECK_INT(r->parts[1].body_end - r->parts[1].body_start, text_lines * 78);
	CHECK_INT(r->parts[1].lines, text_lines);
	CHECK_INT(r->parts[2].body_end - r->parts[2].body_start, b64_lines * 78);
	CHECK(r->search_truncated);
	CHECK_INT(r->search_body_len, 512 * 1024);
	mime_result_free(&r);
}

UNIT_TEST(mime_depth_bound)
{
	struct buf msg;
	struct mime_limits lim;
	struct mime_result *r;
	int depth = 200;

	/* 200 nested multiparts, each with its own boundary */
	buf_init(&msg, 0);
	for (int i = 0; i < depth; i++)
		buf_printf(&msg, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i,
		           i);
	buf_puts(&msg, "Content-Type: text/plain\r\n\r\ninnermost\r\n");
	for (int i = depth - 1; i >= 0; i--)
		buf_printf(&msg, "--b%d--\r\n", i);
	mime_limits_default(&lim);
	lim.max_depth = 32;
	r = mime_parse(buf_ptr(&msg), buf_len(&msg), &lim);
	/* parts 1, 1.1, ... down to depth 32, then one empty part */
	CHECK_MSG(r->nparts >= 32 && r->nparts <= 35, "nparts %zu", r->nparts);
	CHECK(strlen(r->bodystructure) < 32 * 200);
	CHECK(strncmp(r->bodystructure, "(((((", 5) == 0);
	mime_result_free(&r);

	/* the same with nested message/rfc822 */
	buf_reset(&msg);
	for (int i = 0; i < depth; i++)
		buf_puts(&msg, "Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
	buf_puts(&msg, "Subject: last\r\n\r\nbody\r\n");
	r = mime_parse(buf_ptr(&msg), buf_len(&msg), &lim);
	CHECK(r->nparts <= 35);
	CHECK(strstr(r->bodystructure, "\"last\"") == NULL);
	mime_result_free(&r);
	buf_free(&msg);
}

UNIT_TEST(mime_parts_bound)
{
	struct buf msg;
	struct mime_limits lim;
	struct mime_result *r;

	buf_init(&msg, 0);
	buf_puts(&msg, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
	for (int i = 0; i < 500; i++)
		buf_puts(&msg, "--x\r\n\r\np\r\n");
	buf_puts(&msg, "--x--\r\n");
	mime_limits_default(&lim);
	lim.max_parts = 100;
	r = mime_parse(buf_ptr(&msg), buf_len(&msg), &lim);
	/* root + 99 children; the rest is the last child's body */
	CHECK_INT(r->nparts, 100);
	mime_result_free(&r);
	buf_free(&msg);
}

UNIT_TEST(mime_header_bound)
{
	struct buf msg;
	struct mime_limits lim;
	struct mime_result *r;

	buf_init(&msg, 0);
	buf_puts(&msg, "Subject: first\r\nX-Long: ");
	for (int i = 0; i < 10000; i++)
		buf_puts(&msg, "0123456789");
	buf_puts(&msg, "\r\nFrom: late@example.com\r\n\r\nbody\r\n");
	mime_limits_default(&lim);
	lim.max_header = 4096;
	r = mime_parse(buf_ptr(&msg), buf_len(&msg), &lim);
	/* the header beyond the bound is not seen, the body still is */
	CHECK_STR(r->subject, "first");
	CHECK(r->from == NULL);
	CHECK_INT(r->parts[1].body_end - r->parts[1].body_start, 6);
	mime_result_free(&r);
	buf_free(&msg);
}

UNIT_TEST(mime_boundary_rules)
{
	struct mime_result *r;

	/* RFC 2046 5.1.1: the CRLF before "--" belongs to the delimiter;
	 * junk after a delimiter is tolerated; a delimiter of the outer
	 * multipart closes the inner one */
	r = parse_str("Content-Type: multipart/mixed; boundary=out\r\n\r\n"
	              "--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
	              "--in\r\n\r\ninner one\r\n--out junk\r\n\r\nsecond\r\n--out--",
	              NULL);
	CHECK_STR(r->body, "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0) "
	                   "\"alternative\")(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
	                   "\"7bit\" 6 0) \"mixed\")");
	mime_result_free(&r);

	/* a boundary that is a prefix of another: exact match wins */
	r = parse_str("Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
	              "--ab\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
	              "--a\r\n\r\none\r\n--ab\r\n\r\ntwo\r\n--ab--\r\n",
	              NULL);
	CHECK_STR(r->body, "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0) "
	                   "\"mixed\")(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
	                   "\"7bit\" 3 0) \"mixed\")");
	mime_result_free(&r);

	/* garbage in, a well-formed answer out */
	r = mime_parse("\0\0\0\r\r\r\n\n--\n--", 13, NULL);
	CHECK(r->envelope != NULL && r->bodystructure[0] == '(');
	mime_result_free(&r);
	r = mime_parse("", 0, NULL);
	CHECK_STR(r->envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	CHECK_STR(r->body, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
	CHECK_INT(r->nparts, 2);
	mime_result_free(&r);
	mime_result_free(&r); /* NULL is accepted */
}
