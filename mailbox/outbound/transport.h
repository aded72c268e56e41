/*
 * mailbox/outbound/transport.h -- outbound SMTP connections on libev.
 *
 * The transport turns one message for one destination into a result per
 * recipient.  A destination is a relay route (its host and port) or, for
 * mx routing, a recipient domain: its MX hosts by preference (random
 * among equal preferences, RFC 5321 5.1), each host's AAAA and A
 * addresses; without MX records the domain itself (implicit MX).  A null
 * MX (RFC 7505) or NXDOMAIN fails every recipient permanently (5.1.2);
 * SERVFAIL and DNS timeouts are temporary.  The next address/host is tried
 * on connection failure, a 4xx greeting or session trouble before any
 * transaction; a 5xx from a host is final.
 *
 * Connections: at most max_per_destination at once per destination
 * (more sends wait in line), TLS per the route (implicit, STARTTLS,
 * opportunistic = STARTTLS when offered without verification, none), AUTH
 * when the route has credentials, and reuse: after a message the session
 * stays open for connection_reuse for the next message to the same
 * destination.  The SMTP dialogue is mailbox/outbound/smtp_client.h.
 *
 * Everything runs on the caller's loop; callbacks never run from inside
 * outbound_transport_send().  The process must ignore SIGPIPE (serve does,
 * loop_signals_start): TLS writes to a peer that went away use write(2).
 */
#ifndef MAILBOX_OUTBOUND_TRANSPORT_H
#define MAILBOX_OUTBOUND_TRANSPORT_H

#include "mailbox/config.h"
#include "mailbox/outbound/smtp_client.h"

#include <stddef.h>
#include <stdint.h>

struct ev_loop;

struct outbound_transport;

/* A transport for cfg->outbound (helo, timeouts, dns servers, limits);
 * cfg need not outlive the call (what is needed is copied), but a job's
 * route must stay valid until its callback ran or it was cancelled.
 * NULL with a logged error when the resolver cannot be set up. */
struct outbound_transport *outbound_transport_new(struct ev_loop *loop,
                                                  const struct mailbox_config *cfg);
/* New settings (SIGHUP): idle connections are closed, sends in flight go on. */
void outbound_transport_reconfigure(struct outbound_transport *t, const struct mailbox_config *cfg);
/* Cancels every send (no callbacks), closes every connection. */
void outbound_transport_free(struct outbound_transport **t);

/*
 * One message for one route (relay) or one recipient domain (mx), all of
 * its recipients for that destination.  The payload is `prefix` (e.g. the
 * DKIM-Signature fields, may be empty) followed by `length` bytes of the
 * file `fd` from `offset` (read with pread; the caller keeps fd open until
 * done).  smtp_client_msg's fields (from, rcpts, size, body_8bit,
 * smtputf8, ret, envid) are as in smtp_client.h; size = prefix_len +
 * length (0: SIZE= not sent).  The job's strings are copied.
 */
struct outbound_job {
	const struct mailbox_route_conf *route; /* NULL: mx for `domain` */
	const char *domain;                     /* the recipients' domain (mx routing, logs) */
	struct smtp_client_msg msg;             /* msg.user is ignored */
	const char *prefix;
	size_t prefix_len;
	int fd;
	uint64_t offset;
	uint64_t length;
};

/*
 * One result per recipient, in order (smtp_client_result semantics:
 * delivered, tempfail, permfail with code/esc/text), valid during the call
 * only; called once, from the loop, never from inside
 * outbound_transport_send().  `mx_host` names the host that answered (for
 * the DSN's Remote-MTA: the MX host, or the relay's host), or NULL when no
 * server answered (DNS or connection failures).
 */
typedef void outbound_done_cb(void *arg, const struct smtp_client_result *res, size_t n,
                              const char *mx_host);

struct outbound_send;

/* Start a send; never NULL (a job that cannot run fails through cb). */
struct outbound_send *outbound_transport_send(struct outbound_transport *t,
                                              const struct outbound_job *job, outbound_done_cb *cb,
                                              void *arg);
/* Forget a send (its callback never runs); its connection is dropped.
 * Sets *s to NULL; NULL is fine. */
void outbound_send_cancel(struct outbound_send **s);

struct outbound_transport_stats {
	uint64_t connections; /* TCP connections established */
	uint64_t reused;      /* messages sent on an already used connection */
	uint64_t tls;         /* TLS sessions established */
	uint64_t delivered;   /* recipients */
	uint64_t tempfail;
	uint64_t permfail;
	unsigned active; /* sends not yet finished */
};
void outbound_transport_stats(const struct outbound_transport *t,
                              struct outbound_transport_stats *out);

#endif
