/*
 * Status and log servers. Runs in odyn. A slow or stuck client never slows the app: log
 * clients that fall more than the ring behind lose the oldest bytes, status lines are tiny.
 */
#include "enclave/console.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/accept.h"
#include "net/vsock.h"

#define MAX_CLIENTS 64	     /* peers in the enclave: refused when all are taken */
#define MAX_PARENT_CLIENTS 8 /* the parent (the launcher): a new one replaces the oldest */
#define ALL_CLIENTS (MAX_CLIENTS + MAX_PARENT_CLIENTS)
#define STDIO_PIPE_SIZE (1 << 20)

struct client {
	struct console *c;
	struct loop_io io;
	bool is_log;
	uint64_t cursor;    /* log clients */
	struct buf pending; /* status clients: unsent bytes */
	bool active;
	bool shut; /* log clients: told the log has ended */
	uint64_t seq;
};

struct console {
	struct loop *loop;
	struct acceptor status_acc, log_acc;
	struct loop_io pipe_io;
	int pipe_rd;
	struct log_ring ring;
	char status[1100];
	struct client *clients[ALL_CLIENTS];
	uint64_t seq;
	bool log_ended; /* the app's final status is out: log clients get EOF once they have it all */
};

void log_ring_write(struct log_ring *r, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (len > CONSOLE_LOG_CAPACITY) {
		r->total += len - CONSOLE_LOG_CAPACITY;
		p += len - CONSOLE_LOG_CAPACITY;
		len = CONSOLE_LOG_CAPACITY;
	}
	while (len) {
		size_t at = (size_t)(r->total % CONSOLE_LOG_CAPACITY);
		size_t n = CONSOLE_LOG_CAPACITY - at < len ? CONSOLE_LOG_CAPACITY - at : len;

		memcpy(r->data + at, p, n);
		r->total += n;
		p += n;
		len -= n;
	}
}

uint64_t log_ring_oldest(const struct log_ring *r)
{
	return r->total > CONSOLE_LOG_CAPACITY ? r->total - CONSOLE_LOG_CAPACITY : 0;
}

size_t log_ring_read(const struct log_ring *r, uint64_t *cursor, void *out, size_t max)
{
	size_t got = 0;

	if (*cursor < log_ring_oldest(r))
		*cursor = log_ring_oldest(r);
	while (got < max && *cursor < r->total) {
		size_t at = (size_t)(*cursor % CONSOLE_LOG_CAPACITY);
		size_t n = CONSOLE_LOG_CAPACITY - at;

		if (n > r->total - *cursor)
			n = (size_t)(r->total - *cursor);
		if (n > max - got)
			n = max - got;
		memcpy((uint8_t *)out + got, r->data + at, n);
		got += n;
		*cursor += n;
	}
	return got;
}

static void client_free(void *p)
{
	struct client *cl = p;

	buf_free(&cl->pending);
	free(cl);
}

static void client_drop(struct client *cl)
{
	struct console *c = cl->c;

	if (!cl->active)
		return;
	cl->active = false;
	loop_io_del(c->loop, &cl->io);
	close(cl->io.fd);
	for (int i = 0; i < ALL_CLIENTS; i++)
		if (c->clients[i] == cl)
			c->clients[i] = NULL;
	loop_defer_free(c->loop, cl, client_free);
}

/* Sends what the client is owed; waits for EPOLLOUT when the socket is full. */
static void client_flush(struct client *cl)
{
	struct console *c = cl->c;
	uint8_t chunk[16384];

	for (;;) {
		size_t n;
		ssize_t w;
		uint64_t before = cl->cursor;

		if (cl->is_log) {
			n = log_ring_read(&c->ring, &cl->cursor, chunk, sizeof(chunk));
			if (!n)
				break;
			w = send(cl->io.fd, chunk, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0 && (size_t)w < n)
				cl->cursor -= n - (size_t)w;
			if (w < 0)
				cl->cursor = before;
		} else {
			if (!cl->pending.len)
				break;
			w = send(cl->io.fd, cl->pending.data, cl->pending.len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0) {
				memmove(cl->pending.data, cl->pending.data + w, cl->pending.len - (size_t)w);
				cl->pending.len -= (size_t)w;
			}
		}
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				loop_io_mod(c->loop, &cl->io, EPOLLIN | EPOLLOUT);
				return;
			}
			client_drop(cl);
			return;
		}
	}
	/* All of the log, up to the app's end, is sent: EOF says so, and the host stops waiting. */
	if (cl->is_log && c->log_ended && !cl->shut) {
		shutdown(cl->io.fd, SHUT_WR);
		cl->shut = true;
	}
	loop_io_mod(c->loop, &cl->io, EPOLLIN);
}

static void on_client(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct client *cl = io->data;
	char junk[256];

	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		/* Clients only listen: anything they send is ignored; EOF or error ends them. */
		ssize_t n = recv(io->fd, junk, sizeof(junk), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			client_drop(cl);
			return;
		}
	}
	if (events & EPOLLOUT)
		client_flush(cl);
}

/* Who may take a slot: anyone in the enclave may connect to these ports (an app can hold them
 * all), so the parent, which the launcher's status and log connections come from and which no
 * process in the enclave can pose as, has slots of its own, where the newest replaces the
 * oldest: the launcher always gets through. */
static int pick_slot(struct console *c, bool parent, bool is_log)
{
	int from = parent ? MAX_CLIENTS : 0, to = parent ? ALL_CLIENTS : MAX_CLIENTS, oldest = -1;

	for (int i = from; i < to; i++) {
		if (!c->clients[i])
			return i;
		if (c->clients[i]->is_log == is_log && (oldest < 0 || c->clients[i]->seq < c->clients[oldest]->seq))
			oldest = i;
	}
	if (!parent || oldest < 0)
		return -1;
	client_drop(c->clients[oldest]);
	return oldest;
}

static void on_accept(struct acceptor *a, int fd)
{
	struct console *c = a->data;
	bool is_log = a == &c->log_acc;
	struct client *cl;
	int slot = pick_slot(c, vsock_peer_is_parent(fd), is_log);

	if (slot < 0) {
		log_warn("console: too many clients, refusing one");
		close(fd);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		abort();
	cl->c = c;
	cl->is_log = is_log;
	cl->active = true;
	cl->seq = ++c->seq;
	cl->cursor = log_ring_oldest(&c->ring); /* the whole backlog first */
	if (loop_io_add(c->loop, &cl->io, fd, EPOLLIN, on_client, cl, NULL) < 0) {
		close(fd);
		free(cl);
		return;
	}
	c->clients[slot] = cl;
	if (!is_log)
		buf_append_str(&cl->pending, c->status);
	client_flush(cl);
}

void console_log_write(struct console *c, const void *data, size_t len)
{
	log_ring_write(&c->ring, data, len);
	for (int i = 0; i < ALL_CLIENTS; i++)
		if (c->clients[i] && c->clients[i]->is_log && !(c->clients[i]->io.events & EPOLLOUT))
			client_flush(c->clients[i]);
}

static void log_sink(const char *line, size_t len, void *data)
{
	console_log_write(data, line, len);
}

/* Moves up to max_reads chunks of the app's output into the ring (0: until the pipe is empty). */
static void read_pipe(struct console *c, int max_reads)
{
	uint8_t chunk[16384];

	for (int i = 0; (max_reads == 0 || i < max_reads) && c->pipe_rd >= 0; i++) {
		ssize_t n = read(c->pipe_rd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		console_log_write(c, chunk, (size_t)n);
	}
}

static void on_pipe(struct loop *l, struct loop_io *io, uint32_t events)
{
	read_pipe(io->data, 64); /* a bounded batch: the loop has other work */
}

/* The app has ended: what it wrote before is in the pipe now, and goes into the log before
 * anyone is told it ended; log clients then get EOF once they have read it all. */
static void end_log(struct console *c)
{
	if (c->log_ended)
		return;
	read_pipe(c, 0);
	c->log_ended = true;
	for (int i = 0; i < ALL_CLIENTS; i++)
		if (c->clients[i] && c->clients[i]->is_log)
			client_flush(c->clients[i]);
}

static void set_status(struct console *c, const char *line, bool final)
{
	if (final)
		end_log(c);
	snprintf(c->status, sizeof(c->status), "%s\n", line);
	for (int i = 0; i < ALL_CLIENTS; i++)
		if (c->clients[i] && !c->clients[i]->is_log) {
			buf_append_str(&c->clients[i]->pending, c->status);
			client_flush(c->clients[i]);
		}
}

void console_status_running(struct console *c)
{
	set_status(c, "{ \"status\": \"running\" }", false);
}

void console_status_exited(struct console *c, int code)
{
	char line[64];

	snprintf(line, sizeof(line), "{ \"status\": \"exited\", \"code\": %d }", code);
	set_status(c, line, true);
}

void console_status_signaled(struct console *c, int sig)
{
	char line[96];
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(line, sizeof(line), "{ \"status\": \"signaled\", \"signal\": \"SIG%s\" }", abbrev);
	else
		snprintf(line, sizeof(line), "{ \"status\": \"signaled\", \"signal\": %d }", sig);
	set_status(c, line, true);
}

void console_status_fatal(struct console *c, const char *error)
{
	json_t *s = json_string(error ? error : "");
	char *esc = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
	char line[1100];

	/* Escaped, unlike upstream, so that any message stays one valid JSON line. */
	snprintf(line, sizeof(line), "{ \"status\": \"fatal\", \"error\": %s }", esc ? esc : "\"\"");
	free(esc);
	json_decref(s);
	set_status(c, line, true);
}

const char *console_status_line(const struct console *c)
{
	return c->status;
}

int console_new(struct loop *l, bool capture, struct console **out, struct err *err)
{
	struct console *c = calloc(1, sizeof(*c));
	int p[2];

	if (!c)
		abort();
	c->loop = l;
	c->pipe_rd = -1;
	console_status_running(c);
	if (acceptor_start(l, &c->status_acc, vsock_listen(CONSOLE_STATUS_PORT, 64, err), "console: status port", 0,
			   on_accept, c, err) < 0)
		goto fail;
	if (capture) {
		if (pipe2(p, O_CLOEXEC) < 0) {
			err_sys(err, "pipe");
			goto fail;
		}
		/* A large pipe absorbs bursts while odyn is busy elsewhere. */
		fcntl(p[1], F_SETPIPE_SZ, STDIO_PIPE_SIZE);
		if (dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0) {
			err_sys(err, "dup2");
			close(p[0]);
			close(p[1]);
			goto fail;
		}
		close(p[1]);
		c->pipe_rd = p[0];
		fcntl(c->pipe_rd, F_SETFL, O_NONBLOCK);
		if (loop_io_add(l, &c->pipe_io, c->pipe_rd, EPOLLIN, on_pipe, c, err) < 0)
			goto fail;
		/* odyn's own lines go straight into the ring: writing them into a pipe that odyn
		 * itself drains could block it. */
		log_set_sink(log_sink, c);
		if (acceptor_start(l, &c->log_acc, vsock_listen(CONSOLE_LOG_PORT, 64, err), "console: log port", 0,
				   on_accept, c, err) < 0)
			goto fail;
	}
	*out = c;
	return 0;
fail:
	console_free(c);
	return -1;
}

void console_free(struct console *c)
{
	if (!c)
		return;
	log_set_sink(NULL, NULL);
	for (int i = 0; i < ALL_CLIENTS; i++)
		if (c->clients[i])
			client_drop(c->clients[i]);
	acceptor_stop(&c->status_acc);
	acceptor_stop(&c->log_acc);
	loop_io_del(c->loop, &c->pipe_io);
	if (c->pipe_rd >= 0)
		close(c->pipe_rd);
	free(c);
}
