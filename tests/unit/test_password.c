/*
 * tests/unit/test_password.c -- password hash verification for every
 * accepted format, with vectors made by independent tools:
 *   mkpasswd -m yescrypt|sha512crypt|bcrypt (package whois, libxcrypt)
 *   argon2 tailpostsalt1 -id|-i -t 1 -m 10 -p 1 -e (package argon2)
 * all of the password "tailpost test".
 */
#include "tests/unit/unit.h"

#include "mailbox/directory/password.h"

#include <stdlib.h>
#include <string.h>

#define PW "tailpost test"

static const char *const good[] = {
        "$y$j9T$I4G1qbSnyC66NlDnxhuZd/$iGT7IRmu.T8JPA43CuzGOjUi16zAIaVgl8U0lV8LIO/",
        "$6$4MfQM4uY1lKDOVhF$HVKYpYMaPnt3v.mxFXa1AedDK272O4gVrjOLi2P1mlOa8SHBr7bTeW3bAPeKxZKYF1"
        "PPSjyuVTJy/.91Y5auK/",
        "$2b$05$cj8VMccBmA0UpQGlNFpHtOpr4ZUlTtAGLZxEHJxbHxAlIwQzEnedG",
        "$argon2id$v=19$m=1024,t=1,p=1$dGFpbHBvc3RzYWx0MQ$BBGrh9pfVKixZ7Y5mTxt7wJZe+r10lt5p+Df7e3"
        "qFRY",
        "$argon2i$v=19$m=1024,t=1,p=1$dGFpbHBvc3RzYWx0MQ$Lx6Jmw57JZzVMdGCrrLJtZ2Hg04noo3TzuUs3npk+"
        "go",
};

UNIT_TEST(password_verify_formats)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK_MSG(password_verify(good[i], PW) == PASSWORD_MATCH, "vector %zu", i);
		CHECK_MSG(password_verify(good[i], PW "x") == PASSWORD_MISMATCH, "vector %zu", i);
		CHECK_MSG(password_verify(good[i], "") == PASSWORD_MISMATCH, "vector %zu", i);
		CHECK_MSG(password_verify(good[i], "tailpost tesT") == PASSWORD_MISMATCH,
		          "vector %zu", i);
		CHECK_MSG(password_hash_supported(good[i]), "vector %zu", i);
	}
}

UNIT_TEST(password_rejects_bad_hashes)
{
	static const char *const bad[] = {
	        "",
	        "plaintext",
	        "tailpost test",
	        "$1$abcdefgh$0123456789abcdefghijkl", /* MD5-crypt: not accepted */
	        "$6$",
	        "$6$4MfQM4uY1lKDOVhF",
	        "$6$4MfQM4uY1lKDOVhF$HVKYpYMaPnt3v.mxFXa1AedDK272O4gVrjOLi2P1mlOa8SHBr7bTeW3bAPe",
	        "$argon2id$v=19$m=1024,t=1,p=1$dGFpbHBvc3RzYWx0MQ$",
	        "$argon2id$v=19$m=1024,t=1,p=1$!!!$BBGrh9pfVKixZ7Y5mTxt7wJZe+r10lt5p+Df7e3qFRY",
	        "$argon2d$v=19$m=1024,t=1,p=1$dGFpbHBvc3RzYWx0MQ$BBGrh9pfVKixZ7Y5mTxt7wJZe+r10lt5p+"
	        "Df7e3"
	        "qFRY",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_MSG(password_verify(bad[i], PW) != PASSWORD_MATCH, "bad %zu", i);
		CHECK_MSG(!password_hash_supported(bad[i]), "bad %zu", i);
	}
	CHECK(password_verify(NULL, PW) == PASSWORD_BAD_HASH);
	CHECK(password_verify(good[0], NULL) == PASSWORD_BAD_HASH);
}

UNIT_TEST(password_hash_roundtrip)
{
	const char *err = NULL;
	char *a = password_hash(PW, &err), *b = password_hash(PW, &err);

	CHECK(a != NULL && b != NULL);
	CHECK(strncmp(a, "$argon2id$v=19$m=65536,t=3,p=1$", 31) == 0);
	CHECK(strcmp(a, b) != 0); /* fresh salt each time */
	CHECK(password_verify(a, PW) == PASSWORD_MATCH);
	CHECK(password_verify(a, PW " ") == PASSWORD_MISMATCH);
	CHECK(password_hash_supported(a));
	free(a);
	free(b);
}

struct pw_wait {
	int done;
	enum password_result r[3];
};

static void pw_cb(void *arg, enum password_result r)
{
	struct pw_wait *w = arg;

	w->r[w->done++] = r;
}

static void pw_never(void *arg, enum password_result r)
{
	(void)r;
	*(int *)arg = 1;
}

UNIT_TEST(password_pool_runs_off_loop)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct password_pool *pp = password_pool_new(loop, 2);
	struct pw_wait w = {0};
	struct password_req *cancelled;
	int called = 0;
	char pw[] = PW;

	password_pool_verify(pp, good[0], pw, pw_cb, &w);
	/* the pool copied the password: wiping ours changes nothing */
	memset(pw, 'x', sizeof(pw) - 1);
	cancelled = password_pool_verify(pp, good[2], PW, pw_never, &called);
	password_req_cancel(&cancelled);
	CHECK(cancelled == NULL);
	password_pool_verify(pp, good[3], "wrong", pw_cb, &w);
	/* no callback inside the call */
	CHECK_INT(w.done, 0);
	ev_run(loop, 0); /* returns when nothing is outstanding */
	CHECK_INT(w.done, 2);
	CHECK_INT(called, 0);
	/* completion order may vary with two threads */
	CHECK((w.r[0] == PASSWORD_MATCH && w.r[1] == PASSWORD_MISMATCH) ||
	      (w.r[1] == PASSWORD_MATCH && w.r[0] == PASSWORD_MISMATCH));
	/* freeing with work queued drops it without callbacks */
	password_pool_verify(pp, good[0], PW, pw_never, &called);
	password_pool_free(&pp);
	CHECK(pp == NULL);
	CHECK_INT(called, 0);
	ev_loop_destroy(loop);
}
