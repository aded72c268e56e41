/*
 * edge/sock.c -- listening and connecting sockets.
 *
 * Listening sockets come from shared/loop.c (SO_REUSEPORT, IPV6_V6ONLY) and
 * get the options accepted sockets inherit.  The connect path is written
 * out here because it runs once per client: it makes exactly the calls it
 * needs (socket, two setsockopt, connect) and nothing else.
 */
#include "edge/sock.h"

#include "shared/loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int set_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v));
}

int edge_sock_listen(const struct net_addr *a, int backlog, const char **errstr_r)
{
	int fd, saved;

	fd = loop_listen(a, backlog, true, errstr_r);
	if (fd < 0)
		return -1;
	/* Inherited by accepted sockets (see the header). */
	if (loop_tcp_nodelay(fd) < 0 ||
	    loop_tcp_keepalive(fd, EDGE_KEEPIDLE, EDGE_KEEPINTVL, EDGE_KEEPCNT) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		if (errstr_r != NULL)
			*errstr_r = "setsockopt(TCP_NODELAY/SO_KEEPALIVE) on a listening socket";
		return -1;
	}
	return fd;
}

int edge_sock_connect(const struct net_addr *a, bool *done_r)
{
	int fd, saved;

	fd = socket(net_addr_family(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Two options only: every setsockopt is a syscall on the connect path.
	 * The upstream side keeps the kernel's keepalive timers. */
	if (set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1) < 0 ||
	    set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) < 0)
		goto fail;
	if (connect(fd, &a->u.sa, a->len) == 0) {
		*done_r = true;
		return fd;
	}
	if (errno != EINPROGRESS)
		goto fail;
	*done_r = false;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

int edge_sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}
