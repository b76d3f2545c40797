/*
 * enclaver-run's clients of odyn's console (spec/enclaver-compat.md §4.4 steps 5 and 7): the log
 * stream on vsock 17001, re-emitted line by line, and the status stream on 17000, which decides
 * the exit code.
 */
#ifndef ENCLAVER_HOST_CONSOLE_H
#define ENCLAVER_HOST_CONSOLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "net/loop.h"

#define EXIT_SIGNALED 107
#define EXIT_FATAL 108
#define EXIT_INTERRUPTED 109
#define EXIT_BOOT_FAILED 110 /* the enclave's kernel or init never reported up */

enum app_state { APP_RUNNING, APP_EXITED, APP_SIGNALED, APP_FATAL };

struct app_status {
	enum app_state state;
	int code;        /* APP_EXITED */
	int signal;      /* APP_SIGNALED: the number, from a name or a number */
	char error[1024]; /* APP_FATAL */
};

/* Parses one status line as odyn or upstream's odyn writes it. */
int app_status_parse(const char *line, size_t len, struct app_status *out, struct err *err);
/* The exit code enclaver-run reports for a final status. */
int app_status_exit_code(const struct app_status *st);

struct log_client;
/* Connects every 250 ms until it succeeds, then writes each line received to out. */
int log_client_start(struct loop *l, uint32_t cid, FILE *out, struct log_client **res, struct err *err);
/* After the app's final status: calls fn once the log has ended (odyn closes it once it has
 * sent all of it), at once if it already has; connects now if it is between attempts. */
void log_client_await_end(struct log_client *c, void (*fn)(void *data), void *data);
/* Reads what is left to read without blocking, writes a last partial line, and frees. */
void log_client_stop(struct log_client *c);

struct status_client;
typedef void (*status_fn)(void *data, const struct app_status *st);
typedef int (*vsock_connect_fn)(uint32_t cid, uint32_t port, bool *in_progress, struct err *err);
/* Upstream's: 100 attempts 250 ms apart, through vsock_connect. Zeros and NULLs keep these. */
struct status_client_opts {
	int attempts;
	int retry_ms;
	vsock_connect_fn connect;
};
/* Calls fn once with the first final status (exited, signaled, fatal), or with APP_FATAL and an
 * error when the status port stays unreachable for that many attempts: refused at once or, as on
 * AF_VSOCK, after the connect was in progress. */
int status_client_start(struct loop *l, uint32_t cid, const struct status_client_opts *opts, status_fn fn,
			void *data, struct status_client **res, struct err *err);
void status_client_stop(struct status_client *c);

#endif
