/*
 * tests/unit/test_smtp_parser.c -- SMTP command lines, message content,
 * SASL helpers and the Received: header.
 *
 * Every command case is parsed whole, as each of its prefixes (which must
 * all say NEED_MORE) and with another command after it (which must not be
 * consumed).  Every content case is decoded whole, split in two at every
 * offset, and byte by byte, and must give the same output each time.
 */
#include "tests/unit/unit.h"

#include "mailbox/smtp/parser.h"
#include "mailbox/smtp/received.h"
#include "mailbox/smtp/sasl.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* --- command lines ------------------------------------------------------- */

struct cmd_case {
	const char *in; /* one line with its terminator */
	enum smtp_parse_status st;
	enum smtp_verb verb;
	const char *addr;  /* path.addr, or helo for EHLO/HELO, or mech for AUTH */
	const char *extra; /* a summary of the other fields, see summarize() */
};

/* The fields beyond verb and address, as one comparable string. */
static void summarize(const struct smtp_cmd *c, char *out, size_t outsz)
{
	snprintf(out, outsz,
	         "arg=%.*s utf8=%d pm=%d at=%zu size=%s%llu body=%d u8=%d ret=%d envid=%s auth=%s "
	         "notify=%u orcpt=%s chunk=%llu last=%d ir=%.*s",
	         (int)c->arg_len, (const char *)c->arg, c->path.utf8, c->path.postmaster,
	         c->path.at, c->has_size ? "" : "-", (unsigned long long)c->size, (int)c->body,
	         c->smtputf8, (int)c->ret, c->has_envid ? c->envid : "-",
	         c->has_auth ? c->auth : "-", c->notify, c->has_orcpt ? c->orcpt : "-",
	         (unsigned long long)c->chunk_size, c->last, c->has_ir ? (int)c->ir_len : 1,
	         c->has_ir ? (const char *)c->ir : "-");
}

#define OK     SMTP_P_OK
#define E_SYN  SMTP_P_ERR_SYNTAX
#define E_UNK  SMTP_P_ERR_UNKNOWN
#define E_ARG  SMTP_P_ERR_ARGS
#define E_ADDR SMTP_P_ERR_ADDRESS
#define E_PAR  SMTP_P_ERR_PARAM
#define E_UPAR SMTP_P_ERR_UNKNOWN_PARAM

static const struct cmd_case cmd_cases[] = {
        /* verbs, case, line ends, blanks */
        {"EHLO client.example\r\n", OK, SMTP_V_EHLO, "client.example", NULL},
        {"ehlo client.example\n", OK, SMTP_V_EHLO, "client.example", NULL},
        {"HELO [192.0.2.1]  \t\r\n", OK, SMTP_V_HELO, "[192.0.2.1]", NULL},
        {"EHLO   spaced.example\r\n", OK, SMTP_V_EHLO, "spaced.example", NULL},
        {"EHLO\r\n", E_ARG, SMTP_V_EHLO, NULL, NULL},
        {"EHLO a b\r\n", E_ARG, SMTP_V_EHLO, NULL, NULL},
        {"EHLO h\xc3\xa9.example\r\n", E_ARG, SMTP_V_EHLO, NULL, NULL},
        {"NOOP\r\n", OK, SMTP_V_NOOP, NULL, NULL},
        {"noop anything goes\r\n", OK, SMTP_V_NOOP, NULL, NULL},
        {"HELP MAIL\r\n", OK, SMTP_V_HELP, NULL, NULL},
        {"QUIT\r\n", OK, SMTP_V_QUIT, NULL, NULL},
        {"QUIT now\r\n", E_ARG, SMTP_V_QUIT, NULL, NULL},
        {"RSET\r\n", OK, SMTP_V_RSET, NULL, NULL},
        {"RSET x\r\n", E_ARG, SMTP_V_RSET, NULL, NULL},
        {"DATA\r\n", OK, SMTP_V_DATA, NULL, NULL},
        {"DATA x\r\n", E_ARG, SMTP_V_DATA, NULL, NULL},
        {"STARTTLS\r\n", OK, SMTP_V_STARTTLS, NULL, NULL},
        {"STARTTLS x\r\n", E_ARG, SMTP_V_STARTTLS, NULL, NULL},
        {"VRFY bob\r\n", OK, SMTP_V_VRFY, NULL, NULL},
        {"VRFY\r\n", E_ARG, SMTP_V_VRFY, NULL, NULL},
        {"EXPN list\r\n", OK, SMTP_V_EXPN, NULL, NULL},
        {"EXPN\r\n", E_ARG, SMTP_V_EXPN, NULL, NULL},
        {"FOO bar\r\n", E_UNK, SMTP_V_UNKNOWN, NULL, NULL},
        {"MAILX FROM:<a@b>\r\n", E_UNK, SMTP_V_UNKNOWN, NULL, NULL},
        {"\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},
        {"   \r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},
        {"NO0P\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},
        {"NOOP\x01\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},
        {"NOOP a\rb\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},
        {"NOOP \xff\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},
        {"NOOP \xc0\xaf\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},     /* overlong '/' */
        {"NOOP \xed\xa0\x80\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL}, /* surrogate */
        {"NOOP \x7f\r\n", E_SYN, SMTP_V_UNKNOWN, NULL, NULL},

        /* MAIL */
        {"MAIL FROM:<alice@example.org>\r\n", OK, SMTP_V_MAIL, "alice@example.org",
         "arg=FROM:<alice@example.org> utf8=0 pm=0 at=5 size=-0 body=0 u8=0 ret=0 envid=- "
         "auth=- notify=0 orcpt=- chunk=0 last=0 ir=-"},
        {"mail from:<>\r\n", OK, SMTP_V_MAIL, "", NULL},
        {"MAIL FROM: <alice@example.org>\r\n", OK, SMTP_V_MAIL, "alice@example.org", NULL},
        {"MAIL FROM:alice@example.org\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<alice@example.org\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<alice>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<postmaster>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b>x\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FRM:<a@b>\r\n", E_ARG, SMTP_V_MAIL, NULL, NULL},
        {"MAIL\r\n", E_ARG, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:\r\n", E_ARG, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<@relay.example,@b.example:alice@example.org>\r\n", OK, SMTP_V_MAIL,
         "alice@example.org", NULL},
        {"MAIL FROM:<@relay.example:alice@example.org>\r\n", OK, SMTP_V_MAIL, "alice@example.org",
         NULL},
        {"MAIL FROM:<@relay.example alice@example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<\"john doe\"@example.org>\r\n", OK, SMTP_V_MAIL, "\"john doe\"@example.org",
         NULL},
        {"MAIL FROM:<\"a\\\"b\"@example.org>\r\n", OK, SMTP_V_MAIL, "\"a\\\"b\"@example.org", NULL},
        {"MAIL FROM:<\"unterminated@example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a..b@example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<.a@example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a.@example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a(b)@example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@-example.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@example-.org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@example..org>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@example.org.>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@[192.0.2.1]>\r\n", OK, SMTP_V_MAIL, "a@[192.0.2.1]", NULL},
        {"MAIL FROM:<a@[192.0.2.256]>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@[192.0.2]>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@[IPv6:2001:db8::1]>\r\n", OK, SMTP_V_MAIL, "a@[IPv6:2001:db8::1]", NULL},
        {"MAIL FROM:<a@[IPv6:2001:db8::g]>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@[x-tag:stuff]>\r\n", OK, SMTP_V_MAIL, "a@[x-tag:stuff]", NULL},
        {"MAIL FROM:<a@[tag]>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@[]>\r\n", E_ADDR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<j\xc3\xb8rn@b\xc3\xa6r.example> SMTPUTF8\r\n", OK, SMTP_V_MAIL,
         "j\xc3\xb8rn@b\xc3\xa6r.example", NULL},
        {"MAIL FROM:<a@b> SIZE=12345 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1 AUTH=<>\r\n", OK,
         SMTP_V_MAIL, "a@b",
         "arg=FROM:<a@b> SIZE=12345 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1 AUTH=<> utf8=0 pm=0 "
         "at=1 size=12345 body=2 u8=0 ret=2 envid=QQ+2B1 auth=<> notify=0 orcpt=- chunk=0 "
         "last=0 ir=-"},
        {"MAIL FROM:<a@b>  size=1   body=7bit  ret=full smtputf8\r\n", OK, SMTP_V_MAIL, "a@b",
         "arg=FROM:<a@b>  size=1   body=7bit  ret=full smtputf8 utf8=0 pm=0 at=1 size=1 body=1 "
         "u8=1 ret=1 envid=- auth=- notify=0 orcpt=- chunk=0 last=0 ir=-"},
        {"MAIL FROM:<a@b> BODY=BINARYMIME\r\n", OK, SMTP_V_MAIL, "a@b", NULL},
        {"MAIL FROM:<a@b> AUTH=alice+40example.org\r\n", OK, SMTP_V_MAIL, "a@b", NULL},
        {"MAIL FROM:<a@b> SIZE=99999999999999999999\r\n", OK, SMTP_V_MAIL, "a@b",
         "arg=FROM:<a@b> SIZE=99999999999999999999 utf8=0 pm=0 at=1 size=18446744073709551615 "
         "body=0 u8=0 ret=0 envid=- auth=- notify=0 orcpt=- chunk=0 last=0 ir=-"},
        {"MAIL FROM:<a@b> SIZE=123456789012345678901\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> SIZE=12a\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> SIZE=\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> SIZE\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> SIZE=1 SIZE=2\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> BODY=9BIT\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> SMTPUTF8=yes\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> RET=ALL\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> ENVID=a+zz\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> ENVID=a=b\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> -X=1\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> X_Y=1\r\n", E_PAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> XFOO=1\r\n", E_UPAR, SMTP_V_MAIL, NULL, NULL},
        {"MAIL FROM:<a@b> NOTIFY=NEVER\r\n", E_UPAR, SMTP_V_MAIL, NULL, NULL},

        /* RCPT */
        {"RCPT TO:<bob@example.org>\r\n", OK, SMTP_V_RCPT, "bob@example.org", NULL},
        {"RCPT TO:<Postmaster>\r\n", OK, SMTP_V_RCPT, "Postmaster",
         "arg=TO:<Postmaster> utf8=0 pm=1 at=10 size=-0 body=0 u8=0 ret=0 envid=- auth=- "
         "notify=0 orcpt=- chunk=0 last=0 ir=-"},
        {"RCPT TO:<\"postmaster\">\r\n", E_ADDR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<>\r\n", E_ADDR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:bob@example.org\r\n", E_ADDR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT FROM:<bob@example.org>\r\n", E_ARG, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.org\r\n", OK,
         SMTP_V_RCPT, "bob@example.org",
         "arg=TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.org utf8=0 "
         "pm=0 at=3 size=-0 body=0 u8=0 ret=0 envid=- auth=- notify=6 "
         "orcpt=rfc822;bob+40example.org chunk=0 last=0 ir=-"},
        {"RCPT TO:<b@c> NOTIFY=never\r\n", OK, SMTP_V_RCPT, "b@c", NULL},
        {"RCPT TO:<b@c> NOTIFY=DELAY\r\n", OK, SMTP_V_RCPT, "b@c", NULL},
        {"RCPT TO:<b@c> NOTIFY=NEVER,DELAY\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> NOTIFY=SOMETIMES\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> NOTIFY=SUCCESS,\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> NOTIFY=DELAY NOTIFY=DELAY\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> ORCPT=rfc822\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> ORCPT=;b@c\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> ORCPT=rfc822;\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> ORCPT=utf-8;b\xc3\xa6r@c\r\n", OK, SMTP_V_RCPT, "b@c", NULL},
        {"RCPT TO:<b@c> ORCPT=rfc822;b\xc3\xa6r@c\r\n", E_PAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b@c> SIZE=1\r\n", E_UPAR, SMTP_V_RCPT, NULL, NULL},
        {"RCPT TO:<b\xc3\xa6r@example.org>\r\n", OK, SMTP_V_RCPT, "b\xc3\xa6r@example.org",
         "arg=TO:<b\xc3\xa6r@example.org> utf8=1 pm=0 at=4 size=-0 body=0 u8=0 ret=0 envid=- "
         "auth=- notify=0 orcpt=- chunk=0 last=0 ir=-"},

        /* BDAT */
        {"BDAT 1000\r\n", OK, SMTP_V_BDAT, NULL,
         "arg=1000 utf8=0 pm=0 at=0 size=-0 body=0 u8=0 ret=0 envid=- auth=- notify=0 orcpt=- "
         "chunk=1000 last=0 ir=-"},
        {"BDAT 0 LAST\r\n", OK, SMTP_V_BDAT, NULL,
         "arg=0 LAST utf8=0 pm=0 at=0 size=-0 body=0 u8=0 ret=0 envid=- auth=- notify=0 "
         "orcpt=- chunk=0 last=1 ir=-"},
        {"bdat 12 last\r\n", OK, SMTP_V_BDAT, NULL, NULL},
        {"BDAT\r\n", E_ARG, SMTP_V_BDAT, NULL, NULL},
        {"BDAT x\r\n", E_ARG, SMTP_V_BDAT, NULL, NULL},
        {"BDAT 12x\r\n", E_ARG, SMTP_V_BDAT, NULL, NULL},
        {"BDAT 12 FIRST\r\n", E_ARG, SMTP_V_BDAT, NULL, NULL},
        {"BDAT 12 LAST x\r\n", E_ARG, SMTP_V_BDAT, NULL, NULL},
        {"BDAT 99999999999999999999\r\n", E_ARG, SMTP_V_BDAT, NULL, NULL},

        /* AUTH */
        {"AUTH PLAIN\r\n", OK, SMTP_V_AUTH, "PLAIN", NULL},
        {"auth login dXNlcg==\r\n", OK, SMTP_V_AUTH, "LOGIN",
         "arg=login dXNlcg== utf8=0 pm=0 at=0 size=-0 body=0 u8=0 ret=0 envid=- auth=- notify=0 "
         "orcpt=- chunk=0 last=0 ir=dXNlcg=="},
        {"AUTH PLAIN =\r\n", OK, SMTP_V_AUTH, "PLAIN", NULL},
        {"AUTH\r\n", E_ARG, SMTP_V_AUTH, NULL, NULL},
        {"AUTH PL@IN\r\n", E_ARG, SMTP_V_AUTH, NULL, NULL},
        {"AUTH ABCDEFGHIJKLMNOPQRSTU\r\n", E_ARG, SMTP_V_AUTH, NULL, NULL},
        {"AUTH PLAIN a b\r\n", E_ARG, SMTP_V_AUTH, NULL, NULL},
};

static void check_cmd(const struct cmd_case *tc, size_t len, const struct smtp_cmd *cmd,
                      enum smtp_parse_status st, size_t consumed)
{
	char sum[2048];

	CHECK_MSG(st == tc->st, "%s: status %d, want %d", tc->in, st, tc->st);
	CHECK_INT(consumed, len);
	CHECK_MSG(cmd->verb == tc->verb, "%s: verb %d, want %d", tc->in, cmd->verb, tc->verb);
	if (tc->addr != NULL && st == SMTP_P_OK) {
		const char *got = cmd->verb == SMTP_V_EHLO || cmd->verb == SMTP_V_HELO ? cmd->helo
		                  : cmd->verb == SMTP_V_AUTH                           ? cmd->mech
		                                             : cmd->path.addr;
		CHECK_STR(got, tc->addr);
	}
	if (tc->extra != NULL) {
		summarize(cmd, sum, sizeof(sum));
		CHECK_STR(sum, tc->extra);
	}
}

UNIT_TEST(smtp_parser_commands)
{
	struct smtp_cmd cmd;
	enum smtp_parse_status st;
	size_t consumed;

	for (size_t i = 0; i < ARRAY_SIZE(cmd_cases); i++) {
		const struct cmd_case *tc = &cmd_cases[i];
		size_t len = strlen(tc->in);
		char *two = xasprintf("%sNOOP\r\n", tc->in);

		/* whole */
		st = smtp_parser_next((const uint8_t *)tc->in, len, SMTP_LINE_MAX, &cmd, &consumed,
		                      NULL);
		check_cmd(tc, len, &cmd, st, consumed);
		/* every prefix is incomplete */
		for (size_t k = 0; k < len && !unit_failed(); k++) {
			st = smtp_parser_next((const uint8_t *)tc->in, k, SMTP_LINE_MAX, &cmd,
			                      &consumed, NULL);
			CHECK_MSG(st == SMTP_P_NEED_MORE, "%s: prefix %zu: status %d", tc->in, k,
			          st);
		}
		/* what follows the line is left alone */
		if (!unit_failed()) {
			st = smtp_parser_next((const uint8_t *)two, strlen(two), SMTP_LINE_MAX,
			                      &cmd, &consumed, NULL);
			check_cmd(tc, len, &cmd, st, consumed);
		}
		free(two);
		if (unit_failed())
			return;
	}
}

UNIT_TEST(smtp_parser_lines)
{
	static const struct {
		const char *in;
		size_t max;
		enum smtp_parse_status st;
		size_t line_len, consumed;
	} cases[] = {
	        {"", 512, SMTP_P_NEED_MORE, 0, 0},
	        {"NOOP", 512, SMTP_P_NEED_MORE, 0, 0},
	        {"NOOP\r", 512, SMTP_P_NEED_MORE, 0, 0},
	        {"NOOP\r\n", 512, SMTP_P_OK, 4, 6},
	        {"NOOP\n", 512, SMTP_P_OK, 4, 5},
	        {"\n", 512, SMTP_P_OK, 0, 1},
	        {"\r\n", 512, SMTP_P_OK, 0, 2},
	        {"NO\rOP\n", 512, SMTP_P_OK, 5, 6},
	        {"NOOP\r\nQUIT\r\n", 512, SMTP_P_OK, 4, 6},
	        {"abcdefgh\r\n", 10, SMTP_P_OK, 8, 10}, /* exactly the bound */
	        {"abcdefghi\r\n", 10, SMTP_P_TOO_LONG, 0, 0},
	        {"abcdefghi\n", 10, SMTP_P_OK, 9, 10},
	        {"abcdefghij", 10, SMTP_P_TOO_LONG, 0, 0},
	        {"abcdefghi", 10, SMTP_P_NEED_MORE, 0, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t ll = 0, c = 0;
		enum smtp_parse_status st = smtp_parser_line(
		        (const uint8_t *)cases[i].in, strlen(cases[i].in), cases[i].max, &ll, &c);
		CHECK_MSG(st == cases[i].st, "case %zu: status %d", i, st);
		if (st == SMTP_P_OK) {
			CHECK_INT(ll, cases[i].line_len);
			CHECK_INT(c, cases[i].consumed);
		}
	}
	/* the 512-octet command line of RFC 5321 4.5.3.1.4 fits the default */
	{
		char line[600];
		size_t ll, c;

		memset(line, 'a', sizeof(line));
		memcpy(line, "NOOP ", 5);
		line[510] = '\r', line[511] = '\n';
		CHECK(smtp_parser_line((uint8_t *)line, 512, 512, &ll, &c) == SMTP_P_OK);
		CHECK_INT(ll, 510);
		line[511] = 'a';
		CHECK(smtp_parser_line((uint8_t *)line, sizeof(line), 512, &ll, &c) ==
		      SMTP_P_TOO_LONG);
	}
	{
		size_t c;

		CHECK(smtp_parser_skip_line((const uint8_t *)"xyz", 3, &c) == SMTP_P_NEED_MORE);
		CHECK_INT(c, 3);
		CHECK(smtp_parser_skip_line((const uint8_t *)"xy\nNOOP\r\n", 9, &c) == SMTP_P_OK);
		CHECK_INT(c, 3);
		CHECK(smtp_parser_skip_line((const uint8_t *)"", 0, &c) == SMTP_P_NEED_MORE);
		CHECK_INT(c, 0);
	}
	CHECK_STR(smtp_parser_verb_name(SMTP_V_STARTTLS), "STARTTLS");
	CHECK_STR(smtp_parser_verb_name(SMTP_V_UNKNOWN), "?");
}

/* Long paths: the 256-octet path bound of RFC 5321 4.5.3.1.3. */
UNIT_TEST(smtp_parser_path_bounds)
{
	char line[1200], local[300], label[80];
	struct smtp_cmd cmd;
	size_t c;

	/* <local@example.org>: 1 + n + 12 + 1 octets */
	for (size_t n = 240; n <= 244; n++) {
		memset(local, 'x', n);
		local[n] = '\0';
		snprintf(line, sizeof(line), "MAIL FROM:<%s@example.org>\r\n", local);
		enum smtp_parse_status st = smtp_parser_next((uint8_t *)line, strlen(line),
		                                             SMTP_LINE_MAX, &cmd, &c, NULL);
		CHECK_MSG(st == (n <= 242 ? SMTP_P_OK : SMTP_P_ERR_ADDRESS), "n=%zu st=%d", n, st);
		if (st == SMTP_P_OK)
			CHECK_INT(cmd.path.len, n + 12);
	}
	/* a 63-octet label is fine, 64 is not (RFC 1035 2.3.4) */
	memset(label, 'd', 64);
	label[63] = '\0';
	snprintf(line, sizeof(line), "RCPT TO:<a@%s.example>\r\n", label);
	CHECK(smtp_parser_next((uint8_t *)line, strlen(line), SMTP_LINE_MAX, &cmd, &c, NULL) ==
	      SMTP_P_OK);
	label[63] = 'd';
	label[64] = '\0';
	snprintf(line, sizeof(line), "RCPT TO:<a@%s.example>\r\n", label);
	CHECK(smtp_parser_next((uint8_t *)line, strlen(line), SMTP_LINE_MAX, &cmd, &c, NULL) ==
	      SMTP_P_ERR_ADDRESS);
	/* ENVID: 100 decoded characters at most (RFC 3461 4.4) */
	memset(local, 'e', 101);
	local[100] = '\0';
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> ENVID=%s\r\n", local);
	CHECK(smtp_parser_next((uint8_t *)line, strlen(line), SMTP_LINE_MAX, &cmd, &c, NULL) ==
	      SMTP_P_OK);
	local[100] = 'e';
	local[101] = '\0';
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> ENVID=%s\r\n", local);
	CHECK(smtp_parser_next((uint8_t *)line, strlen(line), SMTP_LINE_MAX, &cmd, &c, NULL) ==
	      SMTP_P_ERR_PARAM);
}

UNIT_TEST(smtp_parser_is_domain)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
	        {"example.org", true},     {"a", true},        {"[192.0.2.1]", true},
	        {"[IPv6:::1]", true},      {"", false},        {"exa_mple.org", false},
	        {"-a.org", false},         {"a..org", false},  {"[192.0.2.1", false},
	        {"b\xc3\xa6r.org", false}, {"a.org x", false}, {"[999.0.0.1]", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(smtp_parser_is_domain(cases[i].s, strlen(cases[i].s)) == cases[i].ok,
		          "%s", cases[i].s);
}

/* --- message content ----------------------------------------------------- */

struct sink_state {
	struct buf out;
	int calls;
	int fail_at; /* fail on this call (1-based); 0: never */
};

static int test_sink(void *ctx, const uint8_t *p, size_t n)
{
	struct sink_state *ss = ctx;

	ss->calls++;
	if (ss->fail_at != 0 && ss->calls >= ss->fail_at)
		return -1;
	ASSERT(n > 0);
	return buf_append(&ss->out, p, n);
}

struct data_case {
	enum smtp_data_mode mode;
	const char *in;
	const char *out; /* decoded content */
	int done_at;     /* DOT: bytes consumed through the end marker; -1: not ended */
	bool bare;
};

static const struct data_case data_cases[] = {
        {SMTP_DATA_DOT, "Hello\r\n.\r\n", "Hello\r\n", 10, false},
        {SMTP_DATA_DOT, ".\r\n", "", 3, false},
        {SMTP_DATA_DOT, "\r\n.\r\n", "\r\n", 5, false},
        {SMTP_DATA_DOT, "..\r\n.\r\n", ".\r\n", 7, false},
        {SMTP_DATA_DOT, ".a\r\n.\r\n", "a\r\n", 7, false},
        {SMTP_DATA_DOT, "a\r\n..b\r\n...\r\n.\r\n", "a\r\n.b\r\n..\r\n", 16, false},
        {SMTP_DATA_DOT, "a.\r\nb\r\n.\r\nQUIT\r\n", "a.\r\nb\r\n", 10, false},
        {SMTP_DATA_DOT, "Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n",
         "Subject: x\r\n\r\nbody\r\n", 23, false},
        /* bare LF: normalised, and never part of an end marker */
        {SMTP_DATA_DOT, "a\nb\n.\n", "a\r\nb\r\n.\r\n", -1, true},
        {SMTP_DATA_DOT, "a\r\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, true},
        {SMTP_DATA_DOT, "a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, true},
        {SMTP_DATA_DOT, "a\n..b\r\n.\r\n", "a\r\n.b\r\n", 10, true},
        {SMTP_DATA_DOT, ".\n", ".\r\n", -1, true},
        /* bare CR likewise */
        {SMTP_DATA_DOT, "a\rb\r\n.\r\n", "a\r\nb\r\n", 8, true},
        {SMTP_DATA_DOT, "a\r.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", 10, true},
        {SMTP_DATA_DOT, "a\r\r\n.\r\n", "a\r\n\r\n", 7, true},
        {SMTP_DATA_DOT, ".\r.\r\n", ".\r\n.\r\n", -1, true},
        {SMTP_DATA_DOT, "a\r\n.\r", "a\r\n", -1, false},
        {SMTP_DATA_DOT, "x\r\n.\r\r\n.\r\n", "x\r\n.\r\n\r\n", 10, true},
        /* 8-bit and NUL bytes pass through */
        {SMTP_DATA_DOT, "\xc3\xa6\x00\xff\r\n.\r\n", "\xc3\xa6\x00\xff\r\n", 9, false},
        /* BDAT content: no stuffing, no end marker, line ends normalised */
        {SMTP_DATA_RAW, ".\r\n..\r\n", ".\r\n..\r\n", -1, false},
        {SMTP_DATA_RAW, "a\nb\rc\r\n", "a\r\nb\r\nc\r\n", -1, true},
        {SMTP_DATA_RAW, "abc\r", "abc\r\n", -1, true}, /* finish() flushes the held CR */
};

/* Lengths: the strings above may hold NUL, so lengths are given by a
 * sentinel-free helper that knows the one such case. */
static size_t data_len(const char *s)
{
	if (s[0] == '\xc3' && s[1] == '\xa6' && s[2] == '\0')
		return strlen(s + 3) + 3;
	return strlen(s);
}

/* Decode in the given pieces; returns via *ss and the result. */
static void decode_pieces(const struct data_case *tc, const size_t *cuts, size_t ncuts,
                          struct sink_state *ss, struct smtp_data *d, int *done_at)
{
	size_t len = data_len(tc->in), pos = 0, consumed;

	smtp_parser_data_init(d, tc->mode, 0, test_sink, ss);
	*done_at = -1;
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		enum smtp_data_status st = smtp_parser_data_feed(d, (const uint8_t *)tc->in + pos,
		                                                 end - pos, &consumed);
		if (st == SMTP_D_DONE) {
			*done_at = (int)(pos + consumed);
			return;
		}
		ASSERT(consumed == end - pos);
		pos = end;
	}
	if (tc->mode == SMTP_DATA_RAW)
		smtp_parser_data_finish(d);
}

static void check_decode(const struct data_case *tc, const char *how, struct sink_state *ss,
                         const struct smtp_data *d, int done_at)
{
	size_t outlen = data_len(tc->out);

	CHECK_MSG(done_at == tc->done_at, "%s (%s): done_at %d, want %d", tc->in, how, done_at,
	          tc->done_at);
	/* an empty buffer has no storage yet: compare only what is there */
	CHECK_MSG(buf_len(&ss->out) == outlen &&
	                  (outlen == 0 || memcmp(buf_ptr(&ss->out), tc->out, outlen) == 0),
	          "%s (%s): output '%.*s'", tc->in, how, (int)buf_len(&ss->out),
	          outlen ? (const char *)buf_ptr(&ss->out) : "");
	CHECK_INT(d->size, outlen);
	CHECK_INT(d->bare_eol, tc->bare);
	CHECK(!d->oversize && !d->sink_failed);
}

UNIT_TEST(smtp_parser_data)
{
	for (size_t i = 0; i < ARRAY_SIZE(data_cases); i++) {
		const struct data_case *tc = &data_cases[i];
		size_t len = data_len(tc->in);
		struct sink_state ss = {0};
		struct smtp_data d;
		int done_at;
		size_t cuts[4096];

		buf_init(&ss.out, 0);
		decode_pieces(tc, NULL, 0, &ss, &d, &done_at);
		check_decode(tc, "whole", &ss, &d, done_at);
		for (size_t k = 1; k < len && !unit_failed(); k++) {
			buf_reset(&ss.out);
			decode_pieces(tc, &k, 1, &ss, &d, &done_at);
			check_decode(tc, "split", &ss, &d, done_at);
		}
		if (!unit_failed()) {
			for (size_t k = 0; k + 1 < len; k++)
				cuts[k] = k + 1;
			buf_reset(&ss.out);
			decode_pieces(tc, cuts, len - 1, &ss, &d, &done_at);
			check_decode(tc, "bytewise", &ss, &d, done_at);
		}
		buf_free(&ss.out);
		if (unit_failed())
			return;
	}
}

UNIT_TEST(smtp_parser_data_limits)
{
	struct sink_state ss = {0};
	struct smtp_data d;
	size_t consumed;
	const char *msg = "0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";

	/* Oversize: consumption goes on to the end marker, flagged. */
	buf_init(&ss.out, 0);
	smtp_parser_data_init(&d, SMTP_DATA_DOT, 20, test_sink, &ss);
	CHECK(smtp_parser_data_feed(&d, (const uint8_t *)msg, strlen(msg), &consumed) ==
	      SMTP_D_DONE);
	CHECK_INT(consumed, strlen(msg) - 6);
	CHECK(d.oversize);
	CHECK_INT(d.size, 24);
	CHECK(buf_len(&ss.out) <= 20);
	/* After the end, nothing more is consumed. */
	CHECK(smtp_parser_data_feed(&d, (const uint8_t *)"x", 1, &consumed) == SMTP_D_DONE);
	CHECK_INT(consumed, 0);

	/* Exactly at the bound is fine. */
	buf_reset(&ss.out);
	smtp_parser_data_init(&d, SMTP_DATA_DOT, 24, test_sink, &ss);
	CHECK(smtp_parser_data_feed(&d, (const uint8_t *)msg, strlen(msg), &consumed) ==
	      SMTP_D_DONE);
	CHECK(!d.oversize);
	CHECK_INT(buf_len(&ss.out), 24);

	/* A failing sink is called no more, the end is still found. */
	buf_reset(&ss.out);
	ss.calls = 0;
	ss.fail_at = 1;
	smtp_parser_data_init(&d, SMTP_DATA_DOT, 0, test_sink, &ss);
	for (size_t i = 0; msg[i] != '\0'; i++) {
		enum smtp_data_status st =
		        smtp_parser_data_feed(&d, (const uint8_t *)msg + i, 1, &consumed);
		if (st == SMTP_D_DONE) {
			CHECK_INT(i + 1, strlen(msg) - 6);
			break;
		}
	}
	CHECK(d.done && d.sink_failed);
	CHECK_INT(ss.calls, 1);
	buf_free(&ss.out);

	/* Well-formed content reaches the sink in one call per feed. */
	{
		struct sink_state one = {0};
		const char *body = "line one\r\nline two\r\n\r\nline four\r\n.\r\n";

		buf_init(&one.out, 0);
		smtp_parser_data_init(&d, SMTP_DATA_DOT, 0, test_sink, &one);
		CHECK(smtp_parser_data_feed(&d, (const uint8_t *)body, strlen(body), &consumed) ==
		      SMTP_D_DONE);
		CHECK_INT(one.calls, 1);
		buf_free(&one.out);
	}
}

/* --- SASL ---------------------------------------------------------------- */

UNIT_TEST(smtp_sasl_base64)
{
	static const struct {
		const char *in;
		int ok;
		const char *out;
		size_t outlen;
	} cases[] = {
	        {"", 0, "", 0},
	        {"=", 0, "", 0},
	        {"Zg==", 0, "f", 1},
	        {"Zm8=", 0, "fo", 2},
	        {"Zm9v", 0, "foo", 3},
	        {"Zm9vYmFy", 0, "foobar", 6},
	        {"AGFsaWNlAHNlY3JldA==", 0, "\0alice\0secret", 13},
	        {"Zg=", -1, NULL, 0},
	        {"Zg", -1, NULL, 0},
	        {"Z===", -1, NULL, 0},
	        {"Zh==", -1, NULL, 0}, /* non-zero pad bits */
	        {"Zm9=", -1, NULL, 0},
	        {"Zg==Zg==", -1, NULL, 0},
	        {"Zm9v YmFy", -1, NULL, 0},
	        {"Zm9*", -1, NULL, 0},
	        {"*", -1, NULL, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint8_t out[64];
		size_t n = 999;
		int r = smtp_sasl_b64_decode((const uint8_t *)cases[i].in, strlen(cases[i].in), out,
		                             sizeof(out), &n);
		CHECK_MSG(r == cases[i].ok, "%s: %d", cases[i].in, r);
		if (r == 0) {
			CHECK_INT(n, cases[i].outlen);
			CHECK_MEM(out, cases[i].out, n);
		}
	}
	/* the output bound is honoured */
	{
		uint8_t out[5];
		size_t n;
		CHECK(smtp_sasl_b64_decode((const uint8_t *)"Zm9vYmFy", 8, out, 5, &n) == -1);
		CHECK(smtp_sasl_b64_decode((const uint8_t *)"Zm9vYg==", 8, out, 5, &n) == 0);
		CHECK_INT(n, 4);
	}
}

UNIT_TEST(smtp_sasl_plain)
{
	static const struct {
		const char *msg;
		size_t len;
		int ok;
		const char *z, *c, *p;
	} cases[] = {
	        {"\0alice\0secret", 13, 0, "", "alice", "secret"},
	        {"admin\0alice\0pw", 14, 0, "admin", "alice", "pw"},
	        {"\0\0secret", 8, -1, NULL, NULL, NULL},
	        {"\0alice\0", 7, -1, NULL, NULL, NULL},
	        {"\0alice", 6, -1, NULL, NULL, NULL},
	        {"alice", 5, -1, NULL, NULL, NULL},
	        {"\0a\0b\0c", 6, -1, NULL, NULL, NULL},
	        {"", 0, -1, NULL, NULL, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint8_t msg[32];
		const char *z, *c, *p;

		memcpy(msg, cases[i].msg, cases[i].len);
		CHECK_INT(smtp_sasl_plain_split(msg, cases[i].len, &z, &c, &p), cases[i].ok);
		if (cases[i].ok == 0) {
			CHECK_STR(z, cases[i].z);
			CHECK_STR(c, cases[i].c);
			CHECK_STR(p, cases[i].p);
		}
	}
}

/* --- Received: ------------------------------------------------------------- */

UNIT_TEST(smtp_received)
{
	struct buf b;
	struct smtp_received r = {
	        .helo = "client.example",
	        .client_ip = "192.0.2.7",
	        .hostname = "mail.example.org",
	        .listener = "mx",
	        .protocol = smtp_received_protocol(true, false, true, false),
	        .tls_version = "TLSv1.3",
	        .tls_cipher = "TLS_AES_256_GCM_SHA384",
	        .id = "abc-1",
	        .rcpt = "bob@example.org",
	        .when = 1795750800, /* 2026-11-27 03:40:00 UTC */
	};

	buf_init(&b, 0);
	smtp_received_format(&b, &r);
	CHECK(buf_append(&b, "", 1) == 0);
	CHECK_STR((const char *)buf_ptr(&b),
	          "Received: from client.example ([192.0.2.7])\r\n"
	          "\tby mail.example.org (tailpost listener mx) with ESMTPS id abc-1\r\n"
	          "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
	          "\tfor <bob@example.org>;\r\n"
	          "\tFri, 27 Nov 2026 03:40:00 +0000\r\n");

	/* a bad EHLO name only appears escaped in a comment; IPv6 literal */
	buf_reset(&b);
	r.helo = "bad(name)\\";
	r.client_ip = "2001:db8::7";
	r.tls_version = NULL;
	r.rcpt = NULL;
	r.listener = NULL;
	r.protocol = smtp_received_protocol(true, true, false, true);
	smtp_received_format(&b, &r);
	CHECK(buf_append(&b, "", 1) == 0);
	CHECK_STR((const char *)buf_ptr(&b),
	          "Received: from [IPv6:2001:db8::7] (helo=bad\\(name\\)\\\\)\r\n"
	          "\tby mail.example.org (tailpost) with UTF8SMTPA id abc-1;\r\n"
	          "\tFri, 27 Nov 2026 03:40:00 +0000\r\n");

	/* no client address, no EHLO */
	buf_reset(&b);
	r.helo = NULL;
	r.client_ip = NULL;
	r.protocol = smtp_received_protocol(false, false, false, false);
	smtp_received_format(&b, &r);
	CHECK(buf_append(&b, "", 1) == 0);
	CHECK_STR((const char *)buf_ptr(&b),
	          "Received: from unknown\r\n"
	          "\tby mail.example.org (tailpost) with SMTP id abc-1;\r\n"
	          "\tFri, 27 Nov 2026 03:40:00 +0000\r\n");
	buf_free(&b);

	CHECK_STR(smtp_received_protocol(true, false, false, false), "ESMTP");
	CHECK_STR(smtp_received_protocol(true, false, false, true), "ESMTPA");
	CHECK_STR(smtp_received_protocol(true, false, true, true), "ESMTPSA");
	CHECK_STR(smtp_received_protocol(true, true, true, true), "UTF8SMTPSA");
	CHECK_STR(smtp_received_protocol(true, true, false, false), "UTF8SMTP");
	CHECK_STR(smtp_received_protocol(true, true, true, false), "UTF8SMTPS");
}
