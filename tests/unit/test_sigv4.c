/*
 * tests/unit/test_sigv4.c -- SigV4 canonicalisation and signatures.
 *
 * The signature vectors are the worked examples of AWS's S3 documentation
 * ("Signature Calculations for the Authorization Header: Transferring
 * Payload in a Single Chunk"), which botocore also reproduces; the
 * encoding table pins the S3 rules (path encoded once, '/' kept in the
 * path only, upper-case hex, UTF-8 bytes one by one).
 */
#include "tests/unit/unit.h"

#include "mailbox/store/sigv4.h"

#include <stdlib.h>
#include <string.h>

#define EX_AK     "AKIAIOSFODNN7EXAMPLE"
#define EX_SK     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define EX_WHEN   ((time_t)1369353600) /* 2013-05-24T00:00:00Z */
#define EX_CRED   "AWS4-HMAC-SHA256 Credential=" EX_AK "/20130524/us-east-1/s3/aws4_request, "

static struct sigv4_request ex_req(const char *method, const char *path)
{
	struct sigv4_request r = {
	        .method = method,
	        .path = path,
	        .host = "examplebucket.s3.amazonaws.com",
	        .payload_sha256 = EMPTY_SHA,
	        .when = EX_WHEN,
	        .region = "us-east-1",
	        .service = "s3",
	        .access_key = EX_AK,
	        .secret_key = EX_SK,
	};
	return r;
}

UNIT_TEST(sigv4_aws_get_object_range)
{
	struct sigv4_pair h[] = {{"Range", "bytes=0-9"}};
	struct sigv4_request r = ex_req("GET", "/test.txt");
	struct sigv4_result res;
	const char *err = NULL;

	r.headers = h;
	r.nheaders = 1;
	CHECK_INT(sigv4_sign(&r, &res, &err), 0);
	CHECK_STR(res.amz_date, "20130524T000000Z");
	CHECK_STR(res.canonical_request, "GET\n/test.txt\n\n"
	                                 "host:examplebucket.s3.amazonaws.com\n"
	                                 "range:bytes=0-9\n"
	                                 "x-amz-content-sha256:" EMPTY_SHA "\n"
	                                 "x-amz-date:20130524T000000Z\n\n"
	                                 "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA);
	CHECK_STR(res.string_to_sign,
	          "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
	          "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	CHECK_STR(res.authorization, EX_CRED
	          "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	          "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	sigv4_result_free(&res);
}

UNIT_TEST(sigv4_aws_put_object)
{
	struct sigv4_pair h[] = {
	        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
	        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
	};
	struct sigv4_request r = ex_req("PUT", "/test$file.text");
	struct sigv4_result res;
	const char *err = NULL;
	char hex[65];

	sigv4_sha256_hex("Welcome to Amazon S3.", 21, hex);
	CHECK_STR(hex, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	r.payload_sha256 = hex;
	r.headers = h;
	r.nheaders = 2;
	CHECK_INT(sigv4_sign(&r, &res, &err), 0);
	CHECK_STR(res.encoded_path, "/test%24file.text");
	CHECK_STR(res.authorization, EX_CRED
	          "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
	          "x-amz-storage-class, "
	          "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	sigv4_result_free(&res);
}

UNIT_TEST(sigv4_aws_list_and_subresource)
{
	/* given out of order: the canonical query is sorted */
	struct sigv4_pair q[] = {{"prefix", "J"}, {"max-keys", "2"}};
	struct sigv4_pair q2[] = {{"lifecycle", NULL}};
	struct sigv4_request r = ex_req("GET", "/");
	struct sigv4_result res;
	const char *err = NULL;

	r.query = q;
	r.nquery = 2;
	CHECK_INT(sigv4_sign(&r, &res, &err), 0);
	CHECK_STR(res.encoded_query, "max-keys=2&prefix=J");
	CHECK_STR(res.authorization, EX_CRED
	          "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	          "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	sigv4_result_free(&res);

	r.query = q2;
	r.nquery = 1;
	CHECK_INT(sigv4_sign(&r, &res, &err), 0);
	CHECK_STR(res.encoded_query, "lifecycle=");
	CHECK_STR(res.authorization, EX_CRED
	          "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	          "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	sigv4_result_free(&res);
}

UNIT_TEST(sigv4_uri_encode_table)
{
	static const struct {
		const char *in;
		bool keep_slash;
		const char *out;
	} t[] = {
	        {"", true, ""},
	        {"abcXYZ019-._~", false, "abcXYZ019-._~"},
	        {"/a b/c", true, "/a%20b/c"},
	        {"/a b/c", false, "%2Fa%20b%2Fc"},
	        {"a+b=c&d", true, "a%2Bb%3Dc%26d"},
	        {"%41", true, "%2541"}, /* encoded once: '%' itself is encoded */
	        {"\xc3\xa9t\xc3\xa9", true, "%C3%A9t%C3%A9"},
	        {"*'()!$,;:@", true, "%2A%27%28%29%21%24%2C%3B%3A%40"},
	        {"\x7f\x01", true, "%7F%01"},
	};
	char out[128];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = sigv4_uri_encode(t[i].in, strlen(t[i].in), t[i].keep_slash, out,
		                            sizeof(out));
		CHECK_STR(out, t[i].out);
		CHECK_INT(n, strlen(t[i].out));
		/* the size query with no buffer agrees */
		CHECK_INT(sigv4_uri_encode(t[i].in, strlen(t[i].in), t[i].keep_slash, NULL, 0), n);
	}
	/* truncation keeps whole %XX units and reports the full size */
	CHECK_INT(sigv4_uri_encode("a b", 3, true, out, 3), 5);
	CHECK_STR(out, "a");
	CHECK_INT(sigv4_uri_encode("ab c", 4, true, out, 5), 6);
	CHECK_STR(out, "ab");
	CHECK_INT(sigv4_uri_encode("ab c", 4, true, out, 7), 6);
	CHECK_STR(out, "ab%20c");
}

UNIT_TEST(sigv4_canonical_details)
{
	/* header names lower-cased and sorted, values trimmed and squeezed,
	 * query names/values encoded with '/' encoded, equal names sorted by
	 * value, path with spaces, UTF-8 and reserved characters */
	struct sigv4_pair h[] = {
	        {"X-Amz-Meta-Note", "  two   words\there  "},
	        {"Content-Type", "message/rfc822"},
	};
	struct sigv4_pair q[] = {{"b", "2"}, {"a", "z/y"}, {"a", "x y"}, {"c d", ""}};
	struct sigv4_request r = ex_req("PUT", "/bucket/dir/a b+c=d\xc3\xa9.eml");
	struct sigv4_result res;
	const char *err = NULL;

	r.headers = h;
	r.nheaders = 2;
	r.query = q;
	r.nquery = 4;
	r.host = "127.0.0.1:9000";
	CHECK_INT(sigv4_sign(&r, &res, &err), 0);
	CHECK_STR(res.encoded_path, "/bucket/dir/a%20b%2Bc%3Dd%C3%A9.eml");
	CHECK_STR(res.encoded_query, "a=x%20y&a=z%2Fy&b=2&c%20d=");
	CHECK_STR(res.canonical_request,
	          "PUT\n/bucket/dir/a%20b%2Bc%3Dd%C3%A9.eml\na=x%20y&a=z%2Fy&b=2&c%20d=\n"
	          "content-type:message/rfc822\n"
	          "host:127.0.0.1:9000\n"
	          "x-amz-content-sha256:" EMPTY_SHA "\n"
	          "x-amz-date:20130524T000000Z\n"
	          "x-amz-meta-note:two words here\n\n"
	          "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note\n" EMPTY_SHA);
	CHECK(strstr(res.authorization,
	             "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
	             "x-amz-meta-note, Signature=") != NULL);
	CHECK_STR(res.content_sha256, EMPTY_SHA);
	sigv4_result_free(&res);

	/* UNSIGNED-PAYLOAD is carried through */
	r.payload_sha256 = SIGV4_UNSIGNED_PAYLOAD;
	r.nheaders = 0;
	r.nquery = 0;
	CHECK_INT(sigv4_sign(&r, &res, &err), 0);
	CHECK_STR(res.content_sha256, "UNSIGNED-PAYLOAD");
	CHECK_STR(res.encoded_query, "");
	CHECK(strstr(res.canonical_request, "\nUNSIGNED-PAYLOAD") != NULL);
	sigv4_result_free(&res);
}

UNIT_TEST(sigv4_signature_depends_on_inputs)
{
	struct sigv4_request r = ex_req("GET", "/k");
	struct sigv4_result a, b;
	const char *err = NULL;

	CHECK_INT(sigv4_sign(&r, &a, &err), 0);
	r.when += 1;
	CHECK_INT(sigv4_sign(&r, &b, &err), 0);
	CHECK(strcmp(a.authorization, b.authorization) != 0);
	sigv4_result_free(&b);
	r.when -= 1;
	r.secret_key = "other";
	CHECK_INT(sigv4_sign(&r, &b, &err), 0);
	CHECK(strcmp(a.authorization, b.authorization) != 0);
	sigv4_result_free(&b);
	r.secret_key = EX_SK;
	CHECK_INT(sigv4_sign(&r, &b, &err), 0);
	CHECK_STR(a.authorization, b.authorization);
	sigv4_result_free(&a);
	sigv4_result_free(&b);
}

UNIT_TEST(sigv4_rejects_bad_input)
{
	struct sigv4_pair crlf[] = {{"x-amz-meta-a", "x\r\nInjected: y"}};
	struct sigv4_pair dup[] = {{"Host", "evil"}};
	struct sigv4_pair badname[] = {{"a b", "x"}};
	struct sigv4_request r;
	struct sigv4_result res;
	const char *err;

	r = ex_req("GET", "no-slash");
	err = NULL;
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
	CHECK(err != NULL);
	CHECK(res.authorization == NULL);

	r = ex_req("GET", "/");
	r.payload_sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
	r.payload_sha256 = "abc";
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);

	r = ex_req("GET", "/");
	r.headers = crlf;
	r.nheaders = 1;
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
	r.headers = dup;
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
	r.headers = badname;
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);

	r = ex_req("GET", "/");
	r.region = "us/east";
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
	r = ex_req("GET", "/");
	r.access_key = NULL;
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
	r = ex_req("GET", "/");
	r.host = "a\nb";
	CHECK_INT(sigv4_sign(&r, &res, &err), -1);
}
