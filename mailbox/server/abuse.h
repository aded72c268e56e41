/*
 * mailbox/server/abuse.h -- bans at accept and auth-failure counting,
 * keyed on the proxied client address (DESIGN.md "Bans hit the client,
 * never the tunnel").
 *
 * Exempt from bans, whatever the store says: a connection with no client
 * (v2 LOCAL health checks), loopback, any listener's trusted PROXY peer
 * (the edge: banning it would ban every client behind it), and the
 * configured allowlist, which beats any ban.
 *
 * State lives in the memory store (mailbox/store/mem.h): "auth:<ip>"
 * counters with a fixed window and bans with a TTL, so with Redis they
 * are shared by every instance.  When the store cannot answer, the check
 * lets the connection in (bans are a defence, not the gate; an outage of
 * Redis must not become an outage of mail) and says so in the log.
 */
#ifndef MAILBOX_SERVER_ABUSE_H
#define MAILBOX_SERVER_ABUSE_H

#include "shared/net.h"

#include <stdbool.h>

struct server;

/* True if client can never be banned (see above).  Pure given the
 * running config. */
bool abuse_exempt(const struct server *s, const struct net_addr *client, bool no_client);

/* banned: refuse the connection; reason for the log (valid during the
 * call). */
typedef void abuse_check_cb(void *arg, bool banned, const char *reason);

struct abuse_req;

/*
 * Start the ban check of client.  Returns NULL when no check is needed
 * (exempt, or no memory store): the caller proceeds at once and cb never
 * runs.  Otherwise cb runs later from the loop, unless the request is
 * cancelled first.
 */
struct abuse_req *abuse_check(struct server *s, const struct net_addr *client, bool no_client,
                              abuse_check_cb *cb, void *arg);
/* The callback will not run.  NULL-safe; sets *r to NULL. */
void abuse_req_cancel(struct abuse_req **r);

/*
 * Count a failed authentication from client on listener (for metrics);
 * when the failures within the window reach the threshold, ban client for
 * the configured time (and count it).  Fire and forget.
 */
void abuse_auth_failed(struct server *s, const char *listener, const struct net_addr *client,
                       bool no_client);
/*
 * Count one refused SMTP recipient (unknown user, relay denied) or a
 * session closed for too many errors, from client, under its own key
 * ("rcpt:<ip>"); at abuse.rcpt_failures within the window the client is
 * banned like for auth failures.  Fire and forget; exempt clients (see
 * above) are never counted.
 */
void abuse_rcpt_failed(struct server *s, const struct net_addr *client, bool no_client);
/* A successful authentication resets the client's failure counter. */
void abuse_auth_ok(struct server *s, const struct net_addr *client, bool no_client);

/* Drop every pending request (at shutdown, before the store is freed). */
void abuse_shutdown(void);

#endif
