/*
 * mailbox/server/jobs.h -- a worker thread for blocking work off the loop.
 *
 * The directory's administration functions (mailbox/directory/
 * directory.h) and password hashing block by design: they are the CLI's
 * tools.  The admin API reuses them instead of duplicating their SQL, by
 * running each request on this thread, which owns one Postgres
 * connection of its own (opened on first use, re-opened when it broke).
 * Admin traffic is rare and small, so one thread, a FIFO and one
 * connection are enough, and requests are serialised (no two admin
 * changes race each other within an instance).
 *
 * work() runs on the thread and must touch nothing of the loop's; done()
 * runs on the loop afterwards.  The argument belongs to the caller
 * throughout; it must stay valid until done() ran.
 */
#ifndef MAILBOX_SERVER_JOBS_H
#define MAILBOX_SERVER_JOBS_H

#include "mailbox/store/config.h"

#include <ev.h>
#include <postgresql/libpq-fe.h>
#include <stdbool.h>

struct jobs;

/* On the worker thread: pg is the thread's connection, or NULL with
 * pg_err saying why it could not be opened (named as pg_check does). */
typedef void jobs_work_fn(PGconn *pg, const char *pg_err, void *arg);
/* On the loop, after work() (ran) or instead of it at shutdown (!ran). */
typedef void jobs_done_fn(void *arg, bool ran);

/* A worker for loop using cfg (which must outlive it). */
struct jobs *jobs_new(struct ev_loop *loop, const struct stores_data_config *cfg);
/* Queue work; done() always runs exactly once, from the loop. */
void jobs_submit(struct jobs *j, jobs_work_fn *work, jobs_done_fn *done, void *arg);
/* Finish the running job, call done(arg, false) for the queued ones, stop
 * the thread, close the connection.  NULL-safe; sets *j to NULL. */
void jobs_free(struct jobs **j);

#endif
