/*
 * mailbox/mime/rfc2047.c -- encoded-words in header values to UTF-8.
 *
 * RFC 2047: "=?charset?B|Q?text?=".  Adjacent encoded-words separated only
 * by whitespace are joined without it (RFC 2047 6.2), and their decoded
 * octets are converted together when they share a charset, because
 * senders split multibyte characters across words.  An RFC 2231 language
 * suffix ("utf-8*en") is dropped.  Text outside encoded-words is kept; raw
 * 8-bit bytes in it are taken as UTF-8 when valid, else as Latin-1.  An
 * encoded-word with whitespace inside or an unknown encoding is left as
 * it is, like the text around it.
 */
#include "mailbox/mime/mime_private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/xmalloc.h"

struct ew {
	const char *charset;
	size_t charset_len;
	char enc;
	const char *text;
	size_t text_len;
	size_t len; /* whole encoded-word */
};

static bool parse_ew(const char *s, size_t n, struct ew *w)
{
	size_t i = 2, cs, te;

	if (n < 8 || s[0] != '=' || s[1] != '?')
		return false;
	cs = i;
	while (i < n && s[i] != '?' && s[i] > ' ' && (unsigned char)s[i] < 0x7f)
		i++;
	if (i >= n || s[i] != '?' || i == cs)
		return false;
	w->charset = s + cs;
	w->charset_len = i - cs;
	i++;
	if (i + 1 >= n || s[i + 1] != '?')
		return false;
	w->enc = s[i];
	if (w->enc != 'B' && w->enc != 'b' && w->enc != 'Q' && w->enc != 'q')
		return false;
	i += 2;
	te = i;
	while (i + 1 < n && !(s[i] == '?' && s[i + 1] == '=')) {
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')
			return false;
		i++;
	}
	if (i + 1 >= n)
		return false;
	w->text = s + te;
	w->text_len = i - te;
	w->len = i + 2;
	return true;
}

static void out_sink(void *ctx, const char *s, size_t n)
{
	buf_append(ctx, s, n);
}

static void flush(char *charset, struct buf *pend, struct buf *out)
{
	struct mime_charset c;

	if (buf_len(pend) == 0)
		return;
	mime_charset_open(&c, charset);
	mime_charset_feed(&c, buf_ptr(pend), buf_len(pend), true, out_sink, out);
	mime_charset_close(&c);
	buf_reset(pend);
}

static bool all_wsp(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

void mime_rfc2047_decode(const char *s, size_t n, struct buf *out)
{
	struct buf pend;
	char charset[64] = "";
	size_t raw = 0;
	bool last_ew = false;

	buf_init(&pend, 0);
	for (size_t i = 0; i < n;) {
		struct ew w;
		char cs[64];
		size_t cl;
		const char *star;

		if (s[i] != '=' || !parse_ew(s + i, n - i, &w)) {
			i++;
			continue;
		}
		if (!(last_ew && all_wsp(s + raw, i - raw))) {
			flush(charset, &pend, out);
			mime_charset_utf8_or_latin1(s + raw, i - raw, out);
		}
		cl = w.charset_len < sizeof(cs) - 1 ? w.charset_len : sizeof(cs) - 1;
		memcpy(cs, w.charset, cl);
		cs[cl] = '\0';
		if ((star = strchr(cs, '*')) != NULL)
			cs[star - cs] = '\0';
		if (strcasecmp(cs, charset) != 0) {
			flush(charset, &pend, out);
			memcpy(charset, cs, sizeof(cs));
		}
		if (w.enc == 'B' || w.enc == 'b')
			mime_decode_base64(w.text, w.text_len, &pend);
		else
			mime_decode_q(w.text, w.text_len, &pend);
		i += w.len;
		raw = i;
		last_ew = true;
	}
	flush(charset, &pend, out);
	mime_charset_utf8_or_latin1(s + raw, n - raw, out);
	buf_free(&pend);
}

char *mime_rfc2047_decode_str(const char *s)
{
	struct buf b;
	char *r;

	buf_init(&b, 0);
	mime_rfc2047_decode(s, strlen(s), &b);
	/* "=00" must not cut the string short */
	for (size_t i = 0; i < buf_len(&b); i++)
		if (buf_ptr(&b)[i] == '\0')
			buf_ptr(&b)[i] = ' ';
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	buf_free(&b);
	return r;
}
