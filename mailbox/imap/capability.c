/*
 * mailbox/imap/capability.c -- what the server says it can do.
 *
 * The list depends on the state (RFC 3501 7.2.1: it may change after
 * STARTTLS and LOGIN): before authentication only what a client needs to
 * log in is shown, with STARTTLS while it is available and LOGINDISABLED
 * plus no AUTH= mechanism while logging in would send a password in the
 * clear; after authentication the extensions.  Each entry is here once,
 * so the greeting, CAPABILITY and the LOGIN response code agree.
 */
#include "mailbox/imap/session_private.h"

#include <string.h>

bool imap_auth_allowed(const struct imap_session *s)
{
	return s->tls || s->cfg.allow_plaintext_auth;
}

/* Extensions offered once logged in, in the order clients see them. */
static const char *const logged_in[] = {
        "SASL-IR",       "LITERAL+",    "ID",
        "ENABLE",        "IDLE",        "NAMESPACE",
        "UIDPLUS",       "MOVE",        "UNSELECT",
        "CHILDREN",      "SPECIAL-USE", "CREATE-SPECIAL-USE",
        "LIST-EXTENDED", "LIST-STATUS", "CONDSTORE",
        "QRESYNC",       "ESEARCH",     "SORT",
        "STATUS=SIZE",   "QUOTA",       "QUOTA=RES-STORAGE",
        "UTF8=ACCEPT",
};

void imap_capability_write(struct imap_session *s, struct buf *b)
{
	buf_puts(b, "IMAP4rev1");
	if (s->cfg.imap4rev2)
		buf_puts(b, " IMAP4rev2");
	if (s->state == IMAP_STATE_NOAUTH) {
		buf_puts(b, " SASL-IR LITERAL+ ID ENABLE IDLE");
		if (!s->tls && s->cfg.starttls_available)
			buf_puts(b, " STARTTLS");
		if (imap_auth_allowed(s))
			buf_puts(b, " AUTH=PLAIN");
		else
			buf_puts(b, " LOGINDISABLED");
		return;
	}
	for (size_t i = 0; i < sizeof(logged_in) / sizeof(logged_in[0]); i++) {
		buf_puts(b, " ");
		buf_puts(b, logged_in[i]);
	}
}
