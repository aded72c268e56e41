/*
 * mailbox/delivery/hdrfix.c -- insert missing Date:/Message-ID: into a
 * streamed header (see hdrfix.h).
 *
 * A byte-driven state machine over line starts.  Inside a line the bytes
 * pass through in spans (memchr for the LF); only at the start of a line
 * are bytes held in h->hold until the line shows what it is: a folded
 * continuation (SP/HTAB), the empty line, a field ("name" [WSP] ":"), or
 * something else, which ends the header.  Once the header has ended,
 * everything passes through untouched.
 */
#include "mailbox/delivery/hdrfix.h"

#include "shared/log.h"

#include <string.h>
#include <strings.h>

enum {
	H_LINE_START = 0,
	H_CR,       /* a CR at a line start: an empty line if LF follows */
	H_NAME,     /* collecting a field name */
	H_NAME_WSP, /* white space after the name, before the colon */
	H_IN_LINE,  /* inside a field line: pass through to the LF */
	H_DONE,     /* the header ended */
};

static void emit(struct hdrfix *h, const void *p, size_t n)
{
	if (h->failed || n == 0)
		return;
	if (h->out(h->ctx, p, n) < 0) {
		h->failed = true;
		return;
	}
	h->mid_line = ((const uint8_t *)p)[n - 1] != '\n';
}

static void emit_str(struct hdrfix *h, const char *s)
{
	emit(h, s, strlen(s));
}

static void flush_hold(struct hdrfix *h)
{
	emit(h, h->hold, h->nhold);
	h->nhold = 0;
	h->name_len = 0;
}

/* RFC 5322 3.6.8: ftext is printable US-ASCII except ":". */
static bool is_ftext(uint8_t c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static void insert_fields(struct hdrfix *h)
{
	if (!h->have_date) {
		emit_str(h, "Date: ");
		emit_str(h, h->date);
		emit_str(h, "\r\n");
		h->have_date = true;
	}
	if (!h->have_msgid) {
		emit_str(h, "Message-ID: ");
		emit_str(h, h->msgid);
		emit_str(h, "\r\n");
		h->have_msgid = true;
	}
}

/* The held line start is a field name followed by its colon. */
static void field_seen(struct hdrfix *h)
{
	if (h->name_len == 4 && strncasecmp((const char *)h->hold, "date", 4) == 0)
		h->have_date = true;
	else if (h->name_len == 10 && strncasecmp((const char *)h->hold, "message-id", 10) == 0)
		h->have_msgid = true;
	flush_hold(h);
	h->state = H_IN_LINE;
}

/* The held line is not a header field: the body starts here, without the
 * empty line RFC 5322 2.1 puts before it, so add one after the fields. */
static void body_starts(struct hdrfix *h)
{
	insert_fields(h);
	emit_str(h, "\r\n");
	flush_hold(h);
	h->state = H_DONE;
}

static void hold(struct hdrfix *h, uint8_t c)
{
	ASSERT(h->nhold < HDRFIX_HOLD);
	h->hold[h->nhold++] = c;
}

void hdrfix_init(struct hdrfix *h, const char *date, const char *msgid, hdrfix_out_fn *out,
                 void *ctx)
{
	memset(h, 0, sizeof(*h));
	h->out = out;
	h->ctx = ctx;
	h->date = date;
	h->msgid = msgid;
	h->state = H_LINE_START;
}

int hdrfix_feed(struct hdrfix *h, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && !h->failed) {
		uint8_t c = p[i];

		switch (h->state) {
		case H_DONE:
			emit(h, p + i, n - i);
			i = n;
			break;
		case H_IN_LINE: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			size_t k = nl != NULL ? (size_t)(nl - (p + i)) + 1 : n - i;

			emit(h, p + i, k);
			i += k;
			if (nl != NULL)
				h->state = H_LINE_START;
			break;
		}
		case H_LINE_START:
			if (is_wsp(c)) {
				/* RFC 5322 2.2.3: a folded continuation */
				h->state = H_IN_LINE;
			} else if (c == '\r') {
				hold(h, c);
				i++;
				h->state = H_CR;
			} else if (c == '\n') {
				/* a bare-LF empty line ends the header too */
				insert_fields(h);
				h->state = H_DONE;
			} else if (is_ftext(c)) {
				hold(h, c);
				h->name_len = 1;
				i++;
				h->state = H_NAME;
			} else {
				body_starts(h);
			}
			break;
		case H_CR:
			if (c == '\n') {
				/* the empty line: the fields go right before it */
				insert_fields(h);
				flush_hold(h);
				h->state = H_DONE;
			} else {
				body_starts(h);
			}
			break;
		case H_NAME:
			if (c == ':') {
				field_seen(h);
			} else if (is_wsp(c)) {
				if (h->nhold == HDRFIX_HOLD) {
					flush_hold(h);
					h->state = H_IN_LINE;
					break;
				}
				hold(h, c);
				i++;
				h->state = H_NAME_WSP;
			} else if (is_ftext(c)) {
				if (h->nhold == HDRFIX_HOLD) {
					/* too long to be Date or Message-ID: a field */
					flush_hold(h);
					h->state = H_IN_LINE;
					break;
				}
				hold(h, c);
				h->name_len++;
				i++;
			} else {
				body_starts(h);
			}
			break;
		case H_NAME_WSP:
			if (c == ':') {
				field_seen(h);
			} else if (is_wsp(c)) {
				if (h->nhold == HDRFIX_HOLD) {
					flush_hold(h);
					h->state = H_IN_LINE;
					break;
				}
				hold(h, c);
				i++;
			} else {
				body_starts(h);
			}
			break;
		}
	}
	return h->failed ? -1 : 0;
}

int hdrfix_finish(struct hdrfix *h)
{
	switch (h->state) {
	case H_DONE:
		break;
	case H_LINE_START:
		/* all header, ending at a line end (or an empty message) */
		insert_fields(h);
		break;
	case H_CR:
		insert_fields(h);
		flush_hold(h);
		break;
	case H_NAME:
	case H_NAME_WSP:
		/* an unterminated last line that is no field */
		body_starts(h);
		break;
	case H_IN_LINE:
		if (h->mid_line)
			emit_str(h, "\r\n");
		insert_fields(h);
		break;
	}
	h->state = H_DONE;
	return h->failed ? -1 : 0;
}
