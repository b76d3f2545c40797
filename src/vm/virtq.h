/*
 * A split virtqueue (VIRTIO 1.x, 2.7) seen from the device side, over a guest's memory as the
 * vhost-user front-end shares it. Runs in the VM enclave's vsock back-end. Everything read from
 * guest memory (ring indexes, descriptor addresses, lengths, flags, next links) is untrusted:
 * read once, bounds-checked against the queue size and the memory map; a queue that breaks the
 * rules is marked broken and used no more.
 */
#ifndef ENCLAVER_VM_VIRTQ_H
#define ENCLAVER_VM_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MAX_REGIONS 8
#define VIRTQ_MAX_SIZE 32768
#define VIRTQ_MAX_SEGS 64

/* One region of guest memory: guest-physical gpa..gpa+size, at uaddr in the front-end's address
 * space, mapped here at host. */
struct guest_region {
	uint64_t gpa, size, uaddr;
	uint8_t *host;
	void *map; /* what to munmap, and its length */
	size_t map_len;
};

struct guest_mem {
	struct guest_region r[GUEST_MAX_REGIONS];
	size_t n;
};

/* Host pointers for [addr, addr + len) when it lies inside one region, else NULL. */
uint8_t *guest_gpa(const struct guest_mem *m, uint64_t gpa, uint64_t len);
uint8_t *guest_uaddr(const struct guest_mem *m, uint64_t uaddr, uint64_t len);
void guest_mem_unmap(struct guest_mem *m);

struct virtq {
	uint16_t num;                      /* 0 until set; a power of two */
	uint64_t desc_ua, avail_ua, used_ua; /* the front-end's addresses of the three parts */
	uint8_t *desc, *avail, *used;      /* mapped by virtq_map */
	uint16_t last_avail;               /* the next avail entry to take */
	uint16_t used_idx;                 /* the next used entry to fill */
	int kick_fd, call_fd;              /* eventfds; -1 when none */
	bool enabled;
	bool broken;
};

struct virtq_seg {
	uint8_t *p;
	uint32_t len;
};

/* One descriptor chain: what the device may read (the driver's data) and write. */
struct virtq_chain {
	uint16_t head;
	struct virtq_seg rd[VIRTQ_MAX_SEGS], wr[VIRTQ_MAX_SEGS];
	unsigned n_rd, n_wr;
	uint64_t rd_len, wr_len;
};

void virtq_init(struct virtq *q);
/* Resolves the ring addresses through m; false (and broken) when a part lies outside it. */
bool virtq_map(struct virtq *q, const struct guest_mem *m);
bool virtq_ready(const struct virtq *q);
/* The next chain the driver made available: 1, 0 when there is none, -1 when the queue broke. */
int virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c);
/* Kicks are a guest's costliest act under software emulation, so the device asks for them only
 * while it waits for chains (VIRTQ_USED_F_NO_NOTIFY). kicks_on says whether chains came before
 * the request was seen: then the caller takes them rather than waiting for a kick. */
void virtq_kicks_off(struct virtq *q);
bool virtq_kicks_on(struct virtq *q);
/* Gives back the chain taken last, unused (nothing was pushed since). */
void virtq_unpop(struct virtq *q);
/* Returns a chain to the driver with len bytes written into it. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);
/* Interrupts the driver unless it asked not to be. */
void virtq_notify(struct virtq *q);

/* Copies between a chain's segments, from byte off of them, and flat memory. */
size_t virtq_gather(const struct virtq_seg *s, unsigned n, size_t off, void *dst, size_t len);
size_t virtq_scatter(const struct virtq_seg *s, unsigned n, size_t off, const void *src, size_t len);
/* The segments from byte off, at most max bytes, as iovecs (iov holds n); returns how many. */
struct iovec;
int virtq_iovec(const struct virtq_seg *s, unsigned n, size_t off, size_t max, struct iovec *iov);

#endif
