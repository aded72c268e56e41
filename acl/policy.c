/*
 * acl/policy.c -- loading and checking a policy file.
 *
 * Two passes.  The first walks the HuJSON tree section by section, checks
 * shapes and member names (case-insensitively, as Tailscale's decoder
 * does) and copies every string with its offset.  The second checks
 * references: each selector in acls, grants, tagOwners, groups and
 * autoApprovers must parse and name something defined.  Both passes report
 * into the caller's diagnostics and keep going, so one run shows every
 * problem.
 */
#include "acl/policy.h"
#include "acl/ipset.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct loader {
	struct acl_policy *p;
	struct acl_diags *d;
	bool invalid;
};

static void lerr(struct loader *l, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void lerr(struct loader *l, size_t off, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int line, col;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	acl_policy_pos(l->p, off, &line, &col);
	acl_diag_add(l->d, ACL_SEV_ERROR, l->p->file, line, col, "%s", msg ? msg : "error");
	free(msg);
	l->invalid = true;
}

static void lwarn(struct loader *l, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void lwarn(struct loader *l, size_t off, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int line, col;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	acl_policy_pos(l->p, off, &line, &col);
	acl_diag_add(l->d, ACL_SEV_WARNING, l->p->file, line, col, "%s", msg ? msg : "warning");
	free(msg);
}

void acl_policy_pos(const struct acl_policy *p, size_t off, int *line_r, int *col_r)
{
	hujson_line_col(p->text, p->len, off, line_r, col_r);
}

static const char *kind_name(enum hujson_kind k)
{
	switch (k) {
	case HUJSON_STRING:
		return "string";
	case HUJSON_NUMBER:
		return "number";
	case HUJSON_TRUE:
	case HUJSON_FALSE:
		return "bool";
	case HUJSON_NULL:
		return "null";
	case HUJSON_OBJECT:
		return "object";
	case HUJSON_ARRAY:
		return "array";
	default:
		return "value";
	}
}

static void type_err(struct loader *l, const struct hujson_value *v, const char *path,
                     const char *want)
{
	lerr(l, v->start, "json: cannot unmarshal %s into %s of type %s", kind_name(v->kind), path,
	     want);
}

/* Copy a string value; false (and an error) if v is not a string. */
static bool get_str(struct loader *l, const struct hujson_value *v, const char *path,
                    struct acl_str *out)
{
	if (v->kind != HUJSON_STRING) {
		type_err(l, v, path, "string");
		return false;
	}
	out->s = hujson_string(v, NULL);
	out->off = v->start;
	return true;
}

static bool get_strlist(struct loader *l, struct hujson_value *v, const char *path,
                        struct acl_strlist *out)
{
	size_t n;

	if (v->kind == HUJSON_NULL)
		return true;
	if (v->kind != HUJSON_ARRAY) {
		type_err(l, v, path, "[]string");
		return false;
	}
	n = hujson_len(v);
	out->v = xcalloc(n ? n : 1, sizeof(*out->v));
	out->n = 0;
	for (size_t i = 0; i < n; i++) {
		char sub[160];

		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		if (get_str(l, hujson_elem(v, i), sub, &out->v[out->n]))
			out->n++;
	}
	return true;
}

static void strlist_free(struct acl_strlist *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].s);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/*
 * Check the member names of obj against allowed (NULL-terminated, matched
 * case-insensitively); report unknown and duplicate names.  idx_r[k] gets
 * the member index of allowed[k] or -1.
 */
static void check_members(struct loader *l, struct hujson_value *obj, const char *const *allowed,
                          long *idx_r, const char *what)
{
	size_t n = hujson_len(obj);
	size_t na = 0;

	while (allowed[na] != NULL)
		na++;
	for (size_t k = 0; k < na; k++)
		idx_r[k] = -1;
	for (size_t i = 0; i < n; i++) {
		struct hujson_value *name = hujson_member_name(obj, i);
		char *s = hujson_string(name, NULL);
		size_t k;

		for (k = 0; k < na; k++)
			if (strcasecmp(s, allowed[k]) == 0)
				break;
		if (k == na) {
			lerr(l, name->start, "json: unknown field \"%s\"%s%s", s,
			     what ? " in " : "", what ? what : "");
		} else if (idx_r[k] >= 0) {
			lerr(l, name->start, "duplicate key \"%s\"", s);
		} else {
			idx_r[k] = (long)i;
		}
		free(s);
	}
}

/* Reject exact duplicate names in a map-like object (groups, hosts...). */
static void check_dup_names(struct loader *l, struct hujson_value *obj)
{
	size_t n = hujson_len(obj);

	for (size_t i = 0; i < n; i++) {
		char *a = hujson_string(hujson_member_name(obj, i), NULL);

		for (size_t j = 0; j < i; j++) {
			char *b = hujson_string(hujson_member_name(obj, j), NULL);
			bool dup = strcmp(a, b) == 0;

			free(b);
			if (dup) {
				lerr(l, hujson_member_name(obj, i)->start, "duplicate key \"%s\"",
				     a);
				break;
			}
		}
		free(a);
	}
}

/* --- selectors ------------------------------------------------------------ */

static const char *const autogroups[] = {
        "autogroup:member",   "autogroup:tagged",        "autogroup:self",
        "autogroup:internet", "autogroup:danger-all",    "autogroup:shared",
        "autogroup:nonroot",  "autogroup:admin",         "autogroup:owner",
        "autogroup:it-admin", "autogroup:network-admin", "autogroup:billing-admin",
        "autogroup:auditor",  "autogroup:members",       NULL,
};

bool acl_autogroup_known(const char *name)
{
	for (size_t i = 0; autogroups[i] != NULL; i++)
		if (strcmp(autogroups[i], name) == 0)
			return true;
	return false;
}

static bool host_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (const char *c = s; *c; c++)
		if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '.' || *c == '_'))
			return false;
	return true;
}

enum acl_alias_kind acl_alias_kind(const char *s)
{
	ACL_U128 lo, hi;
	bool pfx;
	const char *err;

	if (strcmp(s, "*") == 0)
		return ACL_ALIAS_ANY;
	if (strncmp(s, "group:", 6) == 0)
		return s[6] ? ACL_ALIAS_GROUP : ACL_ALIAS_BAD;
	if (strncmp(s, "tag:", 4) == 0)
		return s[4] ? ACL_ALIAS_TAG : ACL_ALIAS_BAD;
	if (strncmp(s, "autogroup:", 10) == 0)
		return s[10] ? ACL_ALIAS_AUTOGROUP : ACL_ALIAS_BAD;
	if (strncmp(s, "ipset:", 6) == 0)
		return s[6] ? ACL_ALIAS_IPSET : ACL_ALIAS_BAD;
	if (strncmp(s, "user:*@", 7) == 0)
		return s[7] ? ACL_ALIAS_DOMAIN : ACL_ALIAS_BAD;
	if (strchr(s, '@') != NULL)
		return ACL_ALIAS_USER;
	if (acl_ip_parse(s, &lo, &hi, &pfx, &err) == 0)
		return pfx ? ACL_ALIAS_PREFIX : ACL_ALIAS_IP;
	if (strchr(s, '/') != NULL ||
	    (s[0] >= '0' && s[0] <= '9' && strspn(s, "0123456789./") == strlen(s)))
		return ACL_ALIAS_BAD; /* a malformed address or prefix */
	if (strchr(s, ':') != NULL)
		return ACL_ALIAS_BAD;
	return host_name_ok(s) ? ACL_ALIAS_HOST : ACL_ALIAS_BAD;
}

int acl_split_dst(const char *s, char **alias_r, const char **ports_r, const char **errstr_r)
{
	const char *colon;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':') {
			*errstr_r = "invalid IPv6 destination, want \"[addr]:port\"";
			return -1;
		}
		*alias_r = xstrndup(s + 1, (size_t)(close - s - 1));
		*ports_r = close + 2;
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon == NULL || colon == s) {
		*errstr_r = "missing port in destination (want \"host:port\")";
		return -1;
	}
	*alias_r = xstrndup(s, (size_t)(colon - s));
	*ports_r = colon + 1;
	return 0;
}

static int parse_port(const char *s, size_t n, uint16_t *out, const char **errstr_r)
{
	unsigned long v = 0;

	if (n == 0 || n > 5) {
		*errstr_r = n == 0 ? "empty port" : "port out of range";
		if (n > 5 && strspn(s, "0123456789") >= n) {
			*errstr_r = "port out of range";
			return -1;
		}
		if (n > 5)
			*errstr_r = "invalid port";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			*errstr_r = "invalid port";
			return -1;
		}
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535) {
		*errstr_r = "port out of range";
		return -1;
	}
	*out = (uint16_t)v;
	return 0;
}

int acl_ports_parse(const char *s, struct acl_portrange **out_r, size_t *n_r, const char **errstr_r)
{
	struct acl_portrange *v = NULL;
	size_t n = 0, cap = 0;
	const char *p = s;

	if (strcmp(s, "*") == 0) {
		v = xmalloc(sizeof(*v));
		v->lo = 0;
		v->hi = 65535;
		*out_r = v;
		*n_r = 1;
		return 0;
	}
	if (*s == '\0') {
		*errstr_r = "empty port";
		return -1;
	}
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *dash = memchr(p, '-', len);
		uint16_t lo, hi;

		if (dash == p) {
			*errstr_r = "invalid port";
			goto fail;
		}
		if (dash != NULL) {
			if (parse_port(p, (size_t)(dash - p), &lo, errstr_r) < 0 ||
			    parse_port(dash + 1, len - (size_t)(dash - p) - 1, &hi, errstr_r) < 0)
				goto fail;
			if (lo > hi) {
				*errstr_r = "invalid port range";
				goto fail;
			}
		} else {
			if (parse_port(p, len, &lo, errstr_r) < 0)
				goto fail;
			hi = lo;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].lo = lo;
		v[n].hi = hi;
		n++;
		if (comma == NULL)
			break;
		p = comma + 1;
		if (*p == '\0') {
			*errstr_r = "empty port";
			goto fail;
		}
	}
	*out_r = v;
	*n_r = n;
	return 0;
fail:
	free(v);
	return -1;
}

static const struct {
	const char *name;
	int num;
	int num2; /* a second number the name stands for, or -1 */
} protos[] = {
        {"tcp", 6, -1},      {"udp", 17, -1},   {"icmp", 1, 58},  {"ipv6-icmp", 58, -1},
        {"icmpv6", 58, -1},  {"sctp", 132, -1}, {"igmp", 2, -1},  {"ipv4", 4, -1},
        {"ip-in-ip", 4, -1}, {"egp", 8, -1},    {"igp", 9, -1},   {"gre", 47, -1},
        {"esp", 50, -1},     {"ah", 51, -1},    {"dccp", 33, -1}, {"ipv6", 41, -1},
};

int acl_proto_parse(const char *s, uint8_t set[32], const char **errstr_r)
{
	memset(set, 0, 32);
	if (s == NULL || *s == '\0') {
		set[6 / 8] |= 1u << (6 % 8);
		set[17 / 8] |= 1u << (17 % 8);
		set[1 / 8] |= 1u << (1 % 8);
		set[58 / 8] |= 1u << (58 % 8);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(protos); i++) {
		if (strcasecmp(s, protos[i].name) == 0) {
			set[protos[i].num / 8] |= (uint8_t)(1u << (protos[i].num % 8));
			if (protos[i].num2 >= 0)
				set[protos[i].num2 / 8] |= (uint8_t)(1u << (protos[i].num2 % 8));
			return 0;
		}
	}
	if (strspn(s, "0123456789") == strlen(s) && strlen(s) <= 3) {
		int v = atoi(s);

		if (v >= 0 && v <= 255) {
			set[v / 8] |= (uint8_t)(1u << (v % 8));
			return 0;
		}
	}
	*errstr_r = "unknown protocol";
	return -1;
}

bool acl_proto_has_ports(int proto)
{
	return proto == 6 || proto == 17 || proto == 132;
}

/* --- lookups -------------------------------------------------------------- */

static const struct acl_named *find_named(const struct acl_named *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name.s, name) == 0)
			return &v[i];
	return NULL;
}

const struct acl_named *acl_policy_group(const struct acl_policy *p, const char *name)
{
	return find_named(p->groups, p->ngroups, name);
}

const struct acl_named *acl_policy_tag_owner(const struct acl_policy *p, const char *name)
{
	return find_named(p->tag_owners, p->ntag_owners, name);
}

const struct acl_named *acl_policy_ipset(const struct acl_policy *p, const char *name)
{
	return find_named(p->ipsets, p->nipsets, name);
}

const struct acl_host *acl_policy_host(const struct acl_policy *p, const char *name)
{
	for (size_t i = 0; i < p->nhosts; i++)
		if (strcmp(p->hosts[i].name.s, name) == 0)
			return &p->hosts[i];
	return NULL;
}

/* --- sections ------------------------------------------------------------- */

/* A map section: name (with required prefix) -> list of strings. */
static void load_named(struct loader *l, struct hujson_value *v, const char *section,
                       const char *prefix, struct acl_named **out, size_t *nout)
{
	size_t n;

	if (v->kind != HUJSON_OBJECT) {
		type_err(l, v, section, "object");
		return;
	}
	check_dup_names(l, v);
	n = hujson_len(v);
	*out = xcalloc(n ? n : 1, sizeof(**out));
	*nout = 0;
	for (size_t i = 0; i < n; i++) {
		struct acl_named *e = &(*out)[*nout];
		struct hujson_value *name = hujson_member_name(v, i);
		char path[200];

		e->name.s = hujson_string(name, NULL);
		e->name.off = name->start;
		if (prefix != NULL && (strncmp(e->name.s, prefix, strlen(prefix)) != 0 ||
		                       e->name.s[strlen(prefix)] == '\0'))
			lerr(l, name->start, "%s: \"%s\" must start with \"%s\"", section,
			     e->name.s, prefix);
		snprintf(path, sizeof(path), "%s[\"%s\"]", section, e->name.s);
		get_strlist(l, hujson_member_value(v, i), path, &e->items);
		(*nout)++;
	}
}

static void load_hosts(struct loader *l, struct hujson_value *v)
{
	struct acl_policy *p = l->p;
	size_t n;

	if (v->kind != HUJSON_OBJECT) {
		type_err(l, v, "hosts", "object");
		return;
	}
	check_dup_names(l, v);
	n = hujson_len(v);
	p->hosts = xcalloc(n ? n : 1, sizeof(*p->hosts));
	for (size_t i = 0; i < n; i++) {
		struct acl_host *h = &p->hosts[p->nhosts];
		struct hujson_value *name = hujson_member_name(v, i);
		ACL_U128 lo, hi;
		const char *err;
		char path[200];

		h->name.s = hujson_string(name, NULL);
		h->name.off = name->start;
		snprintf(path, sizeof(path), "hosts[\"%s\"]", h->name.s);
		if (!get_str(l, hujson_member_value(v, i), path, &h->value)) {
			free(h->name.s);
			continue;
		}
		if (!host_name_ok(h->name.s) || acl_alias_kind(h->name.s) != ACL_ALIAS_HOST)
			lerr(l, name->start, "host \"%s\": invalid host name", h->name.s);
		if (acl_ip_parse(h->value.s, &lo, &hi, NULL, &err) < 0)
			lerr(l, h->value.off, "host \"%s\": %s \"%s\"", h->name.s, err, h->value.s);
		p->nhosts++;
	}
}

static const char *const acl_keys[] = {"action", "src",   "proto",      "dst",
                                       "users",  "ports", "srcPosture", NULL};
static const char *const grant_keys[] = {"src", "dst", "ip", "app", "srcPosture", "via", NULL};

static void load_rules(struct loader *l, struct hujson_value *v, enum acl_rule_kind kind)
{
	struct acl_policy *p = l->p;
	const char *section = kind == ACL_RULE_ACL ? "acls" : "grants";
	size_t n;

	if (v->kind == HUJSON_NULL)
		return;
	if (v->kind != HUJSON_ARRAY) {
		type_err(l, v, section, "array");
		return;
	}
	n = hujson_len(v);
	p->rules = xreallocarray(p->rules, p->nrules + n + 1, sizeof(*p->rules));
	for (size_t i = 0; i < n; i++) {
		struct hujson_value *r = hujson_elem(v, i);
		struct acl_rule *rule = &p->rules[p->nrules];
		long idx[8];
		char path[200];

		memset(rule, 0, sizeof(*rule));
		rule->kind = kind;
		rule->index = i;
		rule->off = r->start;
		if (r->kind != HUJSON_OBJECT) {
			snprintf(path, sizeof(path), "%s[%zu]", section, i);
			type_err(l, r, path, "object");
			continue;
		}
		if (kind == ACL_RULE_ACL) {
			check_members(l, r, acl_keys, idx, NULL);
			/* action */
			if (idx[0] < 0) {
				lerr(l, r->start, "acls[%zu]: missing \"action\"", i);
			} else {
				struct acl_str a = {0};

				snprintf(path, sizeof(path), "acls[%zu].action", i);
				if (get_str(l, hujson_member_value(r, (size_t)idx[0]), path, &a) &&
				    strcmp(a.s, "accept") != 0)
					lerr(l, a.off,
					     "acls[%zu]: action \"%s\" not supported, want "
					     "\"accept\"",
					     i, a.s);
				free(a.s);
			}
			/* src (or legacy users) */
			for (int k = 1; k <= 4; k += 3) {
				if (idx[k] < 0)
					continue;
				snprintf(path, sizeof(path), "acls[%zu].%s", i, acl_keys[k]);
				if (rule->src.n == 0)
					get_strlist(l, hujson_member_value(r, (size_t)idx[k]), path,
					            &rule->src);
				else
					lerr(l, hujson_member_name(r, (size_t)idx[k])->start,
					     "acls[%zu]: both \"src\" and \"users\" given", i);
			}
			for (int k = 3; k <= 5; k += 2) {
				if (idx[k] < 0)
					continue;
				snprintf(path, sizeof(path), "acls[%zu].%s", i, acl_keys[k]);
				if (rule->dst.n == 0)
					get_strlist(l, hujson_member_value(r, (size_t)idx[k]), path,
					            &rule->dst);
				else
					lerr(l, hujson_member_name(r, (size_t)idx[k])->start,
					     "acls[%zu]: both \"dst\" and \"ports\" given", i);
			}
			if (idx[1] < 0 && idx[4] < 0)
				lerr(l, r->start, "acls[%zu]: missing \"src\"", i);
			if (idx[3] < 0 && idx[5] < 0)
				lerr(l, r->start, "acls[%zu]: missing \"dst\"", i);
			if (idx[2] >= 0) {
				snprintf(path, sizeof(path), "acls[%zu].proto", i);
				get_str(l, hujson_member_value(r, (size_t)idx[2]), path,
				        &rule->proto);
			}
		} else {
			check_members(l, r, grant_keys, idx, NULL);
			snprintf(path, sizeof(path), "grants[%zu].src", i);
			if (idx[0] >= 0)
				get_strlist(l, hujson_member_value(r, (size_t)idx[0]), path,
				            &rule->src);
			else
				lerr(l, r->start, "grants[%zu]: missing \"src\"", i);
			snprintf(path, sizeof(path), "grants[%zu].dst", i);
			if (idx[1] >= 0)
				get_strlist(l, hujson_member_value(r, (size_t)idx[1]), path,
				            &rule->dst);
			else
				lerr(l, r->start, "grants[%zu]: missing \"dst\"", i);
			snprintf(path, sizeof(path), "grants[%zu].ip", i);
			if (idx[2] >= 0)
				get_strlist(l, hujson_member_value(r, (size_t)idx[2]), path,
				            &rule->ip);
			if (idx[2] < 0 && idx[3] < 0)
				lerr(l, r->start, "grants[%zu]: needs \"ip\" or \"app\"", i);
			if (idx[3] >= 0 &&
			    hujson_member_value(r, (size_t)idx[3])->kind != HUJSON_OBJECT)
				type_err(l, hujson_member_value(r, (size_t)idx[3]), "grants.app",
				         "object");
		}
		p->nrules++;
	}
}

static const char *const test_keys[] = {"src", "proto", "accept", "deny", NULL};

static void load_tests(struct loader *l, struct hujson_value *v)
{
	struct acl_policy *p = l->p;
	size_t n;

	if (v->kind == HUJSON_NULL)
		return;
	if (v->kind != HUJSON_ARRAY) {
		type_err(l, v, "tests", "array");
		return;
	}
	n = hujson_len(v);
	p->tests = xcalloc(n ? n : 1, sizeof(*p->tests));
	for (size_t i = 0; i < n; i++) {
		struct hujson_value *t = hujson_elem(v, i);
		struct acl_test *test = &p->tests[p->ntests];
		long idx[4];
		char path[200];

		test->off = t->start;
		if (t->kind != HUJSON_OBJECT) {
			snprintf(path, sizeof(path), "tests[%zu]", i);
			type_err(l, t, path, "object");
			continue;
		}
		check_members(l, t, test_keys, idx, NULL);
		snprintf(path, sizeof(path), "tests[%zu].src", i);
		if (idx[0] >= 0)
			test->has_src = get_str(l, hujson_member_value(t, (size_t)idx[0]), path,
			                        &test->src);
		snprintf(path, sizeof(path), "tests[%zu].proto", i);
		if (idx[1] >= 0)
			get_str(l, hujson_member_value(t, (size_t)idx[1]), path, &test->proto);
		snprintf(path, sizeof(path), "tests[%zu].accept", i);
		if (idx[2] >= 0)
			test->has_accept = get_strlist(l, hujson_member_value(t, (size_t)idx[2]),
			                               path, &test->accept);
		snprintf(path, sizeof(path), "tests[%zu].deny", i);
		if (idx[3] >= 0)
			test->has_deny = get_strlist(l, hujson_member_value(t, (size_t)idx[3]),
			                             path, &test->deny);
		p->ntests++;
	}
}

/* Sections we check for shape only (their semantics are not evaluated). */
static void load_array_of_objects(struct loader *l, struct hujson_value *v, const char *section,
                                  const char *const *keys)
{
	if (v->kind == HUJSON_NULL)
		return;
	if (v->kind != HUJSON_ARRAY) {
		type_err(l, v, section, "array");
		return;
	}
	for (size_t i = 0; i < hujson_len(v); i++) {
		struct hujson_value *e = hujson_elem(v, i);
		long idx[16];
		char path[200];

		if (e->kind != HUJSON_OBJECT) {
			snprintf(path, sizeof(path), "%s[%zu]", section, i);
			type_err(l, e, path, "object");
			continue;
		}
		check_members(l, e, keys, idx, NULL);
	}
}

static const char *const ssh_keys[] = {"action",      "src",       "dst",      "users",
                                       "checkPeriod", "acceptEnv", "recorder", "enforceRecorder",
                                       "srcPosture",  "message",   NULL};
static const char *const ssh_test_keys[] = {"src", "dst", "accept", "deny", "check", NULL};
static const char *const node_attr_keys[] = {"target", "attr", "app", "ipPool", NULL};
static const char *const auto_approver_keys[] = {"routes", "exitNode", "services", NULL};

static const char *const top_keys[] = {
        "acls",
        "grants",
        "groups",
        "hosts",
        "tagOwners",
        "autoApprovers",
        "ssh",
        "sshTests",
        "nodeAttrs",
        "tests",
        "postures",
        "ipsets",
        "derpMap",
        "disableIPv4",
        "randomizeClientPort",
        "OneCGNATRoute",
        "defaultSrcPosture",
        NULL,
};

enum {
	K_ACLS,
	K_GRANTS,
	K_GROUPS,
	K_HOSTS,
	K_TAGOWNERS,
	K_AUTOAPPROVERS,
	K_SSH,
	K_SSHTESTS,
	K_NODEATTRS,
	K_TESTS,
	K_POSTURES,
	K_IPSETS,
	K_DERPMAP,
	K_DISABLEIPV4,
	K_RANDOMIZE,
	K_ONECGNAT,
	K_DEFAULTPOSTURE,
	K_NKEYS,
};

/* --- references ----------------------------------------------------------- */

enum ref_ctx {
	REF_SRC,
	REF_DST,
	REF_OWNER,
	REF_MEMBER,
	REF_IPSET,
	REF_APPROVER,
};

/* An undefined name: an error, or a warning in a snippet (the base
 * policy it is merged into may define it). */
static void undefined(struct loader *l, size_t off, const char *what, const char *name,
                      const char *where)
{
	if (l->p->snippet)
		lwarn(l, off, "%s \"%s\" not found%s", what, name, where);
	else
		lerr(l, off, "%s \"%s\" not found%s", what, name, where);
}

static void check_alias(struct loader *l, const struct acl_str *a, enum ref_ctx ctx)
{
	const struct acl_policy *p = l->p;
	const char *s = a->s;

	switch (acl_alias_kind(s)) {
	case ACL_ALIAS_BAD:
		lerr(l, a->off, "invalid alias \"%s\"", s);
		return;
	case ACL_ALIAS_ANY:
		if (ctx == REF_OWNER || ctx == REF_MEMBER || ctx == REF_APPROVER)
			lerr(l, a->off, "\"*\" is not allowed here");
		return;
	case ACL_ALIAS_USER:
	case ACL_ALIAS_DOMAIN:
		return;
	case ACL_ALIAS_GROUP:
		if (ctx == REF_MEMBER) {
			lerr(l, a->off, "group \"%s\": groups cannot contain other groups", s);
			return;
		}
		if (acl_policy_group(p, s) == NULL)
			undefined(l, a->off, "group", s, "");
		return;
	case ACL_ALIAS_TAG:
		if (ctx == REF_MEMBER) {
			lerr(l, a->off, "tag \"%s\": groups cannot contain tags", s);
			return;
		}
		if (acl_policy_tag_owner(p, s) == NULL)
			undefined(l, a->off, "tag", s, " in tagOwners");
		return;
	case ACL_ALIAS_AUTOGROUP:
		if (!acl_autogroup_known(s)) {
			lerr(l, a->off, "autogroup \"%s\" is not valid", s);
			return;
		}
		if (strcmp(s, "autogroup:self") == 0 && ctx != REF_DST)
			lerr(l, a->off, "autogroup:self can only be used in destinations");
		else if (strcmp(s, "autogroup:internet") == 0 && ctx != REF_DST)
			lerr(l, a->off, "autogroup:internet can only be used in destinations");
		else if (strcmp(s, "autogroup:nonroot") == 0)
			lerr(l, a->off, "autogroup:nonroot can only be used in ssh users");
		else if (strcmp(s, "autogroup:danger-all") == 0 && ctx != REF_SRC && ctx != REF_DST)
			lerr(l, a->off, "autogroup:danger-all can only be used in acls and grants");
		return;
	case ACL_ALIAS_IPSET:
		if (ctx == REF_OWNER || ctx == REF_MEMBER) {
			lerr(l, a->off, "ipset \"%s\" is not allowed here", s);
			return;
		}
		if (acl_policy_ipset(p, s) == NULL)
			undefined(l, a->off, "ipset", s, "");
		return;
	case ACL_ALIAS_IP:
	case ACL_ALIAS_PREFIX:
		if (ctx == REF_OWNER || ctx == REF_MEMBER || ctx == REF_APPROVER)
			lerr(l, a->off, "address \"%s\" is not allowed here", s);
		return;
	case ACL_ALIAS_HOST:
		if (ctx == REF_OWNER || ctx == REF_MEMBER || ctx == REF_APPROVER) {
			lerr(l, a->off, "invalid %s \"%s\" (want a user, group or tag)",
			     ctx == REF_MEMBER ? "group member" : "owner", s);
			return;
		}
		if (acl_policy_host(p, s) == NULL)
			undefined(l, a->off, "host", s, "");
		return;
	}
}

static void check_rule(struct loader *l, const struct acl_rule *r)
{
	uint8_t set[32];
	const char *err;

	for (size_t i = 0; i < r->src.n; i++)
		check_alias(l, &r->src.v[i], REF_SRC);
	if (r->kind == ACL_RULE_ACL) {
		bool portless = false;

		if (r->proto.s != NULL) {
			if (acl_proto_parse(r->proto.s, set, &err) < 0) {
				lerr(l, r->proto.off, "proto \"%s\": %s", r->proto.s, err);
			} else {
				portless = true;
				for (int k = 0; k < 256; k++)
					if ((set[k / 8] >> (k % 8)) & 1 && acl_proto_has_ports(k))
						portless = false;
			}
		}
		for (size_t i = 0; i < r->dst.n; i++) {
			const struct acl_str *d = &r->dst.v[i];
			char *alias;
			const char *ports;
			struct acl_portrange *pr;
			size_t npr;
			struct acl_str a;

			if (acl_split_dst(d->s, &alias, &ports, &err) < 0) {
				lerr(l, d->off, "dst \"%s\": %s", d->s, err);
				continue;
			}
			if (acl_ports_parse(ports, &pr, &npr, &err) < 0)
				lerr(l, d->off, "dst \"%s\": %s \"%s\"", d->s, err, ports);
			else
				free(pr);
			if (portless && strcmp(ports, "*") != 0)
				lerr(l, d->off, "dst \"%s\": proto \"%s\" has no ports, use \"*\"",
				     d->s, r->proto.s);
			a.s = alias;
			a.off = d->off;
			check_alias(l, &a, REF_DST);
			free(alias);
		}
		return;
	}
	for (size_t i = 0; i < r->dst.n; i++)
		check_alias(l, &r->dst.v[i], REF_DST);
	for (size_t i = 0; i < r->ip.n; i++) {
		const struct acl_str *ip = &r->ip.v[i];
		const char *colon = strchr(ip->s, ':');
		struct acl_portrange *pr;
		size_t npr;

		if (strcmp(ip->s, "*") == 0)
			continue;
		if (colon != NULL) {
			char *proto = xstrndup(ip->s, (size_t)(colon - ip->s));

			if (acl_proto_parse(proto, set, &err) < 0 || *proto == '\0')
				lerr(l, ip->off, "ip \"%s\": unknown protocol \"%s\"", ip->s,
				     proto);
			free(proto);
			if (acl_ports_parse(colon + 1, &pr, &npr, &err) < 0)
				lerr(l, ip->off, "ip \"%s\": %s", ip->s, err);
			else
				free(pr);
		} else if (acl_ports_parse(ip->s, &pr, &npr, &err) == 0) {
			free(pr);
		} else if (acl_proto_parse(ip->s, set, &err) < 0) {
			lerr(l, ip->off, "ip \"%s\": want \"*\", \"PORT\", \"PROTO:PORTS\"", ip->s);
		}
	}
}

static void check_references(struct loader *l)
{
	struct acl_policy *p = l->p;

	for (size_t i = 0; i < p->ngroups; i++)
		for (size_t j = 0; j < p->groups[i].items.n; j++)
			check_alias(l, &p->groups[i].items.v[j], REF_MEMBER);
	for (size_t i = 0; i < p->ntag_owners; i++)
		for (size_t j = 0; j < p->tag_owners[i].items.n; j++)
			check_alias(l, &p->tag_owners[i].items.v[j], REF_OWNER);
	for (size_t i = 0; i < p->nipsets; i++)
		for (size_t j = 0; j < p->ipsets[i].items.n; j++) {
			struct acl_str a = p->ipsets[i].items.v[j];
			const char *s = a.s;

			/* "add ..." / "remove ..." forms name another selector. */
			if (strncmp(s, "add ", 4) == 0 || strncmp(s, "remove ", 7) == 0)
				a.s = (char *)(uintptr_t)(strchr(s, ' ') + 1);
			check_alias(l, &a, REF_IPSET);
		}
	for (size_t i = 0; i < p->nrules; i++)
		check_rule(l, &p->rules[i]);
}

/*
 * ssh rules: action accept or check; src and dst selectors must be defined
 * like in acls (tailscale.com/kb/1337/policy-syntax#ssh); users are login
 * names or autogroup:nonroot, which only makes sense here.
 */
static void check_ssh(struct loader *l, struct hujson_value *v)
{
	if (v->kind != HUJSON_ARRAY)
		return; /* reported by load_array_of_objects */
	for (size_t i = 0; i < hujson_len(v); i++) {
		struct hujson_value *r = hujson_elem(v, i);
		long k;
		char path[64];

		if (r->kind != HUJSON_OBJECT)
			continue;
		k = hujson_find(r, "action", true);
		if (k < 0) {
			lerr(l, r->start, "ssh[%zu]: missing \"action\"", i);
		} else {
			struct acl_str a = {0};

			snprintf(path, sizeof(path), "ssh[%zu].action", i);
			if (get_str(l, hujson_member_value(r, (size_t)k), path, &a) &&
			    strcmp(a.s, "accept") != 0 && strcmp(a.s, "check") != 0)
				lerr(l, a.off,
				     "ssh[%zu]: action \"%s\" not supported, want \"accept\" or "
				     "\"check\"",
				     i, a.s);
			free(a.s);
		}
		for (int side = 0; side < 2; side++) {
			const char *key = side == 0 ? "src" : "dst";
			struct acl_strlist list = {0};

			k = hujson_find(r, key, true);
			if (k < 0) {
				lerr(l, r->start, "ssh[%zu]: missing \"%s\"", i, key);
				continue;
			}
			snprintf(path, sizeof(path), "ssh[%zu].%s", i, key);
			get_strlist(l, hujson_member_value(r, (size_t)k), path, &list);
			for (size_t j = 0; j < list.n; j++)
				check_alias(l, &list.v[j], side == 0 ? REF_SRC : REF_DST);
			strlist_free(&list);
		}
	}
}

static void check_auto_approvers(struct loader *l, struct hujson_value *v)
{
	long idx[3];

	if (v->kind != HUJSON_OBJECT) {
		type_err(l, v, "autoApprovers", "object");
		return;
	}
	check_members(l, v, auto_approver_keys, idx, "autoApprovers");
	if (idx[0] >= 0) {
		struct hujson_value *routes = hujson_member_value(v, (size_t)idx[0]);

		if (routes->kind != HUJSON_OBJECT) {
			type_err(l, routes, "autoApprovers.routes", "object");
		} else {
			for (size_t i = 0; i < hujson_len(routes); i++) {
				struct hujson_value *name = hujson_member_name(routes, i);
				char *route = hujson_string(name, NULL);
				ACL_U128 lo, hi;
				const char *err;
				struct acl_strlist who = {0};

				if (acl_ip_parse(route, &lo, &hi, NULL, &err) < 0)
					lerr(l, name->start, "autoApprovers.routes: %s \"%s\"", err,
					     route);
				get_strlist(l, hujson_member_value(routes, i),
				            "autoApprovers.routes", &who);
				for (size_t j = 0; j < who.n; j++)
					check_alias(l, &who.v[j], REF_APPROVER);
				strlist_free(&who);
				free(route);
			}
		}
	}
	if (idx[1] >= 0) {
		struct acl_strlist who = {0};

		get_strlist(l, hujson_member_value(v, (size_t)idx[1]), "autoApprovers.exitNode",
		            &who);
		for (size_t j = 0; j < who.n; j++)
			check_alias(l, &who.v[j], REF_APPROVER);
		strlist_free(&who);
	}
}

/* Duplicate names anywhere in the tree (the policy must be one JSON value
 * with unique names, RFC 8259 section 4 "SHOULD be unique"). */
static void check_dups_deep(struct loader *l, struct hujson_value *v, int depth)
{
	if (v->kind != HUJSON_OBJECT && v->kind != HUJSON_ARRAY)
		return;
	if (v->kind == HUJSON_OBJECT && depth >= 3)
		check_dup_names(l, v);
	for (size_t i = 0; i < v->nitems; i++)
		check_dups_deep(l, &v->items[i], depth + 1);
}

int acl_policy_load(struct acl_policy *p, const char *file, const char *text, size_t len,
                    unsigned flags, struct acl_diags *d)
{
	struct loader l = {.p = p, .d = d};
	struct hujson_error err;
	long idx[K_NKEYS];
	struct hujson_value *root;

	memset(p, 0, sizeof(*p));
	p->file = xstrdup(file);
	p->text = xmemdup(text, len + 1);
	p->text[len] = '\0';
	p->len = len;
	p->snippet = (flags & ACL_LOAD_SNIPPET) != 0;
	if (hujson_parse(p->text, len, &p->root, &err) != HUJSON_OK) {
		acl_diag_add(d, ACL_SEV_ERROR, file, err.line, err.col, "%s", err.msg);
		return ACL_EXIT_SYNTAX;
	}
	root = &p->root;
	if (root->kind != HUJSON_OBJECT) {
		type_err(&l, root, "policy", "object");
		return ACL_EXIT_INVALID;
	}
	check_members(&l, root, top_keys, idx, NULL);
	/* Definitions first, so references can be checked in any order. */
	if (idx[K_GROUPS] >= 0)
		load_named(&l, hujson_member_value(root, (size_t)idx[K_GROUPS]), "groups",
		           "group:", &p->groups, &p->ngroups);
	if (idx[K_TAGOWNERS] >= 0)
		load_named(&l, hujson_member_value(root, (size_t)idx[K_TAGOWNERS]), "tagOwners",
		           "tag:", &p->tag_owners, &p->ntag_owners);
	if (idx[K_IPSETS] >= 0)
		load_named(&l, hujson_member_value(root, (size_t)idx[K_IPSETS]), "ipsets",
		           "ipset:", &p->ipsets, &p->nipsets);
	if (idx[K_POSTURES] >= 0)
		load_named(&l, hujson_member_value(root, (size_t)idx[K_POSTURES]), "postures",
		           "posture:", &p->postures, &p->npostures);
	if (idx[K_HOSTS] >= 0)
		load_hosts(&l, hujson_member_value(root, (size_t)idx[K_HOSTS]));
	if (idx[K_ACLS] >= 0) {
		p->has_acls = true;
		load_rules(&l, hujson_member_value(root, (size_t)idx[K_ACLS]), ACL_RULE_ACL);
	}
	if (idx[K_GRANTS] >= 0) {
		p->has_grants = true;
		load_rules(&l, hujson_member_value(root, (size_t)idx[K_GRANTS]), ACL_RULE_GRANT);
	}
	if (idx[K_TESTS] >= 0) {
		p->has_tests = true;
		load_tests(&l, hujson_member_value(root, (size_t)idx[K_TESTS]));
	}
	if (idx[K_SSH] >= 0) {
		load_array_of_objects(&l, hujson_member_value(root, (size_t)idx[K_SSH]), "ssh",
		                      ssh_keys);
		check_ssh(&l, hujson_member_value(root, (size_t)idx[K_SSH]));
	}
	if (idx[K_SSHTESTS] >= 0)
		load_array_of_objects(&l, hujson_member_value(root, (size_t)idx[K_SSHTESTS]),
		                      "sshTests", ssh_test_keys);
	if (idx[K_NODEATTRS] >= 0)
		load_array_of_objects(&l, hujson_member_value(root, (size_t)idx[K_NODEATTRS]),
		                      "nodeAttrs", node_attr_keys);
	if (idx[K_AUTOAPPROVERS] >= 0)
		check_auto_approvers(&l, hujson_member_value(root, (size_t)idx[K_AUTOAPPROVERS]));
	if (idx[K_DERPMAP] >= 0 &&
	    hujson_member_value(root, (size_t)idx[K_DERPMAP])->kind != HUJSON_OBJECT)
		type_err(&l, hujson_member_value(root, (size_t)idx[K_DERPMAP]), "derpMap",
		         "object");
	for (int k = K_DISABLEIPV4; k <= K_RANDOMIZE; k++) {
		struct hujson_value *b;

		if (idx[k] < 0)
			continue;
		b = hujson_member_value(root, (size_t)idx[k]);
		if (b->kind != HUJSON_TRUE && b->kind != HUJSON_FALSE)
			type_err(&l, b, top_keys[k], "bool");
	}
	if (idx[K_ONECGNAT] >= 0 &&
	    hujson_member_value(root, (size_t)idx[K_ONECGNAT])->kind != HUJSON_STRING)
		type_err(&l, hujson_member_value(root, (size_t)idx[K_ONECGNAT]), "OneCGNATRoute",
		         "string");
	if (idx[K_DEFAULTPOSTURE] >= 0) {
		struct acl_strlist tmp = {0};

		get_strlist(&l, hujson_member_value(root, (size_t)idx[K_DEFAULTPOSTURE]),
		            "defaultSrcPosture", &tmp);
		strlist_free(&tmp);
	}
	check_dups_deep(&l, root, 0);
	check_references(&l);
	return l.invalid ? ACL_EXIT_INVALID : ACL_EXIT_OK;
}

static void named_free(struct acl_named *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name.s);
		strlist_free(&v[i].items);
	}
	free(v);
}

void acl_policy_free(struct acl_policy *p)
{
	named_free(p->groups, p->ngroups);
	named_free(p->tag_owners, p->ntag_owners);
	named_free(p->ipsets, p->nipsets);
	named_free(p->postures, p->npostures);
	for (size_t i = 0; i < p->nhosts; i++) {
		free(p->hosts[i].name.s);
		free(p->hosts[i].value.s);
	}
	free(p->hosts);
	for (size_t i = 0; i < p->nrules; i++) {
		strlist_free(&p->rules[i].src);
		strlist_free(&p->rules[i].dst);
		strlist_free(&p->rules[i].ip);
		free(p->rules[i].proto.s);
	}
	free(p->rules);
	for (size_t i = 0; i < p->ntests; i++) {
		free(p->tests[i].src.s);
		free(p->tests[i].proto.s);
		strlist_free(&p->tests[i].accept);
		strlist_free(&p->tests[i].deny);
	}
	free(p->tests);
	hujson_free(&p->root);
	free(p->text);
	free(p->file);
	memset(p, 0, sizeof(*p));
}
