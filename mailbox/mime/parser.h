/*
 * mailbox/mime/parser.h -- the streaming MIME parser run once at delivery.
 *
 * A message is fed in chunks of any size; the parser keeps only headers
 * (each entity's header bounded by max_header) and, per part, offsets, sizes
 * and line counts.  Body bytes are scanned once: for boundaries and, for
 * text parts, decoded into the bounded search text.  At the end it hands
 * back everything IMAP needs without reading the blob again (DESIGN.md:
 * "envelope, body structure, flags and search text are computed once at
 * delivery"):
 *   - ENVELOPE, BODY and BODYSTRUCTURE as ready-to-send IMAP strings
 *     (RFC 3501 7.4.2, RFC 9051 7.5.2);
 *   - the part table for BODY[section] fetches (RFC 3501 6.4.5);
 *   - the header fields stored in Postgres, decoded to UTF-8 (RFC 2047);
 *   - the search text: decoded header values and text/plain bodies.
 * The parser never fails: malformed input (no header, missing boundaries,
 * bad encodings, NULs, CR-only lines, absurd nesting) still yields a
 * well-formed result describing what was found.
 *
 * Sizes and offsets are octets of the stored message (physical, not the
 * CRLF-normalised "virtual" sizes Dovecot reports for LF-only Maildir
 * files); messages delivered by SMTP are stored with CRLF so both agree.
 */
#ifndef MAILBOX_MIME_PARSER_H
#define MAILBOX_MIME_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_limits {
	size_t max_header;        /* header octets kept per entity (64 KiB) */
	size_t max_search_body;   /* UTF-8 octets of body search text (512 KiB) */
	size_t max_search_header; /* UTF-8 octets of header search text (64 KiB) */
	unsigned max_depth;       /* nesting of multiparts/messages (32) */
	unsigned max_parts;       /* entities in one message (10000) */
};

/*
 * One addressable part.  section is "" for the whole message, else the
 * RFC 3501 part number ("1", "1.2").  For a fetch of section S:
 *   BODY[S]        [body_start, body_end)   (S == "": the whole message)
 *   BODY[S.MIME]   [hdr_start, body_start)
 *   BODY[S.HEADER] [body_start, msg_body_start)  when is_message
 *   BODY[S.TEXT]   [msg_body_start, body_end)    when is_message
 * The root entry ("") has hdr_start 0 and HEADER/TEXT are its header and
 * body.  A non-multipart message also has part "1" (its own body).
 */
struct mime_part {
	char *section;
	uint64_t hdr_start;
	uint64_t body_start;
	uint64_t body_end;
	uint64_t msg_body_start; /* is_message only */
	uint64_t lines;          /* LF count in the body */
	bool is_multipart;
	bool is_message; /* message/rfc822: has HEADER and TEXT */
};

struct mime_result {
	uint64_t size;       /* octets fed */
	char *envelope;      /* "(date subject (from) ...)" */
	char *bodystructure; /* with extension data */
	char *body;          /* non-extensible BODY */
	struct mime_part *parts;
	size_t nparts;

	/* Header fields of the top-level message, NULL when absent.  Address
	 * lists and subject are RFC 2047-decoded UTF-8 ("Name <a@b>, c@d");
	 * message ids are the raw ids, whitespace-normalised. */
	char *from, *to, *cc, *bcc, *reply_to, *subject;
	char *message_id, *in_reply_to, *references;
	/* Lower-cased addr-spec of the first From/To/Cc address (RFC 5256
	 * SORT keys), NULL when there is none. */
	char *from_addr, *to_addr, *cc_addr;
	bool has_date;
	int64_t date; /* seconds since the epoch, from Date: */

	/* Search text, valid UTF-8 without NULs, each cut at a character
	 * boundary at its limit.  Header text is "Name: value\n" per field. */
	char *search_header;
	size_t search_header_len;
	char *search_body;
	size_t search_body_len;
	bool search_truncated;
};

struct mime_parser;

/* Default limits (values in the struct comments). */
void mime_limits_default(struct mime_limits *lim);

/* A parser for one message; lim NULL means the defaults.  Never fails. */
struct mime_parser *mime_parser_new(const struct mime_limits *lim);
/* Feed the next len octets of the message; any split is allowed. */
void mime_parser_feed(struct mime_parser *p, const void *data, size_t len);
/*
 * End of message: frees *pp, sets it to NULL and returns the result, which
 * the caller frees with mime_result_free().
 */
struct mime_result *mime_parser_finish(struct mime_parser **pp);
/* Abandon a parser without a result; accepts NULL and *pp == NULL. */
void mime_parser_free(struct mime_parser **pp);
/* Free a result; accepts NULL and *rp == NULL; sets *rp to NULL. */
void mime_result_free(struct mime_result **rp);
/* Convenience: parse a whole message held in memory. */
struct mime_result *mime_parse(const void *data, size_t len, const struct mime_limits *lim);

#endif
