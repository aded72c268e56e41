/*
 * mailbox/smtp/sender.c -- envelope sender ownership (see sender.h).
 *
 * The variants of the address (itself, without its +tag, the catch-all
 * of its domain) are computed here so that the statement is a plain
 * index lookup on addresses(address).  The callback context is attached
 * to the pool request, so cancelling frees it.
 */
#include "mailbox/smtp/sender.h"

#include "mailbox/directory/directory.h"
#include "shared/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct sender_ctx {
	smtp_sender_cb *cb;
	void *arg;
	bool invalid;
};

static void on_answer(void *arg, const PGresult *res, const char *errstr)
{
	struct sender_ctx *c = arg;

	if (errstr != NULL)
		c->cb(c->arg, SMTP_SENDER_TEMPFAIL, errstr);
	else if (c->invalid || PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		c->cb(c->arg, SMTP_SENDER_NOT_OWNED, NULL);
	else
		c->cb(c->arg, SMTP_SENDER_OWNED, NULL);
}

struct pg_req *smtp_sender_check(struct pg_pool *pg, int64_t account_id, const char *sender,
                                 smtp_sender_cb *cb, void *arg)
{
	struct sender_ctx *c = xcalloc(1, sizeof(*c));
	char addr[300], base[300], catchall[300], id[24];
	const char *params[5], *e = NULL;
	struct pg_req *r;
	const char *at, *plus;

	c->cb = cb;
	c->arg = arg;
	if (dir_address_normalize(sender, false, addr, sizeof(addr), &e) < 0) {
		/* answered from the loop all the same */
		c->invalid = true;
		r = pg_query(pg, "SELECT false", 0, NULL, on_answer, c);
		pg_req_attach(r, c);
		return r;
	}
	at = strrchr(addr, '@');
	plus = memchr(addr, '+', (size_t)(at - addr));
	/* RFC 5233: user+detail; a leading '+' is no detail separator */
	if (plus != NULL && plus > addr)
		snprintf(base, sizeof(base), "%.*s%s", (int)(plus - addr), addr, at);
	else
		snprintf(base, sizeof(base), "%s", addr);
	snprintf(catchall, sizeof(catchall), "%s", at);
	snprintf(id, sizeof(id), "%" PRId64, account_id);
	params[0] = id;
	params[1] = addr;
	params[2] = base;
	params[3] = catchall;
	r = pg_query(pg,
	             "SELECT EXISTS (SELECT 1 FROM addresses a WHERE a.account_id = $1::bigint"
	             "   AND a.address IN ($2::text, $3::text, $4::text))"
	             " OR EXISTS (SELECT 1 FROM accounts ac WHERE ac.id = $1::bigint"
	             "   AND ac.login IN ($2::text, $3::text))",
	             4, params, on_answer, c);
	pg_req_attach(r, c);
	return r;
}
