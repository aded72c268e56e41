/*
 * tests/tools/pp_peer.c -- a PROXY protocol peer for interop tests (HAProxy).
 *
 *   pp_peer recv --listen HOST:PORT [--count N] [--max SIZE] [--chunk N]
 *	accepts connections one at a time and reads each one's PROXY header
 *	incrementally: at most --chunk bytes per recv(2) (default 4096), with
 *	pp_decode after each.  Prints one line per connection on stdout,
 *	  src=IP:PORT dst=IP:PORT version=V local=L [crc32c=1] [unique_id=HEX]
 *	      [authority=TEXT] [alpn=TEXT]
 *	or error=NAME (a pp_status_name, "eof" or "timeout"), then answers
 *	"OK\r\n" (or "ERR NAME\r\n") and closes.  For LOCAL/UNKNOWN the
 *	addresses printed are the socket's own, as a server would use them.
 *	Prints "listening HOST:PORT" on stderr once it accepts; stops after
 *	N connections (default: runs until killed).
 *   pp_peer send --connect HOST:PORT --src IP:PORT --dst IP:PORT [--v1]
 *		[--local] [--crc] [--corrupt-crc] [--unique-id TEXT]
 *		[--authority TEXT] [--alpn TEXT] [--data TEXT]
 *	connects, writes the header (pp_encode_v2, or pp_encode_v1 with --v1)
 *	and TEXT in one write, then copies whatever the server answers to
 *	stdout until it closes (10 s timeout).  --corrupt-crc flips a bit of
 *	the CRC32C value (the encoder writes that TLV last) to check that a
 *	receiver really verifies it.
 *
 * A test tool: plain blocking sockets, usage errors exit 2, failures 1.
 */
#include "shared/net.h"
#include "shared/pp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 10

static void usage(void)
{
	fprintf(stderr,
	        "usage: pp_peer recv --listen HOST:PORT [--count N] [--max SIZE] "
	        "[--chunk N]\n"
	        "       pp_peer send --connect HOST:PORT --src IP:PORT --dst IP:PORT [--v1] "
	        "[--local]\n"
	        "                    [--crc] [--corrupt-crc] [--unique-id TEXT] "
	        "[--authority TEXT]\n"
	        "                    [--alpn TEXT] [--data TEXT]\n");
	exit(2);
}

static void parse_addr(const char *opt, const char *s, struct net_addr *a)
{
	const char *err = NULL;

	if (s == NULL || net_addr_parse_hostport(s, a, &err) != 0) {
		fprintf(stderr, "pp_peer: %s %s: %s\n", opt, s ? s : "(missing)",
		        err ? err : "bad address");
		exit(2);
	}
}

static void set_timeouts(int fd)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Print bytes as text, escaping anything outside printable ASCII and the
 * characters that would break "key=value" parsing. */
static void print_text(const char *key, const void *p, size_t n)
{
	const uint8_t *b = p;

	printf(" %s=", key);
	for (size_t i = 0; i < n; i++) {
		if (b[i] > 0x20 && b[i] < 0x7f && b[i] != '\\' && b[i] != '=')
			putchar(b[i]);
		else
			printf("\\x%02x", b[i]);
	}
}

static void print_result(int fd, const struct pp_info *info)
{
	char s[NET_ADDRSTRLEN], d[NET_ADDRSTRLEN];
	struct sockaddr_storage ss;
	socklen_t sl;
	struct net_addr peer, self;

	if (info->family == AF_UNIX) {
		printf("src=unix:%s dst=unix:%s", info->unix_src, info->unix_dst);
	} else if (info->local) {
		/* spec 2.2 / 2.1: use the real connection endpoints */
		sl = sizeof(ss);
		getpeername(fd, (struct sockaddr *)&ss, &sl);
		net_addr_from_sockaddr(&peer, (struct sockaddr *)&ss, sl);
		sl = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		net_addr_from_sockaddr(&self, (struct sockaddr *)&ss, sl);
		printf("src=%s dst=%s", net_addr_str(&peer, s, sizeof(s)),
		       net_addr_str(&self, d, sizeof(d)));
	} else {
		printf("src=%s dst=%s", net_addr_str(&info->src, s, sizeof(s)),
		       net_addr_str(&info->dst, d, sizeof(d)));
	}
	printf(" version=%d local=%d", info->version, info->local ? 1 : 0);
	if (info->has_crc32c)
		printf(" crc32c=1");
	if (info->has_unique_id) {
		printf(" unique_id=");
		for (size_t i = 0; i < info->unique_id_len; i++)
			printf("%02x", info->unique_id[i]);
	}
	if (info->authority.present)
		print_text("authority", info->authority.v, info->authority.len);
	if (info->alpn.present)
		print_text("alpn", info->alpn.v, info->alpn.len);
	printf("\n");
}

/* Read and decode one connection's header; print the line; answer. */
static void serve_one(int fd, size_t max, size_t chunk)
{
	uint8_t buf[4096];
	size_t len = 0, consumed = 0;
	struct pp_info info;
	enum pp_status st = PP_NEED_MORE;
	const char *err = NULL;
	char reply[64];

	set_timeouts(fd);
	while (st == PP_NEED_MORE) {
		size_t want = sizeof(buf) - len;
		if (want == 0) {
			err = pp_status_name(PP_ERR_TOO_BIG);
			break;
		}
		if (want > chunk)
			want = chunk;
		ssize_t n = recv(fd, buf + len, want, 0);
		if (n == 0) {
			err = "eof";
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno == EAGAIN || errno == EWOULDBLOCK ? "timeout" : "recv";
			break;
		}
		len += (size_t)n;
		st = pp_decode(buf, len, max, &info, &consumed);
	}
	if (err == NULL && st != PP_OK)
		err = pp_status_name(st);
	if (err != NULL) {
		printf("error=%s\n", err);
		snprintf(reply, sizeof(reply), "ERR %s\r\n", err);
	} else {
		print_result(fd, &info);
		snprintf(reply, sizeof(reply), "OK\r\n");
	}
	fflush(stdout);
	(void)send(fd, reply, strlen(reply), MSG_NOSIGNAL);
}

static int cmd_recv(int argc, char **argv)
{
	struct net_addr listen_addr;
	const char *listen_s = NULL;
	long count = -1;
	size_t max = 0, chunk = 4096;
	int one = 1, lfd = -1, ret = 1;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen_s = argv[++i];
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc)
			chunk = strtoul(argv[++i], NULL, 10);
		else
			usage();
	}
	if (listen_s == NULL || chunk == 0)
		usage();
	parse_addr("--listen", listen_s, &listen_addr);

	lfd = socket(net_addr_family(&listen_addr), SOCK_STREAM, 0);
	if (lfd < 0)
		goto fail;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (net_addr_family(&listen_addr) == AF_INET6)
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(lfd, &listen_addr.u.sa, listen_addr.len) != 0 || listen(lfd, 16) != 0)
		goto fail;
	fprintf(stderr, "listening %s\n", listen_s);
	fflush(stderr);
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (long served = 0; count < 0 || served < count; served++) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		serve_one(fd, max, chunk);
		close(fd);
	}
	ret = 0;
fail:
	if (ret != 0)
		fprintf(stderr, "pp_peer recv: %s\n", strerror(errno));
	if (lfd >= 0)
		close(lfd);
	return ret;
}

static int cmd_send(int argc, char **argv)
{
	struct net_addr to, src, dst;
	const char *to_s = NULL, *src_s = NULL, *dst_s = NULL, *data = "";
	const char *uid = NULL;
	bool v1 = false, corrupt = false;
	struct pp_encode e = {0};
	uint8_t out[PP_DEFAULT_MAX_SIZE + 4096];
	size_t n;
	int fd = -1, ret = 1;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc)
			to_s = argv[++i];
		else if (strcmp(argv[i], "--src") == 0 && i + 1 < argc)
			src_s = argv[++i];
		else if (strcmp(argv[i], "--dst") == 0 && i + 1 < argc)
			dst_s = argv[++i];
		else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
			data = argv[++i];
		else if (strcmp(argv[i], "--unique-id") == 0 && i + 1 < argc)
			uid = argv[++i];
		else if (strcmp(argv[i], "--authority") == 0 && i + 1 < argc)
			e.authority = argv[++i];
		else if (strcmp(argv[i], "--alpn") == 0 && i + 1 < argc)
			e.alpn = argv[++i];
		else if (strcmp(argv[i], "--v1") == 0)
			v1 = true;
		else if (strcmp(argv[i], "--local") == 0)
			e.local = true;
		else if (strcmp(argv[i], "--crc") == 0)
			e.crc32c = true;
		else if (strcmp(argv[i], "--corrupt-crc") == 0)
			corrupt = e.crc32c = true;
		else
			usage();
	}
	if (to_s == NULL || (!e.local && (src_s == NULL || dst_s == NULL)))
		usage();
	parse_addr("--connect", to_s, &to);
	if (!e.local) {
		parse_addr("--src", src_s, &src);
		parse_addr("--dst", dst_s, &dst);
		e.src = &src;
		e.dst = &dst;
	}
	if (uid != NULL) {
		e.unique_id = (const uint8_t *)uid;
		e.unique_id_len = strlen(uid);
	}
	n = v1 ? pp_encode_v1((char *)out, sizeof(out), &e) : pp_encode_v2(out, sizeof(out), &e);
	if (n == 0) {
		fprintf(stderr, "pp_peer send: cannot encode this header\n");
		goto fail;
	}
	if (corrupt && !v1)
		out[n - 1] ^= 0x01;
	size_t dlen = strlen(data);
	if (dlen > sizeof(out) - n) {
		fprintf(stderr, "pp_peer send: --data too long\n");
		goto fail;
	}
	memcpy(out + n, data, dlen);
	n += dlen;

	fd = socket(net_addr_family(&to), SOCK_STREAM, 0);
	if (fd < 0)
		goto fail_errno;
	set_timeouts(fd);
	if (connect(fd, &to.u.sa, to.len) != 0)
		goto fail_errno;
	for (size_t off = 0; off < n;) {
		ssize_t w = send(fd, out + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail_errno;
		off += (size_t)w;
	}
	for (;;) {
		char rbuf[4096];
		ssize_t r = recv(fd, rbuf, sizeof(rbuf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			break;
		if (r < 0)
			goto fail_errno;
		fwrite(rbuf, 1, (size_t)r, stdout);
	}
	fflush(stdout);
	ret = 0;
	goto done;
fail_errno:
	fprintf(stderr, "pp_peer send: %s: %s\n", to_s, strerror(errno));
fail:
	ret = 1;
done:
	if (fd >= 0)
		close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "recv") == 0)
		return cmd_recv(argc, argv);
	if (strcmp(argv[1], "send") == 0)
		return cmd_send(argc, argv);
	usage();
	return 2;
}
