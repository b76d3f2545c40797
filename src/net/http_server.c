/* odyn's loopback HTTP server. */
#include "net/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/accept.h"

#define IDLE_TIMEOUT_MS 120000

enum state { READING, HANDLING, WRITING, CLOSED };

struct http_conn {
	struct loop_tracked tracked; /* first */
	struct http_server *s;
	struct loop *loop; /* the server's, kept for an answer that comes after the server ended */
	enum state state;
	int fd;
	struct loop_io io;
	struct loop_timer timer;
	struct buf in;
	struct buf out;
	size_t sent;
	bool keep_alive;
	bool dead; /* closed while its handler still holds it */
	struct http_conn *prev, *next; /* the server's open connections */
};

struct http_server {
	struct loop *loop;
	struct acceptor acc;
	int lfd;
	size_t max_body;
	http_handler_fn fn;
	void *ctx;
	struct http_conn *conns;
};

static void conn_free(void *p)
{
	struct http_conn *c = p;

	buf_free_secret(&c->in);
	buf_free_secret(&c->out);
	free(c);
}

static void conn_close(struct http_conn *c)
{
	struct loop *l = c->s->loop;

	if (c->fd >= 0) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->s->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->prev = c->next = NULL;
		loop_untrack(l, &c->tracked);
		loop_timer_stop(l, &c->timer);
		loop_io_del(l, &c->io);
		close(c->fd);
		c->fd = -1;
		acceptor_release(&c->s->acc);
	}
	if (c->state == HANDLING) {
		c->dead = true; /* http_respond frees it */
		return;
	}
	c->state = CLOSED;
	loop_defer_free(l, c, conn_free);
}

static void close_tracked(struct loop_tracked *t)
{
	conn_close((struct http_conn *)t);
}

static void try_parse(struct http_conn *c);

static void on_write(struct http_conn *c)
{
	struct loop *l = c->s->loop;

	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				loop_io_mod(l, &c->io, EPOLLOUT);
				return;
			}
			conn_close(c);
			return;
		}
		c->sent += (size_t)n;
	}
	buf_reset(&c->out);
	c->sent = 0;
	if (!c->keep_alive) {
		conn_close(c);
		return;
	}
	c->state = READING;
	loop_io_mod(l, &c->io, EPOLLIN);
	loop_timer_start(l, &c->timer, IDLE_TIMEOUT_MS);
	try_parse(c); /* a request may already be buffered */
}

void http_answer_format(bool keep_alive, int status, const char *content_type, const void *body, size_t len,
			const char *const *extra, struct buf *out)
{
	buf_printf(out, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n", status, http_reason(status), len);
	if (content_type)
		buf_printf(out, "content-type: %s\r\n", content_type);
	for (const char *const *h = extra; h && *h; h++)
		buf_printf(out, "%s\r\n", *h);
	if (!keep_alive)
		buf_append_str(out, "connection: close\r\n");
	buf_append_str(out, "\r\n");
	buf_append(out, body, len);
}

bool http_conn_keeps_alive(const struct http_conn *c)
{
	return c->keep_alive;
}

int http_conn_dup(struct http_conn *c)
{
	return c->fd >= 0 ? fcntl(c->fd, F_DUPFD_CLOEXEC, 3) : -1;
}

void http_respond_raw(struct http_conn *c, const struct buf *answer, size_t sent, bool keep_alive,
		      const uint8_t *unread, size_t unread_len)
{
	if (c->dead) {
		c->state = CLOSED;
		loop_defer_free(c->loop, c, conn_free);
		return;
	}
	c->keep_alive = keep_alive;
	/* bytes read off the socket elsewhere come first: they were sent before any still in it */
	if (unread_len)
		buf_append(&c->in, unread, unread_len);
	if (sent < answer->len)
		buf_append(&c->out, answer->data + sent, answer->len - sent);
	c->state = WRITING;
	on_write(c);
}

size_t http_conn_buffered(const struct http_conn *c)
{
	return c->in.len;
}

void http_respond(struct http_conn *c, int status, const char *content_type, const void *body, size_t len,
		  const char *const *extra)
{
	if (c->dead) {
		c->state = CLOSED;
		loop_defer_free(c->loop, c, conn_free);
		return;
	}
	http_answer_format(c->keep_alive, status, content_type, body, len, extra, &c->out);
	c->state = WRITING;
	on_write(c);
}

static void answer_error(struct http_conn *c, int status, const char *msg)
{
	c->keep_alive = false;
	c->state = HANDLING;
	http_respond(c, status, "text/plain", msg, strlen(msg), NULL);
}

int http_take_request(const uint8_t *data, size_t len, size_t max_body, struct http_request *req, char **copy,
		      size_t *body_len, bool *keep_alive, const char **msg)
{
	enum http_parse_result r;
	const char *cl, *te, *conn;
	int status = 0;

	*copy = NULL;
	*body_len = 0;
	if (!len)
		return 1;
	/* the parser writes terminators: it works on a copy, the caller's bytes stay as they are */
	*copy = malloc(len + 1);
	if (!*copy)
		abort();
	memcpy(*copy, data, len);
	(*copy)[len] = 0;
	r = http_parse_request(*copy, len, req);
	if (r == HTTP_INCOMPLETE) {
		status = 1;
		goto out;
	}
	if (r != HTTP_OK) {
		*msg = r == HTTP_TOO_LARGE ? "request head too large\n" : "malformed request\n";
		status = r == HTTP_TOO_LARGE ? 431 : 400;
		goto out;
	}
	te = http_header_get(req, "transfer-encoding");
	cl = http_header_get(req, "content-length");
	if (te) {
		*msg = "send the body with a Content-Length\n";
		status = 411;
		goto out;
	}
	if (cl) {
		char *end;
		unsigned long long v = strtoull(cl, &end, 10);

		if (!*cl || *end || cl[0] == '-' || v > max_body) {
			bool big = v > max_body && !*end;

			*msg = big ? "request body too large\n" : "bad Content-Length\n";
			status = big ? 413 : 400;
			goto out;
		}
		*body_len = (size_t)v;
	}
	if (len < req->head_len + *body_len) {
		status = 1;
		goto out;
	}
	conn = http_header_get(req, "connection");
	*keep_alive = req->minor_version >= 1 ? !(conn && !strcasecmp(conn, "close"))
					      : (conn && !strcasecmp(conn, "keep-alive"));
	return 0;
out:
	explicit_bzero(*copy, len);
	free(*copy);
	*copy = NULL;
	return status;
}

static void try_parse(struct http_conn *c)
{
	struct http_request req;
	char *copy;
	const char *msg = NULL;
	size_t body_len, copy_len = c->in.len;
	int r;

	if (c->state != READING || !c->in.len)
		return;
	r = http_take_request(c->in.data, c->in.len, c->s->max_body, &req, &copy, &body_len, &c->keep_alive, &msg);
	if (r == 1)
		return;
	if (r) {
		answer_error(c, r, msg);
		return;
	}
	c->state = HANDLING;
	loop_timer_stop(c->s->loop, &c->timer);
	loop_io_mod(c->s->loop, &c->io, 0);
	{
		uint8_t *body = (uint8_t *)copy + req.head_len;
		size_t consumed = req.head_len + body_len;

		/* taken off the buffer before the handler runs: an answer given at once goes on to
		 * the next buffered request */
		memmove(c->in.data, c->in.data + consumed, c->in.len - consumed);
		c->in.len -= consumed;
		c->s->fn(c->s->ctx, c, &req, body, body_len);
	}
	explicit_bzero(copy, copy_len);
	free(copy);
}

static void on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct http_conn *c = io->data;

	if (c->state == WRITING) {
		on_write(c);
		return;
	}
	if (c->state != READING)
		return;
	for (;;) {
		uint8_t chunk[16384];
		ssize_t n = recv(c->fd, chunk, sizeof(chunk), MSG_DONTWAIT);

		if (n > 0) {
			if (c->in.len + (size_t)n > HTTP_MAX_HEAD + c->s->max_body) {
				answer_error(c, 413, "request too large\n");
				return;
			}
			buf_append(&c->in, chunk, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		conn_close(c);
		return;
	}
	try_parse(c);
}

static void on_timeout(struct loop *l, void *data)
{
	conn_close(data);
}

static void on_accept(struct acceptor *a, int fd)
{
	struct http_server *s = a->data;
	struct loop *l = s->loop;
	struct http_conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->s = s;
	c->loop = l;
	c->fd = fd;
	c->state = READING;
	loop_timer_init(&c->timer, on_timeout, c);
	if (loop_io_add(l, &c->io, fd, EPOLLIN, on_io, c, NULL) < 0) {
		close(fd);
		free(c);
		acceptor_release(a);
		return;
	}
	loop_track(l, &c->tracked, close_tracked);
	loop_timer_start(l, &c->timer, IDLE_TIMEOUT_MS);
	c->next = s->conns;
	if (c->next)
		c->next->prev = c;
	s->conns = c;
}

/* Serves on s->lfd (< 0: failed, reported in err); frees s on failure. */
static int serve(struct http_server *s, struct http_server **out, struct err *err)
{
	if (acceptor_start(s->loop, &s->acc, s->lfd, "HTTP server", HTTP_SERVER_MAX_CONNS, on_accept, s, err) < 0) {
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

int http_server_start(struct loop *l, uint16_t port, size_t max_body, http_handler_fn fn, void *ctx,
		      struct http_server **out, struct err *err)
{
	return http_server_start_at(l, "127.0.0.1", port, max_body, fn, ctx, out, err);
}

uint16_t http_server_port(const struct http_server *s)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(s->lfd, (struct sockaddr *)&sa, &len) < 0)
		return 0;
	return ntohs(sa.sin_port);
}

int http_server_start_at(struct loop *l, const char *addr, uint16_t port, size_t max_body, http_handler_fn fn,
			 void *ctx, struct http_server **out, struct err *err)
{
	struct http_server *s = calloc(1, sizeof(*s));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;

	if (!s)
		abort();
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		free(s);
		return err_set(err, EINVAL, "\"%s\" is not an IPv4 address", addr);
	}
	*s = (struct http_server){ .loop = l, .max_body = max_body, .fn = fn, .ctx = ctx };
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->lfd, 512) < 0) {
		err_sys(err, "%s:%u", addr, port);
		if (s->lfd >= 0)
			close(s->lfd);
		s->lfd = -1;
	}
	return serve(s, out, err);
}

int http_server_start_unix(struct loop *l, const char *path, size_t max_body, http_handler_fn fn, void *ctx,
			   struct http_server **out, struct err *err)
{
	struct http_server *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old_mask;
	int rc;

	if (!s)
		abort();
	if (strlen(path) >= sizeof(sa.sun_path)) {
		free(s);
		return err_set(err, ENAMETOOLONG, "%s: too long for a Unix socket", path);
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	*s = (struct http_server){ .loop = l, .max_body = max_body, .fn = fn, .ctx = ctx };
	unlink(path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* Created with the owner's rights only (connect() needs write permission on the socket),
	 * by the umask: a chmod after bind would leave a moment in which anyone could connect. */
	old_mask = umask(0177);
	rc = s->lfd < 0 ? -1 : bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_mask);
	if (rc < 0 || listen(s->lfd, 512) < 0) {
		err_sys(err, "%s", path);
		if (s->lfd >= 0)
			close(s->lfd);
		s->lfd = -1;
	}
	return serve(s, out, err);
}

void http_server_stop(struct http_server *s)
{
	if (!s)
		return;
	/* connections end with their server; one whose handler is still busy is freed by its
	 * answer, which must then not need the server: handlers end before their server does */
	while (s->conns)
		conn_close(s->conns);
	acceptor_stop(&s->acc);
	free(s);
}
