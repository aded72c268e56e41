/*
 * mailbox/store/resolve.h -- host names resolved off the loop, for the
 * store clients whose libraries would resolve them ON the loop.
 *
 * libpq's PQconnectStartParams/PQconnectPoll and hiredis'
 * redisAsyncConnect call getaddrinfo(3) synchronously: with a slow or
 * unreachable DNS server that stalls every session of the daemon for
 * seconds.  A resolver runs getaddrinfo on a worker thread of its own
 * (mailbox/store/workpool.h) and reports the numeric addresses on the
 * loop; the stores then connect by address (libpq `hostaddr`, keeping
 * `host` for TLS verification, SNI and .pgpass; hiredis by IP).  libcurl
 * (the S3 store) already resolves on its own threaded resolver.
 *
 * Names that need no lookup are recognised first (resolve_needed), so a
 * numeric address or a Unix socket costs neither a thread nor a delay.
 */
#ifndef MAILBOX_STORE_RESOLVE_H
#define MAILBOX_STORE_RESOLVE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#define RESOLVE_MAX_ADDRS 8  /* addresses kept per name (libpq/hiredis try them in order) */
#define RESOLVE_ADDR_LEN  46 /* INET6_ADDRSTRLEN */

struct resolver;
struct resolve_req;

struct resolve_result {
	int error;       /* 0, or a getaddrinfo EAI_* code */
	const char *why; /* NULL, or gai_strerror(error) */
	size_t naddrs;
	char addrs[RESOLVE_MAX_ADDRS][RESOLVE_ADDR_LEN]; /* numeric, in getaddrinfo's order */
};

/* Runs on the loop; res is valid during the call only. */
typedef void resolve_cb(void *arg, const char *host, const struct resolve_result *res);

/*
 * True if host is a name getaddrinfo would look up: not empty, not a
 * numeric IPv4/IPv6 address (brackets allowed), not a Unix socket path
 * ("/..." or "@..."). Pure.
 */
bool resolve_needed(const char *host);

/* A resolver for loop; its thread starts on the first request.  Never
 * fails. */
struct resolver *resolver_new(struct ev_loop *loop);

/*
 * Free: requests not yet started are dropped, a running getaddrinfo is
 * waited for (at most the system resolver's timeout), no callback runs.
 * NULL-safe; sets *r to NULL.  Not from a resolve callback.
 */
void resolver_free(struct resolver **r);

/*
 * Resolve host (TCP, any family) off the loop; cb runs later on the loop,
 * never inside this call.  Returns a handle valid until cb has returned.
 */
struct resolve_req *resolve_start(struct resolver *r, const char *host, resolve_cb *cb, void *arg);

/* Forget a request: its callback never runs.  NULL-safe; sets *q NULL. */
void resolve_cancel(struct resolve_req **q);

/* Blocking lookup into out (what the worker thread runs; for tests). */
void resolve_blocking(const char *host, struct resolve_result *out);

#endif
