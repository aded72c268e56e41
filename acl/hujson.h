/*
 * acl/hujson.h -- HuJSON (JSON with comments and trailing commas) as an
 * exact syntax tree.
 *
 * Tailnet policy files are HuJSON, kept in git and edited by people, so the
 * tool that edits them must not disturb a byte it was not asked to change.
 * The tree therefore keeps everything: each value carries the whitespace and
 * comments before and after it ("extra"), literals keep their raw bytes, and
 * composites keep the extra before their closing bracket.  Packing an
 * unmodified tree reproduces the input byte for byte.  The grammar, the
 * error wording and the ownership of comments follow Tailscale's hujson
 * package (github.com/tailscale/hujson), which defines the format:
 *
 *   - comments are "//" up to and including "\n" (so a line comment must end
 *     with a newline) and block comments; comments must be valid UTF-8;
 *   - one trailing comma is allowed after the last member or element; it is
 *     represented by the last value's `after` extra being present (even when
 *     empty), so "[1]" and "[1,]" pack differently;
 *   - literals are the JSON ones (RFC 8259); duplicate object names are not
 *     a syntax error here (the policy layer rejects them).
 *
 * Objects store their members as name/value pairs in `items` (name at 2i,
 * value at 2i+1); arrays store their elements.  Everything is owned by the
 * tree and released with hujson_free().
 */
#ifndef ACL_HUJSON_H
#define ACL_HUJSON_H

#include "shared/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* Whitespace and comments between tokens. */
struct hujson_extra {
	char *p; /* owned, n bytes; NULL when n == 0 */
	size_t n;
	bool set; /* present (a trailing comma follows the last value if set) */
};

enum hujson_kind {
	HUJSON_NONE = 0,
	HUJSON_NULL = 'n',
	HUJSON_FALSE = 'f',
	HUJSON_TRUE = 't',
	HUJSON_STRING = '"',
	HUJSON_NUMBER = '0',
	HUJSON_OBJECT = '{',
	HUJSON_ARRAY = '[',
};

struct hujson_value {
	struct hujson_extra before; /* after the preceding '{', '[', ':', ',' or start */
	size_t start, end;          /* byte offsets of the trimmed value in the input */
	enum hujson_kind kind;
	char *lit; /* scalars: the raw literal bytes (owned), litlen bytes */
	size_t litlen;
	struct hujson_value *items; /* arrays: elements; objects: name, value pairs */
	size_t nitems, capitems;
	struct hujson_extra inner; /* composites: before the closing bracket */
	struct hujson_extra after; /* before the following ':', ',', '}', ']' or end */
	bool fmt_expand;           /* scratch for hujson_format */
};

enum hujson_status {
	HUJSON_OK = 0,
	HUJSON_ERR_SYNTAX,
};

struct hujson_error {
	size_t off; /* byte offset of the error */
	int line;   /* 1-based */
	int col;    /* 1-based, in bytes (as Tailscale reports it) */
	char msg[192];
};

/*
 * Parse len bytes of HuJSON into *out (which the caller provides; its old
 * contents are ignored).  Returns HUJSON_OK, or HUJSON_ERR_SYNTAX with *err
 * filled ("invalid character ',' after object value (expecting ',' or
 * '}')" at line/col) and *out released.  The input is not referenced after
 * the call.
 */
enum hujson_status hujson_parse(const char *text, size_t len, struct hujson_value *out,
                                struct hujson_error *err);

/* Release everything owned by v (not v itself) and zero it. */
void hujson_free(struct hujson_value *v);

/* Deep copy of src into *dst. */
void hujson_clone(struct hujson_value *dst, const struct hujson_value *src);

/* Append the exact serialisation of v (extras included) to out. */
void hujson_pack(const struct hujson_value *v, struct buf *out);
/* The serialisation as a NUL-terminated string the caller frees. */
char *hujson_pack_str(const struct hujson_value *v, size_t *len_r);
/* The trimmed value only (no leading or trailing extra of v itself). */
void hujson_pack_trimmed(const struct hujson_value *v, struct buf *out);

/* Recompute start/end offsets as if v had been packed (after edits). */
void hujson_update_offsets(struct hujson_value *v);

/* Line and column (1-based, bytes) of offset off in text. */
void hujson_line_col(const char *text, size_t len, size_t off, int *line_r, int *col_r);

/* Number of members (objects) or elements (arrays); 0 for scalars. */
size_t hujson_len(const struct hujson_value *v);
/* Object member i: name and value. */
struct hujson_value *hujson_member_name(struct hujson_value *obj, size_t i);
struct hujson_value *hujson_member_value(struct hujson_value *obj, size_t i);
/* Array element i. */
struct hujson_value *hujson_elem(struct hujson_value *arr, size_t i);

/*
 * Decode a string literal into a fresh NUL-terminated UTF-8 string the
 * caller frees, the way Go's encoding/json does (invalid UTF-8 and lone
 * surrogates become U+FFFD); *len_r gets its length (it may hold NULs).
 * NULL if v is not a string.
 */
char *hujson_string(const struct hujson_value *v, size_t *len_r);
/* True if v is a string whose decoded value equals s exactly. */
bool hujson_string_eq(const struct hujson_value *v, const char *s);

/*
 * Find the member named name in obj: the first exact match, else (when
 * fold) the first ASCII case-insensitive match.  Returns its index or -1.
 */
long hujson_find(const struct hujson_value *obj, const char *name, bool fold);

/* Encode s as a JSON string literal the way hujson's String() does
 * (RFC 8785 escaping: only '"', '\\' and control characters). */
void hujson_quote(struct buf *out, const char *s, size_t len);

/* Build values: a string, a raw literal (number/true/false/null), an empty
 * object or array.  Extras are empty and unset. */
void hujson_new_string(struct hujson_value *v, const char *s);
void hujson_new_literal(struct hujson_value *v, const char *raw);
void hujson_new_composite(struct hujson_value *v, enum hujson_kind kind);

/* The bytes of an extra, never NULL (an empty extra has p == NULL). */
static inline const char *hujson_extra_ptr(const struct hujson_extra *e)
{
	return e->p != NULL ? e->p : "";
}

/* The unread bytes of a scratch buffer, never NULL (an untouched buf has
 * no storage, and NULL + 0 is undefined). */
static inline const char *hujson_buf_bytes(const struct buf *b)
{
	return b->data != NULL ? (const char *)buf_ptr(b) : "";
}

/* Set an extra to a copy of n bytes (set = true). */
void hujson_extra_set(struct hujson_extra *e, const char *p, size_t n);
void hujson_extra_clear(struct hujson_extra *e); /* empty and unset */
bool hujson_extra_has_comment(const struct hujson_extra *e);
bool hujson_extra_has_newline(const struct hujson_extra *e);

/* True if v has no comments and no trailing commas (standard JSON). */
bool hujson_is_standard(const struct hujson_value *v);

/*
 * Semantic equality (RFC 8259 values: strings compared decoded, numbers
 * compared as written after normalising nothing, members in order).
 */
bool hujson_equal(const struct hujson_value *a, const struct hujson_value *b);

/*
 * Go's %q for one byte, as Tailscale's messages print offending input
 * ('x', '\n', '\x00', '\u00e9'); writes at most 10 bytes + NUL into out.
 */
void hujson_quote_byte(char *out, size_t outsz, unsigned char c);

/* Formatting (acl/hujson_format.c): canonical layout like hujson.Format:
 * tabs, one member per line for expanded composites, aligned values,
 * comments kept.  Idempotent. */
void hujson_format(struct hujson_value *v);

/*
 * Structural edits that move comments the way hujson's Patch does
 * (acl/hujson_edit.c).  Comments directly before a member/element and a
 * line comment on its own line after it belong to it; blank lines divide
 * ownership.  comp is an object or array; index i counts members or
 * elements.
 *
 * hujson_insert: insert v (moved in; *v is zeroed) at i.  Comments in
 * v->before are placed on their own lines before it.  For objects, name is
 * the member name (moved in too; for arrays it is just released).  Line comments on the line of the
 * previous item stay with that item.  Whitespace follows the neighbours:
 * in an expanded composite the new item gets its own line, indented like
 * its siblings or with depth tabs when it has none (an empty composite is
 * expanded then); in an inline one it is separated by a space.  Inserted
 * at the end, it inherits the trailing comma of the old last item.
 */
void hujson_insert(struct hujson_value *comp, size_t i, struct hujson_value *name,
                   struct hujson_value *v, int depth);
/* Remove member/element i with the comments that belong to it. */
void hujson_remove(struct hujson_value *comp, size_t i);
/* Replace the value of member/element i by v (moved in), keeping the
 * surrounding extras of the slot. */
void hujson_replace(struct hujson_value *comp, size_t i, struct hujson_value *v);
/* The comments of slot i's leading extra that belong to it (as text). */
void hujson_leading_comments(struct hujson_value *comp, size_t i, const char **p_r, size_t *n_r);

#endif
