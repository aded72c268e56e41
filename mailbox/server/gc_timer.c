/*
 * mailbox/server/gc_timer.c -- periodic blob collection off the loop (see
 * gc_timer.h).
 *
 * One run at a time: `running` is only touched on the loop, so the
 * thread's state (tloop, tbs, pg and the result fields) is used by one
 * run after another, never by two at once; workpool_submit/the done
 * callback order the accesses (its mutex is the happens-before edge).
 * `stop` is the only field both sides touch concurrently, hence atomic.
 */
#include "mailbox/server/gc_timer.h"

#include "mailbox/server/metrics.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/blob_gc.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/workpool.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gc_timer {
	struct ev_loop *loop;
	const struct stores_config *cfg;
	struct loop_timer tick;
	struct workpool *wp;
	bool running; /* loop side: a run is submitted and its done not yet seen */
	atomic_bool stop;
	/* worker side, created on first use */
	struct ev_loop *tloop;
	struct blob_store *tbs;
	PGconn *pg;
	/* the current run's outcome, written by the worker, read in done */
	struct blob_gc_result res;
	int rc;
	double secs;
	char err[1024];
};

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* On the worker thread: (re)open what the run needs.  0 or -1 with err. */
static int worker_prepare(struct gc_timer *g)
{
	const char *why = NULL;

	if (g->tloop == NULL) {
		g->tloop = ev_loop_new(EVFLAG_AUTO);
		if (g->tloop == NULL) {
			snprintf(g->err, sizeof(g->err), "cannot create an event loop");
			return -1;
		}
	}
	if (g->tbs == NULL) {
		g->tbs = blob_store_new(g->tloop, &g->cfg->blob, &why);
		if (g->tbs == NULL) {
			snprintf(g->err, sizeof(g->err), "%s", why != NULL ? why : "blob store");
			return -1;
		}
	}
	if (g->pg != NULL && PQstatus(g->pg) != CONNECTION_OK) {
		PQfinish(g->pg);
		g->pg = NULL;
	}
	if (g->pg == NULL) {
		g->pg = pg_connect_blocking(&g->cfg->data, g->err, sizeof(g->err));
		if (g->pg == NULL)
			return -1;
	}
	return 0;
}

static void worker_run(void *arg)
{
	struct gc_timer *g = arg;
	const struct stores_blob_gc_config *c = &g->cfg->blob.gc;
	double t0 = mono_now();

	memset(&g->res, 0, sizeof(g->res));
	g->err[0] = '\0';
	g->rc = worker_prepare(g);
	if (g->rc == 0)
		g->rc = blob_gc_run_all(g->pg, g->tbs, c->grace_ms / 1000, (uint64_t)c->batch,
		                        &g->stop, &g->res, g->err, sizeof(g->err));
	g->secs = mono_now() - t0;
}

static void run_done(void *arg)
{
	struct gc_timer *g = arg;
	char q[1100];

	g->running = false;
	metrics_blob_gc(g->rc == 0, g->res.deleted, g->res.failed, g->res.bytes, g->secs);
	if (g->rc < 0)
		log_warn("msg=\"blob gc failed\" deleted=%" PRIu64 " error=%s", g->res.deleted,
		         log_quote(q, sizeof(q), g->err));
	else if (g->res.examined > 0)
		log_info("msg=\"blob gc\" examined=%" PRIu64 " deleted=%" PRIu64 " failed=%" PRIu64
		         " bytes=%" PRIu64 " seconds=%.3f",
		         g->res.examined, g->res.deleted, g->res.failed, g->res.bytes, g->secs);
	else
		log_debug("msg=\"blob gc: nothing to collect\" seconds=%.3f", g->secs);
}

static void on_tick(struct loop_timer *t)
{
	struct gc_timer *g = container_of(t, struct gc_timer, tick);

	if (g->running || atomic_load(&g->stop)) {
		log_debug("msg=\"blob gc still running: tick skipped\"");
		return;
	}
	g->running = true;
	workpool_submit(g->wp, worker_run, run_done, g);
}

struct gc_timer *gc_timer_new(struct ev_loop *loop, const struct stores_config *cfg)
{
	struct gc_timer *g;

	if (cfg->blob.gc.interval_ms == 0) {
		log_info("msg=\"blob gc disabled (stores.blob.gc.interval 0): run "
		         "'tailpost-mailbox gc'\"");
		return NULL;
	}
	g = xcalloc(1, sizeof(*g));
	g->loop = loop;
	g->cfg = cfg;
	atomic_init(&g->stop, false);
	g->wp = workpool_new(loop, 1);
	loop_timer_init(&g->tick, loop, on_tick);
	loop_timer_start(&g->tick, cfg->blob.gc.interval_ms, cfg->blob.gc.interval_ms);
	log_info("msg=\"blob gc scheduled\" interval_ms=%" PRIu64 " grace_ms=%" PRIu64
	         " batch=%" PRId64,
	         cfg->blob.gc.interval_ms, cfg->blob.gc.grace_ms, cfg->blob.gc.batch);
	return g;
}

void gc_timer_stop(struct gc_timer *g)
{
	if (g == NULL || atomic_load(&g->stop))
		return;
	atomic_store(&g->stop, true);
	loop_timer_stop(&g->tick);
}

void gc_timer_free(struct gc_timer **gp)
{
	struct gc_timer *g = *gp;

	*gp = NULL;
	if (g == NULL)
		return;
	gc_timer_stop(g);
	/* joins the worker: after this the thread's state is ours */
	workpool_free(&g->wp);
	blob_store_free(&g->tbs);
	if (g->tloop != NULL)
		ev_loop_destroy(g->tloop);
	if (g->pg != NULL)
		PQfinish(g->pg);
	free(g);
}
