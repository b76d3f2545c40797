/* Helpers for the child side of fork() before exec, and for ending children. */
#ifndef ENCLAVER_BASE_PROC_H
#define ENCLAVER_BASE_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* Unblocks every signal and restores every disposition to its default: a program we start must
 * not inherit a mask blocked for our signalfd, nor our ignored SIGPIPE. Async-signal-safe. */
void proc_reset_signals(void);

/* Waits up to ms for our child pid to end; true once it is reaped (or was already). */
bool proc_reap_within(pid_t pid, int ms);
/* Ends our child pid: SIGTERM and up to term_ms to go (0: straight to SIGKILL), then SIGKILL;
 * reaps it either way. */
void proc_stop(pid_t pid, int term_ms);

#endif
