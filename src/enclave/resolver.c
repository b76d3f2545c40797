/*
 * The resolver. Queries are parsed strictly (one question, no compression in it, host-name
 * characters only) and answered from the policy and the pool; nothing is forwarded, so a name
 * the policy refuses never leaves the enclave and DNS cannot carry data out. A TCP client holds
 * at most one query's bytes; an idle one is closed.
 */
#include "enclave/resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/accept.h"

enum { T_A = 1, T_PTR = 12, T_AAAA = 28, T_ANY = 255, C_IN = 1 };
enum { RC_OK = 0, RC_FORMERR = 1, RC_SERVFAIL = 2, RC_NXDOMAIN = 3, RC_NOTIMP = 4, RC_REFUSED = 5 };

#define TCP_MAX_CONNS 64
#define TCP_IDLE_MS 10000
#define TCP_MAX_QUERY 1024
#define UDP_BATCH 64

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static bool host_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The question's name as lower-case dotted text; its wire length in *wire. False when it is not
 * a well-formed host name (pointers, over-long labels, odd bytes), with *odd set for the last. */
static bool read_name(const uint8_t *q, size_t qlen, size_t at, char *name, size_t *wire, bool *odd)
{
	size_t o = 0, start = at;

	*odd = false;
	for (;;) {
		uint8_t len;

		if (at >= qlen)
			return false;
		len = q[at++];
		if (len == 0)
			break;
		if (len > 63 || at + len > qlen) /* a pointer (top bits set) or a label past the end */
			return false;
		if (o + len + 1 > 254)
			return false;
		if (o)
			name[o++] = '.';
		for (size_t i = 0; i < len; i++) {
			uint8_t c = q[at + i];

			if (!host_char(c))
				*odd = true;
			name[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		at += len;
	}
	name[o] = 0;
	*wire = at - start;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* "d.c.b.a.in-addr.arpa" → a.b.c.d in network order. */
static bool reverse_v4(const char *name, uint32_t *addr)
{
	unsigned v[4];
	char tail[16];
	int used = 0;

	if (sscanf(name, "%3u.%3u.%3u.%3u.%15s%n", &v[3], &v[2], &v[1], &v[0], tail, &used) != 5 ||
	    (size_t)used != strlen(name) || strcmp(tail, "in-addr.arpa"))
		return false;
	for (int i = 0; i < 4; i++)
		if (v[i] > 255)
			return false;
	*addr = htonl(v[0] << 24 | v[1] << 16 | v[2] << 8 | v[3]);
	return true;
}

/* One answer record for the question's name (a pointer to offset 12). */
static size_t put_record(uint8_t *out, size_t at, unsigned type, const void *data, size_t len)
{
	put16(out + at, 0xc00c);
	put16(out + at + 2, type);
	put16(out + at + 4, C_IN);
	out[at + 6] = 0;
	out[at + 7] = 0;
	put16(out + at + 8, DNS_TTL);
	put16(out + at + 10, (unsigned)len);
	memcpy(out + at + 12, data, len);
	put16(out + 6, 1); /* ancount */
	return at + 12 + len;
}

/* name in wire form; name is at most 253 characters, so this is at most 255 bytes. */
static size_t wire_name(const char *name, uint8_t *w)
{
	size_t o = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);

		w[o++] = (uint8_t)len;
		memcpy(w + o, name, len);
		o += len;
		name += len + (dot ? 1 : 0);
	}
	w[o++] = 0;
	return o;
}

size_t resolver_answer(const struct policy *policy, struct pool *pool, const uint8_t *q, size_t qlen, uint8_t *out,
		       struct dns_note *note)
{
	unsigned flags, opcode, qtype, qclass;
	size_t wire, end;
	bool odd;
	struct in_addr v4;

	memset(note, 0, sizeof(*note));
	if (qlen < 12)
		return 0;
	flags = get16(q + 2);
	if (flags & 0x8000) /* an answer: never answer one, or two resolvers could loop */
		return 0;
	opcode = (flags >> 11) & 0xf;
	memset(out, 0, 12);
	memcpy(out, q, 2);
	put16(out + 2, 0x8000 | opcode << 11 | (flags & 0x0100) | 0x0080);
	note->rcode = RC_FORMERR;
	if (opcode != 0) {
		note->rcode = RC_NOTIMP;
		goto header_only;
	}
	if (get16(q + 4) != 1 || !read_name(q, qlen, 12, note->name, &wire, &odd) || 12 + wire + 4 > qlen) {
		note->name[0] = 0;
		goto header_only;
	}
	end = 12 + wire + 4;
	qtype = get16(q + 12 + wire);
	qclass = get16(q + 12 + wire + 2);
	note->qtype = (uint16_t)qtype;
	memcpy(out + 12, q + 12, end - 12); /* the question as asked, its letters' case kept */
	put16(out + 4, 1);
	if (qclass != C_IN && qclass != T_ANY) {
		note->rcode = RC_REFUSED;
		note->why = "not an Internet-class query";
		goto done;
	}
	note->rcode = RC_NXDOMAIN;
	if (odd || !note->name[0]) {
		note->why = "not a host name";
		goto done;
	}
	if (!strcmp(note->name, "localhost") || ends_with(note->name, ".localhost")) {
		static const uint8_t lo6[16] = { [15] = 1 }, lo4[4] = { 127, 0, 0, 1 };

		note->rcode = RC_OK;
		if (qtype == T_A || qtype == T_ANY)
			end = put_record(out, end, T_A, lo4, 4);
		else if (qtype == T_AAAA)
			end = put_record(out, end, T_AAAA, lo6, 16);
		goto done;
	}
	if (ends_with(note->name, ".in-addr.arpa") || ends_with(note->name, ".ip6.arpa")) {
		uint32_t addr;
		const char *name;

		if (!reverse_v4(note->name, &addr) || !(name = pool_name_of(pool, addr))) {
			note->why = "not an address of the pool";
			goto done;
		}
		note->rcode = RC_OK;
		if (qtype == T_PTR || qtype == T_ANY) {
			uint8_t w[256];

			end = put_record(out, end, T_PTR, w, wire_name(name, w));
		}
		goto done;
	}
	/* A name that reads as an address would be judged by the IP rules: a name is never. */
	if (inet_pton(AF_INET, note->name, &v4) == 1) {
		note->why = "an address, not a name";
		goto done;
	}
	{
		struct policy_decision d;

		policy_check(policy, note->name, &d);
		if (!d.allowed) {
			note->why = d.rule ? "refused by a deny rule" : d.reason;
			goto done;
		}
	}
	note->rcode = RC_OK;
	if (qtype == T_A || qtype == T_ANY) {
		uint32_t addr;

		if (pool_addr_for(pool, note->name, &addr) < 0) {
			note->rcode = RC_SERVFAIL;
			note->why = "the synthetic address pool is full";
			goto done;
		}
		end = put_record(out, end, T_A, &addr, 4);
	}
	/* AAAA, HTTPS, SVCB and the rest: an empty answer, so that no real address reaches the app
	 * and clients fall back to the A record. */
done:
	out[3] = (uint8_t)((out[3] & 0xf0) | note->rcode);
	return end;
header_only:
	out[3] = (uint8_t)((out[3] & 0xf0) | note->rcode);
	return 12;
}

struct tcp_conn {
	struct resolver *r;
	struct acceptor *acc; /* the listener it came from, which counts it */
	struct tcp_conn *prev, *next;
	int fd;
	struct loop_io io;
	struct loop_timer idle;
	uint8_t buf[2 + TCP_MAX_QUERY];
	size_t got;
};

struct resolver {
	struct loop *loop;
	const struct policy *policy;
	struct pool *pool;
	int udp[2];
	struct loop_io udp_io[2];
	struct acceptor tcp[2];
	size_t n;
	struct tcp_conn *conns; /* open TCP clients, ended with the resolver */
};

static void note_log(const struct dns_note *n)
{
	static const char *const rcodes[] = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED" };

	if (n->why && n->name[0])
		log_info("dns: %s: %s (%s)", n->name, rcodes[n->rcode], n->why);
	else
		log_debug("dns: %s type %u: %s", n->name[0] ? n->name : "(unreadable query)", n->qtype,
			  rcodes[n->rcode]);
}

static void on_udp(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct resolver *r = io->data;

	for (int i = 0; i < UDP_BATCH; i++) {
		uint8_t q[TCP_MAX_QUERY], a[DNS_MAX_ANSWER];
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		struct dns_note note;
		ssize_t n = recvfrom(io->fd, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
		size_t alen;

		if (n < 0)
			return; /* EAGAIN, or an error the next datagram will show again */
		alen = resolver_answer(r->policy, r->pool, q, (size_t)n, a, &note);
		if (!alen)
			continue;
		note_log(&note);
		/* a client that went away is its own affair */
		sendto(io->fd, a, alen, MSG_DONTWAIT, (struct sockaddr *)&from, flen);
	}
}

static void tcp_free(void *p)
{
	free(p);
}

static void tcp_end(struct tcp_conn *c)
{
	struct loop *l = c->r->loop;

	loop_timer_stop(l, &c->idle);
	loop_io_del(l, &c->io);
	close(c->fd);
	acceptor_release(c->acc);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	loop_defer_free(l, c, tcp_free);
}

static void on_tcp_idle(struct loop *l, void *data)
{
	tcp_end(data);
}

static void on_tcp(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct tcp_conn *c = io->data;
	ssize_t n = recv(c->fd, c->buf + c->got, sizeof(c->buf) - c->got, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		tcp_end(c);
		return;
	}
	c->got += (size_t)n;
	loop_timer_start(l, &c->idle, TCP_IDLE_MS);
	while (c->got >= 2) {
		size_t len = get16(c->buf), alen;
		uint8_t a[2 + DNS_MAX_ANSWER];
		struct dns_note note;

		if (len > TCP_MAX_QUERY) {
			tcp_end(c);
			return;
		}
		if (c->got < 2 + len)
			return;
		alen = resolver_answer(c->r->policy, c->r->pool, c->buf + 2, len, a + 2, &note);
		if (alen) {
			note_log(&note);
			put16(a, (unsigned)alen);
			/* Small, and one at a time: a client that does not read its answers is closed. */
			if (send(c->fd, a, alen + 2, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)(alen + 2)) {
				tcp_end(c);
				return;
			}
		}
		memmove(c->buf, c->buf + 2 + len, c->got - 2 - len);
		c->got -= 2 + len;
	}
}

static void on_tcp_accept(struct acceptor *a, int fd)
{
	struct resolver *r = a->data;
	struct tcp_conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->r = r;
	c->acc = a;
	c->fd = fd;
	loop_timer_init(&c->idle, on_tcp_idle, c);
	if (loop_io_add(r->loop, &c->io, fd, EPOLLIN, on_tcp, c, NULL) < 0) {
		close(fd);
		free(c);
		acceptor_release(a);
		return;
	}
	c->next = r->conns;
	if (c->next)
		c->next->prev = c;
	r->conns = c;
	loop_timer_start(r->loop, &c->idle, TCP_IDLE_MS);
}

int resolver_start(struct loop *l, uint16_t port, const struct policy *policy, struct pool *pool, struct resolver **out,
		   struct err *err)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	r->loop = l;
	r->policy = policy;
	r->pool = pool;
	r->udp[0] = r->udp[1] = -1;
	for (int i = 0; i < 2; i++) {
		int af = i ? AF_INET6 : AF_INET, lfd;

		r->udp[i] = loopback_socket(af, SOCK_DGRAM, port, 0, "the resolver (UDP)", err);
		if (r->udp[i] < 0) {
			/* no IPv6 in this kernel: IPv4 only */
			if (i == 1 && (err->code == EAFNOSUPPORT || err->code == EADDRNOTAVAIL)) {
				err_clear(err);
				break;
			}
			goto fail;
		}
		if (loop_io_add(l, &r->udp_io[i], r->udp[i], EPOLLIN, on_udp, r, err) < 0)
			goto fail;
		r->n = (size_t)i + 1;
		lfd = loopback_socket(af, SOCK_STREAM, port, 128, "the resolver (TCP)", err);
		if (acceptor_start(l, &r->tcp[i], lfd, "dns over TCP", TCP_MAX_CONNS, on_tcp_accept, r, err) < 0)
			goto fail;
	}
	*out = r;
	return 0;
fail:
	resolver_stop(r);
	return -1;
}

void resolver_stop(struct resolver *r)
{
	if (!r)
		return;
	while (r->conns)
		tcp_end(r->conns);
	for (size_t i = 0; i < 2; i++) {
		if (r->udp[i] >= 0) {
			loop_io_del(r->loop, &r->udp_io[i]);
			close(r->udp[i]);
		}
		if (i < r->n && r->tcp[i].loop)
			acceptor_stop(&r->tcp[i]);
	}
	free(r);
}
