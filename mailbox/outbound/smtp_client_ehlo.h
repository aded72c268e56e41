/*
 * mailbox/outbound/smtp_client_ehlo.h -- what a server's EHLO reply offers.
 *
 * The first line of a 250 EHLO reply greets; every later line is one
 * extension: a keyword and space-separated parameters (RFC 5321 4.1.1.1).
 * Keywords are case-insensitive.  We note the ones the client uses:
 * PIPELINING (RFC 2920), SIZE [max] (RFC 1870), 8BITMIME (RFC 6152),
 * SMTPUTF8 (RFC 6531), STARTTLS (RFC 3207), AUTH mechanisms (RFC 4954;
 * the old "AUTH=..." spelling too), ENHANCEDSTATUSCODES (RFC 2034), DSN
 * (RFC 3461) and CHUNKING (RFC 3030); everything else is ignored.
 */
#ifndef MAILBOX_OUTBOUND_SMTP_CLIENT_EHLO_H
#define MAILBOX_OUTBOUND_SMTP_CLIENT_EHLO_H

#include "mailbox/outbound/smtp_client_reply.h"

#include <stdbool.h>
#include <stdint.h>

#define SMTP_CLIENT_AUTH_PLAIN 0x1u
#define SMTP_CLIENT_AUTH_LOGIN 0x2u

struct smtp_client_ext {
	bool pipelining, size, eightbitmime, smtputf8, starttls, enhancedstatuscodes, dsn, chunking;
	uint64_t size_max; /* SIZE's limit in bytes; 0 when none is given (or 0) */
	unsigned auth;     /* SMTP_CLIENT_AUTH_* offered */
};

/* Fill ext from a 250 EHLO reply (ext is cleared first). */
void smtp_client_ehlo_parse(const struct smtp_client_reply *r, struct smtp_client_ext *ext);

#endif
