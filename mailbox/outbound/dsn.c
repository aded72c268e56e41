/*
 * mailbox/outbound/dsn.c -- building RFC 3464 delivery status notifications.
 *
 * Everything we write is checked or cleaned first: addresses and names
 * that would let a CR or LF inject fields are refused, remote reply text
 * is reduced to printable ASCII, bounded (DSN_DIAG_MAX) and folded at
 * spaces, so no line of the report passes 998 octets (RFC 5322 2.1.1).
 * The original is copied with its line ends normalized (a bare LF becomes
 * CRLF, a bare CR a space), and one more CRLF
 * goes before the closing delimiter, which owns it (RFC 2046 5.1.1), so
 * the returned message keeps every byte, its last line end included.
 */
#include "mailbox/outbound/dsn.h"

#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FOLD 78

bool dsn_wanted(const char *sender, enum dsn_action action, unsigned notify, bool delay_default)
{
	/* RFC 3464 2 / RFC 5321 4.5.5: nothing goes back to a null sender */
	if (sender == NULL || sender[0] == '\0' || strcmp(sender, "<>") == 0)
		return false;
	if (notify & DSN_NOTIFY_NEVER)
		return false;
	switch (action) {
	case DSN_ACTION_FAILED:
		return notify == 0 || (notify & DSN_NOTIFY_FAILURE);
	case DSN_ACTION_DELAYED:
		return notify == 0 ? delay_default : (notify & DSN_NOTIFY_DELAY) != 0;
	case DSN_ACTION_DELIVERED:
	case DSN_ACTION_RELAYED:
	case DSN_ACTION_EXPANDED:
		return (notify & DSN_NOTIFY_SUCCESS) != 0;
	}
	return false;
}

void dsn_date(int64_t t, char out[32])
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	/* the moduli only tell the compiler the widths; the values are in range */
	snprintf(out, 32, "%.3s, %02u %.3s %04u %02u:%02u:%02u +0000",
	         days[(unsigned)tm.tm_wday % 7u], (unsigned)tm.tm_mday % 100u,
	         months[(unsigned)tm.tm_mon % 12u], (unsigned)(tm.tm_year + 1900) % 10000u,
	         (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
	         (unsigned)tm.tm_sec % 100u);
}

/* --- checks ----------------------------------------------------------------------- */

static bool printable(const char *s, bool allow_space)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || (!allow_space && c == ' '))
			return false;
	}
	return true;
}

static bool has_8bit(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* RFC 2046 5.1.1 bchars, without the space, 1-70 */
static bool valid_boundary(const char *b)
{
	size_t n = strlen(b), i;

	if (n == 0 || n > 70)
		return false;
	for (i = 0; i < n; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("'()+_,-./:=?", c) != NULL))
			return false;
	}
	return true;
}

static bool valid_status(const char *s)
{
	int a, b, c, n = 0;

	/* RFC 3463 2: class "." subject "." detail, class 2, 4 or 5 */
	if (sscanf(s, "%1d.%3d.%3d%n", &a, &b, &c, &n) != 3 || s[n] != '\0')
		return false;
	return (a == 2 || a == 4 || a == 5) && strspn(s, "0123456789.") == strlen(s);
}

static const char *action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "failed";
	case DSN_ACTION_DELAYED:
		return "delayed";
	case DSN_ACTION_DELIVERED:
		return "delivered";
	case DSN_ACTION_RELAYED:
		return "relayed";
	case DSN_ACTION_EXPANDED:
		return "expanded";
	}
	return "failed";
}

static const char *derive_status(const struct dsn_rcpt *rc, char buf[16])
{
	if (rc->status != NULL && valid_status(rc->status))
		return rc->status;
	/* RFC 2034 4: a reply text that starts with an enhanced code of the
	 * reply's class carries the status */
	if (rc->smtp_code >= 200 && rc->diagnostic != NULL) {
		size_t n = strcspn(rc->diagnostic, " \n");
		if (n > 0 && n < 12 && rc->diagnostic[0] == '0' + rc->smtp_code / 100) {
			memcpy(buf, rc->diagnostic, n);
			buf[n] = '\0';
			if (valid_status(buf))
				return buf;
		}
	}
	if (rc->smtp_code >= 500 && rc->smtp_code <= 599)
		return "5.0.0";
	if (rc->smtp_code >= 400 && rc->smtp_code <= 499)
		return "4.0.0";
	switch (rc->action) {
	case DSN_ACTION_FAILED:
		return "5.0.0";
	case DSN_ACTION_DELAYED:
		return "4.0.0";
	default:
		return "2.0.0";
	}
}

/* --- writing helpers ------------------------------------------------------------- */

/* "Name: value" folded at spaces to FOLD columns where possible; value has
 * no CR/LF (checked or cleaned by the caller). */
static void field(struct buf *out, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	const char *p = value;

	buf_printf(out, "%s: ", name);
	while (*p != '\0') {
		size_t word = strcspn(p, " ");
		if (col + word > FOLD && col > strlen(name) + 2) {
			buf_puts(out, "\r\n\t");
			col = 1;
		}
		buf_append(out, p, word);
		col += word;
		p += word;
		if (*p == ' ') {
			/* a run of spaces: keep one, the fold may replace it */
			while (*p == ' ')
				p++;
			if (*p == '\0')
				break;
			size_t next = strcspn(p, " ");
			if (col + 1 + next > FOLD) {
				buf_puts(out, "\r\n\t");
				col = 1;
			} else {
				buf_puts(out, " ");
				col++;
			}
		}
	}
	buf_puts(out, "\r\n");
}

/* Remote text reduced to one line of printable ASCII, at most DSN_DIAG_MAX
 * bytes; words longer than a line are cut so folding always works. */
static char *clean_text(const char *s)
{
	size_t n = strlen(s), i, o = 0, word = 0;
	char *d = xmalloc(n + 4);

	for (i = 0; i < n && o < DSN_DIAG_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		else if (c >= 0x80)
			c = '?';
		if (c == ' ')
			word = 0;
		else if (++word > 200) {
			d[o++] = ' ';
			word = 1;
		}
		d[o++] = (char)c;
	}
	if (i < n) {
		memcpy(d + o, "...", 3);
		o += 3;
	}
	d[o] = '\0';
	return d;
}

static const char *addr_type(const char *addr)
{
	return has_8bit(addr) ? "utf-8" : "rfc822"; /* RFC 6533 */
}

/* --- the report ------------------------------------------------------------------- */

static void human_part(const struct dsn_report *r, const struct dsn_writer *w, struct buf *out)
{
	size_t i;
	bool failed = false, delayed = false, other = false;
	char date[32];

	for (i = 0; i < r->nrcpts; i++) {
		if (r->rcpts[i].action == DSN_ACTION_FAILED)
			failed = true;
		else if (r->rcpts[i].action == DSN_ACTION_DELAYED)
			delayed = true;
		else
			other = true;
	}
	buf_printf(out, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
	if (failed)
		buf_puts(out,
		         "Your message could not be delivered to one or more recipients,\r\n"
		         "and delivery will not be tried again. The details are below.\r\n\r\n");
	if (delayed)
		buf_puts(out,
		         "Delivery of your message to one or more recipients has been\r\n"
		         "delayed. It will be retried; you do not need to send it again.\r\n\r\n");
	if (other)
		buf_puts(out, "This is a delivery report you asked for.\r\n\r\n");
	for (i = 0; i < r->nrcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		buf_printf(out, "<%s>: %s", rc->final_recipient, action_name(rc->action));
		if (rc->remote_mta != NULL)
			buf_printf(out, " (host %s)", rc->remote_mta);
		buf_puts(out, "\r\n");
		if (rc->diagnostic != NULL) {
			char *t = clean_text(rc->diagnostic);
			if (rc->smtp_code > 0)
				buf_printf(out, "    the server said: %d %s\r\n", rc->smtp_code, t);
			else
				buf_printf(out, "    %s\r\n", t);
			free(t);
		}
		if (rc->action == DSN_ACTION_DELAYED && rc->retry_until > 0) {
			dsn_date(rc->retry_until, date);
			buf_printf(out, "    we will keep trying until %s\r\n", date);
		}
	}
	buf_puts(out, "\r\n");
	if (w->full)
		buf_puts(out, "Your message is attached.\r\n");
	else if (r->ret == DSN_RET_FULL)
		buf_puts(out, "Your message was too large to return in full; its header is "
		              "attached.\r\n");
	else
		buf_puts(out, "The header of your message is attached.\r\n");
}

static void status_part(const struct dsn_report *r, struct buf *out)
{
	char date[32], *v;
	size_t i;

	/* RFC 3464 2.2: per-message fields */
	v = xasprintf("dns; %s", r->reporting_mta);
	field(out, "Reporting-MTA", v);
	free(v);
	if (r->envid != NULL)
		field(out, "Original-Envelope-Id", r->envid);
	if (r->arrival > 0) {
		dsn_date(r->arrival, date);
		field(out, "Arrival-Date", date);
	}
	/* RFC 3464 2.3: per-recipient fields, each group after a blank line */
	for (i = 0; i < r->nrcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		buf_puts(out, "\r\n");
		v = xasprintf("%s; %s", addr_type(rc->final_recipient), rc->final_recipient);
		field(out, "Final-Recipient", v);
		free(v);
		if (rc->original_recipient != NULL) {
			const char *semi = strchr(rc->original_recipient, ';');
			if (semi != NULL) {
				const char *a = semi + 1;
				while (*a == ' ')
					a++;
				v = xasprintf("%.*s; %s", (int)(semi - rc->original_recipient),
				              rc->original_recipient, a);
			} else {
				v = xasprintf("%s; %s", addr_type(rc->original_recipient),
				              rc->original_recipient);
			}
			field(out, "Original-Recipient", v);
			free(v);
		}
		field(out, "Action", action_name(rc->action));
		char sbuf[16];
		field(out, "Status", derive_status(rc, sbuf));
		if (rc->remote_mta != NULL) {
			v = xasprintf("dns; %s", rc->remote_mta);
			field(out, "Remote-MTA", v);
			free(v);
		}
		if (rc->diagnostic != NULL) {
			char *t = clean_text(rc->diagnostic);
			/* RFC 3464 2.3.6: "smtp" for a remote SMTP reply; a local
			 * reason gets our own X- type, as other MTAs do */
			if (rc->smtp_code > 0)
				v = xasprintf("smtp; %d %s", rc->smtp_code, t);
			else
				v = xasprintf("X-tailpost; %s", t);
			field(out, "Diagnostic-Code", v);
			free(v);
			free(t);
		}
		if (rc->last_attempt > 0) {
			dsn_date(rc->last_attempt, date);
			field(out, "Last-Attempt-Date", date);
		}
		if (rc->action == DSN_ACTION_DELAYED && rc->retry_until > 0) {
			dsn_date(rc->retry_until, date);
			field(out, "Will-Retry-Until", date);
		}
	}
}

int dsn_begin(const struct dsn_report *r, struct dsn_writer *w, struct buf *out,
              const char **errstr_r)
{
	bool failed = false, delayed = false;
	char date[32];
	size_t i;

	memset(w, 0, sizeof(*w));
	if (r->sender == NULL || r->sender[0] == '\0' || strcmp(r->sender, "<>") == 0) {
		*errstr_r = "no DSN for a null sender";
		return -1;
	}
	if (r->nrcpts == 0) {
		*errstr_r = "a DSN needs at least one recipient";
		return -1;
	}
	if (r->boundary == NULL || !valid_boundary(r->boundary)) {
		*errstr_r = "invalid MIME boundary";
		return -1;
	}
	if (r->message_id == NULL || r->message_id[0] != '<' ||
	    r->message_id[strlen(r->message_id) - 1] != '>' || !printable(r->message_id, false)) {
		*errstr_r = "invalid Message-ID";
		return -1;
	}
	if (r->reporting_mta == NULL || r->reporting_mta[0] == '\0' ||
	    !printable(r->reporting_mta, false) || has_8bit(r->reporting_mta)) {
		*errstr_r = "invalid reporting MTA name";
		return -1;
	}
	if (!printable(r->sender, false) || (r->envid && !printable(r->envid, false))) {
		*errstr_r = "control bytes in the sender or envelope id";
		return -1;
	}
	w->utf8 = has_8bit(r->sender) || has_8bit(r->envid);
	for (i = 0; i < r->nrcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		if (rc->final_recipient == NULL || rc->final_recipient[0] == '\0' ||
		    !printable(rc->final_recipient, false) ||
		    (rc->original_recipient && !printable(rc->original_recipient, false)) ||
		    (rc->remote_mta && !printable(rc->remote_mta, false))) {
			*errstr_r = "invalid recipient address or remote MTA";
			return -1;
		}
		if (has_8bit(rc->final_recipient) || has_8bit(rc->original_recipient))
			w->utf8 = true;
		if (rc->action == DSN_ACTION_FAILED)
			failed = true;
		else if (rc->action == DSN_ACTION_DELAYED)
			delayed = true;
	}
	w->full = r->ret == DSN_RET_FULL && (r->full_max == 0 || r->original_size <= r->full_max);
	w->line_start = true;

	dsn_date(r->now, date);
	buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r->reporting_mta);
	buf_printf(out, "To: <%s>\r\n", r->sender);
	buf_printf(out, "Subject: %s\r\n",
	           failed    ? "Undelivered Mail Returned to Sender"
	           : delayed ? "Delayed Mail (still being retried)"
	                     : "Successful Mail Delivery Report");
	buf_printf(out, "Date: %s\r\n", date);
	buf_printf(out, "Message-ID: %s\r\n", r->message_id);
	/* RFC 3834 5: a DSN is an automatic reply */
	buf_puts(out, "Auto-Submitted: auto-replied\r\n");
	buf_puts(out, "MIME-Version: 1.0\r\n");
	buf_printf(out,
	           "Content-Type: multipart/report; report-type=%s;\r\n"
	           "\tboundary=\"%s\"\r\n",
	           w->utf8 ? "global-delivery-status" : "delivery-status", r->boundary);
	if (w->utf8 || (w->full && r->original_8bit))
		buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_puts(out, "\r\nThis is a MIME-encapsulated message.\r\n");

	buf_printf(out, "\r\n--%s\r\n", r->boundary);
	buf_printf(out, "Content-Type: text/plain; charset=%s\r\n", w->utf8 ? "utf-8" : "us-ascii");
	buf_puts(out, "Content-Description: Notification\r\n\r\n");
	human_part(r, w, out);

	buf_printf(out, "\r\n--%s\r\n", r->boundary);
	/* RFC 6533 for UTF-8 addresses */
	buf_printf(out, "Content-Type: message/%s\r\n",
	           w->utf8 ? "global-delivery-status" : "delivery-status");
	buf_puts(out, "Content-Description: Delivery report\r\n\r\n");
	status_part(r, out);

	buf_printf(out, "\r\n--%s\r\n", r->boundary);
	if (w->full) {
		buf_printf(out, "Content-Type: message/%s\r\n", w->utf8 ? "global" : "rfc822");
		buf_puts(out, "Content-Description: Undelivered message\r\n");
		if (r->original_8bit && !w->utf8)
			buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
	} else {
		buf_printf(out, "Content-Type: %s\r\n",
		           w->utf8 ? "message/global-headers" : "text/rfc822-headers");
		buf_puts(out, "Content-Description: Undelivered message header\r\n");
	}
	buf_puts(out, "\r\n");
	return 0;
}

bool dsn_original(struct dsn_writer *w, const void *data, size_t n, struct buf *out)
{
	const uint8_t *p = data;
	size_t i, run = 0;

	for (i = 0; i < n && !w->done; i++) {
		uint8_t c = p[i];
		if (w->cr) {
			w->cr = false;
			if (c == '\n')
				goto line_end;
			buf_append(out, " ", 1); /* a bare CR: see dsn_end() */
			w->line_start = false;
		}
		if (c == '\r') {
			w->cr = true;
			continue;
		}
		if (c == '\n')
			goto line_end;
		/* copy a run of ordinary bytes at once */
		run = 1;
		while (i + run < n && p[i + run] != '\r' && p[i + run] != '\n')
			run++;
		buf_append(out, p + i, run);
		i += run - 1;
		w->line_start = false;
		w->any = true;
		continue;
	line_end:
		if (w->line_start && !w->full) {
			w->done = true; /* the blank line ends the header block */
			break;
		}
		buf_append(out, "\r\n", 2);
		w->line_start = true;
		w->any = true;
	}
	return !w->done;
}

void dsn_end(struct dsn_writer *w, const struct dsn_report *r, struct buf *out)
{
	/* a bare CR has no place in a message (RFC 5322 2.3); it is returned
	 * as a space rather than passed on into the report */
	if (w->cr && !w->done) {
		buf_append(out, " ", 1);
		w->line_start = false;
	}
	/* the CRLF before the delimiter belongs to it (RFC 2046 5.1.1) */
	if (!w->line_start)
		buf_puts(out, "\r\n");
	buf_printf(out, "\r\n--%s--\r\n", r->boundary);
	w->done = true;
}

int dsn_build(const struct dsn_report *r, const void *original, size_t len, struct buf *out,
              const char **errstr_r)
{
	struct dsn_writer w;

	if (dsn_begin(r, &w, out, errstr_r) < 0)
		return -1;
	dsn_original(&w, original, len, out);
	dsn_end(&w, r, out);
	return 0;
}
