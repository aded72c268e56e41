/*
 * tests/unit/test_acl_policy.c -- policy loading, selector parsing and the
 * evaluator (acl/policy.c, acl/eval.c, acl/topo.c, acl/ipset.c).
 */
#include "acl/eval.h"
#include "acl/policy.h"
#include "acl/topo.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

/* --- loading errors, with positions ------------------------------------------ */

static const struct {
	const char *policy;
	int rc, line, col;
	const char *msg;
} load_cases[] = {
        {"{\"acls\": []}", ACL_EXIT_OK, 0, 0, NULL},
        {"{\"ACLs\": [], \"TagOwners\": {}}", ACL_EXIT_OK, 0, 0, NULL},
        {"{\"acls\": [],\n \"acl\": []}", ACL_EXIT_INVALID, 2, 2, "json: unknown field \"acl\""},
        {"{\"acls\": [], \"ACLS\": []}", ACL_EXIT_INVALID, 1, 14, "duplicate key \"ACLS\""},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:web:80\"]}]}",
         ACL_EXIT_INVALID, 1, 54, "tag \"tag:web\" not found in tagOwners"},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"group:x\"], \"dst\": [\"*:*\"]}]}",
         ACL_EXIT_INVALID, 1, 40, "group \"group:x\" not found"},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"web:80\"]}]}",
         ACL_EXIT_INVALID, 1, 54, "host \"web\" not found"},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:99999\"]}]}",
         ACL_EXIT_INVALID, 1, 54, "dst \"*:99999\": port out of range \"99999\""},
        {"{\"acls\": [{\"action\": \"drop\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}",
         ACL_EXIT_INVALID, 1, 22, "acls[0]: action \"drop\" not supported, want \"accept\""},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": \"*\", \"dst\": [\"*:*\"]}]}",
         ACL_EXIT_INVALID, 1, 39,
         "json: cannot unmarshal string into acls[0].src of type []string"},
        {"{\"acls\": [{\"action\": \"accept\", \"proto\": \"smtp\", \"src\": [\"*\"], \"dst\": "
         "[\"*:*\"]}]}",
         ACL_EXIT_INVALID, 1, 41, "proto \"smtp\": unknown protocol"},
        {"{\"grants\": [{\"src\": [\"*\"], \"dst\": [\"*\"]}]}", ACL_EXIT_INVALID, 1, 13,
         "grants[0]: needs \"ip\" or \"app\""},
        {"{\"grants\": [{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"tcp:x\"]}]}",
         ACL_EXIT_INVALID, 1, 49, "ip \"tcp:x\": invalid port"},
        {"{\"groups\": {\"group:a\": [\"group:b\"], \"group:b\": []}}", ACL_EXIT_INVALID, 1, 25,
         "group \"group:b\": groups cannot contain other groups"},
        {"{\"groups\": {\"admins\": []}}", ACL_EXIT_INVALID, 1, 13,
         "groups: \"admins\" must start with \"group:\""},
        {"{\"hosts\": {\"db\": \"10.0.0.300\"}}", ACL_EXIT_INVALID, 1, 18,
         "host \"db\": invalid IP address \"10.0.0.300\""},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"autogroup:self\"], \"dst\": "
         "[\"*:*\"]}]}",
         ACL_EXIT_INVALID, 1, 40, "autogroup:self can only be used in destinations"},
        {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"autogroup:bogus\"], \"dst\": "
         "[\"*:*\"]}]}",
         ACL_EXIT_INVALID, 1, 40, "autogroup \"autogroup:bogus\" is not valid"},
        {"{\"disableIPv4\": \"yes\"}", ACL_EXIT_INVALID, 1, 17,
         "json: cannot unmarshal string into disableIPv4 of type bool"},
        {"{\"acls\": [1,]", ACL_EXIT_SYNTAX, 1, 14, "parsing object after value: unexpected EOF"},
        {"[]", ACL_EXIT_INVALID, 1, 1, "json: cannot unmarshal array into policy of type object"},
        {"{\"tagOwners\": {\"tag:a\": []}, \"ssh\": [{\"action\": \"drop\", \"src\": "
         "[\"group:x\"], "
         "\"dst\": [\"tag:a\"], \"users\": [\"root\"]}]}",
         ACL_EXIT_INVALID, 1, 49,
         "ssh[0]: action \"drop\" not supported, want \"accept\" or \"check\""},
        {"{\"tests\": [{\"src\": \"a@b.c\", \"accept\": [\"x:1\"], \"allow\": []}]}",
         ACL_EXIT_INVALID, 1, 48, "json: unknown field \"allow\""},
};

UNIT_TEST(acl_policy_load_errors)
{
	for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++) {
		struct acl_policy p;
		struct acl_diags d;
		int rc;

		acl_diags_init(&d);
		rc = acl_policy_load(&p, "p.hujson", load_cases[i].policy,
		                     strlen(load_cases[i].policy), 0, &d);
		CHECK_MSG(rc == load_cases[i].rc, "case %zu: rc %d want %d (%s)", i, rc,
		          load_cases[i].rc, d.n ? d.v[0].msg : "");
		if (load_cases[i].msg != NULL) {
			CHECK_MSG(d.n >= 1, "case %zu: no diagnostic", i);
			CHECK_STR(d.v[0].msg, load_cases[i].msg);
			CHECK_MSG(d.v[0].line == load_cases[i].line &&
			                  d.v[0].col == load_cases[i].col,
			          "case %zu: at %d:%d want %d:%d", i, d.v[0].line, d.v[0].col,
			          load_cases[i].line, load_cases[i].col);
		}
		acl_policy_free(&p);
		acl_diags_free(&d);
	}
}

UNIT_TEST(acl_policy_snippet_warns_on_undefined)
{
	const char *s = "{\"grants\": [{\"src\": [\"group:admins\"], \"dst\": [\"tag:x\"], \"ip\": "
	                "[\"*\"]}]}";
	struct acl_policy p;
	struct acl_diags d;

	acl_diags_init(&d);
	CHECK_INT(acl_policy_load(&p, "s", s, strlen(s), ACL_LOAD_SNIPPET, &d), ACL_EXIT_OK);
	CHECK_INT(d.n, 2);
	CHECK_INT(d.nerrors, 0);
	acl_policy_free(&p);
	acl_diags_free(&d);
}

/* --- selectors ------------------------------------------------------------------ */

UNIT_TEST(acl_policy_split_dst_and_ports)
{
	static const struct {
		const char *in, *alias, *ports;
	} ok[] = {
	        {"tag:web:80", "tag:web", "80"},
	        {"[fd7a::1]:22", "fd7a::1", "22"},
	        {"10.0.0.0/8:*", "10.0.0.0/8", "*"},
	        {"fd7a:115c:a1e0::1:443", "fd7a:115c:a1e0::1", "443"},
	        {"autogroup:internet:*", "autogroup:internet", "*"},
	};
	static const struct {
		const char *in;
		size_t n;
		unsigned lo0, hi0;
	} ports[] = {
	        {"*", 1, 0, 65535},
	        {"22", 1, 22, 22},
	        {"80-90", 1, 80, 90},
	        {"22,80,8000-8100", 3, 22, 22},
	};
	static const char *const bad_ports[] = {"", "-1", "99999", "80-", "a", "90-80", "1,", ",1"};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *alias;
		const char *p, *err;

		CHECK(acl_split_dst(ok[i].in, &alias, &p, &err) == 0);
		CHECK_STR(alias, ok[i].alias);
		CHECK_STR(p, ok[i].ports);
		free(alias);
	}
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		struct acl_portrange *pr;
		size_t n;
		const char *err;

		CHECK(acl_ports_parse(ports[i].in, &pr, &n, &err) == 0);
		CHECK_INT(n, ports[i].n);
		CHECK_INT(pr[0].lo, ports[i].lo0);
		CHECK_INT(pr[0].hi, ports[i].hi0);
		free(pr);
	}
	for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
		struct acl_portrange *pr = NULL;
		size_t n;
		const char *err;

		CHECK_MSG(acl_ports_parse(bad_ports[i], &pr, &n, &err) < 0, "accepted \"%s\"",
		          bad_ports[i]);
	}
}

UNIT_TEST(acl_policy_protocols)
{
	uint8_t s[32];
	const char *err;

	CHECK(acl_proto_parse(NULL, s, &err) == 0);
	CHECK(s[0] & (1 << 6) && s[2] & (1 << 1) && s[0] & (1 << 1) && s[7] & (1 << 2));
	CHECK(acl_proto_parse("udp", s, &err) == 0);
	CHECK(s[2] == (1 << 1) && s[0] == 0);
	CHECK(acl_proto_parse("6", s, &err) == 0);
	CHECK(s[0] == (1 << 6));
	CHECK(acl_proto_parse("256", s, &err) < 0);
	CHECK(acl_proto_parse("smtp", s, &err) < 0);
}

UNIT_TEST(acl_policy_alias_kinds)
{
	CHECK_INT(acl_alias_kind("*"), ACL_ALIAS_ANY);
	CHECK_INT(acl_alias_kind("a@b.c"), ACL_ALIAS_USER);
	CHECK_INT(acl_alias_kind("user:*@b.c"), ACL_ALIAS_DOMAIN);
	CHECK_INT(acl_alias_kind("group:x"), ACL_ALIAS_GROUP);
	CHECK_INT(acl_alias_kind("tag:x"), ACL_ALIAS_TAG);
	CHECK_INT(acl_alias_kind("autogroup:member"), ACL_ALIAS_AUTOGROUP);
	CHECK_INT(acl_alias_kind("100.64.0.1"), ACL_ALIAS_IP);
	CHECK_INT(acl_alias_kind("fd7a::1"), ACL_ALIAS_IP);
	CHECK_INT(acl_alias_kind("10.0.0.0/8"), ACL_ALIAS_PREFIX);
	CHECK_INT(acl_alias_kind("10.0.0.0/33"), ACL_ALIAS_BAD);
	CHECK_INT(acl_alias_kind("webserver"), ACL_ALIAS_HOST);
	CHECK_INT(acl_alias_kind("tag:"), ACL_ALIAS_BAD);
}

UNIT_TEST(acl_ipset_ops)
{
	struct acl_ipset a, b;
	const char *err;
	char *s;

	acl_ipset_init(&a);
	acl_ipset_init(&b);
	CHECK(acl_ipset_add_str(&a, "10.0.0.0/24", &err) == 0);
	CHECK(acl_ipset_add_str(&a, "10.0.1.0/24", &err) == 0);
	CHECK_INT(a.n, 1); /* adjacent ranges merge */
	s = acl_ipset_str(&a);
	CHECK_STR(s, "10.0.0.0/23");
	free(s);
	CHECK(acl_ipset_add_str(&b, "10.0.0.5", &err) == 0);
	CHECK(acl_ipset_subset(&b, &a));
	acl_ipset_subtract(&a, &b);
	CHECK(!acl_ipset_subset(&b, &a));
	CHECK_INT(acl_ipset_count(&a), 511);
	CHECK(acl_ipset_add_str(&b, "fd7a::1", &err) == 0);
	acl_ipset_intersect(&b, &a);
	CHECK(acl_ipset_empty(&b));
	CHECK(acl_ipset_add_str(&b, "10.0.0.7/24", &err) == 0); /* masked like Go */
	s = acl_ipset_str(&b);
	CHECK_STR(s, "10.0.0.0/24");
	free(s);
	acl_ipset_free(&a);
	acl_ipset_free(&b);
}

/* --- evaluation ------------------------------------------------------------------- */

static const char topo_text[] =
        "{\"users\": [{\"name\": \"alice\", \"email\": \"alice@example.com\"},\n"
        "            {\"name\": \"bob\", \"email\": \"bob@example.com\"}],\n"
        " \"nodes\": {\n"
        "  \"a1\": {\"user\": \"alice\", \"ipv4\": \"100.64.0.1\", \"ipv6\": "
        "\"fd7a:115c:a1e0::1\"},\n"
        "  \"a2\": {\"user\": \"alice\", \"ipv4\": \"100.64.0.2\", \"ipv6\": "
        "\"fd7a:115c:a1e0::2\"},\n"
        "  \"b1\": {\"user\": \"bob\", \"ipv4\": \"100.64.0.3\", \"ipv6\": "
        "\"fd7a:115c:a1e0::3\"},\n"
        "  \"web\": {\"tags\": [\"tag:web\"], \"ipv4\": \"100.64.0.10\", \"ipv6\": "
        "\"fd7a:115c:a1e0::a\"},\n"
        "  \"db\": {\"tags\": [\"tag:db\"], \"ipv4\": \"100.64.0.11\"}}}\n";

struct fixture {
	struct acl_policy p;
	struct acl_topo t;
	struct acl_eval e;
	struct acl_diags d;
};

static int fixture_init(struct fixture *f, const char *policy)
{
	int rc;

	acl_diags_init(&f->d);
	rc = acl_policy_load(&f->p, "p.hujson", policy, strlen(policy), 0, &f->d);
	if (rc != ACL_EXIT_OK)
		return rc;
	rc = acl_topo_load_buffer(&f->t, "topo", topo_text, strlen(topo_text), &f->d);
	if (rc != ACL_EXIT_OK)
		return rc;
	acl_eval_init(&f->e, &f->p, &f->t);
	return 0;
}

static void fixture_free(struct fixture *f)
{
	acl_eval_free(&f->e);
	acl_topo_free(&f->t);
	acl_policy_free(&f->p);
	acl_diags_free(&f->d);
}

/* "all" verdict of src -> dst:port under proto. */
static int query(struct fixture *f, const char *src, const char *dst, uint16_t port,
                 const char *proto)
{
	struct acl_ipset s, d;
	struct acl_verdict v;
	uint8_t protos[32];
	const char *perr;
	char *err = NULL;
	int r;

	acl_ipset_init(&s);
	acl_ipset_init(&d);
	if (acl_eval_resolve(&f->e, src, ACL_USE_TEST_SRC, &s, NULL, &err) < 0 ||
	    acl_eval_resolve(&f->e, dst, ACL_USE_DST, &d, NULL, &err) < 0 ||
	    acl_proto_parse(proto, protos, &perr) < 0) {
		free(err);
		acl_ipset_free(&s);
		acl_ipset_free(&d);
		return -1;
	}
	acl_eval_check(&f->e, &s, &d, port, protos, &v);
	r = v.all ? 1 : (v.none ? 0 : 2);
	acl_verdict_free(&v);
	acl_ipset_free(&s);
	acl_ipset_free(&d);
	return r;
}

static const char eval_policy[] =
        "{\n"
        " \"groups\": {\"group:dev\": [\"alice@example.com\", \"bob@example.com\"]},\n"
        " \"tagOwners\": {\"tag:web\": [\"group:dev\"], \"tag:db\": [\"group:dev\"]},\n"
        " \"hosts\": {\"a1v4\": \"100.64.0.1\"},\n"
        " \"acls\": [\n"
        "  {\"action\": \"accept\", \"src\": [\"group:dev\"], \"dst\": [\"tag:web:80,443\"]},\n"
        "  {\"action\": \"accept\", \"src\": [\"a1v4\"], \"proto\": \"udp\", \"dst\": "
        "[\"tag:db:5432\"]},\n"
        "  {\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": "
        "[\"autogroup:self:22\"]},\n"
        " ],\n"
        " \"grants\": [{\"src\": [\"tag:web\"], \"dst\": [\"tag:db\"], \"ip\": [\"tcp:5432\", "
        "\"icmp:*\"]}],\n"
        "}\n";

UNIT_TEST(acl_eval_queries)
{
	struct fixture f;

	CHECK_INT(fixture_init(&f, eval_policy), 0);
	CHECK_INT(query(&f, "alice@example.com", "tag:web", 443, NULL), 1);
	CHECK_INT(query(&f, "group:dev", "tag:web", 80, "tcp"), 1);
	CHECK_INT(query(&f, "group:dev", "tag:web", 22, NULL), 0);
	/* Grants: the web tier reaches the database on tcp:5432 only. */
	CHECK_INT(query(&f, "tag:web", "tag:db", 5432, "tcp"), 1);
	CHECK_INT(query(&f, "tag:web", "tag:db", 5432, "udp"), 0);
	CHECK_INT(query(&f, "tag:web", "tag:db", 0, "icmp"), 1);
	CHECK_INT(query(&f, "tag:db", "tag:web", 80, NULL), 0);
	/* Only alice's IPv4 of node a1 is allowed: her user is partly allowed,
	 * which is not "allowed" (every address of the source must be). */
	CHECK_INT(query(&f, "100.64.0.1", "tag:db", 5432, "udp"), 1);
	CHECK_INT(query(&f, "alice@example.com", "tag:db", 5432, "udp"), 2);
	/* autogroup:self: own devices only. */
	CHECK_INT(query(&f, "alice@example.com", "100.64.0.2", 22, NULL), 1);
	CHECK_INT(query(&f, "bob@example.com", "100.64.0.2", 22, NULL), 0);
	/* A CIDR destination is exact: part of it is not reachable. */
	CHECK_INT(query(&f, "group:dev", "100.64.0.10/31", 80, NULL), 2);
	fixture_free(&f);
}

UNIT_TEST(acl_eval_default_and_empty_policies)
{
	struct fixture f;

	/* Neither acls nor grants: Tailscale's default allows everything. */
	CHECK_INT(fixture_init(&f, "{\"tagOwners\": {\"tag:web\": []}}"), 0);
	CHECK_INT(query(&f, "bob@example.com", "tag:web", 9999, "udp"), 1);
	fixture_free(&f);
	/* An empty acls list allows nothing. */
	CHECK_INT(fixture_init(&f, "{\"acls\": [], \"tagOwners\": {\"tag:web\": []}}"), 0);
	CHECK_INT(query(&f, "bob@example.com", "tag:web", 80, NULL), 0);
	fixture_free(&f);
}

static const struct {
	const char *tests;
	int rc;
	const char *first_msg;
} test_cases[] = {
        {"[{\"src\": \"alice@example.com\", \"accept\": [\"tag:web:443\"], \"deny\": "
         "[\"tag:web:22\"]}]",
         ACL_EXIT_OK, NULL},
        {"[{\"src\": \"bob@example.com\", \"accept\": [\"tag:web:22\"]}]", ACL_EXIT_FAIL,
         "bob@example.com cannot access tag:web:22 (expected accept)"},
        {"[{\"src\": \"bob@example.com\", \"deny\": [\"tag:web:80\"]}]", ACL_EXIT_FAIL,
         "bob@example.com can access tag:web:80 (expected deny)"},
        /* Tailscale's shapes: one port, an address, no autogroup:internet. */
        {"[{\"src\": \"bob@example.com\", \"accept\": [\"tag:web:80,443\"]}]", ACL_EXIT_FAIL,
         "bob@example.com: invalid destination \"tag:web:80,443\": test ports must be a single "
         "port, not a list or range"},
        {"[{\"src\": \"bob@example.com\", \"accept\": [\"tag:web:*\"]}]", ACL_EXIT_FAIL,
         "bob@example.com: invalid destination \"tag:web:*\": test ports must be a single port, "
         "not \"*\""},
        {"[{\"src\": \"bob@example.com\", \"accept\": [\"100.64.0.10/32:80\"]}]", ACL_EXIT_FAIL,
         "bob@example.com: error testing \"100.64.0.10/32:80\": \"100.64.0.10/32\" is a network: "
         "test destinations must be addresses"},
        {"[{\"src\": \"ghost@example.com\", \"accept\": [\"tag:web:80\"]}]", ACL_EXIT_FAIL,
         "ghost@example.com: failed to resolve source: user \"ghost@example.com\" not found"},
        {"[{\"src\": \"tag:nope\", \"accept\": [\"tag:web:80\"]}]", ACL_EXIT_FAIL,
         "tag:nope: failed to resolve source: tag \"tag:nope\" not found in tagOwners"},
        {"[{\"src\": \"\", \"accept\": [\"tag:web:80\"]}]", ACL_EXIT_FAIL,
         "tests[0]: \"src\" is required"},
        {"[{\"src\": \"bob@example.com\"}]", ACL_EXIT_FAIL,
         "tests[0]: bob@example.com: needs \"accept\" or \"deny\" destinations"},
        {"[{\"src\": \"tag:web\", \"accept\": [\"autogroup:self:22\"]}]", ACL_EXIT_FAIL,
         "tag:web: error testing \"autogroup:self:22\": autogroup:self needs a user or group "
         "source"},
        {"[{\"src\": \"bob@example.com\", \"accept\": [\"autogroup:self:22\"]}, "
         "{\"src\": \"bob@example.com\", \"accept\": [\"autogroup:self:22\"]}]",
         ACL_EXIT_OK, NULL},
};

/* eval_policy with a tests block added before its closing brace. */
static char *with_tests(const char *tests)
{
	size_t n = strlen(eval_policy) - 2; /* drop "}\n" */

	return xasprintf("%.*s \"tests\": %s,\n}\n", (int)n, eval_policy, tests);
}

UNIT_TEST(acl_eval_tests_block)
{
	for (size_t i = 0; i < sizeof(test_cases) / sizeof(test_cases[0]); i++) {
		struct fixture f;
		char *policy = with_tests(test_cases[i].tests);
		int rc;

		CHECK_INT(fixture_init(&f, policy), 0);
		rc = acl_eval_tests(&f.e, &f.d, NULL, NULL);
		CHECK_MSG(rc == test_cases[i].rc, "case %zu: rc %d (%s)", i, rc,
		          f.d.n ? f.d.v[0].msg : "");
		if (test_cases[i].first_msg != NULL) {
			CHECK(f.d.n >= 2);
			CHECK_STR(f.d.v[0].msg, test_cases[i].first_msg);
			CHECK_STR(f.d.v[f.d.n - 1].msg, "test(s) failed");
		}
		fixture_free(&f);
		free(policy);
	}
}

UNIT_TEST(acl_topo_synthesized)
{
	const char *s = "{\"groups\": {\"group:a\": [\"x@y.z\"]}, \"tagOwners\": {\"tag:m\": "
	                "[\"group:a\"]},"
	                " \"grants\": [{\"src\": [\"group:a\"], \"dst\": [\"tag:m\"], \"ip\": "
	                "[\"tcp:25\"]}],"
	                " \"tests\": [{\"src\": \"x@y.z\", \"accept\": [\"tag:m:25\"], \"deny\": "
	                "[\"tag:m:26\"]}]}";
	struct acl_policy p;
	struct acl_topo t;
	struct acl_eval e;
	struct acl_diags d;

	acl_diags_init(&d);
	CHECK_INT(acl_policy_load(&p, "p", s, strlen(s), 0, &d), ACL_EXIT_OK);
	acl_topo_synthesize(&t, &p);
	CHECK_INT(t.nusers, 1);
	CHECK_INT(t.nnodes, 2);
	acl_eval_init(&e, &p, &t);
	CHECK_INT(acl_eval_tests(&e, &d, NULL, NULL), ACL_EXIT_OK);
	acl_eval_free(&e);
	acl_topo_free(&t);
	acl_policy_free(&p);
	acl_diags_free(&d);
}
