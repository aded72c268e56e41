/*
 * shared/loop.c -- signal and timer watchers, socket options, listeners.
 *
 * Signals are turned into ordinary loop callbacks by libev (its handler
 * only flags the signal and wakes the loop), so on_reload and on_stop may
 * do anything a callback may: reload certificates, close listeners, start
 * a drain timer.  The signal watchers are unref'd because they exist for
 * the whole life of the process and must not be the reason ev_run() keeps
 * running after shutdown has closed everything else.
 *
 * loop_listen() reports errors in terms an operator can act on: the
 * address as configured, the system call that failed, strerror, and a
 * hint for the usual suspects (port taken, privileged port, address not
 * on this host, IPv6 disabled).
 */
#include "shared/loop.h"

#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- signals ------------------------------------------------------------ */

static void loop_signal_fired(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct loop_signals *s = w->data;
	loop_signal_cb *cb = w->signum == SIGHUP ? s->on_reload : s->on_stop;

	if (cb != NULL)
		cb(s->arg, w->signum);
}

static void loop_signal_watch(struct loop_signals *s, ev_signal *w, int signum)
{
	ev_signal_init(w, loop_signal_fired, signum);
	w->data = s;
	ev_signal_start(s->loop, w);
	ev_unref(s->loop);
}

void loop_signals_start(struct loop_signals *s, struct ev_loop *loop, loop_signal_cb *on_reload,
                        loop_signal_cb *on_stop, void *arg)
{
	s->loop = loop;
	s->on_reload = on_reload;
	s->on_stop = on_stop;
	s->arg = arg;
	signal(SIGPIPE, SIG_IGN);
	loop_signal_watch(s, &s->hup, SIGHUP);
	loop_signal_watch(s, &s->term, SIGTERM);
	loop_signal_watch(s, &s->intr, SIGINT);
	s->started = true;
}

void loop_signals_stop(struct loop_signals *s)
{
	if (!s->started)
		return;
	/* Undo the ev_unref of start before stopping (libev's rule for
	 * unref'd watchers), or the loop's active count goes negative. */
	ev_ref(s->loop);
	ev_signal_stop(s->loop, &s->hup);
	ev_ref(s->loop);
	ev_signal_stop(s->loop, &s->term);
	ev_ref(s->loop);
	ev_signal_stop(s->loop, &s->intr);
	s->started = false;
}

/* --- timers ------------------------------------------------------------- */

static void loop_timer_fired(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct loop_timer *t = container_of(w, struct loop_timer, w);

	if (t->idle_s > 0) {
		ev_tstamp left = t->last + t->idle_s - ev_now(loop);

		if (left > 0) {
			/* Touched since it was armed: sleep for the rest. */
			w->repeat = left;
			ev_timer_again(loop, w);
			return;
		}
		ev_timer_stop(loop, w);
		t->idle_s = 0;
	}
	t->cb(t);
}

void loop_timer_init(struct loop_timer *t, struct ev_loop *loop, loop_timer_cb *cb)
{
	memset(t, 0, sizeof(*t));
	ev_init(&t->w, loop_timer_fired);
	t->loop = loop;
	t->cb = cb;
}

void loop_timer_start(struct loop_timer *t, uint64_t after_ms, uint64_t repeat_ms)
{
	ev_timer_stop(t->loop, &t->w);
	t->idle_s = 0;
	ev_timer_set(&t->w, (ev_tstamp)after_ms / 1000.0, (ev_tstamp)repeat_ms / 1000.0);
	ev_timer_start(t->loop, &t->w);
}

void loop_timer_touch(struct loop_timer *t, uint64_t idle_ms)
{
	ev_tstamp idle_s = (ev_tstamp)idle_ms / 1000.0;

	if (idle_ms == 0) {
		loop_timer_stop(t);
		return;
	}
	t->last = ev_now(t->loop);
	if (ev_is_active(&t->w) && t->idle_s == idle_s)
		return;
	/* Not armed, or armed for another period (a shorter one must not
	 * wait for the longer schedule): arm afresh. */
	ev_timer_stop(t->loop, &t->w);
	t->idle_s = idle_s;
	ev_timer_set(&t->w, idle_s, 0.);
	ev_timer_start(t->loop, &t->w);
}

void loop_timer_stop(struct loop_timer *t)
{
	ev_timer_stop(t->loop, &t->w);
	t->idle_s = 0;
}

bool loop_timer_active(const struct loop_timer *t)
{
	/* ev_is_active casts away const; it only reads the flag. */
	return ev_is_active((ev_timer *)(uintptr_t)&t->w);
}

/* --- sockets ------------------------------------------------------------ */

int loop_fd_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	if (fl & O_NONBLOCK)
		return 0;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

int loop_fd_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0)
		return -1;
	if (fl & FD_CLOEXEC)
		return 0;
	return fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0 ? -1 : 0;
}

static int loop_setsockopt_int(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value));
}

int loop_tcp_nodelay(int fd)
{
	return loop_setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

int loop_tcp_keepalive(int fd, int idle_s, int interval_s, int count)
{
	if (idle_s < 0 || interval_s < 0 || count < 0) {
		errno = EINVAL;
		return -1;
	}
	if (loop_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) < 0)
		return -1;
	if (idle_s > 0 && loop_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s) < 0)
		return -1;
	if (interval_s > 0 && loop_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s) < 0)
		return -1;
	if (count > 0 && loop_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, count) < 0)
		return -1;
	return 0;
}

static _Thread_local char loop_errbuf[256];

static const char *loop_hint(int err)
{
	switch (err) {
	case EADDRINUSE:
		return " (another socket is bound there; listeners sharing a port all need "
		       "reuse_port)";
	case EACCES:
		return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
	case EADDRNOTAVAIL:
		return " (no interface of this host has that address)";
	case EAFNOSUPPORT:
		return " (is IPv6 disabled on this host?)";
	default:
		return "";
	}
}

static const char *loop_listen_err(const struct net_addr *addr, const char *step, int err)
{
	char a[NET_ADDRSTRLEN];

	snprintf(loop_errbuf, sizeof(loop_errbuf), "listen %s: %s: %s%s",
	         net_addr_str(addr, a, sizeof(a)), step, strerror(err), loop_hint(err));
	return loop_errbuf;
}

int loop_listen(const struct net_addr *addr, int backlog, bool reuseport, const char **errstr_r)
{
	int fam = net_addr_family(addr);
	const char *step;
	int fd = -1, err;

	if (fam != AF_INET && fam != AF_INET6) {
		*errstr_r = "listen: not an IPv4 or IPv6 address";
		return -1;
	}
	step = "socket";
	fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	step = "SO_REUSEADDR";
	if (loop_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
		goto fail;
	step = "SO_REUSEPORT";
	if (reuseport && loop_setsockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
		goto fail;
	/* Without V6ONLY, [::] would also take the IPv4 port and a separate
	 * 0.0.0.0 listener would fail with EADDRINUSE (the default depends on
	 * net.ipv6.bindv6only, so set it explicitly). */
	step = "IPV6_V6ONLY";
	if (fam == AF_INET6 && loop_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0)
		goto fail;
	step = "bind";
	if (bind(fd, &addr->u.sa, addr->len) < 0)
		goto fail;
	step = "listen";
	if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
		goto fail;
	return fd;
fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	*errstr_r = loop_listen_err(addr, step, err);
	errno = err;
	return -1;
}

int loop_accept(int lfd, struct net_addr *peer_r)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd;

	do {
		fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -1;
	if (peer_r != NULL)
		net_addr_from_sockaddr(peer_r, (const struct sockaddr *)&ss, len);
	return fd;
}
