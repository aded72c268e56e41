/*
 * edge/conn.h -- one forwarded connection: connect, header, splice.
 *
 * On accept the edge connects to an upstream at once and sends the whole
 * PROXY header in its first write, before any client byte: SMTP and IMAP
 * servers speak first, so waiting for the client would deadlock them.
 * For a listener with tlv_authority_from_sni the ClientHello is peeked
 * (MSG_PEEK, bounded by sni_timeout) while the upstream connects, and the
 * header waits for both.  Then each direction moves with splice(2)
 * through a pooled pipe (or read/write through the worker's scratch
 * buffer), a half-close is passed on with shutdown(SHUT_WR), and the
 * connection ends when both directions have ended, on a reset, or after
 * idle_timeout without a byte.
 */
#ifndef EDGE_CONN_H
#define EDGE_CONN_H

#include "edge/listener.h"
#include "edge/worker.h"
#include "shared/net.h"

/*
 * Take over fd, just accepted by worker w on listener l through socket ls,
 * from peer: apply access lists and limits (refusing with a log line and a
 * counter), then start connecting.  The fd is always consumed.
 */
void edge_conn_accept(struct edge_worker *w, struct edge_listener *l, const struct edge_lsock *ls,
                      int fd, const struct net_addr *peer);
/* Close every connection of w now, reason shutdown (worker exit). */
void edge_conn_close_all(struct edge_worker *w);

/* Bytes of a connection object (for the memory budget in docs/tests). */
size_t edge_conn_size(void);

#endif
