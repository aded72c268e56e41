/*
 * tests/unit/test_imap_helpers.c -- the session's pure helpers: LIST
 * patterns (listmatch.c), the sequence-number map (msgmap.c) and header
 * field selection (headers.c).
 */
#include "tests/unit/unit.h"

#include "mailbox/imap/headers.h"
#include "mailbox/imap/listmatch.h"
#include "mailbox/imap/meta_cache.h"
#include "mailbox/imap/msgmap.h"
#include "mailbox/imap/store_ops.h"
#include "shared/buf.h"

#include <stdio.h>
#include <stdlib.h>

UNIT_TEST(imap_listmatch_table)
{
	static const struct {
		const char *pat, *name;
		bool match;
	} t[] = {
	        {"*", "INBOX", true},
	        {"*", "a/b/c", true},
	        {"%", "INBOX", true},
	        {"%", "a/b", false},
	        {"a/%", "a/b", true},
	        {"a/%", "a/b/c", false},
	        {"a/*", "a/b/c", true},
	        {"a/*", "a", false},
	        {"a*", "a", true},
	        {"*b", "a/b", true},
	        {"%b", "a/b", false},
	        {"%/%", "a/b", true},
	        {"", "", true},
	        {"", "a", false},
	        {"INBOX", "INBOX", true},
	        {"INBOX", "inbox", false}, /* the caller normalises INBOX */
	        {"Caf&AOk-", "Caf&AOk-", true},
	        {"*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%x",
	         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
	        {"%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%/%", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa/b", true},
	        {"a%c", "abc", true},
	        {"a%c", "ab/c", false},
	        {"a*c", "ab/c", true},
	        {"abc", "abcd", false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_MSG(imap_listmatch(t[i].pat, t[i].name, '/') == t[i].match, "%s ~ %s",
		          t[i].pat, t[i].name);
}

static void resolve_str(const struct imap_msgmap *m, const char *set, bool uid, char *out,
                        size_t outsz)
{
	uint32_t *v;
	size_t n, off = 0;
	const char *err;

	if (imap_msgmap_resolve(m, set, uid, &v, &n, &err) < 0) {
		snprintf(out, outsz, "error");
		return;
	}
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(out + off, outsz - off, "%s%u", i ? "," : "",
		                        (unsigned)v[i]);
	free(v);
}

UNIT_TEST(imap_msgmap_resolve_table)
{
	static const uint32_t uids[] = {2, 4, 5, 9, 100};
	static const struct {
		const char *set;
		bool uid;
		const char *want;
	} t[] = {
	        {"1", false, "2"},
	        {"1:*", false, "2,4,5,9,100"},
	        {"*", false, "100"},
	        {"3:2", false, "4,5"},
	        {"1,1,1:2", false, "2,4"},
	        {"6", false, "error"},
	        {"2:6", false, "error"},
	        {"5,1", false, "2,100"},
	        {"1:*", true, "2,4,5,9,100"},
	        {"3", true, ""},
	        {"4:9", true, "4,5,9"},
	        {"200:*", true, "100"},
	        {"*", true, "100"},
	        {"1:4294967295", true, "2,4,5,9,100"},
	        {"6:8,1:3,99:101", true, "2,100"},
	        {"x", true, "error"},
	        {"$", true, "error"},
	        {"0", false, "error"},
	};
	struct imap_msgmap m = {0};
	struct imap_msgmap empty = {0};
	char out[256];

	imap_msgmap_set(&m, uids, 5);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		resolve_str(&m, t[i].set, t[i].uid, out, sizeof(out));
		CHECK_MSG(strcmp(out, t[i].want) == 0, "%s%s: %s, want %s", t[i].uid ? "UID " : "",
		          t[i].set, out, t[i].want);
	}
	/* an empty mailbox: any number is out of range, UIDs match nothing */
	resolve_str(&empty, "1:*", false, out, sizeof(out));
	CHECK_STR(out, "error");
	resolve_str(&empty, "1:*", true, out, sizeof(out));
	CHECK_STR(out, "");
	/* seq <-> uid, removal, append */
	CHECK_INT(imap_msgmap_seq(&m, 9), 4);
	CHECK_INT(imap_msgmap_seq(&m, 8), 0);
	imap_msgmap_remove(&m, 2);
	CHECK_INT(imap_msgmap_seq(&m, 9), 3);
	CHECK_INT(imap_msgmap_seq(&m, 4), 0);
	imap_msgmap_append(&m, 101);
	CHECK_INT(imap_msgmap_max_uid(&m), 101);
	CHECK_INT(m.n, 5);
	imap_msgmap_free(&m);
	CHECK_INT(imap_msgmap_max_uid(&m), 0);
}

/* "uid:modseq:flag flag" of message seq, or "-" when nothing is known */
static void known_str(const struct imap_msgmap *m, uint32_t seq, char *out, size_t outsz)
{
	const struct imap_msgmap_flagset *set;
	uint64_t modseq;
	size_t len;

	if (!imap_msgmap_known(m, seq, &set, &modseq)) {
		snprintf(out, outsz, "-");
		return;
	}
	len = (size_t)snprintf(out, outsz, "%u:%llu:", (unsigned)m->uids[seq - 1],
	                       (unsigned long long)modseq);
	for (size_t i = 0; i < set->n && len < outsz; i++)
		len += (size_t)snprintf(out + len, outsz - len, i ? " %s" : "%s", set->names[i]);
}

UNIT_TEST(imap_msgmap_flags_known)
{
	static const uint32_t uids[] = {3, 5, 9};
	const char *seen[] = {"\\Seen"}, *two[] = {"\\Seen", "$Junk"}, *rev[] = {"$Junk", "\\Seen"};
	struct imap_msgmap m = {0};
	char out[128], name[16];

	imap_msgmap_set(&m, uids, 3);
	known_str(&m, 1, out, sizeof(out));
	CHECK_STR(out, "-");
	CHECK(m.flags == NULL); /* nothing allocated before the first note */
	imap_msgmap_note(&m, 5, 10, seen, 1);
	imap_msgmap_note(&m, 4, 10, seen, 1); /* not in the map: ignored */
	known_str(&m, 1, out, sizeof(out));
	CHECK_STR(out, "-");
	known_str(&m, 2, out, sizeof(out));
	CHECK_STR(out, "5:10:\\Seen");
	/* an older answer does not overwrite a newer one; an equal or newer does */
	imap_msgmap_note(&m, 5, 9, two, 2);
	known_str(&m, 2, out, sizeof(out));
	CHECK_STR(out, "5:10:\\Seen");
	imap_msgmap_note(&m, 5, 12, two, 2);
	known_str(&m, 2, out, sizeof(out));
	CHECK_STR(out, "5:12:\\Seen $Junk");
	/* order and names kept exactly; no flags at all is a known state */
	imap_msgmap_note(&m, 9, 13, rev, 2);
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "9:13:$Junk \\Seen");
	imap_msgmap_note(&m, 3, 14, NULL, 0);
	known_str(&m, 1, out, sizeof(out));
	CHECK_STR(out, "3:14:");
	CHECK_INT(m.nsets, 4);
	/* removal shifts the knowledge with the UIDs; an appended UID is unknown */
	imap_msgmap_remove(&m, 2);
	known_str(&m, 2, out, sizeof(out));
	CHECK_STR(out, "9:13:$Junk \\Seen");
	for (uint32_t u = 20; u < 60; u++) /* grows past the first capacity */
		imap_msgmap_append(&m, u);
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "-");
	imap_msgmap_note(&m, 59, 20, seen, 1);
	known_str(&m, (uint32_t)m.n, out, sizeof(out));
	CHECK_STR(out, "59:20:\\Seen");
	known_str(&m, 2, out, sizeof(out));
	CHECK_STR(out, "9:13:$Junk \\Seen");
	/* a full table of distinct flag lists: further lists stay unknown */
	for (int i = 0; (size_t)i < IMAP_MSGMAP_MAX_FLAGSETS; i++) {
		const char *f[1] = {name};

		snprintf(name, sizeof(name), "k%d", i);
		imap_msgmap_note(&m, 20, (uint64_t)(100 + i), f, 1);
	}
	CHECK_INT(m.nsets, IMAP_MSGMAP_MAX_FLAGSETS);
	known_str(&m, 3, out, sizeof(out));
	CHECK(strcmp(out, "-") == 0);            /* the last list did not fit */
	imap_msgmap_note(&m, 20, 1000, seen, 1); /* a list already in the table */
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "20:1000:\\Seen");
	/* unknown: nothing known any more, and an answer older than the last
	 * one had is still refused */
	imap_msgmap_unknown(&m, 20);
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "-");
	imap_msgmap_note(&m, 20, 999, seen, 1);
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "-");
	imap_msgmap_note(&m, 20, 1001, seen, 1);
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "20:1001:\\Seen");
	imap_msgmap_unknown(&m, 4); /* not in the map: nothing happens */
	/* forget and set drop everything learned */
	imap_msgmap_forget(&m);
	known_str(&m, 2, out, sizeof(out));
	CHECK_STR(out, "-");
	imap_msgmap_note(&m, 9, 1, seen, 1);
	imap_msgmap_set(&m, uids, 3);
	known_str(&m, 3, out, sizeof(out));
	CHECK_STR(out, "-");
	imap_msgmap_free(&m);
}

UNIT_TEST(imap_headers_filter_table)
{
	static const char hdr[] = "From: a@b\r\n"
	                          "Subject: one\r\n two\r\n"
	                          "X-Spam :yes\r\n"
	                          "garbage line\r\n"
	                          "to: c@d\r\n"
	                          "\r\n"
	                          "Body-Looking: not a header\r\n";
	static const struct {
		const char *names[3];
		size_t n;
		bool exclude;
		const char *want;
	} t[] = {
	        {{"FROM"}, 1, false, "From: a@b\r\n\r\n"},
	        {{"subject", "To"}, 2, false, "Subject: one\r\n two\r\nto: c@d\r\n\r\n"},
	        {{"x-spam"}, 1, false, "X-Spam :yes\r\n\r\n"},
	        {{"Body-Looking"}, 1, false, "\r\n"},
	        {{"From", "Subject"}, 2, true, "X-Spam :yes\r\nto: c@d\r\n\r\n"},
	        {{"Nothing"}, 1, false, "\r\n"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct buf b;

		buf_init(&b, 0);
		imap_headers_filter(hdr, sizeof(hdr) - 1, t[i].names, t[i].n, t[i].exclude, &b);
		buf_append(&b, "", 1);
		CHECK_MSG(strcmp((const char *)buf_ptr(&b), t[i].want) == 0, "case %zu: \"%s\"", i,
		          (const char *)buf_ptr(&b));
		buf_free(&b);
	}
	/* LF-only lines and a last line without its end */
	{
		static const char lf[] = "A: 1\nB: 2\n\tcont\nC: 3";
		const char *names[] = {"b", "c"};
		struct buf b;

		buf_init(&b, 0);
		imap_headers_filter(lf, sizeof(lf) - 1, names, 2, false, &b);
		buf_append(&b, "", 1);
		CHECK_STR((const char *)buf_ptr(&b), "B: 2\n\tcont\nC: 3\r\n\r\n");
		buf_free(&b);
	}
}

UNIT_TEST(imap_meta_cache_entry_roundtrip)
{
	struct imap_meta_entry e = {0}, d, add = {0};
	struct buf b, b2;

	e.have = IMAP_META_INTERNALDATE | IMAP_META_SIZE | IMAP_META_ENVELOPE;
	e.internaldate = -5;
	e.size = 1ULL << 40;
	e.blob = "abc";
	e.envelope = ""; /* present and empty; bodystructure NULL */
	buf_init(&b, 0);
	imap_meta_encode(&e, &b);
	CHECK_INT(imap_meta_decode(buf_ptr(&b), buf_len(&b), &d), 0);
	CHECK_INT(d.have, e.have);
	CHECK(d.internaldate == -5 && d.size == 1ULL << 40);
	CHECK_STR(d.blob, "abc");
	CHECK_STR(d.envelope, "");
	CHECK(d.bodystructure == NULL && d.body == NULL && d.parts == NULL);
	/* a later fetch adds items; what it did not ask for stays */
	add.have = IMAP_META_INTERNALDATE | IMAP_META_SIZE | IMAP_META_PARTS | IMAP_META_HEADER;
	add.internaldate = -5;
	add.size = 1ULL << 40;
	add.blob = "abc";
	add.parts = "[{\"section\": \"\"}]";
	imap_meta_merge(&d, &add);
	buf_init(&b2, 0);
	imap_meta_encode(&d, &b2);
	CHECK_INT(imap_meta_decode(buf_ptr(&b2), buf_len(&b2), &d), 0);
	CHECK_STR(d.envelope, "");
	CHECK_STR(d.parts, "[{\"section\": \"\"}]");
	CHECK(d.have & IMAP_META_ENVELOPE);
	CHECK(d.have & IMAP_META_PARTS);
	/* truncated, bad magic, trailing octets, a NUL inside a string */
	for (size_t n = 0; n < buf_len(&b2); n++)
		CHECK_INT(imap_meta_decode(buf_ptr(&b2), n, &d), -1);
	buf_append(&b2, "x", 1);
	CHECK_INT(imap_meta_decode(buf_ptr(&b2), buf_len(&b2), &d), -1);
	buf_ptr(&b)[0] = 'X';
	CHECK_INT(imap_meta_decode(buf_ptr(&b), buf_len(&b), &d), -1);
	buf_ptr(&b)[0] = 'T';
	buf_ptr(&b)[28] = '\0'; /* inside "abc" */
	CHECK_INT(imap_meta_decode(buf_ptr(&b), buf_len(&b), &d), -1);
	buf_free(&b);
	buf_free(&b2);
}
