/*
 * mailbox/outbound/smtp_client_ehlo.c -- parse the EHLO extension lines.
 */
#include "mailbox/outbound/smtp_client_ehlo.h"

#include <string.h>
#include <strings.h>

/* the next space-separated word in [*p, end), advancing *p */
static bool next_word(const char **p, const char *end, const char **w, size_t *n)
{
	while (*p < end && **p == ' ')
		(*p)++;
	if (*p >= end)
		return false;
	*w = *p;
	while (*p < end && **p != ' ')
		(*p)++;
	*n = (size_t)(*p - *w);
	return true;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

static void auth_mechs(const char *p, const char *end, struct smtp_client_ext *ext)
{
	const char *w;
	size_t n;

	while (next_word(&p, end, &w, &n)) {
		if (word_is(w, n, "PLAIN"))
			ext->auth |= SMTP_CLIENT_AUTH_PLAIN;
		else if (word_is(w, n, "LOGIN"))
			ext->auth |= SMTP_CLIENT_AUTH_LOGIN;
	}
}

static void one_line(const char *p, const char *end, struct smtp_client_ext *ext)
{
	const char *kw, *w;
	size_t n, wn;

	if (!next_word(&p, end, &kw, &n))
		return;
	if (word_is(kw, n, "PIPELINING")) {
		ext->pipelining = true;
	} else if (word_is(kw, n, "SIZE")) {
		uint64_t v = 0;
		ext->size = true;
		if (next_word(&p, end, &w, &wn)) {
			size_t i;
			for (i = 0; i < wn && w[i] >= '0' && w[i] <= '9'; i++) {
				if (v > (UINT64_MAX - 9) / 10) {
					v = 0; /* absurd: treat as no limit */
					break;
				}
				v = v * 10 + (uint64_t)(w[i] - '0');
			}
			if (i != wn)
				v = 0;
		}
		ext->size_max = v;
	} else if (word_is(kw, n, "8BITMIME")) {
		ext->eightbitmime = true;
	} else if (word_is(kw, n, "SMTPUTF8")) {
		ext->smtputf8 = true;
	} else if (word_is(kw, n, "STARTTLS")) {
		ext->starttls = true;
	} else if (word_is(kw, n, "ENHANCEDSTATUSCODES")) {
		ext->enhancedstatuscodes = true;
	} else if (word_is(kw, n, "DSN")) {
		ext->dsn = true;
	} else if (word_is(kw, n, "CHUNKING")) {
		ext->chunking = true;
	} else if (word_is(kw, n, "AUTH")) {
		auth_mechs(p, end, ext);
	} else if (n > 5 && strncasecmp(kw, "AUTH=", 5) == 0) {
		/* pre-RFC 4954 servers: "AUTH=PLAIN LOGIN" */
		auth_mechs(kw + 5, end, ext);
	}
}

void smtp_client_ehlo_parse(const struct smtp_client_reply *r, struct smtp_client_ext *ext)
{
	const char *p = r->text, *end = r->text + r->textlen;

	memset(ext, 0, sizeof(*ext));
	/* the first line is the greeting; extensions follow, one per line */
	p = memchr(p, '\n', (size_t)(end - p));
	while (p != NULL && p < end) {
		const char *line = p + 1, *nl = memchr(line, '\n', (size_t)(end - line));
		const char *le = nl ? nl : end;
		one_line(line, le, ext);
		p = nl;
	}
}
