/*
 * mailbox/outbound/queue_plan.c -- the queue engine's pure parts (see
 * queue_plan.h).
 *
 * The Return-Path filter is a small state machine so that a blob read in
 * chunks of any size gives the same output: MATCH compares the message's
 * first bytes with "return-path:" (holding them until the comparison is
 * decided), SKIP drops the field up to its LF, LINE looks at the first
 * byte of the next line (white space: a continuation, still dropped), PASS
 * copies everything else.
 */
#include "mailbox/outbound/queue_plan.h"

#include "mailbox/outbound/smtp_client.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { RP_MATCH = 0, RP_SKIP, RP_LINE, RP_PASS };

static const char rp_name[] = "return-path:";

void queue_rpstrip_init(struct queue_rpstrip *s)
{
	memset(s, 0, sizeof(*s));
}

void queue_rpstrip_feed(struct queue_rpstrip *s, const void *data, size_t n, struct buf *out)
{
	const uint8_t *p = data;
	size_t i = 0;

	while (i < n) {
		switch (s->state) {
		case RP_MATCH:
			if (tolower(p[i]) == rp_name[s->matched]) {
				s->held[s->matched++] = p[i++];
				if (s->matched == sizeof(rp_name) - 1)
					s->state = RP_SKIP;
				continue;
			}
			/* not a Return-Path: what was held is message content */
			buf_append(out, s->held, s->matched);
			s->matched = 0;
			s->state = RP_PASS;
			continue;
		case RP_SKIP: {
			const uint8_t *lf = memchr(p + i, '\n', n - i);

			if (lf == NULL)
				return;
			i = (size_t)(lf - p) + 1;
			s->state = RP_LINE;
			continue;
		}
		case RP_LINE:
			/* RFC 5322 2.2.3: a line starting with white space continues
			 * the field */
			s->state = p[i] == ' ' || p[i] == '\t' ? RP_SKIP : RP_PASS;
			continue;
		default:
			buf_append(out, p + i, n - i);
			return;
		}
	}
}

void queue_rpstrip_finish(struct queue_rpstrip *s, struct buf *out)
{
	if (s->state == RP_MATCH && s->matched > 0)
		buf_append(out, s->held, s->matched);
	s->matched = 0;
	s->state = RP_PASS;
}

bool queue_plan_domain(const char *addr, char *out, size_t outsz)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
	size_t len;

	if (outsz > 0)
		out[0] = '\0';
	if (at == NULL || at[1] == '\0')
		return false;
	len = strlen(at + 1);
	if (len >= outsz)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)at[1 + i]);
	out[len] = '\0';
	return true;
}

/* The domain of one address-ish token [p, e): after its last '@', up to
 * the end, stopping at characters no domain has. */
static bool token_domain(const char *p, const char *e, char *out, size_t outsz)
{
	const char *at = NULL;
	size_t n = 0;

	for (const char *q = p; q < e; q++)
		if (*q == '@')
			at = q;
	if (at == NULL)
		return false;
	for (const char *q = at + 1; q < e; q++) {
		unsigned char c = (unsigned char)*q;

		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c >= 0x80))
			break;
		if (n + 1 >= outsz)
			return false;
		out[n++] = (char)tolower(c);
	}
	while (n > 0 && out[n - 1] == '.')
		n--;
	out[n] = '\0';
	return n > 0;
}

bool queue_plan_from_domain(const void *hdr, size_t len, char *out, size_t outsz)
{
	const char *h = hdr, *end = h + len;
	const char *line = h;

	if (outsz > 0)
		out[0] = '\0';
	while (line < end) {
		const char *lf = memchr(line, '\n', (size_t)(end - line));
		const char *fend, *v, *lt = NULL, *gt = NULL;

		if (lf == NULL)
			return false; /* an incomplete line: the block was cut */
		if (lf == line || (lf == line + 1 && line[0] == '\r'))
			return false; /* the blank line: end of the header */
		if (lf - line < 5 || strncasecmp(line, "from:", 5) != 0) {
			line = lf + 1;
			continue;
		}
		/* the field with its continuation lines */
		fend = lf + 1;
		while (fend < end && (*fend == ' ' || *fend == '\t')) {
			const char *nl = memchr(fend, '\n', (size_t)(end - fend));

			if (nl == NULL)
				return false;
			fend = nl + 1;
		}
		if (fend == end)
			return false; /* a continuation may follow in the part not given */
		v = line + 5;
		for (const char *q = v; q < fend; q++) {
			if (*q == '<')
				lt = q;
			else if (*q == '>' && lt != NULL && q > lt)
				gt = q;
		}
		if (lt != NULL && gt != NULL && gt > lt)
			return token_domain(lt + 1, gt, out, outsz);
		/* a bare addr-spec: the last word with an '@' */
		{
			const char *best = NULL, *best_end = NULL, *w = v;

			while (w < fend) {
				const char *we;

				while (w < fend && isspace((unsigned char)*w))
					w++;
				we = w;
				while (we < fend && !isspace((unsigned char)*we) && *we != ',')
					we++;
				if (memchr(w, '@', (size_t)(we - w)) != NULL) {
					best = w;
					best_end = we;
				}
				w = we < fend ? we + 1 : we;
			}
			return best != NULL && token_domain(best, best_end, out, outsz);
		}
	}
	return false;
}

size_t queue_plan_group(struct queue_plan_rcpt *r, size_t n)
{
	size_t groups = 0;

	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < i; j++) {
			if (r[j].kind != r[i].kind || r[j].route != r[i].route)
				continue;
			if (r[i].kind == QUEUE_ROUTE_MX &&
			    strcasecmp(r[j].domain != NULL ? r[j].domain : "",
			               r[i].domain != NULL ? r[i].domain : "") != 0)
				continue;
			break;
		}
		r[i].group = j < i ? r[j].group : groups++;
	}
	return groups;
}

enum queue_fate queue_plan_fate(int outcome, const struct retry_schedule *s, int64_t created,
                                uint64_t attempts, int64_t now, int64_t *next_r)
{
	int64_t next;

	*next_r = 0;
	if (outcome == SMTP_CLIENT_DELIVERED)
		return QUEUE_FATE_SENT;
	if (outcome == SMTP_CLIENT_PERMFAIL)
		return QUEUE_FATE_FAILED;
	/* retry.h: an attempt at or past the expiry was the last one */
	if (retry_expired(s, created, now))
		return QUEUE_FATE_EXPIRED;
	next = retry_next(s, created, attempts);
	/* overdue (a worker was down): due now, but not in this same second,
	 * so a destination that keeps failing is not hammered */
	if (next <= now)
		next = now + 1;
	*next_r = next;
	return QUEUE_FATE_RETRY;
}

const char *queue_fate_name(enum queue_fate f)
{
	switch (f) {
	case QUEUE_FATE_SENT:
		return "sent";
	case QUEUE_FATE_RETRY:
		return "retry";
	case QUEUE_FATE_FAILED:
		return "failed";
	case QUEUE_FATE_EXPIRED:
		return "expired";
	}
	return "?";
}

unsigned queue_plan_notify(const char *text)
{
	unsigned f = 0;
	const char *p = text;

	if (p == NULL)
		return 0;
	while (*p != '\0') {
		size_t n = strcspn(p, ",");

		if (n == 5 && strncasecmp(p, "NEVER", 5) == 0)
			f |= SMTP_CLIENT_NOTIFY_NEVER;
		else if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
			f |= SMTP_CLIENT_NOTIFY_SUCCESS;
		else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0)
			f |= SMTP_CLIENT_NOTIFY_FAILURE;
		else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0)
			f |= SMTP_CLIENT_NOTIFY_DELAY;
		p += n;
		if (*p == ',')
			p++;
	}
	return f;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *queue_plan_xtext_decode(const char *s)
{
	char *out, *o;

	if (s == NULL)
		return NULL;
	out = o = xmalloc(strlen(s) + 1);
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '+') {
			int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;

			if (lo < 0)
				goto fail;
			c = (unsigned char)(hi * 16 + lo);
			p += 2;
		}
		if (c < 0x20 || c == 0x7f)
			goto fail;
		*o++ = (char)c;
	}
	*o = '\0';
	return out;
fail:
	free(out);
	return NULL;
}

char *queue_plan_orcpt(const char *s)
{
	const char *semi = s != NULL ? strchr(s, ';') : NULL;
	char *addr, *out;

	if (semi == NULL || semi == s)
		return NULL;
	/* addr-type is an atom (RFC 3461 4.2); in practice "rfc822" or
	 * "utf-8": letters, digits and '-' only, so nothing stored can put a
	 * line break or a second field into the DSN or the ORCPT parameter */
	for (const char *t = s; t < semi; t++) {
		if (!isalnum((unsigned char)*t) && *t != '-')
			return NULL;
	}
	addr = queue_plan_xtext_decode(semi + 1);
	if (addr == NULL)
		return NULL;
	out = xasprintf("%.*s;%s", (int)(semi - s), s, addr);
	free(addr);
	return out;
}
