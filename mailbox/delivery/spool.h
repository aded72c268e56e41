/*
 * mailbox/delivery/spool.h -- the local file a message is received into.
 *
 * A message arriving over SMTP is written to a spool file in the
 * configured spool directory while its SHA-256 (the blob key,
 * mailbox/store/blob.h) is computed, so memory stays bounded whatever the
 * size: one write buffer of SPOOL_BUF bytes and a hash state.  The blob
 * store then copies the file into its durable home (fs: fsync + rename;
 * s3: PUT + HEAD) and the file is removed.
 *
 * The spool file itself is never fsynced: it is not the durable copy, and
 * a crash before the 250 reply loses nothing the client was told is safe.
 * Writes are plain write(2) calls into the page cache from the event loop
 * (the same trade the blob store's reads make on its thread pool; the
 * blocking, slow part, fsync, happens there).
 *
 * Leftovers: every open spool file holds an exclusive flock(2).  A file
 * nobody holds locked is a leftover of a crashed (SIGKILLed) process:
 * spool_sweep() at start-up removes those, and only those, so two daemons
 * sharing a spool directory never remove each other's live files.
 */
#ifndef MAILBOX_DELIVERY_SPOOL_H
#define MAILBOX_DELIVERY_SPOOL_H

#include "mailbox/store/blob.h"

#include <stddef.h>
#include <stdint.h>

#define SPOOL_BUF    (64 * 1024)
#define SPOOL_PREFIX "tp-spool-"

struct spool;

/*
 * Create a new spool file in dir (mode 0600, O_EXCL, locked).  Returns it,
 * or NULL with err filled ("spool /var/lib/tailpost/spool: Permission denied").
 */
struct spool *spool_open(const char *dir, char *err, size_t errsz);

/* Append n bytes.  0, or -1 with err (disk full, I/O error); after a
 * failure every later write fails too. */
int spool_write(struct spool *sp, const void *p, size_t n, char *err, size_t errsz);

/*
 * No more data: write out the buffer and fill key with the SHA-256 hex of
 * everything written (BLOB_KEY_LEN + NUL) and *size_r with its length.
 * The file stays (and stays locked) until spool_free.  0, or -1 with err.
 */
int spool_finish(struct spool *sp, char key[BLOB_KEY_LEN + 1], uint64_t *size_r, char *err,
                 size_t errsz);

/* The file's path (for blob_put). */
const char *spool_path(const struct spool *sp);
/* Bytes written so far. */
uint64_t spool_size(const struct spool *sp);

/* Remove the file and free.  NULL-safe; sets *sp to NULL. */
void spool_free(struct spool **sp);

/*
 * Start-up: create dir if missing (mode 0700), check that a file can be
 * created in it, and remove leftover spool files no process holds
 * locked.  Returns how many were removed, or -1 with err naming the
 * directory and the reason.  Blocking (start-up only).
 */
int spool_sweep(const char *dir, char *err, size_t errsz);

#endif
