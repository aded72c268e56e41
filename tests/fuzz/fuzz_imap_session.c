/*
 * tests/fuzz/fuzz_imap_session.c -- libFuzzer target for the IMAP
 * session (mailbox/imap/session.h) on the in-memory fake store of the
 * unit tests.
 *
 * Input: three option bytes, then the client's byte stream.
 *   byte 0  bit 0 deferred completions, bit 1 IMAP4rev2 offered,
 *           bit 2 fetch rows without the raw header (blob reads),
 *           bit 3 no TLS (LOGIN refused unless bit 4), bit 4 plaintext
 *           allowed, bits 5-7 which store request fails once (0: none)
 *   byte 1  input piece size (0: everything at once)
 *   byte 2  seed of the events between pieces: notifications, IDLE
 *           ticks, other sessions changing flags, expunging, delivering
 *           mail, the clock moving (rate limit), a shutdown; bit 5:
 *           the store answers ops.fetch_cached (metadata at hand);
 *           bit 4: ops.changes_known says yes (NOOP does not ask).
 * The store starts with an account "alice"/"pw" (and master "admin"/"pw"),
 * a few mailboxes and messages.  The fake store aborts on a broken
 * contract (a second request while one is outstanding, a spool of the
 * wrong size), the session asserts its own invariants, ASan/UBSan watch
 * memory; at the end every spool must be closed.
 *
 * The fake store is compiled into this target directly (the build links
 * one object per fuzzer).
 */
#include "tests/unit/imap_fake_store.c"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const messages[] = {
        "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Lunch\r\n"
        "Date: Tue, 12 Mar 2024 10:15:00 +0100\r\nMessage-ID: <1@example.org>\r\n\r\n"
        "Hi Bob,\r\nlunch?\r\n",
        "From: Dave <dave@example.com>\r\nSubject: Report\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n"
        "Content-Type: text/plain\r\n\r\nHere.\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
        "Subject: inner\r\n\r\ninner body\r\n--b--\r\n",
        "Subject: =?utf-8?q?caf=C3=A9?=\r\nCc: x@y\r\n\r\nbody with \xc3\xa9\r\n",
        "no header at all",
};

static void pump(struct fake_store *f, struct imap_session *s)
{
	for (int guard = 0; guard < 100000; guard++) {
		struct buf *o = imap_session_outbuf(s);
		bool progress = false;

		if (buf_len(o) > 0) {
			buf_consume(o, buf_len(o));
			imap_session_writable(s);
			progress = true;
		}
		if (fake_store_deliver(f))
			progress = true;
		if (!progress)
			return;
	}
	abort(); /* the session does not settle */
}

static const char *const fail_ops[] = {NULL,    "select",  "fetch",  "read",
                                       "store", "changes", "append", "search"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake_store f;
	struct imap_session_config cfg = {.hostname = "fuzz.example"};
	struct imap_session *s;
	struct fake_account *a;
	struct fake_mbox *inbox, *other;
	uint8_t opt, piece, ev;
	size_t off = 3, pending_from = 3, round = 0;

	if (size < 3)
		return 0;
	opt = data[0];
	piece = data[1];
	ev = data[2];

	fake_store_init(&f);
	fake_store_account_add(&f, "alice", "pw", false, 50000);
	fake_store_account_add(&f, "admin", "pw", true, 0);
	a = fake_store_account(&f, "alice");
	fake_store_mbox_add(&f, a, "Sent", IMAP_MBOX_SENT, true);
	fake_store_mbox_add(&f, a, "Archive/2024", 0, false);
	inbox = fake_store_mbox(a, "INBOX");
	for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++)
		fake_store_msg_add(&f, inbox, messages[i], strlen(messages[i]),
		                   i % 2 ? "\\Seen" : "$Label1", 1700000000 + (int64_t)i * 86400);
	other = fake_store_mbox(a, "Sent");
	fake_store_msg_add(&f, other, messages[0], strlen(messages[0]), "\\Seen", 1700000000);

	f.deferred = opt & 0x01;
	f.header_column = !(opt & 0x04);
	if (fail_ops[opt >> 5] != NULL) {
		snprintf(f.fail_op, sizeof(f.fail_op), "%s", fail_ops[opt >> 5]);
		f.fail_st = IMAP_STORE_TEMPFAIL;
	}
	cfg.imap4rev2 = opt & 0x02;
	cfg.allow_plaintext_auth = opt & 0x10;
	cfg.starttls_available = true;
	cfg.master_separator = '*';
	cfg.max_line = 2048;
	cfg.max_message = 8192;
	cfg.max_bad = 50;
	f.meta_cached = (ev & 0x20) != 0;
	f.changes_known = (ev & 0x10) != 0;
	if (ev & 0x80) {
		cfg.rate_burst = 5;
		cfg.rate_per_sec = 10;
	}

	s = imap_session_new(&cfg, fake_store_ops(), &f);
	f.s = s;
	if (!(opt & 0x08))
		imap_session_set_tls(s);
	imap_session_greet(s);
	pump(&f, s);

	while (off < size && !imap_session_closing(s) && round < 4096) {
		size_t n = piece ? piece : size - off;
		size_t used;

		if (n > size - off)
			n = size - off;
		used = imap_session_input(s, data + pending_from, off + n - pending_from);
		if (used > off + n - pending_from)
			abort();
		pending_from += used;
		off += n;
		pump(&f, s);
		/* a session that is blocked (TLS wait, throttled) keeps what it
		 * did not take; the glue would too */
		if (imap_session_tls_wait(s) && f.tls_started) {
			f.tls_started = false;
			pending_from = off; /* RFC 3207 6: dropped */
			imap_session_tls_done(s, (ev & 1) != 0);
			pump(&f, s);
		}
		/* CREATE may have moved the mailbox array: look INBOX up again */
		inbox = fake_store_mbox(fake_store_account(&f, "alice"), "INBOX");
		switch ((ev + round++) % 23) {
		case 0:
			imap_session_notify(s);
			break;
		case 1:
			imap_session_idle_tick(s);
			break;
		case 2:
			fake_store_other_flags(&f, inbox, (uint32_t)(round % 6) + 1,
			                       "\\Flagged,$X");
			imap_session_notify(s);
			break;
		case 3:
			fake_store_other_expunge(&f, inbox, (uint32_t)(round % 6) + 1);
			imap_session_notify(s);
			break;
		case 4:
			if (inbox->n < 64)
				fake_store_msg_add(&f, inbox, messages[round % 4],
				                   strlen(messages[round % 4]), NULL, 1710000000);
			imap_session_notify(s);
			break;
		case 5:
			f.now_ms += 1000;
			break;
		default:
			break;
		}
		pump(&f, s);
	}
	/* whatever is left, once more (a throttled session after time
	 * passed), then the end of the connection */
	f.now_ms += 10000;
	if (pending_from < size && !imap_session_closing(s)) {
		imap_session_input(s, data + pending_from, size - pending_from);
		pump(&f, s);
	}
	if (ev & 0x40)
		imap_session_shutdown(s, IMAP_CLOSE_SHUTDOWN);
	fake_store_cancel(&f);
	imap_session_free(&s);
	if (f.nspools_open != 0)
		abort(); /* a spool leaked */
	fake_store_free(&f);
	return 0;
}
