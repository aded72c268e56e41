/*
 * mailbox/outbound/tls_fallback.h -- when opportunistic STARTTLS may fall
 * back to plain text, and a short memory of the servers whose TLS is
 * broken.  Pure: no sockets, no clock (the caller passes the time).
 *
 * With opportunistic TLS (mx routes by default, a relay with `tls:
 * opportunistic`) nothing is verified, so a session in plain text is no
 * weaker against an active attacker than one with a failed handshake --
 * but a server whose TLS setup is broken (offers STARTTLS, then cannot
 * complete a handshake) would otherwise get nothing until the message
 * expires.  Like Postfix's smtp_tls_security_level=may, the transport
 * then connects to the same address once more without STARTTLS, and
 * remembers the address for a while (TLS_FALLBACK_TTL_MS) so the next
 * messages go straight to plain text instead of failing a handshake
 * first.  Never when TLS is required (starttls, implicit) or verified.
 */
#ifndef MAILBOX_OUTBOUND_TLS_FALLBACK_H
#define MAILBOX_OUTBOUND_TLS_FALLBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_FALLBACK_TTL_MS  (3600u * 1000u) /* how long an address stays "TLS broken" */
#define TLS_FALLBACK_MAX     1024u           /* addresses remembered at most */
#define TLS_FALLBACK_KEY_MAX 80              /* "[" IPv6 "]:" port NUL fits */

/* May a session with this route TLS policy (enum outbound_tls) and verify
 * setting go on in plain text when STARTTLS fails?  Only opportunistic
 * without verification. */
bool tls_fallback_allowed(int outbound_tls, bool verify);

/* The cache key for an address (as net_addr_ip_str writes it) and a port:
 * "[addr]:port".  Returns buf; a too-small buffer gets a truncated but
 * NUL-terminated key. */
const char *tls_fallback_key(char *buf, size_t size, const char *addr, unsigned port);

struct tls_fallback_cache;

/* At most `max` entries (0: TLS_FALLBACK_MAX); when full, the entry that
 * expires first makes room. */
struct tls_fallback_cache *tls_fallback_cache_new(size_t max);
void tls_fallback_cache_free(struct tls_fallback_cache **cp);

/* Remember key as broken until now_ms + ttl_ms (a later time replaces an
 * earlier one; an earlier one never shortens it).  Expired entries are
 * dropped on the way. */
void tls_fallback_cache_add(struct tls_fallback_cache *c, const char *key, uint64_t now_ms,
                            uint64_t ttl_ms);

/* Is key remembered at now_ms?  *until_ms_r (may be NULL) gets its
 * expiry. */
bool tls_fallback_cache_has(const struct tls_fallback_cache *c, const char *key, uint64_t now_ms,
                            uint64_t *until_ms_r);

/* Entries held, expired or not (for tests). */
size_t tls_fallback_cache_size(const struct tls_fallback_cache *c);

#endif
