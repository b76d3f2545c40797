/* Ingress listeners. Runs in enclaver-run; clients are anyone who can reach the port. */
#include "host/ingress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/accept.h"
#include "net/relay.h"
#include "net/vsock.h"

#define CONNECT_RETRIES 200
#define RETRY_MS 5

struct listener {
	struct host_ingress *h;
	struct acceptor acc;
	char name[32];
	struct host_port_map map;
};

/* Holds what it needs by value: listeners may be stopped while connections are pending. */
struct pending {
	struct loop_tracked tracked; /* first */
	struct loop *loop;
	uint32_t cid;
	struct host_port_map map;
	struct loop_io io;
	struct loop_timer timer;
	int cfd, vfd;
	int tries;
};

struct host_ingress {
	struct loop *loop;
	uint32_t cid;
	struct listener *ls;
	size_t n;
};

static void on_relay_done(void *data, const struct relay_stats *st)
{
	if (st->error)
		log_debug("ingress: connection ended: %s", strerror(st->error));
}

static void pending_free(void *p)
{
	free(p);
}

static void start_relay(struct pending *p)
{
	struct loop *l = p->loop;
	struct err err = { 0 };

	loop_untrack(l, &p->tracked);
	loop_timer_stop(l, &p->timer);
	loop_io_del(l, &p->io);
	if (relay_start(l, p->cfd, p->vfd, NULL, on_relay_done, NULL, NULL, &err) < 0)
		log_warn("ingress: %s", err.msg);
	loop_defer_free(l, p, pending_free);
}

static void give_up(struct pending *p, const char *why)
{
	struct loop *l = p->loop;

	log_warn("ingress: port %u: cannot reach the enclave's port %u: %s", p->map.host_port,
		 p->map.enclave_port, why);
	loop_untrack(l, &p->tracked);
	loop_timer_stop(l, &p->timer);
	loop_io_del(l, &p->io);
	close(p->cfd);
	if (p->vfd >= 0)
		close(p->vfd);
	loop_defer_free(l, p, pending_free);
}

static void on_vsock_connected(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct pending *p = io->data;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	getsockopt(p->vfd, SOL_SOCKET, SO_ERROR, &soerr, &len);
	if (soerr) {
		give_up(p, strerror(soerr));
		return;
	}
	start_relay(p);
}

static void try_connect(struct loop *l, void *data)
{
	struct pending *p = data;
	struct err err = { 0 };
	bool in_progress;

	p->vfd = vsock_connect(p->cid, p->map.enclave_port, &in_progress, &err);
	if (p->vfd < 0) {
		/* A full accept queue answers EAGAIN at once: wait a little and try again. */
		if (err.code == EAGAIN && ++p->tries < CONNECT_RETRIES) {
			loop_timer_start(l, &p->timer, RETRY_MS);
			return;
		}
		give_up(p, err.msg);
		return;
	}
	if (!in_progress) {
		start_relay(p);
		return;
	}
	if (loop_io_add(l, &p->io, p->vfd, EPOLLOUT, on_vsock_connected, p, &err) < 0)
		give_up(p, err.msg);
}

static void close_tracked(struct loop_tracked *t)
{
	give_up((struct pending *)t, "enclaver-run is stopping");
}

static void on_accept(struct acceptor *a, int fd)
{
	struct listener *ls = a->data;
	struct pending *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		abort();
	p->loop = ls->h->loop;
	p->cid = ls->h->cid;
	p->map = ls->map;
	p->cfd = fd;
	p->vfd = -1;
	loop_timer_init(&p->timer, try_connect, p);
	loop_track(p->loop, &p->tracked, close_tracked);
	try_connect(p->loop, p);
}

int host_ingress_start(struct loop *l, uint32_t cid, const struct host_port_map *maps, size_t n,
		       struct host_ingress **out, struct err *err)
{
	struct host_ingress *h = calloc(1, sizeof(*h));

	if (!h)
		abort();
	h->loop = l;
	h->cid = cid;
	h->ls = calloc(n ? n : 1, sizeof(*h->ls));
	if (!h->ls)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct listener *ls = &h->ls[i];
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(maps[i].host_port),
					  .sin_addr.s_addr = htonl(INADDR_ANY) };
		int one = 1, fd;

		ls->h = h;
		ls->map = maps[i];
		snprintf(ls->name, sizeof(ls->name), "ingress: port %u", maps[i].host_port);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err_sys(err, "ingress: socket");
			goto fail;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
			err_sys(err, "ingress: cannot listen on 0.0.0.0:%u", maps[i].host_port);
			close(fd);
			goto fail;
		}
		if (acceptor_start(l, &ls->acc, fd, ls->name, 0, on_accept, ls, err) < 0)
			goto fail;
		h->n = i + 1;
	}
	*out = h;
	return 0;
fail:
	host_ingress_stop(h);
	return -1;
}

void host_ingress_stop(struct host_ingress *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		acceptor_stop(&h->ls[i].acc);
	free(h->ls);
	free(h);
}
