/*
 * mailbox/server/echo.h -- the `test` role: a tiny line protocol that
 * proves the connection layer without SMTP or IMAP.
 *
 * It speaks just enough SMTP shape for `openssl s_client -starttls smtp`
 * and for the integration tests of the PROXY gate, TLS, bans and reloads:
 *
 *   S: 220 <hostname> tailpost-test listener=<name> client=<ip>
 *   C: EHLO x        S: 250-<hostname> / [250-STARTTLS] / 250 OK
 *   C: STARTTLS      S: 220 ready  (then the handshake; RFC 3207 rules)
 *   C: CLIENT        S: 250 client=<ip:port> peer=<ip:port> proxied=yes|no local=yes|no tls=...
 *   C: AUTHFAIL      S: 535 ... (counts an auth failure for the ban logic)
 *   C: QUIT          S: 221 bye
 *   C: anything else S: 250 echo <line>
 *
 * Lines end in LF (CR optional) and are at most ECHO_LINE_MAX bytes.
 */
#ifndef MAILBOX_SERVER_ECHO_H
#define MAILBOX_SERVER_ECHO_H

#include "mailbox/server/conn.h"

#define ECHO_LINE_MAX 1000

extern const struct conn_proto echo_proto;

#endif
