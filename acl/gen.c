/*
 * acl/gen.c -- building the mail snippet.
 *
 * The snippet is written as HuJSON text with comments, then parsed and put
 * through the formatter, so what gen prints is exactly what fmt would
 * print and merge inserts it without churn.
 */
#include "acl/gen.h"
#include "acl/hujson.h"
#include "acl/policy.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- .env ------------------------------------------------------------------ */

static void env_put(struct acl_env *env, const char *k, size_t kn, const char *v, size_t vn)
{
	for (size_t i = 0; i < env->n; i++) {
		if (strlen(env->keys[i]) == kn && memcmp(env->keys[i], k, kn) == 0) {
			free(env->vals[i]);
			env->vals[i] = xstrndup(v, vn);
			return;
		}
	}
	env->keys = xreallocarray(env->keys, env->n + 1, sizeof(*env->keys));
	env->vals = xreallocarray(env->vals, env->n + 1, sizeof(*env->vals));
	env->keys[env->n] = xstrndup(k, kn);
	env->vals[env->n] = xstrndup(v, vn);
	env->n++;
}

int acl_env_parse(struct acl_env *env, const char *name, const char *text, size_t len,
                  struct acl_diags *d)
{
	size_t i = 0;
	int lineno = 0;

	memset(env, 0, sizeof(*env));
	while (i < len) {
		const char *line = text + i, *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i;
		size_t a = 0, b = n, keyend;

		i += n + (nl ? 1 : 0);
		lineno++;
		while (a < b && (line[a] == ' ' || line[a] == '\t'))
			a++;
		while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t' || line[b - 1] == '\r'))
			b--;
		if (a == b || line[a] == '#')
			continue;
		if (b - a > 7 && memcmp(line + a, "export ", 7) == 0)
			a += 7;
		keyend = a;
		while (keyend < b &&
		       (line[keyend] == '_' || (line[keyend] >= 'A' && line[keyend] <= 'Z') ||
		        (line[keyend] >= 'a' && line[keyend] <= 'z') ||
		        (keyend > a && line[keyend] >= '0' && line[keyend] <= '9')))
			keyend++;
		if (keyend == a || keyend >= b || line[keyend] != '=') {
			acl_diag_add(d, ACL_SEV_ERROR, name, lineno, (int)a + 1, "want KEY=VALUE");
			acl_env_free(env);
			return ACL_EXIT_INVALID;
		}
		{
			size_t va = keyend + 1, vb = b;

			if (vb > va && (line[va] == '"' || line[va] == '\'')) {
				char q = line[va];

				if (vb - va < 2 || line[vb - 1] != q) {
					acl_diag_add(d, ACL_SEV_ERROR, name, lineno, (int)va + 1,
					             "unterminated quote");
					acl_env_free(env);
					return ACL_EXIT_INVALID;
				}
				va++;
				vb--;
			} else {
				/* An unquoted value ends at " #" (a trailing comment). */
				for (size_t k = va; k + 1 < vb; k++)
					if ((line[k] == ' ' || line[k] == '\t') &&
					    line[k + 1] == '#') {
						vb = k;
						break;
					}
				while (vb > va && (line[vb - 1] == ' ' || line[vb - 1] == '\t'))
					vb--;
			}
			env_put(env, line + a, keyend - a, line + va, vb - va);
		}
	}
	return ACL_EXIT_OK;
}

int acl_env_load(struct acl_env *env, const char *path, struct acl_diags *d)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0, got;
	int rc;

	memset(env, 0, sizeof(*env));
	if (f == NULL) {
		acl_diag_add(d, ACL_SEV_ERROR, path, 0, 0, "cannot read: %s", strerror(errno));
		return ACL_EXIT_IO;
	}
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			text = xrealloc(text, cap);
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	rc = acl_env_parse(env, path, text ? text : "", len, d);
	free(text);
	return rc;
}

void acl_env_free(struct acl_env *env)
{
	for (size_t i = 0; i < env->n; i++) {
		free(env->keys[i]);
		free(env->vals[i]);
	}
	free(env->keys);
	free(env->vals);
	memset(env, 0, sizeof(*env));
}

const char *acl_env_get(const struct acl_env *env, const char *key)
{
	for (size_t i = 0; i < env->n; i++)
		if (strcmp(env->keys[i], key) == 0)
			return env->vals[i];
	return env->use_environ ? getenv(key) : NULL;
}

/* --- generation ----------------------------------------------------------- */

struct settings {
	const char *edge, *mailbox, *smarthost, *admin_src, *owner;
	int smarthost_port; /* 0: none */
	int admin_port;     /* 0: none */
	int ports[16];
	size_t nports;
};

static const char *get(const struct acl_env *env, const char *key, const char *def)
{
	const char *v = acl_env_get(env, key);

	return v != NULL ? v : def;
}

static int port_value(const char *key, const char *s, bool allow_empty, int *out,
                      struct acl_diags *d)
{
	char *end;
	long v;

	if (*s == '\0' && allow_empty) {
		*out = 0;
		return 0;
	}
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535) {
		acl_diag_add(d, ACL_SEV_ERROR, NULL, 0, 0, "%s=\"%s\": want a port 1-65535", key,
		             s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int tag_value(const char *key, const char *s, struct acl_diags *d)
{
	if (acl_alias_kind(s) != ACL_ALIAS_TAG) {
		acl_diag_add(d, ACL_SEV_ERROR, NULL, 0, 0, "%s=\"%s\": want a tag (\"tag:name\")",
		             key, s);
		return -1;
	}
	return 0;
}

static int load_settings(const struct acl_env *env, struct settings *s, struct acl_diags *d)
{
	const char *ports = get(env, "TAILPOST_MAIL_PORTS", "25,465,587,143,993");
	const char *acme = get(env, "TAILPOST_ACME", "true");
	int rc = 0;
	char *copy, *tok, *save = NULL;

	memset(s, 0, sizeof(*s));
	s->edge = get(env, "TAILPOST_EDGE_TAG", "tag:reverse-proxy");
	s->mailbox = get(env, "TAILPOST_MAILBOX_TAG", "tag:mailbox");
	s->smarthost = get(env, "TAILPOST_SMARTHOST_TAG", "tag:mail");
	s->admin_src = get(env, "TAILPOST_ADMIN_SRC", "autogroup:admin");
	s->owner = get(env, "TAILPOST_TAG_OWNER", "autogroup:admin");
	rc |= tag_value("TAILPOST_EDGE_TAG", s->edge, d);
	rc |= tag_value("TAILPOST_MAILBOX_TAG", s->mailbox, d);
	rc |= tag_value("TAILPOST_SMARTHOST_TAG", s->smarthost, d);
	rc |= port_value("TAILPOST_SMARTHOST_PORT", get(env, "TAILPOST_SMARTHOST_PORT", "587"),
	                 true, &s->smarthost_port, d);
	rc |= port_value("TAILPOST_ADMIN_PORT", get(env, "TAILPOST_ADMIN_PORT", "8080"), true,
	                 &s->admin_port, d);
	if (*s->admin_src != '\0') {
		enum acl_alias_kind k = acl_alias_kind(s->admin_src);

		if (k != ACL_ALIAS_USER && k != ACL_ALIAS_GROUP && k != ACL_ALIAS_AUTOGROUP &&
		    k != ACL_ALIAS_TAG) {
			acl_diag_add(
			        d, ACL_SEV_ERROR, NULL, 0, 0,
			        "TAILPOST_ADMIN_SRC=\"%s\": want a user, group, tag or autogroup",
			        s->admin_src);
			rc = -1;
		}
	}
	{
		enum acl_alias_kind k = acl_alias_kind(s->owner);

		if (k != ACL_ALIAS_USER && k != ACL_ALIAS_GROUP && k != ACL_ALIAS_AUTOGROUP &&
		    k != ACL_ALIAS_TAG) {
			acl_diag_add(d, ACL_SEV_ERROR, NULL, 0, 0,
			             "TAILPOST_TAG_OWNER=\"%s\": want a user, group or autogroup",
			             s->owner);
			rc = -1;
		}
	}
	copy = xstrdup(ports);
	for (tok = strtok_r(copy, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		int p;

		if (port_value("TAILPOST_MAIL_PORTS", tok, false, &p, d) < 0) {
			rc = -1;
			continue;
		}
		if (s->nports < ARRAY_SIZE(s->ports) - 1)
			s->ports[s->nports++] = p;
	}
	free(copy);
	if (strcmp(acme, "1") == 0 || strcmp(acme, "true") == 0 || strcmp(acme, "yes") == 0 ||
	    strcmp(acme, "on") == 0) {
		bool have = false;

		for (size_t i = 0; i < s->nports; i++)
			have = have || s->ports[i] == 80;
		if (!have)
			s->ports[s->nports++] = 80;
	} else if (!(strcmp(acme, "0") == 0 || strcmp(acme, "false") == 0 ||
	             strcmp(acme, "no") == 0 || strcmp(acme, "off") == 0 || *acme == '\0')) {
		acl_diag_add(d, ACL_SEV_ERROR, NULL, 0, 0,
		             "TAILPOST_ACME=\"%s\": want true or false", acme);
		rc = -1;
	}
	if (s->nports == 0) {
		acl_diag_add(d, ACL_SEV_ERROR, NULL, 0, 0, "TAILPOST_MAIL_PORTS: no ports");
		rc = -1;
	}
	return rc ? -1 : 0;
}

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s != NULL)
		(void)buf_puts(b, s);
	free(s);
}

static void rule(struct buf *b, const struct acl_gen_opts *o, const char *comment, const char *src,
                 const char *dst, const int *ports, size_t nports)
{
	put(b, "\t\t// %s\n", comment);
	if (o->grants) {
		put(b,
		    "\t\t{\n\t\t\t\"src\": [\"%s\"],\n\t\t\t\"dst\": [\"%s\"],\n\t\t\t\"ip\":  [",
		    src, dst);
		for (size_t i = 0; i < nports; i++)
			put(b, "%s\"tcp:%d\"", i ? ", " : "", ports[i]);
		put(b, "],\n\t\t},\n");
	} else {
		put(b,
		    "\t\t{\n\t\t\t\"action\": \"accept\",\n\t\t\t\"src\": [\"%s\"],\n"
		    "\t\t\t\"proto\": \"tcp\",\n\t\t\t\"dst\": [\"%s:",
		    src, dst);
		for (size_t i = 0; i < nports; i++)
			put(b, "%s%d", i ? "," : "", ports[i]);
		put(b, "\"],\n\t\t},\n");
	}
}

static void dst_list(struct buf *b, const char *key, const char *host, const int *ports,
                     size_t nports)
{
	put(b, "\t\t\t\"%s\": [", key);
	for (size_t i = 0; i < nports; i++)
		put(b, "%s\"%s:%d\"", i ? ", " : "", host, ports[i]);
	put(b, "],\n");
}

static bool has_port(const struct settings *s, int p)
{
	for (size_t i = 0; i < s->nports; i++)
		if (s->ports[i] == p)
			return true;
	return false;
}

static void tests(struct buf *b, const struct settings *s)
{
	int deny[4];
	size_t nd = 0;

	put(b, "\t\"tests\": [\n");
	/* Edge: exactly the mail ports on the mailbox, nothing on the smarthost. */
	put(b, "\t\t// The edge reaches the mailbox on the mail ports only.\n\t\t{\n");
	put(b, "\t\t\t\"src\": \"%s\",\n\t\t\t\"proto\": \"tcp\",\n", s->edge);
	dst_list(b, "accept", s->mailbox, s->ports, s->nports);
	if (s->admin_port && !has_port(s, s->admin_port))
		deny[nd++] = s->admin_port;
	if (!has_port(s, 22))
		deny[nd++] = 22;
	dst_list(b, "deny", s->mailbox, deny, nd);
	put(b, "\t\t},\n");
	{
		int sh[2];
		size_t ns = 0;

		sh[ns++] = 25;
		if (s->smarthost_port && s->smarthost_port != 25)
			sh[ns++] = s->smarthost_port;
		put(b, "\t\t// The edge never talks to the smarthost.\n\t\t{\n");
		put(b, "\t\t\t\"src\": \"%s\",\n", s->edge);
		dst_list(b, "deny", s->smarthost, sh, ns);
		put(b, "\t\t},\n");
	}
	put(b, "\t\t// Mail ports are TCP: nothing over UDP.\n\t\t{\n");
	put(b, "\t\t\t\"src\": \"%s\",\n\t\t\t\"proto\": \"udp\",\n", s->edge);
	dst_list(b, "deny", s->mailbox, s->ports, s->nports);
	put(b, "\t\t},\n");
	if (s->smarthost_port) {
		int acc[1] = {s->smarthost_port}, dn[1] = {25};

		put(b,
		    "\t\t// The mailbox relays through the smarthost's submission port.\n\t\t{\n");
		put(b, "\t\t\t\"src\": \"%s\",\n\t\t\t\"proto\": \"tcp\",\n", s->mailbox);
		dst_list(b, "accept", s->smarthost, acc, 1);
		if (s->smarthost_port != 25)
			dst_list(b, "deny", s->smarthost, dn, 1);
		put(b, "\t\t},\n");
	}
	put(b, "\t\t// Nothing flows back: the mailbox does not open the edge, the smarthost "
	       "does not open the mailbox.\n\t\t{\n");
	{
		int dn[2] = {25, 0};
		size_t ndn = 1;

		put(b, "\t\t\t\"src\": \"%s\",\n", s->mailbox);
		dst_list(b, "deny", s->edge, dn, 1);
		put(b, "\t\t},\n\t\t{\n");
		if (s->admin_port && s->admin_port != 25)
			dn[ndn++] = s->admin_port;
		put(b, "\t\t\t\"src\": \"%s\",\n", s->smarthost);
		dst_list(b, "deny", s->mailbox, dn, ndn);
		put(b, "\t\t},\n");
	}
	/* Admins: only testable when they are people we can name. */
	if (s->admin_port && *s->admin_src &&
	    (acl_alias_kind(s->admin_src) == ACL_ALIAS_USER ||
	     acl_alias_kind(s->admin_src) == ACL_ALIAS_GROUP)) {
		int acc[1] = {s->admin_port};

		put(b, "\t\t// Admins reach the mailbox admin API.\n\t\t{\n");
		put(b, "\t\t\t\"src\": \"%s\",\n\t\t\t\"proto\": \"tcp\",\n", s->admin_src);
		dst_list(b, "accept", s->mailbox, acc, 1);
		put(b, "\t\t},\n");
	}
	put(b, "\t],\n");
}

int acl_gen(const struct acl_env *env, const struct acl_gen_opts *o, char **out_r,
            struct acl_diags *d)
{
	struct settings s;
	struct buf b;
	struct hujson_value v;
	struct hujson_error err;
	const char *tags[3];

	if (load_settings(env, &s, d) < 0)
		return ACL_EXIT_INVALID;
	tags[0] = s.edge;
	tags[1] = s.mailbox;
	tags[2] = s.smarthost;
	buf_init(&b, 0);
	put(&b, "// tailpost mail flows, generated by \"tailpost-acl gen\": regenerate instead of "
	        "editing.\n");
	put(&b, "// Merge into the tailnet policy with \"tailpost-acl merge -w policy.hujson "
	        "SNIPPET\".\n");
	put(&b, "{\n\t\"tagOwners\": {\n");
	for (int i = 0; i < 3; i++) {
		bool dup = false;

		for (int k = 0; k < i; k++)
			dup = dup || strcmp(tags[k], tags[i]) == 0;
		if (!dup)
			put(&b, "\t\t\"%s\": [\"%s\"],\n", tags[i], s.owner);
	}
	put(&b, "\t},\n\t\"%s\": [\n", o->grants ? "grants" : "acls");
	rule(&b, o, "The edge forwards the public mail ports (and 80 for ACME) to the mailbox.",
	     s.edge, s.mailbox, s.ports, s.nports);
	if (s.smarthost_port)
		rule(&b, o, "The mailbox relays outgoing mail through the smarthost.", s.mailbox,
		     s.smarthost, &s.smarthost_port, 1);
	if (s.admin_port && *s.admin_src)
		rule(&b, o, "Admins reach the mailbox admin API.", s.admin_src, s.mailbox,
		     &s.admin_port, 1);
	put(&b, "\t],\n");
	if (o->with_tests)
		tests(&b, &s);
	put(&b, "}\n");
	if (hujson_parse(hujson_buf_bytes(&b), buf_len(&b), &v, &err) != HUJSON_OK) {
		acl_diag_add(d, ACL_SEV_ERROR, NULL, err.line, err.col,
		             "internal error: generated snippet does not parse: %s", err.msg);
		buf_free(&b);
		return ACL_EXIT_INVALID;
	}
	buf_free(&b);
	hujson_format(&v);
	*out_r = hujson_pack_str(&v, NULL);
	hujson_free(&v);
	return ACL_EXIT_OK;
}
