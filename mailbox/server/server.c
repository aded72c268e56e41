/*
 * mailbox/server/server.c -- the daemon's life cycle (see server.h).
 *
 * Configurations: `boot` is the file as loaded at start and lives until
 * exit, because the stores were built from its `stores:` section and keep
 * pointers into it.  `cur` is the configuration in force; after a
 * successful reload it is a newer copy and the previous one (unless it is
 * boot) is freed: listener snapshots copy what they need, and everything
 * else reads server_config() when it needs a value.
 *
 * Failures at start-up print one line naming what failed and exit 1 (2
 * for a config error), before anything is announced to systemd, so a
 * misnamed store endpoint is seen at once rather than as a half-working
 * daemon.
 */
#include "mailbox/server/server.h"

#include "mailbox/directory/password.h"
#include "mailbox/http/server.h"
#include "mailbox/imap/server.h"
#include "mailbox/outbound/queue.h"
#include "mailbox/server/abuse.h"
#include "mailbox/server/conn.h"
#include "mailbox/server/echo.h"
#include "mailbox/server/gc_timer.h"
#include "mailbox/server/jobs.h"
#include "mailbox/server/listener.h"
#include "mailbox/server/metrics.h"
#include "mailbox/smtp/server.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/schema.h"
#include "shared/daemon.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RECOVERY_ENV     "TAILPOST_RECOVERY_ADMIN"
#define PASSWORD_THREADS 2
#define DRAIN_POLL_MS    100

struct server {
	struct ev_loop *loop;
	char *path;
	struct mailbox_config boot;
	struct mailbox_config *cur; /* &boot or a heap copy */
	struct pg_pool *pg;
	struct blob_store *blob;
	struct mem_store *mem;
	struct password_pool *pw;
	struct jobs *jobs;
	struct outbound_queue *outq; /* the delivery workers (outbound.enabled) */
	struct gc_timer *gc;         /* NULL: blob.gc.interval 0 */
	struct listener_set *ls;
	struct loop_signals sig;
	struct loop_timer tls_timer;
	struct loop_timer drain_grace;
	struct loop_timer drain_poll;
	struct mem_sub *ban_sub;
	bool draining;
	char *rec_user, *rec_pass;
	int pidfd;
	char ready_why[512];
};

const struct conn_proto *server_proto_for_role(int role)
{
	switch (role) {
	case MAILBOX_ROLE_HTTP:
		return &http_server_proto;
	case MAILBOX_ROLE_TEST:
		return &echo_proto;
	case MAILBOX_ROLE_MX:
	case MAILBOX_ROLE_SUBMISSION:
	case MAILBOX_ROLE_SUBMISSIONS:
		return &smtp_server_proto;
	case MAILBOX_ROLE_IMAP:
	case MAILBOX_ROLE_IMAPS:
		return &imap_server_proto;
	default:
		return NULL;
	}
}

/* --- accessors --------------------------------------------------------- */

struct ev_loop *server_loop(const struct server *s)
{
	return s->loop;
}

const struct mailbox_config *server_config(const struct server *s)
{
	return s->cur;
}

struct pg_pool *server_pg(const struct server *s)
{
	return s->pg;
}

struct blob_store *server_blob(const struct server *s)
{
	return s->blob;
}

struct mem_store *server_mem(const struct server *s)
{
	return s->mem;
}

struct outbound_queue *server_outbound(const struct server *s)
{
	return s->outq;
}

struct password_pool *server_passwords(const struct server *s)
{
	return s->pw;
}

struct jobs *server_jobs(const struct server *s)
{
	return s->jobs;
}

bool server_draining(const struct server *s)
{
	return s->draining;
}

bool server_recovery_admin(const struct server *s, const char **user_r, const char **pass_r)
{
	if (s->rec_user == NULL)
		return false;
	*user_r = s->rec_user;
	*pass_r = s->rec_pass;
	return true;
}

bool server_ready(struct server *s, const char **why_r)
{
	struct server *m = s;

	if (s->pg != NULL && !pg_pool_healthy(s->pg)) {
		snprintf(m->ready_why, sizeof(m->ready_why), "data store %s: unreachable",
		         pg_pool_endpoint(s->pg));
		*why_r = m->ready_why;
		return false;
	}
	if (s->blob != NULL && !blob_store_healthy(s->blob)) {
		snprintf(m->ready_why, sizeof(m->ready_why), "blob store %s %s: failing",
		         blob_store_kind(s->blob), blob_store_endpoint(s->blob));
		*why_r = m->ready_why;
		return false;
	}
	if (s->mem != NULL && !mem_store_healthy(s->mem)) {
		snprintf(m->ready_why, sizeof(m->ready_why), "memory store %s: unreachable",
		         mem_store_endpoint(s->mem));
		*why_r = m->ready_why;
		return false;
	}
	if (s->draining) {
		*why_r = "shutting down";
		return false;
	}
	return true;
}

/* --- start-up checks --------------------------------------------------- */

/* Every store, loudly: one line naming the store, the endpoint and the
 * reason.  0 or -1. */
static int check_stores(struct server *s)
{
	const struct stores_config *st = &s->boot.stores;
	char err[1024];
	const char *why = NULL;
	PGconn *c;

	if (pg_check(&st->data, err, sizeof(err)) < 0) {
		log_error("msg=\"start-up check failed\" store=data error=\"%s\"", err);
		return -1;
	}
	c = pg_connect_blocking(&st->data, err, sizeof(err));
	if (c == NULL) {
		log_error("msg=\"start-up check failed\" store=data error=\"%s\"", err);
		return -1;
	}
	if (schema_check_version(c, err, sizeof(err)) < 0) {
		PQfinish(c);
		log_error("msg=\"start-up check failed\" store=data error=\"%s\"", err);
		return -1;
	}
	PQfinish(c);
	log_info("msg=\"store ok\" store=data schema=%d", schema_latest());

	s->blob = blob_store_new(s->loop, &st->blob, &why);
	if (s->blob == NULL) {
		log_error("msg=\"start-up check failed\" store=blob error=\"%s\"",
		          why != NULL ? why : "?");
		return -1;
	}
	if (blob_store_check_sync(s->blob, err, sizeof(err)) < 0) {
		log_error("msg=\"start-up check failed\" store=blob error=\"%s\"", err);
		return -1;
	}
	log_info("msg=\"store ok\" store=blob kind=%s endpoint=%s", blob_store_kind(s->blob),
	         blob_store_endpoint(s->blob));

	s->mem = mem_store_new(s->loop, &st->memory, &why);
	if (s->mem == NULL) {
		log_error("msg=\"start-up check failed\" store=memory error=\"%s\"",
		          why != NULL ? why : "?");
		return -1;
	}
	if (mem_store_check_sync(s->mem, err, sizeof(err)) < 0) {
		log_error("msg=\"start-up check failed\" store=memory error=\"%s\"", err);
		return -1;
	}
	log_info("msg=\"store ok\" store=memory kind=%s endpoint=%s%s", mem_store_kind(s->mem),
	         mem_store_endpoint(s->mem),
	         s->boot.stores.memory.redis == NULL ? " note=\"in-process: single instance only\""
	                                             : "");
	return 0;
}

/* TAILPOST_RECOVERY_ADMIN=user:password: taken, removed from the
 * environment (children must not inherit it), and announced loudly. */
static void recovery_admin(struct server *s)
{
	const char *v = getenv(RECOVERY_ENV);
	const char *colon;

	if (v == NULL || v[0] == '\0')
		return;
	colon = strchr(v, ':');
	if (!s->cur->admin.recovery) {
		log_warn("msg=\"%s is set but admin.recovery is false: ignored\"", RECOVERY_ENV);
	} else if (colon == NULL || colon == v || colon[1] == '\0') {
		log_error("msg=\"%s must be user:password: ignored\"", RECOVERY_ENV);
	} else {
		s->rec_user = xstrndup(v, (size_t)(colon - v));
		s->rec_pass = xstrdup(colon + 1);
		log_warn(
		        "msg=\"RECOVERY ADMIN ENABLED: HTTP Basic auth as this user has full admin "
		        "rights on every http listener; unset %s and restart once the lock-out is "
		        "resolved\" user=%s",
		        RECOVERY_ENV, s->rec_user);
	}
	OPENSSL_cleanse((void *)(uintptr_t)v, strlen(v));
	unsetenv(RECOVERY_ENV);
}

/* --- signals, reload, drain -------------------------------------------- */

/* The stores section as text, to notice a change on reload. */
static char *stores_text(const struct mailbox_config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return xstrdup("");
	conf_print(f, &stores_conf_table, &cfg->stores);
	fclose(f);
	return text;
}

static void on_reload(void *arg, int signum)
{
	struct server *s = arg;
	struct mailbox_config *next = xcalloc(1, sizeof(*next));
	struct conf_ctx ctx = {0};
	char err[1024];
	const char *why = NULL;
	char *a, *b;

	(void)signum;
	if (s->draining)
		goto out;
	daemon_notify_reloading(&why);
	log_info("msg=\"reloading\" config=%s", s->path);
	if (mailbox_config_load(s->path, next, &ctx) < 0) {
		log_error("msg=\"reload rejected: the configuration has errors; the running one "
		          "stays\" errors=%zu",
		          ctx.nerrs);
		for (size_t i = 0; i < ctx.nerrs; i++) {
			char q[1024];
			log_error("msg=\"config error\" error=%s",
			          log_quote(q, sizeof(q), ctx.errs[i].msg));
		}
		goto done;
	}
	if (listener_set_apply(s->ls, next, err, sizeof(err)) < 0) {
		char q[1100];
		log_error("msg=\"reload rejected; the running listeners stay\" error=%s",
		          log_quote(q, sizeof(q), err));
		goto done;
	}
	a = stores_text(&s->boot);
	b = stores_text(next);
	if (strcmp(a, b) != 0)
		log_warn("msg=\"stores changed in the file: restart to apply (the daemon keeps "
		         "the stores it started with)\"");
	free(a);
	free(b);
	log_set_level((enum log_level)next->log_level);
	if (s->cur != &s->boot) {
		mailbox_config_free(s->cur);
		free(s->cur);
	}
	s->cur = next;
	next = NULL;
	outbound_queue_reconfigure(s->outq, s->cur);
	listener_set_tls_check(s->ls, true);
	if (s->cur->tls_check_interval_ms > 0)
		loop_timer_start(&s->tls_timer, s->cur->tls_check_interval_ms,
		                 s->cur->tls_check_interval_ms);
	else
		loop_timer_stop(&s->tls_timer);
	log_info("msg=\"reloaded\" listeners=%zu sockets=%zu", s->cur->listeners.n,
	         listener_set_count(s->ls));
done:
	daemon_notify_ready(&why);
out:
	if (next != NULL) {
		mailbox_config_free(next);
		free(next);
	}
	conf_ctx_free(&ctx);
}

static void on_tls_timer(struct loop_timer *t)
{
	struct server *s = container_of(t, struct server, tls_timer);

	listener_set_tls_check(s->ls, false);
}

static void drain_end(struct server *s, const char *why)
{
	log_info("msg=\"drain finished\" reason=%s open=%zu", why, conn_count());
	conn_close_all(s);
	loop_timer_stop(&s->drain_grace);
	loop_timer_stop(&s->drain_poll);
	ev_break(s->loop, EVBREAK_ALL);
}

static void on_drain_grace(struct loop_timer *t)
{
	drain_end(container_of(t, struct server, drain_grace), "grace_expired");
}

static void on_drain_poll(struct loop_timer *t)
{
	struct server *s = container_of(t, struct server, drain_poll);

	if (conn_count() == 0 && outbound_queue_idle(s->outq))
		drain_end(s, "all_closed");
}

static void on_stop(void *arg, int signum)
{
	struct server *s = arg;
	const char *why = NULL;

	if (s->draining) {
		log_warn("msg=\"second stop signal: closing everything now\" signal=%d", signum);
		drain_end(s, "second_signal");
		return;
	}
	s->draining = true;
	daemon_notify_stopping(&why);
	log_info("msg=\"stopping: draining sessions\" signal=%d open=%zu grace_ms=%llu", signum,
	         conn_count(), (unsigned long long)s->cur->shutdown_grace_ms);
	listener_set_stop(s->ls);
	loop_timer_stop(&s->tls_timer);
	gc_timer_stop(s->gc);
	outbound_queue_stop(s->outq);
	conn_shutdown_all(s);
	loop_timer_start(&s->drain_grace, s->cur->shutdown_grace_ms, 0);
	loop_timer_start(&s->drain_poll, 0, DRAIN_POLL_MS);
}

/* Another instance (or this one) banned a client: end its sessions. */
static void on_ban_msg(void *arg, const char *channel, const char *msg, size_t len)
{
	struct server *s = arg;
	char ip[NET_ADDRSTRLEN];
	size_t n;

	(void)channel;
	if (len < 5 || strncmp(msg, "add ", 4) != 0 || len - 4 >= sizeof(ip))
		return;
	memcpy(ip, msg + 4, len - 4);
	ip[len - 4] = '\0';
	n = conn_close_client(s, ip);
	if (n > 0)
		log_info("msg=\"closed sessions of a banned client\" client=%s sessions=%zu", ip,
		         n);
}

/* --- run ------------------------------------------------------------------- */

static void server_free(struct server *s)
{
	abuse_shutdown();
	mem_unsubscribe(&s->ban_sub);
	gc_timer_free(&s->gc);
	jobs_free(&s->jobs);
	password_pool_free(&s->pw);
	listener_set_free(&s->ls);
	outbound_queue_free(&s->outq);
	pg_pool_free(&s->pg);
	blob_store_free(&s->blob);
	mem_store_free(&s->mem);
	loop_signals_stop(&s->sig);
	loop_timer_stop(&s->tls_timer);
	loop_timer_stop(&s->drain_grace);
	loop_timer_stop(&s->drain_poll);
	if (s->pidfd >= 0)
		daemon_pidfile_remove(s->boot.pidfile, &s->pidfd);
	if (s->cur != &s->boot && s->cur != NULL) {
		mailbox_config_free(s->cur);
		free(s->cur);
	}
	mailbox_config_free(&s->boot);
	if (s->rec_pass != NULL)
		OPENSSL_cleanse(s->rec_pass, strlen(s->rec_pass));
	free(s->rec_user);
	free(s->rec_pass);
	free(s->path);
	metrics_free();
}

int server_run(const char *path)
{
	struct server srv, *s = &srv;
	struct conf_ctx ctx = {0};
	char err[1024];
	const char *why = NULL;
	int rc = 1;

	memset(s, 0, sizeof(*s));
	s->pidfd = -1;
	s->path = xstrdup(path);
	s->cur = &s->boot;
	if (mailbox_config_load(path, &s->boot, &ctx) < 0) {
		conf_errors_print(&ctx, stderr);
		log_error("msg=\"invalid configuration\" config=%s errors=%zu", path, ctx.nerrs);
		conf_ctx_free(&ctx);
		rc = 2;
		goto out;
	}
	log_set_level((enum log_level)s->boot.log_level);
	for (size_t i = 0; i < ctx.nwarns; i++)
		log_warn("msg=\"configuration warning\" detail=\"%s\"", ctx.warns[i].msg);
	conf_ctx_free(&ctx);
	s->loop = ev_default_loop(EVFLAG_AUTO);
	log_info("msg=\"starting\" version=%s config=%s hostname=%s", TAILPOST_VERSION, path,
	         s->boot.hostname);
	recovery_admin(s);

	/* Bind first (privileged ports need root), then drop privileges
	 * before any thread starts. */
	s->ls = listener_set_new(s);
	if (listener_set_apply(s->ls, &s->boot, err, sizeof(err)) < 0) {
		char q[1100];
		log_error("msg=\"cannot start listeners\" error=%s", log_quote(q, sizeof(q), err));
		goto out;
	}
	if (s->boot.user != NULL && daemon_drop_privileges(s->boot.user, s->boot.group, &why) < 0) {
		log_error("msg=\"cannot drop privileges\" error=\"%s\"", why);
		goto out;
	}
	if (s->boot.pidfile != NULL) {
		s->pidfd = daemon_pidfile_write(s->boot.pidfile, &why);
		if (s->pidfd < 0) {
			log_error("msg=\"pidfile\" error=\"%s\"", why);
			goto out;
		}
	}
	if (check_stores(s) < 0 || smtp_server_start(&s->boot) < 0)
		goto out;
	s->pg = pg_pool_new(s->loop, &s->boot.stores.data);
	s->pw = password_pool_new(s->loop, PASSWORD_THREADS);
	s->jobs = jobs_new(s->loop, &s->boot.stores.data);
	s->gc = gc_timer_new(s->loop, &s->boot.stores);
	s->ban_sub = mem_subscribe(s->mem, MEM_CHANNEL_BANS, on_ban_msg, s);
	{
		struct delivery_stores dst = {.pg = s->pg, .blob = s->blob, .mem = s->mem};

		s->outq = outbound_queue_new(s->loop, &s->boot, &dst);
		if (s->outq == NULL)
			goto out;
	}

	loop_signals_start(&s->sig, s->loop, on_reload, on_stop, s);
	loop_timer_init(&s->tls_timer, s->loop, on_tls_timer);
	loop_timer_init(&s->drain_grace, s->loop, on_drain_grace);
	loop_timer_init(&s->drain_poll, s->loop, on_drain_poll);
	if (s->boot.tls_check_interval_ms > 0)
		loop_timer_start(&s->tls_timer, s->boot.tls_check_interval_ms,
		                 s->boot.tls_check_interval_ms);
	if (daemon_notify_ready(&why) < 0)
		log_warn("msg=\"sd_notify failed\" error=\"%s\"", why);
	daemon_notify_status(&why, "serving %zu listeners", s->boot.listeners.n);
	log_info("msg=\"ready\" listeners=%zu sockets=%zu pid=%d", s->boot.listeners.n,
	         listener_set_count(s->ls), (int)getpid());
	ev_run(s->loop, 0);
	log_info("msg=\"stopped\"");
	rc = 0;
out:
	server_free(s);
	if (s->loop != NULL)
		ev_loop_destroy(s->loop);
	return rc;
}
