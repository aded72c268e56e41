/*
 * mailbox/imap/idle.c -- IDLE (RFC 2177; RFC 9051 6.3.13).
 *
 * "+ idling", then the session reads lines, not commands, until DONE.
 * While idling, a notification from the glue (imap_session_notify) syncs
 * at once, so changes made elsewhere reach the client as untagged
 * EXISTS/EXPUNGE/FETCH within one store round trip; the glue's timer
 * calls imap_session_idle_tick() for the keepalive.  Commands the client
 * pipelined after DONE (Apple Mail does) stay with the caller and are
 * handled once the tagged OK is out.
 */
#include "mailbox/imap/session_private.h"

#include <strings.h>

void imap_cmd_idle(struct imap_session *s, const struct imap_command *c)
{
	if (c->nargs != 0) {
		imap_cmd_bad(s, "IDLE takes no arguments");
		return;
	}
	imap_puts(s, "+ idling\r\n");
	s->mode = IMAP_MODE_IDLE;
	/* catch up first: what happened since the last command */
	if (s->state == IMAP_STATE_SELECTED)
		imap_sync_start(s);
}

void imap_idle_line(struct imap_session *s, const char *line)
{
	s->mode = IMAP_MODE_COMMAND;
	if (line != NULL && strcasecmp(line, "DONE") == 0) {
		imap_cmd_finish(s, "OK", NULL, "Idle completed");
		return;
	}
	imap_cmd_bad(s, "Expected DONE");
}

void imap_idle_notify(struct imap_session *s)
{
	imap_sync_start(s);
}
