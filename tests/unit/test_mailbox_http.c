/*
 * Unit tests for the HTTP/1.1 request parser (mailbox/http/parser.c):
 * a table of requests, each fed whole, in two pieces split at every
 * offset, and one byte at a time, which must all agree.
 */
#include "tests/unit/unit.h"
#include "mailbox/http/parser.h"

#include <stdio.h>
#include <stdlib.h>

struct outcome {
	enum http_status st;
	size_t consumed; /* total consumed up to DONE/ERROR */
	int code;
	char method[16];
	char path[128];
	char query[64];
	char host[64];
	int minor;
	bool keep_alive, expect;
	uint64_t clen;
	char body[64];
};

static void record(const struct http_parser *p, enum http_status st, size_t total,
                   struct outcome *o)
{
	const struct http_request *r = http_parser_request(p);

	memset(o, 0, sizeof(*o));
	o->st = st;
	o->consumed = total;
	o->code = p->error_code;
	if (st != HTTP_DONE)
		return;
	snprintf(o->method, sizeof(o->method), "%s", r->method_str);
	snprintf(o->path, sizeof(o->path), "%s", r->path);
	snprintf(o->query, sizeof(o->query), "%s", r->query);
	snprintf(o->host, sizeof(o->host), "%s",
	         http_parser_header(r, "host") ? http_parser_header(r, "HOST") : "-");
	o->minor = r->minor;
	o->keep_alive = r->keep_alive;
	o->expect = r->expect_continue;
	o->clen = r->content_length;
	if (r->body != NULL)
		snprintf(o->body, sizeof(o->body), "%.*s", (int)r->content_length,
		         (const char *)r->body);
}

/* Feed s in pieces (cuts at the given offsets, ascending) until a final
 * status; stops early at DONE/ERROR. */
static void feed_cuts(const char *s, size_t len, const size_t *cuts, size_t ncuts,
                      struct outcome *o)
{
	struct http_parser p;
	enum http_status st = HTTP_NEED_MORE;
	size_t pos = 0, total = 0;

	http_parser_init(&p, 256, 64);
	for (size_t c = 0; c <= ncuts && st == HTTP_NEED_MORE; c++) {
		size_t end = c < ncuts ? cuts[c] : len, used = 0;
		st = http_parser_feed(&p, (const uint8_t *)s + pos, end - pos, &used);
		total += used;
		pos = end;
	}
	record(&p, st, total, o);
	http_parser_free(&p);
}

static bool same(const struct outcome *a, const struct outcome *b)
{
	return a->st == b->st && a->code == b->code && strcmp(a->method, b->method) == 0 &&
	       strcmp(a->path, b->path) == 0 && strcmp(a->query, b->query) == 0 &&
	       strcmp(a->body, b->body) == 0 && a->keep_alive == b->keep_alive &&
	       a->clen == b->clen && (a->st != HTTP_DONE || a->consumed == b->consumed);
}

static const struct {
	const char *in;
	enum http_status st;
	int code; /* for errors */
	const char *method, *path, *query, *body;
	bool keep_alive;
} cases[] = {
        {"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_DONE, 0, "GET", "/healthz", "", "", true},
        {"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", HTTP_DONE, 0, "GET",
         "/a/b", "x=1&y=%20", "", false},
        {"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_DONE, 0, "GET", "/", "", "", true},
        {"POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", HTTP_DONE, 0,
         "POST", "/api/v1/domains", "", "hello", true},
        {"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
         HTTP_DONE, 0, "PUT", "/x", "", "ok", true},
        {"GET / HTTP/1.0\r\n\r\n", HTTP_DONE, 0, "GET", "/", "", "", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", HTTP_DONE, 0, "GET", "/", "", "",
         true},
        {"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", HTTP_DONE, 0, "GET", "/",
         "", "", false},
        {"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_DONE, 0, "OPTIONS", "*", "", "", true},
        {"GET / HTTP/1.9\r\nHost: x\r\n\r\n", HTTP_DONE, 0, "GET", "/", "", "", true},
        {"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", HTTP_ERROR, 505},
        {"GET / HTTP/1.1\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\nHost: x\n\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost: x\x01y\r\n\r\n", HTTP_ERROR, 400},
        {"GET http://h/ HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"GET * HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HTTP_ERROR,
         400},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", HTTP_ERROR, 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", HTTP_ERROR, 413},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
         HTTP_ERROR, 413},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_ERROR, 501},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         HTTP_ERROR, 400},
        {"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_ERROR, 400},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-Long: "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "\r\n\r\n",
         HTTP_ERROR, 431},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab", HTTP_NEED_MORE, 0},
};

UNIT_TEST(http_parser_table_every_split)
{
	for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
		const char *in = cases[t].in;
		size_t len = strlen(in);
		struct outcome whole, o;

		feed_cuts(in, len, NULL, 0, &whole);
		CHECK_MSG(whole.st == cases[t].st, "case %zu: status %d, want %d (code %d)", t,
		          whole.st, cases[t].st, whole.code);
		if (cases[t].st == HTTP_ERROR)
			CHECK_MSG(whole.code == cases[t].code, "case %zu: code %d, want %d", t,
			          whole.code, cases[t].code);
		if (cases[t].st == HTTP_DONE) {
			CHECK_MSG(strcmp(whole.method, cases[t].method) == 0, "case %zu method %s",
			          t, whole.method);
			CHECK_MSG(strcmp(whole.path, cases[t].path) == 0, "case %zu path %s", t,
			          whole.path);
			CHECK_MSG(strcmp(whole.query, cases[t].query) == 0, "case %zu query %s", t,
			          whole.query);
			CHECK_MSG(strcmp(whole.body, cases[t].body) == 0, "case %zu body %s", t,
			          whole.body);
			CHECK_MSG(whole.keep_alive == cases[t].keep_alive, "case %zu keep-alive",
			          t);
			CHECK_MSG(whole.consumed == len, "case %zu consumed %zu of %zu", t,
			          whole.consumed, len);
		}
		/* two pieces, cut at every offset */
		for (size_t cut = 0; cut <= len; cut++) {
			feed_cuts(in, len, &cut, 1, &o);
			CHECK_MSG(same(&whole, &o), "case %zu differs when cut at %zu", t, cut);
		}
		/* one byte at a time */
		{
			size_t *cuts = calloc(len + 1, sizeof(*cuts));
			for (size_t k = 0; k < len; k++)
				cuts[k] = k + 1;
			feed_cuts(in, len, cuts, len, &o);
			free(cuts);
			CHECK_MSG(same(&whole, &o), "case %zu differs byte by byte", t);
		}
	}
}

/* Two pipelined requests: the first DONE consumes exactly its own bytes;
 * after a reset the rest parses as the second. */
UNIT_TEST(http_parser_pipelined)
{
	static const char two[] = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
	                          "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t len = sizeof(two) - 1, first = strlen(two) - strlen(strstr(two, "GET /b"));
	struct http_parser p;
	size_t used;

	http_parser_init(&p, 256, 64);
	CHECK_INT(http_parser_feed(&p, (const uint8_t *)two, len, &used), HTTP_DONE);
	CHECK_INT(used, first);
	CHECK_STR(http_parser_request(&p)->path, "/a");
	CHECK_MEM(http_parser_request(&p)->body, "abc", 3);
	/* done is sticky until reset */
	CHECK_INT(http_parser_feed(&p, (const uint8_t *)two + first, len - first, &used),
	          HTTP_DONE);
	CHECK_INT(used, 0);
	http_parser_reset(&p);
	CHECK_INT(http_parser_feed(&p, (const uint8_t *)two + first, len - first, &used),
	          HTTP_DONE);
	CHECK_INT(used, len - first);
	CHECK_STR(http_parser_request(&p)->path, "/b");
	CHECK(http_parser_request(&p)->body == NULL);
	http_parser_free(&p);
}

/* The head is parsed (100-continue may be sent) before the body arrives. */
UNIT_TEST(http_parser_expect_continue)
{
	static const char h[] = "PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
	                        "Content-Length: 4\r\n\r\n";
	struct http_parser p;
	size_t used;

	http_parser_init(&p, 256, 64);
	CHECK_INT(http_parser_feed(&p, (const uint8_t *)h, sizeof(h) - 1, &used), HTTP_NEED_MORE);
	CHECK(p.head_done);
	CHECK(http_parser_request(&p)->expect_continue);
	CHECK_INT(http_parser_request(&p)->content_length, 4);
	CHECK_INT(http_parser_feed(&p, (const uint8_t *)"dataX", 5, &used), HTTP_DONE);
	CHECK_INT(used, 4);
	CHECK_MEM(http_parser_request(&p)->body, "data", 4);
	http_parser_free(&p);
}

/* The header bound is exact: max_header bytes pass, one more is 431. */
UNIT_TEST(http_parser_header_bound_exact)
{
	char req[300];
	struct http_parser p;
	size_t used, n;

	for (int extra = 0; extra <= 1; extra++) {
		const char *pre = "GET / HTTP/1.1\r\nHost: x\r\nX: ";
		size_t fill = 256 - strlen(pre) - 4 + (size_t)extra;
		n = (size_t)snprintf(
		        req, sizeof(req), "%s%.*s\r\n\r\n", pre, (int)fill,
		        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
		http_parser_init(&p, 256, 64);
		if (extra == 0) {
			CHECK_INT(n, 256);
			CHECK_INT(http_parser_feed(&p, (const uint8_t *)req, n, &used), HTTP_DONE);
		} else {
			CHECK_INT(http_parser_feed(&p, (const uint8_t *)req, n, &used), HTTP_ERROR);
			CHECK_INT(p.error_code, 431);
		}
		http_parser_free(&p);
	}
}

UNIT_TEST(http_parser_pct_decode_cases)
{
	char out[16];

	CHECK_INT(http_parser_pct_decode("a%40b.org", 9, out, sizeof(out)), 7);
	CHECK_STR(out, "a@b.org");
	CHECK_INT(http_parser_pct_decode("a+b", 3, out, sizeof(out)), 3);
	CHECK_STR(out, "a+b");
	CHECK_INT(http_parser_pct_decode("%4", 2, out, sizeof(out)), -1);
	CHECK_INT(http_parser_pct_decode("%zz", 3, out, sizeof(out)), -1);
	CHECK_INT(http_parser_pct_decode("%00", 3, out, sizeof(out)), -1);
	CHECK_INT(http_parser_pct_decode("0123456789abcdef", 16, out, sizeof(out)), -1);
	CHECK_INT(http_parser_pct_decode("", 0, out, sizeof(out)), 0);
	CHECK_STR(http_parser_reason(431), "Request Header Fields Too Large");
}
