/*
 * The VM enclave's vsock device (see vsock_dev.h). Runs in the back-end process.
 *
 * Each connection joins a guest port to a Unix socket of the emulated transport. Guest to host:
 * RW payloads are written to the socket at once; what the socket does not take waits in a buffer
 * of VSOCK_DEV_BUF_ALLOC bytes, which is the credit the guest was given, so a guest that keeps to
 * its credit never finds it full and one that does not is reset. Host to guest: the socket is read
 * straight into the guest's receive buffers, no more than the guest's credit allows; a socket is
 * either armed for EPOLLIN or on the ready list, never both, so a guest that gives no buffers or
 * no credit stops the reading, not the loop.
 */
#include "vm/vsock_dev.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "net/vsock.h"

#define BUCKETS 1024
#define MAX_RSTS 256
#define HOST_PORT_FIRST 0x10000u /* ports the host side opens connections from: above 16 bits */

enum conn_state {
	C_REQUESTING, /* the host opened it: REQUEST sent or to send, awaiting RESPONSE */
	C_OPEN,
	C_CLOSING, /* the guest closed: flush what it sent, then RST */
};

enum {
	P_REQUEST = 1,
	P_RESPONSE = 2,
	P_CREDIT = 4,
	P_SHUTDOWN = 8, /* the host side ended: SHUTDOWN(SEND) */
	P_RST = 16,     /* then the connection goes */
};

struct conn {
	struct vsock_dev *dev;
	struct conn *hnext, *rnext;
	struct loop_io io;
	int fd;
	enum conn_state state;
	uint32_t guest_port, host_port, host_cid;
	unsigned pending;
	bool in_ready, want_data, credit_blocked;
	bool host_eof, guest_no_send, guest_no_rcv;
	/* guest to host */
	uint8_t *buf;
	uint32_t buf_off, buf_len;
	uint32_t fwd_cnt, fwd_told;
	/* host to guest */
	uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
};

struct listener {
	struct vsock_dev *dev;
	struct loop_io io;
	uint32_t port;
};

struct vsock_dev {
	struct loop *loop;
	uint64_t cid;
	struct virtq *rx, *tx;
	const struct guest_mem *mem;
	struct conn *table[BUCKETS];
	struct conn *ready_head, *ready_tail;
	size_t n_conns;
	struct vsock_hdr rsts[MAX_RSTS];
	size_t n_rsts;
	struct listener *listeners;
	size_t n_listeners;
	uint32_t next_host_port;
	bool rx_broken_said, tx_broken_said;
};

static uint64_t get_le(const uint8_t *b, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i-- > 0;)
		v = v << 8 | b[i];
	return v;
}

static void put_le(uint8_t *b, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++, v >>= 8)
		b[i] = (uint8_t)v;
}

void vsock_hdr_decode(const uint8_t b[VSOCK_DEV_HDR], struct vsock_hdr *h)
{
	h->src_cid = get_le(b, 8);
	h->dst_cid = get_le(b + 8, 8);
	h->src_port = (uint32_t)get_le(b + 16, 4);
	h->dst_port = (uint32_t)get_le(b + 20, 4);
	h->len = (uint32_t)get_le(b + 24, 4);
	h->type = (uint16_t)get_le(b + 28, 2);
	h->op = (uint16_t)get_le(b + 30, 2);
	h->flags = (uint32_t)get_le(b + 32, 4);
	h->buf_alloc = (uint32_t)get_le(b + 36, 4);
	h->fwd_cnt = (uint32_t)get_le(b + 40, 4);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t b[VSOCK_DEV_HDR])
{
	put_le(b, h->src_cid, 8);
	put_le(b + 8, h->dst_cid, 8);
	put_le(b + 16, h->src_port, 4);
	put_le(b + 20, h->dst_port, 4);
	put_le(b + 24, h->len, 4);
	put_le(b + 28, h->type, 2);
	put_le(b + 30, h->op, 2);
	put_le(b + 32, h->flags, 4);
	put_le(b + 36, h->buf_alloc, 4);
	put_le(b + 40, h->fwd_cnt, 4);
}

static size_t bucket(uint32_t guest_port, uint32_t host_port)
{
	return (guest_port * 2654435761u ^ host_port * 40503u) % BUCKETS;
}

static struct conn *find(struct vsock_dev *d, uint32_t guest_port, uint32_t host_port)
{
	for (struct conn *c = d->table[bucket(guest_port, host_port)]; c; c = c->hnext)
		if (c->guest_port == guest_port && c->host_port == host_port)
			return c;
	return NULL;
}

static uint32_t credit(const struct conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	/* a guest that reports more consumed than was sent has no credit to give */
	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void make_ready(struct conn *c)
{
	struct vsock_dev *d = c->dev;

	if (c->in_ready)
		return;
	c->in_ready = true;
	c->rnext = NULL;
	if (d->ready_tail)
		d->ready_tail->rnext = c;
	else
		d->ready_head = c;
	d->ready_tail = c;
}

static void unready_head(struct vsock_dev *d)
{
	struct conn *c = d->ready_head;

	d->ready_head = c->rnext;
	if (!d->ready_head)
		d->ready_tail = NULL;
	c->in_ready = false;
	c->rnext = NULL;
}

static void conn_arm(struct conn *c)
{
	uint32_t ev = 0;

	if (c->fd < 0)
		return;
	if (c->state == C_OPEN && !c->host_eof && !c->guest_no_rcv && !c->want_data && !c->credit_blocked)
		ev |= EPOLLIN;
	if (c->buf_len > c->buf_off)
		ev |= EPOLLOUT;
	loop_io_mod(c->dev->loop, &c->io, ev);
}

static void conn_free(struct conn *c)
{
	struct vsock_dev *d = c->dev;
	struct conn **pp = &d->table[bucket(c->guest_port, c->host_port)];

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	if (c->in_ready) {
		struct conn **rp = &d->ready_head, *prev = NULL;

		while (*rp && *rp != c) {
			prev = *rp;
			rp = &(*rp)->rnext;
		}
		*rp = c->rnext;
		if (d->ready_tail == c)
			d->ready_tail = prev;
	}
	if (c->fd >= 0) {
		loop_io_del(d->loop, &c->io);
		close(c->fd);
	}
	free(c->buf);
	d->n_conns--;
	loop_defer_free(d->loop, c, free);
}

/* An RST for a packet that names no connection, queued apart (bounded: a flood loses some). */
static void queue_rst(struct vsock_dev *d, const struct vsock_hdr *to)
{
	struct vsock_hdr *h;

	if (to->op == VSOCK_OP_RST || d->n_rsts == MAX_RSTS)
		return;
	h = &d->rsts[d->n_rsts++];
	*h = (struct vsock_hdr){ .src_cid = to->dst_cid, .dst_cid = to->src_cid, .src_port = to->dst_port,
				 .dst_port = to->src_port, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST };
}

/* Ends a connection now: RST to the guest, the socket closed. */
static void conn_reset(struct conn *c, const char *why)
{
	log_debug("vsock device: guest port %u, host port %u: reset (%s)", c->guest_port, c->host_port, why);
	if (c->fd >= 0) {
		loop_io_del(c->dev->loop, &c->io);
		close(c->fd);
		c->fd = -1;
	}
	c->pending = P_RST;
	make_ready(c);
}

static void on_conn_io(struct loop *l, struct loop_io *io, uint32_t events);

static struct conn *conn_new(struct vsock_dev *d, int fd, uint32_t guest_port, uint32_t host_port, uint32_t host_cid,
			     enum conn_state st)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct err err = { 0 };
	size_t b = bucket(guest_port, host_port);

	if (!c)
		abort();
	c->dev = d;
	c->fd = fd;
	c->state = st;
	c->guest_port = guest_port;
	c->host_port = host_port;
	c->host_cid = host_cid;
	if (loop_io_add(d->loop, &c->io, fd, 0, on_conn_io, c, &err) < 0) {
		log_warn("vsock device: %s", err.msg);
		close(fd);
		free(c);
		return NULL;
	}
	c->hnext = d->table[b];
	d->table[b] = c;
	d->n_conns++;
	return c;
}

static void fill_hdr(struct vsock_dev *d, struct conn *c, uint16_t op, uint32_t len, uint32_t flags, struct vsock_hdr *h)
{
	*h = (struct vsock_hdr){ .src_cid = c->host_cid, .dst_cid = d->cid, .src_port = c->host_port,
				 .dst_port = c->guest_port, .len = len, .type = VSOCK_TYPE_STREAM, .op = op,
				 .flags = flags, .buf_alloc = VSOCK_DEV_BUF_ALLOC, .fwd_cnt = c->fwd_cnt };
	c->fwd_told = c->fwd_cnt;
}

/* Reads the socket into the chain after the header: >0 bytes, 0 at EOF, -1 with errno. */
static ssize_t read_into(struct conn *c, const struct virtq_chain *ch, uint32_t max)
{
	struct iovec iov[VIRTQ_MAX_SEGS];
	int n = virtq_iovec(ch->wr, ch->n_wr, VSOCK_DEV_HDR, max, iov);

	if (!n)
		return 0;
	return readv(c->fd, iov, n);
}

enum { SENT_NOTHING, SENT, SENT_LAST };

/* What a connection sends next into one receive buffer. SENT_LAST: its RST, and it is gone. */
static int conn_send(struct vsock_dev *d, struct conn *c, const struct virtq_chain *ch, uint32_t *written)
{
	struct vsock_hdr h;
	uint8_t b[VSOCK_DEV_HDR];

	if (c->pending & P_RST) {
		fill_hdr(d, c, VSOCK_OP_RST, 0, 0, &h);
		c->pending = 0;
	} else if (c->pending & P_REQUEST) {
		fill_hdr(d, c, VSOCK_OP_REQUEST, 0, 0, &h);
		c->pending &= ~(unsigned)P_REQUEST;
	} else if (c->pending & P_RESPONSE) {
		fill_hdr(d, c, VSOCK_OP_RESPONSE, 0, 0, &h);
		c->pending &= ~(unsigned)P_RESPONSE;
	} else if (c->want_data) {
		uint32_t room = ch->wr_len > VSOCK_DEV_HDR ? (uint32_t)(ch->wr_len - VSOCK_DEV_HDR) : 0;
		uint32_t cr = credit(c), max = room < cr ? room : cr;
		ssize_t n;

		if (!max) {
			/* no credit: wait for the guest's update; no room: the buffer is useless */
			c->want_data = false;
			c->credit_blocked = cr == 0;
			conn_arm(c);
			return SENT_NOTHING;
		}
		n = read_into(c, ch, max);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			c->want_data = false;
			conn_arm(c);
			return SENT_NOTHING;
		}
		if (n < 0) {
			conn_reset(c, "reading the host side failed");
			return SENT_NOTHING;
		}
		if (n == 0) {
			c->want_data = false;
			c->host_eof = true;
			/* both ways done: the connection ends; else the guest hears that no more comes */
			if (c->guest_no_send && !c->buf_len)
				conn_reset(c, "both sides done");
			else
				c->pending |= P_SHUTDOWN;
			conn_arm(c);
			return SENT_NOTHING;
		}
		fill_hdr(d, c, VSOCK_OP_RW, (uint32_t)n, 0, &h);
		c->tx_cnt += (uint32_t)n;
		c->pending &= ~(unsigned)P_CREDIT; /* the header carries it */
		vsock_hdr_encode(&h, b);
		virtq_scatter(ch->wr, ch->n_wr, 0, b, sizeof(b));
		*written = VSOCK_DEV_HDR + (uint32_t)n;
		return SENT;
	} else if (c->pending & P_CREDIT) {
		fill_hdr(d, c, VSOCK_OP_CREDIT_UPDATE, 0, 0, &h);
		c->pending &= ~(unsigned)P_CREDIT;
	} else if (c->pending & P_SHUTDOWN) {
		fill_hdr(d, c, VSOCK_OP_SHUTDOWN, 0, VSOCK_SHUTDOWN_SEND, &h);
		c->pending &= ~(unsigned)P_SHUTDOWN;
	} else {
		return SENT_NOTHING;
	}
	vsock_hdr_encode(&h, b);
	virtq_scatter(ch->wr, ch->n_wr, 0, b, sizeof(b));
	*written = VSOCK_DEV_HDR;
	if (h.op == VSOCK_OP_RST) {
		conn_free(c);
		return SENT_LAST;
	}
	return SENT;
}

static bool conn_has_more(const struct conn *c)
{
	return c->pending || c->want_data;
}

/* Fills the guest's receive buffers with what is waiting. */
static void pump(struct vsock_dev *d)
{
	struct virtq_chain ch;
	bool pushed = false;

	if (!d->rx)
		return;
	while (d->n_rsts || d->ready_head) {
		uint32_t written = 0;

		int got = virtq_pop(d->rx, d->mem, &ch);

		/* out of buffers: the guest is asked to kick when it gives more; while there are
		 * buffers, it need not (they are taken whenever something is waiting) */
		if (got == 0 && virtq_kicks_on(d->rx))
			got = virtq_pop(d->rx, d->mem, &ch);
		if (got <= 0)
			break;
		virtq_kicks_off(d->rx);
		if (ch.wr_len < VSOCK_DEV_HDR) {
			/* a buffer too small for a header: returned empty */
			virtq_push(d->rx, ch.head, 0);
			pushed = true;
			continue;
		}
		if (d->n_rsts) {
			uint8_t b[VSOCK_DEV_HDR];

			vsock_hdr_encode(&d->rsts[--d->n_rsts], b);
			virtq_scatter(ch.wr, ch.n_wr, 0, b, sizeof(b));
			written = VSOCK_DEV_HDR;
		}
		/* round robin: one packet from each connection in turn */
		while (!written && d->ready_head) {
			struct conn *c = d->ready_head;
			int r;

			unready_head(d);
			r = conn_send(d, c, &ch, &written);
			/* nothing sent can still leave something to send (EOF leaves a SHUTDOWN) */
			if (r != SENT_LAST && conn_has_more(c))
				make_ready(c);
		}
		if (!written) {
			virtq_unpop(d->rx);
			break;
		}
		virtq_push(d->rx, ch.head, written);
		pushed = true;
	}
	if (pushed)
		virtq_notify(d->rx);
	if (d->rx->broken && !d->rx_broken_said) {
		log_warn("vsock device: the guest broke its receive queue; no more packets go to it");
		d->rx_broken_said = true;
	}
}

/* Writes what is buffered: false when the socket failed (the connection was reset). */
static bool flush(struct conn *c)
{
	while (c->buf_off < c->buf_len) {
		ssize_t n = write(c->fd, c->buf + c->buf_off, c->buf_len - c->buf_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_reset(c, "writing to the host side failed");
			return false;
		}
		c->buf_off += (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (c->buf_off == c->buf_len)
		c->buf_off = c->buf_len = 0;
	if (c->fwd_cnt - c->fwd_told >= VSOCK_DEV_BUF_ALLOC / 4) {
		c->pending |= P_CREDIT;
		make_ready(c);
	}
	return true;
}

/* What is left to do once the guest's data has all been written. */
static void after_flush(struct conn *c)
{
	if (c->buf_len)
		return;
	if (c->state == C_CLOSING || (c->guest_no_send && c->host_eof)) {
		conn_reset(c, "closed");
		return;
	}
	if (c->guest_no_send)
		shutdown(c->fd, SHUT_WR);
}

static void on_conn_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct conn *c = io->data;

	if (events & EPOLLOUT) {
		if (!flush(c)) {
			pump(c->dev);
			return;
		}
		after_flush(c);
	}
	if (c->fd >= 0 && events & (EPOLLIN | EPOLLHUP | EPOLLERR) && c->state == C_OPEN && !c->host_eof &&
	    !c->guest_no_rcv) {
		c->want_data = true;
		make_ready(c);
	}
	if (c->fd >= 0)
		conn_arm(c);
	pump(c->dev);
}

/* The guest's payload, to the socket; false when the connection was reset. */
static bool take_payload(struct conn *c, const struct virtq_chain *ch, uint32_t len)
{
	struct iovec iov[VIRTQ_MAX_SEGS];
	size_t done = 0;
	ssize_t w = 0;

	if (c->buf_len == 0) {
		int n = virtq_iovec(ch->rd, ch->n_rd, VSOCK_DEV_HDR, len, iov);

		do
			w = writev(c->fd, iov, n);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN) {
			conn_reset(c, "writing to the host side failed");
			return false;
		}
		done = w > 0 ? (size_t)w : 0;
		c->fwd_cnt += (uint32_t)done;
	}
	if (done < len) {
		uint32_t rest = len - (uint32_t)done;

		/* Within its credit the guest cannot have more in flight than the buffer holds (what
		 * is in it from buf_off on; the bytes before are written and counted already). */
		if (c->buf_len - c->buf_off + rest > VSOCK_DEV_BUF_ALLOC) {
			log_warn("vsock device: guest port %u sent past its credit: connection reset", c->guest_port);
			conn_reset(c, "past its credit");
			return false;
		}
		if (!c->buf) {
			c->buf = malloc(VSOCK_DEV_BUF_ALLOC);
			if (!c->buf)
				abort();
		}
		if (c->buf_off) {
			memmove(c->buf, c->buf + c->buf_off, c->buf_len - c->buf_off);
			c->buf_len -= c->buf_off;
			c->buf_off = 0;
		}
		virtq_gather(ch->rd, ch->n_rd, VSOCK_DEV_HDR + done, c->buf + c->buf_len, rest);
		c->buf_len += rest;
	}
	if (c->fwd_cnt - c->fwd_told >= VSOCK_DEV_BUF_ALLOC / 4) {
		c->pending |= P_CREDIT;
		make_ready(c);
	}
	conn_arm(c);
	return true;
}

static void guest_request(struct vsock_dev *d, const struct vsock_hdr *h)
{
	struct err err = { 0 };
	struct conn *c;
	bool pending = false;
	int fd;

	if (d->n_conns >= VSOCK_DEV_MAX_CONNS) {
		queue_rst(d, h);
		return;
	}
	/* the parent's port P is the emulated transport's; the guest reaches nothing else */
	fd = vsock_connect(VSOCK_CID_PARENT, h->dst_port, &pending, &err);
	if (fd < 0) {
		queue_rst(d, h);
		return;
	}
	c = conn_new(d, fd, h->src_port, h->dst_port, (uint32_t)h->dst_cid, C_OPEN);
	if (!c) {
		queue_rst(d, h);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->pending |= P_RESPONSE;
	make_ready(c);
	conn_arm(c);
}

static void guest_packet(struct vsock_dev *d, const struct virtq_chain *ch)
{
	uint8_t b[VSOCK_DEV_HDR];
	struct vsock_hdr h;
	struct conn *c;

	if (virtq_gather(ch->rd, ch->n_rd, 0, b, sizeof(b)) < sizeof(b))
		return;
	vsock_hdr_decode(b, &h);
	/* A packet must come from the guest's own CID and carry what its header says. */
	if (h.src_cid != d->cid || h.len > ch->rd_len - VSOCK_DEV_HDR)
		return;
	if (h.type != VSOCK_TYPE_STREAM || (h.dst_cid != VSOCK_CID_PARENT && h.dst_cid != VSOCK_CID_HOST)) {
		queue_rst(d, &h);
		return;
	}
	c = find(d, h.src_port, h.dst_port);
	if (!c) {
		if (h.op == VSOCK_OP_REQUEST)
			guest_request(d, &h);
		else
			queue_rst(d, &h);
		return;
	}
	if (c->pending & P_RST) /* already ending */
		return;
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	if (c->credit_blocked && credit(c)) {
		c->credit_blocked = false;
		conn_arm(c);
	}
	switch (h.op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != C_REQUESTING) {
			conn_reset(c, "RESPONSE out of turn");
			break;
		}
		c->state = C_OPEN;
		conn_arm(c);
		break;
	case VSOCK_OP_RW:
		if (c->state != C_OPEN || c->guest_no_send) {
			conn_reset(c, "RW out of turn");
			break;
		}
		if (h.len && take_payload(c, ch, h.len))
			after_flush(c);
		break;
	case VSOCK_OP_SHUTDOWN:
		log_debug("vsock device: guest port %u, host port %u: the guest shut down (%u)", c->guest_port, c->host_port,
			  h.flags);
		if (h.flags & VSOCK_SHUTDOWN_RCV)
			c->guest_no_rcv = true;
		if (h.flags & VSOCK_SHUTDOWN_SEND)
			c->guest_no_send = true;
		if (c->guest_no_rcv && c->guest_no_send) {
			/* the guest closed: what it sent is written out, then the RST it waits for */
			c->state = C_CLOSING;
			c->want_data = false;
		}
		if (c->fd >= 0) {
			after_flush(c);
			if (c->fd >= 0)
				conn_arm(c);
		}
		break;
	case VSOCK_OP_RST:
		log_debug("vsock device: guest port %u, host port %u: the guest reset it (sent %u, it had taken %u of %u; "
			  "we took %u)", c->guest_port, c->host_port, c->tx_cnt, h.fwd_cnt, h.buf_alloc, c->fwd_cnt);
		c->pending = 0;
		conn_free(c);
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pending |= P_CREDIT;
		make_ready(c);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	default: /* a second REQUEST, an unknown op */
		conn_reset(c, "unexpected op");
		break;
	}
}

void vsock_dev_tx_kick(struct vsock_dev *d)
{
	struct virtq_chain ch;
	bool pushed = false;
	int r;

	if (!d->tx)
		return;
	do {
		/* no kicks while the ring is being emptied; asked for again once it is empty */
		virtq_kicks_off(d->tx);
		while ((r = virtq_pop(d->tx, d->mem, &ch)) == 1) {
			guest_packet(d, &ch);
			virtq_push(d->tx, ch.head, 0);
			pushed = true;
		}
	} while (r == 0 && virtq_kicks_on(d->tx));
	if (r < 0 && !d->tx_broken_said) {
		log_warn("vsock device: the guest broke its transmit queue; no more packets are taken from it");
		d->tx_broken_said = true;
	}
	if (pushed)
		virtq_notify(d->tx);
	pump(d);
}

void vsock_dev_rx_kick(struct vsock_dev *d)
{
	pump(d);
}

static void on_accept(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct listener *ls = io->data;
	struct vsock_dev *d = ls->dev;

	for (;;) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;
		uint32_t port;

		if (fd < 0)
			break;
		/* No guest to take it, or too many: refused, as a closed vsock port would be. */
		if (!d->rx || d->n_conns >= VSOCK_DEV_MAX_CONNS) {
			close(fd);
			continue;
		}
		do {
			port = d->next_host_port++;
			if (d->next_host_port < HOST_PORT_FIRST)
				d->next_host_port = HOST_PORT_FIRST;
		} while (find(d, ls->port, port));
		c = conn_new(d, fd, ls->port, port, VSOCK_CID_PARENT, C_REQUESTING);
		if (!c)
			continue;
		c->pending |= P_REQUEST;
		make_ready(c);
	}
	pump(d);
}

int vsock_dev_new(struct loop *l, uint64_t guest_cid, const uint32_t *ports, size_t n_ports, struct vsock_dev **out,
		  struct err *err)
{
	struct vsock_dev *d = calloc(1, sizeof(*d));

	if (!d || !(d->listeners = calloc(n_ports ? n_ports : 1, sizeof(*d->listeners))))
		abort();
	d->loop = l;
	d->cid = guest_cid;
	d->next_host_port = HOST_PORT_FIRST;
	for (size_t i = 0; i < n_ports; i++) {
		struct listener *ls = &d->listeners[i];
		int fd = vsock_emulated_listen_as((uint32_t)guest_cid, ports[i], 64, err);

		ls->dev = d;
		ls->port = ports[i];
		if (fd < 0 || loop_io_add(l, &ls->io, fd, EPOLLIN, on_accept, ls, err) < 0) {
			if (fd >= 0)
				close(fd);
			vsock_dev_free(d);
			return -1;
		}
		d->n_listeners++;
	}
	*out = d;
	return 0;
}

void vsock_dev_attach(struct vsock_dev *d, struct virtq *rx, struct virtq *tx, const struct guest_mem *m)
{
	d->rx = rx;
	d->tx = tx;
	d->mem = m;
}

void vsock_dev_detach(struct vsock_dev *d)
{
	for (size_t b = 0; b < BUCKETS; b++)
		while (d->table[b]) {
			d->table[b]->pending = 0;
			conn_free(d->table[b]);
		}
	d->n_rsts = 0;
	d->rx = d->tx = NULL;
	d->mem = NULL;
}

size_t vsock_dev_conns(const struct vsock_dev *d)
{
	return d->n_conns;
}

void vsock_dev_free(struct vsock_dev *d)
{
	if (!d)
		return;
	vsock_dev_detach(d);
	for (size_t i = 0; i < d->n_listeners; i++) {
		int fd = d->listeners[i].io.fd;

		loop_io_del(d->loop, &d->listeners[i].io);
		close(fd);
	}
	free(d->listeners);
	free(d);
}
