/*
 * mailbox/store/config.h -- the `stores:` section of mailbox.yaml.
 *
 * Three stores, each declared once in a shared/conf.h table:
 *
 *   stores:
 *     data:   { postgres: "postgres://tailpost@db:5432/tailpost",
 *               password: "${TAILPOST_DB_PASSWORD}", pool_size: 4,
 *               connect_timeout: 5s }
 *     blob:   { s3: { endpoint: "http://garage:3900", region: garage,
 *                     bucket: tailpost-mail, prefix: "", path_style: true,
 *                     access_key: "${...}", secret_key: "${...}",
 *                     timeout: 30s, retries: 3 } }
 *             # or: blob: { fs: { path: /var/lib/tailpost/blobs } }
 *             # either with: gc: { interval: 1h, grace: 1d, batch: 100 }
 *     memory: { redis: "redis://redis:6379/3", prefix: "tailpost:" }
 *
 * `postgres` is a libpq URL or keyword string; the password lives in its
 * own secret key so the URL can be printed (a password inside the URL is
 * refused); memory.password likewise holds the Redis AUTH password.  Exactly one of blob.fs and
 * blob.s3 must be present (the validate hook says so).  memory.redis is
 * optional: without it an in-process store serves a single instance only.
 * The containing config embeds struct stores_config and points a
 * CONF_SECTION key named "stores" at stores_conf_table.
 */
#ifndef MAILBOX_STORE_CONFIG_H
#define MAILBOX_STORE_CONFIG_H

#include "shared/conf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stores_data_config {
	char *postgres;              /* URL or keyword string (required) */
	char *password;              /* secret; NULL: libpq's own (PGPASSWORD, .pgpass) */
	int64_t pool_size;           /* connections per loop */
	uint64_t connect_timeout_ms; /* one connection attempt */
	uint64_t query_timeout_ms;   /* a queued+running request fails after this */
};

struct stores_fs_config {
	char *path; /* root directory of the blob tree (required) */
};

struct stores_s3_config {
	char *endpoint; /* "http://host:port" or "https://host:port" */
	char *region;   /* SigV4 region */
	char *bucket;
	char *prefix;        /* key prefix, "" by default ("mail/" -> mail/ab/cd/<sha>) */
	char *access_key;    /* secret */
	char *secret_key;    /* secret */
	bool path_style;     /* http://host/bucket/key (default) vs http://bucket.host/key */
	uint64_t timeout_ms; /* one HTTP request */
	int64_t retries;     /* extra attempts on 5xx, timeouts, connection errors */
	int verify;          /* enum stores_s3_verify: how a PUT is confirmed */
};

/* How a put becomes durable (DESIGN.md "Nothing accepted is lost"). */
enum stores_s3_verify {
	STORES_S3_VERIFY_HEAD, /* a HEAD after the PUT: the object is there, its size matches */
	STORES_S3_VERIFY_ETAG, /* the PUT's ETag equals the MD5 of the bytes sent (one request;
	                          a HEAD when the ETag is not an MD5, e.g. SSE-KMS) */
};

/* Collection of unreferenced blobs by `serve` (mailbox/store/blob_gc.h,
 * mailbox/server/gc_timer.h); `tailpost-mailbox gc` runs it by hand. */
struct stores_blob_gc_config {
	uint64_t interval_ms; /* between runs; 0: serve never collects */
	uint64_t grace_ms;    /* a blob unused this long may go (> any delivery) */
	int64_t batch;        /* blobs per transaction */
};

struct stores_blob_config {
	struct stores_fs_config fs;
	struct stores_s3_config s3;
	struct stores_blob_gc_config gc;
	bool has_fs; /* blob.fs present */
	bool has_s3; /* blob.s3 present */
};

struct stores_memory_config {
	char *redis;         /* "redis://host:port/N" or NULL (in-process store) */
	char *password;      /* secret: Redis AUTH; NULL: none */
	char *prefix;        /* prefix of every Redis key and channel */
	uint64_t timeout_ms; /* connect and command timeout */
};

struct stores_config {
	struct stores_data_config data;
	struct stores_blob_config blob;
	struct stores_memory_config memory;
};

extern const struct conf_table stores_conf_table;

/*
 * Copy an endpoint for messages with any password removed: a URL
 * "postgres://u:pw@h/db" becomes "postgres://u@h/db", a keyword string
 * drops its password=... pair, a redis URL drops its userinfo password.
 * Always NUL-terminates out (truncating if needed) and returns out.
 */
const char *stores_endpoint_redact(const char *endpoint, char *out, size_t outsz);

/*
 * Parse "redis://[[user]:password@]host[:port][/db]" (port 6379, db 0 by
 * default; "[v6]" hosts allowed).  host receives at most hostsz-1 bytes;
 * *password_r (may be NULL) gets a malloc'd copy of the password or NULL.
 * 0, or -1 with *errstr_r (static).  Pure.
 */
int stores_redis_url_parse(const char *url, char *host, size_t hostsz, uint16_t *port_r, int *db_r,
                           char **password_r, const char **errstr_r);

/*
 * Parse an S3 endpoint "http[s]://host[:port]" (an optional trailing '/';
 * no path, query or userinfo).  scheme_https_r, host (at most hostsz-1
 * bytes, IPv6 brackets kept) and port (80/443 when absent) are filled.
 * 0, or -1 with *errstr_r (static).  Pure.
 */
int stores_s3_endpoint_parse(const char *endpoint, bool *https_r, char *host, size_t hostsz,
                             uint16_t *port_r, const char **errstr_r);

#endif
