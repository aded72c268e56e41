/*
 * edge/edge.c -- start-up, reload, drain and exit of tailpost-edge.
 *
 * Everything here runs on the main thread and its loop (libev's default
 * loop, the only one that watches signals).  Workers are told what to do
 * through their mailboxes (edge/worker.h) and answer through one ev_async;
 * every decision that depends on "all workers have done X" is taken in
 * ack_cb.  Settings that shape the workers themselves (workers, splice,
 * pipe sizes, backlog, user, group) are fixed at start: a reload that
 * changes them logs that a restart is needed and keeps the old values, so
 * the printed effective config never lies.
 */
#include "edge/edge.h"

#include "edge/admin.h"
#include "edge/config.h"
#include "edge/conn.h"
#include "edge/gen.h"
#include "edge/metrics.h"
#include "edge/privs.h"
#include "edge/worker.h"
#include "shared/daemon.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define HOUSEKEEPING_S 1.0
#define DRAIN_POLL_S   0.1
#define SWEEP_EVERY    10

struct edge_server {
	struct ev_loop *loop;
	const char *config_path;
	struct edge_registry reg;
	struct edge_gen *cur;     /* main holds one reference */
	struct edge_gen *pending; /* handed to workers, not yet acknowledged */
	struct edge_gen *retired; /* waiting for their last reference */
	struct edge_worker *w;
	int nworkers;
	ev_async ack;
	ev_timer housekeeping;
	ev_timer drain_poll;
	ev_timer grace;
	struct loop_signals sig;
	struct edge_admin *admin;
	uint64_t next_gen_id;
	uint64_t reloads_ok, reloads_failed;
	unsigned ticks;
	bool draining, listeners_closed, reload_queued, exiting;
	/* fixed at start */
	int64_t workers_cfg;
	char *user, *group;
	bool splice;
	uint64_t pipe_size;
	int64_t pipe_pool, backlog;
};

/* sd_notify(3) through shared/daemon.c; a failure is logged, never fatal. */
static void notify(int (*fn)(const char **errstr_r))
{
	const char *err = NULL;

	if (fn(&err) < 0)
		log_warn("msg=notify.failed error=\"%s\"", err != NULL ? err : "?");
}

/* --- admin callbacks ------------------------------------------------------ */

static void metrics_cb(struct buf *out, void *arg)
{
	struct edge_server *s = arg;
	struct edge_process_stats ps;

	memset(&ps, 0, sizeof(ps));
	ps.reloads_ok = s->reloads_ok;
	ps.reloads_failed = s->reloads_failed;
	ps.generation = s->cur->id;
	ps.workers = s->nworkers;
	ps.draining = s->draining;
	for (int i = 0; i < s->nworkers; i++)
		ps.worker_conns += atomic_load(&s->w[i].nconns);
	edge_metrics_render(out, s->cur, &ps);
}

static bool healthy_cb(void *arg)
{
	struct edge_server *s = arg;

	return !s->draining;
}

static int admin_apply(struct edge_server *s, const struct edge_config *cfg)
{
	const char *want = cfg->admin_present ? cfg->admin.bind : NULL;
	struct edge_admin *a;
	char *err = NULL;

	if (s->admin != NULL && want != NULL && strcmp(edge_admin_bind(s->admin), want) == 0)
		return 0;
	if (want == NULL) {
		edge_admin_stop(&s->admin);
		return 0;
	}
	a = edge_admin_start(s->loop, want, metrics_cb, healthy_cb, s, &err);
	if (a == NULL) {
		char q[256];
		log_error("msg=admin.failed error=%s", log_quote(q, sizeof(q), err));
		free(err);
		return -1;
	}
	edge_admin_stop(&s->admin);
	s->admin = a;
	log_info("msg=admin.listening bind=%s", want);
	return 0;
}

/* --- helpers --------------------------------------------------------------- */

static int64_t total_conns(const struct edge_server *s)
{
	int64_t n = 0;

	for (int i = 0; i < s->nworkers; i++)
		n += atomic_load(&s->w[i].nconns);
	return n;
}

static void log_listeners(const struct edge_gen *g)
{
	for (size_t i = 0; i < g->n; i++) {
		const struct edge_listener *l = &g->l[i];
		struct buf b;

		buf_init(&b, 0);
		buf_puts(&b, "bind=");
		for (size_t j = 0; j < l->conf->bind.n; j++)
			buf_printf(&b, "%s%s", j ? "," : "", l->conf->bind.v[j]);
		buf_puts(&b, " upstreams=");
		for (size_t j = 0; j < l->pool->n; j++)
			buf_printf(&b, "%s%s", j ? "," : "", l->pool->v[j].name);
		buf_append(&b, "", 1);
		log_info("msg=listener.ready listener=%s %s proxy_protocol=%s balance=%s",
		         l->conf->name, (const char *)buf_ptr(&b),
		         edge_config_pp_name(l->conf->proxy_protocol),
		         edge_config_balance_name(l->conf->balance));
		buf_free(&b);
	}
}

static void log_conf_errors(const struct conf_ctx *ctx, const char *what)
{
	char q[1024];

	for (size_t i = 0; i < ctx->nerrs; i++)
		log_error("msg=%s error=%s", what, log_quote(q, sizeof(q), ctx->errs[i].msg));
}

static void free_retired(struct edge_server *s, bool all)
{
	struct edge_gen **pp = &s->retired;

	while (*pp != NULL) {
		struct edge_gen *g = *pp;
		if (all || edge_gen_refs(g) <= 0) {
			*pp = g->next;
			edge_gen_free(g, &s->reg);
			continue;
		}
		pp = &g->next;
	}
}

static void finish(struct edge_server *s)
{
	if (s->exiting)
		return;
	s->exiting = true;
	for (int i = 0; i < s->nworkers; i++)
		edge_worker_post_exit(&s->w[i]);
	ev_break(s->loop, EVBREAK_ALL);
}

/* --- reload ---------------------------------------------------------------- */

static void keep_fixed(struct edge_server *s, struct edge_config *cfg)
{
	if (cfg->workers != s->workers_cfg) {
		log_warn("msg=reload.ignored key=workers reason=\"needs a restart\"");
		cfg->workers = s->workers_cfg;
	}
	if ((cfg->user == NULL) != (s->user == NULL) ||
	    (cfg->user != NULL && strcmp(cfg->user, s->user) != 0) ||
	    (cfg->group == NULL) != (s->group == NULL) ||
	    (cfg->group != NULL && strcmp(cfg->group, s->group) != 0)) {
		log_warn("msg=reload.ignored key=user,group reason=\"needs a restart\"");
		free(cfg->user);
		free(cfg->group);
		cfg->user = s->user != NULL ? xstrdup(s->user) : NULL;
		cfg->group = s->group != NULL ? xstrdup(s->group) : NULL;
	}
	if (cfg->splice != s->splice || cfg->pipe_size != s->pipe_size ||
	    cfg->pipe_pool != s->pipe_pool || cfg->backlog != s->backlog) {
		log_warn("msg=reload.ignored key=splice,pipe_size,pipe_pool,backlog "
		         "reason=\"needs a restart\"");
		cfg->splice = s->splice;
		cfg->pipe_size = s->pipe_size;
		cfg->pipe_pool = s->pipe_pool;
		cfg->backlog = s->backlog;
	}
}

static void reload(struct edge_server *s)
{
	struct edge_config cfg;
	struct conf_ctx ctx;
	struct edge_gen *g;
	char *err = NULL;
	char q[512];

	if (s->draining || s->exiting)
		return;
	if (s->pending != NULL) {
		s->reload_queued = true;
		return;
	}
	notify(daemon_notify_reloading);
	log_info("msg=reload.start config=%s", s->config_path);
	memset(&ctx, 0, sizeof(ctx));
	if (edge_config_load(s->config_path, &cfg, &ctx) < 0) {
		log_conf_errors(&ctx, "reload.failed");
		log_error("msg=reload.failed reason=\"invalid configuration, keeping the running "
		          "one\"");
		edge_config_free(&cfg);
		conf_ctx_free(&ctx);
		s->reloads_failed++;
		notify(daemon_notify_ready);
		return;
	}
	conf_ctx_free(&ctx);
	keep_fixed(s, &cfg);
	g = edge_gen_build(&cfg, s->cur, &s->reg, s->next_gen_id, &err);
	if (g == NULL) {
		log_error("msg=reload.failed error=%s reason=\"keeping the running configuration\"",
		          log_quote(q, sizeof(q), err));
		free(err);
		s->reloads_failed++;
		notify(daemon_notify_ready);
		return;
	}
	s->next_gen_id++;
	log_set_level((enum log_level)g->cfg.log_level);
	(void)admin_apply(s, &g->cfg);
	s->pending = g;
	for (int i = 0; i < s->nworkers; i++)
		edge_worker_post_gen(&s->w[i], g);
}

static void ack_cb(struct ev_loop *loop, ev_async *as, int revents)
{
	struct edge_server *s = container_of(as, struct edge_server, ack);

	(void)loop;
	(void)revents;
	if (s->pending != NULL) {
		bool all = true;
		for (int i = 0; i < s->nworkers; i++)
			if (atomic_load(&s->w[i].acked_gen) < s->pending->id)
				all = false;
		if (all) {
			struct edge_gen *old = s->cur;

			s->cur = s->pending;
			s->pending = NULL;
			edge_gen_start_checks(s->cur, s->loop);
			edge_gen_retire(old, &s->reg);
			old->next = s->retired;
			s->retired = old;
			s->reloads_ok++;
			log_listeners(s->cur);
			log_info("msg=reload.done generation=%" PRIu64 " listeners=%zu", s->cur->id,
			         s->cur->n);
			notify(daemon_notify_ready);
			if (s->reload_queued) {
				s->reload_queued = false;
				reload(s);
			}
		}
	}
	if (s->draining && !s->listeners_closed) {
		bool all = true;
		for (int i = 0; i < s->nworkers; i++)
			if (!atomic_load(&s->w[i].acked_stop))
				all = false;
		if (all) {
			/* Nobody watches them now: close so new clients are refused
			 * at once instead of waiting in a backlog. */
			edge_registry_close_all(&s->reg);
			s->listeners_closed = true;
			log_info("msg=drain.listeners_closed connections=%" PRId64, total_conns(s));
		}
	}
}

/* --- signals and timers --------------------------------------------------- */

static void on_reload(void *arg, int signum)
{
	(void)signum;
	reload(arg);
}

static void drain_poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct edge_server *s = container_of(t, struct edge_server, drain_poll);

	(void)loop;
	(void)revents;
	if (s->listeners_closed && total_conns(s) == 0) {
		log_info("msg=drain.done");
		finish(s);
	}
}

static void grace_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct edge_server *s = container_of(t, struct edge_server, grace);

	(void)loop;
	(void)revents;
	log_warn("msg=drain.grace_expired connections=%" PRId64, total_conns(s));
	finish(s);
}

static void on_stop(void *arg, int signum)
{
	struct edge_server *s = arg;
	double grace;

	if (s->draining) {
		log_warn("msg=shutdown.forced signal=%d connections=%" PRId64, signum,
		         total_conns(s));
		finish(s);
		return;
	}
	s->draining = true;
	notify(daemon_notify_stopping);
	grace = (double)s->cur->cfg.shutdown_grace_ms / 1000.0;
	log_info("msg=drain.start signal=%d grace_ms=%" PRIu64 " connections=%" PRId64, signum,
	         s->cur->cfg.shutdown_grace_ms, total_conns(s));
	for (int i = 0; i < s->nworkers; i++)
		edge_worker_post_stop_accept(&s->w[i]);
	ev_timer_init(&s->grace, grace_cb, grace, 0.0);
	ev_timer_start(s->loop, &s->grace);
	ev_timer_init(&s->drain_poll, drain_poll_cb, DRAIN_POLL_S, DRAIN_POLL_S);
	ev_timer_start(s->loop, &s->drain_poll);
}

static void housekeeping_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct edge_server *s = container_of(t, struct edge_server, housekeeping);

	(void)revents;
	free_retired(s, false);
	if (++s->ticks % SWEEP_EVERY == 0) {
		uint64_t now_ms = (uint64_t)(ev_now(loop) * 1000.0);
		for (size_t i = 0; i < s->cur->n; i++) {
			const struct edge_listener *l = &s->cur->l[i];
			edge_limits_sweep(l->st->limits, l->conf->per_source_rate,
			                  l->conf->per_source_burst, now_ms);
		}
	}
}

/* --- start and stop ------------------------------------------------------- */

/* Each connection needs two fds (four while bulk data sits in pipes):
 * take the whole hard limit, and say so if even that looks too small. */
static void raise_nofile(const struct edge_config *cfg, int nworkers)
{
	struct rlimit rl;
	unsigned long long need = 64 + (unsigned long long)nworkers * 16;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (size_t i = 0; i < cfg->listeners.n; i++)
		need += 2ULL * (unsigned long long)edge_config_listener(cfg, i)->max_connections;
	if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
		log_warn("msg=nofile.low limit=%llu wanted=%llu hint=\"raise LimitNOFILE or lower "
		         "max_connections\"",
		         (unsigned long long)rl.rlim_cur, need);
}

static int start_workers(struct edge_server *s)
{
	sigset_t all, old;

	/* Workers inherit a mask with the handled signals blocked, so the
	 * signals reach the main thread and its loop. */
	sigemptyset(&all);
	sigaddset(&all, SIGHUP);
	sigaddset(&all, SIGTERM);
	sigaddset(&all, SIGINT);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < s->nworkers; i++) {
		if (edge_worker_start(&s->w[i], i, s->cur, s->splice, (size_t)s->pipe_size,
		                      (size_t)s->pipe_pool, s->loop, &s->ack) < 0) {
			int err = errno;
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			log_error("msg=worker.failed worker=%d error=\"%s\"", i, strerror(err));
			return -1;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return 0;
}

static int run(struct edge_server *s, struct edge_config *cfg)
{
	char *err = NULL;
	char q[512];
	long ncpu;
	int rc = 1;

	s->loop = ev_default_loop(EVBACKEND_EPOLL);
	if (s->loop == NULL) {
		log_error("msg=start.failed error=\"cannot create the event loop\"");
		return 1;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	s->workers_cfg = cfg->workers;
	s->nworkers = cfg->workers > 0 ? (int)cfg->workers : (int)(ncpu > 0 ? ncpu : 1);
	if (s->nworkers > 256)
		s->nworkers = 256;
	s->user = cfg->user != NULL ? xstrdup(cfg->user) : NULL;
	s->group = cfg->group != NULL ? xstrdup(cfg->group) : NULL;
	s->splice = cfg->splice;
	s->pipe_size = cfg->pipe_size;
	s->pipe_pool = cfg->pipe_pool;
	s->backlog = cfg->backlog;
	edge_registry_init(&s->reg, s->nworkers, (int)cfg->backlog);
	raise_nofile(cfg, s->nworkers);

	/* Everything that needs root happens before the switch below. */
	s->cur = edge_gen_build(cfg, NULL, &s->reg, 1, &err);
	if (s->cur == NULL) {
		log_error("msg=start.failed error=%s", log_quote(q, sizeof(q), err));
		free(err);
		goto out;
	}
	s->next_gen_id = 2;
	if (admin_apply(s, &s->cur->cfg) < 0)
		goto out;
	if (s->user != NULL) {
		if (edge_privs_drop(s->user, s->group, true, &err) < 0) {
			log_error("msg=start.failed error=%s", log_quote(q, sizeof(q), err));
			free(err);
			goto out;
		}
		log_info("msg=privileges.dropped user=%s group=%s keep=CAP_NET_BIND_SERVICE",
		         s->user, s->group != NULL ? s->group : "-");
	}
	loop_signals_start(&s->sig, s->loop, on_reload, on_stop, s);
	ev_async_init(&s->ack, ack_cb);
	ev_async_start(s->loop, &s->ack);
	s->w = xcalloc((size_t)s->nworkers, sizeof(*s->w));
	if (start_workers(s) < 0)
		goto out;
	edge_gen_start_checks(s->cur, s->loop);
	ev_timer_init(&s->housekeeping, housekeeping_cb, HOUSEKEEPING_S, HOUSEKEEPING_S);
	ev_timer_start(s->loop, &s->housekeeping);
	log_listeners(s->cur);
	log_info("msg=started version=%s workers=%d splice=%s pid=%d", TAILPOST_VERSION,
	         s->nworkers, s->splice ? "yes" : "no", (int)getpid());
	notify(daemon_notify_ready);
	ev_run(s->loop, 0);
	rc = 0;
out:
	if (s->w != NULL) {
		for (int i = 0; i < s->nworkers; i++)
			if (s->w[i].started)
				edge_worker_post_exit(&s->w[i]);
		for (int i = 0; i < s->nworkers; i++)
			edge_worker_join(&s->w[i]);
		free(s->w);
		s->w = NULL;
	}
	loop_signals_stop(&s->sig);
	ev_timer_stop(s->loop, &s->housekeeping);
	ev_timer_stop(s->loop, &s->grace);
	ev_timer_stop(s->loop, &s->drain_poll);
	ev_async_stop(s->loop, &s->ack);
	edge_admin_stop(&s->admin);
	if (s->pending != NULL) {
		edge_gen_retire(s->pending, &s->reg);
		s->pending->next = s->retired;
		s->retired = s->pending;
		s->pending = NULL;
	}
	if (s->cur != NULL) {
		edge_gen_retire(s->cur, &s->reg);
		s->cur->next = s->retired;
		s->retired = s->cur;
		s->cur = NULL;
	}
	free_retired(s, true);
	edge_registry_free(&s->reg);
	free(s->user);
	free(s->group);
	if (rc == 0)
		log_info("msg=stopped");
	return rc;
}

/* --- command line ------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out, "usage: tailpost-edge [-c FILE] [--check] [--version]\n"
	             "  -c, --config FILE  configuration (default " EDGE_DEFAULT_CONFIG ")\n"
	             "  --check            validate, print the effective configuration, exit 0/1\n"
	             "  --version          print the version\n");
}

int edge_main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"check", no_argument, NULL, 'C'},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *path = EDGE_DEFAULT_CONFIG;
	bool check = false;
	struct edge_config cfg;
	struct conf_ctx ctx;
	struct edge_server s;
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("tailpost-edge %s\n", TAILPOST_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	memset(&ctx, 0, sizeof(ctx));
	if (edge_config_load(path, &cfg, &ctx) < 0) {
		conf_errors_print(&ctx, stderr);
		fprintf(stderr, "%s: configuration is not valid\n", path);
		edge_config_free(&cfg);
		conf_ctx_free(&ctx);
		return 1;
	}
	conf_ctx_free(&ctx);
	if (check) {
		edge_config_print(stdout, &cfg);
		fprintf(stderr, "%s: configuration is valid\n", path);
		edge_config_free(&cfg);
		return 0;
	}
	log_init("edge", (enum log_level)cfg.log_level);
	memset(&s, 0, sizeof(s));
	s.config_path = path;
	rc = run(&s, &cfg);
	edge_config_free(&cfg);
	return rc;
}
