/*
 * edge/sock.h -- the socket calls the edge makes, with their options.
 *
 * Options that Linux copies from a listening socket to the sockets accept(2)
 * returns (TCP_NODELAY, SO_KEEPALIVE and the keepalive timers) are set once
 * on the listener, so the accept path makes no setsockopt(2) per client.
 */
#ifndef EDGE_SOCK_H
#define EDGE_SOCK_H

#include "shared/net.h"

#include <stdbool.h>

/* Keepalive timers on client and upstream sockets (seconds). */
#define EDGE_KEEPIDLE  60
#define EDGE_KEEPINTVL 15
#define EDGE_KEEPCNT   4

/*
 * A non-blocking listening socket on a (loop_listen: SO_REUSEADDR,
 * SO_REUSEPORT so each worker has its own socket on the address,
 * IPV6_V6ONLY) with TCP_NODELAY and keepalive for the accepted sockets.
 * Returns the fd, or -1 with *errstr_r describing the failure.
 */
int edge_sock_listen(const struct net_addr *a, int backlog, const char **errstr_r);
/*
 * A non-blocking TCP socket connecting to a: TCP_NODELAY and SO_KEEPALIVE
 * set, connect(2) started.  Returns the fd with *done_r true if the
 * connection completed at once, false if it is in progress; -1 with errno
 * on failure.
 */
int edge_sock_connect(const struct net_addr *a, bool *done_r);
/* The pending error of a socket (SO_ERROR), 0 if none. */
int edge_sock_error(int fd);

#endif
