/*
 * tests/bench/edge/edgebench.c -- load generator and backend for the edge
 * benchmark (run.py drives it).  Self-contained (libc + pthreads), epoll,
 * non-blocking sockets, bounded in count and time; loopback only.
 *
 *   edgebench server --banner PORT --down PORT --up PORT --down-bytes N
 *       One thread.  banner: on accept send "220 ..." at once (a server
 *       that speaks first), then read and discard until EOF, close.
 *       down: send N bytes, half-close, read to EOF, close.  up: read and
 *       count to EOF, close.  Anything in front of the data (a PROXY
 *       header) is simply read and discarded.
 *   edgebench rate --target IP:PORT --seconds S --concurrency C --threads T
 *       C connections in flight, each: connect, read the banner line, close;
 *       prints one JSON line: conns, rate (conn/s), p50_us, p99_us, errors.
 *   edgebench bulk-down --target IP:PORT
 *   edgebench bulk-up --target IP:PORT --bytes N
 *       one connection; prints bytes, seconds, MB/s (MB = 10^6 bytes).
 *   edgebench idle --target IP:PORT --count N
 *       open N connections, each waits for its banner (so the whole chain
 *       is established), prints "ready N", waits for EOF on stdin, closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BANNER     "220 bench.example ESMTP ready\r\n"
#define BUFSZ      (256 * 1024)
#define MAX_EVENTS 256

static void die(const char *what)
{
	fprintf(stderr, "edgebench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static struct sockaddr_in parse_target(const char *s)
{
	struct sockaddr_in a;
	char host[64];
	const char *colon = strrchr(s, ':');

	memset(&a, 0, sizeof(a));
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
		fprintf(stderr, "edgebench: bad target %s\n", s);
		exit(2);
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "edgebench: bad IPv4 address %s\n", host);
		exit(2);
	}
	return a;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

/* --- server -------------------------------------------------------------- */

enum { K_LISTEN_BANNER, K_LISTEN_DOWN, K_LISTEN_UP, K_BANNER, K_DOWN, K_UP };

struct sconn {
	int fd, kind;
	uint64_t left; /* down: bytes still to send */
	bool wr_done;
};

static int listen_on(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(fd, 4096) < 0)
		die("listen");
	return fd;
}

static void sclose(int ep, struct sconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static int server(int argc, char **argv)
{
	static char buf[BUFSZ];
	int ep = epoll_create1(0);
	uint64_t down_bytes = strtoull(opt(argc, argv, "--down-bytes", "1073741824"), NULL, 10);
	int ports[3] = {atoi(opt(argc, argv, "--banner", "0")),
	                atoi(opt(argc, argv, "--down", "0")), atoi(opt(argc, argv, "--up", "0"))};
	struct epoll_event evs[MAX_EVENTS];

	memset(buf, 'x', sizeof(buf));
	for (int k = 0; k < 3; k++) {
		struct sconn *l = calloc(1, sizeof(*l));
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};

		l->fd = listen_on(ports[k]);
		l->kind = k;
		epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev);
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;

			if (c->kind <= K_LISTEN_UP) {
				for (int k = 0; k < 64; k++) {
					int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK);
					struct sconn *nc;
					struct epoll_event ev;

					if (fd < 0)
						break;
					nc = calloc(1, sizeof(*nc));
					nc->fd = fd;
					nc->kind = c->kind + K_BANNER;
					ev.data.ptr = nc;
					ev.events = EPOLLIN;
					if (nc->kind == K_BANNER) {
						if (write(fd, BANNER, sizeof(BANNER) - 1) < 0) {
							close(fd);
							free(nc);
							continue;
						}
					} else if (nc->kind == K_DOWN) {
						nc->left = down_bytes;
						ev.events |= EPOLLOUT;
					}
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if ((evs[i].events & EPOLLOUT) && c->kind == K_DOWN && !c->wr_done) {
				while (c->left > 0) {
					size_t k = c->left < BUFSZ ? (size_t)c->left : BUFSZ;
					ssize_t w = send(c->fd, buf, k, MSG_NOSIGNAL);
					if (w <= 0)
						break;
					c->left -= (uint64_t)w;
				}
				if (c->left == 0) {
					struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
					shutdown(c->fd, SHUT_WR);
					c->wr_done = true;
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				for (;;) {
					ssize_t r = read(c->fd, buf, sizeof(buf));
					if (r > 0)
						continue;
					if (r < 0 && errno == EAGAIN)
						break;
					sclose(ep, c);
					break;
				}
			}
		}
	}
	return 0;
}

/* --- rate ---------------------------------------------------------------- */

struct rate_arg {
	struct sockaddr_in target;
	int conc;
	double until;
	uint64_t conns, errors;
	uint32_t *lat; /* microseconds */
	size_t nlat, caplat;
};

struct rconn {
	int fd;
	double t0;
	size_t got;
};

static bool rate_open(int ep, struct rate_arg *a, struct rconn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return false;
	c->t0 = now_s();
	c->got = 0;
	if (connect(c->fd, (struct sockaddr *)&a->target, sizeof(a->target)) < 0 &&
	    errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return false;
	}
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	return true;
}

static void *rate_thread(void *p)
{
	struct rate_arg *a = p;
	int ep = epoll_create1(0);
	struct rconn *cs = calloc((size_t)a->conc, sizeof(*cs));
	struct epoll_event evs[MAX_EVENTS];
	char buf[512];

	for (int i = 0; i < a->conc; i++)
		if (!rate_open(ep, a, &cs[i]))
			a->errors++;
	while (now_s() < a->until) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, 100);
		for (int i = 0; i < n; i++) {
			struct rconn *c = evs[i].data.ptr;
			ssize_t r = read(c->fd, buf, sizeof(buf));
			bool done = false, bad = false;

			if (r > 0) {
				c->got += (size_t)r;
				if (memchr(buf, '\n', (size_t)r) != NULL)
					done = true;
			} else if (r == 0 || errno != EAGAIN) {
				bad = true;
			} else {
				continue;
			}
			if (!done && !bad)
				continue;
			close(c->fd); /* also removes it from the epoll set */
			if (done) {
				double us = (now_s() - c->t0) * 1e6;
				a->conns++;
				if (a->nlat < a->caplat)
					a->lat[a->nlat++] = (uint32_t)(us < 4e9 ? us : 4e9);
			} else {
				a->errors++;
			}
			if (now_s() < a->until && !rate_open(ep, a, c))
				a->errors++;
		}
	}
	for (int i = 0; i < a->conc; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	free(cs);
	close(ep);
	return NULL;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return a < b ? -1 : a > b;
}

static int rate(int argc, char **argv)
{
	struct sockaddr_in target = parse_target(opt(argc, argv, "--target", "127.0.0.1:0"));
	double secs = atof(opt(argc, argv, "--seconds", "3"));
	int conc = atoi(opt(argc, argv, "--concurrency", "64"));
	int threads = atoi(opt(argc, argv, "--threads", "1"));
	struct rate_arg *args = calloc((size_t)threads, sizeof(*args));
	pthread_t *th = calloc((size_t)threads, sizeof(*th));
	uint64_t conns = 0, errors = 0;
	size_t nlat = 0;
	uint32_t *all;
	double t0, el;

	if (secs <= 0 || secs > 120 || conc < 1 || conc > 4096 || threads < 1 || threads > 16) {
		fprintf(stderr, "edgebench: rate: bad arguments\n");
		return 2;
	}
	t0 = now_s();
	for (int i = 0; i < threads; i++) {
		args[i].target = target;
		args[i].conc = conc / threads + (i < conc % threads);
		args[i].until = t0 + secs;
		args[i].caplat = 4u << 20;
		args[i].lat = malloc(args[i].caplat * sizeof(uint32_t));
		pthread_create(&th[i], NULL, rate_thread, &args[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		conns += args[i].conns;
		errors += args[i].errors;
		nlat += args[i].nlat;
	}
	el = now_s() - t0;
	all = malloc((nlat + 1) * sizeof(uint32_t));
	nlat = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + nlat, args[i].lat, args[i].nlat * sizeof(uint32_t));
		nlat += args[i].nlat;
		free(args[i].lat);
	}
	qsort(all, nlat, sizeof(uint32_t), cmp_u32);
	printf("{\"conns\": %llu, \"seconds\": %.3f, \"rate\": %.1f, \"p50_us\": %u, \"p99_us\": "
	       "%u, "
	       "\"errors\": %llu}\n",
	       (unsigned long long)conns, el, (double)conns / el, nlat ? all[nlat / 2] : 0,
	       nlat ? all[(size_t)((double)nlat * 0.99)] : 0, (unsigned long long)errors);
	free(all);
	free(args);
	free(th);
	return 0;
}

/* --- bulk ---------------------------------------------------------------- */

static int connect_block(struct sockaddr_in *t)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)t, sizeof(*t)) < 0)
		die("connect");
	return fd;
}

static int bulk(int argc, char **argv, bool up)
{
	static char buf[BUFSZ];
	struct sockaddr_in target = parse_target(opt(argc, argv, "--target", "127.0.0.1:0"));
	uint64_t want = strtoull(opt(argc, argv, "--bytes", "1073741824"), NULL, 10), n = 0;
	double t0, el;
	int fd;

	memset(buf, 'y', sizeof(buf));
	t0 = now_s();
	fd = connect_block(&target);
	if (up) {
		while (n < want) {
			size_t k = want - n < BUFSZ ? (size_t)(want - n) : BUFSZ;
			ssize_t w = send(fd, buf, k, MSG_NOSIGNAL);
			if (w <= 0)
				die("send");
			n += (uint64_t)w;
		}
		shutdown(fd, SHUT_WR);
		while (read(fd, buf, sizeof(buf)) > 0) /* until the server has all and closes */
			;
	} else {
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0)
				die("read");
			if (r == 0)
				break;
			n += (uint64_t)r;
		}
	}
	el = now_s() - t0;
	close(fd);
	printf("{\"bytes\": %llu, \"seconds\": %.4f, \"mbps\": %.1f}\n", (unsigned long long)n, el,
	       (double)n / el / 1e6);
	return 0;
}

/* --- idle ---------------------------------------------------------------- */

static int idle(int argc, char **argv)
{
	struct sockaddr_in target = parse_target(opt(argc, argv, "--target", "127.0.0.1:0"));
	int count = atoi(opt(argc, argv, "--count", "5000")), ep = epoll_create1(0), ready = 0;
	int *fds = calloc((size_t)count, sizeof(int));
	int opened = 0, inflight = 0;
	double deadline = now_s() + 60;
	struct epoll_event evs[MAX_EVENTS];
	char buf[512];

	if (count < 1 || count > 100000)
		return 2;
	while (ready < count && now_s() < deadline) {
		while (opened < count && inflight < 200) {
			struct epoll_event ev = {.events = EPOLLIN};
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (fd < 0)
				die("socket");
			if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
			    errno != EINPROGRESS)
				die("connect");
			ev.data.fd = fd;
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			fds[opened++] = fd;
			inflight++;
		}
		int n = epoll_wait(ep, evs, MAX_EVENTS, 100);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r <= 0) {
				fprintf(stderr, "edgebench: idle: connection closed early\n");
				return 1;
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			inflight--;
			ready++;
		}
	}
	printf("ready %d\n", ready);
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	free(fds);
	return ready == count ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: edgebench server|rate|bulk-down|bulk-up|idle [options]\n");
		return 2;
	}
	raise_nofile();
	if (strcmp(argv[1], "server") == 0)
		return server(argc, argv);
	if (strcmp(argv[1], "rate") == 0)
		return rate(argc, argv);
	if (strcmp(argv[1], "bulk-down") == 0)
		return bulk(argc, argv, false);
	if (strcmp(argv[1], "bulk-up") == 0)
		return bulk(argc, argv, true);
	if (strcmp(argv[1], "idle") == 0)
		return idle(argc, argv);
	fprintf(stderr, "edgebench: unknown command %s\n", argv[1]);
	return 2;
}
