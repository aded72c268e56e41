/*
 * mailbox/mime/charset.c -- text in a declared charset to valid UTF-8.
 *
 * The charsets that make up nearly all mail are converted here without
 * iconv: UTF-8 and US-ASCII (validated; 8-bit bytes in "us-ascii" text are
 * almost always UTF-8), and ISO-8859-1, which like every browser we read as
 * its superset windows-1252 (WHATWG Encoding: the label "iso-8859-1" means
 * windows-1252, because mailers mislabel cp1252 text this way).  Anything
 * else goes through glibc iconv.  Conversion is streaming: an incomplete
 * multibyte sequence at the end of a chunk is carried to the next one; an
 * invalid one becomes U+FFFD, so the output is always valid UTF-8 and the
 * search text never breaks on bad input.  An unknown charset is read as
 * UTF-8 with replacement, which keeps the ASCII words searchable.
 */
#include "mailbox/mime/mime_private.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MIME_CS_UTF8, MIME_CS_CP1252, MIME_CS_ICONV };

#define REPL "\xef\xbf\xbd"

/* windows-1252 0x80..0x9f; 0 marks the five undefined code points */
static const unsigned short cp1252_hi[32] = {
        0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
        0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
        0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178,
};

static bool name_in(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcasecmp(name, *list) == 0)
			return true;
	return false;
}

static const char *const utf8_names[] = {"utf-8",          "utf8", "us-ascii",  "ascii",
                                         "ansi_x3.4-1968", "us",   "iso646-us", NULL};
static const char *const cp1252_names[] = {"windows-1252", "cp1252", "iso-8859-1", "iso8859-1",
                                           "iso_8859-1",   "latin1", "l1",         "x-cp1252",
                                           "cp819",        NULL};

void mime_charset_open(struct mime_charset *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->kind = MIME_CS_UTF8;
	c->cd = (iconv_t)-1;
	if (name == NULL || *name == '\0' || name_in(name, utf8_names))
		return;
	if (name_in(name, cp1252_names)) {
		c->kind = MIME_CS_CP1252;
		return;
	}
	c->cd = iconv_open("UTF-8", name);
	if (c->cd != (iconv_t)-1)
		c->kind = MIME_CS_ICONV;
}

bool mime_charset_known(const char *name)
{
	struct mime_charset c;
	bool known;

	if (name == NULL || name_in(name, utf8_names) || name_in(name, cp1252_names))
		return true;
	mime_charset_open(&c, name);
	known = c.kind == MIME_CS_ICONV;
	mime_charset_close(&c);
	return known;
}

void mime_charset_close(struct mime_charset *c)
{
	free(c->pending);
	c->pending = NULL;
	c->npending = c->cappending = 0;
	if (c->kind == MIME_CS_ICONV && c->cd != (iconv_t)-1)
		iconv_close(c->cd);
	c->cd = (iconv_t)-1;
	c->kind = MIME_CS_UTF8;
}

/* Length of a valid UTF-8 sequence at s (n available): >0 valid, 0 invalid,
 * -1 a valid prefix that needs more bytes. */
static int utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	int len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return -1;
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		/* RFC 3629 4: no overlongs, surrogates or > U+10FFFF */
		if (i == 1 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
		               (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)))
			return 0;
	}
	return len;
}

static size_t put_cp(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	o[0] = (char)(0xe0 | cp >> 12);
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[2] = (char)(0x80 | (cp & 0x3f));
	return 3;
}

/* Validate UTF-8 from s; returns how many bytes were consumed (the rest is
 * an incomplete sequence when !final). */
static size_t feed_utf8(const unsigned char *s, size_t n, bool final, mime_sink_fn *sink, void *ctx)
{
	size_t i = 0, run = 0;

	while (i < n) {
		int l = utf8_len(s + i, n - i);

		if (l > 0) {
			i += (size_t)l;
			continue;
		}
		if (l < 0 && !final)
			break;
		if (i > run)
			sink(ctx, (const char *)s + run, i - run);
		sink(ctx, REPL, 3);
		i++;
		run = i;
	}
	if (i > run)
		sink(ctx, (const char *)s + run, i - run);
	return i;
}

static void feed_cp1252(const unsigned char *s, size_t n, mime_sink_fn *sink, void *ctx)
{
	char out[512];
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned cp = s[i];

		if (cp >= 0x80 && cp < 0xa0)
			cp = cp1252_hi[cp - 0x80] ? cp1252_hi[cp - 0x80] : 0xfffd;
		o += put_cp(out + o, cp);
		if (o > sizeof(out) - 4) {
			sink(ctx, out, o);
			o = 0;
		}
	}
	if (o > 0)
		sink(ctx, out, o);
}

static void feed_iconv(struct mime_charset *c, const unsigned char *in, size_t n, bool final,
                       mime_sink_fn *sink, void *ctx)
{
	char tmp[4096 + sizeof(c->carry)], out[8192];

	do {
		size_t take = n < 4096 ? n : 4096, len;
		char *ip = tmp, *op;
		size_t il, ol;

		memcpy(tmp, c->carry, c->ncarry);
		if (take > 0) {
			memcpy(tmp + c->ncarry, in, take);
			in += take;
			n -= take;
		}
		len = c->ncarry + take;
		c->ncarry = 0;
		il = len;
		while (il > 0) {
			size_t r;

			op = out;
			ol = sizeof(out);
			r = iconv(c->cd, &ip, &il, &op, &ol);
			if (op > out)
				feed_utf8((const unsigned char *)out, (size_t)(op - out), true,
				          sink, ctx);
			if (r != (size_t)-1)
				break;
			if (errno == E2BIG)
				continue;
			if (errno == EINVAL && (n > 0 || !final) && il <= sizeof(c->carry)) {
				memcpy(c->carry, ip, il);
				c->ncarry = il;
				break;
			}
			/* EILSEQ, or a truncated sequence at the very end */
			sink(ctx, REPL, 3);
			ip++;
			il--;
		}
	} while (n > 0);
	if (final) {
		char *op = out;
		size_t ol = sizeof(out);

		/* return a stateful encoding (ISO-2022-JP) to its initial state */
		iconv(c->cd, NULL, NULL, &op, &ol);
		if (op > out)
			feed_utf8((const unsigned char *)out, (size_t)(op - out), true, sink, ctx);
	}
}

void mime_charset_feed(struct mime_charset *c, const void *in, size_t n, bool final,
                       mime_sink_fn *sink, void *ctx)
{
	const unsigned char *s = in;

	switch (c->kind) {
	case MIME_CS_CP1252:
		feed_cp1252(s, n, sink, ctx);
		return;
	case MIME_CS_ICONV:
		/* glibc's stateful decoders (UTF-7, ISO-2022-*) report errors at
		 * positions that depend on where the input was cut, so the result
		 * would depend on how the message arrived.  Hold the (bounded)
		 * input and convert it in one pass at the end instead. */
		if (n > 0 && c->npending < MIME_CHARSET_ICONV_MAX) {
			size_t take = MIME_CHARSET_ICONV_MAX - c->npending;

			if (take > n)
				take = n;
			if (c->cappending - c->npending < take) {
				size_t want = c->cappending ? c->cappending : 4096;

				while (want - c->npending < take)
					want *= 2;
				if (want > MIME_CHARSET_ICONV_MAX)
					want = MIME_CHARSET_ICONV_MAX;
				c->pending = xrealloc(c->pending, want);
				c->cappending = want;
			}
			memcpy(c->pending + c->npending, s, take);
			c->npending += take;
		}
		if (final) {
			feed_iconv(c, c->pending, c->npending, true, sink, ctx);
			c->npending = 0;
		}
		return;
	default:
		break;
	}
	/* UTF-8: complete the carried sequence first, one byte at a time */
	while (c->ncarry > 0 && n > 0) {
		size_t used;

		c->carry[c->ncarry++] = *s++;
		n--;
		used = feed_utf8(c->carry, c->ncarry, false, sink, ctx);
		memmove(c->carry, c->carry + used, c->ncarry - used);
		c->ncarry -= used;
	}
	if (c->ncarry == 0) {
		size_t used = feed_utf8(s, n, final, sink, ctx);

		memcpy(c->carry, s + used, n - used);
		c->ncarry = n - used;
	}
	if (final && c->ncarry > 0) {
		feed_utf8(c->carry, c->ncarry, true, sink, ctx);
		c->ncarry = 0;
	}
}

static void buf_sink(void *ctx, const char *s, size_t n)
{
	buf_append(ctx, s, n);
}

void mime_charset_utf8_or_latin1(const void *in, size_t n, struct buf *out)
{
	const unsigned char *s = in;
	size_t i = 0, run = 0;

	while (i < n) {
		int l = utf8_len(s + i, n - i);
		char o[3];

		if (l > 0) {
			i += (size_t)l;
			continue;
		}
		if (i > run)
			buf_sink(out, (const char *)s + run, i - run);
		buf_append(out, o, put_cp(o, s[i]));
		i++;
		run = i;
	}
	if (i > run)
		buf_sink(out, (const char *)s + run, i - run);
}
