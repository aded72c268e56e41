/*
 * mailbox/imap/account_conns.c -- per-account session counts (see
 * account_conns.h).
 *
 * A sorted array of (account, count) searched by bisection: logins and
 * logouts are rare next to commands, the array holds only accounts with
 * a session open, and an entry is removed when its count drops to zero
 * so the table never outgrows the connections.
 */
#include "mailbox/imap/account_conns.h"

#include "shared/log.h"
#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

struct slot {
	int64_t account;
	unsigned n;
};

struct imap_account_conns {
	struct slot *v;
	size_t n, cap;
};

struct imap_account_conns *imap_account_conns_new(void)
{
	return xcalloc(1, sizeof(struct imap_account_conns));
}

void imap_account_conns_free(struct imap_account_conns **t)
{
	if (t == NULL || *t == NULL)
		return;
	free((*t)->v);
	free(*t);
	*t = NULL;
}

/* The index of account, or where it would be inserted (*found false). */
static size_t find(const struct imap_account_conns *t, int64_t account, bool *found)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->v[mid].account < account)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < t->n && t->v[lo].account == account;
	return lo;
}

bool imap_account_conns_acquire(struct imap_account_conns *t, int64_t account, unsigned max)
{
	bool found;
	size_t i = find(t, account, &found);

	if (found) {
		if (max != 0 && t->v[i].n >= max)
			return false;
		t->v[i].n++;
		return true;
	}
	if (t->n == t->cap) {
		t->cap = t->cap != 0 ? t->cap * 2 : 16;
		t->v = xreallocarray(t->v, t->cap, sizeof(*t->v));
	}
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
	t->v[i].account = account;
	t->v[i].n = 1;
	t->n++;
	return true;
}

void imap_account_conns_release(struct imap_account_conns *t, int64_t account)
{
	bool found;
	size_t i = find(t, account, &found);

	ASSERT(found && t->v[i].n > 0);
	if (--t->v[i].n == 0) {
		memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
		t->n--;
	}
}

unsigned imap_account_conns_count(const struct imap_account_conns *t, int64_t account)
{
	bool found;
	size_t i = find(t, account, &found);

	return found ? t->v[i].n : 0;
}

size_t imap_account_conns_accounts(const struct imap_account_conns *t)
{
	return t->n;
}
