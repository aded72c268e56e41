/*
 * tests/fuzz/fuzz_conf.c -- libFuzzer target for the config loader.
 *
 * Loads arbitrary bytes against a table that uses every key type, an
 * optional nested section, a mandatory one, and a list of sections with its
 * own nested section and a validate hook.  conf_free always runs, so ASan
 * reports any leak on any path.  When a load succeeds, the printed
 * effective config must load again and print identically: conf_print's
 * quoting and units are checked on every accepted input, not just on the
 * unit tests' examples.
 */
#include "shared/conf.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct f_tls {
	char *cert;
	char *key;
	uint64_t handshake;
};

struct f_listener {
	char *name;
	int role;
	struct conf_strlist bind;
	struct net_cidr_set trusted;
	bool proxy;
	uint64_t idle;
	int64_t backlog;
	bool has_tls;
	struct f_tls tls;
};

struct f_limits {
	int64_t conns;
	uint64_t message;
};

struct f_top {
	char *hostname;
	char *password;
	int64_t workers;
	bool debug;
	uint64_t timeout;
	uint64_t max_size;
	int level;
	struct conf_strlist domains;
	struct conf_strlist upstreams;
	struct net_cidr_set allow;
	bool has_store;
	struct f_limits store;
	struct f_limits limits;
	struct conf_list listeners;
};

static const char *const roles[] = {"mx",    "submission", "submissions", "imap",
                                    "imaps", "http",       NULL};
static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const struct conf_key tls_keys[] = {
        {.name = "cert",
         .type = CONF_STR,
         .offset = CONF_OFF(struct f_tls, cert),
         .flags = CONF_F_REQUIRED},
        {.name = "key",
         .type = CONF_SECRET,
         .offset = CONF_OFF(struct f_tls, key),
         .flags = CONF_F_REQUIRED},
        {.name = "handshake",
         .type = CONF_DURATION,
         .offset = CONF_OFF(struct f_tls, handshake),
         .def = "10s",
         .min = 1,
         .max = 600000},
};
static const struct conf_table tls_table = {"tls", sizeof(struct f_tls), tls_keys,
                                            ARRAY_SIZE(tls_keys), NULL};

static int validate_listener(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct f_listener *l = obj;

	if (l->proxy && l->trusted.n == 0) {
		conf_error(ctx, line, col, path, "proxy needs trusted networks");
		return -1;
	}
	return 0;
}

static const struct conf_key listener_keys[] = {
        {.name = "name",
         .type = CONF_STR,
         .offset = CONF_OFF(struct f_listener, name),
         .flags = CONF_F_REQUIRED,
         .help = "a label"},
        {.name = "role",
         .type = CONF_ENUM,
         .offset = CONF_OFF(struct f_listener, role),
         .def = "mx",
         .enum_names = roles},
        {.name = "bind",
         .type = CONF_HOSTPORTS,
         .offset = CONF_OFF(struct f_listener, bind),
         .def = "0.0.0.0:25, [::]:25"},
        {.name = "trusted", .type = CONF_CIDRS, .offset = CONF_OFF(struct f_listener, trusted)},
        {.name = "proxy",
         .type = CONF_BOOL,
         .offset = CONF_OFF(struct f_listener, proxy),
         .def = "false"},
        {.name = "idle",
         .type = CONF_DURATION,
         .offset = CONF_OFF(struct f_listener, idle),
         .def = "5m"},
        {.name = "backlog",
         .type = CONF_INT,
         .offset = CONF_OFF(struct f_listener, backlog),
         .flags = CONF_F_AUTO,
         .def = "auto"},
        {.name = "tls",
         .type = CONF_SECTION,
         .offset = CONF_OFF(struct f_listener, tls),
         .sub = &tls_table,
         .present_offset = CONF_OFF(struct f_listener, has_tls)},
};
static const struct conf_table listener_table = {"listener", sizeof(struct f_listener),
                                                 listener_keys, ARRAY_SIZE(listener_keys),
                                                 validate_listener};

static const struct conf_key limits_keys[] = {
        {.name = "conns",
         .type = CONF_INT,
         .offset = CONF_OFF(struct f_limits, conns),
         .def = "100",
         .min = -5,
         .max = 100000},
        {.name = "message",
         .type = CONF_SIZE,
         .offset = CONF_OFF(struct f_limits, message),
         .def = "50MB",
         .min = 0,
         .max = (int64_t)1 << 40},
};
static const struct conf_table limits_table = {"limits", sizeof(struct f_limits), limits_keys,
                                               ARRAY_SIZE(limits_keys), NULL};

static const struct conf_key top_keys[] = {
        {.name = "hostname",
         .type = CONF_STR,
         .offset = CONF_OFF(struct f_top, hostname),
         .def = "localhost"},
        {.name = "password", .type = CONF_SECRET, .offset = CONF_OFF(struct f_top, password)},
        {.name = "workers",
         .type = CONF_INT,
         .offset = CONF_OFF(struct f_top, workers),
         .flags = CONF_F_AUTO,
         .def = "auto",
         .min = 1,
         .max = 256},
        {.name = "debug", .type = CONF_BOOL, .offset = CONF_OFF(struct f_top, debug), .def = "off"},
        {.name = "timeout",
         .type = CONF_DURATION,
         .offset = CONF_OFF(struct f_top, timeout),
         .def = "30s"},
        {.name = "max_size",
         .type = CONF_SIZE,
         .offset = CONF_OFF(struct f_top, max_size),
         .def = "64KB"},
        {.name = "level",
         .type = CONF_ENUM,
         .offset = CONF_OFF(struct f_top, level),
         .def = "info",
         .enum_names = levels},
        {.name = "domains", .type = CONF_STRLIST, .offset = CONF_OFF(struct f_top, domains)},
        {.name = "upstreams", .type = CONF_HOSTPORTS, .offset = CONF_OFF(struct f_top, upstreams)},
        {.name = "allow",
         .type = CONF_CIDRS,
         .offset = CONF_OFF(struct f_top, allow),
         .def = "127.0.0.0/8, ::1"},
        {.name = "store",
         .type = CONF_SECTION,
         .offset = CONF_OFF(struct f_top, store),
         .sub = &limits_table,
         .present_offset = CONF_OFF(struct f_top, has_store)},
        {.name = "limits",
         .type = CONF_SECTION,
         .offset = CONF_OFF(struct f_top, limits),
         .sub = &limits_table},
        {.name = "listeners",
         .type = CONF_LIST,
         .offset = CONF_OFF(struct f_top, listeners),
         .sub = &listener_table},
};
static const struct conf_table top_table = {"fuzz", sizeof(struct f_top), top_keys,
                                            ARRAY_SIZE(top_keys), NULL};

static char *print_str(const struct f_top *top)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (f == NULL)
		abort();
	conf_print(f, &top_table, top);
	fclose(f);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct f_top a, b;
	struct conf_ctx ctx;
	char *p1 = NULL, *p2 = NULL;

	memset(&a, 0, sizeof(a));
	if (conf_load_buffer("fuzz.yaml", (const char *)data, size, &top_table, &a, &ctx) == 0) {
		if (ctx.nerrs != 0)
			abort();
		p1 = print_str(&a);
		conf_ctx_free(&ctx);
		memset(&b, 0, sizeof(b));
		if (conf_load_buffer("print.yaml", p1, strlen(p1), &top_table, &b, &ctx) != 0) {
			fprintf(stderr, "printed config does not load:\n%s\n", p1);
			conf_errors_print(&ctx, stderr);
			abort();
		}
		p2 = print_str(&b);
		if (strcmp(p1, p2) != 0) {
			fprintf(stderr, "reprint differs:\n%s\n---\n%s\n", p1, p2);
			abort();
		}
		conf_free(&top_table, &b);
	} else if (ctx.nerrs == 0) {
		abort();
	}
	conf_ctx_free(&ctx);
	conf_free(&top_table, &a);
	free(p1);
	free(p2);
	return 0;
}
