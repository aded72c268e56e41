/*
 * mailbox/imap/mutf7.c -- modified UTF-7 both ways.
 *
 * RFC 3501 5.1.3: printable US-ASCII other than "&" stands for itself, "&"
 * is "&-", and any other run of characters is UTF-16BE in modified base64
 * ("," for "/", no padding) between "&" and "-".  The decoder checks each
 * rule as it goes and finally re-encodes its result and compares: the
 * encoder produces the canonical form, so equality proves canonicity
 * (for instance "&AGE-&AGI-" is refused in favour of "&AGEAYg-").
 */
#include "mailbox/imap/mutf7.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/xmalloc.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;

	return p ? (int)(p - b64) : -1;
}

/* Next code point of UTF-8 s, advancing *s; -1 if invalid. */
static long utf8_next(const unsigned char **sp)
{
	const unsigned char *s = *sp;
	unsigned c = s[0], n, i;
	long cp;

	if (c < 0x80) {
		*sp = s + 1;
		return c;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
	} else {
		return -1;
	}
	for (i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*sp = s + n + 1;
	return cp;
}

static char *take(struct buf *b)
{
	char *r;

	buf_append(b, "", 1);
	r = xstrdup((const char *)buf_ptr(b));
	buf_free(b);
	return r;
}

static void flush_bits(struct buf *b, uint32_t *acc, unsigned *nbits)
{
	if (*nbits > 0) {
		char c = b64[(*acc << (6 - *nbits)) & 0x3f];

		buf_append(b, &c, 1);
	}
	*acc = 0;
	*nbits = 0;
}

static void put_unit(struct buf *b, unsigned unit, uint32_t *acc, unsigned *nbits)
{
	*acc = (*acc << 16) | unit;
	*nbits += 16;
	while (*nbits >= 6) {
		char c = b64[(*acc >> (*nbits - 6)) & 0x3f];

		buf_append(b, &c, 1);
		*nbits -= 6;
	}
	*acc &= (1u << *nbits) - 1;
}

char *imap_mutf7_encode(const char *utf8)
{
	const unsigned char *s = (const unsigned char *)utf8;
	struct buf b;
	bool shifted = false;
	uint32_t acc = 0;
	unsigned nbits = 0;

	buf_init(&b, 0);
	while (*s) {
		long cp = utf8_next(&s);

		if (cp < 0 || cp < 0x20 || cp == 0x7f)
			goto fail;
		if (cp < 0x7f) {
			if (shifted) {
				flush_bits(&b, &acc, &nbits);
				buf_append(&b, "-", 1);
				shifted = false;
			}
			buf_puts(&b, cp == '&' ? "&-" : (char[]){(char)cp, 0});
			continue;
		}
		if (!shifted) {
			buf_append(&b, "&", 1);
			shifted = true;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			put_unit(&b, (unsigned)(0xd800 | (cp >> 10)), &acc, &nbits);
			put_unit(&b, (unsigned)(0xdc00 | (cp & 0x3ff)), &acc, &nbits);
		} else {
			put_unit(&b, (unsigned)cp, &acc, &nbits);
		}
	}
	if (shifted) {
		flush_bits(&b, &acc, &nbits);
		buf_append(&b, "-", 1);
	}
	return take(&b);
fail:
	buf_free(&b);
	return NULL;
}

static void put_utf8(struct buf *b, uint32_t cp)
{
	char o[4];
	size_t n;

	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		o[0] = (char)(0xf0 | cp >> 18);
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(b, o, n);
}

char *imap_mutf7_decode(const char *mutf7)
{
	const unsigned char *s = (const unsigned char *)mutf7;
	struct buf b;
	char *r, *again;

	buf_init(&b, 0);
	while (*s) {
		uint32_t acc = 0, hi = 0;
		unsigned nbits = 0;
		size_t nchars = 0;

		if (*s < 0x20 || *s >= 0x7f)
			goto fail;
		if (*s != '&') {
			buf_append(&b, s, 1);
			s++;
			continue;
		}
		s++;
		if (*s == '-') {
			buf_append(&b, "&", 1);
			s++;
			continue;
		}
		for (; *s && *s != '-'; s++, nchars++) {
			int v = b64val((char)*s);

			if (v < 0)
				goto fail;
			acc = (acc << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			unsigned unit = (acc >> nbits) & 0xffff;

			acc &= (1u << nbits) - 1;
			if (hi != 0) {
				if (unit < 0xdc00 || unit > 0xdfff)
					goto fail;
				put_utf8(&b, 0x10000 + ((hi - 0xd800) << 10) + (unit - 0xdc00));
				hi = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff) {
				hi = unit;
			} else if (unit >= 0xdc00 && unit <= 0xdfff) {
				goto fail;
			} else if (unit >= 0x20 && unit < 0x7f) {
				goto fail; /* printable ASCII must not be encoded */
			} else if (unit < 0x20 || unit == 0x7f) {
				goto fail;
			} else {
				put_utf8(&b, unit);
			}
		}
		/* unterminated, empty, dangling surrogate, or non-zero pad bits */
		if (*s != '-' || nchars == 0 || hi != 0 || nbits >= 6 || acc != 0)
			goto fail;
		s++;
	}
	r = take(&b);
	again = imap_mutf7_encode(r);
	if (again == NULL || strcmp(again, mutf7) != 0) {
		free(again);
		free(r);
		return NULL;
	}
	free(again);
	return r;
fail:
	buf_free(&b);
	return NULL;
}

bool imap_mutf7_valid(const char *s)
{
	char *r = imap_mutf7_decode(s);

	free(r);
	return r != NULL;
}
