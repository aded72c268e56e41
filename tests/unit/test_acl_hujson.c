/*
 * tests/unit/test_acl_hujson.c -- the HuJSON parser, packer, formatter and
 * comment-preserving edits (acl/hujson*.c).
 *
 * The error and format tables are behaviour of Tailscale's hujson package
 * (parse.go's messages, format_test.go's layouts), checked against our own
 * implementation; every valid input is also cut at every byte offset to
 * check that prefixes fail cleanly at or before the cut.
 */
#include "acl/hujson.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

static char *packed(const struct hujson_value *v)
{
	return hujson_pack_str(v, NULL);
}

/* --- parse errors ---------------------------------------------------------- */

static const struct {
	const char *in;
	int line, col;
	const char *msg;
} parse_errors[] = {
        {"", 1, 1, "parsing value: unexpected EOF"},
        {"  \n  ", 2, 3, "parsing value: unexpected EOF"},
        {"[1,,]", 1, 4, "invalid character ',' at start of value"},
        {"{\"a\" 1}", 1, 6, "invalid character '1' after object name"},
        {"{1:2}", 1, 2, "invalid character '1' at start of object name"},
        {"[1 2]", 1, 4, "invalid character '2' after array value (expecting ',' or ']')"},
        {"{\"a\":1 \"b\":2}", 1, 8,
         "invalid character '\"' after object value (expecting ',' or '}')"},
        {"{\"a\":}", 1, 6, "invalid character '}' at start of value"},
        {"[}", 1, 2, "invalid character '}' at start of value"},
        {"{]", 1, 2, "invalid character ']' at start of value"},
        {"// no newline", 1, 1, "parsing comment: unexpected EOF"},
        {"{\n\t/* open", 2, 2, "parsing comment: unexpected EOF"},
        {"tru", 1, 1, "invalid literal: tru"},
        {"[\n  01]", 2, 3, "invalid literal: 01"},
        {"\"a\\qb\"", 1, 1, "invalid literal: \"a\\qb\""},
        {"\"a\tb\"", 1, 1, "invalid literal: \"a\tb\""},
        {"{\"a\":1} x", 1, 9, "invalid character 'x' after top-level value"},
        {"[", 1, 2, "parsing value: unexpected EOF"},
        {"{\"a\"", 1, 5, "parsing object after name: unexpected EOF"},
        {"{\"a\":1", 1, 7, "parsing object after value: unexpected EOF"},
        {"[1", 1, 3, "parsing array after value: unexpected EOF"},
        {"\"ab", 1, 4, "parsing string: unexpected EOF"},
        {"1.e5", 1, 1, "invalid literal: 1.e5"},
        {"[\x01]", 1, 2, "invalid character '\\x01' at start of value"},
        {"// \xff\xfe\n1", 1, 1, "invalid UTF-8 in comment"},
        {"{\n\t\"acls\": [\n\t\t{\"a\": 1,,}\n\t]\n}", 3, 11,
         "invalid character ',' at start of value"},
};

UNIT_TEST(acl_hujson_parse_errors)
{
	for (size_t i = 0; i < sizeof(parse_errors) / sizeof(parse_errors[0]); i++) {
		struct hujson_value v;
		struct hujson_error e;
		enum hujson_status st =
		        hujson_parse(parse_errors[i].in, strlen(parse_errors[i].in), &v, &e);

		CHECK_MSG(st == HUJSON_ERR_SYNTAX, "case %zu parsed", i);
		CHECK_MSG(e.line == parse_errors[i].line && e.col == parse_errors[i].col,
		          "case %zu: at %d:%d, want %d:%d (%s)", i, e.line, e.col,
		          parse_errors[i].line, parse_errors[i].col, e.msg);
		CHECK_STR(e.msg, parse_errors[i].msg);
	}
}

/* --- round trip and truncation ---------------------------------------------- */

static const char *const valid[] = {
        "null",
        " true ",
        "[1,]",
        "[1 ,  ]",
        "{}",
        "{ }",
        "[/* c */]",
        "{\"a\":1,}",
        "// lead\n{\"a\": [1, 2, 3,], /* b */ \"b\": {\"c\": null}, } // tail\n",
        "{\r\n\t\"x\" : \"\\u00e9\\n\\ud83d\\ude02\" ,\r\n}",
        "[-0.5e+10, 0, 1E2, \"\", \"\xc3\xa9\", false]",
        "/*a*//*b*/[/*c*/1/*d*/,/*e*/]/*f*/",
        "{\n\t// groups\n\t\"groups\": {\"group:a\": [\"a@b.c\"]},\n\n\t\"acls\": [],\n}\n",
};

UNIT_TEST(acl_hujson_round_trip_and_prefixes)
{
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const char *in = valid[i];
		size_t n = strlen(in), len;
		struct hujson_value v;
		struct hujson_error e;
		char *out;

		CHECK_MSG(hujson_parse(in, n, &v, &e) == HUJSON_OK, "case %zu: %s", i, e.msg);
		out = hujson_pack_str(&v, &len);
		CHECK_MSG(len == n && memcmp(out, in, n) == 0, "case %zu: round trip differs", i);
		free(out);
		hujson_free(&v);
		/* Every proper prefix: no crash, and an error never past the cut. */
		for (size_t k = 0; k < n; k++) {
			if (hujson_parse(in, k, &v, &e) == HUJSON_OK) {
				out = hujson_pack_str(&v, &len);
				CHECK_MSG(len == k && memcmp(out, in, k) == 0,
				          "case %zu prefix %zu: round trip differs", i, k);
				free(out);
				hujson_free(&v);
			} else {
				CHECK_MSG(e.off <= k, "case %zu prefix %zu: error at %zu", i, k,
				          e.off);
			}
		}
	}
}

UNIT_TEST(acl_hujson_trailing_comma_is_kept)
{
	struct hujson_value v, w;
	struct hujson_error e;

	CHECK(hujson_parse("[1,]", 4, &v, &e) == HUJSON_OK);
	CHECK(hujson_parse("[1]", 3, &w, &e) == HUJSON_OK);
	CHECK(v.items[0].after.set);
	CHECK(!w.items[0].after.set);
	CHECK(hujson_equal(&v, &w));
	CHECK(!hujson_is_standard(&v));
	CHECK(hujson_is_standard(&w));
	hujson_free(&v);
	hujson_free(&w);
}

UNIT_TEST(acl_hujson_strings)
{
	static const struct {
		const char *lit, *want;
	} cases[] = {
	        {"\"plain\"", "plain"},
	        {"\"\\u00e9\\n\\t\\/\"", "\xc3\xa9\n\t/"},
	        {"\"\\ud83d\\ude02\"", "\xf0\x9f\x98\x82"},
	        {"\"\\ud83dx\"", "\xef\xbf\xbdx"}, /* lone surrogate: U+FFFD */
	        {"\"\xff\"", "\xef\xbf\xbd"},      /* invalid UTF-8: U+FFFD */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hujson_value v;
		struct hujson_error e;
		char *s;

		CHECK(hujson_parse(cases[i].lit, strlen(cases[i].lit), &v, &e) == HUJSON_OK);
		s = hujson_string(&v, NULL);
		CHECK_STR(s, cases[i].want);
		free(s);
		hujson_free(&v);
	}
}

UNIT_TEST(acl_hujson_quote_byte)
{
	char b[16];

	hujson_quote_byte(b, sizeof(b), ',');
	CHECK_STR(b, "','");
	hujson_quote_byte(b, sizeof(b), '\n');
	CHECK_STR(b, "'\\n'");
	hujson_quote_byte(b, sizeof(b), 0);
	CHECK_STR(b, "'\\x00'");
	hujson_quote_byte(b, sizeof(b), '\'');
	CHECK_STR(b, "'\\''");
	hujson_quote_byte(b, sizeof(b), 0x85);
	CHECK_STR(b, "'\\u0085'");
	hujson_quote_byte(b, sizeof(b), 0xe9);
	CHECK_STR(b, "'\xc3\xa9'");
}

/* --- format ---------------------------------------------------------------- */

static const struct {
	const char *in, *want;
} formats[] = {
        {"null", "null\n"},
        {" \r\n\t//comment\n\n\n/**/null \r\t//comment\n\n\n/**/\r\n\t",
         "//comment\n\n/**/ null //comment\n\n/**/\n"},
        {"\"\\u000F\\u000a\\/\\ud83d\\ude02\"", "\"\\u000f\\n/\xf0\x9f\x98\x82\"\n"},
        {"{\n\r\t \n\r\t }", "{}\n"},
        {"{/**/}", "{ /**/ }\n"},
        {"[//\r\t\n]", "[ //\n]\n"},
        {"{\"name\" \t \t:\"value\" \t \t,\"name\":\"value\"}",
         "{\"name\": \"value\", \"name\": \"value\"}\n"},
        {"[null/**/,null]", "[null /**/ , null]\n"},
        {"[0//\n,]", "[\n\t0 //\n\t\t,\n]\n"},
        {"[\n/*\n* line1\n* line2\n*/\n\t\t]", "[\n\t/*\n\t * line1\n\t * line2\n\t */\n]\n"},
        {"{\n\t\t\t\t\"name\": \"value\",\n\t\t\t\t\"name______\": \"value\",\n\t\t\t\t\"name_\": "
         "\"value\"\n\t\t\t}",
         "{\n\t\"name\":       \"value\",\n\t\"name______\": \"value\",\n\t\"name_\":      "
         "\"value\"\n}\n"},
        {"{\n\t\t\"name\": \"value\",\n\t\t\"name______\": \"value\",\n\t\t// "
         "comment\n\t\t\"name_\": "
         "\"value\",\n\t\t\"name___\": \"value\"\n\t\t}",
         "{\n\t\"name\":       \"value\",\n\t\"name______\": \"value\",\n\t// "
         "comment\n\t\"name_\":   "
         "\"value\",\n\t\"name___\": \"value\",\n}\n"},
        {"{\"foo\": \"bar\", \n\t// Comment1\n\t\"fizz\":\"buzz\"\n\t// Comment2\n,}",
         "{\n\t\"foo\": \"bar\",\n\t// Comment1\n\t\"fizz\": \"buzz\"\n\t\t// "
         "Comment2\n\t\t,\n}\n"},
        {"{\"a\":{\"b\":[],\"c\":[\n\n\n\t],},}", "{\"a\": {\"b\": [], \"c\": []}}\n"},
        {"\n\t{//fizzbuzz\n\t\"key\"\n\t\t\n\t\t:\"value\"\n\t\t\n\t\t,//wizzwuzzz \n\t\t\n\t// "
         "standalone comment\n\t\n\t\t// key comment\n\t\t\"key\":\"value\"}\n\t\n\t",
         "{ //fizzbuzz\n\t\"key\": \"value\", //wizzwuzzz\n\n\t// standalone comment\n\n\t// key "
         "comment\n\t\"key\": \"value\",\n}\n"},
        /* Standard JSON stays standard: no trailing commas are added. */
        {"{\n\"acls\": [\n{\"action\": \"accept\"}\n]\n}",
         "{\n\t\"acls\": [\n\t\t{\"action\": \"accept\"}\n\t]\n}\n"},
        {"{\"src\": [\"tag:aaaaaaaaaaaaaaaa\", \"tag:bbbbbbbbbbbbbbbbbbbb\", "
         "\"tag:cccccccccccccccc\", "
         "\"tag:dddd\"]}",
         /* Only the long array expands; the one-member object stays inline. */
         "{\"src\": [\n\t\"tag:aaaaaaaaaaaaaaaa\",\n\t\"tag:bbbbbbbbbbbbbbbbbbbb\",\n\t"
         "\"tag:cccccccccccccccc\",\n\t\"tag:dddd\"\n]}\n"},
};

UNIT_TEST(acl_hujson_format_table)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct hujson_value v;
		struct hujson_error e;
		char *once, *twice;

		CHECK_MSG(hujson_parse(formats[i].in, strlen(formats[i].in), &v, &e) == HUJSON_OK,
		          "case %zu: %s", i, e.msg);
		hujson_format(&v);
		once = packed(&v);
		CHECK_MSG(strcmp(once, formats[i].want) == 0, "case %zu:\n got %s\nwant %s", i,
		          once, formats[i].want);
		/* Idempotent. */
		hujson_free(&v);
		CHECK(hujson_parse(once, strlen(once), &v, &e) == HUJSON_OK);
		hujson_format(&v);
		twice = packed(&v);
		CHECK_MSG(strcmp(once, twice) == 0, "case %zu: not idempotent", i);
		free(once);
		free(twice);
		hujson_free(&v);
	}
}

/* --- edits ----------------------------------------------------------------- */

static void parse_ok(const char *s, struct hujson_value *v)
{
	struct hujson_error e;

	if (hujson_parse(s, strlen(s), v, &e) != HUJSON_OK)
		unit_fail(__FILE__, __LINE__, "parse: %s", e.msg);
}

UNIT_TEST(acl_hujson_remove_takes_own_comments)
{
	static const struct {
		const char *in;
		size_t idx;
		const char *want;
	} cases[] = {
	        /* Leading comment goes with the element; a, trailing one stays. */
	        {"[\n\t1, // about 1\n\t// about 2\n\t2,\n\t3,\n]", 1,
	         "[\n\t1, // about 1\n\t3,\n]"},
	        /* A comment after a blank line belongs to what follows. */
	        {"[\n\t1,\n\n\t// section\n\n\t// about 2\n\t2,\n\t3,\n]", 1,
	         "[\n\t1,\n\n\t// section\n\n\t3,\n]"},
	        /* Removing the last element keeps the list's trailing comma. */
	        {"[\n\t1,\n\t2,\n]", 1, "[\n\t1,\n]"},
	        {"{\"a\": 1, \"b\": 2}", 0, "{\"b\": 2}"},
	        {"[\n\t1,\n]", 0, "[]"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hujson_value v;
		char *out;

		parse_ok(cases[i].in, &v);
		CHECK(!unit_failed());
		hujson_remove(&v, cases[i].idx);
		out = packed(&v);
		CHECK_MSG(strcmp(out, cases[i].want) == 0, "case %zu: got %s", i, out);
		free(out);
		hujson_free(&v);
	}
}

UNIT_TEST(acl_hujson_insert_then_remove_restores)
{
	static const char *const bases[] = {
	        "[\n\t1,\n\t2,\n]",
	        "[\n\t1, // about 1\n]",
	        "[\n\t1\n]",
	        "{\n\t\"a\": 1, // about a\n}",
	        "{\n\t// head\n\t\"a\": 1,\n\n\t// tail\n}",
	        "[1, 2]",
	        "[]",
	};

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		for (size_t at = 0; at <= 2; at++) {
			struct hujson_value v, x, name;
			char *mid, *out;
			size_t len;

			parse_ok(bases[i], &v);
			CHECK(!unit_failed());
			len = hujson_len(&v);
			if (at > len) {
				hujson_free(&v);
				continue;
			}
			hujson_new_literal(&x, "42");
			/* Inline lists get a block comment, expanded ones a line. */
			if (strchr(bases[i], '\n') != NULL)
				hujson_extra_set(&x.before, "// new\n", 7);
			else
				hujson_extra_set(&x.before, "/* new */", 9);
			hujson_new_string(&name, "n");
			hujson_insert(&v, at, &name, &x, 1);
			CHECK(hujson_len(&v) == len + 1);
			mid = packed(&v);
			/* What we inserted is valid HuJSON with the comment kept. */
			{
				struct hujson_value chk;
				struct hujson_error e;

				CHECK_MSG(hujson_parse(mid, strlen(mid), &chk, &e) == HUJSON_OK,
				          "case %zu at %zu: %s in %s", i, at, e.msg, mid);
				hujson_free(&chk);
			}
			CHECK_MSG(strstr(mid, "// new\n") != NULL ||
			                  strstr(mid, "/* new */") != NULL,
			          "case %zu: comment lost: %s", i, mid);
			hujson_remove(&v, at);
			out = packed(&v);
			CHECK_MSG(strcmp(out, bases[i]) == 0, "case %zu at %zu: %s -> %s -> %s", i,
			          at, bases[i], mid, out);
			free(mid);
			free(out);
			hujson_free(&v);
		}
	}
}

UNIT_TEST(acl_hujson_insert_layout)
{
	struct hujson_value v, x;
	char *out;

	/* Appended to an expanded list: own line, sibling indentation, the
	 * previous element's same-line comment stays where it was. */
	parse_ok("{\n\t\"acls\": [\n\t\t{\"a\": 1}, // first\n\t],\n}", &v);
	CHECK(!unit_failed());
	hujson_new_literal(&x, "2");
	hujson_extra_set(&x.before, "// second\n", 10);
	hujson_insert(hujson_member_value(&v, 0), 1, NULL, &x, 2);
	out = packed(&v);
	CHECK_STR(out,
	          "{\n\t\"acls\": [\n\t\t{\"a\": 1}, // first\n\t\t// second\n\t\t2,\n\t],\n}");
	free(out);
	hujson_free(&v);

	/* Into an empty list: expanded at the given depth. */
	parse_ok("{\"acls\": []}", &v);
	hujson_new_literal(&x, "1");
	hujson_insert(hujson_member_value(&v, 0), 0, NULL, &x, 2);
	out = packed(&v);
	CHECK_STR(out, "{\"acls\": [\n\t\t1,\n\t]}");
	free(out);
	hujson_free(&v);
}

UNIT_TEST(acl_hujson_replace_keeps_comments)
{
	struct hujson_value v, x;
	char *out;

	parse_ok("[\n\t// lead\n\t1, // trail\n\t2,\n]", &v);
	CHECK(!unit_failed());
	hujson_new_string(&x, "one");
	hujson_replace(&v, 0, &x);
	out = packed(&v);
	CHECK_STR(out, "[\n\t// lead\n\t\"one\", // trail\n\t2,\n]");
	free(out);
	hujson_free(&v);
}

UNIT_TEST(acl_hujson_find_folds_case)
{
	struct hujson_value v;

	parse_ok("{\"ACLs\": 1, \"tests\": 2, \"Tests\": 3}", &v);
	CHECK(!unit_failed());
	CHECK_INT(hujson_find(&v, "acls", true), 0);
	CHECK_INT(hujson_find(&v, "acls", false), -1);
	CHECK_INT(hujson_find(&v, "Tests", true), 2); /* exact match wins */
	hujson_free(&v);
}
