/*
 * mailbox/mime/text.c -- the bounded search text.
 *
 * SEARCH TEXT/BODY are answered from Postgres (DESIGN.md), whose tsvector
 * and text columns have limits (1 MB for a tsvector) and no room for NUL;
 * so the text kept per message is bounded, valid UTF-8 and NUL-free.  The
 * input is already valid UTF-8 (charset.c guarantees it); here it is only
 * cut, always at a character boundary, NULs become spaces and CRs are
 * dropped.
 */
#include "mailbox/mime/mime_private.h"

#include <stdlib.h>
#include <string.h>

#include "shared/xmalloc.h"

void mime_text_init(struct mime_text *t, size_t max)
{
	buf_init(&t->b, 0);
	t->max = max;
	t->truncated = false;
}

void mime_text_free(struct mime_text *t)
{
	buf_free(&t->b);
}

bool mime_text_full(const struct mime_text *t)
{
	return t->truncated || buf_len(&t->b) >= t->max;
}

void mime_text_sink(void *ctx, const char *s, size_t n)
{
	struct mime_text *t = ctx;
	uint8_t *dst;
	size_t k = 0, room;

	if (t->truncated || n == 0)
		return;
	room = t->max - buf_len(&t->b);
	if (room == 0) {
		t->truncated = true;
		return;
	}
	dst = buf_reserve(&t->b, n < room ? n : room);
	/* callers pass whole characters: stop before one that does not fit,
	 * deciding octet by octet so that the cut never depends on how the
	 * text was split into calls */
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

		if (c == '\r') {
			i++; /* CRLF -> LF: line ends are noise here */
			continue;
		}
		if (len > n - i)
			len = n - i;
		if (len > room - k) {
			t->truncated = true;
			break;
		}
		for (size_t j = 0; j < len; j++)
			dst[k++] = s[i + j] == '\0' ? ' ' : (uint8_t)s[i + j];
		i += len;
	}
	buf_commit(&t->b, k);
}

char *mime_text_take(struct mime_text *t, size_t *len_r)
{
	size_t n = buf_len(&t->b);
	char *r = xmalloc(n + 1);

	if (n > 0)
		memcpy(r, buf_ptr(&t->b), n);
	r[n] = '\0';
	*len_r = n;
	buf_free(&t->b);
	return r;
}
