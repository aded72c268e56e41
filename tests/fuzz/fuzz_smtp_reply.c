/*
 * tests/fuzz/fuzz_smtp_reply.c -- libFuzzer target for the outbound SMTP
 * client: its reply parser and, fed the same bytes as a server, the whole
 * client state machine.
 *
 * Input layout: byte 0 holds options (bit 0-1 TLS policy, bit 2 implicit
 * TLS, bit 3 AUTH configured, bit 4 pipelining off, bit 5 the TLS
 * handshake fails, bit 6 the body source answers AGAIN now and then, bit 7
 * the body source fails), byte 1 sets the feed size (1..64); the rest is
 * what the server sends.
 *
 * Checks besides the sanitizers: the parser gives the same replies however
 * the input is split; a reply has a code in 200..599, text no longer than
 * its bound and NUL-terminated where textlen says; every client output
 * line ends in CRLF and holds no bare CR or LF outside the body; each
 * message ends exactly once with one result per recipient; a closed client
 * stays closed.
 */
#include "mailbox/outbound/smtp_client.h"
#include "mailbox/outbound/smtp_client_ehlo.h"
#include "mailbox/outbound/smtp_client_reply.h"
#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

/* --- the parser alone ------------------------------------------------------------ */

struct summary {
	int code;
	size_t nlines, textlen;
	uint32_t hash;
};

static uint32_t fnv(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

/* Parse every reply in p with pieces of at most step bytes; returns the
 * count and fills out (up to 64) and the final status. */
static size_t parse_all(const uint8_t *p, size_t n, size_t step, struct summary *out,
                        enum smtp_client_reply_status *last)
{
	struct smtp_client_reply_parser rp;
	size_t off = 0, count = 0, used;

	smtp_client_reply_init(&rp);
	*last = SMTP_CLIENT_REPLY_NEED_MORE;
	while (off < n) {
		size_t k = n - off < step ? n - off : step;
		enum smtp_client_reply_status st = smtp_client_reply_parse(&rp, p + off, k, &used);
		CHECK(used <= k);
		off += used;
		*last = st;
		if (st == SMTP_CLIENT_REPLY_NEED_MORE) {
			CHECK(used == k);
			continue;
		}
		if (st != SMTP_CLIENT_REPLY_OK)
			break;
		const struct smtp_client_reply *r = &rp.reply;
		CHECK(r->code >= 200 && r->code <= 599);
		CHECK(r->nlines >= 1 && r->nlines <= SMTP_CLIENT_REPLY_LINES);
		CHECK(r->textlen <= SMTP_CLIENT_TEXT_MAX);
		CHECK(r->text[r->textlen] == '\0' && strlen(r->text) == r->textlen);
		CHECK(r->esc[0] == '\0' || r->esc[0] == '0' + r->code / 100);
		struct smtp_client_ext ext;
		smtp_client_ehlo_parse(r, &ext);
		if (count < 64)
			out[count] = (struct summary){r->code, r->nlines, r->textlen,
			                              fnv(r->text, r->textlen)};
		count++;
	}
	return count;
}

static void fuzz_parser(const uint8_t *p, size_t n)
{
	static struct summary a[64], b[64];
	enum smtp_client_reply_status sa, sb;
	size_t na = parse_all(p, n, n ? n : 1, a, &sa);
	size_t nb = parse_all(p, n, 1, b, &sb);

	CHECK(na == nb && sa == sb);
	for (size_t i = 0; i < na && i < 64; i++)
		CHECK(a[i].code == b[i].code && a[i].nlines == b[i].nlines &&
		      a[i].textlen == b[i].textlen && a[i].hash == b[i].hash);
}

/* --- the client ----------------------------------------------------------------------- */

struct ctx {
	struct smtp_client *c;
	uint8_t opts;
	int starttls_pending;
	size_t body_off, calls, done;
	bool closed;
	bool in_body;
};

static const char body_text[] = "Subject: fuzz\r\n\r\n.line\nmore\r\n..\rlast";

static enum smtp_client_body cb_body(void *arg, const struct smtp_client_msg *msg,
                                     const uint8_t **data_r, size_t *len_r)
{
	struct ctx *x = arg;

	(void)msg;
	x->calls++;
	if ((x->opts & 0x40) && x->calls % 3 == 0)
		return SMTP_CLIENT_BODY_AGAIN;
	if ((x->opts & 0x80) && x->body_off > 10)
		return SMTP_CLIENT_BODY_ERROR;
	if (x->body_off >= sizeof(body_text) - 1)
		return SMTP_CLIENT_BODY_END;
	*data_r = (const uint8_t *)body_text + x->body_off;
	*len_r = 5 < sizeof(body_text) - 1 - x->body_off ? 5 : sizeof(body_text) - 1 - x->body_off;
	x->body_off += *len_r;
	return SMTP_CLIENT_BODY_DATA;
}

static void cb_starttls(void *arg)
{
	struct ctx *x = arg;
	x->starttls_pending++;
}

static void cb_done(void *arg, const struct smtp_client_msg *msg,
                    const struct smtp_client_result *res, size_t n)
{
	struct ctx *x = arg;

	CHECK(n == msg->nrcpts);
	for (size_t i = 0; i < n; i++) {
		CHECK(res[i].outcome <= SMTP_CLIENT_PERMFAIL);
		CHECK(res[i].text != NULL && res[i].esc != NULL);
		CHECK(res[i].outcome != SMTP_CLIENT_DELIVERED || res[i].code / 100 == 2);
	}
	x->done++;
}

static void cb_closed(void *arg, const char *reason)
{
	struct ctx *x = arg;
	CHECK(!x->closed);
	x->closed = true;
	(void)reason;
}

static const struct smtp_client_ops ops = {
        .body = cb_body, .starttls = cb_starttls, .msg_done = cb_done, .closed = cb_closed};

static const struct smtp_client_rcpt rcpts[] = {
        {.addr = "a@example.org",
         .notify = SMTP_CLIENT_NOTIFY_FAILURE,
         .orcpt = "rfc822;a@example.org"},
        {.addr = "b@example.org"},
        {.addr = "c@example.org", .notify = SMTP_CLIENT_NOTIFY_NEVER},
};
static const struct smtp_client_msg msgs[2] = {
        {.from = "s@example.com",
         .rcpts = rcpts,
         .nrcpts = 3,
         .size = 300,
         .body_8bit = true,
         .ret = SMTP_CLIENT_RET_FULL,
         .envid = "e=1"},
        {.from = "", .rcpts = rcpts + 1, .nrcpts = 1},
};

/* Client output outside the body: CRLF-terminated lines. */
static void check_output(struct ctx *x)
{
	struct buf *out = smtp_client_output(x->c);
	size_t n = buf_len(out);
	const uint8_t *p = n ? buf_ptr(out) : NULL;

	if (!x->in_body && n > 0) {
		CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
		for (size_t i = 0; i + 1 < n; i++)
			if (p[i] == '\n')
				CHECK(i > 0 && p[i - 1] == '\r');
	}
	buf_reset(out);
}

static void fuzz_client(const uint8_t *p, size_t n, uint8_t opts, size_t feed)
{
	struct smtp_client_config cfg = {
	        .helo_name = "client.example",
	        .tls = (enum smtp_client_tls)(opts & 3) % 3,
	        .tls_active = (opts & 4) != 0,
	        .auth_user = (opts & 8) ? "user" : NULL,
	        .auth_pass = (opts & 8) ? "pass" : NULL,
	        .auth_plaintext = true,
	        .no_pipelining = (opts & 16) != 0,
	        .out_high = 64,
	};
	struct ctx x = {.opts = opts};
	const char *err = NULL;
	size_t off = 0, sent = 0;

	x.c = smtp_client_new(&cfg, &ops, &x, &err);
	CHECK(x.c != NULL);
	CHECK(smtp_client_send(x.c, &msgs[sent++], &err) == 0);
	while (off < n && !smtp_client_closed(x.c)) {
		size_t k = n - off < feed ? n - off : feed;
		size_t calls = x.calls;
		x.in_body = strcmp(smtp_client_state_name(x.c), "body") == 0;
		smtp_client_input(x.c, p + off, k);
		x.in_body = x.in_body || x.calls != calls; /* body bytes were written */
		off += k;
		if (x.starttls_pending > 0) {
			x.starttls_pending--;
			smtp_client_tls_done(x.c, (opts & 0x20) == 0);
		}
		x.in_body = x.in_body || strcmp(smtp_client_state_name(x.c), "body") == 0 ||
		            strcmp(smtp_client_state_name(x.c), "dot") == 0;
		check_output(&x);
		for (int i = 0; i < 4; i++)
			smtp_client_pump(x.c);
		buf_reset(smtp_client_output(x.c));
		if (smtp_client_idle(x.c) && sent < 2)
			CHECK(smtp_client_send(x.c, &msgs[sent++], &err) == 0);
		else if (smtp_client_idle(x.c))
			smtp_client_quit(x.c);
		(void)smtp_client_timeout(x.c);
	}
	bool was_closed = smtp_client_closed(x.c);
	smtp_client_abort(x.c, "end of input");
	CHECK(smtp_client_closed(x.c));
	CHECK(x.done == sent); /* every message sent was reported once */
	CHECK(!x.closed || was_closed);
	smtp_client_free(&x.c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	fuzz_parser(data + 2, size - 2);
	fuzz_client(data + 2, size - 2, data[0], 1 + data[1] % 64);
	return 0;
}
