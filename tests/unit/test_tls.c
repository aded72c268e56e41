/*
 * tests/unit/test_tls.c -- shared/tls: loading, protocol policy, reload.
 *
 * Certificates are made at test time with OpenSSL's C API (P-256 keys,
 * self-signed, SAN test.example) in a temporary directory.  Handshakes run
 * in-process over a non-blocking socketpair, stepping client and server in
 * turn, so no network or threads are involved.
 */
#include "tests/unit/unit.h"

#include "shared/tls.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define TEST_HOST "test.example"

struct tt_dir {
	char path[64];
	char cert[128], key[128];
};

static int tt_dir_make(struct tt_dir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/tp-unit-tls-XXXXXX");
	if (mkdtemp(d->path) == NULL)
		return -1;
	snprintf(d->cert, sizeof(d->cert), "%s/cert.pem", d->path);
	snprintf(d->key, sizeof(d->key), "%s/key.pem", d->path);
	return 0;
}

static void tt_dir_remove(struct tt_dir *d)
{
	DIR *dir = opendir(d->path);
	struct dirent *e;
	char p[512];

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", d->path, e->d_name);
		unlink(p);
	}
	closedir(dir);
	rmdir(d->path);
}

/* Write text to path through a temporary file and rename(2), as a
 * certificate manager does (the inode changes). */
static int tt_write_file(const char *path, const void *data, size_t len)
{
	char tmp[256];
	FILE *f;
	int ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	ok = fwrite(data, 1, len, f) == len;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0)
		return -1;
	return 0;
}

/* PEM of a fresh key or self-signed certificate into a malloc'd string. */
static char *tt_bio_string(BIO *b)
{
	char *p, *s;
	long n = BIO_get_mem_data(b, &p);

	s = malloc((size_t)n + 1);
	if (s == NULL)
		abort();
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	return s;
}

/*
 * Make a P-256 key and a self-signed certificate with CN=cn and SAN
 * DNS:test.example; return both as PEM (malloc'd).  With passphrase, the
 * key is encrypted with it.
 */
static int tt_make_cert(const char *cn, const char *passphrase, char **cert_pem, char **key_pem)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext = NULL;
	X509V3_CTX v3;
	BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
	static long serial = 1;
	int ret = -1;

	if (pkey == NULL || x == NULL || bc == NULL || bk == NULL)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:" TEST_HOST);
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
		goto out;
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		goto out;
	if (PEM_write_bio_X509(bc, x) != 1)
		goto out;
	if (passphrase != NULL) {
		if (PEM_write_bio_PrivateKey(bk, pkey, EVP_aes_128_cbc(),
		                             (const unsigned char *)passphrase,
		                             (int)strlen(passphrase), NULL, NULL) != 1)
			goto out;
	} else if (PEM_write_bio_PrivateKey(bk, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		goto out;
	}
	*cert_pem = tt_bio_string(bc);
	*key_pem = tt_bio_string(bk);
	ret = 0;
out:
	X509_EXTENSION_free(ext);
	X509_free(x);
	EVP_PKEY_free(pkey);
	BIO_free(bc);
	BIO_free(bk);
	return ret;
}

/* Make a certificate named cn and install it as d->cert / d->key. */
static int tt_install_cert(const struct tt_dir *d, const char *cn, bool cert, bool key)
{
	char *c = NULL, *k = NULL;
	int ret = -1;

	if (tt_make_cert(cn, NULL, &c, &k) < 0)
		goto out;
	if (cert && tt_write_file(d->cert, c, strlen(c)) < 0)
		goto out;
	if (key && tt_write_file(d->key, k, strlen(k)) < 0)
		goto out;
	ret = 0;
out:
	free(c);
	free(k);
	return ret;
}

/* A client and a server SSL joined by a socketpair. */
struct tt_pair {
	SSL *c, *s;
	int fd[2];
	unsigned long s_err; /* the server's first OpenSSL error on failure */
};

static int tt_pair_init(struct tt_pair *p, SSL *c, SSL *s)
{
	p->c = c;
	p->s = s;
	p->s_err = 0;
	p->fd[0] = p->fd[1] = -1;
	if (c == NULL || s == NULL)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->fd) < 0)
		return -1;
	if (SSL_set_fd(c, p->fd[0]) != 1 || SSL_set_fd(s, p->fd[1]) != 1)
		return -1;
	return 0;
}

static void tt_pair_free(struct tt_pair *p)
{
	SSL_free(p->c);
	SSL_free(p->s);
	if (p->fd[0] >= 0)
		close(p->fd[0]);
	if (p->fd[1] >= 0)
		close(p->fd[1]);
	p->c = p->s = NULL;
	ERR_clear_error();
}

static bool tt_want(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Step both handshakes until done (0) or either side fails (-1). */
static int tt_handshake(struct tt_pair *p)
{
	bool c_done = false, s_done = false;

	for (int i = 0; i < 64 && !(c_done && s_done); i++) {
		if (!c_done) {
			int r = SSL_do_handshake(p->c);
			if (r == 1)
				c_done = true;
			else if (!tt_want(p->c, r))
				return -1;
		}
		if (!s_done) {
			ERR_clear_error();
			int r = SSL_do_handshake(p->s);
			if (r == 1) {
				s_done = true;
			} else if (!tt_want(p->s, r)) {
				p->s_err = ERR_peek_error();
				return -1;
			}
		}
	}
	return c_done && s_done ? 0 : -1;
}

/* Send msg from one SSL to the other and read it back. */
static int tt_transfer(SSL *from, SSL *to, const char *msg)
{
	char buf[64];
	size_t n = strlen(msg);
	int r;

	if (SSL_write(from, msg, (int)n) != (int)n)
		return -1;
	r = SSL_read(to, buf, sizeof(buf));
	if (r != (int)n || memcmp(buf, msg, n) != 0)
		return -1;
	return 0;
}

/* Both directions over an established pair. */
static int tt_echo(struct tt_pair *p)
{
	if (tt_transfer(p->c, p->s, "EHLO client\r\n") < 0)
		return -1;
	return tt_transfer(p->s, p->c, "250 ok\r\n");
}

/* CN of the certificate the client saw, into buf. */
static const char *tt_peer_cn(SSL *client, char *buf, size_t bufsz)
{
	X509 *x = SSL_get0_peer_certificate(client);

	if (x == NULL || X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf,
	                                           (int)bufsz) < 0)
		snprintf(buf, bufsz, "(none)");
	return buf;
}

/* Handshake a fresh non-verifying client with server SSL s; the CN seen. */
static int tt_connect_cn(SSL_CTX *cctx, SSL *s, char *cn, size_t cnsz)
{
	struct tt_pair p;
	int ret = -1;

	if (tt_pair_init(&p, tls_client_ssl_new(cctx, TEST_HOST), s) < 0)
		goto out;
	if (tt_handshake(&p) < 0 || tt_echo(&p) < 0)
		goto out;
	tt_peer_cn(p.c, cn, cnsz);
	ret = 0;
out:
	tt_pair_free(&p);
	return ret;
}

static bool tt_contains(const char *s, const char *needle)
{
	return s != NULL && strstr(s, needle) != NULL;
}

UNIT_TEST(tls_handshake_and_info)
{
	struct tt_dir d;
	struct tls_ctx *ctx = NULL;
	SSL_CTX *cctx = NULL;
	struct tt_pair p = {0};
	struct tls_info info;
	const char *err = NULL;
	char cn[64];

	CHECK(tt_dir_make(&d) == 0);
	CHECK(tt_install_cert(&d, "cert-one", true, true) == 0);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK_MSG(ctx != NULL, "tls_ctx_new: %s", err);
	CHECK_INT(tls_ctx_generation(ctx), 1);
	cctx = tls_client_ctx_new(true, d.cert, &err);
	CHECK_MSG(cctx != NULL, "tls_client_ctx_new: %s", err);

	CHECK(tt_pair_init(&p, tls_client_ssl_new(cctx, TEST_HOST), tls_ctx_ssl_new(ctx)) == 0);
	CHECK(SSL_is_server(p.s) == 1);
	CHECK(tls_ssl_info(p.s, &info) == -1);
	CHECK_STR(info.version, "unknown");
	CHECK(tt_handshake(&p) == 0);
	CHECK_INT(SSL_get_verify_result(p.c), X509_V_OK);
	CHECK(tt_echo(&p) == 0);
	CHECK_STR(tt_peer_cn(p.c, cn, sizeof(cn)), "cert-one");
	CHECK(tls_ssl_info(p.s, &info) == 0);
	CHECK_STR(info.version, "TLSv1.3");
	CHECK(strncmp(info.iana, "TLS_", 4) == 0);
	CHECK(strlen(info.cipher) > 0);
	CHECK(info.bits == 128 || info.bits == 256);
	tt_pair_free(&p);

	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
	CHECK(ctx == NULL);
	tls_ctx_free(&ctx); /* NULL-safe */
	tt_dir_remove(&d);
}

/* Protocol and cipher policy, one client profile per row. */
struct tt_client_case {
	const char *name;
	int min, max;        /* protocol versions the client allows */
	const char *ciphers; /* TLS <= 1.2 cipher list; NULL: default */
	bool ok;
	const char *version;     /* negotiated, when ok */
	const char *iana_prefix; /* of the negotiated suite, when ok */
	int reason;              /* server's OpenSSL reason, when refused */
};

static const struct tt_client_case tt_clients[] = {
        {"default", 0, 0, NULL, true, "TLSv1.3", "TLS_", 0},
        {"tls12", TLS1_2_VERSION, TLS1_2_VERSION, NULL, true, "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_",
         0},
        {"tls12-chacha", TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", true,
         "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", 0},
        /* CBC and SHA-1 MAC suites are not offered by the server. */
        {"tls12-cbc", TLS1_2_VERSION, TLS1_2_VERSION,
         "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-SHA", false, NULL, NULL,
         SSL_R_NO_SHARED_CIPHER},
        {"tls11", TLS1_1_VERSION, TLS1_1_VERSION, NULL, false, NULL, NULL,
         SSL_R_UNSUPPORTED_PROTOCOL},
        {"tls10", TLS1_VERSION, TLS1_VERSION, NULL, false, NULL, NULL, SSL_R_UNSUPPORTED_PROTOCOL},
};

/* A client willing to speak old protocols (security level 0), so that a
 * refusal can only come from the server. */
static SSL_CTX *tt_legacy_client(const struct tt_client_case *tc)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	char list[256];

	if (c == NULL)
		return NULL;
	snprintf(list, sizeof(list), "%s:@SECLEVEL=0", tc->ciphers ? tc->ciphers : "DEFAULT");
	if (SSL_CTX_set_cipher_list(c, list) != 1 ||
	    SSL_CTX_set_min_proto_version(c, tc->min) != 1 ||
	    SSL_CTX_set_max_proto_version(c, tc->max) != 1) {
		SSL_CTX_free(c);
		return NULL;
	}
	SSL_CTX_set_security_level(c, 0);
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	return c;
}

UNIT_TEST(tls_protocol_policy)
{
	struct tt_dir d;
	struct tls_ctx *ctx = NULL;
	const char *err = NULL;
	SSL_CTX *control = NULL;

	CHECK(tt_dir_make(&d) == 0);
	CHECK(tt_install_cert(&d, "policy", true, true) == 0);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK_MSG(ctx != NULL, "tls_ctx_new: %s", err);

	/* A control server that allows TLS 1.0+ at level 0: it proves each
	 * legacy client really can complete a handshake, so the refusals
	 * below are the policy of tls_ctx, not of the client or the system. */
	control = SSL_CTX_new(TLS_server_method());
	CHECK(control != NULL);
	CHECK(SSL_CTX_set_cipher_list(control, "ALL:@SECLEVEL=0") == 1);
	SSL_CTX_set_security_level(control, 0);
	CHECK(SSL_CTX_set_min_proto_version(control, TLS1_VERSION) == 1);
	CHECK(SSL_CTX_use_certificate_chain_file(control, d.cert) == 1);
	CHECK(SSL_CTX_use_PrivateKey_file(control, d.key, SSL_FILETYPE_PEM) == 1);

	for (size_t i = 0; i < sizeof(tt_clients) / sizeof(tt_clients[0]); i++) {
		const struct tt_client_case *tc = &tt_clients[i];
		SSL_CTX *cc = tt_legacy_client(tc);
		struct tt_pair p;
		struct tls_info info = {0};
		int r;

		CHECK_MSG(cc != NULL, "case %s: client ctx", tc->name);
		if (!tc->ok) {
			CHECK(tt_pair_init(&p, SSL_new(cc), SSL_new(control)) == 0);
			SSL_set_connect_state(p.c);
			SSL_set_accept_state(p.s);
			r = tt_handshake(&p);
			tt_pair_free(&p);
			if (r != 0)
				SSL_CTX_free(cc);
			CHECK_MSG(r == 0, "case %s: control server refused the client", tc->name);
		}
		CHECK(tt_pair_init(&p, SSL_new(cc), tls_ctx_ssl_new(ctx)) == 0);
		SSL_set_connect_state(p.c);
		r = tt_handshake(&p);
		if (r == 0) {
			tls_ssl_info(p.s, &info);
			r = tt_echo(&p) == 0 ? 0 : -2;
		}
		unsigned long s_err = p.s_err;
		tt_pair_free(&p);
		SSL_CTX_free(cc);
		if (tc->ok) {
			CHECK_MSG(r == 0, "case %s: handshake failed", tc->name);
			CHECK_STR(info.version, tc->version);
			CHECK_MSG(strncmp(info.iana, tc->iana_prefix, strlen(tc->iana_prefix)) == 0,
			          "case %s: suite %s", tc->name, info.iana);
			/* TLS 1.2 suites must be AEAD. */
			CHECK(tt_contains(info.iana, "GCM") || tt_contains(info.iana, "CHACHA20"));
		} else {
			CHECK_MSG(r == -1, "case %s: accepted", tc->name);
			CHECK_MSG(ERR_GET_REASON(s_err) == tc->reason,
			          "case %s: server reason %d, want %d", tc->name,
			          ERR_GET_REASON(s_err), tc->reason);
		}
	}
	SSL_CTX_free(control);
	tls_ctx_free(&ctx);
	tt_dir_remove(&d);
}

UNIT_TEST(tls_client_verify)
{
	struct tt_dir d;
	struct tls_ctx *ctx = NULL;
	SSL_CTX *cctx = NULL, *other = NULL;
	struct tt_pair p;
	const char *err = NULL;
	char other_ca[160];
	char *c = NULL, *k = NULL;

	CHECK(tt_dir_make(&d) == 0);
	CHECK(tt_install_cert(&d, "verify", true, true) == 0);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK_MSG(ctx != NULL, "tls_ctx_new: %s", err);
	cctx = tls_client_ctx_new(true, d.cert, &err);
	CHECK_MSG(cctx != NULL, "tls_client_ctx_new: %s", err);

	/* wrong name: refused by the client */
	CHECK(tt_pair_init(&p, tls_client_ssl_new(cctx, "other.example"), tls_ctx_ssl_new(ctx)) ==
	      0);
	CHECK(tt_handshake(&p) == -1);
	CHECK_INT(SSL_get_verify_result(p.c), X509_V_ERR_HOSTNAME_MISMATCH);
	tt_pair_free(&p);

	/* an IP literal is checked against IP SANs (there are none) */
	CHECK(tt_pair_init(&p, tls_client_ssl_new(cctx, "127.0.0.1"), tls_ctx_ssl_new(ctx)) == 0);
	CHECK(SSL_get_servername(p.c, TLSEXT_NAMETYPE_host_name) == NULL);
	CHECK(tt_handshake(&p) == -1);
	CHECK_INT(SSL_get_verify_result(p.c), X509_V_ERR_IP_ADDRESS_MISMATCH);
	tt_pair_free(&p);

	/* right name, SNI sent */
	CHECK(tt_pair_init(&p, tls_client_ssl_new(cctx, TEST_HOST), tls_ctx_ssl_new(ctx)) == 0);
	CHECK(tt_handshake(&p) == 0);
	CHECK_STR(SSL_get_servername(p.s, TLSEXT_NAMETYPE_host_name), TEST_HOST);
	tt_pair_free(&p);

	/* a CA file that does not contain our certificate */
	CHECK(tt_make_cert("someone-else", NULL, &c, &k) == 0);
	snprintf(other_ca, sizeof(other_ca), "%s/other-ca.pem", d.path);
	CHECK(tt_write_file(other_ca, c, strlen(c)) == 0);
	other = tls_client_ctx_new(true, other_ca, &err);
	CHECK_MSG(other != NULL, "tls_client_ctx_new: %s", err);
	CHECK(tt_pair_init(&p, tls_client_ssl_new(other, TEST_HOST), tls_ctx_ssl_new(ctx)) == 0);
	CHECK(tt_handshake(&p) == -1);
	CHECK_INT(SSL_get_verify_result(p.c), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
	tt_pair_free(&p);
	SSL_CTX_free(other);

	/* no verification (opportunistic): the same untrusted cert is fine */
	other = tls_client_ctx_new(false, NULL, &err);
	CHECK(other != NULL);
	CHECK(tt_pair_init(&p, tls_client_ssl_new(other, "other.example"), tls_ctx_ssl_new(ctx)) ==
	      0);
	CHECK(tt_handshake(&p) == 0);
	CHECK(tt_echo(&p) == 0);
	tt_pair_free(&p);
	SSL_CTX_free(other);

	/* a missing CA file is named in the error */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/no-such-ca.pem", d.path);
	other = tls_client_ctx_new(true, missing, &err);
	CHECK(other == NULL);
	CHECK_MSG(tt_contains(err, missing), "err: %s", err);

	free(c);
	free(k);
	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
	tt_dir_remove(&d);
}

UNIT_TEST(tls_new_errors)
{
	struct tt_dir d;
	struct tls_ctx *ctx;
	const char *err = NULL;
	char *c = NULL, *k = NULL;
	char *c2 = NULL, *k2 = NULL;

	CHECK(tt_dir_make(&d) == 0);

	/* missing certificate file */
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK(ctx == NULL);
	CHECK_MSG(tt_contains(err, d.cert) && tt_contains(err, "No such file"), "err: %s", err);

	/* not PEM */
	CHECK(tt_write_file(d.cert, "hello\n", 6) == 0);
	CHECK(tt_install_cert(&d, "x", false, true) == 0);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK(ctx == NULL);
	CHECK_MSG(tt_contains(err, "certificate chain") && tt_contains(err, d.cert) &&
	                  tt_contains(err, "no start line"),
	          "err: %s", err);

	/* encrypted key: refused, never prompts.  OpenSSL's default prompt
	 * reads stdin when there is no terminal, so offer it the right
	 * passphrase there: the key must still not load. */
	CHECK(tt_make_cert("enc", "secret", &c, &k) == 0);
	CHECK(tt_write_file(d.cert, c, strlen(c)) == 0);
	CHECK(tt_write_file(d.key, k, strlen(k)) == 0);
	int pfd[2], saved_stdin = dup(0);
	CHECK(saved_stdin >= 0 && pipe(pfd) == 0);
	CHECK(write(pfd[1], "secret\nsecret\n", 14) == 14);
	close(pfd[1]);
	dup2(pfd[0], 0);
	close(pfd[0]);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	dup2(saved_stdin, 0);
	close(saved_stdin);
	CHECK(ctx == NULL);
	CHECK_MSG(tt_contains(err, "private key") && tt_contains(err, d.key), "err: %s", err);

	/* key of another certificate */
	CHECK(tt_make_cert("other", NULL, &c2, &k2) == 0);
	CHECK(tt_write_file(d.key, k2, strlen(k2)) == 0);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK(ctx == NULL);
	CHECK_MSG(tt_contains(err, "does not match") && tt_contains(err, d.key) &&
	                  tt_contains(err, d.cert),
	          "err: %s", err);

	/* no OpenSSL error left behind for unrelated callers */
	CHECK(ERR_peek_error() == 0);
	free(c);
	free(k);
	free(c2);
	free(k2);
	tt_dir_remove(&d);
}

UNIT_TEST(tls_reload_keeps_live_sessions)
{
	struct tt_dir d;
	struct tls_ctx *ctx = NULL;
	SSL_CTX *cctx = NULL;
	struct tt_pair live = {0};
	SSL *early = NULL;
	const char *err = NULL;
	char cn[64];

	CHECK(tt_dir_make(&d) == 0);
	CHECK(tt_install_cert(&d, "cert-one", true, true) == 0);
	ctx = tls_ctx_new(d.cert, d.key, &err);
	CHECK_MSG(ctx != NULL, "tls_ctx_new: %s", err);
	cctx = tls_client_ctx_new(false, NULL, &err);
	CHECK(cctx != NULL);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), 0);

	/* a live session, and a server SSL created but not yet handshaken */
	CHECK(tt_pair_init(&live, tls_client_ssl_new(cctx, TEST_HOST), tls_ctx_ssl_new(ctx)) == 0);
	CHECK(tt_handshake(&live) == 0);
	CHECK_STR(tt_peer_cn(live.c, cn, sizeof(cn)), "cert-one");
	early = tls_ctx_ssl_new(ctx);

	/* new files: picked up once */
	CHECK(tt_install_cert(&d, "cert-two", true, true) == 0);
	CHECK_MSG(tls_ctx_maybe_reload(ctx, &err) == 1, "reload: %s", err);
	CHECK_INT(tls_ctx_generation(ctx), 2);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), 0);

	CHECK(tt_echo(&live) == 0);
	CHECK(tt_connect_cn(cctx, early, cn, sizeof(cn)) == 0);
	early = NULL; /* freed by tt_connect_cn */
	CHECK_STR(cn, "cert-one");
	CHECK(tt_connect_cn(cctx, tls_ctx_ssl_new(ctx), cn, sizeof(cn)) == 0);
	CHECK_STR(cn, "cert-two");

	/* a broken certificate: error names the file, old context stays,
	 * and the same broken file is not retried on the next check */
	CHECK(tt_write_file(d.cert, "not a certificate\n", 18) == 0);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), -1);
	CHECK_MSG(tt_contains(err, d.cert) && tt_contains(err, "no start line"), "err: %s", err);
	CHECK_INT(tls_ctx_generation(ctx), 2);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), 0);
	CHECK(tt_connect_cn(cctx, tls_ctx_ssl_new(ctx), cn, sizeof(cn)) == 0);
	CHECK_STR(cn, "cert-two");
	/* a forced reload does retry */
	CHECK_INT(tls_ctx_reload(ctx, &err), -1);

	/* certificate updated before its key: mismatch, then the key arrives */
	CHECK(tt_install_cert(&d, "cert-three", true, false) == 0);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), -1);
	CHECK_MSG(tt_contains(err, "does not match"), "err: %s", err);
	CHECK(tt_connect_cn(cctx, tls_ctx_ssl_new(ctx), cn, sizeof(cn)) == 0);
	CHECK_STR(cn, "cert-two");
	CHECK(tt_install_cert(&d, "cert-three", true, true) == 0);
	CHECK_MSG(tls_ctx_maybe_reload(ctx, &err) == 1, "reload: %s", err);
	CHECK_INT(tls_ctx_generation(ctx), 3);
	CHECK(tt_connect_cn(cctx, tls_ctx_ssl_new(ctx), cn, sizeof(cn)) == 0);
	CHECK_STR(cn, "cert-three");

	/* key file removed: reported once with its name */
	CHECK(unlink(d.key) == 0);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), -1);
	CHECK_MSG(tt_contains(err, d.key) && tt_contains(err, "No such file"), "err: %s", err);
	CHECK_INT(tls_ctx_maybe_reload(ctx, &err), 0);

	/* the live session outlives the tls_ctx itself */
	tls_ctx_free(&ctx);
	CHECK(tt_echo(&live) == 0);
	tt_pair_free(&live);
	SSL_CTX_free(cctx);
	tt_dir_remove(&d);
}
