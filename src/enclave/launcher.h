/*
 * Starting the application and reaping (spec/enclaver-compat.md §5.3): the app runs in its own
 * process group with odyn's environment, as the image's USER in its WORKDIR (as docker run runs
 * it; upstream runs it as root in /); odyn is a child subreaper, so orphans of the app are reaped
 * here too.
 */
#ifndef ENCLAVER_ENCLAVE_LAUNCHER_H
#define ENCLAVER_ENCLAVE_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/err.h"

#define LAUNCH_MAX_GROUPS 64

/* Who the app runs as and where, as the image's USER and WORKDIR say (resolved at build time). */
struct launch_as {
	bool set_user; /* else root, with no supplementary groups */
	uid_t uid;
	gid_t gid;
	gid_t groups[LAUNCH_MAX_GROUPS];
	size_t n_groups;
	const char *workdir; /* NULL: / */
	/* Transparent egress is on: the app must not be able to undo it (launcher_confine). */
	bool confine;
};

/* "UID:GID[:GID,GID...]" (odyn's --user) into as; false when it is not that. */
bool launch_as_parse_user(const char *s, struct launch_as *as);

/* Forks and execs argv (argv[0] resolved with PATH) as as says (NULL: root in /). Returns the
 * pid; a failure to become the user, enter the folder or exec is reported here through a
 * close-on-exec pipe, not as a mysterious exit code. */
pid_t launcher_start(char *const *argv, const struct launch_as *as, struct err *err);

/* Makes this process reap orphaned descendants. */
int launcher_become_subreaper(struct err *err);

#endif
