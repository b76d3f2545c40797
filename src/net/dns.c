/* c-ares glue: its sockets are watched by our loop, its timeouts by one timer. */
#include "net/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ares.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SOCKS 16

struct dns_sock {
	struct dns *d;
	struct loop_io io;
	int fd;
};

struct dns {
	struct loop *loop;
	ares_channel channel;
	struct dns_sock socks[MAX_SOCKS];
	struct loop_timer timer;
};

struct query {
	struct dns *d;
	dns_fn fn;
	void *data;
};

static void arm_timer(struct dns *d)
{
	struct timeval tv, *t = ares_timeout(d->channel, NULL, &tv);

	if (t)
		loop_timer_start(d->loop, &d->timer, (uint64_t)t->tv_sec * 1000 + (uint64_t)t->tv_usec / 1000 + 1);
	else
		loop_timer_stop(d->loop, &d->timer);
}

static void on_sock(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct dns_sock *s = io->data;
	struct dns *d = s->d;
	int fd = s->fd;

	ares_process_fd(d->channel, (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
			(events & EPOLLOUT) ? fd : ARES_SOCKET_BAD);
	arm_timer(d);
}

static void on_timer(struct loop *l, void *data)
{
	struct dns *d = data;

	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timer(d);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock *s = NULL, *free_slot = NULL;
	uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);

	for (int i = 0; i < MAX_SOCKS; i++) {
		if (d->socks[i].fd == fd && d->socks[i].io.registered)
			s = &d->socks[i];
		if (!d->socks[i].io.registered && !free_slot)
			free_slot = &d->socks[i];
	}
	if (!ev) {
		if (s) {
			loop_io_del(d->loop, &s->io);
			s->fd = -1;
		}
		return;
	}
	if (s) {
		loop_io_mod(d->loop, &s->io, ev);
	} else if (free_slot) {
		free_slot->d = d;
		free_slot->fd = fd;
		loop_io_add(d->loop, &free_slot->io, fd, ev, on_sock, free_slot, NULL);
	}
}

int dns_new(struct loop *l, struct dns **out, struct err *err)
{
	struct dns *d = calloc(1, sizeof(*d));
	struct ares_options o = { 0 };
	int rc;

	if (!d)
		abort();
	d->loop = l;
	for (int i = 0; i < MAX_SOCKS; i++)
		d->socks[i].fd = -1;
	loop_timer_init(&d->timer, on_timer, d);
	ares_library_init(ARES_LIB_INIT_ALL);
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = d;
	o.timeout = 3000;
	o.tries = 2;
	rc = ares_init_options(&d->channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS) {
		free(d);
		return err_set(err, EIO, "DNS resolver: %s", ares_strerror(rc));
	}
	*out = d;
	return 0;
}

void dns_free(struct dns *d)
{
	if (!d)
		return;
	ares_destroy(d->channel); /* runs pending callbacks with ARES_EDESTRUCTION */
	for (int i = 0; i < MAX_SOCKS; i++)
		loop_io_del(d->loop, &d->socks[i].io);
	loop_timer_stop(d->loop, &d->timer);
	free(d);
}

static void on_result(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct query *q = arg;
	struct dns_result res = { 0 };

	if (status != ARES_SUCCESS) {
		res.status = status == ARES_ENOTFOUND || status == ARES_ENODATA ? ENOENT : EIO;
		res.error = ares_strerror(status);
	} else {
		for (struct ares_addrinfo_node *n = ai->nodes; n && res.n < DNS_MAX_ADDRS; n = n->ai_next) {
			if (n->ai_addrlen > sizeof(res.addrs[0]))
				continue;
			memcpy(&res.addrs[res.n], n->ai_addr, n->ai_addrlen);
			res.lens[res.n++] = n->ai_addrlen;
		}
		if (!res.n) {
			res.status = ENOENT;
			res.error = "no addresses";
		}
	}
	if (ai)
		ares_freeaddrinfo(ai);
	q->fn(q->data, &res);
	free(q);
}

void dns_resolve(struct dns *d, const char *host, uint16_t port, dns_fn fn, void *data)
{
	struct query *q = malloc(sizeof(*q));
	struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					     .ai_flags = ARES_AI_NUMERICSERV };
	char service[8];

	if (!q)
		abort();
	/* An address is not a name: c-ares (1.18) would send it to the DNS servers as one, and a
	 * slow server would hold the connection for seconds. It is answered here. */
	{
		struct dns_result res = { 0 };
		struct sockaddr_in *v4 = (struct sockaddr_in *)&res.addrs[0];
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&res.addrs[0];

		if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET;
			v4->sin_port = htons(port);
			res.lens[0] = sizeof(*v4);
		} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
			v6->sin6_port = htons(port);
			res.lens[0] = sizeof(*v6);
		}
		if (res.lens[0]) {
			res.n = 1;
			free(q);
			fn(data, &res);
			return;
		}
	}
	*q = (struct query){ d, fn, data };
	snprintf(service, sizeof(service), "%u", port);
	ares_getaddrinfo(d->channel, host, service, &hints, on_result, q);
	arm_timer(d);
}
