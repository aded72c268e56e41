/*
 * tests/fuzz/fuzz_queue_plan.c -- libFuzzer target for the pure parsers of
 * the outbound queue (mailbox/outbound/queue_plan.h): the Return-Path
 * strip filter, the From: domain of a header block, and the xtext/ORCPT
 * decoders of the stored DSN parameters.
 *
 * Byte 0 picks where the input is split for a second run of the strip
 * filter fed in two pieces (and a third run is fed byte by byte); all
 * three outputs must be identical.  Invariants: the filter only removes a
 * prefix of the input (the output is a suffix of it), and it removes
 * nothing unless the input starts with "Return-Path:" in any case.  A
 * From: domain found is non-empty, lower-case, and has no '@', white space
 * or angle bracket.  Decoded xtext has no control byte.
 */
#include "mailbox/outbound/queue_plan.h"
#include "shared/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void strip(const uint8_t *p, size_t n, size_t split, bool bytewise, struct buf *out)
{
	struct queue_rpstrip s;

	queue_rpstrip_init(&s);
	if (bytewise) {
		for (size_t i = 0; i < n; i++)
			queue_rpstrip_feed(&s, p + i, 1, out);
	} else {
		queue_rpstrip_feed(&s, p, split, out);
		queue_rpstrip_feed(&s, p + split, n - split, out);
	}
	queue_rpstrip_finish(&s, out);
}

static void check_decoded(char *d)
{
	if (d == NULL)
		return;
	for (const unsigned char *q = (const unsigned char *)d; *q != '\0'; q++)
		CHECK(*q >= 0x20 && *q != 0x7f);
	free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t split = data[0] % (size);
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (split > n)
		split = n;

	struct buf a, b, c;
	buf_init(&a, 0);
	buf_init(&b, 0);
	buf_init(&c, 0);
	strip(p, n, n, false, &a);
	strip(p, n, split, false, &b);
	strip(p, n, 0, true, &c);
	CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	CHECK(a.len == c.len && (a.len == 0 || memcmp(a.data, c.data, a.len) == 0));
	CHECK(a.len <= n);
	CHECK(a.len == 0 || memcmp(a.data, p + (n - a.len), a.len) == 0);
	if (a.len < n)
		CHECK(n >= 12 && strncasecmp((const char *)p, "Return-Path:", 12) == 0);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);

	char dom[256];
	if (queue_plan_from_domain(p, n, dom, sizeof(dom))) {
		CHECK(dom[0] != '\0');
		for (const char *q = dom; *q != '\0'; q++)
			CHECK(*q != '@' && *q != ' ' && *q != '\t' && *q != '<' && *q != '>' &&
			      !(*q >= 'A' && *q <= 'Z'));
	}

	/* the decoders take C strings */
	char *s = malloc(n + 1);
	CHECK(s != NULL);
	memcpy(s, p, n);
	s[n] = '\0';
	check_decoded(queue_plan_xtext_decode(s));
	check_decoded(queue_plan_orcpt(s));
	(void)queue_plan_notify(s);
	if (queue_plan_domain(s, dom, sizeof(dom)))
		CHECK(strchr(dom, '@') == NULL);
	free(s);
	return 0;
}
