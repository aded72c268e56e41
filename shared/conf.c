/*
 * shared/conf.c -- YAML configuration into typed C structs, declared once.
 *
 * Loading runs in two passes.  First libyaml's event parser builds a small
 * tree of scalars, mappings and sequences, each node with its 1-based line
 * and column; aliases, tags, a second document and absurd nesting are
 * refused here, so the second pass never sees anything but plain data.
 * Then the tree is walked against the key tables: each mapping is matched
 * key by key (unknown, duplicate, wrong type, out of range are errors at
 * the offending node), absent keys get their default parsed by the same
 * scalar parser as file values, required keys that are missing are errors
 * at the mapping, and the table's validate hook runs last.  Every error is
 * recorded and the walk goes on, so one run reports all of them.
 *
 * A plain null value (`key:`, `key: ~`, `key: null`) means the same as an
 * absent key.  That makes the printed effective config exact: an unset
 * string or an absent optional section prints as `~` and loads back as
 * unset.
 *
 * Scalars are expanded before they are typed: `${NAME}`, `${NAME:-def}` and
 * `file:/path` (so secrets stay out of the YAML); `$$...` and `$file:...`
 * lose their first '$' and are taken literally, which is also how the
 * printer escapes a value that would otherwise be expanded again.
 */
#include "shared/conf.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CONF_MAX_DEPTH      64          /* nesting of mappings and sequences */
#define CONF_MAX_ERRORS     200         /* then one "too many errors" line */
#define CONF_MAX_FILE       (16u << 20) /* a config file */
#define CONF_MAX_VALUE_FILE 65536u      /* a file: value (a secret, a key) */
#define CONF_SHOW_MAX       60          /* bytes of a value quoted in a message */

enum node_kind { N_SCALAR, N_MAP, N_SEQ, N_BAD };

/* One node of the parsed document.  A mapping's kids alternate key, value. */
struct node {
	enum node_kind kind;
	int line, col; /* 1-based */
	bool plain;    /* plain scalar style: only these can be null */
	char *val;     /* scalar bytes, NUL-terminated (may hold NULs: len) */
	size_t len;
	struct node **kid;
	size_t n, cap;
};

/* --- errors ------------------------------------------------------------- */

static char *xvasprintf_(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *xvasprintf_(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *s;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		n = 0;
	s = xmalloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static void push_error(struct conf_ctx *ctx, char *msg)
{
	if (ctx->nerrs > CONF_MAX_ERRORS) {
		free(msg);
		return;
	}
	if (ctx->nerrs == CONF_MAX_ERRORS) {
		free(msg);
		msg = xasprintf("%s: too many errors, stopped reporting", ctx->file);
	}
	if (ctx->nerrs == ctx->caperrs) {
		ctx->caperrs = ctx->caperrs ? ctx->caperrs * 2 : 8;
		ctx->errs = xreallocarray(ctx->errs, ctx->caperrs, sizeof(*ctx->errs));
	}
	ctx->errs[ctx->nerrs++].msg = msg;
}

void conf_error(struct conf_ctx *ctx, int line, int col, const char *path, const char *fmt, ...)
{
	va_list ap;
	char *what, *msg;

	va_start(ap, fmt);
	what = xvasprintf_(fmt, ap);
	va_end(ap);
	if (path != NULL && path[0] != '\0')
		msg = xasprintf("%s:%d:%d: key '%s': %s", ctx->file, line, col, path, what);
	else
		msg = xasprintf("%s:%d:%d: %s", ctx->file, line, col, what);
	free(what);
	push_error(ctx, msg);
}

void conf_errors_print(const struct conf_ctx *ctx, FILE *out)
{
	for (size_t i = 0; i < ctx->nerrs; i++)
		fprintf(out, "%s\n", ctx->errs[i].msg);
}

void conf_warnings_print(const struct conf_ctx *ctx, FILE *out)
{
	for (size_t i = 0; i < ctx->nwarns; i++)
		fprintf(out, "%s\n", ctx->warns[i].msg);
}

/* A warning at the node (bounded like the errors). */
static void conf_warn(struct conf_ctx *ctx, int line, int col, const char *path, const char *what)
{
	if (ctx->nwarns >= CONF_MAX_ERRORS)
		return;
	if (ctx->nwarns == ctx->capwarns) {
		ctx->capwarns = ctx->capwarns ? ctx->capwarns * 2 : 4;
		ctx->warns = xreallocarray(ctx->warns, ctx->capwarns, sizeof(*ctx->warns));
	}
	ctx->warns[ctx->nwarns++].msg =
	        xasprintf("%s:%d:%d: key '%s': warning: %s", ctx->file, line, col, path, what);
}

void conf_ctx_free(struct conf_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nerrs; i++)
		free(ctx->errs[i].msg);
	free(ctx->errs);
	ctx->errs = NULL;
	ctx->nerrs = ctx->caperrs = 0;
	for (size_t i = 0; i < ctx->nwarns; i++)
		free(ctx->warns[i].msg);
	free(ctx->warns);
	ctx->warns = NULL;
	ctx->nwarns = ctx->capwarns = 0;
}

/* A value fit to quote in a message: at most CONF_SHOW_MAX bytes, never cut
 * inside a UTF-8 sequence, control bytes shown as '?'. */
static const char *show(char *buf, size_t bufsz, const char *s)
{
	size_t n = strlen(s), k;
	bool cut = false;

	if (n > CONF_SHOW_MAX) {
		n = CONF_SHOW_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		cut = true;
	}
	if (n + 4 > bufsz)
		n = bufsz > 4 ? bufsz - 4 : 0;
	for (k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		buf[k] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (cut) {
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = '\0';
	return buf;
}

/* --- scalar parsers ------------------------------------------------------ */

int conf_parse_bool(const char *s, bool *b_r)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*b_r = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*b_r = false;
			return 0;
		}
	}
	return -1;
}

/* Decimal digits into *v, at least one, no overflow; returns the end. */
static const char *parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return NULL;
		x = x * 10 + d;
	}
	if (p == s)
		return NULL;
	*v = x;
	return p;
}

static int parse_int(const char *s, int64_t *v)
{
	bool neg = false;
	uint64_t u;
	const char *end;

	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	end = parse_u64(s, &u);
	if (end == NULL || *end != '\0')
		return -1;
	if (neg) {
		if (u > (uint64_t)INT64_MAX + 1)
			return -1;
		*v = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
	} else {
		if (u > (uint64_t)INT64_MAX)
			return -1;
		*v = (int64_t)u;
	}
	return 0;
}

static const struct {
	const char *unit;
	uint64_t ms;
} duration_units[] = {
        {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1},
};

int conf_parse_duration(const char *s, uint64_t *ms_r)
{
	uint64_t n;
	const char *end = parse_u64(s, &n);

	if (end == NULL)
		return -1;
	/* A bare number is ambiguous (seconds? milliseconds?): only 0 may
	 * omit the unit. */
	if (*end == '\0') {
		if (n != 0)
			return -1;
		*ms_r = 0;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(duration_units); i++) {
		if (strcmp(end, duration_units[i].unit) != 0)
			continue;
		if (n > UINT64_MAX / duration_units[i].ms)
			return -1;
		*ms_r = n * duration_units[i].ms;
		return 0;
	}
	return -1;
}

static const struct {
	const char *unit;
	uint64_t mul;
} size_units[] = {
        {"GB", 1u << 30},
        {"MB", 1u << 20},
        {"KB", 1u << 10},
        {"B", 1},
};

int conf_parse_size(const char *s, uint64_t *bytes_r)
{
	uint64_t n;
	const char *end = parse_u64(s, &n);

	if (end == NULL)
		return -1;
	if (*end == '\0') {
		*bytes_r = n;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(size_units); i++) {
		if (strcasecmp(end, size_units[i].unit) != 0)
			continue;
		if (n > UINT64_MAX / size_units[i].mul)
			return -1;
		*bytes_r = n * size_units[i].mul;
		return 0;
	}
	return -1;
}

/* The largest unit that divides the value exactly, so it reads back equal. */
static const char *fmt_duration(char *buf, size_t bufsz, uint64_t ms)
{
	if (ms == 0) {
		snprintf(buf, bufsz, "0s");
		return buf;
	}
	for (size_t i = 0; i < ARRAY_SIZE(duration_units); i++) {
		if (ms % duration_units[i].ms == 0) {
			snprintf(buf, bufsz, "%" PRIu64 "%s", ms / duration_units[i].ms,
			         duration_units[i].unit);
			break;
		}
	}
	return buf;
}

static const char *fmt_size(char *buf, size_t bufsz, uint64_t b)
{
	for (size_t i = 0; i < ARRAY_SIZE(size_units); i++) {
		if (b != 0 && b % size_units[i].mul == 0) {
			snprintf(buf, bufsz, "%" PRIu64 "%s", b / size_units[i].mul,
			         size_units[i].unit);
			return buf;
		}
	}
	snprintf(buf, bufsz, "0B");
	return buf;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, at most U+10FFFF.
 * Decodes one code point at s[i]; returns its length, 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		len = 2;
		c &= 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		c &= 0x0f;
		min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		c &= 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static bool utf8_valid(const char *s, size_t n)
{
	uint32_t cp;

	for (size_t i = 0; i < n;) {
		size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* --- the document tree --------------------------------------------------- */

static struct node *node_new(enum node_kind kind, const yaml_mark_t *m)
{
	struct node *n = xcalloc(1, sizeof(*n));

	n->kind = kind;
	n->line = (int)(m->line + 1);
	n->col = (int)(m->column + 1);
	return n;
}

static void node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n; i++)
		node_free(n->kid[i]);
	free(n->kid);
	free(n->val);
	free(n);
}

static void node_add(struct node *parent, struct node *kid)
{
	if (parent->n == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 8;
		parent->kid = xreallocarray(parent->kid, parent->cap, sizeof(*parent->kid));
	}
	parent->kid[parent->n++] = kid;
}

static bool node_is_null(const struct node *n)
{
	/* YAML 1.1 null: the empty plain scalar, ~ and null in three cases. */
	return n->kind == N_SCALAR && n->plain &&
	       (n->len == 0 || strcmp(n->val, "~") == 0 || strcmp(n->val, "null") == 0 ||
	        strcmp(n->val, "Null") == 0 || strcmp(n->val, "NULL") == 0);
}

static const char *kind_name(const struct node *n)
{
	switch (n->kind) {
	case N_MAP:
		return "a mapping";
	case N_SEQ:
		return "a list";
	default:
		return "a scalar";
	}
}

/* Line and column of a byte offset (reader errors carry only the offset). */
static void offset_pos(const char *text, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;

	for (size_t i = 0; i < off && i < len; i++) {
		if (text[i] == '\n') {
			l++;
			c = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static void syntax_error(struct conf_ctx *ctx, const yaml_parser_t *p, const char *text, size_t len)
{
	int line, col;
	const char *problem = p->problem != NULL ? p->problem : "unknown error";

	switch (p->error) {
	case YAML_READER_ERROR:
		offset_pos(text, len, p->problem_offset, &line, &col);
		conf_error(ctx, line, col, NULL, "invalid input: %s", problem);
		break;
	case YAML_SCANNER_ERROR:
	case YAML_PARSER_ERROR:
		if (p->context != NULL)
			conf_error(ctx, (int)p->problem_mark.line + 1,
			           (int)p->problem_mark.column + 1, NULL,
			           "YAML syntax error: %s (%s at %d:%d)", problem, p->context,
			           (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
		else
			conf_error(ctx, (int)p->problem_mark.line + 1,
			           (int)p->problem_mark.column + 1, NULL, "YAML syntax error: %s",
			           problem);
		break;
	default:
		conf_error(ctx, 1, 1, NULL, "YAML parser failed: %s", problem);
		break;
	}
}

static bool event_has_tag(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return ev->data.scalar.tag != NULL;
	case YAML_SEQUENCE_START_EVENT:
		return ev->data.sequence_start.tag != NULL;
	case YAML_MAPPING_START_EVENT:
		return ev->data.mapping_start.tag != NULL;
	default:
		return false;
	}
}

/*
 * Build the tree of the first document.  *root_r is NULL for an empty
 * stream.  Returns 0 when the tree may be walked (errors about tags and
 * aliases leave it walkable: the offending node is N_BAD), -1 when not.
 */
static int tree_parse(struct conf_ctx *ctx, const char *text, size_t len, struct node **root_r)
{
	yaml_parser_t p;
	yaml_event_t ev;
	struct node *stack[CONF_MAX_DEPTH];
	struct node *root = NULL, *n;
	size_t depth = 0;
	int docs = 0, rc = 0;
	bool done = false;

	*root_r = NULL;
	if (!yaml_parser_initialize(&p)) {
		conf_error(ctx, 1, 1, NULL, "cannot initialise the YAML parser");
		return -1;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &ev)) {
			syntax_error(ctx, &p, text, len);
			rc = -1;
			break;
		}
		n = NULL;
		if (event_has_tag(&ev))
			conf_error(ctx, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
			           NULL, "YAML tags are not supported");
		switch (ev.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				conf_error(ctx, (int)ev.start_mark.line + 1,
				           (int)ev.start_mark.column + 1, NULL,
				           "a second YAML document is not supported");
				done = true;
			}
			break;
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_ALIAS_EVENT:
			/* Aliases allow exponential expansion and hide where a
			 * value came from; configs are short enough to spell out. */
			conf_error(ctx, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
			           NULL, "YAML aliases are not supported (write the value out)");
			n = node_new(N_BAD, &ev.start_mark);
			break;
		case YAML_SCALAR_EVENT:
			n = node_new(N_SCALAR, &ev.start_mark);
			n->len = ev.data.scalar.length;
			n->val = xmalloc(n->len + 1);
			memcpy(n->val, ev.data.scalar.value, n->len);
			n->val[n->len] = '\0';
			n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth == CONF_MAX_DEPTH) {
				conf_error(ctx, (int)ev.start_mark.line + 1,
				           (int)ev.start_mark.column + 1, NULL,
				           "nested deeper than %d levels", CONF_MAX_DEPTH);
				rc = -1;
				done = true;
				break;
			}
			n = node_new(ev.type == YAML_MAPPING_START_EVENT ? N_MAP : N_SEQ,
			             &ev.start_mark);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
		if (n != NULL && depth == 0 && root != NULL) {
			node_free(n); /* not reached: one root per document */
		} else if (n != NULL) {
			if (depth == 0)
				root = n;
			else
				node_add(stack[depth - 1], n);
			if (n->kind == N_MAP || n->kind == N_SEQ)
				stack[depth++] = n;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (rc < 0) {
		node_free(root);
		return -1;
	}
	*root_r = root;
	return 0;
}

/* --- scalar expansion ---------------------------------------------------- */

static bool env_name_ok(const char *s, size_t n)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

/* Read a file: value.  Only regular files (a FIFO or /dev/zero would block
 * or never end), opened non-blocking, and bounded. */
static char *read_value_file(const char *path, size_t *len_r, const char **why_r)
{
	int fd = -1;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t r;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		*why_r = strerror(errno);
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		*why_r = strerror(errno);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		*why_r = "not a regular file";
		goto fail;
	}
	buf = xmalloc(CONF_MAX_VALUE_FILE + 1);
	for (;;) {
		r = read(fd, buf + len, CONF_MAX_VALUE_FILE + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why_r = strerror(errno);
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > CONF_MAX_VALUE_FILE) {
			*why_r = "larger than 64KB";
			goto fail;
		}
	}
	close(fd);
	/* One trailing newline (LF or CRLF) is the editor's, not the value's. */
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	buf[len] = '\0';
	*len_r = len;
	return buf;
fail:
	if (buf != NULL) {
		explicit_bzero(buf, CONF_MAX_VALUE_FILE + 1);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void free_value(char *s, size_t len)
{
	if (s != NULL) {
		explicit_bzero(s, len);
		free(s);
	}
}

/*
 * Expand one scalar into a fresh NUL-terminated string (*out, *len_r).
 * Returns 0, or -1 after recording an error at the node.
 */
static int expand(struct conf_ctx *ctx, const struct node *nd, const char *path, char **out,
                  size_t *len_r)
{
	const char *s = nd->val;
	char *v = NULL;
	size_t len = 0;

	if (strncmp(s, "$$", 2) == 0 || strncmp(s, "$file:", 6) == 0) {
		len = nd->len - 1;
		v = xmemdup(s + 1, len + 1);
	} else if (strncmp(s, "${", 2) == 0) {
		const char *body = s + 2, *def = NULL, *val;
		size_t blen, nlen;
		char *name;

		if (nd->len < 3 || s[nd->len - 1] != '}') {
			conf_error(ctx, nd->line, nd->col, path,
			           "unterminated ${...} (write $${ for a literal)");
			return -1;
		}
		blen = nd->len - 3;
		def = memmem(body, blen, ":-", 2);
		nlen = def != NULL ? (size_t)(def - body) : blen;
		if (!env_name_ok(body, nlen)) {
			char buf[CONF_SHOW_MAX + 8];
			conf_error(ctx, nd->line, nd->col, path, "invalid variable reference '%s'",
			           show(buf, sizeof(buf), s));
			return -1;
		}
		name = xstrndup(body, nlen);
		val = getenv(name);
		if (def != NULL && (val == NULL || val[0] == '\0')) {
			def += 2;
			len = (size_t)(body + blen - def);
			v = xstrndup(def, len);
		} else if (val == NULL) {
			conf_error(ctx, nd->line, nd->col, path,
			           "environment variable %s is not set", name);
			free(name);
			return -1;
		} else {
			len = strlen(val);
			v = xstrdup(val);
		}
		free(name);
	} else if (strncmp(s, "file:", 5) == 0) {
		const char *why = NULL;
		char buf[CONF_SHOW_MAX + 8];

		if (s[5] == '\0') {
			conf_error(ctx, nd->line, nd->col, path, "file: needs a path");
			return -1;
		}
		v = read_value_file(s + 5, &len, &why);
		if (v == NULL) {
			conf_error(ctx, nd->line, nd->col, path, "cannot read file '%s': %s",
			           show(buf, sizeof(buf), s + 5), why);
			return -1;
		}
	} else {
		len = nd->len;
		v = xmemdup(s, len + 1);
	}
	if (strlen(v) != len) {
		conf_error(ctx, nd->line, nd->col, path, "value contains a NUL byte");
		goto fail;
	}
	if (!utf8_valid(v, len)) {
		conf_error(ctx, nd->line, nd->col, path, "value is not valid UTF-8");
		goto fail;
	}
	*out = v;
	*len_r = len;
	return 0;
fail:
	free_value(v, len);
	return -1;
}

/* --- typed values -------------------------------------------------------- */

static void *field(void *obj, const struct conf_key *k)
{
	return (char *)obj + k->offset;
}

static const void *cfield(const void *obj, const struct conf_key *k)
{
	return (const char *)obj + k->offset;
}

static bool bounded(const struct conf_key *k)
{
	return k->min != 0 || k->max != 0;
}

static bool is_list_type(enum conf_type t)
{
	return t == CONF_STRLIST || t == CONF_HOSTPORTS || t == CONF_CIDRS;
}

static void strlist_push(struct conf_strlist *l, char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = s;
}

/* Where a value is reported: the node, or the mapping for a default. */
struct where {
	int line, col;
	const char *path;
	bool is_default;
};

static void werr(struct conf_ctx *ctx, const struct where *w, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void werr(struct conf_ctx *ctx, const struct where *w, const char *fmt, ...)
{
	va_list ap;
	char *what;

	va_start(ap, fmt);
	what = xvasprintf_(fmt, ap);
	va_end(ap);
	conf_error(ctx, w->line, w->col, w->path, "%s%s", w->is_default ? "bad default: " : "",
	           what);
	free(what);
}

/* Append one item of a list-typed key; takes s. */
static int set_list_item(struct conf_ctx *ctx, const struct conf_key *k, void *obj, char *s,
                         const struct where *w)
{
	char buf[CONF_SHOW_MAX + 8];
	const char *err = NULL;

	switch (k->type) {
	case CONF_HOSTPORTS: {
		char host[NET_HOSTLEN];
		uint16_t port;
		if (net_hostport_split(s, host, sizeof(host), &port, &err) < 0) {
			werr(ctx, w, "invalid host:port '%s': %s", show(buf, sizeof(buf), s), err);
			free(s);
			return -1;
		}
		strlist_push(field(obj, k), s);
		return 0;
	}
	case CONF_CIDRS:
		if (net_cidr_set_add_str(field(obj, k), s, &err) < 0) {
			werr(ctx, w, "invalid CIDR '%s': %s", show(buf, sizeof(buf), s), err);
			free(s);
			return -1;
		}
		free(s);
		return 0;
	default:
		strlist_push(field(obj, k), s);
		return 0;
	}
}

static void range_str(const struct conf_key *k, char *buf, size_t bufsz)
{
	char a[32], b[32];

	switch (k->type) {
	case CONF_DURATION:
		snprintf(buf, bufsz, "%s..%s", fmt_duration(a, sizeof(a), (uint64_t)k->min),
		         fmt_duration(b, sizeof(b), (uint64_t)k->max));
		break;
	case CONF_SIZE:
		snprintf(buf, bufsz, "%s..%s", fmt_size(a, sizeof(a), (uint64_t)k->min),
		         fmt_size(b, sizeof(b), (uint64_t)k->max));
		break;
	default:
		snprintf(buf, bufsz, "%" PRId64 "..%" PRId64, k->min, k->max);
		break;
	}
}

/* Parse and store a scalar-typed value; takes s.  0 or -1 (error recorded). */
static int set_scalar(struct conf_ctx *ctx, const struct conf_key *k, void *obj, char *s,
                      size_t slen, const struct where *w)
{
	char buf[CONF_SHOW_MAX + 8], range[80];
	void *f = field(obj, k);
	int rc = -1;

	range_str(k, range, sizeof(range));
	switch (k->type) {
	case CONF_BOOL:
		if (conf_parse_bool(s, f) < 0) {
			werr(ctx, w, "invalid boolean '%s' (use true or false)",
			     show(buf, sizeof(buf), s));
			goto out;
		}
		break;
	case CONF_INT: {
		int64_t v;
		if ((k->flags & CONF_F_AUTO) && strcmp(s, "auto") == 0) {
			*(int64_t *)f = -1;
			break;
		}
		if (parse_int(s, &v) < 0) {
			werr(ctx, w, "invalid integer '%s'%s", show(buf, sizeof(buf), s),
			     (k->flags & CONF_F_AUTO) ? " (a number or 'auto')" : "");
			goto out;
		}
		if (bounded(k) && (v < k->min || v > k->max)) {
			werr(ctx, w, "value %" PRId64 " out of range (%s)", v, range);
			goto out;
		}
		*(int64_t *)f = v;
		break;
	}
	case CONF_DURATION: {
		uint64_t v;
		if (conf_parse_duration(s, &v) < 0) {
			werr(ctx, w, "invalid duration '%s' (a number with a unit: ms, s, m, h, d)",
			     show(buf, sizeof(buf), s));
			goto out;
		}
		if (bounded(k) && (v > INT64_MAX || (int64_t)v < k->min || (int64_t)v > k->max)) {
			werr(ctx, w, "duration '%s' out of range (%s)", show(buf, sizeof(buf), s),
			     range);
			goto out;
		}
		*(uint64_t *)f = v;
		break;
	}
	case CONF_SIZE: {
		uint64_t v;
		if (conf_parse_size(s, &v) < 0) {
			werr(ctx, w, "invalid size '%s' (bytes, or a number with B, KB, MB or GB)",
			     show(buf, sizeof(buf), s));
			goto out;
		}
		if (bounded(k) && (v > INT64_MAX || (int64_t)v < k->min || (int64_t)v > k->max)) {
			werr(ctx, w, "size '%s' out of range (%s)", show(buf, sizeof(buf), s),
			     range);
			goto out;
		}
		*(uint64_t *)f = v;
		break;
	}
	case CONF_ENUM: {
		size_t i;
		for (i = 0; k->enum_names != NULL && k->enum_names[i] != NULL; i++) {
			if (strcmp(s, k->enum_names[i]) == 0)
				break;
		}
		if (k->enum_names == NULL || k->enum_names[i] == NULL) {
			char list[256];
			size_t off = 0;
			list[0] = '\0';
			for (size_t j = 0; k->enum_names != NULL && k->enum_names[j] != NULL; j++) {
				int n = snprintf(list + off, sizeof(list) - off, "%s%s",
				                 j ? ", " : "", k->enum_names[j]);
				if (n < 0 || (size_t)n >= sizeof(list) - off)
					break;
				off += (size_t)n;
			}
			werr(ctx, w, "invalid value '%s' (expected one of: %s)",
			     show(buf, sizeof(buf), s), list);
			goto out;
		}
		*(int *)f = (int)i;
		break;
	}
	case CONF_STR:
	case CONF_SECRET:
		*(char **)f = s;
		s = NULL;
		break;
	default:
		werr(ctx, w, "internal: key type %d is not a scalar", (int)k->type);
		goto out;
	}
	rc = 0;
out:
	/* Values may be secrets read from files: wipe what we drop. */
	free_value(s, slen);
	return rc;
}

static void load_map(struct conf_ctx *ctx, const struct conf_table *t, void *obj,
                     const struct node *map, const char *path, int line, int col,
                     bool defaults_only);

static char *join_path(const char *path, const char *name)
{
	char buf[CONF_SHOW_MAX + 8];

	show(buf, sizeof(buf), name);
	return path[0] ? xasprintf("%s.%s", path, buf) : xstrdup(buf);
}

/* Defaults for an absent (or null) key at the mapping's position. */
static void apply_default(struct conf_ctx *ctx, const struct conf_key *k, void *obj,
                          const char *kpath, int line, int col, bool defaults_only)
{
	struct where w = {line, col, kpath, true};

	switch (k->type) {
	case CONF_SECTION:
		/* A section with a presence flag is optional: defaults only.
		 * Without one it always exists, as if written empty. */
		load_map(ctx, k->sub, field(obj, k), NULL, kpath, line, col,
		         defaults_only || k->present_offset != 0);
		return;
	case CONF_LIST:
		return;
	default:
		break;
	}
	if (k->def == NULL)
		return;
	if (is_list_type(k->type)) {
		/* A list default is comma-separated: "127.0.0.1/8, ::1". */
		const char *p = k->def;
		while (*p != '\0') {
			const char *e = strchr(p, ',');
			size_t n = e ? (size_t)(e - p) : strlen(p);
			while (n > 0 && (*p == ' ' || *p == '\t')) {
				p++;
				n--;
			}
			while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
				n--;
			if (n > 0)
				set_list_item(ctx, k, obj, xstrndup(p, n), &w);
			if (e == NULL)
				break;
			p = e + 1;
		}
		return;
	}
	set_scalar(ctx, k, obj, xstrdup(k->def), strlen(k->def), &w);
}

static void load_value(struct conf_ctx *ctx, const struct conf_key *k, void *obj,
                       const struct node *v, const char *kpath)
{
	struct where w = {v->line, v->col, kpath, false};
	char *s;
	size_t slen;

	if (v->kind == N_BAD)
		return; /* already reported */
	switch (k->type) {
	case CONF_SECTION:
		if (v->kind != N_MAP) {
			conf_error(ctx, v->line, v->col, kpath, "expected a mapping, got %s",
			           kind_name(v));
			return;
		}
		if (k->present_offset != 0)
			*(bool *)((char *)obj + k->present_offset) = true;
		load_map(ctx, k->sub, field(obj, k), v, kpath, v->line, v->col, false);
		return;
	case CONF_LIST: {
		struct conf_list *l = field(obj, k);
		if (v->kind != N_SEQ) {
			conf_error(ctx, v->line, v->col, kpath,
			           "expected a list of mappings, got %s", kind_name(v));
			return;
		}
		l->v = xcalloc(v->n ? v->n : 1, k->sub->size ? k->sub->size : 1);
		l->n = v->n;
		for (size_t i = 0; i < v->n; i++) {
			const struct node *e = v->kid[i];
			char *epath = xasprintf("%s[%zu]", kpath, i);
			if (e->kind == N_MAP)
				load_map(ctx, k->sub, (char *)l->v + i * k->sub->size, e, epath,
				         e->line, e->col, false);
			else if (e->kind != N_BAD)
				conf_error(ctx, e->line, e->col, epath,
				           "expected a mapping, got %s", kind_name(e));
			free(epath);
		}
		return;
	}
	default:
		break;
	}
	if (is_list_type(k->type)) {
		if (v->kind == N_SCALAR) {
			if (expand(ctx, v, kpath, &s, &slen) == 0)
				set_list_item(ctx, k, obj, s, &w);
			return;
		}
		if (v->kind != N_SEQ) {
			conf_error(ctx, v->line, v->col, kpath, "expected a list, got %s",
			           kind_name(v));
			return;
		}
		for (size_t i = 0; i < v->n; i++) {
			const struct node *e = v->kid[i];
			char *epath = xasprintf("%s[%zu]", kpath, i);
			struct where ew = {e->line, e->col, epath, false};
			if (e->kind == N_BAD) {
				/* already reported */
			} else if (e->kind != N_SCALAR) {
				conf_error(ctx, e->line, e->col, epath, "expected a string, got %s",
				           kind_name(e));
			} else if (node_is_null(e)) {
				conf_error(ctx, e->line, e->col, epath, "empty list item");
			} else if (expand(ctx, e, epath, &s, &slen) == 0) {
				set_list_item(ctx, k, obj, s, &ew);
			}
			free(epath);
		}
		return;
	}
	if (v->kind != N_SCALAR) {
		conf_error(ctx, v->line, v->col, kpath, "expected a scalar, got %s", kind_name(v));
		return;
	}
	/* DESIGN.md: secrets come from the environment or files, never from
	 * the YAML.  A literal still loads (tests and quick trials use them),
	 * with a warning naming the key. */
	if (k->type == CONF_SECRET && !node_is_null(v) && v->len > 0 &&
	    strncmp(v->val, "${", 2) != 0 && strncmp(v->val, "file:", 5) != 0)
		conf_warn(ctx, v->line, v->col, kpath,
		          "a secret written in the file; use ${ENV_NAME} or file:/path");
	if (expand(ctx, v, kpath, &s, &slen) == 0)
		set_scalar(ctx, k, obj, s, slen, &w);
}

/* Edit distance, for "did you mean" on unknown keys (short names only). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *suggest(const struct conf_table *t, const char *name)
{
	const char *best = NULL;
	size_t bestd = 3;

	for (size_t i = 0; i < t->nkeys; i++) {
		size_t d = edit_distance(name, t->keys[i].name);
		if (d < bestd && d < strlen(t->keys[i].name)) {
			bestd = d;
			best = t->keys[i].name;
		}
	}
	return best;
}

enum key_state { K_ABSENT = 0, K_NULL, K_SET };

/*
 * Load one mapping (map NULL: an empty one at line:col).  defaults_only
 * fills defaults without required-key errors or the validate hook: used for
 * an optional section that is absent.
 */
static void load_map(struct conf_ctx *ctx, const struct conf_table *t, void *obj,
                     const struct node *map, const char *path, int line, int col,
                     bool defaults_only)
{
	const struct node **first = xcalloc(t->nkeys ? t->nkeys : 1, sizeof(*first));
	enum key_state *state = xcalloc(t->nkeys ? t->nkeys : 1, sizeof(*state));
	size_t nerrs0 = ctx->nerrs;

	for (size_t i = 0; map != NULL && i + 1 < map->n; i += 2) {
		const struct node *kn = map->kid[i], *vn = map->kid[i + 1];
		char *kpath;
		size_t idx;

		if (kn->kind == N_BAD)
			continue;
		if (kn->kind != N_SCALAR) {
			conf_error(ctx, kn->line, kn->col, path[0] ? path : NULL,
			           "a key must be a string, got %s", kind_name(kn));
			continue;
		}
		kpath = join_path(path, kn->val);
		for (idx = 0; idx < t->nkeys; idx++) {
			if (strcmp(t->keys[idx].name, kn->val) == 0 && strlen(kn->val) == kn->len)
				break;
		}
		if (idx == t->nkeys) {
			const char *s = suggest(t, kn->val);
			if (s != NULL)
				conf_error(ctx, kn->line, kn->col, kpath,
				           "unknown key (did you mean '%s'?)", s);
			else
				conf_error(ctx, kn->line, kn->col, kpath, "unknown key");
		} else if (first[idx] != NULL) {
			conf_error(ctx, kn->line, kn->col, kpath, "duplicate key (first at %d:%d)",
			           first[idx]->line, first[idx]->col);
		} else {
			first[idx] = kn;
			if (node_is_null(vn)) {
				state[idx] = K_NULL;
				if (t->keys[idx].flags & CONF_F_REQUIRED)
					conf_error(ctx, vn->line, vn->col, kpath,
					           "required key has no value");
			} else {
				state[idx] = K_SET;
				load_value(ctx, &t->keys[idx], obj, vn, kpath);
			}
		}
		free(kpath);
	}
	for (size_t i = 0; i < t->nkeys; i++) {
		const struct conf_key *k = &t->keys[i];
		char *kpath;

		if (state[i] == K_SET)
			continue;
		kpath = join_path(path, k->name);
		if (state[i] == K_ABSENT && (k->flags & CONF_F_REQUIRED) && !defaults_only)
			conf_error(ctx, line, col, kpath, "required key is missing");
		else if (!(k->flags & CONF_F_REQUIRED))
			apply_default(ctx, k, obj, kpath, line, col, defaults_only);
		free(kpath);
	}
	/* Cross-field checks only make sense on a mapping that loaded cleanly. */
	if (!defaults_only && t->validate != NULL && ctx->nerrs == nerrs0 &&
	    t->validate(obj, ctx, path, line, col) < 0 && ctx->nerrs == nerrs0)
		conf_error(ctx, line, col, path, "rejected by %s validation",
		           t->name != NULL ? t->name : "table");
	free(first);
	free(state);
}

int conf_load_buffer(const char *name, const char *text, size_t len, const struct conf_table *t,
                     void *obj, struct conf_ctx *ctx)
{
	struct node *root = NULL;

	ctx->file = name;
	ctx->errs = NULL;
	ctx->nerrs = ctx->caperrs = 0;
	ctx->warns = NULL;
	ctx->nwarns = ctx->capwarns = 0;
	if (tree_parse(ctx, text, len, &root) < 0)
		goto done;
	if (root == NULL || node_is_null(root)) {
		load_map(ctx, t, obj, NULL, "", 1, 1, false);
	} else if (root->kind == N_MAP) {
		load_map(ctx, t, obj, root, "", root->line, root->col, false);
	} else if (root->kind != N_BAD) {
		conf_error(ctx, root->line, root->col, NULL,
		           "expected a mapping at the top level, got %s", kind_name(root));
	}
done:
	node_free(root);
	return ctx->nerrs == 0 ? 0 : -1;
}

int conf_load_file(const char *path, const struct conf_table *t, void *obj, struct conf_ctx *ctx)
{
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0, r;
	int rc;

	ctx->file = path;
	ctx->errs = NULL;
	ctx->nerrs = ctx->caperrs = 0;
	ctx->warns = NULL;
	ctx->nwarns = ctx->capwarns = 0;
	f = fopen(path, "re");
	if (f == NULL) {
		push_error(ctx, xasprintf("%s: cannot open: %s", path, strerror(errno)));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CONF_MAX_FILE) {
				push_error(ctx, xasprintf("%s: larger than %u bytes", path,
				                          CONF_MAX_FILE));
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			text = xrealloc(text, cap + 1);
		}
		r = fread(text + len, 1, cap - len, f);
		len += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		push_error(ctx, xasprintf("%s: cannot read: %s", path, strerror(errno)));
		goto fail;
	}
	fclose(f);
	rc = conf_load_buffer(path, text, len, t, obj, ctx);
	free(text);
	return rc;
fail:
	fclose(f);
	free(text);
	return -1;
}

/* --- printing ------------------------------------------------------------ */

/* A YAML double-quoted scalar that libyaml reads back byte for byte:
 * quotes, backslashes, line breaks (YAML 1.1 also breaks on U+0085,
 * U+2028, U+2029) and non-printables (YAML 1.1 5.1) are escaped. */
static void print_quoted(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	fputc('"', out);
	/* Keep "${", "$$", "$file:" and "file:" literal on reload. */
	if (strncmp(s, "${", 2) == 0 || strncmp(s, "$$", 2) == 0 || strncmp(s, "$file:", 6) == 0 ||
	    strncmp(s, "file:", 5) == 0)
		fputc('$', out);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k = utf8_decode(p + i, n - i, &cp);
		if (k == 0) {
			fprintf(out, "\\x%02x", p[i]); /* not reached: values are UTF-8 */
			i++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			fprintf(out, "\\%c", (int)cp);
		else if (cp == '\n')
			fputs("\\n", out);
		else if (cp == '\t')
			fputs("\\t", out);
		else if (cp == '\r')
			fputs("\\r", out);
		else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			fprintf(out, "\\x%02x", (unsigned)cp);
		else if (cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
		         cp == 0xffff)
			fprintf(out, "\\u%04x", (unsigned)cp);
		else
			fwrite(p + i, 1, k, out);
		i += k;
	}
	fputc('"', out);
}

static void print_help(FILE *out, const struct conf_key *k)
{
	if (k->help == NULL)
		fputc('\n', out);
	else {
		fputs("  # ", out);
		for (const char *h = k->help; *h; h++)
			fputc(*h == '\n' || *h == '\r' ? ' ' : *h, out);
		fputc('\n', out);
	}
}

static void print_map(FILE *out, const struct conf_table *t, const void *obj, int indent,
                      bool in_seq);

static void print_key(FILE *out, const struct conf_key *k, const void *obj, int ind)
{
	const void *f = cfield(obj, k);
	char buf[48];

	fprintf(out, "%s:", k->name);
	switch (k->type) {
	case CONF_BOOL:
		fprintf(out, " %s", *(const bool *)f ? "true" : "false");
		break;
	case CONF_INT:
		if ((k->flags & CONF_F_AUTO) && *(const int64_t *)f == -1)
			fputs(" auto", out);
		else
			fprintf(out, " %" PRId64, *(const int64_t *)f);
		break;
	case CONF_STR:
		if (*(char *const *)f == NULL)
			fputs(" ~", out);
		else {
			fputc(' ', out);
			print_quoted(out, *(char *const *)f);
		}
		break;
	case CONF_SECRET:
		fputs(*(char *const *)f == NULL ? " ~" : " <redacted>", out);
		break;
	case CONF_DURATION:
		fprintf(out, " %s", fmt_duration(buf, sizeof(buf), *(const uint64_t *)f));
		break;
	case CONF_SIZE:
		fprintf(out, " %s", fmt_size(buf, sizeof(buf), *(const uint64_t *)f));
		break;
	case CONF_ENUM: {
		int v = *(const int *)f;
		size_t n = 0;
		while (k->enum_names != NULL && k->enum_names[n] != NULL)
			n++;
		if (v >= 0 && (size_t)v < n) {
			fputc(' ', out);
			print_quoted(out, k->enum_names[v]);
		} else {
			fputs(" ~", out);
		}
		break;
	}
	case CONF_STRLIST:
	case CONF_HOSTPORTS: {
		const struct conf_strlist *l = f;
		fputs(" [", out);
		for (size_t i = 0; i < l->n; i++) {
			if (i)
				fputs(", ", out);
			print_quoted(out, l->v[i]);
		}
		fputc(']', out);
		break;
	}
	case CONF_CIDRS: {
		const struct net_cidr_set *set = f;
		char c[NET_ADDRSTRLEN];
		fputs(" [", out);
		for (size_t i = 0; i < set->n; i++)
			fprintf(out, "%s\"%s\"", i ? ", " : "",
			        net_cidr_str(&set->v[i], c, sizeof(c)));
		fputc(']', out);
		break;
	}
	case CONF_SECTION:
		if (k->present_offset != 0 &&
		    !*(const bool *)((const char *)obj + k->present_offset)) {
			fputs(" ~", out);
			print_help(out, k);
			return;
		}
		if (k->sub->nkeys == 0) {
			fputs(" {}", out);
			print_help(out, k);
			return;
		}
		print_help(out, k);
		print_map(out, k->sub, f, ind + 2, false);
		return;
	case CONF_LIST: {
		const struct conf_list *l = f;
		if (l->n == 0) {
			fputs(" []", out);
			print_help(out, k);
			return;
		}
		print_help(out, k);
		for (size_t i = 0; i < l->n; i++) {
			const void *e = (const char *)l->v + i * k->sub->size;
			if (k->sub->nkeys == 0)
				fprintf(out, "%*s- {}\n", ind + 2, "");
			else
				print_map(out, k->sub, e, ind + 2, true);
		}
		return;
	}
	}
	print_help(out, k);
}

/* Keys at column indent; in_seq: the first key follows "- " at indent and
 * the others line up under it. */
static void print_map(FILE *out, const struct conf_table *t, const void *obj, int indent,
                      bool in_seq)
{
	int ind = in_seq ? indent + 2 : indent;

	for (size_t i = 0; i < t->nkeys; i++) {
		if (in_seq && i == 0)
			fprintf(out, "%*s- ", indent, "");
		else
			fprintf(out, "%*s", ind, "");
		print_key(out, &t->keys[i], obj, ind);
	}
}

void conf_print(FILE *out, const struct conf_table *t, const void *obj)
{
	fprintf(out, "# effective configuration (%s); secrets are redacted\n",
	        t->name != NULL ? t->name : "config");
	if (t->nkeys == 0)
		fputs("{}\n", out);
	else
		print_map(out, t, obj, 0, false);
}

/* --- freeing ------------------------------------------------------------- */

void conf_free(const struct conf_table *t, void *obj)
{
	for (size_t i = 0; i < t->nkeys; i++) {
		const struct conf_key *k = &t->keys[i];
		void *f = field(obj, k);

		switch (k->type) {
		case CONF_STR:
		case CONF_SECRET: {
			char **s = f;
			if (*s != NULL && k->type == CONF_SECRET)
				explicit_bzero(*s, strlen(*s));
			free(*s);
			*s = NULL;
			break;
		}
		case CONF_STRLIST:
		case CONF_HOSTPORTS: {
			struct conf_strlist *l = f;
			for (size_t j = 0; j < l->n; j++)
				free(l->v[j]);
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case CONF_CIDRS:
			net_cidr_set_free(f);
			break;
		case CONF_SECTION:
			conf_free(k->sub, f);
			break;
		case CONF_LIST: {
			struct conf_list *l = f;
			for (size_t j = 0; j < l->n; j++)
				conf_free(k->sub, (char *)l->v + j * k->sub->size);
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		default:
			break;
		}
	}
}
