/*
 * Egress tunnel server. Runs in enclaver-run; requests come from the enclave, which is trusted
 * to have applied its policy but not to send well-formed frames: frames are bounded and parsed
 * strictly, and each connection fails on its own.
 */
#include "host/egress.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/relay.h"
#include "net/tunnel.h"
#include "net/vsock.h"

#define EGRESS_PORT 17002
#define FRAME_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 10000

enum state { READ_FRAME, RESOLVING, CONNECTING, ENDED };

struct conn {
	struct loop_tracked tracked; /* first */
	struct host_egress *e;
	enum state state;
	int vfd, tfd;
	struct loop_io vio, tio;
	struct loop_timer timer;
	uint8_t frame[2 + TUNNEL_MAX_FRAME];
	size_t got;
	char *host;
	uint16_t port;
	struct dns_result addrs;
	size_t next_addr;
	int last_errno;
	bool dead_while_resolving;
};

struct host_egress {
	struct loop *loop;
	struct dns *dns;
	host_egress_route_fn route;
	void *route_data;
	struct loop_io lio;
	int lfd;
};

static void conn_free(void *p)
{
	struct conn *c = p;

	free(c->host);
	free(c);
}

static void conn_end(struct conn *c)
{
	struct loop *l = c->e->loop;

	if (c->state == ENDED)
		return;
	loop_untrack(l, &c->tracked);
	loop_timer_stop(l, &c->timer);
	loop_io_del(l, &c->vio);
	loop_io_del(l, &c->tio);
	if (c->vfd >= 0)
		close(c->vfd);
	if (c->tfd >= 0)
		close(c->tfd);
	c->vfd = c->tfd = -1;
	if (c->state == RESOLVING) {
		/* the resolver still holds c: it frees it when it answers */
		c->dead_while_resolving = true;
		c->state = ENDED;
		return;
	}
	c->state = ENDED;
	loop_defer_free(l, c, conn_free);
}

/* Rust's io::Error display, which upstream's enclave side shows to the app. */
static void reply_err(struct conn *c, int code, const char *message)
{
	struct buf b = BUF_INIT;
	char msg[512];

	if (code)
		snprintf(msg, sizeof(msg), "%s (os error %d)", message ? message : strerror(code), code);
	else
		snprintf(msg, sizeof(msg), "%s", message);
	tunnel_put_err(&b, code, msg);
	if (send(c->vfd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("egress: cannot answer the enclave: %s", strerror(errno));
	buf_free(&b);
	log_info("egress: %s:%u: %s", c->host ? c->host : "?", c->port, msg);
	conn_end(c);
}

static void on_relay_done(void *data, const struct relay_stats *st)
{
	(void)data;
	(void)st;
}

static void try_next_addr(struct conn *c);

static void on_connected(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct conn *c = io->data;
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	struct buf ok = BUF_INIT;
	struct relay_opts o = { 0 };
	struct err err = { 0 };
	int vfd, tfd;

	getsockopt(c->tfd, SOL_SOCKET, SO_ERROR, &soerr, &len);
	if (soerr) {
		c->last_errno = soerr;
		loop_io_del(l, &c->tio);
		close(c->tfd);
		c->tfd = -1;
		try_next_addr(c);
		return;
	}
	tunnel_put_ok(&ok);
	o.prefill_a = ok.data;
	o.prefill_a_len = ok.len;
	loop_io_del(l, &c->tio);
	loop_io_del(l, &c->vio);
	vfd = c->vfd;
	tfd = c->tfd;
	c->vfd = c->tfd = -1;
	log_debug("egress: connected to %s:%u", c->host, c->port);
	if (relay_start(l, vfd, tfd, &o, on_relay_done, NULL, NULL, &err) < 0)
		log_warn("egress: %s", err.msg);
	buf_free(&ok);
	conn_end(c);
}

static void try_next_addr(struct conn *c)
{
	struct loop *l = c->e->loop;

	while (c->next_addr < c->addrs.n) {
		const struct sockaddr *sa = (const struct sockaddr *)&c->addrs.addrs[c->next_addr];
		socklen_t salen = c->addrs.lens[c->next_addr++];

		c->tfd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->tfd < 0) {
			c->last_errno = errno;
			continue;
		}
		if (connect(c->tfd, sa, salen) < 0 && errno != EINPROGRESS) {
			c->last_errno = errno;
			close(c->tfd);
			c->tfd = -1;
			continue;
		}
		if (loop_io_add(l, &c->tio, c->tfd, EPOLLOUT, on_connected, c, NULL) < 0) {
			c->last_errno = errno;
			close(c->tfd);
			c->tfd = -1;
			continue;
		}
		c->state = CONNECTING;
		loop_timer_start(l, &c->timer, CONNECT_TIMEOUT_MS);
		return;
	}
	reply_err(c, c->last_errno ? c->last_errno : ECONNREFUSED, NULL);
}

static void on_resolved(void *data, const struct dns_result *res)
{
	struct conn *c = data;

	if (c->dead_while_resolving) {
		conn_free(c);
		return;
	}
	c->state = CONNECTING;
	if (res->status) {
		char msg[400];

		snprintf(msg, sizeof(msg), "failed to look up address information for %s: %s", c->host, res->error);
		reply_err(c, 0, msg);
		return;
	}
	c->addrs = *res;
	c->next_addr = 0;
	try_next_addr(c);
}

static void on_timeout(struct loop *l, void *data)
{
	struct conn *c = data;

	if (c->state == CONNECTING) {
		loop_io_del(l, &c->tio);
		close(c->tfd);
		c->tfd = -1;
		c->last_errno = ETIMEDOUT;
		try_next_addr(c);
		return;
	}
	log_warn("egress: the enclave sent no complete request");
	conn_end(c);
}

static void handle_request(struct conn *c)
{
	struct err err = { 0 };
	char *routed;

	if (tunnel_parse_request(c->frame + 2, c->got - 2, &c->host, &c->port, &err) < 0) {
		reply_err(c, 0, err.msg);
		return;
	}
	/* "host" is the parent's own loopback, as upstream. */
	if (!strcasecmp(c->host, "host")) {
		free(c->host);
		c->host = strdup("127.0.0.1");
		if (!c->host)
			abort();
	}
	if (c->e->route && (routed = c->e->route(c->e->route_data, c->host, &c->port))) {
		free(c->host);
		c->host = routed;
	}
	loop_timer_stop(c->e->loop, &c->timer);
	loop_io_del(c->e->loop, &c->vio);
	c->state = RESOLVING;
	dns_resolve(c->e->dns, c->host, c->port, on_resolved, c);
}

static void on_enclave(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct conn *c = io->data;

	if (c->state != READ_FRAME)
		return;
	switch (tunnel_frame_recv(c->vfd, c->frame, &c->got)) {
	case 1:
		handle_request(c);
		return;
	case -1:
		conn_end(c);
		return;
	}
}

static void close_tracked(struct loop_tracked *t)
{
	conn_end((struct conn *)t);
}

static void on_accept(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct host_egress *e = io->data;

	for (;;) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (!c)
			abort();
		c->e = e;
		c->vfd = fd;
		c->tfd = -1;
		loop_timer_init(&c->timer, on_timeout, c);
		if (loop_io_add(l, &c->vio, fd, EPOLLIN, on_enclave, c, NULL) < 0) {
			close(fd);
			free(c);
			continue;
		}
		loop_track(l, &c->tracked, close_tracked);
		loop_timer_start(l, &c->timer, FRAME_TIMEOUT_MS);
	}
}

int host_egress_start(struct loop *l, struct dns *dns, host_egress_route_fn route, void *route_data,
		      struct host_egress **out, struct err *err)
{
	struct host_egress *e = calloc(1, sizeof(*e));

	if (!e)
		abort();
	e->loop = l;
	e->dns = dns;
	e->route = route;
	e->route_data = route_data;
	e->lfd = vsock_listen(EGRESS_PORT, 4096, err);
	if (e->lfd < 0 || loop_io_add(l, &e->lio, e->lfd, EPOLLIN, on_accept, e, err) < 0) {
		if (e->lfd >= 0)
			close(e->lfd);
		free(e);
		return err_wrap(err, "egress tunnel");
	}
	*out = e;
	return 0;
}

void host_egress_stop(struct host_egress *e)
{
	if (!e)
		return;
	loop_io_del(e->loop, &e->lio);
	close(e->lfd);
	free(e);
}
