/*
 * mailbox/imap/server.c -- the glue between a connection (conn.h), the
 * IMAP session state machine (session.h) and the Postgres store
 * (store_pg.h).
 *
 * The session does no I/O; this file moves its output into the
 * connection, offers it input, and runs what the session cannot: timers,
 * STARTTLS through the connection, and the abuse report of failed
 * logins.  While a store request is outstanding, reading is paused
 * (conn_pause_read) so pipelined commands wait in the connection's input
 * buffer and responses stay in command order; every completion "kicks"
 * the glue, which writes the output and resumes reading.
 *
 * Output: the session may queue up to IMAP_OUT_HIGH and produce a large
 * FETCH in pieces; we move it into the connection only while the
 * connection is below its high-water mark, and continue from
 * on_writable, so memory stays bounded by both marks.
 *
 * STARTTLS (RFC 3501 6.2.1, RFC 3207 6 for the injection rule): the
 * session's ops.starttls only sets a flag; after imap_session_input()
 * returns we flush "OK Begin TLS" and call conn_starttls(), which throws
 * away every input byte buffered after the command.
 *
 * Timers: a tick every IMAP_SERVER_TICK_MS sends the RFC 2177 keepalive
 * during IDLE; the connection's idle timeout is raised to
 * IMAP_SERVER_IDLE_MS (RFC 3501 5.4: autologout no sooner than 30
 * minutes) for the whole session.
 *
 * The imap: config section (mailbox/config.h) is read at every new
 * connection, so a reload applies to new sessions:
 *   - master_users/master_separator go to the session (LOGIN name split)
 *     and the store (who may act for whom);
 *   - max_connections_per_account: one process-wide table of logged-in
 *     sessions per account (account_conns.h); per instance, not across
 *     instances;
 *   - command_rate/command_burst: the session's token bucket; when it is
 *     empty the session asks to be throttled and we stop reading until
 *     the throttle timer fires (commands are delayed, never refused, so
 *     IDLE and well-behaved clients see no difference);
 *   - blob_cache_size: one process-wide body cache (blob_cache.h); its
 *     lookups run from a zero-delay timer (imap_pg_deferred).
 */
#include "mailbox/imap/server.h"

#include "mailbox/config.h"
#include "mailbox/imap/account_conns.h"
#include "mailbox/imap/blob_cache.h"
#include "mailbox/imap/session.h"
#include "mailbox/imap/store_pg.h"
#include "mailbox/server/abuse.h"
#include "mailbox/server/listener.h"
#include "mailbox/server/server.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <ev.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Octets moved from the session into the connection per write call. */
#define PUMP_CHUNK (64 * 1024)

struct imap_conn {
	struct imap_pg pg; /* first: the session's ctx points at both */
	struct conn *c;
	struct imap_session *s;
	struct imap_store_ops ops;
	struct loop_timer tick;
	struct loop_timer throttle; /* the command rate limit's pause */
	struct loop_timer defer;    /* imap_pg_deferred() from the loop */
	bool want_tls;
	bool in_input;
	bool throttled;
};

/* Process-wide, on the loop thread; reachable until exit. */
static struct imap_account_conns *account_conns;
static struct imap_blob_cache *blob_cache;

void imap_server_cache_stats(struct imap_blob_cache_stats *out)
{
	if (blob_cache != NULL)
		imap_blob_cache_stats(blob_cache, out);
	else
		memset(out, 0, sizeof(*out));
}

static struct imap_conn *from_pg(struct imap_pg *p)
{
	return (struct imap_conn *)(void *)p;
}

/* Move output into the connection and let the session continue a large
 * response; close once the session is done and everything is queued. */
static void pump(struct imap_conn *ic)
{
	struct buf *out = imap_session_outbuf(ic->s);

	for (int round = 0; round < 1024; round++) {
		while (buf_len(out) > 0 && !conn_out_high(ic->c)) {
			size_t n = buf_len(out) < PUMP_CHUNK ? buf_len(out) : PUMP_CHUNK;
			if (conn_write(ic->c, buf_ptr(out), n) < 0)
				return;
			buf_consume(out, n);
		}
		if (buf_len(out) > 0)
			break; /* continued from on_writable */
		imap_session_writable(ic->s);
		if (buf_len(out) == 0)
			break;
	}
	if (imap_session_closing(ic->s) && buf_len(out) == 0)
		conn_close(ic->c, CONN_CLOSE_DONE);
}

static void settle(struct imap_conn *ic)
{
	pump(ic);
	if (!ic->in_input && !ic->throttled && !imap_session_pending(ic->s) &&
	    !imap_session_tls_wait(ic->s))
		conn_pause_read(ic->c, false);
}

static void kick(struct imap_pg *p)
{
	settle(from_pg(p));
}

static void on_tick(struct loop_timer *t)
{
	struct imap_conn *ic =
	        (struct imap_conn *)(void *)((char *)t - offsetof(struct imap_conn, tick));

	if (imap_session_idling(ic->s)) {
		imap_session_idle_tick(ic->s);
		pump(ic);
	}
}

static void on_throttle_end(struct loop_timer *t)
{
	struct imap_conn *ic =
	        (struct imap_conn *)(void *)((char *)t - offsetof(struct imap_conn, throttle));

	ic->throttled = false;
	settle(ic);
}

static void on_defer(struct loop_timer *t)
{
	struct imap_conn *ic =
	        (struct imap_conn *)(void *)((char *)t - offsetof(struct imap_conn, defer));

	imap_pg_deferred(&ic->pg);
}

static void defer(struct imap_pg *p)
{
	loop_timer_start(&from_pg(p)->defer, 0, 0);
}

static void on_auth(struct imap_pg *p, enum imap_auth_result r, const char *login,
                    const char *reason)
{
	struct imap_conn *ic = from_pg(p);

	if (r == IMAP_AUTH_OK && p->master != NULL)
		log_info("msg=\"imap login\" cid=%s listener=%s client=%s result=ok account=%s "
		         "master=%s",
		         conn_id(ic->c), conn_listener_name(ic->c), conn_client_ip(ic->c), login,
		         p->master);
	else if (r == IMAP_AUTH_OK)
		log_info("msg=\"imap login\" cid=%s listener=%s client=%s result=ok account=%s",
		         conn_id(ic->c), conn_listener_name(ic->c), conn_client_ip(ic->c), login);
	else if (r == IMAP_AUTH_LIMIT)
		log_info("msg=\"imap login\" cid=%s listener=%s client=%s result=limit account=%s "
		         "reason=\"%s\"",
		         conn_id(ic->c), conn_listener_name(ic->c), conn_client_ip(ic->c),
		         login != NULL ? login : "", reason != NULL ? reason : "");
	else
		log_info("msg=\"imap login\" cid=%s listener=%s client=%s result=%s reason=\"%s\"",
		         conn_id(ic->c), conn_listener_name(ic->c), conn_client_ip(ic->c),
		         r == IMAP_AUTH_FAIL ? "fail" : "tempfail", reason != NULL ? reason : "");
}

/* --- the glue's own store requests --------------------------------------- */

static int op_starttls(void *ctx)
{
	struct imap_conn *ic = ctx;

	if (!conn_starttls_available(ic->c) || conn_tls_active(ic->c, NULL))
		return -1;
	ic->want_tls = true;
	return 0;
}

static void op_abuse(void *ctx, enum imap_abuse kind)
{
	struct imap_conn *ic = ctx;

	if (kind == IMAP_ABUSE_AUTH_FAILED)
		abuse_auth_failed(conn_server(ic->c), conn_listener_name(ic->c), conn_client(ic->c),
		                  conn_no_client(ic->c));
	else if (kind == IMAP_ABUSE_RATE)
		log_info("msg=\"imap command rate limit\" cid=%s listener=%s client=%s account=%s",
		         conn_id(ic->c), conn_listener_name(ic->c), conn_client_ip(ic->c),
		         imap_session_user(ic->s) != NULL ? imap_session_user(ic->s) : "");
}

static uint64_t op_now_ms(void *ctx)
{
	struct imap_conn *ic = ctx;

	return (uint64_t)(ev_now(server_loop(conn_server(ic->c))) * 1000.0);
}

/* The bucket is empty: read nothing more until ms passed. */
static void op_throttle(void *ctx, uint64_t ms)
{
	struct imap_conn *ic = ctx;

	ic->throttled = true;
	conn_pause_read(ic->c, true);
	loop_timer_start(&ic->throttle, ms, 0);
}

/* --- connection callbacks --------------------------------------------------- */

static int imap_open(struct conn *c)
{
	struct server *srv = conn_server(c);
	struct imap_conn *ic = xcalloc(1, sizeof(*ic));
	struct imap_session_config cfg = {0};
	const struct mailbox_imap_conf *ik = &server_config(srv)->imap;

	imap_pg_init(&ic->pg, server_pg(srv), server_blob(srv), server_mem(srv),
	             server_passwords(srv));
	ic->pg.kick = kick;
	ic->pg.on_auth = on_auth;
	ic->c = c;
	if (account_conns == NULL)
		account_conns = imap_account_conns_new();
	ic->pg.conns = account_conns;
	ic->pg.max_per_account = (unsigned)ik->max_connections_per_account;
	ic->pg.sync_interval = (double)ik->sync_interval_ms / 1000.0;
	/* copied: a reload frees the config under running sessions */
	if (ik->master_users.n > 0) {
		ic->pg.masters = xcalloc(ik->master_users.n, sizeof(char *));
		for (size_t i = 0; i < ik->master_users.n; i++)
			ic->pg.masters[i] = xstrdup(ik->master_users.v[i]);
		ic->pg.nmasters = ik->master_users.n;
	}
	if (ik->blob_cache_size > 0) {
		if (blob_cache == NULL)
			blob_cache = imap_blob_cache_new(ik->blob_cache_size);
		imap_blob_cache_set_limit(blob_cache, ik->blob_cache_size);
		ic->pg.cache = blob_cache;
		ic->pg.defer = defer;
	} else if (blob_cache != NULL) {
		imap_blob_cache_set_limit(blob_cache, 0); /* turned off by a reload */
	}
	imap_pg_ops_fill(&ic->ops);
	ic->ops.starttls = op_starttls;
	ic->ops.abuse = op_abuse;
	ic->ops.now_ms = op_now_ms;
	ic->ops.throttle = op_throttle;
	cfg.master_separator = ik->master_separator != NULL ? ik->master_separator[0] : '\0';
	if (ik->command_rate > 0) {
		cfg.rate_burst = (unsigned)ik->command_burst;
		cfg.rate_per_sec = (unsigned)ik->command_rate;
	}
	cfg.hostname = server_config(srv)->hostname;
	cfg.starttls_available = conn_starttls_available(c) && !conn_tls_active(c, NULL);
	cfg.allow_plaintext_auth = conn_listener(c)->allow_plaintext_auth;
	ic->s = imap_session_new(&cfg, &ic->ops, ic);
	ic->pg.session = ic->s;
	conn_set_data(c, ic);
	if (conn_tls_active(c, NULL))
		imap_session_set_tls(ic->s);
	loop_timer_init(&ic->tick, server_loop(srv), on_tick);
	loop_timer_init(&ic->throttle, server_loop(srv), on_throttle_end);
	loop_timer_init(&ic->defer, server_loop(srv), on_defer);
	loop_timer_start(&ic->tick, IMAP_SERVER_TICK_MS, IMAP_SERVER_TICK_MS);
	conn_set_idle_timeout(c, IMAP_SERVER_IDLE_MS);
	imap_session_greet(ic->s);
	pump(ic);
	return 0;
}

static ssize_t imap_input(struct conn *c, const uint8_t *p, size_t n)
{
	struct imap_conn *ic = conn_data(c);
	size_t used;

	ic->in_input = true;
	used = imap_session_input(ic->s, p, n);
	ic->in_input = false;
	if (ic->want_tls) {
		/* "OK Begin TLS" goes out in clear, the rest is dropped by conn */
		ic->want_tls = false;
		pump(ic);
		if (conn_starttls(c) < 0)
			imap_session_tls_done(ic->s, false);
		return (ssize_t)used;
	}
	pump(ic);
	if (imap_session_pending(ic->s) || imap_session_tls_wait(ic->s))
		conn_pause_read(c, true);
	return (ssize_t)used;
}

static void imap_writable(struct conn *c)
{
	struct imap_conn *ic = conn_data(c);

	if (ic != NULL)
		settle(ic);
}

static void imap_tls(struct conn *c, bool ok)
{
	struct imap_conn *ic = conn_data(c);

	imap_session_tls_done(ic->s, ok);
	settle(ic);
}

static void imap_timeout(struct conn *c)
{
	struct imap_conn *ic = conn_data(c);

	imap_session_shutdown(ic->s, IMAP_CLOSE_TIMEOUT);
	pump(ic);
	conn_close(c, CONN_CLOSE_TIMEOUT);
}

static void imap_shutdown(struct conn *c)
{
	struct imap_conn *ic = conn_data(c);

	imap_session_shutdown(ic->s, IMAP_CLOSE_SHUTDOWN);
	pump(ic);
	conn_close(c, CONN_CLOSE_SHUTDOWN);
}

static void imap_close(struct conn *c, enum conn_close_reason reason)
{
	struct imap_conn *ic = conn_data(c);

	(void)reason;
	if (ic == NULL)
		return;
	loop_timer_stop(&ic->tick);
	loop_timer_stop(&ic->throttle);
	loop_timer_stop(&ic->defer);
	/* cancel first: no completion may reach the freed session */
	imap_pg_cleanup(&ic->pg);
	imap_session_free(&ic->s);
	conn_set_data(c, NULL);
	free(ic);
}

const struct conn_proto imap_server_proto = {
        .name = "imap",
        .on_open = imap_open,
        .on_input = imap_input,
        .on_writable = imap_writable,
        .on_tls = imap_tls,
        .on_timeout = imap_timeout,
        .on_shutdown = imap_shutdown,
        .on_close = imap_close,
};
