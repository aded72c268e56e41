/*
 * mailbox/dkim/canon.c -- relaxed header and body canonicalization.
 *
 * The body canonicalizer is a byte-at-a-time state machine that keeps two
 * facts instead of a line: whether a WSP run is pending inside the current
 * line, and how many line ends have not been written yet.  A pending WSP
 * run is written as one SP only when non-WSP content follows on the same
 * line (so trailing WSP vanishes), and pending line ends are written only
 * when content follows on a later line (so trailing empty lines vanish).
 * Memory is constant whatever the line lengths or the body size.
 */
#include "mailbox/dkim/canon.h"

#include <string.h>

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

int dkim_canon_header(const char *field, size_t len, bool crlf, struct buf *out)
{
	const char *colon = memchr(field, ':', len);
	size_t nlen = colon ? (size_t)(colon - field) : len;
	size_t i;
	bool wsp = false, any = false;

	/* RFC 6376 3.4.2: lower-case the name, drop WSP before the colon */
	while (nlen > 0 && is_wsp((uint8_t)field[nlen - 1]))
		nlen--;
	for (i = 0; i < nlen; i++) {
		char c = field[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	if (buf_append(out, ":", 1) < 0)
		return -1;
	if (colon != NULL) {
		/* unfold, reduce WSP runs, strip both ends of the value */
		for (i = (size_t)(colon - field) + 1; i < len; i++) {
			uint8_t c = (uint8_t)field[i];
			if (c == '\r' && i + 1 < len && field[i + 1] == '\n')
				continue;
			if (c == '\n')
				continue;
			if (is_wsp(c)) {
				wsp = true;
				continue;
			}
			if (wsp && any && buf_append(out, " ", 1) < 0)
				return -1;
			wsp = false;
			any = true;
			if (buf_append(out, &c, 1) < 0)
				return -1;
		}
	}
	if (crlf && buf_append(out, "\r\n", 2) < 0)
		return -1;
	return 0;
}

void dkim_canon_body_init(struct dkim_canon_body *b, dkim_canon_sink *sink, void *ctx)
{
	memset(b, 0, offsetof(struct dkim_canon_body, out));
	b->sink = sink;
	b->ctx = ctx;
}

static void flush(struct dkim_canon_body *b)
{
	if (b->n > 0) {
		b->sink(b->ctx, b->out, b->n);
		b->out_total += b->n;
		b->n = 0;
	}
}

static void put(struct dkim_canon_body *b, uint8_t c)
{
	if (b->n == sizeof(b->out))
		flush(b);
	b->out[b->n++] = c;
}

/* Non-WSP content on the current line: write what was held back first. */
static void content(struct dkim_canon_body *b, uint8_t c)
{
	while (b->pending_crlf > 0) {
		put(b, '\r');
		put(b, '\n');
		b->pending_crlf--;
	}
	if (b->wsp) {
		put(b, ' ');
		b->wsp = false;
	}
	put(b, c);
}

static bool emitted_any(const struct dkim_canon_body *b)
{
	return b->out_total + b->n > 0;
}

void dkim_canon_body_feed(struct dkim_canon_body *b, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (b->cr) {
			b->cr = false;
			if (c == '\n') {
				b->wsp = false; /* trailing WSP is dropped */
				b->pending_crlf++;
				continue;
			}
			content(b, '\r'); /* a bare CR is content */
		}
		if (c == '\r') {
			b->cr = true;
		} else if (c == '\n') {
			b->wsp = false;
			b->pending_crlf++;
		} else if (is_wsp(c)) {
			b->wsp = true;
		} else {
			content(b, c);
		}
	}
}

void dkim_canon_body_finish(struct dkim_canon_body *b)
{
	if (b->cr) {
		b->cr = false;
		content(b, '\r');
	}
	/* RFC 6376 3.4.4: a non-empty body ends in exactly one CRLF; the
	 * held-back line ends beyond the first are the trailing empty lines */
	if (emitted_any(b)) {
		put(b, '\r');
		put(b, '\n');
	}
	b->pending_crlf = 0;
	b->wsp = false;
	flush(b);
}
