/*
 * tests/unit/test_pg_array.c -- Postgres array literals (mailbox/store/pg.h:
 * pg_array_text, pg_array_int64, pg_array_uint32), the one builder the
 * delivery statement and the IMAP store share.  Table-driven: quoting of
 * '"' and '\', NULL elements, empty strings, the word NULL, separators and
 * braces inside elements, UTF-8 passed through byte for byte, and the
 * integer bounds.  That Postgres reads each literal back as the same
 * elements is checked on a real server by tests/integration/
 * test_store_pg.py (store_check pg-array).
 */
#include "tests/unit/unit.h"

#include "mailbox/store/pg.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct text_case {
	const char *elems[4];
	size_t n;
	const char *want;
};

static const struct text_case text_cases[] = {
        {{NULL}, 0, "{}"},
        {{"a"}, 1, "{\"a\"}"},
        {{""}, 1, "{\"\"}"},
        {{"", ""}, 2, "{\"\",\"\"}"},
        {{NULL}, 1, "{NULL}"},
        {{"NULL", NULL}, 2, "{\"NULL\",NULL}"},
        {{"d\"e"}, 1, "{\"d\\\"e\"}"},
        {{"b\\c"}, 1, "{\"b\\\\c\"}"},
        {{"\\\""}, 1, "{\"\\\\\\\"\"}"},
        {{"\"\"\\\\"}, 1, "{\"\\\"\\\"\\\\\\\\\"}"},
        {{"\\", "\""}, 2, "{\"\\\\\",\"\\\"\"}"},
        {{"a,b", "{c}", " d "}, 3, "{\"a,b\",\"{c}\",\" d \"}"},
        {{"\\Seen", "\\Deleted", "$Label1"}, 3, "{\"\\\\Seen\",\"\\\\Deleted\",\"$Label1\"}"},
        /* UTF-8 (é, 日本, an emoji) as it is */
        {{"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x93\xa7"},
         3,
         "{\"caf\xc3\xa9\",\"\xe6\x97\xa5\xe6\x9c\xac\",\"\xf0\x9f\x93\xa7\"}"},
        {{"x@example.org", NULL, "rfc822;a+2Bb@example.org"},
         3,
         "{\"x@example.org\",NULL,\"rfc822;a+2Bb@example.org\"}"},
};

UNIT_TEST(pg_array_text_table)
{
	for (size_t i = 0; i < ARRAY_SIZE(text_cases); i++) {
		const struct text_case *c = &text_cases[i];
		char *got = pg_array_text(c->elems, c->n);
		bool ok = strcmp(got, c->want) == 0;

		if (!ok)
			unit_fail(__FILE__, __LINE__, "case %zu: got %s want %s", i, got, c->want);
		free(got);
		if (!ok)
			return;
	}
}

UNIT_TEST(pg_array_text_append_extends_a_buffer)
{
	const char *v[] = {"a\"", NULL};
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "x=");
	pg_array_text_append(&b, v, 2);
	pg_array_text_append(&b, v, 0);
	CHECK_INT(buf_len(&b), strlen("x={\"a\\\"\",NULL}{}"));
	CHECK_MEM(buf_ptr(&b), "x={\"a\\\"\",NULL}{}", buf_len(&b));
	buf_free(&b);
}

UNIT_TEST(pg_array_text_long_element)
{
	/* runs between escapes are copied whole: check a long mixed one */
	char elem[3001], *want, *got;
	size_t w = 0;
	const char *v[1] = {elem};

	want = xmalloc(2 * sizeof(elem) + 8);
	want[w++] = '{';
	want[w++] = '"';
	for (size_t i = 0; i < sizeof(elem) - 1; i++) {
		char ch = i % 7 == 3 ? '"' : i % 11 == 5 ? '\\' : (char)('a' + i % 26);

		elem[i] = ch;
		if (ch == '"' || ch == '\\')
			want[w++] = '\\';
		want[w++] = ch;
	}
	elem[sizeof(elem) - 1] = '\0';
	want[w++] = '"';
	want[w++] = '}';
	want[w] = '\0';
	got = pg_array_text(v, 1);
	CHECK_STR(got, want);
	free(got);
	free(want);
}

UNIT_TEST(pg_array_integers)
{
	const int64_t i64[] = {1, -2, INT64_MAX, INT64_MIN, 0};
	const uint32_t u32[] = {1, 4294967295u, 0};
	char *s;

	s = pg_array_int64(i64, 5);
	CHECK_STR(s, "{1,-2,9223372036854775807,-9223372036854775808,0}");
	free(s);
	s = pg_array_int64(NULL, 0);
	CHECK_STR(s, "{}");
	free(s);
	s = pg_array_uint32(u32, 3);
	CHECK_STR(s, "{1,4294967295,0}");
	free(s);
	s = pg_array_uint32(u32, 0);
	CHECK_STR(s, "{}");
	free(s);
}
