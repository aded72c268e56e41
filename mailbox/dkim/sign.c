/*
 * mailbox/dkim/sign.c -- the streaming DKIM signer.
 *
 * Two phases.  In the header phase every byte is copied into a bounded
 * buffer, with line ends normalized to CRLF, until an empty line; the rest
 * of the input goes straight to the relaxed body canonicalizer, whose
 * output is hashed once for all signatures.  At the end the header block
 * is split into fields, and for each signature the DKIM-Signature field is
 * written with an empty b=, the selected fields and that field are
 * canonicalized (RFC 6376 3.7), and the result is signed:
 *
 *   rsa-sha256      RSASSA-PKCS1-v1_5 over SHA-256 of the header data
 *                   (RFC 6376 3.3.1), EVP_DigestSign with EVP_sha256();
 *   ed25519-sha256  PureEdDSA over the 32-byte SHA-256 of the header data
 *                   (RFC 8463 3: the hash, not the data, is signed),
 *                   EVP_DigestSign with no digest on an ED25519 key.
 *
 * The b= value is then appended to the same text that was signed, folded
 * after "b=" as RFC 6376 3.5 allows (FWS inside base64 is ignored).
 */
#include "mailbox/dkim/sign.h"

#include "mailbox/dkim/canon.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const dkim_sign_default_headers[] = {
        "from",       "to",           "cc",           "subject",
        "date",       "message-id",   "reply-to",     "in-reply-to",
        "references", "mime-version", "content-type", "content-transfer-encoding",
        NULL,
};

static const char *const default_oversign[] = {"from", NULL};

#define FOLD_AT 78 /* RFC 5322 2.1.1: lines SHOULD be at most 78 characters */

enum phase {
	PH_HEADER = 0,
	PH_BODY,
	PH_ERROR,
};

struct spec {
	const struct dkim_key *key;
	char *domain, *selector, *identity;
	int64_t expire_secs;
};

struct field {
	size_t off, len; /* raw field in hdr, without its final CRLF */
	size_t namelen;  /* name, trailing WSP stripped */
};

struct dkim_sign {
	struct spec specs[DKIM_SIGN_MAX];
	size_t nspecs;
	char **headers; /* lower-case, NULL-terminated */
	char **oversign;
	int64_t now;

	enum phase phase;
	struct buf hdr;  /* the header block, CRLF line ends */
	bool line_start; /* header phase: at the start of a line */
	bool cr;         /* header phase: a CR is held back */

	struct dkim_canon_body body;
	EVP_MD_CTX *bh_ctx;
};

/* --- validation --------------------------------------------------------------- */

/* dot-separated labels of letters, digits, '-' and '_' (RFC 6376 3.1, 3.5) */
static bool valid_domainish(const char *s)
{
	size_t label = 0;

	if (*s == '\0' || strlen(s) > 253)
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/* RFC 6376 3.5 i=: [local-part] "@" domain, the domain d= or below it */
static bool valid_identity(const char *id, const char *domain)
{
	const char *at = strrchr(id, '@');
	size_t dl = strlen(domain), il;
	const char *p;

	if (at == NULL)
		return false;
	for (p = id; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == ';' || *p == 0x7f)
			return false;
	at++;
	il = strlen(at);
	if (il == dl)
		return strcasecmp(at, domain) == 0;
	return il > dl && at[il - dl - 1] == '.' && strcasecmp(at + il - dl, domain) == 0;
}

/* RFC 5322 2.2: a field name is printable US-ASCII except ':' */
static bool valid_field_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return false;
	return true;
}

static char **copy_names(const char *const *names, const char **errstr_r)
{
	size_t n = 0, i, j;
	char **out;

	while (names[n] != NULL)
		n++;
	out = xcalloc(n + 1, sizeof(*out));
	for (i = 0; i < n; i++) {
		if (!valid_field_name(names[i])) {
			*errstr_r = "invalid header field name in the signed set";
			goto fail;
		}
		out[i] = xstrdup(names[i]);
		for (j = 0; out[i][j] != '\0'; j++)
			if (out[i][j] >= 'A' && out[i][j] <= 'Z')
				out[i][j] = (char)(out[i][j] - 'A' + 'a');
	}
	return out;
fail:
	for (j = 0; j < i; j++)
		free(out[j]);
	free(out);
	return NULL;
}

static void free_names(char **names)
{
	size_t i;

	if (names == NULL)
		return;
	for (i = 0; names[i] != NULL; i++)
		free(names[i]);
	free(names);
}

/* --- construction --------------------------------------------------------------- */

static void bh_sink(void *ctx, const uint8_t *p, size_t n)
{
	struct dkim_sign *s = ctx;

	if (EVP_DigestUpdate(s->bh_ctx, p, n) != 1)
		s->phase = PH_ERROR;
}

struct dkim_sign *dkim_sign_new(const struct dkim_sign_spec *specs, size_t n,
                                const struct dkim_sign_opts *opts, const char **errstr_r)
{
	struct dkim_sign *s = xcalloc(1, sizeof(*s));
	size_t i;
	bool has_from = false;

	if (n == 0 || n > DKIM_SIGN_MAX) {
		*errstr_r = "between 1 and 8 signatures per message";
		goto fail;
	}
	for (i = 0; i < n; i++) {
		const struct dkim_sign_spec *sp = &specs[i];
		if (sp->key == NULL || sp->domain == NULL || sp->selector == NULL) {
			*errstr_r = "a signature needs a key, a domain and a selector";
			goto fail;
		}
		if (!valid_domainish(sp->domain)) {
			*errstr_r = "invalid signing domain (d=)";
			goto fail;
		}
		if (!valid_domainish(sp->selector)) {
			*errstr_r = "invalid selector (s=)";
			goto fail;
		}
		if (sp->identity != NULL && !valid_identity(sp->identity, sp->domain)) {
			*errstr_r = "invalid identity (i=): not in the signing domain";
			goto fail;
		}
		s->specs[i].key = sp->key;
		s->specs[i].domain = xstrdup(sp->domain);
		s->specs[i].selector = xstrdup(sp->selector);
		s->specs[i].identity = sp->identity ? xstrdup(sp->identity) : NULL;
		s->specs[i].expire_secs = sp->expire_secs;
		s->nspecs = i + 1;
	}
	s->headers =
	        copy_names(opts->headers ? opts->headers : dkim_sign_default_headers, errstr_r);
	if (s->headers == NULL)
		goto fail;
	s->oversign = copy_names(opts->oversign ? opts->oversign : default_oversign, errstr_r);
	if (s->oversign == NULL)
		goto fail;
	for (i = 0; s->headers[i] != NULL; i++)
		if (strcmp(s->headers[i], "from") == 0)
			has_from = true;
	if (!has_from) {
		/* RFC 6376 5.4: the From header field MUST be signed */
		*errstr_r = "the signed header set must include From";
		goto fail;
	}
	s->now = opts->now;
	buf_init(&s->hdr, opts->header_max ? opts->header_max : DKIM_HEADER_MAX);
	s->line_start = true;
	s->bh_ctx = EVP_MD_CTX_new();
	if (s->bh_ctx == NULL || EVP_DigestInit_ex(s->bh_ctx, EVP_sha256(), NULL) != 1) {
		*errstr_r = "cannot start SHA-256";
		goto fail;
	}
	dkim_canon_body_init(&s->body, bh_sink, s);
	return s;
fail:
	dkim_sign_free(&s);
	return NULL;
}

void dkim_sign_free(struct dkim_sign **sp)
{
	struct dkim_sign *s = *sp;
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nspecs; i++) {
		free(s->specs[i].domain);
		free(s->specs[i].selector);
		free(s->specs[i].identity);
	}
	free_names(s->headers);
	free_names(s->oversign);
	buf_free(&s->hdr);
	EVP_MD_CTX_free(s->bh_ctx);
	free(s);
	*sp = NULL;
}

/* --- input ------------------------------------------------------------------------ */

static int hdr_put(struct dkim_sign *s, const void *p, size_t n)
{
	if (buf_append(&s->hdr, p, n) < 0) {
		s->phase = PH_ERROR;
		return -1;
	}
	return 0;
}

/* A line end in the header phase; true when it ends the header block. */
static bool hdr_line_end(struct dkim_sign *s)
{
	if (s->line_start) {
		s->phase = PH_BODY; /* the empty line: not part of either */
		return true;
	}
	s->line_start = true;
	return hdr_put(s, "\r\n", 2) < 0;
}

int dkim_sign_feed(struct dkim_sign *s, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i < n && s->phase == PH_HEADER; i++) {
		uint8_t c = p[i];
		if (s->cr) {
			s->cr = false;
			if (c == '\n') {
				hdr_line_end(s);
				continue;
			}
			s->line_start = false;
			if (hdr_put(s, "\r", 1) < 0)
				break;
		}
		if (c == '\r') {
			s->cr = true;
		} else if (c == '\n') {
			hdr_line_end(s);
		} else {
			s->line_start = false;
			hdr_put(s, &c, 1);
		}
	}
	if (s->phase == PH_BODY && i < n)
		dkim_canon_body_feed(&s->body, p + i, n - i);
	return s->phase == PH_ERROR ? -1 : 0;
}

/* --- fields --------------------------------------------------------------------------- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Split the header block into fields (a line starting with WSP continues the
 * field before it; RFC 5322 2.2.3).  Returns the count; *fields_r is freed by
 * the caller. */
static size_t split_fields(const struct buf *hdr, struct field **fields_r)
{
	size_t len = buf_len(hdr), pos = 0, n = 0, cap = 0;
	const char *h = len ? (const char *)buf_ptr(hdr) : "";
	struct field *f = NULL;

	while (pos < len) {
		const char *eol = memmem(h + pos, len - pos, "\r\n", 2);
		size_t end = eol ? (size_t)(eol - h) : len;
		size_t next = eol ? end + 2 : len;
		if (is_wsp(h[pos]) && n > 0) {
			f[n - 1].len = end - f[n - 1].off;
		} else if (!is_wsp(h[pos])) {
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				f = xreallocarray(f, cap, sizeof(*f));
			}
			f[n].off = pos;
			f[n].len = end - pos;
			n++;
		}
		pos = next;
	}
	for (size_t i = 0; i < n; i++) {
		const char *c = memchr(h + f[i].off, ':', f[i].len);
		size_t nl = c ? (size_t)(c - (h + f[i].off)) : f[i].len;
		while (nl > 0 && is_wsp(h[f[i].off + nl - 1]))
			nl--;
		f[i].namelen = nl;
	}
	*fields_r = f;
	return n;
}

static bool field_is(const struct buf *hdr, const struct field *f, const char *name)
{
	size_t nl = strlen(name);

	return f->namelen == nl && strncasecmp((const char *)buf_ptr(hdr) + f->off, name, nl) == 0;
}

static size_t count_fields(const struct buf *hdr, const struct field *f, size_t nf,
                           const char *name)
{
	size_t i, c = 0;

	for (i = 0; i < nf; i++)
		if (field_is(hdr, &f[i], name))
			c++;
	return c;
}

static bool in_list(char **list, const char *name)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

/* --- the signature field -------------------------------------------------------- */

struct folder {
	struct buf *b;
	size_t col; /* characters on the current line */
};

/* Append one token, breaking the line first if it would pass FOLD_AT. */
static void fold_token(struct folder *fo, const char *tok, bool space_before)
{
	size_t n = strlen(tok);

	if (fo->col + (space_before ? 1 : 0) + n > FOLD_AT && fo->col > 1) {
		buf_puts(fo->b, "\r\n\t");
		fo->col = 1;
	} else if (space_before) {
		buf_puts(fo->b, " ");
		fo->col++;
	}
	buf_puts(fo->b, tok);
	fo->col += n;
}

/* The field up to and including "b=" (b= empty): what gets signed. */
static void sig_field(const struct dkim_sign *s, const struct spec *sp, const char *hlist,
                      const char *bh64, struct buf *out)
{
	struct folder fo = {.b = out, .col = 0};
	char tmp[512];
	const char *p;

	buf_puts(out, "DKIM-Signature:");
	fo.col = strlen("DKIM-Signature:");
	fold_token(&fo, "v=1;", true);
	snprintf(tmp, sizeof(tmp), "a=%s;", dkim_alg_name(dkim_key_alg(sp->key)));
	fold_token(&fo, tmp, true);
	fold_token(&fo, "c=relaxed/relaxed;", true);
	snprintf(tmp, sizeof(tmp), "d=%s;", sp->domain);
	fold_token(&fo, tmp, true);
	snprintf(tmp, sizeof(tmp), "s=%s;", sp->selector);
	fold_token(&fo, tmp, true);
	if (sp->identity != NULL) {
		char *t = xasprintf("i=%s;", sp->identity);
		fold_token(&fo, t, true);
		free(t);
	}
	snprintf(tmp, sizeof(tmp), "t=%" PRId64 ";", s->now);
	fold_token(&fo, tmp, true);
	if (sp->expire_secs > 0) {
		snprintf(tmp, sizeof(tmp), "x=%" PRId64 ";", s->now + sp->expire_secs);
		fold_token(&fo, tmp, true);
	}
	/* h=: FWS is allowed after each ':' (RFC 6376 3.5 sig-h-tag), so the
	 * list breaks between names */
	p = hlist;
	{
		bool first = true;
		while (*p != '\0') {
			const char *colon = strchr(p, ':');
			size_t n = colon ? (size_t)(colon - p) + 1 : strlen(p);
			char *tok = xasprintf("%s%.*s%s", first ? "h=" : "", (int)n, p,
			                      colon ? "" : ";");
			fold_token(&fo, tok, first);
			free(tok);
			first = false;
			p += n;
		}
	}
	snprintf(tmp, sizeof(tmp), "bh=%s;", bh64);
	fold_token(&fo, tmp, true);
	fold_token(&fo, "b=", true);
}

/* Append the base64 signature after "b=", folded (FWS inside the value is
 * allowed and ignored, RFC 6376 3.5 sig-b-tag-data). */
static void append_b(struct buf *out, size_t col, const char *b64)
{
	size_t n = strlen(b64), room;

	while (n > 0) {
		room = col < FOLD_AT ? FOLD_AT - col : 0;
		if (room < 8) {
			buf_puts(out, "\r\n\t");
			col = 1;
			continue;
		}
		if (room > n)
			room = n;
		buf_append(out, b64, room);
		col += room;
		b64 += room;
		n -= room;
	}
	buf_puts(out, "\r\n");
}

static size_t current_col(const struct buf *b)
{
	const uint8_t *p = buf_ptr(b);
	size_t n = buf_len(b), i = n;

	while (i > 0 && p[i - 1] != '\n')
		i--;
	return n - i;
}

static char *b64(const unsigned char *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* Sign data with the key's algorithm; *sig_r is allocated. */
static int sign_data(const struct dkim_key *k, const uint8_t *data, size_t n, unsigned char **sig_r,
                     size_t *siglen_r)
{
	EVP_PKEY *pkey = dkim_key_evp(k);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char hash[SHA256_DIGEST_LENGTH];
	unsigned char *sig = NULL;
	size_t siglen = 0;
	int rc = -1;

	if (ctx == NULL)
		goto fail;
	if (dkim_key_alg(k) == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463 3: Ed25519 signs the SHA-256 hash of the header data */
		SHA256(data, n, hash);
		data = hash;
		n = sizeof(hash);
		if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) != 1)
			goto fail;
	} else {
		if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1)
			goto fail;
	}
	if (EVP_DigestSign(ctx, NULL, &siglen, data, n) != 1)
		goto fail;
	sig = xmalloc(siglen);
	if (EVP_DigestSign(ctx, sig, &siglen, data, n) != 1)
		goto fail;
	*sig_r = sig;
	*siglen_r = siglen;
	sig = NULL;
	rc = 0;
fail:
	free(sig);
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* h= for this message: each set member as often as it occurs, then the
 * over-signed names once more. */
static char *build_hlist(const struct dkim_sign *s, const struct field *f, size_t nf)
{
	struct buf b;
	char *out;
	size_t i, k, c;

	buf_init(&b, 0);
	for (i = 0; s->headers[i] != NULL; i++) {
		c = count_fields(&s->hdr, f, nf, s->headers[i]);
		if (in_list(s->oversign, s->headers[i]))
			c++;
		for (k = 0; k < c; k++)
			buf_printf(&b, "%s%s", buf_len(&b) ? ":" : "", s->headers[i]);
	}
	out = xstrndup((const char *)buf_ptr(&b), buf_len(&b));
	buf_free(&b);
	return out;
}

/* Canonical header data for hlist: for each name, the next instance counted
 * from the bottom (RFC 6376 5.4.2); a name with none left adds nothing. */
static int canon_selected(const struct dkim_sign *s, const struct field *f, size_t nf,
                          const char *hlist, struct buf *out)
{
	const char *p = hlist;
	bool *used = xcalloc(nf ? nf : 1, sizeof(*used));
	int rc = -1;

	while (*p != '\0') {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		size_t i;
		for (i = nf; i > 0; i--) {
			const struct field *fi = &f[i - 1];
			if (used[i - 1] || fi->namelen != n ||
			    strncasecmp((const char *)buf_ptr(&s->hdr) + fi->off, p, n) != 0)
				continue;
			used[i - 1] = true;
			if (dkim_canon_header((const char *)buf_ptr(&s->hdr) + fi->off, fi->len,
			                      true, out) < 0)
				goto fail;
			break;
		}
		p += n + (colon ? 1 : 0);
	}
	rc = 0;
fail:
	free(used);
	return rc;
}

int dkim_sign_finish(struct dkim_sign *s, struct buf *out, const char **errstr_r)
{
	unsigned char bh[SHA256_DIGEST_LENGTH];
	unsigned int bhlen = 0;
	struct field *fields = NULL;
	size_t nf, i;
	char *hlist = NULL, *bh64 = NULL;
	struct buf data, field;
	int rc = -1;

	buf_init(&data, 0);
	buf_init(&field, 0);
	if (s->phase == PH_HEADER && s->cr) {
		s->cr = false;
		hdr_put(s, "\r", 1);
	}
	if (s->phase == PH_ERROR) {
		*errstr_r = "header block exceeds its bound, or finish called twice";
		goto fail;
	}
	dkim_canon_body_finish(&s->body);
	if (s->phase == PH_ERROR || EVP_DigestFinal_ex(s->bh_ctx, bh, &bhlen) != 1) {
		*errstr_r = "body hash failed";
		goto fail;
	}
	s->phase = PH_ERROR; /* finish runs once */
	bh64 = b64(bh, bhlen);
	nf = split_fields(&s->hdr, &fields);
	hlist = build_hlist(s, fields, nf);

	for (i = 0; i < s->nspecs; i++) {
		unsigned char *sig = NULL;
		size_t siglen = 0;
		char *sig64;

		buf_reset(&data);
		buf_reset(&field);
		if (canon_selected(s, fields, nf, hlist, &data) < 0)
			goto fail;
		sig_field(s, &s->specs[i], hlist, bh64, &field);
		/* RFC 6376 3.7: the signature field itself, b= empty, canonicalized,
		 * without its trailing CRLF */
		dkim_canon_header((const char *)buf_ptr(&field), buf_len(&field), false, &data);
		if (sign_data(s->specs[i].key, buf_ptr(&data), buf_len(&data), &sig, &siglen) < 0) {
			*errstr_r = "signing failed";
			goto fail;
		}
		sig64 = b64(sig, siglen);
		free(sig);
		append_b(&field, current_col(&field), sig64);
		free(sig64);
		buf_append(out, buf_ptr(&field), buf_len(&field));
	}
	rc = 0;
fail:
	free(fields);
	free(hlist);
	free(bh64);
	buf_free(&data);
	buf_free(&field);
	return rc;
}
