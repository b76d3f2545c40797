/*
 * The native Nitro launcher: the /dev/nitro_enclaves driver sequence of nitro-cli run-enclave
 * (spec/nitro.md §7.2), without nitro-cli. The driver calls sit behind ne_ops so that the
 * sequence is tested against a model of the driver; the real ops are a thin layer of ioctls.
 * What the host offers (hugepage sizes and counts per NUMA node, the enclave CPU pool) is read
 * from sysfs into struct ne_host, from a root that tests replace.
 */
#ifndef ENCLAVER_HOST_NITRO_H
#define ENCLAVER_HOST_NITRO_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

#define NE_MIN_MEM_MB 64
#define NE_HEARTBEAT_PORT 9000
#define NE_CONSOLE_PORT_OFFSET 10000 /* the debug console: vsock CID 0, port enclave CID + 10000 */
#define NE_MIN_PAGE (2ull << 20)

/* The driver's errors (include/uapi/linux/nitro_enclaves.h), returned as -errno. */
enum {
	NE_ERR_VCPU_ALREADY_USED = 256,
	NE_ERR_VCPU_NOT_IN_CPU_POOL,
	NE_ERR_VCPU_INVALID_CPU_CORE,
	NE_ERR_INVALID_MEM_REGION_SIZE,
	NE_ERR_INVALID_MEM_REGION_ADDR,
	NE_ERR_UNALIGNED_MEM_REGION_ADDR,
	NE_ERR_MEM_REGION_ALREADY_USED,
	NE_ERR_MEM_NOT_HUGE_PAGE,
	NE_ERR_MEM_DIFFERENT_NUMA_NODE,
	NE_ERR_MEM_MAX_REGIONS,
	NE_ERR_NO_MEM_REGIONS_ADDED,
	NE_ERR_NO_VCPUS_ADDED,
	NE_ERR_ENCLAVE_MEM_MIN_SIZE,
	NE_ERR_FULL_CORES_NOT_USED,
	NE_ERR_NOT_IN_INIT_STATE,
	NE_ERR_INVALID_VCPU,
	NE_ERR_NO_CPUS_AVAIL_IN_POOL,
	NE_ERR_INVALID_PAGE_SIZE,
	NE_ERR_INVALID_FLAG_VALUE,
	NE_ERR_INVALID_ENCLAVE_CID,
	NE_ERR_LAST = NE_ERR_INVALID_ENCLAVE_CID,
};

/* nitro-cli's rule: an enclave has at least 4 times its EIF's size (rounded up to MiB) of memory. */
uint64_t ne_min_memory_mb(uint64_t eif_size);

/* What a driver error means and what to do about it; NULL outside 256..275. */
const char *ne_strerror(int code);

#define NE_MAX_PAGE_SIZES 16

struct ne_page_pool {
	uint64_t size;        /* bytes, a multiple of 2 MiB */
	uint64_t free;        /* free pages of this size on the host */
	uint64_t free_on_node; /* of which on the CPU pool's NUMA node */
};

struct ne_host {
	struct ne_page_pool pages[NE_MAX_PAGE_SIZES]; /* largest first */
	size_t n_pages;
	char pool[256];            /* the enclave CPU pool as the module shows it ("1,3" or "2-7") */
	unsigned pool_cpus;        /* CPUs in it */
	int pool_node;             /* the NUMA node of its CPUs; -1 when unknown */
	bool per_node;             /* free_on_node was read */
	unsigned threads_per_core; /* an enclave takes whole cores */
};

#define NE_MAX_CPUS 8192 /* the kernel's NR_CPUS at most */

/* Counts the CPUs of a kernel CPU list ("1-3,5") and gives the first; -1 when malformed. */
int ne_cpulist_count(const char *s, int *first);
/* Reads the host's hugepages and enclave CPU pool under sys ("/sys"). */
int ne_host_read(const char *sys, struct ne_host *h, struct err *err);

struct ne_ops {
	int (*open_device)(void *ctx, struct err *err);
	int (*create_vm)(void *ctx, int dev, uint64_t *slot_uid, struct err *err);
	int (*image_load_offset)(void *ctx, int vm, uint64_t *offset, struct err *err);
	/* One hugepage of page_size bytes, from NUMA node node if it can (-1: any), or NULL. */
	void *(*alloc_page)(void *ctx, uint64_t page_size, int node);
	void (*free_page)(void *ctx, void *addr, uint64_t size);
	int (*set_memory_region)(void *ctx, int vm, void *addr, uint64_t size, struct err *err);
	int (*add_vcpu)(void *ctx, int vm, uint32_t *cpu, struct err *err);
	int (*heartbeat_listen)(void *ctx, struct err *err);
	int (*start)(void *ctx, int vm, bool debug, uint64_t *cid, struct err *err);
	/* The debug console of enclave cid: a connected stream, or -1. */
	int (*console_connect)(void *ctx, uint64_t cid, struct err *err);
	/* The next connection to the heartbeat listener and its peer's CID. Fails with ESRCH when
	 * the enclave fd vm says the enclave stopped, ETIMEDOUT after timeout_ms. */
	int (*heartbeat_accept)(void *ctx, int lfd, int vm, int timeout_ms, uint64_t *peer_cid, struct err *err);
	/* Reads init's 0xB7 and echoes it. */
	int (*heartbeat_reply)(void *ctx, int fd, struct err *err);
	void (*close_fd)(void *ctx, int fd);
};

struct ne_page {
	void *addr;
	uint64_t size;
};

struct ne_enclave {
	int vm_fd;
	uint64_t slot_uid;
	uint64_t cid;
	struct ne_page *pages; /* largest first */
	size_t n_pages;
	uint64_t memory_mb;   /* what it got: a larger page may have topped it up */
	struct ne_console *console; /* debug mode: the console stream being copied out, or NULL */
};

struct ne_request {
	int eif_fd;
	uint64_t eif_size;
	uint64_t memory_mb;
	unsigned cpus;
	bool debug;
	int console_out; /* debug mode: where the console goes (-1: nowhere) */
};

/* Runs the sequence; on failure everything acquired is released. */
int ne_launch(const struct ne_ops *ops, void *ctx, const struct ne_host *h, const struct ne_request *req,
	      struct ne_enclave *out, struct err *err);
/* Terminates (closing the VM fd stops the enclave), ends the console stream and frees the memory. */
void ne_release(const struct ne_ops *ops, void *ctx, struct ne_enclave *e);

extern const struct ne_ops ne_driver_ops;

#endif
