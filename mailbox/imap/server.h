/*
 * mailbox/imap/server.h -- the IMAP protocol plugged into the mailbox
 * daemon's connections (roles imap and imaps; see mailbox/server/conn.h).
 */
#ifndef MAILBOX_IMAP_SERVER_H
#define MAILBOX_IMAP_SERVER_H

#include "mailbox/server/conn.h"

/* Keepalive period during IDLE (RFC 2177: the server should send
 * something at least every 29 minutes; clients and NATs expect far less;
 * the issue asks for at most 2 minutes). */
#define IMAP_SERVER_TICK_MS (60 * 1000)
/* Autologout while idle or in IDLE (RFC 3501 5.4: at least 30 minutes). */
#define IMAP_SERVER_IDLE_MS (31 * 60 * 1000)

/* The connection callbacks of roles imap and imaps. */
extern const struct conn_proto imap_server_proto;

struct imap_blob_cache_stats;
/* Counters of the process-wide body cache (all zero before the first
 * IMAP connection or with imap.blob_cache_size 0), e.g. for metrics. */
void imap_server_cache_stats(struct imap_blob_cache_stats *out);

#endif
