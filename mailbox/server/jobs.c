/*
 * mailbox/server/jobs.c -- the blocking-work thread (see jobs.h).
 *
 * Two lists under one mutex: `todo` (filled by the loop, drained by the
 * thread) and `done` (filled by the thread, drained by the loop after an
 * ev_async wake-up).  A condition variable wakes the thread.
 */
#include "mailbox/server/jobs.h"

#include "mailbox/store/pg.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct job {
	struct job *next;
	jobs_work_fn *work;
	jobs_done_fn *done;
	void *arg;
};

struct jobs {
	struct ev_loop *loop;
	const struct stores_data_config *cfg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo, **todo_tail;
	struct job *done, **done_tail;
	bool stop;
	ev_async wake;
	PGconn *pg;
};

static void push(struct job ***tail, struct job *j)
{
	j->next = NULL;
	**tail = j;
	*tail = &j->next;
}

static struct job *pop(struct job **head, struct job ***tail)
{
	struct job *j = *head;

	if (j != NULL) {
		*head = j->next;
		if (*head == NULL)
			*tail = head;
	}
	return j;
}

static void *run(void *arg)
{
	struct jobs *js = arg;
	char err[512];

	pthread_mutex_lock(&js->mu);
	for (;;) {
		struct job *j;

		while (js->todo == NULL && !js->stop)
			pthread_cond_wait(&js->cv, &js->mu);
		if (js->stop)
			break;
		j = pop(&js->todo, &js->todo_tail);
		pthread_mutex_unlock(&js->mu);

		err[0] = '\0';
		if (js->pg != NULL && PQstatus(js->pg) != CONNECTION_OK) {
			PQfinish(js->pg);
			js->pg = NULL;
		}
		if (js->pg == NULL)
			js->pg = pg_connect_blocking(js->cfg, err, sizeof(err));
		j->work(js->pg, js->pg != NULL ? NULL : err, j->arg);

		pthread_mutex_lock(&js->mu);
		push(&js->done_tail, j);
		ev_async_send(js->loop, &js->wake);
	}
	pthread_mutex_unlock(&js->mu);
	return NULL;
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	struct jobs *js = container_of(w, struct jobs, wake);
	struct job *list, *j;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&js->mu);
	list = js->done;
	js->done = NULL;
	js->done_tail = &js->done;
	pthread_mutex_unlock(&js->mu);
	while ((j = list) != NULL) {
		list = j->next;
		j->done(j->arg, true);
		free(j);
	}
}

struct jobs *jobs_new(struct ev_loop *loop, const struct stores_data_config *cfg)
{
	struct jobs *js = xcalloc(1, sizeof(*js));
	int rc;

	js->loop = loop;
	js->cfg = cfg;
	js->todo_tail = &js->todo;
	js->done_tail = &js->done;
	pthread_mutex_init(&js->mu, NULL);
	pthread_cond_init(&js->cv, NULL);
	ev_async_init(&js->wake, on_wake);
	ev_async_start(loop, &js->wake);
	/* the async watcher alone must not keep the loop running */
	ev_unref(loop);
	rc = pthread_create(&js->thread, NULL, run, js);
	if (rc != 0)
		fatal("msg=\"cannot start the admin worker thread\" error=\"%s\"", strerror(rc));
	return js;
}

void jobs_submit(struct jobs *js, jobs_work_fn *work, jobs_done_fn *done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&js->mu);
	push(&js->todo_tail, j);
	pthread_cond_signal(&js->cv);
	pthread_mutex_unlock(&js->mu);
}

void jobs_free(struct jobs **jp)
{
	struct jobs *js = *jp;
	struct job *j;

	*jp = NULL;
	if (js == NULL)
		return;
	pthread_mutex_lock(&js->mu);
	js->stop = true;
	pthread_cond_signal(&js->cv);
	pthread_mutex_unlock(&js->mu);
	pthread_join(js->thread, NULL);
	/* completed ones first, in order, then the ones that never ran */
	while ((j = pop(&js->done, &js->done_tail)) != NULL) {
		j->done(j->arg, true);
		free(j);
	}
	while ((j = pop(&js->todo, &js->todo_tail)) != NULL) {
		j->done(j->arg, false);
		free(j);
	}
	ev_ref(js->loop);
	ev_async_stop(js->loop, &js->wake);
	if (js->pg != NULL)
		PQfinish(js->pg);
	pthread_mutex_destroy(&js->mu);
	pthread_cond_destroy(&js->cv);
	free(js);
}
