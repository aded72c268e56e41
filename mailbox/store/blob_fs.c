/*
 * mailbox/store/blob_fs.c -- the filesystem blob backend.
 *
 * Layout: <root>/ab/cd/<sha256 hex> where ab and cd are the key's first
 * two byte pairs, so no directory grows past 65536 entries for a million
 * messages.  A put is the classic durable-create sequence: copy into
 * <dir>/.tmp-<key>-<random> (O_EXCL), checking the size and the SHA-256
 * as it goes, fsync(2) the file, rename(2) it onto the final name, then
 * fsync the directory (and the parent directories it had to create), so
 * after a crash the blob is either whole or absent, and a reader never
 * sees a partial file (the temporary name never matches a key).  A blob
 * already present is left alone: content addressing makes it identical.
 *
 * Every syscall that may block (open, read, fsync, rename, unlink) runs on
 * a small worker pool (mailbox/store/workpool.h), never on the loop; two
 * threads keep a slow fsync from stalling every other request.
 */
#include "mailbox/store/blob_private.h"
#include "mailbox/store/workpool.h"

#include "shared/fdio.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_THREADS  2
#define FS_COPY_BUF 65536

struct fs_store {
	struct workpool *wp;
	char *root;
};

/* Per request, owned by the worker while it runs. */
struct fs_job {
	struct blob_req *r;
	struct blob_store *bs;
	char *root;
	/* results from the worker */
	enum blob_status st;
	char msg[320];
	uint8_t *data;
	size_t dlen;
	uint64_t rsize;
};

static void job_err(struct fs_job *j, enum blob_status st, const char *what, int e)
{
	j->st = st;
	snprintf(j->msg, sizeof(j->msg), "%s: %s", what, strerror(e));
}

static void blob_dir(const char *root, const char *key, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%.2s/%.2s", root, key, key + 2);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, e;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* mkdir dir if missing; *created set when we made it. */
static int ensure_dir(const char *dir, bool *created)
{
	if (mkdir(dir, 0750) == 0) {
		*created = true;
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/* Put r's source (its file, or its bytes in memory) under key. */
static void fs_put(struct fs_job *j, const char *key, const struct blob_req *r)
{
	const char *src = r->path;
	uint64_t size = r->size;
	char d1[4096], d2[4096], final[4200], tmp[4300], got[BLOB_KEY_LEN + 1];
	unsigned char rnd[8], md[32];
	unsigned int mdlen = sizeof(md);
	bool made1 = false, made2 = false;
	int in = -1, out = -1;
	uint8_t *buf = NULL;
	uint64_t total = 0;
	EVP_MD_CTX *ctx = NULL;
	struct stat stt;

	tmp[0] = '\0';
	snprintf(d1, sizeof(d1), "%s/%.2s", j->root, key);
	blob_dir(j->root, key, d2, sizeof(d2));
	snprintf(final, sizeof(final), "%s/%s", d2, key);
	if (stat(final, &stt) == 0 && (uint64_t)stt.st_size == size) {
		/* already stored whole (it only ever appears by rename) */
		j->st = BLOB_OK;
		return;
	}
	if (ensure_dir(d1, &made1) < 0 || ensure_dir(d2, &made2) < 0) {
		job_err(j, BLOB_ERROR, "mkdir", errno);
		return;
	}
	if (r->src == NULL) {
		in = open(src, O_RDONLY | O_CLOEXEC);
		if (in < 0) {
			job_err(j, BLOB_ERROR, "open source file", errno);
			goto fail;
		}
	}
	RAND_bytes(rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%02x%02x%02x%02x%02x%02x%02x%02x", d2, key, rnd[0],
	         rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (out < 0) {
		job_err(j, BLOB_ERROR, "create temporary file", errno);
		goto fail;
	}
	ctx = EVP_MD_CTX_new();
	ASSERT(ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
	if (r->src != NULL) {
		ASSERT(EVP_DigestUpdate(ctx, r->src, (size_t)size) == 1);
		total = size;
		if (fd_write_all(out, r->src, (size_t)size) < 0) {
			job_err(j, BLOB_ERROR, "write", errno);
			goto fail;
		}
	}
	buf = in >= 0 ? xmalloc(FS_COPY_BUF) : NULL;
	while (in >= 0) {
		ssize_t n = read(in, buf, FS_COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			job_err(j, BLOB_ERROR, "read source file", errno);
			goto fail;
		}
		if (n == 0)
			break;
		ASSERT(EVP_DigestUpdate(ctx, buf, (size_t)n) == 1);
		total += (uint64_t)n;
		if (fd_write_all(out, buf, (size_t)n) < 0) {
			job_err(j, BLOB_ERROR, "write", errno);
			goto fail;
		}
	}
	ASSERT(EVP_DigestFinal_ex(ctx, md, &mdlen) == 1);
	blob_key_hex(md, got);
	if (total != size) {
		j->st = BLOB_ERROR;
		snprintf(j->msg, sizeof(j->msg), "source file has %llu bytes, expected %llu",
		         (unsigned long long)total, (unsigned long long)size);
		goto fail;
	}
	if (strcmp(got, key) != 0) {
		j->st = BLOB_ERROR;
		snprintf(j->msg, sizeof(j->msg), "content does not match key %s (sha256 %s)", key,
		         got);
		goto fail;
	}
	if (fsync(out) < 0) {
		job_err(j, BLOB_ERROR, "fsync", errno);
		goto fail;
	}
	if (close(out) < 0) {
		out = -1;
		job_err(j, BLOB_ERROR, "close", errno);
		goto fail;
	}
	out = -1;
	if (rename(tmp, final) < 0) {
		job_err(j, BLOB_ERROR, "rename", errno);
		goto fail;
	}
	tmp[0] = '\0';
	/* the rename is durable once the directory is; new directories need
	 * their own parents synced too */
	if (fsync_dir(d2) < 0 || (made2 && fsync_dir(d1) < 0) ||
	    (made1 && fsync_dir(j->root) < 0)) {
		job_err(j, BLOB_ERROR, "fsync directory", errno);
		goto fail;
	}
	j->st = BLOB_OK;
fail:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	if (j->st != BLOB_OK && tmp[0] != '\0')
		unlink(tmp);
	EVP_MD_CTX_free(ctx);
	free(buf);
}

static void fs_get(struct fs_job *j, const char *key, uint64_t off, uint64_t len, size_t max)
{
	char dir[4096], path[4200];
	struct stat stt;
	uint64_t avail, want;
	int fd;

	blob_dir(j->root, key, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, key);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		job_err(j, errno == ENOENT ? BLOB_NOT_FOUND : BLOB_ERROR, "open", errno);
		return;
	}
	if (fstat(fd, &stt) < 0) {
		job_err(j, BLOB_ERROR, "fstat", errno);
		goto out;
	}
	avail = off < (uint64_t)stt.st_size ? (uint64_t)stt.st_size - off : 0;
	want = (len == 0 || len > avail) ? avail : len;
	if (want > max) {
		j->st = BLOB_ERROR;
		snprintf(j->msg, sizeof(j->msg), "range of %llu bytes exceeds the limit of %zu",
		         (unsigned long long)want, max);
		goto out;
	}
	j->data = xmalloc(want > 0 ? want : 1);
	while (j->dlen < want) {
		ssize_t n = pread(fd, j->data + j->dlen, want - j->dlen, (off_t)(off + j->dlen));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			job_err(j, BLOB_ERROR, "read", errno);
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: cannot happen to a renamed blob */
		j->dlen += (size_t)n;
	}
	j->st = BLOB_OK;
out:
	close(fd);
}

static void fs_head(struct fs_job *j, const char *key)
{
	char dir[4096], path[4200];
	struct stat stt;

	blob_dir(j->root, key, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, key);
	if (stat(path, &stt) < 0) {
		job_err(j, errno == ENOENT ? BLOB_NOT_FOUND : BLOB_ERROR, "stat", errno);
		return;
	}
	j->rsize = (uint64_t)stt.st_size;
	j->st = BLOB_OK;
}

static void fs_delete(struct fs_job *j, const char *key)
{
	char dir[4096], path[4200];

	blob_dir(j->root, key, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, key);
	if (unlink(path) < 0) {
		job_err(j, errno == ENOENT ? BLOB_NOT_FOUND : BLOB_ERROR, "unlink", errno);
		return;
	}
	if (fsync_dir(dir) < 0) {
		job_err(j, BLOB_ERROR, "fsync directory", errno);
		return;
	}
	j->st = BLOB_OK;
}

static void fs_check(struct fs_job *j)
{
	char path[4200];
	struct stat stt;
	unsigned char rnd[8];
	int fd;

	if (stat(j->root, &stt) < 0) {
		job_err(j, BLOB_ERROR, "stat", errno);
		return;
	}
	if (!S_ISDIR(stt.st_mode)) {
		j->st = BLOB_ERROR;
		snprintf(j->msg, sizeof(j->msg), "not a directory");
		return;
	}
	RAND_bytes(rnd, sizeof(rnd));
	snprintf(path, sizeof(path), "%s/.check-%02x%02x%02x%02x%02x%02x%02x%02x", j->root, rnd[0],
	         rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		job_err(j, BLOB_ERROR, "cannot create a file", errno);
		return;
	}
	if (write(fd, "ok\n", 3) != 3 || fsync(fd) < 0) {
		job_err(j, BLOB_ERROR, "cannot write and sync a file", errno);
		close(fd);
		unlink(path);
		return;
	}
	close(fd);
	unlink(path);
	j->st = BLOB_OK;
}

/* Worker thread: writes only j and reads r's inputs, which the loop does
 * not change while the job runs; r stays valid until fs_done, or until
 * fs_free has joined the workers. */
static void fs_work(void *arg)
{
	struct fs_job *j = arg;
	struct blob_req *r = j->r;

	j->st = BLOB_ERROR;
	switch (r->op) {
	case BLOB_OP_PUT:
		fs_put(j, r->key, r);
		break;
	case BLOB_OP_GET:
		fs_get(j, r->key, r->off, r->len, r->max_len);
		break;
	case BLOB_OP_HEAD:
		fs_head(j, r->key);
		break;
	case BLOB_OP_DELETE:
		fs_delete(j, r->key);
		break;
	case BLOB_OP_CHECK:
		fs_check(j);
		break;
	}
}

static void fs_done(void *arg)
{
	struct fs_job *j = arg;
	struct blob_req *r = j->r;
	struct blob_store *bs = j->bs;

	r->impl = NULL;
	if (j->st == BLOB_OK) {
		r->st = BLOB_OK;
		r->data = j->data;
		r->dlen = j->dlen;
		r->rsize = j->rsize;
	} else {
		free(j->data);
		blob_req_fail(r, j->st, "%s%s%s", r->op == BLOB_OP_CHECK ? "" : r->key,
		              r->op == BLOB_OP_CHECK ? "" : ": ", j->msg);
	}
	free(j->root);
	free(j);
	blob_enter(bs);
	blob_req_finish(r);
	blob_leave(bs);
}

static void fs_start(struct blob_store *bs, struct blob_req *r)
{
	struct fs_store *fs = bs->impl;
	struct fs_job *j = xcalloc(1, sizeof(*j));

	j->r = r;
	j->bs = bs;
	j->root = xstrdup(fs->root);
	r->impl = j;
	workpool_submit(fs->wp, fs_work, fs_done, j);
}

static void fs_abandon(struct blob_store *bs, struct blob_req *r)
{
	/* nothing to do before fs_free: it joins the workers first, then
	 * frees the jobs of unfinished requests */
	(void)bs;
	(void)r;
}

static void fs_free(struct blob_store *bs)
{
	struct fs_store *fs = bs->impl;

	/* joins the workers; queued jobs are dropped without done callbacks,
	 * so free the jobs of every unfinished request here */
	workpool_free(&fs->wp);
	for (struct blob_req *r = bs->reqs; r != NULL; r = r->next) {
		struct fs_job *j = r->impl;
		if (j != NULL) {
			free(j->data);
			free(j->root);
			free(j);
			r->impl = NULL;
		}
	}
	free(fs->root);
	free(fs);
	bs->impl = NULL;
}

const struct blob_ops blob_fs_ops = {
        .kind = "fs",
        .start = fs_start,
        .abandon = fs_abandon,
        .free = fs_free,
};

int blob_fs_init(struct blob_store *bs, const char **errstr_r)
{
	struct fs_store *fs;
	size_t n;

	if (bs->cfg->fs.path == NULL || bs->cfg->fs.path[0] != '/') {
		*errstr_r = "blob store fs: path must be absolute";
		return -1;
	}
	fs = xcalloc(1, sizeof(*fs));
	fs->root = xstrdup(bs->cfg->fs.path);
	n = strlen(fs->root);
	while (n > 1 && fs->root[n - 1] == '/')
		fs->root[--n] = '\0';
	snprintf(bs->endpoint, sizeof(bs->endpoint), "%s", fs->root);
	fs->wp = workpool_new(bs->loop, FS_THREADS);
	bs->impl = fs;
	return 0;
}
