/*
 * tests/tools/store_check.c -- drive the mailbox stores from the
 * integration tests, through the same code the daemon runs.
 *
 *   store_check -c STORES.yaml COMMAND [ARG...]
 *
 * STORES.yaml holds a `stores:` section's content (data, blob, memory),
 * loaded with stores_conf_table, so the tests exercise the config too.
 * Asynchronous operations run on a private libev loop until they finish.
 * Output is line-oriented; a failure prints the store's message on stderr
 * and exits 1 (usage errors exit 2).  Passwords are read from stdin.
 *
 * Commands:
 *   pg-check | schema-check | migrate
 *   pg-query SQL [PARAM...]         async pool: rows tab-separated
 *   pg-array ELEM...                pg_array_text of the ELEMs ("\\N": NULL),
 *                                   read back by Postgres: "LITERAL t"
 *   deliver MAILBOX_ID COUNT INFLIGHT  tp_deliver COUNT times, INFLIGHT at
 *                                   once on the pool: prints "uid modseq"
 *   pg-watch SECONDS INTERVAL_MS    a query every interval; prints
 *                                   "ok"/"err <msg>" and the health flag
 *   blob-check | blob-put FILE [KEY [SIZE]] | blob-put-mem FILE [KEY [SIZE]] |
 *   blob-get KEY [OFF LEN] | blob-head KEY |
 *   blob-delete KEY | blob-gc GRACE_S LIMIT
 *   mem-check | mem-incr KEY WINDOW_MS | mem-count KEY | mem-ban WHAT TTL_MS
 *   REASON | mem-ban-check WHAT | mem-bans | mem-unban WHAT |
 *   mem-listen CHANNEL COUNT TIMEOUT_MS | mem-publish CHANNEL MSG
 *   password-hash | password-verify HASH | password-verify-async HASH
 *   domain-add NAME | account-add LOGIN ROLE | alias-add ADDR TARGET... |
 *   rcpt ADDR | auth NAME
 */
#include "mailbox/directory/auth.h"
#include "mailbox/directory/directory.h"
#include "mailbox/directory/lookup.h"
#include "mailbox/directory/password.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/blob_gc.h"
#include "mailbox/store/config.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/schema.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct stores_config cfg;
static struct ev_loop *loop;
static int pending;  /* async operations still running */
static int failures; /* async operations that failed */

static int usage(void)
{
	fprintf(stderr, "usage: store_check -c STORES.yaml COMMAND [ARG...] (see the source)\n");
	return 2;
}

static void run_until_done(void)
{
	while (pending > 0)
		ev_run(loop, EVRUN_ONCE);
}

/* A password from stdin (one line, newline trimmed). */
static char *read_password(void)
{
	char buf[1024];
	size_t n;

	if (fgets(buf, sizeof(buf), stdin) == NULL)
		return xstrdup("");
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	return xstrdup(buf);
}

/* --- Postgres -------------------------------------------------------------- */

static PGconn *connect_or_die(void)
{
	char err[512];
	PGconn *c = pg_connect_blocking(&cfg.data, err, sizeof(err));

	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return c;
}

static void print_rows(const PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		printf("%s\n", PQcmdStatus((PGresult *)(uintptr_t)res));
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		for (int j = 0; j < PQnfields(res); j++)
			printf("%s%s", j > 0 ? "\t" : "",
			       PQgetisnull(res, i, j) ? "\\N" : PQgetvalue(res, i, j));
		printf("\n");
	}
}

static void query_cb(void *arg, const PGresult *res, const char *errstr)
{
	(void)arg;
	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "%s\n", errstr);
		failures++;
		return;
	}
	print_rows(res);
}

static int cmd_pg_query(struct pg_pool *p, int argc, char **argv)
{
	if (argc < 1)
		return usage();
	pending++;
	pg_query(p, argv[0], argc - 1, (const char *const *)(argv + 1), query_cb, NULL);
	run_until_done();
	return failures > 0 ? 1 : 0;
}

struct deliver_state {
	struct pg_pool *p;
	const char *mailbox;
	int left;
};

static void deliver_next(struct deliver_state *d);

static void deliver_cb(void *arg, const PGresult *res, const char *errstr)
{
	struct deliver_state *d = arg;

	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "deliver: %s\n", errstr);
		failures++;
	} else {
		for (int i = 0; i < PQntuples(res); i++)
			printf("%s %s\n", PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
	}
	deliver_next(d);
}

static void deliver_next(struct deliver_state *d)
{
	static const char sql[] =
	        "SELECT * FROM tp_deliver(ARRAY[$1::bigint], $2, 5, now(), '{}', NULL, NULL, NULL, "
	        "'a@example.org', 'b@example.org', NULL, 'test', now(), '<x@y>', NULL, $3)";
	const char *params[3];
	char key[BLOB_KEY_LEN + 1];

	if (d->left <= 0)
		return;
	d->left--;
	blob_key_mem("hello", 5, key);
	params[0] = d->mailbox;
	params[1] = key;
	params[2] = "hello world search text";
	pending++;
	pg_query(d->p, sql, 3, params, deliver_cb, d);
}

/* The blob is reserved first (tp_deliver requires it), then the
 * deliveries start, inflight at once. */
static int deliver_inflight;

static void reserved_cb(void *arg, const PGresult *res, const char *errstr)
{
	struct deliver_state *d = arg;

	(void)res;
	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "%s\n", errstr);
		failures++;
		return;
	}
	for (int i = 0; i < deliver_inflight; i++)
		deliver_next(d);
}

static int cmd_deliver(struct pg_pool *p, int argc, char **argv)
{
	struct deliver_state d;
	char key[BLOB_KEY_LEN + 1];
	const char *params[1] = {key};

	if (argc != 3)
		return usage();
	d.p = p;
	d.mailbox = argv[0];
	d.left = atoi(argv[1]);
	deliver_inflight = atoi(argv[2]);
	blob_key_mem("hello", 5, key);
	pending++;
	pg_query(p, "SELECT tp_blob_reserve($1, 5)", 1, params, reserved_cb, &d);
	run_until_done();
	return failures > 0 ? 1 : 0;
}

struct watch_state {
	struct pg_pool *p;
	ev_timer t;
	int left;
	bool waiting;
};

static void watch_cb(void *arg, const PGresult *res, const char *errstr)
{
	struct watch_state *w = arg;

	(void)res;
	w->waiting = false;
	if (errstr != NULL)
		printf("err %.*s healthy=%d\n", (int)strcspn(errstr, "\n"), errstr,
		       pg_pool_healthy(w->p));
	else
		printf("ok healthy=%d\n", pg_pool_healthy(w->p));
	fflush(stdout);
}

static void watch_tick(struct ev_loop *l, ev_timer *t, int revents)
{
	struct watch_state *w = container_of(t, struct watch_state, t);

	(void)l;
	(void)revents;
	if (w->left-- <= 0) {
		ev_timer_stop(loop, t);
		pending--;
		return;
	}
	if (!w->waiting) {
		w->waiting = true;
		pg_query(w->p, "SELECT 1", 0, NULL, watch_cb, w);
	}
}

static int cmd_pg_watch(struct pg_pool *p, int argc, char **argv)
{
	struct watch_state w = {.p = p};
	double interval;

	if (argc != 2)
		return usage();
	interval = atof(argv[1]) / 1000.0;
	w.left = (int)(atof(argv[0]) / interval);
	ev_timer_init(&w.t, watch_tick, interval, interval);
	ev_timer_start(loop, &w.t);
	pending++;
	run_until_done();
	return 0;
}

static void must_not_run(void *arg, const PGresult *res, const char *errstr)
{
	(void)arg;
	(void)res;
	(void)errstr;
	printf("WRONG: a cancelled or dropped request ran its callback\n");
	failures++;
}

static void run_for(double seconds)
{
	ev_tstamp end = ev_time() + seconds;

	while (ev_time() < end)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(5000);
}

/* Cancel a queued and a running request, then free the pool with one on
 * the wire: only the uncancelled request reports. */
static int cmd_pg_cancel(struct pg_pool **pp)
{
	struct pg_req *a, *b;

	a = pg_query(*pp, "SELECT pg_sleep(0.3), 'a'", 0, NULL, must_not_run, NULL);
	b = pg_query(*pp, "SELECT 'b'", 0, NULL, must_not_run, NULL);
	pg_req_cancel(&b); /* still queued */
	run_for(0.1);      /* a is on the wire now */
	pg_req_cancel(&a);
	pending++;
	pg_query(*pp, "SELECT 'c'", 0, NULL, query_cb, NULL);
	run_until_done();
	pg_query(*pp, "SELECT pg_sleep(0.3), 'd'", 0, NULL, must_not_run, NULL);
	run_for(0.1);
	pg_pool_free(pp);
	run_for(0.5);
	return failures > 0 ? 1 : 0;
}

static int cmd_pg(const char *cmd, int argc, char **argv)
{
	char err[512];
	struct pg_pool *p;
	int rc;

	if (strcmp(cmd, "pg-check") == 0) {
		if (pg_check(&cfg.data, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		printf("ok\n");
		return 0;
	}
	if (strcmp(cmd, "migrate") == 0 || strcmp(cmd, "schema-check") == 0 ||
	    strcmp(cmd, "schema-version") == 0) {
		PGconn *c = connect_or_die();
		int from, to;
		if (strcmp(cmd, "migrate") == 0) {
			rc = schema_migrate(c, &from, &to, err, sizeof(err));
			if (rc == 0)
				printf("migrated from %d to %d\n", from, to);
		} else if (strcmp(cmd, "schema-version") == 0) {
			rc = schema_version(c, &from, err, sizeof(err));
			if (rc == 0)
				printf("%d %d\n", from, schema_latest());
		} else {
			rc = schema_check_version(c, err, sizeof(err));
			if (rc == 0)
				printf("ok\n");
		}
		if (rc < 0)
			fprintf(stderr, "%s\n", err);
		PQfinish(c);
		return rc < 0 ? 1 : 0;
	}
	if (strcmp(cmd, "pg-array") == 0) {
		/* the literal pg_array_text builds must read back, in Postgres, as
		 * exactly the elements given ("\\N": NULL), in order */
		PGconn *c = connect_or_die();
		const char **params = xcalloc((size_t)argc + 1, sizeof(*params));
		struct buf sql;
		PGresult *res;

		for (int i = 0; i < argc; i++)
			params[i + 1] = strcmp(argv[i], "\\N") == 0 ? NULL : argv[i];
		params[0] = pg_array_text(params + 1, (size_t)argc);
		buf_init(&sql, 0);
		buf_printf(&sql,
		           "SELECT cardinality($1::text[]) = %d AND coalesce((SELECT "
		           "bool_and(x.a IS NOT DISTINCT FROM x.b) FROM unnest($1::text[], ARRAY[",
		           argc);
		for (int i = 0; i < argc; i++)
			buf_printf(&sql, "%s$%d::text", i > 0 ? "," : "", i + 2);
		buf_puts(&sql, "]::text[]) AS x(a, b)), true)");
		buf_append(&sql, "", 1); /* NUL-terminated for libpq */
		res = pg_exec(c, (const char *)buf_ptr(&sql), argc + 1, params, err, sizeof(err),
		              NULL);
		if (res == NULL)
			fprintf(stderr, "%s\n", err);
		else
			printf("%s %s\n", params[0], PQgetvalue(res, 0, 0));
		rc = res != NULL && strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 0 : 1;
		PQclear(res);
		free((char *)(uintptr_t)params[0]);
		free(params);
		buf_free(&sql);
		PQfinish(c);
		return rc;
	}
	p = pg_pool_new(loop, &cfg.data);
	if (strcmp(cmd, "pg-query") == 0)
		rc = cmd_pg_query(p, argc, argv);
	else if (strcmp(cmd, "deliver") == 0)
		rc = cmd_deliver(p, argc, argv);
	else if (strcmp(cmd, "pg-watch") == 0)
		rc = cmd_pg_watch(p, argc, argv);
	else if (strcmp(cmd, "pg-cancel") == 0)
		rc = cmd_pg_cancel(&p);
	else
		rc = usage();
	pg_pool_free(&p);
	return rc;
}

/* --- main ---------------------------------------------------------------- */

static int cmd_blob(const char *cmd, int argc, char **argv);
static int cmd_mem(const char *cmd, int argc, char **argv);
static int cmd_password(const char *cmd, int argc, char **argv);
static int cmd_dir(const char *cmd, int argc, char **argv);

int main(int argc, char **argv)
{
	struct conf_ctx ctx;
	const char *file = NULL, *cmd;
	int rc;

	log_init("store_check", LOG_L_WARN);
	if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
		file = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (file == NULL || argc < 2)
		return usage();
	if (conf_load_file(file, &stores_conf_table, &cfg, &ctx) < 0) {
		conf_errors_print(&ctx, stderr);
		conf_ctx_free(&ctx);
		conf_free(&stores_conf_table, &cfg);
		return 2;
	}
	conf_ctx_free(&ctx);
	loop = ev_default_loop(0);
	cmd = argv[1];
	argc -= 2;
	argv += 2;
	if (strncmp(cmd, "blob-", 5) == 0)
		rc = cmd_blob(cmd, argc, argv);
	else if (strncmp(cmd, "mem-", 4) == 0)
		rc = cmd_mem(cmd, argc, argv);
	else if (strncmp(cmd, "password-", 9) == 0)
		rc = cmd_password(cmd, argc, argv);
	else if (strncmp(cmd, "pg-", 3) == 0 || strcmp(cmd, "migrate") == 0 ||
	         strncmp(cmd, "schema-", 7) == 0 || strcmp(cmd, "deliver") == 0)
		rc = cmd_pg(cmd, argc, argv);
	else
		rc = cmd_dir(cmd, argc, argv);
	conf_free(&stores_conf_table, &cfg);
	ev_loop_destroy(loop);
	return rc;
}

/* --- blob store --------------------------------------------------------------- */

struct blob_wait {
	bool done;
	enum blob_status st;
	char err[1024];
	uint8_t *data;
	size_t len;
	uint64_t size;
};

static void bw_done(void *arg, enum blob_status st, const char *errstr)
{
	struct blob_wait *w = arg;

	w->done = true;
	w->st = st;
	if (errstr != NULL)
		snprintf(w->err, sizeof(w->err), "%s", errstr);
}

static void bw_head(void *arg, enum blob_status st, uint64_t size, const char *errstr)
{
	struct blob_wait *w = arg;

	w->size = size;
	bw_done(arg, st, errstr);
}

static void bw_get(void *arg, enum blob_status st, const uint8_t *data, size_t len,
                   const char *errstr)
{
	struct blob_wait *w = arg;

	if (st == BLOB_OK) {
		w->data = xmalloc(len + 1);
		if (len > 0)
			memcpy(w->data, data, len);
		w->len = len;
	}
	bw_done(arg, st, errstr);
}

static int blob_result(struct blob_store *bs, struct blob_wait *w)
{
	while (!w->done)
		ev_run(loop, EVRUN_ONCE);
	(void)bs;
	if (w->st == BLOB_NOT_FOUND) {
		printf("not-found\n");
		return 3;
	}
	if (w->st != BLOB_OK) {
		fprintf(stderr, "%s\n", w->err);
		return 1;
	}
	return 0;
}

static int cmd_blob(const char *cmd, int argc, char **argv)
{
	struct blob_store *bs;
	struct blob_wait w = {0};
	const char *err = NULL;
	int rc = 2;

	bs = blob_store_new(loop, &cfg.blob, &err);
	if (bs == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (strcmp(cmd, "blob-check") == 0) {
		char msg[1024];
		rc = blob_store_check_sync(bs, msg, sizeof(msg)) < 0 ? 1 : 0;
		if (rc != 0)
			fprintf(stderr, "%s\n", msg);
		else
			printf("ok %s %s\n", blob_store_kind(bs), blob_store_endpoint(bs));
	} else if (strcmp(cmd, "blob-put") == 0 && argc >= 1) {
		char key[BLOB_KEY_LEN + 1];
		uint64_t size;
		if (blob_key_file(argv[0], key, &size) < 0) {
			fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
			rc = 1;
			goto out;
		}
		/* a wrong key or size may be forced to test the checks */
		if (argc >= 2)
			snprintf(key, sizeof(key), "%s", argv[1]);
		if (argc >= 3)
			size = strtoull(argv[2], NULL, 10);
		blob_put(bs, key, argv[0], size, bw_done, &w);
		rc = blob_result(bs, &w);
		if (rc == 0)
			printf("%s %llu\n", key, (unsigned long long)size);
	} else if (strcmp(cmd, "blob-put-mem") == 0 && argc >= 1) {
		/* the same from memory (blob_put_mem, as IMAP APPEND puts) */
		char key[BLOB_KEY_LEN + 1];
		struct buf b;
		uint64_t size;
		uint8_t chunk[65536];
		FILE *f = fopen(argv[0], "rb");
		size_t n;
		if (f == NULL) {
			fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
			rc = 1;
			goto out;
		}
		buf_init(&b, 0);
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			buf_append(&b, chunk, n);
		fclose(f);
		size = buf_len(&b);
		blob_key_mem(buf_ptr(&b), buf_len(&b), key);
		if (argc >= 2)
			snprintf(key, sizeof(key), "%s", argv[1]);
		if (argc >= 3)
			size = strtoull(argv[2], NULL, 10);
		{
			/* the store owns the copy; a forced smaller size is what it
			 * is told, the bytes are all there */
			uint8_t *copy = xmalloc(buf_len(&b) + 1);
			memcpy(copy, buf_ptr(&b), buf_len(&b));
			if (size > buf_len(&b))
				size = buf_len(&b);
			blob_put_mem(bs, key, copy, size, bw_done, &w);
		}
		buf_free(&b);
		rc = blob_result(bs, &w);
		if (rc == 0)
			printf("%s %llu\n", key, (unsigned long long)size);
	} else if (strcmp(cmd, "blob-get") == 0 && argc >= 1) {
		uint64_t off = argc >= 2 ? strtoull(argv[1], NULL, 10) : 0;
		uint64_t len = argc >= 3 ? strtoull(argv[2], NULL, 10) : 0;
		size_t max = argc >= 4 ? strtoull(argv[3], NULL, 10) : 64u << 20;
		blob_get(bs, argv[0], off, len, max, bw_get, &w);
		rc = blob_result(bs, &w);
		if (rc == 0)
			fwrite(w.data, 1, w.len, stdout);
		free(w.data);
	} else if (strcmp(cmd, "blob-head") == 0 && argc == 1) {
		blob_head(bs, argv[0], bw_head, &w);
		rc = blob_result(bs, &w);
		if (rc == 0)
			printf("%llu\n", (unsigned long long)w.size);
	} else if (strcmp(cmd, "blob-delete") == 0 && argc == 1) {
		blob_delete(bs, argv[0], bw_done, &w);
		rc = blob_result(bs, &w);
		if (rc == 0)
			printf("deleted\n");
	} else if (strcmp(cmd, "blob-gc") == 0 && argc == 2) {
		PGconn *c = connect_or_die();
		struct blob_gc_result gr;
		char msg[512];
		if (blob_gc_run(c, bs, strtoull(argv[0], NULL, 10), strtoull(argv[1], NULL, 10),
		                NULL, &gr, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "%s\n", msg);
			rc = 1;
		} else {
			printf("examined %llu deleted %llu failed %llu\n",
			       (unsigned long long)gr.examined, (unsigned long long)gr.deleted,
			       (unsigned long long)gr.failed);
			rc = 0;
		}
		PQfinish(c);
	} else if (strcmp(cmd, "blob-abort") == 0 && argc == 2) {
		/* free the store with COUNT puts in flight: no callback, no leak */
		char key[BLOB_KEY_LEN + 1];
		uint64_t size;
		int n = atoi(argv[1]);
		if (blob_key_file(argv[0], key, &size) < 0) {
			rc = 1;
			goto out;
		}
		for (int i = 0; i < n; i++)
			blob_put(bs, key, argv[0], size, bw_done, &w);
		ev_run(loop, EVRUN_NOWAIT);
		usleep(20000);
		ev_run(loop, EVRUN_NOWAIT);
		w.done = false; /* callbacks before the free are fine */
		blob_store_free(&bs);
		run_for(0.2);
		rc = w.done ? 1 : 0;
		printf("%s\n", rc == 0 ? "ok" : "WRONG: callback after free");
	} else if (strcmp(cmd, "blob-put-many") == 0 && argc == 2) {
		/* put one file COUNT times concurrently, then free the store with
		 * requests in flight when the last argument is "abort" */
		char key[BLOB_KEY_LEN + 1];
		uint64_t size;
		int n = atoi(argv[1]);
		struct blob_wait *ws = xcalloc((size_t)n, sizeof(*ws));
		if (blob_key_file(argv[0], key, &size) < 0) {
			rc = 1;
			free(ws);
			goto out;
		}
		for (int i = 0; i < n; i++)
			blob_put(bs, key, argv[0], size, bw_done, &ws[i]);
		rc = 0;
		for (int i = 0; i < n; i++) {
			while (!ws[i].done)
				ev_run(loop, EVRUN_ONCE);
			if (ws[i].st != BLOB_OK) {
				fprintf(stderr, "%s\n", ws[i].err);
				rc = 1;
			}
		}
		free(ws);
		if (rc == 0)
			printf("ok %d\n", n);
	} else {
		rc = usage();
	}
out:
	blob_store_free(&bs);
	return rc;
}

/* --- memory store ---------------------------------------------------------------- */

static void mem_count_done(void *arg, int64_t value, const char *errstr)
{
	(void)arg;
	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "%s\n", errstr);
		failures++;
		return;
	}
	printf("%lld\n", (long long)value);
}

static void mem_done(void *arg, const char *errstr)
{
	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "%s\n", errstr);
		failures++;
		return;
	}
	printf("%s\n", arg != NULL ? (const char *)arg : "ok");
}

static void mem_ban_done(void *arg, bool banned, int64_t ttl_ms, const char *reason,
                         const char *errstr)
{
	(void)arg;
	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "%s\n", errstr);
		failures++;
		return;
	}
	if (banned)
		printf("banned %lld %s\n", (long long)ttl_ms, reason);
	else
		printf("not-banned\n");
}

static void mem_list_done(void *arg, const struct mem_ban *v, size_t n, const char *errstr)
{
	(void)arg;
	pending--;
	if (errstr != NULL) {
		fprintf(stderr, "%s\n", errstr);
		failures++;
		return;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s %lld %s\n", v[i].what, (long long)v[i].ttl_ms, v[i].reason);
	printf("end %zu\n", n);
}

struct listen_state {
	int want;
	ev_timer t;
	struct mem_sub *sub;
};

static void listen_msg(void *arg, const char *channel, const char *msg, size_t len)
{
	struct listen_state *ls = arg;

	printf("msg %s %.*s\n", channel, (int)len, msg);
	fflush(stdout);
	if (--ls->want <= 0) {
		ev_timer_stop(loop, &ls->t);
		mem_unsubscribe(&ls->sub);
		pending--;
	}
}

static void listen_timeout(struct ev_loop *l, ev_timer *t, int revents)
{
	struct listen_state *ls = container_of(t, struct listen_state, t);

	(void)l;
	(void)revents;
	printf("timeout\n");
	mem_unsubscribe(&ls->sub);
	failures++;
	pending--;
}

static void ready_tick(struct ev_loop *l, ev_timer *t, int revents)
{
	(void)l;
	(void)t;
	(void)revents;
	printf("listening\n");
	fflush(stdout);
}

struct mem_watch_state {
	struct mem_store *ms;
	ev_timer t;
	int left;
	bool waiting;
};

static void mem_watch_cb(void *arg, int64_t value, const char *errstr)
{
	struct mem_watch_state *w = arg;

	(void)value;
	w->waiting = false;
	if (errstr != NULL)
		printf("err %s healthy=%d\n", errstr, mem_store_healthy(w->ms));
	else
		printf("ok healthy=%d\n", mem_store_healthy(w->ms));
	fflush(stdout);
}

static void mem_watch_tick(struct ev_loop *l, ev_timer *t, int revents)
{
	struct mem_watch_state *w = container_of(t, struct mem_watch_state, t);

	(void)l;
	(void)revents;
	if (w->left-- <= 0) {
		ev_timer_stop(loop, t);
		pending--;
		return;
	}
	if (!w->waiting) {
		w->waiting = true;
		mem_incr(w->ms, "watch", 60000, mem_watch_cb, w);
	}
}

static int cmd_mem(const char *cmd, int argc, char **argv)
{
	struct mem_store *ms;
	const char *err = NULL;
	int rc = 0;

	ms = mem_store_new(loop, &cfg.memory, &err);
	if (ms == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (strcmp(cmd, "mem-check") == 0) {
		char msg[512];
		if (mem_store_check_sync(ms, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "%s\n", msg);
			rc = 1;
		} else {
			printf("ok %s %s\n", mem_store_kind(ms), mem_store_endpoint(ms));
		}
		goto out;
	}
	pending++;
	if (strcmp(cmd, "mem-incr") == 0 && argc == 2) {
		mem_incr(ms, argv[0], strtoull(argv[1], NULL, 10), mem_count_done, NULL);
	} else if (strcmp(cmd, "mem-count") == 0 && argc == 1) {
		mem_count_get(ms, argv[0], mem_count_done, NULL);
	} else if (strcmp(cmd, "mem-reset") == 0 && argc == 1) {
		mem_count_reset(ms, argv[0], mem_done, NULL);
	} else if (strcmp(cmd, "mem-ban") == 0 && argc == 3) {
		mem_ban_set(ms, argv[0], strtoull(argv[1], NULL, 10), argv[2], mem_done, NULL);
	} else if (strcmp(cmd, "mem-ban-check") == 0 && argc == 1) {
		mem_ban_check(ms, argv[0], mem_ban_done, NULL);
	} else if (strcmp(cmd, "mem-bans") == 0 && argc == 0) {
		mem_ban_list(ms, mem_list_done, NULL);
	} else if (strcmp(cmd, "mem-unban") == 0 && argc == 1) {
		mem_ban_remove(ms, argv[0], mem_done, NULL);
	} else if (strcmp(cmd, "mem-publish") == 0 && argc == 2) {
		mem_publish(ms, argv[0], argv[1], strlen(argv[1]), mem_done, NULL);
	} else if (strcmp(cmd, "mem-listen") == 0 && argc == 3) {
		/* subscribe, print "listening" once the loop ran a little, then
		 * print messages until COUNT arrived or TIMEOUT_MS passed */
		static struct listen_state ls;
		static ev_timer ready;
		ls.want = atoi(argv[1]);
		ls.sub = mem_subscribe(ms, argv[0], listen_msg, &ls);
		ev_timer_init(&ls.t, listen_timeout, atof(argv[2]) / 1000.0, 0.);
		ev_timer_start(loop, &ls.t);
		ev_timer_init(&ready, ready_tick, 0.3, 0.);
		ev_timer_start(loop, &ready);
	} else if (strcmp(cmd, "mem-abort") == 0 && argc == 1) {
		/* COUNT commands, the store freed with them in flight */
		for (int i = atoi(argv[0]); i > 0; i--)
			mem_incr(ms, "abort", 60000, mem_count_done, NULL);
		ev_run(loop, EVRUN_NOWAIT);
		mem_store_free(&ms);
		run_for(0.2);
		printf("ok\n");
		pending--;
		goto out;
	} else if (strcmp(cmd, "mem-watch") == 0 && argc == 2) {
		static struct mem_watch_state mw;
		double interval = atof(argv[1]) / 1000.0;
		mw.ms = ms;
		mw.left = (int)(atof(argv[0]) / interval);
		ev_timer_init(&mw.t, mem_watch_tick, interval, interval);
		ev_timer_start(loop, &mw.t);
	} else if (strcmp(cmd, "mem-selftest-local-pubsub") == 0 && argc == 0) {
		/* local backend: a publish reaches a subscriber of the same store */
		static struct listen_state ls;
		ls.want = 1;
		ls.sub = mem_subscribe(ms, "chan", listen_msg, &ls);
		ev_timer_init(&ls.t, listen_timeout, 2.0, 0.);
		ev_timer_start(loop, &ls.t);
		pending++;
		mem_publish(ms, "chan", "hello", 5, mem_done, (void *)"published");
	} else {
		pending--;
		rc = usage();
		goto out;
	}
	run_until_done();
	rc = failures > 0 ? 1 : 0;
out:
	mem_store_free(&ms);
	return rc;
}

/* --- passwords -------------------------------------------------------------------- */

static void pw_done(void *arg, enum password_result r)
{
	(void)arg;
	pending--;
	printf("%s\n", r == PASSWORD_MATCH      ? "match"
	               : r == PASSWORD_MISMATCH ? "mismatch"
	                                        : "bad-hash");
}

static int cmd_password(const char *cmd, int argc, char **argv)
{
	char *pw = read_password();
	int rc = 0;

	if (strcmp(cmd, "password-hash") == 0 && argc == 0) {
		const char *err = NULL;
		char *h = password_hash(pw, &err);
		if (h == NULL) {
			fprintf(stderr, "%s\n", err);
			rc = 1;
		} else {
			printf("%s\n", h);
			free(h);
		}
	} else if (strcmp(cmd, "password-verify") == 0 && argc == 1) {
		enum password_result r = password_verify(argv[0], pw);
		printf("%s\n", r == PASSWORD_MATCH      ? "match"
		               : r == PASSWORD_MISMATCH ? "mismatch"
		                                        : "bad-hash");
	} else if (strcmp(cmd, "password-verify-async") == 0 && argc >= 1) {
		/* every hash given is verified concurrently on a 2-thread pool */
		struct password_pool *pp = password_pool_new(loop, 2);
		for (int i = 0; i < argc; i++) {
			pending++;
			password_pool_verify(pp, argv[i], pw, pw_done, NULL);
		}
		run_until_done();
		password_pool_free(&pp);
	} else if (strcmp(cmd, "password-supported") == 0 && argc == 1) {
		printf("%s\n", password_hash_supported(argv[0]) ? "yes" : "no");
	} else {
		rc = usage();
	}
	free(pw);
	return rc;
}

/* --- directory ------------------------------------------------------------------------ */

static void rcpt_done(void *arg, const struct lookup_rcpt_result *r)
{
	static const char *const names[] = {"local", "unknown", "not-local", "tempfail"};

	(void)arg;
	pending--;
	printf("%s", names[r->status]);
	for (size_t i = 0; i < r->naccounts; i++)
		printf(" account:%lld", (long long)r->accounts[i]);
	for (size_t i = 0; i < r->nforwards; i++)
		printf(" forward:%s", r->forwards[i]);
	if (r->errstr != NULL)
		printf(" error:%s", r->errstr);
	printf("\n");
}

static void auth_done(void *arg, const struct auth_result *r)
{
	(void)arg;
	pending--;
	if (r->status == AUTH_OK)
		printf("ok %lld %s %s\n", (long long)r->account_id, r->login,
		       dir_role_name(r->role));
	else
		printf("%s %s\n", r->status == AUTH_FAIL ? "fail" : "tempfail",
		       r->reason != NULL ? r->reason : "");
}

static void token_done(void *arg, bool found, const char *name, const char *errstr)
{
	(void)arg;
	pending--;
	if (errstr != NULL)
		printf("error %s\n", errstr);
	else if (found)
		printf("found %s\n", name);
	else
		printf("not-found\n");
}

static int cmd_dir(const char *cmd, int argc, char **argv)
{
	char err[512];
	PGconn *c = NULL;
	struct pg_pool *p = NULL;
	struct password_pool *pp = NULL;
	int rc = 0;

	if (strcmp(cmd, "rcpt") == 0 || strcmp(cmd, "auth") == 0 ||
	    strcmp(cmd, "token-check") == 0) {
		char *pw = NULL;
		p = pg_pool_new(loop, &cfg.data);
		pending++;
		if (strcmp(cmd, "rcpt") == 0 && argc == 1) {
			lookup_rcpt(p, argv[0], rcpt_done, NULL);
		} else if (strcmp(cmd, "auth") == 0 && argc == 1) {
			pw = read_password();
			pp = password_pool_new(loop, 2);
			auth_check(p, pp, argv[0], pw, auth_done, NULL);
		} else if (strcmp(cmd, "token-check") == 0 && argc == 1) {
			lookup_token(p, argv[0], token_done, NULL);
		} else {
			pg_pool_free(&p);
			return usage();
		}
		run_until_done();
		free(pw);
		password_pool_free(&pp);
		pg_pool_free(&p);
		return 0;
	}
	c = connect_or_die();
	if (strcmp(cmd, "domain-add") == 0 && argc == 1) {
		rc = dir_domain_add(c, argv[0], err, sizeof(err));
	} else if (strcmp(cmd, "domain-del") == 0 && argc >= 1) {
		rc = dir_domain_del(c, argv[0], argc > 1 && strcmp(argv[1], "force") == 0, err,
		                    sizeof(err));
	} else if (strcmp(cmd, "domain-list") == 0) {
		struct dir_domain *v;
		size_t n;
		rc = dir_domain_list(c, &v, &n, err, sizeof(err));
		for (size_t i = 0; rc == 0 && i < n; i++)
			printf("%s %lld\n", v[i].name, (long long)v[i].addresses);
		if (rc == 0)
			dir_domains_free(&v, n);
	} else if (strcmp(cmd, "account-add") == 0 && argc >= 2) {
		/* password on stdin, hashed here; or a given hash as argv[2] */
		char *pw = read_password(), *hash;
		const char *e = NULL;
		int64_t id = 0;
		hash = argc >= 3 ? xstrdup(argv[2]) : password_hash(pw, &e);
		if (hash == NULL) {
			snprintf(err, sizeof(err), "%s", e);
			rc = -1;
		} else {
			rc = dir_account_add(c, argv[0], hash,
			                     dir_role_parse(argv[1]) == 1 ? DIR_ROLE_ADMIN
			                                                  : DIR_ROLE_USER,
			                     0, &id, err, sizeof(err));
			if (rc == 0)
				printf("%lld\n", (long long)id);
		}
		free(hash);
		free(pw);
	} else if (strcmp(cmd, "account-del") == 0 && argc == 1) {
		rc = dir_account_del(c, argv[0], err, sizeof(err));
	} else if (strcmp(cmd, "account-disable") == 0 && argc == 1) {
		bool t = true;
		rc = dir_account_set(c, argv[0], NULL, NULL, &t, err, sizeof(err));
	} else if (strcmp(cmd, "account-list") == 0) {
		struct dir_account *v;
		size_t n;
		rc = dir_account_list(c, &v, &n, err, sizeof(err));
		for (size_t i = 0; rc == 0 && i < n; i++) {
			printf("%s %s %d", v[i].login, dir_role_name(v[i].role), v[i].disabled);
			for (size_t j = 0; j < v[i].naddresses; j++)
				printf(" %s", v[i].addresses[j]);
			printf("\n");
		}
		if (rc == 0)
			dir_accounts_free(&v, n);
	} else if (strcmp(cmd, "address-add") == 0 && argc == 2) {
		rc = dir_address_add(c, argv[0], argv[1], err, sizeof(err));
	} else if (strcmp(cmd, "alias-add") == 0 && argc >= 2) {
		rc = dir_alias_add(c, argv[0], (const char *const *)(argv + 1), (size_t)argc - 1,
		                   err, sizeof(err));
	} else if (strcmp(cmd, "alias-del") == 0 && argc == 1) {
		rc = dir_alias_del(c, argv[0], err, sizeof(err));
	} else if (strcmp(cmd, "alias-list") == 0) {
		struct dir_alias *v;
		size_t n;
		rc = dir_alias_list(c, argc > 0 ? argv[0] : NULL, &v, &n, err, sizeof(err));
		for (size_t i = 0; rc == 0 && i < n; i++) {
			printf("%s ->", v[i].address);
			if (v[i].account != NULL)
				printf(" account:%s", v[i].account);
			for (size_t j = 0; j < v[i].ntargets; j++)
				printf(" %s", v[i].targets[j]);
			printf("\n");
		}
		if (rc == 0)
			dir_aliases_free(&v, n);
	} else if (strcmp(cmd, "token-add") == 0 && argc == 1) {
		char *tok = NULL;
		rc = dir_token_add(c, argv[0], &tok, err, sizeof(err));
		if (rc == 0)
			printf("%s\n", tok);
		free(tok);
	} else if (strcmp(cmd, "token-del") == 0 && argc == 1) {
		rc = dir_token_del(c, argv[0], err, sizeof(err));
	} else if (strcmp(cmd, "token-list") == 0) {
		struct dir_token *v;
		size_t n;
		rc = dir_token_list(c, &v, &n, err, sizeof(err));
		for (size_t i = 0; rc == 0 && i < n; i++)
			printf("%s %s %s\n", v[i].name, v[i].created,
			       v[i].last_used != NULL ? v[i].last_used : "-");
		if (rc == 0)
			dir_tokens_free(&v, n);
	} else {
		PQfinish(c);
		return usage();
	}
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	PQfinish(c);
	return rc < 0 ? 1 : 0;
}
