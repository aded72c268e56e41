/*
 * mailbox/smtp/received.h -- the trace header an SMTP server adds.
 *
 * RFC 5321 4.4 requires a Received: line at the top of every accepted
 * message.  Ours names the client as the PROXY header reported it (the
 * real client, never the edge), the EHLO name, the listener, the protocol
 * keyword of RFC 3848 / RFC 6531 3.7.3, the TLS version and cipher, the
 * transaction id, the recipient when there is exactly one, and the date in
 * RFC 5322 3.3 form.  Client-supplied text is only ever written inside a
 * comment, with ( ) \ escaped, or as a syntactically checked domain, so
 * nothing a client sends can end the header or inject another.
 */
#ifndef MAILBOX_SMTP_RECEIVED_H
#define MAILBOX_SMTP_RECEIVED_H

#include "shared/buf.h"

#include <stdbool.h>
#include <time.h>

struct smtp_received {
	const char *helo;        /* EHLO/HELO argument, or NULL */
	const char *client_ip;   /* "192.0.2.1" / "2001:db8::1", or NULL if unknown */
	const char *hostname;    /* our name (the "by" domain) */
	const char *listener;    /* listener name, or NULL */
	const char *protocol;    /* from smtp_received_protocol() */
	const char *tls_version; /* NULL when the session is not under TLS */
	const char *tls_cipher;  /* may be NULL */
	const char *id;          /* transaction id */
	const char *rcpt;        /* the single recipient, or NULL */
	time_t when;
};

/*
 * The "with" keyword: SMTP after HELO; ESMTP, ESMTPA, ESMTPS, ESMTPSA
 * (RFC 3848) after EHLO; UTF8SMTP, UTF8SMTPA, UTF8SMTPS, UTF8SMTPSA
 * (RFC 6531 3.7.3) when the transaction used SMTPUTF8.  A static string.
 */
const char *smtp_received_protocol(bool esmtp, bool smtputf8, bool tls, bool auth);

/* Append the complete header field, folded, ending in CRLF, to out. */
void smtp_received_format(struct buf *out, const struct smtp_received *r);

/* Append an RFC 5322 3.3 date-time in UTC ("Fri, 27 Nov 2026 03:40:00 +0000"). */
void smtp_received_date(struct buf *out, time_t when);

#endif
