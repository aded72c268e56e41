/*
 * mailbox/imap/quota.c -- GETQUOTA and GETQUOTAROOT (RFC 9208).
 *
 * One quota root per account, named "" (as Dovecot does), with the
 * STORAGE resource in units of 1024 octets; the numbers come from the
 * directory through ops.quota.  An account without a limit has no quota
 * root at all (RFC 9208 4.3.2: GETQUOTAROOT then lists none).  SETQUOTA
 * is refused in session.c: limits are the administrator's.
 */
#include "mailbox/imap/session_private.h"

#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool quota_root_cmd(const struct imap_session *s)
{
	return strcmp(s->cmd_name, "GETQUOTAROOT") == 0;
}

void imap_session_quota_done(struct imap_session *s, enum imap_store_status st, uint64_t used,
                             uint64_t limit)
{
	if (!imap_session_complete(s, IMAP_OP_QUOTA))
		return;
	if (st != IMAP_STORE_OK) {
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	if (quota_root_cmd(s)) {
		imap_puts(s, "* QUOTAROOT ");
		imap_write_mbox(s, s->pending_name);
		imap_puts(s, limit > 0 ? " \"\"\r\n" : "\r\n");
	} else if (limit == 0) {
		imap_cmd_finish(s, "NO", "[NONEXISTENT]", "No such quota root");
		return;
	}
	if (limit > 0)
		imap_printf(s, "* QUOTA \"\" (STORAGE %" PRIu64 " %" PRIu64 ")\r\n",
		            (used + 1023) / 1024, limit / 1024);
	imap_cmd_finish(s, "OK", NULL,
	                quota_root_cmd(s) ? "Getquotaroot completed" : "Getquota completed");
}

void imap_cmd_getquota(struct imap_session *s, const struct imap_command *c, bool root)
{
	const char *why;

	if (c->nargs != 1 || !imap_arg_is_astring(&c->args[0])) {
		imap_cmd_bad(s,
		             root ? "GETQUOTAROOT needs a mailbox" : "GETQUOTA needs a quota root");
		return;
	}
	free(s->pending_name);
	s->pending_name = NULL;
	if (root) {
		s->pending_name = imap_mbox_arg(s, &c->args[0], &why);
		if (s->pending_name == NULL) {
			imap_cmd_finish(s, "NO", NULL, why);
			return;
		}
	} else if (c->args[0].len != 0) {
		imap_cmd_finish(s, "NO", "[NONEXISTENT]", "No such quota root");
		return;
	}
	imap_op_begin(s, IMAP_OP_QUOTA);
	s->ops->quota(s->ctx);
}
