/*
 * mailbox/store/pg.c -- the asynchronous Postgres pool (see pg.h).
 *
 * Each connection is a small state machine driven by one ev_io on
 * PQsocket(): DOWN -> CONNECTING (PQconnectPoll until OK) -> IDLE <-> BUSY.
 * A BUSY connection has sent one PQsendQueryParams; it watches for write
 * while PQflush() says output is pending, and for read until PQisBusy()
 * is false and PQgetResult() returns NULL, collecting the statement's
 * result on the way.  An IDLE connection keeps its read watcher so a
 * server that closes it (restart, idle kill) is noticed at once rather
 * than on the next query.
 *
 * Prepared requests (pg_query_prepared): each connection keeps the texts
 * it has prepared (at most PG_PREPARED_MAX, named "tp_<index>"); the first
 * time a connection runs a text it sends PQsendPrepare, and when that
 * completes PQsendQueryPrepared for the same request, later times only the
 * latter.  The cache goes with the connection (conn_close).
 *
 * Requests wait in a FIFO; a pool-wide 250 ms tick fails those past
 * query_timeout (queued or running; a running one's connection is closed,
 * because abandoning a statement safely needs PQcancel, which blocks).
 * Connections are opened lazily up to pool_size; a failed attempt is
 * retried with exponential backoff.  While nothing is up and the last
 * attempt failed, requests are failed at once through a zero timer so
 * that callbacks never run inside pg_query().
 *
 * A callback may start requests, cancel others, or free the pool: the
 * pool counts how deep it is in callbacks and defers its own free until
 * the outermost dispatch returns.
 *
 * Host names: libpq resolves `host` with a blocking getaddrinfo inside
 * PQconnectPoll, on the loop.  So when the conninfo names hosts that need
 * a lookup (and no hostaddr), a connection first goes through RESOLVING:
 * one lookup per name on the pool's resolver thread
 * (mailbox/store/resolve.h), shared by every connection that waits, and
 * the attempt then passes hostaddr (every address, each paired with its
 * name in host, and its port when the conninfo lists several) so libpq
 * connects by address while TLS verification, SNI and .pgpass still see
 * the name.  Addresses are reused for PG_DNS_TTL_S and looked up again
 * after a failed attempt, so a moved server is found.
 */
#include "mailbox/store/pg.h"

#include "mailbox/store/resolve.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_BACKOFF_MIN_MS 250
#define PG_BACKOFF_MAX_MS 10000
#define PG_TICK_S         0.25
#define PG_ENDPOINT_MAX   256
#define PG_DNS_TTL_S      60.0
#define PG_PREPARED_MAX   64

const unsigned pg_latency_buckets_ms[8] = {1, 5, 10, 50, 100, 500, 1000, 0};

enum pg_conn_state {
	PC_DOWN = 0,
	PC_RESOLVING, /* waiting for the pool's host name lookup */
	PC_CONNECTING,
	PC_IDLE,
	PC_BUSY,
};

struct pg_conn;

/* Which list a request is on. */
enum pg_req_where {
	PR_NONE = 0,
	PR_QUEUE,   /* waiting for a connection */
	PR_FAILQ,   /* to be failed from the kick timer */
	PR_RUNNING, /* on a connection */
};

struct pg_req {
	struct pg_req *prev, *next;
	enum pg_req_where where;
	struct pg_pool *pool;
	struct pg_conn *conn;
	char *sql;
	int nparams;
	char **params;
	int *lengths, *formats;
	pg_cb *cb; /* NULL once cancelled */
	void *arg;
	ev_tstamp start;
	const char *fail_msg; /* PR_FAILQ: static reason */
	void *attached;       /* pg_req_attach: freed with the request */
	bool prepare;         /* pg_query_prepared */
};

struct pg_list {
	struct pg_req *head, *tail;
	unsigned n;
};

struct pg_conn {
	struct pg_pool *pool;
	PGconn *c;
	ev_io io;
	int io_fd, io_events;
	enum pg_conn_state state;
	ev_tstamp connect_start;
	struct pg_req *req;
	PGresult *res; /* first error result or the last result of req */
	/* statements prepared on this connection: prepared[i] is "tp_<i>" */
	char *prepared[PG_PREPARED_MAX];
	unsigned nprepared;
	int preparing; /* >= 0: req's PQsendPrepare as prepared[preparing] */
};

/* One entry of the conninfo's host list. */
struct pg_host {
	char *name; /* as written ("" for the default socket) */
	bool dns;   /* needs a lookup (resolve_needed) */
	struct resolve_result res;
};

struct pg_pool {
	struct ev_loop *loop;
	const struct stores_data_config *cfg;
	char endpoint[PG_ENDPOINT_MAX];
	struct pg_conn *conns;
	unsigned nconns;
	struct pg_list queue, failq;
	ev_timer tick;  /* timeouts and connect timeouts */
	ev_timer kick;  /* zero-delay: fail failq, dispatch */
	ev_timer retry; /* reconnect after backoff */
	unsigned backoff_ms;
	bool failed;    /* the last connection attempt failed and nothing is up */
	unsigned depth; /* > 0 while inside a callback dispatch */
	bool dying;     /* pg_pool_free called during a callback */
	struct pg_pool_stats st;
	/* host name lookups, when the conninfo needs any (dns) */
	bool dns;
	struct pg_host *hosts;
	size_t nhosts;
	char **ports; /* the conninfo's port list when it has several */
	size_t nports;
	struct resolver *resolver;
	struct resolve_req *rq; /* in flight, for hosts[rq_host] */
	size_t rq_host;
	bool addrs_fresh;
	ev_tstamp resolved_at;
	char *kv_host, *kv_hostaddr, *kv_port; /* the expanded lists; kv_port may be NULL */
};

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void pool_dispatch(struct pg_pool *p);
static void conn_open(struct pg_conn *pc);
static bool conn_send(struct pg_conn *pc, struct pg_req *r);

/* --- lists ---------------------------------------------------------------- */

static void list_push(struct pg_list *l, struct pg_req *r, enum pg_req_where where)
{
	r->prev = l->tail;
	r->next = NULL;
	if (l->tail != NULL)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
	r->where = where;
}

static void list_unlink(struct pg_list *l, struct pg_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	l->n--;
	r->where = PR_NONE;
}

static void req_free(struct pg_req *r)
{
	if (r == NULL)
		return;
	free(r->sql);
	for (int i = 0; i < r->nparams; i++)
		free(r->params[i]);
	free(r->params);
	free(r->lengths);
	free(r->formats);
	free(r->attached);
	free(r);
}

/* --- completion ------------------------------------------------------------- */

static void stats_done(struct pg_pool *p, struct pg_req *r, bool ok)
{
	ev_tstamp now = ev_now(p->loop);
	double ms = (now - r->start) * 1000.0;

	p->st.queries++;
	if (!ok)
		p->st.errors++;
	if (ms < 0)
		ms = 0;
	p->st.latency_us_sum += (uint64_t)(ms * 1000.0);
	for (size_t i = 0; i < ARRAY_SIZE(pg_latency_buckets_ms); i++)
		if (pg_latency_buckets_ms[i] == 0 || ms <= pg_latency_buckets_ms[i])
			p->st.latency_le[i]++;
}

static void pool_really_free(struct pg_pool *p);

/* Run r's callback (if not cancelled) and free r.  r is on no list. */
static void req_complete(struct pg_pool *p, struct pg_req *r, const PGresult *res,
                         const char *errstr)
{
	stats_done(p, r, errstr == NULL);
	if (r->cb != NULL && !p->dying) {
		p->depth++;
		r->cb(r->arg, res, errstr);
		p->depth--;
	}
	req_free(r);
}

/* After a callback dispatch: free the pool if it was freed inside one.
 * Returns true if the pool is gone. */
static bool pool_after_callbacks(struct pg_pool *p)
{
	if (p->depth == 0 && p->dying) {
		pool_really_free(p);
		return true;
	}
	return false;
}

/* --- connections -------------------------------------------------------------- */

static void conn_watch(struct pg_conn *pc, int fd, int events)
{
	struct ev_loop *loop = pc->pool->loop;

	if (fd == pc->io_fd && events == pc->io_events && ev_is_active(&pc->io))
		return;
	ev_io_stop(loop, &pc->io);
	pc->io_fd = fd;
	pc->io_events = events;
	if (fd >= 0 && events != 0) {
		ev_io_set(&pc->io, fd, events);
		ev_io_start(loop, &pc->io);
	}
}

static unsigned conns_up(const struct pg_pool *p)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->nconns; i++)
		if (p->conns[i].state == PC_IDLE || p->conns[i].state == PC_BUSY)
			n++;
	return n;
}

static unsigned conns_connecting(const struct pg_pool *p)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->nconns; i++)
		if (p->conns[i].state == PC_CONNECTING || p->conns[i].state == PC_RESOLVING)
			n++;
	return n;
}

/* libpq's message shortened to its first line and the reason after the
 * last "failed: " (connection errors), without "FATAL:  ", with a lower-case
 * first letter: "connection refused". */
static void short_reason(const char *msg, char *out, size_t outsz)
{
	const char *s = msg != NULL && msg[0] != '\0' ? msg : "unknown error";
	const char *last = NULL;
	size_t line = strcspn(s, "\n"), n;

	for (const char *q = s; (q = strstr(q, "failed: ")) != NULL && q < s + line; q += 8)
		last = q + 8;
	if (last != NULL)
		s = last;
	if (strncmp(s, "FATAL:  ", 8) == 0 || strncmp(s, "ERROR:  ", 8) == 0)
		s += 8;
	n = strcspn(s, "\n");
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (outsz == 0)
		return;
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, s, n);
	out[n] = '\0';
	/* "Connection refused" -> "connection refused", but keep acronyms */
	if (n >= 2 && isupper((unsigned char)out[0]) && islower((unsigned char)out[1]))
		out[0] = (char)tolower((unsigned char)out[0]);
}

static void pool_fail_all_queued(struct pg_pool *p, const char *why)
{
	while (p->queue.head != NULL) {
		struct pg_req *r = p->queue.head;
		list_unlink(&p->queue, r);
		r->fail_msg = why;
		list_push(&p->failq, r, PR_FAILQ);
	}
	if (p->failq.head != NULL)
		ev_timer_start(p->loop, &p->kick);
}

static void pool_schedule_retry(struct pg_pool *p)
{
	if (ev_is_active(&p->retry))
		return;
	ev_timer_set(&p->retry, p->backoff_ms / 1000.0, 0.);
	ev_timer_start(p->loop, &p->retry);
	p->backoff_ms *= 2;
	if (p->backoff_ms > PG_BACKOFF_MAX_MS)
		p->backoff_ms = PG_BACKOFF_MAX_MS;
}

/* Close pc; its running request (if any) fails with errstr. */
static void conn_close(struct pg_conn *pc, const char *errstr)
{
	struct pg_pool *p = pc->pool;
	struct pg_req *r = pc->req;

	conn_watch(pc, -1, 0);
	if (pc->res != NULL) {
		PQclear(pc->res);
		pc->res = NULL;
	}
	if (pc->c != NULL) {
		PQfinish(pc->c);
		pc->c = NULL;
	}
	pc->state = PC_DOWN;
	pc->req = NULL;
	for (unsigned i = 0; i < pc->nprepared; i++)
		free(pc->prepared[i]);
	pc->nprepared = 0;
	pc->preparing = -1;
	if (r != NULL) {
		r->conn = NULL;
		r->where = PR_NONE;
		req_complete(p, r, NULL, errstr);
	}
}

/* A connection attempt or a live connection failed. */
static void conn_failed(struct pg_conn *pc, const char *what)
{
	struct pg_pool *p = pc->pool;
	char reason[256], errbuf[PG_ENDPOINT_MAX + 300];
	const char *msg = pc->c != NULL ? PQerrorMessage(pc->c) : NULL;
	bool was_up = pc->state == PC_IDLE || pc->state == PC_BUSY;

	short_reason(msg != NULL && msg[0] != '\0' ? msg : what, reason, sizeof(reason));
	if (!was_up) {
		p->st.connect_fails++;
		/* look the names up again before the next attempt */
		p->addrs_fresh = false;
	}
	log_warn("msg=\"data store connection %s\" store=postgres endpoint=%s reason=\"%s\"",
	         was_up ? "lost" : "failed", p->endpoint, reason);
	snprintf(errbuf, sizeof(errbuf), "data store %s: %s", p->endpoint, reason);
	conn_close(pc, errbuf);
	if (p->dying)
		return;
	if (conns_up(p) == 0 && conns_connecting(p) == 0) {
		if (!was_up) {
			/* nothing is up and we could not connect: fail fast */
			p->failed = true;
			pool_fail_all_queued(p, "data store unavailable");
		}
		/* a lost connection is retried at once, later ones back off */
		if (was_up) {
			p->backoff_ms = PG_BACKOFF_MIN_MS;
			conn_open(pc);
		} else {
			pool_schedule_retry(p);
		}
	} else if (!was_up) {
		pool_schedule_retry(p);
	}
}

static void conn_poll_connect(struct pg_conn *pc)
{
	struct pg_pool *p = pc->pool;
	PostgresPollingStatusType st = PQconnectPoll(pc->c);

	switch (st) {
	case PGRES_POLLING_READING:
		conn_watch(pc, PQsocket(pc->c), EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		conn_watch(pc, PQsocket(pc->c), EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(pc->c, 1) != 0) {
			conn_failed(pc, "cannot set non-blocking mode");
			return;
		}
		pc->state = PC_IDLE;
		p->st.connects++;
		if (p->failed)
			log_info(
			        "msg=\"data store connection restored\" store=postgres endpoint=%s",
			        p->endpoint);
		p->failed = false;
		p->backoff_ms = PG_BACKOFF_MIN_MS;
		conn_watch(pc, PQsocket(pc->c), EV_READ);
		pool_dispatch(p);
		return;
	default:
		conn_failed(pc, "connection failed");
		return;
	}
}

static void conn_start(struct pg_conn *pc)
{
	struct pg_pool *p = pc->pool;
	const char *keys[8], *vals[8];
	int n = 0;

	keys[n] = "dbname";
	vals[n++] = p->cfg->postgres;
	/* after dbname, so they override what its conninfo says */
	if (p->dns) {
		keys[n] = "host";
		vals[n++] = p->kv_host;
		keys[n] = "hostaddr";
		vals[n++] = p->kv_hostaddr;
		if (p->kv_port != NULL) {
			keys[n] = "port";
			vals[n++] = p->kv_port;
		}
	}
	if (p->cfg->password != NULL) {
		keys[n] = "password";
		vals[n++] = p->cfg->password;
	}
	keys[n] = "application_name";
	vals[n++] = "tailpost-mailbox";
	keys[n] = NULL;
	vals[n] = NULL;
	pc->c = PQconnectStartParams(keys, vals, 1);
	pc->state = PC_CONNECTING;
	pc->connect_start = ev_now(p->loop);
	if (pc->c == NULL) {
		conn_failed(pc, "out of memory");
		return;
	}
	if (PQstatus(pc->c) == CONNECTION_BAD) {
		conn_failed(pc, "connection failed");
		return;
	}
	/* libpq: behave as if PQconnectPoll last returned PGRES_POLLING_WRITING */
	conn_watch(pc, PQsocket(pc->c), EV_WRITE);
}

/* --- host name lookups ------------------------------------------------------ */

static void split_list(const char *s, char ***v_r, size_t *n_r)
{
	char **v = NULL;
	size_t n = 0;

	for (const char *p = s;; p++) {
		size_t len = strcspn(p, ",");

		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrndup(p, len);
		p += len;
		if (*p == '\0')
			break;
	}
	*v_r = v;
	*n_r = n;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Decide whether connections need our lookups: the conninfo's (or
 * PGHOST's) host list has a name and no hostaddr says where it is. */
static void dns_setup(struct pg_pool *p)
{
	PQconninfoOption *opts;
	const char *host = NULL, *hostaddr = NULL, *port = NULL;
	char *errmsg = NULL, **names = NULL;
	size_t nnames = 0;

	opts = PQconninfoParse(p->cfg->postgres, &errmsg);
	if (opts == NULL) {
		/* libpq says what is wrong at the first attempt */
		PQfreemem(errmsg);
		return;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	if (host == NULL)
		host = getenv("PGHOST");
	if (hostaddr == NULL)
		hostaddr = getenv("PGHOSTADDR");
	if (port == NULL)
		port = getenv("PGPORT");
	if (host == NULL || host[0] == '\0' || (hostaddr != NULL && hostaddr[0] != '\0'))
		goto out;
	split_list(host, &names, &nnames);
	for (size_t i = 0; i < nnames; i++)
		p->dns |= resolve_needed(names[i]);
	if (p->dns && port != NULL && strchr(port, ',') != NULL) {
		split_list(port, &p->ports, &p->nports);
		if (p->nports != nnames) {
			/* libpq refuses such a conninfo itself: leave it to say so */
			free_list(p->ports, p->nports);
			p->ports = NULL;
			p->nports = 0;
			p->dns = false;
		}
	}
	if (p->dns) {
		p->hosts = xcalloc(nnames, sizeof(*p->hosts));
		p->nhosts = nnames;
		for (size_t i = 0; i < nnames; i++) {
			p->hosts[i].name = names[i];
			p->hosts[i].dns = resolve_needed(names[i]);
			names[i] = NULL;
		}
	}
	free_list(names, nnames);
out:
	PQconninfoFree(opts);
}

/* The host, hostaddr and port lists from the lookups: every address of a
 * name is an entry of its own, paired with the name (and its port); names
 * that need no lookup keep an empty hostaddr.  False if no host is left. */
static bool dns_build(struct pg_pool *p)
{
	struct buf h, a, pt;
	size_t entries = 0;

	buf_init(&h, 0);
	buf_init(&a, 0);
	buf_init(&pt, 0);
	for (size_t i = 0; i < p->nhosts; i++) {
		const struct pg_host *e = &p->hosts[i];
		size_t n = e->dns ? e->res.naddrs : 1;

		for (size_t k = 0; k < n; k++) {
			const char *sep = entries > 0 ? "," : "";

			buf_printf(&h, "%s%s", sep, e->name);
			buf_printf(&a, "%s%s", sep, e->dns ? e->res.addrs[k] : "");
			if (p->nports > 0)
				buf_printf(&pt, "%s%s", sep, p->ports[i]);
			entries++;
		}
	}
	free(p->kv_host);
	free(p->kv_hostaddr);
	free(p->kv_port);
	p->kv_host = xstrndup((const char *)buf_ptr(&h), buf_len(&h));
	p->kv_hostaddr = xstrndup((const char *)buf_ptr(&a), buf_len(&a));
	p->kv_port = p->nports > 0 ? xstrndup((const char *)buf_ptr(&pt), buf_len(&pt)) : NULL;
	buf_free(&h);
	buf_free(&a);
	buf_free(&pt);
	return entries > 0;
}

static void resolve_next(struct pg_pool *p, size_t from);

static void on_resolved(void *arg, const char *host, const struct resolve_result *res)
{
	struct pg_pool *p = arg;

	(void)host;
	p->rq = NULL;
	p->hosts[p->rq_host].res = *res;
	resolve_next(p, p->rq_host + 1);
	pool_after_callbacks(p);
}

/* Look up hosts[from..] that need it, one after the other; then start
 * (or fail) the connections that wait for it. */
static void resolve_next(struct pg_pool *p, size_t from)
{
	char why[512];
	const struct pg_host *bad = NULL;

	for (size_t i = from; i < p->nhosts; i++) {
		if (!p->hosts[i].dns)
			continue;
		if (p->resolver == NULL)
			p->resolver = resolver_new(p->loop);
		p->rq_host = i;
		p->rq = resolve_start(p->resolver, p->hosts[i].name, on_resolved, p);
		return;
	}
	for (size_t i = 0; i < p->nhosts && bad == NULL; i++)
		if (p->hosts[i].dns && p->hosts[i].res.error != 0)
			bad = &p->hosts[i];
	if (!dns_build(p)) {
		/* as libpq words it, so messages do not depend on who resolved */
		snprintf(why, sizeof(why), "could not translate host name \"%s\" to address: %s",
		         bad != NULL ? bad->name : "?",
		         bad != NULL && bad->res.why != NULL ? bad->res.why : "no address");
		p->addrs_fresh = false;
		for (unsigned i = 0; i < p->nconns && !p->dying; i++)
			if (p->conns[i].state == PC_RESOLVING)
				conn_failed(&p->conns[i], why);
		return;
	}
	if (bad != NULL)
		log_warn("msg=\"data store host name not resolved; trying the others\" "
		         "store=postgres endpoint=%s host=%s reason=\"%s\"",
		         p->endpoint, bad->name, bad->res.why != NULL ? bad->res.why : "?");
	log_debug("msg=\"data store host names resolved\" store=postgres endpoint=%s hosts=%s "
	          "addrs=%s",
	          p->endpoint, p->kv_host, p->kv_hostaddr);
	p->addrs_fresh = true;
	p->resolved_at = ev_now(p->loop);
	for (unsigned i = 0; i < p->nconns && !p->dying; i++)
		if (p->conns[i].state == PC_RESOLVING)
			conn_start(&p->conns[i]);
}

static void conn_open(struct pg_conn *pc)
{
	struct pg_pool *p = pc->pool;

	if (p->dns && !(p->addrs_fresh && ev_now(p->loop) - p->resolved_at < PG_DNS_TTL_S)) {
		pc->state = PC_RESOLVING;
		pc->connect_start = ev_now(p->loop);
		if (p->rq == NULL) {
			for (size_t i = 0; i < p->nhosts; i++)
				memset(&p->hosts[i].res, 0, sizeof(p->hosts[i].res));
			resolve_next(p, 0);
		}
		return;
	}
	conn_start(pc);
}

/* Read what the server sent; returns -1 if the connection broke. */
static int conn_collect(struct pg_conn *pc)
{
	if (PQconsumeInput(pc->c) == 0)
		return -1;
	while (pc->req != NULL && !PQisBusy(pc->c)) {
		PGresult *res = PQgetResult(pc->c);
		if (res == NULL) {
			/* the statement is complete */
			struct pg_req *r = pc->req;
			PGresult *keep = pc->res;
			ExecStatusType es = keep != NULL ? PQresultStatus(keep) : PGRES_FATAL_ERROR;
			const char *err = NULL;

			if (pc->preparing >= 0 && keep != NULL && es == PGRES_COMMAND_OK) {
				/* prepared: now run it on the same connection */
				pc->prepared[pc->nprepared++] = xstrdup(r->sql);
				PQclear(keep);
				pc->res = NULL;
				return conn_send(pc, r) ? 0 : -1;
			}
			pc->preparing = -1;
			pc->req = NULL;
			pc->res = NULL;
			pc->state = PC_IDLE;
			r->conn = NULL;
			r->where = PR_NONE;
			if (keep == NULL)
				err = "no result";
			else if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK)
				err = PQresultErrorMessage(keep)[0] != '\0'
				              ? PQresultErrorMessage(keep)
				              : PQresStatus(es);
			req_complete(pc->pool, r, keep, err);
			if (keep != NULL)
				PQclear(keep);
			return 0;
		}
		/* keep the first error, else the last result */
		if (pc->res == NULL || (PQresultStatus(pc->res) != PGRES_FATAL_ERROR &&
		                        PQresultStatus(pc->res) != PGRES_BAD_RESPONSE)) {
			if (pc->res != NULL)
				PQclear(pc->res);
			pc->res = res;
		} else {
			PQclear(res);
		}
	}
	/* drain notices/notifications on an idle connection */
	if (pc->req == NULL) {
		PGnotify *n;
		while ((n = PQnotifies(pc->c)) != NULL)
			PQfreemem(n);
		if (PQstatus(pc->c) == CONNECTION_BAD)
			return -1;
	}
	return 0;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pg_conn *pc = container_of(w, struct pg_conn, io);
	struct pg_pool *p = pc->pool;

	(void)loop;
	if (pc->state == PC_CONNECTING) {
		conn_poll_connect(pc);
		pool_after_callbacks(p);
		return;
	}
	if (pc->state == PC_BUSY && (revents & EV_WRITE)) {
		int f = PQflush(pc->c);
		if (f < 0) {
			conn_failed(pc, "write failed");
			pool_after_callbacks(p);
			return;
		}
		if (f == 0)
			conn_watch(pc, PQsocket(pc->c), EV_READ);
	}
	if (revents & EV_READ) {
		if (conn_collect(pc) < 0) {
			conn_failed(pc, "connection lost");
			if (pool_after_callbacks(p))
				return;
			pool_dispatch(p);
			pool_after_callbacks(p);
			return;
		}
	}
	if (pool_after_callbacks(p))
		return;
	if (pc->state == PC_IDLE)
		pool_dispatch(p);
	pool_after_callbacks(p);
}

static bool conn_send(struct pg_conn *pc, struct pg_req *r)
{
	char name[16];
	int f, sent;
	unsigned i = 0;

	pc->preparing = -1;
	if (r->prepare) {
		while (i < pc->nprepared && strcmp(pc->prepared[i], r->sql) != 0)
			i++;
	}
	snprintf(name, sizeof(name), "tp_%u", i);
	if (r->prepare && i < pc->nprepared) {
		sent = PQsendQueryPrepared(pc->c, name, r->nparams, (const char *const *)r->params,
		                           r->lengths, r->formats, 0);
	} else if (r->prepare && i < PG_PREPARED_MAX) {
		sent = PQsendPrepare(pc->c, name, r->sql, r->nparams, NULL);
		pc->preparing = (int)i;
	} else {
		sent = PQsendQueryParams(pc->c, r->sql, r->nparams, NULL,
		                         (const char *const *)r->params, r->lengths, r->formats, 0);
	}
	if (sent == 0)
		return false;
	pc->state = PC_BUSY;
	pc->req = r;
	r->conn = pc;
	r->where = PR_RUNNING;
	f = PQflush(pc->c);
	if (f < 0)
		return false;
	conn_watch(pc, PQsocket(pc->c), f == 1 ? EV_READ | EV_WRITE : EV_READ);
	return true;
}

/* Give queued requests to idle connections; open more if allowed. */
static void pool_dispatch(struct pg_pool *p)
{
	if (p->dying)
		return;
	for (unsigned i = 0; i < p->nconns && p->queue.head != NULL; i++) {
		struct pg_conn *pc = &p->conns[i];
		struct pg_req *r;

		if (pc->state != PC_IDLE)
			continue;
		r = p->queue.head;
		list_unlink(&p->queue, r);
		if (!conn_send(pc, r)) {
			/* the connection is broken: the request goes back first in line */
			pc->req = NULL;
			r->conn = NULL;
			r->where = PR_NONE;
			r->prev = NULL;
			r->next = p->queue.head;
			if (p->queue.head != NULL)
				p->queue.head->prev = r;
			else
				p->queue.tail = r;
			p->queue.head = r;
			p->queue.n++;
			r->where = PR_QUEUE;
			pc->state = PC_IDLE;
			conn_failed(pc, "send failed");
			if (p->dying)
				return;
		}
	}
	/* more work than idle connections: open another (one at a time) */
	if (p->queue.head != NULL && !ev_is_active(&p->retry) && conns_connecting(p) == 0) {
		for (unsigned i = 0; i < p->nconns; i++) {
			if (p->conns[i].state == PC_DOWN) {
				conn_open(&p->conns[i]);
				break;
			}
		}
	}
}

/* --- timers -------------------------------------------------------------- */

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_pool *p = container_of(w, struct pg_pool, retry);

	(void)loop;
	(void)revents;
	for (unsigned i = 0; i < p->nconns; i++) {
		if (p->conns[i].state == PC_DOWN) {
			conn_open(&p->conns[i]);
			break;
		}
	}
	pool_after_callbacks(p);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_pool *p = container_of(w, struct pg_pool, kick);

	(void)loop;
	(void)revents;
	while (p->failq.head != NULL && !p->dying) {
		struct pg_req *r = p->failq.head;
		list_unlink(&p->failq, r);
		req_complete(p, r, NULL, r->fail_msg);
	}
	if (pool_after_callbacks(p))
		return;
	pool_dispatch(p);
	pool_after_callbacks(p);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_pool *p = container_of(w, struct pg_pool, tick);
	ev_tstamp now = ev_now(loop);
	double qt = (double)p->cfg->query_timeout_ms / 1000.0;
	double ct = (double)p->cfg->connect_timeout_ms / 1000.0;

	(void)revents;
	/* queued requests past their deadline */
	for (struct pg_req *r = p->queue.head, *next; r != NULL && !p->dying; r = next) {
		next = r->next;
		if (now - r->start >= qt) {
			list_unlink(&p->queue, r);
			req_complete(p, r, NULL, "data store timeout (queued)");
			next = p->queue.head; /* the callback may have changed the queue */
		}
	}
	for (unsigned i = 0; i < p->nconns && !p->dying; i++) {
		struct pg_conn *pc = &p->conns[i];
		if (pc->state == PC_CONNECTING && now - pc->connect_start >= ct) {
			conn_failed(pc, "timeout expired");
		} else if (pc->state == PC_RESOLVING && now - pc->connect_start >= ct) {
			conn_failed(pc, "timeout expired while resolving the host name");
		} else if (pc->state == PC_BUSY && pc->req != NULL && now - pc->req->start >= qt) {
			log_warn("msg=\"data store query timeout, closing connection\" "
			         "store=postgres endpoint=%s",
			         p->endpoint);
			conn_close(pc, "data store timeout");
			if (!p->dying)
				conn_open(pc);
		}
	}
	if (pool_after_callbacks(p))
		return;
	pool_dispatch(p);
	pool_after_callbacks(p);
}

/* --- public ------------------------------------------------------------------ */

struct pg_pool *pg_pool_new(struct ev_loop *loop, const struct stores_data_config *cfg)
{
	struct pg_pool *p = xcalloc(1, sizeof(*p));

	p->loop = loop;
	p->cfg = cfg;
	stores_endpoint_redact(cfg->postgres, p->endpoint, sizeof(p->endpoint));
	p->nconns = cfg->pool_size > 0 ? (unsigned)cfg->pool_size : 1;
	p->conns = xcalloc(p->nconns, sizeof(*p->conns));
	for (unsigned i = 0; i < p->nconns; i++) {
		p->conns[i].pool = p;
		p->conns[i].io_fd = -1;
		p->conns[i].preparing = -1;
		ev_init(&p->conns[i].io, conn_io_cb);
	}
	p->backoff_ms = PG_BACKOFF_MIN_MS;
	dns_setup(p);
	ev_timer_init(&p->tick, tick_cb, PG_TICK_S, PG_TICK_S);
	ev_timer_start(loop, &p->tick);
	/* the tick alone must not keep ev_run() alive */
	ev_unref(loop);
	ev_timer_init(&p->kick, kick_cb, 0., 0.);
	ev_timer_init(&p->retry, retry_cb, 0., 0.);
	conn_open(&p->conns[0]);
	return p;
}

static void pool_really_free(struct pg_pool *p)
{
	/* first: waits for a lookup in flight, then no callback comes */
	resolver_free(&p->resolver);
	p->rq = NULL;
	for (unsigned i = 0; i < p->nconns; i++) {
		struct pg_conn *pc = &p->conns[i];
		if (pc->req != NULL) {
			pc->req->cb = NULL;
		}
		conn_close(pc, "pool closed");
	}
	while (p->queue.head != NULL) {
		struct pg_req *r = p->queue.head;
		list_unlink(&p->queue, r);
		req_free(r);
	}
	while (p->failq.head != NULL) {
		struct pg_req *r = p->failq.head;
		list_unlink(&p->failq, r);
		req_free(r);
	}
	ev_ref(p->loop);
	ev_timer_stop(p->loop, &p->tick);
	ev_timer_stop(p->loop, &p->kick);
	ev_timer_stop(p->loop, &p->retry);
	free(p->conns);
	for (size_t i = 0; i < p->nhosts; i++)
		free(p->hosts[i].name);
	free(p->hosts);
	free_list(p->ports, p->nports);
	free(p->kv_host);
	free(p->kv_hostaddr);
	free(p->kv_port);
	free(p);
}

void pg_pool_free(struct pg_pool **pp)
{
	struct pg_pool *p;

	if (pp == NULL || *pp == NULL)
		return;
	p = *pp;
	*pp = NULL;
	if (p->depth > 0) {
		/* inside one of our callbacks: finish when it returns */
		p->dying = true;
		return;
	}
	p->dying = true;
	pool_really_free(p);
}

struct pg_req *pg_query_bin(struct pg_pool *p, const char *sql, int nparams,
                            const char *const *params, const int *lengths, const int *formats,
                            pg_cb *cb, void *arg)
{
	struct pg_req *r = xcalloc(1, sizeof(*r));

	ASSERT(nparams >= 0);
	r->pool = p;
	r->sql = xstrdup(sql);
	r->nparams = nparams;
	if (nparams > 0) {
		r->params = xcalloc((size_t)nparams, sizeof(char *));
		for (int i = 0; i < nparams; i++) {
			if (params[i] == NULL)
				continue;
			if (lengths != NULL && formats != NULL && formats[i] == 1)
				r->params[i] = xmemdup(params[i], (size_t)lengths[i]);
			else
				r->params[i] = xstrdup(params[i]);
		}
		if (lengths != NULL)
			r->lengths = xmemdup(lengths, (size_t)nparams * sizeof(int));
		if (formats != NULL)
			r->formats = xmemdup(formats, (size_t)nparams * sizeof(int));
	}
	r->cb = cb;
	r->arg = arg;
	r->start = ev_now(p->loop);
	if (p->failed && conns_up(p) == 0) {
		r->fail_msg = "data store unavailable";
		list_push(&p->failq, r, PR_FAILQ);
	} else {
		list_push(&p->queue, r, PR_QUEUE);
	}
	/* dispatch from the loop, never inside this call */
	ev_timer_start(p->loop, &p->kick);
	return r;
}

struct pg_req *pg_query(struct pg_pool *p, const char *sql, int nparams, const char *const *params,
                        pg_cb *cb, void *arg)
{
	return pg_query_bin(p, sql, nparams, params, NULL, NULL, cb, arg);
}

struct pg_req *pg_query_prepared(struct pg_pool *p, const char *sql, int nparams,
                                 const char *const *params, pg_cb *cb, void *arg)
{
	struct pg_req *r = pg_query_bin(p, sql, nparams, params, NULL, NULL, cb, arg);

	r->prepare = true;
	return r;
}

void pg_req_attach(struct pg_req *r, void *p)
{
	ASSERT(r->attached == NULL);
	r->attached = p;
}

void pg_req_cancel(struct pg_req **rp)
{
	struct pg_req *r;

	if (rp == NULL || *rp == NULL)
		return;
	r = *rp;
	*rp = NULL;
	switch (r->where) {
	case PR_QUEUE:
		list_unlink(&r->pool->queue, r);
		req_free(r);
		break;
	case PR_FAILQ:
		list_unlink(&r->pool->failq, r);
		req_free(r);
		break;
	default:
		/* on the wire: let it finish, drop the answer */
		r->cb = NULL;
		break;
	}
}

bool pg_pool_healthy(const struct pg_pool *p)
{
	return conns_up(p) > 0 || !p->failed;
}

const char *pg_pool_endpoint(const struct pg_pool *p)
{
	return p->endpoint;
}

void pg_pool_stats(const struct pg_pool *p, struct pg_pool_stats *out)
{
	*out = p->st;
	out->conns_up = conns_up(p);
	out->conns_busy = 0;
	for (unsigned i = 0; i < p->nconns; i++)
		if (p->conns[i].state == PC_BUSY)
			out->conns_busy++;
	out->queued = p->queue.n;
}

/* --- blocking helpers ---------------------------------------------------------- */

PGconn *pg_connect_blocking(const struct stores_data_config *cfg, char *err, size_t errsz)
{
	const char *keys[5], *vals[5];
	char timeout[24], endpoint[PG_ENDPOINT_MAX], reason[256];
	PGconn *c;
	int n = 0;

	/* libpq counts connect_timeout in whole seconds (at least 2) */
	snprintf(timeout, sizeof(timeout), "%llu",
	         (unsigned long long)((cfg->connect_timeout_ms + 999) / 1000));
	keys[n] = "dbname";
	vals[n++] = cfg->postgres;
	if (cfg->password != NULL) {
		keys[n] = "password";
		vals[n++] = cfg->password;
	}
	keys[n] = "application_name";
	vals[n++] = "tailpost-mailbox";
	keys[n] = "connect_timeout";
	vals[n++] = timeout;
	keys[n] = NULL;
	vals[n] = NULL;
	c = PQconnectdbParams(keys, vals, 1);
	if (c != NULL && PQstatus(c) == CONNECTION_OK)
		return c;
	stores_endpoint_redact(cfg->postgres, endpoint, sizeof(endpoint));
	short_reason(c != NULL ? PQerrorMessage(c) : "out of memory", reason, sizeof(reason));
	snprintf(err, errsz, "data store %s: %s", endpoint, reason);
	PQfinish(c);
	return NULL;
}

int pg_check(const struct stores_data_config *cfg, char *err, size_t errsz)
{
	PGconn *c = pg_connect_blocking(cfg, err, errsz);
	PGresult *res;
	int rc = -1;

	if (c == NULL)
		return -1;
	res = pg_exec(c, "SELECT 1", 0, NULL, err, errsz, NULL);
	if (res != NULL) {
		rc = 0;
		PQclear(res);
	} else {
		char endpoint[PG_ENDPOINT_MAX], why[200];
		stores_endpoint_redact(cfg->postgres, endpoint, sizeof(endpoint));
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errsz, "data store %s: %s", endpoint, why);
	}
	PQfinish(c);
	return rc;
}

PGresult *pg_exec(PGconn *c, const char *sql, int nparams, const char *const *params, char *err,
                  size_t errsz, char sqlstate_r[6])
{
	PGresult *res = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (sqlstate_r != NULL)
		sqlstate_r[0] = '\0';
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	if (res != NULL) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *prim = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		if (sqlstate_r != NULL && state != NULL)
			snprintf(sqlstate_r, 6, "%s", state);
		if (prim != NULL)
			snprintf(err, errsz, "%s", prim);
		else
			short_reason(PQresultErrorMessage(res), err, errsz);
		PQclear(res);
	} else {
		short_reason(PQerrorMessage(c), err, errsz);
	}
	return NULL;
}

/* --- array parameters ------------------------------------------------------ */

void pg_array_text_append(struct buf *out, const char *const *v, size_t n)
{
	buf_puts(out, "{");
	for (size_t i = 0; i < n; i++) {
		const char *p = v[i], *q;

		if (i > 0)
			buf_puts(out, ",");
		if (p == NULL) {
			buf_puts(out, "NULL");
			continue;
		}
		buf_puts(out, "\"");
		/* copy runs without '"' and '\\' whole; escape those two */
		while (*(q = p + strcspn(p, "\"\\")) != '\0') {
			buf_append(out, p, (size_t)(q - p));
			buf_puts(out, *q == '"' ? "\\\"" : "\\\\");
			p = q + 1;
		}
		buf_append(out, p, (size_t)(q - p));
		buf_puts(out, "\"");
	}
	buf_puts(out, "}");
}

static char *buf_take_str(struct buf *b)
{
	char *r = xstrndup((const char *)buf_ptr(b), buf_len(b));

	buf_free(b);
	return r;
}

char *pg_array_text(const char *const *v, size_t n)
{
	struct buf b;

	buf_init(&b, 0);
	pg_array_text_append(&b, v, n);
	return buf_take_str(&b);
}

char *pg_array_int64(const int64_t *v, size_t n)
{
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "{");
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%" PRId64, i > 0 ? "," : "", v[i]);
	buf_puts(&b, "}");
	return buf_take_str(&b);
}

char *pg_array_uint32(const uint32_t *v, size_t n)
{
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "{");
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%" PRIu32, i > 0 ? "," : "", v[i]);
	buf_puts(&b, "}");
	return buf_take_str(&b);
}
