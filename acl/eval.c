/*
 * acl/eval.c -- compiling rules, answering reachability, running tests.
 *
 * Reachability is decided per elementary destination interval: the
 * destination set is cut at every boundary of every rule's destination
 * ranges and at every node address, so within one interval the set of
 * matching rules is constant and one probe decides it.  That keeps CIDR
 * destinations exact without enumerating addresses.  autogroup:self needs
 * to know whose device an address is, which is why node addresses are cut
 * points of their own.
 */
#include "acl/eval.h"
#include "shared/xmalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U128_MAX (~(ACL_U128)0)
#define V4(a, b, c, d)                                                                             \
	((((ACL_U128)0xffff) << 32) | ((ACL_U128)(a) << 24) | ((ACL_U128)(b) << 16) |              \
	 ((ACL_U128)(c) << 8) | (ACL_U128)(d))
#define MAX_IPSET_DEPTH 16

static char *fmt_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *fmt_err(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s ? s : xstrdup("error");
}

static bool node_is_users(const struct acl_node *n, const struct acl_user *u)
{
	if (n->user == NULL || n->ntags > 0)
		return false;
	return strcmp(n->user, u->name) == 0 || (u->email && strcmp(n->user, u->email) == 0);
}

static void add_node(struct acl_ipset *out, const struct acl_node *n)
{
	for (size_t i = 0; i < n->naddrs; i++)
		acl_ipset_add_range(out, n->addrs[i], n->addrs[i]);
}

static void add_user_nodes(const struct acl_topo *t, const struct acl_user *u,
                           struct acl_ipset *out)
{
	for (size_t i = 0; i < t->nnodes; i++)
		if (node_is_users(&t->nodes[i], u))
			add_node(out, &t->nodes[i]);
}

static bool is_test(enum acl_use use)
{
	return use == ACL_USE_TEST_SRC || use == ACL_USE_TEST_DST;
}

static bool is_dst(enum acl_use use)
{
	return use == ACL_USE_DST || use == ACL_USE_TEST_DST;
}

/* The tailnet ranges "*" stands for as a source: 100.64.0.0/10 and
 * fd7a:115c:a1e0::/48, plus every node address and approved route. */
static void add_tailnet(const struct acl_topo *t, struct acl_ipset *out)
{
	const char *err;

	(void)acl_ipset_add_str(out, "100.64.0.0/10", &err);
	(void)acl_ipset_add_str(out, "fd7a:115c:a1e0::/48", &err);
	for (size_t i = 0; i < t->nnodes; i++) {
		add_node(out, &t->nodes[i]);
		acl_ipset_add_set(out, &t->nodes[i].routes);
	}
}

/* autogroup:internet: public unicast space (RFC 6890 special ranges out). */
static void add_internet(struct acl_ipset *out)
{
	static const char *const special[] = {
	        "0.0.0.0/8",      "10.0.0.0/8",    "100.64.0.0/10",  "127.0.0.0/8",
	        "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3",
	};
	struct acl_ipset spec;
	const char *err;

	acl_ipset_init(&spec);
	(void)acl_ipset_add_str(out, "0.0.0.0/0", &err);
	(void)acl_ipset_add_str(out, "2000::/3", &err);
	for (size_t i = 0; i < ARRAY_SIZE(special); i++)
		(void)acl_ipset_add_str(&spec, special[i], &err);
	acl_ipset_subtract(out, &spec);
	acl_ipset_free(&spec);
}

static int resolve(const struct acl_eval *e, const char *s, enum acl_use use, struct acl_ipset *out,
                   bool *self_r, char **err_r, int depth);

static int resolve_user_like(const struct acl_eval *e, const char *s, enum acl_use use,
                             struct acl_ipset *out, char **err_r)
{
	const struct acl_topo *t = e->t;

	if (strncmp(s, "user:*@", 7) == 0) {
		const char *dom = s + 6; /* "@domain" */
		size_t dl = strlen(dom);

		for (size_t i = 0; i < t->nusers; i++) {
			const char *em = t->users[i].email ? t->users[i].email : t->users[i].name;
			size_t el = strlen(em);

			if (el > dl && strcmp(em + el - dl, dom) == 0)
				add_user_nodes(t, &t->users[i], out);
		}
		return 0;
	}
	{
		const struct acl_user *u = acl_topo_user(t, s);

		if (u == NULL) {
			/* Rules tolerate users without devices; a test naming an
			 * unknown user fails (corpus: src-unknown-user-email). */
			if (is_test(use)) {
				*err_r = fmt_err("user \"%s\" not found", s);
				return -1;
			}
			return 0;
		}
		add_user_nodes(t, u, out);
	}
	return 0;
}

static int resolve_autogroup(const struct acl_eval *e, const char *s, enum acl_use use,
                             struct acl_ipset *out, bool *self_r, char **err_r)
{
	const struct acl_topo *t = e->t;
	const char *name = s + 10;

	if (strcmp(name, "member") == 0 || strcmp(name, "members") == 0) {
		for (size_t i = 0; i < t->nnodes; i++)
			if (t->nodes[i].ntags == 0 && t->nodes[i].user != NULL)
				add_node(out, &t->nodes[i]);
		return 0;
	}
	if (strcmp(name, "tagged") == 0) {
		for (size_t i = 0; i < t->nnodes; i++)
			if (t->nodes[i].ntags > 0)
				add_node(out, &t->nodes[i]);
		return 0;
	}
	if (strcmp(name, "self") == 0) {
		if (!is_dst(use)) {
			*err_r = fmt_err("autogroup:self can only be used in destinations");
			return -1;
		}
		if (self_r != NULL)
			*self_r = true;
		return 0;
	}
	if (strcmp(name, "internet") == 0) {
		if (use == ACL_USE_TEST_DST) {
			*err_r = fmt_err("autogroup:internet is not a valid test destination");
			return -1;
		}
		if (!is_dst(use)) {
			*err_r = fmt_err("autogroup:internet can only be used in destinations");
			return -1;
		}
		add_internet(out);
		return 0;
	}
	if (strcmp(name, "danger-all") == 0) {
		acl_ipset_add_range(out, 0, U128_MAX);
		return 0;
	}
	if (strcmp(name, "shared") == 0)
		return 0;
	if (strcmp(name, "nonroot") == 0) {
		*err_r = fmt_err("autogroup:nonroot can only be used in ssh users");
		return -1;
	}
	if (acl_autogroup_known(s)) {
		/* Roles: admin, owner, it-admin, network-admin, billing-admin,
		 * auditor — users whose topology role matches. */
		for (size_t i = 0; i < t->nusers; i++)
			if (t->users[i].role != NULL && strcmp(t->users[i].role, name) == 0)
				add_user_nodes(t, &t->users[i], out);
		return 0;
	}
	*err_r = fmt_err("autogroup \"%s\" is not valid", s);
	return -1;
}

static int resolve(const struct acl_eval *e, const char *s, enum acl_use use, struct acl_ipset *out,
                   bool *self_r, char **err_r, int depth)
{
	const struct acl_policy *p = e->p;
	ACL_U128 lo, hi;
	const char *err;

	switch (acl_alias_kind(s)) {
	case ACL_ALIAS_BAD:
		*err_r = fmt_err("invalid alias \"%s\"", s);
		return -1;
	case ACL_ALIAS_ANY:
		if (is_dst(use))
			acl_ipset_add_range(out, 0, U128_MAX);
		else
			add_tailnet(e->t, out);
		return 0;
	case ACL_ALIAS_USER:
	case ACL_ALIAS_DOMAIN:
		return resolve_user_like(e, s, use, out, err_r);
	case ACL_ALIAS_GROUP: {
		const struct acl_named *g = acl_policy_group(p, s);

		if (g == NULL) {
			*err_r = fmt_err("group \"%s\" not found", s);
			return -1;
		}
		for (size_t i = 0; i < g->items.n; i++) {
			char *sub = NULL;

			/* Members without devices are fine even in tests. */
			if (resolve(e, g->items.v[i].s, ACL_USE_SRC, out, NULL, &sub, depth + 1) <
			    0)
				free(sub);
		}
		return 0;
	}
	case ACL_ALIAS_TAG:
		if (acl_policy_tag_owner(p, s) == NULL) {
			*err_r = fmt_err("tag \"%s\" not found in tagOwners", s);
			return -1;
		}
		for (size_t i = 0; i < e->t->nnodes; i++)
			if (acl_node_has_tag(&e->t->nodes[i], s))
				add_node(out, &e->t->nodes[i]);
		return 0;
	case ACL_ALIAS_AUTOGROUP:
		return resolve_autogroup(e, s, use, out, self_r, err_r);
	case ACL_ALIAS_IPSET: {
		const struct acl_named *ips = acl_policy_ipset(p, s);

		if (ips == NULL) {
			*err_r = fmt_err("ipset \"%s\" not found", s);
			return -1;
		}
		if (depth > MAX_IPSET_DEPTH) {
			*err_r = fmt_err("ipset \"%s\" nests too deeply", s);
			return -1;
		}
		for (size_t i = 0; i < ips->items.n; i++) {
			const char *it = ips->items.v[i].s;
			bool remove = strncmp(it, "remove ", 7) == 0;
			struct acl_ipset part;

			if (remove || strncmp(it, "add ", 4) == 0)
				it = strchr(it, ' ') + 1;
			acl_ipset_init(&part);
			if (resolve(e, it, use == ACL_USE_TEST_DST ? ACL_USE_DST : use, &part, NULL,
			            err_r, depth + 1) < 0) {
				acl_ipset_free(&part);
				return -1;
			}
			if (remove)
				acl_ipset_subtract(out, &part);
			else
				acl_ipset_add_set(out, &part);
			acl_ipset_free(&part);
		}
		return 0;
	}
	case ACL_ALIAS_PREFIX:
		if (use == ACL_USE_TEST_DST) {
			*err_r = fmt_err("\"%s\" is a network: test destinations must be addresses",
			                 s);
			return -1;
		}
		/* fall through */
	case ACL_ALIAS_IP:
		if (acl_ip_parse(s, &lo, &hi, NULL, &err) < 0) {
			*err_r = fmt_err("%s \"%s\"", err, s);
			return -1;
		}
		acl_ipset_add_range(out, lo, hi);
		return 0;
	case ACL_ALIAS_HOST: {
		const struct acl_host *h = acl_policy_host(p, s);

		if (h == NULL) {
			*err_r = fmt_err("host \"%s\" not found", s);
			return -1;
		}
		if (acl_ip_parse(h->value.s, &lo, &hi, NULL, &err) < 0) {
			*err_r = fmt_err("host \"%s\": %s \"%s\"", s, err, h->value.s);
			return -1;
		}
		if (use == ACL_USE_TEST_DST && lo != hi) {
			*err_r = fmt_err("host \"%s\" is the network %s: test destinations must be "
			                 "addresses",
			                 s, h->value.s);
			return -1;
		}
		acl_ipset_add_range(out, lo, hi);
		return 0;
	}
	}
	*err_r = fmt_err("invalid alias \"%s\"", s);
	return -1;
}

int acl_eval_resolve(const struct acl_eval *e, const char *alias, enum acl_use use,
                     struct acl_ipset *out, bool *self_r, char **err_r)
{
	if (self_r != NULL)
		*self_r = false;
	return resolve(e, alias, use, out, self_r, err_r, 0);
}

/* --- compilation ---------------------------------------------------------- */

static struct acl_crule *new_crule(struct acl_eval *e, size_t rule)
{
	struct acl_crule *c;

	e->rules = xreallocarray(e->rules, e->nrules + 1, sizeof(*e->rules));
	c = &e->rules[e->nrules++];
	memset(c, 0, sizeof(*c));
	c->rule = rule;
	return c;
}

static void compile_src(struct acl_eval *e, const struct acl_rule *r, struct acl_ipset *src)
{
	acl_ipset_init(src);
	for (size_t i = 0; i < r->src.n; i++) {
		char *err = NULL;

		if (acl_eval_resolve(e, r->src.v[i].s, ACL_USE_SRC, src, NULL, &err) < 0)
			free(err);
	}
}

static void add_cdst(struct acl_crule *c, const struct acl_eval *e, const char *alias,
                     struct acl_portrange *ports, size_t nports, size_t dst_index)
{
	struct acl_cdst *d;
	char *err = NULL;

	c->dsts = xreallocarray(c->dsts, c->ndsts + 1, sizeof(*c->dsts));
	d = &c->dsts[c->ndsts];
	memset(d, 0, sizeof(*d));
	acl_ipset_init(&d->ips);
	if (acl_eval_resolve(e, alias, ACL_USE_DST, &d->ips, &d->self, &err) < 0) {
		free(err);
		acl_ipset_free(&d->ips);
		free(ports);
		return;
	}
	d->ports = ports;
	d->nports = nports;
	d->dst_index = dst_index;
	c->ndsts++;
}

static void compile_acl(struct acl_eval *e, size_t ri)
{
	const struct acl_rule *r = &e->p->rules[ri];
	struct acl_crule *c = new_crule(e, ri);
	const char *err;

	compile_src(e, r, &c->src);
	if (acl_proto_parse(r->proto.s, c->protos, &err) < 0)
		memset(c->protos, 0, sizeof(c->protos));
	for (size_t i = 0; i < r->dst.n; i++) {
		char *alias;
		const char *ports;
		struct acl_portrange *pr;
		size_t npr;

		if (acl_split_dst(r->dst.v[i].s, &alias, &ports, &err) < 0)
			continue;
		if (acl_ports_parse(ports, &pr, &npr, &err) == 0)
			add_cdst(c, e, alias, pr, npr, i);
		free(alias);
	}
}

static void compile_grant(struct acl_eval *e, size_t ri)
{
	const struct acl_rule *r = &e->p->rules[ri];
	struct acl_ipset src;

	compile_src(e, r, &src);
	for (size_t k = 0; k < r->ip.n; k++) {
		const char *spec = r->ip.v[k].s, *colon = strchr(spec, ':'), *err;
		uint8_t protos[32];
		const char *ports = spec;
		struct acl_crule *c;

		if (strcmp(spec, "*") == 0) {
			memset(protos, 0xff, sizeof(protos));
			ports = "*";
		} else if (colon != NULL) {
			char *pn = xstrndup(spec, (size_t)(colon - spec));
			int rc = acl_proto_parse(pn, protos, &err);

			free(pn);
			if (rc < 0)
				continue;
			ports = colon + 1;
		} else {
			struct acl_portrange *pr;
			size_t npr;

			if (acl_ports_parse(spec, &pr, &npr, &err) == 0) {
				free(pr);
				(void)acl_proto_parse(NULL, protos, &err);
			} else if (acl_proto_parse(spec, protos, &err) == 0) {
				ports = "*";
			} else {
				continue;
			}
		}
		c = new_crule(e, ri);
		c->ip_index = k;
		acl_ipset_copy(&c->src, &src);
		memcpy(c->protos, protos, sizeof(protos));
		for (size_t i = 0; i < r->dst.n; i++) {
			struct acl_portrange *pr;
			size_t npr;

			if (acl_ports_parse(ports, &pr, &npr, &err) == 0)
				add_cdst(c, e, r->dst.v[i].s, pr, npr, i);
		}
	}
	acl_ipset_free(&src);
}

void acl_eval_init(struct acl_eval *e, const struct acl_policy *p, const struct acl_topo *t)
{
	memset(e, 0, sizeof(*e));
	e->p = p;
	e->t = t;
	e->allow_all = !p->has_acls && !p->has_grants;
	for (size_t i = 0; i < p->nrules; i++) {
		if (p->rules[i].kind == ACL_RULE_ACL)
			compile_acl(e, i);
		else
			compile_grant(e, i);
	}
}

void acl_eval_free(struct acl_eval *e)
{
	for (size_t i = 0; i < e->nrules; i++) {
		acl_ipset_free(&e->rules[i].src);
		for (size_t j = 0; j < e->rules[i].ndsts; j++) {
			acl_ipset_free(&e->rules[i].dsts[j].ips);
			free(e->rules[i].dsts[j].ports);
		}
		free(e->rules[i].dsts);
	}
	free(e->rules);
	memset(e, 0, sizeof(*e));
}

void acl_eval_rule_name(const struct acl_eval *e, size_t crule, char *buf, size_t bufsz,
                        size_t *off_r)
{
	const struct acl_rule *r = &e->p->rules[e->rules[crule].rule];

	snprintf(buf, bufsz, "%s[%zu]", r->kind == ACL_RULE_ACL ? "acls" : "grants", r->index);
	if (off_r != NULL)
		*off_r = r->off;
}

/* --- reachability --------------------------------------------------------- */

static const struct acl_node *node_at(const struct acl_topo *t, ACL_U128 a)
{
	for (size_t i = 0; i < t->nnodes; i++)
		for (size_t k = 0; k < t->nodes[i].naddrs; k++)
			if (t->nodes[i].addrs[k] == a)
				return &t->nodes[i];
	return NULL;
}

static bool protos_meet(const uint8_t a[32], const uint8_t b[32])
{
	for (int i = 0; i < 32; i++)
		if (a[i] & b[i])
			return true;
	return false;
}

static bool port_in(const struct acl_cdst *d, uint16_t port)
{
	for (size_t i = 0; i < d->nports; i++)
		if (port >= d->ports[i].lo && port <= d->ports[i].hi)
			return true;
	return false;
}

/* Sources allowed to reach address a; rules that contributed get marked. */
static void covered_at(const struct acl_eval *e, ACL_U128 a, uint16_t port,
                       const uint8_t protos[32], struct acl_ipset *out, bool *hit)
{
	const struct acl_node *owner = NULL;
	bool owner_looked = false;

	for (size_t i = 0; i < e->nrules; i++) {
		const struct acl_crule *c = &e->rules[i];

		if (!protos_meet(c->protos, protos))
			continue;
		for (size_t j = 0; j < c->ndsts; j++) {
			const struct acl_cdst *d = &c->dsts[j];

			if (!port_in(d, port))
				continue;
			if (acl_ipset_contains(&d->ips, a)) {
				acl_ipset_add_set(out, &c->src);
				hit[i] = true;
			} else if (d->self) {
				struct acl_ipset mine;

				if (!owner_looked) {
					owner = node_at(e->t, a);
					owner_looked = true;
				}
				if (owner == NULL || owner->ntags > 0 || owner->user == NULL)
					continue;
				acl_ipset_init(&mine);
				for (size_t u = 0; u < e->t->nusers; u++)
					if (node_is_users(owner, &e->t->users[u]))
						add_user_nodes(e->t, &e->t->users[u], &mine);
				acl_ipset_intersect(&mine, &c->src);
				acl_ipset_add_set(out, &mine);
				acl_ipset_free(&mine);
				hit[i] = true;
			}
		}
	}
}

static int u128_cmp(const void *a, const void *b)
{
	ACL_U128 x = *(const ACL_U128 *)a, y = *(const ACL_U128 *)b;

	return x < y ? -1 : x > y ? 1 : 0;
}

struct cuts {
	ACL_U128 *v;
	size_t n, cap;
};

static void cut(struct cuts *c, ACL_U128 a)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n++] = a;
}

static void cut_range(struct cuts *c, ACL_U128 lo, ACL_U128 hi)
{
	cut(c, lo);
	if (hi != U128_MAX)
		cut(c, hi + 1);
}

void acl_eval_check(const struct acl_eval *e, const struct acl_ipset *src,
                    const struct acl_ipset *dst, uint16_t port, const uint8_t protos[32],
                    struct acl_verdict *v)
{
	struct cuts c = {0};
	bool *hit;
	size_t w = 0;

	memset(v, 0, sizeof(*v));
	v->all = true;
	v->none = true;
	if (acl_ipset_empty(src) || acl_ipset_empty(dst)) {
		v->all = false;
		return;
	}
	if (e->allow_all) {
		v->none = false;
		return;
	}
	hit = xcalloc(e->nrules + 1, sizeof(*hit));
	for (size_t i = 0; i < dst->n; i++)
		cut_range(&c, dst->v[i].lo, dst->v[i].hi);
	for (size_t i = 0; i < e->nrules; i++)
		for (size_t j = 0; j < e->rules[i].ndsts; j++)
			for (size_t k = 0; k < e->rules[i].dsts[j].ips.n; k++)
				cut_range(&c, e->rules[i].dsts[j].ips.v[k].lo,
				          e->rules[i].dsts[j].ips.v[k].hi);
	for (size_t i = 0; i < e->t->nnodes; i++)
		for (size_t k = 0; k < e->t->nodes[i].naddrs; k++)
			cut_range(&c, e->t->nodes[i].addrs[k], e->t->nodes[i].addrs[k]);
	qsort(c.v, c.n, sizeof(*c.v), u128_cmp);
	for (size_t i = 0; i < c.n; i++)
		if (w == 0 || c.v[w - 1] != c.v[i])
			c.v[w++] = c.v[i];
	c.n = w;
	for (size_t i = 0; i < c.n; i++) {
		struct acl_ipset cov;

		if (!acl_ipset_contains(dst, c.v[i]))
			continue;
		acl_ipset_init(&cov);
		covered_at(e, c.v[i], port, protos, &cov, hit);
		if (!acl_ipset_subset(src, &cov))
			v->all = false;
		if (acl_ipset_overlaps(src, &cov))
			v->none = false;
		acl_ipset_free(&cov);
	}
	for (size_t i = 0; i < e->nrules; i++) {
		if (!hit[i] || !acl_ipset_overlaps(src, &e->rules[i].src))
			continue;
		v->hits = xreallocarray(v->hits, v->nhits + 1, sizeof(*v->hits));
		v->hits[v->nhits++] = i;
	}
	free(hit);
	free(c.v);
}

void acl_verdict_free(struct acl_verdict *v)
{
	free(v->hits);
	memset(v, 0, sizeof(*v));
}

/* --- tests ---------------------------------------------------------------- */

int acl_test_dst_parse(const char *s, char **alias_r, uint16_t *port_r, char **err_r)
{
	char *alias;
	const char *ports, *err;
	struct acl_portrange *pr;
	size_t npr;

	if (acl_split_dst(s, &alias, &ports, &err) < 0) {
		*err_r = fmt_err("invalid destination \"%s\": %s", s, err);
		return -1;
	}
	if (strcmp(ports, "*") == 0) {
		*err_r = fmt_err("invalid destination \"%s\": test ports must be a single port, "
		                 "not \"*\"",
		                 s);
		goto fail;
	}
	if (acl_ports_parse(ports, &pr, &npr, &err) < 0) {
		*err_r = fmt_err("invalid destination \"%s\": %s \"%s\"", s, err, ports);
		goto fail;
	}
	if (npr != 1 || pr[0].lo != pr[0].hi) {
		free(pr);
		*err_r = fmt_err("invalid destination \"%s\": test ports must be a single port, "
		                 "not a list or range",
		                 s);
		goto fail;
	}
	*port_r = pr[0].lo;
	free(pr);
	*alias_r = alias;
	return 0;
fail:
	free(alias);
	return -1;
}

/* Users a test source stands for, for autogroup:self destinations. */
static int source_users(const struct acl_eval *e, const char *src, const struct acl_user ***out_r,
                        size_t *n_r)
{
	const struct acl_topo *t = e->t;
	const struct acl_user **v = xcalloc(t->nusers + 1, sizeof(*v));
	size_t n = 0;

	switch (acl_alias_kind(src)) {
	case ACL_ALIAS_USER: {
		const struct acl_user *u = acl_topo_user(t, src);

		if (u != NULL)
			v[n++] = u;
		break;
	}
	case ACL_ALIAS_GROUP: {
		const struct acl_named *g = acl_policy_group(e->p, src);

		for (size_t i = 0; g != NULL && i < g->items.n; i++) {
			const struct acl_user *u = acl_topo_user(t, g->items.v[i].s);

			if (u != NULL)
				v[n++] = u;
		}
		break;
	}
	case ACL_ALIAS_AUTOGROUP:
		if (strcmp(src, "autogroup:member") == 0) {
			for (size_t i = 0; i < t->nusers; i++)
				v[n++] = &t->users[i];
			break;
		}
		/* fall through */
	default:
		free(v);
		return -1;
	}
	*out_r = v;
	*n_r = n;
	return 0;
}

struct test_run {
	const struct acl_eval *e;
	struct acl_diags *d;
	const struct acl_test *t;
	bool failed;
};

static void tfail(struct test_run *r, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void tfail(struct test_run *r, size_t off, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int line, col;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	acl_policy_pos(r->e->p, off, &line, &col);
	acl_diag_add(r->d, ACL_SEV_ERROR, r->e->p->file, line, col, "%s",
	             msg ? msg : "test failed");
	free(msg);
	r->failed = true;
}

static void run_dst(struct test_run *r, const struct acl_str *dst, bool want_accept,
                    const struct acl_ipset *src, const uint8_t protos[32], const char *proto_name)
{
	const struct acl_eval *e = r->e;
	const struct acl_test *t = r->t;
	char *alias = NULL, *err = NULL;
	uint16_t port;
	struct acl_ipset dips;
	bool self = false, ok = true;
	char suffix[64] = "";

	if (proto_name != NULL && *proto_name)
		snprintf(suffix, sizeof(suffix), " (%s)", proto_name);
	acl_ipset_init(&dips);
	if (acl_test_dst_parse(dst->s, &alias, &port, &err) < 0) {
		tfail(r, dst->off, "%s%s: %s", t->src.s, suffix, err);
		goto out;
	}
	if (acl_eval_resolve(e, alias, ACL_USE_TEST_DST, &dips, &self, &err) < 0) {
		tfail(r, dst->off, "%s%s: error testing \"%s\": %s", t->src.s, suffix, dst->s, err);
		goto out;
	}
	if (self) {
		const struct acl_user **users;
		size_t nusers;
		bool all = true, none = true;

		if (source_users(e, t->src.s, &users, &nusers) < 0) {
			tfail(r, dst->off,
			      "%s%s: error testing \"%s\": autogroup:self needs a user or group "
			      "source",
			      t->src.s, suffix, dst->s);
			goto out;
		}
		for (size_t i = 0; i < nusers; i++) {
			struct acl_ipset mine;
			struct acl_verdict v;

			acl_ipset_init(&mine);
			add_user_nodes(e->t, users[i], &mine);
			if (!acl_ipset_empty(&mine)) {
				acl_eval_check(e, &mine, &mine, port, protos, &v);
				all = all && v.all;
				none = none && v.none;
				acl_verdict_free(&v);
			}
			acl_ipset_free(&mine);
		}
		free(users);
		ok = want_accept ? all : none;
	} else {
		struct acl_verdict v;

		if (acl_ipset_empty(&dips)) {
			tfail(r, dst->off,
			      "%s%s: error testing \"%s\": destination resolved to no IP "
			      "addresses",
			      t->src.s, suffix, dst->s);
			goto out;
		}
		acl_eval_check(e, src, &dips, port, protos, &v);
		ok = want_accept ? v.all : v.none;
		acl_verdict_free(&v);
	}
	if (!ok)
		tfail(r, dst->off, "%s %s %s%s (expected %s)", t->src.s,
		      want_accept ? "cannot access" : "can access", dst->s, suffix,
		      want_accept ? "accept" : "deny");
out:
	free(alias);
	free(err);
	acl_ipset_free(&dips);
}

/* A name a snippet uses but leaves to the base policy to define. */
static bool undefined_ref(const struct acl_policy *p, const char *alias)
{
	switch (acl_alias_kind(alias)) {
	case ACL_ALIAS_GROUP:
		return acl_policy_group(p, alias) == NULL;
	case ACL_ALIAS_TAG:
		return acl_policy_tag_owner(p, alias) == NULL;
	case ACL_ALIAS_HOST:
		return acl_policy_host(p, alias) == NULL;
	case ACL_ALIAS_IPSET:
		return acl_policy_ipset(p, alias) == NULL;
	default:
		return false;
	}
}

static bool test_needs_base(const struct acl_policy *p, const struct acl_test *t)
{
	const struct acl_strlist *lists[2] = {&t->accept, &t->deny};

	if (t->src.s != NULL && undefined_ref(p, t->src.s))
		return true;
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < lists[k]->n; i++) {
			char *alias;
			const char *ports, *err;
			bool undef;

			if (acl_split_dst(lists[k]->v[i].s, &alias, &ports, &err) < 0)
				continue;
			undef = undefined_ref(p, alias);
			free(alias);
			if (undef)
				return true;
		}
	}
	return false;
}

int acl_eval_tests(const struct acl_eval *e, struct acl_diags *d, size_t *npass_r, size_t *nfail_r)
{
	const struct acl_policy *p = e->p;
	size_t npass = 0, nfail = 0;

	for (size_t i = 0; i < p->ntests; i++) {
		const struct acl_test *t = &p->tests[i];
		struct test_run r = {.e = e, .d = d, .t = t};
		struct acl_ipset src;
		uint8_t protos[32];
		const char *perr;
		char *err = NULL;

		acl_ipset_init(&src);
		if (p->snippet && test_needs_base(p, t)) {
			int line, col;

			/* Run it with --against BASE, where the name is defined. */
			acl_policy_pos(p, t->off, &line, &col);
			acl_diag_add(d, ACL_SEV_NOTICE, p->file, line, col,
			             "tests[%zu] skipped: it names something the snippet does not "
			             "define (check with --against BASE)",
			             i);
			continue;
		}
		if (!t->has_src || t->src.s == NULL || t->src.s[0] == '\0') {
			tfail(&r, t->has_src ? t->src.off : t->off,
			      "tests[%zu]: \"src\" is required", i);
			goto next;
		}
		if (t->accept.n == 0 && t->deny.n == 0) {
			tfail(&r, t->off,
			      "tests[%zu]: %s: needs \"accept\" or \"deny\" destinations", i,
			      t->src.s);
			goto next;
		}
		if (acl_proto_parse(t->proto.s, protos, &perr) < 0) {
			tfail(&r, t->proto.off, "tests[%zu]: proto \"%s\": %s", i, t->proto.s,
			      perr);
			goto next;
		}
		if (acl_eval_resolve(e, t->src.s, ACL_USE_TEST_SRC, &src, NULL, &err) < 0) {
			tfail(&r, t->src.off, "%s: failed to resolve source: %s", t->src.s, err);
			free(err);
			goto next;
		}
		if (acl_ipset_empty(&src)) {
			tfail(&r, t->src.off, "%s: source resolved to no IP addresses", t->src.s);
			goto next;
		}
		for (size_t k = 0; k < t->accept.n; k++)
			run_dst(&r, &t->accept.v[k], true, &src, protos, t->proto.s);
		for (size_t k = 0; k < t->deny.n; k++)
			run_dst(&r, &t->deny.v[k], false, &src, protos, t->proto.s);
	next:
		acl_ipset_free(&src);
		if (r.failed)
			nfail++;
		else
			npass++;
	}
	if (npass_r != NULL)
		*npass_r = npass;
	if (nfail_r != NULL)
		*nfail_r = nfail;
	if (nfail > 0) {
		acl_diag_add(d, ACL_SEV_ERROR, p->file, 0, 0, "test(s) failed");
		return ACL_EXIT_FAIL;
	}
	return ACL_EXIT_OK;
}
