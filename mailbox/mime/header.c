/*
 * mailbox/mime/header.c -- header blocks into fields, Content-* into values.
 *
 * A header block is split into (name, value) pairs once, when its blank
 * line (or the end of the entity) is reached; values are unfolded by
 * deleting CR and LF (RFC 5322 2.2.3: "unfolding is accomplished by simply
 * removing any CRLF that is immediately followed by WSP") and trimmed, which
 * is also the form the IMAP ENVELOPE carries.  The Content-* parsers are
 * lenient in the way mail clients are: junk between parameters is skipped,
 * unquoted values may hold tspecials, and RFC 2231 continuations are joined
 * (kept percent-encoded under the "name*" key, as Dovecot reports them).
 */
#include "mailbox/mime/mime_private.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/xmalloc.h"

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *trim_dup(const char *s, size_t n)
{
	char *r, *o;

	while (n > 0 && is_wsp(*s)) {
		s++;
		n--;
	}
	while (n > 0 && is_wsp(s[n - 1]))
		n--;
	/* a NUL cannot travel in an IMAP string: U+FFFD, as Dovecot does */
	r = xmalloc(n * 3 + 1);
	o = r;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\0') {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return r;
}

static bool valid_field_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		/* RFC 5322 3.6.8: ftext is %d33-57 / %d59-126 */
		if (c < 33 || c > 126 || c == ':')
			return false;
	}
	return true;
}

void mime_header_split(const char *raw, size_t len, struct mime_fields *out)
{
	struct buf val;
	size_t cap = 0;
	bool have = false;
	const char *name = NULL;
	size_t name_len = 0;

	out->v = NULL;
	out->n = 0;
	buf_init(&val, 0);
	for (size_t i = 0; i <= len;) {
		const char *line = raw + i;
		const char *lf = i < len ? memchr(line, '\n', len - i) : NULL;
		size_t n = lf ? (size_t)(lf - line) : len - i;
		bool cont = i < len && (line[0] == ' ' || line[0] == '\t');

		if (!cont && have) {
			/* flush the field collected so far */
			if (out->n == cap) {
				cap = cap ? cap * 2 : 16;
				out->v = xreallocarray(out->v, cap, sizeof(*out->v));
			}
			out->v[out->n].name = xstrndup(name, name_len);
			out->v[out->n].value = trim_dup(
			        buf_len(&val) ? (const char *)buf_ptr(&val) : "", buf_len(&val));
			out->n++;
			have = false;
		}
		if (i == len)
			break;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (cont) {
			if (have)
				buf_append(&val, line, n);
		} else {
			const char *colon = memchr(line, ':', n);

			if (colon != NULL) {
				size_t nl = (size_t)(colon - line);

				/* RFC 5322 4.5.8 obs-optional: WSP before ':' */
				while (nl > 0 && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))
					nl--;
				if (valid_field_name(line, nl)) {
					have = true;
					name = line;
					name_len = nl;
					buf_reset(&val);
					buf_append(&val, colon + 1, n - (size_t)(colon + 1 - line));
				}
			}
		}
		i += lf ? (size_t)(lf - line) + 1 : len - i;
	}
	buf_free(&val);
}

void mime_header_fields_free(struct mime_fields *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i].name);
		free(f->v[i].value);
	}
	free(f->v);
	f->v = NULL;
	f->n = 0;
}

const char *mime_header_get(const struct mime_fields *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcasecmp(f->v[i].name, name) == 0)
			return f->v[i].value;
	return NULL;
}

/* Skip whitespace and RFC 5322 comments (nested, with quoted-pairs). */
static const char *skip_cfws(const char *s)
{
	for (;;) {
		while (is_wsp(*s))
			s++;
		if (*s != '(')
			return s;
		int depth = 0;
		do {
			if (*s == '\\' && s[1] != '\0')
				s++;
			else if (*s == '(')
				depth++;
			else if (*s == ')')
				depth--;
			s++;
		} while (depth > 0 && *s != '\0');
	}
}

/* RFC 2045 5.1 token: no SPACE, CTLs or tspecials. */
static bool is_token_char(unsigned char c)
{
	return c > 32 && c != 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static size_t token_len(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0' && is_token_char((unsigned char)s[n]))
		n++;
	return n;
}

/* Read a quoted-string at s (which starts with '"'); *end_r after it. */
static char *read_quoted(const char *s, const char **end_r)
{
	struct buf b;
	char *r;

	buf_init(&b, 0);
	s++;
	while (*s != '\0' && *s != '"') {
		if (*s == '\\' && s[1] != '\0')
			s++;
		/* unfolding already removed CRLF; keep the rest */
		buf_append(&b, s, 1);
		s++;
	}
	if (*s == '"')
		s++;
	*end_r = s;
	buf_append(&b, "", 1);
	r = xstrdup((const char *)buf_ptr(&b));
	buf_free(&b);
	return r;
}

static void params_add(struct mime_params *p, char *name, char *value)
{
	p->v = xreallocarray(p->v, p->n + 1, sizeof(*p->v));
	p->v[p->n].name = name;
	p->v[p->n].value = value;
	p->n++;
}

/*
 * RFC 2231 3: "name*0", "name*1*", ... are pieces of one value.  Join them
 * in index order under "name*" when the first piece is extended (charset'
 * lang'%XX), else under "name"; the joined parameter takes the place of
 * its first piece.
 */
static void params_join_2231(struct mime_params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		char *star = strchr(p->v[i].name, '*');
		size_t base_len;
		struct buf val;
		bool extended = false;
		unsigned nfound = 0;

		if (star == NULL || !isdigit((unsigned char)star[1]))
			continue;
		base_len = (size_t)(star - p->v[i].name);
		buf_init(&val, 0);
		for (unsigned idx = 0;; idx++) {
			bool found = false;

			for (size_t j = i; j < p->n; j++) {
				const char *nm = p->v[j].name;
				char *endp;
				unsigned long k;

				if (strncasecmp(nm, p->v[i].name, base_len) != 0 ||
				    nm[base_len] != '*' ||
				    !isdigit((unsigned char)nm[base_len + 1]))
					continue;
				k = strtoul(nm + base_len + 1, &endp, 10);
				if (k != idx || (*endp != '\0' && strcmp(endp, "*") != 0))
					continue;
				if (idx == 0)
					extended = *endp == '*';
				buf_puts(&val, p->v[j].value);
				found = true;
				if (j != i) {
					free(p->v[j].name);
					free(p->v[j].value);
					memmove(&p->v[j], &p->v[j + 1],
					        (p->n - j - 1) * sizeof(*p->v));
					p->n--;
				}
				break;
			}
			if (!found || idx > 999)
				break;
			nfound++;
		}
		if (nfound == 0) {
			/* no piece 0: not a continuation we can join */
			buf_free(&val);
			continue;
		}
		free(p->v[i].value);
		buf_append(&val, "", 1);
		p->v[i].value = xstrdup((const char *)buf_ptr(&val));
		buf_free(&val);
		p->v[i].name[base_len] = '\0';
		if (extended) {
			p->v[i].name[base_len] = '*';
			p->v[i].name[base_len + 1] = '\0';
		}
	}
}

void mime_header_params(const char *s, struct mime_params *out)
{
	out->v = NULL;
	out->n = 0;
	for (;;) {
		size_t n;
		char *name, *value;

		s = skip_cfws(s);
		if (*s == '\0')
			break;
		if (*s != ';') {
			/* junk: resynchronise at the next ';' */
			while (*s != '\0' && *s != ';') {
				if (*s == '"')
					free(read_quoted(s, &s));
				else
					s++;
			}
			continue;
		}
		s = skip_cfws(s + 1);
		n = token_len(s);
		if (n == 0)
			continue;
		name = xstrndup(s, n);
		s = skip_cfws(s + n);
		if (*s != '=') {
			free(name);
			continue;
		}
		s = skip_cfws(s + 1);
		if (*s == '"') {
			value = read_quoted(s, &s);
		} else {
			/* lenient: unquoted values often hold '=' or '/' */
			n = 0;
			while (s[n] != '\0' && s[n] != ';' && !is_wsp(s[n]) && s[n] != '"' &&
			       s[n] != '(')
				n++;
			value = xstrndup(s, n);
			s += n;
		}
		params_add(out, name, value);
	}
	params_join_2231(out);
}

void mime_header_params_free(struct mime_params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].name);
		free(p->v[i].value);
	}
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

const char *mime_header_param(const struct mime_params *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcasecmp(p->v[i].name, name) == 0)
			return p->v[i].value;
	return NULL;
}

/* A single token value (Content-Transfer-Encoding, disposition type). */
static char *first_token(const char *s, const char **end_r)
{
	size_t n;

	s = skip_cfws(s);
	n = token_len(s);
	if (end_r)
		*end_r = s + n;
	return n ? xstrndup(s, n) : NULL;
}

static void parse_content_type(const char *v, struct mime_content *c)
{
	const char *s = skip_cfws(v);
	size_t n = token_len(s), m;
	const char *sub;

	if (n == 0)
		return;
	sub = skip_cfws(s + n);
	if (*sub != '/')
		return;
	sub = skip_cfws(sub + 1);
	m = token_len(sub);
	if (m == 0)
		return;
	c->type = xstrndup(s, n);
	c->subtype = xstrndup(sub, m);
	c->has_type = true;
	mime_header_params(sub + m, &c->params);
}

static void parse_language(const char *v, struct mime_content *c)
{
	const char *s = v;

	for (;;) {
		size_t n;

		s = skip_cfws(s);
		while (*s == ',')
			s = skip_cfws(s + 1);
		if (*s == '\0')
			break;
		n = 0;
		while (s[n] != '\0' && s[n] != ',' && !is_wsp(s[n]) && s[n] != '(')
			n++;
		if (n == 0) {
			s++;
			continue;
		}
		c->lang = xreallocarray(c->lang, c->nlang + 1, sizeof(*c->lang));
		c->lang[c->nlang++] = xstrndup(s, n);
		s += n;
	}
}

void mime_header_content(const struct mime_fields *f, bool dflt_rfc822, struct mime_content *c)
{
	const char *v;

	memset(c, 0, sizeof(*c));
	if ((v = mime_header_get(f, "Content-Type")) != NULL)
		parse_content_type(v, c);
	if (!c->has_type) {
		/* RFC 2045 5.2 default; RFC 2046 5.1.5 in multipart/digest */
		mime_header_params_free(&c->params);
		if (dflt_rfc822) {
			c->type = xstrdup("message");
			c->subtype = xstrdup("rfc822");
		} else {
			c->type = xstrdup("text");
			c->subtype = xstrdup("plain");
		}
	}
	if (strcasecmp(c->type, "text") == 0 && mime_header_param(&c->params, "charset") == NULL)
		params_add(&c->params, xstrdup("charset"), xstrdup("us-ascii"));
	if ((v = mime_header_get(f, "Content-Transfer-Encoding")) != NULL)
		c->encoding = first_token(v, NULL);
	if ((v = mime_header_get(f, "Content-ID")) != NULL)
		c->id = xstrdup(v);
	if ((v = mime_header_get(f, "Content-Description")) != NULL)
		c->description = xstrdup(v);
	if ((v = mime_header_get(f, "Content-MD5")) != NULL)
		c->md5 = xstrdup(v);
	if ((v = mime_header_get(f, "Content-Location")) != NULL)
		c->location = xstrdup(v);
	if ((v = mime_header_get(f, "Content-Language")) != NULL)
		parse_language(v, c);
	if ((v = mime_header_get(f, "Content-Disposition")) != NULL) {
		const char *end;

		c->disposition = first_token(v, &end);
		if (c->disposition != NULL)
			mime_header_params(end, &c->disp_params);
	}
}

void mime_header_content_free(struct mime_content *c)
{
	free(c->type);
	free(c->subtype);
	mime_header_params_free(&c->params);
	free(c->id);
	free(c->description);
	free(c->encoding);
	free(c->md5);
	free(c->location);
	free(c->disposition);
	mime_header_params_free(&c->disp_params);
	for (size_t i = 0; i < c->nlang; i++)
		free(c->lang[i]);
	free(c->lang);
	memset(c, 0, sizeof(*c));
}
