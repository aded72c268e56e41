/*
 * mailbox/smtp/parser.c -- SMTP command lines and message content.
 *
 * Command lines are parsed in two steps: smtp_parser_line() only looks for
 * the LF (so a slow client costs a memchr per read, and the bound is
 * enforced before anything is interpreted), then smtp_parser_command()
 * checks the whole line once (control bytes, UTF-8), splits off the verb
 * and runs a small recursive-descent parser over the RFC 5321 4.1.2
 * grammar with the RFC 6531 UTF-8 extensions.  A cursor (struct cur) walks
 * the line; nothing is allocated and nothing outside *cmd is written.
 *
 * The content decoder is a byte-level state machine whose only memory is
 * its state: at most ".", "\r" or ".\r" are ever held back between calls,
 * and those are re-created from constants, never stored.  Everything else
 * is passed to the sink as spans of the caller's buffer, so well-formed
 * input reaches the sink in one call per read (plus one per dot-stuffed
 * line).
 */
#include "mailbox/smtp/parser.h"

#include <arpa/inet.h>
#include <string.h>

/* --- lines ---------------------------------------------------------------- */

enum smtp_parse_status smtp_parser_line(const uint8_t *p, size_t len, size_t max,
                                        size_t *line_len_r, size_t *consumed_r)
{
	size_t lim = len < max ? len : max;
	const uint8_t *lf = lim > 0 ? memchr(p, '\n', lim) : NULL;
	size_t i;

	if (lf == NULL)
		return len >= max ? SMTP_P_TOO_LONG : SMTP_P_NEED_MORE;
	i = (size_t)(lf - p);
	*consumed_r = i + 1;
	/* RFC 5321 2.3.8 wants CRLF; a bare LF still ends a command line. */
	*line_len_r = (i > 0 && p[i - 1] == '\r') ? i - 1 : i;
	return SMTP_P_OK;
}

enum smtp_parse_status smtp_parser_skip_line(const uint8_t *p, size_t len, size_t *consumed_r)
{
	const uint8_t *lf = len > 0 ? memchr(p, '\n', len) : NULL;

	if (lf == NULL) {
		*consumed_r = len;
		return SMTP_P_NEED_MORE;
	}
	*consumed_r = (size_t)(lf - p) + 1;
	return SMTP_P_OK;
}

/* --- character classes ---------------------------------------------------- */

static bool is_alpha(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* RFC 5322 3.2.3 atext, plus UTF8-non-ascii (RFC 6531 3.3). */
static bool is_atext(uint8_t c)
{
	if (is_alpha(c) || is_digit(c) || c >= 0x80)
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static uint8_t to_upper(uint8_t c)
{
	return (c >= 'a' && c <= 'z') ? (uint8_t)(c - 'a' + 'A') : c;
}

static bool eq_nocase(const uint8_t *p, size_t len, const char *s)
{
	size_t n = strlen(s);

	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (to_upper(p[i]) != to_upper((uint8_t)s[i]))
			return false;
	return true;
}

/* Well-formed UTF-8: no overlong forms, surrogates or code points past
 * U+10FFFF (RFC 3629 4). */
static bool utf8_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0) {
			n = 1, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/* --- the cursor ----------------------------------------------------------- */

struct cur {
	const uint8_t *p;
	size_t i, n;
};

static bool at_end(const struct cur *c)
{
	return c->i >= c->n;
}

static int peek(const struct cur *c)
{
	return c->i < c->n ? c->p[c->i] : -1;
}

static bool eat(struct cur *c, uint8_t ch)
{
	if (peek(c) != ch)
		return false;
	c->i++;
	return true;
}

/* Case-insensitive literal prefix. */
static bool eat_word(struct cur *c, const char *w)
{
	size_t n = strlen(w);

	if (c->n - c->i < n || !eq_nocase(c->p + c->i, n, w))
		return false;
	c->i += n;
	return true;
}

static size_t skip_sp(struct cur *c)
{
	size_t start = c->i;

	while (peek(c) == ' ')
		c->i++;
	return c->i - start;
}

/* --- addresses (RFC 5321 4.1.2, RFC 6531 3.3) ------------------------------ */

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str];
 * a U-label is any run holding UTF-8 (its IDNA validity is the resolver's
 * business).  Labels are at most 63 octets (RFC 1035 2.3.4).
 */
static int parse_domain(struct cur *c, bool *utf8)
{
	size_t start = c->i;

	for (;;) {
		size_t lstart = c->i;
		int ch;

		while ((ch = peek(c)) >= 0 && (is_alpha((uint8_t)ch) || is_digit((uint8_t)ch) ||
		                               ch == '-' || ch >= 0x80)) {
			if (ch >= 0x80)
				*utf8 = true;
			c->i++;
		}
		if (c->i == lstart || c->i - lstart > 63)
			return -1;
		if (c->p[lstart] == '-' || c->p[c->i - 1] == '-')
			return -1;
		if (peek(c) != '.')
			break;
		c->i++;
	}
	return c->i - start <= SMTP_DOMAIN_MAX ? 0 : -1;
}

static bool ipv4_literal(const uint8_t *p, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t digits = 0;

		if (part > 0) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
		while (i < n && is_digit(p[i]) && digits < 3) {
			v = v * 10 + (unsigned)(p[i] - '0');
			i++, digits++;
		}
		if (digits == 0 || v > 255)
			return false;
	}
	return i == n;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent ) "]" */
static int parse_address_literal(struct cur *c)
{
	size_t start, n;
	const uint8_t *p;

	if (!eat(c, '['))
		return -1;
	start = c->i;
	while (!at_end(c) && peek(c) != ']') {
		int ch = peek(c);
		/* dcontent (RFC 5321 4.1.3): %d33-90 / %d94-126 */
		if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
			return -1;
		c->i++;
	}
	if (!eat(c, ']'))
		return -1;
	p = c->p + start;
	n = c->i - 1 - start;
	if (n == 0)
		return -1;
	if (n > 5 && eq_nocase(p, 5, "IPv6:")) {
		char tmp[64];
		struct in6_addr a6;

		if (n - 5 >= sizeof(tmp))
			return -1;
		memcpy(tmp, p + 5, n - 5);
		tmp[n - 5] = '\0';
		return inet_pton(AF_INET6, tmp, &a6) == 1 ? 0 : -1;
	}
	if (is_digit(p[0]))
		return ipv4_literal(p, n) ? 0 : -1;
	/* General-address-literal: Standardized-tag ":" 1*dcontent, the tag
	 * an Ldh-str ending in a letter or digit. */
	size_t k = 0;
	while (k < n && (is_alpha(p[k]) || is_digit(p[k]) || p[k] == '-'))
		k++;
	if (k == 0 || k >= n - 1 || p[k] != ':' || p[k - 1] == '-')
		return -1;
	return 0;
}

/* Local-part = Dot-string / Quoted-string */
static int parse_local_part(struct cur *c, bool *utf8, bool *quoted)
{
	int ch;

	*quoted = false;
	if (eat(c, '"')) {
		*quoted = true;
		for (;;) {
			ch = peek(c);
			if (ch < 0)
				return -1;
			c->i++;
			if (ch == '"')
				return 0;
			if (ch == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				ch = peek(c);
				if (ch < 32 || ch > 126)
					return -1;
				c->i++;
			} else if (ch >= 0x80) {
				*utf8 = true;
			} else if (ch < 32 || ch > 126) {
				return -1;
			}
		}
	}
	for (;;) {
		size_t start = c->i;

		while ((ch = peek(c)) >= 0 && is_atext((uint8_t)ch)) {
			if (ch >= 0x80)
				*utf8 = true;
			c->i++;
		}
		if (c->i == start)
			return -1; /* empty atom: leading, trailing or double dot */
		if (peek(c) != '.')
			return 0;
		c->i++;
	}
}

/*
 * Path = "<" [ A-d-l ":" ] Mailbox ">", or "<>" when allow_null.  The
 * source route (A-d-l) is checked and dropped.
 */
static int parse_path(struct cur *c, struct smtp_path *path, bool allow_null, bool allow_postmaster)
{
	size_t start = c->i, mb_start, local_end, mb_end;
	bool utf8 = false, quoted;

	memset(path, 0, sizeof(*path));
	if (!eat(c, '<'))
		return -1;
	if (allow_null && eat(c, '>'))
		return 0;
	if (peek(c) == '@') {
		bool ignored = false;

		do {
			if (!eat(c, '@') || parse_domain(c, &ignored) < 0)
				return -1;
		} while (eat(c, ','));
		if (!eat(c, ':'))
			return -1;
	}
	mb_start = c->i;
	if (parse_local_part(c, &utf8, &quoted) < 0)
		return -1;
	local_end = c->i;
	if (allow_postmaster && !quoted && peek(c) == '>' &&
	    eq_nocase(c->p + mb_start, local_end - mb_start, "postmaster")) {
		/* RFC 5321 4.1.1.3: RCPT TO:<Postmaster> must be accepted. */
		path->postmaster = true;
	} else {
		if (!eat(c, '@'))
			return -1;
		if (peek(c) == '[') {
			if (parse_address_literal(c) < 0)
				return -1;
		} else if (parse_domain(c, &utf8) < 0) {
			return -1;
		}
		if (c->i - local_end - 1 > SMTP_DOMAIN_MAX)
			return -1;
	}
	mb_end = c->i;
	if (!eat(c, '>'))
		return -1;
	if (c->i - start > SMTP_PATH_MAX)
		return -1;
	path->len = mb_end - mb_start;
	memcpy(path->addr, c->p + mb_start, path->len);
	path->addr[path->len] = '\0';
	path->at = path->postmaster ? path->len : local_end - mb_start;
	path->utf8 = utf8;
	return 0;
}

bool smtp_parser_is_domain(const char *s, size_t n)
{
	struct cur c = {(const uint8_t *)s, 0, n};
	bool utf8 = false;

	if (n == 0)
		return false;
	if (s[0] == '[') {
		if (parse_address_literal(&c) < 0)
			return false;
	} else if (parse_domain(&c, &utf8) < 0 || utf8) {
		return false;
	}
	return at_end(&c);
}

/* --- ESMTP parameters ----------------------------------------------------- */

/*
 * xtext (RFC 3461 4): %d33-126 except "+" and "=", or "+" and two hex
 * digits.  Returns the decoded length, or -1.  allow_utf8 admits raw
 * UTF-8 (the utf-8 address type of RFC 6533).
 */
static long xtext_check(const uint8_t *v, size_t n, bool allow_utf8)
{
	long dec = 0;

	for (size_t i = 0; i < n;) {
		uint8_t ch = v[i];

		if (ch == '+') {
			if (n - i < 3 || !is_hex(v[i + 1]) || !is_hex(v[i + 2]))
				return -1;
			i += 3;
		} else if ((ch >= 33 && ch <= 126 && ch != '=') || (ch >= 0x80 && allow_utf8)) {
			i++;
		} else {
			return -1;
		}
		dec++;
	}
	return dec;
}

static void copy_str(char *dst, const uint8_t *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static enum smtp_parse_status mail_param(struct smtp_cmd *cmd, const uint8_t *k, size_t klen,
                                         const uint8_t *v, size_t vlen, const char **errstr)
{
	if (eq_nocase(k, klen, "SIZE")) {
		/* RFC 1870: size-value ::= 1*20DIGIT */
		if (cmd->has_size || v == NULL || vlen == 0 || vlen > 20)
			goto bad;
		uint64_t size = 0;
		for (size_t i = 0; i < vlen; i++) {
			if (!is_digit(v[i]))
				goto bad;
			unsigned d = (unsigned)(v[i] - '0');
			size = size > (UINT64_MAX - d) / 10 ? UINT64_MAX : size * 10 + d;
		}
		cmd->has_size = true;
		cmd->size = size;
		return SMTP_P_OK;
	}
	if (eq_nocase(k, klen, "BODY")) {
		if (cmd->body != SMTP_BODY_NONE || v == NULL)
			goto bad;
		if (eq_nocase(v, vlen, "7BIT"))
			cmd->body = SMTP_BODY_7BIT;
		else if (eq_nocase(v, vlen, "8BITMIME"))
			cmd->body = SMTP_BODY_8BITMIME;
		else if (eq_nocase(v, vlen, "BINARYMIME"))
			cmd->body = SMTP_BODY_BINARYMIME;
		else
			goto bad;
		return SMTP_P_OK;
	}
	if (eq_nocase(k, klen, "SMTPUTF8")) {
		/* RFC 6531 3.4: the parameter has no value. */
		if (cmd->smtputf8 || v != NULL)
			goto bad;
		cmd->smtputf8 = true;
		return SMTP_P_OK;
	}
	if (eq_nocase(k, klen, "RET")) {
		if (cmd->ret != SMTP_RET_NONE || v == NULL)
			goto bad;
		if (eq_nocase(v, vlen, "FULL"))
			cmd->ret = SMTP_RET_FULL;
		else if (eq_nocase(v, vlen, "HDRS"))
			cmd->ret = SMTP_RET_HDRS;
		else
			goto bad;
		return SMTP_P_OK;
	}
	if (eq_nocase(k, klen, "ENVID")) {
		long dec;

		if (cmd->has_envid || v == NULL || vlen >= sizeof(cmd->envid))
			goto bad;
		dec = xtext_check(v, vlen, false);
		if (dec <= 0 || dec > SMTP_ENVID_MAX)
			goto bad;
		cmd->has_envid = true;
		copy_str(cmd->envid, v, vlen);
		return SMTP_P_OK;
	}
	if (eq_nocase(k, klen, "AUTH")) {
		/* RFC 4954 5: AUTH=<> or AUTH=xtext(mailbox) */
		if (cmd->has_auth || v == NULL || vlen > SMTP_XTEXT_MAX)
			goto bad;
		if (!(vlen == 2 && v[0] == '<' && v[1] == '>') && xtext_check(v, vlen, true) <= 0)
			goto bad;
		cmd->has_auth = true;
		copy_str(cmd->auth, v, vlen);
		return SMTP_P_OK;
	}
	*errstr = "unknown MAIL parameter";
	return SMTP_P_ERR_UNKNOWN_PARAM;
bad:
	*errstr = "bad MAIL parameter";
	return SMTP_P_ERR_PARAM;
}

static enum smtp_parse_status rcpt_param(struct smtp_cmd *cmd, const uint8_t *k, size_t klen,
                                         const uint8_t *v, size_t vlen, const char **errstr)
{
	if (eq_nocase(k, klen, "NOTIFY")) {
		/* RFC 3461 4.1: "NEVER" alone, or a list of SUCCESS, FAILURE,
		 * DELAY. */
		if (cmd->notify != 0 || v == NULL)
			goto bad;
		size_t i = 0;
		while (i <= vlen) {
			size_t s = i;
			while (i < vlen && v[i] != ',')
				i++;
			if (eq_nocase(v + s, i - s, "NEVER"))
				cmd->notify |= SMTP_NOTIFY_NEVER;
			else if (eq_nocase(v + s, i - s, "SUCCESS"))
				cmd->notify |= SMTP_NOTIFY_SUCCESS;
			else if (eq_nocase(v + s, i - s, "FAILURE"))
				cmd->notify |= SMTP_NOTIFY_FAILURE;
			else if (eq_nocase(v + s, i - s, "DELAY"))
				cmd->notify |= SMTP_NOTIFY_DELAY;
			else
				goto bad;
			i++;
		}
		if ((cmd->notify & SMTP_NOTIFY_NEVER) && cmd->notify != SMTP_NOTIFY_NEVER)
			goto bad;
		return SMTP_P_OK;
	}
	if (eq_nocase(k, klen, "ORCPT")) {
		/* RFC 3461 4.2: addr-type ";" xtext, at most 500 characters */
		size_t t = 0;

		if (cmd->has_orcpt || v == NULL || vlen > SMTP_XTEXT_MAX)
			goto bad;
		while (t < vlen && (is_alpha(v[t]) || is_digit(v[t]) || v[t] == '-'))
			t++;
		if (t == 0 || t >= vlen || v[t] != ';')
			goto bad;
		if (xtext_check(v + t + 1, vlen - t - 1, eq_nocase(v, t, "utf-8")) <= 0)
			goto bad;
		cmd->has_orcpt = true;
		copy_str(cmd->orcpt, v, vlen);
		return SMTP_P_OK;
	}
	*errstr = "unknown RCPT parameter";
	return SMTP_P_ERR_UNKNOWN_PARAM;
bad:
	*errstr = "bad RCPT parameter";
	return SMTP_P_ERR_PARAM;
}

/*
 * Mail-parameters = esmtp-param *(SP esmtp-param) (RFC 5321 4.1.2):
 * esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"),
 * esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii).
 */
static enum smtp_parse_status parse_params(struct cur *c, struct smtp_cmd *cmd, const char **errstr)
{
	while (!at_end(c)) {
		size_t ks, klen, vs = 0, vlen = 0;
		bool has_value = false;
		enum smtp_parse_status st;

		if (skip_sp(c) == 0) {
			*errstr = "junk after the path";
			return cmd->verb == SMTP_V_MAIL || cmd->verb == SMTP_V_RCPT
			               ? SMTP_P_ERR_ADDRESS
			               : SMTP_P_ERR_ARGS;
		}
		if (at_end(c))
			break;
		ks = c->i;
		while (!at_end(c) && (is_alpha(c->p[c->i]) || is_digit(c->p[c->i]) ||
		                      (c->i > ks && c->p[c->i] == '-')))
			c->i++;
		klen = c->i - ks;
		if (eat(c, '=')) {
			has_value = true;
			vs = c->i;
			while (!at_end(c) && peek(c) != ' ') {
				if (peek(c) == '=') {
					*errstr = "'=' in a parameter value";
					return SMTP_P_ERR_PARAM;
				}
				c->i++;
			}
			vlen = c->i - vs;
		}
		if (klen == 0 || (!at_end(c) && peek(c) != ' ') || (has_value && vlen == 0)) {
			*errstr = "malformed parameter";
			return SMTP_P_ERR_PARAM;
		}
		if (cmd->verb == SMTP_V_MAIL)
			st = mail_param(cmd, c->p + ks, klen, has_value ? c->p + vs : NULL, vlen,
			                errstr);
		else
			st = rcpt_param(cmd, c->p + ks, klen, has_value ? c->p + vs : NULL, vlen,
			                errstr);
		if (st != SMTP_P_OK)
			return st;
	}
	return SMTP_P_OK;
}

/* --- commands ------------------------------------------------------------- */

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
        {"EHLO", SMTP_V_EHLO},         {"HELO", SMTP_V_HELO}, {"MAIL", SMTP_V_MAIL},
        {"RCPT", SMTP_V_RCPT},         {"DATA", SMTP_V_DATA}, {"BDAT", SMTP_V_BDAT},
        {"RSET", SMTP_V_RSET},         {"NOOP", SMTP_V_NOOP}, {"QUIT", SMTP_V_QUIT},
        {"VRFY", SMTP_V_VRFY},         {"EXPN", SMTP_V_EXPN}, {"HELP", SMTP_V_HELP},
        {"STARTTLS", SMTP_V_STARTTLS}, {"AUTH", SMTP_V_AUTH},
};

const char *smtp_parser_verb_name(enum smtp_verb verb)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (verbs[i].verb == verb)
			return verbs[i].name;
	return "?";
}

static enum smtp_parse_status parse_helo(struct smtp_cmd *cmd, const char **errstr)
{
	/* RFC 5321 4.1.1.1: one Domain or address-literal.  Any single
	 * printable token is taken (clients send all kinds of names and 4.1.4
	 * forbids refusing on the name alone); the Received: header quotes it
	 * safely if it is not a domain. */
	if (cmd->arg_len == 0 || cmd->arg_len > SMTP_HELO_MAX)
		goto bad;
	for (size_t i = 0; i < cmd->arg_len; i++)
		if (cmd->arg[i] < 33 || cmd->arg[i] > 126)
			goto bad;
	copy_str(cmd->helo, cmd->arg, cmd->arg_len);
	return SMTP_P_OK;
bad:
	*errstr = "EHLO/HELO needs one domain argument";
	return SMTP_P_ERR_ARGS;
}

static enum smtp_parse_status parse_mail_rcpt(struct smtp_cmd *cmd, const char **errstr)
{
	struct cur c = {cmd->arg, 0, cmd->arg_len};
	bool mail = cmd->verb == SMTP_V_MAIL;

	if (!eat_word(&c, mail ? "FROM:" : "TO:")) {
		*errstr = mail ? "expected FROM:" : "expected TO:";
		return SMTP_P_ERR_ARGS;
	}
	skip_sp(&c); /* "MAIL FROM: <a@b>": not RFC 5321, but common */
	if (at_end(&c)) {
		*errstr = "missing path";
		return SMTP_P_ERR_ARGS;
	}
	if (parse_path(&c, &cmd->path, mail, !mail) < 0) {
		*errstr = "bad path syntax";
		return SMTP_P_ERR_ADDRESS;
	}
	return parse_params(&c, cmd, errstr);
}

static enum smtp_parse_status parse_bdat(struct smtp_cmd *cmd, const char **errstr)
{
	struct cur c = {cmd->arg, 0, cmd->arg_len};
	uint64_t size = 0;
	size_t digits = 0;

	/* RFC 3030 2: "BDAT" SP chunk-size [ SP end-marker ] */
	while (!at_end(&c) && is_digit(c.p[c.i])) {
		unsigned d = (unsigned)(c.p[c.i] - '0');
		if (size > (UINT64_MAX - d) / 10)
			goto bad;
		size = size * 10 + d;
		c.i++, digits++;
	}
	if (digits == 0)
		goto bad;
	if (!at_end(&c)) {
		if (skip_sp(&c) == 0 || !eat_word(&c, "LAST") || !at_end(&c))
			goto bad;
		cmd->last = true;
	}
	cmd->chunk_size = size;
	return SMTP_P_OK;
bad:
	*errstr = "BDAT needs a chunk size and optionally LAST";
	return SMTP_P_ERR_ARGS;
}

static enum smtp_parse_status parse_auth(struct smtp_cmd *cmd, const char **errstr)
{
	struct cur c = {cmd->arg, 0, cmd->arg_len};
	size_t n = 0;

	/* RFC 4422 3.1: sasl-mech = 1*20mech-char (upper-case letters,
	 * digits, "-", "_"); matched case-insensitively. */
	while (!at_end(&c) && peek(&c) != ' ') {
		uint8_t ch = c.p[c.i];
		if (!(is_alpha(ch) || is_digit(ch) || ch == '-' || ch == '_') || n >= SMTP_MECH_MAX)
			goto bad;
		cmd->mech[n++] = (char)to_upper(ch);
		c.i++;
	}
	cmd->mech[n] = '\0';
	if (n == 0)
		goto bad;
	if (skip_sp(&c) > 0 && !at_end(&c)) {
		cmd->has_ir = true;
		cmd->ir = c.p + c.i;
		while (!at_end(&c) && peek(&c) != ' ')
			c.i++;
		cmd->ir_len = (size_t)(c.p + c.i - cmd->ir);
		if (!at_end(&c))
			goto bad;
	}
	return SMTP_P_OK;
bad:
	*errstr = "AUTH needs a mechanism and optionally an initial response";
	return SMTP_P_ERR_ARGS;
}

enum smtp_parse_status smtp_parser_command(const uint8_t *line, size_t len, struct smtp_cmd *cmd,
                                           const char **errstr_r)
{
	const char *errstr = NULL;
	enum smtp_parse_status st = SMTP_P_OK;
	size_t vlen = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->arg = line;
	/* RFC 5321 4.1.1: be liberal about trailing white space. */
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	for (size_t i = 0; i < len; i++) {
		if (line[i] < 0x20 || line[i] == 0x7f) {
			errstr = "control character in command";
			st = SMTP_P_ERR_SYNTAX;
			goto out;
		}
	}
	if (!utf8_valid(line, len)) {
		errstr = "invalid UTF-8 in command";
		st = SMTP_P_ERR_SYNTAX;
		goto out;
	}
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	for (size_t i = 0; i < vlen; i++) {
		if (!is_alpha(line[i])) {
			errstr = "malformed command verb";
			st = SMTP_P_ERR_SYNTAX;
			goto out;
		}
	}
	if (vlen == 0) {
		errstr = "empty command";
		st = SMTP_P_ERR_SYNTAX;
		goto out;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (eq_nocase(line, vlen, verbs[i].name))
			cmd->verb = verbs[i].verb;
	{
		size_t a = vlen;
		while (a < len && line[a] == ' ')
			a++;
		cmd->arg = line + a;
		cmd->arg_len = len - a;
	}
	switch (cmd->verb) {
	case SMTP_V_UNKNOWN:
		errstr = "unknown command";
		st = SMTP_P_ERR_UNKNOWN;
		break;
	case SMTP_V_EHLO:
	case SMTP_V_HELO:
		st = parse_helo(cmd, &errstr);
		break;
	case SMTP_V_MAIL:
	case SMTP_V_RCPT:
		st = parse_mail_rcpt(cmd, &errstr);
		break;
	case SMTP_V_BDAT:
		st = parse_bdat(cmd, &errstr);
		break;
	case SMTP_V_AUTH:
		st = parse_auth(cmd, &errstr);
		break;
	case SMTP_V_DATA:
	case SMTP_V_RSET:
	case SMTP_V_QUIT:
	case SMTP_V_STARTTLS:
		if (cmd->arg_len != 0) {
			errstr = "command takes no argument";
			st = SMTP_P_ERR_ARGS;
		}
		break;
	case SMTP_V_VRFY:
	case SMTP_V_EXPN:
		if (cmd->arg_len == 0) {
			errstr = "command needs an argument";
			st = SMTP_P_ERR_ARGS;
		}
		break;
	case SMTP_V_NOOP:
	case SMTP_V_HELP:
		break; /* RFC 5321 4.1.1.9/4.1.1.8: an argument is allowed */
	}
out:
	if (errstr_r != NULL)
		*errstr_r = errstr;
	return st;
}

enum smtp_parse_status smtp_parser_next(const uint8_t *p, size_t len, size_t max,
                                        struct smtp_cmd *cmd, size_t *consumed_r,
                                        const char **errstr_r)
{
	size_t line_len;
	enum smtp_parse_status st = smtp_parser_line(p, len, max, &line_len, consumed_r);

	if (st != SMTP_P_OK) {
		if (errstr_r != NULL)
			*errstr_r = st == SMTP_P_TOO_LONG ? "line too long" : NULL;
		return st;
	}
	return smtp_parser_command(p, line_len, cmd, errstr_r);
}

/* --- message content ------------------------------------------------------ */

enum {
	D_BOL_CRLF, /* at the start of a line that followed a real CRLF */
	D_BOL_BARE, /* at the start of a line that followed a bare LF/CR */
	D_MID,      /* inside a line */
	D_CR,       /* a CR held back: CRLF or bare CR decided by the next byte */
	D_DOT_CRLF, /* "." held back at D_BOL_CRLF */
	D_DOT_CR,   /* ".\r" held back at D_BOL_CRLF: an LF ends the message */
	D_DOT_BARE, /* "." held back at D_BOL_BARE */
	D_END,
};

static const uint8_t lit_crlf[] = {'\r', '\n'};
static const uint8_t lit_dot_crlf[] = {'.', '\r', '\n'};
static const uint8_t lit_dot[] = {'.'};

void smtp_parser_data_init(struct smtp_data *d, enum smtp_data_mode mode, uint64_t max,
                           smtp_sink_fn *sink, void *ctx)
{
	memset(d, 0, sizeof(*d));
	d->sink = sink;
	d->ctx = ctx;
	d->mode = mode;
	d->max = max;
	/* The CRLF that ended the DATA line counts: "DATA" CRLF "." CRLF is
	 * an empty message (RFC 5321 4.1.1.4). */
	d->state = D_BOL_CRLF;
}

static void emit(struct smtp_data *d, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	d->size += n;
	if (d->max != 0 && d->size > d->max)
		d->oversize = true;
	if (d->oversize || d->sink_failed)
		return;
	if (d->sink(d->ctx, p, n) < 0)
		d->sink_failed = true;
}

enum smtp_data_status smtp_parser_data_feed(struct smtp_data *d, const uint8_t *p, size_t len,
                                            size_t *consumed_r)
{
	size_t i = 0, run = 0; /* p[run..i) decoded but not yet emitted */
	bool dot = d->mode == SMTP_DATA_DOT;

	if (d->state == D_END) {
		*consumed_r = 0;
		return SMTP_D_DONE;
	}
	while (i < len) {
		uint8_t c = p[i];

		switch (d->state) {
		case D_BOL_CRLF:
		case D_BOL_BARE:
			if (dot && c == '.') {
				emit(d, p + run, i - run);
				d->state = d->state == D_BOL_CRLF ? D_DOT_CRLF : D_DOT_BARE;
				run = ++i;
				continue;
			}
			d->state = D_MID;
			continue;
		case D_MID:
			while (i < len && p[i] != '\r' && p[i] != '\n')
				i++;
			if (i == len)
				continue;
			if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') {
				i += 2; /* CRLF: stays in the run */
				d->state = D_BOL_CRLF;
				continue;
			}
			emit(d, p + run, i - run);
			if (p[i] == '\r' && i + 1 == len) {
				d->state = D_CR; /* decided by the next byte */
			} else {
				/* bare LF, or CR followed by something else */
				emit(d, lit_crlf, 2);
				d->bare_eol = true;
				d->state = D_BOL_BARE;
			}
			run = ++i;
			continue;
		case D_CR:
			emit(d, lit_crlf, 2);
			if (c == '\n') {
				d->state = D_BOL_CRLF;
				run = ++i;
			} else {
				d->bare_eol = true;
				d->state = D_BOL_BARE;
			}
			continue;
		case D_DOT_CRLF:
			if (c == '\r') {
				d->state = D_DOT_CR;
				run = ++i;
			} else if (c == '\n') {
				/* "." ended by a bare LF: not the end marker */
				emit(d, lit_dot_crlf, 3);
				d->bare_eol = true;
				d->state = D_BOL_BARE;
				run = ++i;
			} else {
				d->state = D_MID; /* stuffed: the held dot is dropped */
			}
			continue;
		case D_DOT_CR:
			if (c == '\n') {
				/* RFC 5321 4.1.1.4: CRLF "." CRLF ends the mail
				 * data; the first CRLF ended the last line. */
				d->state = D_END;
				d->done = true;
				*consumed_r = i + 1;
				return SMTP_D_DONE;
			}
			/* "." ended by a bare CR: not the end marker */
			emit(d, lit_dot_crlf, 3);
			d->bare_eol = true;
			d->state = D_BOL_BARE;
			continue;
		case D_DOT_BARE:
			if (c == '\r') {
				emit(d, lit_dot, 1);
				d->state = D_CR;
				run = ++i;
			} else if (c == '\n') {
				emit(d, lit_dot_crlf, 3);
				d->bare_eol = true;
				d->state = D_BOL_BARE;
				run = ++i;
			} else {
				d->state = D_MID;
			}
			continue;
		}
	}
	emit(d, p + run, i - run);
	*consumed_r = len;
	return SMTP_D_NEED_MORE;
}

void smtp_parser_data_finish(struct smtp_data *d)
{
	if (d->state == D_CR) {
		emit(d, lit_crlf, 2);
		d->bare_eol = true;
	}
	d->state = D_MID;
}
