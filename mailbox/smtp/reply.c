/*
 * mailbox/smtp/reply.c -- the reply table and its one formatter.
 *
 * The "%s" is spliced in by hand rather than through printf, so the table
 * stays plain data (no format strings from a table reach vsnprintf).
 */
#include "mailbox/smtp/reply.h"

#include "shared/log.h"

#include <stdio.h>
#include <string.h>

#define SMTP_REPLY_ROW(id, c, e, t) {#id, c, e, t},
static const struct smtp_reply_info replies[SMTP_R_COUNT] = {SMTP_REPLY_LIST(SMTP_REPLY_ROW)};
#undef SMTP_REPLY_ROW

const struct smtp_reply_info *smtp_reply_info(enum smtp_reply r)
{
	ASSERT((unsigned)r < SMTP_R_COUNT);
	return &replies[r];
}

/* Replies go to an unbounded buffer, so an append can only fail on a broken
 * invariant. */
static void put(struct buf *out, const char *p, size_t n)
{
	if (buf_append(out, p, n) < 0)
		fatal("msg=\"smtp reply buffer is bounded\"");
}

void smtp_reply_format(struct buf *out, enum smtp_reply r, bool more, const char *arg)
{
	const struct smtp_reply_info *ri = smtp_reply_info(r);
	const char *pct = strstr(ri->text, "%s");
	char head[8];

	/* RFC 5321 4.2.1: "code-" on all lines but the last, "code SP" on it */
	snprintf(head, sizeof(head), "%03d%c", ri->code, more ? '-' : ' ');
	put(out, head, 4);
	if (ri->esc != NULL) {
		put(out, ri->esc, strlen(ri->esc));
		put(out, " ", 1);
	}
	if (pct == NULL) {
		put(out, ri->text, strlen(ri->text));
	} else {
		if (arg == NULL)
			arg = "";
		put(out, ri->text, (size_t)(pct - ri->text));
		put(out, arg, strlen(arg));
		put(out, pct + 2, strlen(pct + 2));
	}
	put(out, "\r\n", 2);
}
