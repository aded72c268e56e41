/*
 * tests/fuzz/fuzz_smtp.c -- libFuzzer target for the SMTP parser and session.
 *
 * Input layout: byte 0 holds options (role, STARTTLS, mx AUTH, whether
 * requests are answered synchronously), byte 1 seeds the fake directory's
 * answers, byte 2 sets the feed size; the rest is what the client sends.
 *
 * The same bytes also go through the pure parsers on their own: command
 * lines one after the other, both content decoders, base64 and PLAIN.
 * Besides the sanitizers, the target checks invariants: every reply line
 * is "ddd" SP/"-" text CRLF, store calls come in a legal order, and the
 * decoders never report more output than they counted.
 */
#include "mailbox/smtp/parser.h"
#include "mailbox/smtp/sasl.h"
#include "mailbox/smtp/session.h"
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

/* --- the parsers alone ------------------------------------------------------ */

static int count_sink(void *ctx, const uint8_t *p, size_t n)
{
	uint64_t *total = ctx;

	CHECK(n > 0 && p != NULL);
	*total += n;
	return (*total & 0x3ff) == 0x3ff ? -1 : 0; /* fail now and then */
}

static void fuzz_parsers(const uint8_t *p, size_t n)
{
	struct smtp_cmd cmd;
	size_t off = 0, consumed;
	struct smtp_data d;
	uint64_t total = 0;
	uint8_t out[256];
	size_t outlen;

	/* command lines, one after the other, with a small bound */
	while (off < n) {
		enum smtp_parse_status st =
		        smtp_parser_next(p + off, n - off, 600, &cmd, &consumed, NULL);
		if (st == SMTP_P_NEED_MORE)
			break;
		if (st == SMTP_P_TOO_LONG) {
			CHECK(smtp_parser_skip_line(p + off, n - off, &consumed) == SMTP_P_OK ||
			      consumed == n - off);
		}
		CHECK(consumed > 0 && consumed <= n - off);
		if (st == SMTP_P_OK && (cmd.verb == SMTP_V_MAIL || cmd.verb == SMTP_V_RCPT))
			CHECK(cmd.path.len == strlen(cmd.path.addr) && cmd.path.at <= cmd.path.len);
		off += consumed;
	}
	/* the whole input as one line */
	(void)smtp_parser_command(p, n, &cmd, NULL);
	(void)smtp_parser_is_domain((const char *)p, n);

	/* content, both modes */
	smtp_parser_data_init(&d, SMTP_DATA_DOT, 4096, count_sink, &total);
	if (smtp_parser_data_feed(&d, p, n, &consumed) == SMTP_D_DONE)
		CHECK(consumed <= n && d.done);
	else
		CHECK(consumed == n);
	CHECK(total <= d.size);
	total = 0;
	smtp_parser_data_init(&d, SMTP_DATA_RAW, 0, count_sink, &total);
	CHECK(smtp_parser_data_feed(&d, p, n, &consumed) == SMTP_D_NEED_MORE && consumed == n);
	smtp_parser_data_finish(&d);
	CHECK(total <= d.size && d.size >= n);

	/* SASL */
	if (smtp_sasl_b64_decode(p, n, out, sizeof(out) - 1, &outlen) == 0) {
		const char *z, *c, *w;
		CHECK(outlen <= n);
		if (smtp_sasl_plain_split(out, outlen, &z, &c, &w) == 0)
			CHECK(*c != '\0' && *w != '\0');
	}
}

/* --- the session with fake ops ------------------------------------------- */

enum { F_NONE, F_AUTH, F_MAIL, F_RCPT, F_COMMIT };

struct fz {
	struct smtp_session *s;
	uint32_t rng;
	bool sync;
	int pend, result;
	bool msg_open;
	bool want_tls;
};

static uint32_t next_rand(struct fz *f)
{
	f->rng = f->rng * 1103515245u + 12345u;
	return f->rng >> 16;
}

static void deliver(struct fz *f)
{
	int p = f->pend;

	f->pend = F_NONE;
	switch (p) {
	case F_AUTH:
		smtp_session_auth_done(f->s, (enum smtp_auth_result)f->result,
		                       (next_rand(f) & 1) ? "account" : NULL);
		break;
	case F_MAIL:
		smtp_session_mail_done(f->s, (enum smtp_mail_result)f->result);
		break;
	case F_RCPT:
		smtp_session_rcpt_done(f->s, (enum smtp_rcpt_result)f->result);
		break;
	case F_COMMIT:
		smtp_session_commit_done(f->s, f->result != 0);
		break;
	default:
		break;
	}
}

static void request(struct fz *f, int kind, int result)
{
	CHECK(f->pend == F_NONE);
	f->pend = kind;
	f->result = result;
	if (f->sync)
		deliver(f);
}

static void op_auth(void *ctx, const char *authzid, const char *user, const char *pass)
{
	struct fz *f = ctx;

	CHECK(authzid != NULL && user != NULL && pass != NULL);
	request(f, F_AUTH, (int)(next_rand(f) % 3));
}

static void op_mail(void *ctx, const char *sender, const char *auth_user)
{
	struct fz *f = ctx;

	CHECK(sender != NULL);
	request(f, F_MAIL, (int)(next_rand(f) % 3));
}

static void op_rcpt(void *ctx, const char *rcpt)
{
	struct fz *f = ctx;

	CHECK(rcpt != NULL && rcpt[0] != '\0');
	request(f, F_RCPT, (int)(next_rand(f) % 5));
}

static int op_begin(void *ctx, const struct smtp_envelope *env)
{
	struct fz *f = ctx;

	CHECK(!f->msg_open && env->nrcpts > 0 && env->id != NULL);
	if (next_rand(f) % 8 == 0)
		return -1;
	f->msg_open = true;
	return 0;
}

static int op_write(void *ctx, const uint8_t *p, size_t n)
{
	struct fz *f = ctx;

	CHECK(f->msg_open && n > 0 && p != NULL);
	return next_rand(f) % 64 == 0 ? -1 : 0;
}

static void op_commit(void *ctx)
{
	struct fz *f = ctx;

	CHECK(f->msg_open);
	f->msg_open = false;
	request(f, F_COMMIT, next_rand(f) % 4 != 0);
}

static void op_abort(void *ctx)
{
	struct fz *f = ctx;

	CHECK(f->msg_open);
	f->msg_open = false;
}

static int op_starttls(void *ctx)
{
	struct fz *f = ctx;

	if (next_rand(f) % 4 == 0)
		return -1;
	f->want_tls = true;
	return 0;
}

static const struct smtp_session_ops ops = {
        .auth_check = op_auth,
        .mail_check = op_mail,
        .rcpt_check = op_rcpt,
        .message_begin = op_begin,
        .message_write = op_write,
        .message_commit = op_commit,
        .message_abort = op_abort,
        .starttls = op_starttls,
};

/* Every queued reply line is well formed; consume them. */
static void drain(struct fz *f)
{
	struct buf *o = smtp_session_outbuf(f->s);
	const uint8_t *p = buf_ptr(o);
	size_t n = buf_len(o), start = 0;

	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\r')
			continue;
		CHECK(p[i + 1] == '\n');
		CHECK(i - start >= 4);
		for (size_t k = start; k < start + 3; k++)
			CHECK(p[k] >= '0' && p[k] <= '9');
		CHECK(p[start + 3] == ' ' || p[start + 3] == '-');
		for (size_t k = start; k < i; k++)
			CHECK(p[k] >= 0x20 && p[k] != 0x7f);
		start = i + 2;
		i++;
	}
	CHECK(start == n);
	buf_consume(o, n);
}

static void settle(struct fz *f)
{
	for (int rounds = 0; rounds < 100000; rounds++) {
		if (buf_len(smtp_session_outbuf(f->s)) > 0) {
			drain(f);
			smtp_session_process(f->s);
			continue;
		}
		if (f->pend != F_NONE) {
			deliver(f);
			continue;
		}
		if (f->want_tls && smtp_session_tls_wait(f->s)) {
			f->want_tls = false;
			smtp_session_tls_done(f->s, next_rand(f) % 8 != 0, "TLSv1.3", "X");
			continue;
		}
		return;
	}
	abort();
}

static void fuzz_session(const uint8_t *data, size_t size)
{
	struct fz f = {0};
	struct smtp_session_config cfg = {
	        .hostname = "mx.example",
	        .listener = "fuzz",
	        .session_id = "fz",
	        .max_message_size = 2048,
	        .max_recipients = 3,
	        .max_errors = 30,
	        .max_line = 512,
	};
	uint8_t opt = data[0];
	size_t feed = (size_t)data[2] % 64 + 1;

	cfg.role = (enum smtp_role)(opt % 3);
	cfg.starttls_available = opt & 0x04;
	cfg.mx_auth = opt & 0x08;
	f.sync = opt & 0x10;
	f.rng = data[1];
	f.s = smtp_session_new(&cfg, &ops, &f);
	smtp_session_set_client(f.s, (opt & 0x20) ? "2001:db8::1" : "192.0.2.1");
	if (cfg.role == SMTP_ROLE_SUBMISSIONS)
		smtp_session_set_tls(f.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
	smtp_session_greet(f.s);
	settle(&f);
	for (size_t off = 3; off < size && !smtp_session_closing(f.s);) {
		size_t k = size - off < feed ? size - off : feed;
		if (smtp_session_input(f.s, data + off, k) < 0)
			break; /* a request held the buffer full */
		off += k;
		if (!f.sync || (opt & 0x40))
			settle(&f);
	}
	settle(&f);
	if (opt & 0x80)
		smtp_session_shutdown(f.s, SMTP_CLOSE_TIMEOUT);
	drain(&f);
	smtp_session_free(&f.s);
	CHECK(!f.msg_open); /* freeing aborts an open message */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parsers(data, size);
	if (size >= 3)
		fuzz_session(data, size);
	return 0;
}
