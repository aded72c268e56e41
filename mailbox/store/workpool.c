/*
 * mailbox/store/workpool.c -- worker threads with an ev_async completion
 * (see workpool.h).
 *
 * One mutex guards two FIFO lists: jobs waiting for a worker, and jobs
 * finished and waiting for the loop.  Workers sleep on a condition
 * variable; a finished job is appended to the done list and the loop is
 * woken with ev_async_send (async-signal and thread safe by libev's
 * contract).  The async callback takes the whole done list at once under
 * the mutex and runs the done callbacks without holding it, so a done
 * callback may submit new work.
 */
#include "mailbox/store/workpool.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct wp_job {
	struct wp_job *next;
	workpool_fn *fn;
	workpool_done_fn *done;
	void *arg;
};

struct wp_list {
	struct wp_job *head, *tail;
};

struct workpool {
	struct ev_loop *loop;
	ev_async async;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct wp_list todo, done;
	pthread_t *threads;
	int nthreads;
	bool stop;
	bool in_cb;           /* async_cb is running done callbacks */
	bool freed;           /* workpool_free was called from a done callback */
	unsigned outstanding; /* submitted, done callback not yet run (loop thread only) */
};

static void list_add(struct wp_list *l, struct wp_job *j)
{
	j->next = NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static void *worker(void *arg)
{
	struct workpool *wp = arg;

	pthread_mutex_lock(&wp->mu);
	for (;;) {
		struct wp_job *j;

		while (!wp->stop && wp->todo.head == NULL)
			pthread_cond_wait(&wp->cv, &wp->mu);
		if (wp->stop)
			break;
		j = wp->todo.head;
		wp->todo.head = j->next;
		if (wp->todo.head == NULL)
			wp->todo.tail = NULL;
		pthread_mutex_unlock(&wp->mu);
		j->fn(j->arg);
		pthread_mutex_lock(&wp->mu);
		list_add(&wp->done, j);
		ev_async_send(wp->loop, &wp->async);
	}
	pthread_mutex_unlock(&wp->mu);
	return NULL;
}

static void free_jobs(struct wp_job *j)
{
	while (j != NULL) {
		struct wp_job *next = j->next;
		free(j);
		j = next;
	}
}

static void pool_release(struct workpool *wp)
{
	if (wp->outstanding > 0)
		ev_unref(wp->loop);
	ev_ref(wp->loop);
	ev_async_stop(wp->loop, &wp->async);
	pthread_cond_destroy(&wp->cv);
	pthread_mutex_destroy(&wp->mu);
	free(wp->threads);
	free(wp);
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct workpool *wp = container_of(w, struct workpool, async);
	struct wp_job *j;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&wp->mu);
	j = wp->done.head;
	wp->done.head = wp->done.tail = NULL;
	pthread_mutex_unlock(&wp->mu);
	wp->in_cb = true;
	while (j != NULL) {
		struct wp_job *next = j->next;
		workpool_done_fn *done = j->done;
		void *arg = j->arg;

		free(j);
		if (--wp->outstanding == 0)
			ev_unref(wp->loop);
		done(arg);
		j = next;
		if (wp->freed) {
			/* the owner freed the pool from its callback: the rest
			 * of the finished jobs belong to nobody now */
			free_jobs(j);
			pool_release(wp);
			return;
		}
	}
	wp->in_cb = false;
}

struct workpool *workpool_new(struct ev_loop *loop, int nthreads)
{
	struct workpool *wp = xcalloc(1, sizeof(*wp));
	sigset_t all, old;

	ASSERT(nthreads >= 1 && nthreads <= 64);
	wp->loop = loop;
	pthread_mutex_init(&wp->mu, NULL);
	pthread_cond_init(&wp->cv, NULL);
	ev_async_init(&wp->async, async_cb);
	ev_async_start(loop, &wp->async);
	/* idle workers must not keep ev_run() alive */
	ev_unref(loop);
	wp->threads = xcalloc((size_t)nthreads, sizeof(pthread_t));
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < nthreads; i++) {
		int e = pthread_create(&wp->threads[i], NULL, worker, wp);
		if (e != 0)
			fatal("msg=\"cannot start worker thread\" error=\"%s\"", strerror(e));
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	wp->nthreads = nthreads;
	return wp;
}

void workpool_free(struct workpool **wpp)
{
	struct workpool *wp;

	if (wpp == NULL || *wpp == NULL)
		return;
	wp = *wpp;
	*wpp = NULL;
	pthread_mutex_lock(&wp->mu);
	wp->stop = true;
	pthread_cond_broadcast(&wp->cv);
	pthread_mutex_unlock(&wp->mu);
	for (int i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);
	wp->nthreads = 0;
	free_jobs(wp->todo.head);
	free_jobs(wp->done.head);
	wp->todo.head = wp->todo.tail = wp->done.head = wp->done.tail = NULL;
	if (wp->in_cb) {
		/* called from a done callback: async_cb releases it */
		wp->freed = true;
		return;
	}
	pool_release(wp);
}

void workpool_submit(struct workpool *wp, workpool_fn *fn, workpool_done_fn *done, void *arg)
{
	struct wp_job *j = xcalloc(1, sizeof(*j));

	j->fn = fn;
	j->done = done;
	j->arg = arg;
	if (wp->outstanding++ == 0)
		ev_ref(wp->loop);
	pthread_mutex_lock(&wp->mu);
	list_add(&wp->todo, j);
	pthread_cond_signal(&wp->cv);
	pthread_mutex_unlock(&wp->mu);
}
