/*
 * tests/tools/imap_load.c -- an IMAP load generator for the IMAP benchmark
 * (tests/bench/imap/run.py drives it against tailpost and Dovecot alike).
 * Plain IMAP4rev1 on loopback, one thread and one blocking socket per
 * client, bounded in count and time.  Users are PREFIX<i>SUFFIX, i from 0,
 * all with the same password.
 *
 *   imap_load fill --target IP:PORT --users U --messages M [--threads T]
 *       APPEND M generated messages (1.5-12 KB text, deterministic from
 *       user and index) to each user's INBOX, then SELECT and check that
 *       INBOX holds at least M messages.  Prints one JSON line.
 *   imap_load run --target IP:PORT --clients N --seconds S [--users U]
 *       N clients, client i logs in as user i % U (U defaults to N), then
 *       CAPABILITY, SELECT INBOX, UID SEARCH UNDELETED (the pre-filled
 *       UIDs), then, after all clients are ready, repeats rounds of
 *         UID FETCH u (FLAGS), UID FETCH u (ENVELOPE),
 *         UID FETCH u (BODY.PEEK[]), UID STORE u +FLAGS (\Flagged),
 *         UID FETCH 1:* (FLAGS), UID FETCH u (BODY.PEEK[]),
 *         UID STORE u -FLAGS (\Flagged), APPEND INBOX (\Deleted) {n+}
 *         (a new 1 KB message each time), UID EXPUNGE <the APPENDUID>, NOOP
 *       (u a random pre-filled UID) until S seconds have passed; a round
 *       that has started is finished, so every appended message is
 *       expunged again and the mailbox stays the same size.  Prints one
 *       JSON line: commands, seconds, rate (commands/s over the measured
 *       window), overall and per-kind count, p50/p99 latency in
 *       microseconds and errors, and the first error seen.  Login and
 *       select are timed too but not counted in the rate.
 *   imap_load idle --target IP:PORT --count N [--users U]
 *       open N connections (user i % U), each logs in and selects INBOX,
 *       print "ready N", wait for EOF on stdin, close them all.
 *
 * Common options: --user-prefix bench --user-suffix @example.org
 * --password bench-pw --seed 1.  An error is a tagged NO or BAD, or a
 * protocol error (EOF, timeout after 30 s, malformed or unexpected
 * answer, a FETCH that returned no data): all are counted, the first is
 * printed, and a client with a protocol error stops.  Exit status: 0 if
 * there were no errors, 1 otherwise, 2 for usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 30
#define MAX_CLIENTS  5000
#define ERRLEN       256

/* --- options and small helpers ----------------------------------------- */

static struct sockaddr_in target;
static const char *user_prefix = "bench";
static const char *user_suffix = "@example.org";
static const char *password = "bench-pw";
static uint64_t seed = 1;

static void usage(void)
{
	fprintf(stderr,
	        "usage: imap_load fill --target IP:PORT --users U --messages M [--threads T]\n"
	        "       imap_load run --target IP:PORT --clients N --seconds S [--users U]\n"
	        "       imap_load idle --target IP:PORT --count N [--users U]\n"
	        "  common: [--user-prefix P] [--user-suffix S] [--password PW] [--seed N]\n");
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xrealloc_or_die(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL) {
		fprintf(stderr, "imap_load: out of memory\n");
		exit(1);
	}
	return q;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

static long opt_num(int argc, char **argv, const char *name, long def, long min, long max)
{
	const char *s = opt(argc, argv, name, NULL);
	char *end;
	long v;

	if (s == NULL) {
		if (def < min) {
			fprintf(stderr, "imap_load: %s is required\n", name);
			usage();
		}
		return def;
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < min || v > max) {
		fprintf(stderr, "imap_load: %s %s: want a number in %ld..%ld\n", name, s, min, max);
		usage();
	}
	return v;
}

static void parse_common(int argc, char **argv)
{
	const char *t = opt(argc, argv, "--target", NULL), *colon;
	char host[64];
	long port;

	for (int i = 2; i < argc; i += 2)
		if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
			fprintf(stderr, "imap_load: unexpected argument %s\n", argv[i]);
			usage();
		}
	if (t == NULL || (colon = strrchr(t, ':')) == NULL || (size_t)(colon - t) >= sizeof(host)) {
		fprintf(stderr, "imap_load: --target IP:PORT is required\n");
		usage();
	}
	memcpy(host, t, (size_t)(colon - t));
	host[colon - t] = '\0';
	port = strtol(colon + 1, NULL, 10);
	memset(&target, 0, sizeof(target));
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)port);
	if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &target.sin_addr) != 1) {
		fprintf(stderr, "imap_load: bad target %s (want IPv4:PORT)\n", t);
		usage();
	}
	user_prefix = opt(argc, argv, "--user-prefix", user_prefix);
	user_suffix = opt(argc, argv, "--user-suffix", user_suffix);
	password = opt(argc, argv, "--password", password);
	seed = (uint64_t)opt_num(argc, argv, "--seed", 1, 0, 1L << 30);
	if (strpbrk(password, "\"\\\r\n") != NULL || strpbrk(user_prefix, "\"\\\r\n") != NULL ||
	    strpbrk(user_suffix, "\"\\\r\n") != NULL) {
		fprintf(stderr, "imap_load: user names and password must not hold \" \\ CR LF\n");
		usage();
	}
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* xorshift64*: fast, deterministic per seed. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_seed(uint64_t a, uint64_t b)
{
	uint64_t s = (a + 1) * 0x9E3779B97F4A7C15ULL ^ (b + 1) * 0xBF58476D1CE4E5B9ULL;

	return s != 0 ? s : 1;
}

/* --- a growable byte string -------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
	if (b->len + more + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (b->len + more + 1 > cap)
			cap *= 2;
		b->p = xrealloc_or_die(b->p, cap);
		b->cap = cap;
	}
}

static void sb_add(struct sbuf *b, const void *data, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	sb_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* --- generated messages ---------------------------------------------------- */

static const char *const words[] = {
        "the",     "mail",     "server", "quarterly", "report",  "meeting", "tomorrow", "please",
        "review",  "attached", "budget", "numbers",   "deploy",  "friday",  "thanks",   "regards",
        "project", "status",   "update", "customer",  "invoice", "draft",   "schedule", "notes",
};

/* A plain-text message of about `size` bytes, CRLF line ends. */
static void make_message(struct sbuf *m, uint64_t user, uint64_t idx, size_t size)
{
	uint64_t s = rnd_seed(user * 1000003 + idx, seed);
	size_t col = 0;

	m->len = 0;
	sb_printf(m,
	          "From: Sender %" PRIu64 " <sender%" PRIu64 "@example.net>\r\n"
	          "To: %s%" PRIu64 "%s\r\n"
	          "Subject: %s %s number %" PRIu64 "\r\n"
	          "Date: Thu, 26 Nov 2026 %02u:%02u:00 +0000\r\n"
	          "Message-ID: <%" PRIu64 ".%" PRIu64 ".%" PRIu64 "@bench.example>\r\n"
	          "MIME-Version: 1.0\r\n"
	          "Content-Type: text/plain; charset=us-ascii\r\n"
	          "\r\n",
	          idx % 17, idx % 17, user_prefix, user, user_suffix,
	          words[rnd(&s) % (sizeof(words) / sizeof(words[0]))],
	          words[rnd(&s) % (sizeof(words) / sizeof(words[0]))], idx,
	          (unsigned)(idx / 60 % 24), (unsigned)(idx % 60), user, idx, seed);
	while (m->len < size) {
		const char *w = words[rnd(&s) % (sizeof(words) / sizeof(words[0]))];
		size_t n = strlen(w);

		if (col + n + 1 > 72) {
			sb_add(m, "\r\n", 2);
			col = 0;
		} else if (col > 0) {
			sb_add(m, " ", 1);
			col++;
		}
		sb_add(m, w, n);
		col += n;
	}
	sb_add(m, "\r\n", 2);
}

/* --- one IMAP connection ------------------------------------------------ */

enum result { RES_OK, RES_NO, RES_BAD, RES_PROTO };

struct conn {
	int fd;
	char rbuf[65536];
	size_t roff, rlen;
	unsigned tag;
	bool literal_plus;
	struct sbuf resp;     /* the current logical response line(s) */
	struct sbuf untagged; /* untagged responses of the last command */
	size_t literal_bytes; /* literal bytes in the last command's responses */
	struct sbuf out;
	char tagged[ERRLEN]; /* last tagged line */
	char err[ERRLEN];    /* protocol error text */
};

static int conn_fill(struct conn *c)
{
	ssize_t n;

	if (c->roff == c->rlen)
		c->roff = c->rlen = 0;
	for (;;) {
		n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
		if (n > 0) {
			c->rlen += (size_t)n;
			return 0;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			snprintf(c->err, sizeof(c->err), "connection closed by server");
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			snprintf(c->err, sizeof(c->err), "no answer within %d s", IO_TIMEOUT_S);
		else
			snprintf(c->err, sizeof(c->err), "recv: %s", strerror(errno));
		return -1;
	}
}

static int conn_send(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(c->err, sizeof(c->err), "send: %s", strerror(errno));
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Append one line (through LF) to c->resp; -1 on error. */
static int conn_line(struct conn *c)
{
	for (;;) {
		char *lf = memchr(c->rbuf + c->roff, '\n', c->rlen - c->roff);

		if (lf != NULL) {
			size_t n = (size_t)(lf - (c->rbuf + c->roff)) + 1;

			sb_add(&c->resp, c->rbuf + c->roff, n);
			c->roff += n;
			return 0;
		}
		sb_add(&c->resp, c->rbuf + c->roff, c->rlen - c->roff);
		c->roff = c->rlen;
		if (c->resp.len > 1 << 20) {
			snprintf(c->err, sizeof(c->err), "response line over 1 MB");
			return -1;
		}
		if (conn_fill(c) < 0)
			return -1;
	}
}

/* A literal announced as {N} at the end of the line just read, or -1. */
static long literal_at_end(const struct sbuf *b, size_t line_start)
{
	size_t e = b->len;
	size_t digits_end;
	long n = 0;

	while (e > line_start && (b->p[e - 1] == '\n' || b->p[e - 1] == '\r'))
		e--;
	if (e == line_start || b->p[e - 1] != '}')
		return -1;
	digits_end = e - 1;
	e = digits_end;
	while (e > line_start && b->p[e - 1] >= '0' && b->p[e - 1] <= '9')
		e--;
	if (e == digits_end || e == line_start || b->p[e - 1] != '{' || digits_end - e > 9)
		return -1;
	for (size_t i = e; i < digits_end; i++)
		n = n * 10 + (b->p[i] - '0');
	return n;
}

/* Read one logical response (a line and any literals it carries) into
 * c->resp, counting literal bytes. */
static int conn_response(struct conn *c)
{
	size_t start = 0;
	long lit;

	c->resp.len = 0;
	for (;;) {
		if (conn_line(c) < 0)
			return -1;
		lit = literal_at_end(&c->resp, start);
		if (lit < 0)
			return 0;
		c->literal_bytes += (size_t)lit;
		while (lit > 0) {
			size_t have = c->rlen - c->roff, take;

			if (have == 0) {
				if (conn_fill(c) < 0)
					return -1;
				continue;
			}
			take = have < (size_t)lit ? have : (size_t)lit;
			sb_add(&c->resp, c->rbuf + c->roff, take);
			c->roff += take;
			lit -= (long)take;
		}
		start = c->resp.len;
	}
}

static void copy_line(char *dst, size_t cap, const char *src)
{
	size_t n = strcspn(src, "\r\n");

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Send c->out (already holding "TAG command...\r\n" for tag c->tag) and
 * read until the tagged answer.  Untagged responses are kept in
 * c->untagged.  A continuation request is a protocol error (we only use
 * LITERAL+ literals). */
static enum result conn_exchange(struct conn *c)
{
	char tag[16];
	int tl = snprintf(tag, sizeof(tag), "a%u ", c->tag);

	c->untagged.len = 0;
	c->literal_bytes = 0;
	c->tagged[0] = '\0';
	if (conn_send(c, c->out.p, c->out.len) < 0)
		return RES_PROTO;
	for (;;) {
		if (conn_response(c) < 0)
			return RES_PROTO;
		if (c->resp.len >= 2 && c->resp.p[0] == '*' && c->resp.p[1] == ' ') {
			if (strncmp(c->resp.p, "* BYE", 5) == 0) {
				copy_line(c->err, sizeof(c->err), c->resp.p);
				return RES_PROTO;
			}
			sb_add(&c->untagged, c->resp.p, c->resp.len);
			continue;
		}
		if (strncmp(c->resp.p, tag, (size_t)tl) == 0) {
			const char *st = c->resp.p + tl;

			copy_line(c->tagged, sizeof(c->tagged), c->resp.p);
			if (strncmp(st, "OK", 2) == 0)
				return RES_OK;
			if (strncmp(st, "NO", 2) == 0)
				return RES_NO;
			if (strncmp(st, "BAD", 3) == 0)
				return RES_BAD;
		}
		snprintf(c->err, sizeof(c->err), "unexpected answer to a%u: ", c->tag);
		copy_line(c->err + strlen(c->err), sizeof(c->err) - strlen(c->err), c->resp.p);
		return RES_PROTO;
	}
}

__attribute__((format(printf, 2, 3))) static enum result conn_cmd(struct conn *c, const char *fmt,
                                                                  ...)
{
	va_list ap;
	int n;

	c->tag++;
	c->out.len = 0;
	sb_printf(&c->out, "a%u ", c->tag);
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	sb_reserve(&c->out, (size_t)n + 2);
	va_start(ap, fmt);
	vsnprintf(c->out.p + c->out.len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	c->out.len += (size_t)n;
	sb_add(&c->out, "\r\n", 2);
	return conn_exchange(c);
}

/* APPEND with a LITERAL+ literal (RFC 7888); flags may be "". */
static enum result conn_append(struct conn *c, const char *flags, const struct sbuf *msg)
{
	if (!c->literal_plus) {
		snprintf(c->err, sizeof(c->err), "server does not offer LITERAL+");
		return RES_PROTO;
	}
	c->tag++;
	c->out.len = 0;
	sb_printf(&c->out, "a%u APPEND INBOX %s%s%s{%zu+}\r\n", c->tag, *flags ? "(" : "", flags,
	          *flags ? ") " : "", msg->len);
	sb_add(&c->out, msg->p, msg->len);
	sb_add(&c->out, "\r\n", 2);
	return conn_exchange(c);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->resp.p);
	free(c->untagged.p);
	free(c->out.p);
	memset(&c->resp, 0, sizeof(c->resp));
	memset(&c->untagged, 0, sizeof(c->untagged));
	memset(&c->out, 0, sizeof(c->out));
}

/* Connect and read the greeting. */
static int conn_open(struct conn *c)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0) {
		snprintf(c->err, sizeof(c->err), "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) < 0) {
		snprintf(c->err, sizeof(c->err), "connect: %s", strerror(errno));
		return -1;
	}
	if (conn_response(c) < 0)
		return -1;
	if (strncmp(c->resp.p, "* OK", 4) != 0) {
		snprintf(c->err, sizeof(c->err), "greeting: ");
		copy_line(c->err + strlen(c->err), sizeof(c->err) - strlen(c->err), c->resp.p);
		return -1;
	}
	return 0;
}

/* Set c->err from a failed command's result. */
static void note_failure(struct conn *c, enum result r, const char *what)
{
	char tmp[ERRLEN];

	if (r == RES_PROTO)
		snprintf(tmp, sizeof(tmp), "%s: %.200s", what, c->err);
	else
		snprintf(tmp, sizeof(tmp), "%s: %.200s", what, c->tagged);
	memcpy(c->err, tmp, sizeof(tmp));
}

/* LOGIN and CAPABILITY; 0 or -1 with c->err set. */
static int conn_login(struct conn *c, unsigned user)
{
	enum result r =
	        conn_cmd(c, "LOGIN \"%s%u%s\" \"%s\"", user_prefix, user, user_suffix, password);

	if (r != RES_OK) {
		note_failure(c, r, "LOGIN");
		return -1;
	}
	r = conn_cmd(c, "CAPABILITY");
	if (r != RES_OK) {
		note_failure(c, r, "CAPABILITY");
		return -1;
	}
	c->literal_plus = strstr(c->untagged.p ? c->untagged.p : "", " LITERAL+") != NULL;
	return 0;
}

/* SELECT INBOX; the EXISTS count or -1 with c->err set. */
static long conn_select(struct conn *c)
{
	enum result r = conn_cmd(c, "SELECT INBOX");
	const char *p;

	if (r != RES_OK) {
		note_failure(c, r, "SELECT");
		return -1;
	}
	for (p = c->untagged.p; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		long n;
		char word[16];

		if (sscanf(p, "* %ld %15s", &n, word) == 2 && strcmp(word, "EXISTS") == 0)
			return n;
	}
	snprintf(c->err, sizeof(c->err), "SELECT: no EXISTS");
	return -1;
}

/* --- fill ---------------------------------------------------------------- */

struct fill_arg {
	unsigned first, step, users, messages;
	unsigned long appended, errors;
	char err[ERRLEN];
};

static void *fill_thread(void *p)
{
	struct fill_arg *a = p;
	struct sbuf msg = {0};
	uint64_t s;

	for (unsigned u = a->first; u < a->users; u += a->step) {
		struct conn c;
		long exists;

		if (conn_open(&c) < 0 || conn_login(&c, u) < 0)
			goto fail;
		s = rnd_seed(u, seed ^ 0x51ed);
		for (unsigned i = 0; i < a->messages; i++) {
			enum result r;

			make_message(&msg, u, i, 1500 + (size_t)(rnd(&s) % 10500));
			r = conn_append(&c, "", &msg);
			if (r != RES_OK) {
				note_failure(&c, r, "APPEND");
				goto fail;
			}
			a->appended++;
		}
		exists = conn_select(&c);
		if (exists < 0)
			goto fail;
		if (exists < (long)a->messages) {
			snprintf(c.err, sizeof(c.err),
			         "user %u: INBOX has %ld messages after filling %u", u, exists,
			         a->messages);
			goto fail;
		}
		conn_cmd(&c, "LOGOUT");
		conn_close(&c);
		continue;
	fail:
		a->errors++;
		if (a->err[0] == '\0')
			snprintf(a->err, sizeof(a->err), "user %u: %.220s", u, c.err);
		conn_close(&c);
	}
	free(msg.p);
	return NULL;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static int cmd_fill(int argc, char **argv)
{
	unsigned users = (unsigned)opt_num(argc, argv, "--users", -1, 1, MAX_CLIENTS);
	unsigned messages = (unsigned)opt_num(argc, argv, "--messages", -1, 1, 100000);
	unsigned threads = (unsigned)opt_num(argc, argv, "--threads", 4, 1, 64);
	struct fill_arg *args = calloc(threads, sizeof(*args));
	pthread_t *th = calloc(threads, sizeof(*th));
	unsigned long appended = 0, errors = 0;
	const char *first = "";
	double t0 = now_s(), el;

	if (args == NULL || th == NULL)
		return 1;
	for (unsigned i = 0; i < threads; i++) {
		args[i] = (struct fill_arg){
		        .first = i, .step = threads, .users = users, .messages = messages};
		pthread_create(&th[i], NULL, fill_thread, &args[i]);
	}
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		appended += args[i].appended;
		errors += args[i].errors;
		if (*first == '\0')
			first = args[i].err;
	}
	el = now_s() - t0;
	printf("{\"users\": %u, \"appended\": %lu, \"seconds\": %.3f, \"rate\": %.1f, \"errors\": "
	       "%lu, \"first_error\": ",
	       users, appended, el, (double)appended / el, errors);
	json_str(first);
	printf("}\n");
	free(args);
	free(th);
	return errors ? 1 : 0;
}

/* --- run ---------------------------------------------------------------- */

enum kind {
	K_LOGIN,
	K_SELECT,
	K_FETCH_FLAGS,
	K_FETCH_ENVELOPE,
	K_FETCH_BODY,
	K_FETCH_ALL_FLAGS,
	K_STORE,
	K_APPEND,
	K_EXPUNGE,
	K_NOOP,
	K_COUNT
};

static const char *const kind_names[K_COUNT] = {
        "login",           "select", "fetch_flags", "fetch_envelope", "fetch_body",
        "fetch_all_flags", "store",  "append",      "expunge",        "noop",
};

struct samples {
	uint32_t *v;
	size_t n, cap;
	unsigned long errors;
};

static void sample_add(struct samples *s, double sec)
{
	double us = sec * 1e6;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->v = xrealloc_or_die(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = us > 4e9 ? UINT32_MAX : (uint32_t)us;
}

struct run_shared {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned waiting, clients;
	double seconds, start, deadline;
};

struct run_arg {
	struct run_shared *sh;
	unsigned index, user;
	struct samples k[K_COUNT];
	bool failed; /* protocol error: this client stopped */
	bool measured;
	double end;
	char err[ERRLEN];
};

static void first_err(struct run_arg *a, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void first_err(struct run_arg *a, const char *fmt, ...)
{
	va_list ap;

	if (a->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(a->err, sizeof(a->err), fmt, ap);
	va_end(ap);
}

/* Wait until every client is ready (or gave up); the last one sets the
 * measured window. */
static void run_barrier(struct run_shared *sh)
{
	pthread_mutex_lock(&sh->mu);
	if (++sh->waiting == sh->clients) {
		sh->start = now_s();
		sh->deadline = sh->start + sh->seconds;
		pthread_cond_broadcast(&sh->cv);
	} else {
		while (sh->waiting < sh->clients)
			pthread_cond_wait(&sh->cv, &sh->mu);
	}
	pthread_mutex_unlock(&sh->mu);
}

/* The number of "* N FETCH" responses in c->untagged. */
static unsigned count_fetch(const struct conn *c)
{
	unsigned n = 0;

	for (const char *p = c->untagged.p; p != NULL && *p;) {
		long num;
		char word[8];

		if (sscanf(p, "* %ld %7s", &num, word) == 2 && strcmp(word, "FETCH") == 0)
			n++;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return n;
}

/* One timed command of kind k; false after a protocol error. */
static bool timed(struct run_arg *a, struct conn *c, enum kind k, enum result r, double t0,
                  const char *what)
{
	sample_add(&a->k[k], now_s() - t0);
	if (r == RES_OK)
		return true;
	a->k[k].errors++;
	note_failure(c, r, what);
	first_err(a, "client %u: %s", a->index, c->err);
	return r != RES_PROTO;
}

/* A FETCH that answered OK must have returned the data (a literal for a
 * body); otherwise count an error. */
static void check_fetch(struct run_arg *a, struct conn *c, enum kind k, bool body)
{
	const char *cmd = c->out.p ? c->out.p : "";

	if (count_fetch(c) == 0 || (body && c->literal_bytes == 0)) {
		a->k[k].errors++;
		first_err(a, "client %u: %s returned no data: %.*s", a->index, kind_names[k],
		          (int)strcspn(cmd, "\r\n"), cmd);
	}
}

/* The UID from "[APPENDUID v uid]" in the tagged answer, or 0. */
static unsigned long appenduid(const struct conn *c)
{
	const char *p = strstr(c->tagged, "[APPENDUID ");
	unsigned long v, uid;

	if (p == NULL || sscanf(p, "[APPENDUID %lu %lu]", &v, &uid) != 2)
		return 0;
	return uid;
}

static void *run_thread(void *p)
{
	struct run_arg *a = p;
	struct run_shared *sh = a->sh;
	struct conn c;
	struct sbuf msg = {0};
	unsigned long *uids = NULL;
	size_t nuids = 0;
	uint64_t s = rnd_seed(a->index, seed ^ 0xbe4c), round = 0;
	double t0;
	enum result r;
	bool ok = false;

	t0 = now_s();
	if (conn_open(&c) < 0) {
		first_err(a, "client %u: %s", a->index, c.err);
		goto ready;
	}
	if (conn_login(&c, a->user) < 0) {
		a->k[K_LOGIN].errors++;
		first_err(a, "client %u: %s", a->index, c.err);
		goto ready;
	}
	sample_add(&a->k[K_LOGIN], now_s() - t0);
	t0 = now_s();
	if (conn_select(&c) < 0) {
		a->k[K_SELECT].errors++;
		first_err(a, "client %u: %s", a->index, c.err);
		goto ready;
	}
	sample_add(&a->k[K_SELECT], now_s() - t0);
	r = conn_cmd(&c, "UID SEARCH UNDELETED");
	if (r != RES_OK) {
		note_failure(&c, r, "UID SEARCH");
		first_err(a, "client %u: %s", a->index, c.err);
		goto ready;
	}
	for (char *q = strstr(c.untagged.p ? c.untagged.p : "", "* SEARCH"); q != NULL;) {
		char *end;
		unsigned long v;

		q += strcspn(q, "0123456789\r\n");
		if (*q < '0' || *q > '9')
			break;
		v = strtoul(q, &end, 10);
		uids = xrealloc_or_die(uids, (nuids + 1) * sizeof(*uids));
		uids[nuids++] = v;
		q = end;
	}
	if (nuids == 0) {
		first_err(a, "client %u: user %u has no messages (fill first)", a->index, a->user);
		goto ready;
	}
	ok = true;
ready:
	if (!ok)
		a->failed = true;
	run_barrier(sh);
	if (!ok)
		goto out;
	a->measured = true;
	while (now_s() < sh->deadline) {
		unsigned long u = uids[rnd(&s) % nuids], u2 = uids[rnd(&s) % nuids], nu;

		t0 = now_s();
		r = conn_cmd(&c, "UID FETCH %lu (FLAGS)", u);
		if (!timed(a, &c, K_FETCH_FLAGS, r, t0, "UID FETCH FLAGS"))
			goto broken;
		if (r == RES_OK)
			check_fetch(a, &c, K_FETCH_FLAGS, false);
		t0 = now_s();
		r = conn_cmd(&c, "UID FETCH %lu (ENVELOPE)", u);
		if (!timed(a, &c, K_FETCH_ENVELOPE, r, t0, "UID FETCH ENVELOPE"))
			goto broken;
		if (r == RES_OK)
			check_fetch(a, &c, K_FETCH_ENVELOPE, false);
		t0 = now_s();
		r = conn_cmd(&c, "UID FETCH %lu (BODY.PEEK[])", u);
		if (!timed(a, &c, K_FETCH_BODY, r, t0, "UID FETCH BODY.PEEK[]"))
			goto broken;
		if (r == RES_OK)
			check_fetch(a, &c, K_FETCH_BODY, true);
		t0 = now_s();
		r = conn_cmd(&c, "UID STORE %lu +FLAGS (\\Flagged)", u);
		if (!timed(a, &c, K_STORE, r, t0, "UID STORE +FLAGS"))
			goto broken;
		t0 = now_s();
		r = conn_cmd(&c, "UID FETCH 1:* (FLAGS)");
		if (!timed(a, &c, K_FETCH_ALL_FLAGS, r, t0, "UID FETCH 1:* FLAGS"))
			goto broken;
		if (r == RES_OK)
			check_fetch(a, &c, K_FETCH_ALL_FLAGS, false);
		t0 = now_s();
		r = conn_cmd(&c, "UID FETCH %lu (BODY.PEEK[])", u2);
		if (!timed(a, &c, K_FETCH_BODY, r, t0, "UID FETCH BODY.PEEK[]"))
			goto broken;
		if (r == RES_OK)
			check_fetch(a, &c, K_FETCH_BODY, true);
		t0 = now_s();
		r = conn_cmd(&c, "UID STORE %lu -FLAGS (\\Flagged)", u);
		if (!timed(a, &c, K_STORE, r, t0, "UID STORE -FLAGS"))
			goto broken;
		/* a new message each time, as real mail is (a store that
		 * deduplicates identical content must not gain from repeats) */
		make_message(&msg, a->user, 1000000 + round * MAX_CLIENTS + a->index, 1000);
		round++;
		t0 = now_s();
		r = conn_append(&c, "\\Deleted", &msg);
		if (!timed(a, &c, K_APPEND, r, t0, "APPEND"))
			goto broken;
		nu = r == RES_OK ? appenduid(&c) : 0;
		if (r == RES_OK && nu == 0) {
			a->k[K_APPEND].errors++;
			first_err(a, "client %u: APPEND without APPENDUID: %s", a->index, c.tagged);
		}
		if (nu != 0) {
			t0 = now_s();
			r = conn_cmd(&c, "UID EXPUNGE %lu", nu);
			if (!timed(a, &c, K_EXPUNGE, r, t0, "UID EXPUNGE"))
				goto broken;
			if (r == RES_OK &&
			    strstr(c.untagged.p ? c.untagged.p : "", " EXPUNGE") == NULL) {
				a->k[K_EXPUNGE].errors++;
				first_err(a, "client %u: UID EXPUNGE %lu expunged nothing",
				          a->index, nu);
			}
		}
		t0 = now_s();
		r = conn_cmd(&c, "NOOP");
		if (!timed(a, &c, K_NOOP, r, t0, "NOOP"))
			goto broken;
	}
	a->end = now_s();
	conn_cmd(&c, "LOGOUT");
	goto out;
broken:
	a->end = now_s();
	a->failed = true;
out:
	conn_close(&c);
	free(uids);
	free(msg.p);
	return NULL;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

static uint32_t pct(const struct samples *s, double q)
{
	if (s->n == 0)
		return 0;
	return s->v[(size_t)((double)(s->n - 1) * q + 0.5)];
}

static void merge(struct samples *dst, const struct samples *src)
{
	if (src->n > 0) {
		dst->v = xrealloc_or_die(dst->v, (dst->n + src->n) * sizeof(*dst->v));
		memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
		dst->n += src->n;
	}
	dst->errors += src->errors;
}

static int cmd_run(int argc, char **argv)
{
	unsigned clients = (unsigned)opt_num(argc, argv, "--clients", -1, 1, MAX_CLIENTS);
	unsigned users = (unsigned)opt_num(argc, argv, "--users", clients, 1, MAX_CLIENTS);
	double seconds = (double)opt_num(argc, argv, "--seconds", -1, 1, 3600);
	struct run_shared sh = {.clients = clients, .seconds = seconds};
	struct run_arg *args = calloc(clients, sizeof(*args));
	pthread_t *th = calloc(clients, sizeof(*th));
	struct samples all[K_COUNT] = {{0}}, total = {0};
	unsigned long commands = 0, errors = 0, failed = 0;
	double end = 0, window;
	const char *first = "";

	if (args == NULL || th == NULL)
		return 1;
	pthread_mutex_init(&sh.mu, NULL);
	pthread_cond_init(&sh.cv, NULL);
	for (unsigned i = 0; i < clients; i++) {
		pthread_attr_t at;

		args[i].sh = &sh;
		args[i].index = i;
		args[i].user = i % users;
		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 256 * 1024);
		if (pthread_create(&th[i], &at, run_thread, &args[i]) != 0) {
			fprintf(stderr, "imap_load: pthread_create failed\n");
			exit(1);
		}
		pthread_attr_destroy(&at);
	}
	for (unsigned i = 0; i < clients; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < clients; i++) {
		for (int k = 0; k < K_COUNT; k++)
			merge(&all[k], &args[i].k[k]);
		if (args[i].failed)
			failed++;
		if (args[i].end > end)
			end = args[i].end;
		if (*first == '\0')
			first = args[i].err;
	}
	window = end > sh.start ? end - sh.start : 0;
	for (int k = 0; k < K_COUNT; k++) {
		if (all[k].n > 0)
			qsort(all[k].v, all[k].n, sizeof(*all[k].v), cmp_u32);
		errors += all[k].errors;
		if (k != K_LOGIN && k != K_SELECT) {
			commands += all[k].n;
			merge(&total, &all[k]);
		}
	}
	if (total.n > 0)
		qsort(total.v, total.n, sizeof(*total.v), cmp_u32);
	printf("{\"clients\": %u, \"users\": %u, \"seconds\": %.3f, \"commands\": %lu, "
	       "\"rate\": %.1f, \"p50_us\": %u, \"p99_us\": %u, \"errors\": %lu, "
	       "\"failed_clients\": %lu, \"first_error\": ",
	       clients, users, window, commands, window > 0 ? (double)commands / window : 0.0,
	       pct(&total, 0.5), pct(&total, 0.99), errors, failed);
	json_str(first);
	printf(", \"kinds\": {");
	for (int k = 0; k < K_COUNT; k++)
		printf("%s\"%s\": {\"count\": %zu, \"p50_us\": %u, \"p99_us\": %u, \"errors\": "
		       "%lu}",
		       k ? ", " : "", kind_names[k], all[k].n, pct(&all[k], 0.5),
		       pct(&all[k], 0.99), all[k].errors);
	printf("}}\n");
	for (unsigned i = 0; i < clients; i++)
		for (int k = 0; k < K_COUNT; k++)
			free(args[i].k[k].v);
	for (int k = 0; k < K_COUNT; k++)
		free(all[k].v);
	free(total.v);
	free(args);
	free(th);
	pthread_mutex_destroy(&sh.mu);
	pthread_cond_destroy(&sh.cv);
	return errors || failed ? 1 : 0;
}

/* --- idle ----------------------------------------------------------------- */

static int cmd_idle(int argc, char **argv)
{
	unsigned count = (unsigned)opt_num(argc, argv, "--count", -1, 1, MAX_CLIENTS);
	unsigned users = (unsigned)opt_num(argc, argv, "--users", count, 1, MAX_CLIENTS);
	struct conn *cs = calloc(count, sizeof(*cs));
	unsigned ready = 0;
	char buf[256];
	int rc = 0;

	if (cs == NULL)
		return 1;
	for (unsigned i = 0; i < count; i++) {
		if (conn_open(&cs[i]) < 0 || conn_login(&cs[i], i % users) < 0 ||
		    conn_select(&cs[i]) < 0) {
			fprintf(stderr, "imap_load: idle: connection %u: %s\n", i, cs[i].err);
			conn_close(&cs[i]);
			rc = 1;
			break;
		}
		/* keep only the socket: an idle client holds little memory here */
		free(cs[i].resp.p);
		free(cs[i].untagged.p);
		free(cs[i].out.p);
		memset(&cs[i].resp, 0, sizeof(cs[i].resp));
		memset(&cs[i].untagged, 0, sizeof(cs[i].untagged));
		memset(&cs[i].out, 0, sizeof(cs[i].out));
		ready++;
	}
	printf("ready %u\n", ready);
	fflush(stdout);
	while (fgets(buf, sizeof(buf), stdin) != NULL)
		;
	for (unsigned i = 0; i < ready; i++)
		conn_close(&cs[i]);
	free(cs);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	parse_common(argc, argv);
	raise_nofile();
	if (strcmp(argv[1], "fill") == 0)
		return cmd_fill(argc, argv);
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc, argv);
	if (strcmp(argv[1], "idle") == 0)
		return cmd_idle(argc, argv);
	fprintf(stderr, "imap_load: unknown command %s\n", argv[1]);
	usage();
	return 2;
}
