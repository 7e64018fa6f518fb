/*
 * privs.c - dropping root for good, keeping CAP_NET_BIND_SERVICE.
 *
 * Why a capability and not a privileged parent: a reload may add a listen
 * address below 1024, and the one process that serves must bind it.  The
 * capability allows that and nothing else (no file access, no setuid), so
 * nothing of root is left to regain.  Keys are read as the user on a
 * reload: the initgroups() below is what lets membership in a group such
 * as Debian's ssl-cert grant it.
 */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* The one capability kept: bind(2) to a port below 1024. */
#define PRIVS_KEPT CAP_NET_BIND_SERVICE

/* Permitted and effective: only PRIVS_KEPT; inheritable: none, which also
 * empties the ambient set, so nothing nettcpd runs inherits it.  A raw
 * capset(2): the kernel's interface needs no libcap for one bit. */
static int
keep_only_bind_service(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	data[CAP_TO_INDEX(PRIVS_KEPT)].permitted = CAP_TO_MASK(PRIVS_KEPT);
	data[CAP_TO_INDEX(PRIVS_KEPT)].effective = CAP_TO_MASK(PRIVS_KEPT);
	return (int)syscall(SYS_capset, &hdr, data);
}

/* Drop every capability but PRIVS_KEPT from the bounding set, so that no
 * later execve (a binary upgrade, a setuid file) can bring one back.
 * PR_CAPBSET_READ fails past the kernel's last capability; one already
 * out (a container's bounding set) is left alone, as dropping it again
 * would take CAP_SETPCAP for nothing. */
static int
bound_to_bind_service(void)
{
	int in;

	for (int cap = 0; (in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0)) >= 0; cap++)
		if (in && cap != PRIVS_KEPT &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return -1;
	return 0;
}

/* Whether every uid is uid and every gid gid, and root is out of reach. */
static int
dropped_for_good(uid_t uid, gid_t gid)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	/* Both must fail: with CAP_SETUID and CAP_SETGID gone, they do. */
	if (setuid(0) == 0 || setgid(0) == 0)
		return 0;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		return 0;
	errno = 0;   /* the EPERM above was the point; a mismatch has none */
	return ru == uid && eu == uid && su == uid &&
	    rg == gid && eg == gid && sg == gid;
}

int
privs_drop(const struct config *cfg)
{
	const char *step;

	if (geteuid() != 0) {
		/* systemd's User= has done it: nothing left to drop. */
		if (cfg->user == NULL || (getuid() == cfg->uid &&
		    geteuid() == cfg->uid))
			return 0;
		log_err("%s: user = %s, but nettcpd runs as uid %d, not as root, "
		    "and cannot become uid %d", cfg->path, cfg->user,
		    (int)geteuid(), (int)cfg->uid);
		return -1;
	}
	if (cfg->user == NULL) {
		log_warn("running as root: set 'user' in [global] of %s to serve "
		    "as an unprivileged user", cfg->path);
		return 0;
	}
	if (cfg->uid == 0) {
		log_err("%s: user = %s is root: nothing to drop to", cfg->path,
		    cfg->user);
		return -1;
	}
	/* In this order: the bounding set and the groups need root's
	 * capabilities; KEEPCAPS carries the permitted set across setresuid,
	 * which would otherwise clear it, for capset to keep the one bit. */
	step = "PR_CAPBSET_DROP";
	if (bound_to_bind_service() < 0)
		goto fail;
	step = "PR_SET_KEEPCAPS";
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		goto fail;
	step = "initgroups";
	if (initgroups(cfg->user, cfg->gid) < 0)
		goto fail;
	step = "setresgid";
	if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0)
		goto fail;
	step = "setresuid";
	if (setresuid(cfg->uid, cfg->uid, cfg->uid) < 0)
		goto fail;
	step = "capset";
	if (keep_only_bind_service() < 0)
		goto fail;
	step = "PR_SET_KEEPCAPS";
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		goto fail;
	/* Nothing executed from here on (a binary upgrade) gains privileges
	 * from setuid bits or file capabilities. */
	step = "PR_SET_NO_NEW_PRIVS";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		goto fail;
	errno = 0;   /* for a setuid(0) that succeeds */
	step = "the check that root cannot be regained";
	if (!dropped_for_good(cfg->uid, cfg->gid))
		goto fail;
	log_info("running as user %s (uid %d, gid %d), keeping only "
	    "CAP_NET_BIND_SERVICE", cfg->user, (int)cfg->uid, (int)cfg->gid);
	return 0;

fail:
	log_err("cannot drop root to user %s (uid %d, gid %d): %s failed%s%s",
	    cfg->user, (int)cfg->uid, (int)cfg->gid, step, errno != 0 ? ": " : "",
	    errno != 0 ? strerror(errno) : "");
	return -1;
}
