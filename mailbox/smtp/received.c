/*
 * mailbox/smtp/received.c -- format the Received: trace header.
 *
 * The field is folded before each clause (RFC 5322 2.2.3), so every line
 * stays far below the 998-octet limit whatever the client sent: the
 * longest clause is an EHLO name or a path, both bounded by the parser.
 * Day and month names come from our own tables, not strftime(), so the
 * output does not depend on the locale.
 */
#include "mailbox/smtp/received.h"

#include "mailbox/smtp/parser.h"
#include "shared/log.h"

#include <stdio.h>
#include <string.h>

static void put(struct buf *out, const char *s)
{
	if (buf_puts(out, s) < 0)
		fatal("msg=\"received: output buffer is bounded\"");
}

/* Comment text (RFC 5322 3.2.2 ctext): printable ASCII and SP, with
 * ( ) \ as quoted-pairs; anything else becomes '?'. */
static void put_comment_text(struct buf *out, const char *s)
{
	char tmp[2] = {0, 0};

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '(' || c == ')' || c == '\\')
			put(out, "\\");
		tmp[0] = (c >= 32 && c <= 126) ? (char)c : '?';
		put(out, tmp);
	}
}

static void put_ip_literal(struct buf *out, const char *ip)
{
	/* RFC 5321 4.1.3: IPv6 literals carry the "IPv6:" tag. */
	put(out, strchr(ip, ':') != NULL ? "[IPv6:" : "[");
	put_comment_text(out, ip);
	put(out, "]");
}

const char *smtp_received_protocol(bool esmtp, bool smtputf8, bool tls, bool auth)
{
	static const char *const esmtp_names[] = {"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA"};
	static const char *const utf8_names[] = {"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS",
	                                         "UTF8SMTPSA"};
	int i = (tls ? 2 : 0) + (auth ? 1 : 0);

	if (!esmtp)
		return "SMTP";
	return smtputf8 ? utf8_names[i] : esmtp_names[i];
}

void smtp_received_date(struct buf *out, time_t when)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	char tmp[64];

	if (gmtime_r(&when, &tm) == NULL)
		memset(&tm, 0, sizeof(tm)), tm.tm_mday = 1, tm.tm_year = 70, tm.tm_wday = 4;
	snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
	         tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	         tm.tm_sec);
	put(out, tmp);
}

void smtp_received_format(struct buf *out, const struct smtp_received *r)
{
	bool helo_ok = r->helo != NULL && smtp_parser_is_domain(r->helo, strlen(r->helo));

	/* From-domain: the EHLO name when it is a domain, with the client's
	 * address as TCP-info; otherwise the address itself, and the bad
	 * name only inside a comment. */
	put(out, "Received: from ");
	if (helo_ok) {
		put(out, r->helo);
		if (r->client_ip != NULL) {
			put(out, " (");
			put_ip_literal(out, r->client_ip);
			put(out, ")");
		}
	} else {
		if (r->client_ip != NULL)
			put_ip_literal(out, r->client_ip);
		else
			put(out, "unknown");
		if (r->helo != NULL) {
			put(out, " (helo=");
			put_comment_text(out, r->helo);
			put(out, ")");
		}
	}
	put(out, "\r\n\tby ");
	put(out, r->hostname);
	put(out, " (tailpost");
	if (r->listener != NULL) {
		put(out, " listener ");
		put_comment_text(out, r->listener);
	}
	put(out, ") with ");
	put(out, r->protocol);
	put(out, " id ");
	put(out, r->id);
	if (r->tls_version != NULL) {
		put(out, "\r\n\t(using ");
		put_comment_text(out, r->tls_version);
		if (r->tls_cipher != NULL) {
			put(out, " with cipher ");
			put_comment_text(out, r->tls_cipher);
		}
		put(out, ")");
	}
	if (r->rcpt != NULL) {
		put(out, "\r\n\tfor <");
		put(out, r->rcpt);
		put(out, ">");
	}
	put(out, ";\r\n\t");
	smtp_received_date(out, r->when);
	put(out, "\r\n");
}
