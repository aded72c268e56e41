/*
 * shared/daemon.c -- privilege drop, sd_notify protocol, pidfile.
 *
 * Privileges: groups first (setgroups/initgroups and setresgid need root),
 * the uid last, all three ids (real, effective, saved) at once with
 * setres*id so no saved-set id is left to switch back to.  Then we check
 * the result from the outside, by trying to become root again: a silent
 * partial drop is worse than refusing to start.
 *
 * Notifications follow sd_notify(3): one AF_UNIX datagram per message,
 * text "VAR=value" lines, sent to $NOTIFY_SOCKET; a leading '@' names an
 * abstract socket (its address starts with a NUL byte, and its length
 * counts only the name, not a terminator).  A fresh socket per message
 * keeps no state and no descriptor for something sent a handful of times.
 */
#include "shared/daemon.h"

#include "shared/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char daemon_errbuf[512];

static const char *daemon_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *daemon_errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(daemon_errbuf, sizeof(daemon_errbuf), fmt, ap);
	va_end(ap);
	return daemon_errbuf;
}

/* --- privileges --------------------------------------------------------- */

/* Look up user (and group) without the static buffers of getpwnam(3). */
static int daemon_lookup(const char *user, const char *group, uid_t *uid_r, gid_t *gid_r,
                         const char **errstr_r)
{
	size_t bufsz = 1024;
	char *buf = NULL;
	int ret = -1, r;

	for (;;) {
		struct passwd pw, *pwp = NULL;

		buf = xrealloc(buf, bufsz);
		r = getpwnam_r(user, &pw, buf, bufsz, &pwp);
		if (r == ERANGE && bufsz < (1u << 20)) {
			bufsz *= 2;
			continue;
		}
		if (pwp == NULL) {
			if (r == 0 || r == ENOENT || r == ESRCH)
				*errstr_r = daemon_errf("unknown user '%s'", user);
			else
				*errstr_r = daemon_errf("cannot look up user '%s': %s", user,
				                        strerror(r));
			goto out;
		}
		*uid_r = pw.pw_uid;
		*gid_r = pw.pw_gid;
		break;
	}
	while (group != NULL) {
		struct group gr, *grp = NULL;

		r = getgrnam_r(group, &gr, buf, bufsz, &grp);
		if (r == ERANGE && bufsz < (1u << 20)) {
			bufsz *= 2;
			buf = xrealloc(buf, bufsz);
			continue;
		}
		if (grp == NULL) {
			if (r == 0 || r == ENOENT || r == ESRCH)
				*errstr_r = daemon_errf("unknown group '%s' (for user '%s')", group,
				                        user);
			else
				*errstr_r = daemon_errf("cannot look up group '%s': %s", group,
				                        strerror(r));
			goto out;
		}
		*gid_r = gr.gr_gid;
		break;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

int daemon_drop_privileges(const char *user, const char *group, const char **errstr_r)
{
	uid_t uid, ruid, euid, suid;
	gid_t gid, rgid, egid, sgid;

	if (daemon_lookup(user, group, &uid, &gid, errstr_r) < 0)
		return -1;
	if (uid == 0)
		return 0;
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0) {
		*errstr_r = daemon_errf("cannot switch to user '%s': getresuid: %s", user,
		                        strerror(errno));
		return -1;
	}
	if (euid != 0) {
		if (ruid == uid && euid == uid && suid == uid && rgid == gid && egid == gid &&
		    sgid == gid)
			return 0;
		*errstr_r = daemon_errf("cannot switch to user '%s': not running as root (euid %u)",
		                        user, (unsigned)euid);
		return -1;
	}
	/* Supplementary groups before the gid and uid: both need root. */
	if (initgroups(user, gid) < 0) {
		*errstr_r = daemon_errf("cannot switch to user '%s': initgroups: %s", user,
		                        strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) < 0) {
		*errstr_r = daemon_errf("cannot switch to user '%s': setresgid(%u): %s", user,
		                        (unsigned)gid, strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) < 0) {
		*errstr_r = daemon_errf("cannot switch to user '%s': setresuid(%u): %s", user,
		                        (unsigned)uid, strerror(errno));
		return -1;
	}
	/* Verify from the outside: every id changed, and root is gone. */
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0 ||
	    ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid ||
	    sgid != gid) {
		*errstr_r = daemon_errf("switching to user '%s' left other ids in place", user);
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || setegid(0) == 0) {
		*errstr_r = daemon_errf("switched to user '%s' but root can be regained", user);
		return -1;
	}
	return 0;
}

/* --- sd_notify ---------------------------------------------------------- */

int daemon_notify(const char *state, const char **errstr_r)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	size_t n;
	int fd = -1, ret = -1;

	if (path == NULL || path[0] == '\0')
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	n = strlen(path);
	if (path[0] == '@') {
		/* Abstract: NUL, then the name; the length ends the name. */
		if (n < 2 || n > sizeof(sun.sun_path)) {
			*errstr_r = daemon_errf("NOTIFY_SOCKET %s: bad abstract name length", path);
			return -1;
		}
		memcpy(sun.sun_path + 1, path + 1, n - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else if (path[0] == '/') {
		if (n >= sizeof(sun.sun_path)) {
			*errstr_r = daemon_errf("NOTIFY_SOCKET %s: path too long", path);
			return -1;
		}
		memcpy(sun.sun_path, path, n);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	} else {
		/* e.g. "vsock:..." (systemd >= 254 in VMs): not ours to handle */
		*errstr_r = daemon_errf("NOTIFY_SOCKET %s: not an absolute path or @name", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*errstr_r = daemon_errf("NOTIFY_SOCKET %s: socket: %s", path, strerror(errno));
		goto out;
	}
	n = strlen(state);
	if (sendto(fd, state, n, MSG_NOSIGNAL, (const struct sockaddr *)&sun, len) != (ssize_t)n) {
		*errstr_r = daemon_errf("NOTIFY_SOCKET %s: send: %s", path, strerror(errno));
		goto out;
	}
	ret = 1;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

int daemon_notify_ready(const char **errstr_r)
{
	return daemon_notify("READY=1", errstr_r);
}

int daemon_notify_reloading(const char **errstr_r)
{
	struct timespec ts;
	char msg[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	                 (unsigned long long)ts.tv_nsec / 1000);
	return daemon_notify(msg, errstr_r);
}

int daemon_notify_stopping(const char **errstr_r)
{
	return daemon_notify("STOPPING=1", errstr_r);
}

int daemon_notify_status(const char **errstr_r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	memcpy(msg, "STATUS=", 7);
	va_start(ap, fmt);
	n = vsnprintf(msg + 7, sizeof(msg) - 7, fmt, ap);
	va_end(ap);
	if (n < 0)
		msg[7] = '\0';
	for (char *p = msg + 7; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return daemon_notify(msg, errstr_r);
}

/* --- pidfile ------------------------------------------------------------ */

int daemon_pidfile_write(const char *path, const char **errstr_r)
{
	char buf[32];
	ssize_t r;
	int fd, n;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		*errstr_r = daemon_errf("pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			r = pread(fd, buf, sizeof(buf) - 1, 0);
			buf[r > 0 ? r : 0] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			*errstr_r = daemon_errf("pidfile %s: locked by pid %s (already running?)",
			                        path, buf[0] != '\0' ? buf : "?");
		} else {
			*errstr_r = daemon_errf("pidfile %s: flock: %s", path, strerror(errno));
		}
		goto fail;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		*errstr_r = daemon_errf("pidfile %s: write: %s", path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

void daemon_pidfile_remove(const char *path, int *fd)
{
	if (*fd < 0)
		return;
	/* Unlink while still holding the lock, so a new instance never sees
	 * our file unlocked with our pid in it. */
	unlink(path);
	close(*fd);
	*fd = -1;
}
