/*
 * mailbox/mime/mime_private.h -- what the files of mailbox/mime/ share.
 *
 * parser.c drives the stream; header.c splits and parses header blocks;
 * address.c parses RFC 5322 address lists; envelope.c and bodystructure.c
 * render IMAP strings; rfc2047.c, charset.c, decode.c and text.c turn
 * encoded text into bounded UTF-8; date.c parses Date:.
 */
#ifndef MAILBOX_MIME_PRIVATE_H
#define MAILBOX_MIME_PRIVATE_H

#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox/mime/parser.h"
#include "shared/buf.h"

/* ---- header.c ---- */

struct mime_field {
	char *name;
	char *value; /* unfolded (CR and LF removed), trimmed, NUL -> U+FFFD */
};

struct mime_fields {
	struct mime_field *v;
	size_t n;
};

struct mime_param {
	char *name;
	char *value;
};

struct mime_params {
	struct mime_param *v;
	size_t n;
};

/* Parsed Content-* fields of one entity (RFC 2045, 2183, 3066, 2557). */
struct mime_content {
	char *type, *subtype; /* case as sent */
	struct mime_params params;
	char *id, *description, *encoding, *md5, *location;
	char *disposition;
	struct mime_params disp_params;
	char **lang;
	size_t nlang;
	bool has_type; /* a parsable Content-Type was present */
};

/*
 * Split a raw header block (without the blank line) into fields.  Lines
 * without a colon, or whose name holds spaces or controls, are skipped;
 * continuation lines (leading WSP) are unfolded into the previous field.
 */
void mime_header_split(const char *raw, size_t len, struct mime_fields *out);
void mime_header_fields_free(struct mime_fields *f);
/* The value of the first field named name (case-insensitive), or NULL. */
const char *mime_header_get(const struct mime_fields *f, const char *name);
/* Parse the Content-* fields; dflt_rfc822 for children of multipart/digest. */
void mime_header_content(const struct mime_fields *f, bool dflt_rfc822, struct mime_content *c);
void mime_header_content_free(struct mime_content *c);
/* The value of parameter name (case-insensitive), or NULL. */
const char *mime_header_param(const struct mime_params *p, const char *name);
/* Parse ";"-separated parameters after a value (RFC 2045 5.1, RFC 2231). */
void mime_header_params(const char *s, struct mime_params *out);
void mime_header_params_free(struct mime_params *p);

/* ---- address.c ---- */

/*
 * One element of an address list as the IMAP ENVELOPE sees it (RFC 3501
 * 7.4.2): a mailbox, a group start (mailbox = group name, host NULL) or a
 * group end (all NULL).  name keeps encoded-words as sent.
 */
struct mime_address {
	char *name, *adl, *mailbox, *host;
	bool is_group_start, is_group_end;
};

struct mime_addresses {
	struct mime_address *v;
	size_t n;
};

/* Parse an RFC 5322 address-list leniently; never fails. */
void mime_address_parse(const char *s, struct mime_addresses *out);
void mime_address_free(struct mime_addresses *a);
/* Append "Name <mbox@host>, ..." decoded to UTF-8 to b. */
void mime_address_display(const struct mime_addresses *a, struct buf *b);

/* ---- envelope.c ---- */

/* Render the ENVELOPE of a message whose header fields are f. */
char *mime_envelope_write(const struct mime_fields *f);

/* ---- charset.c ---- */

typedef void mime_sink_fn(void *ctx, const char *s, size_t n);

struct mime_charset {
	int kind; /* MIME_CS_* in charset.c */
	iconv_t cd;
	unsigned char carry[16];
	size_t ncarry;
	/* iconv charsets: input held until the final call (bounded by
	 * MIME_CHARSET_ICONV_MAX), see charset.c */
	unsigned char *pending;
	size_t npending, cappending;
};

/* Input bytes of one iconv-converted part kept for conversion; beyond it
 * the rest of the part is not converted (search text is bounded anyway). */
#define MIME_CHARSET_ICONV_MAX (1024 * 1024)

/* Prepare a converter from charset name (NULL: us-ascii) to UTF-8.  An
 * unknown charset is treated as UTF-8 with invalid bytes replaced. */
void mime_charset_open(struct mime_charset *c, const char *name);
/* Convert in[0..n) and pass valid UTF-8 to sink; final flushes the rest. */
void mime_charset_feed(struct mime_charset *c, const void *in, size_t n, bool final,
                       mime_sink_fn *sink, void *ctx);
void mime_charset_close(struct mime_charset *c);
/* True if the charset is known to us or to iconv. */
bool mime_charset_known(const char *name);
/* Append valid UTF-8 from s[0..n): invalid bytes become their Latin-1
 * code point (the usual meaning of raw 8-bit header bytes). */
void mime_charset_utf8_or_latin1(const void *s, size_t n, struct buf *out);

/* ---- decode.c ---- */

enum mime_enc { MIME_ENC_IDENTITY, MIME_ENC_QP, MIME_ENC_BASE64 };

struct mime_decoder {
	enum mime_enc enc;
	int state;
	unsigned acc, nacc;
};

enum mime_enc mime_decode_enc(const char *cte);
void mime_decode_init(struct mime_decoder *d, enum mime_enc enc);
/* Decode in[0..n); decoded octets go to sink.  Never fails: bad input is
 * passed through (QP) or skipped (base64). */
void mime_decode_feed(struct mime_decoder *d, const void *in, size_t n, mime_sink_fn *sink,
                      void *ctx);
void mime_decode_end(struct mime_decoder *d, mime_sink_fn *sink, void *ctx);
/* One-shot helpers for encoded-words (RFC 2047 4.1 "B", 4.2 "Q"). */
void mime_decode_base64(const char *s, size_t n, struct buf *out);
void mime_decode_q(const char *s, size_t n, struct buf *out);

/* ---- rfc2047.c ---- */

/* Decode encoded-words in an unstructured header value to UTF-8, appended
 * to out (RFC 2047; whitespace between adjacent encoded-words dropped). */
void mime_rfc2047_decode(const char *s, size_t n, struct buf *out);
/* As above into a fresh NUL-terminated string. */
char *mime_rfc2047_decode_str(const char *s);

/* ---- text.c ---- */

/* A bounded UTF-8 accumulator for search text. */
struct mime_text {
	struct buf b;
	size_t max;
	bool truncated;
};

void mime_text_init(struct mime_text *t, size_t max);
void mime_text_free(struct mime_text *t);
/* Append valid UTF-8; NULs become spaces, CRs are dropped; stops at max on a character
 * boundary and sets truncated.  Usable as a mime_sink_fn. */
void mime_text_sink(void *t, const char *s, size_t n);
bool mime_text_full(const struct mime_text *t);
/* Hand the text over as a NUL-terminated string (length in *len_r). */
char *mime_text_take(struct mime_text *t, size_t *len_r);

/* ---- date.c ---- */

/* Parse an RFC 5322 date-time (with obsolete forms); false if unparsable. */
bool mime_date_parse(const char *s, int64_t *t_r);

/* ---- bodystructure.c ---- */

enum mime_kind { MIME_K_BASIC, MIME_K_MULTIPART, MIME_K_MESSAGE };

struct mime_entity {
	struct mime_entity *parent, *first, *last, *next;
	unsigned depth;
	enum mime_kind kind;
	bool is_text;
	bool in_header;
	bool closed; /* multipart: close-delimiter seen */
	uint64_t hdr_start, body_start, body_end;
	uint64_t lf_body_start, lines;
	struct mime_content ct;
	char *envelope; /* entities that are messages (root, rfc822 child) */
	char *boundary;
	size_t blen;
	unsigned nchildren;
};

/* Append the BODYSTRUCTURE (extended) or BODY form of entity e to b. */
void mime_bodystructure_write(struct buf *b, const struct mime_entity *e, bool extended);

#endif
