/*
 * Egress proxy and transparent listener. Runs in odyn; requests come from the app, which may be
 * hostile: the head is bounded, parsed strictly, and the policy decides before any byte leaves
 * the enclave. A connection holds memory for what it has received only (an idle one a few
 * hundred bytes), at most EGRESS_MAX_CONNS are open at once on each listener, and one that sends
 * no request is closed. A transparent connection carries no request: its destination is the
 * one the app dialled, recovered from the kernel's NAT (SO_ORIGINAL_DST), and any refusal is a
 * reset, as nothing else can carry a reason to a client that never asked a proxy.
 */
#include "enclave/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netfilter_ipv6/ip6_tables.h>

#include "base/buf.h"
#include "base/log.h"
#include "codec/http.h"
#include "net/accept.h"
#include "net/relay.h"
#include "net/tunnel.h"
#include "net/vsock.h"

#define HEAD_TIMEOUT_MS 30000
#define TUNNEL_TIMEOUT_MS 60000
/* As many as the host's side of the tunnel takes from one enclave. */
#define EGRESS_MAX_CONNS 4096
#define HEAD_CHUNK 4096
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h, which clashes with netinet/in.h */
#endif

enum state { READ_HEAD, TUNNEL_CONNECT, TUNNEL_REPLY, DONE };

struct conn {
	struct egress *eg;
	struct acceptor *acc; /* the listener that counts it */
	bool transparent;
	enum state state;
	int cfd, tfd;
	struct loop_io cio, tio;
	struct loop_timer timer;
	struct buf head; /* as received: grows to HTTP_MAX_HEAD at most */
	uint8_t *reply;	 /* 2 + TUNNEL_MAX_REPLY bytes, while the host's answer is awaited */
	size_t reply_got;
	struct buf to_upstream; /* rewritten head + early body bytes */
	struct buf to_client;   /* "200" for CONNECT */
	struct buf frame;
	size_t frame_sent;
	char *host;
	int port;
	bool is_connect;
	bool relayed; /* its count passed to the relay */
};

struct egress {
	struct loop *loop;
	struct acceptor acc;	     /* the proxy's: counts connections and relays */
	struct acceptor trans[2];    /* the transparent listener's, IPv4 and IPv6 */
	const struct policy *policy;
	struct pool *pool;	     /* NULL without transparent egress */
	uint16_t trans_port;
	bool stopping; /* freed when the last connection ends */
};

static void egress_maybe_free(struct egress *e)
{
	if (e->stopping && e->acc.live == 0 && e->trans[0].live == 0 && e->trans[1].live == 0)
		free(e);
}

static void conn_free(void *p)
{
	struct conn *c = p;

	buf_free(&c->head);
	free(c->reply);
	buf_free(&c->to_upstream);
	buf_free(&c->to_client);
	buf_free(&c->frame);
	free(c->host);
	free(c);
}

static void conn_end(struct conn *c)
{
	struct loop *l = c->eg->loop;

	if (c->state == DONE)
		return;
	c->state = DONE;
	loop_timer_stop(l, &c->timer);
	loop_io_del(l, &c->cio);
	loop_io_del(l, &c->tio);
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->tfd >= 0)
		close(c->tfd);
	if (!c->relayed)
		acceptor_release(c->acc);
	egress_maybe_free(c->eg);
	loop_defer_free(l, c, conn_free);
}

/* Answers the app with an error and ends the connection; a transparent one is reset. */
static void reply_error(struct conn *c, int code, const char *body)
{
	struct buf b = BUF_INIT;

	if (c->transparent) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		if (code != 401) /* a refusal by the policy was logged when it was decided */
			log_info("egress: %s:%d (transparent) reset: %s", c->host, c->port, body);
		/* a close with linger 0 sends RST: the app sees ECONNRESET, not a clean end */
		setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		conn_end(c);
		return;
	}
	http_put_response(&b, code, "text/plain", body, strlen(body));
	/* Small: fits the socket buffer of a fresh connection; a partial write just ends early. */
	if (send(c->cfd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("egress: cannot send %d to the app: %s", code, strerror(errno));
	buf_free(&b);
	shutdown(c->cfd, SHUT_WR);
	conn_end(c);
}

static void on_relay_done(void *data, const struct relay_stats *st)
{
	struct acceptor *acc = data;
	struct egress *eg = acc->data;

	acceptor_release(acc);
	egress_maybe_free(eg);
}

static void go_relay(struct conn *c)
{
	struct relay_opts o = { 0 };
	struct err err = { 0 };
	int cfd = c->cfd, tfd = c->tfd;

	loop_timer_stop(c->eg->loop, &c->timer);
	loop_io_del(c->eg->loop, &c->cio);
	loop_io_del(c->eg->loop, &c->tio);
	o.prefill_b = c->to_upstream.data;
	o.prefill_b_len = c->to_upstream.len;
	o.prefill_a = c->to_client.data;
	o.prefill_a_len = c->to_client.len;
	c->cfd = c->tfd = -1;
	/* relay_start calls done on every end but a failure to start, which conn_end counts */
	c->relayed = relay_start(c->eg->loop, cfd, tfd, &o, on_relay_done, c->acc, NULL, &err) == 0;
	if (!c->relayed)
		log_warn("egress: %s", err.msg);
	conn_end(c);
}

static void on_timeout(struct loop *l, void *data)
{
	struct conn *c = data;

	if (c->state == READ_HEAD)
		reply_error(c, 408, "timed out waiting for the request");
	else
		reply_error(c, 503, "timed out waiting for the host's egress tunnel");
}

static void on_tunnel(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct conn *c = io->data;

	if (c->state == TUNNEL_CONNECT) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		getsockopt(c->tfd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		if (soerr) {
			char msg[256];

			snprintf(msg, sizeof(msg), "egress tunnel unavailable: %s", strerror(soerr));
			reply_error(c, 503, msg);
			return;
		}
		while (c->frame_sent < c->frame.len) {
			ssize_t n = send(c->tfd, c->frame.data + c->frame_sent, c->frame.len - c->frame_sent,
					 MSG_NOSIGNAL);

			if (n < 0 && errno == EAGAIN)
				return;
			if (n < 0) {
				reply_error(c, 503, "egress tunnel closed");
				return;
			}
			c->frame_sent += (size_t)n;
		}
		c->state = TUNNEL_REPLY;
		loop_io_mod(l, io, EPOLLIN);
		return;
	}
	if (c->state != TUNNEL_REPLY)
		return;
	if (!c->reply) {
		c->reply = malloc(2 + TUNNEL_MAX_REPLY);
		if (!c->reply)
			abort();
	}
	switch (tunnel_frame_recv(c->tfd, c->reply, TUNNEL_MAX_REPLY, &c->reply_got)) {
	case 0:
		return;
	case -1:
		reply_error(c, 503, "the host closed the egress tunnel");
		return;
	}
	{
		int code = 0;
		char *msg = NULL;
		struct err err = { 0 };
		int rc = tunnel_parse_reply(c->reply + 2, c->reply_got - 2, &code, &msg, &err);

		if (rc == 0) {
			go_relay(c);
		} else if (rc == 1) {
			char body[1200];

			if (c->transparent)
				snprintf(body, sizeof(body), "the host cannot connect: %s", msg);
			else
				snprintf(body, sizeof(body), "os_err: %d: %s", code, msg);
			free(msg);
			reply_error(c, 503, body);
		} else {
			reply_error(c, 503, err.msg);
		}
	}
}

static void open_tunnel(struct conn *c)
{
	struct err err = { 0 };
	bool pending;
	char msg[600];

	if (tunnel_put_request(&c->frame, c->host, (uint16_t)c->port, &err) < 0) {
		reply_error(c, 400, err.msg);
		return;
	}
	c->tfd = vsock_connect(VSOCK_CID_HOST, EGRESS_TUNNEL_PORT, &pending, &err);
	if (c->tfd < 0) {
		snprintf(msg, sizeof(msg), "egress tunnel unavailable: %s", err.msg);
		reply_error(c, 503, msg);
		return;
	}
	c->state = TUNNEL_CONNECT;
	loop_io_del(c->eg->loop, &c->cio); /* nothing more is read from the app until the tunnel is up */
	if (loop_io_add(c->eg->loop, &c->tio, c->tfd, EPOLLOUT, on_tunnel, c, &err) < 0) {
		reply_error(c, 503, err.msg);
		return;
	}
	loop_timer_start(c->eg->loop, &c->timer, TUNNEL_TIMEOUT_MS);
}

/* origin-form request for the upstream: Host from the URL, one request per connection. */
static void rewrite_head(struct conn *c, const struct http_request *req, const struct http_url *url)
{
	struct buf *b = &c->to_upstream;
	const char *path = url->path;

	if (!strcmp(req->method, "OPTIONS") && !strcmp(path, "/") && !strchr(req->target + 7, '/'))
		path = "*";
	buf_printf(b, "%s %s HTTP/1.%d\r\n", req->method, path, req->minor_version);
	buf_printf(b, "Host: %s\r\n", url->authority);
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *n = req->headers[i].name;

		if (!strcasecmp(n, "host") || !strcasecmp(n, "connection") || !strcasecmp(n, "proxy-connection"))
			continue;
		buf_printf(b, "%s: %s\r\n", n, req->headers[i].value);
	}
	/* A new upstream connection per request, as upstream enclaver does: say so, so that the
	 * app does not send its next request (perhaps for another host) down this one. */
	buf_append_str(b, "Connection: close\r\n\r\n");
}

/* An address of the synthetic pool stands for the name it was given: the name is what the
 * policy judges and what the host dials. False for a pool address no name was given. */
static bool pool_to_name(struct conn *c)
{
	struct in_addr a;
	const char *name;

	if (!c->eg->pool || inet_pton(AF_INET, c->host, &a) != 1 || !pool_contains(c->eg->pool, a.s_addr))
		return true;
	name = pool_name_of(c->eg->pool, a.s_addr);
	if (!name)
		return false;
	free(c->host);
	c->host = strdup(name);
	if (!c->host)
		abort();
	return true;
}

/* The policy's word on c->host; false (and logged) when it refuses. */
static bool allowed(struct conn *c)
{
	struct policy_decision d;

	if (!pool_to_name(c)) {
		log_info("egress: %s:%d blocked (an address of the synthetic pool that no name was given)", c->host,
			 c->port);
		return false;
	}
	policy_check(c->eg->policy, c->host, &d);
	if (!d.allowed) {
		log_info("egress: %s:%d%s blocked (%s%s%s)", c->host, c->port, c->transparent ? " (transparent)" : "",
			 d.rule ? "deny rule " : "", d.rule ? d.rule : "", d.rule ? "" : d.reason);
		return false;
	}
	return true;
}

static void handle_head(struct conn *c, struct http_request *req)
{
	struct http_url url = { 0 };

	c->is_connect = !strcmp(req->method, "CONNECT");
	if (c->is_connect) {
		if (http_split_authority(req->target, strlen(req->target), &c->host, &c->port) < 0) {
			reply_error(c, 400, "invalid CONNECT address");
			return;
		}
		if (c->port < 0) {
			reply_error(c, 400, "CONNECT address is missing a port");
			return;
		}
		buf_append_str(&c->to_client, "HTTP/1.1 200 OK\r\n\r\n");
	} else {
		if (http_parse_absolute_url(req->target, &url) < 0) {
			reply_error(c, 400, "URI is missing a host");
			return;
		}
		c->host = strdup(url.host);
		c->port = url.port < 0 ? 80 : url.port;
		rewrite_head(c, req, &url);
		http_url_clear(&url);
	}
	if (!allowed(c)) {
		reply_error(c, 401, EGRESS_BLOCKED_BODY);
		return;
	}
	/* Bytes the app sent after the head go upstream first. */
	buf_append(&c->to_upstream, c->head.data + req->head_len, c->head.len - req->head_len);
	open_tunnel(c);
}

static void on_client(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct conn *c = io->data;
	struct http_request req;
	char chunk[HEAD_CHUNK], *parse_copy;
	size_t room = HTTP_MAX_HEAD - c->head.len;
	enum http_parse_result r;
	ssize_t n;

	if (c->state != READ_HEAD)
		return;
	n = recv(c->cfd, chunk, room < sizeof(chunk) ? room : sizeof(chunk), 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_end(c);
		return;
	}
	buf_append(&c->head, chunk, (size_t)n);
	/* The parser writes NULs into what it parses: work on a copy, keep the raw bytes. */
	parse_copy = malloc(c->head.len + 1);
	if (!parse_copy)
		abort();
	memcpy(parse_copy, c->head.data, c->head.len);
	parse_copy[c->head.len] = 0;
	r = http_parse_request(parse_copy, c->head.len, &req);
	if (r == HTTP_OK)
		handle_head(c, &req);
	free(parse_copy);
	switch (r) {
	case HTTP_INCOMPLETE:
		return;
	case HTTP_TOO_LARGE:
		reply_error(c, 431, "request head too large");
		return;
	case HTTP_BAD:
		reply_error(c, 400, "malformed request");
		return;
	case HTTP_OK:
		return;
	}
}

/* A connection the listener a took, in its first state. */
static struct conn *conn_new(struct acceptor *a, int fd, bool transparent)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->eg = a->data;
	c->acc = a;
	c->cfd = fd;
	c->tfd = -1;
	c->transparent = transparent;
	c->state = READ_HEAD;
	loop_timer_init(&c->timer, on_timeout, c);
	return c;
}

static void on_accept(struct acceptor *a, int fd)
{
	struct egress *eg = a->data;
	struct conn *c = conn_new(a, fd, false);

	if (loop_io_add(eg->loop, &c->cio, fd, EPOLLIN, on_client, c, NULL) < 0) {
		close(fd);
		free(c);
		acceptor_release(a);
		return;
	}
	loop_timer_start(eg->loop, &c->timer, HEAD_TIMEOUT_MS);
}

/* Where the app meant to go, before the kernel's REDIRECT: as host text and port. False for a
 * connection that was not redirected (one made to this listener itself, or with no NAT record). */
static bool original_dst(int fd, struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char text[INET6_ADDRSTRLEN];

	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) < 0 &&
	    (len = sizeof(ss), getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) < 0))
		return false;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		/* Loopback is never redirected (the rules accept it first): this is a connection to the
		 * listener's own port, which must not come back to it. */
		if ((ntohl(s4->sin_addr.s_addr) >> 24) == 127)
			return false;
		inet_ntop(AF_INET, &s4->sin_addr, text, sizeof(text));
		c->port = ntohs(s4->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return false;
		inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text));
		c->port = ntohs(s6->sin6_port);
	} else {
		return false;
	}
	c->host = strdup(text);
	if (!c->host)
		abort();
	return true;
}

static void on_transparent(struct acceptor *a, int fd)
{
	struct egress *eg = a->data;
	struct conn *c = conn_new(a, fd, true);

	if (!original_dst(fd, c)) {
		log_info("egress: a connection to the transparent listener itself (port %u) reset", eg->trans_port);
		reply_error(c, 401, "");
		return;
	}
	if (!allowed(c)) {
		reply_error(c, 401, EGRESS_BLOCKED_BODY);
		return;
	}
	/* the app's first bytes wait in its socket until the tunnel is up */
	open_tunnel(c);
}

int egress_transparent_start(struct egress *e, struct pool *pool, uint16_t port, struct err *err)
{
	e->pool = pool;
	e->trans_port = port;
	for (int i = 0; i < 2; i++) {
		int lfd = loopback_socket(i ? AF_INET6 : AF_INET, SOCK_STREAM, port, 4096, "transparent egress listener", err);

		/* no IPv6 in this kernel, so no IPv6 rules either */
		if (lfd < 0 && i == 1 && (err->code == EAFNOSUPPORT || err->code == EADDRNOTAVAIL)) {
			err_clear(err);
			break;
		}
		if (lfd < 0)
			return -1;
		if (acceptor_start(e->loop, &e->trans[i], lfd, "transparent egress", EGRESS_MAX_CONNS, on_transparent, e,
				   err) < 0)
			return -1;
	}
	return 0;
}

void egress_transparent_stop(struct egress *e)
{
	acceptor_stop(&e->trans[0]);
	acceptor_stop(&e->trans[1]);
	e->pool = NULL;
}

int egress_start(struct loop *l, uint16_t port, const struct policy *policy, struct egress **out,
		 struct err *err)
{
	struct egress *e = calloc(1, sizeof(*e));
	int lfd;

	if (!e)
		abort();
	e->loop = l;
	e->policy = policy;
	lfd = loopback_socket(AF_INET, SOCK_STREAM, port, 1024, "egress proxy", err);
	if (lfd < 0) {
		free(e);
		return -1;
	}
	if (acceptor_start(l, &e->acc, lfd, "egress proxy", EGRESS_MAX_CONNS, on_accept, e, err) < 0) {
		free(e);
		return -1;
	}
	*out = e;
	return 0;
}

void egress_stop(struct egress *e)
{
	if (!e)
		return;
	acceptor_stop(&e->acc);
	acceptor_stop(&e->trans[0]);
	acceptor_stop(&e->trans[1]);
	/* Open connections finish on their own; the struct goes with the last of them. */
	e->stopping = true;
	egress_maybe_free(e);
}

unsigned egress_active(const struct egress *e)
{
	return (unsigned)e->acc.live;
}
