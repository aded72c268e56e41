/*
 * mailbox/outbound/smtp_client.c -- the outbound SMTP client state machine.
 *
 * One state per thing we wait for (a reply to a given command, the TLS
 * handshake, body bytes).  Replies are parsed by smtp_client_reply.c and
 * handled one at a time in handle_reply(); a transaction's recipients
 * carry their own outcome, set once (the first final word wins), so the
 * failure paths can simply mark "everything still open" without caring
 * how far the transaction got.
 *
 * Reentrancy: the state is always updated before a callback runs, so a
 * callback that sends the next message or quits finds a consistent
 * client, and code after a callback only looks at the state again.
 */
#include "mailbox/outbound/smtp_client.h"

#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_HIGH_DEFAULT (64 * 1024)

enum state {
	ST_GREETING = 0,
	ST_EHLO,
	ST_HELO,
	ST_STARTTLS,
	ST_TLS,
	ST_AUTH_PLAIN,
	ST_AUTH_LOGIN_USER,
	ST_AUTH_LOGIN_PASS,
	ST_AUTH_DONE,
	ST_READY,
	ST_MAIL_RCPT,
	ST_DATA,
	ST_BODY,
	ST_DOT,
	ST_RSET,
	ST_QUIT,
	ST_CLOSED,
};

static const char *const state_names[] = {
        "greeting",
        "ehlo",
        "helo",
        "starttls",
        "tls",
        "auth-plain",
        "auth-login-user",
        "auth-login-pass",
        "auth-done",
        "ready",
        "mail-rcpt",
        "data",
        "body",
        "dot",
        "rset",
        "quit",
        "closed",
};

struct rcpt_state {
	bool final;    /* the outcome is decided */
	bool accepted; /* 2xx to RCPT: waiting for DATA's outcome */
	enum smtp_client_outcome outcome;
	enum smtp_client_stage stage;
	int code;
	char esc[16];
	char *text;
};

struct smtp_client {
	char *helo, *user, *pass;
	enum smtp_client_tls tls_policy;
	bool auth_plaintext, no_pipelining;
	size_t out_high;
	const struct smtp_client_ops *ops;
	void *arg;

	enum state state;
	struct buf out;
	struct smtp_client_reply_parser rp;
	struct smtp_client_ext ext;
	bool tls_active;
	bool starttls_tried;
	bool quit_wanted;
	char *close_reason;

	/* the message in progress */
	const struct smtp_client_msg *msg;
	struct rcpt_state *rs;
	bool started; /* its MAIL went out */
	bool pipelined, mail_replied, mail_ok;
	size_t rcpt_replied, accepted;
	bool line_start, cr; /* dot-stuffing */
};

/* --- small helpers --------------------------------------------------------------- */

static void cmd(struct smtp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cmd(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	char line[1024];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		/* only MAIL/RCPT with long xtext can get here; those are bounded
		 * by smtp_client_send()'s checks, so this is a broken invariant */
		char *big;
		va_start(ap, fmt);
		n = vasprintf(&big, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		buf_append(&c->out, big, (size_t)n);
		free(big);
	} else {
		buf_append(&c->out, line, (size_t)n);
	}
	buf_append(&c->out, "\r\n", 2);
}

static char *b64(const void *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* RFC 3461 4: xtext = "+" HEX for everything outside "!".."~" and "+", "=" */
static char *xtext(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(3 * strlen(s) + 1), *o = out;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < '!' || ch > '~' || ch == '+' || ch == '=') {
			*o++ = '+';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		} else {
			*o++ = (char)ch;
		}
	}
	*o = '\0';
	return out;
}

static bool valid_name(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 255)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* an address we can put between angle brackets: no space, control byte,
 * '<' or '>'; 8-bit only when SMTPUTF8 is requested; RFC 5321 4.5.3.1.3 */
static bool valid_addr(const char *a, bool utf8, bool empty_ok)
{
	size_t n = strlen(a);

	if (n == 0)
		return empty_ok;
	if (n > 254)
		return false;
	for (; *a != '\0'; a++) {
		unsigned char ch = (unsigned char)*a;
		if (ch <= ' ' || ch == 0x7f || ch == '<' || ch == '>' || (ch >= 0x80 && !utf8))
			return false;
	}
	return true;
}

static enum smtp_client_outcome outcome_of(int code)
{
	return code >= 500 && code <= 599 ? SMTP_CLIENT_PERMFAIL : SMTP_CLIENT_TEMPFAIL;
}

static void set_rcpt(struct smtp_client *c, size_t i, enum smtp_client_outcome o,
                     enum smtp_client_stage stage, int code, const char *esc, const char *text)
{
	struct rcpt_state *r = &c->rs[i];

	if (r->final)
		return;
	r->final = true;
	r->outcome = o;
	r->stage = stage;
	r->code = code;
	snprintf(r->esc, sizeof(r->esc), "%s", esc ? esc : "");
	r->text = xstrdup(text ? text : "");
}

static void set_rcpt_reply(struct smtp_client *c, size_t i, enum smtp_client_outcome o,
                           enum smtp_client_stage stage, const struct smtp_client_reply *r)
{
	set_rcpt(c, i, o, stage, r->code, r->esc, r->text);
}

static enum smtp_client_stage current_stage(const struct smtp_client *c)
{
	switch (c->state) {
	case ST_MAIL_RCPT:
		return c->mail_replied ? SMTP_CLIENT_STAGE_RCPT : SMTP_CLIENT_STAGE_MAIL;
	case ST_DATA:
	case ST_BODY:
		return SMTP_CLIENT_STAGE_DATA;
	case ST_DOT:
		return SMTP_CLIENT_STAGE_DOT;
	default:
		return c->started ? SMTP_CLIENT_STAGE_DATA : SMTP_CLIENT_STAGE_SESSION;
	}
}

static void start_txn(struct smtp_client *c);
static void start_quit(struct smtp_client *c);

/* Report the message and forget it.  The state must already be final. */
static void finish_msg(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->msg;
	struct rcpt_state *rs = c->rs;
	struct smtp_client_result *res;
	size_t i, n;

	if (m == NULL)
		return;
	n = m->nrcpts;
	res = xcalloc(n, sizeof(*res));
	for (i = 0; i < n; i++) {
		if (!rs[i].final) { /* cannot happen; stay on the safe side */
			rs[i].final = true;
			rs[i].outcome = SMTP_CLIENT_TEMPFAIL;
			rs[i].text = xstrdup("internal error: no outcome");
		}
		res[i] = (struct smtp_client_result){.outcome = rs[i].outcome,
		                                     .stage = rs[i].stage,
		                                     .code = rs[i].code,
		                                     .esc = rs[i].esc,
		                                     .text = rs[i].text};
	}
	c->msg = NULL;
	c->rs = NULL;
	c->started = false;
	if (c->ops->msg_done != NULL)
		c->ops->msg_done(c->arg, m, res, n);
	for (i = 0; i < n; i++)
		free(rs[i].text);
	free(rs);
	free(res);
}

/*
 * The session cannot go on: every open recipient fails temporarily with
 * the reply (or the local reason); QUIT when the connection is still in a
 * state to carry it, else close.
 */
static void fail(struct smtp_client *c, const struct smtp_client_reply *r, const char *local,
                 bool quit)
{
	enum smtp_client_stage stage = current_stage(c);
	size_t i;

	free(c->close_reason);
	c->close_reason = r ? xasprintf("%d %s", r->code, r->text) : xstrdup(local);
	if (c->msg != NULL)
		for (i = 0; i < c->msg->nrcpts; i++) {
			if (r != NULL)
				set_rcpt_reply(c, i, SMTP_CLIENT_TEMPFAIL, stage, r);
			else
				set_rcpt(c, i, SMTP_CLIENT_TEMPFAIL, stage, 0, "", local);
		}
	if (quit && c->state != ST_BODY && c->state != ST_TLS && c->state != ST_CLOSED &&
	    c->state != ST_QUIT) {
		cmd(c, "QUIT");
		c->state = ST_QUIT;
	} else {
		c->state = ST_CLOSED;
	}
	finish_msg(c);
	if (c->state == ST_CLOSED && c->ops->closed != NULL)
		c->ops->closed(c->arg, c->close_reason);
}

/* --- session set-up ----------------------------------------------------------------- */

static void session_up(struct smtp_client *c)
{
	c->state = ST_READY;
	if (c->msg != NULL)
		start_txn(c);
	else if (c->quit_wanted)
		start_quit(c);
	else if (c->ops->ready != NULL)
		c->ops->ready(c->arg);
}

static void start_auth(struct smtp_client *c)
{
	if (!c->tls_active && !c->auth_plaintext) {
		fail(c, NULL, "AUTH is configured but TLS is not active", true);
		return;
	}
	if (c->ext.auth & SMTP_CLIENT_AUTH_PLAIN) {
		/* RFC 4616: authzid NUL authcid NUL passwd; RFC 4954 4: initial
		 * response on the command line */
		size_t ul = strlen(c->user), pl = strlen(c->pass), n = ul + pl + 2;
		char *raw = xmalloc(n), *enc;
		raw[0] = '\0';
		memcpy(raw + 1, c->user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, c->pass, pl);
		enc = b64(raw, n);
		cmd(c, "AUTH PLAIN %s", enc);
		OPENSSL_cleanse(raw, n);
		OPENSSL_cleanse(enc, strlen(enc));
		free(raw);
		free(enc);
		c->state = ST_AUTH_PLAIN;
	} else if (c->ext.auth & SMTP_CLIENT_AUTH_LOGIN) {
		cmd(c, "AUTH LOGIN");
		c->state = ST_AUTH_LOGIN_USER;
	} else {
		fail(c, NULL, "AUTH is configured but the server offers neither PLAIN nor LOGIN",
		     true);
	}
}

static void after_ehlo(struct smtp_client *c)
{
	if (!c->tls_active && c->tls_policy != SMTP_CLIENT_TLS_NONE && !c->starttls_tried) {
		if (c->ext.starttls) {
			c->starttls_tried = true;
			cmd(c, "STARTTLS");
			c->state = ST_STARTTLS;
			return;
		}
		if (c->tls_policy == SMTP_CLIENT_TLS_REQUIRED) {
			fail(c, NULL, "STARTTLS is required but the server does not offer it",
			     true);
			return;
		}
	}
	if (c->user != NULL) {
		start_auth(c);
		return;
	}
	session_up(c);
}

static void send_login_secret(struct smtp_client *c, const char *secret, enum state next)
{
	char *enc = b64(secret, strlen(secret));

	cmd(c, "%s", enc);
	OPENSSL_cleanse(enc, strlen(enc));
	free(enc);
	c->state = next;
}

/* --- transactions ------------------------------------------------------------------------ */

static void send_rcpt(struct smtp_client *c, size_t i)
{
	const struct smtp_client_rcpt *r = &c->msg->rcpts[i];
	char notify[40] = "", *orcpt = NULL;

	if (c->ext.dsn && r->notify != 0) {
		if (r->notify & SMTP_CLIENT_NOTIFY_NEVER) {
			strcpy(notify, " NOTIFY=NEVER");
		} else {
			strcpy(notify, " NOTIFY=");
			if (r->notify & SMTP_CLIENT_NOTIFY_SUCCESS)
				strcat(notify, "SUCCESS,");
			if (r->notify & SMTP_CLIENT_NOTIFY_FAILURE)
				strcat(notify, "FAILURE,");
			if (r->notify & SMTP_CLIENT_NOTIFY_DELAY)
				strcat(notify, "DELAY,");
			notify[strlen(notify) - 1] = '\0';
		}
	}
	if (c->ext.dsn && r->orcpt != NULL) {
		/* RFC 3461 4.2: ORCPT=addr-type ";" xtext */
		const char *semi = strchr(r->orcpt, ';');
		char *x = xtext(semi ? semi + 1 : r->orcpt);
		orcpt = xasprintf(" ORCPT=%.*s;%s", semi ? (int)(semi - r->orcpt) : 6,
		                  semi ? r->orcpt : "rfc822", x);
		free(x);
	}
	cmd(c, "RCPT TO:<%s>%s%s", r->addr, notify, orcpt ? orcpt : "");
	free(orcpt);
}

static void fail_all(struct smtp_client *c, enum smtp_client_outcome o, const char *esc,
                     const char *text)
{
	size_t i;

	for (i = 0; i < c->msg->nrcpts; i++)
		set_rcpt(c, i, o, SMTP_CLIENT_STAGE_MAIL, 0, esc, text);
}

static void start_txn(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->msg;
	char params[256] = "", *envid = NULL;
	size_t i;

	/* decided before anything is sent */
	if (m->smtputf8 && !c->ext.smtputf8) {
		/* RFC 6531 3.2: not to a server without SMTPUTF8 */
		fail_all(c, SMTP_CLIENT_PERMFAIL, "5.6.7",
		         "the message needs SMTPUTF8, which the server does not offer");
		finish_msg(c);
		if (c->state == ST_READY && c->msg == NULL && c->quit_wanted)
			start_quit(c);
		return;
	}
	if (c->ext.size && c->ext.size_max > 0 && m->size > c->ext.size_max) {
		/* RFC 1870: the server would refuse it with 552 */
		char text[128];
		snprintf(text, sizeof(text),
		         "message size %" PRIu64 " exceeds the server's limit of %" PRIu64, m->size,
		         c->ext.size_max);
		fail_all(c, SMTP_CLIENT_PERMFAIL, "5.3.4", text);
		finish_msg(c);
		if (c->state == ST_READY && c->msg == NULL && c->quit_wanted)
			start_quit(c);
		return;
	}
	if (c->ext.size && m->size > 0)
		snprintf(params + strlen(params), sizeof(params) - strlen(params), " SIZE=%" PRIu64,
		         m->size);
	if (m->body_8bit && c->ext.eightbitmime)
		strcat(params, " BODY=8BITMIME");
	if (m->smtputf8)
		strcat(params, " SMTPUTF8");
	if (c->ext.dsn && m->ret != SMTP_CLIENT_RET_NONE)
		strcat(params, m->ret == SMTP_CLIENT_RET_FULL ? " RET=FULL" : " RET=HDRS");
	if (c->ext.dsn && m->envid != NULL)
		envid = xtext(m->envid);
	cmd(c, "MAIL FROM:<%s>%s%s%s", m->from, params, envid ? " ENVID=" : "", envid ? envid : "");
	free(envid);
	c->started = true;
	c->pipelined = c->ext.pipelining && !c->no_pipelining;
	c->mail_replied = c->mail_ok = false;
	c->rcpt_replied = c->accepted = 0;
	c->state = ST_MAIL_RCPT;
	if (c->pipelined) /* RFC 2920 3.1: MAIL and RCPT may be grouped */
		for (i = 0; i < m->nrcpts; i++)
			send_rcpt(c, i);
}

static void start_rset(struct smtp_client *c)
{
	cmd(c, "RSET");
	c->state = ST_RSET;
}

static void start_quit(struct smtp_client *c)
{
	cmd(c, "QUIT");
	c->state = ST_QUIT;
}

/* The transaction ended normally: back to idle, report. */
static void txn_done(struct smtp_client *c)
{
	c->state = ST_READY;
	finish_msg(c);
	if (c->state == ST_READY && c->msg == NULL && c->quit_wanted)
		start_quit(c);
}

static void mail_rcpt_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	size_t n = c->msg->nrcpts, i;
	int cls = r->code / 100;

	if (!c->mail_replied) {
		c->mail_replied = true;
		if (cls == 2) {
			c->mail_ok = true;
		} else {
			for (i = 0; i < n; i++)
				set_rcpt_reply(c, i, outcome_of(r->code), SMTP_CLIENT_STAGE_MAIL,
				               r);
		}
		if (!c->pipelined) {
			if (c->mail_ok)
				send_rcpt(c, 0);
			else
				start_rset(c);
			return;
		}
		return; /* the RCPT replies follow */
	}
	i = c->rcpt_replied++;
	if (c->mail_ok) {
		if (cls == 2) {
			c->rs[i].accepted = true;
			c->accepted++;
		} else {
			set_rcpt_reply(c, i, outcome_of(r->code), SMTP_CLIENT_STAGE_RCPT, r);
		}
	}
	if (c->rcpt_replied < n) {
		if (!c->pipelined)
			send_rcpt(c, c->rcpt_replied);
		return;
	}
	if (c->accepted > 0) {
		cmd(c, "DATA");
		c->state = ST_DATA;
	} else {
		start_rset(c);
	}
}

/* Every accepted recipient gets this reply's outcome: delivered for a 2xx
 * to the final dot, else by class (a 2xx anywhere else is a protocol error,
 * temporary like everything unexpected). */
static void settle_accepted(struct smtp_client *c, const struct smtp_client_reply *r,
                            enum smtp_client_stage stage)
{
	size_t i;
	enum smtp_client_outcome o = stage == SMTP_CLIENT_STAGE_DOT && r->code / 100 == 2
	                                     ? SMTP_CLIENT_DELIVERED
	                                     : outcome_of(r->code);

	for (i = 0; i < c->msg->nrcpts; i++)
		if (c->rs[i].accepted)
			set_rcpt_reply(c, i, o, stage, r);
}

/* --- the body ------------------------------------------------------------------------------ */

/* Append body bytes dot-stuffed (RFC 5321 4.5.2), bare LF as CRLF. */
static void stuff(struct smtp_client *c, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t ch = p[i];
		if (c->cr) {
			c->cr = false;
			if (ch == '\n') {
				buf_append(&c->out, "\r\n", 2);
				c->line_start = true;
				i++;
				continue;
			}
			buf_append(&c->out, "\r", 1); /* a bare CR passes as it is */
			c->line_start = false;
		}
		if (ch == '\r') {
			c->cr = true;
			i++;
			continue;
		}
		if (ch == '\n') {
			buf_append(&c->out, "\r\n", 2);
			c->line_start = true;
			i++;
			continue;
		}
		if (c->line_start && ch == '.')
			buf_append(&c->out, ".", 1);
		/* the rest of the line up to the next CR or LF in one go */
		size_t j = i + 1;
		while (j < n && p[j] != '\r' && p[j] != '\n')
			j++;
		buf_append(&c->out, p + i, j - i);
		c->line_start = false;
		i = j;
	}
}

static void end_body(struct smtp_client *c)
{
	if (c->cr) {
		c->cr = false;
		buf_append(&c->out, "\r", 1);
		c->line_start = false;
	}
	if (!c->line_start)
		buf_append(&c->out, "\r\n", 2);
	buf_append(&c->out, ".\r\n", 3);
	c->state = ST_DOT;
}

void smtp_client_pump(struct smtp_client *c)
{
	while (c->state == ST_BODY && buf_len(&c->out) < c->out_high) {
		const uint8_t *p = NULL;
		size_t n = 0;
		switch (c->ops->body(c->arg, c->msg, &p, &n)) {
		case SMTP_CLIENT_BODY_DATA:
			if (n > 0)
				stuff(c, p, n);
			break;
		case SMTP_CLIENT_BODY_END:
			end_body(c);
			return;
		case SMTP_CLIENT_BODY_AGAIN:
			return;
		case SMTP_CLIENT_BODY_ERROR:
		default:
			/* no way to abort DATA in SMTP: drop the connection without
			 * the final dot, and the server discards the message */
			fail(c, NULL, "local error: the message body could not be read", false);
			return;
		}
	}
}

/* --- replies ----------------------------------------------------------------------------- */

static void handle_reply(struct smtp_client *c, const struct smtp_client_reply *r, bool more)
{
	int cls = r->code / 100;

	/* RFC 5321 3.8: 421 may come at any time; the server is closing */
	if (r->code == 421 && c->state != ST_QUIT) {
		fail(c, r, NULL, false);
		return;
	}
	switch (c->state) {
	case ST_GREETING:
		if (cls != 2) {
			fail(c, r, NULL, true); /* RFC 5321 3.1: e.g. 554, then QUIT */
			return;
		}
		cmd(c, "EHLO %s", c->helo);
		c->state = ST_EHLO;
		return;
	case ST_EHLO:
		if (cls == 2) {
			smtp_client_ehlo_parse(r, &c->ext);
			after_ehlo(c);
		} else if (cls == 5) {
			cmd(c, "HELO %s", c->helo); /* RFC 5321 4.1.4 / 3.2 */
			c->state = ST_HELO;
		} else {
			fail(c, r, NULL, true);
		}
		return;
	case ST_HELO:
		if (cls != 2) {
			fail(c, r, NULL, true);
			return;
		}
		memset(&c->ext, 0, sizeof(c->ext));
		after_ehlo(c);
		return;
	case ST_STARTTLS:
		if (cls == 2) {
			if (more) {
				fail(c, NULL, "server sent data after its reply to STARTTLS",
				     false);
				return;
			}
			c->state = ST_TLS;
			c->ops->starttls(c->arg);
			return;
		}
		if (c->tls_policy == SMTP_CLIENT_TLS_REQUIRED) {
			fail(c, r, NULL, true);
			return;
		}
		/* opportunistic: go on in plain text */
		if (c->user != NULL)
			start_auth(c);
		else
			session_up(c);
		return;
	case ST_AUTH_PLAIN:
	case ST_AUTH_DONE:
		if (r->code == 235)
			session_up(c);
		else
			fail(c, r, NULL, true);
		return;
	case ST_AUTH_LOGIN_USER:
		if (r->code == 334)
			send_login_secret(c, c->user, ST_AUTH_LOGIN_PASS);
		else
			fail(c, r, NULL, true);
		return;
	case ST_AUTH_LOGIN_PASS:
		if (r->code == 334)
			send_login_secret(c, c->pass, ST_AUTH_DONE);
		else
			fail(c, r, NULL, true);
		return;
	case ST_READY:
		fail(c, NULL, "unexpected reply from the server while idle", false);
		return;
	case ST_MAIL_RCPT:
		mail_rcpt_reply(c, r);
		return;
	case ST_DATA:
		if (r->code == 354) {
			c->state = ST_BODY;
			c->line_start = true;
			c->cr = false;
			smtp_client_pump(c);
			return;
		}
		settle_accepted(c, r, SMTP_CLIENT_STAGE_DATA);
		start_rset(c);
		return;
	case ST_BODY:
		/* a reply before our final dot: the server gave up on the message */
		settle_accepted(c, r, SMTP_CLIENT_STAGE_DATA);
		fail(c, r, NULL, false);
		return;
	case ST_DOT:
		settle_accepted(c, r, SMTP_CLIENT_STAGE_DOT);
		txn_done(c);
		return;
	case ST_RSET:
		if (cls != 2) {
			fail(c, r, NULL, true);
			return;
		}
		txn_done(c);
		return;
	case ST_QUIT:
		c->state = ST_CLOSED;
		if (c->ops->closed != NULL)
			c->ops->closed(c->arg, c->close_reason);
		return;
	case ST_TLS:
	case ST_CLOSED:
		return;
	}
}

void smtp_client_input(struct smtp_client *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t off = 0, used;

	while (off < len && c->state != ST_CLOSED) {
		enum smtp_client_reply_status st;
		if (c->state == ST_TLS) {
			fail(c, NULL, "server sent data before the TLS handshake", false);
			return;
		}
		st = smtp_client_reply_parse(&c->rp, p + off, len - off, &used);
		off += used;
		if (st == SMTP_CLIENT_REPLY_NEED_MORE)
			return;
		if (st != SMTP_CLIENT_REPLY_OK) {
			fail(c, NULL,
			     st == SMTP_CLIENT_REPLY_ERR_TOO_LONG
			             ? "reply from the server too long"
			             : "malformed reply from the server",
			     false);
			return;
		}
		handle_reply(c, &c->rp.reply, off < len);
	}
}

/* --- the rest of the interface ------------------------------------------------------------ */

struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg,
                                    const struct smtp_client_ops *ops, void *arg,
                                    const char **errstr_r)
{
	struct smtp_client *c;

	if (!valid_name(cfg->helo_name)) {
		*errstr_r = "invalid HELO name";
		return NULL;
	}
	if ((cfg->auth_user == NULL) != (cfg->auth_pass == NULL) ||
	    (cfg->auth_user != NULL && (cfg->auth_user[0] == '\0' || strlen(cfg->auth_user) > 255 ||
	                                strlen(cfg->auth_pass) > 255))) {
		*errstr_r = "AUTH needs a user and a password";
		return NULL;
	}
	if (ops->body == NULL || ops->starttls == NULL) {
		*errstr_r = "the body and starttls callbacks are required";
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->helo = xstrdup(cfg->helo_name);
	if (cfg->auth_user != NULL) {
		c->user = xstrdup(cfg->auth_user);
		c->pass = xstrdup(cfg->auth_pass);
	}
	c->tls_policy = cfg->tls;
	c->tls_active = cfg->tls_active;
	c->auth_plaintext = cfg->auth_plaintext;
	c->no_pipelining = cfg->no_pipelining;
	c->out_high = cfg->out_high ? cfg->out_high : OUT_HIGH_DEFAULT;
	c->ops = ops;
	c->arg = arg;
	c->state = ST_GREETING;
	buf_init(&c->out, 0);
	smtp_client_reply_init(&c->rp);
	return c;
}

static void wipe_free(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void smtp_client_free(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;
	size_t i;

	if (c == NULL)
		return;
	if (c->rs != NULL && c->msg != NULL)
		for (i = 0; i < c->msg->nrcpts; i++)
			free(c->rs[i].text);
	free(c->rs);
	free(c->helo);
	wipe_free(c->user);
	wipe_free(c->pass);
	free(c->close_reason);
	/* the output may hold an AUTH line */
	if (c->out.data != NULL)
		OPENSSL_cleanse(c->out.data, c->out.cap);
	buf_free(&c->out);
	free(c);
	*cp = NULL;
}

struct buf *smtp_client_output(struct smtp_client *c)
{
	return &c->out;
}

void smtp_client_tls_done(struct smtp_client *c, bool ok)
{
	if (c->state != ST_TLS)
		return;
	if (!ok) {
		fail(c, NULL, "TLS handshake failed", false);
		return;
	}
	/* RFC 3207 4.2: forget everything learnt before TLS, EHLO again */
	c->tls_active = true;
	memset(&c->ext, 0, sizeof(c->ext));
	smtp_client_reply_init(&c->rp);
	cmd(c, "EHLO %s", c->helo);
	c->state = ST_EHLO;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg,
                     const char **errstr_r)
{
	size_t i;

	if (c->msg != NULL || c->quit_wanted || c->state == ST_QUIT || c->state == ST_CLOSED) {
		*errstr_r = "the client is busy or closed";
		return -1;
	}
	if (msg->nrcpts == 0 || msg->from == NULL || !valid_addr(msg->from, msg->smtputf8, true)) {
		*errstr_r = "invalid sender or no recipients";
		return -1;
	}
	for (i = 0; i < msg->nrcpts; i++) {
		const struct smtp_client_rcpt *r = &msg->rcpts[i];
		if (r->addr == NULL || !valid_addr(r->addr, msg->smtputf8, false) ||
		    (r->orcpt != NULL &&
		     (strlen(r->orcpt) > 160 || !valid_addr(r->orcpt, true, false)))) {
			*errstr_r = "invalid recipient address";
			return -1;
		}
	}
	if (msg->envid != NULL) {
		/* RFC 3461 4.4: at most 100 characters, printable ASCII */
		if (strlen(msg->envid) > 100 || !valid_addr(msg->envid, false, false)) {
			*errstr_r = "invalid ENVID";
			return -1;
		}
	}
	c->msg = msg;
	c->rs = xcalloc(msg->nrcpts, sizeof(*c->rs));
	c->started = false;
	if (c->state == ST_READY)
		start_txn(c);
	return 0;
}

void smtp_client_quit(struct smtp_client *c)
{
	if (c->state == ST_CLOSED || c->state == ST_QUIT)
		return;
	if (c->state == ST_READY && c->msg == NULL) {
		start_quit(c);
		return;
	}
	c->quit_wanted = true;
}

void smtp_client_abort(struct smtp_client *c, const char *reason)
{
	enum smtp_client_stage stage;
	size_t i;

	if (c->state == ST_CLOSED)
		return;
	stage = current_stage(c);
	c->state = ST_CLOSED;
	if (c->msg != NULL) {
		for (i = 0; i < c->msg->nrcpts; i++)
			set_rcpt(c, i, SMTP_CLIENT_TEMPFAIL, stage, 0, "", reason);
		finish_msg(c);
	}
}

unsigned smtp_client_timeout(const struct smtp_client *c)
{
	/* RFC 5321 4.5.3.2 */
	switch (c->state) {
	case ST_GREETING:  /* 4.5.3.2.1: 5 minutes */
	case ST_MAIL_RCPT: /* 4.5.3.2.2, 4.5.3.2.3: 5 minutes */
	case ST_EHLO:
	case ST_HELO:
	case ST_STARTTLS:
	case ST_AUTH_PLAIN:
	case ST_AUTH_LOGIN_USER:
	case ST_AUTH_LOGIN_PASS:
	case ST_AUTH_DONE:
	case ST_RSET:
		return 300;
	case ST_DATA: /* 4.5.3.2.4: DATA initiation, 2 minutes */
		return 120;
	case ST_BODY: /* 4.5.3.2.5: each data block written, 3 minutes */
		return 180;
	case ST_DOT: /* 4.5.3.2.6: DATA termination, 10 minutes */
		return 600;
	case ST_QUIT:
		return 60;
	case ST_TLS:
	case ST_READY:
	case ST_CLOSED:
		return 0;
	}
	return 0;
}

bool smtp_client_idle(const struct smtp_client *c)
{
	return c->state == ST_READY && c->msg == NULL;
}

bool smtp_client_closed(const struct smtp_client *c)
{
	return c->state == ST_CLOSED;
}

bool smtp_client_tls_active(const struct smtp_client *c)
{
	return c->tls_active;
}

const struct smtp_client_ext *smtp_client_extensions(const struct smtp_client *c)
{
	return &c->ext;
}

const char *smtp_client_state_name(const struct smtp_client *c)
{
	return state_names[c->state];
}
