/*
 * The VM enclave's vsock back-end, driven as QEMU and a guest driver drive it: vhost-user
 * messages (with their descriptors) over a socket, and the rings in guest memory that a memfd
 * shares, written here as the guest's virtio driver writes them. The host side is the emulated
 * vsock folder. Then the same with a guest that breaks the rules.
 */
#include "harness.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "net/loop.h"
#include "net/vsock.h"
#include "vm/vhost_user.h"

#define MEM_SIZE (8u << 20)
#define UADDR 0x7f1200000000ull /* where the front-end has guest memory: only a number here */
#define CID 16
#define QN 64

struct gq {
	uint64_t desc, avail, used; /* guest-physical */
	uint16_t num, avail_idx, used_seen, next_desc;
	int kick, call;
};

struct rig {
	char dir[64];
	struct loop *l;
	struct vsock_dev *dev;
	struct vhost_user *vu;
	int sock; /* QEMU's end */
	int memfd;
	uint8_t *mem; /* the guest's view */
	struct gq q[2];
	uint64_t next_buf; /* bump allocator for packet buffers */
	bool ended;
};

static void on_end(void *data)
{
	((struct rig *)data)->ended = true;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void run(struct rig *r, int rounds)
{
	struct err err = { 0 };

	for (int i = 0; i < rounds; i++)
		loop_run_once(r->l, 5, &err);
}

/* One vhost-user message from the front-end; the reply's payload, if any, into reply. */
static size_t msg(struct rig *r, uint32_t req, const void *payload, uint32_t size, const int *fds, size_t n_fds,
		  uint8_t *reply)
{
	uint8_t b[VHOST_USER_HDR + VHOST_USER_MAX_PAYLOAD];
	char cbuf[CMSG_SPACE(sizeof(int) * 8)] = { 0 };
	struct iovec iov = { b, VHOST_USER_HDR + size };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	uint32_t flags = 1;
	ssize_t n;

	put32(b, req);
	put32(b + 4, flags);
	put32(b + 8, size);
	if (size)
		memcpy(b + VHOST_USER_HDR, payload, size);
	if (n_fds) {
		struct cmsghdr *c;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}
	if (sendmsg(r->sock, &mh, 0) != (ssize_t)(VHOST_USER_HDR + size))
		abort();
	run(r, 1);
	if (!reply)
		return 0;
	n = recv(r->sock, b, sizeof(b), MSG_DONTWAIT);
	if (n < VHOST_USER_HDR)
		return 0;
	memcpy(reply, b + VHOST_USER_HDR, (size_t)n - VHOST_USER_HDR);
	return (size_t)n - VHOST_USER_HDR;
}

static uint64_t msg_u64(struct rig *r, uint32_t req)
{
	uint8_t reply[64];
	uint64_t v = 0;

	CHECK_EQ_INT(msg(r, req, NULL, 0, NULL, 0, reply), 8);
	memcpy(&v, reply, 8);
	return v;
}

static void msg_ring(struct rig *r, uint32_t req, uint32_t ring, uint32_t num)
{
	uint8_t p[8];

	put32(p, ring);
	put32(p + 4, num);
	msg(r, req, p, 8, NULL, 0, NULL);
}

static void msg_fd(struct rig *r, uint32_t req, uint32_t ring, int fd)
{
	uint8_t p[8];

	put64(p, ring);
	msg(r, req, p, 8, &fd, 1, NULL);
}

/* QEMU's start and the guest driver's set-up, in QEMU 7.2's order (spec/vm-enclave.md §5). */
static void rig_up(struct rig *r, const uint32_t *ports, size_t n_ports)
{
	struct err err = { 0 };
	int sv[2];
	uint8_t p[64];

	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/vhost-XXXXXX");
	if (!mkdtemp(r->dir) || loop_new(&r->l, &err) < 0 || vsock_use_emulated(r->dir, VSOCK_CID_PARENT, &err) < 0)
		abort();
	CHECK_EQ_INT(vsock_dev_new(r->l, CID, ports, n_ports, &r->dev, &err), 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	r->sock = sv[0];
	CHECK_EQ_INT(vhost_user_new(r->l, sv[1], CID, r->dev, on_end, r, &r->vu, &err), 0);
	r->memfd = memfd_create("guest", MFD_CLOEXEC);
	if (ftruncate(r->memfd, MEM_SIZE) < 0)
		abort();
	r->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	r->next_buf = 1u << 20;

	CHECK_EQ_INT(msg_u64(r, VHOST_USER_GET_FEATURES), VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES);
	CHECK(msg_u64(r, VHOST_USER_GET_PROTOCOL_FEATURES) & VHOST_USER_PROTOCOL_F_CONFIG);
	put64(p, VHOST_USER_PROTOCOL_F_CONFIG);
	msg(r, VHOST_USER_SET_PROTOCOL_FEATURES, p, 8, NULL, 0, NULL);
	msg(r, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0, NULL);
	/* QEMU reads the guest CID from the device's configuration */
	memset(p, 0, sizeof(p));
	put32(p + 4, 8);
	{
		uint8_t reply[64];
		uint64_t cid;

		CHECK_EQ_INT(msg(r, VHOST_USER_GET_CONFIG, p, 20, NULL, 0, reply), 20);
		memcpy(&cid, reply + 12, 8);
		CHECK_EQ_INT(cid, CID);
	}
	put64(p, VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES);
	msg(r, VHOST_USER_SET_FEATURES, p, 8, NULL, 0, NULL);
	/* one region: gpa 0, the whole memfd */
	memset(p, 0, sizeof(p));
	put32(p, 1);
	put64(p + 8, 0);
	put64(p + 16, MEM_SIZE);
	put64(p + 24, UADDR);
	put64(p + 32, 0);
	msg(r, VHOST_USER_SET_MEM_TABLE, p, 40, &r->memfd, 1, NULL);
	for (uint32_t i = 0; i < 2; i++) {
		struct gq *q = &r->q[i];
		uint8_t a[40] = { 0 };

		q->num = QN;
		q->desc = 0x10000 + 0x10000 * i;
		q->avail = q->desc + 16 * QN;
		q->used = q->avail + 0x1000;
		q->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		q->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		msg_ring(r, VHOST_USER_SET_VRING_NUM, i, QN);
		msg_ring(r, VHOST_USER_SET_VRING_BASE, i, 0);
		put32(a, i);
		put64(a + 8, UADDR + q->desc);
		put64(a + 16, UADDR + q->used);
		put64(a + 24, UADDR + q->avail);
		msg(r, VHOST_USER_SET_VRING_ADDR, a, 40, NULL, 0, NULL);
		msg_fd(r, VHOST_USER_SET_VRING_KICK, i, q->kick);
		msg_fd(r, VHOST_USER_SET_VRING_CALL, i, q->call);
	}
	msg_ring(r, VHOST_USER_SET_VRING_ENABLE, 0, 1);
	msg_ring(r, VHOST_USER_SET_VRING_ENABLE, 1, 1);
	CHECK(!r->ended);
}

static void rig_down(struct rig *r)
{
	struct err err = { 0 };

	vhost_user_free(r->vu);
	vsock_dev_free(r->dev);
	loop_free(r->l);
	munmap(r->mem, MEM_SIZE);
	close(r->memfd);
	close(r->sock);
	for (int i = 0; i < 2; i++) {
		close(r->q[i].kick);
		close(r->q[i].call);
	}
	fs_remove_tree(r->dir, &err);
}

static uint64_t alloc_buf(struct rig *r, size_t len)
{
	uint64_t a = r->next_buf;

	r->next_buf += (len + 63) & ~(size_t)63;
	if (r->next_buf > MEM_SIZE)
		r->next_buf = 1u << 20; /* reuse: the tests' buffers are short-lived */
	return a;
}

/* A chain of descriptors: each {gpa, len, writable}. */
struct d {
	uint64_t gpa;
	uint32_t len;
	bool w;
};

static void gq_add(struct rig *r, int qi, const struct d *ds, size_t n)
{
	struct gq *q = &r->q[qi];
	uint16_t head = q->next_desc;

	for (size_t i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % q->num);
		uint8_t *e = r->mem + q->desc + 16 * idx;

		put64(e, ds[i].gpa);
		put32(e + 8, ds[i].len);
		put16(e + 12, (uint16_t)((i + 1 < n ? 1 : 0) | (ds[i].w ? 2 : 0)));
		put16(e + 14, (uint16_t)((idx + 1) % q->num));
	}
	q->next_desc = (uint16_t)((head + n) % q->num);
	put16(r->mem + q->avail + 4 + 2 * (q->avail_idx % q->num), head);
	q->avail_idx++;
	__atomic_store_n((uint16_t *)(r->mem + q->avail + 2), q->avail_idx, __ATOMIC_RELEASE);
}

static void kick(struct rig *r, int qi)
{
	uint64_t one = 1;

	if (write(r->q[qi].kick, &one, 8) != 8)
		abort();
	run(r, 2);
}

/* The next used entry of ring qi: its descriptor head and length, or false. */
static bool gq_used(struct rig *r, int qi, uint16_t *head, uint32_t *len)
{
	struct gq *q = &r->q[qi];
	uint16_t idx = __atomic_load_n((uint16_t *)(r->mem + q->used + 2), __ATOMIC_ACQUIRE);
	uint32_t id;

	if (idx == q->used_seen)
		return false;
	memcpy(&id, r->mem + q->used + 4 + 8 * (q->used_seen % q->num), 4);
	memcpy(len, r->mem + q->used + 8 + 8 * (q->used_seen % q->num), 4);
	*head = (uint16_t)id;
	q->used_seen++;
	return true;
}

/* The guest sends a packet: header and payload in two descriptors, as Linux's driver does. */
static void send_pkt(struct rig *r, const struct vsock_hdr *h, const void *data, uint32_t n)
{
	uint64_t hb = alloc_buf(r, VSOCK_DEV_HDR), db = alloc_buf(r, n ? n : 1);
	struct d ds[2] = { { hb, VSOCK_DEV_HDR, false }, { db, n, false } };

	vsock_hdr_encode(h, r->mem + hb);
	if (n)
		memcpy(r->mem + db, data, n);
	gq_add(r, 1, ds, n ? 2 : 1);
	kick(r, 1);
}

static struct vsock_hdr pkt(uint16_t op, uint32_t src_port, uint64_t dst_cid, uint32_t dst_port, uint32_t len)
{
	return (struct vsock_hdr){ .src_cid = CID, .dst_cid = dst_cid, .src_port = src_port, .dst_port = dst_port,
				   .len = len, .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 65536 };
}

/* Receive buffers as Linux gives them: a header descriptor, then 4 KiB of payload. */
static uint64_t rx_bufs[QN];

static void give_rx(struct rig *r, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t b = alloc_buf(r, VSOCK_DEV_HDR + 4096);
		struct d ds[2] = { { b, VSOCK_DEV_HDR, true }, { b + VSOCK_DEV_HDR, 4096, true } };

		rx_bufs[r->q[0].next_desc % QN] = b;
		gq_add(r, 0, ds, 2);
	}
	kick(r, 0);
}

/* The next packet the device gave the guest; its payload into data. */
static bool recv_pkt(struct rig *r, struct vsock_hdr *h, uint8_t *data, uint32_t *n)
{
	uint16_t head;
	uint32_t len;

	if (!gq_used(r, 0, &head, &len))
		return false;
	CHECK(len >= VSOCK_DEV_HDR);
	vsock_hdr_decode(r->mem + rx_bufs[head], h);
	CHECK_EQ_INT(h->len, len - VSOCK_DEV_HDR);
	if (data)
		memcpy(data, r->mem + rx_bufs[head] + VSOCK_DEV_HDR, h->len);
	if (n)
		*n = h->len;
	return true;
}

static void test_guest_connects_to_the_parent(void)
{
	struct rig r;
	struct err err = { 0 };
	struct vsock_hdr h;
	uint8_t data[4096];
	uint32_t n = 0;
	char got[16] = "";
	int lfd, fd;

	rig_up(&r, NULL, 0);
	lfd = vsock_listen(5000, 4, &err); /* the parent's port 5000 */
	CHECK(lfd >= 0);
	give_rx(&r, 8);
	h = pkt(VSOCK_OP_REQUEST, 1234, VSOCK_CID_PARENT, 5000, 0);
	send_pkt(&r, &h, NULL, 0);
	/* the guest's packets were all taken back */
	{
		uint16_t head;
		uint32_t len;

		CHECK(gq_used(&r, 1, &head, &len));
	}
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	CHECK_EQ_INT(h.op, VSOCK_OP_RESPONSE);
	CHECK_EQ_INT(h.src_cid, VSOCK_CID_PARENT);
	CHECK_EQ_INT(h.src_port, 5000);
	CHECK_EQ_INT(h.dst_cid, CID);
	CHECK_EQ_INT(h.dst_port, 1234);
	CHECK_EQ_INT(h.buf_alloc, VSOCK_DEV_BUF_ALLOC);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(fd >= 0);
	h = pkt(VSOCK_OP_RW, 1234, VSOCK_CID_PARENT, 5000, 5);
	send_pkt(&r, &h, "hello", 5);
	CHECK_EQ_INT(read(fd, got, sizeof(got)), 5);
	CHECK_STR(got, "hello");
	CHECK_EQ_INT(write(fd, "world", 5), 5);
	run(&r, 3);
	CHECK(recv_pkt(&r, &h, data, &n));
	CHECK_EQ_INT(h.op, VSOCK_OP_RW);
	CHECK_EQ_INT(n, 5);
	CHECK(!memcmp(data, "world", 5));
	/* the host closes: the guest hears SHUTDOWN(SEND) */
	close(fd);
	run(&r, 3);
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	CHECK_EQ_INT(h.op, VSOCK_OP_SHUTDOWN);
	CHECK_EQ_INT(h.flags, VSOCK_SHUTDOWN_SEND);
	/* the guest closes too (both flags): the device answers with the RST Linux waits for */
	h = pkt(VSOCK_OP_SHUTDOWN, 1234, VSOCK_CID_PARENT, 5000, 0);
	h.flags = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
	send_pkt(&r, &h, NULL, 0);
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	CHECK_EQ_INT(h.op, VSOCK_OP_RST);
	CHECK_EQ_INT(vsock_dev_conns(r.dev), 0);
	/* the parent as CID 2: answered as CID 2, the CID the guest dialled */
	h = pkt(VSOCK_OP_REQUEST, 1235, VSOCK_CID_HOST, 5000, 0);
	send_pkt(&r, &h, NULL, 0);
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	CHECK_EQ_INT(h.op, VSOCK_OP_RESPONSE);
	CHECK_EQ_INT(h.src_cid, VSOCK_CID_HOST);
	/* a port nobody listens on: RST */
	h = pkt(VSOCK_OP_REQUEST, 1236, VSOCK_CID_PARENT, 5001, 0);
	send_pkt(&r, &h, NULL, 0);
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	CHECK_EQ_INT(h.op, VSOCK_OP_RST);
	CHECK_EQ_INT(h.dst_port, 1236);
	close(lfd);
	rig_down(&r);
}

static void test_host_connects_to_the_guest(void)
{
	static const uint32_t ports[] = { 17000 };
	struct rig r;
	struct err err = { 0 };
	struct vsock_hdr h;
	uint8_t data[4096];
	uint32_t n = 0, host_port;
	bool pending;
	char got[8];
	int fd;

	rig_up(&r, ports, 1);
	give_rx(&r, 8);
	/* what enclaver-run's status client does: connect to (guest CID, 17000) */
	fd = vsock_connect(CID, 17000, &pending, &err);
	CHECK(fd >= 0);
	run(&r, 3);
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	CHECK_EQ_INT(h.op, VSOCK_OP_REQUEST);
	CHECK_EQ_INT(h.src_cid, VSOCK_CID_PARENT);
	CHECK_EQ_INT(h.dst_cid, CID);
	CHECK_EQ_INT(h.dst_port, 17000);
	host_port = h.src_port;
	/* nothing is read from the host before the guest accepts */
	CHECK_EQ_INT(write(fd, "early", 5), 5);
	run(&r, 3);
	CHECK(!recv_pkt(&r, &h, NULL, NULL));
	h = pkt(VSOCK_OP_RESPONSE, 17000, VSOCK_CID_PARENT, host_port, 0);
	send_pkt(&r, &h, NULL, 0);
	run(&r, 3);
	CHECK(recv_pkt(&r, &h, data, &n));
	CHECK_EQ_INT(h.op, VSOCK_OP_RW);
	CHECK(n == 5 && !memcmp(data, "early", 5));
	h = pkt(VSOCK_OP_RW, 17000, VSOCK_CID_PARENT, host_port, 7);
	send_pkt(&r, &h, "status\n", 7);
	CHECK_EQ_INT(read(fd, got, sizeof(got)), 7);
	/* the guest resets: the host sees the end */
	h = pkt(VSOCK_OP_RST, 17000, VSOCK_CID_PARENT, host_port, 0);
	send_pkt(&r, &h, NULL, 0);
	CHECK_EQ_INT(read(fd, got, sizeof(got)), 0);
	CHECK_EQ_INT(vsock_dev_conns(r.dev), 0);
	close(fd);
	/* a guest that does not listen answers RST: the host's connection ends */
	fd = vsock_connect(CID, 17000, &pending, &err);
	run(&r, 3);
	CHECK(recv_pkt(&r, &h, NULL, NULL));
	host_port = h.src_port;
	h = pkt(VSOCK_OP_RST, 17000, VSOCK_CID_PARENT, host_port, 0);
	send_pkt(&r, &h, NULL, 0);
	CHECK_EQ_INT(read(fd, got, sizeof(got)), 0);
	close(fd);
	rig_down(&r);
}

/* A rig whose guest gave rx receive buffers and connected to the parent's port 5000 with a
 * buffer of buf_alloc; the host's end of it (and the listener, into lfd). */
static int guest_connected(struct rig *r, int rx, uint32_t buf_alloc, int *lfd)
{
	struct err err = { 0 };
	struct vsock_hdr h;

	rig_up(r, NULL, 0);
	*lfd = vsock_listen(5000, 4, &err);
	give_rx(r, rx);
	h = pkt(VSOCK_OP_REQUEST, 1234, VSOCK_CID_PARENT, 5000, 0);
	h.buf_alloc = buf_alloc;
	send_pkt(r, &h, NULL, 0);
	CHECK(recv_pkt(r, &h, NULL, NULL) && h.op == VSOCK_OP_RESPONSE);
	return accept4(*lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void test_credit_bounds_what_goes_to_the_guest(void)
{
	struct rig r;
	struct vsock_hdr h;
	static uint8_t big[64 * 1024];
	uint32_t n, got = 0;
	int lfd;
	/* the guest takes 8 KiB before it says it has read them */
	int fd = guest_connected(&r, 4, 8192, &lfd);

	memset(big, 'x', sizeof(big));
	CHECK_EQ_INT(write(fd, big, sizeof(big)), sizeof(big));
	give_rx(&r, 40);
	run(&r, 5);
	while (recv_pkt(&r, &h, NULL, &n))
		got += n;
	CHECK_EQ_INT(got, 8192);
	/* the guest read them all: the rest comes, still within 8 KiB at a time */
	h = pkt(VSOCK_OP_CREDIT_UPDATE, 1234, VSOCK_CID_PARENT, 5000, 0);
	h.buf_alloc = 8192;
	h.fwd_cnt = 8192;
	send_pkt(&r, &h, NULL, 0);
	run(&r, 5);
	while (recv_pkt(&r, &h, NULL, &n))
		got += n;
	CHECK_EQ_INT(got, 16384);
	/* a CREDIT_REQUEST is answered with the device's own count */
	h = pkt(VSOCK_OP_RW, 1234, VSOCK_CID_PARENT, 5000, 3);
	h.buf_alloc = 8192;
	h.fwd_cnt = 16384;
	send_pkt(&r, &h, "abc", 3);
	h = pkt(VSOCK_OP_CREDIT_REQUEST, 1234, VSOCK_CID_PARENT, 5000, 0);
	h.buf_alloc = 8192;
	h.fwd_cnt = 16384;
	send_pkt(&r, &h, NULL, 0);
	run(&r, 5);
	{
		bool update = false;

		while (recv_pkt(&r, &h, NULL, &n)) {
			got += n;
			if (h.op == VSOCK_OP_CREDIT_UPDATE)
				update = h.fwd_cnt == 3;
		}
		CHECK(update);
	}
	close(fd);
	close(lfd);
	rig_down(&r);
}

static void test_guest_past_its_credit_is_reset(void)
{
	struct rig r;
	struct err err = { 0 };
	struct vsock_hdr h;
	static uint8_t chunk[60000];
	bool reset = false;
	int lfd, fd;

	rig_up(&r, NULL, 0);
	lfd = vsock_listen(5000, 4, &err);
	give_rx(&r, 16);
	h = pkt(VSOCK_OP_REQUEST, 1234, VSOCK_CID_PARENT, 5000, 0);
	send_pkt(&r, &h, NULL, 0);
	CHECK(recv_pkt(&r, &h, NULL, NULL) && h.op == VSOCK_OP_RESPONSE);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC); /* and never read: the socket fills */
	for (int i = 0; i < 200 && !reset; i++) {
		h = pkt(VSOCK_OP_RW, 1234, VSOCK_CID_PARENT, 5000, sizeof(chunk));
		send_pkt(&r, &h, chunk, sizeof(chunk));
		while (recv_pkt(&r, &h, NULL, NULL))
			reset |= h.op == VSOCK_OP_RST;
	}
	CHECK(reset);
	CHECK_EQ_INT(vsock_dev_conns(r.dev), 0);
	close(fd);
	close(lfd);
	rig_down(&r);
}

static void test_packets_that_break_the_rules(void)
{
	struct rig r;
	struct vsock_hdr h;

	rig_up(&r, NULL, 0);
	give_rx(&r, 8);
	/* another CID's packet, a length beyond the payload: dropped, no answer */
	h = pkt(VSOCK_OP_REQUEST, 1, VSOCK_CID_PARENT, 5000, 0);
	h.src_cid = 99;
	send_pkt(&r, &h, NULL, 0);
	h = pkt(VSOCK_OP_RW, 1, VSOCK_CID_PARENT, 5000, 1000);
	send_pkt(&r, &h, "short", 5);
	CHECK(!recv_pkt(&r, &h, NULL, NULL));
	/* data for no connection, a datagram type, another guest's CID: RST */
	h = pkt(VSOCK_OP_RW, 2, VSOCK_CID_PARENT, 5000, 2);
	send_pkt(&r, &h, "hi", 2);
	CHECK(recv_pkt(&r, &h, NULL, NULL) && h.op == VSOCK_OP_RST);
	h = pkt(VSOCK_OP_REQUEST, 3, VSOCK_CID_PARENT, 5000, 0);
	h.type = 2;
	send_pkt(&r, &h, NULL, 0);
	CHECK(recv_pkt(&r, &h, NULL, NULL) && h.op == VSOCK_OP_RST);
	h = pkt(VSOCK_OP_REQUEST, 4, 17, 5000, 0);
	send_pkt(&r, &h, NULL, 0);
	CHECK(recv_pkt(&r, &h, NULL, NULL) && h.op == VSOCK_OP_RST);
	/* a header split over four descriptors is read whole */
	{
		uint64_t b = alloc_buf(&r, VSOCK_DEV_HDR);
		struct d ds[4] = { { b, 10, false }, { b + 10, 10, false }, { b + 20, 4, false }, { b + 24, 20, false } };

		h = pkt(VSOCK_OP_RW, 5, VSOCK_CID_PARENT, 5000, 0);
		vsock_hdr_encode(&h, r.mem + b);
		gq_add(&r, 1, ds, 4);
		kick(&r, 1);
		CHECK(recv_pkt(&r, &h, NULL, NULL) && h.op == VSOCK_OP_RST && h.dst_port == 5);
	}
	rig_down(&r);
}

static void test_rings_that_break_the_rules(void)
{
	struct rig r;
	struct vsock_hdr h;
	uint16_t head;
	uint32_t len;

	/* a descriptor pointing outside guest memory */
	rig_up(&r, NULL, 0);
	{
		struct d ds[1] = { { MEM_SIZE - 10, VSOCK_DEV_HDR, false } };

		gq_add(&r, 1, ds, 1);
		kick(&r, 1);
		CHECK(!gq_used(&r, 1, &head, &len));
		/* the queue is dead; the device, the loop and the other ring live on */
		h = pkt(VSOCK_OP_REQUEST, 1, VSOCK_CID_PARENT, 5000, 0);
		send_pkt(&r, &h, NULL, 0);
		CHECK(!gq_used(&r, 1, &head, &len));
	}
	rig_down(&r);
	/* a chain that loops */
	rig_up(&r, NULL, 0);
	{
		uint8_t *e = r.mem + r.q[1].desc;

		put64(e, 1u << 20);
		put32(e + 8, 8);
		put16(e + 12, 1);
		put16(e + 14, 0); /* next: itself */
		put16(r.mem + r.q[1].avail + 4, 0);
		__atomic_store_n((uint16_t *)(r.mem + r.q[1].avail + 2), 1, __ATOMIC_RELEASE);
		kick(&r, 1);
		CHECK(!gq_used(&r, 1, &head, &len));
	}
	rig_down(&r);
	/* a head index past the table, and an avail index that runs ahead by more than the ring */
	rig_up(&r, NULL, 0);
	put16(r.mem + r.q[1].avail + 4, QN + 5);
	__atomic_store_n((uint16_t *)(r.mem + r.q[1].avail + 2), 1, __ATOMIC_RELEASE);
	kick(&r, 1);
	CHECK(!gq_used(&r, 1, &head, &len));
	rig_down(&r);
	rig_up(&r, NULL, 0);
	__atomic_store_n((uint16_t *)(r.mem + r.q[1].avail + 2), QN + 1, __ATOMIC_RELEASE);
	kick(&r, 1);
	CHECK(!gq_used(&r, 1, &head, &len));
	CHECK(!r.ended);
	rig_down(&r);
}

static void test_front_end_messages_that_break_the_rules(void)
{
	struct rig r;
	uint8_t p[128] = { 0 };
	int small;

	/* a region larger than the file behind it: refused, the session ends */
	rig_up(&r, NULL, 0);
	small = memfd_create("small", MFD_CLOEXEC);
	if (ftruncate(small, 4096) < 0)
		abort();
	put32(p, 1);
	put64(p + 16, 1u << 20);
	put64(p + 24, UADDR);
	msg(&r, VHOST_USER_SET_MEM_TABLE, p, 40, &small, 1, NULL);
	CHECK(r.ended);
	rig_down(&r);
	/* more regions than descriptors */
	rig_up(&r, NULL, 0);
	put32(p, 2);
	msg(&r, VHOST_USER_SET_MEM_TABLE, p, 72, &small, 1, NULL);
	CHECK(r.ended);
	rig_down(&r);
	/* a ring the device does not have, a size that is not a power of two */
	rig_up(&r, NULL, 0);
	msg_ring(&r, VHOST_USER_SET_VRING_NUM, 7, 64);
	CHECK(r.ended);
	rig_down(&r);
	rig_up(&r, NULL, 0);
	msg_ring(&r, VHOST_USER_SET_VRING_NUM, 0, 100);
	CHECK(r.ended);
	rig_down(&r);
	close(small);
}

static void test_guest_reset_ends_every_connection(void)
{
	struct rig r;
	struct err err = { 0 };
	struct vsock_hdr h;
	uint8_t reply[64];
	char got[4];
	int lfd, fd;

	rig_up(&r, NULL, 0);
	lfd = vsock_listen(5000, 4, &err);
	give_rx(&r, 4);
	h = pkt(VSOCK_OP_REQUEST, 1234, VSOCK_CID_PARENT, 5000, 0);
	send_pkt(&r, &h, NULL, 0);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK_EQ_INT(vsock_dev_conns(r.dev), 1);
	/* what QEMU sends when the guest reboots or powers off */
	msg_ring(&r, VHOST_USER_SET_VRING_ENABLE, 0, 0);
	put32(reply, 0);
	{
		uint8_t p[8] = { 0 };

		CHECK_EQ_INT(msg(&r, VHOST_USER_GET_VRING_BASE, p, 8, NULL, 0, reply), 8);
	}
	CHECK_EQ_INT(vsock_dev_conns(r.dev), 0);
	CHECK_EQ_INT(read(fd, got, sizeof(got)), 0);
	close(fd);
	close(lfd);
	rig_down(&r);
}

/* The used ring's flags: 1 (VRING_USED_F_NO_NOTIFY) while the device asks for no kicks. */
static uint16_t used_flags(struct rig *r, int qi)
{
	return __atomic_load_n((uint16_t *)(r->mem + r->q[qi].used), __ATOMIC_ACQUIRE);
}

static void test_kicks_are_asked_for_only_while_the_device_waits(void)
{
	struct rig r;
	struct vsock_hdr h;
	static uint8_t big[64 * 1024], got[80 * 1024];
	uint32_t n, total = 0;
	int lfd, fd = guest_connected(&r, 2, 1u << 20, &lfd);

	/* the transmit ring was emptied: kicks are wanted there again */
	CHECK_EQ_INT(used_flags(&r, 1), 0);
	/* a buffer is left and nothing waits: the guest need not say when it gives more */
	CHECK_EQ_INT(used_flags(&r, 0), 1);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	CHECK_EQ_INT(write(fd, big, sizeof(big)), sizeof(big));
	run(&r, 5);
	/* out of buffers with data waiting: now it asks */
	CHECK_EQ_INT(used_flags(&r, 0), 0);
	give_rx(&r, 20);
	run(&r, 5);
	/* 60 KiB went into 15 of the 20: buffers are left, so no kicks again */
	CHECK_EQ_INT(used_flags(&r, 0), 1);
	/* the guest gives buffers without a kick, as it does while told not to; what the host sends
	 * next still reaches it, through the buffers it had */
	for (int i = 0; i < 4; i++) {
		uint64_t b = alloc_buf(&r, VSOCK_DEV_HDR + 4096);
		struct d ds[2] = { { b, VSOCK_DEV_HDR, true }, { b + VSOCK_DEV_HDR, 4096, true } };

		rx_bufs[r.q[0].next_desc % QN] = b;
		gq_add(&r, 0, ds, 2);
	}
	CHECK_EQ_INT(write(fd, big, 16 * 1024), 16 * 1024);
	run(&r, 5);
	while (recv_pkt(&r, &h, got + total, &n)) {
		CHECK(h.op == VSOCK_OP_RW);
		total += n;
	}
	CHECK_EQ_INT(total, sizeof(big) + 16 * 1024);
	CHECK(!memcmp(got, big, sizeof(big)) && !memcmp(got + sizeof(big), big, 16 * 1024));
	close(fd);
	close(lfd);
	rig_down(&r);
}

TEST_MAIN(T(test_guest_connects_to_the_parent), T(test_host_connects_to_the_guest),
	  T(test_credit_bounds_what_goes_to_the_guest), T(test_guest_past_its_credit_is_reset),
	  T(test_packets_that_break_the_rules), T(test_rings_that_break_the_rules),
	  T(test_front_end_messages_that_break_the_rules), T(test_guest_reset_ends_every_connection),
	  T(test_kicks_are_asked_for_only_while_the_device_waits))
