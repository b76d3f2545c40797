/* Ingress forwarding. Runs in odyn; connections come from the host, the target is the app. */
#include "enclave/ingress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "enclave/tls_relay.h"
#include "net/accept.h"
#include "net/relay.h"
#include "net/vsock.h"

#define CONNECT_TIMEOUT_MS 10000

struct listener {
	struct ingress *in;
	struct acceptor acc;
	char name[32];
	uint16_t port;
	SSL_CTX *tls;
};

struct pending {
	struct ingress *in;
	struct loop_io io;
	struct loop_timer timer;
	int vfd, tfd;
	uint16_t port;
	SSL_CTX *tls;
};

struct ingress {
	struct loop *loop;
	struct listener *listeners;
	size_t n;
	unsigned active;
	bool stopping;
	void (*drained)(void *data);
	void *drained_data;
};

static void maybe_drained(struct ingress *in)
{
	if (in->stopping && in->active == 0) {
		void (*fn)(void *) = in->drained;
		void *data = in->drained_data;

		free(in->listeners);
		free(in);
		if (fn)
			fn(data);
	}
}

static void on_relay_done(void *data, const struct relay_stats *st)
{
	struct ingress *in = data;

	if (st->error)
		log_debug("ingress: connection ended: %s", strerror(st->error));
	in->active--;
	maybe_drained(in);
}

static void on_tls_done(void *data)
{
	struct ingress *in = data;

	in->active--;
	maybe_drained(in);
}

static void pending_end(struct pending *p, bool relay)
{
	struct loop *l = p->in->loop;
	struct err err = { 0 };

	struct ingress *in = p->in;

	loop_timer_stop(l, &p->timer);
	loop_io_del(l, &p->io);
	loop_defer_free(l, p, free);
	/* The connection's count passes to the relay, which may finish (and drain) at once. */
	if (relay && p->tls && tls_relay_start(l, p->tls, p->vfd, p->tfd, on_tls_done, in, &err) == 0)
		return;
	if (relay && !p->tls && relay_start(l, p->vfd, p->tfd, NULL, on_relay_done, in, NULL, &err) == 0)
		return;
	if (relay)
		log_warn("ingress: %s", err.msg);
	else {
		close(p->vfd);
		close(p->tfd);
	}
	in->active--;
	maybe_drained(in);
}

static void on_connected(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct pending *p = io->data;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	getsockopt(p->tfd, SOL_SOCKET, SO_ERROR, &soerr, &len);
	if (soerr)
		log_warn("ingress: port %u: the app is not accepting on 127.0.0.1:%u: %s", p->port, p->port,
			 strerror(soerr));
	pending_end(p, soerr == 0);
}

static void on_connect_timeout(struct loop *l, void *data)
{
	struct pending *p = data;

	log_warn("ingress: port %u: connecting to the app timed out", p->port);
	pending_end(p, false);
}

static void on_accept(struct acceptor *a, int vfd)
{
	struct listener *ls = a->data;
	struct ingress *in = ls->in;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(ls->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct pending *p;

	if (tfd < 0) {
		log_warn("ingress: socket: %s", strerror(errno));
		close(vfd);
		return;
	}
	if (connect(tfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		log_warn("ingress: port %u: the app is not accepting on 127.0.0.1:%u: %s", ls->port, ls->port,
			 strerror(errno));
		close(vfd);
		close(tfd);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		abort();
	*p = (struct pending){ .in = in, .vfd = vfd, .tfd = tfd, .port = ls->port, .tls = ls->tls };
	loop_timer_init(&p->timer, on_connect_timeout, p);
	if (loop_io_add(in->loop, &p->io, tfd, EPOLLOUT, on_connected, p, NULL) < 0) {
		close(vfd);
		close(tfd);
		free(p);
		return;
	}
	in->active++;
	loop_timer_start(in->loop, &p->timer, CONNECT_TIMEOUT_MS);
}

int ingress_start(struct loop *l, const struct ingress_port *ports, size_t n, struct ingress **out,
		  struct err *err)
{
	struct ingress *in = calloc(1, sizeof(*in));

	if (!in)
		abort();
	in->loop = l;
	in->listeners = calloc(n ? n : 1, sizeof(*in->listeners));
	if (!in->listeners)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct listener *ls = &in->listeners[i];

		ls->in = in;
		ls->port = ports[i].port;
		ls->tls = ports[i].tls;
		snprintf(ls->name, sizeof(ls->name), "ingress port %u", ls->port);
		if (acceptor_start(l, &ls->acc, vsock_listen(ports[i].port, 4096, err), ls->name, 0, on_accept, ls,
				   err) < 0) {
			in->n = i;
			ingress_stop(in, NULL, NULL);
			return err_wrap(err, "ingress port %u", ports[i].port);
		}
		in->n = i + 1;
	}
	*out = in;
	return 0;
}

void ingress_stop(struct ingress *in, void (*drained)(void *data), void *data)
{
	for (size_t i = 0; i < in->n; i++)
		acceptor_stop(&in->listeners[i].acc);
	in->n = 0;
	in->stopping = true;
	in->drained = drained;
	in->drained_data = data;
	maybe_drained(in);
}

unsigned ingress_active(const struct ingress *in)
{
	return in->active;
}
