/*
 * mailbox/store/sigv4.h -- AWS Signature Version 4, as a pure function.
 *
 * Spec: AWS "Signature Version 4 signing process" and the S3 variant
 * ("Authenticating Requests: Using the Authorization Header"):
 *
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n
 *                      CanonicalHeaders \n SignedHeaders \n HashedPayload
 *   StringToSign     = "AWS4-HMAC-SHA256" \n AmzDate \n Scope \n
 *                      hex(SHA256(CanonicalRequest))
 *   SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region),
 *                      service), "aws4_request")
 *
 * S3 rules this follows: the URI path is encoded ONCE (not twice as for
 * other services), each byte outside A-Z a-z 0-9 - . _ ~ as %XX upper-case,
 * '/' kept; query names and values are encoded the same way with '/'
 * encoded too, sorted by name then value, "name=" for an empty value;
 * header names lower-cased, values trimmed and inner runs of spaces
 * squeezed, sorted by name; x-amz-content-sha256 is the hex SHA-256 of the
 * payload (or "UNSIGNED-PAYLOAD") and is always signed, as are host and
 * x-amz-date.
 *
 * No I/O, no clock, no globals: the caller passes the time, so a signature
 * can be compared byte for byte with another implementation (the
 * integration test compares against botocore).  The HTTP client must send
 * exactly the encoded path and query this module produced, and the same
 * header values.
 */
#ifndef MAILBOX_STORE_SIGV4_H
#define MAILBOX_STORE_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SIGV4_SHA256_HEX       64
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

struct sigv4_pair {
	const char *name;
	const char *value; /* query: NULL or "" both give "name=" */
};

struct sigv4_request {
	const char *method;             /* "PUT", "GET", ... */
	const char *path;               /* raw, unencoded, starting with '/': "/bucket/a b+c" */
	const struct sigv4_pair *query; /* raw, unencoded pairs, any order */
	size_t nquery;
	/* Headers to sign besides host, x-amz-date and x-amz-content-sha256
	 * (e.g. content-length, content-type, range); any case. */
	const struct sigv4_pair *headers;
	size_t nheaders;
	const char *host;           /* Host header value: "127.0.0.1:9000" */
	const char *payload_sha256; /* 64 hex digits, or SIGV4_UNSIGNED_PAYLOAD */
	time_t when;                /* signing time (UTC seconds) */
	const char *region;         /* "us-east-1", "garage" */
	const char *service;        /* "s3" */
	const char *access_key;
	const char *secret_key;
};

/* What to send.  Strings are malloc'd; free with sigv4_result_free. */
struct sigv4_result {
	char *authorization;     /* the Authorization header value */
	char amz_date[17];       /* x-amz-date: "20240101T000000Z" */
	char *content_sha256;    /* x-amz-content-sha256 value */
	char *encoded_path;      /* the path as it must appear in the URL */
	char *encoded_query;     /* the canonical query ("" when none), for the URL */
	char *canonical_request; /* for tests and debugging */
	char *string_to_sign;
};

/*
 * Sign r into *out.  0, or -1 with *errstr_r (static) when a required
 * field is missing, path does not start with '/', payload_sha256 is
 * malformed, or a header value holds a control character (CR/LF would
 * split the request).  On -1 *out holds nothing to free.
 */
int sigv4_sign(const struct sigv4_request *r, struct sigv4_result *out, const char **errstr_r);
void sigv4_result_free(struct sigv4_result *res);

/*
 * Append the SigV4 URI encoding of s[0..len) to out (outsz bytes incl.
 * NUL): unreserved bytes kept, '/' kept when keep_slash, the rest %XX.
 * Returns the length the full encoding needs (like snprintf), so a
 * return >= outsz means it was truncated.  Pure.
 */
size_t sigv4_uri_encode(const char *s, size_t len, bool keep_slash, char *out, size_t outsz);

/* Lower-case hex SHA-256 of p[0..n) into hex (65 bytes with NUL).  Pure. */
void sigv4_sha256_hex(const void *p, size_t n, char hex[SIGV4_SHA256_HEX + 1]);

#endif
