/*
 * The vsock device of a VM enclave (VIRTIO "Socket Device", ID 19), bridged to the emulated
 * vsock transport: a guest connect to the parent (CID 3, or 2) on port P is a connection to the
 * parent's emulated port P, and each guest port the host must reach (ingress, status, logs) is
 * an emulated listener of the guest's CID whose connections open that guest port. So the host
 * side of enclaver-run talks to a VM enclave as to any other. Runs in the vsock back-end process;
 * the guest is untrusted: every packet is checked, and a connection that breaks the rules (credit,
 * state) is reset, never the device.
 */
#ifndef ENCLAVER_VM_VSOCK_DEV_H
#define ENCLAVER_VM_VSOCK_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"
#include "vm/virtq.h"

#define VSOCK_DEV_HDR 44
#define VSOCK_DEV_BUF_ALLOC (256u * 1024) /* what each connection takes from the guest before it is written on */
#define VSOCK_DEV_MAX_CONNS 4096

enum {
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VSOCK_TYPE_STREAM 1
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

/* The 44-byte little-endian packet header. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_decode(const uint8_t b[VSOCK_DEV_HDR], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t b[VSOCK_DEV_HDR]);

struct vsock_dev;

/* Listens, as guest_cid, on each of ports (the guest ports the host connects to). */
int vsock_dev_new(struct loop *l, uint64_t guest_cid, const uint32_t *ports, size_t n_ports, struct vsock_dev **out,
		  struct err *err);
void vsock_dev_free(struct vsock_dev *d);
/* The guest's rings once the front-end has set them up: rx (device to guest) and tx. */
void vsock_dev_attach(struct vsock_dev *d, struct virtq *rx, struct virtq *tx, const struct guest_mem *m);
/* The rings go away (the guest's driver reset, or the front-end left): every connection ends. */
void vsock_dev_detach(struct vsock_dev *d);
/* The guest sent packets / gave receive buffers. */
void vsock_dev_tx_kick(struct vsock_dev *d);
void vsock_dev_rx_kick(struct vsock_dev *d);
size_t vsock_dev_conns(const struct vsock_dev *d);

#endif
