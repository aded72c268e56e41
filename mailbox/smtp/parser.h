/*
 * mailbox/smtp/parser.h -- the SMTP wire syntax, pure and incremental.
 *
 * Two parsers live here, both without I/O, logging, allocation or globals:
 *
 * 1. Command lines.  smtp_parser_line() finds one complete line in a buffer
 *    (or says NEED_MORE / TOO_LONG); smtp_parser_command() turns that line
 *    into a struct smtp_cmd: the verb, its argument and, for MAIL and RCPT,
 *    the validated path and the ESMTP parameters.  smtp_parser_next() does
 *    both.  Every status maps to exactly one reply class, so the session
 *    never has to guess why a line was refused.
 *
 * 2. Message content.  struct smtp_data decodes a DATA body (dot-stuffed,
 *    ending at CRLF.CRLF) or BDAT chunks (raw), incrementally, and hands
 *    the decoded message to a sink callback in pieces taken straight from
 *    the input buffer, so a 50 MB message never sits in memory.
 *
 * Choices where the RFCs leave room (documented once, here):
 *
 * - Command line ends: RFC 5321 2.3.8 says CRLF, but a command is accepted
 *   when it ends in a bare LF too (a CR before the LF is dropped).  This
 *   leniency is for commands only; message content never treats a bare LF
 *   as part of the end marker (see below).  A CR anywhere else in a command
 *   line is a control byte and a syntax error.
 * - Command line length: RFC 5321 4.5.3.1.4 sets 512 octets including CRLF
 *   and lets extensions raise it.  SIZE (RFC 1870), DSN (RFC 3461: ENVID,
 *   RET, NOTIFY, ORCPT of up to 500 octets), AUTH= (RFC 4954 5: +500),
 *   SMTPUTF8 addresses and AUTH initial responses (RFC 4954 4) each raise
 *   it; SMTP_LINE_MAX (4096) covers all of them with room to spare and
 *   is still small enough to hold per connection.  The caller may choose
 *   another bound.
 * - Verbs and parameter names are case-insensitive; arguments are separated
 *   by one or more SP; trailing SP/HTAB are ignored.  "MAIL FROM: <a@b>"
 *   (a space after the colon, a common client bug) is accepted; a path
 *   without angle brackets is not.
 * - Source routes ("<@a,@b:user@c>") are parsed and dropped (RFC 5321
 *   4.1.2 and appendix C).  "RCPT TO:<Postmaster>" without a domain is
 *   accepted (RFC 5321 4.1.1.3).
 * - UTF-8 (RFC 6531) is accepted in local parts, domains (U-labels) and
 *   ESMTP values when well formed, and flagged in struct smtp_path; whether
 *   it is allowed (SMTPUTF8 given on MAIL) is the session's decision.  The
 *   whole line must be valid UTF-8.
 * - The length of a path is bounded by RFC 5321 4.5.3.1.3 (256 octets with
 *   the angle brackets) and a domain by 4.5.3.1.2 (255); the 64-octet local
 *   part limit is not enforced (4.5.3.1 asks servers to be liberal).
 * - xtext values (ENVID, ORCPT, AUTH=; RFC 3461 4) accept lower-case hex
 *   after '+' as well as the upper case the RFC requires.
 */
#ifndef MAILBOX_SMTP_PARSER_H
#define MAILBOX_SMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LINE_MAX   4096 /* default command line bound, incl. CRLF */
#define SMTP_PATH_MAX   256  /* RFC 5321 4.5.3.1.3, incl. "<" and ">" */
#define SMTP_DOMAIN_MAX 255  /* RFC 5321 4.5.3.1.2 */
#define SMTP_HELO_MAX   255  /* an EHLO/HELO argument */
#define SMTP_ENVID_MAX  100  /* RFC 3461 4.4: decoded ENVID length */
#define SMTP_XTEXT_MAX  500  /* RFC 3461 4.2 / RFC 4954 5: ORCPT, AUTH= */
#define SMTP_MECH_MAX   20   /* RFC 4422 3.1: SASL mechanism name */

enum smtp_parse_status {
	SMTP_P_OK = 0,
	SMTP_P_NEED_MORE,         /* no complete line yet */
	SMTP_P_TOO_LONG,          /* the line exceeds the bound: 500 5.5.2 */
	SMTP_P_ERR_SYNTAX,        /* not a command line at all: 500 5.5.2 */
	SMTP_P_ERR_UNKNOWN,       /* a well-formed but unknown verb: 500 5.5.1 */
	SMTP_P_ERR_ARGS,          /* arguments malformed for the verb: 501 5.5.4 */
	SMTP_P_ERR_ADDRESS,       /* path syntax: 501 5.1.7 (MAIL) / 5.1.3 (RCPT) */
	SMTP_P_ERR_PARAM,         /* a known ESMTP parameter with a bad value or
	                             given twice: 501 5.5.4 */
	SMTP_P_ERR_UNKNOWN_PARAM, /* an ESMTP parameter we do not know: 555 5.5.4
	                             (RFC 5321 4.1.1.11) */
};

enum smtp_verb {
	SMTP_V_UNKNOWN = 0,
	SMTP_V_EHLO,
	SMTP_V_HELO,
	SMTP_V_MAIL,
	SMTP_V_RCPT,
	SMTP_V_DATA,
	SMTP_V_BDAT,
	SMTP_V_RSET,
	SMTP_V_NOOP,
	SMTP_V_QUIT,
	SMTP_V_VRFY,
	SMTP_V_EXPN,
	SMTP_V_HELP,
	SMTP_V_STARTTLS,
	SMTP_V_AUTH,
};

/* BODY= (RFC 6152 8BITMIME, RFC 3030 BINARYMIME) */
enum smtp_body {
	SMTP_BODY_NONE = 0, /* not given */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME,
};

/* RET= (RFC 3461 4.3) */
enum smtp_ret {
	SMTP_RET_NONE = 0,
	SMTP_RET_FULL,
	SMTP_RET_HDRS,
};

/* NOTIFY= (RFC 3461 4.1); 0 means not given */
#define SMTP_NOTIFY_NEVER   0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY   0x8

struct smtp_path {
	/* The mailbox without brackets or source route, as the client wrote
	 * it (a quoted local part stays quoted); "" for the null path <>. */
	char addr[SMTP_PATH_MAX + 1];
	size_t len;
	size_t at;       /* index of the '@' before the domain; len if none */
	bool utf8;       /* holds non-ASCII: needs SMTPUTF8 (RFC 6531) */
	bool postmaster; /* RCPT TO:<Postmaster> without a domain */
};

struct smtp_cmd {
	enum smtp_verb verb; /* set even when the status is an error */
	/* The argument text after the verb and its separating SP, trailing
	 * blanks removed; points into the caller's line (valid as long as the
	 * line is).  Empty (len 0) when there is none. */
	const uint8_t *arg;
	size_t arg_len;

	/* EHLO / HELO: the domain or address literal (printable ASCII). */
	char helo[SMTP_HELO_MAX + 1];

	/* MAIL / RCPT */
	struct smtp_path path;

	/* MAIL parameters */
	bool has_size;
	uint64_t size; /* SIZE=, saturated at UINT64_MAX */
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	bool has_envid;
	char envid[3 * SMTP_ENVID_MAX + 1]; /* xtext, as received */
	bool has_auth;
	char auth[SMTP_XTEXT_MAX + 1]; /* AUTH= xtext or "<>", as received */

	/* RCPT parameters */
	unsigned notify; /* SMTP_NOTIFY_* bits */
	bool has_orcpt;
	char orcpt[SMTP_XTEXT_MAX + 1]; /* "addr-type;xtext", as received */

	/* BDAT */
	uint64_t chunk_size;
	bool last;

	/* AUTH: the mechanism (upper-cased) and the optional initial
	 * response, pointing into the line (RFC 4954 4: "=" is an empty
	 * response; it is passed through as "="). */
	char mech[SMTP_MECH_MAX + 1];
	bool has_ir;
	const uint8_t *ir;
	size_t ir_len;
};

/*
 * Find one line at the start of p[0..len).  A line ends at the first LF;
 * a CR right before it is not part of the line.  max bounds the line with
 * its terminator.
 * Returns SMTP_P_OK with *line_len_r (without the terminator) and
 * *consumed_r (with it); SMTP_P_NEED_MORE when no LF is in p yet and len <
 * max; SMTP_P_TOO_LONG when the first max bytes hold no LF (the caller
 * then skips to the next LF with smtp_parser_skip_line()).
 */
enum smtp_parse_status smtp_parser_line(const uint8_t *p, size_t len, size_t max,
                                        size_t *line_len_r, size_t *consumed_r);

/*
 * Skip input up to and including the next LF (after TOO_LONG).  Sets
 * *consumed_r to what may be dropped: through the LF and SMTP_P_OK, or
 * everything and SMTP_P_NEED_MORE when there is no LF yet.
 */
enum smtp_parse_status smtp_parser_skip_line(const uint8_t *p, size_t len, size_t *consumed_r);

/*
 * Parse one command line (without its terminator) into *cmd, which the
 * function clears first.  cmd->arg and cmd->ir point into line.
 * Returns SMTP_P_OK or one of the SMTP_P_ERR_* statuses; on error
 * cmd->verb is still set when the verb was recognised, and *errstr_r (if
 * not NULL) names the problem in a static string.
 */
enum smtp_parse_status smtp_parser_command(const uint8_t *line, size_t len, struct smtp_cmd *cmd,
                                           const char **errstr_r);

/*
 * smtp_parser_line() then smtp_parser_command(): on any status other than
 * NEED_MORE and TOO_LONG, *consumed_r is the length of the line with its
 * terminator.
 */
enum smtp_parse_status smtp_parser_next(const uint8_t *p, size_t len, size_t max,
                                        struct smtp_cmd *cmd, size_t *consumed_r,
                                        const char **errstr_r);

/*
 * Whether s[0..n) is a Domain or an address-literal (RFC 5321 4.1.2/4.1.3,
 * ASCII only), e.g. for deciding how an EHLO name may be quoted.
 */
bool smtp_parser_is_domain(const char *s, size_t n);

/* The verb's name ("MAIL"), "?" for SMTP_V_UNKNOWN. */
const char *smtp_parser_verb_name(enum smtp_verb verb);

/* --- message content ---------------------------------------------------- */

/*
 * The sink receives the decoded message in pieces (which may point into the
 * caller's input buffer: copy what you keep).  Return 0, or -1 on failure:
 * the decoder then stops calling it but keeps consuming to the end.
 */
typedef int smtp_sink_fn(void *ctx, const uint8_t *p, size_t n);

enum smtp_data_mode {
	/*
	 * DATA (RFC 5321 4.1.1.4, 4.5.2): ends at CRLF "." CRLF, leading dots
	 * unstuffed.  Only a real CRLF "." CRLF ends the message: "LF.LF",
	 * "CRLF.LF", "LF.CRLF" and "CR.CR" never do (RFC 5321 2.3.8; the
	 * 2023 "SMTP smuggling" attacks rely on servers that accept them).
	 */
	SMTP_DATA_DOT,
	/* BDAT chunks (RFC 3030): no stuffing, no end marker; the caller
	 * feeds exactly the chunk octets and calls smtp_parser_data_finish()
	 * after the LAST chunk. */
	SMTP_DATA_RAW,
};

/*
 * Line ends in the content are normalised so that the stored message has
 * CRLF line ends only (RFC 5322 2.3; RFC 5321 2.3.8 asks for bare LF to be
 * fixed or refused): a bare LF becomes CRLF, and so does a bare CR (a CR
 * not followed by LF).  A line of just "." ended by a bare LF or CR is
 * kept as "." (it is no end marker and there is nothing to unstuff);
 * other lines starting with "." lose that dot whatever ended the line
 * before them.  BDAT content gets the same line-end normalisation (we do
 * not offer BINARYMIME, so content is always text lines).
 */
struct smtp_data {
	smtp_sink_fn *sink;
	void *ctx;
	enum smtp_data_mode mode;
	uint64_t max;     /* bound on decoded octets; 0: none */
	uint64_t size;    /* decoded octets so far (counted past max too) */
	int state;        /* private */
	bool oversize;    /* size went past max: nothing more reached the sink */
	bool sink_failed; /* the sink returned -1 */
	bool bare_eol;    /* a bare LF or CR was normalised */
	bool done;        /* DOT: the end marker was seen */
};

enum smtp_data_status {
	SMTP_D_NEED_MORE = 0, /* all input consumed, message not ended */
	SMTP_D_DONE,          /* DOT mode: end marker consumed */
};

void smtp_parser_data_init(struct smtp_data *d, enum smtp_data_mode mode, uint64_t max,
                           smtp_sink_fn *sink, void *ctx);

/*
 * Decode p[0..len).  *consumed_r is len on NEED_MORE; on DONE it counts the
 * bytes through the end marker, and what follows belongs to the next
 * command.  Feeding after DONE consumes nothing and returns DONE.
 */
enum smtp_data_status smtp_parser_data_feed(struct smtp_data *d, const uint8_t *p, size_t len,
                                            size_t *consumed_r);

/* RAW mode, after the last chunk: emit a CR still held back (as CRLF). */
void smtp_parser_data_finish(struct smtp_data *d);

#endif
