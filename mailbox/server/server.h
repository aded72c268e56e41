/*
 * mailbox/server/server.h -- the daemon: configuration, stores, listeners,
 * signals and the life cycle of `tailpost-mailbox serve`.
 *
 * Start-up (server_run):
 *   1. load and validate the config (errors with FILE:LINE:COL, exit 2);
 *   2. check every store loudly: Postgres reachable and its schema at the
 *      version this build needs, the blob store, the memory store; a
 *      failure names the store, the endpoint and the reason (exit 1);
 *   3. bind every listener (bind guard already enforced by the config);
 *   4. drop privileges, write the pidfile, start the pools;
 *   5. READY=1 to systemd, serve.
 * SIGHUP: RELOADING=1; re-read the file; an invalid file is logged with
 * all its errors and the running config stays; otherwise listeners are
 * added, removed or rebound (listener_set_apply), certificates re-read,
 * log level and abuse policy replaced; READY=1.  Stores are not switched
 * at run time (a change is logged: restart to apply).
 * SIGTERM/SIGINT: STOPPING=1; listening sockets close; sessions get
 * on_shutdown and shutdown_grace to finish; then the rest is closed.
 *
 * The accessors below are what protocols use (through conn_server()).
 */
#ifndef MAILBOX_SERVER_SERVER_H
#define MAILBOX_SERVER_SERVER_H

#include "mailbox/config.h"

#include <ev.h>
#include <stdbool.h>

struct blob_store;
struct conn_proto;
struct jobs;
struct mem_store;
struct outbound_queue;
struct password_pool;
struct pg_pool;
struct server;

/*
 * Run the daemon with the config file at path until SIGTERM.  Returns the
 * process exit status: 0 after a clean drain, 1 for a start-up failure
 * (store, bind, privileges), 2 for an invalid config.
 */
int server_run(const char *path);

struct ev_loop *server_loop(const struct server *s);
/* The running configuration (replaced by a reload: do not keep pointers
 * into it across callbacks). */
const struct mailbox_config *server_config(const struct server *s);
struct pg_pool *server_pg(const struct server *s);
struct blob_store *server_blob(const struct server *s);
struct mem_store *server_mem(const struct server *s);
/* The outbound queue engine (for its counters), or NULL before it started. */
struct outbound_queue *server_outbound(const struct server *s);
struct password_pool *server_passwords(const struct server *s);
/* The blocking-work thread for the admin API (directory functions). */
struct jobs *server_jobs(const struct server *s);
/* True once SIGTERM started the drain. */
bool server_draining(const struct server *s);
/* The recovery admin from TAILPOST_RECOVERY_ADMIN, if enabled: *user_r
 * and *pass_r point at the daemon's copies.  False when not configured. */
bool server_recovery_admin(const struct server *s, const char **user_r, const char **pass_r);
/* Every configured store answers (for /readyz); *why_r names the first
 * that does not ("data store postgres://...: down"). */
bool server_ready(struct server *s, const char **why_r);

/* The protocol serving a role, or NULL if none is built in yet. */
const struct conn_proto *server_proto_for_role(int role);

#endif
