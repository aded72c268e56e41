/*
 * mailbox/imap/auth.c -- LOGIN, AUTHENTICATE PLAIN (with SASL-IR) and
 * STARTTLS.
 *
 * Both login commands end in one request, ops.auth, with the SASL triple
 * (authzid, authcid, password).  A master login "user*master" (the
 * separator is configured) becomes authzid "user", authcid "master": the
 * glue checks master's password and whether master may act as user, so
 * the session holds no policy.  Passwords are copied once, wiped right
 * after the request, and the command arguments that held them are wiped
 * in place.  Base64 and PLAIN splitting are the SMTP module's pure
 * helpers (mailbox/smtp/sasl.h): one implementation for both protocols.
 *
 * Plaintext policy (RFC 3501 6.2.3, RFC 9051 11.1): without TLS and
 * without allow_plaintext_auth, LOGIN and AUTHENTICATE answer
 * NO [PRIVACYREQUIRED] (RFC 5530) and CAPABILITY shows LOGINDISABLED.
 */
#include "mailbox/imap/session_private.h"

#include "mailbox/smtp/sasl.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void wipe_free(char *p)
{
	if (p != NULL) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

static void start_auth(struct imap_session *s, const char *authzid, const char *authcid,
                       const char *password)
{
	char *z = xstrdup(authzid), *c = xstrdup(authcid);
	char *sep;

	if (s->cfg.master_separator != '\0' && z[0] == '\0' &&
	    (sep = strrchr(c, s->cfg.master_separator)) != NULL && sep != c && sep[1] != '\0') {
		/* "user*master": act as user with master's credentials */
		free(z);
		z = xstrndup(c, (size_t)(sep - c));
		memmove(c, sep + 1, strlen(sep + 1) + 1);
	}
	free(s->pending_name);
	s->pending_name = xstrdup(z[0] != '\0' ? z : c);
	imap_op_begin(s, IMAP_OP_AUTH);
	s->ops->auth(s->ctx, z, c, password);
	wipe_free(z);
	wipe_free(c);
}

void imap_cmd_login(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 2 || !imap_arg_is_astring(&c->args[0]) ||
	    !imap_arg_is_astring(&c->args[1]) || c->args[0].has_nul || c->args[1].has_nul) {
		if (c->nargs == 2 && c->args[1].str != NULL)
			explicit_bzero(c->args[1].str, c->args[1].len);
		imap_cmd_bad(s, "Invalid LOGIN arguments");
		return;
	}
	if (!imap_auth_allowed(s)) {
		explicit_bzero(c->args[1].str, c->args[1].len);
		imap_cmd_finish(s, "NO", "[PRIVACYREQUIRED]",
		                "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	if (c->args[0].len == 0 || c->args[1].len == 0) {
		imap_cmd_finish(s, "NO", "[AUTHENTICATIONFAILED]", "Authentication failed");
		return;
	}
	start_auth(s, "", c->args[0].str, c->args[1].str);
	/* the completion may have run: c is still ours (the parser keeps it
	 * until it is fed again), s must not be touched */
	explicit_bzero(c->args[1].str, c->args[1].len);
}

/* One SASL PLAIN message, base64 (RFC 4616, RFC 4959). */
static void sasl_input(struct imap_session *s, const char *b64)
{
	size_t len = strlen(b64), cap = len / 4 * 3 + 4, n = 0;
	uint8_t *msg = xmalloc(cap);
	const char *authzid, *authcid, *passwd;

	if (len > 0 && smtp_sasl_b64_decode((const uint8_t *)b64, len, msg, cap - 1, &n) < 0) {
		imap_cmd_bad(s, "Invalid base64 data");
		goto out;
	}
	msg[n] = '\0';
	if (smtp_sasl_plain_split(msg, n, &authzid, &authcid, &passwd) < 0) {
		imap_cmd_finish(s, "NO", "[AUTHENTICATIONFAILED]", "Authentication failed");
		goto out;
	}
	start_auth(s, authzid, authcid, passwd);
out:
	explicit_bzero(msg, cap);
	free(msg);
}

void imap_cmd_authenticate(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs < 1 || c->nargs > 2 || c->args[0].type != IMAP_ARG_ATOM ||
	    (c->nargs == 2 && c->args[1].type != IMAP_ARG_ATOM)) {
		imap_cmd_bad(s, "Invalid AUTHENTICATE arguments");
		return;
	}
	if (!imap_auth_allowed(s)) {
		imap_cmd_finish(s, "NO", "[PRIVACYREQUIRED]",
		                "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	if (strcasecmp(c->args[0].str, "PLAIN") != 0) {
		imap_cmd_finish(s, "NO", NULL, "Unsupported authentication mechanism");
		return;
	}
	if (c->nargs == 2) {
		/* RFC 4959 3: "=" is an empty initial response */
		const char *ir = strcmp(c->args[1].str, "=") == 0 ? "" : c->args[1].str;

		sasl_input(s, ir);
		explicit_bzero(c->args[1].str, c->args[1].len);
		return;
	}
	imap_puts(s, "+ \r\n");
	s->mode = IMAP_MODE_AUTH;
}

void imap_auth_line(struct imap_session *s, const char *line)
{
	s->mode = IMAP_MODE_COMMAND;
	if (line == NULL) {
		imap_cmd_bad(s, "Authentication line too long");
		return;
	}
	/* RFC 3501 6.2.2: "*" cancels, answered with BAD */
	if (strcmp(line, "*") == 0) {
		imap_cmd_bad(s, "Authentication cancelled");
		return;
	}
	sasl_input(s, line);
}

void imap_session_auth_done(struct imap_session *s, enum imap_auth_result r, const char *account)
{
	struct buf code;

	if (!imap_session_complete(s, IMAP_OP_AUTH))
		return;
	switch (r) {
	case IMAP_AUTH_OK:
		free(s->user);
		s->user = xstrdup(account != NULL ? account : s->pending_name);
		s->state = IMAP_STATE_AUTH;
		s->auth_failures = 0;
		/* RFC 3501 7.1: the new capabilities in the response code
		 * save the client a round trip */
		buf_init(&code, 0);
		buf_puts(&code, "[CAPABILITY ");
		imap_capability_write(s, &code);
		buf_puts(&code, "]");
		buf_append(&code, "", 1);
		imap_cmd_finish(s, "OK", (const char *)buf_ptr(&code), "Logged in");
		buf_free(&code);
		break;
	case IMAP_AUTH_FAIL:
		s->auth_failures++;
		if (s->ops->abuse != NULL)
			s->ops->abuse(s->ctx, IMAP_ABUSE_AUTH_FAILED);
		imap_cmd_finish(s, "NO", "[AUTHENTICATIONFAILED]", "Authentication failed");
		if (s->auth_failures >= s->cfg.max_auth_failures)
			imap_close(s, "Too many authentication failures");
		break;
	case IMAP_AUTH_TEMPFAIL:
		imap_cmd_finish(s, "NO", "[UNAVAILABLE]",
		                "Authentication service unavailable, try again later");
		break;
	case IMAP_AUTH_LIMIT:
		/* RFC 5530 3: LIMIT, an operation that would exceed a limit;
		 * not an authentication failure (the credentials were good) */
		imap_cmd_finish(s, "NO", "[LIMIT]",
		                "Too many connections for this account, close another one");
		break;
	}
}

void imap_cmd_starttls(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "STARTTLS takes no arguments");
		return;
	}
	if (s->tls) {
		imap_cmd_bad(s, "TLS is already active");
		return;
	}
	if (!s->cfg.starttls_available) {
		imap_cmd_bad(s, "STARTTLS is not available");
		return;
	}
	imap_op_begin(s, IMAP_OP_TLS);
	if (s->ops->starttls(s->ctx) < 0) {
		s->op = IMAP_OP_NONE;
		imap_cmd_finish(s, "NO", "[UNAVAILABLE]", "TLS not available right now");
		return;
	}
	imap_cmd_finish(s, "OK", NULL, "Begin TLS negotiation now");
	/* RFC 3501 6.2.1 / RFC 2595 3.1: nothing the client pipelined after
	 * STARTTLS may be read as a command after the handshake */
	s->mode = IMAP_MODE_TLS_WAIT;
}

void imap_session_tls_done(struct imap_session *s, bool ok)
{
	if (!imap_session_complete(s, IMAP_OP_TLS))
		return;
	if (!ok) {
		imap_close(s, NULL);
		return;
	}
	s->tls = true;
	s->mode = IMAP_MODE_COMMAND;
}
