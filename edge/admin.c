/*
 * edge/admin.c -- the admin HTTP endpoint.
 *
 * RFC 9112 2.2/3: a request line "method SP request-target SP HTTP-version"
 * then header lines, ended by an empty line; we accept a bare LF as a line
 * end too (RFC 9112 2.2 allows recipients to).  Headers are not needed for
 * two GET routes and are skipped, bodies are not read.  Every response
 * closes the connection, so there is no keep-alive state to get wrong.
 */
#include "edge/admin.h"

#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_TIMEOUT 5.0

static bool tchar(char c)
{
	/* RFC 9110 5.6.2 token characters */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

enum edge_admin_parse edge_admin_parse_request(const char *buf, size_t len, char *method,
                                               size_t methodsz, char *path, size_t pathsz)
{
	const char *end = NULL, *eol, *sp1, *sp2, *q;
	size_t linelen, mlen, plen;

	/* Find the end of the head: an empty line. */
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n') {
			end = buf + i + 2;
			break;
		}
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
			end = buf + i + 3;
			break;
		}
	}
	/* The request line can be judged before the head is complete. */
	eol = memchr(buf, '\n', len);
	if (eol == NULL)
		return len > EDGE_ADMIN_REQ_MAX ? EDGE_ADMIN_BAD : EDGE_ADMIN_NEED_MORE;
	linelen = (size_t)(eol - buf);
	if (linelen > 0 && buf[linelen - 1] == '\r')
		linelen--;
	sp1 = memchr(buf, ' ', linelen);
	if (sp1 == NULL || sp1 == buf)
		return EDGE_ADMIN_BAD;
	for (const char *p = buf; p < sp1; p++)
		if (!tchar(*p))
			return EDGE_ADMIN_BAD;
	sp2 = memchr(sp1 + 1, ' ', linelen - (size_t)(sp1 + 1 - buf));
	if (sp2 == NULL || sp2 == sp1 + 1)
		return EDGE_ADMIN_BAD;
	if ((size_t)(buf + linelen - (sp2 + 1)) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return EDGE_ADMIN_BAD;
	for (const char *p = sp1 + 1; p < sp2; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return EDGE_ADMIN_BAD;
	if (sp1[1] != '/')
		return EDGE_ADMIN_BAD;
	if (end == NULL)
		return len > EDGE_ADMIN_REQ_MAX ? EDGE_ADMIN_BAD : EDGE_ADMIN_NEED_MORE;
	if ((size_t)(end - buf) > EDGE_ADMIN_REQ_MAX)
		return EDGE_ADMIN_BAD;
	mlen = (size_t)(sp1 - buf);
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - (sp1 + 1)));
	plen = (size_t)((q != NULL ? q : sp2) - (sp1 + 1));
	if (mlen >= methodsz || plen >= pathsz)
		return EDGE_ADMIN_BAD;
	memcpy(method, buf, mlen);
	method[mlen] = '\0';
	memcpy(path, sp1 + 1, plen);
	path[plen] = '\0';
	return EDGE_ADMIN_OK;
}

/* --- server -------------------------------------------------------------- */

struct admin_client {
	ev_io io;
	ev_timer tmo;
	struct edge_admin *a;
	struct admin_client *prev, *next;
	int fd;
	size_t n;
	char req[EDGE_ADMIN_REQ_MAX + 1];
	struct buf out;
};

struct edge_admin {
	struct ev_loop *loop;
	ev_io lio;
	int lfd;
	char *bind;
	edge_admin_metrics_fn *metrics;
	edge_admin_healthy_fn *healthy;
	void *arg;
	struct admin_client *clients;
};

static void client_free(struct admin_client *c)
{
	struct edge_admin *a = c->a;

	ev_io_stop(a->loop, &c->io);
	ev_timer_stop(a->loop, &c->tmo);
	close(c->fd);
	buf_free(&c->out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
}

static void respond(struct admin_client *c, int status, const char *reason, const char *ctype,
                    const struct buf *body, bool head_only)
{
	size_t blen = body != NULL ? buf_len(body) : 0;

	buf_printf(&c->out,
	           "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	           "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
	           status, reason, ctype, blen);
	if (body != NULL && !head_only)
		buf_append(&c->out, buf_ptr(body), blen);
}

static void client_write(struct admin_client *c)
{
	while (buf_len(&c->out) > 0) {
		ssize_t n = send(c->fd, buf_ptr(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		break;
	}
	client_free(c);
}

static void handle(struct admin_client *c, const char *method, const char *path)
{
	struct edge_admin *a = c->a;
	bool head = strcmp(method, "HEAD") == 0;
	struct buf body;

	buf_init(&body, 0);
	if (strcmp(method, "GET") != 0 && !head) {
		buf_puts(&body, "method not allowed\n");
		respond(c, 405, "Method Not Allowed", "text/plain", &body, false);
	} else if (strcmp(path, "/metrics") == 0) {
		a->metrics(&body, a->arg);
		respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", &body, head);
	} else if (strcmp(path, "/healthz") == 0) {
		bool ok = a->healthy(a->arg);
		buf_puts(&body, ok ? "ok\n" : "draining\n");
		respond(c, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain", &body,
		        head);
	} else {
		buf_puts(&body, "not found\n");
		respond(c, 404, "Not Found", "text/plain", &body, head);
	}
	buf_free(&body);
}

static void client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct admin_client *c = container_of(io, struct admin_client, io);
	char method[16], path[256];
	enum edge_admin_parse st;
	ssize_t n;

	if (revents & EV_WRITE) {
		client_write(c);
		return;
	}
	n = recv(c->fd, c->req + c->n, sizeof(c->req) - 1 - c->n, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_free(c);
		return;
	}
	c->n += (size_t)n;
	st = edge_admin_parse_request(c->req, c->n, method, sizeof(method), path, sizeof(path));
	if (st == EDGE_ADMIN_NEED_MORE && c->n < sizeof(c->req) - 1)
		return;
	if (st == EDGE_ADMIN_OK) {
		handle(c, method, path);
	} else {
		struct buf body;
		buf_init(&body, 0);
		buf_puts(&body, "bad request\n");
		respond(c, 400, "Bad Request", "text/plain", &body, false);
		buf_free(&body);
	}
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(loop, &c->io);
	client_write(c);
}

static void client_tmo_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	client_free(container_of(t, struct admin_client, tmo));
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct edge_admin *a = container_of(io, struct edge_admin, lio);

	(void)revents;
	for (int i = 0; i < 16; i++) {
		struct admin_client *c;
		int fd = loop_accept(a->lfd, NULL);

		if (fd < 0)
			return;
		c = xcalloc(1, sizeof(*c));
		c->a = a;
		c->fd = fd;
		buf_init(&c->out, 0);
		ev_io_init(&c->io, client_cb, fd, EV_READ);
		ev_io_start(loop, &c->io);
		ev_timer_init(&c->tmo, client_tmo_cb, ADMIN_TIMEOUT, 0.0);
		ev_timer_start(loop, &c->tmo);
		c->next = a->clients;
		if (a->clients != NULL)
			a->clients->prev = c;
		a->clients = c;
	}
}

struct edge_admin *edge_admin_start(struct ev_loop *loop, const char *bind,
                                    edge_admin_metrics_fn *metrics, edge_admin_healthy_fn *healthy,
                                    void *arg, char **errmsg_r)
{
	struct edge_admin *a;
	struct net_addr addr;
	const char *err = NULL;
	int fd;

	if (net_addr_parse_hostport(bind, &addr, &err) < 0) {
		*errmsg_r = xasprintf("admin bind '%s': %s", bind, err != NULL ? err : "invalid");
		return NULL;
	}
	fd = loop_listen(&addr, 64, false, &err);
	if (fd < 0) {
		*errmsg_r = xasprintf("admin: %s", err != NULL ? err : strerror(errno));
		return NULL;
	}
	a = xcalloc(1, sizeof(*a));
	a->loop = loop;
	a->lfd = fd;
	a->bind = xstrdup(bind);
	a->metrics = metrics;
	a->healthy = healthy;
	a->arg = arg;
	ev_io_init(&a->lio, accept_cb, fd, EV_READ);
	ev_io_start(loop, &a->lio);
	return a;
}

void edge_admin_stop(struct edge_admin **ap)
{
	struct edge_admin *a = *ap;

	if (a == NULL)
		return;
	while (a->clients != NULL)
		client_free(a->clients);
	ev_io_stop(a->loop, &a->lio);
	close(a->lfd);
	free(a->bind);
	free(a);
	*ap = NULL;
}

const char *edge_admin_bind(const struct edge_admin *a)
{
	return a->bind;
}
