/*
 * tests/unit/test_conf.c -- the table-driven config loader.
 *
 * One representative table (every key type, a nested optional section, a
 * list of sections with its own nested section and a validate hook) is
 * loaded from YAML snippets.  Error cases are a table of input and the
 * exact messages expected, FILE:LINE:COL included; the effective config
 * printed by conf_print must load back to the same values.
 */
#include "shared/conf.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct t_tls {
	char *cert;
	char *key;
	uint64_t handshake;
};

struct t_listener {
	char *name;
	int role;
	struct conf_strlist bind;
	struct net_cidr_set trusted;
	bool proxy;
	uint64_t idle;
	bool has_tls;
	struct t_tls tls;
};

struct t_limits {
	int64_t conns;
	uint64_t message;
};

struct t_top {
	char *hostname;
	char *password;
	int64_t workers;
	int64_t port;
	bool debug;
	uint64_t timeout;
	uint64_t max_size;
	int level;
	struct conf_strlist domains;
	struct conf_strlist upstreams;
	struct net_cidr_set allow;
	struct t_limits limits;
	bool has_limits;
	struct conf_list listeners;
	char *motd;
};

static const char *const roles[] = {"mx", "submission", "imap", NULL};
static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const struct conf_key tls_keys[] = {
        {.name = "cert",
         .type = CONF_STR,
         .offset = CONF_OFF(struct t_tls, cert),
         .flags = CONF_F_REQUIRED},
        {.name = "key",
         .type = CONF_SECRET,
         .offset = CONF_OFF(struct t_tls, key),
         .flags = CONF_F_REQUIRED},
        {.name = "handshake",
         .type = CONF_DURATION,
         .offset = CONF_OFF(struct t_tls, handshake),
         .def = "10s",
         .min = 100,
         .max = 60000},
};
static const struct conf_table tls_table = {"tls", sizeof(struct t_tls), tls_keys,
                                            ARRAY_SIZE(tls_keys), NULL};

static int validate_listener(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct t_listener *l = obj;

	if (l->proxy && l->trusted.n == 0) {
		conf_error(ctx, line, col, path, "proxy: true needs trusted networks");
		return -1;
	}
	return 0;
}

static const struct conf_key listener_keys[] = {
        {.name = "name",
         .type = CONF_STR,
         .offset = CONF_OFF(struct t_listener, name),
         .flags = CONF_F_REQUIRED,
         .help = "shown in logs"},
        {.name = "role",
         .type = CONF_ENUM,
         .offset = CONF_OFF(struct t_listener, role),
         .def = "mx",
         .enum_names = roles},
        {.name = "bind",
         .type = CONF_HOSTPORTS,
         .offset = CONF_OFF(struct t_listener, bind),
         .def = "127.0.0.1:2525, [::1]:2525"},
        {.name = "trusted", .type = CONF_CIDRS, .offset = CONF_OFF(struct t_listener, trusted)},
        {.name = "proxy",
         .type = CONF_BOOL,
         .offset = CONF_OFF(struct t_listener, proxy),
         .def = "false"},
        {.name = "idle",
         .type = CONF_DURATION,
         .offset = CONF_OFF(struct t_listener, idle),
         .def = "5m"},
        {.name = "tls",
         .type = CONF_SECTION,
         .offset = CONF_OFF(struct t_listener, tls),
         .sub = &tls_table,
         .present_offset = CONF_OFF(struct t_listener, has_tls)},
};
static const struct conf_table listener_table = {"listener", sizeof(struct t_listener),
                                                 listener_keys, ARRAY_SIZE(listener_keys),
                                                 validate_listener};

static const struct conf_key limits_keys[] = {
        {.name = "conns",
         .type = CONF_INT,
         .offset = CONF_OFF(struct t_limits, conns),
         .def = "100",
         .min = 1,
         .max = 100000},
        {.name = "message",
         .type = CONF_SIZE,
         .offset = CONF_OFF(struct t_limits, message),
         .def = "50MB",
         .min = 1024,
         .max = (int64_t)1 << 30},
};
static const struct conf_table limits_table = {"limits", sizeof(struct t_limits), limits_keys,
                                               ARRAY_SIZE(limits_keys), NULL};

static const struct conf_key top_keys[] = {
        {.name = "hostname",
         .type = CONF_STR,
         .offset = CONF_OFF(struct t_top, hostname),
         .flags = CONF_F_REQUIRED},
        {.name = "password", .type = CONF_SECRET, .offset = CONF_OFF(struct t_top, password)},
        {.name = "workers",
         .type = CONF_INT,
         .offset = CONF_OFF(struct t_top, workers),
         .flags = CONF_F_AUTO,
         .def = "auto",
         .min = 1,
         .max = 64},
        {.name = "port",
         .type = CONF_INT,
         .offset = CONF_OFF(struct t_top, port),
         .def = "25",
         .min = 1,
         .max = 65535},
        {.name = "debug",
         .type = CONF_BOOL,
         .offset = CONF_OFF(struct t_top, debug),
         .def = "false"},
        {.name = "timeout",
         .type = CONF_DURATION,
         .offset = CONF_OFF(struct t_top, timeout),
         .def = "30s",
         .min = 1000,
         .max = 3600000},
        {.name = "max_size",
         .type = CONF_SIZE,
         .offset = CONF_OFF(struct t_top, max_size),
         .def = "64KB"},
        {.name = "level",
         .type = CONF_ENUM,
         .offset = CONF_OFF(struct t_top, level),
         .def = "info",
         .enum_names = levels},
        {.name = "domains", .type = CONF_STRLIST, .offset = CONF_OFF(struct t_top, domains)},
        {.name = "upstreams", .type = CONF_HOSTPORTS, .offset = CONF_OFF(struct t_top, upstreams)},
        {.name = "allow",
         .type = CONF_CIDRS,
         .offset = CONF_OFF(struct t_top, allow),
         .def = "127.0.0.0/8, ::1"},
        {.name = "limits",
         .type = CONF_SECTION,
         .offset = CONF_OFF(struct t_top, limits),
         .sub = &limits_table,
         .present_offset = CONF_OFF(struct t_top, has_limits)},
        {.name = "listeners",
         .type = CONF_LIST,
         .offset = CONF_OFF(struct t_top, listeners),
         .sub = &listener_table},
        {.name = "motd", .type = CONF_STR, .offset = CONF_OFF(struct t_top, motd)},
};
static const struct conf_table top_table = {"test", sizeof(struct t_top), top_keys,
                                            ARRAY_SIZE(top_keys), NULL};

/* Load text as "t.yaml"; *errs_r gets every message joined by '\n'. */
static int load(const char *text, struct t_top *top, char **errs_r)
{
	struct conf_ctx ctx;
	char *all = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&all, &len);
	int rc;

	memset(top, 0, sizeof(*top));
	rc = conf_load_buffer("t.yaml", text, strlen(text), &top_table, top, &ctx);
	conf_errors_print(&ctx, f);
	fclose(f);
	/* Drop the final newline so expectations read naturally. */
	if (len > 0 && all[len - 1] == '\n')
		all[len - 1] = '\0';
	if (rc == 0 && ctx.nerrs != 0)
		rc = -2; /* inconsistent: must not happen */
	conf_ctx_free(&ctx);
	*errs_r = all;
	return rc;
}

static char *print_str(const struct t_top *top)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	conf_print(f, &top_table, top);
	fclose(f);
	return s;
}

UNIT_TEST(conf_load_full)
{
	static const char text[] = "hostname: mx.example.org\n"
	                           "password: hunter2\n"
	                           "workers: 4\n"
	                           "port: 2525\n"
	                           "debug: yes\n"
	                           "timeout: 90s\n"
	                           "max_size: 10MB\n"
	                           "level: warn\n"
	                           "domains: [example.org, example.net]\n"
	                           "upstreams:\n"
	                           "  - 192.0.2.1:25\n"
	                           "  - '[2001:db8::1]:2525'\n"
	                           "allow: 10.0.0.0/8\n"
	                           "limits:\n"
	                           "  conns: 7\n"
	                           "listeners:\n"
	                           "  - name: mx\n"
	                           "    bind: 0.0.0.0:25\n"
	                           "    trusted: [100.64.0.0/10, 'fd7a:115c:a1e0::/48']\n"
	                           "    proxy: true\n"
	                           "    tls:\n"
	                           "      cert: /etc/c.pem\n"
	                           "      key: /etc/k.pem\n"
	                           "      handshake: 250ms\n"
	                           "  - name: imap\n"
	                           "    role: imap\n";
	struct t_top c;
	char *errs;
	struct net_addr a;

	CHECK_MSG(load(text, &c, &errs) == 0, "errors: %s", errs);
	free(errs);
	CHECK_STR(c.hostname, "mx.example.org");
	CHECK_STR(c.password, "hunter2");
	CHECK_INT(c.workers, 4);
	CHECK_INT(c.port, 2525);
	CHECK(c.debug);
	CHECK_INT(c.timeout, 90000);
	CHECK_INT(c.max_size, 10 << 20);
	CHECK_INT(c.level, 2);
	CHECK_INT(c.domains.n, 2);
	CHECK_STR(c.domains.v[1], "example.net");
	CHECK_INT(c.upstreams.n, 2);
	CHECK_STR(c.upstreams.v[1], "[2001:db8::1]:2525");
	CHECK_INT(c.allow.n, 1);
	net_addr_parse("10.9.8.7", 0, &a);
	CHECK(net_cidr_set_contains(&c.allow, &a));
	net_addr_parse("127.0.0.1", 0, &a);
	CHECK(!net_cidr_set_contains(&c.allow, &a)); /* the file replaces the default */
	CHECK(c.has_limits);
	CHECK_INT(c.limits.conns, 7);
	CHECK_INT(c.limits.message, 50 << 20);
	CHECK_INT(c.listeners.n, 2);
	struct t_listener *l = c.listeners.v;
	CHECK_STR(l[0].name, "mx");
	CHECK_INT(l[0].role, 0);
	CHECK_INT(l[0].bind.n, 1);
	CHECK_STR(l[0].bind.v[0], "0.0.0.0:25");
	CHECK_INT(l[0].trusted.n, 2);
	CHECK(l[0].proxy);
	CHECK_INT(l[0].idle, 300000);
	CHECK(l[0].has_tls);
	CHECK_STR(l[0].tls.cert, "/etc/c.pem");
	CHECK_STR(l[0].tls.key, "/etc/k.pem");
	CHECK_INT(l[0].tls.handshake, 250);
	/* Defaults applied per element. */
	CHECK_STR(l[1].name, "imap");
	CHECK_INT(l[1].role, 2);
	CHECK_INT(l[1].bind.n, 2);
	CHECK_STR(l[1].bind.v[1], "[::1]:2525");
	CHECK(!l[1].proxy);
	CHECK_INT(l[1].idle, 300000);
	CHECK(!l[1].has_tls);
	CHECK_INT(l[1].tls.handshake, 10000); /* absent optional section: defaults */
	CHECK(l[1].tls.cert == NULL);
	CHECK(c.motd == NULL);
	conf_free(&top_table, &c);
	CHECK(c.hostname == NULL && c.listeners.v == NULL && c.listeners.n == 0);
	CHECK(c.allow.v == NULL && c.domains.v == NULL);
	conf_free(&top_table, &c); /* twice is harmless */
}

UNIT_TEST(conf_load_defaults)
{
	struct t_top c;
	char *errs;
	struct net_addr a;

	CHECK_MSG(load("hostname: h\n", &c, &errs) == 0, "errors: %s", errs);
	free(errs);
	CHECK(c.password == NULL);
	CHECK_INT(c.workers, -1); /* "auto" */
	CHECK_INT(c.port, 25);
	CHECK(!c.debug);
	CHECK_INT(c.timeout, 30000);
	CHECK_INT(c.max_size, 65536);
	CHECK_INT(c.level, 1);
	CHECK_INT(c.domains.n, 0);
	CHECK_INT(c.allow.n, 2);
	net_addr_parse("127.1.2.3", 0, &a);
	CHECK(net_cidr_set_contains(&c.allow, &a));
	net_addr_parse("::1", 0, &a);
	CHECK(net_cidr_set_contains(&c.allow, &a));
	CHECK(!c.has_limits);
	CHECK_INT(c.limits.conns, 100);
	CHECK_INT(c.listeners.n, 0);
	conf_free(&top_table, &c);

	/* Null values mean "not set": defaults apply. */
	CHECK_MSG(load("hostname: h\nport:\nlimits: ~\nlisteners: null\nallow:\n", &c, &errs) == 0,
	          "errors: %s", errs);
	free(errs);
	CHECK_INT(c.port, 25);
	CHECK(!c.has_limits);
	CHECK_INT(c.allow.n, 2);
	conf_free(&top_table, &c);

	/* An empty mapping enables an optional section with its defaults. */
	CHECK_MSG(load("hostname: h\nlimits: {}\nworkers: auto\n", &c, &errs) == 0, "errors: %s",
	          errs);
	free(errs);
	CHECK(c.has_limits);
	CHECK_INT(c.limits.message, 50 << 20);
	CHECK_INT(c.workers, -1);
	conf_free(&top_table, &c);

	/* A scalar is a one-item list; flow and block lists both work. */
	CHECK_MSG(load("hostname: h\ndomains: a.example\nupstreams: [ 'h:1' ]\n", &c, &errs) == 0,
	          "errors: %s", errs);
	free(errs);
	CHECK_INT(c.domains.n, 1);
	CHECK_STR(c.domains.v[0], "a.example");
	CHECK_INT(c.upstreams.n, 1);
	conf_free(&top_table, &c);
}

/* Every message, in order, joined by newlines. */
static const struct {
	const char *yaml;
	const char *errs;
} error_cases[] = {
        {"hostname: h\nbogus: 1\n", "t.yaml:2:1: key 'bogus': unknown key"},
        {"hostname: h\nhostnam: x\n",
         "t.yaml:2:1: key 'hostnam': unknown key (did you mean 'hostname'?)"},
        {"hostname: h\nhostname: i\n", "t.yaml:2:1: key 'hostname': duplicate key (first at 1:1)"},
        {"port: 25\n", "t.yaml:1:1: key 'hostname': required key is missing"},
        {"", "t.yaml:1:1: key 'hostname': required key is missing"},
        {"hostname:\n", "t.yaml:1:10: key 'hostname': required key has no value"},
        {"hostname: h\nport: 0\n", "t.yaml:2:7: key 'port': value 0 out of range (1..65535)"},
        {"hostname: h\nport: 65536\n",
         "t.yaml:2:7: key 'port': value 65536 out of range (1..65535)"},
        {"hostname: h\nport: auto\n", "t.yaml:2:7: key 'port': invalid integer 'auto'"},
        {"hostname: h\nport: 9223372036854775808\n",
         "t.yaml:2:7: key 'port': invalid integer '9223372036854775808'"},
        {"hostname: h\nworkers: 65\n", "t.yaml:2:10: key 'workers': value 65 out of range (1..64)"},
        {"hostname: h\nworkers: many\n",
         "t.yaml:2:10: key 'workers': invalid integer 'many' (a number or 'auto')"},
        {"hostname: h\ndebug: maybe\n",
         "t.yaml:2:8: key 'debug': invalid boolean 'maybe' (use true or false)"},
        {"hostname: h\ntimeout: 30\n",
         "t.yaml:2:10: key 'timeout': invalid duration '30' (a number with a unit: ms, s, m, h, "
         "d)"},
        {"hostname: h\ntimeout: 10x\n",
         "t.yaml:2:10: key 'timeout': invalid duration '10x' (a number with a unit: ms, s, m, h, "
         "d)"},
        {"hostname: h\ntimeout: 2h\n",
         "t.yaml:2:10: key 'timeout': duration '2h' out of range (1s..1h)"},
        {"hostname: h\nmax_size: 1TB\n",
         "t.yaml:2:11: key 'max_size': invalid size '1TB' (bytes, or a number with B, KB, MB or "
         "GB)"},
        {"hostname: h\nlevel: loud\n",
         "t.yaml:2:8: key 'level': invalid value 'loud' (expected one of: debug, info, warn, "
         "error)"},
        {"hostname: h\nupstreams: [a:1, 'b', '[::1]:0']\n",
         "t.yaml:2:18: key 'upstreams[1]': invalid host:port 'b': missing port\n"
         "t.yaml:2:23: key 'upstreams[2]': invalid host:port '[::1]:0': port out of range "
         "(1-65535)"},
        {"hostname: h\nallow:\n  - 10.0.0.0/8\n  - 100.64.0.1/10\n",
         "t.yaml:4:5: key 'allow[1]': invalid CIDR '100.64.0.1/10': host bits set beyond the /10 "
         "prefix (network is 100.64.0.0/10)"},
        {"hostname: h\nallow: 10.0.0.0/33\n",
         "t.yaml:2:8: key 'allow': invalid CIDR '10.0.0.0/33': prefix length over 32 for IPv4"},
        {"hostname: h\ndomains: {a: b}\n",
         "t.yaml:2:10: key 'domains': expected a list, got a mapping"},
        {"hostname: h\ndomains: [[a]]\n",
         "t.yaml:2:11: key 'domains[0]': expected a string, got a list"},
        {"hostname: h\ndomains: [a, '', ~]\n", "t.yaml:2:18: key 'domains[2]': empty list item"},
        {"hostname: [h]\n", "t.yaml:1:11: key 'hostname': expected a scalar, got a list"},
        {"hostname: h\nlimits: 5\n", "t.yaml:2:9: key 'limits': expected a mapping, got a scalar"},
        {"hostname: h\nlisteners: {name: x}\n",
         "t.yaml:2:12: key 'listeners': expected a list of mappings, got a mapping"},
        {"hostname: h\nlisteners: [x]\n",
         "t.yaml:2:13: key 'listeners[0]': expected a mapping, got a scalar"},
        {"hostname: h\nlimits:\n  conns: 0\n  message: 1KB\n  extra: 1\n",
         "t.yaml:3:10: key 'limits.conns': value 0 out of range (1..100000)\n"
         "t.yaml:5:3: key 'limits.extra': unknown key"},
        {"hostname: h\nlimits:\n  message: 2GB\n",
         "t.yaml:3:12: key 'limits.message': size '2GB' out of range (1KB..1GB)"},
        {"hostname: h\nlisteners:\n  - name: a\n  - role: imap\n    idle: 1\n",
         "t.yaml:5:11: key 'listeners[1].idle': invalid duration '1' (a number with a unit: ms, "
         "s, m, h, d)\n"
         "t.yaml:4:5: key 'listeners[1].name': required key is missing"},
        {"hostname: h\nlisteners:\n  - name: a\n    tls: {cert: c}\n",
         "t.yaml:4:10: key 'listeners[0].tls.key': required key is missing"},
        {"hostname: h\nlisteners:\n  - name: a\n    tls:\n      cert: c\n      key: k\n"
         "      handshake: 1m30s\n",
         "t.yaml:7:18: key 'listeners[0].tls.handshake': invalid duration '1m30s' (a number with "
         "a unit: ms, s, m, h, d)"},
        /* the validate hook, at the element's position */
        {"hostname: h\nlisteners:\n  - name: a\n  - name: b\n    proxy: true\n",
         "t.yaml:4:5: key 'listeners[1]': proxy: true needs trusted networks"},
        /* no validate call on an element that already has errors */
        {"hostname: h\nlisteners:\n  - name: b\n    proxy: true\n    idle: x\n",
         "t.yaml:5:11: key 'listeners[0].idle': invalid duration 'x' (a number with a unit: ms, "
         "s, m, h, d)"},
        /* several errors at once, in document order, then missing keys */
        {"port: x\ndebug: 2\nfoo: 1\n",
         "t.yaml:1:7: key 'port': invalid integer 'x'\n"
         "t.yaml:2:8: key 'debug': invalid boolean '2' (use true or false)\n"
         "t.yaml:3:1: key 'foo': unknown key\n"
         "t.yaml:1:1: key 'hostname': required key is missing"},
        /* YAML-level problems */
        {"hostname: [h\n",
         "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
         "sequence at 1:11)"},
        {"hostname: h\n  port: 1\n",
         "t.yaml:2:7: YAML syntax error: mapping values are not allowed in this context"},
        {"hostname: &a h\nmotd: *a\n",
         "t.yaml:2:7: YAML aliases are not supported (write the value out)"},
        {"hostname: !!str h\n", "t.yaml:1:11: YAML tags are not supported"},
        {"hostname: h\n---\nhostname: i\n", "t.yaml:2:1: a second YAML document is not supported"},
        {"- a\n- b\n", "t.yaml:1:1: expected a mapping at the top level, got a list"},
        {"just text\n", "t.yaml:1:1: expected a mapping at the top level, got a scalar"},
        {"hostname: h\n[a]: 1\n", "t.yaml:2:1: a key must be a string, got a list"},
        {"hostname: \"a\\0b\"\n", "t.yaml:1:11: key 'hostname': value contains a NUL byte"},
        {"hostname: \"h\xff\"\n", "t.yaml:1:13: invalid input: invalid leading UTF-8 octet"},
        {"hostname: h\nlisteners:\n  - name: a\n    bogus:\n      deep: [1]\n",
         "t.yaml:4:5: key 'listeners[0].bogus': unknown key"},
};

UNIT_TEST(conf_error_table)
{
	for (size_t i = 0; i < ARRAY_SIZE(error_cases); i++) {
		struct t_top c;
		char *errs;
		int rc = load(error_cases[i].yaml, &c, &errs);
		conf_free(&top_table, &c);
		CHECK_MSG(rc == -1, "case %zu should fail (rc %d)", i, rc);
		CHECK_MSG(strcmp(errs, error_cases[i].errs) == 0,
		          "case %zu:\n      got: %s\n     want: %s", i, errs, error_cases[i].errs);
		free(errs);
	}
}

UNIT_TEST(conf_env_substitution)
{
	struct t_top c;
	char *errs;

	setenv("TP_CONF_HOST", "env.example", 1);
	setenv("TP_CONF_PORT", "587", 1);
	setenv("TP_CONF_EMPTY", "", 1);
	unsetenv("TP_CONF_UNSET");
	CHECK_MSG(load("hostname: ${TP_CONF_HOST}\n"
	               "port: \"${TP_CONF_PORT}\"\n"
	               "password: ${TP_CONF_UNSET:-fallback}\n"
	               "motd: ${TP_CONF_EMPTY:-was empty}\n"
	               /* in a flow list '{' and '}' need quotes (YAML 1.1 7.3.3) */
	               "domains: ['${TP_CONF_HOST}', '$${TP_CONF_HOST}', $$x, '$file:/x']\n",
	               &c, &errs) == 0,
	          "errors: %s", errs);
	free(errs);
	CHECK_STR(c.hostname, "env.example");
	CHECK_INT(c.port, 587);
	CHECK_STR(c.password, "fallback");
	CHECK_STR(c.motd, "was empty");
	CHECK_INT(c.domains.n, 4);
	CHECK_STR(c.domains.v[0], "env.example");
	CHECK_STR(c.domains.v[1], "${TP_CONF_HOST}");
	CHECK_STR(c.domains.v[2], "$x");
	CHECK_STR(c.domains.v[3], "file:/x");
	conf_free(&top_table, &c);

	/* Set but empty without a default is the empty string. */
	CHECK(load("hostname: ${TP_CONF_EMPTY}\n", &c, &errs) == 0);
	free(errs);
	CHECK_STR(c.hostname, "");
	conf_free(&top_table, &c);

	CHECK(load("hostname: ${TP_CONF_UNSET}\nport: ${TP_CONF_HOST}\nmotd: ${1BAD}\n"
	           "password: ${TP_CONF_HOST\n",
	           &c, &errs) == -1);
	conf_free(&top_table, &c);
	CHECK_STR(errs,
	          "t.yaml:1:11: key 'hostname': environment variable TP_CONF_UNSET is not "
	          "set\n"
	          "t.yaml:2:7: key 'port': invalid integer 'env.example'\n"
	          "t.yaml:3:7: key 'motd': invalid variable reference '${1BAD}'\n"
	          "t.yaml:4:11: key 'password': unterminated ${...} (write $${ for a literal)");
	free(errs);
}

UNIT_TEST(conf_literal_secret_warns)
{
	struct conf_ctx ctx;
	struct t_top c;
	char *all = NULL;
	size_t len = 0;
	FILE *f;
	const char *text = "hostname: h\npassword: hunter2\n";

	setenv("TP_CONF_PW", "x", 1);
	memset(&c, 0, sizeof(c));
	CHECK(conf_load_buffer("t.yaml", text, strlen(text), &top_table, &c, &ctx) == 0);
	CHECK_STR(c.password, "hunter2"); /* still loads */
	CHECK_INT(ctx.nwarns, 1);
	f = open_memstream(&all, &len);
	conf_warnings_print(&ctx, f);
	fclose(f);
	CHECK_STR(all, "t.yaml:2:11: key 'password': warning: a secret written in the file; use "
	               "${ENV_NAME} or file:/path\n");
	free(all);
	conf_ctx_free(&ctx);
	conf_free(&top_table, &c);

	/* from the environment or a file: no warning */
	text = "hostname: h\npassword: ${TP_CONF_PW}\n";
	memset(&c, 0, sizeof(c));
	CHECK(conf_load_buffer("t.yaml", text, strlen(text), &top_table, &c, &ctx) == 0);
	CHECK_INT(ctx.nwarns, 0);
	conf_ctx_free(&ctx);
	conf_free(&top_table, &c);
}

static char *write_temp(const char *content, size_t n)
{
	char tmpl[] = "/tmp/tp_conf_testXXXXXX";
	int fd = mkstemp(tmpl);
	ssize_t w;

	if (fd < 0)
		return NULL;
	w = write(fd, content, n);
	close(fd);
	if (w != (ssize_t)n) {
		unlink(tmpl);
		return NULL;
	}
	return strdup(tmpl);
}

UNIT_TEST(conf_file_substitution)
{
	struct t_top c;
	char *errs, *text;
	char *p1 = write_temp("s3cr3t value\r\n", 14);
	char *p2 = write_temp("one\n\n", 5);
	char *p3 = write_temp("a\0b", 3);

	CHECK(p1 != NULL && p2 != NULL && p3 != NULL);
	text = malloc(512);
	snprintf(text, 512, "hostname: file:%s\npassword: file:%s\n", p2, p1);
	CHECK_MSG(load(text, &c, &errs) == 0, "errors: %s", errs);
	free(errs);
	/* Exactly one trailing newline (LF or CRLF) is trimmed. */
	CHECK_STR(c.password, "s3cr3t value");
	CHECK_STR(c.hostname, "one\n");
	conf_free(&top_table, &c);

	snprintf(text, 512,
	         "hostname: file:%s\nmotd: file:/nonexistent/tp\npassword: file:/tmp\n"
	         "domains: [file:%s]\nport: 'file:'\n",
	         p1, p3);
	CHECK(load(text, &c, &errs) == -1);
	conf_free(&top_table, &c);
	char want[512];
	snprintf(want, sizeof(want),
	         "t.yaml:2:7: key 'motd': cannot read file '/nonexistent/tp': No such file or "
	         "directory\n"
	         "t.yaml:3:11: key 'password': cannot read file '/tmp': not a regular file\n"
	         "t.yaml:4:11: key 'domains[0]': value contains a NUL byte\n"
	         "t.yaml:5:7: key 'port': file: needs a path");
	CHECK_STR(errs, want);
	/* The secret's content never appears in a message. */
	CHECK(strstr(errs, "s3cr3t") == NULL);
	free(errs);
	unlink(p1);
	unlink(p2);
	unlink(p3);
	free(p1);
	free(p2);
	free(p3);
	free(text);
}

UNIT_TEST(conf_scalar_parsers)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t ms;
	} dur[] = {
	        {"0", 0, 0},
	        {"0s", 0, 0},
	        {"250ms", 0, 250},
	        {"3s", 0, 3000},
	        {"30m", 0, 1800000},
	        {"2h", 0, 7200000},
	        {"5d", 0, 432000000},
	        {"1", -1, 0},
	        {"s", -1, 0},
	        {"", -1, 0},
	        {"-1s", -1, 0},
	        {"1.5s", -1, 0},
	        {"1 s", -1, 0},
	        {"1S", -1, 0},
	        {"1sec", -1, 0},
	        {"99999999999999999999s", -1, 0},
	        {"213503982335d", -1, 0},
	        {"213503982334d", 0, 213503982334ull * 86400000ull},
	};
	static const struct {
		const char *in;
		int rc;
		uint64_t b;
	} sz[] = {
	        {"0", 0, 0},
	        {"512", 0, 512},
	        {"512B", 0, 512},
	        {"64KB", 0, 65536},
	        {"64kb", 0, 65536},
	        {"50MB", 0, 50u << 20},
	        {"1GB", 0, 1u << 30},
	        {"1TB", -1, 0},
	        {"KB", -1, 0},
	        {"1 KB", -1, 0},
	        {"-1", -1, 0},
	        {"1K", -1, 0},
	        {"17179869184GB", -1, 0},
	        {"18446744073709551615", 0, UINT64_MAX},
	        {"18446744073709551616", -1, 0},
	};
	static const struct {
		const char *in;
		int rc;
		bool v;
	} bl[] = {
	        {"true", 0, true},   {"True", 0, true},    {"yes", 0, true},  {"on", 0, true},
	        {"false", 0, false}, {"NO", 0, false},     {"off", 0, false}, {"1", -1, false},
	        {"", -1, false},     {"truex", -1, false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(dur); i++) {
		uint64_t v = 12345;
		CHECK_MSG(conf_parse_duration(dur[i].in, &v) == dur[i].rc, "duration '%s'",
		          dur[i].in);
		if (dur[i].rc == 0)
			CHECK_MSG(v == dur[i].ms, "duration '%s' = %" PRIu64, dur[i].in, v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(sz); i++) {
		uint64_t v = 12345;
		CHECK_MSG(conf_parse_size(sz[i].in, &v) == sz[i].rc, "size '%s'", sz[i].in);
		if (sz[i].rc == 0)
			CHECK_MSG(v == sz[i].b, "size '%s' = %" PRIu64, sz[i].in, v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bl); i++) {
		bool v = !bl[i].v;
		CHECK_MSG(conf_parse_bool(bl[i].in, &v) == bl[i].rc, "bool '%s'", bl[i].in);
		if (bl[i].rc == 0)
			CHECK_MSG(v == bl[i].v, "bool '%s'", bl[i].in);
	}
}

static bool strlist_eq(const struct conf_strlist *a, const struct conf_strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

static bool cidrs_eq(const struct net_cidr_set *a, const struct net_cidr_set *b)
{
	return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

UNIT_TEST(conf_print_round_trip)
{
	static const char text[] =
	        "hostname: \"tricky \\\"quoted\\\" \\\\ back\\tslash\\n\\x01 caf\\u00e9 "
	        "\\u0085\\u2028 #not-a-comment\"\n"
	        "password: hunter2\n"
	        "workers: auto\n"
	        "timeout: 90000ms\n"
	        "max_size: 3072\n"
	        "domains:\n  - ${TP_RT_LITERAL}\n  - '$file:/etc/x'\n  - '$$'\n  - ''\n"
	        "  - 'true'\n  - '~'\n  - ' lead'\n"
	        "upstreams: ['[2001:db8::1]:25', mail.example:587]\n"
	        "allow: ['::ffff:10.0.0.0/104', 2001:db8::/32, 192.0.2.7]\n"
	        "listeners:\n"
	        "  - name: a\n"
	        "    tls: {cert: /c, key: /k}\n"
	        "    trusted: 100.64.0.0/10\n"
	        "    proxy: on\n"
	        "  - name: b\n"
	        "    bind: []\n";
	struct t_top a, b;
	char *errs, *p1, *p2;

	setenv("TP_RT_LITERAL", "${NOT_EXPANDED_AGAIN}", 1);
	CHECK_MSG(load(text, &a, &errs) == 0, "errors: %s", errs);
	free(errs);
	CHECK_STR(a.domains.v[0], "${NOT_EXPANDED_AGAIN}");
	CHECK_STR(a.domains.v[1], "file:/etc/x");
	CHECK_STR(a.domains.v[2], "$");
	p1 = print_str(&a);
	/* Secrets never printed; readable units. */
	CHECK(strstr(p1, "hunter2") == NULL);
	CHECK(strstr(p1, "password: <redacted>\n") != NULL);
	CHECK(strstr(p1, "workers: auto\n") != NULL);
	CHECK(strstr(p1, "timeout: 90s\n") != NULL);
	CHECK(strstr(p1, "max_size: 3KB\n") != NULL);
	CHECK(strstr(p1, "limits: ~\n") != NULL);
	CHECK(strstr(p1, "motd: ~\n") != NULL);
	CHECK(strstr(p1, "  - name: \"a\"  # shown in logs\n") != NULL);

	CHECK_MSG(load(p1, &b, &errs) == 0, "reload errors: %s\n%s", errs, p1);
	free(errs);
	CHECK_STR(b.hostname, a.hostname);
	CHECK_STR(b.password, "<redacted>");
	CHECK_INT(b.workers, a.workers);
	CHECK_INT(b.port, a.port);
	CHECK_INT(b.debug, a.debug);
	CHECK_INT(b.timeout, a.timeout);
	CHECK_INT(b.max_size, a.max_size);
	CHECK_INT(b.level, a.level);
	CHECK(strlist_eq(&a.domains, &b.domains));
	CHECK(strlist_eq(&a.upstreams, &b.upstreams));
	CHECK(cidrs_eq(&a.allow, &b.allow));
	CHECK_INT(b.has_limits, a.has_limits);
	CHECK_INT(b.limits.conns, a.limits.conns);
	CHECK_INT(b.limits.message, a.limits.message);
	CHECK(str_eq(a.motd, b.motd));
	CHECK_INT(b.listeners.n, a.listeners.n);
	for (size_t i = 0; i < a.listeners.n; i++) {
		const struct t_listener *x = (struct t_listener *)a.listeners.v + i;
		const struct t_listener *y = (struct t_listener *)b.listeners.v + i;
		CHECK_STR(y->name, x->name);
		CHECK_INT(y->role, x->role);
		CHECK(strlist_eq(&x->bind, &y->bind));
		CHECK(cidrs_eq(&x->trusted, &y->trusted));
		CHECK_INT(y->proxy, x->proxy);
		CHECK_INT(y->idle, x->idle);
		CHECK_INT(y->has_tls, x->has_tls);
		CHECK(str_eq(x->tls.cert, y->tls.cert));
		CHECK_INT(y->tls.handshake, x->tls.handshake);
	}
	/* Printing the reloaded config gives the same text. */
	p2 = print_str(&b);
	CHECK_STR(p2, p1);
	free(p1);
	free(p2);
	conf_free(&top_table, &a);
	conf_free(&top_table, &b);
}

UNIT_TEST(conf_print_shape)
{
	struct t_top c;
	char *errs, *p;

	CHECK(load("hostname: h\nlisteners:\n  - name: a\n    tls: {cert: c, key: k}\n", &c,
	           &errs) == 0);
	free(errs);
	p = print_str(&c);
	CHECK_STR(p, "# effective configuration (test); secrets are redacted\n"
	             "hostname: \"h\"\n"
	             "password: ~\n"
	             "workers: auto\n"
	             "port: 25\n"
	             "debug: false\n"
	             "timeout: 30s\n"
	             "max_size: 64KB\n"
	             "level: \"info\"\n"
	             "domains: []\n"
	             "upstreams: []\n"
	             "allow: [\"127.0.0.0/8\", \"::1/128\"]\n"
	             "limits: ~\n"
	             "listeners:\n"
	             "  - name: \"a\"  # shown in logs\n"
	             "    role: \"mx\"\n"
	             "    bind: [\"127.0.0.1:2525\", \"[::1]:2525\"]\n"
	             "    trusted: []\n"
	             "    proxy: false\n"
	             "    idle: 5m\n"
	             "    tls:\n"
	             "      cert: \"c\"\n"
	             "      key: <redacted>\n"
	             "      handshake: 10s\n"
	             "motd: ~\n");
	free(p);
	conf_free(&top_table, &c);
}

UNIT_TEST(conf_load_file_and_missing)
{
	struct t_top c;
	struct conf_ctx ctx;
	char *path = write_temp("hostname: f\nport: 0\n", 20);
	char want[256];

	CHECK(path != NULL);
	memset(&c, 0, sizeof(c));
	CHECK(conf_load_file(path, &top_table, &c, &ctx) == -1);
	CHECK_INT(ctx.nerrs, 1);
	snprintf(want, sizeof(want), "%s:2:7: key 'port': value 0 out of range (1..65535)", path);
	CHECK_STR(ctx.errs[0].msg, want);
	CHECK_STR(c.hostname, "f");
	conf_ctx_free(&ctx);
	conf_free(&top_table, &c);
	unlink(path);
	free(path);

	memset(&c, 0, sizeof(c));
	CHECK(conf_load_file("/nonexistent/tp.yaml", &top_table, &c, &ctx) == -1);
	CHECK_INT(ctx.nerrs, 1);
	CHECK_STR(ctx.errs[0].msg, "/nonexistent/tp.yaml: cannot open: No such file or directory");
	conf_ctx_free(&ctx);
	conf_free(&top_table, &c);
}

UNIT_TEST(conf_too_many_errors)
{
	char *text = malloc(300 * 16 + 32), *p = text;
	struct t_top c;
	struct conf_ctx ctx;

	p += sprintf(p, "hostname: h\n");
	for (int i = 0; i < 300; i++)
		p += sprintf(p, "k%d: 1\n", i);
	memset(&c, 0, sizeof(c));
	CHECK(conf_load_buffer("t.yaml", text, strlen(text), &top_table, &c, &ctx) == -1);
	CHECK_INT(ctx.nerrs, 201);
	CHECK_STR(ctx.errs[0].msg, "t.yaml:2:1: key 'k0': unknown key");
	CHECK_STR(ctx.errs[200].msg, "t.yaml: too many errors, stopped reporting");
	conf_ctx_free(&ctx);
	conf_free(&top_table, &c);
	free(text);
}

UNIT_TEST(conf_deep_nesting_refused)
{
	char text[400];
	struct t_top c;
	char *errs;
	size_t n = 0;

	n += (size_t)sprintf(text, "hostname: ");
	for (int i = 0; i < 100; i++)
		text[n++] = '[';
	text[n] = '\0';
	CHECK(load(text, &c, &errs) == -1);
	conf_free(&top_table, &c);
	/* The top-level mapping is level 1, so the 64th '[' (column 11 + 63) is
	 * one too many. */
	CHECK_STR(errs, "t.yaml:1:74: nested deeper than 64 levels");
	free(errs);
}

/* Every prefix of a valid file loads or fails cleanly (ASan checks leaks),
 * and a prefix that loads prints a config that loads again. */
UNIT_TEST(conf_every_prefix)
{
	static const char text[] = "hostname: h\n"
	                           "domains: [a, b]\n"
	                           "limits:\n  conns: 3\n"
	                           "listeners:\n"
	                           "  - name: a\n"
	                           "    tls: {cert: c, key: k}\n"
	                           "  - name: b\n"
	                           "    trusted:\n      - 10.0.0.0/8\n";
	for (size_t cut = 0; cut <= sizeof(text) - 1; cut++) {
		struct t_top c, d;
		struct conf_ctx ctx;
		memset(&c, 0, sizeof(c));
		int rc = conf_load_buffer("t.yaml", text, cut, &top_table, &c, &ctx);
		CHECK_MSG((rc == 0) == (ctx.nerrs == 0), "cut %zu", cut);
		for (size_t i = 0; i < ctx.nerrs; i++)
			CHECK_MSG(strncmp(ctx.errs[i].msg, "t.yaml:", 7) == 0, "cut %zu: %s", cut,
			          ctx.errs[i].msg);
		conf_ctx_free(&ctx);
		if (rc == 0) {
			char *p = print_str(&c);
			memset(&d, 0, sizeof(d));
			CHECK_MSG(conf_load_buffer("p.yaml", p, strlen(p), &top_table, &d, &ctx) ==
			                  0,
			          "cut %zu reprint failed", cut);
			conf_ctx_free(&ctx);
			conf_free(&top_table, &d);
			free(p);
		}
		conf_free(&top_table, &c);
	}
}

struct t_small {
	int64_t n;
};

/* A hook that rejects without saying why still fails the load. */
static int validate_silent(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	return ((struct t_small *)obj)->n == 13 ? -1 : 0;
}

static const struct conf_key small_keys[] = {
        {.name = "n", .type = CONF_INT, .offset = CONF_OFF(struct t_small, n), .def = "1"},
};
static const struct conf_table small_table = {"small", sizeof(struct t_small), small_keys,
                                              ARRAY_SIZE(small_keys), validate_silent};

UNIT_TEST(conf_validate_silent_reject)
{
	struct t_small s;
	struct conf_ctx ctx;

	memset(&s, 0, sizeof(s));
	CHECK(conf_load_buffer("s.yaml", "n: 12\n", 6, &small_table, &s, &ctx) == 0);
	conf_ctx_free(&ctx);
	CHECK(conf_load_buffer("s.yaml", "\nn: 13\n", 7, &small_table, &s, &ctx) == -1);
	CHECK_INT(ctx.nerrs, 1);
	CHECK_STR(ctx.errs[0].msg, "s.yaml:2:1: rejected by small validation");
	conf_ctx_free(&ctx);
	conf_free(&small_table, &s);
}
