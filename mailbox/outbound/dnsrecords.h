/*
 * mailbox/outbound/dnsrecords.h -- the DNS records a mail domain should
 * publish, computed from what we know (pure: no DNS lookups, no I/O).
 *
 * For domain D served by mail host H (both without the trailing dot):
 *
 *   D.                        MX    10 H.
 *   D.                        TXT   "v=spf1 mx [extra] ~all"        (RFC 7208)
 *   SEL._domainkey.D.         TXT   the key's value, per selector   (RFC 6376 3.6.2.1)
 *   _dmarc.D.                 TXT   "v=DMARC1; p=POLICY[; rua=mailto:R]" (RFC 7489 6.1)
 *   D._report._dmarc.RD.      TXT   "v=DMARC1"  when R's domain RD is another
 *                                   domain (RFC 7489 7.1; published in RD)
 *   _mta-sts.D.               TXT   "v=STSv1; id=ID"                (RFC 8461 3.1)
 *   mta-sts.D.                CNAME H.  (serves the policy over HTTPS, RFC 8461 3.3)
 *   _smtp._tls.D.             TXT   "v=TLSRPTv1; rua=mailto:R"      (RFC 8460 3)
 *   _submission._tcp.D.       SRV   0 1 587 H.                      (RFC 6186)
 *   _submissions._tcp.D.      SRV   0 1 465 H.                      (RFC 8314)
 *   _imap._tcp.D.             SRV   0 1 143 H.                      (RFC 6186)
 *   _imaps._tcp.D.            SRV   0 1 993 H.
 *   _pop3._tcp.D., _pop3s._tcp.D.  SRV 0 0 0 .  (not offered, RFC 2782)
 *   autoconfig.D.             CNAME H.   (Thunderbird autoconfiguration)
 *   autodiscover.D.           CNAME H.   (Outlook autodiscover)
 *   _autodiscover._tcp.D.     SRV   0 0 443 H.
 *   _25._tcp.H.               TLSA  3 1 1 SHA-256(SPKI)             (RFC 7672, RFC 6698)
 *
 * MTA-STS records appear only with a policy id, TLS-RPT only with a report
 * address, TLSA only with a certificate.  DANE-EE(3) SPKI(1) SHA-256(1)
 * pins the key, not the certificate, so routine renewals that keep the
 * key need no DNS change.  SPF ends in "~all" (soft fail) unless strict:
 * mail relayed through a smarthost leaves from the smarthost's addresses,
 * which must then be listed in spf_extra, and a hard fail for a forgotten
 * entry would lose mail.  DMARC defaults to p=quarantine: everything we
 * send is DKIM-signed, aligned with D.
 *
 * The result prints as a zone-file snippet (TXT strings cut into 255-byte
 * pieces, RFC 1035 3.3.14) or as JSON (jansson), each record with its
 * purpose; the MTA-STS policy file text comes with it.
 */
#ifndef MAILBOX_OUTBOUND_DNSRECORDS_H
#define MAILBOX_OUTBOUND_DNSRECORDS_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSRECORDS_TTL_DEFAULT     3600
#define DNSRECORDS_STS_AGE_DEFAULT 604800   /* one week */
#define DNSRECORDS_STS_AGE_MAX     31557600 /* RFC 8461 3.2: about one year */

struct dnsrecords_dkim {
	const char *selector;
	const char *txt; /* "v=DKIM1; k=...; p=..." (mailbox/dkim/key.h) */
};

struct dnsrecords_input {
	const char *domain;    /* required */
	const char *mail_host; /* required: MX target and service host */
	const struct dnsrecords_dkim *dkim;
	size_t ndkim;
	const char *cert_pem;     /* the mail host's certificate (the first in a chain
	                             is used), or NULL: no TLSA */
	const char *mta_sts_id;   /* 1-32 letters/digits, or NULL: no MTA-STS */
	const char *mta_sts_mode; /* "enforce" (NULL), "testing" or "none" */
	uint32_t mta_sts_max_age; /* seconds; 0: DNSRECORDS_STS_AGE_DEFAULT */
	const char *report_addr;  /* DMARC and TLS-RPT reports, or NULL */
	const char *dmarc_policy; /* "quarantine" (NULL), "reject" or "none" */
	const char *spf_extra;    /* mechanisms before the "all", e.g.
	                             "include:_spf.relay.example ip4:192.0.2.1", or NULL */
	bool spf_strict;          /* "-all" instead of "~all" */
	uint32_t ttl;             /* 0: DNSRECORDS_TTL_DEFAULT */
};

struct dnsrecords_record {
	char *name;       /* absolute, with the trailing dot */
	const char *type; /* "MX", "TXT", "SRV", "CNAME", "TLSA" */
	uint32_t ttl;
	char *value;   /* the record data; for TXT the text itself, unquoted */
	char *purpose; /* a short explanation */
};

struct dnsrecords {
	char *domain;
	struct dnsrecords_record *recs;
	size_t n;
	char *mta_sts_url;    /* https://mta-sts.D/.well-known/mta-sts.txt, or NULL */
	char *mta_sts_policy; /* that file's text (CRLF lines), or NULL */
};

/*
 * Compute the records.  Names are checked (LDH labels, RFC 1123 2.1; a
 * DKIM selector may also hold '_'), the report address must be local@domain
 * without white space, ';', ',', '!' or quotes (which would break the
 * DMARC URI list), the TXT values of the keys must start with "v=DKIM1"
 * and hold no '"' or control bytes, the certificate must parse.  Returns
 * a result for dnsrecords_free(), or NULL with *errstr_r.
 */
struct dnsrecords *dnsrecords_build(const struct dnsrecords_input *in, const char **errstr_r);
void dnsrecords_free(struct dnsrecords **rp);

/* Append the zone-file snippet ("; purpose" comment line, then the record). */
void dnsrecords_zone(const struct dnsrecords *r, struct buf *out);

/*
 * The JSON form, a string the caller frees:
 *   {"domain": D, "records": [{"name", "type", "ttl", "value", "zone",
 *    "purpose"}...], "mta_sts": {"url", "policy"} | null}
 * "value" is as in struct dnsrecords_record, "zone" the zone-file rdata.
 */
char *dnsrecords_json(const struct dnsrecords *r);

/*
 * The TLSA 3 1 1 association data: lower-case hex SHA-256 of the DER
 * SubjectPublicKeyInfo of the first certificate in pem.  0 or -1.
 */
int dnsrecords_tlsa_311(const char *pem, char hex[65], const char **errstr_r);

#endif
