/*
 * edge/conn.c -- the data path of one connection.
 *
 * States:
 *   CONNECTING  an attempt to one upstream is in flight (uio: EV_WRITE),
 *               and, for SNI listeners, the ClientHello is being peeked
 *               (cio: EV_READ) in parallel.  One timer serves both
 *               deadlines.  A failed attempt (refused, reset, timed out)
 *               moves on to the next upstream marked up, within the
 *               listener's connect_timeout for all attempts together, each
 *               attempt getting an equal share of what is left, so one
 *               black-holed address cannot eat the whole budget.
 *   SPLICING    header sent; bytes flow both ways.
 * The header is written as soon as connect(2) returns: on a fast path (a
 * loopback or LAN upstream) the handshake is already done and the write
 * succeeds, saving an event-loop round trip; otherwise it fails with
 * EAGAIN and we wait for writability as usual.
 *
 * Each direction (struct edge_half) reads from its source only while
 * nothing of its is pending, so a slow receiver stops the sender (back
 * pressure through the kernel buffers, never through ours).  A direction
 * starts with recv/send through the worker's scratch buffer (cheapest for
 * banners, commands and replies) and switches to splice(2) the first time
 * a read fills the whole buffer, i.e. once it carries bulk data: then
 * bytes go socket -> pipe -> socket without a copy through user space and
 * the pipe goes back to the worker's pool the moment it is empty.  Only a
 * short write on the recv/send path leaves a private copy of the rest.
 * So an idle connection holds no pipe and no buffer: just this struct,
 * two fds and three watchers.  With `splice: false`, or if pipes run out,
 * recv/send is used throughout.
 *
 * The idle timer follows libev's "be smart about timeouts": activity only
 * stores a timestamp; the timer, when it fires, re-arms itself for the
 * time left.
 */
#include "edge/conn.h"

#include "edge/sni.h"
#include "edge/sock.h"
#include "shared/log.h"
#include "shared/pp.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Transfer steps per readiness event and direction. */
#define READ_STEPS 8

enum conn_state {
	CS_CONNECTING = 0,
	CS_SPLICING,
};

/* A compact address: a connection keeps two and never needs a sockaddr. */
struct caddr {
	uint8_t family; /* AF_INET or AF_INET6, 0: none */
	uint8_t ip[16];
	uint16_t port;
};

struct edge_half {
	struct edge_pipe pipe; /* rd < 0: none borrowed */
	size_t pending;        /* bytes in the pipe or in buf, not yet written */
	uint8_t *buf;          /* read/write fallback: the unwritten rest (owned) */
	size_t boff;
	uint64_t bytes;
	bool splice; /* moving with splice(2) (bulk) rather than recv/send */
	bool eof;    /* the source ended */
	bool shut;   /* the end was passed on: shutdown(dst, SHUT_WR) */
};

struct edge_conn {
	ev_io cio, uio;
	ev_timer timer;
	struct edge_worker *w;
	struct edge_listener *l;
	struct edge_conn *prev, *next;
	struct edge_upstream *up; /* current attempt or the connected one */
	char *authority;          /* SNI, until the header is sent */
	uint64_t id;
	double t_start, last, budget_end, attempt_end, sni_end;
	int cfd, ufd;
	int last_err;
	uint16_t start, tried;
	uint8_t state;
	bool sni_wait, up_ready, lowat, buffered, limited;
	struct caddr client, local;
	struct edge_half c2u, u2c;
};

size_t edge_conn_size(void)
{
	return sizeof(struct edge_conn);
}

static void caddr_set(struct caddr *c, const struct net_addr *a)
{
	size_t n;
	const uint8_t *p = net_addr_bytes(a, &n);

	memset(c, 0, sizeof(*c));
	if (p == NULL)
		return;
	c->family = (uint8_t)(n == 4 ? AF_INET : AF_INET6);
	memcpy(c->ip, p, n);
	c->port = net_addr_port(a);
}

static void caddr_get(const struct caddr *c, struct net_addr *a)
{
	if (c->family == 0) {
		memset(a, 0, sizeof(*a));
		return;
	}
	net_addr_from_bytes(a, c->family, c->ip, c->port);
}

static const char *caddr_str(const struct caddr *c, char *buf, size_t n)
{
	struct net_addr a;

	caddr_get(c, &a);
	return net_addr_str(&a, buf, n);
}

static struct ev_loop *LOOP(const struct edge_conn *c)
{
	return c->w->loop;
}

/* --- teardown ----------------------------------------------------------- */

static void half_release(struct edge_conn *c, struct edge_half *h)
{
	if (h->pipe.rd >= 0)
		edge_pipes_put(&c->w->pipes, &h->pipe, h->pending > 0);
	free(h->buf);
	h->buf = NULL;
}

static void conn_free(struct edge_conn *c)
{
	struct edge_worker *w = c->w;
	struct edge_lstate *st = c->l->st;

	ev_io_stop(w->loop, &c->cio);
	ev_io_stop(w->loop, &c->uio);
	ev_timer_stop(w->loop, &c->timer);
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->ufd >= 0)
		close(c->ufd);
	half_release(c, &c->c2u);
	half_release(c, &c->u2c);
	free(c->authority);
	if (c->limited) {
		struct net_addr a;
		caddr_get(&c->client, &a);
		edge_limits_release(st->limits, &a);
	}
	atomic_fetch_sub_explicit(&st->active, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&w->nconns, 1, memory_order_relaxed);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	edge_gen_unref(c->l->gen);
	free(c);
}

static void conn_close(struct edge_conn *c, enum edge_close why)
{
	struct edge_lstate *st = c->l->st;

	edge_count(&st->m.closed[why], 1);
	if (c->l->gen->cfg.log_connections) {
		char cl[NET_ADDRSTRLEN];
		double dur = ev_now(LOOP(c)) - c->t_start;

		log_info("msg=conn.close id=%016" PRIx64 " listener=%s client=%s upstream=%s "
		         "bytes_c2u=%" PRIu64 " bytes_u2c=%" PRIu64 " duration_ms=%" PRIu64
		         " reason=%s",
		         c->id, c->l->conf->name, caddr_str(&c->client, cl, sizeof(cl)),
		         c->up != NULL ? c->up->name : "-", c->c2u.bytes, c->u2c.bytes,
		         (uint64_t)(dur > 0 ? dur * 1000.0 : 0), edge_close_name(why));
	}
	conn_free(c);
}

static void log_refused(struct edge_worker *w, uint64_t id, const struct edge_listener *l,
                        const char *client, enum edge_refuse why, const char *detail)
{
	char q[160];

	edge_count(&l->st->m.refused[why], 1);
	if (detail != NULL)
		log_info("msg=conn.refused id=%016" PRIx64 " listener=%s client=%s reason=%s "
		         "detail=%s",
		         id, l->conf->name, client, edge_refuse_name(why),
		         log_quote(q, sizeof(q), detail));
	else
		log_info("msg=conn.refused id=%016" PRIx64 " listener=%s client=%s reason=%s", id,
		         l->conf->name, client, edge_refuse_name(why));
	(void)w;
}

/* Give up on a connection that never reached the splicing state. */
static void conn_refuse(struct edge_conn *c, enum edge_refuse why, const char *detail)
{
	char cl[NET_ADDRSTRLEN];

	log_refused(c->w, c->id, c->l, caddr_str(&c->client, cl, sizeof(cl)), why, detail);
	conn_free(c);
}

/* --- watchers ----------------------------------------------------------- */

static void set_io(struct ev_loop *loop, ev_io *io, int events)
{
	if (ev_is_active(io) && (io->events & (EV_READ | EV_WRITE)) == events)
		return;
	if (!ev_is_active(io) && events == 0)
		return;
	ev_io_stop(loop, io);
	if (events != 0) {
		ev_io_set(io, io->fd, events);
		ev_io_start(loop, io);
	}
}

static void update_watchers(struct edge_conn *c)
{
	int cev = 0, uev = 0;

	if (!c->c2u.eof && c->c2u.pending == 0)
		cev |= EV_READ;
	if (c->u2c.pending > 0)
		cev |= EV_WRITE;
	if (!c->u2c.eof && c->u2c.pending == 0)
		uev |= EV_READ;
	if (c->c2u.pending > 0)
		uev |= EV_WRITE;
	set_io(LOOP(c), &c->cio, cev);
	set_io(LOOP(c), &c->uio, uev);
}

/* --- moving bytes ------------------------------------------------------- */

static enum edge_close err_reason(int err, bool client)
{
	if (err == ECONNRESET || err == EPIPE || err == ETIMEDOUT || err == EHOSTUNREACH ||
	    err == ENETUNREACH)
		return client ? EDGE_CLOSE_CLIENT_RESET : EDGE_CLOSE_UPSTREAM_RESET;
	return client ? EDGE_CLOSE_CLIENT_ERROR : EDGE_CLOSE_UPSTREAM_ERROR;
}

static void count_bytes(struct edge_conn *c, struct edge_half *h, size_t n)
{
	struct edge_lmetrics *m = &c->l->st->m;

	h->bytes += n;
	edge_count(h == &c->c2u ? &m->bytes_c2u : &m->bytes_u2c, n);
	c->last = ev_now(LOOP(c));
}

/* Write what is pending in h to dst; pass an ended source on.  -1: the
 * connection was closed. */
static int half_flush(struct edge_conn *c, struct edge_half *h, int dst, bool dst_client)
{
	const struct edge_half *other = h == &c->c2u ? &c->u2c : &c->c2u;

	while (h->pending > 0) {
		ssize_t m;

		if (h->buf != NULL)
			m = send(dst, h->buf + h->boff, h->pending, MSG_NOSIGNAL | MSG_DONTWAIT);
		else
			m = splice(h->pipe.rd, NULL, dst, NULL, h->pending,
			           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (m > 0) {
			h->pending -= (size_t)m;
			if (h->buf != NULL)
				h->boff += (size_t)m;
			continue;
		}
		if (m < 0 && errno == EINTR)
			continue;
		if (m == 0 || errno == EAGAIN)
			break;
		conn_close(c, err_reason(errno, dst_client));
		return -1;
	}
	if (h->pending == 0) {
		if (h->pipe.rd >= 0)
			edge_pipes_put(&c->w->pipes, &h->pipe, 0);
		if (h->buf != NULL) {
			free(h->buf);
			h->buf = NULL;
			h->boff = 0;
		}
		if (h->eof && !h->shut && other->shut) {
			/* The last direction: close(2) sends the FIN, no need
			 * for a shutdown(2) first. */
			h->shut = true;
		} else if (h->eof && !h->shut) {
			/* Half-close: the receiver sees our FIN, its other
			 * direction stays open (RFC 9293 3.6). */
			if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
				conn_close(c, err_reason(errno, dst_client));
				return -1;
			}
			h->shut = true;
		}
	}
	return 0;
}

/*
 * One transfer step from src into h and on to dst.  Returns 1 if a full
 * chunk went through and nothing is pending (more is probably waiting),
 * 0 to stop for now, -1 if the connection was closed.
 */
static int half_step(struct edge_conn *c, struct edge_half *h, int src, int dst, bool src_client)
{
	struct edge_worker *w = c->w;
	ssize_t n;
	size_t want;
	int err;

	if (h->splice && h->pipe.rd < 0 && edge_pipes_get(&w->pipes, &h->pipe) < 0) {
		/* Out of fds for pipes: this direction goes on with read/write. */
		log_warn("msg=conn.pipe_failed id=%016" PRIx64 " error=\"%s\" fallback=readwrite",
		         c->id, strerror(errno));
		h->splice = false;
		c->buffered = true;
	}
	if (h->splice) {
		want = h->pipe.cap;
		n = splice(src, NULL, h->pipe.wr, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			h->pending = (size_t)n;
			count_bytes(c, h, (size_t)n);
			if (half_flush(c, h, dst, !src_client) < 0)
				return -1;
			return h->pending == 0 && (size_t)n == want ? 1 : 0;
		}
		err = errno;
		edge_pipes_put(&w->pipes, &h->pipe, 0);
		if (n < 0 && err == EINVAL) {
			/* Not spliceable after all: fall back for good. */
			h->splice = false;
			c->buffered = true;
			return 1;
		}
	} else {
		want = w->scratch_size;
		n = recv(src, w->scratch, want, MSG_DONTWAIT);
		if (n > 0) {
			ssize_t m;

			count_bytes(c, h, (size_t)n);
			/* A full buffer means a bulk transfer: from now on this
			 * direction moves with splice(2), zero-copy, in bigger
			 * steps.  Small request/response traffic stays on
			 * recv/send, which is cheaper for a few hundred bytes. */
			if ((size_t)n == want && !c->buffered)
				h->splice = true;
			m = send(dst, w->scratch, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (m < 0 && errno != EAGAIN && errno != EINTR) {
				conn_close(c, err_reason(errno, !src_client));
				return -1;
			}
			if (m < 0)
				m = 0;
			if (m < n) {
				h->buf = xmemdup(w->scratch + m, (size_t)(n - m));
				h->boff = 0;
				h->pending = (size_t)(n - m);
				return 0;
			}
			return (size_t)n == want ? 1 : 0;
		}
		err = errno;
	}
	if (n == 0) {
		h->eof = true;
		return half_flush(c, h, dst, !src_client) < 0 ? -1 : 0;
	}
	if (err == EAGAIN || err == EINTR)
		return 0;
	conn_close(c, err_reason(err, src_client));
	return -1;
}

/* Forward what src has, a bounded number of steps (so one busy connection
 * cannot starve the loop).  -1: the connection was closed. */
static int half_read(struct edge_conn *c, struct edge_half *h, int src, int dst, bool src_client)
{
	for (int i = 0; i < READ_STEPS; i++) {
		int r;

		if (h->eof || h->pending > 0)
			return 0;
		r = half_step(c, h, src, dst, src_client);
		if (r <= 0)
			return r;
	}
	return 0;
}

static void after_io(struct edge_conn *c)
{
	if (c->c2u.shut && c->u2c.shut) {
		conn_close(c, EDGE_CLOSE_EOF);
		return;
	}
	update_watchers(c);
}

/* --- connecting --------------------------------------------------------- */

static void connect_next(struct edge_conn *c);
static void sni_peek(struct edge_conn *c);

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

static void arm_connect_timer(struct edge_conn *c)
{
	double next = 1e30, now = ev_now(LOOP(c));

	if (c->sni_wait)
		next = c->sni_end;
	if (!c->up_ready && c->attempt_end < next)
		next = c->attempt_end;
	ev_timer_stop(LOOP(c), &c->timer);
	ev_timer_set(&c->timer, next > now ? next - now : 0.0, 0.0);
	ev_timer_start(LOOP(c), &c->timer);
}

static void start_splicing(struct edge_conn *c)
{
	const struct edge_listener_conf *lc = c->l->conf;

	c->state = CS_SPLICING;
	c->up_ready = true;
	edge_count(&c->l->st->m.forwarded, 1);
	edge_count(&c->up->connects, 1);
	free(c->authority);
	c->authority = NULL;
	c->last = ev_now(LOOP(c));
	ev_timer_stop(LOOP(c), &c->timer);
	ev_timer_set(&c->timer, 0.0, (double)lc->idle_timeout_ms / 1000.0);
	ev_timer_again(LOOP(c), &c->timer);
	ev_io_stop(LOOP(c), &c->cio);
	ev_io_stop(LOOP(c), &c->uio);
	ev_io_set(&c->cio, c->cfd, EV_READ);
	ev_io_set(&c->uio, c->ufd, EV_READ);
	ev_io_start(LOOP(c), &c->cio);
	ev_io_start(LOOP(c), &c->uio);
}

/* Write the whole PROXY header in one send.  0, or an errno value
 * (EAGAIN: the connection is not established yet). */
static int send_header(struct edge_conn *c)
{
	const struct edge_listener_conf *lc = c->l->conf;
	uint8_t hdr[PP_V2_HDR + 216 + 3 + PP_UNIQUE_ID_MAX + 3 + EDGE_SNI_NAME_MAX + 64];
	char uid[24];
	struct net_addr src, dst;
	struct pp_encode e;
	size_t n;
	ssize_t w;

	if (lc->proxy_protocol == EDGE_PP_OFF)
		return 0;
	caddr_get(&c->client, &src);
	caddr_get(&c->local, &dst);
	memset(&e, 0, sizeof(e));
	e.src = &src;
	e.dst = &dst;
	if (lc->tlv_unique_id) {
		/* The same id as id= in our log lines, so the two correlate. */
		snprintf(uid, sizeof(uid), "%016" PRIx64, c->id);
		e.unique_id = (const uint8_t *)uid;
		e.unique_id_len = 16;
	}
	e.authority = c->authority;
	if (lc->proxy_protocol == EDGE_PP_V2)
		n = pp_encode_v2(hdr, sizeof(hdr), &e);
	else
		n = pp_encode_v1((char *)hdr, sizeof(hdr), &e);
	if (n == 0)
		return EINVAL;
	w = send(c->ufd, hdr, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w == (ssize_t)n)
		return 0;
	if (w < 0)
		return errno;
	/* A fresh socket's send buffer always takes a few hundred bytes. */
	return EIO;
}

static void attempt_failed(struct edge_conn *c, int err)
{
	char q[64];

	if (c->ufd >= 0) {
		ev_io_stop(LOOP(c), &c->uio);
		close(c->ufd);
		c->ufd = -1;
	}
	c->up_ready = false;
	c->last_err = err;
	edge_count(&c->l->st->m.connect_failures, 1);
	if (c->up != NULL) {
		edge_count(&c->up->failures, 1);
		log_info("msg=conn.upstream_failed id=%016" PRIx64 " listener=%s upstream=%s "
		         "error=%s",
		         c->id, c->l->conf->name, c->up->name,
		         log_quote(q, sizeof(q), strerror(err)));
	}
}

static void header_and_splice(struct edge_conn *c)
{
	int err = send_header(c);

	if (err == 0) {
		start_splicing(c);
		return;
	}
	attempt_failed(c, err);
	connect_next(c);
}

static void connect_next(struct edge_conn *c)
{
	struct edge_pool *pool = c->l->pool;
	const struct edge_listener_conf *lc = c->l->conf;

	for (;;) {
		size_t tried = c->tried, left;
		struct edge_upstream *u = edge_pool_next(pool, c->start, &tried);
		double now = ev_now(LOOP(c)), remaining;
		bool done = false;
		int fd, err;

		c->tried = (uint16_t)tried;
		remaining = c->budget_end - now;
		if (u == NULL || remaining <= 0) {
			char detail[160];

			snprintf(detail, sizeof(detail), "%s after %u attempt(s), last error: %s",
			         u == NULL ? "no upstream left" : "connect_timeout spent",
			         (unsigned)c->tried, c->last_err ? strerror(c->last_err) : "none");
			conn_refuse(c, EDGE_REFUSE_UNREACHABLE, detail);
			return;
		}
		left = pool->n - c->tried + 1;
		c->attempt_end = now + remaining / (double)left;
		c->up = u;
		fd = edge_sock_connect(&u->addr, &done);
		if (fd < 0 &&
		    (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
			/* Another upstream would not help: we are out of fds. */
			conn_refuse(c, EDGE_REFUSE_RESOURCES, strerror(errno));
			return;
		}
		if (fd < 0) {
			attempt_failed(c, errno);
			continue;
		}
		c->ufd = fd;
		if (!c->sni_wait && lc->proxy_protocol != EDGE_PP_OFF) {
			err = send_header(c);
			if (err == 0) {
				start_splicing(c);
				return;
			}
			if (err != EAGAIN) {
				attempt_failed(c, err);
				continue;
			}
		} else if (done) {
			c->up_ready = true;
			if (!c->sni_wait) {
				start_splicing(c);
				return;
			}
			arm_connect_timer(c);
			return;
		}
		ev_io_set(&c->uio, fd, EV_WRITE);
		ev_io_start(LOOP(c), &c->uio);
		arm_connect_timer(c);
		return;
	}
}

static void connected(struct edge_conn *c)
{
	int err = edge_sock_error(c->ufd);

	if (err != 0) {
		attempt_failed(c, err);
		connect_next(c);
		return;
	}
	ev_io_stop(LOOP(c), &c->uio);
	c->up_ready = true;
	if (c->sni_wait) {
		arm_connect_timer(c);
		return;
	}
	header_and_splice(c);
}

/* --- SNI peek ------------------------------------------------------------ */

static void sni_done(struct edge_conn *c)
{
	int one = 1;

	c->sni_wait = false;
	ev_io_stop(LOOP(c), &c->cio);
	if (c->lowat) {
		(void)setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
		c->lowat = false;
	}
	if (c->up_ready)
		header_and_splice(c);
	else
		arm_connect_timer(c);
}

static void sni_peek(struct edge_conn *c)
{
	struct edge_worker *w = c->w;
	char name[EDGE_SNI_NAME_MAX + 1];
	enum edge_sni_status st;
	size_t need = 0;
	ssize_t n;

	n = recv(c->cfd, w->scratch, w->scratch_size, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_refuse(c, EDGE_REFUSE_CLIENT_GONE, strerror(errno));
		return;
	}
	if (n == 0) {
		/* The client half-closed without a byte: forward that as is. */
		edge_count(&c->l->st->m.sni_absent, 1);
		sni_done(c);
		return;
	}
	st = edge_sni_parse(w->scratch, (size_t)n, name, sizeof(name), &need);
	if (st == EDGE_SNI_NEED_MORE && need <= w->scratch_size && (size_t)n < w->scratch_size) {
		/* Sleep until the rest of the record is there (tcp_poll honours
		 * SO_RCVLOWAT) instead of waking for every segment. */
		int lowat = (int)need;
		if (setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0) {
			c->lowat = true;
			return;
		}
		/* Without it the socket stays readable and we would spin:
		 * forward without the name instead. */
	}
	if (st == EDGE_SNI_OK) {
		c->authority = xstrdup(name);
		edge_count(&c->l->st->m.sni_found, 1);
	} else {
		edge_count(&c->l->st->m.sni_absent, 1);
		log_debug("msg=conn.sni id=%016" PRIx64 " result=%s", c->id,
		          edge_sni_status_name(st));
	}
	sni_done(c);
}

/* --- callbacks ---------------------------------------------------------- */

static void cio_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct edge_conn *c = container_of(io, struct edge_conn, cio);

	(void)loop;
	if (c->state == CS_CONNECTING) {
		sni_peek(c);
		return;
	}
	if ((revents & EV_WRITE) && half_flush(c, &c->u2c, c->cfd, true) < 0)
		return;
	if ((revents & EV_READ) && half_read(c, &c->c2u, c->cfd, c->ufd, true) < 0)
		return;
	after_io(c);
}

static void uio_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct edge_conn *c = container_of(io, struct edge_conn, uio);

	(void)loop;
	if (c->state == CS_CONNECTING) {
		connected(c);
		return;
	}
	if ((revents & EV_WRITE) && half_flush(c, &c->c2u, c->ufd, false) < 0)
		return;
	if ((revents & EV_READ) && half_read(c, &c->u2c, c->ufd, c->cfd, false) < 0)
		return;
	after_io(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct edge_conn *c = container_of(t, struct edge_conn, timer);
	double now = ev_now(loop), idle, left;

	(void)revents;
	if (c->state == CS_CONNECTING) {
		if (c->sni_wait && now >= c->sni_end) {
			edge_count(&c->l->st->m.sni_absent, 1);
			log_debug("msg=conn.sni id=%016" PRIx64 " result=timeout", c->id);
			sni_done(c);
			return;
		}
		if (!c->up_ready && now >= c->attempt_end) {
			attempt_failed(c, ETIMEDOUT);
			connect_next(c);
			return;
		}
		arm_connect_timer(c);
		return;
	}
	idle = (double)c->l->conf->idle_timeout_ms / 1000.0;
	left = c->last + idle - now;
	if (left <= 0) {
		conn_close(c, EDGE_CLOSE_IDLE);
		return;
	}
	t->repeat = left;
	ev_timer_again(loop, t);
}

/* --- accept -------------------------------------------------------------- */

void edge_conn_accept(struct edge_worker *w, struct edge_listener *l, const struct edge_lsock *ls,
                      int fd, const struct net_addr *peer)
{
	const struct edge_listener_conf *lc = l->conf;
	struct edge_lstate *st = l->st;
	uint64_t id =
	        ((uint64_t)(w->id & 0xff) << 56) | ((w->id_base + ++w->seq) & 0xffffffffffffffULL);
	double now = ev_now(w->loop);
	enum edge_refuse why;
	const char *detail = NULL;
	bool limited = false;
	struct edge_conn *c;
	char cl[NET_ADDRSTRLEN];

	edge_count(&st->m.accepted, 1);
	if (!edge_access_permits(&l->access, peer)) {
		why = EDGE_REFUSE_DENY;
		goto refuse;
	}
	if (atomic_fetch_add_explicit(&st->active, 1, memory_order_relaxed) >=
	            lc->max_connections &&
	    lc->max_connections > 0) {
		atomic_fetch_sub_explicit(&st->active, 1, memory_order_relaxed);
		why = EDGE_REFUSE_MAX_CONNECTIONS;
		goto refuse;
	}
	if (l->limited) {
		enum edge_limit_result r = edge_limits_acquire(
		        st->limits, peer, lc->per_source_max_connections, lc->per_source_rate,
		        lc->per_source_burst, (uint64_t)(now * 1000.0));
		if (r != EDGE_LIMIT_OK) {
			atomic_fetch_sub_explicit(&st->active, 1, memory_order_relaxed);
			why = r == EDGE_LIMIT_RATE ? EDGE_REFUSE_SOURCE_RATE
			                           : EDGE_REFUSE_SOURCE_CONNECTIONS;
			goto refuse;
		}
		limited = true;
	}
	if (!edge_pool_any_up(l->pool)) {
		if (limited)
			edge_limits_release(st->limits, peer);
		atomic_fetch_sub_explicit(&st->active, 1, memory_order_relaxed);
		why = EDGE_REFUSE_NO_UPSTREAM;
		detail = "every upstream is marked down by health checks";
		goto refuse;
	}

	c = xcalloc(1, sizeof(*c));
	c->w = w;
	c->l = l;
	c->id = id;
	c->cfd = fd;
	c->ufd = -1;
	c->c2u.pipe.rd = c->c2u.pipe.wr = -1;
	c->u2c.pipe.rd = c->u2c.pipe.wr = -1;
	c->buffered = !w->splice;
	c->limited = limited;
	c->t_start = c->last = now;
	caddr_set(&c->client, peer);
	if (ls->wildcard) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct net_addr a;

		/* Bound to 0.0.0.0 or [::]: which address did the client reach? */
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			net_addr_from_sockaddr(&a, (struct sockaddr *)&ss, sl);
			caddr_set(&c->local, &a);
		}
	} else {
		caddr_set(&c->local, &ls->addr);
	}
	edge_gen_ref(l->gen);
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	atomic_fetch_add_explicit(&w->nconns, 1, memory_order_relaxed);

	ev_io_init(&c->cio, cio_cb, fd, EV_READ);
	ev_io_init(&c->uio, uio_cb, -1, EV_WRITE);
	ev_init(&c->timer, timer_cb);
	if (lc->tlv_authority_from_sni && lc->proxy_protocol == EDGE_PP_V2) {
		c->sni_wait = true;
		c->sni_end = now + (double)lc->sni_timeout_ms / 1000.0;
		ev_io_start(w->loop, &c->cio);
	}
	c->start = (uint16_t)edge_pool_start(l->pool);
	c->budget_end = now + (double)lc->connect_timeout_ms / 1000.0;
	connect_next(c);
	return;
refuse:
	net_addr_str(peer, cl, sizeof(cl));
	log_refused(w, id, l, cl, why, detail);
	close(fd);
}

void edge_conn_close_all(struct edge_worker *w)
{
	while (w->conns != NULL) {
		struct edge_conn *c = w->conns;
		if (c->state == CS_SPLICING)
			conn_close(c, EDGE_CLOSE_SHUTDOWN);
		else
			conn_refuse(c, EDGE_REFUSE_UNREACHABLE, "shutting down while connecting");
	}
}
