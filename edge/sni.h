/*
 * edge/sni.h -- find the server name in a TLS ClientHello, without TLS.
 *
 * The edge never terminates TLS; for implicit-TLS listeners it may peek
 * (MSG_PEEK) at the client's first bytes and pass the SNI on to the
 * mailbox as PP2_TYPE_AUTHORITY.  This parser is pure and incremental:
 * give it everything peeked so far; it answers NEED_MORE (with how many
 * bytes in total it needs to make progress) until it can decide.  It reads
 * the handshake across TLS record boundaries (a ClientHello may be split
 * over several records, RFC 8446 5.1) and never copies the message.
 */
#ifndef EDGE_SNI_H
#define EDGE_SNI_H

#include <stddef.h>
#include <stdint.h>

/* RFC 1035 2.3.4 / RFC 6066 3: a host name, no trailing dot. */
#define EDGE_SNI_NAME_MAX 253

enum edge_sni_status {
	EDGE_SNI_OK = 0,    /* a host_name was found */
	EDGE_SNI_NEED_MORE, /* a valid prefix: peek again with more bytes */
	EDGE_SNI_ABSENT,    /* a ClientHello without server_name */
	EDGE_SNI_NOT_TLS,   /* not a TLS handshake record */
	EDGE_SNI_NOT_HELLO, /* a handshake, but not a ClientHello */
	EDGE_SNI_MALFORMED, /* lengths or structure inconsistent */
	EDGE_SNI_BAD_NAME,  /* server_name present but not a valid host name */
};

/*
 * Parse the start of a client's TLS stream in buf[0..len).  On EDGE_SNI_OK
 * the host name, lower-cased and NUL-terminated, is in name (namesz must be
 * at least EDGE_SNI_NAME_MAX + 1).  On EDGE_SNI_NEED_MORE, *need_r (if not
 * NULL) is the total number of bytes that must be available before another
 * call can make progress (always > len).  Nothing else is written.
 */
enum edge_sni_status edge_sni_parse(const uint8_t *buf, size_t len, char *name, size_t namesz,
                                    size_t *need_r);

/* A stable token for logs: "ok", "need_more", "absent", "not_tls", ... */
const char *edge_sni_status_name(enum edge_sni_status st);

#endif
