/*
 * mailbox/imap/parser.h -- the IMAP command parser: bytes in, commands out.
 *
 * Pure and incremental (house style): no sockets, no logging.  The session
 * feeds whatever it read; the parser consumes bytes one state at a time
 * and keeps everything it has recognised, so a command split over many
 * reads is never re-parsed (cost is linear in the input).  A command is
 * "tag SP name [SP args] CRLF" (RFC 3501 / RFC 9051 section 9) where the
 * arguments form a small tree: atoms (including sequence sets, flags,
 * dates), quoted strings, literals ({n}, {n+} LITERAL+ RFC 7888, ~{n}
 * literal8 RFC 3516), NIL, parenthesised lists, and fetch attributes with a
 * section: BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100>.
 *
 * Literals: after "{n}\r\n" the parser returns IMAP_PARSE_CONTINUATION with
 * the size before any literal byte is expected, so the session can refuse
 * an oversized literal instead of sending "+ Ready".  Literals at least
 * stream_literal_min long are not buffered: their bytes come back as
 * IMAP_PARSE_LITERAL_CHUNK pieces (APPEND of a large message streams to
 * the blob store); the argument then records only the size.
 *
 * Errors: IMAP_PARSE_BAD carries a reason and, when it was read, the tag;
 * the parser then skips the rest of that line (and a non-synchronising
 * literal announced at its end) and carries on with the next command.
 * Literal bytes already handed out for a command that then turns out BAD
 * belong to no command: the session discards them.
 * IMAP_PARSE_FATAL means the stream cannot be resynchronised (a
 * non-synchronising literal over the bound): answer BYE and close.
 */
#ifndef MAILBOX_IMAP_PARSER_H
#define MAILBOX_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_parse_status {
	IMAP_PARSE_NEED_MORE,     /* all input consumed, command incomplete */
	IMAP_PARSE_COMMAND,       /* imap_parser_command() is ready */
	IMAP_PARSE_CONTINUATION,  /* sync literal announced: send "+ ..." */
	IMAP_PARSE_LITERAL_CHUNK, /* imap_parser_chunk() has literal bytes */
	IMAP_PARSE_BAD,           /* bad command: reply BAD, keep going */
	IMAP_PARSE_FATAL,         /* reply BYE and close the connection */
};

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_NIL,              /* the atom NIL; str still holds it */
	IMAP_ARG_STRING,           /* quoted string */
	IMAP_ARG_LITERAL,          /* literal held in memory */
	IMAP_ARG_LITERAL_STREAMED, /* literal handed out in chunks */
	IMAP_ARG_LIST,
	IMAP_ARG_SECTION, /* BODY[...], BODY.PEEK[...], BINARY[...] ... */
};

struct imap_arg {
	enum imap_arg_type type;
	/* ATOM, NIL, STRING, LITERAL: the value, NUL-terminated (a literal may
	 * hold NULs: use len).  SECTION: the name before '[' ("BODY.PEEK"). */
	char *str;
	size_t len;
	/* LITERAL*: announced size, non-synchronising {n+}, literal8 ~{n} */
	uint64_t literal_size;
	bool nonsync;
	bool binary;
	bool has_nul;   /* a NUL octet in a literal */
	bool eight_bit; /* octets >= 0x80 in a string (UTF8=ACCEPT) */
	/* LIST: the elements.  SECTION: the header-list, if one was given. */
	struct imap_arg *list;
	size_t nlist;
	/* SECTION */
	char *section; /* text inside [] before the header-list: "1.2.HEADER.FIELDS" */
	bool has_list;
	bool has_partial;
	bool partial_has_count;
	uint64_t partial_offset, partial_count;
	char *raw; /* SECTION: the token as sent, without the header-list */
};

struct imap_command {
	char *tag;
	char *name; /* upper-cased */
	struct imap_arg *args;
	size_t nargs;
};

struct imap_parser_limits {
	size_t max_line;             /* octets of one line, literals excluded (64 KiB) */
	uint64_t max_literal;        /* octets of one literal (64 MiB) */
	uint64_t max_command;        /* octets of a command, literals included (80 MiB) */
	uint64_t stream_literal_min; /* stream literals this long; 0 = never */
	unsigned max_depth;          /* list nesting (32) */
	size_t max_args;             /* arguments in one command, all levels (100000) */
};

struct imap_parser;

void imap_parser_limits_default(struct imap_parser_limits *lim);
/* A parser for one connection; lim NULL means the defaults. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *lim);
/* Accepts NULL and *pp == NULL; sets *pp to NULL. */
void imap_parser_free(struct imap_parser **pp);

/*
 * Consume input.  *consumed_r octets of data were used (all of them for
 * NEED_MORE); call again with the rest.  Whatever the previous call
 * returned (command, chunk, error text) stays valid until the next call.
 */
enum imap_parse_status imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
                                        size_t *consumed_r);
/* After IMAP_PARSE_COMMAND: the command, owned by the parser. */
const struct imap_command *imap_parser_command(const struct imap_parser *p);
/* After IMAP_PARSE_CONTINUATION: the announced literal size. */
uint64_t imap_parser_literal_size(const struct imap_parser *p);
/* After IMAP_PARSE_LITERAL_CHUNK: the bytes (pointing into the input);
 * *last_r is true for the chunk that completes the literal. */
void imap_parser_chunk(const struct imap_parser *p, const uint8_t **data_r, size_t *len_r,
                       bool *last_r);
/* After BAD/FATAL: the reason (static text) and the tag (NULL if unread). */
const char *imap_parser_error(const struct imap_parser *p);
const char *imap_parser_tag(const struct imap_parser *p);

/*
 * Raw line mode for AUTHENTICATE responses and IDLE's DONE: collect one
 * line (bounded by max_line) and return IMAP_PARSE_COMMAND with the line,
 * CRLF stripped, in *line_r (valid until the next call); NEED_MORE while
 * incomplete; BAD if too long (the rest of the line is skipped).  Only
 * call between commands.
 */
enum imap_parse_status imap_parser_line(struct imap_parser *p, const void *data, size_t len,
                                        size_t *consumed_r, const char **line_r);

/* Case-insensitive comparison of an ATOM argument with s. */
bool imap_arg_atom_is(const struct imap_arg *a, const char *s);
/* True for ATOM, STRING and LITERAL (an RFC 3501 astring). */
bool imap_arg_is_astring(const struct imap_arg *a);

#endif
