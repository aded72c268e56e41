/*
 * mailbox/delivery/spool.c -- spool files (see spool.h).
 *
 * Names are SPOOL_PREFIX + pid + a per-process sequence + random bits, so
 * they are unique without a directory scan; O_EXCL makes a collision an
 * error instead of a shared file.  The buffer is allocated on the first
 * write and the hash is an EVP SHA-256 context updated as bytes enter the
 * buffer, so what is hashed is exactly what is written.
 */
#include "mailbox/delivery/spool.h"

#include "shared/fdio.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct spool {
	int fd;
	char *path;
	EVP_MD_CTX *md;
	uint8_t *buf;
	size_t nbuf;
	uint64_t size;
	int err; /* errno of the first failure, 0 while fine */
};

static uint64_t spool_seq;

static void set_err(char *err, size_t errsz, const char *path, const char *what, int e)
{
	if (err != NULL && errsz > 0)
		snprintf(err, errsz, "spool %s: %s: %s", path, what, strerror(e));
}

struct spool *spool_open(const char *dir, char *err, size_t errsz)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	uint32_t rnd = 0;

	(void)RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
	sp->path = xasprintf("%s/%s%d-%" PRIu64 "-%08x", dir, SPOOL_PREFIX, (int)getpid(),
	                     ++spool_seq, rnd);
	sp->fd = open(sp->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (sp->fd < 0) {
		set_err(err, errsz, dir, "create", errno);
		goto fail;
	}
	/* held for the life of the file: see spool_sweep */
	if (flock(sp->fd, LOCK_EX | LOCK_NB) < 0) {
		set_err(err, errsz, sp->path, "lock", errno);
		goto fail;
	}
	sp->md = EVP_MD_CTX_new();
	if (sp->md == NULL || EVP_DigestInit_ex(sp->md, EVP_sha256(), NULL) != 1)
		fatal("msg=\"out of memory for SHA-256\"");
	return sp;
fail:
	spool_free(&sp);
	return NULL;
}

static int write_all(struct spool *sp, const uint8_t *p, size_t n)
{
	if (fd_write_all(sp->fd, p, n) < 0) {
		sp->err = errno;
		return -1;
	}
	return 0;
}

static int flush_buf(struct spool *sp)
{
	if (sp->nbuf == 0)
		return 0;
	if (write_all(sp, sp->buf, sp->nbuf) < 0)
		return -1;
	sp->nbuf = 0;
	return 0;
}

int spool_write(struct spool *sp, const void *data, size_t n, char *err, size_t errsz)
{
	const uint8_t *p = data;

	if (sp->err != 0)
		goto fail;
	if (EVP_DigestUpdate(sp->md, p, n) != 1)
		fatal("msg=\"SHA-256 update failed\"");
	sp->size += n;
	if (sp->buf == NULL)
		sp->buf = xmalloc(SPOOL_BUF);
	while (n > 0) {
		size_t k = SPOOL_BUF - sp->nbuf;

		if (sp->nbuf == 0 && n >= SPOOL_BUF) {
			/* a large piece goes straight to the file */
			if (write_all(sp, p, n) < 0)
				goto fail;
			return 0;
		}
		if (k > n)
			k = n;
		memcpy(sp->buf + sp->nbuf, p, k);
		sp->nbuf += k;
		p += k;
		n -= k;
		if (sp->nbuf == SPOOL_BUF && flush_buf(sp) < 0)
			goto fail;
	}
	return 0;
fail:
	set_err(err, errsz, sp->path, "write", sp->err);
	return -1;
}

int spool_finish(struct spool *sp, char key[BLOB_KEY_LEN + 1], uint64_t *size_r, char *err,
                 size_t errsz)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	if (sp->err != 0 || flush_buf(sp) < 0) {
		set_err(err, errsz, sp->path, "write", sp->err);
		return -1;
	}
	free(sp->buf);
	sp->buf = NULL;
	if (EVP_DigestFinal_ex(sp->md, md, &mdlen) != 1 || mdlen != 32)
		fatal("msg=\"SHA-256 final failed\"");
	for (unsigned i = 0; i < 32; i++) {
		key[2 * i] = hex[md[i] >> 4];
		key[2 * i + 1] = hex[md[i] & 15];
	}
	key[BLOB_KEY_LEN] = '\0';
	*size_r = sp->size;
	return 0;
}

const char *spool_path(const struct spool *sp)
{
	return sp->path;
}

uint64_t spool_size(const struct spool *sp)
{
	return sp->size;
}

void spool_free(struct spool **spp)
{
	struct spool *sp = *spp;

	if (sp == NULL)
		return;
	if (sp->fd >= 0) {
		/* unlink before close: the lock guards the name until it is gone */
		unlink(sp->path);
		close(sp->fd);
	}
	EVP_MD_CTX_free(sp->md);
	free(sp->buf);
	free(sp->path);
	free(sp);
	*spp = NULL;
}

int spool_sweep(const char *dir, char *err, size_t errsz)
{
	DIR *d;
	struct dirent *de;
	int removed = 0;
	char probe[BLOB_KEY_LEN + 1];
	struct spool *sp;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		set_err(err, errsz, dir, "mkdir", errno);
		return -1;
	}
	d = opendir(dir);
	if (d == NULL) {
		set_err(err, errsz, dir, "open", errno);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		int fd;

		if (strncmp(de->d_name, SPOOL_PREFIX, strlen(SPOOL_PREFIX)) != 0)
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		/* locked: a live session of some process is writing it */
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
		close(fd);
	}
	closedir(d);
	/* prove that a message can be spooled here now, not at the first MAIL */
	sp = spool_open(dir, err, errsz);
	if (sp == NULL)
		return -1;
	if (spool_write(sp, "probe\r\n", 7, err, errsz) < 0 ||
	    spool_finish(sp, probe, &(uint64_t){0}, err, errsz) < 0) {
		spool_free(&sp);
		return -1;
	}
	spool_free(&sp);
	return removed;
}
