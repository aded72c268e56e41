/*
 * tests/fuzz/fuzz_hdrfix.c -- libFuzzer target for the submission header
 * filter (mailbox/delivery/hdrfix.h).
 *
 * Byte 0 picks where the input is split for a second run fed in two
 * pieces (and a third run is fed byte by byte); all three outputs must be
 * identical.  Invariants: the input is a subsequence of the output (the
 * filter only inserts), and the output holds at most one Date: and one
 * Message-ID: insertion plus an empty line, i.e. it is at most that much
 * longer.
 */
#include "mailbox/delivery/hdrfix.h"
#include "shared/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

#define D "Fri, 27 Nov 2026 03:40:00 +0000"
#define M "<m@x>"

static int collect(void *ctx, const uint8_t *p, size_t n)
{
	CHECK(n > 0);
	return buf_append(ctx, p, n);
}

static void run(const uint8_t *p, size_t n, size_t split, bool bytewise, struct buf *out)
{
	struct hdrfix h;

	hdrfix_init(&h, D, M, collect, out);
	if (bytewise) {
		for (size_t i = 0; i < n; i++)
			CHECK(hdrfix_feed(&h, p + i, 1) == 0);
	} else {
		CHECK(hdrfix_feed(&h, p, split) == 0);
		CHECK(hdrfix_feed(&h, p + split, n - split) == 0);
	}
	CHECK(hdrfix_finish(&h) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b, c;
	size_t split, i = 0, extra = strlen("Date: " D "\r\nMessage-ID: " M "\r\n\r\n");

	if (size < 1)
		return 0;
	split = size > 1 ? data[0] % size : 0;
	data++;
	size--;
	if (split > size)
		split = size;
	buf_init(&a, 0);
	buf_init(&b, 0);
	buf_init(&c, 0);
	run(data, size, size, false, &a);
	run(data, size, split, false, &b);
	run(data, size, 0, true, &c);
	CHECK(buf_len(&a) == buf_len(&b) && memcmp(buf_ptr(&a), buf_ptr(&b), buf_len(&a)) == 0);
	CHECK(buf_len(&a) == buf_len(&c) && memcmp(buf_ptr(&a), buf_ptr(&c), buf_len(&a)) == 0);
	CHECK(buf_len(&a) >= size && buf_len(&a) <= size + extra);
	/* the input is a subsequence of the output */
	for (size_t k = 0; k < buf_len(&a) && i < size; k++)
		if (buf_ptr(&a)[k] == data[i])
			i++;
	CHECK(i == size);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
	return 0;
}
