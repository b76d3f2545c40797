/* epoll event loop with timers, signals and deferred frees. */
#include "net/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct deferred {
	void *ptr;
	void (*fn)(void *);
};

struct loop {
	int epfd;
	bool stop;
	uint64_t now;
	struct loop_timer **heap;
	size_t n_timers, cap_timers;
	struct deferred *deferred;
	size_t n_deferred, cap_deferred;
	struct loop_io sig_io;
	loop_signal_fn sig_fn;
	void *sig_data;
	struct loop_tracked tracked; /* list head */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int loop_new(struct loop **out, struct err *err)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		abort();
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return err_sys(err, "epoll_create1");
	}
	l->sig_io.fd = -1;
	l->tracked.prev = l->tracked.next = &l->tracked;
	l->now = mono_ms();
	*out = l;
	return 0;
}

static void run_deferred(struct loop *l)
{
	/* A deferred free may defer more: loop until the list stays empty. */
	while (l->n_deferred) {
		size_t n = l->n_deferred;
		struct deferred *d = l->deferred;

		l->deferred = NULL;
		l->n_deferred = l->cap_deferred = 0;
		for (size_t i = 0; i < n; i++)
			d[i].fn(d[i].ptr);
		free(d);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	run_deferred(l);
	if (l->sig_io.fd >= 0)
		close(l->sig_io.fd);
	close(l->epfd);
	free(l->heap);
	free(l);
}

uint64_t loop_now(struct loop *l)
{
	return l->now;
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_fn fn, void *data,
		struct err *err)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	io->fd = fd;
	io->events = events;
	io->fn = fn;
	io->data = data;
	io->in_epoll = events != 0;
	if (io->in_epoll && epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return err_sys(err, "epoll_ctl add fd %d", fd);
	io->registered = true;
	return 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	int op;

	if (!io->registered || io->events == events)
		return 0;
	io->events = events;
	if (!events) {
		io->in_epoll = false;
		return epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	}
	op = io->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	io->in_epoll = true;
	return epoll_ctl(l->epfd, op, io->fd, &ev);
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
	if (!io->registered)
		return;
	if (io->in_epoll)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->in_epoll = false;
	io->registered = false;
	/* Events for it already fetched in this batch are dropped by the dispatcher. */
	io->fn = NULL;
}

/* --- timers: a binary min-heap on when_ms --- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
	struct loop_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_index = a;
	l->heap[b]->heap_index = b;
}

static void heap_up(struct loop *l, size_t i)
{
	while (i > 0 && l->heap[(i - 1) / 2]->when_ms > l->heap[i]->when_ms) {
		heap_swap(l, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t m = i, a = 2 * i + 1, b = 2 * i + 2;

		if (a < l->n_timers && l->heap[a]->when_ms < l->heap[m]->when_ms)
			m = a;
		if (b < l->n_timers && l->heap[b]->when_ms < l->heap[m]->when_ms)
			m = b;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *data)
{
	t->fn = fn;
	t->data = data;
	t->when_ms = 0;
	t->heap_index = SIZE_MAX;
}

bool loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_index != SIZE_MAX;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_index;

	if (i == SIZE_MAX)
		return;
	t->heap_index = SIZE_MAX;
	l->n_timers--;
	if (i == l->n_timers)
		return;
	l->heap[i] = l->heap[l->n_timers];
	l->heap[i]->heap_index = i;
	heap_up(l, i);
	heap_down(l, l->heap[i]->heap_index);
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms)
{
	loop_timer_stop(l, t);
	if (l->n_timers == l->cap_timers) {
		l->cap_timers = l->cap_timers ? l->cap_timers * 2 : 64;
		l->heap = realloc(l->heap, l->cap_timers * sizeof(*l->heap));
		if (!l->heap)
			abort();
	}
	t->when_ms = mono_ms() + delay_ms;
	t->heap_index = l->n_timers;
	l->heap[l->n_timers++] = t;
	heap_up(l, t->heap_index);
}

static void run_timers(struct loop *l)
{
	while (l->n_timers && l->heap[0]->when_ms <= l->now) {
		struct loop_timer *t = l->heap[0];

		loop_timer_stop(l, t);
		t->fn(l, t->data);
	}
}

/* --- signals --- */

static void on_signalfd(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct signalfd_siginfo si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si))
		if (l->sig_fn)
			l->sig_fn(l, (int)si.ssi_signo, l->sig_data);
}

int loop_signals(struct loop *l, const int *sigs, size_t n, loop_signal_fn fn, void *data, struct err *err)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	for (size_t i = 0; i < n; i++)
		sigaddset(&set, sigs[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return err_sys(err, "sigprocmask");
	fd = signalfd(l->sig_io.fd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "signalfd");
	l->sig_fn = fn;
	l->sig_data = data;
	if (l->sig_io.fd < 0 && loop_io_add(l, &l->sig_io, fd, EPOLLIN, on_signalfd, NULL, err) < 0) {
		close(fd);
		return -1;
	}
	return 0;
}

void loop_track(struct loop *l, struct loop_tracked *t, void (*close)(struct loop_tracked *t))
{
	t->close = close;
	t->next = &l->tracked;
	t->prev = l->tracked.prev;
	t->prev->next = t;
	l->tracked.prev = t;
}

void loop_untrack(struct loop *l, struct loop_tracked *t)
{
	if (!t->next)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

void loop_close_all(struct loop *l)
{
	while (l->tracked.next != &l->tracked) {
		struct loop_tracked *t = l->tracked.next;

		t->close(t);
		if (l->tracked.next == t) /* a close that forgot to untrack must not loop forever */
			loop_untrack(l, t);
	}
}

void loop_defer_free(struct loop *l, void *ptr, void (*fn)(void *))
{
	if (l->n_deferred == l->cap_deferred) {
		l->cap_deferred = l->cap_deferred ? l->cap_deferred * 2 : 16;
		l->deferred = realloc(l->deferred, l->cap_deferred * sizeof(*l->deferred));
		if (!l->deferred)
			abort();
	}
	l->deferred[l->n_deferred++] = (struct deferred){ ptr, fn };
}

int loop_run_once(struct loop *l, int timeout_ms, struct err *err)
{
	struct epoll_event evs[MAX_EVENTS];
	int n;

	l->now = mono_ms();
	if (l->n_timers) {
		uint64_t due = l->heap[0]->when_ms;
		int wait = due <= l->now ? 0 : (int)(due - l->now > 60000 ? 60000 : due - l->now);

		if (timeout_ms < 0 || wait < timeout_ms)
			timeout_ms = wait;
	}
	n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return err_sys(err, "epoll_wait");
	}
	l->now = mono_ms();
	for (int i = 0; i < n; i++) {
		struct loop_io *io = evs[i].data.ptr;

		/* Deleted earlier in this batch: its memory is still ours until run_deferred. */
		if (io->fn)
			io->fn(l, io, evs[i].events);
	}
	run_timers(l);
	run_deferred(l);
	return 0;
}

int loop_run(struct loop *l, struct err *err)
{
	l->stop = false;
	while (!l->stop)
		if (loop_run_once(l, -1, err) < 0)
			return -1;
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}
