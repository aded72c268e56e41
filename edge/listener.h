/*
 * edge/listener.h -- listening sockets and what outlives a reload.
 *
 * Three lifetimes meet here:
 *  - struct edge_lstate: per listener *name*, from the first configuration
 *    that has it until no generation refers to it: counters, the active
 *    connection count (max_connections) and the per-source table.  A reload
 *    that keeps a listener keeps its state, so limits and metrics go on.
 *  - struct edge_lsock: per bind *address*: one SO_REUSEPORT socket per
 *    worker.  Bound once; a reload that keeps the address keeps the
 *    sockets (no connection in a backlog is lost); one that drops it closes
 *    them once every worker has stopped watching them.
 *  - struct edge_listener: one listener in one configuration generation
 *    (edge/gen.h): its config, lsocks, access lists and upstream pool.
 * The registry owns the first two and is only touched by the main thread.
 */
#ifndef EDGE_LISTENER_H
#define EDGE_LISTENER_H

#include "edge/access.h"
#include "edge/config.h"
#include "edge/limits.h"
#include "edge/metrics.h"
#include "edge/upstream.h"
#include "shared/net.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct edge_lstate {
	char *name;
	struct edge_lmetrics m;
	atomic_int_fast64_t active; /* connections counted against max_connections */
	struct edge_limits *limits;
	int users; /* generations referring to it (main thread) */
	struct edge_lstate *next;
};

struct edge_lsock {
	struct net_addr addr;
	char name[NET_ADDRSTRLEN];
	bool wildcard; /* 0.0.0.0 or ::: the local address comes from getsockname */
	int *fds;      /* one per worker */
	int nfds;
	int users; /* generations referring to it (main thread) */
	struct edge_lsock *next;
};

struct edge_registry {
	struct edge_lstate *states;
	struct edge_lsock *socks;
	int nworkers;
	int backlog;
};

struct edge_gen;

struct edge_listener {
	const struct edge_listener_conf *conf; /* inside gen->cfg */
	struct edge_lstate *st;
	struct edge_lsock **socks; /* NULL once the generation is retired */
	size_t nsocks;
	struct edge_access access;
	struct edge_pool *pool;
	struct edge_gen *gen;
	bool limited; /* any per-source limit configured */
};

void edge_registry_init(struct edge_registry *r, int nworkers, int backlog);
/* Close every socket and free every state (at exit). */
void edge_registry_free(struct edge_registry *r);

/* The state for name, created if new; its users count is raised. */
struct edge_lstate *edge_lstate_get(struct edge_registry *r, const char *name);
/* Lower the users count; free the state when it reaches zero. */
void edge_lstate_put(struct edge_registry *r, struct edge_lstate *st);

/*
 * The sockets for address spec ("ip:port"), bound now (one per worker) if
 * not yet; users count raised.  NULL with *errmsg_r (owned by the caller)
 * if binding fails; nothing is left bound then.
 */
struct edge_lsock *edge_lsock_get(struct edge_registry *r, const char *spec, char **errmsg_r);
/* Lower the users count; close the sockets when it reaches zero. */
void edge_lsock_put(struct edge_registry *r, struct edge_lsock *ls);
/* Close all listening sockets now (drain on SIGTERM); the objects stay. */
void edge_registry_close_all(struct edge_registry *r);

#endif
