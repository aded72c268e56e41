/*
 * mailbox/imap/fetch.c -- FETCH and UID FETCH (RFC 3501 6.4.5, RFC 7162
 * CHANGEDSINCE/VANISHED/MODSEQ).
 *
 * A fetch is a resumable job.  The attribute list is parsed once into
 * items; the message set becomes UIDs (msgmap.c); then, batch by batch,
 * the store returns the metadata computed at delivery (flags, dates,
 * sizes, ENVELOPE, BODYSTRUCTURE, the part table, optionally the raw
 * header), so metadata fetches never touch the blob store.  Only
 * BODY[...] items that need message octets read the blob, in chunks of
 * IMAP_READ_CHUNK, straight into the output: a 50 MB message never sits
 * in memory, and production pauses whenever the output passes
 * IMAP_OUT_HIGH (imap_session_writable() resumes it).
 *
 * Sections map onto the part table (mailbox/mime/parser.h): BODY[1.2]
 * is [body_start, body_end) of part "1.2", BODY[1.MIME] its header,
 * BODY[HEADER]/[TEXT] the message's header and body, and HEADER.FIELDS
 * filters the header (headers.c), read whole since it is bounded by the
 * MIME parser's header limit.  A section that does not exist is NIL.
 *
 * Non-PEEK body items set \Seen (RFC 3501 6.4.5) with one store request
 * per batch before anything of the batch is written, so the FLAGS in the
 * responses are the new ones.
 *
 * A blob read that fails once a response is under way cannot be undone
 * (the literal's length was promised): the session says BYE.
 */
#include "mailbox/imap/date.h"
#include "mailbox/imap/headers.h"
#include "mailbox/imap/section.h"
#include "mailbox/imap/seqset.h"
#include "mailbox/imap/session_private.h"
#include "mailbox/imap/string.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The largest header read whole for HEADER.FIELDS. */
#define FETCH_HEADER_MAX (1024 * 1024)

enum fitem_kind {
	FI_UID = 0,
	FI_FLAGS,
	FI_INTERNALDATE,
	FI_SIZE,
	FI_ENVELOPE,
	FI_BODY,
	FI_BODYSTRUCTURE,
	FI_MODSEQ,
	FI_SECTION, /* BODY[...], RFC822, RFC822.HEADER, RFC822.TEXT */
};

struct fitem {
	enum fitem_kind kind;
	struct imap_section sec;
	bool peek;
	bool partial, has_count;
	uint64_t off, count;
	char **fields;
	size_t nfields;
	char *name; /* response name: "BODY[1.2]<0>", "RFC822.HEADER" */
};

/* One message's metadata, our copy. */
struct fmeta {
	uint32_t uid;
	uint64_t modseq;
	char **flags;
	size_t nflags;
	int64_t internaldate;
	int tz;
	uint64_t size;
	char *envelope, *bodystructure, *body, *header, *blob;
	size_t header_len;
	struct mime_part *parts;
	size_t nparts;
	bool seen_changed;
};

enum fstage {
	FS_START = 0, /* the item is next */
	FS_STREAM,    /* literal promised, octets coming from the blob */
	FS_HEADER,    /* reading a header for HEADER.FIELDS */
};

struct imap_fetch_job {
	struct fitem *items;
	size_t nitems;
	unsigned want;
	bool set_seen;    /* some item sets \Seen and the mailbox is writable */
	bool want_flags;  /* FLAGS requested */
	bool want_modseq; /* MODSEQ requested (or implied) */
	bool changedsince_on;
	uint64_t changedsince;
	bool vanished;
	char *set_text; /* for VANISHED (EARLIER): the UID set as sent */
	uint32_t *uids;
	size_t nuids, pos;
	size_t batch;   /* UIDs asked for in the current batch */
	size_t missing; /* requested but not returned (expunged meanwhile) */
	/* the current batch */
	struct fmeta *rows;
	size_t nrows, row;
	bool row_open;
	size_t item;
	size_t nwritten; /* items written for this row (separators) */
	enum fstage stage;
	uint64_t lit_off, lit_left; /* FS_STREAM: blob range still to send */
	struct buf hdr;             /* FS_HEADER: the header being read */
	uint64_t hdr_off, hdr_left;
	const struct fitem *hdr_item;
};

static void fitem_clear(struct fitem *it)
{
	imap_flags_free(it->fields, it->nfields);
	free(it->name);
}

static void rows_free(struct imap_fetch_job *j)
{
	for (size_t i = 0; i < j->nrows; i++) {
		struct fmeta *m = &j->rows[i];

		imap_flags_free(m->flags, m->nflags);
		free(m->envelope);
		free(m->bodystructure);
		free(m->body);
		free(m->header);
		free(m->blob);
		for (size_t k = 0; k < m->nparts; k++)
			free(m->parts[k].section);
		free(m->parts);
	}
	free(j->rows);
	j->rows = NULL;
	j->nrows = j->row = 0;
}

void imap_fetch_job_free(struct imap_session *s)
{
	struct imap_fetch_job *j = s->fetch;

	if (j == NULL)
		return;
	for (size_t i = 0; i < j->nitems; i++)
		fitem_clear(&j->items[i]);
	free(j->items);
	free(j->uids);
	free(j->set_text);
	rows_free(j);
	buf_free(&j->hdr);
	free(j);
	s->fetch = NULL;
}

/* --- parsing ----------------------------------------------------------------------- */

static struct fitem *item_add(struct imap_fetch_job *j, enum fitem_kind kind)
{
	struct fitem *it;

	j->items = xreallocarray(j->items, j->nitems + 1, sizeof(*j->items));
	it = &j->items[j->nitems++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return it;
}

static bool has_kind(const struct imap_fetch_job *j, enum fitem_kind kind)
{
	for (size_t i = 0; i < j->nitems; i++)
		if (j->items[i].kind == kind)
			return true;
	return false;
}

static void item_simple(struct imap_fetch_job *j, enum fitem_kind kind)
{
	if (!has_kind(j, kind))
		item_add(j, kind);
}

static void upper(char *p)
{
	for (; *p; p++)
		*p = (char)toupper((unsigned char)*p);
}

/* BODY[section]<partial>, BODY.PEEK[...] */
static const char *section_item(struct imap_fetch_job *j, const struct imap_arg *a)
{
	struct fitem *it;
	const char *why;
	struct buf name;
	char *spec;

	if (strcasecmp(a->str, "BODY") != 0 && strcasecmp(a->str, "BODY.PEEK") != 0)
		return "BINARY is not supported";
	it = item_add(j, FI_SECTION);
	it->peek = strcasecmp(a->str, "BODY.PEEK") == 0;
	if (imap_section_parse(a->section, a->has_list, &it->sec, &why) < 0)
		return why;
	if (a->has_list) {
		it->fields = xcalloc(a->nlist, sizeof(*it->fields));
		for (size_t i = 0; i < a->nlist; i++) {
			const struct imap_arg *f = &a->list[i];

			if (!imap_arg_is_astring(f) || f->len == 0 || f->has_nul ||
			    strpbrk(f->str, ": \t\r\n") != NULL)
				return "Invalid header field name";
			it->fields[it->nfields++] = xstrdup(f->str);
		}
	}
	it->partial = a->has_partial;
	it->has_count = a->partial_has_count;
	it->off = a->partial_offset;
	it->count = a->partial_count;
	/* the response names the section as requested, BODY not BODY.PEEK,
	 * and a partial only by its origin (RFC 3501 7.4.2) */
	buf_init(&name, 0);
	spec = xstrdup(a->section);
	upper(spec);
	buf_printf(&name, "BODY[%s", spec);
	free(spec);
	if (it->nfields > 0) {
		buf_puts(&name, " (");
		for (size_t i = 0; i < it->nfields; i++) {
			char *f = xstrdup(it->fields[i]);

			upper(f);
			if (i > 0)
				buf_puts(&name, " ");
			imap_string_write(&name, f, strlen(f), IMAP_STR_ATOM_OK);
			free(f);
		}
		buf_puts(&name, ")");
	}
	buf_puts(&name, "]");
	if (it->partial)
		buf_printf(&name, "<%" PRIu64 ">", it->off);
	buf_append(&name, "", 1);
	it->name = xstrdup((const char *)buf_ptr(&name));
	buf_free(&name);
	return NULL;
}

static const char *rfc822_item(struct imap_fetch_job *j, enum imap_section_kind kind, bool peek,
                               const char *name)
{
	struct fitem *it = item_add(j, FI_SECTION);

	it->sec.kind = kind;
	it->peek = peek;
	it->name = xstrdup(name);
	return NULL;
}

static const char *atom_item(struct imap_fetch_job *j, const struct imap_arg *a, bool top)
{
	const char *n = a->str;

	if (top && strcasecmp(n, "ALL") == 0) {
		/* RFC 3501 6.4.5 macros */
		item_simple(j, FI_FLAGS);
		item_simple(j, FI_INTERNALDATE);
		item_simple(j, FI_SIZE);
		item_simple(j, FI_ENVELOPE);
	} else if (top && strcasecmp(n, "FAST") == 0) {
		item_simple(j, FI_FLAGS);
		item_simple(j, FI_INTERNALDATE);
		item_simple(j, FI_SIZE);
	} else if (top && strcasecmp(n, "FULL") == 0) {
		item_simple(j, FI_FLAGS);
		item_simple(j, FI_INTERNALDATE);
		item_simple(j, FI_SIZE);
		item_simple(j, FI_ENVELOPE);
		item_simple(j, FI_BODY);
	} else if (strcasecmp(n, "UID") == 0) {
		item_simple(j, FI_UID);
	} else if (strcasecmp(n, "FLAGS") == 0) {
		item_simple(j, FI_FLAGS);
	} else if (strcasecmp(n, "INTERNALDATE") == 0) {
		item_simple(j, FI_INTERNALDATE);
	} else if (strcasecmp(n, "RFC822.SIZE") == 0) {
		item_simple(j, FI_SIZE);
	} else if (strcasecmp(n, "ENVELOPE") == 0) {
		item_simple(j, FI_ENVELOPE);
	} else if (strcasecmp(n, "BODY") == 0) {
		item_simple(j, FI_BODY);
	} else if (strcasecmp(n, "BODYSTRUCTURE") == 0) {
		item_simple(j, FI_BODYSTRUCTURE);
	} else if (strcasecmp(n, "MODSEQ") == 0) {
		item_simple(j, FI_MODSEQ);
	} else if (strcasecmp(n, "RFC822") == 0) {
		return rfc822_item(j, IMAP_SECTION_ALL, false, "RFC822");
	} else if (strcasecmp(n, "RFC822.HEADER") == 0) {
		return rfc822_item(j, IMAP_SECTION_HEADER, true, "RFC822.HEADER");
	} else if (strcasecmp(n, "RFC822.TEXT") == 0) {
		return rfc822_item(j, IMAP_SECTION_TEXT, false, "RFC822.TEXT");
	} else if (strncasecmp(n, "BINARY", 6) == 0) {
		return "BINARY is not supported";
	} else {
		return "Invalid fetch attribute";
	}
	return NULL;
}

static const char *one_item(struct imap_fetch_job *j, const struct imap_arg *a, bool top)
{
	if (a->type == IMAP_ARG_SECTION)
		return section_item(j, a);
	if (a->type == IMAP_ARG_ATOM)
		return atom_item(j, a, top);
	return "Invalid fetch attribute";
}

static const char *parse_items(struct imap_fetch_job *j, const struct imap_arg *a)
{
	const char *why;

	if (a->type != IMAP_ARG_LIST)
		return one_item(j, a, true);
	if (a->nlist == 0)
		return "Empty fetch attribute list";
	for (size_t i = 0; i < a->nlist; i++)
		if ((why = one_item(j, &a->list[i], false)) != NULL)
			return why;
	return NULL;
}

/* (CHANGEDSINCE n [VANISHED]) (RFC 7162 3.1.4, 3.2.6) */
static const char *parse_modifiers(struct imap_session *s, struct imap_fetch_job *j,
                                   const struct imap_arg *m)
{
	if (m->type != IMAP_ARG_LIST)
		return "Invalid FETCH modifiers";
	for (size_t i = 0; i < m->nlist; i++) {
		const struct imap_arg *x = &m->list[i];

		if (imap_arg_atom_is(x, "CHANGEDSINCE") && i + 1 < m->nlist &&
		    m->list[i + 1].type == IMAP_ARG_ATOM) {
			char *end;
			const char *v = m->list[++i].str;

			if (v[0] < '0' || v[0] > '9')
				return "Invalid CHANGEDSINCE";
			j->changedsince = strtoull(v, &end, 10);
			if (*end != '\0')
				return "Invalid CHANGEDSINCE";
			j->changedsince_on = true;
		} else if (imap_arg_atom_is(x, "VANISHED")) {
			j->vanished = true;
		} else {
			return "Unknown FETCH modifier";
		}
	}
	/* RFC 7162 3.2.6: VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC */
	if (j->vanished && (!s->cmd_uid || !j->changedsince_on || !(s->enabled & IMAP_EN_QRESYNC)))
		return "VANISHED needs UID FETCH with CHANGEDSINCE after ENABLE QRESYNC";
	return NULL;
}

/* --- writing ------------------------------------------------------------------------ */

static void literal(struct imap_session *s, const void *p, size_t n)
{
	imap_printf(s, "{%zu}\r\n", n);
	buf_append(&s->out, p, n);
}

static const struct mime_part *find_part(const struct fmeta *m, const char *section)
{
	for (size_t i = 0; i < m->nparts; i++)
		if (strcmp(m->parts[i].section, section) == 0)
			return &m->parts[i];
	return NULL;
}

/*
 * The octets of a section: [*start_r, *end_r) of the blob.  false: the
 * section does not exist (NIL).  *header_r: this is the top-level header
 * (which the row may carry).
 */
static bool section_range(const struct fmeta *m, const struct imap_section *sec, uint64_t *start_r,
                          uint64_t *end_r, bool *header_r)
{
	char ps[12 * IMAP_SECTION_MAX_PARTS];
	const struct mime_part *p;
	enum imap_section_kind kind = sec->kind;

	*header_r = false;
	imap_section_part_string(sec, ps, sizeof(ps));
	if (kind == IMAP_SECTION_FIELDS || kind == IMAP_SECTION_FIELDS_NOT)
		kind = IMAP_SECTION_HEADER;
	p = find_part(m, ps);
	if (ps[0] == '\0') {
		/* the message itself: the root entry is a message whose
		 * header is [0, msg_body_start) (mailbox/mime/parser.h) */
		uint64_t body_start;

		if (kind == IMAP_SECTION_ALL) {
			*start_r = 0;
			*end_r = m->size;
			return true;
		}
		if (p != NULL)
			body_start = p->msg_body_start;
		else if (m->header != NULL)
			body_start = m->header_len;
		else
			return false;
		if (body_start > m->size)
			body_start = m->size;
		*header_r = kind == IMAP_SECTION_HEADER;
		*start_r = kind == IMAP_SECTION_HEADER ? 0 : body_start;
		*end_r = kind == IMAP_SECTION_HEADER ? body_start : m->size;
		return kind == IMAP_SECTION_HEADER || kind == IMAP_SECTION_TEXT;
	}
	if (p == NULL)
		return false;
	switch (kind) {
	case IMAP_SECTION_ALL:
		*start_r = p->body_start;
		*end_r = p->body_end;
		break;
	case IMAP_SECTION_MIME:
		*start_r = p->hdr_start;
		*end_r = p->body_start;
		break;
	case IMAP_SECTION_HEADER:
		if (!p->is_message)
			return false;
		*start_r = p->body_start;
		*end_r = p->msg_body_start;
		break;
	case IMAP_SECTION_TEXT:
		if (!p->is_message)
			return false;
		*start_r = p->msg_body_start;
		*end_r = p->body_end;
		break;
	default:
		return false;
	}
	if (*end_r > m->size)
		*end_r = m->size;
	if (*start_r > *end_r)
		*start_r = *end_r;
	return true;
}

/* Apply <off.count> to [start, end). */
static void apply_partial(const struct fitem *it, uint64_t *start, uint64_t *end)
{
	uint64_t len = *end - *start, off;

	if (!it->partial)
		return;
	off = it->off < len ? it->off : len;
	*start += off;
	len -= off;
	if (it->has_count && it->count < len)
		len = it->count;
	*end = *start + len;
}

static void fetch_step(struct imap_session *s);

static void read_request(struct imap_session *s, const struct fmeta *m, uint64_t off, uint64_t len)
{
	imap_op_begin(s, IMAP_OP_READ);
	s->ops->read(s->ctx, m->uid, m->blob, off, len);
}

/*
 * Write item it of row m.  Returns false when it issued a read (the job
 * goes on in read_done), true when the item is complete.
 */
static bool write_section(struct imap_session *s, struct fmeta *m, const struct fitem *it)
{
	struct imap_fetch_job *j = s->fetch;
	uint64_t start, end;
	bool header;

	imap_puts(s, it->name);
	imap_puts(s, " ");
	if (!section_range(m, &it->sec, &start, &end, &header)) {
		imap_puts(s, "NIL");
		return true;
	}
	if (it->sec.kind == IMAP_SECTION_FIELDS || it->sec.kind == IMAP_SECTION_FIELDS_NOT) {
		if (header && m->header != NULL) {
			struct buf f;

			buf_init(&f, 0);
			imap_headers_filter(m->header, m->header_len,
			                    (const char *const *)it->fields, it->nfields,
			                    it->sec.kind == IMAP_SECTION_FIELDS_NOT, &f);
			start = 0;
			end = buf_len(&f);
			apply_partial(it, &start, &end);
			literal(s, buf_ptr(&f) + start, (size_t)(end - start));
			buf_free(&f);
			return true;
		}
		if (end - start > FETCH_HEADER_MAX)
			end = start + FETCH_HEADER_MAX;
		buf_reset(&j->hdr);
		j->hdr_off = start;
		j->hdr_left = end - start;
		j->hdr_item = it;
		if (j->hdr_left == 0) {
			imap_headers_filter("", 0, (const char *const *)it->fields, it->nfields,
			                    it->sec.kind == IMAP_SECTION_FIELDS_NOT, &j->hdr);
			start = 0;
			end = buf_len(&j->hdr);
			apply_partial(it, &start, &end);
			literal(s, buf_ptr(&j->hdr) + start, (size_t)(end - start));
			return true;
		}
		j->stage = FS_HEADER;
		read_request(s, m, j->hdr_off,
		             j->hdr_left < IMAP_READ_CHUNK ? j->hdr_left : IMAP_READ_CHUNK);
		return false;
	}
	apply_partial(it, &start, &end);
	if (header && m->header != NULL && end <= m->header_len) {
		literal(s, m->header + start, (size_t)(end - start));
		return true;
	}
	imap_printf(s, "{%" PRIu64 "}\r\n", end - start);
	if (end == start)
		return true;
	j->stage = FS_STREAM;
	j->lit_off = start;
	j->lit_left = end - start;
	read_request(s, m, start, j->lit_left < IMAP_READ_CHUNK ? j->lit_left : IMAP_READ_CHUNK);
	return false;
}

static const char *fallback_bodystructure = "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)";

static bool write_item(struct imap_session *s, struct fmeta *m, const struct fitem *it)
{
	struct buf b;

	switch (it->kind) {
	case FI_UID:
		imap_printf(s, "UID %" PRIu32, m->uid);
		break;
	case FI_FLAGS:
		buf_init(&b, 0);
		imap_write_flags(&b, (const char *const *)m->flags, m->nflags);
		imap_printf(s, "FLAGS %.*s", (int)buf_len(&b), (const char *)buf_ptr(&b));
		buf_free(&b);
		/* the client knows these flags now: no repeat at the sync */
		imap_sync_reported(s, m->uid, m->modseq);
		break;
	case FI_INTERNALDATE:
		imap_puts(s, "INTERNALDATE ");
		imap_datetime_write(&s->out, m->internaldate, m->tz);
		break;
	case FI_SIZE:
		imap_printf(s, "RFC822.SIZE %" PRIu64, m->size);
		break;
	case FI_ENVELOPE:
		imap_puts(s, "ENVELOPE ");
		imap_puts(s, m->envelope != NULL ? m->envelope
		                                 : "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
		break;
	case FI_BODY:
		imap_puts(s, "BODY ");
		imap_puts(s, m->body != NULL ? m->body : fallback_bodystructure);
		break;
	case FI_BODYSTRUCTURE:
		imap_puts(s, "BODYSTRUCTURE ");
		imap_puts(s, m->bodystructure != NULL ? m->bodystructure : fallback_bodystructure);
		break;
	case FI_MODSEQ:
		imap_printf(s, "MODSEQ (%" PRIu64 ")", m->modseq);
		break;
	case FI_SECTION:
		return write_section(s, m, it);
	}
	return true;
}

static void fetch_finish(struct imap_session *s)
{
	struct imap_fetch_job *j = s->fetch;
	bool missing = j->missing > 0 && !s->cmd_uid;

	imap_fetch_job_free(s);
	if (missing) {
		/* RFC 5530 EXPUNGEISSUED: some asked-for messages are gone;
		 * the EXPUNGEs follow at the next command that allows them */
		s->sel.dirty = true;
		imap_cmd_finish(s, "OK", "[EXPUNGEISSUED]", "Some messages were expunged");
		return;
	}
	imap_cmd_finish(s, "OK", NULL, "Fetch completed");
}

static void copy_rows(struct imap_fetch_job *j, const struct imap_msg_meta *rows, size_t n)
{
	j->rows = xcalloc(n ? n : 1, sizeof(*j->rows));
	j->nrows = n;
	j->row = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imap_msg_meta *r = &rows[i];
		struct fmeta *m = &j->rows[i];

		m->uid = r->uid;
		m->modseq = r->modseq;
		m->flags = xcalloc(r->nflags ? r->nflags : 1, sizeof(*m->flags));
		for (size_t k = 0; k < r->nflags; k++)
			m->flags[k] = xstrdup(r->flags[k]);
		m->nflags = r->nflags;
		m->internaldate = r->internaldate;
		m->tz = r->internaldate_tz;
		m->size = r->size;
		m->envelope = r->envelope ? xstrdup(r->envelope) : NULL;
		m->bodystructure = r->bodystructure ? xstrdup(r->bodystructure) : NULL;
		m->body = r->body ? xstrdup(r->body) : NULL;
		m->blob = r->blob ? xstrdup(r->blob) : NULL;
		if (r->header != NULL) {
			m->header = xmemdup(r->header, r->header_len + 1);
			m->header[r->header_len] = '\0';
			m->header_len = r->header_len;
		}
		if (r->nparts > 0) {
			m->parts = xcalloc(r->nparts, sizeof(*m->parts));
			for (size_t k = 0; k < r->nparts; k++) {
				m->parts[k] = r->parts[k];
				m->parts[k].section =
				        xstrdup(r->parts[k].section ? r->parts[k].section : "");
			}
			m->nparts = r->nparts;
		}
	}
}

static void seen_done(struct imap_session *s, enum imap_store_status st,
                      const struct imap_flag_update *v, size_t n)
{
	struct imap_fetch_job *j = s->fetch;

	/* the new flags go out with this FETCH, but only for the rows of this
	 * batch: a sync follows unless nothing changed */
	imap_sync_own_write(s, false);
	/* a failure to set \Seen does not fail the FETCH */
	if (st == IMAP_STORE_OK) {
		for (size_t i = 0; i < n; i++) {
			for (size_t r = 0; r < j->nrows; r++) {
				struct fmeta *m = &j->rows[r];

				if (m->uid != v[i].uid || v[i].failed)
					continue;
				imap_flags_free(m->flags, m->nflags);
				m->flags =
				        xcalloc(v[i].nflags ? v[i].nflags : 1, sizeof(*m->flags));
				for (size_t k = 0; k < v[i].nflags; k++)
					m->flags[k] = xstrdup(v[i].flags[k]);
				m->nflags = v[i].nflags;
				m->modseq = v[i].modseq;
				m->seen_changed = true;
				imap_sync_reported(s, m->uid, m->modseq);
			}
		}
	}
	fetch_step(s);
}

static void rows_done(struct imap_session *s, enum imap_store_status st,
                      const struct imap_msg_meta *rows, size_t n)
{
	struct imap_fetch_job *j = s->fetch;
	uint32_t *unseen;
	size_t nunseen = 0;

	if (st != IMAP_STORE_OK) {
		imap_fetch_job_free(s);
		imap_cmd_store_fail(s, st, NULL);
		return;
	}
	if (n < j->batch) {
		const uint32_t *asked = j->uids + j->pos - j->batch;
		size_t k = 0;

		j->missing += j->batch - n;
		/* the store left these out (expunged meanwhile): not answered
		 * for from what was known either, until the sync removes them */
		for (size_t i = 0; i < j->batch; i++) {
			while (k < n && rows[k].uid < asked[i])
				k++;
			if (k >= n || rows[k].uid != asked[i])
				imap_msgmap_unknown(&s->sel.map, asked[i]);
		}
	}
	copy_rows(j, rows, n);
	if (!j->set_seen) {
		fetch_step(s);
		return;
	}
	unseen = xcalloc(n ? n : 1, sizeof(*unseen));
	for (size_t i = 0; i < j->nrows; i++) {
		struct fmeta *m = &j->rows[i];

		if (j->changedsince_on && m->modseq <= j->changedsince)
			continue;
		if (!imap_flags_has((const char *const *)m->flags, m->nflags, "\\Seen"))
			unseen[nunseen++] = m->uid;
	}
	if (nunseen == 0) {
		free(unseen);
		fetch_step(s);
		return;
	}
	{
		const char *seen = "\\Seen";

		s->k_store = seen_done;
		imap_op_begin(s, IMAP_OP_STORE);
		s->ops->store(s->ctx, unseen, nunseen, IMAP_FLAGS_ADD, &seen, 1, NULL);
	}
	free(unseen);
}

/*
 * A batch answered without a store request: flags and MODSEQ from what the
 * session knows (imap_msgmap_note: every FETCH, STORE and sync answer of
 * the store is remembered), any other item from ops.fetch_cached (the
 * metadata written at delivery, which never changes).  Only when every
 * message of the batch is known, the items do not set \Seen, and nothing
 * is pending: a notification of another session's change (sel.dirty) or
 * an expunge not yet announced (sel.gone) sends the batch to the store, as
 * before.  What
 * is known is at least as new as the last sync, so the answer is what the
 * store said at that point or later, like a FETCH that comes just before
 * a change of another session.
 */
static bool rows_known(struct imap_session *s, struct imap_fetch_job *j, const uint32_t *uids,
                       size_t n)
{
	const struct imap_msgmap *map = &s->sel.map;
	struct imap_msg_meta *rows;

	if (j->set_seen || s->sel.dirty || s->sel.ngone > 0 || map->flags == NULL || n == 0)
		return false;
	if (j->want != 0 && s->ops->fetch_cached == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_msgmap_seq(map, uids[i]);

		if (seq == 0 || map->flags[seq - 1] == IMAP_MSGMAP_UNKNOWN)
			return false;
	}
	/* the rest of the metadata (written once, at delivery) from what the
	 * store has at hand */
	rows = xcalloc(n, sizeof(*rows));
	if (j->want != 0 && !s->ops->fetch_cached(s->ctx, uids, n, j->want, rows)) {
		free(rows);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const struct imap_msgmap_flagset *set;

		imap_msgmap_known(map, imap_msgmap_seq(map, uids[i]), &set, &rows[i].modseq);
		rows[i].uid = uids[i];
		rows[i].flags = (const char *const *)set->names;
		rows[i].nflags = set->n;
	}
	copy_rows(j, rows, n);
	free(rows);
	return true;
}

/* Close the FETCH line of the current row. */
static void row_end(struct imap_session *s, struct fmeta *m)
{
	struct imap_fetch_job *j = s->fetch;

	if (m->seen_changed && !j->want_flags) {
		struct buf b;

		buf_init(&b, 0);
		imap_write_flags(&b, (const char *const *)m->flags, m->nflags);
		imap_printf(s, " FLAGS %.*s", (int)buf_len(&b), (const char *)buf_ptr(&b));
		buf_free(&b);
	}
	/* RFC 7162 3.2: a flag change we report carries MODSEQ */
	if (m->seen_changed && !j->want_modseq && (s->enabled & IMAP_EN_CONDSTORE))
		imap_printf(s, " MODSEQ (%" PRIu64 ")", m->modseq);
	imap_puts(s, ")\r\n");
	j->row_open = false;
	j->row++;
}

static void fetch_step(struct imap_session *s)
{
	struct imap_fetch_job *j = s->fetch;

	while (s->op == IMAP_OP_NONE && !s->closing) {
		struct fmeta *m;

		if (buf_len(&s->out) >= IMAP_OUT_HIGH)
			return; /* imap_session_writable() resumes */
		if (j->row >= j->nrows) {
			size_t n;

			rows_free(j);
			if (j->pos >= j->nuids) {
				fetch_finish(s);
				return;
			}
			n = j->nuids - j->pos < IMAP_FETCH_BATCH ? j->nuids - j->pos
			                                         : IMAP_FETCH_BATCH;
			j->pos += n;
			j->batch = n;
			if (rows_known(s, j, j->uids + j->pos - n, n))
				continue;
			s->k_fetch = rows_done;
			imap_op_begin(s, IMAP_OP_FETCH);
			s->ops->fetch(s->ctx, j->uids + j->pos - n, n, j->want);
			return;
		}
		m = &j->rows[j->row];
		if (!j->row_open) {
			uint32_t seq = imap_msgmap_seq(&s->sel.map, m->uid);

			if (seq == 0 || (j->changedsince_on && m->modseq <= j->changedsince)) {
				j->row++;
				continue;
			}
			imap_printf(s, "* %" PRIu32 " FETCH (", seq);
			j->row_open = true;
			j->item = 0;
			j->nwritten = 0;
			j->stage = FS_START;
		}
		while (j->item < j->nitems) {
			if (j->nwritten++ > 0)
				imap_puts(s, " ");
			if (!write_item(s, m, &j->items[j->item]))
				return; /* a read is outstanding */
			j->item++;
			if (buf_len(&s->out) >= IMAP_OUT_HIGH)
				return;
		}
		row_end(s, m);
	}
}

void imap_fetch_resume(struct imap_session *s)
{
	if (s->fetch != NULL && s->fetch->stage == FS_START)
		fetch_step(s);
	else if (s->fetch != NULL && s->fetch->stage == FS_STREAM && s->op == IMAP_OP_NONE) {
		struct imap_fetch_job *j = s->fetch;

		read_request(s, &j->rows[j->row], j->lit_off,
		             j->lit_left < IMAP_READ_CHUNK ? j->lit_left : IMAP_READ_CHUNK);
	}
}

void imap_session_read_done(struct imap_session *s, enum imap_store_status st, const uint8_t *data,
                            size_t len)
{
	struct imap_fetch_job *j;
	struct fmeta *m;

	if (!imap_session_complete(s, IMAP_OP_READ))
		return;
	j = s->fetch;
	ASSERT(j != NULL && j->row < j->nrows);
	m = &j->rows[j->row];
	if (j->stage == FS_HEADER) {
		uint64_t want = j->hdr_left < IMAP_READ_CHUNK ? j->hdr_left : IMAP_READ_CHUNK;

		if (st != IMAP_STORE_OK || len != want)
			goto broken;
		buf_append(&j->hdr, data, len);
		j->hdr_off += len;
		j->hdr_left -= len;
		if (j->hdr_left > 0) {
			read_request(s, m, j->hdr_off,
			             j->hdr_left < IMAP_READ_CHUNK ? j->hdr_left : IMAP_READ_CHUNK);
			return;
		}
		{
			struct buf f;
			const struct fitem *it = j->hdr_item;
			uint64_t start = 0, end;

			buf_init(&f, 0);
			imap_headers_filter((const char *)buf_ptr(&j->hdr), buf_len(&j->hdr),
			                    (const char *const *)it->fields, it->nfields,
			                    it->sec.kind == IMAP_SECTION_FIELDS_NOT, &f);
			end = buf_len(&f);
			apply_partial(it, &start, &end);
			literal(s, buf_ptr(&f) + start, (size_t)(end - start));
			buf_free(&f);
			buf_reset(&j->hdr);
		}
		j->stage = FS_START;
		j->item++;
		fetch_step(s);
		return;
	}
	ASSERT(j->stage == FS_STREAM);
	{
		uint64_t want = j->lit_left < IMAP_READ_CHUNK ? j->lit_left : IMAP_READ_CHUNK;

		if (st != IMAP_STORE_OK || len != want)
			goto broken;
	}
	buf_append(&s->out, data, len);
	j->lit_off += len;
	j->lit_left -= len;
	if (j->lit_left > 0) {
		if (buf_len(&s->out) >= IMAP_OUT_HIGH)
			return; /* imap_session_writable() asks for the rest */
		read_request(s, m, j->lit_off,
		             j->lit_left < IMAP_READ_CHUNK ? j->lit_left : IMAP_READ_CHUNK);
		return;
	}
	j->stage = FS_START;
	j->item++;
	fetch_step(s);
	return;
broken:
	/* the literal's size is on the wire: nothing can repair the stream */
	imap_fetch_job_free(s);
	imap_close(s, "Internal error reading a message");
	imap_cmd_final(s);
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void vanished_changes(struct imap_session *s, enum imap_store_status st,
                             const struct imap_change *v, size_t n, uint64_t highestmodseq,
                             uint32_t uidvalidity)
{
	struct imap_fetch_job *j = s->fetch;
	struct imap_seqset set;
	const char *why;
	uint32_t *gone;
	size_t ngone = 0;

	if (st == IMAP_STORE_OK && imap_seqset_parse(j->set_text, &set, &why) == 0) {
		uint32_t star = imap_msgmap_max_uid(&s->sel.map);

		gone = xcalloc(n ? n : 1, sizeof(*gone));
		for (size_t i = 0; i < n; i++)
			if (v[i].expunged && imap_seqset_contains(&set, v[i].uid, star))
				gone[ngone++] = v[i].uid;
		imap_seqset_free(&set);
		if (ngone > 0) {
			/* ascending, as ranges */
			qsort(gone, ngone, sizeof(*gone), u32_cmp);
			imap_puts(s, "* VANISHED (EARLIER) ");
			for (size_t i = 0; i < ngone;) {
				size_t k = i;

				while (k + 1 < ngone && gone[k + 1] == gone[k] + 1)
					k++;
				imap_printf(s, i ? ",%" PRIu32 : "%" PRIu32, gone[i]);
				if (k > i)
					imap_printf(s, ":%" PRIu32, gone[k]);
				i = k + 1;
			}
			imap_puts(s, "\r\n");
		}
		free(gone);
	}
	fetch_step(s);
}

void imap_cmd_fetch(struct imap_session *s, const struct imap_command *c, size_t argi)
{
	/* no arguments: args is NULL, and NULL + 0 is undefined */
	const struct imap_arg *a = c->nargs > argi ? c->args + argi : NULL;
	size_t n = c->nargs - argi;
	struct imap_fetch_job *j;
	const char *why;

	if ((n != 2 && n != 3) || a[0].type != IMAP_ARG_ATOM) {
		imap_cmd_bad(s, "FETCH needs a set and attributes");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	buf_init(&j->hdr, 0);
	s->fetch = j;
	if (s->cmd_uid)
		item_add(j, FI_UID); /* RFC 3501 6.4.8: UID FETCH reports UID */
	if ((why = parse_items(j, &a[1])) != NULL ||
	    (n == 3 && (why = parse_modifiers(s, j, &a[2])) != NULL)) {
		imap_fetch_job_free(s);
		imap_cmd_bad(s, why);
		return;
	}
	if (j->changedsince_on) {
		s->enabled |= IMAP_EN_CONDSTORE; /* RFC 7162 3.1 */
		item_simple(j, FI_MODSEQ);       /* RFC 7162 3.1.4.1 */
	}
	for (size_t i = 0; i < j->nitems; i++) {
		const struct fitem *it = &j->items[i];

		switch (it->kind) {
		case FI_INTERNALDATE:
			j->want |= IMAP_META_INTERNALDATE;
			break;
		case FI_SIZE:
			j->want |= IMAP_META_SIZE;
			break;
		case FI_ENVELOPE:
			j->want |= IMAP_META_ENVELOPE;
			break;
		case FI_BODY:
			j->want |= IMAP_META_BODY;
			break;
		case FI_BODYSTRUCTURE:
			j->want |= IMAP_META_BODYSTRUCTURE;
			break;
		case FI_FLAGS:
			j->want_flags = true;
			break;
		case FI_MODSEQ:
			j->want_modseq = true;
			s->enabled |= IMAP_EN_CONDSTORE; /* RFC 7162 3.1 */
			break;
		case FI_SECTION:
			j->want |= IMAP_META_PARTS | IMAP_META_SIZE | IMAP_META_HEADER;
			if (!it->peek && !s->sel.readonly)
				j->set_seen = true;
			break;
		case FI_UID:
			break;
		}
	}
	if (imap_msgmap_resolve(&s->sel.map, a[0].str, s->cmd_uid, &j->uids, &j->nuids, &why) < 0) {
		imap_fetch_job_free(s);
		imap_cmd_bad(s, why);
		return;
	}
	if (j->vanished) {
		j->set_text = xstrdup(a[0].str);
		s->k_changes = vanished_changes;
		imap_op_begin(s, IMAP_OP_CHANGES);
		s->ops->changes(s->ctx, j->changedsince);
		return;
	}
	fetch_step(s);
}
