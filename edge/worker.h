/*
 * edge/worker.h -- one event loop in one thread.
 *
 * Workers are threads, not processes: they share the per-source limit
 * tables (SO_REUSEPORT spreads one client over every worker, so a per-source
 * cap must be global), the counters the admin endpoint reads, and the
 * configuration generations, so a reload is parsed, resolved and bound once
 * and handed over by pointer; and the whole edge is one process with one
 * RSS.  Each worker owns its loop, its listening sockets (one per bind
 * address, SO_REUSEPORT), its connections, its pipe pool and a scratch
 * buffer; nothing on the data path takes a lock except the per-source
 * table when per-source limits are configured.
 *
 * The main thread talks to a worker through a small mailbox (mutex +
 * ev_async): switch to a new generation, stop accepting, exit.  The worker
 * acknowledges through an ev_async on the main loop.
 */
#ifndef EDGE_WORKER_H
#define EDGE_WORKER_H

#include "edge/gen.h"
#include "edge/pipes.h"

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct edge_conn;
struct edge_acceptor;

struct edge_worker {
	int id;
	pthread_t thread;
	bool started;
	struct ev_loop *loop;
	ev_async wake;
	/* mailbox, guarded by mu */
	pthread_mutex_t mu;
	struct edge_gen *inbox_gen; /* a reference handed over */
	bool inbox_stop_accept;
	bool inbox_exit;
	/* read by the main thread */
	atomic_uint_fast64_t acked_gen;
	atomic_bool acked_stop;
	atomic_int_fast64_t nconns;
	/* the main loop's acknowledgement channel */
	struct ev_loop *main_loop;
	ev_async *main_ack;
	/* owned by the worker thread */
	struct edge_gen *gen;
	struct edge_acceptor *acc;
	size_t nacc;
	bool accepting;
	ev_timer accept_pause;   /* after EMFILE: stop accepting for a moment */
	struct edge_conn *conns; /* doubly linked list */
	struct edge_pipes pipes;
	bool splice;
	uint8_t *scratch; /* read/write fallback and SNI peeks */
	size_t scratch_size;
	uint64_t id_base; /* connection ids: id_base + counter */
	uint64_t seq;
};

/*
 * Prepare worker id with its own loop and start its thread, serving gen
 * (the worker takes its own reference).  Signals must be blocked in the
 * calling thread (the worker inherits the mask).  0, or -1 with errno.
 */
int edge_worker_start(struct edge_worker *w, int id, struct edge_gen *gen, bool splice,
                      size_t pipe_size, size_t pipe_pool, struct ev_loop *main_loop,
                      ev_async *main_ack);
/* Hand over a new generation (a reference is taken for the worker). */
void edge_worker_post_gen(struct edge_worker *w, struct edge_gen *gen);
/* Stop accepting: close nothing, just stop watching (drain). */
void edge_worker_post_stop_accept(struct edge_worker *w);
/* Close every connection (reason shutdown) and end the thread. */
void edge_worker_post_exit(struct edge_worker *w);
/* Wait for the thread and free the worker's resources. */
void edge_worker_join(struct edge_worker *w);

#endif
