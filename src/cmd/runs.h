/*
 * The runs of enclaver run --eif on this machine, by name, so that enclaver ps, logs, stop and
 * rm find them as docker's commands find containers. $STATE/runs/NAME/ holds run.json (what
 * runs: its enclaver-run's pid and start time, the EIF, the published ports), log (a detached
 * run's output) and exit (its exit code, once it ended). Runs in enclaver; the folder is the
 * user's own, and a pid in it is believed only while /proc says the same process started then.
 */
#ifndef ENCLAVER_CMD_RUNS_H
#define ENCLAVER_CMD_RUNS_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "base/err.h"

#define RUN_NAME_MAX 64

/* The labels on containers of enclaver run: the image, and the ports it publishes. */
#define RUN_LABEL "dev.enclaver.run"
#define RUN_PORTS_LABEL "dev.enclaver.ports"

/* docker's rule for container names, which also keeps a name one path component:
 * [A-Za-z0-9][A-Za-z0-9_.-]+, at most RUN_NAME_MAX. */
bool runs_name_ok(const char *name);

struct run_info {
	char name[RUN_NAME_MAX + 1];
	char dir[PATH_MAX];
	pid_t pid;		  /* enclaver-run */
	unsigned long long start; /* its start time in /proc's clock ticks */
	bool detached;		  /* its output is in dir/log */
	bool running;
	bool ended;		  /* dir/exit holds exit_code */
	int exit_code;
	char eif[PATH_MAX];
	char ports[512]; /* "127.0.0.1:8080->8080/tcp, ..." */
	char created[32], finished[32]; /* RFC 3339, UTC */
};

/* Takes NAME for a new run: its folder is made (dir receives it). A name whose run ended
 * without a record (a foreground run, or one killed) is taken over; one still running, or
 * detached and ended, is in use: EEXIST, and the message says what to do. */
int runs_reserve(const char *name, char *dir, size_t size, struct err *err);
/* Writes run.json for the enclaver-run process pid (which must have started). */
int runs_record(const char *dir, const char *name, pid_t pid, bool detached, const char *eif, const char *ports,
		struct err *err);
/* A detached run's supervisor, once enclaver-run ended with code. */
int runs_finish(const char *dir, int code, struct err *err);
/* One run by name: ENOENT when there is none. */
int runs_find(const char *name, struct run_info *out, struct err *err);
/* Every run, oldest first; runs that ended without a record are dropped (and their folders
 * removed). *out is the caller's to free. */
int runs_list(struct run_info **out, size_t *n, struct err *err);
/* Removes an ended run's folder. */
int runs_remove(const struct run_info *ri, struct err *err);
/* Whether pid is still the process that started at start. */
bool runs_alive(pid_t pid, unsigned long long start);
/* Whether pid is enclaver-run, or enclaver standing for it: the only processes enclaver stop
 * signals. */
bool runs_is_runner(pid_t pid);
/* The start time of pid, or 0 if it is gone. */
unsigned long long runs_start_time(pid_t pid);

#endif
