/*
 * tests/tools/sigv4_sign.c -- print what mailbox/store/sigv4.c makes of one
 * request, so the integration test can compare it with botocore.
 *
 *   sigv4_sign METHOD PATH HOST UNIXTIME REGION ACCESS SECRET
 *              [-q NAME VALUE]... [-h NAME VALUE]...
 *              [-b BODYFILE | -p PAYLOAD_HASH]
 *
 * PATH and the query pairs are raw (unencoded).  Without -b or -p the
 * payload is empty.  Prints four lines: "authorization: ...",
 * "path: <encoded path>", "query: <encoded query>", "payload: <hash>",
 * then the canonical request after a "canonical:" line.  Exit 1 with the
 * signer's message on bad input, 2 on usage errors.
 */
#include "mailbox/store/sigv4.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAIRS 64

static int usage(void)
{
	fprintf(stderr, "usage: sigv4_sign METHOD PATH HOST UNIXTIME REGION ACCESS SECRET "
	                "[-q NAME VALUE]... [-h NAME VALUE]... [-b FILE | -p HASH]\n");
	return 2;
}

static char *slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (len + 65536 > cap) {
			cap = (len + 65536) * 2;
			buf = xrealloc(buf, cap);
		}
		n = fread(buf + len, 1, 65536, f);
		len += n;
	} while (n > 0);
	fclose(f);
	*len_r = len;
	return buf;
}

int main(int argc, char **argv)
{
	struct sigv4_pair q[MAX_PAIRS], h[MAX_PAIRS];
	struct sigv4_request r;
	struct sigv4_result res;
	char hash[SIGV4_SHA256_HEX + 1];
	const char *err = NULL;
	size_t nq = 0, nh = 0;

	if (argc < 8)
		return usage();
	memset(&r, 0, sizeof(r));
	r.method = argv[1];
	r.path = argv[2];
	r.host = argv[3];
	r.when = (time_t)strtoll(argv[4], NULL, 10);
	r.region = argv[5];
	r.service = "s3";
	r.access_key = argv[6];
	r.secret_key = argv[7];
	sigv4_sha256_hex("", 0, hash);
	r.payload_sha256 = hash;
	for (int i = 8; i < argc; i++) {
		if (strcmp(argv[i], "-q") == 0 && i + 2 < argc && nq < MAX_PAIRS) {
			q[nq].name = argv[i + 1];
			q[nq++].value = argv[i + 2];
			i += 2;
		} else if (strcmp(argv[i], "-h") == 0 && i + 2 < argc && nh < MAX_PAIRS) {
			h[nh].name = argv[i + 1];
			h[nh++].value = argv[i + 2];
			i += 2;
		} else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc) {
			size_t len = 0;
			char *body = slurp(argv[++i], &len);
			if (body == NULL) {
				perror(argv[i]);
				return 1;
			}
			sigv4_sha256_hex(body, len, hash);
			free(body);
		} else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
			r.payload_sha256 = argv[++i];
		} else {
			return usage();
		}
	}
	r.query = q;
	r.nquery = nq;
	r.headers = h;
	r.nheaders = nh;
	if (sigv4_sign(&r, &res, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("authorization: %s\npath: %s\nquery: %s\npayload: %s\ncanonical:\n%s\n",
	       res.authorization, res.encoded_path, res.encoded_query, res.content_sha256,
	       res.canonical_request);
	sigv4_result_free(&res);
	return 0;
}
