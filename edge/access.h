/*
 * edge/access.h -- allow/deny CIDR lists of a listener, compiled.
 *
 * The rule: the longest prefix that matches the client, from either list,
 * decides; when the same prefix is in both lists, allow wins (an allowlist
 * beats a blocklist, DESIGN.md).  A client that matches nothing is admitted
 * if the allow list is empty, refused otherwise.  So "deny: 0.0.0.0/0" with
 * "allow: 192.0.2.0/24" admits one network, and "allow: 10.0.0.0/8" with
 * "deny: 10.9.0.0/16" carves a hole.  Lookup is a binary search per prefix
 * length present, so large block lists stay cheap.
 */
#ifndef EDGE_ACCESS_H
#define EDGE_ACCESS_H

#include "shared/net.h"

#include <stdbool.h>
#include <stddef.h>

struct edge_access_rule;

struct edge_access {
	struct edge_access_rule *rules; /* owned; sorted for lookup */
	size_t n;
	bool allow_empty;
};

/* Compile the two sets (copied; the sets stay the caller's). */
void edge_access_init(struct edge_access *a, const struct net_cidr_set *allow,
                      const struct net_cidr_set *deny);
void edge_access_free(struct edge_access *a);
/* True if src may connect. */
bool edge_access_permits(const struct edge_access *a, const struct net_addr *src);

#endif
