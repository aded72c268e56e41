/*
 * mailbox/store/config.c -- the `stores:` tables and endpoint helpers.
 *
 * Every key is declared once below; shared/conf.c does parsing, defaults,
 * bounds and printing.  The validate hooks check what a table cannot say:
 * exactly one blob backend, URL shapes we can use (so a typo fails at
 * --check, not at the first delivery), and no password inside a URL in
 * the file (secrets come from the environment: DESIGN.md "One source of
 * truth for configuration").  The parsers for redis:// and S3 endpoint
 * URLs are pure and shared with the store implementations.
 */
#include "mailbox/store/config.h"

#include "shared/xmalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- data --------------------------------------------------------------- */

#define DK(f) CONF_OFF(struct stores_data_config, f)
static const struct conf_key data_keys[] = {
        {.name = "postgres",
         .type = CONF_STR,
         .offset = DK(postgres),
         .flags = CONF_F_REQUIRED,
         .help = "libpq URL or keyword string, without the password"},
        {.name = "password",
         .type = CONF_SECRET,
         .offset = DK(password),
         .help = "database password (\"${ENV}\" or \"file:/path\"); unset: PGPASSWORD/.pgpass"},
        {.name = "pool_size",
         .type = CONF_INT,
         .offset = DK(pool_size),
         .def = "16",
         .min = 1,
         .max = 64,
         .help = "connections per event loop"},
        {.name = "connect_timeout",
         .type = CONF_DURATION,
         .offset = DK(connect_timeout_ms),
         .def = "5s",
         .min = 100,
         .max = 120000,
         .help = "one connection attempt"},
        {.name = "query_timeout",
         .type = CONF_DURATION,
         .offset = DK(query_timeout_ms),
         .def = "30s",
         .min = 100,
         .max = 3600000,
         .help = "a request (queue wait + run) fails after this"},
};

static bool has_url_password(const char *url)
{
	const char *p, *at, *colon;

	if (strncmp(url, "postgres://", 11) == 0)
		p = url + 11;
	else if (strncmp(url, "postgresql://", 13) == 0)
		p = url + 13;
	else if (strncmp(url, "redis://", 8) == 0)
		p = url + 8;
	else
		return false;
	at = strchr(p, '@');
	if (at == NULL || (strchr(p, '/') != NULL && strchr(p, '/') < at))
		return false;
	colon = memchr(p, ':', (size_t)(at - p));
	return colon != NULL && colon + 1 < at;
}

/* A "password=" pair in a keyword conninfo string. */
static bool has_kw_password(const char *s)
{
	for (const char *p = s; (p = strstr(p, "password")) != NULL; p += 8) {
		const char *q = p + 8;
		if (p != s && !isspace((unsigned char)p[-1]))
			continue;
		while (isspace((unsigned char)*q))
			q++;
		if (*q == '=')
			return true;
	}
	return false;
}

static int data_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct stores_data_config *d = obj;

	if (d->postgres == NULL)
		return 0;
	if (has_url_password(d->postgres) || has_kw_password(d->postgres)) {
		conf_error(ctx, line, col, path,
		           "postgres: put the password in 'password' (from ${ENV} or file:), "
		           "not in the connection string");
		return -1;
	}
	return 0;
}

static const struct conf_table data_table = {
        .name = "data",
        .size = sizeof(struct stores_data_config),
        .keys = data_keys,
        .nkeys = ARRAY_SIZE(data_keys),
        .validate = data_validate,
};

/* --- blob ----------------------------------------------------------------- */

#define FK(f) CONF_OFF(struct stores_fs_config, f)
static const struct conf_key fs_keys[] = {
        {.name = "path",
         .type = CONF_STR,
         .offset = FK(path),
         .flags = CONF_F_REQUIRED,
         .help = "root directory of the blob tree (single host only)"},
};

static int fs_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct stores_fs_config *f = obj;

	if (f->path != NULL && f->path[0] != '/') {
		conf_error(ctx, line, col, path, "path '%s' must be absolute", f->path);
		return -1;
	}
	return 0;
}

static const struct conf_table fs_table = {
        .name = "fs",
        .size = sizeof(struct stores_fs_config),
        .keys = fs_keys,
        .nkeys = ARRAY_SIZE(fs_keys),
        .validate = fs_validate,
};

static const char *const s3_verify_names[] = {"head", "etag", NULL};

#define SK(f) CONF_OFF(struct stores_s3_config, f)
static const struct conf_key s3_keys[] = {
        {.name = "endpoint",
         .type = CONF_STR,
         .offset = SK(endpoint),
         .flags = CONF_F_REQUIRED,
         .help = "http[s]://host:port of the S3 API"},
        {.name = "region",
         .type = CONF_STR,
         .offset = SK(region),
         .def = "us-east-1",
         .help = "SigV4 signing region"},
        {.name = "bucket",
         .type = CONF_STR,
         .offset = SK(bucket),
         .flags = CONF_F_REQUIRED,
         .help = "bucket holding the message blobs"},
        {.name = "prefix",
         .type = CONF_STR,
         .offset = SK(prefix),
         .def = "",
         .help = "key prefix inside the bucket, e.g. \"mail/\""},
        {.name = "access_key",
         .type = CONF_SECRET,
         .offset = SK(access_key),
         .flags = CONF_F_REQUIRED,
         .help = "access key id (\"${ENV}\")"},
        {.name = "secret_key",
         .type = CONF_SECRET,
         .offset = SK(secret_key),
         .flags = CONF_F_REQUIRED,
         .help = "secret access key (\"${ENV}\")"},
        {.name = "path_style",
         .type = CONF_BOOL,
         .offset = SK(path_style),
         .def = "true",
         .help = "host/bucket/key addressing (Garage, MinIO); false: bucket.host/key"},
        {.name = "timeout",
         .type = CONF_DURATION,
         .offset = SK(timeout_ms),
         .def = "30s",
         .min = 100,
         .max = 600000,
         .help = "one HTTP request"},
        {.name = "retries",
         .type = CONF_INT,
         .offset = SK(retries),
         .def = "3",
         .min = 0,
         .max = 20,
         .help = "extra attempts after a 5xx, a timeout or a connection error"},
        {.name = "verify",
         .type = CONF_ENUM,
         .offset = SK(verify),
         .def = "head",
         .enum_names = s3_verify_names,
         .help = "how a PUT is confirmed: head (a HEAD checks the stored size) or etag "
                 "(the PUT's ETag must be the MD5 of the bytes sent; no second request)"},
};

static bool bucket_ok(const char *b)
{
	size_t n = strlen(b);

	/* S3 bucket naming rules: 3..63 of [a-z0-9.-], alnum at both ends. */
	if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '.' ||
		      b[i] == '-'))
			return false;
	return true;
}

static int s3_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct stores_s3_config *s = obj;
	char host[256];
	bool https;
	uint16_t port;
	const char *err = NULL;
	int rc = 0;

	if (s->endpoint != NULL &&
	    stores_s3_endpoint_parse(s->endpoint, &https, host, sizeof(host), &port, &err) < 0) {
		conf_error(ctx, line, col, path, "endpoint '%s': %s", s->endpoint, err);
		rc = -1;
	}
	if (s->bucket != NULL && !bucket_ok(s->bucket)) {
		conf_error(ctx, line, col, path,
		           "bucket '%s': 3..63 bytes of [a-z0-9.-], starting and ending with a "
		           "letter or digit",
		           s->bucket);
		rc = -1;
	}
	if (s->prefix != NULL && s->prefix[0] == '/') {
		conf_error(ctx, line, col, path, "prefix must not start with '/'");
		rc = -1;
	}
	return rc;
}

static const struct conf_table s3_table = {
        .name = "s3",
        .size = sizeof(struct stores_s3_config),
        .keys = s3_keys,
        .nkeys = ARRAY_SIZE(s3_keys),
        .validate = s3_validate,
};

#define GK(f) CONF_OFF(struct stores_blob_gc_config, f)
static const struct conf_key gc_keys[] = {
        {.name = "interval",
         .type = CONF_DURATION,
         .offset = GK(interval_ms),
         .def = "1h",
         .min = 0,
         .max = 7 * 86400000LL,
         .help = "time between collections of unreferenced blobs; 0: never (use `gc`)"},
        /* Between tp_blob_reserve and tp_deliver a blob is unreferenced: the
         * grace must exceed the longest delivery (S3 timeouts times retries),
         * hence the floor. */
        {.name = "grace",
         .type = CONF_DURATION,
         .offset = GK(grace_ms),
         .def = "1d",
         .min = 600000,
         .max = 365 * 86400000LL,
         .help = "a blob unused for this long may be removed (at least 10m)"},
        {.name = "batch",
         .type = CONF_INT,
         .offset = GK(batch),
         .def = "100",
         .min = 1,
         .max = 10000,
         .help = "blobs removed per transaction (their rows stay locked meanwhile)"},
};

static const struct conf_table gc_table = {
        .name = "gc",
        .size = sizeof(struct stores_blob_gc_config),
        .keys = gc_keys,
        .nkeys = ARRAY_SIZE(gc_keys),
};

#define BK(f) CONF_OFF(struct stores_blob_config, f)
static const struct conf_key blob_keys[] = {
        {.name = "fs",
         .type = CONF_SECTION,
         .offset = BK(fs),
         .sub = &fs_table,
         .present_offset = BK(has_fs),
         .help = "a local directory tree"},
        {.name = "s3",
         .type = CONF_SECTION,
         .offset = BK(s3),
         .sub = &s3_table,
         .present_offset = BK(has_s3),
         .help = "an S3-compatible object store"},
        {.name = "gc",
         .type = CONF_SECTION,
         .offset = BK(gc),
         .sub = &gc_table,
         .help = "collection of blobs no message or queue entry references"},
};

static int blob_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct stores_blob_config *b = obj;

	if (b->has_fs == b->has_s3) {
		conf_error(ctx, line, col, path, "exactly one of 'fs' and 's3' is required (%s)",
		           b->has_fs ? "both are set" : "neither is set");
		return -1;
	}
	return 0;
}

static const struct conf_table blob_table = {
        .name = "blob",
        .size = sizeof(struct stores_blob_config),
        .keys = blob_keys,
        .nkeys = ARRAY_SIZE(blob_keys),
        .validate = blob_validate,
};

/* --- memory ----------------------------------------------------------------- */

#define MK(f) CONF_OFF(struct stores_memory_config, f)
static const struct conf_key memory_keys[] = {
        {.name = "redis",
         .type = CONF_STR,
         .offset = MK(redis),
         .help = "redis://host:port/N; unset: in-process store, single instance only"},
        {.name = "password",
         .type = CONF_SECRET,
         .offset = MK(password),
         .help = "Redis AUTH password (\"${ENV}\"); unset: no AUTH"},
        {.name = "prefix",
         .type = CONF_STR,
         .offset = MK(prefix),
         .def = "tailpost:",
         .help = "prefix of every Redis key and channel"},
        {.name = "timeout",
         .type = CONF_DURATION,
         .offset = MK(timeout_ms),
         .def = "3s",
         .min = 50,
         .max = 60000,
         .help = "connect and command timeout"},
};

static int memory_validate(void *obj, struct conf_ctx *ctx, const char *path, int line, int col)
{
	struct stores_memory_config *m = obj;
	char host[256], *pw = NULL;
	uint16_t port;
	int db;
	const char *err = NULL;
	int rc = 0;

	if (m->redis == NULL)
		return 0;
	if (stores_redis_url_parse(m->redis, host, sizeof(host), &port, &db, &pw, &err) < 0) {
		conf_error(ctx, line, col, path, "redis '%s': %s", m->redis, err);
		rc = -1;
	} else if (pw != NULL) {
		conf_error(ctx, line, col, path,
		           "redis: put the password in 'password' (from ${ENV} or file:), "
		           "not in the URL");
		rc = -1;
	}
	free(pw);
	return rc;
}

static const struct conf_table memory_table = {
        .name = "memory",
        .size = sizeof(struct stores_memory_config),
        .keys = memory_keys,
        .nkeys = ARRAY_SIZE(memory_keys),
        .validate = memory_validate,
};

/* --- stores ----------------------------------------------------------------- */

#define TK(f) CONF_OFF(struct stores_config, f)
static const struct conf_key stores_keys[] = {
        {.name = "data",
         .type = CONF_SECTION,
         .offset = TK(data),
         .sub = &data_table,
         .help = "Postgres: domains, accounts, mailboxes, message metadata, queue"},
        {.name = "blob",
         .type = CONF_SECTION,
         .offset = TK(blob),
         .sub = &blob_table,
         .help = "message bodies: exactly one of fs or s3"},
        {.name = "memory",
         .type = CONF_SECTION,
         .offset = TK(memory),
         .sub = &memory_table,
         .help = "rate limits, bans, pub/sub between instances"},
};

const struct conf_table stores_conf_table = {
        .name = "stores",
        .size = sizeof(struct stores_config),
        .keys = stores_keys,
        .nkeys = ARRAY_SIZE(stores_keys),
};

/* --- endpoint helpers ------------------------------------------------------- */

static void copy_trunc(char *out, size_t outsz, const char *p, size_t n)
{
	if (outsz == 0)
		return;
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* Append p[0..n) at *pos in out, truncating; keeps NUL termination. */
static void app(char *out, size_t outsz, size_t *pos, const char *p, size_t n)
{
	if (*pos + 1 >= outsz)
		return;
	if (n > outsz - 1 - *pos)
		n = outsz - 1 - *pos;
	memcpy(out + *pos, p, n);
	*pos += n;
	out[*pos] = '\0';
}

const char *stores_endpoint_redact(const char *endpoint, char *out, size_t outsz)
{
	const char *scheme_end, *p, *at, *slash;
	size_t pos = 0;

	if (outsz == 0)
		return out;
	out[0] = '\0';
	if (endpoint == NULL)
		return out;
	scheme_end = strstr(endpoint, "://");
	if (scheme_end != NULL) {
		/* URL: drop ":password" from the userinfo. */
		p = scheme_end + 3;
		slash = p + strcspn(p, "/?#");
		at = memchr(p, '@', (size_t)(slash - p));
		/* the last '@' before the path ends the userinfo (RFC 3986 3.2.1) */
		for (const char *q = at; q != NULL && q < slash;
		     q = memchr(q + 1, '@', (size_t)(slash - q - 1)))
			at = q;
		if (at == NULL) {
			copy_trunc(out, outsz, endpoint, strlen(endpoint));
		} else {
			const char *colon = memchr(p, ':', (size_t)(at - p));
			app(out, outsz, &pos, endpoint, (size_t)(p - endpoint));
			app(out, outsz, &pos, p, (size_t)((colon != NULL ? colon : at) - p));
			app(out, outsz, &pos, at, strlen(at));
		}
		/* and a password=... query parameter (libpq accepts one) */
		for (char *q = out; (q = strstr(q, "password=")) != NULL;) {
			char *end;
			if (q == out || (q[-1] != '?' && q[-1] != '&')) {
				q++;
				continue;
			}
			end = q + strcspn(q, "&");
			if (*end == '&')
				memmove(q, end + 1, strlen(end + 1) + 1);
			else {
				q[-1] = '\0';
				break;
			}
		}
		return out;
	}
	/* keyword=value string: copy every pair except password */
	p = endpoint;
	while (*p != '\0') {
		const char *start, *end;
		bool quoted = false;

		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && *p != '=' && !isspace((unsigned char)*p))
			p++;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '=') {
			p++;
			while (isspace((unsigned char)*p))
				p++;
			if (*p == '\'') {
				quoted = true;
				for (p++; *p != '\0' && *p != '\''; p++)
					if (*p == '\\' && p[1] != '\0')
						p++;
				if (*p == '\'')
					p++;
			}
			if (!quoted)
				while (*p != '\0' && !isspace((unsigned char)*p))
					p++;
		}
		end = p;
		if (strncmp(start, "password", 8) == 0 &&
		    (start[8] == '=' || isspace((unsigned char)start[8])))
			continue;
		if (pos > 0)
			app(out, outsz, &pos, " ", 1);
		app(out, outsz, &pos, start, (size_t)(end - start));
	}
	return out;
}

/* host[:port] with optional [v6] brackets into host (brackets removed
 * unless keep_brackets) and *port_r (def when absent). */
static int split_authority(const char *p, size_t n, bool keep_brackets, char *host, size_t hostsz,
                           uint16_t def, uint16_t *port_r, const char **errstr_r)
{
	const char *hs, *he, *ps = NULL;

	if (n == 0) {
		*errstr_r = "empty host";
		return -1;
	}
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', n);
		if (rb == NULL) {
			*errstr_r = "unbalanced '[' in host";
			return -1;
		}
		hs = keep_brackets ? p : p + 1;
		he = keep_brackets ? rb + 1 : rb;
		if (rb + 1 < p + n) {
			if (rb[1] != ':') {
				*errstr_r = "junk after ']'";
				return -1;
			}
			ps = rb + 2;
		}
	} else {
		const char *colon = memchr(p, ':', n);
		hs = p;
		he = colon != NULL ? colon : p + n;
		if (colon != NULL)
			ps = colon + 1;
	}
	if (he == hs || (!keep_brackets && p[0] == '[' && he == hs)) {
		*errstr_r = "empty host";
		return -1;
	}
	for (const char *q = hs; q < he; q++) {
		unsigned char c = (unsigned char)*q;
		if (c <= ' ' || c >= 0x7f || c == '@' || c == '/' || c == '?' || c == '#') {
			*errstr_r = "invalid character in host";
			return -1;
		}
	}
	if ((size_t)(he - hs) >= hostsz) {
		*errstr_r = "host name too long";
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*port_r = def;
	if (ps != NULL) {
		unsigned long v = 0;
		const char *end = p + n;
		if (ps == end) {
			*errstr_r = "empty port";
			return -1;
		}
		for (const char *q = ps; q < end; q++) {
			if (*q < '0' || *q > '9' || v > 65535) {
				*errstr_r = "invalid port";
				return -1;
			}
			v = v * 10 + (unsigned long)(*q - '0');
		}
		if (v == 0 || v > 65535) {
			*errstr_r = "port out of range 1..65535";
			return -1;
		}
		*port_r = (uint16_t)v;
	}
	return 0;
}

int stores_redis_url_parse(const char *url, char *host, size_t hostsz, uint16_t *port_r, int *db_r,
                           char **password_r, const char **errstr_r)
{
	const char *p, *auth_end, *at, *path;
	char *pw = NULL;

	if (password_r != NULL)
		*password_r = NULL;
	if (strncasecmp(url, "redis://", 8) != 0) {
		*errstr_r = strncasecmp(url, "rediss://", 9) == 0
		                    ? "rediss:// (TLS) is not supported by hiredis 0.14"
		                    : "must start with redis://";
		return -1;
	}
	p = url + 8;
	auth_end = p + strcspn(p, "/?#");
	at = NULL;
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon != NULL && colon + 1 < at)
			pw = xstrndup(colon + 1, (size_t)(at - colon - 1));
		p = at + 1;
	}
	if (split_authority(p, (size_t)(auth_end - p), false, host, hostsz, 6379, port_r,
	                    errstr_r) < 0)
		goto fail;
	*db_r = 0;
	path = auth_end;
	if (*path == '/' && path[1] != '\0') {
		long v = 0;
		const char *q = path + 1;
		for (; *q >= '0' && *q <= '9'; q++) {
			v = v * 10 + (*q - '0');
			if (v > 65535) {
				*errstr_r = "database number too large";
				goto fail;
			}
		}
		if (q == path + 1 || *q != '\0') {
			*errstr_r = "path must be a database number: redis://host:port/N";
			goto fail;
		}
		*db_r = (int)v;
	} else if (*path != '\0' && strcmp(path, "/") != 0) {
		*errstr_r = "query strings are not supported";
		goto fail;
	}
	if (password_r != NULL)
		*password_r = pw;
	else
		free(pw);
	return 0;
fail:
	free(pw);
	return -1;
}

int stores_s3_endpoint_parse(const char *endpoint, bool *https_r, char *host, size_t hostsz,
                             uint16_t *port_r, const char **errstr_r)
{
	const char *p;
	size_t n;

	if (strncasecmp(endpoint, "http://", 7) == 0) {
		*https_r = false;
		p = endpoint + 7;
	} else if (strncasecmp(endpoint, "https://", 8) == 0) {
		*https_r = true;
		p = endpoint + 8;
	} else {
		*errstr_r = "must start with http:// or https://";
		return -1;
	}
	n = strlen(p);
	if (n > 0 && p[n - 1] == '/')
		n--;
	if (memchr(p, '/', n) != NULL || memchr(p, '?', n) != NULL || memchr(p, '#', n) != NULL) {
		*errstr_r = "no path or query allowed (the bucket is a separate key)";
		return -1;
	}
	if (memchr(p, '@', n) != NULL) {
		*errstr_r = "no credentials in the URL (use access_key/secret_key)";
		return -1;
	}
	return split_authority(p, n, true, host, hostsz, *https_r ? 443 : 80, port_r, errstr_r);
}
