/*
 * mailbox/outbound/transport.c -- outbound SMTP connections (see transport.h).
 *
 * Objects:
 *   send  one job: its copied message, its body cursor, its results; it
 *         waits in its destination's line, then rides one connection;
 *   dest  a destination (a relay route's host/port/TLS/credentials, or a
 *         recipient domain for mx): its TLS context, its connections and
 *         the line of sends waiting for one;
 *   conn  one TCP connection (and its targets: the MX hosts or the relay
 *         host, each with its addresses, tried in order), with TLS and the
 *         smtp_client state machine.
 *
 * The smtp_client calls back from inside smtp_client_input() and friends;
 * those callbacks only record what happened (flags on the conn), and
 * conn_settle() acts on them afterwards: start a TLS handshake, hand the
 * results to the send, reuse or close the connection, or fall back to the
 * next address or MX host.  A send's callback always runs from its own
 * zero timer, so the user may do anything in it.
 *
 * Opportunistic STARTTLS (tls_fallback.h): when the handshake fails, the
 * address is remembered as "TLS broken" for an hour and the same address
 * is tried once more without STARTTLS; while remembered, sessions to it
 * skip STARTTLS.  Never for starttls/implicit routes or with verify.
 */
#include "mailbox/outbound/transport.h"

#include "mailbox/outbound/resolve.h"
#include "mailbox/outbound/tls_fallback.h"
#include "shared/log.h"
#include "shared/tls.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY_CHUNK (64 * 1024)
#define READ_CHUNK (16 * 1024)

struct dest;
struct conn;

struct outbound_transport {
	struct ev_loop *loop;
	struct outbound_resolver *res;
	char *helo;
	uint64_t connect_ms;
	uint64_t reuse_ms;
	unsigned max_per_dest;
	struct dest *dests;
	struct outbound_send *sends; /* every live send */
	struct outbound_transport_stats st;
	/* addresses whose STARTTLS handshake failed lately: opportunistic
	 * sessions to them skip STARTTLS (tls_fallback.h) */
	struct tls_fallback_cache *tls_broken;
};

/* A copy of what the route says about the connection. */
struct dest {
	struct outbound_transport *t;
	struct dest *prev, *next;
	char *key;
	bool mx;
	char *host; /* relay: the host; mx: the recipient domain */
	uint16_t port;
	int tls; /* enum outbound_tls */
	bool verify;
	char *ca_file;
	char *auth_user, *auth_pass;
	SSL_CTX *ssl_ctx; /* made on first use */
	struct conn *conns;
	unsigned nconns;
	struct outbound_send *wait_head, *wait_tail;
	int busy; /* inside dest_dispatch(): not freed */
};

enum conn_state {
	C_RESOLVING,  /* MX or addresses */
	C_CONNECTING, /* TCP */
	C_HANDSHAKE,  /* TLS (implicit, or after STARTTLS) */
	C_SMTP,       /* the smtp_client drives */
	C_IDLE,       /* in the pool, waiting for the next message */
};

struct target {
	char *host;
	struct net_addr *addrs;
	size_t naddrs;
	bool resolved;
};

struct conn {
	struct dest *d;
	struct conn *prev, *next;
	enum conn_state state;
	int fd;
	SSL *ssl;
	bool starttls;     /* the handshake follows STARTTLS (not implicit) */
	bool tls_fallback; /* the STARTTLS handshake failed and the policy allows
	                      plain text: connect again to the same address */
	ev_io io;
	ev_timer timer;
	struct smtp_client *client;
	struct outbound_send *send;
	struct resolve_query *query;
	/* where to connect, in order */
	struct target *targets;
	size_t ntargets, ti, ai;
	bool dns_perm;    /* every target failed permanently in DNS */
	char *last_error; /* why the last address or host failed */
	char addr_str[NET_ADDRSTRLEN];
	uint64_t messages; /* sent on this connection */
	/* set by smtp_client callbacks, acted on by conn_settle() */
	bool want_tls;
	bool msg_done;
	bool closed;
	bool want_write; /* SSL wants the socket writable */
	bool eof;
	bool requeue;       /* the send goes back in line for a fresh connection */
	unsigned fallbacks; /* plain-text reconnections so far (a loop guard) */
};

struct outbound_send {
	struct outbound_transport *t;
	struct outbound_send *prev, *next; /* in t->sends */
	struct outbound_send *wnext;       /* in its dest's line */
	struct dest *d;
	struct conn *conn;
	const struct mailbox_route_conf *route;
	outbound_done_cb *cb;
	void *arg;
	ev_timer tick; /* start, then deliver the results */
	bool started, waiting, finished;
	bool retried; /* already requeued once after a reused connection failed */
	/* the message */
	struct smtp_client_msg msg;
	struct smtp_client_rcpt *rcpts;
	char *from, *envid, *domain;
	char *prefix;
	size_t prefix_len;
	int fd;
	uint64_t offset, length, pos;
	uint8_t *chunk;
	/* the results */
	struct smtp_client_result *res;
	char *mx_host;
	char **owned; /* strings the rcpts and results point into */
	size_t nowned;
};

static const char *send_own(struct outbound_send *s, const char *str)
{
	char *p = xstrdup(str);

	s->owned = xreallocarray(s->owned, s->nowned + 1, sizeof(*s->owned));
	s->owned[s->nowned++] = p;
	return p;
}

static void conn_settle(struct conn *c);
static void conn_free(struct conn *c);
static void conn_next_target(struct conn *c);
static void dest_dispatch(struct dest *d);

/* --- results --------------------------------------------------------------- */

/* Record results (copied) and schedule the callback. */
static void send_finish(struct outbound_send *s, const struct smtp_client_result *res, size_t n,
                        const char *mx_host)
{
	struct outbound_transport *t = s->t;

	if (s->finished)
		return;
	s->finished = true;
	s->res = xcalloc(s->msg.nrcpts, sizeof(*s->res));
	for (size_t i = 0; i < s->msg.nrcpts; i++) {
		const struct smtp_client_result *r = &res[i < n ? i : n - 1];
		s->res[i] = *r;
		s->res[i].esc = send_own(s, r->esc != NULL ? r->esc : "");
		s->res[i].text = send_own(s, r->text != NULL ? r->text : "");
		if (r->outcome == SMTP_CLIENT_DELIVERED)
			t->st.delivered++;
		else if (r->outcome == SMTP_CLIENT_PERMFAIL)
			t->st.permfail++;
		else
			t->st.tempfail++;
	}
	s->mx_host = mx_host != NULL ? xstrdup(mx_host) : NULL;
	s->conn = NULL;
	ev_timer_stop(t->loop, &s->tick);
	ev_timer_set(&s->tick, 0., 0.);
	ev_timer_start(t->loop, &s->tick);
}

/* The same local outcome for every recipient. */
static void send_fail(struct outbound_send *s, enum smtp_client_outcome o, const char *esc,
                      const char *text, const char *mx_host)
{
	struct smtp_client_result r = {
	        .outcome = o,
	        .stage = SMTP_CLIENT_STAGE_SESSION,
	        .code = 0,
	        .esc = esc,
	        .text = text,
	};

	send_finish(s, &r, 1, mx_host);
}

/* Out of the transport's list: the transport no longer knows it. */
static void send_unlink(struct outbound_send *s)
{
	struct outbound_transport *t = s->t;

	ev_timer_stop(t->loop, &s->tick);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		t->sends = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	t->st.active--;
}

static void send_release(struct outbound_send *s)
{
	for (size_t i = 0; i < s->nowned; i++)
		free(s->owned[i]);
	free(s->owned);
	free(s->rcpts);
	free(s->res);
	free(s->from);
	free(s->envid);
	free(s->domain);
	free(s->prefix);
	free(s->chunk);
	free(s->mx_host);
	free(s);
}

static void send_free(struct outbound_send *s)
{
	send_unlink(s);
	send_release(s);
}

/* --- destinations ---------------------------------------------------------- */

static void dest_free(struct dest *d)
{
	struct outbound_transport *t = d->t;

	if (d->prev != NULL)
		d->prev->next = d->next;
	else
		t->dests = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	if (d->ssl_ctx != NULL)
		SSL_CTX_free(d->ssl_ctx);
	free(d->key);
	free(d->host);
	free(d->ca_file);
	free(d->auth_user);
	if (d->auth_pass != NULL) {
		explicit_bzero(d->auth_pass, strlen(d->auth_pass));
		free(d->auth_pass);
	}
	free(d);
}

static void dest_maybe_free(struct dest *d)
{
	if (d->busy == 0 && d->conns == NULL && d->wait_head == NULL)
		dest_free(d);
}

static struct dest *dest_get(struct outbound_transport *t, const struct mailbox_route_conf *r,
                             const char *domain)
{
	bool mx = r == NULL || r->type == OUTBOUND_ROUTE_MX;
	const char *host = mx ? domain : r->host;
	uint16_t port = r != NULL ? (uint16_t)r->port : 25;
	int tls = r != NULL ? r->tls : OUTBOUND_TLS_OPPORTUNISTIC;
	bool verify = r != NULL && r->verify;
	char *key;
	struct dest *d;

	key = xasprintf("%s|%s|%u|%d|%d|%s|%s|%s", mx ? "mx" : "relay", host, port, tls, verify,
	                r != NULL && r->ca_file ? r->ca_file : "",
	                r != NULL && r->auth_user ? r->auth_user : "",
	                r != NULL && r->auth_password ? r->auth_password : "");
	for (d = t->dests; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0) {
			explicit_bzero(key, strlen(key));
			free(key);
			return d;
		}
	d = xcalloc(1, sizeof(*d));
	d->t = t;
	d->key = key;
	d->mx = mx;
	d->host = xstrdup(host);
	d->port = port;
	d->tls = tls;
	d->verify = verify;
	d->ca_file = r != NULL && r->ca_file ? xstrdup(r->ca_file) : NULL;
	d->auth_user = r != NULL && r->auth_user ? xstrdup(r->auth_user) : NULL;
	d->auth_pass = r != NULL && r->auth_password ? xstrdup(r->auth_password) : NULL;
	d->next = t->dests;
	if (d->next != NULL)
		d->next->prev = d;
	t->dests = d;
	return d;
}

/* --- connections: teardown ------------------------------------------------- */

static void conn_close_socket(struct conn *c)
{
	struct ev_loop *loop = c->d->t->loop;

	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->timer);
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	smtp_client_free(&c->client);
	c->want_tls = c->msg_done = c->closed = c->want_write = c->eof = c->requeue = false;
	c->starttls = c->tls_fallback = false;
	c->messages = 0;
}

static void conn_free(struct conn *c)
{
	struct dest *d = c->d;

	outbound_resolve_cancel(&c->query);
	conn_close_socket(c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	d->nconns--;
	for (size_t i = 0; i < c->ntargets; i++) {
		free(c->targets[i].host);
		free(c->targets[i].addrs);
	}
	free(c->targets);
	free(c->last_error);
	free(c);
}

/* The connection is gone; its dest may start another for a waiting send. */
static void conn_drop(struct conn *c)
{
	struct dest *d = c->d;

	conn_free(c);
	dest_dispatch(d);
	dest_maybe_free(d);
}

static void set_error(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	char buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(c->last_error);
	c->last_error = xstrdup(buf);
	{
		char q[600];
		log_info("msg=\"outbound attempt failed\" dest=%s error=%s", c->d->host,
		         log_quote(q, sizeof(q), buf));
	}
}

static const char *cur_host(const struct conn *c)
{
	return c->ti < c->ntargets ? c->targets[c->ti].host : c->d->host;
}

/* --- connections: the smtp_client ------------------------------------------ */

static enum smtp_client_body on_body(void *arg, const struct smtp_client_msg *msg,
                                     const uint8_t **data_r, size_t *len_r)
{
	struct conn *c = arg;
	struct outbound_send *s = c->send;
	ssize_t n;
	size_t want;

	(void)msg;
	if (s == NULL)
		return SMTP_CLIENT_BODY_ERROR;
	if (s->pos < s->prefix_len) {
		*data_r = (const uint8_t *)s->prefix + s->pos;
		*len_r = s->prefix_len - (size_t)s->pos;
		s->pos = s->prefix_len;
		return SMTP_CLIENT_BODY_DATA;
	}
	if (s->pos - s->prefix_len >= s->length)
		return SMTP_CLIENT_BODY_END;
	if (s->chunk == NULL)
		s->chunk = xmalloc(BODY_CHUNK);
	want = s->length - (s->pos - s->prefix_len) < BODY_CHUNK
	               ? (size_t)(s->length - (s->pos - s->prefix_len))
	               : BODY_CHUNK;
	do
		n = pread(s->fd, s->chunk, want, (off_t)(s->offset + s->pos - s->prefix_len));
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		char q[200];
		log_error("msg=\"outbound body read failed\" dest=%s error=%s", c->d->host,
		          log_quote(q, sizeof(q),
		                    n == 0 ? "unexpected end of file" : strerror(errno)));
		return SMTP_CLIENT_BODY_ERROR;
	}
	s->pos += (uint64_t)n;
	*data_r = s->chunk;
	*len_r = (size_t)n;
	return SMTP_CLIENT_BODY_DATA;
}

static void on_starttls(void *arg)
{
	struct conn *c = arg;

	c->want_tls = true;
}

static void on_msg_done(void *arg, const struct smtp_client_msg *msg,
                        const struct smtp_client_result *res, size_t n)
{
	struct conn *c = arg;
	struct outbound_send *s = c->send;
	bool session_soft = n > 0;

	(void)msg;
	c->msg_done = true;
	if (s == NULL)
		return;
	/* The STARTTLS handshake failed on an opportunistic session: the
	 * same address again, without STARTTLS (conn_settle()). */
	if (c->tls_fallback && c->messages == 0)
		return;
	/* Fall back to the next address/host on a session failure that is not
	 * a 5xx (connection lost, 4xx greeting, TLS trouble) before any
	 * transaction. */
	for (size_t i = 0; i < n; i++)
		if (res[i].outcome != SMTP_CLIENT_TEMPFAIL ||
		    res[i].stage != SMTP_CLIENT_STAGE_SESSION || res[i].code >= 500)
			session_soft = false;
	if (session_soft && c->messages == 0 &&
	    (c->ai + 1 < (c->ti < c->ntargets ? c->targets[c->ti].naddrs : 0) ||
	     c->ti + 1 < c->ntargets)) {
		if (res[0].code != 0)
			set_error(c, "%s[%s]: %d %s", cur_host(c), c->addr_str, res[0].code,
			          res[0].text);
		else
			set_error(c, "%s[%s]: %s", cur_host(c), c->addr_str, res[0].text);
		return; /* conn_settle() moves on; the send stays */
	}
	/* A reused connection the server dropped or timed out (421, or lost
	 * before MAIL was answered): once more on a fresh connection. */
	if (c->messages > 0 && !s->retried && n > 0) {
		bool stale = true;
		for (size_t i = 0; i < n; i++)
			if (res[i].outcome != SMTP_CLIENT_TEMPFAIL ||
			    res[i].stage > SMTP_CLIENT_STAGE_MAIL ||
			    (res[i].code != 0 && res[i].code != 421))
				stale = false;
		if (stale) {
			s->retried = true;
			c->requeue = true;
			log_debug(
			        "msg=\"outbound reused connection failed, retrying on a new one\" "
			        "dest=%s",
			        c->d->host);
			return;
		}
	}
	c->messages++;
	c->send = NULL;
	s->conn = NULL;
	send_finish(s, res, n, cur_host(c)); /* the MX or relay host that answered */
}

static void on_closed(void *arg, const char *reason)
{
	struct conn *c = arg;

	if (reason != NULL) {
		char q[400];
		log_debug("msg=\"outbound session closed\" host=%s addr=%s reason=%s", cur_host(c),
		          c->addr_str, log_quote(q, sizeof(q), reason));
	}
	c->closed = true;
}

static const struct smtp_client_ops client_ops = {
        .body = on_body,
        .starttls = on_starttls,
        .ready = NULL,
        .msg_done = on_msg_done,
        .closed = on_closed,
};

/* --- connections: I/O ------------------------------------------------------ */

static void conn_set_io(struct conn *c, int events)
{
	struct ev_loop *loop = c->d->t->loop;

	if ((c->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&c->io))
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	if (events != 0)
		ev_io_start(loop, &c->io);
}

static void conn_set_timer(struct conn *c, double secs)
{
	struct ev_loop *loop = c->d->t->loop;

	ev_timer_stop(loop, &c->timer);
	if (secs > 0) {
		ev_timer_set(&c->timer, secs, 0.);
		ev_timer_start(loop, &c->timer);
	}
}

static const char *ssl_reason(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "connection closed";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* Write what the client has for the server; false on a broken connection. */
static bool conn_flush(struct conn *c)
{
	struct buf *out = smtp_client_output(c->client);

	c->want_write = false;
	while (buf_len(out) > 0) {
		ssize_t n;

		if (c->ssl != NULL) {
			int r;
			ERR_clear_error();
			r = SSL_write(c->ssl, buf_ptr(out),
			              buf_len(out) > INT32_MAX ? INT32_MAX : (int)buf_len(out));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					c->want_write = true;
					return true;
				}
				c->eof = true;
				smtp_client_abort(c->client, "TLS write failed");
				return false;
			}
			n = r;
		} else {
			n = send(c->fd, buf_ptr(out), buf_len(out), MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					c->want_write = true;
					return true;
				}
				char why[200];
				snprintf(why, sizeof(why), "write: %s", strerror(errno));
				c->eof = true;
				smtp_client_abort(c->client, why);
				return false;
			}
		}
		buf_consume(out, (size_t)n);
		/* room for more body */
		if (buf_len(out) == 0)
			smtp_client_pump(c->client);
	}
	return true;
}

/* Feed what the server sent to the client. */
static void conn_read(struct conn *c)
{
	uint8_t b[READ_CHUNK];

	for (int rounds = 0; rounds < 16 && c->client != NULL && !c->closed && !c->want_tls;
	     rounds++) {
		ssize_t n;

		if (c->ssl != NULL) {
			int r;
			ERR_clear_error();
			r = SSL_read(c->ssl, b, sizeof(b));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ)
					return;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->want_write = true;
					return;
				}
				c->eof = true;
				if (!smtp_client_closed(c->client))
					smtp_client_abort(
					        c->client,
					        e == SSL_ERROR_ZERO_RETURN
					                ? "connection closed by the server"
					                : ssl_reason());
				return;
			}
			n = r;
		} else {
			n = recv(c->fd, b, sizeof(b), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (n <= 0) {
				char why[200];
				c->eof = true;
				snprintf(why, sizeof(why), "%s",
				         n == 0 ? "connection closed by the server"
				                : strerror(errno));
				if (!smtp_client_closed(c->client))
					smtp_client_abort(c->client, why);
				return;
			}
		}
		smtp_client_input(c->client, b, (size_t)n);
	}
}

static void conn_update_io(struct conn *c)
{
	unsigned secs;

	if (c->state == C_IDLE) {
		conn_set_io(c, EV_READ);
		conn_set_timer(c, (double)c->d->t->reuse_ms / 1000.0);
		return;
	}
	conn_set_io(c, EV_READ | (c->want_write || buf_len(smtp_client_output(c->client)) > 0
	                                  ? EV_WRITE
	                                  : 0));
	secs = smtp_client_timeout(c->client);
	conn_set_timer(c, secs);
}

/* --- connections: TLS ------------------------------------------------------ */

static SSL_CTX *dest_ssl_ctx(struct dest *d, const char **errstr_r)
{
	if (d->ssl_ctx == NULL)
		d->ssl_ctx = tls_client_ctx_new(d->verify, d->ca_file, errstr_r);
	return d->ssl_ctx;
}

static void conn_start_smtp(struct conn *c);

static uint64_t now_ms(const struct outbound_transport *t)
{
	double now = ev_now(t->loop);

	return now > 0 ? (uint64_t)(now * 1000.0) : 0;
}

/* The STARTTLS handshake failed: when the route's policy allows plain
 * text, remember the address as "TLS broken" and have conn_settle()
 * connect to it again without STARTTLS. */
static void conn_tls_broken(struct conn *c, const char *why)
{
	struct dest *d = c->d;
	char key[TLS_FALLBACK_KEY_MAX], q[400];

	if (!tls_fallback_allowed(d->tls, d->verify))
		return;
	tls_fallback_cache_add(d->t->tls_broken,
	                       tls_fallback_key(key, sizeof(key), c->addr_str, d->port),
	                       now_ms(d->t), TLS_FALLBACK_TTL_MS);
	c->tls_fallback = c->send != NULL && c->fallbacks < 16;
	log_warn("msg=\"outbound tls failed, falling back to plain text\" dest=%s host=%s addr=%s "
	         "port=%u error=%s plain_for=%us retry_now=%s",
	         d->host, cur_host(c), c->addr_str, (unsigned)d->port,
	         log_quote(q, sizeof(q), why != NULL ? why : "?"),
	         (unsigned)(TLS_FALLBACK_TTL_MS / 1000u), c->tls_fallback ? "yes" : "no");
}

static void conn_handshake_done(struct conn *c, bool ok, const char *why)
{
	struct outbound_transport *t = c->d->t;

	if (ok) {
		struct tls_info ti;
		tls_ssl_info(c->ssl, &ti);
		t->st.tls++;
		log_info(
		        "msg=\"outbound tls\" dest=%s host=%s addr=%s version=%s cipher=%s bits=%d "
		        "verified=%s",
		        c->d->host, cur_host(c), c->addr_str, ti.version, ti.cipher, ti.bits,
		        c->d->verify ? "yes" : "no");
	} else {
		set_error(c, "%s[%s]: TLS handshake failed: %s", cur_host(c), c->addr_str, why);
	}
	c->state = C_SMTP;
	if (c->starttls) {
		if (!ok) {
			SSL_free(c->ssl);
			c->ssl = NULL;
			conn_tls_broken(c, why);
		}
		smtp_client_tls_done(c->client, ok);
		conn_settle(c);
		return;
	}
	if (!ok) {
		conn_close_socket(c);
		c->ai++;
		conn_next_target(c);
		return;
	}
	conn_start_smtp(c);
}

static void conn_handshake_step(struct conn *c)
{
	int r, e;
	long vr;

	ERR_clear_error();
	r = SSL_connect(c->ssl);
	if (r == 1) {
		conn_handshake_done(c, true, NULL);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		conn_set_io(c, EV_READ);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		conn_set_io(c, EV_WRITE);
		return;
	}
	vr = SSL_get_verify_result(c->ssl);
	if (vr != X509_V_OK) {
		char why[300];
		snprintf(why, sizeof(why), "certificate: %s", X509_verify_cert_error_string(vr));
		ERR_clear_error();
		conn_handshake_done(c, false, why);
		return;
	}
	conn_handshake_done(c, false, ssl_reason());
}

static void conn_start_handshake(struct conn *c)
{
	const char *err = NULL;
	SSL_CTX *ctx = dest_ssl_ctx(c->d, &err);

	c->state = C_HANDSHAKE;
	if (ctx != NULL)
		c->ssl = tls_client_ssl_new(ctx, cur_host(c));
	if (c->ssl == NULL) {
		conn_handshake_done(c, false, err != NULL ? err : "cannot set up TLS");
		return;
	}
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_fd(c->ssl, c->fd);
	conn_set_timer(c, (double)c->d->t->connect_ms / 1000.0);
	conn_handshake_step(c);
}

/* --- connections: acting on the client's news -------------------------------- */

static void conn_hand_message(struct conn *c, struct outbound_send *s)
{
	const char *err = NULL;

	c->send = s;
	s->conn = c;
	s->pos = 0;
	if (c->messages > 0)
		c->d->t->st.reused++;
	c->state = C_SMTP;
	if (smtp_client_send(c->client, &s->msg, &err) < 0) {
		c->send = NULL;
		s->conn = NULL;
		send_fail(s, SMTP_CLIENT_PERMFAIL, "5.5.2", err != NULL ? err : "malformed message",
		          NULL);
	}
}

/* Next waiting send of the dest, or NULL. */
static struct outbound_send *dest_pop(struct dest *d)
{
	struct outbound_send *s = d->wait_head;

	if (s == NULL)
		return NULL;
	d->wait_head = s->wnext;
	if (d->wait_head == NULL)
		d->wait_tail = NULL;
	s->wnext = NULL;
	s->waiting = false;
	return s;
}

static void conn_settle(struct conn *c)
{
	for (int guard = 0; guard < 64; guard++) {
		if (c->client == NULL)
			return;
		if (c->want_tls && buf_len(smtp_client_output(c->client)) == 0) {
			c->want_tls = false;
			c->starttls = true;
			conn_start_handshake(c);
			return; /* the handshake calls back into conn_settle() */
		}
		if (c->msg_done) {
			c->msg_done = false;
			if (c->send != NULL && c->requeue) {
				struct outbound_send *s = c->send;
				struct dest *d = c->d;
				c->send = NULL;
				s->conn = NULL;
				s->waiting = true;
				s->wnext = d->wait_head;
				d->wait_head = s;
				if (d->wait_tail == NULL)
					d->wait_tail = s;
				conn_drop(c); /* gives s a new connection */
				return;
			}
			if (c->send != NULL && c->tls_fallback) {
				/* the same address again, in plain text (the
				 * address is now in t->tls_broken) */
				c->fallbacks++;
				conn_close_socket(c);
				conn_next_target(c);
				return;
			}
			if (c->send != NULL) {
				/* a session failure worth another address or host */
				conn_close_socket(c);
				c->ai++;
				conn_next_target(c);
				return;
			}
		}
		if (c->ssl != NULL && c->state == C_SMTP && !c->eof && !c->closed &&
		    SSL_has_pending(c->ssl)) {
			conn_read(c); /* records OpenSSL read ahead of our EV_READ */
			continue;
		}
		if (!c->eof && !conn_flush(c))
			continue; /* aborted: msg_done may have been set */
		if (c->closed || c->eof || smtp_client_closed(c->client)) {
			if (c->send != NULL) {
				/* closed without reporting the message: cannot happen,
				 * but never lose a send */
				struct outbound_send *s = c->send;
				c->send = NULL;
				s->conn = NULL;
				send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.4.2",
				          "connection closed before the message was done", NULL);
			}
			conn_drop(c);
			return;
		}
		if (c->send == NULL && smtp_client_idle(c->client)) {
			struct outbound_send *s = dest_pop(c->d);
			if (s != NULL) {
				conn_hand_message(c, s);
				continue;
			}
			if (c->d->t->reuse_ms == 0) {
				smtp_client_quit(c->client);
				continue;
			}
			c->state = C_IDLE;
		} else if (c->state == C_IDLE) {
			c->state = C_SMTP;
		}
		conn_update_io(c);
		return;
	}
	/* runaway: give up on this connection */
	smtp_client_abort(c->client, "internal error: no progress");
	if (c->send != NULL) {
		struct outbound_send *s = c->send;
		c->send = NULL;
		s->conn = NULL;
		send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.3.0", "internal error", NULL);
	}
	conn_drop(c);
}

static void conn_start_smtp(struct conn *c)
{
	struct dest *d = c->d;
	struct outbound_transport *t = d->t;
	char key[TLS_FALLBACK_KEY_MAX];
	uint64_t until = 0, now = now_ms(t);
	bool plain;
	struct smtp_client_config cc = {
	        .helo_name = t->helo,
	        .tls = d->tls == OUTBOUND_TLS_NONE            ? SMTP_CLIENT_TLS_NONE
	               : d->tls == OUTBOUND_TLS_OPPORTUNISTIC ? SMTP_CLIENT_TLS_OPPORTUNISTIC
	                                                      : SMTP_CLIENT_TLS_REQUIRED,
	        .tls_active = d->tls == OUTBOUND_TLS_IMPLICIT,
	        .auth_user = d->auth_user,
	        .auth_pass = d->auth_pass,
	        .auth_plaintext = d->tls == OUTBOUND_TLS_NONE,
	};
	const char *err = NULL;
	struct outbound_send *s = c->send;

	/* opportunistic only: an address whose handshake failed lately gets
	 * no STARTTLS (tls_fallback.h) */
	plain = tls_fallback_allowed(d->tls, d->verify) &&
	        tls_fallback_cache_has(t->tls_broken,
	                               tls_fallback_key(key, sizeof(key), c->addr_str, d->port),
	                               now, &until);
	if (plain) {
		cc.tls = SMTP_CLIENT_TLS_NONE;
		log_info("msg=\"outbound tls skipped\" dest=%s host=%s addr=%s port=%u "
		         "reason=\"STARTTLS handshake failed recently\" tls_again_in=%llus",
		         d->host, cur_host(c), c->addr_str, (unsigned)d->port,
		         (unsigned long long)((until - now + 999) / 1000));
	}
	c->state = C_SMTP;
	c->client = smtp_client_new(&cc, &client_ops, c, &err);
	if (c->client == NULL) {
		c->send = NULL;
		if (s != NULL) {
			s->conn = NULL;
			send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.3.5", err ? err : "bad client config",
			          NULL);
		}
		conn_drop(c);
		return;
	}
	c->send = NULL;
	if (s != NULL)
		conn_hand_message(c, s);
	conn_settle(c);
}

/* --- connections: events --------------------------------------------------- */

static void conn_connected(struct conn *c)
{
	struct outbound_transport *t = c->d->t;

	t->st.connections++;
	log_info("msg=\"outbound connected\" dest=%s host=%s addr=%s port=%u", c->d->host,
	         cur_host(c), c->addr_str, (unsigned)c->d->port);
	if (c->d->tls == OUTBOUND_TLS_IMPLICIT) {
		c->starttls = false;
		conn_start_handshake(c);
		return;
	}
	conn_start_smtp(c);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = container_of(w, struct conn, io);

	(void)loop;
	switch (c->state) {
	case C_CONNECTING: {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			set_error(c, "connect to %s[%s]: %s", cur_host(c), c->addr_str,
			          strerror(err));
			conn_close_socket(c);
			c->ai++;
			conn_next_target(c);
			return;
		}
		conn_set_io(c, 0);
		ev_timer_stop(c->d->t->loop, &c->timer);
		conn_connected(c);
		return;
	}
	case C_HANDSHAKE:
		conn_handshake_step(c);
		return;
	case C_SMTP:
	case C_IDLE:
		if (revents & EV_READ)
			conn_read(c);
		conn_settle(c);
		return;
	default:
		return;
	}
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = container_of(w, struct conn, timer);

	(void)loop;
	(void)revents;
	switch (c->state) {
	case C_CONNECTING:
		set_error(c, "connect to %s[%s]: timed out", cur_host(c), c->addr_str);
		conn_close_socket(c);
		c->ai++;
		conn_next_target(c);
		return;
	case C_HANDSHAKE:
		conn_handshake_done(c, false, "timed out");
		return;
	case C_IDLE:
		log_debug("msg=\"outbound idle connection closed\" host=%s addr=%s", cur_host(c),
		          c->addr_str);
		smtp_client_quit(c->client);
		c->state = C_SMTP;
		conn_settle(c);
		return;
	case C_SMTP: {
		char why[128];
		snprintf(why, sizeof(why), "timeout waiting for the server (%s)",
		         smtp_client_state_name(c->client));
		set_error(c, "%s[%s]: %s", cur_host(c), c->addr_str, why);
		smtp_client_abort(c->client, why);
		c->eof = true;
		conn_settle(c);
		return;
	}
	default:
		return;
	}
}

/* Try the current address; false when it failed at once (next one). */
static bool conn_connect(struct conn *c, const struct net_addr *a)
{
	int fd;

	net_addr_ip_str(a, c->addr_str, sizeof(c->addr_str));
	fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		set_error(c, "socket: %s", strerror(errno));
		return false;
	}
	c->fd = fd;
	if (connect(fd, &a->u.sa, a->len) < 0 && errno != EINPROGRESS) {
		set_error(c, "connect to %s[%s]: %s", cur_host(c), c->addr_str, strerror(errno));
		close(fd);
		c->fd = -1;
		return false;
	}
	c->state = C_CONNECTING;
	ev_io_init(&c->io, on_io, fd, EV_WRITE);
	ev_io_start(c->d->t->loop, &c->io);
	conn_set_timer(c, (double)c->d->t->connect_ms / 1000.0);
	return true;
}

static void on_addrs(void *arg, const struct resolve_addr_result *res)
{
	struct conn *c = arg;
	struct target *tg = &c->targets[c->ti];

	c->query = NULL;
	tg->resolved = true;
	if (res->status != RESOLVE_OK) {
		set_error(c, "%s: %s", tg->host, res->error != NULL ? res->error : "lookup failed");
		if (res->status == RESOLVE_TEMP)
			c->dns_perm = false;
	} else {
		tg->addrs = xmemdup(res->addrs, res->n * sizeof(*res->addrs));
		tg->naddrs = res->n;
		c->dns_perm = false;
	}
	c->ai = 0;
	conn_next_target(c);
}

/* Connect to the next address of the current target, or the next target;
 * when there is none, fail the send. */
static void conn_next_target(struct conn *c)
{
	struct dest *d = c->d;

	while (c->ti < c->ntargets) {
		struct target *tg = &c->targets[c->ti];

		if (!tg->resolved) {
			c->state = C_RESOLVING;
			c->query =
			        outbound_resolve_addrs(d->t->res, tg->host, d->port, on_addrs, c);
			return;
		}
		while (c->ai < tg->naddrs) {
			if (conn_connect(c, &tg->addrs[c->ai]))
				return;
			c->ai++;
		}
		c->ti++;
		c->ai = 0;
	}
	/* nothing left */
	if (c->send != NULL) {
		struct outbound_send *s = c->send;
		char text[600];

		c->send = NULL;
		s->conn = NULL;
		if (c->dns_perm && d->mx && c->ntargets == 1 && c->targets[0].resolved &&
		    strcmp(c->targets[0].host, d->host) == 0) {
			/* implicit MX whose domain has no address at all */
			snprintf(text, sizeof(text), "no mail host for %s: %s", d->host,
			         c->last_error != NULL ? c->last_error : "no address");
			send_fail(s, SMTP_CLIENT_PERMFAIL, "5.1.2", text, NULL);
		} else {
			snprintf(text, sizeof(text), "%s",
			         c->last_error != NULL ? c->last_error
			                               : "no address to connect to");
			send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.4.1", text, NULL);
		}
	}
	conn_drop(c);
}

static void on_mx(void *arg, const struct resolve_mx_result *res)
{
	struct conn *c = arg;
	struct outbound_send *s = c->send;

	c->query = NULL;
	if (res->status != RESOLVE_OK) {
		char text[400];

		snprintf(text, sizeof(text), "MX lookup for %s: %s", c->d->host,
		         res->error != NULL ? res->error : "failed");
		{
			char q[600];
			log_info("msg=\"outbound mx lookup failed\" dest=%s permanent=%s error=%s",
			         c->d->host, res->status == RESOLVE_PERM ? "yes" : "no",
			         log_quote(q, sizeof(q),
			                   res->error != NULL ? res->error : "failed"));
		}
		c->send = NULL;
		if (s != NULL) {
			s->conn = NULL;
			if (res->status == RESOLVE_PERM)
				send_fail(s, SMTP_CLIENT_PERMFAIL, "5.1.2", text, NULL);
			else
				send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.4.3", text, NULL);
		}
		conn_drop(c);
		return;
	}
	c->targets = xcalloc(res->n, sizeof(*c->targets));
	for (size_t i = 0; i < res->n; i++)
		c->targets[i].host = xstrdup(res->hosts[i].host);
	c->ntargets = res->n;
	c->ti = c->ai = 0;
	c->dns_perm = true; /* until an address lookup says otherwise */
	conn_next_target(c);
}

/* A new connection for s (the dest has room). */
static void conn_open(struct dest *d, struct outbound_send *s)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->d = d;
	c->fd = -1;
	c->send = s;
	s->conn = c;
	ev_io_init(&c->io, on_io, -1, 0);
	ev_timer_init(&c->timer, on_timer, 1., 0.);
	c->next = d->conns;
	if (c->next != NULL)
		c->next->prev = c;
	d->conns = c;
	d->nconns++;
	c->state = C_RESOLVING;
	if (d->mx) {
		c->query = outbound_resolve_mx(d->t->res, d->host, on_mx, c);
		return;
	}
	c->targets = xcalloc(1, sizeof(*c->targets));
	c->targets[0].host = xstrdup(d->host);
	c->ntargets = 1;
	conn_next_target(c);
}

/* Give waiting sends an idle connection or a new one, as the limit allows. */
static void dest_dispatch(struct dest *d)
{
	d->busy++;
	while (d->wait_head != NULL) {
		struct conn *idle = NULL;

		for (struct conn *c = d->conns; c != NULL; c = c->next)
			if (c->state == C_IDLE && c->send == NULL) {
				idle = c;
				break;
			}
		if (idle != NULL) {
			conn_hand_message(idle, dest_pop(d));
			conn_settle(idle);
			continue;
		}
		if (d->nconns >= d->t->max_per_dest)
			break;
		conn_open(d, dest_pop(d));
	}
	d->busy--;
}

/* --- sends ----------------------------------------------------------------- */

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct outbound_send *s = container_of(w, struct outbound_send, tick);
	struct outbound_transport *t = s->t;

	(void)loop;
	(void)revents;
	if (s->finished) {
		/* unlinked first: the callback may free the transport */
		send_unlink(s);
		s->cb(s->arg, s->res, s->msg.nrcpts, s->mx_host);
		send_release(s);
		return;
	}
	if (s->started)
		return;
	s->started = true;
	if (s->route != NULL && s->route->type == OUTBOUND_ROUTE_LOCAL) {
		send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.3.5",
		          "route is local: not a job for the SMTP transport", NULL);
		return;
	}
	if (s->route == NULL && (s->domain == NULL || s->domain[0] == '\0')) {
		send_fail(s, SMTP_CLIENT_TEMPFAIL, "4.3.5", "no domain to look up", NULL);
		return;
	}
	s->d = dest_get(t, s->route, s->domain);
	s->waiting = true;
	if (s->d->wait_tail != NULL)
		s->d->wait_tail->wnext = s;
	else
		s->d->wait_head = s;
	s->d->wait_tail = s;
	{
		struct dest *d = s->d;
		dest_dispatch(d);
		dest_maybe_free(d);
	}
}

struct outbound_send *outbound_transport_send(struct outbound_transport *t,
                                              const struct outbound_job *job, outbound_done_cb *cb,
                                              void *arg)
{
	struct outbound_send *s = xcalloc(1, sizeof(*s));
	size_t n = job->msg.nrcpts;

	s->t = t;
	s->cb = cb;
	s->arg = arg;
	s->route = job->route;
	s->domain = job->domain != NULL ? xstrdup(job->domain) : NULL;
	if (s->domain != NULL)
		for (char *p = s->domain; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	s->from = xstrdup(job->msg.from != NULL ? job->msg.from : "");
	s->envid = job->msg.envid != NULL ? xstrdup(job->msg.envid) : NULL;
	s->rcpts = xcalloc(n ? n : 1, sizeof(*s->rcpts));
	for (size_t i = 0; i < n; i++) {
		s->rcpts[i].addr = send_own(s, job->msg.rcpts[i].addr);
		s->rcpts[i].notify = job->msg.rcpts[i].notify;
		s->rcpts[i].orcpt = job->msg.rcpts[i].orcpt != NULL
		                            ? send_own(s, job->msg.rcpts[i].orcpt)
		                            : NULL;
	}
	s->msg = job->msg;
	s->msg.from = s->from;
	s->msg.envid = s->envid;
	s->msg.rcpts = s->rcpts;
	s->msg.user = s;
	s->prefix = job->prefix_len ? xmemdup(job->prefix, job->prefix_len) : NULL;
	s->prefix_len = job->prefix_len;
	s->fd = job->fd;
	s->offset = job->offset;
	s->length = job->length;
	ev_timer_init(&s->tick, on_tick, 0., 0.);
	s->next = t->sends;
	if (s->next != NULL)
		s->next->prev = s;
	t->sends = s;
	t->st.active++;
	if (n == 0) {
		struct smtp_client_result r = {.outcome = SMTP_CLIENT_PERMFAIL};
		s->started = true;
		send_finish(s, &r, 0, NULL);
		return s;
	}
	ev_timer_start(t->loop, &s->tick);
	return s;
}

void outbound_send_cancel(struct outbound_send **sp)
{
	struct outbound_send *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	if (s->waiting) {
		struct dest *d = s->d;
		struct outbound_send **pp = &d->wait_head, *prev = NULL;
		while (*pp != NULL && *pp != s) {
			prev = *pp;
			pp = &(*pp)->wnext;
		}
		if (*pp == s) {
			*pp = s->wnext;
			if (d->wait_tail == s)
				d->wait_tail = prev;
		}
		s->waiting = false;
		dest_maybe_free(d);
	}
	if (s->conn != NULL) {
		struct conn *c = s->conn;
		c->send = NULL;
		s->conn = NULL;
		conn_drop(c); /* mid-message: the connection cannot be reused */
	}
	send_free(s);
}

/* --- the transport --------------------------------------------------------- */

static void apply_config(struct outbound_transport *t, const struct mailbox_config *cfg)
{
	const struct mailbox_outbound_conf *o = &cfg->outbound;

	free(t->helo);
	t->helo = xstrdup(o->helo != NULL         ? o->helo
	                  : cfg->hostname != NULL ? cfg->hostname
	                                          : "localhost");
	t->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 30000;
	t->reuse_ms = o->connection_reuse_ms;
	t->max_per_dest = o->max_per_destination > 0 ? (unsigned)o->max_per_destination : 4;
}

struct outbound_transport *outbound_transport_new(struct ev_loop *loop,
                                                  const struct mailbox_config *cfg)
{
	struct outbound_transport *t = xcalloc(1, sizeof(*t));
	const char *err = NULL;

	t->loop = loop;
	apply_config(t, cfg);
	t->tls_broken = tls_fallback_cache_new(0);
	t->res = outbound_resolver_new(loop, &cfg->outbound.dns_servers, 0, &err);
	if (t->res == NULL) {
		char q[300];
		log_error("msg=\"outbound resolver setup failed\" error=%s",
		          log_quote(q, sizeof(q), err ? err : "?"));
		tls_fallback_cache_free(&t->tls_broken);
		free(t->helo);
		free(t);
		return NULL;
	}
	return t;
}

void outbound_transport_reconfigure(struct outbound_transport *t, const struct mailbox_config *cfg)
{
	struct outbound_resolver *nr;
	const char *err = NULL;
	bool busy = false;

	apply_config(t, cfg);
	/* idle connections may belong to changed routes: close them */
	for (struct dest *d = t->dests, *dn; d != NULL; d = dn) {
		dn = d->next;
		for (struct conn *c = d->conns, *cn; c != NULL; c = cn) {
			cn = c->next;
			if (c->state == C_IDLE)
				conn_free(c);
			else if (c->query != NULL)
				busy = true;
		}
		dest_maybe_free(d);
	}
	/* a new resolver when no lookup is in flight (else the next reload) */
	if (busy) {
		log_warn("msg=\"outbound reconfigure: DNS lookups in flight, resolver unchanged\"");
		return;
	}
	nr = outbound_resolver_new(t->loop, &cfg->outbound.dns_servers, 0, &err);
	if (nr == NULL) {
		char q[300];
		log_error("msg=\"outbound reconfigure: resolver unchanged\" error=%s",
		          log_quote(q, sizeof(q), err ? err : "?"));
		return;
	}
	outbound_resolver_free(&t->res);
	t->res = nr;
}

void outbound_transport_free(struct outbound_transport **tp)
{
	struct outbound_transport *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	while (t->sends != NULL) {
		struct outbound_send *s = t->sends;
		outbound_send_cancel(&s);
	}
	while (t->dests != NULL) {
		struct dest *d = t->dests;
		while (d->conns != NULL)
			conn_free(d->conns);
		dest_free(d);
	}
	outbound_resolver_free(&t->res);
	tls_fallback_cache_free(&t->tls_broken);
	free(t->helo);
	free(t);
}

void outbound_transport_stats(const struct outbound_transport *t,
                              struct outbound_transport_stats *out)
{
	*out = t->st;
}
