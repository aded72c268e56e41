/*
 * mailbox/store/workpool.h -- a few pthreads for blocking work, reporting
 * back to a libev loop.
 *
 * The loop never blocks (house style), but some work must: fsync(2) on
 * the fs blob store, password hashing.  A job's fn runs on a worker
 * thread; its done runs afterwards on the loop, delivered through one
 * ev_async.  Jobs run in submission order per pool, up to nthreads at a
 * time.  Worker threads block every signal, so signals keep reaching the
 * loop's thread.  The pool keeps the loop alive (ev_run does not return)
 * only while jobs are outstanding.
 */
#ifndef MAILBOX_STORE_WORKPOOL_H
#define MAILBOX_STORE_WORKPOOL_H

#include <ev.h>

struct workpool;

typedef void workpool_fn(void *arg);      /* on a worker thread */
typedef void workpool_done_fn(void *arg); /* on the loop, after fn */

/* nthreads (1..64) workers for loop; aborts if threads cannot start. */
struct workpool *workpool_new(struct ev_loop *loop, int nthreads);

/*
 * Stop: jobs not yet started are dropped, running ones finish; no done
 * callback runs any more (owners free their job state themselves).  Joins
 * the threads.  NULL-safe; sets *wp to NULL.  Not from a done callback.
 */
void workpool_free(struct workpool **wp);

/* Queue fn(arg), then done(arg) on the loop.  Never fails. */
void workpool_submit(struct workpool *wp, workpool_fn *fn, workpool_done_fn *done, void *arg);

#endif
