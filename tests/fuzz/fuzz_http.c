/*
 * tests/fuzz/fuzz_http.c -- libFuzzer target for the HTTP request parser.
 *
 * The input is a stream of pipelined requests.  It is parsed twice: whole,
 * and in pieces whose sizes come from the input's own bytes (so the fuzzer
 * explores split points).  Both runs must see the same sequence of
 * requests (method, path, query, body, keep-alive) and end the same way;
 * a DONE must never consume more than it was given, the body must be
 * exactly Content-Length bytes, and the bounds must hold.  Any difference
 * abort()s.
 */
#include "mailbox/http/parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define MAX_HEADER 512
#define MAX_BODY   256
#define MAX_REQS   16

struct seen {
	size_t n;
	uint64_t digest[MAX_REQS];
	enum http_status last;
	int code;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t digest(const struct http_request *r)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = mix(h, r->method_str, strlen(r->method_str) + 1);
	h = mix(h, r->path, strlen(r->path) + 1);
	h = mix(h, r->query, strlen(r->query) + 1);
	h = mix(h, &r->keep_alive, sizeof(r->keep_alive));
	h = mix(h, &r->content_length, sizeof(r->content_length));
	if (r->body != NULL)
		h = mix(h, r->body, (size_t)r->content_length);
	return h;
}

static void check_request(const struct http_parser *p)
{
	const struct http_request *r = http_parser_request(p);

	REQUIRE(r->content_length <= MAX_BODY);
	REQUIRE((r->content_length == 0) == (r->body == NULL));
	REQUIRE(r->path[0] == '/' || strcmp(r->path, "*") == 0);
	REQUIRE(strchr(r->path, '?') == NULL);
	REQUIRE(r->nheaders <= HTTP_MAX_HEADERS);
	REQUIRE(p->head_len <= MAX_HEADER);
}

/* chunk: 0 = whole; otherwise sizes from the input itself. */
static void run(const uint8_t *data, size_t size, bool split, struct seen *out)
{
	struct http_parser p;
	size_t pos = 0, k = 0;

	memset(out, 0, sizeof(*out));
	http_parser_init(&p, MAX_HEADER, MAX_BODY);
	out->last = HTTP_NEED_MORE;
	while (pos < size && out->n < MAX_REQS) {
		size_t n = size - pos, used = 0;
		enum http_status st;

		if (split) {
			n = (size_t)(data[k++ % size] % 13) + 1;
			if (n > size - pos)
				n = size - pos;
		}
		st = http_parser_feed(&p, data + pos, n, &used);
		REQUIRE(used <= n);
		out->last = st;
		if (st == HTTP_NEED_MORE) {
			REQUIRE(used == n);
			pos += n;
			continue;
		}
		if (st == HTTP_ERROR) {
			REQUIRE(p.error_code >= 400 && p.error_code <= 505);
			REQUIRE(p.error_reason != NULL);
			out->code = p.error_code;
			break;
		}
		check_request(&p);
		out->digest[out->n++] = digest(http_parser_request(&p));
		pos += used;
		http_parser_reset(&p);
		out->last = HTTP_NEED_MORE;
	}
	http_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen a, b;

	if (size > 8192)
		return 0;
	run(data, size, false, &a);
	run(data, size, true, &b);
	/* The split run may stop at MAX_REQS at another point only if both
	 * reached it; otherwise everything must agree. */
	REQUIRE(a.n == b.n);
	for (size_t i = 0; i < a.n; i++)
		REQUIRE(a.digest[i] == b.digest[i]);
	if (a.n < MAX_REQS) {
		REQUIRE(a.last == b.last);
		REQUIRE(a.code == b.code);
	}
	return 0;
}
