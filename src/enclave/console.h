/*
 * odyn's console: the app status server (vsock 17000) and the log server (vsock 17001) with a
 * 128 KiB ring that every new client receives from its oldest byte (spec/enclaver-compat.md §5.4).
 * Runs in odyn; clients are enclaver-run on the host.
 */
#ifndef ENCLAVER_ENCLAVE_CONSOLE_H
#define ENCLAVER_ENCLAVE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

#define CONSOLE_LOG_CAPACITY (128 * 1024)
#define CONSOLE_STATUS_PORT 17000
#define CONSOLE_LOG_PORT 17001

struct console;

/* Serves status on 17000. With capture, also makes a pipe the stdout and stderr of this process
 * (for children to inherit), feeds it and odyn's own log lines into the ring, and serves the
 * ring on 17001. */
int console_new(struct loop *l, bool capture, struct console **out, struct err *err);
void console_free(struct console *c);

/* Appends bytes to the ring and sends them to log clients. */
void console_log_write(struct console *c, const void *data, size_t len);

void console_status_running(struct console *c);
void console_status_exited(struct console *c, int code);
void console_status_signaled(struct console *c, int sig);
void console_status_fatal(struct console *c, const char *error);
/* The current status line, for tests and logs. */
const char *console_status_line(const struct console *c);

/* The ring as a standalone structure, for unit tests. */
struct log_ring {
	uint8_t data[CONSOLE_LOG_CAPACITY];
	uint64_t total; /* bytes ever written */
};
void log_ring_write(struct log_ring *r, const void *data, size_t len);
uint64_t log_ring_oldest(const struct log_ring *r);
/* Copies up to max bytes from offset *cursor (advanced; moved up to the oldest byte when it
 * fell behind). Returns the byte count. */
size_t log_ring_read(const struct log_ring *r, uint64_t *cursor, void *out, size_t max);

#endif
