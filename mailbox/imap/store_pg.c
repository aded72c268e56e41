/*
 * mailbox/imap/store_pg.c -- the IMAP store requests on Postgres, the blob
 * store, the directory and pub/sub (see store_pg.h).
 *
 * Every request is one statement (or a short chain of them) on the async
 * pool; the atomic parts (UID/MODSEQ allocation, flag changes, expunge,
 * copy) are the plpgsql functions of mailbox/store/schema.c, so several
 * daemons on one database stay consistent.  Rows come back as text:
 * flags as array_to_string(flags, ' ') (flags are atoms, RFC 3501 9,
 * so a space never occurs inside one), UID lists as string_agg.
 *
 * APPEND spools each message (in memory while small, else in a
 * temporary file) and feeds the MIME parser and the SHA-256 as the octets
 * arrive, so metadata and blob key are ready when the literal ends; then
 * one statement looks the mailbox up and reserves the blobs
 * (tp_append_begin), the blobs are put, and one statement delivers every
 * message of a MULTIAPPEND (all or none).
 *
 * The special-use mailboxes (RFC 6154) are created at login if missing:
 * the directory creates only INBOX when an account is added.
 */
#include "mailbox/imap/store_pg.h"

#include "mailbox/delivery/delivery_sql.h"
#include "mailbox/directory/auth.h"
#include "mailbox/directory/lookup.h"
#include "mailbox/imap/account_conns.h"
#include "mailbox/imap/blob_cache.h"
#include "mailbox/imap/meta_cache.h"
#include "mailbox/imap/search_sql.h"
#include "mailbox/mime/parser.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/mem.h"
#include "mailbox/store/pg.h"
#include "mailbox/store/schema.h"
#include "shared/buf.h"
#include "shared/fdio.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define BLOB_READ_MAX (IMAP_READ_CHUNK + 4096)

/*
 * An APPEND literal's spool: in memory while it is small (and all the
 * spools of the process together stay under SPOOL_MEM_TOTAL), else a
 * temporary file it moves to once it grows.  The SHA-256 (the blob key)
 * and the MIME parse are computed as the octets arrive, so nothing is
 * read back; a message in memory goes to the blob store with
 * blob_put_mem, sparing a file created, read twice and removed.
 */
#define SPOOL_MEM_MAX   (256 * 1024)
#define SPOOL_MEM_TOTAL (32 * 1024 * 1024)
static size_t spool_mem_total; /* bytes held by in-memory spools (the loop's thread) */

struct imap_pg_spool {
	int fd;         /* the file, or -1 while in memory */
	char path[256]; /* "" until there is a file */
	uint8_t *mem;   /* in memory: the octets so far */
	size_t cap;
	EVP_MD_CTX *sha;
	struct mime_parser *mp;
	uint64_t size;
};

struct imap_pg_append {
	char *mailbox;
	struct imap_append_msg *v;
	size_t n, i;
	int64_t mbox_id;
	uint32_t uidvalidity;
	uint64_t quota, used;
	uint32_t *uids;
	struct mime_result **mimes;     /* per message, once parsed */
	char (*keys)[BLOB_KEY_LEN + 1]; /* per message, once put */
	size_t put_mem;                 /* spool bytes the put in flight holds */
	bool stored;                    /* the statement succeeded */
	bool own;                       /* reported with imap_session_write_modseq */
};

/* Parameters of one message in the delivery statement. */
#define APPEND_PARAMS 16
/* Postgres takes at most 65535 parameters per statement. */
#define APPEND_MAX_MSGS (65535 / APPEND_PARAMS)

/* --- helpers ------------------------------------------------------------- */

static enum imap_store_status pg_status(const PGresult *res, const char *errstr)
{
	const char *st;

	if (errstr == NULL)
		return IMAP_STORE_OK;
	if (res == NULL)
		return IMAP_STORE_TEMPFAIL;
	st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (st != NULL && strcmp(st, "23505") == 0)
		return IMAP_STORE_EXISTS;
	/* serialization failure: tp_deliver's blob was collected meanwhile */
	if (st != NULL && strcmp(st, "40001") == 0)
		return IMAP_STORE_TEMPFAIL;
	return IMAP_STORE_FAIL;
}

static void query(struct imap_pg *p, const char *sql, int n, const char *const *params, pg_cb *cb)
{
	p->req = pg_query(p->pg, sql, n, params, cb, p);
}

/* The same for the statements every session runs over and over: each
 * connection parses and plans them once (pg_query_prepared). */
static void query_prep(struct imap_pg *p, const char *sql, int n, const char *const *params,
                       pg_cb *cb)
{
	p->req = pg_query_prepared(p->pg, sql, n, params, cb, p);
}

static void kick(struct imap_pg *p)
{
	if (p->kick != NULL)
		p->kick(p);
}

static char *id_str(int64_t id)
{
	return xasprintf("%lld", (long long)id);
}

/* Split s at spaces into a malloc'd vector pointing into *copy_r. */
static const char **split_words(const char *s, size_t *n_r, char **copy_r)
{
	char *c = xstrdup(s != NULL ? s : "");
	size_t n = 0, cap = 4;
	const char **v = xmalloc(cap * sizeof(*v));
	char *save = NULL;

	for (char *w = strtok_r(c, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
		if (n == cap) {
			cap *= 2;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n++] = w;
	}
	*n_r = n;
	*copy_r = c;
	return v;
}

static uint64_t u64(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static const char *str_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static void publish_msg(struct imap_pg *p, int64_t mbox, const char *msg)
{
	char ch[64];

	if (p->mem == NULL || mbox <= 0)
		return;
	snprintf(ch, sizeof(ch), IMAP_PG_CHANNEL_FMT, (long long)mbox);
	mem_publish(p->mem, ch, msg, strlen(msg), NULL, NULL);
}

/* Every subscriber, this session included, syncs. */
static void publish(struct imap_pg *p, int64_t mbox)
{
	publish_msg(p, mbox, "changed");
}

/* A write of this session that it reported with imap_session_write_modseq:
 * the others sync, this one ignores it (sub_msg). */
static void publish_own(struct imap_pg *p, int64_t mbox)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "changed %s", p->origin);
	publish_msg(p, mbox, msg);
}

/* --- auth ---------------------------------------------------------------- */

static void auth_end(struct imap_pg *p, enum imap_auth_result r, const char *reason)
{
	if (p->on_auth != NULL)
		p->on_auth(p, r, r == IMAP_AUTH_OK || r == IMAP_AUTH_LIMIT ? p->login : NULL,
		           reason);
	imap_session_auth_done(p->session, r, r == IMAP_AUTH_OK ? p->login : NULL);
}

static void slot_release(struct imap_pg *p)
{
	if (p->counted) {
		imap_account_conns_release(p->conns, p->account);
		p->counted = false;
	}
}

static void specials_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;

	(void)res;
	p->req = NULL;
	if (errstr != NULL) {
		slot_release(p);
		auth_end(p, IMAP_AUTH_TEMPFAIL, "special-use mailboxes not created");
	} else {
		auth_end(p, IMAP_AUTH_OK, NULL);
	}
	kick(p);
}

/* INBOX and the RFC 6154 mailboxes, created when missing (the same
 * UIDVALIDITY rule as tp_mailbox_create; ON CONFLICT: two first logins
 * at once). */
static const char specials_sql[] =
        "INSERT INTO mailboxes(account_id, name, uidvalidity, special_use) "
        "SELECT $1::bigint, v.n, (extract(epoch FROM now())::bigint % 4000000000) + 1 "
        "  + nextval('uidvalidity_seq') % 1000000, v.s "
        "FROM (VALUES ('INBOX', NULL), ('Drafts', '\\Drafts'), ('Sent', '\\Sent'), "
        "  ('Trash', '\\Trash'), ('Junk', '\\Junk'), ('Archive', '\\Archive')) v(n, s) "
        "WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account_id = $1::bigint "
        "  AND (mb.name = v.n OR (v.s IS NOT NULL AND mb.special_use = v.s))) "
        "ON CONFLICT (account_id, name) DO NOTHING";

/* The credentials are good and the session acts for account: take a
 * slot of imap.max_connections_per_account, then create the special-use
 * mailboxes.  Answers the session (at once or from the loop). */
static void auth_account(struct imap_pg *p, int64_t account, const char *login)
{
	char *id;
	const char *params[1];

	free(p->login);
	p->login = xstrdup(login);
	if (p->conns != NULL &&
	    !imap_account_conns_acquire(p->conns, account, p->max_per_account)) {
		auth_end(p, IMAP_AUTH_LIMIT, "too many connections for the account");
		kick(p);
		return;
	}
	p->account = account;
	p->counted = p->conns != NULL;
	id = id_str(p->account);
	params[0] = id;
	query(p, specials_sql, 1, params, specials_done);
	free(id);
}

static bool is_master(const struct imap_pg *p, const char *login)
{
	for (size_t i = 0; i < p->nmasters; i++)
		if (strcasecmp(p->masters[i], login) == 0)
			return true;
	return false;
}

/* Master login, second step: the user the master acts as. */
static void master_target_done(void *arg, const struct lookup_auth_result *r)
{
	struct imap_pg *p = arg;

	p->req = NULL;
	free(p->authzid);
	p->authzid = NULL;
	switch (r->status) {
	case LOOKUP_AUTH_TEMPFAIL:
		auth_end(p, IMAP_AUTH_TEMPFAIL, r->errstr);
		break;
	case LOOKUP_AUTH_NONE:
		auth_end(p, IMAP_AUTH_FAIL, "master login: unknown user");
		break;
	case LOOKUP_AUTH_FOUND:
		if (r->disabled) {
			auth_end(p, IMAP_AUTH_FAIL, "master login: user disabled");
			break;
		}
		auth_account(p, r->account_id, r->login);
		return; /* auth_account kicks */
	}
	free(p->master);
	p->master = NULL;
	kick(p);
}

static void auth_cb_done(void *arg, const struct auth_result *r)
{
	struct imap_pg *p = arg;

	p->areq = NULL;
	if (r->status != AUTH_OK) {
		auth_end(p, r->status == AUTH_TEMPFAIL ? IMAP_AUTH_TEMPFAIL : IMAP_AUTH_FAIL,
		         r->reason);
		kick(p);
		return;
	}
	if (p->authzid == NULL) {
		auth_account(p, r->account_id, r->login);
		return;
	}
	/* a master login: the authenticated account must be a master (the
	 * check is on the canonical login, so an address of it works too) */
	if (!is_master(p, r->login)) {
		free(p->authzid);
		p->authzid = NULL;
		auth_end(p, IMAP_AUTH_FAIL, "master login: not a master user");
		kick(p);
		return;
	}
	free(p->master);
	p->master = xstrdup(r->login);
	p->req = lookup_auth(p->pg, p->authzid, master_target_done, p);
}

/*
 * authzid other than the authcid: a master login (Dovecot's pattern):
 * authcid's password, then authzid must be an account.  Failures at any
 * step are plain authentication failures for the client (the session
 * reports them to the abuse counter like any other).
 */
static void op_auth(void *ctx, const char *authzid, const char *authcid, const char *password)
{
	struct imap_pg *p = ctx;

	free(p->authzid);
	p->authzid = NULL;
	free(p->master);
	p->master = NULL;
	if (authzid != NULL && authzid[0] != '\0' && strcasecmp(authzid, authcid) != 0) {
		if (p->nmasters == 0) {
			auth_end(p, IMAP_AUTH_FAIL, "master login: no master users configured");
			return;
		}
		p->authzid = xstrdup(authzid);
	}
	p->areq = auth_check(p->pg, p->pw, authcid, password, auth_cb_done, p);
}

/* --- mailboxes ------------------------------------------------------------ */

static unsigned special_attr(const char *s)
{
	static const struct {
		const char *name;
		unsigned attr;
	} map[] = {
	        {"\\All", IMAP_MBOX_ALL},       {"\\Archive", IMAP_MBOX_ARCHIVE},
	        {"\\Drafts", IMAP_MBOX_DRAFTS}, {"\\Flagged", IMAP_MBOX_FLAGGED},
	        {"\\Junk", IMAP_MBOX_JUNK},     {"\\Sent", IMAP_MBOX_SENT},
	        {"\\Trash", IMAP_MBOX_TRASH},
	};

	if (s == NULL)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (strcmp(s, map[i].name) == 0)
			return map[i].attr;
	return 0;
}

static const char *special_name(unsigned attr)
{
	switch (attr) {
	case IMAP_MBOX_ALL:
		return "\\All";
	case IMAP_MBOX_ARCHIVE:
		return "\\Archive";
	case IMAP_MBOX_DRAFTS:
		return "\\Drafts";
	case IMAP_MBOX_FLAGGED:
		return "\\Flagged";
	case IMAP_MBOX_JUNK:
		return "\\Junk";
	case IMAP_MBOX_SENT:
		return "\\Sent";
	case IMAP_MBOX_TRASH:
		return "\\Trash";
	default:
		return NULL;
	}
}

static void list_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	struct imap_mbox_entry *v = NULL;
	int n = 0;

	p->req = NULL;
	if (errstr == NULL) {
		n = PQntuples(res);
		v = xcalloc((size_t)n + 1, sizeof(*v));
		for (int i = 0; i < n; i++) {
			v[i].name = PQgetvalue(res, i, 0);
			v[i].attrs = special_attr(str_or_null(res, i, 1));
			v[i].subscribed = PQgetvalue(res, i, 2)[0] == 't';
		}
	}
	imap_session_list_done(p->session, pg_status(res, errstr), v, (size_t)n);
	free(v);
	kick(p);
}

static void op_list(void *ctx)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->account);
	const char *params[] = {id};

	query_prep(p,
	           "SELECT name, special_use, subscribed FROM mailboxes WHERE account_id = $1 "
	           "ORDER BY name",
	           1, params, list_done);
	free(id);
}

/* create/delete/rename/subscribe: ok when a row was touched. */
static void op_rows_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);

	p->req = NULL;
	if (st == IMAP_STORE_OK && atoi(PQcmdTuples((PGresult *)(uintptr_t)res)) == 0 &&
	    PQntuples(res) == 0)
		st = IMAP_STORE_NONEXISTENT;
	imap_session_op_done(p->session, st);
	kick(p);
}

static void op_create(void *ctx, const char *name, unsigned special)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->account);
	const char *params[] = {id, name, special_name(special)};

	query(p, "SELECT tp_mailbox_create($1, $2, $3)", 3, params, op_rows_done);
	free(id);
}

static void delete_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	int64_t gone = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK && PQntuples(res) == 1) {
		gone = (int64_t)u64(res, 0, 0);
		if (gone == 0)
			st = strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? IMAP_STORE_HASCHILDREN
			                                             : IMAP_STORE_NONEXISTENT;
	}
	imap_session_op_done(p->session, st);
	/* sessions that have it selected learn it is gone (a changes query
	 * finds no mailbox) */
	if (gone > 0)
		publish(p, gone);
	kick(p);
}

static void op_delete(void *ctx, const char *name)
{
	struct imap_pg *p = ctx;
	char *id;

	if (strcmp(name, "INBOX") == 0) {
		imap_session_op_done(p->session, IMAP_STORE_CANNOT);
		return;
	}
	id = id_str(p->account);
	const char *params[] = {id, name};
	/* RFC 3501 6.3.4: a mailbox with children may be deleted: its
	 * messages go and the name stays as a \Noselect parent (LIST shows
	 * names that only exist as parents so).  Such a name itself cannot
	 * be deleted (RFC 5530 HASCHILDREN). */
	query(p,
	      "WITH d AS (DELETE FROM mailboxes WHERE account_id = $1 AND name = $2 "
	      "  RETURNING id) "
	      "SELECT (SELECT id FROM d), EXISTS (SELECT 1 FROM mailboxes mb "
	      "  WHERE mb.account_id = $1 AND left(mb.name, length($2) + 1) = $2 || '/')",
	      2, params, delete_done);
	free(id);
}

static void rename_inbox_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);

	p->req = NULL;
	if (st == IMAP_STORE_OK && PQntuples(res) == 1 && u64(res, 0, 0) > 0)
		publish(p, (int64_t)u64(res, 0, 1));
	imap_session_op_done(p->session, st);
	kick(p);
}

static void op_rename(void *ctx, const char *from, const char *to)
{
	struct imap_pg *p = ctx;
	char *id;

	/* RFC 3501 6.3.5: renaming INBOX creates the new mailbox, moves every
	 * message of INBOX into it, and leaves INBOX (empty) in place */
	if (strcmp(from, "INBOX") == 0) {
		id = id_str(p->account);
		const char *iparams[] = {id, to};
		query(p,
		      "WITH src AS (SELECT mb.id FROM mailboxes mb WHERE mb.account_id = $1 "
		      "  AND mb.name = 'INBOX'), "
		      "n AS (SELECT tp_mailbox_create($1, $2, NULL) AS id), "
		      "c AS (SELECT x.src_uid FROM src, n, tp_copy(src.id, ARRAY(SELECT m.uid "
		      "  FROM messages m WHERE m.mailbox_id = src.id AND NOT m.expunged), n.id, "
		      "  true) x) "
		      "SELECT (SELECT count(*) FROM c), (SELECT id FROM src), (SELECT id FROM n)",
		      2, iparams, rename_inbox_done);
		free(id);
		return;
	}
	id = id_str(p->account);
	const char *params[] = {id, from, to};
	/* a parent renames its children with it */
	query(p,
	      "UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1) "
	      "WHERE account_id = $1 AND (name = $2 OR left(name, length($2) + 1) = $2 || '/')",
	      3, params, op_rows_done);
	free(id);
}

static void op_subscribe(void *ctx, const char *name, bool on)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->account);
	const char *params[] = {id, name, on ? "t" : "f"};

	query(p, "UPDATE mailboxes SET subscribed = $3 WHERE account_id = $1 AND name = $2", 3,
	      params, op_rows_done);
	free(id);
}

/* --- status / select ------------------------------------------------------ */

static void status_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	struct imap_status_info info;

	p->req = NULL;
	memset(&info, 0, sizeof(info));
	if (st == IMAP_STORE_OK && PQntuples(res) == 0)
		st = IMAP_STORE_NONEXISTENT;
	if (st == IMAP_STORE_OK) {
		info.uidvalidity = (uint32_t)u64(res, 0, 0);
		info.uidnext = (uint32_t)u64(res, 0, 1);
		info.highestmodseq = u64(res, 0, 2);
		info.messages = (uint32_t)u64(res, 0, 3);
		info.unseen = (uint32_t)u64(res, 0, 4);
		info.deleted = (uint32_t)u64(res, 0, 5);
		info.size = u64(res, 0, 6);
	}
	imap_session_status_done(p->session, st, &info);
	kick(p);
}

static void op_status(void *ctx, const char *name)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->account);
	const char *params[] = {id, name};

	query_prep(
	        p,
	        "SELECT mb.uidvalidity, mb.uidnext, mb.highestmodseq, count(m.id), "
	        "  count(m.id) FILTER (WHERE NOT '\\Seen' = ANY(m.flags)), "
	        "  count(m.id) FILTER (WHERE '\\Deleted' = ANY(m.flags)), coalesce(sum(m.size), 0) "
	        "FROM mailboxes mb LEFT JOIN messages m ON m.mailbox_id = mb.id AND NOT m.expunged "
	        "WHERE mb.account_id = $1 AND mb.name = $2 GROUP BY mb.id",
	        2, params, status_done);
	free(id);
}

static void sub_msg(void *arg, const char *channel, const char *msg, size_t len)
{
	struct imap_pg *p = arg;

	(void)channel;
	if (len == 8 + strlen(p->origin) && memcmp(msg, "changed ", 8) == 0 &&
	    memcmp(msg + 8, p->origin, len - 8) == 0)
		return; /* our own write, already reported to the session */
	if (p->session != NULL) {
		imap_session_notify(p->session);
		kick(p);
	}
}

static void select_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	struct imap_select_info info;
	uint32_t *uids = NULL;
	const char **kw = NULL;
	char *kwcopy = NULL;

	p->req = NULL;
	memset(&info, 0, sizeof(info));
	if (st == IMAP_STORE_OK && PQntuples(res) == 0)
		st = IMAP_STORE_NONEXISTENT;
	if (st == IMAP_STORE_OK) {
		const char *s = PQgetvalue(res, 0, 4);
		size_t n = 0, cap = 16;
		char ch[64];

		p->mbox = (int64_t)u64(res, 0, 0);
		info.uidvalidity = (uint32_t)u64(res, 0, 1);
		info.uidnext = (uint32_t)u64(res, 0, 2);
		info.highestmodseq = u64(res, 0, 3);
		uids = xmalloc(cap * sizeof(*uids));
		while (*s != '\0') {
			char *end;
			unsigned long v = strtoul(s, &end, 10);
			if (end == s)
				break;
			if (n == cap) {
				cap *= 2;
				uids = xrealloc(uids, cap * sizeof(*uids));
			}
			uids[n++] = (uint32_t)v;
			s = end;
			while (*s == ' ')
				s++;
		}
		info.uids = uids;
		info.nuids = n;
		info.first_unseen_uid = (uint32_t)u64(res, 0, 5);
		kw = split_words(PQgetvalue(res, 0, 6), &info.nkeywords, &kwcopy);
		info.keywords = kw;
		mem_unsubscribe(&p->sub);
		if (p->mem != NULL) {
			snprintf(ch, sizeof(ch), IMAP_PG_CHANNEL_FMT, (long long)p->mbox);
			p->sub = mem_subscribe(p->mem, ch, sub_msg, p);
		}
	}
	imap_session_select_done(p->session, st, &info);
	free(uids);
	free(kw);
	free(kwcopy);
	kick(p);
}

static void op_select(void *ctx, const char *name, bool readonly)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->account);
	const char *params[] = {id, name};

	(void)readonly;
	p->mbox = 0;
	p->known_epoch = 0;
	mem_unsubscribe(&p->sub);
	query_prep(
	        p,
	        "SELECT mb.id, mb.uidvalidity, mb.uidnext, mb.highestmodseq, "
	        "  coalesce((SELECT string_agg(m.uid::text, ' ' ORDER BY m.uid) FROM messages m "
	        "    WHERE m.mailbox_id = mb.id AND NOT m.expunged), ''), "
	        "  (SELECT min(m.uid) FROM messages m WHERE m.mailbox_id = mb.id AND NOT "
	        "m.expunged "
	        "    AND NOT '\\Seen' = ANY(m.flags)), "
	        "  coalesce((SELECT string_agg(DISTINCT f, ' ') FROM messages m, unnest(m.flags) f "
	        "    WHERE m.mailbox_id = mb.id AND NOT m.expunged AND left(f, 1) <> '\\'), '') "
	        "FROM mailboxes mb WHERE mb.account_id = $1 AND mb.name = $2",
	        2, params, select_done);
	free(id);
}

static void op_unselect(void *ctx)
{
	struct imap_pg *p = ctx;

	p->mbox = 0;
	p->known_epoch = 0;
	mem_unsubscribe(&p->sub);
}

/* --- fetch / read ----------------------------------------------------------- */

/* messages.parts as written by delivery_sql_parts_json, read back from
 * jsonb's text form: an array of flat objects with string, number and
 * boolean values.  A malformed table gives what was parsed so far. */
static struct mime_part *parts_parse(const char *s, size_t *n_r, char ***secs_r)
{
	struct mime_part *v = NULL;
	char **secs = NULL;
	size_t n = 0;
	struct mime_part *cur = NULL;

	*n_r = 0;
	*secs_r = NULL;
	if (s == NULL)
		return NULL;
	while (*s != '\0') {
		if (*s == '{') {
			v = xrealloc(v, (n + 1) * sizeof(*v));
			secs = xrealloc(secs, (n + 1) * sizeof(*secs));
			cur = &v[n];
			memset(cur, 0, sizeof(*cur));
			secs[n] = NULL;
			cur->section = (char *)"";
			n++;
			s++;
		} else if (*s == '"' && cur != NULL) {
			const char *k = ++s, *ke = strchr(k, '"');
			size_t kl;
			if (ke == NULL)
				break;
			kl = (size_t)(ke - k);
			s = ke + 1;
			while (*s == ' ' || *s == ':')
				s++;
			if (*s == '"') {
				const char *vs = ++s, *ve = strchr(vs, '"');
				if (ve == NULL)
					break;
				if (kl == 7 && memcmp(k, "section", 7) == 0) {
					secs[n - 1] = xstrndup(vs, (size_t)(ve - vs));
					cur->section = secs[n - 1];
				}
				s = ve + 1;
			} else if (*s == 't' || *s == 'f') {
				bool b = *s == 't';
				if (kl == 9 && memcmp(k, "multipart", 9) == 0)
					cur->is_multipart = b;
				else if (kl == 7 && memcmp(k, "message", 7) == 0)
					cur->is_message = b;
				while (*s >= 'a' && *s <= 'z')
					s++;
			} else {
				char *end;
				uint64_t x = strtoull(s, &end, 10);
				if (end == s)
					break;
				s = end;
				if (kl == 9 && memcmp(k, "hdr_start", 9) == 0)
					cur->hdr_start = x;
				else if (kl == 10 && memcmp(k, "body_start", 10) == 0)
					cur->body_start = x;
				else if (kl == 8 && memcmp(k, "body_end", 8) == 0)
					cur->body_end = x;
				else if (kl == 14 && memcmp(k, "msg_body_start", 14) == 0)
					cur->msg_body_start = x;
				else if (kl == 5 && memcmp(k, "lines", 5) == 0)
					cur->lines = x;
			}
		} else {
			s++;
		}
	}
	*n_r = n;
	*secs_r = secs;
	return v;
}

/*
 * The stored metadata of fetched messages joins the body octets in the
 * process-wide cache (meta_cache.h): it is written once, at delivery, so
 * a later fetch of the same items can be answered without Postgres
 * (op_fetch_cached).  An entry gains the items of each fetch.
 */
static void meta_keep(struct imap_pg *p, const PGresult *res, int row, unsigned want)
{
	struct imap_meta_entry e = {0}, add = {0};
	const uint8_t *old;
	char key[64];
	size_t n = 0;
	struct buf b;

	imap_meta_key(key, sizeof(key), p->mbox, (uint32_t)u64(res, row, 0));
	add.have = (want & IMAP_META_CACHE_BITS) | IMAP_META_INTERNALDATE | IMAP_META_SIZE;
	if (add.have & (IMAP_META_PARTS | IMAP_META_HEADER))
		add.have |= IMAP_META_PARTS | IMAP_META_HEADER;
	add.internaldate = (int64_t)strtoll(PQgetvalue(res, row, 3), NULL, 10);
	add.size = u64(res, row, 4);
	add.envelope = str_or_null(res, row, 5);
	add.bodystructure = str_or_null(res, row, 6);
	add.body = str_or_null(res, row, 7);
	add.parts = str_or_null(res, row, 8);
	add.blob = PQgetvalue(res, row, 9);
	old = imap_blob_cache_get(p->cache, key, 0, 0, &n);
	if (old == NULL || imap_meta_decode(old, n, &e) < 0)
		memset(&e, 0, sizeof(e));
	if ((e.have & add.have) == add.have)
		return; /* nothing new */
	imap_meta_merge(&e, &add);
	buf_init(&b, 0);
	imap_meta_encode(&e, &b);
	imap_blob_cache_put(p->cache, key, 0, 0, buf_ptr(&b), buf_len(&b));
	buf_free(&b);
}

static void cached_free(struct imap_pg *p)
{
	for (size_t i = 0; i < p->ncached; i++) {
		for (size_t k = 0; k < p->cached[i].n; k++)
			free(p->cached[i].secs[k]);
		free(p->cached[i].secs);
		free(p->cached[i].parts);
	}
	free(p->cached);
	p->cached = NULL;
	p->ncached = 0;
}

static bool op_fetch_cached(void *ctx, const uint32_t *uids, size_t n, unsigned want,
                            struct imap_msg_meta *rows)
{
	struct imap_pg *p = ctx;
	unsigned need = want & IMAP_META_CACHE_BITS;

	cached_free(p);
	if (p->cache == NULL || p->mbox == 0 || (want & ~IMAP_META_CACHE_BITS) != 0)
		return false;
	p->cached = xcalloc(n ? n : 1, sizeof(*p->cached));
	for (size_t i = 0; i < n; i++) {
		struct imap_meta_entry e;
		struct imap_msg_meta *r = &rows[i];
		const uint8_t *v;
		char key[64];
		size_t len = 0;

		imap_meta_key(key, sizeof(key), p->mbox, uids[i]);
		v = imap_blob_cache_get(p->cache, key, 0, 0, &len);
		if (v == NULL || imap_meta_decode(v, len, &e) < 0 || (e.have & need) != need) {
			cached_free(p);
			return false;
		}
		/* the strings point into the cache, which no put changes before the
		 * session has copied them (the call is synchronous) */
		r->uid = uids[i];
		r->internaldate = e.internaldate;
		r->size = e.size;
		r->envelope = e.envelope;
		r->bodystructure = e.bodystructure;
		r->body = e.body;
		r->blob = e.blob;
		if (need & (IMAP_META_PARTS | IMAP_META_HEADER)) {
			p->cached[i].parts =
			        parts_parse(e.parts, &p->cached[i].n, &p->cached[i].secs);
			r->parts = p->cached[i].parts;
			r->nparts = p->cached[i].n;
		}
		p->ncached = i + 1;
	}
	return true;
}

static void fetch_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	struct imap_msg_meta *rows = NULL;
	const char ***flags = NULL;
	char **copies = NULL;
	char ***secs = NULL;
	int n = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK) {
		n = PQntuples(res);
		rows = xcalloc((size_t)n + 1, sizeof(*rows));
		flags = xcalloc((size_t)n + 1, sizeof(*flags));
		copies = xcalloc((size_t)n + 1, sizeof(*copies));
		secs = xcalloc((size_t)n + 1, sizeof(*secs));
		for (int i = 0; i < n; i++) {
			struct imap_msg_meta *r = &rows[i];
			r->uid = (uint32_t)u64(res, i, 0);
			r->modseq = u64(res, i, 1);
			flags[i] = split_words(PQgetvalue(res, i, 2), &r->nflags, &copies[i]);
			r->flags = flags[i];
			r->internaldate = (int64_t)strtoll(PQgetvalue(res, i, 3), NULL, 10);
			r->size = u64(res, i, 4);
			r->envelope = str_or_null(res, i, 5);
			r->bodystructure = str_or_null(res, i, 6);
			r->body = str_or_null(res, i, 7);
			r->parts = parts_parse(str_or_null(res, i, 8), &r->nparts, &secs[i]);
			r->blob = PQgetvalue(res, i, 9);
			if (p->cache != NULL && p->mbox != 0)
				meta_keep(p, res, i, p->fetch_want);
		}
	}
	imap_session_fetch_done(p->session, st, rows, (size_t)n);
	for (int i = 0; i < n; i++) {
		free(flags[i]);
		free(copies[i]);
		for (size_t j = 0; j < rows[i].nparts; j++)
			free(secs[i][j]);
		free(secs[i]);
		free((void *)(uintptr_t)rows[i].parts);
	}
	free(rows);
	free(flags);
	free(copies);
	free(secs);
	kick(p);
}

static void op_fetch(void *ctx, const uint32_t *uids, size_t n, unsigned want)
{
	struct imap_pg *p = ctx;

	p->fetch_want = want;
	char *id = id_str(p->mbox), *arr = pg_array_uint32(uids, n);
	const char *params[] = {id, arr};
	char *sql;

	/* the columns the request needs; the others come back NULL, so a
	 * FLAGS-only sync (mbsync, FETCH 1:* (UID FLAGS)) reads little */
	sql = xasprintf(
	        "SELECT uid, modseq, array_to_string(flags, ' '), "
	        "  extract(epoch FROM internaldate)::bigint, size, %s, %s, %s, %s, blob_key "
	        "FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) "
	        "AND NOT expunged ORDER BY uid",
	        (want & IMAP_META_ENVELOPE) != 0 ? "envelope" : "NULL",
	        (want & IMAP_META_BODYSTRUCTURE) != 0 ? "bodystructure" : "NULL",
	        (want & IMAP_META_BODY) != 0 ? "body" : "NULL",
	        (want & (IMAP_META_PARTS | IMAP_META_HEADER)) != 0 ? "parts::text" : "NULL");
	query_prep(p, sql, 2, params, fetch_done);
	free(sql);
	free(id);
	free(arr);
}

static void read_done(void *arg, enum blob_status st, const uint8_t *data, size_t len,
                      const char *errstr)
{
	struct imap_pg *p = arg;

	(void)errstr;
	p->breq = NULL;
	if (st == BLOB_OK && p->cache != NULL && p->read_blob != NULL)
		imap_blob_cache_put(p->cache, p->read_blob, p->read_off, p->read_len, data, len);
	free(p->read_blob);
	p->read_blob = NULL;
	imap_session_read_done(
	        p->session,
	        st == BLOB_OK ? IMAP_STORE_OK
	                      : (st == BLOB_NOT_FOUND ? IMAP_STORE_FAIL : IMAP_STORE_TEMPFAIL),
	        data, len);
	kick(p);
}

static void read_start(struct imap_pg *p)
{
	uint64_t len = p->read_len;

	p->breq = blob_get(p->blob, p->read_blob, p->read_off, len,
	                   len > BLOB_READ_MAX ? len : BLOB_READ_MAX, read_done, p);
}

/*
 * Body octets: from the local cache when an earlier fetch read the same
 * range (DESIGN.md: body fetches read blobs through a bounded local
 * cache), else from the blob store, and the answer is kept.  The cache
 * is asked from the loop (p->defer), never inside the request: a hit
 * answered at once would let a FETCH of many small cached messages
 * recurse once per message (request, completion, next request).
 */
static void op_read(void *ctx, uint32_t uid, const char *blob, uint64_t offset, uint64_t len)
{
	struct imap_pg *p = ctx;

	(void)uid;
	if (len == 0) {
		imap_session_read_done(p->session, IMAP_STORE_OK, (const uint8_t *)"", 0);
		return;
	}
	free(p->read_blob);
	p->read_blob = xstrdup(blob);
	p->read_off = offset;
	p->read_len = len;
	if (p->cache != NULL && p->defer != NULL) {
		p->read_deferred = true;
		p->defer(p);
		return;
	}
	read_start(p);
}

void imap_pg_deferred(struct imap_pg *p)
{
	const uint8_t *hit;
	size_t n = 0;

	if (!p->read_deferred)
		return;
	p->read_deferred = false;
	hit = p->cache != NULL
	              ? imap_blob_cache_get(p->cache, p->read_blob, p->read_off, p->read_len, &n)
	              : NULL;
	if (hit == NULL) {
		read_start(p);
		return;
	}
	free(p->read_blob);
	p->read_blob = NULL;
	imap_session_read_done(p->session, IMAP_STORE_OK, hit, n);
	kick(p);
}

/* --- store / expunge / copy ------------------------------------------------- */

static void store_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	struct imap_flag_update *v = NULL;
	const char ***fl = NULL;
	char **copies = NULL;
	int n = 0;
	size_t nchanged = 0;
	uint64_t lo = UINT64_MAX, hi = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK) {
		n = PQntuples(res);
		v = xcalloc((size_t)n + 1, sizeof(*v));
		fl = xcalloc((size_t)n + 1, sizeof(*fl));
		copies = xcalloc((size_t)n + 1, sizeof(*copies));
		for (int i = 0; i < n; i++) {
			v[i].uid = (uint32_t)u64(res, i, 0);
			v[i].modseq = u64(res, i, 1);
			fl[i] = split_words(PQgetvalue(res, i, 2), &v[i].nflags, &copies[i]);
			v[i].flags = fl[i];
			v[i].failed = PQgetvalue(res, i, 3)[0] == 't';
			if (PQgetvalue(res, i, 4)[0] == 't') {
				nchanged++;
				lo = v[i].modseq < lo ? v[i].modseq : lo;
				hi = v[i].modseq > hi ? v[i].modseq : hi;
			}
		}
		/* tp_store_flags numbers the changed rows consecutively under
		 * the mailbox row lock */
		if (nchanged == 0)
			imap_session_write_modseq(p->session, 0, 0);
		else if (hi - lo + 1 == nchanged)
			imap_session_write_modseq(p->session, lo - 1, hi);
	}
	imap_session_store_done(p->session, st, v, (size_t)n);
	for (int i = 0; i < n; i++) {
		free(fl[i]);
		free(copies[i]);
	}
	free(v);
	free(fl);
	free(copies);
	if (nchanged > 0 && hi - lo + 1 == nchanged)
		publish_own(p, p->mbox);
	else if (nchanged > 0)
		publish(p, p->mbox);
	kick(p);
}

static void op_store(void *ctx, const uint32_t *uids, size_t n, enum imap_flags_mode mode,
                     const char *const *flags, size_t nflags, const uint64_t *unchangedsince)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->mbox), *arr = pg_array_uint32(uids, n),
	     *fa = pg_array_text(flags, nflags);
	char *us = unchangedsince != NULL ? xasprintf("%" PRIu64, *unchangedsince) : NULL;
	const char *params[] = {id, arr,
	                        mode == IMAP_FLAGS_SET   ? "set"
	                        : mode == IMAP_FLAGS_ADD ? "add"
	                                                 : "remove",
	                        fa, us};

	query_prep(p,
	           "SELECT uid, modseq, array_to_string(flags, ' '), failed, changed "
	           "FROM tp_store_flags($1, $2::bigint[], $3, $4::text[], $5::bigint)",
	           5, params, store_done);
	free(id);
	free(arr);
	free(fa);
	free(us);
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* One statement: tp_expunge's rows all carry the mailbox's new
 * HIGHESTMODSEQ, one above the one before (the mailbox row is locked). */
static void expunge_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	uint32_t *uids = NULL;
	size_t n = 0;
	uint64_t modseq = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK) {
		n = (size_t)PQntuples(res);
		uids = xcalloc(n + 1, sizeof(*uids));
		for (size_t i = 0; i < n; i++) {
			uids[i] = (uint32_t)u64(res, (int)i, 0);
			modseq = u64(res, (int)i, 1);
		}
		/* tp_expunge returns rows in no particular order */
		qsort(uids, n, sizeof(*uids), u32_cmp);
		if (n > 0 && modseq > 0)
			imap_session_write_modseq(p->session, modseq - 1, modseq);
	}
	imap_session_expunge_done(p->session, st, uids, n, modseq);
	if (n > 0)
		publish_own(p, p->mbox);
	free(uids);
	kick(p);
}

static void op_expunge(void *ctx, const uint32_t *uids, size_t n)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->mbox), *arr = uids != NULL ? pg_array_uint32(uids, n) : NULL;
	const char *params[] = {id, arr};

	query_prep(p, "SELECT uid, modseq FROM tp_expunge($1, $2::bigint[])", 2, params,
	           expunge_done);
	free(id);
	free(arr);
}

static void copy_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	uint32_t *src = NULL, *dst = NULL, uidvalidity = 0;
	size_t n = 0;
	int64_t dst_id = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK) {
		int rows = PQntuples(res);
		/* row 0: the destination (id, uidvalidity); then the pairs */
		if (rows == 0 || PQgetisnull(res, 0, 1)) {
			st = IMAP_STORE_NONEXISTENT;
		} else {
			dst_id = (int64_t)u64(res, 0, 1);
			uidvalidity = (uint32_t)u64(res, 0, 2);
			src = xcalloc((size_t)rows, sizeof(*src));
			dst = xcalloc((size_t)rows, sizeof(*dst));
			for (int i = 1; i < rows; i++) {
				src[n] = (uint32_t)u64(res, i, 3);
				dst[n] = (uint32_t)u64(res, i, 4);
				n++;
			}
		}
	}
	imap_session_copy_done(p->session, st, uidvalidity, src, dst, n);
	free(src);
	free(dst);
	if (n > 0) {
		publish(p, dst_id);
		publish(p, p->mbox);
	}
	kick(p);
}

static void op_copy(void *ctx, const uint32_t *uids, size_t n, const char *dst, bool move)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->mbox), *acc = id_str(p->account), *arr = pg_array_uint32(uids, n);
	const char *params[] = {id, arr, acc, dst, move ? "t" : "f"};

	/* One statement: the destination row first (NULL when there is none),
	 * then tp_copy's pairs.  COPY into the selected mailbox itself cannot
	 * use tp_copy (it refuses p_src = p_dst): the pairs come from a plain
	 * insert under the mailbox row lock.  MOVE there works as in Dovecot
	 * (RFC 6851 3.3 defines MOVE as COPY, then expunge of the sources):
	 * the copies get new UIDs at the end and the originals are expunged,
	 * all at one new MODSEQ. */
	query(p,
	      "WITH d AS (SELECT mb.id, mb.uidvalidity FROM mailboxes mb "
	      "  WHERE mb.account_id = $3 AND mb.name = $4), "
	      "dd AS (SELECT d.id FROM d WHERE d.id <> $1::bigint), "
	      "other AS (SELECT c.src_uid, c.dst_uid FROM dd, "
	      "  tp_copy($1::bigint, $2::bigint[], dd.id, $5::boolean) c), "
	      "src AS (SELECT m.*, row_number() OVER (ORDER BY m.uid) AS rn FROM messages m, d "
	      "  WHERE d.id = $1::bigint AND m.mailbox_id = $1::bigint "
	      "  AND m.uid = ANY($2::bigint[]) AND NOT m.expunged), "
	      "lk AS (UPDATE mailboxes mb SET uidnext = mb.uidnext + (SELECT count(*) FROM src), "
	      "  highestmodseq = mb.highestmodseq + 1, used_bytes = mb.used_bytes + CASE WHEN "
	      "  $5::boolean THEN 0 ELSE (SELECT coalesce(sum(src.size), 0) FROM src) END "
	      "  WHERE mb.id = $1::bigint "
	      "  AND EXISTS (SELECT 1 FROM src) RETURNING mb.uidnext - (SELECT count(*) FROM src) "
	      "  AS first, mb.highestmodseq AS ms), "
	      "same AS (INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, "
	      "  blob_key, envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, "
	      "  hdr_date, hdr_message_id, parts, search_text) "
	      "  SELECT $1::bigint, lk.first + src.rn - 1, lk.ms, src.flags, src.internaldate, "
	      "  src.size, src.blob_key, src.envelope, src.bodystructure, src.body, src.hdr_from, "
	      "  src.hdr_to, src.hdr_cc, src.hdr_subject, src.hdr_date, src.hdr_message_id, "
	      "  src.parts, src.search_text FROM src, lk RETURNING id, uid), "
	      "words AS (INSERT INTO message_words(message_id, search_tsv) "
	      "  SELECT same.id, w.search_tsv FROM same, lk, src, message_words w "
	      "  WHERE src.rn = same.uid - lk.first + 1 AND w.message_id = src.id), "
	      "gone AS (UPDATE messages m SET expunged = true, modseq = lk.ms, envelope = NULL, "
	      "  bodystructure = NULL, body = NULL, hdr_from = NULL, hdr_to = NULL, hdr_cc = NULL, "
	      "  hdr_subject = NULL, hdr_date = NULL, hdr_message_id = NULL, parts = NULL, "
	      "  search_text = NULL FROM lk, src "
	      "  WHERE $5::boolean AND m.mailbox_id = $1::bigint AND m.uid = src.uid), "
	      "gone_words AS (DELETE FROM message_words w USING src, lk "
	      "  WHERE $5::boolean AND w.message_id = src.id) "
	      "SELECT * FROM (SELECT 0 AS k, d.id, d.uidvalidity, NULL::bigint AS s, "
	      "  NULL::bigint AS t FROM (SELECT 1) one LEFT JOIN d ON true) a "
	      "UNION ALL SELECT 1, NULL, NULL, src_uid, dst_uid FROM other "
	      "UNION ALL SELECT 1, NULL, NULL, src.uid, same.uid FROM same, lk, src "
	      "  WHERE src.rn = same.uid - lk.first + 1 "
	      "ORDER BY 1, 4",
	      5, params, copy_done);
	free(id);
	free(acc);
	free(arr);
}

/* --- append ------------------------------------------------------------------ */

static void *op_spool_open(void *ctx)
{
	struct imap_pg_spool *sp = xcalloc(1, sizeof(*sp));
	struct mime_limits lim;

	(void)ctx;
	sp->fd = -1;
	sp->sha = EVP_MD_CTX_new();
	ASSERT(sp->sha != NULL && EVP_DigestInit_ex(sp->sha, EVP_sha256(), NULL) == 1);
	mime_limits_default(&lim);
	sp->mp = mime_parser_new(&lim);
	return sp;
}

/* Move an in-memory spool to a temporary file.  0, or -1. */
static int spool_to_file(struct imap_pg_spool *sp)
{
	const char *dir = getenv("TMPDIR");

	snprintf(sp->path, sizeof(sp->path), "%s/tp-imap-XXXXXX",
	         dir != NULL && strlen(dir) < 200 ? dir : "/tmp");
	sp->fd = mkostemp(sp->path, O_CLOEXEC);
	if (sp->fd < 0) {
		sp->path[0] = '\0';
		return -1;
	}
	if (fd_write_all(sp->fd, sp->mem, (size_t)sp->size) < 0)
		return -1;
	spool_mem_total -= sp->cap;
	free(sp->mem);
	sp->mem = NULL;
	sp->cap = 0;
	return 0;
}

static int op_spool_write(void *ctx, void *spool, const uint8_t *p, size_t n)
{
	struct imap_pg_spool *sp = spool;
	uint64_t want = sp->size + n;

	(void)ctx;
	if (n == 0)
		return 0;
	if (sp->fd < 0 && want > sp->cap) {
		size_t cap = sp->cap > 0 ? sp->cap : 4096;
		while (cap < want)
			cap *= 2;
		if (want <= SPOOL_MEM_MAX && spool_mem_total - sp->cap + cap <= SPOOL_MEM_TOTAL) {
			sp->mem = xrealloc(sp->mem, cap);
			spool_mem_total += cap - sp->cap;
			sp->cap = cap;
		} else if (spool_to_file(sp) < 0) {
			return -1;
		}
	}
	if (sp->fd >= 0) {
		if (fd_write_all(sp->fd, p, n) < 0)
			return -1;
	} else {
		memcpy(sp->mem + sp->size, p, n);
	}
	ASSERT(EVP_DigestUpdate(sp->sha, p, n) == 1);
	mime_parser_feed(sp->mp, p, n);
	sp->size = want;
	return 0;
}

static void spool_free(struct imap_pg_spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->fd >= 0)
		close(sp->fd);
	if (sp->path[0] != '\0')
		unlink(sp->path);
	spool_mem_total -= sp->cap;
	free(sp->mem);
	EVP_MD_CTX_free(sp->sha);
	mime_parser_free(&sp->mp);
	free(sp);
}

/* The blob key of a complete spool (once). */
static void spool_key(struct imap_pg_spool *sp, char key[BLOB_KEY_LEN + 1])
{
	unsigned char md[32];
	unsigned int len = sizeof(md);

	ASSERT(EVP_DigestFinal_ex(sp->sha, md, &len) == 1);
	blob_key_hex(md, key);
}

static void op_spool_abort(void *ctx, void *spool)
{
	(void)ctx;
	spool_free(spool);
}

static void append_free(struct imap_pg_append *a)
{
	if (a == NULL)
		return;
	/* a put still running frees them soon, whatever happens to us */
	spool_mem_total -= a->put_mem;
	for (size_t i = 0; i < a->n; i++) {
		spool_free(a->v[i].spool);
		for (size_t j = 0; j < a->v[i].nflags; j++)
			free((void *)(uintptr_t)a->v[i].flags[j]);
		free((void *)(uintptr_t)a->v[i].flags);
		mime_result_free(&a->mimes[i]);
	}
	free(a->mimes);
	free(a->keys);
	free(a->v);
	free(a->uids);
	free(a->mailbox);
	free(a);
}

static void append_finish(struct imap_pg *p, enum imap_store_status st)
{
	struct imap_pg_append *a = p->app;

	p->app = NULL;
	imap_session_append_done(p->session, st, a->uidvalidity, a->uids,
	                         st == IMAP_STORE_OK ? a->n : 0);
	if (a->stored && a->own)
		publish_own(p, a->mbox_id);
	else if (a->stored)
		publish(p, a->mbox_id);
	append_free(a);
	kick(p);
}

static void deliver_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	struct imap_pg_append *a = p->app;
	enum imap_store_status st = pg_status(res, errstr);

	p->req = NULL;
	if (st != IMAP_STORE_OK || (size_t)PQntuples(res) != a->n) {
		append_finish(p, st != IMAP_STORE_OK ? st : IMAP_STORE_FAIL);
		return;
	}
	a->stored = true;
	for (size_t i = 0; i < a->n; i++)
		a->uids[i] = (uint32_t)u64(res, (int)i, 1);
	/* into the selected mailbox: each tp_deliver took the next MODSEQ
	 * under the mailbox row lock, held to commit */
	if (a->mbox_id == p->mbox && a->n > 0) {
		uint64_t first = u64(res, 0, 2), last = u64(res, (int)a->n - 1, 2);
		if (first > 0 && last - first + 1 == a->n) {
			imap_session_write_modseq(p->session, first - 1, last);
			a->own = true;
		}
	}
	append_finish(p, IMAP_STORE_OK);
}

static char *utf8_or_null(const char *s)
{
	if (s == NULL || !delivery_sql_utf8_valid(s, strlen(s)))
		return NULL;
	return xstrdup(s);
}

static char *search_text(const struct mime_result *r)
{
	size_t hn = r->search_header_len, bn = r->search_body_len, tn;
	char *t = xmalloc(hn + bn + 2);

	memcpy(t, r->search_header != NULL ? r->search_header : "", hn);
	t[hn] = '\n';
	memcpy(t + hn + 1, r->search_body != NULL ? r->search_body : "", bn);
	tn = schema_utf8_truncate(t, hn + 1 + bn, SCHEMA_SEARCH_TEXT_MAX);
	t[tn] = '\0';
	return t;
}

/*
 * Every message of the APPEND in ONE statement (RFC 3502: all or none):
 * one tp_deliver per message, joined with UNION ALL, which runs its
 * branches in order, so the UIDs ascend with the messages.
 */
static void deliver_all(struct imap_pg *p)
{
	struct imap_pg_append *a = p->app;
	size_t np = a->n * APPEND_PARAMS;
	char **pv = xcalloc(np + 1, sizeof(*pv));
	struct buf sql;

	buf_init(&sql, 0);
	buf_puts(&sql, "SELECT k, uid, modseq FROM (");
	for (size_t i = 0; i < a->n; i++) {
		const struct imap_append_msg *m = &a->v[i];
		const struct mime_result *r = a->mimes[i];
		char **q = pv + i * APPEND_PARAMS;
		int b = (int)(i * APPEND_PARAMS);

		q[0] = id_str(a->mbox_id);
		q[1] = xstrdup(a->keys[i]);
		q[2] = xasprintf("%" PRIu64, m->size);
		q[3] = m->has_date ? xasprintf("%" PRId64, m->date) : NULL;
		q[4] = pg_array_text(m->flags, m->nflags);
		q[5] = utf8_or_null(r->envelope);
		q[6] = utf8_or_null(r->bodystructure);
		q[7] = utf8_or_null(r->body);
		q[8] = utf8_or_null(r->from);
		q[9] = utf8_or_null(r->to);
		q[10] = utf8_or_null(r->cc);
		q[11] = utf8_or_null(r->subject);
		q[12] = r->has_date ? xasprintf("%" PRId64, r->date) : NULL;
		q[13] = utf8_or_null(r->message_id);
		q[14] = delivery_sql_parts_json(r->parts, r->nparts);
		q[15] = search_text(r);
		buf_printf(&sql,
		           "%sSELECT %zu AS k, d.uid, d.modseq FROM tp_deliver(ARRAY[$%d::bigint], "
		           "$%d, "
		           "$%d::bigint, coalesce(to_timestamp($%d::double precision), now()), "
		           "$%d::text[], $%d, $%d, $%d, $%d, $%d, $%d, $%d, "
		           "to_timestamp($%d::double precision), $%d, $%d::jsonb, $%d) d",
		           i > 0 ? " UNION ALL " : "", i, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6,
		           b + 7, b + 8, b + 9, b + 10, b + 11, b + 12, b + 13, b + 14, b + 15,
		           b + 16);
	}
	buf_puts(&sql, ") t ORDER BY k");
	buf_append(&sql, "", 1);
	/* one message (the common case): a fixed text, prepared */
	if (a->n == 1)
		query_prep(p, (const char *)buf_ptr(&sql), (int)np, (const char *const *)pv,
		           deliver_done);
	else
		query(p, (const char *)buf_ptr(&sql), (int)np, (const char *const *)pv,
		      deliver_done);
	for (size_t i = 0; i < np; i++)
		free(pv[i]);
	free(pv);
	buf_free(&sql);
}

/* Parse and put the blob of message a->i, then the next; then deliver. */
static void append_next(struct imap_pg *p);

static void put_done(void *arg, enum blob_status st, const char *errstr)
{
	struct imap_pg *p = arg;

	(void)errstr;
	p->breq = NULL;
	spool_mem_total -= p->app->put_mem;
	p->app->put_mem = 0;
	if (st != BLOB_OK) {
		append_finish(p, IMAP_STORE_TEMPFAIL);
		return;
	}
	p->app->i++;
	append_next(p);
}

static void append_next(struct imap_pg *p)
{
	struct imap_pg_append *a = p->app;
	struct imap_pg_spool *sp;

	if (a->i == a->n) {
		deliver_all(p);
		return;
	}
	sp = a->v[a->i].spool;
	if (a->quota > 0 && a->used + sp->size > a->quota) {
		append_finish(p, IMAP_STORE_OVERQUOTA);
		return;
	}
	a->used += sp->size;
	a->mimes[a->i] = mime_parser_finish(&sp->mp);
	if (a->mimes[a->i] == NULL) {
		append_finish(p, IMAP_STORE_FAIL);
		return;
	}
	a->v[a->i].size = sp->size;
	if (sp->fd < 0) {
		/* the store frees the bytes; they count until the put ends */
		uint8_t *mem = sp->mem;

		a->put_mem = sp->cap;
		sp->mem = NULL;
		sp->cap = 0;
		p->breq = blob_put_mem(p->blob, a->keys[a->i], mem, sp->size, put_done, p);
	} else {
		p->breq = blob_put(p->blob, a->keys[a->i], sp->path, sp->size, put_done, p);
	}
}

static void append_mbox_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	struct imap_pg_append *a = p->app;
	enum imap_store_status st = pg_status(res, errstr);

	p->req = NULL;
	if (st == IMAP_STORE_OK && (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)))
		st = IMAP_STORE_NONEXISTENT;
	if (st != IMAP_STORE_OK) {
		append_finish(p, st);
		return;
	}
	a->mbox_id = (int64_t)u64(res, 0, 0);
	a->uidvalidity = (uint32_t)u64(res, 0, 1);
	a->quota = u64(res, 0, 2);
	a->used = u64(res, 0, 3);
	append_next(p);
}

static void op_append(void *ctx, const char *mailbox, const struct imap_append_msg *v, size_t n)
{
	struct imap_pg *p = ctx;
	struct imap_pg_append *a = xcalloc(1, sizeof(*a));
	char *acc = id_str(p->account), *keys, *sizes, **sv;
	const char *params[4], **kv;

	a->mailbox = xstrdup(mailbox);
	a->n = n;
	a->v = xcalloc(n + 1, sizeof(*a->v));
	a->uids = xcalloc(n + 1, sizeof(*a->uids));
	a->mimes = xcalloc(n + 1, sizeof(*a->mimes));
	a->keys = xcalloc(n + 1, sizeof(*a->keys));
	for (size_t i = 0; i < n; i++) {
		const char **fl = xcalloc(v[i].nflags + 1, sizeof(*fl));
		a->v[i] = v[i];
		for (size_t j = 0; j < v[i].nflags; j++)
			fl[j] = xstrdup(v[i].flags[j]);
		a->v[i].flags = fl;
	}
	if (n > APPEND_MAX_MSGS) {
		imap_session_append_done(p->session, IMAP_STORE_LIMIT, 0, NULL, 0);
		append_free(a);
		free(acc);
		return;
	}
	p->app = a;
	/* the blob keys, known since the literals ended, reserved with the
	 * mailbox lookup: the blob collector then leaves them alone until
	 * tp_deliver references them (blob.h), also when a blob of the same
	 * content already exists unreferenced and the put finds it there */
	kv = xcalloc(n + 1, sizeof(*kv));
	sv = xcalloc(n + 1, sizeof(*sv));
	for (size_t i = 0; i < n; i++) {
		struct imap_pg_spool *sp = a->v[i].spool;

		spool_key(sp, a->keys[i]);
		kv[i] = a->keys[i];
		sv[i] = xasprintf("%" PRIu64, sp->size);
	}
	keys = pg_array_text(kv, n);
	sizes = pg_array_text((const char *const *)sv, n);
	params[0] = acc;
	params[1] = mailbox;
	params[2] = keys;
	params[3] = sizes;
	query_prep(p,
	           "SELECT id, uidvalidity, quota, used FROM tp_append_begin($1::bigint, $2, "
	           "$3::text[], $4::bigint[])",
	           4, params, append_mbox_done);
	for (size_t i = 0; i < n; i++)
		free(sv[i]);
	free(sv);
	free(kv);
	free(keys);
	free(sizes);
	free(acc);
}

/* --- search / changes / quota ------------------------------------------------- */

static void search_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	uint32_t *uids = NULL;
	uint64_t hms = 0;
	int n = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK) {
		n = PQntuples(res);
		uids = xcalloc((size_t)n + 1, sizeof(*uids));
		for (int i = 0; i < n; i++) {
			uint64_t ms = u64(res, i, 1);
			uids[i] = (uint32_t)u64(res, i, 0);
			if (ms > hms)
				hms = ms;
		}
	}
	imap_session_search_done(p->session, st, uids, (size_t)n, hms);
	free(uids);
	kick(p);
}

static void op_search(void *ctx, const struct imap_search_query *q)
{
	struct imap_pg *p = ctx;
	struct imap_search_sql_columns cols;
	struct imap_search_sql s;
	const char *err = NULL;
	const char **params;
	char *id, *sql;

	memset(&s, 0, sizeof(s));
	imap_search_sql_columns_default(&cols);
	if (imap_search_sql_build(q, &cols, 2, &s, &err) < 0) {
		imap_search_sql_free(&s);
		imap_session_search_done(p->session, IMAP_STORE_FAIL, NULL, 0, 0);
		return;
	}
	id = id_str(p->mbox);
	params = xcalloc(s.nparams + 1, sizeof(*params));
	params[0] = id;
	for (size_t i = 0; i < s.nparams; i++)
		params[i + 1] = s.params[i];
	sql = xasprintf("SELECT m.uid, m.modseq FROM messages m WHERE m.mailbox_id = $1 "
	                "AND NOT m.expunged AND (%s) ORDER BY %s",
	                s.where, s.order_by != NULL ? s.order_by : "m.uid");
	query(p, sql, (int)s.nparams + 1, params, search_done);
	free(sql);
	free(params);
	free(id);
	imap_search_sql_free(&s);
}

static void changes_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	struct imap_change *v = NULL;
	const char ***fl = NULL;
	char **copies = NULL;
	size_t n = 0;
	uint64_t hms = 0;
	uint32_t uidvalidity = 0;
	int rows = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK) {
		rows = PQntuples(res);
		v = xcalloc((size_t)rows + 1, sizeof(*v));
		fl = xcalloc((size_t)rows + 1, sizeof(*fl));
		copies = xcalloc((size_t)rows + 1, sizeof(*copies));
		for (int i = 0; i < rows; i++) {
			hms = u64(res, i, 0);
			uidvalidity = (uint32_t)u64(res, i, 1);
			if (PQgetisnull(res, i, 2))
				continue;
			v[n].uid = (uint32_t)u64(res, i, 2);
			v[n].modseq = u64(res, i, 3);
			fl[n] = split_words(PQgetvalue(res, i, 4), &v[n].nflags, &copies[n]);
			v[n].flags = fl[n];
			v[n].expunged = PQgetvalue(res, i, 5)[0] == 't';
			n++;
		}
	}
	/* what the request saw is known; from here the subscription, if it
	 * was live when the request was sent and stays so, reports the rest
	 * (set before the session runs on, maybe into the next request) */
	if (st == IMAP_STORE_OK && rows > 0) {
		p->known_epoch = p->sync_epoch;
		p->known_at = p->sync_at;
	}
	imap_session_changes_done(p->session, st, v, n, hms, uidvalidity);
	for (size_t i = 0; i < n; i++) {
		free(fl[i]);
		free(copies[i]);
	}
	free(v);
	free(fl);
	free(copies);
	kick(p);
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Whether a NOOP may skip asking Postgres: the last changes request
 * completed less than sync_interval ago and was sent while the
 * mailbox's subscription was live, and it has stayed live on the same
 * connection since.  Every writer publishes after its commit, so any
 * change that request did not see was published after the subscription
 * was in place: it reached imap_session_notify (which makes the session
 * ask), or it is still on its way, as it could be for a NOOP that asked.
 * The interval bounds what a writer that crashed between commit and
 * publish, or could not reach Redis, can hide.
 */
static bool op_changes_known(void *ctx)
{
	struct imap_pg *p = ctx;
	uint64_t epoch;

	if (p->mbox == 0 || p->sync_interval <= 0 || p->known_epoch == 0)
		return false;
	if (!mem_sub_live(p->sub, &epoch) || epoch != p->known_epoch)
		return false;
	return mono_now() - p->known_at < p->sync_interval;
}

static void op_changes(void *ctx, uint64_t since)
{
	struct imap_pg *p = ctx;
	char *id = id_str(p->mbox), *ms = xasprintf("%" PRIu64, since);
	const char *params[] = {id, ms};
	uint64_t epoch;

	p->sync_epoch = mem_sub_live(p->sub, &epoch) ? epoch : 0;
	p->sync_at = mono_now();

	query_prep(p,
	           "SELECT mb.highestmodseq, mb.uidvalidity, m.uid, m.modseq, "
	           "  array_to_string(m.flags, ' '), m.expunged "
	           "FROM mailboxes mb LEFT JOIN messages m ON m.mailbox_id = mb.id "
	           "  AND m.modseq > $2::bigint WHERE mb.id = $1 ORDER BY m.uid",
	           2, params, changes_done);
	free(id);
	free(ms);
}

static void quota_done(void *arg, const PGresult *res, const char *errstr)
{
	struct imap_pg *p = arg;
	enum imap_store_status st = pg_status(res, errstr);
	uint64_t used = 0, limit = 0;

	p->req = NULL;
	if (st == IMAP_STORE_OK && PQntuples(res) > 0) {
		limit = u64(res, 0, 0);
		used = u64(res, 0, 1);
	}
	imap_session_quota_done(p->session, st, used, limit);
	kick(p);
}

static void op_quota(void *ctx)
{
	struct imap_pg *p = ctx;
	char *acc = id_str(p->account);
	const char *params[] = {acc};

	query_prep(p,
	           "SELECT ac.quota_bytes, (SELECT coalesce(sum(x.used_bytes), 0) FROM mailboxes x "
	           "  WHERE x.account_id = ac.id) FROM accounts ac WHERE ac.id = $1",
	           1, params, quota_done);
	free(acc);
}

/* --- life cycle -------------------------------------------------------------- */

void imap_pg_init(struct imap_pg *p, struct pg_pool *pg, struct blob_store *blob,
                  struct mem_store *mem, struct password_pool *pw)
{
	static char instance[24];
	static uint64_t next;

	memset(p, 0, sizeof(*p));
	p->pg = pg;
	p->blob = blob;
	p->mem = mem;
	p->pw = pw;
	/* unique across the instances that share the pub/sub store */
	if (instance[0] == '\0') {
		uint64_t r = 0;

		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			r = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
		snprintf(instance, sizeof(instance), "%016" PRIx64, r);
	}
	snprintf(p->origin, sizeof(p->origin), "%s.%" PRIu64, instance, ++next);
}

void imap_pg_cleanup(struct imap_pg *p)
{
	pg_req_cancel(&p->req);
	blob_req_cancel(&p->breq);
	auth_req_cancel(&p->areq);
	mem_unsubscribe(&p->sub);
	append_free(p->app);
	p->app = NULL;
	slot_release(p);
	free(p->login);
	p->login = NULL;
	free(p->master);
	p->master = NULL;
	free(p->authzid);
	p->authzid = NULL;
	free(p->read_blob);
	p->read_blob = NULL;
	p->read_deferred = false;
	cached_free(p);
	for (size_t i = 0; i < p->nmasters; i++)
		free(p->masters[i]);
	free(p->masters);
	p->masters = NULL;
	p->nmasters = 0;
}

void imap_pg_ops_fill(struct imap_store_ops *ops)
{
	ops->auth = op_auth;
	ops->list = op_list;
	ops->create = op_create;
	ops->delete_mailbox = op_delete;
	ops->rename = op_rename;
	ops->subscribe = op_subscribe;
	ops->status = op_status;
	ops->select = op_select;
	ops->unselect = op_unselect;
	ops->fetch = op_fetch;
	ops->fetch_cached = op_fetch_cached;
	ops->read = op_read;
	ops->store = op_store;
	ops->expunge = op_expunge;
	ops->copy = op_copy;
	ops->spool_open = op_spool_open;
	ops->spool_write = op_spool_write;
	ops->spool_abort = op_spool_abort;
	ops->append = op_append;
	ops->search = op_search;
	ops->changes = op_changes;
	ops->changes_known = op_changes_known;
	ops->quota = op_quota;
}
