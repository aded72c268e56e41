/*
 * tests/unit/test_dsn.c -- mailbox/outbound/dsn: when a DSN is due, and the
 * RFC 3464 report itself (structure, fields, folding, the returned
 * original fed at every split, the size fallback, UTF-8, refusals).
 */
#include "mailbox/outbound/dsn.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

UNIT_TEST(dsn_wanted_table)
{
	static const struct {
		const char *sender;
		enum dsn_action a;
		unsigned notify;
		bool delay_default, want;
	} t[] = {
	        {"", DSN_ACTION_FAILED, 0, true, false},
	        {"<>", DSN_ACTION_FAILED, DSN_NOTIFY_FAILURE, true, false},
	        {NULL, DSN_ACTION_FAILED, 0, true, false},
	        {"", DSN_ACTION_DELAYED, DSN_NOTIFY_DELAY, true, false},
	        {"a@b", DSN_ACTION_FAILED, 0, false, true},
	        {"a@b", DSN_ACTION_FAILED, DSN_NOTIFY_FAILURE, false, true},
	        {"a@b", DSN_ACTION_FAILED, DSN_NOTIFY_DELAY, false, false},
	        {"a@b", DSN_ACTION_FAILED, DSN_NOTIFY_NEVER, false, false},
	        {"a@b", DSN_ACTION_FAILED, DSN_NOTIFY_SUCCESS, false, false},
	        {"a@b", DSN_ACTION_DELAYED, 0, false, false},
	        {"a@b", DSN_ACTION_DELAYED, 0, true, true},
	        {"a@b", DSN_ACTION_DELAYED, DSN_NOTIFY_DELAY, false, true},
	        {"a@b", DSN_ACTION_DELAYED, DSN_NOTIFY_FAILURE, true, false},
	        {"a@b", DSN_ACTION_DELIVERED, 0, true, false},
	        {"a@b", DSN_ACTION_DELIVERED, DSN_NOTIFY_SUCCESS, false, true},
	        {"a@b", DSN_ACTION_RELAYED, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, false, true},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++)
		CHECK_MSG(dsn_wanted(t[i].sender, t[i].a, t[i].notify, t[i].delay_default) ==
		                  t[i].want,
		          "case %zu", i);
}

UNIT_TEST(dsn_date_format)
{
	static const struct {
		int64_t t;
		const char *s;
	} t[] = {
	        {0, "Thu, 01 Jan 1970 00:00:00 +0000"},
	        {1057957237, "Fri, 11 Jul 2003 21:00:37 +0000"},
	        {1700000000, "Tue, 14 Nov 2023 22:13:20 +0000"},
	        {951782400, "Tue, 29 Feb 2000 00:00:00 +0000"},
	};
	char out[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		dsn_date(t[i].t, out);
		CHECK_STR(out, t[i].s);
	}
}

static const char original[] = "Received: from x by y\r\n"
                               "From: Sender <sender@example.com>\r\n"
                               "To: gone@example.org, slow@example.net\r\n"
                               "Subject: test\r\n"
                               "Message-ID: <orig@example.com>\r\n"
                               "\r\n"
                               "Body line 1\r\n"
                               "\r\n"
                               "--not-the-boundary\r\n"
                               "last line\r\n";

static const struct dsn_rcpt two_rcpts[] = {
        {
                .final_recipient = "gone@example.org",
                .original_recipient = "rfc822;Gone@Example.org",
                .action = DSN_ACTION_FAILED,
                .status = "5.1.1",
                .smtp_code = 550,
                .diagnostic = "5.1.1 <gone@example.org>: Recipient address rejected:\nUser unknown",
                .remote_mta = "mx.example.org",
                .last_attempt = 1700000000,
        },
        {
                .final_recipient = "slow@example.net",
                .action = DSN_ACTION_DELAYED,
                .smtp_code = 451,
                .diagnostic = "Greylisted, try later", /* no enhanced code in it */
                .remote_mta = "mx.example.net",
                .last_attempt = 1700000100,
                .retry_until = 1700432000,
        },
};

static struct dsn_report base_report(void)
{
	return (struct dsn_report){
	        .reporting_mta = "mail.example.com",
	        .sender = "sender@example.com",
	        .envid = "QQ314159",
	        .message_id = "<dsn.1@mail.example.com>",
	        .boundary = "=_tp_0123456789abcdef",
	        .arrival = 1699990000,
	        .now = 1700000200,
	        .ret = DSN_RET_HDRS,
	        .original_size = sizeof(original) - 1,
	        .rcpts = two_rcpts,
	        .nrcpts = 2,
	};
}

static char *build(const struct dsn_report *r)
{
	struct buf out;
	const char *err = NULL;

	buf_init(&out, 0);
	if (dsn_build(r, original, strlen(original), &out, &err) < 0) {
		buf_free(&out);
		return NULL;
	}
	buf_append(&out, "", 1);
	return (char *)out.data;
}

/* Every line ends in CRLF, no bare CR/LF, none longer than 998 octets. */
static bool lines_ok(const char *s, size_t maxlen)
{
	size_t col = 0;

	for (; *s != '\0'; s++) {
		if (*s == '\r') {
			if (s[1] != '\n')
				return false;
			s++;
			col = 0;
			continue;
		}
		if (*s == '\n' || ++col > maxlen)
			return false;
	}
	return col == 0;
}

/* The body of the MIME part whose header has ctype (between the blank line
 * after its header and the CRLF of the next delimiter). */
static char *part_body(const char *msg, const char *boundary, const char *ctype)
{
	char *delim = xasprintf("\r\n--%s", boundary);
	char *hdr = xasprintf("Content-Type: %s\r\n", ctype);
	const char *p = strstr(msg, hdr), *start, *end;
	char *res = NULL;

	if (p != NULL && (start = strstr(p, "\r\n\r\n")) != NULL) {
		start += 4;
		end = strstr(start - 2, delim);
		if (end != NULL)
			res = end >= start ? xstrndup(start, (size_t)(end - start)) : xstrdup("");
	}
	free(delim);
	free(hdr);
	return res;
}

UNIT_TEST(dsn_failed_and_delayed_headers_returned)
{
	struct dsn_report r = base_report();
	char *m = build(&r), *status, *hdrs, *text;

	CHECK(m != NULL);
	CHECK(lines_ok(m, 78 + 20));
	/* the top-level header */
	static const char want_head[] =
	        "From: Mail Delivery System <MAILER-DAEMON@mail.example.com>\r\n"
	        "To: <sender@example.com>\r\n"
	        "Subject: Undelivered Mail Returned to Sender\r\n"
	        "Date: Tue, 14 Nov 2023 22:16:40 +0000\r\n"
	        "Message-ID: <dsn.1@mail.example.com>\r\n"
	        "Auto-Submitted: auto-replied\r\n"
	        "MIME-Version: 1.0\r\n"
	        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	        "\tboundary=\"=_tp_0123456789abcdef\"\r\n\r\n";
	CHECK_MEM(m, want_head, strlen(want_head));
	CHECK(strstr(m, "Content-Transfer-Encoding") == NULL);
	/* three parts and the closing delimiter, in order */
	const char *p1 = strstr(
	        m, "\r\n--=_tp_0123456789abcdef\r\nContent-Type: text/plain; charset=us-ascii\r\n");
	const char *p2 = strstr(
	        m, "\r\n--=_tp_0123456789abcdef\r\nContent-Type: message/delivery-status\r\n");
	const char *p3 =
	        strstr(m, "\r\n--=_tp_0123456789abcdef\r\nContent-Type: text/rfc822-headers\r\n");
	const char *close = strstr(m, "\r\n--=_tp_0123456789abcdef--\r\n");
	CHECK(p1 && p2 && p3 && close && p1 < p2 && p2 < p3 && p3 < close);
	CHECK_STR(close + strlen("\r\n--=_tp_0123456789abcdef--\r\n"), "");

	status = part_body(m, r.boundary, "message/delivery-status");
	CHECK(status != NULL);
	CHECK_STR(status,
	          "Reporting-MTA: dns; mail.example.com\r\n"
	          "Original-Envelope-Id: QQ314159\r\n"
	          "Arrival-Date: Tue, 14 Nov 2023 19:26:40 +0000\r\n"
	          "\r\n"
	          "Final-Recipient: rfc822; gone@example.org\r\n"
	          "Original-Recipient: rfc822; Gone@Example.org\r\n"
	          "Action: failed\r\n"
	          "Status: 5.1.1\r\n"
	          "Remote-MTA: dns; mx.example.org\r\n"
	          "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address\r\n"
	          "\trejected: User unknown\r\n"
	          "Last-Attempt-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
	          "\r\n"
	          "Final-Recipient: rfc822; slow@example.net\r\n"
	          "Action: delayed\r\n"
	          "Status: 4.0.0\r\n"
	          "Remote-MTA: dns; mx.example.net\r\n"
	          "Diagnostic-Code: smtp; 451 Greylisted, try later\r\n"
	          "Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000\r\n"
	          "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n");
	/* RET=HDRS: exactly the original header block, with its last CRLF */
	hdrs = part_body(m, r.boundary, "text/rfc822-headers");
	CHECK(hdrs != NULL);
	CHECK_INT(strlen(hdrs), strstr(original, "\r\n\r\n") + 2 - original);
	CHECK_MEM(hdrs, original, strlen(hdrs));
	text = part_body(m, r.boundary, "text/plain; charset=us-ascii");
	CHECK(text != NULL);
	CHECK(strstr(text, "<gone@example.org>: failed (host mx.example.org)\r\n") != NULL);
	CHECK(strstr(text, "<slow@example.net>: delayed") != NULL);
	CHECK(strstr(text, "until Sun, 19 Nov 2023 22:13:20 +0000") != NULL);
	CHECK(strstr(text, "The header of your message is attached.") != NULL);
	free(status);
	free(hdrs);
	free(text);
	free(m);
}

UNIT_TEST(dsn_full_return_and_size_fallback)
{
	struct dsn_report r = base_report();
	static const struct dsn_rcpt one[] = {{.final_recipient = "x@example.org",
	                                       .action = DSN_ACTION_FAILED,
	                                       .diagnostic = "connection refused"}};
	char *m, *body, *st;

	r.rcpts = one;
	r.nrcpts = 1;
	r.ret = DSN_RET_FULL;
	m = build(&r);
	CHECK(m != NULL);
	body = part_body(m, r.boundary, "message/rfc822");
	CHECK(body != NULL);
	CHECK_STR(body, original); /* every byte, the final CRLF included */
	st = part_body(m, r.boundary, "message/delivery-status");
	CHECK(st != NULL);
	/* no reply code: a local reason, a derived status */
	CHECK(strstr(st, "Status: 5.0.0\r\n") != NULL);
	CHECK(strstr(st, "Diagnostic-Code: X-tailpost; connection refused\r\n") != NULL);
	CHECK(strstr(st, "Remote-MTA") == NULL && strstr(st, "Last-Attempt-Date") == NULL);
	CHECK(strstr(m, "Your message is attached.") != NULL);
	free(body);
	free(st);
	free(m);

	/* too large for a full return: the header comes back instead */
	r.full_max = 20;
	m = build(&r);
	CHECK(m != NULL);
	CHECK(strstr(m, "message/rfc822") == NULL);
	body = part_body(m, r.boundary, "text/rfc822-headers");
	CHECK(body != NULL && strncmp(body, "Received:", 9) == 0);
	CHECK(strstr(m, "too large to return in full") != NULL);
	free(body);
	free(m);

	/* 8-bit original returned in full is marked */
	r.full_max = 0;
	r.original_8bit = true;
	m = build(&r);
	CHECK(m != NULL && strstr(m, "Content-Transfer-Encoding: 8bit\r\n") != NULL);
	free(m);
}

/* Feed the original at one split point, then in steps; the output must not
 * depend on the split. */
static char *build_split(const struct dsn_report *r, const char *orig, size_t len, size_t split,
                         size_t step)
{
	struct dsn_writer w;
	struct buf out;
	const char *err = NULL;
	size_t off;

	buf_init(&out, 0);
	if (dsn_begin(r, &w, &out, &err) < 0)
		return NULL;
	if (split > 0)
		dsn_original(&w, orig, split, &out);
	for (off = split; off < len; off += step)
		dsn_original(&w, orig + off, len - off < step ? len - off : step, &out);
	dsn_end(&w, r, &out);
	buf_append(&out, "", 1);
	return (char *)out.data;
}

UNIT_TEST(dsn_original_every_split)
{
	static const char *const origs[] = {
	        original,
	        "A: b\nC: d\n\nbody\nmore", /* LF only, no final line end */
	        "A: b\r\n",                 /* no body at all */
	        "",
	        "A: b\r\nC: d\r", /* ends in a bare CR */
	        "A: b\r\n\r\n",
	        "A: b\rx\r\n\r\nbody\r\r\n",
	};
	static const enum dsn_ret rets[] = {DSN_RET_HDRS, DSN_RET_FULL};
	size_t i, k, split;

	for (i = 0; i < ARRAY_SIZE(origs); i++) {
		for (k = 0; k < ARRAY_SIZE(rets); k++) {
			struct dsn_report r = base_report();
			size_t len = strlen(origs[i]);
			char *whole;
			r.ret = rets[k];
			whole = build_split(&r, origs[i], len, len, 1);
			CHECK(whole != NULL);
			CHECK_MSG(lines_ok(whole, 998), "orig %zu ret %zu: bad line ends", i, k);
			for (split = 0; split <= len; split++) {
				char *m = build_split(&r, origs[i], len, split, 1);
				CHECK_MSG(m != NULL && strcmp(m, whole) == 0,
				          "orig %zu ret %zu split %zu", i, k, split);
				free(m);
				m = build_split(&r, origs[i], len, split, 3);
				CHECK(m != NULL && strcmp(m, whole) == 0);
				free(m);
			}
			free(whole);
		}
	}
	/* an LF original comes back with CRLF, headers only for HDRS */
	struct dsn_report r = base_report();
	char *m = build_split(&r, origs[1], strlen(origs[1]), 0, 100), *b;
	b = part_body(m, r.boundary, "text/rfc822-headers");
	CHECK_STR(b, "A: b\r\nC: d\r\n");
	free(b);
	free(m);
	r.ret = DSN_RET_FULL;
	m = build_split(&r, origs[1], strlen(origs[1]), 0, 100);
	b = part_body(m, r.boundary, "message/rfc822");
	CHECK_STR(b, "A: b\r\nC: d\r\n\r\nbody\r\nmore\r\n");
	free(b);
	free(m);
}

UNIT_TEST(dsn_original_stops_after_headers)
{
	struct dsn_report r = base_report();
	struct dsn_writer w;
	struct buf out;
	const char *err = NULL;

	buf_init(&out, 0);
	CHECK(dsn_begin(&r, &w, &out, &err) == 0);
	CHECK(dsn_original(&w, "A: b\r\n", 6, &out));
	CHECK(!dsn_original(&w, "\r\nbody", 6, &out)); /* no more wanted */
	CHECK(!dsn_original(&w, "more body", 9, &out));
	dsn_end(&w, &r, &out);
	buf_append(&out, "", 1);
	CHECK(strstr((const char *)buf_ptr(&out), "body") == NULL);
	buf_free(&out);
}

UNIT_TEST(dsn_long_and_hostile_diagnostics)
{
	struct dsn_report r = base_report();
	struct dsn_rcpt rc = {
	        .final_recipient = "x@example.org", .action = DSN_ACTION_FAILED, .smtp_code = 554};
	char *diag = xmalloc(5000), *m, *st;
	size_t i;

	for (i = 0; i < 4999; i++)
		diag[i] = (i % 1500 == 1499) ? ' ' : (char)('a' + i % 26);
	diag[4999] = '\0';
	diag[10] = '\r';
	diag[11] = '\n';
	diag[12] = (char)0xe9;
	rc.diagnostic = diag;
	r.rcpts = &rc;
	r.nrcpts = 1;
	m = build(&r);
	CHECK(m != NULL);
	CHECK(lines_ok(m, 998));
	/* nothing was injected, the text was cut and marked */
	st = part_body(m, r.boundary, "message/delivery-status");
	CHECK(st != NULL);
	CHECK(strstr(st, "\r\n\r\n") != NULL);                         /* the one group separator */
	CHECK(strstr(strstr(st, "\r\n\r\n") + 4, "\r\n\r\n") == NULL); /* and no other */
	CHECK(strstr(st, "...") != NULL);
	CHECK(strstr(st, "?") != NULL);
	CHECK(strstr(st, "Status: 5.0.0") != NULL); /* derived from 554 */
	free(st);
	free(m);
	free(diag);
	/* the enhanced code at the start of the reply text is the status, when
	 * it is of the reply's class */
	struct dsn_rcpt esc = {.final_recipient = "x@example.org",
	                       .action = DSN_ACTION_FAILED,
	                       .smtp_code = 550,
	                       .diagnostic = "5.7.26 unauthenticated mail"};
	r.rcpts = &esc;
	m = build(&r);
	CHECK(m != NULL && strstr(m, "Status: 5.7.26\r\n") != NULL);
	free(m);
	esc.diagnostic = "4.7.26 mismatched class";
	m = build(&r);
	CHECK(m != NULL && strstr(m, "Status: 5.0.0\r\n") != NULL);
	free(m);
	/* an invalid status is replaced by a derived one */
	struct dsn_rcpt bad = {.final_recipient = "x@example.org",
	                       .action = DSN_ACTION_DELAYED,
	                       .status = "9.9.9"};
	r.rcpts = &bad;
	m = build(&r);
	CHECK(m != NULL && strstr(m, "Status: 4.0.0\r\n") != NULL);
	CHECK(strstr(m, "Subject: Delayed Mail (still being retried)\r\n") != NULL);
	free(m);
}

UNIT_TEST(dsn_utf8_addresses)
{
	struct dsn_report r = base_report();
	static const struct dsn_rcpt rc[] = {{.final_recipient = "j\xc3\xb6rg@b\xc3\xbc"
	                                                         "cher.example",
	                                      .action = DSN_ACTION_FAILED,
	                                      .smtp_code = 550,
	                                      .diagnostic = "no such user"}};
	char *m;

	r.rcpts = rc;
	r.nrcpts = 1;
	m = build(&r);
	CHECK(m != NULL);
	CHECK(strstr(m, "report-type=global-delivery-status") != NULL);
	CHECK(strstr(m, "Content-Type: message/global-delivery-status\r\n") != NULL);
	CHECK(strstr(m, "Content-Type: message/global-headers\r\n") != NULL);
	CHECK(strstr(m, "Final-Recipient: utf-8; j\xc3\xb6rg@b\xc3\xbc"
	                "cher.example\r\n") != NULL);
	CHECK(strstr(m, "charset=utf-8") != NULL);
	free(m);
}

UNIT_TEST(dsn_refuses)
{
	static const struct dsn_rcpt inject[] = {
	        {.final_recipient = "x@example.org\r\nBcc: victim@example.com",
	         .action = DSN_ACTION_FAILED}};
	static const struct dsn_rcpt empty[] = {
	        {.final_recipient = "", .action = DSN_ACTION_FAILED}};
	struct dsn_report r;
	struct dsn_writer w;
	struct buf out;
	const char *err;
	int i;

	buf_init(&out, 0);
	for (i = 0; i < 11; i++) {
		r = base_report();
		switch (i) {
		case 0:
			r.sender = "";
			break;
		case 1:
			r.sender = "<>";
			break;
		case 2:
			r.sender = NULL;
			break;
		case 3:
			r.nrcpts = 0;
			break;
		case 4:
			r.boundary = "has space";
			break;
		case 5:
			r.boundary = "";
			break;
		case 6:
			r.message_id = "no-brackets@x";
			break;
		case 7:
			r.reporting_mta = "bad\nhost";
			break;
		case 8:
			r.rcpts = inject;
			r.nrcpts = 1;
			break;
		case 9:
			r.rcpts = empty;
			r.nrcpts = 1;
			break;
		case 10:
			r.sender = "a@b\r\nX: y";
			break;
		}
		err = NULL;
		buf_reset(&out);
		CHECK_MSG(dsn_begin(&r, &w, &out, &err) < 0 && err != NULL, "case %d accepted", i);
		CHECK_INT(buf_len(&out), 0);
	}
	r = base_report();
	r.sender = "";
	CHECK(dsn_build(&r, "x", 1, &out, &err) < 0);
	CHECK_STR(err, "no DSN for a null sender");
	buf_free(&out);
}
