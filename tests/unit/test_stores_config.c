/*
 * tests/unit/test_stores_config.c -- the stores: section and its URL
 * helpers: shapes accepted and refused, defaults, and redaction.
 */
#include "tests/unit/unit.h"

#include "mailbox/store/config.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Load `text` as a stores section; returns the number of errors. */
static size_t load(const char *text, struct stores_config *c, char *first_err, size_t errsz)
{
	struct conf_ctx ctx;
	size_t n;

	memset(c, 0, sizeof(*c));
	conf_load_buffer("t.yaml", text, strlen(text), &stores_conf_table, c, &ctx);
	n = ctx.nerrs;
	if (first_err != NULL) {
		first_err[0] = '\0';
		if (n > 0)
			snprintf(first_err, errsz, "%s", ctx.errs[0].msg);
	}
	conf_ctx_free(&ctx);
	return n;
}

UNIT_TEST(stores_config_s3_defaults)
{
	struct stores_config c;
	char err[512];

	CHECK_INT(load("data: { postgres: \"postgres://tp@db:5432/tp\", password: pw }\n"
	               "blob: { s3: { endpoint: \"http://garage:3900\", region: garage,\n"
	               "              bucket: tailpost-mail, access_key: a, secret_key: s } }\n"
	               "memory: { redis: \"redis://r:6379/3\" }\n",
	               &c, err, sizeof(err)),
	          0);
	CHECK(c.blob.has_s3);
	CHECK(!c.blob.has_fs);
	CHECK(c.blob.s3.path_style);
	CHECK_STR(c.blob.s3.prefix, "");
	CHECK_INT(c.blob.s3.retries, 3);
	CHECK_INT(c.blob.s3.timeout_ms, 30000);
	CHECK_INT(c.data.pool_size, 16);
	CHECK_STR(c.data.password, "pw");
	CHECK_STR(c.memory.prefix, "tailpost:");
	CHECK_STR(c.memory.redis, "redis://r:6379/3");
	conf_free(&stores_conf_table, &c);
}

UNIT_TEST(stores_config_fs_and_errors)
{
	static const struct {
		const char *yaml;
		const char *err; /* substring of the first error, NULL: valid */
	} t[] = {
	        {"data: { postgres: x }\nblob: { fs: { path: /var/b } }\n", NULL},
	        {"data: { postgres: x }\nblob: {}\n", "exactly one of 'fs' and 's3'"},
	        {"data: { postgres: x }\nblob: { fs: { path: /a }, s3: { endpoint: \"http://h:1\","
	         " bucket: bbb, access_key: a, secret_key: b } }\n",
	         "both are set"},
	        {"data: { postgres: x }\nblob: { fs: { path: rel } }\n", "must be absolute"},
	        {"data: { postgres: \"postgres://u:secret@h/db\" }\nblob: { fs: { path: /a } }\n",
	         "put the password in 'password'"},
	        {"data: { postgres: \"host=h password=x\" }\nblob: { fs: { path: /a } }\n",
	         "put the password in 'password'"},
	        {"data: { postgres: x }\nblob: { s3: { endpoint: \"garage:3900\", bucket: bbb,"
	         " access_key: a, secret_key: b } }\n",
	         "must start with http"},
	        {"data: { postgres: x }\nblob: { s3: { endpoint: \"http://h:3900/path\", bucket: "
	         "bbb,"
	         " access_key: a, secret_key: b } }\n",
	         "no path"},
	        {"data: { postgres: x }\nblob: { s3: { endpoint: \"http://h:3900\", bucket: B_x,"
	         " access_key: a, secret_key: b } }\n",
	         "bucket 'B_x'"},
	        {"data: { postgres: x }\nblob: { fs: { path: /a } }\nmemory: { redis: "
	         "\"redis://h:99999/1\" }\n",
	         "port"},
	        {"data: { postgres: x }\nblob: { fs: { path: /a } }\nmemory: { redis: "
	         "\"redis://:pw@h:6379/1\" }\n",
	         "put the password"},
	        {"data: { postgres: x }\nblob: { fs: { path: /a } }\nmemory: { redis: "
	         "\"rediss://h:6379/1\" }\n",
	         "not supported"},
	        {"blob: { fs: { path: /a } }\n", "postgres"},
	        {"data: { postgres: x, bogus: 1 }\nblob: { fs: { path: /a } }\n", "bogus"},
	};
	struct stores_config c;
	char err[512];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = load(t[i].yaml, &c, err, sizeof(err));
		if (t[i].err == NULL)
			CHECK_MSG(n == 0, "case %zu: unexpected error %s", i, err);
		else
			CHECK_MSG(n > 0 && strstr(err, t[i].err) != NULL,
			          "case %zu: want error containing '%s', got '%s'", i, t[i].err,
			          err);
		conf_free(&stores_conf_table, &c);
	}
}

UNIT_TEST(stores_config_redact)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	        {"postgres://tailpost@db:5432/tp", "postgres://tailpost@db:5432/tp"},
	        {"postgres://u:pw@db:5432/tp", "postgres://u@db:5432/tp"},
	        {"postgresql://u:p@ss@db/tp?sslmode=require",
	         "postgresql://u@db/tp?sslmode=require"},
	        {"postgres://db/tp?password=x&sslmode=require", "postgres://db/tp?sslmode=require"},
	        {"postgres://db/tp?sslmode=require&password=x", "postgres://db/tp?sslmode=require"},
	        {"postgres://db/tp?password=x", "postgres://db/tp"},
	        {"redis://:secret@h:6379/3", "redis://@h:6379/3"},
	        {"host=db port=5432 password=secret user=u", "host=db port=5432 user=u"},
	        {"host=db password = 'se cret' user=u", "host=db user=u"},
	        {"http://garage:3900", "http://garage:3900"},
	};
	char out[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_STR(stores_endpoint_redact(t[i].in, out, sizeof(out)), t[i].out);
	/* truncation keeps a terminated string */
	CHECK_STR(stores_endpoint_redact("postgres://u:pw@db/tp", out, 12), "postgres://");
}

UNIT_TEST(stores_config_redis_url)
{
	char host[64], *pw = NULL;
	uint16_t port;
	int db;
	const char *err = NULL;

	CHECK_INT(stores_redis_url_parse("redis://r.example:6380/3", host, sizeof(host), &port, &db,
	                                 &pw, &err),
	          0);
	CHECK_STR(host, "r.example");
	CHECK_INT(port, 6380);
	CHECK_INT(db, 3);
	CHECK(pw == NULL);
	CHECK_INT(stores_redis_url_parse("redis://h", host, sizeof(host), &port, &db, &pw, &err),
	          0);
	CHECK_INT(port, 6379);
	CHECK_INT(db, 0);
	CHECK_INT(stores_redis_url_parse("redis://u:p%w@[::1]:7000/", host, sizeof(host), &port,
	                                 &db, &pw, &err),
	          0);
	CHECK_STR(host, "::1");
	CHECK_INT(port, 7000);
	CHECK_STR(pw, "p%w");
	free(pw);
	pw = NULL;
	CHECK_INT(stores_redis_url_parse("redis://h:6379/x", host, sizeof(host), &port, &db, &pw,
	                                 &err),
	          -1);
	CHECK_INT(stores_redis_url_parse("http://h", host, sizeof(host), &port, &db, &pw, &err),
	          -1);
	CHECK_INT(stores_redis_url_parse("redis://:0/1", host, sizeof(host), &port, &db, &pw, &err),
	          -1);
	CHECK_INT(stores_redis_url_parse("redis://h:0", host, sizeof(host), &port, &db, &pw, &err),
	          -1);
}

UNIT_TEST(stores_config_s3_endpoint)
{
	char host[64];
	uint16_t port;
	bool https;
	const char *err = NULL;

	CHECK_INT(stores_s3_endpoint_parse("http://garage:3900", &https, host, sizeof(host), &port,
	                                   &err),
	          0);
	CHECK(!https);
	CHECK_STR(host, "garage");
	CHECK_INT(port, 3900);
	CHECK_INT(stores_s3_endpoint_parse("https://s3.example/", &https, host, sizeof(host), &port,
	                                   &err),
	          0);
	CHECK(https);
	CHECK_INT(port, 443);
	CHECK_INT(stores_s3_endpoint_parse("http://[::1]:9000", &https, host, sizeof(host), &port,
	                                   &err),
	          0);
	CHECK_STR(host, "[::1]");
	CHECK_INT(
	        stores_s3_endpoint_parse("http://u:p@h:1", &https, host, sizeof(host), &port, &err),
	        -1);
	CHECK_INT(stores_s3_endpoint_parse("ftp://h", &https, host, sizeof(host), &port, &err), -1);
	CHECK_INT(stores_s3_endpoint_parse("http://", &https, host, sizeof(host), &port, &err), -1);
	CHECK_INT(stores_s3_endpoint_parse("http://h:", &https, host, sizeof(host), &port, &err),
	          -1);
}

UNIT_TEST(stores_config_blob_gc_and_verify)
{
	static const struct {
		const char *blob;
		const char *err; /* substring of the first error, NULL: valid */
		uint64_t interval_ms, grace_ms;
		int64_t batch;
		int verify;
	} t[] = {
	        {"blob: { fs: { path: /b } }\n", NULL, 3600000, 86400000, 100,
	         STORES_S3_VERIFY_HEAD},
	        {"blob: { fs: { path: /b }, gc: { interval: 0, grace: 2h, batch: 5 } }\n", NULL, 0,
	         7200000, 5, STORES_S3_VERIFY_HEAD},
	        {"blob: { fs: { path: /b }, gc: { interval: 30m, grace: 10m } }\n", NULL, 1800000,
	         600000, 100, STORES_S3_VERIFY_HEAD},
	        {"blob: { s3: { endpoint: \"http://h:1\", bucket: bkt, access_key: a, secret_key: "
	         "s, verify: etag } }\n",
	         NULL, 3600000, 86400000, 100, STORES_S3_VERIFY_ETAG},
	        {"blob: { fs: { path: /b }, gc: { grace: 5m } }\n", "grace", 0, 0, 0, 0},
	        {"blob: { fs: { path: /b }, gc: { batch: 0 } }\n", "batch", 0, 0, 0, 0},
	        {"blob: { fs: { path: /b }, gc: { every: 1h } }\n", "every", 0, 0, 0, 0},
	        {"blob: { s3: { endpoint: \"http://h:1\", bucket: bkt, access_key: a, secret_key: "
	         "s, verify: none } }\n",
	         "verify", 0, 0, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct stores_config c;
		char text[512], err[512];
		size_t n;

		snprintf(text, sizeof(text), "data: { postgres: x }\n%s", t[i].blob);
		n = load(text, &c, err, sizeof(err));
		if (t[i].err == NULL) {
			CHECK_MSG(n == 0, "case %zu: %s", i, err);
			CHECK_INT(c.blob.gc.interval_ms, t[i].interval_ms);
			CHECK_INT(c.blob.gc.grace_ms, t[i].grace_ms);
			CHECK_INT(c.blob.gc.batch, t[i].batch);
			CHECK_INT(c.blob.s3.verify, t[i].verify);
		} else {
			CHECK_MSG(n > 0 && strstr(err, t[i].err) != NULL, "case %zu: '%s'", i, err);
		}
		conf_free(&stores_conf_table, &c);
	}
}
