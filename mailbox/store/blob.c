/*
 * mailbox/store/blob.c -- the blob store front: requests, callbacks,
 * statistics and the helpers shared by both backends (see blob.h).
 *
 * A request is started from a zero-delay timer, never inside the call
 * that made it, so a callback can never run before blob_put() returned
 * its handle.  Cancelling only detaches the callback: the backend still
 * completes the operation (a blob written anyway is harmless in a
 * content-addressed store) and frees the request.
 */
#include "mailbox/store/blob_private.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- keys ------------------------------------------------------------------ */

bool blob_key_valid(const char *key)
{
	size_t i;

	if (key == NULL)
		return false;
	for (i = 0; key[i] != '\0'; i++)
		if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
			return false;
	return i == BLOB_KEY_LEN;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void blob_key_hex(const unsigned char md[32], char key[BLOB_KEY_LEN + 1])
{
	hex(md, 32, key);
}

void blob_key_mem(const void *p, size_t n, char key[BLOB_KEY_LEN + 1])
{
	unsigned char md[32];
	unsigned int len = sizeof(md);

	ASSERT(EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) == 1);
	hex(md, sizeof(md), key);
}

int blob_key_file(const char *path, char key[BLOB_KEY_LEN + 1], uint64_t *size_r)
{
	EVP_MD_CTX *ctx = NULL;
	unsigned char md[32], buf[65536];
	unsigned int len = sizeof(md);
	uint64_t total = 0;
	int fd, rc = -1, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ctx = EVP_MD_CTX_new();
	ASSERT(ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		ASSERT(EVP_DigestUpdate(ctx, buf, (size_t)n) == 1);
		total += (uint64_t)n;
	}
	ASSERT(EVP_DigestFinal_ex(ctx, md, &len) == 1);
	hex(md, sizeof(md), key);
	if (size_r != NULL)
		*size_r = total;
	rc = 0;
fail:
	saved = errno;
	EVP_MD_CTX_free(ctx);
	close(fd);
	errno = saved;
	return rc;
}

/* --- the store --------------------------------------------------------------- */

static void starter_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct blob_store *bs = container_of(w, struct blob_store, starter);

	(void)loop;
	(void)revents;
	blob_enter(bs);
	while (bs->pend_head != NULL && !bs->dying) {
		struct blob_req *r = bs->pend_head;
		bs->pend_head = r->pnext;
		if (bs->pend_head == NULL)
			bs->pend_tail = NULL;
		r->pnext = NULL;
		r->started = true;
		if (r->err != NULL)
			blob_req_finish(r);
		else
			bs->ops->start(bs, r);
	}
	blob_leave(bs);
}

struct blob_store *blob_store_new(struct ev_loop *loop, const struct stores_blob_config *cfg,
                                  const char **errstr_r)
{
	struct blob_store *bs = xcalloc(1, sizeof(*bs));
	int rc;

	bs->loop = loop;
	bs->cfg = cfg;
	bs->healthy = true;
	ev_timer_init(&bs->starter, starter_cb, 0., 0.);
	if (cfg->has_s3) {
		bs->ops = &blob_s3_ops;
		rc = blob_s3_init(bs, errstr_r);
	} else if (cfg->has_fs) {
		bs->ops = &blob_fs_ops;
		rc = blob_fs_init(bs, errstr_r);
	} else {
		*errstr_r = "blob store: neither fs nor s3 is configured";
		rc = -1;
	}
	if (rc < 0) {
		free(bs);
		return NULL;
	}
	return bs;
}

static void req_free(struct blob_req *r)
{
	free(r->path);
	free(r->src);
	free(r->err);
	free(r->data);
	free(r);
}

static void store_really_free(struct blob_store *bs)
{
	ev_timer_stop(bs->loop, &bs->starter);
	/* the backend first (it may still reference requests), then them */
	for (struct blob_req *r = bs->reqs; r != NULL; r = r->next)
		if (r->started)
			bs->ops->abandon(bs, r);
	bs->ops->free(bs);
	while (bs->reqs != NULL) {
		struct blob_req *r = bs->reqs;
		bs->reqs = r->next;
		req_free(r);
	}
	free(bs);
}

void blob_store_free(struct blob_store **bsp)
{
	struct blob_store *bs;

	if (bsp == NULL || *bsp == NULL)
		return;
	bs = *bsp;
	*bsp = NULL;
	bs->dying = true;
	if (bs->depth > 0)
		return; /* blob_leave finishes it */
	store_really_free(bs);
}

void blob_enter(struct blob_store *bs)
{
	bs->depth++;
}

bool blob_leave(struct blob_store *bs)
{
	ASSERT(bs->depth > 0);
	if (--bs->depth == 0 && bs->dying) {
		store_really_free(bs);
		return true;
	}
	return false;
}

const char *blob_store_kind(const struct blob_store *bs)
{
	return bs->ops->kind;
}

const char *blob_store_endpoint(const struct blob_store *bs)
{
	return bs->endpoint;
}

bool blob_store_healthy(const struct blob_store *bs)
{
	return bs->healthy;
}

void blob_store_stats(const struct blob_store *bs, struct blob_stats *out)
{
	*out = bs->st;
	out->in_flight = 0;
	for (const struct blob_req *r = bs->reqs; r != NULL; r = r->next)
		out->in_flight++;
}

static struct blob_req *req_new(struct blob_store *bs, enum blob_op op, const char *key, void *arg)
{
	struct blob_req *r = xcalloc(1, sizeof(*r));

	r->bs = bs;
	r->op = op;
	r->arg = arg;
	r->start = ev_now(bs->loop);
	if (key != NULL)
		snprintf(r->key, sizeof(r->key), "%.*s", BLOB_KEY_LEN, key);
	r->next = bs->reqs;
	if (bs->reqs != NULL)
		bs->reqs->prev = r;
	bs->reqs = r;
	if (op != BLOB_OP_CHECK && !blob_key_valid(key)) {
		/* fail from the loop like any other error (the starter sees err) */
		blob_req_fail(r, BLOB_ERROR, "invalid blob key '%.80s'", key != NULL ? key : "");
	}
	if (bs->pend_tail != NULL)
		bs->pend_tail->pnext = r;
	else
		bs->pend_head = r;
	bs->pend_tail = r;
	ev_timer_start(bs->loop, &bs->starter);
	return r;
}

void blob_req_fail(struct blob_req *r, enum blob_status st, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	free(r->err);
	r->err = xasprintf("blob store %s %s %s: %s", r->bs->ops->kind,
	                   r->bs->cfg->has_s3 ? "endpoint" : "path", r->bs->endpoint, msg);
	r->st = st;
}

void blob_req_finish(struct blob_req *r)
{
	struct blob_store *bs = r->bs;
	double us = (ev_now(bs->loop) - r->start) * 1e6;

	/* unlink */
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		bs->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	/* stats and health */
	switch (r->op) {
	case BLOB_OP_PUT:
		bs->st.puts++;
		break;
	case BLOB_OP_GET:
		bs->st.gets++;
		break;
	case BLOB_OP_HEAD:
		bs->st.heads++;
		break;
	case BLOB_OP_DELETE:
		bs->st.deletes++;
		break;
	case BLOB_OP_CHECK:
		break;
	}
	bs->st.latency_us_sum += us > 0 ? (uint64_t)us : 0;
	if (r->st == BLOB_ERROR) {
		bs->st.errors++;
		if (bs->healthy)
			log_warn("msg=\"blob store failing\" store=%s endpoint=%s error=\"%s\"",
			         bs->ops->kind, bs->endpoint, r->err != NULL ? r->err : "?");
		bs->healthy = false;
	} else {
		if (!bs->healthy)
			log_info("msg=\"blob store recovered\" store=%s endpoint=%s", bs->ops->kind,
			         bs->endpoint);
		bs->healthy = true;
	}
	if (!r->cancelled && !bs->dying) {
		const char *err = r->st == BLOB_OK          ? NULL
		                  : r->err != NULL          ? r->err
		                  : r->st == BLOB_NOT_FOUND ? "not found"
		                                            : "error";
		blob_enter(bs);
		switch (r->op) {
		case BLOB_OP_PUT:
		case BLOB_OP_DELETE:
		case BLOB_OP_CHECK:
			r->cb.done(r->arg, r->st, err);
			break;
		case BLOB_OP_HEAD:
			r->cb.head(r->arg, r->st, r->rsize, err);
			break;
		case BLOB_OP_GET:
			r->cb.get(r->arg, r->st, r->data, r->dlen, err);
			break;
		}
		req_free(r);
		blob_leave(bs);
		return;
	}
	req_free(r);
}

struct blob_req *blob_put(struct blob_store *bs, const char *key, const char *path, uint64_t size,
                          blob_done_cb *cb, void *arg)
{
	struct blob_req *r = req_new(bs, BLOB_OP_PUT, key, arg);

	r->cb.done = cb;
	r->path = xstrdup(path);
	r->size = size;
	return r;
}

struct blob_req *blob_put_mem(struct blob_store *bs, const char *key, uint8_t *data, uint64_t size,
                              blob_done_cb *cb, void *arg)
{
	struct blob_req *r = req_new(bs, BLOB_OP_PUT, key, arg);

	r->cb.done = cb;
	r->src = data;
	r->size = size;
	return r;
}

struct blob_req *blob_get(struct blob_store *bs, const char *key, uint64_t off, uint64_t len,
                          size_t max_len, blob_get_cb *cb, void *arg)
{
	struct blob_req *r = req_new(bs, BLOB_OP_GET, key, arg);

	r->cb.get = cb;
	r->off = off;
	r->len = len;
	r->max_len = max_len;
	return r;
}

struct blob_req *blob_head(struct blob_store *bs, const char *key, blob_head_cb *cb, void *arg)
{
	struct blob_req *r = req_new(bs, BLOB_OP_HEAD, key, arg);

	r->cb.head = cb;
	return r;
}

struct blob_req *blob_delete(struct blob_store *bs, const char *key, blob_done_cb *cb, void *arg)
{
	struct blob_req *r = req_new(bs, BLOB_OP_DELETE, key, arg);

	r->cb.done = cb;
	return r;
}

struct blob_req *blob_check(struct blob_store *bs, blob_done_cb *cb, void *arg)
{
	struct blob_req *r = req_new(bs, BLOB_OP_CHECK, NULL, arg);

	r->cb.done = cb;
	return r;
}

void blob_req_cancel(struct blob_req **rp)
{
	if (rp == NULL || *rp == NULL)
		return;
	(*rp)->cancelled = true;
	*rp = NULL;
}

/* --- blocking helpers -------------------------------------------------------- */

struct sync_check {
	bool done;
	enum blob_status st;
	char err[512];
};

static void sync_check_cb(void *arg, enum blob_status st, const char *errstr)
{
	struct sync_check *s = arg;

	s->done = true;
	s->st = st;
	if (errstr != NULL)
		snprintf(s->err, sizeof(s->err), "%s", errstr);
}

int blob_store_check_sync(struct blob_store *bs, char *err, size_t errsz)
{
	struct sync_check s = {0};

	blob_check(bs, sync_check_cb, &s);
	while (!s.done)
		ev_run(bs->loop, EVRUN_ONCE);
	if (s.st != BLOB_OK) {
		snprintf(err, errsz, "%s", s.err);
		return -1;
	}
	return 0;
}
