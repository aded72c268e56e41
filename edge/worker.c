/*
 * edge/worker.c -- worker threads: accepting, the mailbox, exit.
 *
 * A worker watches, for every listener of its current generation, its own
 * socket of each bind address (lsock->fds[worker id]).  Switching
 * generations stops every accept watcher and starts the new set; sockets
 * that both generations share keep their backlog, so a reload loses no
 * pending connection.  After the switch the worker acknowledges, and only
 * then may the main thread close sockets the new generation dropped.
 *
 * accept(2) runs in a bounded loop per wake-up (ACCEPT_BATCH) so one busy
 * listener cannot starve the others or the connections.  Running out of
 * file descriptors pauses accepting for a moment instead of spinning on a
 * listener that stays readable.
 */
#include "edge/worker.h"

#include "edge/conn.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE 0.1
/* Enough for a whole TLS record (2^14 + 5) when peeking for the SNI. */
#define SCRATCH_SIZE (16384 + 5 + 27)

struct edge_acceptor {
	ev_io io;
	struct edge_worker *w;
	struct edge_listener *l;
	struct edge_lsock *ls;
};

static void acceptors_stop(struct edge_worker *w)
{
	for (size_t i = 0; i < w->nacc; i++)
		ev_io_stop(w->loop, &w->acc[i].io);
	free(w->acc);
	w->acc = NULL;
	w->nacc = 0;
	ev_timer_stop(w->loop, &w->accept_pause);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents);

static void acceptors_start(struct edge_worker *w)
{
	struct edge_gen *g = w->gen;
	size_t n = 0, k = 0;

	acceptors_stop(w);
	for (size_t i = 0; i < g->n; i++)
		n += g->l[i].socks != NULL ? g->l[i].nsocks : 0;
	w->acc = n > 0 ? xcalloc(n, sizeof(*w->acc)) : NULL;
	for (size_t i = 0; i < g->n; i++) {
		struct edge_listener *l = &g->l[i];
		for (size_t j = 0; l->socks != NULL && j < l->nsocks; j++) {
			struct edge_acceptor *a = &w->acc[k++];
			int fd = l->socks[j]->fds[w->id];

			a->w = w;
			a->l = l;
			a->ls = l->socks[j];
			ev_io_init(&a->io, accept_cb, fd, EV_READ);
			if (fd >= 0)
				ev_io_start(w->loop, &a->io);
		}
	}
	w->nacc = k;
}

static void accept_pause_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct edge_worker *w = container_of(t, struct edge_worker, accept_pause);

	(void)loop;
	(void)revents;
	for (size_t i = 0; w->accepting && i < w->nacc; i++)
		if (w->acc[i].io.fd >= 0)
			ev_io_start(w->loop, &w->acc[i].io);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct edge_acceptor *a = container_of(io, struct edge_acceptor, io);
	struct edge_worker *w = a->w;

	(void)revents;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct net_addr peer;
		int fd = loop_accept(io->fd, &peer);

		if (fd >= 0) {
			edge_conn_accept(w, a->l, a->ls, fd, &peer);
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			log_warn("msg=accept.paused worker=%d listener=%s error=\"%s\" pause_ms=%d",
			         w->id, a->l->conf->name, strerror(errno),
			         (int)(ACCEPT_PAUSE * 1000));
			for (size_t k = 0; k < w->nacc; k++)
				ev_io_stop(loop, &w->acc[k].io);
			ev_timer_stop(loop, &w->accept_pause);
			ev_timer_set(&w->accept_pause, ACCEPT_PAUSE, 0.0);
			ev_timer_start(loop, &w->accept_pause);
			return;
		}
		log_error("msg=accept.failed worker=%d listener=%s error=\"%s\"", w->id,
		          a->l->conf->name, strerror(errno));
		return;
	}
}

static void ack(struct edge_worker *w)
{
	ev_async_send(w->main_loop, w->main_ack);
}

static void wake_cb(struct ev_loop *loop, ev_async *as, int revents)
{
	struct edge_worker *w = container_of(as, struct edge_worker, wake);
	struct edge_gen *gen;
	bool stop, ex;

	(void)revents;
	pthread_mutex_lock(&w->mu);
	gen = w->inbox_gen;
	w->inbox_gen = NULL;
	stop = w->inbox_stop_accept;
	ex = w->inbox_exit;
	pthread_mutex_unlock(&w->mu);

	if (gen != NULL) {
		struct edge_gen *old = w->gen;

		acceptors_stop(w);
		w->gen = gen;
		if (w->accepting)
			acceptors_start(w);
		if (old != NULL)
			edge_gen_unref(old);
		atomic_store(&w->acked_gen, gen->id);
		ack(w);
	}
	if (stop && w->accepting) {
		w->accepting = false;
		acceptors_stop(w);
		atomic_store(&w->acked_stop, true);
		ack(w);
	}
	if (ex) {
		acceptors_stop(w);
		edge_conn_close_all(w);
		ev_break(loop, EVBREAK_ALL);
	}
}

static void *worker_main(void *arg)
{
	struct edge_worker *w = arg;

	ev_run(w->loop, 0);
	return NULL;
}

int edge_worker_start(struct edge_worker *w, int id, struct edge_gen *gen, bool splice,
                      size_t pipe_size, size_t pipe_pool, struct ev_loop *main_loop,
                      ev_async *main_ack)
{
	int err;

	w->id = id;
	w->loop = ev_loop_new(EVBACKEND_EPOLL);
	if (w->loop == NULL) {
		errno = ENOMEM;
		return -1;
	}
	pthread_mutex_init(&w->mu, NULL);
	ev_async_init(&w->wake, wake_cb);
	ev_async_start(w->loop, &w->wake);
	ev_timer_init(&w->accept_pause, accept_pause_cb, ACCEPT_PAUSE, 0.0);
	atomic_init(&w->acked_gen, gen->id);
	atomic_init(&w->acked_stop, false);
	atomic_init(&w->nconns, 0);
	w->main_loop = main_loop;
	w->main_ack = main_ack;
	w->splice = splice;
	edge_pipes_init(&w->pipes, pipe_pool, pipe_size);
	w->scratch_size = SCRATCH_SIZE;
	w->scratch = xmalloc(w->scratch_size);
	if (getrandom(&w->id_base, sizeof(w->id_base), GRND_NONBLOCK) != sizeof(w->id_base))
		w->id_base = (uint64_t)(uintptr_t)w ^ (uint64_t)id;
	edge_gen_ref(gen);
	w->gen = gen;
	w->accepting = true;
	acceptors_start(w);
	err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err != 0) {
		errno = err;
		return -1;
	}
	w->started = true;
	return 0;
}

static void post(struct edge_worker *w, struct edge_gen *gen, bool stop, bool ex)
{
	pthread_mutex_lock(&w->mu);
	if (gen != NULL) {
		edge_gen_ref(gen);
		if (w->inbox_gen != NULL)
			edge_gen_unref(w->inbox_gen);
		w->inbox_gen = gen;
	}
	w->inbox_stop_accept |= stop;
	w->inbox_exit |= ex;
	pthread_mutex_unlock(&w->mu);
	ev_async_send(w->loop, &w->wake);
}

void edge_worker_post_gen(struct edge_worker *w, struct edge_gen *gen)
{
	post(w, gen, false, false);
}

void edge_worker_post_stop_accept(struct edge_worker *w)
{
	post(w, NULL, true, false);
}

void edge_worker_post_exit(struct edge_worker *w)
{
	post(w, NULL, false, true);
}

void edge_worker_join(struct edge_worker *w)
{
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	if (w->loop == NULL)
		return;
	acceptors_stop(w);
	if (w->inbox_gen != NULL)
		edge_gen_unref(w->inbox_gen);
	w->inbox_gen = NULL;
	if (w->gen != NULL)
		edge_gen_unref(w->gen);
	w->gen = NULL;
	edge_pipes_free(&w->pipes);
	ev_async_stop(w->loop, &w->wake);
	ev_loop_destroy(w->loop);
	w->loop = NULL;
	free(w->scratch);
	w->scratch = NULL;
	pthread_mutex_destroy(&w->mu);
}
