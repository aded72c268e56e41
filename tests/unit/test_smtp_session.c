/*
 * tests/unit/test_smtp_session.c -- the SMTP session, by transcript.
 *
 * Each .txt file in tests/unit/smtp_transcripts is a dialogue played against a
 * session whose ops are a fake directory and store driven by directives.
 * Every transcript runs four times: input fed whole or byte by byte, and
 * requests answered from inside the request (synchronously) or after the
 * input call returned; all four must produce the same replies.  After all
 * transcripts ran, every reply in SMTP_REPLY_LIST (mailbox/smtp/reply.h,
 * the table of every reply the session can send) must have been produced
 * at least once, so a new reply path without a transcript fails the test.
 *
 * Transcript syntax (one item per line):
 *   C: text        client line; "\r\n" is appended
 *   R: text        raw client bytes, nothing appended
 *   S: text        the next server line (without CRLF) must be exactly this
 *   ## text        a comment
 *   # directive    see directive() below
 * In C:, R:, S: and directive arguments, \r \n \t \\ and \xHH are escapes.
 * Input accumulates until the next S: line or directive; then it is fed,
 * requests are answered (unless held) and output is collected.  At the end
 * no input or output may be left over.
 *
 * Fake directory: "# rcpt ADDR RESULT" (ADDR exact, "*@domain" or "*";
 * first match wins; no match: remote), "# auth USER PASS RESULT [ACCOUNT]"
 * (no match: fail), "# mail ADDR RESULT" (turns mail_check on; no match:
 * ok).  Fake store: "# begin fail", "# write fail", "# commit fail" affect
 * the next message; "# starttls fail" the next STARTTLS.
 *
 * The transcripts are found next to this file through __FILE__ (make runs
 * the unit binary from the repository root).
 */
#include "tests/unit/unit.h"

#include "mailbox/smtp/session.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define FAKE_NOW 1795750800 /* Fri, 27 Nov 2026 03:40:00 +0000 */

enum fake_pend {
	F_NONE = 0,
	F_AUTH,
	F_MAIL,
	F_RCPT,
	F_COMMIT,
};

struct rule {
	char *pat;
	char *pass;    /* auth only */
	char *account; /* auth only; may be NULL */
	int result;
};

struct fake {
	const char *file;
	int line;
	bool failed;
	/* run variant */
	bool bytewise, sync;
	/* session and its configuration */
	struct smtp_session *s;
	struct smtp_session_config cfg;
	char *client_ip;
	bool client_none;
	char *tls_version, *tls_cipher;
	bool mail_check_on;
	/* fake directory */
	struct rule rcpt[32], auth[16], mail[16];
	size_t nrcpt, nauth, nmail;
	/* fake store and TLS */
	bool begin_fail, write_fail, commit_fail, starttls_fail;
	bool msg_open;
	bool msg_discard;   /* count content only (large-message test) */
	uint64_t msg_bytes; /* content octets written to the open message */
	struct buf msg;
	char *last_msg;
	size_t last_msg_len;
	char *last_env;
	int aborts, commits;
	bool starttls_called;
	char abuse_log[512];
	/* requests */
	bool hold;
	enum fake_pend pend;
	int pend_result;
	char *pend_account;
	/* transcript I/O */
	struct buf in;  /* client bytes not yet fed */
	struct buf out; /* server bytes not yet matched */
};

static unsigned reply_hits[SMTP_R_COUNT];

static void fail(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct fake *f, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (f->failed)
		return; /* report the first problem of a run only */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	unit_fail(f->file, f->line, "[%s,%s] %s", f->bytewise ? "bytewise" : "whole",
	          f->sync ? "sync" : "async", msg);
	f->failed = true;
}

/* --- the fake ops ---------------------------------------------------------- */

static bool pattern_match(const char *pat, const char *addr)
{
	if (strcmp(pat, "*") == 0)
		return true;
	if (pat[0] == '*' && pat[1] == '@') {
		const char *at = strrchr(addr, '@');
		return at != NULL && strcasecmp(at + 1, pat + 2) == 0;
	}
	return strcasecmp(pat, addr) == 0;
}

static void deliver(struct fake *f)
{
	enum fake_pend p = f->pend;
	char *account = f->pend_account;

	f->pend = F_NONE;
	f->pend_account = NULL;
	switch (p) {
	case F_NONE:
		break;
	case F_AUTH:
		smtp_session_auth_done(f->s, (enum smtp_auth_result)f->pend_result, account);
		break;
	case F_MAIL:
		smtp_session_mail_done(f->s, (enum smtp_mail_result)f->pend_result);
		break;
	case F_RCPT:
		smtp_session_rcpt_done(f->s, (enum smtp_rcpt_result)f->pend_result);
		break;
	case F_COMMIT:
		smtp_session_commit_done(f->s, f->pend_result != 0);
		break;
	}
	free(account);
}

static void request(struct fake *f, enum fake_pend p, int result, const char *account)
{
	if (f->pend != F_NONE)
		fail(f, "a second request while one is outstanding");
	f->pend = p;
	f->pend_result = result;
	f->pend_account = account != NULL ? xstrdup(account) : NULL;
	if (f->sync && !f->hold)
		deliver(f);
}

static void fake_auth_check(void *ctx, const char *authzid, const char *user, const char *pass)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < f->nauth; i++) {
		if (strcmp(f->auth[i].pat, user) == 0 && strcmp(f->auth[i].pass, pass) == 0 &&
		    authzid[0] == '\0') {
			request(f, F_AUTH, f->auth[i].result, f->auth[i].account);
			return;
		}
	}
	request(f, F_AUTH, SMTP_AUTH_FAIL, NULL);
}

static void fake_mail_check(void *ctx, const char *sender, const char *auth_user)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < f->nmail; i++) {
		if (pattern_match(f->mail[i].pat, sender)) {
			request(f, F_MAIL, f->mail[i].result, NULL);
			return;
		}
	}
	request(f, F_MAIL, SMTP_MAIL_OK, NULL);
}

static void fake_rcpt_check(void *ctx, const char *rcpt)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < f->nrcpt; i++) {
		if (pattern_match(f->rcpt[i].pat, rcpt)) {
			request(f, F_RCPT, f->rcpt[i].result, NULL);
			return;
		}
	}
	request(f, F_RCPT, SMTP_RCPT_REMOTE, NULL);
}

static int fake_message_begin(void *ctx, const struct smtp_envelope *env)
{
	struct fake *f = ctx;
	struct buf e;

	if (f->msg_open)
		fail(f, "message_begin with a message open");
	if (f->begin_fail) {
		f->begin_fail = false;
		return -1;
	}
	f->msg_open = true;
	f->msg_bytes = 0;
	buf_reset(&f->msg);
	buf_init(&e, 0);
	buf_printf(&e,
	           "id=%s from=<%s> utf8=%d body=%d size=%llu ret=%d envid=%s auth=%s helo=%s "
	           "ip=%s tls=%d rcpts=",
	           env->id, env->mail_from, env->smtputf8, (int)env->body,
	           (unsigned long long)env->size_declared, (int)env->ret,
	           env->envid ? env->envid : "-", env->auth_user ? env->auth_user : "-", env->helo,
	           env->client_ip ? env->client_ip : "-", env->tls);
	for (size_t i = 0; i < env->nrcpts; i++)
		buf_printf(&e, "%s<%s>:%s:%u:%s", i ? "," : "", env->rcpts[i].addr,
		           env->rcpts[i].local ? "L" : "R", env->rcpts[i].notify,
		           env->rcpts[i].orcpt ? env->rcpts[i].orcpt : "-");
	buf_append(&e, "", 1);
	free(f->last_env);
	f->last_env = xstrdup((const char *)buf_ptr(&e));
	buf_free(&e);
	return 0;
}

static int fake_message_write(void *ctx, const uint8_t *p, size_t n)
{
	struct fake *f = ctx;

	if (!f->msg_open)
		fail(f, "message_write without an open message");
	if (f->write_fail)
		return -1;
	f->msg_bytes += n;
	return f->msg_discard ? 0 : buf_append(&f->msg, p, n);
}

static void fake_message_commit(void *ctx)
{
	struct fake *f = ctx;
	bool ok = !f->commit_fail;

	if (!f->msg_open)
		fail(f, "message_commit without an open message");
	f->msg_open = false;
	f->write_fail = f->commit_fail = false;
	f->commits++;
	free(f->last_msg);
	f->last_msg_len = buf_len(&f->msg);
	f->last_msg = xmalloc(f->last_msg_len + 1);
	if (f->last_msg_len > 0)
		memcpy(f->last_msg, buf_ptr(&f->msg), f->last_msg_len);
	f->last_msg[f->last_msg_len] = '\0';
	request(f, F_COMMIT, ok, NULL);
}

static void fake_message_abort(void *ctx)
{
	struct fake *f = ctx;

	if (!f->msg_open)
		fail(f, "message_abort without an open message");
	f->msg_open = false;
	f->write_fail = false;
	f->aborts++;
}

static int fake_starttls(void *ctx)
{
	struct fake *f = ctx;

	f->starttls_called = true;
	if (f->starttls_fail) {
		f->starttls_fail = false;
		return -1;
	}
	return 0;
}

static void fake_abuse(void *ctx, enum smtp_abuse kind)
{
	static const char *const names[] = {"rcpt_unknown", "relay_denied", "auth_failed",
	                                    "too_many_errors"};
	struct fake *f = ctx;
	size_t n = strlen(f->abuse_log);

	snprintf(f->abuse_log + n, sizeof(f->abuse_log) - n, "%s%s", n ? "," : "", names[kind]);
}

static void fake_replied(void *ctx, enum smtp_reply r)
{
	(void)ctx;
	reply_hits[r]++;
}

static time_t fake_now(void *ctx)
{
	(void)ctx;
	return FAKE_NOW;
}

static const struct smtp_session_ops fake_ops = {
        .auth_check = fake_auth_check,
        .rcpt_check = fake_rcpt_check,
        .message_begin = fake_message_begin,
        .message_write = fake_message_write,
        .message_commit = fake_message_commit,
        .message_abort = fake_message_abort,
        .starttls = fake_starttls,
        .abuse = fake_abuse,
        .replied = fake_replied,
        .now = fake_now,
};

static const struct smtp_session_ops fake_ops_mail = {
        .auth_check = fake_auth_check,
        .mail_check = fake_mail_check,
        .rcpt_check = fake_rcpt_check,
        .message_begin = fake_message_begin,
        .message_write = fake_message_write,
        .message_commit = fake_message_commit,
        .message_abort = fake_message_abort,
        .starttls = fake_starttls,
        .abuse = fake_abuse,
        .replied = fake_replied,
        .now = fake_now,
};

/* --- driving the session ------------------------------------------------- */

static void start(struct fake *f)
{
	if (f->s != NULL)
		return;
	f->s = smtp_session_new(&f->cfg, f->mail_check_on ? &fake_ops_mail : &fake_ops, f);
	smtp_session_set_client(f->s, f->client_none         ? NULL
	                              : f->client_ip != NULL ? f->client_ip
	                                                     : "192.0.2.7");
	if (f->tls_version != NULL || f->cfg.role == SMTP_ROLE_SUBMISSIONS)
		smtp_session_set_tls(f->s, f->tls_version ? f->tls_version : "TLSv1.3",
		                     f->tls_cipher ? f->tls_cipher : "TLS_AES_256_GCM_SHA384");
	smtp_session_greet(f->s);
}

/* Move replies out, answer requests, repeat until nothing changes. */
static void settle(struct fake *f)
{
	for (int rounds = 0; rounds < 100000; rounds++) {
		struct buf *o = smtp_session_outbuf(f->s);
		bool moved = buf_len(o) > 0;

		if (moved) {
			buf_append(&f->out, buf_ptr(o), buf_len(o));
			buf_consume(o, buf_len(o));
			smtp_session_process(f->s);
			continue;
		}
		if (f->pend != F_NONE && !f->hold) {
			deliver(f);
			continue;
		}
		return;
	}
	fail(f, "session does not settle");
}

static void feed(struct fake *f, const uint8_t *p, size_t n)
{
	size_t step = f->bytewise ? 1 : n;

	for (size_t i = 0; i < n; i += step) {
		size_t k = n - i < step ? n - i : step;
		if (smtp_session_input(f->s, p + i, k) < 0) {
			fail(f, "input buffer full");
			return;
		}
		settle(f);
	}
}

static void flush_input(struct fake *f)
{
	start(f);
	if (buf_len(&f->in) > 0) {
		feed(f, buf_ptr(&f->in), buf_len(&f->in));
		buf_reset(&f->in);
	}
	settle(f);
}

/* --- transcript parsing -------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Unescape s into b. */
static void unescape(struct fake *f, const char *s, struct buf *b)
{
	for (; *s != '\0'; s++) {
		char c = *s;

		if (c == '\\') {
			s++;
			switch (*s) {
			case 'r':
				c = '\r';
				break;
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case '\\':
				c = '\\';
				break;
			case 'x':
				if (hexval(s[1]) < 0 || hexval(s[2]) < 0) {
					fail(f, "bad \\x escape");
					return;
				}
				c = (char)(hexval(s[1]) * 16 + hexval(s[2]));
				s += 2;
				break;
			default:
				fail(f, "bad escape \\%c", *s);
				return;
			}
		}
		buf_append(b, &c, 1);
	}
}

static char *unescaped(struct fake *f, const char *s, size_t *len_r)
{
	struct buf b;
	char *r;

	buf_init(&b, 0);
	unescape(f, s, &b);
	buf_append(&b, "", 1);
	*len_r = buf_len(&b) - 1;
	r = xmemdup(buf_ptr(&b), buf_len(&b));
	buf_free(&b);
	return r;
}

static void expect_line(struct fake *f, const char *want_esc)
{
	size_t wlen;
	char *want = unescaped(f, want_esc, &wlen);
	const uint8_t *p = buf_ptr(&f->out);
	size_t n = buf_len(&f->out);
	const uint8_t *crlf = NULL;

	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			crlf = p + i;
			break;
		}
	}
	if (crlf == NULL) {
		fail(f, "expected S: %s, got %s'%.*s'", want, n ? "incomplete " : "nothing ",
		     (int)n, (const char *)p);
	} else if ((size_t)(crlf - p) != wlen || memcmp(p, want, wlen) != 0) {
		fail(f, "expected S: %s\n                got S: %.*s", want, (int)(crlf - p),
		     (const char *)p);
	} else {
		buf_consume(&f->out, wlen + 2);
	}
	free(want);
}

static int parse_result(struct fake *f, const char *kind, const char *word)
{
	static const struct {
		const char *kind, *word;
		int v;
	} names[] = {
	        {"rcpt", "local", SMTP_RCPT_LOCAL},
	        {"rcpt", "relay_ok", SMTP_RCPT_RELAY_OK},
	        {"rcpt", "remote", SMTP_RCPT_REMOTE},
	        {"rcpt", "unknown", SMTP_RCPT_UNKNOWN},
	        {"rcpt", "tempfail", SMTP_RCPT_TEMPFAIL},
	        {"rcpt", "full", SMTP_RCPT_FULL},
	        {"auth", "ok", SMTP_AUTH_OK},
	        {"auth", "fail", SMTP_AUTH_FAIL},
	        {"auth", "tempfail", SMTP_AUTH_TEMPFAIL},
	        {"mail", "ok", SMTP_MAIL_OK},
	        {"mail", "denied", SMTP_MAIL_DENIED},
	        {"mail", "tempfail", SMTP_MAIL_TEMPFAIL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(names[i].kind, kind) == 0 && strcmp(names[i].word, word) == 0)
			return names[i].v;
	fail(f, "unknown %s result '%s'", kind, word);
	return 0;
}

static bool before_start(struct fake *f, const char *what)
{
	if (f->s != NULL) {
		fail(f, "'%s' must come before the first C:/S: line", what);
		return false;
	}
	return true;
}

/* The content after our Received: header (its lines after the first start
 * with a TAB). */
static const char *body_of(const char *msg)
{
	const char *p = msg;

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (*p != '\t')
			return p;
	}
	return "";
}

/* The text after the first k words of s (and the blanks after them). */
static const char *after_words(const char *s, int k)
{
	for (int i = 0; i < k; i++) {
		while (*s == ' ')
			s++;
		while (*s != '\0' && *s != ' ')
			s++;
	}
	while (*s == ' ')
		s++;
	return s;
}

static void directive(struct fake *f, const char *args)
{
	char *copy = xstrdup(args), *save = NULL, *w[8] = {0};
	const char *rest = after_words(args, 2); /* free text after two words */
	size_t n = 0;

	for (char *t = strtok_r(copy, " ", &save); t != NULL && n < 8;
	     t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	if (n == 0) {
		fail(f, "empty directive");
		free(copy);
		return;
	}
	if (strcmp(w[0], "role") == 0 && n == 2 && before_start(f, "role")) {
		if (strcmp(w[1], "mx") == 0)
			f->cfg.role = SMTP_ROLE_MX;
		else if (strcmp(w[1], "submission") == 0)
			f->cfg.role = SMTP_ROLE_SUBMISSION;
		else if (strcmp(w[1], "submissions") == 0)
			f->cfg.role = SMTP_ROLE_SUBMISSIONS;
		else
			fail(f, "unknown role %s", w[1]);
	} else if (strcmp(w[0], "starttls") == 0 && n == 2) {
		if (strcmp(w[1], "fail") == 0)
			f->starttls_fail = true;
		else if (before_start(f, "starttls"))
			f->cfg.starttls_available = strcmp(w[1], "on") == 0;
	} else if (strcmp(w[0], "mx_auth") == 0 && n == 2 && before_start(f, "mx_auth")) {
		f->cfg.mx_auth = strcmp(w[1], "on") == 0;
	} else if (strcmp(w[0], "plaintext_auth") == 0 && n == 2 &&
	           before_start(f, "plaintext_auth")) {
		f->cfg.plaintext_auth = strcmp(w[1], "on") == 0;
	} else if (strcmp(w[0], "max_size") == 0 && n == 2 && before_start(f, "max_size")) {
		f->cfg.max_message_size = strtoull(w[1], NULL, 10);
	} else if (strcmp(w[0], "max_rcpts") == 0 && n == 2 && before_start(f, "max_rcpts")) {
		f->cfg.max_recipients = (unsigned)strtoul(w[1], NULL, 10);
	} else if (strcmp(w[0], "max_errors") == 0 && n == 2 && before_start(f, "max_errors")) {
		f->cfg.max_errors = (unsigned)strtoul(w[1], NULL, 10);
	} else if (strcmp(w[0], "max_line") == 0 && n == 2 && before_start(f, "max_line")) {
		f->cfg.max_line = strtoul(w[1], NULL, 10);
	} else if (strcmp(w[0], "client") == 0 && n == 2 && before_start(f, "client")) {
		free(f->client_ip);
		f->client_ip = xstrdup(w[1]);
		f->client_none = strcmp(w[1], "none") == 0;
	} else if (strcmp(w[0], "tls") == 0 && n >= 2 && before_start(f, "tls")) {
		free(f->tls_version);
		free(f->tls_cipher);
		f->tls_version = xstrdup(w[1]);
		f->tls_cipher = n >= 3 ? xstrdup(w[2]) : NULL;
	} else if (strcmp(w[0], "rcpt") == 0 && n == 3 && f->nrcpt < ARRAY_SIZE(f->rcpt)) {
		f->rcpt[f->nrcpt].pat = xstrdup(w[1]);
		f->rcpt[f->nrcpt++].result = parse_result(f, "rcpt", w[2]);
	} else if (strcmp(w[0], "auth") == 0 && (n == 4 || n == 5) &&
	           f->nauth < ARRAY_SIZE(f->auth)) {
		f->auth[f->nauth].pat = xstrdup(w[1]);
		f->auth[f->nauth].pass = xstrdup(w[2]);
		f->auth[f->nauth].account = n == 5 ? xstrdup(w[4]) : NULL;
		f->auth[f->nauth++].result = parse_result(f, "auth", w[3]);
	} else if (strcmp(w[0], "mail") == 0 && n == 3 && f->nmail < ARRAY_SIZE(f->mail) &&
	           before_start(f, "mail")) {
		f->mail_check_on = true;
		f->mail[f->nmail].pat = xstrdup(w[1]);
		f->mail[f->nmail++].result = parse_result(f, "mail", w[2]);
	} else if (strcmp(w[0], "mail_check") == 0 && n == 2 && before_start(f, "mail_check")) {
		f->mail_check_on = strcmp(w[1], "on") == 0;
	} else if (strcmp(w[0], "begin") == 0 && n == 2 && strcmp(w[1], "fail") == 0) {
		f->begin_fail = true;
	} else if (strcmp(w[0], "write") == 0 && n == 2 && strcmp(w[1], "fail") == 0) {
		f->write_fail = true;
	} else if (strcmp(w[0], "commit") == 0 && n == 2 && strcmp(w[1], "fail") == 0) {
		f->commit_fail = true;
	} else if (strcmp(w[0], "repeat") == 0 && n >= 3) {
		unsigned long k = strtoul(w[1], NULL, 10);
		struct buf one;

		buf_init(&one, 0);
		unescape(f, rest, &one);
		for (unsigned long i = 0; i < k; i++)
			buf_append(&f->in, buf_ptr(&one), buf_len(&one));
		buf_free(&one);
	} else if (strcmp(w[0], "hold") == 0 && n == 1) {
		flush_input(f);
		f->hold = true;
	} else if (strcmp(w[0], "release") == 0 && n == 1) {
		flush_input(f);
		f->hold = false;
		settle(f);
	} else if (strcmp(w[0], "handshake") == 0 && n >= 2) {
		flush_input(f);
		if (!smtp_session_tls_wait(f->s))
			fail(f, "handshake while not waiting for TLS");
		else if (strcmp(w[1], "ok") == 0)
			smtp_session_tls_done(f->s, true, n >= 3 ? w[2] : NULL,
			                      n >= 4 ? w[3] : NULL);
		else
			smtp_session_tls_done(f->s, false, NULL, NULL);
		settle(f);
	} else if (strcmp(w[0], "shutdown") == 0 && n == 2) {
		flush_input(f);
		smtp_session_shutdown(f->s, strcmp(w[1], "timeout") == 0 ? SMTP_CLOSE_TIMEOUT
		                                                         : SMTP_CLOSE_SHUTDOWN);
		settle(f);
	} else if (strcmp(w[0], "expect") == 0 && n >= 2) {
		flush_input(f);
		if (strcmp(w[1], "closed") == 0 && n == 2) {
			if (!smtp_session_closing(f->s))
				fail(f, "session not closing");
		} else if (strcmp(w[1], "open") == 0 && n == 2) {
			if (smtp_session_closing(f->s))
				fail(f, "session closing");
		} else if (strcmp(w[1], "pending") == 0 && n == 2) {
			if (!smtp_session_pending(f->s))
				fail(f, "no request pending");
		} else if (strcmp(w[1], "in_data") == 0 && n == 2) {
			if (!smtp_session_in_data(f->s))
				fail(f, "not in data");
		} else if (strcmp(w[1], "no-output") == 0 && n == 2) {
			if (buf_len(&f->out) > 0)
				fail(f, "unexpected output '%.*s'", (int)buf_len(&f->out),
				     (const char *)buf_ptr(&f->out));
		} else if (strcmp(w[1], "starttls") == 0 && n == 2) {
			if (!f->starttls_called)
				fail(f, "starttls was not requested");
			f->starttls_called = false;
		} else if (strcmp(w[1], "auth_user") == 0 && n == 3) {
			const char *u = smtp_session_auth_user(f->s);
			if (u == NULL || strcmp(u, w[2]) != 0)
				fail(f, "auth_user %s, want %s", u ? u : "(none)", w[2]);
		} else if (strcmp(w[1], "abuse") == 0 && n >= 3) {
			const char *want = strcmp(rest, "none") == 0 ? "" : rest;
			if (strcmp(f->abuse_log, want) != 0)
				fail(f, "abuse '%s', want '%s'", f->abuse_log, want);
			f->abuse_log[0] = '\0';
		} else if (strcmp(w[1], "aborts") == 0 && n == 3) {
			if (f->aborts != atoi(w[2]))
				fail(f, "aborts %d, want %s", f->aborts, w[2]);
		} else if (strcmp(w[1], "commits") == 0 && n == 3) {
			if (f->commits != atoi(w[2]))
				fail(f, "commits %d, want %s", f->commits, w[2]);
		} else if (strcmp(w[1], "envelope") == 0 && n >= 3) {
			size_t wlen;
			char *want = unescaped(f, rest, &wlen);
			if (f->last_env == NULL || strcmp(f->last_env, want) != 0)
				fail(f, "envelope\n  got  %s\n  want %s",
				     f->last_env ? f->last_env : "(none)", want);
			free(want);
		} else if ((strcmp(w[1], "message") == 0 || strcmp(w[1], "body") == 0) && n >= 3) {
			size_t wlen;
			char *want = unescaped(f, rest, &wlen);
			const char *got = f->last_msg == NULL         ? "(none)"
			                  : strcmp(w[1], "body") == 0 ? body_of(f->last_msg)
			                                              : f->last_msg;
			if (strlen(got) != wlen || memcmp(got, want, wlen) != 0)
				fail(f, "%s\n  got  '%s'\n  want '%s'", w[1], got, want);
			free(want);
		} else {
			fail(f, "unknown expectation '%s'", w[1]);
		}
	} else {
		fail(f, "unknown or malformed directive '%s'", w[0]);
	}
	free(copy);
}

static void fake_free(struct fake *f)
{
	smtp_session_free(&f->s);
	for (size_t i = 0; i < f->nrcpt; i++)
		free(f->rcpt[i].pat);
	for (size_t i = 0; i < f->nauth; i++) {
		free(f->auth[i].pat);
		free(f->auth[i].pass);
		free(f->auth[i].account);
	}
	for (size_t i = 0; i < f->nmail; i++)
		free(f->mail[i].pat);
	free(f->client_ip);
	free(f->tls_version);
	free(f->tls_cipher);
	free(f->last_msg);
	free(f->last_env);
	free(f->pend_account);
	buf_free(&f->msg);
	buf_free(&f->in);
	buf_free(&f->out);
}

static void fake_init(struct fake *f, const char *file, bool bytewise, bool sync)
{
	memset(f, 0, sizeof(*f));
	f->file = file;
	f->bytewise = bytewise;
	f->sync = sync;
	f->cfg = (struct smtp_session_config){
	        .role = SMTP_ROLE_MX,
	        .hostname = "mail.example.org",
	        .listener = "mx",
	        .session_id = "t1",
	        .max_message_size = 10485760,
	        .max_recipients = 100,
	        .max_errors = 20,
	        .starttls_available = true,
	};
	buf_init(&f->msg, 0);
	buf_init(&f->in, 0);
	buf_init(&f->out, 0);
}

/* Play one transcript in one variant; false if it failed. */
static bool run_transcript(const char *path, const char *text, bool bytewise, bool sync)
{
	struct fake f;
	char *copy = xstrdup(text);
	int lineno = 0;
	bool ok;

	fake_init(&f, path, bytewise, sync);
	/* split on '\n' by hand: strtok would skip empty lines */
	for (char *line = copy, *next; line != NULL && !f.failed; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		f.line = ++lineno;
		if (line[0] == '\0' || strncmp(line, "##", 2) == 0)
			continue;
		if (strncmp(line, "# ", 2) == 0) {
			directive(&f, line + 2);
		} else if (strncmp(line, "C:", 2) == 0 || strncmp(line, "R:", 2) == 0) {
			const char *t = line[2] == ' ' ? line + 3 : line + 2;
			unescape(&f, t, &f.in);
			if (line[0] == 'C')
				buf_append(&f.in, "\r\n", 2);
		} else if (strncmp(line, "S: ", 3) == 0) {
			flush_input(&f);
			expect_line(&f, line + 3);
		} else {
			fail(&f, "unparsable transcript line '%s'", line);
		}
	}
	if (!f.failed) {
		f.line = lineno;
		flush_input(&f);
		if (buf_len(&f.out) > 0)
			fail(&f, "unmatched output at the end: '%.*s'", (int)buf_len(&f.out),
			     (const char *)buf_ptr(&f.out));
	}
	ok = !f.failed;
	fake_free(&f);
	free(copy);
	return ok;
}

static char *read_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *data = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
		data = xmalloc((size_t)n + 1);
		if (fread(data, 1, (size_t)n, fp) != (size_t)n) {
			free(data);
			data = NULL;
		} else {
			data[n] = '\0';
		}
	}
	fclose(fp);
	return data;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "tests/unit/smtp_transcripts", from where this file was compiled. */
static char *transcript_dir(void)
{
	const char *me = __FILE__;
	const char *slash = strrchr(me, '/');

	if (slash == NULL)
		return xstrdup("smtp_transcripts");
	return xasprintf("%.*s/smtp_transcripts", (int)(slash - me), me);
}

UNIT_TEST(smtp_session_transcripts)
{
	char *dir = transcript_dir();
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0, failed = 0;
	struct dirent *de;

	memset(reply_hits, 0, sizeof(reply_hits));
	CHECK_MSG(d != NULL, "cannot open %s (run from the repository root)", dir);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".txt") == 0) {
			names = xreallocarray(names, n + 1, sizeof(*names));
			names[n++] = xasprintf("%s/%s", dir, de->d_name);
		}
	}
	closedir(d);
	qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		char *text = read_file(names[i]);

		if (text == NULL) {
			unit_fail(names[i], 0, "cannot read");
			failed++;
			continue;
		}
		for (int v = 0; v < 4; v++)
			if (!run_transcript(names[i], text, v & 1, v & 2))
				failed++;
		free(text);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(dir);
	CHECK_MSG(n >= 10, "only %zu transcripts found", n);
	CHECK_MSG(failed == 0, "%zu transcript runs failed", failed);

	/* Every reply the session can send was produced by some transcript. */
	for (size_t r = 0; r < SMTP_R_COUNT; r++)
		if (reply_hits[r] == 0)
			unit_fail(__FILE__, __LINE__,
			          "reply %s (%d %s) is produced by no transcript",
			          smtp_reply_info((enum smtp_reply)r)->name,
			          smtp_reply_info((enum smtp_reply)r)->code,
			          smtp_reply_info((enum smtp_reply)r)->esc
			                  ? smtp_reply_info((enum smtp_reply)r)->esc
			                  : "");
}

/* --- properties beyond transcripts ---------------------------------------- */

static bool mem_contains(const uint8_t *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(hay + i, needle, k) == 0)
			return true;
	return false;
}

/* SASL lines do not linger in the input buffer once consumed. */
UNIT_TEST(smtp_session_auth_wiped)
{
	struct fake f;
	const char *in = "EHLO c.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN\r\n";
	struct buf *ib;

	fake_init(&f, __FILE__, false, true);
	f.cfg.role = SMTP_ROLE_SUBMISSIONS;
	f.auth[0] = (struct rule){xstrdup("alice"), xstrdup("secret"), NULL, SMTP_AUTH_OK};
	f.nauth = 1;
	start(&f);
	/* The last line stays unconsumed: it shows the scan can see data. */
	CHECK(smtp_session_input(f.s, (const uint8_t *)in, strlen(in)) == 0);
	CHECK(smtp_session_input(f.s, (const uint8_t *)"c2VjcmV0-partial", 16) == 0);
	settle(&f);
	CHECK(smtp_session_auth_user(f.s) != NULL);
	ib = smtp_session_inbuf(f.s);
	CHECK(ib->data != NULL);
	CHECK(!mem_contains(ib->data, ib->cap, "AGFsaWNlAHNlY3JldA"));
	CHECK(!mem_contains(ib->data, ib->cap, "AUTH"));
	CHECK(mem_contains(ib->data, ib->cap, "c2VjcmV0-partial"));
	fake_free(&f);
}

/* A message far larger than any buffer streams through: the session's
 * input buffer stays at its bound and every octet reaches the store. */
UNIT_TEST(smtp_session_large_message)
{
	struct fake f;
	char line[81];
	struct buf chunk;
	uint64_t want = 0;
	const size_t lines = 100000; /* 8 MB */

	fake_init(&f, __FILE__, false, false);
	f.cfg.max_message_size = 64ull << 20;
	f.rcpt[0] = (struct rule){xstrdup("*"), NULL, NULL, SMTP_RCPT_LOCAL};
	f.nrcpt = 1;
	f.msg_discard = true;
	start(&f);
	buf_append(&f.in, "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 46);
	flush_input(&f);
	CHECK(smtp_session_in_data(f.s));
	buf_init(&chunk, 0);
	memset(line, 'x', sizeof(line));
	line[78] = '\r', line[79] = '\n', line[80] = '\0';
	for (size_t i = 0; i < lines; i++) {
		line[0] = i % 7 == 0 ? '.' : 'x'; /* dot-stuffed every 7th line */
		buf_append(&chunk, line, 80);
		want += i % 7 == 0 ? 79 : 80;
		if (buf_len(&chunk) >= 16384 || i + 1 == lines) {
			CHECK(smtp_session_input(f.s, buf_ptr(&chunk), buf_len(&chunk)) == 0);
			settle(&f);
			buf_reset(&chunk);
			CHECK(smtp_session_inbuf(f.s)->cap <= SMTP_LINE_MAX + SMTP_IN_SLACK);
		}
	}
	buf_free(&chunk);
	CHECK(smtp_session_input(f.s, (const uint8_t *)".\r\n", 3) == 0);
	settle(&f);
	CHECK_INT(f.commits, 1);
	/* the Received: header comes on top of the content */
	CHECK(f.msg_bytes > want && f.msg_bytes < want + 400);
	CHECK(f.failed == false);
	fake_free(&f);
}

/* A client that pipelines without reading cannot grow the output buffer
 * without bound: input waits until replies are drained. */
UNIT_TEST(smtp_session_output_backpressure)
{
	struct fake f;
	struct buf in;
	size_t replies = 0;
	struct buf *o;

	fake_init(&f, __FILE__, false, true);
	start(&f);
	buf_init(&in, 0);
	for (int i = 0; i < 3000; i++)
		buf_append(&in, "NOOP\r\n", 6);
	CHECK(smtp_session_input(f.s, buf_ptr(&in), buf_len(&in)) == 0);
	buf_free(&in);
	o = smtp_session_outbuf(f.s);
	CHECK(buf_len(o) <= SMTP_OUT_HIGH + 64);
	CHECK(buf_len(smtp_session_inbuf(f.s)) > 0);
	for (int rounds = 0; rounds < 1000 && buf_len(o) > 0; rounds++) {
		const uint8_t *p = buf_ptr(o);
		for (size_t i = 0; i + 1 < buf_len(o); i++)
			if (p[i] == '\r' && p[i + 1] == '\n')
				replies++;
		buf_consume(o, buf_len(o));
		smtp_session_process(f.s);
		CHECK(buf_len(o) <= SMTP_OUT_HIGH + 64);
	}
	CHECK_INT(replies, 3001); /* greeting + 3000 */
	CHECK_INT(buf_len(smtp_session_inbuf(f.s)), 0);
	fake_free(&f);
}

/* Transaction ids are Received: atoms whatever the glue's session id. */
UNIT_TEST(smtp_session_txn_id)
{
	struct fake f;
	const char *in = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n";

	fake_init(&f, __FILE__, false, false);
	f.cfg.session_id = "a.b c;";
	f.rcpt[0] = (struct rule){xstrdup("*"), NULL, NULL, SMTP_RCPT_LOCAL};
	f.nrcpt = 1;
	start(&f);
	buf_append(&f.in, in, strlen(in));
	flush_input(&f);
	CHECK(f.last_env != NULL);
	CHECK(strncmp(f.last_env, "id=axbxcx-1 ", 12) == 0);
	CHECK(mem_contains(buf_ptr(&f.out), buf_len(&f.out), "queued as axbxcx-1\r\n"));
	fake_free(&f);
}
