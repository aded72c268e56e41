/*
 * mailbox/outbound/queue.c -- the outbound queue engine (see queue.h).
 *
 * Objects:
 *   struct qconf   the settings and a deep copy of the routes, shared by
 *                  reference: a message keeps the qconf it was claimed
 *                  under, because the transport borrows a job's route
 *                  until its callback, and SIGHUP frees the old config;
 *   struct qmsg    one claimed message: its recipients, the spool file
 *                  with the stripped (and signed) content, its groups;
 *   struct qgroup  the recipients of one destination: one transport send,
 *                  or the lookups and the delivery of the local route.
 * Every asynchronous step keeps its handle in the object that started it,
 * so cancelling a message (outbound_queue_free) cancels all of it.  A
 * message moves fetch -> groups -> (bounce) -> record -> freed; a failure
 * before the groups (blob, spool) is a temporary failure of every
 * recipient, with the reason as its last error.
 */
#include "mailbox/outbound/queue.h"

#include "mailbox/delivery/delivery_sql.h"
#include "mailbox/delivery/spool.h"
#include "mailbox/directory/lookup.h"
#include "mailbox/dkim/sign.h"
#include "mailbox/outbound/bounce.h"
#include "mailbox/outbound/dsn.h"
#include "mailbox/outbound/queue_keys.h"
#include "mailbox/outbound/queue_plan.h"
#include "mailbox/outbound/retry.h"
#include "mailbox/outbound/transport.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/workpool.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_CHUNK     (256 * 1024) /* blob bytes per get */
#define QUEUE_ERR_MAX   500          /* last_error kept per recipient */
#define QUEUE_RETRY_DSN 60           /* seconds: a DSN that could not be stored */
#define QUEUE_READ      (64 * 1024)  /* local delivery: spool bytes per read */

struct qconf {
	unsigned refs;
	bool enabled;
	size_t concurrency;
	uint64_t poll_ms, lease_ms, delay_ms;
	struct retry_schedule sched;
	char *spool_dir;
	char *hostname;
	struct mailbox_route_conf *routes; /* deep copies */
	size_t nroutes;
};

struct qmsg;

struct qrcpt {
	int64_t id;
	char *addr;
	unsigned notify;
	char *orcpt;       /* decoded "type;address", or NULL */
	uint64_t attempts; /* including this one */
	bool delay_notified;
	/* routing */
	enum queue_route_kind kind;
	const struct mailbox_route_conf *route; /* into qmsg->cf, or NULL */
	char domain[256];
	size_t group;
	/* the outcome of this attempt */
	bool has_result;
	int outcome; /* enum smtp_client_outcome */
	int code;
	char esc[16];
	char *text;
	char *remote;
	/* decided in finalize */
	enum queue_fate fate;
	int64_t next;
	bool dsn;       /* in the DSN being sent */
	bool delay_dsn; /* a delay notice is in it */
};

struct qgroup {
	struct qmsg *m;
	size_t *idx; /* recipients of the message */
	size_t n;
	enum queue_route_kind kind;
	const struct mailbox_route_conf *route;
	const char *domain;
	struct smtp_client_rcpt *crcpts;
	struct outbound_send *send;
	/* local route */
	size_t looked;
	int64_t *accounts;
	size_t naccounts;
	struct delivery_sql_remote *fwd; /* strings owned */
	size_t nfwd;
	bool *local_ok; /* per recipient: found in the directory */
	struct pg_req *pgr;
	struct delivery *dlv;
	bool done;
};

/* DKIM signatures are made on a worker thread (DESIGN: CPU-heavy work off
 * the loop): the job owns the signer and its output until done runs. */
struct signjob {
	struct qmsg *m;
	struct dkim_sign *signer;
	struct buf out;
	const char *why;
	int rc;
};

struct qmsg {
	struct outbound_queue *q;
	struct qmsg *prev, *next;
	struct qconf *cf;
	char owner[96];
	int64_t id;
	char *sender;
	char blob_key[BLOB_KEY_LEN + 1];
	uint64_t size;
	int64_t account_id;
	enum smtp_client_ret ret;
	char *envid; /* decoded */
	int64_t created;
	struct qrcpt *rcpts;
	size_t nrcpts;

	/* content */
	struct spool *sp;
	struct queue_rpstrip strip;
	struct buf pending; /* stripped bytes not yet written (first chunk) */
	uint64_t off;
	bool body_ready;
	bool body_8bit;
	int fd;
	uint64_t body_len;
	struct blob_req *br;
	struct pg_req *pgr;
	struct queue_keyset *keys;
	char sign_domain[256];
	struct dkim_sign *signer;
	struct signjob *signjob; /* on the workpool */
	struct buf prefix;       /* DKIM-Signature fields */

	struct qgroup *groups;
	size_t ngroups, groups_left;
	struct bounce *bounce;
	/* results that could not be written are written again (the leases are
	 * renewed meanwhile), so a delivered recipient is not sent twice
	 * after a short Postgres outage */
	struct loop_timer rec_retry;
	uint64_t rec_backoff_ms;
	char fail[300]; /* a failure before the groups ran */
};

struct outbound_queue {
	struct ev_loop *loop;
	struct delivery_stores st;
	const struct stores_data_config *data_cfg;
	struct qconf *cf;
	struct outbound_transport *tr;
	struct queue_keys *keys;
	struct mem_sub *sub;
	struct loop_timer poll;
	struct loop_timer kick;
	struct pg_req *claim;
	bool again;
	bool stopping;
	bool claimed_any; /* leases may exist under our prefix */
	char prefix[64];  /* owner tokens: prefix + claim number */
	uint64_t seq;
	struct qmsg *msgs;
	size_t inflight;
	/* /metrics */
	struct outbound_queue_stats stats; /* transport and in_flight filled on demand */
	struct loop_timer depth;
	struct pg_req *depthq;
	/* leases of the messages in flight are extended every lease/3, so a
	 * slow but live delivery is never claimed by another instance */
	struct loop_timer renew;
	struct pg_req *renewq;
	struct workpool *wp; /* DKIM signing */
};

static void claim(struct outbound_queue *q);
static void finalize(struct qmsg *m);

/* --- settings ---------------------------------------------------------------- */

static void route_copy(struct mailbox_route_conf *dst, const struct mailbox_route_conf *src)
{
	*dst = *src;
	dst->name = src->name != NULL ? xstrdup(src->name) : NULL;
	dst->host = src->host != NULL ? xstrdup(src->host) : NULL;
	dst->ca_file = src->ca_file != NULL ? xstrdup(src->ca_file) : NULL;
	dst->auth_user = src->auth_user != NULL ? xstrdup(src->auth_user) : NULL;
	dst->auth_password = src->auth_password != NULL ? xstrdup(src->auth_password) : NULL;
	dst->domains.v = src->domains.n > 0 ? xcalloc(src->domains.n, sizeof(char *)) : NULL;
	for (size_t i = 0; i < src->domains.n; i++)
		dst->domains.v[i] = xstrdup(src->domains.v[i]);
}

static void route_free(struct mailbox_route_conf *r)
{
	free(r->name);
	free(r->host);
	free(r->ca_file);
	free(r->auth_user);
	if (r->auth_password != NULL) {
		explicit_bzero(r->auth_password, strlen(r->auth_password));
		free(r->auth_password);
	}
	for (size_t i = 0; i < r->domains.n; i++)
		free(r->domains.v[i]);
	free(r->domains.v);
}

static void qconf_unref(struct qconf **cp)
{
	struct qconf *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	if (--c->refs > 0)
		return;
	for (size_t i = 0; i < c->nroutes; i++)
		route_free(&c->routes[i]);
	free(c->routes);
	free(c->spool_dir);
	free(c->hostname);
	free(c);
}

static struct qconf *qconf_new(const struct mailbox_config *cfg)
{
	const struct mailbox_outbound_conf *o = &cfg->outbound;
	struct qconf *c = xcalloc(1, sizeof(*c));
	const char *why = NULL;

	c->refs = 1;
	c->enabled = o->enabled;
	c->concurrency = o->concurrency > 0 ? (size_t)o->concurrency : 1;
	c->poll_ms = o->poll_ms > 0 ? o->poll_ms : 5000;
	c->lease_ms = o->lease_ms > 0 ? o->lease_ms : 600000;
	c->delay_ms = o->delay_notice_ms;
	if (retry_schedule_parse(o->retry != NULL ? o->retry : RETRY_DEFAULT, &c->sched, &why) <
	    0) {
		/* the config validated it: cannot happen */
		log_error("msg=\"outbound: bad retry schedule, using the default\" error=\"%s\"",
		          why != NULL ? why : "?");
		retry_schedule_default(&c->sched);
	}
	c->sched.expiry = (int64_t)(o->expire_ms / 1000);
	if (c->sched.expiry <= 0)
		c->sched.expiry = RETRY_DEFAULT_EXPIRY;
	c->spool_dir = xstrdup(cfg->smtp.spool_dir);
	c->hostname = xstrdup(o->helo != NULL ? o->helo : cfg->hostname);
	c->nroutes = o->routes.n;
	c->routes = c->nroutes > 0 ? xcalloc(c->nroutes, sizeof(*c->routes)) : NULL;
	for (size_t i = 0; i < c->nroutes; i++)
		route_copy(&c->routes[i], mailbox_config_route(cfg, i));
	return c;
}

/* --- small helpers ------------------------------------------------------------- */

static bool has_8bit(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

static char *utf8_clean(const char *s)
{
	size_t n = strlen(s);
	char *out;

	if (n > QUEUE_ERR_MAX)
		n = QUEUE_ERR_MAX;
	out = xstrndup(s, n);
	if (!delivery_sql_utf8_valid(out, strlen(out)))
		for (char *p = out; *p != '\0'; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
	for (char *p = out; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return out;
}

static void set_result(struct qrcpt *r, int outcome, int code, const char *esc, const char *text,
                       const char *remote)
{
	r->has_result = true;
	r->outcome = outcome;
	r->code = code;
	snprintf(r->esc, sizeof(r->esc), "%s", esc != NULL ? esc : "");
	free(r->text);
	r->text = text != NULL ? xstrdup(text) : NULL;
	free(r->remote);
	r->remote = remote != NULL ? xstrdup(remote) : NULL;
}

/* --- message life ---------------------------------------------------------------- */

static void group_cancel(struct qgroup *g)
{
	outbound_send_cancel(&g->send);
	pg_req_cancel(&g->pgr);
	delivery_free(&g->dlv);
}

static void msg_free(struct qmsg *m)
{
	struct outbound_queue *q = m->q;

	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		q->msgs = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	q->inflight--;

	loop_timer_stop(&m->rec_retry);
	blob_req_cancel(&m->br);
	pg_req_cancel(&m->pgr);
	bounce_free(&m->bounce);
	for (size_t i = 0; i < m->ngroups; i++) {
		struct qgroup *g = &m->groups[i];

		group_cancel(g);
		free(g->idx);
		free(g->crcpts);
		free(g->accounts);
		for (size_t k = 0; k < g->nfwd; k++)
			free((char *)(uintptr_t)g->fwd[k].addr);
		free(g->fwd);
		free(g->local_ok);
	}
	free(m->groups);
	if (m->signjob != NULL) {
		/* only after workpool_free: the thread is done with it */
		dkim_sign_free(&m->signjob->signer);
		buf_free(&m->signjob->out);
		free(m->signjob);
	}
	dkim_sign_free(&m->signer);
	queue_keyset_unref(&m->keys);
	if (m->fd >= 0)
		close(m->fd);
	spool_free(&m->sp);
	buf_free(&m->pending);
	buf_free(&m->prefix);
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].orcpt);
		free(m->rcpts[i].text);
		free(m->rcpts[i].remote);
	}
	free(m->rcpts);
	free(m->sender);
	free(m->envid);
	qconf_unref(&m->cf);
	free(m);
}

/* Every recipient without a result fails temporarily with reason. */
static void fail_all(struct qmsg *m, const char *reason)
{
	snprintf(m->fail, sizeof(m->fail), "%s", reason);
	for (size_t i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i].has_result)
			set_result(&m->rcpts[i], SMTP_CLIENT_TEMPFAIL, 0, "4.3.0", reason, NULL);
	for (size_t i = 0; i < m->ngroups; i++)
		group_cancel(&m->groups[i]);
	finalize(m);
}

/* --- recording ---------------------------------------------------------------- */

static const char *route_label(const struct qrcpt *r)
{
	if (r->route != NULL && r->route->name != NULL)
		return r->route->name;
	return r->kind == QUEUE_ROUTE_LOCAL ? "local" : "mx";
}

static enum outbound_attempt_result attempt_result(const struct qrcpt *r)
{
	switch (r->fate) {
	case QUEUE_FATE_SENT:
		return OUTBOUND_ATTEMPT_DELIVERED;
	case QUEUE_FATE_RETRY:
		return OUTBOUND_ATTEMPT_DEFERRED;
	case QUEUE_FATE_FAILED:
	case QUEUE_FATE_EXPIRED:
		break;
	}
	return r->dsn ? OUTBOUND_ATTEMPT_BOUNCED : OUTBOUND_ATTEMPT_FAILED;
}

static void on_recorded(void *arg, const PGresult *res, const char *errstr)
{
	struct qmsg *m = arg;
	struct outbound_queue *q = m->q;
	bool deleted = false;

	m->pgr = NULL;
	if (errstr != NULL && !q->stopping) {
		m->rec_backoff_ms = m->rec_backoff_ms == 0 ? 1000 : m->rec_backoff_ms * 2;
		if (m->rec_backoff_ms > 30000)
			m->rec_backoff_ms = 30000;
		log_error("msg=\"outbound: cannot record results; trying again\" queue_id=%" PRId64
		          " retry_ms=%" PRIu64 " error=\"%s\"",
		          m->id, m->rec_backoff_ms, errstr);
		loop_timer_start(&m->rec_retry, m->rec_backoff_ms, 0);
		return;
	}
	if (errstr != NULL)
		log_error("msg=\"outbound: cannot record results while stopping: the leases expire "
		          "and the recipients are retried\" queue_id=%" PRId64 " error=\"%s\"",
		          m->id, errstr);
	for (size_t i = 0; i < m->nrcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		bool counted = false;
		char id[24], q1[600], q2[300], q3[300], next[24] = "-";
		const char *result;

		snprintf(id, sizeof(id), "%" PRId64, r->id);
		for (int k = 0; errstr == NULL && k < PQntuples(res); k++)
			if (strcmp(PQgetvalue(res, k, 0), "rcpt") == 0 &&
			    strcmp(PQgetvalue(res, k, 1), id) == 0)
				counted = true;
		result = queue_fate_name(r->fate);
		if (r->fate == QUEUE_FATE_RETRY && r->outcome == SMTP_CLIENT_TEMPFAIL)
			result = "deferred";
		q->stats.attempts[attempt_result(r)]++;
		if (!counted)
			q->stats.unrecorded++;
		if (r->fate == QUEUE_FATE_RETRY)
			snprintf(next, sizeof(next), "%" PRId64, r->next - (int64_t)time(NULL));
		/* one line per attempt (DESIGN: one line per event) */
		log_msg(r->fate == QUEUE_FATE_SENT ? LOG_L_INFO : LOG_L_WARN,
		        "msg=\"outbound attempt\" queue_id=%" PRId64 " rcpt=%s route=%s "
		        "domain=%s result=%s code=%d esc=%s remote=%s attempt=%" PRIu64
		        " next_s=%s dsn=%s recorded=%s error=%s",
		        m->id, log_quote(q2, sizeof(q2), r->addr), route_label(r), r->domain,
		        result, r->code, r->esc[0] != '\0' ? r->esc : "-",
		        log_quote(q3, sizeof(q3), r->remote != NULL ? r->remote : "-"), r->attempts,
		        next, r->dsn ? (r->delay_dsn ? "delay" : "yes") : "no",
		        counted ? "yes" : "no: lease lost",
		        log_quote(q1, sizeof(q1),
		                  r->fate == QUEUE_FATE_SENT || r->text == NULL ? "-" : r->text));
	}
	for (int k = 0; errstr == NULL && k < PQntuples(res); k++)
		if (strcmp(PQgetvalue(res, k, 0), "deleted") == 0)
			deleted = true;
	if (deleted)
		log_info("msg=\"outbound message done\" queue_id=%" PRId64 " blob=%s", m->id,
		         m->blob_key);
	msg_free(m);
	claim(q);
}

static void record(struct qmsg *m)
{
	struct buf ids, sts, nxt, err, dly;
	const char *params[6];
	const char **errs = xcalloc(m->nrcpts, sizeof(*errs));
	char **owned = xcalloc(m->nrcpts, sizeof(*owned));

	buf_init(&ids, 0);
	buf_init(&sts, 0);
	buf_init(&nxt, 0);
	buf_init(&err, 0);
	buf_init(&dly, 0);
	buf_puts(&ids, "{");
	buf_puts(&sts, "{");
	buf_puts(&nxt, "{");
	buf_puts(&dly, "{");
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct qrcpt *r = &m->rcpts[i];
		const char *st = "pending";
		const char *sep = i > 0 ? "," : "";

		switch (r->fate) {
		case QUEUE_FATE_SENT:
			st = "sent";
			break;
		case QUEUE_FATE_RETRY:
			break;
		case QUEUE_FATE_FAILED:
		case QUEUE_FATE_EXPIRED:
			st = r->dsn ? "bounced" : "failed";
			break;
		}
		buf_printf(&ids, "%s%" PRId64, sep, r->id);
		buf_printf(&sts, "%s%s", sep, st);
		if (r->fate == QUEUE_FATE_RETRY)
			buf_printf(&nxt, "%s%" PRId64, sep, r->next);
		else
			buf_printf(&nxt, "%sNULL", sep);
		buf_printf(&dly, "%s%s", sep, r->delay_dsn ? "t" : "f");
		if (r->fate != QUEUE_FATE_SENT && r->text != NULL) {
			char *t = xasprintf("%s%d %s %s",
			                    r->fate == QUEUE_FATE_EXPIRED ? "expired: " : "",
			                    r->code, r->esc[0] != '\0' ? r->esc : "-", r->text);

			owned[i] = utf8_clean(t);
			free(t);
		}
		errs[i] = owned[i];
	}
	buf_puts(&ids, "}");
	buf_puts(&sts, "}");
	buf_puts(&nxt, "}");
	buf_puts(&dly, "}");
	pg_array_text_append(&err, errs, m->nrcpts);
	buf_append(&ids, "", 1);
	buf_append(&sts, "", 1);
	buf_append(&nxt, "", 1);
	buf_append(&err, "", 1);
	buf_append(&dly, "", 1);
	params[0] = m->owner;
	params[1] = (const char *)buf_ptr(&ids);
	params[2] = (const char *)buf_ptr(&sts);
	params[3] = (const char *)buf_ptr(&nxt);
	params[4] = (const char *)buf_ptr(&err);
	params[5] = (const char *)buf_ptr(&dly);
	m->pgr = pg_query(m->q->st.pg,
	                  "SELECT out_kind, out_id FROM tp_queue_record($1, $2::bigint[], "
	                  "$3::text[], $4::bigint[], $5::text[], $6::boolean[])",
	                  6, params, on_recorded, m);
	for (size_t i = 0; i < m->nrcpts; i++)
		free(owned[i]);
	free(owned);
	free(errs);
	buf_free(&ids);
	buf_free(&sts);
	buf_free(&nxt);
	buf_free(&err);
	buf_free(&dly);
}

static void on_rec_retry(struct loop_timer *t)
{
	struct qmsg *m = (struct qmsg *)((char *)t - offsetof(struct qmsg, rec_retry));

	record(m);
}

/* --- DSN ------------------------------------------------------------------------- */

static void on_bounced(void *arg, bool ok, const char *error)
{
	struct qmsg *m = arg;
	char q1[400];

	/* error may point into the bounce: free it only after the log */
	if (ok)
		m->q->stats.dsn_stored++;
	else
		m->q->stats.dsn_failed++;
	if (ok) {
		log_info("msg=\"outbound dsn stored\" queue_id=%" PRId64 " to=%s", m->id,
		         log_quote(q1, sizeof(q1), m->sender));
	} else {
		int64_t now = (int64_t)time(NULL);

		/* the failure stays pending: the next attempt tries again (and
		 * bounces again if it fails again) */
		log_error("msg=\"outbound: cannot store the dsn, retrying later\" queue_id=%" PRId64
		          " error=%s",
		          m->id, log_quote(q1, sizeof(q1), error != NULL ? error : "?"));
		for (size_t i = 0; i < m->nrcpts; i++) {
			struct qrcpt *r = &m->rcpts[i];

			if (!r->dsn)
				continue;
			r->dsn = false;
			r->delay_dsn = false;
			if (r->fate != QUEUE_FATE_RETRY) {
				r->fate = QUEUE_FATE_RETRY;
				r->next = now + QUEUE_RETRY_DSN;
			}
		}
	}
	bounce_free(&m->bounce);
	record(m);
}

static void finalize(struct qmsg *m)
{
	struct qconf *cf = m->cf;
	int64_t now = (int64_t)time(NULL);
	struct dsn_rcpt *dr = xcalloc(m->nrcpts, sizeof(*dr));
	size_t nd = 0;

	for (size_t i = 0; i < m->nrcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		bool delay_due;

		if (!r->has_result)
			set_result(r, SMTP_CLIENT_TEMPFAIL, 0, "4.3.0", "no result", NULL);
		r->fate = queue_plan_fate(r->outcome, &cf->sched, m->created, r->attempts, now,
		                          &r->next);
		delay_due = r->fate == QUEUE_FATE_RETRY && cf->delay_ms > 0 && !r->delay_notified &&
		            now - m->created >= (int64_t)(cf->delay_ms / 1000);
		if ((r->fate == QUEUE_FATE_FAILED || r->fate == QUEUE_FATE_EXPIRED) &&
		    dsn_wanted(m->sender, DSN_ACTION_FAILED, r->notify, false)) {
			r->dsn = true;
		} else if (delay_due &&
		           dsn_wanted(m->sender, DSN_ACTION_DELAYED, r->notify, true)) {
			r->dsn = true;
			r->delay_dsn = true;
		} else {
			continue;
		}
		dr[nd++] = (struct dsn_rcpt){
		        .final_recipient = r->addr,
		        .original_recipient = r->orcpt,
		        .action = r->delay_dsn ? DSN_ACTION_DELAYED : DSN_ACTION_FAILED,
		        /* an expiry reports the last temporary reason, else RFC 3463
		         * 4.4.7 "delivery time expired" */
		        .status = r->esc[0] != '\0'               ? r->esc
		                  : r->fate == QUEUE_FATE_EXPIRED ? "4.4.7"
		                                                  : NULL,
		        .smtp_code = r->code,
		        .diagnostic = r->text,
		        .remote_mta = r->remote,
		        .last_attempt = now,
		        .retry_until = r->delay_dsn ? m->created + cf->sched.expiry : 0,
		};
	}
	if (nd == 0) {
		free(dr);
		record(m);
		return;
	}
	{
		char id[32];
		struct bounce_params p = {
		        .st = &m->q->st,
		        .spool_dir = cf->spool_dir,
		        .id = id,
		        .report =
		                {
		                        .reporting_mta = cf->hostname,
		                        .sender = m->sender,
		                        .envid = m->envid,
		                        .arrival = m->created,
		                        .now = now,
		                        .ret = m->ret == SMTP_CLIENT_RET_FULL ? DSN_RET_FULL
		                                                              : DSN_RET_HDRS,
		                        .original_8bit = m->body_8bit,
		                        .rcpts = dr,
		                        .nrcpts = nd,
		                },
		        .original_fd = m->body_ready ? m->fd : -1,
		        .original_len = m->body_ready ? m->body_len : 0,
		};

		snprintf(id, sizeof(id), "q%" PRId64, m->id);
		m->bounce = bounce_start(&p, on_bounced, m);
	}
	free(dr);
}

/* --- groups ---------------------------------------------------------------------- */

static void group_done(struct qgroup *g)
{
	struct qmsg *m = g->m;

	if (g->done)
		return;
	g->done = true;
	if (--m->groups_left == 0)
		finalize(m);
}

static void on_sent(void *arg, const struct smtp_client_result *res, size_t n, const char *mx_host)
{
	struct qgroup *g = arg;
	struct qmsg *m = g->m;

	g->send = NULL;
	for (size_t i = 0; i < g->n; i++) {
		struct qrcpt *r = &m->rcpts[g->idx[i]];

		if (i < n)
			set_result(r, (int)res[i].outcome, res[i].code, res[i].esc, res[i].text,
			           mx_host);
		else
			set_result(r, SMTP_CLIENT_TEMPFAIL, 0, "4.3.0",
			           "no result from the transport", mx_host);
	}
	group_done(g);
}

static void group_send(struct qgroup *g)
{
	struct qmsg *m = g->m;
	struct outbound_job job;
	bool utf8 = has_8bit(m->sender);

	if (m->q->tr == NULL) {
		for (size_t i = 0; i < g->n; i++)
			set_result(&m->rcpts[g->idx[i]], SMTP_CLIENT_TEMPFAIL, 0, "4.3.0",
			           "outbound transport not available", NULL);
		group_done(g);
		return;
	}
	g->crcpts = xcalloc(g->n, sizeof(*g->crcpts));
	for (size_t i = 0; i < g->n; i++) {
		struct qrcpt *r = &m->rcpts[g->idx[i]];

		g->crcpts[i] = (struct smtp_client_rcpt){r->addr, r->notify, r->orcpt};
		utf8 = utf8 || has_8bit(r->addr);
	}
	memset(&job, 0, sizeof(job));
	job.route = g->route;
	job.domain = g->domain;
	job.msg.from = m->sender;
	job.msg.rcpts = g->crcpts;
	job.msg.nrcpts = g->n;
	job.msg.size = buf_len(&m->prefix) + m->body_len;
	job.msg.body_8bit = m->body_8bit;
	job.msg.smtputf8 = utf8;
	job.msg.ret = m->ret;
	job.msg.envid = m->envid;
	job.prefix = (const char *)buf_ptr(&m->prefix);
	job.prefix_len = buf_len(&m->prefix);
	job.fd = m->fd;
	job.offset = 0;
	job.length = m->body_len;
	g->send = outbound_transport_send(m->q->tr, &job, on_sent, g);
}

/* local route: deliver into the store */

static void on_local_committed(void *arg, bool ok, const struct delivery_result *res)
{
	struct qgroup *g = arg;
	struct qmsg *m = g->m;
	char err[300];

	snprintf(err, sizeof(err), "local delivery failed: %s: %s",
	         res->step != NULL ? res->step : "?", res->error != NULL ? res->error : "?");
	delivery_free(&g->dlv);
	for (size_t i = 0; i < g->n; i++) {
		struct qrcpt *r = &m->rcpts[g->idx[i]];

		if (!g->local_ok[i])
			continue;
		if (ok)
			set_result(r, SMTP_CLIENT_DELIVERED, 250, "2.0.0", "delivered locally",
			           NULL);
		else
			set_result(r, SMTP_CLIENT_TEMPFAIL, 0, "4.3.0", err, NULL);
	}
	group_done(g);
}

static void local_deliver(struct qgroup *g)
{
	struct qmsg *m = g->m;
	struct delivery_params p = {
	        .id = NULL,
	        .spool_dir = m->cf->spool_dir,
	        .hostname = m->cf->hostname,
	        .sender = m->sender,
	        .accounts = g->accounts,
	        .naccounts = g->naccounts,
	        .remote = g->fwd,
	        .nremote = g->nfwd,
	        .now = time(NULL),
	};
	char err[300], id[32];
	uint8_t *chunk = NULL;
	uint64_t off = 0;

	if (g->naccounts + g->nfwd == 0) {
		group_done(g);
		return;
	}
	snprintf(id, sizeof(id), "q%" PRId64, m->id);
	p.id = id;
	g->dlv = delivery_begin(&m->q->st, &p, err, sizeof(err));
	if (g->dlv == NULL)
		goto fail;
	chunk = xmalloc(QUEUE_READ);
	while (off < m->body_len) {
		size_t want =
		        m->body_len - off < QUEUE_READ ? (size_t)(m->body_len - off) : QUEUE_READ;
		ssize_t n = pread(m->fd, chunk, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, sizeof(err), "spool read: %s",
			         n < 0 ? strerror(errno) : "short file");
			goto fail;
		}
		if (delivery_write(g->dlv, chunk, (size_t)n, err, sizeof(err)) < 0)
			goto fail;
		off += (uint64_t)n;
	}
	free(chunk);
	delivery_commit(g->dlv, on_local_committed, g);
	return;
fail:
	free(chunk);
	delivery_free(&g->dlv);
	for (size_t i = 0; i < g->n; i++)
		if (g->local_ok[i])
			set_result(&m->rcpts[g->idx[i]], SMTP_CLIENT_TEMPFAIL, 0, "4.3.0", err,
			           NULL);
	group_done(g);
}

static void local_next(struct qgroup *g);

static void on_local_lookup(void *arg, const struct lookup_rcpt_result *res)
{
	struct qgroup *g = arg;
	struct qrcpt *r = &g->m->rcpts[g->idx[g->looked]];

	g->pgr = NULL;
	switch (res->status) {
	case LOOKUP_RCPT_LOCAL:
		if (res->naccounts + res->nforwards == 0) {
			set_result(r, SMTP_CLIENT_PERMFAIL, 550, "5.1.1",
			           "the address leads to no mailbox", NULL);
			break;
		}
		g->local_ok[g->looked] = true;
		g->accounts = xreallocarray(g->accounts, g->naccounts + res->naccounts + 1,
		                            sizeof(*g->accounts));
		memcpy(g->accounts + g->naccounts, res->accounts,
		       res->naccounts * sizeof(*g->accounts));
		g->naccounts += res->naccounts;
		g->fwd = xreallocarray(g->fwd, g->nfwd + res->nforwards + 1, sizeof(*g->fwd));
		for (size_t k = 0; k < res->nforwards; k++)
			g->fwd[g->nfwd++] =
			        (struct delivery_sql_remote){xstrdup(res->forwards[k]), NULL, NULL};
		break;
	case LOOKUP_RCPT_UNKNOWN:
	case LOOKUP_RCPT_NOT_LOCAL:
		/* a local route bounces unknown users (RFC 3463 5.1.1) */
		set_result(r, SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no such user here", NULL);
		break;
	case LOOKUP_RCPT_TEMPFAIL:
		set_result(r, SMTP_CLIENT_TEMPFAIL, 0, "4.3.0",
		           res->errstr != NULL ? res->errstr : "directory lookup failed", NULL);
		break;
	}
	g->looked++;
	local_next(g);
}

static void local_next(struct qgroup *g)
{
	if (g->looked < g->n) {
		g->pgr = lookup_rcpt(g->m->q->st.pg, g->m->rcpts[g->idx[g->looked]].addr,
		                     on_local_lookup, g);
		return;
	}
	local_deliver(g);
}

static void dispatch(struct qmsg *m)
{
	struct queue_plan_rcpt *pr = xcalloc(m->nrcpts, sizeof(*pr));

	for (size_t i = 0; i < m->nrcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		const struct mailbox_route_conf *route =
		        mailbox_route_match(m->cf->routes, m->cf->nroutes, r->domain);

		r->route = route;
		r->kind = route == NULL                         ? QUEUE_ROUTE_MX
		          : route->type == OUTBOUND_ROUTE_LOCAL ? QUEUE_ROUTE_LOCAL
		          : route->type == OUTBOUND_ROUTE_RELAY ? QUEUE_ROUTE_RELAY
		                                                : QUEUE_ROUTE_MX;
		pr[i] = (struct queue_plan_rcpt){r->kind, route, r->domain, 0};
	}
	m->ngroups = queue_plan_group(pr, m->nrcpts);
	m->groups = xcalloc(m->ngroups, sizeof(*m->groups));
	for (size_t i = 0; i < m->nrcpts; i++) {
		struct qgroup *g = &m->groups[pr[i].group];

		m->rcpts[i].group = pr[i].group;
		if (g->n == 0) {
			g->m = m;
			g->kind = m->rcpts[i].kind;
			g->route = m->rcpts[i].route;
			g->domain = m->rcpts[i].domain;
			g->idx = xcalloc(m->nrcpts, sizeof(*g->idx));
		}
		g->idx[g->n++] = i;
	}
	free(pr);
	m->groups_left = m->ngroups;
	/* each group may finish (and finalize the message) only from the
	 * loop, so starting them all here is safe */
	for (size_t i = 0; i < m->ngroups; i++) {
		struct qgroup *g = &m->groups[i];

		if (g->kind == QUEUE_ROUTE_LOCAL) {
			g->local_ok = xcalloc(g->n, sizeof(*g->local_ok));
			local_next(g);
		} else {
			group_send(g);
		}
	}
}

/* --- content: blob -> strip -> spool (+ DKIM) ---------------------------------------- */

/* Write the pending stripped bytes to the spool and the signer. */
static int flush_pending(struct qmsg *m)
{
	char err[300];
	const uint8_t *p = buf_ptr(&m->pending);
	size_t n = buf_len(&m->pending);

	if (n == 0)
		return 0;
	if (!m->body_8bit)
		for (size_t i = 0; i < n; i++)
			if (p[i] >= 0x80) {
				m->body_8bit = true;
				break;
			}
	if (m->signer != NULL && dkim_sign_feed(m->signer, p, n) < 0) {
		log_warn("msg=\"outbound: dkim signing given up (header too large); sending "
		         "unsigned\" queue_id=%" PRId64,
		         m->id);
		dkim_sign_free(&m->signer);
	}
	if (spool_write(m->sp, p, n, err, sizeof(err)) < 0) {
		fail_all(m, err);
		return -1;
	}
	buf_reset(&m->pending);
	return 0;
}

static void fetch(struct qmsg *m);

static void sign_fn(void *arg)
{
	struct signjob *j = arg;

	j->rc = dkim_sign_finish(j->signer, &j->out, &j->why);
}

static void sign_done(void *arg)
{
	struct signjob *j = arg;
	struct qmsg *m = j->m;

	m->signjob = NULL;
	if (j->rc < 0)
		log_warn("msg=\"outbound: dkim signing failed; sending unsigned\" "
		         "queue_id=%" PRId64 " error=\"%s\"",
		         m->id, j->why != NULL ? j->why : "?");
	else
		buf_append(&m->prefix, buf_ptr(&j->out), buf_len(&j->out));
	dkim_sign_free(&j->signer);
	buf_free(&j->out);
	free(j);
	queue_keyset_unref(&m->keys);
	m->body_ready = true;
	dispatch(m);
}

static void body_done(struct qmsg *m)
{
	char key[BLOB_KEY_LEN + 1], err[300];
	uint64_t size;

	queue_rpstrip_finish(&m->strip, &m->pending);
	if (flush_pending(m) < 0)
		return;
	if (spool_finish(m->sp, key, &size, err, sizeof(err)) < 0) {
		fail_all(m, err);
		return;
	}
	m->fd = open(spool_path(m->sp), O_RDONLY | O_CLOEXEC);
	if (m->fd < 0) {
		snprintf(err, sizeof(err), "spool %s: %s", spool_path(m->sp), strerror(errno));
		fail_all(m, err);
		return;
	}
	m->body_len = size;
	if (m->signer != NULL) {
		struct signjob *j = xcalloc(1, sizeof(*j));

		j->m = m;
		j->signer = m->signer;
		m->signer = NULL;
		buf_init(&j->out, 0);
		m->signjob = j;
		workpool_submit(m->q->wp, sign_fn, sign_done, j);
		return;
	}
	queue_keyset_unref(&m->keys);
	m->body_ready = true;
	dispatch(m);
}

/* The keys are known (or none): make the signer, then write and go on. */
static void keys_ready(struct qmsg *m)
{
	if (m->keys != NULL && m->keys->n > 0) {
		struct dkim_sign_spec specs[DKIM_SIGN_MAX];
		struct dkim_sign_opts opts = {.now = (int64_t)time(NULL)};
		const char *why = NULL;

		for (size_t i = 0; i < m->keys->n; i++)
			specs[i] = (struct dkim_sign_spec){.key = m->keys->keys[i],
			                                   .domain = m->keys->domain,
			                                   .selector = m->keys->selectors[i]};
		m->signer = dkim_sign_new(specs, m->keys->n, &opts, &why);
		if (m->signer == NULL)
			log_warn("msg=\"outbound: cannot sign; sending unsigned\" queue_id=%" PRId64
			         " domain=%s error=\"%s\"",
			         m->id, m->keys->domain, why != NULL ? why : "?");
	}
	if (flush_pending(m) < 0)
		return;
	if (m->off >= m->size)
		body_done(m);
	else
		fetch(m);
}

static void on_keys(void *arg, const PGresult *res, const char *errstr)
{
	struct qmsg *m = arg;
	struct outbound_queue *q = m->q;
	const char *doms[1] = {m->sign_domain};
	int64_t now = (int64_t)time(NULL);

	m->pgr = NULL;
	if (errstr != NULL) {
		char err[400];

		/* unsigned mail may be rejected: better to wait */
		snprintf(err, sizeof(err), "dkim keys: %s", errstr);
		fail_all(m, err);
		return;
	}
	queue_keys_store(q->keys, doms, 1, res, now);
	m->keys = queue_keys_get(q->keys, m->sign_domain, now);
	keys_ready(m);
}

/* After the first chunk: which keys sign (the envelope sender's domain). */
static void pick_keys(struct qmsg *m)
{
	struct outbound_queue *q = m->q;
	char fdom[256];
	int64_t now = (int64_t)time(NULL);
	bool have_from;
	struct queue_keyset *a = NULL;

	if (m->account_id == 0) {
		keys_ready(m);
		return;
	}
	/*
	 * Sign for the envelope sender's domain only: submission checked that
	 * the account may use that address (mailbox/smtp/sender.h).  A From:
	 * of another of our domains gets no signature of that domain, or any
	 * user of one domain could have mail signed by every other domain
	 * on a shared server.  From: and sender in one domain (the usual case)
	 * gives the DMARC-aligned signature.
	 */
	if (!queue_plan_domain(m->sender, m->sign_domain, sizeof(m->sign_domain))) {
		keys_ready(m);
		return;
	}
	have_from = queue_plan_from_domain(buf_ptr(&m->pending), buf_len(&m->pending), fdom,
	                                   sizeof(fdom));
	if (have_from && strcmp(fdom, m->sign_domain) != 0)
		log_info("msg=\"outbound: From: domain differs from the sender's; signing for the "
		         "sender's domain\" queue_id=%" PRId64 " from_domain=%s sign_domain=%s",
		         m->id, fdom, m->sign_domain);
	a = queue_keys_get(q->keys, m->sign_domain, now);
	if (a != NULL) {
		m->keys = a;
		keys_ready(m);
		return;
	}
	{
		struct buf arr;
		const char *doms[1] = {m->sign_domain};
		const char *params[1];

		buf_init(&arr, 0);
		pg_array_text_append(&arr, doms, 1);
		buf_append(&arr, "", 1);
		params[0] = (const char *)buf_ptr(&arr);
		m->pgr = pg_query(q->st.pg, QUEUE_KEYS_SQL, 1, params, on_keys, m);
		buf_free(&arr);
	}
}

static void on_chunk(void *arg, enum blob_status st, const uint8_t *data, size_t len,
                     const char *errstr)
{
	struct qmsg *m = arg;
	bool first = m->off == 0;
	char err[400];

	m->br = NULL;
	if (st != BLOB_OK) {
		snprintf(err, sizeof(err), "blob %s: %s", m->blob_key,
		         st == BLOB_NOT_FOUND ? "not found in the blob store"
		                              : (errstr != NULL ? errstr : "read failed"));
		fail_all(m, err);
		return;
	}
	queue_rpstrip_feed(&m->strip, data, len, &m->pending);
	m->off += len;
	if (len == 0 && m->off < m->size) {
		snprintf(err, sizeof(err), "blob %s: shorter than its %" PRIu64 " bytes",
		         m->blob_key, m->size);
		fail_all(m, err);
		return;
	}
	if (first) {
		pick_keys(m);
		return;
	}
	if (flush_pending(m) < 0)
		return;
	if (m->off >= m->size)
		body_done(m);
	else
		fetch(m);
}

static void fetch(struct qmsg *m)
{
	m->br = blob_get(m->q->st.blob, m->blob_key, m->off, QUEUE_CHUNK, QUEUE_CHUNK, on_chunk, m);
}

static void msg_start(struct qmsg *m)
{
	char err[300];

	m->sp = spool_open(m->cf->spool_dir, err, sizeof(err));
	if (m->sp == NULL) {
		m->groups_left = 0;
		fail_all(m, err);
		return;
	}
	fetch(m);
}

/* --- claiming ------------------------------------------------------------------- */

static struct qmsg *msg_new(struct outbound_queue *q, const PGresult *res, int row)
{
	struct qmsg *m = xcalloc(1, sizeof(*m));
	const char *ret = PQgetisnull(res, row, 11) ? NULL : PQgetvalue(res, row, 11);

	m->q = q;
	m->cf = q->cf;
	m->cf->refs++;
	m->fd = -1;
	loop_timer_init(&m->rec_retry, q->loop, on_rec_retry);
	snprintf(m->owner, sizeof(m->owner), "%s:%" PRIu64, q->prefix, q->seq);
	m->id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	m->sender = xstrdup(PQgetvalue(res, row, 7));
	snprintf(m->blob_key, sizeof(m->blob_key), "%s", PQgetvalue(res, row, 8));
	m->size = strtoull(PQgetvalue(res, row, 9), NULL, 10);
	m->account_id = PQgetisnull(res, row, 10) ? 0 : strtoll(PQgetvalue(res, row, 10), NULL, 10);
	m->ret = ret == NULL                ? SMTP_CLIENT_RET_NONE
	         : strcmp(ret, "FULL") == 0 ? SMTP_CLIENT_RET_FULL
	                                    : SMTP_CLIENT_RET_HDRS;
	m->envid = PQgetisnull(res, row, 12) ? NULL
	                                     : queue_plan_xtext_decode(PQgetvalue(res, row, 12));
	m->created = strtoll(PQgetvalue(res, row, 13), NULL, 10);
	buf_init(&m->pending, 0);
	buf_init(&m->prefix, 0);
	queue_rpstrip_init(&m->strip);
	m->next = q->msgs;
	if (q->msgs != NULL)
		q->msgs->prev = m;
	q->msgs = m;
	q->inflight++;
	return m;
}

static void rcpt_add(struct qmsg *m, const PGresult *res, int row)
{
	struct qrcpt *r;

	m->rcpts = xreallocarray(m->rcpts, m->nrcpts + 1, sizeof(*m->rcpts));
	r = &m->rcpts[m->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	r->addr = xstrdup(PQgetvalue(res, row, 2));
	r->attempts = strtoull(PQgetvalue(res, row, 3), NULL, 10);
	r->notify = PQgetisnull(res, row, 4) ? 0 : queue_plan_notify(PQgetvalue(res, row, 4));
	r->orcpt = PQgetisnull(res, row, 5) ? NULL : queue_plan_orcpt(PQgetvalue(res, row, 5));
	r->delay_notified = strcmp(PQgetvalue(res, row, 6), "t") == 0;
	queue_plan_domain(r->addr, r->domain, sizeof(r->domain));
}

static void on_claimed(void *arg, const PGresult *res, const char *errstr)
{
	struct outbound_queue *q = arg;
	struct qmsg *m = NULL, **batch;
	size_t nmsgs = 0, limit;
	int64_t cur = -1;

	q->claim = NULL;
	if (errstr != NULL) {
		q->stats.claim_errors++;
		log_warn("msg=\"outbound: claim failed\" error=\"%s\"", errstr);
		return;
	}
	q->stats.claims++;
	q->stats.claimed_rcpts += (uint64_t)PQntuples(res);
	limit = q->cf->concurrency > q->inflight ? q->cf->concurrency - q->inflight : 0;
	batch = xcalloc((size_t)PQntuples(res) + 1, sizeof(*batch));
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t mid = strtoll(PQgetvalue(res, i, 1), NULL, 10);

		if (mid != cur) {
			m = msg_new(q, res, i);
			batch[nmsgs++] = m;
			q->stats.claimed_msgs++;
			cur = mid;
		}
		rcpt_add(m, res, i);
	}
	if (nmsgs > 0)
		log_debug("msg=\"outbound claimed\" messages=%zu rcpts=%d owner=%s:%" PRIu64, nmsgs,
		          PQntuples(res), q->prefix, q->seq);
	/* every step of a message completes from the loop, so none of them
	 * is freed while this loop runs */
	for (size_t i = 0; i < nmsgs; i++)
		msg_start(batch[i]);
	free(batch);
	/* a full batch: there may be more */
	if (nmsgs > 0 && nmsgs >= limit)
		q->again = true;
	if (q->again) {
		q->again = false;
		claim(q);
	}
}

static void claim(struct outbound_queue *q)
{
	char lease[24], limit[24], owner[96];
	const char *params[3];
	size_t n;

	if (q->stopping || !q->cf->enabled)
		return;
	if (q->claim != NULL) {
		q->again = true;
		return;
	}
	if (q->inflight >= q->cf->concurrency)
		return;
	n = q->cf->concurrency - q->inflight;
	q->seq++;
	snprintf(owner, sizeof(owner), "%s:%" PRIu64, q->prefix, q->seq);
	snprintf(lease, sizeof(lease), "%" PRIu64, q->cf->lease_ms);
	snprintf(limit, sizeof(limit), "%zu", n);
	params[0] = owner;
	params[1] = lease;
	params[2] = limit;
	q->claimed_any = true;
	q->claim = pg_query(q->st.pg, "SELECT * FROM tp_queue_claim($1, $2::bigint, $3::integer)",
	                    3, params, on_claimed, q);
}

/* --- wake-ups ------------------------------------------------------------------- */

static void on_poll(struct loop_timer *t)
{
	claim(container_of(t, struct outbound_queue, poll));
}

static void on_kick(struct loop_timer *t)
{
	claim(container_of(t, struct outbound_queue, kick));
}

void outbound_queue_kick(struct outbound_queue *q)
{
	if (q == NULL || q->stopping || loop_timer_active(&q->kick))
		return;
	loop_timer_start(&q->kick, 0, 0);
}

/* --- queue depth for /metrics ---------------------------------------------------- */

/* Pending recipients have a partial index (queue_rcpts_due); the message
 * table holds only messages with work left (tp_queue_record deletes the
 * rest), so both counts stay small in a healthy queue. */
#define DEPTH_SQL                                                                                  \
	"SELECT (SELECT count(*) FROM queue_messages),"                                            \
	" (SELECT coalesce(extract(epoch FROM now() - min(created)), 0)::float8"                   \
	"    FROM queue_messages),"                                                                \
	" count(*), count(*) FILTER (WHERE next_attempt <= now()),"                                \
	" count(*) FILTER (WHERE lease_until > now())"                                             \
	" FROM queue_rcpts WHERE status = 'pending'"

static void on_depth(void *arg, const PGresult *res, const char *errstr)
{
	struct outbound_queue *q = arg;
	struct outbound_queue_stats *st = &q->stats;

	q->depthq = NULL;
	if (errstr != NULL || PQntuples(res) != 1) {
		/* a stale gauge is worse than none */
		st->depth_known = false;
		log_debug("msg=\"outbound: queue depth count failed\" error=\"%s\"",
		          errstr != NULL ? errstr : "no row");
		return;
	}
	st->depth_msgs = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	st->depth_oldest_s = strtod(PQgetvalue(res, 0, 1), NULL);
	st->depth_rcpts = strtoull(PQgetvalue(res, 0, 2), NULL, 10);
	st->depth_due = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
	st->depth_leased = strtoull(PQgetvalue(res, 0, 4), NULL, 10);
	st->depth_known = true;
}

static void on_depth_timer(struct loop_timer *t)
{
	struct outbound_queue *q = container_of(t, struct outbound_queue, depth);

	if (q->depthq != NULL || q->stopping)
		return;
	q->depthq = pg_query(q->st.pg, DEPTH_SQL, 0, NULL, on_depth, q);
}

/* --- lease renewal ------------------------------------------------------------------ */

static void on_renewed(void *arg, const PGresult *res, const char *errstr)
{
	struct outbound_queue *q = arg;

	(void)res;
	q->renewq = NULL;
	if (errstr != NULL)
		log_warn("msg=\"outbound: cannot renew leases\" error=\"%s\"", errstr);
}

static void on_renew_timer(struct loop_timer *t)
{
	struct outbound_queue *q =
	        (struct outbound_queue *)((char *)t - offsetof(struct outbound_queue, renew));
	char lease[24];
	const char *params[2] = {q->prefix, lease};

	if (q->inflight == 0 || q->renewq != NULL)
		return;
	snprintf(lease, sizeof(lease), "%" PRIu64, q->cf->lease_ms);
	q->renewq = pg_query(q->st.pg,
	                     "UPDATE queue_rcpts SET lease_until = now() + $2::bigint * "
	                     "interval '1 millisecond' WHERE status = 'pending'"
	                     " AND lease_owner IS NOT NULL"
	                     " AND left(lease_owner, length($1) + 1) = $1 || ':'",
	                     2, params, on_renewed, q);
}

static uint64_t renew_every_ms(const struct qconf *c)
{
	uint64_t ms = c->lease_ms / 3;

	return ms < 1000 ? 1000 : ms;
}

void outbound_queue_stats(const struct outbound_queue *q, struct outbound_queue_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (q == NULL)
		return;
	*out = q->stats;
	out->in_flight = q->inflight;
	if (q->tr != NULL)
		outbound_transport_stats(q->tr, &out->transport);
}

static void on_queued_msg(void *arg, const char *channel, const char *msg, size_t len)
{
	(void)channel;
	(void)msg;
	(void)len;
	outbound_queue_kick(arg);
}

/* --- life cycle ------------------------------------------------------------------- */

struct outbound_queue *outbound_queue_new(struct ev_loop *loop, const struct mailbox_config *cfg,
                                          const struct delivery_stores *st)
{
	struct outbound_queue *q = xcalloc(1, sizeof(*q));
	uint8_t r[6];
	char host[64];

	q->loop = loop;
	q->st = *st;
	q->data_cfg = &cfg->stores.data;
	q->cf = qconf_new(cfg);
	q->tr = outbound_transport_new(loop, cfg);
	if (q->tr == NULL) {
		qconf_unref(&q->cf);
		free(q);
		return NULL;
	}
	q->keys = queue_keys_new();
	q->wp = workpool_new(loop, 1);
	/* owner tokens: unique per process and claim, readable in the table */
	if (RAND_bytes(r, sizeof(r)) != 1)
		fatal("msg=\"RAND_bytes failed\"");
	snprintf(host, sizeof(host), "%s", cfg->hostname);
	snprintf(q->prefix, sizeof(q->prefix), "%.40s:%d:%02x%02x%02x%02x%02x%02x", host,
	         (int)getpid(), r[0], r[1], r[2], r[3], r[4], r[5]);
	loop_timer_init(&q->poll, loop, on_poll);
	loop_timer_init(&q->kick, loop, on_kick);
	loop_timer_init(&q->depth, loop, on_depth_timer);
	loop_timer_init(&q->renew, loop, on_renew_timer);
	loop_timer_start(&q->renew, renew_every_ms(q->cf), renew_every_ms(q->cf));
	loop_timer_start(&q->depth, 0, OUTBOUND_QUEUE_DEPTH_MS);
	if (q->st.mem != NULL)
		q->sub = mem_subscribe(q->st.mem, DELIVERY_QUEUE_CHANNEL, on_queued_msg, q);
	loop_timer_start(&q->poll, 0, q->cf->poll_ms);
	log_info("msg=\"outbound queue started\" enabled=%s concurrency=%zu poll_ms=%" PRIu64
	         " lease_ms=%" PRIu64 " expire_s=%" PRId64 " routes=%zu owner=%s",
	         q->cf->enabled ? "yes" : "no", q->cf->concurrency, q->cf->poll_ms, q->cf->lease_ms,
	         q->cf->sched.expiry, q->cf->nroutes, q->prefix);
	return q;
}

void outbound_queue_reconfigure(struct outbound_queue *q, const struct mailbox_config *cfg)
{
	struct qconf *c;

	if (q == NULL)
		return;
	c = qconf_new(cfg);
	qconf_unref(&q->cf);
	q->cf = c;
	outbound_transport_reconfigure(q->tr, cfg);
	loop_timer_start(&q->renew, renew_every_ms(q->cf), renew_every_ms(q->cf));
	if (!q->stopping)
		loop_timer_start(&q->poll, 0, q->cf->poll_ms);
	log_info("msg=\"outbound queue reconfigured\" enabled=%s concurrency=%zu routes=%zu",
	         c->enabled ? "yes" : "no", c->concurrency, c->nroutes);
}

void outbound_queue_stop(struct outbound_queue *q)
{
	if (q == NULL)
		return;
	q->stopping = true;
	loop_timer_stop(&q->poll);
	loop_timer_stop(&q->kick);
	loop_timer_stop(&q->depth);
	pg_req_cancel(&q->depthq);
	mem_unsubscribe(&q->sub);
	log_info("msg=\"outbound queue stopping\" in_flight=%zu", q->inflight);
}

bool outbound_queue_idle(const struct outbound_queue *q)
{
	return q == NULL || (q->inflight == 0 && q->claim == NULL);
}

/*
 * Blocking: the loop has ended.  Claims whose sending had not begun go
 * back to the queue at once instead of waiting for their leases to
 * expire.  Recipients in keep (an array literal: messages that were being
 * sent, or whose results were not written yet) keep their leases: the
 * remote server may have taken the message, so they are retried only
 * when the lease ends, as after a crash (at most one duplicate).
 */
static void release(struct outbound_queue *q, const char *keep)
{
	char err[512];
	const char *params[2] = {q->prefix, keep};
	PGconn *c = pg_connect_blocking(q->data_cfg, err, sizeof(err));
	PGresult *res;

	if (c == NULL) {
		log_warn("msg=\"outbound: cannot release leases; they expire by themselves\" "
		         "error=\"%s\"",
		         err);
		return;
	}
	res = pg_exec(c,
	              "WITH u AS (UPDATE queue_rcpts r SET lease_owner = NULL, lease_until = NULL,"
	              " attempts = greatest(r.attempts - 1, 0), updated = now()"
	              " WHERE r.status = 'pending' AND r.lease_owner IS NOT NULL"
	              " AND left(r.lease_owner, length($1) + 1) = $1 || ':'"
	              " AND NOT (r.id = ANY($2::bigint[])) RETURNING 1)"
	              " SELECT count(*) FROM u",
	              2, params, err, sizeof(err), NULL);
	if (res == NULL)
		log_warn("msg=\"outbound: cannot release leases; they expire by themselves\" "
		         "error=\"%s\"",
		         err);
	else
		log_info("msg=\"outbound leases released\" rcpts=%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(c);
}

void outbound_queue_free(struct outbound_queue **qp)
{
	struct outbound_queue *q = *qp;
	bool busy;
	struct buf keep;
	size_t kept = 0;

	if (q == NULL)
		return;
	busy = !outbound_queue_idle(q);
	pg_req_cancel(&q->claim);
	pg_req_cancel(&q->depthq);
	pg_req_cancel(&q->renewq);
	loop_timer_stop(&q->renew);
	/* signing jobs finish (their done callbacks do not run) before the
	 * messages that own them go */
	workpool_free(&q->wp);
	buf_init(&keep, 0);
	buf_puts(&keep, "{");
	for (struct qmsg *m = q->msgs; m != NULL; m = m->next) {
		if (m->ngroups == 0)
			continue; /* not sending yet: give it back */
		for (size_t i = 0; i < m->nrcpts; i++)
			buf_printf(&keep, "%s%" PRId64, kept++ > 0 ? "," : "", m->rcpts[i].id);
	}
	buf_puts(&keep, "}");
	buf_append(&keep, "", 1);
	while (q->msgs != NULL)
		msg_free(q->msgs);
	loop_timer_stop(&q->poll);
	loop_timer_stop(&q->kick);
	loop_timer_stop(&q->depth);
	mem_unsubscribe(&q->sub);
	outbound_transport_free(&q->tr);
	if (busy) {
		if (kept > 0)
			log_warn("msg=\"outbound: deliveries cut short by the shutdown keep their "
			         "leases and are retried when they expire\" rcpts=%zu",
			         kept);
		release(q, (const char *)buf_ptr(&keep));
	}
	buf_free(&keep);
	queue_keys_free(&q->keys);
	qconf_unref(&q->cf);
	free(q);
	*qp = NULL;
}
