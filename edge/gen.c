/*
 * edge/gen.c -- building, retiring and freeing configuration generations.
 *
 * Build order matters for a reload that must not disturb the running
 * generation: everything that can fail (resolving names, binding new
 * addresses) happens first, taking references as it goes, and a failure
 * gives every reference back, which closes only sockets this attempt
 * opened.
 */
#include "edge/gen.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

static void listener_release(struct edge_listener *l, struct edge_registry *reg)
{
	if (l->socks != NULL) {
		for (size_t j = 0; j < l->nsocks; j++)
			if (l->socks[j] != NULL)
				edge_lsock_put(reg, l->socks[j]);
		free(l->socks);
		l->socks = NULL;
	}
	edge_pool_free(&l->pool);
	edge_access_free(&l->access);
	if (l->st != NULL)
		edge_lstate_put(reg, l->st);
	l->st = NULL;
}

struct edge_gen *edge_gen_build(struct edge_config *cfg, const struct edge_gen *prev,
                                struct edge_registry *reg, uint64_t id, char **errmsg_r)
{
	struct edge_gen *g = xcalloc(1, sizeof(*g));

	g->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	g->id = id;
	atomic_init(&g->refs, 1);
	g->n = g->cfg.listeners.n;
	g->l = xcalloc(g->n, sizeof(*g->l));
	for (size_t i = 0; i < g->n; i++) {
		struct edge_listener *l = &g->l[i];
		const struct edge_listener_conf *lc = edge_config_listener(&g->cfg, i);
		const struct edge_listener *old =
		        prev != NULL ? edge_gen_listener(prev, lc->name) : NULL;

		l->conf = lc;
		l->gen = g;
		l->limited = lc->per_source_max_connections > 0 || lc->per_source_rate > 0;
		edge_access_init(&l->access, &lc->allow, &lc->deny);
		l->pool = edge_pool_new(lc, old != NULL ? old->pool : NULL, errmsg_r);
		if (l->pool == NULL)
			goto fail;
		l->st = edge_lstate_get(reg, lc->name);
		l->nsocks = lc->bind.n;
		l->socks = xcalloc(l->nsocks, sizeof(*l->socks));
		for (size_t j = 0; j < lc->bind.n; j++) {
			l->socks[j] = edge_lsock_get(reg, lc->bind.v[j], errmsg_r);
			if (l->socks[j] == NULL)
				goto fail;
		}
	}
	return g;
fail:
	g->retired = true;
	edge_gen_free(g, reg);
	return NULL;
}

void edge_gen_start_checks(struct edge_gen *g, struct ev_loop *loop)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->l[i].pool != NULL)
			edge_pool_checks_start(g->l[i].pool, loop);
}

void edge_gen_retire(struct edge_gen *g, struct edge_registry *reg)
{
	if (g->retired)
		return;
	g->retired = true;
	for (size_t i = 0; i < g->n; i++) {
		struct edge_listener *l = &g->l[i];
		if (l->pool != NULL)
			edge_pool_checks_stop(l->pool);
		if (l->socks != NULL) {
			for (size_t j = 0; j < l->nsocks; j++)
				if (l->socks[j] != NULL)
					edge_lsock_put(reg, l->socks[j]);
			free(l->socks);
			l->socks = NULL;
		}
	}
	edge_gen_unref(g);
}

void edge_gen_free(struct edge_gen *g, struct edge_registry *reg)
{
	if (g == NULL)
		return;
	ASSERT(g->retired);
	for (size_t i = 0; i < g->n; i++)
		listener_release(&g->l[i], reg);
	free(g->l);
	edge_config_free(&g->cfg);
	free(g);
}

struct edge_listener *edge_gen_listener(const struct edge_gen *g, const char *name)
{
	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->l[i].conf->name, name) == 0)
			return &g->l[i];
	return NULL;
}
