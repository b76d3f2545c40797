/* Accept loops with a connection cap and back-off when descriptors run out (net/accept.h). */
#include "net/accept.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

#define ACCEPT_BATCH 64 /* per wake-up, so that one busy listener cannot starve the rest */

static void pause_listener(struct acceptor *a, int e)
{
	if (!a->said_starved)
		log_warn("%s: cannot accept connections (%s): pausing for %d ms or until one closes", a->name,
			 strerror(e), ACCEPT_BACKOFF_MS);
	a->said_starved = true;
	a->paused = true;
	loop_io_mod(a->loop, &a->io, 0);
	loop_timer_start(a->loop, &a->retry, ACCEPT_BACKOFF_MS);
}

static void resume_listener(struct acceptor *a)
{
	if (!a->paused)
		return;
	a->paused = false;
	loop_timer_stop(a->loop, &a->retry);
	loop_io_mod(a->loop, &a->io, EPOLLIN);
}

static void on_retry(struct loop *l, void *data)
{
	(void)l;
	resume_listener(data);
}

static void on_listener(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct acceptor *a = io->data;

	(void)l;
	(void)events;
	for (int i = 0; i < ACCEPT_BATCH && !a->paused && a->io.registered; i++) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				pause_listener(a, errno);
			/* EAGAIN: drained; ECONNABORTED, EINTR, EPROTO...: that peer only */
			if (errno == EAGAIN || a->paused)
				return;
			continue;
		}
		a->said_starved = false;
		if (a->max && a->live >= a->max) {
			/* Safe to drop: this peer is over the cap every other one is held to. */
			close(fd);
			a->refused++;
			if (!a->said_full)
				log_warn("%s: %zu connections open, the limit: refusing new ones until some close",
					 a->name, a->live);
			a->said_full = true;
			continue;
		}
		if (a->max)
			a->live++;
		/* Everything accepted here is relayed or answered as it comes (proxies, ingress, the
		 * small servers): Nagle would only hold a reply's tail back for the peer's ACK. */
		if (a->tcp)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		a->fn(a, fd);
	}
}

int acceptor_start(struct loop *l, struct acceptor *a, int lfd, const char *name, size_t max, acceptor_fn fn,
		   void *data, struct err *err)
{
	int domain = 0, type = 0;
	socklen_t dl = sizeof(domain), tl = sizeof(type);

	*a = (struct acceptor){ .name = name, .fn = fn, .data = data, .max = max };
	loop_timer_init(&a->retry, on_retry, a);
	if (lfd < 0)
		return -1;
	a->tcp = getsockopt(lfd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 && (domain == AF_INET || domain == AF_INET6) &&
		 getsockopt(lfd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
	if (loop_io_add(l, &a->io, lfd, EPOLLIN, on_listener, a, err) < 0) {
		close(lfd);
		return -1;
	}
	a->loop = l;
	return 0;
}

void acceptor_stop(struct acceptor *a)
{
	if (!a->loop)
		return;
	loop_timer_stop(a->loop, &a->retry);
	if (a->io.registered) {
		int fd = a->io.fd;

		loop_io_del(a->loop, &a->io);
		close(fd);
	}
	a->loop = NULL;
}

void acceptor_release(struct acceptor *a)
{
	if (a->live)
		a->live--;
	if (a->said_full && a->live < a->max) {
		log_info("%s: below the limit of %zu connections again (%lu refused)", a->name, a->max, a->refused);
		a->said_full = false;
		a->refused = 0;
	}
	/* a descriptor has just been freed: try again now rather than after the back-off */
	if (a->loop)
		resume_listener(a);
}

int loopback_socket(int af, int type, uint16_t port, int backlog, const char *what, struct err *err)
{
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return err_sys(err, "%s: socket", what);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (af == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if ((af == AF_INET ? bind(fd, (struct sockaddr *)&s4, sizeof(s4)) : bind(fd, (struct sockaddr *)&s6, sizeof(s6))) < 0 ||
	    (type == SOCK_STREAM && listen(fd, backlog) < 0)) {
		err_sys(err, "%s on %s:%u", what, af == AF_INET ? "127.0.0.1" : "[::1]", port);
		close(fd);
		return -1;
	}
	return fd;
}
