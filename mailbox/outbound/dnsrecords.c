/*
 * mailbox/outbound/dnsrecords.c -- compute, print and serialize the DNS
 * records of a mail domain.
 *
 * dnsrecords_build() validates the inputs and fills a flat list of records
 * in a fixed order (mail routing, sender authentication, transport
 * security, client configuration); the two printers only format that
 * list, so the zone snippet and the JSON always agree.
 */
#include "mailbox/outbound/dnsrecords.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- validation ------------------------------------------------------------------ */

/* RFC 1123 2.1 host names: labels of letters, digits and '-', not starting or
 * ending with '-', 1-63 octets, 253 in all; underscore only where allowed. */
static bool valid_name(const char *s, bool underscore)
{
	size_t label = 0, total = strlen(s);
	char prev = '.';

	if (total == 0 || total > 253)
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (c == '.') {
			if (label == 0 || prev == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)c) || (underscore && c == '_')) {
			label++;
		} else if (c == '-' && label > 0) {
			label++;
		} else {
			return false;
		}
		if (label > 63)
			return false;
		prev = c;
	}
	return label > 0 && prev != '-';
}

static char *lower_nodot(const char *s)
{
	char *d = xstrdup(s);
	size_t n = strlen(d), i;

	if (n > 1 && d[n - 1] == '.')
		d[n - 1] = '\0';
	for (i = 0; d[i] != '\0'; i++)
		d[i] = (char)tolower((unsigned char)d[i]);
	return d;
}

/* local@domain, printable ASCII, none of the characters that would break a
 * DMARC or TLS-RPT URI list (RFC 7489 6.4: ',' and '!' are separators). */
static bool valid_report_addr(const char *a, const char **domain_r)
{
	const char *at = strrchr(a, '@'), *p;

	if (at == NULL || at == a || !valid_name(at + 1, false))
		return false;
	for (p = a; p < at; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
		    strchr(";,!\"\\<>()", *p) != NULL)
			return false;
	*domain_r = at + 1;
	return true;
}

static bool valid_txt(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < ' ' || (unsigned char)*s >= 0x7f || *s == '"' || *s == '\\')
			return false;
	return true;
}

/* --- TLSA -------------------------------------------------------------------------- */

int dnsrecords_tlsa_311(const char *pem, char hex[65], const char **errstr_r)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	unsigned char *der = NULL, md[SHA256_DIGEST_LENGTH];
	int n, i, rc = -1;

	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL) {
		*errstr_r = "out of memory";
		goto fail;
	}
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (x == NULL) {
		*errstr_r = "certificate: not a PEM X.509 certificate";
		goto fail;
	}
	/* RFC 6698 2.1.2 selector 1: the DER SubjectPublicKeyInfo */
	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
	if (n <= 0) {
		*errstr_r = "certificate: cannot encode its public key";
		goto fail;
	}
	SHA256(der, (size_t)n, md);
	for (i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
fail:
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
	return rc;
}

/* --- building ---------------------------------------------------------------------- */

struct builder {
	struct dnsrecords *r;
	size_t cap;
	uint32_t ttl;
};

static void add(struct builder *b, const char *type, const char *purpose, const char *name,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct builder *b, const char *type, const char *purpose, const char *name,
                const char *fmt, ...)
{
	struct dnsrecords_record *rec;
	va_list ap;

	if (b->r->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 24;
		b->r->recs = xreallocarray(b->r->recs, b->cap, sizeof(*b->r->recs));
	}
	rec = &b->r->recs[b->r->n++];
	rec->name = xasprintf("%s.", name);
	rec->type = type;
	rec->ttl = b->ttl;
	rec->purpose = xstrdup(purpose);
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	ASSERT(n >= 0);
	rec->value = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(rec->value, (size_t)n + 1, fmt, ap);
	va_end(ap);
}

struct dnsrecords *dnsrecords_build(const struct dnsrecords_input *in, const char **errstr_r)
{
	struct builder b = {.r = xcalloc(1, sizeof(*b.r))};
	char *dom = NULL, *host = NULL, *rdom = NULL, *tmp = NULL;
	const char *mode, *policy, *rdomain = NULL;
	uint32_t age;
	char hex[65];
	size_t i;

	b.ttl = in->ttl ? in->ttl : DNSRECORDS_TTL_DEFAULT;
	if (in->domain == NULL || in->mail_host == NULL) {
		*errstr_r = "a domain and a mail host are required";
		goto fail;
	}
	dom = lower_nodot(in->domain);
	host = lower_nodot(in->mail_host);
	if (!valid_name(dom, false)) {
		*errstr_r = "invalid domain name";
		goto fail;
	}
	if (!valid_name(host, false)) {
		*errstr_r = "invalid mail host name";
		goto fail;
	}
	mode = in->mta_sts_mode ? in->mta_sts_mode : "enforce";
	if (strcmp(mode, "enforce") != 0 && strcmp(mode, "testing") != 0 &&
	    strcmp(mode, "none") != 0) {
		*errstr_r = "MTA-STS mode must be enforce, testing or none";
		goto fail;
	}
	age = in->mta_sts_max_age ? in->mta_sts_max_age : DNSRECORDS_STS_AGE_DEFAULT;
	if (age > DNSRECORDS_STS_AGE_MAX) {
		*errstr_r = "MTA-STS max_age exceeds 31557600 (RFC 8461 3.2)";
		goto fail;
	}
	if (in->mta_sts_id != NULL) {
		size_t n = strlen(in->mta_sts_id);
		/* RFC 8461 3.1: sts-id = 1*32(ALPHA / DIGIT) */
		bool ok = n >= 1 && n <= 32;
		for (i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)in->mta_sts_id[i]) != 0;
		if (!ok) {
			*errstr_r = "MTA-STS id must be 1-32 letters and digits";
			goto fail;
		}
	}
	policy = in->dmarc_policy ? in->dmarc_policy : "quarantine";
	if (strcmp(policy, "none") != 0 && strcmp(policy, "quarantine") != 0 &&
	    strcmp(policy, "reject") != 0) {
		*errstr_r = "DMARC policy must be none, quarantine or reject";
		goto fail;
	}
	if (in->report_addr != NULL && !valid_report_addr(in->report_addr, &rdomain)) {
		*errstr_r = "invalid report address";
		goto fail;
	}
	if (in->spf_extra != NULL && (!valid_txt(in->spf_extra) || strchr(in->spf_extra, ';'))) {
		*errstr_r = "invalid SPF mechanisms";
		goto fail;
	}
	b.r->domain = xstrdup(dom);

	/* mail routing */
	add(&b, "MX", "mail exchanger", dom, "10 %s.", host);

	/* sender authentication */
	add(&b, "TXT", "SPF: the MX hosts send mail for the domain", dom, "v=spf1 mx%s%s %s",
	    in->spf_extra ? " " : "", in->spf_extra ? in->spf_extra : "",
	    in->spf_strict ? "-all" : "~all");
	for (i = 0; i < in->ndkim; i++) {
		const struct dnsrecords_dkim *k = &in->dkim[i];
		if (k->selector == NULL || !valid_name(k->selector, true)) {
			*errstr_r = "invalid DKIM selector";
			goto fail;
		}
		if (k->txt == NULL || strncmp(k->txt, "v=DKIM1", 7) != 0 || !valid_txt(k->txt)) {
			*errstr_r = "invalid DKIM TXT value";
			goto fail;
		}
		free(tmp);
		tmp = xasprintf("%s._domainkey.%s", k->selector, dom);
		if (strlen(tmp) > 253) {
			*errstr_r = "DKIM record name too long";
			goto fail;
		}
		char *purpose = xasprintf("DKIM public key, selector %s", k->selector);
		add(&b, "TXT", purpose, tmp, "%s", k->txt);
		free(purpose);
	}
	free(tmp);
	tmp = xasprintf("_dmarc.%s", dom);
	if (in->report_addr != NULL)
		add(&b, "TXT", "DMARC policy and aggregate reports", tmp,
		    "v=DMARC1; p=%s; rua=mailto:%s", policy, in->report_addr);
	else
		add(&b, "TXT", "DMARC policy", tmp, "v=DMARC1; p=%s", policy);
	if (rdomain != NULL) {
		rdom = lower_nodot(rdomain);
		size_t rl = strlen(rdom), dl = strlen(dom);
		/* one inside the other: the same organizational domain, short of
		 * a public suffix list (RFC 7489 3.2), so no authorization needed */
		bool same =
		        strcmp(rdom, dom) == 0 ||
		        (rl > dl && rdom[rl - dl - 1] == '.' && strcmp(rdom + rl - dl, dom) == 0) ||
		        (dl > rl && dom[dl - rl - 1] == '.' && strcmp(dom + dl - rl, rdom) == 0);
		if (!same) {
			/* RFC 7489 7.1: the report domain authorizes reports for dom */
			free(tmp);
			tmp = xasprintf("%s._report._dmarc.%s", dom, rdom);
			if (strlen(tmp) <= 253) {
				char *purpose = xasprintf("DMARC: lets %s receive reports for %s "
				                          "(publish in %s's zone)",
				                          rdom, dom, rdom);
				add(&b, "TXT", purpose, tmp, "v=DMARC1");
				free(purpose);
			}
		}
	}

	/* transport security */
	if (in->mta_sts_id != NULL) {
		free(tmp);
		tmp = xasprintf("_mta-sts.%s", dom);
		add(&b, "TXT", "MTA-STS policy version", tmp, "v=STSv1; id=%s", in->mta_sts_id);
		free(tmp);
		tmp = xasprintf("mta-sts.%s", dom);
		add(&b, "CNAME",
		    "MTA-STS policy host: serves the policy over HTTPS with a certificate for this "
		    "name",
		    tmp, "%s.", host);
		b.r->mta_sts_url = xasprintf("https://mta-sts.%s/.well-known/mta-sts.txt", dom);
		/* RFC 8461 3.2: key/value lines; one mx line per MX host */
		b.r->mta_sts_policy = xasprintf("version: STSv1\r\nmode: %s\r\nmx: %s\r\n"
		                                "max_age: %" PRIu32 "\r\n",
		                                mode, host, age);
	}
	if (in->report_addr != NULL) {
		free(tmp);
		tmp = xasprintf("_smtp._tls.%s", dom);
		add(&b, "TXT", "SMTP TLS reporting (TLS-RPT)", tmp, "v=TLSRPTv1; rua=mailto:%s",
		    in->report_addr);
	}
	if (in->cert_pem != NULL) {
		if (dnsrecords_tlsa_311(in->cert_pem, hex, errstr_r) < 0)
			goto fail;
		free(tmp);
		tmp = xasprintf("_25._tcp.%s", host);
		add(&b, "TLSA", "DANE for inbound SMTP: pins the mail host's public key", tmp,
		    "3 1 1 %s", hex);
	}

	/* client configuration */
	static const struct {
		const char *svc, *purpose;
		int port;
	} srv[] = {
	        {"_submission._tcp", "mail submission with STARTTLS (RFC 6186)", 587},
	        {"_submissions._tcp", "mail submission over TLS (RFC 8314)", 465},
	        {"_imap._tcp", "IMAP with STARTTLS (RFC 6186)", 143},
	        {"_imaps._tcp", "IMAP over TLS (RFC 6186)", 993},
	};
	for (i = 0; i < sizeof(srv) / sizeof(srv[0]); i++) {
		free(tmp);
		tmp = xasprintf("%s.%s", srv[i].svc, dom);
		add(&b, "SRV", srv[i].purpose, tmp, "0 1 %d %s.", srv[i].port, host);
	}
	free(tmp);
	tmp = xasprintf("_pop3._tcp.%s", dom);
	add(&b, "SRV", "POP3 is not offered (RFC 2782: the target is the root)", tmp, "0 0 0 .");
	free(tmp);
	tmp = xasprintf("_pop3s._tcp.%s", dom);
	add(&b, "SRV", "POP3 over TLS is not offered (RFC 2782: the target is the root)", tmp,
	    "0 0 0 .");
	free(tmp);
	tmp = xasprintf("autoconfig.%s", dom);
	add(&b, "CNAME", "mail client autoconfiguration (Thunderbird)", tmp, "%s.", host);
	free(tmp);
	tmp = xasprintf("autodiscover.%s", dom);
	add(&b, "CNAME", "mail client autodiscover (Outlook)", tmp, "%s.", host);
	free(tmp);
	tmp = xasprintf("_autodiscover._tcp.%s", dom);
	add(&b, "SRV", "mail client autodiscover (Outlook)", tmp, "0 0 443 %s.", host);

	free(tmp);
	free(dom);
	free(host);
	free(rdom);
	return b.r;
fail:
	free(tmp);
	free(dom);
	free(host);
	free(rdom);
	dnsrecords_free(&b.r);
	return NULL;
}

void dnsrecords_free(struct dnsrecords **rp)
{
	struct dnsrecords *r = *rp;
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n; i++) {
		free(r->recs[i].name);
		free(r->recs[i].value);
		free(r->recs[i].purpose);
	}
	free(r->recs);
	free(r->domain);
	free(r->mta_sts_url);
	free(r->mta_sts_policy);
	free(r);
	*rp = NULL;
}

/* --- printing ------------------------------------------------------------------------ */

/* The zone-file rdata: TXT text as quoted strings of at most 255 bytes
 * (RFC 1035 3.3.14 character-strings), other types as they are. */
static void zone_rdata(const struct dnsrecords_record *rec, struct buf *out)
{
	const char *v = rec->value;
	size_t n, i;

	if (strcmp(rec->type, "TXT") != 0) {
		buf_puts(out, v);
		return;
	}
	n = strlen(v);
	if (n == 0) {
		buf_puts(out, "\"\"");
		return;
	}
	for (i = 0; i < n; i += 255) {
		size_t k = n - i < 255 ? n - i : 255;
		buf_printf(out, "%s\"%.*s\"", i ? " " : "", (int)k, v + i);
	}
}

void dnsrecords_zone(const struct dnsrecords *r, struct buf *out)
{
	size_t i;

	buf_printf(out, "; DNS records for %s\n", r->domain);
	for (i = 0; i < r->n; i++) {
		const struct dnsrecords_record *rec = &r->recs[i];
		buf_printf(out, "; %s\n%s\t%" PRIu32 "\tIN\t%s\t", rec->purpose, rec->name,
		           rec->ttl, rec->type);
		zone_rdata(rec, out);
		buf_puts(out, "\n");
	}
	if (r->mta_sts_policy != NULL) {
		const char *p = r->mta_sts_policy;
		buf_printf(out, "; MTA-STS policy, to serve at %s:\n", r->mta_sts_url);
		while (*p != '\0') {
			size_t k = strcspn(p, "\r\n");
			buf_printf(out, ";   %.*s\n", (int)k, p);
			p += k;
			while (*p == '\r' || *p == '\n')
				p++;
		}
	}
}

char *dnsrecords_json(const struct dnsrecords *r)
{
	json_t *root = json_object(), *recs = json_array();
	struct buf z;
	char *s;
	size_t i;

	buf_init(&z, 0);
	json_object_set_new(root, "domain", json_string(r->domain));
	for (i = 0; i < r->n; i++) {
		const struct dnsrecords_record *rec = &r->recs[i];
		json_t *o = json_object();
		buf_reset(&z);
		zone_rdata(rec, &z);
		json_object_set_new(o, "name", json_string(rec->name));
		json_object_set_new(o, "type", json_string(rec->type));
		json_object_set_new(o, "ttl", json_integer(rec->ttl));
		json_object_set_new(o, "value", json_string(rec->value));
		json_object_set_new(o, "zone",
		                    json_stringn((const char *)buf_ptr(&z), buf_len(&z)));
		json_object_set_new(o, "purpose", json_string(rec->purpose));
		json_array_append_new(recs, o);
	}
	json_object_set_new(root, "records", recs);
	if (r->mta_sts_policy != NULL) {
		json_t *m = json_object();
		json_object_set_new(m, "url", json_string(r->mta_sts_url));
		json_object_set_new(m, "policy", json_string(r->mta_sts_policy));
		json_object_set_new(root, "mta_sts", m);
	} else {
		json_object_set_new(root, "mta_sts", json_null());
	}
	s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	buf_free(&z);
	if (s == NULL)
		fatal("msg=\"out of memory\" where=dnsrecords_json");
	/* hand back memory the caller frees with free(), whatever allocator
	 * jansson was given */
	char *copy = xstrdup(s);
	json_malloc_t jm;
	json_free_t jf;
	json_get_alloc_funcs(&jm, &jf);
	jf(s);
	return copy;
}
