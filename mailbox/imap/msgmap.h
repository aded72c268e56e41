/*
 * mailbox/imap/msgmap.h -- message sequence numbers of the selected
 * mailbox.
 *
 * RFC 3501 2.3.1.2: sequence number i is the i-th message in ascending
 * UID order, as the client last heard it.  The session keeps that view as
 * one sorted array of UIDs (4 octets a message): a UID maps to its
 * number by binary search, a number to its UID by indexing.  Messages
 * join at the end (EXISTS) and leave one at a time (EXPUNGE), exactly
 * when the client is told, so the array is always the client's view.
 */
#ifndef MAILBOX_IMAP_MSGMAP_H
#define MAILBOX_IMAP_MSGMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_msgmap {
	uint32_t *uids;
	size_t n, cap;
	/*
	 * What the session last learned of each message's flags and MODSEQ
	 * (imap_msgmap_note), parallel to uids: NULL until the first note,
	 * so a session that never asks for flags pays nothing.  An entry is
	 * the index of its flag list in sets (each distinct list once, names
	 * and order exactly as the store gave them; a mailbox has few), or
	 * IMAP_MSGMAP_UNKNOWN: nothing known (also when sets is full).
	 */
	uint64_t *modseq;
	uint32_t *flags;
	struct imap_msgmap_flagset {
		char **names;
		size_t n;
	} * sets;
	size_t nsets;
};

#define IMAP_MSGMAP_UNKNOWN      UINT32_MAX
#define IMAP_MSGMAP_MAX_FLAGSETS 256

/* Drop everything (the struct may be reused). */
void imap_msgmap_free(struct imap_msgmap *m);
/* Replace the contents with uids[0..n) (ascending, distinct). */
void imap_msgmap_set(struct imap_msgmap *m, const uint32_t *uids, size_t n);
/* Add uid at the end; it must be above every UID present. */
void imap_msgmap_append(struct imap_msgmap *m, uint32_t uid);
/* The sequence number of uid, 0 if absent. */
uint32_t imap_msgmap_seq(const struct imap_msgmap *m, uint32_t uid);
/* Remove message seq (1..n). */
void imap_msgmap_remove(struct imap_msgmap *m, uint32_t seq);
/* The highest UID, 0 when empty. */
uint32_t imap_msgmap_max_uid(const struct imap_msgmap *m);

/*
 * Learn that uid has these flags at modseq, from the store (a FETCH, STORE
 * or changes row: the message's state when the store answered).  Ignored
 * for a UID not in the map and when a newer MODSEQ is already known.
 */
void imap_msgmap_note(struct imap_msgmap *m, uint32_t uid, uint64_t modseq,
                      const char *const *flags, size_t nflags);
/* Forget what is known of uid (the store no longer answers for it). */
void imap_msgmap_unknown(struct imap_msgmap *m, uint32_t uid);
/* Forget every flag and MODSEQ learned (the UIDs stay). */
void imap_msgmap_forget(struct imap_msgmap *m);
/*
 * The flags known for message number seq (1..n): true with the list (owned
 * by the map, valid until it changes) and the MODSEQ; false when nothing
 * is known.
 */
bool imap_msgmap_known(const struct imap_msgmap *m, uint32_t seq,
                       const struct imap_msgmap_flagset **set_r, uint64_t *modseq_r);

/*
 * The UIDs a sequence set names, ascending and distinct, in a fresh
 * array (*uids_r NULL when empty).  uid false: message numbers, and a
 * number above the count (or any number in an empty mailbox) is an error
 * (RFC 9051 6.4.5: BAD); uid true: UIDs, of which only those present
 * count, "*" being the highest present (RFC 3501 6.4.8).  0, or -1 with
 * *errstr_r.
 */
int imap_msgmap_resolve(const struct imap_msgmap *m, const char *set, bool uid, uint32_t **uids_r,
                        size_t *n_r, const char **errstr_r);

#endif
