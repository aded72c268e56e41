/*
 * mailbox/http/parser.h -- a pure, bounded, incremental HTTP/1.1 request
 * parser (RFC 9112 message syntax, RFC 9110 semantics we rely on).
 *
 * Bytes in, a status and bytes consumed out; no sockets, no clock, no
 * logging.  The parser copies what it keeps (the head into a buffer of at
 * most max_header bytes, the body into one of at most max_body bytes), so
 * the caller may feed any split of the stream and discard what was
 * consumed.  It never consumes past the end of one request: bytes of a
 * pipelined next request stay with the caller.
 *
 * What is accepted, and the status an error maps to:
 *   request-line   method SP origin-form SP HTTP/1.x CRLF; "*" only with
 *                  OPTIONS; one leading empty line is ignored (RFC 9112
 *                  2.2).  Bad syntax 400, a version other than 1.0/1.1
 *                  505 (RFC 9110 15.6.6).
 *   header fields  token ":" OWS value OWS CRLF; no space before the colon
 *                  (RFC 9112 5.1), no obsolete line folding (5.2), no
 *                  control bytes in values.  400.
 *   bounds         request line + headers > max_header, or more than
 *                  HTTP_MAX_HEADERS fields: 431 (RFC 6585 5).
 *   body           Content-Length only: digits, one value (repeated equal
 *                  values are fine, different ones are 400, RFC 9112
 *                  6.3); larger than max_body: 413.  Transfer-Encoding
 *                  (chunked request bodies) is not implemented: 501, and
 *                  400 together with Content-Length (a smuggling sign,
 *                  RFC 9112 6.1).
 *   Host           HTTP/1.1 needs exactly one (RFC 9112 3.2): else 400.
 * Bare LF or CR line endings are refused (400): we only talk to curl and
 * scripts, and strict framing leaves nothing to disagree about.
 */
#ifndef MAILBOX_HTTP_PARSER_H
#define MAILBOX_HTTP_PARSER_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

enum http_status {
	HTTP_NEED_MORE = 0, /* everything given was consumed; feed more */
	HTTP_DONE,          /* one request is complete: http_parser_request() */
	HTTP_ERROR,         /* p->error_code / p->error_reason; the connection must close */
};

enum http_method {
	HTTP_M_OTHER = 0,
	HTTP_M_GET,
	HTTP_M_HEAD,
	HTTP_M_POST,
	HTTP_M_PUT,
	HTTP_M_PATCH,
	HTTP_M_DELETE,
	HTTP_M_OPTIONS,
};

struct http_header {
	const char *name;  /* as received; compare case-insensitively */
	const char *value; /* OWS trimmed */
};

struct http_request {
	enum http_method method;
	const char *method_str;
	const char *target; /* request-target as received */
	const char *path;   /* target up to '?', still percent-encoded */
	const char *query;  /* after '?', or "" */
	int minor;          /* HTTP/1.<minor> */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t nheaders;
	uint64_t content_length;
	bool keep_alive;      /* after this response (Connection, version) */
	bool expect_continue; /* "Expect: 100-continue" (RFC 9110 10.1.1) */
	const uint8_t *body;  /* content_length bytes (NULL when 0) */
};

enum http_pstate {
	HTTP_PS_HEAD = 0,
	HTTP_PS_BODY,
	HTTP_PS_DONE,
	HTTP_PS_ERROR,
};

struct http_parser {
	enum http_pstate state;
	size_t max_header;
	size_t max_body;
	char *head;      /* 2 * max_header + 2 bytes, allocated on first use */
	size_t head_len; /* head bytes received */
	struct buf body;
	unsigned crlf;    /* progress through "\r\n\r\n" */
	unsigned leading; /* 0, 1: a leading CR seen, 2: one empty line skipped */
	bool head_done;   /* the head is parsed (a 100 Continue may be sent) */
	struct http_request req;
	int error_code;           /* 400, 413, 431, 501, 505 */
	const char *error_reason; /* static, for the log and the error body */
};

/* Prepare p with the bounds (max_header >= 64). */
void http_parser_init(struct http_parser *p, size_t max_header, size_t max_body);
/* Forget the current request (after HTTP_DONE) and get ready for the next
 * one on the same connection; the buffers are kept. */
void http_parser_reset(struct http_parser *p);
/* Release the buffers; p may be initialised again. */
void http_parser_free(struct http_parser *p);

/*
 * Feed len bytes.  *consumed_r is how many were used: all of them on
 * HTTP_NEED_MORE, up to the end of the request on HTTP_DONE (the rest
 * belongs to the next request), unspecified on HTTP_ERROR.  After
 * HTTP_DONE or HTTP_ERROR further calls return the same status and
 * consume nothing until http_parser_reset().
 */
enum http_status http_parser_feed(struct http_parser *p, const uint8_t *data, size_t len,
                                  size_t *consumed_r);

/* The parsed request: valid after HTTP_DONE (and its head already when
 * p->head_done), until reset or free. */
const struct http_request *http_parser_request(const struct http_parser *p);

/* A header's value by name (case-insensitive), the first if repeated;
 * NULL when absent. */
const char *http_parser_header(const struct http_request *r, const char *name);

/*
 * Percent-decode s[0..len) into out (outsz bytes, NUL-terminated).
 * Refuses (returns -1) a malformed escape, a decoded NUL, or output that
 * does not fit; '+' stays '+' (it is only a space in forms).  Returns the
 * decoded length.  Pure.
 */
int http_parser_pct_decode(const char *s, size_t len, char *out, size_t outsz);

/* The reason phrase of a status code ("Not Found"); "Unknown" if we never
 * send it. */
const char *http_parser_reason(int code);

#endif
