/* App launch for odyn. The child restores the default signal state before exec. */
#include "enclave/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/proc.h"

int launcher_become_subreaper(struct err *err)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return err_sys(err, "PR_SET_CHILD_SUBREAPER");
	return 0;
}

pid_t launcher_start(char *const *argv, struct err *err)
{
	int p[2], child_errno = 0;
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
		execvp(argv[0], argv);
		child_errno = errno;
		if (write(p[1], &child_errno, sizeof(child_errno)) < 0) {
			/* nothing more to report through */
		}
		_exit(127);
	}
	close(p[1]);
	do
		n = read(p[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == sizeof(child_errno)) {
		waitpid(pid, NULL, 0);
		errno = child_errno;
		return err_sys(err, "cannot start %s", argv[0]);
	}
	return pid;
}
