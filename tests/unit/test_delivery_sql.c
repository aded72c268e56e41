/*
 * tests/unit/test_delivery_sql.c -- the delivery statement builder
 * (mailbox/delivery/delivery_sql.h): parameters numbered without gaps and
 * each one used, the three shapes (local, remote, both), array literals,
 * UTF-8 handling, and the part table as JSON.  That the SQL runs is
 * proven on a real Postgres by tests/integration/test_smtp_*.py.
 */
#include "tests/unit/unit.h"

#include "mailbox/delivery/delivery_sql.h"
#include "mailbox/mime/parser.h"
#include "mailbox/store/pg.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* Every $1..$n is referenced and nothing beyond n. */
static bool params_used(const struct delivery_sql *q)
{
	bool seen[64] = {0};
	int max = 0;

	for (const char *p = q->sql; (p = strchr(p, '$')) != NULL; p++) {
		int v = atoi(p + 1);
		if (v <= 0 || v >= 64)
			return false;
		seen[v] = true;
		if (v > max)
			max = v;
	}
	if (max != q->nparams)
		return false;
	for (int i = 1; i <= max; i++)
		if (!seen[i])
			return false;
	return true;
}

static struct mime_result *sample_mime(void)
{
	static const char msg[] = "From: A <a@x.example>\r\nSubject: hi\r\n"
	                          "Date: Fri, 27 Nov 2026 03:40:00 +0000\r\n\r\nbody\r\n";
	return mime_parse(msg, sizeof(msg) - 1, NULL);
}

UNIT_TEST(delivery_sql_local_only)
{
	struct mime_result *m = sample_mime();
	int64_t acc[] = {7, 3, 7};
	struct delivery_sql_in in = {
	        .key = "ab", .size = 42, .accounts = acc, .naccounts = 3, .mime = m};
	struct delivery_sql q;

	delivery_sql_build(&in, &q);
	CHECK(params_used(&q));
	CHECK(strstr(q.sql, "FROM tp_deliver(") != NULL);
	CHECK(strstr(q.sql, "queue_messages") == NULL);
	CHECK(strstr(q.sql, "mb.name = 'INBOX'") != NULL);
	CHECK_INT(q.nparams, 14);
	CHECK_STR(q.params[0], "{7,3,7}");
	CHECK_STR(q.params[1], "ab");
	CHECK_STR(q.params[2], "42");
	CHECK_STR(q.params[9], "hi");          /* subject */
	CHECK_STR(q.params[10], "1795750800"); /* Date: as epoch seconds */
	CHECK(q.params[11] == NULL);           /* no Message-ID */
	CHECK(strncmp(q.params[12], "[{\"section\":\"\",", 15) == 0);
	delivery_sql_free(&q);
	mime_result_free(&m);
}

UNIT_TEST(delivery_sql_remote_only)
{
	struct delivery_sql_remote r[] = {{"a@r.example", "SUCCESS,FAILURE", "rfc822;a@r.example"},
	                                  {"b\"q@r.example", NULL, NULL}};
	struct delivery_sql_in in = {.key = "cd",
	                             .size = 9,
	                             .remote = r,
	                             .nremote = 2,
	                             .sender = "",
	                             .account_id = 5,
	                             .dsn_ret = "HDRS"};
	struct delivery_sql q;

	delivery_sql_build(&in, &q);
	CHECK(params_used(&q));
	CHECK(strstr(q.sql, "tp_deliver") == NULL);
	CHECK(strstr(q.sql, "INSERT INTO queue_messages") != NULL);
	CHECK(strstr(q.sql, "INSERT INTO queue_rcpts") != NULL);
	CHECK_INT(q.nparams, 9);
	CHECK_STR(q.params[0], "5");
	CHECK_STR(q.params[1], "");
	CHECK_STR(q.params[4], "HDRS");
	CHECK(q.params[5] == NULL); /* no ENVID */
	CHECK_STR(q.params[6], "{\"a@r.example\",\"b\\\"q@r.example\"}");
	CHECK_STR(q.params[7], "{\"SUCCESS,FAILURE\",NULL}");
	CHECK_STR(q.params[8], "{\"rfc822;a@r.example\",NULL}");
	delivery_sql_free(&q);
}

UNIT_TEST(delivery_sql_both_share_key_and_size)
{
	struct mime_result *m = sample_mime();
	int64_t acc[] = {1};
	struct delivery_sql_remote r[] = {{"a@r.example", NULL, NULL}};
	struct delivery_sql_in in = {.key = "ef",
	                             .size = 1,
	                             .accounts = acc,
	                             .naccounts = 1,
	                             .mime = m,
	                             .remote = r,
	                             .nremote = 1,
	                             .sender = "s@x"};
	struct delivery_sql q;

	delivery_sql_build(&in, &q);
	CHECK(params_used(&q));
	CHECK(strstr(q.sql, "WITH qm AS") == q.sql);
	CHECK(strstr(q.sql, "tp_deliver(") != NULL);
	/* the key and size of the queue row are reused by tp_deliver */
	CHECK_INT(q.nparams, 9 + 12);
	CHECK(strstr(q.sql, "$3::text, $4::bigint, now()") != NULL);
	CHECK(q.params[0] == NULL); /* no submitting account */
	delivery_sql_free(&q);
	mime_result_free(&m);
}

UNIT_TEST(delivery_sql_utf8)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
	        {"plain", true},
	        {"caf\xc3\xa9", true},
	        {"\xe2\x82\xac \xf0\x9f\x98\x80", true},
	        {"\xc3", false},             /* truncated */
	        {"\xc0\xaf", false},         /* overlong */
	        {"\xe0\x80\xaf", false},     /* overlong */
	        {"\xed\xa0\x80", false},     /* surrogate */
	        {"\xf4\x90\x80\x80", false}, /* past U+10FFFF */
	        {"\xff", false},
	        {"caf\xe9", false}, /* Latin-1 */
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(delivery_sql_utf8_valid(cases[i].s, strlen(cases[i].s)) == cases[i].ok,
		          "case %zu", i);
}

UNIT_TEST(delivery_sql_invalid_utf8_headers)
{
	/* raw Latin-1 in Subject: an IMAP string holding it is dropped (the
	 * reader parses the blob); the decoded header field is stored */
	static const char msg[] = "Subject: caf\xe9\r\nMessage-ID: <caf\xe9@x>\r\n\r\nx\r\n";
	struct mime_result *m = mime_parse(msg, sizeof(msg) - 1, NULL);
	int64_t acc[] = {1};
	struct delivery_sql_in in = {
	        .key = "k", .size = 1, .accounts = acc, .naccounts = 1, .mime = m};
	struct delivery_sql q;

	delivery_sql_build(&in, &q);
	for (int i = 0; i < q.nparams; i++)
		if (q.params[i] != NULL)
			CHECK_MSG(delivery_sql_utf8_valid(q.params[i], strlen(q.params[i])),
			          "param %d not UTF-8", i + 1);
	/* the parser keeps raw bytes in ENVELOPE (a literal), decodes Subject */
	CHECK(!delivery_sql_utf8_valid(m->envelope, strlen(m->envelope)));
	CHECK(q.params[3] == NULL);
	CHECK(q.params[4] != NULL); /* BODYSTRUCTURE is plain ASCII here */
	CHECK_STR(q.params[9], "caf\xc3\xa9");
	CHECK_STR(q.params[11], "<caf?@x>"); /* raw ids: invalid bytes replaced */
	delivery_sql_free(&q);
	mime_result_free(&m);
}

UNIT_TEST(delivery_sql_parts_json)
{
	struct mime_part p[] = {
	        {.section = (char *)(uintptr_t) "",
	         .hdr_start = 0,
	         .body_start = 10,
	         .body_end = 99,
	         .msg_body_start = 10,
	         .lines = 3,
	         .is_message = true},
	        {.section = (char *)(uintptr_t) "1.2",
	         .hdr_start = 20,
	         .body_start = 30,
	         .body_end = 40,
	         .lines = 1,
	         .is_multipart = true},
	};
	char *j = delivery_sql_parts_json(p, 2);

	CHECK_STR(j, "[{\"section\":\"\",\"hdr_start\":0,\"body_start\":10,\"body_end\":99,"
	             "\"msg_body_start\":10,\"lines\":3,\"multipart\":false,\"message\":true},"
	             "{\"section\":\"1.2\",\"hdr_start\":20,\"body_start\":30,\"body_end\":40,"
	             "\"msg_body_start\":0,\"lines\":1,\"multipart\":true,\"message\":false}]");
	free(j);
	j = delivery_sql_parts_json(NULL, 0);
	CHECK_STR(j, "[]");
	free(j);
}

UNIT_TEST(pg_array_text_append_literal)
{
	const char *v[] = {"a", "b\\c", "d\"e", NULL, ""};
	struct buf b;

	buf_init(&b, 0);
	pg_array_text_append(&b, v, 5);
	CHECK_INT(buf_len(&b), strlen("{\"a\",\"b\\\\c\",\"d\\\"e\",NULL,\"\"}"));
	CHECK_MEM(buf_ptr(&b), "{\"a\",\"b\\\\c\",\"d\\\"e\",NULL,\"\"}", buf_len(&b));
	buf_free(&b);
}
