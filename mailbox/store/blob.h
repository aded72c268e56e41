/*
 * mailbox/store/blob.h -- the blob store: whole messages, content-addressed.
 *
 * A blob's key is the SHA-256 of its bytes in lower-case hex, so identical
 * messages share one blob and a put of an existing blob is harmless.  Two
 * backends sit behind struct blob_ops (mailbox/store/blob_private.h):
 *
 *   fs  a directory tree <path>/ab/cd/<sha256>: write a temp file in the
 *       target directory, fsync it, rename it into place, fsync the
 *       directory, so a crash leaves either no blob or the whole blob and a
 *       reader never sees a partial file.  The blocking syscalls run on a
 *       small thread pool; completions come back through an ev_async.
 *   s3  libcurl multi-socket on the loop, signed with our SigV4
 *       (mailbox/store/sigv4.h), path-style by default.  A put is verified
 *       by a HEAD (Content-Length must match) before it counts as durable;
 *       5xx answers, timeouts and connection errors are retried with
 *       backoff (cfg retries, 200 ms doubling).
 *
 * DESIGN.md "Nothing accepted is lost": the SMTP 250 waits for the put's
 * callback with BLOB_OK.  Blob lifetime (see blob_gc): call
 * tp_blob_reserve(key) (IMAP APPEND: tp_append_begin) in Postgres BEFORE
 * blob_put, then tp_deliver; the collector only removes blobs whose row is
 * unreferenced and older than a grace period, under a row lock, so it
 * cannot race a delivery.
 *
 * Callbacks always run from the loop, never from inside the call that
 * started the request, and never after blob_req_cancel() or
 * blob_store_free().  Every request returns a handle, valid until its
 * callback has returned.
 */
#ifndef MAILBOX_STORE_BLOB_H
#define MAILBOX_STORE_BLOB_H

#include "mailbox/store/config.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOB_KEY_LEN 64 /* hex digits of a SHA-256 */

enum blob_status {
	BLOB_OK = 0,
	BLOB_NOT_FOUND, /* get/head/delete of a key that is not there */
	BLOB_ERROR,     /* anything else; errstr says what */
};

struct blob_store;
struct blob_req;

/* Completion of put, delete and check.  errstr is NULL on BLOB_OK and
 * valid only during the call. */
typedef void blob_done_cb(void *arg, enum blob_status st, const char *errstr);
/* Completion of head: size is the blob's length when st == BLOB_OK. */
typedef void blob_head_cb(void *arg, enum blob_status st, uint64_t size, const char *errstr);
/* Completion of get: data/len is the requested byte range (owned by the
 * store, valid during the call only). */
typedef void blob_get_cb(void *arg, enum blob_status st, const uint8_t *data, size_t len,
                         const char *errstr);

/*
 * The store described by cfg (exactly one of fs/s3), on loop.  cfg must
 * outlive the store.  Does no I/O (so it cannot fail on an unreachable
 * endpoint; use blob_store_check for that); NULL with *errstr_r only for
 * a config it cannot use (an endpoint URL it cannot parse).
 */
struct blob_store *blob_store_new(struct ev_loop *loop, const struct stores_blob_config *cfg,
                                  const char **errstr_r);
/* Abort what is in flight (no callbacks) and free.  NULL-safe; *bs = NULL. */
void blob_store_free(struct blob_store **bs);

/* "fs" or "s3". */
const char *blob_store_kind(const struct blob_store *bs);
/* A printable endpoint: the fs path, or the s3 endpoint URL. */
const char *blob_store_endpoint(const struct blob_store *bs);

/*
 * Store the local file path (the SMTP spool file; not modified, not
 * removed) under key, which must be its SHA-256 hex (lower case) of size
 * bytes.  BLOB_OK means durable: fsync+rename, or PUT acknowledged and a
 * HEAD confirming the size.  A key that is not 64 hex digits fails.
 */
struct blob_req *blob_put(struct blob_store *bs, const char *key, const char *path, uint64_t size,
                          blob_done_cb *cb, void *arg);
/*
 * As blob_put, from memory: the size bytes at data (malloc'd) become the
 * store's and are freed with the request, whatever its outcome (also when
 * it is cancelled).  For messages small enough to spool in memory (IMAP
 * APPEND): no temporary file to create, read back and remove.
 */
struct blob_req *blob_put_mem(struct blob_store *bs, const char *key, uint8_t *data, uint64_t size,
                              blob_done_cb *cb, void *arg);
/*
 * Read len bytes at offset off (len 0: to the end).  A range past the end
 * is clipped (reading at or after the end gives 0 bytes, BLOB_OK).  At
 * most max_len bytes are returned (a larger answer fails with BLOB_ERROR),
 * so a caller always bounds its memory.
 */
struct blob_req *blob_get(struct blob_store *bs, const char *key, uint64_t off, uint64_t len,
                          size_t max_len, blob_get_cb *cb, void *arg);
struct blob_req *blob_head(struct blob_store *bs, const char *key, blob_head_cb *cb, void *arg);
/* Remove a blob.  fs reports a missing one as BLOB_NOT_FOUND; S3 answers
 * 204 whether or not the key existed, so s3 reports BLOB_OK (callers
 * treat both as success). */
struct blob_req *blob_delete(struct blob_store *bs, const char *key, blob_done_cb *cb, void *arg);
/*
 * Reachability: fs: the root exists and a file can be created, synced and
 * removed in it; s3: the bucket answers a signed HEAD.  On failure errstr
 * names the store, the endpoint and the reason:
 *   "blob store s3 endpoint http://garage:3900: could not resolve host 'garage'"
 *   "blob store fs path /var/lib/tailpost/blobs: No such file or directory"
 */
struct blob_req *blob_check(struct blob_store *bs, blob_done_cb *cb, void *arg);

/* Forget a request: its callback will never run (the operation itself may
 * still complete).  NULL-safe; sets *r to NULL.  Not from r's own
 * callback. */
void blob_req_cancel(struct blob_req **r);

/* For /readyz: false after the last operation failed with a transport or
 * server error (not NOT_FOUND), true again after one succeeds. */
bool blob_store_healthy(const struct blob_store *bs);

struct blob_stats {
	uint64_t puts, gets, heads, deletes; /* completed requests */
	uint64_t errors;                     /* requests that ended in BLOB_ERROR */
	uint64_t retries;                    /* s3 attempts beyond the first */
	uint64_t latency_us_sum;             /* over completed requests */
	unsigned in_flight;
};
void blob_store_stats(const struct blob_store *bs, struct blob_stats *out);

/* --- blocking helpers for start-up, the CLI and tests ------------------- */

/*
 * Run bs's loop until a blob_check completes; for start-up, before the
 * loop serves anything (it runs other watchers on the loop meanwhile).
 * 0, or -1 with err filled as blob_check's errstr.
 */
int blob_store_check_sync(struct blob_store *bs, char *err, size_t errsz);

/* SHA-256 of a file as 64 lower-case hex digits + NUL into key, and its
 * size.  Blocking.  0, or -1 with errno. */
int blob_key_file(const char *path, char key[BLOB_KEY_LEN + 1], uint64_t *size_r);
/* SHA-256 of a buffer as hex into key.  Pure. */
void blob_key_mem(const void *p, size_t n, char key[BLOB_KEY_LEN + 1]);
/* A SHA-256 digest computed elsewhere (incrementally) as a key.  Pure. */
void blob_key_hex(const unsigned char md[32], char key[BLOB_KEY_LEN + 1]);
/* True if key is exactly 64 lower-case hex digits.  Pure. */
bool blob_key_valid(const char *key);

#endif
