/*
 * Starting the application and reaping (spec/enclaver-compat.md §5.3): the app runs as root in
 * its own process group with odyn's environment; odyn is a child subreaper, so orphans of the
 * app are reaped here too.
 */
#ifndef ENCLAVER_ENCLAVE_LAUNCHER_H
#define ENCLAVER_ENCLAVE_LAUNCHER_H

#include <sys/types.h>

#include "base/err.h"

/* Forks and execs argv (argv[0] resolved with PATH). Returns the pid; an exec failure is
 * reported here through a close-on-exec pipe, not as a mysterious exit code. */
pid_t launcher_start(char *const *argv, struct err *err);

/* Makes this process reap orphaned descendants. */
int launcher_become_subreaper(struct err *err);

#endif
