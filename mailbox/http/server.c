/*
 * mailbox/http/server.c -- the `http` role on the connection layer (see
 * server.h).
 *
 * One request at a time: when a request is complete the parser stops
 * consuming (it never takes bytes of the next one), the answer is either
 * written at once (health, metrics, errors) or, for the API, the
 * connection's input is paused until the worker's result comes back.  The
 * next request is parsed after the answer is queued.  Errors of the
 * request syntax end the connection after the answer, since the framing
 * of what follows cannot be trusted (RFC 9112 9.6 lets us close).
 */
#include "mailbox/http/server.h"

#include "mailbox/http/api.h"
#include "mailbox/http/parser.h"
#include "mailbox/server/metrics.h"
#include "mailbox/server/server.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct http_conn {
	struct conn *c;
	struct http_parser parser;
	struct api_call *call; /* API request in flight */
	bool continue_sent;
	bool keep_alive;
	char method[16];
	char path[128];
	unsigned requests;
};

static void log_request(struct http_conn *h, int status, size_t len)
{
	char q[160];

	log_info("msg=\"http\" cid=%s listener=%s client=%s method=%s path=%s status=%d bytes=%zu",
	         conn_id(h->c), conn_listener_name(h->c), conn_client_ip(h->c), h->method,
	         log_quote(q, sizeof(q), h->path), status, len);
}

/* Queue a complete response; close after it unless keep-alive. */
static void respond(struct http_conn *h, int status, const char *ctype, const char *body,
                    size_t len, const char *extra)
{
	bool head = strcmp(h->method, "HEAD") == 0;

	metrics_http_response(status);
	log_request(h, status, len);
	conn_printf(h->c,
	            "HTTP/1.1 %d %s\r\n"
	            "Content-Type: %s\r\n"
	            "Content-Length: %zu\r\n"
	            "Cache-Control: no-store\r\n"
	            "%s%s\r\n",
	            status, http_parser_reason(status), ctype, status == 204 ? (size_t)0 : len,
	            extra != NULL ? extra : "", h->keep_alive ? "" : "Connection: close\r\n");
	if (!head && status != 204 && len > 0)
		conn_write(h->c, body, len);
	if (!h->keep_alive)
		conn_close(h->c, CONN_CLOSE_DONE);
}

static void respond_text(struct http_conn *h, int status, const char *text)
{
	respond(h, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

/* The head holds the Authorization header and the body may hold a
 * password: wipe both before the buffers are reused or freed. */
static void wipe(struct http_conn *h)
{
	if (h->parser.head != NULL)
		OPENSSL_cleanse(h->parser.head, h->parser.head_len);
	if (h->parser.body.data != NULL && h->parser.body.cap > 0)
		OPENSSL_cleanse(h->parser.body.data, h->parser.body.cap);
}

/* After a response: get ready for the next request. */
static void next_request(struct http_conn *h)
{
	wipe(h);
	http_parser_reset(&h->parser);
	h->continue_sent = false;
}

static void on_api_done(void *arg, int status, const char *ctype, const char *body, size_t len,
                        const char *extra)
{
	struct http_conn *h = arg;

	h->call = NULL;
	respond(h, status, ctype != NULL ? ctype : "application/json", body, len, extra);
	next_request(h);
	conn_pause_read(h->c, false);
}

static void route(struct http_conn *h, const struct http_request *r)
{
	struct server *s = conn_server(h->c);
	bool get = r->method == HTTP_M_GET || r->method == HTTP_M_HEAD;

	if (strcmp(r->path, "/api/v1") == 0 || strncmp(r->path, "/api/v1/", 8) == 0) {
		struct api_client cl = {
		        .listener = conn_listener_name(h->c),
		        .ip = conn_client_ip(h->c),
		        .addr = *conn_client(h->c),
		        .no_client = conn_no_client(h->c),
		};
		conn_pause_read(h->c, true);
		h->call = api_start(s, r, &cl, on_api_done, h);
		return;
	}
	if (strcmp(r->path, "/healthz") == 0) {
		if (!get)
			goto not_allowed;
		respond_text(h, 200, "ok\n");
	} else if (strcmp(r->path, "/readyz") == 0) {
		const char *why = NULL;
		char msg[600];

		if (!get)
			goto not_allowed;
		if (server_ready(s, &why)) {
			respond_text(h, 200, "ready\n");
		} else {
			snprintf(msg, sizeof(msg), "not ready: %s\n", why != NULL ? why : "?");
			respond_text(h, 503, msg);
		}
	} else if (strcmp(r->path, "/metrics") == 0) {
		struct buf b;

		if (!get)
			goto not_allowed;
		buf_init(&b, 0);
		metrics_render(&b, server_pg(s), server_blob(s), server_mem(s), server_outbound(s));
		respond(h, 200, "text/plain; version=0.0.4; charset=utf-8",
		        (const char *)buf_ptr(&b), buf_len(&b), NULL);
		buf_free(&b);
	} else {
		respond_text(h, 404, "not found\n");
	}
	next_request(h);
	return;
not_allowed:
	respond(h, 405, "text/plain; charset=utf-8", "method not allowed\n", 19,
	        "Allow: GET, HEAD\r\n");
	next_request(h);
}

static ssize_t http_input(struct conn *c, const uint8_t *p, size_t n)
{
	struct http_conn *h = conn_data(c);
	size_t used = 0;
	enum http_status st;

	if (h->call != NULL)
		return 0; /* answering the previous request */
	st = http_parser_feed(&h->parser, p, n, &used);
	/* slowloris: a started request must finish within the command timeout */
	conn_set_partial(c,
	                 st == HTTP_NEED_MORE && (h->parser.head_len > 0 || h->parser.head_done));
	if (st == HTTP_NEED_MORE) {
		const struct http_request *r = http_parser_request(&h->parser);
		/* RFC 9110 10.1.1: tell the client to send the body. */
		if (h->parser.head_done && r->expect_continue && r->minor == 1 &&
		    !h->continue_sent) {
			h->continue_sent = true;
			conn_printf(c, "HTTP/1.1 100 Continue\r\n\r\n");
		}
		return (ssize_t)used;
	}
	if (st == HTTP_ERROR) {
		snprintf(h->method, sizeof(h->method), "-");
		snprintf(h->path, sizeof(h->path), "-");
		h->keep_alive = false;
		log_info("msg=\"bad http request\" cid=%s client=%s reason=\"%s\"", conn_id(c),
		         conn_client_ip(c), h->parser.error_reason);
		{
			char body[160];
			snprintf(body, sizeof(body), "%s\n", h->parser.error_reason);
			respond_text(h, h->parser.error_code, body);
		}
		return (ssize_t)n;
	}
	{
		const struct http_request *r = http_parser_request(&h->parser);
		h->requests++;
		h->keep_alive = r->keep_alive && !server_draining(conn_server(c));
		snprintf(h->method, sizeof(h->method), "%s", r->method_str);
		snprintf(h->path, sizeof(h->path), "%s", r->path);
		route(h, r);
	}
	return (ssize_t)used;
}

static int http_open(struct conn *c)
{
	struct http_conn *h = xcalloc(1, sizeof(*h));
	const struct mailbox_config *cfg = server_config(conn_server(c));

	h->c = c;
	http_parser_init(&h->parser, (size_t)cfg->limits.http_max_header,
	                 (size_t)cfg->limits.http_max_body);
	conn_set_data(c, h);
	return 0;
}

static void http_timeout(struct conn *c)
{
	struct http_conn *h = conn_data(c);

	/* RFC 9110 15.5.9: 408 for a request that did not complete; an idle
	 * keep-alive connection is just closed. */
	if (h->call == NULL && (h->parser.head_len > 0 || h->parser.head_done)) {
		h->keep_alive = false;
		snprintf(h->method, sizeof(h->method), "-");
		snprintf(h->path, sizeof(h->path), "-");
		respond_text(h, 408, "request timeout\n");
	}
	conn_close(c, CONN_CLOSE_TIMEOUT);
}

static void http_shutdown(struct conn *c)
{
	struct http_conn *h = conn_data(c);

	/* A request being answered finishes (with Connection: close); an
	 * idle keep-alive connection closes now. */
	if (h->call != NULL)
		h->keep_alive = false;
	else
		conn_close(c, CONN_CLOSE_SHUTDOWN);
}

static void http_close(struct conn *c, enum conn_close_reason reason)
{
	struct http_conn *h = conn_data(c);

	(void)reason;
	if (h == NULL)
		return;
	api_call_cancel(&h->call);
	wipe(h);
	http_parser_free(&h->parser);
	free(h);
	conn_set_data(c, NULL);
}

const struct conn_proto http_server_proto = {
        .name = "http",
        .on_open = http_open,
        .on_input = http_input,
        .on_timeout = http_timeout,
        .on_shutdown = http_shutdown,
        .on_close = http_close,
};
