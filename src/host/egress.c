/*
 * Egress tunnel server. Runs in enclaver-run; requests come from the enclave, which is not
 * trusted at all: in a local enclave any app can write frames to this port, and on Nitro an app
 * can open AF_VSOCK itself. So every request is checked against the manifest's egress policy
 * here too (the same matcher and manifest odyn uses), frames are small and parsed strictly,
 * connections are capped, and each fails on its own.
 */
#include "host/egress.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "net/accept.h"
#include "net/relay.h"
#include "net/tunnel.h"
#include "net/vsock.h"

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
	uint8_t frame[2 + TUNNEL_MAX_REQUEST];
	size_t got;
	char *host;
	uint16_t port;
	struct dns_result addrs;
	size_t next_addr;
	int last_errno;
	bool dead_while_resolving;
	bool relayed; /* the relay now counts against the cap, and releases it */
};

struct host_egress {
	struct loop *loop;
	struct dns *dns;
	const struct policy *policy;
	host_egress_route_fn route;
	void *route_data;
	struct acceptor acc;
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
	if (!c->relayed)
		acceptor_release(&c->e->acc);
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
	struct host_egress *e = data;

	(void)st;
	acceptor_release(&e->acc);
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
	/* relay_start calls done on every end but a failure to start, which releases here */
	c->relayed = relay_start(l, vfd, tfd, &o, on_relay_done, c->e, NULL, &err) == 0;
	if (!c->relayed)
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
		/* A relay passes on what the enclave wrote as it comes: the enclave's own socket did
		 * any coalescing already, and Nagle here would hold a request's tail back for an ACK. */
		setsockopt(c->tfd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
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
	struct policy_decision d;

	if (tunnel_parse_request(c->frame + 2, c->got - 2, &c->host, &c->port, &err) < 0) {
		reply_err(c, 0, err.msg);
		return;
	}
	/* The name the enclave asked for, before any rewrite, as odyn judges it: what the manifest
	 * does not allow is refused whoever sent the frame. */
	policy_check(c->e->policy, c->host, &d);
	if (!d.allowed) {
		log_warn("egress: %s:%u refused: not allowed by the manifest's egress policy (%s%s%s)", c->host, c->port,
			 d.rule ? "deny rule " : "", d.rule ? d.rule : "", d.rule ? "" : d.reason);
		reply_err(c, EACCES, "blocked by egress security policy");
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
	if (!strncmp(c->host, "unix:", 5)) { /* a route to a stand-in of ours: no name to resolve */
		struct sockaddr_un *sa = (struct sockaddr_un *)&c->addrs.addrs[0];

		*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
		snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", c->host + 5);
		c->addrs.lens[0] = sizeof(*sa);
		c->addrs.n = 1;
		c->next_addr = 0;
		c->state = CONNECTING;
		try_next_addr(c);
		return;
	}
	c->state = RESOLVING;
	dns_resolve(c->e->dns, c->host, c->port, on_resolved, c);
}

static void on_enclave(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct conn *c = io->data;

	if (c->state != READ_FRAME)
		return;
	switch (tunnel_frame_recv(c->vfd, c->frame, TUNNEL_MAX_REQUEST, &c->got)) {
	case 1:
		handle_request(c);
		return;
	case -1:
		if (c->got >= 2)
			log_warn("egress: the enclave sent a malformed or oversized request frame");
		conn_end(c);
		return;
	}
}

static void close_tracked(struct loop_tracked *t)
{
	conn_end((struct conn *)t);
}

static void on_accept(struct acceptor *a, int fd)
{
	struct host_egress *e = a->data;
	struct loop *l = e->loop;
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->e = e;
	c->vfd = fd;
	c->tfd = -1;
	loop_timer_init(&c->timer, on_timeout, c);
	if (loop_io_add(l, &c->vio, fd, EPOLLIN, on_enclave, c, NULL) < 0) {
		close(fd);
		free(c);
		acceptor_release(a);
		return;
	}
	loop_track(l, &c->tracked, close_tracked);
	loop_timer_start(l, &c->timer, FRAME_TIMEOUT_MS);
}

int host_egress_start(struct loop *l, struct dns *dns, const struct policy *policy, host_egress_route_fn route,
		      void *route_data, struct host_egress **out, struct err *err)
{
	struct host_egress *e = calloc(1, sizeof(*e));

	if (!e)
		abort();
	e->loop = l;
	e->dns = dns;
	e->policy = policy;
	e->route = route;
	e->route_data = route_data;
	if (acceptor_start(l, &e->acc, vsock_listen(HOST_EGRESS_PORT, 4096, err), "egress tunnel", HOST_EGRESS_MAX_CONNS,
			   on_accept, e, err) < 0) {
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
	acceptor_stop(&e->acc);
	free(e);
}
