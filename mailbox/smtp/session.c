/*
 * mailbox/smtp/session.c -- the SMTP server state machine.
 *
 * The session is a loop over its input buffer (smtp_session_process) in one
 * of a few input modes: command lines, a SASL continuation line, a line
 * being skipped because it was too long, DATA content, a BDAT chunk, or
 * nothing at all while a TLS handshake runs.  Each command handler checks,
 * in a fixed order, sequence and policy (role, TLS, AUTH), then syntax,
 * then limits, and either answers at once or issues one request through
 * the ops and marks it pending; the loop stops while a request is pending
 * and the matching *_done() call answers and restarts the loop.  Replies
 * only go through reply(), which also counts 5xx errors towards the
 * disconnect limit, so the reply table in reply.h is the complete list of
 * what can be said.
 *
 * Transaction data (sender, recipients, DSN parameters) is heap-allocated
 * per transaction and freed in one place, txn_reset(); the envelope handed
 * to the store points into it and stays valid until the message ends.
 */
#include "mailbox/smtp/session.h"

#include "mailbox/smtp/received.h"
#include "mailbox/smtp/sasl.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum mode {
	M_COMMAND = 0,
	M_AUTH,     /* waiting for a SASL response line */
	M_DISCARD,  /* skipping the rest of an over-long line */
	M_DATA,     /* DATA content until CRLF.CRLF */
	M_BDAT,     /* the octets of a BDAT chunk */
	M_TLS_WAIT, /* STARTTLS accepted: input is dropped until the handshake */
	M_CLOSED,
};

enum pending {
	P_NONE = 0,
	P_AUTH,
	P_MAIL,
	P_RCPT,
	P_COMMIT,
};

enum sasl_step {
	SASL_PLAIN = 0,
	SASL_LOGIN_USER,
	SASL_LOGIN_PASS,
};

/* RFC 4616 / draft-murchison-sasl-login: the LOGIN challenges, base64 of
 * "Username:" and "Password:". */
#define LOGIN_CHALLENGE_USER "VXNlcm5hbWU6"
#define LOGIN_CHALLENGE_PASS "UGFzc3dvcmQ6"

struct smtp_session {
	struct smtp_session_config cfg; /* strings are our own copies */
	const struct smtp_session_ops *ops;
	void *ctx;
	struct buf in, out;

	char *client_ip;
	bool tls;
	char *tls_version, *tls_cipher;
	bool helo_seen, esmtp;
	char helo[SMTP_HELO_MAX + 1];
	char *auth_user;
	unsigned errors;
	bool closing, processing, greeted;
	enum mode mode;
	enum pending pending;
	struct smtp_cmd cmd; /* the command being handled (too big for the stack) */

	/* SASL exchange in progress */
	enum sasl_step sasl;
	char *login_user; /* LOGIN: the decoded user name between the steps */
	char *auth_login; /* the name under check, for auth_done(account NULL) */

	/* the transaction */
	bool in_txn;
	char *mail_from;
	bool smtputf8;
	enum smtp_body body;
	uint64_t size_declared;
	enum smtp_ret ret;
	char *envid;
	struct smtp_rcpt *rcpts;
	size_t nrcpts, caprcpts;
	struct smtp_rcpt rcpt_check; /* the recipient being checked */
	unsigned txn_count;
	char txn_id[80];
	struct smtp_envelope env;
	bool msg_open; /* message_begin done, neither committed nor aborted */
	bool bdat_used;
	struct smtp_data dec;

	/* the BDAT chunk being read */
	uint64_t bdat_remaining;
	uint64_t bdat_size;
	bool bdat_last;
	enum smtp_reply bdat_error; /* SMTP_R_COUNT: none */
};

static void txn_reset(struct smtp_session *s);
static void sasl_end(struct smtp_session *s);

/* --- replies ---------------------------------------------------------------- */

static void close_session(struct smtp_session *s)
{
	txn_reset(s);
	sasl_end(s);
	s->closing = true;
	s->mode = M_CLOSED;
}

static void replied(struct smtp_session *s, enum smtp_reply r)
{
	if (s->ops->replied != NULL)
		s->ops->replied(s->ctx, r);
}

static void abuse(struct smtp_session *s, enum smtp_abuse kind)
{
	if (s->ops->abuse != NULL)
		s->ops->abuse(s->ctx, kind);
}

static void reply_arg(struct smtp_session *s, enum smtp_reply r, const char *arg)
{
	smtp_reply_format(&s->out, r, false, arg);
	replied(s, r);
	/* Permanent errors count towards the per-session limit; the limit
	 * ends sessions that probe addresses or send garbage. */
	if (smtp_reply_info(r)->code >= 500 && !s->closing && ++s->errors >= s->cfg.max_errors) {
		smtp_reply_format(&s->out, SMTP_R_CLOSE_ERRORS, false, s->cfg.hostname);
		replied(s, SMTP_R_CLOSE_ERRORS);
		abuse(s, SMTP_ABUSE_TOO_MANY_ERRORS);
		close_session(s);
	}
}

static void reply(struct smtp_session *s, enum smtp_reply r)
{
	reply_arg(s, r, NULL);
}

/* --- policy ----------------------------------------------------------------- */

/* RFC 3207 4: submission requires TLS before anything that matters. */
static bool need_tls(const struct smtp_session *s)
{
	return s->cfg.role == SMTP_ROLE_SUBMISSION && !s->tls && !s->cfg.plaintext_auth;
}

/* TLS, or a listener that allows AUTH without it (allow_plaintext_auth). */
static bool auth_transport_ok(const struct smtp_session *s)
{
	return s->tls || s->cfg.plaintext_auth;
}

static bool starttls_offered(const struct smtp_session *s)
{
	return !s->tls && s->cfg.starttls_available && s->cfg.role != SMTP_ROLE_SUBMISSIONS;
}

static bool auth_enabled(const struct smtp_session *s)
{
	return s->cfg.role != SMTP_ROLE_MX || s->cfg.mx_auth;
}

/* AUTH PLAIN and LOGIN send the password in the clear: only under TLS,
 * unless the listener says the transport is safe (allow_plaintext_auth). */
static bool auth_offered(const struct smtp_session *s)
{
	return auth_enabled(s) && auth_transport_ok(s);
}

static bool auth_required(const struct smtp_session *s)
{
	return s->cfg.role != SMTP_ROLE_MX;
}

/* --- transaction ------------------------------------------------------------ */

static void rcpt_free(struct smtp_rcpt *r)
{
	free(r->addr);
	free(r->orcpt);
	memset(r, 0, sizeof(*r));
}

static void txn_reset(struct smtp_session *s)
{
	if (s->msg_open) {
		s->msg_open = false;
		s->ops->message_abort(s->ctx);
	}
	for (size_t i = 0; i < s->nrcpts; i++)
		rcpt_free(&s->rcpts[i]);
	s->nrcpts = 0;
	rcpt_free(&s->rcpt_check);
	free(s->mail_from);
	free(s->envid);
	s->mail_from = s->envid = NULL;
	s->in_txn = false;
	s->smtputf8 = false;
	s->body = SMTP_BODY_NONE;
	s->size_declared = 0;
	s->ret = SMTP_RET_NONE;
	s->bdat_used = false;
	memset(&s->dec, 0, sizeof(s->dec));
	memset(&s->env, 0, sizeof(s->env));
}

static int sink(void *ctx, const uint8_t *p, size_t n)
{
	struct smtp_session *s = ctx;

	return s->ops->message_write(s->ctx, p, n);
}

/*
 * Open the message in the store and write our Received: header (RFC 5321
 * 4.4) ahead of the content.  -1 if the store refused to open it.
 */
static int message_begin(struct smtp_session *s, enum smtp_data_mode mode)
{
	struct buf hdr;
	struct smtp_received rv;

	s->txn_count++;
	snprintf(s->txn_id, sizeof(s->txn_id), "%s-%u", s->cfg.session_id, s->txn_count);
	s->env = (struct smtp_envelope){
	        .id = s->txn_id,
	        .mail_from = s->mail_from,
	        .smtputf8 = s->smtputf8,
	        .body = s->body,
	        .size_declared = s->size_declared,
	        .ret = s->ret,
	        .envid = s->envid,
	        .rcpts = s->rcpts,
	        .nrcpts = s->nrcpts,
	        .auth_user = s->auth_user,
	        .helo = s->helo,
	        .client_ip = s->client_ip,
	        .tls = s->tls,
	};
	if (s->ops->message_begin(s->ctx, &s->env) < 0)
		return -1;
	s->msg_open = true;
	smtp_parser_data_init(&s->dec, mode, s->cfg.max_message_size, sink, s);

	rv = (struct smtp_received){
	        .helo = s->helo_seen ? s->helo : NULL,
	        .client_ip = s->client_ip,
	        .hostname = s->cfg.hostname,
	        .listener = s->cfg.listener,
	        .protocol =
	                smtp_received_protocol(s->esmtp, s->smtputf8, s->tls, s->auth_user != NULL),
	        .tls_version = s->tls ? (s->tls_version ? s->tls_version : "TLS") : NULL,
	        .tls_cipher = s->tls ? s->tls_cipher : NULL,
	        .id = s->txn_id,
	        .rcpt = s->nrcpts == 1 ? s->rcpts[0].addr : NULL,
	        .when = s->ops->now != NULL ? s->ops->now(s->ctx) : time(NULL),
	};
	buf_init(&hdr, 0);
	smtp_received_format(&hdr, &rv);
	/* The header does not count towards the client's size limit. */
	if (s->ops->message_write(s->ctx, buf_ptr(&hdr), buf_len(&hdr)) < 0)
		s->dec.sink_failed = true;
	buf_free(&hdr);
	return 0;
}

/* The content is complete and checked: hand it to the store for good. */
static void message_commit(struct smtp_session *s)
{
	s->msg_open = false; /* the store owns it now */
	s->pending = P_COMMIT;
	s->ops->message_commit(s->ctx);
}

/* Oversize or a failed write: drop the message, answer, reset.  Returns
 * false when the content is fine. */
static bool message_failed(struct smtp_session *s)
{
	enum smtp_reply r;

	if (s->dec.oversize)
		r = SMTP_R_MSG_TOO_BIG; /* RFC 1870: 552 5.3.4 */
	else if (s->dec.sink_failed)
		r = SMTP_R_STORE_WRITE_FAIL;
	else
		return false;
	txn_reset(s);
	reply(s, r);
	return true;
}

/* --- SASL ------------------------------------------------------------------- */

static void wipe_free(char **p)
{
	if (*p != NULL) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static void sasl_end(struct smtp_session *s)
{
	wipe_free(&s->login_user);
	if (s->mode == M_AUTH)
		s->mode = M_COMMAND;
}

static void auth_check(struct smtp_session *s, const char *authzid, const char *user,
                       const char *password)
{
	sasl_end(s);
	wipe_free(&s->auth_login);
	s->auth_login = xstrdup(user);
	s->pending = P_AUTH;
	s->ops->auth_check(s->ctx, authzid, user, password);
}

/*
 * Decode one SASL message (an initial response or a continuation line)
 * and move the exchange on.  The decoded bytes live in a heap buffer that
 * is wiped before it is freed.
 */
static void sasl_input(struct smtp_session *s, const uint8_t *b64, size_t len)
{
	size_t cap = len / 4 * 3 + 4, n;
	uint8_t *msg = xmalloc(cap);
	const char *authzid, *authcid, *passwd;

	if (smtp_sasl_b64_decode(b64, len, msg, cap - 1, &n) < 0) {
		sasl_end(s);
		reply(s, SMTP_R_AUTH_BAD_B64); /* RFC 4954 4 */
		goto out;
	}
	msg[n] = '\0';
	switch (s->sasl) {
	case SASL_PLAIN:
		if (smtp_sasl_plain_split(msg, n, &authzid, &authcid, &passwd) < 0) {
			sasl_end(s);
			reply(s, SMTP_R_AUTH_BAD_PLAIN);
			goto out;
		}
		auth_check(s, authzid, authcid, passwd);
		break;
	case SASL_LOGIN_USER:
		if (memchr(msg, '\0', n) != NULL) {
			sasl_end(s);
			reply(s, SMTP_R_AUTH_BAD_PLAIN);
			goto out;
		}
		wipe_free(&s->login_user);
		s->login_user = xstrdup((const char *)msg);
		s->sasl = SASL_LOGIN_PASS;
		s->mode = M_AUTH;
		reply_arg(s, SMTP_R_AUTH_CHALLENGE, LOGIN_CHALLENGE_PASS);
		break;
	case SASL_LOGIN_PASS: {
		char *user = s->login_user;

		if (memchr(msg, '\0', n) != NULL) {
			sasl_end(s);
			reply(s, SMTP_R_AUTH_BAD_PLAIN);
			goto out;
		}
		s->login_user = NULL;
		auth_check(s, "", user, (const char *)msg);
		wipe_free(&user);
		break;
	}
	}
out:
	explicit_bzero(msg, cap);
	free(msg);
}

/* A line in M_AUTH: "*" cancels (RFC 4954 4), anything else is base64. */
static void auth_response(struct smtp_session *s, const uint8_t *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		sasl_end(s);
		reply(s, SMTP_R_AUTH_CANCELLED);
		return;
	}
	sasl_input(s, line, len);
}

/* --- commands --------------------------------------------------------------- */

static const char *usage(enum smtp_verb verb)
{
	switch (verb) {
	case SMTP_V_EHLO:
		return "EHLO hostname";
	case SMTP_V_HELO:
		return "HELO hostname";
	case SMTP_V_MAIL:
		return "MAIL FROM:<address> [parameters]";
	case SMTP_V_RCPT:
		return "RCPT TO:<address> [parameters]";
	case SMTP_V_VRFY:
		return "VRFY address";
	case SMTP_V_EXPN:
		return "EXPN list";
	case SMTP_V_AUTH:
		return "AUTH mechanism [initial-response]";
	default:
		return smtp_parser_verb_name(verb); /* commands without arguments */
	}
}

/* The reply for an argument-level parse error. */
static void reply_parse_error(struct smtp_session *s, enum smtp_parse_status st)
{
	switch (st) {
	case SMTP_P_ERR_ADDRESS:
		reply(s, s->cmd.verb == SMTP_V_MAIL ? SMTP_R_SENDER_SYNTAX : SMTP_R_RCPT_SYNTAX);
		break;
	case SMTP_P_ERR_PARAM:
		reply(s, SMTP_R_PARAM);
		break;
	case SMTP_P_ERR_UNKNOWN_PARAM:
		reply(s, SMTP_R_PARAM_UNKNOWN); /* RFC 5321 4.1.1.11 */
		break;
	default:
		reply_arg(s, SMTP_R_ARGS, usage(s->cmd.verb));
		break;
	}
}

static void cmd_helo(struct smtp_session *s, enum smtp_parse_status st)
{
	const char *lines[12];
	size_t n = 0;
	char size_line[40];

	if (st != SMTP_P_OK) {
		reply_parse_error(s, st);
		return;
	}
	/* RFC 5321 4.1.4: a repeated EHLO/HELO resets the transaction. */
	txn_reset(s);
	s->helo_seen = true;
	s->esmtp = s->cmd.verb == SMTP_V_EHLO;
	memcpy(s->helo, s->cmd.helo, sizeof(s->helo));
	if (!s->esmtp) {
		reply_arg(s, SMTP_R_HELO, s->cfg.hostname);
		return;
	}
	snprintf(size_line, sizeof(size_line), "SIZE %" PRIu64, s->cfg.max_message_size);
	lines[n++] = s->cfg.hostname;
	lines[n++] = "PIPELINING";          /* RFC 2920 */
	lines[n++] = size_line;             /* RFC 1870 */
	lines[n++] = "8BITMIME";            /* RFC 6152 */
	lines[n++] = "SMTPUTF8";            /* RFC 6531 */
	lines[n++] = "ENHANCEDSTATUSCODES"; /* RFC 2034 */
	lines[n++] = "CHUNKING";            /* RFC 3030 */
	lines[n++] = "DSN";                 /* RFC 3461 */
	if (starttls_offered(s))
		lines[n++] = "STARTTLS"; /* RFC 3207 */
	if (auth_offered(s))
		lines[n++] = "AUTH PLAIN LOGIN"; /* RFC 4954 */
	for (size_t i = 0; i < n; i++)
		smtp_reply_format(&s->out, SMTP_R_EHLO, i + 1 < n, lines[i]);
	replied(s, SMTP_R_EHLO);
}

static void cmd_starttls(struct smtp_session *s, enum smtp_parse_status st)
{
	if (st != SMTP_P_OK) {
		reply_parse_error(s, st);
	} else if (s->tls) {
		reply(s, SMTP_R_STARTTLS_ACTIVE);
	} else if (!starttls_offered(s)) {
		reply(s, SMTP_R_STARTTLS_UNAVAILABLE);
	} else if (!s->esmtp) {
		reply(s, SMTP_R_NEED_EHLO);
	} else if (s->ops->starttls(s->ctx) < 0) {
		reply(s, SMTP_R_STARTTLS_TEMPFAIL);
	} else {
		reply(s, SMTP_R_STARTTLS_READY);
		/* CVE-2011-0411: whatever the client pipelined after STARTTLS was
		 * sent in the clear and must not be executed after the
		 * handshake. */
		buf_reset(&s->in);
		txn_reset(s);
		s->mode = M_TLS_WAIT;
	}
}

static void cmd_auth(struct smtp_session *s, enum smtp_parse_status st)
{
	struct smtp_cmd *cmd = &s->cmd;

	if (!s->esmtp) {
		reply(s, SMTP_R_NEED_EHLO);
	} else if (!auth_enabled(s)) {
		reply(s, SMTP_R_AUTH_DISABLED);
	} else if (!auth_transport_ok(s)) {
		reply(s, SMTP_R_AUTH_NEED_TLS); /* RFC 4954 6: 538 5.7.11 */
	} else if (s->auth_user != NULL) {
		reply(s, SMTP_R_AUTH_ALREADY); /* RFC 4954 4 */
	} else if (s->in_txn) {
		reply(s, SMTP_R_AUTH_IN_TXN); /* RFC 4954 4 */
	} else if (st != SMTP_P_OK) {
		reply_parse_error(s, st);
	} else if (strcmp(cmd->mech, "PLAIN") == 0) {
		s->sasl = SASL_PLAIN;
		if (cmd->has_ir) {
			sasl_input(s, cmd->ir, cmd->ir_len);
		} else {
			s->mode = M_AUTH;
			reply_arg(s, SMTP_R_AUTH_CHALLENGE, ""); /* "334 " */
		}
	} else if (strcmp(cmd->mech, "LOGIN") == 0) {
		if (cmd->has_ir) {
			s->sasl = SASL_LOGIN_USER;
			sasl_input(s, cmd->ir, cmd->ir_len);
		} else {
			s->sasl = SASL_LOGIN_USER;
			s->mode = M_AUTH;
			reply_arg(s, SMTP_R_AUTH_CHALLENGE, LOGIN_CHALLENGE_USER);
		}
	} else {
		reply(s, SMTP_R_AUTH_MECH); /* RFC 4954 4: 504 5.5.4 */
	}
}

static void cmd_mail(struct smtp_session *s, enum smtp_parse_status st)
{
	struct smtp_cmd *cmd = &s->cmd;
	bool params = cmd->has_size || cmd->body != SMTP_BODY_NONE || cmd->smtputf8 ||
	              cmd->ret != SMTP_RET_NONE || cmd->has_envid || cmd->has_auth;

	if (!s->helo_seen) {
		reply(s, SMTP_R_NEED_HELO);
	} else if (s->in_txn) {
		reply(s, SMTP_R_NESTED_MAIL); /* RFC 5321 4.1.4 */
	} else if (auth_required(s) && s->auth_user == NULL) {
		reply(s, SMTP_R_AUTH_REQUIRED); /* RFC 4954 6: 530 5.7.0 */
	} else if (st != SMTP_P_OK) {
		reply_parse_error(s, st);
	} else if ((params && !s->esmtp) || cmd->body == SMTP_BODY_BINARYMIME) {
		/* Extensions only after EHLO (RFC 5321 2.2.1); BINARYMIME is
		 * not offered. */
		reply(s, SMTP_R_PARAM_UNKNOWN);
	} else if (cmd->has_size && cmd->size > s->cfg.max_message_size) {
		reply(s, SMTP_R_MAIL_TOO_BIG); /* RFC 1870: 552 5.3.4 at MAIL */
	} else if (cmd->path.utf8 && !cmd->smtputf8) {
		reply(s, SMTP_R_MAIL_UTF8); /* RFC 6531 3.5: 553 5.6.7 */
	} else {
		s->mail_from = xstrdup(cmd->path.addr);
		s->smtputf8 = cmd->smtputf8;
		s->body = cmd->body;
		s->size_declared = cmd->has_size ? cmd->size : 0;
		s->ret = cmd->ret;
		s->envid = cmd->has_envid ? xstrdup(cmd->envid) : NULL;
		/* AUTH= (RFC 4954 5) is parsed and ignored: we never trust
		 * another host's claim about who submitted a message. */
		if (s->ops->mail_check == NULL) {
			s->in_txn = true;
			reply(s, SMTP_R_MAIL_OK);
			return;
		}
		s->pending = P_MAIL;
		s->ops->mail_check(s->ctx, s->mail_from, s->auth_user);
	}
}

static void cmd_rcpt(struct smtp_session *s, enum smtp_parse_status st)
{
	struct smtp_cmd *cmd = &s->cmd;

	if (!s->in_txn) {
		reply(s, SMTP_R_NEED_MAIL);
	} else if (st != SMTP_P_OK) {
		reply_parse_error(s, st);
	} else if (s->nrcpts >= s->cfg.max_recipients) {
		reply(s, SMTP_R_RCPT_TOO_MANY); /* RFC 5321 4.5.3.1.10 */
	} else if (cmd->path.utf8 && !s->smtputf8) {
		reply(s, SMTP_R_RCPT_UTF8); /* RFC 6531 3.5 */
	} else {
		rcpt_free(&s->rcpt_check);
		s->rcpt_check.addr = xstrdup(cmd->path.addr);
		s->rcpt_check.notify = cmd->notify;
		s->rcpt_check.orcpt = cmd->has_orcpt ? xstrdup(cmd->orcpt) : NULL;
		s->pending = P_RCPT;
		s->ops->rcpt_check(s->ctx, s->rcpt_check.addr);
	}
}

static void cmd_data(struct smtp_session *s, enum smtp_parse_status st)
{
	if (st != SMTP_P_OK) {
		reply_parse_error(s, st);
	} else if (!s->in_txn) {
		reply(s, SMTP_R_NEED_MAIL);
	} else if (s->bdat_used) {
		/* RFC 3030 2: DATA after BDAT is 503 and leaves the state
		 * indeterminate; we drop the transaction. */
		txn_reset(s);
		reply(s, SMTP_R_DATA_AFTER_BDAT);
	} else if (s->nrcpts == 0) {
		reply(s, SMTP_R_NEED_RCPT); /* RFC 5321 3.3, RFC 2920 3.1 */
	} else if (message_begin(s, SMTP_DATA_DOT) < 0) {
		txn_reset(s);
		reply(s, SMTP_R_STORE_BEGIN_FAIL);
	} else {
		reply(s, SMTP_R_DATA_GO);
		s->mode = M_DATA;
	}
}

/* DATA content ended with CRLF.CRLF. */
static void data_end(struct smtp_session *s)
{
	s->mode = M_COMMAND;
	if (!message_failed(s))
		message_commit(s);
}

static void bdat_chunk_end(struct smtp_session *s)
{
	char n[24];

	s->mode = M_COMMAND;
	if (s->bdat_error != SMTP_R_COUNT) {
		txn_reset(s);
		reply(s, s->bdat_error);
		return;
	}
	if (message_failed(s))
		return;
	if (!s->bdat_last) {
		snprintf(n, sizeof(n), "%" PRIu64, s->bdat_size);
		reply_arg(s, SMTP_R_BDAT_OK, n); /* RFC 3030 2 */
		return;
	}
	smtp_parser_data_finish(&s->dec);
	if (!message_failed(s))
		message_commit(s);
}

/*
 * RFC 3030 2: the chunk octets follow the command line whatever we think
 * of the command, so every outcome but an unparsable size reads the chunk
 * first and answers after it.
 */
static void cmd_bdat(struct smtp_session *s, enum smtp_parse_status st)
{
	enum smtp_reply err = SMTP_R_COUNT;

	if (st != SMTP_P_OK) {
		/* Without a size the chunk cannot be skipped: stop here. */
		reply(s, SMTP_R_BDAT_SYNTAX);
		close_session(s);
		return;
	}
	if (need_tls(s))
		err = SMTP_R_NEED_TLS;
	else if (!s->esmtp)
		err = SMTP_R_NEED_EHLO;
	else if (!s->in_txn)
		err = SMTP_R_NEED_MAIL;
	else if (s->nrcpts == 0)
		err = SMTP_R_NEED_RCPT;
	else if (!s->msg_open && message_begin(s, SMTP_DATA_RAW) < 0)
		err = SMTP_R_STORE_BEGIN_FAIL;
	if (err == SMTP_R_COUNT) {
		s->bdat_used = true;
		/* Oversize is known from the size alone: skip the feeding. */
		if (s->dec.size > s->cfg.max_message_size ||
		    s->cfg.max_message_size - s->dec.size < s->cmd.chunk_size)
			s->dec.oversize = true;
	}
	s->bdat_error = err;
	s->bdat_size = s->bdat_remaining = s->cmd.chunk_size;
	s->bdat_last = s->cmd.last;
	s->mode = M_BDAT;
	if (s->bdat_remaining == 0)
		bdat_chunk_end(s);
}

static void handle_command(struct smtp_session *s, const uint8_t *line, size_t len)
{
	struct smtp_cmd *cmd = &s->cmd;
	enum smtp_parse_status st = smtp_parser_command(line, len, cmd, NULL);

	if (st == SMTP_P_ERR_SYNTAX) {
		reply(s, SMTP_R_SYNTAX);
		return;
	}
	if (st == SMTP_P_ERR_UNKNOWN) {
		reply(s, SMTP_R_UNRECOGNIZED);
		return;
	}
	switch (cmd->verb) {
	case SMTP_V_EHLO:
	case SMTP_V_HELO:
		cmd_helo(s, st);
		return;
	case SMTP_V_NOOP:
		reply(s, SMTP_R_OK);
		return;
	case SMTP_V_QUIT:
		if (st != SMTP_P_OK) {
			reply_parse_error(s, st);
			return;
		}
		reply(s, SMTP_R_QUIT);
		close_session(s);
		return;
	case SMTP_V_STARTTLS:
		cmd_starttls(s, st);
		return;
	case SMTP_V_BDAT:
		cmd_bdat(s, st);
		return;
	default:
		break;
	}
	/* RFC 3207 4: everything else waits for TLS where TLS is required. */
	if (need_tls(s)) {
		reply(s, SMTP_R_NEED_TLS);
		return;
	}
	switch (cmd->verb) {
	case SMTP_V_AUTH:
		cmd_auth(s, st);
		break;
	case SMTP_V_MAIL:
		cmd_mail(s, st);
		break;
	case SMTP_V_RCPT:
		cmd_rcpt(s, st);
		break;
	case SMTP_V_DATA:
		cmd_data(s, st);
		break;
	case SMTP_V_RSET:
		if (st != SMTP_P_OK) {
			reply_parse_error(s, st);
			break;
		}
		txn_reset(s);
		reply(s, SMTP_R_OK);
		break;
	case SMTP_V_VRFY:
		/* RFC 5321 3.5.3: 252 when we will not tell */
		if (st != SMTP_P_OK)
			reply_parse_error(s, st);
		else
			reply(s, SMTP_R_VRFY);
		break;
	case SMTP_V_EXPN:
		if (st != SMTP_P_OK)
			reply_parse_error(s, st);
		else
			reply(s, SMTP_R_EXPN);
		break;
	case SMTP_V_HELP:
		reply(s, SMTP_R_HELP);
		break;
	default:
		ASSERT(!"unhandled verb");
	}
}

/* --- the input loop --------------------------------------------------------- */

/* One step of input handling; false when it needs more input. */
static bool step(struct smtp_session *s)
{
	uint8_t *p = buf_ptr(&s->in);
	size_t avail = buf_len(&s->in), consumed, line_len;
	enum smtp_parse_status st;

	switch (s->mode) {
	case M_COMMAND:
	case M_AUTH:
		st = smtp_parser_line(p, avail, s->cfg.max_line, &line_len, &consumed);
		if (st == SMTP_P_NEED_MORE)
			return false;
		if (st == SMTP_P_TOO_LONG) {
			bool in_auth = s->mode == M_AUTH;

			sasl_end(s);
			s->mode = M_DISCARD;
			/* RFC 5321 4.5.3.1.4 / RFC 4954 4 */
			reply(s, in_auth ? SMTP_R_AUTH_TOO_LONG : SMTP_R_LINE_TOO_LONG);
			return true;
		}
		/* The line stays readable after buf_consume (nothing appends
		 * until we return), and is wiped afterwards: it may hold SASL
		 * credentials. */
		buf_consume(&s->in, consumed);
		if (s->mode == M_AUTH)
			auth_response(s, p, line_len);
		else
			handle_command(s, p, line_len);
		explicit_bzero(p, consumed);
		return true;
	case M_DISCARD:
		st = smtp_parser_skip_line(p, avail, &consumed);
		explicit_bzero(p, consumed);
		buf_consume(&s->in, consumed);
		if (st == SMTP_P_OK && s->mode == M_DISCARD)
			s->mode = M_COMMAND;
		return st == SMTP_P_OK;
	case M_DATA:
		if (smtp_parser_data_feed(&s->dec, p, avail, &consumed) == SMTP_D_DONE) {
			buf_consume(&s->in, consumed);
			data_end(s);
			return true;
		}
		buf_consume(&s->in, consumed);
		return false;
	case M_BDAT: {
		size_t n = avail;

		if (s->bdat_remaining < n)
			n = (size_t)s->bdat_remaining;
		if (s->bdat_error == SMTP_R_COUNT && !s->dec.oversize)
			(void)smtp_parser_data_feed(&s->dec, p, n, &consumed);
		buf_consume(&s->in, n);
		s->bdat_remaining -= n;
		if (s->bdat_remaining > 0)
			return false;
		bdat_chunk_end(s);
		return true;
	}
	case M_TLS_WAIT:
	case M_CLOSED:
		buf_reset(&s->in);
		return false;
	}
	return false;
}

void smtp_session_process(struct smtp_session *s)
{
	/* A completion called from inside a request lands here while the
	 * loop below is still running: the loop carries on by itself. */
	if (s->processing)
		return;
	s->processing = true;
	while (!s->closing && s->pending == P_NONE && buf_len(&s->out) <= SMTP_OUT_HIGH) {
		if (buf_len(&s->in) == 0 || !step(s))
			break;
	}
	if (s->mode == M_TLS_WAIT || s->mode == M_CLOSED)
		buf_reset(&s->in);
	s->processing = false;
}

int smtp_session_input(struct smtp_session *s, const uint8_t *p, size_t n)
{
	if (buf_append(&s->in, p, n) < 0)
		return -1;
	smtp_session_process(s);
	return 0;
}

/* --- completions ------------------------------------------------------------ */

/* Clear the pending request; false when the session was closed meanwhile
 * (shutdown, timeout) and the answer is to be dropped. */
static bool complete(struct smtp_session *s, enum pending expected)
{
	if (s->pending != expected)
		fatal("msg=\"smtp session: completion without a request\" expected=%d pending=%d",
		      (int)expected, (int)s->pending);
	s->pending = P_NONE;
	return !s->closing;
}

void smtp_session_auth_done(struct smtp_session *s, enum smtp_auth_result r, const char *account)
{
	if (!complete(s, P_AUTH)) {
		wipe_free(&s->auth_login);
		return;
	}
	switch (r) {
	case SMTP_AUTH_OK:
		s->auth_user = xstrdup(account != NULL ? account : s->auth_login);
		reply(s, SMTP_R_AUTH_OK);
		break;
	case SMTP_AUTH_FAIL:
		abuse(s, SMTP_ABUSE_AUTH_FAILED);
		reply(s, SMTP_R_AUTH_FAILED);
		break;
	case SMTP_AUTH_TEMPFAIL:
		reply(s, SMTP_R_AUTH_TEMPFAIL);
		break;
	}
	wipe_free(&s->auth_login);
	smtp_session_process(s);
}

void smtp_session_mail_done(struct smtp_session *s, enum smtp_mail_result r)
{
	if (!complete(s, P_MAIL))
		return;
	switch (r) {
	case SMTP_MAIL_OK:
		s->in_txn = true;
		reply(s, SMTP_R_MAIL_OK);
		break;
	case SMTP_MAIL_DENIED:
		txn_reset(s);
		reply(s, SMTP_R_MAIL_DENIED);
		break;
	case SMTP_MAIL_TEMPFAIL:
		txn_reset(s);
		reply(s, SMTP_R_MAIL_TEMPFAIL);
		break;
	}
	smtp_session_process(s);
}

static void rcpt_accept(struct smtp_session *s, bool local)
{
	if (s->nrcpts == s->caprcpts) {
		s->caprcpts = s->caprcpts ? s->caprcpts * 2 : 4;
		s->rcpts = xreallocarray(s->rcpts, s->caprcpts, sizeof(*s->rcpts));
	}
	s->rcpt_check.local = local;
	s->rcpts[s->nrcpts++] = s->rcpt_check;
	memset(&s->rcpt_check, 0, sizeof(s->rcpt_check));
	reply(s, SMTP_R_RCPT_OK);
}

void smtp_session_rcpt_done(struct smtp_session *s, enum smtp_rcpt_result r)
{
	if (!complete(s, P_RCPT))
		return;
	switch (r) {
	case SMTP_RCPT_LOCAL:
		rcpt_accept(s, true);
		break;
	case SMTP_RCPT_RELAY_OK:
		rcpt_accept(s, false);
		break;
	case SMTP_RCPT_REMOTE:
		if (s->auth_user != NULL) {
			rcpt_accept(s, false);
			break;
		}
		rcpt_free(&s->rcpt_check);
		abuse(s, SMTP_ABUSE_RELAY_DENIED);
		reply(s, SMTP_R_RELAY_DENIED);
		break;
	case SMTP_RCPT_UNKNOWN:
		rcpt_free(&s->rcpt_check);
		abuse(s, SMTP_ABUSE_RCPT_UNKNOWN);
		reply(s, SMTP_R_RCPT_UNKNOWN);
		break;
	case SMTP_RCPT_TEMPFAIL:
		rcpt_free(&s->rcpt_check);
		reply(s, SMTP_R_RCPT_TEMPFAIL);
		break;
	case SMTP_RCPT_FULL:
		rcpt_free(&s->rcpt_check);
		reply(s, SMTP_R_RCPT_FULL);
		break;
	}
	smtp_session_process(s);
}

void smtp_session_commit_done(struct smtp_session *s, bool ok)
{
	if (!complete(s, P_COMMIT))
		return;
	/* DESIGN.md: 250 only once the store says the message is durable. */
	if (ok)
		reply_arg(s, SMTP_R_QUEUED, s->txn_id);
	else
		reply(s, SMTP_R_STORE_COMMIT_FAIL);
	txn_reset(s);
	smtp_session_process(s);
}

static void set_tls(struct smtp_session *s, const char *version, const char *cipher)
{
	free(s->tls_version);
	free(s->tls_cipher);
	s->tls = true;
	s->tls_version = version != NULL ? xstrdup(version) : NULL;
	s->tls_cipher = cipher != NULL ? xstrdup(cipher) : NULL;
}

void smtp_session_tls_done(struct smtp_session *s, bool ok, const char *version, const char *cipher)
{
	if (s->closing)
		return;
	if (s->mode != M_TLS_WAIT)
		fatal("msg=\"smtp session: tls_done without STARTTLS\"");
	if (!ok) {
		close_session(s);
		return;
	}
	set_tls(s, version, cipher);
	/* RFC 3207 4.2: forget everything learnt from the client in clear. */
	txn_reset(s);
	s->helo_seen = s->esmtp = false;
	s->helo[0] = '\0';
	free(s->auth_user);
	s->auth_user = NULL;
	buf_reset(&s->in);
	s->mode = M_COMMAND;
	smtp_session_process(s);
}

/* --- life cycle and accessors ----------------------------------------------- */

/* Transaction ids appear as an Atom in Received: (RFC 5321 4.4), so the
 * session id is reduced to letters, digits and '-'. */
static char *atom_copy(const char *s)
{
	char *r = xstrdup(s != NULL && *s != '\0' ? s : "s");

	for (char *p = r; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			*p = 'x';
	return r;
}

struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
                                      const struct smtp_session_ops *ops, void *ctx)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	ASSERT(cfg->hostname != NULL && cfg->max_message_size > 0 && cfg->max_recipients > 0 &&
	       cfg->max_errors > 0);
	ASSERT(ops->auth_check && ops->rcpt_check && ops->message_begin && ops->message_write &&
	       ops->message_commit && ops->message_abort && ops->starttls);
	s->cfg = *cfg;
	s->cfg.hostname = xstrdup(cfg->hostname);
	s->cfg.listener = cfg->listener != NULL ? xstrdup(cfg->listener) : NULL;
	s->cfg.session_id = atom_copy(cfg->session_id);
	if (s->cfg.max_line == 0)
		s->cfg.max_line = SMTP_LINE_MAX;
	ASSERT(s->cfg.max_line >= 512); /* RFC 5321 4.5.3.1.4 */
	s->ops = ops;
	s->ctx = ctx;
	buf_init(&s->in, s->cfg.max_line + SMTP_IN_SLACK);
	buf_init(&s->out, 0);
	s->bdat_error = SMTP_R_COUNT;
	return s;
}

void smtp_session_free(struct smtp_session **sp)
{
	struct smtp_session *s = *sp;

	if (s == NULL)
		return;
	txn_reset(s);
	free(s->rcpts);
	wipe_free(&s->login_user);
	wipe_free(&s->auth_login);
	if (s->in.data != NULL)
		explicit_bzero(s->in.data, s->in.cap);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s->client_ip);
	free(s->tls_version);
	free(s->tls_cipher);
	free(s->auth_user);
	free((char *)(uintptr_t)s->cfg.hostname);
	free((char *)(uintptr_t)s->cfg.listener);
	free((char *)(uintptr_t)s->cfg.session_id);
	free(s);
	*sp = NULL;
}

void smtp_session_set_client(struct smtp_session *s, const char *ip)
{
	free(s->client_ip);
	s->client_ip = ip != NULL ? xstrdup(ip) : NULL;
}

void smtp_session_set_tls(struct smtp_session *s, const char *version, const char *cipher)
{
	ASSERT(!s->greeted);
	set_tls(s, version, cipher);
}

void smtp_session_greet(struct smtp_session *s)
{
	/* submissions is implicit TLS (RFC 8314 3.3): it must be up by now */
	ASSERT(!s->greeted && (s->cfg.role != SMTP_ROLE_SUBMISSIONS || s->tls));
	s->greeted = true;
	reply_arg(s, SMTP_R_GREETING, s->cfg.hostname);
}

void smtp_session_shutdown(struct smtp_session *s, enum smtp_close_reason reason)
{
	if (s->closing)
		return;
	reply_arg(s, reason == SMTP_CLOSE_TIMEOUT ? SMTP_R_CLOSE_TIMEOUT : SMTP_R_CLOSE_SHUTDOWN,
	          s->cfg.hostname);
	close_session(s);
}

struct buf *smtp_session_inbuf(struct smtp_session *s)
{
	return &s->in;
}

struct buf *smtp_session_outbuf(struct smtp_session *s)
{
	return &s->out;
}

bool smtp_session_closing(const struct smtp_session *s)
{
	return s->closing;
}

bool smtp_session_pending(const struct smtp_session *s)
{
	return s->pending != P_NONE;
}

bool smtp_session_in_data(const struct smtp_session *s)
{
	return s->mode == M_DATA || s->mode == M_BDAT;
}

bool smtp_session_tls_wait(const struct smtp_session *s)
{
	return s->mode == M_TLS_WAIT;
}

bool smtp_session_tls_active(const struct smtp_session *s)
{
	return s->tls;
}

const char *smtp_session_auth_user(const struct smtp_session *s)
{
	return s->auth_user;
}
