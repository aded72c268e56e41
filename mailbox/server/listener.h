/*
 * mailbox/server/listener.h -- listening sockets and the per-listener
 * settings connections are created with.
 *
 * struct listener is an immutable, reference-counted snapshot of one
 * listener's settings (role, protocol, TLS context, PROXY policy,
 * timeouts, bounds).  Each listening socket points at the snapshot of the
 * listener it belongs to, and each connection takes a reference at
 * accept, so a reload never changes the rules under a running session and
 * a removed listener's sessions finish with the settings they started
 * with.
 *
 * struct listener_set owns the sockets, keyed by bind address.  Applying
 * a config is all-or-nothing: the new snapshots are built (certificates
 * loaded) and every new address is bound first; only if all of that
 * worked are sockets whose address is still wanted handed to their new
 * snapshot (the kernel socket stays open, nothing pending is lost), the
 * others closed and the new ones started.  On failure nothing changes.
 *
 * TLS contexts are shared by listeners naming the same cert and key files
 * and reloaded in place (shared/tls.h): on SIGHUP unconditionally, and
 * from a periodic check when the files changed, so sessions started
 * before a reload keep their context.
 */
#ifndef MAILBOX_SERVER_LISTENER_H
#define MAILBOX_SERVER_LISTENER_H

#include "mailbox/config.h"
#include "mailbox/server/proxy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn_proto;
struct metrics_listener;
struct server;
struct tls_ctx;
struct tls_entry;

struct listener {
	int refs;
	struct server *server;
	char *name;
	int role;              /* enum mailbox_role */
	int tls_mode;          /* enum mailbox_tls_mode, resolved */
	struct tls_entry *tls; /* NULL: no certificate */
	struct proxy_policy proxy;
	uint64_t header_timeout_ms;
	uint64_t handshake_ms, idle_ms, command_ms;
	int64_t max_connections;
	bool allow_plaintext_auth;
	size_t in_max, out_max;
	const struct conn_proto *proto; /* NULL: no protocol for this role yet */
	struct metrics_listener *metrics;
};

/* The current TLS context of l, or NULL without TLS. */
struct tls_ctx *listener_tls(const struct listener *l);
void listener_ref(struct listener *l);
/* Drop a reference; the last one frees.  NULL-safe; sets *l to NULL. */
void listener_unref(struct listener **l);

struct listener_set;

struct listener_set *listener_set_new(struct server *s);
/*
 * Make the sockets match cfg (see above).  0, or -1 with err describing
 * the first problem ("listener 'imaps': tls: ...", "listen
 * 127.0.0.1:993: bind: Address already in use ..."), in which case the
 * previous sockets and settings stay in service.
 */
int listener_set_apply(struct listener_set *ls, const struct mailbox_config *cfg, char *err,
                       size_t errsz);
/* Close every listening socket (drain); connections are not touched. */
void listener_set_stop(struct listener_set *ls);
/* Check certificates: force reloads them all (SIGHUP), otherwise only
 * those whose files changed.  Failures are logged; the old context stays. */
void listener_set_tls_check(struct listener_set *ls, bool force);
/* Number of open listening sockets. */
size_t listener_set_count(const struct listener_set *ls);
void listener_set_free(struct listener_set **ls);

#endif
