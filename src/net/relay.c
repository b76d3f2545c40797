/*
 * Byte relay. Runs in odyn (vsock <-> app TCP) and enclaver-run (client TCP <-> vsock, egress
 * vsock <-> remote TCP). Per-connection failures end that relay only.
 */
#include "net/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_SIZE (256 * 1024)
#define BUF_SIZE (64 * 1024)
#define POOL_MAX 64
#define ROUND_BYTES (4u << 20) /* per event, for fairness between connections */

struct pipe_pair {
	int rd, wr;
};

static struct pipe_pair pool[POOL_MAX];
static unsigned pool_n, pipes_in_use;

struct direction {
	int src, dst;
	struct pipe_pair pipe; /* rd < 0 when none is held */
	size_t in_pipe;
	uint8_t *buf; /* buffer mode, or a prefill */
	size_t buf_off, buf_len, buf_cap;
	bool no_splice;
	bool eof;
	bool shut;
	bool want_read, want_write;
	uint64_t bytes;
};

struct relay {
	struct loop_tracked tracked; /* first: the close hook finds the relay from it */
	struct loop *loop;
	struct loop_io io_a, io_b;
	int fd_a, fd_b;
	struct direction ab, ba;
	struct loop_timer idle;
	uint64_t idle_ms;
	uint64_t last_activity;
	relay_done_fn done;
	void *data;
	bool closed;
	int error;
	bool idle_timeout;
};

void relay_pool_stats(unsigned *cached, unsigned *in_use)
{
	*cached = pool_n;
	*in_use = pipes_in_use;
}

static int pipe_get(struct pipe_pair *p)
{
	int fds[2];

	if (pool_n) {
		*p = pool[--pool_n];
	} else {
		if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
			return -1;
		/* Larger pipes mean fewer syscalls per byte; the kernel may refuse (user page limit). */
		fcntl(fds[0], F_SETPIPE_SZ, PIPE_SIZE);
		p->rd = fds[0];
		p->wr = fds[1];
	}
	pipes_in_use++;
	return 0;
}

static void pipe_put(struct pipe_pair *p, bool reusable)
{
	if (p->rd < 0)
		return;
	pipes_in_use--;
	if (reusable && pool_n < POOL_MAX) {
		pool[pool_n++] = *p;
	} else {
		close(p->rd);
		close(p->wr);
	}
	p->rd = p->wr = -1;
}

static void dir_release(struct direction *d)
{
	/* An empty pipe can serve another connection; one with bytes left cannot. */
	pipe_put(&d->pipe, d->in_pipe == 0);
	d->in_pipe = 0;
	free(d->buf);
	d->buf = NULL;
	d->buf_off = d->buf_len = d->buf_cap = 0;
}

static void relay_free(void *p)
{
	free(p);
}

static void finish(struct relay *r)
{
	struct relay_stats st;

	if (r->closed)
		return;
	r->closed = true;
	loop_untrack(r->loop, &r->tracked);
	loop_io_del(r->loop, &r->io_a);
	loop_io_del(r->loop, &r->io_b);
	r->io_a.fn = r->io_b.fn = NULL;
	loop_timer_stop(r->loop, &r->idle);
	dir_release(&r->ab);
	dir_release(&r->ba);
	close(r->fd_a);
	close(r->fd_b);
	st = (struct relay_stats){ r->ab.bytes, r->ba.bytes, r->error, r->idle_timeout };
	if (r->done)
		r->done(r->data, &st);
	loop_defer_free(r->loop, r, relay_free);
}

void relay_close(struct relay *r)
{
	finish(r);
}

static void close_tracked(struct loop_tracked *t)
{
	finish((struct relay *)t);
}

static size_t pending(const struct direction *d)
{
	return d->in_pipe + (d->buf_len - d->buf_off);
}

/* Moves bytes for one direction until it would block. Returns -1 with errno on failure. */
static int pump(struct relay *r, struct direction *d)
{
	size_t moved = 0;

	d->want_read = d->want_write = false;
	while (moved < ROUND_BYTES) {
		ssize_t n = 0;

		if (pending(d)) {
			if (d->in_pipe)
				n = splice(d->pipe.rd, NULL, d->dst, NULL, d->in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			else
				n = send(d->dst, d->buf + d->buf_off, d->buf_len - d->buf_off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					d->want_write = true;
					return 0;
				}
				return -1;
			}
			if (d->in_pipe)
				d->in_pipe -= (size_t)n;
			else
				d->buf_off += (size_t)n;
			d->bytes += (uint64_t)n;
			moved += (size_t)n;
			continue;
		}
		if (d->eof) {
			if (!d->shut) {
				shutdown(d->dst, SHUT_WR);
				d->shut = true;
			}
			dir_release(d);
			return 0;
		}
		if (!d->no_splice) {
			if (d->pipe.rd < 0 && pipe_get(&d->pipe) < 0)
				d->no_splice = true; /* out of descriptors: carry on with a buffer */
			else {
				n = splice(d->src, NULL, d->pipe.wr, NULL, PIPE_SIZE, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
				if (n < 0 && errno == EINVAL) {
					/* This socket type cannot splice (e.g. some vsock kernels). */
					d->no_splice = true;
					pipe_put(&d->pipe, true);
					continue;
				}
				if (n > 0)
					d->in_pipe = (size_t)n;
			}
		}
		if (d->no_splice) {
			if (d->buf_cap < BUF_SIZE) { /* none yet, or a prefill's, which was sent */
				free(d->buf);
				d->buf = malloc(BUF_SIZE);
				if (!d->buf)
					abort();
				d->buf_cap = BUF_SIZE;
			}
			d->buf_off = 0;
			n = recv(d->src, d->buf, BUF_SIZE, 0);
			d->buf_len = n > 0 ? (size_t)n : 0;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				d->want_read = true;
				dir_release(d); /* idle: hold no pipe or buffer */
				return 0;
			}
			return -1;
		}
		if (n == 0)
			d->eof = true;
		r->last_activity = loop_now(r->loop);
	}
	/* Round budget spent with data still flowing: come back on the next event. */
	if (pending(d))
		d->want_write = true;
	else
		d->want_read = true;
	return 0;
}

static void update_interest(struct relay *r)
{
	uint32_t ea = (r->ab.want_read ? EPOLLIN : 0) | (r->ba.want_write ? EPOLLOUT : 0);
	uint32_t eb = (r->ba.want_read ? EPOLLIN : 0) | (r->ab.want_write ? EPOLLOUT : 0);

	loop_io_mod(r->loop, &r->io_a, ea);
	loop_io_mod(r->loop, &r->io_b, eb);
}

static void step(struct relay *r, struct direction *d)
{
	if (pump(r, d) < 0) {
		r->error = errno;
		finish(r);
		return;
	}
	if (r->ab.shut && r->ba.shut) {
		finish(r);
		return;
	}
	update_interest(r);
}

static void on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct relay *r = io->data;
	bool is_a = io == &r->io_a;
	struct direction *reads = is_a ? &r->ab : &r->ba;  /* this fd is the source */
	struct direction *writes = is_a ? &r->ba : &r->ab; /* this fd is the destination */

	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && writes->want_write)
		step(r, writes);
	if (r->closed)
		return;
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && reads->want_read)
		step(r, reads);
}

static void on_idle(struct loop *l, void *data)
{
	struct relay *r = data;
	uint64_t quiet = loop_now(l) - r->last_activity;

	if (quiet >= r->idle_ms) {
		r->idle_timeout = true;
		finish(r);
		return;
	}
	/* Activity moved the deadline: sleep until the new one instead of re-arming per byte. */
	loop_timer_start(l, &r->idle, r->idle_ms - quiet);
}

int relay_start(struct loop *l, int fd_a, int fd_b, const struct relay_opts *opts, relay_done_fn done,
		void *data, struct relay **out, struct err *err)
{
	struct relay *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	r->loop = l;
	r->fd_a = fd_a;
	r->fd_b = fd_b;
	r->ab = (struct direction){ .src = fd_a, .dst = fd_b, .pipe = { -1, -1 } };
	r->ba = (struct direction){ .src = fd_b, .dst = fd_a, .pipe = { -1, -1 } };
	r->done = done;
	r->data = data;
	r->idle_ms = opts ? opts->idle_timeout_ms : 0;
	r->last_activity = loop_now(l);
	loop_timer_init(&r->idle, on_idle, r);
	loop_track(l, &r->tracked, close_tracked);
	if (loop_io_add(l, &r->io_a, fd_a, 0, on_io, r, err) < 0 ||
	    loop_io_add(l, &r->io_b, fd_b, 0, on_io, r, err) < 0) {
		loop_io_del(l, &r->io_a);
		loop_untrack(l, &r->tracked);
		close(fd_a);
		close(fd_b);
		free(r);
		return -1;
	}
	if (opts && opts->prefill_b_len) {
		/* just the prefill: a peer that never reads holds these bytes, not a whole buffer */
		r->ab.buf = malloc(opts->prefill_b_len);
		r->ab.buf_cap = opts->prefill_b_len;
		if (!r->ab.buf)
			abort();
		memcpy(r->ab.buf, opts->prefill_b, opts->prefill_b_len);
		r->ab.buf_len = opts->prefill_b_len;
	}
	if (opts && opts->prefill_a_len) {
		/* just the prefill: a peer that never reads holds these bytes, not a whole buffer */
		r->ba.buf = malloc(opts->prefill_a_len);
		r->ba.buf_cap = opts->prefill_a_len;
		if (!r->ba.buf)
			abort();
		memcpy(r->ba.buf, opts->prefill_a, opts->prefill_a_len);
		r->ba.buf_len = opts->prefill_a_len;
	}
	if (r->idle_ms)
		loop_timer_start(l, &r->idle, r->idle_ms);
	/* Start both directions: either side may already hold data. */
	step(r, &r->ab);
	if (!r->closed)
		step(r, &r->ba);
	if (out)
		*out = r->closed ? NULL : r;
	return 0;
}
