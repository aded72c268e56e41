/*
 * mailbox/outbound/smtp_client_reply.h -- the SMTP reply parser of the
 * outbound client: pure, incremental, bounded.
 *
 * RFC 5321 4.2:
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                   Reply-code [ SP textstring ] CRLF
 * Bytes go in as they arrive, in any split; a complete reply comes out as
 * its code, its enhanced status code (RFC 2034/3463, when the first line's
 * text starts with one of the reply's class) and its text lines joined by
 * '\n'.  Choices:
 *
 * - Every line must carry the same code; a different one, a code outside
 *   200-599, or a fourth character other than SP, '-' or the line end is
 *   a syntax error: the client cannot trust anything after it and treats
 *   it as a temporary failure (see smtp_client.h).
 * - A bare LF ends a line as CRLF would (many servers are sloppy here and
 *   no ambiguity results); a CR not followed by LF is text.
 * - Control bytes in the text are kept as spaces.  Text beyond
 *   SMTP_CLIENT_TEXT_MAX bytes is dropped (the reply is still parsed to
 *   its end, marked truncated); a line longer than SMTP_CLIENT_LINE_MAX
 *   (four times RFC 5321 4.5.3.1.5's 512) or more than
 *   SMTP_CLIENT_REPLY_LINES lines is an error, so a hostile server cannot
 *   make us read forever.
 */
#ifndef MAILBOX_OUTBOUND_SMTP_CLIENT_REPLY_H
#define MAILBOX_OUTBOUND_SMTP_CLIENT_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_CLIENT_LINE_MAX    2048
#define SMTP_CLIENT_REPLY_LINES 256
#define SMTP_CLIENT_TEXT_MAX    4096

enum smtp_client_reply_status {
	SMTP_CLIENT_REPLY_OK = 0,       /* a complete reply is in parser.reply */
	SMTP_CLIENT_REPLY_NEED_MORE,    /* all input consumed, the reply goes on */
	SMTP_CLIENT_REPLY_ERR_SYNTAX,   /* not a well-formed reply */
	SMTP_CLIENT_REPLY_ERR_TOO_LONG, /* a line or the line count passed its bound */
};

struct smtp_client_reply {
	int code;      /* 200..599 */
	char esc[16];  /* "5.1.1", or "" */
	size_t nlines; /* >= 1 */
	bool truncated;
	size_t textlen;
	char text[SMTP_CLIENT_TEXT_MAX + 1]; /* lines joined by '\n', NUL-terminated */
};

struct smtp_client_reply_parser {
	int state;
	int line_code;
	size_t linelen;
	bool last;  /* the current line is the last one (SP, or no separator) */
	bool error; /* sticky */
	bool done;  /* the previous call returned OK: start afresh */
	struct smtp_client_reply reply;
};

void smtp_client_reply_init(struct smtp_client_reply_parser *p);

/*
 * Parse from data.  *consumed_r receives how many bytes were used: up to
 * and including the reply's last line end for OK, everything for
 * NEED_MORE, the offending byte's offset for an error.  After OK the
 * reply stays in p->reply until the next call, which starts a new one.
 * Errors are sticky: every later call returns the same error.
 */
enum smtp_client_reply_status smtp_client_reply_parse(struct smtp_client_reply_parser *p,
                                                      const uint8_t *data, size_t len,
                                                      size_t *consumed_r);

/* The status as a short word, for logs and test messages. */
const char *smtp_client_reply_status_name(enum smtp_client_reply_status st);

#endif
