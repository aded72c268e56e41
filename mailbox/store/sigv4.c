/*
 * mailbox/store/sigv4.c -- AWS SigV4 for S3, pure (see sigv4.h for the
 * rules followed and their source).
 *
 * Plain string assembly into struct buf: the canonical request, the
 * string to sign, then the HMAC-SHA256 key derivation chain.  Sorting is
 * bytewise (strcmp) on the encoded names, which is what AWS specifies
 * ("sort by character code point") and botocore does.  Header names are
 * lower-cased ASCII; values lose leading and trailing whitespace and inner
 * whitespace runs become one space (the spec's "Trimall").  Nothing here
 * reads a clock or the environment, so a signature is reproducible from
 * its inputs alone and can be compared with another implementation.
 */
#include "mailbox/store/sigv4.h"

#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define SIGV4_ALGO        "AWS4-HMAC-SHA256"
#define SIGV4_MAX_HEADERS 32

static const char hexdig[] = "0123456789abcdef";
static const char hexdig_up[] = "0123456789ABCDEF";

static void hex_encode(const unsigned char *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[p[i] >> 4];
		out[2 * i + 1] = hexdig[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *p, size_t n, char hex[SIGV4_SHA256_HEX + 1])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(p, n, md);
	hex_encode(md, sizeof(md), hex);
}

/* RFC 3986 2.3 unreserved characters: the only bytes SigV4 leaves as is. */
static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

size_t sigv4_uri_encode(const char *s, size_t len, bool keep_slash, char *out, size_t outsz)
{
	size_t need = 0, done = 0;
	bool full = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t w = (unreserved(c) || (keep_slash && c == '/')) ? 1 : 3;

		/* write only whole units, so a truncated result is well formed */
		if (!full && outsz > 0 && need + w < outsz) {
			if (w == 1) {
				out[need] = (char)c;
			} else {
				out[need] = '%';
				out[need + 1] = hexdig_up[c >> 4];
				out[need + 2] = hexdig_up[c & 15];
			}
			done = need + w;
		} else {
			full = true;
		}
		need += w;
	}
	if (outsz > 0)
		out[done] = '\0';
	return need;
}

static void buf_encode(struct buf *b, const char *s, bool keep_slash)
{
	size_t len = strlen(s);
	size_t need = sigv4_uri_encode(s, len, keep_slash, NULL, 0);
	uint8_t *p = buf_reserve(b, need + 1);

	ASSERT(p != NULL);
	sigv4_uri_encode(s, len, keep_slash, (char *)p, need + 1);
	buf_commit(b, need);
}

/* A NUL-terminated malloc'd copy of b's content. */
static char *buf_take(struct buf *b)
{
	char *s = xmalloc(buf_len(b) + 1);

	if (buf_len(b) > 0)
		memcpy(s, buf_ptr(b), buf_len(b));
	s[buf_len(b)] = '\0';
	return s;
}

struct qpair {
	char *name, *value; /* encoded */
};

static int qpair_cmp(const void *a, const void *b)
{
	const struct qpair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c != 0 ? c : strcmp(x->value, y->value);
}

struct hdr {
	char *name;  /* lower-cased */
	char *value; /* trimmed, squeezed */
};

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* Trimall: no leading/trailing whitespace, inner runs squeezed to one
 * space.  NULL if the value holds a control byte other than tab. */
static char *trimall(const char *v)
{
	char *out = xmalloc(strlen(v) + 1), *o = out;
	bool space = false;

	while (is_ws(*v))
		v++;
	for (; *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;
		if (is_ws((char)c)) {
			space = true;
			continue;
		}
		if (c < 0x20 || c == 0x7f) {
			free(out);
			return NULL;
		}
		if (space && o != out)
			*o++ = ' ';
		space = false;
		*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

static bool name_ok(const char *n)
{
	if (n == NULL || *n == '\0')
		return false;
	/* RFC 9110 5.1: a field name is a token */
	for (; *n != '\0'; n++) {
		unsigned char c = (unsigned char)*n;
		if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c) != NULL)
			return false;
	}
	return true;
}

static bool hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == SIGV4_SHA256_HEX;
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
	unsigned int len = 32;

	ASSERT(HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out,
	            &len) != NULL);
}

void sigv4_result_free(struct sigv4_result *res)
{
	if (res == NULL)
		return;
	free(res->authorization);
	free(res->content_sha256);
	free(res->encoded_path);
	free(res->encoded_query);
	free(res->canonical_request);
	free(res->string_to_sign);
	memset(res, 0, sizeof(*res));
}

int sigv4_sign(const struct sigv4_request *r, struct sigv4_result *out, const char **errstr_r)
{
	struct qpair *q = NULL;
	struct hdr h[SIGV4_MAX_HEADERS + 3];
	size_t nh = 0;
	struct buf b, signed_names;
	char date[9], scope_hash[SIGV4_SHA256_HEX + 1], sig_hex[65];
	unsigned char k[32], sig[32];
	char *secret_key = NULL, *scope = NULL;
	struct tm tm;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	buf_init(&b, 0);
	buf_init(&signed_names, 0);
	if (r->method == NULL || r->path == NULL || r->host == NULL || r->region == NULL ||
	    r->service == NULL || r->access_key == NULL || r->secret_key == NULL ||
	    r->payload_sha256 == NULL || r->method[0] == '\0' || r->host[0] == '\0' ||
	    r->region[0] == '\0' || r->service[0] == '\0' || r->access_key[0] == '\0') {
		*errstr_r = "sigv4: a required field is missing";
		goto fail;
	}
	if (r->path[0] != '/') {
		*errstr_r = "sigv4: path must start with '/'";
		goto fail;
	}
	if (!hex64(r->payload_sha256) && strcmp(r->payload_sha256, SIGV4_UNSIGNED_PAYLOAD) != 0) {
		*errstr_r =
		        "sigv4: payload hash must be 64 lower-case hex digits or UNSIGNED-PAYLOAD";
		goto fail;
	}
	if (r->nheaders > SIGV4_MAX_HEADERS) {
		*errstr_r = "sigv4: too many headers";
		goto fail;
	}
	/* The scope's region, service and key id are '/'-separated fields. */
	if (strchr(r->region, '/') != NULL || strchr(r->service, '/') != NULL ||
	    strchr(r->access_key, '/') != NULL) {
		*errstr_r = "sigv4: region, service and access key must not contain '/'";
		goto fail;
	}
	if (gmtime_r(&r->when, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 1000) {
		*errstr_r = "sigv4: time out of range";
		goto fail;
	}
	if (strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
		*errstr_r = "sigv4: time out of range";
		goto fail;
	}
	memcpy(date, out->amz_date, 8);
	date[8] = '\0';
	out->content_sha256 = xstrdup(r->payload_sha256);

	/* headers: the caller's plus the three we always sign */
	h[nh].name = xstrdup("host");
	h[nh].value = trimall(r->host);
	nh++;
	h[nh].name = xstrdup("x-amz-content-sha256");
	h[nh].value = xstrdup(r->payload_sha256);
	nh++;
	h[nh].name = xstrdup("x-amz-date");
	h[nh].value = xstrdup(out->amz_date);
	nh++;
	if (h[0].value == NULL) {
		*errstr_r = "sigv4: control character in host";
		goto fail;
	}
	for (size_t i = 0; i < r->nheaders; i++) {
		const struct sigv4_pair *p = &r->headers[i];
		char *name, *value;

		if (!name_ok(p->name)) {
			*errstr_r = "sigv4: invalid header name";
			goto fail;
		}
		value = trimall(p->value != NULL ? p->value : "");
		if (value == NULL) {
			*errstr_r = "sigv4: control character in a header value";
			goto fail;
		}
		name = xstrdup(p->name);
		for (char *c = name; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		h[nh].name = name;
		h[nh].value = value;
		nh++;
		for (size_t j = 0; j + 1 < nh; j++)
			if (strcmp(h[j].name, name) == 0) {
				*errstr_r = "sigv4: duplicate header (or one of host, x-amz-date, "
				            "x-amz-content-sha256, which are added here)";
				goto fail;
			}
	}
	qsort(h, nh, sizeof(h[0]), hdr_cmp);

	/* path: S3 encodes it once, '/' kept */
	buf_encode(&b, r->path, true);
	out->encoded_path = buf_take(&b);
	buf_reset(&b);

	/* query: encode names and values, sort, join */
	if (r->nquery > 0) {
		q = xcalloc(r->nquery, sizeof(*q));
		for (size_t i = 0; i < r->nquery; i++) {
			if (r->query[i].name == NULL) {
				*errstr_r = "sigv4: query parameter without a name";
				goto fail;
			}
			buf_encode(&b, r->query[i].name, false);
			q[i].name = buf_take(&b);
			buf_reset(&b);
			buf_encode(&b, r->query[i].value != NULL ? r->query[i].value : "", false);
			q[i].value = buf_take(&b);
			buf_reset(&b);
		}
		qsort(q, r->nquery, sizeof(q[0]), qpair_cmp);
		for (size_t i = 0; i < r->nquery; i++)
			buf_printf(&b, "%s%s=%s", i > 0 ? "&" : "", q[i].name, q[i].value);
	}
	out->encoded_query = buf_take(&b);
	buf_reset(&b);

	for (size_t i = 0; i < nh; i++)
		buf_printf(&signed_names, "%s%s", i > 0 ? ";" : "", h[i].name);
	buf_append(&signed_names, "", 1);

	/* CanonicalRequest */
	buf_printf(&b, "%s\n%s\n%s\n", r->method, out->encoded_path, out->encoded_query);
	for (size_t i = 0; i < nh; i++)
		buf_printf(&b, "%s:%s\n", h[i].name, h[i].value);
	buf_printf(&b, "\n%s\n%s", (const char *)buf_ptr(&signed_names), r->payload_sha256);
	out->canonical_request = buf_take(&b);
	buf_reset(&b);

	/* StringToSign */
	scope = xasprintf("%s/%s/%s/aws4_request", date, r->region, r->service);
	sigv4_sha256_hex(out->canonical_request, strlen(out->canonical_request), scope_hash);
	out->string_to_sign =
	        xasprintf(SIGV4_ALGO "\n%s\n%s\n%s", out->amz_date, scope, scope_hash);

	/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
	 */
	secret_key = xasprintf("AWS4%s", r->secret_key);
	hmac(secret_key, strlen(secret_key), date, k);
	hmac(k, sizeof(k), r->region, k);
	hmac(k, sizeof(k), r->service, k);
	hmac(k, sizeof(k), "aws4_request", k);
	hmac(k, sizeof(k), out->string_to_sign, sig);
	hex_encode(sig, sizeof(sig), sig_hex);

	out->authorization =
	        xasprintf(SIGV4_ALGO " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
	                  r->access_key, scope, (const char *)buf_ptr(&signed_names), sig_hex);
	rc = 0;
fail:
	if (rc < 0)
		sigv4_result_free(out);
	for (size_t i = 0; i < nh; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	if (q != NULL) {
		for (size_t i = 0; i < r->nquery; i++) {
			free(q[i].name);
			free(q[i].value);
		}
		free(q);
	}
	if (secret_key != NULL) {
		OPENSSL_cleanse(secret_key, strlen(secret_key));
		free(secret_key);
	}
	OPENSSL_cleanse(k, sizeof(k));
	free(scope);
	buf_free(&b);
	buf_free(&signed_names);
	return rc;
}
