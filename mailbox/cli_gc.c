/*
 * mailbox/cli_gc.c -- `tailpost-mailbox gc`: collect unreferenced blobs
 * now (see cli.h and mailbox/store/blob_gc.h).
 *
 * Kept apart from cli.c because it has options of its own (--grace,
 * --batch) and needs the blob store as well as Postgres.  It checks both
 * stores loudly first (the same messages as `check`), then runs batches
 * until nothing is left.  --grace defaults to stores.blob.gc.grace; a
 * shorter grace than the longest delivery can remove a blob between its
 * upload and its delivery's commit, so anything below 10 minutes is
 * allowed (tests, a quiet system) but warned about.
 */
#include "mailbox/cli.h"

#include "mailbox/config.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/blob_gc.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/schema.h"
#include "shared/conf.h"
#include "shared/log.h"

#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_GC_SAFE_GRACE_MS 600000ULL

struct gc_opts {
	const char *config;
	const char *grace;
	const char *batch;
	bool json;
	int nwords;
};

/*
 * Only the options gc shares with the other commands may come before the
 * word "gc": anything else there belongs to another command's syntax (a
 * value such as `--domain gc` must not turn into this command).
 */
bool cli_gc_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
			i++;
		else if (strncmp(a, "--config=", 9) != 0 && strcmp(a, "--json") != 0)
			return strcmp(a, "gc") == 0;
	}
	return false;
}

static void gc_usage(FILE *f)
{
	fprintf(f, "usage: tailpost-mailbox gc [-c FILE] [--grace DURATION] [--batch N] [--json]\n"
	           "  remove blobs no live message and no queued message references and that\n"
	           "  were unused for DURATION (default: stores.blob.gc.grace)\n");
}

static int parse(int argc, char **argv, struct gc_opts *o)
{
	bool words_only = false;

	memset(o, 0, sizeof(*o));
	o->config = getenv("TAILPOST_MAILBOX_CONFIG");
	if (o->config == NULL || o->config[0] == '\0')
		o->config = "/etc/tailpost/mailbox.yaml";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], **val = NULL;

		if (words_only || a[0] != '-' || a[1] == '\0') {
			o->nwords++;
			continue;
		}
		if (strcmp(a, "--") == 0)
			words_only = true;
		else if (strcmp(a, "--json") == 0)
			o->json = true;
		else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return 1;
		else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
			val = &o->config;
		else if (strcmp(a, "--grace") == 0)
			val = &o->grace;
		else if (strcmp(a, "--batch") == 0)
			val = &o->batch;
		else if (strncmp(a, "--config=", 9) == 0)
			o->config = a + 9;
		else if (strncmp(a, "--grace=", 8) == 0)
			o->grace = a + 8;
		else if (strncmp(a, "--batch=", 8) == 0)
			o->batch = a + 8;
		else {
			fprintf(stderr, "tailpost-mailbox: gc: unknown option '%s'\n", a);
			return -1;
		}
		if (val != NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tailpost-mailbox: %s needs a value\n", a);
				return -1;
			}
			*val = argv[++i];
		}
	}
	if (o->nwords != 1) {
		fprintf(stderr, "tailpost-mailbox: gc takes no arguments\n");
		return -1;
	}
	return 0;
}

static int fail(const struct gc_opts *o, int rc, const char *msg)
{
	if (o->json) {
		json_t *j = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
		char *s = json_dumps(j, JSON_INDENT(2));

		if (s != NULL)
			puts(s);
		free(s);
		json_decref(j);
	} else {
		fprintf(stderr, "tailpost-mailbox: %s\n", msg);
	}
	return rc;
}

int cli_gc_main(int argc, char **argv)
{
	struct gc_opts o;
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	struct ev_loop *loop = NULL;
	struct blob_store *bs = NULL;
	struct blob_gc_result res;
	PGconn *c = NULL;
	uint64_t grace_ms, batch;
	char err[1024], msg[1200];
	const char *why = NULL;
	bool loaded = false;
	int rc;

	rc = parse(argc, argv, &o);
	if (rc != 0) {
		gc_usage(rc > 0 ? stdout : stderr);
		return rc > 0 ? 0 : 2;
	}
	rc = 2;
	loaded = true;
	if (mailbox_config_load(o.config, &cfg, &ctx) < 0) {
		conf_errors_print(&ctx, stderr);
		conf_ctx_free(&ctx);
		goto out;
	}
	conf_ctx_free(&ctx);
	grace_ms = cfg.stores.blob.gc.grace_ms;
	batch = (uint64_t)cfg.stores.blob.gc.batch;
	if (o.grace != NULL && conf_parse_duration(o.grace, &grace_ms) < 0) {
		snprintf(msg, sizeof(msg), "--grace '%s': a duration like 0, 30m, 1d", o.grace);
		rc = fail(&o, 2, msg);
		goto out;
	}
	if (o.batch != NULL) {
		char *end;
		unsigned long long v = strtoull(o.batch, &end, 10);

		if (o.batch[0] < '0' || o.batch[0] > '9' || *end != '\0' || v < 1 || v > 100000) {
			snprintf(msg, sizeof(msg), "--batch '%s': a number from 1 to 100000",
			         o.batch);
			rc = fail(&o, 2, msg);
			goto out;
		}
		batch = v;
	}
	if (grace_ms < CLI_GC_SAFE_GRACE_MS)
		log_warn("msg=\"gc with a grace shorter than 10m: a delivery in progress can lose "
		         "its blob; only do this on a quiet system\" grace_ms=%" PRIu64,
		         grace_ms);

	rc = 1;
	c = pg_connect_blocking(&cfg.stores.data, err, sizeof(err));
	if (c == NULL) {
		rc = fail(&o, 1, err);
		goto out;
	}
	if (schema_check_version(c, err, sizeof(err)) < 0) {
		rc = fail(&o, 1, err);
		goto out;
	}
	loop = ev_loop_new(EVFLAG_AUTO);
	if (loop == NULL) {
		rc = fail(&o, 1, "cannot create an event loop");
		goto out;
	}
	bs = blob_store_new(loop, &cfg.stores.blob, &why);
	if (bs == NULL) {
		rc = fail(&o, 1, why != NULL ? why : "blob store");
		goto out;
	}
	if (blob_store_check_sync(bs, err, sizeof(err)) < 0) {
		rc = fail(&o, 1, err);
		goto out;
	}
	if (blob_gc_run_all(c, bs, grace_ms / 1000, batch, NULL, &res, err, sizeof(err)) < 0) {
		snprintf(msg, sizeof(msg), "%s (deleted %" PRIu64 " before the error)", err,
		         res.deleted);
		rc = fail(&o, 1, msg);
		goto out;
	}
	rc = res.failed > 0 ? 1 : 0;
	if (o.json) {
		json_t *j =
		        json_pack("{s:b, s:I, s:I, s:I, s:I}", "ok", res.failed == 0, "examined",
		                  (json_int_t)res.examined, "deleted", (json_int_t)res.deleted,
		                  "failed", (json_int_t)res.failed, "bytes", (json_int_t)res.bytes);
		char *s = json_dumps(j, JSON_INDENT(2));

		if (s != NULL)
			puts(s);
		free(s);
		json_decref(j);
	} else {
		printf("examined %" PRIu64 " deleted %" PRIu64 " failed %" PRIu64 " bytes %" PRIu64
		       "\n",
		       res.examined, res.deleted, res.failed, res.bytes);
		if (res.failed > 0)
			fprintf(stderr,
			        "tailpost-mailbox: gc: %" PRIu64
			        " blobs could not be deleted (see the log above); they are "
			        "kept and retried by the next run\n",
			        res.failed);
	}
out:
	blob_store_free(&bs);
	if (loop != NULL)
		ev_loop_destroy(loop);
	if (c != NULL)
		PQfinish(c);
	if (loaded)
		mailbox_config_free(&cfg);
	return rc;
}
