/*
 * edge/privs.c -- setgroups/setgid/setuid with CAP_NET_BIND_SERVICE kept.
 *
 * capabilities(7): setuid() from 0 to non-zero clears the permitted and
 * effective sets unless PR_SET_KEEPCAPS is set; with it the permitted set
 * survives and we then narrow both sets to CAP_NET_BIND_SERVICE with
 * capset(2) (called directly: libcap is not worth a dependency for one
 * call).
 */
#include "edge/privs.h"

#include "shared/xmalloc.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int keep_bind_cap(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	data[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].permitted = CAP_TO_MASK(CAP_NET_BIND_SERVICE);
	data[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].effective = CAP_TO_MASK(CAP_NET_BIND_SERVICE);
	return (int)syscall(SYS_capset, &hdr, data);
}

int edge_privs_drop(const char *user, const char *group, bool keep_bind, char **errmsg_r)
{
	struct passwd *pw;
	struct group *gr;
	uid_t uid;
	gid_t gid;

	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		*errmsg_r =
		        xasprintf("user '%s': %s", user, errno ? strerror(errno) : "no such user");
		return -1;
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (group != NULL) {
		errno = 0;
		gr = getgrnam(group);
		if (gr == NULL) {
			*errmsg_r = xasprintf("group '%s': %s", group,
			                      errno ? strerror(errno) : "no such group");
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (geteuid() != 0) {
		if (geteuid() == uid)
			return 0; /* already that user (systemd User=) */
		*errmsg_r = xasprintf("cannot switch to user '%s': not running as root", user);
		return -1;
	}
	if (uid == 0) {
		*errmsg_r = xasprintf("user '%s' is root: refusing to run as root", user);
		return -1;
	}
	if (keep_bind && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
		*errmsg_r = xasprintf("prctl(PR_SET_KEEPCAPS): %s", strerror(errno));
		return -1;
	}
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0) {
		*errmsg_r = xasprintf("setgid(%u): %s", (unsigned)gid, strerror(errno));
		return -1;
	}
	if (setuid(uid) < 0) {
		*errmsg_r = xasprintf("setuid(%u): %s", (unsigned)uid, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		*errmsg_r = xasprintf("root could be regained after setuid(%u)", (unsigned)uid);
		return -1;
	}
	if (keep_bind) {
		(void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
		if (keep_bind_cap() < 0) {
			*errmsg_r = xasprintf("capset(CAP_NET_BIND_SERVICE): %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}
