/*
 * tests/unit/test_imap_parser.c -- the IMAP command parser, table-driven.
 *
 * Each input is a byte stream of one or more commands; the parser's
 * events (commands rendered canonically, continuation requests, literal
 * chunks, errors) form a transcript that must equal the expected one,
 * whether the input is fed whole, split at any offset, or one octet at a
 * time.  Streamed literal chunks are joined before comparison since their
 * cut points depend on the feeding.
 */
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

#include "mailbox/imap/date.h"
#include "mailbox/imap/mutf7.h"
#include "mailbox/imap/parser.h"
#include "mailbox/imap/section.h"
#include "mailbox/imap/seqset.h"
#include "mailbox/imap/string.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

static void render_arg(struct buf *b, const struct imap_arg *a)
{
	switch (a->type) {
	case IMAP_ARG_ATOM:
		buf_puts(b, a->str);
		break;
	case IMAP_ARG_NIL:
		buf_puts(b, "NIL");
		break;
	case IMAP_ARG_STRING:
		buf_printf(b, "\"%s\"", a->str);
		break;
	case IMAP_ARG_LITERAL:
		buf_printf(b, "%s{%zu%s}", a->binary ? "~" : "", a->len, a->nonsync ? "+" : "");
		buf_append(b, a->str, a->len);
		break;
	case IMAP_ARG_LITERAL_STREAMED:
		buf_printf(b, "STREAMED{%" PRIu64 "}", a->literal_size);
		break;
	case IMAP_ARG_LIST:
		buf_puts(b, "(");
		for (size_t i = 0; i < a->nlist; i++) {
			if (i)
				buf_puts(b, " ");
			render_arg(b, &a->list[i]);
		}
		buf_puts(b, ")");
		break;
	case IMAP_ARG_SECTION:
		buf_printf(b, "SEC<%s|%s", a->str, a->section);
		if (a->has_list) {
			buf_puts(b, "|");
			for (size_t i = 0; i < a->nlist; i++) {
				if (i)
					buf_puts(b, ",");
				buf_puts(b, a->list[i].str);
			}
		}
		if (a->has_partial) {
			buf_printf(b, "|%" PRIu64, a->partial_offset);
			if (a->partial_has_count)
				buf_printf(b, ".%" PRIu64, a->partial_count);
		}
		buf_printf(b, "|%s>", a->raw);
		break;
	}
}

/* Feed in[0..len) cut into pieces at the given cut points (sorted); return
 * the transcript. */
static char *run(const struct imap_parser_limits *lim, const char *in, size_t len,
                 const size_t *cuts, size_t ncuts)
{
	struct imap_parser *p = imap_parser_new(lim);
	struct buf t, chunk;
	size_t start = 0;
	bool dead = false;
	char *r;

	buf_init(&t, 0);
	buf_init(&chunk, 0);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		const char *d = in + start;
		size_t n = end - start;

		while (n > 0 && !dead) {
			size_t used = 0;
			enum imap_parse_status st = imap_parser_feed(p, d, n, &used);
			const struct imap_command *c;

			d += used;
			n -= used;
			switch (st) {
			case IMAP_PARSE_NEED_MORE:
				break;
			case IMAP_PARSE_COMMAND:
				c = imap_parser_command(p);
				buf_printf(&t, "CMD %s %s", c->tag, c->name);
				for (size_t i = 0; i < c->nargs; i++) {
					buf_puts(&t, " ");
					render_arg(&t, &c->args[i]);
				}
				buf_puts(&t, "\n");
				break;
			case IMAP_PARSE_CONTINUATION:
				buf_printf(&t, "CONT %" PRIu64 "\n", imap_parser_literal_size(p));
				break;
			case IMAP_PARSE_LITERAL_CHUNK: {
				const uint8_t *cd;
				size_t cn;
				bool last;

				imap_parser_chunk(p, &cd, &cn, &last);
				buf_append(&chunk, cd, cn);
				if (last) {
					buf_puts(&t, "CHUNK ");
					buf_append(&t, buf_ptr(&chunk), buf_len(&chunk));
					buf_puts(&t, "\n");
					buf_reset(&chunk);
				}
				break;
			}
			case IMAP_PARSE_BAD:
				buf_printf(&t, "BAD %s %s\n",
				           imap_parser_tag(p) ? imap_parser_tag(p) : "*",
				           imap_parser_error(p));
				break;
			case IMAP_PARSE_FATAL:
				buf_printf(&t, "FATAL %s\n", imap_parser_error(p));
				dead = true;
				break;
			}
			if (st == IMAP_PARSE_NEED_MORE && used == 0)
				break;
		}
		start = end;
	}
	imap_parser_free(&p);
	buf_append(&t, "", 1);
	r = xstrdup((const char *)buf_ptr(&t));
	buf_free(&t);
	buf_free(&chunk);
	return r;
}

struct pcase {
	const char *in;
	const char *out;
};

static const struct pcase cases[] = {
        {"a1 NOOP\r\n", "CMD a1 NOOP\n"},
        {"a1 noop\n", "CMD a1 NOOP\n"},
        {"\r\n\r\na1 CAPABILITY\r\n", "CMD a1 CAPABILITY\n"},
        {"A001 LOGIN fred \"my \\\"secret\\\" \\\\ pw\"\r\n",
         "CMD A001 LOGIN fred \"my \"secret\" \\ pw\"\n"},
        {"t SELECT NIL\r\n", "CMD t SELECT NIL\n"},
        {"t SELECT [Gmail]/Sent\r\n", "CMD t SELECT [Gmail]/Sent\n"},
        {"t LIST \"\" %/*\r\n", "CMD t LIST \"\" %/*\n"},
        {"t LIST ~peter/mail/ ~\r\n", "CMD t LIST ~peter/mail/ ~\n"},
        {"t STORE 1:*,3 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n",
         "CMD t STORE 1:*,3 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\n"},
        {"t FETCH 1 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BODY[])\r\n",
         "CMD t FETCH 1 (FLAGS SEC<BODY.PEEK|1.2.HEADER.FIELDS|From,To|0.100|"
         "BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100>> SEC<BODY||BODY[]>)\n"},
        {"t UID FETCH 1:* BODY[HEADER.FIELDS.NOT (\"X-Spam\" Received)]\r\n",
         "CMD t UID FETCH 1:* SEC<BODY|HEADER.FIELDS.NOT|X-Spam,Received|"
         "BODY[HEADER.FIELDS.NOT (\"X-Spam\" Received)]>\n"},
        {"t FETCH 2 BINARY.PEEK[1]<5> BINARY.SIZE[2]\r\n",
         "CMD t FETCH 2 SEC<BINARY.PEEK|1|5|BINARY.PEEK[1]<5>> "
         "SEC<BINARY.SIZE|2|BINARY.SIZE[2]>\n"},
        {"t SEARCH CHARSET UTF-8 SINCE 1-Feb-1994 NOT (FROM \"Smith\" OR SEEN DRAFT)\r\n",
         "CMD t SEARCH CHARSET UTF-8 SINCE 1-Feb-1994 NOT (FROM \"Smith\" OR SEEN DRAFT)\n"},
        {"t UID SEARCH $\r\n", "CMD t UID SEARCH $\n"},
        /* literals */
        {"t LOGIN {4}\r\nfred {3}\r\npwd\r\n", "CONT 4\nCONT 3\nCMD t LOGIN {4}fred {3}pwd\n"},
        {"t LOGIN {4+}\r\nfred {0}\r\n\r\n", "CONT 0\nCMD t LOGIN {4+}fred {0}\n"},
        {"t APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {12+}\r\nHello\r\nWorld\r\n",
         "CMD t APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {12+}Hello\r\nWorld\n"},
        {"t APPEND INBOX ~{3}\r\na\r\n\r\n", "CONT 3\nCMD t APPEND INBOX ~{3}a\r\n\n"},
        {"t X ({2}\r\n()) ((\"\"))\r\n", "CONT 2\nCMD t X ({2}()) ((\"\"))\n"},
        /* errors, each followed by recovery on the next line */
        {"t SELECT \"open\r\nu NOOP\r\n", "BAD t Unterminated quoted string\nCMD u NOOP\n"},
        {"t SELECT \"bad\\escape\"\r\nu NOOP\r\n",
         "BAD t Invalid escape in quoted string\nCMD u NOOP\n"},
        {"t X (a b\r\nu NOOP\r\n", "BAD t Missing ')'\nCMD u NOOP\n"},
        {"t X a)\r\nu NOOP\r\n", "BAD t Unexpected ')'\nCMD u NOOP\n"},
        {"t X a  b\r\nu NOOP\r\n", "BAD t Unexpected space\nCMD u NOOP\n"},
        {"t X \"a\"\"b\"\r\nu NOOP\r\n", "BAD t Missing space between arguments\nCMD u NOOP\n"},
        {"t\r\nu NOOP\r\n", "BAD t Missing command\nCMD u NOOP\n"},
        {" NOOP\r\nu NOOP\r\n", "BAD * Missing tag\nCMD u NOOP\n"},
        {"t+ NOOP\r\nu NOOP\r\n", "BAD * Invalid character in tag\nCMD u NOOP\n"},
        {"t NO(OP\r\nu NOOP\r\n", "BAD t Invalid character in command name\nCMD u NOOP\n"},
        {"t X {1x}\r\nu NOOP\r\n", "BAD t Invalid literal size\nCMD u NOOP\n"},
        {"t X {3} junk\r\nu NOOP\r\n", "BAD t Literal must end the line\nCMD u NOOP\n"},
        {"t X a\rb\r\nu NOOP\r\n", "BAD t CR without LF\nCMD u NOOP\n"},
        {"t X \x80\r\nu NOOP\r\n", "BAD t 8-bit octet outside a string\nCMD u NOOP\n"},
        {"t X \x01\r\nu NOOP\r\n", "BAD t Invalid character\nCMD u NOOP\n"},
        {"t FETCH 1 BODY[1 a]\r\nu NOOP\r\n", "BAD t Expected '(' in section\nCMD u NOOP\n"},
        {"t FETCH 1 BODY[HEADER.FIELDS ()]\r\nu NOOP\r\n",
         "BAD t Empty header list in section\nCMD u NOOP\n"},
        {"t FETCH 1 BODY[]<1.0>\r\nu NOOP\r\n",
         "BAD t Partial length must be non-zero\nCMD u NOOP\n"},
        {"t FETCH 1 BODY[]<x>\r\nu NOOP\r\n", "BAD t Invalid partial\nCMD u NOOP\n"},
        {"t FETCH 1 BODY[1]x\r\nu NOOP\r\n", "BAD t Missing space between arguments\nCMD u NOOP\n"},
        /* a bad line that announced a non-synchronising literal: its data is
         * skipped, not run as a command */
        {"t X \"a\\q\" {12+}\r\nv DELETE foo\r\nu NOOP\r\n",
         "BAD t Invalid escape in quoted string\nCMD u NOOP\n"},
        /* ...but a synchronising one is never sent by the client */
        {"t X \"a\\q\" {5}\r\nu NOOP\r\n", "BAD t Invalid escape in quoted string\nCMD u NOOP\n"},
        /* pipelined commands */
        {"a NOOP\r\nb NOOP\r\nc LOGOUT\r\n", "CMD a NOOP\nCMD b NOOP\nCMD c LOGOUT\n"},
        /* incomplete input: nothing yet */
        {"t FETCH 1 (FLAGS", ""},
        {"t LOGIN {5}\r\nfr", "CONT 5\n"},
};

static void check_case(const struct imap_parser_limits *lim, const struct pcase *c)
{
	size_t len = strlen(c->in);
	char *whole = run(lim, c->in, len, NULL, 0);
	size_t *cuts;

	CHECK_MSG(strcmp(whole, c->out) == 0, "input %s\n got:\n%s want:\n%s", c->in, whole,
	          c->out);
	/* every single split point */
	for (size_t cut = 1; cut < len; cut++) {
		char *r = run(lim, c->in, len, &cut, 1);
		bool same = strcmp(r, whole) == 0;

		if (!same)
			printf("    split at %zu:\n%s", cut, r);
		free(r);
		if (!same)
			free(whole);
		CHECK_MSG(same, "input %s split at %zu", c->in, cut);
	}
	/* one octet at a time */
	cuts = xcalloc(len + 1, sizeof(*cuts));
	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	{
		char *r = run(lim, c->in, len, cuts, len > 0 ? len - 1 : 0);
		bool same = strcmp(r, whole) == 0;

		free(r);
		free(cuts);
		free(whole);
		CHECK_MSG(same, "input %s bytewise", c->in);
	}
}

UNIT_TEST(imap_parser_table)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		check_case(NULL, &cases[i]);
		if (unit_failed())
			return;
	}
}

static const struct pcase bound_cases[] = {
        /* line bound 64 (literals excluded) */
        {"t X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nu NOOP\r\n",
         "BAD t Line too long\nCMD u NOOP\n"},
        {"t X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {19}\r\nbbbbbbbbbbbbbbbbbbb ccccccccccccccc\r\n",
         "CONT 19\nCMD t X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {19}bbbbbbbbbbbbbbbbbbb "
         "ccccccccccccccc\n"},
        /* literal bound 100: a synchronising literal is refused before data */
        {"t APPEND x {101}\r\nu NOOP\r\n", "BAD t Literal too big\nCMD u NOOP\n"},
        {"t APPEND x {99999999999999999999999}\r\nu NOOP\r\n",
         "BAD t Literal too big\nCMD u NOOP\n"},
        /* a non-synchronising one cannot be: the connection must close */
        {"t APPEND x {101+}\r\nu NOOP\r\n", "FATAL Literal too big\n"},
        /* streaming from 20 octets up */
        {"t APPEND INBOX {25}\r\n0123456789012345678901234 (x)\r\n",
         "CONT 25\nCHUNK 0123456789012345678901234\nCMD t APPEND INBOX STREAMED{25} (x)\n"},
        {"t APPEND INBOX {19}\r\n0123456789012345678\r\n",
         "CONT 19\nCMD t APPEND INBOX {19}0123456789012345678\n"},
        /* command bound 200 in total */
        {"t X "
         "{90}"
         "\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaa"
         " {96}\r\nu NOOP\r\n",
         "CONT 90\nCHUNK "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "a\n"
         "BAD t Literal too big\nCMD u NOOP\n"},
        /* nesting bound 3 */
        {"t X (((a)))\r\nt X ((((a))))\r\nu NOOP\r\n",
         "CMD t X (((a)))\nBAD t Lists nested too deeply\nCMD u NOOP\n"},
        /* argument bound 5 */
        {"t X a b c d e\r\nt X a b c d e f\r\nu NOOP\r\n",
         "CMD t X a b c d e\nBAD t Too many arguments\nCMD u NOOP\n"},
};

UNIT_TEST(imap_parser_bounds)
{
	struct imap_parser_limits lim;

	imap_parser_limits_default(&lim);
	lim.max_line = 64;
	lim.max_literal = 100;
	lim.max_command = 200;
	lim.stream_literal_min = 20;
	lim.max_depth = 3;
	lim.max_args = 5;
	for (size_t i = 0; i < ARRAY_SIZE(bound_cases); i++) {
		check_case(&lim, &bound_cases[i]);
		if (unit_failed())
			return;
	}
}

UNIT_TEST(imap_parser_fatal_sticks)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	size_t used;

	imap_parser_limits_default(&lim);
	lim.max_literal = 10;
	p = imap_parser_new(&lim);
	CHECK_INT(imap_parser_feed(p, "t X {11+}\r\n", 11, &used), IMAP_PARSE_FATAL);
	CHECK_INT(imap_parser_feed(p, "u NOOP\r\n", 8, &used), IMAP_PARSE_FATAL);
	imap_parser_free(&p);
	imap_parser_free(&p);
}

UNIT_TEST(imap_parser_literal_nul_and_8bit)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const char in[] = "t X {3}\r\na\0b \"caf\xc3\xa9\"\r\n";
	size_t used, off = 0;
	enum imap_parse_status st;
	const struct imap_command *c;

	st = imap_parser_feed(p, in, sizeof(in) - 1, &used);
	CHECK_INT(st, IMAP_PARSE_CONTINUATION);
	off += used;
	st = imap_parser_feed(p, in + off, sizeof(in) - 1 - off, &used);
	CHECK_INT(st, IMAP_PARSE_COMMAND);
	c = imap_parser_command(p);
	CHECK_INT(c->nargs, 2);
	CHECK_INT(c->args[0].type, IMAP_ARG_LITERAL);
	CHECK_INT(c->args[0].len, 3);
	CHECK(c->args[0].has_nul);
	CHECK_MEM(c->args[0].str, "a\0b", 3);
	CHECK(c->args[1].eight_bit);
	CHECK_STR(c->args[1].str, "caf\xc3\xa9");
	CHECK(imap_arg_is_astring(&c->args[1]));
	imap_parser_free(&p);
}

UNIT_TEST(imap_parser_line_mode)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	const char *line = NULL;
	size_t used;

	imap_parser_limits_default(&lim);
	lim.max_line = 64;
	p = imap_parser_new(&lim);
	/* AUTHENTICATE response split in two, then IDLE's DONE + pipelined */
	CHECK_INT(imap_parser_line(p, "dGVzdAB0Z", 9, &used, &line), IMAP_PARSE_NEED_MORE);
	CHECK_INT(used, 9);
	CHECK_INT(imap_parser_line(p, "XN0AHB3\r\nDONE\r\n", 15, &used, &line), IMAP_PARSE_COMMAND);
	CHECK_INT(used, 9);
	CHECK_STR(line, "dGVzdAB0ZXN0AHB3");
	CHECK_INT(imap_parser_line(p, "DONE\r\na NOOP\r\n", 14, &used, &line), IMAP_PARSE_COMMAND);
	CHECK_STR(line, "DONE");
	CHECK_INT(imap_parser_feed(p, "a NOOP\r\n", 8, &used), IMAP_PARSE_COMMAND);
	imap_parser_free(&p);
}

/* ---- sequence sets ---- */

UNIT_TEST(imap_seqset_table)
{
	static const struct {
		const char *in;
		int ok;
		uint32_t star, yes[4], no[4];
	} t[] = {
	        {"1", 0, 10, {1}, {2}},
	        {"2:4,7", 0, 10, {2, 3, 4, 7}, {1, 5, 6, 8}},
	        {"4:2", 0, 10, {2, 3, 4}, {1, 5}},
	        {"5:*", 0, 8, {5, 6, 7, 8}, {4, 9}},
	        {"*:5", 0, 3, {3, 4, 5}, {2, 6}},
	        {"*", 0, 9, {9}, {8, 10}},
	        {"1:4294967295", 0, 3, {1, 4294967295u}, {0}},
	        {"0", -1},
	        {"01", -1},
	        {"1:", -1},
	        {":1", -1},
	        {"1,,2", -1},
	        {"1,", -1},
	        {"4294967296", -1},
	        {"1:2:3", -1},
	        {"", -1},
	        {"a", -1},
	        {"$,1", -1},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct imap_seqset s;
		const char *err = NULL;
		int rc = imap_seqset_parse(t[i].in, &s, &err);

		CHECK_MSG(rc == t[i].ok, "%s", t[i].in);
		if (rc < 0) {
			CHECK(err != NULL && s.n == 0);
			continue;
		}
		for (int k = 0; k < 4 && t[i].yes[k]; k++)
			CHECK_MSG(imap_seqset_contains(&s, t[i].yes[k], t[i].star), "%s has %u",
			          t[i].in, t[i].yes[k]);
		for (int k = 0; k < 4 && t[i].no[k]; k++)
			CHECK_MSG(!imap_seqset_contains(&s, t[i].no[k], t[i].star), "%s lacks %u",
			          t[i].in, t[i].no[k]);
		imap_seqset_free(&s);
	}
	{
		struct imap_seqset s;
		const char *err;

		CHECK_INT(imap_seqset_parse("$", &s, &err), 0);
		CHECK(s.saved && s.n == 0);
		imap_seqset_free(&s);
	}
}

/* ---- modified UTF-7 ---- */

UNIT_TEST(imap_mutf7_roundtrip)
{
	static const struct {
		const char *utf8, *mutf7;
	} t[] = {
	        {"INBOX", "INBOX"},
	        {"a&b", "a&-b"},
	        {"&", "&-"},
	        /* RFC 3501 5.1.3 example */
	        {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	         "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
	        {"Entw\xc3\xbcrfe", "Entw&APw-rfe"},
	        {"\xc3\xa9\xc3\xa9", "&AOkA6Q-"},
	        {"\xf0\x9f\x98\x80", "&2D3eAA-"},
	        {"Sent Items", "Sent Items"},
	        {"", ""},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char *e = imap_mutf7_encode(t[i].utf8), *d;

		CHECK_MSG(e != NULL && strcmp(e, t[i].mutf7) == 0, "encode %s -> %s", t[i].utf8,
		          e ? e : "NULL");
		d = imap_mutf7_decode(e);
		CHECK_MSG(d != NULL && strcmp(d, t[i].utf8) == 0, "decode %s", e);
		CHECK(imap_mutf7_valid(e));
		free(e);
		free(d);
	}
}

UNIT_TEST(imap_mutf7_invalid)
{
	static const char *const bad_mutf7[] = {
	        "&",          /* unterminated */
	        "&AOk",       /* unterminated */
	        "&AGE-",      /* encodes printable 'a' */
	        "&AOkA6Q",    /* unterminated after data */
	        "&AOl-",      /* non-zero padding bits */
	        "&AOkA-",     /* leftover bits >= 6 */
	        "&2D0-",      /* lone high surrogate */
	        "&3gA-",      /* lone low surrogate */
	        "&AOk-&AOk-", /* two shifts where one is canonical */
	        "&A/k-",      /* '/' is not modified base64 */
	        "\x80",       /* 8-bit */
	        "a\tb",       /* control */
	        "&AAA-",      /* NUL */
	};
	static const char *const bad_utf8[] = {"\xc3", "\xff", "\xed\xa0\x80", "a\x01"};

	for (size_t i = 0; i < ARRAY_SIZE(bad_mutf7); i++) {
		char *d = imap_mutf7_decode(bad_mutf7[i]);

		CHECK_MSG(d == NULL, "accepted %s as %s", bad_mutf7[i], d);
		CHECK(!imap_mutf7_valid(bad_mutf7[i]));
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad_utf8); i++)
		CHECK_MSG(imap_mutf7_encode(bad_utf8[i]) == NULL, "encoded bad UTF-8 %zu", i);
}

/* ---- the string writer ---- */

UNIT_TEST(imap_string_writer)
{
	static const struct {
		const char *in;
		size_t len;
		unsigned flags;
		const char *out;
	} t[] = {
	        {"INBOX", 5, IMAP_STR_ATOM_OK, "INBOX"},
	        {"INBOX", 5, 0, "\"INBOX\""},
	        {"NIL", 3, IMAP_STR_ATOM_OK, "\"NIL\""},
	        {"", 0, IMAP_STR_ATOM_OK, "\"\""},
	        {"a b", 3, IMAP_STR_ATOM_OK, "\"a b\""},
	        {"a\"b\\c", 5, 0, "\"a\\\"b\\\\c\""},
	        {"line\r\nbreak", 11, 0, "{11}\r\nline\r\nbreak"},
	        {"caf\xc3\xa9", 5, 0, "{5}\r\ncaf\xc3\xa9"},
	        {"caf\xc3\xa9", 5, IMAP_STR_UTF8, "\"caf\xc3\xa9\""},
	        {"bad\xff", 4, IMAP_STR_UTF8, "{4}\r\nbad\xff"},
	        {"n\0l", 3, 0, "{5}\r\nn\xef\xbf\xbdl"},
	        {"50%", 3, IMAP_STR_ATOM_OK, "\"50%\""},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct buf b;
		bool ok;

		buf_init(&b, 0);
		CHECK(imap_string_write(&b, t[i].in, t[i].len, t[i].flags) == 0);
		buf_append(&b, "", 1);
		ok = strcmp((const char *)buf_ptr(&b), t[i].out) == 0;
		if (!ok)
			printf("    %zu: %s\n", i, (const char *)buf_ptr(&b));
		buf_free(&b);
		CHECK_MSG(ok, "string %zu", i);
	}
	{
		struct buf b;

		buf_init(&b, 4);
		CHECK(imap_nstring_write(&b, NULL, 0) == 0);
		CHECK(imap_nstring_write(&b, "toolong", 0) < 0);
		buf_free(&b);
	}
}

/* ---- dates ---- */

UNIT_TEST(imap_date_table)
{
	int64_t t;
	int tz;
	struct buf b;

	CHECK(imap_date_parse("1-Feb-1994", &t));
	CHECK_INT(t, 760060800);
	CHECK(imap_date_parse("01-feb-1994", &t));
	CHECK_INT(t, 760060800);
	CHECK(!imap_date_parse("1-Feb-94", &t));
	CHECK(!imap_date_parse("30-Feb-2000", &t));
	CHECK(imap_date_parse("29-Feb-2000", &t));
	CHECK(!imap_date_parse("29-Feb-1900", &t));
	CHECK(!imap_date_parse("1-Feb-1994 ", &t));
	CHECK(imap_datetime_parse("17-Jul-1996 02:44:25 -0700", &t, &tz));
	CHECK_INT(t, 837596665);
	CHECK_INT(tz, -420);
	CHECK(imap_datetime_parse(" 7-Jul-1996 02:44:25 +0000", &t, &tz));
	CHECK(!imap_datetime_parse("7-Jul-1996 02:44:25 +0000", &t, &tz));
	CHECK(!imap_datetime_parse("17-Jul-1996 02:44:25", &t, &tz));
	CHECK(!imap_datetime_parse("17-Jul-1996 24:00:00 +0000", &t, &tz));
	buf_init(&b, 0);
	CHECK(imap_datetime_write(&b, 837596665, -420) == 0);
	buf_append(&b, "", 1);
	CHECK_STR((const char *)buf_ptr(&b), "\"17-Jul-1996 02:44:25 -0700\"");
	buf_reset(&b);
	CHECK(imap_datetime_write(&b, 0, 330) == 0);
	buf_append(&b, "", 1);
	CHECK_STR((const char *)buf_ptr(&b), "\"01-Jan-1970 05:30:00 +0530\"");
	buf_free(&b);
}

/* ---- section-spec ---- */

UNIT_TEST(imap_section_table)
{
	static const struct {
		const char *spec;
		bool list;
		int ok;
		enum imap_section_kind kind;
		const char *parts;
	} t[] = {
	        {"", false, 0, IMAP_SECTION_ALL, ""},
	        {"1", false, 0, IMAP_SECTION_ALL, "1"},
	        {"1.2.3", false, 0, IMAP_SECTION_ALL, "1.2.3"},
	        {"HEADER", false, 0, IMAP_SECTION_HEADER, ""},
	        {"header.fields", true, 0, IMAP_SECTION_FIELDS, ""},
	        {"4.2.HEADER.FIELDS.NOT", true, 0, IMAP_SECTION_FIELDS_NOT, "4.2"},
	        {"3.TEXT", false, 0, IMAP_SECTION_TEXT, "3"},
	        {"2.MIME", false, 0, IMAP_SECTION_MIME, "2"},
	        {"MIME", false, -1},
	        {"HEADER.FIELDS", false, -1},
	        {"TEXT", true, -1},
	        {"0", false, -1},
	        {"01", false, -1},
	        {"1.", false, -1},
	        {"1..2", false, -1},
	        {".1", false, -1},
	        {"1.FOO", false, -1},
	        {"4294967296", false, -1},
	        {"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30."
	         "31."
	         "32.33",
	         false, -1},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct imap_section s;
		const char *err = NULL;
		char parts[12 * IMAP_SECTION_MAX_PARTS];
		int rc = imap_section_parse(t[i].spec, t[i].list, &s, &err);

		CHECK_MSG(rc == t[i].ok, "%s", t[i].spec);
		if (rc < 0) {
			CHECK(err != NULL);
			continue;
		}
		CHECK_INT(s.kind, t[i].kind);
		imap_section_part_string(&s, parts, sizeof(parts));
		CHECK_STR(parts, t[i].parts);
	}
}
