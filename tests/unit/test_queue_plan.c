/*
 * tests/unit/test_queue_plan.c -- mailbox/outbound/queue_plan: the
 * Return-Path filter (fed at every split point), From: domains, grouping
 * by destination, the fate of a recipient after an attempt, DSN
 * parameter decoding.
 */
#include "mailbox/outbound/queue_plan.h"
#include "mailbox/outbound/smtp_client.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

static const struct {
	const char *in, *out;
} rp_cases[] = {
        {"Return-Path: <a@b.example>\r\nReceived: x\r\n\r\nbody\r\n",
         "Received: x\r\n\r\nbody\r\n"},
        {"return-path: <>\r\nFrom: a@b\r\n\r\n", "From: a@b\r\n\r\n"},
        {"RETURN-PATH:\r\n <folded@b>\r\n\tmore\r\nSubject: s\r\n\r\nx", "Subject: s\r\n\r\nx"},
        {"Return-Path: <a@b>\nTo: c\n\nbare LF\n", "To: c\n\nbare LF\n"},
        {"Received: from x\r\nReturn-Path: <a@b>\r\n\r\n",
         "Received: from x\r\nReturn-Path: <a@b>\r\n\r\n"},
        {"Return-Pathy: no\r\n\r\n", "Return-Pathy: no\r\n\r\n"},
        {"Return-Path <a@b>\r\n\r\n", "Return-Path <a@b>\r\n\r\n"},
        {"Retu", "Retu"},
        {"", ""},
        {"Return-Path: <a@b>\r\n", ""},
        /* only the first field: a second Return-Path is content */
        {"Return-Path: <a@b>\r\nReturn-Path: <c@d>\r\n\r\n", "Return-Path: <c@d>\r\n\r\n"},
};

static void rp_run(const char *in, size_t split, struct buf *out)
{
	struct queue_rpstrip s;
	size_t len = strlen(in);

	queue_rpstrip_init(&s);
	queue_rpstrip_feed(&s, in, split, out);
	queue_rpstrip_feed(&s, in + split, len - split, out);
	queue_rpstrip_finish(&s, out);
}

UNIT_TEST(queue_rpstrip_every_split)
{
	for (size_t i = 0; i < ARRAY_SIZE(rp_cases); i++) {
		size_t len = strlen(rp_cases[i].in);

		for (size_t split = 0; split <= len; split++) {
			struct buf out;
			bool ok;

			buf_init(&out, 0);
			rp_run(rp_cases[i].in, split, &out);
			ok = buf_len(&out) == strlen(rp_cases[i].out) &&
			     (buf_len(&out) == 0 ||
			      memcmp(buf_ptr(&out), rp_cases[i].out, buf_len(&out)) == 0);
			buf_free(&out);
			CHECK_MSG(ok, "case %zu split %zu", i, split);
		}
	}
}

UNIT_TEST(queue_rpstrip_byte_by_byte)
{
	const char *in = rp_cases[2].in;
	struct queue_rpstrip s;
	struct buf out;

	buf_init(&out, 0);
	queue_rpstrip_init(&s);
	for (size_t i = 0; in[i] != '\0'; i++)
		queue_rpstrip_feed(&s, in + i, 1, &out);
	queue_rpstrip_finish(&s, &out);
	CHECK_INT(buf_len(&out), strlen(rp_cases[2].out));
	CHECK_MEM(buf_ptr(&out), rp_cases[2].out, buf_len(&out));
	buf_free(&out);
}

UNIT_TEST(queue_plan_domains)
{
	char d[64];
	static const struct {
		const char *hdr, *dom; /* dom NULL: none found */
	} t[] = {
	        {"From: Alice <alice@Example.ORG>\r\nTo: x\r\n\r\n", "example.org"},
	        {"Subject: s\r\nfrom: bob@b.example\r\n\r\n", "b.example"},
	        {"From: \"a@fake.example\" <real@real.example>\r\n\r\n", "real.example"},
	        {"From: Name\r\n <folded@fold.example>\r\nTo: y\r\n\r\n", "fold.example"},
	        {"To: x@y\r\n\r\nFrom: body@not.example\r\n", NULL},
	        {"From: nobody\r\n\r\n", NULL},
	        {"From: a@cut.example", NULL}, /* incomplete line */
	        {"Received: x\r\nFrom: <a@b.example.>\r\nX: y\r\n", "b.example"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		bool ok = queue_plan_from_domain(t[i].hdr, strlen(t[i].hdr), d, sizeof(d));

		if (t[i].dom == NULL) {
			CHECK_MSG(!ok, "case %zu found %s", i, d);
		} else {
			CHECK_MSG(ok, "case %zu not found", i);
			CHECK_STR(d, t[i].dom);
		}
	}
	CHECK(queue_plan_domain("User@Sub.Example.NET", d, sizeof(d)));
	CHECK_STR(d, "sub.example.net");
	CHECK(!queue_plan_domain("nodomain", d, sizeof(d)));
	CHECK(!queue_plan_domain("a@", d, sizeof(d)));
	CHECK(!queue_plan_domain("a@toolong.example", d, 8));
}

UNIT_TEST(queue_plan_grouping)
{
	int relay_a, relay_b;
	struct queue_plan_rcpt r[] = {
	        {QUEUE_ROUTE_MX, NULL, "one.example", 99},
	        {QUEUE_ROUTE_RELAY, &relay_a, "x.example", 99},
	        {QUEUE_ROUTE_MX, NULL, "ONE.example", 99},
	        {QUEUE_ROUTE_MX, NULL, "two.example", 99},
	        {QUEUE_ROUTE_RELAY, &relay_a, "y.example", 99},
	        {QUEUE_ROUTE_RELAY, &relay_b, "x.example", 99},
	        {QUEUE_ROUTE_LOCAL, &relay_b, "l.example", 99},
	        {QUEUE_ROUTE_LOCAL, &relay_b, "m.example", 99},
	};
	size_t want[] = {0, 1, 0, 2, 1, 3, 4, 4};

	CHECK_INT(queue_plan_group(r, ARRAY_SIZE(r)), 5);
	for (size_t i = 0; i < ARRAY_SIZE(r); i++)
		CHECK_MSG(r[i].group == want[i], "rcpt %zu group %zu", i, r[i].group);
	CHECK_INT(queue_plan_group(r, 0), 0);
}

UNIT_TEST(queue_plan_fates)
{
	struct retry_schedule s;
	const char *err = NULL;
	int64_t next = -1, t0 = 1000000;

	CHECK(retry_schedule_parse("1m, 5m", &s, &err) == 0);
	CHECK(retry_schedule_set_expiry(&s, "1h", &err) == 0);
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_DELIVERED, &s, t0, 1, t0, &next), QUEUE_FATE_SENT);
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_PERMFAIL, &s, t0, 1, t0, &next), QUEUE_FATE_FAILED);
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_TEMPFAIL, &s, t0, 1, t0 + 2, &next),
	          QUEUE_FATE_RETRY);
	CHECK_INT(next, t0 + 60);
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_TEMPFAIL, &s, t0, 2, t0 + 61, &next),
	          QUEUE_FATE_RETRY);
	CHECK_INT(next, t0 + 360);
	/* the last interval repeats */
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_TEMPFAIL, &s, t0, 3, t0 + 361, &next),
	          QUEUE_FATE_RETRY);
	CHECK_INT(next, t0 + 660);
	/* overdue: not in the same second */
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_TEMPFAIL, &s, t0, 1, t0 + 500, &next),
	          QUEUE_FATE_RETRY);
	CHECK_INT(next, t0 + 501);
	/* the schedule never goes past the expiry; at it, the message expires */
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_TEMPFAIL, &s, t0, 20, t0 + 3500, &next),
	          QUEUE_FATE_RETRY);
	CHECK_INT(next, t0 + 3600);
	CHECK_INT(queue_plan_fate(SMTP_CLIENT_TEMPFAIL, &s, t0, 21, t0 + 3600, &next),
	          QUEUE_FATE_EXPIRED);
	CHECK_STR(queue_fate_name(QUEUE_FATE_EXPIRED), "expired");
}

UNIT_TEST(queue_plan_dsn_params)
{
	char *s;

	CHECK_INT(queue_plan_notify(NULL), 0);
	CHECK_INT(queue_plan_notify("NEVER"), SMTP_CLIENT_NOTIFY_NEVER);
	CHECK_INT(queue_plan_notify("SUCCESS,FAILURE"),
	          SMTP_CLIENT_NOTIFY_SUCCESS | SMTP_CLIENT_NOTIFY_FAILURE);
	CHECK_INT(queue_plan_notify("delay,Failure"),
	          SMTP_CLIENT_NOTIFY_DELAY | SMTP_CLIENT_NOTIFY_FAILURE);
	s = queue_plan_xtext_decode("a+2Bb+3dc@x");
	CHECK_STR(s, "a+b=c@x");
	free(s);
	CHECK(queue_plan_xtext_decode("a+2") == NULL);
	CHECK(queue_plan_xtext_decode("a+0Db") == NULL); /* CR */
	CHECK(queue_plan_xtext_decode(NULL) == NULL);
	s = queue_plan_orcpt("rfc822;user+2Btag@example.org");
	CHECK_STR(s, "rfc822;user+tag@example.org");
	free(s);
	CHECK(queue_plan_orcpt("noseparator") == NULL);
	CHECK(queue_plan_orcpt(";x") == NULL);
}
