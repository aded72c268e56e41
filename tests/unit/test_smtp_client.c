/*
 * tests/unit/test_smtp_client.c -- the outbound SMTP client: the reply
 * parser (table, every split), the EHLO extension parser, and transcripts
 * of whole sessions: scripted server replies ("S:"), the exact commands
 * the client must send ("C:"), and glue actions ("!send", "!tls", ...),
 * each transcript run with every server chunk fed whole, split at every
 * offset, and byte by byte.
 */
#include "mailbox/outbound/smtp_client.h"
#include "mailbox/outbound/smtp_client_ehlo.h"
#include "mailbox/outbound/smtp_client_reply.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

/* --- the reply parser ------------------------------------------------------------- */

struct reply_case {
	const char *in;
	enum smtp_client_reply_status st;
	int code;
	const char *esc, *text;
	size_t nlines;
};

static const struct reply_case reply_cases[] = {
        {"220 mx.example.org ESMTP\r\n", SMTP_CLIENT_REPLY_OK, 220, "", "mx.example.org ESMTP", 1},
        {"250 OK\n", SMTP_CLIENT_REPLY_OK, 250, "", "OK", 1},
        {"250\r\n", SMTP_CLIENT_REPLY_OK, 250, "", "", 1},
        {"250 \r\n", SMTP_CLIENT_REPLY_OK, 250, "", "", 1},
        {"550 5.1.1 <a@b>: no such user\r\n", SMTP_CLIENT_REPLY_OK, 550, "5.1.1",
         "5.1.1 <a@b>: no such user", 1},
        {"451 4.7.1 Greylisted\r\n", SMTP_CLIENT_REPLY_OK, 451, "4.7.1", "4.7.1 Greylisted", 1},
        {"550 4.7.1 wrong class\r\n", SMTP_CLIENT_REPLY_OK, 550, "", "4.7.1 wrong class", 1},
        {"250 2.0.0\r\n", SMTP_CLIENT_REPLY_OK, 250, "2.0.0", "2.0.0", 1},
        {"250 2.0.0x\r\n", SMTP_CLIENT_REPLY_OK, 250, "", "2.0.0x", 1},
        {"250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", SMTP_CLIENT_REPLY_OK, 250, "",
         "mx.example.org\nPIPELINING\nSIZE 1000", 3},
        {"250-first\r\n250-\r\n250 last\r\n", SMTP_CLIENT_REPLY_OK, 250, "", "first\n\nlast", 3},
        {"550-5.1.1 line one\r\n550 5.1.1 line two\r\n", SMTP_CLIENT_REPLY_OK, 550, "5.1.1",
         "5.1.1 line one\n5.1.1 line two", 2},
        {"250 tab\there\r\n", SMTP_CLIENT_REPLY_OK, 250, "", "tab here", 1},
        {"250 bare\rcr\r\n", SMTP_CLIENT_REPLY_OK, 250, "", "bare cr", 1},
        {"250 a\r\r\n", SMTP_CLIENT_REPLY_OK, 250, "", "a ", 1},
        {"354 go\r\n", SMTP_CLIENT_REPLY_OK, 354, "", "go", 1},
        {"250-partial\r\n250 mo", SMTP_CLIENT_REPLY_NEED_MORE, 0, NULL, NULL, 0},
        {"25", SMTP_CLIENT_REPLY_NEED_MORE, 0, NULL, NULL, 0},
        {"", SMTP_CLIENT_REPLY_NEED_MORE, 0, NULL, NULL, 0},
        {"hello\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
        {"150 too low\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
        {"650 too high\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
        {"25x ok\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
        {"250_ok\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
        {"250-a\r\n251 b\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
        {"250-a\r\n\r\n", SMTP_CLIENT_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0},
};

/* Parse in with a cut at split (and single bytes when step is 1). */
static enum smtp_client_reply_status parse_split(struct smtp_client_reply_parser *p, const char *in,
                                                 size_t len, size_t split, size_t step,
                                                 size_t *total_r)
{
	enum smtp_client_reply_status st = SMTP_CLIENT_REPLY_NEED_MORE;
	size_t off = 0, used;

	*total_r = 0;
	while (off < len) {
		size_t n = off < split ? split - off : len - off;
		if (n > step)
			n = step;
		st = smtp_client_reply_parse(p, (const uint8_t *)in + off, n, &used);
		*total_r += used;
		if (st != SMTP_CLIENT_REPLY_NEED_MORE)
			return st;
		off += n;
	}
	return st;
}

UNIT_TEST(smtp_client_reply_table_every_split)
{
	size_t i, split, step;

	for (i = 0; i < ARRAY_SIZE(reply_cases); i++) {
		const struct reply_case *t = &reply_cases[i];
		size_t len = strlen(t->in);
		for (step = 1; step <= len + 1; step += (step == 1 && len > 0 ? len : 1)) {
			for (split = 0; split <= len; split++) {
				struct smtp_client_reply_parser p;
				size_t total;
				enum smtp_client_reply_status st;
				smtp_client_reply_init(&p);
				st = parse_split(&p, t->in, len, split, step, &total);
				CHECK_MSG(st == t->st, "case %zu split %zu step %zu: %s", i, split,
				          step, smtp_client_reply_status_name(st));
				if (st != SMTP_CLIENT_REPLY_OK)
					continue;
				CHECK_INT(total, len);
				CHECK_INT(p.reply.code, t->code);
				CHECK_STR(p.reply.esc, t->esc);
				CHECK_STR(p.reply.text, t->text);
				CHECK_INT(p.reply.nlines, t->nlines);
				CHECK_INT(p.reply.textlen, strlen(t->text));
				CHECK(!p.reply.truncated);
			}
		}
	}
}

UNIT_TEST(smtp_client_reply_sequence_and_bounds)
{
	struct smtp_client_reply_parser p;
	static const char two[] = "250 one\r\n354 two\r\n";
	size_t used;
	char *big;

	/* two replies in one buffer: one at a time */
	smtp_client_reply_init(&p);
	CHECK(smtp_client_reply_parse(&p, (const uint8_t *)two, strlen(two), &used) ==
	      SMTP_CLIENT_REPLY_OK);
	CHECK_INT(used, 9);
	CHECK_INT(p.reply.code, 250);
	CHECK(smtp_client_reply_parse(&p, (const uint8_t *)two + 9, strlen(two) - 9, &used) ==
	      SMTP_CLIENT_REPLY_OK);
	CHECK_INT(p.reply.code, 354);
	CHECK_STR(p.reply.text, "two");
	/* errors are sticky */
	CHECK(smtp_client_reply_parse(&p, (const uint8_t *)"xx", 2, &used) ==
	      SMTP_CLIENT_REPLY_ERR_SYNTAX);
	CHECK(smtp_client_reply_parse(&p, (const uint8_t *)"250 ok\r\n", 8, &used) ==
	      SMTP_CLIENT_REPLY_ERR_SYNTAX);

	/* a line over the bound */
	big = xmalloc(SMTP_CLIENT_LINE_MAX + 16);
	memcpy(big, "250 ", 4);
	memset(big + 4, 'a', SMTP_CLIENT_LINE_MAX + 8);
	smtp_client_reply_init(&p);
	CHECK(smtp_client_reply_parse(&p, (const uint8_t *)big, SMTP_CLIENT_LINE_MAX + 12, &used) ==
	      SMTP_CLIENT_REPLY_ERR_TOO_LONG);
	CHECK_INT(used, SMTP_CLIENT_LINE_MAX);
	CHECK(smtp_client_reply_parse(&p, (const uint8_t *)"250 ok\r\n", 8, &used) ==
	      SMTP_CLIENT_REPLY_ERR_TOO_LONG);
	free(big);

	/* too many lines; text beyond the bound is dropped, not an error */
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < SMTP_CLIENT_REPLY_LINES; i++)
		buf_puts(&b, "250-0123456789012345678901234567890123456789\r\n");
	buf_puts(&b, "250 end\r\n");
	smtp_client_reply_init(&p);
	CHECK(smtp_client_reply_parse(&p, buf_ptr(&b), buf_len(&b), &used) ==
	      SMTP_CLIENT_REPLY_ERR_TOO_LONG);
	buf_reset(&b);
	for (int i = 0; i < 120; i++)
		buf_puts(&b, "250-0123456789012345678901234567890123456789\r\n");
	buf_puts(&b, "250 end\r\n");
	smtp_client_reply_init(&p);
	CHECK(smtp_client_reply_parse(&p, buf_ptr(&b), buf_len(&b), &used) == SMTP_CLIENT_REPLY_OK);
	CHECK(p.reply.truncated);
	CHECK_INT(p.reply.textlen, SMTP_CLIENT_TEXT_MAX);
	CHECK_INT(strlen(p.reply.text), SMTP_CLIENT_TEXT_MAX);
	CHECK_INT(p.reply.nlines, 121);
	buf_free(&b);
}

/* --- EHLO ----------------------------------------------------------------------------- */

static void ehlo_of(const char *in, struct smtp_client_ext *ext)
{
	struct smtp_client_reply_parser p;
	size_t used;

	smtp_client_reply_init(&p);
	smtp_client_reply_parse(&p, (const uint8_t *)in, strlen(in), &used);
	smtp_client_ehlo_parse(&p.reply, ext);
}

UNIT_TEST(smtp_client_ehlo_extensions)
{
	struct smtp_client_ext e;

	ehlo_of("250-mx.example.org Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
	        "250-8BITMIME\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n"
	        "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n250 X-UNKNOWN foo\r\n",
	        &e);
	CHECK(e.pipelining && e.size && e.eightbitmime && e.smtputf8 && e.starttls &&
	      e.enhancedstatuscodes && e.dsn && e.chunking);
	CHECK_INT(e.size_max, 10240000);
	CHECK_INT(e.auth, SMTP_CLIENT_AUTH_PLAIN | SMTP_CLIENT_AUTH_LOGIN);

	ehlo_of("250-mx\r\n250-pipelining\r\n250-size\r\n250 auth=login\r\n", &e);
	CHECK(e.pipelining && e.size && !e.starttls && !e.dsn);
	CHECK_INT(e.size_max, 0);
	CHECK_INT(e.auth, SMTP_CLIENT_AUTH_LOGIN);

	/* the greeting line is not an extension; neither is a keyword prefix */
	ehlo_of("250-PIPELINING greets\r\n250-STARTTLSX\r\n250-SIZE 12x\r\n250 AUTH CRAM-MD5\r\n",
	        &e);
	CHECK(!e.pipelining && !e.starttls && e.size);
	CHECK_INT(e.size_max, 0);
	CHECK_INT(e.auth, 0);

	ehlo_of("250 mx.example.org\r\n", &e);
	CHECK(!e.pipelining && !e.size && !e.starttls && e.auth == 0);
	ehlo_of("250-mx\r\n250 SIZE 99999999999999999999999\r\n", &e);
	CHECK(e.size && e.size_max == 0);
}

/* --- transcripts ------------------------------------------------------------------------- */

struct fake {
	struct smtp_client *c;
	const struct smtp_client_msg *const *msgs;
	size_t nsent, ndone;
	const struct smtp_client_msg *body_msg;
	size_t body_off, body_chunk;
	int body_again; /* AGAIN answers left before the next piece */
	bool body_error_at_end;
	int starttls_calls, ready_calls;
	bool closed;
	char *closed_reason;
	struct buf results; /* "D250/2.0.0 P550/5.1.1 | ..." per message */
	struct buf texts;   /* every result text, '|' separated */
	bool send_in_done;  /* send the next message from msg_done */
};

static enum smtp_client_body fake_body(void *arg, const struct smtp_client_msg *msg,
                                       const uint8_t **data_r, size_t *len_r)
{
	struct fake *f = arg;
	const char *body = msg->user;
	size_t len = strlen(body), n;

	if (f->body_msg != msg) {
		f->body_msg = msg;
		f->body_off = 0;
	}
	if (f->body_again > 0) {
		f->body_again--;
		return SMTP_CLIENT_BODY_AGAIN;
	}
	if (f->body_off >= len)
		return f->body_error_at_end ? SMTP_CLIENT_BODY_ERROR : SMTP_CLIENT_BODY_END;
	n = len - f->body_off < f->body_chunk ? len - f->body_off : f->body_chunk;
	*data_r = (const uint8_t *)body + f->body_off;
	*len_r = n;
	f->body_off += n;
	return SMTP_CLIENT_BODY_DATA;
}

static void fake_starttls(void *arg)
{
	struct fake *f = arg;
	f->starttls_calls++;
}

static void fake_ready(void *arg)
{
	struct fake *f = arg;
	f->ready_calls++;
}

static void fake_done(void *arg, const struct smtp_client_msg *msg,
                      const struct smtp_client_result *res, size_t n)
{
	struct fake *f = arg;
	static const char letters[] = {'D', 'T', 'P'};
	static const char *const stages[] = {"session", "mail", "rcpt", "data", "dot"};
	size_t i;

	(void)msg;
	if (f->ndone > 0)
		buf_puts(&f->results, " | ");
	for (i = 0; i < n; i++) {
		buf_printf(&f->results, "%s%c%d", i ? " " : "", letters[res[i].outcome],
		           res[i].code);
		if (res[i].esc[0] != '\0')
			buf_printf(&f->results, "/%s", res[i].esc);
		buf_printf(&f->results, "@%s", stages[res[i].stage]);
		buf_printf(&f->texts, "%s|", res[i].text);
	}
	f->ndone++;
	if (f->send_in_done && f->msgs[f->nsent] != NULL) {
		const char *err = NULL;
		if (smtp_client_send(f->c, f->msgs[f->nsent], &err) == 0)
			f->nsent++;
	}
}

static void fake_closed(void *arg, const char *reason)
{
	struct fake *f = arg;
	f->closed = true;
	free(f->closed_reason);
	f->closed_reason = reason ? xstrdup(reason) : NULL;
}

static const struct smtp_client_ops fake_ops = {
        .body = fake_body,
        .starttls = fake_starttls,
        .ready = fake_ready,
        .msg_done = fake_done,
        .closed = fake_closed,
};

struct transcript {
	const char *name;
	struct smtp_client_config cfg;
	const struct smtp_client_msg *msgs[4]; /* NULL-terminated; sent by "!send" */
	bool send_in_done;
	size_t body_chunk; /* 0: 7 */
	int body_again;
	bool body_error;
	const char *steps[48];
	const char *results; /* expected, as fake_done writes them */
	const char *texts;   /* expected result texts, '|'-terminated, or NULL */
	const char *closed;  /* NULL: must not be closed; "": clean; else reason prefix */
	bool whole_only;     /* feed only whole chunks (a split changes the event order) */
};

#define CFG(...)                                                                                   \
	{                                                                                          \
		.helo_name = "client.example", __VA_ARGS__                                         \
	}

static const struct smtp_client_rcpt r_ab[] = {{.addr = "a@example.org"},
                                               {.addr = "b@example.org"}};
static const struct smtp_client_rcpt r_abc[] = {
        {.addr = "a@example.org",
         .notify = SMTP_CLIENT_NOTIFY_FAILURE | SMTP_CLIENT_NOTIFY_DELAY,
         .orcpt = "rfc822;A+x=y@example.org"},
        {.addr = "b@example.org", .notify = SMTP_CLIENT_NOTIFY_NEVER},
        {.addr = "c@example.org"},
};
static const struct smtp_client_rcpt r_a[] = {{.addr = "a@example.org"}};

static const struct smtp_client_msg m_plain = {.from = "sender@example.com",
                                               .rcpts = r_ab,
                                               .nrcpts = 2,
                                               .size = 100,
                                               .user = "Subject: x\r\n\r\n.hello\r\n..two\nlast"};
static const struct smtp_client_msg m_full = {.from = "sender@example.com",
                                              .rcpts = r_abc,
                                              .nrcpts = 3,
                                              .size = 1234,
                                              .body_8bit = true,
                                              .smtputf8 = true,
                                              .ret = SMTP_CLIENT_RET_HDRS,
                                              .envid = "id+1=2",
                                              .user = "Subject: y\r\n\r\nbody\r\n"};
static const struct smtp_client_msg m_one = {.from = "sender@example.com",
                                             .rcpts = r_a,
                                             .nrcpts = 1,
                                             .user = "Subject: one\r\n\r\n.\r\n"};
static const struct smtp_client_msg m_null = {
        .from = "", .rcpts = r_a, .nrcpts = 1, .user = "Subject: bounce\r\n\r\nx"};
static const struct smtp_client_msg m_big = {
        .from = "sender@example.com", .rcpts = r_ab, .nrcpts = 2, .size = 5000, .user = "x"};
static const struct smtp_client_msg m_utf8 = {
        .from = "s\xc3\xa9@example.com", .rcpts = r_a, .nrcpts = 1, .smtputf8 = true, .user = "x"};

#define GREET      "S:220 mx.example.org ESMTP\r\n"
#define EHLO       "C:EHLO client.example\r\n"
#define EHLO_PLAIN "S:250-mx.example.org\r\n250 HELP\r\n"
#define EHLO_ALL                                                                                   \
	"S:250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"             \
	"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250 CHUNKING\r\n"
#define BODY_PLAIN "C:Subject: x\r\n\r\n..hello\r\n...two\r\nlast\r\n.\r\n"
#define QUIT       "C:QUIT\r\n", "S:221 2.0.0 Bye\r\n"

static const struct transcript transcripts[] = {
        {
                .name = "plain, no extensions, one recipient refused",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps = {"!send", GREET, EHLO, EHLO_PLAIN, "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<b@example.org>\r\n",
                          "S:550-5.1.1 <b@example.org>: no such user\r\n550 5.1.1 try another\r\n",
                          "C:DATA\r\n", "S:354 go ahead\r\n", BODY_PLAIN,
                          "S:250 2.0.0 queued as X\r\n", "!quit", QUIT},
                .results = "D250/2.0.0@dot P550/5.1.1@rcpt",
                .texts =
                        "2.0.0 queued as X|5.1.1 <b@example.org>: no such user\n5.1.1 try another|",
                .closed = "",
        },
        {
                .name = "pipelining with every parameter, per-recipient 2xx/4xx/5xx",
                .cfg = CFG(),
                .msgs = {&m_full},
                .steps = {GREET, EHLO, EHLO_ALL, "!send",
                          "C:MAIL FROM:<sender@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8 "
                          "RET=HDRS "
                          "ENVID=id+2B1+3D2\r\n"
                          "RCPT TO:<a@example.org> NOTIFY=FAILURE,DELAY "
                          "ORCPT=rfc822;A+2Bx+3Dy@example.org\r\n"
                          "RCPT TO:<b@example.org> NOTIFY=NEVER\r\n"
                          "RCPT TO:<c@example.org>\r\n",
                          "S:250 2.1.0 ok\r\n250 2.1.5 ok\r\n451 4.2.0 mailbox busy\r\n550 5.1.1 "
                          "unknown\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:Subject: y\r\n\r\nbody\r\n.\r\n",
                          "S:250 2.0.0 ok\r\n", "!quit", QUIT},
                .results = "D250/2.0.0@dot T451/4.2.0@rcpt P550/5.1.1@rcpt",
                .closed = "",
        },
        {
                .name = "replies to a pipelined group arrive one by one",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps = {GREET, EHLO, "S:250-mx\r\n250 PIPELINING\r\n", "!send",
                          "C:MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.org>\r\n"
                          "RCPT TO:<b@example.org>\r\n",
                          "S:250 ok\r\n", "C:", "S:250 ok\r\n", "C:", "S:250 ok\r\n", "C:DATA\r\n",
                          "S:354 go\r\n", BODY_PLAIN, "S:250 ok\r\n", "C:"},
                .results = "D250@dot D250@dot",
                .closed = NULL,
        },
        {
                .name = "no pipelining when configured off",
                .cfg = CFG(.no_pipelining = true),
                .msgs = {&m_one},
                .steps = {GREET, EHLO, "S:250-mx\r\n250 PIPELINING\r\n", "!send",
                          "C:MAIL FROM:<sender@example.com>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n", "C:DATA\r\n",
                          "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n.\r\n", "S:250 ok\r\n"},
                .results = "D250@dot",
        },
        {
                .name = "STARTTLS required but not offered: temporary failure",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_REQUIRED),
                .msgs = {&m_plain},
                .steps = {"!send", GREET, EHLO, EHLO_ALL, QUIT},
                .results = "T0@session T0@session",
                .texts = "STARTTLS is required but the server does not offer it|"
                         "STARTTLS is required but the server does not offer it|",
                .closed = "STARTTLS is required",
        },
        {
                .name = "STARTTLS required, refused by the server",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_REQUIRED),
                .msgs = {&m_plain},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 STARTTLS\r\n", "C:STARTTLS\r\n",
                          "S:454 4.7.0 TLS not available\r\n", QUIT},
                .results = "T454/4.7.0@session T454/4.7.0@session",
                .closed = "454 4.7.0 TLS not available",
        },
        {
                .name = "STARTTLS opportunistic, refused: goes on in plain text",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 STARTTLS\r\n", "C:STARTTLS\r\n",
                          "S:454 4.7.0 not now\r\n", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n.\r\n",
                          "S:250 ok\r\n"},
                .results = "D250@dot",
        },
        {
                .name = "STARTTLS opportunistic, not offered: plain text",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, EHLO_PLAIN, "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:550 5.7.1 go away\r\n", "C:RSET\r\n", "S:250 ok\r\n"},
                .results = "P550/5.7.1@mail",
        },
        {
                .name = "STARTTLS, handshake, EHLO again, AUTH PLAIN, delivery",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_REQUIRED, .auth_user = "user",
                           .auth_pass = "secret"),
                .msgs = {&m_one},
                .steps = {"!send",
                          GREET,
                          EHLO,
                          "S:250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", /* AUTH before TLS is
                                                                               ignored */
                          "C:STARTTLS\r\n",
                          "S:220 2.0.0 ready\r\n",
                          "C:",
                          "!tls",
                          EHLO,
                          "S:250-mx\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n",
                          "C:AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
                          "S:235 2.7.0 ok\r\n",
                          "C:MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.org>\r\n",
                          "S:250 ok\r\n250 ok\r\n",
                          "C:DATA\r\n",
                          "S:354 go\r\n",
                          "C:Subject: one\r\n\r\n..\r\n.\r\n",
                          "S:250 ok\r\n",
                          "!quit",
                          QUIT},
                .results = "D250@dot",
                .closed = "",
        },
        {
                .name = "implicit TLS, AUTH LOGIN",
                .cfg = CFG(.tls_active = true, .auth_user = "user", .auth_pass = "secret"),
                .msgs = {&m_one},
                .steps = {GREET, EHLO, "S:250-mx\r\n250 AUTH LOGIN\r\n", "C:AUTH LOGIN\r\n",
                          "S:334 VXNlcm5hbWU6\r\n", "C:dXNlcg==\r\n", "S:334 UGFzc3dvcmQ6\r\n",
                          "C:c2VjcmV0\r\n", "S:235 2.7.0 ok\r\n", "C:", "!send",
                          "C:MAIL FROM:<sender@example.com>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n", "C:DATA\r\n",
                          "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n.\r\n", "S:250 ok\r\n"},
                .results = "D250@dot",
        },
        {
                .name = "AUTH refused: temporary (soft bounce)",
                .cfg = CFG(.tls_active = true, .auth_user = "user", .auth_pass = "wrong"),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 AUTH PLAIN\r\n",
                          "C:AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n",
                          "S:535 5.7.8 authentication failed\r\n", QUIT},
                .results = "T535/5.7.8@session",
                .closed = "535 5.7.8",
        },
        {
                .name = "AUTH configured without TLS: not sent",
                .cfg = CFG(.auth_user = "user", .auth_pass = "secret"),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 AUTH PLAIN\r\n", QUIT},
                .results = "T0@session",
                .closed = "AUTH is configured but TLS is not active",
        },
        {
                .name = "AUTH allowed in plain text, but no usable mechanism",
                .cfg = CFG(.auth_user = "user", .auth_pass = "secret", .auth_plaintext = true),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 AUTH CRAM-MD5\r\n", QUIT},
                .results = "T0@session",
                .closed = "AUTH is configured but the server offers neither",
        },
        {
                .name = "EHLO refused: HELO, no extensions used",
                .cfg = CFG(),
                .msgs = {&m_full},
                .steps = {GREET, EHLO, "S:502 5.5.1 what\r\n", "C:HELO client.example\r\n",
                          "S:250 mx\r\n", "C:", "!send", "C:", "!quit", QUIT},
                .results = "P0/5.6.7@mail P0/5.6.7@mail P0/5.6.7@mail", /* SMTPUTF8 needed */
                .closed = "",
        },
        {
                .name = "EHLO refused, HELO works: plain delivery",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps = {"!send", GREET, EHLO, "S:500 unknown command\r\n",
                          "C:HELO client.example\r\n", "S:250 mx\r\n",
                          "C:MAIL FROM:<sender@example.com>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<b@example.org>\r\n", "S:250 ok\r\n", "C:DATA\r\n",
                          "S:354 go\r\n", BODY_PLAIN, "S:250 ok\r\n"},
                .results = "D250@dot D250@dot",
        },
        {
                .name = "EHLO 4xx: temporary",
                .cfg = CFG(),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:451 try later\r\n", QUIT},
                .results = "T451@session",
                .closed = "451 try later",
        },
        {
                .name = "greeting 554: temporary, QUIT",
                .cfg = CFG(),
                .msgs = {&m_one},
                .steps = {"!send", "S:554 5.7.1 no service for you\r\n", QUIT},
                .results = "T554/5.7.1@session",
                .closed = "554 5.7.1 no service",
        },
        {
                .name = "MAIL 4xx, RSET, then the next message on the same connection",
                .cfg = CFG(),
                .msgs = {&m_one, &m_plain},
                .send_in_done = true,
                .steps = {"!send",
                          GREET,
                          EHLO,
                          EHLO_PLAIN,
                          "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:451 4.3.0 try later\r\n",
                          "C:RSET\r\n",
                          "S:250 ok\r\n",
                          "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n",
                          "C:RCPT TO:<a@example.org>\r\n",
                          "S:250 ok\r\n",
                          "C:RCPT TO:<b@example.org>\r\n",
                          "S:250 ok\r\n",
                          "C:DATA\r\n",
                          "S:354 go\r\n",
                          BODY_PLAIN,
                          "S:250 ok\r\n",
                          "!quit",
                          QUIT},
                .results = "T451/4.3.0@mail | D250@dot D250@dot",
                .closed = "",
        },
        {
                .name = "pipelined MAIL refused: RCPT replies consumed, all fail with MAIL's reply",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps =
                        {GREET, EHLO, "S:250-mx\r\n250 PIPELINING\r\n", "!send",
                         "C:MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.org>\r\n"
                         "RCPT TO:<b@example.org>\r\n",
                         "S:553 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n",
                         "C:RSET\r\n", "S:250 ok\r\n"},
                .results = "P553/5.1.8@mail P553/5.1.8@mail",
        },
        {
                .name = "every recipient refused: no DATA, RSET",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps = {GREET, EHLO, "S:250-mx\r\n250 PIPELINING\r\n", "!send",
                          "C:MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.org>\r\n"
                          "RCPT TO:<b@example.org>\r\n",
                          "S:250 ok\r\n550 5.1.1 no\r\n452 4.5.3 too many recipients\r\n",
                          "C:RSET\r\n", "S:250 ok\r\n"},
                .results = "P550/5.1.1@rcpt T452/4.5.3@rcpt",
        },
        {
                .name = "DATA refused",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<b@example.org>\r\n", "S:550 no\r\n", "C:DATA\r\n",
                          "S:554 5.5.1 no valid recipients\r\n", "C:RSET\r\n", "S:250 ok\r\n"},
                .results = "P554/5.5.1@data P550@rcpt",
        },
        {
                .name = "final reply 452: accepted recipients fail temporarily",
                .cfg = CFG(),
                .msgs = {&m_one},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n.\r\n",
                          "S:452-4.3.1 insufficient\r\n452 4.3.1 system storage\r\n", "!quit",
                          QUIT},
                .results = "T452/4.3.1@dot",
                .closed = "",
        },
        {
                .name = "final reply 554: permanent",
                .cfg = CFG(),
                .msgs = {&m_one},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n.\r\n",
                          "S:554 5.7.1 spam\r\n"},
                .results = "P554/5.7.1@dot",
        },
        {
                .name = "421 in the middle: temporary, closed without QUIT",
                .cfg = CFG(),
                .msgs = {&m_plain},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n",
                          "S:421 4.4.2 mx closing connection\r\n", "C:"},
                .results = "T421/4.4.2@rcpt T421/4.4.2@rcpt",
                .closed = "421 4.4.2 mx closing",
        },
        {
                .name = "malformed reply: temporary, closed",
                .cfg = CFG(),
                .msgs = {&m_one},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:2x0 what\r\n", "C:"},
                .results = "T0@mail",
                .closed = "malformed reply",
        },
        {
                .name = "null sender, body without final line end",
                .cfg = CFG(),
                .msgs = {&m_null},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<>\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n", "C:DATA\r\n",
                          "S:354 go\r\n", "C:Subject: bounce\r\n\r\nx\r\n.\r\n", "S:250 ok\r\n"},
                .results = "D250@dot",
        },
        {
                .name = "message over the server's SIZE: permanent, nothing sent",
                .cfg = CFG(),
                .msgs = {&m_big},
                .steps = {GREET, EHLO, "S:250-mx\r\n250 SIZE 4000\r\n", "!send", "C:", "!quit",
                          QUIT},
                .results = "P0/5.3.4@mail P0/5.3.4@mail",
                .closed = "",
        },
        {
                .name = "SMTPUTF8 offered: sent with the parameter",
                .cfg = CFG(),
                .msgs = {&m_utf8},
                .steps = {GREET, EHLO, "S:250-mx\r\n250 SMTPUTF8\r\n", "!send",
                          "C:MAIL FROM:<s\xc3\xa9@example.com> SMTPUTF8\r\n", "S:250 ok\r\n",
                          "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n", "C:DATA\r\n",
                          "S:354 go\r\n", "C:x\r\n.\r\n", "S:250 ok\r\n"},
                .results = "D250@dot",
        },
        {
                .name = "body not ready yet: AGAIN, then pump",
                .cfg = CFG(),
                .msgs = {&m_one},
                .body_again = 2,
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:", "!pump", "C:", "!pump",
                          "C:Subject: one\r\n\r\n..\r\n.\r\n", "S:250 ok\r\n"},
                .results = "D250@dot",
        },
        {
                .name = "body unreadable: temporary, dropped without the dot",
                .cfg = CFG(),
                .msgs = {&m_one},
                .body_error = true,
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n"},
                .results = "T0@data",
                .closed = "local error",
        },
        {
                .name = "connection lost while waiting for the final reply",
                .cfg = CFG(),
                .msgs = {&m_one},
                .steps = {GREET, EHLO, EHLO_PLAIN, "!send", "C:MAIL FROM:<sender@example.com>\r\n",
                          "S:250 ok\r\n", "C:RCPT TO:<a@example.org>\r\n", "S:250 ok\r\n",
                          "C:DATA\r\n", "S:354 go\r\n", "C:Subject: one\r\n\r\n..\r\n.\r\n",
                          "!abort"},
                .results = "T0@dot",
                .closed = NULL,
        },
        {
                .name = "STARTTLS reply followed by injected data",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_REQUIRED),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 STARTTLS\r\n", "C:STARTTLS\r\n",
                          "S:220 go\r\n250 injected\r\n", "C:"},
                .results = "T0@session",
                .closed = "server sent data",
                .whole_only = true,
        },
        {
                .name = "TLS handshake fails",
                .cfg = CFG(.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC),
                .msgs = {&m_one},
                .steps = {"!send", GREET, EHLO, "S:250-mx\r\n250 STARTTLS\r\n", "C:STARTTLS\r\n",
                          "S:220 go\r\n", "!tlsfail", "C:"},
                .results = "T0@session",
                .closed = "TLS handshake failed",
        },
        {
                .name = "reply while idle: closed",
                .cfg = CFG(),
                .msgs = {NULL},
                .steps = {GREET, EHLO, EHLO_PLAIN, "S:250 surprise\r\n", "C:"},
                .results = "",
                .closed = "unexpected reply",
        },
        {
                .name = "quit before the session is up: QUIT once it is",
                .cfg = CFG(),
                .msgs = {NULL},
                .steps = {"!quit", GREET, EHLO, EHLO_PLAIN, QUIT},
                .results = "",
                .closed = "",
        },
};

static void check_out(struct fake *f, const char *want, const char *name, size_t split)
{
	struct buf *out = smtp_client_output(f->c);
	size_t n = strlen(want);

	if (buf_len(out) != n || (n > 0 && memcmp(buf_ptr(out), want, n) != 0)) {
		unit_fail(__FILE__, __LINE__, "%s (split %zu): client sent \"%.*s\", want \"%s\"",
		          name, split, (int)buf_len(out), (const char *)buf_ptr(out), want);
	}
	buf_reset(out);
}

/* Run one transcript; split 0: whole chunks, SIZE_MAX: bytes, else one cut. */
static void run_transcript(const struct transcript *t, size_t split)
{
	struct fake f = {0};
	const char *err = NULL;
	size_t i;

	buf_init(&f.results, 0);
	buf_init(&f.texts, 0);
	f.msgs = t->msgs;
	f.body_chunk = t->body_chunk ? t->body_chunk : 7;
	f.body_again = t->body_again;
	f.body_error_at_end = t->body_error;
	f.send_in_done = t->send_in_done;
	f.c = smtp_client_new(&t->cfg, &fake_ops, &f, &err);
	if (f.c == NULL) {
		unit_fail(__FILE__, __LINE__, "%s: new: %s", t->name, err);
		goto done;
	}
	for (i = 0; i < ARRAY_SIZE(t->steps) && t->steps[i] != NULL && !unit_failed(); i++) {
		const char *s = t->steps[i];
		if (s[0] == 'S' && s[1] == ':') {
			const char *d = s + 2;
			size_t len = strlen(d), off = 0;
			while (off < len) {
				size_t n = len - off;
				if (split == SIZE_MAX)
					n = 1;
				else if (split > 0 && off < split && split < len)
					n = split - off;
				smtp_client_input(f.c, d + off, n);
				off += n;
			}
		} else if (s[0] == 'C' && s[1] == ':') {
			check_out(&f, s + 2, t->name, split);
		} else if (strcmp(s, "!send") == 0) {
			if (smtp_client_send(f.c, t->msgs[f.nsent], &err) < 0)
				unit_fail(__FILE__, __LINE__, "%s: send: %s", t->name, err);
			f.nsent++;
		} else if (strcmp(s, "!tls") == 0) {
			CHECK_INT(f.starttls_calls, 1);
			smtp_client_tls_done(f.c, true);
		} else if (strcmp(s, "!tlsfail") == 0) {
			smtp_client_tls_done(f.c, false);
		} else if (strcmp(s, "!quit") == 0) {
			smtp_client_quit(f.c);
		} else if (strcmp(s, "!pump") == 0) {
			smtp_client_pump(f.c);
		} else if (strcmp(s, "!abort") == 0) {
			smtp_client_abort(f.c, "connection lost");
		} else {
			unit_fail(__FILE__, __LINE__, "bad step %s", s);
		}
	}
	if (unit_failed())
		goto done;
	check_out(&f, "", t->name, split);
	buf_append(&f.results, "", 1);
	CHECK_MSG(strcmp((const char *)buf_ptr(&f.results), t->results) == 0,
	          "%s (split %zu): results \"%s\", want \"%s\"", t->name, split,
	          (const char *)buf_ptr(&f.results), t->results);
	if (t->texts != NULL) {
		buf_append(&f.texts, "", 1);
		CHECK_MSG(strcmp((const char *)buf_ptr(&f.texts), t->texts) == 0,
		          "%s: texts \"%s\", want \"%s\"", t->name, (const char *)buf_ptr(&f.texts),
		          t->texts);
	}
	if (t->closed == NULL) {
		CHECK_MSG(!f.closed, "%s: closed (%s)", t->name,
		          f.closed_reason ? f.closed_reason : "");
	} else {
		CHECK_MSG(f.closed, "%s: not closed", t->name);
		CHECK(smtp_client_closed(f.c));
		if (t->closed[0] == '\0')
			CHECK_MSG(f.closed_reason == NULL, "%s: closed with %s", t->name,
			          f.closed_reason);
		else
			CHECK_MSG(f.closed_reason != NULL && strncmp(f.closed_reason, t->closed,
			                                             strlen(t->closed)) == 0,
			          "%s: closed with \"%s\", want \"%s\"", t->name,
			          f.closed_reason ? f.closed_reason : "(null)", t->closed);
	}
done:
	smtp_client_free(&f.c);
	buf_free(&f.results);
	buf_free(&f.texts);
	free(f.closed_reason);
}

UNIT_TEST(smtp_client_transcripts)
{
	size_t i, split, maxlen;

	for (i = 0; i < ARRAY_SIZE(transcripts) && !unit_failed(); i++) {
		const struct transcript *t = &transcripts[i];
		run_transcript(t, 0);
		if (t->whole_only)
			continue;
		run_transcript(t, SIZE_MAX);
		maxlen = 0;
		for (size_t k = 0; k < ARRAY_SIZE(t->steps) && t->steps[k] != NULL; k++)
			if (t->steps[k][0] == 'S' && strlen(t->steps[k]) > maxlen)
				maxlen = strlen(t->steps[k]);
		for (split = 1; split < maxlen && !unit_failed(); split++)
			run_transcript(t, split);
	}
}

UNIT_TEST(smtp_client_send_checks)
{
	struct fake f = {0};
	struct smtp_client_config cfg = CFG();
	const char *err = NULL;
	static const struct smtp_client_rcpt bad1[] = {{.addr = "a b@example.org"}};
	static const struct smtp_client_rcpt bad2[] = {{.addr = "a@example.org>\r\nRSET"}};
	static const struct smtp_client_rcpt bad3[] = {{.addr = "\xc3\xa9@example.org"}};
	static const struct smtp_client_rcpt bad4[] = {{.addr = ""}};
	static const struct smtp_client_rcpt bad5[] = {
	        {.addr = "a@example.org", .orcpt = "rfc822;x y"}};
	const struct smtp_client_msg bad[] = {
	        {.from = "s@example.com", .rcpts = r_a, .nrcpts = 0, .user = ""},
	        {.from = NULL, .rcpts = r_a, .nrcpts = 1, .user = ""},
	        {.from = "s<@example.com", .rcpts = r_a, .nrcpts = 1, .user = ""},
	        {.from = "s@example.com", .rcpts = bad1, .nrcpts = 1, .user = ""},
	        {.from = "s@example.com", .rcpts = bad2, .nrcpts = 1, .user = ""},
	        {.from = "s@example.com", .rcpts = bad3, .nrcpts = 1, .user = ""},
	        {.from = "s@example.com", .rcpts = bad4, .nrcpts = 1, .user = ""},
	        {.from = "s@example.com", .rcpts = bad5, .nrcpts = 1, .user = ""},
	        {.from = "s@example.com", .rcpts = r_a, .nrcpts = 1, .envid = "a b", .user = ""},
	};
	size_t i;

	buf_init(&f.results, 0);
	buf_init(&f.texts, 0);
	f.body_chunk = 7;
	f.c = smtp_client_new(&cfg, &fake_ops, &f, &err);
	CHECK(f.c != NULL);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		err = NULL;
		CHECK_MSG(smtp_client_send(f.c, &bad[i], &err) < 0 && err != NULL, "case %zu", i);
	}
	CHECK_INT(buf_len(smtp_client_output(f.c)), 0);
	/* one at a time */
	CHECK(smtp_client_send(f.c, &m_one, &err) == 0);
	CHECK(smtp_client_send(f.c, &m_plain, &err) < 0);
	CHECK_STR(smtp_client_state_name(f.c), "greeting");
	CHECK_INT(smtp_client_timeout(f.c), 300);
	smtp_client_input(f.c, "220 hi\r\n", 8);
	smtp_client_input(f.c, "250 hi\r\n", 8);
	CHECK_STR(smtp_client_state_name(f.c), "mail-rcpt");
	CHECK_INT(f.ready_calls, 0); /* a message was waiting */
	smtp_client_input(f.c, "250 ok\r\n250 ok\r\n", 16);
	CHECK_STR(smtp_client_state_name(f.c), "data");
	CHECK_INT(smtp_client_timeout(f.c), 120);
	/* quit while a message is in progress: after it */
	smtp_client_quit(f.c);
	CHECK(smtp_client_send(f.c, &m_plain, &err) < 0);
	buf_reset(smtp_client_output(f.c));
	smtp_client_input(f.c, "354 go\r\n", 8);
	CHECK_STR(smtp_client_state_name(f.c), "dot");
	CHECK_INT(smtp_client_timeout(f.c), 600);
	buf_reset(smtp_client_output(f.c));
	smtp_client_input(f.c, "250 ok\r\n", 8);
	CHECK_INT(f.ndone, 1);
	CHECK_INT(buf_len(smtp_client_output(f.c)), 6);
	CHECK_MEM(buf_ptr(smtp_client_output(f.c)), "QUIT\r\n", 6);
	CHECK_INT(smtp_client_timeout(f.c), 60);
	smtp_client_input(f.c, "221 bye\r\n", 9);
	CHECK(f.closed && f.closed_reason == NULL);
	CHECK_INT(smtp_client_timeout(f.c), 0);
	/* nothing after the end */
	CHECK(smtp_client_send(f.c, &m_one, &err) < 0);
	smtp_client_input(f.c, "250 ok\r\n", 8);
	smtp_client_free(&f.c);
	CHECK(f.c == NULL);
	smtp_client_free(&f.c);
	buf_free(&f.results);
	buf_free(&f.texts);
	free(f.closed_reason);

	/* bad configurations */
	struct smtp_client_config c1 = {.helo_name = NULL};
	struct smtp_client_config c2 = {.helo_name = "has space"};
	struct smtp_client_config c3 = CFG(.auth_user = "u");
	struct smtp_client_config c4 = CFG(.auth_user = "", .auth_pass = "p");
	CHECK(smtp_client_new(&c1, &fake_ops, NULL, &err) == NULL);
	CHECK(smtp_client_new(&c2, &fake_ops, NULL, &err) == NULL);
	CHECK(smtp_client_new(&c3, &fake_ops, NULL, &err) == NULL);
	CHECK(smtp_client_new(&c4, &fake_ops, NULL, &err) == NULL);
}

UNIT_TEST(smtp_client_ready_and_body_backpressure)
{
	struct fake f = {0};
	struct smtp_client_config cfg = CFG(.out_high = 4096);
	const char *err = NULL;
	struct smtp_client_msg big = {.from = "s@example.com", .rcpts = r_a, .nrcpts = 1};
	char *body = xmalloc(100001);
	size_t total = 0, i;
	struct buf *out;

	/* 100000 bytes of ". x\n" lines: every line gets stuffed and a CR */
	for (i = 0; i < 100000; i += 4)
		memcpy(body + i, ". x\n", 4);
	body[100000] = '\0';
	big.user = body;
	buf_init(&f.results, 0);
	buf_init(&f.texts, 0);
	f.body_chunk = 1000;
	f.c = smtp_client_new(&cfg, &fake_ops, &f, &err);
	CHECK(f.c != NULL);
	smtp_client_input(f.c, "220 hi\r\n250 hi\r\n", 16);
	CHECK_INT(f.ready_calls, 1);
	CHECK(smtp_client_idle(f.c));
	CHECK(!smtp_client_tls_active(f.c));
	out = smtp_client_output(f.c);
	buf_reset(out);
	CHECK(smtp_client_send(f.c, &big, &err) == 0);
	smtp_client_input(f.c, "250 ok\r\n250 ok\r\n354 go\r\n", 24);
	/* the client stops pulling the body at the high-water mark */
	CHECK_STR(smtp_client_state_name(f.c), "body");
	CHECK_INT(smtp_client_timeout(f.c), 180);
	CHECK(buf_len(out) >= 4096 && buf_len(out) < 4096 + 2 * 1000 + 16);
	while (strcmp(smtp_client_state_name(f.c), "body") == 0) {
		total += buf_len(out);
		buf_reset(out);
		smtp_client_pump(f.c);
	}
	total += buf_len(out);
	/* "MAIL..RCPT..DATA" were cleared before; 25000 lines of "..  x\r\n" */
	CHECK_INT(total,
	          strlen("MAIL FROM:<s@example.com>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n") +
	                  25000 * 6 + 3);
	smtp_client_input(f.c, "250 ok\r\n", 8);
	CHECK_INT(f.ndone, 1);
	CHECK(smtp_client_idle(f.c));
	CHECK_INT(f.ready_calls, 1); /* only when the session came up */
	smtp_client_free(&f.c);
	buf_free(&f.results);
	buf_free(&f.texts);
	free(body);
}
