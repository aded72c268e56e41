/*
 * tests/unit/test_store_names.c -- the pure helpers of the store and the
 * directory: blob keys, the UTF-8-safe search-text cut, address and domain
 * normalisation, roles.
 */
#include "tests/unit/unit.h"

#include "mailbox/directory/directory.h"
#include "mailbox/store/blob.h"
#include "mailbox/store/schema.h"

#include <string.h>

UNIT_TEST(store_blob_keys)
{
	char key[BLOB_KEY_LEN + 1];

	blob_key_mem("", 0, key);
	CHECK_STR(key, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	blob_key_mem("abc", 3, key);
	CHECK_STR(key, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK(blob_key_valid(key));
	CHECK(!blob_key_valid(NULL));
	CHECK(!blob_key_valid(""));
	CHECK(!blob_key_valid("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
	CHECK(!blob_key_valid("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"));
	CHECK(!blob_key_valid("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015add"));
	CHECK(!blob_key_valid("../16bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

UNIT_TEST(store_schema_utf8_truncate)
{
	static const struct {
		const char *s;
		size_t max, want;
	} t[] = {
	        {"abcdef", 10, 6},
	        {"abcdef", 3, 3},
	        {"ab\xc3\xa9", 3, 2}, /* é would be split */
	        {"ab\xc3\xa9", 4, 4},
	        {"a\xe6\x97\xa5", 2, 1}, /* 3-byte sequence */
	        {"a\xe6\x97\xa5", 3, 1},
	        {"a\xf0\x9f\x93\xa7z", 4, 1}, /* 4-byte sequence */
	        {"a\xf0\x9f\x93\xa7z", 5, 5},
	        {"\xc3\xa9", 1, 0},
	        {"", 0, 0},
	        /* not UTF-8: cut at max rather than eaten back */
	        {"ab\xa1\xa1\xa1\xa1\xa1", 6, 6},
	        {"ab\xa1\xa1\xa1", 4, 1}, /* at most 3 bytes given up */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_MSG(schema_utf8_truncate(t[i].s, strlen(t[i].s), t[i].max) == t[i].want,
		          "case %zu", i);
	CHECK(schema_latest() >= 1);
}

UNIT_TEST(dir_address_normalize_table)
{
	static const struct {
		const char *in;
		bool catchall;
		const char *out; /* NULL: refused */
	} t[] = {
	        {"Alice@Example.ORG", false, "alice@example.org"},
	        {"a.b+tag@sub.example.org", false, "a.b+tag@sub.example.org"},
	        {"@example.org", true, "@example.org"},
	        {"@example.org", false, NULL},
	        {"alice", false, NULL},
	        {"alice@", false, NULL},
	        {"alice@-bad.org", false, NULL},
	        {"alice@bad-.org", false, NULL},
	        {"alice@bad..org", false, NULL},
	        {"alice@bad.org.", false, NULL},
	        {"al ice@example.org", false, NULL},
	        {"al\"ice@example.org", false, NULL},
	        {"<alice@example.org>", false, NULL},
	        {"alice@exa mple.org", false, NULL},
	        {"alice@b\xc3\xa9.org", false, NULL},
	        {"a@b@example.org", false, NULL},
	        {"", false, NULL},
	};
	char out[300];
	const char *err;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		err = NULL;
		int rc = dir_address_normalize(t[i].in, t[i].catchall, out, sizeof(out), &err);
		if (t[i].out == NULL) {
			CHECK_MSG(rc == -1 && err != NULL, "case %zu accepted", i);
		} else {
			CHECK_MSG(rc == 0, "case %zu refused: %s", i, err);
			CHECK_STR(out, t[i].out);
		}
	}
	/* RFC 5321 4.5.3.1.1: 64 bytes of local part */
	{
		char l[80];
		memset(l, 'a', 65);
		strcpy(l + 65, "@x.org");
		CHECK_INT(dir_address_normalize(l, false, out, sizeof(out), &err), -1);
		strcpy(l + 64, "@x.org");
		CHECK_INT(dir_address_normalize(l, false, out, sizeof(out), &err), 0);
	}
	CHECK_INT(dir_domain_normalize("Mail.Example.ORG", out, sizeof(out), &err), 0);
	CHECK_STR(out, "mail.example.org");
	CHECK_INT(dir_domain_normalize("", out, sizeof(out), &err), -1);
	CHECK_INT(dir_role_parse("admin"), DIR_ROLE_ADMIN);
	CHECK_INT(dir_role_parse("user"), DIR_ROLE_USER);
	CHECK_INT(dir_role_parse("root"), -1);
	CHECK_STR(dir_role_name(DIR_ROLE_ADMIN), "admin");
}
