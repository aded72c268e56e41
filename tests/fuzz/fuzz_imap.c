/*
 * tests/fuzz/fuzz_imap.c -- libFuzzer target for the IMAP command parser
 * and its helpers.
 *
 * The parser runs over the input twice, whole and one octet at a time,
 * with small bounds; the event transcripts must be identical.  The input
 * is also given, as a string, to the sequence-set, modified UTF-7 and date
 * parsers, and modified UTF-7 must round-trip.  Finally the input, written
 * with the IMAP string writer into a command, must parse back to itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox/imap/date.h"
#include "mailbox/imap/mutf7.h"
#include "mailbox/imap/parser.h"
#include "mailbox/imap/section.h"
#include "mailbox/imap/seqset.h"
#include "mailbox/imap/string.h"
#include "shared/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_at(int cond, int line)
{
	if (!cond) {
		fprintf(stderr, "%s:%d: invariant failed\n", __FILE__, line);
		abort();
	}
}
#define check(cond) check_at((cond), __LINE__)

static void render(struct buf *t, const struct imap_arg *a)
{
	buf_printf(t, "<%d:", (int)a->type);
	if (a->str)
		buf_append(t, a->str, a->type == IMAP_ARG_SECTION ? strlen(a->str) : a->len);
	if (a->section)
		buf_printf(t, "[%s|%s]", a->section, a->raw);
	buf_printf(t, "%d,%d,%llu,%llu", a->has_partial, a->partial_has_count,
	           (unsigned long long)a->partial_offset, (unsigned long long)a->partial_count);
	for (size_t i = 0; i < a->nlist; i++)
		render(t, &a->list[i]);
	buf_puts(t, ">");
}

/* Run the parser with pieces of at most step octets; transcript into t. */
static void run(const uint8_t *data, size_t size, size_t step, struct buf *t)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	struct buf chunk;
	size_t off = 0;

	imap_parser_limits_default(&lim);
	lim.max_line = 200;
	lim.max_literal = 300;
	lim.max_command = 1000;
	lim.stream_literal_min = 50;
	lim.max_depth = 6;
	lim.max_args = 64;
	p = imap_parser_new(&lim);
	buf_init(&chunk, 0);
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		int dead = 0;

		while (n > 0 && !dead) {
			size_t used = 0;
			enum imap_parse_status st = imap_parser_feed(p, data + off, n, &used);

			check(used <= n);
			off += used;
			n -= used;
			switch (st) {
			case IMAP_PARSE_NEED_MORE:
				check(n == 0);
				break;
			case IMAP_PARSE_COMMAND: {
				const struct imap_command *c = imap_parser_command(p);

				buf_printf(t, "C %s %s", c->tag, c->name);
				for (size_t i = 0; i < c->nargs; i++)
					render(t, &c->args[i]);
				buf_puts(t, "\n");
				break;
			}
			case IMAP_PARSE_CONTINUATION:
				buf_printf(t, "+ %llu\n",
				           (unsigned long long)imap_parser_literal_size(p));
				break;
			case IMAP_PARSE_LITERAL_CHUNK: {
				const uint8_t *cd;
				size_t cn;
				bool last;

				imap_parser_chunk(p, &cd, &cn, &last);
				buf_append(&chunk, cd, cn);
				if (last) {
					buf_printf(t, "L %zu\n", buf_len(&chunk));
					buf_reset(&chunk);
				}
				break;
			}
			case IMAP_PARSE_BAD:
				buf_printf(t, "B %s %s\n",
				           imap_parser_tag(p) ? imap_parser_tag(p) : "*",
				           imap_parser_error(p));
				break;
			case IMAP_PARSE_FATAL:
				buf_printf(t, "F %s\n", imap_parser_error(p));
				dead = 1;
				off = size;
				break;
			}
		}
	}
	buf_free(&chunk);
	imap_parser_free(&p);
}

static void helpers(const char *s, size_t len)
{
	struct imap_seqset set;
	const char *err;
	char *d, *e;
	int64_t t;
	int tz;

	if (imap_seqset_parse(s, &set, &err) == 0) {
		(void)imap_seqset_contains(&set, 7, 100);
		imap_seqset_free(&set);
	}
	d = imap_mutf7_decode(s);
	if (d != NULL) {
		e = imap_mutf7_encode(d);
		check(e != NULL && strcmp(e, s) == 0);
		free(e);
		free(d);
	}
	e = imap_mutf7_encode(s);
	if (e != NULL) {
		d = imap_mutf7_decode(e);
		check(d != NULL && strcmp(d, s) == 0);
		free(d);
		free(e);
	}
	{
		struct imap_section sec;
		char parts[12 * IMAP_SECTION_MAX_PARTS];

		if (imap_section_parse(s, len & 1, &sec, &err) == 0)
			imap_section_part_string(&sec, parts, sizeof(parts));
	}
	(void)imap_date_parse(s, &t);
	if (imap_datetime_parse(s, &t, &tz)) {
		struct buf b;

		buf_init(&b, 0);
		check(imap_datetime_write(&b, t, tz) == 0);
		buf_free(&b);
	}
	/* writer -> parser round trip for NUL-free values */
	if (strlen(s) == len) {
		struct buf b;
		struct imap_parser *p = imap_parser_new(NULL);
		size_t off = 0, used;
		enum imap_parse_status st;

		buf_init(&b, 0);
		buf_puts(&b, "t X ");
		check(imap_string_write(&b, s, len, 0) == 0);
		buf_puts(&b, "\r\n");
		do {
			st = imap_parser_feed(p, buf_ptr(&b) + off, buf_len(&b) - off, &used);
			off += used;
		} while (st == IMAP_PARSE_CONTINUATION);
		check(st == IMAP_PARSE_COMMAND);
		check(imap_parser_command(p)->nargs == 1);
		check(imap_parser_command(p)->args[0].len == len);
		check(memcmp(imap_parser_command(p)->args[0].str, s, len) == 0);
		imap_parser_free(&p);
		buf_free(&b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b;
	char *s;

	buf_init(&a, 0);
	buf_init(&b, 0);
	run(data, size, size ? size : 1, &a);
	run(data, size, 1, &b);
	check(buf_len(&a) == buf_len(&b));
	check(buf_len(&a) == 0 || memcmp(buf_ptr(&a), buf_ptr(&b), buf_len(&a)) == 0);
	buf_free(&a);
	buf_free(&b);

	if (size < 4096) {
		s = malloc(size + 1);
		memcpy(s, data, size);
		s[size] = '\0';
		helpers(s, size);
		free(s);
	}
	return 0;
}
