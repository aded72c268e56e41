/*
 * mailbox/dkim/sign.h -- DKIM signing (RFC 6376), streaming, with several
 * signatures per message (RFC 8463 ed25519-sha256 and rsa-sha256 together).
 *
 * Use:
 *   s = dkim_sign_new(specs, n, &opts, &err);
 *   dkim_sign_feed(s, chunk, len) ... for every chunk of the message;
 *   dkim_sign_finish(s, &out, &err);   out receives the DKIM-Signature
 *                                      fields to put in front of the message
 *   dkim_sign_free(&s);
 *
 * Memory: the header block is kept (it must be, to pick the signed fields
 * once it is complete), bounded by opts.header_max; the body is never
 * kept: it flows through the relaxed canonicalizer into one SHA-256 that
 * all signatures share (they all use relaxed body canonicalization, sha256
 * and no l=), so a 50 MB message costs the same memory as a small one.
 *
 * What is signed (documented choice):
 *   c=relaxed/relaxed, no l= (a length limit lets anyone append content),
 *   t= from opts.now, x= when the spec asks for it, i= when given.
 *   h= lists every field of the header set that the message has, as many
 *   times as it occurs (RFC 6376 5.4.2 picks instances bottom-up), in the
 *   order of the set; then once more each "over-signed" name.  An h= entry
 *   with no field left to match signs the field's absence, so a From (by
 *   default the only over-signed name) added later in transit breaks the
 *   signature; this is the defence RFC 6376 8.15 recommends against a
 *   second, forged From that a mail reader might display.  We over-sign
 *   only From: over-signing To/Cc/Subject as well would also break
 *   signatures when lists legitimately add, say, a Reply-To or List-*
 *   field -- too high a price for little gain.
 *   The default set (DKIM_SIGN_HEADERS): from, to, cc, subject, date,
 *   message-id, reply-to, in-reply-to, references, mime-version,
 *   content-type, content-transfer-encoding.
 *
 * Input: the message as it will be sent (CRLF line ends; a bare LF counts
 * as CRLF, see canon.h).  Fields end at the first empty line; a message
 * without one is all header and has an empty body.
 */
#ifndef MAILBOX_DKIM_SIGN_H
#define MAILBOX_DKIM_SIGN_H

#include "mailbox/dkim/key.h"
#include "shared/buf.h"

#include <stddef.h>
#include <stdint.h>

#define DKIM_HEADER_MAX (256 * 1024) /* default bound on the header block */
#define DKIM_SIGN_MAX   8            /* signatures per message */

/* One signature to add. */
struct dkim_sign_spec {
	const struct dkim_key *key; /* borrowed; must outlive the signer */
	const char *domain;         /* d=: the signing domain */
	const char *selector;       /* s= */
	const char *identity;       /* i= ("@domain" or "user@sub.domain"), or NULL */
	int64_t expire_secs;        /* x= = t= + this when > 0 (RFC 6376 3.5) */
};

struct dkim_sign_opts {
	int64_t now;                 /* t=: seconds since the epoch */
	size_t header_max;           /* 0: DKIM_HEADER_MAX */
	const char *const *headers;  /* NULL-terminated field names to sign, or NULL:
	                                the default set */
	const char *const *oversign; /* NULL-terminated names to over-sign, or NULL:
	                                {"from"}; an empty list turns it off */
};

/* The default set, NULL-terminated. */
extern const char *const dkim_sign_default_headers[];

struct dkim_sign;

/*
 * A signer for n (1..DKIM_SIGN_MAX) signatures.  The spec strings are
 * copied; the keys are borrowed.  Refuses (NULL, *errstr_r) a domain or
 * selector that is not a dot-separated run of letters, digits, '-' and
 * '_', an identity that has a ';', white space or a control byte or whose
 * domain is not d= or below it (RFC 6376 3.5 i=), and names in the lists
 * that are not field names (RFC 5322 2.2: printable ASCII except ':').
 * A header set without "from" is refused too (RFC 6376 5.4: From MUST be
 * signed).
 */
struct dkim_sign *dkim_sign_new(const struct dkim_sign_spec *specs, size_t n,
                                const struct dkim_sign_opts *opts, const char **errstr_r);

/*
 * Feed the next n bytes of the message.  0, or -1 once the header block
 * has passed the bound (every later call and dkim_sign_finish() fail too).
 */
int dkim_sign_feed(struct dkim_sign *s, const void *data, size_t n);

/*
 * End of message: compute every signature and append the DKIM-Signature
 * fields to out, in spec order, each folded to lines of at most 78
 * characters and ending in CRLF; the caller puts them in front of the
 * message unchanged.  0, or -1 with *errstr_r (the header bound was hit,
 * or a signing operation failed).  Call once.
 */
int dkim_sign_finish(struct dkim_sign *s, struct buf *out, const char **errstr_r);

void dkim_sign_free(struct dkim_sign **sp);

#endif
