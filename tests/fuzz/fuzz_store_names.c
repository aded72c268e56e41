/*
 * tests/fuzz/fuzz_store_names.c -- libFuzzer target for the pure string
 * handling of the stores and the directory: redis:// and S3 endpoint URL
 * parsing, endpoint redaction, SigV4 URI encoding and signing, address
 * normalisation, and the UTF-8-safe cut of search text.
 *
 * Properties (abort() on violation): nothing crashes or reads out of
 * bounds; a password the URL parser found never survives redaction; the
 * URI encoding's reported length is what it writes and contains only
 * unreserved bytes and %XX; a normalised address normalises to itself;
 * the UTF-8 cut never splits a sequence and never grows.
 */
#include "mailbox/directory/directory.h"
#include "mailbox/store/config.h"
#include "mailbox/store/schema.h"
#include "mailbox/store/sigv4.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, host[256], out[600], red[600], *pw = NULL;
	const char *err = NULL;
	uint16_t port;
	int db;
	bool https;
	size_t n;

	if (size > 512)
		return 0;
	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';

	if (stores_redis_url_parse(s, host, sizeof(host), &port, &db, &pw, &err) == 0) {
		REQUIRE(port > 0 && db >= 0);
		stores_endpoint_redact(s, red, sizeof(red));
		/* the password the parser found is gone from the printable form
		 * (the rest of a parsed redis URL is host, port and db only) */
		if (pw != NULL) {
			char *needle = malloc(strlen(pw) + 3);
			strcpy(needle, ":");
			strcat(needle, pw);
			strcat(needle, "@");
			REQUIRE(strstr(red, needle) == NULL);
			free(needle);
		}
		free(pw);
	} else {
		REQUIRE(err != NULL);
	}
	if (stores_s3_endpoint_parse(s, &https, host, sizeof(host), &port, &err) == 0)
		REQUIRE(port > 0 && host[0] != '\0');
	stores_endpoint_redact(s, red, sizeof(red));
	REQUIRE(strlen(red) < sizeof(red));
	stores_endpoint_redact(s, red, 8);
	REQUIRE(strlen(red) < 8);

	n = sigv4_uri_encode(s, size, size % 2 == 0, out, sizeof(out));
	if (n < sizeof(out)) {
		REQUIRE(strlen(out) == n);
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)out[i];
			if (c == '%') {
				REQUIRE(i + 2 < n);
				i += 2;
				continue;
			}
			REQUIRE(unreserved(c) || (c == '/' && size % 2 == 0));
		}
	} else {
		REQUIRE(strlen(out) < sizeof(out));
	}

	if (dir_address_normalize(s, true, out, sizeof(out), &err) == 0) {
		char again[600];
		REQUIRE(dir_address_normalize(out, true, again, sizeof(again), &err) == 0);
		REQUIRE(strcmp(out, again) == 0);
		for (const char *p = out; *p; p++)
			REQUIRE(!(*p >= 'A' && *p <= 'Z'));
	}

	{
		size_t max = size > 0 ? data[0] % (size + 1) : 0;
		size_t cut = schema_utf8_truncate(s, size, max);
		REQUIRE(cut <= size);
		REQUIRE(cut <= max || size <= max);
		/* never more than one sequence (3 continuation bytes) given up */
		REQUIRE(cut + 3 >= (max < size ? max : size));
	}

	if (size > 0 && s[0] == '/') {
		struct sigv4_pair q[1] = {{s, s}}, h[1] = {{"x-amz-meta-f", s}};
		struct sigv4_request r = {
		        .method = "PUT",
		        .path = s,
		        .query = q,
		        .nquery = 1,
		        .headers = h,
		        .nheaders = 1,
		        .host = "h:1",
		        .payload_sha256 = SIGV4_UNSIGNED_PAYLOAD,
		        .when = 1700000000,
		        .region = "r",
		        .service = "s3",
		        .access_key = "a",
		        .secret_key = "k",
		};
		struct sigv4_result res;
		if (sigv4_sign(&r, &res, &err) == 0) {
			REQUIRE(strncmp(res.authorization,
			                "AWS4-HMAC-SHA256 Credential=a/20231114/r/s3/", 44) == 0);
			sigv4_result_free(&res);
		}
	}
	free(s);
	return 0;
}
