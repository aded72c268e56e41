/*
 * tests/unit/test_imap_session_stream.c -- the IMAP session with messages
 * too large for transcripts: APPEND of literals that are streamed to a
 * spool (LITERAL_CHUNK), FETCH of bodies larger than the output
 * high-water mark (the response is produced in pieces as the output
 * drains), and the octets coming back exactly as they went in.  Run with
 * immediate and deferred completions and with odd input piece sizes.
 */
#include "tests/unit/unit.h"

#include "mailbox/imap/session.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"
#include "tests/unit/imap_fake_store.h"

#include <stdio.h>
#include <stdlib.h>

struct drv {
	struct fake_store f;
	struct imap_session *s;
	struct buf in, out;
	size_t piece;       /* input offered per call (0: all) */
	size_t drain_piece; /* output taken per round (0: all) */
	size_t max_pending; /* largest unsent output seen */
};

static void drv_pump(struct drv *d)
{
	for (unsigned guard = 0; guard < 10000000; guard++) {
		bool progress = false;
		struct buf *o = imap_session_outbuf(d->s);

		if (buf_len(&d->in) > 0) {
			size_t n =
			        d->piece && d->piece < buf_len(&d->in) ? d->piece : buf_len(&d->in);
			size_t used = imap_session_input(d->s, buf_ptr(&d->in), n);

			if (used > 0) {
				buf_consume(&d->in, used);
				progress = true;
			}
		}
		if (buf_len(o) > d->max_pending)
			d->max_pending = buf_len(o);
		if (buf_len(o) > 0) {
			size_t n = d->drain_piece && d->drain_piece < buf_len(o) ? d->drain_piece
			                                                         : buf_len(o);

			buf_append(&d->out, buf_ptr(o), n);
			buf_consume(o, n);
			if (buf_len(o) < IMAP_OUT_HIGH)
				imap_session_writable(d->s);
			progress = true;
		}
		if (fake_store_deliver(&d->f))
			progress = true;
		if (!progress)
			return;
	}
}

static void drv_init(struct drv *d, bool deferred, size_t piece, size_t drain_piece)
{
	struct imap_session_config cfg = {.hostname = "imap.example.org"};

	memset(d, 0, sizeof(*d));
	fake_store_init(&d->f);
	fake_store_account_add(&d->f, "alice", "pw", false, 0);
	d->s = imap_session_new(&cfg, fake_store_ops(), &d->f);
	d->f.s = d->s;
	d->f.deferred = deferred;
	d->piece = piece;
	d->drain_piece = drain_piece;
	buf_init(&d->in, 0);
	buf_init(&d->out, 0);
	imap_session_set_tls(d->s);
	imap_session_greet(d->s);
}

static void drv_free(struct drv *d)
{
	fake_store_cancel(&d->f);
	imap_session_free(&d->s);
	fake_store_free(&d->f);
	buf_free(&d->in);
	buf_free(&d->out);
}

static void send_str(struct drv *d, const char *s)
{
	buf_puts(&d->in, s);
	drv_pump(d);
}

/* The output holds line; drop everything up to and including it. */
static bool take_through(struct drv *d, const char *line)
{
	const char *p = (const char *)buf_ptr(&d->out);
	size_t n = buf_len(&d->out), ll = strlen(line);

	for (size_t i = 0; i + ll <= n; i++) {
		if ((i == 0 || p[i - 1] == '\n') && memcmp(p + i, line, ll) == 0) {
			buf_consume(&d->out, i + ll);
			return true;
		}
	}
	return false;
}

static char *make_message(size_t size, unsigned seed)
{
	char *m = xmalloc(size + 1);
	const char *hdr = "From: a@example.org\r\nSubject: big\r\n\r\n";
	size_t h = strlen(hdr), i;

	memcpy(m, hdr, h);
	for (i = h; i < size; i++) {
		/* lines of 76 printable characters */
		if ((i - h) % 78 == 76)
			m[i] = '\r';
		else if ((i - h) % 78 == 77)
			m[i] = '\n';
		else
			m[i] = (char)('!' + (i * 7 + seed) % 90);
	}
	m[size] = '\0';
	return m;
}

static void big_roundtrip(bool deferred, size_t piece, size_t drain, size_t size, bool sync_lit)
{
	struct drv d;
	char *msg = make_message(size, (unsigned)(piece + size));
	char hdr[128];
	struct fake_mbox *inbox;
	const char *p;

	drv_init(&d, deferred, piece, drain);
	send_str(&d, "a1 LOGIN alice pw\r\n");
	CHECK(take_through(&d, "a1 OK"));
	snprintf(hdr, sizeof(hdr), "a2 APPEND INBOX (\\Seen) {%zu%s}\r\n", size,
	         sync_lit ? "" : "+");
	send_str(&d, hdr);
	if (sync_lit)
		CHECK(take_through(&d, "+ OK\r\n"));
	buf_append(&d.in, msg, size);
	send_str(&d, "\r\n");
	CHECK_MSG(take_through(&d, "a2 OK [APPENDUID 1000 1] Append completed\r\n"), "%.*s",
	          (int)(buf_len(&d.out) > 200 ? 200 : buf_len(&d.out)),
	          (const char *)buf_ptr(&d.out));
	CHECK_INT(d.f.nspools_open, 0);
	inbox = fake_store_mbox(fake_store_account(&d.f, "alice"), "INBOX");
	CHECK(inbox != NULL && inbox->n == 1);
	CHECK_INT(inbox->msgs[0].size, size);
	CHECK(memcmp(inbox->msgs[0].data, msg, size) == 0);

	/* and back, byte for byte, through a FETCH larger than the
	 * output bound */
	send_str(&d, "a3 SELECT INBOX\r\n");
	CHECK(take_through(&d, "a3 OK"));
	buf_reset(&d.out);
	send_str(&d, "a4 FETCH 1 (BODY.PEEK[] RFC822.SIZE)\r\n");
	snprintf(hdr, sizeof(hdr), "* 1 FETCH (BODY[] {%zu}\r\n", size);
	CHECK(buf_len(&d.out) > strlen(hdr));
	CHECK_MEM(buf_ptr(&d.out), hdr, strlen(hdr));
	p = (const char *)buf_ptr(&d.out) + strlen(hdr);
	CHECK(buf_len(&d.out) >= strlen(hdr) + size);
	CHECK(memcmp(p, msg, size) == 0);
	buf_consume(&d.out, strlen(hdr) + size);
	snprintf(hdr, sizeof(hdr), " RFC822.SIZE %zu)\r\na4 OK Fetch completed\r\n", size);
	CHECK_INT(buf_len(&d.out), strlen(hdr));
	CHECK_MEM(buf_ptr(&d.out), hdr, strlen(hdr));
	/* the session never let the output grow far past its bound */
	CHECK_MSG(d.max_pending <= IMAP_OUT_HIGH + IMAP_READ_CHUNK + 4096, "%zu", d.max_pending);
	drv_free(&d);
	free(msg);
}

UNIT_TEST(imap_session_big_append_fetch)
{
	static const struct {
		bool deferred;
		size_t piece, drain, size;
		bool sync;
	} t[] = {
	        {false, 0, 0, 300 * 1024, true},
	        {true, 0, 0, 300 * 1024, false},
	        {false, 4093, 0, 200 * 1024 + 7, false},
	        {true, 65536, 1000, 70 * 1024, true},
	        {true, 1, 0, 66 * 1024, false},
	        {false, 0, 50000, 1024 * 1024 + 3, true},
	        /* below the streaming threshold: held by the parser */
	        {true, 333, 0, 10 * 1024, false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		big_roundtrip(t[i].deferred, t[i].piece, t[i].drain, t[i].size, t[i].sync);
		if (unit_failed()) {
			unit_fail(__FILE__, __LINE__, "case %zu", i);
			return;
		}
	}
}

/* A big literal that belongs to another command, or to a command that
 * turns out BAD, leaves no spool behind. */
UNIT_TEST(imap_session_stream_abort)
{
	struct drv d;
	char *msg = make_message(100 * 1024, 1);

	drv_init(&d, true, 1000, 0);
	send_str(&d, "a1 LOGIN alice pw\r\n");
	CHECK(take_through(&d, "a1 OK"));
	send_str(&d, "a2 LIST {102400+}\r\n");
	buf_append(&d.in, msg, 100 * 1024);
	send_str(&d, " *\r\n");
	CHECK(take_through(&d, "a2 "));
	CHECK_INT(d.f.nspools_open, 0);
	send_str(&d, "a3 APPEND INBOX {102400+}\r\n");
	buf_append(&d.in, msg, 100 * 1024);
	send_str(&d, " )\r\n");
	CHECK(take_through(&d, "a3 BAD"));
	CHECK_INT(d.f.nspools_open, 0);
	/* a session freed in the middle of a streamed literal */
	send_str(&d, "a4 APPEND INBOX {102400+}\r\n");
	buf_append(&d.in, msg, 50 * 1024);
	drv_pump(&d);
	CHECK_INT(d.f.nspools_open, 1);
	imap_session_free(&d.s);
	CHECK_INT(d.f.nspools_open, 0);
	fake_store_free(&d.f);
	buf_free(&d.in);
	buf_free(&d.out);
	free(msg);
}

/* Many messages: FETCH in batches, the output paused and resumed. */
UNIT_TEST(imap_session_many_messages)
{
	struct drv d;
	struct fake_mbox *inbox;
	char line[128];

	drv_init(&d, true, 0, 7000);
	inbox = fake_store_mbox(fake_store_account(&d.f, "alice"), "INBOX");
	for (unsigned i = 0; i < 1000; i++) {
		char m[128];
		int n = snprintf(m, sizeof(m), "Subject: n%u\r\n\r\nbody %u\r\n", i, i);

		fake_store_msg_add(&d.f, inbox, m, (size_t)n, i % 3 ? "\\Seen" : "",
		                   1700000000 + i);
	}
	send_str(&d, "a1 LOGIN alice pw\r\na2 SELECT INBOX\r\n");
	CHECK(take_through(&d, "* 1000 EXISTS\r\n"));
	CHECK(take_through(&d, "a2 OK"));
	buf_reset(&d.out);
	send_str(&d, "a3 FETCH 1:* (UID BODY[HEADER.FIELDS (SUBJECT)])\r\n");
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(line, sizeof(line),
		         "* %u FETCH (UID %u BODY[HEADER.FIELDS (SUBJECT)] {%u}\r\nSubject: "
		         "n%u\r\n\r\n",
		         i + 1, i + 1,
		         (unsigned)(strlen("Subject: n\r\n\r\n") + snprintf(NULL, 0, "%u", i)), i);
		CHECK_MSG(take_through(&d, line), "message %u", i);
		/* non-PEEK: \Seen set on the unseen ones, FLAGS reported */
		if (i % 3 == 0)
			CHECK_MSG(take_through(&d, " FLAGS (\\Seen))\r\n"), "flags %u", i);
	}
	CHECK(take_through(&d, "a3 OK Fetch completed\r\n"));
	send_str(&d, "a4 SEARCH UNSEEN\r\n");
	CHECK(take_through(&d, "* SEARCH\r\n"));
	drv_free(&d);
}

/* The session is freed while its APPEND is with the store: the spools
 * are the store's from the request on and must not be aborted twice
 * (the fake store aborts on an unknown spool). */
UNIT_TEST(imap_session_free_during_append)
{
	struct drv d;
	char *msg = make_message(100 * 1024, 3);

	drv_init(&d, true, 0, 0);
	send_str(&d, "a1 LOGIN alice pw\r\n");
	CHECK(take_through(&d, "a1 OK"));
	d.f.hold = true;
	buf_puts(&d.in, "a2 APPEND INBOX {102400+}\r\n");
	buf_append(&d.in, msg, 100 * 1024);
	send_str(&d, "\r\n");
	CHECK(fake_store_pending(&d.f));
	CHECK(imap_session_pending(d.s));
	CHECK_INT(d.f.nspools_open, 0);
	drv_free(&d);
	free(msg);
}
