/*
 * tests/unit/test_delivery_hdrfix.c -- the Date:/Message-ID: filter of
 * submission (mailbox/delivery/hdrfix.h), table-driven, every input fed
 * whole, byte by byte, and split in two at every offset.
 */
#include "tests/unit/unit.h"

#include "mailbox/delivery/hdrfix.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <stdio.h>

#define D  "Fri, 27 Nov 2026 03:40:00 +0000"
#define M  "<m1@mail.example.org>"
#define DF "Date: " D "\r\n"
#define MF "Message-ID: " M "\r\n"

struct hdrfix_case {
	const char *in;
	const char *out;
};

static const struct hdrfix_case hdrfix_cases[] = {
        /* the fields go right before the empty line */
        {"Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n" DF MF "\r\nbody\r\n"},
        /* only what is missing */
        {"Date: a\r\nSubject: x\r\n\r\nb\r\n", "Date: a\r\nSubject: x\r\n" MF "\r\nb\r\n"},
        {"Message-Id: <q@r>\r\n\r\nb\r\n", "Message-Id: <q@r>\r\n" DF "\r\nb\r\n"},
        /* any case, obsolete white space before the colon, no space after */
        {"DATE : a\r\nmessage-ID:<x@y>\r\n\r\nb\r\n", "DATE : a\r\nmessage-ID:<x@y>\r\n\r\nb\r\n"},
        /* names that only look alike */
        {"Resent-Date: a\r\nX-Message-ID: b\r\nDates: c\r\n\r\n",
         "Resent-Date: a\r\nX-Message-ID: b\r\nDates: c\r\n" DF MF "\r\n"},
        /* folded lines belong to their field, even when they look like one */
        {"Subject: a\r\n Date: no\r\n\tb\r\n\r\nc",
         "Subject: a\r\n Date: no\r\n\tb\r\n" DF MF "\r\nc"},
        /* a trace header first, then the client's fields */
        {"Received: from a\r\n\tby b; Fri, 27 Nov 2026 03:40:00 +0000\r\nDate: x\r\n"
         "Message-Id: <y@z>\r\n\r\nbody\r\n",
         "Received: from a\r\n\tby b; Fri, 27 Nov 2026 03:40:00 +0000\r\nDate: x\r\n"
         "Message-Id: <y@z>\r\n\r\nbody\r\n"},
        /* no header at all: the fields and the missing empty line */
        {"just text\r\nmore\r\n", DF MF "\r\njust text\r\nmore\r\n"},
        {":colon first\r\n", DF MF "\r\n:colon first\r\n"},
        {"no-colon\r\n", DF MF "\r\nno-colon\r\n"},
        {"Subject: a\r\nnot a field line\r\n", "Subject: a\r\n" DF MF "\r\nnot a field line\r\n"},
        /* an empty body: the message starts with the empty line */
        {"\r\nbody\r\n", DF MF "\r\nbody\r\n"},
        /* all header: the fields at the end */
        {"Subject: x\r\n", "Subject: x\r\n" DF MF},
        {"Subject: x", "Subject: x\r\n" DF MF},
        {"Subject", DF MF "\r\nSubject"},
        {"", DF MF},
        /* a Date: in the body is no Date: field */
        {"Subject: a\r\n\r\nDate: x\r\nMessage-ID: y\r\n",
         "Subject: a\r\n" DF MF "\r\nDate: x\r\nMessage-ID: y\r\n"},
        /* bare LF line ends are understood */
        {"Subject: a\n\nbody\n", "Subject: a\n" DF MF "\nbody\n"},
        /* 8-bit in a field value passes; 8-bit where a name should be is body */
        {"Subject: caf\xc3\xa9\r\n\r\n", "Subject: caf\xc3\xa9\r\n" DF MF "\r\n"},
        {"caf\xc3\xa9: x\r\n", DF MF "\r\ncaf\xc3\xa9: x\r\n"},
        /* a field name longer than the hold buffer is taken as a field */
        {"X-"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "a"
         "aaaaaaaaaaaaaaaaaaaaaaaa: v\r\n\r\n",
         "X-"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "a"
         "aaaaaaaaaaaaaaaaaaaaaaaa: v\r\n" DF MF "\r\n"},
        /* exactly a full hold buffer of name, then white space (fuzzer find) */
        {"X-"
         "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
         "bbbbbbbbb : v\r\n\r\n",
         "X-"
         "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
         "bbbbbbbbb : v\r\n" DF MF "\r\n"},
};

static int collect(void *ctx, const uint8_t *p, size_t n)
{
	return buf_append(ctx, p, n);
}

/* Feed in[0..n) in pieces of at most step bytes, the first piece cut at
 * first (0: no special first piece); returns the output. */
static void run(const char *in, size_t n, size_t first, size_t step, struct buf *out)
{
	struct hdrfix h;
	size_t off = 0;

	hdrfix_init(&h, D, M, collect, out);
	if (first > 0) {
		hdrfix_feed(&h, (const uint8_t *)in, first);
		off = first;
	}
	while (off < n) {
		size_t k = n - off < step ? n - off : step;
		hdrfix_feed(&h, (const uint8_t *)in + off, k);
		off += k;
	}
	hdrfix_finish(&h);
}

UNIT_TEST(delivery_hdrfix_table)
{
	for (size_t i = 0; i < ARRAY_SIZE(hdrfix_cases); i++) {
		const struct hdrfix_case *c = &hdrfix_cases[i];
		size_t n = strlen(c->in), want = strlen(c->out);

		for (size_t split = 0; split <= n; split++) {
			for (int mode = 0; mode < 2; mode++) {
				struct buf out;

				buf_init(&out, 0);
				run(c->in, n, split, mode == 0 ? (n ? n : 1) : 1, &out);
				CHECK_MSG(buf_len(&out) == want &&
				                  memcmp(buf_ptr(&out), c->out, want) == 0,
				          "case %zu split %zu mode %d: got \"%.*s\"", i, split,
				          mode, (int)buf_len(&out), (const char *)buf_ptr(&out));
				buf_free(&out);
			}
		}
	}
}

static int fail_after(void *ctx, const uint8_t *p, size_t n)
{
	int *left = ctx;

	(void)p;
	(void)n;
	return (*left)-- > 0 ? 0 : -1;
}

UNIT_TEST(delivery_hdrfix_output_failure_sticks)
{
	struct hdrfix h;
	int left = 1;
	const char *in = "Subject: a\r\n\r\nbody\r\n";

	hdrfix_init(&h, D, M, fail_after, &left);
	CHECK_INT(hdrfix_feed(&h, (const uint8_t *)in, strlen(in)), -1);
	CHECK_INT(hdrfix_feed(&h, (const uint8_t *)"x", 1), -1);
	CHECK_INT(hdrfix_finish(&h), -1);
}
