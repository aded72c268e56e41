/*
 * acl/cli.c -- subcommands of tailpost-acl.
 *
 * Each command gathers findings in one struct acl_diags and ends in
 * finish(), which prints them in the chosen format and maps the result to
 * the documented exit code.  Files are only ever replaced atomically
 * (temporary file in the same directory, fsync, rename), and merge writes
 * nothing unless the merged policy checks clean and its tests pass.
 */
#include "acl/cli.h"
#include "acl/diag.h"
#include "acl/diff.h"
#include "acl/eval.h"
#include "acl/gen.h"
#include "acl/hujson.h"
#include "acl/merge.h"
#include "acl/policy.h"
#include "acl/topo.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_ID "tailpost"

struct cli {
	enum acl_format fmt;
	const char *command;
	struct acl_diags d;
	char *json_extra; /* extra members for the JSON result, ",\"k\":v..." */
	size_t json_len;
	FILE *json; /* open_memstream over json_extra */
};

static const char usage_text[] =
        "usage: tailpost-acl [--format text|json|github] COMMAND [ARGS]\n"
        "  fmt [-w|--check|--diff] FILE...\n"
        "  check [--snippet [--against BASE]] [--no-tests] [--topology T] FILE\n"
        "  test [--topology T] FILE\n"
        "  query [--topology T] [--proto P] FILE SRC DST:PORT\n"
        "  explain [--topology T] [--proto P] FILE SRC DST:PORT\n"
        "  merge [--id ID] [-w|--check|--diff] [--on-conflict=error|union|ours|theirs]\n"
        "        [--topology T] [--no-tests] BASE SNIPPET\n"
        "  merge --remove [--id ID] [-w|--check|--diff] BASE\n"
        "  gen [--env FILE] [--syntax grants|acls] [--with-tests] [-o OUT]\n"
        "exit: 0 ok/allowed, 1 test failed/denied/would change, 2 usage, 3 syntax error,\n"
        "      4 invalid policy, 5 merge conflict, 6 I/O error\n";

static int usage(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fputs("tailpost-acl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fputs(usage_text, stderr);
	(void)c;
	return ACL_EXIT_USAGE;
}

static int finish(struct cli *c, int rc)
{
	if (c->fmt == ACL_FMT_JSON) {
		fflush(c->json);
		printf("{\"version\":1,\"command\":");
		acl_json_str(stdout, c->command);
		printf(",\"ok\":%s,\"exit\":%d", rc == 0 ? "true" : "false", rc);
		if (c->json_len > 0)
			fwrite(c->json_extra, 1, c->json_len, stdout);
		printf(",\"diagnostics\":");
		acl_diags_json(&c->d, stdout);
		printf("}\n");
	} else {
		acl_diags_print(&c->d, c->fmt, c->fmt == ACL_FMT_GITHUB ? stdout : stderr);
	}
	fflush(stdout);
	fclose(c->json);
	free(c->json_extra);
	acl_diags_free(&c->d);
	return rc;
}

/* Text-mode summary line on stderr, beside the diagnostics: stdout carries
 * data (formatted or merged policy, diffs, query answers).  Quiet in
 * json/github modes. */
static void say(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	if (c->fmt != ACL_FMT_TEXT)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static int read_file(struct cli *c, const char *path, char **text_r, size_t *len_r)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0, got;

	if (f == NULL) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, path, 0, 0, "cannot read: %s", strerror(errno));
		return ACL_EXIT_IO;
	}
	do {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			text = xrealloc(text, cap + 1);
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	if (ferror(f)) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, path, 0, 0, "cannot read: %s", strerror(errno));
		if (f != stdin)
			fclose(f);
		free(text);
		return ACL_EXIT_IO;
	}
	if (f != stdin)
		fclose(f);
	text[len] = '\0';
	*text_r = text;
	*len_r = len;
	return ACL_EXIT_OK;
}

/* Replace path with text: temp file beside it, fsync, rename. */
static int write_atomic(struct cli *c, const char *path, const char *text, size_t len)
{
	char *dircopy = xstrdup(path), *tmp;
	struct stat st;
	int fd = -1;
	size_t off = 0;

	tmp = xasprintf("%s/.%s.tmp.XXXXXX", dirname(dircopy),
	                strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	fd = mkstemp(tmp);
	if (fd < 0)
		goto fail;
	if (stat(path, &st) == 0)
		(void)fchmod(fd, st.st_mode & 07777);
	else
		(void)fchmod(fd, 0644);
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	free(tmp);
	free(dircopy);
	return ACL_EXIT_OK;
fail:
	acl_diag_add(&c->d, ACL_SEV_ERROR, path, 0, 0, "cannot write: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	free(tmp);
	free(dircopy);
	return ACL_EXIT_IO;
}

/* --- fmt ------------------------------------------------------------------ */

enum write_mode {
	MODE_STDOUT = 0,
	MODE_WRITE,
	MODE_CHECK,
	MODE_DIFF,
};

static int set_mode(struct cli *c, enum write_mode *m, enum write_mode want, const char *arg)
{
	if (*m != MODE_STDOUT && *m != want)
		return usage(c, "%s: -w, --check and --diff exclude each other", arg);
	*m = want;
	return 0;
}

static int cmd_fmt(struct cli *c, int argc, char **argv)
{
	enum write_mode mode = MODE_STDOUT;
	int rc = ACL_EXIT_OK, nfiles = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-w") == 0) {
			if (set_mode(c, &mode, MODE_WRITE, argv[i]))
				return ACL_EXIT_USAGE;
		} else if (strcmp(argv[i], "--check") == 0) {
			if (set_mode(c, &mode, MODE_CHECK, argv[i]))
				return ACL_EXIT_USAGE;
		} else if (strcmp(argv[i], "--diff") == 0 || strcmp(argv[i], "-d") == 0) {
			if (set_mode(c, &mode, MODE_DIFF, argv[i]))
				return ACL_EXIT_USAGE;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			return usage(c, "fmt: unknown option %s", argv[i]);
		} else {
			nfiles++;
		}
	}
	if (nfiles == 0)
		return usage(c, "fmt: no files");
	fprintf(c->json, ",\"files\":[");
	for (int i = 0, k = 0; i < argc; i++) {
		char *text, *out;
		size_t len, olen;
		struct hujson_value v;
		struct hujson_error err;
		bool changed;
		int r;

		if (argv[i][0] == '-' && argv[i][1] != '\0')
			continue;
		r = read_file(c, argv[i], &text, &len);
		if (r != ACL_EXIT_OK) {
			rc = r;
			continue;
		}
		if (hujson_parse(text, len, &v, &err) != HUJSON_OK) {
			acl_diag_add(&c->d, ACL_SEV_ERROR, argv[i], err.line, err.col, "%s",
			             err.msg);
			if (rc == ACL_EXIT_OK || rc == ACL_EXIT_FAIL)
				rc = ACL_EXIT_SYNTAX;
			free(text);
			continue;
		}
		hujson_format(&v);
		out = hujson_pack_str(&v, &olen);
		hujson_free(&v);
		changed = olen != len || memcmp(out, text, len) != 0;
		fprintf(c->json, "%s{\"file\":", k++ ? "," : "");
		acl_json_str(c->json, argv[i]);
		fprintf(c->json, ",\"changed\":%s}", changed ? "true" : "false");
		switch (mode) {
		case MODE_STDOUT:
			if (c->fmt != ACL_FMT_JSON)
				fwrite(out, 1, olen, stdout);
			break;
		case MODE_WRITE:
			if (changed) {
				r = write_atomic(c, argv[i], out, olen);
				if (r != ACL_EXIT_OK)
					rc = r;
				else
					say(c, "formatted %s\n", argv[i]);
			}
			break;
		case MODE_CHECK:
			if (changed) {
				acl_diag_add(&c->d, ACL_SEV_ERROR, argv[i], 0, 0,
				             "not formatted (run \"tailpost-acl fmt -w %s\")",
				             argv[i]);
				if (rc == ACL_EXIT_OK)
					rc = ACL_EXIT_FAIL;
			}
			break;
		case MODE_DIFF:
			if (changed) {
				char *a = xasprintf("a/%s", argv[i]),
				     *b = xasprintf("b/%s", argv[i]);

				if (c->fmt == ACL_FMT_TEXT)
					acl_diff_unified(stdout, a, text, len, b, out, olen);
				free(a);
				free(b);
				if (rc == ACL_EXIT_OK)
					rc = ACL_EXIT_FAIL;
			}
			break;
		}
		free(out);
		free(text);
	}
	fprintf(c->json, "]");
	return rc;
}

/* --- loading helpers -------------------------------------------------------- */

static int load_policy(struct cli *c, const char *path, unsigned flags, struct acl_policy *p)
{
	char *text;
	size_t len;
	int rc = read_file(c, path, &text, &len);

	if (rc != ACL_EXIT_OK) {
		memset(p, 0, sizeof(*p));
		return rc;
	}
	rc = acl_policy_load(p, path, text, len, flags, &c->d);
	free(text);
	return rc;
}

static int load_topology(struct cli *c, const char *path, const struct acl_policy *p,
                         struct acl_topo *t)
{
	if (path == NULL) {
		acl_topo_synthesize(t, p);
		return ACL_EXIT_OK;
	}
	return acl_topo_load(t, path, &c->d);
}

/* Run the tests of p over topology path (or a synthesized one). */
static int run_tests(struct cli *c, const struct acl_policy *p, const char *topo_path)
{
	struct acl_topo t;
	struct acl_eval e;
	size_t npass = 0, nfail = 0;
	int rc = load_topology(c, topo_path, p, &t);

	if (rc != ACL_EXIT_OK) {
		acl_topo_free(&t);
		return rc;
	}
	acl_eval_init(&e, p, &t);
	rc = acl_eval_tests(&e, &c->d, &npass, &nfail);
	fprintf(c->json, ",\"tests\":{\"passed\":%zu,\"failed\":%zu}", npass, nfail);
	if (rc == ACL_EXIT_OK)
		say(c, "%s: ok (%zu test%s passed)\n", p->file, npass, npass == 1 ? "" : "s");
	else
		say(c, "%s: %zu of %zu tests failed\n", p->file, nfail, npass + nfail);
	acl_eval_free(&e);
	acl_topo_free(&t);
	return rc;
}

/* --- merge core, shared by merge and check --against ------------------------ */

struct merged {
	char *text;
	size_t len;
	char *base_text;
	size_t base_len;
};

static int do_merge(struct cli *c, const char *base_path, const char *snip_path, const char *id,
                    enum acl_conflict_mode mode, bool remove, struct merged *m)
{
	struct hujson_value base, snip;
	struct hujson_error err;
	char *stext = NULL;
	size_t slen = 0;
	int rc;

	memset(m, 0, sizeof(*m));
	memset(&snip, 0, sizeof(snip));
	rc = read_file(c, base_path, &m->base_text, &m->base_len);
	if (rc != ACL_EXIT_OK)
		return rc;
	if (hujson_parse(m->base_text, m->base_len, &base, &err) != HUJSON_OK) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, base_path, err.line, err.col, "%s", err.msg);
		return ACL_EXIT_SYNTAX;
	}
	if (remove) {
		size_t n = acl_merge_remove(&base, id);

		fprintf(c->json, ",\"removed\":%zu", n);
		rc = ACL_EXIT_OK;
	} else {
		struct acl_policy sp;
		struct acl_merge_src bs = {base_path, m->base_text, m->base_len};
		struct acl_merge_src ss;

		rc = read_file(c, snip_path, &stext, &slen);
		if (rc != ACL_EXIT_OK)
			goto out;
		/* The snippet must be a sound fragment on its own. */
		rc = acl_policy_load(&sp, snip_path, stext, slen, ACL_LOAD_SNIPPET, &c->d);
		acl_policy_free(&sp);
		if (rc != ACL_EXIT_OK)
			goto out;
		if (hujson_parse(stext, slen, &snip, &err) != HUJSON_OK) {
			rc = ACL_EXIT_SYNTAX;
			goto out;
		}
		ss.name = snip_path;
		ss.text = stext;
		ss.len = slen;
		rc = acl_merge(&base, &bs, &snip, &ss, id, mode, &c->d);
		if (rc != ACL_EXIT_OK)
			goto out;
	}
	m->text = hujson_pack_str(&base, &m->len);
out:
	hujson_free(&base);
	hujson_free(&snip);
	free(stext);
	return rc;
}

static void merged_free(struct merged *m)
{
	free(m->text);
	free(m->base_text);
	memset(m, 0, sizeof(*m));
}

/* --- check / test ------------------------------------------------------------ */

static int cmd_check(struct cli *c, int argc, char **argv, bool test_only)
{
	const char *file = NULL, *against = NULL, *topo = NULL;
	bool snippet = false, no_tests = false;
	struct acl_policy p;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (!test_only && strcmp(argv[i], "--snippet") == 0) {
			snippet = true;
		} else if (!test_only && strcmp(argv[i], "--against") == 0 && i + 1 < argc) {
			against = argv[++i];
		} else if (!test_only && strcmp(argv[i], "--no-tests") == 0) {
			no_tests = true;
		} else if (strcmp(argv[i], "--topology") == 0 && i + 1 < argc) {
			topo = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			return usage(c, "unknown option %s", argv[i]);
		} else if (file == NULL) {
			file = argv[i];
		} else {
			return usage(c, "unexpected argument %s", argv[i]);
		}
	}
	if (file == NULL)
		return usage(c, "missing FILE");
	if (against != NULL && !snippet)
		return usage(c, "--against needs --snippet");
	if (against != NULL) {
		struct merged m;
		char *name = xasprintf("%s+%s", against, file);

		rc = do_merge(c, against, file, DEFAULT_ID, ACL_CONFLICT_ERROR, false, &m);
		if (rc == ACL_EXIT_OK) {
			rc = acl_policy_load(&p, name, m.text, m.len, 0, &c->d);
			if (rc == ACL_EXIT_OK && !no_tests)
				rc = run_tests(c, &p, topo);
			else if (rc == ACL_EXIT_OK)
				say(c, "%s: ok\n", file);
			acl_policy_free(&p);
		}
		merged_free(&m);
		free(name);
		return rc;
	}
	rc = load_policy(c, file, snippet ? ACL_LOAD_SNIPPET : 0, &p);
	if (rc == ACL_EXIT_OK) {
		if (!no_tests && (p.ntests > 0 || test_only))
			rc = run_tests(c, &p, topo);
		else
			say(c, "%s: ok\n", file);
	}
	acl_policy_free(&p);
	return rc;
}

/* --- query / explain -------------------------------------------------------- */

static void json_rule(struct cli *c, const struct acl_eval *e, size_t crule, bool first)
{
	char name[64];
	size_t off;
	int line, col;

	acl_eval_rule_name(e, crule, name, sizeof(name), &off);
	acl_policy_pos(e->p, off, &line, &col);
	fprintf(c->json, "%s{\"rule\":\"%s\",\"file\":", first ? "" : ",", name);
	acl_json_str(c->json, e->p->file);
	fprintf(c->json, ",\"line\":%d,\"col\":%d}", line, col);
}

static void print_rule(const struct acl_eval *e, size_t crule, const char *prefix)
{
	char name[64];
	size_t off;
	int line, col;
	const struct acl_rule *r = &e->p->rules[e->rules[crule].rule];

	acl_eval_rule_name(e, crule, name, sizeof(name), &off);
	acl_policy_pos(e->p, off, &line, &col);
	printf("%s%s at %s:%d:%d: src [", prefix, name, e->p->file, line, col);
	for (size_t i = 0; i < r->src.n; i++)
		printf("%s\"%s\"", i ? ", " : "", r->src.v[i].s);
	printf("] dst [");
	for (size_t i = 0; i < r->dst.n; i++)
		printf("%s\"%s\"", i ? ", " : "", r->dst.v[i].s);
	printf("]");
	if (r->kind == ACL_RULE_GRANT) {
		printf(" ip [");
		for (size_t i = 0; i < r->ip.n; i++)
			printf("%s\"%s\"", i ? ", " : "", r->ip.v[i].s);
		printf("]");
	} else if (r->proto.s != NULL) {
		printf(" proto \"%s\"", r->proto.s);
	}
	printf("\n");
}

static int cmd_query(struct cli *c, int argc, char **argv, bool explain)
{
	const char *topo = NULL, *proto = NULL, *pos[3] = {NULL, NULL, NULL};
	int npos = 0, rc;
	struct acl_policy p;
	struct acl_topo t;
	struct acl_eval e;
	struct acl_ipset src, dst;
	char *alias = NULL, *err = NULL;
	const char *ports, *perr;
	struct acl_portrange *pr = NULL;
	size_t npr;
	uint8_t protos[32];
	bool self = false;
	struct acl_verdict v;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--topology") == 0 && i + 1 < argc)
			topo = argv[++i];
		else if (strcmp(argv[i], "--proto") == 0 && i + 1 < argc)
			proto = argv[++i];
		else if (argv[i][0] == '-' && argv[i][1] != '\0')
			return usage(c, "unknown option %s", argv[i]);
		else if (npos < 3)
			pos[npos++] = argv[i];
		else
			return usage(c, "unexpected argument %s", argv[i]);
	}
	if (npos != 3)
		return usage(c, "want FILE SRC DST:PORT");
	if (acl_proto_parse(proto, protos, &perr) < 0)
		return usage(c, "--proto %s: unknown protocol", proto);
	if (acl_split_dst(pos[2], &alias, &ports, &perr) < 0 ||
	    acl_ports_parse(ports, &pr, &npr, &perr) < 0 || npr != 1 || pr[0].lo != pr[0].hi) {
		free(alias);
		free(pr);
		return usage(c, "%s: want DST:PORT with one port", pos[2]);
	}
	rc = load_policy(c, pos[0], 0, &p);
	if (rc != ACL_EXIT_OK) {
		acl_policy_free(&p);
		free(alias);
		free(pr);
		return rc;
	}
	rc = load_topology(c, topo, &p, &t);
	if (rc != ACL_EXIT_OK) {
		acl_topo_free(&t);
		acl_policy_free(&p);
		free(alias);
		free(pr);
		return rc;
	}
	acl_eval_init(&e, &p, &t);
	acl_ipset_init(&src);
	acl_ipset_init(&dst);
	memset(&v, 0, sizeof(v));
	if (acl_eval_resolve(&e, pos[1], ACL_USE_TEST_SRC, &src, NULL, &err) < 0) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, NULL, 0, 0, "source %s: %s", pos[1], err);
		rc = ACL_EXIT_INVALID;
		goto out;
	}
	if (acl_eval_resolve(&e, alias, ACL_USE_DST, &dst, &self, &err) < 0) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, NULL, 0, 0, "destination %s: %s", alias, err);
		rc = ACL_EXIT_INVALID;
		goto out;
	}
	if (self) {
		/* The source's own devices. */
		acl_ipset_add_set(&dst, &src);
	}
	if (acl_ipset_empty(&src) || acl_ipset_empty(&dst)) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, NULL, 0, 0, "%s resolves to no addresses",
		             acl_ipset_empty(&src) ? pos[1] : alias);
		rc = ACL_EXIT_INVALID;
		goto out;
	}
	acl_eval_check(&e, &src, &dst, pr[0].lo, protos, &v);
	rc = v.all ? ACL_EXIT_OK : ACL_EXIT_FAIL;
	fprintf(c->json, ",\"src\":");
	acl_json_str(c->json, pos[1]);
	fprintf(c->json, ",\"dst\":");
	acl_json_str(c->json, pos[2]);
	fprintf(c->json, ",\"proto\":");
	acl_json_str(c->json, proto ? proto : "");
	fprintf(c->json, ",\"allowed\":%s,\"partial\":%s,\"rules\":[", v.all ? "true" : "false",
	        !v.all && !v.none ? "true" : "false");
	for (size_t i = 0; i < v.nhits; i++)
		if (i == 0 || e.rules[v.hits[i]].rule != e.rules[v.hits[i - 1]].rule)
			json_rule(c, &e, v.hits[i], i == 0);
	fprintf(c->json, "]");
	if (c->fmt == ACL_FMT_TEXT) {
		char pbuf[40] = "";

		if (proto != NULL)
			snprintf(pbuf, sizeof(pbuf), " (%s)", proto);
		printf("%s -> %s%s: %s\n", pos[1], pos[2], pbuf,
		       v.all ? "allowed" : (v.none ? "denied" : "denied (partly allowed)"));
		if (explain) {
			char *s1 = acl_ipset_str(&src), *s2 = acl_ipset_str(&dst);

			printf("source %s = %s\n", pos[1], s1);
			printf("destination %s = %s, port %u\n", alias, s2, pr[0].lo);
			free(s1);
			free(s2);
			if (e.allow_all)
				printf("the policy has neither acls nor grants: everything is "
				       "allowed\n");
		}
		for (size_t i = 0; i < v.nhits; i++)
			if (i == 0 || e.rules[v.hits[i]].rule != e.rules[v.hits[i - 1]].rule)
				print_rule(&e, v.hits[i], v.all ? "  by " : "  partly by ");
		if (explain && !v.all) {
			bool any = false;
			size_t last = (size_t)-1;

			/* Near misses: rules that name the source and the
			 * destination but not this port or protocol. */
			for (size_t i = 0; i < e.nrules; i++) {
				bool dst_hit = false;

				if (e.rules[i].rule == last ||
				    !acl_ipset_overlaps(&e.rules[i].src, &src))
					continue;
				for (size_t j = 0; j < e.rules[i].ndsts; j++)
					dst_hit = dst_hit ||
					          acl_ipset_overlaps(&e.rules[i].dsts[j].ips, &dst);
				if (!dst_hit)
					continue;
				if (!any)
					printf("rules from the source to the destination on other "
					       "ports or protocols:\n");
				any = true;
				last = e.rules[i].rule;
				print_rule(&e, i, "  ");
			}
			if (!any)
				printf("no rule connects the source to the destination\n");
		}
	}
out:
	acl_verdict_free(&v);
	acl_ipset_free(&src);
	acl_ipset_free(&dst);
	free(err);
	free(alias);
	free(pr);
	acl_eval_free(&e);
	acl_topo_free(&t);
	acl_policy_free(&p);
	return rc;
}

/* --- merge ------------------------------------------------------------------- */

static int cmd_merge(struct cli *c, int argc, char **argv)
{
	const char *id = DEFAULT_ID, *topo = NULL, *pos[2] = {NULL, NULL};
	enum write_mode mode = MODE_STDOUT;
	int conflict = ACL_CONFLICT_ERROR, npos = 0, rc;
	bool remove = false, no_tests = false, changed;
	struct merged m;
	struct acl_policy p;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--id") == 0 && i + 1 < argc) {
			id = argv[++i];
		} else if (strncmp(a, "--id=", 5) == 0) {
			id = a + 5;
		} else if (strcmp(a, "-w") == 0) {
			if (set_mode(c, &mode, MODE_WRITE, a))
				return ACL_EXIT_USAGE;
		} else if (strcmp(a, "--check") == 0) {
			if (set_mode(c, &mode, MODE_CHECK, a))
				return ACL_EXIT_USAGE;
		} else if (strcmp(a, "--diff") == 0) {
			if (set_mode(c, &mode, MODE_DIFF, a))
				return ACL_EXIT_USAGE;
		} else if (strncmp(a, "--on-conflict=", 14) == 0 ||
		           (strcmp(a, "--on-conflict") == 0 && i + 1 < argc)) {
			const char *v = a[13] == '=' ? a + 14 : argv[++i];

			conflict = acl_conflict_mode_parse(v);
			if (conflict < 0)
				return usage(
				        c,
				        "--on-conflict: want error, union, ours or theirs, not %s",
				        v);
		} else if (strcmp(a, "--remove") == 0) {
			remove = true;
		} else if (strcmp(a, "--no-tests") == 0) {
			no_tests = true;
		} else if (strcmp(a, "--topology") == 0 && i + 1 < argc) {
			topo = argv[++i];
		} else if (a[0] == '-' && a[1] != '\0') {
			return usage(c, "merge: unknown option %s", a);
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			return usage(c, "merge: unexpected argument %s", a);
		}
	}
	if (*id == '\0' || strpbrk(id, " \t\n:") != NULL)
		return usage(c, "merge: --id must be a non-empty word without ':'");
	if (npos != (remove ? 1 : 2))
		return usage(c, "%s",
		             remove ? "merge --remove: want BASE" : "merge: want BASE SNIPPET");
	rc = do_merge(c, pos[0], pos[1], id, (enum acl_conflict_mode)conflict, remove, &m);
	if (rc != ACL_EXIT_OK) {
		if (rc == ACL_EXIT_CONFLICT)
			say(c, "%s: merge conflict, nothing written\n", pos[0]);
		merged_free(&m);
		return rc;
	}
	/* Nothing is written unless the result checks clean and passes. */
	rc = acl_policy_load(&p, pos[0], m.text, m.len, 0, &c->d);
	if (rc == ACL_EXIT_OK && !no_tests && p.ntests > 0)
		rc = run_tests(c, &p, topo);
	acl_policy_free(&p);
	changed = m.len != m.base_len || memcmp(m.text, m.base_text, m.len) != 0;
	fprintf(c->json, ",\"changed\":%s", changed ? "true" : "false");
	if (rc != ACL_EXIT_OK) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, pos[0], 0, 0,
		             "the merged policy does not pass check%s: nothing written",
		             no_tests ? "" : " and its tests");
		merged_free(&m);
		return rc;
	}
	switch (mode) {
	case MODE_STDOUT:
		if (c->fmt != ACL_FMT_JSON) {
			fwrite(m.text, 1, m.len, stdout);
		} else {
			fprintf(c->json, ",\"policy\":");
			acl_json_str(c->json, m.text);
		}
		break;
	case MODE_WRITE:
		if (changed) {
			rc = write_atomic(c, pos[0], m.text, m.len);
			if (rc == ACL_EXIT_OK)
				say(c, "%s: updated\n", pos[0]);
		} else {
			say(c, "%s: unchanged\n", pos[0]);
		}
		break;
	case MODE_CHECK:
		if (changed) {
			acl_diag_add(&c->d, ACL_SEV_ERROR, pos[0], 0, 0,
			             "would change (run \"tailpost-acl merge -w\")");
			rc = ACL_EXIT_FAIL;
		}
		break;
	case MODE_DIFF:
		if (changed) {
			char *a = xasprintf("a/%s", pos[0]), *b = xasprintf("b/%s", pos[0]);

			if (c->fmt == ACL_FMT_TEXT)
				acl_diff_unified(stdout, a, m.base_text, m.base_len, b, m.text,
				                 m.len);
			free(a);
			free(b);
			rc = ACL_EXIT_FAIL;
		}
		break;
	}
	merged_free(&m);
	return rc;
}

/* --- gen --------------------------------------------------------------------- */

static int cmd_gen(struct cli *c, int argc, char **argv)
{
	const char *envfile = NULL, *out = NULL;
	struct acl_gen_opts o = {.grants = true, .with_tests = false};
	struct acl_env env;
	struct acl_policy p;
	char *text = NULL;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--env") == 0 && i + 1 < argc) {
			envfile = argv[++i];
		} else if (strcmp(argv[i], "--syntax") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "grants") == 0)
				o.grants = true;
			else if (strcmp(argv[i], "acls") == 0)
				o.grants = false;
			else
				return usage(c, "--syntax: want grants or acls, not %s", argv[i]);
		} else if (strcmp(argv[i], "--with-tests") == 0) {
			o.with_tests = true;
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			out = argv[++i];
		} else {
			return usage(c, "gen: unexpected argument %s", argv[i]);
		}
	}
	if (envfile != NULL) {
		rc = acl_env_load(&env, envfile, &c->d);
		if (rc != ACL_EXIT_OK)
			return rc;
	} else {
		memset(&env, 0, sizeof(env));
		env.use_environ = true;
	}
	rc = acl_gen(&env, &o, &text, &c->d);
	acl_env_free(&env);
	if (rc != ACL_EXIT_OK)
		return rc;
	/* What we generate must check clean and pass its own tests. */
	rc = acl_policy_load(&p, out ? out : "(generated)", text, strlen(text), ACL_LOAD_SNIPPET,
	                     &c->d);
	if (rc == ACL_EXIT_OK && p.ntests > 0) {
		struct acl_topo t;
		struct acl_eval e;

		acl_topo_synthesize(&t, &p);
		acl_eval_init(&e, &p, &t);
		rc = acl_eval_tests(&e, &c->d, NULL, NULL);
		acl_eval_free(&e);
		acl_topo_free(&t);
	}
	acl_policy_free(&p);
	if (rc != ACL_EXIT_OK) {
		acl_diag_add(&c->d, ACL_SEV_ERROR, NULL, 0, 0,
		             "internal error: the generated snippet does not check");
		free(text);
		return ACL_EXIT_INVALID;
	}
	if (out != NULL) {
		rc = write_atomic(c, out, text, strlen(text));
	} else if (c->fmt == ACL_FMT_TEXT) {
		fputs(text, stdout);
	} else {
		fprintf(c->json, ",\"snippet\":");
		acl_json_str(c->json, text);
	}
	free(text);
	return rc;
}

int acl_cli_main(int argc, char **argv)
{
	struct cli c;
	int i = 1, rc;

	memset(&c, 0, sizeof(c));
	acl_diags_init(&c.d);
	c.json = open_memstream(&c.json_extra, &c.json_len);
	if (c.json == NULL) {
		perror("tailpost-acl");
		return ACL_EXIT_IO;
	}
	c.command = "";
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
			int f = acl_format_parse(argv[++i]);

			if (f < 0)
				return finish(
				        &c, usage(&c, "--format: want text, json or github, not %s",
				                  argv[i]));
			c.fmt = (enum acl_format)f;
		} else if (strncmp(argv[i], "--format=", 9) == 0) {
			int f = acl_format_parse(argv[i] + 9);

			if (f < 0)
				return finish(
				        &c, usage(&c, "--format: want text, json or github, not %s",
				                  argv[i] + 9));
			c.fmt = (enum acl_format)f;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("tailpost-acl %s\n", TAILPOST_VERSION);
			return finish(&c, ACL_EXIT_OK);
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_text, stdout);
			return finish(&c, ACL_EXIT_OK);
		} else {
			return finish(&c, usage(&c, "unknown option %s", argv[i]));
		}
	}
	if (i >= argc)
		return finish(&c, usage(&c, "missing command"));
	c.command = argv[i];
	/* --format may also follow the command. */
	{
		int w = i + 1;

		for (int k = i + 1; k < argc; k++) {
			if (strcmp(argv[k], "--format") == 0 && k + 1 < argc) {
				int f = acl_format_parse(argv[k + 1]);

				if (f < 0)
					return finish(&c, usage(&c,
					                        "--format: want text, json or "
					                        "github, not %s",
					                        argv[k + 1]));
				c.fmt = (enum acl_format)f;
				k++;
				continue;
			}
			if (strncmp(argv[k], "--format=", 9) == 0) {
				int f = acl_format_parse(argv[k] + 9);

				if (f < 0)
					return finish(&c,
					              usage(&c, "--format: bad value %s", argv[k]));
				c.fmt = (enum acl_format)f;
				continue;
			}
			argv[w++] = argv[k];
		}
		argc = w;
	}
	argc -= i + 1;
	argv += i + 1;
	if (strcmp(c.command, "fmt") == 0)
		rc = cmd_fmt(&c, argc, argv);
	else if (strcmp(c.command, "check") == 0)
		rc = cmd_check(&c, argc, argv, false);
	else if (strcmp(c.command, "test") == 0)
		rc = cmd_check(&c, argc, argv, true);
	else if (strcmp(c.command, "query") == 0)
		rc = cmd_query(&c, argc, argv, false);
	else if (strcmp(c.command, "explain") == 0)
		rc = cmd_query(&c, argc, argv, true);
	else if (strcmp(c.command, "merge") == 0)
		rc = cmd_merge(&c, argc, argv);
	else if (strcmp(c.command, "gen") == 0)
		rc = cmd_gen(&c, argc, argv);
	else
		rc = usage(&c, "unknown command %s", c.command);
	return finish(&c, rc);
}
