/*
 * The vhost-user back-end of the VM enclave's vsock device (QEMU's docs/interop/vhost-user.rst,
 * as QEMU 7.2's vhost-user-vsock-device drives it): the front-end hands over the guest's memory and
 * the two rings the device owns (0: to the guest, 1: from it); the packets are vsock_dev's. Runs in
 * the back-end process. Messages come from QEMU, which is ours, and are checked all the same: sizes,
 * indexes, region counts and offsets, and memory that the file behind it does not cover.
 */
#ifndef ENCLAVER_VM_VHOST_USER_H
#define ENCLAVER_VM_VHOST_USER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"
#include "vm/vsock_dev.h"

#define VHOST_USER_HDR 12
#define VHOST_USER_MAX_PAYLOAD 4096
#define VHOST_USER_MAX_FDS 8

enum {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
};

#define VHOST_USER_F_PROTOCOL_FEATURES (1ull << 30)
#define VIRTIO_F_VERSION_1 (1ull << 32)
#define VHOST_USER_PROTOCOL_F_CONFIG (1ull << 9)

struct vhost_user;

/* Serves the front-end connected on fd (taken over) for the device dev. on_end runs once when the
 * front-end goes away or breaks the protocol. */
int vhost_user_new(struct loop *l, int fd, uint64_t guest_cid, struct vsock_dev *dev,
		   void (*on_end)(void *data), void *data, struct vhost_user **out, struct err *err);
void vhost_user_free(struct vhost_user *v);

/* One message: its header and payload in msg, the descriptors that came with it in fds (taken
 * over, closed if unused). Writes the reply, if the request has one, to reply (at least
 * VHOST_USER_HDR + VHOST_USER_MAX_PAYLOAD bytes) and sets *reply_len (0: none). Returns -1 when
 * the message breaks the protocol. */
int vhost_user_handle(struct vhost_user *v, const uint8_t *msg, size_t len, int *fds, size_t n_fds,
		      uint8_t *reply, size_t *reply_len, struct err *err);

#endif
