/*
 * mailbox/dkim/canon.h -- DKIM "relaxed" canonicalization (RFC 6376 3.4.2,
 * 3.4.4), for header fields and, streaming, for the body.
 *
 * Both functions are pure: bytes in, canonical bytes out, no allocation
 * beyond the caller's buffer, no I/O.  Only "relaxed" is implemented: it is
 * the only form we sign with (c=relaxed/relaxed), because "simple" breaks on
 * the whitespace changes that ordinary relays make.
 *
 * Line ends.  Messages reach the signer from our own store in CRLF form, but
 * to stay in step with the SMTP client (mailbox/outbound/smtp_client.h),
 * which sends a bare LF as CRLF (RFC 5321 2.3.8), a bare LF is read as a
 * line end here too.  A CR not followed by LF is ordinary content in both.
 * The signer therefore hashes exactly the lines the client puts on the wire.
 */
#ifndef MAILBOX_DKIM_CANON_H
#define MAILBOX_DKIM_CANON_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Append the relaxed form of one header field to out (RFC 6376 3.4.2):
 * the name lower-cased with trailing WSP removed, ":", the value unfolded
 * (every CRLF or LF removed), each run of WSP reduced to one SP, leading
 * and trailing WSP removed.  field is the raw field "Name: value" with any
 * folding but without its final line end; a field without ':' is taken as
 * a name with an empty value.  With crlf, "\r\n" is appended (every signed
 * field); without it nothing (the DKIM-Signature field itself, RFC 6376
 * 3.7).  Returns -1 if out's bound is hit (out may then hold part of it).
 */
int dkim_canon_header(const char *field, size_t len, bool crlf, struct buf *out);

/*
 * The relaxed body canonicalizer, streaming (RFC 6376 3.4.4): WSP at the
 * end of a line is removed, other WSP runs become one SP, empty lines at
 * the end are dropped, and a non-empty body ends with exactly one CRLF (an
 * empty body canonicalizes to nothing, as RFC 6376 3.4.4 reads and as
 * dkimpy and OpenDKIM implement it).  Lines of any length are fine: only
 * counters are kept, never a line.
 *
 * The output goes to sink(ctx, bytes, n) in pieces of at most
 * DKIM_CANON_CHUNK bytes.
 */
#define DKIM_CANON_CHUNK 4096

typedef void dkim_canon_sink(void *ctx, const uint8_t *p, size_t n);

struct dkim_canon_body {
	dkim_canon_sink *sink;
	void *ctx;
	uint64_t pending_crlf; /* line ends not yet emitted (trailing empty lines) */
	uint64_t out_total;    /* canonical bytes emitted so far */
	bool wsp;              /* a WSP run is pending inside the current line */
	bool cr;               /* the previous input byte was a CR */
	size_t n;              /* bytes in out[] */
	uint8_t out[DKIM_CANON_CHUNK];
};

void dkim_canon_body_init(struct dkim_canon_body *b, dkim_canon_sink *sink, void *ctx);
/* Feed n body bytes (any split). */
void dkim_canon_body_feed(struct dkim_canon_body *b, const void *data, size_t n);
/* End of body: emits the final CRLF if anything was emitted, flushes. */
void dkim_canon_body_finish(struct dkim_canon_body *b);

#endif
