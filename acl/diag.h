/*
 * acl/diag.h -- diagnostics with FILE:LINE:COL, printed for people, for
 * programs and for CI.
 *
 * Every check collects its findings here instead of printing, so one run
 * can report all of them and the same list can be written three ways:
 *
 *   text    policy.hujson:12:9: tag "tag:mail" not found in tagOwners
 *   json    {"version":1,"diagnostics":[{"file":...,"line":12,...}],...}
 *   github  ::error file=policy.hujson,line=12,col=9::tag "tag:mail" ...
 *
 * The exit codes of tailpost-acl live here too, since every command maps
 * its worst finding to one of them.
 */
#ifndef ACL_DIAG_H
#define ACL_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum acl_exit {
	ACL_EXIT_OK = 0,       /* ok / allowed / unchanged */
	ACL_EXIT_FAIL = 1,     /* a test failed, denied, or would change */
	ACL_EXIT_USAGE = 2,    /* bad command line */
	ACL_EXIT_SYNTAX = 3,   /* HuJSON syntax error */
	ACL_EXIT_INVALID = 4,  /* schema or reference error */
	ACL_EXIT_CONFLICT = 5, /* merge conflict */
	ACL_EXIT_IO = 6,       /* cannot read or write a file */
};

enum acl_severity {
	ACL_SEV_ERROR = 0,
	ACL_SEV_WARNING,
	ACL_SEV_NOTICE,
};

enum acl_format {
	ACL_FMT_TEXT = 0,
	ACL_FMT_JSON,
	ACL_FMT_GITHUB,
};

struct acl_diag {
	char *file;    /* owned; NULL for messages without a file */
	int line, col; /* 0 when unknown */
	enum acl_severity sev;
	char *msg; /* owned */
};

struct acl_diags {
	struct acl_diag *v;
	size_t n, cap;
	size_t nerrors;
};

void acl_diags_init(struct acl_diags *d);
void acl_diags_free(struct acl_diags *d);
/* Record a finding; file may be NULL, line/col 0 when unknown. */
void acl_diag_add(struct acl_diags *d, enum acl_severity sev, const char *file, int line, int col,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Parse "text|json|github"; -1 if unknown. */
int acl_format_parse(const char *s);

/* Print every diagnostic as text (stderr-style lines) or GitHub
 * annotations to out.  JSON is written by acl_diags_json(). */
void acl_diags_print(const struct acl_diags *d, enum acl_format fmt, FILE *out);

/* Write the "diagnostics" array (no surrounding braces) as JSON. */
void acl_diags_json(const struct acl_diags *d, FILE *out);

/* A JSON string literal of s to out (RFC 8259 escaping). */
void acl_json_str(FILE *out, const char *s);

#endif
