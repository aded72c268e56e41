/*
 * edge/privs.h -- giving up root after binding.
 *
 * The edge binds ports below 1024 as root, then runs as an unprivileged
 * user.  A reload may add a listener on another low port, so the switch can
 * keep one capability, CAP_NET_BIND_SERVICE, and nothing else: the process
 * can bind low ports but cannot read root's files, kill other processes or
 * regain root.
 */
#ifndef EDGE_PRIVS_H
#define EDGE_PRIVS_H

#include <stdbool.h>

/*
 * Switch to user (and group, or the user's primary group when NULL):
 * supplementary groups, gid, uid, in that order, then check that root
 * cannot be regained.  With keep_bind, CAP_NET_BIND_SERVICE stays
 * effective.  Must run before any thread is started.  0, or -1 with
 * *errmsg_r (owned by the caller).
 */
int edge_privs_drop(const char *user, const char *group, bool keep_bind, char **errmsg_r);

#endif
