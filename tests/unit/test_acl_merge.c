/*
 * tests/unit/test_acl_merge.c -- snippet generation (acl/gen.c), merging
 * managed entries (acl/merge.c) and the unified diff (acl/diff.c).
 */
#include "acl/diff.h"
#include "acl/eval.h"
#include "acl/gen.h"
#include "acl/merge.h"
#include "acl/policy.h"
#include "acl/topo.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

static char *gen_from(const char *envtext, bool grants)
{
	struct acl_env env;
	struct acl_diags d;
	struct acl_gen_opts o = {.grants = grants, .with_tests = true};
	char *out = NULL;

	acl_diags_init(&d);
	if (acl_env_parse(&env, ".env", envtext, strlen(envtext), &d) == ACL_EXIT_OK)
		(void)acl_gen(&env, &o, &out, &d);
	acl_env_free(&env);
	acl_diags_free(&d);
	return out;
}

/* Load text as a policy and run its tests on a synthesized topology. */
static int check_and_test(const char *text, unsigned flags)
{
	struct acl_policy p;
	struct acl_topo t;
	struct acl_eval e;
	struct acl_diags d;
	int rc;

	acl_diags_init(&d);
	rc = acl_policy_load(&p, "x", text, strlen(text), flags, &d);
	if (rc == ACL_EXIT_OK) {
		acl_topo_synthesize(&t, &p);
		acl_eval_init(&e, &p, &t);
		rc = acl_eval_tests(&e, &d, NULL, NULL);
		acl_eval_free(&e);
		acl_topo_free(&t);
	}
	for (size_t i = 0; rc != ACL_EXIT_OK && i < d.n; i++)
		printf("    %d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	acl_policy_free(&p);
	acl_diags_free(&d);
	return rc;
}

UNIT_TEST(acl_gen_defaults)
{
	char *s = gen_from("", true);

	CHECK(s != NULL);
	CHECK(strstr(s, "\"tag:reverse-proxy\": [\"autogroup:admin\"]") != NULL);
	CHECK(strstr(s, "\"ip\":  [\"tcp:25\", \"tcp:465\", \"tcp:587\", \"tcp:143\", \"tcp:993\", "
	                "\"tcp:80\"]") != NULL);
	CHECK(strstr(s, "\"dst\": [\"tag:mail\"]") != NULL);
	CHECK(strstr(s, "\"ip\":  [\"tcp:8080\"]") != NULL);
	CHECK_INT(check_and_test(s, ACL_LOAD_SNIPPET), ACL_EXIT_OK);
	free(s);
}

UNIT_TEST(acl_gen_settings)
{
	char *s = gen_from("# deployment\n"
	                   "export TAILPOST_EDGE_TAG=tag:edge\n"
	                   "TAILPOST_SMARTHOST_PORT='465'\n"
	                   "TAILPOST_ACME=false   # no HTTP-01\n"
	                   "TAILPOST_ADMIN_SRC=\"group:ops\"\n",
	                   false);

	CHECK(s != NULL);
	CHECK(strstr(s, "tag:reverse-proxy") == NULL);
	CHECK(strstr(s, "\"dst\":    [\"tag:mailbox:25,465,587,143,993\"]") != NULL);
	CHECK(strstr(s, "\"dst\":    [\"tag:mail:465\"]") != NULL);
	CHECK(strstr(s, "\"action\": \"accept\"") != NULL);
	/* The admin group is named but not defined: fine for a snippet. */
	CHECK(strstr(s, "\"src\":    [\"group:ops\"]") != NULL);
	free(s);
}

UNIT_TEST(acl_gen_rejects_bad_settings)
{
	static const char *const bad[] = {
	        "TAILPOST_EDGE_TAG=reverse-proxy\n",
	        "TAILPOST_SMARTHOST_PORT=70000\n",
	        "TAILPOST_ACME=maybe\n",
	        "TAILPOST_MAIL_PORTS=25,x\n",
	        "TAILPOST_ADMIN_SRC=10.0.0.1\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *s = gen_from(bad[i], true);

		CHECK_MSG(s == NULL, "accepted %s", bad[i]);
	}
}

UNIT_TEST(acl_env_parse_errors)
{
	struct acl_env env;
	struct acl_diags d;

	acl_diags_init(&d);
	CHECK_INT(acl_env_parse(&env, ".env", "A=1\nnot a line\n", 15, &d), ACL_EXIT_INVALID);
	CHECK_INT(d.v[0].line, 2);
	acl_diags_free(&d);
	acl_diags_init(&d);
	CHECK_INT(acl_env_parse(&env, ".env", "A=\"open\n", 8, &d), ACL_EXIT_INVALID);
	acl_diags_free(&d);
	acl_diags_init(&d);
	CHECK_INT(acl_env_parse(&env, ".env", "A=1\nA=2\n", 8, &d), ACL_EXIT_OK);
	CHECK_STR(acl_env_get(&env, "A"), "2");
	CHECK(acl_env_get(&env, "B") == NULL);
	acl_env_free(&env);
	acl_diags_free(&d);
}

/* --- merge ------------------------------------------------------------------ */

static const char base_text[] = "// Example Corp tailnet policy.\n"
                                "{\n"
                                "\t// People\n"
                                "\t\"groups\": {\n"
                                "\t\t\"group:admins\": [\"alice@example.com\"],\n"
                                "\t},\n"
                                "\n"
                                "\t\"tagOwners\": {\n"
                                "\t\t\"tag:server\": [\"group:admins\"], // app servers\n"
                                "\t},\n"
                                "\n"
                                "\t/* Access rules */\n"
                                "\t\"acls\": [\n"
                                "\t\t// admins reach the app servers\n"
                                "\t\t{\"action\": \"accept\", \"src\": [\"group:admins\"], "
                                "\"dst\": [\"tag:server:443\"]},\n"
                                "\t],\n"
                                "}\n";

struct merge_result {
	int rc;
	char *text;
};

static struct merge_result do_merge(const char *base, const char *snippet,
                                    enum acl_conflict_mode mode)
{
	struct merge_result r = {0, NULL};
	struct hujson_value b, s;
	struct hujson_error e;
	struct acl_diags d;
	struct acl_merge_src bs = {"base", base, strlen(base)};
	struct acl_merge_src ss = {"snippet", snippet, strlen(snippet)};

	acl_diags_init(&d);
	if (hujson_parse(base, strlen(base), &b, &e) != HUJSON_OK) {
		r.rc = -1;
		return r;
	}
	if (hujson_parse(snippet, strlen(snippet), &s, &e) != HUJSON_OK) {
		hujson_free(&b);
		r.rc = -1;
		return r;
	}
	r.rc = acl_merge(&b, &bs, &s, &ss, "tailpost", mode, &d);
	if (r.rc == ACL_EXIT_OK)
		r.text = hujson_pack_str(&b, NULL);
	hujson_free(&b);
	hujson_free(&s);
	acl_diags_free(&d);
	return r;
}

static char *do_remove(const char *text)
{
	struct hujson_value b;
	struct hujson_error e;
	char *out;

	if (hujson_parse(text, strlen(text), &b, &e) != HUJSON_OK)
		return NULL;
	(void)acl_merge_remove(&b, "tailpost");
	out = hujson_pack_str(&b, NULL);
	hujson_free(&b);
	return out;
}

UNIT_TEST(acl_merge_idempotent_and_removable)
{
	char *snippet = gen_from("", true);
	struct merge_result m1, m2;
	char *removed;

	CHECK(snippet != NULL);
	m1 = do_merge(base_text, snippet, ACL_CONFLICT_ERROR);
	CHECK_INT(m1.rc, ACL_EXIT_OK);
	/* Untouched bytes are kept: the base's comments are all there. */
	CHECK(strstr(m1.text, "// Example Corp tailnet policy.\n{\n\t// People\n") != NULL);
	CHECK(strstr(m1.text, "\"tag:server\": [\"group:admins\"], // app servers\n") != NULL);
	CHECK(strstr(m1.text, "/* Access rules */") != NULL);
	CHECK(strstr(m1.text, "// tailpost-acl id=tailpost: managed entry") != NULL);
	CHECK_INT(check_and_test(m1.text, 0), ACL_EXIT_OK);
	/* A second merge changes no byte. */
	m2 = do_merge(m1.text, snippet, ACL_CONFLICT_ERROR);
	CHECK_INT(m2.rc, ACL_EXIT_OK);
	CHECK_STR(m2.text, m1.text);
	/* Removing our entries gives the base back, byte for byte. */
	removed = do_remove(m1.text);
	CHECK_STR(removed, base_text);
	free(removed);
	free(m1.text);
	free(m2.text);
	free(snippet);
}

UNIT_TEST(acl_merge_replaces_after_port_change)
{
	char *s1 = gen_from("", true), *s2 = gen_from("TAILPOST_SMARTHOST_PORT=465\n", true);
	struct merge_result m1, m2, m3;

	m1 = do_merge(base_text, s1, ACL_CONFLICT_ERROR);
	CHECK_INT(m1.rc, ACL_EXIT_OK);
	m2 = do_merge(m1.text, s2, ACL_CONFLICT_ERROR);
	CHECK_INT(m2.rc, ACL_EXIT_OK);
	CHECK(strstr(m2.text, "\"tcp:465\"]") != NULL);
	CHECK(strstr(m2.text, "\"tag:mail:587\"") == NULL);
	CHECK_INT(check_and_test(m2.text, 0), ACL_EXIT_OK);
	/* The same as merging the new snippet straight into the base. */
	m3 = do_merge(base_text, s2, ACL_CONFLICT_ERROR);
	CHECK_STR(m2.text, m3.text);
	free(m1.text);
	free(m2.text);
	free(m3.text);
	free(s1);
	free(s2);
}

UNIT_TEST(acl_merge_conflicts)
{
	const char *base = "{\n\t\"tagOwners\": {\n\t\t\"tag:mailbox\": [\"group:ops\"],\n\t},\n"
	                   "\t\"groups\": {\"group:ops\": [\"o@example.com\"]},\n}\n";
	const char *snip = "{\"tagOwners\": {\"tag:mailbox\": [\"autogroup:admin\"]}}";
	struct merge_result r;

	r = do_merge(base, snip, ACL_CONFLICT_ERROR);
	CHECK_INT(r.rc, ACL_EXIT_CONFLICT);
	r = do_merge(base, snip, ACL_CONFLICT_OURS);
	CHECK_INT(r.rc, ACL_EXIT_OK);
	CHECK_STR(r.text, base);
	free(r.text);
	r = do_merge(base, snip, ACL_CONFLICT_THEIRS);
	CHECK_INT(r.rc, ACL_EXIT_OK);
	CHECK(strstr(r.text, "\"tag:mailbox\": [\"autogroup:admin\"],") != NULL);
	free(r.text);
	r = do_merge(base, snip, ACL_CONFLICT_UNION);
	CHECK_INT(r.rc, ACL_EXIT_OK);
	CHECK(strstr(r.text, "\"tag:mailbox\": [\"group:ops\", \"autogroup:admin\"],") != NULL);
	free(r.text);
	/* Equal values are no conflict. */
	r = do_merge(base, "{\"tagOwners\": {\"tag:mailbox\": [\"group:ops\"]}}",
	             ACL_CONFLICT_ERROR);
	CHECK_INT(r.rc, ACL_EXIT_OK);
	CHECK_STR(r.text, base);
	free(r.text);
	/* Sections we cannot merge. */
	r = do_merge(base, "{\"derpMap\": {}}", ACL_CONFLICT_ERROR);
	CHECK_INT(r.rc, ACL_EXIT_INVALID);
}

UNIT_TEST(acl_diff_unified)
{
	const char *a = "a\nb\nc\nd\ne\nf\ng\nh\n", *b = "a\nb\nc\nD\ne\nf\ng\nh\ni\n";
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	CHECK(!acl_diff_unified(f, "x", a, strlen(a), "y", a, strlen(a)));
	CHECK(acl_diff_unified(f, "x", a, strlen(a), "y", b, strlen(b)));
	fclose(f);
	CHECK_STR(out, "--- x\n+++ y\n@@ -1,8 +1,9 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n+i\n");
	free(out);
}
