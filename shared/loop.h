/*
 * shared/loop.h -- libev glue: signals, timers, and socket set-up.
 *
 * Each worker runs one libev loop (house style); this module holds what
 * every daemon needs around it and nothing protocol-specific:
 *  - struct loop_signals maps SIGHUP to "reload" and SIGTERM/SIGINT to
 *    "stop" on a loop, and ignores SIGPIPE (a write to a closed peer must
 *    be an EPIPE, not the death of the daemon; SSL_write cannot pass
 *    MSG_NOSIGNAL);
 *  - struct loop_timer wraps ev_timer with millisecond durations and the
 *    cheap idle-timeout pattern from libev's manual (record the time of the
 *    last activity; the timer, when it fires early, re-arms itself for the
 *    remainder), so a touch on every read costs a store, not a heap update;
 *  - socket helpers: non-blocking/close-on-exec, TCP_NODELAY, keepalive,
 *    accept4, and loop_listen(), which opens a ready listening socket with
 *    SO_REUSEADDR, optional SO_REUSEPORT (one listener per worker loop, the
 *    kernel spreads connections) and IPV6_V6ONLY on IPv6 so [::]:25 and
 *    0.0.0.0:25 can be configured as two listeners.
 *
 * libev has no pkg-config file on Debian: include <ev.h>, link -lev.
 * Error strings of loop_listen() live in a per-thread buffer, valid until
 * the next loop_listen() in the same thread.
 */
#ifndef SHARED_LOOP_H
#define SHARED_LOOP_H

#include "shared/net.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

/* --- signals ------------------------------------------------------------ */

/* Called on the loop (never in signal context) with the signal number. */
typedef void loop_signal_cb(void *arg, int signum);

struct loop_signals {
	struct ev_loop *loop;
	ev_signal hup, term, intr;
	loop_signal_cb *on_reload, *on_stop;
	void *arg;
	bool started;
};

/*
 * Start watching on loop: SIGHUP calls on_reload, SIGTERM and SIGINT call
 * on_stop (either callback may be NULL: the signal is then consumed and
 * ignored).  Sets SIGPIPE to SIG_IGN for the process.  The watchers do not
 * keep ev_run() alive on their own (ev_unref), so a loop whose listeners
 * and connections are all closed returns even while they are active.  A
 * signal is delivered to one loop only: start this on one loop per
 * process (libev's rule).  s is owned by the caller and must outlive the
 * watchers.
 */
void loop_signals_start(struct loop_signals *s, struct ev_loop *loop, loop_signal_cb *on_reload,
                        loop_signal_cb *on_stop, void *arg);
/* Stop the watchers (the signals return to their default action);
 * harmless if not started. */
void loop_signals_stop(struct loop_signals *s);

/* --- timers ------------------------------------------------------------- */

struct loop_timer;
/* The owner embeds struct loop_timer and recovers itself with
 * container_of(t, struct owner, field). */
typedef void loop_timer_cb(struct loop_timer *t);

struct loop_timer {
	ev_timer w;
	struct ev_loop *loop;
	loop_timer_cb *cb;
	ev_tstamp idle_s; /* > 0: idle mode (loop_timer_touch), fires once */
	ev_tstamp last;   /* idle mode: time of the last touch */
};

/* Prepare t for loop; does not start it. */
void loop_timer_init(struct loop_timer *t, struct ev_loop *loop, loop_timer_cb *cb);
/* (Re)start: first call after after_ms, then every repeat_ms (0: once).
 * Restarting an active timer replaces its schedule. */
void loop_timer_start(struct loop_timer *t, uint64_t after_ms, uint64_t repeat_ms);
/*
 * Idle timeout: fire once, idle_ms after the most recent touch (measured
 * with the loop's ev_now()).  Call it on every sign of life (a read, a
 * command); with an unchanged idle_ms and an armed timer it only records
 * the time.  idle_ms 0 stops the timer.  loop_timer_start() or
 * loop_timer_stop() leave idle mode.
 */
void loop_timer_touch(struct loop_timer *t, uint64_t idle_ms);
void loop_timer_stop(struct loop_timer *t);
bool loop_timer_active(const struct loop_timer *t);

/* --- sockets ------------------------------------------------------------ */

/* Set O_NONBLOCK / FD_CLOEXEC on fd.  0, or -1 with errno. */
int loop_fd_nonblock(int fd);
int loop_fd_cloexec(int fd);

/* TCP_NODELAY: our writes are already whole replies; Nagle would only
 * delay them behind the peer's delayed ACK.  0, or -1 with errno. */
int loop_tcp_nodelay(int fd);

/*
 * SO_KEEPALIVE with TCP_KEEPIDLE idle_s, TCP_KEEPINTVL interval_s and
 * TCP_KEEPCNT count, so a vanished peer (NAT timeout, tailnet peer gone)
 * is noticed after idle_s + interval_s * count seconds.  A value of 0
 * keeps the system default for that parameter.  0, or -1 with errno.
 */
int loop_tcp_keepalive(int fd, int idle_s, int interval_s, int count);

/*
 * Open a TCP listening socket on addr (AF_INET or AF_INET6; port 0 picks
 * a free port, read it back with getsockname).  The socket is
 * non-blocking and close-on-exec, with SO_REUSEADDR (restart despite
 * TIME_WAIT), SO_REUSEPORT when reuseport, and IPV6_V6ONLY for IPv6.
 * backlog <= 0 means SOMAXCONN.  Returns the fd, or -1 with *errstr_r
 * naming the address, the failed step and the reason, with a hint for
 * the common causes, e.g.
 *   "listen 0.0.0.0:25: bind: Address already in use (another socket is
 *    bound there; listeners sharing a port all need reuse_port)".
 */
int loop_listen(const struct net_addr *addr, int backlog, bool reuseport, const char **errstr_r);

/*
 * Accept one connection from the listening fd lfd, non-blocking and
 * close-on-exec.  Fills *peer_r (v4-mapped IPv6 normalised to IPv4) when
 * peer_r is not NULL.  Returns the fd, or -1 with errno (EAGAIN when
 * nothing is pending; ECONNABORTED, EMFILE etc. as accept4(2)).
 */
int loop_accept(int lfd, struct net_addr *peer_r);

#endif
