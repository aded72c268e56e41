/*
 * mailbox/outbound/dnsrecords_admin.h -- the DNS records of one of our
 * domains, from what the database and the configuration know: feeds
 * mailbox/outbound/dnsrecords.h with the domain, the mail host name (the
 * config's hostname), every DKIM key of the domain (active or not: a key
 * being retired must stay published until the mail it signed is read),
 * the TLSA pin of the configured certificate, and the operator's choices
 * for reports, MTA-STS, DMARC and SPF.  Blocking: for `tailpost-mailbox
 * dns records` and the admin API's worker thread.
 */
#ifndef MAILBOX_OUTBOUND_DNSRECORDS_ADMIN_H
#define MAILBOX_OUTBOUND_DNSRECORDS_ADMIN_H

#include "mailbox/config.h"
#include "mailbox/outbound/dnsrecords.h"

#include <postgresql/libpq-fe.h>

struct dnsrecords_admin_opts {
	const char *domain;       /* required: one of our domains */
	const char *mail_host;    /* required: the config's hostname */
	const char *cert_file;    /* PEM for TLSA, or NULL (dnsrecords_admin_cert) */
	const char *report_addr;  /* DMARC/TLS-RPT reports; NULL: postmaster@DOMAIN;
	                             "none": no reports */
	const char *mta_sts_mode; /* NULL: no MTA-STS records; "enforce", "testing", "none" */
	const char *mta_sts_id;   /* NULL: derived from the policy (changes with it) */
	const char *dmarc_policy; /* NULL: quarantine */
	const char *spf_extra;    /* NULL: none */
};

/*
 * The certificate to pin in TLSA: the first mx listener's with TLS, else
 * the first listener's with TLS, else NULL.  Borrowed from cfg.
 */
const char *dnsrecords_admin_cert(const struct mailbox_config *cfg);

/*
 * Build the records.  *r_out for dnsrecords_free().  *note_r (may be NULL)
 * gets a malloc'd remark for the operator or NULL (a certificate that
 * cannot be read leaves out TLSA rather than failing).  0, or -1 with err
 * ("domain 'x' does not exist", "invalid report address").
 */
int dnsrecords_admin_build(PGconn *c, const struct dnsrecords_admin_opts *o,
                           struct dnsrecords **r_out, char **note_r, char *err, size_t errsz);

#endif
