/*
 * mailbox/outbound/dnsrecords_admin.c -- the DNS records of one of our
 * domains from the database and the config (see dnsrecords_admin.h).
 */
#include "mailbox/outbound/dnsrecords_admin.h"

#include "mailbox/directory/directory.h"
#include "mailbox/dkim/keystore.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CERT_MAX (1024 * 1024)

const char *dnsrecords_admin_cert(const struct mailbox_config *cfg)
{
	const char *any = NULL;

	for (size_t i = 0; i < cfg->listeners.n; i++) {
		const struct mailbox_listener_conf *l = mailbox_config_listener(cfg, i);

		if (l->tls.mode == MAILBOX_TLS_NONE || l->tls.cert == NULL)
			continue;
		/* RFC 7672: the TLSA record at _25._tcp.H pins what the MX shows */
		if (l->role == MAILBOX_ROLE_MX)
			return l->tls.cert;
		if (any == NULL)
			any = l->tls.cert;
	}
	return any;
}

/* The whole file, NUL-terminated; NULL with errno. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *data;
	size_t n;

	if (f == NULL)
		return NULL;
	data = xmalloc(CERT_MAX + 1);
	n = fread(data, 1, CERT_MAX, f);
	if (ferror(f) || !feof(f)) {
		int e = ferror(f) ? errno : EFBIG;
		fclose(f);
		free(data);
		errno = e;
		return NULL;
	}
	fclose(f);
	data[n] = '\0';
	return data;
}

/* RFC 8461 3.1: the id must change when the policy does, so derive it
 * from what the policy says. */
static void policy_id(const char *mode, const char *host, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *text = xasprintf("%s|%s|%u", mode, host, (unsigned)DNSRECORDS_STS_AGE_DEFAULT);

	EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL);
	free(text);
	for (size_t i = 0; i < 10; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[20] = '\0';
}

int dnsrecords_admin_build(PGconn *c, const struct dnsrecords_admin_opts *o,
                           struct dnsrecords **r_out, char **note_r, char *err, size_t errsz)
{
	struct dkim_keystore_entry *keys = NULL;
	struct dnsrecords_dkim *dk = NULL;
	struct dnsrecords_input in;
	size_t nkeys = 0;
	char *cert = NULL, *report = NULL, stsid[33], d[256];
	const char *why = NULL;
	int rc = -1;

	*r_out = NULL;
	if (note_r != NULL)
		*note_r = NULL;
	if (o->mail_host == NULL || o->mail_host[0] == '\0') {
		snprintf(err, errsz, "no hostname in the configuration");
		return -1;
	}
	if (dir_domain_normalize(o->domain, d, sizeof(d), &why) < 0) {
		snprintf(err, errsz, "domain '%s': %s", o->domain != NULL ? o->domain : "", why);
		return -1;
	}
	/* also the check that the domain is ours */
	if (dkim_keystore_list(c, d, &keys, &nkeys, err, errsz) < 0)
		return -1;
	memset(&in, 0, sizeof(in));
	in.domain = d;
	in.mail_host = o->mail_host;
	dk = xcalloc(nkeys + 1, sizeof(*dk));
	for (size_t i = 0; i < nkeys; i++) {
		dk[i].selector = keys[i].selector;
		dk[i].txt = keys[i].txt;
	}
	in.dkim = dk;
	in.ndkim = nkeys;
	if (o->cert_file != NULL) {
		cert = slurp(o->cert_file);
		if (cert == NULL && note_r != NULL)
			*note_r = xasprintf("no TLSA record: cannot read the certificate %s: %s",
			                    o->cert_file, strerror(errno));
		in.cert_pem = cert;
	}
	if (o->report_addr == NULL) {
		/* RFC 5321 4.5.1: every domain has a postmaster */
		report = xasprintf("postmaster@%s", d);
		in.report_addr = report;
	} else if (strcmp(o->report_addr, "none") != 0 && o->report_addr[0] != '\0') {
		in.report_addr = o->report_addr;
	}
	if (o->mta_sts_mode != NULL) {
		in.mta_sts_mode = o->mta_sts_mode;
		if (o->mta_sts_id != NULL) {
			in.mta_sts_id = o->mta_sts_id;
		} else {
			policy_id(o->mta_sts_mode, o->mail_host, stsid);
			in.mta_sts_id = stsid;
		}
	} else if (o->mta_sts_id != NULL) {
		in.mta_sts_id = o->mta_sts_id; /* mode: the default, enforce */
	}
	in.dmarc_policy = o->dmarc_policy;
	in.spf_extra = o->spf_extra;
	*r_out = dnsrecords_build(&in, &why);
	if (*r_out == NULL) {
		snprintf(err, errsz, "dns records for %s: %s", in.domain, why != NULL ? why : "?");
		goto out;
	}
	rc = 0;
out:
	free(cert);
	free(report);
	free(dk);
	dkim_keystore_entries_free(&keys, nkeys);
	return rc;
}
