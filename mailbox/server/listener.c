/*
 * mailbox/server/listener.c -- listening sockets, listener snapshots and
 * shared TLS contexts (see listener.h).
 *
 * Sockets are kept in a list keyed by their bound address, not by the
 * listener's name: a listener renamed, or one whose role changed, keeps
 * its kernel socket (and the connections waiting in its accept queue),
 * and two generations of a config never fight over the same port.
 *
 * Accepting: up to ACCEPT_BATCH connections per readiness event, so one
 * busy listener cannot starve the others.  When the process runs out of
 * descriptors (EMFILE/ENFILE) the socket stays readable and libev would
 * spin, so its watcher pauses for a second and the condition is logged
 * once per pause.
 */
#include "mailbox/server/listener.h"

#include "mailbox/server/conn.h"
#include "mailbox/server/metrics.h"
#include "mailbox/server/server.h"
#include "shared/log.h"
#include "shared/loop.h"
#include "shared/tls.h"
#include "shared/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCEPT_BATCH    32
#define EMFILE_PAUSE_MS 1000

/* --- shared TLS contexts ------------------------------------------------ */

struct tls_entry {
	struct tls_entry *next, **pprev;
	char *cert, *key;
	struct tls_ctx *ctx;
	int refs;
};

static struct tls_entry *tls_entries;

static struct tls_entry *tls_entry_get(const char *cert, const char *key, const char **errstr_r)
{
	struct tls_entry *e;
	struct tls_ctx *ctx;

	for (e = tls_entries; e != NULL; e = e->next) {
		if (strcmp(e->cert, cert) == 0 && strcmp(e->key, key) == 0) {
			e->refs++;
			return e;
		}
	}
	ctx = tls_ctx_new(cert, key, errstr_r);
	if (ctx == NULL)
		return NULL;
	e = xcalloc(1, sizeof(*e));
	e->cert = xstrdup(cert);
	e->key = xstrdup(key);
	e->ctx = ctx;
	e->refs = 1;
	e->next = tls_entries;
	if (tls_entries != NULL)
		tls_entries->pprev = &e->next;
	e->pprev = &tls_entries;
	tls_entries = e;
	return e;
}

static void tls_entry_put(struct tls_entry **ep)
{
	struct tls_entry *e = *ep;

	*ep = NULL;
	if (e == NULL || --e->refs > 0)
		return;
	*e->pprev = e->next;
	if (e->next != NULL)
		e->next->pprev = e->pprev;
	tls_ctx_free(&e->ctx);
	free(e->cert);
	free(e->key);
	free(e);
}

struct tls_ctx *listener_tls(const struct listener *l)
{
	return l->tls != NULL ? l->tls->ctx : NULL;
}

/* --- listener snapshots ------------------------------------------------- */

void listener_ref(struct listener *l)
{
	l->refs++;
}

void listener_unref(struct listener **lp)
{
	struct listener *l = *lp;

	*lp = NULL;
	if (l == NULL || --l->refs > 0)
		return;
	tls_entry_put(&l->tls);
	proxy_policy_free(&l->proxy);
	free(l->name);
	free(l);
}

static struct listener *listener_new(struct server *s, const struct mailbox_config *cfg,
                                     const struct mailbox_listener_conf *lc, char *err,
                                     size_t errsz)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	const char *why = NULL;

	l->refs = 1;
	l->server = s;
	l->name = xstrdup(lc->name);
	l->role = lc->role;
	l->tls_mode = lc->tls.mode;
	l->header_timeout_ms = lc->proxy.header_timeout_ms;
	l->handshake_ms = lc->timeouts.handshake_ms;
	l->idle_ms = lc->timeouts.idle_ms;
	l->command_ms = lc->timeouts.command_ms;
	l->max_connections = lc->max_connections;
	l->allow_plaintext_auth = lc->allow_plaintext_auth;
	l->in_max = (size_t)cfg->limits.input_buffer;
	l->out_max = (size_t)cfg->limits.output_buffer;
	l->proto = server_proto_for_role(lc->role);
	l->metrics = metrics_listener(lc->name);
	/* once an SMTP listener, its SMTP series stay (monotonic across reloads) */
	if (lc->role == MAILBOX_ROLE_MX || lc->role == MAILBOX_ROLE_SUBMISSION ||
	    lc->role == MAILBOX_ROLE_SUBMISSIONS)
		l->metrics->smtp.enabled = true;
	net_cidr_set_init(&l->proxy.trusted);
	l->proxy.enabled = lc->proxy_present;
	if (lc->proxy_present) {
		net_cidr_set_free(&l->proxy.trusted);
		net_cidr_set_copy(&l->proxy.trusted, &lc->proxy.trusted);
		l->proxy.untrusted = lc->proxy.untrusted == MAILBOX_UNTRUSTED_DIRECT
		                             ? PROXY_UNTRUSTED_DIRECT
		                             : PROXY_UNTRUSTED_REFUSE;
		l->proxy.max_header = (size_t)lc->proxy.max_header;
	}
	if (lc->tls.mode != MAILBOX_TLS_NONE) {
		l->tls = tls_entry_get(lc->tls.cert, lc->tls.key, &why);
		if (l->tls == NULL) {
			snprintf(err, errsz, "listener '%s': %s", lc->name,
			         why != NULL ? why : "tls: cannot load");
			listener_unref(&l);
			return NULL;
		}
	}
	return l;
}

/* --- sockets ------------------------------------------------------------ */

struct lsock {
	struct lsock *next;
	struct listener_set *set;
	int fd;
	ev_io io;
	struct loop_timer pause;
	struct net_addr addr;
	char addr_str[NET_ADDRSTRLEN];
	struct listener *l;
	bool keep;               /* apply(): still wanted */
	struct listener *next_l; /* apply(): its next snapshot */
};

struct listener_set {
	struct server *server;
	struct lsock *socks;
};

static void lsock_close(struct lsock *s)
{
	struct ev_loop *loop = server_loop(s->set->server);

	ev_io_stop(loop, &s->io);
	loop_timer_stop(&s->pause);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	listener_unref(&s->l);
	listener_unref(&s->next_l);
	free(s);
}

static void on_pause_end(struct loop_timer *t)
{
	struct lsock *s = container_of(t, struct lsock, pause);

	ev_io_start(server_loop(s->set->server), &s->io);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct lsock *s = container_of(w, struct lsock, io);

	(void)revents;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct net_addr peer;
		int fd = loop_accept(s->fd, &peer);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				log_error("msg=\"accept paused: out of descriptors or memory\" "
				          "listener=%s bind=%s error=\"%s\" pause_ms=%d",
				          s->l->name, s->addr_str, strerror(errno),
				          EMFILE_PAUSE_MS);
				ev_io_stop(loop, &s->io);
				loop_timer_start(&s->pause, EMFILE_PAUSE_MS, 0);
				return;
			}
			log_warn("msg=\"accept failed\" listener=%s bind=%s error=\"%s\"",
			         s->l->name, s->addr_str, strerror(errno));
			return;
		}
		conn_accept(s->l, fd, &peer);
	}
}

struct listener_set *listener_set_new(struct server *srv)
{
	struct listener_set *ls = xcalloc(1, sizeof(*ls));

	ls->server = srv;
	return ls;
}

static struct lsock *find_sock(struct listener_set *ls, const struct net_addr *a)
{
	for (struct lsock *s = ls->socks; s != NULL; s = s->next) {
		if (net_addr_ip_equal(&s->addr, a) && net_addr_port(&s->addr) == net_addr_port(a))
			return s;
	}
	return NULL;
}

/* Was there a socket of this name before, and how did it change?  For the
 * log only. */
static const char *change_of(struct listener_set *ls, const struct listener *nl,
                             const struct mailbox_listener_conf *lc)
{
	bool seen = false, same_binds = true;
	size_t nold = 0;

	for (struct lsock *s = ls->socks; s != NULL; s = s->next) {
		if (strcmp(s->l->name, nl->name) != 0)
			continue;
		seen = true;
		nold++;
		bool found = false;
		for (size_t i = 0; i < lc->bind.n; i++) {
			struct net_addr a;
			if (net_addr_parse_hostport(lc->bind.v[i], &a, NULL) == 0 &&
			    net_addr_ip_equal(&a, &s->addr) &&
			    net_addr_port(&a) == net_addr_port(&s->addr))
				found = true;
		}
		if (!found)
			same_binds = false;
	}
	if (!seen)
		return "added";
	if (!same_binds || nold != lc->bind.n)
		return "rebound";
	return "kept";
}

int listener_set_apply(struct listener_set *ls, const struct mailbox_config *cfg, char *err,
                       size_t errsz)
{
	struct ev_loop *loop = server_loop(ls->server);
	struct listener **nl = xcalloc(cfg->listeners.n ? cfg->listeners.n : 1, sizeof(*nl));
	struct lsock *fresh = NULL, *s, *nexts, *kept = NULL;
	int rc = -1;

	for (s = ls->socks; s != NULL; s = s->next)
		s->keep = false;
	for (size_t i = 0; i < cfg->listeners.n; i++) {
		nl[i] = listener_new(ls->server, cfg, mailbox_config_listener(cfg, i), err, errsz);
		if (nl[i] == NULL)
			goto fail;
	}
	/* Bind what is new; mark what is kept. */
	for (size_t i = 0; i < cfg->listeners.n; i++) {
		const struct mailbox_listener_conf *lc = mailbox_config_listener(cfg, i);

		for (size_t k = 0; k < lc->bind.n; k++) {
			struct net_addr a;
			const char *why = NULL;

			if (net_addr_parse_hostport(lc->bind.v[k], &a, &why) < 0) {
				snprintf(err, errsz, "listener '%s': bind '%s': %s", lc->name,
				         lc->bind.v[k], why != NULL ? why : "invalid");
				goto fail;
			}
			s = find_sock(ls, &a);
			if (s != NULL) {
				s->keep = true;
				listener_unref(&s->next_l);
				listener_ref(nl[i]);
				s->next_l = nl[i];
				continue;
			}
			s = xcalloc(1, sizeof(*s));
			s->set = ls;
			s->addr = a;
			net_addr_str(&a, s->addr_str, sizeof(s->addr_str));
			s->fd = loop_listen(&a, 0, false, &why);
			if (s->fd < 0) {
				snprintf(err, errsz, "listener '%s': %s", lc->name,
				         why != NULL ? why : "cannot listen");
				free(s);
				goto fail;
			}
			/* port 0 (tests): log the port actually bound */
			if (net_addr_port(&a) == 0) {
				struct sockaddr_storage ss;
				socklen_t sl = sizeof(ss);
				if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0) {
					net_addr_from_sockaddr(&s->addr, (struct sockaddr *)&ss,
					                       sl);
					net_addr_str(&s->addr, s->addr_str, sizeof(s->addr_str));
				}
			}
			listener_ref(nl[i]);
			s->l = nl[i];
			ev_io_init(&s->io, on_accept, s->fd, EV_READ);
			loop_timer_init(&s->pause, loop, on_pause_end);
			s->next = fresh;
			fresh = s;
		}
	}
	/* Commit: nothing below can fail. */
	for (size_t i = 0; i < cfg->listeners.n; i++) {
		const struct mailbox_listener_conf *lc = mailbox_config_listener(cfg, i);
		log_info("msg=\"listener %s\" listener=%s role=%s tls=%s proxy=%s binds=%zu",
		         change_of(ls, nl[i], lc), lc->name, mailbox_role_name(lc->role),
		         mailbox_tls_mode_name(lc->tls.mode),
		         !lc->proxy_present                                ? "none"
		         : lc->proxy.untrusted == MAILBOX_UNTRUSTED_DIRECT ? "trusted+direct"
		                                                           : "trusted+refuse",
		         lc->bind.n);
		if (nl[i]->proto == NULL)
			log_warn("msg=\"no protocol is built in for this role yet: connections "
			         "will be closed after the PROXY gate\" listener=%s role=%s",
			         lc->name, mailbox_role_name(lc->role));
	}
	for (s = ls->socks; s != NULL; s = nexts) {
		nexts = s->next;
		if (!s->keep) {
			log_info("msg=\"listening socket closed\" listener=%s bind=%s", s->l->name,
			         s->addr_str);
			lsock_close(s);
			continue;
		}
		listener_unref(&s->l);
		s->l = s->next_l;
		s->next_l = NULL;
		s->next = kept;
		kept = s;
	}
	ls->socks = kept;
	for (s = fresh; s != NULL; s = nexts) {
		nexts = s->next;
		ev_io_start(loop, &s->io);
		log_info("msg=\"listening\" listener=%s bind=%s role=%s", s->l->name, s->addr_str,
		         mailbox_role_name(s->l->role));
		s->next = ls->socks;
		ls->socks = s;
	}
	fresh = NULL;
	rc = 0;
fail:
	if (rc < 0) {
		for (s = ls->socks; s != NULL; s = s->next) {
			s->keep = false;
			listener_unref(&s->next_l);
		}
		for (s = fresh; s != NULL; s = nexts) {
			nexts = s->next;
			lsock_close(s);
		}
	}
	for (size_t i = 0; i < cfg->listeners.n; i++)
		listener_unref(&nl[i]);
	free(nl);
	return rc;
}

void listener_set_stop(struct listener_set *ls)
{
	struct lsock *s, *n;

	for (s = ls->socks; s != NULL; s = n) {
		n = s->next;
		log_info("msg=\"listening socket closed\" listener=%s bind=%s", s->l->name,
		         s->addr_str);
		lsock_close(s);
	}
	ls->socks = NULL;
}

void listener_set_tls_check(struct listener_set *ls, bool force)
{
	(void)ls;
	for (struct tls_entry *e = tls_entries; e != NULL; e = e->next) {
		const char *why = NULL;
		int r;

		if (force)
			r = tls_ctx_reload(e->ctx, &why) == 0 ? 1 : -1;
		else
			r = tls_ctx_maybe_reload(e->ctx, &why);
		if (r > 0)
			log_info("msg=\"certificate loaded\" cert=%s generation=%u", e->cert,
			         tls_ctx_generation(e->ctx));
		else if (r < 0)
			log_error("msg=\"certificate reload failed; the previous one stays in "
			          "service\" cert=%s error=\"%s\"",
			          e->cert, why != NULL ? why : "?");
	}
}

size_t listener_set_count(const struct listener_set *ls)
{
	size_t n = 0;

	for (const struct lsock *s = ls->socks; s != NULL; s = s->next)
		n++;
	return n;
}

void listener_set_free(struct listener_set **lsp)
{
	struct listener_set *ls = *lsp;

	*lsp = NULL;
	if (ls == NULL)
		return;
	listener_set_stop(ls);
	free(ls);
}
