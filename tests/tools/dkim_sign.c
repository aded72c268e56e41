/*
 * tests/tools/dkim_sign.c -- drive mailbox/dkim from the command line, for
 * the integration tests that check our signatures with dkimpy.
 *
 *   dkim_sign generate ed25519|rsa
 *	prints a new private key (PKCS#8 PEM) on stdout.
 *   dkim_sign txt KEYFILE
 *	prints the DNS TXT value for KEYFILE's public half.
 *   dkim_sign sign [-t UNIX] [-c CHUNK] [-H HEADERMAX] KEYFILE:DOMAIN:SELECTOR... MESSAGE
 *	reads MESSAGE in CHUNK-byte pieces (default 4096) through the
 *	streaming signer, one signature per KEYFILE:DOMAIN:SELECTOR, and
 *	writes the DKIM-Signature fields followed by MESSAGE unchanged.
 *
 * Errors go to stderr with exit status 1; usage errors exit 2.
 */
#include "mailbox/dkim/key.h"
#include "mailbox/dkim/sign.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: dkim_sign generate ed25519|rsa\n"
	                "       dkim_sign txt KEYFILE\n"
	                "       dkim_sign sign [-t UNIX] [-c CHUNK] [-H HEADERMAX] "
	                "KEYFILE:DOMAIN:SELECTOR... MESSAGE\n");
	exit(2);
}

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[8192];
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "dkim_sign: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	buf_init(&b, 0);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	buf_append(&b, "", 1);
	*len_r = buf_len(&b) - 1;
	return (char *)b.data;
}

static int cmd_generate(int argc, char **argv)
{
	enum dkim_alg alg;
	const char *err = NULL;
	char *pem;

	if (argc != 3 || dkim_alg_parse(argv[2], &alg) < 0)
		usage();
	pem = dkim_key_generate_pem(alg, &err);
	if (pem == NULL) {
		fprintf(stderr, "dkim_sign: %s\n", err);
		return 1;
	}
	fputs(pem, stdout);
	free(pem);
	return 0;
}

static int cmd_txt(int argc, char **argv)
{
	const char *err = NULL;
	size_t len;
	char *pem, *txt;

	if (argc != 3)
		usage();
	pem = read_file(argv[2], &len);
	txt = dkim_key_dns_txt_pem(pem, len, &err);
	free(pem);
	if (txt == NULL) {
		fprintf(stderr, "dkim_sign: %s\n", err);
		return 1;
	}
	printf("%s\n", txt);
	free(txt);
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	struct dkim_sign_spec specs[DKIM_SIGN_MAX];
	struct dkim_key *keys[DKIM_SIGN_MAX] = {0};
	struct dkim_sign_opts opts = {.now = (int64_t)time(NULL)};
	struct dkim_sign *s = NULL;
	size_t nspecs = 0, chunk = 4096, len, off, i;
	const char *err = NULL;
	char *msg = NULL;
	struct buf out;
	int opt, rc = 1;

	optind = 2;
	while ((opt = getopt(argc, argv, "t:c:H:")) != -1) {
		switch (opt) {
		case 't':
			opts.now = strtoll(optarg, NULL, 10);
			break;
		case 'c':
			chunk = strtoul(optarg, NULL, 10);
			break;
		case 'H':
			opts.header_max = strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2 || chunk == 0)
		usage();
	buf_init(&out, 0);
	for (; optind < argc - 1; optind++) {
		char *spec = xstrdup(argv[optind]), *dom, *sel, *pem;
		size_t plen;
		dom = strchr(spec, ':');
		sel = dom ? strchr(dom + 1, ':') : NULL;
		if (sel == NULL || nspecs == DKIM_SIGN_MAX)
			usage();
		*dom++ = '\0';
		*sel++ = '\0';
		pem = read_file(spec, &plen);
		keys[nspecs] = dkim_key_load_pem(pem, plen, &err);
		free(pem);
		if (keys[nspecs] == NULL) {
			fprintf(stderr, "dkim_sign: %s: %s\n", spec, err);
			free(spec);
			goto fail;
		}
		specs[nspecs] = (struct dkim_sign_spec){
		        .key = keys[nspecs], .domain = xstrdup(dom), .selector = xstrdup(sel)};
		nspecs++;
		free(spec);
	}
	msg = read_file(argv[argc - 1], &len);
	s = dkim_sign_new(specs, nspecs, &opts, &err);
	if (s == NULL)
		goto fail_err;
	for (off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		if (dkim_sign_feed(s, msg + off, n) < 0)
			break;
	}
	if (dkim_sign_finish(s, &out, &err) < 0)
		goto fail_err;
	fwrite(buf_ptr(&out), 1, buf_len(&out), stdout);
	fwrite(msg, 1, len, stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
	goto fail;
fail_err:
	fprintf(stderr, "dkim_sign: %s\n", err);
fail:
	dkim_sign_free(&s);
	for (i = 0; i < nspecs; i++) {
		free((void *)(uintptr_t)specs[i].domain);
		free((void *)(uintptr_t)specs[i].selector);
	}
	for (i = 0; i < DKIM_SIGN_MAX; i++)
		dkim_key_free(&keys[i]);
	free(msg);
	buf_free(&out);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "generate") == 0)
		return cmd_generate(argc, argv);
	if (strcmp(argv[1], "txt") == 0)
		return cmd_txt(argc, argv);
	if (strcmp(argv[1], "sign") == 0)
		return cmd_sign(argc, argv);
	usage();
	return 2;
}
