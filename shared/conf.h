/*
 * shared/conf.h -- YAML configuration into typed C structs, declared once.
 *
 * Each section of a config file is described by a table of keys (name,
 * type, offset into the C struct, bounds, default, help).  The same table
 * drives parsing, validation, defaults and the printed effective config, so
 * a key is declared exactly once.  Errors carry FILE:LINE:COL and the full
 * key path:
 *
 *   edge.yaml:7:5: key 'listeners[0].idle_timeout': invalid duration '10x'
 *
 * Unknown keys, duplicate keys, wrong types and out-of-range values are all
 * errors; every error is collected, not just the first.  YAML syntax errors
 * are reported as FILE:LINE:COL too.  Aliases, tags and a second document
 * are refused (a config is short enough to spell out).
 *
 * A plain null value (`key:`, `key: ~`, `key: null`) is the same as leaving
 * the key out: the default applies (a required key is an error).  So an
 * optional section is enabled with `tls: {}`, not `tls:`.
 *
 * Scalars (not keys) may be written as:
 *   ${NAME}            the environment variable NAME (an error if unset)
 *   ${NAME:-default}   NAME, or default when unset or empty
 *   file:/path         the content of a regular file (at most 64KB), one
 *                      trailing newline trimmed; unreadable is an error
 *   $$...  $file:...   literal: the first '$' is dropped, nothing expanded
 * The whole scalar is the reference; there is no interpolation inside a
 * longer string.  Values must be valid UTF-8 without NUL bytes.  These
 * forms are meant for secrets: keys of type CONF_SECRET are printed as
 * "<redacted>" in the effective config and wiped when freed.
 *
 * Sections: a CONF_SECTION with a present_offset is optional; when absent
 * its struct gets the defaults, its required keys are not checked and the
 * flag stays false.  A section without one always exists: when absent it
 * loads as an empty mapping (defaults, required keys, validate).
 */
#ifndef SHARED_CONF_H
#define SHARED_CONF_H

#include "shared/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum conf_type {
	CONF_BOOL,      /* bool */
	CONF_INT,       /* int64_t, bounds min..max */
	CONF_STR,       /* char * (owned, NULL when unset and no default) */
	CONF_SECRET,    /* char *, redacted when printed */
	CONF_DURATION,  /* uint64_t milliseconds: "250ms", "3s", "30m", "2h", "5d" */
	CONF_SIZE,      /* uint64_t bytes: "512", "64KB", "50MB", "1GB" (powers of 1024) */
	CONF_ENUM,      /* int: index into enum_names */
	CONF_STRLIST,   /* struct conf_strlist; a scalar is a one-item list */
	CONF_HOSTPORTS, /* struct conf_strlist of validated "host:port" */
	CONF_CIDRS,     /* struct net_cidr_set; a scalar is a one-item list */
	CONF_SECTION,   /* nested mapping into a struct at offset, table sub */
	CONF_LIST,      /* sequence of mappings: struct conf_list of sub */
};

/* key flags */
#define CONF_F_REQUIRED 0x01 /* must be present (no default) */
#define CONF_F_AUTO     0x02 /* CONF_INT: the scalar "auto" stores -1 */

struct conf_strlist {
	char **v; /* owned */
	size_t n;
};

struct conf_list {
	void *v; /* owned array of n elements of the sub table's struct size */
	size_t n;
};

struct conf_table;
struct conf_ctx;

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t offset;
	unsigned flags;
	/* Default, written as in YAML ("3s", "true", "v2"), parsed by the same
	 * parser as file values; for list types a comma-separated list
	 * ("127.0.0.0/8, ::1").  NULL: none.  Not used by SECTION or LIST. */
	const char *def;
	int64_t min, max; /* CONF_INT, CONF_DURATION (ms), CONF_SIZE; both 0: unbounded */
	const char *const *enum_names; /* CONF_ENUM: NULL-terminated */
	const struct conf_table *sub;  /* CONF_SECTION, CONF_LIST */
	/* CONF_SECTION: offset of a bool set true when the section is present
	 * in the file; 0 = none (offset 0 is never a valid flag position). */
	size_t present_offset;
	const char *help;
};

struct conf_table {
	const char *name; /* for messages and the printed config */
	size_t size;      /* sizeof the struct it fills (for CONF_LIST) */
	const struct conf_key *keys;
	size_t nkeys;
	/* Optional cross-field check after a mapping is loaded (each list
	 * element, each section, the top level), called only if that mapping
	 * loaded without errors; path is the mapping's key path ("" at the
	 * top, "listeners[0]") and line:col its position.  Return -1 and call
	 * conf_error() to reject. */
	int (*validate)(void *obj, struct conf_ctx *ctx, const char *path, int line, int col);
};

struct conf_error {
	char *msg; /* "FILE:LINE:COL: key 'path': what is wrong" */
};

/* The state of one load, passed to validate hooks.  conf_load_* set it up
 * (it need not be initialised); release it with conf_ctx_free. */
struct conf_ctx {
	const char *file; /* the caller's name or path, not copied */
	struct conf_error *errs;
	size_t nerrs, caperrs;
	/* warnings: the file loads, but something deserves the operator's eye
	 * (a secret written literally in the file) */
	struct conf_error *warns;
	size_t nwarns, capwarns;
};

/* Record an error at file:line:col for key path ("FILE:L:C: key 'p': msg");
 * a NULL or empty path leaves the key part out.  After 200 errors one
 * "too many errors" line is kept and the rest dropped. */
void conf_error(struct conf_ctx *ctx, int line, int col, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/*
 * Load a YAML file into obj (which the caller has zeroed) per table t.
 * Defaults are applied to keys not present.  Returns 0, or -1 with every
 * error in ctx->errs (print them with conf_errors_print).  obj must be
 * released with conf_free() and ctx with conf_ctx_free() either way.  A
 * file that cannot be read gives one "FILE: cannot open: ..." error.
 */
int conf_load_file(const char *path, const struct conf_table *t, void *obj, struct conf_ctx *ctx);
/* Same from memory; name is used as FILE in messages. */
int conf_load_buffer(const char *name, const char *text, size_t len, const struct conf_table *t,
                     void *obj, struct conf_ctx *ctx);

void conf_errors_print(const struct conf_ctx *ctx, FILE *out);
/* The warnings, one "FILE:L:C: key 'p': warning: ..." line each. */
void conf_warnings_print(const struct conf_ctx *ctx, FILE *out);
void conf_ctx_free(struct conf_ctx *ctx);

/* Print the effective config (every key, defaults included) as YAML that
 * loads back to the same values, with CONF_SECRET values as <redacted>,
 * durations and sizes in the largest exact unit, strings double-quoted,
 * unset strings and absent optional sections as ~, and each key's help as
 * a trailing comment. */
void conf_print(FILE *out, const struct conf_table *t, const void *obj);

/* Free everything conf_load_* allocated inside obj (not obj itself) and
 * reset those fields; safe after a failed load and when called twice. */
void conf_free(const struct conf_table *t, void *obj);

/* Scalar parsers, exposed for command-line flags and tests; 0 or -1.
 * Duration: digits and one unit of ms, s, m, h, d ("0" alone may omit it).
 * Size: digits, optionally B, KB, MB or GB (any case; powers of 1024).
 * Bool: true/false, yes/no, on/off (any case). */
int conf_parse_duration(const char *s, uint64_t *ms_r);
int conf_parse_size(const char *s, uint64_t *bytes_r);
int conf_parse_bool(const char *s, bool *b_r);

#define CONF_OFF(type, field) offsetof(type, field)

#endif
