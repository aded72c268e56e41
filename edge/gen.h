/*
 * edge/gen.h -- a configuration generation: what one loaded edge.yaml
 * becomes at run time.
 *
 * A generation owns its parsed config, and for each listener the compiled
 * access lists and the upstream pool; it refers to registry objects
 * (listener states, listening sockets) that may be shared with the
 * generations before and after it.  Workers hold a reference to the
 * current generation and every connection holds one to the generation it
 * was accepted under, so a reload changes new connections only and an
 * established connection keeps its upstream pool and limits until it ends.
 *
 * Lifecycle (main thread): build -> published to workers -> retired when
 * the next one is acknowledged by every worker (its health checks stop,
 * sockets it alone used are closed) -> freed when its reference count
 * (atomic, dropped by workers and connections) reaches zero, which the main
 * thread notices on its housekeeping timer.
 */
#ifndef EDGE_GEN_H
#define EDGE_GEN_H

#include "edge/config.h"
#include "edge/listener.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct edge_gen {
	atomic_long refs;
	uint64_t id;
	struct edge_config cfg;
	struct edge_listener *l; /* cfg.listeners.n entries */
	size_t n;
	bool retired;
	struct edge_gen *next; /* in the main thread's retired list */
};

/*
 * Build a generation from cfg (moved in: *cfg is zeroed), resolving
 * upstreams and binding new addresses through reg, taking upstream health
 * from prev (may be NULL).  The result has one reference (the caller's).
 * NULL with *errmsg_r (owned by the caller) on failure, with nothing
 * bound and cfg freed.
 */
struct edge_gen *edge_gen_build(struct edge_config *cfg, const struct edge_gen *prev,
                                struct edge_registry *reg, uint64_t id, char **errmsg_r);

static inline void edge_gen_ref(struct edge_gen *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

/* Drop a reference (any thread); the main thread frees at zero. */
static inline void edge_gen_unref(struct edge_gen *g)
{
	atomic_fetch_sub_explicit(&g->refs, 1, memory_order_release);
}

static inline long edge_gen_refs(const struct edge_gen *g)
{
	return atomic_load_explicit(&g->refs, memory_order_acquire);
}

/* Start the health checks of every pool on the main loop. */
void edge_gen_start_checks(struct edge_gen *g, struct ev_loop *loop);
/* Retire (main thread): stop checks, release the listening sockets. */
void edge_gen_retire(struct edge_gen *g, struct edge_registry *reg);
/* Free a retired generation with no references left (main thread). */
void edge_gen_free(struct edge_gen *g, struct edge_registry *reg);

/* The listener named name, or NULL. */
struct edge_listener *edge_gen_listener(const struct edge_gen *g, const char *name);

#endif
