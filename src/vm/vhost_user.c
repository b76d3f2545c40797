/*
 * vhost-user, the back-end side, for one vsock device (see vhost_user.h). Runs in the VM
 * enclave's back-end process, in its event loop: the front-end's socket and the two kick
 * eventfds are its events.
 */
#include "vm/vhost_user.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

#define FLAG_VERSION 1u
#define FLAG_REPLY (1u << 2)
#define VRING_NOFD (1ull << 8)
#define RINGS 2 /* 0: receive (to the guest), 1: transmit; the event ring stays with QEMU */

struct kick {
	struct vhost_user *v;
	struct loop_io io;
	int ring;
};

struct vhost_user {
	struct loop *loop;
	struct loop_io io;
	int fd;
	uint64_t cid, features, protocol;
	struct guest_mem mem;
	struct virtq q[RINGS];
	struct kick kicks[RINGS];
	struct vsock_dev *dev;
	bool attached, ended;
	void (*on_end)(void *data);
	void *data;
};

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* The device runs while both rings are mapped, enabled and kickable; else it holds nothing. */
static void update_device(struct vhost_user *v)
{
	bool ready = true;

	for (int i = 0; i < RINGS; i++)
		ready &= virtq_ready(&v->q[i]) && v->q[i].kick_fd >= 0;
	if (ready && !v->attached) {
		vsock_dev_attach(v->dev, &v->q[0], &v->q[1], &v->mem);
		v->attached = true;
		vsock_dev_tx_kick(v->dev);
	} else if (!ready && v->attached) {
		vsock_dev_detach(v->dev);
		v->attached = false;
	}
}

static void on_kick(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct kick *k = io->data;
	uint64_t n;

	if (read(io->fd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
		/* an eventfd read cannot fail otherwise; nothing to do */
	}
	if (!k->v->attached)
		return;
	if (k->ring == 0)
		vsock_dev_rx_kick(k->v->dev);
	else
		vsock_dev_tx_kick(k->v->dev);
}

static void set_kick(struct vhost_user *v, int ring, int fd)
{
	struct kick *k = &v->kicks[ring];
	struct err err = { 0 };

	if (v->q[ring].kick_fd >= 0) {
		loop_io_del(v->loop, &k->io);
		close(v->q[ring].kick_fd);
		v->q[ring].kick_fd = -1;
	}
	if (fd < 0)
		return;
	k->v = v;
	k->ring = ring;
	if (loop_io_add(v->loop, &k->io, fd, EPOLLIN, on_kick, k, &err) < 0) {
		log_warn("vhost-user: ring %d kick: %s", ring, err.msg);
		close(fd);
		return;
	}
	v->q[ring].kick_fd = fd;
}

static void stop_ring(struct vhost_user *v, int ring)
{
	struct virtq *q = &v->q[ring];

	set_kick(v, ring, -1);
	q->enabled = false;
	update_device(v);
}

static int set_mem_table(struct vhost_user *v, const uint8_t *p, size_t size, int *fds, size_t n_fds, struct err *err)
{
	struct guest_mem m = { .n = 0 };
	uint32_t n;

	if (size < 8)
		return err_set(err, EPROTO, "SET_MEM_TABLE: %zu bytes", size);
	n = rd32(p);
	if (!n || n > GUEST_MAX_REGIONS || size < 8 + 32 * (size_t)n || n_fds != n)
		return err_set(err, EPROTO, "SET_MEM_TABLE: %u regions, %zu bytes, %zu descriptors", n, size, n_fds);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *r = p + 8 + 32 * (size_t)i;
		struct guest_region *g = &m.r[i];
		uint64_t off = rd64(r + 24);
		struct stat st;
		void *map;

		g->gpa = rd64(r);
		g->size = rd64(r + 8);
		g->uaddr = rd64(r + 16);
		/* mapped only where the file is: touching past its end would be SIGBUS */
		if (!g->size || off > UINT64_MAX - g->size || fstat(fds[i], &st) < 0 ||
		    off + g->size > (uint64_t)st.st_size || off + g->size > SIZE_MAX) {
			guest_mem_unmap(&m);
			return err_set(err, EPROTO, "SET_MEM_TABLE: region %u (%llu bytes at offset %llu) is not in its file", i,
				       (unsigned long long)g->size, (unsigned long long)off);
		}
		map = mmap(NULL, (size_t)(off + g->size), PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		if (map == MAP_FAILED) {
			guest_mem_unmap(&m);
			return err_sys(err, "SET_MEM_TABLE: mmap region %u", i);
		}
		g->map = map;
		g->map_len = (size_t)(off + g->size);
		g->host = (uint8_t *)map + off;
		m.n++;
	}
	close_fds(fds, n_fds);
	if (v->attached) {
		vsock_dev_detach(v->dev);
		v->attached = false;
	}
	guest_mem_unmap(&v->mem);
	v->mem = m;
	for (int i = 0; i < RINGS; i++)
		if (v->q[i].num && v->q[i].desc_ua)
			virtq_map(&v->q[i], &v->mem);
	update_device(v);
	return 0;
}

int vhost_user_handle(struct vhost_user *v, const uint8_t *msg, size_t len, int *fds, size_t n_fds,
		      uint8_t *reply, size_t *reply_len, struct err *err)
{
	uint32_t req, flags, size, ring = 0, num = 0;
	const uint8_t *p = msg + VHOST_USER_HDR;
	uint64_t u = 0;
	int rc = 0;

	*reply_len = 0;
	if (len < VHOST_USER_HDR) {
		close_fds(fds, n_fds);
		return err_set(err, EPROTO, "a message of %zu bytes", len);
	}
	req = rd32(msg);
	flags = rd32(msg + 4);
	size = rd32(msg + 8);
	if ((flags & 3) != FLAG_VERSION || size > VHOST_USER_MAX_PAYLOAD || len != VHOST_USER_HDR + (size_t)size) {
		close_fds(fds, n_fds);
		return err_set(err, EPROTO, "request %u: version %u, %u bytes", req, flags & 3, size);
	}
	if (size >= 8)
		u = rd64(p);
	if (size >= 8) {
		ring = rd32(p);
		num = rd32(p + 4);
	}
	/* the ring-indexed requests: only the device's two rings */
	switch (req) {
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_ADDR:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
		if (size < 8 || ring >= RINGS) {
			close_fds(fds, n_fds);
			return err_set(err, EPROTO, "request %u: ring %u", req, ring);
		}
		break;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		ring = (uint32_t)(u & 0xff);
		/* QEMU also names the event ring (2), which stays its own: taken and closed */
		if (size < 8 || ring > RINGS || (!(u & VRING_NOFD) && n_fds != 1) || (u & VRING_NOFD && n_fds)) {
			close_fds(fds, n_fds);
			return err_set(err, EPROTO, "request %u: ring %u with %zu descriptors", req, ring, n_fds);
		}
		break;
	default:
		break;
	}
	switch (req) {
	case VHOST_USER_GET_FEATURES:
		u = VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES;
		goto reply_u64;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		u = VHOST_USER_PROTOCOL_F_CONFIG;
		goto reply_u64;
	case VHOST_USER_GET_QUEUE_NUM:
		u = RINGS;
		goto reply_u64;
	case VHOST_USER_SET_FEATURES:
		if (size < 8)
			rc = err_set(err, EPROTO, "SET_FEATURES: %u bytes", size);
		else
			v->features = u;
		break;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if (size < 8)
			rc = err_set(err, EPROTO, "SET_PROTOCOL_FEATURES: %u bytes", size);
		else
			v->protocol = u;
		break;
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
		break;
	case VHOST_USER_SET_MEM_TABLE:
		rc = set_mem_table(v, p, size, fds, n_fds, err);
		break;
	case VHOST_USER_SET_VRING_NUM:
		if (!num || num > VIRTQ_MAX_SIZE || (num & (num - 1))) {
			rc = err_set(err, EPROTO, "SET_VRING_NUM: ring %u of %u entries", ring, num);
			break;
		}
		v->q[ring].num = (uint16_t)num;
		if (v->q[ring].desc_ua)
			virtq_map(&v->q[ring], &v->mem);
		update_device(v);
		break;
	case VHOST_USER_SET_VRING_ADDR:
		if (size < 40) {
			rc = err_set(err, EPROTO, "SET_VRING_ADDR: %u bytes", size);
			break;
		}
		v->q[ring].desc_ua = rd64(p + 8);
		v->q[ring].used_ua = rd64(p + 16);
		v->q[ring].avail_ua = rd64(p + 24);
		v->q[ring].broken = false;
		virtq_map(&v->q[ring], &v->mem);
		update_device(v);
		break;
	case VHOST_USER_SET_VRING_BASE:
		v->q[ring].last_avail = (uint16_t)num;
		v->q[ring].used_idx = (uint16_t)num;
		break;
	case VHOST_USER_GET_VRING_BASE:
		/* the ring stops; its state goes back to the front-end */
		stop_ring(v, (int)ring);
		num = v->q[ring].last_avail;
		memcpy(reply + VHOST_USER_HDR, &ring, 4);
		memcpy(reply + VHOST_USER_HDR + 4, &num, 4);
		*reply_len = VHOST_USER_HDR + 8;
		goto reply_hdr;
	case VHOST_USER_SET_VRING_KICK:
		if (ring < RINGS) {
			set_kick(v, (int)ring, n_fds ? fds[0] : -1);
			if (n_fds)
				fds[0] = -1;
			/* without protocol features a kick starts the ring (with them, SET_VRING_ENABLE) */
			if (!(v->features & VHOST_USER_F_PROTOCOL_FEATURES))
				v->q[ring].enabled = true;
			update_device(v);
		}
		break;
	case VHOST_USER_SET_VRING_CALL:
		if (ring < RINGS) {
			if (v->q[ring].call_fd >= 0)
				close(v->q[ring].call_fd);
			v->q[ring].call_fd = n_fds ? fds[0] : -1;
			if (n_fds)
				fds[0] = -1;
		}
		break;
	case VHOST_USER_SET_VRING_ERR:
		break;
	case VHOST_USER_SET_VRING_ENABLE:
		v->q[ring].enabled = num != 0;
		update_device(v);
		break;
	case VHOST_USER_GET_CONFIG: {
		uint32_t off, csize;
		uint8_t config[8];

		if (size < 12) {
			rc = err_set(err, EPROTO, "GET_CONFIG: %u bytes", size);
			break;
		}
		off = rd32(p);
		csize = rd32(p + 4);
		/* the vsock device's configuration is its guest CID, 8 bytes */
		if (csize != size - 12 || off > sizeof(config) || csize > sizeof(config) - off) {
			rc = err_set(err, EPROTO, "GET_CONFIG: %u bytes at %u", csize, off);
			break;
		}
		for (int i = 0; i < 8; i++)
			config[i] = (uint8_t)(v->cid >> (8 * i));
		memcpy(reply + VHOST_USER_HDR, p, 12);
		memcpy(reply + VHOST_USER_HDR + 12, config + off, csize);
		*reply_len = VHOST_USER_HDR + 12 + csize;
		goto reply_hdr;
	}
	default:
		log_debug("vhost-user: request %u ignored", req);
		break;
	}
	close_fds(fds, n_fds);
	return rc;
reply_u64:
	memcpy(reply + VHOST_USER_HDR, &u, 8);
	*reply_len = VHOST_USER_HDR + 8;
reply_hdr:
	close_fds(fds, n_fds);
	{
		uint32_t rflags = FLAG_VERSION | FLAG_REPLY, rsize = (uint32_t)(*reply_len - VHOST_USER_HDR);

		memcpy(reply, &req, 4);
		memcpy(reply + 4, &rflags, 4);
		memcpy(reply + 8, &rsize, 4);
	}
	return 0;
}

static void end(struct vhost_user *v, const char *why)
{
	if (v->ended)
		return;
	v->ended = true;
	log_debug("vhost-user: the front-end ended: %s", why);
	loop_io_del(v->loop, &v->io);
	if (v->on_end)
		v->on_end(v->data);
}

static int read_full(int fd, uint8_t *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void on_message(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct vhost_user *v = io->data;
	uint8_t msg[VHOST_USER_HDR + VHOST_USER_MAX_PAYLOAD], reply[VHOST_USER_HDR + VHOST_USER_MAX_PAYLOAD];
	char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
	struct iovec iov = { msg, VHOST_USER_HDR };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	int fds[VHOST_USER_MAX_FDS];
	size_t n_fds = 0, reply_len;
	struct err err = { 0 };
	uint32_t size;
	ssize_t n;

	do
		n = recvmsg(v->fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (n_fds < VHOST_USER_MAX_FDS)
					fds[n_fds++] = fd;
				else
					close(fd);
			}
		}
	if (n != VHOST_USER_HDR || mh.msg_flags & MSG_CTRUNC) {
		close_fds(fds, n_fds);
		end(v, n == 0 ? "closed" : "a short or truncated message");
		return;
	}
	memcpy(&size, msg + 8, 4);
	if (size > VHOST_USER_MAX_PAYLOAD || read_full(v->fd, msg + VHOST_USER_HDR, size) < 0) {
		close_fds(fds, n_fds);
		end(v, "a payload too large or cut short");
		return;
	}
	if (vhost_user_handle(v, msg, VHOST_USER_HDR + size, fds, n_fds, reply, &reply_len, &err) < 0) {
		log_warn("vhost-user: %s", err.msg);
		end(v, err.msg);
		return;
	}
	if (reply_len && send(v->fd, reply, reply_len, MSG_NOSIGNAL) != (ssize_t)reply_len)
		end(v, "the reply could not be sent");
}

int vhost_user_new(struct loop *l, int fd, uint64_t guest_cid, struct vsock_dev *dev,
		   void (*on_end)(void *data), void *data, struct vhost_user **out, struct err *err)
{
	struct vhost_user *v = calloc(1, sizeof(*v));

	if (!v)
		abort();
	v->loop = l;
	v->fd = fd;
	v->cid = guest_cid;
	v->dev = dev;
	v->on_end = on_end;
	v->data = data;
	for (int i = 0; i < RINGS; i++)
		virtq_init(&v->q[i]);
	/* a message is read whole once its first bytes are there: QEMU sends each in one piece */
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (fd >= 0 && loop_io_add(l, &v->io, fd, EPOLLIN, on_message, v, err) < 0) {
		close(fd);
		free(v);
		return -1;
	}
	*out = v;
	return 0;
}

void vhost_user_free(struct vhost_user *v)
{
	if (!v)
		return;
	if (v->attached)
		vsock_dev_detach(v->dev);
	for (int i = 0; i < RINGS; i++) {
		set_kick(v, i, -1);
		if (v->q[i].call_fd >= 0)
			close(v->q[i].call_fd);
	}
	if (v->io.registered)
		loop_io_del(v->loop, &v->io);
	if (v->fd >= 0)
		close(v->fd);
	guest_mem_unmap(&v->mem);
	free(v);
}
