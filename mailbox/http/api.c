/*
 * mailbox/http/api.c -- the admin API (see api.h).
 *
 * A call goes through three steps:
 *   1. on the loop: authenticate (a bearer token is looked up on the
 *      Postgres pool; the recovery admin is compared in constant time),
 *      route the path to an operation, parse and check the JSON body;
 *   2. on the admin worker thread: run the directory functions, which
 *      block, and build the JSON answer (jansson objects are handed over
 *      through the job queue's mutex, never shared);
 *   3. on the loop: serialise the answer and hand it to the connection,
 *      unless the connection went away meanwhile (then just free).
 * Errors of the directory come back as text; classify() maps them onto
 * status codes (404 for what does not exist, 409 for conflicts, 503 when
 * the database is unreachable, 400 for the rest, which are validation
 * messages meant for the operator).
 */
#include "mailbox/http/api.h"

#include "mailbox/directory/directory.h"
#include "mailbox/directory/lookup.h"
#include "mailbox/directory/password.h"
#include "mailbox/dkim/keystore.h"
#include "mailbox/outbound/dnsrecords_admin.h"
#include "mailbox/outbound/queue.h"
#include "mailbox/outbound/queue_admin.h"
#include "mailbox/server/abuse.h"
#include "mailbox/server/jobs.h"
#include "mailbox/server/server.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API_PREFIX "/api/v1"
#define PARAM_MAX  512

enum api_op {
	OP_NONE = 0,
	OP_DOMAIN_LIST,
	OP_DOMAIN_CREATE,
	OP_DOMAIN_GET,
	OP_DOMAIN_DELETE,
	OP_ACCOUNT_LIST,
	OP_ACCOUNT_CREATE,
	OP_ACCOUNT_GET,
	OP_ACCOUNT_UPDATE,
	OP_ACCOUNT_PASSWORD,
	OP_ACCOUNT_DELETE,
	OP_ALIAS_LIST,
	OP_ALIAS_CREATE,
	OP_ALIAS_GET,
	OP_ALIAS_PUT,
	OP_ALIAS_DELETE,
	OP_DKIM_LIST,
	OP_DKIM_CREATE,
	OP_DNS_GET,
	OP_QUEUE_LIST,
	OP_QUEUE_GET,
	OP_QUEUE_RETRY,
	OP_QUEUE_DELETE,
};

#define QUEUE_LIST_DEFAULT 1000

struct api_call {
	struct server *server;
	api_done_cb *cb; /* NULL once cancelled */
	void *arg;
	struct pg_req *token_req;
	struct loop_timer later; /* finish_later() */
	bool in_job;
	struct api_client client;
	char listener[64];
	char ip[NET_ADDRSTRLEN];
	char who[80]; /* "token:name" or "recovery:user", for the log */
	/* the operation */
	enum api_op op;
	char param[PARAM_MAX];  /* the decoded NAME / LOGIN / ADDRESS */
	char domain[PARAM_MAX]; /* ?domain= */
	bool force;             /* ?force=true */
	json_t *body;
	/* dkim, dns, queue */
	enum dkim_alg alg; /* POST .../dkim */
	int64_t qid;       /* /queue/ID */
	int64_t limit;     /* GET /queue?limit= */
	bool zone;         /* GET .../dns?format=zone */
	char hostname[256];
	char cert_file[1024];
	char report[PARAM_MAX];
	char mta_sts[16];
	char mta_sts_id[64];
	char dmarc[16];
	char spf_extra[PARAM_MAX];
	/* the answer */
	int status;
	json_t *result;
	char *extra; /* extra header lines */
	char *text;  /* a plain-text answer instead of result (the zone snippet) */
	char errmsg[512];
};

static void wipe_json_string(json_t *s);

static void call_free(struct api_call *a)
{
	if (a->token_req != NULL)
		pg_req_cancel(&a->token_req);
	if (a->later.loop != NULL)
		loop_timer_stop(&a->later);
	if (a->body != NULL)
		wipe_json_string(json_object_get(a->body, "password"));
	json_decref(a->body);
	json_decref(a->result);
	free(a->extra);
	free(a->text);
	OPENSSL_cleanse(a, sizeof(*a));
	free(a);
}

/* --- answering ------------------------------------------------------------ */

static void set_error(struct api_call *a, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_error(struct api_call *a, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->errmsg, sizeof(a->errmsg), fmt, ap);
	va_end(ap);
	a->status = status;
	json_decref(a->result);
	a->result = NULL;
}

/* Serialise and deliver from the loop; frees a. */
static void finish(struct api_call *a)
{
	char *text = NULL;
	size_t len = 0;
	const char *ctype = NULL;

	if (a->cb == NULL) {
		call_free(a);
		return;
	}
	if (a->status >= 400) {
		json_t *e = json_pack("{s:s, s:i}", "error", a->errmsg, "status", a->status);
		text = json_dumps(e, JSON_COMPACT);
		json_decref(e);
		log_info("msg=\"admin api error\" listener=%s client=%s who=%s status=%d "
		         "error=\"%s\"",
		         a->listener, a->ip, a->who[0] ? a->who : "-", a->status, a->errmsg);
	} else if (a->text != NULL) {
		text = a->text;
		a->text = NULL;
		ctype = "text/plain; charset=utf-8";
	} else if (a->result != NULL) {
		text = json_dumps(a->result, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	if (text != NULL)
		len = strlen(text);
	if (text != NULL && ctype == NULL) {
		/* a trailing newline reads better with curl */
		text = xrealloc(text, len + 2);
		text[len++] = '\n';
		text[len] = '\0';
	}
	a->cb(a->arg, a->status, ctype, text != NULL ? text : "", len, a->extra);
	free(text);
	call_free(a);
}

/* The worker finished (or never ran the job, at shutdown). */
static void on_job_done(void *arg, bool ran)
{
	struct api_call *a = arg;

	a->in_job = false;
	if (!ran && a->status == 0)
		set_error(a, 503, "the daemon is shutting down");
	if (a->op == OP_QUEUE_RETRY && a->status == 200) {
		/* due now: wake the delivery workers of every instance rather
		 * than leave it to their next poll */
		struct mem_store *mem = server_mem(a->server);

		outbound_queue_kick(server_outbound(a->server));
		if (mem != NULL)
			mem_publish(mem, DELIVERY_QUEUE_CHANNEL, "retry", 5, NULL, NULL);
	}
	finish(a);
}

static void on_later(struct loop_timer *t)
{
	struct api_call *a = container_of(t, struct api_call, later);

	finish(a);
}

/* Answer from the loop's next iteration (the contract: never from inside
 * api_start), without a trip through the worker. */
static void finish_later(struct api_call *a)
{
	loop_timer_init(&a->later, server_loop(a->server), on_later);
	loop_timer_start(&a->later, 0, 0);
}

/* --- classification of directory errors ----------------------------------- */

/* creating: the operation makes something, so "does not exist" names
 * something its body refers to (a domain, an account): 422, not 404. */
static int classify(PGconn *pg, const char *err, bool creating)
{
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK)
		return 503;
	if (strstr(err, "already") != NULL || strstr(err, "exists") != NULL ||
	    strstr(err, "in use") != NULL || strstr(err, "still") != NULL)
		return 409;
	if (strstr(err, "does not exist") != NULL || strncmp(err, "no ", 3) == 0 ||
	    strstr(err, "unknown domain") != NULL)
		return creating ? 422 : 404;
	if (strstr(err, "server closed") != NULL || strstr(err, "connection") != NULL)
		return 503;
	return 400;
}

static bool creating(enum api_op op)
{
	return op == OP_DOMAIN_CREATE || op == OP_ACCOUNT_CREATE || op == OP_ALIAS_CREATE ||
	       op == OP_ALIAS_PUT;
}

static void dir_fail(struct api_call *a, PGconn *pg, const char *err)
{
	set_error(a, classify(pg, err, creating(a->op)), "%s", err);
}

/* --- JSON helpers ------------------------------------------------------------ */

static json_t *account_json(const struct dir_account *ac)
{
	json_t *o = json_object(), *addrs = json_array();

	for (size_t i = 0; i < ac->naddresses; i++)
		json_array_append_new(addrs, json_string(ac->addresses[i]));
	json_object_set_new(o, "login", json_string(ac->login));
	json_object_set_new(o, "role", json_string(dir_role_name(ac->role)));
	json_object_set_new(o, "quota_bytes", json_integer(ac->quota_bytes));
	json_object_set_new(o, "disabled", json_boolean(ac->disabled));
	json_object_set_new(o, "addresses", addrs);
	return o;
}

static json_t *alias_json(const struct dir_alias *al)
{
	json_t *o = json_object();

	json_object_set_new(o, "address", json_string(al->address));
	if (al->account != NULL) {
		json_object_set_new(o, "account", json_string(al->account));
	} else {
		json_t *t = json_array();
		for (size_t i = 0; i < al->ntargets; i++)
			json_array_append_new(t, json_string(al->targets[i]));
		json_object_set_new(o, "targets", t);
	}
	return o;
}

/* Overwrite a JSON string's bytes (a password) before it is freed. */
static void wipe_json_string(json_t *s)
{
	if (s != NULL && json_is_string(s)) {
		char *p = (char *)(uintptr_t)json_string_value(s);
		OPENSSL_cleanse(p, json_string_length(s));
	}
}

/* --- work on the worker thread -------------------------------------------- */

static bool need_pg(struct api_call *a, PGconn *pg, const char *pg_err)
{
	if (pg != NULL)
		return true;
	set_error(a, 503, "%s", pg_err != NULL ? pg_err : "data store unavailable");
	return false;
}

static void work_domains(struct api_call *a, PGconn *pg)
{
	char err[512] = "";
	struct dir_domain *v = NULL;
	size_t n = 0;

	switch (a->op) {
	case OP_DOMAIN_LIST:
	case OP_DOMAIN_GET:
		if (dir_domain_list(pg, &v, &n, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		if (a->op == OP_DOMAIN_LIST) {
			a->result = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(a->result,
				                      json_pack("{s:s, s:I}", "name", v[i].name,
				                                "addresses",
				                                (json_int_t)v[i].addresses));
			a->status = 200;
		} else {
			char norm[PARAM_MAX];
			const char *why = NULL;
			set_error(a, 404, "domain '%s' does not exist", a->param);
			if (dir_domain_normalize(a->param, norm, sizeof(norm), &why) == 0) {
				for (size_t i = 0; i < n; i++) {
					if (strcmp(v[i].name, norm) != 0)
						continue;
					a->result =
					        json_pack("{s:s, s:I}", "name", v[i].name,
					                  "addresses", (json_int_t)v[i].addresses);
					a->status = 200;
				}
			}
		}
		dir_domains_free(&v, n);
		return;
	case OP_DOMAIN_CREATE:
		if (dir_domain_add(pg, a->param, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		{
			char norm[PARAM_MAX];
			const char *why = NULL;
			if (dir_domain_normalize(a->param, norm, sizeof(norm), &why) < 0)
				snprintf(norm, sizeof(norm), "%s", a->param);
			a->result = json_pack("{s:s, s:i}", "name", norm, "addresses", 0);
		}
		a->status = 201;
		return;
	case OP_DOMAIN_DELETE:
		if (dir_domain_del(pg, a->param, a->force, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->status = 204;
		return;
	default:
		break;
	}
}

static void work_accounts(struct api_call *a, PGconn *pg)
{
	char err[512] = "";
	struct dir_account ac;
	json_t *pw = json_object_get(a->body, "password");
	json_t *hash = json_object_get(a->body, "password_hash");
	char *newhash = NULL;
	const char *why = NULL;

	memset(&ac, 0, sizeof(ac));
	/* A password is hashed here, on the worker thread (argon2id). */
	if (pw != NULL) {
		newhash = password_hash(json_string_value(pw), &why);
		wipe_json_string(pw);
		if (newhash == NULL) {
			set_error(a, 500, "cannot hash the password: %s", why != NULL ? why : "?");
			return;
		}
	} else if (hash != NULL) {
		newhash = xstrdup(json_string_value(hash));
	}
	switch (a->op) {
	case OP_ACCOUNT_LIST: {
		struct dir_account *v = NULL;
		size_t n = 0;
		if (dir_account_list(pg, &v, &n, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		a->result = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a->result, account_json(&v[i]));
		dir_accounts_free(&v, n);
		a->status = 200;
		break;
	}
	case OP_ACCOUNT_GET:
		if (dir_account_get(pg, a->param, &ac, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		a->result = account_json(&ac);
		a->status = 200;
		break;
	case OP_ACCOUNT_CREATE: {
		json_t *role = json_object_get(a->body, "role");
		json_t *quota = json_object_get(a->body, "quota_bytes");
		int r = role != NULL ? dir_role_parse(json_string_value(role)) : DIR_ROLE_USER;
		int64_t id = 0;

		if (dir_account_add(pg, a->param, newhash, (enum dir_role)r,
		                    quota != NULL ? (int64_t)json_integer_value(quota) : 0, &id,
		                    err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		if (dir_account_get(pg, a->param, &ac, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		a->result = account_json(&ac);
		a->status = 201;
		break;
	}
	case OP_ACCOUNT_UPDATE:
	case OP_ACCOUNT_PASSWORD: {
		json_t *role = json_object_get(a->body, "role");
		json_t *quota = json_object_get(a->body, "quota_bytes");
		json_t *dis = json_object_get(a->body, "disabled");
		enum dir_role r = DIR_ROLE_USER;
		int64_t q = 0;
		bool d = false;

		/* 404 before anything changes */
		if (dir_account_get(pg, a->param, &ac, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		dir_account_clear(&ac);
		if (newhash != NULL &&
		    dir_account_set_hash(pg, a->param, newhash, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		if (role != NULL)
			r = (enum dir_role)dir_role_parse(json_string_value(role));
		if (quota != NULL)
			q = (int64_t)json_integer_value(quota);
		if (dis != NULL)
			d = json_is_true(dis);
		if ((role != NULL || quota != NULL || dis != NULL) &&
		    dir_account_set(pg, a->param, role != NULL ? &r : NULL,
		                    quota != NULL ? &q : NULL, dis != NULL ? &d : NULL, err,
		                    sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		if (a->op == OP_ACCOUNT_PASSWORD) {
			a->status = 204;
			break;
		}
		if (dir_account_get(pg, a->param, &ac, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		a->result = account_json(&ac);
		a->status = 200;
		break;
	}
	case OP_ACCOUNT_DELETE:
		if (dir_account_del(pg, a->param, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			break;
		}
		a->status = 204;
		break;
	default:
		break;
	}
	dir_account_clear(&ac);
	if (newhash != NULL) {
		OPENSSL_cleanse(newhash, strlen(newhash));
		free(newhash);
	}
}

/* The domain part of an address ("@d" or "l@d"), for list filtering. */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : addr;
}

static void work_aliases(struct api_call *a, PGconn *pg)
{
	char err[512] = "", norm[PARAM_MAX];
	struct dir_alias *v = NULL;
	size_t n = 0;
	const char *why = NULL;
	bool found = false;

	switch (a->op) {
	case OP_ALIAS_LIST:
		if (dir_alias_list(pg, a->domain[0] ? a->domain : NULL, &v, &n, err, sizeof(err)) <
		    0) {
			dir_fail(a, pg, err);
			return;
		}
		a->result = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a->result, alias_json(&v[i]));
		a->status = 200;
		break;
	case OP_ALIAS_GET:
	case OP_ALIAS_CREATE:
		if (dir_address_normalize(a->param, true, norm, sizeof(norm), &why) < 0) {
			set_error(a, 400, "address '%s': %s", a->param,
			          why != NULL ? why : "invalid");
			return;
		}
		if (dir_alias_list(pg, domain_of(norm), &v, &n, err, sizeof(err)) < 0) {
			/* an unknown domain has no aliases */
			if (classify(pg, err, false) == 503) {
				dir_fail(a, pg, err);
				return;
			}
			n = 0;
		}
		for (size_t i = 0; i < n && !found; i++) {
			if (strcmp(v[i].address, norm) != 0)
				continue;
			found = true;
			if (a->op == OP_ALIAS_GET) {
				a->result = alias_json(&v[i]);
				a->status = 200;
			}
		}
		if (a->op == OP_ALIAS_GET) {
			if (!found)
				set_error(a, 404, "no alias or address '%s'", norm);
			break;
		}
		if (found) {
			set_error(a, 409, "'%s' already exists (PUT replaces an alias)", norm);
			break;
		}
		/* fall through: create */
		/* FALLTHROUGH */
	case OP_ALIAS_PUT: {
		json_t *t = json_object_get(a->body, "targets");
		size_t nt = json_array_size(t);
		const char **targets = xcalloc(nt ? nt : 1, sizeof(*targets));

		for (size_t i = 0; i < nt; i++)
			targets[i] = json_string_value(json_array_get(t, i));
		if (dir_alias_add(pg, a->param, targets, nt, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			free(targets);
			break;
		}
		free(targets);
		if (dir_address_normalize(a->param, true, norm, sizeof(norm), &why) < 0)
			snprintf(norm, sizeof(norm), "%s", a->param);
		a->result = json_pack("{s:s, s:O}", "address", norm, "targets", t);
		a->status = a->op == OP_ALIAS_PUT ? 200 : 201;
		break;
	}
	case OP_ALIAS_DELETE:
		if (dir_alias_del(pg, a->param, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->status = 204;
		break;
	default:
		break;
	}
	dir_aliases_free(&v, n);
}

static void work_dkim(struct api_call *a, PGconn *pg)
{
	char err[512] = "";

	if (a->op == OP_DKIM_LIST) {
		struct dkim_keystore_entry *v = NULL;
		size_t n = 0;

		if (dkim_keystore_list(pg, a->param, &v, &n, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->result = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a->result, dkim_keystore_entry_json(&v[i]));
		dkim_keystore_entries_free(&v, n);
		a->status = 200;
	} else {
		struct dkim_keystore_entry e;
		json_t *sel = json_object_get(a->body, "selector");

		if (dkim_keystore_generate(pg, a->param, a->alg,
		                           sel != NULL ? json_string_value(sel) : NULL, &e, err,
		                           sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->result = dkim_keystore_entry_json(&e);
		dkim_keystore_entry_clear(&e);
		a->status = 201;
	}
}

static void work_dns(struct api_call *a, PGconn *pg)
{
	struct dnsrecords_admin_opts d;
	struct dnsrecords *r = NULL;
	char err[512] = "", *note = NULL;

	memset(&d, 0, sizeof(d));
	d.domain = a->param;
	d.mail_host = a->hostname;
	d.cert_file = a->cert_file[0] != '\0' ? a->cert_file : NULL;
	d.report_addr = a->report[0] != '\0' ? a->report : NULL;
	d.mta_sts_mode = a->mta_sts[0] != '\0' ? a->mta_sts : NULL;
	d.mta_sts_id = a->mta_sts_id[0] != '\0' ? a->mta_sts_id : NULL;
	d.dmarc_policy = a->dmarc[0] != '\0' ? a->dmarc : NULL;
	d.spf_extra = a->spf_extra[0] != '\0' ? a->spf_extra : NULL;
	if (dnsrecords_admin_build(pg, &d, &r, &note, err, sizeof(err)) < 0) {
		dir_fail(a, pg, err);
		return;
	}
	if (a->zone) {
		struct buf b;

		buf_init(&b, 0);
		dnsrecords_zone(r, &b);
		a->text = xmalloc(buf_len(&b) + 1);
		memcpy(a->text, buf_ptr(&b), buf_len(&b));
		a->text[buf_len(&b)] = '\0';
		buf_free(&b);
	} else {
		char *s = dnsrecords_json(r);

		a->result = json_loads(s, 0, NULL);
		free(s);
		if (a->result != NULL && note != NULL)
			json_object_set_new(a->result, "notes", json_pack("[s]", note));
	}
	dnsrecords_free(&r);
	free(note);
	if (a->result == NULL && a->text == NULL)
		set_error(a, 500, "cannot serialise the records");
	else
		a->status = 200;
}

static void work_queue(struct api_call *a, PGconn *pg)
{
	char err[512] = "";
	int64_t n = 0;

	switch (a->op) {
	case OP_QUEUE_LIST: {
		struct queue_admin_msg *v = NULL;
		size_t nm = 0;

		if (queue_admin_list(pg, a->limit, &v, &nm, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->result = json_array();
		for (size_t i = 0; i < nm; i++)
			json_array_append_new(a->result, queue_admin_msg_json(&v[i]));
		queue_admin_msgs_free(&v, nm);
		a->status = 200;
		return;
	}
	case OP_QUEUE_GET: {
		struct queue_admin_msg m;

		if (queue_admin_show(pg, a->qid, &m, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->result = queue_admin_msg_json(&m);
		queue_admin_msg_clear(&m);
		a->status = 200;
		return;
	}
	case OP_QUEUE_RETRY:
		if (queue_admin_retry(pg, a->qid, &n, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		if (a->qid == 0) /* POST /queue/retry: every message */
			a->result = json_pack("{s:I}", "retried", (json_int_t)n);
		else
			a->result = json_pack("{s:I, s:I}", "id", (json_int_t)a->qid, "retried",
			                      (json_int_t)n);
		a->status = 200;
		return;
	case OP_QUEUE_DELETE:
		if (queue_admin_delete(pg, a->qid, &n, err, sizeof(err)) < 0) {
			dir_fail(a, pg, err);
			return;
		}
		a->status = 204;
		return;
	default:
		break;
	}
}

static void work(PGconn *pg, const char *pg_err, void *arg)
{
	struct api_call *a = arg;

	if (a->cb == NULL)
		return; /* the client left before we started */
	if (!need_pg(a, pg, pg_err))
		return;
	switch (a->op) {
	case OP_DOMAIN_LIST:
	case OP_DOMAIN_CREATE:
	case OP_DOMAIN_GET:
	case OP_DOMAIN_DELETE:
		work_domains(a, pg);
		break;
	case OP_ALIAS_LIST:
	case OP_ALIAS_CREATE:
	case OP_ALIAS_GET:
	case OP_ALIAS_PUT:
	case OP_ALIAS_DELETE:
		work_aliases(a, pg);
		break;
	case OP_DKIM_LIST:
	case OP_DKIM_CREATE:
		work_dkim(a, pg);
		break;
	case OP_DNS_GET:
		work_dns(a, pg);
		break;
	case OP_QUEUE_LIST:
	case OP_QUEUE_GET:
	case OP_QUEUE_RETRY:
	case OP_QUEUE_DELETE:
		work_queue(a, pg);
		break;
	default:
		work_accounts(a, pg);
		break;
	}
	if (a->status == 0)
		set_error(a, 500, "internal error: operation produced no answer");
}

/* --- routing and validation (on the loop) ----------------------------------- */

static bool query_param(const char *q, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);

	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q);
		if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=')
			return http_parser_pct_decode(q + nl + 1, len - nl - 1, out, outsz) >= 0;
		q = amp != NULL ? amp + 1 : NULL;
	}
	return false;
}

/* Which string members a body may have, and which one is required. */
static bool check_body(struct api_call *a, const char *const *allowed, const char *required)
{
	const char *key;
	json_t *v;

	if (!json_is_object(a->body)) {
		set_error(a, 400, "the request body must be a JSON object");
		return false;
	}
	json_object_foreach(a->body, key, v)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i] != NULL; i++) {
			if (strcmp(allowed[i], key) == 0)
				ok = true;
		}
		if (!ok) {
			set_error(a, 400, "unknown member '%s'", key);
			return false;
		}
		if (strcmp(key, "targets") == 0) {
			size_t i;
			json_t *t;
			if (!json_is_array(v) || json_array_size(v) == 0) {
				set_error(a, 400, "'targets' must be a non-empty array of strings");
				return false;
			}
			json_array_foreach(v, i, t)
			{
				if (!json_is_string(t)) {
					set_error(a, 400, "'targets' must hold strings");
					return false;
				}
			}
		} else if (strcmp(key, "quota_bytes") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 0) {
				set_error(a, 400, "'quota_bytes' must be a non-negative integer");
				return false;
			}
		} else if (strcmp(key, "disabled") == 0) {
			if (!json_is_boolean(v)) {
				set_error(a, 400, "'disabled' must be true or false");
				return false;
			}
		} else if (!json_is_string(v)) {
			set_error(a, 400, "'%s' must be a string", key);
			return false;
		}
	}
	if (required != NULL && json_object_get(a->body, required) == NULL) {
		set_error(a, 400, "'%s' is required", required);
		return false;
	}
	v = json_object_get(a->body, "role");
	if (v != NULL && dir_role_parse(json_string_value(v)) < 0) {
		set_error(a, 400, "'role' must be user or admin");
		return false;
	}
	v = json_object_get(a->body, "password_hash");
	if (v != NULL && !password_hash_supported(json_string_value(v))) {
		set_error(a, 400,
		          "'password_hash' is not a supported hash ($argon2id$, $y$, $6$, "
		          "$2b$)");
		return false;
	}
	if (json_object_get(a->body, "password") != NULL && v != NULL) {
		set_error(a, 400, "give either 'password' or 'password_hash'");
		return false;
	}
	v = json_object_get(a->body, "password");
	if (v != NULL && json_string_length(v) == 0) {
		set_error(a, 400, "'password' must not be empty");
		return false;
	}
	return true;
}

/* Parse the body; false with the error set. */
static bool load_body(struct api_call *a, const struct http_request *req)
{
	const char *ct = http_parser_header(req, "content-type");
	json_error_t je;

	if (req->content_length == 0) {
		set_error(a, 400, "a JSON body is required");
		return false;
	}
	if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
		a->status = 415;
		snprintf(a->errmsg, sizeof(a->errmsg), "Content-Type must be application/json");
		return false;
	}
	a->body = json_loadb((const char *)req->body, (size_t)req->content_length,
	                     JSON_REJECT_DUPLICATES, &je);
	if (a->body == NULL) {
		set_error(a, 400, "invalid JSON at line %d column %d: %s", je.line, je.column,
		          je.text);
		return false;
	}
	return true;
}

static void set_allow(struct api_call *a, const char *allow)
{
	free(a->extra);
	a->extra = xasprintf("Allow: %s\r\n", allow);
	set_error(a, 405, "method not allowed here (allowed: %s)", allow);
}

/* GET /domains/NAME/dns, GET|POST /domains/NAME/dkim. */
static bool route_domain_sub(struct api_call *a, const struct http_request *req, const char *sub)
{
	static const char *const dkim_keys[] = {"algorithm", "selector", NULL};
	enum http_method m = req->method;
	const struct mailbox_config *cfg = server_config(a->server);
	const char *cert;
	char v[16];

	if (strcmp(sub, "dns") == 0) {
		if (m != HTTP_M_GET && m != HTTP_M_HEAD) {
			set_allow(a, "GET");
			return false;
		}
		if (query_param(req->query, "format", v, sizeof(v))) {
			if (strcmp(v, "zone") == 0) {
				a->zone = true;
			} else if (strcmp(v, "json") != 0) {
				set_error(a, 400, "format must be json or zone");
				return false;
			}
		}
		query_param(req->query, "report", a->report, sizeof(a->report));
		query_param(req->query, "mta_sts", a->mta_sts, sizeof(a->mta_sts));
		query_param(req->query, "mta_sts_id", a->mta_sts_id, sizeof(a->mta_sts_id));
		query_param(req->query, "dmarc", a->dmarc, sizeof(a->dmarc));
		query_param(req->query, "spf_extra", a->spf_extra, sizeof(a->spf_extra));
		/* the config may be replaced by a reload: copy what the worker needs */
		snprintf(a->hostname, sizeof(a->hostname), "%s",
		         cfg->hostname != NULL ? cfg->hostname : "");
		cert = dnsrecords_admin_cert(cfg);
		snprintf(a->cert_file, sizeof(a->cert_file), "%s", cert != NULL ? cert : "");
		a->op = OP_DNS_GET;
		return true;
	}
	if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
		a->op = OP_DKIM_LIST;
		return true;
	}
	if (m != HTTP_M_POST) {
		set_allow(a, "GET, POST");
		return false;
	}
	if (!load_body(a, req) || !check_body(a, dkim_keys, "algorithm"))
		return false;
	if (dkim_alg_parse(json_string_value(json_object_get(a->body, "algorithm")), &a->alg) < 0) {
		set_error(a, 400, "'algorithm' must be ed25519 or rsa");
		return false;
	}
	a->op = OP_DKIM_CREATE;
	return true;
}

/* GET /queue[?limit=N], GET|DELETE /queue/ID, POST /queue/ID/retry, and
 * POST /queue/retry (every message: the CLI's `queue retry --all`). */
static bool route_queue(struct api_call *a, const struct http_request *req, bool has_param,
                        bool retry_sub)
{
	enum http_method m = req->method;
	char v[32];

	if (!has_param) {
		if (m != HTTP_M_GET && m != HTTP_M_HEAD) {
			set_allow(a, "GET");
			return false;
		}
		a->limit = QUEUE_LIST_DEFAULT;
		if (query_param(req->query, "limit", v, sizeof(v)) &&
		    queue_admin_parse_id(v, &a->limit) < 0) {
			set_error(a, 400, "limit must be a positive integer");
			return false;
		}
		a->op = OP_QUEUE_LIST;
		return true;
	}
	if (!retry_sub && strcmp(a->param, "retry") == 0) {
		if (m != HTTP_M_POST) {
			set_allow(a, "POST");
			return false;
		}
		a->qid = 0;
		a->op = OP_QUEUE_RETRY;
		return true;
	}
	if (queue_admin_parse_id(a->param, &a->qid) < 0) {
		set_error(a, 400, "'%s' is not a queue id", a->param);
		return false;
	}
	if (retry_sub) {
		if (m != HTTP_M_POST) {
			set_allow(a, "POST");
			return false;
		}
		a->op = OP_QUEUE_RETRY;
	} else if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
		a->op = OP_QUEUE_GET;
	} else if (m == HTTP_M_DELETE) {
		a->op = OP_QUEUE_DELETE;
	} else {
		set_allow(a, "GET, DELETE");
		return false;
	}
	return true;
}

/*
 * Map method + path to an operation.  false with the error set.
 */
static bool route(struct api_call *a, const struct http_request *req)
{
	const char *p = req->path + strlen(API_PREFIX);
	const char *coll, *rest;
	size_t clen;
	char seg[PARAM_MAX];
	enum http_method m = req->method;
	bool has_param = false, password_sub = false, retry_sub = false;
	const char *domain_sub = NULL;

	if (*p == '/')
		p++;
	coll = p;
	rest = strchr(p, '/');
	clen = rest != NULL ? (size_t)(rest - p) : strlen(p);
	if (rest != NULL) {
		const char *sub = strchr(rest + 1, '/');
		size_t slen = sub != NULL ? (size_t)(sub - rest - 1) : strlen(rest + 1);
		if (http_parser_pct_decode(rest + 1, slen, seg, sizeof(seg)) <= 0) {
			set_error(a, 400, "malformed path segment");
			return false;
		}
		has_param = true;
		snprintf(a->param, sizeof(a->param), "%s", seg);
		if (sub != NULL) {
			if (clen == 8 && strncmp(coll, "accounts", 8) == 0 &&
			    strcmp(sub, "/password") == 0) {
				password_sub = true;
			} else if (clen == 7 && strncmp(coll, "domains", 7) == 0 &&
			           (strcmp(sub, "/dkim") == 0 || strcmp(sub, "/dns") == 0)) {
				domain_sub = sub + 1;
			} else if (clen == 5 && strncmp(coll, "queue", 5) == 0 &&
			           strcmp(sub, "/retry") == 0) {
				retry_sub = true;
			} else {
				set_error(a, 404, "no such resource");
				return false;
			}
		}
	}
	if (clen == 7 && strncmp(coll, "domains", 7) == 0) {
		static const char *const create_keys[] = {"name", NULL};
		if (domain_sub != NULL)
			return route_domain_sub(a, req, domain_sub);
		if (!has_param) {
			if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
				a->op = OP_DOMAIN_LIST;
			} else if (m == HTTP_M_POST) {
				if (!load_body(a, req) || !check_body(a, create_keys, "name"))
					return false;
				snprintf(a->param, sizeof(a->param), "%s",
				         json_string_value(json_object_get(a->body, "name")));
				a->op = OP_DOMAIN_CREATE;
			} else {
				set_allow(a, "GET, POST");
				return false;
			}
		} else if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
			a->op = OP_DOMAIN_GET;
		} else if (m == HTTP_M_DELETE) {
			char v[16];
			a->force = query_param(req->query, "force", v, sizeof(v)) &&
			           (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
			a->op = OP_DOMAIN_DELETE;
		} else {
			set_allow(a, "GET, DELETE");
			return false;
		}
		return true;
	}
	if (clen == 8 && strncmp(coll, "accounts", 8) == 0) {
		static const char *const create_keys[] = {"login", "password",    "password_hash",
		                                          "role",  "quota_bytes", NULL};
		static const char *const update_keys[] = {"password",    "password_hash", "role",
		                                          "quota_bytes", "disabled",      NULL};
		static const char *const pw_keys[] = {"password", "password_hash", NULL};
		if (password_sub) {
			if (m != HTTP_M_PUT) {
				set_allow(a, "PUT");
				return false;
			}
			if (!load_body(a, req) || !check_body(a, pw_keys, NULL))
				return false;
			if (json_object_get(a->body, "password") == NULL &&
			    json_object_get(a->body, "password_hash") == NULL) {
				set_error(a, 400, "'password' is required");
				return false;
			}
			a->op = OP_ACCOUNT_PASSWORD;
		} else if (!has_param) {
			if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
				a->op = OP_ACCOUNT_LIST;
			} else if (m == HTTP_M_POST) {
				if (!load_body(a, req) || !check_body(a, create_keys, "login"))
					return false;
				if (json_object_get(a->body, "password") == NULL &&
				    json_object_get(a->body, "password_hash") == NULL) {
					set_error(a, 400,
					          "'password' or 'password_hash' is required");
					return false;
				}
				snprintf(a->param, sizeof(a->param), "%s",
				         json_string_value(json_object_get(a->body, "login")));
				a->op = OP_ACCOUNT_CREATE;
			} else {
				set_allow(a, "GET, POST");
				return false;
			}
		} else if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
			a->op = OP_ACCOUNT_GET;
		} else if (m == HTTP_M_PATCH || m == HTTP_M_PUT) {
			if (!load_body(a, req) || !check_body(a, update_keys, NULL))
				return false;
			a->op = OP_ACCOUNT_UPDATE;
		} else if (m == HTTP_M_DELETE) {
			a->op = OP_ACCOUNT_DELETE;
		} else {
			set_allow(a, "GET, PATCH, PUT, DELETE");
			return false;
		}
		return true;
	}
	if (clen == 7 && strncmp(coll, "aliases", 7) == 0) {
		static const char *const create_keys[] = {"address", "targets", NULL};
		static const char *const put_keys[] = {"targets", NULL};
		if (!has_param) {
			if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
				query_param(req->query, "domain", a->domain, sizeof(a->domain));
				a->op = OP_ALIAS_LIST;
			} else if (m == HTTP_M_POST) {
				if (!load_body(a, req) || !check_body(a, create_keys, "address"))
					return false;
				if (json_object_get(a->body, "targets") == NULL) {
					set_error(a, 400, "'targets' is required");
					return false;
				}
				snprintf(a->param, sizeof(a->param), "%s",
				         json_string_value(json_object_get(a->body, "address")));
				a->op = OP_ALIAS_CREATE;
			} else {
				set_allow(a, "GET, POST");
				return false;
			}
		} else if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
			a->op = OP_ALIAS_GET;
		} else if (m == HTTP_M_PUT) {
			if (!load_body(a, req) || !check_body(a, put_keys, "targets"))
				return false;
			a->op = OP_ALIAS_PUT;
		} else if (m == HTTP_M_DELETE) {
			a->op = OP_ALIAS_DELETE;
		} else {
			set_allow(a, "GET, PUT, DELETE");
			return false;
		}
		return true;
	}
	if (clen == 5 && strncmp(coll, "queue", 5) == 0)
		return route_queue(a, req, has_param, retry_sub);
	set_error(a, 404, "no such resource (try /api/v1/domains, /accounts, /aliases or /queue)");
	return false;
}

/* --- authentication ------------------------------------------------------------ */

static void start_work(struct api_call *a)
{
	log_info("msg=\"admin api\" listener=%s client=%s who=%s op=%d", a->listener, a->ip, a->who,
	         (int)a->op);
	a->in_job = true;
	jobs_submit(server_jobs(a->server), work, on_job_done, a);
}

static void auth_failed(struct api_call *a, const char *why)
{
	abuse_auth_failed(a->server, a->listener, &a->client.addr, a->client.no_client);
	log_warn("msg=\"admin api authentication failed\" listener=%s client=%s reason=\"%s\"",
	         a->listener, a->ip, why);
	free(a->extra);
	a->extra =
	        xstrdup("WWW-Authenticate: Bearer realm=\"tailpost\", error=\"invalid_token\"\r\n");
	set_error(a, 401, "invalid credentials");
}

static void on_token(void *arg, bool found, const char *name, const char *errstr)
{
	struct api_call *a = arg;

	a->token_req = NULL;
	if (errstr != NULL) {
		set_error(a, 503, "cannot check the token: %s", errstr);
		finish(a);
		return;
	}
	if (!found) {
		auth_failed(a, "unknown bearer token");
		finish(a);
		return;
	}
	abuse_auth_ok(a->server, &a->client.addr, a->client.no_client);
	snprintf(a->who, sizeof(a->who), "token:%s", name != NULL ? name : "?");
	if (a->status != 0) {
		finish(a); /* the request was wrong: answer its error */
		return;
	}
	start_work(a);
}

/* Constant-time equality of two strings of possibly different lengths. */
static bool secret_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char ha[32], hb[32];
	unsigned int l = 0;

	/* compare digests so the time does not depend on where they differ,
	 * nor (beyond hashing) on the lengths */
	EVP_Digest(a, alen, ha, &l, EVP_sha256(), NULL);
	EVP_Digest(b, blen, hb, &l, EVP_sha256(), NULL);
	return CRYPTO_memcmp(ha, hb, sizeof(ha)) == 0;
}

static bool check_basic(struct api_call *a, const char *b64)
{
	const char *ruser = NULL, *rpass = NULL;
	unsigned char dec[512];
	size_t n = strlen(b64);
	int len;
	char *colon;
	bool ok = false;

	if (!server_recovery_admin(a->server, &ruser, &rpass))
		return false;
	if (n == 0 || n > 4 * (sizeof(dec) / 3) - 4 || n % 4 != 0)
		return false;
	len = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
	if (len < 0)
		return false;
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (n >= 1 && b64[n - 1] == '=')
		len--;
	if (n >= 2 && b64[n - 2] == '=')
		len--;
	dec[len] = '\0';
	colon = memchr(dec, ':', (size_t)len);
	if (colon != NULL) {
		size_t ulen = (size_t)(colon - (char *)dec);
		bool u = secret_eq((const char *)dec, ulen, ruser, strlen(ruser));
		bool p = secret_eq(colon + 1, (size_t)len - ulen - 1, rpass, strlen(rpass));
		ok = u && p;
		if (ok)
			snprintf(a->who, sizeof(a->who), "recovery:%.*s", (int)ulen, (char *)dec);
	}
	OPENSSL_cleanse(dec, sizeof(dec));
	return ok;
}

struct api_call *api_start(struct server *s, const struct http_request *req,
                           const struct api_client *client, api_done_cb *cb, void *arg)
{
	struct api_call *a = xcalloc(1, sizeof(*a));
	const char *auth = http_parser_header(req, "authorization");

	a->server = s;
	a->cb = cb;
	a->arg = arg;
	a->client = *client;
	snprintf(a->listener, sizeof(a->listener), "%s", client->listener);
	snprintf(a->ip, sizeof(a->ip), "%s", client->ip);
	a->client.listener = a->listener;
	a->client.ip = a->ip;

	if (auth == NULL) {
		a->extra = xstrdup("WWW-Authenticate: Bearer realm=\"tailpost\"\r\n");
		set_error(a, 401, "authentication required (Authorization: Bearer <token>)");
		finish_later(a);
		return a;
	}
	/* Route before authenticating, but answer a routing error only to
	 * valid credentials (an anonymous client learns nothing of the API). */
	route(a, req);
	if (strncasecmp(auth, "Bearer ", 7) == 0) {
		const char *tok = auth + 7;
		while (*tok == ' ')
			tok++;
		a->token_req = lookup_token(server_pg(s), tok, on_token, a);
		return a;
	}
	if (strncasecmp(auth, "Basic ", 6) == 0) {
		if (check_basic(a, auth + 6)) {
			if (a->status != 0) {
				finish_later(a);
				return a;
			}
			start_work(a);
			return a;
		}
		auth_failed(a, "bad recovery admin credentials");
		finish_later(a);
		return a;
	}
	auth_failed(a, "unsupported authorization scheme");
	finish_later(a);
	return a;
}

void api_call_cancel(struct api_call **ap)
{
	struct api_call *a = *ap;

	*ap = NULL;
	if (a == NULL)
		return;
	a->cb = NULL;
	if (a->token_req != NULL) {
		pg_req_cancel(&a->token_req);
		call_free(a);
		return;
	}
	/* A queued or running job still holds a: on_job_done frees it. */
	if (!a->in_job)
		call_free(a);
}
