/*
 * mailbox/store/blob_s3.c -- the S3 blob backend: libcurl multi-socket on
 * the libev loop, signed with our own SigV4 (mailbox/store/sigv4.h).
 *
 * libcurl's multi-socket API tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> one ev_io per socket) and when to call it
 * back (CURLMOPT_TIMERFUNCTION -> one ev_timer); we report readiness with
 * curl_multi_socket_action() and collect finished transfers with
 * curl_multi_info_read().  Nothing here blocks the loop, except reading
 * the local spool file during an upload, which is a page-cache read of a
 * file we just wrote.
 *
 * We sign requests ourselves rather than with CURLOPT_AWS_SIGV4: libcurl
 * 7.88 signs every CURLOPT_HTTPHEADER entry (including removals such as
 * "Expect:") and does not add x-amz-content-sha256, which S3 requires.
 * Our signer is a pure function, proven against botocore in the tests;
 * here we send exactly the encoded path, query and headers it signed.
 * Because blob keys ARE the SHA-256 of the content, a PUT's
 * x-amz-content-sha256 is the key itself: the server checks the payload
 * against it (AWS and Garage do), which guards the content end to end.
 *
 * Objects live at <prefix><key>, flat (S3 has no directories to fill up).
 * A put counts only once it is confirmed (DESIGN.md "Nothing accepted is
 * lost"): by default a HEAD must show the stored size; with verify: etag
 * the PUT's own answer must carry an ETag equal to the MD5 of the bytes we
 * sent (computed while curl reads them), which proves the server holds
 * exactly those bytes without a second request; an ETag that is not a
 * plain MD5 (SSE-KMS, multipart) falls back to the HEAD.  The multi handle
 * keeps up to S3_MAX_CONNS idle connections, so bursts reuse them instead
 * of reconnecting.  5xx/429 answers, timeouts and connection
 * errors are retried up to cfg retries times with 200 ms doubling backoff.
 */
#include "mailbox/store/blob_private.h"
#include "mailbox/store/sigv4.h"

#include "shared/buf.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_BACKOFF_MS   200
#define S3_ERRBODY_MAX  8192 /* bytes of an error answer we keep */
#define S3_MAX_CONNS    64   /* idle connections the multi handle keeps */

struct s3_sock {
	ev_io io;
	curl_socket_t fd;
	struct s3_store *s3;
	struct s3_sock *prev, *next;
};

struct s3_store {
	struct blob_store *bs;
	const struct stores_s3_config *cfg;
	CURLM *multi;
	ev_timer timer;
	struct s3_sock *socks;
	bool https;
	char host[256]; /* endpoint host, IPv6 in brackets */
	uint16_t port;
	char authority[300]; /* host[:port], default port left out (as curl sends it) */
	char scheme[8];
};

enum s3_phase {
	S3_MAIN,   /* the operation itself */
	S3_VERIFY, /* put: the HEAD after the PUT */
};

struct s3_job {
	struct blob_req *r;
	struct s3_store *s3;
	CURL *easy;
	struct curl_slist *hdrs;
	enum s3_phase phase;
	unsigned attempt;
	ev_timer retry;
	int fd; /* put: the spool file */
	uint64_t sent;
	EVP_MD_CTX *md5; /* put with verify: etag: MD5 of what curl read */
	char etag[40];   /* the answer's ETag (unquoted), "" if none or not 32 hex */
	struct buf body;
	bool too_big;
	char errbuf[CURL_ERROR_SIZE];
};

static bool curl_ready;

/* --- curl <-> libev ----------------------------------------------------------- */

static void check_done(struct s3_store *s3);

static void sock_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct s3_sock *ss = container_of(w, struct s3_sock, io);
	struct s3_store *s3 = ss->s3;
	struct blob_store *bs = s3->bs;
	int action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
	             ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;

	(void)loop;
	blob_enter(bs);
	/* ss may be freed inside (CURL_POLL_REMOVE): pass the fd by value */
	curl_multi_socket_action(s3->multi, ss->fd, action, &running);
	check_done(s3);
	blob_leave(bs);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct s3_store *s3 = userp;
	struct s3_sock *ss = socketp;
	int events;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (ss != NULL) {
			ev_io_stop(s3->bs->loop, &ss->io);
			if (ss->prev != NULL)
				ss->prev->next = ss->next;
			else
				s3->socks = ss->next;
			if (ss->next != NULL)
				ss->next->prev = ss->prev;
			free(ss);
		}
		return 0;
	}
	if (ss == NULL) {
		ss = xcalloc(1, sizeof(*ss));
		ss->s3 = s3;
		ss->fd = s;
		ev_init(&ss->io, sock_io_cb);
		ss->next = s3->socks;
		if (s3->socks != NULL)
			s3->socks->prev = ss;
		s3->socks = ss;
		curl_multi_assign(s3->multi, s, ss);
	} else {
		ev_io_stop(s3->bs->loop, &ss->io);
	}
	events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (events != 0) {
		ev_io_set(&ss->io, s, events);
		ev_io_start(s3->bs->loop, &ss->io);
	}
	return 0;
}

static void timer_ev_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct s3_store *s3 = container_of(w, struct s3_store, timer);
	struct blob_store *bs = s3->bs;
	int running;

	(void)loop;
	(void)revents;
	blob_enter(bs);
	curl_multi_socket_action(s3->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(s3);
	blob_leave(bs);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct s3_store *s3 = userp;

	(void)m;
	ev_timer_stop(s3->bs->loop, &s3->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&s3->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(s3->bs->loop, &s3->timer);
	}
	return 0;
}

/* --- requests ------------------------------------------------------------------- */

static size_t write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct s3_job *j = arg;
	size_t n = size * nmemb;

	if (buf_append(&j->body, p, n) < 0) {
		j->too_big = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	return n;
}

static size_t read_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct s3_job *j = arg;
	size_t want = size * nmemb;
	ssize_t n;

	if (j->sent >= j->r->size)
		return 0;
	if (want > j->r->size - j->sent)
		want = (size_t)(j->r->size - j->sent);
	if (j->r->src != NULL) {
		memcpy(p, j->r->src + j->sent, want);
		n = (ssize_t)want;
	} else {
		do
			n = read(j->fd, p, want);
		while (n < 0 && errno == EINTR);
	}
	if (n < 0)
		return CURL_READFUNC_ABORT;
	j->sent += (uint64_t)n;
	if (j->md5 != NULL && n > 0)
		ASSERT(EVP_DigestUpdate(j->md5, p, (size_t)n) == 1);
	return (size_t)n;
}

/* Keep the ETag of the answer when it is a plain MD5 ("<32 hex>"). */
static size_t header_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct s3_job *j = arg;
	size_t n = size * nmemb, i = 5, k = 0;

	if (n < 5 || strncasecmp(p, "etag:", 5) != 0)
		return n;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < n && p[i] == '"')
		i++;
	while (i < n && k < 32 && isxdigit((unsigned char)p[i]))
		j->etag[k++] = (char)tolower((unsigned char)p[i++]);
	j->etag[k] = '\0';
	/* 32 hex digits, then the closing quote or the end of the line */
	if (k != 32 || (i < n && p[i] != '"' && p[i] != '\r' && p[i] != '\n'))
		j->etag[0] = '\0';
	return n;
}

static void job_free(struct s3_job *j)
{
	struct s3_store *s3 = j->s3;

	if (j->easy != NULL) {
		curl_multi_remove_handle(s3->multi, j->easy);
		curl_easy_cleanup(j->easy);
	}
	curl_slist_free_all(j->hdrs);
	ev_timer_stop(s3->bs->loop, &j->retry);
	if (j->fd >= 0)
		close(j->fd);
	EVP_MD_CTX_free(j->md5);
	buf_free(&j->body);
	free(j);
}

static const char *op_name(const struct s3_job *j)
{
	if (j->phase == S3_VERIFY)
		return "HEAD (verify)";
	switch (j->r->op) {
	case BLOB_OP_PUT:
		return "PUT";
	case BLOB_OP_GET:
		return "GET";
	case BLOB_OP_HEAD:
	case BLOB_OP_CHECK:
		return "HEAD";
	case BLOB_OP_DELETE:
		return "DELETE";
	}
	return "?";
}

/* Build and add the easy handle for j's current phase and attempt. */
static int job_launch(struct s3_job *j, char *why, size_t whysz)
{
	struct s3_store *s3 = j->s3;
	const struct stores_s3_config *c = s3->cfg;
	struct blob_req *r = j->r;
	struct sigv4_pair hdr[1];
	size_t nhdr = 0;
	struct sigv4_request sr;
	struct sigv4_result res;
	const char *method, *err = NULL;
	char *path, *url, *h, range[64], host[400];
	int rc = -1;

	memset(&res, 0, sizeof(res));
	buf_reset(&j->body);
	j->too_big = false;
	j->sent = 0;
	j->etag[0] = '\0';
	j->errbuf[0] = '\0';
	if (j->phase == S3_MAIN && r->op == BLOB_OP_CHECK)
		path = c->path_style ? xasprintf("/%s", c->bucket) : xstrdup("/");
	else if (c->path_style)
		path = xasprintf("/%s/%s%s", c->bucket, c->prefix, r->key);
	else
		path = xasprintf("/%s%s", c->prefix, r->key);
	if (c->path_style)
		snprintf(host, sizeof(host), "%s", s3->authority);
	else
		snprintf(host, sizeof(host), "%s.%s", c->bucket, s3->authority);

	method = "HEAD";
	if (j->phase == S3_MAIN) {
		if (r->op == BLOB_OP_PUT)
			method = "PUT";
		else if (r->op == BLOB_OP_GET)
			method = "GET";
		else if (r->op == BLOB_OP_DELETE)
			method = "DELETE";
	}
	if (j->phase == S3_MAIN && r->op == BLOB_OP_GET && (r->off > 0 || r->len > 0)) {
		if (r->len > 0)
			snprintf(range, sizeof(range), "bytes=%llu-%llu",
			         (unsigned long long)r->off,
			         (unsigned long long)(r->off + r->len - 1));
		else
			snprintf(range, sizeof(range), "bytes=%llu-", (unsigned long long)r->off);
		hdr[nhdr].name = "range";
		hdr[nhdr++].value = range;
	}
	memset(&sr, 0, sizeof(sr));
	sr.method = method;
	sr.path = path;
	sr.headers = hdr;
	sr.nheaders = nhdr;
	sr.host = host;
	/* a PUT's payload hash is its key (content addressing) */
	sr.payload_sha256 =
	        (j->phase == S3_MAIN && r->op == BLOB_OP_PUT) ? r->key : S3_EMPTY_SHA256;
	sr.when = time(NULL);
	sr.region = c->region;
	sr.service = "s3";
	sr.access_key = c->access_key;
	sr.secret_key = c->secret_key;
	if (sigv4_sign(&sr, &res, &err) < 0) {
		snprintf(why, whysz, "%s", err);
		free(path);
		return -1;
	}
	url = xasprintf("%s://%s%s%s%s", s3->scheme, host, res.encoded_path,
	                res.encoded_query[0] != '\0' ? "?" : "", res.encoded_query);

	curl_slist_free_all(j->hdrs);
	j->hdrs = NULL;
	h = xasprintf("Host: %s", host);
	j->hdrs = curl_slist_append(j->hdrs, h);
	free(h);
	h = xasprintf("x-amz-date: %s", res.amz_date);
	j->hdrs = curl_slist_append(j->hdrs, h);
	free(h);
	h = xasprintf("x-amz-content-sha256: %s", res.content_sha256);
	j->hdrs = curl_slist_append(j->hdrs, h);
	free(h);
	h = xasprintf("Authorization: %s", res.authorization);
	j->hdrs = curl_slist_append(j->hdrs, h);
	free(h);
	if (nhdr > 0) {
		h = xasprintf("Range: %s", range);
		j->hdrs = curl_slist_append(j->hdrs, h);
		free(h);
	}
	/* no 100-continue round trip; unsigned, so harmless to the signature */
	j->hdrs = curl_slist_append(j->hdrs, "Expect:");
	/* curl would add its own for a PUT; we send none */
	j->hdrs = curl_slist_append(j->hdrs, "Content-Type:");
	j->hdrs = curl_slist_append(j->hdrs, "Accept:");

	if (j->easy == NULL)
		j->easy = curl_easy_init();
	else
		curl_easy_reset(j->easy);
	ASSERT(j->easy != NULL);
	curl_easy_setopt(j->easy, CURLOPT_URL, url);
	curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
	curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
	curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
	curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(c->timeout_ms < 10000 ? c->timeout_ms : 10000));
	curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(j->easy, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "DELETE") == 0) {
		curl_easy_setopt(j->easy, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else if (strcmp(method, "PUT") == 0) {
		if (j->fd >= 0)
			close(j->fd);
		j->fd = r->src != NULL ? -1 : open(r->path, O_RDONLY | O_CLOEXEC);
		if (r->src == NULL && j->fd < 0) {
			snprintf(why, whysz, "open %s: %s", r->path, strerror(errno));
			goto fail;
		}
		curl_easy_setopt(j->easy, CURLOPT_UPLOAD, 1L);
		if (c->verify == STORES_S3_VERIFY_ETAG) {
			/* every attempt digests from the first byte */
			if (j->md5 == NULL)
				j->md5 = EVP_MD_CTX_new();
			ASSERT(j->md5 != NULL && EVP_DigestInit_ex(j->md5, EVP_md5(), NULL) == 1);
			curl_easy_setopt(j->easy, CURLOPT_HEADERFUNCTION, header_cb);
			curl_easy_setopt(j->easy, CURLOPT_HEADERDATA, j);
		}
		curl_easy_setopt(j->easy, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(j->easy, CURLOPT_READDATA, j);
		curl_easy_setopt(j->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->size);
	}
	/* the body we keep: the requested range for a GET, else an error text */
	buf_free(&j->body);
	buf_init(&j->body, (j->phase == S3_MAIN && r->op == BLOB_OP_GET)
	                           ? r->max_len + S3_ERRBODY_MAX
	                           : S3_ERRBODY_MAX);
	if (curl_multi_add_handle(s3->multi, j->easy) != CURLM_OK) {
		snprintf(why, whysz, "curl_multi_add_handle failed");
		goto fail;
	}
	rc = 0;
fail:
	free(url);
	free(path);
	sigv4_result_free(&res);
	return rc;
}

/* "<Code>X</Code>" and "<Message>Y</Message>" of an S3 error answer. */
static void xml_field(const struct buf *b, const char *tag, char *out, size_t outsz)
{
	char open[32], close_[32];
	const char *p = (const char *)buf_ptr(b), *end = p + buf_len(b), *s, *e;
	size_t n;

	out[0] = '\0';
	if (buf_len(b) == 0)
		return;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close_, sizeof(close_), "</%s>", tag);
	s = memmem(p, (size_t)(end - p), open, strlen(open));
	if (s == NULL)
		return;
	s += strlen(open);
	e = memmem(s, (size_t)(end - s), close_, strlen(close_));
	if (e == NULL)
		return;
	n = (size_t)(e - s);
	if (n >= outsz)
		n = outsz - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[n] = '\0';
}

static bool curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* A curl failure in words: "could not resolve host 'garage'". */
static void curl_reason(const struct s3_job *j, CURLcode rc, char *out, size_t outsz)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(out, outsz, "could not resolve host '%s'", j->s3->host);
		return;
	case CURLE_COULDNT_CONNECT: {
		long e = 0;
		curl_easy_getinfo(j->easy, CURLINFO_OS_ERRNO, &e);
		snprintf(out, outsz, "could not connect to %s: %s", j->s3->authority,
		         e != 0 ? strerror((int)e) : curl_easy_strerror(rc));
		return;
	}
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(out, outsz, "timeout after %llu ms",
		         (unsigned long long)j->s3->cfg->timeout_ms);
		return;
	case CURLE_WRITE_ERROR:
		if (j->too_big) {
			snprintf(out, outsz, "answer larger than the limit of %zu bytes",
			         j->r->max_len);
			return;
		}
		break;
	default:
		break;
	}
	snprintf(out, outsz, "%s", j->errbuf[0] != '\0' ? j->errbuf : curl_easy_strerror(rc));
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* End j: fill r's result and report it. */
static void job_end(struct s3_job *j, enum blob_status st, const char *msg)
{
	struct blob_req *r = j->r;

	if (st == BLOB_OK)
		r->st = BLOB_OK;
	else if (r->op == BLOB_OP_CHECK)
		blob_req_fail(r, st, "%s", msg);
	else
		blob_req_fail(r, st, "%s %s: %s", op_name(j), r->key, msg);
	r->impl = NULL;
	job_free(j);
	blob_req_finish(r);
}

/* Retry j if it has attempts left; true if a retry was scheduled. */
static bool job_retry(struct s3_job *j, const char *msg)
{
	unsigned max = j->r->op == BLOB_OP_CHECK ? 0 : (unsigned)j->s3->cfg->retries;
	double delay;

	if (j->attempt >= max)
		return false;
	delay = (double)(S3_BACKOFF_MS << (j->attempt < 10 ? j->attempt : 10)) / 1000.0;
	j->attempt++;
	j->s3->bs->st.retries++;
	log_warn("msg=\"blob store retry\" store=s3 endpoint=%s op=%s key=%s attempt=%u "
	         "reason=\"%s\"",
	         j->s3->bs->endpoint, op_name(j), j->r->key, j->attempt, msg);
	curl_multi_remove_handle(j->s3->multi, j->easy);
	ev_timer_set(&j->retry, delay, 0.);
	ev_timer_start(j->s3->bs->loop, &j->retry);
	return true;
}

static void job_done(struct s3_job *j, CURLcode rc)
{
	struct blob_req *r = j->r;
	long status = 0;
	char msg[600], code[64], text[300];

	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK) {
		curl_reason(j, rc, msg, sizeof(msg));
		if (!(curl_retryable(rc) && job_retry(j, msg)))
			job_end(j, BLOB_ERROR, msg);
		return;
	}
	if (status >= 500 || status == 429) {
		xml_field(&j->body, "Code", code, sizeof(code));
		snprintf(msg, sizeof(msg), "HTTP %ld%s%s", status, code[0] ? " " : "", code);
		if (!job_retry(j, msg))
			job_end(j, BLOB_ERROR, msg);
		return;
	}
	if (status == 404) {
		if (r->op == BLOB_OP_CHECK)
			job_end(j, BLOB_ERROR, "bucket does not exist (HTTP 404)");
		else if (j->phase == S3_VERIFY)
			job_end(j, BLOB_ERROR, "object missing right after PUT");
		else
			job_end(j, BLOB_NOT_FOUND, "not found");
		return;
	}
	if (status == 416 && r->op == BLOB_OP_GET) {
		/* RFC 9110 15.5.17: the range starts at or after the end */
		r->data = NULL;
		r->dlen = 0;
		job_end(j, BLOB_OK, NULL);
		return;
	}
	if (status < 200 || status > 299) {
		xml_field(&j->body, "Code", code, sizeof(code));
		xml_field(&j->body, "Message", text, sizeof(text));
		if (status == 403 && code[0] == '\0')
			snprintf(code, sizeof(code), "AccessDenied");
		snprintf(msg, sizeof(msg), "HTTP %ld%s%s%s%s", status, code[0] ? " " : "", code,
		         text[0] ? ": " : "", text);
		job_end(j, BLOB_ERROR, msg);
		return;
	}
	/* success */
	if (j->phase == S3_VERIFY || r->op == BLOB_OP_HEAD) {
		curl_off_t len = -1;
		curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
		if (len < 0) {
			job_end(j, BLOB_ERROR, "no Content-Length in the HEAD answer");
			return;
		}
		if (j->phase == S3_VERIFY && (uint64_t)len != r->size) {
			snprintf(msg, sizeof(msg), "stored size %lld differs from %llu",
			         (long long)len, (unsigned long long)r->size);
			/* the stored object is wrong: write it again, not just re-read */
			j->phase = S3_MAIN;
			if (!job_retry(j, msg))
				job_end(j, BLOB_ERROR, msg);
			return;
		}
		r->rsize = (uint64_t)len;
		job_end(j, BLOB_OK, NULL);
		return;
	}
	if (r->op == BLOB_OP_PUT && j->md5 != NULL && j->etag[0] != '\0') {
		/* verify: etag: the server's MD5 of what it stored is ours */
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;
		char hex[2 * EVP_MAX_MD_SIZE + 1];

		ASSERT(EVP_DigestFinal_ex(j->md5, md, &mdlen) == 1 && mdlen == 16);
		for (unsigned i = 0; i < mdlen; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		if (j->sent == r->size && strcmp(hex, j->etag) == 0) {
			job_end(j, BLOB_OK, NULL);
			return;
		}
		snprintf(msg, sizeof(msg), "ETag %s is not the MD5 %s of the %llu bytes sent",
		         j->etag, hex, (unsigned long long)j->sent);
		/* the stored object is wrong: write it again */
		if (!job_retry(j, msg))
			job_end(j, BLOB_ERROR, msg);
		return;
	}
	if (r->op == BLOB_OP_PUT) {
		/* verify what was stored before anyone relies on it (verify: head,
		 * or an ETag that is not an MD5) */
		char why[300];
		curl_multi_remove_handle(j->s3->multi, j->easy);
		/* attempts count for the whole put, PUT and HEAD together */
		j->phase = S3_VERIFY;
		if (job_launch(j, why, sizeof(why)) < 0)
			job_end(j, BLOB_ERROR, why);
		return;
	}
	if (r->op == BLOB_OP_GET) {
		if (buf_len(&j->body) > r->max_len) {
			snprintf(msg, sizeof(msg), "answer larger than the limit of %zu bytes",
			         r->max_len);
			job_end(j, BLOB_ERROR, msg);
			return;
		}
		r->dlen = buf_len(&j->body);
		r->data = xmalloc(r->dlen > 0 ? r->dlen : 1);
		if (r->dlen > 0)
			memcpy(r->data, buf_ptr(&j->body), r->dlen);
	}
	job_end(j, BLOB_OK, NULL);
}

static void check_done(struct s3_store *s3)
{
	CURLMsg *m;
	int left;

	while (!s3->bs->dying && (m = curl_multi_info_read(s3->multi, &left)) != NULL) {
		struct s3_job *j = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		/* m is invalid once the handle is removed: read the result first */
		job_done(j, m->data.result);
	}
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct s3_job *j = container_of(w, struct s3_job, retry);
	struct blob_store *bs = j->s3->bs;
	char why[300];

	(void)loop;
	(void)revents;
	blob_enter(bs);
	if (job_launch(j, why, sizeof(why)) < 0)
		job_end(j, BLOB_ERROR, why);
	blob_leave(bs);
}

static void s3_start(struct blob_store *bs, struct blob_req *r)
{
	struct s3_store *s3 = bs->impl;
	struct s3_job *j = xcalloc(1, sizeof(*j));
	char why[300];

	j->r = r;
	j->s3 = s3;
	j->fd = -1;
	j->phase = S3_MAIN;
	buf_init(&j->body, S3_ERRBODY_MAX);
	ev_timer_init(&j->retry, retry_cb, 0., 0.);
	r->impl = j;
	if (job_launch(j, why, sizeof(why)) < 0)
		job_end(j, BLOB_ERROR, why);
}

static void s3_abandon(struct blob_store *bs, struct blob_req *r)
{
	struct s3_job *j = r->impl;

	(void)bs;
	if (j != NULL) {
		job_free(j);
		r->impl = NULL;
	}
}

static void s3_free(struct blob_store *bs)
{
	struct s3_store *s3 = bs->impl;

	ev_timer_stop(bs->loop, &s3->timer);
	curl_multi_cleanup(s3->multi);
	while (s3->socks != NULL) {
		struct s3_sock *ss = s3->socks;
		s3->socks = ss->next;
		ev_io_stop(bs->loop, &ss->io);
		free(ss);
	}
	free(s3);
	bs->impl = NULL;
}

const struct blob_ops blob_s3_ops = {
        .kind = "s3",
        .start = s3_start,
        .abandon = s3_abandon,
        .free = s3_free,
};

int blob_s3_init(struct blob_store *bs, const char **errstr_r)
{
	const struct stores_s3_config *c = &bs->cfg->s3;
	struct s3_store *s3;

	if (c->endpoint == NULL || c->bucket == NULL || c->access_key == NULL ||
	    c->secret_key == NULL || c->region == NULL) {
		*errstr_r = "blob store s3: endpoint, bucket, region and keys are required";
		return -1;
	}
	s3 = xcalloc(1, sizeof(*s3));
	if (stores_s3_endpoint_parse(c->endpoint, &s3->https, s3->host, sizeof(s3->host), &s3->port,
	                             errstr_r) < 0) {
		free(s3);
		return -1;
	}
	if (!curl_ready) {
		/* not thread-safe in 7.88: done once, at start-up, on the main thread */
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			free(s3);
			*errstr_r = "blob store s3: curl_global_init failed";
			return -1;
		}
		curl_ready = true;
	}
	s3->bs = bs;
	s3->cfg = c;
	snprintf(s3->scheme, sizeof(s3->scheme), "%s", s3->https ? "https" : "http");
	if (s3->port == (s3->https ? 443 : 80))
		snprintf(s3->authority, sizeof(s3->authority), "%s", s3->host);
	else
		snprintf(s3->authority, sizeof(s3->authority), "%s:%u", s3->host, s3->port);
	snprintf(bs->endpoint, sizeof(bs->endpoint), "%s", c->endpoint);
	{
		size_t n = strlen(bs->endpoint);
		if (n > 0 && bs->endpoint[n - 1] == '/')
			bs->endpoint[n - 1] = '\0';
	}
	s3->multi = curl_multi_init();
	ASSERT(s3->multi != NULL);
	curl_multi_setopt(s3->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(s3->multi, CURLMOPT_SOCKETDATA, s3);
	curl_multi_setopt(s3->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(s3->multi, CURLMOPT_TIMERDATA, s3);
	curl_multi_setopt(s3->multi, CURLMOPT_MAXCONNECTS, (long)S3_MAX_CONNS);
	ev_timer_init(&s3->timer, timer_ev_cb, 0., 0.);
	bs->impl = s3;
	return 0;
}
