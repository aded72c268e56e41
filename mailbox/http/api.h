/*
 * mailbox/http/api.h -- the JSON admin API under /api/v1.
 *
 * Authentication (RFC 6750 bearer tokens, RFC 7617 Basic):
 *   Authorization: Bearer tp_...   a token made by `tailpost-mailbox token
 *                                  add`; only its SHA-256 is stored and
 *                                  looked up (mailbox/directory/lookup.h)
 *   Authorization: Basic ...       the recovery admin from
 *                                  TAILPOST_RECOVERY_ADMIN, when enabled
 * A missing header is 401 with WWW-Authenticate; a wrong token or password
 * is 401 too and counts as an auth failure of the client (bans).
 *
 * Resources (JSON in and out, errors as {"error": "...", "status": N}):
 *   GET    /domains                      200 [{"name", "addresses"}]
 *   POST   /domains         {"name"}     201 | 409 exists
 *   GET    /domains/NAME                 200 | 404
 *   DELETE /domains/NAME[?force=true]    204 | 404 | 409 still used
 *   GET    /accounts                     200 [{"login", "role", "quota_bytes",
 *                                              "disabled", "addresses"}]
 *   POST   /accounts        {"login", "password" | "password_hash",
 *                            "role", "quota_bytes"}              201 | 409
 *   GET    /accounts/LOGIN               200 | 404
 *   PATCH  /accounts/LOGIN  {"password" | "password_hash", "role",
 *                            "quota_bytes", "disabled"}          200 | 404
 *   PUT    /accounts/LOGIN/password {"password"}                 204 | 404
 *   DELETE /accounts/LOGIN               204 | 404
 *   GET    /aliases[?domain=D]           200 [{"address", "account" | "targets"}]
 *   POST   /aliases         {"address", "targets": [...]}        201 | 409
 *   GET    /aliases/ADDRESS              200 | 404
 *   PUT    /aliases/ADDRESS {"targets": [...]}                   200
 *   DELETE /aliases/ADDRESS              204 | 404
 *   GET    /domains/NAME/dkim            200 [{"domain", "selector", "algorithm",
 *                                              "active", "created", "dns_name", "txt"}]
 *   POST   /domains/NAME/dkim {"algorithm": "ed25519"|"rsa", "selector"}
 *                                        201 the key | 404 domain | 409 selector exists
 *   GET    /domains/NAME/dns[?format=zone&report=ADDR|none&mta_sts=MODE
 *                            &mta_sts_id=ID&dmarc=POLICY&spf_extra=MECHS]
 *                                        200 dnsrecords_json (+ "notes") or, with
 *                                            format=zone, the zone snippet as text/plain
 *   GET    /queue[?limit=N]              200 [queue_admin_msg_json...] (default 1000)
 *   GET    /queue/ID                     200 | 404
 *   POST   /queue/ID/retry               200 {"id", "retried"} | 404
 *   DELETE /queue/ID                     204 | 404 (no bounce is sent)
 * A create that refers to something missing (an alias in an unknown
 * domain, a target that is no account) is 422.  A malformed body is 400,
 * a body that is not application/json 415.
 * Other methods on a known resource: 405 with Allow.  Path segments are
 * percent-decoded.  Passwords are hashed (argon2id) on the admin worker
 * thread, never logged, and wiped from our buffers after use.  A store
 * outage is 503.
 *
 * The work runs on the admin worker thread (mailbox/server/jobs.h)
 * because the directory's administration functions block.
 */
#ifndef MAILBOX_HTTP_API_H
#define MAILBOX_HTTP_API_H

#include "mailbox/http/parser.h"
#include "shared/net.h"

#include <stdbool.h>
#include <stddef.h>

struct server;
struct api_call;

/* The answer: status, its Content-Type (NULL: application/json), the
 * body (NUL-terminated, may be empty for 204), and extra header lines
 * ("WWW-Authenticate: ...\r\n") or NULL.  All valid during the call
 * only. */
typedef void api_done_cb(void *arg, int status, const char *content_type, const char *body,
                         size_t len, const char *extra_headers);

struct api_client {
	const char *listener;
	const char *ip;
	struct net_addr addr;
	bool no_client;
};

/*
 * Handle req (its path starts with "/api/v1").  cb runs once, from the
 * loop, never from inside this call.  The request is copied as needed;
 * it may be reset as soon as this returns.
 */
struct api_call *api_start(struct server *s, const struct http_request *req,
                           const struct api_client *client, api_done_cb *cb, void *arg);
/* The connection went away: cb will not run.  NULL-safe; *c = NULL. */
void api_call_cancel(struct api_call **c);

#endif
