/*
 * mailbox/store/blob_private.h -- what blob.c shares with its backends
 * (blob_fs.c, blob_s3.c).
 *
 * blob.c owns requests and callbacks; a backend gets a filled struct
 * blob_req, does the work, fills the result fields and calls
 * blob_req_finish() from the loop.  Backends bracket every entry from
 * libev with blob_enter()/blob_leave(): a user callback may free the
 * store, and the real free then happens in the outermost blob_leave(),
 * which returns true so the backend touches nothing more.
 */
#ifndef MAILBOX_STORE_BLOB_PRIVATE_H
#define MAILBOX_STORE_BLOB_PRIVATE_H

#include "mailbox/store/blob.h"

enum blob_op {
	BLOB_OP_PUT,
	BLOB_OP_GET,
	BLOB_OP_HEAD,
	BLOB_OP_DELETE,
	BLOB_OP_CHECK,
};

struct blob_req {
	struct blob_store *bs;
	struct blob_req *prev, *next; /* the store's in-flight list */
	struct blob_req *pnext;       /* the store's not-yet-started queue */
	bool started;
	enum blob_op op;
	char key[BLOB_KEY_LEN + 1];
	char *path;    /* put: source file, or */
	uint8_t *src;  /* put: source bytes (malloc'd, ours) */
	uint64_t size; /* put: expected size */
	uint64_t off, len;
	size_t max_len; /* get */
	union {
		blob_done_cb *done;
		blob_head_cb *head;
		blob_get_cb *get;
	} cb;
	void *arg;
	bool cancelled;
	ev_tstamp start;
	/* result, filled by the backend */
	enum blob_status st;
	char *err;     /* malloc'd message, or NULL */
	uint8_t *data; /* get: malloc'd */
	size_t dlen;
	uint64_t rsize; /* head */
	void *impl;     /* backend state */
};

struct blob_ops {
	const char *kind;
	/* start r (on the loop); completion via blob_req_finish */
	void (*start)(struct blob_store *bs, struct blob_req *r);
	/* release backend state of an unfinished request (store being freed) */
	void (*abandon)(struct blob_store *bs, struct blob_req *r);
	/* free the backend (after every request was abandoned) */
	void (*free)(struct blob_store *bs);
};

struct blob_store {
	const struct blob_ops *ops;
	struct ev_loop *loop;
	const struct stores_blob_config *cfg;
	char endpoint[256];
	bool healthy;
	struct blob_stats st;
	struct blob_req *reqs;                  /* in flight (started or not) */
	struct blob_req *pend_head, *pend_tail; /* not started yet */
	ev_timer starter;                       /* zero-delay: start pending requests */
	unsigned depth;
	bool dying;
	void *impl;
};

extern const struct blob_ops blob_fs_ops;
extern const struct blob_ops blob_s3_ops;

/* Backend constructors: fill bs->impl and bs->endpoint; 0 or -1. */
int blob_fs_init(struct blob_store *bs, const char **errstr_r);
int blob_s3_init(struct blob_store *bs, const char **errstr_r);

/* Report r done with r->st/err/data filled: stats, health, the user's
 * callback unless cancelled, then r is freed. */
void blob_req_finish(struct blob_req *r);
/* printf into r->err (replacing it), prefixed with the store's identity:
 * "blob store s3 endpoint http://h:1: " */
void blob_req_fail(struct blob_req *r, enum blob_status st, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

void blob_enter(struct blob_store *bs);
/* true if the store was freed meanwhile (touch nothing) */
bool blob_leave(struct blob_store *bs);

#endif
