/* Ingress listeners. Runs in enclaver-run; clients are anyone who can reach the port. */
#include "host/ingress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
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

/* Port numbers as -p writes them: 1 to 65535, digits only. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
	unsigned v = 0;

	if (!len || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (!v || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int host_publish_parse(const char *spec, struct host_port_map *out, struct err *err)
{
	char buf[HOST_PUBLISH_MAX + 1], addr[64] = "";
	char *rest, *host = NULL, *cont, *proto;
	size_t len = strlen(spec);

	memset(out, 0, sizeof(*out));
	out->family = AF_INET;
	if (len > HOST_PUBLISH_MAX)
		goto bad;
	memcpy(buf, spec, len + 1);
	rest = buf;
	proto = strchr(rest, '/');
	if (proto) {
		*proto++ = 0;
		if (strcmp(proto, "tcp"))
			return err_set(err, EINVAL,
				       "-p %s: ingress is TCP only; drop the /%s (see 'enclaver run --help')", spec, proto);
	}
	if (rest[0] == '[') { /* [IPv6]:HOST:CONTAINER or [IPv6]::CONTAINER */
		char *close = strchr(rest, ']');

		if (!close || close[1] != ':' || (size_t)(close - rest - 1) >= sizeof(addr))
			goto bad;
		memcpy(addr, rest + 1, (size_t)(close - rest - 1));
		addr[close - rest - 1] = 0;
		out->family = AF_INET6;
		rest = close + 2;
		host = rest;
	} else {
		char *last = strrchr(rest, ':'), *first = strchr(rest, ':');

		if (first && first != last) { /* ADDR:HOST:CONTAINER */
			if ((size_t)(first - rest) >= sizeof(addr))
				goto bad;
			memcpy(addr, rest, (size_t)(first - rest));
			addr[first - rest] = 0;
			host = first + 1;
		} else if (first) {
			host = rest;
		}
	}
	if (host) {
		cont = strrchr(host, ':');
		if (!cont)
			goto bad;
		*cont++ = 0;
		if (*host && parse_port(host, strlen(host), &out->host_port) < 0)
			goto bad;
	} else {
		cont = rest;
	}
	if (parse_port(cont, strlen(cont), &out->enclave_port) < 0)
		goto bad;
	if (addr[0] && inet_pton(out->family, addr, out->addr) != 1)
		return err_set(err, EINVAL, "-p %s: \"%s\" is not an IP%s address", spec, addr,
			       out->family == AF_INET6 ? "v6" : "v4");
	return 0;
bad:
	return err_set(err, EINVAL,
		       "port forward specification '%s' does not match the format 'host_port:container_port' "
		       "(or [ip:][host_port:]container_port[/tcp])",
		       spec);
}

int host_publish_merge(const struct host_port_map *given, size_t n_given, const uint16_t *ports, size_t n_ports,
		       struct host_port_map *out, size_t cap, size_t *n_out, struct err *err)
{
	size_t n = 0;

	for (size_t i = 0; i < n_given; i++) {
		bool listed = false;

		for (size_t k = 0; k < n_ports; k++)
			listed |= ports[k] == given[i].enclave_port;
		if (!listed) {
			char list[256] = "";
			size_t used = 0;

			for (size_t k = 0; k < n_ports && used < sizeof(list) - 8; k++)
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u", k ? ", " : "", ports[k]);
			return err_set(err, EINVAL,
				       "-p: the manifest publishes no port %u (its ingress: %s): add it to ingress in the "
				       "manifest and build again, or publish one of those",
				       given[i].enclave_port, n_ports ? list : "none");
		}
	}
	for (size_t k = 0; k < n_ports; k++) {
		bool mapped = false;

		for (size_t i = 0; i < n_given; i++) {
			if (given[i].enclave_port != ports[k])
				continue;
			mapped = true;
			if (n == cap)
				return err_set(err, E2BIG, "-p: at most %zu ports can be published", cap);
			out[n++] = given[i];
		}
		if (mapped)
			continue;
		if (n == cap)
			return err_set(err, E2BIG, "-p: at most %zu ports can be published", cap);
		out[n++] = (struct host_port_map){ .host_port = ports[k], .enclave_port = ports[k], .family = AF_INET };
	}
	*n_out = n;
	return 0;
}

void host_publish_format(const struct host_port_map *m, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(m->family, m->addr, a, sizeof(a));
	snprintf(buf, size, m->family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, m->host_port);
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
		struct sockaddr_storage ss = { 0 };
		socklen_t sl;
		char where[80];
		int one = 1, fd;

		if (maps[i].family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(maps[i].host_port);
			memcpy(&s6->sin6_addr, maps[i].addr, 16);
			sl = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			s4->sin_port = htons(maps[i].host_port);
			memcpy(&s4->sin_addr, maps[i].addr, 4);
			sl = sizeof(*s4);
		}
		ls->h = h;
		ls->map = maps[i];
		host_publish_format(&maps[i], where, sizeof(where));
		fd = socket(maps[i].family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err_sys(err, "ingress: socket");
			goto fail;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (maps[i].family == AF_INET6) /* [::] is IPv6 only, as Docker publishes it */
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
			err_sys(err, "ingress: cannot listen on %s", where);
			close(fd);
			goto fail;
		}
		if (!ls->map.host_port && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			ls->map.host_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
									  : ((struct sockaddr_in *)&ss)->sin_port);
			host_publish_format(&ls->map, where, sizeof(where));
		}
		snprintf(ls->name, sizeof(ls->name), "ingress: port %u", ls->map.host_port);
		log_info("ingress: the enclave's port %u is published on %s", ls->map.enclave_port, where);
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
