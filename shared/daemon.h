/*
 * shared/daemon.h -- process life cycle: privileges, service manager
 * notifications, pidfile.
 *
 * A daemon binds its privileged ports as root, then drops to a configured
 * user for good (daemon_drop_privileges).  It reports its state to systemd
 * with the sd_notify(3) datagram protocol, written directly to the unix
 * socket named by $NOTIFY_SOCKET (no libsystemd): READY=1 once listening,
 * RELOADING=1 ... READY=1 around a SIGHUP reload (Type=notify-reload),
 * STOPPING=1 when draining, STATUS=... for `systemctl status`.  Without
 * $NOTIFY_SOCKET (a terminal, a container) every notification is a no-op.
 * A pidfile is optional, for supervisors other than systemd.
 *
 * Error strings are formatted into a per-thread buffer, valid until the
 * next daemon_* call in the same thread.
 */
#ifndef SHARED_DAEMON_H
#define SHARED_DAEMON_H

#include <stdbool.h>

/*
 * Become user (a name from the passwd database) with group (a group name,
 * or NULL for the user's primary group) plus the user's supplementary
 * groups (initgroups(3): e.g. ssl-cert, so the key file stays readable for
 * reloads).  Real, effective and saved ids are all changed, then verified:
 * if root could be regained, this fails.  Call it after binding and before
 * starting threads.
 * Already running as exactly that user and group (no root): 0, nothing
 * done.  user "root": 0, nothing dropped.  Otherwise 0, or -1 with
 * *errstr_r naming the user or group, e.g.
 *   "unknown user 'tailpost'" or
 *   "cannot switch to user 'tailpost': not running as root (euid 1000)".
 */
int daemon_drop_privileges(const char *user, const char *group, const char **errstr_r);

/*
 * Send state (newline-separated VAR=value assignments, sd_notify(3)) as
 * one datagram to $NOTIFY_SOCKET: an absolute path, or "@name" for a
 * Linux abstract socket.  Returns 1 when sent, 0 when $NOTIFY_SOCKET is
 * unset or empty (nothing to do), -1 with *errstr_r naming the socket
 * (unsupported address, socket missing, send failed).  May block briefly
 * if the service manager's queue is full; it is called a few times per
 * process lifetime.
 */
int daemon_notify(const char *state, const char **errstr_r);

/* "READY=1": start-up, or a reload, is complete. */
int daemon_notify_ready(const char **errstr_r);
/* "RELOADING=1" with MONOTONIC_USEC= (CLOCK_MONOTONIC, required with
 * systemd >= 253 Type=notify-reload to match the reload request).  Follow
 * with daemon_notify_ready() when the reload is done, failed or not. */
int daemon_notify_reloading(const char **errstr_r);
/* "STOPPING=1": shutdown has begun. */
int daemon_notify_stopping(const char **errstr_r);
/* "STATUS=<text>" for `systemctl status`; line breaks in the text are
 * sent as spaces (a newline would start a new assignment). */
int daemon_notify_status(const char **errstr_r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/*
 * Create or open path, take an exclusive flock(2) on it and write our pid
 * ("1234\n").  Returns the fd, which holds the lock: keep it open for the
 * life of the process (it is close-on-exec).  -1 with *errstr_r naming the
 * file; when another live process holds the lock, the message names its
 * pid: "pidfile /run/x.pid: locked by pid 1234 (already running?)".
 */
int daemon_pidfile_write(const char *path, const char **errstr_r);
/* Unlink path and close *fd (sets it to -1); nothing if *fd < 0. */
void daemon_pidfile_remove(const char *path, int *fd);

#endif
