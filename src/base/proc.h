/* Helpers for the child side of fork(), before exec. */
#ifndef ENCLAVER_BASE_PROC_H
#define ENCLAVER_BASE_PROC_H

/* Unblocks every signal and restores every disposition to its default: a program we start must
 * not inherit a mask blocked for our signalfd, nor our ignored SIGPIPE. Async-signal-safe. */
void proc_reset_signals(void);

#endif
