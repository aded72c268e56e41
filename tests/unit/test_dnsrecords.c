/*
 * tests/unit/test_dnsrecords.c -- mailbox/outbound/dnsrecords: the record
 * set, input validation, the zone snippet, the JSON, TLSA 3 1 1.
 *
 * The TLSA digest of the certificate below was computed with the openssl
 * command line (x509 -pubkey | pkey -pubin -outform DER | sha256sum).
 */
#include "mailbox/outbound/dnsrecords.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"
#include "tests/unit/unit.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>

static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBjDCCATGgAwIBAgIUGy0C72n8cx9ujxBzWVRRfy8NANowCgYIKoZIzj0EAwIw\n"
                               "GzEZMBcGA1UEAwwQbWFpbC5leGFtcGxlLmNvbTAeFw0yNjExMjcwNDI5NTFaFw0z\n"
                               "NjExMjQwNDI5NTFaMBsxGTAXBgNVBAMMEG1haWwuZXhhbXBsZS5jb20wWTATBgcq\n"
                               "hkjOPQIBBggqhkjOPQMBBwNCAASbU9lcKS468o1i0zC2+0F08JP+vd7Tb94FWopa\n"
                               "ns7HV+7CUYrt1471tlgeQxI0+4m4UYoRfcLmEsfRv5o+0Qwvo1MwUTAdBgNVHQ4E\n"
                               "FgQULoJYz58tmdaCxjb3+jCckpTIClkwHwYDVR0jBBgwFoAULoJYz58tmdaCxjb3\n"
                               "+jCckpTIClkwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAmF3e\n"
                               "S+gVAKOGNB2eXHi8JGoykvNG+9oYESw2Ekp1RjsCIQDGpyIUgL+Ly5ItdusTH5A2\n"
                               "j9snfZ0rUCyvlSz4hFS5Jg==\n"
                               "-----END CERTIFICATE-----\n";
static const char cert_tlsa[] = "1fffd6252e606d033ad824216daad2a82dbb2172c079a237f385caa09da5286b";

/* an RSA-2048 DKIM value is longer than one 255-byte TXT string */
static const char rsa_txt[] =
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4hUZdrOjXjFV4K3Y0z"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
        "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
        "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDIDAQAB";

static const struct dnsrecords_record *find(const struct dnsrecords *r, const char *name,
                                            const char *type)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->recs[i].name, name) == 0 && strcmp(r->recs[i].type, type) == 0)
			return &r->recs[i];
	return NULL;
}

#define CHECK_REC(r, name, type, want_)                                                            \
	do {                                                                                       \
		const struct dnsrecords_record *rec_ = find((r), (name), (type));                  \
		CHECK_MSG(rec_ != NULL, "no %s %s", (name), (type));                               \
		CHECK_STR(rec_->value, (want_));                                                   \
	} while (0)

UNIT_TEST(dnsrecords_full_set)
{
	const struct dnsrecords_dkim dkim[] = {
	        {"ed2025", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
	        {"rsa2025", rsa_txt},
	};
	struct dnsrecords_input in = {
	        .domain = "Example.COM.",
	        .mail_host = "mail.example.com",
	        .dkim = dkim,
	        .ndkim = 2,
	        .cert_pem = cert_pem,
	        .mta_sts_id = "20261127T0000",
	        .report_addr = "postmaster@example.com",
	};
	const char *err = NULL;
	struct dnsrecords *r = dnsrecords_build(&in, &err);

	CHECK_MSG(r != NULL, "%s", err);
	CHECK_STR(r->domain, "example.com");
	CHECK_REC(r, "example.com.", "MX", "10 mail.example.com.");
	CHECK_REC(r, "example.com.", "TXT", "v=spf1 mx ~all");
	CHECK_REC(r, "ed2025._domainkey.example.com.", "TXT", dkim[0].txt);
	CHECK_REC(r, "rsa2025._domainkey.example.com.", "TXT", rsa_txt);
	CHECK_REC(r, "_dmarc.example.com.", "TXT",
	          "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com");
	CHECK_REC(r, "_mta-sts.example.com.", "TXT", "v=STSv1; id=20261127T0000");
	CHECK_REC(r, "mta-sts.example.com.", "CNAME", "mail.example.com.");
	CHECK_REC(r, "_smtp._tls.example.com.", "TXT",
	          "v=TLSRPTv1; rua=mailto:postmaster@example.com");
	CHECK_REC(r, "_submission._tcp.example.com.", "SRV", "0 1 587 mail.example.com.");
	CHECK_REC(r, "_submissions._tcp.example.com.", "SRV", "0 1 465 mail.example.com.");
	CHECK_REC(r, "_imap._tcp.example.com.", "SRV", "0 1 143 mail.example.com.");
	CHECK_REC(r, "_imaps._tcp.example.com.", "SRV", "0 1 993 mail.example.com.");
	CHECK_REC(r, "_pop3._tcp.example.com.", "SRV", "0 0 0 .");
	CHECK_REC(r, "_pop3s._tcp.example.com.", "SRV", "0 0 0 .");
	CHECK_REC(r, "autoconfig.example.com.", "CNAME", "mail.example.com.");
	CHECK_REC(r, "autodiscover.example.com.", "CNAME", "mail.example.com.");
	CHECK_REC(r, "_autodiscover._tcp.example.com.", "SRV", "0 0 443 mail.example.com.");
	{
		char want[128];
		snprintf(want, sizeof(want), "3 1 1 %s", cert_tlsa);
		CHECK_REC(r, "_25._tcp.mail.example.com.", "TLSA", want);
	}
	CHECK_INT(r->n, 18); /* nothing else: no external report authorization */
	for (size_t i = 0; i < r->n; i++) {
		CHECK_INT(r->recs[i].ttl, DNSRECORDS_TTL_DEFAULT);
		CHECK(r->recs[i].purpose[0] != '\0');
	}
	CHECK_STR(r->mta_sts_url, "https://mta-sts.example.com/.well-known/mta-sts.txt");
	CHECK_STR(r->mta_sts_policy,
	          "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n");
	dnsrecords_free(&r);
	CHECK(r == NULL);
	dnsrecords_free(&r);
}

UNIT_TEST(dnsrecords_minimal_and_options)
{
	struct dnsrecords_input in = {
	        .domain = "example.org",
	        .mail_host = "mx1.example.net",
	        .dmarc_policy = "reject",
	        .spf_extra = "include:_spf.relay.example ip4:192.0.2.1",
	        .spf_strict = true,
	        .ttl = 300,
	        .report_addr = "dmarc@reports.example.net",
	        .mta_sts_id = "abc",
	        .mta_sts_mode = "testing",
	        .mta_sts_max_age = 86400,
	};
	const char *err = NULL;
	struct dnsrecords *r = dnsrecords_build(&in, &err);

	CHECK_MSG(r != NULL, "%s", err);
	CHECK_REC(r, "example.org.", "TXT",
	          "v=spf1 mx include:_spf.relay.example ip4:192.0.2.1 -all");
	CHECK_REC(r, "_dmarc.example.org.", "TXT",
	          "v=DMARC1; p=reject; rua=mailto:dmarc@reports.example.net");
	/* reports go to another domain, which must authorize them */
	CHECK_REC(r, "example.org._report._dmarc.reports.example.net.", "TXT", "v=DMARC1");
	CHECK(find(r, "_25._tcp.mx1.example.net.", "TLSA") == NULL);
	CHECK_STR(r->mta_sts_policy,
	          "version: STSv1\r\nmode: testing\r\nmx: mx1.example.net\r\nmax_age: 86400\r\n");
	CHECK_INT(r->recs[0].ttl, 300);
	dnsrecords_free(&r);

	/* nothing optional: no MTA-STS, TLS-RPT, TLSA, DKIM; DMARC without rua */
	struct dnsrecords_input min = {.domain = "example.org", .mail_host = "example.org"};
	r = dnsrecords_build(&min, &err);
	CHECK(r != NULL);
	CHECK_REC(r, "_dmarc.example.org.", "TXT", "v=DMARC1; p=quarantine");
	CHECK_REC(r, "autoconfig.example.org.", "CNAME", "example.org.");
	CHECK(find(r, "_mta-sts.example.org.", "TXT") == NULL);
	CHECK(find(r, "_smtp._tls.example.org.", "TXT") == NULL);
	CHECK(r->mta_sts_policy == NULL && r->mta_sts_url == NULL);
	CHECK_INT(r->n, 12);
	dnsrecords_free(&r);

	/* a report address in a subdomain needs no authorization record */
	min.report_addr = "rua@reports.example.org";
	r = dnsrecords_build(&min, &err);
	CHECK(r != NULL);
	for (size_t i = 0; i < r->n; i++)
		CHECK(strstr(r->recs[i].name, "_report._dmarc") == NULL);
	dnsrecords_free(&r);
}

UNIT_TEST(dnsrecords_refuses)
{
	static const struct dnsrecords_dkim bad_sel[] = {{"bad selector", "v=DKIM1; k=rsa; p=x"}};
	static const struct dnsrecords_dkim bad_txt[] = {{"s", "k=rsa; p=x"}};
	static const struct dnsrecords_dkim quote_txt[] = {{"s", "v=DKIM1; p=\"x"}};
	static const struct {
		struct dnsrecords_input in;
	} t[] = {
	        {{.domain = NULL, .mail_host = "mail.example.com"}},
	        {{.domain = "example.com", .mail_host = NULL}},
	        {{.domain = "exa mple.com", .mail_host = "mail.example.com"}},
	        {{.domain = "-example.com", .mail_host = "mail.example.com"}},
	        {{.domain = "example-.com", .mail_host = "mail.example.com"}},
	        {{.domain = "example..com", .mail_host = "mail.example.com"}},
	        {{.domain = "_dmarc.example.com", .mail_host = "mail.example.com"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .dkim = bad_sel,
	          .ndkim = 1}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .dkim = bad_txt,
	          .ndkim = 1}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .dkim = quote_txt,
	          .ndkim = 1}},
	        {{.domain = "example.com", .mail_host = "mail.example.com", .cert_pem = "junk"}},
	        {{.domain = "example.com", .mail_host = "mail.example.com", .mta_sts_id = ""}},
	        {{.domain = "example.com", .mail_host = "mail.example.com", .mta_sts_id = "a-b"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .mta_sts_id = "012345678901234567890123456789012"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .mta_sts_mode = "strict"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .mta_sts_max_age = DNSRECORDS_STS_AGE_MAX + 1}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .dmarc_policy = "drop"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .report_addr = "nobody"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .report_addr = "a,b@x.com"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .report_addr = "a b@x.com"}},
	        {{.domain = "example.com",
	          .mail_host = "mail.example.com",
	          .report_addr = "@x.com"}},
	        {{.domain = "example.com", .mail_host = "mail.example.com", .spf_extra = "a; b"}},
	        {{.domain = "example.com", .mail_host = "mail.example.com", .spf_extra = "a\"b"}},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		const char *err = NULL;
		struct dnsrecords *r = dnsrecords_build(&t[i].in, &err);
		CHECK_MSG(r == NULL && err != NULL, "case %zu accepted", i);
	}
	/* the limits themselves are fine */
	struct dnsrecords_input ok = {.domain = "example.com",
	                              .mail_host = "mail.example.com",
	                              .mta_sts_id = "01234567890123456789012345678901",
	                              .mta_sts_max_age = DNSRECORDS_STS_AGE_MAX};
	const char *err = NULL;
	struct dnsrecords *r = dnsrecords_build(&ok, &err);
	CHECK(r != NULL);
	dnsrecords_free(&r);
}

UNIT_TEST(dnsrecords_zone_snippet)
{
	const struct dnsrecords_dkim dkim[] = {{"rsa", rsa_txt}};
	struct dnsrecords_input in = {.domain = "example.com",
	                              .mail_host = "mail.example.com",
	                              .dkim = dkim,
	                              .ndkim = 1,
	                              .mta_sts_id = "1"};
	const char *err = NULL;
	struct dnsrecords *r = dnsrecords_build(&in, &err);
	struct buf z;
	char *s, *line, *want;
	size_t lines = 0;

	CHECK(r != NULL);
	buf_init(&z, 0);
	dnsrecords_zone(r, &z);
	buf_append(&z, "", 1);
	s = (char *)buf_ptr(&z);
	CHECK(strncmp(s, "; DNS records for example.com\n", 30) == 0);
	CHECK(strstr(s, "example.com.\t3600\tIN\tMX\t10 mail.example.com.\n") != NULL);
	CHECK(strstr(s, "example.com.\t3600\tIN\tTXT\t\"v=spf1 mx ~all\"\n") != NULL);
	/* the DKIM value is cut at 255 bytes into two strings */
	want = xasprintf("rsa._domainkey.example.com.\t3600\tIN\tTXT\t\"%.255s\" \"%s\"\n", rsa_txt,
	                 rsa_txt + 255);
	CHECK(strlen(rsa_txt) > 255 && strlen(rsa_txt) < 510);
	CHECK_MSG(strstr(s, want) != NULL, "no split DKIM record in\n%s", s);
	free(want);
	CHECK(strstr(s, ";   mode: enforce\n") != NULL);
	CHECK(strstr(s, "; MTA-STS policy, to serve at "
	                "https://mta-sts.example.com/.well-known/mta-sts.txt:\n") != NULL);
	/* every line is a comment or a record of five tab-separated fields */
	for (line = strtok(s, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (line[0] == ';')
			continue;
		int tabs = 0;
		for (char *p = line; *p; p++)
			tabs += *p == '\t';
		CHECK_MSG(tabs == 4, "bad line: %s", line);
		lines++;
	}
	CHECK_INT(lines, r->n);
	buf_free(&z);
	dnsrecords_free(&r);
}

UNIT_TEST(dnsrecords_json_form)
{
	const struct dnsrecords_dkim dkim[] = {{"rsa", rsa_txt}};
	struct dnsrecords_input in = {.domain = "example.com",
	                              .mail_host = "mail.example.com",
	                              .dkim = dkim,
	                              .ndkim = 1,
	                              .cert_pem = cert_pem,
	                              .mta_sts_id = "1"};
	const char *err = NULL;
	struct dnsrecords *r = dnsrecords_build(&in, &err);
	char *s = r ? dnsrecords_json(r) : NULL;
	json_error_t jerr;
	json_t *root, *recs;
	size_t i;
	bool saw_dkim = false, saw_tlsa = false;

	CHECK(s != NULL);
	root = json_loads(s, 0, &jerr);
	CHECK(root != NULL);
	CHECK_STR(json_string_value(json_object_get(root, "domain")), "example.com");
	recs = json_object_get(root, "records");
	CHECK(json_is_array(recs));
	CHECK_INT(json_array_size(recs), r->n);
	for (i = 0; i < json_array_size(recs); i++) {
		json_t *o = json_array_get(recs, i);
		CHECK_STR(json_string_value(json_object_get(o, "name")), r->recs[i].name);
		CHECK_STR(json_string_value(json_object_get(o, "type")), r->recs[i].type);
		CHECK_STR(json_string_value(json_object_get(o, "value")), r->recs[i].value);
		CHECK_INT(json_integer_value(json_object_get(o, "ttl")), 3600);
		CHECK(json_string_value(json_object_get(o, "purpose")) != NULL);
		const char *zone = json_string_value(json_object_get(o, "zone"));
		CHECK(zone != NULL);
		if (strcmp(r->recs[i].name, "rsa._domainkey.example.com.") == 0) {
			CHECK_STR(json_string_value(json_object_get(o, "value")), rsa_txt);
			CHECK(zone[0] == '"' && strstr(zone, "\" \"") != NULL);
			saw_dkim = true;
		}
		if (strcmp(r->recs[i].type, "TLSA") == 0) {
			CHECK(strstr(zone, cert_tlsa) != NULL);
			saw_tlsa = true;
		}
	}
	CHECK(saw_dkim && saw_tlsa);
	CHECK_STR(json_string_value(json_object_get(json_object_get(root, "mta_sts"), "policy")),
	          r->mta_sts_policy);
	json_decref(root);
	free(s);
	dnsrecords_free(&r);
	/* without MTA-STS the key is null */
	in.mta_sts_id = NULL;
	r = dnsrecords_build(&in, &err);
	s = dnsrecords_json(r);
	root = json_loads(s, 0, &jerr);
	CHECK(root != NULL && json_is_null(json_object_get(root, "mta_sts")));
	json_decref(root);
	free(s);
	dnsrecords_free(&r);
}

UNIT_TEST(dnsrecords_tlsa)
{
	char hex[65];
	const char *err = NULL;
	char *chain = xasprintf("%s%s", cert_pem, cert_pem);

	CHECK(dnsrecords_tlsa_311(cert_pem, hex, &err) == 0);
	CHECK_STR(hex, cert_tlsa);
	CHECK(dnsrecords_tlsa_311(chain, hex, &err) == 0); /* the first of a chain */
	CHECK_STR(hex, cert_tlsa);
	CHECK(dnsrecords_tlsa_311("", hex, &err) < 0 && err != NULL);
	free(chain);
}
