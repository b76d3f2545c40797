/*
 * The event loop: epoll for file descriptors, a min-heap of monotonic timers, signalfd for
 * signals, and deferred frees so that a callback can drop an object other events still name.
 * Single-threaded; used by odyn and enclaver-run.
 */
#ifndef ENCLAVER_NET_LOOP_H
#define ENCLAVER_NET_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "base/err.h"

struct loop;
struct loop_io;

typedef void (*loop_io_fn)(struct loop *l, struct loop_io *io, uint32_t events);
typedef void (*loop_timer_fn)(struct loop *l, void *data);
typedef void (*loop_signal_fn)(struct loop *l, int sig, void *data);

/* Embedded in its owner; registered fds report through fn. An owner freed while the loop runs
 * must be freed through loop_defer_free: events fetched in the same batch may still name it. */
struct loop_io {
	int fd;
	uint32_t events;
	loop_io_fn fn;
	void *data;
	bool registered;
	bool in_epoll; /* false while events is 0: see loop_io_mod */
};

struct loop_timer {
	uint64_t when_ms;
	loop_timer_fn fn;
	void *data;
	size_t heap_index; /* SIZE_MAX when not armed */
};

int loop_new(struct loop **out, struct err *err);
void loop_free(struct loop *l);

/* Milliseconds on the monotonic clock, cached per iteration. */
uint64_t loop_now(struct loop *l);

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_fn fn, void *data,
		struct err *err);
/* Changes the interest set; a no-op when it is unchanged. With no events the fd leaves epoll
 * until it is wanted again, so that a peer's hang-up (which epoll reports whatever the interest
 * set) cannot spin the loop while its owner waits on something else. */
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
void loop_io_del(struct loop *l, struct loop_io *io);

void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *data);
void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
bool loop_timer_armed(const struct loop_timer *t);

/* Blocks the given signals in the calling thread and delivers them through the loop. */
int loop_signals(struct loop *l, const int *sigs, size_t n, loop_signal_fn fn, void *data, struct err *err);

/* Connections and other objects owned by no one but the loop register here, so that a process
 * shutting down can end them all (and free them) instead of leaking them. */
struct loop_tracked {
	struct loop_tracked *prev, *next;
	void (*close)(struct loop_tracked *t); /* must end the object and untrack it */
};
void loop_track(struct loop *l, struct loop_tracked *t, void (*close)(struct loop_tracked *t));
void loop_untrack(struct loop *l, struct loop_tracked *t);
/* Closes every tracked object; their deferred frees run in loop_free. */
void loop_close_all(struct loop *l);

/* Frees ptr with fn after the current batch of events has been dispatched. */
void loop_defer_free(struct loop *l, void *ptr, void (*fn)(void *));

/* Runs until loop_stop; returns 0, or -1 when epoll fails. */
int loop_run(struct loop *l, struct err *err);
void loop_stop(struct loop *l);
/* Runs one iteration, waiting at most timeout_ms (-1: until something happens). */
int loop_run_once(struct loop *l, int timeout_ms, struct err *err);

#endif
