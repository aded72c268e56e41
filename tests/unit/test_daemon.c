/*
 * tests/unit/test_daemon.c -- shared/daemon: sd_notify to a datagram socket
 * we bind ourselves (path and abstract), pidfile locking, and privilege
 * drop in forked children (when the tests run as root).
 */
#include "tests/unit/unit.h"

#include "shared/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool dt_contains(const char *s, const char *needle)
{
	return s != NULL && strstr(s, needle) != NULL;
}

/* Bind a datagram socket at path ("@name" = abstract). */
static int dt_bind(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0 || n >= sizeof(sun.sun_path))
		return -1;
	memcpy(sun.sun_path, path, n);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	if (path[0] == '@') {
		sun.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	if (bind(fd, (struct sockaddr *)&sun, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One datagram, NUL-terminated, or "" if none is queued. */
static const char *dt_recv(int fd, char *buf, size_t bufsz)
{
	ssize_t n = recv(fd, buf, bufsz - 1, MSG_DONTWAIT);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static unsigned long long dt_mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

/* Send every notification kind through NOTIFY_SOCKET=name, received on fd. */
static void dt_notify_roundtrip(const char *name, int fd)
{
	const char *err = NULL;
	char buf[600];
	unsigned long long t0, t1, usec;

	setenv("NOTIFY_SOCKET", name, 1);
	CHECK_MSG(daemon_notify_ready(&err) == 1, "%s: %s", name, err);
	CHECK_STR(dt_recv(fd, buf, sizeof(buf)), "READY=1");

	t0 = dt_mono_usec();
	CHECK_MSG(daemon_notify_reloading(&err) == 1, "%s", err);
	t1 = dt_mono_usec();
	dt_recv(fd, buf, sizeof(buf));
	CHECK_MSG(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) == 1, "got %s", buf);
	CHECK(usec >= t0 && usec <= t1);

	CHECK(daemon_notify_stopping(&err) == 1);
	CHECK_STR(dt_recv(fd, buf, sizeof(buf)), "STOPPING=1");

	CHECK(daemon_notify_status(&err, "serving %d listeners\nREADY=1", 3) == 1);
	CHECK_STR(dt_recv(fd, buf, sizeof(buf)), "STATUS=serving 3 listeners READY=1");

	CHECK(daemon_notify("WATCHDOG=1\nSTATUS=x", &err) == 1);
	CHECK_STR(dt_recv(fd, buf, sizeof(buf)), "WATCHDOG=1\nSTATUS=x");
	/* exactly one datagram per call */
	CHECK_STR(dt_recv(fd, buf, sizeof(buf)), "");
}

UNIT_TEST(daemon_notify_path_and_abstract)
{
	char dir[] = "/tmp/tp-unit-daemon-XXXXXX", path[128], abs[64];
	int fd;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/notify", dir);
	fd = dt_bind(path);
	CHECK(fd >= 0);
	dt_notify_roundtrip(path, fd);
	unsetenv("NOTIFY_SOCKET");
	close(fd);
	unlink(path);
	rmdir(dir);
	CHECK(!unit_failed());

	snprintf(abs, sizeof(abs), "@tp-unit-notify-%ld-%ld", (long)getpid(), (long)time(NULL));
	fd = dt_bind(abs);
	CHECK(fd >= 0);
	dt_notify_roundtrip(abs, fd);
	unsetenv("NOTIFY_SOCKET");
	close(fd);
}

UNIT_TEST(daemon_notify_unset_and_errors)
{
	char dir[] = "/tmp/tp-unit-daemon-XXXXXX", path[128], missing[128];
	const char *err = "untouched";
	char buf[64];
	int fd;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/notify", dir);
	snprintf(missing, sizeof(missing), "%s/absent", dir);
	fd = dt_bind(path);
	CHECK(fd >= 0);

	/* unset or empty: a no-op, nothing sent anywhere */
	unsetenv("NOTIFY_SOCKET");
	CHECK_INT(daemon_notify_ready(&err), 0);
	CHECK_INT(daemon_notify_reloading(&err), 0);
	CHECK_INT(daemon_notify_status(&err, "x"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	CHECK_INT(daemon_notify_stopping(&err), 0);
	CHECK_STR(err, "untouched");
	CHECK_STR(dt_recv(fd, buf, sizeof(buf)), "");

	static const char *const bad[] = {"relative/sock", "vsock:2:1234", "@"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("NOTIFY_SOCKET", bad[i], 1);
		CHECK_MSG(daemon_notify_ready(&err) == -1, "%s accepted", bad[i]);
		CHECK_MSG(dt_contains(err, bad[i]), "err: %s", err);
	}
	setenv("NOTIFY_SOCKET", missing, 1);
	CHECK(daemon_notify_ready(&err) == -1);
	CHECK_MSG(dt_contains(err, missing) && dt_contains(err, strerror(ENOENT)), "err: %s", err);

	unsetenv("NOTIFY_SOCKET");
	close(fd);
	unlink(path);
	rmdir(dir);
}

UNIT_TEST(daemon_pidfile)
{
	char dir[] = "/tmp/tp-unit-daemon-XXXXXX", path[128], want[32], got[32];
	const char *err = NULL;
	int fd, fd2, rfd;
	ssize_t n;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/tp.pid", dir);
	/* stale content longer than ours is truncated */
	rfd = open(path, O_WRONLY | O_CREAT, 0644);
	CHECK(rfd >= 0);
	CHECK(write(rfd, "99999999999\n", 12) == 12);
	close(rfd);

	fd = daemon_pidfile_write(path, &err);
	CHECK_MSG(fd >= 0, "%s", err);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	rfd = open(path, O_RDONLY);
	CHECK(rfd >= 0);
	n = read(rfd, got, sizeof(got) - 1);
	close(rfd);
	CHECK(n > 0);
	got[n] = '\0';
	CHECK_STR(got, want);

	/* a second instance is refused, naming the file and the holder */
	fd2 = daemon_pidfile_write(path, &err);
	CHECK(fd2 == -1);
	want[strlen(want) - 1] = '\0';
	CHECK_MSG(dt_contains(err, path) && dt_contains(err, "locked by pid") &&
	                  dt_contains(err, want),
	          "err: %s", err);

	daemon_pidfile_remove(path, &fd);
	CHECK_INT(fd, -1);
	CHECK(access(path, F_OK) == -1 && errno == ENOENT);
	daemon_pidfile_remove(path, &fd); /* harmless */

	/* free again after removal */
	fd = daemon_pidfile_write(path, &err);
	CHECK_MSG(fd >= 0, "%s", err);
	daemon_pidfile_remove(path, &fd);

	snprintf(path, sizeof(path), "%s/no/such/dir.pid", dir);
	CHECK(daemon_pidfile_write(path, &err) == -1);
	CHECK_MSG(dt_contains(err, path), "err: %s", err);
	rmdir(dir);
}

UNIT_TEST(daemon_drop_lookup_errors)
{
	const char *err = NULL;

	CHECK(daemon_drop_privileges("tp-no-such-user-x", NULL, &err) == -1);
	CHECK_STR(err, "unknown user 'tp-no-such-user-x'");
	CHECK(daemon_drop_privileges("nobody", "tp-no-such-group-x", &err) == -1);
	CHECK_STR(err, "unknown group 'tp-no-such-group-x' (for user 'nobody')");
	/* "root" drops nothing */
	uid_t before = geteuid();
	CHECK(daemon_drop_privileges("root", NULL, &err) == 0);
	CHECK_INT(geteuid(), before);
}

/*
 * Run in a child: drop to user/group, then check every id, the groups and
 * that root cannot come back.  The child's verdict comes back as its exit
 * status (0 = all good, else the number of the failed step) and a message
 * on a pipe.
 */
static int dt_drop_child(const char *user, const char *group, uid_t want_uid, gid_t want_gid,
                         char *msg, size_t msgsz)
{
	int pfd[2], status = 0;
	pid_t pid;
	ssize_t n;

	if (pipe(pfd) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		const char *err = "";
		uid_t r, e, s;
		gid_t rg, eg, sg, groups[64];
		int step = 0, ng;

		close(pfd[0]);
		/* start with root's group as a supplementary group (the test
		 * runner may have none), so a drop that keeps it is caught */
		gid_t root_group = 0;
		if (setgroups(1, &root_group) < 0) {
			err = "setgroups";
			step = 8;
			goto done;
		}
		if (daemon_drop_privileges(user, group, &err) != 0) {
			step = 1;
			goto done;
		}
		err = "ids";
		if (getresuid(&r, &e, &s) < 0 || r != want_uid || e != want_uid || s != want_uid ||
		    getresgid(&rg, &eg, &sg) < 0 || rg != want_gid || eg != want_gid ||
		    sg != want_gid) {
			step = 2;
			goto done;
		}
		err = "root regained";
		if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 ||
		    setgroups(0, NULL) == 0) {
			step = 3;
			goto done;
		}
		err = "supplementary group 0 kept";
		ng = getgroups(64, groups);
		for (int i = 0; i < ng; i++)
			if (groups[i] == 0)
				step = 4;
		if (step != 0)
			goto done;
		/* idempotent once dropped; root is out of reach with a message */
		err = NULL;
		if (daemon_drop_privileges(user, group, &err) != 0) {
			step = 5;
			goto done;
		}
		if (daemon_drop_privileges("daemon", NULL, &err) != -1 ||
		    !dt_contains(err, "cannot switch to user 'daemon': not running as root")) {
			step = 6;
			goto done;
		}
		err = "";
	done:
		if (write(pfd[1], err, strlen(err)) < 0)
			step = 7;
		_exit(step);
	}
	close(pfd[1]);
	n = read(pfd[0], msg, msgsz - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(pfd[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

UNIT_TEST(daemon_drop_privileges_as_root)
{
	struct passwd *pw;
	struct group *gr;
	char msg[512];
	int r;

	if (geteuid() != 0) {
		/* not root: the refusal path, with the user named */
		const char *err = NULL;
		CHECK(daemon_drop_privileges("nobody", NULL, &err) == -1);
		CHECK_MSG(dt_contains(err, "cannot switch to user 'nobody': not running as root"),
		          "err: %s", err);
		return;
	}
	pw = getpwnam("nobody");
	CHECK(pw != NULL);
	uid_t nobody_uid = pw->pw_uid;
	gid_t nobody_gid = pw->pw_gid;
	gr = getgrnam("daemon");
	CHECK(gr != NULL);
	gid_t daemon_gid = gr->gr_gid;

	r = dt_drop_child("nobody", NULL, nobody_uid, nobody_gid, msg, sizeof(msg));
	CHECK_MSG(r == 0, "nobody: step %d: %s", r, msg);
	r = dt_drop_child("nobody", "daemon", nobody_uid, daemon_gid, msg, sizeof(msg));
	CHECK_MSG(r == 0, "nobody:daemon: step %d: %s", r, msg);
	/* the parent kept root */
	CHECK_INT(geteuid(), 0);
}
