/*
 * tests/unit/test_imap_session.c -- the IMAP session, by transcript.
 *
 * Each .txt file in tests/unit/imap_transcripts is a dialogue played
 * against a session whose ops are the in-memory fake store
 * (imap_fake_store.h), set up by directives.  Every transcript runs four
 * times: input fed whole or one octet at a time, and store requests
 * answered from inside the request (immediate) or later from the
 * harness's loop (deferred); all four must produce the same responses.
 *
 * Transcript syntax (one item per line):
 *   C: text        client line; "\r\n" is appended
 *   R: text        raw client bytes, nothing appended
 *   S: text        the next server line (without CRLF) must be exactly this
 *   ## text        a comment
 *   # directive    see directive() below
 * In C:, R:, S: and directive arguments \r \n \t \\ and \xHH are escapes;
 * any other backslash stands for itself ("\Seen").
 * Input is offered as soon as it is read (the harness is the glue: it
 * keeps what the session did not consume and offers it again after each
 * completion); output is collected as the session produces it.  At the
 * end no input and no output may be left over.
 *
 * Set-up directives (before the first C:/S:, which starts the session):
 *   # config starttls | plaintext | tls | rev2 | master C | max_bad N |
 *            max_auth N | rate BURST PER_SEC | max_line N | max_message N
 *   # account LOGIN PASS [master] [quota=N]
 *   # mailbox LOGIN NAME [special=\Sent] [unsubscribed]
 *   # message LOGIN MBOX SAMPLE|text:ESCAPED [flags=a,b] [date=EPOCH]
 * Directives at any time:
 *   # notify | tick | hold | release | advance MS
 *   # other-flags LOGIN MBOX UID FLAGS     (another session's STORE)
 *   # other-expunge LOGIN MBOX UID
 *   # other-message LOGIN MBOX SAMPLE|text:... [flags=..]
 *   # fail OP STATUS        the next OP request answers STATUS
 *   # header-column on|off  fetch rows with or without the raw header
 *   # meta-cache on|off     ops.fetch_cached answers (off: it declines)
 *   # changes-known on|off  ops.changes_known says so (NOOP need not ask)
 *   # spool-fail on|off | starttls-fail
 *   # handshake ok|fail | shutdown timeout|shutdown|kicked
 *   # expect closing|open|no-output|tls-started
 *   # expect abuse LIST | id TEXT | spools N | state NAME | user NAME |
 *            throttled MS | requests N (store requests since the last
 *            such check, which starts the count again) | cached N (the
 *            same for ops.fetch_cached answers)
 *
 * The transcripts are found next to this file through __FILE__ (make runs
 * the unit binary from the repository root).
 */
#include "tests/unit/unit.h"

#include "mailbox/imap/session.h"
#include "shared/buf.h"
#include "shared/xmalloc.h"
#include "tests/unit/imap_fake_store.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

struct run {
	const char *file;
	int line;
	bool failed;
	bool bytewise, deferred;
	struct fake_store f;
	struct imap_session_config cfg;
	bool implicit_tls;
	struct imap_session *s;
	struct buf in, out;
};

static void fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct run *r, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (r->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	unit_fail(r->file, r->line, "[%s,%s] %s", r->bytewise ? "bytewise" : "whole",
	          r->deferred ? "deferred" : "immediate", msg);
	r->failed = true;
}

/* Unescape \r \n \t \\ \xHH in place; returns the length. */
static size_t unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p != '\\' || p[1] == '\0') {
			*o++ = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 'r':
			*o++ = '\r';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'x':
			if (p[1] && p[2]) {
				char hex[3] = {p[1], p[2], 0};

				*o++ = (char)strtol(hex, NULL, 16);
				p += 2;
			}
			break;
		case '\\':
			*o++ = '\\';
			break;
		default:
			/* "\Seen": IMAP is full of backslashes; keep them */
			*o++ = '\\';
			*o++ = *p;
			break;
		}
	}
	*o = '\0';
	return (size_t)(o - s);
}

static const char *samples_dir(void)
{
	static char dir[512];
	const char *me = __FILE__;
	const char *slash = strrchr(me, '/');

	snprintf(dir, sizeof(dir), "%.*s/mime_samples", slash ? (int)(slash - me) : 1,
	         slash ? me : ".");
	return dir;
}

/* A message argument: a sample file name or "text:" with escapes. */
static char *message_data(struct run *r, const char *arg, size_t *len_r)
{
	char path[1024];
	FILE *fp;
	char *data;
	long size;

	if (strncmp(arg, "text:", 5) == 0) {
		data = xstrdup(arg + 5);
		*len_r = unescape(data);
		return data;
	}
	snprintf(path, sizeof(path), "%s/%s", samples_dir(), arg);
	fp = fopen(path, "rb");
	if (fp == NULL) {
		fail(r, "cannot open %s", path);
		return NULL;
	}
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	data = xmalloc((size_t)size + 1);
	*len_r = fread(data, 1, (size_t)size, fp);
	data[*len_r] = '\0';
	fclose(fp);
	return data;
}

/* --- driving ---------------------------------------------------------------------- */

static void pump(struct run *r)
{
	for (unsigned guard = 0; guard < 10000000; guard++) {
		bool progress = false;
		struct buf *out;

		if (r->s == NULL)
			return;
		if (buf_len(&r->in) > 0) {
			size_t n = r->bytewise ? 1 : buf_len(&r->in);
			size_t used = imap_session_input(r->s, buf_ptr(&r->in), n);

			if (used > n) {
				fail(r, "session consumed %zu of %zu octets", used, n);
				return;
			}
			if (used > 0) {
				buf_consume(&r->in, used);
				progress = true;
			}
		}
		out = imap_session_outbuf(r->s);
		if (buf_len(out) > 0) {
			buf_append(&r->out, buf_ptr(out), buf_len(out));
			buf_consume(out, buf_len(out));
			imap_session_writable(r->s);
			progress = true;
		}
		if (r->deferred && fake_store_deliver(&r->f))
			progress = true;
		if (!progress)
			return;
	}
	fail(r, "the session does not settle");
}

static void start(struct run *r)
{
	if (r->s != NULL)
		return;
	r->s = imap_session_new(&r->cfg, fake_store_ops(), &r->f);
	r->f.s = r->s;
	r->f.deferred = r->deferred;
	if (r->implicit_tls)
		imap_session_set_tls(r->s);
	imap_session_greet(r->s);
	pump(r);
}

/* IMAP_DUMP=1: print the output instead of checking S: lines (for
 * writing a new transcript; the result must still be read critically). */
static bool dump_mode(void)
{
	return getenv("IMAP_DUMP") != NULL;
}

static void expect_line(struct run *r, const char *want, size_t wlen)
{
	const uint8_t *p;
	size_t n;

	start(r);
	pump(r);
	if (dump_mode()) {
		fwrite(buf_ptr(&r->out), 1, buf_len(&r->out), stderr);
		buf_reset(&r->out);
		return;
	}
	p = buf_ptr(&r->out);
	n = buf_len(&r->out);
	if (n >= wlen + 2 && memcmp(p, want, wlen) == 0 && p[wlen] == '\r' && p[wlen + 1] == '\n') {
		buf_consume(&r->out, wlen + 2);
		return;
	}
	{
		const uint8_t *eol = memchr(p, '\n', n);
		size_t show = eol ? (size_t)(eol - p) + 1 : n;

		fail(r, "expected \"%.*s\", got \"%.*s\"%s", (int)wlen, want,
		     (int)(show > 300 ? 300 : show), (const char *)p, n == 0 ? " (no output)" : "");
	}
}

/* --- directives -------------------------------------------------------------------- */

static int status_by_name(const char *n)
{
	/* in enum imap_store_status order */
	static const char *const names[] = {"ok",          "nonexistent", "exists",
	                                    "overquota",   "limit",       "cannot",
	                                    "haschildren", "tempfail",    "fail"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i], n) == 0)
			return (int)i;
	return -1;
}

static struct fake_mbox *mbox_arg(struct run *r, const char *login, const char *name)
{
	struct fake_account *a = fake_store_account(&r->f, login);
	struct fake_mbox *m = fake_store_mbox(a, name);

	if (m == NULL)
		fail(r, "no mailbox %s of %s", name, login);
	return m;
}

static void message_directive(struct run *r, char **tok, int ntok, bool other)
{
	struct fake_mbox *m;
	const char *flags = NULL;
	int64_t date = 1700000000;
	char *data;
	size_t len;

	if (ntok < 4) {
		fail(r, "message needs LOGIN MBOX SAMPLE");
		return;
	}
	m = mbox_arg(r, tok[1], tok[2]);
	if (m == NULL)
		return;
	for (int i = 4; i < ntok; i++) {
		if (strncmp(tok[i], "flags=", 6) == 0)
			flags = tok[i] + 6;
		else if (strncmp(tok[i], "date=", 5) == 0)
			date = strtoll(tok[i] + 5, NULL, 10);
	}
	data = message_data(r, tok[3], &len);
	if (data == NULL)
		return;
	fake_store_msg_add(&r->f, m, data, len, flags, date);
	free(data);
	(void)other;
}

static void directive(struct run *r, char *text)
{
	char *tok[16];
	int ntok = 0;
	char *save = NULL;

	for (char *t = strtok_r(text, " ", &save); t != NULL && ntok < 16;
	     t = strtok_r(NULL, " ", &save)) {
		unescape(t);
		tok[ntok++] = t;
	}
	if (ntok == 0)
		return;
	if (strcmp(tok[0], "config") == 0 && ntok >= 2) {
		if (r->s != NULL) {
			fail(r, "config after the session started");
			return;
		}
		if (strcmp(tok[1], "starttls") == 0)
			r->cfg.starttls_available = true;
		else if (strcmp(tok[1], "plaintext") == 0)
			r->cfg.allow_plaintext_auth = true;
		else if (strcmp(tok[1], "tls") == 0)
			r->implicit_tls = true;
		else if (strcmp(tok[1], "rev2") == 0)
			r->cfg.imap4rev2 = true;
		else if (strcmp(tok[1], "master") == 0 && ntok == 3)
			r->cfg.master_separator = tok[2][0];
		else if (strcmp(tok[1], "max_bad") == 0 && ntok == 3)
			r->cfg.max_bad = (unsigned)atoi(tok[2]);
		else if (strcmp(tok[1], "max_auth") == 0 && ntok == 3)
			r->cfg.max_auth_failures = (unsigned)atoi(tok[2]);
		else if (strcmp(tok[1], "max_line") == 0 && ntok == 3)
			r->cfg.max_line = (size_t)atoi(tok[2]);
		else if (strcmp(tok[1], "max_message") == 0 && ntok == 3)
			r->cfg.max_message = (uint64_t)atoll(tok[2]);
		else if (strcmp(tok[1], "rate") == 0 && ntok == 4) {
			r->cfg.rate_burst = (unsigned)atoi(tok[2]);
			r->cfg.rate_per_sec = (unsigned)atoi(tok[3]);
		} else
			fail(r, "unknown config %s", tok[1]);
		return;
	}
	if (strcmp(tok[0], "account") == 0 && ntok >= 3) {
		bool master = false;
		uint64_t quota = 0;

		for (int i = 3; i < ntok; i++) {
			if (strcmp(tok[i], "master") == 0)
				master = true;
			else if (strncmp(tok[i], "quota=", 6) == 0)
				quota = strtoull(tok[i] + 6, NULL, 10);
		}
		fake_store_account_add(&r->f, tok[1], tok[2], master, quota);
		return;
	}
	if (strcmp(tok[0], "mailbox") == 0 && ntok >= 3) {
		struct fake_account *a = fake_store_account(&r->f, tok[1]);
		unsigned attrs = 0;
		bool subscribed = true;
		static const struct {
			const char *n;
			unsigned a;
		} sp[] = {{"\\All", IMAP_MBOX_ALL},       {"\\Archive", IMAP_MBOX_ARCHIVE},
		          {"\\Drafts", IMAP_MBOX_DRAFTS}, {"\\Flagged", IMAP_MBOX_FLAGGED},
		          {"\\Junk", IMAP_MBOX_JUNK},     {"\\Sent", IMAP_MBOX_SENT},
		          {"\\Trash", IMAP_MBOX_TRASH},   {"\\Noselect", IMAP_MBOX_NOSELECT}};

		if (a == NULL) {
			fail(r, "no account %s", tok[1]);
			return;
		}
		for (int i = 3; i < ntok; i++) {
			if (strcmp(tok[i], "unsubscribed") == 0)
				subscribed = false;
			else if (strncmp(tok[i], "special=", 8) == 0)
				for (size_t k = 0; k < sizeof(sp) / sizeof(sp[0]); k++)
					if (strcmp(sp[k].n, tok[i] + 8) == 0)
						attrs |= sp[k].a;
		}
		fake_store_mbox_add(&r->f, a, tok[2], attrs, subscribed);
		return;
	}
	if (strcmp(tok[0], "message") == 0) {
		message_directive(r, tok, ntok, false);
		return;
	}
	/* everything else acts on a running session */
	start(r);
	pump(r);
	if (strcmp(tok[0], "notify") == 0) {
		imap_session_notify(r->s);
	} else if (strcmp(tok[0], "tick") == 0) {
		imap_session_idle_tick(r->s);
	} else if (strcmp(tok[0], "hold") == 0) {
		r->f.hold = true;
	} else if (strcmp(tok[0], "release") == 0) {
		r->f.hold = false;
		fake_store_deliver(&r->f);
	} else if (strcmp(tok[0], "advance") == 0 && ntok == 2) {
		r->f.now_ms += strtoull(tok[1], NULL, 10);
	} else if (strcmp(tok[0], "other-flags") == 0 && ntok >= 4) {
		struct fake_mbox *m = mbox_arg(r, tok[1], tok[2]);

		if (m != NULL)
			fake_store_other_flags(&r->f, m, (uint32_t)atoi(tok[3]),
			                       ntok > 4 ? tok[4] : "");
	} else if (strcmp(tok[0], "other-expunge") == 0 && ntok == 4) {
		struct fake_mbox *m = mbox_arg(r, tok[1], tok[2]);

		if (m != NULL)
			fake_store_other_expunge(&r->f, m, (uint32_t)atoi(tok[3]));
	} else if (strcmp(tok[0], "other-message") == 0) {
		message_directive(r, tok, ntok, true);
	} else if (strcmp(tok[0], "fail") == 0 && ntok == 3) {
		int st = status_by_name(tok[2]);

		if (st < 0) {
			fail(r, "unknown status %s", tok[2]);
			return;
		}
		snprintf(r->f.fail_op, sizeof(r->f.fail_op), "%s", tok[1]);
		r->f.fail_st = st;
	} else if (strcmp(tok[0], "changes-known") == 0 && ntok == 2) {
		r->f.changes_known = strcmp(tok[1], "on") == 0;
	} else if (strcmp(tok[0], "meta-cache") == 0 && ntok == 2) {
		r->f.meta_cached = strcmp(tok[1], "on") == 0;
	} else if (strcmp(tok[0], "header-column") == 0 && ntok == 2) {
		r->f.header_column = strcmp(tok[1], "on") == 0;
	} else if (strcmp(tok[0], "spool-fail") == 0 && ntok == 2) {
		r->f.spool_write_fail = strcmp(tok[1], "on") == 0;
	} else if (strcmp(tok[0], "starttls-fail") == 0) {
		r->f.starttls_fail = true;
	} else if (strcmp(tok[0], "handshake") == 0 && ntok == 2) {
		imap_session_tls_done(r->s, strcmp(tok[1], "ok") == 0);
	} else if (strcmp(tok[0], "shutdown") == 0 && ntok == 2) {
		fake_store_cancel(&r->f);
		imap_session_shutdown(r->s, strcmp(tok[1], "timeout") == 0    ? IMAP_CLOSE_TIMEOUT
		                            : strcmp(tok[1], "shutdown") == 0 ? IMAP_CLOSE_SHUTDOWN
		                                                              : IMAP_CLOSE_KICKED);
	} else if (strcmp(tok[0], "expect") == 0 && ntok >= 2) {
		const char *what = tok[1];

		if (strcmp(what, "closing") == 0) {
			if (!imap_session_closing(r->s))
				fail(r, "session not closing");
		} else if (strcmp(what, "open") == 0) {
			if (imap_session_closing(r->s))
				fail(r, "session closing");
		} else if (strcmp(what, "no-output") == 0) {
			if (dump_mode()) {
				fwrite(buf_ptr(&r->out), 1, buf_len(&r->out), stderr);
				buf_reset(&r->out);
			} else if (buf_len(&r->out) > 0)
				fail(r, "unexpected output \"%.*s\"", (int)buf_len(&r->out),
				     (const char *)buf_ptr(&r->out));
		} else if (strcmp(what, "tls-started") == 0) {
			if (!r->f.tls_started)
				fail(r, "STARTTLS not started");
		} else if (strcmp(what, "abuse") == 0) {
			const char *want = ntok > 2 ? tok[2] : "";

			if (strcmp(r->f.abuse_log, want) != 0)
				fail(r, "abuse \"%s\", want \"%s\"", r->f.abuse_log, want);
			r->f.abuse_log[0] = '\0';
		} else if (strcmp(what, "id") == 0) {
			if (strcmp(r->f.id_log, ntok > 2 ? tok[2] : "") != 0)
				fail(r, "id \"%s\"", r->f.id_log);
		} else if (strcmp(what, "spools") == 0 && ntok == 3) {
			if (r->f.nspools_open != (size_t)atoi(tok[2]))
				fail(r, "%zu spools open", r->f.nspools_open);
		} else if (strcmp(what, "state") == 0 && ntok == 3) {
			static const char *const names[] = {"noauth", "auth", "selected", "logout"};

			if (strcmp(names[imap_session_state(r->s)], tok[2]) != 0)
				fail(r, "state %s", names[imap_session_state(r->s)]);
		} else if (strcmp(what, "user") == 0 && ntok == 3) {
			const char *u = imap_session_user(r->s);

			if (u == NULL || strcmp(u, tok[2]) != 0)
				fail(r, "user %s", u ? u : "(none)");
		} else if (strcmp(what, "requests") == 0 && ntok == 3) {
			if (r->f.requests != (unsigned)atoi(tok[2]))
				fail(r, "%u store requests, want %s", r->f.requests, tok[2]);
			r->f.requests = 0;
		} else if (strcmp(what, "cached") == 0 && ntok == 3) {
			if (r->f.cached_answers != (unsigned)atoi(tok[2]))
				fail(r, "%u fetch_cached answers, want %s", r->f.cached_answers,
				     tok[2]);
			r->f.cached_answers = 0;
		} else if (strcmp(what, "throttled") == 0 && ntok == 3) {
			if (r->f.throttled_for != strtoull(tok[2], NULL, 10))
				fail(r, "throttled for %llu",
				     (unsigned long long)r->f.throttled_for);
		} else {
			fail(r, "unknown expectation %s", what);
		}
	} else {
		fail(r, "unknown directive %s", tok[0]);
	}
	pump(r);
}

/* --- running ------------------------------------------------------------------------- */

static void run_file(const char *path, bool bytewise, bool deferred)
{
	struct run r = {.file = path, .bytewise = bytewise, .deferred = deferred};
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (fp == NULL) {
		unit_fail(path, 0, "cannot open");
		return;
	}
	fake_store_init(&r.f);
	r.cfg.hostname = "imap.example.org";
	buf_init(&r.in, 0);
	buf_init(&r.out, 0);
	while (!r.failed && (len = getline(&line, &cap, fp)) >= 0) {
		r.line++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || strncmp(line, "##", 2) == 0)
			continue;
		if (strncmp(line, "# ", 2) == 0) {
			directive(&r, line + 2);
		} else if (strncmp(line, "C: ", 3) == 0 || strcmp(line, "C:") == 0) {
			size_t n = len > 3 ? unescape(line + 3) : 0;

			start(&r);
			buf_append(&r.in, line + 3, n);
			buf_append(&r.in, "\r\n", 2);
			pump(&r);
		} else if (strncmp(line, "R: ", 3) == 0) {
			size_t n = unescape(line + 3);

			start(&r);
			buf_append(&r.in, line + 3, n);
			pump(&r);
		} else if (strncmp(line, "S: ", 3) == 0 || strcmp(line, "S:") == 0) {
			size_t n = len > 3 ? unescape(line + 3) : 0;

			expect_line(&r, len > 3 ? line + 3 : "", n);
		} else {
			fail(&r, "cannot parse \"%s\"", line);
		}
	}
	if (!r.failed && r.s != NULL) {
		pump(&r);
		if (buf_len(&r.out) > 0)
			fail(&r, "output left over: \"%.*s\"",
			     (int)(buf_len(&r.out) > 300 ? 300 : buf_len(&r.out)),
			     (const char *)buf_ptr(&r.out));
		else if (buf_len(&r.in) > 0 && !imap_session_closing(r.s))
			fail(&r, "input left over: %zu octets", buf_len(&r.in));
	}
	free(line);
	fclose(fp);
	fake_store_cancel(&r.f);
	imap_session_free(&r.s);
	if (!r.failed && r.f.nspools_open != 0)
		fail(&r, "%zu spools left open", r.f.nspools_open);
	fake_store_free(&r.f);
	buf_free(&r.in);
	buf_free(&r.out);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

UNIT_TEST(imap_session_transcripts)
{
	char dir[512];
	const char *me = __FILE__;
	const char *slash = strrchr(me, '/');
	DIR *d;
	struct dirent *e;
	char *names[256];
	size_t n = 0;

	snprintf(dir, sizeof(dir), "%.*s/imap_transcripts", slash ? (int)(slash - me) : 1,
	         slash ? me : ".");
	d = opendir(dir);
	CHECK_MSG(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL && n < 256) {
		size_t l = strlen(e->d_name);

		if (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0)
			names[n++] = xasprintf("%s/%s", dir, e->d_name);
	}
	closedir(d);
	CHECK(n > 0);
	qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		const char *only = getenv("IMAP_TRANSCRIPT");

		if (only == NULL || strstr(names[i], only) != NULL)
			for (int v = 0; v < (dump_mode() ? 1 : 4); v++)
				run_file(names[i], v & 1, (v & 2) != 0);
		free(names[i]);
	}
}
