/* NSM server: one frame in, one frame out, per connection, in the host's event loop. */
#include "host/nsm_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/accept.h"
#include "nitro/nsm.h"

struct nsm_conn {
	struct loop_tracked tracked; /* first */
	struct nsm_server *s;
	struct loop_io io;
	int fd;
	uint8_t in[4 + NSM_MAX_REQUEST];
	size_t got;
	struct buf out;
	size_t sent;
	bool ended;
};

/* An enclave needs one or two; the cap keeps a hostile one from costing the host memory. */
#define NSM_SERVER_MAX_CONNS 64

struct nsm_server {
	struct loop *loop;
	struct nsm_emu *emu;
	struct acceptor acc;
	char path[108];
};

static void conn_free(void *p)
{
	struct nsm_conn *c = p;

	buf_free_secret(&c->out);
	free(c);
}

static void conn_end(struct nsm_conn *c)
{
	struct loop *l = c->s->loop;

	if (c->ended)
		return;
	c->ended = true;
	loop_untrack(l, &c->tracked);
	loop_io_del(l, &c->io);
	close(c->fd);
	acceptor_release(&c->s->acc);
	explicit_bzero(c->in, sizeof(c->in));
	loop_defer_free(l, c, conn_free);
}

static void close_tracked(struct loop_tracked *t)
{
	conn_end((struct nsm_conn *)t);
}

/* Writes what is pending; true when all of it went. */
static bool flush(struct nsm_conn *c)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return false;
			conn_end(c);
			return false;
		}
		c->sent += (size_t)n;
	}
	buf_reset(&c->out);
	c->sent = 0;
	return true;
}

static void on_conn(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct nsm_conn *c = io->data;

	if (events & EPOLLOUT) {
		if (!flush(c)) {
			return;
		}
		loop_io_mod(l, &c->io, EPOLLIN);
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (;;) {
		size_t want = c->got < 4 ? 4 - c->got : 0;
		ssize_t n;

		if (c->got >= 4) {
			uint32_t len = (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 | (uint32_t)c->in[2] << 8 | c->in[3];

			if (len > NSM_MAX_REQUEST) {
				log_debug("NSM: a request of %u bytes: closing the connection", len);
				conn_end(c);
				return;
			}
			want = 4 + len - c->got;
			if (!want) {
				size_t start = c->out.len;

				buf_append(&c->out, "\0\0\0\0", 4);
				nsm_emu_handle(c->s->emu, c->in + 4, len, &c->out);
				{
					size_t rl = c->out.len - start - 4;

					c->out.data[start] = (uint8_t)(rl >> 24);
					c->out.data[start + 1] = (uint8_t)(rl >> 16);
					c->out.data[start + 2] = (uint8_t)(rl >> 8);
					c->out.data[start + 3] = (uint8_t)rl;
				}
				c->got = 0;
				if (!flush(c)) {
					if (!c->ended)
						loop_io_mod(l, &c->io, EPOLLOUT); /* one request at a time */
					return;
				}
				continue;
			}
		}
		n = recv(c->fd, c->in + c->got, want, MSG_DONTWAIT);
		if (n > 0) {
			c->got += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_end(c);
		return;
	}
}

static void on_accept(struct acceptor *a, int fd)
{
	struct nsm_server *s = a->data;
	struct nsm_conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->s = s;
	c->fd = fd;
	if (loop_io_add(s->loop, &c->io, fd, EPOLLIN, on_conn, c, NULL) < 0) {
		close(fd);
		free(c);
		acceptor_release(a);
		return;
	}
	loop_track(s->loop, &c->tracked, close_tracked);
}

int nsm_server_start(struct loop *l, const char *path, struct nsm_emu *emu, struct nsm_server **out,
		     struct err *err)
{
	struct nsm_server *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lfd;

	if (!s)
		abort();
	s->loop = l;
	s->emu = emu;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		free(s);
		return err_set(err, ENAMETOOLONG, "NSM socket path %s is too long", path);
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 || listen(lfd, 64) < 0) {
		err_sys(err, "NSM socket %s", path);
		if (lfd >= 0)
			close(lfd);
		lfd = -1;
	}
	if (acceptor_start(l, &s->acc, lfd, "NSM emulator", NSM_SERVER_MAX_CONNS, on_accept, s, err) < 0) {
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

void nsm_server_stop(struct nsm_server *s)
{
	if (!s)
		return;
	acceptor_stop(&s->acc);
	unlink(s->path);
	free(s);
}
