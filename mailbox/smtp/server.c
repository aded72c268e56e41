/*
 * mailbox/smtp/server.c -- SMTP glue on the connection layer (see
 * server.h).
 *
 * struct smtp_conn is the per-connection state: the session, the one
 * request that may be outstanding (auth, sender check, recipient lookup
 * or the commit of a message), and what the recipient lookups found.  The
 * session's envelope only says "local" or not for a recipient; which
 * accounts and forwards a local recipient expands to is kept here, keyed
 * by the address, from the lookup to message_begin, and reset at every
 * MAIL (mail_check is always installed for that reason).
 *
 * Every path into the session (input, a completion, a TLS result, a
 * timeout) ends in sync_conn(): move the replies to the connection, start a
 * STARTTLS handshake the session accepted, close when the session is
 * done, pause input while a request is outstanding, and pick the timeout
 * for the current phase.
 */
#include "mailbox/smtp/server.h"

#include "mailbox/delivery/delivery.h"
#include "mailbox/delivery/spool.h"
#include "mailbox/directory/auth.h"
#include "mailbox/directory/lookup.h"
#include "mailbox/server/abuse.h"
#include "mailbox/server/listener.h"
#include "mailbox/server/metrics.h"
#include "mailbox/server/server.h"
#include "mailbox/smtp/sender.h"
#include "mailbox/smtp/session.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What the lookup of one accepted local recipient expanded to. */
struct rcpt_res {
	char *addr; /* as the session has it (the RCPT argument) */
	int64_t *accounts;
	size_t naccounts;
	char **forwards; /* remote targets of an alias */
	size_t nforwards;
};

struct smtp_conn {
	struct conn *c;
	struct server *srv;
	struct smtp_session *s;

	/* the outstanding request, at most one */
	struct auth_req *auth;
	struct pg_req *mail_req;
	struct pg_req *rcpt_req;
	char *rcpt_addr; /* under lookup */

	/* this transaction's local recipients */
	struct rcpt_res *res;
	size_t nres, capres;

	/* the authenticated account */
	int64_t account_id;
	enum dir_role role;

	/* the message */
	struct delivery *dlv;
	char *txn_id;
	char *mail_from;
	size_t nrcpts;

	bool starttls_req; /* the session accepted STARTTLS: start it in sync_conn() */
	bool data_mode;    /* the data timeout is in force */
	bool draining;     /* SIGTERM arrived while a commit was in flight */
	bool timed_out;
};

#define LOG_FMT     "cid=%s listener=%s client=%s"
#define LOG_ARGS(x) conn_id((x)->c), conn_listener_name((x)->c), conn_client_ip((x)->c)

static void sync_conn(struct smtp_conn *sc);

/* --- helpers ------------------------------------------------------------ */

static bool role_is_smtp(int role)
{
	return role == MAILBOX_ROLE_MX || role == MAILBOX_ROLE_SUBMISSION ||
	       role == MAILBOX_ROLE_SUBMISSIONS;
}

static void res_clear(struct smtp_conn *sc)
{
	for (size_t i = 0; i < sc->nres; i++) {
		struct rcpt_res *r = &sc->res[i];

		free(r->addr);
		free(r->accounts);
		for (size_t k = 0; k < r->nforwards; k++)
			free(r->forwards[k]);
		free(r->forwards);
	}
	sc->nres = 0;
}

/* The last lookup result for addr (a repeated RCPT replaces nothing: the
 * answer is the same, and the session keeps both entries). */
static const struct rcpt_res *res_find(const struct smtp_conn *sc, const char *addr)
{
	for (size_t i = sc->nres; i > 0; i--)
		if (strcmp(sc->res[i - 1].addr, addr) == 0)
			return &sc->res[i - 1];
	return NULL;
}

/* RFC 3461 4.2 xtext: "!".."~" except "+" and "=" as they are, the rest
 * as "+" and two upper-case hex digits. */
static void xtext_append(struct buf *b, const char *s)
{
	for (const uint8_t *p = (const uint8_t *)s; *p != '\0'; p++) {
		if (*p >= '!' && *p <= '~' && *p != '+' && *p != '=')
			buf_append(b, p, 1);
		else
			buf_printf(b, "+%02X", *p);
	}
}

/* NOTIFY bits as the queue stores them (RFC 3461 4.1 keywords). */
static char *notify_text(unsigned bits)
{
	struct buf b;
	char *r;

	if (bits == 0)
		return NULL;
	if (bits & SMTP_NOTIFY_NEVER)
		return xstrdup("NEVER");
	buf_init(&b, 0);
	if (bits & SMTP_NOTIFY_SUCCESS)
		buf_puts(&b, "SUCCESS,");
	if (bits & SMTP_NOTIFY_FAILURE)
		buf_puts(&b, "FAILURE,");
	if (bits & SMTP_NOTIFY_DELAY)
		buf_puts(&b, "DELAY,");
	r = xstrndup((const char *)buf_ptr(&b), buf_len(&b) - 1);
	buf_free(&b);
	return r;
}

/* --- ops: authentication ---------------------------------------------------- */

static void on_auth(void *arg, const struct auth_result *r)
{
	struct smtp_conn *sc = arg;
	char q[300];

	sc->auth = NULL;
	switch (r->status) {
	case AUTH_OK:
		sc->account_id = r->account_id;
		sc->role = r->role;
		log_info("msg=\"smtp auth\" " LOG_FMT " result=ok account=%s", LOG_ARGS(sc),
		         log_quote(q, sizeof(q), r->login));
		abuse_auth_ok(sc->srv, conn_client(sc->c), conn_no_client(sc->c));
		smtp_session_auth_done(sc->s, SMTP_AUTH_OK, r->login);
		break;
	case AUTH_FAIL:
		log_info("msg=\"smtp auth\" " LOG_FMT " result=fail reason=%s", LOG_ARGS(sc),
		         log_quote(q, sizeof(q), r->reason != NULL ? r->reason : "-"));
		smtp_session_auth_done(sc->s, SMTP_AUTH_FAIL, NULL);
		break;
	case AUTH_TEMPFAIL:
		log_warn("msg=\"smtp auth\" " LOG_FMT " result=tempfail error=%s", LOG_ARGS(sc),
		         log_quote(q, sizeof(q), r->reason != NULL ? r->reason : "-"));
		smtp_session_auth_done(sc->s, SMTP_AUTH_TEMPFAIL, NULL);
		break;
	}
	sync_conn(sc);
}

static void op_auth_check(void *ctx, const char *authzid, const char *user, const char *password)
{
	struct smtp_conn *sc = ctx;

	/* RFC 4616 2: acting as someone else is not offered */
	if (authzid[0] != '\0' && strcasecmp(authzid, user) != 0) {
		log_info("msg=\"smtp auth\" " LOG_FMT " result=fail reason=\"authzid differs\"",
		         LOG_ARGS(sc));
		smtp_session_auth_done(sc->s, SMTP_AUTH_FAIL, NULL);
		return;
	}
	sc->auth = auth_check(server_pg(sc->srv), server_passwords(sc->srv), user, password,
	                      on_auth, sc);
}

/* --- ops: sender ------------------------------------------------------------ */

static void on_sender(void *arg, enum smtp_sender_status st, const char *errstr)
{
	struct smtp_conn *sc = arg;
	char q[300];

	sc->mail_req = NULL;
	switch (st) {
	case SMTP_SENDER_OWNED:
		smtp_session_mail_done(sc->s, SMTP_MAIL_OK);
		break;
	case SMTP_SENDER_NOT_OWNED:
		log_info("msg=\"smtp sender refused: not an address of the account\" " LOG_FMT
		         " account=%s from=%s",
		         LOG_ARGS(sc), smtp_session_auth_user(sc->s),
		         log_quote(q, sizeof(q), sc->mail_from != NULL ? sc->mail_from : ""));
		smtp_session_mail_done(sc->s, SMTP_MAIL_DENIED);
		break;
	case SMTP_SENDER_TEMPFAIL:
		log_warn("msg=\"smtp sender check failed\" " LOG_FMT " error=%s", LOG_ARGS(sc),
		         log_quote(q, sizeof(q), errstr != NULL ? errstr : "-"));
		smtp_session_mail_done(sc->s, SMTP_MAIL_TEMPFAIL);
		break;
	}
	sync_conn(sc);
}

static void op_mail_check(void *ctx, const char *sender, const char *auth_user)
{
	struct smtp_conn *sc = ctx;

	/* a new transaction: forget the last one's recipients */
	res_clear(sc);
	free(sc->mail_from);
	sc->mail_from = xstrdup(sender);
	/* RFC 6409 6.1: the submitter's own addresses only; <> is allowed
	 * (RFC 8098 3: MDNs) and admins may send as anyone */
	if (auth_user == NULL || sender[0] == '\0' || sc->role == DIR_ROLE_ADMIN) {
		smtp_session_mail_done(sc->s, SMTP_MAIL_OK);
		return;
	}
	sc->mail_req = smtp_sender_check(server_pg(sc->srv), sc->account_id, sender, on_sender, sc);
}

/* --- ops: recipients -------------------------------------------------------- */

static void on_rcpt(void *arg, const struct lookup_rcpt_result *r)
{
	struct smtp_conn *sc = arg;
	struct rcpt_res *e;
	char q[300];
	/* ours now: the completion below may start the next lookup */
	char *addr = sc->rcpt_addr;

	sc->rcpt_req = NULL;
	sc->rcpt_addr = NULL;
	switch (r->status) {
	case LOOKUP_RCPT_LOCAL:
		if (r->naccounts > 0 && r->nfull == r->naccounts && r->nforwards == 0) {
			/* nobody it reaches has room: refuse now, not after DATA */
			log_info("msg=\"smtp recipient over quota\" " LOG_FMT " rcpt=%s",
			         LOG_ARGS(sc), log_quote(q, sizeof(q), addr));
			smtp_session_rcpt_done(sc->s, SMTP_RCPT_FULL);
			break;
		}
		if (sc->nres == sc->capres) {
			sc->capres = sc->capres ? sc->capres * 2 : 4;
			sc->res = xreallocarray(sc->res, sc->capres, sizeof(*sc->res));
		}
		e = &sc->res[sc->nres++];
		memset(e, 0, sizeof(*e));
		e->addr = addr;
		addr = NULL;
		if (r->naccounts > 0)
			e->accounts = xmemdup(r->accounts, r->naccounts * sizeof(*r->accounts));
		e->naccounts = r->naccounts;
		if (r->nforwards > 0) {
			e->forwards = xcalloc(r->nforwards, sizeof(*e->forwards));
			for (size_t i = 0; i < r->nforwards; i++)
				e->forwards[i] = xstrdup(r->forwards[i]);
		}
		e->nforwards = r->nforwards;
		smtp_session_rcpt_done(sc->s, SMTP_RCPT_LOCAL);
		break;
	case LOOKUP_RCPT_UNKNOWN:
		log_info("msg=\"smtp recipient unknown\" " LOG_FMT " rcpt=%s", LOG_ARGS(sc),
		         log_quote(q, sizeof(q), addr));
		smtp_session_rcpt_done(sc->s, SMTP_RCPT_UNKNOWN);
		break;
	case LOOKUP_RCPT_NOT_LOCAL:
		if (strcasecmp(addr, "postmaster") == 0) {
			/* never relay a bare <Postmaster> */
			log_warn("msg=\"smtp <Postmaster> refused: add the domain of the hostname "
			         "and an alias postmaster@%s\" " LOG_FMT,
			         server_config(sc->srv)->hostname, LOG_ARGS(sc));
			smtp_session_rcpt_done(sc->s, SMTP_RCPT_UNKNOWN);
			break;
		}
		/* the session relays it only for an authenticated client */
		smtp_session_rcpt_done(sc->s, SMTP_RCPT_REMOTE);
		break;
	case LOOKUP_RCPT_TEMPFAIL:
		log_warn("msg=\"smtp recipient lookup failed\" " LOG_FMT " error=%s", LOG_ARGS(sc),
		         log_quote(q, sizeof(q), r->errstr != NULL ? r->errstr : "-"));
		smtp_session_rcpt_done(sc->s, SMTP_RCPT_TEMPFAIL);
		break;
	}
	free(addr);
	sync_conn(sc);
}

static void op_rcpt_check(void *ctx, const char *rcpt)
{
	struct smtp_conn *sc = ctx;
	char pm[300];
	const char *addr = rcpt;

	free(sc->rcpt_addr);
	sc->rcpt_addr = xstrdup(rcpt);
	/* RFC 5321 4.5.1: <Postmaster> without a domain must be accepted;
	 * it is the postmaster of this host's name (make it an alias) */
	if (strcasecmp(rcpt, "postmaster") == 0) {
		snprintf(pm, sizeof(pm), "postmaster@%s", server_config(sc->srv)->hostname);
		addr = pm;
	}
	sc->rcpt_req = lookup_rcpt(server_pg(sc->srv), addr, on_rcpt, sc);
}

/* --- ops: the message ------------------------------------------------------- */

static int op_message_begin(void *ctx, const struct smtp_envelope *env)
{
	struct smtp_conn *sc = ctx;
	const struct mailbox_config *cfg = server_config(sc->srv);
	struct delivery_stores st = {
	        .pg = server_pg(sc->srv),
	        .blob = server_blob(sc->srv),
	        .mem = server_mem(sc->srv),
	};
	struct delivery_params p = {0};
	int64_t *accounts = NULL;
	struct delivery_sql_remote *remote = NULL;
	char **owned = NULL; /* strings made here for remote entries */
	size_t nacc = 0, capacc = 0, nrem = 0, caprem = 0, nowned = 0;
	int role = conn_role(sc->c);
	char err[512], q[600];

	/* local accounts, remote recipients, and the forwards of aliases */
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct smtp_rcpt *r = &env->rcpts[i];
		const struct rcpt_res *e = r->local ? res_find(sc, r->addr) : NULL;
		size_t nfwd = e != NULL ? e->nforwards : 0;

		if (r->local && e == NULL)
			continue; /* cannot happen: every local answer was recorded */
		if (e != NULL && e->naccounts > 0) {
			if (nacc + e->naccounts > capacc) {
				capacc = (nacc + e->naccounts) * 2;
				accounts = xreallocarray(accounts, capacc, sizeof(*accounts));
			}
			memcpy(accounts + nacc, e->accounts, e->naccounts * sizeof(*accounts));
			nacc += e->naccounts;
		}
		if (nrem + nfwd + 1 > caprem) {
			caprem = (nrem + nfwd + 1) * 2;
			remote = xreallocarray(remote, caprem, sizeof(*remote));
			owned = xreallocarray(owned, caprem * 2, sizeof(*owned));
		}
		if (!r->local) {
			char *nt = notify_text(r->notify);

			owned[nowned++] = nt;
			remote[nrem++] = (struct delivery_sql_remote){r->addr, nt, r->orcpt};
			continue;
		}
		for (size_t k = 0; k < nfwd; k++) {
			/* RFC 3461 4.2: the forward keeps the original recipient */
			char *nt = notify_text(r->notify);
			char *oc = NULL;
			struct buf b;

			if (r->orcpt == NULL) {
				buf_init(&b, 0);
				buf_puts(&b, "rfc822;");
				xtext_append(&b, r->addr);
				oc = xstrndup((const char *)buf_ptr(&b), buf_len(&b));
				buf_free(&b);
			}
			owned[nowned++] = nt;
			owned[nowned++] = oc;
			remote[nrem++] = (struct delivery_sql_remote){e->forwards[k], nt,
			                                              oc != NULL ? oc : r->orcpt};
		}
	}
	p.id = env->id;
	p.spool_dir = cfg->smtp.spool_dir;
	p.hostname = cfg->hostname;
	p.sender = env->mail_from;
	p.accounts = accounts;
	p.naccounts = nacc;
	p.remote = remote;
	p.nremote = nrem;
	p.account_id = env->auth_user != NULL ? sc->account_id : 0;
	p.dsn_ret = env->ret == SMTP_RET_FULL ? "FULL" : env->ret == SMTP_RET_HDRS ? "HDRS" : NULL;
	p.envid = env->envid;
	p.submission = role == MAILBOX_ROLE_SUBMISSION || role == MAILBOX_ROLE_SUBMISSIONS;
	p.now = time(NULL);
	if (nacc + nrem == 0) {
		/* only aliases that expand to nothing usable: nothing to store */
		log_warn("msg=\"smtp message has no deliverable recipient\" " LOG_FMT " id=%s",
		         LOG_ARGS(sc), env->id);
		sc->dlv = NULL;
	} else {
		sc->dlv = delivery_begin(&st, &p, err, sizeof(err));
		if (sc->dlv == NULL)
			log_error("msg=\"smtp cannot spool a message\" " LOG_FMT " id=%s error=%s",
			          LOG_ARGS(sc), env->id, log_quote(q, sizeof(q), err));
	}
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(remote);
	free(accounts);
	if (sc->dlv == NULL)
		return -1;
	free(sc->txn_id);
	sc->txn_id = xstrdup(env->id);
	sc->nrcpts = env->nrcpts;
	return 0;
}

static int op_message_write(void *ctx, const uint8_t *p, size_t n)
{
	struct smtp_conn *sc = ctx;
	char err[512], q[600];

	if (delivery_write(sc->dlv, p, n, err, sizeof(err)) < 0) {
		log_error("msg=\"smtp spool write failed\" " LOG_FMT " id=%s error=%s",
		          LOG_ARGS(sc), sc->txn_id, log_quote(q, sizeof(q), err));
		return -1;
	}
	return 0;
}

static void on_committed(void *arg, bool ok, const struct delivery_result *r)
{
	struct smtp_conn *sc = arg;
	char q[600], f[300];

	if (ok)
		conn_listener(sc->c)->metrics->smtp.message_bytes += r->size;
	if (ok)
		log_info("msg=\"smtp message stored\" " LOG_FMT
		         " id=%s from=%s rcpts=%zu size=%" PRIu64
		         " blob=%s mailboxes=%zu queue_id=%" PRId64 " ms=%.1f",
		         LOG_ARGS(sc), sc->txn_id, log_quote(f, sizeof(f), sc->mail_from),
		         sc->nrcpts, r->size, r->key, r->mailboxes, r->queue_id, r->ms);
	else
		log_error("msg=\"smtp message not stored: answered 451\" " LOG_FMT
		          " id=%s step=%s error=%s ms=%.1f",
		          LOG_ARGS(sc), sc->txn_id, r->step, log_quote(q, sizeof(q), r->error),
		          r->ms);
	delivery_free(&sc->dlv);
	smtp_session_commit_done(sc->s, ok);
	if (sc->draining)
		smtp_session_shutdown(sc->s, SMTP_CLOSE_SHUTDOWN);
	sync_conn(sc);
}

static void op_message_commit(void *ctx)
{
	struct smtp_conn *sc = ctx;

	delivery_commit(sc->dlv, on_committed, sc);
}

static void op_message_abort(void *ctx)
{
	struct smtp_conn *sc = ctx;

	delivery_free(&sc->dlv);
}

/* --- ops: TLS and abuse ----------------------------------------------------- */

static int op_starttls(void *ctx)
{
	struct smtp_conn *sc = ctx;

	if (!conn_starttls_available(sc->c))
		return -1;
	/* sync_conn() starts it once the 220 is queued on the connection */
	sc->starttls_req = true;
	return 0;
}

static void op_abuse(void *ctx, enum smtp_abuse kind)
{
	struct smtp_conn *sc = ctx;

	switch (kind) {
	case SMTP_ABUSE_AUTH_FAILED:
		abuse_auth_failed(sc->srv, conn_listener_name(sc->c), conn_client(sc->c),
		                  conn_no_client(sc->c));
		break;
	case SMTP_ABUSE_TOO_MANY_ERRORS:
		log_info("msg=\"smtp session closed: too many errors\" " LOG_FMT, LOG_ARGS(sc));
		/* fall through */
	case SMTP_ABUSE_RCPT_UNKNOWN:
	case SMTP_ABUSE_RELAY_DENIED:
		abuse_rcpt_failed(sc->srv, conn_client(sc->c), conn_no_client(sc->c));
		break;
	}
}

/* Every reply, for /metrics (the session calls this once per reply). */
static void op_replied(void *ctx, enum smtp_reply r)
{
	struct smtp_conn *sc = ctx;
	struct metrics_smtp *m = &conn_listener(sc->c)->metrics->smtp;
	int code = smtp_reply_info(r)->code;

	if (code >= 200 && code < 600)
		m->replies[code / 100]++;
	switch (r) {
	case SMTP_R_RCPT_OK:
		m->rcpt_ok++;
		break;
	case SMTP_R_RCPT_UNKNOWN:
		m->rcpt_refused[METRICS_RCPT_UNKNOWN]++;
		break;
	case SMTP_R_RELAY_DENIED:
		m->rcpt_refused[METRICS_RCPT_RELAY_DENIED]++;
		break;
	case SMTP_R_RCPT_TOO_MANY:
		m->rcpt_refused[METRICS_RCPT_TOO_MANY]++;
		break;
	case SMTP_R_RCPT_UTF8:
		m->rcpt_refused[METRICS_RCPT_UTF8]++;
		break;
	case SMTP_R_RCPT_SYNTAX:
		m->rcpt_refused[METRICS_RCPT_SYNTAX]++;
		break;
	case SMTP_R_RCPT_TEMPFAIL:
		m->rcpt_refused[METRICS_RCPT_TEMPFAIL]++;
		break;
	case SMTP_R_RCPT_FULL:
		m->rcpt_refused[METRICS_RCPT_FULL]++;
		break;
	case SMTP_R_QUEUED:
		m->messages_ok++;
		break;
	case SMTP_R_STORE_BEGIN_FAIL:
	case SMTP_R_STORE_WRITE_FAIL:
	case SMTP_R_STORE_COMMIT_FAIL:
		m->messages_failed++;
		break;
	case SMTP_R_MAIL_TOO_BIG:
	case SMTP_R_MSG_TOO_BIG:
		m->messages_too_big++;
		break;
	case SMTP_R_AUTH_OK:
		m->auth_ok++;
		break;
	case SMTP_R_AUTH_FAILED:
		m->auth_failed++;
		break;
	case SMTP_R_AUTH_TEMPFAIL:
		m->auth_tempfail++;
		break;
	default:
		break;
	}
}

static const struct smtp_session_ops session_ops = {
        .auth_check = op_auth_check,
        .mail_check = op_mail_check,
        .rcpt_check = op_rcpt_check,
        .message_begin = op_message_begin,
        .message_write = op_message_write,
        .message_commit = op_message_commit,
        .message_abort = op_message_abort,
        .starttls = op_starttls,
        .abuse = op_abuse,
        .replied = op_replied,
};

/* --- connection callbacks --------------------------------------------------- */

/* Move replies to the connection; true if there were any. */
static bool move_output(struct smtp_conn *sc)
{
	struct buf *out = smtp_session_outbuf(sc->s);
	size_t n = buf_len(out);

	if (n == 0)
		return false;
	(void)conn_write(sc->c, buf_ptr(out), n); /* -1 closes the connection */
	buf_consume(out, n);
	return true;
}

static void sync_conn(struct smtp_conn *sc)
{
	bool data;

	/* The session stops at SMTP_OUT_HIGH bytes of replies: hand them over
	 * and let it go on while the connection can take more. */
	while (move_output(sc) && !conn_out_high(sc->c) && !smtp_session_closing(sc->s) &&
	       !smtp_session_pending(sc->s) && !sc->starttls_req)
		smtp_session_process(sc->s);
	if (sc->starttls_req) {
		sc->starttls_req = false;
		if (conn_starttls(sc->c) < 0) {
			/* the listener said it could a moment ago: give up */
			smtp_session_tls_done(sc->s, false, NULL, NULL);
		}
	}
	if (smtp_session_closing(sc->s)) {
		conn_close(sc->c, sc->timed_out ? CONN_CLOSE_TIMEOUT : CONN_CLOSE_DONE);
		return;
	}
	conn_pause_read(sc->c, smtp_session_pending(sc->s));
	data = smtp_session_in_data(sc->s);
	if (data != sc->data_mode) {
		const struct listener *l = conn_listener(sc->c);

		sc->data_mode = data;
		conn_set_idle_timeout(
		        sc->c,
		        data ? (l->command_ms > l->idle_ms ? l->command_ms : l->idle_ms) : 0);
	}
	/* a partial command line in the session's buffer runs the command
	 * timer; message content does not */
	conn_set_partial(sc->c, !data && buf_len(smtp_session_inbuf(sc->s)) > 0);
}

static int smtp_open(struct conn *c)
{
	struct server *srv = conn_server(c);
	const struct mailbox_config *cfg = server_config(srv);
	const struct listener *l = conn_listener(c);
	struct smtp_conn *sc = xcalloc(1, sizeof(*sc));
	struct smtp_session_config scfg = {0};
	struct tls_info ti;
	int role = conn_role(c);

	sc->c = c;
	sc->srv = srv;
	l->metrics->smtp.sessions++;
	scfg.role = role == MAILBOX_ROLE_SUBMISSION    ? SMTP_ROLE_SUBMISSION
	            : role == MAILBOX_ROLE_SUBMISSIONS ? SMTP_ROLE_SUBMISSIONS
	                                               : SMTP_ROLE_MX;
	scfg.hostname = cfg->hostname;
	scfg.listener = conn_listener_name(c);
	scfg.session_id = conn_id(c);
	scfg.max_message_size = cfg->smtp.max_message_size;
	scfg.max_recipients = (unsigned)cfg->smtp.max_recipients;
	scfg.max_errors = (unsigned)cfg->smtp.max_errors;
	scfg.starttls_available = conn_starttls_available(c);
	scfg.mx_auth = cfg->smtp.mx_auth;
	scfg.plaintext_auth = role == MAILBOX_ROLE_SUBMISSION && l->allow_plaintext_auth;
	sc->s = smtp_session_new(&scfg, &session_ops, sc);
	conn_set_data(c, sc);
	if (!conn_no_client(c))
		smtp_session_set_client(sc->s, conn_client_ip(c));
	if (conn_tls_active(c, &ti))
		smtp_session_set_tls(sc->s, ti.version, ti.cipher);
	smtp_session_greet(sc->s);
	sync_conn(sc);
	return 0;
}

static ssize_t smtp_input(struct conn *c, const uint8_t *p, size_t n)
{
	struct smtp_conn *sc = conn_data(c);
	struct buf *in = smtp_session_inbuf(sc->s);
	size_t room = in->max - buf_len(in), take = n < room ? n : room;

	if (take > 0) {
		uint8_t *dst = buf_reserve(in, take);

		ASSERT(dst != NULL);
		memcpy(dst, p, take);
		buf_commit(in, take);
	}
	smtp_session_process(sc->s);
	sync_conn(sc);
	return (ssize_t)take;
}

static void smtp_writable(struct conn *c)
{
	struct smtp_conn *sc = conn_data(c);

	/* replies drained: pipelined commands held back by SMTP_OUT_HIGH */
	smtp_session_process(sc->s);
	sync_conn(sc);
}

static void smtp_tls(struct conn *c, bool ok)
{
	struct smtp_conn *sc = conn_data(c);
	struct tls_info ti = {0};

	if (ok)
		conn_tls_active(c, &ti);
	smtp_session_tls_done(sc->s, ok, ti.version, ti.cipher);
	sync_conn(sc);
}

static void smtp_timeout(struct conn *c)
{
	struct smtp_conn *sc = conn_data(c);

	sc->timed_out = true;
	smtp_session_shutdown(sc->s, SMTP_CLOSE_TIMEOUT); /* 421 4.4.2 */
	sync_conn(sc);
	conn_close(c, CONN_CLOSE_TIMEOUT);
}

static void smtp_shutdown(struct conn *c)
{
	struct smtp_conn *sc = conn_data(c);

	/* a message being committed gets its answer first */
	if (sc->dlv != NULL && smtp_session_pending(sc->s)) {
		sc->draining = true;
		return;
	}
	smtp_session_shutdown(sc->s, SMTP_CLOSE_SHUTDOWN); /* 421 4.3.2 */
	sync_conn(sc);
	conn_close(c, CONN_CLOSE_SHUTDOWN);
}

static void smtp_close(struct conn *c, enum conn_close_reason reason)
{
	struct smtp_conn *sc = conn_data(c);

	(void)reason;
	if (sc == NULL)
		return;
	/* cancel first: the session must never see a late completion */
	auth_req_cancel(&sc->auth);
	pg_req_cancel(&sc->mail_req);
	pg_req_cancel(&sc->rcpt_req);
	if (sc->dlv != NULL && sc->txn_id != NULL && smtp_session_pending(sc->s))
		log_info("msg=\"smtp client left during the commit: no reply sent\" " LOG_FMT
		         " id=%s",
		         LOG_ARGS(sc), sc->txn_id);
	smtp_session_free(&sc->s); /* aborts an open message */
	delivery_free(&sc->dlv);   /* or cancels a commit */
	res_clear(sc);
	free(sc->res);
	free(sc->rcpt_addr);
	free(sc->txn_id);
	free(sc->mail_from);
	free(sc);
	conn_set_data(c, NULL);
}

const struct conn_proto smtp_server_proto = {
        .name = "smtp",
        .on_open = smtp_open,
        .on_input = smtp_input,
        .on_writable = smtp_writable,
        .on_tls = smtp_tls,
        .on_timeout = smtp_timeout,
        .on_shutdown = smtp_shutdown,
        .on_close = smtp_close,
};

int smtp_server_start(const struct mailbox_config *cfg)
{
	char err[512], q[600];
	bool any = false;
	int n;

	for (size_t i = 0; i < cfg->listeners.n; i++)
		any |= role_is_smtp(mailbox_config_listener(cfg, i)->role);
	if (!any)
		return 0;
	n = spool_sweep(cfg->smtp.spool_dir, err, sizeof(err));
	if (n < 0) {
		log_error("msg=\"start-up check failed\" store=spool error=%s",
		          log_quote(q, sizeof(q), err));
		return -1;
	}
	log_info("msg=\"spool ok\" dir=%s leftovers_removed=%d", cfg->smtp.spool_dir, n);
	return 0;
}
