/*
 * mailbox/delivery/hdrfix.h -- add Date: and Message-ID: to a streamed
 * message header when they are missing (submission).
 *
 * RFC 6409 8.2 and 8.3 let a Message Submission Agent add a missing
 * Message-ID and Date (RFC 5322 3.6 requires Date and recommends
 * Message-ID).  Whether they are missing is only known at the end of the
 * header, and the message arrives in pieces, so this is a small streaming
 * filter: bytes in, the same bytes out through a callback, with the missing
 * fields inserted where the header ends:
 *
 *   - at the empty line that separates header and body (the fields go
 *     right before it);
 *   - at the first line that is no header field (no "name:" and no
 *     folded continuation): the fields go before it, followed by the
 *     missing empty line (a message like "hello\r\n" gets a header);
 *   - at the end of the message when it is all header (after a CRLF is
 *     added to an unterminated last line).
 *
 * Field names are matched case-insensitively, exactly ("Resent-Date" is
 * not "Date"), allowing the obsolete white space before the colon (RFC
 * 5322 4.5).  Only the start of each line is held back, until it is clear
 * whether it starts a field (at most HDRFIX_HOLD bytes; a longer name is
 * taken as a field), so memory stays bounded for any header.
 *
 * Pure: no I/O, no allocation, no clock; the caller passes the values.
 * Input is expected with CRLF line ends (the SMTP decoder normalises
 * them); a bare LF is also understood as a line end.
 */
#ifndef MAILBOX_DELIVERY_HDRFIX_H
#define MAILBOX_DELIVERY_HDRFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HDRFIX_HOLD 100 /* bytes of a line start held while deciding */

/* Output callback: 0, or -1 to stop (the error is returned by feed/finish). */
typedef int hdrfix_out_fn(void *ctx, const uint8_t *p, size_t n);

struct hdrfix {
	hdrfix_out_fn *out;
	void *ctx;
	const char *date;  /* value for a missing Date: (caller-owned) */
	const char *msgid; /* value for a missing Message-ID:, with <> */
	int state;         /* private */
	uint8_t hold[HDRFIX_HOLD];
	size_t nhold;
	size_t name_len; /* bytes of the field name in hold */
	bool have_date, have_msgid;
	bool done;     /* the header ended; the rest passes through */
	bool mid_line; /* the last byte written was not a line end */
	bool failed;   /* out returned -1 */
};

/*
 * Start filtering: out(ctx, ...) receives the result.  date and msgid
 * must stay valid until hdrfix_finish() (e.g. "Fri, 27 Nov 2026 03:40:00
 * +0000" and "<x@mail.example.org>").
 */
void hdrfix_init(struct hdrfix *h, const char *date, const char *msgid, hdrfix_out_fn *out,
                 void *ctx);

/* Filter p[0..n).  0, or -1 once out has failed (nothing more is written). */
int hdrfix_feed(struct hdrfix *h, const uint8_t *p, size_t n);

/* End of the message: write what is held back and, if the header never
 * ended, the missing fields.  0 or -1 as for feed. */
int hdrfix_finish(struct hdrfix *h);

#endif
