/*
 * tests/unit/test_mime_samples.c -- the MIME parser on real-world-like mail.
 *
 * Each message in tests/unit/mime_samples/ is parsed whole and must give
 * exactly the ENVELOPE, BODYSTRUCTURE and BODY below.  The expected strings
 * were checked against Dovecot 2.3 (a private instance over a Maildir of
 * these files, FETCH ENVELOPE BODYSTRUCTURE BODY), with two deliberate
 * differences: we send a quoted string where Dovecot chooses a literal for
 * a value that was folded or holds '"' (both are RFC 3501 strings), and
 * sizes are physical octets, so bare_lf.eml's part is 17 octets where
 * Dovecot reports its CRLF-normalised 18.  Then every message is fed split
 * at every offset, one octet at a time and in odd chunk sizes, and every
 * output must be identical to the one-piece parse.
 */
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>

#include "mailbox/mime/parser.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define SAMPLES "tests/unit/mime_samples/"

static const struct sample {
	const char *file;
	const char *envelope;
	const char *bodystructure;
	const char *body;
} samples[] = {
        {"address_edge.eml",
         "(NIL \"\" ((NIL NIL \"john doe\" \"example.com\")(NIL NIL \"user\" "
         "\"MISSING_DOMAIN\")(NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(\"Undisclosed\" "
         "\"@a.test,@b.test\" \"x\" \"c.test\")) ((NIL NIL \"john doe\" \"example.com\")(NIL NIL "
         "\"user\" \"MISSING_DOMAIN\")(NIL NIL \"MISSING_MAILBOX\" "
         "\"MISSING_DOMAIN\")(\"Undisclosed\" \"@a.test,@b.test\" \"x\" \"c.test\")) ((NIL NIL "
         "\"john doe\" \"example.com\")(NIL NIL \"user\" \"MISSING_DOMAIN\")(NIL NIL "
         "\"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(\"Undisclosed\" \"@a.test,@b.test\" \"x\" "
         "\"c.test\")) NIL NIL NIL NIL NIL)",
         "(\"TEXT\" \"Plain\" (\"CharSet\" \"UTF-8\" \"Format\" \"flowed\") NIL NIL "
         "\"QUOTED-PRINTABLE\" 6 1 NIL (\"ATTACHMENT\" (\"FileName\" \"x.txt\")) (\"EN\") NIL)",
         "(\"TEXT\" \"Plain\" (\"CharSet\" \"UTF-8\" \"Format\" \"flowed\") NIL NIL "
         "\"QUOTED-PRINTABLE\" 6 1)"},
        {"alternative.eml",
         "(\"Wed, 3 Apr 2024 08:00:00 -0400\" \"Spring sale\" ((\"Newsletter Team\" NIL \"news\" "
         "\"shop.example\")) ((\"Newsletter Team\" NIL \"news\" \"shop.example\")) ((\"Newsletter "
         "Team\" NIL \"news\" \"shop.example\")) ((\"Carol\" NIL \"carol\" \"example.com\")) NIL "
         "NIL NIL \"<sale-2024-04@shop.example>\")",
         "((\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted-printable\" 90 3 NIL "
         "NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted-printable\" "
         "73 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"=_alt_7f3a\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted-printable\" 90 "
         "3)(\"text\" \"html\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted-printable\" 73 1) "
         "\"alternative\")"},
        {"bare_lf.eml",
         "(NIL \"bare LF lines\" ((NIL NIL \"lf\" \"example.com\")) ((NIL NIL \"lf\" "
         "\"example.com\")) ((NIL NIL \"lf\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 1 NIL NIL NIL NIL) "
         "\"alternative\" (\"boundary\" \"zz\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 1) \"alternative\")"},
        {"cr_only.eml",
         "(NIL NIL ((NIL NIL \"cr\" \"example.com\")) ((NIL NIL \"cr\" \"example.com\")) ((NIL NIL "
         "\"cr\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"},
        {"digest.eml",
         "(NIL \"digest\" ((NIL NIL \"list\" \"example.com\")) ((NIL NIL \"list\" "
         "\"example.com\")) ((NIL NIL \"list\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 51 (NIL \"first\" ((NIL NIL \"one\" "
         "\"example.com\")) ((NIL NIL \"one\" \"example.com\")) ((NIL NIL \"one\" "
         "\"example.com\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
         "NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)(\"text\" \"plain\" "
         "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0 NIL NIL NIL NIL) \"digest\" "
         "(\"boundary\" \"d\") NIL NIL NIL)",
         "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 51 (NIL \"first\" ((NIL NIL \"one\" "
         "\"example.com\")) ((NIL NIL \"one\" \"example.com\")) ((NIL NIL \"one\" "
         "\"example.com\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
         "NIL NIL \"7bit\" 10 0) 3)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
         "13 0) \"digest\")"},
        {"empty_parts.eml",
         "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL "
         "NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL "
         "NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) "
         "\"mixed\" (\"boundary\" \"x\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)(\"text\" \"plain\" "
         "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")"},
        {"encoded_rfc822.eml",
         "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL "
         "NIL NIL NIL)",
         "(\"message\" \"rfc822\" NIL NIL NIL \"base64\" 26 (NIL NIL NIL NIL NIL NIL NIL NIL NIL "
         "NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL "
         "NIL) 1 NIL NIL NIL NIL)",
         "(\"message\" \"rfc822\" NIL NIL NIL \"base64\" 26 (NIL NIL NIL NIL NIL NIL NIL NIL NIL "
         "NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) 1)"},
        {"encoded_words.eml",
         "(\"Mon, 1 Jan 2024 00:00:00 GMT\" \"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
         "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\" ((\"=?ISO-8859-1?Q?Andr=E9?= "
         "Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) ((NIL NIL \"list-owner\" \"lists.example\")) "
         "((\"=?utf-8?B?w4lsb2RpZQ==?=\" NIL \"elodie\" \"example.fr\")) "
         "((\"=?US-ASCII?Q?Keith_Moore?=\" NIL \"moore\" \"cs.utk.edu\")(NIL NIL "
         "\"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((\"=?windows-1252?Q?=93quoted=94?=\" "
         "NIL \"q\" \"example.com\")(\"Real Name\" NIL \"user\" \"host\")(NIL NIL "
         "\"MISSING_MAILBOX\" \"route1\")(NIL NIL \"MISSING_MAILBOX\" \"route2\")) ((NIL NIL "
         "\"empty\" \"example.com\")) \"<a@b> <c@d>\" \"<ew.1@example.com>\")",
         "(\"text\" \"plain\" (\"charset\" \"koi8-r\") NIL NIL \"base64\" 18 1 NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"koi8-r\") NIL NIL \"base64\" 18 1)"},
        {"forwarded.eml",
         "(\"Fri, 5 Apr 2024 12:00:00 +0200\" \"Fwd: Spring sale\" ((\"Ivan\" NIL \"ivan\" "
         "\"example.com\")) ((\"Ivan\" NIL \"ivan\" \"example.com\")) ((\"Ivan\" NIL \"ivan\" "
         "\"example.com\")) ((\"Judy\" NIL \"judy\" \"example.com\")) NIL NIL NIL "
         "\"<fwd.77@example.com>\")",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1 NIL NIL NIL "
         "NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 418 (\"Wed, 3 Apr 2024 08:00:00 -0400\" "
         "\"Spring sale\" ((\"Newsletter Team\" NIL \"news\" \"shop.example\")) ((\"Newsletter "
         "Team\" NIL \"news\" \"shop.example\")) ((\"Newsletter Team\" NIL \"news\" "
         "\"shop.example\")) ((\"Carol\" NIL \"carol\" \"example.com\")) NIL NIL NIL "
         "\"<sale-2024-04@shop.example>\") ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
         "\"7bit\" 19 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL "
         "\"7bit\" 26 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL) 17 "
         "NIL (\"inline\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1)(\"message\" "
         "\"rfc822\" NIL NIL NIL \"7bit\" 418 (\"Wed, 3 Apr 2024 08:00:00 -0400\" \"Spring sale\" "
         "((\"Newsletter Team\" NIL \"news\" \"shop.example\")) ((\"Newsletter Team\" NIL \"news\" "
         "\"shop.example\")) ((\"Newsletter Team\" NIL \"news\" \"shop.example\")) ((\"Carol\" NIL "
         "\"carol\" \"example.com\")) NIL NIL NIL \"<sale-2024-04@shop.example>\") ((\"text\" "
         "\"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 19 0)(\"text\" \"html\" (\"charset\" "
         "\"utf-8\") NIL NIL \"7bit\" 26 0) \"alternative\") 17) \"mixed\")"},
        {"headers_only.eml",
         "(NIL \"no body, no blank line\" ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" "
         "\"example.com\")) ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"},
        {"missing_boundary.eml",
         "(NIL \"broken multipart\" ((NIL NIL \"x\" \"example.com\")) ((NIL NIL \"x\" "
         "\"example.com\")) ((NIL NIL \"x\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) "
         "\"mixed\" (\"boundary\" \"never-appears\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")"},
        {"mixed_attach.eml",
         "(\"Thu, 4 Apr 2024 17:30:00 +0000\" \"Report attached\" ((\"Dave\" NIL \"dave\" "
         "\"example.com\")) ((\"Dave\" NIL \"dave\" \"example.com\")) ((\"Dave\" NIL \"dave\" "
         "\"example.com\")) ((\"Erin\" NIL \"erin\" \"example.com\")(NIL NIL \"frank\" "
         "\"example.com\")) ((NIL NIL \"Team\" NIL)(NIL NIL \"grace\" \"example.com\")(\"Heidi "
         "H.\" NIL \"heidi\" \"example.com\")(NIL NIL NIL NIL)) NIL \"<question.9@example.com>\" "
         "\"<report.1@example.com>\")",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 0 NIL NIL NIL "
         "NIL)(\"application\" \"octet-stream\" (\"name\" \"report.bin\") "
         "\"<part2.report@example.com>\" \"Quarterly report\" \"base64\" 1050 "
         "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"attachment\" (\"filename\" \"report.bin\" \"size\" "
         "\"768\")) (\"en\" \"de\") \"http://example.com/report.bin\")(\"application\" \"pdf\" "
         "(\"name*\" \"utf-8''%E2%82%AC%20rates%20.pdf\") NIL NIL \"base64\" 12 NIL (\"inline\" "
         "(\"filename*\" \"utf-8''%E2%82%AC%20rates.pdf\")) NIL NIL) \"mixed\" (\"boundary\" "
         "\"----=_Part_0_123.456\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 0)(\"application\" "
         "\"octet-stream\" (\"name\" \"report.bin\") \"<part2.report@example.com>\" \"Quarterly "
         "report\" \"base64\" 1050)(\"application\" \"pdf\" (\"name*\" "
         "\"utf-8''%E2%82%AC%20rates%20.pdf\") NIL NIL \"base64\" 12) \"mixed\")"},
        {"no_boundary_param.eml",
         "(NIL NIL ((NIL NIL \"x\" \"example.com\")) ((NIL NIL \"x\" \"example.com\")) ((NIL NIL "
         "\"x\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) "
         "\"mixed\" NIL NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")"},
        {"no_header.eml", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 32 1 NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 32 1)"},
        {"nul_bytes.eml",
         "(NIL {9}\r\nhas\xef"
         "\xbf"
         "\xbd"
         "nul ((NIL NIL \"nul\" \"example.com\")) ((NIL NIL \"nul\" \"example.com\")) ((NIL NIL "
         "\"nul\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 15 1 NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 15 1)"},
        {"rfc_example.eml",
         "(\"Tue, 1 Jul 2003 10:52:37 +0200\" \"=?utf-8?q?caf=C3=A9?= test\" ((\"Joe Q. Public\" "
         "NIL \"john.q.public\" \"example.com\")) ((\"Joe Q. Public\" NIL \"john.q.public\" "
         "\"example.com\")) ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) ((\"Mary "
         "Smith\" NIL \"mary\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\")(\"Who?\" NIL \"one\" "
         "\"y.test\")) ((NIL NIL \"boss\" \"nil.test\")(\"Giant; \\\"Big\\\" Box\" NIL "
         "\"sysservices\" \"example.net\")) NIL NIL \"<5678.21-Nov-1997@example.com>\")",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1)"},
        {"simple.eml",
         "(\"Tue, 12 Mar 2024 10:15:00 +0100\" \"Lunch on Thursday?\" ((\"Alice Example\" NIL "
         "\"alice\" \"example.org\")) ((\"Alice Example\" NIL \"alice\" \"example.org\")) "
         "((\"Alice Example\" NIL \"alice\" \"example.org\")) ((NIL NIL \"bob\" \"example.net\")) "
         "NIL NIL NIL \"<20240312091500.1234@example.org>\")",
         "(\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL \"8bit\" 100 6 "
         "NIL NIL NIL NIL)",
         "(\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL \"8bit\" 100 "
         "6)"},
        {"toplevel_rfc822.eml", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
         "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 30 (NIL \"inner\" NIL NIL NIL NIL NIL NIL "
         "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1 NIL NIL "
         "NIL NIL) 3 NIL NIL NIL NIL)",
         "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 30 (NIL \"inner\" NIL NIL NIL NIL NIL NIL "
         "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1) 3)"},
        {"unclosed.eml",
         "(NIL \"unclosed\" ((NIL NIL \"x\" \"example.com\")) ((NIL NIL \"x\" \"example.com\")) "
         "((NIL NIL \"x\" \"example.com\")) NIL NIL NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL "
         "NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 36 1 NIL NIL NIL "
         "NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0)(\"text\" \"plain\" "
         "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 36 1) \"mixed\")"},
};

static char *load(const char *name, size_t *len_r)
{
	char path[256];
	FILE *f;
	char *data = NULL;
	long n;

	snprintf(path, sizeof(path), SAMPLES "%s", name);
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		data = malloc((size_t)n + 1);
		if (data != NULL && fread(data, 1, (size_t)n, f) != (size_t)n) {
			free(data);
			data = NULL;
		}
		*len_r = (size_t)n;
	}
	fclose(f);
	return data;
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Every output of two parses is the same. */
static bool results_equal(const struct mime_result *a, const struct mime_result *b)
{
	if (a->size != b->size || !str_eq(a->envelope, b->envelope) ||
	    !str_eq(a->bodystructure, b->bodystructure) || !str_eq(a->body, b->body) ||
	    a->nparts != b->nparts)
		return false;
	for (size_t i = 0; i < a->nparts; i++) {
		const struct mime_part *x = &a->parts[i], *y = &b->parts[i];

		if (strcmp(x->section, y->section) != 0 || x->hdr_start != y->hdr_start ||
		    x->body_start != y->body_start || x->body_end != y->body_end ||
		    x->msg_body_start != y->msg_body_start || x->lines != y->lines ||
		    x->is_multipart != y->is_multipart || x->is_message != y->is_message)
			return false;
	}
	return str_eq(a->from, b->from) && str_eq(a->to, b->to) && str_eq(a->cc, b->cc) &&
	       str_eq(a->bcc, b->bcc) && str_eq(a->reply_to, b->reply_to) &&
	       str_eq(a->subject, b->subject) && str_eq(a->message_id, b->message_id) &&
	       str_eq(a->in_reply_to, b->in_reply_to) && str_eq(a->references, b->references) &&
	       str_eq(a->from_addr, b->from_addr) && a->has_date == b->has_date &&
	       a->date == b->date && a->search_header_len == b->search_header_len &&
	       a->search_body_len == b->search_body_len &&
	       memcmp(a->search_header, b->search_header, a->search_header_len) == 0 &&
	       memcmp(a->search_body, b->search_body, a->search_body_len) == 0 &&
	       a->search_truncated == b->search_truncated;
}

UNIT_TEST(mime_samples_exact)
{
	for (size_t i = 0; i < ARRAY_LEN(samples); i++) {
		size_t len = 0;
		char *data = load(samples[i].file, &len);
		struct mime_result *r;

		CHECK_MSG(data != NULL, "cannot read %s (run from the repo root)", samples[i].file);
		r = mime_parse(data, len, NULL);
		free(data);
		CHECK_MSG(strcmp(r->envelope, samples[i].envelope) == 0, "%s: ENVELOPE\n got %s",
		          samples[i].file, r->envelope);
		CHECK_MSG(strcmp(r->bodystructure, samples[i].bodystructure) == 0,
		          "%s: BODYSTRUCTURE\n got %s", samples[i].file, r->bodystructure);
		CHECK_MSG(strcmp(r->body, samples[i].body) == 0, "%s: BODY\n got %s",
		          samples[i].file, r->body);
		CHECK_INT(r->size, len);
		mime_result_free(&r);
		CHECK(r == NULL);
	}
}

UNIT_TEST(mime_samples_split_everywhere)
{
	for (size_t i = 0; i < ARRAY_LEN(samples); i++) {
		size_t len = 0;
		char *data = load(samples[i].file, &len);
		struct mime_result *whole;

		CHECK(data != NULL);
		whole = mime_parse(data, len, NULL);
		for (size_t cut = 0; cut <= len; cut++) {
			struct mime_parser *p = mime_parser_new(NULL);
			struct mime_result *r;
			bool same;

			mime_parser_feed(p, data, cut);
			mime_parser_feed(p, data + cut, len - cut);
			r = mime_parser_finish(&p);
			same = results_equal(whole, r);
			mime_result_free(&r);
			if (!same) {
				mime_result_free(&whole);
				free(data);
				CHECK_MSG(false, "%s: split at %zu differs", samples[i].file, cut);
			}
		}
		/* chunks of 1..13 octets */
		for (size_t step = 1; step <= 13; step++) {
			struct mime_parser *p = mime_parser_new(NULL);
			struct mime_result *r;
			bool same;

			for (size_t off = 0; off < len; off += step)
				mime_parser_feed(p, data + off,
				                 len - off < step ? len - off : step);
			r = mime_parser_finish(&p);
			same = results_equal(whole, r);
			mime_result_free(&r);
			if (!same) {
				mime_result_free(&whole);
				free(data);
				CHECK_MSG(false, "%s: chunks of %zu differ", samples[i].file, step);
			}
		}
		mime_result_free(&whole);
		free(data);
	}
}

struct part_expect {
	const char *file;
	const char *section;
	uint64_t hdr_start, body_start, body_end, msg_body_start, lines;
};

/* Offsets checked against Dovecot's BODY[n], BODY[n.MIME], BODY[n.HEADER]
 * and BODY[n.TEXT] for the same files. */
static const struct part_expect parts[] = {
        {"forwarded.eml", "1", 236, 264, 276, 0, 1},
        {"forwarded.eml", "2", 287, 348, 766, 603, 17},
        {"forwarded.eml", "2.1", 612, 655, 674, 0, 0},
        {"forwarded.eml", "2.2", 685, 727, 753, 0, 0},
        {"mixed_attach.eml", "1", 453, 532, 561, 0, 0},
        {"mixed_attach.eml", "2", 587, 942, 1992, 0, 13},
        {"mixed_attach.eml", "3", 2018, 2210, 2222, 0, 0},
        {"encoded_words.eml", "1", 0, 673, 691, 0, 1},
        {"toplevel_rfc822.eml", "1", 0, 32, 62, 50, 3},
        {"toplevel_rfc822.eml", "1.1", 32, 50, 62, 0, 1},
        {"digest.eml", "1", 92, 94, 145, 135, 3},
        {"digest.eml", "1.1", 94, 135, 145, 0, 0},
        {"digest.eml", "2", 152, 180, 193, 0, 0},
        {"alternative.eml", "1", 322, 417, 507, 0, 3},
        {"alternative.eml", "2", 523, 617, 690, 0, 1},
        {"empty_parts.eml", "1", 61, 85, 85, 0, 0},
        {"no_header.eml", "1", 0, 2, 34, 0, 1},
};

UNIT_TEST(mime_samples_part_offsets)
{
	for (size_t i = 0; i < ARRAY_LEN(parts); i++) {
		size_t len = 0;
		char *data = load(parts[i].file, &len);
		struct mime_result *r;
		const struct mime_part *x = NULL;

		CHECK(data != NULL);
		r = mime_parse(data, len, NULL);
		free(data);
		/* the root entry: whole message, header then text */
		CHECK_STR(r->parts[0].section, "");
		CHECK_INT(r->parts[0].body_end, len);
		for (size_t k = 0; k < r->nparts; k++)
			if (strcmp(r->parts[k].section, parts[i].section) == 0)
				x = &r->parts[k];
		CHECK_MSG(x != NULL, "%s: no part %s", parts[i].file, parts[i].section);
		CHECK_MSG(x->hdr_start == parts[i].hdr_start &&
		                  x->body_start == parts[i].body_start &&
		                  x->body_end == parts[i].body_end && x->lines == parts[i].lines &&
		                  (!x->is_message || x->msg_body_start == parts[i].msg_body_start),
		          "%s part %s: %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
		          parts[i].file, parts[i].section, x->hdr_start, x->body_start, x->body_end,
		          x->msg_body_start, x->lines);
		mime_result_free(&r);
	}
}

UNIT_TEST(mime_samples_fields)
{
	size_t len = 0;
	char *data = load("encoded_words.eml", &len);
	struct mime_result *r;

	CHECK(data != NULL);
	r = mime_parse(data, len, NULL);
	free(data);
	CHECK_STR(r->from, "Andr\xc3\xa9 Pirard <PIRARD@vm1.ulg.ac.be>");
	CHECK_STR(r->from_addr, "pirard@vm1.ulg.ac.be");
	CHECK_STR(r->subject, "If you can read this you understand the example.");
	CHECK_STR(r->to, "Keith Moore <moore@cs.utk.edu>, undisclosed-recipients:;");
	/* windows-1252 0x93/0x94 are curly quotes */
	CHECK_STR(r->cc, "\xe2\x80\x9cquoted\xe2\x80\x9d <q@example.com>, Real Name <user@host>, "
	                 "MISSING_MAILBOX@route1, MISSING_MAILBOX@route2");
	CHECK_STR(r->reply_to, "\xc3\x89lodie <elodie@example.fr>");
	CHECK_STR(r->in_reply_to, "<a@b> <c@d>");
	CHECK_STR(r->message_id, "<ew.1@example.com>");
	CHECK(r->has_date);
	CHECK_INT(r->date, 1704067200); /* 2024-01-01T00:00:00Z */
	/* koi8-r base64 body converted through iconv */
	CHECK(strstr(r->search_body, "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82") != NULL);
	CHECK(strstr(r->search_header, "Subject: If you can read this you understand") != NULL);
	mime_result_free(&r);

	data = load("mixed_attach.eml", &len);
	CHECK(data != NULL);
	r = mime_parse(data, len, NULL);
	free(data);
	CHECK_STR(r->references, "<start.1@example.com> <question.9@example.com>");
	CHECK_STR(r->cc, "Team: grace@example.com, Heidi H. <heidi@example.com>;");
	CHECK_INT(r->date, 1712251800); /* 2024-04-04T17:30:00Z */
	/* only the text/plain part is searchable body text */
	CHECK_STR(r->search_body, "Here is the quarterly report.\n");
	CHECK(r->bcc == NULL);
	mime_result_free(&r);

	data = load("alternative.eml", &len);
	CHECK(data != NULL);
	r = mime_parse(data, len, NULL);
	free(data);
	/* quoted-printable, soft break, windows-1252 0x96 (en dash) */
	CHECK(strstr(r->search_body, "Everything 20% off \xe2\x80\x93 this week only!\n"
	                             "Gr\xc3\xbc\xc3\x9f"
	                             "e aus M\xc3\xbcnchen, soft linebreak here.") != NULL);
	CHECK(strstr(r->search_body, "<html>") == NULL);
	CHECK_INT(r->date, 1712145600); /* 2024-04-03T12:00:00Z */
	mime_result_free(&r);
}
