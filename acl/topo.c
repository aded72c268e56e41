/*
 * acl/topo.c -- reading and synthesizing tailnet topologies.
 *
 * The file reader is lenient about what it does not need (captures carry
 * routes, hostnames and more) and strict about what it does: user names,
 * node owners, tags and addresses must have the right types and parse.
 */
#include "acl/topo.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *member_str(struct hujson_value *obj, const char *name)
{
	long i = hujson_find(obj, name, false);

	if (i < 0 || hujson_member_value(obj, (size_t)i)->kind != HUJSON_STRING)
		return NULL;
	return hujson_string(hujson_member_value(obj, (size_t)i), NULL);
}

static struct hujson_value *member(struct hujson_value *obj, const char *name)
{
	long i = hujson_find(obj, name, false);

	return i < 0 ? NULL : hujson_member_value(obj, (size_t)i);
}

static void terr(struct acl_diags *d, const char *name, const char *text, size_t len, size_t off,
                 const char *msg, const char *what)
{
	int line, col;

	hujson_line_col(text, len, off, &line, &col);
	acl_diag_add(d, ACL_SEV_ERROR, name, line, col, "topology: %s%s%s", msg, what ? " " : "",
	             what ? what : "");
}

static void add_addr(struct acl_node *n, ACL_U128 a)
{
	if (n->naddrs < 2)
		n->addrs[n->naddrs++] = a;
}

static int load_node(struct acl_topo *t, struct hujson_value *v, const char *key, const char *name,
                     const char *text, size_t len, struct acl_diags *d)
{
	struct acl_node *n = &t->nodes[t->nnodes];
	struct hujson_value *tags, *routes;
	const char *ipk[2] = {"ipv4", "ipv6"};
	int rc = ACL_EXIT_OK;

	memset(n, 0, sizeof(*n));
	if (v->kind != HUJSON_OBJECT) {
		terr(d, name, text, len, v->start, "node must be an object", NULL);
		return ACL_EXIT_INVALID;
	}
	n->name = key ? xstrdup(key) : member_str(v, "name");
	if (n->name == NULL)
		n->name = member_str(v, "hostname");
	if (n->name == NULL)
		n->name = xasprintf("node%zu", t->nnodes);
	n->user = member_str(v, "user");
	if (n->user != NULL && n->user[0] == '\0') {
		free(n->user);
		n->user = NULL;
	}
	tags = member(v, "tags");
	if (tags != NULL && tags->kind == HUJSON_ARRAY) {
		n->tags = xcalloc(hujson_len(tags) + 1, sizeof(*n->tags));
		for (size_t i = 0; i < hujson_len(tags); i++) {
			struct hujson_value *tg = hujson_elem(tags, i);

			if (tg->kind != HUJSON_STRING) {
				terr(d, name, text, len, tg->start, "tag must be a string", NULL);
				rc = ACL_EXIT_INVALID;
				continue;
			}
			n->tags[n->ntags++] = hujson_string(tg, NULL);
		}
	}
	for (int k = 0; k < 2; k++) {
		struct hujson_value *a = member(v, ipk[k]);
		char *s;
		ACL_U128 lo, hi;
		const char *err;

		if (a == NULL || a->kind == HUJSON_NULL)
			continue;
		s = hujson_string(a, NULL);
		if (s == NULL || acl_ip_parse(s, &lo, &hi, NULL, &err) < 0 || lo != hi) {
			terr(d, name, text, len, a->start, "invalid address", s);
			rc = ACL_EXIT_INVALID;
		} else {
			add_addr(n, lo);
		}
		free(s);
	}
	routes = member(v, "approved_routes");
	if (routes != NULL && routes->kind == HUJSON_ARRAY) {
		for (size_t i = 0; i < hujson_len(routes); i++) {
			char *s = hujson_string(hujson_elem(routes, i), NULL);
			const char *err;

			if (s == NULL || acl_ipset_add_str(&n->routes, s, &err) < 0) {
				terr(d, name, text, len, hujson_elem(routes, i)->start,
				     "invalid route", s);
				rc = ACL_EXIT_INVALID;
			}
			free(s);
		}
	}
	t->nnodes++;
	return rc;
}

int acl_topo_load_buffer(struct acl_topo *t, const char *name, const char *text, size_t len,
                         struct acl_diags *d)
{
	struct hujson_value root, *top, *users, *nodes;
	struct hujson_error err;
	int rc = ACL_EXIT_OK;

	memset(t, 0, sizeof(*t));
	if (hujson_parse(text, len, &root, &err) != HUJSON_OK) {
		acl_diag_add(d, ACL_SEV_ERROR, name, err.line, err.col, "%s", err.msg);
		return ACL_EXIT_SYNTAX;
	}
	top = &root;
	if (top->kind == HUJSON_OBJECT && member(top, "topology") != NULL)
		top = member(top, "topology");
	if (top->kind != HUJSON_OBJECT) {
		terr(d, name, text, len, top->start, "must be an object with users and nodes",
		     NULL);
		rc = ACL_EXIT_INVALID;
		goto out;
	}
	users = member(top, "users");
	nodes = member(top, "nodes");
	if (users != NULL && users->kind == HUJSON_ARRAY) {
		t->users = xcalloc(hujson_len(users) + 1, sizeof(*t->users));
		for (size_t i = 0; i < hujson_len(users); i++) {
			struct hujson_value *u = hujson_elem(users, i);
			struct acl_user *au = &t->users[t->nusers];

			if (u->kind != HUJSON_OBJECT) {
				terr(d, name, text, len, u->start, "user must be an object", NULL);
				rc = ACL_EXIT_INVALID;
				continue;
			}
			au->name = member_str(u, "name");
			au->email = member_str(u, "email");
			au->role = member_str(u, "role");
			if (au->name == NULL && au->email == NULL) {
				terr(d, name, text, len, u->start, "user needs a name or email",
				     NULL);
				rc = ACL_EXIT_INVALID;
				continue;
			}
			if (au->name == NULL)
				au->name = xstrdup(au->email);
			t->nusers++;
		}
	}
	if (nodes != NULL && nodes->kind == HUJSON_OBJECT) {
		t->nodes = xcalloc(hujson_len(nodes) + 1, sizeof(*t->nodes));
		for (size_t i = 0; i < hujson_len(nodes); i++) {
			char *key = hujson_string(hujson_member_name(nodes, i), NULL);
			int r = load_node(t, hujson_member_value(nodes, i), key, name, text, len,
			                  d);

			if (r != ACL_EXIT_OK)
				rc = r;
			free(key);
		}
	} else if (nodes != NULL && nodes->kind == HUJSON_ARRAY) {
		t->nodes = xcalloc(hujson_len(nodes) + 1, sizeof(*t->nodes));
		for (size_t i = 0; i < hujson_len(nodes); i++) {
			int r = load_node(t, hujson_elem(nodes, i), NULL, name, text, len, d);

			if (r != ACL_EXIT_OK)
				rc = r;
		}
	} else if (nodes != NULL) {
		terr(d, name, text, len, nodes->start, "nodes must be an object or array", NULL);
		rc = ACL_EXIT_INVALID;
	}
	/* A node's user must exist. */
	for (size_t i = 0; i < t->nnodes; i++) {
		bool found = t->nodes[i].user == NULL;

		for (size_t j = 0; j < t->nusers && !found; j++)
			found = strcmp(t->users[j].name, t->nodes[i].user) == 0 ||
			        (t->users[j].email &&
			         strcmp(t->users[j].email, t->nodes[i].user) == 0);
		if (!found) {
			acl_diag_add(d, ACL_SEV_ERROR, name, 0, 0,
			             "topology: node \"%s\" belongs to unknown user \"%s\"",
			             t->nodes[i].name, t->nodes[i].user);
			rc = ACL_EXIT_INVALID;
		}
	}
out:
	hujson_free(&root);
	return rc;
}

int acl_topo_load(struct acl_topo *t, const char *path, struct acl_diags *d)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;

	memset(t, 0, sizeof(*t));
	if (f == NULL) {
		acl_diag_add(d, ACL_SEV_ERROR, path, 0, 0, "cannot read topology: %s",
		             strerror(errno));
		return ACL_EXIT_IO;
	}
	for (;;) {
		size_t got;

		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			text = xrealloc(text, cap);
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		acl_diag_add(d, ACL_SEV_ERROR, path, 0, 0, "cannot read topology: %s",
		             strerror(errno));
		fclose(f);
		free(text);
		return ACL_EXIT_IO;
	}
	fclose(f);
	rc = acl_topo_load_buffer(t, path, text, len, d);
	free(text);
	return rc;
}

/* --- synthesis ------------------------------------------------------------ */

struct names {
	char **v;
	size_t n, cap;
};

static void names_add(struct names *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], name) == 0)
			return;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
	}
	s->v[s->n++] = xstrdup(name);
}

/* Collect tags and users from one selector (ACL dst ports stripped). */
static void collect(struct names *tags, struct names *users, const char *s, bool strip_port)
{
	char *alias = NULL;
	const char *ports, *err;

	if (strip_port && acl_split_dst(s, &alias, &ports, &err) == 0)
		s = alias;
	switch (acl_alias_kind(s)) {
	case ACL_ALIAS_TAG:
		names_add(tags, s);
		break;
	case ACL_ALIAS_USER:
		names_add(users, s);
		break;
	default:
		break;
	}
	free(alias);
}

static void collect_list(struct names *tags, struct names *users, const struct acl_strlist *l,
                         bool strip_port)
{
	for (size_t i = 0; i < l->n; i++)
		collect(tags, users, l->v[i].s, strip_port);
}

#define SYN_V4 ((((ACL_U128)0xffff) << 32) | ((ACL_U128)100 << 24) | ((ACL_U128)64 << 16))
#define SYN_V6 ((((ACL_U128)0xfd7a115c) << 96) | (((ACL_U128)0xa1e0) << 80))

void acl_topo_synthesize(struct acl_topo *t, const struct acl_policy *p)
{
	struct names tags = {0}, users = {0};
	size_t k = 1;

	memset(t, 0, sizeof(*t));
	t->synthesized = true;
	for (size_t i = 0; i < p->ntag_owners; i++) {
		names_add(&tags, p->tag_owners[i].name.s);
		collect_list(&tags, &users, &p->tag_owners[i].items, false);
	}
	for (size_t i = 0; i < p->ngroups; i++)
		collect_list(&tags, &users, &p->groups[i].items, false);
	for (size_t i = 0; i < p->nrules; i++) {
		collect_list(&tags, &users, &p->rules[i].src, false);
		collect_list(&tags, &users, &p->rules[i].dst, p->rules[i].kind == ACL_RULE_ACL);
	}
	for (size_t i = 0; i < p->ntests; i++) {
		if (p->tests[i].src.s != NULL)
			collect(&tags, &users, p->tests[i].src.s, false);
		collect_list(&tags, &users, &p->tests[i].accept, true);
		collect_list(&tags, &users, &p->tests[i].deny, true);
	}
	t->users = xcalloc(users.n + 1, sizeof(*t->users));
	t->nodes = xcalloc(users.n + tags.n + 1, sizeof(*t->nodes));
	for (size_t i = 0; i < users.n; i++, k++) {
		struct acl_node *n = &t->nodes[t->nnodes++];

		t->users[t->nusers].name = xstrdup(users.v[i]);
		t->users[t->nusers].email = xstrdup(users.v[i]);
		t->nusers++;
		n->name = xasprintf("user-node-%zu", i + 1);
		n->user = xstrdup(users.v[i]);
		add_addr(n, SYN_V4 + k);
		add_addr(n, SYN_V6 + k);
		free(users.v[i]);
	}
	for (size_t i = 0; i < tags.n; i++, k++) {
		struct acl_node *n = &t->nodes[t->nnodes++];

		n->name = xasprintf("%s-node", tags.v[i] + 4);
		n->tags = xcalloc(2, sizeof(*n->tags));
		n->tags[0] = tags.v[i];
		n->ntags = 1;
		add_addr(n, SYN_V4 + k);
		add_addr(n, SYN_V6 + k);
	}
	free(users.v);
	free(tags.v);
}

void acl_topo_free(struct acl_topo *t)
{
	for (size_t i = 0; i < t->nusers; i++) {
		free(t->users[i].name);
		free(t->users[i].email);
		free(t->users[i].role);
	}
	free(t->users);
	for (size_t i = 0; i < t->nnodes; i++) {
		free(t->nodes[i].name);
		free(t->nodes[i].user);
		for (size_t j = 0; j < t->nodes[i].ntags; j++)
			free(t->nodes[i].tags[j]);
		free(t->nodes[i].tags);
		acl_ipset_free(&t->nodes[i].routes);
	}
	free(t->nodes);
	memset(t, 0, sizeof(*t));
}

const struct acl_user *acl_topo_user(const struct acl_topo *t, const char *alias)
{
	for (size_t i = 0; i < t->nusers; i++) {
		const struct acl_user *u = &t->users[i];
		size_t nl = strlen(u->name);

		if ((u->email != NULL && strcmp(u->email, alias) == 0) ||
		    strcmp(u->name, alias) == 0)
			return u;
		/* headscale-style "name@" */
		if (strncmp(alias, u->name, nl) == 0 && alias[nl] == '@' && alias[nl + 1] == '\0')
			return u;
	}
	return NULL;
}

bool acl_node_has_tag(const struct acl_node *n, const char *tag)
{
	for (size_t i = 0; i < n->ntags; i++)
		if (strcmp(n->tags[i], tag) == 0)
			return true;
	return false;
}
