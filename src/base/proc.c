/* Child-side helpers, run between fork() and exec() in any of our processes. */
#include "base/proc.h"

#include <signal.h>
#include <stddef.h>

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
