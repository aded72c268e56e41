/*
 * tests/tools/store_selftest.c -- prove each test store answers our C clients.
 *
 * The integration harness starts a private PostgreSQL, redis-server and S3
 * server (s3rver); this tool talks to each through the very libraries the
 * mailbox links (libpq, hiredis, libcurl), so a green harness self-test means
 * both that the fixture is up and that our toolchain can reach it:
 *
 *   store_selftest pg CONNINFO [SQL [PARAM...]]
 *	runs one statement with the extended protocol (PQexecParams) and
 *	prints each row as tab-separated fields (NULL as \N), or the command
 *	tag when there are no rows.  A password may come from PGPASSWORD.
 *   store_selftest redis HOST PORT [ARG...]
 *	sends one command (PING by default) and prints the reply.
 *   store_selftest s3 ENDPOINT REGION BUCKET ACCESS SECRET
 *	creates BUCKET, PUTs a generated binary object, GETs it back and
 *	compares every byte, HEADs it and checks Content-Length; requests are
 *	path-style and signed by libcurl's CURLOPT_AWS_SIGV4.
 *
 * Output is line-oriented for the pytest side to check; any failure prints a
 * reason on stderr and exits 1 (usage errors exit 2).  This is a test tool,
 * so it blocks freely; the daemons never do.
 */
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <postgresql/libpq-fe.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "shared/buf.h"
#include "shared/xmalloc.h"

/* Bound on any response body we keep: the test object plus slack. */
#define S3_BODY_MAX (4u * 1024 * 1024)
/* Not a multiple of any buffer size, so partial reads and writes show. */
#define S3_OBJECT_LEN (3u * 65536 + 123)

static int usage(void)
{
	fprintf(stderr, "usage: store_selftest pg CONNINFO [SQL [PARAM...]]\n"
	                "       store_selftest redis HOST PORT [ARG...]\n"
	                "       store_selftest s3 ENDPOINT REGION BUCKET ACCESS SECRET\n");
	return 2;
}

/* ---- PostgreSQL ---- */

static int cmd_pg(int argc, char **argv)
{
	const char *sql = "SELECT current_user, current_database(), 6 * 7";
	const char *const *params = NULL;
	int nparams = 0;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int rc = 1;

	if (argc < 1)
		return usage();
	if (argc >= 2) {
		sql = argv[1];
		nparams = argc - 2;
		params = (const char *const *)(argv + 2);
	}
	conn = PQconnectdb(argv[0]);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "pg: connect: %s", PQerrorMessage(conn));
		goto fail;
	}
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
		for (int r = 0; r < PQntuples(res); r++) {
			for (int c = 0; c < PQnfields(res); c++) {
				if (c > 0)
					putchar('\t');
				fputs(PQgetisnull(res, r, c) ? "\\N" : PQgetvalue(res, r, c),
				      stdout);
			}
			putchar('\n');
		}
		break;
	case PGRES_COMMAND_OK:
		printf("%s\n", PQcmdStatus(res));
		break;
	default:
		fprintf(stderr, "pg: query: %s", PQresultErrorMessage(res));
		goto fail;
	}
	rc = 0;
fail:
	PQclear(res);
	PQfinish(conn);
	return rc;
}

/* ---- Redis ---- */

static void redis_print(const redisReply *r)
{
	switch (r->type) {
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_STRING:
		fwrite(r->str, 1, r->len, stdout);
		putchar('\n');
		break;
	case REDIS_REPLY_INTEGER:
		printf("%lld\n", r->integer);
		break;
	case REDIS_REPLY_NIL:
		printf("(nil)\n");
		break;
	case REDIS_REPLY_ARRAY:
		for (size_t i = 0; i < r->elements; i++)
			redis_print(r->element[i]);
		break;
	default:
		printf("(reply type %d)\n", r->type);
		break;
	}
}

static int cmd_redis(int argc, char **argv)
{
	const struct timeval tv = {.tv_sec = 5};
	const char **args = NULL;
	size_t *lens = NULL;
	int nargs = argc > 2 ? argc - 2 : 1;
	char *end = NULL;
	long port;
	redisContext *c = NULL;
	redisReply *r = NULL;
	int rc = 1;

	if (argc < 2)
		return usage();
	port = strtol(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
		fprintf(stderr, "redis: bad port '%s'\n", argv[1]);
		return 2;
	}
	args = xcalloc((size_t)nargs, sizeof(*args));
	lens = xcalloc((size_t)nargs, sizeof(*lens));
	for (int i = 0; i < nargs; i++) {
		args[i] = argc > 2 ? argv[2 + i] : "PING";
		lens[i] = strlen(args[i]);
	}

	c = redisConnectWithTimeout(argv[0], (int)port, tv);
	if (c == NULL || c->err) {
		fprintf(stderr, "redis: connect: %s\n", c ? c->errstr : "out of memory");
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		fprintf(stderr, "redis: set timeout: %s\n", c->errstr);
		goto fail;
	}
	r = redisCommandArgv(c, nargs, args, lens);
	if (r == NULL) {
		fprintf(stderr, "redis: command: %s\n", c->errstr);
		goto fail;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "redis: error reply: %s\n", r->str);
		goto fail;
	}
	redis_print(r);
	rc = 0;
fail:
	if (r != NULL)
		freeReplyObject(r);
	if (c != NULL)
		redisFree(c);
	free(lens);
	free(args);
	return rc;
}

/* ---- S3 ---- */

struct s3 {
	const char *endpoint; /* scheme://host:port, no trailing slash */
	size_t endpoint_len;
	char *sigv4; /* "aws:amz:REGION:s3" */
	const char *access;
	const char *secret;
	CURL *curl;
};

struct s3_reply {
	long status;
	struct buf body;
	char etag[128]; /* ETag header value, quotes included */
	curl_off_t content_length;
};

static size_t s3_write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	/* Returning less than given makes libcurl fail with CURLE_WRITE_ERROR. */
	if (buf_append(b, p, size * n) < 0)
		return 0;
	return size * n;
}

static size_t s3_header_cb(char *p, size_t size, size_t n, void *arg)
{
	struct s3_reply *rep = arg;
	size_t len = size * n;
	static const char name[] = "etag:";

	if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
		const char *v = p + sizeof(name) - 1;
		size_t vlen = len - (sizeof(name) - 1);
		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
			vlen--;
		if (vlen >= sizeof(rep->etag))
			vlen = sizeof(rep->etag) - 1;
		memcpy(rep->etag, v, vlen);
		rep->etag[vlen] = '\0';
	}
	return len;
}

static void hex(char *out, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* out gets the lower-case hex digest of p (2 * EVP_MAX_MD_SIZE + 1 bytes). */
static int digest_hex(const EVP_MD *md, const void *p, size_t n, char *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (EVP_Digest(p, n, d, &dlen, md, NULL) != 1)
		return -1;
	hex(out, d, dlen);
	return 0;
}

/*
 * One request: method is PUT, GET or HEAD; body (PUT only) may be empty.
 * The payload hash header is required by S3 for SigV4 (and by s3rver); we
 * send the real SHA-256 of the body, which is also what libcurl 7.88 hashes
 * into the signature when the body is given as POSTFIELDS.
 */
static int s3_request(struct s3 *s3, const char *method, const char *path, const void *body,
                      size_t body_len, struct s3_reply *rep)
{
	char sha[2 * EVP_MAX_MD_SIZE + 1];
	char *url = NULL, *hdr_sha = NULL;
	struct curl_slist *hdrs = NULL;
	CURLcode cc;
	int rc = -1;

	buf_reset(&rep->body);
	rep->status = 0;
	rep->etag[0] = '\0';
	rep->content_length = -1;
	if (digest_hex(EVP_sha256(), body ? body : "", body_len, sha) < 0) {
		fprintf(stderr, "s3: sha256 failed\n");
		goto fail;
	}
	url = xasprintf("%.*s%s", (int)s3->endpoint_len, s3->endpoint, path);
	hdr_sha = xasprintf("x-amz-content-sha256: %s", sha);
	/*
	 * libcurl 7.88 signs every CURLOPT_HTTPHEADER entry, even a removal
	 * such as "Expect:" that is never sent, which breaks the signature
	 * for a verifying server: only add headers that go on the wire.
	 */
	hdrs = curl_slist_append(hdrs, hdr_sha);
	if (strcmp(method, "PUT") == 0)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	if (hdrs == NULL) {
		fprintf(stderr, "s3: out of memory\n");
		goto fail;
	}

	curl_easy_reset(s3->curl);
	curl_easy_setopt(s3->curl, CURLOPT_URL, url);
	curl_easy_setopt(s3->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s3->curl, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(s3->curl, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(s3->curl, CURLOPT_AWS_SIGV4, s3->sigv4);
	curl_easy_setopt(s3->curl, CURLOPT_USERNAME, s3->access);
	curl_easy_setopt(s3->curl, CURLOPT_PASSWORD, s3->secret);
	curl_easy_setopt(s3->curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(s3->curl, CURLOPT_WRITEFUNCTION, s3_write_cb);
	curl_easy_setopt(s3->curl, CURLOPT_WRITEDATA, &rep->body);
	curl_easy_setopt(s3->curl, CURLOPT_HEADERFUNCTION, s3_header_cb);
	curl_easy_setopt(s3->curl, CURLOPT_HEADERDATA, rep);
	if (strcmp(method, "PUT") == 0) {
		curl_easy_setopt(s3->curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(s3->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		curl_easy_setopt(s3->curl, CURLOPT_CUSTOMREQUEST, "PUT");
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(s3->curl, CURLOPT_NOBODY, 1L);
	} else {
		curl_easy_setopt(s3->curl, CURLOPT_HTTPGET, 1L);
	}

	cc = curl_easy_perform(s3->curl);
	if (cc != CURLE_OK) {
		fprintf(stderr, "s3: %s %s: %s\n", method, path, curl_easy_strerror(cc));
		goto fail;
	}
	curl_easy_getinfo(s3->curl, CURLINFO_RESPONSE_CODE, &rep->status);
	curl_easy_getinfo(s3->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &rep->content_length);
	rc = 0;
fail:
	curl_slist_free_all(hdrs);
	free(hdr_sha);
	free(url);
	return rc;
}

static void s3_report_status(const char *what, const struct s3_reply *rep)
{
	fprintf(stderr, "s3: %s: HTTP %ld: %.*s\n", what, rep->status, (int)buf_len(&rep->body),
	        (const char *)buf_ptr(&rep->body));
}

static bool body_has(const struct buf *b, const char *s)
{
	return memmem(buf_ptr(b), buf_len(b), s, strlen(s)) != NULL;
}

/* Deterministic per seed, covering every byte value. */
static void fill_object(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

static int cmd_s3(int argc, char **argv)
{
	struct s3 s3 = {0};
	struct s3_reply rep = {0};
	char md5[2 * EVP_MAX_MD_SIZE + 1];
	char *bucket_path = NULL, *key = NULL, *obj_path = NULL;
	uint8_t *obj = NULL;
	const char *bucket;
	int rc = 1;

	if (argc != 5)
		return usage();
	s3.endpoint = argv[0];
	s3.endpoint_len = strlen(s3.endpoint);
	while (s3.endpoint_len > 0 && s3.endpoint[s3.endpoint_len - 1] == '/')
		s3.endpoint_len--;
	s3.sigv4 = xasprintf("aws:amz:%s:s3", argv[1]);
	bucket = argv[2];
	s3.access = argv[3];
	s3.secret = argv[4];
	buf_init(&rep.body, S3_BODY_MAX);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "s3: curl_global_init failed\n");
		goto fail;
	}
	s3.curl = curl_easy_init();
	if (s3.curl == NULL) {
		fprintf(stderr, "s3: curl_easy_init failed\n");
		goto fail;
	}

	/* Create the bucket (path-style: PUT /BUCKET). */
	bucket_path = xasprintf("/%s", bucket);
	if (s3_request(&s3, "PUT", bucket_path, NULL, 0, &rep) < 0)
		goto fail;
	if (rep.status == 200) {
		printf("bucket %s created\n", bucket);
	} else if (rep.status == 409 && (body_has(&rep.body, "BucketAlreadyOwnedByYou") ||
	                                 body_has(&rep.body, "BucketAlreadyExists"))) {
		/*
		 * S3 answers BucketAlreadyOwnedByYou outside us-east-1; s3rver
		 * says BucketAlreadyExists for a bucket of its single owner.
		 * Either way the PUT below tells whether we may write to it.
		 */
		printf("bucket %s exists (409)\n", bucket);
	} else {
		s3_report_status("create bucket", &rep);
		goto fail;
	}

	/* PUT a binary object that changes per run. */
	key = xasprintf("selftest/obj-%ld-%lld.bin", (long)getpid(), (long long)time(NULL));
	obj_path = xasprintf("/%s/%s", bucket, key);
	obj = xmalloc(S3_OBJECT_LEN);
	fill_object(obj, S3_OBJECT_LEN, ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL));
	if (digest_hex(EVP_md5(), obj, S3_OBJECT_LEN, md5) < 0) {
		fprintf(stderr, "s3: md5 failed\n");
		goto fail;
	}
	if (s3_request(&s3, "PUT", obj_path, obj, S3_OBJECT_LEN, &rep) < 0)
		goto fail;
	if (rep.status != 200) {
		s3_report_status("put object", &rep);
		goto fail;
	}
	printf("put %s %u bytes md5 %s etag %s\n", key, S3_OBJECT_LEN, md5,
	       rep.etag[0] ? rep.etag : "-");

	/* GET it back: every byte must match. */
	if (s3_request(&s3, "GET", obj_path, NULL, 0, &rep) < 0)
		goto fail;
	if (rep.status != 200) {
		s3_report_status("get object", &rep);
		goto fail;
	}
	if (buf_len(&rep.body) != S3_OBJECT_LEN ||
	    memcmp(buf_ptr(&rep.body), obj, S3_OBJECT_LEN) != 0) {
		fprintf(stderr, "s3: get object: body differs (%zu bytes, expected %u)\n",
		        buf_len(&rep.body), S3_OBJECT_LEN);
		goto fail;
	}
	printf("get %zu bytes equal\n", buf_len(&rep.body));

	/* HEAD: no body, Content-Length of the object. */
	if (s3_request(&s3, "HEAD", obj_path, NULL, 0, &rep) < 0)
		goto fail;
	if (rep.status != 200) {
		s3_report_status("head object", &rep);
		goto fail;
	}
	if (rep.content_length != (curl_off_t)S3_OBJECT_LEN) {
		fprintf(stderr,
		        "s3: head object: Content-Length %" CURL_FORMAT_CURL_OFF_T
		        ", expected %u\n",
		        rep.content_length, S3_OBJECT_LEN);
		goto fail;
	}
	printf("head content-length %" CURL_FORMAT_CURL_OFF_T "\n", rep.content_length);
	rc = 0;
fail:
	free(obj);
	free(obj_path);
	free(key);
	free(bucket_path);
	buf_free(&rep.body);
	if (s3.curl != NULL)
		curl_easy_cleanup(s3.curl);
	curl_global_cleanup();
	free(s3.sigv4);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "pg") == 0)
		return cmd_pg(argc - 2, argv + 2);
	if (strcmp(argv[1], "redis") == 0)
		return cmd_redis(argc - 2, argv + 2);
	if (strcmp(argv[1], "s3") == 0)
		return cmd_s3(argc - 2, argv + 2);
	return usage();
}
