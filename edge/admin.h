/*
 * edge/admin.h -- the admin endpoint: GET /metrics and GET /healthz.
 *
 * A minimal HTTP/1.x server on the main loop: one request per connection,
 * answered with "Connection: close".  The request parser is pure and
 * exported for the unit tests; the server bounds each request (size and
 * time) so a slow or hostile peer can hold only one small buffer for a few
 * seconds.  Bind it to loopback or a private address: it has no
 * authentication.
 */
#ifndef EDGE_ADMIN_H
#define EDGE_ADMIN_H

#include "shared/buf.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#define EDGE_ADMIN_REQ_MAX 4096

enum edge_admin_parse {
	EDGE_ADMIN_NEED_MORE = 0,
	EDGE_ADMIN_OK,
	EDGE_ADMIN_BAD,
};

/*
 * Parse an HTTP/1.x request head in buf[0..len).  OK once the empty line
 * ending the head has arrived: method and path (the target without its
 * query) are copied, NUL-terminated, into the given buffers (too long:
 * BAD).  NEED_MORE on a valid prefix; BAD on a malformed request line or
 * a head longer than EDGE_ADMIN_REQ_MAX.
 */
enum edge_admin_parse edge_admin_parse_request(const char *buf, size_t len, char *method,
                                               size_t methodsz, char *path, size_t pathsz);

/* Append the metrics page to out. */
typedef void edge_admin_metrics_fn(struct buf *out, void *arg);
/* True while the edge serves (false while draining: /healthz says 503). */
typedef bool edge_admin_healthy_fn(void *arg);

struct edge_admin;

/* Listen on bind ("ip:port") on loop.  NULL with *errmsg_r (caller frees). */
struct edge_admin *edge_admin_start(struct ev_loop *loop, const char *bind,
                                    edge_admin_metrics_fn *metrics, edge_admin_healthy_fn *healthy,
                                    void *arg, char **errmsg_r);
/* Close the listener and every client; NULL is fine; *a becomes NULL. */
void edge_admin_stop(struct edge_admin **a);
/* The bind string the admin was started with. */
const char *edge_admin_bind(const struct edge_admin *a);

#endif
