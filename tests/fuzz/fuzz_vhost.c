/*
 * Fuzzes the VM enclave's vsock back-end with what a hostile guest controls: its rings and
 * packets in guest memory (mode 0), and with vhost-user messages (mode 1). The memory is a memfd
 * shared as QEMU shares it; the host side is an empty emulated vsock folder.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "net/loop.h"
#include "net/vsock.h"
#include "vm/vhost_user.h"

#define MEM (1u << 20)
#define UADDR 0x7f0000000000ull
#define QN 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static uint8_t *mem;

static void handle(struct vhost_user *v, uint32_t req, const void *p, uint32_t n, int fd)
{
	uint8_t m[VHOST_USER_HDR + 256], reply[VHOST_USER_HDR + VHOST_USER_MAX_PAYLOAD];
	uint32_t flags = 1;
	size_t rl;
	struct err err = { 0 };
	int fds[1] = { fd };

	memcpy(m, &req, 4);
	memcpy(m + 4, &flags, 4);
	memcpy(m + 8, &n, 4);
	if (n)
		memcpy(m + VHOST_USER_HDR, p, n);
	vhost_user_handle(v, m, VHOST_USER_HDR + n, fds, fd >= 0 ? 1 : 0, reply, &rl, &err);
}

static void ring_msg(struct vhost_user *v, uint32_t req, uint32_t a, uint32_t b)
{
	uint32_t p[2] = { a, b };

	handle(v, req, p, 8, -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dir[64];
	struct loop *l;
	struct vsock_dev *dev;
	struct vhost_user *v;
	struct err err = { 0 };
	uint32_t ports[1] = { 17000 };

	if (memfd < 0) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-vhost-XXXXXX");
		if (!mkdtemp(dir) || vsock_use_emulated(dir, VSOCK_CID_PARENT, &err) < 0)
			abort();
		memfd = memfd_create("guest", MFD_CLOEXEC);
		if (ftruncate(memfd, MEM) < 0)
			abort();
		mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	}
	if (size < 1 || loop_new(&l, &err) < 0)
		return 0;
	if (vsock_dev_new(l, 16, ports, 1, &dev, &err) < 0)
		abort();
	if (vhost_user_new(l, -1, 16, dev, NULL, NULL, &v, &err) < 0)
		abort();
	memset(mem, 0, MEM);
	if (data[0] & 1) {
		/* vhost-user messages: [u32 request][u16 size][payload], a memfd with SET_MEM_TABLE */
		size_t off = 1;

		while (off + 6 <= size) {
			uint32_t req;
			uint16_t n;

			memcpy(&req, data + off, 4);
			memcpy(&n, data + off + 4, 2);
			off += 6;
			if (n > 256 || off + n > size)
				break;
			handle(v, req % 32, data + off, n,
			       req % 32 == VHOST_USER_SET_MEM_TABLE || req % 32 == VHOST_USER_SET_VRING_KICK ||
					       req % 32 == VHOST_USER_SET_VRING_CALL
				       ? dup(req % 32 == VHOST_USER_SET_MEM_TABLE ? memfd : eventfd(0, EFD_NONBLOCK))
				       : -1);
			off += n;
		}
	} else {
		/* a set-up device, then guest memory as the guest wrote it, then kicks */
		uint8_t t[40] = { 0 };
		uint32_t one = 1;
		uint64_t v64;

		memcpy(t, &one, 4);
		v64 = MEM;
		memcpy(t + 16, &v64, 8);
		v64 = UADDR;
		memcpy(t + 24, &v64, 8);
		handle(v, VHOST_USER_SET_FEATURES, (uint64_t[]){ VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES }, 8,
		       -1);
		handle(v, VHOST_USER_SET_MEM_TABLE, t, 40, dup(memfd));
		for (uint32_t i = 0; i < 2; i++) {
			uint8_t a[40] = { 0 };
			uint64_t desc = 0x1000 + 0x1000 * i, avail = desc + 16 * QN, used = avail + 0x100;
			uint64_t ring = i, ua;

			ring_msg(v, VHOST_USER_SET_VRING_NUM, i, QN);
			memcpy(a, &i, 4);
			ua = UADDR + desc;
			memcpy(a + 8, &ua, 8);
			ua = UADDR + used;
			memcpy(a + 16, &ua, 8);
			ua = UADDR + avail;
			memcpy(a + 24, &ua, 8);
			handle(v, VHOST_USER_SET_VRING_ADDR, a, 40, -1);
			handle(v, VHOST_USER_SET_VRING_KICK, &ring, 8, eventfd(0, EFD_NONBLOCK));
			ring_msg(v, VHOST_USER_SET_VRING_ENABLE, i, 1);
		}
		/* the rings and the first buffers: 0x1000.. ; the rest of the input: packet data */
		memcpy(mem + 0x1000, data + 1, size - 1 < 0x3000 ? size - 1 : 0x3000);
		if (size > 0x3001)
			memcpy(mem + 0x4000, data + 0x3001, size - 0x3001 < MEM - 0x4000 ? size - 0x3001 : MEM - 0x4000);
		vsock_dev_tx_kick(dev);
		vsock_dev_rx_kick(dev);
		vsock_dev_tx_kick(dev);
		loop_run_once(l, 0, &err);
	}
	vhost_user_free(v);
	vsock_dev_free(dev);
	loop_free(l);
	return 0;
}
