/*
 * tests/unit/test_delivery_spool.c -- spool files (mailbox/delivery/spool.h):
 * the key is the SHA-256 of exactly what was written, in any piece sizes
 * (below, at and above the buffer); the file goes away with the spool;
 * the start-up sweep removes leftovers nobody holds and spares live ones.
 */
#include "tests/unit/unit.h"

#include "mailbox/delivery/spool.h"
#include "mailbox/store/blob.h"
#include "shared/xmalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/tp-spool-test-XXXXXX";
	char *d = mkdtemp(tmpl);

	return d != NULL ? xstrdup(d) : NULL;
}

static size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	while (d != NULL && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	if (d != NULL)
		closedir(d);
	return n;
}

UNIT_TEST(delivery_spool_hash_and_content)
{
	static const size_t steps[] = {1, 7, SPOOL_BUF - 1, SPOOL_BUF, SPOOL_BUF + 3, 300000};
	size_t n = 300000;
	uint8_t *data = xmalloc(n);
	char *dir = tmpdir();
	char want[BLOB_KEY_LEN + 1], key[BLOB_KEY_LEN + 1], err[256];

	CHECK(dir != NULL);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 9));
	blob_key_mem(data, n, want);
	for (size_t s = 0; s < ARRAY_SIZE(steps); s++) {
		struct spool *sp = spool_open(dir, err, sizeof(err));
		uint64_t size = 0, fsize = 0;
		char fkey[BLOB_KEY_LEN + 1];
		char *path;

		CHECK_MSG(sp != NULL, "%s", err);
		for (size_t off = 0; off < n; off += steps[s]) {
			size_t k = n - off < steps[s] ? n - off : steps[s];
			CHECK(spool_write(sp, data + off, k, err, sizeof(err)) == 0);
		}
		CHECK(spool_finish(sp, key, &size, err, sizeof(err)) == 0);
		CHECK_STR(key, want);
		CHECK_INT(size, n);
		CHECK_INT(spool_size(sp), n);
		/* what is on disk is what was hashed */
		CHECK(blob_key_file(spool_path(sp), fkey, &fsize) == 0);
		CHECK_STR(fkey, want);
		CHECK_INT(fsize, n);
		path = xstrdup(spool_path(sp));
		spool_free(&sp);
		CHECK(sp == NULL);
		CHECK(access(path, F_OK) != 0);
		free(path);
	}
	CHECK_INT(count_files(dir), 0);
	rmdir(dir);
	free(dir);
	free(data);
}

UNIT_TEST(delivery_spool_sweep_spares_live_files)
{
	char *dir = tmpdir();
	char err[256], path[512];
	struct spool *live;
	int fd;

	CHECK(dir != NULL);
	/* a leftover of a dead process: nobody holds its lock */
	snprintf(path, sizeof(path), "%s/%s999-1-deadbeef", dir, SPOOL_PREFIX);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	close(fd);
	/* an unrelated file stays */
	snprintf(path, sizeof(path), "%s/keep.txt", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0);
	close(fd);
	live = spool_open(dir, err, sizeof(err));
	CHECK(live != NULL && spool_write(live, "abc", 3, err, sizeof(err)) == 0);
	CHECK_INT(spool_sweep(dir, err, sizeof(err)), 1);
	CHECK_INT(count_files(dir), 2); /* keep.txt and the live spool */
	spool_free(&live);
	CHECK_INT(count_files(dir), 1);
	unlink(path);
	rmdir(dir);
	/* a missing directory is created; a path through a file fails loudly */
	CHECK_INT(spool_sweep(dir, err, sizeof(err)), 0);
	rmdir(dir);
	CHECK_INT(spool_sweep("/dev/null/spool", err, sizeof(err)), -1);
	CHECK(strstr(err, "spool /dev/null/spool: mkdir: ") == err);
	CHECK(spool_open("/nonexistent/dir", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "spool /nonexistent/dir: create: No such file or directory") == err);
	free(dir);
}
