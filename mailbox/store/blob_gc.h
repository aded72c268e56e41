/*
 * mailbox/store/blob_gc.h -- collect blobs no message references any more.
 *
 * The blobs table records every key ever reserved (tp_blob_reserve) with
 * its last use.  A blob is garbage when no live (not expunged) message and
 * no queued outbound message references it and it was last used longer
 * ago than a grace period (longer than any delivery takes).  Expunged
 * message rows stay as tombstones for CONDSTORE/QRESYNC and never read
 * their blob again; the grace counts from the blob's last delivery, not
 * from the expunge, so a body FETCH that was already streaming when the
 * message was expunged can, at worst, end in an error (RFC 2180 4.1.3
 * allows that for an expunged message): nothing live is lost.  The collector locks such rows
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blob_gc_result {
	uint64_t examined; /* unreferenced rows past the grace period */
	uint64_t deleted;  /* objects removed (or already gone) and rows dropped */
	uint64_t failed;   /* objects the store would not delete (rows kept) */
	uint64_t bytes;    /* sum of the sizes of the deleted blobs */
};

/*
 * Blocking (CLI `gc`, the serve timer's worker thread, tests): one
 * transaction collecting at most limit blobs unused for grace_s seconds,
 * using c for the database and bs (whose loop is run while waiting, so it
 * must be a loop this thread owns) for the objects.  stop (may be NULL)
 * is polled between objects: once true, the batch ends early and what was
 * deleted so far is committed.  out is zeroed first.  0, or -1 with err
 * (the transaction rolled back: the rows of objects already deleted stay,
 * and the next run finds them gone and drops them).
 */
int blob_gc_run(PGconn *c, struct blob_store *bs, uint64_t grace_s, uint64_t limit,
                const atomic_bool *stop, struct blob_gc_result *out, char *err, size_t errsz);

/*
 * Batches of blob_gc_run until a batch finds fewer than batch candidates
 * (or stop); out sums them.  0, or -1 with err (out has what was done).
 */
int blob_gc_run_all(PGconn *c, struct blob_store *bs, uint64_t grace_s, uint64_t batch,
                    const atomic_bool *stop, struct blob_gc_result *out, char *err, size_t errsz);

#endif
