/*
 * mailbox/mime/decode.c -- Content-Transfer-Encoding decoders, streaming.
 *
 * Both decoders keep a few bits of state between chunks, so a body can be
 * decoded as it streams past without being held.  They are forgiving the
 * way readers must be (RFC 2045 6.7 note 1, 6.8 "any characters outside of
 * the base64 alphabet are to be ignored"): a bad "=XY" in quoted-printable
 * is passed through literally, non-alphabet bytes in base64 are skipped,
 * and "=" padding in the middle (concatenated base64) restarts a quantum.
 */
#include "mailbox/mime/mime_private.h"

#include <strings.h>

enum { QP_NORMAL, QP_EQ, QP_HEX1, QP_EQ_CR, QP_EQ_WS };

enum mime_enc mime_decode_enc(const char *cte)
{
	if (cte == NULL)
		return MIME_ENC_IDENTITY;
	if (strcasecmp(cte, "quoted-printable") == 0)
		return MIME_ENC_QP;
	if (strcasecmp(cte, "base64") == 0)
		return MIME_ENC_BASE64;
	return MIME_ENC_IDENTITY;
}

void mime_decode_init(struct mime_decoder *d, enum mime_enc enc)
{
	d->enc = enc;
	d->state = QP_NORMAL;
	d->acc = 0;
	d->nacc = 0;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

struct outq {
	char b[1024];
	size_t n;
	mime_sink_fn *sink;
	void *ctx;
};

static void out1(struct outq *o, char c)
{
	o->b[o->n++] = c;
	if (o->n == sizeof(o->b)) {
		o->sink(o->ctx, o->b, o->n);
		o->n = 0;
	}
}

static void out_flush(struct outq *o)
{
	if (o->n > 0)
		o->sink(o->ctx, o->b, o->n);
	o->n = 0;
}

static void qp_byte(struct mime_decoder *d, unsigned char c, struct outq *o)
{
	for (;;) {
		switch (d->state) {
		case QP_NORMAL:
			if (c == '=')
				d->state = QP_EQ;
			else
				out1(o, (char)c);
			return;
		case QP_EQ:
			if (hexval(c) >= 0) {
				d->acc = c;
				d->state = QP_HEX1;
				return;
			}
			if (c == '\r') {
				d->state = QP_EQ_CR;
				return;
			}
			if (c == '\n') {
				/* RFC 2045 6.7 rule 5: soft line break */
				d->state = QP_NORMAL;
				return;
			}
			if (c == ' ' || c == '\t') {
				d->state = QP_EQ_WS;
				return;
			}
			out1(o, '=');
			d->state = QP_NORMAL;
			continue;
		case QP_HEX1:
			if (hexval(c) >= 0) {
				out1(o, (char)(hexval((unsigned char)d->acc) << 4 | hexval(c)));
				d->state = QP_NORMAL;
				return;
			}
			out1(o, '=');
			out1(o, (char)d->acc);
			d->state = QP_NORMAL;
			continue;
		case QP_EQ_CR:
			d->state = QP_NORMAL;
			if (c == '\n')
				return;
			continue;
		case QP_EQ_WS:
			/* transport padding after a soft break "=  \r\n" */
			if (c == ' ' || c == '\t')
				return;
			if (c == '\r') {
				d->state = QP_EQ_CR;
				return;
			}
			d->state = QP_NORMAL;
			if (c == '\n')
				return;
			out1(o, '=');
			continue;
		}
		return;
	}
}

void mime_decode_feed(struct mime_decoder *d, const void *in, size_t n, mime_sink_fn *sink,
                      void *ctx)
{
	const unsigned char *s = in;
	struct outq o = {.n = 0, .sink = sink, .ctx = ctx};

	switch (d->enc) {
	case MIME_ENC_IDENTITY:
		if (n > 0)
			sink(ctx, in, n);
		return;
	case MIME_ENC_QP:
		for (size_t i = 0; i < n; i++)
			qp_byte(d, s[i], &o);
		break;
	case MIME_ENC_BASE64:
		for (size_t i = 0; i < n; i++) {
			int v = b64val(s[i]);

			if (s[i] == '=') {
				d->nacc = 0;
				continue;
			}
			if (v < 0)
				continue;
			d->acc = (d->acc << 6 | (unsigned)v) & 0xffffff;
			d->nacc += 6;
			if (d->nacc >= 8) {
				d->nacc -= 8;
				out1(&o, (char)(d->acc >> d->nacc & 0xff));
			}
		}
		break;
	}
	out_flush(&o);
}

void mime_decode_end(struct mime_decoder *d, mime_sink_fn *sink, void *ctx)
{
	struct outq o = {.n = 0, .sink = sink, .ctx = ctx};

	if (d->enc == MIME_ENC_QP) {
		if (d->state == QP_EQ || d->state == QP_EQ_WS)
			out1(&o, '=');
		else if (d->state == QP_HEX1) {
			out1(&o, '=');
			out1(&o, (char)d->acc);
		}
	}
	out_flush(&o);
	mime_decode_init(d, d->enc);
}

static void buf_sink(void *ctx, const char *s, size_t n)
{
	buf_append(ctx, s, n);
}

void mime_decode_base64(const char *s, size_t n, struct buf *out)
{
	struct mime_decoder d;

	mime_decode_init(&d, MIME_ENC_BASE64);
	mime_decode_feed(&d, s, n, buf_sink, out);
	mime_decode_end(&d, buf_sink, out);
}

void mime_decode_q(const char *s, size_t n, struct buf *out)
{
	/* RFC 2047 4.2: "_" is SPACE, "=XX" an octet, else literal */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '_') {
			c = ' ';
		} else if (c == '=' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
		           hexval((unsigned char)s[i + 2]) >= 0) {
			c = (char)(hexval((unsigned char)s[i + 1]) << 4 |
			           hexval((unsigned char)s[i + 2]));
			i += 2;
		}
		buf_append(out, &c, 1);
	}
}
