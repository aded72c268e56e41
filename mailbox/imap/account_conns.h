/*
 * mailbox/imap/account_conns.h -- logged-in IMAP sessions per account, for
 * the limit imap.max_connections_per_account.
 *
 * The count is per daemon instance (one table per process, on the loop
 * thread): with several instances behind one name a client may hold up
 * to N sessions on each.  A session takes a slot when its login
 * succeeds and gives it back when it closes.  Pure bookkeeping, no I/O.
 */
#ifndef MAILBOX_IMAP_ACCOUNT_CONNS_H
#define MAILBOX_IMAP_ACCOUNT_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_account_conns;

struct imap_account_conns *imap_account_conns_new(void);
/* NULL-safe; *t set to NULL. */
void imap_account_conns_free(struct imap_account_conns **t);
/* Take a slot for account if fewer than max are taken (max 0: no limit,
 * always succeeds).  true: taken, release it later. */
bool imap_account_conns_acquire(struct imap_account_conns *t, int64_t account, unsigned max);
/* Give back a slot taken by acquire (a broken invariant otherwise). */
void imap_account_conns_release(struct imap_account_conns *t, int64_t account);
/* Slots taken by account. */
unsigned imap_account_conns_count(const struct imap_account_conns *t, int64_t account);
/* Accounts with at least one slot taken. */
size_t imap_account_conns_accounts(const struct imap_account_conns *t);

#endif
