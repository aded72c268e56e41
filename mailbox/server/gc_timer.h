/*
 * mailbox/server/gc_timer.h -- `serve` collects unreferenced blobs
 * periodically (mailbox/store/blob_gc.h) without blocking the loop.
 *
 * Every stores.blob.gc.interval a run is handed to a worker thread of its
 * own (mailbox/store/workpool.h) that owns a private libev loop, a blob
 * store on that loop and a Postgres connection, all created on first use
 * and kept between runs (a broken connection is re-opened).  The loop
 * only starts runs, never waits for one: a tick that finds a run still
 * going is skipped.  Several instances may collect at the same time: the
 * collector takes its rows FOR UPDATE SKIP LOCKED, so they split the work.
 * Outcomes go to the log (one line per run that did something or failed)
 * and to /metrics (metrics_blob_gc).
 */
#ifndef MAILBOX_SERVER_GC_TIMER_H
#define MAILBOX_SERVER_GC_TIMER_H

#include "mailbox/store/config.h"

#include <ev.h>

struct gc_timer;

/*
 * Start collecting on loop as cfg->blob.gc says (cfg must outlive the
 * timer).  Returns NULL (and starts nothing) when the interval is 0.
 */
struct gc_timer *gc_timer_new(struct ev_loop *loop, const struct stores_config *cfg);

/* No new runs (drain); a running one is asked to stop after its current
 * object.  NULL-safe. */
void gc_timer_stop(struct gc_timer *g);

/* Stop, wait for a running collection to end (it stops after the object
 * in flight, committing what it did), free the thread's store, loop and
 * connection.  NULL-safe; sets *g to NULL. */
void gc_timer_free(struct gc_timer **g);

#endif
