/* Error values that carry context up the call chain. Used by every process. */
#ifndef ENCLAVER_BASE_ERR_H
#define ENCLAVER_BASE_ERR_H

#include <stddef.h>

#define ERR_MSG_MAX 1024

struct err {
	int code; /* errno-style code when one applies, else 0 */
	char msg[ERR_MSG_MAX];
};

/* All setters return -1 so that `return err_set(...)` reads as a failure. */
int err_set(struct err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like err_set, with ": strerror(errno)" appended and code = errno. */
int err_sys(struct err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes context: "ctx: previous message". */
int err_wrap(struct err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_clear(struct err *err);

#endif
