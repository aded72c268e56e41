/*
 * tests/fuzz/fuzz_mime.c -- libFuzzer target for the streaming MIME parser.
 *
 * The input is parsed whole, then again in chunks whose sizes come from
 * the input itself; both results must be identical (the parser's promise
 * that any split gives the same answer).  Invariants checked on every
 * result: part offsets are ordered and inside the message, the IMAP
 * strings have balanced parentheses outside strings and literals, and the
 * search texts are valid UTF-8 without NULs and within their bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox/mime/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_at(int cond, int line)
{
	if (!cond) {
		fprintf(stderr, "%s:%d: invariant failed\n", __FILE__, line);
		abort();
	}
}
#define check(cond) check_at((cond), __LINE__)

static int streq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Balanced parentheses outside quoted strings and {n} literals. */
static void check_imap_list(const char *s)
{
	long depth = 0;

	check(s != NULL && s[0] == '(');
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '"') {
			for (i++; s[i] && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			check(s[i] == '"');
		} else if (s[i] == '{') {
			char *end;
			unsigned long n = strtoul(s + i + 1, &end, 10);

			check(end[0] == '}' && end[1] == '\r' && end[2] == '\n');
			i = (size_t)(end + 2 - s) + n;
			check(i < strlen(s));
		} else if (s[i] == '(') {
			depth++;
		} else if (s[i] == ')') {
			depth--;
			check(depth >= 0);
		}
	}
	check(depth == 0);
}

static void check_utf8(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

		check(c != 0 && c != 0xc0 && c != 0xc1 && c < 0xf5 && (c < 0x80 || c >= 0xc2));
		check(i + len <= n);
		for (size_t k = 1; k < len; k++)
			check(((unsigned char)s[i + k] & 0xc0) == 0x80);
		i += len;
	}
	check(s[n] == '\0');
}

static void check_result(const struct mime_result *r, size_t size, const struct mime_limits *lim)
{
	check(r->size == size);
	check_imap_list(r->envelope);
	check_imap_list(r->bodystructure);
	check_imap_list(r->body);
	/* the root, then part 1 unless a multipart found no part */
	check(r->nparts >= 1);
	for (size_t i = 0; i < r->nparts; i++) {
		const struct mime_part *p = &r->parts[i];

		check(p->hdr_start <= p->body_start && p->body_start <= p->body_end &&
		      p->body_end <= size);
		if (p->is_message)
			check(p->body_start <= p->msg_body_start &&
			      p->msg_body_start <= p->body_end);
	}
	check(r->nparts <= (size_t)lim->max_parts + 1);
	check(r->search_body_len <= lim->max_search_body);
	check(r->search_header_len <= lim->max_search_header);
	check_utf8(r->search_body, r->search_body_len);
	check_utf8(r->search_header, r->search_header_len);
}

static int same(const struct mime_result *a, const struct mime_result *b)
{
	if (!streq(a->envelope, b->envelope) || !streq(a->bodystructure, b->bodystructure) ||
	    !streq(a->body, b->body) || a->nparts != b->nparts || !streq(a->subject, b->subject) ||
	    !streq(a->from, b->from) || a->search_body_len != b->search_body_len ||
	    a->search_header_len != b->search_header_len ||
	    memcmp(a->search_body, b->search_body, a->search_body_len) != 0)
		return 0;
	for (size_t i = 0; i < a->nparts; i++)
		if (a->parts[i].body_start != b->parts[i].body_start ||
		    a->parts[i].body_end != b->parts[i].body_end ||
		    a->parts[i].hdr_start != b->parts[i].hdr_start ||
		    a->parts[i].lines != b->parts[i].lines ||
		    strcmp(a->parts[i].section, b->parts[i].section))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_limits lim;
	struct mime_result *whole, *pieces;
	struct mime_parser *p;
	size_t off = 0, k = 0;

	/* small bounds so that fuzzing reaches them */
	mime_limits_default(&lim);
	lim.max_header = 2048;
	lim.max_search_body = 997;
	lim.max_search_header = 499;
	lim.max_depth = 8;
	lim.max_parts = 64;
	whole = mime_parse(data, size, &lim);
	check_result(whole, size, &lim);

	p = mime_parser_new(&lim);
	while (off < size) {
		size_t n = 1 + (size > 0 ? data[k++ % size] % 17 : 0);

		if (n > size - off)
			n = size - off;
		mime_parser_feed(p, data + off, n);
		off += n;
	}
	pieces = mime_parser_finish(&p);
	check(same(whole, pieces));
	mime_result_free(&whole);
	mime_result_free(&pieces);
	return 0;
}
