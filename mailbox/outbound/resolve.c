/*
 * mailbox/outbound/resolve.c -- c-ares on libev (see resolve.h).
 *
 * One ev_io per socket c-ares asks us to watch, one ev_timer for
 * ares_timeout().  A query object outlives a cancel until c-ares has
 * called back for each of its lookups (c-ares cannot cancel one query),
 * and finishes through a zero timer when the answer came during the call
 * that started it.
 */
#include "mailbox/outbound/resolve.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <ev.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RESOLVE_MAX_ADDRS 32
#define RESOLVE_MAX_MX    32

struct resolve_io {
	ev_io w;
	struct outbound_resolver *r;
};

struct outbound_resolver {
	struct ev_loop *loop;
	ares_channel ch;
	ev_timer timer;
	struct resolve_io **ios;
	size_t nios;
	bool dying;
	struct resolve_query *queries; /* every live query, for free */
};

enum query_kind { Q_MX, Q_ADDR };

struct resolve_query {
	struct outbound_resolver *r;
	struct resolve_query *prev, *next;
	enum query_kind kind;
	int pending;    /* c-ares lookups not yet called back */
	bool cancelled; /* the user forgot it */
	bool starting;  /* inside outbound_resolve_*() */
	bool done;      /* the result is ready */
	ev_timer later; /* delivers a result that came during the call */
	union {
		resolve_mx_cb *mx;
		resolve_addr_cb *addr;
	} cb;
	void *arg;
	char *name;
	uint16_t port;
	/* results */
	enum resolve_status status;
	const char *error;
	bool implicit;
	struct resolve_mx *mx;
	size_t nmx;
	struct net_addr v6[RESOLVE_MAX_ADDRS], v4[RESOLVE_MAX_ADDRS];
	size_t n6, n4;
	int st6, st4; /* c-ares status of the AAAA and A lookups */
};

static void query_free(struct resolve_query *q);

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_global_init(void)
{
	ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* --- pure ---------------------------------------------------------------- */

static uint32_t default_rnd(void *arg, uint32_t bound)
{
	(void)arg;
	return bound ? (uint32_t)random() % bound : 0;
}

void resolve_mx_sort(struct resolve_mx *v, size_t n, uint32_t (*rnd)(void *arg, uint32_t bound),
                     void *arg)
{
	if (rnd == NULL)
		rnd = default_rnd;
	/* insertion sort: a handful of records */
	for (size_t i = 1; i < n; i++) {
		struct resolve_mx x = v[i];
		size_t j = i;
		while (j > 0 && v[j - 1].pref > x.pref) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
	/* Fisher-Yates within each run of equal preference (RFC 5321 5.1) */
	for (size_t s = 0; s < n;) {
		size_t e = s + 1;
		while (e < n && v[e].pref == v[s].pref)
			e++;
		for (size_t k = e - s; k > 1; k--) {
			size_t j = s + rnd(arg, (uint32_t)k);
			struct resolve_mx t = v[s + k - 1];
			v[s + k - 1] = v[j];
			v[j] = t;
		}
		s = e;
	}
}

enum resolve_status resolve_ares_class(int st)
{
	switch (st) {
	case ARES_SUCCESS:
		return RESOLVE_OK;
	case ARES_ENOTFOUND: /* NXDOMAIN */
	case ARES_ENODATA:   /* the name exists without such records */
	case ARES_EBADNAME:
		return RESOLVE_PERM;
	default: /* SERVFAIL, REFUSED, timeouts, connection trouble, bad answers */
		return RESOLVE_TEMP;
	}
}

static const char *ares_why(int st)
{
	switch (st) {
	case ARES_ENOTFOUND:
		return "NXDOMAIN";
	case ARES_ENODATA:
		return "no records";
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	case ARES_ETIMEOUT:
		return "DNS timeout";
	case ARES_ECONNREFUSED:
		return "DNS server unreachable";
	default:
		return ares_strerror(st);
	}
}

/* --- libev glue ---------------------------------------------------------- */

static void update_timer(struct outbound_resolver *r)
{
	struct timeval tv, *tvp;

	if (r->dying)
		return;
	tvp = ares_timeout(r->ch, NULL, &tv);
	ev_timer_stop(r->loop, &r->timer);
	if (tvp != NULL) {
		double after = (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6;
		ev_timer_set(&r->timer, after > 0 ? after : 0.001, 0.);
		ev_timer_start(r->loop, &r->timer);
	}
}

static void process(struct outbound_resolver *r, ares_socket_t rfd, ares_socket_t wfd)
{
	ares_process_fd(r->ch, rfd, wfd);
	update_timer(r);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct resolve_io *io = container_of(w, struct resolve_io, w);

	(void)loop;
	process(io->r, (revents & EV_READ) ? w->fd : ARES_SOCKET_BAD,
	        (revents & EV_WRITE) ? w->fd : ARES_SOCKET_BAD);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct outbound_resolver *r = container_of(w, struct outbound_resolver, timer);

	(void)loop;
	(void)revents;
	process(r, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct outbound_resolver *r = data;
	struct resolve_io *io = NULL;
	size_t i;

	for (i = 0; i < r->nios; i++)
		if (r->ios[i]->w.fd == fd) {
			io = r->ios[i];
			break;
		}
	if (io != NULL)
		ev_io_stop(r->loop, &io->w);
	if (!readable && !writable) {
		if (io != NULL) {
			r->ios[i] = r->ios[--r->nios];
			free(io);
		}
		return;
	}
	if (io == NULL) {
		io = xcalloc(1, sizeof(*io));
		io->r = r;
		r->ios = xreallocarray(r->ios, r->nios + 1, sizeof(*r->ios));
		r->ios[r->nios++] = io;
		ev_io_init(&io->w, on_io, fd, 0);
	}
	ev_io_set(&io->w, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	ev_io_start(r->loop, &io->w);
}

static int set_servers(struct outbound_resolver *r, const struct conf_strlist *servers,
                       const char **errstr_r)
{
	char *csv = xstrdup("");
	int rc;

	for (size_t i = 0; i < servers->n; i++) {
		struct net_addr a;
		char ip[NET_ADDRSTRLEN];
		const char *err = NULL;
		char *next;

		if (net_addr_parse(servers->v[i], 53, &a) < 0 &&
		    net_addr_parse_hostport(servers->v[i], &a, &err) < 0) {
			free(csv);
			*errstr_r = "dns server must be an IP literal with an optional port";
			return -1;
		}
		net_addr_ip_str(&a, ip, sizeof(ip));
		if (net_addr_family(&a) == AF_INET6)
			next = xasprintf("%s%s[%s]:%u", csv, i ? "," : "", ip,
			                 (unsigned)net_addr_port(&a));
		else
			next = xasprintf("%s%s%s:%u", csv, i ? "," : "", ip,
			                 (unsigned)net_addr_port(&a));
		free(csv);
		csv = next;
	}
	rc = ares_set_servers_ports_csv(r->ch, csv);
	free(csv);
	if (rc != ARES_SUCCESS) {
		*errstr_r = ares_strerror(rc);
		return -1;
	}
	return 0;
}

struct outbound_resolver *outbound_resolver_new(struct ev_loop *loop,
                                                const struct conf_strlist *servers,
                                                unsigned timeout_ms, const char **errstr_r)
{
	struct outbound_resolver *r;
	struct ares_options opt;
	int rc;

	pthread_once(&ares_once, ares_global_init);
	if (ares_init_rc != ARES_SUCCESS) {
		*errstr_r = ares_strerror(ares_init_rc);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->loop = loop;
	ev_timer_init(&r->timer, on_timer, 1., 0.);
	memset(&opt, 0, sizeof(opt));
	opt.sock_state_cb = sock_state;
	opt.sock_state_cb_data = r;
	opt.timeout = timeout_ms ? (int)timeout_ms : 2000;
	opt.tries = 2;
	opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	rc = ares_init_options(&r->ch, &opt,
	                       ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	                               ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS) {
		*errstr_r = ares_strerror(rc);
		free(r);
		return NULL;
	}
	if (servers != NULL && servers->n > 0 && set_servers(r, servers, errstr_r) < 0) {
		ares_destroy(r->ch);
		free(r);
		return NULL;
	}
	return r;
}

void outbound_resolver_free(struct outbound_resolver **rp)
{
	struct outbound_resolver *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	r->dying = true;
	ev_timer_stop(r->loop, &r->timer);
	ares_destroy(r->ch); /* calls back every pending lookup with ARES_EDESTRUCTION */
	while (r->queries != NULL)
		query_free(r->queries);
	for (size_t i = 0; i < r->nios; i++) {
		ev_io_stop(r->loop, &r->ios[i]->w);
		free(r->ios[i]);
	}
	free(r->ios);
	free(r);
}

/* --- queries ------------------------------------------------------------- */

static void query_free(struct resolve_query *q)
{
	ev_timer_stop(q->r->loop, &q->later);
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		q->r->queries = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	for (size_t i = 0; i < q->nmx; i++)
		free(q->mx[i].host);
	free(q->mx);
	free(q->name);
	free(q);
}

static void deliver(struct resolve_query *q)
{
	if (q->kind == Q_MX) {
		struct resolve_mx_result res = {
		        .status = q->status,
		        .error = q->error,
		        .implicit = q->implicit,
		        .hosts = q->mx,
		        .n = q->status == RESOLVE_OK ? q->nmx : 0,
		};
		q->cb.mx(q->arg, &res);
	} else {
		struct net_addr all[2 * RESOLVE_MAX_ADDRS];
		struct resolve_addr_result res = {.status = q->status, .error = q->error};
		size_t n = 0;

		for (size_t i = 0; i < q->n6; i++)
			all[n++] = q->v6[i];
		for (size_t i = 0; i < q->n4; i++)
			all[n++] = q->v4[i];
		res.addrs = all;
		res.n = n;
		q->cb.addr(q->arg, &res);
	}
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolve_query *q = container_of(w, struct resolve_query, later);

	(void)loop;
	(void)revents;
	if (q->cancelled) /* only freed here when no lookup is pending */
		return;
	q->cancelled = true; /* delivered once */
	deliver(q);
	if (q->pending == 0)
		query_free(q);
}

/* The result is complete (pending may still count lookups of a query that
 * gave up early: never here). */
static void finish(struct resolve_query *q)
{
	q->done = true;
	if (q->cancelled) {
		if (q->pending == 0)
			query_free(q);
		return;
	}
	if (q->starting) {
		ev_timer_set(&q->later, 0., 0.);
		ev_timer_start(q->r->loop, &q->later);
		return;
	}
	q->cancelled = true;
	deliver(q);
	query_free(q);
}

static struct resolve_query *query_new(struct outbound_resolver *r, enum query_kind kind,
                                       const char *name, void *arg)
{
	struct resolve_query *q = xcalloc(1, sizeof(*q));

	q->r = r;
	q->kind = kind;
	q->arg = arg;
	q->name = xstrdup(name);
	q->starting = true;
	ev_timer_init(&q->later, on_later, 0., 0.);
	q->next = r->queries;
	if (q->next != NULL)
		q->next->prev = q;
	r->queries = q;
	return q;
}

static void lower_trim(char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
	if (n > 0 && s[n - 1] == '.')
		s[n - 1] = '\0';
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct resolve_query *q = arg;
	struct ares_mx_reply *reply = NULL;

	(void)timeouts;
	q->pending--;
	if (q->r->dying || status == ARES_EDESTRUCTION)
		return; /* outbound_resolver_free() frees it */
	if (q->cancelled) {
		if (q->pending == 0)
			query_free(q);
		return;
	}
	if (status == ARES_SUCCESS)
		status = ares_parse_mx_reply(abuf, alen, &reply);
	if (status == ARES_ENODATA) {
		/* RFC 5321 5.1: no MX, the domain is its own mail host */
		q->implicit = true;
		q->mx = xcalloc(1, sizeof(*q->mx));
		q->mx[0].host = xstrdup(q->name);
		q->nmx = 1;
		q->status = RESOLVE_OK;
	} else if (status != ARES_SUCCESS) {
		q->status = resolve_ares_class(status);
		q->error = ares_why(status);
	} else {
		size_t n = 0;
		bool null_mx = false;

		for (struct ares_mx_reply *m = reply; m != NULL; m = m->next)
			n++;
		q->mx = xcalloc(n ? n : 1, sizeof(*q->mx));
		for (struct ares_mx_reply *m = reply; m != NULL && q->nmx < RESOLVE_MAX_MX;
		     m = m->next) {
			char *h = xstrdup(m->host != NULL ? m->host : "");
			lower_trim(h);
			if (h[0] == '\0') { /* "." */
				null_mx = true;
				free(h);
				continue;
			}
			q->mx[q->nmx].host = h;
			q->mx[q->nmx].pref = m->priority;
			q->nmx++;
		}
		ares_free_data(reply);
		if (null_mx) {
			/* RFC 7505 3: a domain that accepts no mail */
			q->status = RESOLVE_PERM;
			q->error = "null MX (RFC 7505): the domain accepts no mail";
		} else if (q->nmx == 0) {
			q->status = RESOLVE_TEMP;
			q->error = "MX answer without usable records";
		} else {
			resolve_mx_sort(q->mx, q->nmx, NULL, NULL);
			q->status = RESOLVE_OK;
		}
	}
	finish(q);
}

static void addr_result(struct resolve_query *q)
{
	int c6 = resolve_ares_class(q->st6), c4 = resolve_ares_class(q->st4);

	if (q->n6 + q->n4 > 0) {
		q->status = RESOLVE_OK;
	} else if (c6 == RESOLVE_TEMP || c4 == RESOLVE_TEMP) {
		q->status = RESOLVE_TEMP;
		q->error = ares_why(c4 == RESOLVE_TEMP ? q->st4 : q->st6);
	} else {
		q->status = RESOLVE_PERM;
		q->error = q->st4 == ARES_ENOTFOUND || q->st6 == ARES_ENOTFOUND
		                   ? "NXDOMAIN"
		                   : "no A or AAAA records";
	}
}

static void on_addr(struct resolve_query *q, int family, int status, unsigned char *abuf, int alen)
{
	q->pending--;
	if (q->r->dying || status == ARES_EDESTRUCTION)
		return; /* outbound_resolver_free() frees it */
	if (q->cancelled) {
		if (q->pending == 0)
			query_free(q);
		return;
	}
	if (family == AF_INET6) {
		struct ares_addr6ttl a[RESOLVE_MAX_ADDRS];
		int n = RESOLVE_MAX_ADDRS;

		if (status == ARES_SUCCESS)
			status = ares_parse_aaaa_reply(abuf, alen, NULL, a, &n);
		if (status == ARES_SUCCESS)
			for (int i = 0; i < n && q->n6 < RESOLVE_MAX_ADDRS; i++) {
				char ip[INET6_ADDRSTRLEN];
				if (inet_ntop(AF_INET6, &a[i].ip6addr, ip, sizeof(ip)) != NULL &&
				    net_addr_parse(ip, q->port, &q->v6[q->n6]) == 0)
					q->n6++;
			}
		q->st6 = status;
	} else {
		struct ares_addrttl a[RESOLVE_MAX_ADDRS];
		int n = RESOLVE_MAX_ADDRS;

		if (status == ARES_SUCCESS)
			status = ares_parse_a_reply(abuf, alen, NULL, a, &n);
		if (status == ARES_SUCCESS)
			for (int i = 0; i < n && q->n4 < RESOLVE_MAX_ADDRS; i++) {
				char ip[INET_ADDRSTRLEN];
				if (inet_ntop(AF_INET, &a[i].ipaddr, ip, sizeof(ip)) != NULL &&
				    net_addr_parse(ip, q->port, &q->v4[q->n4]) == 0)
					q->n4++;
			}
		q->st4 = status;
	}
	if (q->pending > 0)
		return;
	addr_result(q);
	finish(q);
}

static void on_aaaa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	on_addr(arg, AF_INET6, status, abuf, alen);
}

static void on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	on_addr(arg, AF_INET, status, abuf, alen);
}

/* Addresses of q->name of one family from the hosts file (synchronous). */
static void hosts_file(struct resolve_query *q, int family)
{
	struct hostent *he = NULL;

	if (ares_gethostbyname_file(q->r->ch, q->name, family, &he) != ARES_SUCCESS || he == NULL)
		return;
	for (char **a = he->h_addr_list; a != NULL && *a != NULL; a++) {
		char ip[INET6_ADDRSTRLEN];
		struct net_addr *dst = family == AF_INET6 ? q->v6 : q->v4;
		size_t *n = family == AF_INET6 ? &q->n6 : &q->n4;

		if (*n >= RESOLVE_MAX_ADDRS || he->h_addrtype != family)
			break;
		if (inet_ntop(family, *a, ip, sizeof(ip)) != NULL &&
		    net_addr_parse(ip, q->port, &dst[*n]) == 0)
			(*n)++;
	}
	ares_free_hostent(he);
}

static void started(struct resolve_query *q)
{
	q->starting = false;
	update_timer(q->r);
}

struct resolve_query *outbound_resolve_mx(struct outbound_resolver *r, const char *domain,
                                          resolve_mx_cb *cb, void *arg)
{
	struct resolve_query *q = query_new(r, Q_MX, domain, arg);

	q->cb.mx = cb;
	lower_trim(q->name);
	q->pending = 1;
	ares_query(r->ch, q->name, ns_c_in, ns_t_mx, on_mx, q);
	if (q->done) { /* answered at once; freed by on_later */
		q->starting = false;
		return q;
	}
	started(q);
	return q;
}

struct resolve_query *outbound_resolve_addrs(struct outbound_resolver *r, const char *host,
                                             uint16_t port, resolve_addr_cb *cb, void *arg)
{
	struct resolve_query *q = query_new(r, Q_ADDR, host, arg);
	struct net_addr lit;

	q->cb.addr = cb;
	q->port = port;
	if (net_addr_parse(host, port, &lit) == 0) {
		if (net_addr_family(&lit) == AF_INET6)
			q->v6[q->n6++] = lit;
		else
			q->v4[q->n4++] = lit;
		q->status = RESOLVE_OK;
		finish(q);
		q->starting = false;
		return q;
	}
	lower_trim(q->name);
	/* the hosts file first, as getaddrinfo would ("localhost", local names) */
	hosts_file(q, AF_INET6);
	hosts_file(q, AF_INET);
	if (q->n6 + q->n4 > 0) {
		q->status = RESOLVE_OK;
		finish(q);
		q->starting = false;
		return q;
	}
	q->pending = 2;
	ares_query(r->ch, q->name, ns_c_in, ns_t_aaaa, on_aaaa, q);
	if (!q->done)
		ares_query(r->ch, q->name, ns_c_in, ns_t_a, on_a, q);
	if (q->done) {
		q->starting = false;
		return q;
	}
	started(q);
	return q;
}

void outbound_resolve_cancel(struct resolve_query **qp)
{
	struct resolve_query *q = *qp;

	if (q == NULL)
		return;
	*qp = NULL;
	q->cancelled = true;
	if (q->pending == 0)
		query_free(q);
}
