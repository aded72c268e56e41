/*
 * edge/upstream.c -- upstream pools: resolution, balancing, health checks.
 *
 * Balancing is a walk over a ring: a connection starts at the round-robin
 * cursor (or at 0 for first-available) and takes the next upstream marked
 * up; on a failed attempt it goes on from there, so failover and balancing
 * are the same loop and each upstream is tried at most once per client.
 *
 * The probe state machine (main thread), per upstream:
 *   idle --interval--> connecting --writable, header sent--> draining
 *        --EOF/timeout--> idle
 * A probe passes when the TCP connection is established and the LOCAL
 * header is accepted by the socket within `timeout`; anything else (a
 * refusal, a reset, the deadline) fails it.
 */
#include "edge/upstream.h"

#include "edge/sock.h"
#include "shared/log.h"
#include "shared/pp.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void add_addr(struct edge_upstream **v, size_t *n, const struct net_addr *a,
                     const char *origin)
{
	for (size_t i = 0; i < *n; i++)
		if (net_addr_ip_equal(&(*v)[i].addr, a) &&
		    net_addr_port(&(*v)[i].addr) == net_addr_port(a))
			return; /* the same address listed twice is one upstream */
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	memset(&(*v)[*n], 0, sizeof(**v));
	(*v)[*n].addr = *a;
	net_addr_str(a, (*v)[*n].name, sizeof((*v)[*n].name));
	(*v)[*n].origin = xstrdup(origin);
	(*v)[*n].check_fd = -1;
	atomic_init(&(*v)[*n].up, true);
	atomic_init(&(*v)[*n].connects, 0);
	atomic_init(&(*v)[*n].failures, 0);
	(*n)++;
}

static int resolve(const char *spec, struct edge_upstream **v, size_t *n, char **errmsg_r)
{
	char host[NET_HOSTLEN];
	uint16_t port;
	const char *err = NULL;
	struct net_addr a;
	struct addrinfo hints, *res = NULL, *ai;
	int rc, found = 0;

	if (net_hostport_split(spec, host, sizeof(host), &port, &err) < 0) {
		*errmsg_r = xasprintf("upstream '%s': %s", spec, err != NULL ? err : "invalid");
		return -1;
	}
	if (net_addr_parse(host, port, &a) == 0) {
		add_addr(v, n, &a, spec);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		*errmsg_r = xasprintf("upstream '%s': cannot resolve '%s': %s", spec, host,
		                      gai_strerror(rc));
		return -1;
	}
	/* getaddrinfo's order (RFC 6724) is the order we try them in. */
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		net_addr_from_sockaddr(&a, ai->ai_addr, ai->ai_addrlen);
		net_addr_set_port(&a, port);
		add_addr(v, n, &a, spec);
		found++;
	}
	freeaddrinfo(res);
	if (found == 0) {
		*errmsg_r =
		        xasprintf("upstream '%s': '%s' has no IPv4 or IPv6 address", spec, host);
		return -1;
	}
	return 0;
}

struct edge_pool *edge_pool_new(const struct edge_listener_conf *lc, const struct edge_pool *prev,
                                char **errmsg_r)
{
	struct edge_pool *p = xcalloc(1, sizeof(*p));

	for (size_t i = 0; i < lc->upstreams.n; i++)
		if (resolve(lc->upstreams.v[i], &p->v, &p->n, errmsg_r) < 0)
			goto fail;
	p->balance = lc->balance;
	p->health = lc->health_check;
	p->proxy_protocol = lc->proxy_protocol;
	p->listener = xstrdup(lc->name);
	atomic_init(&p->rr, 0);
	for (size_t i = 0; i < p->n; i++) {
		struct edge_upstream *u = &p->v[i];
		u->pool = p;
		if (prev == NULL)
			continue;
		for (size_t j = 0; j < prev->n; j++) {
			const struct edge_upstream *o = &prev->v[j];
			if (!net_addr_ip_equal(&o->addr, &u->addr) ||
			    net_addr_port(&o->addr) != net_addr_port(&u->addr))
				continue;
			/* With checks turned off now, an upstream is up again. */
			atomic_store(&u->up, !p->health.enabled || atomic_load(&o->up));
			atomic_store(&u->connects, atomic_load(&o->connects));
			atomic_store(&u->failures, atomic_load(&o->failures));
			u->ok_streak = o->ok_streak;
			u->fail_streak = o->fail_streak;
			u->checks_ok = o->checks_ok;
			u->checks_failed = o->checks_failed;
			memcpy(u->last_error, o->last_error, sizeof(u->last_error));
			break;
		}
	}
	if (prev != NULL)
		atomic_store(&p->rr, atomic_load(&prev->rr));
	return p;
fail:
	edge_pool_free(&p);
	return NULL;
}

void edge_pool_free(struct edge_pool **pp)
{
	struct edge_pool *p = *pp;

	if (p == NULL)
		return;
	edge_pool_checks_stop(p);
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].origin);
	free(p->v);
	free(p->listener);
	free(p);
	*pp = NULL;
}

bool edge_pool_any_up(const struct edge_pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (atomic_load_explicit(&p->v[i].up, memory_order_relaxed))
			return true;
	return false;
}

size_t edge_pool_start(struct edge_pool *p)
{
	if (p->balance == EDGE_BAL_FIRST_AVAILABLE || p->n <= 1)
		return 0;
	return atomic_fetch_add_explicit(&p->rr, 1, memory_order_relaxed) % p->n;
}

struct edge_upstream *edge_pool_next(struct edge_pool *p, size_t start, size_t *tried)
{
	while (*tried < p->n) {
		struct edge_upstream *u = &p->v[(start + *tried) % p->n];
		(*tried)++;
		if (atomic_load_explicit(&u->up, memory_order_relaxed))
			return u;
	}
	return NULL;
}

/* --- health checks ------------------------------------------------------ */

static double ms_to_s(uint64_t ms)
{
	return (double)ms / 1000.0;
}

static void check_close(struct edge_upstream *u)
{
	struct ev_loop *loop = u->pool->loop;

	ev_io_stop(loop, &u->check_io);
	ev_timer_stop(loop, &u->check_tmo);
	if (u->check_fd >= 0)
		close(u->check_fd);
	u->check_fd = -1;
	u->check_phase = 0;
}

static void check_result(struct edge_upstream *u, bool ok, const char *why)
{
	const struct edge_health_conf *h = &u->pool->health;
	bool up = atomic_load(&u->up);
	char q[128];

	if (ok) {
		u->checks_ok++;
		u->fail_streak = 0;
		if (u->ok_streak < INT32_MAX)
			u->ok_streak++;
		if (!up && u->ok_streak >= h->rise) {
			atomic_store(&u->up, true);
			log_info("msg=upstream.up listener=%s upstream=%s checks_ok=%d",
			         u->pool->listener, u->name, u->ok_streak);
		}
		return;
	}
	u->checks_failed++;
	snprintf(u->last_error, sizeof(u->last_error), "%s", why);
	u->ok_streak = 0;
	if (u->fail_streak < INT32_MAX)
		u->fail_streak++;
	log_debug("msg=upstream.check_failed listener=%s upstream=%s error=%s", u->pool->listener,
	          u->name, log_quote(q, sizeof(q), why));
	if (up && u->fail_streak >= h->fall) {
		atomic_store(&u->up, false);
		log_warn("msg=upstream.down listener=%s upstream=%s checks_failed=%d error=%s",
		         u->pool->listener, u->name, u->fail_streak, log_quote(q, sizeof(q), why));
	}
}

static void check_fail(struct edge_upstream *u, const char *why)
{
	check_close(u);
	check_result(u, false, why);
}

static void check_send_header(struct edge_upstream *u)
{
	uint8_t hdr[64];
	size_t n = 0;
	ssize_t w;
	struct pp_encode e = {.local = true};

	if (u->pool->proxy_protocol == EDGE_PP_V2)
		n = pp_encode_v2(hdr, sizeof(hdr), &e);
	else if (u->pool->proxy_protocol == EDGE_PP_V1)
		n = pp_encode_v1((char *)hdr, sizeof(hdr), &e);
	if (n > 0) {
		w = send(u->check_fd, hdr, n, MSG_NOSIGNAL);
		if (w != (ssize_t)n) {
			check_fail(u, w < 0 ? strerror(errno) : "short write of the header");
			return;
		}
	}
	check_result(u, true, NULL);
	/* Half-close and read until the server closes, so it sees a clean
	 * end instead of a reset from unread banner bytes. */
	shutdown(u->check_fd, SHUT_WR);
	u->check_phase = 2;
	ev_io_stop(u->pool->loop, &u->check_io);
	ev_io_set(&u->check_io, u->check_fd, EV_READ);
	ev_io_start(u->pool->loop, &u->check_io);
	ev_timer_stop(u->pool->loop, &u->check_tmo);
	ev_timer_set(&u->check_tmo, ms_to_s(u->pool->health.timeout_ms), 0);
	ev_timer_start(u->pool->loop, &u->check_tmo);
}

static void check_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct edge_upstream *u = container_of(w, struct edge_upstream, check_io);
	char buf[512];
	ssize_t n;
	int err;

	(void)loop;
	(void)revents;
	if (u->check_phase == 1) {
		err = edge_sock_error(u->check_fd);
		if (err != 0) {
			check_fail(u, strerror(err));
			return;
		}
		check_send_header(u);
		return;
	}
	for (;;) {
		n = recv(u->check_fd, buf, sizeof(buf), 0);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		check_close(u);
		return;
	}
}

static void check_tmo_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct edge_upstream *u = container_of(w, struct edge_upstream, check_tmo);

	(void)loop;
	(void)revents;
	if (u->check_phase == 1)
		check_fail(u, "connect timeout");
	else
		check_close(u);
}

static void check_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct edge_upstream *u = container_of(w, struct edge_upstream, check_timer);
	bool done = false;
	int fd;

	(void)revents;
	if (u->check_phase != 0)
		check_close(u); /* a drain that outlived an interval */
	fd = edge_sock_connect(&u->addr, &done);
	if (fd < 0) {
		check_result(u, false, strerror(errno));
		return;
	}
	u->check_fd = fd;
	u->check_phase = 1;
	ev_io_set(&u->check_io, fd, EV_WRITE);
	ev_io_start(loop, &u->check_io);
	ev_timer_set(&u->check_tmo, ms_to_s(u->pool->health.timeout_ms), 0);
	ev_timer_start(loop, &u->check_tmo);
}

void edge_pool_checks_start(struct edge_pool *p, struct ev_loop *loop)
{
	double interval = ms_to_s(p->health.interval_ms);

	if (p->checking || !p->health.enabled)
		return;
	p->loop = loop;
	p->checking = true;
	for (size_t i = 0; i < p->n; i++) {
		struct edge_upstream *u = &p->v[i];
		/* Spread the first probes over a tenth of the interval. */
		double first = 0.001 + interval * 0.1 * (double)(i + 1) / (double)(p->n + 1);

		ev_io_init(&u->check_io, check_io_cb, -1, EV_WRITE);
		ev_timer_init(&u->check_tmo, check_tmo_cb, 1.0, 0);
		ev_timer_init(&u->check_timer, check_timer_cb, first, interval);
		ev_timer_start(loop, &u->check_timer);
	}
}

void edge_pool_checks_stop(struct edge_pool *p)
{
	if (!p->checking)
		return;
	for (size_t i = 0; i < p->n; i++) {
		struct edge_upstream *u = &p->v[i];
		ev_timer_stop(p->loop, &u->check_timer);
		check_close(u);
	}
	p->checking = false;
}
