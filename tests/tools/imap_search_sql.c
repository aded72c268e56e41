/*
 * tests/tools/imap_search_sql.c -- print the SQL the IMAP search builder
 * makes, for tests/integration/test_imap_search_sql.py.
 *
 *   imap_search_sql [--sort] 'SEARCH-ARGS' 'UID,UID,...'
 *
 * SEARCH-ARGS are the arguments of a SEARCH (or, with --sort, SORT)
 * command as a client sends them; the UIDs are the selected mailbox's
 * (sequence number i is the i-th).  Prints one JSON object:
 *   {"sql": "SELECT ... WHERE m.mailbox_id = $1 ...", "params": [...]}
 * whose statement takes the mailbox id as $1 and the builder's
 * parameters from $2 on, exactly as the Postgres store composes it
 * (mailbox/imap/search_sql.h).  Exit 1 with a message when the arguments
 * do not parse.
 */
#include "mailbox/imap/parser.h"
#include "mailbox/imap/search.h"
#include "mailbox/imap/search_sql.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

int main(int argc, char **argv)
{
	bool sort = argc > 1 && strcmp(argv[1], "--sort") == 0;
	const char *args, *uidlist;
	uint32_t uids[4096];
	size_t nuids = 0, used;
	struct imap_parser *p;
	char *line;
	const struct imap_command *c;
	struct imap_search_program prog;
	struct imap_search_sql_columns cols;
	struct imap_search_query q;
	struct imap_search_sql sql;
	const char *err = NULL;
	bool bad_charset;
	int rc = 1;

	if (argc != (sort ? 4 : 3)) {
		fprintf(stderr, "usage: imap_search_sql [--sort] 'SEARCH-ARGS' 'UID,UID,...'\n");
		return 2;
	}
	args = argv[sort ? 2 : 1];
	uidlist = argv[sort ? 3 : 2];
	for (const char *u = uidlist; *u && nuids < 4096;) {
		char *end;

		uids[nuids++] = (uint32_t)strtoul(u, &end, 10);
		u = end;
		if (*u == ',')
			u++;
		else if (*u)
			break;
	}
	p = imap_parser_new(NULL);
	line = xasprintf("t %s %s\r\n", sort ? "SORT" : "SEARCH", args);
	if (imap_parser_feed(p, line, strlen(line), &used) != IMAP_PARSE_COMMAND) {
		fprintf(stderr, "does not parse as a command\n");
		goto out;
	}
	c = imap_parser_command(p);
	if (imap_search_parse(c->args, c->nargs, sort, uids, nuids, &prog, &bad_charset, &err) <
	    0) {
		fprintf(stderr, "search: %s\n", err);
		imap_search_program_free(&prog);
		goto out;
	}
	imap_search_sql_columns_default(&cols);
	q.key = &prog.root;
	q.sort = prog.sort;
	q.nsort = prog.nsort;
	if (imap_search_sql_build(&q, &cols, 2, &sql, &err) < 0) {
		fprintf(stderr, "sql: %s\n", err);
	} else {
		struct buf stmt;

		buf_init(&stmt, 0);
		buf_printf(
		        &stmt,
		        "SELECT m.uid FROM messages m WHERE m.mailbox_id = $1 AND NOT m.expunged "
		        "AND %s ORDER BY %s",
		        sql.where, sql.order_by != NULL ? sql.order_by : "m.uid");
		buf_append(&stmt, "", 1);
		printf("{\"sql\": ");
		json_string((const char *)buf_ptr(&stmt));
		printf(", \"params\": [");
		for (size_t i = 0; i < sql.nparams; i++) {
			if (i > 0)
				printf(", ");
			json_string(sql.params[i]);
		}
		printf("]}\n");
		buf_free(&stmt);
		rc = 0;
	}
	imap_search_sql_free(&sql);
	imap_search_program_free(&prog);
out:
	free(line);
	imap_parser_free(&p);
	return rc;
}
