/*
 * mailbox/http/parser.c -- the HTTP/1.1 request parser (see parser.h).
 *
 * Two phases.  HEAD: bytes are copied into p->head while a four-state
 * matcher looks for the CRLF CRLF that ends the header section; the copy
 * stops exactly there, so nothing of the body or of a next request is
 * taken.  Only then is the head parsed, in place: line ends become NULs and
 * the header array points into the buffer, which is why the buffer never
 * moves afterwards.  BODY: Content-Length bytes are copied into p->body.
 *
 * Scanning only the new bytes keeps the work linear in the input however
 * it is split, and the bounds are checked before anything is copied.
 */
#include "mailbox/http/parser.h"

#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LEADING_MAX 2 /* RFC 9112 2.2: ignore at least one empty line (CRLF) */

void http_parser_init(struct http_parser *p, size_t max_header, size_t max_body)
{
	memset(p, 0, sizeof(*p));
	p->max_header = max_header < 64 ? 64 : max_header;
	p->max_body = max_body;
	buf_init(&p->body, max_body == 0 ? 1 : max_body);
}

void http_parser_reset(struct http_parser *p)
{
	p->head_len = 0;
	buf_reset(&p->body);
	p->state = HTTP_PS_HEAD;
	p->crlf = 0;
	p->leading = 0;
	p->head_done = false;
	memset(&p->req, 0, sizeof(p->req));
	p->error_code = 0;
	p->error_reason = NULL;
}

void http_parser_free(struct http_parser *p)
{
	free(p->head);
	buf_free(&p->body);
	memset(p, 0, sizeof(*p));
}

const struct http_request *http_parser_request(const struct http_parser *p)
{
	return &p->req;
}

static enum http_status fail(struct http_parser *p, int code, const char *reason)
{
	p->state = HTTP_PS_ERROR;
	p->error_code = code;
	p->error_reason = reason;
	return HTTP_ERROR;
}

/* RFC 9110 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 3986 pchar plus '/' and '?': what an origin-form target may hold. */
static bool is_target_char(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("-._~!$&'()*+,;=:@/?%", c) != NULL;
}

static bool token_eq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

static const struct {
	const char *name;
	enum http_method m;
} methods[] = {
        {"GET", HTTP_M_GET},         {"HEAD", HTTP_M_HEAD},   {"POST", HTTP_M_POST},
        {"PUT", HTTP_M_PUT},         {"PATCH", HTTP_M_PATCH}, {"DELETE", HTTP_M_DELETE},
        {"OPTIONS", HTTP_M_OPTIONS},
};

/* Does the comma-separated list v hold token t (case-insensitive)? */
static bool list_has(const char *v, const char *t)
{
	size_t tl = strlen(t);

	while (*v != '\0') {
		const char *e;
		size_t n;

		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		e = v;
		while (*e != '\0' && *e != ',')
			e++;
		n = (size_t)(e - v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(v, t, tl) == 0)
			return true;
		v = e;
	}
	return false;
}

static int parse_request_line(struct http_parser *p, char *line)
{
	struct http_request *r = &p->req;
	char *sp1, *sp2, *q;

	sp1 = strchr(line, ' ');
	if (sp1 == NULL || sp1 == line)
		return fail(p, 400, "malformed request line"), -1;
	*sp1 = '\0';
	for (char *c = line; *c != '\0'; c++) {
		if (!is_tchar((unsigned char)*c))
			return fail(p, 400, "malformed method"), -1;
	}
	r->method_str = line;
	r->method = HTTP_M_OTHER;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strcmp(line, methods[i].name) == 0)
			r->method = methods[i].m;
	}
	r->target = sp1 + 1;
	sp2 = strchr(r->target, ' ');
	if (sp2 == NULL || sp2 == r->target)
		return fail(p, 400, "malformed request line"), -1;
	*sp2 = '\0';
	for (const char *c = r->target; *c != '\0'; c++) {
		if (!is_target_char((unsigned char)*c))
			return fail(p, 400, "invalid character in request target"), -1;
	}
	if (strcmp(r->target, "*") == 0) {
		if (r->method != HTTP_M_OPTIONS)
			return fail(p, 400, "asterisk-form only with OPTIONS"), -1;
	} else if (r->target[0] != '/') {
		/* absolute-form is for proxies (RFC 9112 3.2.2); we are not one */
		return fail(p, 400, "request target must be origin-form"), -1;
	}
	/* RFC 9112 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT */
	q = sp2 + 1;
	if (strlen(q) != 8 || strncmp(q, "HTTP/", 5) != 0 || q[5] < '0' || q[5] > '9' ||
	    q[6] != '.' || q[7] < '0' || q[7] > '9')
		return fail(p, 400, "malformed HTTP version"), -1;
	if (q[5] != '1')
		return fail(p, 505, "only HTTP/1.x is supported"), -1;
	r->minor = q[7] - '0';
	if (r->minor > 1)
		r->minor = 1; /* RFC 9110 6.2: a higher minor is answered as 1.1 */
	return 0;
}

/* Parse the head in p->head (ends with CRLF CRLF); 0 or -1 (failed). */
static int parse_head(struct http_parser *p)
{
	struct http_request *r = &p->req;
	char *s, *line, *eol;
	const char *cl = NULL, *te = NULL, *conn = NULL;
	size_t nhost = 0;
	char *path_copy;
	size_t tlen;

	/* The buffer holds 2 * max_header + 2 bytes: the head (at most
	 * max_header), its NUL, and a copy of the target for the path view. */
	s = p->head;
	s[p->head_len] = '\0';
	if (memchr(s, '\0', p->head_len) != NULL)
		return fail(p, 400, "NUL in header"), -1;
	/* Every CR must start a CRLF and every LF end one. */
	for (size_t i = 0; i < p->head_len; i++) {
		if (s[i] == '\r' && s[i + 1] != '\n')
			return fail(p, 400, "bare CR in header"), -1;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return fail(p, 400, "bare LF in header"), -1;
	}
	line = s;
	eol = strstr(line, "\r\n");
	*eol = '\0';
	if (parse_request_line(p, line) < 0)
		return -1;
	line = eol + 2;
	while (*line != '\0' && !(line[0] == '\r' && line[1] == '\n')) {
		char *colon, *v, *e;

		eol = strstr(line, "\r\n");
		*eol = '\0';
		if (line[0] == ' ' || line[0] == '\t')
			return fail(p, 400, "obsolete line folding"), -1;
		colon = strchr(line, ':');
		if (colon == NULL || colon == line)
			return fail(p, 400, "malformed header field"), -1;
		for (char *c = line; c < colon; c++) {
			if (!is_tchar((unsigned char)*c))
				return fail(p, 400, "malformed header field name"), -1;
		}
		*colon = '\0';
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
		for (const char *c = v; *c != '\0'; c++) {
			unsigned char ch = (unsigned char)*c;
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return fail(p, 400, "control character in header value"), -1;
		}
		if (r->nheaders == HTTP_MAX_HEADERS)
			return fail(p, 431, "too many header fields"), -1;
		r->headers[r->nheaders].name = line;
		r->headers[r->nheaders].value = v;
		r->nheaders++;
		if (token_eq(line, "content-length")) {
			if (cl != NULL && strcmp(cl, v) != 0)
				return fail(p, 400, "conflicting Content-Length"), -1;
			cl = v;
		} else if (token_eq(line, "transfer-encoding")) {
			te = v;
		} else if (token_eq(line, "connection")) {
			conn = v;
		} else if (token_eq(line, "host")) {
			nhost++;
		} else if (token_eq(line, "expect")) {
			if (token_eq(v, "100-continue"))
				r->expect_continue = true;
		}
		line = eol + 2;
	}
	if (r->minor == 1 && nhost != 1)
		return fail(p, 400, nhost == 0 ? "missing Host" : "more than one Host"), -1;
	if (te != NULL) {
		if (cl != NULL)
			return fail(p, 400, "both Transfer-Encoding and Content-Length"), -1;
		return fail(p, 501, "request Transfer-Encoding is not supported"), -1;
	}
	r->content_length = 0;
	if (cl != NULL) {
		uint64_t n = 0;
		if (*cl == '\0')
			return fail(p, 400, "malformed Content-Length"), -1;
		for (const char *c = cl; *c != '\0'; c++) {
			if (*c < '0' || *c > '9')
				return fail(p, 400, "malformed Content-Length"), -1;
			if (n > (UINT64_MAX - 9) / 10)
				return fail(p, 413, "request body too large"), -1;
			n = n * 10 + (uint64_t)(*c - '0');
		}
		if (n > p->max_body)
			return fail(p, 413, "request body too large"), -1;
		r->content_length = n;
	}
	/* RFC 9112 9.3: 1.1 persists unless "close"; 1.0 only with keep-alive. */
	if (r->minor == 0)
		r->keep_alive = conn != NULL && list_has(conn, "keep-alive");
	else
		r->keep_alive = !(conn != NULL && list_has(conn, "close"));
	/* The path view is a copy of the target cut at '?', so the target
	 * stays whole for the log. */
	tlen = strlen(r->target);
	r->query = "";
	path_copy = p->head + p->head_len + 1;
	memcpy(path_copy, r->target, tlen + 1);
	{
		char *q = strchr(path_copy, '?');
		if (q != NULL) {
			*q = '\0';
			r->query = r->target + (q - path_copy) + 1;
		}
		r->path = path_copy;
	}
	return 0;
}

enum http_status http_parser_feed(struct http_parser *p, const uint8_t *data, size_t len,
                                  size_t *consumed_r)
{
	size_t i = 0;

	*consumed_r = 0;
	if (p->state == HTTP_PS_DONE)
		return HTTP_DONE;
	if (p->state == HTTP_PS_ERROR)
		return HTTP_ERROR;
	if (p->state == HTTP_PS_HEAD) {
		size_t start;
		bool end = false;

		/* RFC 9112 2.2: ignore one empty line before the request line. */
		while (i < len && p->head_len == 0 && p->leading < 2) {
			if (p->leading == 0 && data[i] == '\r')
				p->leading = 1;
			else if (p->leading == 1 && data[i] == '\n')
				p->leading = 2;
			else if (p->leading == 1)
				return fail(p, 400, "bare CR before the request");
			else
				break;
			i++;
		}
		start = i;
		for (; i < len && p->leading != 1; i++) {
			uint8_t c = data[i];
			/* Checked byte by byte, in stream order, so the verdict does
			 * not depend on how the input was split. */
			if (p->head_len + (i - start) >= p->max_header)
				return fail(p, 431, "request header too large");
			/* progress through CRLF CRLF: 1 "\r", 2 "\r\n", 3 "\r\n\r" */
			bool after_cr = p->crlf == 1 || p->crlf == 3;
			/* Refuse a bare CR or LF at once rather than waiting for
			 * a CRLF CRLF that may never come. */
			if (after_cr && c != '\n')
				return fail(p, 400, "bare CR in header");
			if (c == '\n' && !after_cr)
				return fail(p, 400, "bare LF in header");
			if (c == '\r')
				p->crlf = (p->crlf == 2) ? 3 : 1;
			else if (c == '\n')
				p->crlf = p->crlf == 3 ? 4 : 2;
			else
				p->crlf = 0;
			if (p->crlf == 4) {
				i++;
				end = true;
				break;
			}
		}
		if (p->head_len + (i - start) > p->max_header)
			return fail(p, 431, "request header too large");
		if (i > start) {
			if (p->head == NULL)
				p->head = xmalloc(2 * p->max_header + 2);
			memcpy(p->head + p->head_len, data + start, i - start);
			p->head_len += i - start;
		}
		if (!end) {
			*consumed_r = len;
			return HTTP_NEED_MORE;
		}
		if (parse_head(p) < 0)
			return HTTP_ERROR;
		p->head_done = true;
		p->state = HTTP_PS_BODY;
	}
	if (p->state == HTTP_PS_BODY) {
		uint64_t want = p->req.content_length - buf_len(&p->body);
		size_t n = len - i;

		if (n > want)
			n = (size_t)want;
		if (n > 0 && buf_append(&p->body, data + i, n) < 0)
			return fail(p, 413, "request body too large");
		i += n;
		if (buf_len(&p->body) < p->req.content_length) {
			*consumed_r = i;
			return HTTP_NEED_MORE;
		}
		p->req.body = p->req.content_length > 0 ? buf_ptr(&p->body) : NULL;
		p->state = HTTP_PS_DONE;
	}
	*consumed_r = i;
	return HTTP_DONE;
}

const char *http_parser_header(const struct http_request *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++) {
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	}
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int http_parser_pct_decode(const char *s, size_t len, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= len)
				return -1;
			h = hexval(s[i + 1]);
			l = hexval(s[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = (char)(h * 16 + l);
			i += 2;
		}
		if (c == '\0' || o + 1 >= outsz)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (int)o;
}

const char *http_parser_reason(int code)
{
	switch (code) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	}
	return "Unknown";
}
