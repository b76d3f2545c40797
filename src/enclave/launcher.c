/* App launch for odyn. The child restores the default signal state before exec. */
#include "enclave/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

enum { STEP_WORKDIR = 1, STEP_USER, STEP_EXEC };

/* In the child: what failed, through the pipe, then out. */
static __attribute__((noreturn)) void child_fail(int fd, int step)
{
	int report[2] = { step, errno };

	if (write(fd, report, sizeof(report)) < 0) {
		/* nothing more to report through */
	}
	_exit(127);
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
		return err_sys(err, "cannot start %s", argv[0]);
	}
	return pid;
}
