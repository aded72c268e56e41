/*
 * edge/listener.c -- the registry of listener states and listening sockets.
 *
 * Both are plain linked lists searched by name or address: a configuration
 * has a handful of listeners and this code runs at start and on reload
 * only.
 */
#include "edge/listener.h"

#include "edge/sock.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void edge_registry_init(struct edge_registry *r, int nworkers, int backlog)
{
	memset(r, 0, sizeof(*r));
	r->nworkers = nworkers;
	r->backlog = backlog;
}

static void lstate_free(struct edge_lstate *st)
{
	edge_limits_free(&st->limits);
	free(st->name);
	free(st);
}

static void lsock_close(struct edge_lsock *ls)
{
	for (int i = 0; i < ls->nfds; i++)
		if (ls->fds[i] >= 0) {
			close(ls->fds[i]);
			ls->fds[i] = -1;
		}
}

static void lsock_free(struct edge_lsock *ls)
{
	lsock_close(ls);
	free(ls->fds);
	free(ls);
}

void edge_registry_free(struct edge_registry *r)
{
	struct edge_lstate *st, *nst;
	struct edge_lsock *ls, *nls;

	for (st = r->states; st != NULL; st = nst) {
		nst = st->next;
		lstate_free(st);
	}
	for (ls = r->socks; ls != NULL; ls = nls) {
		nls = ls->next;
		lsock_free(ls);
	}
	r->states = NULL;
	r->socks = NULL;
}

struct edge_lstate *edge_lstate_get(struct edge_registry *r, const char *name)
{
	struct edge_lstate *st;

	for (st = r->states; st != NULL; st = st->next)
		if (strcmp(st->name, name) == 0) {
			st->users++;
			return st;
		}
	st = xcalloc(1, sizeof(*st));
	st->name = xstrdup(name);
	st->limits = edge_limits_new();
	atomic_init(&st->active, 0);
	st->users = 1;
	st->next = r->states;
	r->states = st;
	return st;
}

void edge_lstate_put(struct edge_registry *r, struct edge_lstate *st)
{
	struct edge_lstate **pp;

	if (--st->users > 0)
		return;
	for (pp = &r->states; *pp != NULL; pp = &(*pp)->next)
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	lstate_free(st);
}

static bool is_wildcard(const struct net_addr *a)
{
	size_t n;
	const uint8_t *p = net_addr_bytes(a, &n);

	for (size_t i = 0; p != NULL && i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

struct edge_lsock *edge_lsock_get(struct edge_registry *r, const char *spec, char **errmsg_r)
{
	struct edge_lsock *ls;
	struct net_addr a;
	const char *err = NULL;

	if (net_addr_parse_hostport(spec, &a, &err) < 0) {
		*errmsg_r = xasprintf("bind '%s': %s", spec, err != NULL ? err : "invalid");
		return NULL;
	}
	for (ls = r->socks; ls != NULL; ls = ls->next)
		if (net_addr_ip_equal(&ls->addr, &a) &&
		    net_addr_port(&ls->addr) == net_addr_port(&a)) {
			ls->users++;
			return ls;
		}
	ls = xcalloc(1, sizeof(*ls));
	ls->addr = a;
	net_addr_str(&a, ls->name, sizeof(ls->name));
	ls->wildcard = is_wildcard(&a);
	ls->nfds = r->nworkers;
	ls->fds = xcalloc((size_t)r->nworkers, sizeof(int));
	for (int i = 0; i < ls->nfds; i++)
		ls->fds[i] = -1;
	for (int i = 0; i < ls->nfds; i++) {
		ls->fds[i] = edge_sock_listen(&a, r->backlog, &err);
		if (ls->fds[i] < 0) {
			*errmsg_r = err != NULL
			                    ? xstrdup(err)
			                    : xasprintf("listen %s: %s", ls->name, strerror(errno));
			lsock_free(ls);
			return NULL;
		}
	}
	ls->users = 1;
	ls->next = r->socks;
	r->socks = ls;
	return ls;
}

void edge_lsock_put(struct edge_registry *r, struct edge_lsock *ls)
{
	struct edge_lsock **pp;

	if (--ls->users > 0)
		return;
	for (pp = &r->socks; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ls) {
			*pp = ls->next;
			break;
		}
	log_info("msg=listener.closed bind=%s", ls->name);
	lsock_free(ls);
}

void edge_registry_close_all(struct edge_registry *r)
{
	for (struct edge_lsock *ls = r->socks; ls != NULL; ls = ls->next)
		lsock_close(ls);
}
