/*
 * mailbox/http/server.h -- the `http` role: health, readiness, metrics and
 * the JSON admin API, as a protocol on the connection layer.
 *
 *   GET /healthz   200 while the process runs (its loop answers)
 *   GET /readyz    200 when every configured store is reachable, else 503
 *                  naming the first store that is not
 *   GET /metrics   Prometheus text (mailbox/server/metrics.h)
 *   /api/v1/...    the admin API (mailbox/http/api.h), bearer tokens or
 *                  the recovery admin
 *
 * HTTP/1.1 with keep-alive, one request at a time per connection (a
 * pipelined request waits in the input buffer until the previous answer
 * is queued), "Expect: 100-continue" honoured, request bounds from
 * limits.http_max_header / http_max_body.  Parsing is the pure
 * mailbox/http/parser.h; this file only routes and writes responses.
 * Every response is logged on one line (never the Authorization header or
 * a body).
 */
#ifndef MAILBOX_HTTP_SERVER_H
#define MAILBOX_HTTP_SERVER_H

#include "mailbox/server/conn.h"

extern const struct conn_proto http_server_proto;

#endif
