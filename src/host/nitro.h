/*
 * The native Nitro launcher: the /dev/nitro_enclaves driver sequence of nitro-cli run-enclave
 * (spec/nitro.md §7.2), without nitro-cli. The driver calls sit behind ne_ops so that the
 * sequence is tested against a fake; the real ops are a thin layer of ioctls.
 */
#ifndef ENCLAVER_HOST_NITRO_H
#define ENCLAVER_HOST_NITRO_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

#define NE_MIN_MEM_MB 64
#define NE_HEARTBEAT_PORT 9000

struct ne_ops {
	int (*open_device)(void *ctx, struct err *err);
	int (*create_vm)(void *ctx, int dev, uint64_t *slot_uid, struct err *err);
	int (*image_load_offset)(void *ctx, int vm, uint64_t *offset, struct err *err);
	/* hugepage-backed memory of exactly size bytes with the given page size, or NULL */
	void *(*alloc_region)(void *ctx, uint64_t size, uint64_t page_size);
	void (*free_region)(void *ctx, void *addr, uint64_t size);
	int (*set_memory_region)(void *ctx, int vm, void *addr, uint64_t size, struct err *err);
	int (*add_vcpu)(void *ctx, int vm, uint32_t *cpu, struct err *err);
	int (*heartbeat_listen)(void *ctx, struct err *err);
	int (*start)(void *ctx, int vm, bool debug, uint64_t *cid, struct err *err);
	int (*heartbeat_wait)(void *ctx, int lfd, int timeout_ms, struct err *err);
	void (*close_fd)(void *ctx, int fd);
};

#define NE_MAX_REGIONS 512

struct ne_enclave {
	int vm_fd;
	uint64_t slot_uid;
	uint64_t cid;
	void *regions[NE_MAX_REGIONS];
	uint64_t sizes[NE_MAX_REGIONS];
	size_t n_regions;
};

struct ne_request {
	int eif_fd;
	uint64_t eif_size;
	uint64_t memory_mb;
	unsigned cpus;
	unsigned threads_per_core; /* vCPUs must come in whole cores */
	bool debug;
};

/* Runs the sequence; on failure everything acquired is released. */
int ne_launch(const struct ne_ops *ops, void *ctx, const struct ne_request *req, struct ne_enclave *out,
	      struct err *err);
/* Terminates (closing the VM fd stops the enclave) and frees the memory. */
void ne_release(const struct ne_ops *ops, void *ctx, struct ne_enclave *e);

extern const struct ne_ops ne_driver_ops;

#endif
