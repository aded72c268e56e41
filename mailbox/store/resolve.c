/*
 * mailbox/store/resolve.c -- getaddrinfo on a worker thread (see resolve.h).
 *
 * Every request is on the resolver's list from resolve_start until its
 * done callback ran, so resolver_free can free the ones the work pool
 * drops (the pool runs no done callback after it is freed).  A cancelled
 * request stays on the list with its callback cleared: the worker may be
 * writing its result, so only the done callback (or resolver_free, after
 * the threads are joined) frees it.
 */
#include "mailbox/store/resolve.h"

#include "mailbox/store/workpool.h"
#include "shared/xmalloc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct resolve_req {
	struct resolver *r;
	struct resolve_req *prev, *next;
	char *host;
	resolve_cb *cb; /* NULL once cancelled */
	void *arg;
	struct resolve_result res; /* written by the worker */
};

struct resolver {
	struct ev_loop *loop;
	struct workpool *wp; /* started on the first request */
	struct resolve_req *reqs;
};

bool resolve_needed(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	char tmp[RESOLVE_ADDR_LEN + 2];
	size_t n;

	if (host == NULL || host[0] == '\0' || host[0] == '/' || host[0] == '@')
		return false;
	if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
		return false;
	n = strlen(host);
	if (host[0] == '[' && n >= 2 && host[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, buf) == 1)
			return false;
	}
	return true;
}

void resolve_blocking(const char *host, struct resolve_result *out)
{
	struct addrinfo hints, *ai = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &ai);
	if (rc != 0) {
		out->error = rc;
		out->why = gai_strerror(rc);
		return;
	}
	for (struct addrinfo *p = ai; p != NULL && out->naddrs < RESOLVE_MAX_ADDRS;
	     p = p->ai_next) {
		char *dst = out->addrs[out->naddrs];
		const void *src;
		bool dup = false;

		if (p->ai_family == AF_INET)
			src = &((const struct sockaddr_in *)(const void *)p->ai_addr)->sin_addr;
		else if (p->ai_family == AF_INET6)
			src = &((const struct sockaddr_in6 *)(const void *)p->ai_addr)->sin6_addr;
		else
			continue;
		if (inet_ntop(p->ai_family, src, dst, RESOLVE_ADDR_LEN) == NULL)
			continue;
		for (size_t i = 0; i < out->naddrs; i++)
			dup |= strcmp(out->addrs[i], dst) == 0;
		if (!dup)
			out->naddrs++;
	}
	freeaddrinfo(ai);
	if (out->naddrs == 0) {
		out->error = EAI_NONAME;
		out->why = gai_strerror(EAI_NONAME);
	}
}

static void unlink_req(struct resolve_req *q)
{
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		q->r->reqs = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

static void req_free(struct resolve_req *q)
{
	free(q->host);
	free(q);
}

static void work(void *arg)
{
	struct resolve_req *q = arg;

	resolve_blocking(q->host, &q->res);
}

static void done(void *arg)
{
	struct resolve_req *q = arg;

	unlink_req(q);
	if (q->cb != NULL)
		q->cb(q->arg, q->host, &q->res);
	req_free(q);
}

struct resolver *resolver_new(struct ev_loop *loop)
{
	struct resolver *r = xcalloc(1, sizeof(*r));

	r->loop = loop;
	return r;
}

void resolver_free(struct resolver **rp)
{
	struct resolver *r = *rp;

	*rp = NULL;
	if (r == NULL)
		return;
	/* joins the worker: afterwards nothing touches the requests */
	workpool_free(&r->wp);
	while (r->reqs != NULL) {
		struct resolve_req *q = r->reqs;

		unlink_req(q);
		req_free(q);
	}
	free(r);
}

struct resolve_req *resolve_start(struct resolver *r, const char *host, resolve_cb *cb, void *arg)
{
	struct resolve_req *q = xcalloc(1, sizeof(*q));

	q->r = r;
	q->host = xstrdup(host);
	q->cb = cb;
	q->arg = arg;
	q->next = r->reqs;
	if (r->reqs != NULL)
		r->reqs->prev = q;
	r->reqs = q;
	if (r->wp == NULL)
		r->wp = workpool_new(r->loop, 1);
	workpool_submit(r->wp, work, done, q);
	return q;
}

void resolve_cancel(struct resolve_req **qp)
{
	if (qp == NULL || *qp == NULL)
		return;
	(*qp)->cb = NULL;
	*qp = NULL;
}
