/*
 * mailbox/server/conn.c -- one client connection (see conn.h).
 *
 * States:
 *   GATE       a trusted peer must send its PROXY header; bytes collect in
 *              `in` and go through the pure gate (proxy.h) only; the
 *              phase timer holds the header timeout.  Nothing is sent.
 *   CHECK      the ban check on the proxied client is in flight; nothing
 *              is read or sent.
 *   HANDSHAKE  implicit TLS: the handshake runs (phase timer: handshake
 *              timeout).  A direct peer's first bytes pass the spoof check
 *              before they reach OpenSSL.
 *   OPEN       the protocol runs; STARTTLS may run a handshake inside it.
 * Closing is a flag on top: input is no longer offered, the output is
 * flushed, then the connection is freed.  An abort frees it at once.
 *
 * Every libev callback ends in settle(), the one place that frees a
 * closed connection and sets the watchers from the state: read while
 * there is room and nothing stops it (pause, high output, STARTTLS
 * flush, CHECK), write only while bytes wait for the socket.  Protocol
 * callbacks therefore never see their connection freed under them:
 * conn_close() only marks it.
 *
 * TLS uses memory BIOs: raw bytes from read(2) are written into the read
 * BIO, records OpenSSL produces are collected in `tout` and written out
 * here.  That lets a ClientHello that arrived together with the PROXY
 * header, or right behind a direct peer's spoof check, reach OpenSSL
 * without peeking tricks, and lets STARTTLS discard plaintext exactly at
 * the command boundary.
 */
#include "mailbox/server/conn.h"

#include "mailbox/config.h"
#include "mailbox/server/abuse.h"
#include "mailbox/server/listener.h"
#include "mailbox/server/metrics.h"
#include "mailbox/server/proxy.h"
#include "mailbox/server/server.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK  16384
#define RBIO_HIGH   (64 * 1024)  /* stop reading while OpenSSL holds this much */
#define TOUT_HIGH   (64 * 1024)  /* stop encrypting while this much waits */
#define TOUT_MAX    (256 * 1024) /* bound on queued ciphertext */
#define FEED_ROUNDS 64           /* protocol calls per event, for fairness */
#define LINGER_MS   2000         /* lingering close: wait this long for the FIN */
#define LINGER_MAX  (1 << 20)    /* ... or until this much was discarded */

enum conn_state {
	CS_GATE = 0,
	CS_CHECK,
	CS_HANDSHAKE,
	CS_OPEN,
};

struct conn {
	struct conn *next, **pprev;
	struct listener *l;
	struct server *server;
	struct ev_loop *loop;
	int fd;
	ev_io rio, wio;
	struct loop_timer phase;   /* PROXY header or TLS handshake deadline */
	struct loop_timer idle;    /* no input / no write progress */
	struct loop_timer command; /* a partial command waits too long */
	struct loop_timer kick;    /* deferred processing after a resume */
	enum conn_state state;
	struct proxy_gate gate;
	struct abuse_req *check;
	char id[20];
	char peer_str[NET_ADDRSTRLEN];
	char client_str[NET_ADDRSTRLEN];
	char client_ip[NET_ADDRSTRLEN];
	struct buf in, out;
	/* TLS */
	SSL *ssl;
	BIO *rbio, *wbio;
	struct buf tout;
	bool tls_done;      /* handshake finished */
	bool starttls;      /* this handshake came from conn_starttls() */
	bool starttls_wait; /* flushing the go-ahead before the handshake */
	bool starttls_req;  /* set inside on_input: discard the rest */
	/* life cycle */
	bool opened;         /* on_open was called */
	bool paused;         /* the protocol paused input */
	bool out_high;       /* output was above the high-water mark */
	bool closing;        /* flush, then free */
	bool dead;           /* free now */
	bool eof;            /* the peer sent FIN / close_notify */
	bool wrote;          /* write progress since on_writable */
	bool lingering;      /* FIN sent: discarding input until the peer closes */
	bool held_by_output; /* input waits because the output is high */
	bool proto_partial;  /* the protocol holds part of a command */
	uint64_t linger_bytes;
	enum conn_close_reason reason;
	uint64_t idle_ms;
	void *data;
	uint64_t bytes_in, bytes_out;
	ev_tstamp started;
};

static struct conn *conns;
static size_t nconns;
static uint64_t conn_seq;

static const char *const reason_names[] = {
        [CONN_CLOSE_DONE] = "done",         [CONN_CLOSE_EOF] = "eof",
        [CONN_CLOSE_IO] = "io_error",       [CONN_CLOSE_TIMEOUT] = "timeout",
        [CONN_CLOSE_PROTOCOL] = "protocol", [CONN_CLOSE_OVERFLOW] = "overflow",
        [CONN_CLOSE_TLS] = "tls",           [CONN_CLOSE_SHUTDOWN] = "shutdown",
        [CONN_CLOSE_GATE] = "gate",
};

static bool settle(struct conn *c);
static void process(struct conn *c);

/* --- small helpers ------------------------------------------------------ */

#define LOG_CONN_FMT     "cid=%s listener=%s peer=%s client=%s"
#define LOG_CONN_ARGS(c) (c)->id, (c)->l->name, (c)->peer_str, (c)->client_str

static void abort_conn(struct conn *c, enum conn_close_reason r)
{
	if (!c->closing)
		c->reason = r;
	c->closing = true;
	c->dead = true;
}

/* Output or a close may come from outside the connection's own events
 * (a store callback answering a paused request): the write watcher fires
 * at once on a writable socket and its settle() does the rest. */
static void poke(struct conn *c)
{
	if (!c->dead && c->fd >= 0)
		ev_io_start(c->loop, &c->wio);
}

void conn_close(struct conn *c, enum conn_close_reason reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->reason = reason;
	poke(c);
}

static void set_client(struct conn *c)
{
	net_addr_str(&c->gate.client, c->client_str, sizeof(c->client_str));
	net_addr_ip_str(&c->gate.client, c->client_ip, sizeof(c->client_ip));
}

static const char *ssl_error_text(void)
{
	static char buf[200];
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		return "connection closed during the handshake";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* --- TLS engine --------------------------------------------------------- */

/* Move what OpenSSL produced into tout. */
static int drain_wbio(struct conn *c)
{
	while (BIO_ctrl_pending(c->wbio) > 0) {
		size_t want = BIO_ctrl_pending(c->wbio);
		uint8_t *p;
		int n;

		if (want > READ_CHUNK)
			want = READ_CHUNK;
		p = buf_reserve(&c->tout, want);
		if (p == NULL) {
			abort_conn(c, CONN_CLOSE_OVERFLOW);
			return -1;
		}
		n = BIO_read(c->wbio, p, (int)want);
		if (n <= 0)
			break;
		buf_commit(&c->tout, (size_t)n);
	}
	return 0;
}

static void tls_engage(struct conn *c)
{
	struct tls_ctx *ctx = listener_tls(c->l);

	ASSERT(ctx != NULL && c->ssl == NULL);
	c->ssl = tls_ctx_ssl_new(ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (c->rbio == NULL || c->wbio == NULL)
		fatal("msg=\"out of memory for TLS buffers\"");
	/* An empty read BIO means "retry later", not end of stream. */
	BIO_set_mem_eof_return(c->rbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_accept_state(c->ssl);
	buf_init(&c->tout, TOUT_MAX);
	/* Raw bytes already read (after the PROXY header, or the direct
	 * peer's first bytes) are the start of the ClientHello. */
	if (buf_len(&c->in) > 0) {
		BIO_write(c->rbio, buf_ptr(&c->in), (int)buf_len(&c->in));
		buf_reset(&c->in);
	}
	loop_timer_start(&c->phase, c->l->handshake_ms, 0);
}

static void open_proto(struct conn *c);

static void handshake_done(struct conn *c, bool ok)
{
	struct tls_info ti;

	loop_timer_stop(&c->phase);
	if (!ok) {
		const char *why = ssl_error_text();
		char q[256];

		c->l->metrics->tls_failures++;
		log_info("msg=\"tls handshake failed\" " LOG_CONN_FMT " error=%s", LOG_CONN_ARGS(c),
		         log_quote(q, sizeof(q), why));
		if (c->starttls && c->opened && c->l->proto->on_tls != NULL)
			c->l->proto->on_tls(c, false);
		abort_conn(c, CONN_CLOSE_TLS);
		return;
	}
	c->tls_done = true;
	c->l->metrics->tls_handshakes++;
	tls_ssl_info(c->ssl, &ti);
	log_info("msg=\"tls established\" " LOG_CONN_FMT " version=%s cipher=%s starttls=%s",
	         LOG_CONN_ARGS(c), ti.version, ti.cipher, c->starttls ? "yes" : "no");
	if (c->starttls) {
		if (c->l->proto->on_tls != NULL)
			c->l->proto->on_tls(c, true);
	} else {
		c->state = CS_OPEN;
		open_proto(c);
	}
}

/* Run the handshake or decrypt into `in`.  Returns true on progress. */
static bool tls_pump(struct conn *c)
{
	bool progress = false;

	if (c->ssl == NULL || c->dead)
		return false;
	if (!c->tls_done) {
		int r = SSL_do_handshake(c->ssl);
		if (drain_wbio(c) < 0)
			return false;
		if (r == 1) {
			handshake_done(c, true);
			return true;
		}
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return false;
		default:
			handshake_done(c, false);
			return false;
		}
	}
	while (!c->dead && !c->eof) {
		uint8_t *p = buf_reserve(&c->in, READ_CHUNK);
		size_t room = READ_CHUNK;
		int n, e;

		if (p == NULL) {
			/* `in` is at its bound: take what fits */
			room = c->in.max - buf_len(&c->in);
			if (room == 0)
				break;
			p = buf_reserve(&c->in, room);
			if (p == NULL)
				break;
		}
		n = SSL_read(c->ssl, p, (int)room);
		if (n > 0) {
			buf_commit(&c->in, (size_t)n);
			progress = true;
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (drain_wbio(c) < 0)
			return false;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			c->eof = true;
			break;
		}
		{
			char q[256];
			log_info("msg=\"tls error\" " LOG_CONN_FMT " error=%s", LOG_CONN_ARGS(c),
			         log_quote(q, sizeof(q), ssl_error_text()));
		}
		abort_conn(c, CONN_CLOSE_TLS);
		return false;
	}
	drain_wbio(c);
	return progress;
}

/* --- the protocol side -------------------------------------------------- */

static void open_proto(struct conn *c)
{
	if (c->l->proto == NULL) {
		log_warn("msg=\"no protocol for this role yet; closing\" " LOG_CONN_FMT " role=%s",
		         LOG_CONN_ARGS(c), mailbox_role_name(c->l->role));
		abort_conn(c, CONN_CLOSE_PROTOCOL);
		return;
	}
	c->opened = true;
	loop_timer_touch(&c->idle, c->idle_ms);
	if (c->l->proto->on_open(c) < 0)
		conn_close(c, CONN_CLOSE_PROTOCOL);
}

/* The gate's check of a direct peer's first bytes; true to go on. */
static bool spoof_check(struct conn *c)
{
	size_t used = 0;
	enum proxy_verdict v;

	if (proxy_gate_done(&c->gate) || buf_len(&c->in) == 0)
		return proxy_gate_done(&c->gate);
	v = proxy_gate_input(&c->gate, &c->l->proxy, buf_ptr(&c->in), buf_len(&c->in), &used);
	if (v == PROXY_V_NEED_MORE)
		return false;
	if (v == PROXY_V_SPOOF) {
		metrics_proxy_error(c->l->metrics, "spoof");
		log_warn("msg=\"PROXY header from a peer that is not trusted: dropped as a "
		         "spoof\" " LOG_CONN_FMT,
		         LOG_CONN_ARGS(c));
		abort_conn(c, CONN_CLOSE_GATE);
		return false;
	}
	return true;
}

/* Offer `in` to the protocol. */
static bool feed_proto(struct conn *c)
{
	bool progress = false;

	for (int round = 0; round < FEED_ROUNDS; round++) {
		ssize_t n;
		size_t len = buf_len(&c->in);

		if (c->state != CS_OPEN || !c->opened || c->closing || c->paused ||
		    c->starttls_wait || len == 0)
			break;
		if (conn_out_high(c)) {
			/* resumed by settle() once the output drained */
			c->held_by_output = true;
			break;
		}
		if (!spoof_check(c))
			break;
		n = c->l->proto->on_input(c, buf_ptr(&c->in), len);
		if (n < 0) {
			conn_close(c, CONN_CLOSE_PROTOCOL);
			break;
		}
		ASSERT((size_t)n <= len);
		buf_consume(&c->in, (size_t)n);
		if (c->starttls_req) {
			/* RFC 3207 6 / RFC 9051 11.1: nothing sent before the
			 * handshake may be read as if it came through it. */
			c->starttls_req = false;
			if (buf_len(&c->in) > 0)
				log_info("msg=\"discarded plaintext after STARTTLS\" " LOG_CONN_FMT
				         " bytes=%zu",
				         LOG_CONN_ARGS(c), buf_len(&c->in));
			buf_reset(&c->in);
			progress = true;
			break;
		}
		if (n == 0)
			break;
		progress = true;
	}
	if (!c->closing && c->opened && !c->paused && !c->starttls_wait &&
	    buf_len(&c->in) >= c->in.max && !conn_out_high(c)) {
		log_info("msg=\"input bound reached without a complete command\" " LOG_CONN_FMT
		         " bytes=%zu",
		         LOG_CONN_ARGS(c), buf_len(&c->in));
		conn_close(c, CONN_CLOSE_OVERFLOW);
	}
	/* The command timer runs while a partial command sits in `in` or in
	 * the protocol's own buffers (conn_set_partial). */
	if (c->opened && (buf_len(&c->in) > 0 || c->proto_partial) && !c->paused) {
		if (!loop_timer_active(&c->command))
			loop_timer_start(&c->command, c->l->command_ms, 0);
	} else {
		loop_timer_stop(&c->command);
	}
	return progress;
}

/* --- the gate and the ban check ----------------------------------------- */

static void after_check(struct conn *c)
{
	if (c->l->tls_mode == MAILBOX_TLS_IMPLICIT) {
		c->state = CS_HANDSHAKE;
		if (proxy_gate_done(&c->gate))
			tls_engage(c);
		else
			loop_timer_start(&c->phase, c->l->handshake_ms, 0);
		return;
	}
	c->state = CS_OPEN;
	open_proto(c);
}

static void on_checked(void *arg, bool banned, const char *reason)
{
	struct conn *c = arg;

	c->check = NULL;
	if (banned) {
		char q[128];
		c->l->metrics->rejected_banned++;
		log_info("msg=\"client banned: connection refused\" " LOG_CONN_FMT " reason=%s",
		         LOG_CONN_ARGS(c), log_quote(q, sizeof(q), reason));
		abort_conn(c, CONN_CLOSE_GATE);
	} else {
		after_check(c);
		process(c);
	}
	settle(c);
}

static void gate_passed(struct conn *c)
{
	set_client(c);
	if (c->gate.via_proxy)
		log_info("msg=\"connection\" " LOG_CONN_FMT " proxy=v%u", LOG_CONN_ARGS(c),
		         c->gate.pp_version);
	else if (c->gate.no_client)
		log_info("msg=\"connection\" " LOG_CONN_FMT " proxy=local", LOG_CONN_ARGS(c));
	else
		log_info("msg=\"connection\" " LOG_CONN_FMT " proxy=none", LOG_CONN_ARGS(c));
	c->state = CS_CHECK;
	c->check = abuse_check(c->server, &c->gate.client, c->gate.no_client, on_checked, c);
	if (c->check == NULL)
		after_check(c);
}

static bool run_gate(struct conn *c)
{
	size_t used = 0;
	enum proxy_verdict v;

	v = proxy_gate_input(&c->gate, &c->l->proxy, buf_ptr(&c->in), buf_len(&c->in), &used);
	switch (v) {
	case PROXY_V_NEED_MORE:
		return false;
	case PROXY_V_SERVE:
		buf_consume(&c->in, used);
		loop_timer_stop(&c->phase);
		gate_passed(c);
		return true;
	case PROXY_V_BAD_HEADER: {
		const char *why = pp_status_name(c->gate.pp_status);
		metrics_proxy_error(c->l->metrics, why);
		log_warn("msg=\"malformed PROXY header from a trusted peer: dropped\" " LOG_CONN_FMT
		         " reason=%s detail=\"%s\"",
		         LOG_CONN_ARGS(c), why, pp_strerror(c->gate.pp_status));
		break;
	}
	default:
		metrics_proxy_error(c->l->metrics, "other");
		log_warn("msg=\"PROXY gate refused the connection\" " LOG_CONN_FMT " verdict=%s",
		         LOG_CONN_ARGS(c), proxy_verdict_name(v));
		break;
	}
	abort_conn(c, CONN_CLOSE_GATE);
	return false;
}

/* --- processing --------------------------------------------------------- */

/* Do everything the buffered bytes allow: gate, spoof check, TLS,
 * protocol input, until nothing moves. */
static void process(struct conn *c)
{
	for (int guard = 0; !c->dead; guard++) {
		if (guard == 1000) {
			/* still moving: yield to other connections, go on next round */
			loop_timer_start(&c->kick, 0, 0);
			break;
		}
		bool progress = false;

		switch (c->state) {
		case CS_GATE:
			progress = run_gate(c);
			break;
		case CS_CHECK:
			break;
		case CS_HANDSHAKE:
			if (c->ssl == NULL) {
				if (spoof_check(c)) {
					tls_engage(c);
					progress = true;
				}
			} else {
				progress = tls_pump(c);
			}
			break;
		case CS_OPEN:
			if (c->ssl != NULL && !c->starttls_wait)
				progress = tls_pump(c);
			if (!c->dead)
				progress |= feed_proto(c);
			break;
		}
		if (!progress)
			break;
	}
}

/* --- socket I/O ---------------------------------------------------------- */

static bool want_read(const struct conn *c)
{
	if (c->lingering)
		return true;
	if (c->closing || c->eof || c->state == CS_CHECK || c->starttls_wait)
		return false;
	if (c->state == CS_OPEN && (c->paused || conn_out_high(c)))
		return false;
	if (c->ssl != NULL)
		return BIO_ctrl_pending(c->rbio) < RBIO_HIGH;
	return buf_len(&c->in) < c->in.max;
}

static void do_read(struct conn *c)
{
	uint8_t tmp[READ_CHUNK];
	uint8_t *p;
	size_t room;
	ssize_t n;

	if (c->ssl != NULL) {
		p = tmp;
		room = sizeof(tmp);
	} else {
		room = c->in.max - buf_len(&c->in);
		if (room > READ_CHUNK)
			room = READ_CHUNK;
		p = room > 0 ? buf_reserve(&c->in, room) : NULL;
		if (p == NULL)
			return;
	}
	n = read(c->fd, p, room);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_info("msg=\"read failed\" " LOG_CONN_FMT " error=\"%s\"", LOG_CONN_ARGS(c),
		         strerror(errno));
		abort_conn(c, CONN_CLOSE_IO);
		return;
	}
	if (n == 0) {
		c->eof = true;
		return;
	}
	c->bytes_in += (uint64_t)n;
	if (c->opened)
		loop_timer_touch(&c->idle, c->idle_ms);
	if (c->ssl != NULL)
		BIO_write(c->rbio, tmp, (int)n);
	else
		buf_commit(&c->in, (size_t)n);
}

/* Encrypt pending output (TLS) and write what waits for the socket. */
static void flush(struct conn *c)
{
	for (;;) {
		struct buf *raw = c->ssl != NULL ? &c->tout : &c->out;

		if (c->ssl != NULL && c->tls_done) {
			while (buf_len(&c->out) > 0 && buf_len(&c->tout) < TOUT_HIGH) {
				size_t n = buf_len(&c->out);
				int w;

				if (n > READ_CHUNK)
					n = READ_CHUNK;
				/* A memory BIO never blocks, so a write is whole. */
				w = SSL_write(c->ssl, buf_ptr(&c->out), (int)n);
				if (w <= 0) {
					int e = SSL_get_error(c->ssl, w);
					drain_wbio(c);
					if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
						break;
					abort_conn(c, CONN_CLOSE_TLS);
					return;
				}
				buf_consume(&c->out, (size_t)w);
				if (drain_wbio(c) < 0)
					return;
			}
		}
		while (buf_len(raw) > 0) {
			ssize_t n = write(c->fd, buf_ptr(raw), buf_len(raw));
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return;
				if (errno == EINTR)
					continue;
				if (errno != EPIPE && errno != ECONNRESET)
					log_info("msg=\"write failed\" " LOG_CONN_FMT
					         " error=\"%s\"",
					         LOG_CONN_ARGS(c), strerror(errno));
				abort_conn(c, CONN_CLOSE_IO);
				return;
			}
			buf_consume(raw, (size_t)n);
			c->bytes_out += (uint64_t)n;
			c->wrote = true;
			if (c->opened)
				loop_timer_touch(&c->idle, c->idle_ms);
		}
		/* the socket took everything: more plaintext may now fit */
		if (c->ssl == NULL || !c->tls_done || buf_len(&c->out) == 0)
			return;
	}
}

static bool socket_pending(const struct conn *c)
{
	if (c->ssl != NULL)
		return buf_len(&c->tout) > 0 || (c->tls_done && buf_len(&c->out) > 0);
	return buf_len(&c->out) > 0;
}

/* --- teardown ------------------------------------------------------------- */

static void destroy(struct conn *c)
{
	if (c->opened && c->l->proto->on_close != NULL)
		c->l->proto->on_close(c, c->reason);
	log_info("msg=\"closed\" " LOG_CONN_FMT " reason=%s bytes_in=%" PRIu64 " bytes_out=%" PRIu64
	         " duration_ms=%.0f",
	         LOG_CONN_ARGS(c), reason_names[c->reason], c->bytes_in, c->bytes_out,
	         (ev_now(c->loop) - c->started) * 1000.0);
	abuse_req_cancel(&c->check);
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	loop_timer_stop(&c->phase);
	loop_timer_stop(&c->idle);
	loop_timer_stop(&c->command);
	loop_timer_stop(&c->kick);
	if (c->ssl != NULL)
		SSL_free(c->ssl); /* frees the BIOs too */
	buf_free(&c->tout);
	buf_free(&c->in);
	buf_free(&c->out);
	close(c->fd);
	if (c->l->metrics->active > 0)
		c->l->metrics->active--;
	*c->pprev = c->next;
	if (c->next != NULL)
		c->next->pprev = c->pprev;
	nconns--;
	listener_unref(&c->l);
	free(c);
}

/*
 * After any event: flush, free a finished connection, call on_writable,
 * and set the watchers.  Returns true if c was freed.
 */
static bool settle(struct conn *c)
{
	for (int guard = 0; guard < 8; guard++) {
		if (c->dead) {
			destroy(c);
			return true;
		}
		flush(c);
		if (c->dead)
			continue;
		/* STARTTLS: the go-ahead is out, start the handshake. */
		if (c->starttls_wait && !socket_pending(c)) {
			c->starttls_wait = false;
			c->starttls = true;
			tls_engage(c);
			tls_pump(c);
			continue;
		}
		if (c->eof && !c->closing) {
			/* the peer is done: answer what it sent, then close */
			process(c);
			if (c->state == CS_GATE && !c->dead) {
				metrics_proxy_error(c->l->metrics, "closed");
				log_info("msg=\"peer closed before its PROXY header was "
				         "complete\" " LOG_CONN_FMT " bytes=%zu",
				         LOG_CONN_ARGS(c), buf_len(&c->in));
				abort_conn(c, CONN_CLOSE_EOF);
				continue;
			}
			if (!c->closing)
				conn_close(c, CONN_CLOSE_EOF);
			continue;
		}
		if (c->closing && !socket_pending(c) && !c->lingering) {
			if (c->ssl != NULL && c->tls_done && !c->eof) {
				/* best effort close_notify (RFC 8446 6.1) */
				SSL_shutdown(c->ssl);
				drain_wbio(c);
				if (buf_len(&c->tout) > 0)
					(void)!write(c->fd, buf_ptr(&c->tout), buf_len(&c->tout));
			}
			if (c->eof || shutdown(c->fd, SHUT_WR) < 0) {
				c->dead = true;
				continue;
			}
			/* Lingering close: a close(2) with unread input makes the
			 * kernel send a reset, which can destroy our last reply
			 * (an HTTP 413 while the client still uploads) before the
			 * client reads it.  So send FIN, then read and discard
			 * until the client closes, for a short bounded time. */
			c->lingering = true;
			loop_timer_stop(&c->idle);
			loop_timer_stop(&c->command);
			loop_timer_start(&c->phase, LINGER_MS, 0);
		}
		if (c->held_by_output && !conn_out_high(c)) {
			/* input waited for the output to drain: offer it now */
			c->held_by_output = false;
			process(c);
			continue;
		}
		if (c->opened && !c->closing && c->wrote && c->l->proto->on_writable != NULL &&
		    ((c->out_high && !conn_out_high(c) && buf_len(&c->out) <= c->out.max / 4) ||
		     buf_len(&c->out) == 0)) {
			c->wrote = false;
			c->out_high = false;
			c->l->proto->on_writable(c);
			/* it may have produced input progress too */
			process(c);
			if (socket_pending(c) || c->dead || c->closing)
				continue;
		}
		break;
	}
	if (c->dead) {
		destroy(c);
		return true;
	}
	/* out of rounds with input still waiting: continue from the loop */
	if (c->held_by_output && !conn_out_high(c))
		loop_timer_start(&c->kick, 0, 0);
	if (want_read(c))
		ev_io_start(c->loop, &c->rio);
	else
		ev_io_stop(c->loop, &c->rio);
	if (socket_pending(c))
		ev_io_start(c->loop, &c->wio);
	else
		ev_io_stop(c->loop, &c->wio);
	return false;
}

/* --- libev callbacks ------------------------------------------------------ */

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = container_of(w, struct conn, rio);

	(void)loop;
	(void)revents;
	if (c->lingering) {
		uint8_t tmp[READ_CHUNK];
		ssize_t n = read(c->fd, tmp, sizeof(tmp));
		c->linger_bytes += n > 0 ? (uint64_t)n : 0;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
		    c->linger_bytes > LINGER_MAX)
			c->dead = true;
		settle(c);
		return;
	}
	do_read(c);
	if (!c->dead)
		process(c);
	settle(c);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = container_of(w, struct conn, wio);

	(void)loop;
	(void)revents;
	flush(c);
	if (!c->dead)
		process(c);
	settle(c);
}

static void on_phase_timeout(struct loop_timer *t)
{
	struct conn *c = container_of(t, struct conn, phase);

	if (c->lingering) {
		c->dead = true;
	} else if (c->state == CS_GATE) {
		metrics_proxy_error(c->l->metrics, "timeout");
		log_warn("msg=\"no PROXY header from a trusted peer within the timeout: "
		         "dropped\" " LOG_CONN_FMT " timeout_ms=%" PRIu64 " bytes=%zu",
		         LOG_CONN_ARGS(c), c->l->header_timeout_ms, buf_len(&c->in));
		abort_conn(c, CONN_CLOSE_TIMEOUT);
	} else {
		c->l->metrics->tls_failures++;
		log_info("msg=\"tls handshake timed out\" " LOG_CONN_FMT " timeout_ms=%" PRIu64,
		         LOG_CONN_ARGS(c), c->l->handshake_ms);
		if (c->starttls && c->opened && c->l->proto->on_tls != NULL)
			c->l->proto->on_tls(c, false);
		abort_conn(c, CONN_CLOSE_TIMEOUT);
	}
	settle(c);
}

static void on_activity_timeout(struct conn *c, const char *which)
{
	if (c->closing) {
		/* the client does not read what we flush: give up */
		abort_conn(c, CONN_CLOSE_TIMEOUT);
	} else {
		log_info("msg=\"%s timeout\" " LOG_CONN_FMT, which, LOG_CONN_ARGS(c));
		if (c->opened && c->l->proto->on_timeout != NULL)
			c->l->proto->on_timeout(c);
		if (!c->closing)
			conn_close(c, CONN_CLOSE_TIMEOUT);
		else
			c->reason = CONN_CLOSE_TIMEOUT;
		/* the flush of a last reply gets one more idle period */
		loop_timer_start(&c->idle, c->idle_ms, 0);
	}
	settle(c);
}

static void on_idle_timeout(struct loop_timer *t)
{
	on_activity_timeout(container_of(t, struct conn, idle), "idle");
}

static void on_command_timeout(struct loop_timer *t)
{
	on_activity_timeout(container_of(t, struct conn, command), "command");
}

static void on_kick(struct loop_timer *t)
{
	struct conn *c = container_of(t, struct conn, kick);

	process(c);
	settle(c);
}

/* --- accept ----------------------------------------------------------------- */

void conn_accept(struct listener *l, int fd, const struct net_addr *peer)
{
	struct ev_loop *loop = server_loop(l->server);
	struct conn *c;
	enum proxy_verdict v;

	if (server_draining(l->server)) {
		close(fd);
		return;
	}
	if ((int64_t)l->metrics->active >= l->max_connections) {
		char ps[NET_ADDRSTRLEN];
		l->metrics->rejected_full++;
		log_warn("msg=\"max_connections reached: connection closed\" listener=%s peer=%s "
		         "max=%" PRId64,
		         l->name, net_addr_str(peer, ps, sizeof(ps)), l->max_connections);
		close(fd);
		return;
	}
	(void)loop_tcp_nodelay(fd);
	(void)loop_tcp_keepalive(fd, 120, 30, 4);
	c = xcalloc(1, sizeof(*c));
	listener_ref(l);
	c->l = l;
	c->server = l->server;
	c->loop = loop;
	c->fd = fd;
	c->started = ev_now(loop);
	c->idle_ms = l->idle_ms;
	snprintf(c->id, sizeof(c->id), "%04x%06" PRIx64, (unsigned)getpid() & 0xffff,
	         ++conn_seq & 0xffffff);
	buf_init(&c->in, l->in_max);
	buf_init(&c->out, l->out_max);
	ev_io_init(&c->rio, on_readable, fd, EV_READ);
	ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
	loop_timer_init(&c->phase, loop, on_phase_timeout);
	loop_timer_init(&c->idle, loop, on_idle_timeout);
	loop_timer_init(&c->command, loop, on_command_timeout);
	loop_timer_init(&c->kick, loop, on_kick);
	c->next = conns;
	if (conns != NULL)
		conns->pprev = &c->next;
	c->pprev = &conns;
	conns = c;
	nconns++;
	l->metrics->accepted++;
	l->metrics->active++;
	net_addr_str(peer, c->peer_str, sizeof(c->peer_str));

	v = proxy_gate_start(&c->gate, &l->proxy, peer);
	set_client(c);
	switch (v) {
	case PROXY_V_REFUSE:
		metrics_proxy_error(l->metrics, "refused_untrusted");
		log_warn("msg=\"peer not trusted by this listener: refused\" " LOG_CONN_FMT,
		         LOG_CONN_ARGS(c));
		abort_conn(c, CONN_CLOSE_GATE);
		break;
	case PROXY_V_NEED_MORE:
		/* A trusted peer: its header first, nothing sent until then. */
		c->state = CS_GATE;
		log_debug("msg=\"waiting for the PROXY header\" " LOG_CONN_FMT, LOG_CONN_ARGS(c));
		loop_timer_start(&c->phase, l->header_timeout_ms, 0);
		break;
	default:
		gate_passed(c);
		break;
	}
	if (!c->dead)
		process(c);
	settle(c);
}

void conn_shutdown_all(struct server *s)
{
	struct conn *c, *n;

	for (c = conns; c != NULL; c = n) {
		n = c->next;
		if (c->server != s)
			continue;
		if (!c->opened) {
			abort_conn(c, CONN_CLOSE_SHUTDOWN);
		} else if (!c->closing) {
			if (c->l->proto->on_shutdown != NULL)
				c->l->proto->on_shutdown(c);
			else
				conn_close(c, CONN_CLOSE_SHUTDOWN);
		}
		settle(c);
	}
}

void conn_close_all(struct server *s)
{
	struct conn *c, *n;

	for (c = conns; c != NULL; c = n) {
		n = c->next;
		if (c->server != s)
			continue;
		abort_conn(c, CONN_CLOSE_SHUTDOWN);
		settle(c);
	}
}

size_t conn_close_client(struct server *s, const char *ip)
{
	struct conn *c, *n;
	size_t count = 0;

	for (c = conns; c != NULL; c = n) {
		n = c->next;
		if (c->server != s || c->gate.no_client || strcmp(c->client_ip, ip) != 0)
			continue;
		if (abuse_exempt(s, &c->gate.client, c->gate.no_client))
			continue;
		log_info("msg=\"client banned: closing its session\" " LOG_CONN_FMT,
		         LOG_CONN_ARGS(c));
		c->l->metrics->rejected_banned++;
		/* what was already answered still goes out */
		conn_close(c, CONN_CLOSE_GATE);
		settle(c);
		count++;
	}
	return count;
}

size_t conn_count(void)
{
	return nconns;
}

/* --- for protocols ---------------------------------------------------------- */

int conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->dead)
		return -1;
	if (buf_append(&c->out, p, n) < 0) {
		log_info("msg=\"output bound reached\" " LOG_CONN_FMT " pending=%zu",
		         LOG_CONN_ARGS(c), buf_len(&c->out));
		abort_conn(c, CONN_CLOSE_OVERFLOW);
		return -1;
	}
	if (conn_out_high(c))
		c->out_high = true;
	poke(c);
	return 0;
}

int conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	char *big = NULL;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return conn_write(c, small, (size_t)n);
	big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	rc = conn_write(c, big, (size_t)n);
	free(big);
	return rc;
}

size_t conn_out_pending(const struct conn *c)
{
	return buf_len(&c->out) + (c->ssl != NULL ? buf_len(&c->tout) : 0);
}

bool conn_out_high(const struct conn *c)
{
	return buf_len(&c->out) > c->out.max / 2;
}

int conn_starttls(struct conn *c)
{
	if (!conn_starttls_available(c))
		return -1;
	c->starttls_wait = true;
	c->starttls_req = true;
	loop_timer_stop(&c->command);
	return 0;
}

bool conn_starttls_available(const struct conn *c)
{
	return c->ssl == NULL && !c->starttls_wait && listener_tls(c->l) != NULL &&
	       c->l->tls_mode == MAILBOX_TLS_STARTTLS;
}

void conn_pause_read(struct conn *c, bool paused)
{
	if (c->paused == paused)
		return;
	c->paused = paused;
	if (!paused) {
		/* Offer the buffered input from the loop, not from inside the
		 * caller (which may be the protocol itself). */
		loop_timer_start(&c->kick, 0, 0);
	} else {
		loop_timer_stop(&c->command);
	}
	if (!c->dead) {
		if (want_read(c))
			ev_io_start(c->loop, &c->rio);
		else
			ev_io_stop(c->loop, &c->rio);
	}
}

void conn_set_partial(struct conn *c, bool partial)
{
	c->proto_partial = partial;
}

void conn_set_idle_timeout(struct conn *c, uint64_t ms)
{
	c->idle_ms = ms != 0 ? ms : c->l->idle_ms;
	if (c->opened)
		loop_timer_touch(&c->idle, c->idle_ms);
}

void conn_set_data(struct conn *c, void *data)
{
	c->data = data;
}

void *conn_data(const struct conn *c)
{
	return c->data;
}

const struct net_addr *conn_client(const struct conn *c)
{
	return &c->gate.client;
}

const struct net_addr *conn_peer(const struct conn *c)
{
	return &c->gate.peer;
}

const char *conn_client_ip(const struct conn *c)
{
	return c->client_ip;
}

const char *conn_id(const struct conn *c)
{
	return c->id;
}

bool conn_no_client(const struct conn *c)
{
	return c->gate.no_client;
}

bool conn_via_proxy(const struct conn *c)
{
	return c->gate.via_proxy;
}

bool conn_tls_active(const struct conn *c, struct tls_info *info)
{
	if (c->ssl == NULL || !c->tls_done)
		return false;
	if (info != NULL)
		tls_ssl_info(c->ssl, info);
	return true;
}

const char *conn_listener_name(const struct conn *c)
{
	return c->l->name;
}

int conn_role(const struct conn *c)
{
	return c->l->role;
}

struct server *conn_server(const struct conn *c)
{
	return c->server;
}

struct listener *conn_listener(const struct conn *c)
{
	return c->l;
}
