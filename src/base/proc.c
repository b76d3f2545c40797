/* Child-side helpers, run between fork() and exec() in any of our processes, and the parent's
 * end of a child. */
#include "base/proc.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <time.h>

void proc_reset_signals(void)
{
	sigset_t none;
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	/* SIGKILL and SIGSTOP refuse a new action; that is fine */
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

bool proc_reap_within(pid_t pid, int ms)
{
	struct timespec pause = { 0, 20 * 1000000 };

	for (int waited = 0;; waited += 20) {
		pid_t r = waitpid(pid, NULL, WNOHANG);

		if (r == pid || (r < 0 && errno == ECHILD))
			return true;
		if (waited >= ms)
			return false;
		nanosleep(&pause, NULL);
	}
}

void proc_stop(pid_t pid, int term_ms)
{
	if (pid <= 0)
		return;
	if (term_ms > 0) {
		kill(pid, SIGTERM);
		if (proc_reap_within(pid, term_ms))
			return;
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}
