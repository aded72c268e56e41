/*
 * mailbox/store/blob_gc.h -- collect blobs no message references any more.
 *
 * The blobs table records every key ever reserved (tp_blob_reserve) with
 * its last use.  A blob is garbage when no message and no queued outbound
 * message references it and it was last used longer ago than a grace
 * period (longer than any delivery takes).  The collector locks such rows
 * (FOR UPDATE SKIP LOCKED) in one transaction, deletes the objects, then
 * the rows, and commits; a concurrent tp_blob_reserve of the same key
 * waits for that commit and re-creates the row, and its put re-creates
 * the object afterwards, so a delivery never ends up referencing a blob
 * the collector removed.
 */
#ifndef MAILBOX_STORE_BLOB_GC_H
#define MAILBOX_STORE_BLOB_GC_H

#include "mailbox/store/blob.h"

#include <postgresql/libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

struct blob_gc_result {
	uint64_t examined; /* unreferenced rows past the grace period */
	uint64_t deleted;  /* objects removed (or already gone) and rows dropped */
	uint64_t failed;   /* objects the store would not delete (rows kept) */
};

/*
 * Blocking (CLI `gc`, tests): collect at most limit blobs unused for
 * grace_s seconds, using c for the database and bs (whose loop is run
 * while waiting) for the objects.  0, or -1 with err.
 */
int blob_gc_run(PGconn *c, struct blob_store *bs, uint64_t grace_s, uint64_t limit,
                struct blob_gc_result *out, char *err, size_t errsz);

#endif
