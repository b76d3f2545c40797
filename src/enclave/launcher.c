/* App launch for odyn. The child restores the default signal state before exec. */
#include "enclave/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/proc.h"

int launcher_become_subreaper(struct err *err)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return err_sys(err, "PR_SET_CHILD_SUBREAPER");
	return 0;
}

bool launch_as_parse_user(const char *s, struct launch_as *as)
{
	char *end;
	unsigned long v;

	memset(as->groups, 0, sizeof(as->groups));
	as->n_groups = 0;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end != ':' || v > 4294967294ul)
		return false;
	as->uid = (uid_t)v;
	s = end + 1;
	v = strtoul(s, &end, 10);
	if (errno || end == s || (*end && *end != ':') || v > 4294967294ul)
		return false;
	as->gid = (gid_t)v;
	while (*end) {
		s = end + 1;
		v = strtoul(s, &end, 10);
		if (errno || end == s || (*end && *end != ',') || v > 4294967294ul || as->n_groups == LAUNCH_MAX_GROUPS)
			return false;
		as->groups[as->n_groups++] = (gid_t)v;
	}
	as->set_user = true;
	return true;
}

enum { STEP_WORKDIR = 1, STEP_USER, STEP_EXEC, STEP_CONFINE };

/* In the child: what failed, through the pipe, then out. */
static __attribute__((noreturn)) void child_fail(int fd, int step)
{
	int report[2] = { step, errno };

	if (write(fd, report, sizeof(report)) < 0) {
		/* nothing more to report through */
	}
	_exit(127);
}

/*
 * In the child, before anything of the app runs: what a root app would need to undo transparent
 * egress or walk around it, taken away for good. Safe because:
 * - the packet rules and routes change only with CAP_NET_ADMIN, and raw packets need CAP_NET_RAW;
 * - CAP_SYS_ADMIN (and CAP_BPF on newer kernels) would load BPF, mount over odyn's files or
 *   move namespaces; CAP_SYS_MODULE would load kernel code; CAP_SYS_PTRACE would let the app
 *   drive odyn, which keeps CAP_NET_ADMIN (odyn is also not dumpable, so the same uid is not
 *   enough);
 * - they leave the bounding set, so no exec (setuid root, file capabilities) brings them back,
 *   and the inheritable and ambient sets, which the bounding set does not cover;
 * - vsock is the host's tunnel and the NSM's way in: socket(AF_VSOCK) is refused in the app's
 *   process tree, so the only way out is odyn's policy. The family is compared on its low 32 bits
 *   (the kernel reads an int), or AF_VSOCK | 1 << 32 would pass.
 * The seccomp filter is installed first, while the process still holds CAP_SYS_ADMIN (no
 * no_new_privs: setuid programs in the image keep working).
 */
static void confine(int fd)
{
	static const int drop[] = { CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE,
				    39 /* CAP_BPF, unknown to older kernels */, 38 /* CAP_PERFMON */ };
	const struct scmp_arg_cmp vsock = { .arg = 0, .op = SCMP_CMP_MASKED_EQ, .datum_a = 0xffffffffu,
					    .datum_b = AF_VSOCK };
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (!ctx)
		child_fail(fd, STEP_CONFINE);
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, &vsock) < 0 ||
	    seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair), 1, &vsock) < 0 ||
	    seccomp_load(ctx) < 0)
		child_fail(fd, STEP_CONFINE);
	seccomp_release(ctx);
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (prctl(PR_CAPBSET_DROP, drop[i], 0, 0, 0) < 0 && errno != EINVAL) /* EINVAL: not in this kernel */
			child_fail(fd, STEP_CONFINE);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capget, &h, d) < 0)
		child_fail(fd, STEP_CONFINE);
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
		uint32_t bit = 1u << (drop[i] % 32);
		size_t w = (size_t)drop[i] / 32;

		d[w].effective &= ~bit;
		d[w].permitted &= ~bit;
		d[w].inheritable &= ~bit;
	}
	if (syscall(SYS_capset, &h, d) < 0)
		child_fail(fd, STEP_CONFINE);
}

/* In the child: the user and working folder, as Docker sets them up. The folder is made when the
 * image lacks it (as root, as the runtime makes it), and entered before the user changes when root
 * may and the user may not, after it otherwise. */
static void become(const struct launch_as *as, int fd)
{
	bool in_workdir = false;

	if (as->workdir) {
		struct err e = { 0 };

		if (fs_mkdir_p(as->workdir, 0755, &e) < 0 && errno != EEXIST)
			child_fail(fd, STEP_WORKDIR);
		in_workdir = chdir(as->workdir) == 0;
	}
	if (as->set_user && (setgroups(as->n_groups, as->groups) < 0 || setgid(as->gid) < 0 || setuid(as->uid) < 0))
		child_fail(fd, STEP_USER);
	if (as->workdir && !in_workdir && chdir(as->workdir) < 0)
		child_fail(fd, STEP_WORKDIR);
}

pid_t launcher_start(char *const *argv, const struct launch_as *as, struct err *err)
{
	/* as Docker starts a container's root: group 0 its only supplementary group */
	static const struct launch_as root = { .set_user = true, .groups = { 0 }, .n_groups = 1 };
	int p[2], report[2] = { 0, 0 };
	pid_t pid;
	ssize_t n;

	if (!argv || !argv[0])
		return err_set(err, EINVAL, "no entrypoint to start");
	if (pipe2(p, O_CLOEXEC) < 0)
		return err_sys(err, "pipe");
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return err_sys(err, "fork");
	}
	if (pid == 0) {
		close(p[0]);
		proc_reset_signals();
		setpgid(0, 0);
		/* Out of memory, the app (and what it starts) goes first, never odyn: odyn must live
		 * to report how the app ended. Raising one's own score needs no privilege. */
		{
			int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

			if (fd >= 0) {
				if (write(fd, "1000", 4) != 4) {
					/* best effort: an enclave without /proc still runs */
				}
				close(fd);
			}
		}
		if (as && as->confine)
			confine(p[1]);
		become(as ? as : &root, p[1]);
		execvp(argv[0], argv);
		child_fail(p[1], STEP_EXEC);
	}
	close(p[1]);
	do
		n = read(p[0], report, sizeof(report));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == sizeof(report)) {
		waitpid(pid, NULL, 0);
		errno = report[1];
		if (report[0] == STEP_WORKDIR)
			return err_sys(err, "cannot start %s: its working folder (WORKDIR) %s", argv[0], as->workdir);
		if (report[0] == STEP_USER)
			return err_sys(err, "cannot start %s as user %u, group %u (USER)", argv[0], (unsigned)as->uid,
				       (unsigned)as->gid);
		if (report[0] == STEP_CONFINE)
			return err_sys(err, "cannot start %s without the capabilities that would undo transparent egress",
				       argv[0]);
		return err_sys(err, "cannot start %s", argv[0]);
	}
	return pid;
}
