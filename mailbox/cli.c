/*
 * mailbox/cli.c -- the tailpost-mailbox command line (see cli.h).
 *
 * Each subcommand is a function taking the parsed options.  The data
 * subcommands load the config only for its `stores.data` section, open
 * one blocking Postgres connection and call the directory's
 * administration functions (mailbox/directory/directory.h), which do the
 * validation and say what is wrong; this file only reads arguments,
 * secrets and prints.
 *
 * Option parsing is by hand: options may come before or after the
 * subcommand words, `--` ends them, and a value may follow as the next
 * word or after '='.
 */
#include "mailbox/cli.h"

#include "mailbox/config.h"
#include "mailbox/directory/directory.h"
#include "mailbox/directory/password.h"
#include "mailbox/dkim/keystore.h"
#include "mailbox/outbound/dnsrecords_admin.h"
#include "mailbox/outbound/queue_admin.h"
#include "mailbox/server/server.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/schema.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/tls.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/tailpost/mailbox.yaml"
#define SECRET_MAX     1024
#define MAX_WORDS      64

struct opts {
	const char *config;
	bool json;
	bool force;
	bool hash;
	const char *role;
	const char *quota;
	/* dkim, dns and queue */
	bool all;
	const char *domain;
	const char *algorithm;
	const char *selector;
	const char *report;
	const char *mta_sts;
	const char *mta_sts_id;
	const char *dmarc;
	const char *spf_extra;
	const char *words[MAX_WORDS];
	int nwords;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: tailpost-mailbox [COMMAND] [-c FILE] [--json]\n"
	        "  serve                         run the daemon (default)\n"
	        "  check                         validate the config, print it, test the stores\n"
	        "  migrate                       apply database schema migrations\n"
	        "  domain add NAME | del NAME [--force] | list\n"
	        "  account add LOGIN [--role user|admin] [--quota BYTES] [--hash]\n"
	        "          del LOGIN | list | passwd LOGIN [--hash]\n"
	        "  alias add ADDRESS TARGET... | del ADDRESS | list [DOMAIN]\n"
	        "  token add NAME | del NAME | list\n"
	        "  gc [--grace DURATION] [--batch N]  remove unreferenced blobs now\n"
	        "  dkim generate --domain D --algorithm ed25519|rsa [--selector S]\n"
	        "       list [--domain D] | activate|deactivate|delete --domain D --selector S\n"
	        "  dns records DOMAIN [--report ADDR|none] [--mta-sts enforce|testing|none]\n"
	        "       [--mta-sts-id ID] [--dmarc none|quarantine|reject] [--spf-extra MECHS]\n"
	        "  queue list | show ID | retry ID|--all | delete ID\n"
	        "options:\n"
	        "  -c, --config FILE   the configuration (default %s)\n"
	        "  --json              machine-readable output\n"
	        "passwords and --hash values are read from stdin (or prompted for on a\n"
	        "terminal, without echo), never from the command line.\n",
	        DEFAULT_CONFIG);
}

/* The value options of the dkim, dns and queue commands: "--name VALUE"
 * sets *val_r to the slot, "--name=VALUE" stores the value.  False if a
 * is none of them. */
static bool value_opt(struct opts *o, const char *a, const char ***val_r)
{
	static const struct {
		const char *name;
		size_t off;
	} t[] = {
	        {"--domain", offsetof(struct opts, domain)},
	        {"--algorithm", offsetof(struct opts, algorithm)},
	        {"--selector", offsetof(struct opts, selector)},
	        {"--report", offsetof(struct opts, report)},
	        {"--mta-sts", offsetof(struct opts, mta_sts)},
	        {"--mta-sts-id", offsetof(struct opts, mta_sts_id)},
	        {"--dmarc", offsetof(struct opts, dmarc)},
	        {"--spf-extra", offsetof(struct opts, spf_extra)},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = strlen(t[i].name);
		const char **slot = (const char **)(void *)((char *)o + t[i].off);

		if (strcmp(a, t[i].name) == 0) {
			*val_r = slot;
			return true;
		}
		if (strncmp(a, t[i].name, n) == 0 && a[n] == '=') {
			*slot = a + n + 1;
			return true;
		}
	}
	return false;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	bool words_only = false;

	memset(o, 0, sizeof(*o));
	o->config = getenv("TAILPOST_MAILBOX_CONFIG");
	if (o->config == NULL || o->config[0] == '\0')
		o->config = DEFAULT_CONFIG;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **val = NULL;

		if (words_only || a[0] != '-' || a[1] == '\0') {
			if (o->nwords == MAX_WORDS) {
				fprintf(stderr, "tailpost-mailbox: too many arguments\n");
				return -1;
			}
			o->words[o->nwords++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			words_only = true;
		} else if (strcmp(a, "--json") == 0) {
			o->json = true;
		} else if (strcmp(a, "--force") == 0) {
			o->force = true;
		} else if (strcmp(a, "--hash") == 0) {
			o->hash = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("tailpost-mailbox %s\n", TAILPOST_VERSION);
			exit(0);
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			val = &o->config;
		} else if (strcmp(a, "--role") == 0) {
			val = &o->role;
		} else if (strcmp(a, "--quota") == 0) {
			val = &o->quota;
		} else if (strncmp(a, "--config=", 9) == 0) {
			o->config = a + 9;
		} else if (strncmp(a, "--role=", 7) == 0) {
			o->role = a + 7;
		} else if (strncmp(a, "--quota=", 8) == 0) {
			o->quota = a + 8;
		} else if (strcmp(a, "--all") == 0) {
			o->all = true;
		} else if (value_opt(o, a, &val)) {
			/* --name VALUE (val set) or --name=VALUE (stored) */
		} else if (strncmp(a, "--password", 10) == 0) {
			fprintf(stderr, "tailpost-mailbox: passwords are never taken from the "
			                "command line: give it on stdin\n");
			return -1;
		} else {
			fprintf(stderr, "tailpost-mailbox: unknown option '%s'\n", a);
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
	return 0;
}

/* --- output helpers ------------------------------------------------------- */

static void json_out(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (s != NULL) {
		puts(s);
		free(s);
	}
	json_decref(j);
}

static int fail_msg(const struct opts *o, const char *msg)
{
	if (o->json)
		json_out(json_pack("{s:b, s:s}", "ok", 0, "error", msg));
	else
		fprintf(stderr, "tailpost-mailbox: %s\n", msg);
	return 1;
}

static int ok_msg(const struct opts *o, const char *msg)
{
	if (o->json)
		json_out(json_pack("{s:b, s:s}", "ok", 1, "message", msg));
	else
		printf("%s\n", msg);
	return 0;
}

/* --- secrets from stdin ------------------------------------------------------ */

static int read_line(FILE *in, char *buf, size_t bufsz)
{
	size_t n;

	if (fgets(buf, (int)bufsz, in) == NULL)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] != '\n' && !feof(in)) {
		OPENSSL_cleanse(buf, bufsz);
		return -1; /* longer than we accept */
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

static int prompt_noecho(const char *prompt, char *buf, size_t bufsz)
{
	struct termios old, quiet;
	int rc;

	fprintf(stderr, "%s", prompt);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return -1;
	rc = read_line(stdin, buf, bufsz);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fprintf(stderr, "\n");
	return rc;
}

/*
 * A secret from stdin: prompted twice without echo on a terminal, else
 * the first line.  what names it in prompts ("password", "hash").
 */
static int read_secret(const char *what, char *buf, size_t bufsz)
{
	if (isatty(STDIN_FILENO)) {
		char again[SECRET_MAX];
		char p1[64], p2[64];
		int rc;

		snprintf(p1, sizeof(p1), "New %s: ", what);
		snprintf(p2, sizeof(p2), "Repeat %s: ", what);
		if (prompt_noecho(p1, buf, bufsz) < 0 ||
		    prompt_noecho(p2, again, sizeof(again)) < 0)
			return -1;
		rc = strcmp(buf, again) == 0 ? 0 : -2;
		OPENSSL_cleanse(again, sizeof(again));
		if (rc < 0) {
			fprintf(stderr, "tailpost-mailbox: the two entries differ\n");
			return -1;
		}
	} else if (read_line(stdin, buf, bufsz) < 0) {
		fprintf(stderr, "tailpost-mailbox: no %s on stdin\n", what);
		return -1;
	}
	if (buf[0] == '\0') {
		fprintf(stderr, "tailpost-mailbox: empty %s\n", what);
		return -1;
	}
	return 0;
}

/* The stored form: a new argon2id hash of a password, or a checked hash
 * given as is (--hash).  malloc'd, or NULL after a message. */
static char *secret_to_hash(const struct opts *o)
{
	char buf[SECRET_MAX];
	char *hash = NULL;
	const char *why = NULL;

	if (read_secret(o->hash ? "hash" : "password", buf, sizeof(buf)) < 0)
		return NULL;
	if (o->hash) {
		if (!password_hash_supported(buf))
			fprintf(stderr, "tailpost-mailbox: not a supported hash ($argon2id$, $y$, "
			                "$6$, $2b$)\n");
		else
			hash = xstrdup(buf);
	} else {
		hash = password_hash(buf, &why);
		if (hash == NULL)
			fprintf(stderr, "tailpost-mailbox: cannot hash: %s\n", why ? why : "?");
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return hash;
}

/* --- config and database --------------------------------------------------------- */

static int load_config(const struct opts *o, struct mailbox_config *cfg)
{
	struct conf_ctx ctx = {0};
	int rc = mailbox_config_load(o->config, cfg, &ctx);

	if (rc < 0) {
		if (o->json) {
			json_t *errs = json_array();
			for (size_t i = 0; i < ctx.nerrs; i++)
				json_array_append_new(errs, json_string(ctx.errs[i].msg));
			json_out(json_pack("{s:b, s:o}", "ok", 0, "config_errors", errs));
		} else {
			conf_errors_print(&ctx, stderr);
		}
	}
	conf_warnings_print(&ctx, stderr);
	conf_ctx_free(&ctx);
	return rc;
}

/* Load the config and connect to the data store; NULL after a message. */
static PGconn *open_db(const struct opts *o, struct mailbox_config *cfg, int *rc_r)
{
	char err[1024];
	PGconn *c;

	if (load_config(o, cfg) < 0) {
		*rc_r = 2;
		return NULL;
	}
	c = pg_connect_blocking(&cfg->stores.data, err, sizeof(err));
	if (c == NULL) {
		*rc_r = fail_msg(o, err);
		return NULL;
	}
	return c;
}

/* --- check ---------------------------------------------------------------------------- */

static int cmd_check(const struct opts *o)
{
	struct mailbox_config cfg;
	struct ev_loop *loop;
	json_t *stores = json_object(), *tls = json_array();
	char err[1024];
	const char *why = NULL;
	bool all_ok = true;
	char *printed = NULL;
	size_t plen = 0;
	FILE *mf;

	if (load_config(o, &cfg) < 0) {
		json_decref(stores);
		json_decref(tls);
		mailbox_config_free(&cfg);
		return 2;
	}
	mf = open_memstream(&printed, &plen);
	if (mf != NULL) {
		mailbox_config_print(mf, &cfg);
		fclose(mf);
	}
	if (!o->json)
		printf("# %s: configuration is valid; effective configuration:\n%s\n", o->config,
		       printed != NULL ? printed : "");

	/* certificates of the listeners */
	for (size_t i = 0; i < cfg.listeners.n; i++) {
		const struct mailbox_listener_conf *l = mailbox_config_listener(&cfg, i);
		struct tls_ctx *ctx;

		if (l->tls.mode == MAILBOX_TLS_NONE)
			continue;
		ctx = tls_ctx_new(l->tls.cert, l->tls.key, &why);
		json_array_append_new(tls,
		                      json_pack("{s:s, s:b, s:s?}", "listener", l->name, "ok",
		                                ctx != NULL, "error", ctx != NULL ? NULL : why));
		if (ctx == NULL) {
			all_ok = false;
			if (!o->json)
				printf("listener %s: tls: FAILED: %s\n", l->name, why);
		} else if (!o->json) {
			printf("listener %s: tls: ok (%s)\n", l->name, l->tls.cert);
		}
		tls_ctx_free(&ctx);
	}

	/* data */
	{
		PGconn *c = pg_connect_blocking(&cfg.stores.data, err, sizeof(err));
		char ep[512];
		int ver = -1;

		stores_endpoint_redact(cfg.stores.data.postgres, ep, sizeof(ep));
		if (c != NULL && schema_version(c, &ver, err, sizeof(err)) == 0) {
			bool current = ver == schema_latest();
			json_object_set_new(stores, "data",
			                    json_pack("{s:b, s:s, s:i, s:i}", "ok", 1, "endpoint",
			                              ep, "schema", ver, "schema_needed",
			                              schema_latest()));
			if (!o->json)
				printf("data store: ok (%s, schema %d, this build needs %d%s)\n",
				       ep, ver, schema_latest(), current ? "" : ": run migrate");
			if (!current)
				all_ok = false;
		} else {
			json_object_set_new(stores, "data",
			                    json_pack("{s:b, s:s, s:s}", "ok", 0, "endpoint", ep,
			                              "error", err));
			if (!o->json)
				printf("data store: FAILED: %s\n", err);
			all_ok = false;
		}
		if (c != NULL)
			PQfinish(c);
	}
	loop = ev_loop_new(EVFLAG_AUTO);
	/* blob */
	{
		struct blob_store *bs = blob_store_new(loop, &cfg.stores.blob, &why);
		int r = bs != NULL ? blob_store_check_sync(bs, err, sizeof(err)) : -1;

		if (bs == NULL)
			snprintf(err, sizeof(err), "blob store: %s", why != NULL ? why : "?");
		json_object_set_new(stores, "blob",
		                    json_pack("{s:b, s:s, s:s, s:s?}", "ok", r == 0, "kind",
		                              bs != NULL ? blob_store_kind(bs) : "?", "endpoint",
		                              bs != NULL ? blob_store_endpoint(bs) : "?", "error",
		                              r == 0 ? NULL : err));
		if (!o->json) {
			if (r == 0)
				printf("blob store: ok (%s %s)\n", blob_store_kind(bs),
				       blob_store_endpoint(bs));
			else
				printf("blob store: FAILED: %s\n", err);
		}
		if (r != 0)
			all_ok = false;
		blob_store_free(&bs);
	}
	/* memory */
	{
		struct mem_store *ms = mem_store_new(loop, &cfg.stores.memory, &why);
		int r = ms != NULL ? mem_store_check_sync(ms, err, sizeof(err)) : -1;

		if (ms == NULL)
			snprintf(err, sizeof(err), "memory store: %s", why != NULL ? why : "?");
		json_object_set_new(stores, "memory",
		                    json_pack("{s:b, s:s, s:s, s:s?}", "ok", r == 0, "kind",
		                              ms != NULL ? mem_store_kind(ms) : "?", "endpoint",
		                              ms != NULL ? mem_store_endpoint(ms) : "?", "error",
		                              r == 0 ? NULL : err));
		if (!o->json) {
			if (r == 0)
				printf("memory store: ok (%s %s)%s\n", mem_store_kind(ms),
				       mem_store_endpoint(ms),
				       cfg.stores.memory.redis == NULL
				               ? " -- in-process: one instance only"
				               : "");
			else
				printf("memory store: FAILED: %s\n", err);
		}
		if (r != 0)
			all_ok = false;
		mem_store_free(&ms);
	}
	ev_loop_destroy(loop);
	if (getenv("TAILPOST_RECOVERY_ADMIN") != NULL && !o->json)
		printf("recovery admin: TAILPOST_RECOVERY_ADMIN is set%s\n",
		       cfg.admin.recovery ? " and will be honoured"
		                          : " but admin.recovery is false");
	if (o->json)
		json_out(json_pack("{s:b, s:s, s:o, s:o}", "ok", all_ok, "effective_config",
		                   printed != NULL ? printed : "", "tls", tls, "stores", stores));
	else {
		json_decref(tls);
		json_decref(stores);
		printf("%s\n", all_ok ? "check: ok" : "check: FAILED");
	}
	free(printed);
	mailbox_config_free(&cfg);
	return all_ok ? 0 : 1;
}

/* --- migrate ------------------------------------------------------------------------- */

static int cmd_migrate(const struct opts *o)
{
	struct mailbox_config cfg;
	char err[1024], msg[256];
	int rc = 1, from = 0, to = 0;
	PGconn *c = open_db(o, &cfg, &rc);

	if (c == NULL)
		goto out;
	if (schema_migrate(c, &from, &to, err, sizeof(err)) < 0) {
		rc = fail_msg(o, err);
		goto out;
	}
	if (o->json) {
		json_out(json_pack("{s:b, s:i, s:i}", "ok", 1, "from", from, "to", to));
		rc = 0;
	} else {
		if (from == to)
			snprintf(msg, sizeof(msg), "schema is up to date (version %d)", to);
		else
			snprintf(msg, sizeof(msg), "schema migrated from version %d to %d", from,
			         to);
		rc = ok_msg(o, msg);
	}
out:
	if (c != NULL)
		PQfinish(c);
	mailbox_config_free(&cfg);
	return rc;
}

/* --- domain / account / alias / token --------------------------------------------------- */

static int need_words(const struct opts *o, int n, const char *what)
{
	if (o->nwords < n) {
		fprintf(stderr, "tailpost-mailbox: %s\n", what);
		return -1;
	}
	return 0;
}

static int cmd_domain(const struct opts *o, PGconn *c)
{
	char err[1024], msg[600];
	const char *sub = o->nwords > 1 ? o->words[1] : "";

	if (strcmp(sub, "add") == 0 || strcmp(sub, "del") == 0) {
		int r;
		if (need_words(o, 3, "usage: domain add|del NAME") < 0)
			return 2;
		r = strcmp(sub, "add") == 0
		            ? dir_domain_add(c, o->words[2], err, sizeof(err))
		            : dir_domain_del(c, o->words[2], o->force, err, sizeof(err));
		if (r < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "domain %s %s", o->words[2],
		         strcmp(sub, "add") == 0 ? "added" : "deleted");
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "list") == 0) {
		struct dir_domain *v = NULL;
		size_t n = 0;
		if (dir_domain_list(c, &v, &n, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		if (o->json) {
			json_t *a = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(a, json_pack("{s:s, s:I}", "name", v[i].name,
				                                   "addresses",
				                                   (json_int_t)v[i].addresses));
			json_out(a);
		} else {
			for (size_t i = 0; i < n; i++)
				printf("%-40s %lld addresses\n", v[i].name,
				       (long long)v[i].addresses);
		}
		dir_domains_free(&v, n);
		return 0;
	}
	fprintf(stderr, "usage: tailpost-mailbox domain add NAME | del NAME [--force] | list\n");
	return 2;
}

static int cmd_account(const struct opts *o, PGconn *c)
{
	char err[1024], msg[600];
	const char *sub = o->nwords > 1 ? o->words[1] : "";

	if (strcmp(sub, "add") == 0) {
		int role = DIR_ROLE_USER;
		long long quota = 0;
		char *hash, *end = NULL;
		int r;

		if (need_words(o, 3,
		               "usage: account add LOGIN [--role user|admin] [--quota BYTES]") < 0)
			return 2;
		if (o->role != NULL && (role = dir_role_parse(o->role)) < 0) {
			fprintf(stderr, "tailpost-mailbox: --role must be user or admin\n");
			return 2;
		}
		if (o->quota != NULL) {
			uint64_t q;
			errno = 0;
			quota = strtoll(o->quota, &end, 10);
			if (end == o->quota || *end != '\0' || quota < 0 || errno != 0) {
				if (conf_parse_size(o->quota, &q) < 0 || q > INT64_MAX) {
					fprintf(stderr, "tailpost-mailbox: --quota: bytes or "
					                "a size like 2GB\n");
					return 2;
				}
				quota = (long long)q;
			}
		}
		hash = secret_to_hash(o);
		if (hash == NULL)
			return 1;
		r = dir_account_add(c, o->words[2], hash, (enum dir_role)role, quota, NULL, err,
		                    sizeof(err));
		OPENSSL_cleanse(hash, strlen(hash));
		free(hash);
		if (r < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "account %s added", o->words[2]);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "passwd") == 0) {
		char *hash;
		int r;

		if (need_words(o, 3, "usage: account passwd LOGIN") < 0)
			return 2;
		hash = secret_to_hash(o);
		if (hash == NULL)
			return 1;
		r = dir_account_set_hash(c, o->words[2], hash, err, sizeof(err));
		OPENSSL_cleanse(hash, strlen(hash));
		free(hash);
		if (r < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "password of %s changed", o->words[2]);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "del") == 0) {
		if (need_words(o, 3, "usage: account del LOGIN") < 0)
			return 2;
		if (dir_account_del(c, o->words[2], err, sizeof(err)) < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "account %s deleted", o->words[2]);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "list") == 0) {
		struct dir_account *v = NULL;
		size_t n = 0;
		json_t *arr = json_array();

		if (dir_account_list(c, &v, &n, err, sizeof(err)) < 0) {
			json_decref(arr);
			return fail_msg(o, err);
		}
		for (size_t i = 0; i < n; i++) {
			json_t *addrs = json_array();
			for (size_t k = 0; k < v[i].naddresses; k++)
				json_array_append_new(addrs, json_string(v[i].addresses[k]));
			if (o->json) {
				json_array_append_new(
				        arr,
				        json_pack("{s:s, s:s, s:I, s:b, s:o}", "login", v[i].login,
				                  "role", dir_role_name(v[i].role), "quota_bytes",
				                  (json_int_t)v[i].quota_bytes, "disabled",
				                  v[i].disabled, "addresses", addrs));
			} else {
				printf("%-32s %-5s quota=%lld%s", v[i].login,
				       dir_role_name(v[i].role), (long long)v[i].quota_bytes,
				       v[i].disabled ? " disabled" : "");
				for (size_t k = 0; k < v[i].naddresses; k++)
					printf("%s%s", k == 0 ? " addresses=" : ",",
					       v[i].addresses[k]);
				printf("\n");
				json_decref(addrs);
			}
		}
		dir_accounts_free(&v, n);
		if (o->json)
			json_out(arr);
		else
			json_decref(arr);
		return 0;
	}
	fprintf(stderr, "usage: tailpost-mailbox account add LOGIN | del LOGIN | list | passwd "
	                "LOGIN\n");
	return 2;
}

static int cmd_alias(const struct opts *o, PGconn *c)
{
	char err[1024], msg[600];
	const char *sub = o->nwords > 1 ? o->words[1] : "";

	if (strcmp(sub, "add") == 0) {
		if (need_words(o, 4, "usage: alias add ADDRESS TARGET...") < 0)
			return 2;
		if (dir_alias_add(c, o->words[2], o->words + 3, (size_t)(o->nwords - 3), err,
		                  sizeof(err)) < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "alias %s added", o->words[2]);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "del") == 0) {
		if (need_words(o, 3, "usage: alias del ADDRESS") < 0)
			return 2;
		if (dir_alias_del(c, o->words[2], err, sizeof(err)) < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "alias %s deleted", o->words[2]);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "list") == 0) {
		struct dir_alias *v = NULL;
		size_t n = 0;
		json_t *arr = json_array();

		if (dir_alias_list(c, o->nwords > 2 ? o->words[2] : NULL, &v, &n, err,
		                   sizeof(err)) < 0) {
			json_decref(arr);
			return fail_msg(o, err);
		}
		for (size_t i = 0; i < n; i++) {
			if (o->json) {
				json_t *e = json_pack("{s:s}", "address", v[i].address);
				if (v[i].account != NULL) {
					json_object_set_new(e, "account",
					                    json_string(v[i].account));
				} else {
					json_t *t = json_array();
					for (size_t k = 0; k < v[i].ntargets; k++)
						json_array_append_new(t,
						                      json_string(v[i].targets[k]));
					json_object_set_new(e, "targets", t);
				}
				json_array_append_new(arr, e);
				continue;
			}
			printf("%-40s -> ", v[i].address);
			if (v[i].account != NULL)
				printf("account %s", v[i].account);
			for (size_t k = 0; k < v[i].ntargets; k++)
				printf("%s%s", k == 0 ? "" : ", ", v[i].targets[k]);
			printf("\n");
		}
		dir_aliases_free(&v, n);
		if (o->json)
			json_out(arr);
		else
			json_decref(arr);
		return 0;
	}
	fprintf(stderr, "usage: tailpost-mailbox alias add ADDRESS TARGET... | del ADDRESS | "
	                "list [DOMAIN]\n");
	return 2;
}

static int cmd_token(const struct opts *o, PGconn *c)
{
	char err[1024], msg[600];
	const char *sub = o->nwords > 1 ? o->words[1] : "";

	if (strcmp(sub, "add") == 0) {
		char *token = NULL;

		if (need_words(o, 3, "usage: token add NAME") < 0)
			return 2;
		if (dir_token_add(c, o->words[2], &token, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		/* shown once: only its hash is stored */
		if (o->json) {
			json_out(json_pack("{s:b, s:s, s:s}", "ok", 1, "name", o->words[2], "token",
			                   token));
		} else {
			printf("%s\n", token);
			fprintf(stderr, "token %s created; it is shown only now: store it safely\n",
			        o->words[2]);
		}
		OPENSSL_cleanse(token, strlen(token));
		free(token);
		return 0;
	}
	if (strcmp(sub, "del") == 0) {
		if (need_words(o, 3, "usage: token del NAME") < 0)
			return 2;
		if (dir_token_del(c, o->words[2], err, sizeof(err)) < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "token %s deleted", o->words[2]);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "list") == 0) {
		struct dir_token *v = NULL;
		size_t n = 0;
		json_t *arr = json_array();

		if (dir_token_list(c, &v, &n, err, sizeof(err)) < 0) {
			json_decref(arr);
			return fail_msg(o, err);
		}
		for (size_t i = 0; i < n; i++) {
			if (o->json)
				json_array_append_new(arr,
				                      json_pack("{s:s, s:s, s:s?}", "name",
				                                v[i].name, "created", v[i].created,
				                                "last_used", v[i].last_used));
			else
				printf("%-32s created %s last used %s\n", v[i].name, v[i].created,
				       v[i].last_used != NULL ? v[i].last_used : "never");
		}
		dir_tokens_free(&v, n);
		if (o->json)
			json_out(arr);
		else
			json_decref(arr);
		return 0;
	}
	fprintf(stderr, "usage: tailpost-mailbox token add NAME | del NAME | list\n");
	return 2;
}

/* --- dkim / dns / queue (outbound administration) ------------------------------------ */

/* A TXT value as zone-file strings of at most 255 bytes (RFC 1035 3.3.14;
 * the values we make hold no '"' or '\'). */
static void print_txt_strings(const char *txt)
{
	size_t n = strlen(txt);

	for (size_t off = 0; off < n || off == 0; off += 255) {
		size_t k = n - off < 255 ? n - off : 255;
		printf("%s\"%.*s\"", off == 0 ? "" : " ", (int)k, txt + off);
		if (n == 0)
			break;
	}
}

static void print_key_record(const struct dkim_keystore_entry *e)
{
	printf("%s._domainkey.%s. IN TXT ", e->selector, e->domain);
	print_txt_strings(e->txt);
	printf("\n");
}

static int cmd_dkim(const struct opts *o, PGconn *c)
{
	char err[1024], msg[600];
	const char *sub = o->nwords > 1 ? o->words[1] : "";

	if (strcmp(sub, "generate") == 0) {
		struct dkim_keystore_entry e;
		enum dkim_alg alg;
		json_t *j;

		if (o->domain == NULL || o->algorithm == NULL || o->nwords > 2) {
			fprintf(stderr, "usage: tailpost-mailbox dkim generate --domain D "
			                "--algorithm ed25519|rsa [--selector S]\n");
			return 2;
		}
		if (dkim_alg_parse(o->algorithm, &alg) < 0) {
			fprintf(stderr,
			        "tailpost-mailbox: unknown algorithm '%s' (ed25519 or rsa)\n",
			        o->algorithm);
			return 2;
		}
		if (dkim_keystore_generate(c, o->domain, alg, o->selector, &e, err, sizeof(err)) <
		    0)
			return fail_msg(o, err);
		if (o->json) {
			j = dkim_keystore_entry_json(&e);
			json_object_set_new(j, "ok", json_true());
			json_out(j);
		} else {
			printf("selector %s (%s) generated for %s; publish this record:\n",
			       e.selector, dkim_alg_name(e.alg), e.domain);
			print_key_record(&e);
		}
		dkim_keystore_entry_clear(&e);
		return 0;
	}
	if (strcmp(sub, "list") == 0) {
		struct dkim_keystore_entry *v = NULL;
		size_t n = 0;

		if (dkim_keystore_list(c,
		                       o->domain != NULL ? o->domain
		                       : o->nwords > 2   ? o->words[2]
		                                         : NULL,
		                       &v, &n, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		if (o->json) {
			json_t *a = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(a, dkim_keystore_entry_json(&v[i]));
			json_out(a);
		} else {
			for (size_t i = 0; i < n; i++)
				printf("%-32s %-16s %-15s %-8s created %s\n", v[i].domain,
				       v[i].selector, dkim_alg_name(v[i].alg),
				       v[i].active ? "active" : "inactive", v[i].created);
		}
		dkim_keystore_entries_free(&v, n);
		return 0;
	}
	if (strcmp(sub, "activate") == 0 || strcmp(sub, "deactivate") == 0 ||
	    strcmp(sub, "delete") == 0) {
		int r;

		if (o->domain == NULL || o->selector == NULL) {
			fprintf(stderr, "usage: tailpost-mailbox dkim %s --domain D --selector S\n",
			        sub);
			return 2;
		}
		if (strcmp(sub, "delete") == 0)
			r = dkim_keystore_delete(c, o->domain, o->selector, err, sizeof(err));
		else
			r = dkim_keystore_set_active(c, o->domain, o->selector,
			                             strcmp(sub, "activate") == 0, err,
			                             sizeof(err));
		if (r < 0)
			return fail_msg(o, err);
		snprintf(msg, sizeof(msg), "dkim key %s of %s %s", o->selector, o->domain,
		         strcmp(sub, "delete") == 0 ? "deleted"
		         : sub[0] == 'a'            ? "activated"
		                                    : "deactivated");
		return ok_msg(o, msg);
	}
	fprintf(stderr, "usage: tailpost-mailbox dkim generate --domain D --algorithm ed25519|rsa "
	                "[--selector S] | list [--domain D] | activate|deactivate|delete "
	                "--domain D --selector S\n");
	return 2;
}

static int cmd_dns(const struct opts *o)
{
	struct mailbox_config cfg;
	struct dnsrecords_admin_opts d;
	struct dnsrecords *r = NULL;
	char err[1024], *note = NULL;
	int rc = 1;
	PGconn *c;

	if (o->nwords != 3 || strcmp(o->words[1], "records") != 0) {
		fprintf(stderr, "usage: tailpost-mailbox dns records DOMAIN [--report ADDR|none] "
		                "[--mta-sts enforce|testing|none] [--mta-sts-id ID] "
		                "[--dmarc none|quarantine|reject] [--spf-extra MECHANISMS]\n");
		return 2;
	}
	c = open_db(o, &cfg, &rc);
	if (c == NULL)
		goto out;
	memset(&d, 0, sizeof(d));
	d.domain = o->words[2];
	d.mail_host = cfg.hostname;
	d.cert_file = dnsrecords_admin_cert(&cfg);
	d.report_addr = o->report;
	d.mta_sts_mode = o->mta_sts;
	d.mta_sts_id = o->mta_sts_id;
	d.dmarc_policy = o->dmarc;
	d.spf_extra = o->spf_extra;
	if (dnsrecords_admin_build(c, &d, &r, &note, err, sizeof(err)) < 0) {
		rc = fail_msg(o, err);
		goto out;
	}
	if (note != NULL)
		fprintf(stderr, "tailpost-mailbox: %s\n", note);
	if (o->json) {
		char *s = dnsrecords_json(r);
		puts(s);
		free(s);
	} else {
		struct buf b;

		buf_init(&b, 0);
		dnsrecords_zone(r, &b);
		fwrite(buf_ptr(&b), 1, buf_len(&b), stdout);
		buf_free(&b);
	}
	rc = 0;
out:
	free(note);
	dnsrecords_free(&r);
	if (c != NULL)
		PQfinish(c);
	mailbox_config_free(&cfg);
	return rc;
}

static void print_queue_msg(const struct queue_admin_msg *m)
{
	printf("%lld %s <%s> %lld bytes%s%s\n", (long long)m->id, m->created, m->sender,
	       (long long)m->size, m->account != NULL ? " account=" : "",
	       m->account != NULL ? m->account : "");
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct queue_admin_rcpt *r = &m->rcpts[i];

		printf("  %-40s %-7s attempts=%lld next=%s", r->rcpt, r->status,
		       (long long)r->attempts, r->next_attempt);
		if (r->lease_until != NULL)
			printf(" leased-until=%s", r->lease_until);
		if (r->last_error != NULL)
			printf(" last-error=\"%s\"", r->last_error);
		printf("\n");
	}
}

static int queue_id_arg(const struct opts *o, int64_t *id_r)
{
	if (o->nwords != 3 || queue_admin_parse_id(o->words[2], id_r) < 0) {
		if (o->nwords == 3)
			fprintf(stderr, "tailpost-mailbox: '%s' is not a queue id\n", o->words[2]);
		else
			fprintf(stderr, "usage: tailpost-mailbox queue %s ID\n", o->words[1]);
		return -1;
	}
	return 0;
}

static int cmd_queue(const struct opts *o, PGconn *c)
{
	char err[1024], msg[600];
	const char *sub = o->nwords > 1 ? o->words[1] : "";
	int64_t id = 0, n = 0;

	if (strcmp(sub, "list") == 0) {
		struct queue_admin_msg *v = NULL;
		size_t nm = 0;

		if (o->nwords > 2) {
			fprintf(stderr, "usage: tailpost-mailbox queue list\n");
			return 2;
		}
		if (queue_admin_list(c, 0, &v, &nm, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		if (o->json) {
			json_t *a = json_array();
			for (size_t i = 0; i < nm; i++)
				json_array_append_new(a, queue_admin_msg_json(&v[i]));
			json_out(a);
		} else if (nm == 0) {
			printf("the queue is empty\n");
		} else {
			for (size_t i = 0; i < nm; i++)
				print_queue_msg(&v[i]);
		}
		queue_admin_msgs_free(&v, nm);
		return 0;
	}
	if (strcmp(sub, "show") == 0) {
		struct queue_admin_msg m;

		if (queue_id_arg(o, &id) < 0)
			return 2;
		if (queue_admin_show(c, id, &m, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		if (o->json)
			json_out(queue_admin_msg_json(&m));
		else
			print_queue_msg(&m);
		queue_admin_msg_clear(&m);
		return 0;
	}
	if (strcmp(sub, "retry") == 0) {
		if (o->all ? o->nwords != 2 : queue_id_arg(o, &id) < 0) {
			if (o->all)
				fprintf(stderr, "usage: tailpost-mailbox queue retry ID | --all\n");
			return 2;
		}
		if (queue_admin_retry(c, id, &n, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		if (o->json) {
			json_out(json_pack("{s:b, s:I}", "ok", 1, "retried", (json_int_t)n));
			return 0;
		}
		if (o->all)
			snprintf(msg, sizeof(msg), "%lld pending recipients due now", (long long)n);
		else
			snprintf(msg, sizeof(msg),
			         "queue message %lld: %lld pending recipients due now",
			         (long long)id, (long long)n);
		return ok_msg(o, msg);
	}
	if (strcmp(sub, "delete") == 0) {
		if (queue_id_arg(o, &id) < 0)
			return 2;
		if (queue_admin_delete(c, id, &n, err, sizeof(err)) < 0)
			return fail_msg(o, err);
		if (o->json) {
			json_out(json_pack("{s:b, s:I, s:I}", "ok", 1, "deleted", (json_int_t)id,
			                   "recipients", (json_int_t)n));
			return 0;
		}
		snprintf(msg, sizeof(msg),
		         "queue message %lld deleted (%lld recipients, no bounce)", (long long)id,
		         (long long)n);
		return ok_msg(o, msg);
	}
	fprintf(stderr,
	        "usage: tailpost-mailbox queue list | show ID | retry ID|--all | delete ID\n");
	return 2;
}

typedef int data_cmd(const struct opts *o, PGconn *c);

static int run_data(const struct opts *o, data_cmd *fn)
{
	struct mailbox_config cfg;
	int rc = 1;
	PGconn *c = open_db(o, &cfg, &rc);

	if (c != NULL) {
		rc = fn(o, c);
		PQfinish(c);
	}
	mailbox_config_free(&cfg);
	return rc;
}

int cli_main(int argc, char **argv)
{
	struct opts o;
	const char *cmd;

	log_init("mailbox", LOG_L_INFO);
	if (cli_gc_wanted(argc, argv))
		return cli_gc_main(argc, argv); /* own options: mailbox/cli_gc.c */
	if (parse_opts(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	cmd = o.nwords > 0 ? o.words[0] : "serve";
	if (strcmp(cmd, "serve") == 0) {
		if (o.nwords > 1) {
			usage(stderr);
			return 2;
		}
		return server_run(o.config);
	}
	if (strcmp(cmd, "check") == 0)
		return cmd_check(&o);
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(&o);
	if (strcmp(cmd, "domain") == 0)
		return run_data(&o, cmd_domain);
	if (strcmp(cmd, "account") == 0)
		return run_data(&o, cmd_account);
	if (strcmp(cmd, "alias") == 0)
		return run_data(&o, cmd_alias);
	if (strcmp(cmd, "token") == 0)
		return run_data(&o, cmd_token);
	if (strcmp(cmd, "dkim") == 0)
		return run_data(&o, cmd_dkim);
	if (strcmp(cmd, "dns") == 0)
		return cmd_dns(&o);
	if (strcmp(cmd, "queue") == 0)
		return run_data(&o, cmd_queue);
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "tailpost-mailbox: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
