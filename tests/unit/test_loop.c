/*
 * tests/unit/test_loop.c -- shared/loop: listeners, socket options, accept,
 * timers and signal watchers, all on loopback and private libev loops.
 */
#include "tests/unit/unit.h"

#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int lt_getopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len) < 0)
		return -1;
	return v;
}

static uint16_t lt_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct net_addr a;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	net_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len);
	return net_addr_port(&a);
}

static bool lt_nonblock(int fd)
{
	return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

static bool lt_cloexec(int fd)
{
	return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static bool lt_contains(const char *s, const char *needle)
{
	return s != NULL && strstr(s, needle) != NULL;
}

/* A blocking client connected to ip:port. */
static int lt_connect(const char *ip, uint16_t port)
{
	struct net_addr a;
	int fd;

	if (net_addr_parse(ip, port, &a) < 0)
		return -1;
	fd = socket(net_addr_family(&a), SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, &a.u.sa, a.len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static const struct {
	const char *ip;
	int family;
} lt_listen_cases[] = {
        {"127.0.0.1", AF_INET},
        {"::1", AF_INET6},
};

UNIT_TEST(loop_listen_loopback_options)
{
	for (size_t i = 0; i < ARRAY_SIZE(lt_listen_cases); i++) {
		struct net_addr a, peer;
		const char *err = NULL;
		int lfd, cfd, afd;
		uint16_t port;

		CHECK(net_addr_parse(lt_listen_cases[i].ip, 0, &a) == 0);
		lfd = loop_listen(&a, 16, false, &err);
		CHECK_MSG(lfd >= 0, "%s: %s", lt_listen_cases[i].ip, err);
		port = lt_port(lfd);
		CHECK(port != 0);
		CHECK(lt_nonblock(lfd));
		CHECK(lt_cloexec(lfd));
		CHECK_INT(lt_getopt(lfd, SOL_SOCKET, SO_ACCEPTCONN), 1);
		CHECK_INT(lt_getopt(lfd, SOL_SOCKET, SO_REUSEADDR), 1);
		CHECK_INT(lt_getopt(lfd, SOL_SOCKET, SO_REUSEPORT), 0);
		if (lt_listen_cases[i].family == AF_INET6)
			CHECK_INT(lt_getopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY), 1);

		/* nothing pending */
		CHECK(loop_accept(lfd, &peer) == -1);
		CHECK(errno == EAGAIN || errno == EWOULDBLOCK);

		cfd = lt_connect(lt_listen_cases[i].ip, port);
		CHECK(cfd >= 0);
		afd = loop_accept(lfd, &peer);
		CHECK(afd >= 0);
		CHECK(lt_nonblock(afd));
		CHECK(lt_cloexec(afd));
		CHECK_INT(net_addr_family(&peer), lt_listen_cases[i].family);
		CHECK(net_addr_is_loopback(&peer));
		CHECK_INT(net_addr_port(&peer), lt_port(cfd));

		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_NODELAY), 0);
		CHECK(loop_tcp_nodelay(afd) == 0);
		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_NODELAY), 1);
		CHECK(loop_tcp_keepalive(afd, 61, 7, 4) == 0);
		CHECK_INT(lt_getopt(afd, SOL_SOCKET, SO_KEEPALIVE), 1);
		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_KEEPIDLE), 61);
		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_KEEPCNT), 4);
		/* 0 keeps the current value */
		CHECK(loop_tcp_keepalive(afd, 0, 9, 0) == 0);
		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_KEEPIDLE), 61);
		CHECK_INT(lt_getopt(afd, IPPROTO_TCP, TCP_KEEPINTVL), 9);
		CHECK(loop_tcp_keepalive(afd, -1, 0, 0) == -1);
		CHECK_INT(errno, EINVAL);

		close(cfd);
		close(afd);
		close(lfd);
	}
}

UNIT_TEST(loop_fd_flags)
{
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(!lt_nonblock(sv[0]) && !lt_cloexec(sv[0]));
	CHECK(loop_fd_nonblock(sv[0]) == 0);
	CHECK(loop_fd_cloexec(sv[0]) == 0);
	CHECK(lt_nonblock(sv[0]) && lt_cloexec(sv[0]));
	/* idempotent, and the other end untouched */
	CHECK(loop_fd_nonblock(sv[0]) == 0 && loop_fd_cloexec(sv[0]) == 0);
	CHECK(!lt_nonblock(sv[1]) && !lt_cloexec(sv[1]));
	close(sv[0]);
	close(sv[1]);
	CHECK(loop_fd_nonblock(sv[0]) == -1 && errno == EBADF);
}

UNIT_TEST(loop_listen_reuseport)
{
	struct net_addr a;
	const char *err = NULL;
	char want[64];
	int l1, l2, l3;
	uint16_t port;

	CHECK(net_addr_parse("127.0.0.1", 0, &a) == 0);
	l1 = loop_listen(&a, 0, true, &err);
	CHECK_MSG(l1 >= 0, "%s", err);
	CHECK_INT(lt_getopt(l1, SOL_SOCKET, SO_REUSEPORT), 1);
	port = lt_port(l1);
	net_addr_set_port(&a, port);

	/* a second reuseport listener shares the port */
	l2 = loop_listen(&a, 0, true, &err);
	CHECK_MSG(l2 >= 0, "%s", err);
	CHECK_INT(lt_port(l2), port);

	/* one without reuseport is refused, with a clear message */
	l3 = loop_listen(&a, 0, false, &err);
	CHECK(l3 == -1);
	CHECK_INT(errno, EADDRINUSE);
	snprintf(want, sizeof(want), "listen 127.0.0.1:%u: bind: ", (unsigned)port);
	CHECK_MSG(lt_contains(err, want), "err: %s", err);
	CHECK_MSG(lt_contains(err, strerror(EADDRINUSE)), "err: %s", err);
	CHECK_MSG(lt_contains(err, "reuse_port"), "err: %s", err);
	close(l1);
	close(l2);
}

UNIT_TEST(loop_listen_errors)
{
	struct net_addr a;
	const char *err = NULL;

	/* TEST-NET-1 (RFC 5737) is not an address of this host */
	CHECK(net_addr_parse("192.0.2.1", 2525, &a) == 0);
	CHECK(loop_listen(&a, 0, false, &err) == -1);
	CHECK_INT(errno, EADDRNOTAVAIL);
	CHECK_MSG(lt_contains(err, "listen 192.0.2.1:2525: bind: ") &&
	                  lt_contains(err, "no interface of this host"),
	          "err: %s", err);

	CHECK(net_addr_parse("2001:db8::1", 2525, &a) == 0);
	CHECK(loop_listen(&a, 0, false, &err) == -1);
	CHECK_MSG(lt_contains(err, "listen [2001:db8::1]:2525: bind: "), "err: %s", err);

	memset(&a, 0, sizeof(a));
	CHECK(loop_listen(&a, 0, false, &err) == -1);
	CHECK(lt_contains(err, "not an IPv4 or IPv6 address"));
}

/* [::]:P and 0.0.0.0:P side by side: needs IPV6_V6ONLY on the v6 socket
 * (this host's net.ipv6.bindv6only may be 0). */
UNIT_TEST(loop_listen_v6only_dual)
{
	const char *err = NULL;
	int done = 0;

	for (int attempt = 0; attempt < 5 && !done; attempt++) {
		struct net_addr a6, a4;
		int l6, l4;

		CHECK(net_addr_parse("::", 0, &a6) == 0);
		l6 = loop_listen(&a6, 0, false, &err);
		CHECK_MSG(l6 >= 0, "%s", err);
		CHECK(net_addr_parse("0.0.0.0", lt_port(l6), &a4) == 0);
		l4 = loop_listen(&a4, 0, false, &err);
		if (l4 >= 0) {
			CHECK_INT(lt_port(l4), lt_port(l6));
			close(l4);
			done = 1;
		} else {
			/* another process may own that IPv4 port: try another */
			CHECK_INT(errno, EADDRINUSE);
		}
		close(l6);
	}
	CHECK_MSG(done, "0.0.0.0 never bound next to [::]: %s", err);
}

struct lt_timer_owner {
	struct loop_timer t;
	int fired;
	int stop_after;
	ev_tstamp at[8];
};

static void lt_timer_cb(struct loop_timer *t)
{
	struct lt_timer_owner *o = container_of(t, struct lt_timer_owner, t);

	if (o->fired < (int)ARRAY_SIZE(o->at))
		o->at[o->fired] = ev_now(t->loop);
	o->fired++;
	if (o->stop_after > 0 && o->fired >= o->stop_after)
		loop_timer_stop(t);
}

UNIT_TEST(loop_timer_oneshot_repeat)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct lt_timer_owner a = {0}, b = {0};
	ev_tstamp t0;

	CHECK(loop != NULL);
	ev_now_update(loop);
	t0 = ev_now(loop);
	loop_timer_init(&a.t, loop, lt_timer_cb);
	loop_timer_init(&b.t, loop, lt_timer_cb);
	CHECK(!loop_timer_active(&a.t));
	loop_timer_start(&a.t, 20, 0);
	b.stop_after = 3;
	loop_timer_start(&b.t, 5, 5);
	CHECK(loop_timer_active(&a.t) && loop_timer_active(&b.t));
	ev_run(loop, 0); /* returns when no timer is active */
	CHECK_INT(a.fired, 1);
	CHECK(a.at[0] - t0 >= 0.019);
	CHECK_INT(b.fired, 3);
	CHECK(b.at[2] - t0 >= 0.014);
	CHECK(!loop_timer_active(&a.t) && !loop_timer_active(&b.t));

	/* a restart replaces the schedule */
	a.fired = 0;
	loop_timer_start(&a.t, 10000, 0);
	loop_timer_start(&a.t, 1, 0);
	ev_run(loop, 0);
	CHECK_INT(a.fired, 1);
	ev_loop_destroy(loop);
}

/* Touches the idle timer of `idle` once, from another timer. */
struct lt_toucher {
	struct loop_timer t;
	struct lt_timer_owner *idle;
	uint64_t idle_ms;
};

static void lt_toucher_cb(struct loop_timer *t)
{
	struct lt_toucher *k = container_of(t, struct lt_toucher, t);

	loop_timer_touch(&k->idle->t, k->idle_ms);
}

UNIT_TEST(loop_timer_idle)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct lt_timer_owner idle = {0};
	struct lt_toucher k = {0};
	ev_tstamp t0;

	CHECK(loop != NULL);
	loop_timer_init(&idle.t, loop, lt_timer_cb);
	loop_timer_init(&k.t, loop, lt_toucher_cb);
	k.idle = &idle;

	/* touched at ~0 and at ~25 ms with 40 ms: fires once, >= 65 ms */
	ev_now_update(loop);
	t0 = ev_now(loop);
	loop_timer_touch(&idle.t, 40);
	k.idle_ms = 40;
	loop_timer_start(&k.t, 25, 0);
	ev_run(loop, 0);
	CHECK_INT(idle.fired, 1);
	CHECK_MSG(idle.at[0] - t0 >= 0.064, "fired after %.3f s", idle.at[0] - t0);
	CHECK(!loop_timer_active(&idle.t));

	/* a touch with a shorter period re-arms for the shorter one */
	idle.fired = 0;
	ev_now_update(loop);
	t0 = ev_now(loop);
	loop_timer_touch(&idle.t, 10000);
	k.idle_ms = 10;
	loop_timer_start(&k.t, 5, 0);
	ev_run(loop, 0);
	CHECK_INT(idle.fired, 1);
	CHECK_MSG(idle.at[0] - t0 < 5.0, "fired after %.3f s", idle.at[0] - t0);

	/* touch 0 disarms */
	loop_timer_touch(&idle.t, 50);
	CHECK(loop_timer_active(&idle.t));
	loop_timer_touch(&idle.t, 0);
	CHECK(!loop_timer_active(&idle.t));
	ev_loop_destroy(loop);
}

struct lt_sig_seen {
	int reload, stop, last;
};

static void lt_on_reload(void *arg, int signum)
{
	struct lt_sig_seen *s = arg;
	s->reload++;
	s->last = signum;
}

static void lt_on_stop(void *arg, int signum)
{
	struct lt_sig_seen *s = arg;
	s->stop++;
	s->last = signum;
}

static void lt_guard_cb(struct loop_timer *t)
{
	container_of(t, struct lt_timer_owner, t)->fired++;
	ev_break(t->loop, EVBREAK_ALL);
}

/* Raise signum and run the loop until a callback has run (bounded). */
static int lt_deliver(struct ev_loop *loop, struct lt_sig_seen *seen, int signum)
{
	int before = seen->reload + seen->stop;
	struct timespec ts = {0, 1000000};

	raise(signum);
	for (int i = 0; i < 1000 && seen->reload + seen->stop == before; i++) {
		ev_run(loop, EVRUN_NOWAIT);
		nanosleep(&ts, NULL);
	}
	return seen->reload + seen->stop - before;
}

UNIT_TEST(loop_signals)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct loop_signals s = {0};
	struct lt_sig_seen seen = {0};
	struct sigaction sa;

	CHECK(loop != NULL);
	loop_signals_stop(&s); /* harmless before start */
	loop_signals_start(&s, loop, lt_on_reload, lt_on_stop, &seen);
	CHECK(sigaction(SIGPIPE, NULL, &sa) == 0);
	CHECK(sa.sa_handler == SIG_IGN);

	/* The watchers alone do not keep the loop running: ev_run returns at
	 * once.  An unref'd guard timer breaks the loop (and fails the test)
	 * if they wrongly do, so a regression cannot hang the suite. */
	struct lt_timer_owner guard = {0};
	loop_timer_init(&guard.t, loop, lt_guard_cb);
	loop_timer_start(&guard.t, 1000, 0);
	ev_unref(loop);
	ev_run(loop, 0);
	ev_ref(loop);
	loop_timer_stop(&guard.t);
	CHECK_MSG(guard.fired == 0, "signal watchers kept ev_run alive");

	CHECK_INT(lt_deliver(loop, &seen, SIGHUP), 1);
	CHECK_INT(seen.reload, 1);
	CHECK_INT(seen.last, SIGHUP);
	CHECK_INT(lt_deliver(loop, &seen, SIGTERM), 1);
	CHECK_INT(seen.stop, 1);
	CHECK_INT(seen.last, SIGTERM);
	CHECK_INT(lt_deliver(loop, &seen, SIGINT), 1);
	CHECK_INT(seen.stop, 2);
	CHECK_INT(seen.last, SIGINT);
	CHECK_INT(seen.reload, 1);

	loop_signals_stop(&s);
	CHECK(!s.started);
	CHECK(sigaction(SIGHUP, NULL, &sa) == 0);
	CHECK(sa.sa_handler == SIG_DFL);
	ev_loop_destroy(loop);
}
