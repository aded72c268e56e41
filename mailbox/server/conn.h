/*
 * mailbox/server/conn.h -- one client connection: socket, PROXY gate, TLS,
 * bounded buffers, timeouts, and the protocol plugged into it.
 *
 * A protocol (SMTP, IMAP, the admin HTTP, the test echo) never touches the
 * socket.  It supplies a struct conn_proto of callbacks and talks back
 * through conn_write(), conn_close(), conn_starttls() and
 * conn_pause_read().  The connection owns everything below:
 *
 *   accept -> PROXY gate (mailbox/server/proxy.h): nothing is sent and no
 *             byte reaches the protocol before the gate allows; a trusted
 *             peer's header must come within the listener's
 *             proxy.header_timeout
 *          -> ban check on the proxied client (mailbox/server/abuse.h)
 *          -> implicit TLS: the handshake (within timeouts.handshake)
 *          -> proto->on_open(): the protocol queues its greeting
 *          -> on_input() for every batch of bytes, on_writable() when
 *             output drained, STARTTLS on request, on_close() at the end.
 *
 * TLS runs through memory BIOs: the socket is read and written here and
 * the bytes handed to OpenSSL, so header bytes, a ClientHello that arrived
 * in the same segment as a PROXY header, and plaintext already buffered
 * are all handled by one code path.  TLS 1.2 is the minimum (shared/tls).
 *
 * Back-pressure: input is read only while the input buffer has room and
 * the protocol is not paused; the protocol is not offered input while
 * unsent output exceeds half of the output bound; the write watcher runs
 * only while output is pending.  Timeouts: idle (no input while waiting
 * for a command; also no write progress), command (a partial command is
 * buffered for too long), handshake, PROXY header.
 *
 * Every log line of a connection carries cid=, listener=, peer= (the
 * socket peer) and client= (the proxied client, or the peer).
 */
#ifndef MAILBOX_SERVER_CONN_H
#define MAILBOX_SERVER_CONN_H

#include "shared/net.h"
#include "shared/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct conn;
struct listener;
struct server;

enum conn_close_reason {
	CONN_CLOSE_DONE = 0, /* the protocol finished (QUIT, Connection: close) */
	CONN_CLOSE_EOF,      /* the peer closed */
	CONN_CLOSE_IO,       /* read/write error or reset */
	CONN_CLOSE_TIMEOUT,  /* idle, command, handshake or header timeout */
	CONN_CLOSE_PROTOCOL, /* the protocol gave up on the client */
	CONN_CLOSE_OVERFLOW, /* an input or output bound was hit */
	CONN_CLOSE_TLS,      /* handshake or record error */
	CONN_CLOSE_SHUTDOWN, /* the daemon is stopping */
	CONN_CLOSE_GATE,     /* refused by the PROXY gate or a ban */
};

/*
 * The callbacks of a protocol.  on_open and on_input are required; the
 * others may be NULL.  A callback may call conn_write/conn_close/
 * conn_starttls/conn_pause_read on its own connection but must not free
 * it: conn_close() only marks it, the connection goes away after the
 * callback returns.
 */
struct conn_proto {
	const char *name;
	/* The gate allowed the connection (and an implicit TLS handshake
	 * finished).  Set up the session (conn_set_data) and queue the
	 * greeting.  0, or -1 to close at once. */
	int (*on_open)(struct conn *c);
	/* Input bytes (plaintext after TLS).  Return how many were consumed,
	 * from 0 to n; the rest is offered again with later bytes appended.
	 * -1 closes the connection.  A protocol that cannot consume while the
	 * input bound is full gets the connection closed (CONN_CLOSE_OVERFLOW). */
	ssize_t (*on_input)(struct conn *c, const uint8_t *p, size_t n);
	/* Unsent output fell below the low-water mark (or to zero) after it
	 * had been high, or the last write completed: produce more. */
	void (*on_writable)(struct conn *c);
	/* The STARTTLS handshake the protocol asked for ended (ok false: the
	 * connection is closed right after this call returns). */
	void (*on_tls)(struct conn *c, bool ok);
	/* The idle or command timer fired: write a last reply and
	 * conn_close(); NULL: closed at once. */
	void (*on_timeout)(struct conn *c);
	/* The daemon is draining (SIGTERM): finish the current exchange and
	 * conn_close() soon; NULL: closed once the output is flushed. */
	void (*on_shutdown)(struct conn *c);
	/* Last call: free the protocol's state.  Called once iff on_open was. */
	void (*on_close)(struct conn *c, enum conn_close_reason reason);
};

/* --- for the listener (mailbox/server/listener.c) ------------------------ */

/* Take over an accepted fd from peer on listener l (which it references)
 * and start the gate.  May close it at once (refused, full). */
void conn_accept(struct listener *l, int fd, const struct net_addr *peer);
/* Ask every connection to finish (on_shutdown). */
void conn_shutdown_all(struct server *s);
/* Close every connection at once (end of the drain grace). */
void conn_close_all(struct server *s);
/* Close every connection whose client address is ip ("192.0.2.7"), e.g.
 * when another instance banned it.  Returns how many. */
size_t conn_close_client(struct server *s, const char *ip);
/* Connections alive in the process. */
size_t conn_count(void);

/* --- for protocols ------------------------------------------------------- */

/*
 * Queue n bytes of output.  0, or -1 when the output bound would be
 * exceeded: nothing is queued and the connection is closed with
 * CONN_CLOSE_OVERFLOW (a protocol that watches conn_out_high() never gets
 * there).
 */
int conn_write(struct conn *c, const void *p, size_t n);
int conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Unsent output bytes, and whether they exceed the high-water mark (half
 * the bound) so the protocol should stop producing until on_writable. */
size_t conn_out_pending(const struct conn *c);
bool conn_out_high(const struct conn *c);

/* Close after the queued output is written (reason for the log).  Input
 * is no longer offered.  Idempotent. */
void conn_close(struct conn *c, enum conn_close_reason reason);

/*
 * STARTTLS (RFC 3207 4, RFC 9051 6.2.1): call from on_input after queuing
 * the "go ahead" reply and returning the STARTTLS command as consumed.
 * Every input byte buffered after the command is discarded (no plaintext
 * injection into the TLS session, RFC 3207 6), the reply is flushed in
 * clear, then the handshake runs; on_tls() reports the end.  -1 if the
 * listener has no certificate or TLS is already active.
 */
int conn_starttls(struct conn *c);

/* Stop (true) or resume (false) offering input, e.g. while an
 * asynchronous lookup runs.  Resuming offers buffered input again soon
 * (from the loop, not from inside this call). */
void conn_pause_read(struct conn *c, bool paused);

/* The protocol consumed the start of a command into its own buffers (a
 * parser that copies, like HTTP's): run the command timer as if the bytes
 * were still buffered here, until called with false. */
void conn_set_partial(struct conn *c, bool partial);

/* Replace this connection's idle timeout (e.g. IMAP IDLE); 0 restores
 * the listener's. */
void conn_set_idle_timeout(struct conn *c, uint64_t ms);

/* The protocol's per-connection state. */
void conn_set_data(struct conn *c, void *data);
void *conn_data(const struct conn *c);

/* The client: the proxied source address, or the socket peer. */
const struct net_addr *conn_client(const struct conn *c);
/* The socket peer (the edge when proxied). */
const struct net_addr *conn_peer(const struct conn *c);
/* The client's address as text ("192.0.2.7"), and the id used in logs. */
const char *conn_client_ip(const struct conn *c);
const char *conn_id(const struct conn *c);
/* v2 LOCAL / v1 UNKNOWN: a health check, no client. */
bool conn_no_client(const struct conn *c);
/* The proxied source came from a PROXY header. */
bool conn_via_proxy(const struct conn *c);
/* TLS is established; *info filled when info is not NULL. */
bool conn_tls_active(const struct conn *c, struct tls_info *info);
/* Whether conn_starttls() can succeed on this listener. */
bool conn_starttls_available(const struct conn *c);

/* The listener's name and role (enum mailbox_role). */
const char *conn_listener_name(const struct conn *c);
int conn_role(const struct conn *c);
/* The daemon, for stores, config and metrics. */
struct server *conn_server(const struct conn *c);
/* The listener's settings at accept time. */
struct listener *conn_listener(const struct conn *c);

#endif
